//! The pod's phase from its container statuses: kubelet's `getPhase`
//! (pkg/kubelet/kubelet_pods.go).

use super::ContainerStatuses;
use crate::observe::{init_containers, is_sidecar, main_containers, restart_policy};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

fn last_terminated(s: &ContainerStatus) -> bool {
    s.last_state
        .as_ref()
        .is_some_and(|l| l.terminated.is_some())
}

/// Whether any main container ran (running or terminated): the pod was
/// initialized before (`HasAnyRegularContainerStarted`).
pub(crate) fn any_main_started(pod: &Pod, statuses: &ContainerStatuses) -> bool {
    main_containers(pod).iter().any(|c| {
        find(&statuses.main, &c.name)
            .and_then(|s| s.state.as_ref())
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    })
}

/// `Pending`, `Running`, `Succeeded` or `Failed`, as getPhase decides it.
/// `pod_is_terminal`: the pod is being torn down for good (deleted and
/// stopped), so nothing restarts whatever the policy.
pub fn pod_phase(pod: &Pod, statuses: &ContainerStatuses, pod_is_terminal: bool) -> &'static str {
    let mut pending_init = 0;
    let mut failed_init = 0;
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);

    for c in init_containers(pod) {
        let Some(s) = find(&statuses.init, &c.name) else {
            if is_sidecar(c) {
                unknown += 1;
            } else {
                pending_init += 1;
            }
            continue;
        };
        let st = s.state.clone().unwrap_or_default();
        if is_sidecar(c) {
            // Sidecars count as running containers once started; their exits
            // do not decide the phase.
            if st.running.is_some() {
                if s.started != Some(true) {
                    pending_init += 1;
                }
                running += 1;
            } else if st.terminated.is_some() {
            } else if st.waiting.is_some() {
                if !last_terminated(s) {
                    pending_init += 1;
                    waiting += 1;
                }
            } else {
                pending_init += 1;
                unknown += 1;
            }
        } else if st.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &st.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if st.waiting.is_some() {
            match s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }

    for c in main_containers(pod) {
        let Some(s) = find(&statuses.main, &c.name) else {
            unknown += 1;
            continue;
        };
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = &st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if st.waiting.is_some() {
            if last_terminated(s) {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }

    let policy = restart_policy(pod);
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    // Sidecars restarting after initialization do not send the pod back to Pending.
    if (pending_init > 0 && !any_main_started(pod, statuses)) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if pod_is_terminal {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if policy == "Always" {
            return "Running"; // restarting
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running"; // OnFailure, restarting the failed ones
    }
    "Pending"
}
