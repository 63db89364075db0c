//! The runtime: sandboxes, containers and images behind a CRI-shaped
//! interface ([`RuntimeService`], [`ImageService`]: RunPodSandbox,
//! StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox,
//! CreateContainer, StartContainer, StopContainer, RemoveContainer,
//! ContainerStatus, ListContainers, Exec, ExecSync, PullImage, ImageStatus,
//! RemoveImage, ListImages) with plain Rust types ([`api`], and the CRI
//! configs of `podrun-oci` re-exported here) and typed errors. Its clients
//! are the pod manager and the CRI server; neither hands it a Pod, only the
//! configs kubelet sends.
//!
//! - [`node`]: [`NodeRuntime`], the RuntimeService of this machine: one
//!   monitor per sandbox, the sandbox's cgroup, its records;
//! - [`state`]: the runtime's records (`<run-root>/sandboxes/<id>/`);
//! - [`images`]: [`NodeImages`], the ImageService over `podrun-image`;
//! - [`stats`]: what a cgroup and a writable layer use (ContainerStats,
//!   PodSandboxStats);
//! - [`network`]: which pod network attaches a sandbox (CNI's or the
//!   default), and the record that makes its DEL happen once per ADD;
//! - [`monitor`]: the per-pod monitor (a process of its own) and its control
//!   socket; [`sandbox`]: the pause process and its namespace pins;
//!   [`cgroups`]: the pod cgroup.
//!
//! Not the runtime's: volumes and the pod's /etc/hosts (the pod manager's,
//! as kubelet's volume manager prepares host paths and containerd only
//! bind-mounts what it is given), and the pod manager's record of a pod.

pub mod api;
pub mod cgroups;
pub mod images;
pub mod monitor;
pub mod network;
pub mod node;
pub mod port_forward;
pub mod sandbox;
pub mod state;
pub mod stats;

pub use api::{Image, ImageService, RuntimeService};
pub use images::NodeImages;
pub use network::NetworkConfig;
pub use node::{NodeRuntime, RuntimeConfig};
/// Image garbage collection's policy and outcome (the agent's image GC).
pub use podrun_image::gc as image_gc;
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
