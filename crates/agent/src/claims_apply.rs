//! The agent's requests on PersistentVolumeClaims: store one (`apply`), make
//! its directory before the commit, list them (`get pvc`) and delete them
//! (`delete pvc`), refused while a pod that has not terminated uses one.
//! The claim's own rules are in [`crate::claims`].

use crate::api::Response;
use crate::db::{Change, ObjectRow, PodPhase};
use crate::{claims, encode, worker, Agent, AgentError, Result};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use std::path::Path;
use std::sync::Arc;

const KIND: &str = "PersistentVolumeClaim";

/// The change that stores `claim` (None when it is unchanged) and apply's
/// line for it. A re-apply that changes what the API server keeps immutable
/// refuses the request, with the API server's wording.
pub(crate) fn put(
    claim: &PersistentVolumeClaim,
    old: Option<ObjectRow>,
    namespace: &str,
    source: &str,
) -> Result<(Option<Change>, String)> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    let what = format!("persistentvolumeclaim/{name}");
    let old_claim: Option<PersistentVolumeClaim> = old
        .as_ref()
        .map(|o| worker::decode(&o.body, &what))
        .transpose()?;
    let mut claim = claim.clone();
    claim.metadata.namespace = Some(namespace.to_string());
    if let Some(old_claim) = &old_claim {
        let errors = podrun_spec::validate_claim_update(old_claim, &claim);
        if !errors.is_empty() {
            let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return Err(AgentError::Refused(format!(
                "{what}: the PersistentVolumeClaim {name:?} is invalid: {}",
                errors.join("; ")
            )));
        }
    }
    let stored = claims::stored(
        &claim,
        old_claim.as_ref(),
        &claims::new_uid(),
        chrono::Utc::now(),
    );
    let body = encode(&stored, &what)?.to_string();
    let verb = match &old {
        Some(o) if o.body == body => return Ok((None, format!("{what} unchanged"))),
        Some(_) => "configured",
        None => "created",
    };
    let change = Change::PutObject(ObjectRow {
        kind: KIND.to_string(),
        namespace: namespace.to_string(),
        name,
        source: source.to_string(),
        body,
    });
    Ok((Some(change), format!("{what} {verb}")))
}

/// Make the directories of `claims` (namespace, name) under `root`. On a
/// failure the ones made here are removed again (they are empty) and the
/// request is refused: a claim is never stored without its volume.
pub(crate) fn create_dirs(root: &Path, claims: &[(String, String)]) -> Result<()> {
    let mut made = Vec::new();
    for (namespace, name) in claims {
        match claims::create_dir(root, namespace, name) {
            Ok(true) => made.push(claims::dir(root, namespace, name)),
            Ok(false) => {}
            Err(e) => {
                for dir in made.iter().rev() {
                    // Only empty: remove_dir never takes data with it.
                    let _ = std::fs::remove_dir(dir);
                }
                return Err(AgentError::Refused(e.to_string()));
            }
        }
    }
    Ok(())
}

/// `get pvc`: the claims of a namespace (or of all), Bound, as v1 objects.
pub(crate) fn get(agent: &Arc<Agent>, namespace: Option<&str>) -> Result<Response> {
    let rows = match namespace {
        Some(ns) => {
            let mut rows: Vec<ObjectRow> = agent
                .db()
                .objects(ns)?
                .into_iter()
                .filter(|o| o.kind == KIND)
                .collect();
            rows.sort_by(|a, b| a.name.cmp(&b.name));
            rows
        }
        None => agent.db().objects_of_kind(KIND)?,
    };
    let mut items = Vec::new();
    for row in rows {
        let what = format!("persistentvolumeclaim/{}", row.name);
        let claim: PersistentVolumeClaim = worker::decode(&row.body, &what)?;
        items.push(encode(&claims::with_status(&claim), &what)?);
    }
    Ok(Response::Objects { items })
}

/// The pods of `namespace` that use claim `name` and have not terminated:
/// the agent's (a pod being deleted still uses it) and those of `podrun run`
/// in the foreground.
fn users(agent: &Agent, pods: &[crate::db::PodRow], namespace: &str, name: &str) -> Vec<String> {
    let uses = |pod: &Pod| claims::used_by(pod).any(|c| c == name);
    let mut users: Vec<String> = pods
        .iter()
        .filter(|r| r.namespace == namespace && r.state != PodPhase::Finished)
        .filter(|r| serde_json::from_str::<Pod>(&r.manifest).is_ok_and(|p| uses(&p)))
        .map(|r| r.name.clone())
        .collect();
    let ours: std::collections::HashSet<&str> = pods.iter().map(|r| r.pod_id.as_str()).collect();
    for state in crate::pods::list_except(&agent.settings.run_root, &ours) {
        let record = &state.record;
        if !record.agent && record.namespace == namespace && uses(&record.manifest) {
            users.push(record.name.clone());
        }
    }
    users.sort();
    users.dedup();
    users
}

/// `delete pvc NAME…`: each claim not in use loses its record, then its
/// directory and data. One in use is left as it is, with a warning naming the
/// pods (Kubernetes would mark it Terminating, kept by the
/// kubernetes.io/pvc-protection finalizer until they are gone; podrun asks for
/// the pods to be deleted first).
pub(crate) fn delete(agent: &Arc<Agent>, namespace: &str, names: &[String]) -> Result<Response> {
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    for name in names {
        let removed = {
            // Held from the check to the removal: no apply comes between.
            let db = agent.db();
            if db.object(KIND, namespace, name)?.is_none() {
                warnings.push(format!(
                    "persistentvolumeclaims {name:?} not found in namespace {namespace:?}"
                ));
                continue;
            }
            let users = users(agent, &db.pods()?, namespace, name);
            if !users.is_empty() {
                warnings.push(format!(
                    "persistentvolumeclaim {name:?} not deleted: in use by pod {} in namespace {namespace:?} (delete the pod first; its data is kept)",
                    users.join(", ")
                ));
                continue;
            }
            db.remove_object(KIND, namespace, name)?
        };
        if removed {
            match claims::remove_dir(&agent.settings.root, namespace, name) {
                Ok(()) => lines.push(format!("persistentvolumeclaim {name:?} deleted")),
                Err(e) => warnings.push(format!("{e} (the claim's record is removed)")),
            }
        }
    }
    Ok(Response::Done {
        failed: !warnings.is_empty(),
        lines,
        warnings,
    })
}
