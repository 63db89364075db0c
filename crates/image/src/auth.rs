//! Registry credentials, read from the files users already have:
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json` (podman's
//! `login` writes there; `/run/containers/<uid>/auth.json` without XDG_RUNTIME_DIR),
//! `~/.config/containers/auth.json` and `~/.docker/config.json`, in that order,
//! as podman searches them. Credential helpers (`credsStore`) are not run.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// A credentials file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// {path}: {cause}
    #[error("{path}: {cause}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        cause: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// The file `podrun login` writes to, as podman chooses it.
pub fn default_auth_file() -> PathBuf {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        return Path::new(&dir).join("containers/auth.json");
    }
    PathBuf::from(format!(
        "/run/containers/{}/auth.json",
        rustix::process::getuid().as_raw()
    ))
}

/// Every file searched for credentials, first match wins.
pub fn search_path() -> Vec<PathBuf> {
    let mut files = vec![default_auth_file()];
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        files.push(home.join(".config/containers/auth.json"));
        files.push(home.join(".docker/config.json"));
    }
    files
}

/// Credentials for contacting `registry` about `repository`, from the first file
/// that has any. Keys may name the registry or a repository under it; the most
/// specific one wins, as in podman.
pub fn lookup(
    files: &[PathBuf],
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>, AuthError> {
    let mut keys: Vec<String> = Vec::new();
    let full = format!("{registry}/{repository}");
    let mut cut = full.as_str();
    loop {
        keys.push(cut.to_string());
        match cut.rfind('/') {
            Some(i) => cut = &cut[..i],
            None => break,
        }
    }
    if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        keys.push("https://index.docker.io/v1/".into());
        keys.push("docker.io".into());
    }
    for file in files {
        let Some(parsed) = read(file)? else { continue };
        for key in &keys {
            let entry = parsed
                .auths
                .get(key)
                .or_else(|| parsed.auths.get(&format!("https://{key}")))
                .or_else(|| parsed.auths.get(&format!("http://{key}")));
            if let Some(AuthEntry {
                auth: Some(auth), ..
            }) = entry
            {
                return decode(auth).map(Some).map_err(|cause| AuthError::File {
                    path: file.display().to_string(),
                    cause: format!("auths.{key:?}: {cause}"),
                });
            }
        }
    }
    Ok(None)
}

/// Store credentials for `registry` in `file` (created 0600 if missing), keeping
/// everything else in it.
pub fn store(file: &Path, registry: &str, creds: &Credentials) -> Result<(), AuthError> {
    update(file, |auths| {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.username, creds.password));
        auths.entry(registry.to_string()).or_default().auth = Some(token);
    })
}

/// Remove the credentials for `registry` from `file`; true if there were any.
pub fn remove(file: &Path, registry: &str) -> Result<bool, AuthError> {
    let mut found = false;
    update(file, |auths| found = auths.remove(registry).is_some())?;
    Ok(found)
}

fn update(
    file: &Path,
    change: impl FnOnce(&mut BTreeMap<String, AuthEntry>),
) -> Result<(), AuthError> {
    let fail = |cause: String| AuthError::File {
        path: file.display().to_string(),
        cause,
    };
    let mut parsed = read(file)?.unwrap_or_default();
    change(&mut parsed.auths);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    let text = serde_json::to_vec_pretty(&parsed).map_err(|e| fail(e.to_string()))?;
    podrun_fs::write_atomic_mode(file, &text, 0o600).map_err(|e| fail(e.to_string()))
}

fn read(file: &Path) -> Result<Option<AuthFile>, AuthError> {
    let text = match std::fs::read(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AuthError::File {
                path: file.display().to_string(),
                cause: e.to_string(),
            })
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| AuthError::File {
            path: file.display().to_string(),
            cause: format!("not a valid auth file: {e}"),
        })
}

fn decode(auth: &str) -> Result<Credentials, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| format!("auth is not base64: {e}"))?;
    let text = String::from_utf8(raw).map_err(|_| "auth is not UTF-8".to_string())?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| "auth is not user:password".to_string())?;
    Ok(Credentials {
        username: username.into(),
        password: password.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn most_specific_key_wins_and_first_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("auth.json");
        let b = dir.path().join("config.json");
        store(&a, "reg.example:5000", &creds("hostwide", "1")).unwrap();
        store(&a, "reg.example:5000/team", &creds("team", "2")).unwrap();
        store(&b, "reg.example:5000", &creds("docker", "3")).unwrap();
        store(&b, "other.example", &creds("other", "4")).unwrap();
        let files = [a, b];
        let got = |reg: &str, repo: &str| lookup(&files, reg, repo).unwrap();
        assert_eq!(
            got("reg.example:5000", "team/app"),
            Some(creds("team", "2"))
        );
        assert_eq!(
            got("reg.example:5000", "solo/app"),
            Some(creds("hostwide", "1"))
        );
        assert_eq!(got("other.example", "x"), Some(creds("other", "4")));
        assert_eq!(got("none.example", "x"), None);
    }

    #[test]
    fn docker_hub_legacy_key_and_unknown_fields_kept() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.json");
        let tok = base64::engine::general_purpose::STANDARD.encode("me:pw:with:colons");
        std::fs::write(
            &f,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{tok}"}}}},"credsStore":"x"}}"#),
        )
        .unwrap();
        let files = [f.clone()];
        assert_eq!(
            lookup(&files, "docker.io", "library/busybox").unwrap(),
            Some(creds("me", "pw:with:colons"))
        );
        store(&f, "q.example", &creds("a", "b")).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains("credsStore"), "{text}");
        assert!(remove(&f, "q.example").unwrap());
        assert!(!remove(&f, "q.example").unwrap());
    }

    #[test]
    fn broken_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.json");
        std::fs::write(&f, r#"{"auths":{"r.example":{"auth":"!!"}}}"#).unwrap();
        let e = lookup(std::slice::from_ref(&f), "r.example", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.json") && e.contains("base64"), "{e}");
        std::fs::write(&f, "{").unwrap();
        let e = lookup(&[f], "r.example", "x").unwrap_err().to_string();
        assert!(e.contains("not a valid auth file"), "{e}");
    }
}
