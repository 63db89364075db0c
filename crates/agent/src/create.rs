//! Making a pod's sandbox and its containers, as kubelet's kuberuntime asks
//! the runtime for them: [`start_pod`] (the pod's files, then the runtime's
//! RunPodSandbox with [`sandbox_config`], then its IPs and /etc/hosts), [`ensure_image`] (EnsureImageExists, by the
//! container's imagePullPolicy), [`prepare_container`] (CreateContainer: a fresh
//! root filesystem and OCI bundle before each start).

use crate::container_config::{self, EnvVar, NodeSettings};
use crate::env::{NodeFacts, Sources};
use crate::pods::{self, PodState};
use k8s_openapi::api::core::v1::{Container, Pod};
use podrun_oci::cri::Mount;
use podrun_oci::Host;
use podrun_runtime::api::ServiceError;
use podrun_runtime::{ImageService, PodSandboxConfig, RuntimeService};
use podrun_volume::VolumeError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a pod's sandbox or a container's config could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The manifest has no `spec` (a stored row that is not a pod).
    #[error("pod has no spec")]
    NoSpec,
    /// pod/{pod}: {source} (RunPodSandbox failed)
    #[error("pod/{pod}: {source}")]
    Sandbox {
        /// The pod's name.
        pod: String,
        /// The runtime's error.
        source: ServiceError,
    },
    /// The runtime named the sandbox other than the pod's ID.
    #[error("pod/{pod}: the runtime named its sandbox {id}, not {expected}")]
    SandboxId {
        /// The pod's name.
        pod: String,
        /// The runtime's ID.
        id: String,
        /// The pod's ID.
        expected: String,
    },
    /// pod/{pod}: {source} (its /etc files, /dev/shm)
    #[error("pod/{pod}: {source}")]
    PodFiles {
        /// The pod's name.
        pod: String,
        /// What went wrong.
        source: Box<CreateError>,
    },
    /// {verb} {path}: {source}
    #[error("{verb} {}: {source}", .path.display())]
    Io {
        /// `create`, `write`, `chmod`.
        verb: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// resolv.conf: {0}
    #[error("resolv.conf: {0}")]
    ResolvConf(#[from] podrun_net::ResolvConfError),
    /// A volume could not be set up (the error names it).
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// volume {volume}: {cause}
    #[error("volume {volume}: {cause}")]
    VolumeSpec {
        /// The volume.
        volume: String,
        /// What is wrong with it.
        cause: String,
    },
    /// container {container}: {source} (kubelet's CreateContainerConfigError)
    #[error("container {container}: {source}")]
    Config {
        /// The container.
        container: String,
        /// What kubelet would refuse.
        source: crate::container_config::ConfigError,
    },
    /// failed to prepare subPath for volumeMount "{mount}" of container "{container}": {source}
    #[error("failed to prepare subPath for volumeMount \"{mount}\" of container \"{container}\": {source}")]
    SubPath {
        /// The volumeMount's volume name.
        mount: String,
        /// The container.
        container: String,
        /// What is wrong (names the volume and the subPath).
        source: Box<VolumeError>,
    },
    /// MountVolume.SetUp failed for volume "{volume}" : {cause}
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {cause}")]
    FailedMount {
        /// The volume.
        volume: String,
        /// kubelet's words (a hostPath type check …).
        cause: String,
    },
    /// A subPathExpr that does not expand (kubelet's `missing value for X`).
    #[error("{0}")]
    SubPathExpr(String),
    /// A volumeMount kubelet's makeMounts refuses (recursiveReadOnly …).
    #[error("{0}")]
    MountConfig(String),
    /// The container's environment cannot be made (a missing ConfigMap key …).
    #[error("{0}")]
    Env(String),
    /// {name} not found beside {exe}
    #[error("{name} not found beside {}", .exe.display())]
    Sibling {
        /// The binary looked for.
        name: String,
        /// This one.
        exe: PathBuf,
    },
}

impl CreateError {
    /// kubelet's FailedMount: the volume manager could not set a volume up; the
    /// container waits in ContainerCreating and the pod is synced again.
    pub fn is_failed_mount(&self) -> bool {
        matches!(self, CreateError::FailedMount { .. })
    }

    /// kubelet's CreateContainerConfigError (the config, not the making, is wrong).
    pub fn is_config(&self) -> bool {
        // kubelet's makeMounts fails generateContainerConfig for a subPath.
        matches!(
            self,
            CreateError::Config { .. }
                | CreateError::Env(_)
                | CreateError::SubPath { .. }
                | CreateError::SubPathExpr(_)
                | CreateError::MountConfig(_)
        )
    }
}

type Result<T, E = CreateError> = std::result::Result<T, E>;

fn io<'a>(verb: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CreateError + 'a {
    move |source| CreateError::Io {
        verb,
        path: path.to_path_buf(),
        source,
    }
}

/// A pod whose sandbox runs. Dropping `guard` removes it again.
pub struct Started {
    /// Its records.
    pub state: PodState,
    /// Its IPs as the sandbox's status gave them right after RunPodSandbox
    /// (`podrun_kubelet::network::pod_ips`: the node's for a hostNetwork pod),
    /// primary first. Each sync reads them again from the sandbox's status.
    pub pod_ips: Vec<std::net::IpAddr>,
    /// Removes the pod unless disarmed.
    pub guard: Guard,
}

/// Something worth an event: (type, reason, message).
pub type EventSink<'a> = &'a (dyn Fn(&str, &str, String) + Sync);

/// Make the pod's sandbox: its files (the pod manager's: /etc/hostname,
/// /etc/resolv.conf, /dev/shm), then the runtime's RunPodSandbox with the
/// config kubelet would send ([`sandbox_config`]), whose monitor starts each
/// container when the pod manager asks (each one made just before by
/// [`prepare_container`], as kubelet makes them). Then, as kubelet's SyncPod
/// does right after RunPodSandbox, the sandbox's status gives the pod's IPs,
/// and /etc/hosts is written with them (kubelet writes it with the first
/// container's mounts, once the IPs are known). On failure, everything made
/// for the pod (`state`'s directories included) is removed. Blocking.
pub fn start_pod(runtime: &Arc<dyn RuntimeService>, pod: &Pod, state: PodState) -> Result<Started> {
    let name = state.record.name.clone();
    let mut guard = Guard {
        runtime: runtime.clone(),
        state: Some(state.clone()),
    };
    let mut config = sandbox_config(pod, &state, runtime.cgroup_driver())?;
    let host_network = config.linux.security_context.namespace_options.network
        == podrun_runtime::NamespaceMode::Node;
    let pod_files_error = |e| CreateError::PodFiles {
        pod: name.clone(),
        source: Box::new(e),
    };
    pod_files(pod, &config.hostname, host_network, &state.record.data_dir)
        .map_err(pod_files_error)?;
    // kubelet sends the pod's DNS in the sandbox config (CNI's `dns` capability
    // gets it); here it is what the pod's resolv.conf says.
    let resolv = state.record.data_dir.join("etc/resolv.conf");
    config.dns_config = std::fs::read_to_string(&resolv)
        .ok()
        .map(|text| dns_config_of(&text));
    crate::crash_point("create:prepared");
    let handler = pod
        .spec
        .as_ref()
        .and_then(|s| s.runtime_class_name.clone())
        .unwrap_or_default();
    let id = runtime
        .run_pod_sandbox(&config, &handler)
        .map_err(|source| CreateError::Sandbox {
            pod: name.clone(),
            source,
        })?;
    crate::crash_point("create:monitor");
    if id != state.record.pod_id {
        // The runtime names a sandbox by its pod's UID, which is the pod's ID.
        let _ = runtime.remove_pod_sandbox(&id);
        return Err(CreateError::SandboxId {
            pod: name,
            id,
            expected: state.record.pod_id.clone(),
        });
    }
    guard.state = Some(state.clone());
    let status = runtime
        .pod_sandbox_status(&id)
        .map_err(|source| CreateError::Sandbox {
            pod: name.clone(),
            source,
        })?;
    let pod_ips = podrun_kubelet::network::pod_ips(pod, &status.ips, &crate::node_ips::node_ips());
    let hosts =
        hosts_file(pod, &config.hostname, host_network, &pod_ips).map_err(pod_files_error)?;
    let file = state.record.data_dir.join("etc").join("hosts");
    std::fs::write(&file, hosts)
        .map_err(io("write", &file))
        .map_err(pod_files_error)?;
    Ok(Started {
        state,
        pod_ips,
        guard,
    })
}

/// The sandbox config of `pod`, as kubelet's generatePodSandboxConfig
/// (pkg/kubelet/kuberuntime/kuberuntime_sandbox.go) makes it: metadata (the
/// UID is the pod's ID, which names the sandbox), hostname, labels and
/// annotations, the pod cgroup with the pod-level limits, and whose
/// namespaces the sandbox has.
pub fn sandbox_config(
    pod: &Pod,
    state: &PodState,
    cgroup_driver: podrun_runtime::cgroups::CgroupDriver,
) -> Result<PodSandboxConfig> {
    use podrun_runtime::{LinuxContainerResources, PodSandboxMetadata};
    let spec = pod.spec.as_ref().ok_or(CreateError::NoSpec)?;
    let record = &state.record;
    let mut labels: std::collections::BTreeMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert("io.kubernetes.pod.name".into(), record.name.clone());
    labels.insert(
        "io.kubernetes.pod.namespace".into(),
        record.namespace.clone(),
    );
    let uid = pod
        .metadata
        .uid
        .clone()
        .unwrap_or_else(|| record.pod_id.clone());
    labels.insert("io.kubernetes.pod.uid".into(), uid);
    let limits = podrun_spec::pod_cgroup_limits(pod);
    let mut unified = std::collections::BTreeMap::new();
    if let Some(pids) = limits.pids_limit {
        unified.insert("pids.max".to_string(), pids.to_string());
    }
    let mut config = PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: record.name.clone(),
            uid: record.pod_id.clone(),
            namespace: record.namespace.clone(),
            attempt: 0,
        },
        hostname: spec
            .hostname
            .clone()
            .unwrap_or_else(|| hostname_of(&record.name)),
        log_directory: state.run_dir.join("logs").display().to_string(),
        labels,
        annotations: pod
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        ..Default::default()
    };
    config.port_mappings = port_mappings(pod);
    config.linux.cgroup_parent = pods::pod_cgroup(pod, &record.pod_id, cgroup_driver);
    config.linux.resources = Some(LinuxContainerResources {
        cpu_shares: i64::try_from(limits.cpu_shares).unwrap_or(i64::MAX),
        cpu_quota: limits.cpu_quota.unwrap_or(0),
        cpu_period: i64::try_from(limits.cpu_period).unwrap_or(i64::MAX),
        memory_limit_in_bytes: limits.memory_limit.unwrap_or(0),
        unified,
        ..Default::default()
    });
    config.linux.security_context.namespace_options = container_config::namespace_options(pod);
    // The pod's sysctls, as kubelet's admission allows them (a refused one is the
    // containers' CreateContainerError, with kubelet's reason).
    let allowed = Host::detect()
        .map(|h| h.allowed_unsafe_sysctls)
        .unwrap_or_default();
    config.linux.sysctls = container_config::sysctl::pod_sysctls(pod, &allowed).unwrap_or_default();
    Ok(config)
}

/// The CRI DnsConfig a resolv.conf says: its `nameserver`s, `search` domains
/// and `options`, in order.
pub fn dns_config_of(resolv: &str) -> podrun_runtime::DnsConfig {
    let mut dns = podrun_runtime::DnsConfig::default();
    for line in resolv.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.servers.extend(words.next().map(String::from)),
            Some("search") => dns.searches = words.map(String::from).collect(),
            Some("options") => dns.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    dns
}

/// The ports of the pod's containers (not its init containers), as kubelet
/// sends them in the sandbox config (kuberuntime_sandbox.go,
/// generatePodSandboxConfig; `MakePortMappings` in pkg/kubelet/container/helpers.go):
/// every port, published or not (the runtime publishes those with a
/// hostPort), a port whose name (or, unnamed, whose family, protocol, hostIP
/// and ports) a container repeats given once.
pub fn port_mappings(pod: &Pod) -> Vec<podrun_runtime::PortMapping> {
    use podrun_runtime::{PortMapping, Protocol};
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    let mut out = Vec::new();
    for c in containers {
        let mut names = std::collections::BTreeSet::new();
        for p in c.ports.iter().flatten() {
            let protocol = p.protocol.as_deref().unwrap_or("TCP");
            let host_ip = p.host_ip.clone().unwrap_or_default();
            let host_port = p.host_port.unwrap_or(0);
            let family = match host_ip.parse::<std::net::IpAddr>() {
                Ok(ip) if ip.is_ipv6() => "v6",
                Ok(_) => "v4",
                Err(_) => "any",
            };
            let name = match p.name.as_deref().filter(|n| !n.is_empty()) {
                Some(n) => n.to_owned(),
                None => format!(
                    "{family}-{protocol}-{host_ip}:{}:{host_port}",
                    p.container_port
                ),
            };
            if !names.insert(name) {
                continue;
            }
            out.push(PortMapping {
                protocol: match protocol {
                    "UDP" => Protocol::Udp,
                    "SCTP" => Protocol::Sctp,
                    _ => Protocol::Tcp,
                },
                container_port: p.container_port,
                host_port,
                host_ip,
            });
        }
    }
    out
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
/// pkg/kubelet/images/image_manager.go), with kubelet's events, through the
/// runtime's ImageService (ImageStatus, PullImage). Blocking: the runtime
/// pulls on an executor of its own, one pull of an image serving every
/// caller waiting for it.
pub fn ensure_image(
    image_service: &dyn ImageService,
    c: &Container,
    events: EventSink<'_>,
) -> Result<(), PullFailure> {
    let image = c.image.as_deref().unwrap_or_default();
    let policy = c.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
    ensure(image_service, image, policy, events)
}

/// The images of the pod's `image` volumes, each ensured by its pullPolicy
/// with the same events as a container's image (kubelet's SyncPod pulls
/// them with EnsureImageExists before it starts a container,
/// pkg/kubelet/kuberuntime/kuberuntime_manager.go getImageVolumes).
pub fn ensure_volume_images(
    image_service: &dyn ImageService,
    pod: &Pod,
    events: EventSink<'_>,
) -> Result<(), PullFailure> {
    let images = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.image.as_ref());
    for image in images {
        let reference = image.reference.as_deref().unwrap_or_default();
        let policy = image.pull_policy.as_deref().unwrap_or("IfNotPresent");
        ensure(image_service, reference, policy, events)?;
    }
    Ok(())
}

fn ensure(
    image_service: &dyn ImageService,
    image: &str,
    policy: &str,
    events: EventSink<'_>,
) -> Result<(), PullFailure> {
    let spec = podrun_runtime::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    };
    let present = matches!(image_service.image_status(&spec), Ok(Some(_)));
    if policy == "Always" || (policy == "IfNotPresent" && !present) {
        events("Normal", "Pulling", format!("Pulling image \"{image}\""));
        let started = std::time::Instant::now();
        if let Err(e) = image_service.pull_image(&spec, None) {
            let e = e.to_string();
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
        let took = started.elapsed();
        let size = image_service
            .image_status(&spec)
            .ok()
            .flatten()
            .map_or(0, |i| i.size);
        crate::metrics::image_pulled(size, took);
        events("Normal", "Pulled", pulled_message(image, size, took));
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

/// kubelet's Pulled event (pkg/kubelet/images/image_manager.go): the time
/// truncated to milliseconds in Go's notation, and the image's size as the
/// runtime reports it (its blobs, as containerd counts them). podrun has no
/// pull queue: the time including waiting is the same, but for a pull this
/// sync joined, which it waited for.
fn pulled_message(image: &str, size: u64, took: std::time::Duration) -> String {
    let ms = std::time::Duration::from_millis(took.as_millis() as u64);
    let d = podrun_kubelet::backoff::go_duration(ms);
    format!("Successfully pulled image \"{image}\" in {d} ({d} including waiting). Image size: {size} bytes.")
}

/// Container `c`'s environment: its env and envFrom, from the pod's sources
/// and this node's facts with the pod's IPs (CreateContainerConfigError when
/// one is missing).
pub fn container_env(
    pod: &Pod,
    c: &Container,
    sources: &Sources,
    node: &NodeFacts,
) -> Result<Vec<EnvVar>> {
    crate::env::environment(pod, c, sources, node).map_err(CreateError::Env)
}

/// Container `c` as the CRI config the runtime's CreateContainer takes:
/// kubelet's generateContainerConfig ([`container_config`]) with its mounts
/// (the pod's volumes set up by then, the pod's /etc files and /dev/shm, the
/// termination log) as host paths. `image` is its image as the runtime's
/// ImageStatus reports it (its user, for runAsNonRoot). Each start of a
/// container goes through it.
pub fn prepare_container(
    pod: &Pod,
    c: &Container,
    state: &PodState,
    root: &Path,
    image: &podrun_runtime::Image,
    host: &Host,
    env: Vec<EnvVar>,
) -> Result<podrun_oci::cri::ContainerConfig> {
    let data_dir = &state.record.data_dir;
    let expanded = container_config::expand::container_env(&env);
    let mut mounts = volume_mounts(pod, c, data_dir, root, &expanded)?;
    mounts.push(termination_log(c, data_dir)?);
    // The pod's files, unless a volume is mounted there (as kubelet leaves
    // /etc/hosts alone when a volumeMount covers it).
    let read_only_root = c
        .security_context
        .as_ref()
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false);
    for m in pod_mounts(pod, data_dir) {
        if mounts.iter().any(|v| v.container_path == m.container_path) {
            continue;
        }
        let mut m = m.clone();
        if read_only_root && m.container_path.starts_with("/etc/") {
            m.readonly = true;
        }
        mounts.push(m);
    }
    let node = NodeSettings {
        seccomp_default: host.seccomp_default,
        allowed_unsafe_sysctls: host.allowed_unsafe_sysctls.clone(),
    };
    // A ConfigError is kubelet's CreateContainerConfigError, where a mount
    // that cannot be made is a CreateContainerError.
    container_config::container_config(pod, c, &env, mounts, image, &node).map_err(|source| {
        CreateError::Config {
            container: c.name.clone(),
            source,
        }
    })
}

/// The pod's files under `<data dir>/etc`, each bind-mounted at /etc/<name>.
const POD_ETC_FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

/// The pod's /etc/hosts as kubelet writes it (pkg/kubelet/kubelet_pods.go
/// `ensureHostsFile`): the node's own file under kubelet's header for a
/// hostNetwork pod; otherwise kubelet's managed file with a line for each of
/// the pod's IPs (`pod_ips`, primary first) and the `hostAliases`.
///
/// kubelet does not mount /etc/hosts at all while a pod has no IP
/// (`makeMounts`: "its IP is still unknown"); podrun mounts its managed file
/// without the pod's line instead, so that localhost and the hostAliases
/// resolve in a pod whose network gave it no address.
fn hosts_file(
    pod: &Pod,
    hostname: &str,
    host_network: bool,
    pod_ips: &[std::net::IpAddr],
) -> Result<String> {
    use podrun_net as net;
    let spec = pod.spec.as_ref().ok_or(CreateError::NoSpec)?;
    let aliases: Vec<(String, Vec<String>)> = spec
        .host_aliases
        .iter()
        .flatten()
        .map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default()))
        .collect();
    let hosts = if host_network {
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
        net::hosts_file(hostname, fqdn.as_deref(), pod_ips, &aliases)
    };
    Ok(hosts)
}

/// The files and mounts every container of the pod shares, made before the
/// sandbox: /etc/hostname and /etc/resolv.conf as kubelet writes them, and
/// the pod's /dev/shm (a 64 MiB tmpfs, or the host's with hostIPC);
/// [`pod_mounts`] says where the containers see them. /etc/hosts, the third
/// of [`POD_ETC_FILES`], waits for the sandbox's IPs ([`hosts_file`]).
fn pod_files(pod: &Pod, hostname: &str, host_network: bool, data_dir: &Path) -> Result<()> {
    use podrun_net as net;
    let spec = pod.spec.as_ref().ok_or(CreateError::NoSpec)?;
    let etc = data_dir.join("etc");
    std::fs::create_dir_all(&etc).map_err(io("create", &etc))?;
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
    )?;
    let hostname = if host_network {
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default()
    } else {
        net::hostname_file(hostname)
    };
    for (name, text) in [("hostname", hostname), ("resolv.conf", resolv)] {
        let file = etc.join(name);
        std::fs::write(&file, text).map_err(io("write", &file))?;
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
        .map(|name| bind(etc.join(name), format!("/etc/{name}"), false))
        .collect();
    let host_ipc = pod.spec.as_ref().and_then(|s| s.host_ipc).unwrap_or(false);
    let shm = if host_ipc {
        PathBuf::from("/dev/shm")
    } else {
        data_dir.join("shm")
    };
    mounts.push(bind(shm, "/dev/shm", false));
    mounts
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

/// This node's facts for the downward API (no pod's IPs: the caller that
/// knows the pod's sandbox sets [`NodeFacts::pod_ips`]).
pub(crate) fn node_facts() -> NodeFacts {
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
        host_ips: crate::node_ips::node_ips()
            .iter()
            .map(ToString::to_string)
            .collect(),
        pod_ips: Vec::new(),
        cpu_millis: cpus * 1000,
        memory_bytes,
    }
}

/// A binary installed beside this one.
pub fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(io("find", Path::new("/proc/self/exe")))?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        return Err(CreateError::Sibling {
            name: name.into(),
            exe,
        });
    }
    Ok(path)
}

/// A host path the container sees at `container_path` (a CRI mount: the runtime
/// bind-mounts it recursively, privately unless a volumeMount's
/// mountPropagation says otherwise).
fn bind(host_path: impl Into<PathBuf>, container_path: impl Into<String>, readonly: bool) -> Mount {
    Mount {
        host_path: host_path.into().display().to_string(),
        container_path: container_path.into(),
        readonly,
        ..Default::default()
    }
}

/// The file the container may leave its termination message in, mounted at
/// `terminationMessagePath` (default /dev/termination-log). Mode 0666, as any
/// user of the container must be able to write it.
fn termination_log(c: &Container, pod_dir: &Path) -> Result<Mount> {
    use std::os::unix::fs::PermissionsExt;
    let file = crate::pods::termination_file(pod_dir, &c.name);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    std::fs::File::create(&file).map_err(io("create", &file))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))
        .map_err(io("chmod", &file))?;
    let path = c
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/dev/termination-log".into());
    Ok(bind(file, path, false))
}

/// The container's volumeMounts as bind mounts: emptyDir under the pod's
/// directory (shared by its containers), hostPath as it is on the host.
/// A subPath (or a subPathExpr expanded against `env`, the container's
/// variables) is bind-mounted safely under the pod's directory first
/// ([`podrun_volume::PodVolumes::sub_path`]); a persistentVolumeClaim's
/// directory is under `root` (crate::claims).
fn volume_mounts(
    pod: &Pod,
    c: &Container,
    pod_dir: &Path,
    root: &Path,
    env: &[(String, String)],
) -> Result<Vec<Mount>> {
    use podrun_volume::Medium;
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let pod_volumes = podrun_volume::PodVolumes::new(pod_dir);
    let mut out = Vec::new();
    for (index, m) in c.volume_mounts.iter().flatten().enumerate() {
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .expect("validated: the volume exists");
        let mut read_only = m.read_only.unwrap_or(false);
        let mut source = if let Some(empty_dir) = &v.empty_dir {
            let spec_error = |cause| CreateError::VolumeSpec {
                volume: v.name.clone(),
                cause,
            };
            let medium = match empty_dir.medium.as_deref().unwrap_or("") {
                "Memory" => memory_volume(pod, empty_dir).map_err(spec_error)?,
                m if m.starts_with("HugePages") => hugepages_volume(pod, m).map_err(spec_error)?,
                _ => Medium::Disk,
            };
            // kubelet's emptyDir SetUpAt applies the pod's fsGroup once, when
            // it makes the volume (pkg/volume/emptydir/empty_dir.go).
            let fresh = !pod_volumes.empty_dir_path(&v.name)?.exists();
            let dir = pod_volumes.set_up_empty_dir(&v.name, medium)?;
            if let (true, Some(group)) = (fresh, crate::volumes::fs_group(pod)) {
                let policy = crate::volumes::fs_group_change_policy(pod);
                podrun_volume::ownership::set_volume_ownership(&dir, group, false, policy)
                    .map_err(|e| CreateError::FailedMount {
                        volume: v.name.clone(),
                        cause: format!("applying fsGroup {group}: {e}"),
                    })?;
            }
            dir
        } else if crate::projection::is_projected_kind(v) {
            // Written (and kept up to date) by crate::volumes before each start;
            // always read-only, as kubelet mounts these kinds.
            read_only = true;
            pod_volumes.empty_dir_path(&v.name)?
        } else if let Some(image) = &v.image {
            // The runtime mounts the image (pulled before, by
            // ensure_volume_images) read-only; a subPath is the image's to
            // resolve (kubelet sends it as the mount's image_sub_path).
            out.push(Mount {
                container_path: m.mount_path.clone(),
                readonly: true,
                image: Some(podrun_oci::cri::ImageSpec {
                    image: image.reference.clone().unwrap_or_default(),
                    ..Default::default()
                }),
                image_sub_path: m.sub_path.clone().unwrap_or_default(),
                ..Default::default()
            });
            continue;
        } else if let Some(h) = &v.host_path {
            let kind = h.type_.as_deref().unwrap_or("").parse().map_err(
                |e: podrun_volume::UnknownHostPathType| CreateError::VolumeSpec {
                    volume: v.name.clone(),
                    cause: e.to_string(),
                },
            )?;
            pod_volumes
                .set_up_host_path(&v.name, Path::new(&h.path), kind)
                .map_err(|e| match e.failed_mount() {
                    Some((volume, cause)) => CreateError::FailedMount {
                        volume: volume.to_string(),
                        cause,
                    },
                    None => CreateError::Volume(e),
                })?
        } else if let Some(claim) = &v.persistent_volume_claim {
            // The volume's readOnly, or the mount's (kubelet's makeMounts).
            read_only |= claim.read_only.unwrap_or(false);
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            let dir = crate::claims::dir(root, namespace, &claim.claim_name);
            if !dir.is_dir() {
                return Err(CreateError::VolumeSpec {
                    volume: v.name.clone(),
                    cause: format!(
                        "persistentvolumeclaim {:?}: its volume directory {} is missing",
                        claim.claim_name,
                        dir.display()
                    ),
                });
            }
            dir
        } else {
            // podrun_spec::load_runnable refuses a pod with any other volume type.
            return Err(CreateError::VolumeSpec {
                volume: v.name.clone(),
                cause: "internal error: a type podrun does not mount got past the manifest check"
                    .into(),
            });
        };
        let sub = match m.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
            Some(expr) => Some(
                container_config::expand::sub_path_expr(expr, env)
                    .map_err(CreateError::SubPathExpr)?,
            ),
            None => m.sub_path.clone().filter(|s| !s.is_empty()),
        };
        if let Some(sub) = sub {
            source = pod_volumes
                .sub_path(&v.name, &c.name, index, &source, &sub)
                .map_err(|source| {
                    if source.is_sub_path() {
                        CreateError::SubPath {
                            mount: m.name.clone(),
                            container: c.name.clone(),
                            source: Box::new(source),
                        }
                    } else {
                        CreateError::Volume(source)
                    }
                })?;
        }
        let mut mount = bind(source, m.mount_path.clone(), read_only);
        mount.recursive_read_only = recursive_read_only(
            &m.name,
            m.recursive_read_only.as_deref(),
            read_only,
            m.mount_propagation.as_deref(),
            mount_setattr_supported(),
        )
        .map_err(CreateError::MountConfig)?;
        // kubelet's makeMounts: None (the default) is private; the API
        // server has refused Bidirectional for unprivileged containers.
        mount.propagation = match m.mount_propagation.as_deref() {
            Some("HostToContainer") => podrun_oci::cri::MountPropagation::HostToContainer,
            Some("Bidirectional") => podrun_oci::cri::MountPropagation::Bidirectional,
            _ => podrun_oci::cri::MountPropagation::Private,
        };
        out.push(mount);
    }
    Ok(out)
}

/// Whether this kernel has mount_setattr(2) (Linux 5.12), which the runtime's
/// `rro` needs (containerd reports RecursiveReadOnly support the same way).
fn mount_setattr_supported() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    kernel_at_least(&release, (5, 12))
}

/// Whether a kernel release string (`6.1.0-18-amd64`) is at least `want`.
fn kernel_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= want
}

/// A volumeMount's recursiveReadOnly resolved as kubelet's
/// resolveRecursiveReadOnly (pkg/kubelet/kubelet_pods.go): Enabled needs
/// readOnly, no propagation and a runtime (here: a kernel) that can do it;
/// IfPossible falls back to a plain read-only mount where it cannot.
fn recursive_read_only(
    name: &str,
    mode: Option<&str>,
    read_only: bool,
    propagation: Option<&str>,
    supported: bool,
) -> Result<bool, String> {
    let enabled = match mode {
        None | Some("") | Some("Disabled") => return Ok(false),
        Some("Enabled") => true,
        Some("IfPossible") => false,
        Some(other) => return Err(format!("unknown recursive read-only mode {other:?}")),
    };
    if !read_only {
        return Err(format!(
            "volume {name:?} requested recursive read-only mode, but it is not read-only"
        ));
    }
    if let Some(p) = propagation.filter(|p| *p != "None") {
        return Err(format!(
            "volume {name:?} requested recursive read-only mode, but it is not compatible with propagation {p:?}"
        ));
    }
    if enabled && !supported {
        return Err(format!(
            "volumeMount {name:?} requested recursive read-only mode, but it is not supported by the runtime"
        ));
    }
    Ok(supported)
}

/// A hugepages emptyDir's medium (`HugePages` or `HugePages-<size>`): its page
/// size from the pod's hugepages requests, as kubelet's
/// `getPageSizeMountOption` (pkg/volume/emptydir/empty_dir.go) picks it, with
/// its errors; and the node must have huge pages of that size (kubelet would
/// reject the pod's request of them at admission).
fn hugepages_volume(pod: &Pod, medium: &str) -> Result<podrun_volume::Medium, String> {
    let size_of = |text: &str| {
        podrun_spec::parse_quantity(text)
            .ok()
            .and_then(|q| u64::try_from(q.value()).ok())
            .filter(|b| *b > 0)
    };
    let wanted = match medium.strip_prefix("HugePages-") {
        Some(size) => Some(
            size_of(size)
                .ok_or_else(|| format!("medium {medium}: {size:?} is not a valid page size"))?,
        ),
        None => None,
    };
    let spec = pod.spec.as_ref();
    let containers = spec.into_iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    });
    let mut requested: Vec<u64> = containers
        .flat_map(|c| c.resources.iter())
        .flat_map(|r| r.requests.iter().chain(r.limits.iter()).flatten())
        .filter_map(|(name, _)| size_of(name.strip_prefix("hugepages-")?))
        .collect();
    requested.sort_unstable();
    requested.dedup();
    let page_size = match wanted {
        Some(size) if requested.contains(&size) => size,
        None if requested.len() > 1 => {
            return Err(format!(
                "medium: {medium} can't be used if container requests multiple huge page sizes"
            ))
        }
        None if requested.len() == 1 => requested[0],
        _ => {
            return Err(format!(
                "medium {medium}: hugePages storage requested, but there is no resource request for huge pages"
            ))
        }
    };
    let pool = format!(
        "/sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages",
        page_size / 1024
    );
    let name = match page_size {
        s if s % (1 << 30) == 0 => format!("{}Gi", s >> 30),
        s if s % (1 << 20) == 0 => format!("{}Mi", s >> 20),
        s => format!("{}Ki", s >> 10),
    };
    match std::fs::read_to_string(&pool).map(|t| t.trim().parse::<u64>()) {
        Ok(Ok(pages)) if pages > 0 => Ok(podrun_volume::Medium::HugePages { page_size }),
        Ok(_) => Err(format!(
            "medium {medium}: the node has no huge pages of size {name} ({pool} is 0)"
        )),
        Err(_) => Err(format!(
            "medium {medium}: the node has no huge pages of size {name} (no {pool})"
        )),
    }
}

/// A memory-backed emptyDir's medium: a tmpfs as large as kubelet makes it (the
/// smaller of sizeLimit and the pod's memory limit, else the node's memory).
fn memory_volume(
    pod: &Pod,
    empty_dir: &k8s_openapi::api::core::v1::EmptyDirVolumeSource,
) -> Result<podrun_volume::Medium, String> {
    let size_limit = empty_dir
        .size_limit
        .as_ref()
        .map(podrun_spec::memory_bytes)
        .transpose()
        .map_err(|e| format!("sizeLimit: {e}"))?
        .map(|b| b.max(0) as u64);
    let pod_limit = podrun_spec::pod_cgroup_limits(pod).memory_limit;
    let node = node_facts().memory_bytes.max(0) as u64;
    let size = podrun_volume::memory_empty_dir_size(size_limit, pod_limit, node);
    Ok(podrun_volume::Medium::Memory { size })
}

/// Removes a pod that did not come to be (or that ended in the foreground):
/// root filesystems, mounts, directories. Disarmed by setting `state` to None.
pub struct Guard {
    runtime: Arc<dyn RuntimeService>,
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
            if let Err(e) = pods::teardown(self.runtime.as_ref(), &state) {
                eprintln!("podrun: cleanup: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fake_runtime::FakeRuntime;
    use std::net::IpAddr;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// Runs `start_pod` for `yaml` against a runtime whose sandbox reports
    /// `sandbox_ips`; returns the pod's IPs, /etc/hosts and the runtime's calls.
    fn start(yaml: &str, sandbox_ips: &[&str]) -> (Vec<IpAddr>, String, Vec<String>) {
        let (run_root, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let pod = match podrun_spec::load(yaml, "test.yaml").unwrap().remove(0) {
            podrun_spec::Object::Pod(pod) => pod,
            other => panic!("not a pod: {other:?}"),
        };
        let state = crate::pods::register(run_root.path(), root.path(), &pod, None, true).unwrap();
        let fake = std::sync::Arc::new(FakeRuntime {
            ips: ips(sandbox_ips),
            ..Default::default()
        });
        let runtime: std::sync::Arc<dyn podrun_runtime::RuntimeService> = fake.clone();
        let mut started = super::start_pod(&runtime, &pod, state).unwrap();
        started.guard.disarm();
        let hosts_path = started.state.record.data_dir.join("etc/hosts");
        let hosts = std::fs::read_to_string(hosts_path).unwrap();
        let id = started.state.record.pod_id.clone();
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            [format!("run sandbox {id}"), format!("sandbox status {id}")],
            "RunPodSandbox, then its status"
        );
        (started.pod_ips, hosts, calls)
    }

    /// After RunPodSandbox the sandbox's status gives the pod's IPs, and
    /// /etc/hosts gets kubelet's line for each (the FQDN first with a
    /// subdomain), before the hostAliases.
    #[test]
    fn the_sandboxs_ips_reach_the_pod_and_its_hosts_file() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec:\n  hostIPC: true\n  subdomain: db\n  hostAliases: [{ip: 10.1.2.3, hostnames: [foo.local]}]\n  containers: [{name: c, image: busybox}]\n";
        let (pod_ips, hosts, _) = start(yaml, &["10.88.0.5", "fd00::5"]);
        assert_eq!(pod_ips, ips(&["10.88.0.5", "fd00::5"]));
        assert!(
            hosts.ends_with(
                "fe00::2\tip6-allrouters\n\
                 10.88.0.5\tweb.db.shop.svc.cluster.local\tweb\n\
                 fd00::5\tweb.db.shop.svc.cluster.local\tweb\n\
                 \n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\n"
            ),
            "{hosts}"
        );
        // No address from the network: the managed file without the pod's line.
        let (pod_ips, hosts, _) = start(yaml, &[]);
        assert!(pod_ips.is_empty());
        assert!(
            hosts.contains("fe00::2\tip6-allrouters\n\n# Entries added by HostAliases."),
            "{hosts}"
        );
    }

    /// A hostNetwork pod has the node's IPs and the node's /etc/hosts.
    #[test]
    fn a_host_network_pod_has_the_nodes_ips_and_hosts_file() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  hostIPC: true\n  hostNetwork: true\n  containers: [{name: c, image: busybox}]\n";
        let (pod_ips, hosts, _) = start(yaml, &[]);
        assert_eq!(pod_ips, crate::node_ips::node_ips());
        let node = std::fs::read_to_string("/etc/hosts").unwrap();
        assert_eq!(
            hosts,
            format!("# Kubernetes-managed hosts file (host network).\n{node}")
        );
    }

    /// The sandbox config's DNS is what the pod's resolv.conf says.
    #[test]
    fn the_dns_config_is_read_from_resolv_conf() {
        let dns = super::dns_config_of(
            "# comment\nsearch a.svc b\nnameserver 10.0.0.10\nnameserver fd00::53\noptions ndots:5 edns0\n",
        );
        assert_eq!(dns.servers, ["10.0.0.10", "fd00::53"]);
        assert_eq!(dns.searches, ["a.svc", "b"]);
        assert_eq!(dns.options, ["ndots:5", "edns0"]);
    }

    /// Every port of the containers reaches the sandbox config (not those
    /// of init containers), published or not, as kubelet's MakePortMappings.
    #[test]
    fn ports_reach_the_sandbox_config_as_kubelet_sends_them() {
        use podrun_runtime::{PortMapping, Protocol};
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  initContainers:\n  - {name: i, image: busybox, ports: [{containerPort: 1}]}\n  containers:\n  - name: a\n    image: busybox\n    ports:\n    - {name: http, containerPort: 80, hostPort: 8080}\n    - {containerPort: 53, protocol: UDP, hostPort: 5353, hostIP: 127.0.0.1}\n  - {name: b, image: busybox, ports: [{containerPort: 9000}]}\n";
        let pod = match podrun_spec::load(yaml, "test.yaml").unwrap().remove(0) {
            podrun_spec::Object::Pod(pod) => pod,
            other => panic!("not a pod: {other:?}"),
        };
        let port = |protocol, container_port, host_port, host_ip: &str| PortMapping {
            protocol,
            container_port,
            host_port,
            host_ip: host_ip.into(),
        };
        assert_eq!(
            super::port_mappings(&pod),
            [
                port(Protocol::Tcp, 80, 8080, ""),
                port(Protocol::Udp, 53, 5353, "127.0.0.1"),
                port(Protocol::Tcp, 9000, 0, ""),
            ]
        );
    }

    /// A volumeMount's mountPropagation reaches the CRI mount as kubelet's
    /// makeMounts passes it (None: private).
    #[test]
    fn recursive_read_only_is_resolved_as_kubelet_does() {
        use super::{kernel_at_least, recursive_read_only as rro};
        assert!(kernel_at_least("6.1.0-18-amd64", (5, 12)));
        assert!(kernel_at_least("5.12.0", (5, 12)));
        assert!(!kernel_at_least("5.11.22", (5, 12)));
        assert!(!kernel_at_least("4.19.0", (5, 12)));
        assert_eq!(rro("v", None, true, None, true), Ok(false));
        assert_eq!(rro("v", Some("Disabled"), true, None, true), Ok(false));
        assert_eq!(rro("v", Some("Enabled"), true, None, true), Ok(true));
        assert_eq!(
            rro("v", Some("Enabled"), true, Some("None"), true),
            Ok(true)
        );
        assert_eq!(rro("v", Some("IfPossible"), true, None, true), Ok(true));
        assert_eq!(rro("v", Some("IfPossible"), true, None, false), Ok(false));
        assert_eq!(
            rro("v", Some("Enabled"), true, None, false),
            Err("volumeMount \"v\" requested recursive read-only mode, but it is not supported by the runtime".into())
        );
        assert!(rro("v", Some("Enabled"), false, None, true)
            .unwrap_err()
            .contains("not read-only"));
        assert!(
            rro("v", Some("IfPossible"), true, Some("HostToContainer"), true)
                .unwrap_err()
                .contains("propagation")
        );
    }

    #[test]
    fn mount_propagation_is_passed_to_the_runtime() {
        use podrun_oci::cri::MountPropagation;
        let host = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  volumes: [{{name: h, hostPath: {{path: {}}}}}]\n  containers:\n  - name: c\n    image: busybox\n    securityContext: {{privileged: true}}\n    volumeMounts:\n    - {{name: h, mountPath: /a}}\n    - {{name: h, mountPath: /b, mountPropagation: HostToContainer}}\n    - {{name: h, mountPath: /c, mountPropagation: Bidirectional}}\n",
            host.path().display()
        );
        let pod = match podrun_spec::load(&yaml, "test.yaml").unwrap().remove(0) {
            podrun_spec::Object::Pod(pod) => pod,
            other => panic!("not a pod: {other:?}"),
        };
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let mounts = super::volume_mounts(&pod, c, data.path(), data.path(), &[]).unwrap();
        let got: Vec<(&str, MountPropagation)> = mounts
            .iter()
            .map(|m| (m.container_path.as_str(), m.propagation))
            .collect();
        assert_eq!(
            got,
            [
                ("/a", MountPropagation::Private),
                ("/b", MountPropagation::HostToContainer),
                ("/c", MountPropagation::Bidirectional),
            ]
        );
    }
}
