//! Network configuration lists: which file in the config directory is the
//! network, and what its plugins are, as libcni and go-cni read them.
//!
//! go-cni (`loadFromConfDir`) takes the files ending in `.conf`, `.conflist` or
//! `.json`, sorted by name, and uses the first; a `.conflist` is a list, any
//! other file is one plugin's config wrapped into a list of one (libcni
//! `ConfListFromConf`). A bad first file is an error, not skipped.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Why a network configuration could not be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// The directory could not be listed.
    #[error("read CNI config directory {}: {source}", dir.display())]
    Dir {
        /// The config directory.
        dir: PathBuf,
        /// What `readdir` said.
        source: io::Error,
    },
    /// The directory holds no config file.
    #[error("no network config found in {} (no *.conflist, *.conf or *.json file)", dir.display())]
    NoConfig {
        /// The config directory.
        dir: PathBuf,
    },
    /// A config file could not be read.
    #[error("read CNI config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What `read` said.
        source: io::Error,
    },
    /// A config file is not JSON.
    #[error("CNI config {}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's complaint (with line and column).
        source: serde_json::Error,
    },
    /// A config file is JSON but not a valid network config.
    #[error("CNI config {}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the field's name.
        reason: String,
    },
}

/// One plugin of a list: its `type`, the capabilities it asks for, and its
/// config object as written (everything the runtime does not interpret).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    /// `type`: the plugin binary's name.
    pub kind: String,
    /// `name`, if the plugin object has one (libcni shows it in errors).
    pub name: Option<String>,
    /// The capabilities set to `true` in its `capabilities` map.
    pub capabilities: BTreeSet<String>,
    /// The plugin object.
    pub raw: Map<String, Value>,
}

impl PluginConf {
    /// `type="bridge"`, or `type="bridge" name="x"`: how libcni names a
    /// plugin in errors (libcni `pluginDescription`).
    pub fn description(&self) -> String {
        match &self.name {
            Some(name) => format!("type={:?} name={:?}", self.kind, name),
            None => format!("type={:?}", self.kind),
        }
    }
}

/// A network: a config list with at least one plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    /// `name`.
    pub name: String,
    /// The CNI version every plugin is run with (`cniVersion`, or the highest
    /// of `cniVersions` this client speaks).
    pub cni_version: String,
    /// `disableCheck`: CHECK is a no-op.
    pub disable_check: bool,
    /// `disableGC`: GC is a no-op.
    pub disable_gc: bool,
    /// The plugins, in ADD order.
    pub plugins: Vec<PluginConf>,
    /// The list as JSON (for a wrapped single config, the generated list):
    /// what the result cache keeps.
    pub bytes: Vec<u8>,
    /// Where it was read from.
    pub source: PathBuf,
}

/// The CNI versions this client speaks (it parses their results).
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// `major.minor.patch` as numbers; `None` if `v` is not a version.
pub fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// Whether version `v` is at least `min` (an unparsable `v` is not).
pub fn version_at_least(v: &str, min: &str) -> bool {
    match (parse_version(v), parse_version(min)) {
        (Some(v), Some(min)) => v >= min,
        _ => false,
    }
}

/// The config files of `dir`, in the order go-cni tries them.
pub fn conf_files(dir: &Path) -> Result<Vec<PathBuf>, ConfError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ConfError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let wanted = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("conf" | "conflist" | "json")
        );
        // A directory named like a config is not one (libcni `ConfFiles`).
        if wanted && !entry.file_type().is_ok_and(|t| t.is_dir()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The network of `dir`: its lexically first config file.
pub fn load_dir(dir: &Path) -> Result<NetworkList, ConfError> {
    let first = conf_files(dir)?
        .into_iter()
        .next()
        .ok_or_else(|| ConfError::NoConfig {
            dir: dir.to_path_buf(),
        })?;
    load_file(&first)
}

/// The network of one file: a list if it ends in `.conflist`, otherwise one
/// plugin's config wrapped into a list.
pub fn load_file(path: &Path) -> Result<NetworkList, ConfError> {
    let bytes = std::fs::read(path).map_err(|source| ConfError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if path.extension().is_some_and(|e| e == "conflist") {
        list_from_bytes(&bytes, path)
    } else {
        single_from_bytes(&bytes, path)
    }
}

fn object(bytes: &[u8], path: &Path) -> Result<Map<String, Value>, ConfError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid(path, "not a JSON object".into())),
        Err(source) => Err(ConfError::Json {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn invalid(path: &Path, reason: String) -> ConfError {
    ConfError::Invalid {
        path: path.to_path_buf(),
        reason,
    }
}

/// A string field that must be there and not be empty.
fn required_str(
    map: &Map<String, Value>,
    key: &str,
    path: &Path,
    at: &str,
) -> Result<String, ConfError> {
    match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(invalid(path, format!("missing {at}{key}")))
        }
        Some(other) => Err(invalid(
            path,
            format!("{at}{key}: expected a string, got {other}"),
        )),
    }
}

fn optional_bool(map: &Map<String, Value>, key: &str, path: &Path) -> Result<bool, ConfError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(invalid(
            path,
            format!("{key}: expected a boolean, got {other}"),
        )),
    }
}

/// The version a list runs with: the highest of `cniVersions` this client
/// speaks (CNI 1.1), else `cniVersion`.
fn list_version(map: &Map<String, Value>, path: &Path) -> Result<String, ConfError> {
    if let Some(versions) = map.get("cniVersions") {
        let Value::Array(versions) = versions else {
            return Err(invalid(
                path,
                "cniVersions: expected an array of strings".into(),
            ));
        };
        let best = versions
            .iter()
            .filter_map(Value::as_str)
            .filter(|v| SUPPORTED_VERSIONS.contains(v))
            .max_by_key(|v| parse_version(v));
        if let Some(best) = best {
            return Ok(best.to_string());
        }
        if !map.contains_key("cniVersion") {
            return Err(invalid(
                path,
                format!("cniVersions: none of {versions:?} is a version this runtime speaks ({SUPPORTED_VERSIONS:?})"),
            ));
        }
    }
    let version = required_str(map, "cniVersion", path, "")?;
    if parse_version(&version).is_none() {
        return Err(invalid(
            path,
            format!("cniVersion {version:?} is not a version (major.minor.patch)"),
        ));
    }
    Ok(version)
}

/// libcni `ValidateNetworkName`: the name goes into cache file names.
fn check_network_name(name: &str, path: &Path) -> Result<(), ConfError> {
    if is_cni_id(name) {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("name {name:?}: must start with a letter or digit and hold only letters, digits, '_', '.' and '-'"),
        ))
    }
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, libcni's rule for network names and
/// container IDs (pkg/utils/utils.go).
pub fn is_cni_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn plugin(raw: Map<String, Value>, path: &Path, at: &str) -> Result<PluginConf, ConfError> {
    let kind = required_str(&raw, "type", path, at)?;
    // libcni `FindInPath` refuses a type with a path separator: a config
    // must not run an arbitrary binary.
    if kind.contains('/') || kind == "." || kind == ".." {
        return Err(invalid(
            path,
            format!("{at}type {kind:?}: must be a file name, not a path"),
        ));
    }
    let name = match raw.get("name") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let capabilities = match raw.get("capabilities") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(Value::Object(caps)) => caps
            .iter()
            .filter(|(_, on)| on.as_bool() == Some(true))
            .map(|(cap, _)| cap.clone())
            .collect(),
        Some(other) => {
            return Err(invalid(
                path,
                format!("{at}capabilities: expected an object, got {other}"),
            ));
        }
    };
    Ok(PluginConf {
        kind,
        name,
        capabilities,
        raw,
    })
}

/// A `.conflist`'s contents. `path` names it in errors.
pub fn list_from_bytes(bytes: &[u8], path: &Path) -> Result<NetworkList, ConfError> {
    let map = object(bytes, path)?;
    let cni_version = list_version(&map, path)?;
    let name = required_str(&map, "name", path, "")?;
    check_network_name(&name, path)?;
    let plugins = match map.get("plugins") {
        Some(Value::Array(plugins)) if !plugins.is_empty() => plugins,
        Some(Value::Array(_)) => return Err(invalid(path, "plugins: the list is empty".into())),
        None | Some(Value::Null) => return Err(invalid(path, "missing plugins".into())),
        Some(other) => {
            return Err(invalid(
                path,
                format!("plugins: expected an array, got {other}"),
            ))
        }
    };
    let plugins = plugins
        .iter()
        .enumerate()
        .map(|(i, p)| match p {
            Value::Object(raw) => plugin(raw.clone(), path, &format!("plugins[{i}].")),
            other => Err(invalid(
                path,
                format!("plugins[{i}]: expected an object, got {other}"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NetworkList {
        name,
        cni_version,
        disable_check: optional_bool(&map, "disableCheck", path)?,
        disable_gc: optional_bool(&map, "disableGC", path)?,
        plugins,
        bytes: bytes.to_vec(),
        source: path.to_path_buf(),
    })
}

/// A single plugin's config (`.conf`, `.json`), wrapped into a list of one as
/// libcni's `ConfListFromConf` does.
pub fn single_from_bytes(bytes: &[u8], path: &Path) -> Result<NetworkList, ConfError> {
    let map = object(bytes, path)?;
    if !map.contains_key("type") && map.contains_key("plugins") {
        return Err(invalid(
            path,
            "missing type (this is a config list: name the file *.conflist)".into(),
        ));
    }
    let cni_version = required_str(&map, "cniVersion", path, "")?;
    let name = required_str(&map, "name", path, "")?;
    required_str(&map, "type", path, "")?;
    let mut list = Map::new();
    list.insert("cniVersion".into(), Value::String(cni_version));
    list.insert("name".into(), Value::String(name));
    list.insert("plugins".into(), Value::Array(vec![Value::Object(map)]));
    let bytes = serde_json::to_vec(&Value::Object(list)).expect("a JSON value serializes");
    list_from_bytes(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"net1","plugins":[
        {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local"}},
        {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#;

    #[test]
    fn the_lexically_first_config_file_is_the_network() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "20-b.conflist", &LIST.replace("net1", "second"));
        write(dir.path(), "10-a.conflist", LIST);
        write(dir.path(), "00-ignored.txt", "not json");
        std::fs::create_dir(dir.path().join("05-dir.conf")).unwrap();
        let list = load_dir(dir.path()).unwrap();
        assert_eq!(list.name, "net1");
        assert_eq!(list.cni_version, "1.0.0");
        assert_eq!(list.source, dir.path().join("10-a.conflist"));
        assert_eq!(list.plugins.len(), 2);
        assert_eq!(list.plugins[0].kind, "bridge");
        assert_eq!(list.plugins[1].description(), r#"type="portmap""#);
        assert_eq!(
            list.plugins[1].capabilities,
            BTreeSet::from(["portMappings".to_string()])
        );
    }

    #[test]
    fn a_single_conf_is_wrapped_into_a_list() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "10-one.conf",
            r#"{"cniVersion":"0.4.0","name":"one","type":"bridge","ipam":{}}"#,
        );
        let list = load_dir(dir.path()).unwrap();
        assert_eq!(
            (list.name.as_str(), list.cni_version.as_str()),
            ("one", "0.4.0")
        );
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0].kind, "bridge");
        assert_eq!(list.plugins[0].raw["ipam"], serde_json::json!({}));
        let again = list_from_bytes(&list.bytes, Path::new("cache")).unwrap();
        assert_eq!(again.plugins, list.plugins);
    }

    #[test]
    fn errors_name_the_directory_or_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = load_dir(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "read CNI config directory {}: ",
                missing.display()
            )),
            "{err}"
        );

        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("no network config found in"), "{err}");

        let cases = [
            ("a.conflist", "{", "invalid JSON: EOF while parsing"),
            (
                "a.conflist",
                r#"{"name":"n","plugins":[{"type":"x"}]}"#,
                "missing cniVersion",
            ),
            (
                "a.conflist",
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
                "missing name",
            ),
            (
                "a.conflist",
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"x"},{"mtu":1}]}"#,
                "missing plugins[1].type",
            ),
            (
                "a.conflist",
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "plugins: the list is empty",
            ),
            (
                "a.conflist",
                r#"{"cniVersion":"1.0.0","name":"n"}"#,
                "missing plugins",
            ),
            (
                "a.conflist",
                r#"{"cniVersion":"one","name":"n","plugins":[{"type":"x"}]}"#,
                "cniVersion \"one\" is not a version",
            ),
            (
                "a.conflist",
                r#"{"cniVersion":"1.0.0","name":"../x","plugins":[{"type":"x"}]}"#,
                "name \"../x\": must start",
            ),
            (
                "a.conflist",
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]}"#,
                "must be a file name",
            ),
            (
                "a.conf",
                r#"{"cniVersion":"1.0.0","name":"n"}"#,
                "missing type",
            ),
            (
                "a.conf",
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "name the file *.conflist",
            ),
            (
                "a.json",
                r#"{"name":"n","type":"bridge"}"#,
                "missing cniVersion",
            ),
        ];
        for (file, text, want) in cases {
            let sub = tempfile::tempdir().unwrap();
            let path = write(sub.path(), file, text);
            let err = load_dir(sub.path()).unwrap_err().to_string();
            assert!(
                err.contains(&path.display().to_string()),
                "{err} names {}",
                path.display()
            );
            assert!(err.contains(want), "{text}: {err} should contain {want:?}");
        }
    }

    #[test]
    fn cni_versions_picks_the_highest_spoken_version() {
        let list = list_from_bytes(
            br#"{"cniVersion":"0.4.0","cniVersions":["0.4.0","1.1.0","9.0.0"],"name":"n","plugins":[{"type":"x"}]}"#,
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(list.cni_version, "1.1.0");
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("1.1.0", "1.1.0"));
        assert!(version_at_least("0.10.0", "0.4.0"));
        assert!(!version_at_least("1.0.0", "1.1.0"));
        assert!(!version_at_least("x", "0.4.0"));
        assert_eq!(parse_version("1.0"), None);
        assert_eq!(parse_version("1.0.0.0"), None);
    }
}
