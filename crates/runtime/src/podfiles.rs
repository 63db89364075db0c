//! The files and mounts a pod's containers share: `/etc/hosts` in kubelet's managed
//! format, `/etc/resolv.conf` by the pod's DNS policy, `/etc/hostname`, the pod's
//! `/dev/shm`, and tmpfs for `emptyDir: {medium: Memory}`.
//!
//! The contents are pure functions of their inputs; only [`mount_tmpfs`],
//! [`mount_shm`] and [`unmount`] touch the system.

use std::path::Path;

/// The size of a pod's `/dev/shm` (containerd's default, `size=65536k`).
pub const SHM_SIZE: u64 = 64 << 20;

/// kubelet's header of a hosts file it writes for a pod with its own network.
pub const MANAGED_HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
/// kubelet's header of a hosts file copied from the node (`hostNetwork: true`).
pub const MANAGED_HOSTS_HEADER_HOST_NETWORK: &str =
    "# Kubernetes-managed hosts file (host network).\n";

/// At most this many nameservers reach resolv.conf (the API's `MaxDNSNameservers`,
/// glibc's `MAXNS`).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains (`MaxDNSSearchPathsExpanded`).
pub const MAX_SEARCHES: usize = 32;
/// At most this many characters on the search line (`MaxDNSSearchListCharsExpanded`).
pub const MAX_SEARCH_CHARS: usize = 2048;
/// Longer search domains are dropped: some resolvers (glibc 2.28) abort on them.
const MAX_SEARCH_DOMAIN_LEN: usize = 253;

/// `/etc/hosts` for a pod with its own network namespace, as kubelet writes it
/// (pkg/kubelet/kubelet_pods.go `managedHostsFileContent`): the header, localhost and
/// the IPv6 names, the pod's own line (`<ip>\t<hostname>.<subdomain fqdn>\t<hostname>`
/// with a subdomain, else `<ip>\t<hostname>`; none without an IP), then the
/// `hostAliases` after a blank line and their own comment, one line per hostname.
pub fn hosts_file(
    hostname: &str,
    subdomain_fqdn: Option<&str>,
    pod_ip: Option<&str>,
    host_aliases: &[(String, Vec<String>)],
) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    if let Some(ip) = pod_ip.filter(|ip| !ip.is_empty()) {
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

/// A pod's `spec.dnsConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsConfig {
    /// Nameserver addresses, added after the policy's.
    pub nameservers: Vec<String>,
    /// Search domains, added after the policy's.
    pub searches: Vec<String>,
    /// Resolver options; one with the name of an existing option replaces it.
    pub options: Vec<DnsOption>,
}

/// One resolver option: `ndots:2` is `ndots` with value `2`; `edns0` has none.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsOption {
    /// The option's name.
    pub name: String,
    /// Its value, if it takes one.
    pub value: Option<String>,
}

/// `/etc/resolv.conf` for a pod, following kubelet's `GetPodDNS`
/// (pkg/kubelet/network/dns/dns.go) on a node without cluster DNS, and containerd's
/// rendering of the result (`search`, then `nameserver` lines, then `options`):
///
/// - `ClusterFirst` (the default, also `""`) and `ClusterFirstWithHostNet` fall back
///   to `Default`, as kubelet does when it has no cluster DNS configured;
/// - `Default`: the host's nameservers, search line and options (`host_resolv`);
/// - `None`: nothing but `dns_config`, which must then name a nameserver.
///
/// `dns_config` is appended: nameservers and searches without duplicates, options by
/// name (a pod's option replaces the host's of the same name). Then kubelet's limits:
/// 3 nameservers, 32 search domains of at most 253 characters, 2048 characters in all.
/// When nothing at all results, the host's file is used as it is (containerd copies it).
pub fn resolv_conf(
    policy: &str,
    host_resolv: &str,
    dns_config: Option<&DnsConfig>,
) -> Result<String, String> {
    let mut resolver = match policy {
        "" | "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" => {
            parse_resolv_conf(host_resolv)?
        }
        "None" => {
            if dns_config.is_none_or(|c| c.nameservers.is_empty()) {
                return Err(
                    "dnsPolicy None needs dnsConfig with at least one nameserver".to_string(),
                );
            }
            Resolver::default()
        }
        other => return Err(format!("unknown dnsPolicy {other:?}")),
    };
    if let Some(config) = dns_config {
        resolver.append(config);
    }
    resolver.fit_limits();
    let text = resolver.render();
    Ok(if text.is_empty() {
        host_resolv.to_string()
    } else {
        text
    })
}

/// The parts of a resolv.conf kubelet keeps.
#[derive(Debug, Default, PartialEq, Eq)]
struct Resolver {
    servers: Vec<String>,
    searches: Vec<String>,
    /// `(name, value)`; an empty value is written as the bare name.
    options: Vec<(String, String)>,
}

/// kubelet's `parseResolvConf`: `nameserver` lines accumulate, the last `search` and
/// `options` lines win, `#` lines are comments. Search domains lose a trailing dot and
/// `.` itself is dropped, so one domain is not counted twice against the limits.
fn parse_resolv_conf(text: &str) -> Result<Resolver, String> {
    let mut resolver = Resolver::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first().copied() {
            Some("nameserver") => match fields.get(1) {
                Some(server) => resolver.servers.push(server.to_string()),
                None => return Err("host resolv.conf: nameserver line without an address".into()),
            },
            Some("search") => {
                resolver.searches = fields[1..]
                    .iter()
                    .filter(|s| **s != ".")
                    .map(|s| s.strip_suffix('.').unwrap_or(s).to_string())
                    .collect();
            }
            Some("options") => {
                resolver.options = fields[1..].iter().map(|o| split_option(o)).collect();
            }
            _ => {}
        }
    }
    Ok(resolver)
}

fn split_option(option: &str) -> (String, String) {
    match option.split_once(':') {
        Some((name, value)) => (name.to_string(), value.to_string()),
        None => (option.to_string(), String::new()),
    }
}

impl Resolver {
    /// kubelet's `appendDNSConfig`. Unlike kubelet, whose map gives the options in
    /// random order, existing options keep their place and new ones follow in order.
    fn append(&mut self, config: &DnsConfig) {
        self.servers.extend(config.nameservers.iter().cloned());
        self.servers = without_duplicates(std::mem::take(&mut self.servers));
        self.searches.extend(config.searches.iter().cloned());
        self.searches = without_duplicates(std::mem::take(&mut self.searches));
        let mut options: Vec<(String, String)> = Vec::new();
        let pod_options = config
            .options
            .iter()
            .map(|o| (o.name.clone(), o.value.clone().unwrap_or_default()));
        for (name, value) in self.options.drain(..).chain(pod_options) {
            match options.iter_mut().find(|(n, _)| *n == name) {
                Some(existing) => existing.1 = value,
                None => options.push((name, value)),
            }
        }
        self.options = options;
    }

    /// kubelet's `formDNSConfigFitsLimits` (it also warns the user with an event).
    fn fit_limits(&mut self) {
        self.servers.truncate(MAX_NAMESERVERS);
        self.searches.truncate(MAX_SEARCHES);
        self.searches.retain(|s| s.len() <= MAX_SEARCH_DOMAIN_LEN);
        while !self.searches.is_empty() && self.searches.join(" ").len() > MAX_SEARCH_CHARS {
            self.searches.pop();
        }
    }

    /// containerd's `parseDNSOptions`.
    fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for server in &self.servers {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !self.options.is_empty() {
            let options: Vec<String> = self
                .options
                .iter()
                .map(|(name, value)| {
                    if value.is_empty() {
                        name.clone()
                    } else {
                        format!("{name}:{value}")
                    }
                })
                .collect();
            out.push_str(&format!("options {}\n", options.join(" ")));
        }
        out
    }
}

fn without_duplicates(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// The size of a memory-backed emptyDir, by kubelet's rule (pkg/volume/emptydir
/// `calculateEmptyDirMemorySize`, SizeMemoryBackedVolumes): the node's allocatable
/// memory, lowered to the pod's memory limit (its cgroup's, `pod_cgroup_limits`) and
/// then to the volume's `sizeLimit`, each only when positive and not larger. The tmpfs
/// holds pages charged to the pod, so it should not outgrow what the pod may use.
pub fn memory_empty_dir_size(
    size_limit: Option<u64>,
    pod_memory_limit: Option<i64>,
    node_memory: u64,
) -> u64 {
    let mut size = node_memory;
    if let Some(pod) = pod_memory_limit.and_then(|m| u64::try_from(m).ok()) {
        if pod > 0 && pod <= size {
            size = pod;
        }
    }
    if let Some(volume) = size_limit {
        if volume > 0 && volume <= size {
            size = volume;
        }
    }
    size
}

/// Mounts a tmpfs (`nosuid,nodev`) on `target` with root directory mode `mode` and, when
/// given, a size in bytes (the kernel rounds it up to whole pages). `Some(0)` is
/// refused: tmpfs reads `size=0` as "unlimited".
pub fn mount_tmpfs(target: &Path, size_bytes: Option<u64>, mode: u32) -> Result<(), String> {
    use rustix::mount::MountFlags;
    mount_tmpfs_with(
        target,
        size_bytes,
        mode,
        MountFlags::NOSUID | MountFlags::NODEV,
    )
}

/// Mounts a pod's `/dev/shm` on `target`: tmpfs `nosuid,nodev,noexec,mode=1777` of
/// [`SHM_SIZE`], as containerd does for a sandbox.
pub fn mount_shm(target: &Path) -> Result<(), String> {
    use rustix::mount::MountFlags;
    mount_tmpfs_with(
        target,
        Some(SHM_SIZE),
        0o1777,
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
    )
}

/// The tmpfs mount data for a size and a mode: `mode=1777,size=67108864`.
pub fn tmpfs_options(size_bytes: Option<u64>, mode: u32) -> Result<String, String> {
    if mode > 0o7777 {
        return Err(format!("mode {mode:o} is not a file mode"));
    }
    let mut data = format!("mode={mode:o}");
    match size_bytes {
        Some(0) => return Err("size 0 would make the tmpfs unlimited".to_string()),
        Some(size) => data.push_str(&format!(",size={size}")),
        None => {}
    }
    Ok(data)
}

fn mount_tmpfs_with(
    target: &Path,
    size_bytes: Option<u64>,
    mode: u32,
    flags: rustix::mount::MountFlags,
) -> Result<(), String> {
    let fail = |e: String| format!("mount tmpfs on {}: {e}", target.display());
    let data = tmpfs_options(size_bytes, mode).map_err(fail)?;
    let data = std::ffi::CString::new(data).map_err(|e| fail(e.to_string()))?;
    rustix::mount::mount("tmpfs", target, "tmpfs", flags, Some(data.as_c_str()))
        .map_err(|e| fail(e.to_string()))
}

/// Detaches whatever is mounted on `target` (lazily: open files keep it alive until
/// closed). Nothing mounted there, or no `target` at all, is not an error.
pub fn unmount(target: &Path) -> Result<(), String> {
    match rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOENT => Ok(()),
        Err(e) => Err(format!("unmount {}: {e}", target.display())),
    }
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

    #[test]
    fn hosts_file_has_kubelets_managed_layout() {
        assert_eq!(
            hosts_file("web", None, Some("10.88.0.5"), &[]),
            format!("{HEADER_AND_LOCAL}10.88.0.5\tweb\n")
        );
        assert_eq!(
            hosts_file(
                "web-0",
                Some("nginx.default.svc.cluster.local"),
                Some("10.88.0.5"),
                &[]
            ),
            format!("{HEADER_AND_LOCAL}10.88.0.5\tweb-0.nginx.default.svc.cluster.local\tweb-0\n")
        );
        // No IP (yet): no line for the pod; an empty subdomain counts as none.
        assert_eq!(hosts_file("web", Some(""), None, &[]), HEADER_AND_LOCAL);
        assert_eq!(
            hosts_file("web", Some(""), Some("10.0.0.1"), &[]),
            format!("{HEADER_AND_LOCAL}10.0.0.1\tweb\n")
        );
    }

    #[test]
    fn hosts_file_appends_host_aliases() {
        assert_eq!(
            hosts_file("web", None, Some("10.88.0.5"), &aliases()),
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

    const HOST: &str = "# Generated by NetworkManager\n\
        domain example.org\n\
        search corp.example.com. example.com .\n\
        nameserver 10.0.0.2\n\
        nameserver 10.0.0.3\n\
        options ndots:2 edns0\n";

    fn option(name: &str, value: Option<&str>) -> DnsOption {
        DnsOption {
            name: name.into(),
            value: value.map(Into::into),
        }
    }

    #[test]
    fn default_and_cluster_first_use_the_hosts_resolver() {
        let expected = "search corp.example.com example.com\n\
            nameserver 10.0.0.2\nnameserver 10.0.0.3\noptions ndots:2 edns0\n";
        for policy in ["Default", "ClusterFirst", "ClusterFirstWithHostNet", ""] {
            assert_eq!(
                resolv_conf(policy, HOST, None).unwrap(),
                expected,
                "{policy}"
            );
        }
        // The last search and options lines win; nameservers accumulate.
        let host = "search a\nsearch b\noptions x\noptions y:1\nnameserver 1.1.1.1\n";
        assert_eq!(
            resolv_conf("Default", host, None).unwrap(),
            "search b\nnameserver 1.1.1.1\noptions y:1\n"
        );
    }

    #[test]
    fn none_uses_only_the_pods_dns_config() {
        let config = DnsConfig {
            nameservers: vec!["1.2.3.4".into()],
            searches: vec![
                "ns1.svc.cluster-domain.example".into(),
                "my.dns.search.suffix".into(),
            ],
            options: vec![option("ndots", Some("2")), option("edns0", None)],
        };
        assert_eq!(
            resolv_conf("None", HOST, Some(&config)).unwrap(),
            "search ns1.svc.cluster-domain.example my.dns.search.suffix\n\
             nameserver 1.2.3.4\noptions ndots:2 edns0\n"
        );
        assert!(resolv_conf("None", HOST, None).is_err());
        assert!(resolv_conf("None", HOST, Some(&DnsConfig::default())).is_err());
        assert!(resolv_conf("Sometimes", HOST, None)
            .unwrap_err()
            .contains("Sometimes"));
    }

    #[test]
    fn dns_config_merges_into_the_hosts() {
        let config = DnsConfig {
            nameservers: vec!["10.0.0.3".into(), "10.0.0.9".into()],
            searches: vec!["example.com".into(), "pod.local".into()],
            options: vec![option("ndots", Some("5")), option("single-request", None)],
        };
        assert_eq!(
            resolv_conf("ClusterFirst", HOST, Some(&config)).unwrap(),
            "search corp.example.com example.com pod.local\n\
             nameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.9\n\
             options ndots:5 edns0 single-request\n"
        );
    }

    #[test]
    fn resolver_limits_are_kubelets() {
        let config = DnsConfig {
            nameservers: (1..=5).map(|i| format!("10.0.0.{i}")).collect(),
            searches: (0..40).map(|i| format!("d{i}.example")).collect(),
            options: vec![],
        };
        let text = resolv_conf("None", "", Some(&config)).unwrap();
        assert_eq!(text.matches("nameserver ").count(), 3);
        let search = text.lines().next().unwrap();
        assert_eq!(search.split_whitespace().count(), 1 + 32);

        let long = "a".repeat(254);
        let config = DnsConfig {
            nameservers: vec!["1.1.1.1".into()],
            searches: vec![long, "ok.example".into()],
            options: vec![],
        };
        assert!(resolv_conf("None", "", Some(&config))
            .unwrap()
            .starts_with("search ok.example\n"));

        // 2048 characters at most: 10 domains of 250 characters overflow at the 9th.
        let config = DnsConfig {
            nameservers: vec!["1.1.1.1".into()],
            searches: (0..10).map(|i| format!("{i}{}", "b".repeat(249))).collect(),
            options: vec![],
        };
        let text = resolv_conf("None", "", Some(&config)).unwrap();
        let search = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("search ")
            .unwrap();
        assert_eq!(search.split(' ').count(), 8);
        assert!(search.len() <= MAX_SEARCH_CHARS);
    }

    #[test]
    fn empty_results_copy_the_hosts_file() {
        let host = "# nothing here\n";
        assert_eq!(resolv_conf("Default", host, None).unwrap(), host);
        assert!(resolv_conf("Default", "nameserver\n", None).is_err());
    }

    #[test]
    fn memory_empty_dir_takes_the_smallest_positive_bound() {
        let gi = 1u64 << 30;
        // Nothing set: the node's memory.
        assert_eq!(memory_empty_dir_size(None, None, 8 * gi), 8 * gi);
        // The pod's limit, then the volume's.
        assert_eq!(memory_empty_dir_size(None, Some(1 << 30), 8 * gi), gi);
        assert_eq!(
            memory_empty_dir_size(Some(64 << 20), Some(1 << 30), 8 * gi),
            64 << 20
        );
        // A sizeLimit above the pod's limit does not raise it.
        assert_eq!(
            memory_empty_dir_size(Some(2 * gi), Some(1 << 30), 8 * gi),
            gi
        );
        // Bounds above the node's memory, zero or negative are ignored.
        assert_eq!(
            memory_empty_dir_size(Some(16 * gi), Some(16 << 30), 8 * gi),
            8 * gi
        );
        assert_eq!(memory_empty_dir_size(Some(0), Some(0), 8 * gi), 8 * gi);
        assert_eq!(memory_empty_dir_size(None, Some(-1), 8 * gi), 8 * gi);
        assert_eq!(memory_empty_dir_size(Some(gi), None, 8 * gi), gi);
    }

    #[test]
    fn tmpfs_options_name_mode_and_size() {
        assert_eq!(
            tmpfs_options(Some(SHM_SIZE), 0o1777).unwrap(),
            "mode=1777,size=67108864"
        );
        assert_eq!(tmpfs_options(None, 0o777).unwrap(), "mode=777");
        assert!(tmpfs_options(Some(0), 0o777).is_err());
        assert!(tmpfs_options(None, 0o10000).is_err());
    }
}
