//! Making a pod's sandbox and its containers, as kubelet's kuberuntime asks
//! the runtime for them: [`start_pod`] (RunPodSandbox: the pod's cgroup and
//! files, its plan and monitor), [`ensure_image`] (EnsureImageExists, by the
//! container's imagePullPolicy), [`prepare_container`] (CreateContainer: a fresh
//! root filesystem and OCI bundle before each start).

use crate::env::{NodeFacts, Sources};
use crate::pods::{self, PodState};
use crate::Settings;
use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Container, Pod};
use podrun_image::{Images, PullOptions};
use podrun_oci::{ContainerInput, Host, ImageConfig, Mount, NamespacePaths, UserFiles};
use podrun_runtime::monitor::{ContainerPlan, PodPlan};
use podrun_runtime::sandbox::Namespace;
use std::path::{Path, PathBuf};

/// A pod handed to its monitor. Dropping `guard` removes it again.
pub struct Started {
    /// Its records.
    pub state: PodState,
    /// The monitor (our child).
    pub monitor: tokio::process::Child,
    /// Removes the pod unless disarmed.
    pub guard: Guard,
}

/// Something worth an event: (type, reason, message).
pub type EventSink<'a> = &'a (dyn Fn(&str, &str, String) + Sync);

/// Make the pod's sandbox (kubelet's RunPodSandbox): its cgroup and files,
/// its plan, and its monitor, which creates the sandbox and then starts each
/// container when the pod manager asks (each one made just before by
/// [`prepare_container`], as kubelet makes them). On failure, everything
/// made for the pod (`state`'s directories included) is removed.
pub async fn start_pod(
    settings: &Settings,
    images: &Images,
    pod: &Pod,
    state: PodState,
) -> Result<Started> {
    let name = state.record.name.clone();
    let mut guard = Guard {
        images: images.clone(),
        state: Some(state.clone()),
    };
    let mut state = state;
    let plan =
        prepare_pod(settings, &state, pod).map_err(|e| anyhow::anyhow!("pod/{name}: {e:#}"))?;
    crate::crash_point("create:prepared");
    let plan_file = state.run_dir.join("plan.json");
    plan.write(&plan_file)
        .with_context(|| format!("write {}", plan_file.display()))?;
    state.plan = Some(plan);

    let mut command = tokio::process::Command::new(sibling("podrun-monitor")?);
    command
        .arg("--plan")
        .arg(&plan_file)
        .stdin(std::process::Stdio::null())
        // A session of its own: the terminal's Ctrl-C is ours to forward, and
        // the pod outlives the terminal (and the agent).
        .process_group(0);
    // The monitor's own messages go to a file: what the user needs of them
    // (start errors) is reported by the pod manager; the rest is for debugging.
    let monitor_log = state.run_dir.join("monitor.log");
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&monitor_log)?);
    let monitor = command.spawn().context("start the pod's monitor")?;
    crate::crash_point("create:monitor");
    state.record.monitor_pid = monitor.id().map_or(0, |p| p as i32);
    state.save()?;
    guard.state = Some(state.clone());
    Ok(Started {
        state,
        monitor,
        guard,
    })
}

/// Why a container's image is not there: kubelet's waiting reason
/// (`ErrImagePull`, `ErrImageNeverPull`) and what went wrong.
#[derive(Debug)]
pub struct PullFailure {
    /// The container's waiting reason.
    pub reason: &'static str,
    /// The cause, naming the image.
    pub message: String,
}

/// Make sure container `c`'s image is here, pulling it as its
/// imagePullPolicy says (kubelet's EnsureImageExists,
/// pkg/kubelet/images/image_manager.go), with kubelet's events. Blocking:
/// the pull runs on the pullers' own executor ([`crate::pulls`]),
/// which one pull of an image serves every caller waiting for it.
pub fn ensure_image(
    settings: &Settings,
    images: &Images,
    c: &Container,
    events: EventSink<'_>,
) -> Result<(), PullFailure> {
    let image = c.image.clone().unwrap_or_default();
    let present = images.get(&image).is_ok();
    let policy = c.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
    if policy == "Always" || (policy == "IfNotPresent" && !present) {
        let options = PullOptions {
            registries: crate::registries(settings).map_err(|e| PullFailure {
                reason: "ErrImagePull",
                message: format!("pull {image}: {e:#}"),
            })?,
            ..Default::default()
        };
        events("Normal", "Pulling", format!("Pulling image \"{image}\""));
        let started = std::time::Instant::now();
        if let Err(e) = crate::pulls::PULLER.pull_blocking(images, &image, options) {
            events(
                "Warning",
                "Failed",
                format!("Failed to pull image \"{image}\": {e}"),
            );
            return Err(PullFailure {
                reason: "ErrImagePull",
                message: e,
            });
        }
        events(
            "Normal",
            "Pulled",
            format!(
                "Successfully pulled image \"{image}\" in {:.3}s",
                started.elapsed().as_secs_f64()
            ),
        );
        Ok(())
    } else if present {
        events(
            "Normal",
            "Pulled",
            format!("Container image \"{image}\" already present on machine"),
        );
        Ok(())
    } else {
        let message =
            format!("Container image \"{image}\" is not present with pull policy of Never");
        events("Warning", "ErrImageNeverPull", message.clone());
        Err(PullFailure {
            reason: "ErrImageNeverPull",
            message: format!("image {image} is not present and imagePullPolicy is Never"),
        })
    }
}

/// The monitor's plan (no containers: each is started on request), with the
/// pod's cgroup and files made.
fn prepare_pod(settings: &Settings, state: &PodState, pod: &Pod) -> Result<PodPlan> {
    let spec = pod.spec.as_ref().context("pod has no spec")?;
    let name = &state.record.name;
    let pod_id = &state.record.pod_id;
    let plan = PodPlan {
        pod_id: pod_id.clone(),
        run_root: settings.run_root.clone(),
        run_dir: state.run_dir.clone(),
        pause: sibling("podrun-pause")?,
        runtime: runtime_for(settings, spec.runtime_class_name.as_deref())?,
        hostname: spec.hostname.clone().unwrap_or_else(|| hostname_of(name)),
        host_network: spec.host_network.unwrap_or(false),
        share_pid: spec.share_process_namespace.unwrap_or(false),
        cgroup_parent: Some(pods::pod_cgroup(pod, pod_id)),
        containers: Vec::new(),
    };
    create_pod_cgroup(pod, plan.cgroup_parent.as_deref().expect("set above"))?;
    pod_files(pod, &plan, &state.record.data_dir)?;
    Ok(plan)
}

/// Container `c`'s environment: its env and envFrom, from the pod's sources
/// and this node's facts (CreateContainerConfigError when one is missing).
pub fn container_env(
    pod: &Pod,
    c: &Container,
    sources: &Sources,
) -> Result<Vec<podrun_oci::EnvVar>> {
    crate::env::environment(pod, c, sources, &node_facts()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Container `c`'s root filesystem (a fresh writable layer over its image)
/// and OCI bundle, ready for its monitor to start: kubelet's createContainer,
/// which each start of a container goes through.
pub fn prepare_container(
    images: &Images,
    pod: &Pod,
    c: &Container,
    plan: &PodPlan,
    state: &PodState,
    host: &Host,
    env: Vec<podrun_oci::EnvVar>,
) -> Result<ContainerPlan> {
    let id = pods::container_id(&plan.pod_id, &c.name);
    // What an earlier instance (or a failed attempt) wrote is not kept.
    images.remove_rootfs(&id)?;
    let data_dir = &state.record.data_dir;
    let pod_mounts = pod_mounts(pod, data_dir);
    let (bundle, stop_signal) =
        prepare(images, pod, c, &id, plan, data_dir, host, env, &pod_mounts)?;
    let grace = podrun_kubelet::grace::pod_grace_period(pod);
    Ok(ContainerPlan {
        id,
        name: c.name.clone(),
        bundle,
        log_path: state.log_path(&c.name),
        stop_signal,
        grace_period_ms: podrun_kubelet::grace::millis(grace),
    })
}

/// The pod's cgroup with its QoS class's place and kubelet's pod-level limits.
fn create_pod_cgroup(pod: &Pod, path: &str) -> Result<()> {
    let l = podrun_spec::pod_cgroup_limits(pod);
    let limits = podrun_runtime::cgroups::CgroupLimits {
        cpu_shares: l.cpu_shares,
        cpu_quota: l.cpu_quota,
        cpu_period: l.cpu_period,
        memory_limit: l.memory_limit,
        pids_limit: l.pids_limit,
    };
    podrun_runtime::cgroups::create_pod_cgroup(path, &limits)
        .map_err(|e| anyhow::anyhow!("create pod cgroup {path}: {e}"))
}

/// The pod's files under `<data dir>/etc`, each bind-mounted at /etc/<name>.
const POD_ETC_FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

/// The files and mounts every container of the pod shares: /etc/hosts,
/// /etc/hostname and /etc/resolv.conf as kubelet writes them, and the pod's
/// /dev/shm (a 64 MiB tmpfs, or the host's with hostIPC): made once, when the
/// sandbox is; [`pod_mounts`] says where the containers see them.
fn pod_files(pod: &Pod, plan: &PodPlan, data_dir: &Path) -> Result<()> {
    use podrun_net as net;
    let spec = pod.spec.as_ref().context("pod has no spec")?;
    let etc = data_dir.join("etc");
    std::fs::create_dir_all(&etc).with_context(|| format!("create {}", etc.display()))?;
    let aliases: Vec<(String, Vec<String>)> = spec
        .host_aliases
        .iter()
        .flatten()
        .map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default()))
        .collect();
    let hosts = if plan.host_network {
        let node = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        net::host_network_hosts_file(&node, &aliases)
    } else {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        // `<hostname>.<subdomain>.<namespace>.svc.<cluster domain>` (kubelet's
        // GeneratePodHostNameAndDomain), with the default cluster domain.
        let fqdn = spec
            .subdomain
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| format!("{s}.{namespace}.svc.cluster.local"));
        net::hosts_file(&plan.hostname, fqdn.as_deref(), None, &aliases)
    };
    let dns = spec.dns_config.as_ref().map(|d| net::DnsConfig {
        nameservers: d.nameservers.clone().unwrap_or_default(),
        searches: d.searches.clone().unwrap_or_default(),
        options: d
            .options
            .iter()
            .flatten()
            .map(|o| net::DnsOption {
                name: o.name.clone().unwrap_or_default(),
                value: o.value.clone(),
            })
            .collect(),
    });
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = net::resolv_conf(
        spec.dns_policy.as_deref().unwrap_or("ClusterFirst"),
        &host_resolv,
        dns.as_ref(),
    )
    .map_err(|e| anyhow::anyhow!("resolv.conf: {e}"))?;
    let hostname = if plan.host_network {
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default()
    } else {
        net::hostname_file(&plan.hostname)
    };
    for (name, text) in POD_ETC_FILES.into_iter().zip([hosts, hostname, resolv]) {
        let file = etc.join(name);
        std::fs::write(&file, text).with_context(|| format!("write {}", file.display()))?;
    }
    if !spec.host_ipc.unwrap_or(false) {
        podrun_volume::PodVolumes::new(data_dir).set_up_shm()?;
    }
    Ok(())
}

/// The pod's files of [`pod_files`] as every container mounts them.
fn pod_mounts(pod: &Pod, data_dir: &Path) -> Vec<Mount> {
    let etc = data_dir.join("etc");
    let mut mounts: Vec<Mount> = POD_ETC_FILES
        .into_iter()
        .map(|name| Mount::bind(etc.join(name), format!("/etc/{name}"), false))
        .collect();
    let host_ipc = pod.spec.as_ref().and_then(|s| s.host_ipc).unwrap_or(false);
    let shm = if host_ipc {
        PathBuf::from("/dev/shm")
    } else {
        data_dir.join("shm")
    };
    mounts.push(Mount::bind(shm, "/dev/shm", false));
    mounts
}

/// The OCI runtime for a pod: its RuntimeClass handler's in podrun's config
/// (or a built-in handler: embedded, crun, runc, youki), else `--runtime`.
fn runtime_for(settings: &Settings, class: Option<&str>) -> Result<String> {
    crate::config::Config::load(&settings.config)?.runtime_for(class, settings.runtime.as_deref())
}

/// The pod's hostname from its name: at most 63 bytes, no trailing `-` or `.`
/// (kubelet's truncation in pkg/kubelet/kubelet_pods.go GeneratePodHostNameAndDomain).
fn hostname_of(name: &str) -> String {
    let mut h = name.to_string();
    if h.len() > 63 {
        h.truncate(63);
        while h.ends_with(['-', '.']) {
            h.pop();
        }
    }
    h
}

/// This node's facts for the downward API.
fn node_facts() -> NodeFacts {
    let node_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    NodeFacts {
        node_name,
        host_ip: host_ip().unwrap_or_default(),
        pod_ip: String::new(),
        cpu_millis: cpus * 1000,
        memory_bytes,
    }
}

/// The first IPv4 address of an interface that is up and not loopback.
pub(crate) fn host_ip() -> Option<String> {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `addrs` with a list we free below.
    if unsafe { libc::getifaddrs(&mut addrs) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = addrs;
    while !cur.is_null() {
        // SAFETY: `cur` walks the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        let up = ifa.ifa_flags & libc::IFF_UP as u32 != 0;
        let lo = ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0;
        if up && !lo && !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr is non-null and points to a sockaddr.
            let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                found =
                    Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).to_string());
                break;
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: frees the list getifaddrs returned, once.
    unsafe { libc::freeifaddrs(addrs) };
    found
}

/// A binary installed beside this one.
pub fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!("{} not found beside {}", name, exe.display());
    }
    Ok(path)
}

/// Root filesystem, mounts and bundle of one container; returns (bundle, stop signal).
#[allow(clippy::too_many_arguments)]
fn prepare(
    images: &Images,
    pod: &Pod,
    c: &Container,
    id: &str,
    plan: &PodPlan,
    pod_dir: &Path,
    host: &Host,
    env: Vec<podrun_oci::EnvVar>,
    pod_mounts: &[Mount],
) -> Result<(PathBuf, i32)> {
    let image = c.image.clone().unwrap_or_default();
    let cfg = &images.run_config(&image)?;
    let strings = |key: &str| -> Vec<String> {
        cfg[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let image_config = ImageConfig {
        entrypoint: strings("Entrypoint"),
        cmd: strings("Cmd"),
        env: strings("Env"),
        working_dir: cfg["WorkingDir"].as_str().unwrap_or("").into(),
        user: cfg["User"].as_str().unwrap_or("").into(),
        stop_signal: cfg["StopSignal"].as_str().unwrap_or("").into(),
    };
    let mut mounts = volume_mounts(pod, c, pod_dir)?;
    mounts.push(termination_log(c, pod_dir)?);
    // The pod's files, unless a volume is mounted there (as kubelet leaves
    // /etc/hosts alone when a volumeMount covers it).
    let read_only_root = c
        .security_context
        .as_ref()
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false);
    for m in pod_mounts {
        if mounts.iter().any(|v| v.destination == m.destination) {
            continue;
        }
        let mut m = m.clone();
        if read_only_root && m.destination.starts_with("/etc/") {
            m.options.retain(|o| o != "rw");
            m.options.push("ro".into());
        }
        mounts.push(m);
    }
    let rootfs = images.prepare_rootfs(&image, id)?;
    let users = UserFiles::read(&rootfs)?;
    let spec = pod.spec.as_ref().expect("validated");
    let input = ContainerInput {
        pod,
        container: c,
        image_ref: &image,
        image: &image_config,
        rootfs: &rootfs,
        users: &users,
        hostname: &plan.hostname,
        namespaces: NamespacePaths {
            net: (!plan.host_network).then(|| plan.ns_path(Namespace::Net)),
            ipc: Some(plan.ns_path(Namespace::Ipc)),
            uts: (!plan.host_network).then(|| plan.ns_path(Namespace::Uts)),
            pid: spec
                .share_process_namespace
                .unwrap_or(false)
                .then(|| plan.ns_path(Namespace::Pid)),
        },
        cgroups_path: plan
            .cgroup_parent
            .as_ref()
            .map(|p| format!("{p}/{}", c.name).into()),
        mounts,
        env,
        seccomp_localhost_profile: None,
        pids_limit: None,
        oom_score_adj: None,
        sandbox_id: Some(&plan.pod_id),
        honor_image_group: false,
        host,
    };
    let generated = podrun_oci::build(&input)?;
    for w in &generated.warnings {
        eprintln!("podrun: warning: container {}: {w}", c.name);
    }
    let bundle = pod_dir.join("bundles").join(&c.name);
    std::fs::create_dir_all(&bundle)?;
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&generated.spec)?,
    )?;
    Ok((bundle, generated.stop_signal))
}

/// The file the container may leave its termination message in, mounted at
/// `terminationMessagePath` (default /dev/termination-log). Mode 0666, as any
/// user of the container must be able to write it.
fn termination_log(c: &Container, pod_dir: &Path) -> Result<Mount> {
    use std::os::unix::fs::PermissionsExt;
    let file = crate::pods::termination_file(pod_dir, &c.name);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::File::create(&file).with_context(|| format!("create {}", file.display()))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))?;
    let path = c
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/dev/termination-log".into());
    Ok(Mount::bind(file, path, false))
}

/// The container's volumeMounts as bind mounts: emptyDir under the pod's
/// directory (shared by its containers), hostPath as it is on the host.
fn volume_mounts(pod: &Pod, c: &Container, pod_dir: &Path) -> Result<Vec<Mount>> {
    use podrun_volume::Medium;
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let pod_volumes = podrun_volume::PodVolumes::new(pod_dir);
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .expect("validated: the volume exists");
        let mut source = if let Some(empty_dir) = &v.empty_dir {
            let medium = if empty_dir.medium.as_deref() == Some("Memory") {
                memory_volume(pod, empty_dir)
                    .map_err(|e| anyhow::anyhow!("volume {}: {e}", v.name))?
            } else {
                Medium::Disk
            };
            pod_volumes.set_up_empty_dir(&v.name, medium)?
        } else if let Some(h) = &v.host_path {
            let kind = h
                .type_
                .as_deref()
                .unwrap_or("")
                .parse()
                .map_err(|e| anyhow::anyhow!("volume {}: {e}", v.name))?;
            pod_volumes.set_up_host_path(&v.name, Path::new(&h.path), kind)?
        } else {
            // podrun_spec::load_runnable refuses a pod with any other volume type.
            bail!(
                "volume {}: internal error: a type other than emptyDir and hostPath got past the manifest check",
                v.name
            );
        };
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            source = pod_volumes.sub_path(&v.name, &source, sub)?;
        }
        out.push(Mount::bind(
            source,
            m.mount_path.clone(),
            m.read_only.unwrap_or(false),
        ));
    }
    Ok(out)
}

/// A memory-backed emptyDir's medium: a tmpfs as large as kubelet makes it (the
/// smaller of sizeLimit and the pod's memory limit, else the node's memory).
fn memory_volume(
    pod: &Pod,
    empty_dir: &k8s_openapi::api::core::v1::EmptyDirVolumeSource,
) -> Result<podrun_volume::Medium> {
    let size_limit = empty_dir
        .size_limit
        .as_ref()
        .map(podrun_spec::memory_bytes)
        .transpose()
        .map_err(|e| anyhow::anyhow!("sizeLimit: {e}"))?
        .map(|b| b.max(0) as u64);
    let pod_limit = podrun_spec::pod_cgroup_limits(pod).memory_limit;
    let node = node_facts().memory_bytes.max(0) as u64;
    let size = podrun_volume::memory_empty_dir_size(size_limit, pod_limit, node);
    Ok(podrun_volume::Medium::Memory { size })
}

/// Removes a pod that did not come to be (or that ended in the foreground):
/// root filesystems, mounts, directories. Disarmed by setting `state` to None.
pub struct Guard {
    images: Images,
    state: Option<PodState>,
}

impl Guard {
    /// Keep what was made.
    pub fn disarm(&mut self) {
        self.state = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            if let Err(e) = pods::teardown(&self.images, &state) {
                eprintln!("podrun: cleanup: {e:#}");
            }
        }
    }
}
