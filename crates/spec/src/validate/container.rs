//! `validateContainers` and what it calls: ports, environment, resources, probes and
//! lifecycle hooks (pkg/apis/core/validation/validation.go).

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, Probe, ResourceFieldSelector, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{
    config_key, dns1123_label, dns1123_subdomain, env_var_name, http_header_name, ip, port_name,
    qualified_name,
};
use super::pod::{security_context, Kind, Pod};
use super::volume::mounts;
use super::{at, index, set, Errors};
use crate::quantity::{parse_quantity, ParsedQuantity};

pub(super) fn container(
    e: &mut Errors,
    c: &Container,
    path: &str,
    pod: &Pod,
    kind: Kind,
    names: &mut HashSet<String>,
) {
    let p = |key: &str| at(path, key);
    if c.name.is_empty() {
        e.required(&p("name"));
    } else {
        e.invalid(&p("name"), &c.name, dns1123_label(&c.name));
        // Init containers and containers share one name space (validateInitContainers).
        if !names.insert(c.name.clone()) {
            e.add(p("name"), format!("duplicate value {:?}", c.name));
        }
    }
    match c.image.as_deref() {
        None | Some("") => e.required(&p("image")),
        Some(image) if image.trim() != image => e.invalid(
            &p("image"),
            image,
            vec!["must not have leading or trailing whitespace".into()],
        ),
        Some(_) => {}
    }
    match (kind, c.restart_policy.as_deref()) {
        (_, None) => {}
        (Kind::Regular, Some(_)) => {
            e.add(p("restartPolicy"), "may not be set for non-init containers")
        }
        (_, Some(policy)) => e.one_of(&p("restartPolicy"), policy, &["Always"]),
    }
    if c.restart_policy_rules
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        e.unsupported_by_podrun(&p("restartPolicyRules"), "a container restart rule");
    }
    if kind == Kind::Init {
        let forbidden = [
            ("lifecycle", c.lifecycle.is_some()),
            ("livenessProbe", c.liveness_probe.is_some()),
            ("readinessProbe", c.readiness_probe.is_some()),
            ("startupProbe", c.startup_probe.is_some()),
        ];
        for (key, present) in forbidden {
            if present {
                e.add(
                    p(key),
                    "may not be set for init containers without restartPolicy=Always",
                );
            }
        }
    } else {
        if let Some(lifecycle) = &c.lifecycle {
            lifecycle_hooks(e, lifecycle, &p("lifecycle"), pod.grace_period);
        }
        for (key, probe_spec) in [
            ("livenessProbe", &c.liveness_probe),
            ("readinessProbe", &c.readiness_probe),
            ("startupProbe", &c.startup_probe),
        ] {
            if let Some(pr) = probe_spec {
                probe(e, pr, &p(key), key);
            }
        }
    }
    if let Some(policy) = set(&c.termination_message_policy) {
        e.one_of(
            &p("terminationMessagePolicy"),
            policy,
            &["File", "FallbackToLogsOnError"],
        );
    }
    if let Some(policy) = set(&c.image_pull_policy) {
        e.one_of(
            &p("imagePullPolicy"),
            policy,
            &["Always", "IfNotPresent", "Never"],
        );
    }
    ports(e, c.ports.as_deref().unwrap_or_default(), &p("ports"));
    for (i, var) in c.env.iter().flatten().enumerate() {
        env_var(e, var, &index(path, "env", i), pod);
    }
    for (i, source) in c.env_from.iter().flatten().enumerate() {
        let sp = index(path, "envFrom", i);
        if let Some(prefix) = set(&source.prefix) {
            e.invalid(&at(&sp, "prefix"), prefix, env_var_name(prefix));
        }
        let refs = [
            (
                "configMapRef",
                source.config_map_ref.as_ref().map(|r| &r.name),
            ),
            ("secretRef", source.secret_ref.as_ref().map(|r| &r.name)),
        ];
        let present: Vec<_> = refs.iter().filter(|(_, n)| n.is_some()).collect();
        match present.as_slice() {
            [] => e.add(sp, "must specify one of: `configMapRef` or `secretRef`"),
            [(key, Some(name))] => object_name(e, &at(&at(&sp, key), "name"), name),
            _ => e.add(sp, "may not have more than one field specified at a time"),
        }
    }
    mounts(e, c, path, pod);
    if c.volume_devices.as_ref().is_some_and(|d| !d.is_empty()) {
        e.unsupported_by_podrun(&p("volumeDevices"), "a raw block volume");
    }
    if let Some(resources) = &c.resources {
        requirements(e, resources, &p("resources"), false);
    }
    for (i, policy) in c.resize_policy.iter().flatten().enumerate() {
        let rp = index(path, "resizePolicy", i);
        e.one_of(
            &at(&rp, "resourceName"),
            &policy.resource_name,
            &["cpu", "memory"],
        );
        e.one_of(
            &at(&rp, "restartPolicy"),
            &policy.restart_policy,
            &["NotRequired", "RestartContainer"],
        );
    }
    if let Some(sc) = &c.security_context {
        security_context(e, sc, &p("securityContext"));
    }
}

fn object_name(e: &mut Errors, path: &str, name: &str) {
    if name.is_empty() {
        e.required(path);
    } else {
        e.invalid(path, name, dns1123_subdomain(name));
    }
}

pub(super) fn ports(e: &mut Errors, ports: &[ContainerPort], path: &str) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = format!("{path}[{i}]");
        if let Some(name) = set(&port.name) {
            e.invalid(&at(&pp, "name"), name, port_name(name));
            if !names.insert(name) {
                e.add(at(&pp, "name"), format!("duplicate value {name:?}"));
            }
        }
        e.range(
            &at(&pp, "containerPort"),
            port.container_port.into(),
            1,
            65535,
        );
        if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
            e.range(&at(&pp, "hostPort"), host_port.into(), 1, 65535);
        }
        if let Some(protocol) = set(&port.protocol) {
            e.one_of(&at(&pp, "protocol"), protocol, &["SCTP", "TCP", "UDP"]);
        }
        // The API server leaves a bad hostIP to the runtime; podrun is the runtime.
        if let Some(host_ip) = set(&port.host_ip) {
            e.invalid(&at(&pp, "hostIP"), host_ip, ip(host_ip));
        }
    }
}

const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn env_var(e: &mut Errors, var: &EnvVar, path: &str, pod: &Pod) {
    if var.name.is_empty() {
        e.required(&at(path, "name"));
    } else {
        e.invalid(&at(path, "name"), &var.name, env_var_name(&var.name));
    }
    let Some(from) = &var.value_from else {
        return;
    };
    let vp = at(path, "valueFrom");
    let mut sources = 0;
    if let Some(fs) = &from.field_ref {
        sources += 1;
        field_selector(e, fs, &at(&vp, "fieldRef"), ENV_FIELD_PATHS);
    }
    if let Some(rs) = &from.resource_field_ref {
        sources += 1;
        resource_selector(e, rs, &at(&vp, "resourceFieldRef"), pod.containers, false);
    }
    for (key, selector) in [
        (
            "configMapKeyRef",
            from.config_map_key_ref.as_ref().map(|s| (&s.name, &s.key)),
        ),
        (
            "secretKeyRef",
            from.secret_key_ref.as_ref().map(|s| (&s.name, &s.key)),
        ),
    ] {
        if let Some((name, key_name)) = selector {
            sources += 1;
            let sp = at(&vp, key);
            object_name(e, &at(&sp, "name"), name);
            if key_name.is_empty() {
                e.required(&at(&sp, "key"));
            } else {
                e.invalid(&at(&sp, "key"), key_name, config_key(key_name));
            }
        }
    }
    if from.file_key_ref.is_some() {
        sources += 1;
        e.unsupported_by_podrun(
            &at(&vp, "fileKeyRef"),
            "an environment variable from a file",
        );
    }
    if sources == 0 {
        e.add(vp, "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`");
    } else if set(&var.value).is_some() {
        e.add(vp, "may not be specified when `value` is not empty");
    } else if sources > 1 {
        e.add(vp, "may not have more than one field specified at a time");
    }
}

/// `validateObjectFieldSelector`: downward API field paths.
pub(super) fn field_selector(
    e: &mut Errors,
    fs: &ObjectFieldSelector,
    path: &str,
    allowed: &[&str],
) {
    if let Some(version) = set(&fs.api_version) {
        e.one_of(&at(path, "apiVersion"), version, &["v1"]);
    }
    let fp = at(path, "fieldPath");
    if fs.field_path.is_empty() {
        return e.required(&fp);
    }
    let subscripted = fs
        .field_path
        .strip_suffix("']")
        .and_then(|s| s.split_once("['"))
        .filter(|(base, _)| !base.is_empty());
    match subscripted {
        Some(("metadata.annotations", key)) => {
            e.invalid(&fp, key, qualified_name(&key.to_lowercase()))
        }
        Some(("metadata.labels", key)) => e.invalid(&fp, key, qualified_name(key)),
        Some((base, _)) => e.invalid(&fp, base, vec!["does not support subscript".into()]),
        None => e.one_of(&fp, &fs.field_path, allowed),
    }
}

/// `validateContainerResourceFieldSelector` and `validateContainerResourceDivisor`.
pub(super) fn resource_selector(
    e: &mut Errors,
    rs: &ResourceFieldSelector,
    path: &str,
    containers: &HashSet<&str>,
    volume: bool,
) {
    match set(&rs.container_name) {
        None if volume => e.required(&at(path, "containerName")),
        // Checked early: kubelet would fail the container at start.
        Some(name) if !containers.contains(name) => e.add(
            at(path, "containerName"),
            format!("not found: no container named {name:?}"),
        ),
        _ => {}
    }
    let resource = rs.resource.as_str();
    let hugepages =
        resource.starts_with("requests.hugepages-") || resource.starts_with("limits.hugepages-");
    if resource.is_empty() {
        e.required(&at(path, "resource"));
    } else if !hugepages {
        e.one_of(&at(path, "resource"), resource, RESOURCE_FIELD_PATHS);
    }
    let Some(divisor) = &rs.divisor else {
        return;
    };
    let dp = at(path, "divisor");
    let Some(value) = quantity(e, &divisor.0, &dp) else {
        return;
    };
    if value.is_zero() {
        return;
    }
    let nanos = value.nanos();
    if resource.ends_with(".cpu") {
        if nanos != 1_000_000 && nanos != 1_000_000_000 {
            e.add(
                dp,
                "only divisor's values 1m and 1 are supported with the cpu resource",
            );
        }
    } else if !resource.is_empty() {
        let decimal = (0..=6).any(|k| nanos == 10i128.pow(9 + 3 * k));
        let binary = (1..=6).any(|k| nanos == (1i128 << (10 * k)) * 1_000_000_000);
        if !decimal && !binary {
            e.add(dp, "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported");
        }
    }
}

/// Parses a quantity, reporting it at `path` when it does not parse.
pub(super) fn quantity(e: &mut Errors, text: &str, path: &str) -> Option<ParsedQuantity> {
    match parse_quantity(text) {
        Ok(value) => Some(value),
        Err(error) => {
            let message = format!(
                "not a quantity ({}): write e.g. 500m, 128Mi, 1.5Gi or 2",
                error.reason
            );
            e.invalid(path, text, vec![message]);
            None
        }
    }
}

/// `ValidateResourceRequirements` (containers) and its pod-level variant.
pub(super) fn requirements(e: &mut Errors, r: &ResourceRequirements, path: &str, pod_level: bool) {
    let mut limits = HashMap::new();
    let mut cpu_or_memory = false;
    let mut hugepages = false;
    for (name, q) in r.limits.iter().flatten() {
        let lp = at(&at(path, "limits"), name);
        resource_name(e, name, &lp, pod_level);
        if let Some(value) = quantity(e, &q.0, &lp) {
            if value.is_negative() {
                e.invalid(&lp, &q.0, vec!["must be greater than or equal to 0".into()]);
            }
            limits.insert(name.as_str(), (value, q.0.as_str()));
        }
        cpu_or_memory |= name == "cpu" || name == "memory";
        hugepages |= name.starts_with("hugepages-");
    }
    for (name, q) in r.requests.iter().flatten() {
        let rp = at(&at(path, "requests"), name);
        resource_name(e, name, &rp, pod_level);
        cpu_or_memory |= name == "cpu" || name == "memory";
        hugepages |= name.starts_with("hugepages-");
        let Some(value) = quantity(e, &q.0, &rp) else {
            continue;
        };
        if value.is_negative() {
            e.invalid(&rp, &q.0, vec!["must be greater than or equal to 0".into()]);
        }
        // Hugepages and extended resources cannot be overcommitted: request = limit.
        let overcommit = !name.starts_with("hugepages-") && !name.contains('/');
        match limits.get(name.as_str()) {
            Some((limit, text)) if !overcommit && value != *limit => {
                e.invalid(
                    &rp,
                    &q.0,
                    vec![format!("must be equal to {name} limit of {text}")],
                );
            }
            Some((limit, text)) if value > *limit => {
                e.invalid(
                    &rp,
                    &q.0,
                    vec![format!(
                        "must be less than or equal to {name} limit of {text}"
                    )],
                );
            }
            None if !overcommit => {
                e.add(
                    at(&at(path, "limits"), name),
                    "required value: limit must be set for non overcommitable resources",
                );
            }
            _ => {}
        }
    }
    if hugepages && !cpu_or_memory {
        e.add(path, "HugePages require cpu or memory");
    }
    if r.claims.as_ref().is_some_and(|c| !c.is_empty()) {
        e.unsupported_by_podrun(&at(path, "claims"), "dynamic resource allocation");
    }
}

/// `validateContainerResourceName`, or the pod-level list (cpu, memory, hugepages).
fn resource_name(e: &mut Errors, name: &str, path: &str, pod_level: bool) {
    let standard = matches!(name, "cpu" | "memory") || name.starts_with("hugepages-");
    if pod_level {
        if !standard {
            e.invalid(
                path,
                name,
                vec![
                    "must be a supported pod-level resource: cpu, memory or hugepages-<size>"
                        .into(),
                ],
            );
        }
    } else if !name.contains('/') {
        if !standard && name != "ephemeral-storage" {
            e.invalid(
                path,
                name,
                vec!["must be a standard resource for containers".into()],
            );
        }
    } else {
        e.invalid(path, name, qualified_name(name));
        if !name.contains("kubernetes.io/") {
            e.unsupported_by_podrun(path, "an extended resource (device plugin)");
        }
    }
}

pub(super) fn probe(e: &mut Errors, p: &Probe, path: &str, kind: &str) {
    handler(
        e,
        path,
        [
            (
                "exec",
                p.exec
                    .as_ref()
                    .map(|x| x.command.as_ref().is_none_or(|c| c.is_empty())),
            ),
            ("httpGet", p.http_get.as_ref().map(|_| false)),
            ("tcpSocket", p.tcp_socket.as_ref().map(|_| false)),
            ("grpc", p.grpc.as_ref().map(|_| false)),
        ],
    );
    if let Some(http) = &p.http_get {
        http_get(e, http, &at(path, "httpGet"));
    }
    if let Some(tcp) = &p.tcp_socket {
        port_num_or_name(e, &tcp.port, &at(path, "tcpSocket.port"));
    }
    if let Some(grpc) = &p.grpc {
        e.range(&at(path, "grpc.port"), grpc.port.into(), 1, 65535);
    }
    for (key, value) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        e.non_negative(&at(path, key), value.map(i64::from));
    }
    if let Some(grace) = p.termination_grace_period_seconds {
        if kind == "readinessProbe" {
            e.add(
                at(path, "terminationGracePeriodSeconds"),
                "must not be set for readinessProbes",
            );
        } else if grace <= 0 {
            e.add(
                at(path, "terminationGracePeriodSeconds"),
                format!("must be greater than 0, got {grace}"),
            );
        }
    }
    // Zero is defaulted to 1; anything else is meaningless for these probes.
    if kind != "readinessProbe" {
        if let Some(threshold) = p.success_threshold.filter(|t| *t > 1) {
            e.add(
                at(path, "successThreshold"),
                format!("must be 1, got {threshold}"),
            );
        }
    }
}

/// `validateHandler`: exactly one handler; each entry is (field, Some(exec without command)).
fn handler<const N: usize>(e: &mut Errors, path: &str, handlers: [(&str, Option<bool>); N]) {
    let mut count = 0;
    for (key, present) in handlers {
        let Some(empty_exec) = present else { continue };
        count += 1;
        if count > 1 {
            e.add(at(path, key), "may not specify more than 1 handler type");
        } else if empty_exec {
            e.required(&at(path, "exec.command"));
        }
    }
    if count == 0 {
        e.add(path, "must specify a handler type");
    }
}

fn http_get(e: &mut Errors, http: &HTTPGetAction, path: &str) {
    port_num_or_name(e, &http.port, &at(path, "port"));
    if let Some(scheme) = set(&http.scheme) {
        e.one_of(&at(path, "scheme"), scheme, &["HTTP", "HTTPS"]);
    }
    for (i, header) in http.http_headers.iter().flatten().enumerate() {
        let hp = at(&index(path, "httpHeaders", i), "name");
        e.invalid(&hp, &header.name, http_header_name(&header.name));
    }
}

fn port_num_or_name(e: &mut Errors, port: &IntOrString, path: &str) {
    match port {
        IntOrString::Int(n) => e.range(path, (*n).into(), 1, 65535),
        IntOrString::String(name) => e.invalid(path, name, port_name(name)),
    }
}

fn lifecycle_hooks(e: &mut Errors, lifecycle: &Lifecycle, path: &str, grace_period: i64) {
    for (key, hook) in [
        ("postStart", &lifecycle.post_start),
        ("preStop", &lifecycle.pre_stop),
    ] {
        if let Some(hook) = hook {
            lifecycle_handler(e, hook, &at(path, key), grace_period);
        }
    }
}

fn lifecycle_handler(e: &mut Errors, h: &LifecycleHandler, path: &str, grace_period: i64) {
    handler(
        e,
        path,
        [
            (
                "exec",
                h.exec
                    .as_ref()
                    .map(|x| x.command.as_ref().is_none_or(|c| c.is_empty())),
            ),
            ("httpGet", h.http_get.as_ref().map(|_| false)),
            ("tcpSocket", h.tcp_socket.as_ref().map(|_| false)),
            ("sleep", h.sleep.as_ref().map(|_| false)),
        ],
    );
    if let Some(http) = &h.http_get {
        http_get(e, http, &at(path, "httpGet"));
    }
    if let Some(tcp) = &h.tcp_socket {
        port_num_or_name(e, &tcp.port, &at(path, "tcpSocket.port"));
    }
    if let Some(sleep) = &h.sleep {
        if sleep.seconds < 0 || sleep.seconds > grace_period {
            e.add(
                at(path, "sleep.seconds"),
                format!("must be non-negative and less than terminationGracePeriodSeconds ({grace_period}), got {}", sleep.seconds),
            );
        }
    }
}
