//! [`NodeRuntime`]: the [`RuntimeService`] of this machine, over one monitor
//! per sandbox (`podrun-monitor`, see [`crate::monitor`]) and the records of
//! [`crate::state`].
//!
//! RunPodSandbox writes the sandbox's record first, then its pod cgroup (from
//! `linux.cgroup_parent` and `linux.resources`), the monitor's plan, and
//! starts the monitor, which creates the pause process and pins its
//! namespaces; it returns once the monitor answers on its control socket (the
//! sandbox is made then). Any failure removes what was made. Containers are
//! created, started, stopped and removed by ID: the records take an ID to its
//! sandbox, whose monitor is asked by the container's name.
//!
//! Not the runtime's: the pod's volumes and its /etc/hosts (the pod manager
//! makes them, and gives the containers' bundles their mounts, as kubelet's
//! volume manager prepares host paths and containerd only bind-mounts what it
//! is given).

use crate::api::{
    ContainerFilter, ContainerState, ContainerStatus, ExecSyncResult, PodSandbox, PodSandboxFilter,
    PodSandboxStatus, RuntimeService, SandboxState, ServiceError, Started,
};
use crate::cgroups::{self, CgroupLimits};
use crate::monitor::{self, log::now_rfc3339_nano, ContainerPlan, PodPlan, Request, Response};
use crate::network::{self, NetworkConfig, NetworkRecord, Networks};
use crate::sandbox::Namespace;
use crate::state::{self, ContainerRecord, SandboxRecord, StateError, Store};
use crate::{ContainerConfig, LinuxContainerResources, NamespaceMode, PodSandboxConfig};
use podrun_oci::{ContainerInput, Host, ImageConfig, NamespacePaths, UserFiles};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The runtime's own pin of a sandbox's network namespace, in its directory.
const NETNS_PIN: &str = "netns";

/// The OCI runtimes a handler may name without being configured.
const BUILT_IN: [&str; 4] = ["embedded", "crun", "runc", "youki"];

/// How the runtime runs on this machine.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `--run-root`: sandboxes under `sandboxes/`, OCI runtime state beside.
    pub run_root: PathBuf,
    /// The `podrun-monitor` binary.
    pub monitor: PathBuf,
    /// The `podrun-pause` binary.
    pub pause: PathBuf,
    /// The OCI runtime of the empty handler (`embedded`, `crun`, a path).
    pub default_runtime: String,
    /// Runtime handlers (RuntimeClass handlers) and the OCI runtime each names.
    pub handlers: BTreeMap<String, String>,
    /// How long a monitor may take to answer a request.
    pub request_timeout: Duration,
    /// How long a new sandbox may take to be ready.
    pub ready_timeout: Duration,
    /// The pod networks; `None`: a sandbox's network namespace has only its
    /// loopback (a runtime that only runs hostNetwork pods, and tests).
    pub network: Option<NetworkConfig>,
    /// How pod and container cgroups are made: the form a sandbox's
    /// `cgroup_parent` must have (a path, or a slice name for systemd), and how
    /// the OCI runtime is told to make the containers' (the bundle's
    /// `cgroupsPath`).
    pub cgroup_driver: cgroups::CgroupDriver,
}

impl RuntimeConfig {
    /// The embedded OCI runtime, no handlers, and the monitor and pause
    /// binaries found by [`find_binary`].
    pub fn new(run_root: &Path) -> Result<Self, ServiceError> {
        Ok(RuntimeConfig {
            run_root: run_root.to_path_buf(),
            monitor: find_binary("podrun-monitor")?,
            pause: find_binary("podrun-pause")?,
            default_runtime: monitor::EMBEDDED.into(),
            handlers: BTreeMap::new(),
            request_timeout: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(60),
            network: None,
            cgroup_driver: cgroups::CgroupDriver::Cgroupfs,
        })
    }

    /// The OCI runtime `handler` names (empty: the default).
    pub fn oci_runtime(&self, handler: &str) -> Result<String, ServiceError> {
        if handler.is_empty() {
            return Ok(self.default_runtime.clone());
        }
        match self.handlers.get(handler) {
            Some(runtime) => Ok(runtime.clone()),
            None if BUILT_IN.contains(&handler) => Ok(handler.into()),
            None => {
                let mut known: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
                known.extend(BUILT_IN);
                Err(ServiceError::UnknownHandler {
                    handler: handler.into(),
                    known: known.join(", "),
                })
            }
        }
    }
}

/// A podrun binary installed beside the running one; for a test binary (in
/// `target/<profile>/deps/`), the ones cargo built in `target/<profile>/`.
pub fn find_binary(name: &str) -> Result<PathBuf, ServiceError> {
    let not_found = |cause: String| ServiceError::Failed {
        call: "find binary",
        what: name.into(),
        cause,
    };
    let exe = std::env::current_exe().map_err(|e| not_found(e.to_string()))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let mut candidates = vec![dir.join(name)];
    if dir.file_name().is_some_and(|d| d == "deps") {
        candidates.extend(dir.parent().map(|p| p.join(name)));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            not_found(format!(
                "not beside {} (build it: cargo build -p podrun)",
                exe.display()
            ))
        })
}

/// The runtime of this machine: sandboxes held by monitors.
pub struct NodeRuntime {
    config: RuntimeConfig,
    store: Store,
    images: podrun_image::Images,
    /// The pod networks (`config.network`).
    networks: Option<Networks>,
    /// The monitors this process started, reaped when they end.
    monitors: Arc<Mutex<Monitors>>,
}

/// The monitors a runtime started (its children), and whether a thread
/// reaps them.
#[derive(Default)]
struct Monitors {
    children: HashMap<String, Monitor>,
    reaper: bool,
    /// The reaper's wake-up: a byte written here makes it look again (a new
    /// child to wait for).
    wake: Option<(OwnedFd, OwnedFd)>,
}

/// A monitor this process started, and a pidfd that turns readable when it
/// ends (none before Linux 5.3).
struct Monitor {
    child: Child,
    pidfd: Option<Arc<OwnedFd>>,
}

impl Monitors {
    /// Reap the children that ended.
    fn reap(&mut self) {
        self.children
            .retain(|_, m| matches!(m.child.try_wait(), Ok(None)));
    }

    /// Wake the reaper: there is a new child to wait for.
    fn wake(&self) {
        if let Some((_, write)) = &self.wake {
            let _ = rustix::io::write(write, &[1]);
        }
    }
}

/// The reaper's loop: reap the monitors that ended, then sleep until one of
/// them ends (its pidfd) or a new one comes (the wake pipe). Without pidfds
/// it looks every 250 ms. It ends when no monitor is left.
fn reap_monitors(shared: &Mutex<Monitors>) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    loop {
        let (pidfds, wake) = {
            let mut monitors = lock(shared);
            monitors.reap();
            if monitors.children.is_empty() {
                monitors.reaper = false;
                return;
            }
            let pidfds: Option<Vec<Arc<OwnedFd>>> = monitors
                .children
                .values()
                .map(|m| m.pidfd.clone())
                .collect();
            let wake = monitors
                .wake
                .as_ref()
                .and_then(|(read, _)| read.try_clone().ok());
            (pidfds, wake)
        };
        match (pidfds, wake) {
            (Some(pidfds), Some(wake)) => {
                let mut fds: Vec<PollFd<'_>> = pidfds
                    .iter()
                    .map(|fd| PollFd::new(fd.as_ref(), PollFlags::IN))
                    .collect();
                fds.push(PollFd::new(&wake, PollFlags::IN));
                let minute = Timespec {
                    tv_sec: 60,
                    tv_nsec: 0,
                };
                let _ = poll(&mut fds, Some(&minute));
                if fds.last().is_some_and(|fd| !fd.revents().is_empty()) {
                    let mut drained = [0u8; 64];
                    let _ = rustix::io::read(&wake, &mut drained);
                }
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

impl NodeRuntime {
    /// A runtime as `config` says, the containers' root filesystems in the
    /// image store under `root`.
    pub fn open(config: RuntimeConfig, root: &Path) -> Result<Self, ServiceError> {
        let images = crate::images::open_store(root).map_err(|e| ServiceError::Failed {
            call: "open",
            what: format!("the store under {}", root.display()),
            cause: e.to_string(),
        })?;
        Self::new(config, images)
    }

    /// A runtime as `config` says; `images` holds the containers' root
    /// filesystems. Fails on a network config that cannot work.
    pub fn new(config: RuntimeConfig, images: podrun_image::Images) -> Result<Self, ServiceError> {
        let networks = match &config.network {
            Some(network) => Some(Networks::new(network).map_err(|e| ServiceError::Failed {
                call: "open",
                what: "the pod network".into(),
                cause: e.to_string(),
            })?),
            None => None,
        };
        Ok(NodeRuntime {
            store: Store::new(&config.run_root),
            config,
            images,
            networks,
            monitors: Arc::default(),
        })
    }

    /// The pod networks, when configured.
    pub fn networks(&self) -> Option<&Networks> {
        self.networks.as_ref()
    }

    /// Releases what the pod networks hold for sandboxes this runtime no
    /// longer has (after a reboot emptied the run root): see
    /// [`Networks::collect_garbage`]. Returns what failed, as messages.
    pub fn collect_network_garbage(&self) -> Vec<String> {
        let Some(networks) = &self.networks else {
            return Vec::new();
        };
        match self.store.ids() {
            Ok(live) => networks.collect_garbage(&live),
            Err(e) => vec![format!("list the sandboxes: {e}")],
        }
    }

    /// Attach the sandbox of `record` (in `dir`, its namespaces pinned) to
    /// its pod network, unless it is on the node's: the runtime's own pin of
    /// the namespace, the intent record, the ADD, the record of its result.
    fn attach(&self, record: &SandboxRecord, dir: &Path) -> Result<(), ServiceError> {
        let Some(networks) = &self.networks else {
            return Ok(());
        };
        let options = &record.config.linux.security_context.namespace_options;
        if options.network == NamespaceMode::Node {
            return Ok(());
        }
        let what = format!("sandbox {}", record.id);
        let fail = |cause: String| failed("RunPodSandbox", &what, cause);
        let attachment = network::attachment_for(&record.id, &dir.join(NETNS_PIN), &record.config)
            .map_err(&fail)?;
        network::pin(
            &dir.join("ns").join(Namespace::Net.name()),
            &attachment.netns,
        )
        .map_err(|e| fail(format!("pin the network namespace: {e}")))?;
        let kind = networks.choose();
        let mut net = NetworkRecord {
            kind,
            name: networks.get(kind).name().to_owned(),
            attachment,
            status: None,
        };
        net.save(dir)
            .map_err(|e| fail(format!("write its network record: {e}")))?;
        let status = networks
            .add(kind, &net.attachment, record.config.dns_config.as_ref())
            .map_err(|e| fail(format!("failed to set up the pod network: {e}")))?;
        net.status = Some(status);
        net.save(dir)
            .map_err(|e| fail(format!("write its network record: {e}")))
    }

    /// Detach the sandbox in `dir` from the network that attached it (DEL,
    /// once its monitor ended), then drop the runtime's pin. A DEL that fails
    /// keeps the record: the next Stop or Remove tries again.
    fn detach(&self, id: &str, dir: &Path) -> Result<(), ServiceError> {
        let what = format!("sandbox {id}");
        let fail = |cause: String| failed("StopPodSandbox", &what, cause);
        let pin = dir.join(NETNS_PIN);
        let net =
            NetworkRecord::load(dir).map_err(|e| fail(format!("read its network record: {e}")))?;
        if let Some(net) = net {
            let networks = self.networks.as_ref().ok_or_else(|| {
                fail(format!(
                    "it is attached to network {} and this runtime has no network configured",
                    net.name
                ))
            })?;
            let mut attachment = net.attachment.clone();
            let network = networks.get(net.kind);
            let deleted = if network::is_pinned(&pin) {
                // The pin goes right after: what ends with the namespace
                // may end with it.
                network.del_then_drop_netns(&attachment)
            } else {
                // Gone (a reboot): CNI's rule is an empty CNI_NETNS.
                attachment.netns = PathBuf::new();
                network.del(&attachment)
            };
            deleted.map_err(|e| fail(format!("failed to tear down the pod network: {e}")))?;
            NetworkRecord::remove(dir)
                .map_err(|e| fail(format!("remove its network record: {e}")))?;
        }
        network::unpin(&pin).map_err(|e| fail(format!("unpin {}: {e}", pin.display())))
    }

    /// Its configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    fn monitors(&self) -> std::sync::MutexGuard<'_, Monitors> {
        lock(&self.monitors)
    }

    /// Reap the monitors of ours that ended.
    fn reap(&self) {
        self.monitors().reap();
    }

    /// Keep monitor `child` of sandbox `id` until it ends: a thread reaps
    /// the monitors while there are any, so none stays a zombie while the
    /// runtime is not asked.
    fn adopt(&self, id: String, child: Child) {
        use rustix::process::{pidfd_open, PidfdFlags};
        let pidfd = pidfd_open(
            rustix::process::Pid::from_child(&child),
            PidfdFlags::empty(),
        )
        .ok()
        .map(Arc::new);
        let mut monitors = self.monitors();
        monitors.children.insert(id, Monitor { child, pidfd });
        if monitors.wake.is_none() {
            use rustix::pipe::{pipe_with, PipeFlags};
            monitors.wake = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).ok();
        }
        if monitors.reaper {
            monitors.wake();
            return;
        }
        let shared = self.monitors.clone();
        let reaper = std::thread::Builder::new()
            .name("podrun-reap".into())
            .spawn(move || reap_monitors(&shared));
        monitors.reaper = reaper.is_ok();
    }

    fn record(&self, id: &str) -> Result<(SandboxRecord, PathBuf), ServiceError> {
        let dir = self.store.dir(id).map_err(|e| state_error("", id, e))?;
        match self.store.load(id) {
            Ok(Some(record)) => Ok((record, dir)),
            Ok(None) => Err(ServiceError::SandboxNotFound(id.into())),
            Err(e) => Err(state_error("PodSandboxStatus", id, e)),
        }
    }

    fn container(&self, id: &str) -> Result<(ContainerRecord, PathBuf), ServiceError> {
        let record = self
            .store
            .find_container(id)
            .map_err(|e| state_error("ContainerStatus", id, e))?
            .ok_or_else(|| ServiceError::ContainerNotFound(id.into()))?;
        let dir = self
            .store
            .dir(&record.sandbox_id)
            .map_err(|e| state_error("ContainerStatus", id, e))?;
        Ok((record, dir))
    }

    fn ask(
        &self,
        call: &'static str,
        what: &str,
        dir: &Path,
        request: &Request,
    ) -> Result<Response, ServiceError> {
        match monitor::request(dir, request, self.config.request_timeout) {
            Ok(Response::Error { message }) => Err(failed(call, what, message)),
            Ok(answer) => Ok(answer),
            Err(monitor::ControlError::NotListening { .. }) => Err(ServiceError::NotRunning {
                call,
                what: format!("sandbox {}", dir_id(dir)),
            }),
            Err(e) => Err(failed(call, what, e)),
        }
    }

    /// What the monitor of `dir` holds, while it runs.
    fn live(&self, dir: &Path) -> Option<Vec<monitor::ContainerState>> {
        if !monitor::monitor_alive(dir) {
            return None;
        }
        match monitor::request(dir, &Request::State, self.config.request_timeout) {
            Ok(Response::State { containers }) => Some(containers),
            _ => None,
        }
    }

    /// Make the sandbox of `record` in `dir`: cgroup, plan, monitor; wait until ready.
    fn make(&self, record: &mut SandboxRecord, dir: &Path) -> Result<(), ServiceError> {
        let id = record.id.clone();
        let what = format!("sandbox {id}");
        let plan = plan_for(
            &record.config,
            &id,
            &self.config.run_root,
            dir,
            &self.config.pause,
            &record.oci_runtime,
        );
        if let Some(path) = &plan.cgroup_parent {
            check_cgroup_parent(self.config.cgroup_driver, path)
                .map_err(|reason| failed("RunPodSandbox", &what, reason))?;
            let limits = cgroup_limits(record.config.linux.resources.as_ref());
            cgroups::create_pod_cgroup(path, &limits).map_err(|e| {
                failed(
                    "RunPodSandbox",
                    &what,
                    format!("create pod cgroup {path}: {e}"),
                )
            })?;
        }
        sandbox_files(&record.config, &plan.hostname, dir)
            .map_err(|e| failed("RunPodSandbox", &what, format!("write its /etc files: {e}")))?;
        let plan_file = dir.join("plan.json");
        plan.write(&plan_file).map_err(|e| {
            failed(
                "RunPodSandbox",
                &what,
                format!("write {}: {e}", plan_file.display()),
            )
        })?;
        // The monitor's own messages go to a file: its failure to make the
        // sandbox is read from there; the rest is for debugging.
        let log_file = dir.join("monitor.log");
        let log = std::fs::File::create(&log_file).map_err(|e| {
            failed(
                "RunPodSandbox",
                &what,
                format!("create {}: {e}", log_file.display()),
            )
        })?;
        let mut child = {
            use std::os::unix::process::CommandExt;
            Command::new(&self.config.monitor)
                .arg("--plan")
                .arg(&plan_file)
                .stdin(Stdio::null())
                // It says `ready` here once the sandbox is made.
                .stdout(Stdio::piped())
                .stderr(log)
                // A process group of its own: a terminal's Ctrl-C is the
                // caller's to handle, and the sandbox outlives the caller.
                .process_group(0)
                .spawn()
                .map_err(|e| {
                    failed(
                        "RunPodSandbox",
                        &what,
                        format!("start {}: {e}", self.config.monitor.display()),
                    )
                })?
        };
        record.monitor_pid = i32::try_from(child.id()).unwrap_or(0);
        let saved = self.store.save(record);
        let ready = saved
            .map_err(|e| state_error("RunPodSandbox", &id, e))
            .and_then(|()| self.wait_ready(&mut child, dir, &what));
        self.adopt(id, child);
        ready
    }

    /// Wait until the monitor says it is ready on its stdout (its sandbox is
    /// made then), or fails. A monitor whose stdout closed without the line is
    /// asked on its socket instead, as one that was adopted would be.
    fn wait_ready(&self, child: &mut Child, dir: &Path, what: &str) -> Result<(), ServiceError> {
        let deadline = Instant::now() + self.config.ready_timeout;
        let mut said = child.stdout.take();
        let mut heard = Vec::new();
        let mut pause = Duration::from_millis(1);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("monitor.log")).unwrap_or_default();
                let said = log
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("Error: "))
                    .unwrap_or(log.trim());
                return Err(failed(
                    "RunPodSandbox",
                    what,
                    format!("the monitor exited ({status}): {said}"),
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(failed(
                    "RunPodSandbox",
                    what,
                    format!("not ready within {:?}", self.config.ready_timeout),
                ));
            }
            if let Some(out) = &mut said {
                // Its line, or its stdout closing; the process is looked at
                // again at least every 50 ms (a grandchild may hold the pipe).
                match read_some(out, left.min(Duration::from_millis(50)), &mut heard) {
                    Ok(_) if heard.starts_with(monitor::READY.as_bytes()) => return Ok(()),
                    Ok(Some(0)) | Err(_) => said = None,
                    Ok(_) => {}
                }
                continue;
            }
            match monitor::request(dir, &Request::State, left) {
                Ok(Response::State { .. }) => return Ok(()),
                Ok(other) => {
                    return Err(failed(
                        "RunPodSandbox",
                        what,
                        format!("unexpected answer {other:?}"),
                    ))
                }
                // Not listening yet (or no more: the next turn sees it exit);
                // asked again after 1, 2, 4, 8, then every 10 ms.
                Err(_) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
            }
        }
    }

    /// Run `podrun-monitor cleanup` for the sandbox of `dir`: what a monitor
    /// that died (or was killed) left (containers, pause process, pins, cgroups).
    fn clean_up_after_monitor(&self, dir: &Path) -> Result<(), String> {
        let out = Command::new(&self.config.monitor)
            .arg("cleanup")
            .arg("--plan")
            .arg(dir.join("plan.json"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run {} cleanup: {e}", self.config.monitor.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr)
                .trim()
                .trim_start_matches("Error: ")
                .to_string())
        }
    }

    /// Make container `id` of the sandbox of `sandbox` (in `dir`) from `config`,
    /// as containerd's CreateContainer does: a fresh root filesystem over its
    /// image, its OCI spec (`podrun_oci::build`) in its bundle,
    /// `<dir>/bundles/<id>/config.json`. The error is the cause.
    fn make_container(
        &self,
        sandbox: &SandboxRecord,
        dir: &Path,
        id: &str,
        config: &ContainerConfig,
    ) -> Result<(ContainerPlan, Option<crate::api::ProcessUser>), String> {
        let image = &config.image.image;
        let image_config = self
            .images
            .run_config(image)
            .map(|c| ImageConfig::from_config_json(&c))
            .map_err(|e| format!("image {image}: {e}"))?;
        // The bundle's directory first: RemovePodSandbox finds by it a root
        // filesystem whose creation did not get as far as the record.
        let bundle = dir.join("bundles").join(id);
        std::fs::create_dir_all(&bundle)
            .map_err(|e| format!("create {}: {e}", bundle.display()))?;
        // What an earlier instance (or a failed attempt) wrote is not kept.
        self.images
            .remove_rootfs(id)
            .map_err(|e| format!("remove the old root filesystem: {e}"))?;
        let rootfs = self
            .images
            .prepare_rootfs(image, id)
            .map_err(|e| format!("root filesystem: {e}"))?;
        let users = UserFiles::read(&rootfs).map_err(|e| e.to_string())?;
        let with_files = with_sandbox_files(config, dir);
        let config = &with_files;
        let with_images;
        let config = if config.mounts.iter().any(|m| m.image.is_some()) {
            with_images = self.mount_image_volumes(id, config)?;
            &with_images
        } else {
            config
        };
        if config
            .mounts
            .iter()
            .any(|m| m.propagation != podrun_oci::cri::MountPropagation::Private)
        {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
            for m in &config.mounts {
                let source = std::fs::canonicalize(&m.host_path)
                    .map_or_else(|_| m.host_path.clone(), |p| p.display().to_string());
                podrun_oci::mounts::check_propagation(&source, m.propagation, &mountinfo)?;
            }
        }
        let host = Host::detect().map_err(|e| format!("read host facts: {e}"))?;
        // A Localhost seccomp profile is a file kubelet names by its absolute
        // path (`<kubelet root>/seccomp/<localhostProfile>`), read now.
        let localhost_profile = match &config.linux.security_context.seccomp {
            Some(p) if p.profile_type == podrun_oci::cri::ProfileType::Localhost => {
                let path = Path::new(&p.localhost_ref);
                if !path.is_absolute() {
                    return Err(format!(
                        "seccomp profile: the Localhost profile {:?} is not an absolute path",
                        p.localhost_ref
                    ));
                }
                Some(std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "seccomp profile: read the Localhost profile {}: {e}",
                        path.display()
                    )
                })?)
            }
            _ => None,
        };
        let ns = |n: Namespace| Some(dir.join("ns").join(n.name())).filter(|p| p.exists());
        let cgroup_parent = &sandbox.config.linux.cgroup_parent;
        let input = ContainerInput {
            sandbox: &sandbox.config,
            sandbox_id: Some(&sandbox.id),
            config,
            image: &image_config,
            rootfs: &rootfs,
            users: &users,
            namespaces: NamespacePaths {
                net: ns(Namespace::Net),
                ipc: ns(Namespace::Ipc),
                uts: ns(Namespace::Uts),
                pid: ns(Namespace::Pid),
            },
            cgroups_path: Some(cgroup_parent)
                .filter(|p| !p.is_empty())
                .map(|p| container_cgroup(p, &config.metadata.name, id).into()),
            seccomp_localhost_profile: localhost_profile.as_deref(),
            honor_image_group: false,
            host: &host,
        };
        let generated = podrun_oci::build(&input).map_err(|e| e.kind.to_string())?;
        let user = generated.spec.process().as_ref().map(|p| {
            let u = p.user();
            crate::api::ProcessUser {
                uid: i64::from(u.uid()),
                gid: i64::from(u.gid()),
                supplemental_groups: u
                    .additional_gids()
                    .iter()
                    .flatten()
                    .map(|g| i64::from(*g))
                    .collect(),
            }
        });
        for w in &generated.warnings {
            warn_once(w);
        }
        let spec = serde_json::to_vec_pretty(&generated.spec).map_err(|e| e.to_string())?;
        podrun_fs::write_atomic(&bundle.join("config.json"), &spec)
            .map_err(|e| format!("write the bundle: {e}"))?;
        let grace_s: u64 = config
            .annotations
            .get(GRACE_ANNOTATION)
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        Ok((
            ContainerPlan {
                id: id.into(),
                name: config.metadata.name.clone(),
                bundle,
                // No log_path: no log file (what it writes is dropped), as containerd does.
                log_path: if config.log_path.is_empty() {
                    PathBuf::new()
                } else {
                    Path::new(&sandbox.config.log_directory).join(&config.log_path)
                },
                stop_signal: generated.stop_signal,
                grace_period_ms: grace_s.saturating_mul(1000),
                stdin: config.stdin,
                stdin_once: config.stdin_once,
                tty: config.tty,
                log_rotation: config.log_rotation,
            },
            user,
        ))
    }

    /// `config` with its image mounts' images mounted (read-only, under the
    /// container's root filesystem directory, which takes them down with it)
    /// and their host paths set: kubelet pulled the images of the pod's image
    /// volumes and sends each as a mount's `image`. An `image_sub_path` must be
    /// a directory inside the image (a symbolic link may not lead out of it).
    fn mount_image_volumes(
        &self,
        id: &str,
        config: &ContainerConfig,
    ) -> Result<ContainerConfig, String> {
        let mut config = config.clone();
        for (index, m) in config.mounts.iter_mut().enumerate() {
            let Some(image) = &m.image else { continue };
            let what = format!("image volume {:?} at {}", image.image, m.container_path);
            let root = self
                .images
                .mount_image_volume(&image.image, id, index)
                .map_err(|e| format!("{what}: {e}"))?;
            let mut source = root.clone();
            if !m.image_sub_path.is_empty() {
                source = image_sub_path(&root, &m.image_sub_path)
                    .map_err(|e| format!("{what}: subPath {:?} {e}", m.image_sub_path))?;
            }
            m.host_path = source.display().to_string();
            m.readonly = true;
        }
        Ok(config)
    }

    /// The longest grace period of the sandbox's containers (30 s without any).
    fn own_grace(&self, id: &str) -> Duration {
        let ms = self
            .store
            .containers(id)
            .unwrap_or_default()
            .iter()
            .map(|c| c.plan.grace_period_ms)
            .max()
            .unwrap_or(30_000);
        Duration::from_millis(ms)
    }

    fn statuses(&self, sandbox_id: &str) -> Result<Vec<ContainerStatus>, ServiceError> {
        let dir = self
            .store
            .dir(sandbox_id)
            .map_err(|e| state_error("ListContainers", sandbox_id, e))?;
        let records = self
            .store
            .containers(sandbox_id)
            .map_err(|e| state_error("ListContainers", sandbox_id, e))?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let live = self.live(&dir);
        let plan = PodPlan::read(&dir.join("plan.json")).ok();
        Ok(records
            .iter()
            .map(|r| {
                let (start, exit) = plan.as_ref().map_or((None, None), |p| {
                    (
                        monitor::read_start(p, &r.plan.name),
                        monitor::read_exit(p, &r.plan.name),
                    )
                });
                status_of(r, live.as_deref(), start, exit)
            })
            .collect())
    }
}

impl RuntimeService for NodeRuntime {
    fn cgroup_driver(&self) -> cgroups::CgroupDriver {
        self.config.cgroup_driver
    }

    fn network_ready(&self) -> Result<(), String> {
        match &self.networks {
            // Sandboxes get a namespace with only loopback: nothing to fail.
            None => Ok(()),
            Some(networks) => networks
                .get(networks.choose())
                .ready()
                .map_err(|e| e.to_string()),
        }
    }

    fn update_container_resources(
        &self,
        id: &str,
        resources: &LinuxContainerResources,
    ) -> Result<(), ServiceError> {
        let (mut record, _) = self.container(id)?;
        let what = format!("container {id}");
        let (sandbox, _) = self.record(&record.sandbox_id)?;
        let parent = &sandbox.config.linux.cgroup_parent;
        if parent.is_empty() {
            return Err(failed(
                "UpdateContainerResources",
                &what,
                "its sandbox has no cgroup parent: the container has no cgroup of podrun's",
            ));
        }
        if self.container_status(id)?.state != ContainerState::Running {
            return Err(ServiceError::NotRunning {
                call: "UpdateContainerResources",
                what,
            });
        }
        // The container's cgroup exists: this only writes the limits into it.
        let path = container_cgroup(parent, &record.plan.name, id);
        cgroups::create_pod_cgroup(&path, &cgroup_limits(Some(resources)))
            .map_err(|e| failed("UpdateContainerResources", &what, e))?;
        record.config.linux.resources = Some(resources.clone());
        self.store
            .add_container(&record)
            .map_err(|e| state_error("UpdateContainerResources", id, e))
    }

    fn attach(&self, id: &str) -> Result<crate::api::Attached, ServiceError> {
        let (record, dir) = self.container(id)?;
        let what = format!("container {id}");
        if self.container_status(id)?.state != ContainerState::Running {
            return Err(ServiceError::NotRunning {
                call: "Attach",
                what,
            });
        }
        let request = Request::Attach {
            name: record.plan.name,
        };
        let answer = monitor::request_with_fds(&dir, &request, self.config.request_timeout);
        let (stdin, mut fds) = match answer {
            Ok((Response::Attached { stdin, terminal }, fds)) => {
                if terminal {
                    return match <[_; 2]>::try_from(fds) {
                        Ok([stdout, master]) => {
                            let master = std::fs::File::from(master);
                            Ok(crate::api::Attached {
                                stdin: stdin
                                    .then(|| master.try_clone())
                                    .transpose()
                                    .map_err(|e| failed("Attach", &what, e))?,
                                stdout: stdout.into(),
                                stderr: None,
                                terminal: Some(master),
                            })
                        }
                        Err(fds) => Err(failed(
                            "Attach",
                            &what,
                            format!("the monitor passed {} descriptors", fds.len()),
                        )),
                    };
                }
                (stdin, fds)
            }
            Ok((Response::Error { message }, _)) => return Err(failed("Attach", &what, message)),
            Ok((other, _)) => {
                return Err(failed(
                    "Attach",
                    &what,
                    format!("unexpected answer {other:?}"),
                ))
            }
            Err(monitor::ControlError::NotListening { .. }) => {
                return Err(ServiceError::NotRunning {
                    call: "Attach",
                    what,
                })
            }
            Err(e) => return Err(failed("Attach", &what, e)),
        };
        if fds.len() != 2 + usize::from(stdin) {
            return Err(failed(
                "Attach",
                &what,
                format!("the monitor passed {} descriptors", fds.len()),
            ));
        }
        let stdin = stdin.then(|| std::fs::File::from(fds.remove(2)));
        let stderr = std::fs::File::from(fds.remove(1));
        let stdout = std::fs::File::from(fds.remove(0));
        Ok(crate::api::Attached {
            stdin,
            stdout,
            stderr: Some(stderr),
            terminal: None,
        })
    }

    fn reopen_container_log(&self, id: &str) -> Result<(), ServiceError> {
        let (record, dir) = self.container(id)?;
        let what = format!("container {id}");
        if self.container_status(id)?.state != ContainerState::Running {
            return Err(ServiceError::NotRunning {
                call: "ReopenContainerLog",
                what,
            });
        }
        let request = Request::ReopenLog {
            name: record.plan.name,
        };
        match self.ask("ReopenContainerLog", &what, &dir, &request)? {
            Response::Ok => Ok(()),
            other => Err(failed(
                "ReopenContainerLog",
                &what,
                format!("unexpected answer {other:?}"),
            )),
        }
    }

    fn container_stats(&self, id: &str) -> Result<crate::api::ContainerStats, ServiceError> {
        let (record, _) = self.container(id)?;
        let (sandbox, _) = self.record(&record.sandbox_id)?;
        let parent = &sandbox.config.linux.cgroup_parent;
        let usage = if parent.is_empty() {
            crate::stats::Usage::default()
        } else {
            crate::stats::cgroup_usage(&container_cgroup(parent, &record.plan.name, id))
        };
        let writable_layer = self.images.rootfs.upper_dir(id).ok().and_then(|dir| {
            crate::stats::tree_usage(&dir).map(|(bytes, inodes)| (dir, bytes, inodes))
        });
        Ok(crate::api::ContainerStats {
            id: id.into(),
            timestamp_ns: now_nanos(),
            usage,
            writable_layer,
        })
    }

    fn pod_sandbox_stats(&self, id: &str) -> Result<crate::api::SandboxStats, ServiceError> {
        let (record, _) = self.record(id)?;
        let parent = &record.config.linux.cgroup_parent;
        Ok(crate::api::SandboxStats {
            id: id.into(),
            timestamp_ns: now_nanos(),
            usage: if parent.is_empty() {
                crate::stats::Usage::default()
            } else {
                crate::stats::cgroup_usage(parent)
            },
        })
    }

    fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String, ServiceError> {
        let oci_runtime = self.config.oci_runtime(runtime_handler)?;
        let id = state::sandbox_id_for(&config.metadata);
        let mut record = SandboxRecord {
            id: id.clone(),
            config: config.clone(),
            runtime_handler: runtime_handler.into(),
            oci_runtime,
            created_at: now_rfc3339_nano(),
            monitor_pid: 0,
        };
        let dir = self
            .store
            .create(&record)
            .map_err(|e| state_error("RunPodSandbox", &id, e))?;
        let made = self
            .make(&mut record, &dir)
            .and_then(|()| self.attach(&record, &dir));
        if let Err(e) = made {
            if let Err(left) = self.remove_pod_sandbox(&id) {
                let cause = match e {
                    ServiceError::Failed { cause, .. } => cause,
                    other => other.to_string(),
                };
                return Err(failed(
                    "RunPodSandbox",
                    &format!("sandbox {id}"),
                    format!("{cause}; and removing it: {left}"),
                ));
            }
            return Err(e);
        }
        Ok(id)
    }

    fn stop_pod_sandbox(&self, id: &str, grace: Option<Duration>) -> Result<(), ServiceError> {
        let (_, dir) = self.record(id)?;
        let what = format!("sandbox {id}");
        if let Some(pid) = monitor_of(&dir).and_then(rustix::process::Pid::from_raw) {
            use rustix::process::{kill_process, Signal};
            let now = grace.is_some_and(|g| g.is_zero());
            // SIGTERM: the monitor stops each container within its grace
            // period, deletes them and ends the sandbox.
            let _ = kill_process(pid, if now { Signal::KILL } else { Signal::TERM });
            let started = Instant::now();
            let deadline = started + self.own_grace(id) + Duration::from_secs(15);
            let mut exit = ExitWait::new(pid);
            let mut killed = now;
            while monitor_of(&dir).is_some() {
                let mut until = deadline;
                if let Some(g) = grace.filter(|_| !killed) {
                    if started.elapsed() >= g {
                        let _ = kill_process(pid, Signal::KILL);
                        killed = true;
                    } else {
                        until = until.min(started + g);
                    }
                }
                if Instant::now() >= deadline {
                    return Err(failed(
                        "StopPodSandbox",
                        &what,
                        format!(
                            "its monitor (pid {}) did not exit within the grace period",
                            pid.as_raw_nonzero()
                        ),
                    ));
                }
                self.reap();
                exit.wait_until(until);
            }
        }
        self.reap();
        // A monitor that was killed (or died) left its sandbox: the pins
        // under `ns/` go with a monitor that ended as it should.
        if dir.join("ns").exists() && dir.join("plan.json").exists() {
            self.clean_up_after_monitor(&dir)
                .map_err(|e| failed("StopPodSandbox", &what, e))?;
        }
        // The containers are stopped: the network goes (containerd's order).
        self.detach(id, &dir)
    }

    fn remove_pod_sandbox(&self, id: &str) -> Result<(), ServiceError> {
        let dir = self
            .store
            .dir(id)
            .map_err(|e| state_error("RemovePodSandbox", id, e))?;
        if !dir.exists() {
            return Ok(());
        }
        let mut errors = Vec::new();
        let record = self.store.load(id).unwrap_or_else(|e| {
            errors.push(e.to_string());
            None
        });
        if record.is_some() {
            if let Err(e) = self.stop_pod_sandbox(id, Some(Duration::ZERO)) {
                errors.push(e.to_string());
            }
        } else if let Some(pid) = monitor_of(&dir) {
            // No record to go by (half made): its monitor still ends first.
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            errors.push(format!("sandbox {id}: its record is missing"));
            if let Err(e) = self.detach(id, &dir) {
                errors.push(e.to_string());
            }
        }
        if NetworkRecord::load(&dir).ok().flatten().is_some() {
            // Its network is still attached: the directory keeps the record
            // (and the pin) for the next RemovePodSandbox to DEL again.
            errors.push(format!(
                "sandbox {id}: kept until its pod network is torn down"
            ));
            return Err(ServiceError::Several {
                call: "RemovePodSandbox",
                id: id.into(),
                errors,
            });
        }
        // Its containers' root filesystems: of the records, and of bundles
        // whose creation stopped before the record.
        let mut ids: std::collections::BTreeSet<String> = self
            .store
            .containers(id)
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.plan.id)
            .collect();
        ids.extend(
            std::fs::read_dir(dir.join("bundles"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(String::from)),
        );
        for c in ids {
            if let Err(e) = self.images.remove_rootfs(&c) {
                errors.push(format!("container {c}: {e}"));
            }
        }
        let cgroup = record
            .as_ref()
            .map(|r| r.config.linux.cgroup_parent.clone())
            .filter(|p| !p.is_empty());
        if let Some(cgroup) = cgroup {
            if let Err(e) = cgroups::remove_pod_cgroup(&cgroup) {
                errors.push(format!("cgroup {cgroup}: {e}"));
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            errors.push(format!("remove {}: {e}", dir.display()));
        }
        self.monitors().children.remove(id);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Several {
                call: "RemovePodSandbox",
                id: id.into(),
                errors,
            })
        }
    }

    fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus, ServiceError> {
        self.reap();
        let (record, dir) = self.record(id)?;
        let sandbox = summary(&record, monitor::monitor_alive(&dir));
        let namespaces = if sandbox.state == SandboxState::Ready {
            [
                Namespace::Net,
                Namespace::Ipc,
                Namespace::Uts,
                Namespace::Pid,
            ]
            .into_iter()
            .map(|ns| (ns.name().to_string(), dir.join("ns").join(ns.name())))
            .filter(|(_, path)| path.exists())
            .collect()
        } else {
            BTreeMap::new()
        };
        let ips = NetworkRecord::load(&dir)
            .ok()
            .flatten()
            .and_then(|net| net.status)
            .map(|status| status.ips)
            .unwrap_or_default();
        Ok(PodSandboxStatus {
            monitor_pid: monitor::monitor_pid(&dir),
            config: record.config,
            sandbox,
            namespaces,
            ips,
        })
    }

    fn list_pod_sandbox(&self, filter: &PodSandboxFilter) -> Result<Vec<PodSandbox>, ServiceError> {
        self.reap();
        let ids = self
            .store
            .ids()
            .map_err(|e| state_error("ListPodSandbox", "", e))?;
        let mut found = Vec::new();
        for id in ids {
            if filter.id.as_ref().is_some_and(|f| *f != id) {
                continue;
            }
            let Ok(dir) = self.store.dir(&id) else {
                continue;
            };
            let record = match self.store.load(&id) {
                Ok(Some(r)) => r,
                // Half made (its maker died between the directory and the
                // record): listed so that it can be removed.
                Ok(None) => SandboxRecord {
                    id: id.clone(),
                    config: PodSandboxConfig::default(),
                    runtime_handler: String::new(),
                    oci_runtime: String::new(),
                    created_at: String::new(),
                    monitor_pid: 0,
                },
                Err(e) => {
                    tracing::warn!("sandbox {id}: {e}");
                    continue;
                }
            };
            let sandbox = summary(&record, monitor::monitor_alive(&dir));
            if filter.matches(&sandbox) {
                found.push(sandbox);
            }
        }
        found.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(found)
    }

    fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String, ServiceError> {
        let (sandbox, dir) = self.record(sandbox_id)?;
        let name = &config.metadata.name;
        if name.is_empty() {
            return Err(failed(
                "CreateContainer",
                &format!("sandbox {sandbox_id}"),
                "the config names no container",
            ));
        }
        let id = state::container_id_for(sandbox_id, name, config.metadata.attempt);
        let what = format!("container {id}");
        if !monitor::monitor_alive(&dir) {
            return Err(ServiceError::NotRunning {
                call: "CreateContainer",
                what: format!("sandbox {sandbox_id}"),
            });
        }
        if let Some(other) = self
            .store
            .find_container(&id)
            .map_err(|e| state_error("CreateContainer", &id, e))?
        {
            if other.sandbox_id != sandbox_id || other.plan.name != *name {
                return Err(failed(
                    "CreateContainer",
                    &what,
                    format!(
                        "the ID is container {} of sandbox {}",
                        other.plan.name, other.sandbox_id
                    ),
                ));
            }
        }
        let (container, user) = match self.make_container(&sandbox, &dir, &id, config) {
            Ok(made) => made,
            Err(cause) => {
                // Nothing of a container that could not be made is kept.
                let _ = self.images.remove_rootfs(&id);
                return Err(failed("CreateContainer", &what, cause));
            }
        };
        let record = ContainerRecord {
            sandbox_id: sandbox_id.into(),
            plan: container.clone(),
            created_at: now_rfc3339_nano(),
            config: config.clone(),
            image_ref: self
                .images
                .get(&config.image.image)
                .map(|r| r.id.to_string())
                .unwrap_or_default(),
            user,
        };
        self.store
            .add_container(&record)
            .map_err(|e| state_error("CreateContainer", &id, e))?;
        Ok(id)
    }

    fn start_container(&self, id: &str) -> Result<Started, ServiceError> {
        let (record, dir) = self.container(id)?;
        let what = format!("container {id}");
        let request = Request::Start {
            container: record.plan,
        };
        match self.ask("StartContainer", &what, &dir, &request)? {
            Response::Started { started_at, .. } => Ok(Started::Running { started_at }),
            Response::StartFailed { message } => Ok(Started::Failed { message }),
            other => Err(failed(
                "StartContainer",
                &what,
                format!("unexpected answer {other:?}"),
            )),
        }
    }

    fn stop_container(&self, id: &str, grace: Option<Duration>) -> Result<(), ServiceError> {
        let (record, dir) = self.container(id)?;
        let what = format!("container {id}");
        let current = self
            .live(&dir)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.id == id && c.running);
        if !current {
            return Ok(());
        }
        let request = Request::Stop {
            name: record.plan.name,
            signal: None,
            grace_period_ms: grace.map(|g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX)),
        };
        match self.ask("StopContainer", &what, &dir, &request)? {
            Response::Ok => Ok(()),
            other => Err(failed(
                "StopContainer",
                &what,
                format!("unexpected answer {other:?}"),
            )),
        }
    }

    fn remove_container(&self, id: &str) -> Result<(), ServiceError> {
        let what = format!("container {id}");
        let (record, dir) = match self.container(id) {
            Ok(found) => found,
            // Records are in the run root, root filesystems in the root: after
            // a reboot, the root filesystem of a container the runtime no
            // longer knows is still there, and its removal is still owed.
            Err(ServiceError::ContainerNotFound(_)) => {
                return self
                    .images
                    .remove_rootfs(id)
                    .map_err(|e| failed("RemoveContainer", &what, e));
            }
            Err(e) => return Err(e),
        };
        // The monitor knows containers by name: ask only when the one of
        // that name is this one.
        let held = self
            .live(&dir)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.id == id);
        if held {
            let request = Request::Remove {
                name: record.plan.name.clone(),
            };
            self.ask("RemoveContainer", &what, &dir, &request)?;
        }
        self.images
            .remove_rootfs(id)
            .map_err(|e| failed("RemoveContainer", &what, e))?;
        self.store
            .remove_container(&record.sandbox_id, id)
            .map_err(|e| state_error("RemoveContainer", id, e))
    }

    fn container_status(&self, id: &str) -> Result<ContainerStatus, ServiceError> {
        let (record, _) = self.container(id)?;
        self.statuses(&record.sandbox_id)?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| ServiceError::ContainerNotFound(id.into()))
    }

    fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> Result<Vec<ContainerStatus>, ServiceError> {
        let sandboxes = match &filter.sandbox_id {
            Some(id) => vec![id.clone()],
            None => self
                .store
                .ids()
                .map_err(|e| state_error("ListContainers", "", e))?,
        };
        let mut found = Vec::new();
        for sandbox in sandboxes {
            found.extend(
                self.statuses(&sandbox)?
                    .into_iter()
                    .filter(|c| filter.matches(c)),
            );
        }
        Ok(found)
    }

    fn exec(&self, id: &str, cmd: &[String], tty: bool) -> Result<Command, ServiceError> {
        let (_, dir) = self.container(id)?;
        let what = format!("container {id}");
        if cmd.is_empty() {
            return Err(failed("Exec", &what, "no command"));
        }
        if self.container_status(id)?.state != ContainerState::Running {
            return Err(ServiceError::NotRunning { call: "Exec", what });
        }
        let mut command = Command::new(&self.config.monitor);
        command
            .arg("exec")
            .arg("--plan")
            .arg(dir.join("plan.json"))
            .arg("--id")
            .arg(id);
        if tty {
            command.arg("--tty");
        }
        command.arg("--").args(cmd);
        Ok(command)
    }

    fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResult, ServiceError> {
        let (_, dir) = self.container(id)?;
        let what = format!("container {id}");
        if cmd.is_empty() {
            return Err(failed("ExecSync", &what, "no command"));
        }
        if self.container_status(id)?.state != ContainerState::Running {
            return Err(ServiceError::NotRunning {
                call: "ExecSync",
                what,
            });
        }
        let mut child = {
            use std::os::unix::process::CommandExt;
            Command::new(&self.config.monitor)
                .arg("exec")
                .arg("--plan")
                .arg(dir.join("plan.json"))
                .arg("--id")
                .arg(id)
                .arg("--")
                .args(cmd)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Its own group: a timeout kills the command with it.
                .process_group(0)
                .spawn()
                .map_err(|e| failed("ExecSync", &what, e))?
        };
        let reader = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut out);
                }
                out
            })
        };
        let stdout = reader(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = reader(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = Instant::now() + timeout;
        // Polled with a back-off: 1 ms (a probe's `cat` ends at once) to 50 ms.
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Ok(None) => {
                    // The command runs as a child of this one (its subreaper)
                    // in a session of its own: kill it and what it started
                    // first, then the group.
                    kill_tree(child.id() as i32);
                    // The helper reaps what it ran and exits: let it (killed
                    // first, its killed child would be left a zombie of the
                    // container's init, which need not reap it).
                    let reaped = Instant::now() + Duration::from_secs(2);
                    let mut ended = false;
                    while Instant::now() < reaped {
                        if !matches!(child.try_wait(), Ok(None)) {
                            ended = true;
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    if !ended {
                        if let Some(group) = rustix::process::Pid::from_raw(child.id() as i32) {
                            let _ = rustix::process::kill_process_group(
                                group,
                                rustix::process::Signal::KILL,
                            );
                        }
                        let _ = child.wait();
                    }
                    return Err(ServiceError::ExecTimeout {
                        id: id.into(),
                        cmd: cmd.to_vec(),
                        timeout,
                    });
                }
                Err(e) => return Err(failed("ExecSync", &what, e)),
            }
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        use std::os::unix::process::ExitStatusExt;
        let exit_code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(128 + 9);
        Ok(ExecSyncResult {
            stdout,
            stderr,
            exit_code,
        })
    }
}

/// The pid of the monitor of the sandbox in `dir` while it runs: the one
/// that holds its lock, or one started whose lock is not taken yet (its
/// starter may have died before recording it), found by its plan in its
/// command line.
/// The path of `sub` in the image mounted at `root`, which must exist there:
/// a relative path without `..`, and no symbolic link in it may lead out of
/// the image (resolved, it is still below `root`).
fn image_sub_path(root: &Path, sub: &str) -> Result<PathBuf, &'static str> {
    let relative = Path::new(sub)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !relative {
        return Err("must be a relative path without '..'");
    }
    let root = std::fs::canonicalize(root).map_err(|_| "cannot be resolved")?;
    match std::fs::canonicalize(root.join(sub)) {
        Err(_) => Err("does not exist in the image"),
        Ok(p) if !p.starts_with(&root) => Err("leads out of the image"),
        Ok(p) => Ok(p),
    }
}

fn monitor_of(dir: &Path) -> Option<i32> {
    if let Some(pid) = monitor::monitor_pid(dir) {
        return Some(pid);
    }
    // A monitor that wrote its pid in the lock ran and has ended (a sandbox
    // has one monitor, started once): no other can be starting.
    let recorded = std::fs::read_to_string(dir.join(monitor::control::LOCK)).unwrap_or_default();
    if recorded.trim().parse::<i32>().is_ok() {
        return None;
    }
    let plan = dir.join("plan.json");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let running = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            });
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            // `podrun-monitor --plan FILE`, not its `cleanup` or `exec`.
            running
                && args.get(1) == Some(&b"--plan".as_slice())
                && args
                    .get(2)
                    .is_some_and(|a| Path::new(std::ffi::OsStr::from_bytes(a)) == plan)
        })
}

/// Waits for a process (not necessarily a child) to end: a pidfd turns
/// readable when it does, so the wait wakes at its exit instead of polling;
/// kernels before 5.3 have no pidfd, and there it backs off from 1 ms to 20.
struct ExitWait {
    pidfd: Option<OwnedFd>,
    pause: Duration,
}

impl ExitWait {
    fn new(pid: rustix::process::Pid) -> Self {
        use rustix::process::{pidfd_open, PidfdFlags};
        Self {
            pidfd: pidfd_open(pid, PidfdFlags::empty()).ok(),
            pause: Duration::from_millis(1),
        }
    }

    /// Return when the process has ended or at `until`, whichever is first
    /// (or, without a pidfd, after the next pause of the back-off).
    fn wait_until(&mut self, until: Instant) {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let left = until.saturating_duration_since(Instant::now());
        match &self.pidfd {
            Some(pidfd) => {
                let timeout = Timespec {
                    tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
                    tv_nsec: left.subsec_nanos().into(),
                };
                let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
                let _ = poll(&mut fds, Some(&timeout));
            }
            None => {
                std::thread::sleep(self.pause.min(left));
                self.pause = (self.pause * 2).min(Duration::from_millis(20));
            }
        }
    }
}

/// The annotation kubelet gives a container with its pod's grace period
/// (pkg/kubelet/kuberuntime/labels.go).
pub const GRACE_ANNOTATION: &str = "io.kubernetes.pod.terminationGracePeriod";

/// Log a warning about this node (the rlimit clamp: the same for every
/// container) once per process, not once per container; whether it was said now.
fn warn_once(warning: &str) -> bool {
    static SAID: Mutex<Option<std::collections::HashSet<String>>> = Mutex::new(None);
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    let new = said
        .get_or_insert_with(Default::default)
        .insert(warning.to_string());
    if new {
        tracing::warn!("{warning} (said once)");
    }
    new
}

/// Whether `cgroup_parent` has the form `driver` needs: a slice name for systemd
/// (kubelet's `kubepods-burstable-pod<uid>.slice`), an absolute path for
/// cgroupfs. containerd refuses a mismatch likewise: a slice name taken as a
/// directory would make a cgroup systemd does not know of. The error is the cause.
pub fn check_cgroup_parent(
    driver: cgroups::CgroupDriver,
    cgroup_parent: &str,
) -> Result<(), String> {
    let systemd_form = cgroups::systemd::is_systemd_path(cgroup_parent);
    match driver {
        cgroups::CgroupDriver::Systemd if !cgroup_parent.ends_with(".slice") || cgroup_parent.contains(':') => Err(format!(
            "cgroup parent {cgroup_parent:?}: the systemd cgroup driver needs a slice name (like kubepods-burstable-pod<uid>.slice); is kubelet's cgroupDriver cgroupfs?"
        )),
        cgroups::CgroupDriver::Cgroupfs if systemd_form => Err(format!(
            "cgroup parent {cgroup_parent:?} is a systemd slice, but podrun's cgroup driver is cgroupfs (set cgroup_driver = \"systemd\" in podrun's config)"
        )),
        _ => Ok(()),
    }
}

/// The cgroup of container `name` (ID `id`) in pod cgroup `parent`:
/// `<parent>/<name>` with cgroupfs, the scope `<parent>:podrun:<id>` with
/// systemd (containerd's `<slice>:cri-containerd:<id>`).
pub fn container_cgroup(parent: &str, name: &str, id: &str) -> String {
    if cgroups::systemd::is_systemd_path(parent) {
        cgroups::systemd::container_cgroups_path(parent, id)
    } else {
        format!("{parent}/{name}")
    }
}

/// The monitor's plan for sandbox `id` of `config`.
fn plan_for(
    config: &PodSandboxConfig,
    id: &str,
    run_root: &Path,
    dir: &Path,
    pause: &Path,
    oci_runtime: &str,
) -> PodPlan {
    let ns = &config.linux.security_context.namespace_options;
    // No hostname asked for: the node's, as containerd does (a pod's name can
    // be longer than the 64 bytes a hostname may have).
    let hostname = if config.hostname.is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default()
    } else {
        config.hostname.clone()
    };
    PodPlan {
        pod_id: id.into(),
        run_root: run_root.to_path_buf(),
        run_dir: dir.to_path_buf(),
        pause: pause.to_path_buf(),
        runtime: oci_runtime.into(),
        hostname,
        host_network: ns.network == NamespaceMode::Node,
        share_pid: ns.pid == NamespaceMode::Pod,
        cgroup_parent: Some(config.linux.cgroup_parent.clone()).filter(|p| !p.is_empty()),
        containers: Vec::new(),
    }
}

/// The pod cgroup's limits from the sandbox's `linux.resources` (zero:
/// unset). CRI has no pod PID limit of its own: `unified["pids.max"]` sets it.
fn cgroup_limits(resources: Option<&LinuxContainerResources>) -> CgroupLimits {
    let Some(r) = resources else {
        return CgroupLimits::default();
    };
    let positive = |v: i64| (v > 0).then_some(v);
    CgroupLimits {
        cpu_shares: u64::try_from(r.cpu_shares).unwrap_or(0),
        cpu_quota: positive(r.cpu_quota),
        cpu_period: u64::try_from(r.cpu_period).unwrap_or(0),
        memory_limit: positive(r.memory_limit_in_bytes),
        pids_limit: r
            .unified
            .get("pids.max")
            .and_then(|v| v.parse().ok())
            .and_then(positive),
    }
}

/// What ListPodSandbox says of a sandbox whose monitor runs (`ready`) or not.
fn summary(record: &SandboxRecord, ready: bool) -> PodSandbox {
    PodSandbox {
        id: record.id.clone(),
        metadata: record.config.metadata.clone(),
        state: if ready {
            SandboxState::Ready
        } else {
            SandboxState::NotReady
        },
        created_at: record.created_at.clone(),
        labels: record.config.labels.clone(),
        annotations: record.config.annotations.clone(),
        runtime_handler: record.runtime_handler.clone(),
    }
}

/// A container's status from what its monitor holds (`live`, while it
/// runs), else from the records it wrote of the container's start and exit.
fn status_of(
    record: &ContainerRecord,
    live: Option<&[monitor::ContainerState]>,
    start: Option<monitor::StartRecord>,
    exit: Option<monitor::ExitRecord>,
) -> ContainerStatus {
    let mut status = ContainerStatus {
        id: record.plan.id.clone(),
        sandbox_id: record.sandbox_id.clone(),
        name: record.plan.name.clone(),
        state: ContainerState::Created,
        created_at: record.created_at.clone(),
        started_at: String::new(),
        finished_at: String::new(),
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        pid: None,
        restarts: 0,
        log_path: record.plan.log_path.clone(),
        log_lines_dropped: 0,
        config: record.config.clone(),
        image_ref: record.image_ref.clone(),
        user: record.user.clone(),
    };
    let ended = |status: &mut ContainerStatus, exit: monitor::ExitRecord| {
        status.state = ContainerState::Exited;
        status.started_at = exit.started_at;
        status.finished_at = exit.finished_at;
        status.exit_code = exit.exit_code;
        status.reason = exit.reason;
        status.message = exit.message.unwrap_or_default();
    };
    match live {
        Some(live) => {
            // The monitor knows the container of each name it started last.
            let Some(c) = live
                .iter()
                .find(|c| c.id == record.plan.id && c.name == record.plan.name)
            else {
                return status; // created, not started (again) yet
            };
            status.restarts = c.restarts;
            status.log_lines_dropped = c.log_lines_dropped;
            match &c.exit {
                Some(exit) if !c.running => ended(&mut status, exit.clone()),
                _ => {
                    status.state = ContainerState::Running;
                    status.started_at = c.started_at.clone();
                    status.pid = Some(c.pid).filter(|p| *p > 0);
                }
            }
        }
        None => {
            let start = start.filter(|s| s.id == record.plan.id);
            let exit = exit.filter(|e| e.id == record.plan.id);
            match (start, exit) {
                (Some(s), Some(e)) if e.started_at == s.started_at => ended(&mut status, e),
                // A start the runtime could not make has its exit record only.
                (None, Some(e)) if e.started_at.is_empty() => ended(&mut status, e),
                (Some(s), _) => {
                    // Started, and its monitor ended without recording its end.
                    status.state = ContainerState::Unknown;
                    status.started_at = s.started_at;
                }
                _ => {}
            }
        }
    }
    status
}

fn failed(call: &'static str, what: &str, cause: impl std::fmt::Display) -> ServiceError {
    ServiceError::Failed {
        call,
        what: what.into(),
        cause: cause.to_string(),
    }
}

/// The sandbox's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`, in its
/// directory, as containerd writes them (sandbox_run_linux.go
/// `setupSandboxFiles`): the hostname; the node's hosts file; a resolv.conf of
/// the DNS config kubelet sends (`search`, `nameserver` lines, `options`), or
/// the node's when it sends none. A container gets each unless its config
/// mounts that path itself ([`with_sandbox_files`]): the pod manager brings
/// its own (kubelet's rules), a kubelet brings /etc/hosts.
fn sandbox_files(config: &PodSandboxConfig, hostname: &str, dir: &Path) -> std::io::Result<()> {
    let files = dir.join("etc");
    std::fs::create_dir_all(&files)?;
    // Plain writes: the run root does not outlive a reboot, and nothing reads
    // these before the sandbox is made.
    std::fs::write(files.join("hostname"), format!("{hostname}\n"))?;
    let hosts = std::fs::read("/etc/hosts").unwrap_or_default();
    std::fs::write(files.join("hosts"), hosts)?;
    let resolv = match &config.dns_config {
        Some(d) if !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()) => {
            let mut text = String::new();
            if !d.searches.is_empty() {
                text += &format!("search {}\n", d.searches.join(" "));
            }
            for server in &d.servers {
                text += &format!("nameserver {server}\n");
            }
            if !d.options.is_empty() {
                text += &format!("options {}\n", d.options.join(" "));
            }
            text.into_bytes()
        }
        _ => std::fs::read("/etc/resolv.conf").unwrap_or_default(),
    };
    std::fs::write(files.join("resolv.conf"), resolv)
}

/// `config` with the sandbox's /etc files ([`sandbox_files`]) mounted where it
/// mounts nothing itself; read-only with a read-only root filesystem, as
/// containerd mounts them.
fn with_sandbox_files(config: &ContainerConfig, dir: &Path) -> ContainerConfig {
    let mut config = config.clone();
    let readonly = config.linux.security_context.readonly_rootfs;
    for name in ["hostname", "hosts", "resolv.conf"] {
        let target = format!("/etc/{name}");
        let source = dir.join("etc").join(name);
        if source.exists() && !config.mounts.iter().any(|m| m.container_path == target) {
            config.mounts.push(crate::Mount {
                container_path: target,
                host_path: source.to_string_lossy().into_owned(),
                readonly,
                ..Default::default()
            });
        }
    }
    config
}

/// SIGKILL `pid`'s descendants (found by `/proc/<pid>/task/*/children`),
/// deepest first, then `pid`'s own children are gone before it is. (An exec
/// whose caller gave up: the helper then reaps what it ran and exits.)
pub fn kill_tree(pid: i32) {
    let mut children = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                children.extend(
                    text.split_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok()),
                );
            }
        }
    }
    for child in children {
        kill_tree(child);
        if let Some(p) = rustix::process::Pid::from_raw(child) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

fn state_error(call: &'static str, id: &str, e: StateError) -> ServiceError {
    let call = if call.is_empty() { "find" } else { call };
    match e {
        StateError::InvalidId { kind, id } => {
            return ServiceError::Invalid {
                call,
                what: format!("{kind} {id:?}"),
                cause: "invalid ID".into(),
            }
        }
        StateError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
            return ServiceError::Exists {
                call,
                what: id.into(),
            }
        }
        _ => {}
    }
    ServiceError::Failed {
        call,
        what: id.into(),
        cause: e.to_string(),
    }
}

fn lock(monitors: &Mutex<Monitors>) -> std::sync::MutexGuard<'_, Monitors> {
    monitors.lock().unwrap_or_else(|e| e.into_inner())
}

fn dir_id(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Wait up to `timeout` for `pipe` to be readable and append what it has to
/// `buf`: `Some(n)` bytes read (0: closed), `None` if nothing came in time.
fn read_some(
    pipe: &mut std::process::ChildStdout,
    timeout: Duration,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use std::io::Read;
    let mut fds = [PollFd::new(&*pipe, PollFlags::IN)];
    let timeout = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: 0,
        tv_nsec: 50_000_000,
    });
    if poll(&mut fds, Some(&timeout))? == 0 {
        return Ok(None);
    }
    let mut chunk = [0u8; 64];
    let n = pipe.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(Some(n))
}

#[cfg(test)]
mod tests;
