//! The JSON documents of an image: index (manifest list), manifest, config.
//! Docker schema2 and OCI share one shape; only media types differ.

use crate::digest::Digest;
use crate::platform::Platform;
use serde::Deserialize;

/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Everything a pull accepts, in the Accept header.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// Digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Index entries carry a platform.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// Foreign layers name where to get them.
    #[serde(default)]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    /// The same descriptor in oci-client's type.
    pub fn to_oci(&self) -> oci_client::manifest::OciDescriptor {
        oci_client::manifest::OciDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.to_string(),
            size: self.size as i64,
            urls: None,
            annotations: None,
            artifact_type: None,
        }
    }
}

/// What a manifest document turned out to be.
#[derive(Debug)]
pub enum Document {
    /// An index of per-platform manifests.
    Index(Vec<Descriptor>),
    /// One image manifest.
    Manifest(Manifest),
}

/// An image manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The media type, from the document or inferred.
    #[serde(default)]
    pub media_type: String,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// Parse a manifest or index document.
pub fn parse(bytes: &[u8]) -> Result<Document, String> {
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| format!("malformed manifest: {e}"))?;
    if probe.schema_version == Some(1) {
        return Err("Docker schema1 manifests are not supported; push the image again with a current client".into());
    }
    match (probe.manifests, probe.config, probe.layers) {
        (Some(manifests), _, _) => Ok(Document::Index(manifests)),
        (None, Some(config), Some(layers)) => {
            let media_type = probe.media_type.unwrap_or_else(|| {
                if config.media_type.starts_with("application/vnd.docker") {
                    DOCKER_MANIFEST.into()
                } else {
                    OCI_MANIFEST.into()
                }
            });
            if let Some(l) = layers.iter().find(|l| l.urls.is_some()) {
                return Err(format!(
                    "layer {} is a foreign layer (it has urls); not supported",
                    l.digest
                ));
            }
            Ok(Document::Manifest(Manifest {
                media_type,
                config,
                layers,
            }))
        }
        _ => Err("malformed manifest: neither an index nor an image manifest".into()),
    }
}

/// The parts of an image config podrun reads here.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageConfig {
    /// When the image was built.
    #[serde(default)]
    pub created: Option<String>,
    /// `amd64` …
    #[serde(default)]
    pub architecture: String,
    /// `linux`.
    #[serde(default)]
    pub os: String,
    /// `v8` …
    #[serde(default)]
    pub variant: Option<String>,
    /// The layers' diff IDs.
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    /// The uncompressed layers' digests, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// Parse an image config.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("malformed image config: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_index_from_manifest() {
        let d = Digest::of(b"x");
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        );
        match parse(idx.as_bytes()).unwrap() {
            Document::Index(m) => assert_eq!(
                m[0].platform.as_ref().unwrap().to_string(),
                "linux/arm64/v8"
            ),
            other => panic!("{other:?}"),
        }
        let man = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{d}","size":1}},"layers":[]}}"#
        );
        match parse(man.as_bytes()).unwrap() {
            Document::Manifest(m) => assert_eq!(m.media_type, DOCKER_MANIFEST),
            other => panic!("{other:?}"),
        }
        assert!(parse(br#"{"schemaVersion":1}"#)
            .unwrap_err()
            .contains("schema1"));
        assert!(parse(b"{").unwrap_err().contains("malformed"));
        let bad = format!(
            r#"{{"config":{{"digest":"{d}","size":1}},"layers":[{{"digest":"sha256:zz","size":1}}]}}"#
        );
        assert!(parse(bad.as_bytes())
            .unwrap_err()
            .contains("invalid digest"));
    }
}
