//! The pod's cgroup on the cgroupfs driver: made before the containers (whose cgroups
//! crun creates beneath it), limited as kubelet limits a pod, removed after them.
//!
//! cgroup v1: the directory is made in every hierarchy crun puts a container into, so
//! that the containers' cgroups nest under the pod's in each of them. crun
//! (libcrun/cgroup-setup.c `enter_cgroup_v1`) reads its own `/proc/self/cgroup` and,
//! for each line, uses `/sys/fs/cgroup/<controllers>` when that directory exists
//! (`name=` dropped, the empty v2 line as `unified`): on a hybrid machine that is
//! every v1 hierarchy, the named `systemd` one and the `unified` cgroup2 mount. Paths
//! are taken from each hierarchy's root, not from the caller's own cgroup.
//!
//! cgroup v2: one directory; every controller an ancestor offers is enabled in its
//! `cgroup.subtree_control` (as runc's and crun's cgroupfs managers do) so the pod's
//! cgroup gets cpu, memory and pids.
//!
//! What to write is decided by pure functions ([`v1_settings`], [`v2_settings`],
//! [`shares_to_weight`]); [`create_pod_cgroup`] and [`remove_pod_cgroup`] do it.
//!
//! The systemd driver ([`systemd`]): a path in systemd's form (a slice name, or an
//! OCI `slice:prefix:name`) is a unit, made, changed and stopped through systemd
//! by the same two functions; [`hierarchy_path`] says where its cgroup is.

pub mod systemd;

pub use systemd::{CgroupDriver, SystemdError};

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a pod cgroup could not be made, found or removed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// cgroup path {path:?}: {reason}
    #[error("cgroup path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// read /proc/self/cgroup: {0}
    #[error("read /proc/self/cgroup: {0}")]
    ProcSelfCgroup(#[source] std::io::Error),
    /// no cgroup v1 hierarchy under /sys/fs/cgroup
    #[error("no cgroup v1 hierarchy under {CGROUP_ROOT}")]
    NoV1Hierarchy,
    /// no cgroup v1 hierarchy has the {controller} controller (for {file})
    #[error("no cgroup v1 hierarchy has the {controller} controller (for {file})")]
    NoV1Controller {
        /// The controller a limit needs.
        controller: &'static str,
        /// The control file the limit goes into.
        file: &'static str,
    },
    /// controller {controller} is not available in {dir} (for {file})
    #[error("controller {controller} is not available in {} (for {file})", .dir.display())]
    NoV2Controller {
        /// The controller a limit needs.
        controller: &'static str,
        /// The pod's cgroup directory.
        dir: PathBuf,
        /// The control file the limit goes into.
        file: &'static str,
    },
    /// mkdir {dir}: {source}
    #[error("mkdir {}: {source}", .dir.display())]
    Mkdir {
        /// The directory.
        dir: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// read {file}: {source}
    #[error("read {}: {source}", .file.display())]
    Read {
        /// The file or directory.
        file: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// write {value:?} to {file}: {source}
    #[error("write {value:?} to {}: {source}", .file.display())]
    Write {
        /// The control file.
        file: PathBuf,
        /// What was written.
        value: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// statfs {dir}: {source}
    #[error("statfs {}: {source}", .dir.display())]
    Statfs {
        /// The directory.
        dir: PathBuf,
        /// The system's error.
        source: rustix::io::Errno,
    },
    /// {dir}: not on a cgroup filesystem
    #[error("{}: not on a cgroup filesystem", .dir.display())]
    NotCgroupfs {
        /// The directory that was to be removed.
        dir: PathBuf,
    },
    /// remove {dir}: {source}
    #[error("remove {}: {source}", .dir.display())]
    Rmdir {
        /// The directory.
        dir: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// create cgroup {path}: {source}, then each failure to undo it
    #[error("create cgroup {path}: {source}{}", undo_text(.undo))]
    Create {
        /// The pod's cgroup path.
        path: String,
        /// The step that failed.
        source: Box<CgroupError>,
        /// The directories this call made that could not be removed again.
        undo: Vec<CgroupError>,
    },
    /// cgroup {path}: the systemd driver's error
    #[error("cgroup {path}: {source}")]
    Systemd {
        /// The slice or scope.
        path: String,
        /// What systemd (or the bus) said.
        source: Box<SystemdError>,
    },
    /// remove cgroup {path}: every failure, in order
    #[error("remove cgroup {path}: {}", join_errors(.errors))]
    Remove {
        /// The pod's cgroup path.
        path: String,
        /// Every failure met while going on past them.
        errors: Vec<CgroupError>,
    },
}

use crate::join_errors;

fn undo_text(undo: &[CgroupError]) -> String {
    undo.iter().map(|e| format!("; and undo: {e}")).collect()
}

/// Where the cgroup filesystems are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;

/// Which cgroup layout the machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// v1 hierarchies under `/sys/fs/cgroup/<controller>` (also the hybrid layout,
    /// whose cgroup2 mount at `/sys/fs/cgroup/unified` holds no controllers).
    V1,
    /// The unified hierarchy mounted at `/sys/fs/cgroup`.
    V2,
}

/// The machine's layout: V2 only when `/sys/fs/cgroup` itself is a cgroup2 mount that
/// offers controllers; anything else (v1, hybrid) is V1.
pub fn detect() -> CgroupMode {
    let is_cgroup2 =
        rustix::fs::statfs(CGROUP_ROOT).is_ok_and(|s| s.f_type as u64 == CGROUP2_SUPER_MAGIC);
    let controllers = if is_cgroup2 {
        std::fs::read_to_string(Path::new(CGROUP_ROOT).join("cgroup.controllers"))
            .unwrap_or_default()
    } else {
        String::new()
    };
    mode_from(is_cgroup2, &controllers)
}

/// [`detect`]'s rule, given whether `/sys/fs/cgroup` is cgroup2 and its
/// `cgroup.controllers`.
pub fn mode_from(root_is_cgroup2: bool, root_controllers: &str) -> CgroupMode {
    if root_is_cgroup2 && !root_controllers.trim().is_empty() {
        CgroupMode::V2
    } else {
        CgroupMode::V1
    }
}

/// A pod cgroup's limits (podrun_spec's `PodLimits`, field for field).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupLimits {
    /// v1 `cpu.shares` (2..=262144); v2 writes it as `cpu.weight`. 0 leaves it alone.
    pub cpu_shares: u64,
    /// CFS quota in microseconds per period; `None` (or ≤ 0) is unlimited.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds; 0 leaves it alone.
    pub cpu_period: u64,
    /// Memory limit in bytes; `None` (or ≤ 0) is unlimited.
    pub memory_limit: Option<i64>,
    /// Maximum number of tasks; `None` (or ≤ 0) is unlimited.
    pub pids_limit: Option<i64>,
}

/// One value to write into a control file of the pod's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The controller whose hierarchy (v1) or files (v2) hold the file.
    pub controller: &'static str,
    /// The control file.
    pub file: &'static str,
    /// What to write.
    pub value: String,
    /// Whether the value limits anything: a missing controller is then an error; an
    /// "unlimited" value for a controller the machine lacks is skipped.
    pub limits: bool,
}

impl Setting {
    fn new(controller: &'static str, file: &'static str, value: String, limits: bool) -> Self {
        Setting {
            controller,
            file,
            value,
            limits,
        }
    }
}

/// The v1 control files and values for `limits`, in the order to write them (the CFS
/// period before the quota, which the kernel checks against it). Unlimited values are
/// written too, so that a cgroup that already existed ends up as asked.
pub fn v1_settings(limits: &CgroupLimits) -> Vec<Setting> {
    let mut out = Vec::new();
    if limits.cpu_shares > 0 {
        out.push(Setting::new(
            "cpu",
            "cpu.shares",
            limits.cpu_shares.to_string(),
            true,
        ));
    }
    if limits.cpu_period > 0 {
        out.push(Setting::new(
            "cpu",
            "cpu.cfs_period_us",
            limits.cpu_period.to_string(),
            true,
        ));
    }
    let quota = positive(limits.cpu_quota);
    out.push(Setting::new(
        "cpu",
        "cpu.cfs_quota_us",
        quota.map_or("-1".into(), |q| q.to_string()),
        quota.is_some(),
    ));
    let memory = positive(limits.memory_limit);
    out.push(Setting::new(
        "memory",
        "memory.limit_in_bytes",
        memory.map_or("-1".into(), |m| m.to_string()),
        memory.is_some(),
    ));
    let pids = positive(limits.pids_limit);
    out.push(Setting::new(
        "pids",
        "pids.max",
        pids.map_or("max".into(), |p| p.to_string()),
        pids.is_some(),
    ));
    out
}

/// The v2 control files and values for `limits`: `cpu.weight` (from the shares, see
/// [`shares_to_weight`]), `cpu.max` (`<quota|max> <period>`), `memory.max`, `pids.max`.
pub fn v2_settings(limits: &CgroupLimits) -> Vec<Setting> {
    let mut out = Vec::new();
    if limits.cpu_shares > 0 {
        out.push(Setting::new(
            "cpu",
            "cpu.weight",
            shares_to_weight(limits.cpu_shares).to_string(),
            true,
        ));
    }
    let quota = positive(limits.cpu_quota);
    let quota_text = quota.map_or("max".into(), |q| q.to_string());
    let cpu_max = if limits.cpu_period > 0 {
        format!("{quota_text} {}", limits.cpu_period)
    } else {
        quota_text
    };
    out.push(Setting::new("cpu", "cpu.max", cpu_max, quota.is_some()));
    let memory = positive(limits.memory_limit);
    out.push(Setting::new(
        "memory",
        "memory.max",
        memory.map_or("max".into(), |m| m.to_string()),
        memory.is_some(),
    ));
    let pids = positive(limits.pids_limit);
    out.push(Setting::new(
        "pids",
        "pids.max",
        pids.map_or("max".into(), |p| p.to_string()),
        pids.is_some(),
    ));
    out
}

fn positive(value: Option<i64>) -> Option<i64> {
    value.filter(|v| *v > 0)
}

/// v1 `cpu.shares` as v2 `cpu.weight` by the linear rule (one rule for pods and
/// containers: `podrun_oci::shares_to_weight`).
pub use podrun_oci::shares_to_weight;

/// The conversion of crun ≥ 1.23, of runc since opencontainers/runc#4785 and of
/// opencontainers/cgroups (so of kubelet's pod cgroups on v2): a
/// quadratic in log2(shares) through (2, 1), (1024, 100) and (262144, 10000).
pub fn shares_to_weight_quadratic(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        _ => {
            let l = (shares as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            10f64.powf(exponent).ceil() as u64
        }
    }
}

/// One v1 hierarchy crun would place a container in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Its directory (`/sys/fs/cgroup/cpu,cpuacct`).
    pub dir: PathBuf,
    /// The controllers bound to it (empty for `name=systemd` and `unified`).
    pub controllers: Vec<String>,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The v1 hierarchies crun enters, from `/proc/self/cgroup` text, by crun's rule:
/// each line's controller list names `<root>/<list>` (`name=` prefix dropped, the
/// empty list of the v2 line as `unified`, `cpuacct,cpu` and `net_prio,net_cls`
/// spelt the way mounts name them), used when `exists` says the directory is there.
pub fn v1_hierarchies_from(
    proc_self_cgroup: &str,
    root: &Path,
    exists: impl Fn(&Path) -> bool,
) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(list), Some(_path)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (name, controllers) = if list.is_empty() {
            ("unified".to_string(), Vec::new())
        } else if let Some(named) = list.strip_prefix("name=") {
            (named.to_string(), Vec::new())
        } else {
            let name = match list {
                "cpuacct,cpu" => "cpu,cpuacct",
                "net_prio,net_cls" => "net_cls,net_prio",
                other => other,
            };
            let controllers = list.split(',').map(str::to_string).collect();
            (name.to_string(), controllers)
        };
        let dir = root.join(&name);
        if name.contains('/') || !exists(&dir) || out.iter().any(|h| h.dir == dir) {
            continue;
        }
        out.push(Hierarchy { dir, controllers });
    }
    out
}

/// The v1 hierarchies crun would use on this machine.
pub fn v1_hierarchies() -> Result<Vec<Hierarchy>, CgroupError> {
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(CgroupError::ProcSelfCgroup)?;
    let found = v1_hierarchies_from(&text, Path::new(CGROUP_ROOT), |p| p.is_dir());
    if found.is_empty() {
        return Err(CgroupError::NoV1Hierarchy);
    }
    Ok(found)
}

/// Where cgroup `path` is in the hierarchy: a cgroupfs path as it is, a systemd
/// unit's expanded (`podrun-pod1.slice:podrun:c` is
/// `/podrun.slice/podrun-pod1.slice/podrun-c.scope`).
pub fn hierarchy_path(path: &str) -> Result<String, CgroupError> {
    if systemd::is_systemd_path(path) {
        systemd::cgroup_path(path).map_err(|source| CgroupError::Systemd {
            path: path.into(),
            source: Box::new(source),
        })
    } else {
        Ok(path.into())
    }
}

/// The directories that make up cgroup `path` (`/podrun/burstable/<pod>`, or a
/// systemd unit's, see [`hierarchy_path`]): one per v1 hierarchy crun uses, or the
/// one under the unified mount. They need not exist.
pub fn cgroup_dirs(path: &str) -> Result<Vec<PathBuf>, CgroupError> {
    let path = hierarchy_path(path)?;
    let parts = components(&path)?;
    let bases = match detect() {
        CgroupMode::V2 => vec![PathBuf::from(CGROUP_ROOT)],
        CgroupMode::V1 => v1_hierarchies()?.into_iter().map(|h| h.dir).collect(),
    };
    Ok(bases.into_iter().map(|b| join(&b, &parts)).collect())
}

/// The components of an absolute cgroup path; refuses the root, empty components,
/// `.` and `..`, so that nothing outside the cgroup can be named.
pub fn components(path: &str) -> Result<Vec<&str>, CgroupError> {
    let bad = |reason| {
        Err(CgroupError::InvalidPath {
            path: path.into(),
            reason,
        })
    };
    let Some(rest) = path.strip_prefix('/') else {
        return bad("must be absolute");
    };
    if rest.is_empty() {
        return bad("must not be the root");
    }
    let parts: Vec<&str> = rest.split('/').collect();
    for part in &parts {
        match *part {
            "" => return bad("empty component"),
            "." | ".." => return bad("relative component"),
            p if p.contains('\0') => return bad("NUL byte"),
            _ => {}
        }
    }
    Ok(parts)
}

fn join(base: &Path, parts: &[&str]) -> PathBuf {
    let mut dir = base.to_path_buf();
    dir.extend(parts);
    dir
}

/// Creates cgroup `path` (creating `/podrun`, `/podrun/burstable` … as needed) and
/// writes `limits` into it; see the module doc for where. A cgroup that exists already
/// is reused and gets `limits`. On failure every directory this call created is
/// removed again (controllers it enabled in v2 ancestors stay enabled, as runc and crun
/// leave them); the error names the file and the cause.
///
/// A systemd path: a slice is started as a transient unit with the limits as its
/// properties (an existing one gets them); a scope (a container's, made by the OCI
/// runtime) gets them.
pub fn create_pod_cgroup(path: &str, limits: &CgroupLimits) -> Result<(), CgroupError> {
    if systemd::is_systemd_path(path) {
        return create_unit(path, limits).map_err(|source| CgroupError::Systemd {
            path: path.into(),
            source: Box::new(source),
        });
    }
    let parts = components(path)?;
    let mut created = Vec::new();
    let result = match detect() {
        CgroupMode::V1 => create_v1(&parts, limits, &mut created),
        CgroupMode::V2 => create_v2(&parts, limits, &mut created),
    };
    result.map_err(|error| CgroupError::Create {
        path: path.into(),
        source: Box::new(error),
        undo: created
            .iter()
            .rev()
            .filter_map(|dir| {
                rmdir_retrying(dir).err().map(|source| CgroupError::Rmdir {
                    dir: dir.clone(),
                    source,
                })
            })
            .collect(),
    })
}

fn create_unit(path: &str, limits: &CgroupLimits) -> Result<(), SystemdError> {
    let unit = systemd::unit_name(path)?;
    let bus = systemd::Systemd::connect()?;
    if unit.ends_with(".slice") {
        let description = format!("podrun pod cgroup {unit}");
        bus.start_transient(&unit, &systemd::slice_properties(limits, &description))
    } else {
        bus.set_properties(&unit, &systemd::limit_properties(limits))
    }
}

/// Stop a systemd path's unit, then remove what is left of its cgroup (a unit
/// systemd no longer knew, as after a reboot of systemd's state).
fn remove_unit(path: &str, errors: &mut Vec<CgroupError>) {
    let stopped = systemd::unit_name(path).and_then(|unit| {
        let bus = systemd::Systemd::connect()?;
        bus.stop(&unit)
    });
    if let Err(source) = stopped {
        errors.push(CgroupError::Systemd {
            path: path.into(),
            source: Box::new(source),
        });
        return;
    }
    if let Ok(dirs) = cgroup_dirs(path) {
        for dir in dirs {
            remove_pod_dir(&dir, errors);
        }
    }
}

fn create_v1(
    parts: &[&str],
    limits: &CgroupLimits,
    created: &mut Vec<PathBuf>,
) -> Result<(), CgroupError> {
    let hierarchies = v1_hierarchies()?;
    for hierarchy in &hierarchies {
        make_dirs(&hierarchy.dir, parts, created)?;
        if hierarchy.has("cpuset") {
            fill_cpuset(&hierarchy.dir, parts)?;
        }
    }
    for setting in v1_settings(limits) {
        let Some(hierarchy) = hierarchies.iter().find(|h| h.has(setting.controller)) else {
            if setting.limits {
                return Err(CgroupError::NoV1Controller {
                    controller: setting.controller,
                    file: setting.file,
                });
            }
            continue;
        };
        write_file(
            &join(&hierarchy.dir, parts).join(setting.file),
            &setting.value,
        )?;
    }
    Ok(())
}

/// A new cpuset cgroup starts with empty `cpuset.cpus` and `cpuset.mems`, and no task
/// can join it then (ENOSPC): fill each level of `parts` that is empty from its parent,
/// as crun does for the containers' cgroups (`initialize_cpuset_subsystem`).
fn fill_cpuset(hierarchy: &Path, parts: &[&str]) -> Result<(), CgroupError> {
    let mut parent = hierarchy.to_path_buf();
    for part in parts {
        let dir = parent.join(part);
        for name in ["cpus", "mems"] {
            let file = cpuset_file(&dir, name);
            let current = read_file(&file)?;
            if current.trim().is_empty() {
                let inherited = read_file(&cpuset_file(&parent, name))?;
                write_file(&file, inherited.trim())?;
            }
        }
        parent = dir;
    }
    Ok(())
}

/// `cpuset.<name>`, or `<name>` on a hierarchy mounted with `noprefix`.
fn cpuset_file(dir: &Path, name: &str) -> PathBuf {
    let prefixed = dir.join(format!("cpuset.{name}"));
    if prefixed.exists() {
        prefixed
    } else {
        dir.join(name)
    }
}

fn create_v2(
    parts: &[&str],
    limits: &CgroupLimits,
    created: &mut Vec<PathBuf>,
) -> Result<(), CgroupError> {
    let root = Path::new(CGROUP_ROOT);
    let mut dir = root.to_path_buf();
    for part in parts {
        enable_controllers(&dir)?;
        dir.push(part);
        if make_dir(&dir)? {
            created.push(dir.clone());
        }
    }
    let settings = v2_settings(limits);
    let available = read_file(&dir.join("cgroup.controllers"))?;
    for setting in settings {
        if !available
            .split_whitespace()
            .any(|c| c == setting.controller)
        {
            if setting.limits {
                return Err(CgroupError::NoV2Controller {
                    controller: setting.controller,
                    dir,
                    file: setting.file,
                });
            }
            continue;
        }
        write_file(&dir.join(setting.file), &setting.value)?;
    }
    Ok(())
}

/// Enables in `dir`'s `cgroup.subtree_control` every controller it offers, all at once
/// or, when the kernel refuses one, one by one (runc's `CreateCgroupPath`); whether the
/// controllers the limits need arrived is checked by the caller.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let available = read_file(&dir.join("cgroup.controllers"))?;
    let enabled = read_file(&dir.join("cgroup.subtree_control"))?;
    let missing = controllers_to_enable(&available, &enabled);
    if missing.is_empty() {
        return Ok(());
    }
    let file = dir.join("cgroup.subtree_control");
    if write_file(&file, &missing.join(" ")).is_err() {
        for one in &missing {
            let _ = write_file(&file, one);
        }
    }
    Ok(())
}

/// The `+<controller>` words that enable what `available` offers and `enabled` lacks.
pub fn controllers_to_enable(available: &str, enabled: &str) -> Vec<String> {
    available
        .split_whitespace()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect()
}

/// mkdir each missing level of `parts` under `base`, recording those it made.
fn make_dirs(base: &Path, parts: &[&str], created: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    // A parent may vanish between two of our mkdirs: removing the last pod of a
    // QoS class removes its empty parents (`remove_pod_cgroup`). Start over then.
    let mut attempt = 0;
    'again: loop {
        let mut dir = base.to_path_buf();
        for part in parts {
            dir.push(part);
            match std::fs::create_dir(&dir) {
                Ok(()) => created.push(dir.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 3 => {
                    attempt += 1;
                    continue 'again;
                }
                Err(source) => return Err(CgroupError::Mkdir { dir, source }),
            }
        }
        return Ok(());
    }
}

/// mkdir; whether it was made (false: it was there).
fn make_dir(dir: &Path) -> Result<bool, CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(source) => Err(CgroupError::Mkdir {
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

fn read_file(file: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(file).map_err(|source| CgroupError::Read {
        file: file.to_path_buf(),
        source,
    })
}

/// Writes a control file, which must exist (no O_CREAT: a missing file is ENOENT, not
/// a confusing EPERM from cgroupfs).
fn write_file(file: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::Write {
            file: file.to_path_buf(),
            value: value.into(),
            source,
        })
}

/// Removes cgroup `path` (and any cgroups left beneath it, such as containers') from
/// every hierarchy, then its parents (`/podrun/burstable`, `/podrun`) where they are
/// empty and podrun's own, so the last pod gone leaves no podrun cgroup behind. The
/// parents of a cgroup kubelet chose (`/kubepods/besteffort/pod<uid>`) are kubelet's:
/// it keeps its QoS cgroups and writes to them, so they stay. A hierarchy where it is
/// absent is fine. Goes on past failures and reports them all; a cgroup that still
/// holds processes cannot be removed (EBUSY). A systemd path's unit is stopped
/// (which kills what it still holds); its parent slices stay, as kubelet's do.
pub fn remove_pod_cgroup(path: &str) -> Result<(), CgroupError> {
    if systemd::is_systemd_path(path) {
        let mut errors = Vec::new();
        remove_unit(path, &mut errors);
        return if errors.is_empty() {
            Ok(())
        } else {
            Err(CgroupError::Remove {
                path: path.into(),
                errors,
            })
        };
    }
    let dirs = cgroup_dirs(path)?;
    let parts = components(path)?;
    let depth = if parts.first() == Some(&"podrun") {
        parts.len()
    } else {
        0
    };
    let mut errors = Vec::new();
    for dir in &dirs {
        remove_pod_dir(dir, &mut errors);
        // The shared parents go only when empty: another pod's, or one being
        // made (make_dirs starts over when its parent vanishes), keeps them.
        for parent in dir.ancestors().skip(1).take(depth.saturating_sub(1)) {
            if std::fs::remove_dir(parent).is_err() {
                break;
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CgroupError::Remove {
            path: path.into(),
            errors,
        })
    }
}

/// Remove one hierarchy's pod directory (checked to be on a cgroup file system).
fn remove_pod_dir(dir: &Path, errors: &mut Vec<CgroupError>) {
    if !dir.exists() {
        return;
    }
    match rustix::fs::statfs(dir) {
        Ok(s) if matches!(s.f_type as u64, CGROUP_SUPER_MAGIC | CGROUP2_SUPER_MAGIC) => {
            remove_tree(dir, errors)
        }
        Ok(_) => errors.push(CgroupError::NotCgroupfs {
            dir: dir.to_path_buf(),
        }),
        Err(source) => errors.push(CgroupError::Statfs {
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

/// rmdir the child cgroups of `dir`, deepest first, then `dir`. Only directories are
/// removed, and only with rmdir: cgroupfs drops the control files with them, and
/// nothing else could be deleted by mistake.
fn remove_tree(dir: &Path, errors: &mut Vec<CgroupError>) {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&entry.path(), errors);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(source) => errors.push(CgroupError::Read {
            file: dir.to_path_buf(),
            source,
        }),
    }
    if let Err(source) = rmdir_retrying(dir) {
        errors.push(CgroupError::Rmdir {
            dir: dir.to_path_buf(),
            source,
        });
    }
}

/// rmdir, tolerating a directory already gone and retrying EBUSY a few times: a cgroup
/// whose last task just exited stays busy for a moment (runc retries likewise).
fn rmdir_retrying(dir: &Path) -> std::io::Result<()> {
    let mut delay = Duration::from_millis(5);
    for attempt in 0.. {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy && attempt < 5 => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(shares: u64, quota: Option<i64>, memory: Option<i64>) -> CgroupLimits {
        CgroupLimits {
            cpu_shares: shares,
            cpu_quota: quota,
            cpu_period: 100_000,
            memory_limit: memory,
            pids_limit: None,
        }
    }

    fn pairs(settings: &[Setting]) -> Vec<(&str, &str)> {
        settings
            .iter()
            .map(|s| (s.file, s.value.as_str()))
            .collect()
    }

    #[test]
    fn detects_v2_only_with_controllers_on_a_cgroup2_root() {
        assert_eq!(
            mode_from(true, "cpuset cpu io memory pids\n"),
            CgroupMode::V2
        );
        assert_eq!(mode_from(true, "\n"), CgroupMode::V1);
        // Hybrid: /sys/fs/cgroup is a tmpfs; the unified mount lives below it.
        assert_eq!(mode_from(false, ""), CgroupMode::V1);
    }

    #[test]
    fn v1_writes_period_before_quota_and_unlimited_values() {
        let settings = v1_settings(&limits(512, Some(50_000), Some(256 << 20)));
        assert_eq!(
            pairs(&settings),
            [
                ("cpu.shares", "512"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000"),
                ("memory.limit_in_bytes", "268435456"),
                ("pids.max", "max"),
            ]
        );
        assert!(!settings[4].limits);
        let settings = v1_settings(&CgroupLimits {
            pids_limit: Some(100),
            ..limits(2, None, Some(0))
        });
        assert_eq!(
            pairs(&settings),
            [
                ("cpu.shares", "2"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "-1"),
                ("memory.limit_in_bytes", "-1"),
                ("pids.max", "100"),
            ]
        );
        assert_eq!(
            settings.iter().map(|s| s.limits).collect::<Vec<_>>(),
            [true, true, false, false, true]
        );
    }

    #[test]
    fn v2_writes_weight_max_and_limits() {
        let settings = v2_settings(&CgroupLimits {
            pids_limit: Some(64),
            ..limits(1024, Some(150_000), Some(1 << 30))
        });
        assert_eq!(
            pairs(&settings),
            [
                ("cpu.weight", "39"),
                ("cpu.max", "150000 100000"),
                ("memory.max", "1073741824"),
                ("pids.max", "64"),
            ]
        );
        let settings = v2_settings(&limits(2, None, None));
        assert_eq!(
            pairs(&settings),
            [
                ("cpu.weight", "1"),
                ("cpu.max", "max 100000"),
                ("memory.max", "max"),
                ("pids.max", "max"),
            ]
        );
        let settings = v2_settings(&CgroupLimits {
            cpu_period: 0,
            ..limits(0, Some(5000), None)
        });
        assert_eq!(pairs(&settings)[0], ("cpu.max", "5000"));
    }

    #[test]
    fn converts_shares_to_weight_linearly() {
        for (shares, weight) in [
            (0, 0),
            (2, 1),
            (3, 1),
            (102, 4),
            (512, 20),
            (1024, 39),
            (2048, 79),
            (262_144, 10_000),
            (1_000_000, 10_000),
        ] {
            assert_eq!(shares_to_weight(shares), weight, "{shares} shares");
        }
    }

    #[test]
    fn converts_shares_to_weight_quadratically() {
        for (shares, weight) in [
            (0, 0),
            (2, 1),
            (1024, 100),
            (262_144, 10_000),
            (1_000_000, 10_000),
        ] {
            assert_eq!(
                shares_to_weight_quadratic(shares),
                weight,
                "{shares} shares"
            );
        }
        // Monotonic over the whole range.
        let mut last = 0;
        for shares in 2..=262_144 {
            let w = shares_to_weight_quadratic(shares);
            assert!(w >= last, "{shares}");
            last = w;
        }
    }

    #[test]
    fn finds_the_hierarchies_crun_enters() {
        // This machine's /proc/self/cgroup (a hybrid layout).
        let text = "11:hugetlb:/\n9:name=systemd:/\n8:pids:/\n4:memory:/x/y\n\
                    3:cpuset:/\n2:cpuacct,cpu:/\n1:net_prio,net_cls:/\n12:rdma:/\n0::/\n";
        let mounted = [
            "hugetlb",
            "systemd",
            "pids",
            "memory",
            "cpuset",
            "cpu,cpuacct",
            "net_cls,net_prio",
            "unified",
        ];
        let root = Path::new("/sys/fs/cgroup");
        let found = v1_hierarchies_from(text, root, |p| mounted.iter().any(|m| root.join(m) == p));
        let dirs: Vec<_> = found.iter().map(|h| h.dir.to_str().unwrap()).collect();
        assert_eq!(
            dirs,
            [
                "/sys/fs/cgroup/hugetlb",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/cpuset",
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/net_cls,net_prio",
                "/sys/fs/cgroup/unified",
            ]
        );
        let cpu = found.iter().find(|h| h.has("cpu")).unwrap();
        assert_eq!(cpu.controllers, ["cpuacct", "cpu"]);
        assert!(
            found.iter().find(|h| h.has("rdma")).is_none(),
            "not mounted"
        );
        assert!(found[1].controllers.is_empty(), "name=systemd has none");
    }

    #[test]
    fn refuses_paths_that_could_escape() {
        assert_eq!(
            components("/podrun/burstable/p1").unwrap(),
            ["podrun", "burstable", "p1"]
        );
        for bad in [
            "",
            "/",
            "podrun/x",
            "/podrun//x",
            "/podrun/../etc",
            "/podrun/.",
            "/podrun/",
        ] {
            assert!(components(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn enables_only_what_is_missing() {
        assert_eq!(
            controllers_to_enable("cpuset cpu io memory pids\n", "cpu memory\n"),
            ["+cpuset", "+io", "+pids"]
        );
        assert!(controllers_to_enable("cpu memory", "cpu memory").is_empty());
        assert!(controllers_to_enable("", "").is_empty());
    }

    #[test]
    fn limits_serialize_like_pod_limits() {
        let json = serde_json::to_value(limits(2, None, Some(1))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "cpu_shares": 2, "cpu_quota": null, "cpu_period": 100000,
                "memory_limit": 1, "pids_limit": null
            })
        );
    }
}
