//! Real tmpfs mounts for /dev/shm and memory-backed emptyDir volumes. These need
//! root and fail without it (the decisions are unit-tested without root in src/).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use podrun_volume::{Medium, PodVolumes, VolumeError, SHM_SIZE};

/// A pod directory in a temporary directory whose mounts come down even when an
/// assertion fails (before the temporary directory goes).
struct Pod {
    volumes: PodVolumes,
    _tmp: tempfile::TempDir,
}

impl Pod {
    fn new() -> Self {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts tmpfs: run it as root"
        );
        let tmp = tempfile::tempdir().unwrap();
        Pod {
            volumes: PodVolumes::new(tmp.path().join("pod")),
            _tmp: tmp,
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.volumes.unmount_all();
    }
}

/// The mountinfo lines of what is mounted on `target`.
fn mount_lines(target: &Path) -> Vec<String> {
    let target = std::fs::canonicalize(target).unwrap();
    let want = target.to_str().unwrap().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(want.as_str()))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_sized_memory_volume_fills_up_and_unmounts() {
    let pod = Pod::new();
    let target = pod
        .volumes
        .set_up_empty_dir("cache", Medium::Memory { size: 1 << 20 })
        .unwrap();
    // A second container's set-up finds it: one tmpfs, not two.
    pod.volumes
        .set_up_empty_dir("cache", Medium::Memory { size: 1 << 20 })
        .unwrap();
    let lines = mount_lines(&target);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(line.contains(" - tmpfs "), "{line}");
    assert!(line.contains("size=1024k"), "{line}");
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o777);

    // Half fits; writing past the size fails with ENOSPC.
    std::fs::write(target.join("half"), vec![1u8; 512 << 10]).unwrap();
    let mut file = std::fs::File::create(target.join("more")).unwrap();
    let error = file
        .write_all(&vec![2u8; 1 << 20])
        .and_then(|()| file.sync_all())
        .expect_err("a 1 MiB tmpfs took 1.5 MiB");
    assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
    drop(file);

    pod.volumes.unmount_all().unwrap();
    assert!(mount_lines(&target).is_empty());
    assert!(
        !target.join("half").exists(),
        "the files went with the tmpfs"
    );
    // Nothing mounted any more: nothing to do.
    pod.volumes.unmount_all().unwrap();
}

#[test]
fn shm_is_64_mib_noexec_and_sticky() {
    let pod = Pod::new();
    let target = pod.volumes.set_up_shm().unwrap();
    let lines = mount_lines(&target);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(
        line.contains(&format!("size={}k", SHM_SIZE >> 10)),
        "{line}"
    );
    for flag in ["nosuid", "nodev", "noexec"] {
        assert!(line.contains(flag), "{flag}: {line}");
    }
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777);
    pod.volumes.unmount_all().unwrap();
    assert!(mount_lines(&target).is_empty());
}

#[test]
fn teardown_takes_down_nested_mounts_and_a_disk_volume_stays_a_directory() {
    let pod = Pod::new();
    let disk = pod.volumes.set_up_empty_dir("data", Medium::Disk).unwrap();
    let outer = pod
        .volumes
        .set_up_empty_dir("outer", Medium::Memory { size: 1 << 20 })
        .unwrap();
    // A mount below another (as a container's bind mount could leave).
    let inner = PodVolumes::new(&outer);
    let inner_dir = inner
        .set_up_empty_dir("inner", Medium::Memory { size: 1 << 20 })
        .unwrap();
    assert_eq!(mount_lines(&inner_dir).len(), 1);
    assert!(mount_lines(&disk).is_empty());

    pod.volumes.unmount_all().unwrap();
    assert!(mount_lines(&outer).is_empty());
    assert!(!inner_dir.exists(), "the inner mount went with the outer");
    assert!(disk.is_dir());
}

#[test]
fn refuses_an_unlimited_size() {
    let pod = Pod::new();
    let error = pod
        .volumes
        .set_up_empty_dir("cache", Medium::Memory { size: 0 })
        .unwrap_err();
    assert!(matches!(error, VolumeError::TmpfsOptions { .. }), "{error}");
    assert!(error.to_string().contains("unlimited"), "{error}");
    assert!(mount_lines(&pod.volumes.empty_dir_path("cache").unwrap()).is_empty());
}
