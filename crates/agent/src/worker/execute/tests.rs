//! The execute step against a recording runtime and node.

use super::*;
use podrun_kubelet::observe::ContainerState as Observed;
use podrun_kubelet::ContainerObservation;
use std::cell::RefCell;
use std::path::PathBuf;

use crate::fake_runtime::FakeRuntime;

/// A node that makes containers (or fails to, as told) and records events.
#[derive(Default)]
struct FakeNode {
    events: RefCell<Vec<String>>,
    made: Vec<String>,
    unmade: HashMap<String, &'static str>,
    hook_fails: bool,
}

impl Node for FakeNode {
    fn event(&self, type_: &str, reason: &str, message: &str) {
        self.events
            .borrow_mut()
            .push(format!("{type_} {reason} {message}"));
    }
    fn make_container(
        &mut self,
        spec: &Container,
        _attempt: u32,
    ) -> Result<ContainerConfig, Unmade> {
        match self.unmade.get(&spec.name).copied() {
            Some("pull") => Err(Unmade::Pull(crate::create::PullFailure {
                reason: "ErrImagePull",
                message: "manifest unknown".into(),
            })),
            Some("config") => Err(Unmade::Config("configmap \"cfg\" not found".into())),
            Some(other) => Err(Unmade::Create(other.into())),
            None => {
                self.made.push(spec.name.clone());
                Ok(ContainerConfig {
                    metadata: podrun_runtime::ContainerMetadata {
                        name: spec.name.clone(),
                        attempt: 0,
                    },
                    ..Default::default()
                })
            }
        }
    }
    fn image_id(&self, image: &str) -> Option<String> {
        Some(format!("{image}@sha256:00"))
    }
    fn post_start(
        &self,
        _name: &str,
        _hook: &LifecycleHandler,
    ) -> Result<(), crate::probe::HandlerError> {
        if self.hook_fails {
            Err(crate::probe::HandlerError::Failed(
                "command [\"false\"] exited with 1".into(),
            ))
        } else {
            Ok(())
        }
    }
    fn random_fraction(&self) -> f64 {
        0.5
    }
}

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
}

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": spec,
    }))
    .unwrap()
}

fn reported(name: &str, running: bool) -> ContainerStatus {
    ContainerStatus {
        id: format!("p-{name}"),
        sandbox_id: "sb".into(),
        name: name.into(),
        state: if running {
            ContainerState::Running
        } else {
            ContainerState::Exited
        },
        created_at: t(1).to_rfc3339(),
        started_at: t(1).to_rfc3339(),
        finished_at: if running {
            String::new()
        } else {
            t(2).to_rfc3339()
        },
        exit_code: if running { 0 } else { 1 },
        reason: if running { "" } else { "Error" }.into(),
        message: String::new(),
        pid: running.then_some(7),
        restarts: 0,
        log_path: PathBuf::from("/nonexistent"),
        log_lines_dropped: 0,
        config: Default::default(),
        image_ref: String::new(),
        user: None,
    }
}

/// Run the execute step of `actions` for `pod` at t(10).
fn run(
    pod: &Pod,
    reported: &[ContainerStatus],
    actions: PodActions,
    rt: &FakeRuntime,
    node: &mut FakeNode,
    observed: &mut PodObservation,
) -> Executed {
    let config = Config::default();
    let round = Round {
        pod,
        sandbox: "sb",
        reported,
        actions: &actions,
        now: t(10),
        config: &config,
    };
    execute(&round, observed, &mut HashMap::new(), rt, node).unwrap()
}

fn start(names: &[&str]) -> PodActions {
    PodActions {
        start: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn a_start_makes_the_container_and_records_it_running() {
    let p = pod(serde_json::json!({"containers": [{"name": "app", "image": "busybox"}]}));
    let (rt, mut node, mut o) = (
        FakeRuntime::default(),
        FakeNode::default(),
        PodObservation::default(),
    );
    // An exited instance is removed before the new one is made.
    let done = run(
        &p,
        &[reported("app", false)],
        start(&["app"]),
        &rt,
        &mut node,
        &mut o,
    );
    assert_eq!(done, Executed::default());
    assert_eq!(*rt.calls.lock().unwrap(), ["remove app", "start app"]);
    let app = &o.containers["app"];
    assert_eq!(app.state, Observed::Running { started_at: t(100) });
    assert_eq!(app.container_id.as_deref(), Some("podrun://p-app"));
    assert_eq!(app.image_id.as_deref(), Some("busybox@sha256:00"));
    assert!(app.spec_hash.is_some());
    assert_eq!(
        *node.events.borrow(),
        [
            "Normal Created Created container app",
            "Normal Started Started container app"
        ]
    );
}

#[test]
fn a_container_that_cannot_be_made_is_not_started_and_waits_out_the_worker_back_off() {
    let p = pod(serde_json::json!({"containers": [{"name": "app", "image": "busybox"}]}));
    let (rt, mut o) = (FakeRuntime::default(), PodObservation::default());
    let mut node = FakeNode {
        unmade: HashMap::from([("app".to_string(), "config")]),
        ..Default::default()
    };
    let done = run(&p, &[], start(&["app"]), &rt, &mut node, &mut o);
    assert!(
        rt.calls.lock().unwrap().is_empty(),
        "{:?}",
        rt.calls.lock().unwrap()
    );
    assert_eq!(
        done.failures,
        ["pod/web: container app: configmap \"cfg\" not found"]
    );
    let app = &o.containers["app"];
    assert_eq!(
        app.waiting.as_ref().map(|w| w.reason.as_str()),
        Some("CreateContainerConfigError")
    );
    // 10 s and half of the jitter's 5 s (the node's random fraction is 0.5).
    assert_eq!(
        app.retry_create_at,
        Some(t(10) + chrono::Duration::milliseconds(12_500))
    );
    assert_eq!(
        *node.events.borrow(),
        ["Warning Failed Error: configmap \"cfg\" not found"]
    );
}

#[test]
fn a_failed_pull_backs_off_the_image_and_names_only_the_reason() {
    let p = pod(serde_json::json!({"containers": [{"name": "app", "image": "busybox"}]}));
    let (rt, mut o) = (FakeRuntime::default(), PodObservation::default());
    let mut node = FakeNode {
        unmade: HashMap::from([("app".to_string(), "pull")]),
        ..Default::default()
    };
    run(&p, &[], start(&["app"]), &rt, &mut node, &mut o);
    let app = &o.containers["app"];
    assert_eq!(app.waiting.as_ref().unwrap().reason, "ErrImagePull");
    assert_eq!(app.retry_create_at, None);
    assert!(app.image_back_off.delay().is_some());
    assert_eq!(
        *node.events.borrow(),
        ["Warning Failed Error: ErrImagePull"]
    );
}

#[test]
fn a_start_the_runtime_refuses_is_a_start_error() {
    let p = pod(serde_json::json!({"containers": [{"name": "app", "image": "busybox"}]}));
    let rt = FakeRuntime {
        fail_start: HashMap::from([("app".to_string(), "exec: \"nope\": not found".to_string())]),
        ..Default::default()
    };
    let (mut node, mut o) = (FakeNode::default(), PodObservation::default());
    let done = run(&p, &[], start(&["app"]), &rt, &mut node, &mut o);
    let app = &o.containers["app"];
    let Observed::Exited(end) = &app.state else {
        panic!("{:?}", app.state)
    };
    assert_eq!((end.exit_code, end.reason.as_str()), (128, "StartError"));
    assert_eq!(app.waiting.as_ref().unwrap().reason, "RunContainerError");
    assert_eq!(
        done.failures,
        ["pod/web: container app: start: exec: \"nope\": not found"]
    );
}

#[test]
fn a_failed_post_start_hook_stops_the_container() {
    let p = pod(
        serde_json::json!({"containers": [{"name": "app", "image": "busybox",
        "lifecycle": {"postStart": {"exec": {"command": ["false"]}}}}]}),
    );
    let (rt, mut o) = (FakeRuntime::default(), PodObservation::default());
    let mut node = FakeNode {
        hook_fails: true,
        ..Default::default()
    };
    run(&p, &[], start(&["app"]), &rt, &mut node, &mut o);
    assert_eq!(
        *rt.calls.lock().unwrap(),
        ["start app", "stop app grace=own"]
    );
    assert!(node.events.borrow().iter().any(|e| e
        == "Warning FailedPostStartHook PostStartHook failed: container app: command [\"false\"] exited with 1"));
}

#[test]
fn a_finished_pod_stops_main_containers_before_sidecars_then_its_sandbox() {
    let p = pod(serde_json::json!({
        "initContainers": [{"name": "log", "image": "busybox", "restartPolicy": "Always"}],
        "containers": [{"name": "app", "image": "busybox"}],
    }));
    let kill = PodActions {
        kill_pod: Some(podrun_kubelet::actions::KillPod {
            reason: podrun_kubelet::actions::KillPodReason::Completed,
            message: "pod completed".into(),
        }),
        ..Default::default()
    };
    let (rt, mut node, mut o) = (
        FakeRuntime::default(),
        FakeNode::default(),
        PodObservation::default(),
    );
    let both = [reported("log", true), reported("app", true)];
    let done = run(&p, &both, kill.clone(), &rt, &mut node, &mut o);
    assert!(!done.finished);
    assert_eq!(*rt.calls.lock().unwrap(), ["stop app grace=own"]);
    assert_eq!(
        *node.events.borrow(),
        ["Normal Killing Stopping container app: pod completed"]
    );
    let sidecar = [reported("log", true), reported("app", false)];
    run(&p, &sidecar, kill.clone(), &rt, &mut node, &mut o);
    assert_eq!(
        rt.calls.lock().unwrap().last().unwrap(),
        "stop log grace=own"
    );
    let none = [reported("log", false), reported("app", false)];
    let done = run(&p, &none, kill, &rt, &mut node, &mut o);
    assert!(done.finished);
    assert_eq!(rt.calls.lock().unwrap().last().unwrap(), "stop sandbox");
}

#[test]
fn a_liveness_kill_uses_the_probes_grace_period_and_marks_a_restart() {
    let p = pod(
        serde_json::json!({"containers": [{"name": "app", "image": "busybox",
        "livenessProbe": {"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 9223372036854775807i64}}]}),
    );
    let kill = PodActions {
        kill: vec![podrun_kubelet::actions::ContainerKill {
            name: "app".into(),
            reason: KillReason::LivenessProbe,
            message: "Container app failed liveness probe, will be restarted".into(),
            restart: true,
        }],
        ..Default::default()
    };
    let (rt, mut node) = (FakeRuntime::default(), FakeNode::default());
    let mut o = PodObservation::default();
    o.containers
        .insert("app".into(), ContainerObservation::default());
    run(&p, &[reported("app", true)], kill, &rt, &mut node, &mut o);
    let max = podrun_kubelet::grace::MAX_GRACE_SECONDS;
    assert_eq!(
        *rt.calls.lock().unwrap(),
        [format!("stop app grace={max}s")]
    );
    assert!(o.containers["app"].restart_after_kill);
}

/// One kill is one `Killing` event and one stop: the syncs that come while
/// the container runs out its grace period ask nothing again (they recorded
/// `Killing` on every sync: "x30 over 33s"); once it exited, a new kill is
/// a new one.
#[test]
fn a_container_running_out_its_grace_period_is_not_killed_again() {
    let p = pod(serde_json::json!({"containers": [{"name": "app", "image": "busybox"}]}));
    let kill = PodActions {
        kill: vec![podrun_kubelet::actions::ContainerKill {
            name: "app".into(),
            reason: KillReason::LivenessProbe,
            message: "Container app failed liveness probe, will be restarted".into(),
            restart: true,
        }],
        ..Default::default()
    };
    let (rt, mut node) = (FakeRuntime::default(), FakeNode::default());
    let mut o = PodObservation::default();
    o.containers
        .insert("app".into(), ContainerObservation::default());
    for _ in 0..3 {
        run(
            &p,
            &[reported("app", true)],
            kill.clone(),
            &rt,
            &mut node,
            &mut o,
        );
    }
    assert_eq!(*rt.calls.lock().unwrap(), ["stop app grace=own"]);
    assert_eq!(node.events.borrow().len(), 1, "{:?}", node.events.borrow());
    o.containers
        .get_mut("app")
        .unwrap()
        .exited(podrun_kubelet::Termination {
            exit_code: 137,
            signal: None,
            reason: "Error".into(),
            message: None,
            started_at: Some(t(1)),
            finished_at: t(12),
        });
    run(&p, &[reported("app", true)], kill, &rt, &mut node, &mut o);
    assert_eq!(
        rt.calls.lock().unwrap().len(),
        2,
        "a kill after the exit is a new one"
    );

    // The pod's kill too: each container of a group is stopped once.
    let finished = PodActions {
        kill_pod: Some(podrun_kubelet::actions::KillPod {
            reason: podrun_kubelet::actions::KillPodReason::Completed,
            message: "pod completed".into(),
        }),
        ..Default::default()
    };
    let (rt, mut node, mut o) = (
        FakeRuntime::default(),
        FakeNode::default(),
        PodObservation::default(),
    );
    for _ in 0..3 {
        run(
            &p,
            &[reported("app", true)],
            finished.clone(),
            &rt,
            &mut node,
            &mut o,
        );
    }
    assert_eq!(*rt.calls.lock().unwrap(), ["stop app grace=own"]);
    assert_eq!(node.events.borrow().len(), 1, "{:?}", node.events.borrow());
}

#[test]
fn an_evicted_pod_is_stopped_with_the_evictions_grace_period() {
    let p = pod(serde_json::json!({
        "terminationGracePeriodSeconds": 600,
        "containers": [{"name": "app", "image": "busybox"}],
    }));
    let message = "Usage of EmptyDir volume \"d\" exceeds the limit \"1Mi\". ";
    let kill = PodActions {
        kill_pod: Some(podrun_kubelet::actions::KillPod {
            reason: podrun_kubelet::actions::KillPodReason::Evicted,
            message: message.into(),
        }),
        ..Default::default()
    };
    let (rt, mut node, mut o) = (
        FakeRuntime::default(),
        FakeNode::default(),
        PodObservation::default(),
    );
    let done = run(
        &p,
        &[reported("app", true)],
        kill.clone(),
        &rt,
        &mut node,
        &mut o,
    );
    assert!(!done.finished);
    assert_eq!(*rt.calls.lock().unwrap(), ["stop app grace=1s"]);
    assert_eq!(
        *node.events.borrow(),
        [format!("Normal Killing Stopping container app: {message}")]
    );
    let done = run(&p, &[reported("app", false)], kill, &rt, &mut node, &mut o);
    assert!(done.finished);
    assert_eq!(rt.calls.lock().unwrap().last().unwrap(), "stop sandbox");
}
