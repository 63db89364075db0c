//! `podrun port-forward POD [LOCAL:]REMOTE…`, as kubectl's: listens on the
//! node (127.0.0.1 and ::1 by default, `--address` otherwise) and carries
//! each TCP connection into the pod's network namespace, to `localhost:REMOTE`
//! there (containerd's PortForward dials localhost inside the pod's netns:
//! internal/cri/server/sandbox_portforward_linux.go), so a pod without a
//! hostPort, or on the node's network, is reached the same way.
//!
//! Blocking threads: one per listener, two per connection (one per
//! direction); the main task waits for Ctrl-C or SIGTERM, or for the pod to
//! stop running.

use anyhow::{bail, Context, Result};
use podrun_agent::pods;
use podrun_runtime::api::SandboxState;
use podrun_runtime::{NamespaceMode, RuntimeService};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::kubectl::{pod_name, NamespaceArgs};
use crate::Cli;

/// `podrun port-forward`'s arguments.
#[derive(clap::Args)]
pub struct PortForwardArgs {
    /// The pod (or pod/NAME).
    pod: String,
    /// `LOCAL:REMOTE`, `PORT` (the same on both sides) or `:REMOTE` (a free local port).
    #[arg(required = true)]
    ports: Vec<String>,
    /// The local addresses to listen on, comma-separated: IP addresses or
    /// `localhost` (127.0.0.1 and ::1).
    #[arg(long, default_value = "localhost", value_delimiter = ',')]
    address: Vec<String>,
    #[command(flatten)]
    ns: NamespaceArgs,
}

/// One `LOCAL:REMOTE` pair (local 0: any free port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPair {
    /// The node's port.
    pub local: u16,
    /// The pod's port.
    pub remote: u16,
}

/// Reads `8080:80`, `8080` or `:80` as kubectl does.
pub fn parse_port(spec: &str) -> Result<PortPair> {
    let number = |s: &str, what: &str| -> Result<u16> {
        s.parse::<u16>()
            .with_context(|| format!("error parsing {what} port {s:?} in {spec:?}"))
    };
    let (local, remote) = match spec.split_once(':') {
        Some((local, remote)) => {
            let local = if local.is_empty() {
                0
            } else {
                number(local, "local")?
            };
            (local, number(remote, "remote")?)
        }
        None => {
            let port = number(spec, "local")?;
            (port, port)
        }
    };
    if remote == 0 {
        bail!("remote port must be > 0 in {spec:?}");
    }
    Ok(PortPair { local, remote })
}

/// The addresses `--address` names, in order, without repeats.
pub fn parse_addresses(list: &[String]) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for a in list {
        let a = a.trim();
        let ips: Vec<IpAddr> = if a == "localhost" {
            vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
        } else {
            vec![a
                .parse()
                .map_err(|_| anyhow::anyhow!("{a} is not a valid IP"))?]
        };
        for ip in ips {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    Ok(out)
}

/// How `addr` is written in kubectl's lines: `127.0.0.1:8080`, `[::1]:8080`.
fn shown(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// `podrun port-forward`: runs until Ctrl-C or SIGTERM (exit 0), or until the
/// pod stops running (an error).
pub async fn port_forward(cli: &Cli, args: &PortForwardArgs) -> Result<()> {
    let name = pod_name(&args.pod)?.to_owned();
    let pairs = args
        .ports
        .iter()
        .map(|p| parse_port(p))
        .collect::<Result<Vec<_>>>()?;
    let addresses = parse_addresses(&args.address)?;
    let state = pods::find(&cli.run_root, &args.ns.namespace, &name)?;
    let phase = phase(cli, &state)?;
    if phase != "Running" {
        bail!("unable to forward port because pod is not running. Current status={phase}");
    }
    let runtime = podrun_agent::runtime(&cli.settings())?;
    let sandbox_id = state.record.pod_id.clone();
    let netns = pod_netns(runtime.as_ref(), &sandbox_id, &name)?;

    let mut listeners = Vec::new();
    for pair in &pairs {
        let mut local = pair.local;
        let mut errors = Vec::new();
        for &ip in &addresses {
            match TcpListener::bind((ip, local)) {
                Ok(listener) => {
                    local = listener.local_addr()?.port();
                    println!("Forwarding from {} -> {}", shown(ip, local), pair.remote);
                    listeners.push((listener, local, pair.remote));
                }
                Err(e) => errors.push(format!("unable to create listener: {e} on {ip}")),
            }
        }
        if listeners
            .iter()
            .all(|(_, _, remote)| *remote != pair.remote)
        {
            bail!(
                "unable to listen on port {}: Listeners failed to create with the following errors: [{}]",
                pair.local,
                errors.join(" ")
            );
        }
        for e in errors {
            eprintln!("podrun: port-forward: {e}");
        }
    }
    io::stdout().flush()?;
    let target = Arc::new(Target {
        netns,
        pod: format!("pod/{name}"),
    });
    for (listener, local, remote) in listeners {
        let target = target.clone();
        std::thread::Builder::new()
            .name(format!("forward-{local}"))
            .spawn(move || serve(listener, local, remote, &target))?;
    }
    wait_until_done(runtime, &sandbox_id, &name).await
}

/// The pod's phase, as `get -o json` shows it: the agent's, or what a
/// foreground `podrun run` last reported.
fn phase(cli: &Cli, state: &pods::PodState) -> Result<String> {
    let pod = if state.record.agent {
        crate::kubectl::ensure_agent(cli)?;
        let request = podrun_agent::api::Request::Get {
            namespace: Some(state.record.namespace.clone()),
            full: true,
        };
        match crate::kubectl::call(cli, &request)? {
            podrun_agent::api::Response::Pods { pods } => pods
                .into_iter()
                .find(|p| p.name == state.record.name)
                .and_then(|p| p.pod)
                .unwrap_or_default(),
            other => bail!("unexpected answer from the agent: {other:?}"),
        }
    } else {
        serde_json::to_value(pods::reported(state))?
    };
    Ok(pod["status"]["phase"]
        .as_str()
        .unwrap_or("Unknown")
        .to_owned())
}

/// The pod's network namespace: its pin, or `None` for a pod on the node's network.
fn pod_netns(
    runtime: &dyn RuntimeService,
    sandbox_id: &str,
    name: &str,
) -> Result<Option<PathBuf>> {
    let status = runtime
        .pod_sandbox_status(sandbox_id)
        .with_context(|| format!("pod/{name}"))?;
    if status.sandbox.state != SandboxState::Ready {
        bail!("unable to forward port because pod is not running (pod/{name}: its sandbox is not ready)");
    }
    if status
        .config
        .linux
        .security_context
        .namespace_options
        .network
        == NamespaceMode::Node
    {
        return Ok(None);
    }
    match status.namespaces.get("net") {
        Some(path) => Ok(Some(path.clone())),
        None => bail!("pod/{name}: its network namespace is not pinned"),
    }
}

/// Until Ctrl-C or SIGTERM, or until the pod's sandbox is no longer ready.
async fn wait_until_done(
    runtime: Arc<dyn RuntimeService>,
    sandbox_id: &str,
    name: &str,
) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = tick.tick() => {
                let ready = runtime
                    .pod_sandbox_status(sandbox_id)
                    .is_ok_and(|s| s.sandbox.state == SandboxState::Ready);
                if !ready {
                    bail!("lost connection to pod: pod/{name} is no longer running");
                }
            }
        }
    }
}

/// Where connections go.
struct Target {
    netns: Option<PathBuf>,
    pod: String,
}

/// Accepts connections on `listener` until the process ends.
fn serve(listener: TcpListener, local: u16, remote: u16, target: &Arc<Target>) {
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                eprintln!("podrun: port-forward: accept on port {local}: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        println!("Handling connection for {local}");
        let _ = io::stdout().flush();
        let target = target.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{local}"))
            .spawn(move || {
                if let Err(e) = forward(conn, remote, &target) {
                    eprintln!(
                        "podrun: port-forward: an error occurred forwarding {local} -> {remote}: error forwarding port {remote} to {}: {e}",
                        target.pod
                    );
                }
            });
        if let Err(e) = spawned {
            eprintln!("podrun: port-forward: connection on port {local}: {e}");
        }
    }
}

/// Connects to `localhost:remote` in the pod (IPv4, then IPv6) and copies
/// both ways until both sides are done.
fn forward(client: TcpStream, remote: u16, target: &Target) -> Result<()> {
    let pod = podrun_net::in_network_namespace(target.netns.as_deref(), || {
        TcpStream::connect((Ipv4Addr::LOCALHOST, remote))
            .or_else(|_| TcpStream::connect((Ipv6Addr::LOCALHOST, remote)))
    })
    .context("join the pod's network namespace")?
    .with_context(|| format!("dial localhost:{remote} in the pod"))?;
    let (client_read, pod_write) = (client.try_clone()?, pod.try_clone()?);
    let up = std::thread::spawn(move || copy_then_close(client_read, pod_write));
    let down = copy_then_close(pod, client);
    let up = up.join().unwrap_or(Ok(()));
    down.and(up).context("copy")
}

/// Copies `from` to `to`, then closes `to`'s writing side (the peer reads its end).
fn copy_then_close(mut from: TcpStream, mut to: TcpStream) -> io::Result<()> {
    let copied = io::copy(&mut from, &mut to).map(|_| ());
    let _ = to.shutdown(Shutdown::Write);
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_as_kubectl_reads_them() {
        let pair = |local, remote| PortPair { local, remote };
        assert_eq!(parse_port("8080:80").unwrap(), pair(8080, 80));
        assert_eq!(parse_port("5000").unwrap(), pair(5000, 5000));
        assert_eq!(parse_port(":80").unwrap(), pair(0, 80));
        assert!(parse_port("80:0").is_err());
        assert!(parse_port("http").is_err());
        assert!(parse_port("70000:80").is_err());
    }

    #[test]
    fn localhost_is_both_loopback_addresses() {
        let list = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_addresses(&list(&["localhost"])).unwrap(),
            [
                IpAddr::from(Ipv4Addr::LOCALHOST),
                IpAddr::from(Ipv6Addr::LOCALHOST)
            ]
        );
        assert_eq!(
            parse_addresses(&list(&["127.0.0.1", "localhost"])).unwrap(),
            [
                IpAddr::from(Ipv4Addr::LOCALHOST),
                IpAddr::from(Ipv6Addr::LOCALHOST)
            ]
        );
        assert!(parse_addresses(&list(&["nowhere"])).is_err());
    }

    #[test]
    fn addresses_are_shown_as_kubectl_shows_them() {
        assert_eq!(shown(Ipv4Addr::LOCALHOST.into(), 8080), "127.0.0.1:8080");
        assert_eq!(shown(Ipv6Addr::LOCALHOST.into(), 8080), "[::1]:8080");
    }
}
