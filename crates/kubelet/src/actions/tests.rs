use super::*;
use crate::observe::ProbeVerdicts;
use crate::testutil::*;
use serde_json::json;

/// The actions in one line: what each table row expects.
fn summary(a: &PodActions) -> String {
    let mut parts = vec![];
    if let Some(k) = &a.kill_pod {
        parts.push(format!("kill_pod={}", k.reason.as_str()));
    }
    if a.create_sandbox {
        parts.push("create".into());
    }
    if !a.start_init.is_empty() {
        parts.push(format!("init=[{}]", a.start_init.join(",")));
    }
    if !a.start.is_empty() {
        parts.push(format!("start=[{}]", a.start.join(",")));
    }
    for k in &a.kill {
        let restart = if k.restart { ":restart" } else { "" };
        parts.push(format!("kill={}:{}{restart}", k.name, k.reason.as_str()));
    }
    for w in &a.waiting {
        parts.push(format!("wait={}:{}", w.name, w.reason.reason));
    }
    if let Some(n) = a.next_sync {
        parts.push(format!("next=+{}", (n - t(0)).num_seconds()));
    }
    parts.join(" ")
}

fn two_mains(policy: &str) -> Pod {
    pod(json!({"restartPolicy": policy, "containers": [c("a"), c("b")]}))
}

fn with_inits(policy: &str, inits: Vec<serde_json::Value>) -> Pod {
    pod(json!({"restartPolicy": policy, "initContainers": inits, "containers": [c("a")]}))
}

fn with_probes(policy: &str) -> Pod {
    let mut a = c("a");
    a["livenessProbe"] = probe();
    a["startupProbe"] = probe();
    pod(json!({"restartPolicy": policy, "containers": [a]}))
}

fn verdicts(
    o: ContainerObservation,
    startup: Option<ProbeResult>,
    liveness: Option<ProbeResult>,
) -> ContainerObservation {
    ContainerObservation {
        probes: ProbeVerdicts {
            startup,
            liveness,
            readiness: None,
        },
        ..o
    }
}

fn sidecar_with_startup() -> serde_json::Value {
    let mut s = sidecar("s1");
    s["startupProbe"] = probe();
    s
}

use ProbeResult::{Failure, Success};

#[test]
fn table() {
    let no_sandbox = PodObservation::default();
    let dead_sandbox = |containers| PodObservation {
        sandbox: SandboxState::NotReady,
        ..observed(containers)
    };
    let cases: Vec<(&str, Pod, PodObservation, i64, &str)> = vec![
        // --- sandbox ---
        (
            "new pod: sandbox, then every container",
            two_mains("Always"),
            no_sandbox.clone(),
            0,
            "create start=[a,b]",
        ),
        (
            "new pod with init containers: the first one only",
            with_inits("Always", vec![c("i1"), c("i2")]),
            no_sandbox.clone(),
            0,
            "create init=[i1]",
        ),
        (
            "dead sandbox, Always: kill, recreate, start again",
            two_mains("Always"),
            dead_sandbox(vec![("a", exited(0, 0, 5)), ("b", running(0))]),
            9,
            "kill_pod=SandboxChanged create start=[a,b]",
        ),
        (
            "dead sandbox, Never: the pod ran once, only kill",
            two_mains("Never"),
            dead_sandbox(vec![("a", running(0))]),
            9,
            "kill_pod=Completed",
        ),
        (
            "dead sandbox, OnFailure, all succeeded: only kill",
            two_mains("OnFailure"),
            dead_sandbox(vec![("a", exited(0, 0, 5)), ("b", exited(0, 0, 5))]),
            9,
            "kill_pod=Completed",
        ),
        (
            "dead sandbox, OnFailure: restart the failed one only",
            two_mains("OnFailure"),
            dead_sandbox(vec![("a", exited(0, 0, 5)), ("b", exited(1, 0, 5))]),
            9,
            "kill_pod=SandboxChanged create start=[b]",
        ),
        (
            "dead sandbox with init containers: start over from the first",
            with_inits("Always", vec![c("i1"), c("i2")]),
            dead_sandbox(vec![
                ("i1", exited(0, 0, 1)),
                ("i2", exited(0, 1, 2)),
                ("a", exited(1, 2, 5)),
            ]),
            9,
            "kill_pod=SandboxChanged create init=[i1]",
        ),
        // --- init containers ---
        (
            "first init container still running: wait",
            with_inits("Always", vec![c("i1"), c("i2")]),
            observed(vec![("i1", running(0))]),
            5,
            "",
        ),
        (
            "init container succeeded: the next one",
            with_inits("Always", vec![c("i1"), c("i2")]),
            observed(vec![("i1", exited(0, 0, 1))]),
            5,
            "init=[i2]",
        ),
        (
            "all init containers succeeded: main containers",
            with_inits("Always", vec![c("i1"), c("i2")]),
            observed(vec![("i1", exited(0, 0, 1)), ("i2", exited(0, 1, 2))]),
            5,
            "start=[a]",
        ),
        (
            "failed init container, Always, first failure: restart at once",
            with_inits("Always", vec![c("i1"), c("i2")]),
            observed(vec![("i1", exited(1, 0, 1))]),
            1,
            "init=[i1]",
        ),
        (
            "failed init container, OnFailure: restart",
            with_inits("OnFailure", vec![c("i1")]),
            observed(vec![("i1", exited(1, 0, 1))]),
            1,
            "init=[i1]",
        ),
        (
            "failed init container, Never: the pod fails",
            with_inits("Never", vec![c("i1"), c("i2")]),
            observed(vec![("i1", exited(1, 0, 1))]),
            1,
            "kill_pod=InitContainerFailed",
        ),
        (
            "failed init container in back-off: wait until the back-off ends",
            with_inits("Always", vec![c("i1")]),
            observed(vec![("i1", crashed(1, 10, 10, &[(0, 0)]))]),
            12,
            "wait=i1:CrashLoopBackOff next=+20",
        ),
        (
            "a running main container means initialized, even without init records",
            with_inits("Always", vec![c("i1")]),
            observed(vec![("a", running(3))]),
            5,
            "",
        ),
        // --- native sidecars ---
        (
            "sidecar running without startup probe: the next init starts",
            with_inits("Always", vec![sidecar("s1"), c("i2")]),
            observed(vec![("s1", running(0))]),
            1,
            "init=[i2]",
        ),
        (
            "sidecar waiting for its startup probe: nothing yet",
            with_inits("Always", vec![sidecar_with_startup(), c("i2")]),
            observed(vec![("s1", running(0))]),
            1,
            "",
        ),
        (
            "sidecar startup probe passed: the next init starts",
            with_inits("Always", vec![sidecar_with_startup(), c("i2")]),
            observed(vec![("s1", verdicts(running(0), Some(Success), None))]),
            1,
            "init=[i2]",
        ),
        (
            "sidecar startup probe failed: kill it, it will restart",
            with_inits("Always", vec![sidecar_with_startup(), c("i2")]),
            observed(vec![("s1", verdicts(running(0), Some(Failure), None))]),
            1,
            "kill=s1:StartupProbe:restart",
        ),
        (
            "last init is a running sidecar: main containers start",
            with_inits("Always", vec![sidecar("s1")]),
            observed(vec![("s1", running(0))]),
            1,
            "start=[a]",
        ),
        (
            "sidecar exited beside a running main container: restart it",
            with_inits("Never", vec![sidecar("s1")]),
            observed(vec![("s1", exited(1, 0, 5)), ("a", running(1))]),
            6,
            "init=[s1]",
        ),
        (
            "sidecar exited, in back-off: wait",
            with_inits("Always", vec![sidecar("s1")]),
            observed(vec![("s1", crashed(1, 5, 5, &[(0, 0)])), ("a", running(1))]),
            6,
            "wait=s1:CrashLoopBackOff next=+15",
        ),
        (
            "sidecar exited 0 is restarted too",
            with_inits("OnFailure", vec![sidecar("s1"), c("i2")]),
            observed(vec![
                ("s1", exited(0, 0, 5)),
                ("i2", exited(0, 1, 2)),
                ("a", running(2)),
            ]),
            6,
            "init=[s1]",
        ),
        (
            "sidecar gone after initialization: start it again",
            with_inits("Always", vec![sidecar("s1"), c("i2")]),
            observed(vec![("a", running(2))]),
            6,
            "init=[s1]",
        ),
        (
            "sidecar liveness failure: kill it",
            with_inits(
                "Always",
                vec![{
                    let mut s = sidecar("s1");
                    s["livenessProbe"] = probe();
                    s
                }],
            ),
            observed(vec![
                ("s1", verdicts(running(0), None, Some(Failure))),
                ("a", running(1)),
            ]),
            6,
            "kill=s1:LivenessProbe:restart",
        ),
        (
            "main done under Never: the pod completes, sidecars are not kept alive",
            with_inits("Never", vec![sidecar("s1")]),
            observed(vec![("s1", running(0)), ("a", exited(0, 1, 5))]),
            6,
            "kill_pod=Completed",
        ),
        (
            "main done under Never and sidecar exited: not restarted",
            with_inits("Never", vec![sidecar("s1")]),
            observed(vec![("s1", exited(137, 0, 6)), ("a", exited(0, 1, 5))]),
            7,
            "kill_pod=Completed",
        ),
        // --- main containers and restart policy ---
        (
            "Always: exited 0 restarts",
            two_mains("Always"),
            observed(vec![("a", exited(0, 0, 5)), ("b", running(0))]),
            5,
            "start=[a]",
        ),
        (
            "Always: exited 1 restarts",
            two_mains("Always"),
            observed(vec![("a", exited(1, 0, 5)), ("b", running(0))]),
            5,
            "start=[a]",
        ),
        (
            "OnFailure: exited 0 stays",
            two_mains("OnFailure"),
            observed(vec![("a", exited(0, 0, 5)), ("b", running(0))]),
            5,
            "",
        ),
        (
            "OnFailure: exited 1 restarts",
            two_mains("OnFailure"),
            observed(vec![("a", exited(1, 0, 5)), ("b", running(0))]),
            5,
            "start=[a]",
        ),
        (
            "Never: exited 1 stays",
            two_mains("Never"),
            observed(vec![("a", exited(1, 0, 5)), ("b", running(0))]),
            5,
            "",
        ),
        (
            "OnFailure: all succeeded, the pod completes",
            two_mains("OnFailure"),
            observed(vec![("a", exited(0, 0, 5)), ("b", exited(0, 0, 6))]),
            7,
            "kill_pod=Completed",
        ),
        (
            "Never: all exited, the pod completes",
            two_mains("Never"),
            observed(vec![("a", exited(1, 0, 5)), ("b", exited(0, 0, 6))]),
            7,
            "kill_pod=Completed",
        ),
        (
            "a container never created starts",
            two_mains("Never"),
            observed(vec![("a", running(0))]),
            1,
            "start=[b]",
        ),
        (
            "crash loop: held until the back-off ends",
            two_mains("Always"),
            observed(vec![
                ("a", crashed(1, 10, 10, &[(0, 0)])),
                ("b", running(0)),
            ]),
            15,
            "wait=a:CrashLoopBackOff next=+20",
        ),
        (
            "crash loop: back-off over, restart",
            two_mains("Always"),
            observed(vec![
                ("a", crashed(1, 10, 10, &[(0, 0)])),
                ("b", running(0)),
            ]),
            20,
            "start=[a]",
        ),
        (
            "image pull back-off: held",
            two_mains("Always"),
            observed(vec![
                ("a", {
                    let mut o = ContainerObservation::default();
                    o.image_back_off.record_failure(t(3), &Default::default());
                    o
                }),
                ("b", running(0)),
            ]),
            5,
            "wait=a:ImagePullBackOff next=+13",
        ),
        (
            "image pull back-off over: try again",
            two_mains("Always"),
            observed(vec![
                ("a", {
                    let mut o = ContainerObservation::default();
                    o.image_back_off.record_failure(t(3), &Default::default());
                    o
                }),
                ("b", running(0)),
            ]),
            13,
            "start=[a]",
        ),
        // --- probes ---
        (
            "liveness failure, Always: kill and restart",
            with_probes("Always"),
            observed(vec![(
                "a",
                verdicts(running(0), Some(Success), Some(Failure)),
            )]),
            30,
            "kill=a:LivenessProbe:restart",
        ),
        (
            "startup failure, OnFailure: kill and restart",
            with_probes("OnFailure"),
            observed(vec![(
                "a",
                verdicts(running(0), Some(Failure), Some(Success)),
            )]),
            30,
            "kill=a:StartupProbe:restart",
        ),
        (
            "liveness failure, Never, only container: the pod is done",
            with_probes("Never"),
            observed(vec![(
                "a",
                verdicts(running(0), Some(Success), Some(Failure)),
            )]),
            30,
            "kill_pod=Completed",
        ),
        (
            "liveness verdict without a liveness probe in the spec: ignored",
            two_mains("Always"),
            observed(vec![
                ("a", verdicts(running(0), None, Some(Failure))),
                ("b", running(0)),
            ]),
            30,
            "",
        ),
        (
            "startup probe not yet passed: keep running",
            with_probes("Always"),
            observed(vec![(
                "a",
                verdicts(running(0), Some(ProbeResult::Unknown), Some(Success)),
            )]),
            30,
            "",
        ),
    ];
    for (name, pod, obs, now, want) in cases {
        let got = compute_pod_actions(&pod, &obs, t(now), &Config::default());
        assert_eq!(summary(&got), want, "{name}");
    }
}

#[test]
fn active_deadline() {
    let p = pod(json!({"activeDeadlineSeconds": 60, "containers": [c("a")]}));
    let obs = observed(vec![("a", running(0))]);
    let cases = [
        (10, "next=+60"),
        (59, "next=+60"),
        (60, "kill_pod=DeadlineExceeded"),
        (600, "kill_pod=DeadlineExceeded"),
    ];
    for (now, want) in cases {
        let got = compute_pod_actions(&p, &obs, t(now), &Config::default());
        assert_eq!(summary(&got), want, "at {now}");
    }
    let got = compute_pod_actions(&p, &obs, t(61), &Config::default());
    assert_eq!(got.kill_pod.unwrap().message, DEADLINE_MESSAGE);
    // Without a start time the deadline has not begun.
    let mut no_start = obs.clone();
    no_start.start_time = None;
    assert_eq!(
        summary(&compute_pod_actions(
            &p,
            &no_start,
            t(600),
            &Config::default()
        )),
        ""
    );
}

#[test]
fn next_sync_is_the_earliest_hold() {
    let p = pod(json!({"activeDeadlineSeconds": 100, "containers": [c("a"), c("b")]}));
    let obs = observed(vec![
        ("a", crashed(1, 10, 10, &[(0, 0)])),
        ("b", crashed(1, 12, 12, &[(0, 0)])),
    ]);
    let got = compute_pod_actions(&p, &obs, t(13), &Config::default());
    assert_eq!(
        summary(&got),
        "wait=a:CrashLoopBackOff wait=b:CrashLoopBackOff next=+20"
    );
}

#[test]
fn deleted_pod_is_killed() {
    let mut p = two_mains("Always");
    p.metadata.deletion_timestamp = Some(crate::observe::api_time(t(1)));
    let got = compute_pod_actions(
        &p,
        &observed(vec![("a", exited(1, 0, 1))]),
        t(2),
        &Config::default(),
    );
    assert_eq!(summary(&got), "kill_pod=Deleted");
    assert!(!should_restart(&p, None));
}

#[test]
fn crash_loop_message_in_kubelet_words() {
    let p = two_mains("Always");
    let obs = observed(vec![
        ("a", crashed(1, 40, 40, &[(0, 0), (10, 10), (30, 30)])),
        ("b", running(0)),
    ]);
    let got = compute_pod_actions(&p, &obs, t(41), &Config::default());
    let w = &got.waiting[0];
    assert_eq!(w.reason.reason, "CrashLoopBackOff");
    assert_eq!(
        w.reason.message,
        "back-off 40s restarting failed container=a pod=web_default(u1)"
    );
    assert_eq!(w.until, t(80));
}

#[test]
fn image_back_off_message() {
    let p = two_mains("Always");
    let mut o = ContainerObservation::default();
    o.image_back_off.record_failure(t(0), &Default::default());
    let got = compute_pod_actions(
        &p,
        &observed(vec![("a", o), ("b", running(0))]),
        t(1),
        &Config::default(),
    );
    assert_eq!(
        got.waiting[0].reason.message,
        "Back-off pulling image \"a:1\""
    );
}

#[test]
fn probe_kill_messages() {
    let got = compute_pod_actions(
        &with_probes("Always"),
        &observed(vec![(
            "a",
            verdicts(running(0), Some(Success), Some(Failure)),
        )]),
        t(30),
        &Config::default(),
    );
    assert_eq!(
        got.kill[0].message,
        "Container a failed liveness probe, will be restarted"
    );
}

#[test]
fn termination_order_main_first_then_sidecars_reversed() {
    let p = pod(json!({
        "initContainers": [sidecar("s1"), c("i1"), sidecar("s2")],
        "containers": [c("a"), c("b")],
    }));
    assert_eq!(
        termination_order(&p),
        vec![
            vec!["i1".to_string(), "a".into(), "b".into()],
            vec!["s2".into()],
            vec!["s1".into()]
        ]
    );
    assert_eq!(
        termination_order(&two_mains("Always")),
        vec![vec!["a".to_string(), "b".into()]]
    );
}

/// `o` as made from `spec` (its hash recorded at its start).
fn made_from(spec: &Container, o: ContainerObservation) -> ContainerObservation {
    ContainerObservation {
        spec_hash: Some(crate::observe::container_hash(spec)),
        ..o
    }
}

fn container(p: &Pod, name: &str) -> Container {
    let s = p.spec.as_ref().unwrap();
    s.init_containers
        .iter()
        .flatten()
        .chain(&s.containers)
        .find(|c| c.name == name)
        .unwrap()
        .clone()
}

#[test]
fn a_changed_spec_kills_the_running_container_whatever_the_policy() {
    for policy in ["Always", "OnFailure", "Never"] {
        let old = two_mains(policy);
        let mut new = old.clone();
        new.spec.as_mut().unwrap().containers[0].image = Some("a:2".into());
        let obs = observed(vec![
            ("a", made_from(&container(&old, "a"), running(0))),
            ("b", made_from(&container(&old, "b"), running(0))),
        ]);
        let config = Config::default();
        // Unchanged: nothing to do.
        assert_eq!(summary(&compute_pod_actions(&old, &obs, t(5), &config)), "");
        let got = compute_pod_actions(&new, &obs, t(5), &config);
        assert_eq!(summary(&got), "kill=a:SpecChanged:restart", "{policy}");
        assert_eq!(
            got.kill[0].message,
            "Container a definition changed, will be restarted"
        );
        // Once killed (the driver marks it), it starts again at once, even
        // under Never, and with no crash back-off (kubelet keys it by hash).
        let mut a = made_from(
            &container(&old, "a"),
            crashed(143, 5, 6, &[(0, 0), (2, 2), (4, 4)]),
        );
        a.restart_after_kill = true;
        let obs = observed(vec![
            ("a", a),
            ("b", made_from(&container(&old, "b"), running(0))),
        ]);
        assert_eq!(
            summary(&compute_pod_actions(&new, &obs, t(7), &config)),
            "start=[a]",
            "{policy}"
        );
    }
}

#[test]
fn a_changed_spec_leaves_finished_containers_and_unknown_hashes_alone() {
    let old = two_mains("Never");
    let mut new = old.clone();
    new.spec.as_mut().unwrap().containers[0].image = Some("a:2".into());
    // A container that completed under Never is not started for a new image.
    let obs = observed(vec![
        ("a", made_from(&container(&old, "a"), exited(0, 0, 5))),
        ("b", made_from(&container(&old, "b"), running(0))),
    ]);
    assert_eq!(
        summary(&compute_pod_actions(&new, &obs, t(9), &Config::default())),
        ""
    );
    // An instance with no recorded hash (made before podrun recorded them) is kept.
    let obs = observed(vec![("a", running(0)), ("b", running(0))]);
    assert_eq!(
        summary(&compute_pod_actions(&new, &obs, t(9), &Config::default())),
        ""
    );
}

#[test]
fn a_changed_sidecar_is_made_again_without_holding_the_main_containers() {
    let old = with_inits("Always", vec![sidecar("s1")]);
    let mut new = old.clone();
    new.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0].image = Some("s1:2".into());
    let obs = observed(vec![
        ("s1", made_from(&container(&old, "s1"), running(0))),
        ("a", made_from(&container(&old, "a"), running(1))),
    ]);
    let got = compute_pod_actions(&new, &obs, t(5), &Config::default());
    assert_eq!(summary(&got), "kill=s1:SpecChanged:restart");
    assert_eq!(
        got.kill[0].message,
        "Init container s1 definition changed, will be restarted"
    );
}

#[test]
fn container_hashes_are_stable_and_see_every_field() {
    // FNV-1a 64 of {"image":"a:1","name":"a"}, computed independently.
    const PINNED: u64 = 9_337_859_116_374_132_784;
    let p = two_mains("Always");
    let a = container(&p, "a");
    let h = crate::observe::container_hash(&a);
    // Stable across builds and runs: no per-process seed (a stored hash must
    // still match after the agent restarts or is upgraded).
    assert_eq!(h, PINNED, "{}", serde_json::to_string(&a).unwrap());
    let mut b = a.clone();
    b.image = Some("a:2".into());
    assert_ne!(h, crate::observe::container_hash(&b));
    let mut b = a.clone();
    b.args = Some(vec!["x".into()]);
    assert_ne!(h, crate::observe::container_hash(&b));
}

#[test]
fn a_container_that_could_not_be_made_waits_out_the_worker_back_off() {
    let p = two_mains("Always");
    let mut a = ContainerObservation::default();
    a.create_failed(
        "CreateContainerConfigError",
        "configmap \"cfg\" not found",
        t(12),
    );
    let obs = observed(vec![("a", a), ("b", running(0))]);
    // Held, still saying why, until the retry time; then made again.
    let held = compute_pod_actions(&p, &obs, t(2), &Config::default());
    assert_eq!(summary(&held), "wait=a:CreateContainerConfigError next=+12");
    assert_eq!(
        held.waiting[0].reason.message,
        "configmap \"cfg\" not found"
    );
    let due = compute_pod_actions(&p, &obs, t(12), &Config::default());
    assert_eq!(summary(&due), "start=[a]");
    // A good start forgets it.
    let mut a = obs.containers["a"].clone();
    a.started(t(13), None);
    assert_eq!(a.retry_create_at, None);
    assert_eq!(a.waiting, None);
}

#[test]
fn a_regular_init_container_that_could_not_be_made_holds_the_rest() {
    let p = with_inits("Always", vec![c("i1"), c("i2")]);
    let mut i1 = ContainerObservation::default();
    i1.create_failed("CreateContainerError", "no rootfs", t(15));
    let got = compute_pod_actions(&p, &observed(vec![("i1", i1)]), t(5), &Config::default());
    assert_eq!(summary(&got), "wait=i1:CreateContainerError next=+15");
}

#[test]
fn an_evicted_pod_is_killed_and_never_restarted() {
    let evicted = |mut o: PodObservation| {
        o.eviction = Some(crate::eviction::Eviction {
            message: "Usage of EmptyDir volume \"d\" exceeds the limit \"1Mi\". ".into(),
            disruption: false,
        });
        o
    };
    for policy in ["Always", "OnFailure", "Never"] {
        let p = two_mains(policy);
        let cases = [
            observed(vec![("a", running(0)), ("b", running(0))]),
            // Its containers already killed: still nothing starts again.
            observed(vec![
                ("a", crashed(137, 0, 5, &[])),
                ("b", crashed(137, 0, 5, &[])),
            ]),
        ];
        for obs in cases {
            let without = compute_pod_actions(&p, &obs, t(10), &Config::default());
            assert_ne!(summary(&without), "kill_pod=Evicted", "{policy}");
            let got = compute_pod_actions(&p, &evicted(obs), t(10), &Config::default());
            assert_eq!(summary(&got), "kill_pod=Evicted", "{policy}");
            let kill = got.kill_pod.unwrap();
            assert!(kill.message.starts_with("Usage of EmptyDir volume"));
            assert_eq!(
                kill.reason.grace_override(),
                Some(std::time::Duration::from_secs(1))
            );
        }
    }
    assert_eq!(KillPodReason::Completed.grace_override(), None);
}
