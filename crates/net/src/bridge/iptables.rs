//! The default network's netfilter rules, as `iptables-restore --noflush`
//! batches: one exec per change, whatever the number of rules.
//!
//! The layout follows the CNI `bridge` (ipMasq) and `portmap` plugins
//! (containernetworking/plugins plugins/meta/portmap/portmap.go), under our
//! own chain names:
//!
//! - nat `POSTROUTING -j PODRUN-POSTROUTING`, holding per network
//!   `-s <subnet> ! -o <bridge> -j MASQUERADE`, and once
//!   `-m mark --mark 0x2000/0x2000 -j MASQUERADE` (hostPort traffic that must
//!   look as if it came from the node: localhost and hairpin);
//! - nat `PREROUTING` and `OUTPUT` `-m addrtype --dst-type LOCAL -j PODRUN-HOSTPORTS`:
//!   traffic to any of the node's addresses, from outside or from the node;
//! - per sandbox with hostPorts, one chain `PODRUN-DN-<hash>`: a jump to it per
//!   mapping from `PODRUN-HOSTPORTS`, and in it the mark for traffic from
//!   127.0.0.1 or from the pod itself, then the DNAT. `del` removes exactly those;
//! - filter `INPUT -j PODRUN-INPUT`, holding per bridge a drop of new traffic
//!   to 127.0.0.0/8 arriving on the bridge: `route_localnet` (which lets
//!   127.0.0.1 be DNATed to a pod) would otherwise let a pod reach the node's
//!   localhost-only services (CVE-2020-8558; kube-proxy's rule).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;
use std::process::{Command, Stdio};

use super::ipam::Subnet;
use crate::network::PortMapping;

/// The chain jumped to from nat POSTROUTING.
pub(crate) const POSTROUTING_CHAIN: &str = "PODRUN-POSTROUTING";
/// The chain jumped to from nat PREROUTING and OUTPUT for local destinations.
pub(crate) const HOSTPORTS_CHAIN: &str = "PODRUN-HOSTPORTS";
/// The chain that marks hostPort traffic for masquerading.
pub(crate) const SETMARK_CHAIN: &str = "PODRUN-HOSTPORT-SETMARK";
/// The chain jumped to from filter INPUT.
pub(crate) const INPUT_CHAIN: &str = "PODRUN-INPUT";
/// The mark of hostPort traffic to masquerade: portmap's default bit 13.
const MASQ_MARK: &str = "0x2000/0x2000";

/// An IP family's iptables tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    pub(crate) fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    fn save(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }

    fn host_prefix(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// Why an iptables command failed.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    /// The command could not be run.
    #[error("run {command}: {source}")]
    Spawn {
        /// The command.
        command: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The command failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command.
        command: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
}

/// A batch for `iptables-restore`: lines per table, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    nat: Vec<String>,
    filter: Vec<String>,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.nat.is_empty() && self.filter.is_empty()
    }

    /// The `iptables-restore` input.
    pub(crate) fn text(&self) -> String {
        let mut text = String::new();
        for (table, lines) in [("nat", &self.nat), ("filter", &self.filter)] {
            if lines.is_empty() {
                continue;
            }
            let _ = writeln!(text, "*{table}");
            for line in lines {
                let _ = writeln!(text, "{line}");
            }
            text.push_str("COMMIT\n");
        }
        text
    }
}

/// The rules and chains every network of the family shares, and the ones of
/// this network (`bridge`, `subnet`), as `iptables-save` prints them: what
/// [`missing`] compares with the live rules.
pub(crate) fn base_rules(bridge: &str, subnet: &Subnet, masquerade: bool) -> Batch {
    let mut nat = vec![
        format!(":{POSTROUTING_CHAIN} - [0:0]"),
        format!(":{HOSTPORTS_CHAIN} - [0:0]"),
        format!(":{SETMARK_CHAIN} - [0:0]"),
        format!("-A PREROUTING -m addrtype --dst-type LOCAL -j {HOSTPORTS_CHAIN}"),
        format!("-A OUTPUT -m addrtype --dst-type LOCAL -j {HOSTPORTS_CHAIN}"),
        format!("-A POSTROUTING -j {POSTROUTING_CHAIN}"),
        format!("-A {POSTROUTING_CHAIN} -m mark --mark {MASQ_MARK} -j MASQUERADE"),
        format!("-A {SETMARK_CHAIN} -j MARK --set-xmark {MASQ_MARK}"),
    ];
    if masquerade {
        nat.push(format!(
            "-A {POSTROUTING_CHAIN} -s {subnet} ! -o {bridge} -j MASQUERADE"
        ));
    }
    let mut filter = Vec::new();
    if subnet.network().is_ipv4() {
        filter = vec![
            format!(":{INPUT_CHAIN} - [0:0]"),
            format!("-A INPUT -j {INPUT_CHAIN}"),
            format!(
                "-A {INPUT_CHAIN} -d 127.0.0.0/8 -i {bridge} -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
            ),
        ];
    }
    Batch { nat, filter }
}

/// What of `wanted` the live rules (`iptables-save` output) lack: chains
/// that do not exist (declaring an existing chain in a `--noflush` restore
/// would flush it) and rules not there.
pub(crate) fn missing(wanted: &Batch, saved: &str) -> Batch {
    let mut present: HashSet<(&str, &str)> = HashSet::new();
    let mut table = "";
    for line in saved.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.trim();
        } else if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split_whitespace().next().unwrap_or("");
            present.insert((table, name));
        } else if line.starts_with("-A ") {
            present.insert((table, line.trim_end()));
        }
    }
    let keep = |table: &'static str, lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|line| {
                let key = match line.strip_prefix(':') {
                    Some(chain) => chain.split_whitespace().next().unwrap_or(""),
                    None => line.as_str(),
                };
                !present.contains(&(table, key))
            })
            .cloned()
            .collect()
    };
    Batch {
        nat: keep("nat", &wanted.nat),
        filter: keep("filter", &wanted.filter),
    }
}

/// The per-sandbox chain's name: 26 characters, under iptables' 28.
pub(crate) fn sandbox_chain(hash: u64) -> String {
    format!("PODRUN-DN-{hash:016x}")
}

/// The host-side match of a mapping: protocol, port and, with `hostIP`, the
/// destination address.
fn host_match(mapping: &PortMapping, family: Family) -> String {
    let protocol = mapping.protocol.as_str();
    let mut text = String::new();
    if !mapping.host_ip.is_empty() && !is_unspecified(&mapping.host_ip) {
        let _ = write!(text, "-d {}/{} ", mapping.host_ip, family.host_prefix());
    }
    let _ = write!(
        text,
        "-p {protocol} -m {protocol} --dport {}",
        mapping.host_port
    );
    text
}

/// Whether a mapping's `hostIP` means every address.
pub(crate) fn is_unspecified(host_ip: &str) -> bool {
    host_ip
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// Whether the mapping applies to the pod address `pod_ip`'s family: every
/// mapping without `hostIP`, and those whose `hostIP` is of that family.
pub(crate) fn applies(mapping: &PortMapping, pod_ip: IpAddr) -> bool {
    mapping.host_ip.is_empty()
        || mapping
            .host_ip
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_ipv4() == pod_ip.is_ipv4())
}

/// The jumps from the shared chain to the sandbox's chain, one per mapping.
fn jumps(chain: &str, pod_ip: IpAddr, mappings: &[PortMapping]) -> Vec<String> {
    let family = Family::of(pod_ip);
    mappings
        .iter()
        .filter(|m| applies(m, pod_ip))
        .map(|m| format!("-A {HOSTPORTS_CHAIN} {} -j {chain}", host_match(m, family)))
        .collect()
}

/// The batch that maps the sandbox's hostPorts to `pod_ip`.
pub(crate) fn add_hostports(chain: &str, pod_ip: IpAddr, mappings: &[PortMapping]) -> Batch {
    let family = Family::of(pod_ip);
    let mut nat = vec![format!(":{chain} - [0:0]")];
    nat.extend(jumps(chain, pod_ip, mappings));
    for mapping in mappings.iter().filter(|m| applies(m, pod_ip)) {
        let host = host_match(mapping, family);
        let prefix = family.host_prefix();
        // The pod reaching itself through the node (hairpin), and the node
        // through 127.0.0.1: both must leave masqueraded, or the answer would
        // not come back through the DNAT.
        nat.push(format!(
            "-A {chain} -s {pod_ip}/{prefix} {host} -j {SETMARK_CHAIN}"
        ));
        if family == Family::V4 {
            nat.push(format!(
                "-A {chain} -s 127.0.0.1/32 {host} -j {SETMARK_CHAIN}"
            ));
        }
        let destination = match pod_ip {
            IpAddr::V4(v4) => format!("{v4}:{}", mapping.container_port),
            IpAddr::V6(v6) => format!("[{v6}]:{}", mapping.container_port),
        };
        nat.push(format!(
            "-A {chain} {host} -j DNAT --to-destination {destination}"
        ));
    }
    Batch {
        nat,
        filter: Vec::new(),
    }
}

/// The batch that removes what [`add_hostports`] made.
pub(crate) fn delete_hostports(chain: &str, pod_ip: IpAddr, mappings: &[PortMapping]) -> Batch {
    let mut nat: Vec<String> = jumps(chain, pod_ip, mappings)
        .into_iter()
        .map(|rule| format!("-D{}", &rule["-A".len()..]))
        .collect();
    nat.push(format!("-F {chain}"));
    nat.push(format!("-X {chain}"));
    Batch {
        nat,
        filter: Vec::new(),
    }
}

/// The batch that removes whatever of the sandbox's chain the live rules
/// still hold: every jump to it, then the chain (for a `del` whose exact
/// batch failed because part of it was gone already).
pub(crate) fn delete_leftovers(chain: &str, saved: &str) -> Batch {
    let mut nat = Vec::new();
    let mut table = "";
    let mut chain_exists = false;
    let target = format!("-j {chain}");
    for line in saved.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.trim();
        } else if table != "nat" {
            continue;
        } else if line
            .strip_prefix(':')
            .and_then(|c| c.split_whitespace().next())
            == Some(chain)
        {
            chain_exists = true;
        } else if line.starts_with("-A ") && line.trim_end().ends_with(&target) {
            nat.push(format!("-D{}", &line.trim_end()["-A".len()..]));
        }
    }
    if chain_exists {
        nat.push(format!("-F {chain}"));
        nat.push(format!("-X {chain}"));
    }
    Batch {
        nat,
        filter: Vec::new(),
    }
}

/// The batch that removes this network's own rules (`bridge`, `subnet`: its
/// masquerade and its localhost drop) from the live rules (`saved`), and the
/// shared chains with their jumps when no other network's rule is left in
/// them (a sandbox's hostPort chain counts as another's).
pub(crate) fn remove_network(bridge: &str, subnet: &Subnet, saved: &str) -> Batch {
    let ours = base_rules(bridge, subnet, true);
    let own_rule = |line: &str| -> bool {
        line.contains(&format!(" {bridge} ")) || line.ends_with(&format!(" {bridge}"))
    };
    let mut batch = Batch::default();
    let mut left: HashSet<(String, String)> = HashSet::new();
    let mut chains: HashSet<(String, String)> = HashSet::new();
    let mut table = String::new();
    for line in saved.lines().map(str::trim_end) {
        if let Some(name) = line.strip_prefix('*') {
            table = name.trim().to_owned();
            continue;
        }
        if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split_whitespace().next().unwrap_or("");
            chains.insert((table.clone(), name.to_owned()));
            continue;
        }
        let Some(rule) = line.strip_prefix("-A ") else {
            continue;
        };
        let chain = rule.split_whitespace().next().unwrap_or("");
        let shared = [POSTROUTING_CHAIN, HOSTPORTS_CHAIN, INPUT_CHAIN].contains(&chain);
        if !shared {
            continue;
        }
        let is_ours = (table == "nat" && ours.nat.iter().any(|l| l == line))
            || (table == "filter" && ours.filter.iter().any(|l| l == line));
        if is_ours && own_rule(line) {
            let delete = format!("-D {rule}");
            match table.as_str() {
                "nat" => batch.nat.push(delete),
                _ => batch.filter.push(delete),
            }
        } else if !line.ends_with(&format!("--mark {MASQ_MARK} -j MASQUERADE")) {
            left.insert((table.clone(), chain.to_owned()));
        }
    }
    let in_use = |table: &str, chain: &str| left.contains(&(table.to_owned(), chain.to_owned()));
    let idle = !in_use("nat", POSTROUTING_CHAIN)
        && !in_use("nat", HOSTPORTS_CHAIN)
        && !in_use("filter", INPUT_CHAIN);
    if !idle {
        return batch;
    }
    // No network and no sandbox uses the shared chains: they go too, jumps first.
    let mut table = String::new();
    for line in saved.lines().map(str::trim_end) {
        if let Some(name) = line.strip_prefix('*') {
            table = name.trim().to_owned();
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let jumps_to_shared = [
                POSTROUTING_CHAIN,
                HOSTPORTS_CHAIN,
                SETMARK_CHAIN,
                INPUT_CHAIN,
            ]
            .iter()
            .any(|c| rule.ends_with(&format!("-j {c}")));
            let chain = rule.split_whitespace().next().unwrap_or("");
            if jumps_to_shared && !chain.starts_with("PODRUN-") {
                match table.as_str() {
                    "nat" => batch.nat.push(format!("-D {rule}")),
                    "filter" => batch.filter.push(format!("-D {rule}")),
                    _ => {}
                }
            }
        }
    }
    for (table, chain) in [
        ("nat", POSTROUTING_CHAIN),
        ("nat", HOSTPORTS_CHAIN),
        ("nat", SETMARK_CHAIN),
        ("filter", INPUT_CHAIN),
    ] {
        if chains.contains(&(table.to_owned(), chain.to_owned())) {
            let lines = if table == "nat" {
                &mut batch.nat
            } else {
                &mut batch.filter
            };
            lines.push(format!("-F {chain}"));
            lines.push(format!("-X {chain}"));
        }
    }
    batch
}

/// Applies the batch with one `iptables-restore --noflush --wait`.
pub(crate) fn restore(family: Family, batch: &Batch) -> Result<(), IptablesError> {
    start_restore(family, batch)?.wait()
}

/// A running `iptables-restore`: the kernel's part of a chain deletion waits
/// for an RCU grace period (~15 ms here), so `del` lets it run while it
/// deletes the veth, which waits for its own.
pub(crate) struct Restore {
    command: &'static str,
    child: Option<std::process::Child>,
    written: io::Result<()>,
}

/// Starts applying the batch; [`Restore::wait`] gives the outcome.
pub(crate) fn start_restore(family: Family, batch: &Batch) -> Result<Restore, IptablesError> {
    let command = family.restore();
    if batch.is_empty() {
        return Ok(Restore {
            command,
            child: None,
            written: Ok(()),
        });
    }
    let mut child = Command::new(command)
        .args(["--noflush", "--wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| IptablesError::Spawn { command, source })?;
    // A batch is a few KiB at most: it fits the pipe, so writing it before
    // the child reads cannot block; dropping stdin closes it.
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(batch.text().as_bytes());
    Ok(Restore {
        command,
        child: Some(child),
        written,
    })
}

impl Restore {
    /// Waits for the batch to be applied.
    pub(crate) fn wait(self) -> Result<(), IptablesError> {
        let command = self.command;
        let Some(child) = self.child else {
            return Ok(());
        };
        let output = child
            .wait_with_output()
            .map_err(|source| IptablesError::Spawn { command, source })?;
        if !output.status.success() {
            return Err(IptablesError::Failed {
                command,
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        self.written
            .map_err(|source| IptablesError::Spawn { command, source })
    }
}

/// The live rules of the nat and filter tables, as `iptables-save` prints them.
pub(crate) fn save(family: Family) -> Result<String, IptablesError> {
    let command = family.save();
    let mut text = String::new();
    for table in ["nat", "filter"] {
        let output = Command::new(command)
            .args(["-t", table])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| IptablesError::Spawn { command, source })?;
        if !output.status.success() {
            return Err(IptablesError::Failed {
                command,
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        text.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    Ok(text)
}

/// Whether the family's tools can be run (`ready`).
pub(crate) fn available(family: Family) -> Result<(), IptablesError> {
    let command = family.restore();
    let output = Command::new(command)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| IptablesError::Spawn { command, source })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(IptablesError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Protocol;

    fn mapping(host_port: u16, container_port: u16, host_ip: &str) -> PortMapping {
        PortMapping {
            host_port,
            container_port,
            protocol: Protocol::Tcp,
            host_ip: host_ip.to_owned(),
        }
    }

    #[test]
    fn only_missing_chains_and_rules_are_applied() {
        let wanted = base_rules("podrun0", &"10.88.0.0/16".parse().unwrap(), true);
        let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:PODRUN-POSTROUTING - [3:180]\n\
                     -A POSTROUTING -j PODRUN-POSTROUTING\n\
                     -A PODRUN-POSTROUTING -s 10.88.0.0/16 ! -o podrun0 -j MASQUERADE\nCOMMIT\n\
                     *filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";
        let missing = missing(&wanted, saved);
        let text = missing.text();
        assert!(!text.contains(":PODRUN-POSTROUTING"), "{text}");
        assert!(!text.contains("-A POSTROUTING -j"), "{text}");
        assert!(!text.contains("! -o podrun0"), "{text}");
        assert!(text.contains(":PODRUN-HOSTPORTS - [0:0]"), "{text}");
        assert!(
            text.contains("*filter\n:PODRUN-INPUT - [0:0]\n-A INPUT -j PODRUN-INPUT"),
            "{text}"
        );
        let everything = format!(
            "*nat\n{}\n*filter\n{}\n",
            wanted.nat.join("\n"),
            wanted.filter.join("\n")
        );
        assert!(super::missing(&wanted, &everything).is_empty());
    }

    #[test]
    fn hostports_dnat_from_every_local_address_or_the_host_ip() {
        let pod: IpAddr = "10.88.0.5".parse().unwrap();
        let chain = sandbox_chain(0xabc);
        let add = add_hostports(
            &chain,
            pod,
            &[mapping(8080, 80, ""), mapping(53, 5353, "10.0.0.9")],
        );
        assert_eq!(
            add.text(),
            "*nat\n\
             :PODRUN-DN-0000000000000abc - [0:0]\n\
             -A PODRUN-HOSTPORTS -p tcp -m tcp --dport 8080 -j PODRUN-DN-0000000000000abc\n\
             -A PODRUN-HOSTPORTS -d 10.0.0.9/32 -p tcp -m tcp --dport 53 -j PODRUN-DN-0000000000000abc\n\
             -A PODRUN-DN-0000000000000abc -s 10.88.0.5/32 -p tcp -m tcp --dport 8080 -j PODRUN-HOSTPORT-SETMARK\n\
             -A PODRUN-DN-0000000000000abc -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j PODRUN-HOSTPORT-SETMARK\n\
             -A PODRUN-DN-0000000000000abc -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.88.0.5:80\n\
             -A PODRUN-DN-0000000000000abc -s 10.88.0.5/32 -d 10.0.0.9/32 -p tcp -m tcp --dport 53 -j PODRUN-HOSTPORT-SETMARK\n\
             -A PODRUN-DN-0000000000000abc -s 127.0.0.1/32 -d 10.0.0.9/32 -p tcp -m tcp --dport 53 -j PODRUN-HOSTPORT-SETMARK\n\
             -A PODRUN-DN-0000000000000abc -d 10.0.0.9/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 10.88.0.5:5353\n\
             COMMIT\n"
        );
        let del = delete_hostports(
            &chain,
            pod,
            &[mapping(8080, 80, ""), mapping(53, 5353, "10.0.0.9")],
        );
        assert_eq!(
            del.text(),
            "*nat\n\
             -D PODRUN-HOSTPORTS -p tcp -m tcp --dport 8080 -j PODRUN-DN-0000000000000abc\n\
             -D PODRUN-HOSTPORTS -d 10.0.0.9/32 -p tcp -m tcp --dport 53 -j PODRUN-DN-0000000000000abc\n\
             -F PODRUN-DN-0000000000000abc\n-X PODRUN-DN-0000000000000abc\nCOMMIT\n"
        );
    }

    #[test]
    fn an_ipv6_pod_gets_only_its_family_and_no_localhost_rule() {
        let pod: IpAddr = "fd00::5".parse().unwrap();
        let add = add_hostports(
            "C",
            pod,
            &[mapping(80, 80, "10.0.0.9"), mapping(81, 81, "")],
        );
        let text = add.text();
        assert!(!text.contains("--dport 80 "), "{text}");
        assert!(!text.contains("127.0.0.1"), "{text}");
        assert!(
            text.contains("-j DNAT --to-destination [fd00::5]:81"),
            "{text}"
        );
        assert!(text.contains("-s fd00::5/128 "), "{text}");
    }

    #[test]
    fn removing_a_network_keeps_the_shared_chains_while_another_uses_them() {
        let a = "10.201.0.0/24".parse().unwrap();
        let b = "10.202.0.0/24".parse().unwrap();
        let text = |batch: &Batch| batch.text();
        let mut saved = String::from("*nat\n");
        let both: Vec<String> = base_rules("pra", &a, true)
            .nat
            .into_iter()
            .chain(base_rules("prb", &b, true).nat)
            .collect();
        let mut seen = HashSet::new();
        for line in &both {
            if seen.insert(line.clone()) {
                saved.push_str(line);
                saved.push('\n');
            }
        }
        saved.push_str("COMMIT\n*filter\n");
        let filters: Vec<String> = base_rules("pra", &a, true)
            .filter
            .into_iter()
            .chain(base_rules("prb", &b, true).filter)
            .collect();
        let mut seen = HashSet::new();
        for line in &filters {
            if seen.insert(line.clone()) {
                saved.push_str(line);
                saved.push('\n');
            }
        }
        saved.push_str("COMMIT\n");
        let batch = remove_network("pra", &a, &saved);
        assert_eq!(
            text(&batch),
            "*nat\n-D PODRUN-POSTROUTING -s 10.201.0.0/24 ! -o pra -j MASQUERADE\nCOMMIT\n\
             *filter\n-D PODRUN-INPUT -d 127.0.0.0/8 -i pra -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\nCOMMIT\n",
            "prb's rules keep the shared chains"
        );
        // With prb gone too, the last network takes the chains and jumps along.
        let only_b: String = saved
            .lines()
            .filter(|l| !l.contains(" pra"))
            .map(|l| format!("{l}\n"))
            .collect();
        let text = remove_network("prb", &b, &only_b).text();
        for expected in [
            "-D PREROUTING -m addrtype --dst-type LOCAL -j PODRUN-HOSTPORTS",
            "-D POSTROUTING -j PODRUN-POSTROUTING",
            "-D INPUT -j PODRUN-INPUT",
            "-X PODRUN-HOSTPORT-SETMARK",
            "-X PODRUN-INPUT",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
        // A sandbox's hostPort jump keeps them.
        let with_port = only_b.replacen(
            "COMMIT\n",
            "-A PODRUN-HOSTPORTS -p tcp -m tcp --dport 80 -j PODRUN-DN-0123456789abcdef\nCOMMIT\n",
            1,
        );
        assert!(!remove_network("prb", &b, &with_port).text().contains("-X"));
    }

    #[test]
    fn leftovers_are_found_in_saved_rules() {
        let saved = "*nat\n:PODRUN-DN-1 - [0:0]\n:PODRUN-DN-2 - [0:0]\n\
                     -A PODRUN-HOSTPORTS -p tcp -m tcp --dport 1 -j PODRUN-DN-1\n\
                     -A PODRUN-HOSTPORTS -p tcp -m tcp --dport 2 -j PODRUN-DN-2\nCOMMIT\n";
        assert_eq!(
            delete_leftovers("PODRUN-DN-1", saved).text(),
            "*nat\n-D PODRUN-HOSTPORTS -p tcp -m tcp --dport 1 -j PODRUN-DN-1\n\
             -F PODRUN-DN-1\n-X PODRUN-DN-1\nCOMMIT\n"
        );
        assert!(delete_leftovers("PODRUN-DN-3", saved).is_empty());
    }
}
