//! The node agent (`podrun serve`) end to end: pods applied through it from the
//! local registry, the agent killed at every step of a pod's creation and
//! deletion and started again, pods that outlive it, a simulated reboot,
//! static pods, and a database it must not touch. Every test has its own
//! roots and a drop guard that kills and removes whatever it left, and checks
//! that nothing of its pods is left: directories, mounts, cgroups, processes.
//!
//! Run with `--test-threads=1` (the tests count processes of their own roots
//! only, but they are heavy).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn registry() -> String {
    std::env::var("PODRUN_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

const PODRUN: &str = env!("CARGO_BIN_EXE_podrun");
const MONITOR: &str = env!("CARGO_BIN_EXE_podrun-monitor");

/// A pod of one busybox container that prints `$MSG` and then runs until
/// SIGTERM (which it obeys at once).
fn pod(ns: &str, name: &str, msg: &str) -> String {
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
    command: ["sh", "-c", "trap 'exit 0' TERM; echo msg=$MSG; while true; do sleep 0.1; done"]
    env:
    - name: MSG
      value: "{msg}"
"#
    )
}

// ---------------------------------------------------------------------------
// Processes.

/// A process seen in /proc.
#[derive(Debug, Clone)]
struct Proc {
    pid: i32,
    ppid: i32,
    args: Vec<String>,
    cgroup: String,
    zombie: bool,
}

impl Proc {
    fn exe_name(&self) -> &str {
        self.args
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .unwrap_or("")
    }

    fn cmdline(&self) -> String {
        self.args.join(" ")
    }
}

fn procs() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push(Proc {
            pid,
            ppid,
            args,
            cgroup: std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default(),
            zombie: state == "Z",
        });
    }
    out
}

fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    !stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill sends a signal.
    unsafe { libc::kill(pid, signal) };
}

/// Wait (at most `timeout`) until `pid` is gone or a zombie.
fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Directories of every cgroup hierarchy's podrun tree whose name contains
/// one of `ids`.
fn cgroups_of(ids: &BTreeSet<String>) -> Vec<PathBuf> {
    fn walk(dir: &Path, ids: &BTreeSet<String>, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let n = e.file_name().to_string_lossy().into_owned();
            if ids.iter().any(|id| n.contains(id.as_str())) {
                out.push(e.path());
            }
            walk(&e.path(), ids, out);
        }
    }
    let mut out = Vec::new();
    if ids.is_empty() {
        return out;
    }
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        walk(&h.path().join("podrun"), ids, &mut out);
    }
    out
}

/// Remove cgroup directories, deepest first (their processes must be gone).
fn remove_cgroups(mut dirs: Vec<PathBuf>) {
    // Children of a matched directory are matched too (they are below it).
    let mut all = Vec::new();
    fn below(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                below(&e.path(), out);
            }
        }
        out.push(d.to_path_buf());
    }
    for d in dirs.drain(..) {
        below(&d, &mut all);
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    all.dedup();
    for d in all {
        let _ = std::fs::remove_dir(&d);
    }
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn text(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------
// The environment of one test.

/// An agent this test started with `podrun serve`.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Agent {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (at most `timeout`) for it to exit.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL it and reap it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Env {
    dir: tempfile::TempDir,
    root: PathBuf,
    run: PathBuf,
    /// Every pod ID seen of this environment's pods.
    ids: std::cell::RefCell<BTreeSet<String>>,
    /// The names of the pods this test uses (their pause processes carry them).
    names: std::cell::RefCell<BTreeSet<String>>,
    /// Agent logs to show on failure.
    logs: std::cell::RefCell<Vec<PathBuf>>,
    files: std::cell::Cell<usize>,
}

impl Env {
    fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("podrun-agent-{tag}-"))
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        let run = dir.path().join("run");
        Env {
            logs: std::cell::RefCell::new(vec![run.join("agent.log")]),
            dir,
            root,
            run,
            ids: Default::default(),
            names: Default::default(),
            files: Default::default(),
        }
    }

    fn name(&self, name: &str) -> String {
        self.names.borrow_mut().insert(name.to_string());
        name.to_string()
    }

    /// `podrun <global flags>` with this environment's roots.
    fn cmd(&self) -> Command {
        let mut c = Command::new(PODRUN);
        c.arg("--root")
            .arg(&self.root)
            .arg("--run-root")
            .arg(&self.run)
            .arg("--registries-conf")
            .arg(self.dir.path().join("none.conf"))
            .arg("--hosts-dir")
            .arg(self.dir.path().join("none.d"))
            .env("HOME", self.dir.path())
            .env("REGISTRY_AUTH_FILE", self.dir.path().join("auth.json"))
            .env("PODRUN_SYNC_INTERVAL_MS", "200")
            .env("PODRUN_BACKOFF_INITIAL_MS", "500")
            .env_remove("PODRUN_AGENT_CRASH_AT")
            .stdin(Stdio::null());
        c
    }

    fn podrun(&self, args: &[&str]) -> Output {
        let out = output_within(self.cmd().args(args), 120);
        self.refresh_ids();
        out
    }

    /// `podrun <args>`, which must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.podrun(args);
        assert!(
            out.status.success(),
            "podrun {args:?}: {}\n{}",
            text(&out),
            self.diag()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `podrun apply -f <a file of `yaml`>`.
    fn apply(&self, yaml: &str) -> Output {
        let file = self.write_manifest(yaml);
        self.podrun(&["apply", "-f", file.to_str().unwrap()])
    }

    fn write_manifest(&self, yaml: &str) -> PathBuf {
        let n = self.files.get() + 1;
        self.files.set(n);
        let file = self.dir.path().join(format!("m{n}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        file
    }

    /// Start `podrun serve [extra]` (with `PODRUN_AGENT_CRASH_AT=crash` if
    /// given) and wait until it answers on its socket (or exits).
    fn serve(&self, crash: Option<&str>, extra: &[&str], envs: &[(&str, &str)]) -> Agent {
        let n = self.logs.borrow().len();
        let log = self.dir.path().join(format!("serve{n}.log"));
        self.logs.borrow_mut().push(log.clone());
        let mut cmd = self.cmd();
        cmd.arg("serve").args(extra);
        if let Some(c) = crash {
            cmd.env("PODRUN_AGENT_CRASH_AT", c);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdout(f.try_clone().unwrap()).stderr(f);
        let child = cmd.spawn().unwrap();
        let mut agent = Agent { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.answers() {
                break;
            }
            if let Ok(Some(_)) = agent.child.try_wait() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not answer within 20 s\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        agent
    }

    /// Whether something listens on the run root's socket.
    fn answers(&self) -> bool {
        std::os::unix::net::UnixStream::connect(self.run.join("podrun.sock")).is_ok()
    }

    /// The pid in `<root>/agent.lock`.
    fn lock_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.root.join("agent.lock"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Remember every pod ID found on disk.
    fn refresh_ids(&self) {
        let mut ids = self.ids.borrow_mut();
        for d in [
            self.run.join("pods"),
            self.root.join("pods"),
            self.run.join("sandboxes"),
        ] {
            ids.extend(names_in(&d));
        }
    }

    /// What there is to see when a check fails: the pods, the pod
    /// directories, the monitors and the agents' logs.
    fn diag(&self) -> String {
        let mut s = String::new();
        if self.answers() {
            let out = self.cmd().args(["get", "pods", "-A"]).output().unwrap();
            s += &format!("--- get pods -A:\n{}", text(&out));
            for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.len() > 1 {
                    let d = self
                        .cmd()
                        .args(["describe", "pod", cols[1], "-n", cols[0]])
                        .output()
                        .unwrap();
                    s += &format!("--- describe {}/{}:\n{}", cols[0], cols[1], text(&d));
                }
            }
        } else {
            s += "--- no agent answers\n";
        }
        s += &format!("--- run/pods: {:?}\n", names_in(&self.run.join("pods")));
        s += &format!("--- root/pods: {:?}\n", names_in(&self.root.join("pods")));
        s += &format!(
            "--- root/containers: {:?}\n",
            names_in(&self.root.join("containers"))
        );
        s += &format!("--- pod IDs seen: {:?}\n", self.ids.borrow());
        for p in self.own_procs() {
            s += &format!("--- process {} (ppid {}): {}\n", p.pid, p.ppid, p.cmdline());
        }
        for log in self.logs.borrow().iter() {
            if let Ok(t) = std::fs::read_to_string(log) {
                let lines: Vec<&str> = t.lines().collect();
                let tail = &lines[lines.len().saturating_sub(60)..];
                s += &format!("--- {}:\n{}\n", log.display(), tail.join("\n"));
            }
        }
        s
    }

    /// `podrun get pods -A`: its rows (NAMESPACE NAME READY STATUS RESTARTS AGE).
    fn rows(&self) -> Vec<Vec<String>> {
        let out = self.podrun(&["get", "pods", "-A"]);
        assert!(
            out.status.success(),
            "get pods -A: {}\n{}",
            text(&out),
            self.diag()
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    }

    /// Poll `get pods -A` until `done` holds (at most `secs`); the rows.
    fn wait_rows(
        &self,
        what: &str,
        secs: u64,
        done: impl Fn(&[Vec<String>]) -> bool,
    ) -> Vec<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let rows = self.rows();
            if done(&rows) {
                return rows;
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {secs} s for {what}; last rows {rows:?}\n{}",
                    self.diag()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until exactly the pods `pods` (namespace, name) are listed, each Running 1/1.
    fn wait_running(&self, pods: &[(&str, &str)], secs: u64) -> Vec<Vec<String>> {
        let want: BTreeSet<(String, String)> = pods
            .iter()
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect();
        self.wait_rows(&format!("exactly {want:?} Running"), secs, |rows| {
            let got: BTreeSet<(String, String)> =
                rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
            got == want
                && rows.len() == want.len()
                && rows.iter().all(|r| r[2] == "1/1" && r[3] == "Running")
        })
    }

    /// Poll `podrun logs NAME -n NS` (at most 10 s) until it begins with
    /// `want`; assert it does.
    fn wait_log(&self, ns: &str, name: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.podrun(&["logs", name, "-n", ns]);
            if String::from_utf8_lossy(&out.stdout).starts_with(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the log of {ns}/{name} does not begin with {want:?}: {}\n{}",
                text(&out),
                self.diag()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pod directories of the run root (pod IDs).
    fn pod_ids(&self) -> BTreeSet<String> {
        self.refresh_ids();
        names_in(&self.run.join("pods"))
    }

    /// The pod ID of `ns/name` (the one run directory of it).
    fn pod_id(&self, ns: &str, name: &str) -> String {
        let prefix = format!("{ns}-{name}-");
        let ids: Vec<String> = self
            .pod_ids()
            .into_iter()
            .filter(|i| i.starts_with(&prefix))
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "pod dirs of {ns}/{name}: {ids:?}\n{}",
            self.diag()
        );
        ids[0].clone()
    }

    /// The container pids of each pod ID (from the monitors' start records).
    fn container_pids(&self) -> BTreeMap<String, i32> {
        let mut out = BTreeMap::new();
        for id in self.pod_ids() {
            let starts = self.run.join("pods").join(&id).join("starts");
            for f in names_in(&starts) {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(starts.join(&f)).unwrap()).unwrap();
                out.insert(
                    format!("{id}/{}", v["name"].as_str().unwrap()),
                    v["pid"].as_i64().unwrap() as i32,
                );
            }
        }
        out
    }

    /// Monitors of this run root: (pid, pod ID).
    fn monitors(&self) -> Vec<(i32, String)> {
        let pods = self.run.join("pods");
        procs()
            .into_iter()
            .filter(|p| !p.zombie && p.exe_name() == "podrun-monitor")
            .filter_map(|p| {
                let i = p.args.iter().position(|a| a == "--plan")?;
                let plan = Path::new(p.args.get(i + 1)?);
                let id = plan.strip_prefix(&pods).ok()?.iter().next()?;
                (p.args.get(1).map(String::as_str) == Some("--plan"))
                    .then(|| (p.pid, id.to_string_lossy().into_owned()))
            })
            .collect()
    }

    /// Pause processes of this test's pods: (pid, pod name), by the hostname
    /// they were given (the pod's name) or their parent being one of our monitors.
    fn pauses(&self) -> Vec<(i32, String)> {
        let monitors: BTreeSet<i32> = self.monitors().iter().map(|m| m.0).collect();
        let names = self.names.borrow();
        procs()
            .into_iter()
            .filter(|p| !p.zombie && p.exe_name() == "podrun-pause")
            .filter_map(|p| {
                let host = p
                    .args
                    .iter()
                    .position(|a| a == "--uts")
                    .and_then(|i| p.args.get(i + 1).cloned());
                match host {
                    Some(h) if names.contains(&h) => Some((p.pid, h)),
                    _ if monitors.contains(&p.ppid) => Some((p.pid, host.unwrap_or_default())),
                    _ => None,
                }
            })
            .collect()
    }

    /// Every process of this environment: its cmdline names the temp dir, or
    /// it is in a cgroup of one of its pod IDs, or it is a pause process of its pods.
    fn own_procs(&self) -> Vec<Proc> {
        let prefix = self.dir.path().to_string_lossy().into_owned();
        let ids = self.ids.borrow().clone();
        let pauses: BTreeSet<i32> = self.pauses().iter().map(|p| p.0).collect();
        procs()
            .into_iter()
            .filter(|p| !p.zombie && p.pid != std::process::id() as i32)
            .filter(|p| {
                p.cmdline().contains(&prefix)
                    || pauses.contains(&p.pid)
                    || ids.iter().any(|id| p.cgroup.contains(&format!("/{id}/")))
            })
            .collect()
    }

    /// Processes in a cgroup of one of `ids`.
    fn procs_in(&self, ids: &BTreeSet<String>) -> Vec<Proc> {
        procs()
            .into_iter()
            .filter(|p| !p.zombie)
            .filter(|p| ids.iter().any(|id| p.cgroup.contains(&format!("/{id}/"))))
            .collect()
    }

    fn mounts(&self) -> Vec<String> {
        let prefix = self.dir.path().to_string_lossy().into_owned();
        support::mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&prefix))
            .collect()
    }

    /// Exactly the pods `pods` (namespace, name) exist, each once: one run
    /// and one data directory, one monitor, one pause process, containers in
    /// its cgroup only; of every other pod ID seen nothing is left (no
    /// directory, container filesystem, mount, cgroup or process).
    fn assert_exactly(&self, pods: &[(&str, &str)]) {
        self.refresh_ids();
        let ids = self.pod_ids();
        let diag = || self.diag();
        let mut current = BTreeSet::new();
        for (ns, name) in pods {
            current.insert(self.pod_id(ns, name));
        }
        assert_eq!(ids, current, "run/pods\n{}", diag());
        assert_eq!(
            names_in(&self.root.join("pods")),
            current,
            "root/pods\n{}",
            diag()
        );
        for c in names_in(&self.root.join("containers")) {
            assert!(
                current.iter().any(|id| c.starts_with(&format!("{id}-"))),
                "root/containers/{c} is of no current pod\n{}",
                diag()
            );
        }
        let sandboxes = names_in(&self.run.join("sandboxes"));
        assert!(
            sandboxes.is_subset(&current),
            "sandboxes {sandboxes:?}\n{}",
            diag()
        );
        let monitors = self.monitors();
        let monitor_ids: Vec<&String> = monitors.iter().map(|m| &m.1).collect();
        assert_eq!(
            monitors.len(),
            pods.len(),
            "monitors of this run root: {monitors:?}\n{}",
            diag()
        );
        assert_eq!(
            monitor_ids
                .iter()
                .cloned()
                .cloned()
                .collect::<BTreeSet<_>>(),
            current,
            "monitors {monitors:?}\n{}",
            diag()
        );
        let pauses = self.pauses();
        assert_eq!(
            pauses.len(),
            pods.len(),
            "pause processes {pauses:?}\n{}",
            diag()
        );
        for (_, name) in pods {
            // The pause process carries the pod's name (its hostname), not its namespace.
            let want = pods.iter().filter(|p| p.1 == *name).count();
            assert_eq!(
                pauses.iter().filter(|p| &p.1 == name).count(),
                want,
                "pause processes of {name}: {pauses:?}\n{}",
                diag()
            );
        }
        // Each pod's containers run, in its own cgroup, as its start records say.
        let pids = self.container_pids();
        for id in &current {
            let procs = self.procs_in(&BTreeSet::from([id.clone()]));
            assert!(
                !procs.is_empty(),
                "pod {id} is listed but no container process runs in its cgroup\n{}",
                diag()
            );
            let started: Vec<i32> = pids
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{id}/")))
                .map(|(_, p)| *p)
                .collect();
            assert!(
                !started.is_empty() && started.iter().all(|p| alive(*p)),
                "pod {id}: its start records {started:?} name no running container\n{}",
                diag()
            );
        }
        let vanished: BTreeSet<String> = self.ids.borrow().difference(&current).cloned().collect();
        let left = self.procs_in(&vanished);
        assert!(
            left.is_empty(),
            "processes of vanished pods {vanished:?}: {left:?}\n{}",
            diag()
        );
        let cg = cgroups_of(&vanished);
        assert!(
            cg.is_empty(),
            "cgroups of vanished pods: {cg:?}\n{}",
            diag()
        );
        for m in self.mounts() {
            assert!(
                current.iter().any(|id| m.contains(id.as_str())),
                "mount {m} is of no current pod\n{}",
                diag()
            );
        }
    }

    /// Nothing of any pod is left.
    fn assert_nothing_left(&self) {
        self.assert_exactly(&[]);
        let mut left = Vec::new();
        for sub in ["root/pods", "root/containers", "run/pods", "run/sandboxes"] {
            let n = names_in(&self.dir.path().join(sub));
            if !n.is_empty() {
                left.push(format!("{sub}: {n:?}"));
            }
        }
        assert!(left.is_empty(), "{left:?}\n{}", self.diag());
        let mounts = self.mounts();
        assert!(
            mounts.is_empty(),
            "mounts left: {mounts:?}\n{}",
            self.diag()
        );
        let ids = self.ids.borrow().clone();
        let cg = cgroups_of(&ids);
        assert!(cg.is_empty(), "cgroups left: {cg:?}\n{}", self.diag());
        let procs: Vec<String> = self
            .own_procs()
            .into_iter()
            .filter(|p| !p.args.iter().any(|a| a == "serve"))
            .map(|p| format!("{} {}", p.pid, p.cmdline()))
            .collect();
        assert!(
            procs.is_empty(),
            "processes left: {procs:?}\n{}",
            self.diag()
        );
    }

    /// SIGKILL every agent of this root.
    fn kill_agents(&self) {
        let prefix = self.dir.path().to_string_lossy().into_owned();
        let mut pids: BTreeSet<i32> = procs()
            .into_iter()
            .filter(|p| {
                !p.zombie && p.args.iter().any(|a| a == "serve") && p.cmdline().contains(&prefix)
            })
            .map(|p| p.pid)
            .collect();
        pids.extend(self.lock_pid().filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&prefix))
                .unwrap_or(false)
        }));
        for pid in &pids {
            kill(*pid, libc::SIGKILL);
        }
        for pid in &pids {
            wait_gone(*pid, Duration::from_secs(5));
        }
    }

    /// What a reboot does: every process of the pods is gone, the run root
    /// (a tmpfs) is empty, no mount and no cgroup of the pods exists; the
    /// root's directories stay.
    fn reboot(&self) {
        self.kill_agents();
        self.refresh_ids();
        let ps = self.own_procs();
        for p in &ps {
            kill(p.pid, libc::SIGKILL);
        }
        for p in &ps {
            assert!(
                wait_gone(p.pid, Duration::from_secs(10)),
                "{p:?} did not die"
            );
        }
        support::unmount_below(self.dir.path());
        for e in std::fs::read_dir(&self.run).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
        let ids = self.ids.borrow().clone();
        remove_cgroups(cgroups_of(&ids));
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_agents();
        self.refresh_ids();
        // Twice: a monitor killed first may have started nothing new, but be sure.
        for _ in 0..2 {
            let ps = self.own_procs();
            for p in &ps {
                kill(p.pid, libc::SIGKILL);
            }
            for p in &ps {
                wait_gone(p.pid, Duration::from_secs(5));
            }
        }
        for id in names_in(&self.run.join("pods")) {
            let plan = self.run.join("pods").join(&id).join("plan.json");
            if plan.exists() {
                let _ = Command::new(MONITOR)
                    .arg("cleanup")
                    .arg("--plan")
                    .arg(&plan)
                    .stdin(Stdio::null())
                    .output();
            }
        }
        support::unmount_below(self.dir.path());
        let ids = self.ids.borrow().clone();
        remove_cgroups(cgroups_of(&ids));
    }
}

/// Run `cmd` to its end and collect its output; a command still running
/// after `secs` is killed and fails the test (nothing here may hang the suite).
fn output_within(cmd: &mut Command, secs: u64) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let reader = |pipe: Option<std::process::ChildStdout>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut p) = pipe {
                let _ = std::io::Read::read_to_end(&mut p, &mut v);
            }
            v
        })
    };
    let out_thread = reader(stdout);
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut p) = stderr {
            let _ = std::io::Read::read_to_end(&mut p, &mut v);
        }
        v
    });
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(status) => Output {
            status: status.unwrap(),
            stdout: out_thread.join().unwrap(),
            stderr: err_thread.join().unwrap(),
        },
        Err(_) => {
            kill(pid as i32, libc::SIGKILL);
            panic!("{cmd:?} did not end within {secs} s");
        }
    }
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(String::from).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn apply_starts_the_agent_and_the_pods() {
    // The agent started by apply is orphaned when apply exits: be its
    // reaper, to see how it exits.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    struct Unreap;
    impl Drop for Unreap {
        fn drop(&mut self) {
            // SAFETY: as above.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) };
        }
    }
    let _unreap = Unreap;
    let env = Env::new("apply");
    let name = env.name("ag1-web");
    let r = registry();
    let manifest = |b_msg: &str| {
        format!(
            r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: ag1-cfg, namespace: ag1-a}}
data: {{mode: fast, level: "3"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: ag1-a}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; echo mode=$mode level=$level; while true; do sleep 0.1; done"]
    envFrom:
    - configMapRef: {{name: ag1-cfg}}
---
{}"#,
            pod("ag1-b", &name, b_msg)
        )
    };
    let file = env.write_manifest(&manifest("first"));
    let f = file.to_str().unwrap();
    let out = env.podrun(&["apply", "-f", f]);
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "podrun: started the agent for {}",
            env.root.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        sorted_lines(&String::from_utf8_lossy(&out.stdout)),
        [
            "configmap/ag1-cfg created",
            "pod/ag1-web created",
            "pod/ag1-web created"
        ],
        "{}",
        text(&out)
    );
    let agent_pid = env.lock_pid().expect("the agent's pid in agent.lock");
    assert!(
        alive(agent_pid),
        "agent {agent_pid} is not running\n{}",
        env.diag()
    );
    assert!(
        stderr.contains(&format!("(pid {agent_pid},")),
        "the message names another pid than agent.lock's {agent_pid}: {stderr}"
    );
    let rows = env.wait_running(&[("ag1-a", &name), ("ag1-b", &name)], 15);
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(
            &row[1..5],
            [name.as_str(), "1/1", "Running", "0"],
            "{rows:?}"
        );
    }
    let log_of = |ns: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = env.podrun(&["logs", &name, "-n", ns]);
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            if s.contains("msg=") || s.contains("mode=") || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(log_of("ag1-a"), "mode=fast level=3\n", "{}", env.diag());
    assert_eq!(log_of("ag1-b"), "msg=first\n", "{}", env.diag());
    env.assert_exactly(&[("ag1-a", &name), ("ag1-b", &name)]);

    // The same again: unchanged, nothing restarted.
    let a_id = env.pod_id("ag1-a", &name);
    let b_id = env.pod_id("ag1-b", &name);
    let pids = env.container_pids();
    let out = env.ok(&["apply", "-f", f]);
    assert_eq!(
        sorted_lines(&out),
        [
            "configmap/ag1-cfg unchanged",
            "pod/ag1-web unchanged",
            "pod/ag1-web unchanged"
        ]
    );
    assert_eq!(env.container_pids(), pids, "{}", env.diag());

    // SIGTERM stops the agent (exit 0) and nothing of the pods.
    assert_eq!(env.lock_pid(), Some(agent_pid));
    let pids = env.container_pids();
    let monitors = env.monitors();
    kill(agent_pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let mut status = 0;
        // SAFETY: waitpid on the one pid, which this process reaps (subreaper).
        let rc = unsafe { libc::waitpid(agent_pid, &mut status, libc::WNOHANG) };
        if rc == agent_pid {
            break Some(status);
        }
        if rc < 0 && !alive(agent_pid) {
            break None;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not stop on SIGTERM\n{}",
            env.diag()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(status) = status {
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the agent's wait status after SIGTERM: {status:#x}\n{}",
            env.diag()
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    for (c, pid) in &pids {
        assert!(
            alive(*pid),
            "container {c} (pid {pid}) died with the agent\n{}",
            env.diag()
        );
    }
    assert_eq!(env.monitors(), monitors, "{}", env.diag());
    assert_eq!(env.container_pids(), pids);

    // One pod's command changed (no agent runs: apply starts one again): that
    // pod is made again, under a new ID; the other is left alone.
    std::fs::write(&file, manifest("second")).unwrap();
    let out = env.podrun(&["apply", "-f", f]);
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("podrun: started the agent for"),
        "{}",
        text(&out)
    );
    assert_eq!(
        sorted_lines(&String::from_utf8_lossy(&out.stdout)),
        [
            "configmap/ag1-cfg unchanged",
            "pod/ag1-web configured",
            "pod/ag1-web unchanged"
        ],
        "{}",
        text(&out)
    );
    env.wait_running(&[("ag1-a", &name), ("ag1-b", &name)], 15);
    assert_eq!(
        env.pod_id("ag1-a", &name),
        a_id,
        "the unchanged pod was replaced"
    );
    let b_new = env.pod_id("ag1-b", &name);
    assert_ne!(b_new, b_id, "the changed pod kept its ID");
    assert_eq!(log_of("ag1-b"), "msg=second\n", "{}", env.diag());
    assert!(!env.run.join("pods").join(&b_id).exists());
    assert!(!env.root.join("pods").join(&b_id).exists());
    assert!(!env
        .root
        .join("containers")
        .join(format!("{b_id}-app"))
        .exists());
    env.assert_exactly(&[("ag1-a", &name), ("ag1-b", &name)]);
    assert_eq!(
        env.container_pids().get(&format!("{a_id}/app")),
        pids.get(&format!("{a_id}/app")),
        "the unchanged pod's container was restarted\n{}",
        env.diag()
    );

    // delete -f removes everything.
    let out = env.podrun(&["delete", "-f", f]);
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    assert_eq!(
        sorted_lines(&String::from_utf8_lossy(&out.stdout)),
        [
            "configmap \"ag1-cfg\" deleted",
            "pod \"ag1-web\" deleted",
            "pod \"ag1-web\" deleted"
        ],
        "{}",
        text(&out)
    );
    let out = env.podrun(&["get", "pods", "-A"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{}", text(&out));
    env.assert_nothing_left();
}

#[test]
fn a_second_agent_is_refused_and_names_the_holder() {
    let env = Env::new("second");
    let mut first = env.serve(None, &[], &[]);
    assert!(env.answers(), "{}", first.log());
    let second = output_within(env.cmd().arg("serve"), 20);
    assert!(!second.status.success(), "{}", text(&second));
    let want = format!(
        "another agent (pid {}) serves {}: it holds {}",
        first.pid(),
        env.root.display(),
        env.root.join("agent.lock").display()
    );
    assert!(
        String::from_utf8_lossy(&second.stderr).contains(&want),
        "want {want:?}\n{}",
        text(&second)
    );
    assert_eq!(
        env.lock_pid(),
        Some(first.pid()),
        "agent.lock was rewritten"
    );
    assert!(first.child.try_wait().unwrap().is_none(), "{}", first.log());
    assert!(
        env.answers(),
        "the first agent's socket is gone\n{}",
        first.log()
    );
    let out = env.podrun(&["get", "pods"]);
    assert!(out.status.success(), "{}", text(&out));
    first.kill();
}

/// Connect to `socket` as uid 65534 in a forked child (only system calls
/// after the fork), send `request` and return what came back (or the errno
/// of the connect).
fn raw_call_as_nobody(socket: &Path, request: &[u8]) -> Result<String, i32> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: plain data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (i, b) in socket.as_os_str().as_bytes().iter().enumerate() {
        addr.sun_path[i] = *b as libc::c_char;
    }
    let mut pipe = [0; 2];
    // SAFETY: pipe writes two descriptors.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    // SAFETY: the child makes system calls only, then _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: system calls on our own descriptors and stack buffers.
        unsafe {
            libc::close(pipe[0]);
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                libc::_exit(100);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if libc::connect(
                fd,
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            ) != 0
            {
                let errno = *libc::__errno_location();
                libc::_exit(errno.clamp(1, 99));
            }
            libc::write(fd, request.as_ptr().cast(), request.len());
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                libc::write(pipe[1], buf.as_ptr().cast(), n as usize);
            }
            libc::_exit(0);
        }
    }
    // SAFETY: our descriptors.
    unsafe { libc::close(pipe[1]) };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into a stack buffer.
        let n = unsafe { libc::read(pipe[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    let mut status = 0;
    // SAFETY: our child.
    unsafe {
        libc::close(pipe[0]);
        libc::waitpid(pid, &mut status, 0);
    }
    let code = libc::WEXITSTATUS(status);
    if code == 0 {
        Ok(String::from_utf8_lossy(&out).into_owned())
    } else {
        Err(code)
    }
}

#[test]
fn a_non_root_client_is_refused() {
    use std::os::unix::process::CommandExt;
    let env = Env::new("nonroot");
    // The temp dir must let uid 65534 reach the socket: then only the socket
    // (its mode, and the agent's peer check) keeps it out.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut agent = env.serve(None, &[], &[]);
    for p in [env.root.as_path(), env.run.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The binary must be executable by that user.
    for a in Path::new(PODRUN).ancestors() {
        let mode = std::fs::metadata(a).unwrap().permissions().mode();
        assert!(
            mode & 0o001 != 0,
            "{} is not searchable by others",
            a.display()
        );
    }
    let sock = env.run.join("podrun.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket's mode");

    // The socket itself: connect() is refused by its mode.
    let ping = b"{\"op\":\"ping\"}\n";
    assert_eq!(
        raw_call_as_nobody(&sock, ping),
        Err(libc::EACCES),
        "a non-root connect to the 0600 socket"
    );

    // The CLI, as that user, is told so (and starts no agent of its own).
    let mut cmd = env.cmd();
    cmd.args(["get", "pods"]).uid(65534).gid(65534);
    let out = output_within(&mut cmd, 60);
    let cli_refused = (out.status.success(), text(&out));

    // Were the socket's mode wrong, the agent refuses the peer by its uid.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let answer = raw_call_as_nobody(&sock, ping).expect("connect to a 0666 socket");
    assert!(
        answer.contains("\"result\":\"error\"") && answer.contains("permission denied"),
        "the agent's answer to uid 65534: {answer:?}\n{}",
        agent.log()
    );
    let list = raw_call_as_nobody(&sock, b"{\"op\":\"get\",\"namespace\":null}\n").unwrap();
    assert!(!list.contains("\"pods\""), "uid 65534 got the pods: {list}");
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        env.lock_pid(),
        Some(agent.pid()),
        "another agent was started"
    );
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());

    assert!(
        !cli_refused.0,
        "a non-root get succeeded: {}",
        cli_refused.1
    );
    assert!(
        cli_refused.1.contains("permission denied"),
        "podrun get pods as uid 65534: want a message with \"permission denied\": {}\n{}",
        cli_refused.1,
        agent.log()
    );
    agent.kill();
}

#[test]
fn a_damaged_or_newer_database_is_reported_and_left_alone() {
    let env = Env::new("db");
    std::fs::create_dir_all(&env.root).unwrap();
    let db = env.root.join("state.db");
    let serve = |what: &str| -> Output {
        let mut child = env
            .cmd()
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("serve with a {what} database kept running: {}", text(&out));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };

    let junk: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&db, &junk).unwrap();
    let out = serve("damaged");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("damaged"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        junk,
        "the damaged database was changed"
    );
    assert!(!env.answers());

    std::fs::remove_file(&db).unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE future (x TEXT); INSERT INTO future VALUES ('keep me');")
            .unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let out = serve("newer");
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("newer") && stderr.contains("99"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the newer database was changed"
    );
    assert!(!env.answers());
    // Neither does a CLI command start an agent that would change it.
    let out = env.podrun(&["get", "pods"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the newer database was changed"
    );
}

#[test]
fn an_invalid_document_applies_nothing() {
    let env = Env::new("invalid");
    let good = env.name("ag5-good");
    let bad = env.name("ag5-bad");
    let mut agent = env.serve(None, &[], &[]);
    let bad_port = pod("default", &bad, "x").replace(
        "    env:\n",
        "    ports:\n    - containerPort: 0\n    env:\n",
    );
    let out = env.apply(&format!("{}---\n{bad_port}", pod("default", &good, "x")));
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.containers[0].ports[0].containerPort")
            && stderr.contains("nothing was applied"),
        "{}",
        text(&out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{}", text(&out));

    let bad_policy =
        pod("default", &bad, "x").replace("spec:\n", "spec:\n  restartPolicy: Sometimes\n");
    let out = env.apply(&format!("{}---\n{bad_policy}", pod("default", &good, "x")));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.restartPolicy"),
        "{}",
        text(&out)
    );

    let out = env.podrun(&["get", "pods", "-A"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{}", text(&out));
    assert!(names_in(&env.run.join("pods")).is_empty());
    assert!(names_in(&env.root.join("pods")).is_empty());
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    env.assert_nothing_left();
    agent.kill();
}

#[test]
fn pods_outlive_a_killed_agent() {
    let env = Env::new("outlive");
    let a = env.name("ag6-a");
    let b = env.name("ag6-b");
    let mut agent = env.serve(None, &[], &[]);
    let out = env.apply(&format!(
        "{}---\n{}",
        pod("default", &a, "a"),
        pod("default", &b, "b")
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    let before = env.wait_running(&[("default", &a), ("default", &b)], 15);
    let ids = env.pod_ids();
    let pids = env.container_pids();
    assert_eq!(pids.len(), 2, "{pids:?}");

    agent.kill();
    std::thread::sleep(Duration::from_millis(300));
    for (c, pid) in &pids {
        assert!(
            alive(*pid),
            "container {c} (pid {pid}) died with the agent\n{}",
            env.diag()
        );
    }
    assert_eq!(env.monitors().len(), 2, "{}", env.diag());

    let mut agent = env.serve(None, &[], &[]);
    let after = env.wait_running(&[("default", &a), ("default", &b)], 15);
    // Let it look at the pods a few times.
    std::thread::sleep(Duration::from_millis(800));
    let after2 = env.rows();
    assert_eq!(env.pod_ids(), ids, "{}", env.diag());
    assert_eq!(
        env.container_pids(),
        pids,
        "containers were restarted\n{}",
        env.diag()
    );
    for (x, y) in before
        .iter()
        .zip(after.iter())
        .chain(before.iter().zip(after2.iter()))
    {
        assert_eq!(
            x[..5],
            y[..5],
            "before {before:?}\nafter {after:?} {after2:?}"
        );
    }
    env.assert_exactly(&[("default", &a), ("default", &b)]);
    env.ok(&["delete", "pod", &a, &b]);
    env.assert_nothing_left();
    agent.kill();
}

/// Kill the agent at `point` of one pod's creation, start a fresh one: the
/// pod ends Running, once, and nothing of an earlier attempt is left.
fn crash_during_creation(point: &str) {
    let env = Env::new(&point.replace(':', "-"));
    let name = env.name("ag7-pod");
    let mut agent = env.serve(Some(point), &[], &[]);
    let out = env.apply(&pod("default", &name, "hello"));
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(
        !out.status.success(),
        "apply succeeded although the agent died at {point}: {}\n{}",
        text(&out),
        env.diag()
    );
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "the agent did not kill itself at {point}\n{}\n{}",
        text(&out),
        env.diag()
    );
    assert!(env.lock_pid().is_some_and(|p| !alive(p)));
    env.refresh_ids();
    let attempts = env.ids.borrow().clone();

    let mut fresh = env.serve(None, &[], &[]);
    env.wait_running(&[("default", &name)], 30);
    // Give a duplicate a moment to show.
    std::thread::sleep(Duration::from_millis(500));
    env.wait_running(&[("default", &name)], 5);
    env.assert_exactly(&[("default", &name)]);
    let id = env.pod_id("default", &name);
    for old in attempts.iter().filter(|o| **o != id) {
        assert!(
            !env.run.join("pods").join(old).exists() && !env.root.join("pods").join(old).exists()
        );
    }
    env.wait_log("default", &name, "msg=hello");
    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
    fresh.kill();
}

/// Kill the agent at `point` of a running pod's deletion, start a fresh one:
/// it finishes the deletion and nothing is left.
fn crash_during_deletion(point: &str) {
    let env = Env::new(&point.replace(':', "-"));
    let name = env.name("ag7-del");
    let keep = env.name("ag7-keep");
    let mut agent = env.serve(Some(point), &[], &[]);
    let out = env.apply(&format!(
        "{}---\n{}",
        pod("default", &name, "x"),
        pod("default", &keep, "k")
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_running(&[("default", &name), ("default", &keep)], 15);
    let keep_pids: Vec<i32> = env
        .container_pids()
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("default-{keep}-")))
        .map(|(_, p)| p)
        .collect();
    let out = env.podrun(&["delete", "pod", &name]);
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(
        !out.status.success(),
        "delete succeeded although the agent died at {point}: {}",
        text(&out)
    );
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "the agent did not kill itself at {point}\n{}\n{}",
        text(&out),
        env.diag()
    );
    let mut fresh = env.serve(None, &[], &[]);
    env.wait_running(&[("default", &keep)], 30);
    std::thread::sleep(Duration::from_millis(500));
    env.wait_running(&[("default", &keep)], 5);
    env.assert_exactly(&[("default", &keep)]);
    for p in &keep_pids {
        assert!(
            alive(*p),
            "the other pod's container {p} was restarted\n{}",
            env.diag()
        );
    }
    env.ok(&["delete", "pod", &keep]);
    env.assert_nothing_left();
    fresh.kill();
}

#[test]
fn killed_at_apply_committed_ends_right() {
    crash_during_creation("apply:committed");
}

#[test]
fn killed_at_create_cleaned_ends_right() {
    crash_during_creation("create:cleaned");
}

#[test]
fn killed_at_create_registered_ends_right() {
    crash_during_creation("create:registered");
}

#[test]
fn killed_at_create_prepared_ends_right() {
    crash_during_creation("create:prepared");
}

#[test]
fn killed_at_create_monitor_ends_right() {
    crash_during_creation("create:monitor");
}

#[test]
fn killed_at_create_started_ends_right() {
    crash_during_creation("create:started");
}

#[test]
fn killed_at_delete_marked_ends_right() {
    crash_during_deletion("delete:marked");
}

#[test]
fn killed_at_remove_stopped_ends_right() {
    crash_during_deletion("remove:stopped");
}

#[test]
fn killed_at_delete_removed_ends_right() {
    crash_during_deletion("delete:removed");
}

#[test]
fn killed_at_replace_removed_ends_right() {
    let env = Env::new("replace-removed");
    let name = env.name("ag7-rep");
    let mut agent = env.serve(Some("replace:removed"), &[], &[]);
    let out = env.apply(&pod("default", &name, "old"));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_running(&[("default", &name)], 15);
    let old = env.pod_id("default", &name);
    let out = env.apply(&pod("default", &name, "new"));
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "{}",
        env.diag()
    );
    let mut fresh = env.serve(None, &[], &[]);
    env.wait_running(&[("default", &name)], 30);
    std::thread::sleep(Duration::from_millis(500));
    env.assert_exactly(&[("default", &name)]);
    assert_ne!(env.pod_id("default", &name), old);
    env.wait_log("default", &name, "msg=new");
    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
    fresh.kill();
}

#[test]
fn killed_at_recreate_removed_ends_right() {
    let env = Env::new("recreate-removed");
    let name = env.name("ag7-rec");
    let mut agent = env.serve(Some("recreate:removed"), &[], &[]);
    let out = env.apply(&pod("default", &name, "again"));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_running(&[("default", &name)], 15);
    let old = env.pod_id("default", &name);
    let monitors = env.monitors();
    assert_eq!(monitors.len(), 1);
    kill(monitors[0].0, libc::SIGKILL);
    let status = agent.wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "the agent did not reach recreate:removed after the monitor was killed\n{}",
        env.diag()
    );
    let mut fresh = env.serve(None, &[], &[]);
    env.wait_running(&[("default", &name)], 30);
    std::thread::sleep(Duration::from_millis(500));
    env.assert_exactly(&[("default", &name)]);
    assert_ne!(env.pod_id("default", &name), old);
    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
    fresh.kill();
}

#[test]
fn killed_in_the_middle_of_a_batch_ends_with_the_right_pods() {
    let env = Env::new("batch");
    let new: Vec<String> = ["ag7-n1", "ag7-n2", "ag7-n3"]
        .iter()
        .map(|n| env.name(n))
        .collect();
    let old: Vec<String> = ["ag7-o1", "ag7-o2"].iter().map(|n| env.name(n)).collect();
    // The old pods are made by an agent without the crash point.
    let mut setup = env.serve(None, &[], &[]);
    let out = env.apply(&format!(
        "{}---\n{}",
        pod("default", &old[0], "o"),
        pod("default", &old[1], "o")
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_running(&[("default", &old[0]), ("default", &old[1])], 15);
    setup.kill();

    let mut agent = env.serve(Some("create:prepared"), &[], &[]);
    let delete = env
        .cmd()
        .args(["delete", "pod", &old[0], &old[1]])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let yaml: Vec<String> = new.iter().map(|n| pod("default", n, "n")).collect();
    let out = env.apply(&yaml.join("---\n"));
    let deleted = delete.wait_with_output().unwrap();
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "{}",
        env.diag()
    );

    let mut fresh = env.serve(None, &[], &[]);
    if !deleted.status.success() {
        // The deletion may not have reached the agent before it died: asking
        // again is what a user does (a pod it finished already is "not found":
        // what counts is the set of pods that ends up running, checked below).
        env.podrun(&["delete", "pod", &old[0], &old[1]]);
    }
    let want: Vec<(&str, &str)> = new.iter().map(|n| ("default", n.as_str())).collect();
    env.wait_running(&want, 30);
    std::thread::sleep(Duration::from_millis(500));
    env.wait_running(&want, 5);
    env.assert_exactly(&want);
    let mut args = vec!["delete", "pod"];
    args.extend(new.iter().map(String::as_str));
    env.ok(&args);
    env.assert_nothing_left();
    fresh.kill();
}

#[test]
fn after_a_reboot_the_agent_recreates_its_pods() {
    let env = Env::new("reboot");
    let name = env.name("ag8-pod");
    let mut agent = env.serve(None, &[], &[]);
    let out = env.apply(&pod("default", &name, "boot"));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_running(&[("default", &name)], 15);
    let old = env.pod_id("default", &name);
    agent.kill();
    env.reboot();
    assert!(names_in(&env.run).is_empty());
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
    assert!(env.monitors().is_empty() && env.pauses().is_empty());

    let mut fresh = env.serve(None, &[], &[]);
    env.wait_running(&[("default", &name)], 30);
    std::thread::sleep(Duration::from_millis(500));
    env.wait_running(&[("default", &name)], 5);
    env.assert_exactly(&[("default", &name)]);
    assert_ne!(env.pod_id("default", &name), old);
    assert!(!env.root.join("pods").join(&old).exists(), "{}", env.diag());
    env.wait_log("default", &name, "msg=boot");
    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
    fresh.kill();
}

#[test]
fn static_pods_follow_their_directory() {
    let env = Env::new("static");
    let name = env.name("ag9-static");
    let other = env.name("ag9-other");
    let dir = env.dir.path().join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let mut agent = env.serve(
        None,
        &["--manifests", dir.to_str().unwrap()],
        &[("PODRUN_MANIFESTS_INTERVAL_MS", "200")],
    );
    let first = dir.join("web.yaml");
    std::fs::write(&first, pod("default", &name, "one")).unwrap();
    env.wait_running(&[("default", &name)], 20);
    env.wait_log("default", &name, "msg=one");
    env.assert_exactly(&[("default", &name)]);
    let id = env.pod_id("default", &name);
    let pids = env.container_pids();

    // podrun apply may not take a static pod's name.
    let out = env.apply(&pod("default", &name, "three"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("static pod manifest"),
        "{}",
        text(&out)
    );
    assert_eq!(env.container_pids(), pids, "{}", env.diag());

    // An invalid file changes nothing; the agent goes on.
    std::fs::write(
        dir.join("bad.yaml"),
        pod("default", &other, "x").replace("spec:\n", "spec:\n  restartPolicy: Sometimes\n"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    let rows = env.wait_running(&[("default", &name)], 5);
    assert_eq!(rows.len(), 1);
    assert_eq!(env.container_pids(), pids, "{}", env.diag());
    assert!(
        agent.log().contains("bad.yaml"),
        "the invalid file is not reported: {}",
        agent.log()
    );
    std::fs::remove_file(dir.join("bad.yaml")).unwrap();

    // Removed: the pod is gone.
    std::fs::remove_file(&first).unwrap();
    env.wait_rows("the static pod gone", 20, |rows| rows.is_empty());
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());

    // Added again, then changed: replaced under a new ID, running the new command.
    std::fs::write(&first, pod("default", &name, "two")).unwrap();
    env.wait_running(&[("default", &name)], 20);
    env.wait_log("default", &name, "msg=two");
    let id2 = env.pod_id("default", &name);
    assert_ne!(id2, id);
    std::fs::write(&first, pod("default", &name, "three")).unwrap();
    env.wait_rows("the static pod replaced", 20, |_| {
        names_in(&env.run.join("pods"))
            .iter()
            .any(|i| i.starts_with(&format!("default-{name}-")) && *i != id2)
    });
    env.wait_running(&[("default", &name)], 20);
    env.wait_log("default", &name, "msg=three");
    env.assert_exactly(&[("default", &name)]);
    assert!(!env.root.join("pods").join(&id2).exists(), "{}", env.diag());

    std::fs::remove_file(&first).unwrap();
    env.wait_rows("the static pod gone", 20, |rows| rows.is_empty());
    env.assert_nothing_left();
    agent.kill();
}

#[test]
fn a_pod_that_cannot_be_pulled_stays_stored_and_is_retried() {
    let env = Env::new("nopull");
    let bad = env.name("ag10-nopull");
    let good = env.name("ag10-good");
    let mut agent = env.serve(None, &[], &[]);
    let r = registry();
    let missing = pod("default", &bad, "x").replace(
        &format!("{r}/busybox:latest"),
        &format!("{r}/no-such-image:1"),
    );
    let out = env.apply(&format!("{missing}---\n{}", pod("default", &good, "g")));
    assert_eq!(out.status.code(), Some(1), "{}\n{}", text(&out), env.diag());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "pod/{bad}: container app: pull {r}/no-such-image:1"
        )),
        "{}",
        text(&out)
    );
    assert_eq!(
        sorted_lines(&String::from_utf8_lossy(&out.stdout)),
        [format!("pod/{good} created"), format!("pod/{bad} created")],
        "{}",
        text(&out)
    );
    // The good pod runs; the bad one is stored, waiting, and tried again.
    env.wait_rows("the good pod Running, the other ErrImagePull", 15, |rows| {
        rows.len() == 2
            && rows
                .iter()
                .any(|r| r[1] == good && r[2] == "1/1" && r[3] == "Running")
            && rows.iter().any(|r| {
                r[1] == bad
                    && r[2] == "0/1"
                    && (r[3] == "ErrImagePull" || r[3] == "ImagePullBackOff")
            })
    });
    env.wait_rows("ImagePullBackOff after a retry", 15, |rows| {
        rows.iter()
            .any(|r| r[1] == bad && r[3] == "ImagePullBackOff")
    });
    assert!(
        !names_in(&env.run.join("pods"))
            .iter()
            .any(|i| i.starts_with(&format!("default-{bad}-"))),
        "a pod that could not be pulled left its directory\n{}",
        env.diag()
    );
    env.assert_exactly(&[("default", &good)]);
    env.ok(&["delete", "pod", &bad, &good]);
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}
