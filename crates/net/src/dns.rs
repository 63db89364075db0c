//! `/etc/resolv.conf` for a pod, by its `dnsPolicy` and `dnsConfig`.

/// At most this many nameservers reach resolv.conf (the API's `MaxDNSNameservers`,
/// glibc's `MAXNS`).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains (`MaxDNSSearchPathsExpanded`).
pub const MAX_SEARCHES: usize = 32;
/// At most this many characters on the search line (`MaxDNSSearchListCharsExpanded`).
pub const MAX_SEARCH_CHARS: usize = 2048;
/// Longer search domains are dropped: some resolvers (glibc 2.28) abort on them.
const MAX_SEARCH_DOMAIN_LEN: usize = 253;

/// Why a pod's resolv.conf cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolvConfError {
    /// `dnsPolicy: None` leaves the pod only its `dnsConfig`, and that names no server.
    #[error("dnsPolicy None needs dnsConfig with at least one nameserver")]
    NoNameserver,
    /// A policy kubelet does not know (validation lets none through).
    #[error("unknown dnsPolicy {0:?}")]
    UnknownPolicy(String),
    /// The node's resolv.conf, which the pod inherits, is broken.
    #[error("host resolv.conf: nameserver line without an address")]
    HostNameserverWithoutAddress,
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
) -> Result<String, ResolvConfError> {
    let mut resolver = match policy {
        "" | "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" => {
            parse_resolv_conf(host_resolv)?
        }
        "None" => {
            if dns_config.is_none_or(|c| c.nameservers.is_empty()) {
                return Err(ResolvConfError::NoNameserver);
            }
            Resolver::default()
        }
        other => return Err(ResolvConfError::UnknownPolicy(other.to_string())),
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
fn parse_resolv_conf(text: &str) -> Result<Resolver, ResolvConfError> {
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
                None => return Err(ResolvConfError::HostNameserverWithoutAddress),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            resolv_conf("None", HOST, None),
            Err(ResolvConfError::NoNameserver)
        );
        assert_eq!(
            resolv_conf("None", HOST, Some(&DnsConfig::default())),
            Err(ResolvConfError::NoNameserver)
        );
        assert_eq!(
            resolv_conf("Sometimes", HOST, None),
            Err(ResolvConfError::UnknownPolicy("Sometimes".into()))
        );
        assert_eq!(
            ResolvConfError::UnknownPolicy("Sometimes".into()).to_string(),
            "unknown dnsPolicy \"Sometimes\""
        );
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
        assert_eq!(
            resolv_conf("Default", "nameserver\n", None),
            Err(ResolvConfError::HostNameserverWithoutAddress)
        );
    }
}
