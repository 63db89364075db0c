//! The disk usage of a volume as kubelet measures it without project quotas
//! (pkg/volume/util/fs/fs.go `DiskUsage`: "the same as `du -x -s -B 1`"):
//! the bytes of the blocks allocated to every file and directory under the
//! path, each inode counted once however many hard links it has, symbolic
//! links not followed, other file systems mounted below not entered.
//!
//! A file that vanishes during the walk (the pod's containers keep writing)
//! counts nothing; any other failure to read is an error.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The bytes allocated under `path` (`du -x -s -B 1`), or `None` when
/// `path` does not exist.
pub fn disk_usage(path: &Path) -> io::Result<Option<u64>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut walk = Walk {
        device: meta.dev(),
        linked: HashSet::new(),
        bytes: 0,
    };
    walk.add(path, &meta)?;
    Ok(Some(walk.bytes))
}

struct Walk {
    /// The file system of the volume: nothing on another one is counted.
    device: u64,
    /// The inodes with more than one link seen so far.
    linked: HashSet<u64>,
    bytes: u64,
}

impl Walk {
    fn add(&mut self, path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
        if meta.dev() != self.device {
            return Ok(());
        }
        if meta.nlink() > 1 && !meta.is_dir() && !self.linked.insert(meta.ino()) {
            return Ok(());
        }
        // st_blocks is in 512-byte units whatever the file system's block size.
        self.bytes = self.bytes.saturating_add(meta.blocks().saturating_mul(512));
        if !meta.is_dir() {
            return Ok(());
        }
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let child = entry.path();
            // lstat: a symbolic link counts its own blocks, not its target's.
            match std::fs::symlink_metadata(&child) {
                Ok(m) => self.add(&child, &m)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    fn blocks(path: &Path) -> u64 {
        std::fs::symlink_metadata(path).unwrap().blocks() * 512
    }

    fn write(path: &Path, len: usize) {
        let mut f = std::fs::File::create(path).unwrap();
        f.write_all(&vec![7u8; len]).unwrap();
        f.sync_all().unwrap();
    }

    #[test]
    fn counts_allocated_blocks_once_per_inode_and_never_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        std::fs::create_dir(&root).unwrap();
        let empty = disk_usage(&root).unwrap().unwrap();
        assert_eq!(empty, blocks(&root), "the directory's own blocks");

        std::fs::create_dir(root.join("sub")).unwrap();
        write(&root.join("sub/a"), 300 * 1024);
        // A hard link to the same inode: counted once.
        std::fs::hard_link(root.join("sub/a"), root.join("b")).unwrap();
        // A sparse file: 100 MiB long, one 4 KiB block written.
        let sparse = root.join("sparse");
        let mut f = std::fs::File::create(&sparse).unwrap();
        f.seek(SeekFrom::Start(100 << 20)).unwrap();
        f.write_all(&[1u8; 4096]).unwrap();
        f.sync_all().unwrap();
        // A big file outside, reached by a symbolic link: not followed.
        let outside = dir.path().join("outside");
        write(&outside, 2 << 20);
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();

        let expected = blocks(&root)
            + blocks(&root.join("sub"))
            + blocks(&root.join("sub/a"))
            + blocks(&sparse)
            + blocks(&root.join("link"));
        let got = disk_usage(&root).unwrap().unwrap();
        assert_eq!(got, expected);
        assert!(got >= 300 * 1024, "the written file counts: {got}");
        assert!(
            got < 2 << 20,
            "neither the link's target nor the hole: {got}"
        );
        assert!(blocks(&sparse) < 1 << 20, "the file system keeps holes");
    }

    #[test]
    fn a_missing_path_has_no_usage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(disk_usage(&dir.path().join("nope")).unwrap(), None);
    }
}
