//! Static pods: a directory of manifests watched as kubelet watches its
//! `staticPodPath`. Every file (`*.yaml`, `*.yml`, `*.json`; hidden files are
//! ignored, as kubelet does) is applied with the source `file:<path>`: a new
//! file starts its pods, a changed one replaces the pods whose manifest
//! changed (and deletes those it no longer has), a removed one stops them.
//! A file that does not validate changes nothing and is reported once.
//!
//! The directory is read every second (kubelet: 20 s, with inotify between).

use super::{db::PodPhase, Agent};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Watch `dir` until the agent stops.
pub(super) async fn watch(agent: Arc<Agent>, dir: PathBuf) {
    let interval = std::env::var("PODRUN_MANIFESTS_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(1), Duration::from_millis);
    // The text last seen of each file, good or bad.
    let mut seen: HashMap<PathBuf, String> = HashMap::new();
    loop {
        scan(&agent, &dir, &mut seen).await;
        tokio::time::sleep(interval).await;
    }
}

fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.')
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
                && p.is_file()
        })
        .collect();
    files.sort();
    files
}

async fn scan(agent: &Arc<Agent>, dir: &Path, seen: &mut HashMap<PathBuf, String>) {
    let files = manifest_files(dir);
    let present: HashSet<&PathBuf> = files.iter().collect();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        if seen.get(file) == Some(&text) {
            continue;
        }
        seen.insert(file.clone(), text.clone());
        let source = format!("file:{}", file.display());
        let name = file.display().to_string();
        match super::apply(
            agent,
            &[(name, text.clone())],
            &source,
            super::Existing::Update,
        )
        .await
        {
            Ok(super::api::Response::Done {
                lines, warnings, ..
            }) => {
                for l in lines.iter().filter(|l| !l.ends_with(" unchanged")) {
                    tracing::info!("{}: {l}", file.display());
                }
                for w in warnings {
                    tracing::warn!("{}: {w}", file.display());
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!("{}: {}", file.display(), e);
                continue;
            }
        }
        // Pods the file no longer has are deleted.
        let names: HashSet<(String, String)> = podrun_spec::load(&text, "")
            .map(|objects| {
                objects
                    .iter()
                    .filter(|o| o.kind() == "Pod")
                    .map(|o| (super::namespace_of(o), o.name().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        delete_where(agent, |row_source, key| {
            row_source == source && !names.contains(key)
        })
        .await;
    }
    // Files gone: their pods stop.
    let gone: Vec<PathBuf> = seen
        .keys()
        .filter(|f| !present.contains(f))
        .cloned()
        .collect();
    for f in &gone {
        seen.remove(f);
    }
    // Also pods of files removed while no agent watched.
    let dir_prefix = format!("file:{}/", dir.display());
    delete_where(agent, |row_source, _| {
        row_source.starts_with(&dir_prefix)
            && !present.contains(&PathBuf::from(&row_source["file:".len()..]))
    })
    .await;
}

async fn delete_where(agent: &Arc<Agent>, doomed: impl Fn(&str, &(String, String)) -> bool) {
    let Ok(rows) = agent.db().pods() else {
        return;
    };
    for row in rows {
        let key = (row.namespace.clone(), row.name.clone());
        if row.state == PodPhase::Deleting || !doomed(&row.source, &key) {
            continue;
        }
        tracing::info!(
            "pod/{}: its static manifest {} is gone: deleting it",
            row.name,
            row.source.trim_start_matches("file:")
        );
        if let Err(e) = super::delete(
            agent,
            &row.namespace,
            std::slice::from_ref(&row.name),
            None,
            true,
        )
        .await
        {
            tracing::warn!("pod/{}: delete: {}", row.name, e);
        }
    }
}
