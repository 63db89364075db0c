//! What the podrun integration tests share: finding and removing the mounts a
//! test left below its temporary directory.

use std::path::Path;

/// Every mount point in this process's mount table.
pub fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .collect()
}

/// Lazily unmount everything mounted below `dir`, deepest first (for drop
/// guards: a failed test must not leave mounts for the next run).
pub fn unmount_below(dir: &Path) {
    let prefix = dir.to_string_lossy().to_string();
    let mut mounts: Vec<String> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
    }
}

/// Whether this machine's cgroup hierarchy is v2 alone (cgroup2 mounted at
/// /sys/fs/cgroup) rather than v1 or hybrid. Under `PODRUN_TEST_CGROUP=v2` (set by
/// scripts/vm-v2.sh) or `=v1` the test insists on that hierarchy and panics if the
/// machine has the other: the v2 suite must never pass by checking v1 files.
#[allow(dead_code)] // each test binary compiles this module; not all of them check cgroups
pub fn cgroup_v2() -> bool {
    let v2 = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let mut f = l.split(' ');
            f.nth(1) == Some("/sys/fs/cgroup") && f.next() == Some("cgroup2")
        });
    match std::env::var("PODRUN_TEST_CGROUP").as_deref() {
        Ok("v2") => assert!(
            v2,
            "PODRUN_TEST_CGROUP=v2 but /sys/fs/cgroup is not cgroup2"
        ),
        Ok("v1") => assert!(!v2, "PODRUN_TEST_CGROUP=v1 but /sys/fs/cgroup is cgroup2"),
        Ok(other) => panic!("PODRUN_TEST_CGROUP={other}: expected v1 or v2"),
        Err(_) => {}
    }
    v2
}
