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
    let error = pod
        .volumes
        .set_up_host_path("h", &missing, HostPathType::Unset)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("volume h: hostPath {} does not exist", missing.display())
    );
    for kind in [HostPathType::Directory, HostPathType::File] {
        let error = pod
            .volumes
            .set_up_host_path("h", &missing, kind)
            .unwrap_err();
        let (volume, message) = error.failed_mount().expect("a FailedMount");
        assert_eq!(volume, "h");
        assert_eq!(
            message,
            format!("hostPath {} doesn't exist", missing.display())
        );
    }
    let error = pod
        .volumes
        .set_up_host_path("h", &made, HostPathType::File)
        .unwrap_err();
    assert_eq!(
        error.failed_mount().unwrap().1,
        format!(
            "hostPath type check failed: {} is not a file, it's a Directory",
            made.display()
        )
    );
    assert!(!missing.exists());
    assert_eq!(
        pod.volumes
            .set_up_host_path("h", &made, HostPathType::Directory)
            .unwrap(),
        made
    );
    assert_eq!(pod.volumes.syscall().calls(), []);
}

fn binds(pod: &Pod) -> Vec<(PathBuf, PathBuf)> {
    pod.volumes
        .syscall()
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Bind { source, target } => Some((source, target)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_sub_path_is_made_with_the_volumes_mode_and_its_descriptor_bound() {
    let pod = pod();
    let volume = pod.volumes.set_up_empty_dir("data", Medium::Disk).unwrap();
    let got = pod
        .volumes
        .sub_path("data", "app", 2, &volume, "a/./b")
        .unwrap();
    let target = pod.dir.join("volume-subpaths/data/app/2");
    assert_eq!(got, target);
    assert!(target.is_dir());
    assert_eq!(mode(&target), 0o750);
    assert!(volume.join("a/b").is_dir());
    assert_eq!(
        mode(&volume.join("a")),
        0o777,
        "the volume's mode, past the umask"
    );
    let bound = binds(&pod);
    assert_eq!(bound.len(), 1);
    assert!(bound[0].0.starts_with("/proc/self/fd/"), "{bound:?}");
    assert_eq!(bound[0].1, target);
}

#[test]
fn a_sub_path_may_be_a_file_and_is_bound_on_a_file() {
    let pod = pod();
    let volume = pod.volumes.set_up_empty_dir("data", Medium::Disk).unwrap();
    std::fs::write(volume.join("app.conf"), "x").unwrap();
    let got = pod
        .volumes
        .sub_path("data", "app", 0, &volume, "app.conf")
        .unwrap();
    assert!(got.is_file());
    assert_eq!(
        std::fs::read(&got).unwrap(),
        b"",
        "an empty file to bind on"
    );
    assert_eq!(mode(&got), 0o640);
    assert_eq!(binds(&pod).len(), 1);
}

#[test]
fn an_absolute_or_climbing_sub_path_is_refused_with_kubelets_words() {
    let pod = pod();
    let volume = pod.volumes.set_up_empty_dir("data", Medium::Disk).unwrap();
    for (sub, want) in [
        ("/etc", "error SubPath `/etc` must not be an absolute path"),
        (
            "../x",
            "unable to provision SubPath `../x`: must not contain '..'",
        ),
        (
            "a/../../b",
            "unable to provision SubPath `a/../../b`: must not contain '..'",
        ),
        (
            "..",
            "unable to provision SubPath `..`: must not contain '..'",
        ),
    ] {
        let error = pod
            .volumes
            .sub_path("data", "app", 0, &volume, sub)
            .unwrap_err();
        assert!(error.is_sub_path(), "{error:?}");
        assert_eq!(error.to_string(), format!("volume data: {want}"));
    }
    assert_eq!(binds(&pod), []);
}

#[test]
fn a_sub_path_through_a_link_to_outside_the_volume_is_refused() {
    let pod = pod();
    let volume = pod.volumes.set_up_empty_dir("data", Medium::Disk).unwrap();
    let outside = pod.dir.join("outside");
    std::fs::create_dir_all(outside.join("deep")).unwrap();
    std::os::unix::fs::symlink("/", volume.join("root")).unwrap();
    std::os::unix::fs::symlink("/etc", volume.join("etc")).unwrap();
    std::os::unix::fs::symlink("../../outside", volume.join("up")).unwrap();
    std::os::unix::fs::symlink("/nonexistent-podrun", volume.join("dangling")).unwrap();
    std::fs::create_dir(volume.join("d")).unwrap();
    std::os::unix::fs::symlink(&outside, volume.join("d/out")).unwrap();
    for sub in [
        "root",
        "etc",
        "etc/passwd",
        "up",
        "up/deep",
        "d/out/deep",
        "dangling",
        "dangling/x",
    ] {
        let error = pod
            .volumes
            .sub_path("data", "app", 0, &volume, sub)
            .unwrap_err();
        assert!(
            matches!(&error, VolumeError::SubPath { volume, sub_path, .. }
                if volume == "data" && sub_path == sub),
            "{sub}: {error:?}"
        );
    }
    assert_eq!(binds(&pod), [], "nothing outside the volume was bound");
    assert!(!outside.join("deep/x").exists());
}

#[test]
fn a_link_that_stays_inside_the_volume_is_followed() {
    let pod = pod();
    let volume = pod.volumes.set_up_empty_dir("data", Medium::Disk).unwrap();
    std::fs::create_dir_all(volume.join("real/dir")).unwrap();
    std::os::unix::fs::symlink("real", volume.join("alias")).unwrap();
    let got = pod
        .volumes
        .sub_path("data", "app", 0, &volume, "alias/dir")
        .unwrap();
    assert!(got.is_dir());
    assert_eq!(binds(&pod).len(), 1);
}

#[test]
fn a_container_started_again_gets_its_sub_path_bound_afresh() {
    let pod = pod();
    let volume = pod.volumes.set_up_empty_dir("data", Medium::Disk).unwrap();
    let first = pod
        .volumes
        .sub_path("data", "app", 0, &volume, "x")
        .unwrap();
    // Now a file where the directory was: the target changes kind.
    std::fs::remove_dir(volume.join("x")).unwrap();
    std::fs::write(volume.join("x"), "f").unwrap();
    let again = pod
        .volumes
        .sub_path("data", "app", 0, &volume, "x")
        .unwrap();
    assert_eq!(first, again);
    assert!(again.is_file());
    let calls = pod.volumes.syscall().calls();
    assert!(
        matches!(&calls[..], [Call::Bind { .. }, Call::Unmount(t), Call::Bind { .. }] if *t == first),
        "{calls:?}"
    );
    assert_eq!(pod.volumes.syscall().mounted(), [first]);
}

#[test]
fn a_failed_sub_path_bind_names_the_volume_and_the_sub_path() {
    let sys = RecordingSyscall::new();
    let pod = pod_with(sys);
    let volume = pod.volumes.set_up_empty_dir("data", Medium::Disk).unwrap();
    let target = pod.dir.join("volume-subpaths/data/app/0");
    pod.volumes.syscall().fail_mount(&target, Errno::PERM);
    let error = pod
        .volumes
        .sub_path("data", "app", 0, &volume, "x")
        .unwrap_err();
    assert!(
        matches!(&error, VolumeError::SubPathBind { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("volume data: bind subPath \"x\""),
        "{error}"
    );
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
