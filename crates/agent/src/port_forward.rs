//! Port forwarding, kubectl port-forward's whole path in one process: the
//! client's listeners (client-go tools/portforward/portforward.go: the port
//! specs, the addresses and their failure modes, the lines it prints) and the
//! runtime's end (containerd's PortForward,
//! internal/cri/server/sandbox_portforward_linux.go: dial `localhost:PORT`
//! from inside the pod's network namespace, IPv4 first, then IPv6; the node's
//! own for a hostNetwork pod), with no API server or stream in between.
//!
//! Blocking threads, no polling: one per listener (blocked in accept), two per
//! connection (one per direction, blocked in read). A socket made by a thread
//! that joined the pod's network namespace stays in that namespace, so only
//! the dial needs the namespace.

use crate::db::Db;
use crate::{pods, Settings};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use podrun_runtime::api::{SandboxState, ServiceError};
use podrun_runtime::port_forward::{self, go_error, pipe};
use podrun_runtime::{NamespaceMode, RuntimeService};
use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why port forwarding could not start or go on. The messages are kubectl's
/// where kubectl has one.
#[derive(Debug, thiserror::Error)]
pub enum PortForwardError {
    /// A port spec with more than one `:`.
    #[error("invalid port format '{0}'")]
    Format(String),
    /// A port that is not a number from 0 to 65535.
    #[error("error parsing {side} port '{value}': {reason}")]
    Number {
        /// `local` or `remote`.
        side: &'static str,
        /// What was given.
        value: String,
        /// Go's strconv words: `invalid syntax` or `value out of range`.
        reason: &'static str,
    },
    /// `8080:`.
    #[error("remote port cannot be empty")]
    RemoteEmpty,
    /// `8080:0`.
    #[error("remote port must be > 0")]
    RemoteZero,
    /// A remote port by a name no container of the pod declares.
    #[error("Pod '{pod}' does not have a named port '{name}'")]
    NoNamedPort {
        /// The pod's name.
        pod: String,
        /// The port's name.
        name: String,
    },
    /// A remote port the pod declares only for UDP.
    #[error("UDP protocol is not supported for {0}")]
    Udp(String),
    /// An `--address` that is neither an IP address nor `localhost`.
    #[error("{0} is not a valid IP")]
    Address(String),
    /// No pod of that name (the API server's NotFound).
    #[error("pods \"{name}\" not found")]
    NotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The pod's phase is not Running.
    #[error("unable to forward port because pod is not running. Current status={phase}")]
    NotRunning {
        /// Its phase.
        phase: String,
    },
    /// Its status says Running but its sandbox does not run (its manager is gone).
    #[error(
        "unable to forward port because pod is not running: pod/{name}: its sandbox is {state}"
    )]
    SandboxNotReady {
        /// The pod's name.
        name: String,
        /// The sandbox's state, or why it could not be read.
        state: String,
    },
    /// The runtime did not answer.
    #[error("pod/{name}: {step}: {source}")]
    Runtime {
        /// The pod's name.
        name: String,
        /// What was asked.
        step: &'static str,
        /// The runtime's error.
        source: ServiceError,
    },
    /// The pod's records could not be read.
    #[error("pod/{name}: {step}: {cause}")]
    Records {
        /// The pod's name.
        name: String,
        /// What was being read.
        step: &'static str,
        /// Why it failed.
        cause: String,
    },
    /// The sandbox has its own network namespace but no pin of it.
    #[error("pod/{0}: its network namespace is not pinned")]
    NoNetns(String),
    /// Every port failed to listen.
    #[error("unable to listen on any of the requested ports: [{}]", ports_shown(.0))]
    NoListener(Vec<ForwardedPort>),
    /// The pod stopped while forwarding.
    #[error("lost connection to pod: pod/{0} is no longer running")]
    LostConnection(String),
    /// A thread could not be started.
    #[error("start a thread for port {port}: {source}")]
    Thread {
        /// The local port it would have served.
        port: u16,
        /// The system's error.
        source: io::Error,
    },
}

type Result<T, E = PortForwardError> = std::result::Result<T, E>;

/// One `LOCAL:REMOTE` pair; local 0 until a listener picked a free port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardedPort {
    /// The node's port.
    pub local: u16,
    /// The pod's port.
    pub remote: u16,
}

/// Go's `%v` of client-go's ForwardedPort: `{8080 80}`.
impl fmt::Display for ForwardedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{} {}}}", self.local, self.remote)
    }
}

fn ports_shown(ports: &[ForwardedPort]) -> String {
    let shown: Vec<String> = ports.iter().map(ToString::to_string).collect();
    shown.join(" ")
}

/// `LOCAL` and `REMOTE` of a spec as written (`8080` is `8080:8080`).
fn split_port(spec: &str) -> (&str, &str) {
    spec.split_once(':').unwrap_or((spec, spec))
}

/// Named remote ports as numbers from the pod's containers' ports, and
/// UDP-only ports refused, as kubectl does before it forwards
/// (kubectl's convertPodNamedPortToNumber and checkUDPPortInPod): `web-http`
/// alone becomes `80` (the local port too), `8080:web-http` becomes `8080:80`.
pub fn resolve_named_ports(specs: &[String], pod: &Pod) -> Result<Vec<String>> {
    let ports = || {
        pod.spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
    };
    let mut out = Vec::new();
    for spec in specs {
        let (local, remote) = split_port(spec);
        if remote.is_empty() {
            return Err(PortForwardError::RemoteEmpty);
        }
        let number = match remote.parse::<i64>() {
            Ok(n) => n,
            Err(_) => ports()
                .find(|p| p.name.as_deref() == Some(remote))
                .map(|p| i64::from(p.container_port))
                .ok_or_else(|| PortForwardError::NoNamedPort {
                    pod: pod.metadata.name.clone().unwrap_or_default(),
                    name: remote.to_owned(),
                })?,
        };
        let protocol_of = |p: &k8s_openapi::api::core::v1::ContainerPort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        let declared: Vec<String> = ports()
            .filter(|p| i64::from(p.container_port) == number)
            .map(protocol_of)
            .collect();
        if declared.iter().any(|p| p == "UDP") && !declared.iter().any(|p| p == "TCP") {
            return Err(PortForwardError::Udp(remote.to_owned()));
        }
        out.push(if local == remote {
            number.to_string()
        } else {
            format!("{local}:{number}")
        });
    }
    Ok(out)
}

/// Reads `8080:80`, `8080` (both sides) and `:80` or `0:80` (a free local
/// port), with client-go's messages (its parsePorts).
pub fn parse_ports(specs: &[String]) -> Result<Vec<ForwardedPort>> {
    let number = |side: &'static str, value: &str| -> Result<u16> {
        value.parse::<u16>().map_err(|_| PortForwardError::Number {
            side,
            value: value.to_owned(),
            // Digits only: only too big can fail.
            reason: if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
                "value out of range"
            } else {
                "invalid syntax"
            },
        })
    };
    let mut out = Vec::new();
    for spec in specs {
        let parts: Vec<&str> = spec.split(':').collect();
        let (local, remote) = match parts.as_slice() {
            [both] => (*both, *both),
            [local, remote] => (if local.is_empty() { "0" } else { local }, *remote),
            _ => return Err(PortForwardError::Format(spec.clone())),
        };
        let local = number("local", local)?;
        let remote = number("remote", remote)?;
        if remote == 0 {
            return Err(PortForwardError::RemoteZero);
        }
        out.push(ForwardedPort { local, remote });
    }
    Ok(out)
}

/// When an address's failure fails its port (client-go's failureMode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// `localhost`'s two addresses: the port fails only if both do (::1
    /// is missing where IPv6 is off).
    All,
    /// An address given by number: the port fails if it does.
    Any,
}

/// One address to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddress {
    /// The address.
    pub ip: IpAddr,
    /// What its failure means.
    pub mode: FailureMode,
}

/// `--address`'s list: IP addresses, and `localhost` for 127.0.0.1 and ::1;
/// each once, in the order of their text, as client-go's parseAddresses.
pub fn parse_addresses(list: &[String]) -> Result<Vec<ListenAddress>> {
    let mut parsed: Vec<(String, ListenAddress)> = Vec::new();
    let mut add = |text: String, address: ListenAddress, replace: bool| match parsed
        .iter_mut()
        .find(|(t, _)| *t == text)
    {
        Some(slot) if replace => slot.1 = address,
        Some(_) => {}
        None => parsed.push((text, address)),
    };
    for text in list {
        let text = text.trim();
        if text == "localhost" {
            for ip in [
                IpAddr::from(Ipv4Addr::LOCALHOST),
                IpAddr::from(Ipv6Addr::LOCALHOST),
            ] {
                let address = ListenAddress {
                    ip,
                    mode: FailureMode::All,
                };
                add(ip.to_string(), address, false);
            }
        } else {
            let ip: IpAddr = text
                .parse()
                .map_err(|_| PortForwardError::Address(text.to_owned()))?;
            let address = ListenAddress {
                ip,
                mode: FailureMode::Any,
            };
            // By its text, as client-go keys them: `::1` given by number
            // becomes an address that must listen.
            add(text.to_owned(), address, true);
        }
    }
    parsed.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(parsed.into_iter().map(|(_, a)| a).collect())
}

/// A pod to forward to: where connections go.
#[derive(Debug, Clone)]
pub struct Target {
    /// `namespace/name`, for messages.
    pub pod: String,
    /// Its name.
    pub name: String,
    /// Its sandbox's ID.
    pub sandbox_id: String,
    /// Its network namespace's pin; `None`: the node's (hostNetwork).
    pub netns: Option<PathBuf>,
}

/// A pod as its manager last reported it.
#[derive(Debug, Clone)]
pub struct FoundPod {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its sandbox's ID.
    pub sandbox_id: String,
    /// The pod as applied (its containers' named ports).
    pub manifest: Pod,
    /// Its phase (Pending before its first status).
    pub phase: String,
}

/// The pod `namespace/name`, found as `exec` and `logs` find pods: the
/// agent's database (with its phase as last reported), else its records on
/// disk (a pod of `podrun run` in the foreground, with the status that run
/// reported); kubectl's NotFound when neither has it.
pub fn find_pod(settings: &Settings, namespace: &str, name: &str) -> Result<FoundPod> {
    let records = |step: &'static str| {
        let name = name.to_owned();
        move |cause: String| PortForwardError::Records { name, step, cause }
    };
    let row = if settings.root.join("state.db").exists() {
        Db::open(&settings.root)
            .and_then(|db| db.pod(namespace, name))
            .map_err(|e| records("read the agent's database")(e.to_string()))?
    } else {
        None
    };
    let (sandbox_id, manifest, phase) = match row {
        Some(row) => {
            let manifest: Pod = serde_json::from_str(&row.manifest)
                .map_err(|e| records("read its manifest")(e.to_string()))?;
            let phase = row
                .status
                .as_deref()
                .and_then(|s| serde_json::from_str::<PodStatus>(s).ok())
                .and_then(|s| s.phase);
            (row.pod_id, manifest, phase)
        }
        None => {
            let state = pods::list(&settings.run_root)
                .into_iter()
                .find(|p| p.record.namespace == namespace && p.record.name == name)
                .ok_or_else(|| PortForwardError::NotFound {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })?;
            let phase = pods::reported(&state).status.and_then(|s| s.phase);
            (state.record.pod_id, state.record.manifest, phase)
        }
    };
    Ok(FoundPod {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        sandbox_id,
        manifest,
        // No status yet: the API server's phase of a new pod.
        phase: phase.unwrap_or_else(|| "Pending".into()),
    })
}

/// Where `pod`'s connections go, if it runs: its phase is Running (kubectl's
/// check) and its sandbox is ready (the runtime's PodSandboxStatus, with the
/// pin of its network namespace).
pub fn target(runtime: &dyn RuntimeService, pod: &FoundPod) -> Result<Target> {
    let name = &pod.name;
    if pod.phase != "Running" {
        return Err(PortForwardError::NotRunning {
            phase: pod.phase.clone(),
        });
    }
    let status = runtime
        .pod_sandbox_status(&pod.sandbox_id)
        .map_err(|e| match e {
            ServiceError::SandboxNotFound(_) => PortForwardError::SandboxNotReady {
                name: name.clone(),
                state: "gone".into(),
            },
            source => PortForwardError::Runtime {
                name: name.clone(),
                step: "PodSandboxStatus",
                source,
            },
        })?;
    if status.sandbox.state != SandboxState::Ready {
        return Err(PortForwardError::SandboxNotReady {
            name: name.clone(),
            state: "not ready".into(),
        });
    }
    let host = status
        .config
        .linux
        .security_context
        .namespace_options
        .network
        == NamespaceMode::Node;
    let netns = if host {
        None
    } else {
        Some(
            status
                .namespaces
                .get("net")
                .cloned()
                .ok_or_else(|| PortForwardError::NoNetns(name.clone()))?,
        )
    };
    Ok(Target {
        pod: format!("{}/{name}", pod.namespace),
        name: name.clone(),
        sandbox_id: pod.sandbox_id.clone(),
        netns,
    })
}

/// Whether the pod's sandbox still runs (forwarding ends when it does not).
pub fn still_running(runtime: &dyn RuntimeService, target: &Target) -> bool {
    runtime
        .pod_sandbox_status(&target.sandbox_id)
        .is_ok_and(|s| s.sandbox.state == SandboxState::Ready)
}

/// Where the forwarder's lines go: kubectl's `Forwarding from …` and
/// `Handling connection for …` on `out`, errors on `err`, a line at a time
/// (threads never interleave within a line).
pub struct Output {
    out: Mutex<Box<dyn Write + Send>>,
    err: Mutex<Box<dyn Write + Send>>,
}

impl Output {
    /// Lines to these writers.
    pub fn new(out: Box<dyn Write + Send>, err: Box<dyn Write + Send>) -> Self {
        Output {
            out: Mutex::new(out),
            err: Mutex::new(err),
        }
    }

    /// Lines to stdout and stderr.
    pub fn stdio() -> Self {
        Output::new(Box::new(io::stdout()), Box::new(io::stderr()))
    }

    fn line(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // Nothing to do if the reader went away: the forwarding goes on.
        let _ = writeln!(out, "{text}").and_then(|()| out.flush());
    }

    fn warn(&self, text: &str) {
        let mut err = self.err.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(err, "{text}").and_then(|()| err.flush());
    }

    /// An error kubectl reports through client-go's HandleError (a klog line).
    fn error(&self, text: &str) {
        self.warn(&klog_error(text, chrono::Local::now(), std::process::id()));
    }
}

/// klog's error line, as kubectl prints an error on one connection:
/// `E1205 14:03:05.123456   12345 portforward.go] "Unhandled Error" err="…"`.
fn klog_error(text: &str, now: chrono::DateTime<chrono::Local>, pid: u32) -> String {
    let quoted = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "E{} {pid:>7} portforward.go] \"Unhandled Error\" err=\"{quoted}\"",
        now.format("%m%d %H:%M:%S%.6f")
    )
}

fn tcp(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "tcp4"
    } else {
        "tcp6"
    }
}

/// Listens on every address for every port, prints kubectl's `Forwarding
/// from` line for each listener, and serves each on a thread of its own
/// until the process ends. A port none of whose listeners could be made (or
/// one of whose numbered addresses failed) is reported as kubectl does and
/// skipped; it is an error only if every port fails. Returns the ports with
/// their local numbers (those asked as 0 picked by the first listener).
pub fn listen(
    target: Arc<Target>,
    addresses: &[ListenAddress],
    ports: &[ForwardedPort],
    output: Arc<Output>,
) -> Result<Vec<ForwardedPort>> {
    let mut ports = ports.to_vec();
    let mut any_port = false;
    for port in &mut ports {
        let mut errors = Vec::new();
        let (mut all_ok, mut all_failed, mut any_failed) = (0, 0, 0);
        for address in addresses {
            let at = SocketAddr::new(address.ip, port.local);
            match bind(at).and_then(|l| Ok((l.local_addr()?.port(), l))) {
                Ok((local, listener)) => {
                    port.local = local;
                    output.line(&format!(
                        "Forwarding from {} -> {}",
                        SocketAddr::new(address.ip, local),
                        port.remote
                    ));
                    let (target, output, port) = (target.clone(), output.clone(), *port);
                    std::thread::Builder::new()
                        .name(format!("forward-{local}"))
                        .spawn(move || serve(listener, port, &target, &output))
                        .map_err(|source| PortForwardError::Thread {
                            port: local,
                            source,
                        })?;
                    if address.mode == FailureMode::All {
                        all_ok += 1;
                    }
                }
                Err(e) => {
                    errors.push(format!(
                        "unable to create listener: Error listen {} {at}: bind: {}",
                        tcp(address.ip),
                        go_error(&e)
                    ));
                    match address.mode {
                        FailureMode::All => all_failed += 1,
                        FailureMode::Any => any_failed += 1,
                    }
                }
            }
        }
        if (all_ok == 0 && all_failed > 0) || any_failed > 0 {
            output.warn(&format!(
                "Unable to listen on port {}: Listeners failed to create with the following errors: [{}]",
                port.local,
                errors.join(" ")
            ));
        } else {
            any_port = true;
        }
    }
    if !any_port {
        return Err(PortForwardError::NoListener(ports));
    }
    Ok(ports)
}

/// A listener on `at` as Go's `net.Listen` makes one: SO_REUSEADDR, and an
/// IPv6 socket that takes IPv6 only (`tcp6`), so `--address 0.0.0.0,::`
/// listens on both families.
fn bind(at: SocketAddr) -> io::Result<TcpListener> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let family = if at.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let socket = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseaddr(&socket, true)?;
    if at.is_ipv6() {
        sockopt::set_ipv6_v6only(&socket, true)?;
    }
    rustix::net::bind(&socket, &at)?;
    // The kernel caps it at net.core.somaxconn, Go's backlog.
    rustix::net::listen(&socket, i32::MAX)?;
    Ok(TcpListener::from(socket))
}

/// Accepts connections until the process ends, each on a thread of its own.
fn serve(listener: TcpListener, port: ForwardedPort, target: &Arc<Target>, output: &Arc<Output>) {
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                output.error(&format!(
                    "error accepting connection on port {}: {}",
                    port.local,
                    go_error(&e)
                ));
                // Out of file descriptors, most likely: wait for some to close.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        output.line(&format!("Handling connection for {}", port.local));
        let (target, thread_output) = (target.clone(), output.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{}", port.local))
            .spawn(move || handle(conn, port, &target, &thread_output));
        if let Err(e) = spawned {
            output.error(&format!(
                "error handling connection for port {}: start a thread: {}",
                port.local,
                go_error(&e)
            ));
        }
    }
}

/// One connection: dial the pod's port, then copy both ways.
fn handle(client: TcpStream, port: ForwardedPort, target: &Target, output: &Output) {
    let pod = match port_forward::dial(target.netns.as_deref(), port.remote) {
        Ok(pod) => pod,
        Err(cause) => {
            // kubelet's and containerd's words under kubectl's.
            output.error(&format!(
                "an error occurred forwarding {} -> {}: error forwarding port {} to pod {}: {cause}",
                port.local, port.remote, port.remote, target.pod
            ));
            return;
        }
    };
    if let Err(e) = pipe(client, pod) {
        output.error(&format!(
            "error copying between local port {} and port {} of pod {}: {}",
            port.local,
            port.remote,
            target.pod,
            go_error(&e)
        ));
    }
}

#[cfg(test)]
mod tests;
