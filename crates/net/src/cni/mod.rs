//! The CNI client: a pod network made by the plugins of a config list, run
//! as the CNI spec (1.0/1.1) says and as libcni and containerd's go-cni run
//! them.
//!
//! - [`conf`]: which file of the config directory is the network;
//! - [`exec`]: running one plugin binary (environment, stdin, timeout, errors);
//! - [`args`]: `CNI_ARGS` and each plugin's `runtimeConfig`;
//! - [`result`]: the ADD result of any version, and the pod's addresses in it;
//! - [`cache`]: libcni's result cache, so DEL after a restart uses what ADD used.
//!
//! The config directory is read at every operation, so a network installed
//! after the runtime started (a CNI daemonset writing its conflist) is used
//! as soon as it is there, as containerd's config watcher does.

pub mod args;
pub mod cache;
pub mod conf;
pub mod exec;
pub mod result;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Map, Value};

pub use args::{DnsCapability, Extras, IpRange};
pub use conf::{ConfError, NetworkList, PluginConf};
pub use exec::{CniCommand, ErrorObject, PluginError};
pub use result::CniResult;

use crate::{Attachment, NetworkError, NetworkStatus, PodNetwork};

/// Where the client finds configs and plugins and keeps its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    /// The config directory (`/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// The plugin directories, searched in order (`CNI_PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// The result cache's directory (libcni's is `/var/lib/cni`).
    pub cache_dir: PathBuf,
    /// How long one plugin run may take before it is killed.
    pub timeout: Duration,
    /// The node's ranges for the `ipRanges` capability (the pod CIDR), if
    /// the runtime assigns them; empty passes none.
    pub ip_ranges: Vec<Vec<IpRange>>,
}

impl CniConfig {
    /// The usual places (`/etc/cni/net.d`; `/opt/cni/bin`, then Debian's
    /// `/usr/lib/cni`), a 60 s timeout per plugin, and the cache in `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            cache_dir: cache_dir.into(),
            timeout: Duration::from_secs(60),
            ip_ranges: Vec::new(),
        }
    }
}

/// Why a CNI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The network's config is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfError),
    /// A plugin failed (libcni's wording: `plugin type="bridge" failed (add): …`).
    #[error("plugin {plugin} failed ({command}): {cause}")]
    Plugin {
        /// `type="bridge"`, with the plugin's `name` if it has one.
        plugin: String,
        /// The operation.
        command: CniCommand,
        /// Why.
        cause: PluginError,
    },
    /// An ADD failed, and so did some of the DEL that undid it.
    #[error("{cause}; undoing the add: {}", join(cleanup))]
    AddUndoFailed {
        /// Why the ADD failed.
        cause: Box<CniError>,
        /// What the DEL met.
        cleanup: Vec<CniError>,
    },
    /// An attachment's field cannot be given to a plugin.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidAttachment {
        /// `sandbox id` or `interface name`.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// A bandwidth annotation is invalid.
    #[error(transparent)]
    Bandwidth(#[from] args::BandwidthError),
    /// A cache file could not be written, read or removed.
    #[error("result cache {}: {source}", path.display())]
    Cache {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// CHECK needs the ADD's result and there is none.
    #[error("no cached result for sandbox {sandbox_id} interface {ifname}: CHECK needs the ADD's result")]
    NotCached {
        /// The sandbox.
        sandbox_id: String,
        /// Its interface.
        ifname: String,
    },
    /// Several steps failed (DEL and GC go on past a failure).
    #[error("{}", join(.0))]
    Several(Vec<CniError>),
}

fn join(errors: &[CniError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl CniError {
    fn from_list(mut errors: Vec<CniError>) -> Result<(), CniError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(CniError::Several(errors)),
        }
    }
}

/// An attachment found in the result cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAttachment {
    /// The network it belongs to.
    pub network: String,
    /// The sandbox's ID (`CNI_CONTAINERID`).
    pub sandbox_id: String,
    /// The interface (`CNI_IFNAME`).
    pub ifname: String,
    /// The namespace it was added in (may be gone after a reboot).
    pub netns: PathBuf,
    /// Whether its ADD finished (false: the runtime stopped in the middle).
    pub complete: bool,
}

/// The CNI client: a [`PodNetwork`] made by the plugins of the config directory.
#[derive(Debug)]
pub struct CniNetwork {
    config: CniConfig,
    name: OnceLock<String>,
}

/// One plugin run's particulars besides the plugin.
struct Call<'a> {
    list: &'a NetworkList,
    env: exec::PluginEnv,
    caps: &'a Map<String, Value>,
}

impl CniNetwork {
    /// A client of the given directories. Nothing is read yet beyond trying
    /// the config for the network's name: an absent config makes the network
    /// not ready, not the client unusable.
    pub fn new(config: CniConfig) -> Self {
        let network = CniNetwork {
            config,
            name: OnceLock::new(),
        };
        let _ = network.load();
        network
    }

    /// The client's directories.
    pub fn config(&self) -> &CniConfig {
        &self.config
    }

    /// The network as the config directory gives it now.
    pub fn load(&self) -> Result<NetworkList, ConfError> {
        let list = conf::load_dir(&self.config.conf_dir)?;
        let _ = self.name.set(list.name.clone());
        Ok(list)
    }

    fn plugin_path(&self, plugin: &PluginConf, command: CniCommand) -> Result<PathBuf, CniError> {
        exec::find_plugin(&plugin.kind, &self.config.bin_dirs).map_err(|cause| CniError::Plugin {
            plugin: plugin.description(),
            command,
            cause,
        })
    }

    /// Runs one plugin; its stdout.
    fn invoke(
        &self,
        plugin: &PluginConf,
        command: CniCommand,
        call: &Call<'_>,
        prev: Option<&Value>,
    ) -> Result<Vec<u8>, CniError> {
        let binary = self.plugin_path(plugin, command)?;
        let stdin = args::plugin_stdin(
            plugin,
            &call.list.name,
            &call.list.cni_version,
            call.caps,
            prev,
        );
        exec::run(&binary, command, &call.env, &stdin, self.config.timeout).map_err(|cause| {
            CniError::Plugin {
                plugin: plugin.description(),
                command,
                cause,
            }
        })
    }

    fn env(&self, att: &Attachment, netns: &Path, cni_args: &[[String; 2]]) -> exec::PluginEnv {
        exec::PluginEnv {
            container_id: att.sandbox_id.clone(),
            netns: netns.to_string_lossy().into_owned(),
            ifname: att.ifname.clone(),
            args: args::cni_args_string(cni_args),
            path: exec::join_paths(&self.config.bin_dirs),
        }
    }

    /// ADD with capability arguments that are not in the attachment (the
    /// pod's DNS config). Returns the pod's status and the full result.
    pub fn add_with(
        &self,
        att: &Attachment,
        extras: &Extras,
    ) -> Result<(NetworkStatus, CniResult), CniError> {
        check_attachment(att)?;
        let list = self.load()?;
        // Every binary is there before anything is made.
        for plugin in &list.plugins {
            self.plugin_path(plugin, CniCommand::Add)?;
        }
        let caps = args::capability_args(att, &self.config.ip_ranges, extras)?;
        let cni_args = args::cni_args(att);
        let path = cache::path(
            &self.config.cache_dir,
            &list.name,
            &att.sandbox_id,
            &att.ifname,
        );
        let mut entry = cache::Entry {
            kind: cache::KIND.into(),
            container_id: att.sandbox_id.clone(),
            config: cache::Entry::encode_config(&list.bytes),
            if_name: att.ifname.clone(),
            network_name: list.name.clone(),
            netns: att.netns.to_string_lossy().into_owned(),
            cni_args: cni_args.clone(),
            capability_args: caps.clone(),
            result: None,
        };
        cache::write(&path, &entry).map_err(|source| CniError::Cache {
            path: path.clone(),
            source,
        })?;
        let call = Call {
            list: &list,
            env: self.env(att, &att.netns, &cni_args),
            caps: &caps,
        };
        let mut prev: Option<(Value, CniResult)> = None;
        let mut failure = None;
        for plugin in &list.plugins {
            match self.add_one(plugin, &call, prev.as_ref().map(|(raw, _)| raw)) {
                Ok(result) => prev = Some(result),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let outcome = match (failure, prev) {
            (Some(e), prev) => Err((e, prev.map(|(raw, _)| raw))),
            (None, Some((raw, parsed))) => {
                entry.result = Some(raw);
                match cache::write(&path, &entry) {
                    Ok(()) => Ok(parsed),
                    Err(source) => Err((
                        CniError::Cache {
                            path: path.clone(),
                            source,
                        },
                        entry.result.take(),
                    )),
                }
            }
            (None, None) => unreachable!("a list has plugins"),
        };
        let parsed = match outcome {
            Ok(parsed) => parsed,
            Err((cause, partial)) => {
                // libcni's callers DEL the whole list after a failed ADD, so
                // that nothing of it stays; the partial result helps the DELs.
                let cleanup = self.del_list(&list, &call, partial.as_ref());
                if !cleanup.is_empty() {
                    return Err(CniError::AddUndoFailed {
                        cause: Box::new(cause),
                        cleanup,
                    });
                }
                let _ = cache::remove(&path);
                return Err(cause);
            }
        };
        Ok((parsed.status(&att.netns, &att.ifname), parsed))
    }

    /// One plugin's ADD: its result as JSON, with the config's version if it
    /// gave none (libcni `fixupResultVersion`).
    fn add_one(
        &self,
        plugin: &PluginConf,
        call: &Call<'_>,
        prev: Option<&Value>,
    ) -> Result<(Value, CniResult), CniError> {
        let out = self.invoke(plugin, CniCommand::Add, call, prev)?;
        let bad = |reason: String| CniError::Plugin {
            plugin: plugin.description(),
            command: CniCommand::Add,
            cause: PluginError::BadResult(reason),
        };
        let mut value: Value = serde_json::from_slice(&out)
            .map_err(|e| bad(format!("{e}: {:?}", String::from_utf8_lossy(&out))))?;
        let Value::Object(map) = &mut value else {
            return Err(bad(format!("not a JSON object: {value}")));
        };
        let versioned = matches!(map.get("cniVersion"), Some(Value::String(v)) if !v.is_empty());
        if !versioned {
            map.insert(
                "cniVersion".into(),
                Value::String(call.list.cni_version.clone()),
            );
        }
        let parsed = result::parse(&value, &call.list.cni_version).map_err(bad)?;
        Ok((value, parsed))
    }

    /// DEL of every plugin, last first, going on past failures (each plugin's
    /// DEL must succeed when there is nothing to delete). The errors met.
    fn del_list(&self, list: &NetworkList, call: &Call<'_>, prev: Option<&Value>) -> Vec<CniError> {
        // Cached results on DEL came with 0.4.0.
        let prev = prev.filter(|_| conf::version_at_least(&list.cni_version, "0.4.0"));
        // A plugin with no executable holds nothing this client can release:
        // skipped with a warning, not an error, or a sandbox whose ADD failed
        // for that very reason (or whose plugin was uninstalled) could never
        // be removed (containerd's teardown fails on it forever; deliberately
        // not followed).
        list.plugins
            .iter()
            .rev()
            .filter_map(
                |plugin| match self.invoke(plugin, CniCommand::Del, call, prev) {
                    Err(CniError::Plugin {
                        plugin,
                        cause: cause @ PluginError::NotFound { .. },
                        ..
                    }) => {
                        tracing::warn!(
                            "network {}: DEL of sandbox {}: skipped plugin {plugin}: {cause}",
                            list.name,
                            call.env.container_id
                        );
                        None
                    }
                    other => other.err(),
                },
            )
            .collect()
    }

    /// DEL with a cached entry: its config, arguments and result.
    fn del_cached(&self, att: &Attachment, path: &Path, entry: &cache::Entry) -> Vec<CniError> {
        let list = match entry
            .config_bytes()
            .and_then(|bytes| conf::list_from_bytes(&bytes, path).map_err(|e| e.to_string()))
        {
            Ok(list) => list,
            Err(reason) => {
                // Unusable: fall back to the current config, as libcni does
                // when its cached result cannot be read.
                return match self.load() {
                    Ok(list) => {
                        let errors = self.del_uncached(att, &list);
                        if errors.is_empty() {
                            let _ = cache::remove(path);
                        }
                        errors
                    }
                    Err(e) => vec![
                        CniError::Cache {
                            path: path.to_path_buf(),
                            source: std::io::Error::other(reason),
                        },
                        e.into(),
                    ],
                };
            }
        };
        let netns = if att.netns.as_os_str().is_empty() {
            PathBuf::from(&entry.netns)
        } else {
            att.netns.clone()
        };
        let call = Call {
            list: &list,
            env: self.env(att, &netns, &entry.cni_args),
            caps: &entry.capability_args,
        };
        let errors = self.del_list(&list, &call, entry.result.as_ref());
        if errors.is_empty() {
            if let Err(source) = cache::remove(path) {
                return vec![CniError::Cache {
                    path: path.to_path_buf(),
                    source,
                }];
            }
        }
        errors
    }

    fn del_uncached(&self, att: &Attachment, list: &NetworkList) -> Vec<CniError> {
        let caps = match args::capability_args(att, &self.config.ip_ranges, &Extras::default()) {
            Ok(caps) => caps,
            // A DEL must not fail on what only an ADD needs.
            Err(_) => Map::new(),
        };
        let cni_args = args::cni_args(att);
        let call = Call {
            list,
            env: self.env(att, &att.netns, &cni_args),
            caps: &caps,
        };
        self.del_list(list, &call, None)
    }

    /// DEL of the attachment: for each cached entry of it (under any network
    /// name: the config may have changed since), the cached config and
    /// result; with none, the current config and no `prevResult`, or nothing
    /// (success) when there is no usable config either.
    pub fn del_attachment(&self, att: &Attachment) -> Result<(), CniError> {
        check_attachment(att)?;
        let cached = cache::list(&self.config.cache_dir, Some((&att.sandbox_id, &att.ifname)));
        if cached.is_empty() {
            // Every ADD records itself before it runs a plugin, so with no
            // record and no config this client has nothing here to release.
            return match self.load() {
                Ok(list) => CniError::from_list(self.del_uncached(att, &list)),
                Err(_) => Ok(()),
            };
        }
        let errors = cached
            .iter()
            .flat_map(|(path, entry)| self.del_cached(att, path, entry))
            .collect();
        CniError::from_list(errors)
    }

    /// CHECK of the attachment with its cached config and result (a no-op
    /// before CNI 0.4.0 or with `disableCheck`).
    pub fn check(&self, att: &Attachment) -> Result<(), CniError> {
        check_attachment(att)?;
        let list = self.load()?;
        let path = cache::path(
            &self.config.cache_dir,
            &list.name,
            &att.sandbox_id,
            &att.ifname,
        );
        let entry = cache::read(&path)
            .map_err(|source| CniError::Cache {
                path: path.clone(),
                source,
            })?
            .filter(|e| e.result.is_some())
            .ok_or_else(|| CniError::NotCached {
                sandbox_id: att.sandbox_id.clone(),
                ifname: att.ifname.clone(),
            })?;
        let list = entry
            .config_bytes()
            .ok()
            .and_then(|bytes| conf::list_from_bytes(&bytes, &path).ok())
            .unwrap_or(list);
        if list.disable_check || !conf::version_at_least(&list.cni_version, "0.4.0") {
            return Ok(());
        }
        let call = Call {
            list: &list,
            env: self.env(att, &att.netns, &entry.cni_args),
            caps: &entry.capability_args,
        };
        for plugin in &list.plugins {
            self.invoke(plugin, CniCommand::Check, &call, entry.result.as_ref())?;
        }
        Ok(())
    }

    /// VERSION of each plugin of the network: `(type, supportedVersions)`.
    /// An error if one does not speak the list's version.
    pub fn versions(&self) -> Result<Vec<(String, Vec<String>)>, CniError> {
        let list = self.load()?;
        let caps = Map::new();
        let call = Call {
            list: &list,
            env: exec::PluginEnv::default(),
            caps: &caps,
        };
        let mut out = Vec::new();
        for plugin in &list.plugins {
            let binary = self.plugin_path(plugin, CniCommand::Version)?;
            let stdin = serde_json::to_vec(&serde_json::json!({"cniVersion": list.cni_version}))
                .expect("a JSON value serializes");
            let failed = |cause| CniError::Plugin {
                plugin: plugin.description(),
                command: CniCommand::Version,
                cause,
            };
            let stdout = exec::run(
                &binary,
                CniCommand::Version,
                &call.env,
                &stdin,
                self.config.timeout,
            )
            .map_err(failed)?;
            let supported: Vec<String> = serde_json::from_slice::<Value>(&stdout)
                .ok()
                .and_then(|v| serde_json::from_value(v.get("supportedVersions")?.clone()).ok())
                .ok_or_else(|| {
                    failed(PluginError::BadResult(format!(
                        "no supportedVersions in {:?}",
                        String::from_utf8_lossy(&stdout)
                    )))
                })?;
            if !supported.contains(&list.cni_version) {
                return Err(failed(PluginError::BadResult(format!(
                    "the network's cniVersion {} is not among the plugin's {supported:?}",
                    list.cni_version
                ))));
            }
            out.push((plugin.kind.clone(), supported));
        }
        Ok(out)
    }

    /// GC (libcni `GCNetworkList`): DEL of every cached attachment of this
    /// network that is not in `valid` (`(sandbox_id, ifname)`), then, for a
    /// network of CNI 1.1.0 or later, GC of each plugin with the valid
    /// attachments. Goes on past failures and returns them all.
    pub fn gc(&self, valid: &[(String, String)]) -> Result<(), CniError> {
        let list = self.load()?;
        if list.disable_gc {
            return Ok(());
        }
        let mut errors = Vec::new();
        for (path, entry) in cache::list(&self.config.cache_dir, None) {
            let is_valid = valid
                .iter()
                .any(|(id, ifname)| *id == entry.container_id && *ifname == entry.if_name);
            if entry.network_name != list.name || is_valid {
                continue;
            }
            let att = attachment_of(&entry);
            errors.extend(self.del_cached(&att, &path, &entry));
        }
        if conf::version_at_least(&list.cni_version, "1.1.0") {
            let attachments: Vec<Value> = valid
                .iter()
                .map(|(id, ifname)| serde_json::json!({"containerID": id, "ifname": ifname}))
                .collect();
            let env = exec::PluginEnv {
                path: exec::join_paths(&self.config.bin_dirs),
                ..exec::PluginEnv::default()
            };
            for plugin in &list.plugins {
                let mut plugin = plugin.clone();
                plugin.raw.insert(
                    "cni.dev/valid-attachments".into(),
                    Value::Array(attachments.clone()),
                );
                let call = Call {
                    list: &list,
                    env: env.clone(),
                    caps: &Map::new(),
                };
                if let Err(e) = self.invoke(&plugin, CniCommand::Gc, &call, None) {
                    errors.push(e);
                }
            }
        }
        CniError::from_list(errors)
    }

    /// The attachments in the result cache, of any network: what a runtime
    /// that lost its state (a reboot) DELs or GCs.
    pub fn cached_attachments(&self) -> Vec<CachedAttachment> {
        cache::list(&self.config.cache_dir, None)
            .into_iter()
            .map(|(_, e)| CachedAttachment {
                network: e.network_name,
                sandbox_id: e.container_id,
                ifname: e.if_name,
                netns: PathBuf::from(e.netns),
                complete: e.result.is_some(),
            })
            .collect()
    }

    fn network_error(&self, error: CniError) -> NetworkError {
        NetworkError {
            network: self.name().to_string(),
            message: error.to_string(),
        }
    }
}

/// An attachment rebuilt from a cache entry, for a DEL without the runtime's.
fn attachment_of(entry: &cache::Entry) -> Attachment {
    let arg = |key: &str| {
        entry
            .cni_args
            .iter()
            .find(|[k, _]| k == key)
            .map(|[_, v]| v.clone())
            .unwrap_or_default()
    };
    Attachment {
        sandbox_id: entry.container_id.clone(),
        netns: PathBuf::from(&entry.netns),
        ifname: entry.if_name.clone(),
        pod_name: arg("K8S_POD_NAME"),
        pod_namespace: arg("K8S_POD_NAMESPACE"),
        pod_uid: arg("K8S_POD_UID"),
        port_mappings: Vec::new(),
        annotations: Default::default(),
        cgroup_parent: String::new(),
    }
}

/// The IDs go into cache file names and plugin arguments: libcni's rules
/// (`ValidateContainerID`, `ValidateInterfaceName`).
fn check_attachment(att: &Attachment) -> Result<(), CniError> {
    let invalid = |field, value: &str, reason| {
        Err(CniError::InvalidAttachment {
            field,
            value: value.to_string(),
            reason,
        })
    };
    if !conf::is_cni_id(&att.sandbox_id) {
        return invalid(
            "sandbox id",
            &att.sandbox_id,
            "must start with a letter or digit and hold only letters, digits, '_', '.' and '-'",
        );
    }
    let ifname = att.ifname.as_str();
    if ifname.is_empty()
        || ifname.len() > 15
        || ifname == "."
        || ifname == ".."
        || ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return invalid(
            "interface name",
            ifname,
            "must be 1 to 15 characters, not . or .., without '/', ':' or spaces",
        );
    }
    Ok(())
}

impl PodNetwork for CniNetwork {
    /// The name of the network first loaded (`cni` until a config is there).
    fn name(&self) -> &str {
        self.name.get().map(String::as_str).unwrap_or("cni")
    }

    fn add(&self, attachment: &Attachment) -> Result<NetworkStatus, NetworkError> {
        self.add_with(attachment, &Extras::default())
            .map(|(status, _)| status)
            .map_err(|e| self.network_error(e))
    }

    fn del(&self, attachment: &Attachment) -> Result<(), NetworkError> {
        self.del_attachment(attachment)
            .map_err(|e| self.network_error(e))
    }

    fn ready(&self) -> Result<(), NetworkError> {
        let list = self.load().map_err(|e| self.network_error(e.into()))?;
        for plugin in &list.plugins {
            self.plugin_path(plugin, CniCommand::Add)
                .map_err(|e| NetworkError {
                    network: list.name.clone(),
                    message: match e {
                        CniError::Plugin { plugin, cause, .. } => {
                            format!("plugin {plugin}: {cause}")
                        }
                        other => other.to_string(),
                    },
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
