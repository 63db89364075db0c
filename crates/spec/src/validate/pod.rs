//! `ValidatePodSpec`: the pod-wide rules, DNS and security contexts
//! (pkg/apis/core/validation/validation.go).

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{
    Container, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext, Volume,
};

use super::container::{container, requirements};
use super::names::{dns1123_label, dns1123_subdomain, dns_search, ip, qualified_name, sysctl_name};
use super::volume::{local_descending_path, volumes};
use super::{at, index, set, Errors, INT32_MAX};
use crate::defaults::DEFAULT_TERMINATION_GRACE_PERIOD;

/// What the containers of a pod may refer to.
pub(super) struct Pod<'a> {
    pub(super) volumes: HashMap<&'a str, &'a Volume>,
    pub(super) containers: &'a HashSet<&'a str>,
    pub(super) grace_period: i64,
}

/// Which rules a container gets: an init container that sets a restartPolicy (which
/// must be Always) is a sidecar and may have probes and hooks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Regular,
    Init,
    Sidecar,
}

pub(super) fn pod_spec(e: &mut Errors, spec: &PodSpec, path: &str) {
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let containers = spec
        .containers
        .iter()
        .chain(init)
        .map(|c| c.name.as_str())
        .collect();
    let volume_list = spec.volumes.as_deref().unwrap_or_default();
    let pod = Pod {
        volumes: volumes(e, volume_list, &at(path, "volumes"), &containers),
        containers: &containers,
        grace_period: spec
            .termination_grace_period_seconds
            .unwrap_or(DEFAULT_TERMINATION_GRACE_PERIOD),
    };
    if spec.containers.is_empty() {
        e.required(&at(path, "containers"));
    }
    let mut names = HashSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        container(
            e,
            c,
            &index(path, "containers", i),
            &pod,
            Kind::Regular,
            &mut names,
        );
    }
    for (i, c) in init.iter().enumerate() {
        let kind = if c.restart_policy.is_some() {
            Kind::Sidecar
        } else {
            Kind::Init
        };
        container(
            e,
            c,
            &index(path, "initContainers", i),
            &pod,
            kind,
            &mut names,
        );
    }
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|l| !l.is_empty())
    {
        e.add(at(path, "ephemeralContainers"), "cannot be set on create");
    }
    // Regular containers run together and share host ports; init containers one at a time.
    host_port_conflicts(
        e,
        spec.containers.iter().enumerate(),
        &at(path, "containers"),
    );
    for (i, c) in init.iter().enumerate() {
        host_port_conflicts(e, std::iter::once((i, c)), &at(path, "initContainers"));
    }
    if let Some(policy) = set(&spec.restart_policy) {
        e.one_of(
            &at(path, "restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        );
    }
    dns(e, spec, path);
    if spec.host_network == Some(true) {
        for (key, list) in [
            ("containers", &spec.containers[..]),
            ("initContainers", init),
        ] {
            for (i, c) in list.iter().enumerate() {
                for (j, port) in c.ports.iter().flatten().enumerate() {
                    // An unset hostPort is defaulted to containerPort (defaultHostNetworkPorts).
                    let host_port = port
                        .host_port
                        .filter(|p| *p != 0)
                        .unwrap_or(port.container_port);
                    if host_port != port.container_port {
                        let p = index(&index(path, key, i), "ports", j);
                        e.add(
                            at(&p, "containerPort"),
                            "must match `hostPort` when `hostNetwork` is true",
                        );
                    }
                }
            }
        }
    }
    if let Some(sc) = &spec.security_context {
        pod_security_context(e, sc, &at(path, "securityContext"));
    }
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        e.add(
            at(path, "shareProcessNamespace"),
            "ShareProcessNamespace and HostPID cannot both be enabled",
        );
    }
    e.non_negative(
        &at(path, "terminationGracePeriodSeconds"),
        spec.termination_grace_period_seconds,
    );
    if let Some(deadline) = spec.active_deadline_seconds {
        e.range(&at(path, "activeDeadlineSeconds"), deadline, 1, INT32_MAX);
    }
    for key in ["hostname", "subdomain"] {
        let value = if key == "hostname" {
            &spec.hostname
        } else {
            &spec.subdomain
        };
        if let Some(v) = set(value) {
            e.invalid(&at(path, key), v, dns1123_label(v));
        }
    }
    for (key, value) in [
        ("serviceAccountName", &spec.service_account_name),
        ("nodeName", &spec.node_name),
    ] {
        if let Some(v) = set(value) {
            e.invalid(&at(path, key), v, dns1123_subdomain(v));
        }
    }
    super::labels(e, spec.node_selector.as_ref(), &at(path, "nodeSelector"));
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        let p = index(path, "hostAliases", i);
        e.invalid(&at(&p, "ip"), &alias.ip, ip(&alias.ip));
        for (j, host) in alias.hostnames.iter().flatten().enumerate() {
            e.invalid(&index(&p, "hostnames", j), host, dns1123_subdomain(host));
        }
    }
    for (i, gate) in spec.readiness_gates.iter().flatten().enumerate() {
        let p = at(&index(path, "readinessGates", i), "conditionType");
        e.invalid(
            &p,
            &gate.condition_type,
            qualified_name(&gate.condition_type),
        );
    }
    if let Some(policy) = spec.preemption_policy.as_deref() {
        e.one_of(
            &at(path, "preemptionPolicy"),
            policy,
            &["Never", "PreemptLowerPriority"],
        );
    }
    if let Some(os) = &spec.os {
        e.one_of(&at(path, "os.name"), &os.name, &["linux", "windows"]);
        if os.name == "windows" {
            e.unsupported_by_podrun(&at(path, "os.name"), "a windows pod");
        }
    }
    if spec.resource_claims.as_ref().is_some_and(|c| !c.is_empty()) {
        e.unsupported_by_podrun(&at(path, "resourceClaims"), "dynamic resource allocation");
    }
    if let Some(resources) = &spec.resources {
        requirements(e, resources, &at(path, "resources"), true);
    }
}

/// `AccumulateUniqueHostPorts`: one hostPort per protocol and host IP.
fn host_port_conflicts<'a>(
    e: &mut Errors,
    containers: impl Iterator<Item = (usize, &'a Container)>,
    path: &str,
) {
    let mut seen = HashSet::new();
    for (i, c) in containers {
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let Some(host_port) = port.host_port.filter(|p| *p != 0) else {
                continue;
            };
            let protocol = set(&port.protocol).unwrap_or("TCP");
            let key = format!(
                "{protocol}/{}/{host_port}",
                port.host_ip.as_deref().unwrap_or("")
            );
            if !seen.insert(key.clone()) {
                let p = at(&index(&format!("{path}[{i}]"), "ports", j), "hostPort");
                e.add(p, format!("duplicate value {key:?}"));
            }
        }
    }
}

pub(super) fn security_context(e: &mut Errors, sc: &SecurityContext, path: &str) {
    for (key, id) in [
        ("runAsUser", sc.run_as_user),
        ("runAsGroup", sc.run_as_group),
    ] {
        if let Some(id) = id {
            e.range(&at(path, key), id, 0, INT32_MAX);
        }
    }
    if sc.allow_privilege_escalation == Some(false) {
        if sc.privileged == Some(true) {
            e.add(
                path,
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            );
        }
        let adds = sc.capabilities.as_ref().and_then(|c| c.add.as_ref());
        if adds.is_some_and(|a| a.iter().any(|c| c == "CAP_SYS_ADMIN")) {
            e.add(path, "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN");
        }
    }
    if let Some(mount) = sc.proc_mount.as_deref() {
        e.one_of(&at(path, "procMount"), mount, &["Default", "Unmasked"]);
    }
    profiles(
        e,
        sc.seccomp_profile.as_ref(),
        sc.app_armor_profile
            .as_ref()
            .map(|a| (&a.type_, &a.localhost_profile)),
        path,
    );
}

fn pod_security_context(e: &mut Errors, sc: &PodSecurityContext, path: &str) {
    for (key, id) in [
        ("runAsUser", sc.run_as_user),
        ("runAsGroup", sc.run_as_group),
        ("fsGroup", sc.fs_group),
    ] {
        if let Some(id) = id {
            e.range(&at(path, key), id, 0, INT32_MAX);
        }
    }
    for (i, group) in sc.supplemental_groups.iter().flatten().enumerate() {
        e.range(&index(path, "supplementalGroups", i), *group, 0, INT32_MAX);
    }
    let enums: [(&str, &Option<String>, &[&str]); 3] = [
        (
            "fsGroupChangePolicy",
            &sc.fs_group_change_policy,
            &["Always", "OnRootMismatch"],
        ),
        (
            "supplementalGroupsPolicy",
            &sc.supplemental_groups_policy,
            &["Merge", "Strict"],
        ),
        (
            "seLinuxChangePolicy",
            &sc.se_linux_change_policy,
            &["MountOption", "Recursive"],
        ),
    ];
    for (key, value, allowed) in enums {
        if let Some(value) = value {
            e.one_of(&at(path, key), value, allowed);
        }
    }
    profiles(
        e,
        sc.seccomp_profile.as_ref(),
        sc.app_armor_profile
            .as_ref()
            .map(|a| (&a.type_, &a.localhost_profile)),
        path,
    );
    let mut names = HashSet::new();
    for (i, sysctl) in sc.sysctls.iter().flatten().enumerate() {
        let np = at(&index(path, "sysctls", i), "name");
        if sysctl.name.is_empty() {
            e.required(&np);
        } else {
            e.invalid(&np, &sysctl.name, sysctl_name(&sysctl.name));
            if !names.insert(sysctl.name.as_str()) {
                e.add(np, format!("duplicate value {:?}", sysctl.name));
            }
        }
    }
}

/// Seccomp and AppArmor profiles: a localhost profile exactly when the type is Localhost.
fn profiles(
    e: &mut Errors,
    seccomp: Option<&SeccompProfile>,
    app_armor: Option<(&String, &Option<String>)>,
    path: &str,
) {
    let seccomp = seccomp.map(|s| ("seccompProfile", &s.type_, &s.localhost_profile));
    let app_armor = app_armor.map(|(t, l)| ("appArmorProfile", t, l));
    for (key, kind, localhost) in seccomp.into_iter().chain(app_armor) {
        let pp = at(path, key);
        e.one_of(
            &at(&pp, "type"),
            kind,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        );
        match (kind.as_str(), set(localhost)) {
            ("Localhost", None) => e.add(
                at(&pp, "localhostProfile"),
                "must be set when the profile type is Localhost",
            ),
            ("Localhost", Some(profile)) if key == "seccompProfile" => {
                local_descending_path(e, &at(&pp, "localhostProfile"), profile)
            }
            ("Localhost", Some(_)) => {}
            (_, Some(_)) => e.add(
                at(&pp, "localhostProfile"),
                "can only be set when the profile type is Localhost",
            ),
            (_, None) => {}
        }
    }
}

/// `validateDNSPolicy` and `validatePodDNSConfig` (with the expanded limits, GA since 1.28).
fn dns(e: &mut Errors, spec: &PodSpec, path: &str) {
    let policy = set(&spec.dns_policy);
    if let Some(policy) = policy {
        e.one_of(
            &at(path, "dnsPolicy"),
            policy,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        );
    }
    let cp = at(path, "dnsConfig");
    let config = spec.dns_config.as_ref();
    let nameservers = config
        .and_then(|c| c.nameservers.as_deref())
        .unwrap_or_default();
    if policy == Some("None") {
        if config.is_none() {
            return e.add(
                cp,
                "required value: must provide `dnsConfig` when `dnsPolicy` is None",
            );
        }
        if nameservers.is_empty() {
            return e.add(
                at(&cp, "nameservers"),
                "required value: must provide at least one DNS nameserver when `dnsPolicy` is None",
            );
        }
    }
    let Some(config) = config else { return };
    if nameservers.len() > 3 {
        e.add(
            at(&cp, "nameservers"),
            "must not have more than 3 nameservers",
        );
    }
    for (i, server) in nameservers.iter().enumerate() {
        e.invalid(&index(&cp, "nameservers", i), server, ip(server));
    }
    let searches = config.searches.as_deref().unwrap_or_default();
    if searches.len() > 32 {
        e.add(
            at(&cp, "searches"),
            "must not have more than 32 search paths",
        );
    }
    if searches.join(" ").len() > 2048 {
        e.add(
            at(&cp, "searches"),
            "must not have more than 2048 characters (including spaces) in the search list",
        );
    }
    for (i, search) in searches.iter().enumerate() {
        e.invalid(&index(&cp, "searches", i), search, dns_search(search));
    }
    for (i, option) in config.options.iter().flatten().enumerate() {
        if set(&option.name).is_none() {
            e.add(
                index(&cp, "options", i),
                "required value: must not be empty",
            );
        }
    }
}
