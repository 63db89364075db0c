//! The v1 `PodStatus` a pod reports, as kubelet generates it
//! (pkg/kubelet/kubelet_pods.go `generateAPIPodStatus`,
//! `convertToAPIContainerStatuses`, `getPhase`; pkg/kubelet/status/generate.go
//! for the conditions; pkg/kubelet/prober/prober_manager.go `UpdatePodStatus`
//! for `ready` and `started`).
//!
//! Pure: the observation, the spec, the previous status (for transition times
//! and terminal phases) and the clock in, a k8s-openapi `PodStatus` out.

mod conditions;
mod phase;

pub use conditions::{conditions, KUBELET_CONDITIONS};
pub use phase::pod_phase;

use crate::actions::{
    container_should_restart, past_active_deadline, start_hold, Config, DEADLINE_MESSAGE,
};
use crate::observe::{
    api_time, init_containers, is_deleted, is_sidecar, main_containers, ContainerObservation,
    ContainerState, PodObservation, Termination,
};
use crate::probe::ProbeResult;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodIP, PodStatus,
};

/// `PodInitializing`: the default waiting reason in a pod with init containers.
pub const POD_INITIALIZING: &str = "PodInitializing";
/// `ContainerCreating`: the default waiting reason otherwise.
pub const CONTAINER_CREATING: &str = "ContainerCreating";

/// The statuses of a pod's init containers and of its main containers, each in
/// spec order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerStatuses {
    /// `status.initContainerStatuses`.
    pub init: Vec<ContainerStatus>,
    /// `status.containerStatuses`.
    pub main: Vec<ContainerStatus>,
}

impl ContainerStatuses {
    /// Init and main statuses together.
    pub fn all(&self) -> impl Iterator<Item = &ContainerStatus> {
        self.init.iter().chain(&self.main)
    }
}

/// Builds every container's status from the observation at `now`.
pub fn container_statuses(
    pod: &Pod,
    observed: &PodObservation,
    now: DateTime<Utc>,
    config: &Config,
) -> ContainerStatuses {
    let has_inits = !init_containers(pod).is_empty();
    let build = |c: &Container, is_init: bool| {
        container_status(
            pod,
            c,
            observed.container(&c.name),
            is_init,
            has_inits,
            now,
            config,
        )
    };
    ContainerStatuses {
        init: init_containers(pod)
            .iter()
            .map(|c| build(c, true))
            .collect(),
        main: main_containers(pod)
            .iter()
            .map(|c| build(c, false))
            .collect(),
    }
}

fn container_status(
    pod: &Pod,
    c: &Container,
    o: Option<&ContainerObservation>,
    is_init: bool,
    has_inits: bool,
    now: DateTime<Utc>,
    config: &Config,
) -> ContainerStatus {
    let default_reason = if has_inits {
        POD_INITIALIZING
    } else {
        CONTAINER_CREATING
    };
    let container_id = o.and_then(|o| o.container_id.clone());
    let mut state = match o.map(|o| &o.state) {
        None | Some(ContainerState::NotCreated) => waiting(default_reason, None),
        Some(ContainerState::Running { started_at }) => ApiState {
            running: Some(ContainerStateRunning {
                started_at: Some(api_time(*started_at)),
            }),
            ..Default::default()
        },
        Some(ContainerState::Exited(t)) => terminated(t, container_id.clone()),
    };
    let mut last_state = o
        .and_then(|o| o.last_termination.as_ref())
        .map(|t| terminated(t, None));

    // A container that will be started again shows why it waits (kubelet's
    // reasonCache, or the back-off holding it); an init container that
    // succeeded is never restarted.
    let init_done = is_init
        && o.and_then(|o| o.state.terminated())
            .is_some_and(|t| t.exit_code == 0);
    if !init_done && container_should_restart(pod, c, o) {
        let reason = o
            .and_then(|o| o.waiting.clone())
            .or_else(|| start_hold(pod, c, o, now, config).map(|w| w.reason));
        if let Some(reason) = reason {
            if state.terminated.is_some() {
                last_state = Some(state);
            }
            state = waiting(&reason.reason, Some(reason.message));
        }
    }

    let running = o.is_some_and(|o| o.state.is_running());
    let verdicts = o.map(|o| o.probes).unwrap_or_default();
    let started =
        running && (c.startup_probe.is_none() || verdicts.startup == Some(ProbeResult::Success));
    let ready = if is_init && !is_sidecar(c) {
        init_done
    } else {
        started && (c.readiness_probe.is_none() || verdicts.readiness == Some(ProbeResult::Success))
    };
    ContainerStatus {
        name: c.name.clone(),
        image: normalized_image(c.image.as_deref().unwrap_or_default()),
        image_id: o.and_then(|o| o.image_id.clone()).unwrap_or_default(),
        container_id,
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ready,
        started: Some(started),
        restart_count: o.map_or(0, |o| o.restart_count),
        ..Default::default()
    }
}

/// The image as containerd and CRI-O report it in a container's status:
/// the reference normalized as Docker does (docker/distribution's
/// `ParseNormalizedNamed` and `TagNameOnly`): `busybox:1.28` is
/// `docker.io/library/busybox:1.28`, a reference without tag or digest gets
/// `:latest`, one with a registry keeps it.
pub fn normalized_image(image: &str) -> String {
    if image.is_empty() {
        return String::new();
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    let (domain, rest) = match path.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            let first = if first == "index.docker.io" {
                "docker.io"
            } else {
                first
            };
            (first.to_string(), rest.to_string())
        }
        _ if path.contains('/') => ("docker.io".to_string(), path.to_string()),
        _ => ("docker.io".to_string(), format!("library/{path}")),
    };
    let mut out = format!("{domain}/{rest}");
    match (tag, digest) {
        (Some(t), _) => out.push_str(&format!(":{t}")),
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out.push_str(&format!("@{d}"));
    }
    out
}

fn waiting(reason: &str, message: Option<String>) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: message.filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    }
}

fn terminated(t: &Termination, container_id: Option<String>) -> ApiState {
    ApiState {
        terminated: Some(ContainerStateTerminated {
            exit_code: t.exit_code,
            // Never filled by kubelet: the CRI's ContainerStatus has no signal
            // (pkg/kubelet/kuberuntime/helpers.go toKubeContainerStatus), so a
            // killed container shows exit code 128+N and kubectl no `Signal:`.
            signal: None,
            reason: Some(t.reason.clone()).filter(|r| !r.is_empty()),
            message: t.message.clone().filter(|m| !m.is_empty()),
            started_at: t.started_at.map(api_time),
            finished_at: Some(api_time(t.finished_at)),
            container_id,
        }),
        ..Default::default()
    }
}

/// The whole status at `now`: phase, conditions (transition times carried from
/// `previous` while a condition keeps its status), container statuses, start
/// time and IPs. `qosClass` is left to the caller (it needs quantity parsing).
pub fn pod_status(
    pod: &Pod,
    observed: &PodObservation,
    previous: Option<&PodStatus>,
    now: DateTime<Utc>,
    config: &Config,
) -> PodStatus {
    let statuses = container_statuses(pod, observed, now, config);
    // A deleted pod whose containers all stopped is terminal: its phase comes
    // from the exit codes whatever the restart policy (syncTerminatingPod).
    let terminal = is_deleted(pod) && !observed.containers.values().any(|c| c.state.is_running());
    let mut phase = pod_phase(pod, &statuses, terminal).to_string();
    let mut reason = None;
    let mut message = None;

    let previous_phase = previous.and_then(|p| p.phase.as_deref());
    if phase != "Failed" && phase != "Succeeded" {
        if let Some(p @ ("Failed" | "Succeeded")) = previous_phase {
            // Pods never leave a terminal phase.
            phase = p.to_string();
        }
    }
    if previous_phase == Some(phase.as_str()) {
        reason = previous.and_then(|p| p.reason.clone());
        message = previous.and_then(|p| p.message.clone());
    }
    // kubelet.go's active deadline handler evicts the pod: Failed, with its reason.
    if past_active_deadline(pod, observed, now) && previous_phase != Some("Succeeded") {
        phase = "Failed".into();
        reason = Some("DeadlineExceeded".into());
        message = Some(DEADLINE_MESSAGE.into());
    }
    // The eviction manager's evictPod: Failed, reason Evicted, its message.
    if let Some(eviction) = &observed.eviction {
        if previous_phase != Some("Succeeded") {
            phase = "Failed".into();
            reason = Some(crate::eviction::REASON.into());
            message = Some(eviction.message.clone());
        }
    }

    let pod_ips: Vec<PodIP> = observed
        .pod_ips
        .iter()
        .map(|ip| PodIP { ip: ip.clone() })
        .collect();
    PodStatus {
        conditions: Some(conditions(pod, observed, &statuses, &phase, previous, now)),
        container_statuses: Some(statuses.main),
        init_container_statuses: Some(statuses.init).filter(|s| !s.is_empty()),
        host_ip: observed.host_ips.first().cloned(),
        host_ips: Some(
            observed
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect::<Vec<_>>(),
        )
        .filter(|ips| !ips.is_empty()),
        pod_ip: observed.pod_ips.first().cloned(),
        pod_ips: Some(pod_ips).filter(|ips| !ips.is_empty()),
        start_time: observed
            .start_time
            .map(api_time)
            .or_else(|| previous.and_then(|p| p.start_time.clone())),
        phase: Some(phase),
        reason,
        message,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
