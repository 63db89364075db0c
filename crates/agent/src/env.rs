//! A container's environment as kubelet makes it (pkg/kubelet/kubelet_pods.go
//! `makeEnvironmentVariables`): `envFrom` sources first, in order, then `env`;
//! values from ConfigMaps, Secrets, the downward API (`fieldRef`) and
//! `resourceFieldRef`. `$(VAR)` expansion of literal values comes next
//! ([`crate::container_config::expand`]), which knows which values came from
//! references.

use crate::container_config::EnvVar;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use std::collections::BTreeMap;

/// Facts the downward API exposes that are not in the manifest.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    /// `spec.nodeName` when the manifest leaves it empty.
    pub node_name: String,
    /// The node's addresses, primary first: `status.hostIP` is the first,
    /// `status.hostIPs` all of them (empty when the node has none).
    pub host_ips: Vec<String>,
    /// The pod's addresses, primary first (`podrun_kubelet::network::pod_ips`):
    /// `status.podIP` is the first, `status.podIPs` all of them (empty
    /// before the sandbox exists, and when its network gave it none).
    pub pod_ips: Vec<String>,
    /// Allocatable CPU in millicores (the default of `limits.cpu`).
    pub cpu_millis: i64,
    /// Allocatable memory in bytes (the default of `limits.memory`).
    pub memory_bytes: i64,
}

/// ConfigMaps, Secrets and PersistentVolumeClaims given beside the pod (same
/// namespace).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// By name.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// By name.
    pub secrets: BTreeMap<String, Secret>,
    /// By name.
    pub claims: BTreeMap<String, k8s_openapi::api::core::v1::PersistentVolumeClaim>,
}

impl Sources {
    fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let cm = self.config_maps.get(name)?;
        let mut data = cm.data.clone().unwrap_or_default();
        for (k, v) in cm.binary_data.iter().flatten() {
            data.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
        }
        Some(data)
    }

    fn secret(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let s = self.secrets.get(name)?;
        let mut data: BTreeMap<String, String> = s
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        // stringData wins over data, as the API server merges them.
        for (k, v) in s.string_data.iter().flatten() {
            data.insert(k.clone(), v.clone());
        }
        Some(data)
    }
}

/// The environment of `container`, or kubelet's CreateContainerConfigError cause.
pub fn environment(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    node: &NodeFacts,
) -> Result<Vec<EnvVar>, String> {
    let mut out = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional, data) = if let Some(r) = &from.config_map_ref {
            (
                "configmap",
                r.name.clone(),
                r.optional.unwrap_or(false),
                sources.config_map(&r.name),
            )
        } else if let Some(r) = &from.secret_ref {
            (
                "secret",
                r.name.clone(),
                r.optional.unwrap_or(false),
                sources.secret(&r.name),
            )
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    out.push(EnvVar::resolved(format!("{prefix}{k}"), v));
                }
            }
            None if optional => {}
            None => return Err(format!("{kind} \"{name}\" not found")),
        }
    }
    for e in container.env.iter().flatten() {
        let Some(from) = &e.value_from else {
            out.push(EnvVar::literal(
                e.name.clone(),
                e.value.clone().unwrap_or_default(),
            ));
            continue;
        };
        let value = if let Some(r) = &from.config_map_key_ref {
            key_ref(
                "configmap",
                &r.name,
                &r.key,
                r.optional,
                sources.config_map(&r.name),
            )?
        } else if let Some(r) = &from.secret_key_ref {
            key_ref(
                "secret",
                &r.name,
                &r.key,
                r.optional,
                sources.secret(&r.name),
            )?
        } else if let Some(r) = &from.field_ref {
            Some(field_value(pod, &r.field_path, node)?)
        } else if let Some(r) = &from.resource_field_ref {
            let target = r
                .container_name
                .as_deref()
                .filter(|n| !n.is_empty())
                .map(|n| find_container(pod, n))
                .transpose()?
                .unwrap_or(container);
            Some(resource_value(
                target,
                &r.resource,
                r.divisor.as_ref(),
                node,
            )?)
        } else {
            None
        };
        if let Some(v) = value {
            out.push(EnvVar::resolved(e.name.clone(), v));
        }
    }
    Ok(out)
}

/// A key of a ConfigMap or Secret; `None` when optional and missing.
fn key_ref(
    kind: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
    data: Option<BTreeMap<String, String>>,
) -> Result<Option<String>, String> {
    let optional = optional.unwrap_or(false);
    match data {
        None if optional => Ok(None),
        None => Err(format!("{kind} \"{name}\" not found")),
        Some(d) => match d.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(format!("couldn't find key {key} in {kind} {name}")),
        },
    }
}

pub(crate) fn find_container<'a>(pod: &'a Pod, name: &str) -> Result<&'a Container, String> {
    let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .ok_or_else(|| format!("resourceFieldRef: container {name} not found"))
}

/// The downward API's `fieldRef` (pkg/kubelet/kubelet_pods.go podFieldSelectorRuntimeValue
/// and pkg/fieldpath).
pub(crate) fn field_value(pod: &Pod, path: &str, node: &NodeFacts) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?;
        Some(rest.strip_suffix("']")?.to_string())
    };
    if let Some(k) = subscript("metadata.labels") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|l| l.get(&k).cloned())
            .unwrap_or_default());
    }
    if let Some(k) = subscript("metadata.annotations") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|l| l.get(&k).cloned())
            .unwrap_or_default());
    }
    // pkg/fieldpath FormatMap: sorted `key="value"` lines, the value quoted as
    // Go's %q quotes it.
    let map_text = |m: Option<&BTreeMap<String, String>>| {
        m.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", go_quote(v)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_text(meta.labels.as_ref()),
        "metadata.annotations" => map_text(meta.annotations.as_ref()),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| node.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        // The first address, or all of them joined by commas (kubelet's
        // podFieldSelectorRuntimeValue).
        "status.hostIP" => node.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => node.host_ips.join(","),
        "status.podIP" => node.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => node.pod_ips.join(","),
        other => return Err(format!("fieldRef: unsupported field path {other}")),
    })
}

/// `resourceFieldRef`: a request or limit divided by the divisor, rounded up;
/// a missing limit reads as the node's allocatable (pkg/api/v1/resource
/// ExtractContainerResourceValue, kubelet's defaulting of limits).
pub(crate) fn resource_value(
    c: &Container,
    resource: &str,
    divisor: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    node: &NodeFacts,
) -> Result<String, String> {
    let res = c.resources.as_ref();
    let get = |limits: bool, key: &str| {
        res.and_then(|r| {
            if limits {
                r.limits.as_ref()
            } else {
                r.requests.as_ref()
            }
        })
        .and_then(|m| m.get(key))
        .cloned()
    };
    let divisor = divisor.map(|d| podrun_spec::parse_quantity(&d.0).map_err(|e| e.to_string()));
    let divisor = divisor.transpose()?;
    let cpu = |q: Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
               default: i64|
     -> Result<i128, String> {
        // In milli-units: 1 CPU = 1000.
        match q {
            Some(q) => podrun_spec::cpu_millis(&q)
                .map(i128::from)
                .map_err(|e| e.to_string()),
            None => Ok(default.into()),
        }
    };
    let bytes = |q: Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
                 default: i64|
     -> Result<i128, String> {
        match q {
            Some(q) => podrun_spec::memory_bytes(&q)
                .map(i128::from)
                .map_err(|e| e.to_string()),
            None => Ok(default.into()),
        }
    };
    let ceil_div = |n: i128, d: i128| if d <= 0 { n } else { (n + d - 1) / d };
    let value = match resource {
        "limits.cpu" | "requests.cpu" => {
            let millis = if resource == "limits.cpu" {
                cpu(get(true, "cpu"), node.cpu_millis)?
            } else {
                cpu(get(false, "cpu").or_else(|| get(true, "cpu")), 0)?
            };
            let d = divisor.map(|d| d.milli_value()).unwrap_or(1000);
            ceil_div(millis, d)
        }
        "limits.memory"
        | "requests.memory"
        | "limits.ephemeral-storage"
        | "requests.ephemeral-storage" => {
            let (limit, key) = resource.split_once('.').expect("has a dot");
            let default = if resource == "limits.memory" {
                node.memory_bytes
            } else {
                0
            };
            let q = if limit == "limits" {
                get(true, key)
            } else {
                get(false, key).or_else(|| get(true, key))
            };
            let n = bytes(q, default)?;
            let d = divisor.map(|d| d.value()).unwrap_or(1);
            ceil_div(n, d)
        }
        other => return Err(format!("resourceFieldRef: unsupported resource {other}")),
    };
    Ok(value.to_string())
}

/// `s` quoted as Go's `%q` (strconv.Quote) quotes it: `"` and `\` escaped, the
/// usual C escapes, other control characters as `\x..`, `\u....` or
/// `\U........`; printable characters as they are.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        let objects = podrun_spec::load(yaml, "test.yaml").unwrap();
        match objects.into_iter().next().unwrap() {
            podrun_spec::Object::Pod(p) => p,
            _ => panic!("not a pod"),
        }
    }

    fn sources(yaml: &str) -> Sources {
        let mut s = Sources::default();
        for o in podrun_spec::load(yaml, "s.yaml").unwrap() {
            match o {
                podrun_spec::Object::ConfigMap(c) => {
                    s.config_maps.insert(c.metadata.name.clone().unwrap(), c);
                }
                podrun_spec::Object::Secret(x) => {
                    s.secrets.insert(x.metadata.name.clone().unwrap(), x);
                }
                _ => {}
            }
        }
        s
    }

    const SOURCES: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {mode: fast, level: '3'}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: pw}\ndata: {password: aHVudGVyMg==}\n";

    fn env_of(p: &Pod, s: &Sources) -> Result<Vec<(String, String, bool)>, String> {
        let node = NodeFacts {
            node_name: "node1".into(),
            host_ips: vec!["10.0.0.1".into(), "fd00::1".into()],
            pod_ips: vec!["10.88.0.5".into(), "fd00::5".into()],
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
        };
        let c = &p.spec.as_ref().unwrap().containers[0];
        environment(p, c, s, &node)
            .map(|v| v.into_iter().map(|e| (e.name, e.value, e.expand)).collect())
    }

    #[test]
    fn values_come_from_config_maps_secrets_and_the_downward_api_in_order() {
        let p = pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  containers:
  - name: app
    image: busybox
    resources: {limits: {cpu: 500m, memory: 64Mi}}
    envFrom:
    - configMapRef: {name: cfg}
      prefix: CFG_
    env:
    - {name: A, value: "$(CFG_mode)"}
    - name: PW
      valueFrom: {secretKeyRef: {name: pw, key: password}}
    - name: NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: NS
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    - name: APP
      valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}
    - name: NODE
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    - name: CPU
      valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}
    - name: MEM
      valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
"#);
        let got = env_of(&p, &sources(SOURCES)).unwrap();
        let want = [
            ("CFG_level", "3", false),
            ("CFG_mode", "fast", false),
            ("A", "$(CFG_mode)", true),
            ("PW", "hunter2", false),
            ("NAME", "web", false),
            ("NS", "shop", false),
            ("APP", "web", false),
            ("NODE", "node1", false),
            ("CPU", "500", false),
            ("MEM", "64", false),
        ];
        let want: Vec<(String, String, bool)> = want
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
            .collect();
        assert_eq!(got, want);
    }

    /// kubelet's podFieldSelectorRuntimeValue: the primary address, or every
    /// address joined by commas.
    #[test]
    fn the_pods_and_nodes_addresses_are_the_first_or_all_joined() {
        let p = pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox
    env:
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: POD_IPS, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: HOST_IPS, valueFrom: {fieldRef: {fieldPath: status.hostIPs}}}
"#);
        let got: Vec<(String, String)> = env_of(&p, &Sources::default())
            .unwrap()
            .into_iter()
            .map(|(name, value, _)| (name, value))
            .collect();
        let want = [
            ("POD_IP", "10.88.0.5"),
            ("POD_IPS", "10.88.0.5,fd00::5"),
            ("HOST_IP", "10.0.0.1"),
            ("HOST_IPS", "10.0.0.1,fd00::1"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
        // No addresses (no sandbox yet, a node with only loopback): empty values.
        let none = NodeFacts::default();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let values: Vec<String> = environment(&p, c, &Sources::default(), &none)
            .unwrap()
            .into_iter()
            .map(|e| e.value)
            .collect();
        assert_eq!(values, ["", "", "", ""]);
    }

    #[test]
    fn a_missing_limit_reads_as_the_node_allocatable_rounded_up() {
        let p = pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox
    env:
    - name: CPU
      valueFrom: {resourceFieldRef: {resource: limits.cpu}}
    - name: REQ
      valueFrom: {resourceFieldRef: {resource: requests.cpu}}
"#);
        let got = env_of(&p, &Sources::default()).unwrap();
        assert_eq!(got[0].1, "2");
        assert_eq!(got[1].1, "0");
    }

    #[test]
    fn missing_sources_fail_unless_optional() {
        let p = pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox
    env:
    - name: X
      valueFrom: {configMapKeyRef: {name: nope, key: k}}
"#);
        assert_eq!(
            env_of(&p, &Sources::default()).unwrap_err(),
            "configmap \"nope\" not found"
        );
        let p = pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox
    env:
    - name: X
      valueFrom: {configMapKeyRef: {name: cfg, key: missing}}
    - name: YV
      valueFrom: {secretKeyRef: {name: nope, key: k, optional: true}}
"#);
        assert_eq!(
            env_of(&p, &sources(SOURCES)).unwrap_err(),
            "couldn't find key missing in configmap cfg"
        );
        let p = pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox
    envFrom:
    - secretRef: {name: nope, optional: true}
    env:
    - name: YV
      valueFrom: {secretKeyRef: {name: nope, key: k, optional: true}}
"#);
        assert_eq!(env_of(&p, &Sources::default()).unwrap(), vec![]);
    }
}
