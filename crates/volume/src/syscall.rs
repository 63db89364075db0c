//! The system calls behind a pod's volumes, and a double that records them.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::io::Errno;
pub use rustix::mount::MountFlags;

/// What this crate asks of the kernel. Everything else it does is plain file work
/// (directories, permissions), which tests do in a temporary directory.
pub trait Syscall {
    /// Mounts a new tmpfs on `target`, with `flags` and the filesystem's options
    /// (`data`, such as `mode=777,size=1048576`).
    fn mount_tmpfs(&self, target: &Path, flags: MountFlags, data: &str) -> io::Result<()>;

    /// Mounts a new hugetlbfs on `target` (`nosuid,nodev`), with its options
    /// (`data`: `pagesize=2097152`), as kubelet's hugepages emptyDir.
    fn mount_hugetlbfs(&self, target: &Path, data: &str) -> io::Result<()>;

    /// Bind-mounts `source` (not recursively: kubelet's subPath bind) on `target`,
    /// which must be of the same kind (a directory on a directory, a file on a file).
    fn bind_mount(&self, source: &Path, target: &Path) -> io::Result<()>;

    /// Detaches the mount on top of `target` and everything mounted below it
    /// (`MNT_DETACH`: open files keep the filesystem alive until closed). Fails with
    /// `EINVAL` when nothing is mounted there, `ENOENT` when there is no `target`.
    fn unmount(&self, target: &Path) -> io::Result<()>;

    /// Every mount point of this mount namespace, in mount table order (a mount
    /// stacked on another comes after it). Paths are as the kernel shows them:
    /// absolute, with symbolic links resolved.
    fn mount_points(&self) -> io::Result<Vec<PathBuf>>;
}

/// The kernel's calls, through rustix; the mount table from `/proc/self/mountinfo`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount_tmpfs(&self, target: &Path, flags: MountFlags, data: &str) -> io::Result<()> {
        let data = std::ffi::CString::new(data)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in tmpfs options"))?;
        rustix::mount::mount("tmpfs", target, "tmpfs", flags, Some(data.as_c_str()))?;
        Ok(())
    }

    fn mount_hugetlbfs(&self, target: &Path, data: &str) -> io::Result<()> {
        let data = std::ffi::CString::new(data).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "a NUL in hugetlbfs options")
        })?;
        let flags = MountFlags::NOSUID | MountFlags::NODEV;
        rustix::mount::mount("nodev", target, "hugetlbfs", flags, Some(data.as_c_str()))?;
        Ok(())
    }

    fn bind_mount(&self, source: &Path, target: &Path) -> io::Result<()> {
        rustix::mount::mount_bind(source, target)?;
        Ok(())
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)?;
        Ok(())
    }

    fn mount_points(&self) -> io::Result<Vec<PathBuf>> {
        let info = std::fs::read_to_string("/proc/self/mountinfo")?;
        Ok(info
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(|point| PathBuf::from(unescape(point)))
            .collect())
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One call a [`RecordingSyscall`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// [`Syscall::mount_tmpfs`].
    MountTmpfs {
        /// Where.
        target: PathBuf,
        /// With which flags.
        flags: MountFlags,
        /// With which options.
        data: String,
    },
    /// [`Syscall::mount_hugetlbfs`].
    MountHugetlbfs {
        /// Where.
        target: PathBuf,
        /// With which options.
        data: String,
    },
    /// [`Syscall::bind_mount`].
    Bind {
        /// What (a `/proc/self/fd/N` for a subPath).
        source: PathBuf,
        /// Where.
        target: PathBuf,
    },
    /// [`Syscall::unmount`].
    Unmount(PathBuf),
}

/// A [`Syscall`] that mounts nothing: it records each call and keeps a mount table
/// of its own that behaves as the kernel's does for these calls (a mount stacks on
/// its target; an unmount takes the top one and everything below the target, and
/// fails with `EINVAL` where nothing is mounted). Errors can be planted per target.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    state: Mutex<Recorded>,
}

#[derive(Debug, Default)]
struct Recorded {
    calls: Vec<Call>,
    table: Vec<PathBuf>,
    mount_errors: HashMap<PathBuf, Errno>,
    unmount_errors: HashMap<PathBuf, Errno>,
    table_error: Option<Errno>,
}

impl RecordingSyscall {
    /// A double whose mount table starts empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// A double whose mount table starts with `points` (mounts made earlier, by
    /// another process or before a crash); they are not recorded as calls.
    pub fn with_mounted(points: impl IntoIterator<Item = PathBuf>) -> Self {
        let double = Self::default();
        double.lock().table.extend(points);
        double
    }

    /// Makes every mount on `target` fail with `errno`.
    pub fn fail_mount(&self, target: impl Into<PathBuf>, errno: Errno) {
        self.lock().mount_errors.insert(target.into(), errno);
    }

    /// Makes every unmount of `target` fail with `errno`.
    pub fn fail_unmount(&self, target: impl Into<PathBuf>, errno: Errno) {
        self.lock().unmount_errors.insert(target.into(), errno);
    }

    /// Makes reading the mount table fail with `errno`.
    pub fn fail_mount_table(&self, errno: Errno) {
        self.lock().table_error = Some(errno);
    }

    /// The calls received so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The mount table now, in mount order.
    pub fn mounted(&self) -> Vec<PathBuf> {
        self.lock().table.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.state
            .lock()
            .expect("no test panicked holding the double")
    }
}

impl Syscall for RecordingSyscall {
    fn mount_tmpfs(&self, target: &Path, flags: MountFlags, data: &str) -> io::Result<()> {
        let mut state = self.lock();
        state.calls.push(Call::MountTmpfs {
            target: target.to_path_buf(),
            flags,
            data: data.to_string(),
        });
        if let Some(errno) = state.mount_errors.get(target) {
            return Err((*errno).into());
        }
        state.table.push(target.to_path_buf());
        Ok(())
    }

    fn mount_hugetlbfs(&self, target: &Path, data: &str) -> io::Result<()> {
        let mut state = self.lock();
        state.calls.push(Call::MountHugetlbfs {
            target: target.to_path_buf(),
            data: data.to_string(),
        });
        if let Some(errno) = state.mount_errors.get(target) {
            return Err((*errno).into());
        }
        state.table.push(target.to_path_buf());
        Ok(())
    }

    fn bind_mount(&self, source: &Path, target: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.calls.push(Call::Bind {
            source: source.to_path_buf(),
            target: target.to_path_buf(),
        });
        if let Some(errno) = state.mount_errors.get(target) {
            return Err((*errno).into());
        }
        state.table.push(target.to_path_buf());
        Ok(())
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.calls.push(Call::Unmount(target.to_path_buf()));
        if let Some(errno) = state.unmount_errors.get(target) {
            return Err((*errno).into());
        }
        let Some(top) = state.table.iter().rposition(|p| p == target) else {
            return Err(Errno::INVAL.into());
        };
        state.table.remove(top);
        state
            .table
            .retain(|p| !(p.starts_with(target) && p != target));
        Ok(())
    }

    fn mount_points(&self) -> io::Result<Vec<PathBuf>> {
        let state = self.lock();
        match state.table_error {
            Some(errno) => Err(errno.into()),
            None => Ok(state.table.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/a\040b\134c"), "/a b\\c");
        assert_eq!(unescape(r"/plain"), "/plain");
    }

    #[test]
    fn the_real_mount_table_has_the_root() {
        let points = LinuxSyscall.mount_points().unwrap();
        assert!(points.contains(&PathBuf::from("/")), "{points:?}");
    }

    #[test]
    fn the_double_stacks_mounts_and_detaches_what_is_below() {
        let sys = RecordingSyscall::new();
        let (a, b) = (Path::new("/p/a"), Path::new("/p/a/b"));
        sys.mount_tmpfs(a, MountFlags::empty(), "").unwrap();
        sys.mount_tmpfs(a, MountFlags::empty(), "").unwrap();
        sys.mount_tmpfs(b, MountFlags::empty(), "").unwrap();
        assert_eq!(sys.mounted(), [a, a, b]);
        sys.unmount(a).unwrap();
        assert_eq!(sys.mounted(), [a]);
        sys.unmount(a).unwrap();
        let error = sys.unmount(a).unwrap_err();
        assert_eq!(Errno::from_io_error(&error), Some(Errno::INVAL));
    }
}
