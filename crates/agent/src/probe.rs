//! Running probes and HTTP hooks: exec through the runtime's ExecSync,
//! tcpSocket and httpGet from a thread that has joined the pod's network
//! namespace (the pod has no IP reachable from the host yet, so the target is
//! the probe's `host` or the pod's loopback), as kubelet's prober does
//! (pkg/kubelet/prober/prober.go). The HTTP GET, its redirects and its
//! verdict are kubelet's: see [`http`]. gRPC probes call the health service
//! on the pod's loopback from that thread too, over HTTP/2 on a runtime of
//! the thread's own: see [`grpc`].

mod grpc;
pub mod http;

use crate::pods::InSandbox;
use k8s_openapi::api::core::v1::{Container, GRPCAction, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podrun_kubelet::probe::ProbeResult;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Why a probe or a hook (kubelet's handlers) failed, in kubelet's words
/// where kubelet has them.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The runtime's ExecSync failed.
    #[error(transparent)]
    Runtime(#[from] podrun_runtime::api::ServiceError),
    /// command {command:?} timed out after {timeout:?}
    #[error("command {command:?} timed out after {timeout:?}")]
    ExecTimeout {
        /// The command.
        command: Vec<String>,
        /// The handler's timeout.
        timeout: Duration,
    },
    /// The handler ran and failed: the command's output, the gRPC status.
    #[error("{0}")]
    Failed(String),
    /// port out of range
    #[error("port out of range")]
    PortRange,
    /// no port named {name:?} in container {container}
    #[error("no port named {name:?} in container {container}")]
    NoPort {
        /// The port's name.
        name: String,
        /// The container.
        container: String,
    },
    /// resolve {host}: {cause}
    #[error("resolve {host}: {cause}")]
    Resolve {
        /// The host.
        host: String,
        /// Why it has no address.
        cause: String,
    },
    /// dial tcp {addr}: {source}
    #[error("dial tcp {addr}: {source}")]
    Dial {
        /// The address.
        addr: SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// The HTTP GET failed (no answer).
    #[error(transparent)]
    Http(#[from] http::HttpError),
    /// sandbox {0}: no network namespace
    #[error("sandbox {0}: no network namespace")]
    NoNetns(String),
    /// The pod's network namespace could not be joined.
    #[error(transparent)]
    Netns(#[from] podrun_net::NetnsError),
    /// A probe or hook of no known kind.
    #[error("{0} has no handler")]
    NoHandler(&'static str),
}

type Result<T, E = HandlerError> = std::result::Result<T, E>;

/// What kubelet's probes call themselves (HTTP and gRPC):
/// kube-probe/<major.minor> of the kubelet podrun follows
/// (pkg/probe/http/request.go userAgent).
const USER_AGENT: &str = "kube-probe/1.31";

/// What kubelet's HTTP hooks call themselves (the same, for "lifecycle").
const HOOK_USER_AGENT: &str = "kube-lifecycle/1.31";

/// What one run of a probe found, as kubelet's probe.Result with its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The probe passed.
    Success,
    /// The probe passed, with something to warn of (an HTTP redirect to
    /// another host, not followed).
    Warning(String),
    /// The probe failed, and why.
    Failure(String),
}

impl Outcome {
    /// What the probe's record counts: a warning is a success.
    pub fn result(&self) -> ProbeResult {
        match self {
            Outcome::Success | Outcome::Warning(_) => ProbeResult::Success,
            Outcome::Failure(_) => ProbeResult::Failure,
        }
    }

    /// The Warning event kubelet records for this outcome of a `which`
    /// ("Liveness", "Readiness", "Startup") probe, as (reason, message)
    /// (pkg/kubelet/prober/prober.go probe).
    pub fn event(&self, which: &str) -> Option<(&'static str, String)> {
        match self {
            Outcome::Success => None,
            Outcome::Warning(why) => {
                Some(("ProbeWarning", format!("{which} probe warning: {why}")))
            }
            Outcome::Failure(why) => Some(("Unhealthy", format!("{which} probe failed: {why}"))),
        }
    }
}

/// Run `probe` against container `container` of the pod.
pub fn run(pod: &InSandbox, container: &Container, probe: &Probe) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let outcome = |result: Result<()>| match result {
        Ok(()) => Outcome::Success,
        Err(e) => Outcome::Failure(e.to_string()),
    };
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        outcome(
            match crate::terminate::exec_in(pod, &container.name, &command, timeout) {
                Ok(done) if done.code == 0 => Ok(()),
                // kubelet's "Liveness probe failed: <the command's output>".
                Ok(done) => Err(HandlerError::Failed(done.failure(&command))),
                Err(e) => Err(e),
            },
        )
    } else if let Some(action) = &probe.http_get {
        match http_get(pod, &container.name, action, http::Purpose::Probe, timeout) {
            Ok(answer) => http::verdict(&answer),
            Err(e) => Outcome::Failure(e.to_string()),
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.clone();
        outcome(port(&tcp.port, container).and_then(|port| {
            in_pod_network(pod, move || {
                let addr = address(host.as_deref(), port)?;
                TcpStream::connect_timeout(&addr, timeout)
                    .map_err(|source| HandlerError::Dial { addr, source })?;
                Ok(())
            })
        }))
    } else if let Some(action) = &probe.grpc {
        outcome(grpc_check(pod, action, timeout))
    } else {
        outcome(Err(HandlerError::NoHandler("the probe")))
    }
}

/// A port given by number or by the name of one of the container's ports.
fn port(port: &IntOrString, container: &Container) -> Result<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| HandlerError::PortRange),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port as u16)
            .ok_or_else(|| HandlerError::NoPort {
                name: name.clone(),
                container: container.name.clone(),
            }),
    }
}

fn address(host: Option<&str>, port: u16) -> Result<SocketAddr> {
    let host = host.filter(|h| !h.is_empty()).unwrap_or("127.0.0.1");
    (host, port)
        .to_socket_addrs()
        .map_err(|e| HandlerError::Resolve {
            host: host.into(),
            cause: e.to_string(),
        })?
        .next()
        .ok_or_else(|| HandlerError::Resolve {
            host: host.into(),
            cause: "no address".into(),
        })
}

/// A gRPC health check of the pod's loopback (kubelet's target is the pod's
/// IP, which is where the pod's loopback answers from inside), dial and call
/// within `timeout` together.
fn grpc_check(pod: &InSandbox, action: &GRPCAction, timeout: Duration) -> Result<()> {
    let port = u16::try_from(action.port).map_err(|_| HandlerError::PortRange)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let service = action.service.clone().unwrap_or_default();
    let deadline = Instant::now() + timeout;
    // The whole call on the namespace's thread: a new thread is in no
    // runtime's context, so it may build and block on one of its own.
    in_pod_network(pod, move || {
        let stream = grpc::connect(addr, timeout, deadline)?;
        grpc::check(stream, &service, timeout, deadline)
    })
}

/// GET the hook's or probe's URL in the pod's network, as kubelet does for
/// `purpose`; the answer it ends with.
pub fn http_get(
    pod: &InSandbox,
    container: &str,
    action: &HTTPGetAction,
    purpose: http::Purpose,
    timeout: Duration,
) -> Result<http::Answer> {
    let spec = pod
        .state
        .record
        .manifest
        .spec
        .as_ref()
        .and_then(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(&s.containers)
                .find(|c| c.name == container)
        })
        .cloned()
        .unwrap_or_default();
    let port = port(&action.port, &spec)?;
    let host = action
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .unwrap_or("127.0.0.1");
    let headers: Vec<(String, String)> = action
        .http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    let request = http::Request::new(
        action.scheme.as_deref().unwrap_or_default(),
        host,
        port,
        action.path.as_deref().unwrap_or_default(),
        &headers,
        purpose,
    )?;
    in_pod_network(pod, move || Ok(http::get(&request, timeout)?))
}

/// Run `f` on a thread of its own that has joined the pod's network namespace
/// (setns changes only the calling thread's), or the host's with hostNetwork.
fn in_pod_network<T: Send + 'static>(
    pod: &InSandbox,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = pod.net_namespace();
    if ns.is_none() && !pod.host_network() {
        return Err(HandlerError::NoNetns(pod.sandbox.sandbox.id.clone()));
    }
    podrun_net::in_network_namespace(ns.as_deref(), f)?
}
