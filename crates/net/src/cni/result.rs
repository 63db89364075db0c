//! What a plugin prints after ADD: its result, in the shape of its version.
//!
//! Versions 0.3.0 to 1.1.0 share one shape (`interfaces`, `ips` with an
//! `interface` index, `routes`, `dns`; 0.3.x/0.4.0 also give each IP a
//! `version`, dropped in 1.0.0). Versions 0.1.0 and 0.2.0 give `ip4` and `ip6`
//! objects and no interfaces. A result without `cniVersion` has the config's
//! (libcni `fixupResultVersion`).

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::conf::version_at_least;
use crate::NetworkStatus;

/// An interface a plugin made or changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its hardware address, if given.
    pub mac: String,
    /// The network namespace it is in (the `CNI_NETNS` path); empty on the host.
    pub sandbox: String,
}

/// An address a plugin assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The gateway, if given.
    pub gateway: Option<IpAddr>,
    /// The index into [`CniResult::interfaces`] of the interface holding it.
    pub interface: Option<usize>,
}

/// A route a plugin added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination and prefix length.
    pub dst: (IpAddr, u8),
    /// The next hop, if given.
    pub gw: Option<IpAddr>,
}

/// The DNS settings a plugin suggests.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Dns {
    /// `nameservers`.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// `domain`.
    #[serde(default)]
    pub domain: String,
    /// `search`.
    #[serde(default)]
    pub search: Vec<String>,
    /// `options`.
    #[serde(default)]
    pub options: Vec<String>,
}

/// An ADD result, whichever version it came in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniResult {
    /// The result's version.
    pub cni_version: String,
    /// The interfaces.
    pub interfaces: Vec<Interface>,
    /// The addresses, in the plugin's order.
    pub ips: Vec<IpConfig>,
    /// The routes.
    pub routes: Vec<Route>,
    /// The DNS settings.
    pub dns: Dns,
}

#[derive(Deserialize)]
struct RawInterface {
    name: String,
    #[serde(default)]
    mac: String,
    #[serde(default)]
    sandbox: String,
}

#[derive(Deserialize)]
struct RawIp {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    interface: Option<usize>,
}

#[derive(Deserialize)]
struct RawRoute {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
}

#[derive(Deserialize)]
struct Current {
    #[serde(default)]
    interfaces: Vec<RawInterface>,
    #[serde(default)]
    ips: Vec<RawIp>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    dns: Option<Dns>,
}

#[derive(Deserialize)]
struct LegacyIp {
    ip: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Deserialize)]
struct Legacy {
    #[serde(default)]
    ip4: Option<LegacyIp>,
    #[serde(default)]
    ip6: Option<LegacyIp>,
    #[serde(default)]
    dns: Option<Dns>,
}

/// `10.1.2.3/24` → the address and the prefix length.
fn cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: not an address with a prefix length"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{s:?}: not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= max)
        .ok_or_else(|| format!("{s:?}: bad prefix length"))?;
    Ok((addr, len))
}

fn ip(s: &Option<String>) -> Result<Option<IpAddr>, String> {
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("{s:?}: not an IP address")),
    }
}

fn routes(raw: Vec<RawRoute>) -> Result<Vec<Route>, String> {
    raw.into_iter()
        .map(|r| {
            Ok(Route {
                dst: cidr(&r.dst)?,
                gw: ip(&r.gw)?,
            })
        })
        .collect()
}

/// Parses a result; `default_version` is the config's, for a result without one.
pub fn parse(value: &Value, default_version: &str) -> Result<CniResult, String> {
    let version = match value.get("cniVersion") {
        Some(Value::String(v)) if !v.is_empty() => v.clone(),
        _ => default_version.to_string(),
    };
    if version_at_least(&version, "0.3.0") {
        let raw = Current::deserialize(value).map_err(|e| e.to_string())?;
        let interfaces: Vec<Interface> = raw
            .interfaces
            .into_iter()
            .map(|i| Interface {
                name: i.name,
                mac: i.mac,
                sandbox: i.sandbox,
            })
            .collect();
        let ips = raw
            .ips
            .into_iter()
            .enumerate()
            .map(|(n, i)| {
                let (address, prefix_len) = cidr(&i.address)?;
                if i.interface.is_some_and(|x| x >= interfaces.len()) {
                    return Err(format!(
                        "ips[{n}].interface {} is out of range ({} interfaces)",
                        i.interface.unwrap_or_default(),
                        interfaces.len()
                    ));
                }
                Ok(IpConfig {
                    address,
                    prefix_len,
                    gateway: ip(&i.gateway)?,
                    interface: i.interface,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(CniResult {
            cni_version: version,
            interfaces,
            ips,
            routes: routes(raw.routes)?,
            dns: raw.dns.unwrap_or_default(),
        })
    } else if matches!(version.as_str(), "0.1.0" | "0.2.0") {
        let raw = Legacy::deserialize(value).map_err(|e| e.to_string())?;
        let mut result = CniResult {
            cni_version: version,
            dns: raw.dns.unwrap_or_default(),
            ..CniResult::default()
        };
        for legacy in [raw.ip4, raw.ip6].into_iter().flatten() {
            let (address, prefix_len) = cidr(&legacy.ip)?;
            result.ips.push(IpConfig {
                address,
                prefix_len,
                gateway: ip(&legacy.gateway)?,
                interface: None,
            });
            result.routes.extend(routes(legacy.routes)?);
        }
        Ok(result)
    } else {
        Err(format!("unsupported result version {version:?}"))
    }
}

impl CniResult {
    /// The pod's addresses: those on an interface inside the sandbox (its
    /// `sandbox` is the namespace path), preferring one named `ifname`, in the
    /// result's order (the plugin lists IPv4 first unless its config puts IPv6
    /// first). A result that ties no address to an interface (0.2.0, or a
    /// plugin that leaves `interface` out) gives its unattached addresses.
    pub fn status(&self, netns: &Path, ifname: &str) -> NetworkStatus {
        let netns = netns.to_string_lossy();
        let in_sandbox = |i: &Interface| !i.sandbox.is_empty() && i.sandbox == netns;
        let chosen = self
            .interfaces
            .iter()
            .position(|i| in_sandbox(i) && i.name == ifname)
            .or_else(|| self.interfaces.iter().position(in_sandbox))
            .or_else(|| {
                // A plugin may canonicalize the path it was given.
                self.interfaces
                    .iter()
                    .position(|i| !i.sandbox.is_empty() && i.name == ifname)
            });
        let ips: Vec<IpAddr> = match chosen {
            Some(index) => self
                .ips
                .iter()
                .filter(|ip| ip.interface == Some(index))
                .map(|ip| ip.address)
                .collect(),
            None => Vec::new(),
        };
        let ips = if ips.is_empty() {
            self.ips
                .iter()
                .filter(|ip| ip.interface.is_none())
                .map(|ip| ip.address)
                .collect()
        } else {
            ips
        };
        NetworkStatus {
            ips,
            interface: chosen
                .map(|i| self.interfaces[i].name.clone())
                .unwrap_or_else(|| ifname.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What bridge + host-local 1.1.1 print for cniVersion 0.4.0.
    fn v040() -> Value {
        json!({
            "cniVersion": "0.4.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/p1"}
            ],
            "ips": [
                {"version": "4", "interface": 2, "address": "10.22.0.5/16", "gateway": "10.22.0.1"},
                {"version": "6", "interface": 2, "address": "fd00::5/64", "gateway": "fd00::1"}
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1"}],
            "dns": {"nameservers": ["10.22.0.1"], "search": ["svc.local"]}
        })
    }

    #[test]
    fn a_0_4_0_result_parses() {
        let r = parse(&v040(), "1.0.0").unwrap();
        assert_eq!(r.cni_version, "0.4.0");
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.interfaces[2].sandbox, "/run/netns/p1");
        assert_eq!(
            r.ips[0],
            IpConfig {
                address: "10.22.0.5".parse().unwrap(),
                prefix_len: 16,
                gateway: Some("10.22.0.1".parse().unwrap()),
                interface: Some(2),
            }
        );
        assert_eq!(
            r.routes[0],
            Route {
                dst: ("0.0.0.0".parse().unwrap(), 0),
                gw: None
            }
        );
        assert_eq!(r.routes[1].gw, Some("fd00::1".parse().unwrap()));
        assert_eq!(r.dns.nameservers, ["10.22.0.1"]);
        assert_eq!(r.dns.search, ["svc.local"]);
        let status = r.status(Path::new("/run/netns/p1"), "eth0");
        assert_eq!(status.interface, "eth0");
        assert_eq!(
            status.ips,
            [
                "10.22.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
    }

    #[test]
    fn a_1_0_0_result_gives_only_the_sandbox_interfaces_addresses_in_its_order() {
        let r = parse(
            &json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "br0"},
                    {"name": "eth0", "sandbox": "/run/netns/p2"}
                ],
                "ips": [
                    {"interface": 0, "address": "10.0.0.1/24"},
                    {"interface": 1, "address": "fd00::7/64"},
                    {"interface": 1, "address": "10.0.0.7/24", "gateway": "10.0.0.1"}
                ]
            }),
            "1.0.0",
        )
        .unwrap();
        assert_eq!(r.dns, Dns::default());
        let status = r.status(Path::new("/run/netns/p2"), "eth0");
        assert_eq!(
            status.ips,
            [
                "fd00::7".parse::<IpAddr>().unwrap(),
                "10.0.0.7".parse().unwrap()
            ]
        );
    }

    #[test]
    fn a_result_without_version_has_the_configs_and_legacy_results_parse() {
        let r = parse(&json!({"ips": [{"address": "10.0.0.2/8"}]}), "1.1.0").unwrap();
        assert_eq!(r.cni_version, "1.1.0");
        assert_eq!(
            r.status(Path::new("/run/netns/x"), "eth0").ips,
            ["10.0.0.2".parse::<IpAddr>().unwrap()]
        );
        let r = parse(
            &json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1",
                    "routes": [{"dst": "0.0.0.0/0"}]}, "ip6": {"ip": "fd::5/64"}}),
            "0.2.0",
        )
        .unwrap();
        assert_eq!(r.ips.len(), 2);
        assert_eq!(r.routes.len(), 1);
        assert_eq!(
            r.status(Path::new("/n"), "eth0").ips,
            [
                "10.1.0.5".parse::<IpAddr>().unwrap(),
                "fd::5".parse().unwrap()
            ]
        );
    }

    #[test]
    fn bad_results_say_what_is_wrong() {
        let cases = [
            (
                json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2"}]}),
                "not an address with a prefix length",
            ),
            (
                json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/33"}]}),
                "bad prefix length",
            ),
            (
                json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/8", "interface": 3}]}),
                "out of range",
            ),
            (json!({"cniVersion": "1.0.0", "ips": "x"}), "invalid type"),
            (json!({"cniVersion": "7.0"}), "unsupported result version"),
        ];
        for (value, want) in cases {
            let err = parse(&value, "1.0.0").unwrap_err();
            assert!(err.contains(want), "{value}: {err}");
        }
    }
}
