//! Layer snapshots: each layer unpacked once, in overlayfs form, into
//! `snapshots/<chain-id hex>/`, shared by every image and container whose
//! layer chain has it. A snapshot is built in `snapshots/.staging-<hex>` and
//! renamed into place only after its blob and diff ID were verified.

use crate::digest::Digest;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What a snapshot holds, kept beside its `fs/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    /// The layer's diff ID.
    pub diff_id: Digest,
    /// The uncompressed tar's size.
    pub unpacked_size: u64,
}

/// The snapshot directory of one store root.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    /// Open (creating) `root/snapshots`.
    pub fn open(root: &Path) -> io::Result<Self> {
        let dir = root.join("snapshots");
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The layer's root inside the committed snapshot of `chain_id`.
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex()).join("fs")
    }

    /// Whether the snapshot is committed.
    pub fn exists(&self, chain_id: &Digest) -> bool {
        self.dir.join(chain_id.hex()).is_dir()
    }

    /// What the committed snapshot holds, if it exists.
    pub fn info(&self, chain_id: &Digest) -> Option<SnapshotInfo> {
        let bytes = fs::read(self.dir.join(chain_id.hex()).join("info.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// A fresh staging directory for `chain_id` with an empty `fs/` in it,
    /// returned as the path of `fs/`; whatever an interrupted earlier attempt
    /// left there is removed first. The caller holds the snapshot's lock.
    pub fn staging(&self, chain_id: &Digest) -> io::Result<PathBuf> {
        let path = self.staging_path(chain_id);
        remove_tree(&path)?;
        fs::create_dir(&path)?;
        fs::create_dir(path.join("fs"))?;
        Ok(path.join("fs"))
    }

    fn staging_path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(format!(".staging-{}", chain_id.hex()))
    }

    /// Make the staged snapshot visible. If it already exists (another image
    /// had the same chain with other compression), the staged copy is dropped.
    pub fn commit(&self, chain_id: &Digest, info: &SnapshotInfo) -> io::Result<()> {
        let staged = self.staging_path(chain_id);
        let json = serde_json::to_vec(info).map_err(io::Error::other)?;
        fs::write(staged.join("info.json"), json)?;
        match fs::rename(&staged, self.dir.join(chain_id.hex())) {
            Ok(()) => Ok(()),
            Err(e) if self.exists(chain_id) => {
                tracing::debug!(%chain_id, "snapshot appeared meanwhile: {e}");
                remove_tree(&staged)
            }
            Err(e) => Err(e),
        }
    }

    /// Drop a staging directory after a failed attempt.
    pub fn abort(&self, chain_id: &Digest) -> io::Result<()> {
        remove_tree(&self.staging_path(chain_id))
    }

    /// Remove a committed snapshot.
    pub fn remove(&self, chain_id: &Digest) -> io::Result<()> {
        remove_tree(&self.dir.join(chain_id.hex()))
    }

    /// Every committed snapshot's chain ID.
    pub fn list(&self) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Ok(d) = format!("sha256:{}", name.to_string_lossy()).parse() {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// Remove a directory tree that may not exist. Refuses paths that are empty or
/// not absolute, so a bug upstream can never turn into `rm -rf` of the wrong place.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    if path.as_os_str().is_empty() || !path.is_absolute() || path.parent().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to remove {path:?}"),
        ));
    }
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
