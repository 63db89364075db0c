//! SyncPod's execute step: carry out what `compute_pod_actions` decided,
//! through the runtime ([`RuntimeService`], by container ID, in the pod's
//! sandbox) and the pod manager's own parts
//! ([`Node`]: making a container, events, hooks), and record in the
//! observation what each call did. kubelet's SyncPod steps 2–7 (kill the pod,
//! kill containers, start init containers, start containers), and the events
//! of containers that wait out a back-off.
//!
//! Both seams are traits so the rules here are tested with a recording
//! runtime and node: no monitor, no root, no sleeps.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use podrun_kubelet::actions::KillReason;
use podrun_kubelet::observe::Termination;
use podrun_kubelet::probe::ContainerProbes;
use podrun_kubelet::{Config, PodActions, PodObservation};
use podrun_runtime::api::{ContainerState, ContainerStatus, RuntimeService, ServiceError, Started};
use podrun_runtime::ContainerConfig;
use std::collections::HashMap;

use super::observe::{parse_time, runtime_id};

/// Why a container could not be made for a start.
#[derive(Debug)]
pub enum Unmade {
    /// Its image is not here (`ErrImagePull`, `ErrImageNeverPull`).
    Pull(crate::create::PullFailure),
    /// Its environment names a ConfigMap, Secret or key that is not there.
    Config(String),
    /// Its root filesystem or bundle could not be made.
    Create(String),
    /// A volume of the pod could not be set up (kubelet's FailedMount: the
    /// container waits in ContainerCreating).
    Mount(String),
}

impl Unmade {
    /// kubelet's waiting reason, and the cause.
    pub fn reason_and_message(&self) -> (&'static str, String) {
        match self {
            Unmade::Pull(f) => (f.reason, f.message.clone()),
            Unmade::Config(m) => ("CreateContainerConfigError", m.clone()),
            Unmade::Create(m) => ("CreateContainerError", m.clone()),
            Unmade::Mount(m) => ("ContainerCreating", m.clone()),
        }
    }
}

/// What the execute step needs of the pod manager besides the runtime.
pub trait Node {
    /// Record an event of the pod.
    fn event(&self, type_: &str, reason: &str, message: &str);
    /// Make container `spec`'s config for a start: its image by its pull
    /// policy, its volumes, its environment (the runtime's CreateContainer
    /// then makes its root filesystem and bundle).
    /// `attempt` is the restart count the new instance will have (kubelet's
    /// `metadata.attempt`; it names the instance's log file).
    fn make_container(&mut self, spec: &Container, attempt: u32)
        -> Result<ContainerConfig, Unmade>;
    /// The imageID the API shows for `image`.
    fn image_id(&self, image: &str) -> Option<String>;
    /// Run container `name`'s postStart hook; the error says why it failed.
    fn post_start(
        &self,
        name: &str,
        hook: &LifecycleHandler,
    ) -> Result<(), crate::probe::HandlerError>;
    /// A number in [0, 1) for jitter.
    fn random_fraction(&self) -> f64;
}

/// What the execute step did beyond the observation.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Executed {
    /// The failures to report to whoever waits for this sync, each naming its container.
    pub failures: Vec<String>,
    /// The pod ended and its sandbox was told to stop.
    pub finished: bool,
}

/// The inputs of one execute step.
pub struct Round<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The pod's sandbox.
    pub sandbox: &'a str,
    /// What the runtime reported of its containers at the start of the sync.
    pub reported: &'a [ContainerStatus],
    /// The decision.
    pub actions: &'a PodActions,
    /// The sync's time.
    pub now: DateTime<Utc>,
    /// The back-off settings.
    pub config: &'a Config,
}

/// Carry out `round.actions`, updating `observed` and `probes`.
pub fn execute(
    round: &Round,
    observed: &mut PodObservation,
    probes: &mut HashMap<String, ContainerProbes>,
    rt: &dyn RuntimeService,
    node: &mut dyn Node,
) -> Result<Executed, ServiceError> {
    let Round {
        pod,
        sandbox,
        reported,
        actions,
        now,
        config,
    } = *round;
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let mut done = Executed::default();
    if let Some(kill) = &actions.kill_pod {
        // The pod is done (Completed, DeadlineExceeded, a failed init under
        // Never): stop what runs, a group at a time in kubelet's order
        // (sidecars last), then end the sandbox.
        let running: Vec<&str> = reported
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| c.name.as_str())
            .collect();
        if running.is_empty() {
            rt.stop_pod_sandbox(sandbox, None)?;
            done.finished = true;
        } else if let Some(group) = podrun_kubelet::termination_order(pod)
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .filter(|n| running.contains(&n.as_str()))
                    .collect::<Vec<_>>()
            })
            .find(|g| !g.is_empty())
        {
            for n in group {
                let o = observed.containers.entry(n.clone()).or_default();
                if o.stopping_since.is_some() {
                    // Asked before: it is running out its grace period.
                    continue;
                }
                node.event(
                    "Normal",
                    "Killing",
                    &format!("Stopping container {n}: {}", kill.message),
                );
                if let Some(id) = id_of(reported, &n) {
                    // An eviction's grace period overrides the pod's.
                    rt.stop_container(id, kill.reason.grace_override())?;
                }
                o.stopping_since = Some(now);
            }
        }
    }
    for k in &actions.kill {
        if observed
            .containers
            .get(&k.name)
            .is_some_and(|o| o.stopping_since.is_some())
        {
            // One kill, one Killing event: it is running out its grace period.
            continue;
        }
        node.event("Normal", "Killing", &k.message);
        // A probe's own terminationGracePeriodSeconds wins over the pod's
        // (pkg/kubelet/kuberuntime/kuberuntime_container.go killContainer).
        let probe = spec_of(pod, &k.name).and_then(|s| match k.reason {
            KillReason::LivenessProbe => s.liveness_probe.as_ref(),
            KillReason::StartupProbe => s.startup_probe.as_ref(),
            KillReason::SpecChanged => None,
        });
        if let Some(o) = observed.containers.get_mut(&k.name) {
            // kubelet starts it again in the same sync; here, once its exit is seen.
            o.restart_after_kill = k.restart;
        }
        let grace = probe
            .and_then(|p| p.termination_grace_period_seconds)
            .map(podrun_kubelet::grace::grace_period);
        if let Some(id) = id_of(reported, &k.name) {
            rt.stop_container(id, grace)?;
        }
        observed
            .containers
            .entry(k.name.clone())
            .or_default()
            .stopping_since = Some(now);
    }
    for n in actions.start_init.iter().chain(&actions.start) {
        let Some(spec) = spec_of(pod, n) else {
            continue;
        };
        let o = observed.containers.entry(n.clone()).or_default();
        // kubelet's startContainer: the image, then a new container (a restart
        // too gets a fresh writable layer: the image's files, not what the
        // last run wrote), then the start.
        if let Some(id) = id_of(reported, n) {
            rt.remove_container(id)?;
        }
        // A restart (the instance exited) is counted at its start, below.
        let exited = matches!(o.state, podrun_kubelet::observe::ContainerState::Exited(_));
        let attempt = u32::try_from(o.restart_count).unwrap_or(0) + u32::from(exited);
        let made = node.make_container(spec, attempt).and_then(|config| {
            // The runtime's part of a creation: a failure there is kubelet's
            // CreateContainerError too.
            rt.create_container(sandbox, &config).map_err(|e| {
                Unmade::Create(match e {
                    ServiceError::Failed { cause, .. } => cause,
                    other => other.to_string(),
                })
            })
        });
        let id = match made {
            Ok(id) => id,
            Err(unmade) => {
                let (reason, message) = unmade.reason_and_message();
                if reason == "ErrImagePull" {
                    o.pull_failed(now, &message, &config.image_back_off);
                } else {
                    // Not again before the pod worker's back-off (10 s, plus
                    // up to half of it: pod_workers.go), rather than on every
                    // sync, and the registry with it (ErrImageNeverPull too:
                    // kubelet's image manager keeps no back-off for it).
                    let wait = config
                        .worker_back_off
                        .mul_f64(1.0 + 0.5 * node.random_fraction());
                    let retry_at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                    o.create_failed(reason, &message, retry_at);
                }
                // kubelet's startContainer: a failed pull was told in its own
                // event, so this one names only the reason.
                match &unmade {
                    Unmade::Pull(_) => node.event("Warning", "Failed", &format!("Error: {reason}")),
                    Unmade::Mount(m) => node.event("Warning", "FailedMount", m),
                    _ => node.event("Warning", "Failed", &format!("Error: {message}")),
                }
                done.failures
                    .push(format!("pod/{name}: container {n}: {message}"));
                continue;
            }
        };
        o.pulled();
        o.starting(now, &config.back_off);
        match rt.start_container(&id)? {
            Started::Running { started_at } => {
                let started_at = parse_time(&started_at).unwrap_or(now);
                o.started(started_at, Some(runtime_id(&id)));
                o.spec_hash = Some(podrun_kubelet::observe::container_hash(spec));
                o.image_id = node.image_id(spec.image.as_deref().unwrap_or(""));
                if let Some(p) = probes.get_mut(n) {
                    p.container_started(started_at);
                    o.probes = p.verdicts();
                }
                node.event("Normal", "Created", &format!("Created container {n}"));
                node.event("Normal", "Started", &format!("Started container {n}"));
                if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
                    // A failed postStart hook kills the container, which is
                    // then restarted by its policy (FailedPostStartHook).
                    if let Err(e) = node.post_start(n, hook) {
                        node.event(
                            "Warning",
                            "FailedPostStartHook",
                            &format!("PostStartHook failed: container {n}: {}", e),
                        );
                        rt.stop_container(&id, None)?;
                    }
                }
            }
            Started::Failed { message } => {
                o.exited(Termination {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: Some(message.clone()),
                    started_at: None,
                    finished_at: now,
                });
                o.start_failed("RunContainerError", &message);
                node.event("Warning", "Failed", &format!("Error: {message}"));
                done.failures
                    .push(format!("pod/{name}: container {n}: start: {message}"));
            }
        }
    }
    for w in &actions.waiting {
        if let Some(o) = observed.containers.get_mut(&w.name) {
            if o.waiting.as_ref() != Some(&w.reason) {
                if w.reason.reason == "ImagePullBackOff" {
                    // pkg/kubelet/images/image_manager.go: a Normal BackOff
                    // event, then startContainer's "Error: ImagePullBackOff".
                    node.event("Normal", "BackOff", &w.reason.message);
                    node.event("Warning", "Failed", "Error: ImagePullBackOff");
                } else {
                    node.event(
                        "Warning",
                        "BackOff",
                        // kuberuntime_manager.go doBackOff: the pod as format.Pod.
                        &format!(
                            "Back-off restarting failed container {} in pod {}",
                            w.name,
                            podrun_kubelet::observe::format_pod(pod)
                        ),
                    );
                }
            }
            o.waiting = Some(w.reason.clone());
        }
    }
    Ok(done)
}

/// The runtime's ID of the pod's container `name`, if it reported one.
fn id_of<'a>(reported: &'a [ContainerStatus], name: &str) -> Option<&'a str> {
    reported
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.id.as_str())
}

/// Container `name` of the pod (init or main).
fn spec_of<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    podrun_spec::containers(pod).find(|c| c.name == name)
}

#[cfg(test)]
mod tests;
