use super::*;
use crate::observe::{ProbeVerdicts, WaitingReason};
use crate::testutil::*;
use k8s_openapi::api::core::v1::PodCondition;
use serde_json::json;

fn statuses(pod: &Pod, obs: &PodObservation, now: i64) -> ContainerStatuses {
    container_statuses(pod, obs, t(now), &Config::default())
}

/// A container state in one word: `waiting:Reason`, `running`, `terminated:Reason:code`.
fn state_word(s: &Option<ApiState>) -> String {
    let Some(s) = s else { return "none".into() };
    if let Some(w) = &s.waiting {
        return format!("waiting:{}", w.reason.as_deref().unwrap_or(""));
    }
    if s.running.is_some() {
        return "running".into();
    }
    if let Some(t) = &s.terminated {
        return format!(
            "terminated:{}:{}",
            t.reason.as_deref().unwrap_or(""),
            t.exit_code
        );
    }
    "empty".into()
}

fn line(s: &ContainerStatus) -> String {
    format!(
        "{} state={} last={} ready={} started={} restarts={}",
        s.name,
        state_word(&s.state),
        state_word(&s.last_state),
        s.ready,
        s.started.unwrap_or(false),
        s.restart_count
    )
}

fn with_readiness(name: &str) -> serde_json::Value {
    let mut c = c(name);
    c["readinessProbe"] = probe();
    c
}

fn with_startup(name: &str) -> serde_json::Value {
    let mut c = c(name);
    c["startupProbe"] = probe();
    c
}

fn probes(
    o: ContainerObservation,
    startup: Option<ProbeResult>,
    readiness: Option<ProbeResult>,
) -> ContainerObservation {
    ContainerObservation {
        probes: ProbeVerdicts {
            startup,
            liveness: None,
            readiness,
        },
        ..o
    }
}

fn cache(o: ContainerObservation, reason: &str) -> ContainerObservation {
    ContainerObservation {
        waiting: Some(WaitingReason {
            reason: reason.into(),
            message: "m".into(),
        }),
        ..o
    }
}

use ProbeResult::Success;

/// (name, pod spec, observation, now, pod is terminal, phase).
type PhaseCase = (
    &'static str,
    serde_json::Value,
    Vec<(&'static str, ContainerObservation)>,
    i64,
    bool,
    &'static str,
);

#[test]
fn container_status_table() {
    let one = |policy: &str, spec: serde_json::Value| {
        pod(json!({"restartPolicy": policy, "containers": [spec]}))
    };
    let cases: Vec<(&str, Pod, ContainerObservation, i64, &str)> = vec![
        ("not created", one("Always", c("a")), ContainerObservation::default(), 0,
            "a state=waiting:ContainerCreating last=empty ready=false started=false restarts=0"),
        ("running, no probes: ready", one("Always", c("a")), running(0), 1,
            "a state=running last=empty ready=true started=true restarts=0"),
        ("running, readiness not yet passed", one("Always", with_readiness("a")), running(0), 1,
            "a state=running last=empty ready=false started=true restarts=0"),
        ("running, readiness passed", one("Always", with_readiness("a")), probes(running(0), None, Some(Success)), 1,
            "a state=running last=empty ready=true started=true restarts=0"),
        ("running, startup not passed: neither started nor ready", one("Always", with_startup("a")), running(0), 1,
            "a state=running last=empty ready=false started=false restarts=0"),
        ("running, startup passed", one("Always", with_startup("a")), probes(running(0), Some(Success), None), 1,
            "a state=running last=empty ready=true started=true restarts=0"),
        ("exited under Never: terminated", one("Never", c("a")), exited(2, 0, 5), 6,
            "a state=terminated:Error:2 last=empty ready=false started=false restarts=0"),
        ("exited 0 under OnFailure: terminated Completed", one("OnFailure", c("a")), exited(0, 0, 5), 6,
            "a state=terminated:Completed:0 last=empty ready=false started=false restarts=0"),
        ("first exit under Always, no hold yet: terminated", one("Always", c("a")), exited(1, 0, 5), 5,
            "a state=terminated:Error:1 last=empty ready=false started=false restarts=0"),
        ("crash loop: waiting, the exit becomes lastState", one("Always", c("a")), crashed(1, 10, 10, &[(0, 0)]), 12,
            "a state=waiting:CrashLoopBackOff last=terminated:Error:1 ready=false started=false restarts=1"),
        ("cached start failure", one("Always", c("a")), cache(ContainerObservation::default(), "ErrImagePull"), 1,
            "a state=waiting:ErrImagePull last=empty ready=false started=false restarts=0"),
        ("cached reason ignored once running", one("Always", c("a")), cache(running(0), "ErrImagePull"), 1,
            "a state=running last=empty ready=true started=true restarts=0"),
        ("previous instance's end is lastState",
            one("Always", c("a")), ContainerObservation { last_termination: Some(termination(137, 0, 9)), restart_count: 1, ..running(10) }, 11,
            "a state=running last=terminated:Error:137 ready=true started=true restarts=1"),
    ];
    for (name, pod, o, now, want) in cases {
        let got = statuses(&pod, &observed(vec![("a", o)]), now);
        assert_eq!(line(&got.main[0]), want, "{name}");
    }
}

#[test]
fn terminated_fields() {
    let p = pod(json!({"restartPolicy": "Never", "containers": [c("a")]}));
    let mut o = exited(137, 1, 9);
    o.state = ContainerState::Exited(Termination {
        signal: Some(9),
        reason: "OOMKilled".into(),
        message: Some("out of memory".into()),
        ..termination(137, 1, 9)
    });
    o.container_id = Some("podrun://x".into());
    let s = &statuses(&p, &observed(vec![("a", o)]), 10).main[0];
    let term = s.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(term.exit_code, 137);
    assert_eq!(
        term.signal, None,
        "kubelet never fills signal (the CRI has none)"
    );
    assert_eq!(term.reason.as_deref(), Some("OOMKilled"));
    assert_eq!(term.message.as_deref(), Some("out of memory"));
    assert_eq!(term.started_at, Some(api_time(t(1))));
    assert_eq!(term.finished_at, Some(api_time(t(9))));
    assert_eq!(term.container_id.as_deref(), Some("podrun://x"));
    assert_eq!(s.container_id.as_deref(), Some("podrun://x"));
    // The normalized reference, as containerd reports it (the spec says a:1).
    assert_eq!(s.image, "docker.io/library/a:1");
}

#[test]
fn init_container_statuses() {
    let p =
        pod(json!({"initContainers": [c("i1"), sidecar("s1"), c("i2")], "containers": [c("a")]}));
    let obs = observed(vec![("i1", exited(0, 0, 1)), ("s1", running(1))]);
    let got = statuses(&p, &obs, 2);
    let lines: Vec<String> = got.all().map(line).collect();
    assert_eq!(
        lines,
        vec![
            "i1 state=terminated:Completed:0 last=empty ready=true started=false restarts=0",
            "s1 state=running last=empty ready=true started=true restarts=0",
            "i2 state=waiting:PodInitializing last=empty ready=false started=false restarts=0",
            "a state=waiting:PodInitializing last=empty ready=false started=false restarts=0",
        ]
    );
    // A sidecar restarts under any pod policy: its crash loop shows.
    let p = pod(
        json!({"restartPolicy": "Never", "initContainers": [sidecar("s1")], "containers": [c("a")]}),
    );
    let obs = observed(vec![("s1", crashed(1, 5, 5, &[(0, 0)])), ("a", running(1))]);
    assert_eq!(
        line(&statuses(&p, &obs, 6).init[0]),
        "s1 state=waiting:CrashLoopBackOff last=terminated:Error:1 ready=false started=false restarts=1"
    );
}

fn phase_of(
    spec: serde_json::Value,
    obs: Vec<(&str, ContainerObservation)>,
    now: i64,
    terminal: bool,
) -> &'static str {
    let p = pod(spec);
    pod_phase(&p, &statuses(&p, &observed(obs), now), terminal)
}

#[test]
fn phase_table() {
    let inits = |policy: &str| json!({"restartPolicy": policy, "initContainers": [c("i1")], "containers": [c("a")]});
    let mains = |policy: &str| json!({"restartPolicy": policy, "containers": [c("a"), c("b")]});
    let with_sidecar = |policy: &str, s: serde_json::Value| json!({"restartPolicy": policy, "initContainers": [s], "containers": [c("a")]});
    let cases: Vec<PhaseCase> = vec![
        (
            "nothing created",
            mains("Always"),
            vec![],
            0,
            false,
            "Pending",
        ),
        (
            "init running",
            inits("Always"),
            vec![("i1", running(0))],
            1,
            false,
            "Pending",
        ),
        (
            "init failed, Never",
            inits("Never"),
            vec![("i1", exited(1, 0, 1))],
            2,
            false,
            "Failed",
        ),
        (
            "init crash-looping, Always",
            inits("Always"),
            vec![("i1", crashed(1, 1, 1, &[(0, 0)]))],
            2,
            false,
            "Pending",
        ),
        (
            "init done, main running",
            inits("Always"),
            vec![("i1", exited(0, 0, 1)), ("a", running(1))],
            2,
            false,
            "Running",
        ),
        (
            "one running, one not created",
            mains("Always"),
            vec![("a", running(0))],
            1,
            false,
            "Pending",
        ),
        (
            "both running",
            mains("Always"),
            vec![("a", running(0)), ("b", running(0))],
            1,
            false,
            "Running",
        ),
        (
            "one running, one exited",
            mains("Never"),
            vec![("a", running(0)), ("b", exited(1, 0, 1))],
            2,
            false,
            "Running",
        ),
        (
            "all exited, Always: restarting",
            mains("Always"),
            vec![("a", exited(0, 0, 1)), ("b", exited(0, 0, 1))],
            1,
            false,
            "Running",
        ),
        (
            "all exited 0, OnFailure",
            mains("OnFailure"),
            vec![("a", exited(0, 0, 1)), ("b", exited(0, 0, 1))],
            2,
            false,
            "Succeeded",
        ),
        (
            "one failed, OnFailure: restarting",
            mains("OnFailure"),
            vec![("a", exited(1, 0, 1)), ("b", exited(0, 0, 1))],
            1,
            false,
            "Running",
        ),
        (
            "one failed, Never",
            mains("Never"),
            vec![("a", exited(1, 0, 1)), ("b", exited(0, 0, 1))],
            2,
            false,
            "Failed",
        ),
        (
            "crash loop counts as stopped",
            mains("Always"),
            vec![("a", crashed(1, 1, 1, &[(0, 0)])), ("b", running(0))],
            2,
            false,
            "Running",
        ),
        (
            "deleted and stopped: exit codes decide",
            mains("Always"),
            vec![("a", exited(143, 0, 1)), ("b", exited(0, 0, 1))],
            2,
            true,
            "Failed",
        ),
        (
            "deleted and stopped cleanly",
            mains("Always"),
            vec![("a", exited(0, 0, 1)), ("b", exited(0, 0, 1))],
            2,
            true,
            "Succeeded",
        ),
        (
            "sidecar running beside done main: still Running",
            with_sidecar("Never", sidecar("s1")),
            vec![("s1", running(0)), ("a", exited(0, 1, 2))],
            3,
            false,
            "Running",
        ),
        (
            "sidecar stopped after done main: its exit does not count",
            with_sidecar("Never", sidecar("s1")),
            vec![("s1", exited(143, 0, 3)), ("a", exited(0, 1, 2))],
            4,
            false,
            "Succeeded",
        ),
        (
            "sidecar not yet started (startup probe): Pending",
            with_sidecar("Always", {
                let mut s = sidecar("s1");
                s["startupProbe"] = probe();
                s
            }),
            vec![("s1", running(0))],
            1,
            false,
            "Pending",
        ),
        (
            "sidecar restarting after init: not back to Pending",
            with_sidecar("Always", sidecar("s1")),
            vec![("s1", exited(1, 0, 5)), ("a", running(1))],
            5,
            false,
            "Running",
        ),
    ];
    for (name, spec, obs, now, terminal, want) in cases {
        assert_eq!(phase_of(spec, obs, now, terminal), want, "{name}");
    }
}

fn cond<'a>(s: &'a PodStatus, type_: &str) -> &'a PodCondition {
    s.conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap()
}

fn status_at(p: &Pod, obs: &PodObservation, previous: Option<&PodStatus>, now: i64) -> PodStatus {
    pod_status(p, obs, previous, t(now), &Config::default())
}

#[test]
fn conditions_of_a_ready_pod() {
    let p = pod(json!({"initContainers": [c("i1")], "containers": [c("a")]}));
    let obs = observed(vec![("i1", exited(0, 0, 1)), ("a", running(1))]);
    let s = status_at(&p, &obs, None, 2);
    let types: Vec<(&str, &str)> = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("PodReadyToStartContainers", "True"),
            ("Initialized", "True"),
            ("Ready", "True"),
            ("ContainersReady", "True"),
            ("PodScheduled", "True"),
        ]
    );
    assert_eq!(s.phase.as_deref(), Some("Running"));
}

#[test]
fn condition_reasons_and_messages() {
    let p = pod(json!({"initContainers": [c("i1"), c("i2")], "containers": [c("a"), c("b")]}));
    let s = status_at(&p, &observed(vec![("i1", running(0))]), None, 1);
    let init = cond(&s, "Initialized");
    assert_eq!(
        (init.status.as_str(), init.reason.as_deref()),
        ("False", Some("ContainersNotInitialized"))
    );
    assert_eq!(
        init.message.as_deref(),
        Some("containers with incomplete status: [i1 i2]")
    );
    let cr = cond(&s, "ContainersReady");
    assert_eq!(cr.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        cr.message.as_deref(),
        Some("containers with unready status: [a b]")
    );
    let ready = cond(&s, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.message.as_ref()),
        ("False", cr.message.as_ref())
    );

    // Completed pod.
    let p = pod(
        json!({"restartPolicy": "OnFailure", "initContainers": [c("i1")], "containers": [c("a")]}),
    );
    let s = status_at(
        &p,
        &observed(vec![("i1", exited(0, 0, 1)), ("a", exited(0, 1, 2))]),
        None,
        3,
    );
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    assert_eq!(
        cond(&s, "ContainersReady").reason.as_deref(),
        Some("PodCompleted")
    );
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
    assert_eq!(
        cond(&s, "Initialized").reason.as_deref(),
        Some("PodCompleted")
    );

    // No sandbox yet.
    let s = status_at(&p, &PodObservation::default(), None, 0);
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
    assert_eq!(s.phase.as_deref(), Some("Pending"));
}

#[test]
fn readiness_gates() {
    let p = pod(
        json!({"readinessGates": [{"conditionType": "example.com/lb"}], "containers": [c("a")]}),
    );
    let obs = observed(vec![("a", running(0))]);
    let s = status_at(&p, &obs, None, 1);
    let r = cond(&s, "Ready");
    assert_eq!(
        (r.status.as_str(), r.reason.as_deref()),
        ("False", Some("ReadinessGatesNotReady"))
    );
    assert_eq!(
        r.message.as_deref(),
        Some("corresponding condition of pod readiness gate \"example.com/lb\" does not exist.")
    );
    // The gate's condition, set by someone else, is kept and honoured.
    let mut previous = s.clone();
    previous.conditions.as_mut().unwrap().insert(
        0,
        PodCondition {
            type_: "example.com/lb".into(),
            status: "True".into(),
            ..Default::default()
        },
    );
    let s = status_at(&p, &obs, Some(&previous), 2);
    assert_eq!(s.conditions.as_ref().unwrap()[0].type_, "example.com/lb");
    assert_eq!(cond(&s, "Ready").status, "True");
}

#[test]
fn transition_times_carry_over() {
    let p = pod(json!({"containers": [with_readiness("a")]}));
    let not_ready = observed(vec![("a", running(0))]);
    let s1 = status_at(&p, &not_ready, None, 1);
    assert_eq!(
        cond(&s1, "Ready").last_transition_time,
        Some(api_time(t(1)))
    );
    // Same status later: the time stays.
    let s2 = status_at(&p, &not_ready, Some(&s1), 5);
    assert_eq!(
        cond(&s2, "Ready").last_transition_time,
        Some(api_time(t(1)))
    );
    assert_eq!(
        cond(&s2, "PodScheduled").last_transition_time,
        Some(api_time(t(1)))
    );
    // Becomes ready: a new time for the conditions that changed only.
    let ready = observed(vec![("a", probes(running(0), None, Some(Success)))]);
    let s3 = status_at(&p, &ready, Some(&s2), 9);
    assert_eq!(
        cond(&s3, "Ready").last_transition_time,
        Some(api_time(t(9)))
    );
    assert_eq!(
        cond(&s3, "ContainersReady").last_transition_time,
        Some(api_time(t(9)))
    );
    assert_eq!(
        cond(&s3, "Initialized").last_transition_time,
        Some(api_time(t(1)))
    );
}

#[test]
fn deadline_fails_the_pod() {
    let p = pod(json!({"activeDeadlineSeconds": 30, "containers": [c("a")]}));
    let obs = observed(vec![("a", running(0))]);
    let s = status_at(&p, &obs, None, 29);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let s = status_at(&p, &obs, None, 30);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(s.message.as_deref(), Some(DEADLINE_MESSAGE));
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodFailed"));
}

#[test]
fn terminal_phase_is_sticky_and_reasons_carry() {
    let p = pod(json!({"containers": [c("a")]}));
    let previous = PodStatus {
        phase: Some("Failed".into()),
        reason: Some("DeadlineExceeded".into()),
        ..Default::default()
    };
    let s = status_at(&p, &observed(vec![("a", running(0))]), Some(&previous), 5);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
}

#[test]
fn start_time_and_ips() {
    let p = pod(json!({"containers": [c("a")]}));
    let mut obs = observed(vec![("a", running(0))]);
    obs.pod_ips = vec!["10.88.0.5".into(), "fd00::5".into()];
    obs.host_ips = vec!["192.168.1.2".into(), "fd00::2".into()];
    let s = status_at(&p, &obs, None, 1);
    assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.5"));
    assert_eq!(s.pod_ips.as_ref().unwrap().len(), 2);
    assert_eq!(s.host_ip.as_deref(), Some("192.168.1.2"));
    let host_ips: Vec<&str> = s.host_ips.iter().flatten().map(|h| h.ip.as_str()).collect();
    assert_eq!(host_ips, ["192.168.1.2", "fd00::2"]);
    assert_eq!(s.start_time, Some(api_time(t(0))));
    assert!(s.init_container_statuses.is_none());
    // Without addresses the fields are absent, as kubelet leaves them.
    let s = status_at(&p, &observed(vec![("a", running(0))]), None, 1);
    assert!(s.pod_ip.is_none() && s.pod_ips.is_none());
    assert!(s.host_ip.is_none() && s.host_ips.is_none());
}

/// `status.containerStatuses[].image` is the normalized reference, as
/// containerd and CRI-O report it.
#[test]
fn images_are_normalized_as_the_runtimes_report_them() {
    let sha = "sha256:1e0d4c3c1f1b2a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e";
    let table = [
        ("busybox", "docker.io/library/busybox:latest".to_string()),
        ("busybox:1.28", "docker.io/library/busybox:1.28".to_string()),
        (
            "library/busybox:1.28",
            "docker.io/library/busybox:1.28".to_string(),
        ),
        (
            "bitnami/nginx",
            "docker.io/bitnami/nginx:latest".to_string(),
        ),
        (
            "index.docker.io/library/nginx:1",
            "docker.io/library/nginx:1".to_string(),
        ),
        (
            "127.0.0.1:5000/busybox:latest",
            "127.0.0.1:5000/busybox:latest".to_string(),
        ),
        ("localhost/app", "localhost/app:latest".to_string()),
        (
            "registry.k8s.io/pause:3.10",
            "registry.k8s.io/pause:3.10".to_string(),
        ),
        ("quay.io/a/b/c", "quay.io/a/b/c:latest".to_string()),
        (
            &format!("busybox@{sha}"),
            format!("docker.io/library/busybox@{sha}"),
        ),
        (
            &format!("busybox:1.28@{sha}"),
            format!("docker.io/library/busybox:1.28@{sha}"),
        ),
    ];
    for (image, want) in table {
        assert_eq!(crate::status::normalized_image(image), want, "{image}");
    }
}

#[test]
fn an_evicted_pod_fails_with_the_eviction_message() {
    let p = pod(json!({"restartPolicy": "Always", "containers": [c("a")]}));
    let mut obs = observed(vec![("a", running(0))]);
    let message = "Usage of EmptyDir volume \"d\" exceeds the limit \"1Mi\". ";
    obs.eviction = Some(crate::eviction::Eviction {
        message: message.into(),
        disruption: false,
    });
    let s = status_at(&p, &obs, None, 5);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(s.reason.as_deref(), Some("Evicted"));
    assert_eq!(s.message.as_deref(), Some(message));
    // kubelet adds no DisruptionTarget for a local storage eviction.
    let conditions = s.conditions.as_deref().unwrap_or_default();
    assert!(!conditions.iter().any(|c| c.type_ == "DisruptionTarget"));
    // A pod that had succeeded stays Succeeded.
    let previous = PodStatus {
        phase: Some("Succeeded".into()),
        ..Default::default()
    };
    let s = status_at(&p, &obs, Some(&previous), 5);
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    assert_eq!(s.reason, None);
}

#[test]
fn a_pressure_eviction_adds_kubelets_disruption_target_first_and_keeps_it() {
    let p = pod(json!({"restartPolicy": "Always", "containers": [c("a")]}));
    let mut obs = observed(vec![("a", running(0))]);
    let message = "The node was low on resource: memory. ";
    obs.eviction = Some(crate::eviction::Eviction {
        message: message.into(),
        disruption: true,
    });
    let s = status_at(&p, &obs, None, 5);
    let conditions = s.conditions.clone().unwrap_or_default();
    let first = &conditions[0];
    assert_eq!(first.type_, "DisruptionTarget", "{conditions:?}");
    assert_eq!(first.status, "True");
    assert_eq!(first.reason.as_deref(), Some("TerminationByKubelet"));
    assert_eq!(first.message.as_deref(), Some(message));
    assert!(first.last_transition_time.is_some());
    // The next status keeps it once, with its time.
    let again = status_at(&p, &obs, Some(&s), 9);
    let kept: Vec<_> = again
        .conditions
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ == "DisruptionTarget")
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].last_transition_time, first.last_transition_time);
}
