//! The result cache: what each attachment was added with, so DEL, CHECK and
//! GC use the same config, arguments and result after a restart even if the
//! config directory changed.
//!
//! The files are libcni's (`<cacheDir>/results/<network>-<containerID>-<ifname>`,
//! `kind: cniCacheV1`, the list's bytes base64-encoded in `config` as Go
//! encodes a `[]byte`; libcni pkg/libcni/api.go `cachedInfo`), so a node
//! that moves between podrun and containerd or CRI-O finds its attachments.
//! Unlike libcni they are written atomically, and once before the ADD runs
//! (without a result), so that a crash in the middle leaves a record that
//! DEL and GC find.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// libcni's cache format tag.
pub const KIND: &str = "cniCacheV1";

/// One cached attachment, as libcni writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// [`KIND`].
    pub kind: String,
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The network list's JSON, base64.
    pub config: String,
    /// `CNI_IFNAME`.
    #[serde(rename = "ifName")]
    pub if_name: String,
    /// The network's name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// `CNI_NETNS`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    /// `CNI_ARGS` as pairs.
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_args: Vec<[String; 2]>,
    /// The capability arguments the ADD was given.
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    pub capability_args: Map<String, Value>,
    /// The ADD's result; absent while the ADD runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

impl Entry {
    /// The network list's bytes.
    pub fn config_bytes(&self) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.config)
            .map_err(|e| format!("config is not base64: {e}"))
    }

    /// Encodes `bytes` into [`Entry::config`].
    pub fn encode_config(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

/// The file of one attachment.
pub fn path(cache_dir: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    cache_dir
        .join("results")
        .join(format!("{network}-{container_id}-{ifname}"))
}

/// Writes `entry` to `path`: a temporary file, fsync, rename, fsync of the directory.
pub fn write(path: &Path, entry: &Entry) -> io::Result<()> {
    let dir = path.parent().expect("a cache file has a directory");
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .expect("a cache file has a name")
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let bytes = serde_json::to_vec(entry).map_err(io::Error::other)?;
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads one entry; `Ok(None)` if there is none.
pub fn read(path: &Path) -> io::Result<Option<Entry>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let entry: Entry = serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if entry.kind != KIND {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("kind {:?} is not {KIND:?}", entry.kind),
        ));
    }
    Ok(Some(entry))
}

/// Removes one entry; absent is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Every readable entry, with its file, in file-name order; those whose
/// file name ends in `-<container_id>-<ifname>` only, when `filter` is given.
/// Unreadable files are skipped: they are not ours to judge.
pub fn list(cache_dir: &Path, filter: Option<(&str, &str)>) -> Vec<(PathBuf, Entry)> {
    let Ok(dir) = std::fs::read_dir(cache_dir.join("results")) else {
        return Vec::new();
    };
    let suffix = filter.map(|(id, ifname)| format!("-{id}-{ifname}"));
    let mut entries: Vec<(PathBuf, Entry)> = dir
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.') && suffix.as_ref().is_none_or(|s| name.ends_with(s.as_str()))
        })
        .filter_map(|e| {
            let path = e.path();
            let entry = read(&path).ok()??;
            match filter {
                Some((id, ifname)) if entry.container_id != id || entry.if_name != ifname => None,
                _ => Some((path, entry)),
            }
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(net: &str, id: &str) -> Entry {
        Entry {
            kind: KIND.into(),
            container_id: id.into(),
            config: Entry::encode_config(br#"{"name":"n"}"#),
            if_name: "eth0".into(),
            network_name: net.into(),
            netns: "/run/netns/x".into(),
            cni_args: vec![["IgnoreUnknown".into(), "1".into()]],
            capability_args: Map::new(),
            result: Some(serde_json::json!({"cniVersion": "1.0.0"})),
        }
    }

    #[test]
    fn entries_round_trip_in_libcnis_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "net", "abc", "eth0");
        assert_eq!(p, dir.path().join("results/net-abc-eth0"));
        assert_eq!(read(&p).unwrap(), None);
        write(&p, &entry("net", "abc")).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with(r#"{"kind":"cniCacheV1","containerId":"abc","config":"eyJuYW1lIjoibiJ9","ifName":"eth0","networkName":"net""#), "{text}");
        let back = read(&p).unwrap().unwrap();
        assert_eq!(back, entry("net", "abc"));
        assert_eq!(back.config_bytes().unwrap(), br#"{"name":"n"}"#);
        // No temporary file stays.
        assert_eq!(
            std::fs::read_dir(dir.path().join("results"))
                .unwrap()
                .count(),
            1
        );
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert_eq!(read(&p).unwrap(), None);
    }

    #[test]
    fn list_finds_an_attachment_under_any_network_name() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &path(dir.path(), "old", "abc", "eth0"),
            &entry("old", "abc"),
        )
        .unwrap();
        write(
            &path(dir.path(), "new", "xabc", "eth0"),
            &entry("new", "xabc"),
        )
        .unwrap();
        write(
            &path(dir.path(), "new", "def", "eth0"),
            &entry("new", "def"),
        )
        .unwrap();
        std::fs::write(dir.path().join("results/garbage-abc-eth0"), "{").unwrap();
        let found = list(dir.path(), Some(("abc", "eth0")));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.network_name, "old");
        assert_eq!(list(dir.path(), None).len(), 3);
        assert!(list(&dir.path().join("none"), None).is_empty());
    }
}
