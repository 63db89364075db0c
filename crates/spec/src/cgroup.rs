//! The pod's cgroup: the limits kubelet gives it and where it sits.
//!
//! Follows kubelet's `ResourceConfigForPod` (pkg/kubelet/cm/helpers_linux.go) with the
//! node defaults (CFS quota enforced, 100 ms period, no MemoryQoS) and the pod-level
//! requests and limits of k8s.io/component-helpers/resource (`PodRequests`, `PodLimits`).
//! Pod overhead (RuntimeClass) is ignored: podrun has no runtime classes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::{aggregate_container_requests, parse_quantity, qos_class};
use crate::QosClass;

/// The lowest `cpu.shares` the kernel accepts; what BestEffort pods get.
pub const MIN_SHARES: u64 = 2;
/// The highest `cpu.shares` the kernel accepts.
pub const MAX_SHARES: u64 = 262_144;
/// kubelet's default CFS period (`cpuCFSQuotaPeriod`, 100 ms), in microseconds.
pub const QUOTA_PERIOD: u64 = 100_000;
/// The smallest CFS quota the kernel accepts (1 ms), in microseconds.
pub const MIN_QUOTA: i64 = 1_000;
/// The cgroup under which podrun puts every pod (kubelet's `kubepods`).
pub const POD_CGROUP_ROOT: &str = "/podrun";
/// The slice under which podrun puts every pod with the systemd cgroup driver
/// (`podrun.slice`, kubelet's `kubepods.slice`), without its `.slice`.
pub const POD_SLICE_PREFIX: &str = "podrun";

/// The limits of a pod's cgroup, as kubelet sets them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PodLimits {
    /// `cpu.shares` (v1; v2 converts it to `cpu.weight`): from the cpu requests.
    pub cpu_shares: u64,
    /// CFS quota in microseconds per `cpu_period`; `None` is unlimited.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    pub cpu_period: u64,
    /// Memory limit in bytes; `None` is unlimited.
    pub memory_limit: Option<i64>,
    /// Maximum number of tasks. kubelet takes it from the node's `podPidsLimit`
    /// (`--pod-max-pids`), not from the pod: always `None` here, for the caller to set.
    pub pids_limit: Option<i64>,
}

/// Amounts in nano-units by resource name.
type Amounts = BTreeMap<String, i128>;

const NANOS_PER_MILLI: i128 = 1_000_000;
const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// The limits kubelet writes to a pod's cgroup (`ResourceConfigForPod`).
///
/// - Requests and limits are summed over the containers; init containers count by the
///   max rule (each plain init container plus the sidecars started before it), and
///   restartable (sidecar) init containers add to the sum like regular containers.
///   Pod-level `spec.resources` replaces the sum for the resources it names.
/// - `cpu_shares` comes from the cpu requests: `millicores * 1024 / 1000`, clamped to
///   [2, 262144]; no cpu request gives 2 (the kernel's minimum, not its default 1024).
/// - Guaranteed pods get the cpu quota and the memory limit. Burstable pods get the quota
///   only when every container (and every init container, counted with the sidecars
///   before it) limits cpu, and the memory limit only when each limits memory, since
///   one unlimited container makes the pod unlimited; a pod-level limit counts as one.
/// - BestEffort pods get shares 2 and nothing else.
///
/// The API server's defaulting (requests default to limits) is applied first, so a raw
/// pod and a defaulted one give the same result.
pub fn pod_cgroup_limits(pod: &Pod) -> PodLimits {
    let mut pod = pod.clone();
    crate::defaults::default_requests_from_limits(&mut pod);
    let qos = qos_class(&pod);
    let mut limits = PodLimits {
        cpu_shares: MIN_SHARES,
        cpu_quota: None,
        cpu_period: QUOTA_PERIOD,
        memory_limit: None,
        pids_limit: None,
    };
    if qos == QosClass::BestEffort {
        return limits;
    }
    let (requests, totals) = pod_totals(&pod);

    // Kubernetes' MilliValue() and Value() round up.
    let cpu_request = clamp_i64(div_ceil(amount(&requests, "cpu"), NANOS_PER_MILLI));
    let cpu_limit = clamp_i64(div_ceil(amount(&totals.amounts, "cpu"), NANOS_PER_MILLI));
    let memory = clamp_i64(div_ceil(amount(&totals.amounts, "memory"), NANOS_PER_UNIT));
    limits.cpu_shares = milli_cpu_to_shares(cpu_request);
    let quota = milli_cpu_to_quota(cpu_limit, QUOTA_PERIOD);
    let guaranteed = qos == QosClass::Guaranteed;
    if guaranteed || totals.cpu_declared {
        // A zero quota means "unset" to the OCI runtimes; the kernel rejects it.
        limits.cpu_quota = (quota > 0).then_some(quota);
    }
    if guaranteed || totals.memory_declared {
        limits.memory_limit = (memory > 0).then_some(memory);
    }
    limits
}

/// A pod's requests and limits as kubectl describe node totals them
/// (component-helpers `PodRequests` and `PodLimits`): the containers' by the
/// init-container max rule, the sidecars counted with the containers, the
/// pod-level `spec.resources` replacing the sum for what it names; the API
/// server's defaulting (requests from limits) first. Nanounits by resource name.
pub fn pod_requests_and_limits(pod: &Pod) -> (BTreeMap<String, i128>, BTreeMap<String, i128>) {
    let mut pod = pod.clone();
    crate::defaults::default_requests_from_limits(&mut pod);
    let (requests, totals) = pod_totals(&pod);
    (requests, totals.amounts)
}

/// The pod's summed requests and limits (the init-container max rule), the
/// pod-level `spec.resources` replacing the sum for what it names
/// (component-helpers applyPodLevelResources); `pod` defaulted already.
fn pod_totals(pod: &Pod) -> (Amounts, LimitTotals) {
    let mut requests: Amounts = aggregate_container_requests(pod)
        .into_iter()
        .map(|(name, q)| (name, q.nanos()))
        .collect();
    let mut totals = aggregate_limits(pod);
    if let Some(resources) = pod
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .filter(|_| pod_level_resources_set(pod))
    {
        for (name, amount) in parsed(resources.requests.as_ref()) {
            if is_pod_level_resource(&name) {
                requests.insert(name, amount);
            }
        }
        let pod_limits = parsed(resources.limits.as_ref());
        for (name, amount) in &pod_limits {
            if is_pod_level_resource(name) {
                totals.amounts.insert(name.clone(), *amount);
            }
        }
        // helpers_linux.go: a non-zero pod-level limit declares the resource limited.
        totals.cpu_declared |= is_positive(&pod_limits, "cpu");
        totals.memory_declared |= is_positive(&pod_limits, "memory");
    }
    (requests, totals)
}

/// kubelet's cgroup layout under podrun's root: Guaranteed pods directly under it,
/// the others under a cgroup per QoS class (`pod_container_manager_linux.go`
/// `GetPodContainerName`): `/podrun/<pod_id>`, `/podrun/burstable/<pod_id>`,
/// `/podrun/besteffort/<pod_id>`. The class is matched without regard to case; an
/// unknown one is treated as BestEffort, the class with the least claim on the node.
pub fn pod_cgroup_path(qos: &str, pod_id: &str) -> String {
    if qos.eq_ignore_ascii_case(QosClass::Guaranteed.as_str()) {
        format!("{POD_CGROUP_ROOT}/{pod_id}")
    } else if qos.eq_ignore_ascii_case(QosClass::Burstable.as_str()) {
        format!("{POD_CGROUP_ROOT}/burstable/{pod_id}")
    } else {
        format!("{POD_CGROUP_ROOT}/besteffort/{pod_id}")
    }
}

/// The pod's slice under the systemd cgroup driver: kubelet's names for the same
/// layout (`cgroup_manager_linux.go` `ToSystemd`), under podrun's own `podrun.slice`:
/// `podrun-pod<id>.slice` (Guaranteed), `podrun-burstable-pod<id>.slice`,
/// `podrun-besteffort-pod<id>.slice`. A dash in a slice name makes a level of the
/// hierarchy, so the ID's dashes become underscores, as kubelet escapes a pod UID.
pub fn pod_slice_name(qos: &str, pod_id: &str) -> String {
    let id = pod_id.replace('-', "_");
    if qos.eq_ignore_ascii_case(QosClass::Guaranteed.as_str()) {
        format!("{POD_SLICE_PREFIX}-pod{id}.slice")
    } else if qos.eq_ignore_ascii_case(QosClass::Burstable.as_str()) {
        format!("{POD_SLICE_PREFIX}-burstable-pod{id}.slice")
    } else {
        format!("{POD_SLICE_PREFIX}-besteffort-pod{id}.slice")
    }
}

/// kubelet's `MilliCPUToShares`.
pub fn milli_cpu_to_shares(milli_cpu: i64) -> u64 {
    if milli_cpu <= 0 {
        return MIN_SHARES;
    }
    let shares = u64::try_from(i128::from(milli_cpu) * 1024 / 1000).unwrap_or(MAX_SHARES);
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

/// kubelet's `MilliCPUToQuota`: 0 (unset) for no limit, else at least 1 ms.
pub fn milli_cpu_to_quota(milli_cpu: i64, period: u64) -> i64 {
    if milli_cpu <= 0 {
        return 0;
    }
    let quota = clamp_i64(i128::from(milli_cpu) * i128::from(period) / 1000);
    quota.max(MIN_QUOTA)
}

struct LimitTotals {
    amounts: Amounts,
    cpu_declared: bool,
    memory_declared: bool,
}

/// The pod's limits summed as component-helpers' `PodLimits` does, and whether each
/// container declared cpu and memory limits. The check follows the `ContainerFn`
/// callback kubelet passes (helpers_linux.go): it sees each regular container's
/// limits, and for each init container the limits in force while it runs (its own
/// plus the sidecars before it; for a sidecar, all sidecars so far).
fn aggregate_limits(pod: &Pod) -> LimitTotals {
    let mut totals = LimitTotals {
        amounts: Amounts::new(),
        cpu_declared: true,
        memory_declared: true,
    };
    let Some(spec) = pod.spec.as_ref() else {
        return totals;
    };
    let check = |totals: &mut LimitTotals, list: &Amounts| {
        totals.cpu_declared &= is_positive(list, "cpu");
        totals.memory_declared &= is_positive(list, "memory");
    };
    for container in &spec.containers {
        let own = container_limits(container);
        check(&mut totals, &own);
        add(&mut totals.amounts, &own);
    }
    let mut sidecars = Amounts::new();
    let mut init_peak = Amounts::new();
    for container in spec.init_containers.iter().flatten() {
        let own = container_limits(container);
        let in_force = if container.restart_policy.as_deref() == Some("Always") {
            add(&mut totals.amounts, &own);
            add(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut with_sidecars = own;
            add(&mut with_sidecars, &sidecars);
            with_sidecars
        };
        check(&mut totals, &in_force);
        for (name, amount) in in_force {
            let peak = init_peak.entry(name).or_default();
            *peak = (*peak).max(amount);
        }
    }
    for (name, amount) in init_peak {
        let total = totals.amounts.entry(name).or_default();
        *total = (*total).max(amount);
    }
    totals
}

fn container_limits(container: &Container) -> Amounts {
    parsed(container.resources.as_ref().and_then(|r| r.limits.as_ref()))
}

/// The amounts of a resource list; values that do not parse (validation reports them)
/// are left out.
fn parsed(list: Option<&BTreeMap<String, Quantity>>) -> Amounts {
    list.into_iter()
        .flatten()
        .filter_map(|(name, q)| Some((name.clone(), parse_quantity(&q.0).ok()?.nanos())))
        .collect()
}

fn add(into: &mut Amounts, from: &Amounts) {
    for (name, amount) in from {
        let entry = into.entry(name.clone()).or_default();
        *entry = entry.saturating_add(*amount);
    }
}

fn amount(list: &Amounts, name: &str) -> i128 {
    list.get(name).copied().unwrap_or(0)
}

fn is_positive(list: &Amounts, name: &str) -> bool {
    amount(list, name) > 0
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b > 0 {
        q + 1
    } else {
        q
    }
}

/// component-helpers `IsSupportedPodLevelResource`.
fn is_pod_level_resource(name: &str) -> bool {
    name == "cpu" || name == "memory" || name.starts_with("hugepages-")
}

/// component-helpers `IsPodLevelResourcesSet`.
fn pod_level_resources_set(pod: &Pod) -> bool {
    let Some(resources) = pod.spec.as_ref().and_then(|s| s.resources.as_ref()) else {
        return false;
    };
    [&resources.requests, &resources.limits]
        .into_iter()
        .flatten()
        .any(|list| list.keys().any(|k| is_pod_level_resource(k)))
}

fn clamp_i64(value: i128) -> i64 {
    i64::try_from(value.max(0)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_documents, Object};

    const MI: i64 = 1 << 20;

    fn pod(spec: &str) -> Pod {
        let text = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{spec}");
        match parse_documents(&text, "cgroup.yaml").unwrap().remove(0) {
            Object::Pod(pod) => pod,
            other => panic!("not a pod: {other:?}"),
        }
    }

    /// One container entry; `extra` is added to its fields (`restartPolicy: Always`).
    fn container(name: &str, requests: &str, limits: &str, extra: &str) -> String {
        let mut text = format!("  - name: {name}\n    image: busybox\n");
        if !extra.is_empty() {
            text.push_str(&format!("    {extra}\n"));
        }
        if !requests.is_empty() || !limits.is_empty() {
            text.push_str("    resources:\n");
        }
        if !requests.is_empty() {
            text.push_str(&format!("      requests: {requests}\n"));
        }
        if !limits.is_empty() {
            text.push_str(&format!("      limits: {limits}\n"));
        }
        text
    }

    fn containers(list: &[String]) -> String {
        format!("  containers:\n{}", list.concat())
    }

    fn expected(shares: u64, quota: Option<i64>, memory: Option<i64>) -> PodLimits {
        PodLimits {
            cpu_shares: shares,
            cpu_quota: quota,
            cpu_period: QUOTA_PERIOD,
            memory_limit: memory,
            pids_limit: None,
        }
    }

    #[test]
    fn best_effort_gets_min_shares_and_no_limits() {
        let p = pod(&containers(&[container("a", "", "", "")]));
        assert_eq!(pod_cgroup_limits(&p), expected(2, None, None));
        // Not even a spec.
        let mut bare = p.clone();
        bare.spec = None;
        assert_eq!(pod_cgroup_limits(&bare), expected(2, None, None));
    }

    #[test]
    fn guaranteed_gets_shares_quota_and_memory() {
        let both = "{cpu: 500m, memory: 128Mi}";
        let p = pod(&containers(&[
            container("a", both, both, ""),
            container("b", "", "{cpu: 250m, memory: 64Mi}", ""),
        ]));
        // 750m → 768 shares, 75 ms per 100 ms; 192 MiB.
        assert_eq!(
            pod_cgroup_limits(&p),
            expected(768, Some(75_000), Some(192 * MI))
        );
    }

    #[test]
    fn burstable_sums_requests_and_limits_only_when_all_declare() {
        // Both containers limit cpu and memory, but request less: all limits apply.
        let p = pod(&containers(&[
            container("a", "{cpu: 100m}", "{cpu: 1, memory: 1Gi}", ""),
            container("b", "{cpu: 200m}", "{cpu: 500m, memory: 512Mi}", ""),
        ]));
        assert_eq!(
            pod_cgroup_limits(&p),
            expected(307, Some(150_000), Some(1536 * MI))
        );

        // One container without a cpu limit: no quota; memory still limited.
        let p = pod(&containers(&[
            container("a", "{cpu: 100m}", "{cpu: 1, memory: 1Gi}", ""),
            container("b", "{cpu: 200m}", "{memory: 512Mi}", ""),
        ]));
        assert_eq!(pod_cgroup_limits(&p), expected(307, None, Some(1536 * MI)));

        // One container without a memory limit: no memory limit; quota still set.
        let p = pod(&containers(&[
            container("a", "", "{cpu: 1, memory: 1Gi}", ""),
            container("b", "{memory: 1Mi}", "{cpu: 1}", ""),
        ]));
        assert_eq!(pod_cgroup_limits(&p), expected(2048, Some(200_000), None));

        // A container with nothing at all: neither.
        let p = pod(&containers(&[
            container("a", "{cpu: 1}", "{cpu: 1, memory: 1Gi}", ""),
            container("b", "", "", ""),
        ]));
        assert_eq!(pod_cgroup_limits(&p), expected(1024, None, None));
    }

    #[test]
    fn shares_follow_kubelet_rounding_and_bounds() {
        for (milli, shares) in [
            (0, 2),
            (1, 2),
            (2, 2),
            (3, 3),
            (10, 10),
            (100, 102),
            (999, 1022),
            (1000, 1024),
            (256_000, 262_144),
            (1_000_000, 262_144),
        ] {
            assert_eq!(milli_cpu_to_shares(milli), shares, "{milli}m");
        }
        // Requests only (no limits): shares from the request.
        let p = pod(&containers(&[container("a", "{cpu: 1m}", "", "")]));
        assert_eq!(pod_cgroup_limits(&p), expected(2, None, None));
    }

    #[test]
    fn quota_has_a_floor_of_one_millisecond() {
        assert_eq!(milli_cpu_to_quota(0, QUOTA_PERIOD), 0);
        assert_eq!(milli_cpu_to_quota(1, QUOTA_PERIOD), 1_000);
        assert_eq!(milli_cpu_to_quota(10, QUOTA_PERIOD), 1_000);
        assert_eq!(milli_cpu_to_quota(11, QUOTA_PERIOD), 1_100);
        assert_eq!(milli_cpu_to_quota(2500, QUOTA_PERIOD), 250_000);
        let p = pod(&containers(&[container(
            "a",
            "",
            "{cpu: 1m, memory: 1Mi}",
            "",
        )]));
        assert_eq!(pod_cgroup_limits(&p), expected(2, Some(1_000), Some(MI)));
    }

    #[test]
    fn init_containers_count_by_the_max_rule() {
        // A big init container raises the pod's requests and limits to its own.
        let p = pod(&format!(
            "  initContainers:\n{}{}",
            container("init", "", "{cpu: 2, memory: 1Gi}", ""),
            containers(&[container("a", "", "{cpu: 500m, memory: 128Mi}", "")]),
        ));
        assert_eq!(
            pod_cgroup_limits(&p),
            expected(2048, Some(200_000), Some(1024 * MI))
        );
        // A small one changes nothing.
        let p = pod(&format!(
            "  initContainers:\n{}{}",
            container("init", "", "{cpu: 100m, memory: 16Mi}", ""),
            containers(&[container("a", "", "{cpu: 500m, memory: 128Mi}", "")]),
        ));
        assert_eq!(
            pod_cgroup_limits(&p),
            expected(512, Some(50_000), Some(128 * MI))
        );
    }

    #[test]
    fn sidecars_add_to_the_sum_and_to_later_init_containers() {
        // sidecar (300m, 100Mi) runs beside `a` (500m, 128Mi): 800m, 228Mi. The init
        // container after the sidecar (600m, 200Mi) needs 900m, 300Mi while it runs.
        let p = pod(&format!(
            "  initContainers:\n{}{}{}",
            container(
                "sidecar",
                "",
                "{cpu: 300m, memory: 100Mi}",
                "restartPolicy: Always"
            ),
            container("init", "", "{cpu: 600m, memory: 200Mi}", ""),
            containers(&[container("a", "", "{cpu: 500m, memory: 128Mi}", "")]),
        ));
        assert_eq!(
            pod_cgroup_limits(&p),
            expected(921, Some(90_000), Some(300 * MI))
        );
    }

    #[test]
    fn init_containers_without_limits_leave_the_pod_unlimited() {
        // The init container limits nothing: while it runs the pod is unlimited.
        let p = pod(&format!(
            "  initContainers:\n{}{}",
            container("init", "{cpu: 100m}", "", ""),
            containers(&[container("a", "", "{cpu: 500m, memory: 128Mi}", "")]),
        ));
        assert_eq!(pod_cgroup_limits(&p), expected(512, None, None));
        // Unless a sidecar before it brings limits of its own (kubelet checks the
        // limits in force, the init container's plus the sidecars').
        let p = pod(&format!(
            "  initContainers:\n{}{}{}",
            container(
                "sidecar",
                "",
                "{cpu: 100m, memory: 10Mi}",
                "restartPolicy: Always"
            ),
            container("init", "{cpu: 100m}", "", ""),
            containers(&[container("a", "", "{cpu: 500m, memory: 128Mi}", "")]),
        ));
        assert_eq!(
            pod_cgroup_limits(&p),
            expected(614, Some(60_000), Some(138 * MI))
        );
    }

    #[test]
    fn pod_overhead_is_ignored() {
        let p = pod(&format!(
            "  overhead: {{cpu: 250m, memory: 120Mi}}\n{}",
            containers(&[container("a", "", "{cpu: 1, memory: 1Gi}", "")])
        ));
        assert_eq!(
            pod_cgroup_limits(&p),
            expected(1024, Some(100_000), Some(1024 * MI))
        );
    }

    #[test]
    fn pod_level_resources_replace_the_sums() {
        // Pod-level limits declare the pod limited even though the container is not.
        let p = pod(&format!(
            "  resources:\n    requests: {{cpu: 500m, memory: 256Mi}}\n    limits: {{cpu: 2, memory: 1Gi}}\n{}",
            containers(&[container("a", "{cpu: 100m}", "", "")])
        ));
        assert_eq!(
            pod_cgroup_limits(&p),
            expected(512, Some(200_000), Some(1024 * MI))
        );
        // Pod-level limits only: requests default to them, so the pod is Guaranteed.
        let p = pod(&format!(
            "  resources:\n    limits: {{cpu: 1, memory: 64Mi}}\n{}",
            containers(&[container("a", "", "", "")])
        ));
        assert_eq!(qos_class(&p), QosClass::Guaranteed);
        assert_eq!(
            pod_cgroup_limits(&p),
            expected(1024, Some(100_000), Some(64 * MI))
        );
    }

    #[test]
    fn memory_rounds_up_to_whole_bytes() {
        let p = pod(&containers(&[container(
            "a",
            "",
            "{cpu: 100m, memory: 1.5Ki}",
            "",
        )]));
        assert_eq!(pod_cgroup_limits(&p).memory_limit, Some(1536));
        let p = pod(&containers(&[container(
            "a",
            "",
            "{cpu: 100m, memory: 1500m}",
            "",
        )]));
        assert_eq!(pod_cgroup_limits(&p).memory_limit, Some(2));
    }

    #[test]
    fn paths_follow_kubelets_qos_layout() {
        assert_eq!(pod_cgroup_path("Guaranteed", "abc"), "/podrun/abc");
        assert_eq!(pod_cgroup_path("Burstable", "abc"), "/podrun/burstable/abc");
        assert_eq!(
            pod_cgroup_path("BestEffort", "abc"),
            "/podrun/besteffort/abc"
        );
        assert_eq!(pod_cgroup_path("burstable", "abc"), "/podrun/burstable/abc");
        assert_eq!(pod_cgroup_path("Whatever", "abc"), "/podrun/besteffort/abc");
        assert_eq!(
            pod_cgroup_path(QosClass::Burstable.as_str(), "x"),
            "/podrun/burstable/x"
        );
    }

    #[test]
    fn slices_follow_kubelets_systemd_names() {
        assert_eq!(
            pod_slice_name("Guaranteed", "0c1a-2b"),
            "podrun-pod0c1a_2b.slice"
        );
        assert_eq!(
            pod_slice_name("burstable", "u-1-2"),
            "podrun-burstable-podu_1_2.slice"
        );
        assert_eq!(
            pod_slice_name("BestEffort", "x"),
            "podrun-besteffort-podx.slice"
        );
        assert_eq!(
            pod_slice_name("Whatever", "x"),
            "podrun-besteffort-podx.slice"
        );
    }

    #[test]
    fn limits_round_trip_through_json() {
        let limits = expected(512, Some(50_000), Some(MI));
        let text = serde_json::to_string(&limits).unwrap();
        assert_eq!(serde_json::from_str::<PodLimits>(&text).unwrap(), limits);
    }
}
