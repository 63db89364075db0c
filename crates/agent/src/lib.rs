//! The pod manager (kubelet's role) and the node agent, `podrun serve`: owns
//! the state database (`db`), runs one worker per pod (`worker`: creation,
//! supervision, replacement, deletion, each step committed before it is
//! reported; its SyncPod split into observe, probe, compute, execute and
//! record), serves the CLI on a unix socket (`api`, with watches the agent
//! pushes changes to: `watch`), and watches a directory
//! of static pod manifests (`manifests`). `podrun run` in the foreground runs
//! the same pod manager in its own process ([`Agent::in_process`]).
//!
//! It may die at any moment: the pods' monitors are in sessions of their own
//! and keep the containers running; every step of a pod's life is a state in
//! the database that a new agent finishes or rolls back (see `worker`).

pub mod api;
pub mod claims;
mod claims_apply;
pub mod config;
pub mod container_config;
pub mod create;
pub mod db;
mod describe;
mod describe_node;
pub mod env;
pub mod events;
mod eviction;
#[cfg(test)]
mod fake_runtime;
mod image_gc;
pub mod logs;
mod manifests;
mod metrics;
mod node_ips;
pub mod pods;
pub mod port_forward;
mod probe;
pub mod projection;
pub mod table;
mod terminate;
mod top;
pub mod volumes;
mod watch;
mod worker;

use api::{PodSummary, Request, Response};
use db::{Change, Db, DbError, ObjectRow, PodPhase, PodRow};
use podrun_runtime::RuntimeService;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Where the pod manager keeps things and how it makes pods: the CLI's
/// global flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Images, snapshots, the state database, the pods' data (`--root`).
    pub root: PathBuf,
    /// Runtime state: pods' records and logs, pinned namespaces (`--run-root`).
    pub run_root: PathBuf,
    /// podman's registries.conf (`--registries-conf`).
    pub registries_conf: PathBuf,
    /// containerd-style registry hosts directory (`--hosts-dir`).
    pub hosts_dir: PathBuf,
    /// The OCI runtime of pods without a runtimeClassName (`--runtime`).
    pub runtime: Option<String>,
    /// podrun's configuration file: RuntimeClass handlers (`--config`).
    pub config: PathBuf,
}

/// A server run beside the agent on the agent's own runtime and image
/// service (the CRI server of `podrun serve --cri`). It is handed them and a
/// receiver that turns `true` when the agent stops, and returns the future
/// that serves; the agent waits for that future before it exits, and stops
/// (with the error) if it ends first.
pub type Beside = Box<
    dyn FnOnce(
            Arc<dyn RuntimeService>,
            Arc<dyn podrun_runtime::ImageService>,
            tokio::sync::watch::Receiver<bool>,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send,
>;

/// What `podrun serve` is asked to do besides serving the API.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Watch this directory of Pod manifests, as kubelet's staticPodPath: a
    /// file added starts its pods, changed replaces them, removed stops them.
    pub manifests: Option<PathBuf>,
    /// Serve metrics for Prometheus on this address (`/metrics`), as kubelet's
    /// `/metrics` (kubelet's names; see the README).
    pub metrics_address: Option<std::net::SocketAddr>,
}

/// Why the agent, or one of its requests, failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// {verb} {path}: {source}
    #[error("{verb} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        verb: &'static str,
        /// The file or socket.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// another agent (pid {pid}) serves {root}: it holds {lock}
    #[error("another agent (pid {pid}) serves {}: it holds {}", .root.display(), .lock.display())]
    Locked {
        /// The other agent's pid, as its lock file says.
        pid: String,
        /// The root.
        root: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// A request refused as a whole: `{reason}\nnothing was applied`.
    #[error("{0}\nnothing was applied")]
    Refused(String),
    /// The state database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The pods' records on disk.
    #[error(transparent)]
    Pods(#[from] pods::PodsError),
    /// A pod's worker.
    #[error(transparent)]
    Worker(#[from] worker::WorkerError),
    /// podrun's configuration file.
    #[error(transparent)]
    Config(#[from] config::ConfigFileError),
    /// The runtime.
    #[error(transparent)]
    Runtime(#[from] podrun_runtime::api::ServiceError),
    /// The image service (the registries' configuration, the store).
    #[error(transparent)]
    Images(#[from] podrun_runtime::images::ImageServiceError),
    /// encode {what}: {source}
    #[error("encode {what}: {source}")]
    Encode {
        /// What.
        what: String,
        /// The encoder's error.
        source: serde_json::Error,
    },
    /// A task of the agent failed to run.
    #[error("{0}")]
    Task(String),
}

type Result<T, E = AgentError> = std::result::Result<T, E>;

fn encode<T: serde::Serialize>(value: &T, what: &str) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|source| AgentError::Encode {
        what: what.into(),
        source,
    })
}

fn task<T>(r: std::result::Result<T, tokio::task::JoinError>) -> Result<T> {
    r.map_err(|e| AgentError::Task(format!("a task of the request: {e}")))
}

/// A fault-injection point for the crash tests: when `PODRUN_AGENT_CRASH_AT`
/// names it, the agent kills itself with SIGKILL right there, as a crash or
/// `kill -9` would. Checked in the agent only (`podrun run` never crashes on purpose).
pub fn crash_point(name: &str) {
    if IS_AGENT.load(std::sync::atomic::Ordering::Relaxed)
        && std::env::var("PODRUN_AGENT_CRASH_AT").is_ok_and(|v| v.split(',').any(|p| p == name))
    {
        tracing::warn!("crash point {name}: killing the agent");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

static IS_AGENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The exclusive lock one agent holds on a root (`<root>/agent.lock`, with its pid).
struct AgentLock {
    _file: std::fs::File,
}

impl AgentLock {
    fn take(root: &Path) -> Result<Self> {
        use std::io::{Seek, Write};
        let path = root.join("agent.lock");
        let op = rustix::fs::FlockOperation::NonBlockingLockExclusive;
        let Some(mut file) = crate::pods::lock_file(&path, op)? else {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(AgentError::Locked {
                pid: pid.trim().into(),
                root: root.into(),
                lock: path,
            });
        };
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        written.map_err(|source| AgentError::Io {
            verb: "write",
            path,
            source,
        })?;
        Ok(AgentLock { _file: file })
    }
}

/// What a pod's worker is told.
enum Msg {
    /// Look at the pod now; answer when done.
    Sync(Option<oneshot::Sender<Result<(), String>>>),
}

/// The agent's shared state.
pub struct Agent {
    settings: Settings,
    db: Mutex<Db>,
    /// The runtime the pods' sandboxes and containers are asked of (CRI's
    /// RuntimeService).
    runtime: Arc<dyn RuntimeService>,
    /// The images' service (CRI's ImageService: ImageStatus, PullImage,
    /// RemoveImage), with the registries' configuration read when the agent started.
    image_service: Arc<dyn podrun_runtime::ImageService>,
    workers: Mutex<HashMap<(String, String), mpsc::UnboundedSender<Msg>>>,
    /// How often a running pod's records are looked at.
    sync_interval: Duration,
    /// The node's name (its hostname).
    node: String,
    /// In `podrun run`: one pod in the foreground, its state in memory. Its
    /// pod is not the agent's (a running agent leaves it alone), and a pod
    /// whose monitor is gone ends instead of being made again.
    run_mode: bool,
    /// When this agent started (the probes of the pods it takes over wait a
    /// random part of their period, as kubelet's do after a restart).
    started_at: chrono::DateTime<chrono::Utc>,
    /// The evictions decided by the eviction manager, by pod ID, until the
    /// pod's worker has recorded them in its status.
    evictions: Mutex<HashMap<String, podrun_kubelet::eviction::Eviction>>,
    /// The CPU samples `top` takes its rates from.
    samples: top::Samples,
    /// How the monitors rotate the containers' logs (the configuration's
    /// `container_log_max_size`, `container_log_max_files`).
    log_rotation: podrun_runtime::LogRotation,
    /// The eviction manager's hard thresholds (`eviction_hard`).
    eviction_hard: Vec<podrun_kubelet::eviction::Threshold>,
    /// kubelet's image garbage collection settings (the configuration's
    /// `image_gc_*` and `image_*_gc_age` keys).
    image_gc: config::ImageGc,
}

impl Agent {
    /// The pod manager for `podrun run`: a database in memory, no socket.
    pub fn in_process(settings: Settings) -> Result<Arc<Agent>> {
        let log_rotation = log_rotation(&settings)?;
        let eviction_hard = eviction_hard(&settings)?;
        let image_gc = image_gc(&settings)?;
        Ok(Arc::new(Agent {
            runtime: runtime(&settings)?,
            image_service: node_images(&settings)?,
            settings,
            db: Mutex::new(Db::open_memory()?),
            workers: Mutex::new(HashMap::new()),
            sync_interval: sync_interval(),
            node: node_name(),
            run_mode: true,
            started_at: chrono::Utc::now(),
            evictions: Mutex::new(HashMap::new()),
            samples: top::Samples::default(),
            log_rotation,
            eviction_hard,
            image_gc,
        }))
        .inspect(|agent| {
            if tokio::runtime::Handle::try_current().is_ok() {
                tokio::spawn(eviction::run(Arc::downgrade(agent)));
            }
        })
    }

    /// The stored row of a pod.
    pub fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodRow>> {
        Ok(self.db().pod(namespace, name)?)
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn evictions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, podrun_kubelet::eviction::Eviction>> {
        self.evictions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record an event of a pod (a failure to is only logged).
    fn event(&self, namespace: &str, pod: &str, type_: &str, reason: &str, message: &str) {
        if let Err(e) = self
            .db()
            .event(namespace, pod, type_, reason, message, &now())
        {
            tracing::warn!("pod/{pod}: record event {reason}: {e}");
        }
    }

    /// Record an event of this node (kubelet's events on its nodeRef).
    fn node_event(&self, type_: &str, reason: &str, message: &str) {
        if let Err(e) = self
            .db()
            .node_event(&self.node, type_, reason, message, &now())
        {
            tracing::warn!("node/{}: record event {reason}: {e}", self.node);
        }
    }

    /// Tell the pod's worker to look at it (starting one if none runs).
    fn kick(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        done: Option<oneshot::Sender<Result<(), String>>>,
    ) {
        let key = (namespace.to_string(), name.to_string());
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = workers.get(&key) {
            if let Err(mpsc::error::SendError(msg)) = tx.send(Msg::Sync(done)) {
                // The worker just ended: start a new one with the same message.
                let (tx, rx) = mpsc::unbounded_channel();
                let _ = tx.send(msg);
                workers.insert(key.clone(), tx);
                tokio::spawn(worker::run(self.clone(), key, rx));
            }
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(Msg::Sync(done));
        workers.insert(key.clone(), tx);
        tokio::spawn(worker::run(self.clone(), key, rx));
    }

    /// Kick and wait for the pod's worker to have looked at it.
    async fn sync(self: &Arc<Self>, namespace: &str, name: &str) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.kick(namespace, name, Some(tx));
        rx.await.unwrap_or(Ok(()))
    }
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn sync_interval() -> Duration {
    std::env::var("PODRUN_SYNC_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(1), Duration::from_millis)
}

fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The image service of this machine: the store, pulling with the
/// registries' configuration (`--registries-conf`, `--hosts-dir`) as it is
/// now (a change takes an agent restart, as containerd's configuration does).
fn node_images(settings: &Settings) -> Result<Arc<dyn podrun_runtime::ImageService>> {
    Ok(Arc::new(podrun_runtime::NodeImages::open(
        &settings.root,
        &settings.registries_conf,
        &settings.hosts_dir,
    )?))
}

/// The runtime of this machine as `settings` and podrun's configuration
/// file say: the OCI runtime of each RuntimeClass handler, `--runtime` (or
/// the file's `default_runtime`) for pods without one. The agent's, and
/// that of its other clients (`podrun exec`, `podrun logs -f`).
pub fn runtime(settings: &Settings) -> Result<Arc<dyn RuntimeService>> {
    Ok(Arc::new(node_runtime(settings)?))
}

/// The runtime of [`runtime`], as itself.
fn node_runtime(settings: &Settings) -> Result<podrun_runtime::NodeRuntime> {
    let config = config::Config::load(&settings.config)?;
    let mut runtime = podrun_runtime::RuntimeConfig::new(&settings.run_root)?;
    runtime.default_runtime = config.runtime_for(None, settings.runtime.as_deref())?;
    runtime.handlers = config
        .runtimes
        .iter()
        .map(|(name, h)| (name.clone(), h.path.clone()))
        .collect();
    runtime.network = Some(config.network_config(&settings.config, &settings.root)?);
    runtime.cgroup_driver = config.cgroup_driver(&settings.config)?;
    Ok(podrun_runtime::NodeRuntime::open(runtime, &settings.root)?)
}

/// How the configuration file says the containers' logs rotate.
fn log_rotation(settings: &Settings) -> Result<podrun_runtime::LogRotation> {
    let config = config::Config::load(&settings.config)?;
    Ok(config.log_rotation(&settings.config)?)
}

/// The configuration's hard eviction thresholds.
fn eviction_hard(settings: &Settings) -> Result<Vec<podrun_kubelet::eviction::Threshold>> {
    let config = config::Config::load(&settings.config)?;
    Ok(config.eviction_hard(&settings.config)?)
}

/// How the configuration file says images are garbage collected.
fn image_gc(settings: &Settings) -> Result<config::ImageGc> {
    let config = config::Config::load(&settings.config)?;
    Ok(config.image_gc(&settings.config)?)
}

/// `podrun serve`.
pub async fn serve(settings: Settings, options: &ServeOptions) -> Result<()> {
    serve_with(settings, options, None).await
}

/// `podrun serve`, with `beside` (the CRI server) served on the same runtime.
pub async fn serve_with(
    settings: Settings,
    options: &ServeOptions,
    beside: Option<Beside>,
) -> Result<()> {
    IS_AGENT.store(true, std::sync::atomic::Ordering::Relaxed);
    for dir in [&settings.root, &settings.run_root] {
        std::fs::create_dir_all(dir).map_err(|source| AgentError::Io {
            verb: "create",
            path: dir.clone(),
            source,
        })?;
    }
    let _lock = AgentLock::take(&settings.root)?;
    // Bound first: an address that cannot be had fails the command at once.
    let metrics_listener =
        match options.metrics_address {
            Some(address) => Some(tokio::net::TcpListener::bind(address).await.map_err(
                |source| AgentError::Io {
                    verb: "listen for metrics on",
                    path: PathBuf::from(address.to_string()),
                    source,
                },
            )?),
            None => None,
        };
    let db = Db::open(&settings.root)?;
    let run_root = settings.run_root.clone();
    let root = settings.root.clone();
    let node_runtime = node_runtime(&settings)?;
    let log_rotation = log_rotation(&settings)?;
    let eviction_hard = eviction_hard(&settings)?;
    let image_gc = image_gc(&settings)?;
    // What the pod networks still hold for sandboxes that are gone (the run
    // root emptied by a reboot): released before any pod is adopted or made.
    for failure in node_runtime.collect_network_garbage() {
        tracing::warn!("pod network garbage collection: {failure}");
    }
    let agent = Arc::new(Agent {
        runtime: Arc::new(node_runtime),
        image_service: node_images(&settings)?,
        settings,
        db: Mutex::new(db),
        workers: Mutex::new(HashMap::new()),
        sync_interval: sync_interval(),
        node: node_name(),
        run_mode: false,
        started_at: chrono::Utc::now(),
        evictions: Mutex::new(HashMap::new()),
        samples: top::Samples::default(),
        log_rotation,
        eviction_hard,
        image_gc,
    });
    adopt(&agent)?;
    tokio::spawn(eviction::run(Arc::downgrade(&agent)));
    tokio::spawn(top::run(Arc::downgrade(&agent)));
    tokio::spawn(image_gc::run(Arc::downgrade(&agent)));
    let listener = bind(&run_root)?;
    let handle = tokio::runtime::Handle::current();
    {
        let agent = agent.clone();
        std::thread::Builder::new()
            .name("api".into())
            .spawn(move || accept(listener, agent, handle))
            .map_err(|e| AgentError::Task(format!("start the API thread: {e}")))?;
    }
    if let Some(dir) = &options.manifests {
        tokio::spawn(manifests::watch(agent.clone(), dir.clone()));
    }
    if let Some(listener) = metrics_listener {
        if let Ok(address) = listener.local_addr() {
            tracing::info!("metrics for Prometheus on http://{address}/metrics");
        }
        tokio::spawn(metrics::serve(listener, Arc::downgrade(&agent)));
    }
    tracing::info!(
        "podrun agent (pid {}) serves {} on {}",
        std::process::id(),
        root.display(),
        api::socket_path(&run_root).display()
    );
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let mut beside = match beside {
        Some(serve) => tokio::spawn(serve(
            agent.runtime.clone(),
            agent.image_service.clone(),
            stop,
        )),
        None => tokio::spawn(async move {
            let mut stop = stop;
            let _ = stop.wait_for(|stopping| *stopping).await;
            Ok(())
        }),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| AgentError::Task(format!("watch for SIGTERM: {e}")))?;
    let ended = tokio::select! {
        _ = term.recv() => None,
        _ = tokio::signal::ctrl_c() => None,
        ended = &mut beside => Some(ended),
    };
    let _ = stopping.send(true);
    let ended = match ended {
        Some(ended) => ended,
        None => beside.await,
    };
    if let Err(e) = ended
        .map_err(|e| e.to_string())
        .and_then(std::convert::identity)
    {
        let _ = std::fs::remove_file(api::socket_path(&run_root));
        return Err(AgentError::Task(e));
    }
    // The pods keep running under their monitors; the next agent adopts them.
    tracing::info!("stopping; the pods keep running");
    let _ = std::fs::remove_file(api::socket_path(&run_root));
    Ok(())
}

/// Start a worker for every pod of the database, and remove what is left on
/// disk of agent-owned pods the database no longer knows.
fn adopt(agent: &Arc<Agent>) -> Result<()> {
    let rows = agent.db().pods()?;
    let known: std::collections::HashSet<&str> = rows.iter().map(|r| r.pod_id.as_str()).collect();
    for state in crate::pods::list(&agent.settings.run_root) {
        if state.record.agent && !known.contains(state.record.pod_id.as_str()) {
            tracing::warn!(
                "pod/{}: removing {}: no pod of the database owns it",
                state.record.name,
                state.record.pod_id
            );
            let _ = crate::pods::stop_within(agent.runtime.as_ref(), &state, None);
            if let Err(e) = crate::pods::teardown(agent.runtime.as_ref(), &state) {
                tracing::warn!("{e}");
            }
        }
    }
    for r in &rows {
        agent.kick(&r.namespace, &r.name, None);
    }
    Ok(())
}

fn bind(run_root: &Path) -> Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = api::socket_path(run_root);
    // We hold the root's lock: a socket file left there is a dead agent's.
    let _ = std::fs::remove_file(&path);
    // The socket is created 0600: no moment where others could connect.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let listener = std::os::unix::net::UnixListener::bind(&path);
    rustix::process::umask(old);
    let listener = listener.map_err(|source| AgentError::Io {
        verb: "listen on",
        path: path.clone(),
        source,
    })?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        AgentError::Io {
            verb: "chmod",
            path,
            source,
        }
    })?;
    Ok(listener)
}

fn accept(
    listener: std::os::unix::net::UnixListener,
    agent: Arc<Agent>,
    handle: tokio::runtime::Handle,
) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let agent = agent.clone();
        let handle = handle.clone();
        let _ = std::thread::Builder::new()
            .name("api-conn".into())
            .spawn(move || {
                let response = match api::peer_uid(&stream) {
                    Ok(0) => match api::read_request(&stream) {
                        Ok(request) => match watch::Spec::of(&request) {
                            // A watch keeps the connection (and this thread).
                            Some(spec) => {
                                handle.block_on(watch::serve(agent, stream, spec));
                                return;
                            }
                            None => handle.block_on(answer(&agent, request)),
                        },
                        Err(e) => Response::Error {
                            message: e.to_string(),
                        },
                    },
                    Ok(uid) => Response::Error {
                        message: format!("permission denied: the podrun API is root's (uid {uid})"),
                    },
                    Err(e) => Response::Error {
                        message: format!("permission denied: peer credentials: {e}"),
                    },
                };
                let _ = api::write_response(&stream, &response);
            });
    }
}

async fn answer(agent: &Arc<Agent>, request: Request) -> Response {
    let result = match request {
        Request::Ping => Ok(Response::Done {
            lines: vec![],
            warnings: vec![],
            failed: false,
        }),
        Request::Apply { files, create } => {
            let existing = if create {
                Existing::Refuse
            } else {
                Existing::Update
            };
            apply(agent, &files, "api", existing).await
        }
        Request::DeleteFiles {
            files,
            grace_period,
            wait,
        } => delete_files(agent, &files, grace_period, wait).await,
        Request::Delete {
            namespace,
            names,
            grace_period,
            wait,
        } => delete(agent, &namespace, &names, grace_period, wait).await,
        Request::Get { namespace, full } => get(agent, namespace.as_deref(), full),
        Request::GetClaims { namespace } => claims_apply::get(agent, namespace.as_deref()),
        Request::DeleteClaims { namespace, names } => {
            claims_apply::delete(agent, &namespace, &names)
        }
        Request::TopPods {
            namespace,
            name,
            containers,
            sort_by,
        } => top_pods(agent, namespace, name, containers, sort_by).await,
        Request::TopNode => {
            let agent2 = agent.clone();
            let usage = tokio::task::spawn_blocking(move || top::node(&agent2)).await;
            match usage {
                Ok(usage) => Ok(top::node_table(&agent.node, &usage)
                    .map(|text| Response::Text { text })
                    .unwrap_or_else(|message| Response::Error { message })),
                Err(e) => Err(AgentError::Refused(format!("top node: {e}"))),
            }
        }
        Request::DescribeNode { name } => match name {
            Some(n) if n != agent.node => Ok(Response::Error {
                message: format!("nodes \"{n}\" not found"),
            }),
            _ => describe_node::view(agent).map(|v| Response::Text {
                text: describe_node::render(&v),
            }),
        },
        Request::Describe { namespace, name } => describe::describe(agent, &namespace, &name)
            .map(|text| Response::Text { text })
            .map_err(AgentError::from),
        Request::Events { namespace, pod } => agent
            .db()
            .all_events(namespace.as_deref())
            .map(|events| Response::Events {
                events: events
                    .into_iter()
                    .filter(|e| pod.as_deref().is_none_or(|p| e.kind == "Pod" && p == e.pod))
                    .collect(),
            })
            .map_err(AgentError::from),
        Request::Info => Ok(Response::Info {
            pid: std::process::id(),
            watches: watch::open_watches(),
        }),
        Request::Watch { .. } => Ok(Response::Error {
            message: "a watch is served on a connection of its own".into(),
        }),
    };
    result.unwrap_or_else(|e| Response::Error {
        message: e.to_string(),
    })
}

/// `top pod`: kubectl's table, or its error, from a sample taken now.
async fn top_pods(
    agent: &Arc<Agent>,
    namespace: Option<String>,
    name: Option<String>,
    containers: bool,
    sort_by: String,
) -> Result<Response> {
    let sort_by: top::SortBy = match sort_by.parse() {
        Ok(s) => s,
        Err(message) => return Ok(Response::Error { message }),
    };
    let agent2 = agent.clone();
    let ns = namespace.clone();
    let usage = tokio::task::spawn_blocking(move || top::pods(&agent2, ns.as_deref()))
        .await
        .map_err(|e| AgentError::Refused(format!("top pod: {e}")))??;
    let query = top::PodQuery {
        namespace: namespace.as_deref(),
        name: name.as_deref(),
        containers,
        sort_by,
    };
    Ok(match top::pod_table(usage, &query) {
        Ok(text) => Response::Text { text },
        // kubectl says so on stderr and succeeds.
        Err(message) if message.starts_with("No resources found") => Response::Done {
            lines: vec![],
            warnings: vec![message],
            failed: false,
        },
        Err(message) => Response::Error { message },
    })
}

/// Parse and validate every document of every file with `load`
/// ([`podrun_spec::load_runnable`] for what is to run here); any problem refuses
/// the whole request.
fn load(
    files: &[(String, String)],
    load: fn(&str, &str) -> Result<Vec<podrun_spec::Object>, podrun_spec::SpecErrors>,
) -> Result<Vec<podrun_spec::Object>> {
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for (source, text) in files {
        match load(text, source) {
            Ok(o) => objects.extend(o),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        return Err(AgentError::Refused(problems.join("\n")));
    }
    Ok(objects)
}

fn namespace_of(o: &podrun_spec::Object) -> String {
    let ns = o.namespace();
    if ns.is_empty() {
        "default".into()
    } else {
        ns.to_string()
    }
}

/// A new object's `metadata.uid`: a random (version 4) UUID, as the API
/// server assigns it.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    if let Err(e) = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()) {
        // Never on Linux ≥ 3.17; a time-based value keeps the UID unique.
        tracing::warn!("getrandom: {e}: the pod UID is made from the clock");
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            ^ (u128::from(std::process::id()) << 64);
        b = t.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `manifest` (a Pod as JSON) with `metadata.uid` set to `uid`.
fn with_uid(manifest: &str, uid: &str) -> Result<String, AgentError> {
    let mut value: serde_json::Value =
        serde_json::from_str(manifest).map_err(|source| AgentError::Encode {
            what: "the manifest".into(),
            source,
        })?;
    value["metadata"]["uid"] = uid.into();
    Ok(value.to_string())
}

/// The `metadata.uid` a stored manifest has, if any.
fn uid_of(manifest: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(manifest).ok()?;
    value["metadata"]["uid"].as_str().map(String::from)
}

/// A hash of what was applied, to tell an unchanged manifest from a changed one.
fn manifest_hash(json: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(json.as_bytes()))
}

/// What [`apply`] does with a pod that exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Leave it or update it (`podrun apply`).
    Update,
    /// Refuse the whole request (`podrun run`, as `kubectl create`).
    Refuse,
}

/// Store the objects of `files` (all or nothing), then have each new or
/// changed pod's worker start it and report how that went.
pub async fn apply(
    agent: &Arc<Agent>,
    files: &[(String, String)],
    source: &str,
    existing: Existing,
) -> Result<Response> {
    let objects = load(files, podrun_spec::load_runnable)?;
    let mut changes = Vec::new();
    let mut lines = Vec::new();
    let mut started = Vec::new();
    // Pods that take the change in place (not scheduled again).
    let mut updated = Vec::new();
    // Claims stored now, whose directories are made before the commit.
    let mut new_claims = Vec::new();
    let taken_by_run: std::collections::HashSet<(String, String)> =
        crate::pods::list(&agent.settings.run_root)
            .into_iter()
            .filter(|p| !p.record.agent)
            .map(|p| (p.record.namespace, p.record.name))
            .collect();
    {
        let db = agent.db();
        for o in &objects {
            let namespace = namespace_of(o);
            let name = o.name().to_string();
            match o {
                podrun_spec::Object::Pod(pod) => {
                    let mut pod = pod.clone();
                    pod.metadata.namespace = Some(namespace.clone());
                    let manifest =
                        serde_json::to_string(&pod).map_err(|source| AgentError::Encode {
                            what: format!("pod/{name}"),
                            source,
                        })?;
                    let hash = manifest_hash(&manifest);
                    if taken_by_run.contains(&(namespace.clone(), name.clone())) {
                        return Err(AgentError::Refused(format!("pod/{name}: a pod of that name, run by podrun run in the foreground, exists in namespace {namespace}")));
                    }
                    match db.pod(&namespace, &name)? {
                        Some(_) if existing == Existing::Refuse => return Err(AgentError::Refused(format!(
                            "pod/{name}: already exists in namespace {namespace} (podrun delete pod {name} -n {namespace} removes it)"
                        ))),
                        Some(row) if row.source != source => return Err(AgentError::Refused(format!(
                            "pod/{name}: namespace {namespace} already has it from {} ",
                            describe_source(&row.source)
                        ))),
                        Some(row) if row.hash == hash && row.state != PodPhase::Deleting => {
                            lines.push(format!("pod/{name} unchanged"));
                        }
                        Some(row) if row.state == PodPhase::Deleting => return Err(AgentError::Refused(format!(
                            "pod/{name}: is being deleted; apply again when it is gone"
                        ))),
                        Some(row) => {
                            // A static pod's changed file is a new pod (kubelet).
                            let in_place = !source.starts_with("file:")
                                && updatable_in_place(&row.manifest, &pod);
                            let (ns, n) = (namespace.clone(), name.clone());
                            // A pod changed in place is the same object; a
                            // replaced one is a new one, with a new UID.
                            changes.push(if in_place {
                                let uid = uid_of(&row.manifest).unwrap_or_else(new_uid);
                                let manifest = with_uid(&manifest, &uid)?;
                                Change::UpdatePod { namespace: ns, name: n, manifest, hash }
                            } else {
                                let manifest = with_uid(&manifest, &new_uid())?;
                                Change::ReplacePod { namespace: ns, name: n, manifest, hash }
                            });
                            lines.push(format!("pod/{name} configured"));
                            if in_place { &mut updated } else { &mut started }
                                .push((namespace, name));
                        }
                        None => {
                            changes.push(Change::CreatePod(PodRow {
                                namespace: namespace.clone(),
                                name: name.clone(),
                                pod_id: crate::pods::new_pod_id(&namespace, &name),
                                source: source.to_string(),
                                manifest: with_uid(&manifest, &new_uid())?,
                                hash,
                                state: PodPhase::Creating,
                                created: now(),
                                started: None,
                                error: None,
                                retry_at: None,
                                attempts: 0,
                                status: None,
                            }));
                            lines.push(format!("pod/{name} created"));
                            started.push((namespace, name));
                        }
                    }
                }
                podrun_spec::Object::PersistentVolumeClaim(claim) => {
                    let old = db.object(o.kind(), &namespace, &name)?;
                    let (change, line) = claims_apply::put(claim, old, &namespace, source)?;
                    if let Some(change) = change {
                        new_claims.push((namespace, name));
                        changes.push(change);
                    }
                    lines.push(line);
                }
                podrun_spec::Object::ConfigMap(_) | podrun_spec::Object::Secret(_) => {
                    let kind = o.kind();
                    let what = format!("{}/{name}", kind.to_lowercase());
                    let mut body = match o {
                        podrun_spec::Object::ConfigMap(c) => encode(c, &what)?,
                        podrun_spec::Object::Secret(s) => encode(s, &what)?,
                        _ => unreachable!("a pod or a claim"),
                    };
                    body["metadata"]["namespace"] = namespace.clone().into();
                    let body = body.to_string();
                    let old = db.object(kind, &namespace, &name)?;
                    let verb = match &old {
                        Some(o) if o.body == body => "unchanged",
                        Some(_) => "configured",
                        None => "created",
                    };
                    lines.push(format!("{}/{name} {verb}", kind.to_lowercase()));
                    if verb != "unchanged" {
                        changes.push(Change::PutObject(ObjectRow {
                            kind: kind.to_string(),
                            namespace,
                            name,
                            source: source.to_string(),
                            body,
                        }));
                    }
                }
            }
        }
    }
    // The claims' volumes first: a directory that cannot be made refuses the
    // whole request, and those made for it are removed (they are empty).
    claims_apply::create_dirs(&agent.settings.root, &new_claims)?;
    agent
        .db
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .apply(&changes)?;
    for (namespace, name) in &started {
        agent.event(
            namespace,
            name,
            "Normal",
            "Scheduled",
            &format!("Successfully assigned {namespace}/{name} to {}", agent.node),
        );
    }
    crash_point("apply:committed");
    let mut warnings = Vec::new();
    let waits: Vec<_> = started
        .iter()
        .chain(&updated)
        .map(|(ns, name)| {
            let agent = agent.clone();
            let (ns, name) = (ns.clone(), name.clone());
            tokio::spawn(async move { agent.sync(&ns, &name).await })
        })
        .collect();
    for w in waits {
        if let Ok(Err(e)) = w.await {
            warnings.push(e);
        }
    }
    Ok(Response::Done {
        failed: !warnings.is_empty(),
        lines,
        warnings,
    })
}

/// Whether `new` differs from the stored manifest `old` only in what the API
/// server lets a running pod change (ValidatePodUpdate, pkg/apis/core/validation):
/// containers' and init containers' images (and their defaulted
/// imagePullPolicy), activeDeadlineSeconds,
/// tolerations, labels and annotations. Such a pod keeps its sandbox, and
/// kubelet restarts only the containers whose spec changed. Any other change
/// makes a new pod, as kubelet does for a changed static pod.
fn updatable_in_place(old: &str, new: &k8s_openapi::api::core::v1::Pod) -> bool {
    let Ok(old) = serde_json::from_str::<k8s_openapi::api::core::v1::Pod>(old) else {
        return false;
    };
    let (Some(old_spec), Some(mut spec)) = (old.spec.clone(), new.spec.clone()) else {
        return false;
    };
    let names = |s: &k8s_openapi::api::core::v1::PodSpec| -> Vec<String> {
        s.init_containers
            .iter()
            .flatten()
            .chain(&s.containers)
            .map(|c| c.name.clone())
            .collect()
    };
    if names(&old_spec) != names(&spec) {
        return false;
    }
    // The new manifest with the updatable fields put back as they were must
    // be the old one.
    // imagePullPolicy too: it is defaulted from the image's tag, and the
    // manifest cannot tell a default from a choice (the API server keeps the
    // old value when kubectl apply leaves it out).
    for (c, was) in spec
        .init_containers
        .iter_mut()
        .flatten()
        .zip(old_spec.init_containers.iter().flatten())
        .chain(spec.containers.iter_mut().zip(&old_spec.containers))
    {
        c.image = was.image.clone();
        c.image_pull_policy = was.image_pull_policy.clone();
    }
    spec.active_deadline_seconds = old_spec.active_deadline_seconds;
    spec.tolerations = old_spec.tolerations.clone();
    let mut metadata = new.metadata.clone();
    metadata.labels = old.metadata.labels.clone();
    metadata.annotations = old.metadata.annotations.clone();
    // What the agent assigned is not the user's to give.
    metadata.uid = old.metadata.uid.clone();
    metadata == old.metadata && spec == old_spec
}

fn describe_source(source: &str) -> String {
    match source.strip_prefix("file:") {
        Some(path) => format!("the static pod manifest {path}"),
        None => "podrun apply".into(),
    }
}

async fn delete_files(
    agent: &Arc<Agent>,
    files: &[(String, String)],
    grace_period: Option<i64>,
    wait: bool,
) -> Result<Response> {
    // What is only deleted need not be runnable here.
    let objects = load(files, podrun_spec::load)?;
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let mut pods: Vec<(String, String)> = Vec::new();
    // Deleted after the pods, which may be what uses them.
    let mut claims: Vec<(String, String)> = Vec::new();
    for o in &objects {
        let (namespace, name) = (namespace_of(o), o.name().to_string());
        match o {
            podrun_spec::Object::Pod(_) => pods.push((namespace, name)),
            podrun_spec::Object::PersistentVolumeClaim(_) => claims.push((namespace, name)),
            _ => {
                let kind = o.kind();
                if agent.db().remove_object(kind, &namespace, &name)? {
                    lines.push(format!("{} \"{name}\" deleted", kind.to_lowercase()));
                } else {
                    warnings.push(format!(
                        "{}s \"{name}\" not found in namespace \"{namespace}\"",
                        kind.to_lowercase()
                    ));
                }
            }
        }
    }
    let mut by_ns: HashMap<String, Vec<String>> = HashMap::new();
    for (ns, name) in pods {
        by_ns.entry(ns).or_default().push(name);
    }
    let mut failed = !warnings.is_empty();
    for (ns, names) in by_ns {
        if let Response::Done {
            lines: l,
            warnings: w,
            failed: f,
        } = delete(agent, &ns, &names, grace_period, wait).await?
        {
            lines.extend(l);
            warnings.extend(w);
            failed |= f;
        }
    }
    let mut by_ns: HashMap<String, Vec<String>> = HashMap::new();
    for (ns, name) in claims {
        by_ns.entry(ns).or_default().push(name);
    }
    for (ns, names) in by_ns {
        if let Response::Done {
            lines: l,
            warnings: w,
            failed: f,
        } = claims_apply::delete(agent, &ns, &names)?
        {
            lines.extend(l);
            warnings.extend(w);
            failed |= f;
        }
    }
    Ok(Response::Done {
        lines,
        warnings,
        failed,
    })
}

/// Delete pods: mark each (committed), then have its worker stop and remove
/// it; answer once they are gone. The pod of a `podrun run` in the foreground
/// (not the agent's) is stopped and removed here; that run sees its monitor
/// gone and ends.
pub async fn delete(
    agent: &Arc<Agent>,
    namespace: &str,
    names: &[String],
    grace_period: Option<i64>,
    wait: bool,
) -> Result<Response> {
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let mut waits = Vec::new();
    for name in names {
        let now = chrono::Utc::now();
        let mut at = None;
        let marked = agent.db().mark_deleting(namespace, name, |manifest| {
            let (manifest, when) = mark_deletion(manifest, grace_period, now);
            at = when;
            manifest
        })?;
        if marked > 0 {
            if let Some(at) = at {
                let left = (at - now).to_std().unwrap_or_default();
                worker::set_deadline(namespace, name, std::time::Instant::now() + left);
            }
            crash_point("delete:marked");
            let agent = agent.clone();
            let (ns, n) = (namespace.to_string(), name.clone());
            waits.push((
                name.clone(),
                tokio::spawn(async move { agent.sync(&ns, &n).await }),
            ));
            continue;
        }
        // Not the agent's: a pod of `podrun run` in the foreground?
        match crate::pods::find(&agent.settings.run_root, namespace, name) {
            Ok(state) => {
                let runtime = agent.runtime.clone();
                let grace = grace_period.map(podrun_kubelet::grace::grace_period);
                let r = task(
                    tokio::task::spawn_blocking(move || {
                        crate::pods::stop_within(runtime.as_ref(), &state, grace)?;
                        crate::pods::teardown(runtime.as_ref(), &state)
                    })
                    .await,
                )?;
                match r {
                    Ok(()) => lines.push(format!("pod \"{name}\" deleted")),
                    Err(e) => warnings.push(e.to_string()),
                }
            }
            Err(e) => warnings.push(e.to_string()),
        }
    }
    for (name, w) in waits {
        if !wait {
            // The worker goes on with it.
            lines.push(format!("pod \"{name}\" deleted"));
            continue;
        }
        match task(w.await)? {
            Ok(()) => lines.push(format!("pod \"{name}\" deleted")),
            Err(e) => warnings.push(e),
        }
    }
    Ok(Response::Done {
        failed: !warnings.is_empty(),
        lines,
        warnings,
    })
}

/// `manifest` (a stored Pod) marked for deletion as the API server marks it:
/// `deletionGracePeriodSeconds` (`grace_period`, else the pod's
/// terminationGracePeriodSeconds) and `deletionTimestamp` (`now` plus that).
/// A pod marked already keeps the earlier end: the grace period can only
/// decrease. Returns the manifest and the end in force.
fn mark_deletion(
    manifest: &str,
    grace_period: Option<i64>,
    now: chrono::DateTime<chrono::Utc>,
) -> (String, Option<chrono::DateTime<chrono::Utc>>) {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(manifest) else {
        return (manifest.to_string(), None);
    };
    let own = value["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(podrun_kubelet::grace::DEFAULT_GRACE_SECONDS);
    let seconds = grace_period
        .unwrap_or(own)
        .clamp(0, podrun_kubelet::grace::MAX_GRACE_SECONDS);
    let mut at = now + chrono::Duration::seconds(seconds);
    let meta = &mut value["metadata"];
    let earlier = meta["deletionTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    match earlier {
        Some(t) if t <= at => at = t,
        _ => {
            meta["deletionTimestamp"] =
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into();
            meta["deletionGracePeriodSeconds"] = seconds.into();
        }
    }
    (value.to_string(), Some(at))
}

/// Every pod of the agent's and of `podrun run`'s in the foreground, as `get
/// pods` shows them.
fn get(agent: &Arc<Agent>, namespace: Option<&str>, full: bool) -> Result<Response> {
    let rows = agent.db().pods()?;
    // The agent's pods are what the database says (their status is stored
    // there); only the pods of `podrun run` in the foreground are read from
    // their directories, with the status their run reported.
    let ours: std::collections::HashSet<&str> = rows.iter().map(|r| r.pod_id.as_str()).collect();
    let others = crate::pods::list_except(&agent.settings.run_root, &ours);
    let mut pods: Vec<PodSummary> = Vec::new();
    for row in rows
        .iter()
        .filter(|r| namespace.is_none_or(|n| n == r.namespace))
    {
        let mut summary = worker::summary(row);
        if full {
            summary.pod = Some(worker::v1_pod(row, &summary)?);
        }
        pods.push(summary);
    }
    let now = chrono::Utc::now();
    for s in others
        .iter()
        .filter(|s| !s.record.agent && namespace.is_none_or(|n| n == s.record.namespace))
    {
        let pod = crate::pods::reported(s);
        let mut summary = PodSummary {
            namespace: s.record.namespace.clone(),
            name: s.record.name.clone(),
            ..PodSummary::of(&pod, s.age_seconds(), now)
        };
        if full {
            let mut value = encode(&pod, &format!("pod/{}", s.record.name))?;
            value["apiVersion"] = "v1".into();
            value["kind"] = "Pod".into();
            summary.pod = Some(value);
        }
        pods.push(summary);
    }
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(Response::Pods { pods })
}
