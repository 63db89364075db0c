//! kubelet's atomic writer (pkg/volume/util/atomic_writer.go): how configMap,
//! secret, downwardAPI and projected volumes are written, so that a container
//! reading one never sees half of an update.
//!
//! The layout under the volume's directory:
//!
//! ```text
//! ..2026_12_05_01_02_03.4172645      the payload, a timestamped directory
//! ..data -> ..2026_12_05_01_02_03.4172645
//! app.properties -> ..data/app.properties   one symlink per top-level name
//! conf -> ..data/conf
//! ```
//!
//! An update writes a new timestamped directory, points a new `..data_tmp`
//! symlink at it and renames that over `..data` (one atomic step), then removes
//! the user-visible names that are gone and the old directory. A payload equal to
//! what is there writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The symlink to the current payload directory.
pub const DATA_DIR: &str = "..data";
/// The symlink made beside [`DATA_DIR`] and renamed over it.
const DATA_DIR_TMP: &str = "..data_tmp";
/// kubelet's limits on a payload path and each of its names.
const MAX_PATH_LENGTH: usize = 4096;
const MAX_FILE_NAME_LENGTH: usize = 255;

/// One file of a payload (kubelet's `FileProjection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    /// Its bytes.
    pub data: Vec<u8>,
    /// Its permission bits (`defaultMode` or the item's `mode`).
    pub mode: u32,
}

/// What a volume holds: relative path → file.
pub type Payload = BTreeMap<String, FileProjection>;

/// Why a payload could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A path the API server would have refused (kubelet checks again).
    #[error("invalid path {path:?}: {why}")]
    InvalidPath {
        /// The payload's path.
        path: String,
        /// kubelet's reason.
        why: &'static str,
    },
    /// A file operation failed.
    #[error("{step} {}: {source}", path.display())]
    Io {
        /// What was being done.
        step: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err(step: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WriteError {
    let path = path.to_path_buf();
    move |source| WriteError::Io { step, path, source }
}

/// Check a payload path as kubelet's `validatePath` does: relative, not
/// starting with `..`, no `..` element, at most 4096 bytes and 255 per name.
pub fn validate_path(path: &str) -> Result<(), WriteError> {
    let bad = |why| {
        Err(WriteError::InvalidPath {
            path: path.to_string(),
            why,
        })
    };
    if path.is_empty() {
        return bad("must not be empty");
    }
    if path.len() > MAX_PATH_LENGTH {
        return bad("must be less than or equal to 4096 characters");
    }
    if path.starts_with('/') {
        return bad("must be relative path");
    }
    if path.starts_with("..") {
        return bad("must not start with '..'");
    }
    for item in path.split('/') {
        if item.len() > MAX_FILE_NAME_LENGTH {
            return bad("filenames must be less than or equal to 255 characters");
        }
        if item == ".." {
            return bad("must not contain '..'");
        }
    }
    Ok(())
}

/// The first name of a payload path: what the user sees in the volume's directory.
fn top_name(path: &str) -> &str {
    path.split('/')
        .find(|p| !p.is_empty() && *p != ".")
        .unwrap_or(path)
}

/// Make the volume at `dir` hold exactly `payload`, atomically. Returns whether
/// anything was written (false: the payload was already there).
pub fn write(dir: &Path, payload: &Payload) -> Result<bool, WriteError> {
    for path in payload.keys() {
        validate_path(path)?;
        if top_name(path).starts_with("..") {
            return Err(WriteError::InvalidPath {
                path: path.clone(),
                why: "must not start with '..'",
            });
        }
    }
    let data_link = dir.join(DATA_DIR);
    let old = match std::fs::read_link(&data_link) {
        Ok(target) => Some(dir.join(target)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("read", &data_link)(e)),
    };
    let old_names: BTreeSet<String> = match &old {
        Some(old) => files_under(old)?
            .iter()
            .map(|p| top_name(p).to_string())
            .collect(),
        None => BTreeSet::new(),
    };
    let new_names: BTreeSet<String> = payload.keys().map(|p| top_name(p).to_string()).collect();
    if let Some(old) = &old {
        if same_content(old, payload)? {
            return Ok(false);
        }
    }

    let ts_dir = new_timestamp_dir(dir)?;
    let written = write_payload(&ts_dir, payload)
        .and_then(|()| {
            for name in &new_names {
                let link = dir.join(name);
                if std::fs::symlink_metadata(&link).is_err() {
                    std::os::unix::fs::symlink(Path::new(DATA_DIR).join(name), &link)
                        .map_err(io_err("link", &link))?;
                }
            }
            Ok(())
        })
        .and_then(|()| {
            let tmp = dir.join(DATA_DIR_TMP);
            let _ = std::fs::remove_file(&tmp);
            let name = ts_dir.file_name().expect("a directory we named");
            std::os::unix::fs::symlink(name, &tmp).map_err(io_err("link", &tmp))?;
            std::fs::rename(&tmp, &data_link).map_err(io_err("swap", &data_link))
        });
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&ts_dir);
        return Err(e);
    }
    for gone in old_names.difference(&new_names) {
        let link = dir.join(gone);
        if let Err(e) = std::fs::remove_file(&link) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(io_err("remove", &link)(e));
            }
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(&old).map_err(io_err("remove", &old))?;
    }
    Ok(true)
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Result<Vec<String>, WriteError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        for entry in std::fs::read_dir(&here).map_err(io_err("read", &here))? {
            let entry = entry.map_err(io_err("read", &here))?;
            let rel = rel.join(entry.file_name());
            let kind = entry.file_type().map_err(io_err("read", &here))?;
            if kind.is_dir() {
                stack.push(rel);
            } else {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    Ok(out)
}

/// Whether the payload directory `dir` holds exactly `payload`, modes included.
fn same_content(dir: &Path, payload: &Payload) -> Result<bool, WriteError> {
    let mut there = files_under(dir)?;
    there.sort();
    let wanted: Vec<String> = payload.keys().map(|p| normal(p)).collect();
    let mut wanted_sorted = wanted.clone();
    wanted_sorted.sort();
    if there != wanted_sorted {
        return Ok(false);
    }
    for (path, file) in payload {
        let f = dir.join(normal(path));
        let meta = std::fs::metadata(&f).map_err(io_err("read", &f))?;
        if meta.permissions().mode() & 0o7777 != file.mode & 0o7777 {
            return Ok(false);
        }
        if std::fs::read(&f).map_err(io_err("read", &f))? != file.data {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A payload path without `.` elements or doubled slashes.
fn normal(path: &str) -> String {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `..<UTC time as 2006_01_02_15_04_05>.<digits>`, made 0755 (kubelet's
/// `newTimestampDir`: os.MkdirTemp with Go's layout, then chmod).
fn new_timestamp_dir(dir: &Path) -> Result<PathBuf, WriteError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = utc_stamp(now.as_secs());
    for attempt in 0..100u32 {
        let suffix = (now.subsec_nanos() ^ std::process::id().rotate_left(16))
            .wrapping_add(attempt.wrapping_mul(2_654_435_761));
        let path = dir.join(format!("..{stamp}.{suffix}"));
        match std::fs::create_dir(&path) {
            Ok(()) => {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &path))?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create", &path)(e)),
        }
    }
    Err(io_err("create", dir)(io::Error::from(
        io::ErrorKind::AlreadyExists,
    )))
}

/// Seconds since the epoch as `2006_01_02_15_04_05` (UTC).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Write each file of `payload` under `dir` with its mode (whatever the umask).
fn write_payload(dir: &Path, payload: &Payload) -> Result<(), WriteError> {
    for (path, file) in payload {
        let target = dir.join(normal(path));
        if let Some(parent) = target.parent() {
            if parent != dir {
                std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
                let mut p = parent;
                while p != dir {
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                        .map_err(io_err("chmod", p))?;
                    p = p.parent().expect("under dir");
                }
            }
        }
        std::fs::write(&target, &file.data).map_err(io_err("write", &target))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode))
            .map_err(io_err("chmod", &target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    fn payload(files: &[(&str, &str)]) -> Payload {
        files
            .iter()
            .map(|(p, d)| (p.to_string(), file(d, 0o644)))
            .collect()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn the_layout_is_kubelets() {
        let dir = tempfile::tempdir().unwrap();
        let wrote = write(
            dir.path(),
            &payload(&[
                ("game.properties", "lives=3"),
                ("conf/ui.properties", "color=blue"),
            ]),
        )
        .unwrap();
        assert!(wrote);
        let n = names(dir.path());
        assert_eq!(n.len(), 4, "{n:?}");
        assert_eq!(&n[1..], ["..data", "conf", "game.properties"]);
        let ts = &n[0];
        assert!(
            ts.starts_with("..20") && ts.len() > "..2006_01_02_15_04_05.".len(),
            "{ts}"
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("..data")).unwrap(),
            Path::new(ts)
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("game.properties")).unwrap(),
            Path::new("..data/game.properties")
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("conf")).unwrap(),
            Path::new("..data/conf")
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("conf/ui.properties")).unwrap(),
            "color=blue"
        );
        let mode = std::fs::metadata(dir.path().join(ts))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn modes_are_the_payloads_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Payload::new();
        p.insert("key".into(), file("secret", 0o400));
        p.insert("script".into(), file("#!/bin/sh", 0o755));
        write(dir.path(), &p).unwrap();
        let mode = |n: &str| {
            std::fs::metadata(dir.path().join(n))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("key"), 0o400);
        assert_eq!(mode("script"), 0o755);
    }

    #[test]
    fn an_update_swaps_the_data_and_drops_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &payload(&[("a", "1"), ("b", "2")])).unwrap();
        let first = std::fs::read_link(dir.path().join("..data")).unwrap();
        assert!(write(dir.path(), &payload(&[("a", "10"), ("c", "3")])).unwrap());
        let second = std::fs::read_link(dir.path().join("..data")).unwrap();
        assert_ne!(first, second);
        assert!(
            !dir.path().join(&first).exists(),
            "the old payload is removed"
        );
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "10");
        assert_eq!(std::fs::read_to_string(dir.path().join("c")).unwrap(), "3");
        assert!(
            std::fs::symlink_metadata(dir.path().join("b")).is_err(),
            "b is gone"
        );
        let n = names(dir.path());
        assert_eq!(n.len(), 4, "{n:?}");
    }

    #[test]
    fn the_same_payload_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = payload(&[("a", "1"), ("d/e", "2")]);
        assert!(write(dir.path(), &p).unwrap());
        let first = std::fs::read_link(dir.path().join("..data")).unwrap();
        assert!(!write(dir.path(), &p).unwrap());
        assert_eq!(
            std::fs::read_link(dir.path().join("..data")).unwrap(),
            first
        );
        // A mode change is an update.
        let mut q = p.clone();
        q.get_mut("a").unwrap().mode = 0o600;
        assert!(write(dir.path(), &q).unwrap());
    }

    #[test]
    fn paths_kubelet_refuses_are_refused_and_nothing_is_written() {
        for bad in [
            "/etc/passwd",
            "../x",
            "..x",
            "a/../../b",
            "",
            &"n".repeat(256),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let err = write(dir.path(), &payload(&[(bad, "x")])).unwrap_err();
            assert!(
                matches!(err, WriteError::InvalidPath { .. }),
                "{bad:?}: {err}"
            );
            assert!(names(dir.path()).is_empty(), "{bad:?} left files");
        }
    }

    #[test]
    fn an_empty_payload_is_an_empty_volume() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write(dir.path(), &Payload::new()).unwrap());
        let n = names(dir.path());
        assert_eq!(n.len(), 2, "{n:?}");
        assert!(!write(dir.path(), &Payload::new()).unwrap());
    }

    #[test]
    fn the_stamp_is_utc_in_gos_layout() {
        assert_eq!(utc_stamp(0), "1970_01_01_00_00_00");
        assert_eq!(utc_stamp(1_796_432_523), "2026_12_05_01_02_03");
        assert_eq!(utc_stamp(951_782_400), "2000_02_29_00_00_00");
    }
}
