//! The systemd cgroup driver (kubelet's `cgroupDriver: systemd`, containerd's
//! `SystemdCgroup = true`): the pod's cgroup is a transient slice and each container's
//! a transient scope in it, made through systemd's D-Bus API
//! (`org.freedesktop.systemd1.Manager.StartTransientUnit`), so that systemd, which owns
//! the whole hierarchy on such a node, knows every cgroup and never fights over one.
//!
//! Names follow kubelet and containerd: the pod slice is a slice name
//! (`podrun-burstable-pod<id>.slice`, see `podrun_spec::pod_slice_name`), which is
//! what `linux.cgroup_parent` holds under this driver; a container's OCI
//! `cgroupsPath` is `<pod slice>:podrun:<container id>`, which the OCI runtime (run
//! with its systemd cgroup manager) turns into the scope `podrun-<id>.scope`. The
//! slice's parents (`podrun.slice`, `podrun-burstable.slice`) follow from its name:
//! systemd makes them as the slice's dependencies and keeps them, as kubelet keeps
//! `kubepods.slice` (stopping a parent slice would stop every pod in it).
//!
//! The limits are systemd properties (`CPUWeight`, `CPUQuotaPerSecUSec`,
//! `CPUQuotaPeriodUSec`, `MemoryMax`, `TasksMax`), chosen by the pure
//! [`slice_properties`]; systemd writes the same files the cgroupfs driver would.
//!
//! The D-Bus client is libdbus (the `dbus` crate): it makes no threads, so the
//! single-threaded monitor may stop units too.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dbus::arg::{RefArg, Variant};
use dbus::blocking::Connection;

use super::CgroupLimits;

/// Which cgroup driver podrun uses: kubelet's `cgroupDriver` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// podrun writes the cgroup files itself (`/podrun/burstable/<pod>`).
    #[default]
    Cgroupfs,
    /// Transient slices and scopes through systemd's D-Bus API.
    Systemd,
}

impl CgroupDriver {
    /// kubelet's name for it (`cgroupfs`, `systemd`).
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupDriver::Cgroupfs => "cgroupfs",
            CgroupDriver::Systemd => "systemd",
        }
    }

    /// Whether this machine can use the driver: `systemd` needs systemd as PID 1
    /// (`/run/systemd/system` exists, sd_booted(3)'s test).
    pub fn check(self) -> Result<(), SystemdError> {
        self.check_with(Path::new(BOOTED_MARKER).is_dir())
    }

    /// [`CgroupDriver::check`]'s rule, given whether systemd is PID 1.
    pub fn check_with(self, systemd_booted: bool) -> Result<(), SystemdError> {
        match self {
            CgroupDriver::Systemd if !systemd_booted => Err(SystemdError::NotBooted),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for CgroupDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CgroupDriver {
    type Err = SystemdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cgroupfs" => Ok(CgroupDriver::Cgroupfs),
            "systemd" => Ok(CgroupDriver::Systemd),
            other => Err(SystemdError::UnknownDriver {
                value: other.into(),
            }),
        }
    }
}

/// What sd_booted(3) checks: systemd is PID 1.
const BOOTED_MARKER: &str = "/run/systemd/system";

/// The scope prefix of podrun's containers (containerd's `cri-containerd`).
pub const SCOPE_PREFIX: &str = "podrun";

/// How long a unit may take to start or stop (a software-emulated VM is slow).
const UNIT_TIMEOUT: Duration = Duration::from_secs(30);

const DESTINATION: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// Why the systemd driver cannot be used, or a unit not made or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// cgroup driver {value:?}: must be cgroupfs or systemd
    #[error("cgroup driver {value:?}: must be \"cgroupfs\" or \"systemd\"")]
    UnknownDriver {
        /// The value given.
        value: String,
    },
    /// cgroup driver systemd: systemd is not PID 1 here
    #[error(
        "cgroup driver systemd: systemd is not running as PID 1 here ({BOOTED_MARKER} is missing); use cgroupfs"
    )]
    NotBooted,
    /// {name:?}: not a systemd unit name podrun makes ({reason})
    #[error("{name:?}: not a systemd cgroup name ({reason})")]
    InvalidName {
        /// The name or path.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// connect to the system bus: {0}
    #[error("connect to the D-Bus system bus: {0}")]
    Connect(#[source] dbus::Error),
    /// {call} {unit}: {source}
    #[error("systemd {call} {unit}: {source}")]
    Call {
        /// The D-Bus method.
        call: &'static str,
        /// The unit.
        unit: String,
        /// systemd's (or the bus's) error.
        source: dbus::Error,
    },
    /// unit {unit} is {state} (want {want}) after {waited:?}
    #[error("unit {unit} is {state} after {waited:?}, not {want}")]
    Timeout {
        /// The unit.
        unit: String,
        /// Its last ActiveState ("gone": unloaded).
        state: String,
        /// The state waited for.
        want: &'static str,
        /// How long it was waited for.
        waited: Duration,
    },
}

/// Whether `path` names a systemd unit: a slice name (`podrun-pod1.slice`, a pod's
/// cgroup parent) or an OCI `slice:prefix:name` (a container's cgroupsPath).
pub fn is_systemd_path(path: &str) -> bool {
    !path.starts_with('/') && (path.ends_with(".slice") || path.split(':').count() == 3)
}

/// A container's OCI `cgroupsPath` in the pod slice `slice`.
pub fn container_cgroups_path(slice: &str, id: &str) -> String {
    format!("{slice}:{SCOPE_PREFIX}:{id}")
}

/// The unit a systemd path names: the slice itself, or `<prefix>-<name>.scope` for
/// `slice:prefix:name` (runc's and libcontainer's rule; a name ending in `.slice`
/// is taken as is).
pub fn unit_name(path: &str) -> Result<String, SystemdError> {
    let bad = |reason| SystemdError::InvalidName {
        name: path.into(),
        reason,
    };
    let parts: Vec<&str> = path.split(':').collect();
    match parts.as_slice() {
        [slice] => {
            expand_slice(slice)?;
            Ok((*slice).to_string())
        }
        [slice, prefix, name] => {
            expand_slice(slice)?;
            if name.is_empty() || name.contains('/') {
                return Err(bad("empty name or a '/' in it"));
            }
            if name.ends_with(".slice") {
                Ok((*name).to_string())
            } else if prefix.is_empty() {
                Ok(format!("{name}.scope"))
            } else {
                Ok(format!("{prefix}-{name}.scope"))
            }
        }
        _ => Err(bad("want <slice> or <slice>:<prefix>:<name>")),
    }
}

/// Where systemd puts slice `slice` in the hierarchy: each dash a level
/// (`podrun-burstable-pod1.slice` is
/// `/podrun.slice/podrun-burstable.slice/podrun-burstable-pod1.slice`), `-.slice`
/// the root. Refuses what systemd refuses (empty levels, a `/`).
pub fn expand_slice(slice: &str) -> Result<String, SystemdError> {
    let bad = |reason| SystemdError::InvalidName {
        name: slice.into(),
        reason,
    };
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(bad("a slice name ends in .slice"));
    };
    if stem.is_empty() || slice.contains('/') || slice.contains('\0') {
        return Err(bad("empty, or a '/' in it"));
    }
    if stem == "-" {
        return Ok("/".into());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for level in stem.split('-') {
        if level.is_empty() {
            return Err(bad("an empty level (leading, trailing or double dash)"));
        }
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(level);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Ok(path)
}

/// The cgroup path (from the hierarchy's root) of a systemd path: the expanded
/// slice, then the scope for `slice:prefix:name`.
pub fn cgroup_path(path: &str) -> Result<String, SystemdError> {
    let unit = unit_name(path)?;
    let slice = path.split(':').next().unwrap_or(path);
    let base = expand_slice(slice)?;
    if unit == slice {
        Ok(base)
    } else if unit.ends_with(".slice") {
        expand_slice(&unit)
    } else {
        Ok(format!("{}/{unit}", base.trim_end_matches('/')))
    }
}

/// One property value of a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// D-Bus `b`.
    Bool(bool),
    /// D-Bus `t`.
    U64(u64),
    /// D-Bus `s`.
    Str(String),
}

/// systemd's "no limit" for a `t` property.
pub const INFINITY: u64 = u64::MAX;

/// The properties that make a pod slice with `limits`, as kubelet's systemd cgroup
/// manager and runc set them: accounting on for every controller the limits use
/// (systemd then enables them down to the slice), no default dependencies, and each
/// limit (unlimited ones as infinity, so a reused slice ends up as asked).
/// `CPUWeight` is the cgroupfs driver's `cpu.weight` ([`super::shares_to_weight`]).
pub fn slice_properties(limits: &CgroupLimits, description: &str) -> Vec<(&'static str, Value)> {
    let mut out = vec![("Description", Value::Str(description.into()))];
    out.push(("DefaultDependencies", Value::Bool(false)));
    out.extend(limit_properties(limits));
    out
}

/// The limit properties alone (what an update sets on an existing unit).
pub fn limit_properties(limits: &CgroupLimits) -> Vec<(&'static str, Value)> {
    let mut out = vec![
        ("CPUAccounting", Value::Bool(true)),
        ("MemoryAccounting", Value::Bool(true)),
        ("TasksAccounting", Value::Bool(true)),
    ];
    if limits.cpu_shares > 0 {
        out.push((
            "CPUWeight",
            Value::U64(super::shares_to_weight(limits.cpu_shares)),
        ));
    }
    if limits.cpu_period > 0 {
        out.push(("CPUQuotaPeriodUSec", Value::U64(limits.cpu_period)));
    }
    out.push((
        "CPUQuotaPerSecUSec",
        Value::U64(cpu_quota_per_sec(limits.cpu_quota, limits.cpu_period)),
    ));
    out.push((
        "MemoryMax",
        Value::U64(positive_u64(limits.memory_limit).unwrap_or(INFINITY)),
    ));
    out.push((
        "TasksMax",
        Value::U64(positive_u64(limits.pids_limit).unwrap_or(INFINITY)),
    ));
    out
}

fn positive_u64(value: Option<i64>) -> Option<u64> {
    value.filter(|v| *v > 0).and_then(|v| u64::try_from(v).ok())
}

/// A CFS quota per `period` as systemd's `CPUQuotaPerSecUSec`; infinity when
/// unlimited; a `period` of 0 is the kernel's default, 100 ms. systemd keeps it to 10 ms per second (1 %), so a value between is
/// rounded up, as runc does (`libcontainer/cgroups/systemd/common.go`
/// `addCpuQuota`): the kernel then gets `per_sec * period / 1s`.
pub fn cpu_quota_per_sec(quota: Option<i64>, period: u64) -> u64 {
    let Some(quota) = positive_u64(quota) else {
        return INFINITY;
    };
    let period = if period == 0 { 100_000 } else { period };
    let per_sec = quota.saturating_mul(1_000_000) / period;
    per_sec.div_ceil(10_000).saturating_mul(10_000)
}

/// A connection to systemd's manager on the system bus.
pub struct Systemd {
    conn: Connection,
}

/// A property list as D-Bus `a(sv)`.
type DbusProps = Vec<(&'static str, Variant<Box<dyn RefArg>>)>;

fn to_dbus(props: &[(&'static str, Value)]) -> DbusProps {
    props
        .iter()
        .map(|(name, value)| {
            let arg: Box<dyn RefArg> = match value {
                Value::Bool(b) => Box::new(*b),
                Value::U64(n) => Box::new(*n),
                Value::Str(s) => Box::new(s.clone()),
            };
            (*name, Variant(arg))
        })
        .collect()
}

const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
const UNIT_EXISTS: &str = "org.freedesktop.systemd1.UnitExists";

impl Systemd {
    /// Connect to the system bus.
    pub fn connect() -> Result<Self, SystemdError> {
        Ok(Systemd {
            conn: Connection::new_system().map_err(SystemdError::Connect)?,
        })
    }

    fn call<R: dbus::arg::ReadAll, A: dbus::arg::AppendAll>(
        &self,
        call: &'static str,
        unit: &str,
        args: A,
    ) -> Result<R, SystemdError> {
        self.conn
            .with_proxy(DESTINATION, MANAGER_PATH, UNIT_TIMEOUT)
            .method_call(MANAGER, call, args)
            .map_err(|source| SystemdError::Call {
                call,
                unit: unit.into(),
                source,
            })
    }

    /// Start transient unit `unit` with `props` and wait until it is active. A unit
    /// that exists already gets the limit properties of `props` instead (a pod
    /// slice kubelet made, or a retry), as the cgroupfs driver reuses a cgroup.
    pub fn start_transient(
        &self,
        unit: &str,
        props: &[(&'static str, Value)],
    ) -> Result<(), SystemdError> {
        let aux: Vec<(&str, DbusProps)> = Vec::new();
        let started: Result<(dbus::Path<'static>,), _> = self.call(
            "StartTransientUnit",
            unit,
            (unit, "replace", to_dbus(props), aux),
        );
        match started {
            Ok(_) => {}
            Err(SystemdError::Call { source, .. }) if source.name() == Some(UNIT_EXISTS) => {
                let limits: Vec<_> = props
                    .iter()
                    .filter(|(n, _)| !matches!(*n, "Description" | "DefaultDependencies"))
                    .cloned()
                    .collect();
                self.set_properties(unit, &limits)?;
            }
            Err(e) => return Err(e),
        }
        self.wait_for(unit, "active")
    }

    /// Set `props` on unit `unit` for as long as it runs.
    pub fn set_properties(
        &self,
        unit: &str,
        props: &[(&'static str, Value)],
    ) -> Result<(), SystemdError> {
        self.call("SetUnitProperties", unit, (unit, true, to_dbus(props)))
    }

    /// Stop unit `unit` (its processes are killed, its cgroup removed) and wait
    /// until it is gone; a unit that does not exist is not an error.
    pub fn stop(&self, unit: &str) -> Result<(), SystemdError> {
        let stopped: Result<(dbus::Path<'static>,), _> =
            self.call("StopUnit", unit, (unit, "replace"));
        match stopped {
            Ok(_) => {}
            Err(SystemdError::Call { source, .. }) if source.name() == Some(NO_SUCH_UNIT) => {
                return Ok(())
            }
            Err(e) => return Err(e),
        }
        self.wait_for(unit, "inactive")
    }

    /// Unit `unit`'s ActiveState; None when systemd does not have it loaded.
    pub fn active_state(&self, unit: &str) -> Result<Option<String>, SystemdError> {
        let path: Result<(dbus::Path<'static>,), _> = self.call("GetUnit", unit, (unit,));
        let path = match path {
            Ok((p,)) => p,
            Err(SystemdError::Call { source, .. }) if source.name() == Some(NO_SUCH_UNIT) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        use dbus::blocking::stdintf::org_freedesktop_dbus::Properties;
        let state: Result<String, _> = self
            .conn
            .with_proxy(DESTINATION, path, UNIT_TIMEOUT)
            .get("org.freedesktop.systemd1.Unit", "ActiveState");
        match state {
            Ok(s) => Ok(Some(s)),
            // Unloaded between the two calls.
            Err(e) if e.name() == Some("org.freedesktop.DBus.Error.UnknownObject") => Ok(None),
            Err(source) => Err(SystemdError::Call {
                call: "Get ActiveState",
                unit: unit.into(),
                source,
            }),
        }
    }

    /// Poll until `unit` is `want` ("inactive" also when unloaded; "failed" ends a
    /// wait for "inactive" too: the unit is stopped).
    fn wait_for(&self, unit: &str, want: &'static str) -> Result<(), SystemdError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(2);
        loop {
            let state = self.active_state(unit)?;
            let done = match (want, state.as_deref()) {
                ("inactive", None | Some("inactive" | "failed")) => true,
                (want, Some(s)) => s == want,
                _ => false,
            };
            if done {
                return Ok(());
            }
            if start.elapsed() > UNIT_TIMEOUT {
                return Err(SystemdError::Timeout {
                    unit: unit.into(),
                    state: state.unwrap_or_else(|| "gone".into()),
                    want,
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }
}

/// The directory of a systemd path's cgroup on this machine's unified hierarchy.
pub fn cgroup_dir(path: &str) -> Result<PathBuf, SystemdError> {
    let relative = cgroup_path(path)?;
    Ok(Path::new(super::CGROUP_ROOT).join(relative.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_have_kubelets_names() {
        assert_eq!(
            "systemd".parse::<CgroupDriver>().unwrap(),
            CgroupDriver::Systemd
        );
        assert_eq!(
            "cgroupfs".parse::<CgroupDriver>().unwrap(),
            CgroupDriver::Cgroupfs
        );
        let e = "Systemd".parse::<CgroupDriver>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "cgroup driver \"Systemd\": must be \"cgroupfs\" or \"systemd\""
        );
        assert_eq!(CgroupDriver::default(), CgroupDriver::Cgroupfs);
        assert!(CgroupDriver::Systemd.check_with(true).is_ok());
        assert!(CgroupDriver::Cgroupfs.check_with(false).is_ok());
        let e = CgroupDriver::Systemd.check_with(false).unwrap_err();
        assert!(e.to_string().contains("/run/systemd/system"), "{e}");
    }

    #[test]
    fn systemd_paths_are_told_from_cgroupfs_ones() {
        assert!(is_systemd_path("podrun-burstable-pod1.slice"));
        assert!(is_systemd_path("podrun-pod1.slice:podrun:c1"));
        assert!(!is_systemd_path("/podrun/burstable/p1"));
        assert!(!is_systemd_path("/podrun/x.slice"));
        assert!(!is_systemd_path("relative"));
    }

    #[test]
    fn slices_expand_to_their_hierarchy() {
        assert_eq!(
            expand_slice("podrun-burstable-pod1.slice").unwrap(),
            "/podrun.slice/podrun-burstable.slice/podrun-burstable-pod1.slice"
        );
        assert_eq!(expand_slice("podrun.slice").unwrap(), "/podrun.slice");
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        for bad in [
            "podrun",
            ".slice",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            "a/b.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn container_paths_name_scopes_in_the_pod_slice() {
        let path = container_cgroups_path("podrun-besteffort-podu_1.slice", "u-1-web");
        assert_eq!(path, "podrun-besteffort-podu_1.slice:podrun:u-1-web");
        assert_eq!(unit_name(&path).unwrap(), "podrun-u-1-web.scope");
        assert_eq!(
            cgroup_path(&path).unwrap(),
            "/podrun.slice/podrun-besteffort.slice/podrun-besteffort-podu_1.slice/podrun-u-1-web.scope"
        );
        assert_eq!(unit_name("podrun-pod1.slice").unwrap(), "podrun-pod1.slice");
        assert_eq!(
            cgroup_path("podrun-pod1.slice").unwrap(),
            "/podrun.slice/podrun-pod1.slice"
        );
        assert_eq!(unit_name("system.slice::x").unwrap(), "x.scope");
        assert!(unit_name("a.slice:p:").is_err());
        assert!(unit_name("a.slice:p:x/y").is_err());
        assert!(unit_name("a:b").is_err());
        assert!(unit_name("nope:p:x").is_err());
    }

    #[test]
    fn quotas_are_per_second_rounded_up_to_one_percent() {
        assert_eq!(cpu_quota_per_sec(Some(50_000), 100_000), 500_000);
        assert_eq!(cpu_quota_per_sec(Some(1_000), 100_000), 10_000);
        assert_eq!(cpu_quota_per_sec(Some(12_345), 100_000), 130_000);
        assert_eq!(cpu_quota_per_sec(Some(150_000), 0), 1_500_000);
        assert_eq!(cpu_quota_per_sec(None, 100_000), INFINITY);
        assert_eq!(cpu_quota_per_sec(Some(0), 100_000), INFINITY);
        assert_eq!(cpu_quota_per_sec(Some(-1), 100_000), INFINITY);
    }

    #[test]
    fn slice_properties_carry_the_cgroupfs_limits() {
        let limits = CgroupLimits {
            cpu_shares: 1024,
            cpu_quota: Some(150_000),
            cpu_period: 100_000,
            memory_limit: Some(1 << 30),
            pids_limit: Some(64),
        };
        let props = slice_properties(&limits, "pod web");
        let get = |name: &str| props.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
        assert_eq!(get("Description"), Some(&Value::Str("pod web".into())));
        assert_eq!(get("DefaultDependencies"), Some(&Value::Bool(false)));
        assert_eq!(get("MemoryAccounting"), Some(&Value::Bool(true)));
        // The same cpu.weight as the cgroupfs driver writes (v2_settings: 39).
        assert_eq!(get("CPUWeight"), Some(&Value::U64(39)));
        assert_eq!(get("CPUQuotaPeriodUSec"), Some(&Value::U64(100_000)));
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(&Value::U64(1_500_000)));
        assert_eq!(get("MemoryMax"), Some(&Value::U64(1 << 30)));
        assert_eq!(get("TasksMax"), Some(&Value::U64(64)));

        let props = limit_properties(&CgroupLimits::default());
        let get = |name: &str| props.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
        assert_eq!(get("CPUWeight"), None, "unset shares leave the weight");
        assert_eq!(get("CPUQuotaPeriodUSec"), None);
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(&Value::U64(INFINITY)));
        assert_eq!(get("MemoryMax"), Some(&Value::U64(INFINITY)));
        assert_eq!(get("TasksMax"), Some(&Value::U64(INFINITY)));
        assert_eq!(get("Description"), None);
    }
}
