//! kubelet's volume manager for the volumes whose content the pod manager
//! writes: configMap, secret, downwardAPI and projected (and the check that a
//! persistentVolumeClaim's claim exists before the containers start). Each is a directory of
//! the pod's (`<pod dir>/volumes/<name>`; a tmpfs for secret and projected
//! volumes, which kubelet never writes to the node's disk), filled by the atomic
//! writer before the pod's containers start and again on every sync of a running
//! pod, so that a changed ConfigMap or Secret reaches the containers that mount it
//! (except through a subPath, which kubelet never updates). A payload that did
//! not change writes nothing.

use crate::env::{NodeFacts, Sources};
use crate::projection::{self, ProjectionError};
use k8s_openapi::api::core::v1::Pod;
use podrun_volume::{atomic_writer, Medium, PodVolumes};
use std::path::Path;

/// Whether `pod` has a volume of these kinds (a pod without one costs a sync nothing).
pub fn any(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(projection::is_projected_kind)
}

/// Which volumes [`set_up`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// All of them, before a container starts.
    All,
    /// Those set up before: a sync's update of a running pod.
    Existing,
}

/// Set up the configMap, secret, downwardAPI and projected volumes of `pod`
/// under `data_dir` and write their current content. Stops at the first volume
/// that cannot be set up (kubelet's FailedMount: the containers wait; an update
/// that fails leaves the content as it was).
pub fn set_up(
    pod: &Pod,
    data_dir: &Path,
    sources: &Sources,
    node: &NodeFacts,
    which: Which,
) -> Result<(), ProjectionError> {
    let volumes = PodVolumes::new(data_dir);
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        // A claim's volume is its own directory (crate::claims), mounted as it
        // is; the claim must exist first, as kubelet's volume manager waits for it.
        if let Some(claim) = &v.persistent_volume_claim {
            if which == Which::All && !sources.claims.contains_key(&claim.claim_name) {
                return Err(ProjectionError {
                    volume: v.name.clone(),
                    message: format!("persistentvolumeclaim {:?} not found", claim.claim_name),
                });
            }
            continue;
        }
        if which == Which::Existing
            && !volumes
                .empty_dir_path(&v.name)
                .is_ok_and(|d| d.join(atomic_writer::DATA_DIR).exists())
        {
            continue;
        }
        let Some(payload) = projection::payload(pod, v, sources, node) else {
            continue;
        };
        let payload = payload?;
        let fail = |message: String| ProjectionError {
            volume: v.name.clone(),
            message,
        };
        let medium = if projection::needs_memory(v) {
            let pod_limit = podrun_spec::pod_cgroup_limits(pod).memory_limit;
            let node_memory = node.memory_bytes.max(0) as u64;
            Medium::Memory {
                size: podrun_volume::memory_empty_dir_size(None, pod_limit, node_memory),
            }
        } else {
            Medium::Disk
        };
        let dir = volumes
            .set_up_empty_dir(&v.name, medium)
            .map_err(|e| fail(e.to_string()))?;
        atomic_writer::write(&dir, &payload).map_err(|e| fail(e.to_string()))?;
        // kubelet's configmap/secret/downwardAPI/projected SetUpAt apply the
        // pod's fsGroup after each write, read-only, with no change policy.
        if let Some(group) = fs_group(pod) {
            podrun_volume::ownership::set_volume_ownership(
                &dir,
                group,
                true,
                podrun_volume::ownership::FsGroupChangePolicy::Always,
            )
            .map_err(|e| fail(format!("applying fsGroup {group}: {e}")))?;
        }
    }
    Ok(())
}

/// The pod's `securityContext.fsGroup`, when it has one a gid can hold.
pub fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .fs_group
        .and_then(|g| u32::try_from(g).ok())
}

/// The pod's `securityContext.fsGroupChangePolicy`.
pub fn fs_group_change_policy(pod: &Pod) -> podrun_volume::ownership::FsGroupChangePolicy {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group_change_policy.as_deref());
    match policy {
        Some("OnRootMismatch") => podrun_volume::ownership::FsGroupChangePolicy::OnRootMismatch,
        _ => podrun_volume::ownership::FsGroupChangePolicy::Always,
    }
}

/// kubelet's FailedMount event message for `e`.
pub fn failed_mount_message(e: &ProjectionError) -> String {
    format!(
        "MountVolume.SetUp failed for volume \"{}\" : {}",
        e.volume, e.message
    )
}
