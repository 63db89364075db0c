//! Sandboxes, containers and images behind a CRI-shaped API (RunPodSandbox,
//! CreateContainer, StartContainer …). So far: the sandbox, the per-pod
//! monitor, and [`service::SandboxRuntime`], the CRI calls for the containers
//! of one sandbox that the pod manager makes through it.

pub mod api;
pub mod cgroups;
pub mod images;
pub mod monitor;
pub mod node;
pub mod sandbox;
pub mod service;
pub mod state;

pub use api::{ImageService, RuntimeService};
pub use images::NodeImages;
pub use node::{NodeRuntime, RuntimeConfig};
/// The configs kubelet sends (CRI v1), as the interface takes them.
pub use podrun_oci::cri::*;

/// Errors met while going on past them, as one message (`a; b; c`).
fn join_errors<E: std::fmt::Display>(errors: &[E]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
