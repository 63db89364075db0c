//! The pod manager's decisions, as kubelet makes them, written as plain
//! functions of (spec, observed status, clock): what to kill, create and start
//! ([`actions`]), when a crashed container or a failed pull may go again
//! ([`backoff`]), when probes run and what they conclude ([`probe`]), which
//! addresses a pod has ([`network`]), the v1 status a pod reports
//! ([`status`]) and the columns `kubectl get pods` prints ([`printer`]).
//!
//! Nothing here sleeps, spawns or touches a file: a driver observes the runtime,
//! calls these functions and carries out the answer. That is kubelet's own
//! split (`computePodActions`, then `SyncPod`), and it lets every rule be
//! tested table-driven with explicit times.
//!
//! A driver's round, in short:
//!
//! ```
//! use podrun_kubelet::{compute_pod_actions, Config, PodObservation, SandboxState};
//! use chrono::{TimeZone, Utc};
//!
//! let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
//!     "spec": {"initContainers": [{"name": "setup", "image": "busybox"}],
//!              "containers": [{"name": "app", "image": "nginx"}]},
//! }))
//! .unwrap();
//! let config = Config::default();
//! let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
//! let mut observed = PodObservation { start_time: Some(now), ..Default::default() };
//!
//! let actions = compute_pod_actions(&pod, &observed, now, &config);
//! assert!(actions.create_sandbox);
//! assert_eq!(actions.start_init, ["setup"]);
//!
//! // The driver creates the sandbox and starts `setup`, records what happened …
//! observed.sandbox = SandboxState::Ready;
//! let setup = observed.containers.entry("setup".into()).or_default();
//! setup.starting(now, &config.back_off);
//! setup.started(now, None);
//! // … and asks again: nothing to do until `setup` exits.
//! let actions = compute_pod_actions(&pod, &observed, now, &config);
//! assert!(actions.start.is_empty() && actions.next_sync.is_none());
//!
//! // The v1 status and kubectl's STATUS column follow from the same observation.
//! let status = podrun_kubelet::status::pod_status(&pod, &observed, None, now, &config);
//! let mut shown = pod.clone();
//! shown.status = Some(status);
//! assert_eq!(podrun_kubelet::printer::status_column(&shown), "Init:0/1");
//! ```

#![forbid(unsafe_code)]

pub mod actions;
pub mod backoff;
pub mod eviction;
pub mod grace;
pub mod network;
pub mod observe;
pub mod printer;
pub mod probe;
pub mod status;
#[cfg(test)]
mod testutil;

pub use actions::{compute_pod_actions, termination_order, Config, PodActions};
pub use backoff::{BackOff, BackOffConfig};
pub use observe::{
    ContainerObservation, ContainerState, PodObservation, SandboxState, Termination,
};
