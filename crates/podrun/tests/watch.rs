//! kubectl's watching habits against a real agent and real busybox pods:
//! `get pods -w` / `--watch-only`, `get events [-w]`, `events`, and `wait`,
//! each checked line by line; watches whose client is killed (the agent
//! frees them), and an agent that stops under a watch (the CLI ends with an
//! error). The watches are pushed by the agent; how fast is measured and
//! printed (`--nocapture`), never asserted.
//!
//! Run with `--test-threads=1` (the tests share the machine's pods).

#[path = "support/agent_env.rs"]
mod agent_env;
mod support;

use agent_env::{kill, registry, text, Agent, Env, Suite};
use podrun_agent::api::{self, Request, Response, WatchEvent, WatchObject, Watched};
use std::io::BufRead;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SUITE: Suite = Suite {
    name: "watch",
    knobs: &[
        ("PODRUN_SYNC_INTERVAL_MS", "200"),
        ("PODRUN_BACKOFF_INITIAL_MS", "500"),
    ],
    agent_stays_up: false,
};

/// A busybox pod that runs until SIGTERM (which it obeys at once).
fn pod(ns: &str, name: &str) -> String {
    let r = registry();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: app
    image: {r}/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
"#
    )
}

/// A `podrun` command left running, its stdout read line by line (each with
/// when it was read) by a thread of its own.
struct Running {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<String>,
}

impl Running {
    fn start(env: &Env, args: &[&str]) -> Running {
        let mut child = env
            .cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line (at most `secs` away, else the test fails).
    fn line(&mut self, env: &Env, secs: u64) -> (Instant, String) {
        match self.lines.recv_timeout(Duration::from_secs(secs)) {
            Ok((at, l)) => {
                self.seen.push(l.clone());
                (at, l)
            }
            Err(_) => panic!(
                "no line within {secs} s; lines so far: {:#?}\n{}",
                self.seen,
                env.diag()
            ),
        }
    }

    /// Lines until one satisfies `done` (inclusive).
    fn until(&mut self, env: &Env, secs: u64, done: impl Fn(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let (_, l) = self.line(env, secs);
            out.push(l.clone());
            if done(&l) {
                return out;
            }
        }
    }

    /// Its exit status and stderr, once it ends (at most `secs`).
    fn end(&mut self, secs: u64) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return (s, err);
            }
            assert!(Instant::now() < deadline, "it did not end within {secs} s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Env {
    fn apply_pods(&self, yaml: &str) {
        let file = self.write_manifest(yaml);
        self.ok(&["apply", "-f", file.to_str().unwrap()]);
    }

    /// `podrun wait --for=condition=Ready pod/NAME`, which must succeed.
    fn ready(&self, ns: &str, name: &str) {
        let out = self.ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "-n",
            ns,
            "--timeout=120s",
        ]);
        assert_eq!(out, format!("pod/{name} condition met\n"));
    }

    /// The agent's open watches (asked through the API).
    fn watches(&self) -> usize {
        match api::call(&self.run, &Request::Info, Duration::from_secs(5)).unwrap() {
            Response::Info { watches, .. } => watches,
            other => panic!("Info: {other:?}"),
        }
    }

    /// Wait (at most 10 s) until the agent holds `n` watches.
    fn wait_watches(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.watches() != n {
            assert!(
                Instant::now() < deadline,
                "the agent holds {} watches, not {n}\n{}",
                self.watches(),
                self.diag()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `line` with its last column (AGE, or LAST SEEN first) checked to be a
/// short duration and replaced by `AGE`.
fn aged(line: &str) -> String {
    let (head, age) = line.rsplit_once(' ').unwrap();
    assert!(
        age.ends_with('s') && age[..age.len() - 1].parse::<u64>().is_ok(),
        "{line:?}: its age is not like 5s"
    );
    format!("{head} AGE")
}

/// Check that `lines` are laid out as kubectl's tab writer does while it
/// watches: the first `first` lines as one table, each later line alone,
/// every column as wide as its widest cell so far (plus 3, at least 6).
fn assert_layout(lines: &[String], first: usize) {
    let cells: Vec<Vec<String>> = lines
        .iter()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let mut model = podrun_agent::table::Remembered::default();
    let mut out = Vec::new();
    model.write(&mut out, &cells[..first]).unwrap();
    for row in &cells[first..] {
        model.write(&mut out, std::slice::from_ref(row)).unwrap();
    }
    let want: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines, want);
}

#[test]
fn get_w_prints_the_table_then_a_row_per_change_and_the_last_row_of_a_deleted_pod() {
    let env = Env::new(&SUITE, "getw");
    let _agent = env.serve(None, &[], &[]);
    let web = env.name("web");
    env.apply_pods(&pod("default", &web));
    env.ready("default", &web);

    let mut watch = Running::start(&env, &["get", "pods", "-w"]);
    let mut only = Running::start(&env, &["get", "pods", "--watch-only"]);
    assert_eq!(
        watch.line(&env, 10).1,
        "NAME   READY   STATUS    RESTARTS   AGE"
    );
    assert_eq!(
        aged(&watch.line(&env, 10).1),
        "web    1/1     Running   0          AGE"
    );
    env.wait_watches(2);

    // A new pod: its rows as it comes up.
    let db = env.name("db");
    env.apply_pods(&pod("default", &db));
    env.ready("default", &db);
    let rows = watch.until(&env, 30, |l| {
        l.starts_with("db ") && l.contains(" Running ")
    });
    for r in &rows {
        assert!(r.starts_with("db "), "a row of another pod: {rows:?}");
    }
    let last: Vec<&str> = rows.last().unwrap().split_whitespace().collect();
    assert_eq!(last[..4], ["db", "1/1", "Running", "0"]);
    // --watch-only: the header with the first row, then the same rows.
    let only_rows = only.until(&env, 30, |l| {
        l.starts_with("db ") && l.contains(" Running ")
    });
    // (Its widths are those of the header and the first row: checked below.)
    assert_eq!(
        only_rows[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let unaged = |l: &String| l.rsplit_once(' ').unwrap().0.trim_end().to_string();
    assert_eq!(
        only_rows[1..].iter().map(unaged).collect::<Vec<_>>(),
        rows.iter().map(unaged).collect::<Vec<_>>()
    );

    // Deleted: Terminating rows, then the last row once more.
    let t0 = Instant::now();
    env.ok(&["delete", "pod", &web, "--wait=false"]);
    let (at, first) = watch.line(&env, 30);
    eprintln!(
        "measured: `podrun delete --wait=false` started -> its Terminating row read from `get -w`: {:?}",
        at - t0
    );
    let cells: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(cells[..4], ["web", "1/1", "Terminating", "0"]);
    env.ok(&["wait", "--for=delete", "pod/web", "--timeout=60s"]);
    // Another pod's row marks the end of web's.
    env.ok(&["delete", "pod", &db, "--wait=false"]);
    let mut rest = watch.until(&env, 30, |l| l.starts_with("db "));
    rest.pop();
    let web_rows: Vec<String> = std::iter::once(first)
        .chain(rest)
        .map(|l| unaged(&l))
        .collect();
    for r in &web_rows {
        assert!(
            r.starts_with("web ") && r.contains(" Terminating "),
            "{web_rows:?}"
        );
    }
    // A pod's row is sent again only when it changed, or when it is gone:
    // the last two rows of web are alike, the second its deletion.
    assert!(web_rows.len() >= 2, "no row for the deletion: {web_rows:?}");
    assert_eq!(web_rows[web_rows.len() - 1], web_rows[web_rows.len() - 2]);
    env.ok(&["wait", "--for=delete", "pod/db", "--timeout=60s"]);
    only.until(&env, 30, |l| {
        l.starts_with("db ") && l.contains(" Terminating ")
    });
    let _ = watch.child.kill();
    let _ = only.child.kill();
    eprintln!("get pods -w printed:\n{}", watch.seen.join("\n"));
    eprintln!("get pods --watch-only printed:\n{}", only.seen.join("\n"));
    assert_layout(&watch.seen, 2);
    assert_layout(&only.seen, 2);
    env.wait_watches(0);
    env.assert_nothing_left();
}

/// The API underneath: the pod's deletion is a DELETED event with its last
/// state, and the status changes arrive as the agent records them. Measures
/// the time from a deletion's request to its MODIFIED event (the agent
/// records it before it answers the request).
#[test]
fn the_agent_pushes_each_change_as_it_records_it() {
    let env = Env::new(&SUITE, "push");
    let _agent = env.serve(None, &[], &[]);
    let names: Vec<String> = (0..5).map(|i| env.name(&format!("p{i}"))).collect();
    let yaml: Vec<String> = names.iter().map(|n| pod("push", n)).collect();
    env.apply_pods(&yaml.join("---\n"));
    for n in &names {
        env.ready("push", n);
    }
    let request = Request::Watch {
        what: Watched::Pods,
        namespace: Some("push".into()),
        pod: None,
        full: false,
    };
    let mut watch = api::Watch::open(&env.run, &request).unwrap();
    let mut initial = Vec::new();
    loop {
        match watch
            .next(Some(Instant::now() + Duration::from_secs(10)))
            .unwrap()
        {
            WatchEvent::Added {
                object: WatchObject::Pod(p),
            } => initial.push((p.name, p.status)),
            WatchEvent::Synced => break,
            other => panic!("before SYNCED: {other:?}"),
        }
    }
    let want: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.clone(), "Running".to_string()))
        .collect();
    assert_eq!(initial, want);
    let mut took = Vec::new();
    for n in &names {
        let t0 = Instant::now();
        let r = api::call(
            &env.run,
            &Request::Delete {
                namespace: "push".into(),
                names: vec![n.clone()],
                grace_period: None,
                wait: false,
            },
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(matches!(r, Response::Done { failed: false, .. }), "{r:?}");
        let mut deleted = false;
        let mut terminating = None;
        while !deleted {
            match watch.next(Some(Instant::now() + Duration::from_secs(30))) {
                Ok(WatchEvent::Modified {
                    object: WatchObject::Pod(p),
                }) => {
                    assert_eq!(&p.name, n);
                    assert_eq!(p.status, "Terminating");
                    terminating.get_or_insert(t0.elapsed());
                }
                Ok(WatchEvent::Deleted {
                    object: WatchObject::Pod(p),
                }) => {
                    assert_eq!(&p.name, n);
                    assert_eq!(p.status, "Terminating");
                    assert!(terminating.is_some(), "deleted before terminating");
                    deleted = true;
                }
                other => panic!("while {n} is deleted: {other:?}\n{}", env.diag()),
            }
        }
        took.push(terminating.unwrap());
    }
    took.sort();
    eprintln!(
        "measured: Delete request sent -> its MODIFIED (Terminating) event read, {} pods: min {:?}, median {:?}, max {:?}",
        took.len(),
        took[0],
        took[took.len() / 2],
        took[took.len() - 1]
    );
}

#[test]
fn get_events_lists_them_sorted_and_watches_new_ones() {
    let env = Env::new(&SUITE, "events");
    let _agent = env.serve(None, &[], &[]);
    let web = env.name("web");
    env.apply_pods(&pod("shop", &web));
    env.ready("shop", &web);
    let out = env.ok(&["get", "events", "-n", "shop"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "LAST SEEN   TYPE     REASON      OBJECT    MESSAGE",
        "{out}"
    );
    let reasons: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["Scheduled", "Pulling", "Pulled", "Created", "Started"],
        "{out}"
    );
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert!(cells[0].ends_with('s'), "{out}");
    assert_eq!(
        cells[1..].join(" "),
        format!(
            "Normal Scheduled pod/web Successfully assigned shop/web to {}",
            node.trim()
        )
    );
    assert!(
        lines[4].ends_with("   Normal   Created     pod/web   Created container app"),
        "{out}"
    );
    assert!(
        lines[5].ends_with("   Normal   Started     pod/web   Started container app"),
        "{out}"
    );
    // Every namespace: NAMESPACE first; another namespace's have none.
    let all = env.ok(&["get", "events", "-A"]);
    assert!(
        all.starts_with("NAMESPACE   LAST SEEN   TYPE     REASON      OBJECT    MESSAGE\n"),
        "{all}"
    );
    assert!(all.lines().skip(1).all(|l| l.starts_with("shop ")), "{all}");
    let none = env.podrun(&["get", "events"]);
    assert!(none.status.success(), "{}", text(&none));
    assert_eq!(
        String::from_utf8_lossy(&none.stderr),
        "No resources found in default namespace.\n"
    );
    assert!(none.stdout.is_empty());
    // kubectl events: Pod/NAME.
    let ev = env.ok(&["events", "-n", "shop", "--for", "pod/web"]);
    assert!(ev.lines().nth(1).unwrap().contains(" Pod/web "), "{ev}");

    // Watch: the list, then the new event of the deletion as it comes.
    let mut watch = Running::start(
        &env,
        &["get", "events", "-n", "shop", "-w", "--for", "pod/web"],
    );
    eprintln!("get events -n shop printed:\n{out}{all}{ev}");
    let listed = watch.until(&env, 10, |l| l.contains(" Started "));
    assert_eq!(listed.len(), 6, "{listed:?}");
    env.ok(&["delete", "pod", &web, "-n", "shop", "--wait=false"]);
    let killing = watch
        .until(&env, 30, |l| l.contains(" Killing "))
        .pop()
        .unwrap();
    assert!(
        killing.ends_with("   Normal   Killing     pod/web   Stopping container app"),
        "{killing:?}"
    );
    assert!(
        killing.split_whitespace().next().unwrap().ends_with('s'),
        "{killing:?}"
    );
    drop(watch);
    env.wait_watches(0);
    env.ok(&[
        "wait",
        "--for=delete",
        "pod/web",
        "-n",
        "shop",
        "--timeout=60s",
    ]);
    env.assert_nothing_left();
}

#[test]
fn wait_says_condition_met_or_times_out_as_kubectl() {
    let env = Env::new(&SUITE, "wait");
    let _agent = env.serve(None, &[], &[]);
    let web = env.name("web");
    env.apply_pods(&pod("default", &web));
    // Ready (the helper checks `pod/web condition met`).
    env.ready("default", &web);
    let phase = env.ok(&["wait", "--for=jsonpath={.status.phase}=Running", "pod/web"]);
    assert_eq!(phase, "pod/web condition met\n");
    let quoted = env.ok(&[
        "wait",
        "--for=jsonpath='{.status.phase}'=Running",
        "pod/web",
    ]);
    assert_eq!(quoted, "pod/web condition met\n");
    let cond = env.ok(&[
        "wait",
        "--for",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}=True",
        "pods",
        "web",
    ]);
    assert_eq!(cond, "pod/web condition met\n");

    let expect_fail = |args: &[&str], stderr: &str| {
        let out = env.podrun(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stderr), stderr, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out));
    };
    expect_fail(
        &[
            "wait",
            "--for=jsonpath={.status.phase}=Succeeded",
            "pod/web",
            "--timeout=1s",
        ],
        "error: timed out waiting for the condition on pods/web\n",
    );
    expect_fail(
        &[
            "wait",
            "--for=condition=Ready=false",
            "pod/web",
            "--timeout=0",
        ],
        "error: condition not met for pods/web\n",
    );
    expect_fail(
        &["wait", "--for=condition=Ready", "pod/nope", "--timeout=1s"],
        "Error from server (NotFound): pods \"nope\" not found\n",
    );
    expect_fail(
        &["wait", "--for=ready", "pod/web"],
        "error: unrecognized condition: \"ready\"\n",
    );
    // Nothing to wait for: a pod that is not there is deleted already.
    let gone = env.podrun(&["wait", "--for=delete", "pod/nope", "--timeout=1s"]);
    assert!(gone.status.success(), "{}", text(&gone));
    assert!(
        gone.stdout.is_empty() && gone.stderr.is_empty(),
        "{}",
        text(&gone)
    );

    // --for=delete: met when the pod is gone.
    let mut waiting = Running::start(&env, &["wait", "--for=delete", "pod/web", "--timeout=60s"]);
    env.wait_watches(1);
    env.ok(&["delete", "pod", &web, "--wait=false"]);
    let (_, met) = waiting.line(&env, 30);
    assert_eq!(met, "pod/web condition met");
    let (status, stderr) = waiting.end(10);
    assert!(status.success(), "{status} {stderr}");
    env.wait_watches(0);
    env.assert_nothing_left();
}

/// A watch whose client is killed is freed at once, and the agent goes on
/// serving; an agent that stops under a watch ends it with an error.
#[test]
fn killed_clients_free_their_watches_and_a_stopped_agent_ends_them() {
    let env = Env::new(&SUITE, "faults");
    let mut agent: Agent = env.serve(None, &[], &[]);
    assert_eq!(env.watches(), 0);
    let mut watchers: Vec<Running> = (0..3)
        .map(|i| {
            let args: &[&str] = match i {
                0 => &["get", "pods", "-w"],
                1 => &["get", "events", "-A", "--watch-only"],
                _ => &["get", "pods", "-A", "--watch-only"],
            };
            Running::start(&env, args)
        })
        .collect();
    env.wait_watches(3);
    for w in &watchers {
        kill(w.child.id() as i32, libc::SIGKILL);
    }
    for w in &mut watchers {
        let (status, _) = w.end(10);
        assert!(!status.success());
    }
    env.wait_watches(0);
    // Still serving, and a new watch works.
    let web = env.name("web");
    env.apply_pods(&pod("default", &web));
    env.ready("default", &web);
    let mut watch = Running::start(&env, &["get", "pods", "-w"]);
    assert_eq!(
        watch.line(&env, 10).1,
        "NAME   READY   STATUS    RESTARTS   AGE"
    );
    watch.line(&env, 10);
    env.wait_watches(1);

    // The agent dies under the watch: the CLI says so and fails.
    agent.kill();
    let (status, stderr) = watch.end(10);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "Error: the agent closed the watch: it stopped or restarted (see its log)\n"
    );
    // Stopped (SIGTERM) under a watch: the same.
    let mut agent = env.serve(None, &[], &[]);
    let mut watch = Running::start(&env, &["get", "events", "-w"]);
    watch.line(&env, 10);
    env.wait_watches(1);
    kill(agent.child.id() as i32, libc::SIGTERM);
    let (status, stderr) = watch.end(10);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "Error: the agent closed the watch: it stopped or restarted (see its log)\n"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let stopped = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not stop\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(stopped.success(), "{stopped}\n{}", agent.log());
    // A new agent takes the pod over; clean up through it.
    let _agent = env.serve(None, &[], &[]);
    env.ok(&["delete", "pod", &web]);
    env.assert_nothing_left();
}
