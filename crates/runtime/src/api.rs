//! The runtime's interface, shaped like CRI v1's `RuntimeService` and
//! `ImageService` (k8s.io/cri-api `runtime/v1/api.proto`), with plain Rust
//! types and typed errors. The standalone pod manager and the CRI server are
//! its two clients: nothing here needs a Pod, only the configs kubelet sends
//! ([`PodSandboxConfig`] …). [`crate::node::NodeRuntime`] and
//! [`crate::images::NodeImages`] implement it on this machine; the pod
//! manager's tests put a double behind it.
//!
//! Calls block (they talk to a monitor, spawn processes, pull): call them
//! from a thread that may block.
//!
//! CreateContainer takes the container's CRI `ContainerConfig` (kubelet's
//! rules applied by the caller: environment expanded, mounts as host paths);
//! the runtime makes its root filesystem from the image and its OCI bundle
//! with `podrun-oci` (containerd's rules).

use crate::{ContainerConfig, ImageSpec, PodSandboxConfig, PodSandboxMetadata};
use std::collections::BTreeMap;
use std::time::Duration;

/// A sandbox's state (`PodSandboxState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    /// Its monitor runs and holds its namespaces (`SANDBOX_READY`).
    Ready,
    /// Stopped, never fully made, or its monitor died (`SANDBOX_NOTREADY`).
    NotReady,
}

/// One sandbox as ListPodSandbox reports it (`PodSandbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandbox {
    /// Its ID.
    pub id: String,
    /// Who it is for.
    pub metadata: PodSandboxMetadata,
    /// Ready or not.
    pub state: SandboxState,
    /// When it was created (RFC 3339, nanoseconds).
    pub created_at: String,
    /// Its config's labels.
    pub labels: BTreeMap<String, String>,
    /// Its config's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The runtime handler it runs with.
    pub runtime_handler: String,
}

/// One sandbox in detail (`PodSandboxStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandboxStatus {
    /// What [`RuntimeService::list_pod_sandbox`] says of it.
    pub sandbox: PodSandbox,
    /// The config it was made from.
    pub config: PodSandboxConfig,
    /// Its monitor's pid while it runs.
    pub monitor_pid: Option<i32>,
    /// Where its namespaces are pinned (join them by these paths): `net`,
    /// `ipc`, `uts`, `pid` as it has them.
    pub namespaces: BTreeMap<String, std::path::PathBuf>,
    /// The pod's addresses (CRI `PodSandboxNetworkStatus`: `ip`, then
    /// `additional_ips`), the primary first; empty for a pod on the node's
    /// network (hostNetwork) or one the network has not attached.
    pub ips: Vec<std::net::IpAddr>,
}

/// Which sandboxes ListPodSandbox returns (`PodSandboxFilter`); empty: all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSandboxFilter {
    /// Only this ID.
    pub id: Option<String>,
    /// Only sandboxes in this state.
    pub state: Option<SandboxState>,
    /// Only sandboxes with all these labels.
    pub labels: BTreeMap<String, String>,
}

impl PodSandboxFilter {
    /// Whether `sandbox` passes.
    pub fn matches(&self, sandbox: &PodSandbox) -> bool {
        self.id.as_ref().is_none_or(|id| *id == sandbox.id)
            && self.state.is_none_or(|s| s == sandbox.state)
            && self
                .labels
                .iter()
                .all(|(k, v)| sandbox.labels.get(k) == Some(v))
    }
}

/// A container's state (`ContainerState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended (or never could start).
    Exited,
    /// Started, but its monitor died before recording an end.
    Unknown,
}

/// One container in detail (`ContainerStatus`, with `Container`'s fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// Its ID.
    pub id: String,
    /// Its sandbox.
    pub sandbox_id: String,
    /// Its name in the pod.
    pub name: String,
    /// Its state.
    pub state: ContainerState,
    /// When it was created (RFC 3339, nanoseconds).
    pub created_at: String,
    /// When it started; empty if it never did.
    pub started_at: String,
    /// When it ended; empty while it runs.
    pub finished_at: String,
    /// Its exit code as CRI reports it (the process's, or 128 + the signal).
    pub exit_code: i32,
    /// kubelet's reason (`Completed`, `Error`, `OOMKilled`, `StartError`).
    pub reason: String,
    /// Why it could not start, for `StartError`.
    pub message: String,
    /// The pid of its init while it runs.
    pub pid: Option<i32>,
    /// Containers of this name the sandbox started before this one.
    pub restarts: u32,
    /// Its CRI log file.
    pub log_path: std::path::PathBuf,
    /// Lines it wrote that its log could not take (a full disk), while its
    /// monitor runs (not CRI's).
    pub log_lines_dropped: u64,
    /// The config it was created from (its image, labels, annotations,
    /// mounts as CRI's `ContainerStatus` reports them).
    pub config: ContainerConfig,
    /// The ID of the image it was created from (`sha256:…`).
    pub image_ref: String,
    /// Who its process runs as (CRI's `ContainerUser`), when known.
    pub user: Option<ProcessUser>,
}

/// The identity a container's process runs with: the user and groups its
/// OCI spec gives it (image groups merged or not, by its policy).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessUser {
    /// Its uid.
    pub uid: i64,
    /// Its gid.
    pub gid: i64,
    /// Its supplementary groups.
    pub supplemental_groups: Vec<i64>,
}

/// Which containers ListContainers returns (`ContainerFilter`); empty: all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFilter {
    /// Only this ID.
    pub id: Option<String>,
    /// Only containers of this sandbox.
    pub sandbox_id: Option<String>,
    /// Only containers in this state.
    pub state: Option<ContainerState>,
}

impl ContainerFilter {
    /// Whether `c` passes.
    pub fn matches(&self, c: &ContainerStatus) -> bool {
        self.id.as_ref().is_none_or(|id| *id == c.id)
            && self.sandbox_id.as_ref().is_none_or(|s| *s == c.sandbox_id)
            && self.state.is_none_or(|s| s == c.state)
    }
}

/// What a container uses (`ContainerStats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// Its ID.
    pub id: String,
    /// When it was read (nanoseconds since the epoch).
    pub timestamp_ns: i64,
    /// CPU and memory of its cgroup (none without a cgroup parent).
    pub usage: crate::stats::Usage,
    /// Its writable layer: where it is, its bytes and inodes.
    pub writable_layer: Option<(std::path::PathBuf, u64, u64)>,
}

/// What a sandbox uses (`PodSandboxStats`): its cgroup, its containers'
/// included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxStats {
    /// Its ID.
    pub id: String,
    /// When it was read (nanoseconds since the epoch).
    pub timestamp_ns: i64,
    /// CPU and memory of the pod cgroup.
    pub usage: crate::stats::Usage,
}

/// How StartContainer went, when the runtime answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// It runs.
    Running {
        /// When it started (RFC 3339, nanoseconds).
        started_at: String,
    },
    /// The OCI runtime could not start it; it is Exited with reason `StartError`.
    Failed {
        /// The OCI runtime's reason.
        message: String,
    },
}

/// What ExecSync returns (`ExecSyncResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSyncResult {
    /// What the command wrote on stdout.
    pub stdout: Vec<u8>,
    /// What it wrote on stderr.
    pub stderr: Vec<u8>,
    /// Its exit code (128 + the signal when one killed it).
    pub exit_code: i32,
}

/// A container's standard streams, attached (CRI Attach): what it writes on
/// stdout and stderr from now on (end-of-file when it exits), and its stdin
/// when it was made with `stdin` (closing it ends the container's stdin when
/// it was made with `stdin_once`).
#[derive(Debug)]
pub struct Attached {
    /// Its stdin's write end (on a terminal: the master, opened
    /// non-blocking: a writer waits for room).
    pub stdin: Option<std::fs::File>,
    /// Its stdout, from now on (on a terminal: everything it writes).
    pub stdout: std::fs::File,
    /// Its stderr, from now on; none on a terminal.
    pub stderr: Option<std::fs::File>,
    /// Its terminal's master, when it runs on one (`tty`): resize it here.
    pub terminal: Option<std::fs::File>,
}

/// Why a RuntimeService call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No sandbox of that ID.
    #[error("sandbox {0}: not found")]
    SandboxNotFound(String),
    /// No container of that ID.
    #[error("container {0}: not found")]
    ContainerNotFound(String),
    /// The runtime handler names no runtime this node has.
    #[error("runtime handler {handler:?}: not configured (known: {known})")]
    UnknownHandler {
        /// What was asked for.
        handler: String,
        /// What there is.
        known: String,
    },
    /// A sandbox (or container) of that ID exists already.
    #[error("{what}: {call}: it exists")]
    Exists {
        /// The call, as CRI names it.
        call: &'static str,
        /// The sandbox or container.
        what: String,
    },
    /// An ID or config that cannot be one (a path, an empty name).
    #[error("{what}: {call}: {cause}")]
    Invalid {
        /// The call, as CRI names it.
        call: &'static str,
        /// The sandbox or container.
        what: String,
        /// What is wrong with it.
        cause: String,
    },
    /// The call needs a running sandbox (or container) and it is not.
    #[error("{what}: {call}: not running")]
    NotRunning {
        /// The call, as CRI names it.
        call: &'static str,
        /// The sandbox or container.
        what: String,
    },
    /// A step of the call failed.
    #[error("{what}: {call}: {cause}")]
    Failed {
        /// The call, as CRI names it.
        call: &'static str,
        /// The sandbox or container.
        what: String,
        /// What went wrong.
        cause: String,
    },
    /// ExecSync's command did not end in time (it was killed).
    #[error("container {id}: exec: {cmd:?} did not end within {timeout:?}")]
    ExecTimeout {
        /// The container.
        id: String,
        /// The command.
        cmd: Vec<String>,
        /// The time allowed.
        timeout: Duration,
    },
    /// A call that goes on past failures (RemovePodSandbox) met these.
    #[error("sandbox {id}: {call}: {}", crate::join_errors(.errors))]
    Several {
        /// The call, as CRI names it.
        call: &'static str,
        /// The sandbox.
        id: String,
        /// Every failure, in order.
        errors: Vec<String>,
    },
}

/// CRI's RuntimeService: sandboxes and their containers.
pub trait RuntimeService: Send + Sync {
    /// Make and start a sandbox for `config` with `runtime_handler`'s OCI
    /// runtime (empty: the default); its ID once it is ready. On failure
    /// nothing of it is left. The ID is the pod's UID (`<uid>-<attempt>`
    /// after the first attempt) when that can be one
    /// ([`crate::state::sandbox_id_for`]): a sandbox of the same UID and
    /// attempt is refused while it exists.
    fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String, ServiceError>;
    /// Stop every container of the sandbox and end its monitor. `grace`
    /// (zero: kill now) caps its containers' own grace periods; stopping a
    /// stopped sandbox is not an error.
    fn stop_pod_sandbox(&self, id: &str, grace: Option<Duration>) -> Result<(), ServiceError>;
    /// Remove a sandbox: kill what still runs, delete its containers and
    /// their root filesystems, its cgroup and its directory. Goes on past
    /// failures and returns them all; an unknown ID is not an error.
    fn remove_pod_sandbox(&self, id: &str) -> Result<(), ServiceError>;
    /// One sandbox in detail.
    fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus, ServiceError>;
    /// The sandboxes `filter` lets through, oldest first.
    fn list_pod_sandbox(&self, filter: &PodSandboxFilter) -> Result<Vec<PodSandbox>, ServiceError>;
    /// Create a container of sandbox `sandbox_id` from `config`: a fresh root
    /// filesystem over its image (which must be present), its OCI bundle (the
    /// sandbox's namespaces, its cgroup under the sandbox's), its record; its
    /// ID (`<sandbox>-<name>`, with `-<attempt>` after the first attempt). A
    /// container of that ID that exited may be created again (its restart: what
    /// it wrote is not kept). The sandbox's own config is the one it was made
    /// from. The grace period of the sandbox's stop is the config's annotation
    /// `io.kubernetes.pod.terminationGracePeriod` (seconds), as kubelet sets it;
    /// 30 s without.
    fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String, ServiceError>;
    /// Start a created container.
    fn start_container(&self, id: &str) -> Result<Started, ServiceError>;
    /// Send its stop signal; SIGKILL after `grace` (its own when `None`; zero: now).
    fn stop_container(&self, id: &str, grace: Option<Duration>) -> Result<(), ServiceError>;
    /// Delete an exited container (an unknown ID is not an error).
    fn remove_container(&self, id: &str) -> Result<(), ServiceError>;
    /// One container in detail.
    fn container_status(&self, id: &str) -> Result<ContainerStatus, ServiceError>;
    /// The containers `filter` lets through, by sandbox, in creation order.
    fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> Result<Vec<ContainerStatus>, ServiceError>;
    /// CRI's Exec, for a caller on this machine: the command that runs
    /// `cmd` in a running container with the caller's stdin, stdout and
    /// stderr (a terminal of its own with `tty`), for the caller to run and
    /// wait for. (The CRI server serves it through its streaming server.)
    fn exec(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<std::process::Command, ServiceError>;
    /// CRI's Attach, for a caller on this machine: the running container's
    /// standard streams.
    fn attach(&self, id: &str) -> Result<Attached, ServiceError>;
    /// Run `cmd` in a running container and wait for it, at most `timeout`.
    fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResult, ServiceError>;
    /// Write new CPU and memory limits into a running container's cgroup
    /// (and its record, so its status shows them).
    fn update_container_resources(
        &self,
        id: &str,
        resources: &crate::LinuxContainerResources,
    ) -> Result<(), ServiceError>;
    /// Reopen a running container's log file at its path (kubelet renamed
    /// it to rotate it).
    fn reopen_container_log(&self, id: &str) -> Result<(), ServiceError>;
    /// What a container uses now.
    fn container_stats(&self, id: &str) -> Result<ContainerStats, ServiceError>;
    /// What a sandbox uses now.
    fn pod_sandbox_stats(&self, id: &str) -> Result<SandboxStats, ServiceError>;
    /// The cgroup driver of the runtime's pods: the form their cgroup parent
    /// must have (CRI's RuntimeConfig reports it, so kubelet can check its own).
    fn cgroup_driver(&self) -> crate::cgroups::CgroupDriver {
        crate::cgroups::CgroupDriver::Cgroupfs
    }
    /// Whether the network a new sandbox would join can serve it (CRI's
    /// NetworkReady), and why not: the CNI config and its plugins, or the
    /// default network's tools.
    fn network_ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Credentials for a pull (`AuthConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// One image as ImageStatus and ListImages report it (`Image`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    /// The image ID (its config's digest, `sha256:…`).
    pub id: String,
    /// Its names (`repo:tag`).
    pub repo_tags: Vec<String>,
    /// Its names pinned by digest (`repo@sha256:…`).
    pub repo_digests: Vec<String>,
    /// Its size in bytes as containerd reports it: its layers' blobs, compressed.
    pub size: u64,
    /// The uid its config's `User` names, when numeric (`1000`, `1000:1000`):
    /// what kubelet checks runAsNonRoot against.
    pub uid: Option<i64>,
    /// Its config's `User` when it names a user (`nobody`, `app:app`), without
    /// the group; empty otherwise.
    pub username: String,
}

/// CRI's ImageService.
pub trait ImageService: Send + Sync {
    /// Pull an image (with `auth` when given); its reference (the image ID).
    fn pull_image(
        &self,
        image: &ImageSpec,
        auth: Option<&AuthConfig>,
    ) -> Result<String, crate::images::ImageServiceError>;
    /// The image, or `None` when it is not here.
    fn image_status(
        &self,
        image: &ImageSpec,
    ) -> Result<Option<Image>, crate::images::ImageServiceError>;
    /// Remove an image (every name of an ID); one not here is not an error.
    fn remove_image(&self, image: &ImageSpec) -> Result<(), crate::images::ImageServiceError>;
    /// kubelet's image garbage collection, one pass at `now`: unused images
    /// past `policy`'s maximum age, then unused images, least recently used
    /// first and each past the minimum age, until `bytes_to_free` bytes are
    /// freed (`podrun_image::Images::collect_images`). Not a CRI call: under
    /// the CRI, kubelet does this itself with ListImages and RemoveImage.
    fn collect_images(
        &self,
        policy: &podrun_image::gc::Policy,
        bytes_to_free: u64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<podrun_image::gc::Outcome<podrun_image::ImageError>, crate::images::ImageServiceError>;
    /// Every image (only `filter`'s, when given).
    fn list_images(
        &self,
        filter: Option<&ImageSpec>,
    ) -> Result<Vec<Image>, crate::images::ImageServiceError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(id: &str, state: SandboxState, labels: &[(&str, &str)]) -> PodSandbox {
        PodSandbox {
            id: id.into(),
            metadata: PodSandboxMetadata::default(),
            state,
            created_at: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
            runtime_handler: String::new(),
        }
    }

    #[test]
    fn a_sandbox_filter_wants_every_field_it_sets() {
        let s = sandbox("a", SandboxState::Ready, &[("app", "web"), ("tier", "1")]);
        assert!(PodSandboxFilter::default().matches(&s));
        let by = |id: Option<&str>, state, labels: &[(&str, &str)]| PodSandboxFilter {
            id: id.map(String::from),
            state,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert!(by(Some("a"), Some(SandboxState::Ready), &[("app", "web")]).matches(&s));
        assert!(!by(Some("b"), None, &[]).matches(&s));
        assert!(!by(None, Some(SandboxState::NotReady), &[]).matches(&s));
        assert!(!by(None, None, &[("app", "db")]).matches(&s));
        assert!(!by(None, None, &[("app", "web"), ("zone", "x")]).matches(&s));
    }
}
