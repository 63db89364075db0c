//! What a pod's records say about it, in kubectl's words: each container's
//! state, the pod's phase, and the READY, STATUS and AGE columns of
//! `kubectl get pods`. Pure functions of the records and the time.
//!
//! Restarts, probes and the full v1 status come with the pod manager; until
//! then a container is ready once it runs, and never restarts.

use podrun_runtime::monitor::{ExitRecord, StartRecord};
use std::collections::HashMap;

/// A container's state, as the API's `ContainerState`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not started (yet): `ContainerCreating`, or `Unknown` when its monitor is gone.
    Waiting(String),
    /// Its process runs.
    Running {
        /// RFC 3339.
        started_at: String,
    },
    /// It exited, or failed to start.
    Terminated(ExitRecord),
}

/// One container of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    /// Its name in the pod.
    pub name: String,
    /// What it is doing.
    pub state: State,
    /// Ready (running, as no readiness probe is run yet).
    pub ready: bool,
}

/// The pod as `get pods` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Pending, Running, Succeeded, Failed or Unknown.
    pub phase: &'static str,
    /// Its containers, in the manifest's order.
    pub containers: Vec<ContainerView>,
}

/// The view of a pod from its records. `monitor_alive` tells whether its
/// monitor still runs: without it, nothing not yet recorded will change.
pub fn observe(
    names: &[String],
    starts: &HashMap<String, StartRecord>,
    exits: &HashMap<String, ExitRecord>,
    monitor_alive: bool,
) -> PodView {
    let containers: Vec<ContainerView> = names
        .iter()
        .map(|name| {
            let state = match (exits.get(name), starts.get(name)) {
                (Some(exit), _) => State::Terminated(exit.clone()),
                (None, Some(start)) if monitor_alive => State::Running {
                    started_at: start.started_at.clone(),
                },
                (None, None) if monitor_alive => State::Waiting("ContainerCreating".into()),
                _ => State::Waiting("Unknown".into()),
            };
            ContainerView {
                name: name.clone(),
                ready: matches!(state, State::Running { .. }),
                state,
            }
        })
        .collect();
    // pkg/api/v1/pod (kubelet's getPhase) without restarts: every container
    // terminated → Succeeded when all exited 0, else Failed; any running → Running.
    let terminated: Vec<&ExitRecord> = containers
        .iter()
        .filter_map(|c| match &c.state {
            State::Terminated(e) => Some(e),
            _ => None,
        })
        .collect();
    let running = containers
        .iter()
        .any(|c| matches!(c.state, State::Running { .. }));
    let unknown = containers
        .iter()
        .any(|c| c.state == State::Waiting("Unknown".into()));
    let phase = if !containers.is_empty() && terminated.len() == containers.len() {
        if terminated.iter().all(|e| e.exit_code == 0) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if unknown {
        "Unknown"
    } else if running {
        "Running"
    } else {
        "Pending"
    };
    PodView { phase, containers }
}

/// The READY column: `<ready>/<total>`.
pub fn ready_column(view: &PodView) -> String {
    let ready = view.containers.iter().filter(|c| c.ready).count();
    format!("{ready}/{}", view.containers.len())
}

/// The STATUS column as kubectl's printPod computes it: the phase, replaced
/// by the reason of a waiting or terminated container (the first such
/// container's: kubectl walks them backwards); running containers set no
/// reason, but `Completed` beside a running container reads `Running`.
pub fn status_column(view: &PodView, terminating: bool) -> String {
    let mut reason = view.phase.to_string();
    let mut has_running = false;
    for c in view.containers.iter().rev() {
        match &c.state {
            State::Waiting(r) if !r.is_empty() => reason = r.clone(),
            State::Terminated(e) if !e.reason.is_empty() => reason = e.reason.clone(),
            State::Terminated(e) => {
                reason = match e.signal {
                    Some(s) => format!("Signal:{s}"),
                    None => format!("ExitCode:{}", e.exit_code),
                }
            }
            State::Running { .. } if c.ready => has_running = true,
            _ => {}
        }
    }
    if reason == "Completed" && has_running {
        reason = "Running".into();
    }
    if terminating {
        reason = "Terminating".into();
    }
    reason
}

/// kubectl's AGE: apimachinery's `duration.HumanDuration` (the kubelet crate's printer).
pub fn human_duration(seconds: i64) -> String {
    podrun_kubelet::printer::human_duration(chrono::TimeDelta::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(name: &str, code: i32, reason: &str) -> ExitRecord {
        ExitRecord {
            name: name.into(),
            id: format!("p-{name}"),
            exit_code: code,
            signal: None,
            started_at: "2026-11-27T10:00:00Z".into(),
            finished_at: "2026-11-27T10:00:01Z".into(),
            oom_killed: reason == "OOMKilled",
            reason: reason.into(),
            message: None,
        }
    }

    fn start(name: &str) -> StartRecord {
        StartRecord {
            name: name.into(),
            id: format!("p-{name}"),
            pid: 10,
            started_at: "2026-11-27T10:00:00Z".into(),
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_pod_being_created_is_pending_with_container_creating() {
        let v = observe(&names(&["a"]), &HashMap::new(), &HashMap::new(), true);
        assert_eq!(v.phase, "Pending");
        assert_eq!(status_column(&v, false), "ContainerCreating");
        assert_eq!(ready_column(&v), "0/1");
    }

    #[test]
    fn running_containers_are_ready() {
        let starts = HashMap::from([("a".into(), start("a")), ("b".into(), start("b"))]);
        let v = observe(&names(&["a", "b"]), &starts, &HashMap::new(), true);
        assert_eq!(v.phase, "Running");
        assert_eq!(status_column(&v, false), "Running");
        assert_eq!(ready_column(&v), "2/2");
        assert_eq!(status_column(&v, true), "Terminating");
    }

    #[test]
    fn a_completed_container_beside_a_running_one_reads_running() {
        let starts = HashMap::from([("a".into(), start("a")), ("b".into(), start("b"))]);
        let exits = HashMap::from([("a".into(), exit("a", 0, "Completed"))]);
        let v = observe(&names(&["a", "b"]), &starts, &exits, true);
        assert_eq!(v.phase, "Running");
        assert_eq!(status_column(&v, false), "Running");
        assert_eq!(ready_column(&v), "1/2");
    }

    #[test]
    fn the_first_containers_reason_wins_as_in_kubectl() {
        let exits = HashMap::from([
            ("a".into(), exit("a", 0, "Completed")),
            ("b".into(), exit("b", 1, "Error")),
        ]);
        let v = observe(&names(&["a", "b"]), &HashMap::new(), &exits, false);
        assert_eq!(v.phase, "Failed");
        assert_eq!(status_column(&v, false), "Completed");
        let v = observe(&names(&["b", "a"]), &HashMap::new(), &exits, false);
        assert_eq!(status_column(&v, false), "Error");
    }

    #[test]
    fn all_zero_exits_succeed_and_oom_kills_show() {
        let exits = HashMap::from([("a".into(), exit("a", 0, "Completed"))]);
        let v = observe(&names(&["a"]), &HashMap::new(), &exits, false);
        assert_eq!(v.phase, "Succeeded");
        assert_eq!(status_column(&v, false), "Completed");
        let exits = HashMap::from([("a".into(), exit("a", 137, "OOMKilled"))]);
        let v = observe(&names(&["a"]), &HashMap::new(), &exits, false);
        assert_eq!(v.phase, "Failed");
        assert_eq!(status_column(&v, false), "OOMKilled");
    }

    #[test]
    fn without_a_reason_the_code_or_signal_shows() {
        let mut e = exit("a", 137, "");
        e.signal = Some(9);
        let exits = HashMap::from([("a".into(), e)]);
        let v = observe(&names(&["a"]), &HashMap::new(), &exits, false);
        assert_eq!(status_column(&v, false), "Signal:9");
    }

    #[test]
    fn a_pod_whose_monitor_is_gone_is_unknown() {
        let starts = HashMap::from([("a".into(), start("a"))]);
        let v = observe(&names(&["a"]), &starts, &HashMap::new(), false);
        assert_eq!(v.phase, "Unknown");
        assert_eq!(status_column(&v, false), "Unknown");
    }

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        for (s, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 5, "3h5m"),
            (9 * 3600, "9h"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }
}
