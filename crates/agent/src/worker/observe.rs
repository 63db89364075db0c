//! SyncPod's first step, kubelet's PLEG relist: what the runtime reports of
//! the sandbox's containers now (ListContainers), merged into what the agent
//! remembers of each container. A pure
//! function of its inputs (the termination message, which needs files, comes
//! in as a closure), so each rule is tested here without processes or root.

use chrono::{DateTime, Utc};
use podrun_kubelet::observe::{ContainerState, Termination};
use podrun_kubelet::probe::ContainerProbes;
use podrun_kubelet::PodObservation;
use podrun_runtime::api::{ContainerState as State, ContainerStatus as Reported};
use std::collections::HashMap;

/// Merge `reported` (the runtime's statuses of the sandbox's containers) into `observed` and the probes'
/// state at `now`:
/// - a running instance not yet known starts its probes afresh;
/// - the exit of the current instance ends it, with `message_of`'s
///   termination message when the runtime has none; an exit already known,
///   or of an instance older than the one seen running, changes nothing;
/// - a `StartError` exit is left to the start that got it (the driver
///   records it from the start's answer);
/// - a container created and not started, or whose state the runtime lost
///   (its monitor died: the sandbox is then made again), changes nothing;
/// - containers the pod does not have are ignored.
pub fn merge(
    observed: &mut PodObservation,
    probes: &mut HashMap<String, ContainerProbes>,
    reported: &[Reported],
    now: DateTime<Utc>,
    message_of: impl Fn(&Reported) -> Option<String>,
) {
    for cs in reported {
        let Some(o) = observed.containers.get_mut(&cs.name) else {
            continue;
        };
        let started_at = parse_time(&cs.started_at);
        match cs.state {
            State::Running => {
                let known = matches!(o.state, ContainerState::Running { started_at: s } if Some(s) == started_at);
                if !known {
                    o.started(started_at.unwrap_or(now), Some(runtime_id(&cs.id)));
                    if let Some(p) = probes.get_mut(&cs.name) {
                        p.container_started(started_at.unwrap_or(now));
                    }
                }
            }
            State::Exited => {
                let finished_at = parse_time(&cs.finished_at).unwrap_or(now);
                let known =
                    matches!(&o.state, ContainerState::Exited(t) if t.finished_at == finished_at);
                // The end of an instance older than the one seen running.
                let stale = matches!(o.state, ContainerState::Running { started_at: s } if started_at.is_some_and(|t| t < s));
                if !known && !stale && cs.reason != "StartError" {
                    if let Some(p) = probes.get_mut(&cs.name) {
                        p.container_stopped();
                    }
                    o.exited(Termination {
                        exit_code: cs.exit_code,
                        // As kubelet: CRI reports no signal (the code says it).
                        signal: None,
                        reason: cs.reason.clone(),
                        message: Some(cs.message.clone())
                            .filter(|m| !m.is_empty())
                            .or_else(|| message_of(cs)),
                        started_at,
                        finished_at,
                    });
                }
            }
            State::Created | State::Unknown => {}
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
            id: format!("pod-{name}"),
            sandbox_id: "pod".into(),
            name: name.into(),
            state: State::Running,
            created_at: rfc(started),
            started_at: rfc(started),
            finished_at: String::new(),
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: Some(42),
            restarts: 0,
            log_path: "/nonexistent".into(),
            log_lines_dropped: 0,
            config: Default::default(),
            image_ref: String::new(),
            user: None,
        }
    }

    fn exited(name: &str, started: i64, finished: i64, code: i32, reason: &str) -> Reported {
        Reported {
            state: State::Exited,
            finished_at: rfc(finished),
            exit_code: code,
            reason: reason.into(),
            pid: None,
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

    fn no_message(_: &Reported) -> Option<String> {
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
        let said = |e: &Reported| Some(format!("bye {}", e.exit_code));
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
        let old = exited("app", 5, 9, 1, "Error");
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
