//! What the runtime and the prober report about a pod: the input, besides the
//! spec and the clock, of every decision in this crate.
//!
//! It plays the part of kubelet's `kubecontainer.PodStatus` (the runtime's view),
//! its probe result caches and its `reasonCache`, reduced to what the rules read:
//! one entry per container name (the current instance, plus the previous one's
//! termination), never a list of dead instances.

use crate::backoff::{BackOff, BackOffConfig};
use crate::probe::ProbeResult;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The pod as the runtime and prober see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodObservation {
    /// The pod's sandbox (pause process, namespaces, network).
    pub sandbox: SandboxState,
    /// Every container that has a state, init and main alike, by name. A name
    /// missing here was never created.
    pub containers: BTreeMap<String, ContainerObservation>,
    /// When the node accepted the pod (`status.startTime`): the start of
    /// `activeDeadlineSeconds`.
    pub start_time: Option<DateTime<Utc>>,
    /// The pod's IP addresses, primary first (empty without a network), as
    /// [`crate::network::pod_ips`] makes them.
    pub pod_ips: Vec<String>,
    /// The node's IP addresses, primary first (`status.hostIP` is the first,
    /// `status.hostIPs` all of them); empty when the node has none.
    pub host_ips: Vec<String>,
    /// The node evicted the pod (its eviction manager): every container is
    /// killed, the pod fails with reason `Evicted` and nothing restarts.
    #[serde(default)]
    pub eviction: Option<crate::eviction::Eviction>,
}

impl PodObservation {
    /// The observation of one container, if it has one.
    pub fn container(&self, name: &str) -> Option<&ContainerObservation> {
        self.containers.get(name)
    }
}

/// The sandbox's state, as kubelet's `PodSandboxChanged` reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    /// No sandbox was ever created for this pod.
    #[default]
    None,
    /// The sandbox runs, its network is set up.
    Ready,
    /// A sandbox existed but is gone or not ready (its pause process died, the
    /// node rebooted): kubelet kills the pod and creates a new one.
    NotReady,
}

/// One container, as the runtime, the prober and the last sync report it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerObservation {
    /// The current (latest) instance.
    pub state: ContainerState,
    /// The previous instance's end, for `lastState`.
    pub last_termination: Option<Termination>,
    /// How many times it was restarted (kubelet's restart count label).
    pub restart_count: i32,
    /// The runtime's ID of the current instance, as `<runtime>://<id>`.
    pub container_id: Option<String>,
    /// The image's digest reference, for `imageID`.
    pub image_id: Option<String>,
    /// Its crash-loop back-off.
    pub back_off: BackOff,
    /// Its image pull back-off (recorded on each failed pull, reset on success).
    pub image_back_off: BackOff,
    /// The latest verdict of each of its probes (`None`: no verdict yet).
    pub probes: ProbeVerdicts,
    /// Why its last start failed, as kubelet's `reasonCache`: `ErrImagePull`,
    /// `ImagePullBackOff`, `CrashLoopBackOff`, `CreateContainerConfigError`,
    /// `RunContainerError` … with the message. The driver sets it from a failed
    /// start or a [`crate::actions::Waiting`] and clears it on a good start.
    pub waiting: Option<WaitingReason>,
    /// [`container_hash`] of the spec the current (or last) instance was made
    /// from; `None` when not recorded. A running instance whose spec changed
    /// is killed and made again (kubelet's `containerChanged`).
    #[serde(default)]
    pub spec_hash: Option<u64>,
    /// It was killed to be started again whatever the restart policy (a
    /// changed spec): kubelet kills and starts it in one sync, the driver
    /// starts it once the exit is seen. Cleared by [`ContainerObservation::starting`].
    #[serde(default)]
    pub restart_after_kill: bool,
    /// The runtime's ID of the instance whose lost log lines (a full disk)
    /// were told in an event: told once per instance, not per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_drops_reported: Option<String>,
    /// It could not be created (its config or root filesystem): not before
    /// this time is it tried again (the pod worker's back-off). Cleared by a
    /// good start.
    #[serde(default)]
    pub retry_create_at: Option<DateTime<Utc>>,
    /// Its stop was asked at this time (its stop signal sent, SIGKILL due after
    /// the grace period): the kill is not asked, nor its `Killing` event
    /// recorded, again while it runs out its grace period, as kubelet kills a
    /// container once. Cleared when it exits or starts.
    #[serde(default)]
    pub stopping_since: Option<DateTime<Utc>>,
}

impl ContainerObservation {
    /// The driver is about to create and start this container at `now`. For a
    /// restart (the current instance exited) this moves the crash back-off as
    /// kubelet's `doBackOff` does, keeps the exit as the previous termination
    /// and counts the restart; the state is `NotCreated` until
    /// [`ContainerObservation::started`].
    pub fn starting(&mut self, now: DateTime<Utc>, back_off: &BackOffConfig) {
        self.restart_after_kill = false;
        if let ContainerState::Exited(t) = std::mem::take(&mut self.state) {
            self.back_off.record_restart(t.finished_at, now, back_off);
            self.last_termination = Some(t);
            self.restart_count += 1;
        }
    }

    /// The runtime reports the new instance running: the reason cache clears.
    pub fn started(&mut self, started_at: DateTime<Utc>, container_id: Option<String>) {
        self.state = ContainerState::Running { started_at };
        self.stopping_since = None;
        self.container_id = container_id;
        self.waiting = None;
        self.retry_create_at = None;
    }

    /// The runtime reports the instance ended (or failed to start).
    pub fn exited(&mut self, termination: Termination) {
        self.stopping_since = None;
        self.state = ContainerState::Exited(termination);
    }

    /// Pulling its image failed at `now`: `ErrImagePull` until the next try,
    /// which waits out the image back-off (`ImagePullBackOff`).
    pub fn pull_failed(&mut self, now: DateTime<Utc>, message: &str, back_off: &BackOffConfig) {
        self.image_back_off.record_failure(now, back_off);
        self.waiting = Some(WaitingReason {
            reason: "ErrImagePull".into(),
            message: message.into(),
        });
    }

    /// Its image is there: the image back-off is forgotten.
    pub fn pulled(&mut self) {
        self.image_back_off.reset();
    }

    /// Creating or starting it failed before it ran, with kubelet's reason
    /// (`CreateContainerConfigError`, `CreateContainerError`, `RunContainerError` …).
    pub fn start_failed(&mut self, reason: &str, message: &str) {
        self.waiting = Some(WaitingReason {
            reason: reason.into(),
            message: message.into(),
        });
    }

    /// Making it failed at `now` (`CreateContainerConfigError`,
    /// `CreateContainerError`): it waits until `retry_at` (the driver's
    /// `now` + [`crate::Config::worker_back_off`] with jitter) before it is
    /// made again, as kubelet requeues a pod whose sync failed, instead of
    /// retrying (and asking the registry) on every sync.
    pub fn create_failed(&mut self, reason: &str, message: &str, retry_at: DateTime<Utc>) {
        self.start_failed(reason, message);
        self.retry_create_at = Some(retry_at);
    }
}

/// The state of a container's current instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Not created (yet), or removed.
    #[default]
    NotCreated,
    /// Its process runs.
    Running {
        /// When it started.
        started_at: DateTime<Utc>,
    },
    /// It ran and exited, or failed to start.
    Exited(Termination),
}

impl ContainerState {
    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        matches!(self, ContainerState::Running { .. })
    }

    /// The termination, when it exited.
    pub fn terminated(&self) -> Option<&Termination> {
        match self {
            ContainerState::Exited(t) => Some(t),
            _ => None,
        }
    }
}

/// How an instance ended, as `ContainerStateTerminated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Termination {
    /// The exit code (128 + n when killed by signal n).
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// `Completed` (exit 0), `Error`, `OOMKilled`, `StartError`, `ContainerCannotRun`.
    pub reason: String,
    /// The termination message, or the runtime's error.
    pub message: Option<String>,
    /// When it started (`None` if it never did).
    pub started_at: Option<DateTime<Utc>>,
    /// When it exited.
    pub finished_at: DateTime<Utc>,
}

/// A waiting state's reason and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingReason {
    /// `CrashLoopBackOff`, `ErrImagePull`, `ImagePullBackOff` …
    pub reason: String,
    /// Human words, kubelet's where it has them.
    pub message: String,
}

/// The prober's current verdict for each probe of one container instance
/// (kubelet's results managers). `None` means no verdict yet for this instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeVerdicts {
    /// The startup probe's verdict.
    pub startup: Option<ProbeResult>,
    /// The liveness probe's verdict.
    pub liveness: Option<ProbeResult>,
    /// The readiness probe's verdict.
    pub readiness: Option<ProbeResult>,
}

/// A container spec's hash, stable across builds and versions of podrun: FNV-1a
/// (64 bit) of its JSON, as kubelet's `HashContainer` hashes the container's
/// JSON with FNV-1a (32 bit) (pkg/kubelet/container/helpers.go). A change of
/// any field (the image, most often) changes it.
pub fn container_hash(container: &Container) -> u64 {
    let json = serde_json::to_vec(container).unwrap_or_default();
    json.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether the spec of `o`'s instance (recorded) differs from `container`.
pub fn spec_changed(container: &Container, o: &ContainerObservation) -> bool {
    o.spec_hash.is_some_and(|h| h != container_hash(container))
}

/// Whether an init container is a native sidecar (`restartPolicy: Always`).
pub fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// The pod's restart policy, `Always` when unset (the API server's default).
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether failed containers are restarted (`shouldRestartOnFailure`: any
/// policy but `Never`).
pub fn restart_on_failure(pod: &Pod) -> bool {
    restart_policy(pod) != "Never"
}

/// The pod's init containers.
pub fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
}

/// The pod's main containers.
pub fn main_containers(pod: &Pod) -> &[Container] {
    pod.spec.as_ref().map(|s| &s.containers[..]).unwrap_or(&[])
}

/// The pod as kubelet names it in messages (`format.Pod`): `name_namespace(uid)`.
pub fn format_pod(pod: &Pod) -> String {
    let meta = &pod.metadata;
    format!(
        "{}_{}({})",
        meta.name.as_deref().unwrap_or(""),
        meta.namespace.as_deref().unwrap_or("default"),
        meta.uid.as_deref().unwrap_or("")
    )
}

/// Whether the pod is being deleted (`metadata.deletionTimestamp` set).
pub fn is_deleted(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// A chrono time as the API's `Time` (whole seconds, as metav1.Time keeps).
pub fn api_time(t: DateTime<Utc>) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    let ts = k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts)
}

/// The API's `Time` as chrono's.
pub fn chrono_time(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
