//! The configs kubelet sends a runtime, as plain Rust types: CRI v1's
//! `PodSandboxConfig` (RunPodSandbox) and `ContainerConfig` (CreateContainer),
//! from `runtime.v1` api.proto of Kubernetes 1.36 (staging/src/k8s.io/cri-api/
//! pkg/apis/runtime/v1/api.proto). Field names are the proto's; a proto
//! wrapper (`Int64Value`) is an `Option`, and fields podrun does not act on
//! yet are left out rather than silently ignored (the CRI server refuses what
//! it cannot carry).
//!
//! They live here, at the bottom of the runtime's stack, because the OCI spec is
//! built from them; `podrun-runtime` re-exports them as its interface's types.
//! Everything a Pod says has been turned into them by the pod manager (kubelet's
//! `generatePodSandboxConfig`, `generateContainerConfig`): the runtime never sees
//! a Pod.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who a sandbox is (`PodSandboxMetadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSandboxMetadata {
    /// The pod's name.
    pub name: String,
    /// The pod's UID.
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// How many sandboxes of this pod were made before this one.
    pub attempt: u32,
}

/// The pod's DNS (`DNSConfig`): what its resolv.conf says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// `nameserver` lines.
    pub servers: Vec<String>,
    /// The `search` line.
    pub searches: Vec<String>,
    /// The `options` line.
    pub options: Vec<String>,
}

/// A port's protocol (`Protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// A port of the sandbox published on the node (`PortMapping`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The protocol.
    pub protocol: Protocol,
    /// The port in the pod.
    pub container_port: i32,
    /// The port on the node (0: not published).
    pub host_port: i32,
    /// The node's address to publish on (empty: all).
    pub host_ip: String,
}

/// Whose namespace a container or sandbox uses (`NamespaceMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceMode {
    /// The pod's (the sandbox's), shared by its containers.
    #[default]
    Pod,
    /// The container's own.
    Container,
    /// The node's (hostNetwork, hostPID, hostIPC).
    Node,
    /// Another container's (`target_id`): ephemeral containers' PID namespace.
    Target,
}

/// Which namespaces are whose (`NamespaceOption`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceOption {
    /// The network namespace: `Pod` or `Node`.
    pub network: NamespaceMode,
    /// The PID namespace: `Container` (kubelet's default), `Pod`
    /// (shareProcessNamespace), `Node` or `Target`.
    pub pid: NamespaceMode,
    /// The IPC namespace: `Pod` or `Node`.
    pub ipc: NamespaceMode,
    /// The container whose namespace `Target` means.
    pub target_id: String,
}

/// A seccomp or AppArmor profile (`SecurityProfile`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityProfile {
    /// Which kind of profile.
    pub profile_type: ProfileType,
    /// For `Localhost`: the profile's path on the node.
    pub localhost_ref: String,
}

/// `SecurityProfile.ProfileType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProfileType {
    /// The runtime's default profile.
    RuntimeDefault,
    /// No profile.
    #[default]
    Unconfined,
    /// A profile from a file on the node.
    Localhost,
}

/// SELinux labels (`SELinuxOption`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeLinuxOption {
    /// The user part.
    pub user: String,
    /// The role part.
    pub role: String,
    /// The type part.
    #[serde(rename = "type")]
    pub type_: String,
    /// The level part.
    pub level: String,
}

/// The sandbox's security (`LinuxSandboxSecurityContext`), as kubelet derives it
/// from the pod's securityContext.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxSandboxSecurityContext {
    /// Whose namespaces the sandbox has.
    pub namespace_options: NamespaceOption,
    /// SELinux labels.
    pub selinux_options: Option<SeLinuxOption>,
    /// The pause process's user.
    pub run_as_user: Option<i64>,
    /// The pause process's group.
    pub run_as_group: Option<i64>,
    /// A read-only root filesystem for the sandbox.
    pub readonly_rootfs: bool,
    /// Extra groups (the pod's supplementalGroups and fsGroup).
    pub supplemental_groups: Vec<i64>,
    /// Whether any container of the pod is privileged.
    pub privileged: bool,
    /// The pod's seccomp profile.
    pub seccomp: Option<SecurityProfile>,
    /// The pod's AppArmor profile.
    pub apparmor: Option<SecurityProfile>,
}

/// A hugepage size's limit (`HugepageLimit`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugepageLimit {
    /// The page size (`2MB`, `1GB`).
    pub page_size: String,
    /// The limit in bytes.
    pub limit: u64,
}

/// cgroup limits of a container or a pod (`LinuxContainerResources`); zero means unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxContainerResources {
    /// CFS period in microseconds.
    pub cpu_period: i64,
    /// CFS quota in microseconds per period.
    pub cpu_quota: i64,
    /// CPU shares (relative weight).
    pub cpu_shares: i64,
    /// Memory limit in bytes.
    pub memory_limit_in_bytes: i64,
    /// The OOM killer's score adjustment (kubelet's QoS policy).
    pub oom_score_adj: i64,
    /// CPUs the container may use (`0-3,5`).
    pub cpuset_cpus: String,
    /// Memory nodes the container may use.
    pub cpuset_mems: String,
    /// Hugepage limits.
    pub hugepage_limits: Vec<HugepageLimit>,
    /// cgroup v2 files to write (`memory.high` …).
    pub unified: BTreeMap<String, String>,
    /// Memory+swap limit in bytes.
    pub memory_swap_limit_in_bytes: i64,
}

/// The sandbox's Linux settings (`LinuxPodSandboxConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxPodSandboxConfig {
    /// The pod's cgroup (a cgroupfs path, or a systemd slice), made by kubelet.
    pub cgroup_parent: String,
    /// The sandbox's security.
    pub security_context: LinuxSandboxSecurityContext,
    /// The pod's sysctls (`net.*`, `kernel.shm*` …).
    pub sysctls: BTreeMap<String, String>,
    /// The pod's overhead (RuntimeClass).
    pub overhead: Option<LinuxContainerResources>,
    /// The pod's limits (the sum of its containers', or pod-level resources).
    pub resources: Option<LinuxContainerResources>,
}

/// What RunPodSandbox is given (`PodSandboxConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSandboxConfig {
    /// Who the sandbox is.
    pub metadata: PodSandboxMetadata,
    /// The pod's hostname.
    pub hostname: String,
    /// Where the containers' logs go (`/var/log/pods/<ns>_<name>_<uid>`).
    pub log_directory: String,
    /// The pod's DNS; `None`: the node's resolv.conf.
    pub dns_config: Option<DnsConfig>,
    /// Ports published on the node.
    pub port_mappings: Vec<PortMapping>,
    /// kubelet's labels of the sandbox (`io.kubernetes.pod.*` and the pod's).
    pub labels: BTreeMap<String, String>,
    /// The pod's annotations.
    pub annotations: BTreeMap<String, String>,
    /// Linux settings.
    pub linux: LinuxPodSandboxConfig,
}

/// Who a container is (`ContainerMetadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMetadata {
    /// The container's name in its pod.
    pub name: String,
    /// How many times this container was created in this sandbox before (restarts).
    pub attempt: u32,
}

/// An image (`ImageSpec`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// The image reference or ID.
    pub image: String,
    /// The image's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The reference as the user wrote it (for messages).
    pub user_specified_image: String,
    /// The runtime handler the image is for.
    pub runtime_handler: String,
}

/// How a mount's submounts propagate (`MountPropagation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountPropagation {
    /// No propagation (`rprivate`).
    #[default]
    Private,
    /// From the host into the container (`rslave`).
    HostToContainer,
    /// Both ways (`rshared`).
    Bidirectional,
}

/// A host path bind-mounted into the container (`Mount`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The path in the container.
    pub container_path: String,
    /// The path on the host.
    pub host_path: String,
    /// Read-only.
    pub readonly: bool,
    /// Relabel for SELinux.
    pub selinux_relabel: bool,
    /// Propagation.
    pub propagation: MountPropagation,
    /// Read-only all the way down (`recursiveReadOnly: Enabled`).
    pub recursive_read_only: bool,
    /// An image to mount instead of `host_path` (a Kubernetes `image`
    /// volume): the runtime mounts the pulled image read-only.
    #[serde(default)]
    pub image: Option<ImageSpec>,
    /// The directory of `image` to mount, relative to its root (a
    /// volumeMount's subPath of an image volume); empty for all of it.
    #[serde(default)]
    pub image_sub_path: String,
}

/// A host device in the container (`Device`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The path in the container.
    pub container_path: String,
    /// The device on the host.
    pub host_path: String,
    /// cgroup permissions: `r`, `w`, `m`, combined.
    pub permissions: String,
}

/// Capabilities to add and drop (`Capability`): names like `NET_ADMIN` (or `ALL`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    /// Added to the runtime's default set.
    pub add_capabilities: Vec<String>,
    /// Dropped from it.
    pub drop_capabilities: Vec<String>,
    /// Added to the ambient set too.
    pub add_ambient_capabilities: Vec<String>,
}

/// The container's security (`LinuxContainerSecurityContext`): kubelet has
/// merged the pod's securityContext into the container's
/// (`determineEffectiveSecurityContext`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxContainerSecurityContext {
    /// Capabilities.
    pub capabilities: Option<Capability>,
    /// Privileged.
    pub privileged: bool,
    /// Whose namespaces the container joins.
    pub namespace_options: NamespaceOption,
    /// SELinux labels.
    pub selinux_options: Option<SeLinuxOption>,
    /// The process's uid (`None`: the image's user).
    pub run_as_user: Option<i64>,
    /// The process's gid.
    pub run_as_group: Option<i64>,
    /// The process's user by name (the image's user when it is a name).
    pub run_as_username: String,
    /// A read-only root filesystem.
    pub readonly_rootfs: bool,
    /// Extra groups (kubelet puts the pod's fsGroup and supplementalGroups here).
    pub supplemental_groups: Vec<i64>,
    /// Whether the groups the image's /etc/group gives the user are added
    /// (`supplemental_groups_policy`, the pod's supplementalGroupsPolicy).
    pub supplemental_groups_policy: SupplementalGroupsPolicy,
    /// `no_new_privs` (allowPrivilegeEscalation: false).
    pub no_new_privs: bool,
    /// Paths masked in the container: kubelet sends its default list
    /// (`securitycontext.ConvertToRuntimeMaskedPaths`), none for procMount: Unmasked.
    pub masked_paths: Vec<String>,
    /// Paths read-only in the container (as `masked_paths`).
    pub readonly_paths: Vec<String>,
    /// The seccomp profile.
    pub seccomp: Option<SecurityProfile>,
    /// The AppArmor profile.
    pub apparmor: Option<SecurityProfile>,
}

/// `SupplementalGroupsPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupplementalGroupsPolicy {
    /// The user's groups in the image's /etc/group are added (`Merge`).
    #[default]
    Merge,
    /// Only the groups the config names (`Strict`).
    Strict,
}

/// The container's Linux settings (`LinuxContainerConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxContainerConfig {
    /// Its cgroup limits.
    pub resources: Option<LinuxContainerResources>,
    /// Its security.
    pub security_context: LinuxContainerSecurityContext,
}

/// An environment variable (`KeyValue`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The name.
    pub key: String,
    /// The value.
    pub value: String,
}

/// What CreateContainer is given (`ContainerConfig`). `command` and `args` are
/// the pod's, `$(VAR)` already expanded by kubelet; the runtime falls back on the
/// image's entrypoint and cmd as containerd does. `envs` are final (resolved,
/// expanded); the image's environment comes first and is overridden by them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Who the container is.
    pub metadata: ContainerMetadata,
    /// Its image.
    pub image: ImageSpec,
    /// The entrypoint (empty: the image's).
    pub command: Vec<String>,
    /// Its arguments (empty: the image's cmd, when `command` is empty too).
    pub args: Vec<String>,
    /// The working directory (empty: the image's, else `/`).
    pub working_dir: String,
    /// Environment variables, in order.
    pub envs: Vec<KeyValue>,
    /// Host paths to bind-mount.
    pub mounts: Vec<Mount>,
    /// Host devices.
    pub devices: Vec<Device>,
    /// kubelet's labels (`io.kubernetes.container.name` …).
    pub labels: BTreeMap<String, String>,
    /// kubelet's annotations (hash, restart count, termination message path …).
    pub annotations: BTreeMap<String, String>,
    /// The log file, relative to the sandbox's `log_directory`.
    pub log_path: String,
    /// Keep stdin open.
    pub stdin: bool,
    /// Close stdin after the first attach ends.
    pub stdin_once: bool,
    /// Allocate a TTY.
    pub tty: bool,
    /// Linux settings.
    pub linux: LinuxContainerConfig,
    /// The container's stop signal (`lifecycle.stopSignal`), by name (`SIGUSR1`);
    /// `None`: the image's, else SIGTERM.
    pub stop_signal: Option<String>,
    /// Not CRI's: the runtime rotates the container's log itself, by this
    /// policy (podrun's own pod manager asks for it). `None` under the CRI,
    /// where kubelet rotates the log and asks for ReopenContainerLog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_rotation: Option<LogRotation>,
}

/// How a container's log is rotated, as kubelet's container log manager
/// does it (`containerLogMaxSize`, `containerLogMaxFiles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRotation {
    /// The live file is rotated once it reaches this size, in bytes.
    pub max_size: u64,
    /// Files kept, the live one included (at least 2).
    pub max_files: u32,
}

impl Default for LogRotation {
    /// kubelet's defaults: 10Mi, 5 files.
    fn default() -> Self {
        LogRotation {
            max_size: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}
