//! The lease store: host-local's on-disk IPAM. One file per leased address,
//! named by the address and holding the sandbox ID and interface, created with
//! `O_EXCL` so two concurrent adds (threads or processes) never take the same
//! address; the next search starts after the address handed out last
//! (`last_reserved_ip.<n>`, as host-local remembers it), so a released address
//! is not reused at once. The files outlive the process and a reboot, which is
//! why [`Leases::all`] lists them for the runtime to release leftovers.
//! (Rules: containernetworking/plugins plugins/ipam/host-local/backend/disk.)

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// An IP subnet in CIDR notation: `10.88.0.0/16`, `fd00:88::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: IpAddr,
    prefix: u8,
}

/// Why a subnet could not be parsed or used.
#[derive(Debug, thiserror::Error)]
#[error("subnet {text:?}: {reason}")]
pub struct SubnetError {
    text: String,
    reason: &'static str,
}

impl Subnet {
    /// The subnet of `address/prefix`; host bits must be zero.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Subnet, SubnetError> {
        let error = |reason| SubnetError {
            text: format!("{network}/{prefix}"),
            reason,
        };
        let bits = bits(network);
        if prefix > bits {
            return Err(error("the prefix is longer than the address"));
        }
        // A /31 or /32 (/127, /128) has no address left for a pod after the
        // gateway; host-local refuses them too.
        if bits - prefix < 2 {
            return Err(error("too small: it leaves no address for a pod"));
        }
        if to_u128(network) & !mask(bits, prefix) != 0 {
            return Err(error("host bits are set (write the network address)"));
        }
        Ok(Subnet { network, prefix })
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `address` is in the subnet.
    pub fn contains(&self, address: IpAddr) -> bool {
        address.is_ipv4() == self.network.is_ipv4()
            && to_u128(address) & mask(bits(address), self.prefix) == to_u128(self.network)
    }

    /// The gateway: the first host address (`10.88.0.1`).
    pub fn gateway(&self) -> IpAddr {
        from_u128(self.network, to_u128(self.network) + 1)
    }

    /// The addresses leased to pods, first and last: after the gateway, up to
    /// the last address before the IPv4 broadcast address.
    fn range(&self) -> (u128, u128) {
        let first = to_u128(self.network) + 2;
        let host_bits = u32::from(bits(self.network) - self.prefix);
        let size = 1u128.checked_shl(host_bits).unwrap_or(0).wrapping_sub(1);
        let mut last = to_u128(self.network) + size;
        if self.network.is_ipv4() {
            last -= 1;
        }
        (first, last)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = SubnetError;

    fn from_str(text: &str) -> Result<Subnet, SubnetError> {
        let error = |reason| SubnetError {
            text: text.to_owned(),
            reason,
        };
        let (address, prefix) = text.split_once('/').ok_or_else(|| error("no /prefix"))?;
        let address: IpAddr = address.parse().map_err(|_| error("not an IP address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| error("not a prefix length"))?;
        Subnet::new(address, prefix)
    }
}

fn bits(address: IpAddr) -> u8 {
    if address.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask(bits: u8, prefix: u8) -> u128 {
    let all = if bits == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    let host = all.checked_shr(u32::from(prefix)).unwrap_or(0);
    all & !host
}

fn to_u128(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(family: IpAddr, value: u128) -> IpAddr {
    match family {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(value as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// Why a lease could not be taken or released.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Every address of the subnet is leased.
    #[error("no free address in subnet {subnet}: all of its {count} pod addresses are leased")]
    Exhausted {
        /// The subnet.
        subnet: Subnet,
        /// How many addresses it has for pods.
        count: u128,
    },
    /// The lease store could not be read or written.
    #[error("lease store {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// The lease files of one network, in one directory.
#[derive(Debug, Clone)]
pub(crate) struct Leases {
    dir: PathBuf,
}

impl Leases {
    pub(crate) fn new(dir: PathBuf) -> Leases {
        Leases { dir }
    }

    fn io(&self, path: &Path) -> impl FnOnce(io::Error) -> LeaseError {
        let path = path.to_path_buf();
        move |source| LeaseError::Io { path, source }
    }

    /// Leases a free address of `subnet` (index `n` of the network's
    /// subnets, for the last-reserved file) to the sandbox's interface.
    pub(crate) fn allocate(
        &self,
        subnet: &Subnet,
        n: usize,
        sandbox_id: &str,
        ifname: &str,
    ) -> Result<IpAddr, LeaseError> {
        fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let last_path = self.dir.join(format!("last_reserved_ip.{n}"));
        let (first, last) = subnet.range();
        let start = fs::read_to_string(&last_path)
            .ok()
            .and_then(|text| text.trim().parse::<IpAddr>().ok())
            .filter(|ip| subnet.contains(*ip))
            .map(to_u128)
            .filter(|value| (first..=last).contains(value))
            .map(|value| if value == last { first } else { value + 1 })
            .unwrap_or(first);
        let count = last - first + 1;
        let mut candidate = start;
        for _ in 0..count {
            let ip = from_u128(subnet.network, candidate);
            let path = self.dir.join(ip.to_string());
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let written = file
                        .write_all(format!("{sandbox_id}\n{ifname}").as_bytes())
                        .map_err(self.io(&path));
                    if let Err(error) = written {
                        let _ = fs::remove_file(&path);
                        return Err(error);
                    }
                    // Only a hint for the next search: a failure costs nothing.
                    let _ = fs::write(&last_path, ip.to_string());
                    return Ok(ip);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.io(&path)(e)),
            }
            candidate = if candidate == last {
                first
            } else {
                candidate + 1
            };
        }
        Err(LeaseError::Exhausted {
            subnet: *subnet,
            count,
        })
    }

    /// Releases `ip` if the sandbox holds it; `Ok(false)` if it holds no such
    /// lease (released already, or another sandbox's).
    pub(crate) fn release(&self, ip: IpAddr, sandbox_id: &str) -> Result<bool, LeaseError> {
        let path = self.dir.join(ip.to_string());
        match fs::read_to_string(&path) {
            Ok(text) if owner(&text) == sandbox_id => match fs::remove_file(&path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(self.io(&path)(e)),
            },
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    /// Every lease: the address and the sandbox holding it.
    pub(crate) fn all(&self) -> Result<Vec<(IpAddr, String)>, LeaseError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(&self.dir)(e)),
        };
        let mut leases = Vec::new();
        for entry in entries {
            let entry = entry.map_err(self.io(&self.dir))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<IpAddr>().ok())
            else {
                continue;
            };
            match fs::read_to_string(entry.path()) {
                Ok(text) => leases.push((ip, owner(&text).to_owned())),
                // Released while we listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io(&entry.path())(e)),
            }
        }
        leases.sort();
        Ok(leases)
    }

    /// The addresses the sandbox holds (a full scan: for a `del` that lost
    /// its record).
    pub(crate) fn held_by(&self, sandbox_id: &str) -> Result<Vec<IpAddr>, LeaseError> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|(_, owner)| owner == sandbox_id)
            .map(|(ip, _)| ip)
            .collect())
    }
}

/// The sandbox ID in a lease file: its first line.
fn owner(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(text: &str) -> Subnet {
        text.parse().expect("valid subnet")
    }

    #[test]
    fn subnets_parse_and_refuse_what_host_local_refuses() {
        let s = subnet("10.88.0.0/16");
        assert_eq!(s.gateway(), "10.88.0.1".parse::<IpAddr>().unwrap());
        assert!(s.contains("10.88.255.254".parse().unwrap()));
        assert!(!s.contains("10.89.0.1".parse().unwrap()));
        assert!(!s.contains("::1".parse().unwrap()));
        assert_eq!(s.to_string(), "10.88.0.0/16");
        let six = subnet("fd00:88::/64");
        assert_eq!(six.gateway(), "fd00:88::1".parse::<IpAddr>().unwrap());
        for (bad, why) in [
            ("10.88.0.1/16", "host bits"),
            ("10.88.0.0/31", "too small"),
            ("10.88.0.0/33", "longer"),
            ("10.88.0.0", "no /prefix"),
            ("ten/8", "not an IP"),
        ] {
            let error = bad.parse::<Subnet>().unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn the_range_skips_network_gateway_and_broadcast() {
        assert_eq!(subnet("10.0.0.0/30").range(), (0x0a00_0002, 0x0a00_0002));
        assert_eq!(subnet("10.0.0.0/24").range(), (0x0a00_0002, 0x0a00_00fe));
        let (first, last) = subnet("fd00::/126").range();
        assert_eq!(last - first, 1, "IPv6 has no broadcast address");
    }

    #[test]
    fn allocation_goes_on_from_the_last_lease_wraps_and_is_exhausted() {
        let dir = tempfile::tempdir().unwrap();
        let leases = Leases::new(dir.path().join("leases"));
        let s = subnet("10.9.0.0/29"); // .2 to .6
        let take = |id: &str| leases.allocate(&s, 0, id, "eth0").map(|ip| ip.to_string());
        assert_eq!(take("a").unwrap(), "10.9.0.2");
        assert_eq!(take("b").unwrap(), "10.9.0.3");
        assert!(leases.release("10.9.0.2".parse().unwrap(), "a").unwrap());
        // A released address is not reused before the others.
        assert_eq!(take("c").unwrap(), "10.9.0.4");
        assert_eq!(take("d").unwrap(), "10.9.0.5");
        assert_eq!(take("e").unwrap(), "10.9.0.6");
        assert_eq!(take("f").unwrap(), "10.9.0.2");
        let error = take("g").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no free address in subnet 10.9.0.0/29"),
            "{error}"
        );
        assert_eq!(
            leases.held_by("d").unwrap(),
            ["10.9.0.5".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(leases.all().unwrap().len(), 5);
        // Another sandbox's lease is not released; an absent one is no error.
        assert!(!leases.release("10.9.0.5".parse().unwrap(), "a").unwrap());
        assert!(!leases.release("10.9.0.2".parse().unwrap(), "a").unwrap());
        let text = fs::read_to_string(dir.path().join("leases/10.9.0.5")).unwrap();
        assert_eq!(text, "d\neth0");
    }

    #[test]
    fn concurrent_allocations_never_share_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let s = subnet("10.9.0.0/24");
        let ips: Vec<IpAddr> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let leases = Leases::new(dir.path().to_path_buf());
                    scope.spawn(move || {
                        (0..20)
                            .map(|i| {
                                leases
                                    .allocate(&s, 0, &format!("s{t}-{i}"), "eth0")
                                    .unwrap()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let mut unique = ips.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 160);
    }
}
