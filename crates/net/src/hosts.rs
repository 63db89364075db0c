//! The contents of a pod's `/etc/hosts` and `/etc/hostname`. Pure text: where the
//! files go and whether a container gets them is the caller's decision.

use std::net::IpAddr;

/// kubelet's header of a hosts file it writes for a pod with its own network.
pub const MANAGED_HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
/// kubelet's header of a hosts file copied from the node (`hostNetwork: true`).
pub const MANAGED_HOSTS_HEADER_HOST_NETWORK: &str =
    "# Kubernetes-managed hosts file (host network).\n";

/// `/etc/hosts` for a pod with its own network namespace, as kubelet writes it
/// (pkg/kubelet/kubelet_pods.go `managedHostsFileContent`): the header, localhost and
/// the IPv6 names, one line for each of the pod's IPs in order
/// (`<ip>\t<hostname>.<subdomain fqdn>\t<hostname>` with a subdomain, else
/// `<ip>\t<hostname>`; none without an IP), then the `hostAliases` after a blank
/// line and their own comment, one line per hostname.
pub fn hosts_file(
    hostname: &str,
    subdomain_fqdn: Option<&str>,
    pod_ips: &[IpAddr],
    host_aliases: &[(String, Vec<String>)],
) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        match subdomain_fqdn.filter(|d| !d.is_empty()) {
            Some(domain) => out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    out.push_str(&host_aliases_section(host_aliases));
    out
}

/// `/etc/hosts` for a `hostNetwork` pod: the node's file under kubelet's host-network
/// header, then the `hostAliases` section (`nodeHostsFileContent`).
pub fn host_network_hosts_file(node_hosts: &str, host_aliases: &[(String, Vec<String>)]) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER_HOST_NETWORK);
    out.push_str(node_hosts);
    out.push_str(&host_aliases_section(host_aliases));
    out
}

fn host_aliases_section(host_aliases: &[(String, Vec<String>)]) -> String {
    if host_aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for (ip, hostnames) in host_aliases {
        for hostname in hostnames {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        }
    }
    out
}

/// `/etc/hostname`: the name and a newline, as containerd writes it.
pub fn hostname_file(hostname: &str) -> String {
    format!("{hostname}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER_AND_LOCAL: &str = "# Kubernetes-managed hosts file.\n\
        127.0.0.1\tlocalhost\n\
        ::1\tlocalhost ip6-localhost ip6-loopback\n\
        fe00::0\tip6-localnet\n\
        fe00::0\tip6-mcastprefix\n\
        fe00::1\tip6-allnodes\n\
        fe00::2\tip6-allrouters\n";

    fn aliases() -> Vec<(String, Vec<String>)> {
        vec![
            (
                "10.1.2.3".into(),
                vec!["foo.local".into(), "bar.local".into()],
            ),
            ("10.1.2.4".into(), vec!["baz".into()]),
        ]
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn hosts_file_has_kubelets_managed_layout() {
        assert_eq!(
            hosts_file("web", None, &ips(&["10.88.0.5"]), &[]),
            format!("{HEADER_AND_LOCAL}10.88.0.5\tweb\n")
        );
        assert_eq!(
            hosts_file(
                "web-0",
                Some("nginx.default.svc.cluster.local"),
                &ips(&["10.88.0.5"]),
                &[]
            ),
            format!("{HEADER_AND_LOCAL}10.88.0.5\tweb-0.nginx.default.svc.cluster.local\tweb-0\n")
        );
        // No IP (yet): no line for the pod; an empty subdomain counts as none.
        assert_eq!(hosts_file("web", Some(""), &[], &[]), HEADER_AND_LOCAL);
        assert_eq!(
            hosts_file("web", Some(""), &ips(&["10.0.0.1"]), &[]),
            format!("{HEADER_AND_LOCAL}10.0.0.1\tweb\n")
        );
    }

    /// kubelet writes one line per pod IP, in the order of `status.podIPs`.
    #[test]
    fn hosts_file_has_a_line_per_pod_ip() {
        assert_eq!(
            hosts_file("web", None, &ips(&["10.88.0.5", "fd00::5"]), &[]),
            format!("{HEADER_AND_LOCAL}10.88.0.5\tweb\nfd00::5\tweb\n")
        );
        assert_eq!(
            hosts_file(
                "web-0",
                Some("nginx.default.svc.cluster.local"),
                &ips(&["10.88.0.5", "fd00::5"]),
                &[]
            ),
            format!(
                "{HEADER_AND_LOCAL}10.88.0.5\tweb-0.nginx.default.svc.cluster.local\tweb-0\n\
                 fd00::5\tweb-0.nginx.default.svc.cluster.local\tweb-0\n"
            )
        );
    }

    #[test]
    fn hosts_file_appends_host_aliases() {
        assert_eq!(
            hosts_file("web", None, &ips(&["10.88.0.5"]), &aliases()),
            format!(
                "{HEADER_AND_LOCAL}10.88.0.5\tweb\n\n# Entries added by HostAliases.\n\
                 10.1.2.3\tfoo.local\n10.1.2.3\tbar.local\n10.1.2.4\tbaz\n"
            )
        );
        assert_eq!(
            host_network_hosts_file("127.0.0.1 localhost\n", &aliases()[1..]),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\n\
             # Entries added by HostAliases.\n10.1.2.4\tbaz\n"
        );
        assert_eq!(
            host_network_hosts_file("x\n", &[]),
            "# Kubernetes-managed hosts file (host network).\nx\n"
        );
    }

    #[test]
    fn hostname_file_is_the_name_and_a_newline() {
        assert_eq!(hostname_file("web-0"), "web-0\n");
    }
}
