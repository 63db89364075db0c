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
//!
//! Then the node-pressure part (`synchronize` after `localStorageEviction`):
//! the signals are observed — `memory.available` (MemTotal less the node's
//! working set), `allocatableMemory.available` when the pods' parent cgroup
//! (`/podrun`, `podrun.slice`) has a memory limit (kubelet's enforced node
//! allocatable: the limit less the pods' working set), `nodefs.*` and
//! `imagefs.*` from the file system of the root (podrun keeps its images
//! there: kubelet observes a shared image file system the same way) — and
//! checked against the hard thresholds (`eviction_hard`). While one is met,
//! `describe node` shows its pressure condition; the first met (memory's
//! first) picks the resource to reclaim; for a disk signal the unused images
//! are removed first (image_gc's `collect_images`) and the signals observed
//! again; then one pod a round is evicted, in
//! kubelet's order, with kubelet's message and a `DisruptionTarget`
//! condition. Critical pods (priority at or above system-critical, and static
//! pods: those of the manifests directory) are never evicted.

use crate::db::{PodPhase, PodRow};
use crate::Agent;
use k8s_openapi::api::core::v1::Pod;
use podrun_kubelet::eviction::{
    empty_dir_limit_eviction, pressure_message, rank, thresholds_met, ContainerUsage,
    EmptyDirLimit, Eviction, Observed, RankedPod, Signal, Threshold,
};
use podrun_runtime::api::{ContainerFilter, ContainerState};
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
    let disruption = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "DisruptionTarget");
    (status.reason.as_deref() == Some(podrun_kubelet::eviction::REASON)).then(|| Eviction {
        message: status.message.unwrap_or_default(),
        disruption,
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

/// One round of the eviction manager: evict each running pod over an
/// emptyDir limit; if none was, one pod for the node's pressure.
/// The pod IDs evicted.
async fn synchronize(agent: &Arc<Agent>) -> Vec<String> {
    let evicted = local_storage(agent).await;
    if !evicted.is_empty() {
        return evicted;
    }
    let a = agent.clone();
    let mut observed = blocking(move || observe(&a)).await;
    let Some(first) = thresholds_met(&agent.eviction_hard, &observed)
        .first()
        .map(|t| t.signal)
    else {
        return Vec::new();
    };
    // eviction_manager.go's node event, before it reclaims or evicts.
    agent.node_event(
        "Warning",
        "EvictionThresholdMet",
        &format!("Attempting to reclaim {}", first.resource()),
    );
    // Disk pressure: unused images go first, then the signals are looked at
    // again (`reclaimNodeLevelResources`: DeleteUnusedImages).
    if first.is_disk() {
        match crate::image_gc::collect_images(agent, u64::MAX).await {
            Ok(freed) => {
                tracing::info!("eviction manager: disk pressure: images freed {freed} bytes")
            }
            Err(e) => tracing::warn!("eviction manager: disk pressure: remove unused images: {e}"),
        }
        let a = agent.clone();
        observed = blocking(move || observe(&a)).await;
    }
    let agent = agent.clone();
    blocking(move || node_pressure(&agent, &observed).into_iter().collect()).await
}

/// `f` on the blocking pool; its default if the task failed.
async fn blocking<T: Default + Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap_or_default()
}

/// How long the manager waits for evicted pods to stop before it looks
/// again (eviction_manager.go `podCleanupTimeout`).
const POD_CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Wait until no container of the sandboxes `pod_ids` runs, at most
/// [`POD_CLEANUP_TIMEOUT`] (kubelet's `waitForPodsCleanup`, so that the
/// next round does not evict another pod for what the first one still
/// holds), looking again after 100 ms, doubling to 1 s.
fn wait_for_pods_cleanup(agent: &Agent, pod_ids: &[String]) {
    let deadline = std::time::Instant::now() + POD_CLEANUP_TIMEOUT;
    let mut pause = Duration::from_millis(100);
    loop {
        let running = pod_ids.iter().any(|id| {
            let filter = ContainerFilter {
                sandbox_id: Some(id.clone()),
                state: Some(ContainerState::Running),
                ..ContainerFilter::default()
            };
            agent
                .runtime
                .list_containers(&filter)
                .is_ok_and(|c| !c.is_empty())
        });
        if !running {
            return;
        }
        if std::time::Instant::now() + pause > deadline {
            tracing::warn!(
                "eviction manager: evicted pods still run after {POD_CLEANUP_TIMEOUT:?}"
            );
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// `localStorageEviction`: the pod IDs evicted.
async fn local_storage(agent: &Arc<Agent>) -> Vec<String> {
    let found = candidates(agent);
    if found.is_empty() {
        return Vec::new();
    }
    let evicted = match tokio::task::spawn_blocking(move || measure(found)).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("eviction manager: measuring failed: {e}");
            return Vec::new();
        }
    };
    let mut ids = Vec::new();
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
        agent.evictions().insert(c.pod_id.clone(), eviction);
        agent.kick(&c.namespace, &c.name, None);
        ids.push(c.pod_id);
    }
    ids
}

/// The pods' parent cgroup under the agent's cgroup driver.
fn pods_cgroup(agent: &Agent) -> &'static str {
    match agent.runtime.cgroup_driver() {
        podrun_runtime::cgroups::CgroupDriver::Cgroupfs => podrun_spec::POD_CGROUP_ROOT,
        podrun_runtime::cgroups::CgroupDriver::Systemd => "podrun.slice",
    }
}

/// The signals now (blocking: statvfs and cgroup files).
pub(crate) fn observe(agent: &Agent) -> BTreeMap<Signal, Observed> {
    let mut out = BTreeMap::new();
    let (total, working_set) = crate::top::node_memory();
    if total > 0 {
        out.insert(
            Signal::MemoryAvailable,
            Observed {
                available: total.saturating_sub(working_set),
                capacity: total,
            },
        );
    }
    let parent = pods_cgroup(agent);
    if let Some(limit) = podrun_runtime::stats::cgroup_memory_limit(parent) {
        let used = podrun_runtime::stats::cgroup_usage(parent)
            .working_set_bytes
            .unwrap_or(0);
        out.insert(
            Signal::AllocatableMemoryAvailable,
            Observed {
                available: limit.saturating_sub(used),
                capacity: limit,
            },
        );
    }
    if let Ok(fs) = rustix::fs::statvfs(&agent.settings.root) {
        let bytes = Observed {
            available: fs.f_bavail * fs.f_frsize,
            capacity: fs.f_blocks * fs.f_frsize,
        };
        let inodes = Observed {
            available: fs.f_ffree,
            capacity: fs.f_files,
        };
        out.insert(Signal::NodeFsAvailable, bytes);
        out.insert(Signal::ImageFsAvailable, bytes);
        // A file system without inode accounting (btrfs reports 0) has no
        // inode signal.
        if fs.f_files > 0 {
            out.insert(Signal::NodeFsInodesFree, inodes);
            out.insert(Signal::ImageFsInodesFree, inodes);
        }
    }
    out
}

/// What the hard threshold of `signal` takes from a capacity of `capacity`
/// (kubelet's allocatable is the capacity less it; 0 without one).
pub(crate) fn reserved(agent: &Agent, signal: Signal, capacity: u64) -> u64 {
    agent
        .eviction_hard
        .iter()
        .find(|t| t.signal == signal)
        .map_or(0, |t| t.quantity(capacity))
}

/// The pressure conditions of the node now (`MemoryPressure`,
/// `DiskPressure`): those of a threshold met.
pub(crate) fn pressure(agent: &Agent) -> std::collections::BTreeSet<&'static str> {
    thresholds_met(&agent.eviction_hard, &observe(agent))
        .iter()
        .map(|t| t.signal.condition())
        .collect()
}

/// A running pod the node may evict for pressure.
struct Pressured {
    row: PodRow,
    pod: Pod,
}

/// What pod `p` uses of `resource`, in all and by container (bytes, or
/// inodes): memory is its cgroup's working set; ephemeral storage its
/// containers' writable layers, its logs and its disk-backed emptyDirs (the
/// same file system as the root); inodes the same trees' inodes.
fn usage_of(
    agent: &Agent,
    p: &Pressured,
    resource: &str,
) -> (Option<u64>, Vec<(String, Option<u64>)>) {
    let in_pod = ContainerFilter {
        sandbox_id: Some(p.row.pod_id.clone()),
        ..ContainerFilter::default()
    };
    let containers = agent.runtime.list_containers(&in_pod).unwrap_or_default();
    let live = containers
        .iter()
        .filter(|c| c.state == ContainerState::Running || c.state == ContainerState::Created);
    if resource == "memory" {
        let total = agent
            .runtime
            .pod_sandbox_stats(&p.row.pod_id)
            .ok()
            .and_then(|s| s.usage.working_set_bytes);
        let each = live
            .map(|c| {
                let ws = agent
                    .runtime
                    .container_stats(&c.id)
                    .ok()
                    .and_then(|s| s.usage.working_set_bytes);
                (c.name.clone(), ws)
            })
            .collect();
        return (total, each);
    }
    let pick = |(bytes, inodes): (u64, u64)| if resource == "inodes" { inodes } else { bytes };
    let root_dev = std::fs::metadata(&agent.settings.root).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.dev()
    });
    let same_fs = |path: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).map(|m| m.dev()).ok() == root_dev.as_ref().ok().copied()
    };
    let run_dir = agent.settings.run_root.join("pods").join(&p.row.pod_id);
    let mut each: Vec<(String, Option<u64>)> = Vec::new();
    let mut total = 0u64;
    for c in live {
        let layer = agent
            .runtime
            .container_stats(&c.id)
            .ok()
            .and_then(|s| s.writable_layer)
            .map(|(_, bytes, inodes)| pick((bytes, inodes)));
        let logs_dir = crate::logs::container_dir(&run_dir, &c.name);
        let logs = if same_fs(&logs_dir) {
            podrun_runtime::stats::tree_usage(&logs_dir).map(pick)
        } else {
            Some(0)
        };
        let used = layer.map(|l| l + logs.unwrap_or(0));
        total += used.unwrap_or(0);
        each.push((c.name.clone(), used));
    }
    let data_dir = agent.settings.root.join("pods").join(&p.row.pod_id);
    let volumes = podrun_volume::PodVolumes::new(data_dir);
    for v in p.pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let disk = v
            .empty_dir
            .as_ref()
            .is_some_and(|d| d.medium.as_deref().unwrap_or("").is_empty());
        if !disk {
            continue;
        }
        if let Ok(path) = volumes.empty_dir_path(&v.name) {
            if same_fs(&path) {
                total += podrun_runtime::stats::tree_usage(&path).map_or(0, pick);
            }
        }
    }
    (Some(total), each)
}

/// A pod's request of `resource` in bytes (inodes have none).
fn pod_request(pod: &Pod, resource: &str) -> u64 {
    let (requests, _) = podrun_spec::pod_requests_and_limits(pod);
    requests
        .get(resource)
        .map_or(0, |nanos| u64::try_from(nanos / 1_000_000_000).unwrap_or(0))
}

/// Container `name`'s request of `resource`: bytes, and as the API prints it.
fn container_request(pod: &Pod, name: &str, resource: &str) -> (u64, String) {
    let text = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .find(|c| c.name == name)
        .and_then(|c| {
            c.resources
                .as_ref()?
                .requests
                .as_ref()?
                .get(resource)
                .cloned()
        });
    let Some(text) = text else {
        return (0, "0".into());
    };
    let bytes = podrun_spec::parse_quantity(&text.0)
        .map(|q| u64::try_from(q.value()).unwrap_or(0))
        .unwrap_or(0);
    let shown = podrun_spec::canonical_quantity(&text.0).unwrap_or(text.0);
    (bytes, shown)
}

/// A pod kubelet never evicts: a static pod, or one of system-critical
/// priority (kubelettypes.IsCriticalPod).
fn critical(row: &PodRow, pod: &Pod) -> bool {
    row.source.starts_with("file:")
        || pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
            >= podrun_kubelet::eviction::SYSTEM_CRITICAL_PRIORITY
}

/// The node-pressure part of a round (blocking): while a threshold is met by
/// `observed`, evict one pod for the first one's resource; its ID.
fn node_pressure(agent: &Arc<Agent>, observed: &BTreeMap<Signal, Observed>) -> Option<String> {
    let met = thresholds_met(&agent.eviction_hard, observed);
    let first = met.first()?;
    let resource = first.signal.resource();
    let pods: Vec<Pressured> = agent
        .db()
        .pods()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.state == PodPhase::Running && !r.pod_id.is_empty())
        .filter(|r| recorded(agent, r).is_none())
        .filter_map(|row| {
            let pod: Pod = serde_json::from_str(&row.manifest).ok()?;
            Some(Pressured { row, pod })
        })
        .collect();
    let (ranked, mut usages): (Vec<RankedPod>, Vec<_>) = pods
        .iter()
        .map(|p| {
            let (usage, each) = usage_of(agent, p, resource);
            let ranked = RankedPod {
                priority: p.pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
                usage,
                request: pod_request(&p.pod, resource),
            };
            (ranked, each)
        })
        .unzip();
    let threshold_info = threshold_met_info(&met, resource, observed);
    for i in rank(&ranked) {
        let p = &pods[i];
        if critical(&p.row, &p.pod) {
            tracing::warn!(
                "pod/{}: eviction manager: cannot evict a critical pod",
                p.row.name
            );
            continue;
        }
        let containers: Vec<ContainerUsage> = std::mem::take(&mut usages[i])
            .into_iter()
            .map(|(name, usage)| ContainerUsage {
                request: container_request(&p.pod, &name, resource),
                name,
                usage: usage.filter(|_| resource != "inodes"),
            })
            .collect();
        let message = pressure_message(resource, threshold_info, &containers);
        tracing::info!(
            "pod/{}: evicted for {}: {message}",
            p.row.name,
            first.signal.name()
        );
        agent.event(
            &p.row.namespace,
            &p.row.name,
            "Warning",
            "Evicted",
            &message,
        );
        crate::metrics::evicted(first.signal.name());
        agent.evictions().insert(
            p.row.pod_id.clone(),
            Eviction {
                message,
                disruption: true,
            },
        );
        agent.kick(&p.row.namespace, &p.row.name, None);
        return Some(p.row.pod_id.clone());
    }
    None
}

/// helpers.go `getThresholdMetInfo`: the quantity and availability of the
/// first met threshold of `resource`.
fn threshold_met_info(
    met: &[&Threshold],
    resource: &str,
    observed: &BTreeMap<Signal, Observed>,
) -> Option<(u64, u64)> {
    met.iter()
        .filter(|t| t.signal.resource() == resource)
        .find_map(|t| {
            let o = observed.get(&t.signal)?;
            Some((t.quantity(o.capacity), o.available))
        })
}

/// The eviction manager's loop; it ends with the agent.
pub(crate) async fn run(agent: Weak<Agent>) {
    let interval = housekeeping_interval();
    loop {
        tokio::time::sleep(interval).await;
        let Some(agent) = agent.upgrade() else {
            return;
        };
        let evicted = synchronize(&agent).await;
        if !evicted.is_empty() {
            let _ =
                tokio::task::spawn_blocking(move || wait_for_pods_cleanup(&agent, &evicted)).await;
        }
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
