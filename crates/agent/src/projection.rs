//! What a configMap, secret, downwardAPI or projected volume holds, as
//! kubelet's volume plugins compute it before the atomic writer writes it:
//! pkg/volume/configmap/configmap.go and pkg/volume/secret/secret.go
//! `MakePayload`, pkg/volume/downwardapi/downwardapi.go `CollectData`,
//! pkg/volume/projected/projected.go `collectData`. Pure functions of the pod,
//! the namespace's ConfigMaps and Secrets and the node's facts; the errors are
//! kubelet's words, each naming the volume.

use crate::env::{NodeFacts, Sources};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource, Secret, Volume,
};
use podrun_volume::atomic_writer::{FileProjection, Payload};
use std::collections::BTreeMap;

/// The mode of a volume's files when neither `defaultMode` nor the item's `mode`
/// says one (0644, the API server's default).
pub const DEFAULT_MODE: i32 = 0o644;

/// Why a volume's content cannot be made (the container waits,
/// CreateContainerConfigError, as kubelet's FailedMount does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("volume {volume}: {message}")]
pub struct ProjectionError {
    /// The volume's name.
    pub volume: String,
    /// kubelet's words.
    pub message: String,
}

/// The kinds of volume whose content this module computes.
pub fn is_projected_kind(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// Whether the volume holds secrets, which kubelet keeps on a tmpfs only.
pub fn needs_memory(v: &Volume) -> bool {
    v.secret.is_some() || v.projected.is_some()
}

/// The content of volume `v` of `pod`, or `None` when it is not a kind this
/// module knows.
pub fn payload(
    pod: &Pod,
    v: &Volume,
    sources: &Sources,
    node: &NodeFacts,
) -> Option<Result<Payload, ProjectionError>> {
    let fail = |message: String| ProjectionError {
        volume: v.name.clone(),
        message,
    };
    let result = if let Some(c) = &v.config_map {
        let mode = c.default_mode.unwrap_or(DEFAULT_MODE);
        let optional = c.optional.unwrap_or(false);
        config_map(
            &c.name,
            sources.config_maps.get(&c.name),
            c.items.as_deref(),
            mode,
            optional,
        )
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.unwrap_or(DEFAULT_MODE);
        let optional = s.optional.unwrap_or(false);
        secret(
            &name,
            sources.secrets.get(&name),
            s.items.as_deref(),
            mode,
            optional,
        )
    } else if let Some(d) = &v.downward_api {
        let mode = d.default_mode.unwrap_or(DEFAULT_MODE);
        downward_api(pod, d.items.as_deref().unwrap_or_default(), mode, node)
    } else if let Some(p) = &v.projected {
        projected(pod, p, sources, node)
    } else {
        return None;
    };
    Some(result.map_err(fail))
}

fn file(data: Vec<u8>, mode: i32) -> FileProjection {
    FileProjection {
        data,
        mode: (mode as u32) & 0o7777,
    }
}

/// A ConfigMap's keys (`data` and `binaryData`) as files.
fn config_map(
    name: &str,
    cm: Option<&ConfigMap>,
    items: Option<&[KeyToPath]>,
    mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let Some(cm) = cm else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(format!("configmap \"{name}\" not found"))
        };
    };
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    keys_to_files(
        data,
        items,
        mode,
        optional,
        "configmap references non-existent config key",
    )
}

/// A Secret's keys (`data`, with `stringData` merged over it as the API
/// server stores it) as files.
fn secret(
    name: &str,
    s: Option<&Secret>,
    items: Option<&[KeyToPath]>,
    mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let Some(s) = s else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(format!("secret \"{name}\" not found"))
        };
    };
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    keys_to_files(
        data,
        items,
        mode,
        optional,
        "secret references non-existent secret key",
    )
}

/// kubelet's `MakePayload`: every key when no items are given, else each item's
/// key at its path with its mode (a missing key fails unless optional).
fn keys_to_files(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: i32,
    optional: bool,
    missing: &str,
) -> Result<Payload, String> {
    let items = items.unwrap_or_default();
    if items.is_empty() {
        return Ok(data.into_iter().map(|(k, v)| (k, file(v, mode))).collect());
    }
    let mut out = Payload::new();
    for item in items {
        let Some(v) = data.get(&item.key) else {
            if optional {
                continue;
            }
            return Err(format!("{missing}: {}", item.key));
        };
        out.insert(
            item.path.clone(),
            file(v.clone(), item.mode.unwrap_or(mode)),
        );
    }
    Ok(out)
}

/// kubelet's `CollectData`: each item's fieldRef (metadata only, as the API
/// server allows for volumes) or resourceFieldRef, at its path.
fn downward_api(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode: i32,
    node: &NodeFacts,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            if !f.field_path.starts_with("metadata.") {
                Err(format!("unsupported fieldPath: {}", f.field_path))
            } else {
                crate::env::field_value(pod, &f.field_path, node)
            }
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or_default();
            crate::env::find_container(pod, name)
                .and_then(|c| crate::env::resource_value(c, &r.resource, r.divisor.as_ref(), node))
        } else {
            Ok(String::new())
        };
        match value {
            Ok(v) => {
                out.insert(
                    item.path.clone(),
                    file(v.into_bytes(), item.mode.unwrap_or(mode)),
                );
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("; "))
    }
}

/// kubelet's projected `collectData`: every source's files in one volume, with
/// the volume's `defaultMode`; two sources writing one path are refused (the
/// API server's "conflicting duplicate paths").
fn projected(
    pod: &Pod,
    p: &ProjectedVolumeSource,
    sources: &Sources,
    node: &NodeFacts,
) -> Result<Payload, String> {
    let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
    let mut out = Payload::new();
    for source in p.sources.iter().flatten() {
        let files = if let Some(c) = &source.config_map {
            let optional = c.optional.unwrap_or(false);
            let cm = sources.config_maps.get(&c.name);
            config_map(&c.name, cm, c.items.as_deref(), mode, optional)?
        } else if let Some(s) = &source.secret {
            let optional = s.optional.unwrap_or(false);
            let found = sources.secrets.get(&s.name);
            secret(&s.name, found, s.items.as_deref(), mode, optional)?
        } else if let Some(d) = &source.downward_api {
            downward_api(pod, d.items.as_deref().unwrap_or_default(), mode, node)?
        } else if source.service_account_token.is_some() {
            return Err(
                "serviceAccountToken: not available on a standalone node (no API server issues tokens)"
                    .into(),
            );
        } else if source.cluster_trust_bundle.is_some() {
            return Err(
                "clusterTrustBundle: not available on a standalone node (no API server holds trust bundles)"
                    .into(),
            );
        } else {
            return Err("a projection source podrun does not know".into());
        };
        for (path, f) in files {
            if out.insert(path.clone(), f).is_some() {
                return Err(format!("conflicting duplicate paths: {path}"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
