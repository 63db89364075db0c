//! What the runtime tells a plugin about one attachment beyond the `CNI_*`
//! basics: `CNI_ARGS` (kubelet's `K8S_POD_*` labels, as containerd's CRI
//! passes them) and the capability arguments, of which each plugin gets in
//! `runtimeConfig` only those it declares (libcni `injectRuntimeConfig`).

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::conf::PluginConf;
use crate::Attachment;

/// The annotation giving a pod's ingress bandwidth limit (kubelet's, read
/// by containerd for the `bandwidth` capability).
pub const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
/// The annotation giving a pod's egress bandwidth limit.
pub const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";

/// One range of the `ipRanges` capability (CNI CONVENTIONS.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpRange {
    /// The subnet, `10.1.0.0/24`.
    pub subnet: String,
    /// The first address to hand out, if not the subnet's first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range_start: Option<String>,
    /// The last address to hand out, if not the subnet's last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range_end: Option<String>,
    /// The gateway, if not the subnet's first address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// The `dns` capability: the pod's DNS config (CRI `DNSConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DnsCapability {
    /// `servers`.
    pub servers: Vec<String>,
    /// `searches`.
    pub searches: Vec<String>,
    /// `options`.
    pub options: Vec<String>,
}

/// Capability arguments that are not in an [`crate::Attachment`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// The pod's DNS config, for plugins declaring `dns`.
    pub dns: Option<DnsCapability>,
}

/// Why an attachment's arguments are invalid.
#[derive(Debug, thiserror::Error)]
#[error("annotation {annotation}={value:?}: {reason}")]
pub struct BandwidthError {
    /// The annotation.
    pub annotation: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

/// `CNI_ARGS` as pairs, in containerd's order.
pub fn cni_args(att: &Attachment) -> Vec<[String; 2]> {
    [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", att.pod_namespace.as_str()),
        ("K8S_POD_NAME", att.pod_name.as_str()),
        ("K8S_POD_INFRA_CONTAINER_ID", att.sandbox_id.as_str()),
        ("K8S_POD_UID", att.pod_uid.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| [k.to_string(), v.to_string()])
    .collect()
}

/// `K=V;K=V`.
pub fn cni_args_string(pairs: &[[String; 2]]) -> String {
    pairs
        .iter()
        .map(|[k, v]| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// The capability arguments of one attachment: every one the runtime has a
/// value for, each plugin later taking only those it declares.
pub fn capability_args(
    att: &Attachment,
    ip_ranges: &[Vec<IpRange>],
    extras: &Extras,
) -> Result<Map<String, Value>, BandwidthError> {
    let mut caps = Map::new();
    let mappings: Vec<Value> = att
        .port_mappings
        .iter()
        .map(|m| {
            let mut v = json!({
                "hostPort": m.host_port,
                "containerPort": m.container_port,
                "protocol": m.protocol.as_str(),
            });
            if !m.host_ip.is_empty() {
                v["hostIP"] = Value::String(m.host_ip.clone());
            }
            v
        })
        .collect();
    caps.insert("portMappings".into(), Value::Array(mappings));
    if let Some(bw) = bandwidth(att)? {
        caps.insert("bandwidth".into(), bw);
    }
    if !ip_ranges.is_empty() {
        caps.insert("ipRanges".into(), json!(ip_ranges));
    }
    if let Some(dns) = &extras.dns {
        caps.insert("dns".into(), json!(dns));
    }
    caps.insert(
        "io.kubernetes.cri.pod-annotations".into(),
        json!(att.annotations),
    );
    if !att.cgroup_parent.is_empty() {
        caps.insert(
            "cgroupPath".into(),
            Value::String(att.cgroup_parent.clone()),
        );
    }
    Ok(caps)
}

/// The `bandwidth` capability from the pod's annotations, as containerd's CRI
/// builds it (`toCNIBandWidth`: rates in bits per second, bursts of
/// `math.MaxUint32`), with kubelet's bounds (pkg/util/bandwidth: 1k to 1P).
fn bandwidth(att: &Attachment) -> Result<Option<Value>, BandwidthError> {
    let mut bw = Map::new();
    for (annotation, rate, burst) in [
        (INGRESS_BANDWIDTH, "ingressRate", "ingressBurst"),
        (EGRESS_BANDWIDTH, "egressRate", "egressBurst"),
    ] {
        let Some(value) = att.annotations.get(annotation) else {
            continue;
        };
        let err = |reason: String| BandwidthError {
            annotation,
            value: value.clone(),
            reason,
        };
        let bits = quantity(value).map_err(err)?;
        if bits < 1_000 {
            return Err(err("resource is unreasonably small (< 1kbit)".into()));
        }
        if bits > 1_000_000_000_000_000 {
            return Err(err("resource is unreasonably large (> 1Pbit)".into()));
        }
        bw.insert(rate.into(), json!(bits));
        bw.insert(burst.into(), json!(u32::MAX));
    }
    Ok((!bw.is_empty()).then_some(Value::Object(bw)))
}

/// A Kubernetes quantity (`10M`, `1.5Gi`, `500k`) as a whole number, rounded up.
fn quantity(s: &str) -> Result<u64, String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return Err(format!("unknown quantity suffix {suffix:?}")),
    };
    let number: f64 = number
        .parse()
        .map_err(|_| "not a quantity (like 10M)".to_string())?;
    Ok((number * multiplier).ceil() as u64)
}

/// A plugin's `runtimeConfig`: the capability arguments it declares, or
/// `None` when that leaves nothing (libcni then injects no key).
pub fn runtime_config(
    plugin: &PluginConf,
    caps: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    let rc: Map<String, Value> = plugin
        .capabilities
        .iter()
        .filter_map(|cap| caps.get(cap).map(|v| (cap.clone(), v.clone())))
        .collect();
    (!rc.is_empty()).then_some(rc)
}

/// The config one plugin reads on stdin: its object with the list's
/// `cniVersion` and `name`, its `runtimeConfig`, and `prevResult` when there
/// is one (libcni `buildOneConfig`).
pub fn plugin_stdin(
    plugin: &PluginConf,
    name: &str,
    cni_version: &str,
    caps: &Map<String, Value>,
    prev_result: Option<&Value>,
) -> Vec<u8> {
    let mut conf = plugin.raw.clone();
    conf.insert("cniVersion".into(), Value::String(cni_version.into()));
    conf.insert("name".into(), Value::String(name.into()));
    if let Some(rc) = runtime_config(plugin, caps) {
        conf.insert("runtimeConfig".into(), Value::Object(rc));
    }
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    serde_json::to_vec(&Value::Object(conf)).expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PortMapping, Protocol};
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    fn attachment() -> Attachment {
        Attachment {
            sandbox_id: "sb1".into(),
            netns: PathBuf::from("/run/netns/p"),
            ifname: "eth0".into(),
            pod_name: "web".into(),
            pod_namespace: "default".into(),
            pod_uid: "u-1".into(),
            port_mappings: vec![
                PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_ip: String::new(),
                },
                PortMapping {
                    host_port: 53,
                    container_port: 5353,
                    protocol: Protocol::Udp,
                    host_ip: "127.0.0.1".into(),
                },
            ],
            annotations: BTreeMap::from([
                ("a".to_string(), "b".to_string()),
                (INGRESS_BANDWIDTH.to_string(), "10M".to_string()),
            ]),
            cgroup_parent: "/kubepods/pod-u-1".into(),
        }
    }

    #[test]
    fn cni_args_carry_the_pods_identity() {
        assert_eq!(
            cni_args_string(&cni_args(&attachment())),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=u-1"
        );
    }

    #[test]
    fn each_plugin_gets_only_the_capabilities_it_declares() {
        let list = super::super::conf::list_from_bytes(
            br#"{"cniVersion":"1.0.0","name":"net","plugins":[
                {"type":"bridge","name":"ignored","runtimeConfig":{"stale":1}},
                {"type":"portmap","capabilities":{"portMappings":true,"dns":true}},
                {"type":"bandwidth","capabilities":{"bandwidth":true,"portMappings":false}},
                {"type":"meta","capabilities":{"io.kubernetes.cri.pod-annotations":true,"cgroupPath":true,"ipRanges":true}}]}"#,
            Path::new("x"),
        )
        .unwrap();
        let ranges = vec![vec![IpRange {
            subnet: "10.9.0.0/24".into(),
            range_start: None,
            range_end: None,
            gateway: Some("10.9.0.1".into()),
        }]];
        let caps = capability_args(&attachment(), &ranges, &Extras::default()).unwrap();
        let stdin = |i: usize, prev: Option<&Value>| -> Value {
            serde_json::from_slice(&plugin_stdin(&list.plugins[i], "net", "1.0.0", &caps, prev))
                .unwrap()
        };
        // No capability: its own runtimeConfig stays, nothing is injected;
        // the list's name and version win over the plugin's.
        assert_eq!(
            stdin(0, None),
            json!({"type":"bridge","name":"net","runtimeConfig":{"stale":1},"cniVersion":"1.0.0"})
        );
        let prev = json!({"cniVersion":"1.0.0","ips":[]});
        let portmap = stdin(1, Some(&prev));
        assert_eq!(
            portmap["runtimeConfig"],
            json!({"portMappings":[
                {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                {"hostPort":53,"containerPort":5353,"protocol":"udp","hostIP":"127.0.0.1"}]})
        );
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            stdin(2, None)["runtimeConfig"],
            json!({"bandwidth":{"ingressRate":10_000_000u64,"ingressBurst":u32::MAX}})
        );
        assert_eq!(
            stdin(3, None)["runtimeConfig"],
            json!({
                "ipRanges":[[{"subnet":"10.9.0.0/24","gateway":"10.9.0.1"}]],
                "io.kubernetes.cri.pod-annotations":{"a":"b",INGRESS_BANDWIDTH:"10M"},
                "cgroupPath":"/kubepods/pod-u-1"
            })
        );
        let with_dns = capability_args(
            &attachment(),
            &[],
            &Extras {
                dns: Some(DnsCapability {
                    servers: vec!["10.96.0.10".into()],
                    searches: vec!["svc.cluster.local".into()],
                    options: vec!["ndots:5".into()],
                }),
            },
        )
        .unwrap();
        assert_eq!(
            runtime_config(&list.plugins[1], &with_dns).unwrap()["dns"],
            json!({"servers":["10.96.0.10"],"searches":["svc.cluster.local"],"options":["ndots:5"]})
        );
        assert!(!with_dns.contains_key("ipRanges"));
    }

    #[test]
    fn bandwidth_annotations_are_quantities_within_kubelets_bounds() {
        assert_eq!(quantity("1.5Gi").unwrap(), 1_610_612_736);
        assert_eq!(quantity("100").unwrap(), 100);
        let mut att = attachment();
        att.annotations
            .insert(EGRESS_BANDWIDTH.into(), "1Ki".into());
        assert_eq!(
            bandwidth(&att).unwrap().unwrap(),
            json!({"ingressRate":10_000_000u64,"ingressBurst":u32::MAX,"egressRate":1024,"egressBurst":u32::MAX})
        );
        for (value, want) in [
            ("10", "unreasonably small"),
            ("2P", "unreasonably large"),
            ("10Q", "unknown quantity suffix"),
            ("M", "not a quantity"),
        ] {
            att.annotations
                .insert(EGRESS_BANDWIDTH.into(), value.into());
            let err = bandwidth(&att).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("annotation {EGRESS_BANDWIDTH}={value:?}: ")),
                "{err}"
            );
            assert!(err.contains(want), "{err}");
        }
    }
}
