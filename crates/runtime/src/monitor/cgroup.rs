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

/// The OOM kills a counter file (`memory.oom_control`, `memory.events`) counts.
fn oom_kills(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("oom_kill ")
            .and_then(|n| n.trim().parse::<u64>().ok())
    })
}

/// The pod cgroup's OOM kills (on v2, where its `memory.events` counts those of
/// the cgroups below it) and how many of them were put down to containers: what
/// tells a container's OOM kill once its own cgroup is gone. Under the systemd
/// driver that is the rule, not the exception: systemd stops a scope as soon as
/// it is empty and removes its cgroup, before the monitor reaps the exit.
pub struct PodOomKills {
    /// The pod cgroup's `memory.events` on the unified hierarchy (None with
    /// no pod cgroup; absent on v1).
    file: Option<PathBuf>,
    /// Its count when the monitor started, plus the kills put down since.
    accounted: u64,
}

impl PodOomKills {
    /// For the pod whose cgroup is `cgroup_parent` (a cgroupfs path or a slice).
    pub fn new(cgroup_parent: Option<&str>) -> Self {
        // On v1 there is no such file (the controllers' hierarchies are below
        // /sys/fs/cgroup/<controller>): every read of it finds nothing.
        let file = cgroup_parent
            .and_then(|p| crate::cgroups::hierarchy_path(p).ok())
            .map(|p| {
                Path::new(crate::cgroups::CGROUP_ROOT)
                    .join(p.trim_start_matches('/'))
                    .join("memory.events")
            });
        let accounted = file.as_deref().and_then(oom_kills).unwrap_or(0);
        PodOomKills { file, accounted }
    }

    /// Whether the container that exited was OOM-killed: its own cgroup's
    /// counter (`own`) says so, or, that cgroup gone, it was SIGKILLed and the
    /// pod counts a kill not yet put down to a container (which this one then
    /// takes: two containers OOM-killed at once with both cgroups gone are
    /// told apart only by their order).
    pub fn container_killed(&mut self, own: Option<&Path>, sigkilled: bool) -> bool {
        let pod = self.file.as_deref().and_then(oom_kills);
        let killed = match own.and_then(oom_kills) {
            Some(n) => n > 0,
            None => sigkilled && pod.is_some_and(|n| n > self.accounted),
        };
        if let (true, Some(n)) = (killed, pod) {
            self.accounted = self.accounted.max(n);
        }
        killed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(dir: &Path, name: &str, kills: u64) -> PathBuf {
        let file = dir.join(name);
        std::fs::write(
            &file,
            format!("low 0\nhigh 0\nmax 3\noom 1\noom_kill {kills}\noom_group_kill 0\n"),
        )
        .unwrap();
        file
    }

    #[test]
    fn a_containers_own_count_decides_while_its_cgroup_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut pod = PodOomKills {
            file: Some(events(dir.path(), "pod", 1)),
            accounted: 0,
        };
        let quiet = events(dir.path(), "quiet", 0);
        assert!(!pod.container_killed(Some(&quiet), true));
        let killed = events(dir.path(), "killed", 1);
        assert!(pod.container_killed(Some(&killed), true));
        // v1's memory.oom_control has the same line.
        let v1 = dir.path().join("oom_control");
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        assert!(pod.container_killed(Some(&v1), false));
    }

    #[test]
    fn a_gone_cgroups_kill_is_read_from_the_pod_once() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone/memory.events");
        let pod_file = events(dir.path(), "pod", 2);
        let mut pod = PodOomKills {
            file: Some(pod_file.clone()),
            accounted: 1,
        };
        // An exit not by SIGKILL is never an OOM kill.
        assert!(!pod.container_killed(Some(&gone), false));
        // One kill not yet put down: the first SIGKILLed container takes it…
        assert!(pod.container_killed(Some(&gone), true));
        // …and the next has none left.
        assert!(!pod.container_killed(Some(&gone), true));
        events(dir.path(), "pod", 3);
        assert!(pod.container_killed(None, true));
        // No pod file (v1): nothing to go by.
        let mut none = PodOomKills {
            file: None,
            accounted: 0,
        };
        assert!(!none.container_killed(Some(&gone), true));
    }
}
