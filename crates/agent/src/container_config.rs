//! A pod's container as the CRI config the runtime takes, as kubelet's kuberuntime
//! makes it (pkg/kubelet/kuberuntime/kuberuntime_container.go generateContainerConfig,
//! kuberuntime_container_linux.go generateLinuxContainerConfig, security_context.go):
//! `$(VAR)` expanded in the environment, command and args ([`expand`]); the pod's
//! security context merged under the container's (pkg/securitycontext/util.go
//! DetermineEffectiveSecurityContext) with runAsNonRoot checked against the image's
//! user; the seccomp profile picked; requests and limits turned into cgroup settings
//! ([`resources`]); the pod's sysctls checked against the node's allow-list
//! ([`sysctl`]). The runtime (`podrun_oci::build`) does containerd's part.

pub mod expand;
pub mod resources;
pub mod sysctl;

pub use expand::EnvVar;

use k8s_openapi::api::core::v1::{Container, Pod};
use podrun_oci::cri::{
    Capability, ContainerConfig, ContainerMetadata, ImageSpec, KeyValue, LinuxContainerResources,
    LinuxContainerSecurityContext, Mount, NamespaceMode, NamespaceOption, ProfileType,
    SecurityProfile, SupplementalGroupsPolicy,
};

/// Why kubelet would not make the container (CreateContainerConfigError or
/// CreateContainerError). The messages keep kubelet's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A `valueFrom` environment variable reached the config unresolved.
    #[error("environment variable {0} refers to another object (valueFrom, envFrom) that the caller did not resolve")]
    UnresolvedEnv(String),
    /// runAsNonRoot with an explicit runAsUser of 0.
    #[error("container's runAsUser breaks non-root policy")]
    RunAsUserBreaksNonRoot,
    /// runAsNonRoot with an image that runs as uid 0 (or names no user at all).
    #[error("container has runAsNonRoot and image will run as root")]
    ImageRunsAsRoot,
    /// runAsNonRoot with an image user given by name: kubelet cannot tell its uid.
    #[error(
        "container has runAsNonRoot and image has non-numeric user ({0}), cannot verify user is non-root"
    )]
    NonNumericImageUser(String),
    /// runAsNonRoot with an image uid outside 1..=2147483647.
    #[error("container has runAsNonRoot and image has an invalid user id ({0}). (Must be 1-(2147483647))")]
    InvalidImageUid(i64),
    /// A sysctl outside the safe set (and the node's allowed unsafe ones).
    #[error("sysctl {name:?} not allowed: {reason}")]
    ForbiddenSysctl {
        /// The sysctl, dot-separated.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A resource quantity that does not parse.
    #[error("invalid quantity {value:?} for {resource}")]
    InvalidQuantity {
        /// The resource name (`cpu`, `memory`).
        resource: String,
        /// The quantity as written.
        value: String,
    },
    /// A seccompProfile type kubelet does not know.
    #[error("seccomp profile: unknown type {0:?}")]
    SeccompType(String),
}

/// What the node adds to kubelet's decisions (kubelet's flags).
#[derive(Debug, Clone, Default)]
pub struct NodeSettings {
    /// `--seccomp-default`: RuntimeDefault for containers that set no profile.
    pub seccomp_default: bool,
    /// `--allowed-unsafe-sysctls` (a trailing `*` matches a prefix).
    pub allowed_unsafe_sysctls: Vec<String>,
}

/// The CRI config of container `c` of `pod`: its environment (`env`, references
/// resolved, to be expanded here), its mounts (host paths the pod manager prepared),
/// checked against its image as ImageStatus reports it (`image`: its user, for
/// runAsNonRoot).
pub fn container_config(
    pod: &Pod,
    c: &Container,
    env: &[EnvVar],
    mounts: Vec<Mount>,
    image: &podrun_runtime::Image,
    node: &NodeSettings,
) -> Result<ContainerConfig, ConfigError> {
    let env = expand::container_env(env);
    let (command, args) = expand::expand_command(c, &env);
    let security = security_context(pod, c, image, node)?;
    // kubelet's sysctl admission: a pod asking for a sysctl the node does not allow
    // gets no container.
    sysctl::pod_sysctls(pod, &node.allowed_unsafe_sysctls)?;
    let r = resources::container_resources(c)?;
    let image_name = c.image.clone().unwrap_or_default();
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("io.kubernetes.container.name".into(), c.name.clone());
    let meta = &pod.metadata;
    labels.insert(
        "io.kubernetes.pod.name".into(),
        meta.name.clone().unwrap_or_default(),
    );
    labels.insert(
        "io.kubernetes.pod.namespace".into(),
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
    );
    labels.insert(
        "io.kubernetes.pod.uid".into(),
        meta.uid.clone().unwrap_or_default(),
    );
    // The grace period the runtime gives the container when the sandbox
    // stops (kubelet's annotation, pkg/kubelet/kuberuntime/labels.go).
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(
        podrun_runtime::node::GRACE_ANNOTATION.into(),
        podrun_kubelet::grace::pod_grace_period(pod)
            .as_secs()
            .to_string(),
    );
    Ok(ContainerConfig {
        metadata: ContainerMetadata {
            name: c.name.clone(),
            attempt: 0,
        },
        image: ImageSpec {
            image: image_name.clone(),
            user_specified_image: image_name,
            ..Default::default()
        },
        command,
        args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env
            .into_iter()
            .map(|(key, value)| KeyValue { key, value })
            .collect(),
        mounts,
        labels,
        annotations,
        log_path: crate::logs::instance_log_path(&c.name, 0),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: podrun_oci::cri::LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                cpu_shares: i64::try_from(r.cpu_shares).unwrap_or(i64::MAX),
                cpu_quota: r.cpu_quota,
                cpu_period: i64::try_from(r.cpu_period).unwrap_or(i64::MAX),
                memory_limit_in_bytes: r.memory_limit,
                ..Default::default()
            }),
            security_context: security,
        },
        stop_signal: c
            .lifecycle
            .as_ref()
            .and_then(|l| l.stop_signal.clone())
            .filter(|s| !s.is_empty()),
        ..Default::default()
    })
}

/// Whose namespaces the pod's containers join (kubelet's namespacesForPod).
pub fn namespace_options(pod: &Pod) -> NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    let node_or = |node: bool, otherwise| {
        if node {
            NamespaceMode::Node
        } else {
            otherwise
        }
    };
    NamespaceOption {
        network: node_or(flag(|s| s.host_network), NamespaceMode::Pod),
        ipc: node_or(flag(|s| s.host_ipc), NamespaceMode::Pod),
        pid: if flag(|s| s.host_pid) {
            NamespaceMode::Node
        } else if flag(|s| s.share_process_namespace) {
            NamespaceMode::Pod
        } else {
            NamespaceMode::Container
        },
        target_id: String::new(),
    }
}

/// The container's security context with the pod's merged under it, as kubelet
/// sends it; runAsNonRoot checked against the image's user first.
fn security_context(
    pod: &Pod,
    c: &Container,
    image: &podrun_runtime::Image,
    node: &NodeSettings,
) -> Result<LinuxContainerSecurityContext, ConfigError> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = c.security_context.as_ref();
    let run_as_user = csc
        .and_then(|c| c.run_as_user)
        .or(psc.and_then(|p| p.run_as_user));
    let run_as_group = csc
        .and_then(|c| c.run_as_group)
        .or(psc.and_then(|p| p.run_as_group));
    let run_as_non_root = csc
        .and_then(|c| c.run_as_non_root)
        .or(psc.and_then(|p| p.run_as_non_root));
    // kubelet's getImageUser: the uid when the image gives one, else its user name.
    let image_user = image
        .uid
        .map_or_else(|| image.username.clone(), |u| u.to_string());
    let image_user = image_user.as_str();
    if run_as_non_root == Some(true) {
        verify_run_as_non_root(run_as_user, image_user)?;
    }
    // kubelet's getImageUser: a named image user goes by name when no uid is given.
    let run_as_username = match (run_as_user, image_user.parse::<i64>()) {
        (None, Err(_)) if !image_user.is_empty() => image_user.to_string(),
        _ => String::new(),
    };
    let caps = csc.and_then(|c| c.capabilities.as_ref());
    let proc_mount = csc.and_then(|c| c.proc_mount.as_deref());
    let (masked_paths, readonly_paths) = if proc_mount == Some("Unmasked") {
        (Vec::new(), Vec::new())
    } else {
        let owned = |paths: &[&str]| paths.iter().map(|p| p.to_string()).collect();
        (
            owned(&podrun_oci::security::MASKED_PATHS),
            owned(&podrun_oci::security::READONLY_PATHS),
        )
    };
    let profile = csc
        .and_then(|c| c.seccomp_profile.as_ref())
        .or_else(|| psc.and_then(|p| p.seccomp_profile.as_ref()));
    let seccomp = match profile {
        Some(p) => SecurityProfile {
            profile_type: match p.type_.as_str() {
                "RuntimeDefault" => ProfileType::RuntimeDefault,
                "Unconfined" => ProfileType::Unconfined,
                "Localhost" => ProfileType::Localhost,
                other => return Err(ConfigError::SeccompType(other.into())),
            },
            localhost_ref: p.localhost_profile.clone().unwrap_or_default(),
        },
        None if node.seccomp_default => SecurityProfile {
            profile_type: ProfileType::RuntimeDefault,
            ..Default::default()
        },
        None => SecurityProfile::default(),
    };
    // The pod's supplementalGroups, then its fsGroup (DetermineEffectiveSecurityContext).
    let mut supplemental_groups: Vec<i64> = psc
        .and_then(|p| p.supplemental_groups.clone())
        .unwrap_or_default();
    supplemental_groups.extend(psc.and_then(|p| p.fs_group));
    let strict = psc.and_then(|p| p.supplemental_groups_policy.as_deref()) == Some("Strict");
    Ok(LinuxContainerSecurityContext {
        capabilities: caps.map(|c| Capability {
            add_capabilities: c.add.clone().unwrap_or_default(),
            drop_capabilities: c.drop.clone().unwrap_or_default(),
            ..Default::default()
        }),
        privileged: csc.and_then(|c| c.privileged).unwrap_or(false),
        namespace_options: namespace_options(pod),
        run_as_user,
        run_as_group,
        run_as_username,
        readonly_rootfs: csc
            .and_then(|c| c.read_only_root_filesystem)
            .unwrap_or(false),
        supplemental_groups,
        supplemental_groups_policy: if strict {
            SupplementalGroupsPolicy::Strict
        } else {
            SupplementalGroupsPolicy::Merge
        },
        // Only when allowPrivilegeEscalation is false (pkg/securitycontext/util.go
        // AddNoNewPrivileges).
        no_new_privs: csc.and_then(|c| c.allow_privilege_escalation) == Some(false),
        masked_paths,
        readonly_paths,
        seccomp: Some(seccomp),
        ..Default::default()
    })
}

/// The highest uid kubelet accepts of an image (pkg/kubelet/kuberuntime
/// security_context_others.go).
const MAX_UID: i64 = i32::MAX as i64;

/// kubelet's verifyRunAsNonRoot: the uid the container will run as must not be 0,
/// and must be known (an image user given by name cannot be checked).
fn verify_run_as_non_root(run_as_user: Option<i64>, image_user: &str) -> Result<(), ConfigError> {
    if let Some(uid) = run_as_user {
        return if uid == 0 {
            Err(ConfigError::RunAsUserBreaksNonRoot)
        } else {
            Ok(())
        };
    }
    if image_user.is_empty() {
        return Err(ConfigError::ImageRunsAsRoot);
    }
    match image_user.parse::<i64>() {
        Err(_) => Err(ConfigError::NonNumericImageUser(image_user.into())),
        Ok(0) => Err(ConfigError::ImageRunsAsRoot),
        Ok(uid) if !(1..=MAX_UID).contains(&uid) => Err(ConfigError::InvalidImageUid(uid)),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests;
