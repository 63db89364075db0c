//! `podrun image load`: images from an OCI archive (an `oci-layout` tar, as
//! `skopeo copy … oci-archive:` and `docker save` ≥ 25 write) or a classic
//! `docker save` tarball (`manifest.json` with `RepoTags`), so images can come
//! without a registry. Every blob is verified on the way into the store.
//!
//! Names: an OCI index entry's `io.containerd.image.name` or
//! `org.opencontainers.image.ref.name` annotation when it is a full reference;
//! a bare tag in the latter becomes `localhost/<archive file stem>:<tag>`, as
//! an image with no repository must be called something.

use crate::digest::{chain_ids, Digest};
use crate::manifest::{self, Descriptor, Document, DOCKER_MANIFEST};
use crate::platform::Platform;
use crate::pull::LayerJob;
use crate::store::{ImageRecord, LayerRecord};
use crate::{ImageError, Images};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct OciIndexFile {
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    #[serde(flatten)]
    descriptor: Descriptor,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Load every image in the archive at `path`.
pub async fn load(
    images: &Images,
    path: &Path,
    platform: Option<Platform>,
) -> Result<Vec<ImageRecord>, ImageError> {
    let fail = |cause: String| ImageError::Load {
        path: path.display().to_string(),
        cause,
    };
    let scratch =
        Scratch::new(images.root()).map_err(|e| fail(format!("create scratch directory: {e}")))?;
    let file = fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let dir = scratch.0.clone();
    tokio::task::spawn_blocking(move || extract(file, &dir))
        .await
        .expect("extract task panicked")
        .map_err(fail)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "image".into());
    let wanted = platform.unwrap_or_else(Platform::host);
    let dir = &scratch.0;
    let loaded = if dir.join("index.json").is_file() {
        load_oci(images, dir, &stem, &wanted).await
    } else if dir.join("manifest.json").is_file() {
        load_docker(images, dir).await
    } else {
        Err("neither an OCI archive (index.json) nor a docker save tarball (manifest.json)".into())
    };
    loaded.map_err(fail)
}

/// A scratch directory under the store root, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(root: &Path) -> std::io::Result<Self> {
        let base = root.join("tmp");
        fs::create_dir_all(&base)?;
        let dir = base.join(format!("load-{}-{}", std::process::id(), rand_suffix()));
        fs::create_dir(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = crate::snapshot::remove_tree(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// Extract only plain files and directories, refusing names that leave `dir`.
fn extract(file: fs::File, dir: &Path) -> Result<(), String> {
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    for entry in archive
        .entries()
        .map_err(|e| format!("read archive: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("read archive: {e}"))?;
        let name = entry
            .path()
            .map_err(|e| format!("read archive: {e}"))?
            .into_owned();
        if name.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        }) {
            return Err(format!("archive entry {name:?} leaves the archive"));
        }
        let target = dir.join(&name);
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&target).map_err(|e| e.to_string())?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                let mut out = fs::File::create(&target).map_err(|e| format!("{name:?}: {e}"))?;
                std::io::copy(&mut entry, &mut out).map_err(|e| format!("{name:?}: {e}"))?;
            }
            // docker save links identical layers; symlinks are resolved by reading the target name.
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default()
                    .into_owned();
                let resolved = name.parent().unwrap_or(Path::new("")).join(&link);
                if resolved
                    .components()
                    .any(|c| matches!(c, std::path::Component::RootDir))
                {
                    return Err(format!("archive entry {name:?} links outside the archive"));
                }
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                // Copied later on first use; keep as a relative symlink inside the scratch dir.
                std::os::unix::fs::symlink(&link, &target).map_err(|e| e.to_string())?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Read a file that must stay inside `dir` (symlinks in docker archives point to siblings).
fn inside(dir: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = dir.join(rel);
    let canon = p.canonicalize().map_err(|e| format!("{rel}: {e}"))?;
    let base = dir.canonicalize().map_err(|e| e.to_string())?;
    if !canon.starts_with(&base) {
        return Err(format!("{rel}: points outside the archive"));
    }
    Ok(canon)
}

/// Copy a file into the content store, verifying it against `digest` (when
/// known) and returning its digest and size.
fn import_blob(
    images: &Images,
    file: &Path,
    digest: Option<&Digest>,
) -> Result<(Digest, u64), String> {
    let bytes_digest = match digest {
        Some(d) => d.clone(),
        None => {
            let mut f = fs::File::open(file).map_err(|e| e.to_string())?;
            let mut h = crate::digest::Hasher::new();
            std::io::copy(&mut f, &mut h).map_err(|e| e.to_string())?;
            h.finish()
        }
    };
    let size = fs::metadata(file).map_err(|e| e.to_string())?.len();
    if !images.content.contains(&bytes_digest) {
        let mut w = images
            .content
            .writer(&bytes_digest, size)
            .map_err(|e| e.to_string())?;
        let mut f = fs::File::open(file).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n]).map_err(|e| e.to_string())?;
        }
        w.commit().map_err(|e| e.to_string())?;
    }
    Ok((bytes_digest, size))
}

async fn load_oci(
    images: &Images,
    dir: &Path,
    stem: &str,
    wanted: &Platform,
) -> Result<Vec<ImageRecord>, String> {
    let index: OciIndexFile =
        serde_json::from_slice(&fs::read(dir.join("index.json")).map_err(|e| e.to_string())?)
            .map_err(|e| format!("index.json: {e}"))?;
    let blob = |d: &Digest| dir.join("blobs/sha256").join(d.hex());
    let mut out = Vec::new();
    for entry in index.manifests {
        let name = entry
            .annotations
            .get("io.containerd.image.name")
            .or_else(|| entry.annotations.get("org.opencontainers.image.ref.name"))
            .map(|n| image_name(n, stem))
            .transpose()?
            .ok_or_else(|| {
                format!(
                    "manifest {} has no name annotation",
                    entry.descriptor.digest
                )
            })?;
        let (mut digest, mut index_digest) = (entry.descriptor.digest.clone(), None);
        import_blob(images, &blob(&digest), Some(&digest))?;
        let mut bytes = images.content.read(&digest).map_err(|e| e.to_string())?;
        let manifest = loop {
            match manifest::parse(&bytes)? {
                Document::Manifest(m) => break m,
                Document::Index(_) if index_digest.is_some() => return Err("nested index".into()),
                Document::Index(entries) => {
                    let platforms: Vec<_> = entries.iter().map(|e| e.platform.clone()).collect();
                    let i = wanted
                        .choose(&platforms)
                        .ok_or_else(|| format!("{name}: no image for platform {wanted}"))?;
                    let child = entries[i].digest.clone();
                    import_blob(images, &blob(&child), Some(&child))?;
                    bytes = images.content.read(&child).map_err(|e| e.to_string())?;
                    index_digest = Some(std::mem::replace(&mut digest, child));
                }
            }
        };
        import_blob(
            images,
            &blob(&manifest.config.digest),
            Some(&manifest.config.digest),
        )?;
        for l in &manifest.layers {
            import_blob(images, &blob(&l.digest), Some(&l.digest))?;
        }
        out.push(finish(images, name, digest, index_digest, manifest).await?);
    }
    Ok(out)
}

async fn load_docker(images: &Images, dir: &Path) -> Result<Vec<ImageRecord>, String> {
    let entries: Vec<DockerSaveEntry> =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).map_err(|e| e.to_string())?)
            .map_err(|e| format!("manifest.json: {e}"))?;
    let mut out = Vec::new();
    for entry in entries {
        let (config_digest, config_size) = import_blob(images, &inside(dir, &entry.config)?, None)?;
        let mut layers = Vec::new();
        for l in &entry.layers {
            let (digest, size) = import_blob(images, &inside(dir, l)?, None)?;
            layers.push(serde_json::json!({
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                "digest": digest, "size": size,
            }));
        }
        // The archive has no manifest; write the one `docker push` would have.
        let manifest_json = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest, "size": config_size},
            "layers": layers,
        }))
        .map_err(|e| e.to_string())?;
        let digest = Digest::of(&manifest_json);
        images
            .content
            .put(&digest, &manifest_json)
            .map_err(|e| e.to_string())?;
        let Document::Manifest(manifest) = manifest::parse(&manifest_json)? else {
            unreachable!("a manifest we wrote")
        };
        let tags = entry.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            return Err(format!(
                "image {} has no RepoTags; podrun names every image",
                config_digest.short()
            ));
        }
        for tag in tags {
            let name = crate::reference::parse(&tag)
                .map_err(|e| e.to_string())?
                .whole();
            out.push(finish(images, name, digest.clone(), None, manifest.clone()).await?);
        }
    }
    Ok(out)
}

fn image_name(annotation: &str, stem: &str) -> Result<String, String> {
    let full = if annotation.contains(['/', ':']) && !annotation.starts_with(':') {
        annotation.to_string()
    } else {
        format!("localhost/{stem}:{annotation}")
    };
    crate::reference::parse(&full)
        .map(|r| r.whole())
        .map_err(|e| e.to_string())
}

async fn finish(
    images: &Images,
    name: String,
    manifest_digest: Digest,
    index_digest: Option<Digest>,
    manifest: manifest::Manifest,
) -> Result<ImageRecord, String> {
    let config_bytes = images
        .content
        .read(&manifest.config.digest)
        .map_err(|e| e.to_string())?;
    let config = manifest::parse_config(&config_bytes)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(format!(
            "{name}: config lists {} diff IDs for {} layers",
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        ));
    }
    let chains = chain_ids(&config.rootfs.diff_ids);
    let mut layers = Vec::new();
    for (i, l) in manifest.layers.iter().enumerate() {
        let job = LayerJob {
            images: images.clone(),
            session: None,
            layer: l.clone(),
            diff_id: config.rootfs.diff_ids[i].clone(),
            chain_id: chains[i].clone(),
            progress: None,
            cancel: Default::default(),
        };
        let unpacked_size = job.run().await.map_err(|e| format!("{name}: {e}"))?;
        layers.push(LayerRecord {
            digest: l.digest.clone(),
            media_type: l.media_type.clone(),
            size: l.size,
            diff_id: config.rootfs.diff_ids[i].clone(),
            chain_id: chains[i].clone(),
            unpacked_size,
        });
    }
    let platform = Platform {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
    };
    let record = ImageRecord {
        name,
        id: manifest.config.digest.clone(),
        manifest_digest,
        manifest_media_type: manifest.media_type.clone(),
        index_digest,
        platform: platform.to_string(),
        created: config.created.clone(),
        pulled_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        layers,
    };
    images.put_record(record).map_err(|e| e.to_string())
}
