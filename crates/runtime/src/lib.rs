//! Sandboxes, containers and images behind a CRI-shaped API (RunPodSandbox,
//! CreateContainer, StartContainer …). So far: the sandbox.

pub mod sandbox;
