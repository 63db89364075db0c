//! The containers' cgroups as the monitor sees them: where they are (from the
//! bundle), whether the kernel OOM-killed in them, and removing what is left.

use std::path::{Path, PathBuf};

/// `linux.cgroupsPath` of a bundle's config.json, when it is a cgroupfs path.
pub fn cgroups_path(bundle: &Path) -> Option<String> {
    let text = std::fs::read(bundle.join("config.json")).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let path = spec.pointer("/linux/cgroupsPath")?.as_str()?;
    path.starts_with('/').then(|| path.to_string())
}

/// rmdir `path` in every hierarchy under /sys/fs/cgroup that has it.
pub fn remove_cgroup(path: &str) -> Result<(), String> {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() || rel.split('/').any(|p| p == ".." || p == ".") {
        return Err(format!("cgroup {path:?}: refusing to remove"));
    }
    let mut errors = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Ok(());
    };
    for h in hierarchies.flatten() {
        let dir = h.path().join(rel);
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("remove cgroup {}: {e}", dir.display())),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
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
