//! `podrun top pod` and `podrun top node`: CPU and memory as metrics-server
//! reports them to `kubectl top`. CPU is a rate: the CPU time a cgroup used
//! between two samples over the time between them (metrics-server's window),
//! in millicores; memory is the working set (the usage less the inactive file
//! cache, `podrun_runtime::stats`) now.
//!
//! The samples: every housekeeping period (kubelet's 10 s, as cAdvisor's
//! housekeeping) the agent reads each running pod's and container's cgroup
//! and the node's CPU time, and each `top` reads them again. A rate needs a
//! sample at least [`MIN_WINDOW`] older than now; a pod without one yet is
//! reported as metrics-server's newly created pods are ("Metrics not available
//! for pod …").

use crate::db::PodPhase;
use crate::{Agent, Result};
use podrun_runtime::api::{ContainerFilter, ContainerState};
use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

/// The shortest window a rate is taken over.
pub(crate) const MIN_WINDOW: Duration = Duration::from_secs(1);

/// One reading of a cgroup's (or the node's) CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    at: Instant,
    cpu_ns: u64,
}

/// The two newest samples of each cgroup (by key: `pod/<id>`, `container/<id>`,
/// `node`) that are at least [`MIN_WINDOW`] apart.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    by_key: Mutex<HashMap<String, (Option<Sample>, Sample)>>,
}

impl Samples {
    /// Record `cpu_ns` read at `at` for `key`; the CPU rate in millicores
    /// over the newest window of at least [`MIN_WINDOW`], if there is one.
    fn record(&self, key: &str, at: Instant, cpu_ns: u64) -> Option<u64> {
        let mut by_key = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        let now = Sample { at, cpu_ns };
        let entry = by_key.entry(key.to_owned()).or_insert((None, now));
        // The base: the newest sample old enough to make a window.
        let base = [Some(entry.1), entry.0]
            .into_iter()
            .flatten()
            .find(|s| at.duration_since(s.at) >= MIN_WINDOW);
        if at.duration_since(entry.1.at) >= MIN_WINDOW {
            *entry = (Some(entry.1), now);
        }
        base.map(|b| millicores(b, now))
    }

    /// Forget the keys not in `live` (pods and containers gone).
    fn retain(&self, live: &std::collections::HashSet<String>) {
        let mut by_key = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        by_key.retain(|k, _| live.contains(k));
    }
}

/// CPU time over wall time between two samples, in millicores (a counter that
/// went back, a restarted cgroup, counts as none).
fn millicores(from: Sample, to: Sample) -> u64 {
    let wall = to.at.duration_since(from.at).as_nanos().max(1);
    let used = u128::from(to.cpu_ns.saturating_sub(from.cpu_ns));
    u64::try_from(used * 1000 / wall).unwrap_or(u64::MAX)
}

/// What one pod uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodUsage {
    pub namespace: String,
    pub name: String,
    /// Millicores; None until a window exists.
    pub cpu: Option<u64>,
    /// Working set bytes.
    pub memory: u64,
    /// Its running containers: (name, millicores, working set bytes).
    pub containers: Vec<(String, Option<u64>, u64)>,
    /// How long ago its sandbox started.
    pub age: Duration,
}

/// Read every running pod of the agent (in `namespace`, or all) now.
pub(crate) fn pods(agent: &Agent, namespace: Option<&str>) -> Result<Vec<PodUsage>> {
    let rows = agent.db().pods()?;
    let now = Instant::now();
    let mut out = Vec::new();
    for row in rows
        .iter()
        .filter(|r| r.state == PodPhase::Running && !r.pod_id.is_empty())
        .filter(|r| namespace.is_none_or(|n| n == r.namespace))
    {
        let Ok(stats) = agent.runtime.pod_sandbox_stats(&row.pod_id) else {
            continue;
        };
        let cpu = stats.usage.cpu_ns.and_then(|ns| {
            agent
                .samples
                .record(&format!("pod/{}", row.pod_id), now, ns)
        });
        let filter = ContainerFilter {
            sandbox_id: Some(row.pod_id.clone()),
            state: Some(ContainerState::Running),
            ..ContainerFilter::default()
        };
        let mut containers = Vec::new();
        for c in agent.runtime.list_containers(&filter).unwrap_or_default() {
            let Ok(s) = agent.runtime.container_stats(&c.id) else {
                continue;
            };
            let cpu = s.usage.cpu_ns.and_then(|ns| {
                agent
                    .samples
                    .record(&format!("container/{}", c.id), now, ns)
            });
            containers.push((c.name, cpu, s.usage.working_set_bytes.unwrap_or(0)));
        }
        containers.sort();
        let started = row.started.as_deref().unwrap_or(&row.created);
        let age = chrono::DateTime::parse_from_rfc3339(started)
            .ok()
            .and_then(|t| (chrono::Utc::now() - t.to_utc()).to_std().ok())
            .unwrap_or_default();
        out.push(PodUsage {
            namespace: row.namespace.clone(),
            name: row.name.clone(),
            cpu,
            memory: stats.usage.working_set_bytes.unwrap_or(0),
            containers,
            age,
        });
    }
    Ok(out)
}

/// The node's CPU time (all CPUs, from `/proc/stat`: user, nice, system, irq,
/// softirq and steal) in nanoseconds.
fn node_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (USER_HZ ticks).
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    // USER_HZ: 100 on every Linux (the ABI fixes it, whatever the kernel's HZ).
    Some(busy.saturating_mul(10_000_000))
}

/// A `/proc/meminfo` field in bytes.
fn meminfo(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// What the node uses and has: millicores now (None until a window
/// exists), memory working set (MemTotal − MemFree − Inactive(file), the
/// root cgroup's as cAdvisor reads it), and its allocatable CPU and memory.
pub(crate) struct NodeUsage {
    pub cpu: Option<u64>,
    pub memory: u64,
    pub allocatable_cpu_millis: u64,
    pub allocatable_memory: u64,
}

/// The node's memory and its working set (bytes): what is not free, less
/// the inactive file cache.
pub(crate) fn node_memory() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = meminfo(&text, "MemTotal:").unwrap_or(0);
    let used = total.saturating_sub(meminfo(&text, "MemFree:").unwrap_or(0));
    let working_set = used.saturating_sub(meminfo(&text, "Inactive(file):").unwrap_or(0));
    (total, working_set)
}

/// The node now.
pub(crate) fn node(agent: &Agent) -> NodeUsage {
    let cpu = node_cpu_ns().and_then(|ns| agent.samples.record("node", Instant::now(), ns));
    let (total, memory) = node_memory();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    NodeUsage {
        cpu,
        memory,
        allocatable_cpu_millis: cpus * 1000,
        allocatable_memory: total.saturating_sub(crate::eviction::reserved(
            agent,
            podrun_kubelet::eviction::Signal::MemoryAvailable,
            total,
        )),
    }
}

/// The housekeeping loop: a sample of every running pod, container and the
/// node each period, so that `top` has a window at once; samples of what is
/// gone are dropped. It ends with the agent.
pub(crate) async fn run(agent: Weak<Agent>) {
    let interval = crate::eviction::housekeeping_interval();
    loop {
        tokio::time::sleep(interval).await;
        let Some(agent) = agent.upgrade() else {
            return;
        };
        let agent2 = agent.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(pods) = pods(&agent2, None) else {
                return;
            };
            let _ = node(&agent2);
            let mut live: std::collections::HashSet<String> = ["node".to_owned()].into();
            for row in agent2.db().pods().unwrap_or_default() {
                live.insert(format!("pod/{}", row.pod_id));
            }
            drop(pods);
            let running = ContainerFilter {
                state: Some(ContainerState::Running),
                ..ContainerFilter::default()
            };
            for c in agent2.runtime.list_containers(&running).unwrap_or_default() {
                live.insert(format!("container/{}", c.id));
            }
            agent2.samples.retain(&live);
        })
        .await;
    }
}

/// kubectl top's CPU cell: `12m`.
fn cpu_cell(millis: u64) -> String {
    format!("{millis}m")
}

/// kubectl top's memory cell: whole MiB, `5Mi`.
fn memory_cell(bytes: u64) -> String {
    format!("{}Mi", bytes / (1024 * 1024))
}

/// How `top pod` orders its rows (kubectl's `--sort-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// By namespace and name (the API's order).
    Name,
    /// Most CPU first.
    Cpu,
    /// Most memory first.
    Memory,
}

impl std::str::FromStr for SortBy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "" => Ok(SortBy::Name),
            "cpu" => Ok(SortBy::Cpu),
            "memory" => Ok(SortBy::Memory),
            other => Err(format!(
                "--sort-by accepts only cpu or memory, not {other:?}"
            )),
        }
    }
}

/// What `top pod` asks.
pub(crate) struct PodQuery<'a> {
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub containers: bool,
    pub sort_by: SortBy,
}

/// kubectl top pod's table (or its error) from `usage`.
pub(crate) fn pod_table(
    usage: Vec<PodUsage>,
    q: &PodQuery<'_>,
) -> std::result::Result<String, String> {
    let mut usage: Vec<PodUsage> = usage
        .into_iter()
        .filter(|p| q.name.is_none_or(|n| n == p.name))
        .collect();
    if let (Some(name), true) = (q.name, usage.is_empty()) {
        return Err(format!("pods \"{name}\" not found"));
    }
    if usage.is_empty() {
        return Err(match q.namespace {
            Some(ns) => format!("No resources found in {ns} namespace."),
            None => "No resources found".to_owned(),
        });
    }
    if let Some(p) = usage.iter().find(|p| p.cpu.is_none()) {
        return Err(format!(
            "Metrics not available for pod {}/{}, age: {}",
            p.namespace,
            p.name,
            go_duration(p.age)
        ));
    }
    usage.sort_by(|a, b| match q.sort_by {
        SortBy::Name => (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)),
        SortBy::Cpu => b.cpu.cmp(&a.cpu),
        SortBy::Memory => b.memory.cmp(&a.memory),
    });
    // kubectl sorts each pod's containers by the same key (by name without one).
    for p in &mut usage {
        p.containers.sort_by(|a, b| match q.sort_by {
            SortBy::Name => a.0.cmp(&b.0),
            SortBy::Cpu => b.1.cmp(&a.1),
            SortBy::Memory => b.2.cmp(&a.2),
        });
    }
    let all = q.namespace.is_none();
    let mut rows = Vec::new();
    let mut header = Vec::new();
    if all {
        header.push("NAMESPACE".to_owned());
    }
    if q.containers {
        header.extend(["POD", "NAME"].map(str::to_owned));
    } else {
        header.push("NAME".to_owned());
    }
    header.extend(["CPU(cores)", "MEMORY(bytes)"].map(str::to_owned));
    rows.push(header);
    for p in &usage {
        let lead = |row: &mut Vec<String>| {
            if all {
                row.push(p.namespace.clone());
            }
        };
        if q.containers {
            for (name, cpu, memory) in &p.containers {
                let mut row = Vec::new();
                lead(&mut row);
                row.extend([
                    p.name.clone(),
                    name.clone(),
                    cpu_cell(cpu.unwrap_or(0)),
                    memory_cell(*memory),
                ]);
                rows.push(row);
            }
        } else {
            let mut row = Vec::new();
            lead(&mut row);
            row.extend([
                p.name.clone(),
                cpu_cell(p.cpu.unwrap_or(0)),
                memory_cell(p.memory),
            ]);
            rows.push(row);
        }
    }
    let mut out = Vec::new();
    crate::table::write(&mut out, &rows).expect("writing to memory");
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// kubectl top node's table for the node `name`.
pub(crate) fn node_table(name: &str, n: &NodeUsage) -> std::result::Result<String, String> {
    let Some(cpu) = n.cpu else {
        return Err("metrics not available yet".to_owned());
    };
    let percent = |used: u64, of: u64| format!("{}%", used * 100 / of.max(1));
    let rows = vec![
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
            .map(str::to_owned)
            .to_vec(),
        vec![
            name.to_owned(),
            cpu_cell(cpu),
            percent(cpu, n.allocatable_cpu_millis),
            memory_cell(n.memory),
            percent(n.memory, n.allocatable_memory),
        ],
    ];
    let mut out = Vec::new();
    crate::table::write(&mut out, &rows).expect("writing to memory");
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A duration as Go prints one (`4.2s`, `2m3.5s`, `1h0m0s`), as kubectl's
/// "Metrics not available" message shows a pod's age (to the millisecond).
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
    let s = (ms % 60_000) as f64 / 1000.0;
    let s = format!("{s}");
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_needs_a_window_of_a_second_and_takes_the_newest() {
        let s = Samples::default();
        let t0 = Instant::now();
        assert_eq!(s.record("k", t0, 0), None, "one sample: no window");
        let half = t0 + Duration::from_millis(500);
        assert_eq!(s.record("k", half, 100_000_000), None, "too short a window");
        // 1 s after the first: 0.5 CPU-seconds over 1 s is 500m.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(s.record("k", t1, 500_000_000), Some(500));
        // 1.5 s after the first, 0.5 s after the second: the base is the
        // first (the newest at least 1 s old): 0.75 CPU-s over 1.5 s.
        let t15 = t0 + Duration::from_millis(1500);
        assert_eq!(s.record("k", t15, 750_000_000), Some(500));
        // 2 s after the first: the second (t1) is the base now.
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(s.record("k", t2, 1_500_000_000), Some(1000));
        // A counter that went back (a new cgroup of that name) counts as 0.
        let t4 = t0 + Duration::from_secs(4);
        assert_eq!(s.record("k", t4, 0), Some(0));
        s.retain(&std::collections::HashSet::new());
        assert_eq!(s.record("k", t4, 0), None, "forgotten");
    }

    fn usage(name: &str, cpu: Option<u64>, memory: u64) -> PodUsage {
        PodUsage {
            namespace: "default".into(),
            name: name.into(),
            cpu,
            memory,
            containers: vec![
                ("app".into(), cpu, memory / 2),
                ("side".into(), Some(0), memory / 2),
            ],
            age: Duration::from_millis(2500),
        }
    }

    #[test]
    fn top_pod_prints_kubectls_columns() {
        let q = PodQuery {
            namespace: Some("default"),
            name: None,
            containers: false,
            sort_by: SortBy::Name,
        };
        let got = pod_table(
            vec![
                usage("web", Some(12), 5 << 20),
                usage("db", Some(250), 120 << 20),
            ],
            &q,
        );
        assert_eq!(
            got.unwrap(),
            "NAME   CPU(cores)   MEMORY(bytes)\n\
             db     250m         120Mi\n\
             web    12m          5Mi\n"
        );
        let q = PodQuery {
            namespace: None,
            containers: true,
            sort_by: SortBy::Cpu,
            ..q
        };
        let got = pod_table(
            vec![
                usage("web", Some(12), 5 << 20),
                usage("db", Some(250), 120 << 20),
            ],
            &q,
        );
        assert_eq!(
            got.unwrap(),
            "NAMESPACE   POD   NAME   CPU(cores)   MEMORY(bytes)\n\
             default     db    app    250m         60Mi\n\
             default     db    side   0m           60Mi\n\
             default     web   app    12m          2Mi\n\
             default     web   side   0m           2Mi\n"
        );
    }

    #[test]
    fn top_pod_says_what_kubectl_says_without_metrics() {
        let q = PodQuery {
            namespace: Some("default"),
            name: None,
            containers: false,
            sort_by: SortBy::Name,
        };
        assert_eq!(
            pod_table(vec![usage("web", None, 0)], &q).unwrap_err(),
            "Metrics not available for pod default/web, age: 2.5s"
        );
        assert_eq!(
            pod_table(vec![], &q).unwrap_err(),
            "No resources found in default namespace."
        );
        let q = PodQuery {
            name: Some("nope"),
            ..q
        };
        assert_eq!(
            pod_table(vec![usage("web", Some(1), 0)], &q).unwrap_err(),
            "pods \"nope\" not found"
        );
        assert_eq!(
            "x".parse::<SortBy>().unwrap_err(),
            "--sort-by accepts only cpu or memory, not \"x\""
        );
    }

    #[test]
    fn top_node_prints_usage_against_allocatable() {
        let n = NodeUsage {
            cpu: Some(500),
            memory: 1 << 30,
            allocatable_cpu_millis: 2000,
            allocatable_memory: 4 << 30,
        };
        assert_eq!(
            node_table("box", &n).unwrap(),
            "NAME   CPU(cores)   CPU(%)   MEMORY(bytes)   MEMORY(%)\n\
             box    500m         25%      1024Mi          25%\n"
        );
        let n = NodeUsage { cpu: None, ..n };
        assert_eq!(
            node_table("box", &n).unwrap_err(),
            "metrics not available yet"
        );
    }

    #[test]
    fn durations_read_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(go_duration(Duration::from_millis(123_000)), "2m3s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}
