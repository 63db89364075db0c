//! Where to pull from: per-registry mirrors, plain-HTTP (insecure) registries
//! and blocked registries, in the format of podman's `registries.conf` (v2):
//!
//! ```toml
//! [[registry]]
//! prefix = "docker.io/library"      # what the image reference starts with
//! location = "docker.io/library"    # where it really is (default: prefix)
//! insecure = false                  # plain HTTP
//! blocked = false
//! [[registry.mirror]]               # tried in order before `location`
//! location = "127.0.0.1:5000"
//! insecure = true
//! ```
//!
//! Short names are not searched: as in Kubernetes, `busybox` is always
//! `docker.io/library/busybox`. Loopback registries speak plain HTTP by default,
//! as containerd allows.

use oci_client::Reference;
use serde::Deserialize;
use std::path::Path;

/// The default place of the registries configuration.
pub const DEFAULT_PATH: &str = "/etc/podrun/registries.conf";

/// The default directory of containerd-style `<host>/hosts.toml` files.
pub const DEFAULT_HOSTS_DIR: &str = "/etc/podrun/certs.d";

/// A malformed registries configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// read {path}: {source}
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// parse {path}: {message}
    #[error("parse {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with line and column.
        message: String,
    },
}

/// The parsed configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistriesConfig {
    /// Accepted for compatibility with podman's files; podrun never searches short names.
    #[serde(default)]
    pub unqualified_search_registries: Vec<String>,
    /// Per-prefix entries.
    #[serde(default, rename = "registry")]
    pub registries: Vec<RegistryEntry>,
}

/// One `[[registry]]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    /// The reference prefix this entry applies to (`docker.io`, `quay.io/team`).
    pub prefix: String,
    /// Where images under the prefix really live; defaults to the prefix.
    #[serde(default)]
    pub location: Option<String>,
    /// Speak plain HTTP to `location`.
    #[serde(default)]
    pub insecure: bool,
    /// Refuse to pull from this prefix.
    #[serde(default)]
    pub blocked: bool,
    /// Mirrors tried in order before `location`.
    #[serde(default, rename = "mirror")]
    pub mirrors: Vec<MirrorEntry>,
}

/// One `[[registry.mirror]]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorEntry {
    /// `host[:port][/path]` that replaces the prefix.
    pub location: String,
    /// Speak plain HTTP to this mirror.
    #[serde(default)]
    pub insecure: bool,
}

/// One place to try for a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The reference rewritten for this place (its registry is the host to contact).
    pub reference: Reference,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// A mirror rather than the image's own registry.
    pub mirror: bool,
}

/// The answer for a blocked reference.
#[derive(Debug, thiserror::Error)]
#[error("registry {prefix} is blocked by the registries configuration")]
pub struct Blocked {
    /// The prefix of the entry that blocks it.
    pub prefix: String,
}

impl RegistriesConfig {
    /// Read `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|message| ConfigError::Parse {
                path: path.display().to_string(),
                message,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Add the registries of a containerd `certs.d`-style directory: one
    /// `<registry host>/hosts.toml` per registry, each `[host."<url>"]` a mirror
    /// tried in file order (plain HTTP for `http://` URLs or `skip_verify`), and
    /// `server` the registry's own location. A prefix `registries.conf` already
    /// configures is left alone. A missing directory adds nothing.
    pub fn add_hosts_dir(&mut self, dir: &Path) -> Result<(), ConfigError> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for host in names {
            let path = dir.join(&host).join("hosts.toml");
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: path.display().to_string(),
                        source,
                    })
                }
            };
            let entry = parse_hosts_toml(&host, &text).map_err(|message| ConfigError::Parse {
                path: path.display().to_string(),
                message,
            })?;
            if !self.registries.iter().any(|e| e.prefix == entry.prefix) {
                self.registries.push(entry);
            }
        }
        Ok(())
    }

    /// Parse the TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        for entry in &config.registries {
            if entry.prefix.is_empty() {
                return Err("a [[registry]] entry has an empty prefix".into());
            }
        }
        Ok(config)
    }

    /// The places to try for `reference`, mirrors first, the image's own registry last.
    pub fn endpoints(&self, reference: &Reference) -> Result<Vec<Endpoint>, Blocked> {
        let name = crate::reference::repository(reference);
        let entry = self
            .registries
            .iter()
            .filter(|e| prefix_matches(&e.prefix, &name))
            .max_by_key(|e| e.prefix.len());
        let Some(entry) = entry else {
            return Ok(vec![endpoint(reference, &name, "", "", None, false)]);
        };
        if entry.blocked {
            return Err(Blocked {
                prefix: entry.prefix.clone(),
            });
        }
        let mut out: Vec<Endpoint> = entry
            .mirrors
            .iter()
            .map(|m| {
                endpoint(
                    reference,
                    &name,
                    &entry.prefix,
                    &m.location,
                    Some(m.insecure),
                    true,
                )
            })
            .collect();
        let location = entry.location.as_deref().unwrap_or(&entry.prefix);
        out.push(endpoint(
            reference,
            &name,
            &entry.prefix,
            location,
            Some(entry.insecure),
            false,
        ));
        Ok(out)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsToml {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    host: toml::Table,
}

#[derive(Deserialize)]
struct HostEntry {
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    skip_verify: bool,
    #[serde(default)]
    #[allow(dead_code)]
    ca: Option<toml::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    header: Option<toml::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    override_path: Option<bool>,
}

/// One containerd `hosts.toml`, for the registry named by its directory.
fn parse_hosts_toml(dir_name: &str, text: &str) -> Result<RegistryEntry, String> {
    let parsed: HostsToml = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
    let prefix = if dir_name == "_default" {
        return Err("_default hosts are not supported; name the registry's directory".into());
    } else {
        dir_name.to_string()
    };
    let strip = |url: &str| -> (String, bool) {
        let (insecure, rest) = match url.split_once("://") {
            Some(("http", rest)) => (true, rest),
            Some((_, rest)) => (false, rest),
            None => (false, url),
        };
        let rest = rest.trim_end_matches('/');
        let rest = rest.strip_suffix("/v2").unwrap_or(rest);
        (rest.to_string(), insecure)
    };
    // toml::Table keeps keys sorted, so the file's order is read from the text.
    let mut hosts: Vec<(usize, String, HostEntry)> = Vec::new();
    for (url, value) in parsed.host {
        let entry: HostEntry = value
            .try_into()
            .map_err(|e: toml::de::Error| format!("host {url:?}: {}", e.to_string().trim()))?;
        let at = text.find(&format!("\"{url}\"")).unwrap_or(usize::MAX);
        hosts.push((at, url, entry));
    }
    hosts.sort_by_key(|(at, _, _)| *at);
    let mirrors = hosts
        .into_iter()
        .filter(|(_, _, h)| {
            h.capabilities
                .as_ref()
                .is_none_or(|c| c.iter().any(|c| c == "pull"))
        })
        .map(|(_, url, h)| {
            let (location, http) = strip(&url);
            MirrorEntry {
                location,
                insecure: http || h.skip_verify,
            }
        })
        .collect();
    let (location, insecure) = match parsed.server.as_deref() {
        Some(server) => {
            let (l, i) = strip(server);
            let l = if l == "registry-1.docker.io" && prefix == "docker.io" {
                prefix.clone()
            } else {
                l
            };
            (Some(l), i)
        }
        None => (None, false),
    };
    Ok(RegistryEntry {
        prefix,
        location,
        insecure,
        blocked: false,
        mirrors,
    })
}

/// `prefix` matches `name` at a path boundary (`docker.io/lib` does not match `docker.io/library`).
fn prefix_matches(prefix: &str, name: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    name == prefix
        || name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Build the endpoint that replaces `prefix` of `name` with `location`.
fn endpoint(
    reference: &Reference,
    name: &str,
    prefix: &str,
    location: &str,
    insecure: Option<bool>,
    mirror: bool,
) -> Endpoint {
    let rewritten = if prefix.is_empty() {
        name.to_string()
    } else {
        format!(
            "{}{}",
            location.trim_end_matches('/'),
            &name[prefix.trim_end_matches('/').len()..]
        )
    };
    let (registry, repository) = rewritten.split_once('/').unwrap_or((&rewritten, ""));
    let reference = match (reference.tag(), reference.digest()) {
        (_, Some(digest)) => {
            Reference::with_digest(registry.into(), repository.into(), digest.into())
        }
        (Some(tag), None) => Reference::with_tag(registry.into(), repository.into(), tag.into()),
        (None, None) => Reference::with_tag(registry.into(), repository.into(), "latest".into()),
    };
    let insecure = insecure.unwrap_or(false) || is_loopback(registry);
    Endpoint {
        reference,
        insecure,
        mirror,
    }
}

/// Loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`) may speak plain HTTP.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::parse;

    const CONF: &str = r#"
unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "docker.io/library"
[[registry.mirror]]
location = "127.0.0.1:5000"
[[registry.mirror]]
location = "mirror.example:5000/hub/library"
insecure = true

[[registry]]
prefix = "docker.io"
location = "registry-1.docker.io"

[[registry]]
prefix = "quay.io/evil"
blocked = true

[[registry]]
prefix = "internal.example"
insecure = true
"#;

    fn names(eps: &[Endpoint]) -> Vec<(String, bool, bool)> {
        eps.iter()
            .map(|e| (e.reference.whole(), e.insecure, e.mirror))
            .collect()
    }

    #[test]
    fn mirrors_come_first_then_the_registry() {
        let c = RegistriesConfig::parse(CONF).unwrap();
        let eps = c.endpoints(&parse("busybox:1.36").unwrap()).unwrap();
        assert_eq!(
            names(&eps),
            vec![
                ("127.0.0.1:5000/busybox:1.36".into(), true, true),
                (
                    "mirror.example:5000/hub/library/busybox:1.36".into(),
                    true,
                    true
                ),
                ("docker.io/library/busybox:1.36".into(), false, false),
            ]
        );
    }

    #[test]
    fn longest_prefix_wins_and_location_rewrites() {
        let c = RegistriesConfig::parse(CONF).unwrap();
        let eps = c.endpoints(&parse("someone/app").unwrap()).unwrap();
        assert_eq!(
            names(&eps),
            vec![(
                "registry-1.docker.io/someone/app:latest".into(),
                false,
                false
            )]
        );
        let eps = c
            .endpoints(&parse("internal.example/x/y:2").unwrap())
            .unwrap();
        assert_eq!(
            names(&eps),
            vec![("internal.example/x/y:2".into(), true, false)]
        );
    }

    #[test]
    fn prefix_needs_a_path_boundary() {
        assert!(prefix_matches(
            "docker.io/library",
            "docker.io/library/busybox"
        ));
        assert!(!prefix_matches(
            "docker.io/lib",
            "docker.io/library/busybox"
        ));
        assert!(prefix_matches("quay.io", "quay.io"));
    }

    #[test]
    fn blocked_prefixes_refuse() {
        let c = RegistriesConfig::parse(CONF).unwrap();
        let e = c.endpoints(&parse("quay.io/evil/x").unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "registry quay.io/evil is blocked by the registries configuration"
        );
    }

    #[test]
    fn digests_survive_rewriting() {
        let c = RegistriesConfig::parse(CONF).unwrap();
        let d = format!("sha256:{}", "1".repeat(64));
        let eps = c
            .endpoints(&parse(&format!("busybox@{d}")).unwrap())
            .unwrap();
        assert_eq!(eps[0].reference.digest(), Some(d.as_str()));
        assert_eq!(eps[0].reference.repository(), "busybox");
    }

    #[test]
    fn loopback_is_plain_http_by_default() {
        let c = RegistriesConfig::default();
        let eps = c.endpoints(&parse("localhost:5000/a").unwrap()).unwrap();
        assert!(eps[0].insecure);
        assert!(is_loopback("[::1]:5000"));
        assert!(is_loopback("127.0.0.2"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("docker.io"));
    }

    #[test]
    fn containerd_hosts_toml_gives_mirrors_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("docker.io")).unwrap();
        std::fs::write(
            dir.path().join("docker.io/hosts.toml"),
            r#"server = "https://registry-1.docker.io"
[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
[host."https://a.mirror.example/v2"]
  capabilities = ["pull"]
  skip_verify = true
[host."https://push.only.example"]
  capabilities = ["push"]
"#,
        )
        .unwrap();
        let mut c = RegistriesConfig::default();
        c.add_hosts_dir(dir.path()).unwrap();
        let eps = c.endpoints(&parse("busybox:1").unwrap()).unwrap();
        assert_eq!(
            names(&eps),
            vec![
                ("127.0.0.1:5000/library/busybox:1".into(), true, true),
                ("a.mirror.example/library/busybox:1".into(), true, true),
                ("docker.io/library/busybox:1".into(), false, false),
            ]
        );
        // registries.conf wins over hosts.toml for the same prefix.
        let mut c =
            RegistriesConfig::parse("[[registry]]\nprefix = \"docker.io\"\nblocked = true\n")
                .unwrap();
        c.add_hosts_dir(dir.path()).unwrap();
        assert!(c.endpoints(&parse("busybox").unwrap()).is_err());
        std::fs::write(dir.path().join("docker.io/hosts.toml"), "sever = 1\n").unwrap();
        let e = RegistriesConfig::default()
            .add_hosts_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("hosts.toml") && e.contains("sever"), "{e}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = RegistriesConfig::parse("[[registry]]\nprefix='a'\nmirrors=[]\n").unwrap_err();
        assert!(e.contains("mirrors"), "{e}");
    }
}
