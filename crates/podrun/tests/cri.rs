//! The CRI server end to end: `podrun serve --cri` driven over its unix
//! socket by a gRPC client generated from the same api.proto, with real pods
//! (busybox from the local registry): Version and Status; a pull with the
//! credentials the request carries; a sandbox and a container through their
//! whole life (status, list filters, ExecSync, the CRI log file, stop with a
//! timeout, removal) leaving nothing behind; the gRPC codes and messages of
//! bad requests; the agent's pods kept out of the CRI's sight and the CRI's
//! out of `podrun get`; Exec and PortForward through the streaming server
//! (SPDY/3.1 and WebSocket, with a terminal and its resizes), a client that
//! hangs up leaving nothing running.
//!
//! Needs root and the local registries (scripts/registry.sh).

#[path = "support/agent_env.rs"]
mod agent_env;
#[path = "support/stream_client.rs"]
mod stream_client;
mod support;

use agent_env::{registry, Agent, Env, Suite};
use pb::image_service_client::ImageServiceClient;
use pb::runtime_service_client::RuntimeServiceClient;
use podrun_cri::proto as pb;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const SUITE: Suite = Suite {
    name: "cri",
    knobs: &[("PODRUN_SYNC_INTERVAL_MS", "150")],
    agent_stays_up: true,
};

fn auth_registry() -> String {
    std::env::var("PODRUN_TEST_AUTH_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5001".into())
}

/// An agent serving the CRI on `<run>/cri.sock`, and clients of it.
struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    socket: PathBuf,
    _agent: Agent,
}

impl Cri {
    fn start(env: &Env) -> Cri {
        let socket = env.run.join("cri.sock");
        let agent = env.serve(
            None,
            &["--cri", "--cri-socket", socket.to_str().unwrap()],
            &[],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "no CRI socket\n{}", agent.log());
            std::thread::sleep(Duration::from_millis(10));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = rt.block_on(connect(&socket));
        Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            rt,
            socket,
            _agent: agent,
        }
    }

    fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    /// A RuntimeService client (a handle on the one channel).
    fn rs(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    /// An ImageService client.
    fn is(&self) -> ImageServiceClient<Channel> {
        self.images.clone()
    }

    /// Pulls the test registry's busybox; its name.
    fn busybox(&self) -> String {
        let busybox = format!("{}/busybox:latest", registry());
        self.run(self.is().pull_image(pb::PullImageRequest {
            image: image(&busybox),
            ..Default::default()
        }))
        .unwrap();
        busybox
    }

    /// Runs a sandbox of `config`; its ID.
    fn sandbox(&self, config: &pb::PodSandboxConfig) -> String {
        self.run(self.rs().run_pod_sandbox(pb::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }))
        .unwrap()
        .into_inner()
        .pod_sandbox_id
    }

    /// Creates a container from `config` in `sandbox` and starts it; its ID.
    fn started(
        &self,
        sandbox: &str,
        config: pb::ContainerConfig,
        sandbox_config: &pb::PodSandboxConfig,
    ) -> String {
        let id = self
            .run(self.rs().create_container(pb::CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config.clone()),
            }))
            .unwrap()
            .into_inner()
            .container_id;
        self.run(self.rs().start_container(pb::StartContainerRequest {
            container_id: id.clone(),
        }))
        .unwrap();
        id
    }
}

/// A gRPC channel over the unix socket at `path`.
async fn connect(path: &Path) -> Channel {
    let path = path.to_path_buf();
    tonic::transport::Endpoint::try_from("http://localhost")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .unwrap()
}

fn sandbox_config(env: &Env, name: &str, uid: &str, logs: &Path) -> pb::PodSandboxConfig {
    pb::PodSandboxConfig {
        metadata: Some(pb::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: env.name(name),
        log_directory: logs.to_string_lossy().into_owned(),
        labels: HashMap::from([("app".into(), name.into())]),
        annotations: HashMap::from([("note".into(), "kept".into())]),
        linux: Some(pb::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

fn container_config(name: &str, image: &str, script: &str) -> pb::ContainerConfig {
    pb::ContainerConfig {
        metadata: Some(pb::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(pb::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("io.kubernetes.container.name".into(), name.into())]),
        annotations: HashMap::from([("io.kubernetes.container.restartCount".into(), "0".into())]),
        // kubelet's default: a PID namespace of its own (CRI's zero value is POD).
        linux: Some(pb::LinuxContainerConfig {
            security_context: Some(pb::LinuxContainerSecurityContext {
                namespace_options: Some(pb::NamespaceOption {
                    pid: pb::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn image(name: &str) -> Option<pb::ImageSpec> {
    Some(pb::ImageSpec {
        image: name.into(),
        ..Default::default()
    })
}

#[test]
fn a_pod_lives_and_goes_through_the_cri() {
    // Made first, so dropped last: after the environment has removed the pod
    // (and its cgroup under the QoS one), even when the test fails.
    let qos = QosCgroup::new(&format!("podrun-cri-test-{}", std::process::id()));
    let env = Env::new(&SUITE, "life");
    let mut cri = Cri::start(&env);
    let busybox = format!("{}/busybox:latest", registry());

    let version = cri
        .run(cri.rs().version(pb::VersionRequest::default()))
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            version.runtime_name.as_str(),
            version.runtime_api_version.as_str()
        ),
        ("podrun", "v1")
    );
    let status = cri
        .run(cri.rs().status(pb::StatusRequest::default()))
        .unwrap()
        .into_inner();
    let conditions: Vec<(String, bool)> = status
        .status
        .unwrap()
        .conditions
        .into_iter()
        .map(|c| (c.r#type, c.status))
        .collect();
    assert_eq!(
        conditions,
        [("RuntimeReady".into(), true), ("NetworkReady".into(), true)]
    );

    let pulled = cri
        .run(cri.is().pull_image(pb::PullImageRequest {
            image: image(&busybox),
            ..Default::default()
        }))
        .unwrap()
        .into_inner();
    assert!(pulled.image_ref.starts_with("sha256:"), "{pulled:?}");
    let found = cri
        .run(cri.is().image_status(pb::ImageStatusRequest {
            image: image(&busybox),
            verbose: false,
        }))
        .unwrap()
        .into_inner()
        .image
        .expect("the pulled image is present");
    assert_eq!(found.id, pulled.image_ref);
    assert!(found.repo_tags.contains(&busybox), "{found:?}");
    let listed = cri
        .run(cri.is().list_images(pb::ListImagesRequest::default()))
        .unwrap()
        .into_inner();
    assert!(listed.images.iter().any(|i| i.id == pulled.image_ref));
    let fs = cri
        .run(cri.is().image_fs_info(pb::ImageFsInfoRequest {}))
        .unwrap()
        .into_inner();
    assert!(fs.image_filesystems[0].used_bytes.unwrap().value > 1_000_000);

    let logs = env.dir.path().join("logs");
    let uid = "0f7a61a0-6b1e-4f52-9a53-000000000001";
    let mut config = sandbox_config(&env, "cri-life", uid, &logs);
    // kubelet's cgroups: the QoS parent is its own and must outlive the pod.
    config.dns_config = Some(pb::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["cri.test".into(), "svc.cri.test".into()],
        options: vec!["ndots:5".into()],
    });
    config.linux = Some(pb::LinuxPodSandboxConfig {
        cgroup_parent: format!("/{}/besteffort/pod{uid}", qos.top),
        ..Default::default()
    });
    let sandbox = cri.sandbox(&config);
    assert_eq!(sandbox, uid, "the sandbox ID is the pod UID");
    let status = cri
        .run(cri.rs().pod_sandbox_status(pb::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: true,
        }))
        .unwrap()
        .into_inner();
    assert!(status.info.contains_key("info"));
    let s = status.status.unwrap();
    assert_eq!(s.state, pb::PodSandboxState::SandboxReady as i32);
    assert_eq!(s.metadata.unwrap().name, "cri-life");
    assert_eq!(
        s.annotations,
        HashMap::from([("note".into(), "kept".into())]),
        "the client sees its own annotations only"
    );
    let ip: std::net::IpAddr = s.network.unwrap().ip.parse().expect("the pod has an IP");
    assert!(!ip.is_loopback());

    let container = cri
        .run(cri.rs().create_container(pb::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config(
                "app",
                &busybox,
                "echo hello from the cri; trap 'exit 3' TERM; \
                 while true; do [ -f /tmp/say ] && cat /tmp/say && rm /tmp/say; sleep 0.1; done",
            )),
            sandbox_config: Some(config.clone()),
        }))
        .unwrap()
        .into_inner()
        .container_id;
    let state_of = |cri: &mut Cri| {
        let s = cri
            .run(cri.rs().container_status(pb::ContainerStatusRequest {
                container_id: container.clone(),
                verbose: false,
            }))
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        s
    };
    assert_eq!(
        state_of(&mut cri).state,
        pb::ContainerState::ContainerCreated as i32
    );
    cri.run(cri.rs().start_container(pb::StartContainerRequest {
        container_id: container.clone(),
    }))
    .unwrap();
    let running = state_of(&mut cri);
    assert_eq!(running.state, pb::ContainerState::ContainerRunning as i32);
    assert!(running.started_at > 0);
    assert_eq!(running.image.unwrap().image, busybox);
    assert_eq!(running.image_ref, pulled.image_ref);
    assert_eq!(running.metadata.unwrap().name, "app");
    let user = running.user.unwrap().linux.unwrap();
    assert_eq!((user.uid, user.gid), (0, 0), "who its process runs as");
    assert_eq!(running.labels["io.kubernetes.container.name"], "app");
    assert_eq!(
        Path::new(&running.log_path),
        logs.join("app/0.log"),
        "the log is where the sandbox's log_directory and the container's log_path say"
    );

    // The list filters: by sandbox, state and label.
    let list = |cri: &mut Cri, filter: pb::ContainerFilter| -> Vec<String> {
        cri.run(cri.rs().list_containers(pb::ListContainersRequest {
            filter: Some(filter),
        }))
        .unwrap()
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect()
    };
    assert_eq!(
        list(
            &mut cri,
            pb::ContainerFilter {
                pod_sandbox_id: sandbox.clone(),
                state: Some(pb::ContainerStateValue {
                    state: pb::ContainerState::ContainerRunning as i32
                }),
                label_selector: HashMap::from([(
                    "io.kubernetes.container.name".into(),
                    "app".into()
                )]),
                ..Default::default()
            }
        ),
        std::slice::from_ref(&container)
    );
    assert!(list(
        &mut cri,
        pb::ContainerFilter {
            state: Some(pb::ContainerStateValue {
                state: pb::ContainerState::ContainerExited as i32
            }),
            ..Default::default()
        }
    )
    .is_empty());

    let exec = cri
        .run(cri.rs().exec_sync(pb::ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 7".into(),
            ],
            timeout: 10,
        }))
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            exec.stdout.as_slice(),
            exec.stderr.as_slice(),
            exec.exit_code
        ),
        (&b"out\n"[..], &b"err\n"[..], 7)
    );
    let timed_out = cri
        .run(cri.rs().exec_sync(pb::ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        }))
        .unwrap_err();
    assert_eq!(
        timed_out.code(),
        tonic::Code::DeadlineExceeded,
        "{timed_out:?}"
    );
    let left = cri
        .run(cri.rs().exec_sync(pb::ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "ps | grep -v grep | grep -c 'sleep 30' || true".into(),
            ],
            timeout: 10,
        }))
        .unwrap()
        .into_inner();
    assert_eq!(
        String::from_utf8_lossy(&left.stdout),
        "0\n",
        "the timed-out command is killed, not left running"
    );

    // Statistics from the pod's and the container's cgroups.
    let stats = cri
        .run(cri.rs().container_stats(pb::ContainerStatsRequest {
            container_id: container.clone(),
        }))
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(
        stats.attributes.as_ref().unwrap().labels["io.kubernetes.container.name"],
        "app"
    );
    assert!(stats.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
    assert!(stats.memory.unwrap().working_set_bytes.unwrap().value > 0);
    assert!(stats.writable_layer.unwrap().inodes_used.unwrap().value >= 1);
    let pods = cri
        .run(
            cri.rs()
                .list_pod_sandbox_stats(pb::ListPodSandboxStatsRequest::default()),
        )
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(pods.len(), 1);
    let linux = pods[0].linux.as_ref().unwrap();
    assert_eq!(pods[0].attributes.as_ref().unwrap().id, sandbox);
    assert_eq!(linux.containers.len(), 1);
    let pod_cpu = linux
        .cpu
        .as_ref()
        .unwrap()
        .usage_core_nano_seconds
        .unwrap()
        .value;
    assert!(pod_cpu > 0, "the pod cgroup counts its containers");

    // New limits into the running container's cgroup (in-place resize).
    cri.run(
        cri.rs()
            .update_container_resources(pb::UpdateContainerResourcesRequest {
                container_id: container.clone(),
                linux: Some(pb::LinuxContainerResources {
                    memory_limit_in_bytes: 64 << 20,
                    cpu_shares: 512,
                    ..Default::default()
                }),
                ..Default::default()
            }),
    )
    .unwrap();
    let cgroup = format!("{}/besteffort/pod{uid}/app", qos.top);
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(&cgroup)
        .join("memory.limit_in_bytes");
    let limit = std::fs::read_to_string(&v1)
        .or_else(|_| {
            std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(&cgroup).join("memory.max"))
        })
        .unwrap();
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    let resized = state_of(&mut cri).resources.unwrap().linux.unwrap();
    assert_eq!(
        (resized.memory_limit_in_bytes, resized.cpu_shares),
        (64 << 20, 512)
    );

    // The sandbox's /etc files, as containerd writes them: the DNS config
    // kubelet sends, the hostname.
    let files = cri
        .run(cri.rs().exec_sync(pb::ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec![
                "cat".into(),
                "/etc/resolv.conf".into(),
                "/etc/hostname".into(),
            ],
            timeout: 10,
        }))
        .unwrap()
        .into_inner();
    assert_eq!(
        String::from_utf8_lossy(&files.stdout),
        "search cri.test svc.cri.test\nnameserver 10.96.0.10\noptions ndots:5\ncri-life\n"
    );

    // The CRI log format: `<RFC 3339 nano> stdout F <line>`.
    let log = std::fs::read_to_string(logs.join("app/0.log")).unwrap();
    let line = log.lines().next().unwrap_or_default();
    let fields: Vec<&str> = line.splitn(4, ' ').collect();
    assert_eq!(fields[1..], ["stdout", "F", "hello from the cri"], "{log}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(fields[0]).is_ok(),
        "{line}"
    );
    // kubelet's rotation: rename the file, ReopenContainerLog, and what the
    // container writes next is in a new file at the path.
    std::fs::rename(logs.join("app/0.log"), logs.join("app/0.log.1")).unwrap();
    cri.run(
        cri.rs()
            .reopen_container_log(pb::ReopenContainerLogRequest {
                container_id: container.clone(),
            }),
    )
    .unwrap();
    cri.run(cri.rs().exec_sync(pb::ExecSyncRequest {
        container_id: container.clone(),
        cmd: vec![
            "sh".into(),
            "-c".into(),
            "echo after rotation > /tmp/say".into(),
        ],
        timeout: 10,
    }))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let new = std::fs::read_to_string(logs.join("app/0.log")).unwrap_or_default();
        if new.contains("stdout F after rotation") {
            break;
        }
        assert!(Instant::now() < deadline, "the new log has {new:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let old = std::fs::read_to_string(logs.join("app/0.log.1")).unwrap();
    assert!(!old.contains("after rotation"), "{old}");

    // A container whose init reaps nothing (sleep as PID 1): a timed-out
    // command is gone, not left a zombie of it.
    let quiet = cri.started(
        &sandbox,
        pb::ContainerConfig {
            command: vec!["sleep".into(), "3600".into()],
            ..container_config("quiet", &busybox, "")
        },
        &config,
    );
    let e = cri
        .run(cri.rs().exec_sync(pb::ExecSyncRequest {
            container_id: quiet.clone(),
            cmd: vec!["sleep".into(), "4321".into()],
            timeout: 1,
        }))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded);
    let sleeps = cri
        .run(cri.rs().exec_sync(pb::ExecSyncRequest {
            container_id: quiet.clone(),
            cmd: vec!["pidof".into(), "sleep".into()],
            timeout: 10,
        }))
        .unwrap()
        .into_inner();
    assert_eq!(
        String::from_utf8_lossy(&sleeps.stdout),
        "1\n",
        "only its init sleeps"
    );
    cri.run(cri.rs().remove_container(pb::RemoveContainerRequest {
        container_id: quiet.clone(),
    }))
    .unwrap();

    // Stop with a timeout: the trap makes it exit 3 on SIGTERM.
    cri.run(cri.rs().stop_container(pb::StopContainerRequest {
        container_id: container.clone(),
        timeout: 10,
    }))
    .unwrap();
    let exited = state_of(&mut cri);
    assert_eq!(exited.state, pb::ContainerState::ContainerExited as i32);
    assert_eq!((exited.exit_code, exited.reason.as_str()), (3, "Error"));
    assert!(exited.finished_at >= exited.started_at);
    // Stopping and removing again are not errors (CRI's idempotence).
    cri.run(cri.rs().stop_container(pb::StopContainerRequest {
        container_id: container.clone(),
        timeout: 0,
    }))
    .unwrap();
    cri.run(cri.rs().remove_container(pb::RemoveContainerRequest {
        container_id: container.clone(),
    }))
    .unwrap();
    cri.run(cri.rs().remove_container(pb::RemoveContainerRequest {
        container_id: container.clone(),
    }))
    .unwrap();
    assert!(list(&mut cri, pb::ContainerFilter::default()).is_empty());

    for _ in 0..2 {
        cri.run(cri.rs().stop_pod_sandbox(pb::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        }))
        .unwrap();
    }
    let stopped = cri
        .run(
            cri.rs()
                .list_pod_sandbox(pb::ListPodSandboxRequest::default()),
        )
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(stopped.len(), 1);
    assert_eq!(
        stopped[0].state,
        pb::PodSandboxState::SandboxNotready as i32
    );
    for _ in 0..2 {
        cri.run(cri.rs().remove_pod_sandbox(pb::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        }))
        .unwrap();
    }
    assert!(cri
        .run(
            cri.rs()
                .list_pod_sandbox(pb::ListPodSandboxRequest::default())
        )
        .unwrap()
        .into_inner()
        .items
        .is_empty());
    env.assert_nothing_left();
    assert!(cri.socket.exists());
    let memory = Path::new("/sys/fs/cgroup/memory").join(&qos.top);
    assert!(
        memory.join("besteffort").is_dir() && !memory.join(format!("besteffort/pod{uid}")).exists(),
        "the pod's cgroup is gone, kubelet's QoS cgroup is kept"
    );
}

/// A kubelet-style QoS cgroup `/<top>/besteffort` made in every v1
/// hierarchy (and the v2 mount), removed when dropped.
struct QosCgroup {
    top: String,
    dirs: Vec<PathBuf>,
}

impl QosCgroup {
    fn new(top: &str) -> QosCgroup {
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let base = entry.path();
            if base.join("cgroup.procs").exists() {
                let dir = base.join(top);
                std::fs::create_dir_all(dir.join("besteffort")).unwrap();
                dirs.push(dir);
            }
        }
        QosCgroup {
            top: top.into(),
            dirs,
        }
    }
}

impl Drop for QosCgroup {
    fn drop(&mut self) {
        // Deepest first: a pod cgroup a failed test left is removed too.
        fn rmdir_tree(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        rmdir_tree(&e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        for dir in &self.dirs {
            rmdir_tree(dir);
        }
    }
}

#[test]
fn bad_requests_get_containerds_codes_and_name_the_object() {
    let env = Env::new(&SUITE, "errors");
    let mut cri = Cri::start(&env);
    let busybox = format!("{}/busybox:latest", registry());
    let code = |r: Result<tonic::Response<()>, tonic::Status>| {
        let e = r.unwrap_err();
        (e.code(), e.message().to_string())
    };

    let (c, m) = code(
        cri.run(cri.rs().container_status(pb::ContainerStatusRequest {
            container_id: "nope".into(),
            verbose: false,
        }))
        .map(|_| tonic::Response::new(())),
    );
    assert_eq!(
        (c, m.as_str()),
        (tonic::Code::NotFound, "container nope: not found")
    );
    let (c, m) = code(
        cri.run(cri.rs().pod_sandbox_status(pb::PodSandboxStatusRequest {
            pod_sandbox_id: "../etc".into(),
            verbose: false,
        }))
        .map(|_| tonic::Response::new(())),
    );
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("\"../etc\""), "{m}");
    let (c, m) = code(
        cri.run(cri.rs().start_container(pb::StartContainerRequest {
            container_id: String::new(),
        }))
        .map(|_| tonic::Response::new(())),
    );
    assert_eq!(
        (c, m.as_str()),
        (tonic::Code::InvalidArgument, "container_id: required")
    );
    // An exec that wants none of the standard streams: kubelet's server's words.
    let (c, m) = code(
        cri.run(cri.rs().exec(pb::ExecRequest {
            container_id: "x".into(),
            cmd: vec!["sh".into()],
            ..Default::default()
        }))
        .map(|_| tonic::Response::new(())),
    );
    assert_eq!(
        (c, m.as_str()),
        (
            tonic::Code::InvalidArgument,
            "one of stdin, stdout, or stderr must be set"
        )
    );
    // A pull of what the registry does not have, and one without credentials.
    let (c, m) = code(
        cri.run(cri.is().pull_image(pb::PullImageRequest {
            image: image(&format!("{}/no-such-image:1", registry())),
            ..Default::default()
        }))
        .map(|_| tonic::Response::new(())),
    );
    assert_ne!(c, tonic::Code::Ok);
    assert!(m.contains("no-such-image"), "{m}");

    let logs = env.dir.path().join("logs");
    let uid = "0f7a61a0-6b1e-4f52-9a53-000000000002";
    let config = sandbox_config(&env, "cri-errors", uid, &logs);
    let run = |cri: &mut Cri| {
        cri.run(cri.rs().run_pod_sandbox(pb::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }))
    };
    let sandbox = run(&mut cri).unwrap().into_inner().pod_sandbox_id;
    // The same name and attempt again: kubelet must bump the attempt.
    let (c, m) = code(run(&mut cri).map(|_| tonic::Response::new(())));
    assert_eq!(c, tonic::Code::AlreadyExists, "{m}");
    assert!(
        m.contains("pod default/cri-errors") && m.contains(uid),
        "{m}"
    );
    let (c, m) = code(
        cri.run(cri.rs().run_pod_sandbox(pb::RunPodSandboxRequest {
            config: Some(pb::PodSandboxConfig {
                metadata: Some(pb::PodSandboxMetadata {
                    uid: "0f7a61a0-6b1e-4f52-9a53-000000000003".into(),
                    ..config.metadata.clone().unwrap()
                }),
                ..config.clone()
            }),
            runtime_handler: "no-such-handler".into(),
        }))
        .map(|_| tonic::Response::new(())),
    );
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("no-such-handler"), "{m}");

    cri.run(cri.is().pull_image(pb::PullImageRequest {
        image: image(&busybox),
        ..Default::default()
    }))
    .unwrap();
    let create = |cri: &mut Cri, sandbox: &str, image: &str| {
        cri.run(cri.rs().create_container(pb::CreateContainerRequest {
            pod_sandbox_id: sandbox.into(),
            config: Some(container_config("app", image, "sleep 30")),
            sandbox_config: Some(config.clone()),
        }))
        .map(|_| tonic::Response::new(()))
    };
    let (c, m) = code(create(&mut cri, "gone-sandbox", &busybox));
    assert_eq!(
        (c, m.as_str()),
        (tonic::Code::NotFound, "sandbox gone-sandbox: not found")
    );
    let (c, m) = code(create(
        &mut cri,
        &sandbox,
        &format!("{}/absent:1", registry()),
    ));
    assert_ne!(c, tonic::Code::Ok);
    assert!(m.contains("absent:1"), "{m}");
    cri.run(cri.rs().stop_pod_sandbox(pb::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    }))
    .unwrap();
    let (c, m) = code(create(&mut cri, &sandbox, &busybox));
    assert_eq!(c, tonic::Code::FailedPrecondition, "{m}");
    assert!(m.contains(&sandbox), "{m}");
    cri.run(cri.rs().remove_pod_sandbox(pb::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    }))
    .unwrap();
    env.assert_nothing_left();
}

#[test]
fn the_agents_pods_and_the_cris_do_not_see_each_other() {
    let env = Env::new(&SUITE, "apart");
    let mut cri = Cri::start(&env);
    let name = env.name("agent-pod");
    let manifest = env.write_manifest(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: app\n    image: {}/busybox:latest\n    command: [sleep, '300']\n",
        registry()
    ));
    env.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !env
        .rows()
        .iter()
        .any(|r| r.get(3).is_some_and(|s| s == "Running"))
    {
        assert!(Instant::now() < deadline, "{}", env.diag());
        std::thread::sleep(Duration::from_millis(100));
    }
    let listed = |cri: &mut Cri| {
        let sandboxes = cri
            .run(
                cri.rs()
                    .list_pod_sandbox(pb::ListPodSandboxRequest::default()),
            )
            .unwrap()
            .into_inner()
            .items;
        let containers = cri
            .run(
                cri.rs()
                    .list_containers(pb::ListContainersRequest::default()),
            )
            .unwrap()
            .into_inner()
            .containers;
        (sandboxes.len(), containers.len())
    };
    assert_eq!(listed(&mut cri), (0, 0), "the agent's pod is not the CRI's");
    let agent_sandbox = std::fs::read_dir(env.run.join("sandboxes"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    // Nor can the CRI stop or remove it: unknown to it, so nothing happens.
    cri.run(cri.rs().remove_pod_sandbox(pb::RemovePodSandboxRequest {
        pod_sandbox_id: agent_sandbox.clone(),
    }))
    .unwrap();
    let e = cri
        .run(cri.rs().pod_sandbox_status(pb::PodSandboxStatusRequest {
            pod_sandbox_id: agent_sandbox.clone(),
            verbose: false,
        }))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(
        env.rows().iter().any(|r| r[1] == name && r[3] == "Running"),
        "{}",
        env.diag()
    );

    let logs = env.dir.path().join("logs");
    let config = sandbox_config(
        &env,
        "cri-apart",
        "0f7a61a0-6b1e-4f52-9a53-000000000004",
        &logs,
    );
    let sandbox = cri.sandbox(&config);
    assert_eq!(listed(&mut cri), (1, 0));
    let names: Vec<String> = env.rows().into_iter().map(|r| r[1].clone()).collect();
    assert_eq!(
        names,
        std::slice::from_ref(&name),
        "podrun get shows the agent's pods only"
    );
    cri.run(cri.rs().stop_pod_sandbox(pb::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    }))
    .unwrap();
    cri.run(cri.rs().remove_pod_sandbox(pb::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox,
    }))
    .unwrap();
    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
}

#[test]
fn a_pull_carries_the_requests_credentials() {
    let env = Env::new(&SUITE, "auth");
    let mut cri = Cri::start(&env);
    let image_name = format!("{}/busybox:latest", auth_registry());
    let pull = |cri: &mut Cri, auth: Option<pb::AuthConfig>| {
        cri.run(cri.is().pull_image(pb::PullImageRequest {
            image: image(&image_name),
            auth,
            sandbox_config: None,
        }))
    };
    let e = pull(&mut cri, None).unwrap_err();
    assert!(e.message().contains("unauthorized"), "{e:?}");
    let e = pull(
        &mut cri,
        Some(pb::AuthConfig {
            username: "podrun".into(),
            password: "wrong".into(),
            ..Default::default()
        }),
    )
    .unwrap_err();
    assert!(e.message().contains("unauthorized"), "{e:?}");
    // docker's `auth` field: base64 of user:password.
    let pulled = pull(
        &mut cri,
        Some(pb::AuthConfig {
            auth: "cG9kcnVuOnNlY3JldA==".into(),
            ..Default::default()
        }),
    )
    .unwrap()
    .into_inner();
    assert!(pulled.image_ref.starts_with("sha256:"));
    cri.run(cri.is().remove_image(pb::RemoveImageRequest {
        image: image(&image_name),
    }))
    .unwrap();
    let gone = cri
        .run(cri.is().image_status(pb::ImageStatusRequest {
            image: image(&image_name),
            verbose: false,
        }))
        .unwrap()
        .into_inner();
    assert!(gone.image.is_none());
    env.assert_nothing_left();
}

/// Whether a process of this machine runs `cmdline` (its arguments joined by
/// spaces).
fn runs(cmdline: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read(p.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == cmdline)
            .unwrap_or(false)
    })
}

/// Waits (at most 10 s) for `cond`.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "waited 10 s for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resize the terminal behind `ws` (a v5 WebSocket with a terminal) to
/// `width`x`height` and type `input` (which must print the size, as `stty
/// size` does) until the output shows the new size; the output so far.
fn resize_and_type(
    ws: &mut stream_client::WebSocket,
    width: u16,
    height: u16,
    input: &[u8],
) -> Vec<u8> {
    let mut resize = vec![4u8];
    resize.extend_from_slice(format!(r#"{{"Width":{width},"Height":{height}}}"#).as_bytes());
    ws.send(&resize);
    let mut typed = vec![0u8];
    typed.extend_from_slice(input);
    let want = format!("{height} {width}");
    let mut output = Vec::new();
    let mut tries = 0;
    while !String::from_utf8_lossy(&output).contains(&want) {
        tries += 1;
        assert!(
            tries < 50,
            "no terminal size in {:?}",
            String::from_utf8_lossy(&output)
        );
        ws.send(&typed);
        let deadline = Instant::now() + Duration::from_millis(300);
        ws.conn
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        while Instant::now() < deadline {
            match ws.message() {
                Some((_, m)) if m.first() == Some(&1) => output.extend_from_slice(&m[1..]),
                _ => {}
            }
        }
    }
    output
}

#[test]
fn exec_and_port_forward_go_through_the_streaming_server() {
    use stream_client::{upgrade, Spdy, WebSocket};
    let env = Env::new(&SUITE, "stream");
    let mut cri = Cri::start(&env);
    let busybox = cri.busybox();
    let logs = env.dir.path().join("logs");
    let config = sandbox_config(
        &env,
        "cri-stream",
        "0f7a61a0-6b1e-4f52-9a53-000000000005",
        &logs,
    );
    let sandbox = cri.sandbox(&config);
    let container = cri.started(
        &sandbox,
        container_config(
            "web",
            &busybox,
            "mkdir -p /www && echo hi-streaming > /www/index.html && exec httpd -f -p 8080 -h /www",
        ),
        &config,
    );
    let exec = |cri: &mut Cri, cmd: &[&str], stdin: bool, stderr: bool, tty: bool| -> String {
        cri.run(cri.rs().exec(pb::ExecRequest {
            container_id: container.clone(),
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            stdin,
            stdout: true,
            stderr,
            tty,
        }))
        .unwrap()
        .into_inner()
        .url
    };

    // SPDY, v4: stdin in, stdout and stderr apart, the exit code in the
    // status on the error stream.
    let url = exec(
        &mut cri,
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; read x; echo got:$x; exit 3",
        ],
        true,
        true,
        false,
    );
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (conn, code, headers) = upgrade(
        &url,
        &[
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v5.channel.k8s.io"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
            ("X-Stream-Protocol-Version", "channel.k8s.io"),
        ],
    );
    assert_eq!(code, 101, "{headers:?}");
    assert_eq!(headers["x-stream-protocol-version"], "v4.channel.k8s.io");
    let mut spdy = Spdy::new(conn);
    let error = spdy.open(&[("streamType", "error")]);
    let stdin = spdy.open(&[("streamType", "stdin")]);
    let stdout = spdy.open(&[("streamType", "stdout")]);
    let stderr = spdy.open(&[("streamType", "stderr")]);
    spdy.send(stdin, b"hello\n", true);
    let got = spdy.collect(&[error, stdout, stderr]);
    assert_eq!(String::from_utf8_lossy(&got[&stdout]), "out\ngot:hello\n");
    assert_eq!(String::from_utf8_lossy(&got[&stderr]), "err\n");
    let status: serde_json::Value = serde_json::from_slice(&got[&error]).unwrap();
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    // A URL serves one connection.
    let (_, code, _) = upgrade(
        &url,
        &[
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ],
    );
    assert_eq!(code, 404);

    // WebSocket, v5, with a terminal: the resize reaches the command's
    // terminal, and the exit status comes on channel 3.
    let url = exec(&mut cri, &["sh"], true, false, true);
    let (conn, code, headers) = upgrade(
        &url,
        &[
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            (
                "Sec-WebSocket-Protocol",
                "v5.channel.k8s.io, v4.channel.k8s.io",
            ),
        ],
    );
    assert_eq!(code, 101, "{headers:?}");
    assert_eq!(
        headers["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(headers["sec-websocket-protocol"], "v5.channel.k8s.io");
    let mut ws = WebSocket { conn };
    resize_and_type(&mut ws, 123, 45, b"stty size\n");
    ws.conn
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    ws.send(b"\x00exit 7\n");
    let mut status = Vec::new();
    while let Some((_, m)) = ws.message() {
        if m.first() == Some(&3) {
            status.extend_from_slice(&m[1..]);
        }
    }
    let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "7", "{status}");

    // A client that hangs up: what it ran is killed.
    let url = exec(&mut cri, &["sleep", "3171"], false, false, false);
    let (conn, code, _) = upgrade(
        &url,
        &[
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ],
    );
    assert_eq!(code, 101);
    let mut spdy = Spdy::new(conn);
    spdy.open(&[("streamType", "error")]);
    spdy.open(&[("streamType", "stdout")]);
    eventually("the exec to run", || runs("sleep 3171"));
    drop(spdy);
    eventually("the exec to be killed", || !runs("sleep 3171"));

    // Port forwarding over SPDY: a request's data and error streams; a port
    // nothing listens on is an error on the error stream.
    let url = cri
        .run(cri.rs().port_forward(pb::PortForwardRequest {
            pod_sandbox_id: sandbox.clone(),
            port: vec![8080],
        }))
        .unwrap()
        .into_inner()
        .url;
    let (conn, code, headers) = upgrade(
        &url,
        &[
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "portforward.k8s.io"),
        ],
    );
    assert_eq!(code, 101, "{headers:?}");
    let mut spdy = Spdy::new(conn);
    let mut page = String::new();
    for _ in 0..50 {
        let error = spdy.open(&[
            ("streamType", "error"),
            ("port", "8080"),
            ("requestID", "0"),
        ]);
        let data = spdy.open(&[("streamType", "data"), ("port", "8080"), ("requestID", "0")]);
        spdy.send(data, b"GET /index.html HTTP/1.0\r\n\r\n", true);
        let got = spdy.collect(&[error, data]);
        page = String::from_utf8_lossy(&got[&data]).into_owned();
        if page.contains("hi-streaming") {
            break;
        }
        // httpd may not listen yet.
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(page.contains("hi-streaming"), "{page}");
    let error = spdy.open(&[("streamType", "error"), ("port", "9"), ("requestID", "1")]);
    let data = spdy.open(&[("streamType", "data"), ("port", "9"), ("requestID", "1")]);
    let got = spdy.collect(&[error, data]);
    let message = String::from_utf8_lossy(&got[&error]);
    assert!(
        message.contains("error forwarding port 9") && message.contains("connection refused"),
        "{message}"
    );
    // A stream without a port is refused.
    let bad = spdy.open(&[("streamType", "data")]);
    loop {
        match spdy.frame() {
            Some(stream_client::Frame::Reset(id)) if id == bad => break,
            Some(_) => {}
            None => panic!("no reset of a stream without a port"),
        }
    }
    drop(spdy);

    // Attach to a container made with stdin and stdin_once: what it writes
    // from now on comes to the client, the client's stdin goes to it, and
    // the client's end of stdin is the container's (sh exits).
    let mut shell = container_config("shell", &busybox, "");
    shell.command = vec!["sh".into()];
    shell.stdin = true;
    shell.stdin_once = true;
    let shell = cri.started(&sandbox, shell, &config);
    let url = cri
        .run(cri.rs().attach(pb::AttachRequest {
            container_id: shell.clone(),
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        }))
        .unwrap()
        .into_inner()
        .url;
    assert!(url.contains("/attach/"), "{url}");
    let (conn, code, _) = upgrade(
        &url,
        &[
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ],
    );
    assert_eq!(code, 101);
    let mut spdy = Spdy::new(conn);
    let error = spdy.open(&[("streamType", "error")]);
    let stdin = spdy.open(&[("streamType", "stdin")]);
    let stdout = spdy.open(&[("streamType", "stdout")]);
    let stderr = spdy.open(&[("streamType", "stderr")]);
    spdy.send(stdin, b"echo attached; echo oops >&2\n", true);
    let got = spdy.collect(&[error, stdout, stderr]);
    assert_eq!(String::from_utf8_lossy(&got[&stdout]), "attached\n");
    assert_eq!(String::from_utf8_lossy(&got[&stderr]), "oops\n");
    assert_eq!(
        String::from_utf8_lossy(&got[&error]),
        r#"{"status":"Success"}"#
    );
    eventually("the shell to exit at the end of its stdin", || {
        cri.run(cri.rs().container_status(pb::ContainerStatusRequest {
            container_id: shell.clone(),
            verbose: false,
        }))
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .state
            == pb::ContainerState::ContainerExited as i32
    });

    // A container on a terminal (tty, as `kubectl run -it` makes): it starts,
    // what its shell writes on the terminal is its stdout in the CRI log, and
    // an attach with a terminal (WebSocket v5) types into it and resizes it.
    let mut term = container_config("tty", &busybox, "");
    term.command = vec!["sh".into()];
    term.stdin = true;
    term.tty = true;
    let term = cri.started(&sandbox, term, &config);
    // A terminal asked of a container without one is refused.
    let url = cri
        .run(cri.rs().attach(pb::AttachRequest {
            container_id: container.clone(),
            stdin: false,
            stdout: true,
            stderr: false,
            tty: true,
        }))
        .unwrap()
        .into_inner()
        .url;
    let (conn, code, _) = upgrade(
        &url,
        &[
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ],
    );
    assert_eq!(code, 101);
    let mut spdy = Spdy::new(conn);
    let error = spdy.open(&[("streamType", "error")]);
    let stdout = spdy.open(&[("streamType", "stdout")]);
    // With a terminal the client also opens the resize stream.
    spdy.open(&[("streamType", "resize")]);
    let got = spdy.collect(&[error, stdout]);
    let message = String::from_utf8_lossy(&got[&error]);
    assert!(message.contains("has none"), "{message}");
    drop(spdy);
    let url = cri
        .run(cri.rs().attach(pb::AttachRequest {
            container_id: term.clone(),
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        }))
        .unwrap()
        .into_inner()
        .url;
    let (conn, code, headers) = upgrade(
        &url,
        &[
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Protocol", "v5.channel.k8s.io"),
        ],
    );
    assert_eq!(code, 101, "{headers:?}");
    let mut ws = WebSocket { conn };
    let output = resize_and_type(&mut ws, 77, 22, b"tty; stty size\n");
    let seen = String::from_utf8_lossy(&output).into_owned();
    assert!(seen.contains("/dev/pts/0"), "not on a terminal: {seen:?}");
    ws.conn
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    ws.send(b"\x00echo bye-$((6*7)); exit 5\n");
    // The output ends with the container: the attach ends well.
    let mut status = Vec::new();
    while let Some((_, m)) = ws.message() {
        if m.first() == Some(&3) {
            status.extend_from_slice(&m[1..]);
        }
    }
    assert_eq!(String::from_utf8_lossy(&status), r#"{"status":"Success"}"#);
    eventually("the terminal's shell to exit 5", || {
        let status = cri
            .run(cri.rs().container_status(pb::ContainerStatusRequest {
                container_id: term.clone(),
                verbose: false,
            }))
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        status.state == pb::ContainerState::ContainerExited as i32 && status.exit_code == 5
    });
    // The CRI log has the terminal's output (echoed input too) as stdout,
    // lines ending in the terminal's \r\n.
    let log = std::fs::read_to_string(logs.join("tty/0.log")).unwrap();
    assert!(
        log.split('\n').any(|l| l.ends_with(" stdout F bye-42\r")),
        "{log}"
    );
    assert!(!log.contains(" stderr "), "{log}");

    // The RPCs' own checks.
    let refused = |r: Result<tonic::Response<pb::ExecResponse>, tonic::Status>| {
        let e = r.unwrap_err();
        (e.code(), e.message().to_owned())
    };
    let (code, message) = refused(cri.run(cri.rs().exec(pb::ExecRequest {
        container_id: container.clone(),
        cmd: vec!["true".into()],
        stdout: true,
        stderr: true,
        tty: true,
        ..Default::default()
    })));
    assert_eq!(
        (code, message.as_str()),
        (
            tonic::Code::InvalidArgument,
            "tty and stderr cannot both be true"
        )
    );
    let (code, message) = refused(cri.run(cri.rs().exec(pb::ExecRequest {
        container_id: "nope".into(),
        cmd: vec!["true".into()],
        stdout: true,
        ..Default::default()
    })));
    assert_eq!(code, tonic::Code::NotFound, "{message}");
    assert!(message.contains("nope"), "{message}");
    let e = cri
        .run(cri.rs().port_forward(pb::PortForwardRequest {
            pod_sandbox_id: "nope".into(),
            port: vec![],
        }))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

    // StopPodSandbox kills what still runs at once, as containerd does: a
    // container that would exit 3 on SIGTERM is SIGKILLed (137).
    let term = cri.started(
        &sandbox,
        container_config(
            "term",
            &busybox,
            "trap 'exit 3' TERM; while true; do sleep 0.1; done",
        ),
        &config,
    );
    cri.run(cri.rs().stop_pod_sandbox(pb::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    }))
    .unwrap();
    let exited = cri
        .run(cri.rs().container_status(pb::ContainerStatusRequest {
            container_id: term.clone(),
            verbose: false,
        }))
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(
        (exited.state, exited.exit_code),
        (pb::ContainerState::ContainerExited as i32, 137),
        "{exited:?}"
    );
    cri.run(cri.rs().remove_pod_sandbox(pb::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    }))
    .unwrap();
    env.assert_nothing_left();
}

#[test]
fn the_sandbox_image_is_present_pinned_and_never_pulled() {
    let env = Env::new(&SUITE, "pause");
    let cri = Cri::start(&env);
    // kubeadm 1.36's pause image; nothing here could pull it (no internet).
    let pause = "registry.k8s.io/pause:3.10.2";
    let status = cri
        .run(cri.is().image_status(pb::ImageStatusRequest {
            image: image(pause),
            verbose: false,
        }))
        .unwrap()
        .into_inner()
        .image
        .expect("the sandbox image is present");
    assert!(status.pinned);
    assert_eq!(status.repo_tags, [pause]);
    let pulled = cri
        .run(cri.is().pull_image(pb::PullImageRequest {
            image: image(pause),
            ..Default::default()
        }))
        .unwrap()
        .into_inner();
    assert_eq!(pulled.image_ref, status.id);
    let listed = cri
        .run(cri.is().list_images(pb::ListImagesRequest::default()))
        .unwrap()
        .into_inner();
    assert!(listed.images.iter().any(|i| i.id == status.id && i.pinned));
    cri.run(cri.is().remove_image(pb::RemoveImageRequest {
        image: image(pause),
    }))
    .unwrap();
    let again = cri
        .run(cri.is().image_status(pb::ImageStatusRequest {
            image: image(&status.id),
            verbose: false,
        }))
        .unwrap()
        .into_inner();
    assert!(again.image.is_some(), "a pinned sandbox image stays");
    // Another pause tag is an image like any other: not present until pulled.
    let other = cri
        .run(cri.is().image_status(pb::ImageStatusRequest {
            image: image("registry.k8s.io/pause:3.9"),
            verbose: false,
        }))
        .unwrap()
        .into_inner();
    assert!(other.image.is_none());
}

/// GetContainerEvents: a client listening while a pod lives reads its sandbox's
/// and its container's events in order (created, started, stopped, deleted;
/// the sandbox's under its own ID), each with the sandbox's status and its
/// containers' (an exit among them, with its code), as kubelet's evented PLEG
/// reads them.
#[test]
fn container_events_follow_a_pods_life() {
    use pb::ContainerEventType as E;
    let env = Env::new(&SUITE, "events");
    let cri = Cri::start(&env);
    let busybox = cri.busybox();
    let mut stream = cri
        .run(cri.rs().get_container_events(pb::GetEventsRequest {}))
        .unwrap()
        .into_inner();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = events.clone();
    // Read on the test's runtime, whenever it runs a call (or a pause).
    cri.rt.spawn(async move {
        while let Ok(Some(event)) = stream.message().await {
            into.lock().unwrap().push(event);
        }
    });
    let wait_for = |what: &str, id: &str, kind: E| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = events
                .lock()
                .unwrap()
                .iter()
                .any(|e: &pb::ContainerEventResponse| {
                    e.container_id == id && e.container_event_type == kind as i32
                });
            if found {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {kind:?} for {what} in 20 s: {:?}",
                events
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|e| (e.container_id.clone(), e.container_event_type))
                    .collect::<Vec<_>>()
            );
            cri.run(async { tokio::time::sleep(Duration::from_millis(50)).await });
        }
    };
    let logs = env.dir.path().join("logs");
    let config = sandbox_config(
        &env,
        "cri-events",
        "0f7a61a0-6b1e-4f52-9a53-000000000007",
        &logs,
    );
    let sandbox = cri.sandbox(&config);
    // It exits by itself: no RPC tells the server, the watcher finds it.
    let container = cri.started(
        &sandbox,
        container_config("app", &busybox, "sleep 1; exit 3"),
        &config,
    );
    wait_for("the container", &container, E::ContainerStoppedEvent);
    let stopped = events
        .lock()
        .unwrap()
        .iter()
        .find(|e| {
            e.container_id == container && e.container_event_type == E::ContainerStoppedEvent as i32
        })
        .cloned()
        .unwrap();
    let pod = stopped.pod_sandbox_status.expect("the sandbox's status");
    assert_eq!(pod.id, sandbox);
    assert_eq!(pod.state, pb::PodSandboxState::SandboxReady as i32);
    let statuses = &stopped.containers_statuses;
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].id, container);
    assert_eq!(
        statuses[0].state,
        pb::ContainerState::ContainerExited as i32
    );
    assert_eq!(statuses[0].exit_code, 3);
    assert!(stopped.created_at > 0);

    cri.run(cri.rs().remove_container(pb::RemoveContainerRequest {
        container_id: container.clone(),
    }))
    .unwrap();
    cri.run(cri.rs().stop_pod_sandbox(pb::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    }))
    .unwrap();
    cri.run(cri.rs().remove_pod_sandbox(pb::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    }))
    .unwrap();
    wait_for("the sandbox", &sandbox, E::ContainerDeletedEvent);
    let seen: Vec<(String, i32)> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.container_id.clone(), e.container_event_type))
        .collect();
    let s = |kind: E| (sandbox.clone(), kind as i32);
    let c = |kind: E| (container.clone(), kind as i32);
    assert_eq!(
        seen,
        [
            s(E::ContainerCreatedEvent),
            s(E::ContainerStartedEvent),
            c(E::ContainerCreatedEvent),
            c(E::ContainerStartedEvent),
            c(E::ContainerStoppedEvent),
            c(E::ContainerDeletedEvent),
            s(E::ContainerStoppedEvent),
            s(E::ContainerDeletedEvent),
        ]
    );
}

/// Status' NetworkReady follows the network a new sandbox would join: the
/// default network here (ready), a CNI config naming a plugin that is not
/// installed (not ready, in containerd's words, naming the plugin), and ready
/// again once that config is gone.
#[test]
fn network_ready_follows_the_cni_config() {
    let env = Env::new(&SUITE, "netready");
    let cri = Cri::start(&env);
    let network = || {
        cri.run(cri.rs().status(pb::StatusRequest { verbose: false }))
            .unwrap()
            .into_inner()
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.r#type == "NetworkReady")
            .expect("a NetworkReady condition")
    };
    assert!(network().status, "{:?}", network());
    let conflist = env.dir.path().join("cni-conf.d/10-broken.conflist");
    std::fs::write(
        &conflist,
        r#"{"cniVersion": "1.0.0", "name": "broken", "plugins": [{"type": "podrun-test-no-such-plugin"}]}"#,
    )
    .unwrap();
    let broken = network();
    assert!(!broken.status, "{broken:?}");
    assert_eq!(broken.reason, "NetworkPluginNotReady");
    assert!(
        broken.message.starts_with(
            "Network plugin returns error: broken: plugin type=\"podrun-test-no-such-plugin\": no executable"
        ),
        "{}",
        broken.message
    );
    std::fs::remove_file(&conflist).unwrap();
    assert!(network().status, "{:?}", network());
}
