//! Applying one uncompressed layer tar stream to an empty snapshot directory
//! in overlayfs form: a whiteout `dir/.wh.NAME` becomes a 0/0 character
//! device `dir/NAME`, an opaque marker `dir/.wh..wh..opq` becomes the xattr
//! `trusted.overlay.opaque=y` on `dir`.
//!
//! Layers are untrusted. Every object is created with an `*at()` call
//! relative to a directory fd that was reached from the destination one
//! component at a time with `O_NOFOLLOW|O_DIRECTORY`, so a symlink (planted by
//! the layer itself or not) is never followed and nothing outside the
//! destination can be created or changed. The destination must be private to
//! the caller while this runs: the few path-based calls that cannot refuse a
//! symlink (`fchmodat` on devices and FIFOs) rely on nobody else renaming
//! things inside it.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{
    self as rfs, AtFlags, Dir, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;

/// What one layer held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries applied (whiteouts and opaque markers included).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// read layer: {0}
    #[error("read layer: {0}")]
    Read(io::Error),
    /// open layer destination {path}: {error}
    #[error("open layer destination {}: {error}", path.display())]
    Dest {
        /// The destination directory.
        path: PathBuf,
        /// The cause.
        error: io::Error,
    },
    /// layer entry {entry:?}: {refusal}
    #[error("layer entry {entry:?}: {refusal}")]
    Refused {
        /// The entry's path as the tar names it.
        entry: String,
        /// What is wrong with it.
        refusal: Refusal,
    },
    /// layer entry {entry:?}: {op}: {error}
    #[error("layer entry {entry:?}: {op}: {error}")]
    Io {
        /// The entry's path as the tar names it.
        entry: String,
        /// The step that failed.
        op: &'static str,
        /// The cause.
        error: io::Error,
    },
}

/// Why an entry was refused: it is hostile or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// absolute path
    #[error("absolute path")]
    Absolute,
    /// path escapes the layer root
    #[error("path escapes the layer root")]
    Escapes,
    /// parent {0:?} is a symlink
    #[error("parent {0:?} is a symlink")]
    ParentSymlink(String),
    /// parent {0:?} is not a directory
    #[error("parent {0:?} is not a directory")]
    ParentNotDir(String),
    /// the layer root can only be a directory
    #[error("the layer root can only be a directory")]
    RootNotDir,
    /// whiteout names nothing
    #[error("whiteout names nothing")]
    EmptyWhiteout,
    /// hard link target {target:?}: {refusal}
    #[error("hard link target {target:?}: {refusal}")]
    LinkTarget {
        /// The target as the tar names it.
        target: String,
        /// What is wrong with it.
        refusal: Box<Refusal>,
    },
    /// hard link target {0:?} does not exist in this layer
    #[error("hard link target {0:?} does not exist in this layer")]
    LinkTargetMissing(String),
    /// hard link target is the layer root
    #[error("hard link target is the layer root")]
    LinkToRoot,
    /// unsupported entry type {0:?}
    #[error("unsupported entry type {0:?}")]
    UnsupportedType(char),
    /// invalid {0} in header
    #[error("invalid {0} in header")]
    BadHeader(&'static str),
}

/// Unpack the tar stream `layer` into the existing directory `dest` (overlay
/// form).
///
/// `dest` should be empty: everything found in it is treated as if an earlier
/// entry of this layer had created it. On error, `dest` holds a partial
/// layer and should be removed by the caller. The stream is read through a
/// buffer, so bytes past the end-of-archive marker may be consumed: a caller
/// that hashes the stream should hash beneath `layer` and drain it after.
pub fn unpack_layer(layer: impl Read, dest: &Path) -> Result<UnpackStats, UnpackError> {
    let root = rfs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Dest {
        path: dest.to_owned(),
        error: e.into(),
    })?;
    let mut unpacker = Unpacker::new(root);
    // tar reads headers in 512-byte blocks; buffer them here so an
    // unbuffered caller does not pay a syscall per header. Large data reads
    // bypass this buffer.
    let mut archive = tar::Archive::new(BufReader::with_capacity(READ_BUF, layer));
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            continue;
        }
        unpacker.stats.entries += 1;
        if let Err(fail) = unpacker.apply(&mut entry) {
            return Err(fail.into_error(&entry.path_bytes()));
        }
    }
    unpacker.finish()
}

mod walk;
use walk::*;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Overlay's own xattrs (redirect, metacopy, origin, opaque) are never taken
/// from a layer: a layer states overlay semantics only through whiteout
/// files, and a forged redirect or metacopy could expose other lower data.
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
const READ_BUF: usize = 256 << 10;
const COPY_BUF: usize = 1 << 20;
/// Parent fds kept open along the current path; deeper parents are walked
/// with temporaries so a hostile layer cannot exhaust the fd table.
const MAX_CACHED_DEPTH: usize = 64;
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A failure inside one entry, turned into an [`UnpackError`] naming the
/// entry by the caller.
#[derive(Debug)]
enum Fail {
    Refused(Refusal),
    Io(&'static str, io::Error),
    /// A path component does not exist and was not to be created.
    Missing,
}

impl Fail {
    fn io(op: &'static str) -> impl Fn(Errno) -> Fail {
        move |e| Fail::Io(op, e.into())
    }

    fn into_error(self, entry: &[u8]) -> UnpackError {
        let entry = lossy(entry);
        match self {
            Fail::Refused(refusal) => UnpackError::Refused { entry, refusal },
            Fail::Io(op, error) => UnpackError::Io { entry, op, error },
            Fail::Missing => UnpackError::Io {
                entry,
                op: "open parent directory",
                error: Errno::NOENT.into(),
            },
        }
    }
}

impl From<Refusal> for Fail {
    fn from(r: Refusal) -> Self {
        Fail::Refused(r)
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Ownership, permissions and times of one entry.
#[derive(Debug, Clone, Copy)]
struct Meta {
    uid: Uid,
    gid: Gid,
    mode: Mode,
    atime: Timespec,
    mtime: Timespec,
}

impl Meta {
    fn from_header(h: &tar::Header) -> Result<Meta, Refusal> {
        let id = |v: io::Result<u64>, what| {
            v.ok()
                .and_then(|v| u32::try_from(v).ok())
                .filter(|&v| v != u32::MAX)
                .ok_or(Refusal::BadHeader(what))
        };
        let uid = Uid::from_raw(id(h.uid(), "uid")?);
        let gid = Gid::from_raw(id(h.gid(), "gid")?);
        let mode = h.mode().map_err(|_| Refusal::BadHeader("mode"))?;
        let secs = h.mtime().map_err(|_| Refusal::BadHeader("mtime"))?;
        let mtime = Timespec {
            tv_sec: i64::try_from(secs).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        Ok(Meta {
            uid,
            gid,
            mode: Mode::from_raw_mode(mode & 0o7777),
            atime: mtime,
            mtime,
        })
    }

    fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }

    /// Owner, then mode (chown clears setuid), then times, through an fd.
    fn apply_fd(&self, fd: BorrowedFd<'_>) -> Result<(), Fail> {
        rfs::fchown(fd, Some(self.uid), Some(self.gid)).map_err(Fail::io("chown"))?;
        rfs::fchmod(fd, self.mode).map_err(Fail::io("chmod"))?;
        rfs::futimens(fd, &self.times()).map_err(Fail::io("set times"))
    }
}

/// A directory whose metadata is applied once all entries are in, since
/// creating its children changes its mtime.
struct PendingDir {
    start: usize,
    end: usize,
    meta: Meta,
}

/// Xattrs of the current entry, stored in one reused buffer.
#[derive(Default)]
struct Xattrs {
    buf: Vec<u8>,
    /// (name start, name end = value start, value end) into `buf`.
    spans: Vec<(usize, usize, usize)>,
}

impl Xattrs {
    fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(name);
        let mid = self.buf.len();
        self.buf.extend_from_slice(value);
        self.spans.push((start, mid, self.buf.len()));
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|&(s, m, e)| (&self.buf[s..m], &self.buf[m..e]))
    }

    fn set_fd(&self, fd: BorrowedFd<'_>) -> Result<(), Fail> {
        for (name, value) in self.iter() {
            tolerate_xattr(rfs::fsetxattr(fd, name, value, XattrFlags::empty()), false)?;
        }
        Ok(())
    }

    /// Sets xattrs on `parent/name` without following it. There is no
    /// `lsetxattrat`, and a symlink or device cannot be opened for
    /// `fsetxattr`, so go through the parent fd's magic link: it pins the
    /// parent, and `lsetxattr` does not follow the last component.
    fn set_at(&self, parent: BorrowedFd<'_>, name: &[u8], path: &mut Vec<u8>) -> Result<(), Fail> {
        if self.spans.is_empty() {
            return Ok(());
        }
        path.clear();
        write!(path, "/proc/self/fd/{}/", parent.as_raw_fd()).expect("write to a Vec");
        path.extend_from_slice(name);
        for (xname, value) in self.iter() {
            let r = rfs::lsetxattr(path.as_slice(), xname, value, XattrFlags::empty());
            tolerate_xattr(r, true)?;
        }
        Ok(())
    }
}

/// Filesystems without xattr support, and the kernel refusing `user.*` on
/// symlinks and devices, are not worth failing a pull for (Docker and
/// containerd skip them too).
fn tolerate_xattr(r: rustix::io::Result<()>, special_file: bool) -> Result<(), Fail> {
    match r {
        Ok(()) | Err(Errno::OPNOTSUPP) => Ok(()),
        Err(Errno::PERM) if special_file => Ok(()),
        Err(e) => Err(Fail::io("set xattr")(e)),
    }
}

/// Parses a PAX decimal time such as `1700000000.123456789` or `-1.5`.
fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let (neg, v) = match v.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &[][..]),
    };
    if int.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let secs: i64 = std::str::from_utf8(int).ok()?.parse().ok()?;
    let mut nanos: i64 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    Some(match (neg, nanos) {
        (false, _) => Timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
        (true, 0) => Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        },
        (true, _) => Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nanos,
        },
    })
}

struct Unpacker {
    walker: Walker,
    stats: UnpackStats,
    /// The current entry's normalized path.
    norm: Vec<u8>,
    /// The current hard link target, normalized.
    link_norm: Vec<u8>,
    xattrs: Xattrs,
    /// Scratch for `/proc/self/fd/N/name` paths.
    proc_path: Vec<u8>,
    buf: Vec<u8>,
    dirs: Vec<PendingDir>,
    dir_paths: Vec<u8>,
}

impl Unpacker {
    fn new(root: OwnedFd) -> Self {
        Unpacker {
            walker: Walker {
                root,
                path: Vec::new(),
                levels: Vec::new(),
                deep: None,
            },
            stats: UnpackStats::default(),
            norm: Vec::new(),
            link_norm: Vec::new(),
            xattrs: Xattrs::default(),
            proc_path: Vec::new(),
            buf: vec![0; COPY_BUF],
            dirs: Vec::new(),
            dir_paths: Vec::new(),
        }
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Fail> {
        let header = entry.header();
        let mut kind = header.entry_type();
        let mut meta = Meta::from_header(header)?;
        {
            let raw = entry.path_bytes();
            // Pre-POSIX tars mark directories only by a trailing slash.
            if header.as_bytes()[156] == 0 && raw.ends_with(b"/") {
                kind = tar::EntryType::Directory;
            }
            normalize(&raw, &mut self.norm)?;
        }

        self.xattrs.clear();
        let mut atime = None;
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| Fail::Io("read pax header", e))?
        {
            for ext in exts {
                let ext = ext.map_err(|e| Fail::Io("read pax header", e))?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                    if !name.starts_with(OVERLAY_XATTR_PREFIX) {
                        self.xattrs.push(name, ext.value_bytes());
                    }
                } else if key == b"mtime" {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        meta.mtime = t;
                    }
                } else if key == b"atime" {
                    atime = parse_pax_time(ext.value_bytes());
                }
            }
        }
        meta.atime = atime.unwrap_or(meta.mtime);

        let Unpacker {
            walker,
            stats,
            norm,
            link_norm,
            xattrs,
            proc_path,
            buf,
            dirs,
            dir_paths,
        } = self;
        let (dir, name) = split_last(norm);

        if name.is_empty() {
            if kind != tar::EntryType::Directory {
                return Err(Refusal::RootNotDir.into());
            }
            xattrs.set_fd(walker.root.as_fd())?;
            dirs.push(PendingDir {
                start: 0,
                end: 0,
                meta,
            });
            return Ok(());
        }

        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if name == OPAQUE_MARKER {
                let parent = walker.parent(dir, true)?;
                let r = rfs::fsetxattr(parent, OPAQUE_XATTR, b"y", XattrFlags::empty());
                return r.map_err(Fail::io("set opaque xattr"));
            }
            match hidden {
                // Other AUFS metadata (`.wh..wh.plnk` and friends).
                _ if hidden.starts_with(WHITEOUT_PREFIX) => return Ok(()),
                b"" => return Err(Refusal::EmptyWhiteout.into()),
                b"." | b".." => return Err(Refusal::Escapes.into()),
                _ => {}
            }
            let parent = walker.parent(dir, true)?;
            remove_at(parent, hidden)?;
            rfs::mknodat(parent, hidden, FileType::CharacterDevice, Mode::empty(), 0)
                .map_err(Fail::io("create whiteout"))?;
            return meta_at(parent, hidden, &meta, false);
        }

        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let parent = walker.parent(dir, true)?;
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = create_replacing(parent, name, "create file", || {
                    rfs::openat(parent, name, flags, Mode::from_raw_mode(0o600))
                })?;
                let mut file = File::from(fd);
                let mut written = 0;
                loop {
                    let n = match entry.read(buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(Fail::Io("read file data", e)),
                    };
                    file.write_all(&buf[..n])
                        .map_err(|e| Fail::Io("write file", e))?;
                    written += n as u64;
                }
                // tar's reader ends quietly at a short stream.
                if written != entry.size() {
                    let e = io::Error::from(io::ErrorKind::UnexpectedEof);
                    return Err(Fail::Io("read file data", e));
                }
                stats.bytes += written;
                // Xattrs after chown: chown drops security.capability.
                rfs::fchown(&file, Some(meta.uid), Some(meta.gid)).map_err(Fail::io("chown"))?;
                rfs::fchmod(&file, meta.mode).map_err(Fail::io("chmod"))?;
                xattrs.set_fd(file.as_fd())?;
                rfs::futimens(&file, &meta.times()).map_err(Fail::io("set times"))
            }
            tar::EntryType::Directory => {
                let parent = walker.parent(dir, true)?;
                let mode = Mode::from_raw_mode(0o755);
                match rfs::mkdirat(parent, name, mode) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st = rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(Fail::io("stat existing file"))?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            remove_at(parent, name)?;
                            rfs::mkdirat(parent, name, mode)
                                .map_err(Fail::io("create directory"))?;
                        }
                    }
                    Err(e) => return Err(Fail::io("create directory")(e)),
                }
                if !xattrs.spans.is_empty() {
                    let fd = rfs::openat(parent, name, DIR_FLAGS, Mode::empty())
                        .map_err(Fail::io("open directory"))?;
                    xattrs.set_fd(fd.as_fd())?;
                }
                let start = dir_paths.len();
                dir_paths.extend_from_slice(norm);
                dirs.push(PendingDir {
                    start,
                    end: dir_paths.len(),
                    meta,
                });
                Ok(())
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(Refusal::BadHeader("symlink target"))?;
                let parent = walker.parent(dir, true)?;
                create_replacing(parent, name, "create symlink", || {
                    rfs::symlinkat(&*target, parent, name)
                })?;
                xattrs.set_at(parent, name, proc_path)?;
                meta_at(parent, name, &meta, false)
            }
            tar::EntryType::Link => {
                let raw = entry
                    .link_name_bytes()
                    .ok_or(Refusal::BadHeader("hard link target"))?;
                let target_err = |refusal| Refusal::LinkTarget {
                    target: lossy(&raw),
                    refusal: Box::new(refusal),
                };
                normalize(&raw, link_norm).map_err(target_err)?;
                if link_norm.is_empty() {
                    return Err(Refusal::LinkToRoot.into());
                }
                let missing = || Fail::from(Refusal::LinkTargetMissing(lossy(&raw)));
                let (tdir, tname) = split_last(link_norm);
                let tparent = walker.open_uncached(tdir).map_err(|f| match f {
                    Fail::Refused(r) => target_err(r).into(),
                    Fail::Missing => missing(),
                    f => f,
                })?;
                let parent = walker.parent(dir, true)?;
                if link_norm == norm {
                    // A link to itself: keep what is there.
                    return match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(_) => Ok(()),
                        Err(_) => Err(missing()),
                    };
                }
                // The target keeps its own metadata: it came with its entry.
                create_replacing(parent, name, "create hard link", || {
                    rfs::linkat(&tparent, tname, parent, name, AtFlags::empty())
                })
                .map_err(|f| match f {
                    Fail::Io(_, e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                        missing()
                    }
                    f => f,
                })
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (file_type, dev) = match kind {
                    tar::EntryType::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let major = entry.header().device_major();
                        let minor = entry.header().device_minor();
                        let bad = || Refusal::BadHeader("device number");
                        let major = major.ok().flatten().ok_or_else(bad)?;
                        let minor = minor.ok().flatten().ok_or_else(bad)?;
                        let file_type = if kind == tar::EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (file_type, rfs::makedev(major, minor))
                    }
                };
                let parent = walker.parent(dir, true)?;
                create_replacing(parent, name, "create device", || {
                    rfs::mknodat(parent, name, file_type, Mode::empty(), dev)
                })?;
                xattrs.set_at(parent, name, proc_path)?;
                meta_at(parent, name, &meta, true)
            }
            other => Err(Refusal::UnsupportedType(char::from(other.as_byte())).into()),
        }
    }

    /// Applies directory metadata, children before parents, skipping
    /// directories a later entry replaced.
    fn finish(mut self) -> Result<UnpackStats, UnpackError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        let paths = &self.dir_paths;
        // Descending order puts every path after its descendants; the sort is
        // stable, so the last entry for a path is applied last.
        dirs.sort_by(|a, b| paths[b.start..b.end].cmp(&paths[a.start..a.end]));
        for d in &dirs {
            let path = &paths[d.start..d.end];
            let fail = |f: Fail| f.into_error(path);
            if path.is_empty() {
                d.meta.apply_fd(self.walker.root.as_fd()).map_err(fail)?;
                continue;
            }
            let (dir, name) = split_last(path);
            let parent = match self.walker.parent(dir, false) {
                Ok(fd) => fd,
                Err(Fail::Refused(_) | Fail::Missing) => continue,
                Err(f) => return Err(fail(f)),
            };
            let fd = match rfs::openat(parent, name, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(fail(Fail::io("open directory")(e))),
            };
            d.meta.apply_fd(fd.as_fd()).map_err(fail)?;
        }
        Ok(self.stats)
    }
}

/// Owner, mode (not for symlinks, whose mode Linux ignores) and times of
/// `parent/name`, never following it.
fn meta_at(parent: BorrowedFd<'_>, name: &[u8], meta: &Meta, chmod: bool) -> Result<(), Fail> {
    rfs::chownat(
        parent,
        name,
        Some(meta.uid),
        Some(meta.gid),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(Fail::io("chown"))?;
    if chmod {
        // fchmodat cannot refuse a symlink, but `name` was created just now
        // inside a pinned parent that nobody else writes to.
        rfs::chmodat(parent, name, meta.mode, AtFlags::empty()).map_err(Fail::io("chmod"))?;
    }
    rfs::utimensat(parent, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(Fail::io("set times"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        let mut out = Vec::new();
        for (raw, want) in [
            ("./a/b", "a/b"),
            ("a//b/./c/", "a/b/c"),
            ("./", ""),
            (".", ""),
            ("", ""),
            ("././x", "x"),
        ] {
            normalize(raw.as_bytes(), &mut out).unwrap();
            assert_eq!(out, want.as_bytes(), "{raw}");
        }
        assert_eq!(normalize(b"/etc", &mut out), Err(Refusal::Absolute));
        assert_eq!(normalize(b"a/../../x", &mut out), Err(Refusal::Escapes));
        assert_eq!(normalize(b"..", &mut out), Err(Refusal::Escapes));
        assert_eq!(normalize(b"a/..", &mut out), Err(Refusal::Escapes));
    }

    #[test]
    fn split_last_component() {
        assert_eq!(split_last(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_last(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(split_last(b""), (&b""[..], &b""[..]));
    }

    #[test]
    fn pax_times() {
        let t = |s: &str| parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("12.1234567891"), Some((12, 123_456_789)));
        assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        assert_eq!(t("x"), None);
        assert_eq!(t(".5"), None);
        assert_eq!(t("1.2e3"), None);
    }
}
