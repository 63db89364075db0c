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
