//! What to do next for a pod: kubelet's `computePodActions` (and
//! `computeInitContainerActions` for init containers and native sidecars) in
//! pkg/kubelet/kuberuntime/kuberuntime_manager.go and kuberuntime_container.go,
//! as a pure function of the spec, the observation and the clock.
//!
//! Kubelet decides, then `SyncPod` does: kill the pod or containers, create the
//! sandbox, start init containers, start containers. The back-off that kubelet
//! checks while starting (`doBackOff`) is folded in here, so a container held
//! by a back-off is reported in [`PodActions::waiting`] instead of started, and
//! [`PodActions::next_sync`] says when the next thing falls due: the driver
//! sleeps exactly until then (or until the runtime or prober reports).

use crate::backoff::{go_duration, BackOffConfig};
use crate::observe::{
    format_pod, init_containers, is_deleted, is_sidecar, main_containers, restart_on_failure,
    spec_changed, ContainerObservation, ContainerState, PodObservation, SandboxState,
    WaitingReason,
};
use crate::probe::ProbeResult;
use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde::{Deserialize, Serialize};

/// The knobs of the decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The crash-loop back-off (kubelet: 10 s, capped at 5 min).
    pub back_off: BackOffConfig,
    /// The image pull back-off (kubelet: 10 s, capped at 5 min).
    pub image_back_off: BackOffConfig,
    /// How long a pod worker waits after a failed sync before it tries again
    /// (kubelet.go `backOffPeriod`, 10 s; the driver adds pod_workers.go's
    /// jitter of up to half of it): the wait after a container could not be
    /// created (CreateContainerConfigError, CreateContainerError).
    pub worker_back_off: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            back_off: BackOffConfig::default(),
            image_back_off: BackOffConfig::default(),
            worker_back_off: std::time::Duration::from_secs(10),
        }
    }
}

/// Why the whole pod is to be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KillPodReason {
    /// `metadata.deletionTimestamp` is set.
    Deleted,
    /// It ran longer than `activeDeadlineSeconds` (status reason `DeadlineExceeded`).
    DeadlineExceeded,
    /// An init container failed under `restartPolicy: Never`.
    InitContainerFailed,
    /// Every main container is done and none will restart: stop the sidecars
    /// and the sandbox.
    Completed,
    /// The sandbox died: kill what is left before making a new one.
    SandboxChanged,
    /// The node evicted it ([`crate::eviction`]; status reason `Evicted`):
    /// killed with the eviction's grace period, never restarted.
    Evicted,
}

impl KillPodReason {
    /// The reason in kubelet's words (the status reason for `DeadlineExceeded`).
    pub fn as_str(self) -> &'static str {
        match self {
            KillPodReason::Deleted => "Deleted",
            KillPodReason::DeadlineExceeded => "DeadlineExceeded",
            KillPodReason::InitContainerFailed => "InitContainerFailed",
            KillPodReason::Completed => "Completed",
            KillPodReason::SandboxChanged => "SandboxChanged",
            KillPodReason::Evicted => "Evicted",
        }
    }

    /// The grace period that overrides the pod's for this kill, if any
    /// (kubelet's `gracePeriodOverride`: an eviction's).
    pub fn grace_override(self) -> Option<std::time::Duration> {
        match self {
            KillPodReason::Evicted => Some(crate::grace::grace_period(
                crate::eviction::EVICTION_GRACE_SECONDS,
            )),
            _ => None,
        }
    }
}

/// Kill every container (in [`termination_order`]) and stop the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillPod {
    /// Why.
    pub reason: KillPodReason,
    /// Human words.
    pub message: String,
}

/// Why one container is to be killed (kubelet's `containerKillReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KillReason {
    /// Its liveness probe failed ("FailedLiveness" in podrun's events).
    LivenessProbe,
    /// Its startup probe failed ("FailedStartup").
    StartupProbe,
    /// Its spec changed since it was made (kubelet's message: "Container app
    /// definition changed"); it is started again whatever the restart policy.
    SpecChanged,
}

impl KillReason {
    /// Kubelet's constant for it.
    pub fn as_str(self) -> &'static str {
        match self {
            KillReason::LivenessProbe => "LivenessProbe",
            KillReason::StartupProbe => "StartupProbe",
            KillReason::SpecChanged => "SpecChanged",
        }
    }
}

/// Kill one running container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerKill {
    /// The container's name.
    pub name: String,
    /// Why.
    pub reason: KillReason,
    /// Kubelet's message ("Container web failed liveness probe, will be restarted").
    pub message: String,
    /// Whether it will be started again. The start is not in this round's
    /// lists: once its exit is observed, a later round restarts it, through
    /// the back-off (kubelet starts it in the same sync).
    pub restart: bool,
}

/// A container that should start but is held back for now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// The container's name.
    pub name: String,
    /// `CrashLoopBackOff` or `ImagePullBackOff`, with kubelet's message: what
    /// the driver keeps as the container's [`ContainerObservation::waiting`].
    pub reason: WaitingReason,
    /// When it may start.
    pub until: DateTime<Utc>,
}

/// What to do, in this order: kill the pod (then nothing else unless
/// `create_sandbox`), kill containers, create the sandbox, start the init
/// containers in order (stop at the first regular one that fails to start; a
/// sidecar that fails is skipped), then start the containers.
///
/// Before starting a container that exited before, the driver records the
/// restart in its back-off ([`ContainerObservation::starting`]), as kubelet's
/// `doBackOff` does, and keeps each [`Waiting`] as the container's reason
/// ([`ContainerObservation::waiting`]) so the status shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodActions {
    /// Kill every container and the sandbox.
    pub kill_pod: Option<KillPod>,
    /// Create a (new) sandbox. After a `kill_pod`, forget the init containers'
    /// records first (kubelet's `purgeInitContainers`): initialization starts
    /// over and must not read the old sandbox's exits as done.
    pub create_sandbox: bool,
    /// Init containers to start, in spec order: the next regular one, and
    /// sidecars to (re)start.
    pub start_init: Vec<String>,
    /// Main containers to start.
    pub start: Vec<String>,
    /// Running containers to kill.
    pub kill: Vec<ContainerKill>,
    /// Containers held back by a back-off.
    pub waiting: Vec<Waiting>,
    /// When a hold ends or the deadline falls: sync again then at the latest
    /// (and whenever the runtime reports an exit or a probe verdict changes;
    /// probes keep their own schedule, [`crate::probe::ContainerProbes::next_due`]).
    pub next_sync: Option<DateTime<Utc>>,
}

impl PodActions {
    fn due_at(&mut self, at: DateTime<Utc>) {
        self.next_sync = Some(self.next_sync.map_or(at, |n| n.min(at)));
    }
}

/// Kubelet's message for a pod past its deadline.
pub const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// When the pod's `activeDeadlineSeconds` runs out, if it has one and started.
pub fn active_deadline(pod: &Pod, observed: &PodObservation) -> Option<DateTime<Utc>> {
    let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
    Some(observed.start_time? + TimeDelta::seconds(seconds))
}

/// Whether the pod ran past its `activeDeadlineSeconds` (kubelet.go `pastActiveDeadline`).
pub fn past_active_deadline(pod: &Pod, observed: &PodObservation, now: DateTime<Utc>) -> bool {
    active_deadline(pod, observed).is_some_and(|d| now >= d)
}

/// Decides what to do for `pod` given what was `observed` at `now`.
pub fn compute_pod_actions(
    pod: &Pod,
    observed: &PodObservation,
    now: DateTime<Utc>,
    config: &Config,
) -> PodActions {
    let mut actions = PodActions::default();
    if is_deleted(pod) {
        actions.kill_pod = Some(KillPod {
            reason: KillPodReason::Deleted,
            message: "pod is being deleted".into(),
        });
        return actions;
    }
    // An evicted pod is killed and stays down whatever its restart policy
    // (eviction_manager.go evictPod: TerminatePodAbnormallyAndWait).
    if let Some(eviction) = &observed.eviction {
        actions.kill_pod = Some(KillPod {
            reason: KillPodReason::Evicted,
            message: eviction.message.clone(),
        });
        return actions;
    }
    // kubelet.go pastActiveDeadline: checked before any sync (a PodSyncHandler).
    if let Some(deadline) = active_deadline(pod, observed) {
        if now >= deadline {
            actions.kill_pod = Some(KillPod {
                reason: KillPodReason::DeadlineExceeded,
                message: DEADLINE_MESSAGE.into(),
            });
            return actions;
        }
        actions.due_at(deadline);
    }

    if observed.sandbox != SandboxState::Ready {
        sandbox_actions(pod, observed, &mut actions);
    } else if main_containers_done(pod, observed) {
        // Kubelet never looks again at a pod it found done (its worker moves on
        // to termination); this driver does, after stopping the sidecars, and
        // must not restart them.
        actions.kill_pod = Some(completed());
    } else if init_actions(pod, observed, &mut actions) && actions.kill_pod.is_none() {
        main_actions(pod, observed, &mut actions);
    }
    apply_back_off(pod, observed, now, config, &mut actions);
    actions
}

/// The sandbox is missing or dead: computePodActions' `createPodSandbox` branch.
fn sandbox_actions(pod: &Pod, observed: &PodObservation, actions: &mut PodActions) {
    let had_sandbox = observed.sandbox == SandboxState::NotReady;
    if had_sandbox {
        actions.kill_pod = Some(KillPod {
            reason: KillPodReason::SandboxChanged,
            message: "pod sandbox changed, it will be killed and re-created".into(),
        });
    }
    let any_container = observed
        .containers
        .values()
        .any(|c| c.state != ContainerState::NotCreated);
    if !restart_on_failure(pod) && had_sandbox && any_container {
        // restartPolicy Never: the pod ran once; do not bring it back.
        actions.kill_pod = Some(completed());
        return;
    }
    let on_failure = crate::observe::restart_policy(pod) == "OnFailure";
    let to_start: Vec<String> = main_containers(pod)
        .iter()
        .filter(|c| !(on_failure && succeeded(observed.container(&c.name))))
        .map(|c| c.name.clone())
        .collect();
    if to_start.is_empty() {
        // Initialized before (a main container was created): nothing left to run.
        let initialized = main_containers(pod).iter().any(|c| {
            observed
                .container(&c.name)
                .is_some_and(|o| o.state != ContainerState::NotCreated)
        });
        if initialized {
            actions.kill_pod = Some(completed());
            return;
        }
    }
    actions.create_sandbox = true;
    match init_containers(pod).first() {
        Some(first) => actions.start_init = vec![first.name.clone()],
        None => actions.start = to_start,
    }
}

fn completed() -> KillPod {
    KillPod {
        reason: KillPodReason::Completed,
        message: "every container is done and none will restart".into(),
    }
}

fn succeeded(o: Option<&ContainerObservation>) -> bool {
    o.and_then(|o| o.state.terminated())
        .is_some_and(|t| t.exit_code == 0)
}

fn probe_failed(configured: bool, verdict: Option<ProbeResult>) -> bool {
    configured && verdict == Some(ProbeResult::Failure)
}

/// Whether every main container exited and none will restart.
fn main_containers_done(pod: &Pod, observed: &PodObservation) -> bool {
    let mains = main_containers(pod);
    !mains.is_empty()
        && mains.iter().all(|c| {
            let o = observed.container(&c.name);
            o.is_some_and(|o| o.state.terminated().is_some()) && !should_restart(pod, o)
        })
}

/// Init containers and sidecars: `computeInitContainerActions`. Returns whether
/// the pod is initialized (main containers may run).
fn init_actions(pod: &Pod, observed: &PodObservation, actions: &mut PodActions) -> bool {
    let inits = init_containers(pod);
    if inits.is_empty() {
        return true;
    }
    // A running main container means initialization happened before, even if
    // the init containers' records are gone.
    let mut initialized = main_containers(pod).iter().any(|c| {
        observed
            .container(&c.name)
            .is_some_and(|o| o.state.is_running())
    });
    let mut previously_initialized = initialized;
    let mut to_start: Vec<usize> = Vec::new();
    let last = inits.len() - 1;
    // Walk backwards: the last init container with a record tells how far
    // initialization got (earlier records may have been removed).
    for i in (0..inits.len()).rev() {
        let c = &inits[i];
        let sidecar = is_sidecar(c);
        let Some(o) = observed
            .container(&c.name)
            .filter(|o| o.state != ContainerState::NotCreated)
        else {
            if previously_initialized && sidecar {
                to_start.push(i);
            }
            continue;
        };
        if previously_initialized && !sidecar {
            continue;
        }
        match &o.state {
            ContainerState::Running { .. } if sidecar && spec_changed(c, o) => {
                // A running sidecar whose spec changed is made again in its
                // place (computeInitContainerActions); initialization goes on.
                actions
                    .kill
                    .push(kill(c, KillReason::SpecChanged, true, "Init container"));
                if i == last {
                    initialized = true;
                } else if !previously_initialized {
                    to_start.push(i + 1);
                }
            }
            ContainerState::Running { .. } if sidecar => {
                let startup_done = if c.startup_probe.is_none() {
                    true
                } else {
                    match o.probes.startup {
                        Some(ProbeResult::Success) => true,
                        Some(ProbeResult::Failure) => {
                            actions.kill.push(kill(
                                c,
                                KillReason::StartupProbe,
                                true,
                                "Init container",
                            ));
                            false
                        }
                        _ => false, // wait for the startup probe
                    }
                };
                if startup_done {
                    if i == last {
                        initialized = true;
                    } else if !previously_initialized {
                        to_start.push(i + 1);
                    }
                    if probe_failed(c.liveness_probe.is_some(), o.probes.liveness) {
                        actions.kill.push(kill(
                            c,
                            KillReason::LivenessProbe,
                            true,
                            "Init container",
                        ));
                    }
                }
            }
            ContainerState::Running { .. } => {} // a regular init container: wait for it
            ContainerState::Exited(_) if sidecar => to_start.push(i),
            ContainerState::Exited(t) if t.exit_code != 0 => {
                if !restart_on_failure(pod) {
                    actions.kill_pod = Some(KillPod {
                        reason: KillPodReason::InitContainerFailed,
                        message: format!("init container {} failed", c.name),
                    });
                    actions.start_init.clear();
                    actions.kill.clear();
                    return false;
                }
                to_start.push(i);
            }
            ContainerState::Exited(_) => {
                if i == last {
                    initialized = true;
                } else {
                    to_start.push(i + 1);
                }
            }
            ContainerState::NotCreated => unreachable!("filtered above"),
        }
        previously_initialized = true;
    }
    if !previously_initialized {
        to_start.push(0);
    }
    to_start.reverse();
    actions.start_init = to_start
        .into_iter()
        .map(|i| inits[i].name.clone())
        .collect();
    initialized
}

fn kill(c: &Container, reason: KillReason, restart: bool, what: &str) -> ContainerKill {
    let mut message = match reason {
        KillReason::LivenessProbe => format!("{what} {} failed liveness probe", c.name),
        KillReason::StartupProbe => format!("{what} {} failed startup probe", c.name),
        KillReason::SpecChanged => format!("{what} {} definition changed", c.name),
    };
    if restart {
        message.push_str(", will be restarted");
    }
    ContainerKill {
        name: c.name.clone(),
        reason,
        message,
        restart,
    }
}

/// `ShouldContainerBeRestarted` (pkg/kubelet/container/helpers.go) for a
/// container that is not running.
pub fn should_restart(pod: &Pod, observed: Option<&ContainerObservation>) -> bool {
    if is_deleted(pod) {
        return false;
    }
    if observed.is_some_and(|o| o.restart_after_kill && o.state.terminated().is_some()) {
        return true;
    }
    match observed.map(|o| &o.state) {
        None | Some(ContainerState::NotCreated) => true,
        Some(ContainerState::Running { .. }) => false,
        Some(ContainerState::Exited(t)) => match crate::observe::restart_policy(pod) {
            "Never" => false,
            "OnFailure" => t.exit_code != 0,
            _ => true,
        },
    }
}

/// [`should_restart`] for any container of the pod: a native sidecar is
/// restarted whenever it is not running, whatever the pod's policy.
pub fn container_should_restart(
    pod: &Pod,
    container: &Container,
    observed: Option<&ContainerObservation>,
) -> bool {
    if init_containers(pod)
        .iter()
        .any(|c| c.name == container.name)
        && is_sidecar(container)
    {
        return !is_deleted(pod) && !observed.is_some_and(|o| o.state.is_running());
    }
    should_restart(pod, observed)
}

/// The main containers, once initialized: computePodActions' container loop.
fn main_actions(pod: &Pod, observed: &PodObservation, actions: &mut PodActions) {
    let mut keep = 0;
    let mut restarting = 0;
    for c in main_containers(pod) {
        let o = observed.container(&c.name);
        let Some(o) = o.filter(|o| o.state.is_running()) else {
            if should_restart(pod, o) {
                actions.start.push(c.name.clone());
            }
            continue;
        };
        // computePodActions: a changed spec first, then liveness, then startup.
        if spec_changed(c, o) {
            restarting += 1;
            actions
                .kill
                .push(kill(c, KillReason::SpecChanged, true, "Container"));
            continue;
        }
        let reason = if probe_failed(c.liveness_probe.is_some(), o.probes.liveness) {
            KillReason::LivenessProbe
        } else if probe_failed(c.startup_probe.is_some(), o.probes.startup) {
            KillReason::StartupProbe
        } else {
            keep += 1;
            continue;
        };
        let restart = restart_on_failure(pod);
        restarting += usize::from(restart);
        actions.kill.push(kill(c, reason, restart, "Container"));
    }
    if keep == 0 && actions.start.is_empty() && restarting == 0 {
        // Nothing runs and nothing will: the pod is done. Sidecars are not
        // restarted to keep it alive.
        actions.kill_pod = Some(completed());
        actions.start_init.clear();
        actions.kill.clear();
    }
}

/// Why a container that should start must wait at `now`, and until when:
/// its crash-loop back-off (`doBackOff`), then its image pull back-off.
pub fn start_hold(
    pod: &Pod,
    container: &Container,
    observed: Option<&ContainerObservation>,
    now: DateTime<Utc>,
    config: &Config,
) -> Option<Waiting> {
    let o = observed?;
    // kubelet keys the crash back-off by the container's spec hash
    // (GetStableKey): a changed container starts with none.
    let same_spec = !spec_changed(container, o);
    if let ContainerState::Exited(t) = &o.state {
        if same_spec && o.back_off.in_back_off(t.finished_at, now, &config.back_off) {
            let delay = o.back_off.delay().unwrap_or_default();
            return Some(Waiting {
                name: container.name.clone(),
                reason: WaitingReason {
                    reason: "CrashLoopBackOff".into(),
                    message: format!(
                        "back-off {} restarting failed container={} pod={}",
                        go_duration(delay),
                        container.name,
                        format_pod(pod)
                    ),
                },
                until: o
                    .back_off
                    .restart_allowed_at(t.finished_at, &config.back_off)?,
            });
        }
    }
    if o.image_back_off
        .pull_in_back_off(now, &config.image_back_off)
    {
        return Some(Waiting {
            name: container.name.clone(),
            reason: WaitingReason {
                reason: "ImagePullBackOff".into(),
                message: format!(
                    "Back-off pulling image \"{}\"",
                    container.image.as_deref().unwrap_or("")
                ),
            },
            until: o
                .image_back_off
                .retry_allowed_at(now, &config.image_back_off)?,
        });
    }
    // A container that could not be created waits out the pod worker's
    // back-off, still showing why (pod_workers.go requeues a failed sync).
    if let (Some(until), Some(reason)) = (o.retry_create_at.filter(|t| *t > now), &o.waiting) {
        return Some(Waiting {
            name: container.name.clone(),
            reason: reason.clone(),
            until,
        });
    }
    None
}

/// Holds back what a back-off forbids, as `SyncPod`'s start helper does.
fn apply_back_off(
    pod: &Pod,
    observed: &PodObservation,
    now: DateTime<Utc>,
    config: &Config,
    actions: &mut PodActions,
) {
    let mut held = Vec::new();
    let inits = std::mem::take(&mut actions.start_init);
    let mut blocked = false;
    for name in inits {
        let Some(c) = init_containers(pod).iter().find(|c| c.name == name) else {
            continue;
        };
        if blocked {
            continue;
        }
        match start_hold(pod, c, observed.container(&name), now, config) {
            Some(w) => {
                // A regular init container that cannot start stops the rest.
                blocked = !is_sidecar(c);
                held.push(w);
            }
            None => actions.start_init.push(name),
        }
    }
    let mains = std::mem::take(&mut actions.start);
    for name in mains {
        let Some(c) = main_containers(pod).iter().find(|c| c.name == name) else {
            continue;
        };
        match start_hold(pod, c, observed.container(&name), now, config) {
            Some(w) => held.push(w),
            None => actions.start.push(name),
        }
    }
    for w in held {
        actions.due_at(w.until);
        actions.waiting.push(w);
    }
}

/// The order to stop a pod's containers in: every main container (and any
/// regular init container) at once, then the sidecars one by one in reverse
/// spec order, so a sidecar outlives the containers that use it
/// (kuberuntime_container.go `killContainersWithSyncResult`).
pub fn termination_order(pod: &Pod) -> Vec<Vec<String>> {
    let inits = init_containers(pod);
    let first: Vec<String> = inits
        .iter()
        .filter(|c| !is_sidecar(c))
        .chain(main_containers(pod))
        .map(|c| c.name.clone())
        .collect();
    let mut order = Vec::new();
    if !first.is_empty() {
        order.push(first);
    }
    order.extend(
        inits
            .iter()
            .rev()
            .filter(|c| is_sidecar(c))
            .map(|c| vec![c.name.clone()]),
    );
    order
}

#[cfg(test)]
mod tests;
