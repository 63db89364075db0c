//! Which addresses a pod has, as kubelet decides them from what the runtime
//! reports of its sandbox and the node's own addresses.

use k8s_openapi::api::core::v1::Pod;
use std::net::IpAddr;

/// The pod's IPs (`status.podIP` is the first, `status.podIPs` all of them,
/// and the downward API's `status.podIP(s)` the same), from the addresses the
/// runtime reports of its sandbox (`sandbox_ips`, its primary first) and the
/// node's (`node_ips`, its primary first):
///
/// - a `hostNetwork` pod has the node's addresses (kubelet's
///   generateAPIPodStatus, pkg/kubelet/kubelet_pods.go: "HostNetwork Pods
///   inherit the node IPs as PodIPs"; kubelet.go's SyncPod then hands the same
///   to the containers' environment);
/// - any other pod has its sandbox's, ordered as kubelet's `sortPodIPs` orders
///   them: the first of the node's primary family (IPv4 when the node has
///   none), then the first of the other family; at most one of each.
pub fn pod_ips(pod: &Pod, sandbox_ips: &[IpAddr], node_ips: &[IpAddr]) -> Vec<IpAddr> {
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    if host_network {
        return node_ips.to_vec();
    }
    let primary_v4 = node_ips.first().is_none_or(IpAddr::is_ipv4);
    let first = |v4: bool| sandbox_ips.iter().find(|ip| ip.is_ipv4() == v4).copied();
    [first(primary_v4), first(!primary_v4)]
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(host_network: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"hostNetwork": host_network, "containers": [{"name": "c"}]}
        }))
        .unwrap()
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_pod_has_its_sandboxs_addresses_one_per_family_the_nodes_family_first() {
        // (what, the sandbox's IPs, the node's, the pod's)
        type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            ("none yet", &[], &["192.0.2.2"], &[]),
            ("one", &["10.88.0.5"], &["192.0.2.2"], &["10.88.0.5"]),
            (
                "dual stack, runtime's order kept on an IPv4 node",
                &["10.88.0.5", "fd00::5"],
                &["192.0.2.2"],
                &["10.88.0.5", "fd00::5"],
            ),
            (
                "IPv4 first on an IPv4 node",
                &["fd00::5", "10.88.0.5"],
                &["192.0.2.2", "fd00::2"],
                &["10.88.0.5", "fd00::5"],
            ),
            (
                "IPv6 first on an IPv6 node",
                &["10.88.0.5", "fd00::5"],
                &["fd00::2"],
                &["fd00::5", "10.88.0.5"],
            ),
            (
                "a node without addresses counts as IPv4",
                &["fd00::5", "10.88.0.5"],
                &[],
                &["10.88.0.5", "fd00::5"],
            ),
            (
                "one per family",
                &["10.88.0.5", "10.88.0.6", "fd00::5", "fd00::6"],
                &["192.0.2.2"],
                &["10.88.0.5", "fd00::5"],
            ),
            ("IPv6 only", &["fd00::5"], &["192.0.2.2"], &["fd00::5"]),
        ];
        for (what, sandbox, node, want) in cases {
            assert_eq!(
                pod_ips(&pod(false), &ips(sandbox), &ips(node)),
                ips(want),
                "{what}"
            );
        }
    }

    #[test]
    fn a_host_network_pod_has_the_nodes_addresses() {
        let node = ips(&["192.0.2.2", "fd00::2"]);
        assert_eq!(pod_ips(&pod(true), &[], &node), node);
        // The runtime reports none for it; if it did, the node's still win.
        assert_eq!(pod_ips(&pod(true), &ips(&["10.88.0.5"]), &node), node);
        assert_eq!(pod_ips(&pod(true), &[], &[]), Vec::<IpAddr>::new());
    }
}
