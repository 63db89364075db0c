//! Cross-process locks on files (`flock`), so two pulls of the same layer, in
//! one process or two, download and unpack it once, and garbage collection
//! never removes what a pull is still writing.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// A held lock; released when dropped (the kernel also releases it when the
/// process dies, so a killed pull never leaves a stale lock).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// Where the locks of one store root live.
#[derive(Debug, Clone)]
pub struct Locks {
    dir: PathBuf,
}

impl Locks {
    /// Open (creating) `root/locks`.
    pub fn open(root: &Path) -> io::Result<Self> {
        let dir = root.join("locks");
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// Take the exclusive lock `name`, waiting for it (call from a blocking context).
    pub fn exclusive(&self, name: &str) -> io::Result<FileLock> {
        self.take(name, rustix::fs::FlockOperation::LockExclusive)
    }

    /// Take the shared lock `name`, waiting for it.
    pub fn shared(&self, name: &str) -> io::Result<FileLock> {
        self.take(name, rustix::fs::FlockOperation::LockShared)
    }

    fn take(&self, name: &str, op: rustix::fs::FlockOperation) -> io::Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(format!("{name}.lock")))?;
        rustix::fs::flock(&file, op)?;
        Ok(FileLock { _file: file })
    }
}
