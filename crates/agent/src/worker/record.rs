//! SyncPod's last step: record what the sync learned, as kubelet's status
//! manager does after SyncPod (pkg/kubelet/status/status_manager.go). Each
//! container's memory (observation and probe state) is stored when it
//! changed, then the pod's v1 status, computed from the observation: stored
//! before anyone can read it, and only when it changed, so a quiet pod costs
//! the database nothing.

use super::{Memory, WorkerError};
use crate::db::DbError;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use podrun_kubelet::probe::ContainerProbes;
use std::collections::HashMap;

/// Where the records go: the state database, or a double in tests.
pub(super) trait Records {
    /// Store container `name`'s restart count and memory (JSON).
    fn set_container(&mut self, name: &str, restarts: i64, memory: &str) -> Result<(), DbError>;
    /// Store the pod's v1 status (JSON).
    fn set_status(&mut self, status: &str) -> Result<(), DbError>;
}

/// What the sync ends with, and what was stored before it.
pub(super) struct Outcome<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The observation, after the sync's actions.
    pub observed: &'a podrun_kubelet::PodObservation,
    /// The containers' probe state, after the sync's probes.
    pub probes: &'a HashMap<String, ContainerProbes>,
    /// Each container's memory as stored before the sync (None: never stored).
    pub stored: &'a HashMap<String, Option<String>>,
    /// The v1 status stored before the sync (JSON).
    pub status: Option<&'a str>,
    /// Now.
    pub now: chrono::DateTime<chrono::Utc>,
    /// The pod manager's settings.
    pub config: &'a podrun_kubelet::Config,
}

/// Store what changed; the pod's status last. Whether the pod's phase became
/// Running with it (kubelet observes its pod start duration then).
pub(super) fn record(out: &Outcome<'_>, records: &mut impl Records) -> Result<bool, WorkerError> {
    let mut names: Vec<&String> = out.observed.containers.keys().collect();
    names.sort();
    for n in names {
        let o = &out.observed.containers[n];
        let memory = serde_json::to_string(&Memory {
            observation: o.clone(),
            probe_state: out.probes.get(n).cloned(),
        })
        .map_err(|source| WorkerError::Decode {
            what: format!("container {n}: its state"),
            source,
        })?;
        if out.stored.get(n).cloned().flatten().as_deref() != Some(memory.as_str()) {
            records.set_container(n, o.restart_count as i64, &memory)?;
        }
    }
    let previous: Option<PodStatus> = out.status.and_then(|s| serde_json::from_str(s).ok());
    let mut status = podrun_kubelet::status::pod_status(
        out.pod,
        out.observed,
        previous.as_ref(),
        out.now,
        out.config,
    );
    status.qos_class = Some(podrun_spec::qos_class(out.pod).as_str().to_string());
    let text = serde_json::to_string(&status).map_err(|source| WorkerError::Decode {
        what: "its status".into(),
        source,
    })?;
    if out.status != Some(text.as_str()) {
        records.set_status(&text)?;
    }
    let running = |s: Option<&PodStatus>| s.and_then(|s| s.phase.as_deref()) == Some("Running");
    Ok(running(Some(&status)) && !running(previous.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use podrun_kubelet::{ContainerObservation, PodObservation};

    #[derive(Default)]
    struct Recorded {
        containers: Vec<(String, i64, String)>,
        statuses: Vec<String>,
    }

    impl Records for Recorded {
        fn set_container(
            &mut self,
            name: &str,
            restarts: i64,
            memory: &str,
        ) -> Result<(), DbError> {
            self.containers
                .push((name.to_string(), restarts, memory.to_string()));
            Ok(())
        }
        fn set_status(&mut self, status: &str) -> Result<(), DbError> {
            self.statuses.push(status.to_string());
            Ok(())
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}
        }))
        .unwrap()
    }

    fn observed(restarts: i32) -> PodObservation {
        let mut o = PodObservation {
            sandbox: podrun_kubelet::SandboxState::Ready,
            pod_ips: vec!["10.88.0.5".into(), "fd00::5".into()],
            host_ips: vec!["192.0.2.7".into()],
            ..Default::default()
        };
        o.containers.insert(
            "app".into(),
            ContainerObservation {
                restart_count: restarts,
                ..Default::default()
            },
        );
        o
    }

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().into()
    }

    /// Runs `record` with what was stored, returns what it wrote.
    fn run(
        observed: &PodObservation,
        stored: &HashMap<String, Option<String>>,
        status: Option<&str>,
    ) -> Recorded {
        let pod = pod();
        let config = podrun_kubelet::Config::default();
        let probes = HashMap::new();
        let out = Outcome {
            pod: &pod,
            observed,
            probes: &probes,
            stored,
            status,
            now: at("2026-12-05T00:00:00Z"),
            config: &config,
        };
        let mut r = Recorded::default();
        record(&out, &mut r).unwrap();
        r
    }

    #[test]
    fn a_first_sync_stores_every_container_and_the_status() {
        let r = run(&observed(0), &HashMap::new(), None);
        assert_eq!(r.containers.len(), 1);
        assert_eq!(r.containers[0].0, "app");
        assert_eq!(r.containers[0].1, 0);
        assert_eq!(r.statuses.len(), 1);
        let status: PodStatus = serde_json::from_str(&r.statuses[0]).unwrap();
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(status.host_ip.as_deref(), Some("192.0.2.7"));
        let host_ips: Vec<&str> = status
            .host_ips
            .iter()
            .flatten()
            .map(|h| h.ip.as_str())
            .collect();
        assert_eq!(host_ips, ["192.0.2.7"]);
        assert_eq!(status.pod_ip.as_deref(), Some("10.88.0.5"));
        let pod_ips: Vec<&str> = status
            .pod_ips
            .iter()
            .flatten()
            .map(|p| p.ip.as_str())
            .collect();
        assert_eq!(pod_ips, ["10.88.0.5", "fd00::5"]);
    }

    /// The pod's IPs are part of its status: a change is stored.
    #[test]
    fn a_sync_that_sees_new_ips_stores_the_status() {
        let first = run(&observed(0), &HashMap::new(), None);
        let stored: HashMap<String, Option<String>> = first
            .containers
            .iter()
            .map(|(n, _, m)| (n.clone(), Some(m.clone())))
            .collect();
        let mut moved = observed(0);
        moved.pod_ips = vec!["10.88.0.9".into()];
        let next = run(&moved, &stored, Some(&first.statuses[0]));
        assert!(next.containers.is_empty(), "{:?}", next.containers);
        let status: PodStatus = serde_json::from_str(&next.statuses[0]).unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("10.88.0.9"));
    }

    #[test]
    fn a_sync_that_changed_nothing_writes_nothing() {
        let first = run(&observed(0), &HashMap::new(), None);
        let stored: HashMap<String, Option<String>> = first
            .containers
            .iter()
            .map(|(n, _, m)| (n.clone(), Some(m.clone())))
            .collect();
        let again = run(&observed(0), &stored, Some(&first.statuses[0]));
        assert!(again.containers.is_empty(), "{:?}", again.containers);
        assert!(again.statuses.is_empty(), "{:?}", again.statuses);
    }

    #[test]
    fn a_restart_stores_the_container_and_the_new_status() {
        let first = run(&observed(0), &HashMap::new(), None);
        let stored: HashMap<String, Option<String>> = first
            .containers
            .iter()
            .map(|(n, _, m)| (n.clone(), Some(m.clone())))
            .collect();
        let next = run(&observed(1), &stored, Some(&first.statuses[0]));
        assert_eq!(next.containers.len(), 1);
        assert_eq!(next.containers[0].1, 1, "the restart count is stored");
        assert_eq!(next.statuses.len(), 1, "the status shows the restart");
        let status: PodStatus = serde_json::from_str(&next.statuses[0]).unwrap();
        let restarts = status
            .container_statuses
            .iter()
            .flatten()
            .map(|c| c.restart_count)
            .collect::<Vec<_>>();
        assert_eq!(restarts, vec![1]);
    }
}
