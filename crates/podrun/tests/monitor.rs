//! The per-pod monitor for real: busybox from the local registry, specs from
//! podrun_oci, the OCI runtime `PODRUN_RUNTIME` names (default `embedded`, or
//! `crun`, `runc`), and `podrun-monitor` in a process of its own; then a check
//! that nothing of the pod is left on the machine.

mod support;

use podrun_oci::{ContainerInput, Host, ImageConfig, Mount, NamespacePaths, UserFiles};
use podrun_runtime::monitor::{read_exits, ContainerPlan, ExitRecord, PodPlan};
use podrun_runtime::sandbox::Namespace;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn registry() -> String {
    std::env::var("PODRUN_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

fn image() -> String {
    format!("{}/busybox:latest", registry())
}

/// The plan's runtime: `PODRUN_RUNTIME`, or `embedded`.
fn runtime() -> String {
    std::env::var("PODRUN_RUNTIME").unwrap_or_else(|_| "embedded".into())
}

fn monitor_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_podrun-monitor"))
}

/// A pod's worth of temp state; whatever a failed test left (monitor, runtime
/// state, rootfs mounts, cgroups, sandbox pins) is removed when dropped.
struct TestPod {
    dir: tempfile::TempDir,
    tag: String,
    images: podrun_image::Images,
    plan: PodPlan,
    monitor: Option<Child>,
}

impl TestPod {
    /// Pull busybox and prepare one container per `(name, fields)`: the fields of a
    /// k8s Container beyond its name and image.
    fn new(containers: &[(&str, serde_json::Value)], grace_ms: u64) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("podrun-mon-")
            .tempdir()
            .unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let tag = format!("{:x}{:x}", std::process::id(), nanos);
        let images = podrun_image::Images::open(&dir.path().join("root")).unwrap();
        let options = podrun_image::PullOptions {
            auth_files: Some(vec![]),
            ..Default::default()
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(images.pull(&image(), &options))
            .unwrap();
        let plan = PodPlan {
            pod_id: format!("mon-{tag}"),
            run_root: dir.path().join("run"),
            run_dir: dir.path().join("run/pods").join(&tag),
            pause: env!("CARGO_BIN_EXE_podrun-pause").into(),
            runtime: runtime(),
            hostname: format!("mon-{tag}"),
            host_network: false,
            share_pid: false,
            cgroup_parent: Some(format!("/podrun-test-{tag}")),
            containers: Vec::new(),
        };
        let mut pod = TestPod {
            dir,
            tag,
            images,
            plan,
            monitor: None,
        };
        std::fs::create_dir(pod.shared()).unwrap();
        for (name, fields) in containers {
            pod.add(name, fields, grace_ms);
        }
        pod
    }

    fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }

    fn add(&mut self, name: &str, fields: &serde_json::Value, grace_ms: u64) {
        let id = format!("mon-{}-{name}", self.tag);
        let rootfs = self.images.prepare_rootfs(&image(), &id).unwrap();
        let mut container = fields.clone();
        container["name"] = name.into();
        container["image"] = image().into();
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "mon", "namespace": "default", "uid": self.tag},
            "spec": {"containers": [container]},
        }))
        .unwrap();
        let image_config = ImageConfig {
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: vec!["sh".into()],
            ..Default::default()
        };
        let users = UserFiles::read(&rootfs).unwrap();
        let host = Host::detect().unwrap();
        let input = ContainerInput {
            pod: &pod,
            container: &pod.spec.as_ref().unwrap().containers[0],
            image_ref: &image(),
            image: &image_config,
            rootfs: &rootfs,
            users: &users,
            hostname: &self.plan.hostname,
            namespaces: NamespacePaths {
                net: Some(self.plan.ns_path(Namespace::Net)),
                ipc: Some(self.plan.ns_path(Namespace::Ipc)),
                uts: Some(self.plan.ns_path(Namespace::Uts)),
                pid: None,
            },
            cgroups_path: Some(format!("/podrun-test-{}/{name}", self.tag).into()),
            mounts: vec![Mount::bind(self.shared(), "/shared", false)],
            env: vec![],
            seccomp_localhost_profile: None,
            pids_limit: None,
            oom_score_adj: None,
            sandbox_id: Some(&self.plan.pod_id),
            honor_image_group: false,
            host: &host,
        };
        let generated = podrun_oci::build(&input).unwrap();
        let bundle = self.dir.path().join("bundles").join(&id);
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&generated.spec).unwrap(),
        )
        .unwrap();
        self.plan.containers.push(ContainerPlan {
            id,
            name: name.into(),
            bundle,
            log_path: self.plan.run_dir.join("logs").join(format!("{name}.log")),
            stop_signal: generated.stop_signal,
            grace_period_ms: grace_ms,
        });
    }

    fn plan_file(&self) -> PathBuf {
        self.dir.path().join("plan.json")
    }

    /// Run the monitor to its end; its exit status and stderr.
    fn run_monitor_output(&self) -> std::process::Output {
        std::fs::write(self.plan_file(), serde_json::to_vec(&self.plan).unwrap()).unwrap();
        monitor_command()
            .arg("--plan")
            .arg(self.plan_file())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn start_monitor(&mut self) {
        std::fs::write(self.plan_file(), serde_json::to_vec(&self.plan).unwrap()).unwrap();
        let child = monitor_command()
            .arg("--plan")
            .arg(self.plan_file())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.monitor = Some(child);
    }

    /// `podrun-monitor exec` in container `name`: its exit code, stdout, stderr.
    fn exec(&self, name: &str, tty: bool, args: &[&str]) -> (i32, String, String) {
        let c = self
            .plan
            .containers
            .iter()
            .find(|c| c.name == name)
            .unwrap();
        let mut cmd = monitor_command();
        cmd.arg("exec")
            .arg("--plan")
            .arg(self.plan_file())
            .args(["--id", &c.id]);
        if tty {
            cmd.arg("--tty");
        }
        let out = cmd
            .arg("--")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Stop the pod as its owner would: SIGTERM to the monitor, then wait.
    fn stop_monitor(&mut self) {
        let pid = self.monitor.as_ref().unwrap().id() as i32;
        // SAFETY: kill takes no pointers; `pid` is our child, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        self.wait_monitor(Duration::from_secs(20));
    }

    /// Wait for the monitor to exit; it must exit 0.
    fn wait_monitor(&mut self, limit: Duration) -> Duration {
        let start = Instant::now();
        let child = self.monitor.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.monitor = None;
                assert!(status.success(), "monitor: {status}");
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "monitor still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log(&self, name: &str) -> String {
        let c = self
            .plan
            .containers
            .iter()
            .find(|c| c.name == name)
            .unwrap();
        std::fs::read_to_string(&c.log_path).unwrap_or_default()
    }

    fn wait_log(&self, name: &str, text: &str) {
        let start = Instant::now();
        while !self.log(name).contains(text) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{name} never logged {text:?}: {}",
                self.log(name)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn exits(&self) -> HashMap<String, ExitRecord> {
        read_exits(&self.plan)
    }

    /// Processes of this pod: in its cgroups, or naming its hostname (the pause process).
    fn processes(&self, cgroup: &str) -> Vec<String> {
        let mut found = Vec::new();
        for p in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cgroups = std::fs::read_to_string(p.path().join("cgroup")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&self.plan.hostname) || cgroups.contains(cgroup) {
                let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
                found.push(format!("{cmdline} ({})", stat.trim()));
            }
        }
        found
    }

    /// Remove the rootfs mounts (the caller's), then check the monitor left nothing.
    fn assert_nothing_left(&self) {
        for c in &self.plan.containers {
            self.images.remove_rootfs(&c.id).unwrap();
        }
        let dir = self.dir.path().to_string_lossy().to_string();
        let mounts: Vec<String> = support::mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&dir))
            .collect();
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        let cgroup = format!("podrun-test-{}", self.tag);
        for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let left = h.path().join(&cgroup);
            assert!(!left.exists(), "cgroup left: {}", left.display());
        }
        let state: Vec<_> = std::fs::read_dir(self.plan.runtime_state_dir())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(state.is_empty(), "runtime state left: {state:?}");
        assert!(
            !self
                .plan
                .run_root
                .join("sandboxes")
                .join(&self.plan.pod_id)
                .exists(),
            "sandbox directory left"
        );
        // Orphans of a killed monitor are zombies until the machine's init reaps them.
        let start = Instant::now();
        loop {
            let left = self.processes(&cgroup);
            if left.is_empty() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "processes left: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestPod {
    fn drop(&mut self) {
        self.force_cleanup();
    }
}

impl TestPod {
    /// What a failed test (or a killed monitor) may leave: the monitor, the
    /// containers, the pause process, mounts, cgroups.
    fn force_cleanup(&mut self) {
        if let Some(mut child) = self.monitor.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting forks nothing, so libcontainer may do it in this threaded process.
        let backend = self.plan.backend();
        for c in &self.plan.containers {
            let _ = backend.delete(&c.id);
            let _ = self.images.remove_rootfs(&c.id);
        }
        // The pause process of this pod (its hostname argument is unique).
        for p in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("podrun-pause") && cmdline.contains(&self.plan.hostname) {
                if let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() {
                    // SAFETY: kill takes no pointers.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        support::unmount_below(self.dir.path());
        let sandbox = self.plan.run_root.join("sandboxes").join(&self.plan.pod_id);
        let _ = std::fs::remove_dir_all(sandbox);
        let cgroup = format!("podrun-test-{}", self.tag);
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = h.path().join(&cgroup);
            for c in &self.plan.containers {
                let _ = std::fs::remove_dir(parent.join(&c.name));
            }
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// `(stream, tag, content)` of each CRI log line, checking the timestamp's form.
fn cri_lines(log: &str) -> Vec<(String, String, String)> {
    log.lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let time = parts.next().unwrap();
            assert!(
                chrono::DateTime::parse_from_rfc3339(time).is_ok()
                    && time.ends_with('Z')
                    && time.len() == "2016-10-06T00:17:09.669794202Z".len(),
                "bad time in {l:?}"
            );
            let stream = parts.next().unwrap().to_string();
            let tag = parts.next().unwrap().to_string();
            (stream, tag, parts.next().unwrap_or("").to_string())
        })
        .collect()
}

fn sh(script: &str) -> serde_json::Value {
    serde_json::json!({"command": ["sh", "-c", script]})
}

fn line(stream: &str, tag: &str, text: &str) -> (String, String, String) {
    (stream.into(), tag.into(), text.into())
}

#[test]
fn a_pod_runs_to_completion_logs_and_leaves_nothing() {
    let mut pod = TestPod::new(
        &[
            (
                "first",
                sh("echo shared-data > /shared/f; echo hello; echo err >&2; printf tail; exit 3"),
            ),
            ("second", sh("sleep 0.2; cat /shared/f; echo second")),
        ],
        2000,
    );
    pod.start_monitor();
    pod.wait_monitor(Duration::from_secs(30));

    let mut first = cri_lines(&pod.log("first"));
    // stdout and stderr are separate pipes: only each stream's own order is defined.
    first.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        first,
        [
            line("stderr", "F", "err"),
            line("stdout", "F", "hello"),
            line("stdout", "P", "tail"),
        ]
    );
    assert_eq!(
        cri_lines(&pod.log("second")),
        [
            line("stdout", "F", "shared-data"),
            line("stdout", "F", "second")
        ]
    );
    assert_eq!(
        std::fs::read_to_string(pod.shared().join("f")).unwrap(),
        "shared-data\n"
    );
    let exits = pod.exits();
    let (a, b) = (&exits["first"], &exits["second"]);
    assert_eq!(
        (a.exit_code, a.signal, a.reason.as_str()),
        (3, None, "Error")
    );
    assert_eq!(
        (b.exit_code, b.signal, b.reason.as_str()),
        (0, None, "Completed")
    );
    for r in [a, b] {
        assert!(!r.oom_killed);
        assert!(r.started_at <= r.finished_at, "{r:?}");
    }
    pod.assert_nothing_left();
}

#[test]
fn sigterm_stops_the_pod_within_the_grace_period() {
    let mut pod = TestPod::new(
        &[
            (
                "polite",
                sh("trap 'echo bye; exit 0' TERM; echo ready; sleep 1000 & wait"),
            ),
            ("stubborn", sh("trap '' TERM; echo ready; sleep 1000")),
        ],
        2000,
    );
    pod.start_monitor();
    pod.wait_log("polite", "ready");
    pod.wait_log("stubborn", "ready");
    let term = chrono::Utc::now();
    let pid = pod.monitor.as_ref().unwrap().id() as i32;
    // SAFETY: kill takes no pointers; `pid` is our child, not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let took = pod.wait_monitor(Duration::from_secs(20));
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "stop took {took:?}"
    );

    let exits = pod.exits();
    let polite = &exits["polite"];
    assert_eq!((polite.exit_code, polite.signal), (0, None), "{polite:?}");
    let finished = chrono::DateTime::parse_from_rfc3339(&polite.finished_at).unwrap();
    assert!(
        finished.signed_duration_since(term) < chrono::TimeDelta::milliseconds(1500),
        "{polite:?}"
    );
    assert!(pod.log("polite").contains(" stdout F bye\n"));
    let stubborn = &exits["stubborn"];
    assert_eq!(
        (
            stubborn.exit_code,
            stubborn.signal,
            stubborn.reason.as_str()
        ),
        (137, Some(9), "Error"),
        "{stubborn:?}"
    );
    let finished = chrono::DateTime::parse_from_rfc3339(&stubborn.finished_at).unwrap();
    assert!(
        finished.signed_duration_since(term) >= chrono::TimeDelta::milliseconds(1900),
        "{stubborn:?}"
    );
    pod.assert_nothing_left();
}

#[test]
fn a_container_that_cannot_start_is_recorded_and_the_rest_run() {
    let mut pod = TestPod::new(
        &[
            (
                "broken",
                serde_json::json!({"command": ["/no/such/program"]}),
            ),
            (
                "missing",
                serde_json::json!({"command": ["no-such-program"]}),
            ),
            ("fine", sh("echo fine")),
        ],
        2000,
    );
    pod.start_monitor();
    pod.wait_monitor(Duration::from_secs(30));
    let exits = pod.exits();
    // As runc words it, whichever runtime ran the pod.
    for (name, message) in [
        (
            "broken",
            "exec: \"/no/such/program\": stat /no/such/program: no such file or directory",
        ),
        (
            "missing",
            "exec: \"no-such-program\": executable file not found in $PATH",
        ),
    ] {
        let record = &exits[name];
        assert_eq!(
            (record.reason.as_str(), record.exit_code),
            ("StartError", 128),
            "{record:?}"
        );
        assert!(
            record.message.as_deref().unwrap_or("").ends_with(message),
            "{record:?}"
        );
        // The runtime's own messages go to its log, but the container's init
        // (its child, before exec) may say something on the container's stderr.
        for (stream, _, text) in cri_lines(&pod.log(name)) {
            assert_eq!(stream, "stderr", "{text}");
        }
    }
    assert_eq!(exits["fine"].exit_code, 0);
    assert_eq!(cri_lines(&pod.log("fine")), [line("stdout", "F", "fine")]);
    pod.assert_nothing_left();
}

#[test]
fn an_oom_kill_is_recorded() {
    let mut pod = TestPod::new(
        &[(
            "hungry",
            serde_json::json!({
                "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                "resources": {"limits": {"memory": "16Mi"}},
            }),
        )],
        2000,
    );
    pod.start_monitor();
    pod.wait_monitor(Duration::from_secs(30));
    let hungry = &pod.exits()["hungry"];
    assert_eq!(
        (hungry.signal, hungry.oom_killed, hungry.reason.as_str()),
        (Some(9), true, "OOMKilled"),
        "{hungry:?}"
    );
    pod.assert_nothing_left();
}

#[test]
fn a_pod_whose_sandbox_fails_reports_it_and_leaves_nothing() {
    let mut pod = TestPod::new(&[("never", sh("echo never"))], 2000);
    pod.plan.pause = "/no/such/podrun-pause".into();
    let out = pod.run_monitor_output();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "pod {}: monitor: create sandbox: ",
            pod.plan.pod_id
        )) && stderr.contains("/no/such/podrun-pause"),
        "{stderr}"
    );
    assert!(pod.log("never").is_empty());
    assert!(pod.exits().is_empty());
    pod.assert_nothing_left();
}

#[test]
fn containers_outlive_a_killed_monitor_and_the_guard_cleans_up() {
    let mut pod = TestPod::new(&[("lasting", sh("echo ready; sleep 1000"))], 2000);
    pod.start_monitor();
    pod.wait_log("lasting", "ready");
    let mut monitor = pod.monitor.take().unwrap();
    monitor.kill().unwrap();
    monitor.wait().unwrap();
    // The container keeps running without its monitor (the agent re-adopts it, later).
    let cgroup = format!("podrun-test-{}", pod.tag);
    let left = pod.processes(&cgroup);
    assert!(
        left.iter().any(|p| p.starts_with("sleep 1000 ")),
        "{left:?}"
    );
    assert!(pod
        .plan
        .runtime_state_dir()
        .join(&pod.plan.containers[0].id)
        .exists());
    pod.force_cleanup();
    pod.assert_nothing_left();
}

#[test]
fn exec_runs_a_command_in_a_running_container() {
    let mut pod = TestPod::new(&[("shell", sh("echo ready; sleep 1000"))], 2000);
    pod.start_monitor();
    pod.wait_log("shell", "ready");

    let (code, out, err) = pod.exec(
        "shell",
        false,
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; echo $PATH; pwd; exit 7",
        ],
    );
    assert_eq!(code, 7, "{err}");
    assert_eq!(
        out,
        "out\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/\n"
    );
    assert_eq!(err, "err\n");
    // The command shares the container's file system and network namespace.
    let (code, out, _) = pod.exec("shell", false, &["cat", "/proc/1/cmdline"]);
    assert_eq!(code, 0);
    assert!(!out.is_empty());

    let (code, out, err) = pod.exec("shell", false, &["no-such-command"]);
    assert_eq!(code, 127, "{out} {err}");
    assert!(
        err.contains("no-such-command") && err.contains("not found"),
        "{err}"
    );

    // A real terminal: `tty` names it and `test -t` sees one.
    let (code, out, err) = pod.exec("shell", true, &["sh", "-c", "tty; test -t 0 && echo yes"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("/dev/pts/") && out.contains("yes"), "{out:?}");

    pod.stop_monitor();
    // The exec'd commands are not containers: no records, only the container's.
    assert_eq!(pod.exits().len(), 1);
    pod.assert_nothing_left();
}
