//! One worker per pod (kubelet's pod workers): a task that moves its pod
//! through the states of [`PodPhase`], one committed step at a time, so that
//! an agent killed anywhere leaves a state the next agent finishes:
//!
//! - `creating`: whatever exists of the pod's ID is removed (a half-made
//!   earlier attempt), then it is made again: registered, pulled, prepared,
//!   handed to its monitor; `running` is committed once its containers started.
//!   A failure removes what the attempt made and retries with back-off.
//! - `running`: its monitor's records are read every sync interval. A monitor
//!   that ended after every container did makes the pod `finished`; one that
//!   is gone otherwise (killed, the node restarted) means a lost sandbox: the
//!   rest is removed and the pod made again under a new ID, as kubelet does.
//! - `replacing`: the old sandbox is stopped and removed, then `creating`.
//! - `deleting`: stopped and removed, then the row is deleted.

use super::api::PodSummary;
use super::db::{PodPhase, PodRow};
use super::{crash_point, now, Agent, Msg};
use crate::pods::{self, PodRecord, PodState};
use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// What one sync did.
struct Step {
    /// Reported to whoever waits for this sync.
    result: Result<(), String>,
    /// When to look again (None: the sync interval).
    wake: Option<Duration>,
    /// The pod is gone: the worker ends.
    gone: bool,
}

impl Step {
    fn ok() -> Step {
        Step {
            result: Ok(()),
            wake: None,
            gone: false,
        }
    }
}

/// Grace periods asked by `delete --grace-period`, until the deletion is done.
static GRACE: Mutex<Option<HashMap<(String, String), i64>>> = Mutex::new(None);

/// Use `seconds` instead of the pod's own grace period when deleting it.
pub fn set_grace_override(namespace: &str, name: &str, seconds: i64) {
    GRACE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert((namespace.into(), name.into()), seconds);
}

fn grace_override(namespace: &str, name: &str) -> Option<Duration> {
    GRACE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()?
        .remove(&(namespace.into(), name.into()))
        .map(|s| Duration::from_secs(s.max(0) as u64))
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
        let wait = step.wake.unwrap_or(agent.sync_interval);
        tokio::select! {
            m = rx.recv() => match m {
                Some(Msg::Sync(w)) => waiters.extend(w),
                None => return,
            },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn sync(agent: &Arc<Agent>, namespace: &str, name: &str) -> Step {
    match sync_steps(agent, namespace, name).await {
        Ok(step) => step,
        Err(e) => {
            let message = crate::message(&e);
            tracing::warn!("pod/{name}: {message}");
            Step {
                result: Err(message),
                wake: None,
                gone: false,
            }
        }
    }
}

async fn sync_steps(agent: &Arc<Agent>, namespace: &str, name: &str) -> Result<Step> {
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
                match create(agent, &row).await {
                    Ok(()) => {
                        crash_point("create:started");
                        agent.db().set_running(namespace, name, &now())?;
                    }
                    Err(e) => {
                        let message = crate::message(&e);
                        let delay = creation_backoff(row.attempts);
                        let retry_at = chrono::Utc::now()
                            + chrono::Duration::from_std(delay).unwrap_or_default();
                        agent.db().set_error(
                            namespace,
                            name,
                            &message,
                            &retry_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        )?;
                        agent.event(namespace, name, "Warning", "Failed", &message);
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
                crash_point("replace:removed");
                let id = pods::new_pod_id(namespace, name);
                agent
                    .db()
                    .set_state(namespace, name, PodPhase::Creating, Some(&id))?;
            }
            PodPhase::Deleting => {
                remove(agent, &row).await?;
                crash_point("delete:removed");
                agent.db().remove_pod(namespace, name)?;
                return Ok(Step {
                    result: Ok(()),
                    wake: None,
                    gone: true,
                });
            }
        }
    }
}

/// How long until a failed creation may be tried again.
fn retry_wait(row: &PodRow) -> Option<Duration> {
    let at = chrono::DateTime::parse_from_rfc3339(row.retry_at.as_deref()?).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
        .filter(|d| !d.is_zero())
}

/// kubelet's back-off for image pulls and failed creations: 10 s, doubling,
/// at most 5 minutes.
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

/// The ConfigMaps and Secrets of a namespace, as the pod's sources.
fn sources(agent: &Agent, namespace: &str) -> Result<crate::env::Sources> {
    let mut sources = crate::env::Sources::default();
    for o in agent.db().objects(namespace)? {
        match o.kind.as_str() {
            "ConfigMap" => {
                sources
                    .config_maps
                    .insert(o.name.clone(), serde_json::from_str(&o.body)?);
            }
            "Secret" => {
                sources
                    .secrets
                    .insert(o.name.clone(), serde_json::from_str(&o.body)?);
            }
            _ => {}
        }
    }
    Ok(sources)
}

/// Make the pod of `row` (under `row.pod_id`), from nothing: what an earlier
/// attempt left is removed first.
async fn create(agent: &Arc<Agent>, row: &PodRow) -> Result<()> {
    let pod: Pod = serde_json::from_str(&row.manifest).context("read the stored manifest")?;
    let sources = sources(agent, &row.namespace)?;
    remove(agent, row).await?;
    crash_point("create:cleaned");
    let cli = agent.cli;
    let state = {
        let (pod, id) = (pod.clone(), row.pod_id.clone());
        let root = agent.images.root().to_path_buf();
        tokio::task::spawn_blocking(move || pods::register(&cli.run_root, &root, &pod, Some(&id)))
            .await??
    };
    crash_point("create:registered");
    let (ns, name) = (row.namespace.clone(), row.name.clone());
    let events = |type_: &str, reason: &str, message: String| {
        agent.event(&ns, &name, type_, reason, &message);
    };
    let started = crate::run::start_pod(cli, &agent.images, &pod, &sources, state, &events).await?;
    let crate::run::Started {
        state,
        plan,
        mut monitor,
        guard,
    } = started;
    crate::run::wait_started(&state, &plan, &mut monitor, guard).await?;
    for c in &plan.containers {
        events("Normal", "Created", format!("Created container {}", c.name));
        events("Normal", "Started", format!("Started container {}", c.name));
    }
    // Reap the monitor when it ends (a later agent is not its parent).
    tokio::spawn(async move {
        let _ = monitor.wait().await;
    });
    Ok(())
}

/// The pod of `row` as it is on disk, or as the row says when its state
/// directory is gone (so what remains of it can still be removed).
fn state_of(agent: &Agent, row: &PodRow) -> Result<PodState> {
    if let Some(s) = pods::load(&agent.cli.run_root, &row.pod_id) {
        return Ok(s);
    }
    Ok(PodState {
        record: PodRecord {
            namespace: row.namespace.clone(),
            name: row.name.clone(),
            pod_id: row.pod_id.clone(),
            created: row.created.clone(),
            data_dir: agent.images.root().join("pods").join(&row.pod_id),
            monitor_pid: 0,
            manifest: serde_json::from_str(&row.manifest)?,
            agent: true,
        },
        run_dir: agent.cli.run_root.join("pods").join(&row.pod_id),
        plan: None,
    })
}

/// Stop the pod's sandbox of `row.pod_id` and remove everything of it.
async fn remove(agent: &Arc<Agent>, row: &PodRow) -> Result<()> {
    let state = state_of(agent, row)?;
    let grace = grace_override(&row.namespace, &row.name);
    let images = agent.images.clone();
    let had_monitor = tokio::task::spawn_blocking(move || -> Result<bool> {
        let had = state.find_monitor().is_some();
        pods::stop_within(&state, grace)?;
        crash_point("delete:stopped");
        pods::teardown(&images, &state)?;
        Ok(had)
    })
    .await??;
    if had_monitor {
        agent.event(
            &row.namespace,
            &row.name,
            "Normal",
            "Killing",
            "Stopped the pod's containers",
        );
    }
    Ok(())
}

/// A running pod: is its monitor still there, and did its containers end?
async fn supervise(agent: &Arc<Agent>, row: &PodRow) -> Result<Step> {
    let Some(state) = pods::load(&agent.cli.run_root, &row.pod_id) else {
        return recreate(agent, row, "its state is gone (the node restarted?)").await;
    };
    let summary = summary(agent, row, Some(&state));
    let snapshot = serde_json::to_string(&summary)?;
    if row.status.as_deref() != Some(snapshot.as_str()) {
        agent
            .db()
            .set_status(&row.namespace, &row.name, &snapshot)?;
    }
    if state.monitor_alive() {
        return Ok(Step::ok());
    }
    let finished = state.plan.as_ref().is_some_and(|plan| {
        let exits = podrun_runtime::monitor::read_exits(plan);
        plan.containers.iter().all(|c| exits.contains_key(&c.name))
            && !plan.run_root.join("sandboxes").join(&plan.pod_id).exists()
    });
    if finished {
        agent
            .db()
            .set_state(&row.namespace, &row.name, PodPhase::Finished, None)?;
        return Ok(Step::ok());
    }
    recreate(agent, row, "its monitor is gone").await
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
    agent
        .db()
        .set_state(&row.namespace, &row.name, PodPhase::Creating, Some(&id))?;
    Ok(Step {
        result: Ok(()),
        wake: Some(Duration::ZERO),
        gone: false,
    })
}

/// The `get pods` line of an agent's pod.
pub(super) fn summary(agent: &Agent, row: &PodRow, state: Option<&PodState>) -> PodSummary {
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
    };
    let _ = agent;
    match row.state {
        PodPhase::Deleting | PodPhase::Replacing => {
            let mut s = state.map_or_else(|| waiting("Terminating"), crate::kubectl::summary);
            s.status = "Terminating".into();
            s.age_seconds = age_seconds;
            s
        }
        PodPhase::Creating => match &row.error {
            Some(e) => waiting(creation_reason(e, row.attempts)),
            None => waiting("ContainerCreating"),
        },
        PodPhase::Running | PodPhase::Finished => match state {
            Some(s) => {
                let mut s = crate::kubectl::summary(s);
                s.age_seconds = age_seconds;
                s
            }
            None => row
                .status
                .as_deref()
                .and_then(|t| serde_json::from_str::<PodSummary>(t).ok())
                .map(|mut s| {
                    s.age_seconds = age_seconds;
                    s
                })
                .unwrap_or_else(|| waiting("Unknown")),
        },
    }
}

/// kubelet's waiting reason for a pod whose creation failed: a failed pull is
/// ErrImagePull, then ImagePullBackOff while it waits to try again; a missing
/// ConfigMap, Secret or key is CreateContainerConfigError.
fn creation_reason(error: &str, attempts: i64) -> &'static str {
    if error.contains(": pull ") || error.contains("imagePullPolicy") {
        if attempts > 1 {
            "ImagePullBackOff"
        } else {
            "ErrImagePull"
        }
    } else if error.contains("configmap") || error.contains("secret") {
        "CreateContainerConfigError"
    } else {
        "CreateContainerError"
    }
}
