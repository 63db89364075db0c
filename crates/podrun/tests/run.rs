//! `podrun run -f` end to end: a real pod from the local registry, run through
//! the monitor and crun, its logs streamed, its exit code returned, and nothing
//! of it left on the machine. `podrun run --detach` hands the pod to the agent
//! (started on demand), which the checks stop before they look.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn registry() -> String {
    std::env::var("PODRUN_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

struct Env {
    /// The pods' network (dropped before `dir`, whose root holds its leases).
    network: support::TestNetwork,
    dir: tempfile::TempDir,
    /// The names of the pods this test made (their cgroups are checked).
    names: std::cell::RefCell<Vec<String>>,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("podrun-run-")
            .tempdir()
            .unwrap();
        Env {
            network: support::TestNetwork::new(dir.path(), &dir.path().join("root")),
            dir,
            names: Default::default(),
        }
    }

    fn run(&self, manifest: &str) -> Output {
        self.run_with(manifest, &[])
    }

    /// `podrun run -f <manifest> <extra…>`.
    fn run_with(&self, manifest: &str, extra: &[&str]) -> Output {
        let mut args = self.run_args(manifest);
        args.extend(extra.iter().map(|s| s.to_string()));
        self.podrun(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `podrun run -f <manifest>` in the foreground, left running (its
    /// output discarded).
    fn spawn_run(&self, manifest: &str) -> std::process::Child {
        let args = self.run_args(manifest);
        self.command(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// The arguments of `podrun run -f <manifest>`, written to a file; the
    /// pod's name is remembered for the cleanup.
    fn run_args(&self, manifest: &str) -> Vec<String> {
        let file = self.dir.path().join("pod.yaml");
        std::fs::write(&file, manifest).unwrap();
        if let Some(name) = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("name: "))
        {
            self.names.borrow_mut().push(name.trim().to_string());
        }
        vec!["run".to_string(), "-f".into(), file.display().to_string()]
    }

    /// `podrun <args…>` on this environment's roots.
    fn podrun(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = support::podrun_in(self.dir.path(), &self.network.config_file);
        command.args(args);
        command
    }

    /// Stop the agent a detached run started.
    fn stop_agent(&self) {
        support::stop_agent(self.dir.path());
    }

    /// `podrun <args…>`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.podrun(args);
        assert!(
            out.status.success(),
            "podrun {args:?}: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// No mount, cgroup, sandbox, pod directory or container filesystem is
    /// left, and no process (the agent is stopped first).
    fn assert_nothing_left(&self) {
        self.stop_agent();
        let prefix = self.dir.path().to_string_lossy().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&prefix), "mounts left below {prefix}");
        for sub in ["root/pods", "root/containers", "run/pods", "run/sandboxes"] {
            let left: Vec<_> = std::fs::read_dir(self.dir.path().join(sub))
                .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{sub}: {left:?}");
        }
        let left = cgroups_of(&self.pods());
        assert!(left.is_empty(), "cgroups left: {left:?}");
        let procs = std::fs::read_dir("/proc").unwrap();
        for p in procs.flatten() {
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(
                !cmdline.contains(&prefix),
                "process left: {} {cmdline}",
                p.file_name().to_string_lossy()
            );
        }
    }

    /// The pod IDs this environment's pods had (from the container directories
    /// seen so far are gone by now): the pods' names with the namespace, which
    /// begin each pod ID.
    fn pods(&self) -> Vec<String> {
        self.names
            .borrow()
            .iter()
            .map(|n| format!("default-{n}-"))
            .collect()
    }
}

/// Directories in any cgroup hierarchy whose name begins with one of `prefixes`
/// (searched in the podrun trees: `/podrun*`, three levels deep).
fn cgroups_of(prefixes: &[String]) -> Vec<String> {
    fn walk(dir: &Path, depth: usize, prefixes: &[String], out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let n = e.file_name().to_string_lossy().into_owned();
            if prefixes
                .iter()
                .any(|p| n.starts_with(p.as_str()) || n.starts_with(&format!("podrun-{p}")))
            {
                out.push(e.path().display().to_string());
            }
            if depth > 0 && (depth < 3 || n.starts_with("podrun")) {
                walk(&e.path(), depth - 1, prefixes, out);
            }
        }
    }
    let mut out = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        walk(&h.path(), 3, prefixes, &mut out);
    }
    out
}

impl Drop for Env {
    fn drop(&mut self) {
        // Stop whatever pods a failed test left running, then unmount.
        for name in self.names.borrow().iter() {
            let _ = self.podrun(&["delete", "pod", name]);
        }
        self.stop_agent();
        support::unmount_below(self.dir.path());
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

    // A volume type podrun cannot mount yet is refused before anything is stored or
    // pulled, detached or not.
    let conf_volume = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: cm\nspec:\n  containers:\n  - name: c\n    image: {r}/busybox:latest\n    volumeMounts:\n    - name: conf\n      mountPath: /conf\n  volumes:\n  - name: conf\n    nfs:\n      server: nfs.local\n      path: /export\n"
    );
    for extra in [&[][..], &["--detach"]] {
        let out = env.run_with(&conf_volume, extra);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(
            e.contains("pod.yaml:14: spec.volumes[0].nfs: unsupported value: podrun does not support nfs volumes yet (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected, image, persistentVolumeClaim)"),
            "{extra:?}: {e}"
        );
        assert!(
            !env.dir.path().join("root").exists(),
            "an unsupported volume must change nothing"
        );
    }

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

    // An image that cannot be pulled: pod, container, image and cause.
    let out = env.run(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nopull\nspec:\n  containers:\n  - name: app\n    image: {r}/no-such-image:1\n"
    ));
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains(&format!(
            "Error: pod/nopull: container app: pull {r}/no-such-image:1: "
        )) && e.to_lowercase().contains("unknown"),
        "{e}"
    );

    // runAsNonRoot is enforced before anything starts.
    let out = env.run(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nonroot\nspec:\n  securityContext:\n    runAsNonRoot: true\n  containers:\n  - name: app\n    image: {r}/busybox:latest\n"
    ));
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("Error: pod/nonroot: container app: container has runAsNonRoot and image will run as root"),
        "{e}"
    );
    env.assert_nothing_left();
}

/// A pod whose containers stop at once on SIGTERM; `once` exits 3 and is
/// not started again.
fn sleeper(name: &str) -> String {
    let r = registry();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; echo started; echo oops >&2; while true; do sleep 0.1; done"]
  - name: once
    image: {r}/busybox:latest
    command: ["sh", "-c", "echo one; echo two; echo bye > /dev/termination-log; exit 3"]
"#
    )
}

#[test]
fn a_detached_pod_is_listed_logged_and_deleted() {
    let env = Env::new();
    let out = env.run_with(&sleeper("detached"), &["--detach"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pod/detached created\n"
    );

    // The same name again is refused and changes nothing.
    let again = env.run_with(&sleeper("detached"), &["--detach"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("pod/detached: already exists in namespace default"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // `once` exits 3 while `app` keeps running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let table = loop {
        let t = env.ok(&["get", "pods"]);
        if t.contains("1/2") || std::time::Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    // kubectl shows the reason of a terminated container over a running one.
    assert_eq!(&row[..4], ["detached", "1/2", "Error", "0"], "{table}");
    assert!(row[4].ends_with('s'), "{table}");
    assert_eq!(env.ok(&["get", "pods", "-o", "name"]), "pod/detached\n");
    let all = env.ok(&["get", "pods", "-A"]);
    assert!(all.starts_with("NAMESPACE"), "{all}");
    let other = env.podrun(&["get", "pods", "-n", "other"]);
    assert!(other.status.success());
    assert_eq!(
        String::from_utf8_lossy(&other.stderr),
        "No resources found in other namespace.\n"
    );

    // Logs: the first container by default, -c, --timestamps, --tail, -f.
    let out = env.podrun(&["logs", "detached"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\noops\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Defaulted container \"app\""));
    assert_eq!(
        env.ok(&["logs", "pod/detached", "-c", "once"]),
        "one\ntwo\n"
    );
    assert_eq!(
        env.ok(&["logs", "detached", "-c", "once", "--tail", "1"]),
        "two\n"
    );
    // -f ends once the container has ended.
    assert_eq!(
        env.ok(&["logs", "detached", "-c", "once", "-f"]),
        "one\ntwo\n"
    );
    let stamped = env.ok(&["logs", "detached", "-c", "once", "--timestamps"]);
    for line in stamped.lines() {
        let (time, text) = line.split_once(' ').unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{line}");
        assert!(text == "one" || text == "two", "{line}");
    }
    let bad = env.podrun(&["logs", "detached", "-c", "nope"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("container nope is not valid for pod detached"));

    // The termination message file is the pod's, on the host.
    let pods_dir = env.dir.path().join("root/pods");
    let pod_dir = std::fs::read_dir(&pods_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(pod_dir.path().join("termination/once")).unwrap(),
        "bye\n"
    );

    assert_eq!(
        env.ok(&["delete", "pod", "detached"]),
        "pod \"detached\" deleted\n"
    );
    let missing = env.podrun(&["delete", "detached"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("pods \"detached\" not found in namespace \"default\""));
    let out = env.podrun(&["get", "pods"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "No resources found in default namespace.\n"
    );
    env.assert_nothing_left();
}

/// `run --detach` has kubelet's rules, as `apply` has: the init container runs
/// first, and a container that fails under restartPolicy OnFailure is started
/// again until it succeeds.
#[test]
fn a_detached_pod_runs_its_init_containers_and_restarts_what_failed() {
    let env = Env::new();
    let r = registry();
    let out = env.run_with(
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: retry
spec:
  restartPolicy: OnFailure
  initContainers:
  - name: init
    image: {r}/busybox:latest
    command: ["sh", "-c", "echo prepared > /data/init; echo init done"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  containers:
  - name: app
    image: {r}/busybox:latest
    # Fails on its first run, succeeds on the next (the emptyDir outlives it).
    command: ["sh", "-c", "cat /data/init; if [ -e /data/failed ]; then exit 0; fi; touch /data/failed; exit 1"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    emptyDir: {{}}
"#
        ),
        &["--detach"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pod/retry created\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let table = loop {
        let t = env.ok(&["get", "pods"]);
        if t.contains("Completed") || std::time::Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["retry", "0/1", "Completed", "1"], "{table}");
    // kubectl's `1 (5s ago)`.
    assert!(row[4].starts_with('(') && row[5] == "ago)", "{table}");
    assert_eq!(env.ok(&["logs", "retry", "-c", "init"]), "init done\n");
    // Each instance its own log, as kubelet keeps them: the last, and with
    // -p the one before.
    assert_eq!(env.ok(&["logs", "retry"]), "prepared\n");
    assert_eq!(env.ok(&["logs", "retry", "-p"]), "prepared\n");
    assert_eq!(
        env.ok(&["delete", "pod", "retry"]),
        "pod \"retry\" deleted\n"
    );
    env.assert_nothing_left();
}

/// `get pods` until its first row satisfies `done` (or 20 s passed): the table.
fn get_until(env: &Env, done: impl Fn(&[&str]) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let t = env.ok(&["get", "pods"]);
        let row: Vec<&str> = t
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if done(&row) || std::time::Instant::now() > deadline {
            return t;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A pod of `podrun run` in the foreground is listed by `get` in another
/// terminal with what its run reports; once that run is killed, the pod is
/// Unknown (nothing manages it), and `delete` removes it.
#[test]
fn a_foreground_pod_is_listed_and_unknown_once_its_run_is_killed() {
    let env = Env::new();
    let mut run = env.spawn_run(&sleeper("fore"));
    let table = get_until(&env, |row| row.get(2) == Some(&"Error"));
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["fore", "1/2", "Error", "0"], "{table}");
    let described = env.ok(&["describe", "pod", "fore"]);
    assert!(
        described
            .lines()
            .any(|l| l.split_whitespace().eq(["Status:", "Running"])),
        "{described}"
    );

    run.kill().unwrap();
    run.wait().unwrap();
    let table = env.ok(&["get", "pods"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["fore", "0/2", "Unknown", "0"], "{table}");
    // Its containers still run under their monitor until it is deleted.
    assert!(
        !cgroups_of(&env.pods()).is_empty(),
        "the containers' cgroups should still exist"
    );
    assert_eq!(env.ok(&["delete", "pod", "fore"]), "pod \"fore\" deleted\n");
    env.assert_nothing_left();
}

#[test]
fn env_comes_from_config_maps_secrets_and_the_downward_api() {
    let env = Env::new();
    let r = registry();
    let out = env.run(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: envpod
  labels: {{app: shop}}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "echo $CFG_mode $PW $NAME $NS $APP $MEM $(LIT) ${{#PODUID}}"]
    resources: {{limits: {{memory: 64Mi}}}}
    envFrom:
    - configMapRef: {{name: cfg}}
      prefix: CFG_
    env:
    - {{name: LIT, value: "literal"}}
    - name: PW
      valueFrom: {{secretKeyRef: {{name: pw, key: password}}}}
    - name: NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    - name: NS
      valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}
    - name: PODUID
      valueFrom: {{fieldRef: {{fieldPath: metadata.uid}}}}
    - name: APP
      valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['app']"}}}}
    - name: MEM
      valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: cfg}}
data: {{mode: fast}}
---
apiVersion: v1
kind: Secret
metadata: {{name: pw}}
stringData: {{password: hunter2}}
"#
    ));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "app | fast hunter2 envpod default shop 64 literal 36\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));

    // A missing ConfigMap is kubelet's CreateContainerConfigError: named, nothing left.
    let out = env.run(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: nocfg
spec:
  containers:
  - name: app
    image: {r}/busybox:latest
    env:
    - name: X
      valueFrom: {{configMapKeyRef: {{name: absent, key: k}}}}
"#
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("pod/nocfg: container app: configmap \"absent\" not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.assert_nothing_left();
}

/// A container that cannot be made after the init containers ran (a key its
/// ConfigMap lacks: kubelet's CreateContainerConfigError, retried with
/// back-off forever) ends a foreground run, as `podman kube play` fails:
/// exit code 1, the error naming the pod, the container and the cause, and
/// nothing left. (Made in the run's first sync, it is reported from there.)
#[test]
fn a_container_that_cannot_be_made_after_the_init_containers_fails_the_run() {
    let env = Env::new();
    let r = registry();
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: nokey
spec:
  initContainers:
  - name: init
    image: {r}/busybox:latest
    command: ["true"]
  containers:
  - name: app
    image: {r}/busybox:latest
    env:
    - name: X
      valueFrom: {{configMapKeyRef: {{name: cfg, key: absent}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: cfg}}
data: {{present: "1"}}
"#
    );
    let args = env.run_args(&manifest);
    let mut child = env
        .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            // Ctrl-C: the run stops and removes the pod.
            // SAFETY: kill signals the child this test spawned, not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let out = child.wait_with_output().unwrap();
            panic!(
                "podrun run still ran 30 s after its container could not be made\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pod/nokey: container app: ") && stderr.contains("absent"),
        "{stderr}"
    );
    env.assert_nothing_left();
}

#[test]
fn the_pod_has_its_files_shm_memory_volumes_and_qos_cgroup() {
    let env = Env::new();
    let r = registry();
    let script = [
        "head -1 /etc/hosts",
        "cat /etc/hostname",
        "grep -c nameserver /etc/resolv.conf >/dev/null && echo resolv ok",
        "grep ' /dev/shm ' /proc/mounts | grep -o 'size=65536k'",
        "dd if=/dev/zero of=/mem/big bs=1024 count=2048 2>/dev/null || echo mem full",
        "grep ' /mem ' /proc/mounts | cut -d' ' -f3",
    ];
    // On v2 the container has a cgroup namespace of its own (as containerd gives it):
    // its cgroup is the root of what it sees, and /sys/fs/cgroup is that cgroup.
    let cgroup_checks = if support::cgroup_v2() {
        [
            "grep -c '^0::/$' /proc/self/cgroup",
            "cat /sys/fs/cgroup/memory.max",
        ]
    } else {
        [
            "grep -c ':memory:/podrun/burstable/default-files-[0-9a-f]*/app$' /proc/self/cgroup",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        ]
    };
    let script = script
        .iter()
        .chain(&cgroup_checks)
        .copied()
        .collect::<Vec<_>>()
        .join("; ");
    let out = env.run(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: files
spec:
  restartPolicy: Never
  hostAliases:
  - ip: 10.1.2.3
    hostnames: [db.example]
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "{script}"]
    resources:
      requests: {{memory: 32Mi}}
      limits: {{memory: 64Mi}}
    volumeMounts:
    - name: mem
      mountPath: /mem
  volumes:
  - name: mem
    emptyDir: {{medium: Memory, sizeLimit: 1Mi}}
"#
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "app | # Kubernetes-managed hosts file.\n\
         app | files\n\
         app | resolv ok\n\
         app | size=65536k\n\
         app | mem full\n\
         app | tmpfs\n\
         app | 1\n\
         app | 67108864\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    env.assert_nothing_left();
}

/// A Burstable container's CPU and memory reach its cgroup files as kubelet converts
/// them: a 250m request is 256 CPU shares, a 500m limit a 50 ms quota per 100 ms
/// period, 64Mi of memory 67108864 bytes. On v2 the weight is 10 by the linear rule
/// 1 + (shares - 2) * 9999 / 262142 with both backends: podrun pins it (libcontainer
/// 0.7 alone would write 35, by the log-quadratic rule of runc >= 1.3.2; Debian 12's
/// crun 1.8.1 writes 10). On v2 the container sees its own cgroup (a cgroup
/// namespace); on v1 its cgroups are mounted per controller.
#[test]
fn a_containers_limits_are_in_its_cgroup_files() {
    let env = Env::new();
    let r = registry();
    let files = if support::cgroup_v2() {
        ["cpu.weight", "cpu.max", "memory.max"].map(|f| format!("/sys/fs/cgroup/{f}"))
    } else {
        [
            "cpu/cpu.shares",
            "cpu/cpu.cfs_quota_us",
            "memory/memory.limit_in_bytes",
        ]
        .map(|f| format!("/sys/fs/cgroup/{f}"))
    };
    let expected = if support::cgroup_v2() {
        "app | 10\napp | 50000 100000\napp | 67108864\n"
    } else {
        "app | 256\napp | 50000\napp | 67108864\n"
    };
    let out = env.run(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: limits
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["cat", "{}", "{}", "{}"]
    resources:
      requests: {{cpu: 250m, memory: 32Mi}}
      limits: {{cpu: 500m, memory: 64Mi}}
"#,
        files[0], files[1], files[2]
    ));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    env.assert_nothing_left();
}

#[test]
fn containers_of_a_pod_share_localhost_and_ipc() {
    let env = Env::new();
    let r = registry();
    let out = env.run(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: shared
spec:
  restartPolicy: Never
  containers:
  - name: server
    image: {r}/busybox:latest
    command: ["sh", "-c", "readlink /proc/self/ns/ipc; readlink /proc/self/ns/net; echo hello | nc -l -p 8080"]
  - name: client
    image: {r}/busybox:latest
    command: ["sh", "-c", "readlink /proc/self/ns/ipc; readlink /proc/self/ns/net; until nc 127.0.0.1 8080 </dev/null; do sleep 0.05; done"]
"#
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let of = |who: &str| -> Vec<String> {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{who} | ")))
            .map(String::from)
            .collect()
    };
    let (server, client) = (of("server"), of("client"));
    assert_eq!(server.len(), 2, "{stdout}");
    assert!(server[0].starts_with("ipc:["), "{stdout}");
    assert!(server[1].starts_with("net:["), "{stdout}");
    assert_eq!(client, [&server[0], &server[1], "hello"], "{stdout}");
    // Not the host's namespaces.
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(server[1], host_net.display().to_string());
    env.assert_nothing_left();
}

/// A process exec'd in a container has the container's seccomp filter and
/// capabilities, as runc gives it (libcontainer's exec alone loads no filter):
/// with the RuntimeDefault profile, `Seccomp: 2` and the same capability sets
/// as the container's process, with no_new_privs too where the container has
/// it (allowPrivilegeEscalation: false).
#[test]
fn a_container_with_a_terminal_runs_on_one() {
    // `tty: true` (as `kubectl run -it` writes it): the container's process
    // runs on a pseudo-terminal whose output is its stdout, `\r\n` and all,
    // as kubelet logs it. (CI runs this file again with crun.)
    let env = Env::new();
    let r = registry();
    let out = env.run(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: term
spec:
  restartPolicy: Never
  containers:
  - name: shell
    image: {r}/busybox:latest
    stdin: true
    tty: true
    command: ["sh", "-c", "tty; test -t 0 && test -t 1 && test -t 2 && echo all-three; exit 4"]
"#
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(
        stdout
            .split('\n')
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>(),
        ["shell | /dev/pts/0\r", "shell | all-three\r"],
        "stderr: {stderr}"
    );
    env.assert_nothing_left();
}

#[test]
fn an_exec_has_the_containers_seccomp_filter_and_capabilities() {
    let env = Env::new();
    let r = registry();
    let out = env.run_with(
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: secexec
spec:
  securityContext:
    seccompProfile: {{type: RuntimeDefault}}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sleep", "600"]
  - name: nnp
    image: {r}/busybox:latest
    command: ["sleep", "600"]
    securityContext: {{allowPrivilegeEscalation: false}}
"#
        ),
        &["--detach"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fields = "^(Seccomp|NoNewPrivs|CapEff|CapPrm|CapBnd):";
    for (container, nnp) in [("app", "0"), ("nnp", "1")] {
        let show = |pid: &str| {
            env.ok(&[
                "exec",
                "secexec",
                "-c",
                container,
                "--",
                "grep",
                "-E",
                fields,
                &format!("/proc/{pid}/status"),
            ])
        };
        let init = show("1");
        let exec = show("self");
        assert_eq!(exec, init, "{container}: exec'd process vs the container's");
        assert!(exec.contains("Seccomp:\t2\n"), "{container}: {exec}");
        assert!(
            exec.contains(&format!("NoNewPrivs:\t{nnp}\n")),
            "{container}: {exec}"
        );
        // The filter works: RuntimeDefault refuses sethostname without
        // CAP_SYS_ADMIN, which the exec'd process held only to load it.
        let out = env.podrun(&["exec", "secexec", "-c", container, "--", "hostname", "x"]);
        assert_eq!(out.status.code(), Some(1), "{container}");
    }
    env.ok(&["delete", "pod", "secexec"]);
    env.assert_nothing_left();
}

#[test]
fn exec_runs_in_the_container_and_a_missing_executable_is_named() {
    let env = Env::new();
    let out = env.run_with(&sleeper("execpod"), &["-d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.podrun(&[
        "exec",
        "execpod",
        "-c",
        "app",
        "--",
        "sh",
        "-c",
        "echo in $(hostname); cat /etc/hostname; exit 5",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "in execpod\nexecpod\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(5));
    let out = env.podrun(&["exec", "execpod", "--", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("exec: \"nosuchcmd\": executable file not found in $PATH"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `once` has exited: exec into it is refused.
    let out = env.podrun(&["exec", "execpod", "-c", "once", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("pod/execpod: container once: cannot exec in a container that is not running"));
    env.ok(&["delete", "pod", "execpod"]);

    // A container whose command is not in the image: named, and nothing left.
    let r = registry();
    let out = env.run(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nocmd\nspec:\n  containers:\n  - name: app\n    image: {r}/busybox:latest\n    command: [\"nosuchcmd\"]\n"
    ));
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("Error: pod/nocmd: container app: start: ")
            && e.contains("exec: \"nosuchcmd\": executable file not found in $PATH"),
        "{e}"
    );
    let out = env.run_with(
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nocmd2\nspec:\n  containers:\n  - name: app\n    image: {r}/busybox:latest\n    command: [\"nosuchcmd\"]\n"
        ),
        &["--detach"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("exec: \"nosuchcmd\": executable file not found in $PATH"));
    // The agent keeps the pod, as kubelet does (with its StartError shown),
    // until it is deleted.
    let table = env.ok(&["get", "pods"]);
    assert!(table.contains("nocmd2"), "{table}");
    env.ok(&["delete", "pod", "nocmd2"]);
    env.assert_nothing_left();
}

#[test]
fn share_process_namespace_and_host_network() {
    let env = Env::new();
    let r = registry();
    let host_net = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    let out = env.run(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: pidns
spec:
  restartPolicy: Never
  shareProcessNamespace: true
  hostNetwork: true
  containers:
  - name: sleeper
    image: {r}/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 31 & wait"]
  - name: looker
    image: {r}/busybox:latest
    # The pattern `sleep 3[1]` matches the sleeper's command line, not this one.
    command: ["sh", "-c", "until grep -qs 'sleep 3[1]' /proc/[0-9]*/cmdline; do sleep 0.05; done; tr '\\0' ' ' </proc/1/cmdline | grep -o podrun-pause; readlink /proc/self/ns/net; kill $(grep -ls 'sleep 3[1]' /proc/[0-9]*/cmdline | cut -d/ -f3)"]
"#
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        format!("looker | podrun-pause\nlooker | {host_net}\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.assert_nothing_left();
}

/// The README's example of volumes (examples/config-pod.yaml: a ConfigMap file,
/// a Secret and the pod's labels) runs unchanged but for the registry, in the
/// foreground, and leaves nothing (the secret's tmpfs included).
#[test]
fn the_config_volume_example_runs() {
    let env = Env::new();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/config-pod.yaml"),
    )
    .unwrap();
    let out = env.run(&example.replace("127.0.0.1:5000", &registry()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(
        stdout,
        "show | enemies=aliens\nshow | lives=3\nshow | password: s3cr3t\nshow | app=\"game\"\nshow | tier=\"backend\"\nshow | plays: 1\n"
    );
    // The claim's data outlives the pod: a second run counts on.
    let out = env.run(&example.replace("127.0.0.1:5000", &registry()));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("show | plays: 2\n"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    env.assert_nothing_left();
}

/// The node's pool of 2 MiB huge pages, set for a test and put back on drop
/// (also when the test fails).
struct HugePages {
    before: String,
}

impl HugePages {
    const POOL: &'static str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

    fn set(pages: u32) -> HugePages {
        let before = std::fs::read_to_string(Self::POOL)
            .unwrap_or_else(|e| panic!("{}: {e} (a kernel without 2 MiB huge pages)", Self::POOL));
        let pool = HugePages { before };
        std::fs::write(Self::POOL, pages.to_string()).expect("set the huge page pool (root)");
        let now = std::fs::read_to_string(Self::POOL).unwrap();
        assert_eq!(
            now.trim(),
            pages.to_string(),
            "the kernel gave fewer huge pages"
        );
        pool
    }
}

impl Drop for HugePages {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::POOL, self.before.trim());
    }
}

fn hugepages_pod(r: &str, medium: &str, resources: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: huge
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "grep ' /hp ' /proc/mounts"]
    resources: {resources}
    volumeMounts:
    - name: hp
      mountPath: /hp
  volumes:
  - name: hp
    emptyDir: {{medium: {medium}}}
"#
    )
}

/// A hugepages emptyDir is a hugetlbfs of the page size the pod requests, as
/// kubelet mounts it (`HugePages-2Mi`, or `HugePages` with the size taken from
/// the requests); a node without huge pages of that size, or a pod that
/// requests none, gets a clear error and nothing is left.
#[test]
fn a_hugepages_empty_dir_is_a_hugetlbfs_where_the_node_has_them() {
    let env = Env::new();
    let r = registry();
    let requests = "{limits: {hugepages-2Mi: 2Mi, memory: 16Mi}}";
    {
        let _none = HugePages::set(0);
        let out = env.run(&hugepages_pod(&r, "HugePages-2Mi", requests));
        let e = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{e}");
        assert!(
            e.contains("volume hp: medium HugePages-2Mi: the node has no huge pages of size 2Mi"),
            "{e}"
        );
        env.assert_nothing_left();
    }
    let _pool = HugePages::set(2);
    let out = env.run(&hugepages_pod(&r, "HugePages", "{limits: {memory: 16Mi}}"));
    let e = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{e}");
    assert!(
        e.contains("medium HugePages: hugePages storage requested, but there is no resource request for huge pages"),
        "{e}"
    );
    env.assert_nothing_left();
    for medium in ["HugePages-2Mi", "HugePages"] {
        let out = env.run(&hugepages_pod(&r, medium, requests));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(" /hp hugetlbfs ") && stdout.contains("pagesize=2M"),
            "{medium}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0));
        env.assert_nothing_left();
    }
}
