//! kubelet's eviction manager (pkg/kubelet/eviction/eviction_manager.go,
//! helpers.go) as pure functions of what the caller measured:
//!
//! - local storage: `emptyDirLimitEviction`, a pod whose emptyDir passed its
//!   `sizeLimit`;
//! - node pressure: the hard thresholds (`evictionHard`, [`default_hard`]),
//!   which are met ([`thresholds_met`]), the order pods are evicted in under
//!   a resource's pressure ([`rank`]) and the message ([`pressure_message`]).
//!
//! An evicted pod is killed with [`EVICTION_GRACE_SECONDS`], ends `Failed`
//! with reason [`REASON`] and the message, and is never restarted. Local
//! storage evictions carry no `DisruptionTarget` condition: kubelet passes
//! none to `evictPod` for them; pressure evictions add one
//! ([`Eviction::disruption`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The status reason and event reason of an eviction (helpers.go `Reason`).
pub const REASON: &str = "Evicted";

/// The grace period of a local storage eviction (eviction_manager.go
/// `immediateEvictionGracePeriodSeconds`, passed as the override).
pub const EVICTION_GRACE_SECONDS: i64 = 1;

/// A pod evicted by the node: what its status and its `Evicted` event say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eviction {
    /// kubelet's message (with its trailing space).
    pub message: String,
    /// A node-pressure eviction: the pod gets kubelet's `DisruptionTarget`
    /// condition (reason `TerminationByKubelet`, the message).
    #[serde(default)]
    pub disruption: bool,
}

/// A disk-backed emptyDir with a positive `sizeLimit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmptyDirLimit {
    /// The volume's name.
    pub volume: String,
    /// The limit in bytes.
    pub bytes: u64,
    /// The limit as the API prints it (Go's `Quantity.String()`: `1Mi`).
    pub text: String,
}

/// The emptyDir's message (helpers.go `emptyDirMessageFmt`, `%q` twice).
pub fn empty_dir_message(volume: &str, limit: &str) -> String {
    format!("Usage of EmptyDir volume {volume:?} exceeds the limit {limit:?}. ")
}

/// The pod's ephemeral storage message (`podEphemeralStorageMessageFmt`, `%s`).
pub fn pod_ephemeral_storage_message(limit: &str) -> String {
    format!("Pod ephemeral local storage usage exceeds the total limit of containers {limit}. ")
}

/// A container's ephemeral storage message (`containerEphemeralStorageMessageFmt`).
pub fn container_ephemeral_storage_message(container: &str, limit: &str) -> String {
    format!("Container {container} exceeded its local ephemeral storage limit {limit:?}. ")
}

/// `emptyDirLimitEviction`: the first emptyDir, in spec order, whose usage
/// (bytes, by volume name; a volume not measured is never evicted for) is
/// strictly above its limit.
pub fn empty_dir_limit_eviction(
    limits: &[EmptyDirLimit],
    usage: &BTreeMap<String, u64>,
) -> Option<Eviction> {
    limits.iter().find_map(|l| {
        let used = *usage.get(&l.volume)?;
        (l.bytes > 0 && used > l.bytes).then(|| Eviction {
            message: empty_dir_message(&l.volume, &l.text),
            disruption: false,
        })
    })
}

/// A signal the eviction manager observes (pkg/kubelet/eviction/api/types.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// `memory.available`: the node's memory less its working set.
    MemoryAvailable,
    /// `allocatableMemory.available`: the pods' memory limit (their parent
    /// cgroup's) less their working set; kubelet derives it from
    /// `memory.available`'s threshold, it is never configured.
    AllocatableMemoryAvailable,
    /// `nodefs.available`: free bytes of the file system of the root.
    NodeFsAvailable,
    /// `nodefs.inodesFree`.
    NodeFsInodesFree,
    /// `imagefs.available`: free bytes of the file system of the images.
    ImageFsAvailable,
    /// `imagefs.inodesFree`.
    ImageFsInodesFree,
}

impl Signal {
    /// The signals one can configure, in kubelet's spelling.
    pub const CONFIGURABLE: [Signal; 5] = [
        Signal::MemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
    ];

    /// kubelet's name of the signal (also the `kubelet_evictions` label).
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::AllocatableMemoryAvailable => "allocatableMemory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
        }
    }

    /// The resource it reclaims (helpers.go `signalToResource`).
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
        }
    }

    /// The node condition it raises (helpers.go `signalToNodeCondition`).
    pub fn condition(self) -> &'static str {
        match self {
            Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable => "MemoryPressure",
            _ => "DiskPressure",
        }
    }

    /// A file system signal: kubelet reclaims node-level resources (unused
    /// images) before it evicts a pod for it.
    pub fn is_disk(self) -> bool {
        self.resource() != "memory"
    }
}

/// A threshold's value: bytes (inodes) or a fraction of the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdValue {
    /// `100Mi`: a quantity.
    Quantity(u64),
    /// `10%`: the fraction (0.1) of the capacity.
    Percentage(f64),
}

/// A hard eviction threshold: `signal < value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// What is observed.
    pub signal: Signal,
    /// Below what it is met.
    pub value: ThresholdValue,
}

impl Threshold {
    /// The threshold as a quantity of a capacity of `capacity`
    /// (api/types.go `GetThresholdQuantity`: the fraction of it, truncated).
    pub fn quantity(&self, capacity: u64) -> u64 {
        match self.value {
            ThresholdValue::Quantity(q) => q,
            ThresholdValue::Percentage(p) => (capacity as f64 * p) as u64,
        }
    }
}

/// kubelet's default hard thresholds on Linux: `memory.available<100Mi`,
/// `nodefs.available<10%`, `nodefs.inodesFree<5%`, `imagefs.available<15%`,
/// each memory one twinned by [`Signal::AllocatableMemoryAvailable`].
pub fn default_hard() -> Vec<Threshold> {
    let t = |signal, value| Threshold { signal, value };
    with_allocatable(vec![
        t(Signal::MemoryAvailable, ThresholdValue::Quantity(100 << 20)),
        t(Signal::NodeFsAvailable, ThresholdValue::Percentage(0.10)),
        t(Signal::NodeFsInodesFree, ThresholdValue::Percentage(0.05)),
        t(Signal::ImageFsAvailable, ThresholdValue::Percentage(0.15)),
    ])
}

/// `memory.available`'s threshold applies to the pods' allocatable memory
/// too (helpers.go `addAllocatableThresholds`).
fn with_allocatable(mut thresholds: Vec<Threshold>) -> Vec<Threshold> {
    let extra: Vec<Threshold> = thresholds
        .iter()
        .filter(|t| t.signal == Signal::MemoryAvailable)
        .map(|t| Threshold {
            signal: Signal::AllocatableMemoryAvailable,
            value: t.value,
        })
        .collect();
    thresholds.extend(extra);
    thresholds
}

/// The configured `evictionHard` map (`signal` → `100Mi` or `10%`; `bytes`
/// parses a quantity) as thresholds, with helpers.go `parseThresholdStatement`'s
/// checks. As kubelet's, a configured map replaces the defaults: a signal it
/// does not name has no threshold; a value of `0%` or `0` none either.
pub fn parse_hard(
    entries: &[(String, String)],
    bytes: impl Fn(&str) -> Result<u64, String>,
) -> Result<Vec<Threshold>, String> {
    let mut out = Vec::new();
    for (name, value) in entries {
        let signal = Signal::CONFIGURABLE
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| format!("unsupported eviction signal {name}"))?;
        let value = if let Some(p) = value.strip_suffix('%') {
            let p: f64 = p
                .parse()
                .map_err(|_| format!("invalid eviction threshold {name}: {value}"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!(
                    "eviction percentage threshold {name} must be >= 0% and <= 100%: {value}"
                ));
            }
            if p == 0.0 {
                continue;
            }
            ThresholdValue::Percentage(p / 100.0)
        } else {
            if value.trim_start().starts_with('-') {
                return Err(format!(
                    "eviction threshold {name} must be positive: {value}"
                ));
            }
            let q = bytes(value).map_err(|e| format!("eviction threshold {name}: {e}"))?;
            if q == 0 {
                continue;
            }
            ThresholdValue::Quantity(q)
        };
        out.push(Threshold { signal, value });
    }
    Ok(with_allocatable(out))
}

/// What was observed of a signal: available and capacity (bytes or inodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// How much is left.
    pub available: u64,
    /// The whole.
    pub capacity: u64,
}

/// The thresholds met by `observed` (helpers.go `thresholdsMet`: the
/// threshold's quantity is above what is available; a signal not observed is
/// never met), memory's first (`byEvictionPriority`), then in their order.
pub fn thresholds_met<'a>(
    thresholds: &'a [Threshold],
    observed: &BTreeMap<Signal, Observed>,
) -> Vec<&'a Threshold> {
    let mut met: Vec<&Threshold> = thresholds
        .iter()
        .filter(|t| {
            observed
                .get(&t.signal)
                .is_some_and(|o| t.quantity(o.capacity) > o.available)
        })
        .collect();
    met.sort_by_key(|t| t.signal.resource() != "memory");
    met
}

/// A pod as the ranking sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedPod {
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// Its usage of the resource, if measured.
    pub usage: Option<u64>,
    /// Its request of the resource (bytes).
    pub request: u64,
}

/// kubelet's order of eviction under a resource's pressure (helpers.go
/// `rankMemoryPressure`, `rankDiskPressureFunc`: `orderedBy(exceedRequests,
/// priority, usage)`): pods using more than they request first (a pod not
/// measured before one measured), then lower priority first, then the larger
/// usage above the request first. The indices of `pods` in that order.
pub fn rank(pods: &[RankedPod]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..pods.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&pods[a], &pods[b]);
        let exceeds = |p: &RankedPod| p.usage.map(|u| u > p.request);
        // Not measured first (cmpBool(!p1Found, !p2Found)), then exceeding.
        let key = |p: &RankedPod| match exceeds(p) {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        };
        let above = |p: &RankedPod| p.usage.unwrap_or(0) as i128 - p.request as i128;
        key(a)
            .cmp(&key(b))
            .then(a.priority.cmp(&b.priority))
            .then(above(b).cmp(&above(a)))
    });
    order
}

/// kubelet's priority of a critical pod (`scheduling.SystemCriticalPriority`):
/// at or above it a pod is never evicted (`IsCriticalPodBasedOnPriority`).
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// A container's part of a pressure message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    /// Its name.
    pub name: String,
    /// Its usage (bytes), if measured.
    pub usage: Option<u64>,
    /// Its request in bytes, and as the API prints it (`0` without one).
    pub request: (u64, String),
}

/// helpers.go `evictionMessage`: the node was low on `resource`, the
/// threshold's quantity and what was available (when known), then each
/// container using more than it requests.
pub fn pressure_message(
    resource: &str,
    threshold: Option<(u64, u64)>,
    containers: &[ContainerUsage],
) -> String {
    let mut m = format!("The node was low on resource: {resource}. ");
    if let Some((quantity, available)) = threshold {
        m += &format!(
            "Threshold quantity: {}, available: {}. ",
            binary_quantity(quantity),
            binary_quantity(available)
        );
    }
    for c in containers {
        if let Some(usage) = c.usage.filter(|u| *u > c.request.0) {
            m += &format!(
                "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
                c.name,
                binary_quantity(usage),
                c.request.1
            );
        }
    }
    m
}

/// An integer quantity in Go's binary SI form (`resource.NewQuantity(n,
/// BinarySI).String()`): the largest power of 1024 that divides it exactly
/// (`100Mi`, `51200Ki`), a plain number otherwise or below 1024.
pub fn binary_quantity(n: u64) -> String {
    if n < 1024 {
        return n.to_string();
    }
    let (mut n, mut power) = (n, 0);
    while n.is_multiple_of(1024) && power < 6 {
        n /= 1024;
        power += 1;
    }
    format!("{n}{}", ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(volume: &str, bytes: u64, text: &str) -> EmptyDirLimit {
        EmptyDirLimit {
            volume: volume.into(),
            bytes,
            text: text.into(),
        }
    }

    #[test]
    fn messages_are_kubelets_with_their_trailing_space() {
        assert_eq!(
            empty_dir_message("data", "1Mi"),
            "Usage of EmptyDir volume \"data\" exceeds the limit \"1Mi\". "
        );
        assert_eq!(
            pod_ephemeral_storage_message("1Mi"),
            "Pod ephemeral local storage usage exceeds the total limit of containers 1Mi. "
        );
        assert_eq!(
            container_ephemeral_storage_message("app", "1Mi"),
            "Container app exceeded its local ephemeral storage limit \"1Mi\". "
        );
    }

    #[test]
    fn the_first_volume_over_its_limit_evicts() {
        let limits = [
            limit("a", 1 << 20, "1Mi"),
            limit("b", 1 << 20, "1Mi"),
            limit("c", 2 << 20, "2Mi"),
        ];
        let usage = |list: &[(&str, u64)]| -> BTreeMap<String, u64> {
            list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        // (usage by volume, the volume evicted for)
        type Case<'a> = (&'a [(&'a str, u64)], Option<&'a str>);
        let cases: &[Case] = &[
            (&[], None),
            // At the limit is not over it (used.Cmp(size) > 0).
            (&[("a", 1 << 20), ("b", 1 << 20)], None),
            (&[("a", (1 << 20) + 1)], Some("a")),
            (&[("b", 3 << 20), ("a", 5 << 20)], Some("a")),
            (&[("a", 10), ("b", 3 << 20)], Some("b")),
            (&[("c", 3 << 20)], Some("c")),
            // A volume without a limit is never measured against one.
            (&[("other", u64::MAX)], None),
        ];
        for (used, want) in cases {
            let got = empty_dir_limit_eviction(&limits, &usage(used));
            let want = want.map(|v| {
                let l = limits.iter().find(|l| l.volume == v).unwrap();
                Eviction {
                    message: empty_dir_message(v, &l.text),
                    disruption: false,
                }
            });
            assert_eq!(got, want, "{used:?}");
        }
    }

    #[test]
    fn a_zero_limit_is_no_limit() {
        let usage = BTreeMap::from([("a".to_string(), 1u64 << 30)]);
        assert_eq!(
            empty_dir_limit_eviction(&[limit("a", 0, "0")], &usage),
            None
        );
    }

    fn observed(list: &[(Signal, u64, u64)]) -> BTreeMap<Signal, Observed> {
        list.iter()
            .map(|(s, available, capacity)| {
                (
                    *s,
                    Observed {
                        available: *available,
                        capacity: *capacity,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn the_defaults_are_kubelets_and_met_below_them_memory_first() {
        let hard = default_hard();
        let names: Vec<&str> = hard.iter().map(|t| t.signal.name()).collect();
        assert_eq!(
            names,
            [
                "memory.available",
                "nodefs.available",
                "nodefs.inodesFree",
                "imagefs.available",
                "allocatableMemory.available"
            ]
        );
        // 10% of 1000 is 100: 100 available is not below it, 99 is.
        let met = |list| {
            thresholds_met(&hard, &observed(list))
                .iter()
                .map(|t| t.signal)
                .collect::<Vec<_>>()
        };
        assert_eq!(met(&[(Signal::NodeFsAvailable, 100, 1000)]), []);
        assert_eq!(
            met(&[(Signal::NodeFsAvailable, 99, 1000)]),
            [Signal::NodeFsAvailable]
        );
        assert_eq!(
            met(&[
                (Signal::NodeFsAvailable, 1, 1000),
                (Signal::AllocatableMemoryAvailable, 50 << 20, 1 << 30),
                (Signal::MemoryAvailable, 1 << 30, 8 << 30),
            ]),
            [Signal::AllocatableMemoryAvailable, Signal::NodeFsAvailable]
        );
    }

    #[test]
    fn a_configured_map_replaces_the_defaults_with_kubelets_checks() {
        let bytes = |v: &str| -> Result<u64, String> {
            v.strip_suffix("Mi")
                .and_then(|n| n.parse::<u64>().ok())
                .map(|n| n << 20)
                .ok_or_else(|| format!("quantities must match the regular expression: {v}"))
        };
        let entries = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let got = parse_hard(&entries(&[("nodefs.available", "40%")]), bytes).unwrap();
        assert_eq!(
            got,
            [Threshold {
                signal: Signal::NodeFsAvailable,
                value: ThresholdValue::Percentage(0.4)
            }]
        );
        let got = parse_hard(&entries(&[("memory.available", "200Mi")]), bytes).unwrap();
        assert_eq!(got.len(), 2, "the allocatable twin: {got:?}");
        assert_eq!(got[1].signal, Signal::AllocatableMemoryAvailable);
        assert_eq!(got[1].quantity(0), 200 << 20);
        assert_eq!(
            parse_hard(&entries(&[("nodefs.available", "0%")]), bytes).unwrap(),
            []
        );
        for (entry, error) in [
            (("memory.free", "1Mi"), "unsupported eviction signal memory.free"),
            (
                ("nodefs.available", "120%"),
                "eviction percentage threshold nodefs.available must be >= 0% and <= 100%: 120%",
            ),
            (
                ("memory.available", "-1Mi"),
                "eviction threshold memory.available must be positive: -1Mi",
            ),
            (
                ("memory.available", "lots"),
                "eviction threshold memory.available: quantities must match the regular expression: lots",
            ),
        ] {
            assert_eq!(
                parse_hard(&entries(&[entry]), bytes).unwrap_err(),
                error,
                "{entry:?}"
            );
        }
    }

    #[test]
    fn pods_over_their_requests_then_low_priority_then_most_above_go_first() {
        let pods = [
            ("under", 0, Some(10), 100),
            ("big", 0, Some(500), 0),
            ("small", 0, Some(50), 0),
            ("important", 1000, Some(900), 0),
            ("guaranteed-ish", -5, Some(400), 300),
            ("unmeasured", 0, None, 0),
        ];
        let ranked: Vec<RankedPod> = pods
            .iter()
            .map(|&(_, priority, usage, request)| RankedPod {
                priority,
                usage,
                request,
            })
            .collect();
        let order: Vec<&str> = rank(&ranked).into_iter().map(|i| pods[i].0).collect();
        assert_eq!(
            order,
            [
                "unmeasured",
                "guaranteed-ish",
                "big",
                "small",
                "important",
                "under"
            ]
        );
    }

    #[test]
    fn pressure_messages_are_kubelets() {
        let c = |name: &str, usage, request: u64, text: &str| ContainerUsage {
            name: name.into(),
            usage,
            request: (request, text.into()),
        };
        assert_eq!(
            pressure_message(
                "memory",
                Some((100 << 20, 52_428_800)),
                &[
                    c("app", Some(150 << 20), 0, "0"),
                    c("side", Some(1 << 20), 16 << 20, "16Mi"),
                    c("gone", None, 0, "0"),
                ]
            ),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
             Container app was using 150Mi, request is 0, has larger consumption of memory. "
        );
        assert_eq!(
            pressure_message("ephemeral-storage", None, &[]),
            "The node was low on resource: ephemeral-storage. "
        );
        assert_eq!(binary_quantity(6_710_886), "6710886");
        assert_eq!(binary_quantity(1023), "1023");
        assert_eq!(binary_quantity(52_428_800), "50Mi");
        assert_eq!(binary_quantity(3 << 10), "3Ki");
    }
}
