//! tmpfs mounts for /dev/shm and memory-backed emptyDir volumes (needs root).

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use podrun_runtime::podfiles::{mount_shm, mount_tmpfs, unmount, SHM_SIZE};
use support::require_root;

/// Unmounts the target even when an assertion fails (before the tempdir goes).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = unmount(&self.0);
    }
}

/// The mountinfo line of what is mounted on `target`, if anything.
fn mount_line(target: &Path) -> Option<String> {
    let want = target.to_str().unwrap().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(want.as_str()))
        .map(str::to_string)
}

#[test]
fn a_sized_tmpfs_fills_up_and_unmounts() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("cache");
    std::fs::create_dir(&target).unwrap();
    let _guard = Unmount(target.clone());

    mount_tmpfs(&target, Some(1 << 20), 0o777).unwrap();
    let line = mount_line(&target).expect("mounted");
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

    unmount(&target).unwrap();
    assert!(mount_line(&target).is_none());
    assert!(
        !target.join("half").exists(),
        "the files went with the tmpfs"
    );
    // Nothing mounted, nothing there: both fine.
    unmount(&target).unwrap();
    unmount(&tmp.path().join("absent")).unwrap();
}

#[test]
fn shm_is_64_mib_noexec_and_sticky() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("shm");
    std::fs::create_dir(&target).unwrap();
    let _guard = Unmount(target.clone());

    mount_shm(&target).unwrap();
    let line = mount_line(&target).expect("mounted");
    assert!(
        line.contains(&format!("size={}k", SHM_SIZE >> 10)),
        "{line}"
    );
    for flag in ["nosuid", "nodev", "noexec"] {
        assert!(line.contains(flag), "{flag}: {line}");
    }
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777);
    unmount(&target).unwrap();
    assert!(mount_line(&target).is_none());
}

#[test]
fn refuses_an_unlimited_size() {
    let tmp = tempfile::tempdir().unwrap();
    let error = mount_tmpfs(tmp.path(), Some(0), 0o777).unwrap_err();
    assert!(error.contains("unlimited"), "{error}");
    assert!(mount_line(tmp.path()).is_none());
}
