//! The pod manager's decisions, as kubelet makes them, written as plain
//! functions of (spec, observed status, clock): what to kill, create and start
//! ([`actions`]), when a crashed container or a failed pull may go again
//! ([`backoff`]), when probes run and what they conclude ([`probe`]), the v1
//! status a pod reports ([`status`]) and the columns `kubectl get pods` prints
//! ([`printer`]).
//!
//! Nothing here sleeps, spawns or touches a file: a driver observes the runtime,
//! calls these functions and carries out the answer. That is kubelet's own
//! split (`computePodActions`, then `SyncPod`), and it lets every rule be
//! tested table-driven with explicit times.

pub mod actions;
pub mod backoff;
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
