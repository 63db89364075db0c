//! podrun's own configuration (`/etc/podrun/podrun.toml`, `--config`): the
//! OCI runtime of each RuntimeClass handler, as containerd's
//! `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.<handler>]`.
//!
//! ```toml
//! default_runtime = "embedded"        # for pods without runtimeClassName
//! [runtimes.fast]                     # runtimeClassName: fast
//! path = "/usr/bin/crun"
//! [runtimes.compat]
//! path = "runc"                       # a name on PATH
//! ```
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
    /// runtimeClassName {class}: no such handler (known: …)
    #[error("runtimeClassName {class}: no such handler (known: {})", .known.join(", "))]
    UnknownHandler {
        /// The pod's runtimeClassName.
        class: String,
        /// The handlers there are.
        known: Vec<String>,
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
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("podrun.toml");
        std::fs::write(&f, "[runtimes.x]\npaht = \"crun\"\n").unwrap();
        let e = Config::load(&f).unwrap_err().to_string();
        assert!(e.contains("podrun.toml") && e.contains("paht"), "{e}");
        assert!(Config::load(&dir.path().join("absent.toml")).is_ok());
    }
}
