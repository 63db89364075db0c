//! The node's addresses (`status.hostIP`, `status.hostIPs`, and a
//! `hostNetwork` pod's `status.podIPs`).
//!
//! kubelet without `--node-ip` takes the address of the interface of the
//! default route (pkg/kubelet/nodestatus/setters.go NodeAddress, through
//! apimachinery's ChooseHostInterface), and reports at most one address of
//! each family, the primary first (GetNodeHostIPs). podrun does the same for
//! both families:
//!
//! 1. IPv4: the first IPv4 address of the interface of the IPv4 default route
//!    (the one with the lowest metric); with no default route, the first IPv4
//!    address of an interface that is up and not loopback (where kubelet would
//!    give up, a standalone node still has an address its pods can reach);
//! 2. IPv6: the first global IPv6 address (not link-local) of the interface of
//!    the IPv6 default route, if there is one.
//!
//! A node with neither (only loopback) has no address: `status.hostIP` stays
//! unset and the downward API's `status.hostIP` reads empty. Not 127.0.0.1:
//! in a pod's own network namespace that address is the pod itself, never the
//! node.

use std::net::IpAddr;

/// One address of an interface, as getifaddrs(3) lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterfaceAddress {
    /// The interface's name.
    pub interface: String,
    /// The address.
    pub ip: IpAddr,
    /// Whether the interface is up.
    pub up: bool,
    /// Whether it is a loopback interface.
    pub loopback: bool,
}

/// The node's addresses, IPv4 first (see the module's documentation), read
/// at most every 10 s (kubelet's node status update frequency): a pod's start
/// and each sync ask, and two netlink dumps per ask cost milliseconds.
pub(crate) fn node_ips() -> Vec<IpAddr> {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    static CACHE: Mutex<Option<(Instant, Vec<IpAddr>)>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, ips)) = cache.as_ref() {
        if at.elapsed() < Duration::from_secs(10) {
            return ips.clone();
        }
    }
    let ips = read_node_ips();
    *cache = Some((Instant::now(), ips.clone()));
    ips
}

/// [`node_ips`] read now.
fn read_node_ips() -> Vec<IpAddr> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    choose(
        &interface_addresses(),
        default_route_v4(&read("/proc/net/route")).as_deref(),
        default_route_v6(&read("/proc/net/ipv6_route")).as_deref(),
    )
}

/// Every address of every interface (none if getifaddrs fails).
fn interface_addresses() -> Vec<InterfaceAddress> {
    use nix::net::if_::InterfaceFlags;
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|ifa| {
            let address = ifa.address.as_ref()?;
            let ip = match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
                (Some(v4), _) => IpAddr::V4(v4.ip()),
                (_, Some(v6)) => IpAddr::V6(v6.ip()),
                _ => return None,
            };
            Some(InterfaceAddress {
                interface: ifa.interface_name.clone(),
                ip,
                up: ifa.flags.contains(InterfaceFlags::IFF_UP),
                loopback: ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK),
            })
        })
        .collect()
}

/// The node's addresses from its interfaces' addresses and the interfaces of
/// its default routes.
pub(crate) fn choose(
    addresses: &[InterfaceAddress],
    v4_route: Option<&str>,
    v6_route: Option<&str>,
) -> Vec<IpAddr> {
    let usable = |a: &&InterfaceAddress| a.up && !a.loopback && !a.ip.is_loopback();
    let v4 = match v4_route {
        Some(interface) => addresses
            .iter()
            .filter(usable)
            .find(|a| a.interface == interface && a.ip.is_ipv4()),
        None => addresses.iter().filter(usable).find(|a| a.ip.is_ipv4()),
    };
    let v6 = v6_route.and_then(|interface| {
        addresses.iter().filter(usable).find(|a| {
            a.interface == interface && matches!(a.ip, IpAddr::V6(ip) if !is_link_local_v6(&ip))
        })
    });
    [v4, v6].into_iter().flatten().map(|a| a.ip).collect()
}

fn is_link_local_v6(ip: &std::net::Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The interface of the IPv4 default route with the lowest metric, from
/// `/proc/net/route` (columns: Iface Destination Gateway Flags RefCnt Use
/// Metric Mask …, numbers in hex but the metric).
pub(crate) fn default_route_v4(route: &str) -> Option<String> {
    const RTF_UP: u32 = 0x1;
    route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let default = *f.get(1)? == "00000000" && *f.get(7)? == "00000000";
            let metric: u32 = f.get(6)?.parse().ok()?;
            (default && flags & RTF_UP != 0).then(|| (metric, f[0].to_string()))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, interface)| interface)
}

/// The interface of the IPv6 default route with the lowest metric, from
/// `/proc/net/ipv6_route` (columns: destination, its prefix length, source,
/// its prefix length, next hop, metric, refcount, use, flags, interface; hex).
/// The kernel's unreachable default on `lo` (RTF_REJECT) is no route.
pub(crate) fn default_route_v6(route: &str) -> Option<String> {
    const RTF_UP: u32 = 0x1;
    const RTF_REJECT: u32 = 0x200;
    route
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let default = f[0].bytes().all(|b| b == b'0') && f[1] == "00";
            let metric = u32::from_str_radix(f[5], 16).ok()?;
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            let usable = flags & RTF_UP != 0 && flags & RTF_REJECT == 0;
            (default && usable).then(|| (metric, f[9].to_string()))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, interface)| interface)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's tables (a dual-stack eth0), and a second, costlier default.
    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
        eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
        eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
    const IPV6_ROUTE: &str = "\
        fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0\n\
        00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n\
        00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";

    fn addr(interface: &str, ip: &str) -> InterfaceAddress {
        InterfaceAddress {
            interface: interface.into(),
            ip: ip.parse().unwrap(),
            up: true,
            loopback: interface == "lo",
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn the_default_routes_interfaces_are_found() {
        assert_eq!(default_route_v4(ROUTE).as_deref(), Some("eth0"));
        assert_eq!(default_route_v6(IPV6_ROUTE).as_deref(), Some("eth0"));
        let header_only = ROUTE.lines().next().unwrap();
        assert_eq!(default_route_v4(header_only), None);
        // Only the kernel's unreachable default on lo: no IPv6 default route.
        let lo_only = IPV6_ROUTE.lines().nth(2).unwrap();
        assert_eq!(default_route_v6(lo_only), None);
        assert_eq!(default_route_v4(""), None);
    }

    #[test]
    fn the_nodes_addresses_are_those_of_the_default_routes_interfaces() {
        let all = vec![
            addr("lo", "127.0.0.1"),
            addr("lo", "::1"),
            addr("docker0", "172.17.0.1"),
            addr("eth0", "192.0.2.2"),
            addr("eth0", "192.0.2.3"),
            addr("eth0", "fe80::fc:ff:fe00:1"),
            addr("eth0", "fd00::2"),
        ];
        assert_eq!(
            choose(&all, Some("eth0"), Some("eth0")),
            ips(&["192.0.2.2", "fd00::2"])
        );
        assert_eq!(choose(&all, Some("eth0"), None), ips(&["192.0.2.2"]));
        // No default route: the first IPv4 of an interface that is up.
        assert_eq!(choose(&all, None, None), ips(&["172.17.0.1"]));
        // An IPv6-only node.
        let v6 = vec![addr("lo", "::1"), addr("eth0", "fd00::2")];
        assert_eq!(choose(&v6, None, Some("eth0")), ips(&["fd00::2"]));
        // Only loopback: no address at all (never 127.0.0.1).
        let lo = vec![addr("lo", "127.0.0.1"), addr("lo", "::1")];
        assert_eq!(choose(&lo, None, None), Vec::<IpAddr>::new());
        assert_eq!(choose(&lo, Some("lo"), Some("lo")), Vec::<IpAddr>::new());
        // An interface that is down does not count.
        let mut down = addr("eth1", "198.51.100.1");
        down.up = false;
        assert_eq!(choose(&[down], None, None), Vec::<IpAddr>::new());
    }

    /// On this machine, the node's first address is an IPv4 address of the
    /// interface `ip route` names for the default route (needs iproute2).
    #[test]
    fn this_nodes_address_is_that_of_its_default_route() {
        let out = std::process::Command::new("ip")
            .args(["-4", "route", "show", "default"])
            .output()
            .expect("run ip (iproute2)");
        let text = String::from_utf8(out.stdout).unwrap();
        let Some(dev) = text
            .split_whitespace()
            .skip_while(|w| *w != "dev")
            .nth(1)
            .map(String::from)
        else {
            panic!("this test needs an IPv4 default route; `ip -4 route` shows none");
        };
        let out = std::process::Command::new("ip")
            .args(["-o", "-4", "addr", "show", "dev", &dev])
            .output()
            .expect("run ip (iproute2)");
        let text = String::from_utf8(out.stdout).unwrap();
        let first = text
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .map(|a| a.parse::<IpAddr>().unwrap());
        assert_eq!(node_ips().first().copied(), first, "dev {dev}");
    }
}
