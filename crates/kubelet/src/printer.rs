//! The READY, STATUS, RESTARTS and AGE columns of `kubectl get pods`, from a v1
//! Pod with its status, as kubectl's `printPod`
//! (pkg/printers/internalversion/printers.go) computes them, and durations as
//! apimachinery's `duration.HumanDuration` prints them.

use crate::observe::{chrono_time, init_containers, is_sidecar, main_containers};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod, PodStatus};
use std::collections::HashSet;

/// The three columns printPod derives from the container statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    /// READY: `ready/total`, sidecars counted in both.
    pub ready: String,
    /// STATUS: `Running`, `Init:1/2`, `CrashLoopBackOff`, `Completed` …
    pub status: String,
    /// RESTARTS: `3`, or `3 (45s ago)` when the last restart's time is known.
    pub restarts: String,
}

/// The STATUS column.
pub fn status_column(pod: &Pod) -> String {
    columns(pod, DateTime::<Utc>::MIN_UTC).status
}

/// The READY column.
pub fn ready_column(pod: &Pod) -> String {
    columns(pod, DateTime::<Utc>::MIN_UTC).ready
}

/// The RESTARTS column at `now`.
pub fn restarts_column(pod: &Pod, now: DateTime<Utc>) -> String {
    columns(pod, now).restarts
}

/// The AGE column at `now`.
pub fn age_column(pod: &Pod, now: DateTime<Utc>) -> String {
    match &pod.metadata.creation_timestamp {
        Some(created) => human_duration(now - chrono_time(created)),
        None => "<unknown>".into(),
    }
}

fn condition_true(status: &PodStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

fn exit_words(prefix: &str, t: &ContainerStateTerminated) -> String {
    match t.reason.as_deref() {
        Some(r) if !r.is_empty() => format!("{prefix}{r}"),
        _ => match t.signal {
            Some(s) if s != 0 => format!("{prefix}Signal:{s}"),
            _ => format!("{prefix}ExitCode:{}", t.exit_code),
        },
    }
}

/// `get pods -o wide`'s READINESS GATES: `<none>` without gates, else how many
/// of the pod's readinessGates conditions are True of how many there are
/// (kubectl's printPod).
pub fn readiness_gates_column(pod: &Pod) -> String {
    let gates = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .filter(|g| !g.is_empty());
    let Some(gates) = gates else {
        return "<none>".into();
    };
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let true_ones = gates
        .iter()
        .filter(|g| {
            conditions
                .into_iter()
                .flatten()
                .find(|c| c.type_ == g.condition_type)
                .is_some_and(|c| c.status == "True")
        })
        .count();
    format!("{true_ones}/{}", gates.len())
}

/// All three columns at `now` (only RESTARTS depends on it).
pub fn columns(pod: &Pod, now: DateTime<Utc>) -> Columns {
    let status = pod.status.clone().unwrap_or_default();
    let inits = init_containers(pod);
    let sidecars: HashSet<&str> = inits
        .iter()
        .filter(|c| is_sidecar(c))
        .map(|c| c.name.as_str())
        .collect();
    let total = main_containers(pod).len() + sidecars.len();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;
    let later = |slot: &mut Option<DateTime<Utc>>, t: Option<DateTime<Utc>>| {
        if let Some(t) = t {
            if slot.is_none_or(|s| s < t) {
                *slot = Some(t);
            }
        }
    };
    let finished = |s: &k8s_openapi::api::core::v1::ContainerStatus| {
        s.last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref())
            .map(chrono_time)
    };

    let mut reason = status
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .or_else(|| status.phase.clone())
        .unwrap_or_default();
    if status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
    {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    for (i, cs) in status.init_container_statuses.iter().flatten().enumerate() {
        restarts += cs.restart_count;
        later(&mut last_restart, finished(cs));
        let sidecar = sidecars.contains(cs.name.as_str());
        if sidecar {
            sidecar_restarts += cs.restart_count;
            later(&mut last_sidecar_restart, finished(cs));
        }
        let state = cs.state.clone().unwrap_or_default();
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if sidecar && cs.started == Some(true) {
            ready += usize::from(cs.ready);
            continue;
        }
        reason = match (&state.terminated, &state.waiting) {
            (Some(t), _) => exit_words("Init:", t),
            (None, Some(w))
                if w.reason
                    .as_deref()
                    .is_some_and(|r| !r.is_empty() && r != "PodInitializing") =>
            {
                format!("Init:{}", w.reason.as_deref().unwrap_or_default())
            }
            _ => format!("Init:{i}/{}", inits.len()),
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(&status, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in status.container_statuses.iter().flatten().rev() {
            restarts += cs.restart_count;
            later(&mut last_restart, finished(cs));
            let state = cs.state.clone().unwrap_or_default();
            if let Some(r) = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .filter(|r| !r.is_empty())
            {
                reason = r;
            } else if let Some(t) = &state.terminated {
                reason = exit_words("", t);
            } else if cs.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // Back to Running while a container still runs beside a completed one.
        if reason == "Completed" && has_running {
            reason = if condition_true(&status, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .into();
        }
    }

    let phase = status.phase.as_deref().unwrap_or("");
    if pod.metadata.deletion_timestamp.is_some() {
        if status.reason.as_deref() == Some("NodeLost") {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    let restarts = match last_restart {
        Some(at) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - at)),
        _ => restarts.to_string(),
    };
    Columns {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
    }
}

/// A duration as kubectl prints ages: `45s`, `3m10s`, `5h`, `2d3h` (apimachinery
/// `duration.HumanDuration`).
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let years = hours / 24 / 365;
        return match (hours / 24) % 365 {
            0 => format!("{years}y"),
            days => format!("{years}y{days}d"),
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests;
