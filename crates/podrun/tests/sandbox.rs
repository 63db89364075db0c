//! The pod sandbox for real: a podrun-pause process in new namespaces, pinned
//! to files, joined from outside with nsenter, and torn down without a trace.

use podrun_runtime::sandbox::{Namespace, Sandbox, SandboxConfig};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

fn pause() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_podrun-pause"))
}

/// Destroys the sandbox even when an assertion fails.
struct Guard(Sandbox);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.destroy();
    }
}

fn nsenter(flag: &str, path: &Path, cmd: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("{flag}={}", path.display()))
        .args(cmd)
        .output()
        .unwrap();
    assert!(out.status.success(), "nsenter {cmd:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn ns_inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn a_sandbox_holds_pinned_namespaces_and_leaves_nothing() {
    let run = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        id: "web-1".into(),
        hostname: "web".into(),
        host_network: false,
        share_pid: true,
    };
    let mut g = Guard(Sandbox::create(run.path(), pause(), &config).unwrap());
    let sb = &g.0;
    for ns in [
        Namespace::Net,
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Pid,
    ] {
        let pinned = ns_inode(&sb.ns_path(ns));
        let host = ns_inode(&Path::new("/proc/self/ns").join(ns.name()));
        assert_ne!(pinned, host, "{} namespace is the host's", ns.name());
        let live = ns_inode(&Path::new(&format!("/proc/{}/ns", sb.pid)).join(ns.name()));
        assert_eq!(pinned, live, "{} pin is not the pause process's", ns.name());
    }
    assert_eq!(
        nsenter("--uts", &sb.ns_path(Namespace::Uts), &["hostname"]).trim(),
        "web"
    );
    let lo = nsenter(
        "--net",
        &sb.ns_path(Namespace::Net),
        &["ip", "-o", "link", "show", "lo"],
    );
    assert!(lo.contains("UP"), "{lo}");
    let links = nsenter("--net", &sb.ns_path(Namespace::Net), &["ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "only loopback: {links}");
    // The pause process is PID 1 of the pod's PID namespace.
    let status = std::fs::read_to_string(format!("/proc/{}/status", sb.pid)).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.trim_end().ends_with("\t1"), "{nspid}");

    // A namespace outlives a crashed pause process through its pin.
    let pid = sb.pid;
    let pin = sb.ns_path(Namespace::Net);
    let before = ns_inode(&pin);
    Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(ns_inode(&pin), before);
    nsenter("--net", &pin, &["ip", "-o", "link", "show", "lo"]);

    g.0.destroy().unwrap();
    let dir = run.path().join("sandboxes/web-1");
    assert!(!dir.exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(run.path().to_str().unwrap()),
        "pins left mounted"
    );
}

#[test]
fn host_network_keeps_the_hosts_network_and_hostname() {
    let run = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        id: "hostnet".into(),
        hostname: "ignored".into(),
        host_network: true,
        share_pid: false,
    };
    let mut g = Guard(Sandbox::create(run.path(), pause(), &config).unwrap());
    let sb = &g.0;
    assert_eq!(sb.namespaces, vec![Namespace::Ipc]);
    let net = ns_inode(Path::new(&format!("/proc/{}/ns/net", sb.pid)));
    assert_eq!(net, ns_inode(Path::new("/proc/self/ns/net")));
    let pid = sb.pid;
    g.0.destroy().unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            s.contains(") Z")
        }
    );
}

#[test]
fn a_bad_id_or_missing_pause_binary_fails_cleanly() {
    let run = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig {
        id: "../x".into(),
        hostname: "x".into(),
        host_network: false,
        share_pid: false,
    };
    let e = Sandbox::create(run.path(), pause(), &config)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "sandbox \"../x\": invalid ID");
    config.id = "ok".into();
    let e = Sandbox::create(run.path(), Path::new("/nonexistent/pause"), &config)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("sandbox ok: start pause: /nonexistent/pause: No such file"),
        "{e}"
    );
    assert!(!run.path().join("sandboxes/ok").exists());
    config.hostname = "x".repeat(100);
    let e = Sandbox::create(run.path(), pause(), &config)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sethostname"), "{e}");
    assert!(!run.path().join("sandboxes/ok").exists());
}
