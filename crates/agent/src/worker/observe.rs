//! SyncPod's first step, kubelet's PLEG relist: what the pod's monitor reports
//! now, merged into what the agent remembers of each container. A pure
//! function of its inputs (the termination message, which needs files, comes
//! in as a closure), so each rule is tested here without processes or root.

use chrono::{DateTime, Utc};
use podrun_kubelet::observe::{ContainerState, Termination};
use podrun_kubelet::probe::ContainerProbes;
use podrun_kubelet::PodObservation;
use podrun_runtime::monitor::{ContainerState as Reported, ExitRecord};
use std::collections::HashMap;

/// Merge `reported` (the monitor's `State`) into `observed` and the probes'
/// state at `now`:
/// - a running instance not yet known starts its probes afresh;
/// - the exit of the current instance ends it, with `message_of`'s
///   termination message when the record has none; an exit already known,
///   or of an earlier instance, changes nothing;
/// - a `StartError` record is left to the start that got it (the driver
///   records it from the start's answer);
/// - containers the pod does not have are ignored.
pub fn merge(
    observed: &mut PodObservation,
    probes: &mut HashMap<String, ContainerProbes>,
    reported: &[Reported],
    now: DateTime<Utc>,
    message_of: impl Fn(&Reported, &ExitRecord) -> Option<String>,
) {
    for cs in reported {
        let Some(o) = observed.containers.get_mut(&cs.name) else {
            continue;
        };
        let started_at = parse_time(&cs.started_at);
        if cs.running {
            let known = matches!(o.state, ContainerState::Running { started_at: s } if Some(s) == started_at);
            if !known {
                o.started(started_at.unwrap_or(now), Some(runtime_id(&cs.id)));
                if let Some(p) = probes.get_mut(&cs.name) {
                    p.container_started(started_at.unwrap_or(now));
                }
            }
        } else if let Some(exit) = &cs.exit {
            let finished_at = parse_time(&exit.finished_at).unwrap_or(now);
            let known =
                matches!(&o.state, ContainerState::Exited(t) if t.finished_at == finished_at);
            let current = exit.started_at.is_empty() || parse_time(&exit.started_at) == started_at;
            if !known && current && exit.reason != "StartError" {
                if let Some(p) = probes.get_mut(&cs.name) {
                    p.container_stopped();
                }
                o.exited(Termination {
                    exit_code: exit.exit_code,
                    signal: exit.signal,
                    reason: exit.reason.clone(),
                    message: exit.message.clone().or_else(|| message_of(cs, exit)),
                    started_at: parse_time(&exit.started_at),
                    finished_at,
                });
            }
        }
    }
}

/// A container's ID as the API shows it: `<runtime>://<id>`, as kubelet's `containerd://…`.
pub fn runtime_id(id: &str) -> String {
    format!("podrun://{id}")
}

/// An RFC 3339 time of a monitor record (`None` when empty or malformed).
pub fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use podrun_kubelet::ContainerObservation;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn rfc(s: i64) -> String {
        t(s).to_rfc3339()
    }

    fn running(name: &str, started: i64) -> Reported {
        Reported {
            name: name.into(),
            id: format!("pod-{name}"),
            pid: 42,
            running: true,
            restarts: 0,
            started_at: rfc(started),
            exit: None,
        }
    }

    fn exited(name: &str, started: i64, finished: i64, code: i32, reason: &str) -> Reported {
        Reported {
            running: false,
            exit: Some(ExitRecord {
                name: name.into(),
                id: format!("pod-{name}"),
                exit_code: code,
                signal: None,
                started_at: rfc(started),
                finished_at: rfc(finished),
                oom_killed: false,
                reason: reason.into(),
                message: None,
            }),
            ..running(name, started)
        }
    }

    fn pod_with(names: &[&str]) -> (PodObservation, HashMap<String, ContainerProbes>) {
        let mut o = PodObservation::default();
        let mut p = HashMap::new();
        for n in names {
            o.containers
                .insert(n.to_string(), ContainerObservation::default());
            p.insert(n.to_string(), ContainerProbes::default());
        }
        (o, p)
    }

    fn no_message(_: &Reported, _: &ExitRecord) -> Option<String> {
        None
    }

    #[test]
    fn a_new_running_instance_is_seen_once() {
        let (mut o, mut p) = pod_with(&["app"]);
        merge(&mut o, &mut p, &[running("app", 5)], t(6), no_message);
        let app = &o.containers["app"];
        assert_eq!(app.state, ContainerState::Running { started_at: t(5) });
        assert_eq!(app.container_id.as_deref(), Some("podrun://pod-app"));
        // The same instance again changes nothing.
        let before = o.clone();
        merge(&mut o, &mut p, &[running("app", 5)], t(7), no_message);
        assert_eq!(o, before);
    }

    #[test]
    fn the_exit_of_the_current_instance_ends_it_with_its_message() {
        let (mut o, mut p) = pod_with(&["app"]);
        merge(&mut o, &mut p, &[running("app", 5)], t(6), no_message);
        let said = |_: &Reported, e: &ExitRecord| Some(format!("bye {}", e.exit_code));
        merge(
            &mut o,
            &mut p,
            &[exited("app", 5, 9, 3, "Error")],
            t(10),
            said,
        );
        let ContainerState::Exited(end) = &o.containers["app"].state else {
            panic!("{:?}", o.containers["app"].state);
        };
        assert_eq!(
            (end.exit_code, end.reason.as_str(), end.message.as_deref()),
            (3, "Error", Some("bye 3"))
        );
        assert_eq!((end.started_at, end.finished_at), (Some(t(5)), t(9)));
    }

    #[test]
    fn a_known_or_earlier_exit_and_start_errors_change_nothing() {
        let (mut o, mut p) = pod_with(&["app", "side"]);
        merge(&mut o, &mut p, &[running("app", 20)], t(21), no_message);
        let before = o.clone();
        // The exit of the instance before the running one (started at 5).
        let mut old = exited("app", 5, 9, 1, "Error");
        old.started_at = rfc(20);
        merge(&mut o, &mut p, &[old], t(22), no_message);
        // A start error is the start's to record; a stranger is ignored.
        merge(
            &mut o,
            &mut p,
            &[
                exited("side", 0, 0, 128, "StartError"),
                running("stranger", 1),
            ],
            t(23),
            no_message,
        );
        assert_eq!(o, before);
    }
}
