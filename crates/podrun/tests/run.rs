//! `podrun run -f` end to end: a real pod from the local registry, run through
//! the monitor and crun, its logs streamed, its exit code returned, and nothing
//! of it left on the machine.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn registry() -> String {
    std::env::var("PODRUN_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::Builder::new()
                .prefix("podrun-run-")
                .tempdir()
                .unwrap(),
        }
    }

    fn run(&self, manifest: &str) -> Output {
        let file = self.dir.path().join("pod.yaml");
        std::fs::write(&file, manifest).unwrap();
        Command::new(env!("CARGO_BIN_EXE_podrun"))
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--run-root")
            .arg(self.dir.path().join("run"))
            .arg("--registries-conf")
            .arg(self.dir.path().join("none.conf"))
            .arg("--hosts-dir")
            .arg(self.dir.path().join("none.d"))
            .arg("run")
            .arg("-f")
            .arg(&file)
            .env("HOME", self.dir.path())
            .env("REGISTRY_AUTH_FILE", self.dir.path().join("auth.json"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// No mount, cgroup, sandbox, pod directory or container filesystem is left.
    fn assert_nothing_left(&self) {
        let prefix = self.dir.path().to_string_lossy().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&prefix), "mounts left below {prefix}");
        for sub in ["root/pods", "root/containers", "run/pods", "run/sandboxes"] {
            let left: Vec<_> = std::fs::read_dir(self.dir.path().join(sub))
                .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{sub}: {left:?}");
        }
        let pid = std::process::id();
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            for e in std::fs::read_dir(hierarchy.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let n = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !n.contains(&format!("{pid:08x}")) || !n.starts_with("podrun-"),
                    "cgroup left: {}",
                    e.path().display()
                );
            }
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let prefix = self.dir.path().to_string_lossy().to_string();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

#[test]
fn two_containers_share_an_empty_dir_and_the_pod_exit_code_is_returned() {
    let env = Env::new();
    let r = registry();
    let out = env.run(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: share
spec:
  restartPolicy: Never
  containers:
  - name: writer
    image: {r}/busybox:latest
    command: ["sh", "-c", "echo hello from $(WHO) > /data/msg; echo wrote; echo to-stderr >&2"]
    env:
    - name: WHO
      value: writer
    volumeMounts:
    - name: data
      mountPath: /data
  - name: reader
    image: {r}/busybox:latest
    command: ["sh", "-c", "while [ ! -s /data/msg ]; do sleep 0.05; done; cat /data/msg; hostname; exit 7"]
    volumeMounts:
    - name: data
      mountPath: /data
      readOnly: true
  volumes:
  - name: data
    emptyDir: {{}}
"#
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "reader | hello from writer",
            "reader | share",
            "writer | wrote"
        ]
    );
    assert!(stderr.contains("writer | to-stderr"), "{stderr}");
    env.assert_nothing_left();
}

#[test]
fn bad_manifests_and_missing_host_paths_fail_cleanly() {
    let env = Env::new();
    let r = registry();
    let out = env.run(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\nspec:\n  containers:\n  - name: c\n    image: {r}/busybox:latest\n    imagePullPolicyy: Always\n"
    ));
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("pod.yaml:9: spec.containers[0].imagePullPolicyy: unknown field"),
        "{e}"
    );
    assert!(
        !env.dir.path().join("root").exists(),
        "an invalid manifest must change nothing"
    );

    let out = env.run(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hp\nspec:\n  containers:\n  - name: c\n    image: {r}/busybox:latest\n    volumeMounts:\n    - name: h\n      mountPath: /h\n  volumes:\n  - name: h\n    hostPath:\n      path: /nonexistent/podrun-test\n"
    ));
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains(
            "pod/hp: container c: volume h: hostPath /nonexistent/podrun-test does not exist"
        ),
        "{e}"
    );
    assert!(!Path::new("/nonexistent/podrun-test").exists());
    env.assert_nothing_left();
}
