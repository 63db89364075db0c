//! kubelet's semantics of a pod's life under the node agent (`podrun serve`),
//! end to end: crash-loop back-off, restart policies, init containers and
//! native sidecars, liveness and readiness probes (gRPC among them), preStop
//! hooks, grace periods, OOM kills, an exit while the agent is down, and
//! activeDeadlineSeconds. Every test starts its own agent (so the test-only
//! knobs apply: a short sync interval and a scaled-down back-off) in roots of
//! its own, has a drop guard that kills and removes whatever it left, and
//! checks that nothing of its pods is left after deleting them.
//!
//! Run with `--test-threads=1` (the tests count processes of their own roots
//! only, but they are heavy and some measure time).

#[path = "support/agent_env.rs"]
mod agent_env;
mod support;

use agent_env::{registry, Env, Suite};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The test-only knobs: a short sync interval and a scaled-down back-off;
/// every test keeps its agent up.
const SUITE: Suite = Suite {
    name: "lifecycle",
    knobs: &[
        ("PODRUN_SYNC_INTERVAL_MS", "150"),
        ("PODRUN_BACKOFF_INITIAL_MS", "500"),
        ("PODRUN_BACKOFF_MAX_MS", "4000"),
    ],
    agent_stays_up: true,
};

fn image() -> String {
    format!("{}/busybox:latest", registry())
}

/// A shell loop that runs until SIGTERM, which it obeys at once.
const RUN_UNTIL_TERM: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

// ---------------------------------------------------------------------------
// `describe pod` text.

/// The block of container `name` in a `describe pod` text: its `  name:`
/// line and the lines indented further below it.
fn section(describe: &str, name: &str) -> String {
    let head = format!("  {name}:");
    let mut lines = describe.lines().skip_while(|l| *l != head);
    let Some(first) = lines.next() else {
        return String::new();
    };
    let mut out = vec![first];
    out.extend(lines.take_while(|l| l.starts_with("    ")));
    out.join("\n")
}

/// The block of `label` (`State`, `Last State`) in a container's section:
/// its line and the lines indented by six below it.
fn sub(section: &str, label: &str) -> String {
    let head = format!("    {label}:");
    let mut lines = section.lines().skip_while(|l| !l.starts_with(&head));
    let Some(first) = lines.next() else {
        return String::new();
    };
    let mut out = vec![first];
    out.extend(lines.take_while(|l| l.starts_with("      ")));
    out.join("\n")
}

/// The value of the first `key:` field in `block` (any indentation).
fn value(block: &str, key: &str) -> Option<String> {
    let key = format!("{key}:");
    block
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(&key))
        .map(|l| l[key.len()..].trim().to_string())
}

/// The pod-level `key:` field of a `describe pod` text (no indentation).
fn pod_field(describe: &str, key: &str) -> Option<String> {
    let key = format!("{key}:");
    describe
        .lines()
        .find(|l| l.starts_with(&key))
        .map(|l| l[key.len()..].trim().to_string())
}

/// The status of condition `type_` in a `describe pod` text.
fn condition(describe: &str, type_: &str) -> Option<String> {
    describe
        .lines()
        .skip_while(|l| *l != "Conditions:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&type_))
        .and_then(|w| w.get(1).map(|s| s.to_string()))
}

/// The events part of a `describe pod` text.
fn events(describe: &str) -> String {
    describe
        .lines()
        .skip_while(|l| *l != "Events:")
        .collect::<Vec<_>>()
        .join("\n")
}

fn restart_count(describe: &str, container: &str) -> i64 {
    value(&section(describe, container), "Restart Count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

// ---------------------------------------------------------------------------
// What only these tests ask of the environment (the rest is in
// support/agent_env.rs).

impl Env {
    /// A directory of the test's own, for hostPath volumes.
    fn host_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// `podrun apply -f <a file of `yaml`>`, which must succeed.
    fn apply(&self, yaml: &str) {
        let file = self.write_manifest(yaml);
        self.ok(&["apply", "-f", file.to_str().unwrap()]);
    }

    /// The row of pod `name` (namespace default), if listed.
    fn row(&self, name: &str) -> Option<Vec<String>> {
        self.rows()
            .into_iter()
            .find(|r| r[0] == "default" && r[1] == name)
    }

    /// Poll the row of pod `name` until `done` holds (at most `secs`); the row.
    fn wait_row(
        &self,
        name: &str,
        what: &str,
        secs: u64,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let row = self.row(name);
            if let Some(r) = row.as_ref().filter(|r| done(r)) {
                return r.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {secs} s for {name}: {what}; last row {row:?}\n{}",
                    self.diag()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `podrun describe pod NAME`.
    fn describe(&self, name: &str) -> String {
        self.ok(&["describe", "pod", name])
    }

    /// Poll `describe pod NAME` until `done` holds (at most `secs`); the text.
    fn wait_describe(
        &self,
        name: &str,
        what: &str,
        secs: u64,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let d = self.describe(name);
            if done(&d) {
                return d;
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {secs} s for {name}: {what}; last describe:\n{d}\n{}",
                    self.diag()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Delete pods, which must succeed, and wait until they are no longer listed.
    fn delete(&self, args: &[&str]) {
        let mut all = vec!["delete", "pod"];
        all.extend(args);
        self.ok(&all);
        let names: Vec<&str> = args
            .iter()
            .copied()
            .filter(|a| !a.starts_with('-'))
            .collect();
        let rows = self.rows();
        assert!(
            !rows.iter().any(|r| names.contains(&r[1].as_str())),
            "deleted pods still listed: {rows:?}\n{}",
            self.diag()
        );
    }

    /// Wait (at most 5 s) until nothing of pod `name`'s sandbox runs: no
    /// process in its cgroups, no monitor, no pause process (a pod that ended
    /// keeps its records until it is deleted, not its processes).
    fn assert_stopped(&self, name: &str) {
        let id = self.pod_id("default", name);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let procs = self.procs_in(&BTreeSet::from([id.clone()]));
            let monitors: Vec<_> = self.monitors().into_iter().filter(|m| m.1 == id).collect();
            let pauses: Vec<_> = self.pauses().into_iter().filter(|p| p.1 == name).collect();
            if procs.is_empty() && monitors.is_empty() && pauses.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} ended but runs on: processes {procs:?}, monitors {monitors:?}, pauses {pauses:?}\n{}",
                self.diag()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

// ---------------------------------------------------------------------------
// Manifests.

/// `s` as a YAML (JSON) string.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A container named `name` running `sh -c script`, with `extra` YAML lines
/// (indented as the container's fields, four spaces).
fn container(name: &str, script: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    image: {}\n    command: [\"sh\", \"-c\", {}]\n{extra}",
        image(),
        q(script)
    )
}

/// A pod of `containers` (from [`container`]) with `spec` lines (two spaces).
fn pod(name: &str, spec: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}  containers:\n{containers}"
    )
}

/// The RESTARTS column of a row as a number.
fn restarts(row: &[String]) -> i64 {
    row[4].parse().unwrap_or(-1)
}

/// The times of the lines of `logs --timestamps` that end with `word`.
fn stamped(log: &str, word: &str) -> Vec<chrono::DateTime<chrono::FixedOffset>> {
    log.lines()
        .filter(|l| l.ends_with(word))
        .filter_map(|l| chrono::DateTime::parse_from_rfc3339(l.split_whitespace().next()?).ok())
        .collect()
}

/// Each instance of a container logs to a file of its own, and `logs` shows
/// the current one, `logs -p` the one before (kubelet's): add the times of
/// the lines ending with `word` in both to `seen`; the current one's.
fn seen_in_logs(
    env: &Env,
    name: &str,
    word: &str,
    seen: &mut BTreeSet<chrono::DateTime<chrono::FixedOffset>>,
) -> Vec<chrono::DateTime<chrono::FixedOffset>> {
    let previous = env.podrun(&["logs", name, "--timestamps", "-p"]);
    if previous.status.success() {
        seen.extend(stamped(&String::from_utf8_lossy(&previous.stdout), word));
    }
    let current = stamped(&env.ok(&["logs", name, "--timestamps"]), word);
    seen.extend(current.iter().copied());
    current
}

fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

// ---------------------------------------------------------------------------
// The tests.

/// A container that exits 1 at once under restartPolicy Always is restarted
/// with kubelet's back-off: at once, then after 0.5 s, 1 s, 2 s, 2 s (the
/// cap of this agent); the pod shows CrashLoopBackOff, its last state the
/// failed exit, and BackOff events.
#[test]
fn crash_loop_backs_off_exponentially() {
    let env = Env::new(&SUITE, "crash");
    let name = env.name("lc1-crash");
    let _agent = env.serve(None, &[], &[("PODRUN_BACKOFF_MAX_MS", "2000")]);
    env.apply(&pod(
        &name,
        "  restartPolicy: Always\n  terminationGracePeriodSeconds: 1\n",
        &container("app", "echo start; exit 1", ""),
    ));
    let mut statuses = BTreeSet::new();
    let mut max_restarts = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Every instance's start, from its own log while it is the current or
    // the previous one (looked at more often than instances start).
    let mut seen = BTreeSet::new();
    let starts: Vec<_> = loop {
        if let Some(row) = env.row(&name) {
            statuses.insert(row[3].clone());
            max_restarts = max_restarts.max(restarts(&row));
        }
        seen_in_logs(&env, &name, " start", &mut seen);
        if seen.len() >= 6 && statuses.contains("CrashLoopBackOff") {
            break seen.iter().copied().collect();
        }
        assert!(
            Instant::now() < deadline,
            "30 s: {} starts {seen:?}, statuses {statuses:?}\n{}",
            seen.len(),
            env.diag()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let gaps: Vec<f64> = starts.windows(2).map(|w| secs(w[1] - w[0])).collect();
    // The back-off after each exit: none before the first restart, then
    // 0.5 s doubling, at most 2 s. A gap is that plus the run (an echo),
    // the sync interval and the start.
    let delays = [0.0, 0.5, 1.0, 2.0, 2.0];
    eprintln!("gaps between starts: {gaps:?}; STATUS seen: {statuses:?}");
    for (i, (gap, delay)) in gaps.iter().zip(delays).enumerate() {
        assert!(
            *gap >= delay - 0.1 && *gap < delay + 1.5,
            "start {} came {gap:.2} s after the one before, the back-off is {delay} s: gaps {gaps:?}\n{}",
            i + 1,
            env.diag()
        );
    }
    assert!(
        gaps[3] > gaps[1] && gaps[2] > gaps[1],
        "the gaps do not grow: {gaps:?}"
    );
    assert!(
        statuses.contains("CrashLoopBackOff"),
        "STATUS never showed CrashLoopBackOff: {statuses:?}"
    );
    assert!(max_restarts >= 4, "RESTARTS reached {max_restarts} only");
    // While it is held back nothing starts: RESTARTS is the starts but one.
    let deadline = Instant::now() + Duration::from_secs(10);
    let d = loop {
        let before = seen_in_logs(&env, &name, " start", &mut seen);
        let d = env.describe(&name);
        let after = seen_in_logs(&env, &name, " start", &mut seen);
        let waiting = value(&sub(&section(&d, "app"), "State"), "Reason");
        if before == after && waiting.as_deref() == Some("CrashLoopBackOff") {
            assert_eq!(
                restart_count(&d, "app"),
                seen.len() as i64 - 1,
                "{} starts logged\n{d}",
                seen.len()
            );
            break d;
        }
        assert!(Instant::now() < deadline, "never seen held back: {d}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let app = section(&d, "app");
    let last = sub(&app, "Last State");
    assert_eq!(
        value(&last, "Last State").as_deref(),
        Some("Terminated"),
        "{d}"
    );
    assert_eq!(value(&last, "Reason").as_deref(), Some("Error"), "{d}");
    assert_eq!(value(&last, "Exit Code").as_deref(), Some("1"), "{d}");
    assert!(restart_count(&d, "app") >= 5, "{d}");
    // The pod's UID is a UUID, as the API server assigns it, and kubelet's
    // messages name the pod as format.Pod does: NAME_NAMESPACE(UID).
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["get", "pod", &name, "-o", "json"])).unwrap();
    let uid = json["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let hex: Vec<usize> = uid.split('-').map(str::len).collect();
    assert!(
        hex == [8, 4, 4, 4, 12]
            && uid.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
            && uid.as_bytes()[14] == b'4',
        "not a version 4 UUID: {uid:?}"
    );
    let ev = events(&d);
    assert!(
        ev.contains("BackOff")
            && ev.contains(&format!(
                "Back-off restarting failed container app in pod {name}_default({uid})"
            )),
        "no BackOff event:\n{d}"
    );
    let message = json["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.is_empty()
            || message.ends_with(&format!(
                "restarting failed container=app pod={name}_default({uid})"
            )),
        "{message}"
    );
    assert_eq!(pod_field(&d, "Status").as_deref(), Some("Running"), "{d}");
    env.delete(&[&name]);
    env.assert_nothing_left();
}

/// OnFailure: an exit 0 ends the pod (Completed, Succeeded), an exit 1 is
/// restarted; Never: an exit 1 ends it (Error, Failed), not restarted.
#[test]
fn restart_policies_on_failure_and_never() {
    let env = Env::new(&SUITE, "policy");
    let ok = env.name("lc2-onfail-ok");
    let bad = env.name("lc2-onfail-bad");
    let never = env.name("lc2-never");
    let _agent = env.serve(None, &[], &[]);
    env.apply(&format!(
        "{}---\n{}---\n{}",
        pod(
            &ok,
            "  restartPolicy: OnFailure\n",
            &container("app", "echo done; exit 0", "")
        ),
        pod(
            &bad,
            "  restartPolicy: OnFailure\n",
            &container("app", "echo failing; exit 1", "")
        ),
        pod(
            &never,
            "  restartPolicy: Never\n",
            &container(
                "app",
                "echo failing; echo on stderr >&2; exit 1",
                "    terminationMessagePolicy: FallbackToLogsOnError\n"
            )
        ),
    ));
    env.wait_row(&ok, "Completed", 15, |r| r[3] == "Completed");
    env.wait_row(&never, "Error", 15, |r| r[3] == "Error");
    env.wait_row(&bad, "restarted", 15, |r| restarts(r) >= 1);
    // Given time to (wrongly) restart them.
    std::thread::sleep(Duration::from_millis(1500));
    let row = env.row(&ok).unwrap();
    assert_eq!(
        (row[2].as_str(), row[3].as_str(), restarts(&row)),
        ("0/1", "Completed", 0),
        "{row:?}"
    );
    let row = env.row(&never).unwrap();
    assert_eq!(
        (row[2].as_str(), row[3].as_str(), restarts(&row)),
        ("0/1", "Error", 0),
        "{row:?}"
    );

    let d = env.describe(&ok);
    assert_eq!(pod_field(&d, "Status").as_deref(), Some("Succeeded"), "{d}");
    let state = sub(&section(&d, "app"), "State");
    assert_eq!(value(&state, "State").as_deref(), Some("Terminated"), "{d}");
    assert_eq!(value(&state, "Reason").as_deref(), Some("Completed"), "{d}");
    assert_eq!(value(&state, "Exit Code").as_deref(), Some("0"), "{d}");
    assert_eq!(restart_count(&d, "app"), 0, "{d}");

    let d = env.describe(&never);
    assert_eq!(pod_field(&d, "Status").as_deref(), Some("Failed"), "{d}");
    let state = sub(&section(&d, "app"), "State");
    assert_eq!(value(&state, "Reason").as_deref(), Some("Error"), "{d}");
    // FallbackToLogsOnError with no message file: the log's last lines, both
    // streams (describe prints the lines as they are, as kubectl does, so the
    // fields after them are read from the status).
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["get", "pod", &never, "-o", "json"])).unwrap();
    let terminated = &json["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["message"], "failing\non stderr\n", "{json}");
    assert_eq!(terminated["exitCode"], 1, "{json}");
    assert_eq!(
        json["status"]["containerStatuses"][0]["restartCount"], 0,
        "{json}"
    );
    assert_eq!(env.ok(&["logs", &never]), "failing\non stderr\n");

    let d = env.describe(&bad);
    assert_ne!(pod_field(&d, "Status").as_deref(), Some("Failed"), "{d}");
    assert!(restart_count(&d, "app") >= 1, "{d}");
    let last = sub(&section(&d, "app"), "Last State");
    assert_eq!(value(&last, "Exit Code").as_deref(), Some("1"), "{d}");

    env.assert_stopped(&ok);
    env.assert_stopped(&never);
    env.delete(&[&ok, &bad, &never]);
    env.assert_nothing_left();
}

/// Init containers run one after the other before the main container
/// (STATUS Init:0/2, then Running); a failed one under Never fails the pod
/// (Init:Error) and the main container never starts; under Always it is
/// restarted.
#[test]
fn init_containers_run_in_order_and_fail_by_policy() {
    let env = Env::new(&SUITE, "init");
    let ordered = env.name("lc3-ordered");
    let never = env.name("lc3-fail-never");
    let always = env.name("lc3-fail-always");
    let _agent = env.serve(None, &[], &[]);
    let work = "    volumeMounts:\n    - {name: work, mountPath: /work}\n";
    let inits = format!(
        "  initContainers:\n{}{}",
        container("init1", "sleep 1; echo one >> /work/out", work),
        container("init2", "echo two >> /work/out", work)
    );
    let main = container("main", &format!("cat /work/out; {RUN_UNTIL_TERM}"), work);
    let failing = |policy: &str| {
        format!(
            "  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 2\n  initContainers:\n{}",
            container("init1", "echo init-failing; exit 1", "")
        )
    };
    env.apply(&format!(
        "{}---\n{}---\n{}",
        pod(
            &ordered,
            &format!("  terminationGracePeriodSeconds: 2\n  volumes:\n  - {{name: work, emptyDir: {{}}}}\n{inits}"),
            &main
        ),
        pod(&never, &failing("Never"), &container("main", RUN_UNTIL_TERM, "")),
        pod(&always, &failing("Always"), &container("main", RUN_UNTIL_TERM, "")),
    ));
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = env.row(&ordered);
        if let Some(r) = &row {
            if seen.last() != Some(&r[3]) {
                seen.push(r[3].clone());
            }
            if r[2] == "1/1" && r[3] == "Running" {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not Running after 20 s; STATUS went {seen:?}\n{}",
            env.diag()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        seen.iter().any(|s| s == "Init:0/2"),
        "STATUS went {seen:?}, never Init:0/2"
    );
    let pos = |s: &str| seen.iter().position(|x| x == s);
    assert!(pos("Init:0/2") < pos("Running"), "STATUS went {seen:?}");
    let log = env.ok(&["logs", &ordered, "-c", "main"]);
    assert_eq!(log, "one\ntwo\n", "the main container read {log:?}");
    let d = env.describe(&ordered);
    for init in ["init1", "init2"] {
        let state = sub(&section(&d, init), "State");
        assert_eq!(value(&state, "Reason").as_deref(), Some("Completed"), "{d}");
        assert_eq!(restart_count(&d, init), 0, "{d}");
    }
    assert_eq!(condition(&d, "Initialized").as_deref(), Some("True"), "{d}");

    env.wait_row(&never, "Init:Error", 15, |r| r[3] == "Init:Error");
    let d = env.wait_describe(&always, "the init container restarted", 15, |d| {
        restart_count(d, "init1") >= 1
    });
    assert!(
        !events(&d).contains("Started container main"),
        "the main container of {always} started although its init container fails:\n{d}"
    );
    let row = env.row(&always).unwrap();
    assert!(row[3].starts_with("Init:"), "{row:?}");
    // Time to (wrongly) go on.
    std::thread::sleep(Duration::from_millis(1000));
    let d = env.describe(&never);
    assert_eq!(pod_field(&d, "Status").as_deref(), Some("Failed"), "{d}");
    assert_eq!(restart_count(&d, "init1"), 0, "{d}");
    let main_state = value(&sub(&section(&d, "main"), "State"), "State");
    assert_eq!(main_state.as_deref(), Some("Waiting"), "{d}");
    assert!(
        !events(&d).contains("Started container main"),
        "the main container of {never} started:\n{d}"
    );
    let row = env.row(&never).unwrap();
    assert_eq!(
        (row[2].as_str(), row[3].as_str()),
        ("0/1", "Init:Error"),
        "{row:?}"
    );
    let id = env.pod_id("default", &never);
    assert!(
        !env.run
            .join("sandboxes")
            .join(&id)
            .join("starts/main.json")
            .exists(),
        "{never}'s main container has a start record\n{}",
        env.diag()
    );

    env.assert_stopped(&never);
    env.delete(&[&ordered, &never, &always]);
    env.assert_nothing_left();
}

/// A native sidecar (an init container with restartPolicy Always) runs
/// beside the main container, which sees it up; when the main container is
/// done the pod completes and the sidecar is stopped after it.
#[test]
fn native_sidecar_outlives_the_main_container() {
    let env = Env::new(&SUITE, "sidecar");
    let name = env.name("lc4-sidecar");
    let host = env.host_dir("host");
    let _agent = env.serve(None, &[], &[]);
    let mounts = "    volumeMounts:\n    - {name: shared, mountPath: /shared}\n    - {name: host, mountPath: /host}\n";
    let sidecar = container(
        "side",
        "trap 'echo side-term >> /host/order; exit 0' TERM; echo side-up >> /host/order; touch /shared/up; while true; do sleep 0.1; done",
        &format!("    restartPolicy: Always\n{mounts}"),
    );
    let main = container(
        "main",
        "for i in $(seq 50); do test -e /shared/up && break; sleep 0.1; done; test -e /shared/up || exit 7; sleep 2; echo main-done >> /host/order; exit 0",
        mounts,
    );
    env.apply(&pod(
        &name,
        &format!(
            "  restartPolicy: Never\n  terminationGracePeriodSeconds: 5\n  volumes:\n  - {{name: shared, emptyDir: {{}}}}\n  - name: host\n    hostPath: {{path: {}, type: Directory}}\n  initContainers:\n{sidecar}",
            host.display()
        ),
        &main,
    ));
    env.wait_row(&name, "2/2 Running (sidecar and main)", 15, |r| {
        r[2] == "2/2" && r[3] == "Running"
    });
    // STATUS shows Completed (1/2) as soon as the main container is done,
    // while the sidecar is being stopped: wait for the pod's phase.
    env.wait_row(&name, "Completed", 15, |r| r[3] == "Completed");
    env.wait_describe(&name, "phase Succeeded", 15, |d| {
        pod_field(d, "Status").as_deref() == Some("Succeeded")
    });
    let order = std::fs::read_to_string(host.join("order")).unwrap_or_default();
    assert_eq!(
        order,
        "side-up\nmain-done\nside-term\n",
        "the sidecar did not get TERM after the main container ended\n{}",
        env.diag()
    );
    let d = env.describe(&name);
    assert_eq!(pod_field(&d, "Status").as_deref(), Some("Succeeded"), "{d}");
    let main_state = sub(&section(&d, "main"), "State");
    assert_eq!(value(&main_state, "Exit Code").as_deref(), Some("0"), "{d}");
    let side_state = sub(&section(&d, "side"), "State");
    assert_eq!(
        value(&side_state, "State").as_deref(),
        Some("Terminated"),
        "{d}"
    );
    assert_eq!(restart_count(&d, "side"), 0, "{d}");
    env.assert_stopped(&name);
    env.delete(&[&name]);
    env.assert_nothing_left();
}

/// While a pod terminates, its containers' statuses move as they stop, as
/// kubelet's pod worker reports them (pkg/kubelet/kubelet.go
/// SyncTerminatingPod): after `delete --wait=false` the main container, which
/// exits on TERM at once, shows terminated (Completed, exit code 0,
/// finishedAt) while its native sidecar, which takes 3 s over TERM, still
/// shows running, in `get -o json` and in `describe`; then the pod is gone.
#[test]
fn container_statuses_move_while_the_pod_terminates() {
    let env = Env::new(&SUITE, "termstatus");
    let name = env.name("lc4-term-status");
    let _agent = env.serve(None, &[], &[]);
    let sidecar = container(
        "side",
        "trap 'sleep 3; exit 0' TERM; while true; do sleep 0.1; done",
        "    restartPolicy: Always\n",
    );
    let main = container(
        "main",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        "",
    );
    env.apply(&pod(
        &name,
        &format!("  terminationGracePeriodSeconds: 20\n  initContainers:\n{sidecar}"),
        &main,
    ));
    env.wait_row(&name, "2/2 Running", 15, |r| {
        r[2] == "2/2" && r[3] == "Running"
    });
    env.ok(&["delete", "pod", &name, "--wait=false"]);
    let state_of = |pod: &serde_json::Value, list: &str, c: &str| -> serde_json::Value {
        pod["status"][list]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["name"] == c))
            .map(|s| s["state"].clone())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let mut between = None;
    loop {
        let out = env.podrun(&["get", "pod", &name, "-o", "json"]);
        if !out.status.success() {
            break;
        }
        let pod: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let (main, side) = (
            state_of(&pod, "containerStatuses", "main"),
            state_of(&pod, "initContainerStatuses", "side"),
        );
        let pair = (
            main.as_object().and_then(|o| o.keys().next().cloned()),
            side.as_object().and_then(|o| o.keys().next().cloned()),
        );
        if seen.last() != Some(&pair) {
            seen.push(pair.clone());
        }
        if between.is_none() && pair == (Some("terminated".into()), Some("running".into())) {
            let describe = env.podrun(&["describe", "pod", &name]);
            between = Some((main, describe));
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} not gone 20 s after its deletion; states seen {seen:?}\n{}",
            env.diag()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("(main, side) states seen while {name} terminated: {seen:?}");
    let Some((main, describe)) = between else {
        panic!(
            "main never showed terminated while its sidecar ran; (main, side) states seen: {seen:?}\n{}",
            env.diag()
        );
    };
    let t = &main["terminated"];
    assert_eq!(t["exitCode"], 0, "{main}");
    assert_eq!(t["reason"], "Completed", "{main}");
    assert!(t["finishedAt"].is_string(), "{main}");
    // describe, read at the same moment (unless the pod went in between).
    if describe.status.success() {
        let d = String::from_utf8_lossy(&describe.stdout);
        let state = |c: &str| value(&sub(&section(&d, c), "State"), "State");
        assert_eq!(state("main").as_deref(), Some("Terminated"), "{d}");
        assert_eq!(state("side").as_deref(), Some("Running"), "{d}");
    }
    assert!(env.row(&name).is_none(), "{name} still listed");
    env.assert_nothing_left();
}

/// A failing liveness probe (exec; httpGet against busybox httpd) restarts
/// the container, with an Unhealthy "Liveness probe failed" event.
#[test]
fn failing_liveness_probes_restart_the_container() {
    let env = Env::new(&SUITE, "liveness");
    let by_exec = env.name("lc5-live-exec");
    let by_http = env.name("lc5-live-http");
    let _agent = env.serve(None, &[], &[]);
    let exec_probe = "    livenessProbe:\n      exec: {command: [cat, /tmp/alive]}\n      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 1\n";
    let http_probe = "    livenessProbe:\n      httpGet: {path: /healthz, port: 8080}\n      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 1\n";
    env.apply(&format!(
        "{}---\n{}",
        pod(
            &by_exec,
            "  terminationGracePeriodSeconds: 2\n",
            &container(
                "app",
                &format!("touch /tmp/alive; sleep 3; rm /tmp/alive; echo removed; {RUN_UNTIL_TERM}"),
                exec_probe
            )
        ),
        pod(
            &by_http,
            "  terminationGracePeriodSeconds: 2\n",
            &container(
                "app",
                "mkdir -p /www; echo ok > /www/healthz; httpd -f -p 8080 -h /www & trap 'kill $!; exit 0' TERM; sleep 3; rm /www/healthz; echo removed; while true; do sleep 0.1; done",
                http_probe
            )
        ),
    ));
    // Both run, healthy, for their first 3 s.
    std::thread::sleep(Duration::from_millis(2000));
    for name in [&by_exec, &by_http] {
        let row = env.row(name).unwrap();
        assert_eq!(
            (row[3].as_str(), restarts(&row)),
            ("Running", 0),
            "{name} before its probe target is removed: {row:?}\n{}",
            env.diag()
        );
    }
    for (name, why) in [
        (
            &by_exec,
            // kubelet's event carries the command's output.
            "Liveness probe failed: cat: can't open '/tmp/alive': No such file or directory",
        ),
        (
            &by_http,
            "Liveness probe failed: HTTP probe failed with statuscode: 404",
        ),
    ] {
        let d = env.wait_describe(name, "restarted by its liveness probe", 20, |d| {
            restart_count(d, "app") >= 1
        });
        let ev = events(&d);
        assert!(
            ev.contains("Unhealthy") && ev.contains("Liveness probe failed"),
            "no Unhealthy event for {name}:\n{d}"
        );
        assert!(ev.contains(why), "{name}: no event {why:?}:\n{d}");
        assert!(
            ev.contains("Container app failed liveness probe, will be restarted"),
            "{name}: no Killing event for the liveness probe:\n{d}"
        );
        // The instance the probe killed said so in its own log (`-p`).
        let log = env.ok(&["logs", name, "-p"]);
        assert!(log.contains("removed"), "{name}: {log:?}");
    }
    env.delete(&[&by_exec, &by_http]);
    env.assert_nothing_left();
}

/// httpGet probes follow redirects as kubelet does (pkg/probe/http): busybox
/// httpd sends `/d` to `/d/`, the same host, so the readiness probe gets that
/// page's 404 until it has an index; a CGI's redirect to another host is not
/// followed, and the liveness probe passes with a ProbeWarning event.
#[test]
fn http_probes_follow_redirects_as_kubelet_does() {
    let env = Env::new(&SUITE, "redirects");
    let name = env.name("lc5-redirect");
    let _agent = env.serve(None, &[], &[]);
    let away = r#"printf '#!/bin/sh\nprintf "HTTP/1.1 302 Found\\r\\nLocation: http://127.0.0.2:9/\\r\\n\\r\\nmoved away"\n' > /www/cgi-bin/away; chmod +x /www/cgi-bin/away"#;
    let script = format!(
        "mkdir -p /www/d /www/cgi-bin; {away}; httpd -f -p 8080 -h /www & trap 'kill $!; exit 0' TERM; while true; do sleep 0.1; done"
    );
    let probes = "    readinessProbe:\n      httpGet: {path: /d, port: 8080}\n      periodSeconds: 1\n      failureThreshold: 1\n    livenessProbe:\n      httpGet: {path: /cgi-bin/away, port: 8080}\n      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 1\n";
    env.apply(&pod(
        &name,
        "  terminationGracePeriodSeconds: 2\n",
        &container("app", &script, probes),
    ));
    let d = env.wait_describe(&name, "the redirect's 404 and the warning", 20, |d| {
        let ev = events(d);
        ev.contains("Readiness probe failed: HTTP probe failed with statuscode: 404")
            && ev.contains("ProbeWarning")
    });
    assert!(
        events(&d).contains(
            "Liveness probe warning: Probe terminated redirects, Response body: moved away"
        ),
        "{d}"
    );
    let row = env.row(&name).unwrap();
    assert_eq!(
        (row[2].as_str(), restarts(&row)),
        ("0/1", 0),
        "{row:?}\n{}",
        env.diag()
    );
    env.ok(&[
        "exec",
        &name,
        "--",
        "sh",
        "-c",
        "echo ok > /www/d/index.html",
    ]);
    env.wait_row(&name, "1/1", 10, |r| r[2] == "1/1" && r[3] == "Running");
    let row = env.row(&name).unwrap();
    assert_eq!(restarts(&row), 0, "the warning is no failure: {row:?}");
    env.delete(&[&name]);
    env.assert_nothing_left();
}

/// A readiness probe keeps the pod 0/1 until it passes, then 1/1 (Ready
/// condition True), and 0/1 again when it fails.
#[test]
fn readiness_follows_the_probe() {
    let env = Env::new(&SUITE, "readiness");
    let name = env.name("lc6-ready");
    let _agent = env.serve(None, &[], &[]);
    env.apply(&pod(
        &name,
        "  terminationGracePeriodSeconds: 2\n",
        &container(
            "app",
            RUN_UNTIL_TERM,
            "    readinessProbe:\n      exec: {command: [test, -e, /tmp/ready]}\n      periodSeconds: 1\n      failureThreshold: 1\n",
        ),
    ));
    env.wait_row(&name, "Running", 15, |r| r[3] == "Running");
    for _ in 0..10 {
        let row = env.row(&name).unwrap();
        assert_eq!(
            row[2],
            "0/1",
            "ready without the file: {row:?}\n{}",
            env.diag()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let d = env.describe(&name);
    assert_eq!(condition(&d, "Ready").as_deref(), Some("False"), "{d}");
    env.ok(&["exec", &name, "--", "touch", "/tmp/ready"]);
    env.wait_row(&name, "1/1", 10, |r| r[2] == "1/1" && r[3] == "Running");
    let d = env.describe(&name);
    assert_eq!(condition(&d, "Ready").as_deref(), Some("True"), "{d}");
    assert_eq!(
        condition(&d, "ContainersReady").as_deref(),
        Some("True"),
        "{d}"
    );
    assert_eq!(
        value(&section(&d, "app"), "Ready").as_deref(),
        Some("True"),
        "{d}"
    );
    let wide = env.ok(&["get", "pods", "-o", "wide", &name]);
    let lines: Vec<Vec<&str>> = wide
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines.first().map(|h| h.as_slice()),
        Some(
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED",
                "NODE",
                "READINESS",
                "GATES"
            ]
            .as_slice()
        ),
        "{wide}"
    );
    assert_eq!(&lines[1][..3], [name.as_str(), "1/1", "Running"], "{wide}");
    // Its address on the test's network; no nomination, no gates.
    let prefix = env.network.subnet.trim_end_matches("0/24");
    assert!(
        lines[1][5].starts_with(prefix) && lines[1][5].parse::<std::net::Ipv4Addr>().is_ok(),
        "the IP column is not an address of {}: {wide}",
        env.network.subnet
    );
    assert_eq!(&lines[1][7..], ["<none>", "<none>"], "{wide}");
    env.ok(&["exec", &name, "--", "rm", "/tmp/ready"]);
    env.wait_row(&name, "0/1 again", 10, |r| {
        r[2] == "0/1" && r[3] == "Running"
    });
    let d = env.describe(&name);
    assert_eq!(condition(&d, "Ready").as_deref(), Some("False"), "{d}");
    assert_eq!(restart_count(&d, "app"), 0, "{d}");
    env.delete(&[&name]);
    env.assert_nothing_left();
}

/// A gRPC health server (Debian's python3-grpcio, without its health
/// module: Check answers raw bytes) in the network namespace of a pod's
/// pause process, answering with the status in a file the test rewrites; the
/// drop guard kills it.
struct HealthServer {
    child: std::process::Child,
    status: PathBuf,
    seen: PathBuf,
}

/// The server: `server.py PORT STATUS_FILE SEEN_FILE`. It keeps the last
/// request (a HealthCheckRequest) in SEEN_FILE.
const HEALTH_SERVER: &str = r#"
import sys
from concurrent import futures
import grpc

port, status_file, seen_file = sys.argv[1:4]

def check(request, context):
    with open(seen_file, "wb") as f:
        f.write(request)
    with open(status_file) as f:
        return bytes([0x08, int(f.read())])

handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
    "Check": grpc.unary_unary_rpc_method_handler(
        check, request_deserializer=None, response_serializer=None),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port("127.0.0.1:" + port)
server.start()
server.wait_for_termination()
"#;

impl HealthServer {
    /// Start it on `port` in the network namespace of pod `name`, answering `status`.
    fn start(env: &Env, name: &str, port: u16, status: u8) -> Self {
        let pauses: Vec<i32> = env
            .pauses()
            .into_iter()
            .filter(|p| p.1 == name)
            .map(|p| p.0)
            .collect();
        assert_eq!(
            pauses.len(),
            1,
            "pause of {name}: {pauses:?}\n{}",
            env.diag()
        );
        // A directory of its own and -I (no script directory, no user site
        // or PYTHON* variables on the path): nothing can shadow a module.
        let dir = env.host_dir("grpc-server");
        let script = dir.join("server.py");
        std::fs::write(&script, HEALTH_SERVER).unwrap();
        let state = env.host_dir("grpc-state");
        let (status_file, seen) = (state.join("status"), state.join("seen"));
        std::fs::write(&status_file, status.to_string()).unwrap();
        let log = std::fs::File::create(env.dir.path().join("grpc-server.log")).unwrap();
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", pauses[0]))
            .args(["/usr/bin/python3", "-I"])
            .arg(&script)
            .arg(port.to_string())
            .args([&status_file, &seen])
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        HealthServer {
            child,
            status: status_file,
            seen,
        }
    }

    fn answer(&self, status: u8) {
        std::fs::write(&self.status, status.to_string()).unwrap();
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gRPC readiness probe of a pod: not Ready while nothing listens in the
/// pod's network (a timeout, as kubelet's dial), Ready once the health
/// service answers SERVING for the probe's service, not Ready again when it
/// answers NOT_SERVING.
#[test]
fn readiness_by_grpc_health_checks() {
    let env = Env::new(&SUITE, "grpc");
    let name = env.name("lc12-grpc");
    let port = 50061;
    let _agent = env.serve(None, &[], &[]);
    env.apply(&pod(
        &name,
        "  terminationGracePeriodSeconds: 2\n",
        &container(
            "app",
            RUN_UNTIL_TERM,
            &format!("    readinessProbe:\n      grpc: {{port: {port}, service: db}}\n      periodSeconds: 1\n      failureThreshold: 1\n"),
        ),
    ));
    env.wait_row(&name, "Running", 15, |r| r[3] == "Running");
    let refused = format!(
        "Readiness probe failed: timeout: failed to connect service \"127.0.0.1:{port}\" within 1s: context deadline exceeded"
    );
    let d = env.wait_describe(&name, "a failed dial", 10, |d| events(d).contains(&refused));
    assert_eq!(condition(&d, "Ready").as_deref(), Some("False"), "{d}");
    assert_eq!(env.row(&name).unwrap()[2], "0/1");

    let server = HealthServer::start(&env, &name, port, 1);
    env.wait_row(&name, "1/1 once SERVING", 15, |r| r[2] == "1/1");
    let d = env.describe(&name);
    assert_eq!(condition(&d, "Ready").as_deref(), Some("True"), "{d}");
    // The probe asked for its service: HealthCheckRequest{service: "db"}.
    assert_eq!(std::fs::read(&server.seen).unwrap(), b"\x0a\x02db");
    // The server listens in the pod's network only.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the health server is reachable from the host's network"
    );

    server.answer(2);
    env.wait_row(&name, "0/1 once NOT_SERVING", 10, |r| {
        r[2] == "0/1" && r[3] == "Running"
    });
    let d = env.describe(&name);
    assert_eq!(condition(&d, "Ready").as_deref(), Some("False"), "{d}");
    assert!(
        events(&d)
            .contains("Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")"),
        "{d}"
    );
    assert_eq!(restart_count(&d, "app"), 0, "{d}");
    drop(server);
    env.delete(&[&name]);
    env.assert_nothing_left();
}

/// A preStop hook runs when the pod is deleted, before the container gets
/// its TERM.
#[test]
fn pre_stop_hook_runs_on_delete() {
    let env = Env::new(&SUITE, "prestop");
    let name = env.name("lc7-prestop");
    let host = env.host_dir("host");
    let _agent = env.serve(None, &[], &[]);
    env.apply(&pod(
        &name,
        &format!(
            "  terminationGracePeriodSeconds: 5\n  volumes:\n  - name: host\n    hostPath: {{path: {}, type: Directory}}\n",
            host.display()
        ),
        &container(
            "app",
            "trap 'echo term >> /host/prestop.txt; exit 0' TERM; while true; do sleep 0.1; done",
            "    volumeMounts:\n    - {name: host, mountPath: /host}\n    lifecycle:\n      preStop:\n        exec: {command: [sh, -c, \"echo prestop-ran > /host/prestop.txt\"]}\n",
        ),
    ));
    env.wait_row(&name, "Running", 15, |r| r[2] == "1/1" && r[3] == "Running");
    assert!(!host.join("prestop.txt").exists());
    env.delete(&[&name]);
    let got = std::fs::read_to_string(host.join("prestop.txt")).unwrap_or_default();
    assert_eq!(
        got,
        "prestop-ran\nterm\n",
        "the preStop hook's file (then the TERM trap's line)\n{}",
        env.diag()
    );
    env.assert_nothing_left();
}

/// A container that ignores TERM is killed when the grace period ends: the
/// pod's terminationGracePeriodSeconds, or `--grace-period`; never before
/// kubelet's minimum of 2 s after its stop signal (killContainer's
/// minimumGracePeriodInSeconds), with `--grace-period 1` and `--force` too.
#[test]
fn grace_periods_bound_the_deletion() {
    let env = Env::new(&SUITE, "grace");
    let names: Vec<String> = ["lc8-own", "lc8-one", "lc8-force"]
        .iter()
        .map(|n| env.name(n))
        .collect();
    let _agent = env.serve(None, &[], &[]);
    let docs: Vec<String> = names
        .iter()
        .map(|n| {
            pod(
                n,
                "  terminationGracePeriodSeconds: 2\n",
                &container("app", "trap '' TERM; while true; do sleep 0.1; done", ""),
            )
        })
        .collect();
    env.apply(&docs.join("---\n"));
    for n in &names {
        env.wait_row(n, "Running", 15, |r| r[2] == "1/1" && r[3] == "Running");
    }
    let timed = |args: &[&str]| {
        let t = Instant::now();
        env.delete(args);
        t.elapsed().as_secs_f64()
    };
    let own = timed(&[&names[0]]);
    assert!(
        (2.0..6.0).contains(&own),
        "delete with the pod's 2 s grace period took {own:.2} s\n{}",
        env.diag()
    );
    let one = timed(&[&names[1], "--grace-period", "1"]);
    assert!(
        (2.0..4.5).contains(&one),
        "delete --grace-period 1 took {one:.2} s (kubelet's minimum is 2 s)\n{}",
        env.diag()
    );
    let force = timed(&[&names[2], "--force"]);
    eprintln!(
        "delete took {own:.2} s (grace 2), {one:.2} s (--grace-period 1), {force:.2} s (--force)"
    );
    assert!(
        (2.0..4.5).contains(&force),
        "delete --force took {force:.2} s (kubelet's minimum is 2 s)\n{}",
        env.diag()
    );
    env.assert_nothing_left();
}

/// A container that allocates past its memory limit is OOM-killed: reason
/// OOMKilled, exit code 137; under Never the pod fails.
#[test]
fn out_of_memory_is_oom_killed() {
    let env = Env::new(&SUITE, "oom");
    let name = env.name("lc9-oom");
    let _agent = env.serve(None, &[], &[]);
    let r = registry();
    // dd reads 64 MiB of zeros into one buffer: every page is touched.
    env.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: {r}/busybox:latest\n    command: [dd, if=/dev/zero, of=/dev/null, bs=64M, count=1]\n    resources:\n      limits: {{memory: 16Mi}}\n"
    ));
    let row = env.wait_row(&name, "terminated", 20, |r| {
        r[3] != "Running" && r[3] != "ContainerCreating"
    });
    assert_eq!(row[3], "OOMKilled", "{row:?}\n{}", env.diag());
    let d = env.describe(&name);
    let state = sub(&section(&d, "app"), "State");
    assert_eq!(value(&state, "State").as_deref(), Some("Terminated"), "{d}");
    assert_eq!(value(&state, "Reason").as_deref(), Some("OOMKilled"), "{d}");
    assert_eq!(value(&state, "Exit Code").as_deref(), Some("137"), "{d}");
    assert_eq!(pod_field(&d, "Status").as_deref(), Some("Failed"), "{d}");
    assert_eq!(restart_count(&d, "app"), 0, "{d}");
    env.assert_stopped(&name);
    env.delete(&[&name]);
    env.assert_nothing_left();
}

/// A container that exits while no agent runs: the next agent reads the exit
/// from the monitor's records and restarts it (OnFailure) in the same
/// sandbox, without a second copy of the pod.
#[test]
fn an_exit_while_the_agent_is_down_is_not_lost() {
    let env = Env::new(&SUITE, "down");
    let name = env.name("lc10-down");
    let mut agent = env.serve(None, &[], &[]);
    // Exits 3 the first time; runs on after the restart (the emptyDir keeps
    // the mark; a new sandbox would have a new, empty one).
    env.apply(&pod(
        &name,
        "  restartPolicy: OnFailure\n  terminationGracePeriodSeconds: 2\n  volumes:\n  - {name: state, emptyDir: {}}\n",
        &container(
            "app",
            &format!("if [ -e /state/ran ]; then echo again; {RUN_UNTIL_TERM}; fi; touch /state/ran; echo first; sleep 2; exit 3"),
            "    volumeMounts:\n    - {name: state, mountPath: /state}\n",
        ),
    ));
    agent.kill();
    let id = env.pod_id("default", &name);
    std::thread::sleep(Duration::from_secs(4));
    let exit: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.run.join("sandboxes").join(&id).join("exits/app.json"))
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(
        exit["exit_code"],
        3,
        "the monitor's exit record: {exit}\n{}",
        env.diag()
    );
    let _fresh = env.serve(None, &[], &[]);
    let row = env.wait_row(&name, "restarted once", 15, |r| {
        r[2] == "1/1" && r[3] == "Running" && restarts(r) == 1
    });
    assert_eq!(restarts(&row), 1, "{row:?}");
    let d = env.describe(&name);
    let last = sub(&section(&d, "app"), "Last State");
    assert_eq!(
        value(&last, "Last State").as_deref(),
        Some("Terminated"),
        "{d}"
    );
    assert_eq!(value(&last, "Exit Code").as_deref(), Some("3"), "{d}");
    assert_eq!(value(&last, "Reason").as_deref(), Some("Error"), "{d}");
    assert!(!events(&d).contains("SandboxChanged"), "{d}");
    assert_eq!(
        env.pod_id("default", &name),
        id,
        "the pod was made again\n{}",
        env.diag()
    );
    // kubelet's log of each instance: the current one, and the one before.
    assert_eq!(env.ok(&["logs", &name]), "again\n");
    assert_eq!(env.ok(&["logs", &name, "-p"]), "first\n");
    // Still the one pod, once, a moment later.
    std::thread::sleep(Duration::from_millis(500));
    let row = env.row(&name).unwrap();
    assert_eq!(restarts(&row), 1, "{row:?}\n{}", env.diag());
    env.assert_exactly(&[("default", &name)]);
    env.delete(&[&name]);
    env.assert_nothing_left();
}

/// A pod past its activeDeadlineSeconds is stopped and fails with reason
/// DeadlineExceeded.
#[test]
fn active_deadline_fails_the_pod() {
    let env = Env::new(&SUITE, "deadline");
    let name = env.name("lc11-deadline");
    let _agent = env.serve(None, &[], &[]);
    env.apply(&pod(
        &name,
        "  activeDeadlineSeconds: 2\n  terminationGracePeriodSeconds: 2\n",
        &container("app", "trap 'exit 0' TERM; sleep 60 & wait", ""),
    ));
    let applied = Instant::now();
    let d = env.wait_describe(&name, "Failed", 10, |d| {
        pod_field(d, "Status").as_deref() == Some("Failed")
    });
    let took = applied.elapsed().as_secs_f64();
    eprintln!("failed {took:.2} s after apply returned");
    assert!(
        (1.5..4.5).contains(&took),
        "the pod failed {took:.2} s after it started, its deadline is 2 s\n{d}"
    );
    assert_eq!(
        pod_field(&d, "Reason").as_deref(),
        Some("DeadlineExceeded"),
        "{d}"
    );
    env.assert_stopped(&name);
    let d = env.wait_describe(&name, "the container terminated", 5, |d| {
        value(&sub(&section(d, "app"), "State"), "State").as_deref() == Some("Terminated")
    });
    assert_eq!(pod_field(&d, "Status").as_deref(), Some("Failed"), "{d}");
    // STATUS is the stopped container's reason, as kubectl prints it.
    let row = env.row(&name).unwrap();
    assert!(row[2] == "0/1" && row[3] != "Running", "{row:?}");
    env.delete(&[&name]);
    env.assert_nothing_left();
}

/// The node's addresses as `ip` shows them: the first IPv4 address of the
/// IPv4 default route's device, then the first global IPv6 address of the
/// IPv6 default route's device (what the agent reports as `status.hostIPs`).
fn node_ips_by_iproute2() -> Vec<String> {
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .expect("run ip (iproute2)");
        String::from_utf8(out.stdout).unwrap()
    };
    let after = |text: &str, word: &str| {
        text.split_whitespace()
            .skip_while(|w| *w != word)
            .nth(1)
            .map(String::from)
    };
    let mut ips = Vec::new();
    for (family, inet) in [("-4", "inet"), ("-6", "inet6")] {
        let Some(dev) = after(&ip(&[family, "route", "show", "default"]), "dev") else {
            continue;
        };
        let addrs = ip(&["-o", family, "addr", "show", "dev", &dev, "scope", "global"]);
        if let Some(a) = after(&addrs, inet) {
            ips.push(a.split('/').next().unwrap().to_string());
        }
    }
    assert!(
        !ips.is_empty(),
        "this test needs a default route with an address; `ip route` shows none"
    );
    ips
}

/// A hostNetwork pod has the node's addresses (kubelet's
/// generateAPIPodStatus): status.podIP(s) = status.hostIP(s), in the
/// downward API's environment, `get -o wide`, `describe` and `-o json`.
#[test]
fn a_host_network_pod_has_the_nodes_ips() {
    let env = Env::new(&SUITE, "hostips");
    let name = env.name("lc12-hostips");
    let _agent = env.serve(None, &[], &[]);
    let field = |var: &str, path: &str| {
        format!("    - {{name: {var}, valueFrom: {{fieldRef: {{fieldPath: {path}}}}}}}\n")
    };
    let env_lines = format!(
        "    env:\n{}{}{}{}",
        field("POD_IP", "status.podIP"),
        field("POD_IPS", "status.podIPs"),
        field("HOST_IP", "status.hostIP"),
        field("HOST_IPS", "status.hostIPs"),
    );
    env.apply(&pod(
        &name,
        "  hostNetwork: true\n  terminationGracePeriodSeconds: 2\n",
        &container(
            "app",
            &format!("echo \"$POD_IP|$POD_IPS|$HOST_IP|$HOST_IPS\"; {RUN_UNTIL_TERM}"),
            &env_lines,
        ),
    ));
    env.wait_row(&name, "Running", 15, |r| r[3] == "Running");
    let ips = node_ips_by_iproute2();
    let (first, all) = (&ips[0], ips.join(","));
    let logs = env.ok(&["logs", &name]);
    assert_eq!(logs, format!("{first}|{all}|{first}|{all}\n"));
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["get", "pods", "-o", "json", &name])).unwrap();
    let status = &json["status"];
    let list = |key: &str| -> Vec<String> {
        status[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {status}"))
            .iter()
            .map(|v| v["ip"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(status["podIP"].as_str(), Some(first.as_str()), "{status}");
    assert_eq!(status["hostIP"].as_str(), Some(first.as_str()), "{status}");
    assert_eq!(list("podIPs"), ips, "{status}");
    assert_eq!(list("hostIPs"), ips, "{status}");
    let wide = env.ok(&["get", "pods", "-o", "wide", &name]);
    let row: Vec<&str> = wide.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[5], first, "{wide}");
    let d = env.describe(&name);
    let block: String = ips.iter().map(|ip| format!("  IP:  {ip}\n")).collect();
    assert!(
        d.contains(&format!("\nIP:               {first}\nIPs:\n{block}")),
        "{d}"
    );
    env.delete(&[&name]);
    env.assert_nothing_left();
}
