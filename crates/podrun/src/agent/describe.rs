//! `podrun describe pod`: kubectl's layout of a pod (name, node, status,
//! containers with their state and restart count, events with their age).

use super::db::PodRow;
use super::Agent;
use crate::pods::PodState;
use crate::status::{self, State};
use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use std::fmt::Write;

/// The text of `describe pod namespace/name`.
pub(super) fn describe(agent: &Agent, namespace: &str, name: &str) -> Result<String> {
    let row = agent.db().pod(namespace, name)?;
    let state = match &row {
        Some(r) => crate::pods::load(&agent.cli.run_root, &r.pod_id),
        None => Some(crate::pods::find(&agent.cli.run_root, namespace, name)?),
    };
    let pod: Pod = match (&row, &state) {
        (Some(r), _) => serde_json::from_str(&r.manifest)?,
        (None, Some(s)) => s.record.manifest.clone(),
        (None, None) => unreachable!("found above"),
    };
    let summary = match &row {
        Some(r) => super::worker::summary(agent, r, state.as_ref()),
        None => crate::kubectl::summary(state.as_ref().context("found above")?),
    };
    let events = agent.db().events(namespace, name)?;
    Ok(render(
        &pod,
        row.as_ref(),
        state.as_ref(),
        &summary.status,
        &agent.node,
        &events,
    ))
}

fn render(
    pod: &Pod,
    row: Option<&PodRow>,
    state: Option<&PodState>,
    status_column: &str,
    node: &str,
    events: &[super::db::EventRow],
) -> String {
    let mut out = String::new();
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let field = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "{:<16}{v}", format!("{k}:"));
    };
    field(&mut out, "Name", meta.name.as_deref().unwrap_or(""));
    field(
        &mut out,
        "Namespace",
        meta.namespace.as_deref().unwrap_or("default"),
    );
    field(
        &mut out,
        "Priority",
        &spec.priority.unwrap_or(0).to_string(),
    );
    field(&mut out, "Node", node);
    let started = row
        .and_then(|r| r.started.clone())
        .or_else(|| state.map(|s| s.record.created.clone()))
        .unwrap_or_else(|| "<none>".into());
    field(&mut out, "Start Time", &started);
    let labels = meta
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>();
    field(
        &mut out,
        "Labels",
        &if labels.is_empty() {
            "<none>".into()
        } else {
            labels.join("\n              ")
        },
    );
    let view = state.map(|s| s.view());
    field(
        &mut out,
        "Status",
        view.as_ref().map_or(status_column, |v| v.phase),
    );
    field(&mut out, "IP", "");
    if let Some(source) = row.map(|r| r.source.as_str()) {
        let by = match source.strip_prefix("file:") {
            Some(path) => format!("static pod manifest {path}"),
            None => "podrun apply".into(),
        };
        field(&mut out, "Controlled By", &by);
    }
    let _ = writeln!(out, "Containers:");
    for c in &spec.containers {
        let _ = writeln!(out, "  {}:", c.name);
        let _ = writeln!(
            out,
            "    Image:          {}",
            c.image.as_deref().unwrap_or("")
        );
        let cv = view
            .as_ref()
            .and_then(|v| v.containers.iter().find(|x| x.name == c.name));
        match cv.map(|c| &c.state) {
            Some(State::Running { started_at }) => {
                let _ = writeln!(out, "    State:          Running");
                let _ = writeln!(out, "      Started:      {started_at}");
            }
            Some(State::Terminated(e)) => {
                let _ = writeln!(out, "    State:          Terminated");
                let _ = writeln!(out, "      Reason:       {}", e.reason);
                if let Some(m) = &e.message {
                    let _ = writeln!(out, "      Message:      {}", m.trim_end());
                }
                let _ = writeln!(out, "      Exit Code:    {}", e.exit_code);
                let _ = writeln!(out, "      Started:      {}", e.started_at);
                let _ = writeln!(out, "      Finished:     {}", e.finished_at);
            }
            Some(State::Waiting(r)) => {
                let _ = writeln!(out, "    State:          Waiting");
                let _ = writeln!(out, "      Reason:       {r}");
            }
            None => {
                let _ = writeln!(out, "    State:          Waiting");
                let _ = writeln!(out, "      Reason:       {status_column}");
            }
        }
        let _ = writeln!(out, "    Ready:          {}", cv.is_some_and(|c| c.ready));
        let _ = writeln!(out, "    Restart Count:  0");
    }
    if let Some(e) = row.and_then(|r| r.error.as_deref()) {
        let _ = writeln!(out, "Last Error:     {e}");
    }
    let _ = writeln!(out, "Events:");
    if events.is_empty() {
        let _ = writeln!(out, "  <none>");
        return out;
    }
    let now = chrono::Utc::now();
    let age = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| status::human_duration((now - t.with_timezone(&chrono::Utc)).num_seconds()))
            .unwrap_or_default()
    };
    let mut rows = vec![vec![
        "  Type".to_string(),
        "Reason".into(),
        "Age".into(),
        "From".into(),
        "Message".into(),
    ]];
    rows.push(vec![
        "  ----".into(),
        "------".into(),
        "----".into(),
        "----".into(),
        "-------".into(),
    ]);
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
    let _ = crate::images::write_table(&mut table, &rows);
    out.push_str(&String::from_utf8_lossy(&table));
    out
}
