//! podrun's own configuration (`/etc/podrun/podrun.toml`, `--config`): the
//! OCI runtime of each RuntimeClass handler, as containerd's
//! `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.<handler>]`.
//!
//! ```toml
//! default_runtime = "embedded"        # for pods without runtimeClassName
//! container_log_max_size = "10Mi"     # kubelet's containerLogMaxSize (also spelt so)
//! container_log_max_files = 5         # kubelet's containerLogMaxFiles, at least 2
//! [runtimes.fast]                     # runtimeClassName: fast
//! path = "/usr/bin/crun"
//! [runtimes.compat]
//! path = "runc"                       # a name on PATH
//!
//! cgroup_driver = "cgroupfs"          # or "systemd" (kubelet's cgroupDriver; also
//!                                     # spelt cgroupDriver): must match kubelet's
//! image_gc_high_threshold_percent = 85  # kubelet's image garbage collection (also
//! image_gc_low_threshold_percent = 80   # spelt imageGCHighThresholdPercent,
//! image_minimum_gc_age = "2m"           # imageGCLowThresholdPercent, imageMinimumGCAge,
//! image_maximum_gc_age = "0s"           # imageMaximumGCAge), with its defaults
//!
//! [eviction_hard]                     # kubelet's evictionHard (also spelt so); these
//! "memory.available" = "100Mi"        # are its defaults, used without the table; a
//! "nodefs.available" = "10%"          # table replaces them all, as kubelet's does
//! "nodefs.inodesFree" = "5%"          # (imagefs.inodesFree may be set too)
//! "imagefs.available" = "15%"
//!
//! [network]                           # every key optional; these are the defaults
//! cni_conf_dir = "/etc/cni/net.d"     # a config here: pods join that CNI network
//! cni_bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
//! cni_cache_dir = "<root>/cni"        # libcni's result cache (DEL after a restart)
//! bridge = "podrun0"                  # otherwise: the built-in default network
//! subnet = "10.88.0.0/16"
//! subnet6 = "fd00:88::/64"            # none by default; set: dual stack
//! ```
//!
//! The two container log keys are kubelet's, with its defaults: each
//! container's log is rotated when it would pass the size, and as many files
//! are kept, the live one included, all but the two newest gzip-compressed.
//! The monitor rotates the logs of podrun's own pods (`podrun run`, `podrun
//! apply`); under the CRI (`podrun serve --cri`) kubelet rotates them with
//! its own settings, and these keys do not apply.
//!
//! Without a file, or for a handler it does not list, the handlers `embedded`,
//! `crun`, `runc` and `youki` name those runtimes.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why podrun's configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// read {path}: {source}
    #[error("read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// {path}: {message} (not TOML, or an unknown key)
    #[error("{}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML reader said.
        message: String,
    },
    /// {path}: runtimes.{name}.path is empty
    #[error("{}: runtimes.{name}.path is empty", .path.display())]
    EmptyPath {
        /// The file.
        path: PathBuf,
        /// The handler.
        name: String,
    },
    /// {path}: cgroup_driver: the driver's error
    #[error("{}: cgroup_driver: {source}", .path.display())]
    CgroupDriver {
        /// The file.
        path: PathBuf,
        /// Why the value cannot be used.
        source: podrun_runtime::cgroups::SystemdError,
    },
    /// {path}: network.{key} {value:?}: {reason}
    #[error("{}: network.{key} {value:?}: {reason}", .path.display())]
    Network {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// {path}: {key} {value:?}: {reason}
    #[error("{}: {key} {value:?}: {reason}", .path.display())]
    ContainerLogs {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// {path}: eviction_hard: {reason}
    #[error("{}: eviction_hard: {reason}", .path.display())]
    EvictionHard {
        /// The file.
        path: PathBuf,
        /// kubelet's words for what is wrong.
        reason: String,
    },
    /// runtimeClassName {class}: no such handler (known: …)
    #[error("runtimeClassName {class}: no such handler (known: {})", .known.join(", "))]
    UnknownHandler {
        /// The pod's runtimeClassName.
        class: String,
        /// The handlers there are.
        known: Vec<String>,
    },
    /// {path}: the image garbage collection keys, every problem at once
    #[error("{}: {}", .path.display(), .problems.join("; "))]
    ImageGc {
        /// The file.
        path: PathBuf,
        /// kubelet's validation messages (and ours for what it parses).
        problems: Vec<String>,
    },
}

/// Where podrun reads its configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/podrun/podrun.toml";

/// The file's contents.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The runtime of pods without runtimeClassName (`--runtime` wins).
    pub default_runtime: Option<String>,
    /// Handlers by name.
    #[serde(default)]
    pub runtimes: BTreeMap<String, Handler>,
    /// The pod network.
    #[serde(default)]
    pub network: Network,
    /// kubelet's `cgroupDriver`: `cgroupfs` (the default) or `systemd`
    /// (checked by [`Config::cgroup_driver`]).
    #[serde(alias = "cgroupDriver")]
    pub cgroup_driver: Option<String>,
    /// kubelet's `containerLogMaxSize` (a quantity: `10Mi`), checked by
    /// [`Config::log_rotation`].
    #[serde(alias = "containerLogMaxSize")]
    pub container_log_max_size: Option<String>,
    /// kubelet's `containerLogMaxFiles`.
    #[serde(alias = "containerLogMaxFiles")]
    pub container_log_max_files: Option<u32>,
    /// kubelet's `evictionHard` (`"memory.available" = "100Mi"`,
    /// `"nodefs.available" = "10%"`, …), checked by [`Config::eviction_hard`].
    #[serde(alias = "evictionHard")]
    pub eviction_hard: Option<BTreeMap<String, String>>,
    /// kubelet's `imageGCHighThresholdPercent` (checked by [`Config::image_gc`]).
    #[serde(alias = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<i64>,
    /// kubelet's `imageGCLowThresholdPercent`.
    #[serde(alias = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<i64>,
    /// kubelet's `imageMinimumGCAge` (a Go duration: `2m`).
    #[serde(alias = "imageMinimumGCAge")]
    pub image_minimum_gc_age: Option<String>,
    /// kubelet's `imageMaximumGCAge` (`0s`: off).
    #[serde(alias = "imageMaximumGCAge")]
    pub image_maximum_gc_age: Option<String>,
}

/// kubelet's image garbage collection settings, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGc {
    /// Usage (percent of the image file system) at which images are collected.
    pub high_threshold_percent: u64,
    /// Usage the collection frees down to.
    pub low_threshold_percent: u64,
    /// The ages that protect or condemn an image.
    pub policy: podrun_runtime::image_gc::Policy,
}

impl Default for ImageGc {
    /// kubelet's defaults (pkg/kubelet/apis/config/v1beta1/defaults.go):
    /// 85 %, 80 %, 2 minutes, no maximum age.
    fn default() -> Self {
        ImageGc {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            policy: podrun_runtime::image_gc::Policy {
                min_age: std::time::Duration::from_secs(120),
                max_age: None,
            },
        }
    }
}

/// A Go duration of the configuration (`2m`, `1h30m`, `0`), as kubelet's
/// `metav1.Duration` reads it; a negative one is `Err("negative")`.
fn config_duration(text: &str) -> Result<std::time::Duration, String> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let d = if rest == "0" {
        Some(std::time::Duration::ZERO)
    } else {
        podrun_kubelet::backoff::parse_go_duration(rest)
    };
    match d {
        Some(d) if negative && !d.is_zero() => Err("negative".into()),
        Some(d) => Ok(d),
        None => Err(format!("invalid duration {text:?}")),
    }
}

/// The `[network]` table: where CNI's config and plugins are, and the
/// default network's bridge and subnets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// CNI's config directory.
    pub cni_conf_dir: Option<PathBuf>,
    /// CNI's plugin directories, in search order.
    pub cni_bin_dirs: Option<Vec<PathBuf>>,
    /// CNI's result cache.
    pub cni_cache_dir: Option<PathBuf>,
    /// The default network's bridge.
    pub bridge: Option<String>,
    /// The default network's IPv4 subnet.
    pub subnet: Option<String>,
    /// The default network's IPv6 subnet (dual stack).
    pub subnet6: Option<String>,
}

/// One RuntimeClass handler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handler {
    /// `embedded`, or an OCI runtime binary (crun, runc, youki): a name on
    /// PATH or an absolute path.
    pub path: String,
}

const BUILT_IN: [&str; 4] = ["embedded", "crun", "runc", "youki"];

impl Config {
    /// Read `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Config, ConfigFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigFileError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        let config: Config = toml::from_str(&text).map_err(|e| ConfigFileError::Parse {
            path: path.into(),
            message: e.to_string().trim().into(),
        })?;
        for (name, h) in &config.runtimes {
            if h.path.is_empty() {
                return Err(ConfigFileError::EmptyPath {
                    path: path.into(),
                    name: name.clone(),
                });
            }
        }
        Ok(config)
    }

    /// The cgroup driver the file names (cgroupfs when it names none), checked
    /// against this machine: `systemd` needs systemd as PID 1. `path` names the
    /// file in errors.
    pub fn cgroup_driver(
        &self,
        path: &Path,
    ) -> Result<podrun_runtime::cgroups::CgroupDriver, ConfigFileError> {
        self.cgroup_driver_with(path, podrun_runtime::cgroups::CgroupDriver::check)
    }

    /// [`Config::cgroup_driver`] with the machine's check given.
    pub fn cgroup_driver_with(
        &self,
        path: &Path,
        check: impl FnOnce(
            podrun_runtime::cgroups::CgroupDriver,
        ) -> Result<(), podrun_runtime::cgroups::SystemdError>,
    ) -> Result<podrun_runtime::cgroups::CgroupDriver, ConfigFileError> {
        let bad = |source| ConfigFileError::CgroupDriver {
            path: path.into(),
            source,
        };
        let driver = match &self.cgroup_driver {
            None => Default::default(),
            Some(value) => value.parse().map_err(bad)?,
        };
        check(driver).map_err(bad)?;
        Ok(driver)
    }

    /// The runtime's network config: the file's `[network]` over the
    /// defaults of [`podrun_runtime::NetworkConfig::new`] (state under `root`).
    /// `path` names the file in errors.
    pub fn network_config(
        &self,
        path: &Path,
        root: &Path,
    ) -> Result<podrun_runtime::NetworkConfig, ConfigFileError> {
        let mut config = podrun_runtime::NetworkConfig::new(root);
        let n = &self.network;
        if let Some(dir) = &n.cni_conf_dir {
            config.cni.conf_dir = dir.clone();
        }
        if let Some(dirs) = &n.cni_bin_dirs {
            config.cni.bin_dirs = dirs.clone();
        }
        if let Some(dir) = &n.cni_cache_dir {
            config.cni.cache_dir = dir.clone();
        }
        if let Some(bridge) = &n.bridge {
            config.default.bridge = bridge.clone();
        }
        let bad = |key: &'static str, value: &str, reason: String| ConfigFileError::Network {
            path: path.into(),
            key,
            value: value.into(),
            reason,
        };
        if let Some(subnet) = &n.subnet {
            config.default.subnet =
                subnet
                    .parse()
                    .map_err(|e: podrun_net::bridge::SubnetError| {
                        bad("subnet", subnet, e.to_string())
                    })?;
            if !config.default.subnet.network().is_ipv4() {
                return Err(bad("subnet", subnet, "not IPv4 (use subnet6)".into()));
            }
        }
        if let Some(subnet6) = &n.subnet6 {
            let six: podrun_net::bridge::Subnet =
                subnet6
                    .parse()
                    .map_err(|e: podrun_net::bridge::SubnetError| {
                        bad("subnet6", subnet6, e.to_string())
                    })?;
            if six.network().is_ipv4() {
                return Err(bad("subnet6", subnet6, "not IPv6".into()));
            }
            config.default.subnet6 = Some(six);
        }
        let bridge = &config.default.bridge;
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            return Err(bad(
                "bridge",
                bridge,
                "not an interface name (1 to 15 bytes, no '/' or space)".into(),
            ));
        }
        Ok(config)
    }

    /// How the logs of podrun's own pods are rotated: the file's
    /// `container_log_max_size` and `container_log_max_files` over kubelet's
    /// defaults (10Mi, 5). `path` names the file in errors.
    pub fn log_rotation(
        &self,
        path: &Path,
    ) -> Result<podrun_runtime::LogRotation, ConfigFileError> {
        let mut r = podrun_runtime::LogRotation::default();
        let bad = |key: &'static str, value: String, reason: &str| ConfigFileError::ContainerLogs {
            path: path.into(),
            key,
            value,
            reason: reason.into(),
        };
        if let Some(size) = &self.container_log_max_size {
            let key = "container_log_max_size";
            let q = podrun_spec::parse_quantity(size)
                .map_err(|e| bad(key, size.clone(), &e.to_string()))?;
            let bytes = q.value();
            if !q.is_integer() || bytes <= 0 || bytes > i128::from(u64::MAX) {
                return Err(bad(key, size.clone(), "must be a positive number of bytes"));
            }
            r.max_size = bytes as u64;
        }
        if let Some(files) = self.container_log_max_files {
            if files < 2 {
                let reason = "must be at least 2 (the live file and one rotated)";
                return Err(bad("container_log_max_files", files.to_string(), reason));
            }
            r.max_files = files;
        }
        Ok(r)
    }

    /// The hard eviction thresholds: `eviction_hard`'s, or kubelet's
    /// defaults without it (a configured table replaces them all, as
    /// kubelet's `evictionHard` does). `path` names the file in errors.
    pub fn eviction_hard(
        &self,
        path: &Path,
    ) -> Result<Vec<podrun_kubelet::eviction::Threshold>, ConfigFileError> {
        let Some(table) = &self.eviction_hard else {
            return Ok(podrun_kubelet::eviction::default_hard());
        };
        let entries: Vec<(String, String)> =
            table.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let bytes = |v: &str| -> Result<u64, String> {
            let q = podrun_spec::parse_quantity(v).map_err(|e| e.to_string())?;
            u64::try_from(q.value())
                .ok()
                .filter(|_| q.is_integer())
                .ok_or_else(|| "must be a whole number of bytes or inodes".to_string())
        };
        podrun_kubelet::eviction::parse_hard(&entries, bytes).map_err(|reason| {
            ConfigFileError::EvictionHard {
                path: path.into(),
                reason,
            }
        })
    }

    /// kubelet's image garbage collection settings: the file's four keys
    /// over kubelet's defaults, checked as kubelet's configuration
    /// validation checks them (pkg/kubelet/apis/config/validation/
    /// validation.go), every problem reported at once. `path` names the file
    /// in errors.
    pub fn image_gc(&self, path: &Path) -> Result<ImageGc, ConfigFileError> {
        use podrun_kubelet::backoff::go_duration;
        let mut gc = ImageGc::default();
        let mut problems = Vec::new();
        let high = self
            .image_gc_high_threshold_percent
            .unwrap_or(gc.high_threshold_percent as i64);
        let low = self
            .image_gc_low_threshold_percent
            .unwrap_or(gc.low_threshold_percent as i64);
        if !(0..=100).contains(&high) {
            problems.push(format!("invalid configuration: imageGCHighThresholdPercent (--image-gc-high-threshold) {high} must be between 0 and 100, inclusive"));
        }
        if !(0..=100).contains(&low) {
            problems.push(format!("invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) {low} must be between 0 and 100, inclusive"));
        }
        if low >= high {
            problems.push(format!("invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) {low} must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) {high}"));
        }
        let mut age = |key: &str, value: &Option<String>, default: std::time::Duration| match value
        {
            None => default,
            Some(text) => match config_duration(text) {
                Ok(d) => d,
                Err(e) if e == "negative" => {
                    problems.push(format!(
                        "invalid configuration: {key} {text} must not be negative"
                    ));
                    default
                }
                Err(e) => {
                    problems.push(format!("{key} {text:?}: {e}"));
                    default
                }
            },
        };
        let min_age = age(
            "imageMinimumGCAge",
            &self.image_minimum_gc_age,
            gc.policy.min_age,
        );
        let max_age = age(
            "imageMaximumGCAge",
            &self.image_maximum_gc_age,
            std::time::Duration::ZERO,
        );
        if !max_age.is_zero() && max_age <= min_age {
            problems.push(format!(
                "invalid configuration: imageMaximumGCAge {} must be greater than imageMinimumGCAge {}",
                go_duration(max_age),
                go_duration(min_age)
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigFileError::ImageGc {
                path: path.into(),
                problems,
            });
        }
        gc.high_threshold_percent = high as u64;
        gc.low_threshold_percent = low as u64;
        gc.policy.min_age = min_age;
        gc.policy.max_age = (!max_age.is_zero()).then_some(max_age);
        Ok(gc)
    }

    /// The runtime for a pod with RuntimeClass handler `class` (none: the
    /// default, `flag` when given on the command line).
    pub fn runtime_for(
        &self,
        class: Option<&str>,
        flag: Option<&str>,
    ) -> Result<String, ConfigFileError> {
        match class.filter(|c| !c.is_empty()) {
            None => Ok(flag
                .or(self.default_runtime.as_deref())
                .unwrap_or("embedded")
                .to_string()),
            Some(c) => match self.runtimes.get(c) {
                Some(h) => Ok(h.path.clone()),
                None if BUILT_IN.contains(&c) => Ok(c.to_string()),
                None => {
                    let mut known: Vec<String> = self.runtimes.keys().cloned().collect();
                    known.extend(BUILT_IN.map(String::from));
                    Err(ConfigFileError::UnknownHandler {
                        class: c.into(),
                        known,
                    })
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn handlers_map_to_runtimes() {
        let c = config(
            "default_runtime = \"crun\"\n[runtimes.fast]\npath = \"/usr/bin/crun\"\n[runtimes.runc]\npath = \"/opt/runc\"\n",
        );
        assert_eq!(c.runtime_for(None, None).unwrap(), "crun");
        assert_eq!(c.runtime_for(None, Some("runc")).unwrap(), "runc");
        assert_eq!(c.runtime_for(Some("fast"), None).unwrap(), "/usr/bin/crun");
        // A configured handler wins over the built-in name.
        assert_eq!(c.runtime_for(Some("runc"), None).unwrap(), "/opt/runc");
        assert_eq!(c.runtime_for(Some("youki"), None).unwrap(), "youki");
        assert_eq!(
            c.runtime_for(Some("gvisor"), None).unwrap_err().to_string(),
            "runtimeClassName gvisor: no such handler (known: fast, runc, embedded, crun, runc, youki)"
        );
        assert_eq!(
            Config::default().runtime_for(None, None).unwrap(),
            "embedded"
        );
    }

    #[test]
    fn the_network_table_overrides_the_defaults() {
        let root = Path::new("/var/lib/podrun");
        let f = Path::new("/etc/podrun/podrun.toml");
        let c = Config::default().network_config(f, root).unwrap();
        assert_eq!(c.cni.conf_dir, Path::new("/etc/cni/net.d"));
        assert_eq!(c.cni.cache_dir, Path::new("/var/lib/podrun/cni"));
        assert_eq!(c.default.bridge, "podrun0");
        assert_eq!(c.default.subnet.to_string(), "10.88.0.0/16");
        assert_eq!(c.default.state_dir, Path::new("/var/lib/podrun/network"));
        let c = config(
            "[network]\ncni_conf_dir = \"/tmp/cni\"\nbridge = \"br9\"\nsubnet = \"10.9.0.0/24\"\nsubnet6 = \"fd00:9::/64\"\n",
        )
        .network_config(f, root)
        .unwrap();
        assert_eq!(c.cni.conf_dir, Path::new("/tmp/cni"));
        assert_eq!(c.default.bridge, "br9");
        assert_eq!(c.default.subnet.to_string(), "10.9.0.0/24");
        assert_eq!(c.default.subnet6.unwrap().to_string(), "fd00:9::/64");
        let e = config("[network]\nsubnet = \"fd00::/64\"\n")
            .network_config(f, root)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/etc/podrun/podrun.toml: network.subnet \"fd00::/64\": not IPv4 (use subnet6)"
        );
        let e = config("[network]\nbridge = \"a-very-long-bridge\"\n")
            .network_config(f, root)
            .unwrap_err()
            .to_string();
        assert!(e.contains("network.bridge"), "{e}");
    }

    #[test]
    fn the_cgroup_driver_is_kubelets_and_checked() {
        use podrun_runtime::cgroups::{CgroupDriver, SystemdError};
        let f = Path::new("/etc/podrun/podrun.toml");
        let booted = |_| Ok(());
        assert_eq!(
            config("").cgroup_driver_with(f, booted).unwrap(),
            CgroupDriver::Cgroupfs
        );
        assert_eq!(
            config("cgroup_driver = \"systemd\"\n")
                .cgroup_driver_with(f, booted)
                .unwrap(),
            CgroupDriver::Systemd
        );
        assert_eq!(
            config("cgroupDriver = \"cgroupfs\"\n")
                .cgroup_driver_with(f, booted)
                .unwrap(),
            CgroupDriver::Cgroupfs
        );
        let e = config("cgroup_driver = \"cgroups\"\n")
            .cgroup_driver_with(f, booted)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/etc/podrun/podrun.toml: cgroup_driver: cgroup driver \"cgroups\": must be \"cgroupfs\" or \"systemd\""
        );
        let not_booted = |d: CgroupDriver| d.check_with(false);
        let e = config("cgroup_driver = \"systemd\"\n")
            .cgroup_driver_with(f, not_booted)
            .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigFileError::CgroupDriver {
                    source: SystemdError::NotBooted,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("systemd is not running as PID 1"),
            "{e}"
        );
        assert!(config("").cgroup_driver_with(f, not_booted).is_ok());
    }

    #[test]
    fn container_logs_rotate_by_kubelets_keys_and_defaults() {
        let f = Path::new("/etc/podrun/podrun.toml");
        let r = config("").log_rotation(f).unwrap();
        assert_eq!((r.max_size, r.max_files), (10 << 20, 5));
        let r = config("container_log_max_size = \"64Ki\"\ncontainerLogMaxFiles = 3\n")
            .log_rotation(f)
            .unwrap();
        assert_eq!((r.max_size, r.max_files), (64 << 10, 3));
        let e = config("container_log_max_files = 1\n")
            .log_rotation(f)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/podrun/podrun.toml: container_log_max_files \"1\": must be at least 2 (the live file and one rotated)"
        );
        let e = config("container_log_max_size = \"0\"\n")
            .log_rotation(f)
            .unwrap_err();
        assert!(
            e.to_string().contains("container_log_max_size \"0\""),
            "{e}"
        );
        assert!(config("container_log_max_size = \"ten\"\n")
            .log_rotation(f)
            .is_err());
    }

    #[test]
    fn image_gc_takes_kubelets_keys_defaults_and_validation() {
        use std::time::Duration;
        let f = Path::new("/etc/podrun/podrun.toml");
        assert_eq!(config("").image_gc(f).unwrap(), ImageGc::default());
        let gc = config(
            "imageGCHighThresholdPercent = 90\nimage_gc_low_threshold_percent = 50\nimageMinimumGCAge = \"30s\"\nimage_maximum_gc_age = \"1h30m\"\n",
        )
        .image_gc(f)
        .unwrap();
        assert_eq!(
            (gc.high_threshold_percent, gc.low_threshold_percent),
            (90, 50)
        );
        assert_eq!(gc.policy.min_age, Duration::from_secs(30));
        assert_eq!(gc.policy.max_age, Some(Duration::from_secs(5400)));
        let gc = config("image_maximum_gc_age = \"0s\"\nimage_minimum_gc_age = \"0\"\n")
            .image_gc(f)
            .unwrap();
        assert_eq!(gc.policy.max_age, None);
        assert_eq!(gc.policy.min_age, Duration::ZERO);
        let e = config(
            "image_gc_high_threshold_percent = 101\nimage_gc_low_threshold_percent = 101\nimage_maximum_gc_age = \"1m\"\n",
        )
        .image_gc(f)
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/podrun/podrun.toml: invalid configuration: imageGCHighThresholdPercent (--image-gc-high-threshold) 101 must be between 0 and 100, inclusive; \
             invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) 101 must be between 0 and 100, inclusive; \
             invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) 101 must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) 101; \
             invalid configuration: imageMaximumGCAge 1m0s must be greater than imageMinimumGCAge 2m0s"
        );
        let e = config("image_maximum_gc_age = \"-1s\"\nimage_minimum_gc_age = \"soon\"\n")
            .image_gc(f)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invalid configuration: imageMaximumGCAge -1s must not be negative")
                && e.contains("imageMinimumGCAge \"soon\": invalid duration \"soon\""),
            "{e}"
        );
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("podrun.toml");
        std::fs::write(&f, "[runtimes.x]\npaht = \"crun\"\n").unwrap();
        let e = Config::load(&f).unwrap_err().to_string();
        assert!(e.contains("podrun.toml") && e.contains("paht"), "{e}");
        assert!(Config::load(&dir.path().join("absent.toml")).is_ok());
    }
}
