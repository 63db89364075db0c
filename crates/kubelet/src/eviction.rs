//! Local storage evictions: kubelet's eviction manager
//! (pkg/kubelet/eviction/eviction_manager.go `localStorageEviction`,
//! `emptyDirLimitEviction`; the messages of helpers.go) as a pure function of
//! the pod's limits and the usage measured by the caller.
//!
//! An evicted pod is killed with [`EVICTION_GRACE_SECONDS`], ends `Failed`
//! with reason [`REASON`] and the message, and is never restarted. Local
//! storage evictions carry no `DisruptionTarget` condition: kubelet passes
//! none to `evictPod` for them (only pressure evictions add one).

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
        })
    })
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
}
