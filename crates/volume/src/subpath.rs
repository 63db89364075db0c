//! A volumeMount's subPath, resolved as kubelet resolves it
//! (pkg/volume/util/subpath/subpath_linux.go): a subPath that is, or passes through,
//! a symbolic link resolving outside its volume is refused (CVE-2017-1002101), and
//! the one resolved is opened component by component with `O_NOFOLLOW` from the
//! volume's own directory, so that a container swapping a directory for a link
//! between the check and the mount gains nothing: what is bind-mounted is the open
//! file descriptor (`/proc/self/fd/N`), not a path looked up again.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

/// Why a subPath is refused before anything is opened (kubelet's makeMounts
/// messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubPathRefused {
    /// error SubPath `{0}` must not be an absolute path
    #[error("error SubPath `{0}` must not be an absolute path")]
    Absolute(String),
    /// unable to provision SubPath `{0}`: must not contain '..'
    #[error("unable to provision SubPath `{0}`: must not contain '..'")]
    Backsteps(String),
}

/// kubelet's checks of a subPath (or an expanded subPathExpr) before it touches
/// the volume: not absolute, no `..` component
/// (pkg/kubelet/kubelet_pods.go makeMounts, ValidatePathNoBacksteps).
pub fn check(sub_path: &str) -> Result<(), SubPathRefused> {
    let path = Path::new(sub_path);
    if path.is_absolute() {
        return Err(SubPathRefused::Absolute(sub_path.to_string()));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(SubPathRefused::Backsteps(sub_path.to_string()));
    }
    Ok(())
}

/// What resolving a subPath found wrong.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The subPath resolves (through a symbolic link) outside the volume.
    #[error("it resolves to {}, outside the volume", .0.display())]
    Outside(PathBuf),
    /// A component changed into a symbolic link (or a non-directory) while it was
    /// being opened.
    #[error("{} is a symbolic link or not a directory", .0.display())]
    NotDirectory(PathBuf),
    /// The file system refused.
    #[error("{verb} {}: {source}", path.display())]
    Io {
        /// What was being done.
        verb: &'static str,
        /// To what.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
}

fn io_err<'a>(verb: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> ResolveError + 'a {
    move |e| ResolveError::Io {
        verb,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Opens `base` (which must not be a symbolic link itself) for walking below it.
fn open_base(base: &Path) -> Result<OwnedFd, ResolveError> {
    rustix::fs::open(
        base,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open", base))
}

/// Opens `name` in `parent` without following a link: an `O_PATH` descriptor of
/// what is there, and its type.
fn open_beneath(
    parent: &OwnedFd,
    name: &std::ffi::OsStr,
    shown: &Path,
) -> Result<(OwnedFd, FileType), ResolveError> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open", shown))?;
    let stat = rustix::fs::fstat(&fd).map_err(io_err("stat", shown))?;
    Ok((fd, FileType::from_raw_mode(stat.st_mode)))
}

/// Makes the missing directories of `sub_path` below `base` with `mode`, as
/// kubelet's doSafeMakeDir: the part that exists is resolved and must stay inside
/// `base`, and each new directory is made with mkdirat in its parent opened
/// without following links (so a link planted meanwhile makes it fail).
pub fn safe_make_dir(base: &Path, sub_path: &Path, mode: u32) -> Result<(), ResolveError> {
    let base = std::fs::canonicalize(base).map_err(|source| ResolveError::Io {
        verb: "resolve",
        path: base.to_path_buf(),
        source,
    })?;
    // The longest prefix that exists, resolved.
    let parts: Vec<_> = sub_path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let mut existing = parts.len();
    let mut resolved = base.clone();
    while existing > 0 {
        let prefix: PathBuf = parts[..existing].iter().collect();
        match std::fs::canonicalize(base.join(&prefix)) {
            Ok(p) => {
                resolved = p;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => existing -= 1,
            Err(source) => {
                return Err(ResolveError::Io {
                    verb: "resolve",
                    path: base.join(prefix),
                    source,
                })
            }
        }
    }
    if !resolved.starts_with(&base) {
        return Err(ResolveError::Outside(resolved));
    }
    let mut dir = open_below(&base, resolved.strip_prefix(&base).unwrap_or(Path::new("")))?;
    let mut shown = resolved;
    for part in &parts[existing..] {
        let name = part.as_os_str();
        shown.push(name);
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io_err("create", &shown)(e)),
        }
        let (fd, kind) = open_beneath(&dir, name, &shown)?;
        if kind != FileType::Directory {
            return Err(ResolveError::NotDirectory(shown));
        }
        // Past the umask, as kubelet chmods each directory it makes.
        rustix::fs::chmodat(
            &dir,
            name,
            Mode::from_raw_mode(mode),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(io_err("chmod", &shown))?;
        dir = fd;
    }
    Ok(())
}

/// Opens `rel` below `base` component by component with `O_NOFOLLOW`: every
/// directory on the way must be a directory, not a link (kubelet's doSafeOpen).
fn open_below(base: &Path, rel: &Path) -> Result<OwnedFd, ResolveError> {
    let mut fd = open_base(base)?;
    let mut shown = base.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        let Component::Normal(name) = part else {
            continue;
        };
        shown.push(name);
        let (next, kind) = open_beneath(&fd, name, &shown)?;
        let last = i + 1 == parts.len();
        if kind == FileType::Symlink || (!last && kind != FileType::Directory) {
            return Err(ResolveError::NotDirectory(shown));
        }
        fd = next;
    }
    Ok(fd)
}

/// The subPath `sub_path` of the volume at `base`, opened: links inside the
/// volume that stay inside it are followed once (kubelet's EvalSymlinks), the
/// result must be inside the volume, and is then opened without following any
/// link. Returns an `O_PATH` descriptor and whether it is a directory.
pub fn safe_open(base: &Path, sub_path: &Path) -> Result<(OwnedFd, bool), ResolveError> {
    let resolve = |p: &Path| {
        std::fs::canonicalize(p).map_err(|source| ResolveError::Io {
            verb: "resolve",
            path: p.to_path_buf(),
            source,
        })
    };
    let base = resolve(base)?;
    let path = base.join(sub_path);
    let resolved = std::fs::canonicalize(&path).map_err(|source| ResolveError::Io {
        verb: "resolve",
        path: path.clone(),
        source,
    })?;
    let Ok(rel) = resolved.strip_prefix(&base) else {
        return Err(ResolveError::Outside(resolved));
    };
    let fd = open_below(&base, rel)?;
    let stat = rustix::fs::fstat(&fd).map_err(io_err("stat", &resolved))?;
    let dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
    Ok((fd, dir))
}

/// The path through which the kernel reaches `fd` itself (`/proc/self/fd/N`):
/// a bind mount of it mounts what is open, whatever the path now names.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}
