//! ListMetricDescriptors and ListPodSandboxMetrics: the CPU and memory use the
//! runtime reads from each ready sandbox's and running container's cgroup, as
//! cAdvisor-named metrics, for kubelet's `/metrics/cadvisor` when it takes pod and
//! container statistics from the CRI (the `PodAndContainerStatsFromCRI` gate:
//! pkg/kubelet/metrics/collectors/cri_metrics.go turns each descriptor into a
//! Prometheus description and each metric's value into a float as it is).
//!
//! The names, help texts and label keys (`id`, `name`) are the ones containerd
//! serves for these cAdvisor metrics. The API's values are whole numbers, so the
//! CPU counter counts whole seconds. Network, disk and process metrics are not
//! served: the runtime does not read them yet.

use crate::proto as pb;
use podrun_runtime::stats::Usage;

/// The label keys of every metric: the container's (or sandbox's) ID and name.
const LABEL_KEYS: [&str; 2] = ["id", "name"];

/// One metric: its name, help, type and how it is read from a cgroup's use.
struct Served {
    name: &'static str,
    help: &'static str,
    kind: pb::MetricType,
    value: fn(&Usage) -> Option<u64>,
}

const SERVED: [Served; 4] = [
    Served {
        name: "container_cpu_usage_seconds_total",
        help: "Cumulative CPU time consumed in seconds.",
        kind: pb::MetricType::Counter,
        value: |u| u.cpu_ns.map(|ns| ns / 1_000_000_000),
    },
    Served {
        name: "container_memory_usage_bytes",
        help:
            "Current memory usage in bytes, including all memory regardless of when it was accessed",
        kind: pb::MetricType::Gauge,
        value: |u| u.memory_bytes,
    },
    Served {
        name: "container_memory_working_set_bytes",
        help: "Current working set in bytes.",
        kind: pb::MetricType::Gauge,
        value: |u| u.working_set_bytes,
    },
    Served {
        name: "container_memory_rss",
        help: "Size of RSS in bytes.",
        kind: pb::MetricType::Gauge,
        value: |u| u.rss_bytes,
    },
];

/// What ListMetricDescriptors answers.
pub fn descriptors() -> Vec<pb::MetricDescriptor> {
    SERVED
        .iter()
        .map(|m| pb::MetricDescriptor {
            name: m.name.into(),
            help: m.help.into(),
            label_keys: LABEL_KEYS.iter().map(|k| k.to_string()).collect(),
        })
        .collect()
}

/// The metrics of one cgroup's `usage`, labelled with `id` and `name`, read
/// live (timestamp 0, as the API asks); a value the cgroup does not give is
/// left out.
pub fn metrics(id: &str, name: &str, usage: &Usage) -> Vec<pb::Metric> {
    SERVED
        .iter()
        .filter_map(|m| {
            Some(pb::Metric {
                name: m.name.into(),
                timestamp: 0,
                metric_type: m.kind as i32,
                label_values: vec![id.into(), name.into()],
                value: Some(pb::UInt64Value {
                    value: (m.value)(usage)?,
                }),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_a_descriptor_and_its_labels() {
        let usage = Usage {
            cpu_ns: Some(2_500_000_000),
            memory_bytes: Some(4096),
            working_set_bytes: Some(1024),
            rss_bytes: None,
            ..Usage::default()
        };
        let out = metrics("c1", "app", &usage);
        let names: Vec<&str> = out.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "container_cpu_usage_seconds_total",
                "container_memory_usage_bytes",
                "container_memory_working_set_bytes",
            ]
        );
        let values: Vec<u64> = out.iter().map(|m| m.value.unwrap().value).collect();
        assert_eq!(values, [2, 4096, 1024]);
        assert_eq!(out[0].metric_type, pb::MetricType::Counter as i32);
        assert_eq!(out[1].metric_type, pb::MetricType::Gauge as i32);
        let described = descriptors();
        for m in &out {
            let d = described.iter().find(|d| d.name == m.name).unwrap();
            assert_eq!(d.label_keys.len(), m.label_values.len());
        }
        assert_eq!(out[0].label_values, ["c1", "app"]);
    }
}
