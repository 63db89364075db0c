//! Assembles the OCI runtime spec of one container from the rules of the other modules.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use oci_spec::runtime::{
    Capabilities, LinuxCapabilities, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxPids, LinuxResources, PosixRlimit, PosixRlimitBuilder,
    PosixRlimitType, Process, Root, Spec, User,
};
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind};
use crate::input::{ContainerInput, Host};
use crate::resources::container_resources;
use crate::security::{capabilities, masked_and_readonly_paths, EffectiveSecurity};
use crate::user::resolve_user;
use crate::{mounts, process, seccomp, signal, sysctl};

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

/// The pod's hostname as kubelet computes it (pkg/kubelet/kubelet_pods.go
/// GeneratePodHostNameAndDomain): the node's with hostNetwork, else spec.hostname, else
/// the pod name cut to 63 characters without a trailing `-` or `.`.
pub fn pod_hostname(pod: &Pod, node_hostname: &str) -> String {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return node_hostname.to_string();
    }
    if let Some(h) = spec
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
    {
        return h.to_string();
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    if name.len() <= 63 {
        return name.to_string();
    }
    name[..63].trim_end_matches(['-', '.']).to_string()
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
    let spec = input.pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    let host_net = flag(|s| s.host_network);
    let host_ipc = flag(|s| s.host_ipc);
    let host_pid = flag(|s| s.host_pid);
    let share_pid = flag(|s| s.share_process_namespace);
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

fn resources(input: &ContainerInput, privileged: bool) -> Result<LinuxResources, ErrorKind> {
    let host: &Host = input.host;
    let r = container_resources(input.container)?;
    let mut res: LinuxResources = blank("{}");
    let mut device = LinuxDeviceCgroup::default();
    device.set_allow(privileged);
    device.set_access(Some("rwm".into()));
    res.set_devices(Some(vec![device]));

    let mut cpu: LinuxCpu = blank("{}");
    cpu.set_shares(Some(r.cpu_shares));
    cpu.set_period(Some(r.cpu_period));
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
    }
    res.set_cpu(Some(cpu));

    if r.memory_limit != 0 {
        let mut memory: LinuxMemory = blank("{}");
        memory.set_limit(Some(r.memory_limit));
        // No swap beyond the memory limit (kubelet's NoSwap; containerd WithResources).
        if host.swap_controller {
            memory.set_swap(Some(r.memory_limit));
        }
        res.set_memory(Some(memory));
    }
    if let Some(limit) = input.pids_limit {
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
        // linear rule the pod cgroups use too (podrun_runtime::cgroups), so that a
        // container's weight does not depend on the backend.
        if r.cpu_shares > 0 {
            let weight = crate::resources::shares_to_weight(r.cpu_shares);
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
    let meta = &input.pod.metadata;
    let mut a = HashMap::new();
    let mut put = |k: &str, v: &str| {
        a.insert(format!("io.kubernetes.cri.{k}"), v.to_string());
    };
    // containerd internal/cri/annotations DefaultCRIAnnotations, for a container.
    put("container-type", "container");
    put("sandbox-id", sandbox_id);
    put("sandbox-name", meta.name.as_deref().unwrap_or_default());
    put(
        "sandbox-namespace",
        meta.namespace.as_deref().unwrap_or("default"),
    );
    put("sandbox-uid", meta.uid.as_deref().unwrap_or_default());
    put("container-name", &input.container.name);
    put("image-name", input.image_ref);
    a
}

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
        container: input.container.name.clone(),
        kind,
    })
}

fn build_inner(input: &ContainerInput) -> Result<GeneratedSpec, ErrorKind> {
    let container = input.container;
    let sec = EffectiveSecurity::of(input.pod, container);

    // Process.
    let env = process::container_env(&input.env);
    let args = process::process_args(container, input.image, &env)?;
    let tty = container.tty.unwrap_or(false);
    let user = resolve_user(
        input.pod,
        &sec,
        input.image,
        input.image_ref,
        input.users,
        input.honor_image_group,
    )?;
    let caps = capabilities(&sec, input.host.capabilities.as_ref())?;
    let (rlimits, warnings) = clamp_rlimits(&input.host.default_rlimits, &input.host.hard_rlimits);

    let mut proc_user = User::default();
    proc_user.set_uid(user.uid);
    proc_user.set_gid(user.gid);
    proc_user.set_additional_gids(Some(user.additional_gids.clone()));
    let mut proc: Process = blank(r#"{"user":{"uid":0,"gid":0},"cwd":"/"}"#);
    proc.set_terminal(Some(tty));
    proc.set_user(proc_user);
    proc.set_args(Some(args));
    proc.set_env(Some(process::process_env(
        input.image,
        &env,
        tty,
        input.hostname,
    )));
    proc.set_cwd(process::working_dir(container, input.image).into());
    proc.set_capabilities(Some(caps_value(&caps)));
    proc.set_rlimits(Some(rlimits));
    proc.set_no_new_privileges(Some(sec.no_new_privs()));
    proc.set_oom_score_adj(
        input
            .oom_score_adj
            .map(|adj| adj.max(input.host.oom_score_adj)),
    );

    // Filesystem.
    let mut root: Root = blank(r#"{"path":""}"#);
    root.set_path(input.rootfs.to_path_buf());
    root.set_readonly(Some(sec.read_only_root_filesystem));
    let merged = mounts::merge(mounts::default_mounts(sec.privileged), &input.mounts)?;
    let oci_mounts = merged
        .mounts
        .iter()
        .map(mounts::to_oci)
        .collect::<Result<Vec<_>, _>>()?;

    // Linux.
    let (ns, own_uts) = namespaces(input, sec.privileged)?;
    let (masked, readonly) = masked_and_readonly_paths(&sec);
    let seccomp = seccomp::profile_for(
        &sec,
        &caps,
        input.host.seccomp_default,
        input.seccomp_localhost_profile,
    )?;
    let sysctls = sysctl::pod_sysctls(
        input.pod,
        &input.host.allowed_unsafe_sysctls,
        input.host.unprivileged_net,
    )?;
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
    spec.set_hostname(own_uts.then(|| input.hostname.to_string()));
    spec.set_annotations(input.sandbox_id.map(|id| annotations(input, id)));
    spec.set_linux(Some(linux));

    Ok(GeneratedSpec {
        spec,
        warnings,
        stop_signal: signal::stop_signal(container, input.image)?,
    })
}

#[cfg(test)]
mod tests;
