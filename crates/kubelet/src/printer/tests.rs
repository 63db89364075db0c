use super::*;
use crate::actions::Config;
use crate::observe::{
    api_time, ContainerObservation, ContainerState, PodObservation, Termination, WaitingReason,
};
use crate::status::pod_status;
use crate::testutil::*;
use chrono::TimeDelta;
use serde_json::json;

/// The pod with the status kubelet would report for `obs` at `now`.
fn reported(spec: serde_json::Value, obs: &PodObservation, now: i64) -> Pod {
    let mut p = pod(spec);
    p.status = Some(pod_status(&p, obs, None, t(now), &Config::default()));
    p
}

fn row(p: &Pod, now: i64) -> (String, String, String) {
    let c = columns(p, t(now));
    (c.ready, c.status, c.restarts)
}

fn oom() -> ContainerObservation {
    ContainerObservation {
        state: ContainerState::Exited(Termination {
            reason: "OOMKilled".into(),
            ..termination(137, 0, 5)
        }),
        ..Default::default()
    }
}

/// (name, pod spec, observation, now, (READY, STATUS, RESTARTS)).
type Case = (
    &'static str,
    serde_json::Value,
    PodObservation,
    i64,
    (&'static str, &'static str, &'static str),
);

#[test]
fn columns_from_kubelet_status() {
    let inits = |policy: &str| json!({"restartPolicy": policy, "initContainers": [c("i1"), c("i2")], "containers": [c("a")]});
    let two = |policy: &str| json!({"restartPolicy": policy, "containers": [c("a"), c("b")]});
    let one = |policy: &str| json!({"restartPolicy": policy, "containers": [c("a")]});
    let err_pull = ContainerObservation {
        waiting: Some(WaitingReason {
            reason: "ErrImagePull".into(),
            message: "x".into(),
        }),
        ..Default::default()
    };
    let cases: Vec<Case> = vec![
        (
            "no sandbox yet",
            one("Always"),
            PodObservation::default(),
            0,
            ("0/1", "ContainerCreating", "0"),
        ),
        (
            "first init running",
            inits("Always"),
            observed(vec![("i1", running(0))]),
            1,
            ("0/1", "Init:0/2", "0"),
        ),
        (
            "second init running",
            inits("Always"),
            observed(vec![("i1", exited(0, 0, 1)), ("i2", running(1))]),
            2,
            ("0/1", "Init:1/2", "0"),
        ),
        (
            "init failed, Never",
            inits("Never"),
            observed(vec![("i1", exited(1, 0, 1))]),
            2,
            ("0/1", "Init:Error", "0"),
        ),
        (
            "init crash loop",
            inits("Always"),
            observed(vec![("i1", crashed(1, 10, 10, &[(0, 0)]))]),
            12,
            ("0/1", "Init:CrashLoopBackOff", "1 (2s ago)"),
        ),
        (
            "inits done, main not started",
            inits("Always"),
            observed(vec![("i1", exited(0, 0, 1)), ("i2", exited(0, 1, 2))]),
            2,
            ("0/1", "PodInitializing", "0"),
        ),
        (
            "running",
            one("Always"),
            observed(vec![("a", running(0))]),
            1,
            ("1/1", "Running", "0"),
        ),
        (
            "crash loop",
            one("Always"),
            observed(vec![(
                "a",
                crashed(1, 40, 40, &[(0, 0), (10, 10), (30, 30)]),
            )]),
            75,
            ("0/1", "CrashLoopBackOff", "3 (35s ago)"),
        ),
        (
            "completed",
            one("OnFailure"),
            observed(vec![("a", exited(0, 0, 5))]),
            6,
            ("0/1", "Completed", "0"),
        ),
        (
            "error",
            one("Never"),
            observed(vec![("a", exited(1, 0, 5))]),
            6,
            ("0/1", "Error", "0"),
        ),
        (
            "OOMKilled",
            one("Never"),
            observed(vec![("a", oom())]),
            6,
            ("0/1", "OOMKilled", "0"),
        ),
        (
            "one completed, one running and ready",
            two("Never"),
            observed(vec![("a", exited(0, 0, 5)), ("b", running(0))]),
            6,
            ("1/2", "NotReady", "0"),
        ),
        (
            "image pull error",
            one("Always"),
            observed(vec![("a", err_pull)]),
            1,
            ("0/1", "ErrImagePull", "0"),
        ),
        (
            "sidecar and main running",
            json!({"initContainers": [sidecar("s1")], "containers": [c("a")]}),
            observed(vec![("s1", running(0)), ("a", running(1))]),
            2,
            ("2/2", "Running", "0"),
        ),
        (
            "sidecar starting",
            json!({"initContainers": [sidecar("s1")], "containers": [c("a")]}),
            observed(vec![]),
            0,
            ("0/2", "Init:0/1", "0"),
        ),
    ];
    for (name, spec, obs, now, (ready, status, restarts)) in cases {
        let p = reported(spec, &obs, now);
        assert_eq!(
            row(&p, now),
            (ready.to_string(), status.to_string(), restarts.to_string()),
            "{name}"
        );
    }
}

#[test]
fn completed_beside_a_ready_pod_reads_running() {
    let mut p = reported(
        json!({"containers": [c("a"), c("b")]}),
        &observed(vec![("b", running(0))]),
        1,
    );
    // kubectl looks at the Ready condition; force it and a completed first container.
    let status = p.status.as_mut().unwrap();
    status.container_statuses.as_mut().unwrap()[0].state =
        Some(k8s_openapi::api::core::v1::ContainerState {
            terminated: Some(ContainerStateTerminated {
                reason: Some("Completed".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
    for c in status.conditions.as_mut().unwrap() {
        if c.type_ == "Ready" {
            c.status = "True".into();
        }
    }
    assert_eq!(status_column(&p), "Running");
}

#[test]
fn exit_words_without_reason() {
    let mut p = reported(
        json!({"restartPolicy": "Never", "containers": [c("a")]}),
        &observed(vec![("a", running(0))]),
        1,
    );
    let cs = &mut p
        .status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0];
    let term = |signal, code| k8s_openapi::api::core::v1::ContainerState {
        terminated: Some(ContainerStateTerminated {
            signal,
            exit_code: code,
            ..Default::default()
        }),
        ..Default::default()
    };
    cs.state = Some(term(Some(9), 137));
    assert_eq!(status_column(&p), "Signal:9");
    let cs = &mut p
        .status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0];
    cs.state = Some(term(None, 3));
    assert_eq!(status_column(&p), "ExitCode:3");
}

#[test]
fn terminating_unknown_and_gated() {
    let obs = observed(vec![("a", running(0))]);
    let mut p = reported(json!({"containers": [c("a")]}), &obs, 1);
    p.metadata.deletion_timestamp = Some(api_time(t(1)));
    assert_eq!(status_column(&p), "Terminating");
    p.status.as_mut().unwrap().reason = Some("NodeLost".into());
    assert_eq!(status_column(&p), "Unknown");

    let mut done = reported(
        json!({"restartPolicy": "Never", "containers": [c("a")]}),
        &observed(vec![("a", exited(0, 0, 1))]),
        2,
    );
    done.metadata.deletion_timestamp = Some(api_time(t(2)));
    assert_eq!(
        status_column(&done),
        "Completed",
        "terminal pods never read Terminating"
    );

    let mut gated = pod(json!({"containers": [c("a")]}));
    gated.status = Some(serde_json::from_value(json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
    })).unwrap());
    assert_eq!(status_column(&gated), "SchedulingGated");
    assert_eq!(ready_column(&gated), "0/1");
}

#[test]
fn restarts_count_sidecars_once_initialized() {
    let p = reported(
        json!({"initContainers": [c("i1"), sidecar("s1")], "containers": [c("a")]}),
        &observed(vec![
            (
                "i1",
                ContainerObservation {
                    restart_count: 2,
                    ..exited(0, 0, 1)
                },
            ),
            (
                "s1",
                ContainerObservation {
                    restart_count: 1,
                    last_termination: Some(termination(1, 1, 30)),
                    ..running(31)
                },
            ),
            (
                "a",
                ContainerObservation {
                    restart_count: 4,
                    last_termination: Some(termination(1, 2, 50)),
                    ..running(51)
                },
            ),
        ]),
        60,
    );
    // Regular init restarts no longer count once the pod runs.
    assert_eq!(restarts_column(&p, t(60)), "5 (10s ago)");
}

#[test]
fn human_durations() {
    let table = [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (120, "2m"),
        (190, "3m10s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (51 * 3600, "2d3h"),
        (8 * 86400, "8d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
    ];
    for (secs, want) in table {
        assert_eq!(human_duration(TimeDelta::seconds(secs)), want, "{secs}s");
    }
    let mut p = pod(json!({"containers": [c("a")]}));
    assert_eq!(age_column(&p, t(0)), "<unknown>");
    p.metadata.creation_timestamp = Some(api_time(t(0)));
    assert_eq!(age_column(&p, t(190)), "3m10s");
}

/// kubectl's READINESS GATES: `<none>`, else true conditions of the gates / gates.
#[test]
fn readiness_gates_column_counts_true_gate_conditions() {
    let pod = |gates: serde_json::Value, conditions: serde_json::Value| -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}], "readinessGates": gates},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    };
    assert_eq!(
        readiness_gates_column(&pod(serde_json::json!([]), serde_json::json!([]))),
        "<none>"
    );
    let gates =
        serde_json::json!([{"conditionType": "example.com/a"}, {"conditionType": "example.com/b"}]);
    let conditions = serde_json::json!([
        {"type": "Ready", "status": "True"},
        {"type": "example.com/a", "status": "True"},
        {"type": "example.com/b", "status": "False"},
    ]);
    assert_eq!(
        readiness_gates_column(&pod(gates.clone(), conditions)),
        "1/2"
    );
    assert_eq!(
        readiness_gates_column(&pod(gates, serde_json::json!([]))),
        "0/2"
    );
}
