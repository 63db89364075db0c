use super::*;
use crate::actions::{compute_pod_actions, Config};
use crate::testutil::*;
use serde_json::json;

/// The driver's bookkeeping through a crash loop: each restart moves the
/// back-off, keeps the exit and counts; compute_pod_actions holds the next one.
#[test]
fn crash_loop_bookkeeping() {
    let config = Config::default();
    let p = pod(json!({"containers": [c("a")]}));
    let mut obs = observed(vec![]);
    let mut now = 0;
    let mut starts = vec![];
    for _ in 0..4 {
        // Sleep until the actions allow the start.
        loop {
            let a = compute_pod_actions(&p, &obs, t(now), &config);
            if a.start == ["a"] {
                break;
            }
            assert_eq!(a.waiting[0].reason.reason, "CrashLoopBackOff");
            now = (a.next_sync.unwrap() - t(0)).num_seconds();
        }
        let o = obs.containers.entry("a".into()).or_default();
        o.starting(t(now), &config.back_off);
        o.started(t(now), Some("podrun://a".into()));
        starts.push(now);
        o.exited(termination(1, now, now)); // crashes at once
    }
    let o = &obs.containers["a"];
    assert_eq!(starts, vec![0, 0, 10, 30]);
    assert_eq!(o.restart_count, 3);
    assert_eq!(o.last_termination.as_ref().unwrap().finished_at, t(10));
}

#[test]
fn pull_failure_then_back_off_then_success() {
    let config = Config::default();
    let p = pod(json!({"containers": [c("a")]}));
    let mut obs = observed(vec![]);
    let o = obs.containers.entry("a".into()).or_default();
    o.pull_failed(t(0), "manifest unknown", &config.image_back_off);
    assert_eq!(o.waiting.as_ref().unwrap().reason, "ErrImagePull");
    let a = compute_pod_actions(&p, &obs, t(5), &config);
    assert_eq!(a.waiting[0].reason.reason, "ImagePullBackOff");
    assert_eq!(a.next_sync, Some(t(10)));
    let a = compute_pod_actions(&p, &obs, t(10), &config);
    assert_eq!(a.start, ["a"]);
    let o = obs.containers.get_mut("a").unwrap();
    o.pulled();
    o.starting(t(10), &config.back_off);
    o.started(t(11), None);
    assert_eq!(o.waiting, None);
    assert_eq!(o.restart_count, 0, "a first start is no restart");
    o.start_failed("CreateContainerConfigError", "configmap \"x\" not found");
    assert_eq!(
        o.waiting.as_ref().unwrap().reason,
        "CreateContainerConfigError"
    );
}

#[test]
fn helpers() {
    let p = pod(json!({"containers": [c("a")]}));
    assert_eq!(format_pod(&p), "web_default(u1)");
    assert_eq!(restart_policy(&p), "Always");
    assert!(restart_on_failure(&p));
    assert!(!is_deleted(&p));
    let never = pod(json!({"restartPolicy": "Never", "containers": [c("a")]}));
    assert!(!restart_on_failure(&never));
    let when = t(42);
    assert_eq!(chrono_time(&api_time(when)), when);
}
