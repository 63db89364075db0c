//! The environment the node agent's end-to-end tests share (tests/agent.rs
//! and tests/lifecycle.rs include this file as a module of their own): roots
//! of their own below a temporary directory, agents started there with
//! `podrun serve`, the processes, directories, mounts and cgroups of their
//! pods, checks that exactly some pods (or none) are left, and a drop guard
//! that kills and removes whatever a test left.
//!
//! Not in `support/mod.rs`: the other test files include that one and use
//! none of this.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support;

pub fn registry() -> String {
    std::env::var("PODRUN_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

pub const PODRUN: &str = env!("CARGO_BIN_EXE_podrun");
pub const MONITOR: &str = env!("CARGO_BIN_EXE_podrun-monitor");

// ---------------------------------------------------------------------------
// Processes.

/// A process seen in /proc.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub args: Vec<String>,
    pub cgroup: String,
    pub zombie: bool,
}

impl Proc {
    pub fn exe_name(&self) -> &str {
        self.args
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .unwrap_or("")
    }

    pub fn cmdline(&self) -> String {
        self.args.join(" ")
    }
}

pub fn procs() -> Vec<Proc> {
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

pub fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    !stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

pub fn kill(pid: i32, signal: i32) {
    // SAFETY: kill sends a signal.
    unsafe { libc::kill(pid, signal) };
}

/// Wait (at most `timeout`) until `pid` is gone or a zombie.
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
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
pub fn cgroups_of(ids: &BTreeSet<String>) -> Vec<PathBuf> {
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
pub fn remove_cgroups(mut dirs: Vec<PathBuf>) {
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

pub fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run `cmd` to its end and collect its output; a command still running
/// after `secs` is killed and fails the test (nothing here may hang the suite).
pub fn output_within(cmd: &mut Command, secs: u64) -> Output {
    fn read_all(
        pipe: Option<impl std::io::Read + Send + 'static>,
    ) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut v);
            }
            v
        })
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let out_thread = read_all(child.stdout.take());
    let err_thread = read_all(child.stderr.take());
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

// ---------------------------------------------------------------------------
// The environment of one test.

/// What differs between the test files that share [`Env`].
pub struct Suite {
    /// Names the temporary directories: `podrun-{name}-{tag}-`.
    pub name: &'static str,
    /// The test-only knobs every `podrun` command gets (they matter to the
    /// agent only): its sync interval and back-off.
    pub knobs: &'static [(&'static str, &'static str)],
    /// Whether every test keeps an agent answering from [`Env::serve`] to
    /// its end. Then an agent that exits before it answers fails the test,
    /// and [`Env::assert_nothing_left`] also asks the agent that it lists no
    /// pod (where agents are killed on purpose, that would start one).
    pub agent_stays_up: bool,
}

/// An agent this test started with `podrun serve`.
pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Agent {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL it and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Env {
    pub suite: &'static Suite,
    /// The pods' network (dropped before `dir`, whose root holds its leases).
    pub network: support::TestNetwork,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub run: PathBuf,
    /// Every pod ID seen of this environment's pods.
    pub ids: std::cell::RefCell<BTreeSet<String>>,
    /// The names of the pods this test uses (their pause processes carry them).
    pub names: std::cell::RefCell<BTreeSet<String>>,
    /// Agent logs to show on failure (first that of an agent a client started).
    pub logs: std::cell::RefCell<Vec<PathBuf>>,
    pub files: std::cell::Cell<usize>,
    /// Held for the test's life, dropped after its cleanup (the last field):
    /// the tests of one file run one at a time, since they recognise their
    /// pods' pause processes by hostname, machine-wide.
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Env {
    pub fn new(suite: &'static Suite, tag: &str) -> Self {
        // A test that failed poisons the lock; the next one still runs.
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::Builder::new()
            .prefix(&format!("podrun-{}-{tag}-", suite.name))
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        let run = dir.path().join("run");
        Env {
            suite,
            network: support::TestNetwork::new(dir.path(), &root),
            logs: std::cell::RefCell::new(vec![run.join("agent.log")]),
            dir,
            root,
            run,
            ids: Default::default(),
            names: Default::default(),
            files: Default::default(),
            _serial: serial,
        }
    }

    pub fn name(&self, name: &str) -> String {
        self.names.borrow_mut().insert(name.to_string());
        name.to_string()
    }

    /// `podrun <global flags>` with this environment's roots and the
    /// suite's test-only knobs.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(PODRUN);
        c.arg("--root")
            .arg(&self.root)
            .arg("--run-root")
            .arg(&self.run)
            .arg("--config")
            .arg(&self.network.config_file)
            .arg("--registries-conf")
            .arg(self.dir.path().join("none.conf"))
            .arg("--hosts-dir")
            .arg(self.dir.path().join("none.d"))
            .env("HOME", self.dir.path())
            .env("REGISTRY_AUTH_FILE", self.dir.path().join("auth.json"))
            .envs(self.suite.knobs.iter().copied())
            .env_remove("PODRUN_AGENT_CRASH_AT")
            .stdin(Stdio::null());
        c
    }

    pub fn podrun(&self, args: &[&str]) -> Output {
        let out = output_within(self.cmd().args(args), 120);
        self.refresh_ids();
        out
    }

    /// `podrun <args>`, which must succeed: its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.podrun(args);
        assert!(
            out.status.success(),
            "podrun {args:?}: {}\n{}",
            text(&out),
            self.diag()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new file of `yaml` in the temporary directory.
    pub fn write_manifest(&self, yaml: &str) -> PathBuf {
        let n = self.files.get() + 1;
        self.files.set(n);
        let file = self.dir.path().join(format!("m{n}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        file
    }

    /// Start `podrun serve [extra]` (with `PODRUN_AGENT_CRASH_AT=crash` if
    /// given, and `envs` besides the knobs of [`Env::cmd`]) and wait until it
    /// answers on its socket (or exits, which fails the test if the suite's
    /// agents stay up).
    pub fn serve(&self, crash: Option<&str>, extra: &[&str], envs: &[(&str, &str)]) -> Agent {
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
            if let Ok(Some(s)) = agent.child.try_wait() {
                assert!(
                    !self.suite.agent_stays_up,
                    "the agent exited ({s})\n{}",
                    agent.log()
                );
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
    pub fn answers(&self) -> bool {
        std::os::unix::net::UnixStream::connect(self.run.join("podrun.sock")).is_ok()
    }

    /// The pid in `<root>/agent.lock`.
    pub fn lock_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.root.join("agent.lock"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Remember every pod ID found on disk.
    pub fn refresh_ids(&self) {
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
    pub fn diag(&self) -> String {
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

    /// `podrun get pods -A`: its rows (NAMESPACE NAME READY STATUS RESTARTS
    /// [(AGO ago)] AGE), split at white space.
    pub fn rows(&self) -> Vec<Vec<String>> {
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

    /// The pod directories of the run root (pod IDs).
    pub fn pod_ids(&self) -> BTreeSet<String> {
        self.refresh_ids();
        names_in(&self.run.join("pods"))
    }

    /// The pod ID of `ns/name` (the one run directory of it).
    pub fn pod_id(&self, ns: &str, name: &str) -> String {
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
    pub fn container_pids(&self) -> BTreeMap<String, i32> {
        let mut out = BTreeMap::new();
        for id in self.pod_ids() {
            // The monitor's records are the runtime's, in the sandbox's directory.
            let starts = self.run.join("sandboxes").join(&id).join("starts");
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
    pub fn monitors(&self) -> Vec<(i32, String)> {
        let pods = self.run.join("sandboxes");
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
    pub fn pauses(&self) -> Vec<(i32, String)> {
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
    pub fn own_procs(&self) -> Vec<Proc> {
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
    pub fn procs_in(&self, ids: &BTreeSet<String>) -> Vec<Proc> {
        procs()
            .into_iter()
            .filter(|p| !p.zombie)
            .filter(|p| ids.iter().any(|id| p.cgroup.contains(&format!("/{id}/"))))
            .collect()
    }

    pub fn mounts(&self) -> Vec<String> {
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
    pub fn assert_exactly(&self, pods: &[(&str, &str)]) {
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

    /// Nothing of any pod is left: no directory, container filesystem,
    /// mount, cgroup or process of any pod ID seen (and, if the suite's
    /// agents stay up, no pod listed).
    pub fn assert_nothing_left(&self) {
        if self.suite.agent_stays_up {
            let rows = self.rows();
            assert!(
                rows.is_empty(),
                "pods still listed: {rows:?}\n{}",
                self.diag()
            );
        }
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
        let network = self.network.leftovers();
        assert!(
            network.is_empty(),
            "pod network left: {network:?}\n{}",
            self.diag()
        );
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
    pub fn kill_agents(&self) {
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
        for id in names_in(&self.run.join("sandboxes")) {
            let plan = self.run.join("sandboxes").join(&id).join("plan.json");
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
