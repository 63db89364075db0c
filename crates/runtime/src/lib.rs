//! Sandboxes, containers and images behind a CRI-shaped API (RunPodSandbox,
//! CreateContainer, StartContainer …). So far: the sandbox and the per-pod monitor.

pub mod cgroups;
pub mod monitor;
pub mod sandbox;
