//! `podrun describe node`: kubectl's layout of this node (kubectl
//! pkg/describe/describe.go `describeNode`): its labels as kubelet sets them,
//! conditions from the eviction signals, addresses, capacity and allocatable
//! (kubelet's defaults: no reservations, the hard eviction thresholds
//! `memory.available<100Mi` and `nodefs.available<10%` taken off), system
//! info, the pods that have not terminated with their requests and limits,
//! and the allocated totals. kubectl prints it through a Go tabwriter
//! (padding 2): [`tabwrite`] aligns the same way.

use crate::db::PodPhase;
use crate::{Agent, Result};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A node condition as kubelet sets it (pkg/kubelet/nodestatus/setters.go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Condition {
    pub kind: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: &'static str,
}

/// A pod that has not terminated, as the node's table lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodLine {
    pub namespace: String,
    pub name: String,
    /// Requests and limits (nanounits by resource name).
    pub requests: BTreeMap<String, i128>,
    pub limits: BTreeMap<String, i128>,
    pub age: String,
}

/// What `describe node` shows.
#[derive(Debug, Clone)]
pub(crate) struct NodeView {
    pub name: String,
    pub created: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub conditions: Vec<Condition>,
    pub internal_ip: Option<String>,
    /// Resource name → quantity text.
    pub capacity: BTreeMap<String, String>,
    pub allocatable: BTreeMap<String, String>,
    /// Allocatable CPU (millicores), memory, ephemeral storage and huge pages
    /// (bytes), for the percentages.
    pub allocatable_amounts: BTreeMap<String, i128>,
    /// (label, value) of System Info, in kubectl's order.
    pub system: Vec<(&'static str, String)>,
    pub pods: Vec<PodLine>,
}

/// Go's text/tabwriter as kubectl's describe sets it up (minwidth 0,
/// padding `padding`, no flags): the text of adjacent cells of one column
/// (each ended by a tab) is padded to the column's widest plus `padding`; a
/// column's block is a run of adjacent lines that have that cell; the text
/// after a line's last tab is not a cell.
pub(crate) fn tabwrite(text: &str, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_terminator('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    let cells = |i: usize| lines[i].len() - 1;
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|l| vec![0; l.len() - 1]).collect();
    let columns = (0..lines.len()).map(cells).max().unwrap_or(0);
    for column in 0..columns {
        let mut i = 0;
        while i < lines.len() {
            if cells(i) <= column {
                i += 1;
                continue;
            }
            let start = i;
            while i < lines.len() && cells(i) > column {
                i += 1;
            }
            let width = (start..i)
                .map(|l| lines[l][column].chars().count() + padding)
                .max()
                .unwrap_or(0);
            for w in &mut widths[start..i] {
                w[column] = width;
            }
        }
    }
    let mut out = String::new();
    for (line, widths) in lines.iter().zip(&widths) {
        for (cell, width) in line.iter().zip(widths) {
            let _ = write!(out, "{cell:<width$}");
        }
        out.push_str(line[line.len() - 1]);
        out.push('\n');
    }
    out
}

/// A CPU amount as Kubernetes prints a quantity of it: `2`, `250m`.
fn cpu_text(nanos: i128) -> String {
    let millis = (nanos + 999_999) / 1_000_000;
    if millis % 1000 == 0 {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

/// Bytes as Kubernetes prints a quantity of them: the largest binary suffix
/// that divides them (`64Mi`), else the largest decimal one (`100M`), else
/// the number.
pub(crate) fn bytes_text(bytes: i128) -> String {
    if bytes == 0 {
        return "0".into();
    }
    for (suffix, unit) in [
        ("Ei", 1i128 << 60),
        ("Pi", 1 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    for (suffix, unit) in [
        ("E", 1_000_000_000_000_000_000i128),
        ("P", 1_000_000_000_000_000),
        ("T", 1_000_000_000_000),
        ("G", 1_000_000_000),
        ("M", 1_000_000),
        ("k", 1000),
    ] {
        if bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// A resource amount (nanounits) as kubectl prints it.
fn amount_text(resource: &str, nanos: i128) -> String {
    if resource == "cpu" {
        cpu_text(nanos)
    } else {
        bytes_text((nanos + 999_999_999) / 1_000_000_000)
    }
}

/// `used` as a whole percentage of `of` (kubectl truncates).
fn percent(used: i128, of: i128) -> i128 {
    if of == 0 {
        0
    } else {
        used * 100 / of
    }
}

/// The text of `describe node` from `v`.
pub(crate) fn render(v: &NodeView) -> String {
    let rfc1123z = |t: DateTime<Utc>| t.format("%a, %d %b %Y %H:%M:%S %z").to_string();
    let mut w = String::new();
    let _ = writeln!(w, "Name:\t{}", v.name);
    let _ = writeln!(w, "Roles:\t<none>");
    let arch = go_arch();
    let labels = [
        format!("beta.kubernetes.io/arch={arch}"),
        "beta.kubernetes.io/os=linux".to_owned(),
        format!("kubernetes.io/arch={arch}"),
        format!("kubernetes.io/hostname={}", v.name),
        "kubernetes.io/os=linux".to_owned(),
    ];
    for (i, label) in labels.iter().enumerate() {
        let title = if i == 0 { "Labels:" } else { "" };
        let _ = writeln!(w, "{title}\t{label}");
    }
    let _ = writeln!(w, "Annotations:\t<none>");
    let _ = writeln!(w, "CreationTimestamp:\t{}", rfc1123z(v.created));
    let _ = writeln!(w, "Taints:\t<none>");
    let _ = writeln!(w, "Unschedulable:\tfalse");
    w.push_str(
        "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n",
    );
    w.push_str("  ----\t------\t-----------------\t------------------\t------\t-------\n");
    for c in &v.conditions {
        let status = if c.status { "True" } else { "False" };
        let _ = writeln!(
            w,
            "  {} \t{status} \t{} \t{} \t{} \t{}",
            c.kind,
            rfc1123z(v.now),
            rfc1123z(v.created),
            c.reason,
            c.message
        );
    }
    w.push_str("Addresses:\n");
    if let Some(ip) = &v.internal_ip {
        let _ = writeln!(w, "  InternalIP:\t{ip}");
    }
    let _ = writeln!(w, "  Hostname:\t{}", v.name);
    for (title, list) in [("Capacity", &v.capacity), ("Allocatable", &v.allocatable)] {
        let _ = writeln!(w, "{title}:");
        for (name, value) in list {
            let _ = writeln!(w, "  {name}:\t{value}");
        }
    }
    w.push_str("System Info:\n");
    for (label, value) in &v.system {
        let _ = writeln!(w, "  {label}:\t{value}");
    }
    let _ = writeln!(w, "Non-terminated Pods:\t({} in total)", v.pods.len());
    w.push_str(
        "  Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n",
    );
    w.push_str(
        "  ---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n",
    );
    let alloc = |r: &str| v.allocatable_amounts.get(r).copied().unwrap_or(0);
    let cell = |list: &BTreeMap<String, i128>, r: &str| {
        let n = list.get(r).copied().unwrap_or(0);
        let of = if r == "cpu" {
            alloc(r) * 1_000_000
        } else {
            alloc(r) * 1_000_000_000
        };
        format!("{} ({}%)", amount_text(r, n), percent(n, of))
    };
    let mut requests: BTreeMap<String, i128> = BTreeMap::new();
    let mut limits: BTreeMap<String, i128> = BTreeMap::new();
    for p in &v.pods {
        let _ = writeln!(
            w,
            "  {}\t{}\t\t{}\t{}\t{}\t{}\t{}",
            p.namespace,
            p.name,
            cell(&p.requests, "cpu"),
            cell(&p.limits, "cpu"),
            cell(&p.requests, "memory"),
            cell(&p.limits, "memory"),
            p.age
        );
        for (into, from) in [(&mut requests, &p.requests), (&mut limits, &p.limits)] {
            for (name, n) in from {
                *into.entry(name.clone()).or_default() += n;
            }
        }
    }
    w.push_str(
        "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n",
    );
    w.push_str("  Resource\tRequests\tLimits\n");
    w.push_str("  --------\t--------\t------\n");
    let mut shown = vec![
        "cpu".to_owned(),
        "memory".to_owned(),
        "ephemeral-storage".to_owned(),
    ];
    shown.extend(
        v.allocatable
            .keys()
            .filter(|k| k.starts_with("hugepages-"))
            .cloned(),
    );
    for r in &shown {
        let _ = writeln!(w, "  {r}\t{}\t{}", cell(&requests, r), cell(&limits, r));
    }
    w.push_str("Events:\t<none>\n");
    tabwrite(&w, 2)
}

/// Go's name of this machine's architecture (`GOARCH`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The OS's `PRETTY_NAME` (kubelet's OS Image).
fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "Unknown".to_owned())
}

/// Total and available bytes of the file system holding `path`.
fn fs_bytes(path: &std::path::Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some((s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize))
}

/// The huge pages of each size the node has: (`hugepages-2Mi`, bytes).
fn huge_pages() -> Vec<(String, i128)> {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut out: Vec<(String, i128)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kb: i128 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let pages: i128 = read_trimmed(&format!("{}/nr_hugepages", e.path().display()))
                .parse()
                .ok()?;
            Some((
                format!("hugepages-{}", bytes_text(kb * 1024)),
                pages * kb * 1024,
            ))
        })
        .collect();
    out.sort();
    out
}

/// kubelet's node conditions now: memory or disk pressure while a hard
/// eviction threshold of theirs is met (the eviction manager's signals and
/// `eviction_hard`), no PID pressure threshold (kubelet sets none by default).
fn conditions(memory: bool, disk: bool) -> Vec<Condition> {
    vec![
        Condition {
            kind: "MemoryPressure",
            status: memory,
            reason: if memory {
                "KubeletHasInsufficientMemory"
            } else {
                "KubeletHasSufficientMemory"
            },
            message: if memory {
                "kubelet has insufficient memory available"
            } else {
                "kubelet has sufficient memory available"
            },
        },
        Condition {
            kind: "DiskPressure",
            status: disk,
            reason: if disk {
                "KubeletHasDiskPressure"
            } else {
                "KubeletHasNoDiskPressure"
            },
            message: if disk {
                "kubelet has disk pressure"
            } else {
                "kubelet has no disk pressure"
            },
        },
        Condition {
            kind: "PIDPressure",
            status: false,
            reason: "KubeletHasSufficientPID",
            message: "kubelet has sufficient PID available",
        },
        Condition {
            kind: "Ready",
            status: true,
            reason: "KubeletReady",
            message: "kubelet is posting ready status",
        },
    ]
}

/// The node as it is now.
pub(crate) fn view(agent: &Agent) -> Result<NodeView> {
    let now = Utc::now();
    let usage = crate::top::node(agent);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total_memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i128>().ok())
        .unwrap_or(0)
        * 1024;
    let disk = fs_bytes(&agent.settings.root).or_else(|| fs_bytes(std::path::Path::new("/")));
    let cpus = i128::from(u32::try_from(usage.allocatable_cpu_millis / 1000).unwrap_or(1));
    let mut capacity = BTreeMap::new();
    let mut allocatable = BTreeMap::new();
    let mut amounts = BTreeMap::new();
    capacity.insert("cpu".to_owned(), cpus.to_string());
    allocatable.insert("cpu".to_owned(), cpus.to_string());
    amounts.insert("cpu".to_owned(), cpus * 1000);
    if let Some((total, _)) = disk {
        let total = i128::from(total);
        // kubelet: capacity less nodefs.available's threshold (10%: float, truncated).
        let reserved = i128::from(crate::eviction::reserved(
            agent,
            podrun_kubelet::eviction::Signal::NodeFsAvailable,
            u64::try_from(total).unwrap_or(0),
        ));
        capacity.insert("ephemeral-storage".to_owned(), bytes_text(total));
        allocatable.insert("ephemeral-storage".to_owned(), bytes_text(total - reserved));
        amounts.insert("ephemeral-storage".to_owned(), total - reserved);
    }
    for (name, bytes) in huge_pages() {
        capacity.insert(name.clone(), bytes_text(bytes));
        allocatable.insert(name.clone(), bytes_text(bytes));
        amounts.insert(name, bytes);
    }
    let memory = total_memory
        - i128::from(crate::eviction::reserved(
            agent,
            podrun_kubelet::eviction::Signal::MemoryAvailable,
            u64::try_from(total_memory).unwrap_or(0),
        ));
    capacity.insert("memory".to_owned(), bytes_text(total_memory));
    allocatable.insert("memory".to_owned(), bytes_text(memory));
    amounts.insert("memory".to_owned(), memory);
    capacity.insert("pods".to_owned(), "110".to_owned());
    allocatable.insert("pods".to_owned(), "110".to_owned());
    let mut pods = Vec::new();
    for row in agent.db().pods()? {
        if row.state == PodPhase::Finished {
            continue;
        }
        let Ok(pod) = serde_json::from_str::<Pod>(&row.manifest) else {
            continue;
        };
        let (requests, limits) = podrun_spec::pod_requests_and_limits(&pod);
        let age = DateTime::parse_from_rfc3339(&row.created)
            .map(|t| podrun_kubelet::printer::human_duration(now - t.to_utc()))
            .unwrap_or_else(|_| "<unknown>".to_owned());
        pods.push(PodLine {
            namespace: row.namespace,
            name: row.name,
            requests,
            limits,
            age,
        });
    }
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let system = vec![
        ("Machine ID", read_trimmed("/etc/machine-id")),
        (
            "System UUID",
            read_trimmed("/sys/class/dmi/id/product_uuid"),
        ),
        ("Boot ID", read_trimmed("/proc/sys/kernel/random/boot_id")),
        ("Kernel Version", read_trimmed("/proc/sys/kernel/osrelease")),
        ("OS Image", os_image()),
        ("Operating System", "linux".to_owned()),
        ("Architecture", go_arch().to_owned()),
        (
            "Container Runtime Version",
            format!("podrun://{}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "Kubelet Version",
            format!("podrun-{}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    Ok(NodeView {
        name: agent.node.clone(),
        created: agent.started_at,
        now,
        conditions: {
            let pressure = crate::eviction::pressure(agent);
            conditions(
                pressure.contains("MemoryPressure"),
                pressure.contains("DiskPressure"),
            )
        },
        internal_ip: crate::node_ips::node_ips().first().map(ToString::to_string),
        capacity,
        allocatable,
        allocatable_amounts: amounts,
        system,
        pods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwrite_aligns_as_gos_tabwriter() {
        // A column's block is a run of lines with that cell; a line without
        // cells ends every block; the text after the last tab is no cell.
        let text = "Name:\tweb\nCreationTimestamp:\tnow\nConditions:\n  Type\tStatus\n  ----\t------\n  Ready \tTrue \n";
        assert_eq!(
            tabwrite(text, 2),
            "Name:               web\n\
             CreationTimestamp:  now\n\
             Conditions:\n  \
             Type    Status\n  \
             ----    ------\n  \
             Ready   True \n"
        );
        // An empty column is padding wide.
        assert_eq!(
            tabwrite("a\t\tb\nlonger\t\tc\n", 2),
            "a         b\nlonger    c\n"
        );
    }

    #[test]
    fn quantities_print_as_kubernetes_prints_them() {
        assert_eq!(cpu_text(2_000_000_000_000), "2000");
        assert_eq!(cpu_text(250_000_000), "250m");
        assert_eq!(cpu_text(0), "0");
        assert_eq!(bytes_text(64 << 20), "64Mi");
        assert_eq!(bytes_text(24_608_932 * 1024), "24608932Ki");
        assert_eq!(bytes_text(100_000_000), "100M");
        assert_eq!(bytes_text(242_541_353_378), "242541353378");
        assert_eq!(bytes_text(0), "0");
    }

    fn view_of(pods: Vec<PodLine>) -> NodeView {
        let t = DateTime::parse_from_rfc3339("2026-12-06T05:00:00Z")
            .unwrap()
            .to_utc();
        let mut capacity = BTreeMap::new();
        capacity.insert("cpu".to_owned(), "2".to_owned());
        capacity.insert("memory".to_owned(), "2Gi".to_owned());
        capacity.insert("hugepages-2Mi".to_owned(), "0".to_owned());
        capacity.insert("pods".to_owned(), "110".to_owned());
        let mut amounts = BTreeMap::new();
        amounts.insert("cpu".to_owned(), 2000);
        amounts.insert("memory".to_owned(), 1 << 31);
        NodeView {
            name: "box".into(),
            created: t,
            now: t + chrono::TimeDelta::minutes(5),
            conditions: conditions(false, false),
            internal_ip: Some("10.0.0.5".into()),
            allocatable: capacity.clone(),
            capacity,
            allocatable_amounts: amounts,
            system: vec![
                ("Kernel Version", "6.1.0".into()),
                ("Operating System", "linux".into()),
            ],
            pods,
        }
    }

    #[test]
    fn describe_node_has_kubectls_layout() {
        let mut requests = BTreeMap::new();
        requests.insert("cpu".to_owned(), 500_000_000i128);
        requests.insert("memory".to_owned(), (64i128 << 20) * 1_000_000_000);
        let mut limits = requests.clone();
        limits.insert("cpu".to_owned(), 1_000_000_000);
        let text = render(&view_of(vec![PodLine {
            namespace: "default".into(),
            name: "web".into(),
            requests,
            limits,
            age: "5m".into(),
        }]));
        // The widths are of this data: with a real node's System Info
        // ("  Container Runtime Version:") the run from there to the pods'
        // table is 30 wide, as kubectl shows it.
        let want = "\
Name:               box
Roles:              <none>
Labels:             beta.kubernetes.io/arch=amd64
                    beta.kubernetes.io/os=linux
                    kubernetes.io/arch=amd64
                    kubernetes.io/hostname=box
                    kubernetes.io/os=linux
Annotations:        <none>
CreationTimestamp:  Sun, 06 Dec 2026 05:00:00 +0000
Taints:             <none>
Unschedulable:      false
Conditions:
  Type             Status  LastHeartbeatTime                 LastTransitionTime                Reason                       Message
  ----             ------  -----------------                 ------------------                ------                       -------
  MemoryPressure   False   Sun, 06 Dec 2026 05:05:00 +0000   Sun, 06 Dec 2026 05:00:00 +0000   KubeletHasSufficientMemory   kubelet has sufficient memory available
  DiskPressure     False   Sun, 06 Dec 2026 05:05:00 +0000   Sun, 06 Dec 2026 05:00:00 +0000   KubeletHasNoDiskPressure     kubelet has no disk pressure
  PIDPressure      False   Sun, 06 Dec 2026 05:05:00 +0000   Sun, 06 Dec 2026 05:00:00 +0000   KubeletHasSufficientPID      kubelet has sufficient PID available
  Ready            True    Sun, 06 Dec 2026 05:05:00 +0000   Sun, 06 Dec 2026 05:00:00 +0000   KubeletReady                 kubelet is posting ready status
Addresses:
  InternalIP:  10.0.0.5
  Hostname:    box
Capacity:
  cpu:            2
  hugepages-2Mi:  0
  memory:         2Gi
  pods:           110
Allocatable:
  cpu:            2
  hugepages-2Mi:  0
  memory:         2Gi
  pods:           110
System Info:
  Kernel Version:     6.1.0
  Operating System:   linux
Non-terminated Pods:  (1 in total)
  Namespace           Name    CPU Requests  CPU Limits  Memory Requests  Memory Limits  Age
  ---------           ----    ------------  ----------  ---------------  -------------  ---
  default             web     500m (25%)    1 (50%)     64Mi (3%)        64Mi (3%)      5m
Allocated resources:
  (Total limits may be over 100 percent, i.e., overcommitted.)
  Resource           Requests    Limits
  --------           --------    ------
  cpu                500m (25%)  1 (50%)
  memory             64Mi (3%)   64Mi (3%)
  ephemeral-storage  0 (0%)      0 (0%)
  hugepages-2Mi      0 (0%)      0 (0%)
Events:              <none>
";
        if go_arch() == "amd64" {
            assert_eq!(text, want);
        }
    }
}
