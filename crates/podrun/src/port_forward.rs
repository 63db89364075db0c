//! `podrun port-forward POD [LOCAL_PORT:]REMOTE_PORT…`, as kubectl's: the
//! arguments, the signals and kubectl's error lines. The forwarding itself is
//! `podrun_agent::port_forward`.

use anyhow::Result;
use podrun_agent::port_forward::{self as forward, Output, PortForwardError};
use std::sync::Arc;
use std::time::Duration;

use crate::kubectl::{pod_name, NamespaceArgs};
use crate::Cli;

/// `podrun port-forward`'s arguments.
#[derive(clap::Args)]
#[command(
    override_usage = "podrun port-forward [OPTIONS] POD [LOCAL_PORT:]REMOTE_PORT [...[LOCAL_PORT_N:]REMOTE_PORT_N]",
    after_help = "Examples:
  # Listen on ports 5000 and 6000 locally, forwarding to ports 5000 and 6000 in the pod
  podrun port-forward pod/mypod 5000 6000
  # Listen on port 8888 locally, forwarding to 5000 in the pod
  podrun port-forward mypod 8888:5000
  # Listen on port 8888 on all addresses, forwarding to 5000 in the pod
  podrun port-forward --address 0.0.0.0 mypod 8888:5000
  # Listen on a random port locally, forwarding to 5000 in the pod
  podrun port-forward mypod :5000

Each connection is carried to localhost:REMOTE_PORT inside the pod's network
namespace (the node's for a hostNetwork pod). It runs until Ctrl-C or SIGTERM
(exit 0), or until the pod stops (exit 1)."
)]
pub struct PortForwardArgs {
    /// The pod: NAME or pod/NAME.
    pod: String,
    /// `LOCAL:REMOTE`, `PORT` (the same on both sides) or `:REMOTE` (a free
    /// local port); REMOTE may be a container port's name.
    #[arg(required = true, value_name = "[LOCAL_PORT:]REMOTE_PORT")]
    ports: Vec<String>,
    /// Addresses to listen on (comma-separated): IP addresses, or localhost
    /// (127.0.0.1 and ::1; it fails only if neither can listen).
    #[arg(long, default_value = "localhost", value_delimiter = ',')]
    address: Vec<String>,
    #[command(flatten)]
    ns: NamespaceArgs,
}

/// `podrun port-forward`: the exit code (0 after Ctrl-C or SIGTERM), its
/// errors printed as kubectl prints them.
pub async fn port_forward(cli: &Cli, args: &PortForwardArgs) -> i32 {
    match forward_until_done(cli, args).await {
        Ok(()) => 0,
        Err(e) => {
            match e.downcast_ref::<PortForwardError>() {
                Some(not_found @ PortForwardError::NotFound { .. }) => {
                    eprintln!("Error from server (NotFound): {not_found}");
                }
                _ => eprintln!("error: {}", crate::message(&e)),
            }
            1
        }
    }
}

async fn forward_until_done(cli: &Cli, args: &PortForwardArgs) -> Result<()> {
    let name = pod_name(&args.pod)?;
    // kubectl's order: the pod, its named ports, its phase; then the
    // addresses and the ports' form.
    let settings = cli.settings();
    let pod = forward::find_pod(&settings, &args.ns.namespace, name)?;
    let specs = forward::resolve_named_ports(&args.ports, &pod.manifest)?;
    let runtime = podrun_agent::runtime(&settings)?;
    let target = forward::target(runtime.as_ref(), &pod)?;
    let addresses = forward::parse_addresses(&args.address)?;
    let ports = forward::parse_ports(&specs)?;
    let target = Arc::new(target);
    forward::listen(
        target.clone(),
        &addresses,
        &ports,
        Arc::new(Output::stdio()),
    )?;
    // The listeners' and connections' threads serve until the process ends.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = tick.tick() => {
                let runtime = runtime.clone();
                let asked = target.clone();
                let running = tokio::task::spawn_blocking(move || {
                    forward::still_running(runtime.as_ref(), &asked)
                })
                .await
                .unwrap_or(true);
                if !running {
                    return Err(PortForwardError::LostConnection(target.name.clone()).into());
                }
            }
        }
    }
}
