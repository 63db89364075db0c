//! Image records: which names point to which manifest, config and layer chain.
//! One JSON file per name under `images/`, written atomically, so listing and
//! "is it already here" cost a directory read and no database.
//!
//! When an image ID was last used (kubelet's `lastUsed`, which image garbage
//! collection orders by) is a file of its own, `images/<id hex>.used`: a
//! container's use rewrites that small file and never an image record, so it
//! cannot race a pull that replaces the record of a name.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One layer of an image, as pulled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The (compressed) blob's digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The snapshot holding it.
    pub chain_id: Digest,
    /// The uncompressed tar's size.
    pub unpacked_size: u64,
}

/// A named image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The canonical name it was pulled or loaded as (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The image ID: its config's digest.
    pub id: Digest,
    /// The platform-specific manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// The index (manifest list) it was chosen from, if any.
    pub index_digest: Option<Digest>,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// The config's `created`, if it says.
    pub created: Option<String>,
    /// When this machine got it (RFC 3339; milliseconds since garbage
    /// collection orders by it, seconds in records of older podruns).
    pub pulled_at: String,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
}

impl ImageRecord {
    /// Uncompressed size of all layers, as `podrun images` shows SIZE.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.unpacked_size).sum()
    }

    /// [`ImageRecord::pulled_at`] as a time; `None` if it does not parse.
    pub fn pulled_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::parse_from_rfc3339(&self.pulled_at)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    /// Chain IDs of the layers, bottom first.
    pub fn chain_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.chain_id.clone()).collect()
    }

    /// `repo@digest`, the name that pins this exact content.
    pub fn repo_digest(&self) -> String {
        let repo = repository_of(&self.name);
        let digest = self.index_digest.as_ref().unwrap_or(&self.manifest_digest);
        format!("{repo}@{digest}")
    }

    /// (repository, tag) for listing; tag is `<none>` for digest-only names.
    pub fn repository_and_tag(&self) -> (String, String) {
        let repo = repository_of(&self.name);
        let rest = &self.name[repo.len()..];
        let tag = rest
            .strip_prefix(':')
            .map(|t| t.split('@').next().unwrap_or(t).to_string())
            .unwrap_or_else(|| "<none>".to_string());
        (repo, tag)
    }
}

/// The repository part of a canonical name (`host:port/path/name`).
fn repository_of(name: &str) -> String {
    let without_digest = name.split('@').next().unwrap_or(name);
    match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => without_digest[..i].to_string(),
        _ => without_digest.to_string(),
    }
}

/// The records of one store root.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// Open (creating) `root/images`.
    pub fn open(root: &Path) -> io::Result<Self> {
        let dir = root.join("images");
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", Digest::of(name.as_bytes()).hex()))
    }

    /// The record of `name` (canonical), if any.
    pub fn get(&self, name: &str) -> io::Result<Option<ImageRecord>> {
        match fs::read(self.file(name)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Write (or replace) a record atomically.
    pub fn put(&self, record: &ImageRecord) -> io::Result<()> {
        // Two pulls of one image (threads or processes) each write a temporary file of their own.
        let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        podrun_fs::write_atomic(&self.file(&record.name), &json)
    }

    /// Remove the record of `name`.
    pub fn delete(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.file(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn used_file(&self, id: &Digest) -> PathBuf {
        self.dir.join(format!("{}.used", id.hex()))
    }

    /// Record that a container used image `id` at `at`: atomically (a
    /// rename) but not durably. This runs at every container's creation, on
    /// the pod start path, where a durable write (two fsyncs) costs ~12 ms;
    /// a last use lost to a crash only changes garbage collection's order.
    pub fn touch(&self, id: &Digest, at: chrono::DateTime<chrono::Utc>) -> io::Result<()> {
        use std::io::Write;
        let text = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let path = self.used_file(id);
        let (temp, mut file) = podrun_fs::temp_beside(&path, 0o644)?;
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| fs::rename(&temp, &path));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    /// When a container last used image `id`; `None` if never (or the file
    /// is unreadable as a time: it only orders garbage collection).
    pub fn last_used(&self, id: &Digest) -> io::Result<Option<chrono::DateTime<chrono::Utc>>> {
        match fs::read_to_string(self.used_file(id)) {
            Ok(text) => Ok(chrono::DateTime::parse_from_rfc3339(text.trim())
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Forget the last use of image `id` (it is gone).
    pub fn forget_use(&self, id: &Digest) -> io::Result<()> {
        match fs::remove_file(self.used_file(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every record, sorted by name.
    pub fn list(&self) -> io::Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let bytes = fs::read(&path)?;
                let record: ImageRecord = serde_json::from_slice(&bytes)
                    .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
                out.push(record);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            id: Digest::of(b"config"),
            manifest_digest: Digest::of(b"manifest"),
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            index_digest: None,
            platform: "linux/amd64".into(),
            created: None,
            pulled_at: "2026-11-27T00:00:00Z".into(),
            layers: vec![],
        }
    }

    #[test]
    fn names_split_into_repository_and_tag() {
        let r = record("127.0.0.1:5000/team/app:1.0");
        assert_eq!(
            r.repository_and_tag(),
            ("127.0.0.1:5000/team/app".into(), "1.0".into())
        );
        let d = Digest::of(b"m");
        let r = record(&format!("127.0.0.1:5000/app@{d}"));
        assert_eq!(
            r.repository_and_tag(),
            ("127.0.0.1:5000/app".into(), "<none>".into())
        );
        assert_eq!(
            record("localhost:5000/app").repository_and_tag().1,
            "<none>"
        );
        assert_eq!(
            record("docker.io/library/busybox:latest").repo_digest(),
            format!("docker.io/library/busybox@{}", Digest::of(b"manifest"))
        );
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        store.put(&record("b:1")).unwrap();
        store.put(&record("a:1")).unwrap();
        assert_eq!(store.get("a:1").unwrap(), Some(record("a:1")));
        let names: Vec<_> = store.list().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, vec!["a:1", "b:1"]);
        store.delete("a:1").unwrap();
        assert_eq!(store.get("a:1").unwrap(), None);
    }

    #[test]
    fn last_use_is_kept_beside_the_records_and_not_listed_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let id = Digest::of(b"config");
        assert_eq!(store.last_used(&id).unwrap(), None);
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-06T08:00:00.250Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        store.put(&record("a:1")).unwrap();
        store.touch(&id, at).unwrap();
        assert_eq!(store.last_used(&id).unwrap(), Some(at));
        assert_eq!(store.list().unwrap().len(), 1);
        store.forget_use(&id).unwrap();
        store.forget_use(&id).unwrap();
        assert_eq!(store.last_used(&id).unwrap(), None);
        assert_eq!(
            record("a:1").pulled_time().map(|t| t.to_rfc3339()),
            Some("2026-11-27T00:00:00+00:00".to_string())
        );
    }
}
