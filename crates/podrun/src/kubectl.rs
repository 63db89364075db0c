//! The object commands, in kubectl's form: `apply`, `get pods`, `describe`,
//! `logs`, `exec`, `delete`. `apply`, `get`, `describe` and `delete` are
//! requests to the agent of the root, started in the background when none
//! answers. `logs` and `exec` go straight to the pod's log files and monitor,
//! as kubectl's stream from the node and not through the API's database.

use crate::Cli;
use anyhow::{bail, Context, Result};
use podrun_agent::api::{self, PodSummary, Request, Response};
use podrun_agent::pods::{self, PodState};
use podrun_runtime::api::ContainerState;
use std::time::Duration;

/// Which namespace a command looks in.
#[derive(clap::Args, Clone)]
pub struct NamespaceArgs {
    /// The namespace.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// What to list: pods (pod, po), events (event, ev) or
    /// persistentvolumeclaims (pvc).
    resource: String,
    /// Only these pods.
    names: Vec<String>,
    #[command(flatten)]
    ns: NamespaceArgs,
    /// Every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    all_namespaces: bool,
    /// Output format: the table (default), wide, name, yaml or json.
    #[arg(short = 'o', long = "output")]
    output: Option<String>,
    /// After the list, watch: print a pod's row again each time it changes
    /// (and once more when it is gone), or each new or repeated event.
    #[arg(short = 'w', long)]
    watch: bool,
    /// Watch without listing first: only the changes from now on.
    #[arg(long = "watch-only")]
    watch_only: bool,
    /// `get events`: only the events of this object (pod/NAME).
    #[arg(long = "for", value_name = "pod/NAME")]
    for_: Option<String>,
}

/// `podrun events`: kubectl's newer `kubectl events`.
#[derive(clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    ns: NamespaceArgs,
    /// Every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    all_namespaces: bool,
    /// Only the events of this object (pod/NAME).
    #[arg(long = "for", value_name = "pod/NAME")]
    for_: Option<String>,
    /// After the list, print each new or repeated event as it comes.
    #[arg(short = 'w', long)]
    watch: bool,
}

/// `podrun events`.
pub fn events(cli: &Cli, args: &EventsArgs) -> Result<()> {
    crate::watch::events(
        cli,
        &crate::watch::EventQuery {
            namespace: (!args.all_namespaces).then(|| args.ns.namespace.clone()),
            pod: args.for_.clone(),
            watch: args.watch,
            watch_only: false,
            style: podrun_agent::events::Style::Events,
        },
    )
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
    /// Only the last N lines (-1: all).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    tail: i64,
    /// The previous instance of the container (it restarted).
    #[arg(short = 'p', long)]
    previous: bool,
    /// Only lines newer than this duration (5s, 2m, 1h).
    #[arg(long, conflicts_with = "since_time")]
    since: Option<String>,
    /// Only lines at or after this time (RFC 3339).
    #[arg(long = "since-time")]
    since_time: Option<String>,
    /// Stop after this many bytes (0: no limit).
    #[arg(long = "limit-bytes", default_value_t = 0)]
    limit_bytes: u64,
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
    /// `pod NAME…`, `pod/NAME…`, just `NAME…`, or `pvc NAME…` / `pvc/NAME…`.
    #[arg(required_unless_present = "filename")]
    args: Vec<String>,
    /// Delete the objects this file (or directory, or `-` for stdin) names.
    #[arg(short = 'f', long = "filename")]
    filename: Option<String>,
    /// Seconds the pods get to stop, instead of their terminationGracePeriodSeconds.
    #[arg(long = "grace-period")]
    grace_period: Option<i64>,
    /// Do not wait out the grace period: as `--grace-period=0` (each container
    /// still gets kubelet's minimum of 2 s after its stop signal).
    #[arg(long)]
    force: bool,
    /// Return once the pods are gone (`--wait=false`: once their deletion is
    /// recorded; the agent goes on stopping them).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    wait: bool,
    #[command(flatten)]
    ns: NamespaceArgs,
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// A manifest file, a directory of them (`*.yaml`, `*.yml`, `*.json`), or `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    filename: String,
}

#[derive(clap::Args)]
pub struct DescribeArgs {
    /// What: pod (pods, po) or node (nodes, no).
    resource: String,
    /// The pod's name (a node's is optional: this node).
    name: Option<String>,
    #[command(flatten)]
    ns: NamespaceArgs,
}

fn is_pods(resource: &str) -> bool {
    matches!(resource, "pods" | "pod" | "po")
}

fn is_events(resource: &str) -> bool {
    matches!(resource, "events" | "event" | "ev")
}

fn is_claims(resource: &str) -> bool {
    matches!(
        resource,
        "pvc" | "persistentvolumeclaim" | "persistentvolumeclaims"
    )
}

/// `get pvc [NAME…]`: kubectl's table, or the claims as v1 objects.
fn get_claims(cli: &Cli, args: &GetArgs, names: &[String], output: &str) -> Result<()> {
    let namespace = (!args.all_namespaces).then(|| args.ns.namespace.clone());
    ensure_agent(cli)?;
    let mut items = match call(cli, &Request::GetClaims { namespace })? {
        Response::Objects { items } => items,
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from the agent: {other:?}"),
    };
    let name_of = |v: &serde_json::Value| v["metadata"]["name"].as_str().unwrap_or("").to_string();
    if !names.is_empty() {
        let mut picked = Vec::new();
        for n in names {
            let found = items.iter().find(|v| &name_of(v) == n).with_context(|| {
                format!(
                    "persistentvolumeclaims \"{n}\" not found in namespace \"{}\"",
                    args.ns.namespace
                )
            })?;
            picked.push(found.clone());
        }
        items = picked;
    }
    match output {
        "name" => {
            for v in &items {
                println!("persistentvolumeclaim/{}", name_of(v));
            }
            return Ok(());
        }
        "yaml" | "json" => {
            let value = if names.len() == 1 && items.len() == 1 {
                items[0].clone()
            } else {
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": items,
                    "metadata": {"resourceVersion": ""},
                })
            };
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", crate::yaml::to_string(&value)?);
            }
            return Ok(());
        }
        _ => {}
    }
    if items.is_empty() {
        if args.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {} namespace.", args.ns.namespace);
        }
        return Ok(());
    }
    let claims = items
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<Vec<_>, _>>()
        .context("read the agent's claims")?;
    let rows = podrun_agent::claims::rows(&claims, args.all_namespaces, chrono::Utc::now());
    podrun_agent::table::write(&mut std::io::stdout().lock(), &rows)?;
    Ok(())
}

/// `pod/NAME` or `NAME`.
pub fn pod_name(arg: &str) -> Result<&str> {
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
    names.extend(args.names.iter().cloned());
    let output = args.output.as_deref().unwrap_or("");
    if !matches!(output, "" | "wide" | "name" | "yaml" | "json") {
        bail!("output format {output:?} is not supported (use wide, name, yaml or json)");
    }
    let watching = args.watch || args.watch_only;
    if args.for_.is_some() && !is_events(resource) {
        bail!("--for is for get events (the events of pod/NAME)");
    }
    if is_events(resource) {
        if !names.is_empty() || !output.is_empty() {
            bail!("get events: podrun lists events as a table (use --for pod/NAME for one pod's)");
        }
        return crate::watch::events(
            cli,
            &crate::watch::EventQuery {
                namespace: (!args.all_namespaces).then(|| args.ns.namespace.clone()),
                pod: args.for_.clone(),
                watch: args.watch,
                watch_only: args.watch_only,
                style: podrun_agent::events::Style::Get,
            },
        );
    }
    if is_claims(resource) {
        if watching {
            bail!("--watch is supported for pods and events");
        }
        return get_claims(cli, args, &names, output);
    }
    if !is_pods(resource) {
        bail!("the server doesn't have a resource type \"{resource}\" (podrun knows pods, events and persistentvolumeclaims)");
    }
    let full = matches!(output, "yaml" | "json");
    let namespace = (!args.all_namespaces).then(|| args.ns.namespace.clone());
    if watching {
        return crate::watch::watch_pods(
            cli,
            &crate::watch::PodWatch {
                namespace,
                names: &names,
                output,
                watch_only: args.watch_only,
            },
        );
    }
    ensure_agent(cli)?;
    let mut pods: Vec<PodSummary> = match call(cli, &Request::Get { namespace, full })? {
        Response::Pods { pods } => pods,
        other => bail!("unexpected answer from the agent: {other:?}"),
    };
    if !names.is_empty() {
        let mut picked = Vec::new();
        for n in &names {
            let found = pods.iter().find(|p| &p.name == n).with_context(|| {
                format!(
                    "pods \"{n}\" not found in namespace \"{}\"",
                    args.ns.namespace
                )
            })?;
            picked.push(found.clone());
        }
        pods = picked;
    }
    if output == "name" {
        for p in &pods {
            println!("pod/{}", p.name);
        }
        return Ok(());
    }
    if full {
        // One pod as itself, several as a v1 List, as kubectl prints them.
        let value = if names.len() == 1 && pods.len() == 1 {
            pods[0].pod.clone().unwrap_or_default()
        } else {
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": pods.iter().filter_map(|p| p.pod.clone()).collect::<Vec<_>>(),
                "metadata": {"resourceVersion": ""},
            })
        };
        if output == "json" {
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            print!("{}", crate::yaml::to_string(&value)?);
        }
        return Ok(());
    }
    if pods.is_empty() {
        if args.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {} namespace.", args.ns.namespace);
        }
        return Ok(());
    }
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let rows = pod_rows(&pods, args.all_namespaces, output == "wide", node.trim());
    podrun_agent::table::write(&mut std::io::stdout().lock(), &rows)?;
    Ok(())
}

/// The `get pods` table: kubectl's columns, and with `-o wide` the IP
/// (`<none>` without one), node, nominated node and readiness gates.
pub(crate) fn pod_rows(
    pods: &[PodSummary],
    all_namespaces: bool,
    wide: bool,
    node: &str,
) -> Vec<Vec<String>> {
    let mut header = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    if wide {
        header.extend(["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
    }
    let mut rows = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    let none = || "<none>".to_string();
    for p in pods {
        let mut row = vec![
            p.name.clone(),
            p.ready.clone(),
            p.status.clone(),
            p.restarts.clone(),
            podrun_kubelet::printer::human_duration(chrono::TimeDelta::seconds(p.age_seconds)),
        ];
        if all_namespaces {
            row.insert(0, p.namespace.clone());
        }
        if wide {
            row.extend([
                p.ip.clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(none),
                node.to_string(),
                p.nominated_node.clone().unwrap_or_else(none),
                Some(p.readiness_gates.clone())
                    .filter(|g| !g.is_empty())
                    .unwrap_or_else(none),
            ]);
        }
        rows.push(row);
    }
    rows
}

/// The container a command means: the named one, or the pod's first (saying
/// so when there are several, as kubectl does).
fn pick_container(state: &PodState, wanted: Option<&str>) -> Result<String> {
    let names = state.container_names();
    let all = state.all_container_names();
    // kubectl's list: the containers, then the init containers marked so.
    let listed: Vec<String> = names
        .iter()
        .cloned()
        .chain(
            all.iter()
                .filter(|n| !names.contains(n))
                .map(|n| format!("{n} (init)")),
        )
        .collect();
    match wanted {
        Some(n) if all.iter().any(|c| c == n) => Ok(n.to_string()),
        Some(n) => bail!(
            "container {n} is not valid for pod {}: its containers are {}",
            state.record.name,
            listed.join(", ")
        ),
        None => {
            let first = names.first().context("the pod has no containers")?;
            if listed.len() > 1 {
                eprintln!(
                    "Defaulted container \"{first}\" out of: {}",
                    listed.join(", ")
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
    // kubectl sends --since as whole seconds, --since-time as a second.
    let since = match (&args.since, &args.since_time) {
        (Some(d), _) => {
            let d = podrun_agent::logs::parse_since(d).with_context(|| {
                format!("invalid argument {d:?} for \"--since\" flag: not a duration (5s, 2m, 1h)")
            })?;
            Some(chrono::Utc::now() - d)
        }
        (None, Some(t)) => {
            let t = chrono::DateTime::parse_from_rfc3339(t)
                .with_context(|| format!("invalid argument {t:?} for \"--since-time\" flag"))?;
            chrono::DateTime::from_timestamp(t.timestamp(), 0)
        }
        (None, None) => None,
    };
    let options = podrun_agent::logs::Options {
        since,
        tail: usize::try_from(args.tail).ok(),
        limit_bytes: Some(args.limit_bytes).filter(|n| *n > 0),
        timestamps: args.timestamps,
    };
    let Some(live) =
        podrun_agent::logs::instance_file(&state.run_dir, name, &container, args.previous)?
    else {
        return Ok(()); // not started yet
    };
    let mut printer = podrun_agent::logs::Printer::new(std::io::stdout().lock(), options);
    let mut follower = podrun_agent::logs::read(&live, &mut printer)?;
    // The previous instance ended: nothing more comes.
    if !args.follow || args.previous || printer.full() {
        return Ok(());
    }
    // Until the runtime no longer has the container running.
    let runtime = podrun_agent::runtime(&cli.settings())?;
    let id = pods::container_id(&state.record.pod_id, &container);
    loop {
        let done = runtime
            .container_status(&id)
            .map_or(true, |c| c.state != ContainerState::Running);
        if !follower.pump(&mut printer)? || done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn exec(cli: &Cli, args: &ExecArgs) -> Result<i32> {
    let name = pod_name(&args.pod)?;
    let state = pods::find(&cli.run_root, &args.ns.namespace, name)?;
    let container = pick_container(&state, args.container.as_deref())?;
    let runtime = podrun_agent::runtime(&cli.settings())?;
    let id = pods::container_id(&state.record.pod_id, &container);
    let running = runtime
        .container_status(&id)
        .is_ok_and(|c| c.state == ContainerState::Running);
    if !running {
        bail!("pod/{name}: container {container}: cannot exec in a container that is not running");
    }
    let mut cmd = runtime
        .exec(&id, &args.command, args.tty)
        .with_context(|| format!("pod/{name}: container {container}: exec"))?;
    if !args.stdin {
        cmd.stdin(std::process::Stdio::null());
    }
    let status = cmd
        .status()
        .with_context(|| format!("pod/{name}: container {container}: exec"))?;
    Ok(status.code().unwrap_or(128 + 9))
}

pub fn delete(cli: &Cli, args: &DeleteArgs) -> Result<()> {
    let grace_period = if args.force {
        Some(0)
    } else {
        args.grace_period
    };
    if let Some(f) = &args.filename {
        let files = read_manifests(f)?;
        ensure_agent(cli)?;
        return done(call(
            cli,
            &Request::DeleteFiles {
                files,
                grace_period,
                wait: args.wait,
            },
        )?);
    }
    let mut names: Vec<&str> = Vec::new();
    let mut rest = args.args.as_slice();
    // `delete pvc NAME…` or `delete pvc/NAME…`.
    let claim = |a: &String| {
        a.split_once('/')
            .filter(|(k, _)| is_claims(k))
            .map(|(_, n)| n.to_string())
    };
    if rest.first().is_some_and(|f| is_claims(f)) || rest.iter().any(|a| claim(a).is_some()) {
        if rest.first().is_some_and(|f| is_claims(f)) {
            rest = &rest[1..];
        }
        let mut claims = Vec::new();
        for a in rest {
            match claim(a) {
                Some(n) => claims.push(n),
                None if a.contains('/') => {
                    bail!("delete: one kind at a time: {a} is not a persistentvolumeclaim")
                }
                None => claims.push(a.clone()),
            }
        }
        if claims.is_empty() {
            bail!("delete pvc: give the name of the claim");
        }
        ensure_agent(cli)?;
        return done(call(
            cli,
            &Request::DeleteClaims {
                namespace: args.ns.namespace.clone(),
                names: claims,
            },
        )?);
    }
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
    ensure_agent(cli)?;
    done(call(
        cli,
        &Request::Delete {
            namespace: args.ns.namespace.clone(),
            names: names.iter().map(|n| n.to_string()).collect(),
            grace_period,
            wait: args.wait,
        },
    )?)
}

/// `podrun apply -f`.
pub fn apply(cli: &Cli, args: &ApplyArgs) -> Result<()> {
    let files = read_manifests(&args.filename)?;
    ensure_agent(cli)?;
    let response = call(
        cli,
        &Request::Apply {
            files,
            create: false,
        },
    )?;
    // As `kubectl apply`: once the objects are stored the command succeeded;
    // a container that cannot be made (CreateContainerConfigError, a bad
    // image) shows its reason in the pod's status and events, and is retried
    // with back-off. What the first sync met is said as a warning.
    match response {
        Response::Done {
            lines, warnings, ..
        } => {
            for l in &lines {
                println!("{l}");
            }
            for w in &warnings {
                eprintln!("Warning: {w}");
            }
            Ok(())
        }
        other => done(other),
    }
}

/// `podrun run --detach`: `apply` of a file whose pods must be new; as
/// `podman kube play`, a container that cannot be made fails the command
/// (the pod stays, showing why).
pub fn create(cli: &Cli, files: Vec<(String, String)>) -> Result<()> {
    ensure_agent(cli)?;
    done(call(
        cli,
        &Request::Apply {
            files,
            create: true,
        },
    )?)
}

/// `podrun describe pod NAME`.
pub fn describe(cli: &Cli, args: &DescribeArgs) -> Result<()> {
    let node = args
        .resource
        .split_once('/')
        .map_or(args.resource.as_str(), |(r, _)| r);
    if matches!(node, "node" | "nodes" | "no") {
        let name = args
            .resource
            .split_once('/')
            .map(|(_, n)| n.to_string())
            .or_else(|| args.name.clone());
        ensure_agent(cli)?;
        return match call(cli, &Request::DescribeNode { name })? {
            Response::Text { text } => {
                print!("{text}");
                Ok(())
            }
            Response::Error { message } => bail!("{message}"),
            other => bail!("unexpected answer from the agent: {other:?}"),
        };
    }
    let (resource, name) = match (args.resource.split_once('/'), &args.name) {
        (Some((r, n)), None) => (r, n.to_string()),
        (None, Some(n)) => (args.resource.as_str(), n.clone()),
        _ => bail!("describe: give the resource and the name: podrun describe pod NAME"),
    };
    if !is_pods(resource) {
        bail!("the server doesn't have a resource type \"{resource}\" (podrun knows pods)");
    }
    ensure_agent(cli)?;
    match call(
        cli,
        &Request::Describe {
            namespace: args.ns.namespace.clone(),
            name,
        },
    )? {
        Response::Text { text } => {
            print!("{text}");
            Ok(())
        }
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from the agent: {other:?}"),
    }
}

/// The files `-f` names: one file, every manifest of a directory (sorted), or stdin.
fn read_manifests(arg: &str) -> Result<Vec<(String, String)>> {
    if arg == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("read stdin")?;
        return Ok(vec![("<stdin>".into(), text)]);
    }
    let path = std::path::Path::new(arg);
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("read {arg}"))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("{arg}: no manifests (*.yaml, *.yml, *.json) in the directory");
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
            Ok((f.display().to_string(), text))
        })
        .collect()
}

/// Print what the agent did; an error or a failed part fails the command.
fn done(response: Response) -> Result<()> {
    match response {
        Response::Done {
            lines,
            warnings,
            failed,
        } => {
            for l in &lines {
                println!("{l}");
            }
            for w in &warnings {
                eprintln!("Error: {w}");
            }
            if failed {
                std::process::exit(1);
            }
            Ok(())
        }
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from the agent: {other:?}"),
    }
}

/// Long: an apply waits for its pods' images and starts.
const CALL_TIMEOUT: Duration = Duration::from_secs(3600);

pub fn call(cli: &Cli, request: &Request) -> Result<Response> {
    Ok(api::call(&cli.run_root, request, CALL_TIMEOUT)?)
}

/// Make sure an agent serves the root: start one in the background if none
/// answers (saying so), and wait until it does.
pub fn ensure_agent(cli: &Cli) -> Result<()> {
    if api::ping(&cli.run_root)? {
        return Ok(());
    }
    std::fs::create_dir_all(&cli.run_root)
        .with_context(|| format!("create {}", cli.run_root.display()))?;
    let log_path = cli.run_root.join("agent.log");
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("serve")
        .arg("--root")
        .arg(&cli.root)
        .arg("--run-root")
        .arg(&cli.run_root)
        .arg("--config")
        .arg(&cli.config)
        .arg("--registries-conf")
        .arg(&cli.registries_conf)
        .arg("--hosts-dir")
        .arg(&cli.hosts_dir)
        .arg("--log-level")
        .arg("info");
    if let Some(r) = &cli.runtime {
        cmd.arg("--runtime").arg(r);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is one system call, async-signal-safe; the agent
    // leaves our session so it outlives this terminal.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let _ = rustix::process::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("start the agent")?;
    eprintln!(
        "podrun: started the agent for {} (pid {}, log {}; `podrun serve` runs it in the foreground)",
        cli.root.display(),
        child.id(),
        log_path.display()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if api::ping(&cli.run_root).unwrap_or(false) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Another agent may have won the race to start; else it failed.
            if api::ping(&cli.run_root).unwrap_or(false) {
                return Ok(());
            }
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = text.lines().rev().take(3).collect::<Vec<_>>();
            let last: Vec<&str> = last.into_iter().rev().collect();
            bail!("the agent exited ({status}): {}", last.join("\n"));
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "the agent did not answer within 30 s (see {})",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(status: serde_json::Value) -> PodSummary {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]},
            "status": status,
        }))
        .unwrap();
        PodSummary::of(&pod, 5, chrono::Utc::now())
    }

    /// `-o wide`: the pod's first IP (kubectl's printer reads podIPs[0]),
    /// `<none>` without one.
    #[test]
    fn the_wide_table_shows_the_pods_first_ip_or_none() {
        let with = summary(serde_json::json!({
            "phase": "Running",
            "podIP": "10.88.0.5",
            "podIPs": [{"ip": "10.88.0.5"}, {"ip": "fd00::5"}],
        }));
        let without = summary(serde_json::json!({"phase": "Pending"}));
        let rows = pod_rows(&[with, without], false, true, "node1");
        assert_eq!(
            rows[0],
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES"
            ]
        );
        assert_eq!(rows[1][5..], ["10.88.0.5", "node1", "<none>", "<none>"]);
        assert_eq!(rows[2][5..], ["<none>", "node1", "<none>", "<none>"]);
        // Not wide: no IP column.
        let narrow = pod_rows(&[summary(serde_json::json!({}))], true, false, "node1");
        assert_eq!(
            narrow[0],
            ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        );
        assert_eq!(narrow[1].len(), 6);
    }
}
