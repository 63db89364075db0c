//! Walking a layer's paths safely: parent directories opened component by
//! component with `O_NOFOLLOW` relative to the layer root, with a cache of the
//! last parent's fds, and creation that replaces what stood at a name.

use super::*;

/// One open directory on the path of the cached parent.
pub(super) struct Level {
    /// End of this component in `Walker::path`.
    pub(super) end: usize,
    pub(super) fd: OwnedFd,
}

/// Opens parent directories safely, keeping the fds along the last parent
/// path so consecutive entries in one directory cost no extra opens.
///
/// The cache cannot go stale: an entry only ever removes something at
/// `parent/name`, which is never an ancestor of its own parent, and the next
/// entry reuses only ancestors of that parent.
pub(super) struct Walker {
    pub(super) root: OwnedFd,
    /// The cached parent path, components joined by `/`.
    pub(super) path: Vec<u8>,
    pub(super) levels: Vec<Level>,
    /// The parent when it is deeper than `MAX_CACHED_DEPTH`.
    pub(super) deep: Option<OwnedFd>,
}

impl Walker {
    /// Opens the directory `dir` (a normalized path, "" for the root),
    /// creating missing components as 0755 root directories if `create`.
    pub(super) fn parent(&mut self, dir: &[u8], create: bool) -> Result<BorrowedFd<'_>, Fail> {
        let common = dir
            .iter()
            .zip(&self.path)
            .take_while(|(a, b)| a == b)
            .count();
        let keep = self
            .levels
            .iter()
            .take_while(|l| l.end <= common && (l.end == dir.len() || dir[l.end] == b'/'))
            .count();
        self.levels.truncate(keep);
        self.path.truncate(self.levels.last().map_or(0, |l| l.end));

        let mut deep: Option<OwnedFd> = None;
        let mut pos = self.path.len();
        while pos < dir.len() {
            if pos > 0 {
                pos += 1; // the '/' before the next component
            }
            let end = dir[pos..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(dir.len(), |i| pos + i);
            let comp = &dir[pos..end];
            let base = match (&deep, self.levels.last()) {
                (Some(fd), _) => fd.as_fd(),
                (None, Some(level)) => level.fd.as_fd(),
                (None, None) => self.root.as_fd(),
            };
            let fd = open_dir(base, comp, create, &dir[..end])?;
            if deep.is_none() && self.levels.len() < MAX_CACHED_DEPTH {
                if !self.path.is_empty() {
                    self.path.push(b'/');
                }
                self.path.extend_from_slice(comp);
                self.levels.push(Level { end, fd });
            } else {
                deep = Some(fd);
            }
            pos = end;
        }
        Ok(match deep {
            Some(fd) => {
                let fd: &OwnedFd = self.deep.insert(fd);
                fd.as_fd()
            }
            None => self
                .levels
                .last()
                .map_or(self.root.as_fd(), |l| l.fd.as_fd()),
        })
    }

    /// Opens `dir` without the cache and without creating anything, for
    /// hard link targets (whose parent is needed alongside the entry's own).
    pub(super) fn open_uncached(&self, dir: &[u8]) -> Result<OwnedFd, Fail> {
        let mut cur = rfs::openat(&self.root, c".", DIR_FLAGS, Mode::empty())
            .map_err(Fail::io("open layer root"))?;
        if dir.is_empty() {
            return Ok(cur);
        }
        let mut pos = 0;
        for comp in dir.split(|&b| b == b'/') {
            pos += comp.len();
            cur = open_dir(cur.as_fd(), comp, false, &dir[..pos])?;
            pos += 1;
        }
        Ok(cur)
    }
}

/// Opens the directory `comp` in `base` without following a symlink,
/// creating it as a 0755 root directory if missing and `create`. `prefix` is
/// the path walked so far, for errors.
pub(super) fn open_dir(
    base: BorrowedFd<'_>,
    comp: &[u8],
    create: bool,
    prefix: &[u8],
) -> Result<OwnedFd, Fail> {
    match rfs::openat(base, comp, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) if create => {}
        Err(Errno::NOENT) => return Err(Fail::Missing),
        Err(e) => return Err(not_a_dir(base, comp, prefix, e)),
    }
    let created = match rfs::mkdirat(base, comp, Mode::from_raw_mode(0o755)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => return Err(Fail::io("create parent directory")(e)),
    };
    let fd = rfs::openat(base, comp, DIR_FLAGS, Mode::empty())
        .map_err(|e| not_a_dir(base, comp, prefix, e))?;
    if created {
        // Implicit parents are 0755 root whatever the umask or a setgid
        // grandparent would make them.
        rfs::fchown(&fd, Some(Uid::ROOT), Some(Gid::ROOT)).map_err(Fail::io("chown"))?;
        rfs::fchmod(&fd, Mode::from_raw_mode(0o755)).map_err(Fail::io("chmod"))?;
    }
    Ok(fd)
}

pub(super) fn not_a_dir(base: BorrowedFd<'_>, comp: &[u8], prefix: &[u8], e: Errno) -> Fail {
    if e != Errno::LOOP && e != Errno::NOTDIR {
        return Fail::io("open parent directory")(e);
    }
    match rfs::statat(base, comp, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
            Refusal::ParentSymlink(lossy(prefix)).into()
        }
        _ => Refusal::ParentNotDir(lossy(prefix)).into(),
    }
}

/// Writes the normalized form of the entry path `raw` into `out`: no `./`,
/// no empty or `.` components, no trailing slash; "" is the root.
pub(super) fn normalize(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Refusal> {
    out.clear();
    if raw.first() == Some(&b'/') {
        return Err(Refusal::Absolute);
    }
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(Refusal::Escapes),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(comp);
            }
        }
    }
    Ok(())
}

/// Splits a normalized path into its parent and last component.
pub(super) fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Removes whatever is at `parent/name` (a directory with its tree).
pub(super) fn remove_at(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), Fail> {
    match rfs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) => remove_tree(parent, name),
        Err(e) => Err(Fail::io("remove existing file")(e)),
    }
}

pub(super) fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), Fail> {
    let op = "remove existing directory";
    let dir = rfs::openat(parent, name, DIR_FLAGS, Mode::empty()).map_err(Fail::io(op))?;
    let fd = dir.as_fd();
    let mut children: Vec<CString> = Vec::new();
    for child in Dir::read_from(fd).map_err(Fail::io(op))? {
        let child = child.map_err(Fail::io(op))?;
        let n = child.file_name();
        if n != c"." && n != c".." {
            children.push(n.to_owned());
        }
    }
    for child in &children {
        match rfs::unlinkat(fd, child.as_c_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ISDIR) => remove_tree(fd, child.as_bytes())?,
            Err(e) => return Err(Fail::io(op)(e)),
        }
    }
    rfs::unlinkat(parent, name, AtFlags::REMOVEDIR).map_err(Fail::io(op))
}

/// Runs `create`; if something is already at `parent/name`, removes it and
/// runs `create` once more.
pub(super) fn create_replacing<T>(
    parent: BorrowedFd<'_>,
    name: &[u8],
    op: &'static str,
    mut create: impl FnMut() -> rustix::io::Result<T>,
) -> Result<T, Fail> {
    match create() {
        Err(Errno::EXIST) => {
            remove_at(parent, name)?;
            create().map_err(Fail::io(op))
        }
        r => r.map_err(Fail::io(op)),
    }
}
