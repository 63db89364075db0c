//! The two file rules every podrun crate keeps, in one place:
//!
//! - [`write_atomic`] and [`commit`]: a record is either all there or not at all
//!   after a crash or power loss. The data goes to a temporary file of its own
//!   in the same directory, is fsynced, renamed over the target, and the
//!   directory is fsynced so that the rename itself is durable (ext4's and
//!   XFS's rule: a rename is only on disk once its directory is).
//! - [`check_id`]: an ID (container, sandbox) that becomes a path component is
//!   checked first, so that no `..`, `/` or empty name ever reaches code that
//!   creates or removes files (a Rust CRI runtime once let an empty log path
//!   delete the host's /bin).

#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Write `data` to `path` durably and atomically (mode 0644, or the mode of
/// [`write_atomic_mode`]): readers see the old content or the new, never a part.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, data, 0o644)
}

/// [`write_atomic`] with the file's permission bits (0600 for credentials).
pub fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let (temp, mut file) = temp_beside(path, mode)?;
    let written = file
        .write_all(data)
        .and_then(|()| commit(file, &temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Make `temp` (whose content `file` wrote) the file `target`, durably: fsync
/// the data, rename, fsync the directory. The caller removes `temp` on error.
pub fn commit(file: File, temp: &Path, target: &Path) -> io::Result<()> {
    file.sync_all()?;
    drop(file);
    std::fs::rename(temp, target)?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// A new file beside `path`, for [`commit`]: unique per process and call, so
/// that two writers of one record (threads or processes) never share one.
pub fn temp_beside(path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a path without a file name"))?;
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.{n}.tmp", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)?;
    Ok((temp, file))
}

/// An ID that must not become a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ID {0:?}: 1 to 128 letters, digits, '_', '-' or '.', not starting with '.'")]
pub struct InvalidId(pub String);

/// Check an ID before it becomes part of a path: 1 to 128 bytes of ASCII
/// letters, digits, `_`, `-` and `.`, not starting with `.` (so neither `.`,
/// `..` nor a hidden name).
pub fn check_id(id: &str) -> Result<(), InvalidId> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_write_replaces_the_whole_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod.json");
        write_atomic(&path, b"a long first version").unwrap();
        write_atomic(&path, b"v2").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"v2");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("pod.json")]);
    }

    #[test]
    fn the_mode_is_the_one_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        write_atomic_mode(&path, b"{}", 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_failed_write_leaves_the_old_content_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        write_atomic(&path, b"old").unwrap();
        // A directory where the target is: the rename fails.
        let blocked = dir.path().join("sub");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), b"").unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let temps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(temps, 0);
    }

    #[test]
    fn ids_that_could_escape_a_directory_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(check_id(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["default-web-0123456789", "a", "a.b_c-d", &"x".repeat(128)] {
            assert_eq!(check_id(good), Ok(()), "{good:?} was refused");
        }
    }
}
