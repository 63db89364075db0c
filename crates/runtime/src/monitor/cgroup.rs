//! The containers' cgroups as the monitor sees them: where they are (from the
//! bundle), whether the kernel OOM-killed in them, and removing what is left
//! (through `crate::cgroups`, which owns creating and removing cgroups).

use std::path::{Path, PathBuf};

/// `linux.cgroupsPath` of a bundle's config.json, when it is a cgroupfs path or
/// a systemd `slice:prefix:name`.
pub fn cgroups_path(bundle: &Path) -> Option<String> {
    let text = std::fs::read(bundle.join("config.json")).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let path = spec.pointer("/linux/cgroupsPath")?.as_str()?;
    (path.starts_with('/') || crate::cgroups::systemd::is_systemd_path(path))
        .then(|| path.to_string())
}

/// Remove the cgroups of the plan's containers and the pod's own (with
/// whatever is left beneath them and the shared parents once empty), going on
/// past failures and returning them all.
pub fn remove_plan_cgroups(plan: &super::PodPlan) -> Vec<String> {
    plan.containers
        .iter()
        .filter_map(|c| cgroups_path(&c.bundle))
        .chain(plan.cgroup_parent.clone())
        .filter_map(|path| crate::cgroups::remove_pod_cgroup(&path).err())
        .map(|e| e.to_string())
        .collect()
}

/// The file that counts OOM kills in `pid`'s memory cgroup (v1 `memory.oom_control`,
/// v2 `memory.events`).
pub fn oom_file(pid: i32) -> Option<PathBuf> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            return Some(PathBuf::from(format!(
                "/sys/fs/cgroup/memory{path}/memory.oom_control"
            )));
        }
    }
    let v2 = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(PathBuf::from(format!("/sys/fs/cgroup{v2}/memory.events")))
}

/// Whether the counter file says the kernel OOM-killed a process of the cgroup.
pub fn oom_killed(file: &Path) -> bool {
    std::fs::read_to_string(file).is_ok_and(|text| {
        text.lines().any(|l| {
            l.strip_prefix("oom_kill ")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        })
    })
}
