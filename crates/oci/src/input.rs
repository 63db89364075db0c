//! What spec generation needs to know: the sandbox's and the container's CRI configs
//! (what kubelet sends: the pod's rules are applied already), the image config, and what
//! the runtime prepared (root filesystem, namespaces to join) or read from the host.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capabilities, PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

use crate::cri::{ContainerConfig, PodSandboxConfig};
use crate::user::UserFiles;

/// The parts of an image's config that decide how its containers run (the OCI image
/// config's `Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`, `StopSignal`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint`: the program and its first arguments.
    pub entrypoint: Vec<String>,
    /// `Cmd`: default arguments (or the program, without an entrypoint).
    pub cmd: Vec<String>,
    /// `Env`, as `NAME=value` strings.
    pub env: Vec<String>,
    /// `WorkingDir`; empty means unset.
    pub working_dir: String,
    /// `User`: `uid`, `uid:gid`, `name` or `name:group`; empty means unset (root).
    pub user: String,
    /// `StopSignal` (`SIGQUIT`, `QUIT`, `3`); empty means unset (SIGTERM).
    pub stop_signal: String,
}

impl ImageConfig {
    /// The fields of an OCI image config's `config` object (what `podrun-image`'s
    /// `run_config` returns); missing ones are unset.
    pub fn from_config_json(config: &serde_json::Value) -> Self {
        let strings = |key: &str| -> Vec<String> {
            config[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let text = |key: &str| config[key].as_str().unwrap_or("").to_string();
        ImageConfig {
            entrypoint: strings("Entrypoint"),
            cmd: strings("Cmd"),
            env: strings("Env"),
            working_dir: text("WorkingDir"),
            user: text("User"),
            stop_signal: text("StopSignal"),
        }
    }
}

/// A mount of the container: a default one (/proc, /dev …) or one of the config's (a
/// CRI mount: /etc/hosts, /etc/resolv.conf, /etc/hostname, /dev/shm, the termination
/// log, volumes). A mount at the destination of a default mount replaces it; a mount at
/// /dev replaces every default mount under /dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The host path (or the source of a special filesystem).
    pub source: PathBuf,
    /// The absolute path inside the container.
    pub destination: String,
    /// The filesystem type; `bind` for bind mounts.
    pub typ: String,
    /// Mount options (`rbind`, `ro`, `rprivate`, `rslave` …).
    pub options: Vec<String>,
}

impl Mount {
    /// A recursive bind mount with private propagation, as containerd makes for CRI mounts.
    pub fn bind(
        source: impl Into<PathBuf>,
        destination: impl Into<String>,
        readonly: bool,
    ) -> Self {
        let rw = if readonly { "ro" } else { "rw" };
        Self {
            source: source.into(),
            destination: destination.into(),
            typ: "bind".into(),
            options: vec!["rbind".into(), "rprivate".into(), rw.into()],
        }
    }
}

/// Where the sandbox's namespaces are pinned. `None` means a new namespace (or, for
/// the network, UTS, IPC and PID namespaces the config's `namespace_options` put on the
/// node, the host's: those win over a given path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespacePaths {
    /// The pod's network namespace (`/proc/<pause>/ns/net` or a pinned file).
    pub net: Option<PathBuf>,
    /// The pod's IPC namespace.
    pub ipc: Option<PathBuf>,
    /// The pod's UTS namespace; when given, the container's hostname is the pod's.
    pub uts: Option<PathBuf>,
    /// The pod's PID namespace; required when the pod sets shareProcessNamespace and
    /// ignored otherwise (each container then gets its own).
    pub pid: Option<PathBuf>,
}

/// Facts about this machine and runtime process that the caller reads once (spec
/// generation itself does no I/O), plus node-level settings kubelet takes as flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Hard limits of this process's rlimits (`getrlimit`): no container may exceed
    /// them, since the runtime has no CAP_SYS_RESOURCE to raise them. Types not listed
    /// are not clamped.
    pub hard_rlimits: Vec<(PosixRlimitType, u64)>,
    /// Capabilities this process holds (its bounding set); a privileged container or
    /// `capabilities.add: [ALL]` gets these. `None` means every capability Linux knows.
    pub capabilities: Option<Capabilities>,
    /// Whether /sys/fs/cgroup is cgroup v2 only (then containers get a cgroup namespace).
    pub cgroup_unified: bool,
    /// Whether the memory controller can limit swap (`memory.memsw.*` on v1,
    /// `memory.swap.max` on v2): then memory+swap is limited to the memory limit.
    pub swap_controller: bool,
    /// This process's oom_score_adj: a container's is never set lower (this machine
    /// cannot lower it; containerd's `restrict_oom_score_adj`).
    pub oom_score_adj: i32,
    /// kubelet's `--seccomp-default` (read by the pod manager, which puts the profile
    /// in the config): RuntimeDefault for containers that set no profile
    /// (false: such containers run Unconfined, kubelet's default).
    pub seccomp_default: bool,
    /// kubelet's `--allowed-unsafe-sysctls` (a trailing `*` matches a prefix; read by
    /// the pod manager, which checks the pod's sysctls against it).
    pub allowed_unsafe_sysctls: Vec<String>,
    /// containerd's `enable_unprivileged_ports` and `enable_unprivileged_icmp` (on by
    /// default in containerd 2): pods with their own network namespace get
    /// `net.ipv4.ip_unprivileged_port_start=0` and `net.ipv4.ping_group_range=0 2147483647`.
    pub unprivileged_net: bool,
    /// The rlimits every container starts with, before clamping (containerd's and
    /// Docker's default: RLIMIT_NOFILE 1048576).
    pub default_rlimits: Vec<PosixRlimit>,
}

impl Default for Host {
    fn default() -> Self {
        Self {
            hard_rlimits: Vec::new(),
            capabilities: None,
            cgroup_unified: false,
            swap_controller: false,
            oom_score_adj: 0,
            seccomp_default: false,
            allowed_unsafe_sysctls: Vec::new(),
            unprivileged_net: true,
            default_rlimits: vec![nofile(1_048_576)],
        }
    }
}

fn nofile(n: u64) -> PosixRlimit {
    PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(n)
        .hard(n)
        .build()
        .expect("an rlimit with every field set builds")
}

/// Everything spec generation needs for one container of a sandbox.
#[derive(Debug, Clone)]
pub struct ContainerInput<'a> {
    /// The sandbox's config (hostname, sysctls, who the pod is for the annotations).
    pub sandbox: &'a PodSandboxConfig,
    /// The sandbox's ID; when given, the CRI annotations are added.
    pub sandbox_id: Option<&'a str>,
    /// The container's config: command and args, environment (expanded), mounts,
    /// namespaces, security context, resources, stop signal.
    pub config: &'a ContainerConfig,
    /// The image's config.
    pub image: &'a ImageConfig,
    /// The container's root filesystem (the overlay mount point); becomes `root.path`.
    pub rootfs: &'a Path,
    /// The image's /etc/passwd and /etc/group (see [`UserFiles::read`]).
    pub users: &'a UserFiles,
    /// Namespaces to join.
    pub namespaces: NamespacePaths,
    /// `linux.cgroupsPath` (`/podrun/<pod>/<container>` or `slice:prefix:name`).
    pub cgroups_path: Option<PathBuf>,
    /// The text of the Localhost seccomp profile, when the container uses one.
    pub seccomp_localhost_profile: Option<&'a str>,
    /// Honour the group of the image's `User` (`1000:1000`): Docker does, Kubernetes
    /// does not (kubelet passes only the uid to the runtime, kubernetes#61967), so
    /// false is kubelet's behaviour.
    pub honor_image_group: bool,
    /// Node facts and settings.
    pub host: &'a Host,
}
