//! The eviction manager's local storage part (kubelet's
//! pkg/kubelet/eviction/eviction_manager.go `synchronize` →
//! `localStorageEviction`): one periodic task for the node, every
//! housekeeping interval (kubelet's 10 s; `PODRUN_HOUSEKEEPING_INTERVAL_MS`
//! for tests), measures the disk-backed emptyDirs that have a `sizeLimit` of
//! each running pod and evicts a pod with one over its limit: the `Evicted`
//! event now, then its worker kills it (grace 1 s), reports it Failed with
//! reason `Evicted` and never restarts it.
//!
//! Pods without such a volume cost a look at their stored manifest; nothing
//! is measured for them. Memory-medium emptyDirs are bounded by their tmpfs
//! size already.

use crate::db::{PodPhase, PodRow};
use crate::Agent;
use k8s_openapi::api::core::v1::Pod;
use podrun_kubelet::eviction::{empty_dir_limit_eviction, EmptyDirLimit, Eviction};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the eviction manager looks (kubelet's housekeeping period).
pub(crate) fn housekeeping_interval() -> Duration {
    std::env::var("PODRUN_HOUSEKEEPING_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// The disk-backed emptyDirs of `pod` with a positive `sizeLimit`, in spec
/// order (a limit that does not parse was refused when the pod was applied).
pub(crate) fn empty_dir_limits(pod: &Pod) -> Vec<EmptyDirLimit> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes
        .filter_map(|v| {
            let dir = v.empty_dir.as_ref()?;
            if dir.medium.as_deref().is_some_and(|m| !m.is_empty()) {
                return None;
            }
            let text = &dir.size_limit.as_ref()?.0;
            let bytes = podrun_spec::parse_quantity(text).ok()?.value();
            Some(EmptyDirLimit {
                volume: v.name.clone(),
                bytes: u64::try_from(bytes).ok().filter(|b| *b > 0)?,
                text: podrun_spec::canonical_quantity(text).unwrap_or_else(|_| text.clone()),
            })
        })
        .collect()
}

/// A running pod with limited emptyDirs: what to measure.
struct Candidate {
    namespace: String,
    name: String,
    pod_id: String,
    /// `<pod data dir>/volumes/<name>` of each limited volume.
    paths: Vec<(EmptyDirLimit, PathBuf)>,
}

/// The eviction already decided for pod `row` (by this agent, or stored in
/// its last status by an earlier one), if any.
pub(crate) fn recorded(agent: &Agent, row: &PodRow) -> Option<Eviction> {
    if let Some(e) = agent.evictions().get(&row.pod_id) {
        return Some(e.clone());
    }
    let status: k8s_openapi::api::core::v1::PodStatus =
        serde_json::from_str(row.status.as_deref()?).ok()?;
    (status.reason.as_deref() == Some(podrun_kubelet::eviction::REASON)).then(|| Eviction {
        message: status.message.unwrap_or_default(),
    })
}

fn candidates(agent: &Agent) -> Vec<Candidate> {
    let rows = match agent.db().pods() {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!("eviction manager: read the pods: {e}");
            return Vec::new();
        }
    };
    rows.into_iter()
        .filter(|r| r.state == PodPhase::Running)
        .filter_map(|row| {
            let pod: Pod = serde_json::from_str(&row.manifest).ok()?;
            let limits = empty_dir_limits(&pod);
            if limits.is_empty() || recorded(agent, &row).is_some() {
                return None;
            }
            let data_dir = agent.settings.root.join("pods").join(&row.pod_id);
            let volumes = podrun_volume::PodVolumes::new(data_dir);
            let paths = limits
                .into_iter()
                .filter_map(|l| {
                    let path = volumes.empty_dir_path(&l.volume).ok()?;
                    Some((l, path))
                })
                .collect();
            Some(Candidate {
                namespace: row.namespace,
                name: row.name,
                pod_id: row.pod_id,
                paths,
            })
        })
        .collect()
}

/// Measure each candidate's volumes and decide (blocking: it walks them).
fn measure(candidates: Vec<Candidate>) -> Vec<(Candidate, Eviction)> {
    candidates
        .into_iter()
        .filter_map(|c| {
            let mut usage = BTreeMap::new();
            for (limit, path) in &c.paths {
                match podrun_volume::disk_usage(path) {
                    Ok(Some(bytes)) => {
                        usage.insert(limit.volume.clone(), bytes);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        "pod/{}: volume {}: measure {}: {e}",
                        c.name,
                        limit.volume,
                        path.display()
                    ),
                }
            }
            let limits: Vec<EmptyDirLimit> = c.paths.iter().map(|(l, _)| l.clone()).collect();
            let eviction = empty_dir_limit_eviction(&limits, &usage)?;
            Some((c, eviction))
        })
        .collect()
}

/// One round of the eviction manager: evict each running pod over a limit.
async fn synchronize(agent: &Arc<Agent>) {
    let found = candidates(agent);
    if found.is_empty() {
        return;
    }
    let evicted = match tokio::task::spawn_blocking(move || measure(found)).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("eviction manager: measuring failed: {e}");
            return;
        }
    };
    for (c, eviction) in evicted {
        tracing::info!("pod/{}: evicted: {}", c.name, eviction.message);
        // evictPod records the event before it kills the pod.
        agent.event(
            &c.namespace,
            &c.name,
            "Warning",
            "Evicted",
            &eviction.message,
        );
        // kubelet's signal of an emptyDir over its sizeLimit
        // (pkg/kubelet/eviction/eviction_manager.go signalEmptyDirFsLimit).
        crate::metrics::evicted("emptydirfs.limit");
        agent.evictions().insert(c.pod_id, eviction);
        agent.kick(&c.namespace, &c.name, None);
    }
}

/// The eviction manager's loop; it ends with the agent.
pub(crate) async fn run(agent: Weak<Agent>) {
    let interval = housekeeping_interval();
    loop {
        tokio::time::sleep(interval).await;
        let Some(agent) = agent.upgrade() else {
            return;
        };
        synchronize(&agent).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_disk_empty_dirs_with_a_positive_limit_are_measured() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "a", "image": "busybox"}],
                "volumes": [
                    {"name": "plain", "emptyDir": {}},
                    {"name": "limited", "emptyDir": {"sizeLimit": "1024Ki"}},
                    {"name": "memory", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                    {"name": "zero", "emptyDir": {"sizeLimit": "0"}},
                    {"name": "host", "hostPath": {"path": "/tmp"}},
                    {"name": "decimal", "emptyDir": {"medium": "", "sizeLimit": "2M"}},
                ]
            }
        }))
        .unwrap();
        let got = empty_dir_limits(&pod);
        assert_eq!(
            got,
            vec![
                EmptyDirLimit {
                    volume: "limited".into(),
                    bytes: 1 << 20,
                    text: "1Mi".into(),
                },
                EmptyDirLimit {
                    volume: "decimal".into(),
                    bytes: 2_000_000,
                    text: "2M".into(),
                },
            ]
        );
    }
}
