//! What a cgroup uses (CRI's ContainerStats and PodSandboxStats): CPU time
//! and memory, read from cgroup v1's `cpuacct` and `memory` controllers or
//! from cgroup v2's `cpu.stat` and `memory.*` files, and the disk use of a
//! directory tree (a container's writable layer).
//!
//! The working set is what containerd and cAdvisor report, the usage less the
//! inactive file cache (containerd's `getWorkingSet`), never below zero: what
//! kubelet evicts and `kubectl top` shows by.

use crate::cgroups::{self, CgroupMode};
use std::path::{Path, PathBuf};

/// A cgroup's use of CPU and memory; `None` where the cgroup (or the
/// controller) is not there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used, in nanoseconds, since the cgroup was made.
    pub cpu_ns: Option<u64>,
    /// Memory charged to it, page cache included.
    pub memory_bytes: Option<u64>,
    /// [`Usage::memory_bytes`] less the inactive file cache.
    pub working_set_bytes: Option<u64>,
    /// Anonymous memory (and swap cache).
    pub rss_bytes: Option<u64>,
    /// Page faults.
    pub page_faults: Option<u64>,
    /// Major page faults.
    pub major_page_faults: Option<u64>,
}

/// The use of cgroup `path` (`/kubepods/besteffort/pod<uid>/app`, or a systemd
/// slice or `slice:prefix:name`).
pub fn cgroup_usage(path: &str) -> Usage {
    let Ok(path) = cgroups::hierarchy_path(path) else {
        return Usage::default();
    };
    let Ok(parts) = cgroups::components(&path) else {
        return Usage::default();
    };
    match cgroups::detect() {
        CgroupMode::V2 => v2_usage(&join(Path::new("/sys/fs/cgroup"), &parts)),
        CgroupMode::V1 => {
            let dir = |controller: &str| {
                cgroups::v1_hierarchies()
                    .ok()?
                    .into_iter()
                    .find(|h| h.controllers.iter().any(|c| c == controller))
                    .map(|h| join(&h.dir, &parts))
            };
            v1_usage(dir("cpuacct").as_deref(), dir("memory").as_deref())
        }
    }
}

/// The memory limit of cgroup `path` (v1 `memory.limit_in_bytes`, v2
/// `memory.max`), `None` when it has none (v1's page-rounded `i64::MAX`, v2's
/// `max`) or it is not there.
pub fn cgroup_memory_limit(path: &str) -> Option<u64> {
    let path = cgroups::hierarchy_path(path).ok()?;
    let parts = cgroups::components(&path).ok()?;
    let file = match cgroups::detect() {
        CgroupMode::V2 => join(Path::new("/sys/fs/cgroup"), &parts).join("memory.max"),
        CgroupMode::V1 => cgroups::v1_hierarchies()
            .ok()?
            .into_iter()
            .find(|h| h.controllers.iter().any(|c| c == "memory"))
            .map(|h| join(&h.dir, &parts))?
            .join("memory.limit_in_bytes"),
    };
    read_u64(&file).filter(|l| *l < (i64::MAX as u64) & !0xfff)
}

fn join(base: &Path, parts: &[&str]) -> PathBuf {
    parts.iter().fold(base.to_path_buf(), |p, c| p.join(c))
}

fn read_u64(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat) as a lookup.
fn stat(file: &Path) -> Option<std::collections::HashMap<String, u64>> {
    let text = std::fs::read_to_string(file).ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect(),
    )
}

fn v1_usage(cpuacct: Option<&Path>, memory: Option<&Path>) -> Usage {
    let mut usage = Usage {
        cpu_ns: cpuacct.and_then(|d| read_u64(&d.join("cpuacct.usage"))),
        ..Usage::default()
    };
    if let Some(memory) = memory {
        usage.memory_bytes = read_u64(&memory.join("memory.usage_in_bytes"));
        if let Some(stat) = stat(&memory.join("memory.stat")) {
            // The total_ fields count the cgroup's descendants too.
            let inactive = stat.get("total_inactive_file").copied().unwrap_or(0);
            usage.working_set_bytes = usage.memory_bytes.map(|u| u.saturating_sub(inactive));
            usage.rss_bytes = stat.get("total_rss").copied();
            usage.page_faults = stat.get("total_pgfault").copied();
            usage.major_page_faults = stat.get("total_pgmajfault").copied();
        }
    }
    usage
}

fn v2_usage(dir: &Path) -> Usage {
    let mut usage = Usage {
        cpu_ns: stat(&dir.join("cpu.stat"))
            .and_then(|s| s.get("usage_usec").copied())
            .map(|us| us.saturating_mul(1000)),
        memory_bytes: read_u64(&dir.join("memory.current")),
        ..Usage::default()
    };
    if let Some(stat) = stat(&dir.join("memory.stat")) {
        let inactive = stat.get("inactive_file").copied().unwrap_or(0);
        usage.working_set_bytes = usage.memory_bytes.map(|u| u.saturating_sub(inactive));
        usage.rss_bytes = stat.get("anon").copied();
        usage.page_faults = stat.get("pgfault").copied();
        usage.major_page_faults = stat.get("pgmajfault").copied();
    }
    usage
}

/// Bytes (allocated blocks) and inodes under `dir`, not following links and
/// not crossing into other file systems; `None` if it is not there.
pub fn tree_usage(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let top = std::fs::symlink_metadata(dir).ok()?;
    let (mut bytes, mut inodes) = (top.blocks() * 512, 1u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.dev() != top.dev() {
                continue;
            }
            inodes += 1;
            bytes += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Some((bytes, inodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_working_set_is_usage_less_inactive_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cpu, mem) = (dir.path().join("cpu"), dir.path().join("mem"));
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(cpu.join("cpuacct.usage"), "123456789\n").unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "1000000\n").unwrap();
        std::fs::write(
            mem.join("memory.stat"),
            "cache 5\nrss 7\ntotal_inactive_file 250000\ntotal_rss 600000\ntotal_pgfault 42\ntotal_pgmajfault 1\n",
        )
        .unwrap();
        let u = v1_usage(Some(&cpu), Some(&mem));
        assert_eq!(
            u,
            Usage {
                cpu_ns: Some(123_456_789),
                memory_bytes: Some(1_000_000),
                working_set_bytes: Some(750_000),
                rss_bytes: Some(600_000),
                page_faults: Some(42),
                major_page_faults: Some(1),
            }
        );
    }

    #[test]
    fn v2_reads_cpu_stat_in_microseconds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("memory.current"), "4096\n").unwrap();
        std::fs::write(
            dir.path().join("memory.stat"),
            "anon 1024\ninactive_file 8192\npgfault 3\npgmajfault 0\n",
        )
        .unwrap();
        let u = v2_usage(dir.path());
        assert_eq!(u.cpu_ns, Some(1_500_000));
        assert_eq!(u.working_set_bytes, Some(0), "never below zero");
        assert_eq!(u.rss_bytes, Some(1024));
        assert_eq!(v2_usage(&dir.path().join("gone")), Usage::default());
    }

    #[test]
    fn a_tree_counts_its_files_and_blocks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), vec![1u8; 10_000]).unwrap();
        let (bytes, inodes) = tree_usage(dir.path()).unwrap();
        assert_eq!(inodes, 3);
        assert!(bytes >= 10_000, "{bytes}");
        assert_eq!(tree_usage(&dir.path().join("none")), None);
    }
}
