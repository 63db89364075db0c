//! `podrun describe pod`: kubectl's layout of a pod from its v1 status (name,
//! node, status, init containers and containers with their state, last state
//! and restart count, conditions, QoS class), how long each start-up step
//! took, and the events with their counts and ages.

use super::db::{EventRow, PodRow};
use super::worker::WorkerError;
use super::Agent;
use k8s_openapi::api::core::v1::{Container, ContainerState, ContainerStatus, Pod};
use std::fmt::Write;

/// The text of `describe pod namespace/name`.
pub(super) fn describe(agent: &Agent, namespace: &str, name: &str) -> Result<String, WorkerError> {
    let Some(row) = agent.db().pod(namespace, name)? else {
        // A pod of `podrun run` in the foreground: what its manager reported
        // (its events are that process's).
        let state = crate::pods::find(&agent.settings.run_root, namespace, name)?;
        let pod = crate::pods::reported(&state);
        let status = podrun_kubelet::printer::status_column(&pod);
        return Ok(render(&pod, None, &status, &agent.node, &[]));
    };
    let mut pod: Pod = super::worker::decode(&row.manifest, "the stored manifest")?;
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
    // A key longer than the column still gets kubectl's tabwriter padding (2).
    let width = width.max(key.len() + 3);
    let _ = writeln!(
        out,
        "{:indent$}{:<width$}{value}",
        "",
        format!("{key}:"),
        indent = indent,
        width = width
    );
}

/// kubectl's `IPs:` section (describe.go describePodIPs) and the
/// `Controlled By:` line after it. kubectl's tabwriter aligns each run of
/// lines that have a cell: `IPs:` alone has none, so the `  IP:` lines under
/// it start a run of their own, which `Controlled By:` joins, each cell as
/// wide as the run's widest plus 2.
fn ips_and_controller(
    out: &mut String,
    status: &k8s_openapi::api::core::v1::PodStatus,
    controller: Option<&str>,
) {
    let ips: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .collect();
    if ips.is_empty() {
        field(out, 0, "IPs", "<none>");
        if let Some(c) = controller {
            field(out, 0, "Controlled By", c);
        }
        return;
    }
    let _ = writeln!(out, "IPs:");
    let mut run: Vec<(&str, &str)> = ips.iter().map(|ip| ("  IP:", *ip)).collect();
    run.extend(controller.map(|c| ("Controlled By:", c)));
    let width = run.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    for (k, v) in run {
        let _ = writeln!(out, "{k:<width$}{v}");
    }
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
    // kubectl shows Terminating for a pod being deleted (how long since its
    // deletionTimestamp: "<invalid>" while that is ahead, as kubectl prints
    // it during the grace period), else the phase.
    let phase = status.phase.clone().unwrap_or_else(|| "Pending".into());
    let ended = matches!(phase.as_str(), "Failed" | "Succeeded");
    match (&meta.deletion_timestamp, meta.deletion_grace_period_seconds) {
        (Some(at), Some(grace)) if !ended => {
            let at = chrono::DateTime::from_timestamp(at.0.as_second(), 0).unwrap_or_default();
            let since = podrun_kubelet::printer::human_duration(chrono::Utc::now() - at);
            field(
                &mut out,
                0,
                "Status",
                &format!("Terminating (lasts {since})"),
            );
            field(
                &mut out,
                0,
                "Termination Grace Period",
                &format!("{grace}s"),
            );
        }
        _ if status_column == "Terminating" && !ended => {
            field(&mut out, 0, "Status", "Terminating")
        }
        _ => field(&mut out, 0, "Status", &phase),
    }
    if let Some(reason) = &status.reason {
        field(&mut out, 0, "Reason", reason);
    }
    if let Some(message) = &status.message {
        field(&mut out, 0, "Message", message);
    }
    field(&mut out, 0, "IP", status.pod_ip.as_deref().unwrap_or(""));
    // kubectl shows the controller among the ownerReferences; how podrun got
    // the pod (apply, a static pod file) is not one.
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|owner| format!("{}/{}", owner.kind, owner.name));
    ips_and_controller(&mut out, &status, controller.as_deref());
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
    volumes(&mut out, &spec);
    field(
        &mut out,
        0,
        "QoS Class",
        &status
            .qos_class
            .clone()
            .unwrap_or_else(|| podrun_spec::qos_class(pod).as_str().to_string()),
    );
    selectors_and_tolerations(&mut out, &spec);
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
            // kubectl's source column: the scheduler placed it, kubelet did the rest.
            if e.reason == "Scheduled" {
                "default-scheduler"
            } else {
                "kubelet"
            }
            .into(),
            e.message.clone(),
        ]);
    }
    let mut table = Vec::new();
    let _ = crate::table::write_spaced(&mut table, &rows, 2);
    out.push_str(&String::from_utf8_lossy(&table));
    align_first_block(&out)
}

/// kubectl's tabwriter makes the pod's first run of `Key:  value` lines (up
/// to the first line with no value, `IPs:` or `Init Containers:`) as wide as
/// its widest key plus 2: `Termination Grace Period:` widens all of them.
fn align_first_block(text: &str) -> String {
    const NARROW: usize = 18;
    let lines: Vec<&str> = text.lines().collect();
    let key = |l: &str| -> Option<usize> {
        let end = l.find(':')?;
        let key_ok = !l.starts_with(' ') && l[end + 1..].starts_with("  ");
        key_ok.then_some(end + 1)
    };
    let block = lines
        .iter()
        .take_while(|l| key(l).is_some() || l.starts_with(&" ".repeat(NARROW)))
        .count();
    let width = lines[..block]
        .iter()
        .filter_map(|l| key(l))
        .map(|k| k + 2)
        .max()
        .unwrap_or(NARROW)
        .max(NARROW);
    if width == NARROW {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + block * (width - NARROW));
    for (i, l) in lines.iter().enumerate() {
        if i < block {
            let (head, value) = match key(l) {
                Some(k) => (&l[..k], l[k..].trim_start()),
                None => ("", l.trim_start()),
            };
            let _ = writeln!(out, "{head:<width$}{value}");
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
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
    resources(out, c);
    for (label, probe) in [
        ("Liveness", &c.liveness_probe),
        ("Readiness", &c.readiness_probe),
        ("Startup", &c.startup_probe),
    ] {
        if let Some(p) = probe {
            field(out, 4, label, &probe_line(p));
        }
    }
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
    mounts(out, c);
}

/// kubectl's `Limits:` and `Requests:` of a container, resources sorted by name.
fn resources(out: &mut String, c: &Container) {
    let r = c.resources.clone().unwrap_or_default();
    for (label, map) in [("Limits", r.limits), ("Requests", r.requests)] {
        let Some(map) = map.filter(|m| !m.is_empty()) else {
            continue;
        };
        let _ = writeln!(out, "    {label}:");
        for (name, q) in map {
            field(out, 6, &name, &q.0);
        }
    }
}

/// kubectl's `DescribeProbe`: `exec [cat /tmp/healthy] delay=5s timeout=1s
/// period=5s #success=1 #failure=3`, and the http-get, tcp-socket and grpc forms.
pub(crate) fn probe_line(p: &k8s_openapi::api::core::v1::Probe) -> String {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let port = |p: &IntOrString| match p {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    };
    let attrs = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        p.initial_delay_seconds.unwrap_or(0),
        p.timeout_seconds.unwrap_or(1),
        p.period_seconds.unwrap_or(10),
        p.success_threshold.unwrap_or(1),
        p.failure_threshold.unwrap_or(3)
    );
    if let Some(e) = &p.exec {
        format!(
            "exec [{}] {attrs}",
            e.command.clone().unwrap_or_default().join(" ")
        )
    } else if let Some(h) = &p.http_get {
        let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let host = h.host.clone().unwrap_or_default();
        let path = h.path.clone().unwrap_or_default();
        format!("http-get {scheme}://{host}:{}{path} {attrs}", port(&h.port))
    } else if let Some(t) = &p.tcp_socket {
        let host = t.host.clone().unwrap_or_default();
        format!("tcp-socket {host}:{} {attrs}", port(&t.port))
    } else if let Some(g) = &p.grpc {
        let service = g.service.clone().unwrap_or_default();
        format!("grpc <pod>:{} {service} {attrs}", g.port)
    } else {
        format!("unknown {attrs}")
    }
}

/// kubectl's `Mounts:` of a container: by mount path, `(ro)`/`(rw)` and the subPath.
fn mounts(out: &mut String, c: &Container) {
    let mut list = c.volume_mounts.clone().unwrap_or_default();
    if list.is_empty() {
        field(out, 4, "Mounts", "<none>");
        return;
    }
    list.sort_by(|a, b| a.mount_path.cmp(&b.mount_path));
    let _ = writeln!(out, "    Mounts:");
    for m in list {
        let mut flags = vec![if m.read_only.unwrap_or(false) {
            "ro"
        } else {
            "rw"
        }
        .to_string()];
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            flags.push(format!("path={}", crate::env::go_quote(sub)));
        }
        let _ = writeln!(
            out,
            "      {} from {} ({})",
            m.mount_path,
            m.name,
            flags.join(",")
        );
    }
}

/// kubectl's `Volumes:` section (describeVolumes), for the kinds podrun mounts.
fn volumes(out: &mut String, spec: &k8s_openapi::api::core::v1::PodSpec) {
    let list = spec.volumes.clone().unwrap_or_default();
    if list.is_empty() {
        field(out, 0, "Volumes", "<none>");
        return;
    }
    let _ = writeln!(out, "Volumes:");
    let yes_no = |b: Option<bool>| b.unwrap_or(false).to_string();
    // An unset *bool, as Go's %v prints the pointer kubectl passes.
    let ptr = |b: Option<bool>| b.map_or_else(|| "<nil>".to_string(), |b| b.to_string());
    for v in list {
        let _ = writeln!(out, "  {}:", v.name);
        if let Some(h) = &v.host_path {
            field(out, 4, "Type", "HostPath (bare host directory volume)");
            field(out, 4, "Path", &h.path);
            let t = h.type_.clone().filter(|t| !t.is_empty());
            field(out, 4, "HostPathType", t.as_deref().unwrap_or("<none>"));
        } else if let Some(c) = &v.config_map {
            field(
                out,
                4,
                "Type",
                "ConfigMap (a volume populated by a ConfigMap)",
            );
            field(out, 4, "Name", &c.name);
            field(out, 4, "Optional", &yes_no(c.optional));
        } else if let Some(s) = &v.secret {
            field(out, 4, "Type", "Secret (a volume populated by a Secret)");
            field(out, 4, "SecretName", s.secret_name.as_deref().unwrap_or(""));
            field(out, 4, "Optional", &yes_no(s.optional));
        } else if let Some(d) = &v.downward_api {
            field(
                out,
                4,
                "Type",
                "DownwardAPI (a volume populated by information about the pod)",
            );
            let _ = writeln!(out, "    Items:");
            for item in d.items.iter().flatten() {
                if let Some(f) = &item.field_ref {
                    let _ = writeln!(out, "      {} -> {}", f.field_path, item.path);
                }
                if let Some(r) = &item.resource_field_ref {
                    let _ = writeln!(out, "      {} -> {}", r.resource, item.path);
                }
            }
        } else if let Some(p) = &v.projected {
            field(
                out,
                4,
                "Type",
                "Projected (a volume that contains injected data from multiple sources)",
            );
            for s in p.sources.iter().flatten() {
                if let Some(sec) = &s.secret {
                    field(out, 4, "SecretName", &sec.name);
                    field(out, 4, "SecretOptionalName", &ptr(sec.optional));
                } else if s.downward_api.is_some() {
                    field(out, 4, "DownwardAPI", "true");
                } else if let Some(c) = &s.config_map {
                    field(out, 4, "ConfigMapName", &c.name);
                    field(out, 4, "ConfigMapOptional", &ptr(c.optional));
                }
            }
        } else if let Some(i) = &v.image {
            // printImageVolumeSource.
            field(out, 4, "Type", "Image (a container image or OCI artifact)");
            field(out, 4, "Reference", i.reference.as_deref().unwrap_or(""));
            field(out, 4, "PullPolicy", i.pull_policy.as_deref().unwrap_or(""));
        } else {
            // A volume without a source is an emptyDir (SetDefaults_Volume).
            let e = v.empty_dir.clone().unwrap_or_default();
            field(
                out,
                4,
                "Type",
                "EmptyDir (a temporary directory that shares a pod's lifetime)",
            );
            field(out, 4, "Medium", e.medium.as_deref().unwrap_or(""));
            let size = e
                .size_limit
                .map(|q| q.0)
                .filter(|q| !q.is_empty() && q != "0");
            field(out, 4, "SizeLimit", size.as_deref().unwrap_or("<unset>"));
        }
    }
}

/// kubectl's `Node-Selectors:` (sorted `key=value` lines) and `Tolerations:`
/// (printTolerationsMultiline: by key, `key=value:Effect op=Exists for Ns`).
fn selectors_and_tolerations(out: &mut String, spec: &k8s_openapi::api::core::v1::PodSpec) {
    let selectors: Vec<String> = spec
        .node_selector
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let indent = format!("\n{:18}", "");
    let none = |v: Vec<String>| {
        if v.is_empty() {
            "<none>".to_string()
        } else {
            v.join(&indent)
        }
    };
    field(out, 0, "Node-Selectors", &none(selectors));
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    tolerations.sort_by(|a, b| a.key.cmp(&b.key));
    let lines: Vec<String> = tolerations
        .iter()
        .map(|t| {
            let key = t.key.clone().unwrap_or_default();
            let value = t.value.clone().unwrap_or_default();
            let effect = t.effect.clone().unwrap_or_default();
            let mut s = key.clone();
            if !value.is_empty() {
                s.push_str(&format!("={value}"));
            }
            if !effect.is_empty() {
                s.push_str(&format!(":{effect}"));
            }
            if t.operator.as_deref() == Some("Exists") && value.is_empty() {
                s.push_str(if key.is_empty() && effect.is_empty() {
                    "op=Exists"
                } else {
                    " op=Exists"
                });
            }
            if let Some(secs) = t.toleration_seconds {
                s.push_str(&format!(" for {secs}s"));
            }
            s
        })
        .collect();
    field(out, 0, "Tolerations", &none(lines));
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
    // "Successfully pulled image \"…\" in 30ms (30ms including waiting). …",
    // as many times as it came.
    let pulled_secs: f64 = events
        .iter()
        .filter(|e| e.reason == "Pulled")
        .filter_map(|e| {
            let took = e.message.split_once("\" in ")?.1.split(' ').next()?;
            let took = podrun_kubelet::backoff::parse_go_duration(took)?;
            Some(took.as_secs_f64() * e.count.max(1) as f64)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        match podrun_spec::load(yaml, "t.yaml").unwrap().remove(0) {
            podrun_spec::Object::Pod(p) => p,
            _ => panic!("not a pod"),
        }
    }

    const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeSelector: {disktype: ssd}
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 300}
  - {key: example, operator: Equal, value: x, effect: NoSchedule}
  containers:
  - name: app
    image: busybox
    resources:
      limits: {memory: 128Mi, cpu: 500m}
      requests: {cpu: 250m}
    livenessProbe:
      exec: {command: [cat, /tmp/healthy]}
      initialDelaySeconds: 5
      periodSeconds: 5
    readinessProbe:
      httpGet: {path: /healthz, port: 8080}
    startupProbe:
      tcpSocket: {port: 8080}
      failureThreshold: 30
    volumeMounts:
    - {name: conf, mountPath: /etc/conf}
    - {name: cache, mountPath: /cache, subPath: app}
    - {name: creds, mountPath: /creds, readOnly: true}
  volumes:
  - name: cache
    emptyDir: {sizeLimit: 1Gi}
  - name: conf
    configMap: {name: game}
  - name: creds
    secret: {secretName: tls}
  - name: host
    hostPath: {path: /var/log, type: Directory}
  - name: info
    downwardAPI:
      items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]
  - name: all
    projected:
      sources:
      - configMap: {name: game}
      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}
"#;

    fn described() -> String {
        render(&pod(POD), None, "Running", "node1", &[])
    }

    fn event(reason: &str, message: &str) -> EventRow {
        let now = chrono::Utc::now().to_rfc3339();
        EventRow {
            type_: "Normal".into(),
            reason: reason.into(),
            message: message.into(),
            count: 1,
            first: now.clone(),
            last: now,
        }
    }

    #[test]
    fn events_come_from_the_scheduler_and_kubelet_and_only_owners_control() {
        let events = [
            event("Scheduled", "Successfully assigned default/web to node1"),
            event(
                "Pulled",
                "Container image \"busybox\" already present on machine",
            ),
        ];
        let d = render(&pod(POD), None, "Running", "node1", &events);
        assert!(
            d.contains("Scheduled  0s    default-scheduler  Successfully assigned"),
            "{d}"
        );
        assert!(
            d.contains("Pulled     0s    kubelet            Container image"),
            "{d}"
        );
        assert!(!d.contains("Controlled By"), "{d}");
        let owned = POD.replace(
            "metadata: {name: web}",
            "metadata:\n  name: web\n  ownerReferences:\n  - {apiVersion: apps/v1, kind: ReplicaSet, name: web-5d9f, uid: 1f7e0a52-0000-4000-8000-000000000001, controller: true}",
        );
        let d = render(&pod(&owned), None, "Running", "node1", &[]);
        assert!(d.contains("Controlled By:    ReplicaSet/web-5d9f\n"), "{d}");
    }

    /// kubectl's describe.go: `IP:` (empty without one), then `IPs:` with a
    /// line per address, or `<none>`; a `Controlled By:` line after the
    /// addresses is aligned with them.
    #[test]
    fn ips_are_kubectls_section() {
        let mut p = pod(POD);
        let d = render(&p, None, "Pending", "node1", &[]);
        assert!(
            d.contains("\nIP:               \nIPs:              <none>\nContainers:\n"),
            "{d}"
        );
        p.status = Some(
            serde_json::from_value(serde_json::json!({
                "hostIP": "192.0.2.2",
                "podIP": "10.88.0.5",
                "podIPs": [{"ip": "10.88.0.5"}, {"ip": "fd00::5"}],
            }))
            .unwrap(),
        );
        let d = render(&p, None, "Running", "node1", &[]);
        assert!(d.contains("Node:             node1/192.0.2.2\n"), "{d}");
        assert!(
            d.contains("\nIP:               10.88.0.5\nIPs:\n  IP:  10.88.0.5\n  IP:  fd00::5\nContainers:\n"),
            "{d}"
        );
        p.metadata.owner_references = Some(vec![serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9f",
            "uid": "1f7e0a52-0000-4000-8000-000000000001", "controller": true,
        }))
        .unwrap()]);
        let d = render(&p, None, "Running", "node1", &[]);
        assert!(
            d.contains("IPs:\n  IP:           10.88.0.5\n  IP:           fd00::5\nControlled By:  ReplicaSet/web-5d9f\nContainers:\n"),
            "{d}"
        );
    }

    #[test]
    fn probes_resources_and_mounts_are_kubectls_lines() {
        let d = described();
        for line in [
            "    Limits:\n      cpu:            500m\n      memory:         128Mi\n    Requests:\n      cpu:            250m\n",
            "    Liveness:         exec [cat /tmp/healthy] delay=5s timeout=1s period=5s #success=1 #failure=3\n",
            "    Readiness:        http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3\n",
            "    Startup:          tcp-socket :8080 delay=0s timeout=1s period=10s #success=1 #failure=30\n",
            "    Mounts:\n      /cache from cache (rw,path=\"app\")\n      /creds from creds (ro)\n      /etc/conf from conf (rw)\n",
        ] {
            assert!(d.contains(line), "missing:\n{line}\nin:\n{d}");
        }
    }

    #[test]
    fn volumes_selectors_and_tolerations_are_kubectls_sections() {
        let d = described();
        for line in [
            "Volumes:\n  cache:\n    Type:             EmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:           \n    SizeLimit:        1Gi\n",
            "  conf:\n    Type:             ConfigMap (a volume populated by a ConfigMap)\n    Name:             game\n    Optional:         false\n",
            "  creds:\n    Type:             Secret (a volume populated by a Secret)\n    SecretName:       tls\n",
            "  host:\n    Type:             HostPath (bare host directory volume)\n    Path:             /var/log\n    HostPathType:     Directory\n",
            "  info:\n    Type:             DownwardAPI (a volume populated by information about the pod)\n    Items:\n      metadata.labels -> labels\n",
            "    ConfigMapName:    game\n    ConfigMapOptional:  <nil>\n    DownwardAPI:      true\n",
            "Node-Selectors:   disktype=ssd\n",
            "Tolerations:      example=x:NoSchedule\n                  node.kubernetes.io/unreachable:NoExecute op=Exists for 300s\n",
        ] {
            assert!(d.contains(line), "missing:\n{line}\nin:\n{d}");
        }
        let order = [
            "Containers:",
            "Volumes:",
            "QoS Class:",
            "Node-Selectors:",
            "Tolerations:",
            "Events:",
        ];
        let at: Vec<usize> = order
            .iter()
            .map(|s| d.find(s).unwrap_or(usize::MAX))
            .collect();
        let mut sorted = at.clone();
        sorted.sort();
        assert_eq!(at, sorted, "kubectl's order {order:?}:\n{d}");
    }
}
