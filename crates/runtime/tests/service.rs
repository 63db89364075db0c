//! The runtime through its CRI-shaped traits, for real (needs root, the test
//! registry with busybox, and podrun's binaries: `cargo build -p podrun`
//! puts `podrun-monitor` and `podrun-pause` where these tests find them):
//! a sandbox runs, is listed, runs a container that execs, stops and is
//! removed, leaving nothing; a sandbox that fails to run leaves nothing.

mod support;

use podrun_runtime::api::{
    ContainerFilter, ContainerState, PodSandboxFilter, SandboxState, ServiceError, Started,
};
use podrun_runtime::{
    ImageService, ImageSpec, LinuxContainerResources, NamespaceMode, NodeImages, NodeRuntime,
    PodSandboxConfig, RuntimeConfig, RuntimeService,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn image() -> String {
    let registry =
        std::env::var("PODRUN_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    format!("{registry}/busybox:latest")
}

/// One test's machine: temp roots, a unique tag in its cgroup and hostname;
/// whatever a failed test left (processes, mounts, cgroups) goes when dropped.
struct Node {
    dir: tempfile::TempDir,
    tag: String,
    runtime: NodeRuntime,
    images: NodeImages,
}

impl Node {
    fn new() -> Self {
        support::require_root();
        let dir = tempfile::Builder::new()
            .prefix("podrun-rt-")
            .tempdir()
            .unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let tag = format!("{:x}{:x}", std::process::id(), nanos);
        let store = podrun_image::Images::open(&dir.path().join("root")).unwrap();
        let config = RuntimeConfig::new(&dir.path().join("run")).unwrap_or_else(|e| {
            panic!("{e}: these tests need podrun's binaries (cargo build -p podrun)")
        });
        Node {
            runtime: NodeRuntime::new(config, store.clone()).unwrap(),
            images: NodeImages::new(store, Default::default()),
            dir,
            tag,
        }
    }

    fn cgroup(&self) -> String {
        format!("/podrun-rt-test-{}", self.tag)
    }

    fn sandbox_config(&self) -> PodSandboxConfig {
        let mut config = PodSandboxConfig::default();
        config.metadata.name = "web".into();
        config.metadata.namespace = "default".into();
        config.metadata.uid = self.tag.clone();
        config.hostname = format!("rt-{}", self.tag);
        config.log_directory = self.dir.path().join("logs").display().to_string();
        config.labels.insert("app".into(), self.tag.clone());
        config.linux.cgroup_parent = self.cgroup();
        config.linux.resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: 256 << 20,
            ..Default::default()
        });
        config.linux.security_context.namespace_options.pid = NamespaceMode::Container;
        config
    }

    /// The config kubelet would send for a busybox container running
    /// `script` (the runtime makes its root filesystem and bundle).
    fn container(&self, name: &str, script: &str) -> podrun_oci::cri::ContainerConfig {
        let mut config = podrun_oci::cri::ContainerConfig {
            metadata: podrun_oci::cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            },
            image: ImageSpec {
                image: image(),
                ..Default::default()
            },
            command: vec!["sh".into(), "-c".into(), script.into()],
            log_path: format!("{name}.log"),
            linux: podrun_oci::cri::LinuxContainerConfig {
                security_context: podrun_oci::cri::LinuxContainerSecurityContext {
                    namespace_options: podrun_oci::cri::NamespaceOption {
                        pid: NamespaceMode::Container,
                        ..Default::default()
                    },
                    masked_paths: podrun_oci::security::MASKED_PATHS
                        .map(String::from)
                        .to_vec(),
                    readonly_paths: podrun_oci::security::READONLY_PATHS
                        .map(String::from)
                        .to_vec(),
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        };
        config
            .annotations
            .insert(podrun_runtime::node::GRACE_ANNOTATION.into(), "1".into());
        config
    }

    fn pull(&self) {
        let spec = ImageSpec {
            image: image(),
            ..Default::default()
        };
        let id = self.images.pull_image(&spec, None).unwrap();
        assert!(id.starts_with("sha256:"), "{id}");
        let status = self.images.image_status(&spec).unwrap().unwrap();
        assert_eq!(status.id, id);
        assert!(self
            .images
            .list_images(None)
            .unwrap()
            .iter()
            .any(|i| i.id == id));
    }

    /// Processes of this test: its monitors and pause processes (by the
    /// paths and hostname in their command lines).
    fn processes(&self) -> Vec<String> {
        let dir = self.dir.path().to_string_lossy().to_string();
        let host = format!("rt-{}", self.tag);
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|p| p.file_name().to_string_lossy().parse::<i32>().is_ok())
            .filter_map(|p| {
                let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
                let stat = std::fs::read_to_string(p.path().join("stat")).ok()?;
                let zombie = stat
                    .rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                (!zombie && (cmdline.contains(&dir) || cmdline.contains(&host)))
                    .then(|| format!("{} {cmdline}", p.file_name().to_string_lossy()))
            })
            .collect()
    }

    fn mounts(&self) -> Vec<String> {
        let dir = self.dir.path().to_string_lossy().to_string();
        mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&dir))
            .collect()
    }

    fn cgroups(&self) -> Vec<PathBuf> {
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|h| h.path().join(self.cgroup().trim_start_matches('/')))
            .chain([Path::new("/sys/fs/cgroup").join(self.cgroup().trim_start_matches('/'))])
            .filter(|p| p.exists())
            .collect()
    }

    /// Nothing of the sandbox is left: processes, mounts, cgroups, its directory.
    fn assert_nothing_left(&self) {
        let start = Instant::now();
        while !self.processes().is_empty() && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(self.processes(), Vec::<String>::new(), "processes left");
        assert_eq!(self.mounts(), Vec::<String>::new(), "mounts left");
        assert_eq!(self.cgroups(), Vec::<PathBuf>::new(), "cgroups left");
        let sandboxes: Vec<_> = std::fs::read_dir(self.dir.path().join("run/sandboxes"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            sandboxes.is_empty(),
            "sandbox directories left: {sandboxes:?}"
        );
    }
}

/// The pids in cgroup `dir` and the cgroups below it.
fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if child.path().is_dir() {
            pids.extend(cgroup_pids(&child.path()));
        }
    }
    pids
}

impl Drop for Node {
    fn drop(&mut self) {
        // The monitors and pause processes, and what runs in the containers.
        let pids = self
            .processes()
            .iter()
            .filter_map(|p| p.split(' ').next()?.parse().ok())
            .chain(self.cgroups().iter().flat_map(|c| cgroup_pids(c)))
            .collect::<Vec<i32>>();
        for pid in pids.into_iter().filter_map(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        // Killed processes leave their cgroup once reaped.
        let start = Instant::now();
        while self.cgroups().iter().any(|c| !cgroup_pids(c).is_empty())
            && start.elapsed() < Duration::from_secs(3)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
        for c in self.cgroups() {
            if let Ok(children) = std::fs::read_dir(&c) {
                for child in children.flatten().filter(|e| e.path().is_dir()) {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
            let _ = std::fs::remove_dir(c);
        }
    }
}

fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .collect()
}

/// Wait until container `id` is in `state`.
fn wait_state(runtime: &NodeRuntime, id: &str, state: ContainerState) {
    let start = Instant::now();
    loop {
        let status = runtime.container_status(id).unwrap();
        if status.state == state {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "container {id}: {status:?}, not {state:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_sandbox_runs_a_container_that_execs_then_stops_and_leaves_nothing() {
    let node = Node::new();
    node.pull();
    let rt = &node.runtime;
    let id = rt.run_pod_sandbox(&node.sandbox_config(), "").unwrap();

    let status = rt.pod_sandbox_status(&id).unwrap();
    assert_eq!(status.sandbox.state, SandboxState::Ready);
    assert_eq!(status.sandbox.metadata.uid, node.tag);
    assert!(status.monitor_pid.is_some());
    let kinds: Vec<&str> = status.namespaces.keys().map(String::as_str).collect();
    assert_eq!(kinds, ["ipc", "net", "uts"]);
    // The pod cgroup got the sandbox's memory limit.
    let limit = node
        .cgroups()
        .iter()
        .find_map(|c| {
            std::fs::read_to_string(c.join("memory.max"))
                .or_else(|_| std::fs::read_to_string(c.join("memory.limit_in_bytes")))
                .ok()
        })
        .expect("the pod cgroup has a memory controller");
    assert_eq!(limit.trim(), (256u64 << 20).to_string());
    let by_label = PodSandboxFilter {
        labels: [("app".to_string(), node.tag.clone())].into(),
        ..Default::default()
    };
    assert_eq!(id, node.tag, "the sandbox is named by its pod's UID");
    // A second sandbox of the same UID and attempt is refused, and the
    // first one stays.
    let e = rt.run_pod_sandbox(&node.sandbox_config(), "").unwrap_err();
    assert!(
        matches!(&e, podrun_runtime::api::ServiceError::Exists { call: "RunPodSandbox", what } if *what == id),
        "{e}"
    );
    assert_eq!(
        rt.pod_sandbox_status(&id).unwrap().sandbox.state,
        SandboxState::Ready
    );
    let listed = rt.list_pod_sandbox(&by_label).unwrap();
    assert_eq!(listed.iter().map(|s| &s.id).collect::<Vec<_>>(), [&id]);
    let not_ready = PodSandboxFilter {
        state: Some(SandboxState::NotReady),
        ..Default::default()
    };
    assert!(rt.list_pod_sandbox(&not_ready).unwrap().is_empty());

    let config = node.container("app", "echo hello; exec sleep 300");
    let cid = rt.create_container(&id, &config).unwrap();
    assert_eq!(cid, format!("{id}-app"));
    assert_eq!(
        rt.container_status(&cid).unwrap().state,
        ContainerState::Created
    );
    match rt.start_container(&cid).unwrap() {
        Started::Running { started_at } => assert!(!started_at.is_empty()),
        Started::Failed { message } => panic!("start: {message}"),
    }
    let status = rt.container_status(&cid).unwrap();
    assert_eq!(
        (status.state, status.sandbox_id.as_str()),
        (ContainerState::Running, id.as_str())
    );
    let of_sandbox = ContainerFilter {
        sandbox_id: Some(id.clone()),
        ..Default::default()
    };
    let listed: Vec<String> = rt
        .list_containers(&of_sandbox)
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(listed, std::slice::from_ref(&cid));

    let cmd = |s: &str| -> Vec<String> { vec!["sh".into(), "-c".into(), s.into()] };
    let out = rt
        .exec_sync(
            &cid,
            &cmd("echo out; hostname; echo err >&2; exit 3"),
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(
        (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
            out.exit_code
        ),
        (format!("out\nrt-{}\n", node.tag), "err\n".to_string(), 3)
    );
    // Exec: the command the caller runs with its own stdio.
    let exec = rt
        .exec(&cid, &cmd("echo in-container; exit 4"), false)
        .unwrap()
        .output()
        .unwrap();
    assert_eq!(
        (
            String::from_utf8_lossy(&exec.stdout).to_string(),
            exec.status.code()
        ),
        ("in-container\n".to_string(), Some(4))
    );
    assert!(
        rt.exec(&cid, &[], false).is_err(),
        "an empty command is refused"
    );
    let started = Instant::now();
    match rt.exec_sync(&cid, &cmd("sleep 30"), Duration::from_millis(300)) {
        Err(ServiceError::ExecTimeout { .. }) => {}
        other => panic!("a command past its timeout: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    rt.stop_container(&cid, Some(Duration::from_millis(500)))
        .unwrap();
    wait_state(rt, &cid, ContainerState::Exited);
    let status = rt.container_status(&cid).unwrap();
    // sleep is PID 1 of the container's PID namespace, which ignores a
    // SIGTERM it has no handler for: the SIGKILL after the grace ends it.
    assert_eq!((status.exit_code, status.reason.as_str()), (137, "Error"));
    match rt.exec_sync(&cid, &cmd("true"), Duration::from_secs(5)) {
        Err(ServiceError::NotRunning { .. }) => {}
        other => panic!("exec in an exited container: {other:?}"),
    }

    rt.stop_pod_sandbox(&id, None).unwrap();
    assert_eq!(
        rt.pod_sandbox_status(&id).unwrap().sandbox.state,
        SandboxState::NotReady
    );
    // Its exit outlives the monitor, in the records.
    assert_eq!(
        rt.container_status(&cid).unwrap().state,
        ContainerState::Exited
    );
    rt.stop_pod_sandbox(&id, None).unwrap();

    rt.remove_pod_sandbox(&id).unwrap();
    match rt.pod_sandbox_status(&id) {
        Err(ServiceError::SandboxNotFound(_)) => {}
        other => panic!("a removed sandbox: {other:?}"),
    }
    assert!(matches!(
        rt.container_status(&cid),
        Err(ServiceError::ContainerNotFound(_))
    ));
    rt.remove_pod_sandbox(&id).unwrap();
    assert!(
        !node
            .images
            .store()
            .root()
            .join("containers")
            .join(&cid)
            .exists(),
        "the container's root filesystem is removed with its sandbox"
    );
    node.assert_nothing_left();
}

#[test]
fn removing_a_running_sandbox_kills_what_runs_and_leaves_nothing() {
    let node = Node::new();
    node.pull();
    let rt = &node.runtime;
    let id = rt.run_pod_sandbox(&node.sandbox_config(), "").unwrap();
    // A container that ignores SIGTERM: only SIGKILL ends it.
    let config = node.container("stubborn", "trap '' TERM; while :; do sleep 1; done");
    let cid = rt.create_container(&id, &config).unwrap();
    assert!(matches!(
        rt.start_container(&cid).unwrap(),
        Started::Running { .. }
    ));
    rt.remove_pod_sandbox(&id).unwrap();
    node.assert_nothing_left();
}

#[test]
fn a_sandbox_that_fails_to_run_leaves_nothing() {
    let mut node = Node::new();
    // An unknown handler: refused before anything is made.
    match node
        .runtime
        .run_pod_sandbox(&node.sandbox_config(), "nosuch")
    {
        Err(ServiceError::UnknownHandler { handler, .. }) => assert_eq!(handler, "nosuch"),
        other => panic!("an unknown handler: {other:?}"),
    }
    node.assert_nothing_left();
    // The monitor cannot make the sandbox: no pause binary.
    let mut config = node.runtime.config().clone();
    config.pause = node.dir.path().join("no-pause");
    node.runtime = NodeRuntime::new(config, node.images.store().clone()).unwrap();
    let e = node
        .runtime
        .run_pod_sandbox(&node.sandbox_config(), "")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-pause"), "{e}");
    assert!(e.starts_with(&format!("sandbox {}", node.tag)), "{e}");
    node.assert_nothing_left();
    assert!(node
        .runtime
        .list_pod_sandbox(&PodSandboxFilter::default())
        .unwrap()
        .is_empty());
}

/// A default network of the test's own; when dropped, what its sandboxes
/// still hold is released and the bridge and its rules are removed.
struct TestNetwork {
    config: podrun_runtime::NetworkConfig,
}

impl TestNetwork {
    fn new(dir: &Path) -> TestNetwork {
        let mut config = podrun_runtime::NetworkConfig::new(&dir.join("root"));
        config.cni.conf_dir = dir.join("cni-conf.d");
        std::fs::create_dir_all(&config.cni.conf_dir).unwrap();
        config.default.bridge = format!("prr{:05}", std::process::id() % 100_000);
        config.default.subnet = format!("10.215.{}.0/24", std::process::id() % 256)
            .parse()
            .unwrap();
        TestNetwork { config }
    }

    fn network(&self) -> podrun_net::DefaultNetwork {
        podrun_net::DefaultNetwork::new(self.config.default.clone()).unwrap()
    }

    /// What of the node is this network's: links (its bridge, veths on it),
    /// routes through the bridge, the PODRUN rules, and its leases.
    fn traces(&self) -> Vec<String> {
        let bridge = &self.config.default.bridge;
        let run = |cmd: &str, args: &[&str]| {
            let out = std::process::Command::new(cmd).args(args).output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let mut traces: Vec<String> = run("ip", &["-o", "link", "show"])
            .lines()
            .filter(|l| {
                l.contains(&format!(" {bridge}:")) || l.contains(&format!("master {bridge} "))
            })
            .map(|l| {
                // The link's name and flags, not its index or counters.
                let fields: Vec<&str> = l.split_whitespace().collect();
                format!("link {} {}", fields[1], fields[2])
            })
            .collect();
        traces.extend(
            run("ip", &["route", "show", "table", "all"])
                .lines()
                // Not the kernel's IPv6 link-local routes of the bridge, which
                // come and go with its ports by themselves.
                .filter(|l| l.contains(bridge.as_str()) && !l.contains("fe80:"))
                .map(|l| format!("route {l}")),
        );
        // This network's rules, and the sandboxes' hostPort chains (of any
        // network: the test files run one at a time).
        let prefix = self.config.default.subnet.to_string();
        let prefix = prefix.rsplit_once('.').map_or("", |p| p.0).to_owned();
        for save in ["iptables-save", "ip6tables-save"] {
            traces.extend(
                run(save, &[])
                    .lines()
                    .filter(|l| {
                        l.contains(bridge.as_str())
                            || l.contains(&format!("{prefix}."))
                            || l.contains("PODRUN-DN-")
                    })
                    .map(|l| format!("{save} {}", l.split(" [").next().unwrap_or(l))),
            );
        }
        traces.extend(
            self.network()
                .leases()
                .into_iter()
                .map(|(ip, id)| format!("lease {ip} {id}")),
        );
        traces.sort();
        traces
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        use podrun_net::PodNetwork;
        let network = self.network();
        for (_, sandbox_id) in network.leases() {
            let _ = network.del(&podrun_net::Attachment {
                sandbox_id,
                netns: PathBuf::new(),
                ifname: "eth0".into(),
                pod_name: String::new(),
                pod_namespace: String::new(),
                pod_uid: String::new(),
                port_mappings: Vec::new(),
                annotations: Default::default(),
                cgroup_parent: String::new(),
            });
        }
        let _ = network.remove_network();
    }
}

/// 200 sandboxes with a hostPort each are made, given an address, stopped and
/// removed one after another: the node's links, routes, rules and leases are
/// then exactly what they were after the first, and once the network is
/// removed, what they were before it.
#[test]
fn two_hundred_sandboxes_leave_the_network_as_they_found_it() {
    support::require_root();
    let scratch = tempfile::tempdir().unwrap();
    let network = TestNetwork::new(scratch.path());
    let mut node = Node::new();
    let mut config = node.runtime.config().clone();
    config.network = Some(network.config.clone());
    node.runtime = NodeRuntime::new(config, node.images.store().clone()).unwrap();
    let before = network.traces();
    assert!(
        !before
            .iter()
            .any(|t| t.starts_with("link") || t.starts_with("lease")),
        "the test network exists already: {before:?}"
    );
    let subnet = network.config.default.subnet;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut after_first = Vec::new();
    for attempt in 0..200u32 {
        let mut sandbox = node.sandbox_config();
        sandbox.metadata.attempt = attempt;
        sandbox.port_mappings = vec![podrun_runtime::PortMapping {
            protocol: podrun_runtime::Protocol::Tcp,
            container_port: 80,
            host_port: i32::from(port),
            host_ip: String::new(),
        }];
        let id = node.runtime.run_pod_sandbox(&sandbox, "").unwrap();
        let status = node.runtime.pod_sandbox_status(&id).unwrap();
        assert!(
            status.ips.len() == 1 && subnet.contains(status.ips[0]),
            "sandbox {attempt}: {:?} not one address of {subnet}",
            status.ips
        );
        node.runtime.stop_pod_sandbox(&id, None).unwrap();
        assert!(node.runtime.pod_sandbox_status(&id).unwrap().ips.is_empty());
        node.runtime.remove_pod_sandbox(&id).unwrap();
        if attempt == 0 {
            after_first = network.traces();
            assert!(
                after_first.iter().any(|t| t.starts_with("link")),
                "{after_first:?}"
            );
        }
    }
    assert_eq!(network.traces(), after_first, "200 sandboxes later");
    node.assert_nothing_left();
    network.network().remove_network().unwrap();
    assert_eq!(network.traces(), before, "the network removed");
}
