//! kubectl's watching commands on the agent's pushed watches
//! ([`podrun_agent::api::Watch`]): `get pods -w` / `--watch-only`,
//! `get events [-w]` (and `events`, kubectl's newer command), and `wait`.

use crate::kubectl::{call, ensure_agent, pod_name, pod_rows};
use crate::Cli;
use anyhow::{bail, Result};
use podrun_agent::api::{
    ApiError, PodSummary, Request, Response, StoredEvent, Watch, WatchEvent, WatchObject, Watched,
};
use podrun_agent::events::Style;
use podrun_agent::table::Remembered;
use std::io::Write;
use std::time::{Duration, Instant};

/// What `get pods -w` prints.
pub struct PodWatch<'a> {
    /// One namespace (None: every one, with a NAMESPACE column).
    pub namespace: Option<String>,
    /// Only these pods.
    pub names: &'a [String],
    /// `""`, `wide` or `name`.
    pub output: &'a str,
    /// `--watch-only`: no table of the pods there now.
    pub watch_only: bool,
}

/// Stop quietly when stdout is gone (`get -w | head`), as a pipe writer should.
fn printed(r: std::io::Result<()>) -> Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Open a watch and read what is there now (until the agent says so).
fn open(cli: &Cli, request: &Request) -> Result<(Watch, Vec<WatchObject>)> {
    ensure_agent(cli)?;
    let mut watch = Watch::open(&cli.run_root, request)?;
    let mut now = Vec::new();
    loop {
        match watch.next(None)? {
            WatchEvent::Added { object } | WatchEvent::Modified { object } => now.push(object),
            WatchEvent::Deleted { .. } => {}
            WatchEvent::Synced => return Ok((watch, now)),
            WatchEvent::Error { message } => bail!("{message}"),
        }
    }
}

/// The next change of a watch; an agent that goes away ends the command with
/// an error (kubectl's watch ends when its connection drops).
fn next(watch: &mut Watch, deadline: Option<Instant>) -> Result<WatchEvent, ApiError> {
    match watch.next(deadline)? {
        WatchEvent::Error { message } => Err(ApiError::Agent(message)),
        e => Ok(e),
    }
}

/// `get pods -w`: the table once (unless `--watch-only`), then a row each
/// time a pod's row changes, and its last row when it is gone. As kubectl's
/// printer: the header comes with the first row printed, and the columns
/// keep their widths (kubectl's tab writer remembers them).
pub fn watch_pods(cli: &Cli, w: &PodWatch) -> Result<()> {
    if !matches!(w.output, "" | "wide" | "name") {
        bail!(
            "output format {:?} is not supported with --watch (use the table, wide or name)",
            w.output
        );
    }
    let all_namespaces = w.namespace.is_none();
    let request = Request::Watch {
        what: Watched::Pods,
        namespace: w.namespace.clone(),
        pod: match w.names {
            [one] => Some(one.clone()),
            _ => None,
        },
        full: false,
    };
    let (mut watch, now) = open(cli, &request)?;
    let wanted = |p: &PodSummary| w.names.is_empty() || w.names.contains(&p.name);
    let pods: Vec<PodSummary> = now
        .into_iter()
        .filter_map(|o| match o {
            WatchObject::Pod(p) => Some(p),
            WatchObject::Event(_) => None,
        })
        .filter(wanted)
        .collect();
    for n in w.names {
        if !pods.iter().any(|p| &p.name == n) {
            bail!(
                "pods \"{n}\" not found in namespace \"{}\"",
                w.namespace.as_deref().unwrap_or("default")
            );
        }
    }
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut printer = Remembered::default();
    let mut header = false;
    let mut print = |pods: &[PodSummary]| -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if w.output == "name" {
            for p in pods {
                writeln!(out, "pod/{}", p.name)?;
            }
            return out.flush();
        }
        let rows = pod_rows(pods, all_namespaces, w.output == "wide", node.trim());
        // kubectl prints no header for an empty table: it comes with the
        // first row.
        let from = if header || pods.is_empty() { 1 } else { 0 };
        header |= !pods.is_empty();
        printer.write(&mut out, &rows[from..])
    };
    if !w.watch_only && !printed(print(&pods))? {
        return Ok(());
    }
    loop {
        let pod = match next(&mut watch, None)? {
            WatchEvent::Added { object }
            | WatchEvent::Modified { object }
            | WatchEvent::Deleted { object } => match object {
                WatchObject::Pod(p) => p,
                WatchObject::Event(_) => continue,
            },
            WatchEvent::Synced | WatchEvent::Error { .. } => continue,
        };
        if wanted(&pod) && !printed(print(std::slice::from_ref(&pod)))? {
            return Ok(());
        }
    }
}

/// What `get events` / `events` list.
pub struct EventQuery {
    /// One namespace (None: every one, with a NAMESPACE column).
    pub namespace: Option<String>,
    /// `--for pod/NAME`: only that pod's.
    pub pod: Option<String>,
    /// Keep printing new events (and events seen again) as they come.
    pub watch: bool,
    /// `--watch-only`.
    pub watch_only: bool,
    /// Which of kubectl's lists.
    pub style: Style,
}

/// `get events [-w]` and `events [-w]`.
pub fn events(cli: &Cli, q: &EventQuery) -> Result<()> {
    let pod = q
        .pod
        .as_deref()
        .map(pod_name)
        .transpose()?
        .map(String::from);
    let all_namespaces = q.namespace.is_none();
    let no_events = || {
        match &q.namespace {
            Some(ns) => eprintln!("No resources found in {ns} namespace."),
            None => eprintln!("No resources found"),
        };
    };
    if !q.watch && !q.watch_only {
        ensure_agent(cli)?;
        let request = Request::Events {
            namespace: q.namespace.clone(),
            pod,
        };
        let events = match call(cli, &request)? {
            Response::Events { events } => events,
            Response::Error { message } => bail!("{message}"),
            other => bail!("unexpected answer from the agent: {other:?}"),
        };
        if events.is_empty() {
            no_events();
            return Ok(());
        }
        let rows = podrun_agent::events::rows(&events, all_namespaces, q.style, chrono::Utc::now());
        printed(podrun_agent::table::write(
            &mut std::io::stdout().lock(),
            &rows,
        ))?;
        return Ok(());
    }
    let request = Request::Watch {
        what: Watched::Events,
        namespace: q.namespace.clone(),
        pod,
        full: false,
    };
    let (mut watch, now) = open(cli, &request)?;
    let mut events: Vec<StoredEvent> = now
        .into_iter()
        .filter_map(|o| match o {
            WatchObject::Event(e) => Some(e),
            WatchObject::Pod(_) => None,
        })
        .collect();
    podrun_agent::events::sort(&mut events);
    let mut printer = Remembered::default();
    let mut header = false;
    let mut print = |events: &[StoredEvent]| -> std::io::Result<()> {
        let now = chrono::Utc::now();
        let mut rows = Vec::new();
        if !header && !events.is_empty() {
            rows.push(podrun_agent::events::header(all_namespaces));
            header = true;
        }
        rows.extend(
            events
                .iter()
                .map(|e| podrun_agent::events::row(e, all_namespaces, q.style, now)),
        );
        printer.write(&mut std::io::stdout().lock(), &rows)
    };
    if !q.watch_only && !printed(print(&events))? {
        return Ok(());
    }
    loop {
        let event = match next(&mut watch, None)? {
            WatchEvent::Added { object } | WatchEvent::Modified { object } => match object {
                WatchObject::Event(e) => e,
                WatchObject::Pod(_) => continue,
            },
            _ => continue,
        };
        if !printed(print(std::slice::from_ref(&event)))? {
            return Ok(());
        }
    }
}

/// What `wait --for` waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitFor {
    /// `delete`: the pod is gone.
    Delete,
    /// `condition=NAME[=VALUE]`: status.conditions has NAME with status
    /// VALUE (default true), compared without case.
    Condition {
        /// The condition's type.
        name: String,
        /// Its status.
        value: String,
    },
    /// `jsonpath='{EXPR}'[=VALUE]`: the expression has a value (VALUE, or any).
    JsonPath {
        /// The expression.
        path: crate::jsonpath::Path,
        /// The value wanted, if one is.
        value: Option<String>,
    },
}

impl WaitFor {
    /// kubectl's `--for` (conditionFuncFor in kubectl's wait.go).
    pub fn parse(text: &str) -> Result<WaitFor, String> {
        if text.eq_ignore_ascii_case("delete") {
            return Ok(WaitFor::Delete);
        }
        if let Some(rest) = text.strip_prefix("condition=") {
            let (name, value) = rest.split_once('=').unwrap_or((rest, "true"));
            return Ok(WaitFor::Condition {
                name: name.into(),
                value: value.into(),
            });
        }
        if let Some(rest) = text.strip_prefix("jsonpath=") {
            let (expr, value) = crate::jsonpath::split_value(rest);
            if value == Some("") {
                return Err("jsonpath wait value cannot be empty".into());
            }
            let value = value.map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string());
            let path = crate::jsonpath::Path::parse(expr)?;
            return Ok(WaitFor::JsonPath { path, value });
        }
        Err(format!("unrecognized condition: {text:?}"))
    }

    /// Whether `pod` (a v1 Pod) meets it.
    pub fn met(&self, pod: &serde_json::Value) -> Result<bool, String> {
        match self {
            WaitFor::Delete => Ok(false),
            WaitFor::Condition { name, value } => Ok(pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| {
                    c["type"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case(name))
                })
                .and_then(|c| c["status"].as_str())
                .is_some_and(|s| s.eq_ignore_ascii_case(value))),
            WaitFor::JsonPath { path, value } => {
                let found = path.find(pod);
                let Some(first) = found.first() else {
                    return Ok(false);
                };
                if found.len() > 1 {
                    return Err("given jsonpath expression matches more than one value".into());
                }
                let Some(value) = value else {
                    return Ok(true);
                };
                let text = crate::jsonpath::text(first)?;
                Ok(text.trim() == value.trim())
            }
        }
    }
}

/// `wait --for=… pod/NAME… [--timeout=30s]`.
#[derive(clap::Args)]
pub struct WaitArgs {
    /// The pods: `pod/NAME…`, or `pod NAME…`.
    #[arg(required = true)]
    resources: Vec<String>,
    /// The condition to wait on: delete, condition=NAME[=VALUE] (VALUE
    /// default true, compared without case), or jsonpath='{EXPR}'[=VALUE].
    #[arg(long = "for", required = true, value_name = "CONDITION")]
    for_: String,
    /// How long to wait before giving up (`30s`, `2m`, `1h30m`); 0 checks
    /// once, a negative one waits a week.
    #[arg(long, default_value = "30s", allow_hyphen_values = true)]
    timeout: String,
    #[command(flatten)]
    ns: crate::kubectl::NamespaceArgs,
}

/// A Go duration as kubectl's flags take it (`1h2m3.5s`, `300ms`, `-1s`, `0`).
pub fn parse_duration(text: &str) -> Result<(bool, Duration), String> {
    let bad = || format!("invalid duration {text:?}");
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok((negative, Duration::ZERO));
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * seconds;
        rest = &rest[unit_len..];
    }
    Ok((negative, Duration::from_secs_f64(total)))
}

/// The pods a `wait` names.
fn wait_targets(resources: &[String]) -> Result<Vec<String>> {
    let mut rest = resources;
    if rest
        .first()
        .is_some_and(|r| matches!(r.as_str(), "pod" | "pods" | "po"))
    {
        rest = &rest[1..];
        if rest.is_empty() {
            bail!("wait pod: give the name of the pod");
        }
        return Ok(rest.to_vec());
    }
    rest.iter()
        .map(|r| {
            if !r.contains('/') {
                bail!("wait: give pods as pod/NAME (or pod NAME…), not {r:?}");
            }
            Ok(pod_name(r)?.to_string())
        })
        .collect()
}

/// How one pod's wait ended.
enum Waited {
    /// `pod/NAME condition met`.
    Met,
    /// Nothing to wait for (`--for=delete` of a pod that is not there).
    Absent,
}

/// Why one pod's wait failed, in kubectl's words.
#[derive(Debug, thiserror::Error)]
enum WaitError {
    #[error("Error from server (NotFound): pods \"{0}\" not found")]
    NotFound(String),
    #[error("error: timed out waiting for the condition on pods/{0}")]
    TimedOut(String),
    #[error("error: condition not met for pods/{0}")]
    NotMet(String),
    #[error("error: {0}")]
    Other(String),
}

/// `podrun wait`: each pod in turn, within one timeout for all, as kubectl
/// waits; exit 1 at the first that fails, with kubectl's message.
pub fn wait(cli: &Cli, args: &WaitArgs) -> Result<i32> {
    let condition = match WaitFor::parse(&args.for_) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let (negative, timeout) = match parse_duration(&args.timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "error: invalid argument {:?} for \"--timeout\" flag: {e}",
                args.timeout
            );
            return Ok(1);
        }
    };
    // kubectl: a negative timeout is a week.
    let timeout = if negative && !timeout.is_zero() {
        Duration::from_secs(7 * 24 * 3600)
    } else {
        timeout
    };
    let deadline = Instant::now() + timeout;
    for name in wait_targets(&args.resources)? {
        match wait_one(
            cli,
            &args.ns.namespace,
            &name,
            &condition,
            timeout,
            deadline,
        ) {
            Ok(Waited::Met) => println!("pod/{name} condition met"),
            Ok(Waited::Absent) => {}
            Err(e) => {
                eprintln!("{e}");
                return Ok(1);
            }
        }
    }
    Ok(0)
}

fn wait_one(
    cli: &Cli,
    namespace: &str,
    name: &str,
    condition: &WaitFor,
    timeout: Duration,
    deadline: Instant,
) -> Result<Waited, WaitError> {
    let other = |e: anyhow::Error| WaitError::Other(crate::message(&e));
    let request = Request::Watch {
        what: Watched::Pods,
        namespace: Some(namespace.to_string()),
        pod: Some(name.to_string()),
        full: true,
    };
    let (mut watch, now) = open(cli, &request).map_err(other)?;
    let pod = |o: WatchObject| match o {
        WatchObject::Pod(p) => p.pod,
        WatchObject::Event(_) => None,
    };
    let mut current = now.into_iter().find_map(pod);
    let delete = *condition == WaitFor::Delete;
    match &current {
        None if delete => return Ok(Waited::Absent),
        None => return Err(WaitError::NotFound(name.into())),
        Some(_) => {}
    }
    loop {
        if let Some(p) = &current {
            if condition.met(p).map_err(WaitError::Other)? {
                return Ok(Waited::Met);
            }
        }
        if timeout.is_zero() {
            return Err(WaitError::NotMet(name.into()));
        }
        match next(&mut watch, Some(deadline)) {
            Ok(WatchEvent::Added { object } | WatchEvent::Modified { object }) => {
                current = pod(object);
            }
            Ok(WatchEvent::Deleted { .. }) if delete => return Ok(Waited::Met),
            // kubectl goes on waiting: a pod of that name may come again.
            Ok(WatchEvent::Deleted { .. }) => current = None,
            Ok(_) => {}
            Err(ApiError::TimedOut) => return Err(WaitError::TimedOut(name.into())),
            Err(e) => return Err(WaitError::Other(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_kubectls_flags_do() {
        let d = |t: &str| parse_duration(t).map(|(n, d)| (n, d.as_millis()));
        assert_eq!(d("30s"), Ok((false, 30_000)));
        assert_eq!(d("1m30s"), Ok((false, 90_000)));
        assert_eq!(d("1h"), Ok((false, 3_600_000)));
        assert_eq!(d("1.5s"), Ok((false, 1_500)));
        assert_eq!(d("300ms"), Ok((false, 300)));
        assert_eq!(d("0"), Ok((false, 0)));
        assert_eq!(d("-1s"), Ok((true, 1_000)));
        assert!(d("30").is_err());
        assert!(d("5 s").is_err());
        assert!(d("").is_err());
    }

    fn pod(conditions: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "metadata": {"name": "web"},
            "status": {"phase": "Running", "conditions": conditions, "containerStatuses": [{"name": "app", "restartCount": 2}]},
        })
    }

    #[test]
    fn conditions_are_compared_without_case() {
        let p = pod(serde_json::json!([
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "False"},
        ]));
        let c = |t: &str| WaitFor::parse(t).unwrap().met(&p).unwrap();
        assert!(c("condition=initialized"));
        assert!(!c("condition=Ready"));
        assert!(c("condition=Ready=false"));
        assert!(!c("condition=PodScheduled"));
        assert_eq!(WaitFor::parse("delete"), Ok(WaitFor::Delete));
        assert_eq!(
            WaitFor::parse("ready"),
            Err("unrecognized condition: \"ready\"".into())
        );
    }

    #[test]
    fn jsonpath_conditions_compare_the_value_as_text() {
        let p = pod(serde_json::json!([{"type": "Ready", "status": "True"}]));
        let c = |t: &str| WaitFor::parse(t).and_then(|c| c.met(&p));
        assert_eq!(c("jsonpath={.status.phase}=Running"), Ok(true));
        assert_eq!(c("jsonpath={.status.phase}='Running'"), Ok(true));
        assert_eq!(c("jsonpath={.status.phase}=Pending"), Ok(false));
        assert_eq!(c("jsonpath={.status.phase}"), Ok(true));
        assert_eq!(c("jsonpath={.status.podIP}"), Ok(false));
        assert_eq!(
            c("jsonpath=.status.containerStatuses[0].restartCount=2"),
            Ok(true)
        );
        assert_eq!(
            c("jsonpath={.status.conditions[?(@.type==\"Ready\")].status}=True"),
            Ok(true)
        );
        assert_eq!(
            c("jsonpath={.status}=x"),
            Err("jsonpath leads to a nested object or list which is not supported".into())
        );
        assert_eq!(
            c("jsonpath={.status.phase}="),
            Err("jsonpath wait value cannot be empty".into())
        );
    }

    #[test]
    fn wait_takes_pods_as_kubectl_does() {
        let s = |v: &[&str]| wait_targets(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&["pod/a", "pods/b"]).unwrap(), ["a", "b"]);
        assert_eq!(s(&["pod", "a", "b"]).unwrap(), ["a", "b"]);
        assert!(s(&["a"]).is_err());
        assert!(s(&["deploy/a"]).is_err());
    }
}
