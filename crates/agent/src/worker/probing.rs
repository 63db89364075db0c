//! SyncPod's probe step (kubelet's probe workers, run from the sync) and the
//! last decision of a sync: when to look at the pod again.

use super::super::probe::Outcome;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use podrun_kubelet::observe::ContainerState;
use podrun_kubelet::probe::{ContainerProbes, ProbeKind};
use podrun_kubelet::{PodActions, PodObservation};
use std::collections::HashMap;
use std::time::Duration;

/// How often a pod whose init container runs is looked at.
pub const INIT_POLL: Duration = Duration::from_millis(20);

/// When this agent took over the pod's containers, and how to spread their
/// first probes (kubelet's start-up jitter, prober/worker.go).
pub struct TakeOver {
    /// When the agent started.
    pub agent_started: DateTime<Utc>,
    /// Whether probes of containers that started before it are spread
    /// (not in `podrun run`, where it would only delay the one pod).
    pub jitter: bool,
    /// A number in [0, 1).
    pub random: f64,
}

/// Run the probes that are due at `now` for the running containers of `pod`
/// (`prober` runs one), record their verdicts, and tell each failure or
/// warning through `event` as (reason, message), in kubelet's words.
pub fn run_due(
    pod: &Pod,
    observed: &mut PodObservation,
    probes: &mut HashMap<String, ContainerProbes>,
    now: DateTime<Utc>,
    take_over: &TakeOver,
    prober: &mut dyn FnMut(&Container, &Probe) -> Outcome,
    event: &dyn Fn(&str, &str),
) {
    for (n, o) in observed.containers.iter_mut() {
        let Some(p) = probes.get_mut(n) else { continue };
        let adopted = matches!(o.state, ContainerState::Running { started_at } if started_at < take_over.agent_started);
        if adopted && take_over.jitter {
            p.jitter_after_restart(take_over.agent_started, now, take_over.random);
        }
        if o.state.is_running() {
            let spec = podrun_spec::containers(pod).find(|s| &s.name == n);
            for kind in p.due(now) {
                let Some(probe) = p.get(kind).map(|s| s.probe().clone()) else {
                    continue;
                };
                let Some(spec) = spec else { continue };
                let outcome = prober(spec, &probe);
                let which = match kind {
                    ProbeKind::Startup => "Startup",
                    ProbeKind::Liveness => "Liveness",
                    ProbeKind::Readiness => "Readiness",
                };
                if let Some((reason, message)) = outcome.event(which) {
                    event(reason, &message);
                }
                p.record(kind, outcome.result(), now);
            }
        }
        o.probes = p.verdicts();
    }
}

/// When to look at the pod again after a sync at `now` (`None`: the sync
/// interval): the earliest probe or hold that falls due, within `interval`;
/// at once (every [`INIT_POLL`]) while a regular init container runs, or after
/// a start, as the next step may then be due.
pub fn next_wake(
    pod: &Pod,
    observed: &PodObservation,
    probes: &HashMap<String, ContainerProbes>,
    actions: &PodActions,
    now: DateTime<Utc>,
    interval: Duration,
) -> Option<Duration> {
    let next = probes
        .values()
        .filter_map(ContainerProbes::next_due)
        .chain(actions.next_sync)
        .min();
    let wake = next
        .map(|t| (t - now).to_std().unwrap_or_default())
        .map(|d| d.min(interval));
    // While a regular init container runs, the pod waits for its exit to
    // start the next step (kubelet's PLEG relists every second; a
    // ListContainers costs ~0.1 ms).
    let initializing = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| !podrun_kubelet::observe::is_sidecar(c))
        .any(|c| {
            observed
                .containers
                .get(&c.name)
                .is_some_and(|o| o.state.is_running())
        });
    let started_some = !actions.start_init.is_empty() || !actions.start.is_empty();
    if initializing || started_some {
        return Some(wake.map_or(INIT_POLL, |w| w.min(INIT_POLL)));
    }
    wake
}

#[cfg(test)]
mod tests {
    use super::*;
    use podrun_kubelet::probe::ProbeResult;
    use podrun_kubelet::ContainerObservation;
    use std::cell::RefCell;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "web"}, "spec": spec}))
            .unwrap()
    }

    fn probed() -> Pod {
        pod(serde_json::json!({"containers": [
            {"name": "app", "image": "busybox",
             "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 10, "failureThreshold": 1}},
            {"name": "idle", "image": "busybox",
             "readinessProbe": {"exec": {"command": ["true"]}}},
        ]}))
    }

    fn setup(
        p: &Pod,
        running: &[(&str, i64)],
    ) -> (PodObservation, HashMap<String, ContainerProbes>) {
        let mut o = PodObservation::default();
        let mut probes = HashMap::new();
        for c in podrun_spec::containers(p) {
            let mut co = ContainerObservation::default();
            let mut cp = ContainerProbes::new(c);
            if let Some((_, at)) = running.iter().find(|(n, _)| *n == c.name) {
                co.started(t(*at), None);
                cp.container_started(t(*at));
            }
            o.containers.insert(c.name.clone(), co);
            probes.insert(c.name.clone(), cp);
        }
        (o, probes)
    }

    #[test]
    fn due_probes_of_running_containers_run_and_failures_are_told() {
        let p = probed();
        let (mut o, mut probes) = setup(&p, &[("app", 0)]);
        let ran = RefCell::new(Vec::new());
        let events = RefCell::new(Vec::new());
        let take_over = TakeOver {
            agent_started: t(-100),
            jitter: true,
            random: 0.0,
        };
        run_due(
            &p,
            &mut o,
            &mut probes,
            t(1),
            &take_over,
            &mut |c, _| {
                ran.borrow_mut().push(c.name.clone());
                Outcome::Failure("cat: can't open '/tmp/healthy'".into())
            },
            &|r, m| events.borrow_mut().push(format!("{r} {m}")),
        );
        // `idle` does not run: its readiness probe does not either.
        assert_eq!(*ran.borrow(), ["app"]);
        assert_eq!(
            *events.borrow(),
            ["Unhealthy Liveness probe failed: cat: can't open '/tmp/healthy'"]
        );
        assert_eq!(
            o.containers["app"].probes.liveness,
            Some(ProbeResult::Failure)
        );
    }

    #[test]
    fn the_next_look_is_the_earliest_due_within_the_interval() {
        let p = probed();
        let (o, probes) = setup(&p, &[("app", 0)]);
        let interval = Duration::from_secs(1);
        let none = PodActions::default();
        // The liveness probe's first run is due now.
        assert_eq!(
            next_wake(&p, &o, &probes, &none, t(0), interval),
            Some(Duration::ZERO)
        );
        let held = PodActions {
            next_sync: Some(t(30)),
            ..Default::default()
        };
        let (o, probes) = setup(
            &pod(serde_json::json!({"containers": [{"name": "a", "image": "b"}]})),
            &[],
        );
        assert_eq!(
            next_wake(&p, &o, &probes, &held, t(0), interval),
            Some(interval)
        );
        assert_eq!(next_wake(&p, &o, &probes, &none, t(0), interval), None);
    }

    #[test]
    fn a_running_init_container_or_a_start_brings_the_next_look_near() {
        let p = pod(serde_json::json!({
            "initContainers": [{"name": "setup", "image": "busybox"}],
            "containers": [{"name": "app", "image": "busybox"}],
        }));
        let (o, probes) = setup(&p, &[("setup", 0)]);
        let none = PodActions::default();
        let interval = Duration::from_secs(1);
        assert_eq!(
            next_wake(&p, &o, &probes, &none, t(0), interval),
            Some(INIT_POLL)
        );
        let (o, probes) = setup(&p, &[]);
        let started = PodActions {
            start_init: vec!["setup".into()],
            ..Default::default()
        };
        assert_eq!(
            next_wake(&p, &o, &probes, &started, t(0), interval),
            Some(INIT_POLL)
        );
    }
}
