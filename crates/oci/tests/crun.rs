//! Runs a generated spec with crun: a busybox root filesystem, an image user resolved by
//! name, the RuntimeDefault seccomp profile, rlimits clamped to this process's. Needs
//! root, crun (scripts/deps.sh) and, on a cgroup v1 hybrid machine,
//! scripts/setup-cgroups.sh, which the test runs itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podrun_oci::cri::{
    ContainerConfig, ContainerMetadata, KeyValue, LinuxContainerResources,
    LinuxContainerSecurityContext, PodSandboxConfig, ProfileType, SecurityProfile,
};
use podrun_oci::{build, ContainerInput, Host, ImageConfig, NamespacePaths, UserFiles};

/// Deletes the container and its cgroups however the test ends.
struct Cleanup {
    crun_root: PathBuf,
    id: String,
    cgroup: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("crun")
            .arg("--root")
            .arg(&self.crun_root)
            .args(["delete", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // crun removes the container's cgroups; the parent we named is ours to remove.
        let parent = Path::new(&self.cgroup)
            .parent()
            .and_then(|p| p.to_str())
            .unwrap_or("");
        assert!(
            !parent.trim_matches('/').is_empty(),
            "never remove a cgroup root"
        );
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let base = c.path();
                for dir in [&self.cgroup[..], parent] {
                    let _ = std::fs::remove_dir(base.join(dir.trim_start_matches('/')));
                }
            }
        }
    }
}

fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("/bin/busybox (Debian's busybox-static)");
    for applet in ["sh", "id", "grep", "cat", "unshare", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
    )
    .unwrap();
    root
}

#[test]
fn crun_runs_the_generated_spec() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "this test needs root"
    );
    let crun = Command::new("crun").arg("--version").output();
    assert!(
        crun.is_ok_and(|o| o.status.success()),
        "crun is not installed (scripts/deps.sh installs it)"
    );
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup-cgroups.sh");
    let status = Command::new("bash")
        .arg(&setup)
        .status()
        .expect("run setup-cgroups.sh");
    assert!(status.success(), "{} failed", setup.display());

    let dir = tempfile::tempdir().unwrap();
    let root = rootfs(dir.path());
    let id = format!("podrun-oci-test-{}", std::process::id());
    let cleanup = Cleanup {
        crun_root: dir.path().join("crun-state"),
        id: id.clone(),
        cgroup: format!("/podrun-oci-test/{id}"),
    };

    let sandbox = PodSandboxConfig {
        hostname: "probe".into(),
        ..Default::default()
    };
    let mut config = ContainerConfig {
        metadata: ContainerMetadata {
            name: "probe".into(),
            attempt: 0,
        },
        command: vec!["sh".into(), "-c".into()],
        args: vec![concat!(
            "id -u; id -G; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; echo $MSG; ",
            // unshare(2) is outside the default profile for a container without CAP_SYS_ADMIN.
            "unshare -U true 2>/dev/null && echo unshare allowed || echo unshare denied"
        )
        .into()],
        envs: vec![KeyValue {
            key: "MSG".into(),
            value: "from the config".into(),
        }],
        ..Default::default()
    };
    config.linux.security_context = LinuxContainerSecurityContext {
        // Its own PID namespace (CRI's default, POD, would need the sandbox's).
        namespace_options: podrun_oci::cri::NamespaceOption {
            pid: podrun_oci::cri::NamespaceMode::Container,
            ..Default::default()
        },
        seccomp: Some(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault,
            ..Default::default()
        }),
        no_new_privs: true,
        ..Default::default()
    };
    config.linux.resources = Some(LinuxContainerResources {
        unified: [("pids.max".to_string(), "64".to_string())].into(),
        ..Default::default()
    });
    let image = ImageConfig {
        user: "app".into(),
        ..Default::default()
    };
    let users = UserFiles::read(&root).unwrap();
    // This process's hard rlimits (NOFILE is 20000 here) and bounding capabilities.
    let host = Host::detect().unwrap();
    let input = ContainerInput {
        sandbox: &sandbox,
        sandbox_id: None,
        config: &config,
        image: &image,
        rootfs: &root,
        users: &users,
        namespaces: NamespacePaths::default(),
        cgroups_path: Some(cleanup.cgroup.clone().into()),
        seccomp_localhost_profile: None,
        honor_image_group: false,
        host: &host,
    };
    let generated = build(&input).unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&generated.spec).unwrap(),
    )
    .unwrap();

    let mut child = Command::new("crun")
        .arg("--root")
        .arg(&cleanup.crun_root)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crun");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("crun run did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "crun run failed ({}): {stderr}\nstdout: {stdout}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "1000",
            "1000 2000",
            "NoNewPrivs:\t1",
            "Seccomp:\t2",
            "from the config",
            "unshare denied"
        ],
        "stderr: {stderr}"
    );
    drop(cleanup);
    assert!(
        !Path::new("/sys/fs/cgroup/pids/podrun-oci-test").exists(),
        "cgroups left behind"
    );
}
