//! Assembles the OCI runtime spec of one container from its CRI config, as containerd's
//! CRI plugin does (internal/cri/server/container_create_linux.go buildLinuxSpec), with
//! the rules of the other modules.

use std::collections::HashMap;

use oci_spec::runtime::{
    Capabilities, LinuxCapabilities, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxPids, LinuxResources, PosixRlimit, PosixRlimitBuilder,
    PosixRlimitType, Process, Root, Spec, User,
};
use serde::de::DeserializeOwned;

use crate::cri::{self, NamespaceMode};
use crate::error::{Error, ErrorKind};
use crate::input::{ContainerInput, Host, Mount};
use crate::security::{capabilities, masked_and_readonly_paths};
use crate::user::resolve_user;
use crate::{mounts, process, seccomp, signal};

/// A generated spec and what the caller should know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedSpec {
    /// The runtime spec, ready to be written as a bundle's config.json.
    pub spec: Spec,
    /// Things that were adjusted to fit this host (rlimits lowered to the hard limits).
    pub warnings: Vec<String>,
    /// The signal that stops the container gracefully.
    pub stop_signal: i32,
}

// The OCI types' `Default` impls fill in a sample container (a shell, hostname
// "youki", default namespaces), and their builders start from those: start instead from
// values whose optional fields are all unset.
fn blank<T: DeserializeOwned>(json: &str) -> T {
    serde_json::from_str(json).expect("a blank OCI value parses")
}

/// Clamps rlimits to the hard limits this process can grant (without CAP_SYS_RESOURCE
/// no process may raise its hard limit), with one warning per lowered rlimit.
pub fn clamp_rlimits(
    wanted: &[PosixRlimit],
    hard: &[(PosixRlimitType, u64)],
) -> (Vec<PosixRlimit>, Vec<String>) {
    let mut warnings = Vec::new();
    let out = wanted
        .iter()
        .map(|r| {
            let mut r = *r;
            if let Some(&(_, max)) = hard.iter().find(|(t, _)| *t == r.typ()) {
                if r.hard() > max || r.soft() > max {
                    warnings.push(format!(
                        "rlimit {} lowered from {}:{} to {}:{}: the runtime's hard limit is {max}",
                        r.typ(),
                        r.soft(),
                        r.hard(),
                        r.soft().min(max),
                        r.hard().min(max),
                    ));
                    r = PosixRlimitBuilder::default()
                        .typ(r.typ())
                        .soft(r.soft().min(max))
                        .hard(r.hard().min(max))
                        .build()
                        .expect("an rlimit with every field set builds");
                }
            }
            r
        })
        .collect();
    (out, warnings)
}

fn namespaces(
    input: &ContainerInput,
    privileged: bool,
) -> Result<(Vec<LinuxNamespace>, bool), ErrorKind> {
    let modes = &input.config.linux.security_context.namespace_options;
    // A container joins its sandbox's network, IPC and PID namespaces; a
    // sandbox on the node's has none of its own, so the container is on the
    // node's too, whatever its own config says (containerd joins the
    // sandbox process's namespaces: the node's for a hostNetwork pod; crictl
    // sends container configs without namespace options).
    let pod = &input.sandbox.linux.security_context.namespace_options;
    let host_net = modes.network == NamespaceMode::Node || pod.network == NamespaceMode::Node;
    let host_ipc = modes.ipc == NamespaceMode::Node || pod.ipc == NamespaceMode::Node;
    let host_pid = modes.pid == NamespaceMode::Node
        || (pod.pid == NamespaceMode::Node && modes.pid != NamespaceMode::Container);
    let share_pid = modes.pid == NamespaceMode::Pod;
    let ns = |typ: LinuxNamespaceType, path: Option<&std::path::PathBuf>| {
        let mut n = LinuxNamespace::default();
        n.set_typ(typ);
        n.set_path(path.cloned());
        n
    };
    let paths = &input.namespaces;
    let mut out = Vec::new();
    // containerd's order (pkg/oci/spec.go defaultUnixNamespaces): pid, ipc, uts, mount, net.
    if !host_pid {
        if share_pid {
            let path = paths.pid.as_ref().ok_or(ErrorKind::MissingPidNamespace)?;
            out.push(ns(LinuxNamespaceType::Pid, Some(path)));
        } else {
            out.push(ns(LinuxNamespaceType::Pid, None));
        }
    }
    if !host_ipc {
        out.push(ns(LinuxNamespaceType::Ipc, paths.ipc.as_ref()));
    }
    // hostNetwork pods share the node's UTS namespace too (containerd's sandbox).
    let own_uts = !host_net && paths.uts.is_none();
    if !host_net {
        out.push(ns(LinuxNamespaceType::Uts, paths.uts.as_ref()));
    }
    out.push(ns(LinuxNamespaceType::Mount, None));
    if !host_net {
        out.push(ns(LinuxNamespaceType::Network, paths.net.as_ref()));
    }
    // A cgroup namespace hides the host's hierarchy; containerd adds one on cgroup v2
    // only, and not for privileged containers.
    if input.host.cgroup_unified && !privileged {
        out.push(ns(LinuxNamespaceType::Cgroup, None));
    }
    Ok((out, own_uts))
}

/// The container's cgroup settings from the config's (kubelet computed them from the
/// requests and limits; zero: unset).
fn resources(input: &ContainerInput, privileged: bool) -> Result<LinuxResources, ErrorKind> {
    let host: &Host = input.host;
    let r = input.config.linux.resources.clone().unwrap_or_default();
    let mut res: LinuxResources = blank("{}");
    let mut device = LinuxDeviceCgroup::default();
    device.set_allow(privileged);
    device.set_access(Some("rwm".into()));
    res.set_devices(Some(vec![device]));

    let mut cpu: LinuxCpu = blank("{}");
    if r.cpu_shares > 0 {
        cpu.set_shares(Some(r.cpu_shares as u64));
    }
    if r.cpu_period > 0 {
        cpu.set_period(Some(r.cpu_period as u64));
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
    }
    res.set_cpu(Some(cpu));

    if r.memory_limit_in_bytes > 0 {
        let mut memory: LinuxMemory = blank("{}");
        memory.set_limit(Some(r.memory_limit_in_bytes));
        // No swap beyond the memory limit (kubelet's NoSwap; containerd WithResources).
        if host.swap_controller {
            memory.set_swap(Some(r.memory_limit_in_bytes));
        }
        res.set_memory(Some(memory));
    }
    // CRI has no container PID limit: `unified["pids.max"]`, as on the sandbox.
    if let Some(limit) = r
        .unified
        .get("pids.max")
        .and_then(|v| v.parse::<i64>().ok())
    {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        res.set_pids(Some(pids));
    }
    if host.cgroup_unified {
        let mut unified = HashMap::new();
        // kubelet on cgroup v2: kill the whole container on OOM (singleProcessOOMKill
        // defaults to false there), and no swap (NoSwap → memory.swap.max=0).
        unified.insert("memory.oom.group".to_string(), "1".to_string());
        // The runtime converts shares to cpu.weight itself, and the backends disagree:
        // libcontainer 0.7 uses the log-quadratic rule of runc >= 1.3.2 (256 shares →
        // 35), Debian 12's crun 1.8.1 the linear one (→ 10). Pin the weight, by the
        // linear rule the pod cgroups use too ([`shares_to_weight`]), so that a
        // container's weight does not depend on the backend.
        if r.cpu_shares > 0 {
            let weight = shares_to_weight(u64::try_from(r.cpu_shares).unwrap_or(0));
            unified.insert("cpu.weight".to_string(), weight.to_string());
        }
        if host.swap_controller {
            unified.insert("memory.swap.max".to_string(), "0".to_string());
        }
        res.set_unified(Some(unified));
    }
    Ok(res)
}

fn annotations(input: &ContainerInput, sandbox_id: &str) -> HashMap<String, String> {
    let meta = &input.sandbox.metadata;
    let mut a = HashMap::new();
    let mut put = |k: &str, v: &str| {
        a.insert(format!("io.kubernetes.cri.{k}"), v.to_string());
    };
    // containerd internal/cri/annotations DefaultCRIAnnotations, for a container.
    put("container-type", "container");
    put("sandbox-id", sandbox_id);
    put("sandbox-name", &meta.name);
    put(
        "sandbox-namespace",
        if meta.namespace.is_empty() {
            "default"
        } else {
            &meta.namespace
        },
    );
    put("sandbox-uid", &meta.uid);
    put("container-name", &input.config.metadata.name);
    put("image-name", image_ref(input.config));
    a
}

/// The image as the user named it (kubelet's `user_specified_image`), else as resolved.
fn image_ref(config: &cri::ContainerConfig) -> &str {
    if config.image.user_specified_image.is_empty() {
        &config.image.image
    } else {
        &config.image.user_specified_image
    }
}

/// The config's mounts as containerd makes them (internal/cri/opts/spec_opts.go
/// WithMounts): recursive binds, read-only or not, with their propagation.
fn config_mounts(config: &cri::ContainerConfig) -> Vec<Mount> {
    config
        .mounts
        .iter()
        .map(|m| {
            let propagation = match m.propagation {
                cri::MountPropagation::Private => "rprivate",
                cri::MountPropagation::HostToContainer => "rslave",
                cri::MountPropagation::Bidirectional => "rshared",
            };
            let rw = if m.readonly { "ro" } else { "rw" };
            let mut options: Vec<String> = vec!["rbind".into(), propagation.into(), rw.into()];
            // containerd's WithMounts: RecursiveReadOnly adds runtime-spec 1.1's
            // `rro` (the runtime's mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY));
            // kubelet sends it only read-only and private.
            if m.recursive_read_only && m.readonly {
                options.push("rro".into());
            }
            if m.image.is_some() {
                // An image volume (the runtime mounted the image at
                // host_path): read-only and nothing in it runs, as
                // Kubernetes documents image volumes.
                options = vec!["rbind".into(), propagation.into(), "ro".into()];
                options.extend(["nosuid", "nodev", "noexec"].map(String::from));
            }
            Mount {
                source: m.host_path.clone().into(),
                destination: m.container_path.clone(),
                typ: "bind".into(),
                options,
            }
        })
        .collect()
}

/// The sysctls of the container's namespaces: containerd's defaults for a pod with
/// its own network (`enable_unprivileged_ports`, `enable_unprivileged_icmp`), then the
/// sandbox's (kubelet checked them against its allow-list). containerd sets them on
/// the sandbox's container; podrun's pause is not an OCI container, so every
/// container of the pod carries them (the namespaces are the same).
fn sysctls(input: &ContainerInput) -> HashMap<String, String> {
    let on_node = |modes: &cri::NamespaceOption| modes.network == NamespaceMode::Node;
    let host_net = on_node(&input.config.linux.security_context.namespace_options)
        || on_node(&input.sandbox.linux.security_context.namespace_options);
    let mut out = HashMap::new();
    if !host_net && input.host.unprivileged_net {
        out.extend(
            UNPRIVILEGED_NET_DEFAULTS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
    }
    out.extend(
        input
            .sandbox
            .linux
            .sysctls
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    out
}

/// v1 `cpu.shares` [2, 262144] as v2 `cpu.weight` [1, 10000], by the linear map
/// `1 + ((shares - 2) * 9999) / 262142` that runc and crun used until 2025 (crun
/// before 1.23, which includes the crun 1.8 of the test machines). 0 stays 0
/// ("unset").
///
/// Newer runtimes and kubelet's own cgroup manager (opencontainers/cgroups, since
/// kubernetes/kubernetes#131216) use a quadratic fit that maps the default 1024 to
/// 100 instead of 39 (`podrun_runtime::cgroups::shares_to_weight_quadratic`). The pod's weight only matters
/// relative to its siblings, so what counts is that all pods on a node use one rule.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// The sysctls containerd 2 sets in every pod that has its own network namespace
/// (internal/cri/server/podsandbox/sandbox_run_linux.go, `enable_unprivileged_ports`
/// and `enable_unprivileged_icmp`): binding low ports and ping need no capability.
pub const UNPRIVILEGED_NET_DEFAULTS: [(&str, &str); 2] = [
    ("net.ipv4.ip_unprivileged_port_start", "0"),
    ("net.ipv4.ping_group_range", "0 2147483647"),
];

fn caps_value(caps: &Capabilities) -> LinuxCapabilities {
    let mut c: LinuxCapabilities = blank("{}");
    c.set_bounding(Some(caps.clone()));
    c.set_effective(Some(caps.clone()));
    c.set_permitted(Some(caps.clone()));
    c
}

/// Builds the runtime spec of one container.
pub fn build(input: &ContainerInput) -> Result<GeneratedSpec, Error> {
    build_inner(input).map_err(|kind| Error {
        container: input.config.metadata.name.clone(),
        kind,
    })
}

fn build_inner(input: &ContainerInput) -> Result<GeneratedSpec, ErrorKind> {
    let config = input.config;
    let sec = &config.linux.security_context;
    let hostname = input.sandbox.hostname.as_str();

    // Process.
    let env: Vec<(String, String)> = config
        .envs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let args = process::process_args(&config.command, &config.args, input.image)?;
    let tty = config.tty;
    let user = resolve_user(
        sec,
        input.image,
        image_ref(config),
        input.users,
        input.honor_image_group,
    )?;
    let caps = capabilities(sec, input.host.capabilities.as_ref())?;
    let (rlimits, warnings) = clamp_rlimits(&input.host.default_rlimits, &input.host.hard_rlimits);

    let mut proc_user = User::default();
    proc_user.set_uid(user.uid);
    proc_user.set_gid(user.gid);
    proc_user.set_additional_gids(Some(user.additional_gids.clone()));
    let mut proc: Process = blank(r#"{"user":{"uid":0,"gid":0},"cwd":"/"}"#);
    proc.set_terminal(Some(tty));
    proc.set_user(proc_user);
    proc.set_args(Some(args));
    proc.set_env(Some(process::process_env(input.image, &env, tty, hostname)));
    proc.set_cwd(process::working_dir(&config.working_dir, input.image).into());
    proc.set_capabilities(Some(caps_value(&caps)));
    proc.set_rlimits(Some(rlimits));
    // Left out when false (its default), not written as false: libcontainer 0.7
    // takes any value as "set" and then loads the seccomp filter after dropping
    // capabilities, which fails with EACCES without no_new_privs
    // (libcontainer src/process/init/process.rs). runc and crun read it as a bool.
    proc.set_no_new_privileges(sec.no_new_privs.then_some(true));
    // kubelet's QoS score (zero: none given), never below the runtime's own.
    let oom_score_adj = config
        .linux
        .resources
        .as_ref()
        .map_or(0, |r| r.oom_score_adj);
    proc.set_oom_score_adj(
        (oom_score_adj != 0)
            .then(|| i32::try_from(oom_score_adj).unwrap_or(i32::MAX))
            .map(|adj| adj.max(input.host.oom_score_adj)),
    );

    // Filesystem.
    let mut root: Root = blank(r#"{"path":""}"#);
    root.set_path(input.rootfs.to_path_buf());
    root.set_readonly(Some(sec.readonly_rootfs));
    let merged = mounts::merge(
        mounts::default_mounts(sec.privileged),
        &config_mounts(config),
    )?;
    let oci_mounts = merged
        .mounts
        .iter()
        .map(mounts::to_oci)
        .collect::<Result<Vec<_>, _>>()?;

    // Linux.
    let (ns, own_uts) = namespaces(input, sec.privileged)?;
    let (masked, readonly) = masked_and_readonly_paths(sec);
    let seccomp = seccomp::profile_for(
        sec.privileged,
        sec.seccomp.as_ref(),
        &caps,
        input.seccomp_localhost_profile,
    )?;
    let sysctls = sysctls(input);
    let mut linux: oci_spec::runtime::Linux = blank("{}");
    linux.set_namespaces(Some(ns));
    linux.set_resources(Some(resources(input, sec.privileged)?));
    linux.set_cgroups_path(input.cgroups_path.clone());
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly));
    linux.set_seccomp(seccomp);
    linux.set_sysctl((!sysctls.is_empty()).then_some(sysctls));
    linux.set_rootfs_propagation(merged.rootfs_propagation);

    let mut spec: Spec = blank("{}");
    spec.set_version(oci_spec::runtime::VERSION.to_string());
    spec.set_root(Some(root));
    spec.set_mounts(Some(oci_mounts));
    spec.set_process(Some(proc));
    spec.set_hostname(own_uts.then(|| hostname.to_string()));
    spec.set_annotations(input.sandbox_id.map(|id| annotations(input, id)));
    spec.set_linux(Some(linux));

    Ok(GeneratedSpec {
        spec,
        warnings,
        stop_signal: signal::stop_signal(config.stop_signal.as_deref(), input.image)?,
    })
}

#[cfg(test)]
mod mount_tests {
    use super::*;

    #[test]
    fn recursive_read_only_adds_rro_as_containerd_does() {
        let mut config = cri::ContainerConfig::default();
        for (readonly, rro) in [(true, true), (true, false), (false, false), (false, true)] {
            config.mounts = vec![cri::Mount {
                container_path: "/c".into(),
                host_path: "/h".into(),
                readonly,
                recursive_read_only: rro,
                ..Default::default()
            }];
            let got = &config_mounts(&config)[0].options;
            let ro = if readonly { "ro" } else { "rw" };
            let mut want = vec!["rbind", "rprivate", ro];
            if readonly && rro {
                want.push("rro");
            }
            assert_eq!(got, &want, "{readonly} {rro}");
        }
    }
}
