//! podrun's built-in default pod network: what the CNI reference plugins
//! `bridge` + `host-local` + `portmap` (+ `loopback`) make, and what podman's
//! netavark makes, but in-process: netlink requests instead of plugin
//! executions, and at most one `iptables-restore` per add or del (none for a
//! pod without hostPorts once the network's shared rules exist).
//!
//! Per network: a bridge (`podrun0`) holding the gateway address (the first
//! host address of the subnet), `net.ipv4.ip_forward=1`, and the masquerade of
//! the subnet's traffic leaving by any other interface. Per sandbox: a veth
//! pair, `veth<8 hex>` on the bridge and `eth0` in the pod's namespace with a
//! leased address and a default route through the gateway; `lo` up; and, with
//! hostPorts, a chain of DNAT rules (the `iptables` module has the layout).
//!
//! A hostPort is reached from other machines through any node address, from the
//! node itself through any of its addresses, 127.0.0.1 included (as portmap
//! does it: `route_localnet` on the bridge and a masquerade of that traffic),
//! and from the pod itself (hairpin: masqueraded). IPv6 hostPorts are not
//! reachable through `::1` (the kernel has no `route_localnet` for IPv6).

mod ipam;
mod iptables;
mod netlink;
mod records;

use std::fs::{self, File};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

pub use ipam::{LeaseError, Subnet, SubnetError};
pub use iptables::IptablesError;
pub use records::RecordError;

use crate::netns::{in_network_namespace, NetnsError};
use crate::network::{Attachment, NetworkError, NetworkStatus, PodNetwork};
use ipam::Leases;
use iptables::Family;
use netlink::Netlink;
use records::{Record, Records};

/// The network's name, as `NetworkError` and CRI status show it.
pub const NETWORK_NAME: &str = "podrun";

/// The default network's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultNetworkConfig {
    /// The bridge's name (at most 15 bytes).
    pub bridge: String,
    /// The IPv4 subnet pods get addresses from.
    pub subnet: Subnet,
    /// An IPv6 subnet for dual stack: each pod gets one address of each.
    pub subnet6: Option<Subnet>,
    /// Where leases and per-sandbox records are kept; it must outlive the
    /// process (leases survive restarts).
    pub state_dir: PathBuf,
    /// Whether pod traffic leaving by another interface is masqueraded.
    pub masquerade: bool,
}

impl Default for DefaultNetworkConfig {
    /// `podrun0`, `10.88.0.0/16` (podman's default), state in
    /// `/var/lib/podrun/network`, masquerade on.
    fn default() -> Self {
        DefaultNetworkConfig {
            bridge: "podrun0".to_owned(),
            subnet: "10.88.0.0/16".parse().expect("a valid subnet"),
            subnet6: None,
            state_dir: PathBuf::from("/var/lib/podrun/network"),
            masquerade: true,
        }
    }
}

/// Why a step of the default network failed.
#[derive(Debug, thiserror::Error)]
pub enum DefaultNetworkError {
    /// The configuration cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// The attachment cannot be served (an unusable sandbox ID or interface name).
    #[error("sandbox {sandbox_id:?}: {reason}")]
    Attachment {
        /// The sandbox.
        sandbox_id: String,
        /// Why.
        reason: String,
    },
    /// A netlink request failed.
    #[error("{step}: {source}")]
    Netlink {
        /// What was asked, naming the object.
        step: String,
        /// What the kernel said.
        source: io::Error,
    },
    /// A sysctl could not be written.
    #[error("set {path}: {source}")]
    Sysctl {
        /// The /proc/sys file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The pod's network namespace could not be opened or joined.
    #[error("pod network namespace {}: {source}", path.display())]
    Netns {
        /// The pinned namespace.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Running on a thread in the pod's namespace failed.
    #[error(transparent)]
    Join(#[from] NetnsError),
    /// No address could be leased or released.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// A record or hostPort reservation failed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// An iptables batch failed.
    #[error("{step}: {source}")]
    Iptables {
        /// What the batch was for.
        step: String,
        /// The cause.
        source: IptablesError,
    },
}

fn netlink_error(step: impl Into<String>) -> impl FnOnce(io::Error) -> DefaultNetworkError {
    let step = step.into();
    move |source| DefaultNetworkError::Netlink { step, source }
}

/// The built-in default network (see the module documentation).
#[derive(Debug)]
pub struct DefaultNetwork {
    config: DefaultNetworkConfig,
    leases: Leases,
    records: Records,
    /// Whether this process has made the network's shared objects (bridge,
    /// sysctls, iptables rules); held while making them, so concurrent first
    /// adds wait for one another instead of racing.
    set_up: Mutex<bool>,
}

impl DefaultNetwork {
    /// The network of `config`; nothing is made before the first `add`.
    pub fn new(config: DefaultNetworkConfig) -> Result<DefaultNetwork, DefaultNetworkError> {
        if config.bridge.is_empty() || config.bridge.len() > 15 || config.bridge.contains('/') {
            return Err(DefaultNetworkError::Config(format!(
                "bridge name {:?} is not a valid interface name (1 to 15 bytes, no '/')",
                config.bridge
            )));
        }
        if !config.subnet.network().is_ipv4() {
            return Err(DefaultNetworkError::Config(format!(
                "subnet {} must be IPv4 (an IPv6 one goes in subnet6)",
                config.subnet
            )));
        }
        if let Some(six) = &config.subnet6 {
            if six.network().is_ipv4() {
                return Err(DefaultNetworkError::Config(format!(
                    "subnet6 {six} must be IPv6"
                )));
            }
        }
        Ok(DefaultNetwork {
            leases: Leases::new(config.state_dir.join("leases")),
            records: Records::new(config.state_dir.clone()),
            config,
            set_up: Mutex::new(false),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DefaultNetworkConfig {
        &self.config
    }

    /// Every lease in the store, with the sandbox holding it: after a reboot,
    /// the runtime releases (by `del`) those of sandboxes that no longer exist.
    /// An unreadable store gives an empty list.
    pub fn leases(&self) -> Vec<(IpAddr, String)> {
        self.leases.all().unwrap_or_default()
    }

    fn subnets(&self) -> impl Iterator<Item = &Subnet> {
        std::iter::once(&self.config.subnet).chain(self.config.subnet6.iter())
    }

    fn families(&self) -> impl Iterator<Item = (Family, &Subnet)> {
        self.subnets()
            .map(|subnet| (Family::of(subnet.network()), subnet))
    }

    /// Removes the network's shared objects: its bridge and its iptables
    /// rules, and the chains all default networks share once no network and
    /// no sandbox uses them (podman's `network rm`; tests tear down theirs).
    /// The pods attached lose their connectivity: call it with none left.
    pub fn remove_network(&self) -> Result<(), DefaultNetworkError> {
        let mut set_up = self.set_up.lock().unwrap_or_else(|e| e.into_inner());
        let _node = NodeLock::take();
        let bridge = &self.config.bridge;
        let mut nl = Netlink::open().map_err(netlink_error("open a netlink socket"))?;
        nl.delete_link(bridge)
            .map_err(netlink_error(format!("delete bridge {bridge}")))?;
        *set_up = false;
        for (family, subnet) in self.families() {
            let step = || format!("remove the {bridge} network's iptables rules");
            let saved = iptables::save(family).map_err(|source| DefaultNetworkError::Iptables {
                step: step(),
                source,
            })?;
            let batch = iptables::remove_network(bridge, subnet, &saved);
            if !batch.is_empty() {
                iptables::restore(family, &batch).map_err(|source| {
                    DefaultNetworkError::Iptables {
                        step: step(),
                        source,
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Makes the bridge, sysctls and shared rules, once per process (and again
    /// if the bridge has gone); returns the bridge's index.
    fn ensure_network(&self, nl: &mut Netlink) -> Result<u32, DefaultNetworkError> {
        let bridge = &self.config.bridge;
        let mut set_up = self.set_up.lock().unwrap_or_else(|e| e.into_inner());
        if *set_up {
            if let Some(link) = nl
                .link(bridge)
                .map_err(netlink_error(format!("look up bridge {bridge}")))?
            {
                if netlink::is_up(&link) {
                    return Ok(link.header.index);
                }
            }
        }
        // Other processes (another root's runtime) make and remove the shared
        // chains too: one at a time on the node, or a jump is added twice.
        let _node = NodeLock::take();
        nl.create_bridge(bridge, bridge_mac(bridge))
            .map_err(netlink_error(format!("create bridge {bridge}")))?;
        let link = nl
            .link(bridge)
            .map_err(netlink_error(format!("look up bridge {bridge}")))?
            .ok_or_else(|| DefaultNetworkError::Netlink {
                step: format!("look up bridge {bridge}"),
                source: io::Error::from(io::ErrorKind::NotFound),
            })?;
        if !netlink::is_bridge(&link) {
            return Err(DefaultNetworkError::Config(format!(
                "the link {bridge} exists and is not a bridge"
            )));
        }
        let index = link.header.index;
        for subnet in self.subnets() {
            nl.add_address(index, subnet.gateway(), subnet.prefix())
                .map_err(netlink_error(format!(
                    "add address {}/{} to bridge {bridge}",
                    subnet.gateway(),
                    subnet.prefix()
                )))?;
        }
        nl.set_up(index)
            .map_err(netlink_error(format!("set bridge {bridge} up")))?;
        set_sysctl("/proc/sys/net/ipv4/ip_forward")?;
        // portmap's rule: 127.0.0.1 may be DNATed to a pod only if the
        // interface towards the pod accepts loopback sources.
        set_sysctl(&format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"))?;
        if self.config.subnet6.is_some() {
            set_sysctl("/proc/sys/net/ipv6/conf/all/forwarding")?;
        }
        for (family, subnet) in self.families() {
            let wanted = iptables::base_rules(bridge, subnet, self.config.masquerade);
            let step = || format!("set up the {bridge} network's iptables rules");
            let saved = iptables::save(family).map_err(|source| DefaultNetworkError::Iptables {
                step: step(),
                source,
            })?;
            iptables::restore(family, &iptables::missing(&wanted, &saved)).map_err(|source| {
                DefaultNetworkError::Iptables {
                    step: step(),
                    source,
                }
            })?;
        }
        *set_up = true;
        Ok(index)
    }

    fn add_inner(
        &self,
        attachment: &Attachment,
        undo: &mut Undo,
    ) -> Result<NetworkStatus, DefaultNetworkError> {
        let id = &attachment.sandbox_id;
        check_attachment(attachment)?;
        // A second add of an attached sandbox must not touch the first's
        // lease, ports or record (the undo would take them).
        if self.records.read(id)?.is_some() {
            return Err(DefaultNetworkError::Attachment {
                sandbox_id: id.clone(),
                reason: "already attached to this network (del it first)".to_owned(),
            });
        }
        let mut nl = Netlink::open().map_err(netlink_error("open a netlink socket"))?;
        let bridge_index = self.ensure_network(&mut nl)?;

        self.records.reserve_ports(id, &attachment.port_mappings)?;
        undo.ports = true;
        for (n, subnet) in self.subnets().enumerate() {
            let ip = self.leases.allocate(subnet, n, id, &attachment.ifname)?;
            undo.ips.push(ip);
        }
        self.records.write(
            id,
            &Record {
                ips: undo.ips.clone(),
                mappings: attachment.port_mappings.clone(),
            },
        )?;
        undo.record = true;

        let netns = File::open(&attachment.netns).map_err(|source| DefaultNetworkError::Netns {
            path: attachment.netns.clone(),
            source,
        })?;
        let host_veth = host_veth_name(id);
        let created = nl
            .create_veth(
                &host_veth,
                bridge_index,
                &attachment.ifname,
                netns.as_raw_fd(),
            )
            .map_err(netlink_error(format!(
                "create veth pair {host_veth} (bridge {}) and {} (pod netns {})",
                self.config.bridge,
                attachment.ifname,
                attachment.netns.display()
            )))?;
        // A veth of this name taken off the bridge by a `del` may still be
        // ending with its namespace (the same pod's UID again at once): it
        // goes now, and the pair is made again.
        let created = created
            || (released_leftover(&mut nl, &host_veth)
                && nl.delete_link(&host_veth).is_ok()
                && nl
                    .create_veth(
                        &host_veth,
                        bridge_index,
                        &attachment.ifname,
                        netns.as_raw_fd(),
                    )
                    .unwrap_or(false));
        if !created {
            return Err(DefaultNetworkError::Netlink {
                step: format!(
                    "create veth {host_veth}: a link of that name exists (a leftover of sandbox {id}: del it first, or an 8-hex hash collision)"
                ),
                source: io::Error::from(io::ErrorKind::AlreadyExists),
            });
        }
        undo.veth = Some(host_veth.clone());
        nl.set_hairpin(&host_veth)
            .map_err(netlink_error(format!("set hairpin mode on {host_veth}")))?;

        let ips = undo.ips.clone();
        let subnets: Vec<Subnet> = self.subnets().copied().collect();
        let ifname = attachment.ifname.clone();
        in_network_namespace(Some(&attachment.netns), move || {
            configure_pod_side(&ifname, &ips, &subnets)
        })??;

        let chain = iptables::sandbox_chain(hash64(id));
        for &ip in &undo.ips {
            if !attachment
                .port_mappings
                .iter()
                .any(|m| iptables::applies(m, ip))
            {
                continue;
            }
            let batch = iptables::add_hostports(&chain, ip, &attachment.port_mappings);
            iptables::restore(Family::of(ip), &batch).map_err(|source| {
                DefaultNetworkError::Iptables {
                    step: format!("map the hostPorts of sandbox {id}"),
                    source,
                }
            })?;
            undo.rules.push(ip);
        }
        Ok(NetworkStatus {
            ips: undo.ips.clone(),
            interface: attachment.ifname.clone(),
        })
    }

    /// [`PodNetwork::del`], the veth ending as `veth` says.
    fn del_ending(&self, attachment: &Attachment, veth: VethEnd) -> Result<(), NetworkError> {
        let errors = self.del_inner(attachment, veth);
        if errors.is_empty() {
            return Ok(());
        }
        let causes: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Err(NetworkError {
            network: NETWORK_NAME.to_owned(),
            message: format!(
                "del sandbox {}: {}",
                attachment.sandbox_id,
                causes.join("; ")
            ),
        })
    }

    /// Removes what `add` made for the sandbox, each step tried whatever the
    /// others did; returns every failure.
    fn del_inner(&self, attachment: &Attachment, veth: VethEnd) -> Vec<DefaultNetworkError> {
        let id = &attachment.sandbox_id;
        let mut errors = Vec::new();
        if let Err(error) = check_attachment(attachment) {
            return vec![error];
        }
        let record = match self.records.read(id) {
            Ok(Some(record)) => record,
            Ok(None) => {
                // No record: `add` failed before writing it, or `del` ran
                // already. Leases of this sandbox may remain (a crash between
                // the lease and the record); the rules cannot.
                let ips = self.leases.held_by(id).unwrap_or_else(|error| {
                    errors.push(error.into());
                    Vec::new()
                });
                Record {
                    ips,
                    mappings: Vec::new(),
                }
            }
            Err(error) => {
                errors.push(error.into());
                Record {
                    ips: self.leases.held_by(id).unwrap_or_default(),
                    mappings: attachment.port_mappings.clone(),
                }
            }
        };
        // The rules' removal runs while the veth is deleted: both wait for
        // the kernel (RCU grace periods), not for each other.
        let chain = iptables::sandbox_chain(hash64(id));
        let mut pending = Vec::new();
        for &ip in &record.ips {
            if record.mappings.iter().any(|m| iptables::applies(m, ip)) {
                let batch = iptables::delete_hostports(&chain, ip, &record.mappings);
                pending.push((ip, iptables::start_restore(Family::of(ip), &batch)));
            }
        }
        let host_veth = host_veth_name(id);
        let removed = Netlink::open().and_then(|mut nl| match veth {
            VethEnd::Delete => nl.delete_link(&host_veth),
            VethEnd::WithNamespace => nl.release_link(&host_veth),
        });
        if let Err(source) = removed {
            errors.push(DefaultNetworkError::Netlink {
                step: format!("delete veth {host_veth}"),
                source,
            });
        }
        for (ip, started) in pending {
            let exact = started.and_then(iptables::Restore::wait);
            if let Err(error) = exact.or_else(|_| delete_leftover_rules(&chain, ip)) {
                errors.push(DefaultNetworkError::Iptables {
                    step: format!("remove the hostPort rules of sandbox {id}"),
                    source: error,
                });
            }
        }
        for &ip in &record.ips {
            if let Err(error) = self.leases.release(ip, id) {
                errors.push(error.into());
            }
        }
        if let Err(error) = self.records.release_ports(id, &record.mappings) {
            errors.push(error.into());
        }
        if errors.is_empty() {
            if let Err(error) = self.records.remove(id) {
                errors.push(error.into());
            }
        }
        errors
    }
}

/// Whether the link `name` is a veth a `del` released: down and in no bridge.
fn released_leftover(nl: &mut Netlink, name: &str) -> bool {
    use netlink_packet_route::link::LinkAttribute;
    matches!(nl.link(name), Ok(Some(link))
        if !netlink::is_up(&link)
            && !link.attributes.iter().any(|a| matches!(a, LinkAttribute::Controller(_))))
}

/// How a `del` ends the sandbox's veth pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VethEnd {
    /// Deleted now: the caller keeps the namespace (or may).
    Delete,
    /// Taken down and off the bridge now, removed by the kernel with the
    /// namespace, which the caller drops next. The deletion's ~17 ms of RCU
    /// grace periods (FIELD-NOTES) leave StopPodSandbox's path; the pod is
    /// off the bridge at once, so its address can be leased again safely.
    WithNamespace,
}

/// The node-wide lock of the default networks' shared objects
/// (`/run/podrun-network.lock`, flock), held while they are made or removed;
/// released when dropped. Without /run writable it is not taken (one
/// process then races only with itself, which the in-process lock covers).
struct NodeLock {
    /// Held open while the lock is: closing it releases the flock.
    _file: Option<File>,
}

impl NodeLock {
    const PATH: &'static str = "/run/podrun-network.lock";

    fn take() -> NodeLock {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Self::PATH)
            .ok();
        if let Some(file) = &file {
            let _ = rustix::fs::flock(file, rustix::fs::FlockOperation::LockExclusive);
        }
        NodeLock { _file: file }
    }
}

/// What a failed `add` must take back, in the order it was made.
#[derive(Debug, Default)]
struct Undo {
    ports: bool,
    ips: Vec<IpAddr>,
    record: bool,
    veth: Option<String>,
    rules: Vec<IpAddr>,
}

impl DefaultNetwork {
    fn undo(&self, attachment: &Attachment, undo: Undo) -> Vec<String> {
        let id = &attachment.sandbox_id;
        let mut failures = Vec::new();
        let chain = iptables::sandbox_chain(hash64(id));
        for ip in undo.rules {
            if let Err(e) = delete_rules(&chain, ip, &attachment.port_mappings) {
                failures.push(format!("remove hostPort rules: {e}"));
            }
        }
        if let Some(veth) = undo.veth {
            if let Err(e) = Netlink::open().and_then(|mut nl| nl.delete_link(&veth)) {
                failures.push(format!("delete veth {veth}: {e}"));
            }
        }
        if undo.record {
            if let Err(e) = self.records.remove(id) {
                failures.push(e.to_string());
            }
        }
        for ip in undo.ips {
            if let Err(e) = self.leases.release(ip, id) {
                failures.push(e.to_string());
            }
        }
        if undo.ports {
            if let Err(e) = self.records.release_ports(id, &attachment.port_mappings) {
                failures.push(e.to_string());
            }
        }
        failures
    }
}

impl PodNetwork for DefaultNetwork {
    fn name(&self) -> &str {
        NETWORK_NAME
    }

    fn add(&self, attachment: &Attachment) -> Result<NetworkStatus, NetworkError> {
        let mut undo = Undo::default();
        self.add_inner(attachment, &mut undo).map_err(|error| {
            let failures = self.undo(attachment, undo);
            let mut message = format!("add sandbox {}: {error}", attachment.sandbox_id);
            if !failures.is_empty() {
                message.push_str(&format!(
                    "; undoing it also failed: {}",
                    failures.join("; ")
                ));
            }
            NetworkError {
                network: NETWORK_NAME.to_owned(),
                message,
            }
        })
    }

    fn del(&self, attachment: &Attachment) -> Result<(), NetworkError> {
        self.del_ending(attachment, VethEnd::Delete)
    }

    fn del_then_drop_netns(&self, attachment: &Attachment) -> Result<(), NetworkError> {
        self.del_ending(attachment, VethEnd::WithNamespace)
    }

    fn ready(&self) -> Result<(), NetworkError> {
        for (family, _) in self.families() {
            iptables::available(family).map_err(|error| NetworkError {
                network: NETWORK_NAME.to_owned(),
                message: format!("not ready: {error}"),
            })?;
        }
        Ok(())
    }
}

/// Removes the sandbox's hostPort rules of one family: the exact batch, or,
/// if part of it was gone already, whatever of it the live rules still hold.
fn delete_rules(
    chain: &str,
    ip: IpAddr,
    mappings: &[crate::network::PortMapping],
) -> Result<(), IptablesError> {
    let family = Family::of(ip);
    if iptables::restore(family, &iptables::delete_hostports(chain, ip, mappings)).is_ok() {
        return Ok(());
    }
    delete_leftover_rules(chain, ip)
}

/// Removes whatever of the sandbox's chain and jumps the live rules hold.
fn delete_leftover_rules(chain: &str, ip: IpAddr) -> Result<(), IptablesError> {
    let family = Family::of(ip);
    let saved = iptables::save(family)?;
    iptables::restore(family, &iptables::delete_leftovers(chain, &saved))
}

/// In the pod's namespace: `lo` up, the addresses on the interface, the
/// default routes through the gateways.
fn configure_pod_side(
    ifname: &str,
    ips: &[IpAddr],
    subnets: &[Subnet],
) -> Result<(), DefaultNetworkError> {
    let mut nl = Netlink::open().map_err(netlink_error("open a netlink socket in the pod"))?;
    nl.set_up(netlink::LOOPBACK_INDEX)
        .map_err(netlink_error("set lo up in the pod"))?;
    let index = nl
        .link(ifname)
        .map_err(netlink_error(format!("look up {ifname} in the pod")))?
        .ok_or_else(|| DefaultNetworkError::Netlink {
            step: format!("look up {ifname} in the pod"),
            source: io::Error::from(io::ErrorKind::NotFound),
        })?
        .header
        .index;
    nl.set_up(index)
        .map_err(netlink_error(format!("set {ifname} up in the pod")))?;
    for (ip, subnet) in ips.iter().zip(subnets) {
        nl.add_address(index, *ip, subnet.prefix())
            .map_err(netlink_error(format!(
                "add address {ip}/{} to {ifname} in the pod",
                subnet.prefix()
            )))?;
    }
    for subnet in subnets {
        nl.add_default_route(subnet.gateway())
            .map_err(netlink_error(format!(
                "add the default route via {} in the pod",
                subnet.gateway()
            )))?;
    }
    Ok(())
}

/// Writes `1` to a sysctl unless it holds it already.
fn set_sysctl(path: &str) -> Result<(), DefaultNetworkError> {
    if fs::read_to_string(path).is_ok_and(|value| value.trim() == "1") {
        return Ok(());
    }
    fs::write(path, "1").map_err(|source| DefaultNetworkError::Sysctl {
        path: path.to_owned(),
        source,
    })
}

/// The sandbox ID names files and the interface name a link: refuse what
/// could escape the state directory or the kernel would refuse.
fn check_attachment(attachment: &Attachment) -> Result<(), DefaultNetworkError> {
    let id = &attachment.sandbox_id;
    let error = |reason: String| DefaultNetworkError::Attachment {
        sandbox_id: id.clone(),
        reason,
    };
    if id.is_empty()
        || id.starts_with('.')
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(error(
            "the sandbox ID must be letters, digits, '-', '_' or '.', not starting with '.'"
                .to_owned(),
        ));
    }
    let ifname = &attachment.ifname;
    if ifname.is_empty()
        || ifname.len() > 15
        || ifname.contains(['/', ' ', ':'])
        || ifname == "."
        || ifname == ".."
    {
        return Err(error(format!(
            "interface name {ifname:?} is not valid (1 to 15 bytes, no '/', ':' or space)"
        )));
    }
    Ok(())
}

/// FNV-1a, 64 bits: a stable hash of the sandbox ID for names.
fn hash64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The bridge's MAC address: locally administered, unicast, stable for a name.
fn bridge_mac(bridge: &str) -> [u8; 6] {
    let hash = hash64(bridge).to_be_bytes();
    [
        (hash[0] & 0xfc) | 0x02,
        hash[1],
        hash[2],
        hash[3],
        hash[4],
        hash[5],
    ]
}

/// The host end of the sandbox's veth pair: `veth` and 8 hex digits (12 bytes).
pub fn host_veth_name(sandbox_id: &str) -> String {
    format!("veth{:08x}", hash64(sandbox_id) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_stable_and_distinct() {
        assert_eq!(host_veth_name("abc"), host_veth_name("abc"));
        assert_ne!(host_veth_name("abc"), host_veth_name("abd"));
        assert_eq!(host_veth_name(&"f".repeat(64)).len(), 12);
    }

    #[test]
    fn configs_that_cannot_work_are_refused() {
        let base = DefaultNetworkConfig::default();
        for (config, why) in [
            (
                DefaultNetworkConfig {
                    bridge: "a-very-long-bridge".into(),
                    ..base.clone()
                },
                "bridge name",
            ),
            (
                DefaultNetworkConfig {
                    subnet: "fd00::/64".parse().unwrap(),
                    ..base.clone()
                },
                "must be IPv4",
            ),
            (
                DefaultNetworkConfig {
                    subnet6: Some("10.1.0.0/16".parse().unwrap()),
                    ..base.clone()
                },
                "must be IPv6",
            ),
        ] {
            let error = DefaultNetwork::new(config).unwrap_err().to_string();
            assert!(error.contains(why), "{error}");
        }
    }
}
