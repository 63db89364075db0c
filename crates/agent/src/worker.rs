//! One worker per pod (kubelet's pod workers): a task that moves its pod
//! through the states of [`PodPhase`], one committed step at a time, so that
//! an agent killed anywhere leaves a state the next agent finishes:
//!
//! - `creating`: whatever exists of the pod's ID is removed (a half-made
//!   earlier attempt), then its sandbox is made again: registered, its files
//!   made, the runtime's RunPodSandbox, then `running` is committed. A
//!   failure removes what the attempt made and retries with back-off.
//!   Containers are not made here: the syncs of a running pod pull each
//!   container's image and make the container just before each start, as
//!   kubelet's startContainer does, so one bad image holds only its container.
//! - `running`: the runtime's statuses of its containers are read every sync
//!   interval. A sandbox//!   that ended after every container did makes the pod `finished`; one that
//!   is gone otherwise (killed, the node restarted) means a lost sandbox: the
//!   rest is removed and the pod made again under a new ID, as kubelet does.
//! - `replacing`: the old sandbox is stopped and removed, then `creating`.
//! - `deleting`: stopped and removed, then the row is deleted.

use super::api::PodSummary;
use super::db::{PodPhase, PodRow};
use super::{crash_point, now, Agent, Msg};
use crate::create::CreateError;
use crate::db::DbError;
use crate::pods::PodsError;
use crate::pods::{self, PodRecord, PodState};
use k8s_openapi::api::core::v1::Pod;
use podrun_kubelet::probe::ContainerProbes;
use podrun_runtime::api::{ContainerFilter, PodSandboxStatus, SandboxState, ServiceError};
use podrun_runtime::ContainerConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Why a step of a pod's worker failed (the message names the pod and the step).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The state database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The pod's records on disk.
    #[error(transparent)]
    Pods(#[from] PodsError),
    /// Its sandbox could not be made.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// {what}: {source} (a stored document that does not read back)
    #[error("{what}: {source}")]
    Decode {
        /// What was read.
        what: String,
        /// The decoder's error.
        source: serde_json::Error,
    },
    /// pod/{pod}: {source}
    #[error("pod/{pod}: {source}")]
    Runtime {
        /// The pod's name.
        pod: String,
        /// The runtime's error.
        source: ServiceError,
    },
    /// A thread of the step could not be started, or panicked.
    #[error("{0}")]
    Thread(String),
}

type Result<T, E = WorkerError> = std::result::Result<T, E>;

pub(crate) fn decode<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|source| WorkerError::Decode {
        what: what.into(),
        source,
    })
}

fn joined<T>(r: std::result::Result<T, tokio::task::JoinError>) -> Result<T> {
    r.map_err(|e| WorkerError::Thread(format!("a blocking step: {e}")))
}

mod execute;
mod observe;
mod probing;
mod record;
mod terminating;
use execute::Unmade;
use observe::parse_time;

/// What one sync did.
struct Step {
    /// Reported to whoever waits for this sync.
    result: Result<(), String>,
    /// When to look again (None: the sync interval).
    wake: Option<Duration>,
    /// The pod is gone: the worker ends.
    gone: bool,
}

/// When the termination of each pod being deleted must be over: set when its
/// deletion is asked for, and only ever moved earlier ("the grace period can
/// only decrease", pkg/kubelet/pod_workers.go), so that a second `delete` with
/// a shorter grace period cuts a termination in progress short.
static DEADLINES: Mutex<Option<HashMap<(String, String), Instant>>> = Mutex::new(None);

/// Pod `namespace/name` must be terminated by `at` (or earlier, if it had to
/// be already); returns the deadline in force.
pub fn set_deadline(namespace: &str, name: &str, at: Instant) -> Instant {
    let mut map = DEADLINES.lock().unwrap_or_else(|e| e.into_inner());
    let entry = map
        .get_or_insert_with(HashMap::new)
        .entry((namespace.into(), name.into()))
        .or_insert(at);
    *entry = (*entry).min(at);
    *entry
}

/// The deadline of the termination of `namespace/name`, if one was set.
fn deadline(namespace: &str, name: &str) -> Option<Instant> {
    DEADLINES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()?
        .get(&(namespace.into(), name.into()))
        .copied()
}

/// The pod is gone: its deadline with it.
fn forget_deadline(namespace: &str, name: &str) {
    if let Some(map) = DEADLINES.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        map.remove(&(namespace.into(), name.into()));
    }
}

/// The worker of pod `key` (namespace, name).
pub(super) async fn run(
    agent: Arc<Agent>,
    key: (String, String),
    mut rx: mpsc::UnboundedReceiver<Msg>,
) {
    let (namespace, name) = key.clone();
    let mut waiters = Vec::new();
    loop {
        while let Ok(Msg::Sync(w)) = rx.try_recv() {
            waiters.extend(w);
        }
        let step = sync(&agent, &namespace, &name).await;
        for w in waiters.drain(..) {
            let _ = w.send(step.result.clone());
        }
        if step.gone {
            // Under the workers' lock no message can come in between.
            let mut workers = agent.workers.lock().unwrap_or_else(|e| e.into_inner());
            match rx.try_recv() {
                Ok(Msg::Sync(w)) => waiters.extend(w),
                Err(_) => {
                    workers.remove(&key);
                    return;
                }
            }
            continue;
        }
        // Spread the pods' syncs over the interval (no burst of 100 at once).
        let wait = step.wake.unwrap_or_else(|| jitter(agent.sync_interval));
        tokio::select! {
            m = rx.recv() => match m {
                Some(Msg::Sync(w)) => waiters.extend(w),
                None => return,
            },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// A number in [0, 1) from the clock's nanoseconds (good enough to spread
/// wake-ups).
fn random_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    f64::from(nanos) / 1e9
}

/// `d` ± 20 %.
fn jitter(d: Duration) -> Duration {
    d - d / 5 + d.mul_f64(0.4 * random_fraction())
}

async fn sync(agent: &Arc<Agent>, namespace: &str, name: &str) -> Step {
    // kubelet's pod worker duration: `create` for a sync that made the
    // pod's sandbox, else `sync`.
    let started = std::time::Instant::now();
    let mut created = false;
    let step = sync_once(agent, namespace, name, &mut created).await;
    let operation = if created { "create" } else { "sync" };
    crate::metrics::pod_worker(operation, started.elapsed());
    step
}

async fn sync_once(agent: &Arc<Agent>, namespace: &str, name: &str, created: &mut bool) -> Step {
    match sync_steps(agent, namespace, name, created).await {
        Ok(step) => step,
        Err(e) => {
            let message = e.to_string();
            if message.starts_with("pod/") {
                tracing::warn!("{message}");
            } else {
                tracing::warn!("pod/{name}: {message}");
            }
            Step {
                result: Err(message),
                wake: None,
                gone: false,
            }
        }
    }
}

async fn sync_steps(
    agent: &Arc<Agent>,
    namespace: &str,
    name: &str,
    created: &mut bool,
) -> Result<Step> {
    loop {
        let Some(row) = agent.db().pod(namespace, name)? else {
            return Ok(Step {
                result: Ok(()),
                wake: None,
                gone: true,
            });
        };
        match row.state {
            PodPhase::Creating => {
                if let Some(wait) = retry_wait(&row) {
                    return Ok(Step {
                        result: Err(row.error.clone().unwrap_or_default()),
                        wake: Some(wait),
                        gone: false,
                    });
                }
                *created = true;
                match create(agent, &row).await {
                    Ok(()) => {
                        crash_point("create:started");
                        agent.db().set_running(namespace, name, &now())?;
                    }
                    Err(e) => {
                        let message = e.to_string();
                        let delay = creation_backoff(row.attempts);
                        let retry_at = chrono::Utc::now()
                            + chrono::Duration::from_std(delay).unwrap_or_default();
                        agent.db().set_error(
                            namespace,
                            name,
                            &message,
                            &retry_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        )?;
                        // kubelet: the pod stays ContainerCreating and says why here.
                        agent.event(
                            namespace,
                            name,
                            "Warning",
                            "FailedCreatePodSandBox",
                            &format!("Failed to create pod sandbox: {message}"),
                        );
                        return Ok(Step {
                            result: Err(message),
                            wake: Some(delay),
                            gone: false,
                        });
                    }
                }
            }
            PodPhase::Running => return supervise(agent, &row).await,
            PodPhase::Finished => {
                return Ok(Step {
                    result: Ok(()),
                    wake: Some(Duration::from_secs(3600)),
                    gone: false,
                })
            }
            PodPhase::Replacing => {
                agent.event(
                    namespace,
                    name,
                    "Normal",
                    "Killing",
                    "Stopping the pod: its manifest changed",
                );
                remove(agent, &row).await?;
                agent.evictions().remove(&row.pod_id);
                crash_point("replace:removed");
                let id = pods::new_pod_id(namespace, name);
                // A new pod: its containers start from nothing.
                agent.db().new_sandbox(namespace, name, &id, |_| None)?;
            }
            PodPhase::Deleting => {
                remove(agent, &row).await?;
                agent.evictions().remove(&row.pod_id);
                crash_point("delete:removed");
                agent.db().remove_pod(namespace, name)?;
                forget_deadline(namespace, name);
                return Ok(Step {
                    result: Ok(()),
                    wake: None,
                    gone: true,
                });
            }
        }
    }
}

/// When the deletion recorded in `manifest` (its `deletionTimestamp`) must
/// be over, as an instant of this process's clock.
fn deletion_deadline(manifest: &str) -> Option<Instant> {
    let value: serde_json::Value = serde_json::from_str(manifest).ok()?;
    let at = chrono::DateTime::parse_from_rfc3339(value["metadata"]["deletionTimestamp"].as_str()?)
        .ok()?;
    let left = (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    Some(Instant::now() + left)
}

/// How long until a failed creation may be tried again.
fn retry_wait(row: &PodRow) -> Option<Duration> {
    let at = chrono::DateTime::parse_from_rfc3339(row.retry_at.as_deref()?).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
        .filter(|d| !d.is_zero())
}

/// The back-off of a sandbox that could not be made (kubelet's, as for image
/// pulls): 10 s, doubling, at most 5 minutes.
fn creation_backoff(failures_before: i64) -> Duration {
    let base = std::env::var("PODRUN_BACKOFF_INITIAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000u64);
    let max = 300_000u64.max(base);
    Duration::from_millis(
        base.saturating_mul(1u64 << failures_before.clamp(0, 20))
            .min(max),
    )
}

/// The ConfigMaps, Secrets and PersistentVolumeClaims of a namespace, as the
/// pod's sources.
fn sources(agent: &Agent, namespace: &str) -> Result<crate::env::Sources> {
    let mut sources = crate::env::Sources::default();
    for o in agent.db().objects(namespace)? {
        match o.kind.as_str() {
            "ConfigMap" => {
                let what = format!("configmap/{}", o.name);
                sources
                    .config_maps
                    .insert(o.name.clone(), decode(&o.body, &what)?);
            }
            "Secret" => {
                let what = format!("secret/{}", o.name);
                sources
                    .secrets
                    .insert(o.name.clone(), decode(&o.body, &what)?);
            }
            "PersistentVolumeClaim" => {
                let what = format!("persistentvolumeclaim/{}", o.name);
                sources
                    .claims
                    .insert(o.name.clone(), decode(&o.body, &what)?);
            }
            _ => {}
        }
    }
    Ok(sources)
}

/// Make the pod of `row` (under `row.pod_id`), from nothing: what an earlier
/// attempt left is removed first.
async fn create(agent: &Arc<Agent>, row: &PodRow) -> Result<()> {
    let pod: Pod = decode(&row.manifest, "the stored manifest")?;
    remove(agent, row).await?;
    crash_point("create:cleaned");
    let settings = &agent.settings;
    let state = {
        let (pod, id) = (pod.clone(), row.pod_id.clone());
        let root = settings.root.clone();
        let agent_owned = !agent.run_mode;
        let run_root = settings.run_root.clone();
        joined(
            tokio::task::spawn_blocking(move || {
                pods::register(&run_root, &root, &pod, Some(&id), agent_owned)
            })
            .await,
        )??
    };
    crash_point("create:registered");
    // RunPodSandbox returns once the sandbox is ready (its monitor answers);
    // its containers are the supervisor's to start.
    let runtime = agent.runtime.clone();
    let started = joined(
        tokio::task::spawn_blocking(move || crate::create::start_pod(&runtime, &pod, state)).await,
    )??;
    let crate::create::Started { mut guard, .. } = started;
    guard.disarm();
    Ok(())
}

/// The pod of `row` as it is on disk, or as the row says when its state
/// directory is gone (so what remains of it can still be removed).
fn state_of(agent: &Agent, row: &PodRow) -> Result<PodState> {
    if let Some(s) = pods::load(&agent.settings.run_root, &row.pod_id) {
        return Ok(s);
    }
    Ok(PodState {
        record: PodRecord {
            namespace: row.namespace.clone(),
            name: row.name.clone(),
            pod_id: row.pod_id.clone(),
            created: row.created.clone(),
            data_dir: agent.settings.root.join("pods").join(&row.pod_id),
            manifest: decode(&row.manifest, "the stored manifest")?,
            agent: true,
        },
        run_dir: agent.settings.run_root.join("pods").join(&row.pod_id),
    })
}

/// Run `f` on a new thread and wait for it without holding a runtime thread.
async fn on_thread<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pod-stop".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| WorkerError::Thread(format!("start a thread to stop the pod: {e}")))?;
    rx.await
        .map_err(|_| WorkerError::Thread("the stopping thread panicked".into()))?
}

/// Stop the pod's sandbox of `row.pod_id` and remove everything of it.
async fn remove(agent: &Arc<Agent>, row: &PodRow) -> Result<()> {
    let state = state_of(agent, row)?;
    // Every part of a pod is made after its run directory (registration comes
    // first) and removed before both of its directories (teardown removes
    // them last): with neither, nothing of it exists, and a new pod's
    // creation needs no clean-up (nor a scan of /proc for a monitor).
    if !state.run_dir.exists() && !state.record.data_dir.exists() {
        return Ok(());
    }
    // The deadline of a deletion (kept in memory, and in the manifest's
    // deletionTimestamp for an agent that starts again mid-way); a pod
    // replaced or recreated gets its own grace period from now.
    let (ns, name) = (row.namespace.clone(), row.name.clone());
    if row.state == PodPhase::Deleting && deadline(&ns, &name).is_none() {
        let at = deletion_deadline(&row.manifest).unwrap_or_else(|| {
            let pod: Option<Pod> = serde_json::from_str(&row.manifest).ok();
            Instant::now()
                + pod.as_ref().map_or(
                    Duration::from_secs(30),
                    podrun_kubelet::grace::pod_grace_period,
                )
        });
        set_deadline(&ns, &name, at);
    }
    let own = Instant::now() + podrun_kubelet::grace::pod_grace_period(&state.record.manifest);
    let runtime = agent.runtime.clone();
    let agent2 = agent.clone();
    let deleting = row.state == PodPhase::Deleting;
    // A thread of its own, not the blocking pool: stopping waits out grace periods.
    on_thread(move || -> Result<()> {
        let had = ready(runtime.as_ref(), &state.record.pod_id).is_some();
        let pod = state.record.manifest.clone();
        let events = |t: &str, r: &str, m: String| agent2.event(&ns, &name, t, r, &m);
        let until = || deadline(&ns, &name).unwrap_or(own);
        let stop = || super::terminate::terminate(runtime.as_ref(), &state, &pod, &until, &events);
        // A pod being deleted shows each container's end as it comes.
        let stopped = if deleting && had {
            terminating::recording(&agent2, &ns, &name, stop)
        } else {
            stop()
        };
        if let Err(e) = stopped {
            tracing::warn!("pod/{name}: graceful stop: {e}");
        }
        let grace = until().saturating_duration_since(Instant::now());
        pods::stop_within(runtime.as_ref(), &state, Some(grace))?;
        if had {
            crash_point("remove:stopped");
        }
        pods::teardown(runtime.as_ref(), &state)?;
        Ok(())
    })
    .await
}

/// A running pod: observe it through its monitor, decide with the kubelet
/// crate, carry the actions out, store what was seen and report its status.
async fn supervise(agent: &Arc<Agent>, row: &PodRow) -> Result<Step> {
    let state = pods::load(&agent.settings.run_root, &row.pod_id);
    let sandbox = {
        let runtime = agent.runtime.clone();
        let id = row.pod_id.clone();
        joined(tokio::task::spawn_blocking(move || ready(runtime.as_ref(), &id)).await)?
    };
    let alive = state.is_some() && sandbox.is_some();
    if !alive && agent.run_mode {
        // `podrun run`: deleted from elsewhere, or its monitor died: it ends.
        agent
            .db()
            .set_state(&row.namespace, &row.name, PodPhase::Finished)?;
        return Ok(Step {
            result: Ok(()),
            wake: None,
            gone: false,
        });
    }
    let Some(state) = state else {
        return recreate(agent, row, "its state is gone (the node restarted?)").await;
    };
    let Some(sandbox) = sandbox else {
        return recreate(agent, row, "its sandbox is not ready (its monitor is gone)").await;
    };
    let (agent2, row2) = (agent.clone(), row.clone());
    let round = joined(
        tokio::task::spawn_blocking(move || drive(&agent2, &row2, &state, &sandbox)).await,
    )??;
    if round.finished {
        agent
            .db()
            .set_state(&row.namespace, &row.name, PodPhase::Finished)?;
    }
    Ok(Step {
        result: round.result,
        wake: round.wake,
        gone: false,
    })
}

/// What one round of [`drive`] found.
struct Round {
    result: Result<(), String>,
    wake: Option<Duration>,
    /// The pod ended and its monitor was told to shut down.
    finished: bool,
}

/// The kubelet crate's back-off settings, scaled by the test-only
/// `PODRUN_BACKOFF_INITIAL_MS` / `PODRUN_BACKOFF_MAX_MS`.
pub(super) fn kubelet_config() -> podrun_kubelet::Config {
    let ms = |var: &str| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
    };
    let mut config = podrun_kubelet::Config::default();
    if let Some(initial) = ms("PODRUN_BACKOFF_INITIAL_MS") {
        config.back_off.initial = initial;
        config.image_back_off.initial = initial;
        config.worker_back_off = initial;
    }
    if let Some(max) = ms("PODRUN_BACKOFF_MAX_MS") {
        config.back_off.max = max;
        config.image_back_off.max = max;
    }
    config
}

/// What the agent keeps of a container between syncs (and agents). A stored
/// value that does not parse is an error, never a silent reset of restart
/// counts and back-off.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Memory {
    #[serde(flatten)]
    observation: podrun_kubelet::ContainerObservation,
    /// Not `probes`: the observation has a field of that name (its verdicts).
    #[serde(default)]
    probe_state: Option<ContainerProbes>,
}

/// The state database, where a sync's records go.
struct DbRecords<'a> {
    agent: &'a Agent,
    ns: &'a str,
    name: &'a str,
}

impl record::Records for DbRecords<'_> {
    fn set_container(
        &mut self,
        container: &str,
        restarts: i64,
        memory: &str,
    ) -> Result<(), DbError> {
        let db = self.agent.db();
        db.set_container(self.ns, self.name, container, restarts, Some(memory))
    }

    fn set_status(&mut self, status: &str) -> Result<(), DbError> {
        self.agent.db().set_status(self.ns, self.name, status)
    }
}

/// The imageID the API shows: the repository with the digest it was pulled
/// by (kubelet's ImageRef, from the runtime's ImageStatus).
fn image_id(images: &dyn podrun_runtime::ImageService, image: &str) -> Option<String> {
    let spec = podrun_runtime::ImageSpec {
        image: image.into(),
        ..Default::default()
    };
    images
        .image_status(&spec)
        .ok()
        .flatten()?
        .repo_digests
        .into_iter()
        .next()
}

/// The sandbox of pod ID `id` if the runtime has it ready.
fn ready(runtime: &dyn podrun_runtime::RuntimeService, id: &str) -> Option<PodSandboxStatus> {
    runtime
        .pod_sandbox_status(id)
        .ok()
        .filter(|s| s.sandbox.state == SandboxState::Ready)
}

/// What a look at a running pod finds: kubelet's relist (the runtime's
/// statuses of the sandbox's containers) merged into what the agent
/// remembers of each container.
struct Seen {
    /// The node's facts with the pod's IPs.
    node: crate::env::NodeFacts,
    /// The observation, the runtime's answer merged in.
    observed: podrun_kubelet::PodObservation,
    /// The containers' probe state.
    probes: HashMap<String, ContainerProbes>,
    /// Each container's memory as stored (None: never stored).
    stored: HashMap<String, Option<String>>,
    /// The runtime's answer.
    containers: Vec<podrun_runtime::api::ContainerStatus>,
}

/// Look at pod `row` (its sandbox ready) at `now` (blocking: it asks the
/// runtime): SyncPod's observe step, and what a terminating pod's status
/// is made from.
fn see(
    agent: &Agent,
    row: &PodRow,
    pod: &Pod,
    state: &PodState,
    sandbox: &PodSandboxStatus,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Seen> {
    let (ns, name) = (row.namespace.as_str(), row.name.as_str());
    // The pod's IPs as its sandbox's status gives them (kubelet's
    // GetPodStatus), the node's for a hostNetwork pod, and the node's own: for
    // the status and the containers' environment.
    let mut node = crate::create::node_facts();
    let node_ips: Vec<std::net::IpAddr> = node
        .host_ips
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let pod_ips = podrun_kubelet::network::pod_ips(pod, &sandbox.ips, &node_ips);
    node.pod_ips = pod_ips.iter().map(ToString::to_string).collect();
    let mut observed = podrun_kubelet::PodObservation {
        sandbox: podrun_kubelet::SandboxState::Ready,
        start_time: row.started.as_deref().and_then(parse_time),
        pod_ips: node.pod_ips.clone(),
        host_ips: node.host_ips.clone(),
        eviction: crate::eviction::recorded(agent, row),
        ..Default::default()
    };
    // What the agent remembers of each container (restarts, back-off, last
    // exit, its probes' state).
    let specs: Vec<&k8s_openapi::api::core::v1::Container> = podrun_spec::containers(pod).collect();
    let mut stored = HashMap::new();
    let mut probes: HashMap<String, ContainerProbes> = HashMap::new();
    for c in &specs {
        let (_, memory) = agent.db().container(ns, name, &c.name)?;
        let m: Memory = match memory.as_deref() {
            Some(m) => decode(
                m,
                &format!("pod/{name}: container {}: stored state", c.name),
            )?,
            None => Memory::default(),
        };
        stored.insert(c.name.clone(), memory);
        observed.containers.insert(c.name.clone(), m.observation);
        probes.insert(
            c.name.clone(),
            m.probe_state.unwrap_or_else(|| ContainerProbes::new(c)),
        );
    }
    // What the runtime holds now: an exit while the agent was down is here too.
    let filter = ContainerFilter {
        sandbox_id: Some(sandbox.sandbox.id.clone()),
        ..Default::default()
    };
    let containers =
        agent
            .runtime
            .list_containers(&filter)
            .map_err(|source| WorkerError::Runtime {
                pod: name.into(),
                source,
            })?;
    observe::merge(&mut observed, &mut probes, &containers, now, |cs| {
        pods::termination_message(&state.record.data_dir, &cs.name).or_else(|| {
            // A failed container of FallbackToLogsOnError that left no
            // message: its log's last lines.
            let spec = specs.iter().find(|s| s.name == cs.name)?;
            let fallback =
                spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
            (fallback && cs.exit_code != 0).then_some(())?;
            pods::log_tail_message(&cs.log_path, parse_time(&cs.started_at))
        })
    });
    for cs in containers.iter().filter(|c| c.log_lines_dropped > 0) {
        let Some(o) = observed.containers.get_mut(&cs.name) else {
            continue;
        };
        if o.log_drops_reported.as_deref() != Some(cs.id.as_str()) {
            o.log_drops_reported = Some(cs.id.clone());
            let message = format!(
                "container {}: {} log lines could not be written to {} (is its file system full?); lines are dropped until it can be written",
                cs.name,
                cs.log_lines_dropped,
                cs.log_path.display()
            );
            agent.event(ns, name, "Warning", "LogLinesDropped", &message);
        }
    }
    Ok(Seen {
        node,
        observed,
        probes,
        stored,
        containers,
    })
}

/// One sync of a running pod (blocking: it asks the runtime).
/// kubelet's SyncPod: observe, `compute_pod_actions`, kill, start, record.
fn drive(
    agent: &Agent,
    row: &PodRow,
    state: &PodState,
    sandbox: &PodSandboxStatus,
) -> Result<Round> {
    let (ns, name) = (row.namespace.as_str(), row.name.as_str());
    let pod: Pod = decode(&row.manifest, "the stored manifest")?;
    let config = kubelet_config();
    let now = chrono::Utc::now();
    let Seen {
        node,
        mut observed,
        mut probes,
        stored,
        containers,
    } = see(agent, row, &pod, state, sandbox, now)?;
    let rt = agent.runtime.as_ref();
    let in_sandbox = pods::InSandbox {
        state,
        runtime: rt,
        sandbox,
    };
    // The volume manager's part of a sync: a changed ConfigMap or Secret (or
    // labels) reaches the volumes of the running containers.
    let mut sources = None;
    if crate::volumes::any(&pod) {
        let found = self::sources(agent, ns)?;
        let existing = crate::volumes::Which::Existing;
        if let Err(e) =
            crate::volumes::set_up(&pod, &state.record.data_dir, &found, &node, existing)
        {
            let message = crate::volumes::failed_mount_message(&e);
            agent.event(ns, name, "Warning", "FailedMount", &message);
        }
        sources = Some(found);
    }
    let take_over = probing::TakeOver {
        agent_started: agent.started_at,
        jitter: !agent.run_mode,
        random: random_fraction(),
    };
    probing::run_due(
        &pod,
        &mut observed,
        &mut probes,
        now,
        &take_over,
        &mut |spec, probe| super::probe::run(&in_sandbox, spec, probe),
        &|reason, message| agent.event(ns, name, "Warning", reason, message),
    );
    let actions = podrun_kubelet::compute_pod_actions(&pod, &observed, now, &config);
    let mut agent_node = AgentNode {
        agent,
        row,
        state,
        pod: &pod,
        node: &node,
        in_sandbox,
        sources,
    };
    let round = execute::Round {
        pod: &pod,
        sandbox: &sandbox.sandbox.id,
        reported: &containers,
        actions: &actions,
        now,
        config: &config,
    };
    let execute::Executed { failures, finished } =
        execute::execute(&round, &mut observed, &mut probes, rt, &mut agent_node).map_err(
            |source| WorkerError::Runtime {
                pod: name.into(),
                source,
            },
        )?;
    // Record: what changed, then the status, committed before anyone sees it.
    let outcome = record::Outcome {
        pod: &pod,
        observed: &observed,
        probes: &probes,
        stored: &stored,
        status: row.status.as_deref(),
        now,
        config: &config,
    };
    if record::record(&outcome, &mut DbRecords { agent, ns, name })? {
        // kubelet: from first seeing the pod to its phase Running.
        if let Some(seen) = observe::parse_time(&row.created) {
            let since = (chrono::Utc::now() - seen).to_std().unwrap_or_default();
            crate::metrics::pod_started(since);
        }
    }
    let wake = probing::next_wake(
        &pod,
        &observed,
        &probes,
        &actions,
        chrono::Utc::now(),
        agent.sync_interval,
    );
    Ok(Round {
        result: if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        },
        wake,
        finished,
    })
}

/// Container `spec` made for a start: its image ensured by its pull policy
/// (waiting for the pull: kubelet's SyncPod does too), its environment read
/// from the namespace's ConfigMaps and Secrets (`sources`, read once per
/// sync) and the node's facts with the pod's IPs (`node`), its root
/// filesystem and bundle made.
fn make_container(
    agent: &Agent,
    state: &PodState,
    pod: &Pod,
    spec: &k8s_openapi::api::core::v1::Container,
    sources: &mut Option<crate::env::Sources>,
    node: &crate::env::NodeFacts,
    events: crate::create::EventSink<'_>,
) -> Result<ContainerConfig, Unmade> {
    crate::create::ensure_image(agent.image_service.as_ref(), spec, events)
        .map_err(Unmade::Pull)?;
    crate::create::ensure_volume_images(agent.image_service.as_ref(), pod, events)
        .map_err(Unmade::Pull)?;
    // The driver names the container itself.
    let cause = |e: &dyn std::error::Error| {
        let text = e.to_string();
        let prefix = format!("container {}: ", spec.name);
        text.strip_prefix(&prefix).map(String::from).unwrap_or(text)
    };
    let sources = match sources {
        Some(s) => s,
        None => sources.insert(
            self::sources(agent, &state.record.namespace).map_err(|e| Unmade::Create(cause(&e)))?,
        ),
    };
    // kubelet's volume manager has the pod's volumes ready before a container starts.
    let all = crate::volumes::Which::All;
    crate::volumes::set_up(pod, &state.record.data_dir, sources, node, all)
        .map_err(|e| Unmade::Mount(crate::volumes::failed_mount_message(&e)))?;
    crash_point("create:volumes");
    let env = crate::create::container_env(pod, spec, sources, node)
        .map_err(|e| Unmade::Config(cause(&e)))?;
    let host =
        podrun_oci::Host::detect().map_err(|e| Unmade::Create(format!("read host facts: {e}")))?;
    // Its image's user, for runAsNonRoot (kubelet asks the runtime's ImageStatus).
    let image = podrun_runtime::ImageSpec {
        image: spec.image.clone().unwrap_or_default(),
        ..Default::default()
    };
    let status = match agent.image_service.image_status(&image) {
        Ok(Some(status)) => status,
        Ok(None) => {
            return Err(Unmade::Create(format!(
                "image {}: not present after its pull",
                image.image
            )))
        }
        Err(e) => return Err(Unmade::Create(format!("image {}: {e}", image.image))),
    };
    let root = &agent.settings.root;
    crate::create::prepare_container(pod, spec, state, root, &status, &host, env).map_err(|e| {
        if e.is_failed_mount() {
            Unmade::Mount(e.to_string())
        } else if e.is_config() {
            Unmade::Config(cause(&e))
        } else {
            Unmade::Create(cause(&e))
        }
    })
}

/// The sandbox is lost: remove what is left and make the pod again under a
/// new ID (kubelet's "Pod sandbox changed, it will be killed and re-created").
async fn recreate(agent: &Arc<Agent>, row: &PodRow, why: &str) -> Result<Step> {
    tracing::warn!("pod/{}: {why}: making it again", row.name);
    agent.event(
        &row.namespace,
        &row.name,
        "Normal",
        "SandboxChanged",
        "Pod sandbox changed, it will be killed and re-created.",
    );
    remove(agent, row).await?;
    crash_point("recreate:removed");
    let id = pods::new_pod_id(&row.namespace, &row.name);
    let pod: Pod = decode(&row.manifest, "the stored manifest")?;
    let now = chrono::Utc::now();
    agent
        .db()
        .new_sandbox(&row.namespace, &row.name, &id, |(container, memory)| {
            lost_with_sandbox(&pod, container, memory, now)
        })?;
    Ok(Step {
        result: Ok(()),
        wake: Some(Duration::ZERO),
        gone: false,
    })
}

/// What is kept of a container whose sandbox was lost: as kubelet shows after
/// a node restart, a container that ran counts a restart and its last state
/// is `Terminated` with reason `Unknown` and exit code 255; init containers
/// start over (kubelet's purgeInitContainers); the crash back-off, which
/// kubelet keeps in memory only, is forgotten.
fn lost_with_sandbox(
    pod: &Pod,
    container: &str,
    memory: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    use podrun_kubelet::observe::{ContainerState, Termination};
    let is_init = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .any(|c| c.name == container);
    if is_init {
        return None;
    }
    let mut m: Memory = serde_json::from_str(memory).ok()?;
    let o = &mut m.observation;
    if let ContainerState::Running { started_at } = o.state {
        o.state = ContainerState::Exited(Termination {
            exit_code: 255,
            signal: None,
            reason: "Unknown".into(),
            message: None,
            started_at: Some(started_at),
            finished_at: now,
        });
    }
    o.back_off = podrun_kubelet::BackOff::default();
    o.waiting = None;
    m.probe_state = None;
    serde_json::to_string(&m).ok()
}

/// The pod as the API would return it: its manifest, its metadata filled in
/// (uid, creationTimestamp, the deletionTimestamp of one being deleted) and
/// the status last reported.
pub(super) fn v1_pod(row: &PodRow, summary: &PodSummary) -> Result<serde_json::Value> {
    let mut pod: Pod = decode(&row.manifest, "the stored manifest")?;
    // A pod stored before UIDs were UUIDs has its sandbox's ID.
    pod.metadata.uid.get_or_insert_with(|| row.pod_id.clone());
    pod.metadata.creation_timestamp = parse_time(&row.created)
        .map(podrun_kubelet::observe::api_time)
        .or(pod.metadata.creation_timestamp);
    pod.status = row
        .status
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .or_else(|| {
            Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            })
        });
    let mut value = serde_json::to_value(&pod).map_err(|source| WorkerError::Decode {
        what: format!("pod/{}", row.name),
        source,
    })?;
    value["apiVersion"] = "v1".into();
    value["kind"] = "Pod".into();
    if summary.status == "Terminating" && value["metadata"]["deletionTimestamp"].is_null() {
        // Marked by a podrun that did not record when.
        value["metadata"]["deletionTimestamp"] = crate::now().into();
    }
    Ok(value)
}

/// The `get pods` line of an agent's pod.
pub(super) fn summary(row: &PodRow) -> PodSummary {
    let manifest: Option<Pod> = serde_json::from_str(&row.manifest).ok();
    let containers = manifest
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .map_or(0, |s| s.containers.len());
    let age_seconds = chrono::DateTime::parse_from_rfc3339(&row.created)
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
        .unwrap_or(0);
    let waiting = |status: &str| PodSummary {
        namespace: row.namespace.clone(),
        name: row.name.clone(),
        ready: format!("0/{containers}"),
        status: status.to_string(),
        restarts: "0".into(),
        age_seconds,
        ip: None,
        nominated_node: None,
        readiness_gates: manifest.as_ref().map_or_else(
            || "<none>".into(),
            podrun_kubelet::printer::readiness_gates_column,
        ),
        pod: None,
    };
    // The columns of the status last reported, by kubectl's printer.
    let reported = || {
        let status = row
            .status
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())?;
        let mut pod = manifest.clone()?;
        pod.status = Some(status);
        Some(PodSummary {
            namespace: row.namespace.clone(),
            name: row.name.clone(),
            ..PodSummary::of(&pod, age_seconds, chrono::Utc::now())
        })
    };
    match row.state {
        PodPhase::Deleting | PodPhase::Replacing => {
            let mut s = reported().unwrap_or_else(|| waiting("Terminating"));
            s.status = "Terminating".into();
            s
        }
        // A sandbox that could not be made leaves the pod ContainerCreating,
        // as kubelet does (the cause is in its FailedCreatePodSandBox events).
        PodPhase::Creating => waiting("ContainerCreating"),
        PodPhase::Running | PodPhase::Finished => {
            reported().unwrap_or_else(|| waiting("ContainerCreating"))
        }
    }
}

/// The pod manager's part of a sync's execution ([`execute::Node`]).
struct AgentNode<'a> {
    agent: &'a Agent,
    row: &'a PodRow,
    state: &'a PodState,
    pod: &'a Pod,
    /// The node's facts with the pod's IPs, for the downward API.
    node: &'a crate::env::NodeFacts,
    /// Its sandbox, where its containers are made.
    in_sandbox: pods::InSandbox<'a>,
    /// The namespace's ConfigMaps and Secrets, read once per sync.
    sources: Option<crate::env::Sources>,
}

impl execute::Node for AgentNode<'_> {
    fn event(&self, type_: &str, reason: &str, message: &str) {
        self.agent
            .event(&self.row.namespace, &self.row.name, type_, reason, message);
    }

    fn make_container(
        &mut self,
        spec: &k8s_openapi::api::core::v1::Container,
        attempt: u32,
    ) -> Result<ContainerConfig, Unmade> {
        let (agent, row) = (self.agent, self.row);
        let events = |t: &str, r: &str, m: String| agent.event(&row.namespace, &row.name, t, r, &m);
        make_container(
            agent,
            self.state,
            self.pod,
            spec,
            &mut self.sources,
            self.node,
            &events,
        )
        .map(|mut config| {
            // kubelet's `<container>/<restartCount>.log`: each instance its
            // own file, the previous one's kept for `logs --previous`. The
            // instance keeps the container's ID (metadata.attempt 0): the pod
            // manager knows a container by it across restarts (exec, stop,
            // hooks, the removal of its root filesystem after a reboot).
            config.log_path = crate::logs::instance_log_path(&spec.name, attempt);
            config.log_rotation = Some(agent.log_rotation);
            let dir = crate::logs::container_dir(&self.state.run_dir, &spec.name);
            crate::logs::remove_older(&dir, attempt);
            config
        })
    }

    fn image_id(&self, image: &str) -> Option<String> {
        image_id(self.agent.image_service.as_ref(), image)
    }

    fn post_start(
        &self,
        name: &str,
        hook: &k8s_openapi::api::core::v1::LifecycleHandler,
    ) -> Result<(), crate::probe::HandlerError> {
        super::terminate::run_hook(&self.in_sandbox, name, hook, Duration::from_secs(120))
    }

    fn random_fraction(&self) -> f64 {
        random_fraction()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_kept_of_a_container_reads_back() {
        let mut m = Memory::default();
        m.observation.restart_count = 7;
        m.probe_state = Some(ContainerProbes::default());
        let text = serde_json::to_string(&m).unwrap();
        let back: Memory = serde_json::from_str(&text).unwrap();
        assert_eq!(back.observation.restart_count, 7);
        assert!(back.probe_state.is_some());
    }

    #[test]
    fn failed_creations_back_off_as_kubelet_pulls_do() {
        let s = |n| creation_backoff(n).as_secs();
        assert_eq!([s(0), s(1), s(2), s(5), s(10)], [10, 20, 40, 300, 300]);
    }
}
