//! The pods on this machine as their directories show them, whoever manages
//! them (the agent, or `podrun run` in the foreground). This is the pod
//! manager's record of a pod (kubelet keeps its pods in
//! `/var/lib/kubelet/pods/<uid>`), `<run-root>/pods/<pod id>/`:
//!
//! - `pod.json` — who it is ([`PodRecord`]: namespace, name, creation time,
//!   the manifest), written before anything else of it exists;
//! - `logs/` — the CRI logs (where the pod manager tells the runtime to write them);
//! - for a pod of `podrun run` in the foreground: `status.json`, the v1 status
//!   its manager last reported, and `run.lock`, held by that manager.
//!
//! Its sandbox and containers are the runtime's (`podrun_runtime::RuntimeService`:
//! the sandbox's ID is the pod's, its UID in the sandbox config; a container's
//! is [`container_id`]), asked for by ID and never read from the runtime's
//! own records.
//!
//! Its data (bundles, volumes, /etc files) lives in `<root>/pods/<pod id>/`. A pod is named
//! by namespace and name; the pods lock makes creating one of a taken name fail.

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use podrun_runtime::api::{PodSandboxStatus, ServiceError};
use podrun_runtime::{NamespaceMode, RuntimeService};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What went wrong with the pods' records on disk.
#[derive(Debug, thiserror::Error)]
pub enum PodsError {
    /// {verb} {path}: {source}
    #[error("{verb} {}: {source}", .path.display())]
    Io {
        /// What was being done: `read`, `write`, `create`, `open`, `lock`.
        verb: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// parse {path}: {source}
    #[error("parse {}: {source}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: serde_json::Error,
    },
    /// pods "{name}" not found in namespace "{namespace}" (kubectl's NotFound)
    #[error("pods \"{name}\" not found in namespace \"{namespace}\"")]
    NotFound {
        /// The namespace.
        namespace: String,
        /// The pod's name.
        name: String,
    },
    /// lock {path}: {holder}
    #[error("lock {}: {holder}", .path.display())]
    Held {
        /// The lock file.
        path: PathBuf,
        /// Who holds it.
        holder: &'static str,
    },
    /// pod/{name}: already exists in namespace {namespace} (…)
    #[error("pod/{name}: already exists in namespace {namespace} (podrun delete pod {name} -n {namespace} removes it)")]
    Exists {
        /// The namespace.
        namespace: String,
        /// The pod's name.
        name: String,
    },
    /// pod/{name}: remove: {errors}
    #[error("pod/{name}: remove: {}", .errors.join("; "))]
    Remove {
        /// The pod's name.
        name: String,
        /// Every step that failed.
        errors: Vec<String>,
    },
    /// pod/{name}: stop: {source}
    #[error("pod/{name}: stop: {source}")]
    Stop {
        /// The pod's name.
        name: String,
        /// The runtime's error.
        source: ServiceError,
    },
}

type Result<T, E = PodsError> = std::result::Result<T, E>;

fn io<'a>(verb: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PodsError + 'a {
    move |source| PodsError::Io {
        verb,
        path: path.to_path_buf(),
        source,
    }
}

/// Who a pod is (`pod.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The pod's ID (sandbox, directories, container IDs).
    pub pod_id: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// `<root>/pods/<pod id>`: bundles and volumes.
    pub data_dir: PathBuf,
    /// The manifest, defaults applied.
    pub manifest: Pod,
    /// Owned by the agent (`podrun apply`, `podrun run --detach`, static
    /// pods), not by a `podrun run` in the foreground.
    #[serde(default)]
    pub agent: bool,
}

/// A pod found on disk.
#[derive(Debug, Clone)]
pub struct PodState {
    /// `pod.json`.
    pub record: PodRecord,
    /// `<run-root>/pods/<pod id>`.
    pub run_dir: PathBuf,
}

/// A pod whose sandbox runs, as its container starts, probes and hooks
/// reach it: the pod manager's records, the runtime, and what the runtime
/// says of the sandbox (PodSandboxStatus).
#[derive(Clone, Copy)]
pub struct InSandbox<'a> {
    /// The pod's records.
    pub state: &'a PodState,
    /// The runtime.
    pub runtime: &'a dyn RuntimeService,
    /// Its sandbox.
    pub sandbox: &'a PodSandboxStatus,
}

impl InSandbox<'_> {
    /// The runtime's ID of its container `name`.
    pub fn container_id(&self, name: &str) -> String {
        container_id(&self.sandbox.sandbox.id, name)
    }

    /// The sandbox's network namespace (None: the node's, with hostNetwork).
    pub fn net_namespace(&self) -> Option<PathBuf> {
        if self.host_network() {
            return None;
        }
        self.sandbox.namespaces.get("net").cloned()
    }

    /// Whether the pod uses the node's network.
    pub fn host_network(&self) -> bool {
        self.sandbox
            .config
            .linux
            .security_context
            .namespace_options
            .network
            == NamespaceMode::Node
    }
}

impl PodState {
    /// The containers' names, in the manifest's order.
    pub fn container_names(&self) -> Vec<String> {
        self.record
            .manifest
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
            .collect()
    }

    /// Every container's name, init containers first.
    pub fn all_container_names(&self) -> Vec<String> {
        self.record
            .manifest
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
            .map(|c| c.name.clone())
            .collect()
    }

    /// Seconds since it was created.
    pub fn age_seconds(&self) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.record.created)
            .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
            .unwrap_or(0)
    }

    /// Write `pod.json` again (after the monitor started).
    pub fn save(&self) -> Result<()> {
        let path = self.run_dir.join("pod.json");
        let text = serde_json::to_vec_pretty(&self.record).map_err(|source| PodsError::Parse {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &text)
    }
}

fn pods_dir(run_root: &Path) -> PathBuf {
    run_root.join("pods")
}

/// Every pod on disk (those whose `pod.json` cannot be read are skipped with a warning).
pub fn list(run_root: &Path) -> Vec<PodState> {
    list_except(run_root, &Default::default())
}

/// Every pod on disk but those of the given IDs.
pub fn list_except(run_root: &Path, skip: &std::collections::HashSet<&str>) -> Vec<PodState> {
    let Ok(entries) = std::fs::read_dir(pods_dir(run_root)) else {
        return Vec::new();
    };
    let mut pods: Vec<PodState> = entries
        .flatten()
        .filter(|e| !e.file_name().to_str().is_some_and(|n| skip.contains(n)))
        .filter(|e| e.path().is_dir())
        .filter_map(|e| match read(&e.path()) {
            Ok(p) => Some(p),
            Err(err) => {
                tracing::warn!("{}: {err:#}", e.path().display());
                None
            }
        })
        .collect();
    pods.sort_by(|a, b| {
        (&a.record.namespace, &a.record.name).cmp(&(&b.record.namespace, &b.record.name))
    });
    pods
}

/// The pod of ID `pod_id`, if its state directory exists.
pub fn load(run_root: &Path, pod_id: &str) -> Option<PodState> {
    let dir = pods_dir(run_root).join(pod_id);
    dir.join("pod.json").exists().then(|| read(&dir).ok())?
}

fn read(run_dir: &Path) -> Result<PodState> {
    let path = run_dir.join("pod.json");
    let text = std::fs::read(&path).map_err(io("read", &path))?;
    let record: PodRecord =
        serde_json::from_slice(&text).map_err(|source| PodsError::Parse { path, source })?;
    Ok(PodState {
        record,
        run_dir: run_dir.to_path_buf(),
    })
}

/// The pod `namespace/name`, or kubectl's NotFound message.
pub fn find(run_root: &Path, namespace: &str, name: &str) -> Result<PodState> {
    list(run_root)
        .into_iter()
        .find(|p| p.record.namespace == namespace && p.record.name == name)
        .ok_or_else(|| PodsError::NotFound {
            namespace: namespace.into(),
            name: name.into(),
        })
}

/// The lock file at `path` (made if missing, its contents kept), locked with
/// flock as `op` says: the pods lock, a foreground run's lock, the agent's lock.
/// `Ok(None)`: a non-blocking `op` found it held by another process.
pub fn lock_file(path: &Path, op: rustix::fs::FlockOperation) -> Result<Option<std::fs::File>> {
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("open", path))?;
    match rustix::fs::flock(&file, op) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(io("lock", path)(e.into())),
    }
}

/// An exclusive lock on the pods of one run root (flock; released on drop).
struct PodsLock {
    _file: std::fs::File,
}

impl PodsLock {
    fn take(run_root: &Path) -> Result<Self> {
        let dir = pods_dir(run_root);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let path = run_root.join("pods.lock");
        let file = lock_file(&path, rustix::fs::FlockOperation::LockExclusive)?.ok_or(
            PodsError::Held {
                path,
                holder: "held",
            },
        )?;
        Ok(PodsLock { _file: file })
    }
}

/// Register a new pod: refuse a taken name, choose its ID, write `pod.json`.
/// The caller owns what it then makes and removes it with [`teardown`] on failure.
/// The pod manager passes the ID it chose; the agent (`agent_owned`) has
/// checked the name itself.
pub fn register(
    run_root: &Path,
    data_root: &Path,
    pod: &Pod,
    id: Option<&str>,
    agent_owned: bool,
) -> Result<PodState> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let _lock = PodsLock::take(run_root)?;
    if !agent_owned && find(run_root, &namespace, &name).is_ok() {
        return Err(PodsError::Exists { namespace, name });
    }
    let pod_id = id.map_or_else(|| new_pod_id(&namespace, &name), String::from);
    let run_dir = pods_dir(run_root).join(&pod_id);
    std::fs::create_dir_all(&run_dir).map_err(io("create", &run_dir))?;
    let state = PodState {
        record: PodRecord {
            namespace,
            name,
            pod_id: pod_id.clone(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            data_dir: data_root.join("pods").join(&pod_id),
            manifest: pod.clone(),
            agent: agent_owned,
        },
        run_dir,
    };
    if let Err(e) = state.save() {
        let _ = std::fs::remove_dir_all(&state.run_dir);
        return Err(e);
    }
    Ok(state)
}

/// `<namespace>-<name>` (cut to 48 bytes) and 10 hex digits: unique, readable
/// in mount tables and cgroup paths, and short enough for container IDs
/// (`<pod id>-<container>`, at most 128 bytes).
pub fn new_pod_id(namespace: &str, name: &str) -> String {
    // The runtime's rule: a pod's ID is its sandbox's.
    podrun_runtime::state::new_sandbox_id(namespace, name)
}

/// Remove everything of a pod: its sandbox (the runtime's RemovePodSandbox:
/// what still runs, the containers, the pod cgroup, the runtime's records),
/// the root filesystems the pod manager prepared for its containers, its
/// volumes' mounts, its data and state directories. Goes on past failures
/// and reports them all.
pub fn teardown(runtime: &dyn RuntimeService, state: &PodState) -> Result<()> {
    let mut errors = Vec::new();
    if let Err(e) = runtime.remove_pod_sandbox(&state.record.pod_id) {
        errors.push(e.to_string());
    }
    // After a reboot the runtime's records (in the run root) are gone while
    // the containers' root filesystems (in the root) are not: the pod manager,
    // which knows the pod's containers, has them removed by their IDs (the
    // runtime's RemoveContainer removes what is left of an ID it no longer knows).
    for name in state.all_container_names() {
        let id = container_id(&state.record.pod_id, &name);
        if let Err(e) = runtime.remove_container(&id) {
            errors.push(format!("container {name}: {e}"));
        }
    }
    // A mount that stayed (a subPath's bind of a hostPath, a tmpfs) must keep
    // remove_dir_all from going through it into what it shows.
    let unmounted = match podrun_volume::PodVolumes::new(&state.record.data_dir).unmount_all() {
        Ok(()) => true,
        Err(e) => {
            errors.push(e.to_string());
            false
        }
    };
    for dir in [&state.record.data_dir, &state.run_dir] {
        if dir == &state.record.data_dir && !unmounted {
            continue;
        }
        if dir.is_absolute() && dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                errors.push(format!("remove {}: {e}", dir.display()));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(PodsError::Remove {
            name: state.record.name.clone(),
            errors,
        })
    }
}

/// The pod's cgroup: under `/podrun` by its QoS class, as kubelet places pods
/// under `kubepods`; with the systemd driver the slice of the same place
/// (`podrun-burstable-pod<id>.slice`), as kubelet names it.
pub fn pod_cgroup(
    pod: &Pod,
    pod_id: &str,
    driver: podrun_runtime::cgroups::CgroupDriver,
) -> String {
    let qos = podrun_spec::qos_class(pod);
    match driver {
        podrun_runtime::cgroups::CgroupDriver::Cgroupfs => {
            podrun_spec::pod_cgroup_path(qos.as_str(), pod_id)
        }
        podrun_runtime::cgroups::CgroupDriver::Systemd => {
            podrun_spec::pod_slice_name(qos.as_str(), pod_id)
        }
    }
}

/// Where container `name`'s termination message file lives on the host.
pub fn termination_file(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("termination").join(name)
}

/// kubelet reads at most 4096 bytes of a termination message file
/// (`MaxContainerTerminationMessageLength`, pkg/kubelet/container).
const MAX_TERMINATION_MESSAGE: u64 = 4096;

/// The termination message container `name` left, if any.
pub fn termination_message(data_dir: &Path, name: &str) -> Option<String> {
    let f = std::fs::File::open(termination_file(data_dir, name)).ok()?;
    let mut text = String::new();
    f.take(MAX_TERMINATION_MESSAGE)
        .read_to_string(&mut text)
        .ok()?;
    (!text.is_empty()).then_some(text)
}

/// The termination message kubelet takes from a failed container's log when
/// its terminationMessagePolicy is FallbackToLogsOnError and it left no
/// message file (readLastStringFromContainerLogs, pkg/kubelet/kuberuntime):
/// the last 80 lines both streams wrote since `since` (this instance's start),
/// at most their last 2048 bytes (MaxContainerTerminationMessageLogLines and
/// MaxContainerTerminationMessageLogLength, pkg/kubelet/container).
pub fn log_tail_message(
    log: &Path,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<String> {
    const LINES: usize = 80;
    const BYTES: usize = 2048;
    // Enough for 80 long lines; older lines do not count anyway.
    const WINDOW: u64 = 256 * 1024;
    let mut f = std::fs::File::open(log).ok()?;
    let start = f.metadata().ok()?.len().saturating_sub(WINDOW);
    f.seek(std::io::SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    // A window that starts inside a line drops that line.
    let lines: Vec<LogLine<'_>> = text
        .lines()
        .skip(usize::from(start > 0))
        .filter_map(parse_log_line)
        .filter(|l| {
            since.is_none_or(|since| {
                chrono::DateTime::parse_from_rfc3339(l.time).is_ok_and(|t| t >= since)
            })
        })
        .collect();
    let mut out = String::new();
    for l in &lines[lines.len().saturating_sub(LINES)..] {
        out.push_str(l.content);
        if !l.partial {
            out.push('\n');
        }
    }
    if out.len() > BYTES {
        let mut cut = out.len() - BYTES;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out.drain(..cut);
    }
    (!out.is_empty()).then_some(out)
}

/// The runtime's ID of a container of a pod (its first attempt, as the pod
/// manager creates each: a restart is a new container of the same ID).
pub fn container_id(pod_id: &str, container: &str) -> String {
    podrun_runtime::state::container_id_for(pod_id, container, 0)
}

/// Stop a pod's sandbox (the runtime's StopPodSandbox: its monitor stops the
/// containers within their grace periods, or within `grace` when given, as
/// `delete --grace-period` asks). A pod whose sandbox is gone is stopped.
pub fn stop_within(
    runtime: &dyn RuntimeService,
    state: &PodState,
    grace: Option<Duration>,
) -> Result<()> {
    match runtime.stop_pod_sandbox(&state.record.pod_id, grace) {
        Ok(()) | Err(ServiceError::SandboxNotFound(_)) => Ok(()),
        Err(source) => Err(PodsError::Stop {
            name: state.record.name.clone(),
            source,
        }),
    }
}

/// Held by `podrun run` in the foreground while it manages its pod
/// (`<run dir>/run.lock`, flock): a pod of `podrun run` whose lock is free
/// has lost its manager (the command was killed), and what it last reported
/// no longer changes. Released when dropped (or the process ends).
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Take the lock of the pod whose directory is `run_dir`.
    pub fn take(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join("run.lock");
        let file = lock_file(&path, rustix::fs::FlockOperation::NonBlockingLockExclusive)?.ok_or(
            PodsError::Held {
                path,
                holder: "another podrun run holds it",
            },
        )?;
        Ok(RunLock { _file: file })
    }

    /// Whether a [`RunLock`] of the pod whose directory is `run_dir` is held.
    pub fn held(run_dir: &Path) -> bool {
        let Ok(file) = std::fs::File::open(run_dir.join("run.lock")) else {
            return false;
        };
        // A shared lock we get is released when `file` closes.
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
    }
}

/// Record the v1 status `podrun run` in the foreground has of its pod (JSON),
/// for `get` and `describe` in other terminals.
pub fn write_status(run_dir: &Path, status: &str) -> Result<()> {
    write_atomic(&run_dir.join("status.json"), status.as_bytes())
}

/// A pod of `podrun run` in the foreground, with the v1 status its manager
/// last reported: Pending before the first report, Unknown (kubelet's phase
/// for a pod whose state cannot be obtained) once the manager is gone.
pub fn reported(state: &PodState) -> Pod {
    let mut pod = state.record.manifest.clone();
    let status: Option<PodStatus> = std::fs::read(state.run_dir.join("status.json"))
        .ok()
        .and_then(|text| serde_json::from_slice(&text).ok());
    let phase = |phase: &str, message: Option<&str>| PodStatus {
        phase: Some(phase.into()),
        message: message.map(String::from),
        ..Default::default()
    };
    pod.status = Some(match status {
        None => phase("Pending", None),
        Some(_) if !RunLock::held(&state.run_dir) => phase(
            "Unknown",
            Some("podrun run, which managed this pod, is gone (podrun delete removes it)"),
        ),
        Some(status) => status,
    });
    pod
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    podrun_fs::write_atomic(path, data).map_err(io("write", path))
}

/// One line of a CRI log file: `<time> <stream> <F|P> <content>`.
pub struct LogLine<'a> {
    /// RFC 3339 with nanoseconds.
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// A partial line (`P`): no newline follows its content.
    pub partial: bool,
    /// The text.
    pub content: &'a str,
}

/// Parse a CRI log line (without its newline).
pub fn parse_log_line(line: &str) -> Option<LogLine<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    Some(LogLine {
        time,
        stream,
        partial: tag == "P",
        content: parts.next().unwrap_or(""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_message_is_the_last_80_lines_of_this_instance_within_2048_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let mut text = String::new();
        // The previous instance's lines, then this one's: 100 lines, one partial.
        text.push_str("2026-11-27T10:00:00.000000000Z stdout F old run\n");
        for i in 0..99 {
            text.push_str(&format!("2026-11-27T10:00:05.{i:09}Z stderr F line {i}\n"));
        }
        text.push_str("2026-11-27T10:00:06.000000000Z stdout P no newline");
        std::fs::write(&log, &text).unwrap();
        let since = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:05Z")
            .unwrap()
            .to_utc();
        let got = log_tail_message(&log, Some(since)).unwrap();
        let want: String =
            (20..99).map(|i| format!("line {i}\n")).collect::<String>() + "no newline";
        assert_eq!(got, want);
        // Long lines: only the last 2048 bytes.
        let long = "x".repeat(1500);
        std::fs::write(
            &log,
            format!(
                "2026-11-27T10:00:05Z stdout F a{long}\n2026-11-27T10:00:05Z stdout F b{long}\n"
            ),
        )
        .unwrap();
        let got = log_tail_message(&log, Some(since)).unwrap();
        assert_eq!(got.len(), 2048);
        assert!(got.ends_with(&format!("b{long}\n")));
        // Nothing since this instance started: no message.
        let later = since + chrono::Duration::hours(1);
        assert_eq!(log_tail_message(&log, Some(later)), None);
    }

    #[test]
    fn a_run_lock_is_held_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!RunLock::held(dir.path()));
        let lock = RunLock::take(dir.path()).unwrap();
        assert!(RunLock::held(dir.path()));
        // A second manager of the same pod is refused.
        assert!(RunLock::take(dir.path()).is_err());
        drop(lock);
        assert!(!RunLock::held(dir.path()));
    }

    #[test]
    fn a_pod_of_podrun_run_shows_what_its_live_manager_reported() {
        let dir = tempfile::tempdir().unwrap();
        let state = PodState {
            record: PodRecord {
                namespace: "default".into(),
                name: "web".into(),
                pod_id: "default-web-1".into(),
                created: "2026-11-27T10:00:00Z".into(),
                data_dir: dir.path().join("data"),
                manifest: Pod::default(),
                agent: false,
            },
            run_dir: dir.path().to_path_buf(),
        };
        let phase = |pod: Pod| pod.status.unwrap().phase.unwrap();
        assert_eq!(phase(reported(&state)), "Pending");
        let lock = RunLock::take(dir.path()).unwrap();
        assert_eq!(phase(reported(&state)), "Pending");
        write_status(dir.path(), r#"{"phase":"Running"}"#).unwrap();
        assert_eq!(phase(reported(&state)), "Running");
        drop(lock);
        // Another test's process spawned in between may hold the lock's file
        // description between its fork and its exec (close-on-exec): briefly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while phase(reported(&state)) != "Unknown" && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(phase(reported(&state)), "Unknown");
    }

    #[test]
    fn pod_ids_are_short_distinct_and_valid() {
        let long = "n".repeat(253);
        let a = new_pod_id("default", &long);
        let b = new_pod_id("default", &long);
        assert_ne!(a, b);
        assert!(a.len() <= 59, "{a}");
        assert!(container_id(&a, &"c".repeat(63)).len() <= 128);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.'));
        assert!(new_pod_id("default", "web").starts_with("default-web-"));
    }

    #[test]
    fn cri_log_lines_parse() {
        let l = parse_log_line("2026-11-27T10:00:00.1Z stdout P half a line").unwrap();
        assert_eq!(
            (l.time, l.stream, l.partial, l.content),
            ("2026-11-27T10:00:00.1Z", "stdout", true, "half a line")
        );
        let l = parse_log_line("2026-11-27T10:00:00.1Z stderr F ").unwrap();
        assert_eq!((l.stream, l.partial, l.content), ("stderr", false, ""));
        assert!(parse_log_line("garbage").is_none());
    }
}
