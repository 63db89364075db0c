//! The decisions of [`PodVolumes`] against a [`RecordingSyscall`]: directories in a
//! temporary directory, mounts in the double's table. No root needed.

use super::*;
use crate::{Call, RecordingSyscall, TmpfsOptionsError};

struct Pod {
    _tmp: tempfile::TempDir,
    /// The pod's directory, resolved (the kernel's table shows resolved paths).
    dir: PathBuf,
    volumes: PodVolumes<RecordingSyscall>,
}

fn pod() -> Pod {
    pod_with(RecordingSyscall::new())
}

fn pod_with(sys: RecordingSyscall) -> Pod {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(tmp.path()).unwrap().join("pod");
    let volumes = PodVolumes::with_syscall(&dir, sys);
    Pod {
        _tmp: tmp,
        dir,
        volumes,
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn tmpfs(target: &Path, flags: MountFlags, data: &str) -> Call {
    Call::MountTmpfs {
        target: target.to_path_buf(),
        flags,
        data: data.to_string(),
    }
}

#[test]
fn a_disk_empty_dir_is_a_directory_anyone_may_write_and_mounts_nothing() {
    let pod = pod();
    let dir = pod.volumes.set_up_empty_dir("data", Medium::Disk).unwrap();
    assert_eq!(dir, pod.dir.join("volumes/data"));
    assert!(dir.is_dir());
    // 0777 whatever the umask (the tests' is 022), as kubelet's setupDir makes it.
    assert_eq!(mode(&dir), 0o777);
    // The next container's call: the same directory, still nothing mounted.
    assert_eq!(
        pod.volumes.set_up_empty_dir("data", Medium::Disk).unwrap(),
        dir
    );
    assert_eq!(pod.volumes.syscall().calls(), []);
}

#[test]
fn an_existing_empty_dir_keeps_the_mode_a_container_gave_it() {
    let pod = pod();
    let dir = pod.volumes.set_up_empty_dir("data", Medium::Disk).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    pod.volumes.set_up_empty_dir("data", Medium::Disk).unwrap();
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn a_memory_empty_dir_is_one_sized_tmpfs_however_often_it_is_set_up() {
    let pod = pod();
    let dir = pod
        .volumes
        .set_up_empty_dir("cache", Medium::Memory { size: 1 << 20 })
        .unwrap();
    assert_eq!(dir, pod.dir.join("volumes/cache"));
    let mount = tmpfs(
        &dir,
        MountFlags::NOSUID | MountFlags::NODEV,
        "mode=777,size=1048576",
    );
    assert_eq!(pod.volumes.syscall().calls(), std::slice::from_ref(&mount));
    // A second container mounting it: the same tmpfs, not a second one on top.
    pod.volumes
        .set_up_empty_dir("cache", Medium::Memory { size: 1 << 20 })
        .unwrap();
    assert_eq!(pod.volumes.syscall().calls(), [mount]);
    assert_eq!(pod.volumes.syscall().mounted(), [dir]);
}

#[test]
fn a_memory_empty_dir_left_unmounted_is_mounted_on_the_next_set_up() {
    // A mount that failed (or a crash between mkdir and mount) left the directory:
    // the next set-up must not take it for a tmpfs.
    let pod = pod();
    let dir = pod.dir.join("volumes/cache");
    std::fs::create_dir_all(&dir).unwrap();
    pod.volumes
        .set_up_empty_dir("cache", Medium::Memory { size: 4096 })
        .unwrap();
    assert_eq!(pod.volumes.syscall().mounted(), [dir]);
}

#[test]
fn a_failed_mount_names_the_volume_and_the_next_set_up_tries_again() {
    let pod = pod();
    let dir = pod.dir.join("volumes/cache");
    pod.volumes.syscall().fail_mount(&dir, Errno::PERM);
    let error = pod
        .volumes
        .set_up_empty_dir("cache", Medium::Memory { size: 4096 })
        .unwrap_err();
    assert!(
        matches!(&error, VolumeError::Mount { owner: Owner::Volume(v), target, .. }
            if v == "cache" && *target == dir),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "volume cache: mount tmpfs on {}: {}",
            dir.display(),
            io::Error::from(Errno::PERM)
        )
    );
    assert!(pod.volumes.syscall().mounted().is_empty());
}

#[test]
fn a_memory_empty_dir_of_size_zero_is_refused_before_any_mount() {
    let pod = pod();
    let error = pod
        .volumes
        .set_up_empty_dir("cache", Medium::Memory { size: 0 })
        .unwrap_err();
    assert!(
        matches!(
            error,
            VolumeError::TmpfsOptions {
                source: TmpfsOptionsError::Unlimited,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "volume cache: size 0 would make the tmpfs unlimited"
    );
    assert_eq!(pod.volumes.syscall().calls(), []);
}

#[test]
fn an_unreadable_mount_table_stops_the_mount() {
    let pod = pod();
    pod.volumes.syscall().fail_mount_table(Errno::ACCESS);
    let error = pod
        .volumes
        .set_up_empty_dir("cache", Medium::Memory { size: 4096 })
        .unwrap_err();
    assert!(matches!(error, VolumeError::MountTable { .. }), "{error:?}");
    assert_eq!(pod.volumes.syscall().calls(), []);
}

#[test]
fn a_name_that_is_not_one_directory_name_is_refused() {
    let pod = pod();
    for name in ["", ".", "..", "a/b", "/etc", "a/"] {
        let error = pod
            .volumes
            .set_up_empty_dir(name, Medium::Disk)
            .unwrap_err();
        assert!(
            matches!(error, VolumeError::BadName(_)),
            "{name:?}: {error:?}"
        );
    }
    assert!(!pod.dir.exists());
}

#[test]
fn shm_is_a_64_mib_noexec_sticky_tmpfs_mounted_once() {
    let pod = pod();
    let dir = pod.volumes.set_up_shm().unwrap();
    assert_eq!(dir, pod.dir.join("shm"));
    assert_eq!(pod.volumes.shm_path(), dir);
    pod.volumes.set_up_shm().unwrap();
    assert_eq!(
        pod.volumes.syscall().calls(),
        [tmpfs(
            &dir,
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            "mode=1777,size=67108864"
        )]
    );
    let error = {
        let pod = pod_with(RecordingSyscall::new());
        pod.volumes
            .syscall()
            .fail_mount(pod.dir.join("shm"), Errno::NODEV);
        pod.volumes.set_up_shm().unwrap_err()
    };
    assert!(
        error.to_string().starts_with("/dev/shm: mount tmpfs on "),
        "{error}"
    );
}

#[test]
fn a_pod_directory_behind_a_symbolic_link_is_compared_resolved() {
    let pod = pod();
    std::fs::create_dir_all(&pod.dir).unwrap();
    let link = pod.dir.with_file_name("link");
    std::os::unix::fs::symlink(&pod.dir, &link).unwrap();
    let volumes = PodVolumes::with_syscall(&link, RecordingSyscall::new());
    let dir = volumes
        .set_up_empty_dir("cache", Medium::Memory { size: 4096 })
        .unwrap();
    assert_eq!(dir, link.join("volumes/cache"));
    volumes
        .set_up_empty_dir("cache", Medium::Memory { size: 4096 })
        .unwrap();
    let resolved = pod.dir.join("volumes/cache");
    assert_eq!(volumes.syscall().mounted(), [resolved]);
    volumes.unmount_all().unwrap();
    assert_eq!(volumes.syscall().mounted(), Vec::<PathBuf>::new());
}

#[test]
fn host_path_types_parse_as_the_api_spells_them() {
    assert_eq!("".parse(), Ok(HostPathType::Unset));
    assert_eq!(
        "DirectoryOrCreate".parse(),
        Ok(HostPathType::DirectoryOrCreate)
    );
    assert_eq!("BlockDevice".parse(), Ok(HostPathType::BlockDevice));
    assert_eq!(
        "directory".parse::<HostPathType>(),
        Err(UnknownHostPathType("directory".into()))
    );
}

#[test]
fn a_host_path_is_made_for_directory_or_create_and_must_exist_otherwise() {
    let pod = pod();
    let made = pod.dir.with_file_name("host/a/b");
    assert_eq!(
        pod.volumes
            .set_up_host_path("h", &made, HostPathType::DirectoryOrCreate)
            .unwrap(),
        made
    );
    assert!(made.is_dir());

    let missing = pod.dir.with_file_name("absent");
    for kind in [
        HostPathType::Unset,
        HostPathType::Directory,
        HostPathType::File,
    ] {
        let error = pod
            .volumes
            .set_up_host_path("h", &missing, kind)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("volume h: hostPath {} does not exist", missing.display())
        );
    }
    assert!(!missing.exists());
    assert_eq!(
        pod.volumes
            .set_up_host_path("h", &made, HostPathType::Directory)
            .unwrap(),
        made
    );
    assert_eq!(pod.volumes.syscall().calls(), []);
}

#[test]
fn a_sub_path_is_a_directory_inside_the_volume() {
    let pod = pod();
    let volume = pod.volumes.set_up_empty_dir("data", Medium::Disk).unwrap();
    let sub = pod.volumes.sub_path("data", &volume, "a/./b").unwrap();
    assert_eq!(sub, volume.join("a/./b"));
    assert!(volume.join("a/b").is_dir());
    for outside in ["/etc", "../x", "a/../../b", ".."] {
        let error = pod.volumes.sub_path("data", &volume, outside).unwrap_err();
        assert!(
            matches!(&error, VolumeError::SubPathOutside { volume, sub_path }
                if volume == "data" && sub_path == outside),
            "{outside}: {error:?}"
        );
    }
}

#[test]
fn teardown_takes_the_deepest_and_the_top_of_a_stack_first_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let pod = root.join("pod");
    let (shm, cache, nested) = (
        pod.join("shm"),
        pod.join("volumes/cache"),
        pod.join("volumes/cache/deeper"),
    );
    let other = root.join("pod2/shm");
    let sys = RecordingSyscall::with_mounted([
        PathBuf::from("/"),
        shm.clone(),
        cache.clone(),
        other.clone(),
        nested.clone(),
        shm.clone(),
    ]);
    let volumes = PodVolumes::with_syscall(&pod, sys);
    volumes.unmount_all().unwrap();
    assert_eq!(
        volumes.syscall().calls(),
        [
            Call::Unmount(nested),
            Call::Unmount(cache),
            // Both of shm's stack: the table's order reversed, top first.
            Call::Unmount(shm.clone()),
            Call::Unmount(shm),
        ]
    );
    assert_eq!(volumes.syscall().mounted(), [PathBuf::from("/"), other]);
    // Nothing left: nothing to do, no error.
    volumes.unmount_all().unwrap();
}

#[test]
fn teardown_goes_on_past_failures_and_reports_them_all() {
    let pod = pod();
    let (shm, a, b) = (
        pod.dir.join("shm"),
        pod.dir.join("volumes/a"),
        pod.dir.join("volumes/b"),
    );
    let sys = RecordingSyscall::with_mounted([shm.clone(), a.clone(), b.clone()]);
    sys.fail_unmount(&shm, Errno::BUSY);
    sys.fail_unmount(&a, Errno::PERM);
    // Gone already (another cleanup raced us): not a failure.
    sys.fail_unmount(&b, Errno::INVAL);
    let volumes = PodVolumes::with_syscall(&pod.dir, sys);
    let error = volumes.unmount_all().unwrap_err();
    let TeardownError::Unmount(errors) = &error else {
        panic!("{error:?}");
    };
    let targets: Vec<&Path> = errors.iter().map(|e| e.target.as_path()).collect();
    assert_eq!(targets, [a.as_path(), shm.as_path()]);
    assert_eq!(volumes.syscall().calls().len(), 3, "every mount was tried");
    assert_eq!(
        error.to_string(),
        format!(
            "unmount {}: {}; unmount {}: {}",
            a.display(),
            io::Error::from(Errno::PERM),
            shm.display(),
            io::Error::from(Errno::BUSY)
        )
    );
}

#[test]
fn teardown_without_a_mount_table_says_so() {
    let pod = pod();
    pod.volumes.syscall().fail_mount_table(Errno::ACCESS);
    assert!(matches!(
        pod.volumes.unmount_all(),
        Err(TeardownError::MountTable(_))
    ));
}
