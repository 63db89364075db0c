//! The node agent (`podrun serve`) end to end: pods applied through it from the
//! local registry, the agent killed at every step of a pod's creation and
//! deletion and started again, pods that outlive it, a simulated reboot,
//! static pods, and a database it must not touch. Every test has its own
//! roots and a drop guard that kills and removes whatever it left, and checks
//! that nothing of its pods is left: directories, mounts, cgroups, processes.
//!
//! Run with `--test-threads=1` (the tests count processes of their own roots
//! only, but they are heavy).

#[path = "support/agent_env.rs"]
mod agent_env;
mod support;

use agent_env::{
    alive, cgroups_of, kill, names_in, output_within, registry, remove_cgroups, text, wait_gone,
    Agent, Env, Suite, PODRUN,
};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The agents of these tests are started, killed and refused on purpose.
const SUITE: Suite = Suite {
    name: "agent",
    knobs: &[
        ("PODRUN_SYNC_INTERVAL_MS", "200"),
        ("PODRUN_BACKOFF_INITIAL_MS", "500"),
    ],
    agent_stays_up: false,
};

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
// What only these tests ask of an agent and of the environment (the rest is
// in support/agent_env.rs).

impl Agent {
    fn pid(&self) -> i32 {
        self.child.id() as i32
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
}

impl Env {
    /// `podrun apply -f <a file of `yaml`>`.
    fn apply(&self, yaml: &str) -> Output {
        let file = self.write_manifest(yaml);
        self.podrun(&["apply", "-f", file.to_str().unwrap()])
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
    let env = Env::new(&SUITE, "apply");
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
    let env = Env::new(&SUITE, "second");
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
    let env = Env::new(&SUITE, "nonroot");
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
    let env = Env::new(&SUITE, "db");
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
    let env = Env::new(&SUITE, "invalid");
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

    // Valid, but with volumes podrun cannot mount yet: refused at once, every one.
    let unsupported = pod("default", &bad, "x").replace(
        "spec:\n",
        "spec:\n  volumes:\n  - {name: a, emptyDir: {}}\n  - {name: b, ephemeral: {volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce]}}}}\n  - {name: c, nfs: {server: nfs.example, path: /x}}\n",
    );
    let out = env.apply(&format!("{}---\n{unsupported}", pod("default", &good, "x")));
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.volumes[1].ephemeral: unsupported value: podrun does not support ephemeral volumes yet (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected, image, persistentVolumeClaim)")
            && stderr.contains("spec.volumes[2].nfs: unsupported value")
            && stderr.contains("nothing was applied"),
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
    let env = Env::new(&SUITE, "outlive");
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
    let env = Env::new(&SUITE, &point.replace(':', "-"));
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
    let env = Env::new(&SUITE, &point.replace(':', "-"));
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
    let env = Env::new(&SUITE, "replace-removed");
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
    let env = Env::new(&SUITE, "recreate-removed");
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
    let env = Env::new(&SUITE, "batch");
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
    let env = Env::new(&SUITE, "reboot");
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
    // The old sandbox's address went back to the network when the agent
    // started (its garbage collection): only the new sandbox holds one.
    let new = env.pod_id("default", &name);
    assert_eq!(
        env.network.leaseholders(),
        BTreeSet::from([new]),
        "{}",
        env.diag()
    );
    env.wait_log("default", &name, "msg=boot");
    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
    fresh.kill();
}

#[test]
fn static_pods_follow_their_directory() {
    let env = Env::new(&SUITE, "static");
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

/// kubelet pulls each container's image just before it starts it: an image
/// that cannot be pulled holds only its own container (ErrImagePull, then
/// ImagePullBackOff), the pod's other containers run, and once the image
/// is there the container starts in the same sandbox.
#[test]
fn an_image_that_cannot_be_pulled_holds_only_its_container() {
    let env = Env::new(&SUITE, "nopull");
    let bad = env.name("ag10-nopull");
    let good = env.name("ag10-good");
    let mut agent = env.serve(None, &[], &[]);
    let r = registry();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let late = format!("{r}/podrun-test-late-{}-{nanos}:1", std::process::id());
    let two = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {bad}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "{RUN}"]
  - name: late
    image: {late}
    command: ["sh", "-c", "{RUN}"]
"#,
        RUN = "trap 'exit 0' TERM; while true; do sleep 0.1; done"
    );
    let out = env.apply(&format!("{two}---\n{}", pod("default", &good, "g")));
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out), env.diag());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("pod/{bad}: container late: pull {late}")),
        "{}",
        text(&out)
    );
    assert_eq!(
        sorted_lines(&String::from_utf8_lossy(&out.stdout)),
        [format!("pod/{good} created"), format!("pod/{bad} created")],
        "{}",
        text(&out)
    );
    // Both pods have their sandbox; only the container without its image waits.
    env.wait_rows("app running beside late in ErrImagePull", 15, |rows| {
        rows.len() == 2
            && rows
                .iter()
                .any(|r| r[1] == good && r[2] == "1/1" && r[3] == "Running")
            && rows.iter().any(|r| {
                r[1] == bad
                    && r[2] == "1/2"
                    && (r[3] == "ErrImagePull" || r[3] == "ImagePullBackOff")
            })
    });
    env.wait_rows("ImagePullBackOff after a retry", 15, |rows| {
        rows.iter()
            .any(|r| r[1] == bad && r[3] == "ImagePullBackOff")
    });
    env.assert_exactly(&[("default", &good), ("default", &bad)]);
    let id = env.pod_id("default", &bad);
    let d = env.ok(&["describe", "pod", &bad]);
    assert!(
        d.lines()
            .any(|l| l.starts_with("Status:") && l.trim_end().ends_with(" Pending")),
        "{d}"
    );
    for event in [
        format!("Failed to pull image \"{late}\""),
        "Error: ErrImagePull".to_string(),
        format!("Back-off pulling image \"{late}\""),
        "Started container app".to_string(),
    ] {
        assert!(d.contains(&event), "no event {event:?} in\n{d}");
    }
    assert!(!d.contains("Started container late"), "{d}");
    // The image arrives: the next try pulls it and starts the container.
    let copied = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{r}/busybox:latest"))
        .arg(format!("docker://{late}"))
        .output()
        .unwrap();
    assert!(copied.status.success(), "skopeo: {}", text(&copied));
    env.wait_rows("late started once its image is there", 20, |rows| {
        rows.iter()
            .any(|r| r[1] == bad && r[2] == "2/2" && r[3] == "Running")
    });
    assert_eq!(
        env.pod_id("default", &bad),
        id,
        "the sandbox was made again"
    );
    let d = env.ok(&["describe", "pod", &bad]);
    assert!(d.contains("Started container late"), "{d}");
    env.assert_exactly(&[("default", &good), ("default", &bad)]);
    env.ok(&["delete", "pod", &bad, &good]);
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// A pod whose new manifest changes only an image (what the API server lets
/// a running pod change) keeps its sandbox: kubelet kills the changed
/// container and starts it again from the new image, whatever the restart
/// policy, and leaves the others running. Any other change makes a new pod.
#[test]
fn a_changed_image_restarts_only_that_container_in_the_same_sandbox() {
    let env = Env::new(&SUITE, "update");
    let name = env.name("ag11-update");
    let mut agent = env.serve(None, &[], &[]);
    let r = registry();
    let manifest = |app_image: &str, side_command: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 3
  containers:
  - name: app
    image: {r}/{app_image}
    command: ["sh", "-c", "{RUN}"]
  - name: side
    image: {r}/busybox:latest
    command: ["sh", "-c", "{side_command}"]
"#,
            RUN = "trap 'exit 0' TERM; while true; do sleep 0.1; done"
        )
    };
    let run = "trap 'exit 0' TERM; while true; do sleep 0.1; done";
    let out = env.apply(&manifest("busybox:latest", run));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_rows("running", 15, |rows| {
        rows.iter()
            .any(|r| r[1] == name && r[2] == "2/2" && r[3] == "Running")
    });
    let id = env.pod_id("default", &name);
    let before = env.container_pids();
    let (app, side) = (format!("{id}/app"), format!("{id}/side"));

    // Only app's image changes.
    let out = env.apply(&manifest("busybox:oci", run));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("pod/{name} configured")
    );
    env.wait_rows("app restarted once, both running", 15, |rows| {
        rows.iter()
            .any(|r| r[1] == name && r[2] == "2/2" && r[3] == "Running" && r[4] == "1")
    });
    let after = env.container_pids();
    assert_eq!(
        env.pod_id("default", &name),
        id,
        "the sandbox was made again"
    );
    assert_ne!(after[&app], before[&app], "app was not restarted");
    assert!(alive(after[&app]));
    assert_eq!(after[&side], before[&side], "side was restarted");
    let d = env.ok(&["describe", "pod", &name]);
    assert!(
        d.contains("Container app definition changed, will be restarted"),
        "{d}"
    );
    assert!(d.contains(&format!("{r}/busybox:oci")), "{d}");
    env.assert_exactly(&[("default", &name)]);

    // Any other change (a command) makes a new pod.
    let out = env.apply(&manifest(
        "busybox:oci",
        "trap 'exit 0' TERM; sleep 1000 & wait",
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_rows("a new pod", 20, |rows| {
        rows.iter()
            .any(|r| r[1] == name && r[2] == "2/2" && r[3] == "Running" && r[4] == "0")
    });
    assert_ne!(env.pod_id("default", &name), id, "the pod was not replaced");
    env.assert_exactly(&[("default", &name)]);
    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// More pods than the agent's blocking pool has threads (16), applied at
/// once to a store without their image: every sync waits for the image, and
/// the pull must still get threads to unpack it. (The agent deadlocked here:
/// all 16 threads waited for a pull that needed one of them.)
#[test]
fn a_burst_of_pods_on_a_fresh_store_all_start() {
    let env = Env::new(&SUITE, "burst");
    let mut agent = env.serve(None, &[], &[]);
    let r = registry();
    let names: Vec<String> = (0..20)
        .map(|i| env.name(&format!("ag12-b{i:02}")))
        .collect();
    let yaml: Vec<String> = names
        .iter()
        .map(|n| {
            format!(
                r#"apiVersion: v1
kind: Pod
metadata: {{name: {n}}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: app
    image: {r}/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
"#
            )
        })
        .collect();
    let file = env.write_manifest(&yaml.join("---\n"));
    let out = output_within(env.cmd().args(["apply", "-f", file.to_str().unwrap()]), 90);
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    let want: Vec<(&str, &str)> = names.iter().map(|n| ("default", n.as_str())).collect();
    env.wait_running(&want, 60);
    env.assert_exactly(&want);
    let mut args = vec!["delete", "pod"];
    args.extend(names.iter().map(String::as_str));
    env.ok(&args);
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// The count of the events of `reason` whose message contains `text`, from
/// describe's `x<N> over` column (1 when the event happened once).
fn event_count(describe: &str, reason: &str, text: &str) -> u64 {
    describe
        .lines()
        .filter(|l| l.contains(reason) && l.contains(text))
        .map(|l| {
            l.split_once("(x")
                .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or(1)
        })
        .sum()
}

/// A container that cannot be made (a ConfigMap its env names is missing)
/// leaves `apply` successful, as kubectl's, with a warning naming it, and
/// waits out the pod worker's back-off between tries, as kubelet requeues a
/// failed sync; it is not retried, nor its image pulled again, on every sync
/// (one such pod made 78 pulls and 78 events in 2 s).
#[test]
fn a_container_that_cannot_be_made_is_retried_with_back_off() {
    let env = Env::new(&SUITE, "cfgerr");
    let name = env.name("ag13-cfgerr");
    let mut agent = env.serve(None, &[], &[]);
    let r = registry();
    let out = env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: app
    image: {r}/busybox:latest
    imagePullPolicy: Always
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    env:
    - name: MODE
      valueFrom:
        configMapKeyRef: {{name: ag13-missing, key: mode}}
"#
    ));
    // As `kubectl apply`: stored is done (exit 0); the cause is a warning
    // here, and the reason in the pod's status.
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out), env.diag());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "Warning: pod/{name}: container app: configmap \"ag13-missing\" not found"
        )),
        "{}",
        text(&out)
    );
    env.wait_rows("CreateContainerConfigError", 15, |rows| {
        rows.iter()
            .any(|r| r[1] == name && r[3] == "CreateContainerConfigError")
    });
    let first = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let d = env.ok(&["describe", "pod", &name]);
    // The suite's back-off is 500 ms (PODRUN_BACKOFF_INITIAL_MS), plus up to
    // half of it: at most one try per 500 ms, and the one before.
    let most = first.elapsed().as_millis() as u64 / 500 + 2;
    let failed = event_count(&d, "Failed", "ag13-missing");
    let pulls = event_count(&d, "Pulling", "busybox");
    assert!(
        (2..=most).contains(&failed),
        "{failed} failed tries (at most {most}):\n{d}"
    );
    assert!(
        (2..=most).contains(&pulls),
        "{pulls} pulls (at most {most}):\n{d}"
    );
    // It shows why it waits, and starts once the ConfigMap is there.
    assert!(d.contains("CreateContainerConfigError"), "{d}");
    // kubelet's Pulled wording: Go durations and the image's size.
    let pulled = d
        .lines()
        .find_map(|l| {
            l.split_once(&format!(
                "Successfully pulled image \"{r}/busybox:latest\" in "
            ))
        })
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_else(|| panic!("no Pulled event:\n{d}"));
    let (took, rest) = pulled.split_once(' ').unwrap();
    assert!(took.ends_with("ms") || took.ends_with('s'), "{pulled}");
    assert!(
        rest.starts_with(&format!("({took} including waiting). Image size: ")),
        "{pulled}"
    );
    let size = rest.rsplit_once("Image size: ").unwrap().1;
    let bytes: u64 = size.strip_suffix(" bytes.").unwrap().parse().unwrap();
    assert!(bytes > 100_000, "{pulled}");
    let out = env.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ag13-missing}\ndata: {mode: fast}\n",
    );
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_running(&[("default", &name)], 15);
    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// A grace period as long as the API allows (i64::MAX seconds) is waited out
/// as the longest one podrun can hold, not an overflow: the pod that obeys
/// SIGTERM is deleted at once and leaves nothing (it stayed `deleting`: the
/// stop path panicked on `Instant + Duration`).
#[test]
fn the_longest_grace_period_stops_the_pod() {
    let env = Env::new(&SUITE, "maxgrace");
    let name = env.name("ag14-maxgrace");
    let mut agent = env.serve(None, &[], &[]);
    let manifest = pod("default", &name, "m").replace(
        "terminationGracePeriodSeconds: 3",
        "terminationGracePeriodSeconds: 9223372036854775807",
    );
    assert!(manifest.contains("9223372036854775807"));
    let out = env.apply(&manifest);
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_running(&[("default", &name)], 15);
    let out = output_within(env.cmd().args(["delete", "pod", &name]), 30);
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_rows("the pod gone", 15, |rows| rows.is_empty());
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// configMap, secret, downwardAPI and projected volumes hold what kubelet
/// writes (bytes, modes, its `..data` symlink layout, mounted read-only); a
/// missing ConfigMap holds the pod in ContainerCreating with kubelet's
/// FailedMount event until it is applied; a changed ConfigMap reaches the
/// running container, swapped atomically; deleting the pod leaves nothing
/// (the secret's tmpfs included).
#[test]
fn config_map_secret_downward_api_and_projected_volumes_are_kubelets() {
    let env = Env::new(&SUITE, "vols");
    let name = env.name("ag14-vols");
    let mut agent = env.serve(None, &[], &[]);
    let r = registry();
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web, tier: front}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts:
    - {{name: conf, mountPath: /etc/conf}}
    - {{name: creds, mountPath: /etc/creds}}
    - {{name: info, mountPath: /etc/info}}
    - {{name: all, mountPath: /etc/all}}
  volumes:
  - name: conf
    configMap:
      name: ag14-conf
      items:
      - {{key: game.properties, path: game.properties}}
      - {{key: mode, path: sub/mode, mode: 0600}}
  - name: creds
    secret: {{secretName: ag14-creds, defaultMode: 0400}}
  - name: info
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
  - name: all
    projected:
      sources:
      - configMap: {{name: ag14-conf, items: [{{key: mode, path: mode}}]}}
      - secret: {{name: ag14-creds}}
"#
    );
    let out = env.apply(&pod);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out), env.diag());
    env.wait_rows("ContainerCreating", 15, |rows| {
        rows.iter()
            .any(|r| r[1] == name && r[3] == "ContainerCreating")
    });
    let d = env.ok(&["describe", "pod", &name]);
    assert!(
        d.contains(
            r#"MountVolume.SetUp failed for volume "conf" : configmap "ag14-conf" not found"#
        ),
        "{d}"
    );

    let objects = "apiVersion: v1
kind: ConfigMap
metadata: {name: ag14-conf}
data:
  game.properties: |
    lives=3
  mode: fast
---
apiVersion: v1
kind: Secret
metadata: {name: ag14-creds}
stringData: {password: s3cret}
";
    let out = env.apply(objects);
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_running(&[("default", &name)], 20);

    let sh = |script: &str| env.ok(&["exec", &name, "--", "sh", "-c", script]);
    assert_eq!(sh("cat /etc/conf/game.properties"), "lives=3\n");
    assert_eq!(sh("cat /etc/conf/sub/mode"), "fast");
    assert_eq!(
        sh("stat -L -c %a /etc/conf/sub/mode /etc/conf/game.properties"),
        "600\n644\n"
    );
    assert_eq!(sh("readlink /etc/conf/sub"), "..data/sub\n");
    let data = sh("readlink /etc/conf/..data");
    assert!(
        data.starts_with("..20") && data.trim_end().len() > 25,
        "{data}"
    );
    assert_eq!(
        sh("cat /etc/creds/password; stat -L -c %a /etc/creds/password"),
        "s3cret400\n"
    );
    assert_eq!(sh("cat /etc/info/labels"), "app=\"web\"\ntier=\"front\"");
    assert_eq!(sh("cat /etc/info/name"), name);
    assert_eq!(sh("cat /etc/all/mode /etc/all/password"), "fasts3cret");
    let refused = env.podrun(&["exec", &name, "--", "sh", "-c", "echo x > /etc/conf/new"]);
    assert!(
        !refused.status.success(),
        "a configMap volume is read-only: {}",
        text(&refused)
    );

    // The update: the running container sees it within a few syncs, swapped.
    let out = env.apply(&objects.replace("mode: fast", "mode: slow"));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mode = sh("cat /etc/conf/sub/mode /etc/all/mode");
        if mode == "slowslow" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not updated: {mode}\n{}",
            env.diag()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ne!(
        sh("readlink /etc/conf/..data"),
        data,
        "a new payload directory"
    );

    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// An `image` volume (Kubernetes 1.33+): the image is pulled by its
/// pullPolicy with kubelet's events and mounted read-only and noexec, its
/// layers as the container sees them (whiteouts and opaque directories
/// applied), a subPath of it too; a subPath whose symbolic link leads out of
/// the image is refused; nothing is left mounted after delete.
#[test]
fn image_volumes_mount_the_image_read_only() {
    let env = Env::new(&SUITE, "imgvol");
    let name = env.name("ag-imgvol");
    let bad = env.name("ag-imgvol-bad");
    let mut agent = env.serve(None, &[], &[]);
    let r = registry();
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts:
    - {{name: layers, mountPath: /vol}}
    - {{name: layers, mountPath: /data, subPath: data}}
    - {{name: bb, mountPath: /bb}}
  volumes:
  - name: layers
    image: {{reference: "{r}/layers:latest", pullPolicy: IfNotPresent}}
  - name: bb
    image: {{reference: "{r}/busybox:latest"}}
"#
    );
    let out = env.apply(&pod);
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_running(&[("default", &name)], 30);

    let sh = |script: &str| env.podrun(&["exec", &name, "--", "sh", "-c", script]);
    let ok = |script: &str| {
        let out = sh(script);
        assert!(
            out.status.success(),
            "{script}: {}\n{}",
            text(&out),
            env.diag()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Three layers, as the image's own root filesystem would show them.
    assert_eq!(
        ok("cat /vol/data/keep.txt /vol/data/replaced.txt /vol/data/late.txt"),
        "keepv2late"
    );
    assert_eq!(ok("ls /vol/data/opaque"), "new.txt\n");
    assert!(!sh("test -e /vol/data/remove-me.txt").status.success());
    assert!(!sh("test -e /vol/data/dir-to-remove").status.success());
    // The subPath is the image's directory.
    assert_eq!(ok("cat /data/keep.txt"), "keep");
    // Read-only, and nothing in it runs; a one-layer image too.
    for dir in ["/vol", "/data", "/bb"] {
        let out = sh(&format!("touch {dir}/new"));
        assert!(!out.status.success(), "{dir} is writable: {}", text(&out));
    }
    let out = sh("/bb/bin/busybox true");
    assert!(!out.status.success(), "/bb is not noexec: {}", text(&out));
    assert_eq!(ok("/bin/busybox cat /bb/etc/passwd | head -c 4"), "root");
    let events = env.ok(&["describe", "pod", &name]);
    assert!(
        events.contains(&format!("{r}/layers:latest"))
            && events.contains("Image (a container image or OCI artifact)"),
        "{events}"
    );
    let mounted = env.mounts();
    assert!(
        mounted
            .iter()
            .filter(|m| m.contains("/image-volumes/"))
            .count()
            >= 2,
        "{mounted:?}"
    );

    // A subPath through a symbolic link out of the image (data/abs-symlink
    // -> /etc/passwd) is refused; the container is not made.
    let escape = pod
        .replace(&name, &bad)
        .replace("subPath: data}", "subPath: data/abs-symlink}");
    let out = env.apply(&escape);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out), env.diag());
    assert!(
        text(&out).contains("subPath \"data/abs-symlink\" leads out of the image"),
        "{}",
        text(&out)
    );
    env.wait_rows("CreateContainerError", 30, |rows| {
        rows.iter()
            .any(|r| r[1] == bad && r[3] == "CreateContainerError")
    });
    let d = env.ok(&["describe", "pod", &bad]);
    assert!(d.contains("leads out of the image"), "{d}");

    env.ok(&["delete", "pod", &name, &bad]);
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// The agent killed once a pod's volumes are mounted (a secret's tmpfs, a
/// memory emptyDir) but before its container is made: a fresh agent makes
/// the pod, and its delete leaves no mount, directory or process behind.
#[test]
fn killed_with_volumes_mounted_leaves_nothing_after_delete() {
    let env = Env::new(&SUITE, "create-volumes");
    let name = env.name("ag-volcrash");
    let mut agent = env.serve(Some("create:volumes"), &[], &[]);
    let r = registry();
    let yaml = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: ag-volcrash-creds}}
stringData: {{password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts:
    - {{name: creds, mountPath: /etc/creds}}
    - {{name: scratch, mountPath: /scratch}}
  volumes:
  - {{name: creds, secret: {{secretName: ag-volcrash-creds}}}}
  - {{name: scratch, emptyDir: {{medium: Memory}}}}
"#
    );
    let out = env.apply(&yaml);
    let status = agent.wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "the agent did not kill itself with the volumes mounted\n{}\n{}",
        text(&out),
        env.diag()
    );
    assert!(
        env.mounts().iter().any(|m| m.ends_with("/volumes/creds")),
        "the secret's tmpfs was not mounted when the agent died: {:?}",
        env.mounts()
    );
    let mut fresh = env.serve(None, &[], &[]);
    env.wait_running(&[("default", &name)], 30);
    assert_eq!(
        env.ok(&["exec", &name, "--", "cat", "/etc/creds/password"]),
        "s3cret"
    );
    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
    fresh.kill();
}

/// Termination as kubelet's pod worker does it: the deletion is recorded
/// once with its deadline (deletionTimestamp = now + grace,
/// deletionGracePeriodSeconds) and describe says Terminating as kubectl does;
/// Killing is recorded for every container when termination starts; a second
/// delete with a shorter grace period cuts the first one short; a native
/// sidecar, whose turn comes after the grace period is spent, still gets
/// kubelet's minimum of 2 s after its stop signal; `--wait=false` returns
/// once the deletion is recorded, the default waits until the pod is gone.
#[test]
fn termination_follows_kubelets_pod_worker() {
    let env = Env::new(&SUITE, "term");
    let name = env.name("ag-term");
    let mut agent = env.serve(None, &[], &[]);
    let r = registry();
    let out_dir = env.dir.path().join("term-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 30
  volumes:
  - {{name: out, hostPath: {{path: {out}}}}}
  initContainers:
  - name: sidecar
    image: {r}/busybox:latest
    restartPolicy: Always
    command: ["sh", "-c", "trap 'sleep 1; echo cleaned > /out/sidecar; exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts: [{{name: out, mountPath: /out}}]
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]
"#,
        out = out_dir.display()
    );
    let out = env.apply(&pod);
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_rows("2/2 Running", 30, |rows| {
        rows.iter()
            .any(|r| r[1] == name && r[2] == "2/2" && r[3] == "Running")
    });

    let asked = chrono::Utc::now();
    let out = env.podrun(&["delete", "pod", &name, "--wait=false"]);
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("pod \"{name}\" deleted\n")
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["get", "pod", &name, "-o", "json"])).unwrap();
    let meta = &json["metadata"];
    assert_eq!(meta["deletionGracePeriodSeconds"], 30, "{meta}");
    let at =
        chrono::DateTime::parse_from_rfc3339(meta["deletionTimestamp"].as_str().unwrap()).unwrap();
    let ahead = (at.with_timezone(&chrono::Utc) - asked).num_seconds();
    assert!(
        (29..=31).contains(&ahead),
        "deletionTimestamp {at} is {ahead} s after the delete"
    );
    // Set once: read again, it has not moved.
    std::thread::sleep(Duration::from_millis(1100));
    let again: serde_json::Value =
        serde_json::from_str(&env.ok(&["get", "pod", &name, "-o", "json"])).unwrap();
    assert_eq!(
        again["metadata"]["deletionTimestamp"],
        meta["deletionTimestamp"]
    );
    let d = env.ok(&["describe", "pod", &name]);
    assert!(d.contains("Status:                    Terminating (lasts <invalid>)\nTermination Grace Period:  30s\n"), "{d}");
    // Both Killing events at once, although app ignores SIGTERM and the
    // sidecar's turn comes only after it.
    assert!(
        d.contains("Stopping container app") && d.contains("Stopping container sidecar"),
        "{d}"
    );
    assert!(
        !out_dir.join("sidecar").exists(),
        "the sidecar was stopped before app"
    );

    // The second delete: 1 s instead of the 29 left; it waits until the pod is gone.
    let started = Instant::now();
    let out = env.podrun(&["delete", "pod", &name, "--grace-period", "1"]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    assert!(
        took < Duration::from_secs(15),
        "the shorter grace period did not cut the termination short: {took:?}"
    );
    assert!(
        !env.rows().iter().any(|r| r[1] == name),
        "delete returned before the pod was gone\n{}",
        env.diag()
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("sidecar")).unwrap_or_default(),
        "cleaned\n",
        "the sidecar did not get its 2 s to clean up"
    );
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// subPath as kubelet makes it (pkg/volume/util/subpath/subpath_linux.go): a
/// subPathExpr expanded from the container's env, a subPath that is a file,
/// and the CVE-2017-1002101 escape refused. An init container plants
/// `link -> /` in an emptyDir; a container mounting subPath `link` gets
/// CreateContainerConfigError naming the volumeMount and the subPath, and
/// never runs: its command would leave a file on the host through the link.
#[test]
fn sub_paths_are_kubelets_and_a_link_out_of_the_volume_is_refused() {
    let env = Env::new(&SUITE, "subpath");
    let (good, evil) = (env.name("ag15-sub"), env.name("ag15-evil"));
    let marker = Path::new("/tmp").join(format!("podrun-escaped-{evil}"));
    let _ = std::fs::remove_file(&marker);
    let mut agent = env.serve(None, &[], &[]);
    let r = registry();
    let out = env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {good}}}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: seed
    image: {r}/busybox:latest
    command: ["sh", "-c", "echo conf > /data/app.conf && ln -s logs /data/alias"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "echo hi > /logs/out; trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    env:
    - {{name: POD, value: p1}}
    - {{name: DIR, value: "logs/$(POD)"}}
    volumeMounts:
    - {{name: data, mountPath: /logs, subPathExpr: "$(DIR)"}}
    - {{name: data, mountPath: /etc/app.conf, subPath: app.conf}}
    - {{name: data, mountPath: /all}}
  volumes:
  - {{name: data, emptyDir: {{}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: {evil}}}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: plant
    image: {r}/busybox:latest
    command: ["ln", "-s", "/", "/data/link"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  containers:
  - name: evil
    image: {r}/busybox:latest
    command: ["sh", "-c", "touch /host{marker}; ls /host; sleep 1000"]
    volumeMounts: [{{name: data, mountPath: /host, subPath: link}}]
  volumes:
  - {{name: data, emptyDir: {{}}}}
"#,
        marker = marker.display()
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_rows("the escape refused and the good pod running", 30, |rows| {
        rows.iter()
            .any(|r| r[1] == evil && r[3] == "CreateContainerConfigError")
            && rows.iter().any(|r| r[1] == good && r[3] == "Running")
    });
    let d = env.ok(&["describe", "pod", &evil]);
    assert!(
        d.contains(r#"failed to prepare subPath for volumeMount "data" of container "evil": volume data: subPath "link": it resolves to /, outside the volume"#),
        "{d}"
    );
    assert!(
        !marker.exists(),
        "the container wrote to the host through the link"
    );

    let sh = |script: &str| env.ok(&["exec", &good, "--", "sh", "-c", script]);
    assert_eq!(sh("cat /all/logs/p1/out /etc/app.conf"), "hi\nconf\n");
    // A file bound on a file: the mount point is no directory.
    assert_eq!(sh("test -f /etc/app.conf && echo file"), "file\n");
    // Only the subPath is there, not the rest of the volume.
    assert_eq!(sh("ls /logs"), "out\n");

    env.ok(&["delete", "pod", &good]);
    env.ok(&["delete", "pod", &evil]);
    env.assert_nothing_left();
    assert!(!marker.exists());
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// hostPath `type` as kubelet checks it (pkg/volume/hostpath/host_path.go): a
/// Directory that is a file is kubelet's FailedMount, the container waits in
/// ContainerCreating and starts once a directory is there; FileOrCreate makes
/// an empty file.
#[test]
fn a_host_path_of_the_wrong_type_waits_with_kubelets_failed_mount() {
    let env = Env::new(&SUITE, "hosttype");
    let name = env.name("ag16-host");
    let host = env.dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    let (dir, made) = (host.join("dir"), host.join("made.txt"));
    std::fs::write(&dir, "a file, not a directory").unwrap();
    let mut agent = env.serve(None, &[], &[]);
    let r = registry();
    let out = env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts:
    - {{name: dir, mountPath: /dir}}
    - {{name: made, mountPath: /made.txt}}
  volumes:
  - name: dir
    hostPath: {{path: {dir}, type: Directory}}
  - name: made
    hostPath: {{path: {made}, type: FileOrCreate}}
"#,
        dir = dir.display(),
        made = made.display(),
    ));
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out), env.diag());
    env.wait_rows("ContainerCreating", 15, |rows| {
        rows.iter()
            .any(|r| r[1] == name && r[3] == "ContainerCreating")
    });
    let d = env.ok(&["describe", "pod", &name]);
    let want = format!(
        r#"MountVolume.SetUp failed for volume "dir" : hostPath type check failed: {} is not a directory, it's a File"#,
        dir.display()
    );
    assert!(d.contains(&want), "{want}\n{d}");
    assert!(d.contains("FailedMount"), "{d}");

    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("hello"), "hi").unwrap();
    env.wait_running(&[("default", &name)], 20);
    let sh = |script: &str| env.ok(&["exec", &name, "--", "sh", "-c", script]);
    assert_eq!(
        sh("cat /dir/hello; test -f /made.txt && wc -c < /made.txt"),
        "hi0\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode & !0o022,
        0o644 & !0o022,
        "kubelet's 0644 under the umask"
    );

    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// securityContext.fsGroup as kubelet's SetVolumeOwnership applies it
/// (pkg/volume/volume_linux.go): an emptyDir's root gets the group and setgid
/// (what a non-root container makes there inherits the group), a downwardAPI
/// volume's files the group with group read; supplementalGroups and fsGroup
/// reach the process; a hostPath is left as it is.
#[test]
fn fs_group_owns_the_pods_volumes_as_kubelet_sets_it() {
    let env = Env::new(&SUITE, "fsgroup");
    let name = env.name("ag17-fsg");
    let host = env.dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    let mut agent = env.serve(None, &[], &[]);
    let r = registry();
    let out = env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {{fsGroup: 1234, supplementalGroups: [5555], runAsUser: 1000}}
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "touch /data/x; trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts:
    - {{name: data, mountPath: /data}}
    - {{name: info, mountPath: /info}}
    - {{name: host, mountPath: /host}}
  volumes:
  - {{name: data, emptyDir: {{}}}}
  - name: info
    downwardAPI:
      items: [{{path: name, fieldRef: {{fieldPath: metadata.name}}}}]
  - name: host
    hostPath: {{path: {host}, type: Directory}}
"#,
        host = host.display()
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_running(&[("default", &name)], 20);
    let sh = |script: &str| env.ok(&["exec", &name, "--", "sh", "-c", script]);
    let groups = sh("id -G");
    assert!(groups.split_whitespace().any(|g| g == "1234"), "{groups}");
    assert!(groups.split_whitespace().any(|g| g == "5555"), "{groups}");
    assert_eq!(
        sh("stat -L -c '%g %a' /data /data/x /info/name"),
        "1234 2777\n1234 644\n1234 644\n"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&host).unwrap().gid(),
        0,
        "hostPath untouched"
    );

    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// Unmounts a test's own tmpfs however the test ends.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// recursiveReadOnly: Enabled (Kubernetes 1.30, runtime-spec 1.1's `rro`): a
/// mount nested in a read-only hostPath is read-only too, where plain
/// readOnly leaves it writable (the difference the field exists for).
#[test]
fn recursive_read_only_reaches_a_nested_mount() {
    let env = Env::new(&SUITE, "rro");
    let name = env.name("ag18-rro");
    let host = tempfile::tempdir().unwrap();
    let nested = host.path().join("nested");
    std::fs::create_dir(&nested).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "podrun-test-rro"])
        .arg(&nested)
        .status()
        .unwrap();
    assert!(status.success());
    let _unmount = Unmount(nested.clone());
    let mut agent = env.serve(None, &[], &[]);
    let r = registry();
    let out = env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts:
    - {{name: host, mountPath: /ro, readOnly: true}}
    - {{name: host, mountPath: /rro, readOnly: true, recursiveReadOnly: Enabled}}
  volumes:
  - name: host
    hostPath: {{path: {host}, type: Directory}}
"#,
        host = host.path().display()
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_running(&[("default", &name)], 20);
    let try_write = |path: &str| {
        env.podrun(&["exec", &name, "--", "sh", "-c", &format!("echo x > {path}")])
            .status
            .success()
    };
    assert!(
        !try_write("/ro/top"),
        "the top of a readOnly mount is read-only"
    );
    assert!(
        try_write("/ro/nested/plain"),
        "plain readOnly leaves a nested mount writable"
    );
    assert!(!try_write("/rro/top"));
    assert!(
        !try_write("/rro/nested/rro"),
        "recursiveReadOnly reaches the nested mount"
    );
    assert!(nested.join("plain").exists() && !nested.join("rro").exists());

    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// A pod whose volume `v` is claim `claim` (read-only by the claim's
/// readOnly when `read_only`), mounted at /data, running `script` and then
/// until SIGTERM.
fn claim_pod(name: &str, claim: &str, read_only: bool, script: &str) -> String {
    let r = registry();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "{script}; trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts:
    - {{name: v, mountPath: /data}}
  volumes:
  - name: v
    persistentVolumeClaim: {{claimName: {claim}, readOnly: {read_only}}}
"#
    )
}

fn claim(name: &str, modes: &str, storage: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  accessModes: [{modes}]\n  resources: {{requests: {{storage: {storage}}}}}\n"
    )
}

/// persistentVolumeClaim volumes as podman kube play has them: a claim is a
/// named local volume under the agent's root, bound at once; its data
/// outlives the pod that wrote it and is read by the next; `get pvc` prints
/// kubectl's columns; a pod naming a missing claim waits with one FailedMount
/// event and runs once it is applied; `delete pvc` is refused while a pod
/// uses the claim and afterwards removes its directory.
#[test]
fn persistent_volume_claims_keep_data_across_pods() {
    let env = Env::new(&SUITE, "pvc");
    let writer = env.name("ag15-writer");
    let reader = env.name("ag15-reader");
    let waiter = env.name("ag15-waiter");
    let mut agent = env.serve(None, &[], &[]);
    let data_dir = env.root.join("volumes/default/ag15-data");

    // The claim and a pod writing into it, in one file.
    let first = format!(
        "{}---\n{}",
        claim("ag15-data", "ReadWriteOnce", "1Gi"),
        claim_pod(&writer, "ag15-data", false, "echo kept > /data/f")
    );
    let out = env.apply(&first);
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    assert!(
        text(&out).contains("persistentvolumeclaim/ag15-data created"),
        "{}",
        text(&out)
    );
    env.wait_running(&[("default", &writer)], 20);
    assert_eq!(
        std::fs::read_to_string(data_dir.join("f")).unwrap_or_default(),
        "kept\n",
        "{}",
        env.diag()
    );

    // kubectl's columns.
    let table = env.ok(&["get", "pvc"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ],
        "{table}"
    );
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells.len(), 7, "{table}");
    assert_eq!(
        (cells[0], cells[1], cells[3], cells[4], cells[5]),
        ("ag15-data", "Bound", "1Gi", "RWO", "<unset>"),
        "{table}"
    );
    assert!(
        cells[2].starts_with("pvc-") && cells[2].len() == 40,
        "{table}"
    );
    let json = env.ok(&["get", "persistentvolumeclaim", "ag15-data", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["kind"], "PersistentVolumeClaim", "{json}");
    assert_eq!(v["status"]["phase"], "Bound", "{json}");
    assert_eq!(v["status"]["capacity"]["storage"], "1Gi", "{json}");
    assert_eq!(v["status"]["accessModes"][0], "ReadWriteOnce", "{json}");
    assert_eq!(v["spec"]["volumeName"].as_str(), Some(cells[2]), "{json}");

    // What the API server keeps immutable is refused; a larger request is not.
    let out = env.apply(&claim("ag15-data", "ReadWriteMany", "1Gi"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("spec is immutable after creation except resources.requests"),
        "{}",
        text(&out)
    );
    let out = env.apply(&claim("ag15-data", "ReadWriteOnce", "2Gi"));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    assert!(
        text(&out).contains("persistentvolumeclaim/ag15-data configured"),
        "{}",
        text(&out)
    );

    // In use: refused, naming the pod; the data is kept.
    let out = env.podrun(&["delete", "pvc", "ag15-data"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("in use by pod {writer}")),
        "{}",
        text(&out)
    );
    assert!(data_dir.join("f").exists());

    // The pod goes; the next one reads what it wrote, read-only by the claim.
    env.ok(&["delete", "pod", &writer]);
    assert!(
        data_dir.join("f").exists(),
        "deleting the pod kept the data"
    );
    let out = env.apply(&claim_pod(&reader, "ag15-data", true, "true"));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_running(&[("default", &reader)], 20);
    assert_eq!(env.ok(&["exec", &reader, "--", "cat", "/data/f"]), "kept\n");
    let refused = env.podrun(&["exec", &reader, "--", "sh", "-c", "echo x > /data/g"]);
    assert!(!refused.status.success(), "readOnly: {}", text(&refused));

    // A pod naming a claim not yet applied waits, with one FailedMount event.
    let later = claim("ag15-later", "ReadWriteOncePod", "10Mi");
    let out = env.apply(&claim_pod(&waiter, "ag15-later", false, "echo w > /data/w"));
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out), env.diag());
    env.wait_rows("ContainerCreating", 15, |rows| {
        rows.iter()
            .any(|r| r[1] == waiter && r[3] == "ContainerCreating")
    });
    std::thread::sleep(Duration::from_secs(2));
    let d = env.ok(&["describe", "pod", &waiter]);
    let failed =
        r#"MountVolume.SetUp failed for volume "v" : persistentvolumeclaim "ag15-later" not found"#;
    assert_eq!(d.matches(failed).count(), 1, "one event, counted: {d}");
    let out = env.apply(&later);
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_running(&[("default", &reader), ("default", &waiter)], 30);
    // Running is the container started, not its script done: poll.
    let written = env.root.join("volumes/default/ag15-later/w");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&written).unwrap_or_default() != "w\n" {
        assert!(Instant::now() < deadline, "not written: {}", env.diag());
        std::thread::sleep(Duration::from_millis(100));
    }

    // Once no pod uses them, deleting the claims removes their data.
    env.ok(&["delete", "pod", &reader, &waiter]);
    let out = env.ok(&["delete", "pvc", "ag15-data"]);
    assert!(
        out.contains("persistentvolumeclaim \"ag15-data\" deleted"),
        "{out}"
    );
    assert!(!data_dir.exists(), "{}", env.diag());
    let file = env.write_manifest(&later);
    env.ok(&["delete", "-f", file.to_str().unwrap()]);
    assert!(!env.root.join("volumes/default/ag15-later").exists());
    assert_eq!(env.ok(&["get", "pvc"]), "");
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// An emptyDir with a `sizeLimit` is enforced as kubelet's eviction manager
/// does: a pod writing 2 MiB into a 1Mi volume is killed, Failed with reason
/// `Evicted` and kubelet's message (and its `Evicted` event), shown as
/// `Evicted` by `get`, and not restarted under `restartPolicy: Always`; a
/// pod under its limit keeps running; deleting both leaves nothing.
#[test]
fn an_empty_dir_over_its_size_limit_evicts_the_pod() {
    let env = Env::new(&SUITE, "evict");
    let over = env.name("ag15-over");
    let under = env.name("ag15-under");
    let mut agent = env.serve(None, &[], &[("PODRUN_HOUSEKEEPING_INTERVAL_MS", "300")]);
    let r = registry();
    let manifest = |name: &str, kib: u32| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 30
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "dd if=/dev/zero of=/data/f bs=1024 count={kib} && sync && while true; do sleep 0.1; done"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    emptyDir: {{sizeLimit: 1Mi}}
"#
        )
    };
    for (name, kib) in [(&over, 2048), (&under, 256)] {
        let out = env.apply(&manifest(name, kib));
        assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    }
    // The container ignores SIGTERM: the eviction's grace period (1 s), not
    // the pod's 30 s, ends it.
    // `Evicted` (the pod's reason) while its container stops, then `Error`:
    // kubectl's printPod lets a terminated container's reason win.
    env.wait_rows("the pod Evicted", 30, |rows| {
        rows.iter()
            .any(|r| r[1] == over && (r[3] == "Evicted" || r[3] == "Error"))
    });
    let message = "Usage of EmptyDir volume \"data\" exceeds the limit \"1Mi\". ";
    let status = |name: &str| -> serde_json::Value {
        let pod: serde_json::Value =
            serde_json::from_str(&env.ok(&["get", "pod", name, "-o", "json"])).unwrap();
        pod["status"].clone()
    };
    let s = status(&over);
    assert_eq!(s["phase"], "Failed", "{s:#}");
    assert_eq!(s["reason"], "Evicted", "{s:#}");
    assert_eq!(s["message"], message, "{s:#}");
    let conditions = s["conditions"].as_array().cloned().unwrap_or_default();
    assert!(
        !conditions.iter().any(|c| c["type"] == "DisruptionTarget"),
        "kubelet adds none for a local storage eviction: {s:#}"
    );
    let d = env.ok(&["describe", "pod", &over]);
    assert_eq!(event_count(&d, "Evicted", message.trim_end()), 1, "{d}");
    // Its container is stopped and stays so, whatever the restart policy.
    std::thread::sleep(Duration::from_secs(2));
    let s = status(&over);
    let app = &s["containerStatuses"][0];
    assert!(app["state"]["terminated"].is_object(), "{s:#}");
    assert_eq!(app["restartCount"], 0, "{s:#}");
    assert_eq!(s["reason"], "Evicted", "{s:#}");
    let rows = env.rows();
    let row = rows.iter().find(|r| r[1] == over).unwrap();
    assert_eq!((row[2].as_str(), row[3].as_str()), ("0/1", "Error"));
    // The pod under its limit was measured all along and runs on.
    env.wait_rows("the other pod Running", 5, |rows| {
        rows.iter()
            .any(|r| r[1] == under && r[2] == "1/1" && r[3] == "Running")
    });
    let d = env.ok(&["describe", "pod", &under]);
    assert_eq!(event_count(&d, "Evicted", "EmptyDir"), 0, "{d}");
    env.ok(&["delete", "pod", &over, &under]);
    env.wait_rows("the pods gone", 30, |rows| rows.is_empty());
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// A pod's status as JSON (`get pod NAME -o json`).
fn pod_status(env: &Env, name: &str) -> serde_json::Value {
    let pod: serde_json::Value =
        serde_json::from_str(&env.ok(&["get", "pod", name, "-o", "json"])).unwrap();
    pod["status"].clone()
}

/// The node-pressure eviction's marks on an evicted pod's status: Failed,
/// reason `Evicted`, `message` starting with `prefix` and holding `part`,
/// kubelet's `DisruptionTarget` condition first with the same message.
fn assert_pressure_evicted(env: &Env, name: &str, prefix: &str, part: &str) -> String {
    let s = pod_status(env, name);
    assert_eq!(s["phase"], "Failed", "{s:#}");
    assert_eq!(s["reason"], "Evicted", "{s:#}");
    let message = s["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.starts_with(prefix) && message.contains(part),
        "{message:?} is not {prefix:?}…{part:?}"
    );
    let first = &s["conditions"][0];
    assert_eq!(first["type"], "DisruptionTarget", "{s:#}");
    assert_eq!(first["status"], "True", "{s:#}");
    assert_eq!(first["reason"], "TerminationByKubelet", "{s:#}");
    assert_eq!(first["message"].as_str(), Some(message.as_str()), "{s:#}");
    let d = env.ok(&["describe", "pod", name]);
    assert_eq!(event_count(&d, "Evicted", message.trim_end()), 1, "{d}");
    message
}

/// The memory limit of the pods' parent cgroup (cgroup v1's
/// `/podrun/memory.limit_in_bytes`), set for a test and put back when dropped,
/// even when the test fails.
struct PodsMemoryLimit {
    file: std::path::PathBuf,
    before: String,
}

impl PodsMemoryLimit {
    fn set(bytes: u64) -> PodsMemoryLimit {
        let dir = Path::new("/sys/fs/cgroup/memory/podrun");
        assert!(
            Path::new("/sys/fs/cgroup/memory").is_dir(),
            "this test needs cgroup v1's memory hierarchy (the machine's hybrid layout)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let file = dir.join("memory.limit_in_bytes");
        let before = std::fs::read_to_string(&file).unwrap().trim().to_string();
        std::fs::write(&file, bytes.to_string()).unwrap();
        PodsMemoryLimit { file, before }
    }
}

impl Drop for PodsMemoryLimit {
    fn drop(&mut self) {
        // -1: no limit (the value read, page-rounded i64::MAX, is refused by
        // some kernels as too large).
        let back = if self.before.len() >= 19 {
            "-1"
        } else {
            &self.before
        };
        let _ = std::fs::write(&self.file, back);
    }
}

/// Node-pressure eviction by memory, made by a memory limit on the pods'
/// parent cgroup (kubelet's node allocatable; `allocatableMemory.available`)
/// rather than by filling the machine: with `memory.available<250Mi` and a
/// 300Mi parent, a BestEffort pod that takes ~80Mi is evicted — over its
/// request, it ranks before a Burstable pod within its request — with
/// kubelet's message and DisruptionTarget condition, and never restarted;
/// its memory freed, the other pod runs on.
#[test]
fn memory_pressure_evicts_the_pod_most_over_its_request() {
    let env = Env::new(&SUITE, "mempressure");
    let hog = env.name("ag17-hog");
    let calm = env.name("ag17-calm");
    let _limit = PodsMemoryLimit::set(300 << 20);
    let mut config = std::fs::read_to_string(&env.network.config_file).unwrap();
    config.push_str("[eviction_hard]\n\"memory.available\" = \"250Mi\"\n");
    std::fs::write(&env.network.config_file, config).unwrap();
    let mut agent = env.serve(None, &[], &[("PODRUN_HOUSEKEEPING_INTERVAL_MS", "300")]);
    let r = registry();
    let out = env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {calm}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sleep", "3600"]
    resources: {{requests: {{memory: 16Mi}}}}
"#
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_rows("the calm pod Running", 60, |rows| {
        rows.iter().any(|r| r[1] == calm && r[3] == "Running")
    });
    let out = env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {hog}}}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 30
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "trap '' TERM; x=$(head -c 80000000 /dev/zero | tr '\\0' a); while true; do sleep 1; done"]
"#
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_rows("the hog evicted", 60, |rows| {
        rows.iter()
            .any(|r| r[1] == hog && (r[3] == "Evicted" || r[3] == "Error"))
    });
    assert_pressure_evicted(
        &env,
        &hog,
        "The node was low on resource: memory. Threshold quantity: 250Mi, available: ",
        ". Container app was using ",
    );
    // It stays stopped; the calm pod, within its request, is not evicted once
    // the hog's memory is back.
    std::thread::sleep(Duration::from_secs(3));
    let s = pod_status(&env, &hog);
    assert_eq!(s["containerStatuses"][0]["restartCount"], 0, "{s:#}");
    assert!(
        s["containerStatuses"][0]["state"]["terminated"].is_object(),
        "{s:#}"
    );
    let s = pod_status(&env, &calm);
    assert_eq!(s["phase"], "Running", "{s:#}");
    env.ok(&["delete", "pod", &hog, &calm]);
    env.wait_rows("the pods gone", 30, |rows| rows.is_empty());
    env.assert_nothing_left();
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
}

/// The node's root on a 64 MiB tmpfs (mounted by the test, unmounted with
/// it), `nodefs.available<50%`: a pod that writes 40 MiB into its writable
/// layer is evicted for ephemeral storage with kubelet's message, `describe
/// node` shows DiskPressure while its layer is there, and no pressure once
/// the pod is deleted.
#[test]
fn disk_pressure_evicts_the_pod_that_fills_the_root() {
    let env = Env::new(&SUITE, "diskpressure");
    let hog = env.name("ag17-disk");
    std::fs::create_dir_all(&env.root).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&env.root)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs on {}", env.root.display());
    let mut config = std::fs::read_to_string(&env.network.config_file).unwrap();
    config.push_str("[eviction_hard]\n\"nodefs.available\" = \"50%\"\n");
    std::fs::write(&env.network.config_file, config).unwrap();
    let mut agent = env.serve(None, &[], &[("PODRUN_HOUSEKEEPING_INTERVAL_MS", "300")]);
    let pressure = |want: &str| {
        let d = env.ok(&["describe", "node"]);
        let line = d
            .lines()
            .find(|l| l.trim_start().starts_with("DiskPressure"))
            .unwrap_or_default()
            .to_string();
        assert!(
            line.split_whitespace().nth(1) == Some(want),
            "DiskPressure is not {want}: {line:?}\n{d}"
        );
        line
    };
    pressure("False");
    let r = registry();
    let out = env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {hog}}}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "trap '' TERM; dd if=/dev/zero of=/fill bs=1M count=40 && while true; do sleep 1; done"]
"#
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_rows("the pod evicted", 60, |rows| {
        rows.iter()
            .any(|r| r[1] == hog && (r[3] == "Evicted" || r[3] == "Error"))
    });
    let message = assert_pressure_evicted(
        &env,
        &hog,
        "The node was low on resource: ephemeral-storage. Threshold quantity: 32Mi, available: ",
        ". Container app was using ",
    );
    assert!(
        message.ends_with(", request is 0, has larger consumption of ephemeral-storage. "),
        "{message:?}"
    );
    let line = pressure("True");
    assert!(
        line.contains("KubeletHasDiskPressure") && line.contains("kubelet has disk pressure"),
        "{line}"
    );
    let events = env.ok(&["get", "events"]);
    assert!(
        events.lines().any(|l| l.contains("EvictionThresholdMet")
            && l.contains("node/")
            && l.contains("Attempting to reclaim ephemeral-storage")),
        "{events}"
    );
    env.ok(&["delete", "pod", &hog]);
    env.wait_rows("the pod gone", 30, |rows| rows.is_empty());
    pressure("False");
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.kill();
    // The test's own tmpfs goes before the check for mounts left.
    let unmounted = Command::new("umount").arg(&env.root).status().unwrap();
    assert!(unmounted.success(), "umount {}", env.root.display());
    env.assert_nothing_left();
}

/// `top pod` and `top node` print kubectl top's tables from the cgroups: a
/// container that spins uses about a CPU, one that sleeps next to none; with
/// `--containers` a row per container. Before a pod has a window of samples,
/// `top` says what kubectl says of a new pod; the agent's housekeeping
/// samples give one.
#[test]
fn top_shows_the_cpu_and_memory_of_pods_and_the_node() {
    let env = Env::new(&SUITE, "top");
    let pod = env.name("ag17-top");
    let mut agent = env.serve(None, &[], &[("PODRUN_HOUSEKEEPING_INTERVAL_MS", "60000")]);
    let r = registry();
    let out = env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: spin
    image: {r}/busybox:latest
    command: ["sh", "-c", "while :; do :; done"]
  - name: idle
    image: {r}/busybox:latest
    command: ["sleep", "3600"]
    resources: {{requests: {{cpu: 100m, memory: 16Mi}}, limits: {{memory: 32Mi}}}}
"#
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_rows("the pod Running", 30, |rows| {
        rows.iter()
            .any(|r| r[1] == pod && r[2] == "2/2" && r[3] == "Running")
    });
    // The first look: no window yet (the housekeeping period is a minute).
    let first = env.podrun(&["top", "pod", &pod]);
    let e = String::from_utf8_lossy(&first.stderr);
    assert!(!first.status.success(), "{}", text(&first));
    assert!(
        e.contains(&format!(
            "Metrics not available for pod default/{pod}, age: "
        )),
        "{e}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let table = env.ok(&["top", "pod", &pod]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let head: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(head, ["NAME", "CPU(cores)", "MEMORY(bytes)"], "{table}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], pod, "{table}");
    let millis = |cell: &str| -> u64 {
        cell.strip_suffix('m')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{cell:?} is not a CPU cell"))
    };
    assert!(
        millis(row[1]) >= 300,
        "a spinning shell uses about a CPU: {table}"
    );
    assert!(row[2].ends_with("Mi"), "{table}");
    let table = env.ok(&["top", "pod", "--containers", "-A", "--sort-by", "cpu"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
        "{table}"
    );
    let spin = rows
        .iter()
        .find(|r| r[2] == "spin")
        .expect("a row for spin");
    let idle = rows
        .iter()
        .find(|r| r[2] == "idle")
        .expect("a row for idle");
    assert_eq!((spin[0], spin[1]), ("default", pod.as_str()), "{table}");
    assert!(millis(spin[3]) >= 300, "{table}");
    assert!(millis(idle[3]) < 50, "sleep uses next to no CPU: {table}");
    assert_eq!(rows[1][2], "spin", "sorted by CPU, most first: {table}");
    // The node: the first look made its first sample.
    let _ = env.podrun(&["top", "node"]);
    std::thread::sleep(Duration::from_millis(1100));
    let table = env.ok(&["top", "node"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
        "{table}"
    );
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(rows[1][0], hostname.trim(), "{table}");
    assert!(
        millis(rows[1][1]) >= 300,
        "the node runs the spinning shell: {table}"
    );
    assert!(
        rows[1][2].ends_with('%') && rows[1][4].ends_with('%'),
        "{table}"
    );
    // Errors as kubectl's.
    let missing = env.podrun(&["top", "pod", "nope"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("pods \"nope\" not found"));
    let empty = env.podrun(&["top", "pod", "-n", "empty"]);
    assert!(empty.status.success(), "{}", text(&empty));
    assert_eq!(
        String::from_utf8_lossy(&empty.stderr).trim(),
        "No resources found in empty namespace."
    );
    // describe node: kubectl's layout, with this pod's requests and limits.
    let d = env.ok(&["describe", "node"]);
    assert!(
        d.starts_with(&format!("Name:               {}\n", hostname.trim())),
        "{d}"
    );
    for want in [
        "Roles:              <none>\n",
        "  Ready            True    ",
        "Non-terminated Pods:          (1 in total)\n",
        "  Namespace                   Name",
        "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n",
        "Events:              <none>\n",
    ] {
        assert!(d.contains(want), "{want:?} in\n{d}");
    }
    let line = d
        .lines()
        .find(|l| l.starts_with("  default ") && l.contains(&pod))
        .unwrap_or_else(|| panic!("a line for the pod in\n{d}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &cells[..4],
        ["default", pod.as_str(), "100m", "(5%)"],
        "{line}"
    );
    assert_eq!(
        (cells[4], cells[6], cells[8]),
        ("0", "16Mi", "32Mi"),
        "{line}"
    );
    let other = env.podrun(&["describe", "node", "elsewhere"]);
    assert!(String::from_utf8_lossy(&other.stderr).contains("nodes \"elsewhere\" not found"));
    env.ok(&["delete", "pod", &pod]);
    env.assert_nothing_left();
    agent.kill();
}

/// `GET path` on 127.0.0.1:`port`: the status line and the body.
fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics address");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// The samples of a Prometheus text exposition (`name{labels}` → value),
/// every line checked: a `# HELP` or `# TYPE` comment (a known type, before
/// the family's samples), or a sample whose value is a number.
fn parse_exposition(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut samples = std::collections::BTreeMap::new();
    let mut typed = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("a sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        let name = key.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "{name} has no # TYPE before it");
        assert!(
            samples.insert(key.to_owned(), value).is_none(),
            "{key} twice"
        );
    }
    samples
}

/// `serve --metrics-address` exposes kubelet's metrics in the Prometheus text
/// format: running pods and containers, the pod start and pod worker
/// histograms, the image pull, and the containers' CPU and working set under
/// cAdvisor's names; other paths are 404.
#[test]
fn the_metrics_address_serves_kubelets_metrics() {
    let env = Env::new(&SUITE, "metrics");
    let pod = env.name("ag17-metrics");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut agent = env.serve(None, &["--metrics-address", &address], &[]);
    let r = registry();
    let out = env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sleep", "3600"]
"#
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), env.diag());
    env.wait_rows("the pod Running", 30, |rows| {
        rows.iter().any(|r| r[1] == pod && r[3] == "Running")
    });
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let samples = parse_exposition(&body);
    let get = |key: &str| -> f64 {
        *samples
            .get(key)
            .unwrap_or_else(|| panic!("{key} in\n{body}"))
    };
    assert_eq!(get("kubelet_running_pods"), 1.0);
    assert_eq!(
        get("kubelet_running_containers{container_state=\"running\"}"),
        1.0
    );
    assert_eq!(get("kubelet_pod_start_duration_seconds_count"), 1.0);
    assert!(get("kubelet_pod_worker_duration_seconds_count{operation_type=\"create\"}") >= 1.0);
    assert_eq!(
        get("kubelet_image_pull_duration_seconds_count{image_size_in_bytes=\"0-10MB\"}"),
        1.0,
        "busybox is pulled once, and is under 10MB"
    );
    let labels = format!("{{container=\"app\",namespace=\"default\",pod=\"{pod}\"}}");
    assert!(get(&format!("container_cpu_usage_seconds_total{labels}")) >= 0.0);
    assert!(get(&format!("container_memory_working_set_bytes{labels}")) > 0.0);
    let (status, _) = http_get(port, "/other");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    env.ok(&["delete", "pod", &pod]);
    let (_, body) = http_get(port, "/metrics");
    assert_eq!(
        parse_exposition(&body)["kubelet_running_pods"],
        0.0,
        "{body}"
    );
    env.assert_nothing_left();
    agent.kill();
}
