//! podrun: run Kubernetes Pods on one Linux machine. This binary is the CLI;
//! the work is done by the library crates (see ARCHITECTURE.md).

mod images;
mod jsonpath;
mod kubectl;
mod port_forward;
mod run;
mod top;
mod watch;
mod yaml;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Run Kubernetes Pods on one Linux machine, the way kubelet with containerd would.
#[derive(Parser)]
#[command(name = "podrun", version, about, long_about = None)]
pub struct Cli {
    /// Where images, snapshots and containers are stored.
    #[arg(
        long,
        global = true,
        env = "PODRUN_ROOT",
        default_value = "/var/lib/podrun"
    )]
    pub root: PathBuf,
    /// Runtime state: pods' records and logs, pinned namespaces, the OCI runtimes' state.
    #[arg(
        long = "run-root",
        global = true,
        env = "PODRUN_RUN_ROOT",
        default_value = "/run/podrun"
    )]
    pub run_root: PathBuf,
    /// Registry mirrors, insecure and blocked registries (podman's registries.conf format).
    #[arg(long = "registries-conf", global = true, env = "PODRUN_REGISTRIES_CONF", default_value = podrun_image::registries::DEFAULT_PATH)]
    pub registries_conf: PathBuf,
    /// containerd-style registry hosts: <DIR>/<registry>/hosts.toml (mirrors, plain HTTP).
    #[arg(long = "hosts-dir", global = true, env = "PODRUN_HOSTS_DIR", default_value = podrun_image::registries::DEFAULT_HOSTS_DIR)]
    pub hosts_dir: PathBuf,
    /// The OCI runtime of pods without a runtimeClassName: embedded (libcontainer,
    /// inside each pod's monitor), or the crun, runc or youki binary (a name on
    /// PATH or a path). Default: the config's default_runtime, else embedded.
    #[arg(long, global = true, env = "PODRUN_RUNTIME")]
    pub runtime: Option<String>,
    /// podrun's configuration: RuntimeClass handlers ([runtimes.<handler>] path = …).
    #[arg(long, global = true, env = "PODRUN_CONFIG", default_value = podrun_agent::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log-level", global = true, default_value = "warn")]
    pub log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pod from its manifest in the foreground (Ctrl-C stops it), or detached.
    ///
    /// As `podman kube play`, a container that cannot be made (its image, a
    /// ConfigMap key, its root filesystem) fails the command.
    Run(run::RunArgs),
    /// Create or update the pods, ConfigMaps and Secrets of manifests (through the agent).
    ///
    /// As `kubectl apply`, it succeeds once they are stored: a container that
    /// cannot be made is a warning here, its reason in the pod's status.
    Apply(kubectl::ApplyArgs),
    /// Show a pod (with its events) or the node in detail, in kubectl describe's layout.
    Describe(kubectl::DescribeArgs),
    /// Run the node agent in the foreground (the CLI starts one when needed).
    Serve(ServeArgs),
    /// List pods, events or claims (kubectl's columns); -w watches them.
    Get(kubectl::GetArgs),
    /// List events as kubectl events does (`2m (x3 over 5m)`); -w watches them.
    Events(kubectl::EventsArgs),
    /// Wait for a condition of pods: Ready, a jsonpath value, or their deletion.
    ///
    /// As kubectl wait: `pod/NAME condition met` for each; exit 1 with
    /// `error: timed out waiting for the condition on pods/NAME` when the
    /// timeout passes first.
    Wait(watch::WaitArgs),
    /// Print a container's log.
    Logs(kubectl::LogsArgs),
    /// Show the CPU and memory of pods or the node (kubectl top's columns).
    Top(top::TopArgs),
    /// Run a command in a running container.
    Exec(kubectl::ExecArgs),
    /// Forward local ports to a pod's ports (TCP), as kubectl port-forward.
    PortForward(port_forward::PortForwardArgs),
    /// Stop and remove pods.
    Delete(kubectl::DeleteArgs),
    /// Pull an image from a registry.
    Pull(images::PullArgs),
    /// List images.
    Images(images::ListArgs),
    /// Remove images, and the blobs and layers nothing else uses.
    Rmi(images::RemoveArgs),
    /// Load images from an OCI archive or a `docker save` tarball.
    Load(images::LoadArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Store credentials for a registry.
    Login(images::LoginArgs),
    /// Remove stored credentials for a registry.
    Logout(images::LogoutArgs),
    /// Print podrun's version.
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The CRI server of `podrun serve --cri`: its socket bound now (so a
/// socket that cannot be made fails the command at once), served on the
/// agent's runtime once it is open.
fn cri_server(
    socket: &std::path::Path,
    stream_address: std::net::SocketAddr,
    sandbox_image: String,
    root: PathBuf,
) -> anyhow::Result<podrun_agent::Beside> {
    let listener = podrun_cri::bind(socket)?;
    let socket = socket.to_path_buf();
    Ok(Box::new(move |runtime, images, mut stop| {
        Box::pin(async move {
            tracing::info!("serving CRI v1 on {}", socket.display());
            let streaming =
                podrun_cri::streaming::Server::start(runtime.clone(), stream_address)
                    .map_err(|e| format!("CRI streaming server on {stream_address}: {e}"))?;
            tracing::info!("CRI streaming server on {}", streaming.address());
            let cri = podrun_cri::Cri::new(runtime, images, root)
                .with_streaming(streaming)
                .with_sandbox_image(&sandbox_image);
            let stopped = async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            };
            podrun_cri::serve(listener, &socket, cri, stopped)
                .await
                .map_err(|e| e.to_string())
        })
    }))
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Watch this directory of Pod manifests, as kubelet's staticPodPath: a
    /// file added starts its pods, changed replaces them, removed stops them.
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// Serve metrics for Prometheus at http://ADDR:PORT/metrics (kubelet's
    /// names: kubelet_running_pods, kubelet_pod_start_duration_seconds, …).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_address: Option<std::net::SocketAddr>,
    /// Also serve the Container Runtime Interface (CRI v1) for a kubelet,
    /// crictl or critest, on the same runtime. Its pods are its own: the
    /// agent's are not shown to it, nor its to `podrun get`.
    #[arg(long)]
    cri: bool,
    /// The CRI socket.
    #[arg(long, value_name = "PATH", default_value = podrun_cri::DEFAULT_SOCKET, requires = "cri")]
    cri_socket: PathBuf,
    /// Where the CRI's streaming server (the URLs of Exec, Attach and
    /// PortForward) listens; port 0 picks a free one (containerd's default).
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:0",
        requires = "cri"
    )]
    cri_stream_address: std::net::SocketAddr,
    /// The sandbox image kubelet names (containerd's `sandbox_image`): every
    /// sandbox runs podrun's own pause process, so this image is reported
    /// present and pinned, and never pulled.
    #[arg(long, value_name = "IMAGE", default_value = podrun_cri::service::SANDBOX_IMAGE, requires = "cri")]
    cri_sandbox_image: String,
}

impl Cli {
    /// What the pod manager needs of the global flags.
    pub fn settings(&self) -> podrun_agent::Settings {
        podrun_agent::Settings {
            root: self.root.clone(),
            run_root: self.run_root.clone(),
            registries_conf: self.registries_conf.clone(),
            hosts_dir: self.hosts_dir.clone(),
            runtime: self.runtime.clone(),
            config: self.config.clone(),
        }
    }
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Pull an image from a registry.
    Pull(images::PullArgs),
    /// List images.
    #[command(alias = "ls")]
    List(images::ListArgs),
    /// Remove images.
    #[command(alias = "rm")]
    Remove(images::RemoveArgs),
    /// Show everything known about images, as JSON.
    Inspect(images::InspectArgs),
    /// Remove images no container uses: those pulled longer ago than
    /// image_minimum_gc_age (kubelet's imageMinimumGCAge, 2m), or with -a
    /// all of them. Prints `Deleted: NAME` for each name removed and the
    /// total reclaimed.
    Prune(images::PruneArgs),
    /// Load images from an OCI archive or a `docker save` tarball.
    Load(images::LoadArgs),
}

fn main() {
    // Lives as long as the process: the agent's tasks borrow it.
    let cli: &'static Cli = Box::leak(Box::new(Cli::parse()));
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let serving = matches!(cli.command, Command::Serve(_));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal (not in agent.log).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if serving {
        // The agent lives long and holds 100s of pods: every pod's sync runs on
        // the blocking pool, which would otherwise grow a thread (and a malloc
        // arena) per pod and keep them; a bounded pool and two arenas keep it
        // small. Long waits (stopping a pod) run on threads of their own.
        builder
            .worker_threads(2)
            .max_blocking_threads(16)
            .thread_keep_alive(std::time::Duration::from_secs(2));
        // SAFETY: mallopt only sets an allocator parameter, before any thread starts.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    }
    let runtime = builder
        .enable_all()
        .build()
        .expect("start the async runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("Error: {}", message(&e));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, each cause once: our error types
/// already print their cause, so only causes not yet said are appended.
pub(crate) fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

async fn run(cli: &'static Cli) -> Result<()> {
    match &cli.command {
        Command::Apply(a) => kubectl::apply(cli, a),
        Command::Describe(a) => kubectl::describe(cli, a),
        Command::Serve(a) => {
            let options = podrun_agent::ServeOptions {
                manifests: a.manifests.clone(),
                metrics_address: a.metrics_address,
            };
            let beside = match a.cri {
                true => Some(cri_server(
                    &a.cri_socket,
                    a.cri_stream_address,
                    a.cri_sandbox_image.clone(),
                    cli.root.clone(),
                )?),
                false => None,
            };
            Ok(podrun_agent::serve_with(cli.settings(), &options, beside).await?)
        }
        Command::Run(a) => {
            let code = run::run(cli, a).await?;
            std::process::exit(code);
        }
        Command::Get(a) => kubectl::get(cli, a),
        Command::Top(a) => top::top(cli, a),
        Command::Events(a) => kubectl::events(cli, a),
        Command::Wait(a) => {
            let code = watch::wait(cli, a)?;
            std::process::exit(code);
        }
        Command::Logs(a) => kubectl::logs(cli, a).await,
        Command::Exec(a) => {
            let code = kubectl::exec(cli, a)?;
            std::process::exit(code);
        }
        Command::PortForward(a) => std::process::exit(port_forward::port_forward(cli, a).await),
        Command::Delete(a) => kubectl::delete(cli, a),
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => images::pull(cli, a).await,
        Command::Images(a) | Command::Image(ImageCommand::List(a)) => images::list(cli, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Remove(a)) => images::remove(cli, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => images::load(cli, a).await,
        Command::Image(ImageCommand::Inspect(a)) => images::inspect(cli, a),
        Command::Image(ImageCommand::Prune(a)) => images::prune(cli, a),
        Command::Login(a) => images::login(cli, a).await,
        Command::Logout(a) => images::logout(a),
        Command::Version => {
            println!("podrun version {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Completion { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "podrun", &mut std::io::stdout());
            Ok(())
        }
    }
}
