//! `podrun describe pod`: kubectl's layout of a pod from its v1 status (name,
//! node, status, init containers and containers with their state, last state
//! and restart count, conditions, QoS class), how long each start-up step
//! took, and the events with their counts and ages.

use super::db::{EventRow, PodRow};
use super::Agent;
use anyhow::Result;
use k8s_openapi::api::core::v1::{Container, ContainerState, ContainerStatus, Pod};
use std::fmt::Write;

/// The text of `describe pod namespace/name`.
pub(super) fn describe(agent: &Agent, namespace: &str, name: &str) -> Result<String> {
    let Some(row) = agent.db().pod(namespace, name)? else {
        // A pod of `podrun run` in the foreground: what its manager reported
        // (its events are that process's).
        let state = crate::pods::find(&agent.settings.run_root, namespace, name)?;
        let pod = crate::pods::reported(&state);
        let status = podrun_kubelet::printer::status_column(&pod);
        return Ok(render(&pod, None, &status, &agent.node, &[]));
    };
    let mut pod: Pod = serde_json::from_str(&row.manifest)?;
    pod.status = row
        .status
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok());
    let summary = super::worker::summary(&row);
    let events = agent.db().events(namespace, name)?;
    Ok(render(
        &pod,
        Some(&row),
        &summary.status,
        &agent.node,
        &events,
    ))
}

fn field(out: &mut String, indent: usize, key: &str, value: &str) {
    // kubectl aligns a container's fields further out than the pod's.
    let width = if indent == 0 { 18 } else { 22 - indent };
    let _ = writeln!(
        out,
        "{:indent$}{:<width$}{value}",
        "",
        format!("{key}:"),
        indent = indent,
        width = width
    );
}

fn time(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    t.map_or_else(
        || "<none>".into(),
        |t| {
            podrun_kubelet::observe::chrono_time(t)
                .format("%a, %d %b %Y %H:%M:%S %z")
                .to_string()
        },
    )
}

fn render(
    pod: &Pod,
    row: Option<&PodRow>,
    status_column: &str,
    node: &str,
    events: &[EventRow],
) -> String {
    let mut out = String::new();
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    field(&mut out, 0, "Name", meta.name.as_deref().unwrap_or(""));
    field(
        &mut out,
        0,
        "Namespace",
        meta.namespace.as_deref().unwrap_or("default"),
    );
    field(
        &mut out,
        0,
        "Priority",
        &spec.priority.unwrap_or(0).to_string(),
    );
    let host_ip = status.host_ip.clone().unwrap_or_default();
    field(
        &mut out,
        0,
        "Node",
        &if host_ip.is_empty() {
            node.to_string()
        } else {
            format!("{node}/{host_ip}")
        },
    );
    field(&mut out, 0, "Start Time", &time(status.start_time.as_ref()));
    let labels: Vec<String> = meta
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    field(
        &mut out,
        0,
        "Labels",
        &if labels.is_empty() {
            "<none>".into()
        } else {
            labels.join(&format!("\n{:18}", ""))
        },
    );
    // kubectl shows Terminating for a pod being deleted, else the phase.
    let phase = if status_column == "Terminating" {
        "Terminating".to_string()
    } else {
        status.phase.clone().unwrap_or_else(|| "Pending".into())
    };
    field(&mut out, 0, "Status", &phase);
    if let Some(reason) = &status.reason {
        field(&mut out, 0, "Reason", reason);
    }
    if let Some(message) = &status.message {
        field(&mut out, 0, "Message", message);
    }
    field(&mut out, 0, "IP", status.pod_ip.as_deref().unwrap_or(""));
    if let Some(source) = row.map(|r| r.source.as_str()) {
        let by = match source.strip_prefix("file:") {
            Some(path) => format!("static pod manifest {path}"),
            None => "podrun apply".into(),
        };
        field(&mut out, 0, "Controlled By", &by);
    }
    let inits = spec.init_containers.clone().unwrap_or_default();
    if !inits.is_empty() {
        let _ = writeln!(out, "Init Containers:");
        for c in &inits {
            let s = status
                .init_container_statuses
                .iter()
                .flatten()
                .find(|s| s.name == c.name);
            container(&mut out, c, s);
        }
    }
    let _ = writeln!(out, "Containers:");
    for c in &spec.containers {
        let s = status
            .container_statuses
            .iter()
            .flatten()
            .find(|s| s.name == c.name);
        container(&mut out, c, s);
    }
    if let Some(conditions) = &status.conditions {
        let _ = writeln!(out, "Conditions:");
        let _ = writeln!(out, "  {:<28}Status", "Type");
        for c in conditions {
            let _ = writeln!(out, "  {:<28}{}", c.type_, c.status);
        }
    }
    field(
        &mut out,
        0,
        "QoS Class",
        &status
            .qos_class
            .clone()
            .unwrap_or_else(|| podrun_spec::qos_class(pod).as_str().to_string()),
    );
    if let Some(r) = row {
        if let Some(e) = &r.error {
            field(&mut out, 0, "Last Error", e);
        }
    }
    startup(&mut out, &status, events);
    let _ = writeln!(out, "Events:");
    if events.is_empty() {
        let _ = writeln!(out, "  <none>");
        return out;
    }
    let now = chrono::Utc::now();
    let age = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| podrun_kubelet::printer::human_duration(now - t.with_timezone(&chrono::Utc)))
            .unwrap_or_default()
    };
    let mut rows = vec![
        ["  Type", "Reason", "Age", "From", "Message"]
            .map(String::from)
            .to_vec(),
        ["  ----", "------", "----", "----", "-------"]
            .map(String::from)
            .to_vec(),
    ];
    for e in events {
        let when = if e.count > 1 {
            format!("{} (x{} over {})", age(&e.last), e.count, age(&e.first))
        } else {
            age(&e.first)
        };
        rows.push(vec![
            format!("  {}", e.type_),
            e.reason.clone(),
            when,
            "podrun".into(),
            e.message.clone(),
        ]);
    }
    let mut table = Vec::new();
    let _ = crate::table::write(&mut table, &rows);
    out.push_str(&String::from_utf8_lossy(&table));
    out
}

fn state(out: &mut String, label: &str, s: &ContainerState) {
    if let Some(r) = &s.running {
        field(out, 4, label, "Running");
        field(out, 6, "Started", &time(r.started_at.as_ref()));
    } else if let Some(t) = &s.terminated {
        field(out, 4, label, "Terminated");
        if let Some(r) = &t.reason {
            field(out, 6, "Reason", r);
        }
        if let Some(m) = &t.message {
            field(out, 6, "Message", m.trim_end());
        }
        field(out, 6, "Exit Code", &t.exit_code.to_string());
        if let Some(sig) = t.signal {
            field(out, 6, "Signal", &sig.to_string());
        }
        field(out, 6, "Started", &time(t.started_at.as_ref()));
        field(out, 6, "Finished", &time(t.finished_at.as_ref()));
    } else if let Some(w) = &s.waiting {
        field(out, 4, label, "Waiting");
        if let Some(r) = &w.reason {
            field(out, 6, "Reason", r);
        }
    }
}

fn container(out: &mut String, c: &Container, s: Option<&ContainerStatus>) {
    let _ = writeln!(out, "  {}:", c.name);
    if let Some(id) = s.and_then(|s| s.container_id.as_deref()) {
        field(out, 4, "Container ID", id);
    }
    field(out, 4, "Image", c.image.as_deref().unwrap_or(""));
    let ports: Vec<String> = c
        .ports
        .iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}",
                p.container_port,
                p.protocol.as_deref().unwrap_or("TCP")
            )
        })
        .collect();
    field(
        out,
        4,
        "Port",
        &if ports.is_empty() {
            "<none>".into()
        } else {
            ports.join(", ")
        },
    );
    for (label, words) in [("Command", &c.command), ("Args", &c.args)] {
        if let Some(words) = words.as_ref().filter(|w| !w.is_empty()) {
            field(out, 4, label, "");
            for w in words {
                let _ = writeln!(out, "      {w}");
            }
        }
    }
    match s.and_then(|s| s.state.as_ref()) {
        Some(st) => state(out, "State", st),
        None => {
            field(out, 4, "State", "Waiting");
            field(out, 6, "Reason", "ContainerCreating");
        }
    }
    if let Some(last) = s.and_then(|s| s.last_state.as_ref()) {
        if last.running.is_some() || last.terminated.is_some() || last.waiting.is_some() {
            state(out, "Last State", last);
        }
    }
    let ready = s.is_some_and(|s| s.ready);
    field(out, 4, "Ready", if ready { "True" } else { "False" });
    field(
        out,
        4,
        "Restart Count",
        &s.map_or(0, |s| s.restart_count).to_string(),
    );
    let env: Vec<String> = c
        .env
        .iter()
        .flatten()
        .map(|e| match &e.value {
            Some(v) => format!("{}:  {v}", e.name),
            None => format!("{}:  (from a source)", e.name),
        })
        .collect();
    field(
        out,
        4,
        "Environment",
        &if env.is_empty() {
            "<none>".into()
        } else {
            String::new()
        },
    );
    for e in env {
        let _ = writeln!(out, "      {e}");
    }
}

/// The name of the pod's first main container (from its status).
fn pod_first_main(status: &k8s_openapi::api::core::v1::PodStatus) -> Option<String> {
    status
        .container_statuses
        .as_ref()?
        .first()
        .map(|s| s.name.clone())
}

/// How long each start-up step took, from the events and the status: the
/// sandbox (scheduled → the first image check, which comes once the sandbox
/// is ready), the image pulls (their own times, summed: each container's
/// image is pulled just before it starts), init containers (the first
/// container created → the first main container created), the start of the
/// main containers, first Ready.
fn startup(out: &mut String, status: &k8s_openapi::api::core::v1::PodStatus, events: &[EventRow]) {
    let at = |reason: &str, first: bool| {
        let times = events
            .iter()
            .filter(|e| e.reason == reason)
            .filter_map(|e| chrono::DateTime::parse_from_rfc3339(&e.first).ok());
        if first {
            times.min()
        } else {
            times.max()
        }
    };
    let Some(scheduled) = at("Scheduled", true) else {
        return;
    };
    let first_image_check = [at("Pulling", true), at("Pulled", true)]
        .into_iter()
        .flatten()
        .min();
    let first_created = at("Created", true);
    let ms = |a: chrono::DateTime<chrono::FixedOffset>,
              b: chrono::DateTime<chrono::FixedOffset>| {
        format!("{} ms", (b - a).num_milliseconds().max(0))
    };
    let mut steps = Vec::new();
    if let Some(c) = first_image_check {
        steps.push(("sandbox", ms(scheduled, c)));
    }
    // "Successfully pulled image \"…\" in 0.030s", as many times as it came.
    let pulled_secs: f64 = events
        .iter()
        .filter(|e| e.reason == "Pulled")
        .filter_map(|e| {
            let secs = e.message.rsplit_once(" in ")?.1.strip_suffix('s')?;
            Some(secs.parse::<f64>().ok()? * e.count.max(1) as f64)
        })
        .sum();
    if events.iter().any(|e| e.reason == "Pulled") {
        // (An empty f64 sum is -0.0: whole milliseconds print it as 0.)
        let ms = (pulled_secs * 1000.0).round() as i64;
        steps.push(("image pulls", format!("{ms} ms")));
    }
    // The first main container's events: init containers end when it is created.
    let first_main = pod_first_main(status);
    let main_created = first_main.as_ref().and_then(|n| {
        events
            .iter()
            .filter(|e| e.reason == "Created" && e.message == format!("Created container {n}"))
            .filter_map(|e| chrono::DateTime::parse_from_rfc3339(&e.first).ok())
            .min()
    });
    let main_started = first_main.as_ref().and_then(|n| {
        events
            .iter()
            .filter(|e| e.reason == "Started" && e.message == format!("Started container {n}"))
            .filter_map(|e| chrono::DateTime::parse_from_rfc3339(&e.first).ok())
            .min()
    });
    let has_init = status
        .init_container_statuses
        .as_ref()
        .is_some_and(|s| !s.is_empty());
    if let (true, Some(c), Some(m)) = (has_init, first_created, main_created) {
        steps.push(("init containers", ms(c, m)));
    }
    if let Some(started) = main_started {
        steps.push(("start", ms(scheduled, started)));
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .and_then(|c| c.last_transition_time.clone());
    if let Some(r) = ready {
        // The API's times have whole seconds only.
        let at = podrun_kubelet::observe::chrono_time(&r).fixed_offset();
        let secs = (at - scheduled).num_seconds().max(0);
        steps.push(("first ready", format!("within {} s", secs + 1)));
    }
    if steps.is_empty() {
        return;
    }
    let _ = writeln!(out, "Start-up (from scheduled):");
    for (k, v) in steps {
        let _ = writeln!(out, "  {:<24}{v}", format!("{k}:"));
    }
}
