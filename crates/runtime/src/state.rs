//! The runtime's own records of its sandboxes and containers (containerd keeps
//! its sandboxes in its own store; kubelet keeps pods in
//! `/var/lib/kubelet/pods/<uid>`). Each sandbox is one directory,
//! `<run-root>/sandboxes/<sandbox id>/`, owned by the runtime from
//! RunPodSandbox to RemovePodSandbox:
//!
//! - `sandbox.json` — [`SandboxRecord`]: the `PodSandboxConfig`, the runtime
//!   handler and the OCI runtime it chose, the creation time, the monitor's
//!   pid. Written (durably) before anything else of the sandbox exists, so a
//!   sandbox half made when its maker died is listed (NotReady) and removable;
//! - `plan.json` — what its monitor was told; `monitor.{sock,lock,log}`;
//!   `starts/`, `exits/` — the monitor's records of each container;
//! - `containers/<container id>.json` — [`ContainerRecord`]: a container
//!   created in it (CreateContainer), which is also the index that takes a
//!   container ID to its sandbox;
//! - `bundles/<container id>/config.json` — each container's OCI bundle
//!   (its root filesystem is the image store's, by the container's ID);
//! - `ns/` — the pause process's namespace pins (the monitor's).
//!
//! The pod manager's record of a pod (namespace, name, manifest) is not here:
//! it keeps its own (`<run-root>/pods/<pod id>/`), as kubelet does.

use crate::monitor::ContainerPlan;
use crate::PodSandboxConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The runtime's record of one sandbox (`sandbox.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// The sandbox's ID.
    pub id: String,
    /// What RunPodSandbox was given.
    pub config: PodSandboxConfig,
    /// The runtime handler asked for (empty: the default).
    pub runtime_handler: String,
    /// The OCI runtime the handler names (`embedded`, `crun`, a path).
    pub oci_runtime: String,
    /// When it was created (RFC 3339, nanoseconds).
    pub created_at: String,
    /// Its monitor's pid; 0 before the monitor was started.
    pub monitor_pid: i32,
}

/// The runtime's record of one container (`containers/<id>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Its sandbox.
    pub sandbox_id: String,
    /// The prepared bundle and how to run it.
    pub plan: ContainerPlan,
    /// When it was created (RFC 3339, nanoseconds).
    pub created_at: String,
    /// The config it was created from (records of older versions: empty).
    #[serde(default)]
    pub config: crate::ContainerConfig,
    /// The ID of its image (`sha256:…`), when the store knew it.
    #[serde(default)]
    pub image_ref: String,
    /// Who its process runs as (from its OCI spec).
    #[serde(default)]
    pub user: Option<crate::api::ProcessUser>,
}

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An ID that cannot name a directory or file.
    #[error("{kind} {id:?}: invalid ID")]
    InvalidId {
        /// `sandbox` or `container`.
        kind: &'static str,
        /// The ID.
        id: String,
    },
    /// A file could not be read, written or removed.
    #[error("{step} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        step: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// A record that does not parse.
    #[error("read {}: {source}", .path.display())]
    Parse {
        /// The record.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
}

/// Where the runtime keeps its sandboxes: `<run-root>/sandboxes`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

const SANDBOX_FILE: &str = "sandbox.json";
const CONTAINERS: &str = "containers";

impl Store {
    /// The store of `run_root`.
    pub fn new(run_root: &Path) -> Self {
        Store {
            root: run_root.join("sandboxes"),
        }
    }

    /// The directory of sandbox `id` (checked to be a plain name).
    pub fn dir(&self, id: &str) -> Result<PathBuf, StateError> {
        check_id("sandbox", id)?;
        Ok(self.root.join(id))
    }

    /// Create sandbox `record.id`'s directory and write its record; fails if
    /// it exists.
    pub fn create(&self, record: &SandboxRecord) -> Result<PathBuf, StateError> {
        let dir = self.dir(&record.id)?;
        std::fs::create_dir_all(&self.root).map_err(io("create", &self.root))?;
        std::fs::create_dir(&dir).map_err(io("create", &dir))?;
        self.save(record)?;
        Ok(dir)
    }

    /// Write sandbox `record.id`'s record again.
    pub fn save(&self, record: &SandboxRecord) -> Result<(), StateError> {
        let path = self.dir(&record.id)?.join(SANDBOX_FILE);
        write_json(&path, record)
    }

    /// The record of sandbox `id`; `None` if there is no such sandbox.
    pub fn load(&self, id: &str) -> Result<Option<SandboxRecord>, StateError> {
        read_json(&self.dir(id)?.join(SANDBOX_FILE))
    }

    /// Every sandbox's ID (those with a directory, record or not), sorted.
    pub fn ids(&self) -> Result<Vec<String>, StateError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read", &self.root)(e)),
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|id| check_id("sandbox", id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Record container `record.plan.id` in its sandbox.
    pub fn add_container(&self, record: &ContainerRecord) -> Result<(), StateError> {
        check_id("container", &record.plan.id)?;
        let dir = self.dir(&record.sandbox_id)?.join(CONTAINERS);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        write_json(&dir.join(format!("{}.json", record.plan.id)), record)
    }

    /// Forget container `id` of sandbox `sandbox_id` (an unknown one is not an error).
    pub fn remove_container(&self, sandbox_id: &str, id: &str) -> Result<(), StateError> {
        check_id("container", id)?;
        let path = self
            .dir(sandbox_id)?
            .join(CONTAINERS)
            .join(format!("{id}.json"));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    /// The containers created in sandbox `sandbox_id`, by creation time.
    pub fn containers(&self, sandbox_id: &str) -> Result<Vec<ContainerRecord>, StateError> {
        let dir = self.dir(sandbox_id)?.join(CONTAINERS);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read", &dir)(e)),
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "json") {
                if let Some(record) = read_json::<ContainerRecord>(&entry.path())? {
                    found.push(record);
                }
            }
        }
        found.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(found)
    }

    /// The sandbox container `id` was created in (a scan of the sandboxes:
    /// the records are the index, so it survives a restart of the runtime).
    pub fn find_container(&self, id: &str) -> Result<Option<ContainerRecord>, StateError> {
        check_id("container", id)?;
        for sandbox in self.ids()? {
            let path = self
                .root
                .join(&sandbox)
                .join(CONTAINERS)
                .join(format!("{id}.json"));
            if let Some(record) = read_json(&path)? {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }
}

/// The ID of the sandbox of `metadata`: its pod's UID (`<uid>-<attempt>`
/// after the first attempt) when that can name a directory and leaves room
/// for container IDs, else a new one ([`new_sandbox_id`]). So a caller that
/// dies while RunPodSandbox runs still knows what to remove; and a second
/// sandbox of the same UID and attempt is refused while the first exists
/// (containerd likewise reserves a sandbox's name, made of the same fields).
pub fn sandbox_id_for(metadata: &crate::PodSandboxMetadata) -> String {
    let id = match metadata.attempt {
        0 => metadata.uid.clone(),
        n => format!("{}-{n}", metadata.uid),
    };
    if !metadata.uid.is_empty() && id.len() <= 64 && podrun_fs::check_id(&id).is_ok() {
        id
    } else {
        new_sandbox_id(&metadata.namespace, &metadata.name)
    }
}

/// The ID of container `name` of sandbox `sandbox_id` (its `attempt`th:
/// CRI's metadata).
/// An ID longer than an ID may be (128 bytes: a name as long as critest's)
/// keeps what fits of the name and a hash of all of it, so it stays the same
/// for the same sandbox, name and attempt.
pub fn container_id_for(sandbox_id: &str, name: &str, attempt: u32) -> String {
    let suffix = match attempt {
        0 => String::new(),
        n => format!("-{n}"),
    };
    let id = format!("{sandbox_id}-{name}{suffix}");
    if id.len() <= MAX_ID {
        return id;
    }
    // FNV-1a (64 bits) of the whole ID.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let hash = format!("-{hash:016x}");
    let room = MAX_ID.saturating_sub(sandbox_id.len() + 1 + hash.len() + suffix.len());
    let mut cut = room.min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{sandbox_id}-{}{hash}{suffix}", &name[..cut])
}

/// The longest ID a sandbox or container may have (`podrun_fs::check_id`).
const MAX_ID: usize = 128;

/// A new sandbox's ID: `<namespace>-<name>` (cut to 48 bytes) and 10 hex
/// digits: unique, readable in mount tables and cgroup paths, and short
/// enough for container IDs made of it and a container's name (at most 128
/// bytes).
pub fn new_sandbox_id(namespace: &str, name: &str) -> String {
    let mut base = format!("{namespace}-{name}");
    base.truncate(48);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = now.as_nanos() as u64 ^ ((std::process::id() as u64) << 40);
    // splitmix64: a well-spread value from the seed.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "{}-{:010x}",
        base.trim_start_matches(['-', '.'])
            .trim_end_matches(['-', '.']),
        z & 0xff_ffff_ffff
    )
}

/// An ID that names a directory or file (podrun-fs's rule).
fn check_id(kind: &'static str, id: &str) -> Result<(), StateError> {
    podrun_fs::check_id(id).map_err(|_| StateError::InvalidId {
        kind,
        id: id.into(),
    })
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io { step, path, source }
}

/// A record, or `None` if the file is missing.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match std::fs::read(path) {
        Ok(text) => serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| StateError::Parse {
                path: path.into(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Write `value` durably (podrun-fs: temp file, fsync, rename, fsync the directory).
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), StateError> {
    let text = serde_json::to_vec_pretty(value).map_err(|source| StateError::Parse {
        path: path.into(),
        source,
    })?;
    podrun_fs::write_atomic(path, &text).map_err(io("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> SandboxRecord {
        SandboxRecord {
            id: id.into(),
            config: PodSandboxConfig::default(),
            runtime_handler: String::new(),
            oci_runtime: "embedded".into(),
            created_at: "2026-12-05T00:00:00.000000000Z".into(),
            monitor_pid: 0,
        }
    }

    fn container(sandbox: &str, id: &str, created_at: &str) -> ContainerRecord {
        ContainerRecord {
            sandbox_id: sandbox.into(),
            plan: ContainerPlan {
                id: id.into(),
                name: id.into(),
                bundle: "/b".into(),
                log_path: "/l".into(),
                stop_signal: 15,
                grace_period_ms: 0,
                stdin: false,
                stdin_once: false,
                tty: false,
                log_rotation: None,
            },
            created_at: created_at.into(),
            config: Default::default(),
            image_ref: String::new(),
            user: None,
        }
    }

    #[test]
    fn a_long_container_id_is_cut_and_hashed_the_same_each_time() {
        assert_eq!(container_id_for("s", "app", 0), "s-app");
        assert_eq!(container_id_for("s", "app", 2), "s-app-2");
        let sandbox = "cri-test-uid".repeat(5);
        let name = "seccomp-container-".repeat(6);
        let id = container_id_for(&sandbox, &name, 2);
        assert_eq!(id.len(), 128, "{id}");
        assert!(podrun_fs::check_id(&id).is_ok(), "{id}");
        assert!(
            id.starts_with(&format!("{sandbox}-seccomp")) && id.ends_with("-2"),
            "{id}"
        );
        assert_eq!(id, container_id_for(&sandbox, &name, 2));
        assert_ne!(id, container_id_for(&sandbox, &format!("{name}x"), 2));
        assert_ne!(id, container_id_for(&sandbox, &name, 3));
    }

    #[test]
    fn a_container_id_finds_its_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.ids().unwrap(), Vec::<String>::new());
        store.create(&record("a")).unwrap();
        store.create(&record("b")).unwrap();
        assert!(store.create(&record("a")).is_err(), "a taken ID is refused");
        store.add_container(&container("b", "b-web", "2")).unwrap();
        store.add_container(&container("b", "b-init", "1")).unwrap();
        assert_eq!(store.ids().unwrap(), ["a", "b"]);
        let found = store.find_container("b-web").unwrap().unwrap();
        assert_eq!(found.sandbox_id, "b");
        assert!(store.find_container("nope").unwrap().is_none());
        let names: Vec<String> = store
            .containers("b")
            .unwrap()
            .into_iter()
            .map(|c| c.plan.id)
            .collect();
        assert_eq!(names, ["b-init", "b-web"]);
        store.remove_container("b", "b-web").unwrap();
        store.remove_container("b", "b-web").unwrap();
        assert!(store.find_container("b-web").unwrap().is_none());
        assert_eq!(store.load("a").unwrap(), Some(record("a")));
        assert_eq!(store.load("c").unwrap(), None);
    }

    #[test]
    fn ids_that_would_leave_the_store_are_refused() {
        let store = Store::new(Path::new("/run/podrun"));
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a\0b"] {
            assert!(store.dir(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            store.dir("ok-1").unwrap(),
            Path::new("/run/podrun/sandboxes/ok-1")
        );
    }

    #[test]
    fn a_sandbox_is_named_by_its_pods_uid_and_attempt() {
        let mut m = crate::PodSandboxMetadata {
            name: "web".into(),
            namespace: "default".into(),
            uid: "0b6f2c8e-4a52-4a8e-9b7a-5f1d2d9c7e11".into(),
            attempt: 0,
        };
        assert_eq!(sandbox_id_for(&m), m.uid);
        m.attempt = 2;
        assert_eq!(sandbox_id_for(&m), format!("{}-2", m.uid));
        // A UID that cannot name a directory (or none): a new ID.
        for uid in ["", "../etc", "a/b", &"x".repeat(65)] {
            m.uid = uid.into();
            let id = sandbox_id_for(&m);
            assert!(id.starts_with("default-web-"), "{uid:?}: {id}");
        }
    }

    #[test]
    fn sandbox_ids_are_short_distinct_and_valid() {
        let long = "n".repeat(253);
        let a = new_sandbox_id("default", &long);
        let b = new_sandbox_id("default", &long);
        assert_ne!(a, b);
        assert!(a.len() <= 59, "{a}");
        assert!(check_id("sandbox", &a).is_ok());
        assert!(new_sandbox_id("default", "web").starts_with("default-web-"));
        // What CRI metadata may hold that a directory name may not.
        let odd = new_sandbox_id("", "a/b c");
        assert!(check_id("sandbox", &odd).is_ok(), "{odd}");
    }
}
