//! The per-pod monitor (conmon's or containerd-shim's role, one per pod): a
//! single-threaded process that creates the pod's sandbox, creates its
//! containers through an [`OciBackend`], is the child-subreaper of their
//! processes, copies their stdout and stderr into CRI log files, records each
//! exit durably, and on SIGTERM (or a [`Request::Shutdown`]) stops, deletes
//! and cleans up everything it made.
//!
//! A pod manager (the node agent, or `podrun run` in the foreground) drives
//! it: the monitor starts, stops and removes single containers when asked on
//! its control socket ([`control`]: [`Request`], [`Response`], [`request`]),
//! and keeps the sandbox when every container has exited, until it is told to
//! stop. Every monitor holds `<run dir>/monitor.lock` for its whole life
//! ([`monitor_alive`]) and serves the socket (`<run dir>/monitor.sock`).
//!
//! The monitor **creates** the sandbox: the caller writes the plan, whose
//! namespace paths ([`PodPlan::ns_path`]) are known before the pause process
//! exists, so the bundles of the containers it asks for later join them; then
//! it starts `podrun-monitor --plan FILE`. So the pause process is the
//! monitor's child and dies with the pod. Once the sandbox is made, the
//! monitor writes [`READY`] on its stdout and puts `/dev/null` there instead:
//! a caller that gave it a pipe waits for that line, not by asking the socket
//! again and again.
//!
//! Run [`run_monitor`] only in a process of its own with one thread: the backend
//! forks, and the monitor blocks SIGCHLD, SIGTERM and SIGINT for itself.

mod backend;
mod cgroup;
mod console;
pub mod control;
mod embedded;
mod forked;
pub mod log;
mod recover;

pub use backend::{BackendError, ContainerIo, ExecFailure, OciBackend, OciCli};
pub use console::ConsoleError;
pub use control::{
    monitor_alive, monitor_pid, request, request_with_fds, ContainerState, ControlError, Request,
    Response,
};
pub use embedded::{Embedded, EmbeddedError};
pub use forked::ForkedError;
pub use recover::clean_up_after;

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sandbox::{Namespace, Sandbox, SandboxConfig};
use cgroup::{oom_file, remove_plan_cgroups, PodOomKills};
use control::{MonitorLock, Server};
use log::{now_rfc3339_nano, LogFile, LogStream};

/// How long the logs are still read after the last container exited when the
/// pod stops, for output held by processes that outlived their container's init.
const DRAIN: Duration = Duration::from_secs(2);

/// Everything the monitor of one pod needs (written by the caller as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodPlan {
    /// The pod's ID; also the sandbox's.
    pub pod_id: String,
    /// `--run-root`: the sandbox lives in `sandboxes/<pod_id>`, the OCI
    /// runtime's state in `libcontainer` (embedded) or `<runtime name>` (CLI).
    pub run_root: PathBuf,
    /// The pod's runtime directory: exit records go to `exits/<name>.json`.
    pub run_dir: PathBuf,
    /// The `podrun-pause` binary.
    pub pause: PathBuf,
    /// The OCI runtime: `embedded` (libcontainer in the monitor, the default),
    /// or the CLI of one that speaks runc's dialect: a name on PATH (`crun`,
    /// `runc`) or an absolute path.
    #[serde(default = "default_runtime")]
    pub runtime: String,
    /// The pod's hostname.
    pub hostname: String,
    /// `hostNetwork: true`.
    #[serde(default)]
    pub host_network: bool,
    /// `shareProcessNamespace: true`.
    #[serde(default)]
    pub share_pid: bool,
    /// The pod's cgroup (`/podrun/<pod>`, or a systemd slice name), which the
    /// containers' cgroups are under: removed from every hierarchy (the slice
    /// stopped) at the end.
    pub cgroup_parent: Option<String>,
    /// The containers made for the pod, as its pod manager keeps them (the
    /// files that read a pod's records fill this in). Empty in the plan a
    /// monitor runs: it starts each container when asked ([`Request::Start`]).
    #[serde(default)]
    pub containers: Vec<ContainerPlan>,
}

/// [`PodPlan::runtime`]'s name for libcontainer in the monitor.
pub const EMBEDDED: &str = "embedded";

fn default_runtime() -> String {
    EMBEDDED.into()
}

/// One container of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPlan {
    /// The runtime's container ID.
    pub id: String,
    /// The container's name in the pod (names its exit record).
    pub name: String,
    /// The OCI bundle (config.json written; `root.path` mounted).
    pub bundle: PathBuf,
    /// The CRI log file (appended to).
    pub log_path: PathBuf,
    /// The signal that asks it to stop.
    pub stop_signal: i32,
    /// How long it may take to stop before SIGKILL, in milliseconds.
    pub grace_period_ms: u64,
    /// Its stdin is a pipe the monitor keeps open for attaching (CRI
    /// `stdin`); otherwise /dev/null.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// Its stdin closes after the first attach that took it (CRI
    /// `stdin_once`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin_once: bool,
    /// It runs on a terminal (CRI `tty`, OCI `process.terminal`): the runtime
    /// hands the monitor the pseudo-terminal's master, whose output is the
    /// container's stdout and whose input is its stdin.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// The monitor rotates the log itself by this policy (podrun's pod
    /// manager); `None`: it never does (under the CRI kubelet rotates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_rotation: Option<crate::LogRotation>,
}

impl PodPlan {
    /// Read a plan from a JSON file. (The `"managed": true` of plans written
    /// before every monitor was managed is ignored.)
    pub fn read(path: &Path) -> Result<Self, MonitorError> {
        let text = std::fs::read(path).map_err(|e| step("", "read plan", e))?;
        serde_json::from_slice(&text).map_err(|e| step("", "read plan", e))
    }

    /// Write the plan file (JSON).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        podrun_fs::write_atomic(path, &serde_json::to_vec_pretty(self)?)
    }

    /// Where the sandbox pins namespace `ns`: containers join it by this path.
    pub fn ns_path(&self, ns: Namespace) -> PathBuf {
        self.run_root
            .join("sandboxes")
            .join(&self.pod_id)
            .join("ns")
            .join(ns.name())
    }

    /// The backend [`PodPlan::runtime`] names.
    pub fn backend(&self) -> Box<dyn OciBackend> {
        let systemd = self.systemd_cgroup();
        if self.runtime == EMBEDDED {
            Box::new(Embedded::new(&self.run_root).with_systemd_cgroup(systemd))
        } else {
            Box::new(OciCli::new(&self.runtime, &self.run_root).with_systemd_cgroup(systemd))
        }
    }

    /// Whether the pod's cgroups are systemd units (its cgroup parent is a slice
    /// name): the backend then makes each container's as a scope.
    pub fn systemd_cgroup(&self) -> bool {
        self.cgroup_parent
            .as_deref()
            .is_some_and(crate::cgroups::systemd::is_systemd_path)
    }

    /// Where the runtime keeps its containers' state (shared by every pod).
    pub fn runtime_state_dir(&self) -> PathBuf {
        if self.runtime == EMBEDDED {
            self.run_root.join("libcontainer")
        } else {
            self.run_root.join(backend::cli_state_dir(&self.runtime))
        }
    }

    /// Where container `name`'s exit is recorded.
    pub fn exit_path(&self, name: &str) -> PathBuf {
        self.run_dir.join("exits").join(format!("{name}.json"))
    }

    /// Where container `name`'s start is recorded.
    pub fn start_path(&self, name: &str) -> PathBuf {
        self.run_dir.join("starts").join(format!("{name}.json"))
    }
}

/// That a container started, as recorded in `<run dir>/starts/<name>.json`
/// (written before its exit can be; a restart overwrites it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRecord {
    /// The container's name.
    pub name: String,
    /// Its ID.
    pub id: String,
    /// The pid of its init.
    pub pid: i32,
    /// When it started (RFC 3339, nanoseconds).
    pub started_at: String,
}

/// How a container ended, as recorded in `<run dir>/exits/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The container's name.
    pub name: String,
    /// Its ID.
    pub id: String,
    /// The exit code as CRI reports it: the process's, or 128 + the signal.
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// When it started (RFC 3339, nanoseconds); empty if it never did.
    pub started_at: String,
    /// When it was seen to end.
    pub finished_at: String,
    /// Its memory cgroup counted an OOM kill (best effort).
    pub oom_killed: bool,
    /// kubelet's reason: `Completed`, `Error`, `OOMKilled` or `StartError`.
    pub reason: String,
    /// Why it could not start, for `StartError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why the monitor failed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A step failed.
    #[error("pod {pod}: monitor: {step}: {cause}")]
    Step {
        /// The pod.
        pod: String,
        /// What was being done.
        step: String,
        /// The cause.
        cause: String,
    },
    /// Cleanup met failures; all are listed.
    #[error("pod {pod}: monitor: cleanup: {}", .errors.join("; "))]
    Cleanup {
        /// The pod.
        pod: String,
        /// Every failure, in order.
        errors: Vec<String>,
    },
}

/// Why the monitor refused a control request; its text is the answer's message.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The pod is being stopped: nothing new starts.
    #[error("container {name}: start: the pod is stopping")]
    Stopping {
        /// The container.
        name: String,
    },
    /// The name cannot name a container (empty, `.`, `..`, a `/` or NUL in it).
    #[error("container {name:?}: start: not a container name")]
    BadName {
        /// The name asked for.
        name: String,
    },
    /// The ID cannot name a container.
    #[error("container {name}: start: {id:?} is not a container ID")]
    BadId {
        /// The container.
        name: String,
        /// The ID asked for.
        id: String,
    },
    /// Another container of the pod has that ID.
    #[error("container {name}: start: ID {id} is container {other}'s")]
    IdTaken {
        /// The container.
        name: String,
        /// The ID asked for.
        id: String,
        /// The container that has it.
        other: String,
    },
    /// It runs: it cannot be started again.
    #[error("container {name}: start: it is running (pid {pid})")]
    StartRunning {
        /// The container.
        name: String,
        /// Its init.
        pid: i32,
    },
    /// It runs: it cannot be removed.
    #[error("container {name}: remove: it is running (pid {pid}): stop it first")]
    RemoveRunning {
        /// The container.
        name: String,
        /// Its init.
        pid: i32,
    },
    /// No running container of that name.
    #[error("container {name}: {call}: not running")]
    NotRunning {
        /// The name asked for.
        name: String,
        /// What was asked: `reopen log`, `attach`.
        call: &'static str,
    },
    /// Attaching failed (no pipe could be made).
    #[error("container {name}: attach: {source}")]
    Attach {
        /// The container.
        name: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// Its log file could not be opened again.
    #[error("container {name}: reopen log {}: {source}", .path.display())]
    ReopenLog {
        /// The container.
        name: String,
        /// Its log file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// No container of that name.
    #[error("container {name}: stop: no such container")]
    NoSuchContainer {
        /// The name asked for.
        name: String,
    },
    /// The OCI runtime failed a step.
    #[error("container {name}: {step}: {source}")]
    Backend {
        /// The container.
        name: String,
        /// What was being done.
        step: String,
        /// The OCI runtime's error.
        source: BackendError,
    },
    /// Starting it failed before the OCI runtime was asked.
    #[error(transparent)]
    Start(#[from] MonitorError),
}

fn step(pod: &str, step: &str, cause: impl std::fmt::Display) -> MonitorError {
    MonitorError::Step {
        pod: pod.into(),
        step: step.into(),
        cause: cause.to_string(),
    }
}

/// A container while the monitor holds it.
struct Running {
    plan: ContainerPlan,
    log: LogFile,
    streams: Vec<LogStream>,
    /// The write end of its stdin, kept for attaching (`stdin`).
    stdin: Option<OwnedFd>,
    /// Its terminal's master (`tty`), given to attach clients to resize it.
    terminal: Option<OwnedFd>,
    pid: i32,
    started_at: String,
    /// Exited (its record written) or never started.
    done: bool,
    /// SIGKILL is due at this time (set once the stop signal was sent).
    kill_at: Option<Instant>,
    /// The memory cgroup's `oom_control` or `memory.events`, read at exit.
    oom_file: Option<PathBuf>,
    /// Containers of this name this monitor started before this one.
    restarts: u32,
    /// Its exit record, once written.
    exit: Option<ExitRecord>,
    /// Deleted from the runtime (removed, or replaced by a restart): only
    /// its log pipes are still read, until they close.
    removed: bool,
}

/// Run the pod of `plan` with its runtime: create the sandbox, then start,
/// stop and remove containers when asked, until the monitor is told to stop
/// (SIGTERM, SIGINT, [`Request::Shutdown`]); then stop what runs, delete the
/// containers, destroy the sandbox and remove their cgroups. Everything made
/// is cleaned up, even after an error.
pub fn run_monitor(plan: &PodPlan) -> Result<(), MonitorError> {
    let pod = plan.pod_id.as_str();
    if !plan.containers.is_empty() {
        // A plan of old (or a caller's mistake): nothing would start them.
        return Err(step(
            pod,
            "read plan",
            "the plan lists containers: the monitor starts each when asked (a start request)",
        ));
    }
    let backend = plan.backend();
    let backend = backend.as_ref();
    // First of all: from now on the pod has a live monitor, and only one.
    let _lock = MonitorLock::acquire(&plan.run_dir).map_err(|e| step(pod, "take lock", e))?;
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes an integer and no pointers.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(step(
            pod,
            "become subreaper",
            std::io::Error::last_os_error(),
        ));
    }
    let signals = signal_fd().map_err(|e| step(pod, "block signals", e))?;
    std::fs::create_dir_all(plan.run_dir.join("exits"))
        .map_err(|e| step(pod, "create run directory", e))?;
    // Before anything is recorded: a client that sees a record can ask.
    // Requests wait in the backlog until the loop runs.
    let mut server =
        Server::bind(&plan.run_dir).map_err(|e| step(pod, "listen on control socket", e))?;
    let config = SandboxConfig {
        id: plan.pod_id.clone(),
        hostname: plan.hostname.clone(),
        host_network: plan.host_network,
        share_pid: plan.share_pid,
    };
    let mut sandbox = Sandbox::create(&plan.run_root, &plan.pause, &config)
        .map_err(|e| step(pod, "create sandbox", e))?;
    announce_ready();
    let mut monitor = Monitor {
        plan,
        backend,
        containers: Vec::new(),
        stopping: false,
        starts: HashMap::new(),
        outgoing: Vec::new(),
        oom_kills: PodOomKills::new(plan.cgroup_parent.as_deref()),
    };
    let result = monitor.supervise(&signals, &mut sandbox, &mut server);
    // No request is taken while the pod is torn down: clients see it gone.
    drop(server);
    let errors = monitor.cleanup(&mut sandbox);
    result?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(MonitorError::Cleanup {
            pod: pod.into(),
            errors,
        })
    }
}

/// The line the monitor writes on its stdout once its sandbox is made.
pub const READY: &str = "ready\n";

/// Say [`READY`] on stdout, then let stdout go: `/dev/null` replaces it, so
/// that the reader sees the pipe close (and no process started later holds
/// it). A reader that is gone, or no reader, is no error: the socket is
/// there either way.
fn announce_ready() {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(READY.as_bytes());
    let _ = out.flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto fd 1 of two descriptors this process owns; the
        // locked stdout has nothing buffered.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) };
    }
}

/// The monitor's state while it supervises the pod.
struct Monitor<'a> {
    plan: &'a PodPlan,
    backend: &'a dyn OciBackend,
    /// Every container started, in order (a restart adds one, the replaced
    /// one is `removed`).
    containers: Vec<Running>,
    /// The pod is being stopped (SIGTERM, SIGINT, shutdown).
    stopping: bool,
    /// How many containers of each name were started.
    starts: HashMap<String, u32>,
    /// Descriptors to pass with the answer being made (attach).
    outgoing: Vec<OwnedFd>,
    /// The pod's OOM kills, for containers whose cgroup is gone at exit.
    oom_kills: PodOomKills,
}

impl Monitor<'_> {
    fn supervise(
        &mut self,
        signals: &OwnedFd,
        sandbox: &mut Sandbox,
        server: &mut Server,
    ) -> Result<(), MonitorError> {
        let plan = self.plan;
        let pod = plan.pod_id.as_str();
        let mut drain_until: Option<Instant> = None;
        loop {
            reap(plan, sandbox, &mut self.containers, &mut self.oom_kills)?;
            // Replaced or removed containers are kept only while their logs are open.
            self.containers
                .retain(|c| !c.removed || c.streams.iter().any(|s| s.pipe.is_some()));
            let all_done = self.containers.iter().all(|c| c.done);
            let pipes_open = self
                .containers
                .iter()
                .any(|c| c.streams.iter().any(|s| s.pipe.is_some()));
            // The pod ends only when it is told to.
            if all_done && self.stopping {
                let until = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN);
                if !pipes_open || Instant::now() >= until {
                    return Ok(());
                }
            }
            for c in self.containers.iter_mut().filter(|c| !c.done) {
                if c.kill_at.is_some_and(|t| Instant::now() >= t) {
                    let _ = self.backend.kill(&c.plan.id, libc::SIGKILL);
                    c.kill_at = None;
                }
            }
            let deadline = self
                .containers
                .iter()
                .filter_map(|c| c.kill_at)
                .chain(drain_until)
                .chain(server.deadline())
                .min();
            let timeout = deadline.map_or(-1, |d| {
                let left = d.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128) as i32 + 1
            });
            let mut fds = vec![libc::pollfd {
                fd: signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            server.pollfds(&mut fds);
            let pipes_from = fds.len();
            let mut owners = Vec::new();
            for (ci, c) in self.containers.iter().enumerate() {
                for (si, s) in c.streams.iter().enumerate() {
                    if let Some(p) = &s.pipe {
                        fds.push(libc::pollfd {
                            fd: p.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        });
                        owners.push((ci, si));
                    }
                }
            }
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(step(pod, "poll", e));
            }
            for (pfd, &(ci, si)) in fds[pipes_from..].iter().zip(&owners) {
                if pfd.revents != 0 {
                    let c = &mut self.containers[ci];
                    if let Err(e) = c.streams[si].pump(&mut c.log) {
                        tracing::warn!("pod {pod}: container {}: write log: {e}", c.plan.name);
                    }
                }
            }
            if fds[0].revents != 0 && read_signals(signals) {
                self.stop_pod();
            }
            server.service(&fds[1..pipes_from], |req| {
                let response = self.handle(req);
                (response, std::mem::take(&mut self.outgoing))
            });
        }
    }

    /// Count a start of a container named `name`; the starts before it.
    fn count_start(&mut self, name: &str) -> u32 {
        let n = self.starts.entry(name.to_string()).or_default();
        *n += 1;
        *n - 1
    }

    /// Stop every running container (once).
    fn stop_pod(&mut self) {
        if !self.stopping {
            self.stopping = true;
            stop_all(self.backend, &mut self.containers);
        }
    }

    /// The container called `name`, unless removed.
    fn current(&self, name: &str) -> Option<usize> {
        self.containers
            .iter()
            .rposition(|c| c.plan.name == name && !c.removed)
    }

    /// Answer one control request.
    fn handle(&mut self, req: Request) -> Response {
        let result = match req {
            Request::Start { container } => self.start_request(container),
            Request::Stop {
                name,
                signal,
                grace_period_ms,
            } => self.stop_request(&name, signal, grace_period_ms),
            Request::Remove { name } => self.remove_request(&name),
            Request::ReopenLog { name } => self.reopen_log_request(&name),
            Request::Attach { name } => self.attach_request(&name),
            Request::State => Ok(Response::State {
                containers: self.state(),
            }),
            Request::Shutdown => {
                self.stop_pod();
                Ok(Response::Ok)
            }
        };
        result.unwrap_or_else(|e| {
            let message = e.to_string();
            tracing::warn!("pod {}: control request: {message}", self.plan.pod_id);
            Response::Error { message }
        })
    }

    fn start_request(&mut self, c: ContainerPlan) -> Result<Response, RequestError> {
        let name = c.name.as_str();
        if self.stopping {
            return Err(RequestError::Stopping { name: name.into() });
        }
        if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
            return Err(RequestError::BadName { name: name.into() });
        }
        if c.id.is_empty() || c.id.contains(['/', '\0']) || c.id == "." || c.id == ".." {
            return Err(RequestError::BadId {
                name: name.into(),
                id: c.id.clone(),
            });
        }
        if let Some(other) = self
            .containers
            .iter()
            .find(|r| !r.removed && r.plan.id == c.id && r.plan.name != name)
        {
            return Err(RequestError::IdTaken {
                name: name.into(),
                id: c.id.clone(),
                other: other.plan.name.clone(),
            });
        }
        if let Some(i) = self.current(name) {
            let old = &mut self.containers[i];
            if !old.done {
                return Err(RequestError::StartRunning {
                    name: name.into(),
                    pid: old.pid,
                });
            }
            // The new one may have another ID and bundle: the old one goes first.
            if let Err(e) = self.backend.delete(&old.plan.id) {
                // One that never started may have no state to delete.
                if old.pid > 0 {
                    return Err(RequestError::Backend {
                        name: name.into(),
                        step: format!("start: delete the exited container {}", old.plan.id),
                        source: e,
                    });
                }
            }
            old.removed = true;
        }
        let restarts = self.count_start(name);
        let running = start(self.plan, self.backend, &c, restarts)?;
        let response = match &running.exit {
            Some(exit) => Response::StartFailed {
                message: exit.message.clone().unwrap_or_default(),
            },
            None => Response::Started {
                pid: running.pid,
                started_at: running.started_at.clone(),
            },
        };
        self.containers.push(running);
        Ok(response)
    }

    fn stop_request(
        &mut self,
        name: &str,
        signal: Option<i32>,
        grace_period_ms: Option<u64>,
    ) -> Result<Response, RequestError> {
        let i = self
            .current(name)
            .ok_or_else(|| RequestError::NoSuchContainer { name: name.into() })?;
        let c = &mut self.containers[i];
        if c.done {
            return Ok(Response::Ok);
        }
        let grace = grace_period_ms.unwrap_or(c.plan.grace_period_ms);
        let signal = if grace == 0 {
            libc::SIGKILL
        } else {
            signal.unwrap_or(c.plan.stop_signal)
        };
        if let Err(e) = self.backend.kill(&c.plan.id, signal) {
            // Its init may have exited already, not yet reaped.
            if alive(c.pid) {
                return Err(RequestError::Backend {
                    name: name.into(),
                    step: format!("stop: signal {signal}"),
                    source: e,
                });
            }
        }
        if signal != libc::SIGKILL {
            let at = Instant::now() + Duration::from_millis(grace);
            c.kill_at = Some(c.kill_at.map_or(at, |t| t.min(at)));
        }
        Ok(Response::Ok)
    }

    /// Reopen a running container's log file at its path (CRI
    /// ReopenContainerLog: kubelet renamed it to rotate it); what it writes
    /// from now on goes to the new file.
    /// Two new pipes subscribed to the container's output, and its stdin's
    /// write end (given away for good with `stdin_once`); passed with the
    /// answer.
    fn attach_request(&mut self, name: &str) -> Result<Response, RequestError> {
        let Some(i) = self.current(name).filter(|&i| !self.containers[i].done) else {
            return Err(RequestError::NotRunning {
                name: name.into(),
                call: "attach",
            });
        };
        let attach = |e: std::io::Error| RequestError::Attach {
            name: name.into(),
            source: e,
        };
        let c = &mut self.containers[i];
        let mut fds = Vec::new();
        for stream in &mut c.streams {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| attach(e.into()))?;
            rustix::fs::fcntl_setfl(&w, rustix::fs::OFlags::NONBLOCK)
                .map_err(|e| attach(e.into()))?;
            stream.subscribers.push(w);
            fds.push(r);
        }
        if let Some(master) = &c.terminal {
            // The master is both its stdin and what resizes it; with
            // `stdin_once` only the first client may type.
            let has_stdin = match c.plan.stdin_once {
                true => c.stdin.take().is_some(),
                false => c.stdin.is_some(),
            };
            fds.push(master.try_clone().map_err(attach)?);
            self.outgoing = fds;
            return Ok(Response::Attached {
                stdin: has_stdin,
                terminal: true,
            });
        }
        let stdin = match c.plan.stdin_once {
            true => c.stdin.take(),
            false => c
                .stdin
                .as_ref()
                .map(|w| w.try_clone())
                .transpose()
                .map_err(attach)?,
        };
        let has_stdin = stdin.is_some();
        fds.extend(stdin);
        self.outgoing = fds;
        Ok(Response::Attached {
            stdin: has_stdin,
            terminal: false,
        })
    }

    fn reopen_log_request(&mut self, name: &str) -> Result<Response, RequestError> {
        let Some(i) = self.current(name).filter(|&i| !self.containers[i].done) else {
            return Err(RequestError::NotRunning {
                name: name.into(),
                call: "reopen log",
            });
        };
        let c = &mut self.containers[i];
        c.log.reopen().map_err(|source| RequestError::ReopenLog {
            name: name.into(),
            path: c.plan.log_path.clone(),
            source,
        })?;
        Ok(Response::Ok)
    }

    fn remove_request(&mut self, name: &str) -> Result<Response, RequestError> {
        let Some(i) = self.current(name) else {
            return Ok(Response::Ok);
        };
        let c = &mut self.containers[i];
        if !c.done {
            return Err(RequestError::RemoveRunning {
                name: name.into(),
                pid: c.pid,
            });
        }
        if let Err(e) = self.backend.delete(&c.plan.id) {
            if c.pid > 0 {
                return Err(RequestError::Backend {
                    name: name.into(),
                    step: "remove".into(),
                    source: e,
                });
            }
        }
        c.removed = true;
        Ok(Response::Ok)
    }

    fn state(&self) -> Vec<ContainerState> {
        self.containers
            .iter()
            .filter(|c| !c.removed)
            .map(|c| ContainerState {
                name: c.plan.name.clone(),
                id: c.plan.id.clone(),
                pid: c.pid,
                running: !c.done,
                restarts: c.restarts,
                started_at: c.started_at.clone(),
                exit: c.exit.clone(),
                log_lines_dropped: c.log.dropped_lines(),
            })
            .collect()
    }

    /// Delete every container, destroy the sandbox, remove the cgroups; go on
    /// past failures and return them all.
    fn cleanup(&self, sandbox: &mut Sandbox) -> Vec<String> {
        let plan = self.plan;
        let mut errors = Vec::new();
        let mut deleted = HashSet::new();
        // Removed ones were deleted already.
        for c in self.containers.iter().filter(|c| !c.removed) {
            if deleted.insert(c.plan.id.as_str()) {
                if let Err(e) = self.backend.delete(&c.plan.id) {
                    // A container that never started may have no state to delete.
                    if c.pid > 0 {
                        errors.push(format!("container {}: {e}", c.plan.name));
                    }
                }
            }
        }
        // Reap what the deletes killed, so no zombie outlives the monitor's exit.
        while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {}
        if let Err(e) = sandbox.destroy() {
            errors.push(e.to_string());
        }
        let mut all = plan.clone();
        for c in &self.containers {
            if !all.containers.iter().any(|p| p.id == c.plan.id) {
                all.containers.push(c.plan.clone());
            }
        }
        errors.extend(remove_plan_cgroups(&all));
        // Only when empty: other pods share it.
        let _ = std::fs::remove_dir(plan.runtime_state_dir());
        errors
    }
}

/// Start one container; a container that fails to start gets a `StartError`
/// record and counts as done. Fails only when its records cannot be written
/// (a container started is deleted again then).
fn start(
    plan: &PodPlan,
    backend: &dyn OciBackend,
    c: &ContainerPlan,
    restarts: u32,
) -> Result<Running, MonitorError> {
    let pod = plan.pod_id.as_str();
    let what = format!("container {}", c.name);
    let log = LogFile::open(&c.log_path, c.log_rotation)
        .map_err(|e| step(pod, &format!("{what}: open log"), e))?;
    let mut running = Running {
        plan: c.clone(),
        log,
        streams: Vec::new(),
        stdin: None,
        terminal: None,
        pid: 0,
        started_at: String::new(),
        done: false,
        kill_at: None,
        oom_file: None,
        restarts,
        exit: None,
        removed: false,
    };
    let started = if c.tty {
        start_on_terminal(plan, backend, &mut running)?
    } else {
        let (out_r, out_w) = pipe().map_err(|e| step(pod, &what, e))?;
        let (err_r, err_w) = pipe().map_err(|e| step(pod, &what, e))?;
        // Both ends blocking: the container reads, attached clients write.
        let (in_r, in_w) = match c.stdin {
            true => rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map(|(r, w)| (Some(r), Some(w)))
                .map_err(|e| step(pod, &what, e))?,
            false => (None, None),
        };
        running.streams = vec![
            LogStream::new(out_r, "stdout"),
            LogStream::new(err_r, "stderr"),
        ];
        running.stdin = in_w;
        let io = ContainerIo::Pipes {
            stdin: in_r,
            stdout: out_w,
            stderr: err_w,
        };
        backend.create_and_start(&c.id, &c.bundle, io)
    };
    match started {
        Ok(pid) => {
            running.pid = pid;
            running.started_at = now_rfc3339_nano();
            running.oom_file = oom_file(pid);
            let record = StartRecord {
                name: c.name.clone(),
                id: c.id.clone(),
                pid,
                started_at: running.started_at.clone(),
            };
            if let Err(e) = write_json(&plan.start_path(&c.name), &record) {
                // Not held by the monitor from here: none of it may stay.
                let _ = backend.delete(&c.id);
                return Err(step(pod, &format!("{what}: record start"), e));
            }
        }
        Err(e) => {
            tracing::warn!("pod {pod}: {what}: start: {e}");
            running.done = true;
            let record = ExitRecord {
                name: c.name.clone(),
                id: c.id.clone(),
                exit_code: 128,
                signal: None,
                started_at: String::new(),
                finished_at: now_rfc3339_nano(),
                oom_killed: false,
                reason: "StartError".into(),
                message: Some(e.to_string()),
            };
            write_record(&plan.exit_path(&c.name), &record)
                .map_err(|e| step(pod, &format!("{what}: record exit"), e))?;
            running.exit = Some(record);
        }
    }
    Ok(running)
}

/// Start `running`'s container on a new pseudo-terminal: the runtime sends
/// the master to a console socket of ours; its output becomes the
/// container's stdout stream (as containerd logs a terminal), its input the
/// container's stdin (with `stdin`), and attach clients get it to resize.
/// `Err` only for what is ours (the socket); the runtime's failure is the
/// start's result.
fn start_on_terminal(
    plan: &PodPlan,
    backend: &dyn OciBackend,
    running: &mut Running,
) -> Result<Result<i32, BackendError>, MonitorError> {
    let pod = plan.pod_id.as_str();
    let c = &running.plan;
    let what = format!("container {}: terminal", c.name);
    let socket = plan.run_dir.join("console.sock");
    let listener = console::listen(&socket).map_err(|e| step(pod, &what, e))?;
    let _remove = console::RemoveOnDrop(vec![socket.clone()]);
    let io = ContainerIo::Terminal {
        console_socket: &socket,
    };
    let pid = match backend.create_and_start(&c.id, &c.bundle, io) {
        Ok(pid) => pid,
        failed => return Ok(failed),
    };
    let master = match console::receive_master_within(&listener, Duration::from_secs(10)) {
        Ok(master) => master,
        Err(e) => {
            // Not held by the monitor from here: none of it may stay.
            let _ = backend.delete(&c.id);
            return Err(step(pod, &what, e));
        }
    };
    let own = |e: std::io::Error| step(pod, &what, e);
    // The stream reads without blocking; writers (attach) wait for room.
    let reader = master.try_clone().map_err(own)?;
    rustix::fs::fcntl_setfl(&reader, rustix::fs::OFlags::NONBLOCK).map_err(|e| own(e.into()))?;
    running.streams = vec![LogStream::new(reader, "stdout")];
    if c.stdin {
        running.stdin = Some(master.try_clone().map_err(own)?);
    }
    running.terminal = Some(master);
    Ok(Ok(pid))
}

/// Reap every child that exited; record the containers' exits.
fn reap(
    plan: &PodPlan,
    sandbox: &mut Sandbox,
    containers: &mut [Running],
    oom_kills: &mut PodOomKills,
) -> Result<(), MonitorError> {
    use rustix::process::{wait, WaitOptions};
    while let Ok(Some((pid, status))) = wait(WaitOptions::NOHANG) {
        let pid = pid.as_raw_nonzero().get();
        if pid == sandbox.pid {
            tracing::warn!("pod {}: the pause process exited", plan.pod_id);
            sandbox.pid = 0;
            continue;
        }
        let Some(c) = containers.iter_mut().find(|c| c.pid == pid && !c.done) else {
            // A log compressor, or an orphan of some container: reaped,
            // nothing to record.
            for c in containers.iter_mut() {
                if c.log.compressor_exited(pid) {
                    break;
                }
            }
            continue;
        };
        let signal = status.terminating_signal();
        let code = status.exit_status().unwrap_or(0);
        let oom_killed =
            oom_kills.container_killed(c.oom_file.as_deref(), signal == Some(libc::SIGKILL));
        let exit_code = signal.map_or(code, |s| 128 + s);
        let reason = if oom_killed {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        let record = ExitRecord {
            name: c.plan.name.clone(),
            id: c.plan.id.clone(),
            exit_code,
            signal,
            started_at: c.started_at.clone(),
            finished_at: now_rfc3339_nano(),
            oom_killed,
            reason: reason.into(),
            message: None,
        };
        c.done = true;
        c.kill_at = None;
        // What it wrote before it exited waits in its pipes: into the log
        // before the exit is recorded, so whoever reads the exit (a
        // FallbackToLogsOnError message, `logs` of a finished container)
        // finds its last lines.
        for stream in c.streams.iter_mut() {
            if let Err(e) = stream.pump(&mut c.log) {
                tracing::warn!(
                    "pod {}: container {}: write log: {e}",
                    plan.pod_id,
                    c.plan.name
                );
            }
        }
        write_record(&plan.exit_path(&c.plan.name), &record).map_err(|e| {
            step(
                &plan.pod_id,
                &format!("container {}: record exit", c.plan.name),
                e,
            )
        })?;
        c.exit = Some(record);
    }
    Ok(())
}

/// Whether process `pid` runs (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    pid > 0
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
}

/// Send each running container its stop signal; SIGKILL follows after its grace period.
fn stop_all(backend: &dyn OciBackend, containers: &mut [Running]) {
    for c in containers.iter_mut().filter(|c| !c.done) {
        if let Err(e) = backend.kill(&c.plan.id, c.plan.stop_signal) {
            tracing::warn!("container {}: stop: {e}", c.plan.name);
        }
        let at = Instant::now() + Duration::from_millis(c.plan.grace_period_ms);
        c.kill_at = Some(c.kill_at.map_or(at, |t| t.min(at)));
    }
}

/// Write `record` as JSON durably: temp file, fsync, rename, fsync the directory.
fn write_record(path: &Path, record: &ExitRecord) -> std::io::Result<()> {
    write_json(path, record)
}

/// Write `value` as JSON durably: temp file, fsync, rename, fsync the directory.
fn write_json(path: &Path, record: &impl Serialize) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    podrun_fs::write_atomic(path, &serde_json::to_vec_pretty(record)?)
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // Only our end is non-blocking: the container's writes still block on a full pipe.
    rustix::fs::fcntl_setfl(&r, rustix::fs::OFlags::NONBLOCK)?;
    Ok((r, w))
}

const SIGNALS: [i32; 3] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT];

/// Block SIGCHLD, SIGTERM and SIGINT and return a signalfd that reports them.
/// Children started through `std::process::Command` get an empty mask back.
fn signal_fd() -> std::io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for these calls to read and write.
    let fd = unsafe {
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: signalfd returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Drain the signalfd; true when a stop was asked (SIGTERM, SIGINT). SIGCHLD
/// needs nothing more: every turn of the loop reaps.
fn read_signals(fd: &OwnedFd) -> bool {
    let mut stop = false;
    // SAFETY: signalfd_siginfo is plain data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        let buf = (&mut info as *mut libc::signalfd_siginfo).cast();
        // SAFETY: `buf` points to `info`, writable for `size` bytes; fd is a signalfd.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf, size) };
        if n != size as isize {
            return stop;
        }
        stop |= info.ssi_signo as i32 != libc::SIGCHLD;
    }
}

/// Container `name`'s start record, if one was written (a container started
/// by a [`Request::Start`] is not in the plan's list).
pub fn read_start(plan: &PodPlan, name: &str) -> Option<StartRecord> {
    serde_json::from_slice(&std::fs::read(plan.start_path(name)).ok()?).ok()
}

/// Container `name`'s exit record, if one was written.
pub fn read_exit(plan: &PodPlan, name: &str) -> Option<ExitRecord> {
    serde_json::from_slice(&std::fs::read(plan.exit_path(name)).ok()?).ok()
}

/// The start records written so far, by container name.
pub fn read_starts(plan: &PodPlan) -> HashMap<String, StartRecord> {
    plan.containers
        .iter()
        .filter_map(|c| {
            let text = std::fs::read(plan.start_path(&c.name)).ok()?;
            Some((c.name.clone(), serde_json::from_slice(&text).ok()?))
        })
        .collect()
}

/// The exit records written so far, by container name.
pub fn read_exits(plan: &PodPlan) -> HashMap<String, ExitRecord> {
    plan.containers
        .iter()
        .filter_map(|c| {
            let text = std::fs::read(plan.exit_path(&c.name)).ok()?;
            Some((c.name.clone(), serde_json::from_slice(&text).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(runtime: Option<&str>) -> PodPlan {
        let mut json = serde_json::json!({
            "pod_id": "p", "run_root": "/run/podrun", "run_dir": "/run/podrun/pods/p",
            "pause": "/bin/podrun-pause", "hostname": "p", "cgroup_parent": null,
            "containers": [],
        });
        if let Some(r) = runtime {
            json["runtime"] = r.into();
        }
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_runtime_defaults_to_embedded() {
        let p = plan(None);
        assert_eq!(p.runtime, EMBEDDED);
        assert_eq!(p.runtime_state_dir(), Path::new("/run/podrun/libcontainer"));
    }

    #[test]
    fn another_runtime_is_a_cli_with_state_under_its_name() {
        assert_eq!(
            plan(Some("crun")).runtime_state_dir(),
            Path::new("/run/podrun/crun")
        );
        assert_eq!(
            plan(Some("/usr/sbin/runc")).runtime_state_dir(),
            Path::new("/run/podrun/runc")
        );
    }
}
