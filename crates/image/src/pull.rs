//! Pulling an image: resolve the reference through mirrors to a manifest,
//! choose the platform from an index, fetch the config, then download every
//! missing layer in parallel, each streamed straight through verification and
//! decompression into its snapshot.

use crate::digest::{chain_ids, Digest};
use crate::layer::{self, ChannelSource, LayerError};
use crate::manifest::{self, Descriptor, Document};
use crate::platform::Platform;
use crate::registries::Endpoint;
use crate::registry::{Limits, RegistryError, Session};
use crate::snapshot::SnapshotInfo;
use crate::store::{ImageRecord, LayerRecord};
use crate::Images;
use futures_util::StreamExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What a pull reports as it goes (for progress bars).
#[derive(Debug, Clone)]
pub enum Progress {
    /// The manifest is known: these layers (digest, size) make the image.
    Resolved {
        /// Layers, bottom first.
        layers: Vec<(Digest, u64)>,
    },
    /// This layer's snapshot was already here.
    LayerExists(Digest),
    /// So many bytes of this layer have arrived.
    LayerBytes(Digest, u64),
    /// This layer is verified and unpacked.
    LayerDone(Digest),
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// How to pull.
#[derive(Clone, Default)]
pub struct PullOptions {
    /// Platform to choose from an index (default: this machine).
    pub platform: Option<Platform>,
    /// Mirrors, insecure and blocked registries.
    pub registries: crate::registries::RegistriesConfig,
    /// Credential files, first match wins (default: [`crate::auth::search_path`]).
    pub auth_files: Option<Vec<PathBuf>>,
    /// Time limits and retries.
    pub limits: Limits,
    /// Progress callback.
    pub progress: Option<ProgressFn>,
}

/// Why a pull failed (the image name is added by the caller).
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry or network said no.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A layer or blob did not check out or could not be stored.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// No manifest for the wanted platform in the index.
    #[error("no image for platform {wanted} (the index has {available})")]
    NoPlatform {
        /// What was asked for.
        wanted: Platform,
        /// What the index offers.
        available: String,
    },
    /// A document that is not what it should be.
    #[error("{0}")]
    Invalid(String),
    /// A local file operation failed.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Another layer failed, so this one stopped.
    #[error("cancelled")]
    Cancelled,
    /// Every endpoint failed (mirrors first, then the registry itself).
    #[error("{}", .0.iter().map(|(ep, e)| format!("{ep}: {e}")).collect::<Vec<_>>().join("; "))]
    Endpoints(Vec<(String, PullError)>),
}

impl PullError {
    fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> PullError {
        let step = step.into();
        move |source| PullError::Io { step, source }
    }
}

/// Pull `reference` (already parsed) into `images`, trying each endpoint in turn.
pub(crate) async fn pull(
    images: &Images,
    reference: &oci_client::Reference,
    endpoints: Vec<Endpoint>,
    options: &PullOptions,
) -> Result<ImageRecord, PullError> {
    let locks = images.locks.clone();
    // Garbage collection takes this lock exclusively; a pull's blobs and
    // snapshots are not referenced by any record until it finishes.
    let gc_guard = tokio::task::spawn_blocking(move || locks.shared("gc"))
        .await
        .expect("lock task panicked")
        .map_err(PullError::io("lock store"))?;
    let before = images.inventory().map_err(PullError::io("list store"))?;
    images.content.remove_stale_partials();
    let result = pull_endpoints(images, reference, endpoints, options).await;
    if result.is_err() {
        // A failed pull leaves the store as it was: whatever it added that no
        // image references goes again. Pulls in flight hold the lock shared,
        // so waiting for it exclusively also waits for them to record theirs.
        drop(gc_guard);
        let images = images.clone();
        let cleaned = tokio::task::spawn_blocking(move || images.roll_back(&before))
            .await
            .expect("roll-back task panicked");
        if let Err(e) = cleaned {
            tracing::warn!("cleaning up after a failed pull: {e}");
        }
    }
    result
}

async fn pull_endpoints(
    images: &Images,
    reference: &oci_client::Reference,
    endpoints: Vec<Endpoint>,
    options: &PullOptions,
) -> Result<ImageRecord, PullError> {
    let auth_files = options
        .auth_files
        .clone()
        .unwrap_or_else(crate::auth::search_path);
    let single = endpoints.len() == 1;
    let mut failures = Vec::new();
    for endpoint in endpoints {
        match pull_from(images, reference, &endpoint, &auth_files, options).await {
            Ok(record) => return Ok(record),
            Err(e) if single => return Err(e),
            Err(e) => {
                tracing::info!(endpoint = %endpoint.reference.registry(), "pull failed, trying the next: {e}");
                failures.push((endpoint.reference.registry().to_string(), e));
            }
        }
    }
    Err(PullError::Endpoints(failures))
}

async fn pull_from(
    images: &Images,
    reference: &oci_client::Reference,
    endpoint: &Endpoint,
    auth_files: &[PathBuf],
    options: &PullOptions,
) -> Result<ImageRecord, PullError> {
    let session = Session::open(endpoint, auth_files, &options.limits).await?;
    let (mut bytes, mut digest) = fetch_manifest(&session, &session.reference).await?;
    if let Some(want) = reference.digest() {
        if digest.as_str() != want {
            return Err(PullError::Invalid(format!(
                "manifest digest mismatch: asked for {want}, got {digest}"
            )));
        }
    }
    let mut index_digest = None;
    let wanted = options.platform.clone().unwrap_or_else(Platform::host);
    let manifest = loop {
        match manifest::parse(&bytes).map_err(PullError::Invalid)? {
            Document::Manifest(m) => break m,
            Document::Index(_) if index_digest.is_some() => {
                return Err(PullError::Invalid(
                    "an index points to another index".into(),
                ))
            }
            Document::Index(entries) => {
                images
                    .content
                    .put(&digest, &bytes)
                    .map_err(LayerError::from)?;
                let platforms: Vec<Option<Platform>> =
                    entries.iter().map(|e| e.platform.clone()).collect();
                let Some(i) = wanted.choose(&platforms) else {
                    let available = platforms
                        .iter()
                        .flatten()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(PullError::NoPlatform {
                        wanted: wanted.clone(),
                        available: if available.is_empty() {
                            "no platforms".into()
                        } else {
                            available
                        },
                    });
                };
                let child = &entries[i];
                let child_ref = session
                    .reference
                    .clone_with_digest(child.digest.to_string());
                let (child_bytes, child_digest) = fetch_manifest(&session, &child_ref).await?;
                if child_digest != child.digest || child_bytes.len() as u64 != child.size {
                    return Err(PullError::Invalid(format!(
                        "manifest {} does not match its index entry (got {child_digest}, {} bytes)",
                        child.digest,
                        child_bytes.len()
                    )));
                }
                index_digest = Some(std::mem::replace(&mut digest, child_digest));
                bytes = child_bytes;
            }
        }
    };
    images
        .content
        .put(&digest, &bytes)
        .map_err(LayerError::from)?;

    let config_bytes = fetch_config(images, &session, &manifest.config).await?;
    let config = manifest::parse_config(&config_bytes).map_err(PullError::Invalid)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(PullError::Invalid(format!(
            "image config lists {} diff IDs for {} layers",
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    let chains = chain_ids(&config.rootfs.diff_ids);
    if let Some(p) = &options.progress {
        p(Progress::Resolved {
            layers: manifest
                .layers
                .iter()
                .map(|l| (l.digest.clone(), l.size))
                .collect(),
        });
    }

    let session = Arc::new(session);
    let cancel = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, layer) in manifest.layers.iter().enumerate() {
        let job = LayerJob {
            images: images.clone(),
            session: Some(session.clone()),
            layer: layer.clone(),
            diff_id: config.rootfs.diff_ids[i].clone(),
            chain_id: chains[i].clone(),
            progress: options.progress.clone(),
            cancel: cancel.clone(),
        };
        tasks.spawn(async move { (i, job.run().await) });
    }
    // On the first failure the other layers stop at their next chunk and clean
    // up after themselves; they are awaited rather than aborted, so no staging
    // directory or partial blob is left behind.
    let mut unpacked = vec![0u64; manifest.layers.len()];
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("layer task panicked") {
            (i, Ok(size)) => unpacked[i] = size,
            (_, Err(PullError::Cancelled)) => {}
            (_, Err(e)) => {
                cancel.cancel();
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }

    let platform = Platform {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
    };
    let record = ImageRecord {
        name: reference.whole(),
        id: manifest.config.digest.clone(),
        manifest_digest: digest,
        manifest_media_type: manifest.media_type.clone(),
        index_digest,
        platform: platform.to_string(),
        created: config.created.clone(),
        pulled_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        layers: manifest
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerRecord {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: l.size,
                diff_id: config.rootfs.diff_ids[i].clone(),
                chain_id: chains[i].clone(),
                unpacked_size: unpacked[i],
            })
            .collect(),
    };
    images
        .put_record(record)
        .map_err(PullError::io("record image"))
}

async fn fetch_manifest(
    session: &Session,
    reference: &oci_client::Reference,
) -> Result<(Vec<u8>, Digest), PullError> {
    let (bytes, _) = session
        .retry(|| {
            session
                .client
                .pull_manifest_raw(reference, &session.auth, manifest::ACCEPTED)
        })
        .await?;
    let digest = Digest::of(&bytes);
    Ok((bytes.to_vec(), digest))
}

async fn fetch_config(
    images: &Images,
    session: &Session,
    config: &Descriptor,
) -> Result<Vec<u8>, PullError> {
    if let Ok(bytes) = images.content.read(&config.digest) {
        return Ok(bytes);
    }
    let oci = config.to_oci();
    let bytes = session
        .retry(|| async {
            let mut buf = Vec::new();
            session
                .client
                .pull_blob(&session.reference, &oci, &mut buf)
                .await
                .map(|_| buf)
        })
        .await?;
    images
        .content
        .put(&config.digest, &bytes)
        .map_err(LayerError::from)?;
    Ok(bytes)
}

/// Making sure one layer's snapshot exists: from the local blob if the store
/// has it, otherwise downloaded through `session`.
pub(crate) struct LayerJob {
    pub(crate) images: Images,
    pub(crate) session: Option<Arc<Session>>,
    pub(crate) layer: Descriptor,
    pub(crate) diff_id: Digest,
    pub(crate) chain_id: Digest,
    pub(crate) progress: Option<ProgressFn>,
    pub(crate) cancel: CancellationToken,
}

impl LayerJob {
    /// Make sure the layer's snapshot exists; returns its unpacked size.
    pub(crate) async fn run(self) -> Result<u64, PullError> {
        if let Some(info) = self.images.snapshots.info(&self.chain_id) {
            self.report(Progress::LayerExists(self.layer.digest.clone()));
            return Ok(info.unpacked_size);
        }
        // One download per layer, however many pulls want it, in any process.
        let locks = self.images.locks.clone();
        let name = format!("layer-{}", self.chain_id.hex());
        let _guard = tokio::task::spawn_blocking(move || locks.exclusive(&name))
            .await
            .expect("lock task panicked")
            .map_err(PullError::io("lock layer"))?;
        if let Some(info) = self.images.snapshots.info(&self.chain_id) {
            self.report(Progress::LayerExists(self.layer.digest.clone()));
            return Ok(info.unpacked_size);
        }
        let limits = self
            .session
            .as_ref()
            .map(|s| s.limits.clone())
            .unwrap_or_default();
        let mut attempt = 1;
        let mut wait = limits.backoff;
        loop {
            let staging = self
                .images
                .snapshots
                .staging(&self.chain_id)
                .map_err(PullError::io("create snapshot"))?;
            let result = self.fetch_and_apply(staging).await;
            match result {
                Ok(size) => {
                    let info = SnapshotInfo {
                        diff_id: self.diff_id.clone(),
                        unpacked_size: size,
                    };
                    self.images
                        .snapshots
                        .commit(&self.chain_id, &info)
                        .map_err(PullError::io("commit snapshot"))?;
                    self.report(Progress::LayerDone(self.layer.digest.clone()));
                    return Ok(size);
                }
                Err(e) => {
                    let _ = self.images.snapshots.abort(&self.chain_id);
                    let transient = matches!(&e, PullError::Registry(r) if r.transient);
                    if !transient || attempt >= limits.attempts {
                        return Err(e);
                    }
                    tracing::debug!(layer = %self.layer.digest, attempt, "retrying layer: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.cancel.cancelled() => return Err(PullError::Cancelled),
                    }
                    wait *= 2;
                    attempt += 1;
                }
            }
        }
    }

    fn report(&self, p: Progress) {
        if let Some(f) = &self.progress {
            f(p);
        }
    }

    async fn fetch_and_apply(&self, fs_dir: PathBuf) -> Result<u64, PullError> {
        let layer = self.layer.digest.clone();
        let diff_id = self.diff_id.clone();
        let content = self.images.content.clone();
        if content.contains(&layer) {
            // The blob is here (an earlier pull, or `image load`): unpack it locally.
            let path = content.path(&layer);
            let applied = tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(&path).map_err(|source| {
                    crate::content::ContentError::Io {
                        digest: layer.clone(),
                        step: "open",
                        source,
                    }
                })?;
                layer::apply(file, None, &layer, &diff_id, &fs_dir)
            })
            .await
            .expect("unpack task panicked")?;
            return Ok(applied.unpacked_size);
        }

        let Some(session) = self.session.as_deref() else {
            return Err(PullError::Invalid(format!(
                "blob {layer} is missing from the store"
            )));
        };
        let writer = content
            .writer(&layer, self.layer.size)
            .map_err(LayerError::from)?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let worker = tokio::task::spawn_blocking(move || {
            layer::apply(
                ChannelSource::new(rx),
                Some(writer),
                &layer,
                &diff_id,
                &fs_dir,
            )
        });
        let oci = self.layer.to_oci();
        let download = async {
            // One try: `run` retries the whole layer, so the request itself must not.
            // Asked as a range from 0, the blob streams without oci-client's own
            // digest check: the worker hashes it anyway, and hashing 200 MB twice
            // was a tenth of a cold pull. A registry that ignores ranges answers in
            // full and oci-client checks too, which is merely slower.
            let response = session
                .once(|| {
                    session
                        .client
                        .pull_blob_stream_partial(&session.reference, &oci, 0, None)
                })
                .await
                .map_err(|e| e.about_blob(&self.layer.digest))?;
            let mut stream = match response {
                oci_client::client::BlobResponse::Full(s)
                | oci_client::client::BlobResponse::Partial(s) => s,
            };
            let mut received = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    RegistryError::new(
                        format!(
                            "download {}: {}",
                            self.layer.digest,
                            crate::registry::chain(&e)
                        ),
                        true,
                    )
                })?;
                received += chunk.len() as u64;
                self.report(Progress::LayerBytes(self.layer.digest.clone(), received));
                if tx.send(chunk).await.is_err() {
                    break; // the worker failed; its error says why
                }
            }
            Ok::<(), PullError>(())
        };
        // A sibling layer failed: stop the download at once, whatever it is
        // waiting for, but let the unpacking thread see the end and clean up.
        let downloaded = tokio::select! {
            r = download => r,
            _ = self.cancel.cancelled() => Err(PullError::Cancelled),
        };
        drop(tx);
        let applied = worker.await.expect("unpack task panicked");
        match (downloaded, applied) {
            (Err(PullError::Cancelled), _) => Err(PullError::Cancelled),
            (
                _,
                Err(e @ LayerError::Content(crate::content::ContentError::DigestMismatch { .. })),
            ) => Err(e.into()),
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(e.into()),
            (Ok(()), Ok(a)) => Ok(a.unpacked_size),
        }
    }
}
