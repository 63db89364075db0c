//! The pod conditions kubelet owns (pkg/kubelet/status/generate.go), in the
//! order it appends them, with `lastTransitionTime` carried over from the
//! previous status while a condition keeps its status (the status manager's
//! `updateLastTransitionTime`).

use super::phase::any_main_started;
use super::ContainerStatuses;
use crate::observe::{
    api_time, init_containers, is_sidecar, main_containers, PodObservation, SandboxState,
};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition, PodStatus};

/// The condition types kubelet sets; any other condition of the previous
/// status (a readiness gate's, say) is kept as it was.
pub const KUBELET_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.map(str::to_string),
        message,
        ..Default::default()
    }
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

/// Go's `%s` of a string slice: `[a b]`.
fn go_list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

fn unready_message(unknown: &[String], other: &[String], what: &str) -> Option<String> {
    let mut parts = vec![];
    if !unknown.is_empty() {
        parts.push(format!(
            "containers with unknown status: {}",
            go_list(unknown)
        ));
    }
    if !other.is_empty() {
        parts.push(format!("containers with {what} status: {}", go_list(other)));
    }
    Some(parts.join(", ")).filter(|m| !m.is_empty())
}

/// `ContainersReady`: every sidecar and main container ready.
pub(crate) fn containers_ready(
    pod: &Pod,
    statuses: &ContainerStatuses,
    phase: &str,
) -> PodCondition {
    let mut unknown = vec![];
    let mut unready = vec![];
    let sidecars = init_containers(pod)
        .iter()
        .filter(|c| is_sidecar(c))
        .map(|c| (c, &statuses.init));
    let mains = main_containers(pod).iter().map(|c| (c, &statuses.main));
    for (c, list) in sidecars.chain(mains) {
        match find(list, &c.name) {
            Some(s) if !s.ready => unready.push(c.name.clone()),
            Some(_) => {}
            None => unknown.push(c.name.clone()),
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition("ContainersReady", false, Some("PodCompleted"), None);
    }
    if phase == "Failed" {
        return condition("ContainersReady", false, Some("PodFailed"), None);
    }
    match unready_message(&unknown, &unready, "unready") {
        Some(m) => condition(
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            Some(m),
        ),
        None => condition("ContainersReady", true, None, None),
    }
}

/// `Ready`: `ContainersReady` and every readiness gate's condition true.
fn ready(pod: &Pod, kept: &[PodCondition], containers: &PodCondition) -> PodCondition {
    if containers.status != "True" {
        return PodCondition {
            type_: "Ready".into(),
            ..containers.clone()
        };
    }
    let gates = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or(&[]);
    let mut messages = vec![];
    for gate in gates {
        let t = &gate.condition_type;
        match kept.iter().find(|c| &c.type_ == t) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate \"{t}\" does not exist."
            )),
            Some(c) if c.status != "True" => messages.push(format!(
                "the status of pod readiness gate \"{t}\" is not \"True\", but {}",
                c.status
            )),
            Some(_) => {}
        }
    }
    if messages.is_empty() {
        condition("Ready", true, None, None)
    } else {
        condition(
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(messages.join(", ")),
        )
    }
}

/// `Initialized`: regular init containers succeeded, sidecars started.
fn initialized(pod: &Pod, statuses: &ContainerStatuses, phase: &str) -> PodCondition {
    let mut unknown = vec![];
    let mut incomplete = vec![];
    for c in init_containers(pod) {
        let Some(s) = find(&statuses.init, &c.name) else {
            unknown.push(c.name.clone());
            continue;
        };
        let done = if is_sidecar(c) {
            s.started == Some(true)
        } else {
            s.ready
        };
        if !done {
            incomplete.push(c.name.clone());
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition("Initialized", true, Some("PodCompleted"), None);
    }
    if any_main_started(pod, statuses) {
        return condition("Initialized", true, None, None);
    }
    match unready_message(&unknown, &incomplete, "incomplete") {
        Some(m) => condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(m),
        ),
        None => condition("Initialized", true, None, None),
    }
}

/// Every condition of the pod at `now`: the previous status's conditions that
/// kubelet does not own, then PodReadyToStartContainers, Initialized, Ready,
/// ContainersReady and PodScheduled.
pub fn conditions(
    pod: &Pod,
    observed: &PodObservation,
    statuses: &ContainerStatuses,
    phase: &str,
    previous: Option<&PodStatus>,
    now: DateTime<Utc>,
) -> Vec<PodCondition> {
    let old: &[PodCondition] = previous
        .and_then(|p| p.conditions.as_deref())
        .unwrap_or(&[]);
    let mut kept: Vec<PodCondition> = old
        .iter()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    // A pressure eviction's condition (eviction_manager.go passes it to
    // evictPod; the status manager puts it before the others, once).
    if let Some(e) = observed.eviction.as_ref().filter(|e| e.disruption) {
        if !kept.iter().any(|c| c.type_ == "DisruptionTarget") {
            let mut c = condition(
                "DisruptionTarget",
                true,
                Some("TerminationByKubelet"),
                Some(e.message.clone()),
            );
            c.last_transition_time = Some(api_time(now));
            kept.insert(0, c);
        }
    }
    let containers = containers_ready(pod, statuses, phase);
    let ours = [
        condition(
            "PodReadyToStartContainers",
            observed.sandbox == SandboxState::Ready,
            None,
            None,
        ),
        initialized(pod, statuses, phase),
        ready(pod, &kept, &containers),
        containers,
        condition("PodScheduled", true, None, None),
    ];
    let mut out = kept;
    for mut c in ours {
        c.last_transition_time = match old.iter().find(|o| o.type_ == c.type_) {
            Some(o) if o.status == c.status && o.last_transition_time.is_some() => {
                o.last_transition_time.clone()
            }
            _ => Some(api_time(now)),
        };
        out.push(c);
    }
    out
}
