//! Cleaning up after a monitor that died (SIGKILL, OOM, a crash): its
//! containers and pause process keep running, and its sandbox pins, cgroups
//! and runtime state stay. [`clean_up_after`] removes all of that from the
//! plan alone. Run it single-threaded (`podrun-monitor cleanup --plan FILE`):
//! the embedded backend's delete forks.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::cgroup::remove_plan_cgroups;
use super::PodPlan;
use crate::sandbox::{Namespace, Sandbox};

/// Why the processes left in a dead monitor's pod could not be killed.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// stat /proc/self/ns/ipc: {0}
    #[error("stat /proc/self/ns/ipc: {0}")]
    OwnNamespace(#[source] std::io::Error),
    /// {pin}: pins this process's own IPC namespace: refusing to kill its processes
    #[error(
        "{}: pins this process's own IPC namespace: refusing to kill its processes",
        .pin.display()
    )]
    SharedNamespace {
        /// The pod's IPC namespace pin.
        pin: std::path::PathBuf,
    },
    /// processes {pids:?} of the pod's namespaces would not die
    #[error("processes {pids:?} of the pod's namespaces would not die")]
    Survivors {
        /// The processes still there after SIGKILL.
        pids: Vec<i32>,
    },
}

/// Delete the plan's containers, kill every process left in the pod's IPC
/// namespace (the pause process, and anything that escaped its container),
/// unpin the namespaces, remove the sandbox directory and the cgroups. Goes
/// on past failures and returns them all; nothing to do is not a failure.
pub fn clean_up_after(plan: &PodPlan) -> Vec<String> {
    let mut errors = Vec::new();
    let backend = plan.backend();
    let state = plan.runtime_state_dir();
    for (name, id) in containers(plan) {
        // Only containers the runtime still knows: the others never started
        // or were deleted already.
        if state.join(&id).exists() {
            if let Err(e) = backend.delete(&id) {
                errors.push(format!("container {name}: {e}"));
            }
        }
    }
    // Every pod process shares the pause process's IPC namespace (also with
    // hostNetwork); with the containers gone, what is left there is the pause
    // process and strays.
    if let Err(e) = kill_namespace(&plan.ns_path(Namespace::Ipc)) {
        errors.push(e.to_string());
    }
    let dir = plan.run_root.join("sandboxes").join(&plan.pod_id);
    if dir.exists() {
        let mut sandbox = Sandbox {
            id: plan.pod_id.clone(),
            dir,
            pid: 0,
            namespaces: Vec::new(),
        };
        if let Err(e) = sandbox.destroy() {
            errors.push(e.to_string());
        }
    }
    errors.extend(remove_plan_cgroups(plan));
    let _ = std::fs::remove_dir(&state);
    errors
}

/// The plan's containers and those the monitor started on request (found by
/// their start and exit records): `(name, id)`, each ID once.
fn containers(plan: &PodPlan) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = plan
        .containers
        .iter()
        .map(|c| (c.name.clone(), c.id.clone()))
        .collect();
    for dir in ["starts", "exits"] {
        let Ok(entries) = std::fs::read_dir(plan.run_dir.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(text) = std::fs::read(entry.path()) else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<Named>(&text) else {
                continue;
            };
            let usable = !record.id.is_empty() && !record.id.contains('/');
            if usable && !found.iter().any(|(_, id)| *id == record.id) {
                found.push((record.name, record.id));
            }
        }
    }
    found
}

/// What start and exit records have in common.
#[derive(serde::Deserialize)]
struct Named {
    name: String,
    id: String,
}

/// SIGKILL every process whose IPC namespace is the one pinned at `pin`, and
/// wait (up to 5 s) until none is left.
fn kill_namespace(pin: &Path) -> Result<(), RecoverError> {
    let Ok(ns) = std::fs::metadata(pin) else {
        return Ok(()); // never pinned, or unpinned already
    };
    if ns.dev() == std::fs::metadata(pin.parent().unwrap_or(pin)).map_or(0, |m| m.dev()) {
        return Ok(()); // a plain file: the pin is not mounted
    }
    let own = std::fs::metadata("/proc/self/ns/ipc").map_err(RecoverError::OwnNamespace)?;
    if own.dev() == ns.dev() && own.ino() == ns.ino() {
        return Err(RecoverError::SharedNamespace { pin: pin.into() });
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = members(ns.dev(), ns.ino());
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(RecoverError::Survivors { pids: left });
        }
        // Each pid was just seen in the pod's namespace; one gone since is fine.
        for pid in left
            .iter()
            .filter_map(|&p| rustix::process::Pid::from_raw(p))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Live (not zombie) processes whose IPC namespace is (dev, ino).
fn members(dev: u64, ino: u64) -> Vec<i32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/ipc"))
                .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
                && !is_zombie(*pid)
        })
        .collect()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}
