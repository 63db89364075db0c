//! The systemd cgroup driver (`cgroup_driver = "systemd"` in podrun's config), end to
//! end through `podrun run`: the pod's cgroup is a transient slice and each
//! container's a scope in it, with the pod's and the container's limits in their
//! cgroup files, and nothing (unit or cgroup) left once the pod is gone.
//!
//! The tests that run pods need systemd as PID 1 on cgroup v2: they are ignored on
//! an ordinary host and run in the VM (`scripts/vm-v2.sh --systemd`, which runs them
//! with `--include-ignored`). `PODRUN_RUNTIME` picks the backend (embedded, crun).

mod support;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One test's roots, config (the systemd driver and a private network) and
/// manifest, all under a temporary directory.
struct Env {
    network: support::TestNetwork,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(driver: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("podrun-systemd-")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("podrun.toml"),
            format!("cgroup_driver = \"{driver}\"\n"),
        )
        .unwrap();
        Env {
            network: support::TestNetwork::new(dir.path(), &dir.path().join("root")),
            dir,
        }
    }

    /// `podrun run -f <manifest>`, not yet started.
    fn run(&self, manifest: &str) -> Command {
        let file = self.dir.path().join("pod.yaml");
        std::fs::write(&file, manifest).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_podrun"));
        command
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--run-root")
            .arg(self.dir.path().join("run"))
            .arg("--config")
            .arg(&self.network.config_file)
            .arg("--registries-conf")
            .arg(self.dir.path().join("none.conf"))
            .arg("--hosts-dir")
            .arg(self.dir.path().join("none.d"))
            .args(["run", "-f"])
            .arg(&file)
            .env("HOME", self.dir.path())
            .env("REGISTRY_AUTH_FILE", self.dir.path().join("auth.json"))
            .stdin(Stdio::null());
        command
    }

    /// A directory the test shares with its pod (a hostPath volume).
    fn shared(&self) -> PathBuf {
        let dir = self.dir.path().join("shared");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

impl Drop for Env {
    /// A failed test's pod may leave its mounts below the directory.
    fn drop(&mut self) {
        support::unmount_below(self.dir.path());
    }
}

fn registry() -> String {
    std::env::var("PODRUN_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

const SLICE_ROOT: &str = "/sys/fs/cgroup/podrun.slice";

/// The pod slices (their directories) under podrun.slice whose name has `tag`.
fn pod_slices(tag: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for qos in ["", "podrun-burstable.slice", "podrun-besteffort.slice"] {
        let dir = Path::new(SLICE_ROOT).join(qos);
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(tag) && name.ends_with(".slice") {
                out.push(entry.path());
            }
        }
    }
    out
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}/{file}: {e}", dir.display()))
        .trim()
        .to_string()
}

/// `systemctl <args…>`'s stdout (its status is not checked: `is-active` of a
/// unit that is gone says so and exits non-zero).
fn systemctl(args: &[&str]) -> String {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .expect("run systemctl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The loaded units whose name begins with `prefix`.
fn units(prefix: &str) -> Vec<String> {
    systemctl(&["list-units", "--all", "--plain", "--no-legend", "podrun-*"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|u| u.starts_with(prefix))
        .map(String::from)
        .collect()
}

fn assert_systemd() {
    assert!(
        Path::new("/run/systemd/system").is_dir(),
        "systemd is not PID 1 here: run this test in scripts/vm-v2.sh --systemd"
    );
    assert!(
        support::cgroup_v2(),
        "/sys/fs/cgroup is not cgroup v2: run this test in scripts/vm-v2.sh --systemd"
    );
}

/// Wait for `line` on the run's stdout; every line read is returned.
fn wait_line(lines: &mut impl Iterator<Item = std::io::Result<String>>, line: &str) -> String {
    let mut seen = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push_str(&l);
        seen.push('\n');
        if l == line {
            return seen;
        }
    }
    panic!("podrun run ended before {line:?}; its output:\n{seen}");
}

#[test]
#[ignore = "needs systemd as PID 1 on cgroup v2: runs in scripts/vm-v2.sh --systemd"]
fn a_pod_is_a_slice_and_its_container_a_scope_with_their_limits() {
    assert_systemd();
    let env = Env::new("systemd");
    let r = registry();
    let shared = env.shared();
    let tag = format!("sdlimits{}", std::process::id());
    // The container shows what it sees (its cgroup namespace: its scope is its
    // root), says ready, and waits for the test to have looked from outside.
    let script = "cat /proc/self/cgroup /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/cpu.max \
                  /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory.oom.group; echo ready; \
                  until [ -e /shared/go ]; do sleep 0.1; done";
    let mut child = env
        .run(&format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {tag}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "{script}"]
    resources:
      requests: {{cpu: 250m, memory: 32Mi}}
      limits: {{cpu: 500m, memory: 64Mi}}
    volumeMounts:
    - name: shared
      mountPath: /shared
  volumes:
  - name: shared
    hostPath: {{path: {}}}
"#,
            shared.display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let seen = wait_line(&mut lines, "app | ready");
    // Touch the file even when a check below fails, so the pod ends.
    struct Go(PathBuf);
    impl Drop for Go {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0.join("go"), "");
        }
    }
    let go = Go(shared.clone());

    // Inside: the scope's own files (cpu.weight by the linear rule, as the
    // cgroupfs driver: 256 shares → 10; 500m → 50 ms per 100 ms).
    assert_eq!(
        seen,
        "app | 0::/\napp | 10\napp | 50000 100000\napp | 67108864\napp | 1\napp | ready\n"
    );
    // Outside: the pod slice, Burstable, with kubelet's pod-level limits.
    let slices = pod_slices(&tag);
    assert_eq!(slices.len(), 1, "{slices:?}");
    let slice = &slices[0];
    let slice_name = slice.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        slice_name.starts_with(&format!("podrun-burstable-poddefault_{tag}_")),
        "{slice_name}"
    );
    assert_eq!(
        slice.parent().unwrap(),
        Path::new(SLICE_ROOT).join("podrun-burstable.slice")
    );
    assert_eq!(systemctl(&["is-active", &slice_name]), "active");
    assert_eq!(read(slice, "cpu.weight"), "10");
    assert_eq!(read(slice, "cpu.max"), "50000 100000");
    assert_eq!(read(slice, "memory.max"), "67108864");
    // The container's scope in it, known to systemd as in that slice.
    let scopes: Vec<String> = std::fs::read_dir(slice)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".scope"))
        .collect();
    assert_eq!(scopes.len(), 1, "{scopes:?}");
    let scope_name = &scopes[0];
    assert!(
        scope_name.starts_with(&format!("podrun-default-{tag}-"))
            && scope_name.ends_with("-app.scope"),
        "{scope_name}"
    );
    assert_eq!(systemctl(&["is-active", scope_name]), "active");
    assert_eq!(
        systemctl(&["show", "-p", "Slice", "--value", scope_name]),
        slice_name
    );
    // crun (on v2) runs the container in a sub-cgroup `container` of its scope
    // (its `run.oci.systemd.subgroup` default), libcontainer in the scope itself.
    let scope = slice.join(scope_name);
    let leaf = if std::env::var("PODRUN_RUNTIME").is_ok_and(|r| r == "crun") {
        scope.join("container")
    } else {
        scope.clone()
    };
    assert_eq!(read(&leaf, "memory.max"), "67108864");
    assert_eq!(read(&leaf, "cpu.max"), "50000 100000");
    assert!(!read(&leaf, "cgroup.procs").is_empty());

    drop(go);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "podrun run did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    // Nothing left: no unit, no cgroup.
    assert!(!slice.exists(), "{} left", slice.display());
    assert_eq!(units(&slice_name), Vec::<String>::new());
    assert_eq!(units(scope_name), Vec::<String>::new());
    assert_eq!(pod_slices(&tag), Vec::<PathBuf>::new());
}

/// `podrun run` of a BestEffort pod named `tag` whose container sleeps, once
/// its container said it is ready: the process, its stdout (kept open, so
/// what podrun prints still has a reader) and the pod's one slice.
fn sleeping_pod(
    env: &Env,
    tag: &str,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    PathBuf,
) {
    let r = registry();
    let mut child = env
        .run(&format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {tag}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "echo ready; sleep 1000"]
"#
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    wait_line(&mut lines, "app | ready");
    let slices = pod_slices(tag);
    assert_eq!(slices.len(), 1, "{slices:?}");
    (child, lines, slices[0].clone())
}

#[test]
#[ignore = "needs systemd as PID 1 on cgroup v2: runs in scripts/vm-v2.sh --systemd"]
fn a_besteffort_pod_slice_is_stopped_with_what_runs_in_it() {
    assert_systemd();
    let env = Env::new("systemd");
    let tag = format!("sdkill{}", std::process::id());
    let (mut child, _stdout, slice) = sleeping_pod(&env, &tag);
    assert_eq!(
        slice.parent().unwrap(),
        Path::new(SLICE_ROOT).join("podrun-besteffort.slice")
    );
    assert_eq!(read(&slice, "memory.max"), "max");
    // Ctrl-C: `podrun run` tears the pod down (the containers stopped, the
    // monitor ends and stops the slice).
    // SAFETY: kill signals the test's own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "podrun run did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let slice_name = slice.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        !slice.exists(),
        "{} left; podrun run said: {stderr}",
        slice.display()
    );
    assert_eq!(units(&slice_name), Vec::<String>::new());
    assert_eq!(
        units(&format!("podrun-default-{tag}-")),
        Vec::<String>::new()
    );
}

/// A monitor SIGKILLed leaves its pod's scope and slice running; ending the pod
/// then cleans up after it (`podrun-monitor cleanup`): no unit, no cgroup.
#[test]
#[ignore = "needs systemd as PID 1 on cgroup v2: runs in scripts/vm-v2.sh --systemd"]
fn a_killed_monitors_pod_leaves_no_unit() {
    assert_systemd();
    let env = Env::new("systemd");
    let tag = format!("sdmon{}", std::process::id());
    let (mut child, _stdout, slice) = sleeping_pod(&env, &tag);
    // This test's monitor: its command line names the test's directory.
    let dir = env.dir.path().to_string_lossy().into_owned();
    let monitors: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| {
            let pid = p.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.contains("podrun-monitor") && cmdline.contains(&dir)).then_some(pid)
        })
        .collect();
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    // SAFETY: kill signals this test's own pod monitor.
    unsafe { libc::kill(monitors[0], libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));
    assert!(slice.exists(), "the pod outlives its monitor");
    // SAFETY: kill signals the test's own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "podrun run did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let slice_name = slice.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        !slice.exists(),
        "{} left; podrun run said: {stderr}",
        slice.display()
    );
    assert_eq!(units(&slice_name), Vec::<String>::new());
    assert_eq!(
        units(&format!("podrun-default-{tag}-")),
        Vec::<String>::new()
    );
}

/// The driver is checked before anything is made: an unknown one is refused, and
/// `systemd` is where systemd is not PID 1 (elsewhere it gets past that check and
/// fails later, at the pull of an image no registry has).
#[test]
fn the_cgroup_driver_is_checked_at_start() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - {name: a, image: 127.0.0.1:9/none}\n";
    let env = Env::new("cgroups");
    let out = env.run(pod).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "cgroup_driver: cgroup driver \"cgroups\": must be \"cgroupfs\" or \"systemd\""
        ),
        "{stderr}"
    );
    let env = Env::new("systemd");
    let out = env.run(pod).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let refused = stderr.contains(
        "cgroup_driver: cgroup driver systemd: systemd is not running as PID 1 here \
         (/run/systemd/system is missing); use cgroupfs",
    );
    assert_eq!(
        refused,
        !Path::new("/run/systemd/system").is_dir(),
        "{stderr}"
    );
}
