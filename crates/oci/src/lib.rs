//! OCI runtime spec generation for one container, as containerd's CRI plugin does it.
//!
//! [`build`] turns a container's CRI config and its sandbox's ([`cri`]: what kubelet
//! sends, the pod's rules applied — command and environment expanded, security context
//! merged, resources computed), the image's config and what the runtime prepared (root
//! filesystem, namespaces to join, host facts) into an [`oci_spec::runtime::Spec`],
//! with containerd's rules (process args and environment merged with the image's,
//! defaults, user resolution, capabilities, mounts, seccomp, sysctls). Nothing here
//! reads a Pod: turning one into these configs is the pod manager's
//! (`podrun_agent::container_config`), as it is kubelet's. It does no I/O: the caller
//! reads the image's /etc/passwd and /etc/group ([`UserFiles::read`]) and the host facts
//! ([`Host::detect`]) beforehand.

#![forbid(unsafe_code)]

pub mod cri;
mod error;
mod host;
mod input;
pub mod mounts;
pub mod process;
pub mod seccomp;
pub mod security;
pub mod signal;
mod spec;
pub mod user;

pub use error::{Error, ErrorKind, ReadError};
pub use input::{ContainerInput, Host, ImageConfig, Mount, NamespacePaths};
pub use spec::{build, clamp_rlimits, shares_to_weight, GeneratedSpec, UNPRIVILEGED_NET_DEFAULTS};
pub use user::UserFiles;
