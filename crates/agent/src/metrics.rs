//! Metrics for Prometheus, under kubelet's names (pkg/kubelet/metrics/metrics.go),
//! served on the opt-in `podrun serve --metrics-address` at `/metrics` in the
//! Prometheus text format (0.0.4) that kubelet's component-base writes:
//!
//! - `kubelet_running_pods`, `kubelet_running_containers{container_state}`:
//!   read from the runtime at each scrape;
//! - `kubelet_pod_start_duration_seconds`: from the agent first seeing a pod
//!   to its phase Running (kubelet's buckets);
//! - `kubelet_pod_worker_duration_seconds{operation_type}`: each pod worker
//!   sync, `create` for a pod whose sandbox is being made, else `sync`;
//! - `kubelet_evictions{eviction_signal}`;
//! - `kubelet_image_pull_duration_seconds{image_size_in_bytes}` (kubelet's size
//!   buckets as label values);
//! - `container_cpu_usage_seconds_total` and `container_memory_working_set_bytes`
//!   `{container,namespace,pod}` as kubelet's resource metrics name cAdvisor's,
//!   read from the cgroups at each scrape.
//!
//! The recorded ones live for the process (as kubelet's legacy registry).

use crate::db::PodPhase;
use crate::Agent;
use podrun_runtime::api::{ContainerFilter, ContainerState};
use prometheus::{
    CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// kubelet's buckets of `pod_start_duration_seconds`.
const POD_START_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];
/// kubelet's buckets of `image_pull_duration_seconds`.
const IMAGE_PULL_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0, 600.0, 900.0,
    1200.0, 1800.0, 2700.0, 3600.0,
];

/// The metrics the agent records as things happen.
pub(crate) struct Recorded {
    registry: Registry,
    pod_start: Histogram,
    pod_worker: HistogramVec,
    evictions: IntCounterVec,
    image_pull: HistogramVec,
}

fn recorded() -> Recorded {
    let registry = Registry::new();
    let pod_start = Histogram::with_opts(
        HistogramOpts::new(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
        )
        .buckets(POD_START_BUCKETS.to_vec()),
    )
    .expect("valid histogram");
    let pod_worker = HistogramVec::new(
        HistogramOpts::new(
            "kubelet_pod_worker_duration_seconds",
            "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
        ),
        &["operation_type"],
    )
    .expect("valid histogram");
    let evictions = IntCounterVec::new(
        Opts::new(
            "kubelet_evictions",
            "Cumulative number of pod evictions by eviction signal",
        ),
        &["eviction_signal"],
    )
    .expect("valid counter");
    let image_pull = HistogramVec::new(
        HistogramOpts::new(
            "kubelet_image_pull_duration_seconds",
            "Duration in seconds to pull an image.",
        )
        .buckets(IMAGE_PULL_BUCKETS.to_vec()),
        &["image_size_in_bytes"],
    )
    .expect("valid histogram");
    for c in [
        Box::new(pod_start.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(pod_worker.clone()),
        Box::new(evictions.clone()),
        Box::new(image_pull.clone()),
    ] {
        registry.register(c).expect("distinct names");
    }
    Recorded {
        registry,
        pod_start,
        pod_worker,
        evictions,
        image_pull,
    }
}

static RECORDED: LazyLock<Recorded> = LazyLock::new(recorded);

/// A pod reached phase Running `since` after the agent first saw it.
pub(crate) fn pod_started(since: Duration) {
    RECORDED.pod_start.observe(since.as_secs_f64());
}

/// A pod worker's sync took `took`.
pub(crate) fn pod_worker(operation: &str, took: Duration) {
    RECORDED
        .pod_worker
        .with_label_values(&[operation])
        .observe(took.as_secs_f64());
}

/// A pod was evicted by `signal` (`emptydirfs.limit`, …).
pub(crate) fn evicted(signal: &str) {
    RECORDED.evictions.with_label_values(&[signal]).inc();
}

/// An image of `size` bytes was pulled in `took`.
pub(crate) fn image_pulled(size: u64, took: Duration) {
    RECORDED
        .image_pull
        .with_label_values(&[image_size_bucket(size)])
        .observe(took.as_secs_f64());
}

/// kubelet's `GetImageSizeBucket`: the label of the size's bucket (a lower
/// bound is exclusive), `N/A` for an unknown (0) size.
pub(crate) fn image_size_bucket(size: u64) -> &'static str {
    const MB: u64 = 1024 * 1024;
    const GB: u64 = 1024 * MB;
    const BUCKETS: &[(u64, &str)] = &[
        (0, "0-10MB"),
        (10 * MB, "10MB-100MB"),
        (100 * MB, "100MB-500MB"),
        (500 * MB, "500MB-1GB"),
        (GB, "1GB-5GB"),
        (5 * GB, "5GB-10GB"),
        (10 * GB, "10GB-20GB"),
        (20 * GB, "20GB-30GB"),
        (30 * GB, "30GB-40GB"),
        (40 * GB, "40GB-60GB"),
        (60 * GB, "60GB-100GB"),
        (100 * GB, "GT100GB"),
    ];
    if size == 0 {
        return "N/A";
    }
    BUCKETS
        .iter()
        .rev()
        .find(|(lower, _)| size > *lower)
        .map_or("", |(_, label)| label)
}

/// The metrics read now from the runtime and the cgroups, in a registry of
/// their own.
fn read_now(agent: &Agent) -> Registry {
    let registry = Registry::new();
    let running_pods = IntGauge::new(
        "kubelet_running_pods",
        "Number of pods that have a running pod sandbox",
    )
    .expect("valid gauge");
    let running_containers = IntGaugeVec::new(
        Opts::new(
            "kubelet_running_containers",
            "Number of containers currently running",
        ),
        &["container_state"],
    )
    .expect("valid gauge");
    let cpu = CounterVec::new(
        Opts::new(
            "container_cpu_usage_seconds_total",
            "Cumulative cpu time consumed by the container in core-seconds",
        ),
        &["container", "namespace", "pod"],
    )
    .expect("valid counter");
    let memory = GaugeVec::new(
        Opts::new(
            "container_memory_working_set_bytes",
            "Current working set of the container in bytes",
        ),
        &["container", "namespace", "pod"],
    )
    .expect("valid gauge");
    let rows = agent.db().pods().unwrap_or_default();
    let live: Vec<_> = rows
        .iter()
        .filter(|r| r.state == PodPhase::Running && !r.pod_id.is_empty())
        .collect();
    running_pods.set(i64::try_from(live.len()).unwrap_or(i64::MAX));
    for state in ["created", "running", "exited", "unknown"] {
        running_containers.with_label_values(&[state]).set(0);
    }
    for row in &live {
        let filter = ContainerFilter {
            sandbox_id: Some(row.pod_id.clone()),
            ..ContainerFilter::default()
        };
        for c in agent.runtime.list_containers(&filter).unwrap_or_default() {
            let state = match c.state {
                ContainerState::Created => "created",
                ContainerState::Running => "running",
                ContainerState::Exited => "exited",
                _ => "unknown",
            };
            running_containers.with_label_values(&[state]).inc();
            if c.state != ContainerState::Running {
                continue;
            }
            let Ok(stats) = agent.runtime.container_stats(&c.id) else {
                continue;
            };
            let labels = [c.name.as_str(), row.namespace.as_str(), row.name.as_str()];
            if let Some(ns) = stats.usage.cpu_ns {
                cpu.with_label_values(&labels).inc_by(ns as f64 / 1e9);
            }
            if let Some(bytes) = stats.usage.working_set_bytes {
                memory.with_label_values(&labels).set(bytes as f64);
            }
        }
    }
    for c in [
        Box::new(running_pods) as Box<dyn prometheus::core::Collector>,
        Box::new(running_containers),
        Box::new(cpu),
        Box::new(memory),
    ] {
        registry.register(c).expect("distinct names");
    }
    registry
}

/// The text a scrape gets.
pub(crate) fn exposition(agent: &Agent) -> String {
    let mut families = RECORDED.registry.gather();
    families.extend(read_now(agent).gather());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .expect("text encoding to memory");
    String::from_utf8_lossy(&out).into_owned()
}

/// Serve `GET /metrics` on `listener` for as long as the agent lives: one
/// request per connection (HTTP/1.1, `Connection: close`), 404 elsewhere.
pub(crate) async fn serve(listener: tokio::net::TcpListener, agent: std::sync::Weak<Agent>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let Some(agent) = agent.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            // The request head, up to 16 KiB and 5 s.
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            })
            .await;
            if !matches!(read, Ok(true)) {
                return;
            }
            let line = String::from_utf8_lossy(&head);
            let target = line.split_whitespace().nth(1).unwrap_or("");
            let path = target.split('?').next().unwrap_or("");
            let (status, kind, body) = if line.starts_with("GET ") && path == "/metrics" {
                let agent2 = Arc::clone(&agent);
                let text = tokio::task::spawn_blocking(move || exposition(&agent2))
                    .await
                    .unwrap_or_default();
                ("200 OK", prometheus::TEXT_FORMAT, text)
            } else {
                (
                    "404 Not Found",
                    "text/plain; charset=utf-8",
                    "404 page not found\n".to_owned(),
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sizes_fall_in_kubelets_buckets() {
        assert_eq!(image_size_bucket(0), "N/A");
        assert_eq!(image_size_bucket(1), "0-10MB");
        assert_eq!(image_size_bucket(10 << 20), "0-10MB");
        assert_eq!(image_size_bucket((10 << 20) + 1), "10MB-100MB");
        assert_eq!(image_size_bucket(3 << 30), "1GB-5GB");
        assert_eq!(image_size_bucket(200 << 30), "GT100GB");
    }

    #[test]
    fn recorded_metrics_are_in_the_text_format_under_kubelets_names() {
        evicted("emptydirfs.limit");
        image_pulled(2 << 20, Duration::from_millis(300));
        pod_started(Duration::from_millis(700));
        pod_worker("sync", Duration::from_millis(2));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&RECORDED.registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in [
            "# TYPE kubelet_evictions counter",
            "kubelet_evictions{eviction_signal=\"emptydirfs.limit\"} 1",
            "# TYPE kubelet_image_pull_duration_seconds histogram",
            "kubelet_image_pull_duration_seconds_bucket{image_size_in_bytes=\"0-10MB\",le=\"1\"} 1",
            "kubelet_pod_start_duration_seconds_bucket{le=\"0.5\"} 0",
            "kubelet_pod_start_duration_seconds_bucket{le=\"1\"} 1",
            "kubelet_pod_worker_duration_seconds_count{operation_type=\"sync\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
    }
}
