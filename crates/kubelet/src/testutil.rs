//! Builders shared by the unit tests: pods from JSON, observations, a fixed clock.

use crate::backoff::BackOff;
use crate::observe::{
    ContainerObservation, ContainerState, PodObservation, SandboxState, Termination,
};
use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::core::v1::Pod;

/// The fake clock: `secs` after a fixed instant.
pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

/// A pod named `web` in `default` with uid `u1`, from its spec as JSON.
pub fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": spec,
    }))
    .unwrap()
}

/// A container spec as JSON.
pub fn c(name: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "image": format!("{name}:1")})
}

/// A native sidecar spec as JSON.
pub fn sidecar(name: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "image": format!("{name}:1"), "restartPolicy": "Always"})
}

/// A probe spec that any handler would fill.
pub fn probe() -> serde_json::Value {
    serde_json::json!({"exec": {"command": ["true"]}})
}

/// A running container, started at `started`.
pub fn running(started: i64) -> ContainerObservation {
    ContainerObservation {
        state: ContainerState::Running {
            started_at: t(started),
        },
        ..Default::default()
    }
}

/// An exited container.
pub fn exited(code: i32, started: i64, finished: i64) -> ContainerObservation {
    ContainerObservation {
        state: ContainerState::Exited(termination(code, started, finished)),
        ..Default::default()
    }
}

/// A termination record.
pub fn termination(code: i32, started: i64, finished: i64) -> Termination {
    Termination {
        exit_code: code,
        signal: None,
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
        message: None,
        started_at: Some(t(started)),
        finished_at: t(finished),
    }
}

/// An exited container whose back-off was moved at each of `restarts` (as
/// (finished_at, restarted_at) pairs), with the restart count to match.
pub fn crashed(
    code: i32,
    started: i64,
    finished: i64,
    restarts: &[(i64, i64)],
) -> ContainerObservation {
    let mut o = exited(code, started, finished);
    let mut b = BackOff::new();
    for &(f, s) in restarts {
        b.record_restart(t(f), t(s), &Default::default());
    }
    o.back_off = b;
    o.restart_count = restarts.len() as i32;
    o
}

/// An observation with a ready sandbox and these containers.
pub fn observed(containers: Vec<(&str, ContainerObservation)>) -> PodObservation {
    PodObservation {
        sandbox: SandboxState::Ready,
        containers: containers
            .into_iter()
            .map(|(n, o)| (n.to_string(), o))
            .collect(),
        start_time: Some(t(0)),
        ..Default::default()
    }
}
