//! Pod sysctls: kubelet's safe set, the node's allowed unsafe ones, nothing else
//! (pkg/kubelet/sysctl/safe_sysctls.go, allowlist.go).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::ConfigError;

/// The sysctls kubelet allows without `--allowed-unsafe-sysctls`: namespaced, and
/// isolated from other pods (the Pod Security Standards' baseline list).
pub const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// The namespace a sysctl belongs to (component-helpers/node/util/sysctl namespace.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Namespace {
    Ipc,
    Net,
    Uts,
    None,
}

fn namespace_of(name: &str) -> Namespace {
    match name {
        "kernel.sem" => Namespace::Ipc,
        "kernel.hostname" | "kernel.domainname" => Namespace::Uts,
        _ if name.starts_with("kernel.shm")
            || name.starts_with("kernel.msg")
            || name.starts_with("fs.mqueue.") =>
        {
            Namespace::Ipc
        }
        _ if name.starts_with("net.") => Namespace::Net,
        _ => Namespace::None,
    }
}

/// kubelet's NormalizeName: `net/ipv4/conf/eno2.100/rp_filter` becomes
/// `net.ipv4.conf.eno2/100.rp_filter` (slashes and dots swap when the first separator
/// is a slash).
pub fn normalize(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}

fn allowed(name: &str, unsafe_allowed: &[String]) -> bool {
    SAFE_SYSCTLS.contains(&name)
        || unsafe_allowed.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => normalize(p) == name,
        })
}

/// The pod's sysctls (normalized names), validated as kubelet's sysctl admission does:
/// each must be safe or allowed by the node, and namespaced in a namespace the pod does
/// not share with the host (`"net.ipv4.tcp_syncookies" not allowed with host net
/// enabled`). (The runtime adds containerd's unprivileged-port and ping defaults.)
pub fn pod_sysctls(
    pod: &Pod,
    unsafe_allowed: &[String],
) -> Result<BTreeMap<String, String>, ConfigError> {
    let spec = pod.spec.as_ref();
    let host_net = spec.and_then(|s| s.host_network).unwrap_or(false);
    let host_ipc = spec.and_then(|s| s.host_ipc).unwrap_or(false);
    let mut out = BTreeMap::new();
    let sysctls = spec
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.sysctls.as_ref());
    for sysctl in sysctls.into_iter().flatten() {
        let name = normalize(&sysctl.name);
        let refuse = |reason: &str| ConfigError::ForbiddenSysctl {
            name: name.clone(),
            reason: reason.to_string(),
        };
        if !allowed(&name, unsafe_allowed) {
            return Err(refuse(
                "not in the safe set nor in the node's allowed unsafe sysctls",
            ));
        }
        match namespace_of(&name) {
            Namespace::Net if host_net => return Err(refuse("not allowed with host net enabled")),
            Namespace::Ipc if host_ipc => return Err(refuse("not allowed with host ipc enabled")),
            Namespace::Uts if host_net => return Err(refuse("not allowed with host uts enabled")),
            Namespace::None => {
                return Err(refuse("not namespaced: it would change the whole node"))
            }
            _ => {}
        }
        out.insert(name, sysctl.value.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec, Sysctl};

    fn pod(sysctls: &[(&str, &str)], host_net: bool, host_ipc: bool) -> Pod {
        Pod {
            spec: Some(PodSpec {
                host_network: Some(host_net),
                host_ipc: Some(host_ipc),
                security_context: Some(PodSecurityContext {
                    sysctls: Some(
                        sysctls
                            .iter()
                            .map(|(n, v)| Sysctl {
                                name: n.to_string(),
                                value: v.to_string(),
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn normalize_swaps_separators() {
        assert_eq!(
            normalize("net/ipv4/conf/eno2.100/rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(
            normalize("net.ipv4.conf.eno2/100.rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(
            normalize("kernel/shm_rmid_forced"),
            "kernel.shm_rmid_forced"
        );
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn sysctl_rules() {
        let unsafe_allowed = vec![
            "net.core.somaxconn".to_string(),
            "kernel.msg*".to_string(),
            "vm.swappiness".to_string(),
        ];
        let ok = |sysctls: &[(&str, &str)], net: bool, ipc: bool| {
            pod_sysctls(&pod(sysctls, net, ipc), &unsafe_allowed)
        };
        for name in SAFE_SYSCTLS {
            let got = ok(&[(name, "1")], false, false).unwrap();
            assert_eq!(got.get(name).map(String::as_str), Some("1"), "{name}");
        }
        assert!(ok(&[("kernel/shm_rmid_forced", "1")], false, false)
            .unwrap()
            .contains_key("kernel.shm_rmid_forced"));
        assert!(ok(&[("net.core.somaxconn", "1024")], false, false).is_ok());
        assert!(ok(&[("kernel.msgmax", "1")], false, false).is_ok());
        let refused: [(&str, bool, bool, &str); 6] = [
            ("net.core.rmem_max", false, false, "not in the safe set"),
            ("kernel.panic", false, false, "not in the safe set"),
            ("net.ipv4.tcp_syncookies", true, false, "host net"),
            ("kernel.shm_rmid_forced", false, true, "host ipc"),
            ("kernel.msgmax", false, true, "host ipc"),
            ("vm.swappiness", false, false, "not namespaced"),
        ];
        for (name, net, ipc, why) in refused {
            let err = ok(&[(name, "1")], net, ipc).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(name) && msg.contains(why), "{name}: {msg}");
        }
    }
}
