//! A hostPath volume's `type` checked as kubelet checks it
//! (pkg/volume/hostpath/host_path.go checkType, typeMatchedOrError, makeDir,
//! makeFile; pkg/volume/util/hostutil/hostutil_linux.go getFileType): the kind of
//! what is at the path (links followed), made first for the `…OrCreate` types.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::HostPathType;

/// Why a hostPath failed its type check, in kubelet's words (the text after
/// `MountVolume.SetUp failed for volume "NAME" : `).
#[derive(Debug, thiserror::Error)]
pub enum HostPathTypeError {
    /// Nothing is at the path.
    #[error("hostPath {} doesn't exist", .0.display())]
    Missing(PathBuf),
    /// Something of another kind is there.
    #[error("hostPath type check failed: {} is not a {expected}, it's a {found}", path.display())]
    Mismatch {
        /// The path.
        path: PathBuf,
        /// What the type wants, as kubelet says it ("directory", "socket file" …).
        expected: &'static str,
        /// What is there, as the API names it ("File", "Directory" …).
        found: &'static str,
    },
    /// What is there has a kind the API has no name for (a FIFO …), or cannot be
    /// looked at.
    #[error("hostPath type check failed, {} is not a {expected}, unable to determine its type: {cause}", path.display())]
    Unknown {
        /// The path.
        path: PathBuf,
        /// What the type wants.
        expected: &'static str,
        /// Why its kind is unknown.
        cause: String,
    },
    /// The directory or file could not be made.
    #[error("{source}")]
    Make {
        /// What mkdir or open said.
        source: io::Error,
    },
}

/// The kind of what is at `path` as kubelet's getFileType names it (links
/// followed); `Ok(None)` when nothing is there.
fn file_type(path: &Path) -> Result<Option<&'static str>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let t = meta.file_type();
    Ok(Some(if t.is_socket() {
        "Socket"
    } else if t.is_block_device() {
        "BlockDevice"
    } else if t.is_char_device() {
        "CharDevice"
    } else if t.is_dir() {
        "Directory"
    } else if t.is_file() {
        "File"
    } else {
        return Err(
            "only recognise file, directory, socket, block device and character device".into(),
        );
    }))
}

/// kubelet's checkType for `kind` at `path`. `DirectoryOrCreate` makes the
/// directory with its parents (0755 under the umask, as Go's MkdirAll),
/// `FileOrCreate` an empty file (0644 under the umask; its parent must exist);
/// either then checks the kind as `Directory` and `File` do. `Unset` checks
/// nothing.
pub fn check_type(path: &Path, kind: HostPathType) -> Result<(), HostPathTypeError> {
    let make = |source| HostPathTypeError::Make { source };
    let (expected_type, expected) = match kind {
        HostPathType::Unset => return Ok(()),
        HostPathType::DirectoryOrCreate => {
            if matches!(file_type(path), Ok(None)) {
                return match DirBuilder::new().recursive(true).mode(0o755).create(path) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(make(e)),
                    _ => Ok(()),
                };
            }
            ("Directory", "directory")
        }
        HostPathType::Directory => ("Directory", "directory"),
        HostPathType::FileOrCreate => {
            if matches!(file_type(path), Ok(None)) {
                return match OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o644)
                    .open(path)
                {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(make(e)),
                    _ => Ok(()),
                };
            }
            ("File", "file")
        }
        HostPathType::File => ("File", "file"),
        HostPathType::Socket => ("Socket", "socket file"),
        HostPathType::CharDevice => ("CharDevice", "character device"),
        HostPathType::BlockDevice => ("BlockDevice", "block device"),
    };
    match file_type(path) {
        Ok(None) => Err(HostPathTypeError::Missing(path.to_path_buf())),
        Ok(Some(found)) if found == expected_type => Ok(()),
        Ok(Some(found)) => Err(HostPathTypeError::Mismatch {
            path: path.to_path_buf(),
            expected,
            found,
        }),
        Err(cause) => Err(HostPathTypeError::Unknown {
            path: path.to_path_buf(),
            expected,
            cause,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn each_type_checks_the_kind_with_kubelets_words() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dir");
        let file = tmp.path().join("file");
        let sock = tmp.path().join("sock");
        let link = tmp.path().join("link");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(&file, "x").unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let null = Path::new("/dev/null");
        use HostPathType::*;
        let ok = [
            (Directory, &dir),
            (Directory, &link),
            (DirectoryOrCreate, &dir),
            (File, &file),
            (FileOrCreate, &file),
            (Socket, &sock),
            (Unset, &file),
        ];
        for (kind, path) in ok {
            check_type(path, kind).unwrap_or_else(|e| panic!("{kind:?} {path:?}: {e}"));
        }
        check_type(null, CharDevice).unwrap();
        let p = |path: &Path| path.display().to_string();
        let refused = [
            (
                Directory,
                file.clone(),
                format!(
                    "hostPath type check failed: {} is not a directory, it's a File",
                    p(&file)
                ),
            ),
            (
                DirectoryOrCreate,
                file.clone(),
                format!(
                    "hostPath type check failed: {} is not a directory, it's a File",
                    p(&file)
                ),
            ),
            (
                File,
                dir.clone(),
                format!(
                    "hostPath type check failed: {} is not a file, it's a Directory",
                    p(&dir)
                ),
            ),
            (
                FileOrCreate,
                dir.clone(),
                format!(
                    "hostPath type check failed: {} is not a file, it's a Directory",
                    p(&dir)
                ),
            ),
            (
                Socket,
                file.clone(),
                format!(
                    "hostPath type check failed: {} is not a socket file, it's a File",
                    p(&file)
                ),
            ),
            (
                CharDevice,
                dir.clone(),
                format!(
                    "hostPath type check failed: {} is not a character device, it's a Directory",
                    p(&dir)
                ),
            ),
            (
                BlockDevice,
                null.to_path_buf(),
                "hostPath type check failed: /dev/null is not a block device, it's a CharDevice"
                    .to_string(),
            ),
            (
                Directory,
                tmp.path().join("none"),
                format!("hostPath {} doesn't exist", p(&tmp.path().join("none"))),
            ),
        ];
        for (kind, path, want) in refused {
            let error = check_type(&path, kind).unwrap_err();
            assert_eq!(error.to_string(), want, "{kind:?}");
        }
    }

    #[test]
    fn or_create_types_make_what_is_missing_with_kubelets_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let dir = tmp.path().join("a/b");
        check_type(&dir, HostPathType::DirectoryOrCreate).unwrap();
        let file = tmp.path().join("a/f");
        check_type(&file, HostPathType::FileOrCreate).unwrap();
        rustix::process::umask(old);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert!(dir.is_dir());
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(std::fs::read(&file).unwrap(), b"");
        assert_eq!(mode(&file), 0o644);
        // FileOrCreate makes no parent, as kubelet's makeFile.
        let error = check_type(&tmp.path().join("x/f"), HostPathType::FileOrCreate).unwrap_err();
        assert!(matches!(error, HostPathTypeError::Make { .. }), "{error:?}");
    }
}
