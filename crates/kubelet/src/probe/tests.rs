use super::*;
use crate::testutil::t;
use serde_json::json;
use ProbeResult::{Failure, Success, Unknown};

fn spec(v: serde_json::Value) -> Probe {
    serde_json::from_value(v).unwrap()
}

/// (kind, probe settings, outcomes, verdict after each).
type Case = (
    ProbeKind,
    serde_json::Value,
    Vec<ProbeResult>,
    Vec<Option<ProbeResult>>,
);

#[test]
fn defaults_as_the_api_server_sets_them() {
    let s = ProbeSettings::from_probe(&spec(json!({"exec": {"command": ["true"]}})));
    assert_eq!(
        s,
        ProbeSettings {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
        }
    );
    let s = ProbeSettings::from_probe(&spec(json!({
        "initialDelaySeconds": 5, "periodSeconds": 2, "timeoutSeconds": 3,
        "successThreshold": 2, "failureThreshold": 1,
    })));
    assert_eq!(
        (
            s.initial_delay,
            s.period,
            s.timeout,
            s.success_threshold,
            s.failure_threshold
        ),
        (
            Duration::from_secs(5),
            Duration::from_secs(2),
            Duration::from_secs(3),
            2,
            1
        )
    );
    // Zero where at least one is required falls back to the default.
    let s = ProbeSettings::from_probe(&spec(json!({"periodSeconds": 0, "failureThreshold": 0})));
    assert_eq!(
        (s.period, s.failure_threshold),
        (Duration::from_secs(10), 3)
    );
}

#[test]
fn initial_verdicts() {
    let p = spec(json!({}));
    let cases = [
        (ProbeKind::Readiness, Some(Failure)),
        (ProbeKind::Liveness, Some(Success)),
        (ProbeKind::Startup, Some(Unknown)),
    ];
    for (kind, want) in cases {
        let mut s = ProbeState::new(kind, &p);
        assert_eq!(s.verdict(), None, "{kind:?} before any container");
        s.container_started(t(0));
        assert_eq!(s.verdict(), want, "{kind:?}");
    }
}

#[test]
fn schedule_honours_initial_delay_and_period() {
    let mut s = ProbeState::new(
        ProbeKind::Liveness,
        &spec(json!({"initialDelaySeconds": 5, "periodSeconds": 10})),
    );
    assert_eq!(s.next_due(), None, "no container");
    s.container_started(t(100));
    let cases = [(104, false), (105, true)];
    for (now, due) in cases {
        assert_eq!(s.due(t(now)), due, "at {now}");
    }
    s.record(Success, t(105));
    assert_eq!(s.next_due(), Some(t(115)));
    assert!(!s.due(t(114)));
    assert!(s.due(t(115)));
}

#[test]
fn thresholds() {
    // (kind, settings, outcomes, verdict after each)
    let cases: Vec<Case> = vec![
        (
            ProbeKind::Readiness,
            json!({}),
            vec![Success, Failure, Failure, Failure, Success],
            vec![
                Some(Success),
                Some(Success),
                Some(Success),
                Some(Failure),
                Some(Success),
            ],
        ),
        (
            ProbeKind::Readiness,
            json!({"successThreshold": 2}),
            vec![Success, Success, Failure, Success],
            vec![Some(Failure), Some(Success), Some(Success), Some(Success)],
        ),
        (
            ProbeKind::Liveness,
            json!({"failureThreshold": 2}),
            vec![Failure, Success, Failure, Failure],
            vec![Some(Success), Some(Success), Some(Success), Some(Failure)],
        ),
        (
            ProbeKind::Startup,
            json!({"failureThreshold": 3}),
            vec![Failure, Failure, Success],
            vec![Some(Unknown), Some(Unknown), Some(Success)],
        ),
    ];
    for (kind, settings, outcomes, verdicts) in cases {
        let mut s = ProbeState::new(kind, &spec(settings.clone()));
        s.container_started(t(0));
        for (i, (r, want)) in outcomes.iter().zip(&verdicts).enumerate() {
            s.record(*r, t(i as i64 * 10));
            assert_eq!(s.verdict(), *want, "{kind:?} {settings} after #{i}");
        }
    }
}

#[test]
fn liveness_failure_holds_until_a_new_instance() {
    let mut s = ProbeState::new(ProbeKind::Liveness, &spec(json!({"failureThreshold": 1})));
    s.container_started(t(0));
    s.record(Failure, t(10));
    assert_eq!(s.verdict(), Some(Failure));
    assert_eq!(s.next_due(), None);
    assert!(!s.due(t(1000)));
    s.container_stopped();
    assert_eq!(s.verdict(), Some(Failure));
    s.container_started(t(50));
    assert_eq!(s.verdict(), Some(Success));
    assert!(s.due(t(50)));
}

#[test]
fn readiness_keeps_probing_after_failure() {
    let mut s = ProbeState::new(ProbeKind::Readiness, &spec(json!({"failureThreshold": 1})));
    s.container_started(t(0));
    s.record(Failure, t(0));
    assert_eq!(s.next_due(), Some(t(10)));
}

fn container(v: serde_json::Value) -> Container {
    serde_json::from_value(v).unwrap()
}

#[test]
fn startup_gates_liveness_and_readiness() {
    let c = container(json!({
        "name": "a",
        "startupProbe": {"periodSeconds": 1, "failureThreshold": 30},
        "livenessProbe": {"periodSeconds": 10},
        "readinessProbe": {"periodSeconds": 5},
    }));
    let mut p = ContainerProbes::new(&c);
    assert!(p.due(t(0)).is_empty(), "no container yet");
    p.container_started(t(0));
    assert!(!p.started());
    assert_eq!(p.due(t(0)), vec![ProbeKind::Startup]);
    p.record(ProbeKind::Startup, Failure, t(0));
    assert_eq!(p.next_due(), Some(t(1)));
    p.record(ProbeKind::Startup, Success, t(1));
    assert!(p.started());
    // The startup probe stops; the others begin.
    assert_eq!(p.due(t(1)), vec![ProbeKind::Liveness, ProbeKind::Readiness]);
    p.record(ProbeKind::Liveness, Success, t(1));
    p.record(ProbeKind::Readiness, Success, t(1));
    assert_eq!(p.next_due(), Some(t(6)));
    assert_eq!(p.due(t(6)), vec![ProbeKind::Readiness]);
    assert_eq!(
        p.verdicts(),
        ProbeVerdicts {
            startup: Some(Success),
            liveness: Some(Success),
            readiness: Some(Success)
        }
    );
}

#[test]
fn no_startup_probe_means_started() {
    let c = container(json!({"name": "a", "readinessProbe": {}}));
    let mut p = ContainerProbes::new(&c);
    p.container_started(t(0));
    assert!(p.started());
    assert_eq!(p.due(t(0)), vec![ProbeKind::Readiness]);
    assert_eq!(
        p.verdicts().readiness,
        Some(Failure),
        "not ready until a success"
    );
    assert_eq!(p.verdicts().liveness, None);
    assert!(p.get(ProbeKind::Liveness).is_none());
    assert_eq!(
        ContainerProbes::new(&container(json!({"name": "b"}))).next_due(),
        None
    );
}

#[test]
fn probes_taken_over_after_a_restart_wait_a_random_part_of_their_period() {
    let probe = spec(json!({"exec": {"command": ["true"]}, "periodSeconds": 10}));
    let mut p = ProbeState::new(ProbeKind::Liveness, &probe);
    p.container_started(t(0));
    p.record(Success, t(100));
    // The agent restarted at 115: the probe was due at 110.
    assert_eq!(p.next_due(), Some(t(110)));
    p.jitter_after_restart(t(115), t(115), 0.5);
    assert_eq!(p.next_due(), Some(t(120)));
    // Once per start: later rounds keep the first draw.
    p.jitter_after_restart(t(115), t(116), 0.9);
    assert_eq!(p.next_due(), Some(t(120)));
    // After the probe ran, the period rules again.
    p.record(Success, t(120));
    assert_eq!(p.next_due(), Some(t(130)));

    // Not after the first period of the agent's life.
    let mut q = ProbeState::new(ProbeKind::Readiness, &probe);
    q.container_started(t(0));
    q.record(Success, t(100));
    q.jitter_after_restart(t(90), t(105), 0.5);
    assert_eq!(q.next_due(), Some(t(110)));
    // A later restart jitters again.
    q.record(Success, t(110));
    q.jitter_after_restart(t(200), t(201), 0.3);
    assert_eq!(q.next_due(), Some(t(204)));
}
