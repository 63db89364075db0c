//! PersistentVolumeClaims on one node, as podman kube play keeps them: a claim
//! is bound at once to a named local volume, the directory
//! `<root>/volumes/<namespace>/<claim>` under the agent's persistent root (not
//! the run root), so its data outlives the pods that mount it, agent restarts
//! and `podrun run`s. Only `podrun delete pvc` (or `delete -f`) removes it, and
//! not while a pod that has not terminated uses it.
//!
//! The claim's requested storage is recorded as its capacity, as a bound
//! claim's status shows it; nothing enforces it on the node's filesystem (the
//! annotation [`CAPACITY_NOT_ENFORCED`] says so on every claim).

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The annotation that says the capacity is a record, not a quota.
pub const CAPACITY_NOT_ENFORCED: &str = "podrun.io/capacity-not-enforced";

/// Why a claim's directory could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// persistentvolumeclaim {name:?}: {step} {path}: {source}
    #[error("persistentvolumeclaim {name:?}: {step} {}: {source}", .path.display())]
    Io {
        /// The claim.
        name: String,
        /// What was being done (`create its volume directory`).
        step: &'static str,
        /// The directory.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

/// The claim's volume: `<root>/volumes/<namespace>/<name>`. Both are validated
/// DNS names; an empty one would name a parent, so it panics instead.
pub fn dir(root: &Path, namespace: &str, name: &str) -> PathBuf {
    assert!(
        !namespace.is_empty() && !name.is_empty() && !name.contains('/'),
        "a claim's directory needs its namespace and name"
    );
    root.join("volumes").join(namespace).join(name)
}

/// Make the claim's directory (mode 0777, as the hostPath provisioner makes its
/// volumes, so that a pod of any user can write to it). Returns whether it was
/// made now (false: it was there, with data kept from before).
pub fn create_dir(root: &Path, namespace: &str, name: &str) -> Result<bool, ClaimError> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir(root, namespace, name);
    if path.is_dir() {
        return Ok(false);
    }
    let fail = |step, source| ClaimError::Io {
        name: name.to_string(),
        step,
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&path).map_err(|e| fail("create its volume directory", e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| fail("set the mode of its volume directory", e))?;
    Ok(true)
}

/// Remove the claim's directory and its data (a missing one is no error).
pub fn remove_dir(root: &Path, namespace: &str, name: &str) -> Result<(), ClaimError> {
    let path = dir(root, namespace, name);
    match std::fs::remove_dir_all(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ClaimError::Io {
            name: name.to_string(),
            step: "remove its volume directory",
            path,
            source: e,
        }),
        _ => Ok(()),
    }
}

/// The claim as stored: `new` with what the API server and the binder added
/// when it was first created (`old`, if any, keeps them): a uid, the creation
/// time, `spec.volumeName` (`pvc-<uid>`, the provisioner's naming) and the
/// bind annotations.
pub fn stored(
    new: &PersistentVolumeClaim,
    old: Option<&PersistentVolumeClaim>,
    uid: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> PersistentVolumeClaim {
    let mut claim = new.clone();
    let meta = &mut claim.metadata;
    match old {
        Some(old) => {
            meta.uid = old.metadata.uid.clone();
            meta.creation_timestamp = old.metadata.creation_timestamp.clone();
        }
        None => {
            meta.uid = Some(uid.to_string());
            meta.creation_timestamp = Some(time(now));
        }
    }
    let uid = meta.uid.clone().unwrap_or_default();
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    for (key, value) in [
        ("pv.kubernetes.io/bind-completed", "yes"),
        ("pv.kubernetes.io/bound-by-controller", "yes"),
        (
            CAPACITY_NOT_ENFORCED,
            "the volume is a directory of the node's filesystem: spec.resources.requests.storage is recorded, not enforced",
        ),
    ] {
        annotations.insert(key.into(), value.into());
    }
    if let Some(spec) = claim.spec.as_mut() {
        if spec.volume_name.as_deref().unwrap_or("").is_empty() {
            spec.volume_name = Some(format!("pvc-{uid}"));
        }
    }
    claim
}

/// The claim as `get -o yaml` shows it: Bound, with the requested storage as
/// its capacity and its access modes.
pub fn with_status(claim: &PersistentVolumeClaim) -> PersistentVolumeClaim {
    let mut claim = claim.clone();
    let spec = claim.spec.clone().unwrap_or_default();
    let capacity = spec
        .resources
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").cloned())
        .map(|q| BTreeMap::from([("storage".to_string(), q)]));
    claim.status = Some(PersistentVolumeClaimStatus {
        phase: Some("Bound".into()),
        access_modes: spec.access_modes,
        capacity,
        ..Default::default()
    });
    claim
}

/// kubectl's abbreviation of access modes (GetAccessModesAsString,
/// pkg/apis/core/helper): each once, in this order, comma-separated.
pub fn access_modes(modes: &[String]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.iter().any(|m| m == mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The `get pvc` table: kubectl's columns (printPersistentVolumeClaim,
/// pkg/printers/internalversion/printers.go), NAMESPACE first with `-A`.
pub fn rows(
    claims: &[PersistentVolumeClaim],
    all_namespaces: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Vec<String>> {
    let mut header = vec![
        "NAME",
        "STATUS",
        "VOLUME",
        "CAPACITY",
        "ACCESS MODES",
        "STORAGECLASS",
        "VOLUMEATTRIBUTESCLASS",
        "AGE",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let mut rows = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    for claim in claims {
        let spec = claim.spec.clone().unwrap_or_default();
        let status = claim.status.clone().unwrap_or_default();
        let phase = if claim.metadata.deletion_timestamp.is_some() {
            "Terminating".to_string()
        } else {
            status.phase.unwrap_or_default()
        };
        let volume = spec.volume_name.unwrap_or_default();
        // Capacity and access modes are the bound volume's, shown once bound.
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                status
                    .capacity
                    .and_then(|c| c.get("storage").map(|q| q.0.clone()))
                    .unwrap_or_default(),
                access_modes(&status.access_modes.unwrap_or_default()),
            )
        };
        let class = claim
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class").cloned())
            .or(spec.storage_class_name)
            .unwrap_or_default();
        let attributes_class = spec
            .volume_attributes_class_name
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "<unset>".into());
        let age = claim
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| {
                let age = now.timestamp() - t.0.as_second();
                podrun_kubelet::printer::human_duration(chrono::TimeDelta::seconds(age))
            })
            .unwrap_or_else(|| "<unknown>".into());
        let mut row = vec![
            claim.metadata.name.clone().unwrap_or_default(),
            phase,
            volume,
            capacity,
            modes,
            class,
            attributes_class,
            age,
        ];
        if all_namespaces {
            row.insert(0, claim.metadata.namespace.clone().unwrap_or_default());
        }
        rows.push(row);
    }
    rows
}

/// The names of the claims whose volumes `pod` has.
pub fn used_by(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

/// `now` as a metav1.Time (whole seconds, as the API server keeps it).
pub fn time(now: chrono::DateTime<chrono::Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(now.timestamp())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// A new uid in the API server's form (a random UUID, version 4).
pub fn new_uid() -> String {
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        // No randomness: the time is unique enough for one node's claims.
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes = (nanos as u128).to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests;
