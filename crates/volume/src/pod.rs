//! One pod's volumes under its directory: `volumes/<name>` for each emptyDir, `shm`
//! for its `/dev/shm`.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use rustix::io::Errno;

use crate::subpath;
use crate::syscall::{LinuxSyscall, MountFlags, Syscall};
use crate::{tmpfs_options, Owner, TeardownError, UnmountError, VolumeError, SHM_SIZE};

/// The mode of an emptyDir's directory (and of its tmpfs's root): anyone in the pod
/// may write it, whatever user its containers run as (pkg/volume/emptydir
/// empty_dir.go `perm`).
const EMPTY_DIR_MODE: u32 = 0o777;

/// The mode of the root of the pod's `/dev/shm`, as containerd makes it.
const SHM_MODE: u32 = 0o1777;

/// Where an emptyDir keeps its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// The node's disk, under the pod's directory (`medium: ""`).
    Disk,
    /// A tmpfs of `size` bytes (`medium: Memory`; the size by
    /// [`memory_empty_dir_size`](crate::memory_empty_dir_size)).
    Memory {
        /// The tmpfs's size in bytes; 0 is refused (tmpfs would read it as unlimited).
        size: u64,
    },
    /// A hugetlbfs of pages of `page_size` bytes (`medium: HugePages` or
    /// `HugePages-<size>`; the size from the pod's hugepages requests, as
    /// kubelet's `getPageSizeMountOption` picks it).
    HugePages {
        /// The page size in bytes (2 MiB, 1 GiB).
        page_size: u64,
    },
}

/// A hostPath volume's `type`: what must be at the path before the pod starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostPathType {
    /// `""`: no check.
    #[default]
    Unset,
    /// A directory, made (with its parents) when missing.
    DirectoryOrCreate,
    /// An existing directory.
    Directory,
    /// A file, made when missing.
    FileOrCreate,
    /// An existing file.
    File,
    /// An existing UNIX socket.
    Socket,
    /// An existing character device.
    CharDevice,
    /// An existing block device.
    BlockDevice,
}

/// A hostPath `type` the API does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hostPath type {0:?}")]
pub struct UnknownHostPathType(pub String);

impl FromStr for HostPathType {
    type Err = UnknownHostPathType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "" => HostPathType::Unset,
            "DirectoryOrCreate" => HostPathType::DirectoryOrCreate,
            "Directory" => HostPathType::Directory,
            "FileOrCreate" => HostPathType::FileOrCreate,
            "File" => HostPathType::File,
            "Socket" => HostPathType::Socket,
            "CharDevice" => HostPathType::CharDevice,
            "BlockDevice" => HostPathType::BlockDevice,
            other => return Err(UnknownHostPathType(other.to_string())),
        })
    }
}

/// The volumes of the pod whose data directory is `pod_dir`. Every set-up is
/// idempotent: each start of each container asks again for the volumes it mounts,
/// and gets the same directory with the same (single) tmpfs on it.
#[derive(Debug)]
pub struct PodVolumes<S = LinuxSyscall> {
    pod_dir: PathBuf,
    sys: S,
}

impl PodVolumes<LinuxSyscall> {
    /// The volumes under `pod_dir`, mounted for real.
    pub fn new(pod_dir: impl Into<PathBuf>) -> Self {
        Self::with_syscall(pod_dir, LinuxSyscall)
    }
}

impl<S: Syscall> PodVolumes<S> {
    /// The volumes under `pod_dir`, through `sys`.
    pub fn with_syscall(pod_dir: impl Into<PathBuf>, sys: S) -> Self {
        PodVolumes {
            pod_dir: pod_dir.into(),
            sys,
        }
    }

    /// The system calls in use (a test reads its double's record here).
    pub fn syscall(&self) -> &S {
        &self.sys
    }

    /// The directory of emptyDir `name`: `<pod dir>/volumes/<name>`.
    pub fn empty_dir_path(&self, name: &str) -> Result<PathBuf, VolumeError> {
        let mut parts = Path::new(name).components();
        match (parts.next(), parts.next()) {
            (Some(Component::Normal(part)), None) if part == name => {
                Ok(self.pod_dir.join("volumes").join(name))
            }
            _ => Err(VolumeError::BadName(name.to_string())),
        }
    }

    /// The directory the pod's `/dev/shm` is mounted on: `<pod dir>/shm`.
    pub fn shm_path(&self) -> PathBuf {
        self.pod_dir.join("shm")
    }

    /// Sets emptyDir `name` up and returns its directory: made with mode 0777
    /// (kubelet chmods past the umask), and with `Medium::Memory` a tmpfs
    /// (`nosuid,nodev`, root mode 0777) of that size mounted on it, unless one is
    /// already.
    pub fn set_up_empty_dir(&self, name: &str, medium: Medium) -> Result<PathBuf, VolumeError> {
        let owner = || Owner::Volume(name.to_string());
        let dir = self.empty_dir_path(name)?;
        make_dir(&dir, EMPTY_DIR_MODE, owner)?;
        match medium {
            Medium::Disk => {}
            Medium::Memory { size } => {
                let data = tmpfs_options(Some(size), EMPTY_DIR_MODE).map_err(|source| {
                    VolumeError::TmpfsOptions {
                        owner: owner(),
                        source,
                    }
                })?;
                let flags = MountFlags::NOSUID | MountFlags::NODEV;
                self.mount_once(&dir, Fs::Tmpfs(flags, &data), owner)?;
            }
            Medium::HugePages { page_size } => {
                let data = format!("pagesize={page_size}");
                self.mount_once(&dir, Fs::Hugetlbfs(&data), owner)?;
            }
        }
        Ok(dir)
    }

    /// Sets the pod's `/dev/shm` up and returns its directory: a tmpfs
    /// `nosuid,nodev,noexec,mode=1777` of [`SHM_SIZE`], as containerd makes a
    /// sandbox's, unless one is mounted there already.
    pub fn set_up_shm(&self) -> Result<PathBuf, VolumeError> {
        let owner = || Owner::Shm;
        let dir = self.shm_path();
        make_dir(&dir, SHM_MODE, owner)?;
        let data = tmpfs_options(Some(SHM_SIZE), SHM_MODE).map_err(|source| {
            VolumeError::TmpfsOptions {
                owner: owner(),
                source,
            }
        })?;
        let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        self.mount_once(&dir, Fs::Tmpfs(flags, &data), owner)?;
        Ok(dir)
    }

    /// hostPath volume `name`: `path` itself, after kubelet's check of its `type`
    /// ([`host_path::check_type`](crate::host_path::check_type)). With no type,
    /// kubelet checks nothing; podrun still wants something there (the runtime's
    /// bind would fail on a missing source).
    pub fn set_up_host_path(
        &self,
        name: &str,
        path: &Path,
        kind: HostPathType,
    ) -> Result<PathBuf, VolumeError> {
        if kind == HostPathType::Unset && !path.exists() {
            return Err(VolumeError::HostPathMissing {
                volume: name.to_string(),
                path: path.to_path_buf(),
            });
        }
        crate::host_path::check_type(path, kind).map_err(|source| VolumeError::HostPathType {
            volume: name.to_string(),
            source,
        })?;
        Ok(path.to_path_buf())
    }

    /// Where container `container`'s volumeMount number `index` takes its subPath
    /// from: `<pod dir>/volume-subpaths/<volume>/<container>/<index>`, as kubelet's
    /// getSubpathBindTarget.
    pub fn sub_path_target(
        &self,
        volume: &str,
        container: &str,
        index: usize,
    ) -> Result<PathBuf, VolumeError> {
        self.empty_dir_path(volume)?;
        self.empty_dir_path(container)?;
        Ok(self
            .pod_dir
            .join("volume-subpaths")
            .join(volume)
            .join(container)
            .join(index.to_string()))
    }

    /// volumeMount `index` of `container`: `sub_path` of volume `volume` set up at
    /// `volume_dir`, as kubelet's makeMounts and PrepareSafeSubpath make it
    /// (pkg/kubelet/kubelet_pods.go, pkg/volume/util/subpath/subpath_linux.go).
    /// An absolute path or a `..` is refused; missing directories are made with
    /// the volume's mode (kubelet's SafeMakeDir); a path that is or passes
    /// through a link resolving outside the volume is refused; what it names (a
    /// directory or a file) is opened without following links and its open
    /// descriptor bind-mounted on [`sub_path_target`](Self::sub_path_target),
    /// which is returned for the runtime to bind. A mount left there by an earlier
    /// start of the container is replaced.
    pub fn sub_path(
        &self,
        volume: &str,
        container: &str,
        index: usize,
        volume_dir: &Path,
        sub_path: &str,
    ) -> Result<PathBuf, VolumeError> {
        subpath::check(sub_path).map_err(|source| VolumeError::SubPathRefused {
            volume: volume.to_string(),
            source,
        })?;
        let resolve = |source| VolumeError::SubPath {
            volume: volume.to_string(),
            sub_path: sub_path.to_string(),
            source,
        };
        let sub = Path::new(sub_path);
        if let Err(e) = std::fs::metadata(volume_dir.join(sub)) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(resolve(subpath::ResolveError::Io {
                    verb: "stat",
                    path: volume_dir.join(sub),
                    source: e,
                }));
            }
            let mode = std::fs::metadata(volume_dir)
                .map(|m| m.permissions().mode() & 0o7777)
                .map_err(|source| {
                    resolve(subpath::ResolveError::Io {
                        verb: "stat",
                        path: volume_dir.to_path_buf(),
                        source,
                    })
                })?;
            subpath::safe_make_dir(volume_dir, sub, mode).map_err(resolve)?;
        }
        let (fd, is_dir) = subpath::safe_open(volume_dir, sub).map_err(resolve)?;
        let target = self.sub_path_target(volume, container, index)?;
        let target = self.prepare_sub_path_target(volume, &target, is_dir)?;
        self.sys
            .bind_mount(&subpath::fd_path(&fd), &target)
            .map_err(|source| VolumeError::SubPathBind {
                volume: volume.to_string(),
                sub_path: sub_path.to_string(),
                target: target.clone(),
                source,
            })?;
        Ok(target)
    }

    /// The bind target of a subPath, free and of the right kind (kubelet's
    /// prepareSubpathTarget: a directory 0750, or an empty file 0640), resolved.
    fn prepare_sub_path_target(
        &self,
        volume: &str,
        target: &Path,
        is_dir: bool,
    ) -> Result<PathBuf, VolumeError> {
        let owner = || Owner::Volume(volume.to_string());
        let fail = |path: &Path| {
            let path = path.to_path_buf();
            move |source: io::Error| VolumeError::CreateDir {
                owner: owner(),
                path,
                source,
            }
        };
        let parent = target
            .parent()
            .expect("the target is below the pod's directory");
        std::fs::create_dir_all(parent).map_err(fail(parent))?;
        let parent = std::fs::canonicalize(parent).map_err(fail(parent))?;
        let target = parent.join(target.file_name().expect("an index"));
        // A container started again: its old bind goes first (only this
        // container's start uses it).
        let points = self
            .sys
            .mount_points()
            .map_err(|source| VolumeError::MountTable {
                owner: owner(),
                source,
            })?;
        for _ in points.iter().filter(|p| **p == target) {
            if let Err(source) = self.sys.unmount(&target) {
                if !is_gone(&source) {
                    return Err(VolumeError::Mount {
                        owner: owner(),
                        target,
                        source,
                    });
                }
            }
        }
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() == is_dir && !m.file_type().is_symlink() => return Ok(target),
            // The kind changed since the last start: only an empty directory or a
            // file of ours is removed, never through a link.
            Ok(m) if m.is_dir() => std::fs::remove_dir(&target).map_err(fail(&target))?,
            Ok(_) => std::fs::remove_file(&target).map_err(fail(&target))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(&target)(e)),
        }
        if is_dir {
            std::fs::DirBuilder::new()
                .mode(0o750)
                .create(&target)
                .map_err(fail(&target))?;
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .open(&target)
                .map_err(fail(&target))?;
        }
        Ok(target)
    }

    /// Takes every mount at or below the pod's directory down (its tmpfs volumes,
    /// its `/dev/shm`, whatever else was left there), deepest first and the top of
    /// a stack first, lazily. Goes on past failures and returns them all; a mount
    /// already gone is no failure. The mount table, not a record, says what is
    /// there, so a teardown after a crash finds everything.
    pub fn unmount_all(&self) -> Result<(), TeardownError> {
        // The kernel shows resolved paths: a pod directory under a symbolic link
        // must be compared resolved too.
        let root = std::fs::canonicalize(&self.pod_dir).unwrap_or_else(|_| self.pod_dir.clone());
        let mut points: Vec<PathBuf> = self
            .sys
            .mount_points()
            .map_err(TeardownError::MountTable)?
            .into_iter()
            .filter(|p| p.starts_with(&root))
            .collect();
        // The table lists a stack bottom first; the sort below keeps this order
        // among equals.
        points.reverse();
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let mut errors = Vec::new();
        for target in points {
            if let Err(source) = self.sys.unmount(&target) {
                if !is_gone(&source) {
                    errors.push(UnmountError { target, source });
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TeardownError::Unmount(errors))
        }
    }

    /// Mounts `fs` on `dir` unless the mount table shows a mount there already.
    fn mount_once(
        &self,
        dir: &Path,
        fs: Fs<'_>,
        owner: impl Fn() -> Owner,
    ) -> Result<(), VolumeError> {
        // Resolved, to compare with the kernel's table (and to mount there).
        let dir = std::fs::canonicalize(dir).map_err(|source| VolumeError::CreateDir {
            owner: owner(),
            path: dir.to_path_buf(),
            source,
        })?;
        let points = self
            .sys
            .mount_points()
            .map_err(|source| VolumeError::MountTable {
                owner: owner(),
                source,
            })?;
        if points.contains(&dir) {
            return Ok(());
        }
        let mounted = match fs {
            Fs::Tmpfs(flags, data) => self.sys.mount_tmpfs(&dir, flags, data),
            Fs::Hugetlbfs(data) => self.sys.mount_hugetlbfs(&dir, data),
        };
        mounted.map_err(|source| VolumeError::Mount {
            owner: owner(),
            target: dir.clone(),
            source,
        })
    }
}

/// A file system a volume mounts, with its flags and options.
#[derive(Debug, Clone, Copy)]
enum Fs<'a> {
    Tmpfs(MountFlags, &'a str),
    Hugetlbfs(&'a str),
}

/// Makes `dir` (and its parents) when missing and gives it `mode` past the umask.
/// An existing directory keeps its mode: a container may have changed it.
fn make_dir(dir: &Path, mode: u32, owner: impl Fn() -> Owner) -> Result<(), VolumeError> {
    let fail = |source: io::Error| VolumeError::CreateDir {
        owner: owner(),
        path: dir.to_path_buf(),
        source,
    };
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(fail)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(fail)
}

/// Nothing mounted there, or no such path: the mount is already gone.
fn is_gone(error: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(error),
        Some(Errno::INVAL) | Some(Errno::NOENT)
    )
}

#[cfg(test)]
mod tests;
