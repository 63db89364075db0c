//! OCI runtime spec generation for one container of a Kubernetes pod.
//!
//! [`build`] turns a pod, one of its containers, the image's config and what the caller
//! prepared (root filesystem, namespaces to join, mounts, resolved environment, host
//! facts) into an [`oci_spec::runtime::Spec`], following kubelet's rules (command and
//! environment expansion, security context, resources) and containerd's (defaults,
//! capabilities, mounts, seccomp). It does no I/O: the caller reads the image's
//! /etc/passwd and /etc/group ([`UserFiles::read`]) and the host facts ([`Host::detect`])
//! beforehand.
//!
//! Runtime backends (embedded libcontainer, runc, crun) arrive with issue "run a pod".

#![forbid(unsafe_code)]

pub mod cri;
mod error;
mod host;
mod input;
pub mod mounts;
pub mod process;
pub mod resources;
pub mod seccomp;
pub mod security;
pub mod signal;
mod spec;
pub mod sysctl;
pub mod user;

pub use error::{Error, ErrorKind, ReadError};
pub use input::{ContainerInput, EnvVar, Host, ImageConfig, Mount, NamespacePaths};
pub use spec::{build, clamp_rlimits, pod_hostname, GeneratedSpec};
pub use user::UserFiles;
