//! A pod's `securityContext.fsGroup` applied to a volume as kubelet applies it
//! (pkg/volume/volume_linux.go SetVolumeOwnership, changeFilePermission,
//! requiresPermissionChange): every file and directory below the volume's root
//! gets the group, read and write for the group (read only for a read-only
//! volume's content), and directories also search and setgid, so that what the
//! containers make there inherits the group. Links are given the group but never
//! chmodded (a chmod would go through to their target).

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// `securityContext.fsGroupChangePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsGroupChangePolicy {
    /// `Always` (the default): every file, every time.
    #[default]
    Always,
    /// `OnRootMismatch`: nothing when the root already has the group, the
    /// permissions and setgid.
    OnRootMismatch,
}

/// The mode kubelet's changeFilePermission gives a file or directory of `mode`.
pub fn fs_group_mode(mode: u32, is_dir: bool, read_only: bool) -> u32 {
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if is_dir {
        mask |= SETGID | EXEC_MASK;
    }
    (mode & 0o7777) | mask
}

/// Whether a volume root of group `gid` and `mode` needs the change
/// (kubelet's requiresPermissionChange).
pub fn requires_permission_change(
    gid: u32,
    mode: u32,
    is_dir: bool,
    fs_group: u32,
    read_only: bool,
) -> bool {
    if gid != fs_group || !is_dir {
        return true;
    }
    let want = if read_only { RO_MASK } else { RW_MASK } | EXEC_MASK;
    mode & want != want || mode & SETGID == 0
}

/// Applies `fs_group` to everything at and below `dir` (kubelet's
/// SetVolumeOwnership). With [`FsGroupChangePolicy::OnRootMismatch`] a root that
/// already looks right is left alone.
pub fn set_volume_ownership(
    dir: &Path,
    fs_group: u32,
    read_only: bool,
    policy: FsGroupChangePolicy,
) -> io::Result<()> {
    if policy == FsGroupChangePolicy::OnRootMismatch {
        if let Ok(meta) = std::fs::metadata(dir) {
            if !requires_permission_change(
                meta.gid(),
                meta.mode(),
                meta.is_dir(),
                fs_group,
                read_only,
            ) {
                return Ok(());
            }
        }
    }
    walk(dir, fs_group, read_only)
}

fn walk(path: &Path, fs_group: u32, read_only: bool) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    std::os::unix::fs::lchown(path, None, Some(fs_group))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = fs_group_mode(meta.mode(), meta.is_dir(), read_only);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            walk(&entry?.path(), fs_group, read_only)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_kubelets() {
        assert_eq!(fs_group_mode(0o755, true, false), 0o2775);
        assert_eq!(fs_group_mode(0o600, false, false), 0o660);
        assert_eq!(fs_group_mode(0o400, false, true), 0o440);
        assert_eq!(fs_group_mode(0o700, true, true), 0o2750);
        assert_eq!(fs_group_mode(0o644, false, false), 0o664);
    }

    #[test]
    fn the_root_decides_on_root_mismatch() {
        // (gid, mode, dir, read_only) → change?
        for (gid, mode, dir, ro, want) in [
            (5, 0o2770, true, false, false),
            (5, 0o2775, true, false, false),
            (4, 0o2770, true, false, true),
            (5, 0o0770, true, false, true),
            (5, 0o2750, true, false, true),
            (5, 0o2550, true, true, false),
            (5, 0o2660, false, false, true),
        ] {
            assert_eq!(
                requires_permission_change(gid, mode, dir, 5, ro),
                want,
                "{gid} {mode:o} {dir} {ro}"
            );
        }
    }

    #[test]
    fn every_file_gets_the_group_and_links_keep_their_targets_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("v");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), "x").unwrap();
        std::fs::set_permissions(root.join("sub/f"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::set_permissions(root.join("sub"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "o").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        // The process's own group: a change anyone may make.
        let gid = rustix::process::getegid().as_raw();
        set_volume_ownership(&root, gid, false, FsGroupChangePolicy::Always).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&root.join("sub")), 0o2770);
        assert_eq!(mode(&root.join("sub/f")), 0o660);
        assert_eq!(mode(&outside), 0o600, "a link's target is not chmodded");
        // OnRootMismatch: a right root leaves the rest alone.
        std::fs::set_permissions(root.join("sub/f"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        set_volume_ownership(&root, gid, false, FsGroupChangePolicy::OnRootMismatch).unwrap();
        assert_eq!(mode(&root.join("sub/f")), 0o600);
        set_volume_ownership(&root, gid, false, FsGroupChangePolicy::Always).unwrap();
        assert_eq!(mode(&root.join("sub/f")), 0o660);
    }
}
