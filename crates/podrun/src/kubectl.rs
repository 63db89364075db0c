//! The object commands, in kubectl's form: `get pods`, `logs`, `exec`,
//! `delete pod`. They read the pods' state directories (see `pods`); the
//! agent takes them over later.

use crate::pods::{self, PodState};
use crate::status;
use crate::Cli;
use anyhow::{bail, Context, Result};
use podrun_image::Images;
use std::io::Write;
use std::time::Duration;

/// Which namespace a command looks in.
#[derive(clap::Args, Clone)]
pub struct NamespaceArgs {
    /// The namespace.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    namespace: String,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// What to list: pods (pod, po).
    resource: String,
    /// Only these pods.
    names: Vec<String>,
    #[command(flatten)]
    ns: NamespaceArgs,
    /// Every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    all_namespaces: bool,
    /// Output format: the table (default), wide or name.
    #[arg(short = 'o', long = "output")]
    output: Option<String>,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// The pod (or pod/NAME).
    pod: String,
    /// The container (default: the pod's first).
    #[arg(short = 'c', long = "container")]
    container: Option<String>,
    /// Follow the log until the container ends.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Prefix each line with its RFC 3339 time.
    #[arg(long)]
    timestamps: bool,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<usize>,
    #[command(flatten)]
    ns: NamespaceArgs,
}

#[derive(clap::Args)]
pub struct ExecArgs {
    /// The pod (or pod/NAME).
    pod: String,
    /// The container (default: the pod's first).
    #[arg(short = 'c', long = "container")]
    container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Give the command a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    #[command(flatten)]
    ns: NamespaceArgs,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// `pod NAME…`, `pod/NAME…` or just `NAME…`.
    #[arg(required = true)]
    args: Vec<String>,
    #[command(flatten)]
    ns: NamespaceArgs,
}

fn is_pods(resource: &str) -> bool {
    matches!(resource, "pods" | "pod" | "po")
}

/// `pod/NAME` or `NAME`.
fn pod_name(arg: &str) -> Result<&str> {
    match arg.split_once('/') {
        Some((kind, name)) if is_pods(kind) => Ok(name),
        Some((kind, _)) => bail!("the server doesn't have a resource type \"{kind}\""),
        None => Ok(arg),
    }
}

pub fn get(cli: &Cli, args: &GetArgs) -> Result<()> {
    let (resource, mut names) = match args.resource.split_once('/') {
        Some((r, n)) => (r, vec![n.to_string()]),
        None => (args.resource.as_str(), Vec::new()),
    };
    if !is_pods(resource) {
        bail!("the server doesn't have a resource type \"{resource}\" (podrun knows pods)");
    }
    names.extend(args.names.iter().cloned());
    let mut pods: Vec<PodState> = pods::list(&cli.run_root)
        .into_iter()
        .filter(|p| args.all_namespaces || p.record.namespace == args.ns.namespace)
        .collect();
    if !names.is_empty() {
        let mut picked = Vec::new();
        for n in &names {
            let found = pods.iter().find(|p| &p.record.name == n).with_context(|| {
                format!(
                    "pods \"{n}\" not found in namespace \"{}\"",
                    args.ns.namespace
                )
            })?;
            picked.push(found.clone());
        }
        pods = picked;
    }
    let output = args.output.as_deref().unwrap_or("");
    if output == "name" {
        for p in &pods {
            println!("pod/{}", p.record.name);
        }
        return Ok(());
    }
    if !matches!(output, "" | "wide") {
        bail!("output format {output:?} is not supported (use wide or name)");
    }
    if pods.is_empty() {
        if args.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {} namespace.", args.ns.namespace);
        }
        return Ok(());
    }
    let mut header = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if args.all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    if output == "wide" {
        header.extend(["IP", "NODE"]);
    }
    let mut rows = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    for p in &pods {
        let view = p.view();
        let mut row = vec![
            p.record.name.clone(),
            status::ready_column(&view),
            status::status_column(&view, false),
            "0".to_string(),
            status::human_duration(p.age_seconds()),
        ];
        if args.all_namespaces {
            row.insert(0, p.record.namespace.clone());
        }
        if output == "wide" {
            row.extend(["<none>".to_string(), node.trim().to_string()]);
        }
        rows.push(row);
    }
    crate::images::write_table(&mut std::io::stdout().lock(), &rows)?;
    Ok(())
}

/// The container a command means: the named one, or the pod's first (saying
/// so when there are several, as kubectl does).
fn pick_container(state: &PodState, wanted: Option<&str>) -> Result<String> {
    let names = state.container_names();
    match wanted {
        Some(n) if names.iter().any(|c| c == n) => Ok(n.to_string()),
        Some(n) => bail!(
            "container {n} is not valid for pod {}: its containers are {}",
            state.record.name,
            names.join(", ")
        ),
        None => {
            let first = names.first().context("the pod has no containers")?;
            if names.len() > 1 {
                eprintln!(
                    "Defaulted container \"{first}\" out of: {}",
                    names.join(", ")
                );
            }
            Ok(first.clone())
        }
    }
}

pub async fn logs(cli: &Cli, args: &LogsArgs) -> Result<()> {
    let name = pod_name(&args.pod)?;
    let state = pods::find(&cli.run_root, &args.ns.namespace, name)?;
    let container = pick_container(&state, args.container.as_deref())?;
    let mut tail = pods::Tail::new(state.log_path(&container));
    let mut out = std::io::stdout().lock();
    let print = |line: &str, out: &mut std::io::StdoutLock| {
        if let Some(l) = pods::parse_log_line(line) {
            let newline = if l.partial { "" } else { "\n" };
            let text = if args.timestamps {
                format!("{} {}{newline}", l.time, l.content)
            } else {
                format!("{}{newline}", l.content)
            };
            let _ = out.write_all(text.as_bytes());
        }
    };
    let mut first: Vec<String> = Vec::new();
    tail.pump(|l| first.push(l.to_string()));
    let skip = args.tail.map_or(0, |n| first.len().saturating_sub(n));
    for l in &first[skip..] {
        print(l, &mut out);
    }
    out.flush()?;
    if !args.follow {
        return Ok(());
    }
    // Until the container's exit is recorded or its monitor is gone.
    loop {
        let done = !state.monitor_alive()
            || state
                .plan
                .as_ref()
                .is_none_or(|p| p.exit_path(&container).exists());
        tail.pump(|l| print(l, &mut out));
        out.flush()?;
        if done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn exec(cli: &Cli, args: &ExecArgs) -> Result<i32> {
    let name = pod_name(&args.pod)?;
    let state = pods::find(&cli.run_root, &args.ns.namespace, name)?;
    let container = pick_container(&state, args.container.as_deref())?;
    let view = state.view();
    let running = view
        .containers
        .iter()
        .any(|c| c.name == container && matches!(c.state, status::State::Running { .. }));
    if !running {
        bail!("pod/{name}: container {container}: cannot exec in a container that is not running");
    }
    let plan_file = state.run_dir.join("plan.json");
    let mut cmd = std::process::Command::new(crate::run::sibling("podrun-monitor")?);
    cmd.arg("exec")
        .arg("--plan")
        .arg(&plan_file)
        .arg("--id")
        .arg(pods::container_id(&state.record.pod_id, &container));
    if args.tty {
        cmd.arg("--tty");
    }
    cmd.arg("--").args(&args.command);
    if !args.stdin {
        cmd.stdin(std::process::Stdio::null());
    }
    let status = cmd
        .status()
        .with_context(|| format!("pod/{name}: container {container}: exec"))?;
    Ok(status.code().unwrap_or(128 + 9))
}

pub fn delete(cli: &Cli, args: &DeleteArgs) -> Result<()> {
    let mut names: Vec<&str> = Vec::new();
    let mut rest = args.args.as_slice();
    if let Some(first) = rest.first() {
        if is_pods(first) {
            rest = &rest[1..];
            if rest.is_empty() {
                bail!("delete pod: give the name of the pod");
            }
        }
    }
    for a in rest {
        names.push(pod_name(a)?);
    }
    let images = Images::open(&cli.root)?;
    let mut failed = Vec::new();
    for name in names {
        let result = pods::find(&cli.run_root, &args.ns.namespace, name).and_then(|state| {
            pods::stop(&state)?;
            pods::teardown(&images, &state)
        });
        match result {
            Ok(()) => println!("pod \"{name}\" deleted"),
            Err(e) => {
                eprintln!("Error: {}", crate::message(&e));
                failed.push(name);
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("{} of the pods were not deleted", failed.len())
    }
}
