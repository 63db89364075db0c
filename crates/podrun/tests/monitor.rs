//! The per-pod monitor for real: busybox from the local registry, specs from
//! podrun_oci, the OCI runtime `PODRUN_RUNTIME` names (default `embedded`, or
//! `crun`, `runc`), and `podrun-monitor` in a process of its own, its
//! containers started by requests on its control socket as a pod manager
//! starts them; then a check that nothing of the pod is left on the machine.

mod support;

use podrun_oci::{ContainerInput, Host, ImageConfig, NamespacePaths, UserFiles};
use podrun_runtime::monitor::{
    monitor_alive, monitor_pid, read_exit, read_start, request, ContainerPlan, ControlError,
    ExitRecord, PodPlan, Request, Response,
};
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
    /// Every container prepared (bundle and rootfs made), for start requests.
    containers: Vec<ContainerPlan>,
    monitor: Option<Child>,
}

impl TestPod {
    /// Pull busybox and prepare one container per `(name, fields)` (the fields
    /// of a k8s Container beyond its name and image), for [`TestPod::start_all`].
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
            containers: Vec::new(),
            monitor: None,
        };
        std::fs::create_dir(pod.shared()).unwrap();
        for (name, fields) in containers {
            pod.add(name, "", fields, grace_ms);
        }
        pod
    }

    fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }

    /// A container for a start request (ID `mon-<tag>-<name><suffix>`): bundle
    /// and rootfs made, kept for the cleanup.
    fn add(
        &mut self,
        name: &str,
        suffix: &str,
        fields: &serde_json::Value,
        grace_ms: u64,
    ) -> ContainerPlan {
        let c = self.prepare(name, suffix, fields, grace_ms);
        self.containers.push(c.clone());
        c
    }

    /// The container prepared last under `name`.
    fn container(&self, name: &str) -> &ContainerPlan {
        self.containers.iter().rfind(|c| c.name == name).unwrap()
    }

    fn prepare(
        &mut self,
        name: &str,
        suffix: &str,
        fields: &serde_json::Value,
        grace_ms: u64,
    ) -> ContainerPlan {
        let id = format!("mon-{}-{name}{suffix}", self.tag);
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
        // kubelet's part, as the pod manager does it.
        let spec = &pod.spec.as_ref().unwrap().containers[0];
        let env = podrun_agent::container_config::expand::literal_env(spec).unwrap();
        let mounts = vec![podrun_oci::cri::Mount {
            host_path: self.shared().display().to_string(),
            container_path: "/shared".into(),
            ..Default::default()
        }];
        let config = podrun_agent::container_config::container_config(
            &pod,
            spec,
            &env,
            mounts,
            // The image as ImageStatus reports it: no user (root).
            &podrun_runtime::Image::default(),
            &Default::default(),
        )
        .unwrap();
        let sandbox = podrun_oci::cri::PodSandboxConfig {
            hostname: self.plan.hostname.clone(),
            metadata: podrun_oci::cri::PodSandboxMetadata {
                name: "mon".into(),
                uid: self.tag.clone(),
                namespace: "default".into(),
                attempt: 0,
            },
            ..Default::default()
        };
        let input = ContainerInput {
            sandbox: &sandbox,
            sandbox_id: Some(&self.plan.pod_id),
            config: &config,
            image: &image_config,
            rootfs: &rootfs,
            users: &users,
            namespaces: NamespacePaths {
                net: Some(self.plan.ns_path(Namespace::Net)),
                ipc: Some(self.plan.ns_path(Namespace::Ipc)),
                uts: Some(self.plan.ns_path(Namespace::Uts)),
                pid: None,
            },
            cgroups_path: Some(format!("/podrun-test-{}/{name}", self.tag).into()),
            seccomp_localhost_profile: None,
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
        ContainerPlan {
            id,
            name: name.into(),
            bundle,
            log_path: self.plan.run_dir.join("logs").join(format!("{name}.log")),
            stop_signal: generated.stop_signal,
            grace_period_ms: grace_ms,
            stdin: false,
            stdin_once: false,
            tty: false,
            log_rotation: None,
        }
    }

    fn plan_file(&self) -> PathBuf {
        self.dir.path().join("plan.json")
    }

    /// Run the monitor of `plan` to its end (it must fail); its exit status and stderr.
    fn run_monitor_output(&self, plan: &PodPlan) -> std::process::Output {
        plan.write(&self.plan_file()).unwrap();
        monitor_command()
            .arg("--plan")
            .arg(self.plan_file())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Start the monitor, wait for its `ready` line on stdout (the agent
    /// waits for it), then check that it answers on its socket at once.
    fn start_monitor(&mut self) {
        use std::io::BufRead;
        self.plan.write(&self.plan_file()).unwrap();
        let mut child = monitor_command()
            .arg("--plan")
            .arg(self.plan_file())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.monitor = Some(child);
        assert_eq!(line, podrun_runtime::monitor::READY, "the monitor's stdout");
        match request(&self.plan.run_dir, &Request::State, Duration::from_secs(20)) {
            Ok(Response::State { .. }) => {}
            other => panic!("state after ready: {other:?}"),
        }
    }

    /// `podrun-monitor exec` in container `name`: its exit code, stdout, stderr.
    fn exec(&self, name: &str, tty: bool, args: &[&str]) -> (i32, String, String) {
        let c = self.container(name);
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
        std::fs::read_to_string(&self.container(name).log_path).unwrap_or_default()
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

    /// Ask the monitor; its answer (it must give one).
    fn ask(&self, req: Request) -> Response {
        request(&self.plan.run_dir, &req, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{req:?}: {e}"))
    }

    /// Start `c` on request; its pid and start time.
    fn start(&self, c: &ContainerPlan) -> (i32, String) {
        match self.ask(Request::Start {
            container: c.clone(),
        }) {
            Response::Started { pid, started_at } => (pid, started_at),
            other => panic!("start {}: {other:?}", c.name),
        }
    }

    /// Start every container prepared so far, in order, as a pod manager
    /// starts a pod's containers: each one's answer.
    fn start_all(&self) -> Vec<Response> {
        self.containers
            .iter()
            .map(|c| {
                self.ask(Request::Start {
                    container: c.clone(),
                })
            })
            .collect()
    }

    /// Wait until every container started has an exit record, then shut the
    /// pod down (it must end cleanly).
    fn finish(&mut self) {
        for c in &self.containers {
            if let Some(start) = read_start(&self.plan, &c.name) {
                self.wait_exit(&c.name, &start.started_at);
            }
        }
        assert_eq!(self.ask(Request::Shutdown), Response::Ok);
        self.wait_monitor(Duration::from_secs(20));
    }

    /// Wait for the exit record of container `name`'s run that started at `started_at`.
    fn wait_exit(&self, name: &str, started_at: &str) -> ExitRecord {
        let start = Instant::now();
        loop {
            if let Some(exit) = read_exit(&self.plan, name) {
                if exit.started_at == started_at {
                    return exit;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{name} (started {started_at}) never exited: {:?}",
                read_exit(&self.plan, name)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The monitor's view of container `name`.
    fn state_of(&self, name: &str) -> Option<podrun_runtime::monitor::ContainerState> {
        match self.ask(Request::State) {
            Response::State { containers } => containers.into_iter().find(|c| c.name == name),
            other => panic!("state: {other:?}"),
        }
    }

    /// The exit records written, by container name.
    fn exits(&self) -> HashMap<String, ExitRecord> {
        self.containers
            .iter()
            .filter_map(|c| Some((c.name.clone(), read_exit(&self.plan, &c.name)?)))
            .collect()
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

    /// The pod's cgroup parent (`/podrun-test-<tag>`) in every hierarchy: one directory
    /// on v2 (/sys/fs/cgroup is the hierarchy), one per mounted hierarchy on v1.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let cgroup = format!("podrun-test-{}", self.tag);
        if support::cgroup_v2() {
            return vec![PathBuf::from("/sys/fs/cgroup").join(cgroup)];
        }
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|h| h.path().join(&cgroup))
            .collect()
    }

    /// Remove the rootfs mounts (the caller's), then check the monitor left nothing.
    fn assert_nothing_left(&self) {
        for c in &self.containers {
            self.images.remove_rootfs(&c.id).unwrap();
        }
        let dir = self.dir.path().to_string_lossy().to_string();
        let mounts: Vec<String> = support::mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&dir))
            .collect();
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        for left in self.cgroup_dirs() {
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
        let cgroup = format!("podrun-test-{}", self.tag);
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
        for c in &self.containers {
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
        for parent in self.cgroup_dirs() {
            for c in &self.containers {
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
fn containers_log_and_record_their_exits_and_the_pod_leaves_nothing() {
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
    pod.start_all();
    pod.finish();

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
    pod.start_all();
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
    let answers = pod.start_all();
    assert!(
        matches!(
            answers.as_slice(),
            [
                Response::StartFailed { .. },
                Response::StartFailed { .. },
                Response::Started { .. }
            ]
        ),
        "{answers:?}"
    );
    pod.finish();
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
    pod.start_all();
    pod.finish();
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
    let pod = TestPod::new(&[("never", sh("echo never"))], 2000);
    let mut plan = pod.plan.clone();
    plan.pause = "/no/such/podrun-pause".into();
    let out = pod.run_monitor_output(&plan);
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
    pod.start_all();
    pod.wait_log("lasting", "ready");
    assert!(monitor_alive(&pod.plan.run_dir));
    let mut monitor = pod.monitor.take().unwrap();
    monitor.kill().unwrap();
    monitor.wait().unwrap();
    // Nothing the monitor started holds its lock: it is seen gone at once.
    assert!(!monitor_alive(&pod.plan.run_dir));
    assert_eq!(monitor_pid(&pod.plan.run_dir), None);
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
        .join(&pod.container("lasting").id)
        .exists());
    pod.force_cleanup();
    pod.assert_nothing_left();
}

#[test]
fn exec_runs_a_command_in_a_running_container() {
    let mut pod = TestPod::new(&[("shell", sh("echo ready; sleep 1000"))], 2000);
    pod.start_monitor();
    pod.start_all();
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

fn error_of(response: Response) -> String {
    match response {
        Response::Error { message } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn the_monitor_starts_restarts_stops_and_removes_containers_on_request() {
    let mut pod = TestPod::new(&[], 2000);
    pod.start_monitor();
    let run_dir = pod.plan.run_dir.clone();
    let monitor = pod.monitor.as_ref().unwrap().id() as i32;
    assert!(monitor_alive(&run_dir));
    assert_eq!(monitor_pid(&run_dir), Some(monitor));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(run_dir.join("monitor.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(pod.state_of("crash").is_none());

    // A container that fails, and its restart: two runs, one log.
    let crash = pod.add("crash", "", &sh("echo run; exit 1"), 2000);
    let (pid1, started1) = pod.start(&crash);
    // The start record is written before the answer.
    let record = read_start(&pod.plan, "crash").unwrap();
    assert_eq!((record.pid, &record.started_at), (pid1, &started1));
    let exit1 = pod.wait_exit("crash", &started1);
    assert_eq!(
        (exit1.exit_code, exit1.reason.as_str(), exit1.id.as_str()),
        (1, "Error", crash.id.as_str())
    );
    // Every container exited, and the pod stays (until it is told to stop).
    std::thread::sleep(Duration::from_millis(300));
    assert!(pod.monitor.as_mut().unwrap().try_wait().unwrap().is_none());
    let state = pod.state_of("crash").unwrap();
    assert_eq!((state.running, state.restarts, state.pid), (false, 0, pid1));
    assert_eq!(state.exit.as_ref(), Some(&exit1));

    let (pid2, started2) = pod.start(&crash);
    assert!(started2 > started1 && pid2 != pid1);
    assert_eq!(read_start(&pod.plan, "crash").unwrap().pid, pid2);
    let exit2 = pod.wait_exit("crash", &started2);
    assert_eq!((exit2.exit_code, exit2.reason.as_str()), (1, "Error"));
    // The log may be written a moment after the exit is recorded.
    let runs = || {
        cri_lines(&pod.log("crash"))
            .into_iter()
            .filter(|l| l.2 == "run")
            .count()
    };
    let waited = Instant::now();
    while runs() < 2 && waited.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(runs(), 2, "{}", pod.log("crash"));
    assert_eq!(pod.state_of("crash").unwrap().restarts, 1);

    // A restart under another ID (and bundle): the old container is deleted first.
    let crash_b = pod.add("crash", "-b", &sh("echo again; exit 2"), 2000);
    let (_, started3) = pod.start(&crash_b);
    let state_dir = pod.plan.runtime_state_dir();
    assert!(!state_dir.join(&crash.id).exists());
    assert_eq!(pod.wait_exit("crash", &started3).exit_code, 2);
    assert_eq!(pod.state_of("crash").unwrap().id, crash_b.id);

    // A program that is not there: StartFailed, and a StartError record.
    let broken = pod.add(
        "broken",
        "",
        &serde_json::json!({"command": ["/no/such/program"]}),
        2000,
    );
    match pod.ask(Request::Start {
        container: broken.clone(),
    }) {
        Response::StartFailed { message } => assert!(message.contains("/no/such/program")),
        other => panic!("{other:?}"),
    }
    assert_eq!(read_exit(&pod.plan, "broken").unwrap().reason, "StartError");

    // Stop: a polite container ends on its stop signal, well within its grace.
    let polite = pod.add(
        "polite",
        "",
        &sh("trap 'echo bye; exit 0' TERM; echo ready; sleep 1000 & wait"),
        10_000,
    );
    let (_, started) = pod.start(&polite);
    pod.wait_log("polite", "ready");
    let message = error_of(pod.ask(Request::Start {
        container: polite.clone(),
    }));
    assert!(message.contains("running"), "{message}");
    let asked = Instant::now();
    assert_eq!(
        pod.ask(Request::Stop {
            name: "polite".into(),
            signal: None,
            grace_period_ms: None,
        }),
        Response::Ok
    );
    let exit = pod.wait_exit("polite", &started);
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert_eq!((exit.exit_code, exit.signal), (0, None), "{exit:?}");
    assert!(pod.log("polite").contains(" stdout F bye\n"));

    // A stubborn one is killed when the grace period given is over; it
    // cannot be removed while it runs.
    let stubborn = pod.add(
        "stubborn",
        "",
        &sh("trap '' TERM; echo ready; sleep 1000"),
        30_000,
    );
    let (_, started) = pod.start(&stubborn);
    pod.wait_log("stubborn", "ready");
    let message = error_of(pod.ask(Request::Remove {
        name: "stubborn".into(),
    }));
    assert!(message.contains("running"), "{message}");
    let asked = Instant::now();
    assert_eq!(
        pod.ask(Request::Stop {
            name: "stubborn".into(),
            signal: Some(libc::SIGTERM),
            grace_period_ms: Some(1000),
        }),
        Response::Ok
    );
    assert!(asked.elapsed() < Duration::from_millis(900), "stop waited");
    let exit = pod.wait_exit("stubborn", &started);
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)), "{exit:?}");
    // Stopping what has stopped is no error; an unknown name is.
    let stop = |name: &str| Request::Stop {
        name: name.into(),
        signal: None,
        grace_period_ms: Some(0),
    };
    assert_eq!(pod.ask(stop("stubborn")), Response::Ok);
    assert!(error_of(pod.ask(stop("nobody"))).contains("no such container"));

    // Remove: gone from the runtime and from the state; unknown names are fine.
    assert!(state_dir.join(&stubborn.id).exists());
    let remove = |name: &str| Request::Remove { name: name.into() };
    assert_eq!(pod.ask(remove("stubborn")), Response::Ok);
    assert!(!state_dir.join(&stubborn.id).exists());
    assert!(pod.state_of("stubborn").is_none());
    assert_eq!(pod.ask(remove("stubborn")), Response::Ok);
    assert_eq!(pod.ask(remove("nobody")), Response::Ok);

    // SIGTERM stops what still runs (with its own stop signal and grace),
    // and the monitor is gone, lock and socket with it.
    let lasting = pod.add("lasting", "", &sh("echo ready; sleep 1000"), 1000);
    let (_, started) = pod.start(&lasting);
    pod.wait_log("lasting", "ready");
    pod.stop_monitor();
    assert_eq!(pod.wait_exit("lasting", &started).signal, Some(9));
    assert!(!monitor_alive(&run_dir));
    assert_eq!(monitor_pid(&run_dir), None);
    assert!(!run_dir.join("monitor.sock").exists());
    let e = request(&run_dir, &Request::State, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(e, ControlError::NotListening { .. }), "{e}");
    pod.assert_nothing_left();
}

#[test]
fn a_shutdown_request_stops_the_containers_and_ends_the_pod() {
    let mut pod = TestPod::new(
        &[(
            "polite",
            sh("trap 'echo bye; exit 0' TERM; echo ready; sleep 1000 & wait"),
        )],
        10_000,
    );
    pod.start_monitor();
    pod.start_all();
    pod.wait_log("polite", "ready");
    let state = pod.state_of("polite").unwrap();
    assert!(state.running && state.pid > 0, "{state:?}");
    assert_eq!(pod.ask(Request::Shutdown), Response::Ok);
    pod.wait_monitor(Duration::from_secs(8));
    let exit = pod.wait_exit("polite", &state.started_at);
    assert_eq!((exit.exit_code, exit.signal), (0, None));
    assert!(!monitor_alive(&pod.plan.run_dir));
    pod.assert_nothing_left();
}

#[test]
fn a_plan_that_lists_containers_is_refused() {
    let pod = TestPod::new(&[("listed", sh("echo listed"))], 2000);
    let mut plan = pod.plan.clone();
    plan.containers = pod.containers.clone();
    let out = pod.run_monitor_output(&plan);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "pod {}: monitor: read plan: the plan lists containers",
            pod.plan.pod_id
        )),
        "{stderr}"
    );
    assert!(pod.log("listed").is_empty());
    pod.assert_nothing_left();
}

/// Unmounts (lazily) a file system a test mounted, however the test ends.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn a_full_disk_drops_log_lines_counts_them_and_the_container_goes_on() {
    let mut pod = TestPod::new(
        &[(
            "chatty",
            sh("pad=$(head -c 1000 /dev/zero | tr '\\0' x); i=0; \
                while [ $i -lt 200 ]; do echo \"$i $pad\"; i=$((i+1)); done; \
                trap 'exit 0' TERM; while true; do sleep 0.1; done"),
        )],
        2000,
    );
    // Its log on a file system of 64 KiB: about 60 of its 200 lines fit.
    let small = pod.dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    rustix::mount::mount(
        "tmpfs",
        &small,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        c"size=64k",
    )
    .expect("mount a tmpfs (the test needs root)");
    let _unmount = Unmount(small.clone());
    pod.containers[0].log_path = small.join("chatty.log");
    pod.start_monitor();
    pod.start_all();
    let start = Instant::now();
    let (state, lines) = loop {
        let s = pod
            .state_of("chatty")
            .expect("chatty in the monitor's state");
        let lines = cri_lines(&pod.log("chatty"));
        // Together with the dropped ones, all 200.
        if s.log_lines_dropped > 0 && lines.len() as u64 + s.log_lines_dropped == 200 {
            break (s, lines);
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} lines kept, {} counted dropped: {s:?}",
            lines.len(),
            s.log_lines_dropped
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(state.running, "the container stopped: {state:?}");
    assert!(pod.log("chatty").ends_with('\n'), "a torn last line");
    assert!(lines.len() > 30, "{} lines kept", lines.len());
    // Every line kept is whole, in order (a smaller chunk may fit where a
    // larger one did not: gaps are allowed).
    let mut last = -1;
    for (_, tag, text) in &lines {
        assert_eq!(tag, "F");
        let (n, pad) = text.split_once(' ').expect("a whole line");
        let n: i32 = n.parse().expect("a whole line");
        assert!(n > last && pad == "x".repeat(1000), "line {n} after {last}");
        last = n;
    }
    assert_eq!(pod.ask(Request::Shutdown), Response::Ok);
    pod.wait_monitor(Duration::from_secs(20));
}
