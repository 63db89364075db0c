//! `podrun port-forward` end to end, under the node agent: kubectl's lines,
//! HTTP through a random local port to busybox httpd in a pod (twice, by a
//! named port, a half-closed request too), a refused port in the pod closing
//! the connection while the forwarder goes on, SIGTERM ending it with 0, the
//! pod's deletion ending it with an error, a hostNetwork pod reached on the
//! node's localhost, and kubectl's errors for a missing, a Pending and a
//! Succeeded pod.
//! Traffic stays on loopback and in the pods' namespaces.
//!
//! Needs root and the local registry (scripts/registry.sh).

#[path = "support/agent_env.rs"]
mod agent_env;
mod support;

use agent_env::{kill, registry, Env, Suite};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SUITE: Suite = Suite {
    name: "portfwd",
    knobs: &[
        ("PODRUN_SYNC_INTERVAL_MS", "150"),
        ("PODRUN_BACKOFF_INITIAL_MS", "300"),
        ("PODRUN_BACKOFF_MAX_MS", "2000"),
    ],
    agent_stays_up: true,
};

/// A pod serving `body` over HTTP on `port` (busybox httpd), its container
/// port named `http`; on the node's network, and its 127.0.0.1 only, if `host`.
fn web(name: &str, body: &str, port: u16, host: bool) -> String {
    let r = registry();
    let listen = if host {
        format!("127.0.0.1:{port}")
    } else {
        port.to_string()
    };
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  hostNetwork: {host}
  containers:
  - name: httpd
    image: {r}/busybox:latest
    command: ["sh", "-c", "mkdir -p /tmp/www && echo {body} > /tmp/www/index.html && exec httpd -f -p {listen} -h /tmp/www"]
    ports:
    - name: http
      containerPort: {port}
"#
    )
}

/// A running `podrun port-forward`: its stdout lines as they come, its
/// stderr collected; killed and reaped when dropped.
struct Forwarder {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    seen: Vec<String>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Forwarder {
    fn start(env: &Env, args: &[&str]) -> Forwarder {
        let mut child = env
            .cmd()
            .arg("port-forward")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Forwarder {
            child,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next stdout line that starts with `prefix`, the rest of it (at
    /// most 20 s).
    fn line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(e) => panic!(
                    "no line {prefix:?} ({e}); stdout so far: {:?}; stderr: {}; exit: {:?}",
                    self.seen,
                    self.stderr(),
                    self.child.try_wait()
                ),
            }
        }
    }

    /// The local port of the `Forwarding from 127.0.0.1:PORT -> remote` line.
    fn local_port(&mut self, remote: u16) -> u16 {
        let rest = self.line("Forwarding from 127.0.0.1:");
        let (local, to) = rest.split_once(" -> ").expect("kubectl's line");
        assert_eq!(to, remote.to_string(), "{rest}");
        local.parse().unwrap()
    }

    /// Its exit status, waiting at most `secs`.
    fn exit(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "port-forward still runs after {secs} s; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// `GET /` of 127.0.0.1:`port`, the response's text; with the request's
/// side half-closed after it if `half_close`.
fn get(port: u16, half_close: bool) -> std::io::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    if half_close {
        s.shutdown(Shutdown::Write)?;
    }
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// `GET /` retried for a few seconds (the server in the pod may be starting).
fn get_soon(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match get(port, false) {
            Ok(text) if text.contains("200 OK") => return text,
            other if Instant::now() > deadline => panic!("GET :{port}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A free TCP port on the node (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until `f` holds (at most 10 s).
fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "waited 10 s for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Env {
    fn apply(&self, yaml: &str) {
        let file = self.write_manifest(yaml);
        self.ok(&["apply", "-f", file.to_str().unwrap()]);
    }

    /// Poll `get pods` until `name`'s STATUS is `status` (at most `secs`).
    fn wait_status(&self, name: &str, status: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let rows = self.rows();
            if rows.iter().any(|r| r[1] == name && r[3] == status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {secs} s for {name} {status}: {rows:?}\n{}",
                self.diag()
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

#[test]
fn forwards_connections_into_the_pod_until_stopped() {
    let env = Env::new(&SUITE, "fwd");
    let name = env.name("pf1-web");
    let _agent = env.serve(None, &[], &[]);
    env.apply(&web(&name, "forwarded", 8080, false));
    env.wait_status(&name, "Running", 30);

    // `:http`: a random local port, the remote by the container port's name;
    // `:9`: nothing listens there in the pod.
    let pod = format!("pod/{name}");
    let mut fwd = Forwarder::start(&env, &[&pod, ":http", ":9"]);
    let http = fwd.local_port(8080);
    let refused = fwd.local_port(9);
    let text = get_soon(http);
    assert!(text.contains("forwarded"), "{text}");
    // A request whose sender half-closes still gets the whole answer.
    let text = get(http, true).unwrap();
    assert!(
        text.contains("200 OK") && text.contains("forwarded"),
        "{text}"
    );
    assert_eq!(fwd.line("Handling connection for "), http.to_string());

    // A refused port in the pod: the connection is closed, kubectl's error
    // line names the ports, the pod and the cause, and the forwarder goes on.
    let mut conn = TcpStream::connect((Ipv4Addr::LOCALHOST, refused)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(conn.read(&mut buf), Ok(0) | Err(_)),
        "a connection to a closed port in the pod stays open"
    );
    let wanted = format!(
        "an error occurred forwarding {refused} -> 9: error forwarding port 9 to pod default/{name}: failed to connect to localhost:9 inside namespace"
    );
    eventually("the error line", || fwd.stderr().contains(&wanted));
    let stderr = fwd.stderr();
    assert!(
        stderr.starts_with('E')
            && stderr.contains("\"Unhandled Error\" err=\"")
            && stderr.contains("connection refused"),
        "{stderr}"
    );
    let text = get(http, false).unwrap();
    assert!(text.contains("forwarded"), "{text}");
    assert!(fwd.running(), "port-forward ended: {}", fwd.stderr());

    // SIGTERM: the end, exit 0.
    kill(fwd.child.id() as i32, libc::SIGTERM);
    let status = fwd.exit(10);
    assert!(status.success(), "{status:?}: {}", fwd.stderr());

    // `PORT` alone is the same port on both sides; deleting the pod ends
    // the forwarder with an error.
    let port = free_port();
    let spec = format!("{port}:8080");
    let mut fwd = Forwarder::start(&env, &[&name, &spec, "--address", "127.0.0.1"]);
    assert_eq!(fwd.local_port(8080), port);
    assert!(get_soon(port).contains("forwarded"));
    env.ok(&["delete", "pod", &name]);
    let status = fwd.exit(15);
    assert_eq!(status.code(), Some(1), "{}", fwd.stderr());
    assert_eq!(
        fwd.stderr().trim(),
        format!("error: lost connection to pod: pod/{name} is no longer running")
    );
    drop(fwd);
    env.assert_nothing_left();
}

#[test]
fn a_host_network_pod_is_reached_on_the_nodes_localhost() {
    let env = Env::new(&SUITE, "host");
    let name = env.name("pf2-host");
    let _agent = env.serve(None, &[], &[]);
    let port = free_port();
    env.apply(&web(&name, "on-the-node", port, true));
    env.wait_status(&name, "Running", 30);
    let mut fwd = Forwarder::start(&env, &[&name, &format!(":{port}")]);
    let local = fwd.local_port(port);
    assert!(get_soon(local).contains("on-the-node"));
    drop(fwd);
    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
}

#[test]
fn missing_and_pending_pods_get_kubectls_errors() {
    let env = Env::new(&SUITE, "errs");
    let name = env.name("pf3-pending");
    let _agent = env.serve(None, &[], &[]);

    let out = env.podrun(&["port-forward", "nope", "8080"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
    assert!(out.stdout.is_empty());

    // An init container that does not end keeps the pod Pending.
    let r = registry();
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: wait
    image: {r}/busybox:latest
    command: ["sleep", "3600"]
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sleep", "3600"]
"#
    ));
    env.wait_status(&name, "Init:0/1", 30);
    let out = env.podrun(&["port-forward", &name, "8080"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: unable to forward port because pod is not running. Current status=Pending\n"
    );
    // A port the pod does not name.
    let out = env.podrun(&["port-forward", &name, "8080:web"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: Pod '{name}' does not have a named port 'web'\n")
    );
    // A pod that has finished.
    let done = env.name("pf3-done");
    env.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {done}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: {r}/busybox:latest\n    command: [\"true\"]\n"
    ));
    env.wait_status(&done, "Completed", 30);
    let out = env.podrun(&["port-forward", &done, "8080"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: unable to forward port because pod is not running. Current status=Succeeded\n"
    );
    env.ok(&["delete", "pod", &name, &done]);
    env.assert_nothing_left();
}
