//! Images: references, registry client, content store, layer unpacking,
//! snapshots keyed by chain ID, and overlay root filesystems for containers.
//!
//! [`Images`] is the one entry point: `pull`, `load`, `list`, `inspect`,
//! `remove`, `collect_images` (kubelet's image garbage collection, decided
//! by [`gc`]), and `prepare_rootfs`/`remove_rootfs` for the runtime.

#![forbid(unsafe_code)]

pub mod auth;
pub mod content;
pub mod digest;
pub mod gc;
pub mod layer;
pub mod load;
pub mod lock;
pub mod manifest;
pub mod platform;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod registry;
pub mod rootfs;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use pull::{Progress, PullOptions};
pub use store::ImageRecord;

use content::ContentStore;
use lock::Locks;
use rootfs::Rootfs;
use snapshot::SnapshotStore;
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use store::ImageStore;

/// An image operation that failed, worded as `<step> <image>: <cause>`.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A reference that does not parse.
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    /// pull {image}: {source}
    #[error("pull {image}: {source}")]
    Pull {
        /// The image as the user named it (canonical).
        image: String,
        /// The cause.
        source: pull::PullError,
    },
    /// No image by that name or ID.
    #[error("image {0}: not found")]
    NotFound(String),
    /// An ID prefix or name that fits more than one image.
    #[error("image {name}: ambiguous, matches {matches}")]
    Ambiguous {
        /// What the user wrote.
        name: String,
        /// The names it matches.
        matches: String,
    },
    /// The image is used by a container.
    #[error("remove image {image}: in use by container {container}")]
    InUse {
        /// The image.
        image: String,
        /// A container using it.
        container: String,
    },
    /// An image ID with several names needs `--force` to remove them all.
    #[error(
        "remove image {id}: it has several names ({names}); remove them by name or use --force"
    )]
    SeveralNames {
        /// The ID.
        id: String,
        /// Its names.
        names: String,
    },
    /// load {path}: {cause}
    #[error("load {path}: {cause}")]
    Load {
        /// The archive.
        path: String,
        /// What is wrong.
        cause: String,
    },
    /// A root filesystem could not be prepared or removed.
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    /// The store itself could not be read or written.
    #[error("store {root}: {step}: {source}")]
    Store {
        /// The store root.
        root: String,
        /// What was being done.
        step: String,
        /// The cause.
        source: io::Error,
    },
}

/// The image store under one root directory (`--root`, default /var/lib/podrun).
#[derive(Debug, Clone)]
pub struct Images {
    root: PathBuf,
    /// Verified blobs.
    pub content: ContentStore,
    /// Unpacked layers.
    pub snapshots: SnapshotStore,
    /// Image records.
    pub records: ImageStore,
    /// Container filesystems.
    pub rootfs: Rootfs,
    locks: Locks,
}

/// The blobs and snapshots a store holds at one moment.
#[derive(Debug, Default, Clone)]
pub(crate) struct Inventory {
    blobs: BTreeSet<Digest>,
    snapshots: BTreeSet<Digest>,
}

/// What one garbage collection of unreferenced blobs and snapshots deleted.
#[derive(Debug, Default, Clone, Copy)]
struct Collected {
    blobs: usize,
    snapshots: usize,
    /// The disk space they took.
    bytes: u64,
}

/// What `remove` did.
#[derive(Debug, Default, Clone)]
pub struct Removed {
    /// Names removed.
    pub names: Vec<String>,
    /// Blobs no longer referenced and deleted.
    pub blobs: usize,
    /// Snapshots no longer referenced and deleted.
    pub snapshots: usize,
}

impl Images {
    /// Open (creating) the store under `root`.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let err = |source| ImageError::Store {
            root: root.display().to_string(),
            step: "open".into(),
            source,
        };
        let root = std::path::absolute(root).map_err(err)?;
        Ok(Self {
            content: ContentStore::open(&root).map_err(err)?,
            snapshots: SnapshotStore::open(&root).map_err(err)?,
            records: ImageStore::open(&root).map_err(err)?,
            rootfs: Rootfs::open(&root).map_err(err)?,
            locks: Locks::open(&root).map_err(err)?,
            root,
        })
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn store_err(&self, step: &str) -> impl FnOnce(io::Error) -> ImageError + '_ {
        let step = step.to_string();
        move |source| ImageError::Store {
            root: self.root.display().to_string(),
            step,
            source,
        }
    }

    /// Pull `name` from its registry (or a mirror) unless every part of it is here.
    pub async fn pull(&self, name: &str, options: &PullOptions) -> Result<ImageRecord, ImageError> {
        let reference = reference::parse(name)?;
        let image = reference.whole();
        let wrap = |source| ImageError::Pull {
            image: image.clone(),
            source,
        };
        let endpoints = options
            .registries
            .endpoints(&reference)
            .map_err(|b| wrap(pull::PullError::Invalid(b.to_string())))?;
        pull::pull(self, &reference, endpoints, options)
            .await
            .map_err(wrap)
    }

    /// Write `record`, unless the store holds it already as it is: a pull that
    /// found nothing new keeps the record (its `pulled_at`, when this machine
    /// got the image, included) and costs no durable write, which a pod with
    /// pull policy Always would otherwise pay at every start.
    pub(crate) fn put_record(&self, record: ImageRecord) -> io::Result<ImageRecord> {
        if let Ok(Some(old)) = self.records.get(&record.name) {
            let same = ImageRecord {
                pulled_at: old.pulled_at.clone(),
                ..record.clone()
            };
            if same == old {
                return Ok(old);
            }
        }
        self.records.put(&record)?;
        Ok(record)
    }

    /// Every image, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        self.records.list().map_err(self.store_err("list images"))
    }

    /// The images `name` means: an exact name, a reference that normalizes to
    /// one (`busybox` → `docker.io/library/busybox:latest`), or an ID (prefix).
    pub fn find(&self, name: &str) -> Result<Vec<ImageRecord>, ImageError> {
        if let Ok(r) = reference::parse(name) {
            if let Some(rec) = self
                .records
                .get(&r.whole())
                .map_err(self.store_err("read image"))?
            {
                return Ok(vec![rec]);
            }
            // `repo@sha256:…` of an image pulled by tag: its repo digest
            // (what ImageStatus and `images --digests` report).
            if r.digest().is_some() {
                let whole = r.whole();
                let found: Vec<ImageRecord> = self
                    .list()?
                    .into_iter()
                    .filter(|rec| rec.repo_digest() == whole)
                    .collect();
                if !found.is_empty() {
                    return Ok(found);
                }
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<ImageRecord> = self
                .list()?
                .into_iter()
                .filter(|r| r.id.hex().starts_with(hex))
                .collect();
            let ids: BTreeSet<&Digest> = matches.iter().map(|r| &r.id).collect();
            if ids.len() > 1 {
                return Err(ImageError::Ambiguous {
                    name: name.into(),
                    matches: ids.iter().map(|d| d.short()).collect::<Vec<_>>().join(", "),
                });
            }
            if !matches.is_empty() {
                return Ok(matches);
            }
        }
        Err(ImageError::NotFound(name.into()))
    }

    /// The single image `name` names (by name, or an ID with one name).
    pub fn get(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let mut found = self.find(name)?;
        Ok(found.remove(0))
    }

    /// The image's config document (its `config` holds Entrypoint, Cmd, Env …);
    /// `Null` if the blob is unreadable.
    fn config_document(&self, rec: &ImageRecord) -> serde_json::Value {
        self.content
            .read(&rec.id)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// The run configuration of an image (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`,
    /// `User`, `StopSignal` …), without the listing `inspect` does.
    pub fn run_config(&self, name: &str) -> Result<serde_json::Value, ImageError> {
        let rec = self.get(name)?;
        Ok(self.config_document(&rec)["config"].clone())
    }

    /// Everything known about an image, as `podrun image inspect` prints it.
    pub fn inspect(&self, name: &str) -> Result<serde_json::Value, ImageError> {
        let rec = self.get(name)?;
        let config = self.config_document(&rec);
        let names: Vec<String> = self
            .list()?
            .into_iter()
            .filter(|r| r.id == rec.id)
            .map(|r| r.name)
            .collect();
        Ok(serde_json::json!({
            "Id": rec.id,
            "RepoTags": names,
            "RepoDigests": [rec.repo_digest()],
            "Digest": rec.manifest_digest,
            "IndexDigest": rec.index_digest,
            "ManifestMediaType": rec.manifest_media_type,
            "Created": rec.created,
            "Pulled": rec.pulled_at,
            "Platform": rec.platform,
            "Size": rec.size(),
            "Layers": rec.layers,
            "Config": config.get("config").cloned().unwrap_or(serde_json::Value::Null),
            "RootFS": config.get("rootfs").cloned().unwrap_or(serde_json::Value::Null),
            "History": config.get("history").cloned().unwrap_or(serde_json::Value::Null),
        }))
    }

    /// Remove an image by name, or every name of an ID (with `force` when it
    /// has several), then delete blobs and snapshots nothing else references.
    /// An image a container uses is refused.
    pub fn remove(&self, name: &str, force: bool) -> Result<Removed, ImageError> {
        let locks = self.locks.clone();
        let _gc = locks
            .exclusive("gc")
            .map_err(self.store_err("lock store"))?;
        let found = self.find(name)?;
        let by_name = reference::parse(name)
            .ok()
            .is_some_and(|r| found.iter().any(|f| f.name == r.whole()));
        let targets: Vec<ImageRecord> = if by_name {
            found
        } else {
            let id = found[0].id.clone();
            let all: Vec<ImageRecord> = self.list()?.into_iter().filter(|r| r.id == id).collect();
            if all.len() > 1 && !force {
                return Err(ImageError::SeveralNames {
                    id: id.short().into(),
                    names: all
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            all
        };
        let remaining: Vec<ImageRecord> = self
            .list()?
            .into_iter()
            .filter(|r| !targets.iter().any(|t| t.name == r.name))
            .collect();
        for t in &targets {
            // A container keeps its image's ID alive; another name for the same ID does too.
            if remaining.iter().any(|r| r.id == t.id) {
                continue;
            }
            if let Some((container, _)) = self
                .rootfs
                .list()
                .map_err(self.store_err("list containers"))?
                .into_iter()
                .find(|(_, u)| u.image_id == t.id)
            {
                return Err(ImageError::InUse {
                    image: t.name.clone(),
                    container,
                });
            }
        }
        let mut removed = Removed::default();
        for t in &targets {
            self.records
                .delete(&t.name)
                .map_err(self.store_err("remove image"))?;
            removed.names.push(t.name.clone());
            if !remaining.iter().any(|r| r.id == t.id) {
                self.records
                    .forget_use(&t.id)
                    .map_err(self.store_err("forget last use"))?;
            }
        }
        let collected = self.collect_garbage()?;
        removed.blobs = collected.blobs;
        removed.snapshots = collected.snapshots;
        Ok(removed)
    }

    /// Every blob and snapshot in the store now.
    pub(crate) fn inventory(&self) -> io::Result<Inventory> {
        Ok(Inventory {
            blobs: self.content.list()?.into_iter().collect(),
            snapshots: self.snapshots.list()?.into_iter().collect(),
        })
    }

    /// After a failed pull: remove what was added since `before` and is not
    /// referenced (taking the `gc` lock exclusively).
    pub(crate) fn roll_back(&self, before: &Inventory) -> Result<(usize, usize), ImageError> {
        let _gc = self
            .locks
            .exclusive("gc")
            .map_err(self.store_err("lock store"))?;
        self.collect(Some(before)).map(|c| (c.blobs, c.snapshots))
    }

    /// Delete blobs and snapshots no image or container references. The caller
    /// holds the `gc` lock exclusively.
    fn collect_garbage(&self) -> Result<Collected, ImageError> {
        self.collect(None)
    }

    /// Delete unreferenced blobs and snapshots, sparing those in `keep`.
    fn collect(&self, keep: Option<&Inventory>) -> Result<Collected, ImageError> {
        let mut blobs: BTreeSet<Digest> = BTreeSet::new();
        let mut chains: BTreeSet<Digest> = BTreeSet::new();
        for r in self.list()? {
            blobs.insert(r.id.clone());
            blobs.insert(r.manifest_digest.clone());
            blobs.extend(r.index_digest.clone());
            for l in &r.layers {
                blobs.insert(l.digest.clone());
                chains.insert(l.chain_id.clone());
            }
        }
        for (_, used) in self
            .rootfs
            .list()
            .map_err(self.store_err("list containers"))?
        {
            chains.extend(used.chain_ids);
        }
        let mut removed = Collected::default();
        if let Some(keep) = keep {
            blobs.extend(keep.blobs.iter().cloned());
            chains.extend(keep.snapshots.iter().cloned());
        }
        for d in self.content.list().map_err(self.store_err("list blobs"))? {
            if !blobs.contains(&d) {
                let bytes = disk_usage(&self.content.path(&d));
                self.content
                    .delete(&d)
                    .map_err(self.store_err("remove blob"))?;
                removed.blobs += 1;
                removed.bytes += bytes;
            }
        }
        for c in self
            .snapshots
            .list()
            .map_err(self.store_err("list snapshots"))?
        {
            if !chains.contains(&c) {
                let bytes = self.snapshots.path(&c).parent().map_or(0, disk_usage);
                self.snapshots
                    .remove(&c)
                    .map_err(self.store_err("remove snapshot"))?;
                removed.snapshots += 1;
                removed.bytes += bytes;
            }
        }
        Ok(removed)
    }

    /// Mount the root filesystem of container `id` from image `image`; returns
    /// its path. The image's last use is now.
    pub fn prepare_rootfs(&self, image: &str, id: &str) -> Result<PathBuf, ImageError> {
        let _gc = self
            .locks
            .shared("gc")
            .map_err(self.store_err("lock store"))?;
        let record = self.get(image)?;
        let path = self.rootfs.prepare(&self.snapshots, &record, id)?;
        self.used(&record.id);
        Ok(path)
    }

    /// Record that image `id` is used now. A failure only costs garbage
    /// collection its order (the container is there, so the image is in use
    /// anyway): it is logged, not returned.
    fn used(&self, id: &Digest) {
        if let Err(e) = self.records.touch(id, chrono::Utc::now()) {
            tracing::warn!("image {}: record its last use: {e}", id.short());
        }
    }

    /// kubelet's image garbage collection, one pass at `now` under the `gc`
    /// lock (taken exclusively; call from a blocking context): every unused
    /// image past `policy`'s maximum age, then unused images in eviction
    /// order, each pulled at least its minimum age ago, until removing them
    /// has deleted `bytes_to_free` bytes (see [`gc::collect`]). An image is
    /// removed with every name of its ID, and the blobs and snapshots that
    /// nothing references any more with it; what that deleted is what it
    /// freed. A removal that fails is reported in the outcome and the pass
    /// goes on.
    pub fn collect_images(
        &self,
        policy: &gc::Policy,
        bytes_to_free: u64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<gc::Outcome<ImageError>, ImageError> {
        let _gc = self
            .locks
            .exclusive("gc")
            .map_err(self.store_err("lock store"))?;
        let candidates = self.candidates(now)?;
        Ok(gc::collect(candidates, policy, bytes_to_free, now, |c| {
            self.remove_image_id(c)
        }))
    }

    /// Every image ID of the store as garbage collection sees it.
    fn candidates(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<gc::Candidate>, ImageError> {
        let in_use: BTreeSet<Digest> = self
            .rootfs
            .list()
            .map_err(self.store_err("list containers"))?
            .into_iter()
            .map(|(_, u)| u.image_id)
            .collect();
        let mut by_id: std::collections::BTreeMap<Digest, gc::Candidate> = Default::default();
        for r in self.list()? {
            // A time that does not parse protects the image, as a fresh pull would.
            let pulled = r.pulled_time().unwrap_or(now);
            let entry = by_id.entry(r.id.clone()).or_insert_with(|| gc::Candidate {
                id: r.id.clone(),
                names: Vec::new(),
                pulled_at: pulled,
                last_used: None,
                in_use: in_use.contains(&r.id),
            });
            entry.names.push(r.name.clone());
            entry.pulled_at = entry.pulled_at.max(pulled);
        }
        for c in by_id.values_mut() {
            c.last_used = self
                .records
                .last_used(&c.id)
                .map_err(self.store_err("read last use"))?;
        }
        Ok(by_id.into_values().collect())
    }

    /// Remove every name of `image` and what only it referenced; the bytes
    /// that deleted. The caller holds the `gc` lock exclusively and has
    /// checked that no container uses it.
    fn remove_image_id(&self, image: &gc::Candidate) -> Result<u64, ImageError> {
        for name in &image.names {
            self.records
                .delete(name)
                .map_err(self.store_err("remove image"))?;
        }
        let collected = self.collect_garbage()?;
        self.records
            .forget_use(&image.id)
            .map_err(self.store_err("forget last use"))?;
        Ok(collected.bytes)
    }

    /// Mount image `image` read-only as image volume `index` of container
    /// `id`, whose root filesystem is prepared; returns its path.
    pub fn mount_image_volume(
        &self,
        image: &str,
        id: &str,
        index: usize,
    ) -> Result<PathBuf, ImageError> {
        let _gc = self
            .locks
            .shared("gc")
            .map_err(self.store_err("lock store"))?;
        let record = self.get(image)?;
        let path = self
            .rootfs
            .mount_image_volume(&self.snapshots, &record, id, index)?;
        self.used(&record.id);
        Ok(path)
    }

    /// Unmount and delete container `id`'s root filesystem and image
    /// volumes. The images it used were last used now (kubelet refreshes an
    /// image's last use while a container has it).
    pub fn remove_rootfs(&self, id: &str) -> Result<(), ImageError> {
        let uses = self.rootfs.uses(id).unwrap_or_default();
        self.rootfs.remove(id)?;
        for u in uses {
            self.used(&u.image_id);
        }
        Ok(())
    }
}

/// The disk space of a file or directory tree (its allocated blocks; what
/// removing it gives back, hard links aside).
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            total += disk_usage(&entry.path());
        }
    }
    total
}

impl Images {
    /// Load the images of an OCI archive or `docker save` tarball.
    pub async fn load(
        &self,
        path: &Path,
        platform: Option<platform::Platform>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let locks = self.locks.clone();
        let _gc = tokio::task::spawn_blocking(move || locks.shared("gc"))
            .await
            .expect("lock task panicked")
            .map_err(self.store_err("lock store"))?;
        load::load(self, path, platform).await
    }
}
