//! What this node can run, checked apart from validation: a Pod the API server accepts
//! may still ask for something podrun cannot give it yet. kubelet finds that out only
//! when it sets the pod up (a volume without its plugin fails to mount, again and
//! again); podrun refuses such a manifest at `podrun apply` and `podrun run`, with the
//! field path, before anything is stored, pulled or started.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};

use crate::validate::volume_sources;
use crate::{FieldError, Object};

/// The volume types podrun mounts (podrun-agent's `create::volume_mounts` and `volumes`).
pub const SUPPORTED_VOLUMES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "configMap",
    "secret",
    "downwardAPI",
    "projected",
    "image",
    "persistentVolumeClaim",
];

/// Every part of `object` that this node cannot run, each with its field path
/// (`spec.volumes[2].configMap`); empty when it can run all of it. Only Pods ask
/// anything of the node. Lines are unknown here: [`crate::load_runnable`] adds them.
pub fn unsupported(object: &Object) -> Vec<FieldError> {
    match object {
        Object::Pod(pod) => unsupported_in_pod(pod),
        Object::PersistentVolumeClaim(claim) => unsupported_in_claim(claim),
        Object::ConfigMap(_) | Object::Secret(_) => Vec::new(),
    }
}

/// A claim's volume is a directory of the node's: a raw block device is
/// beyond it.
fn unsupported_in_claim(claim: &PersistentVolumeClaim) -> Vec<FieldError> {
    let mode = claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    match mode {
        Some("Block") => vec![FieldError::new(
            "spec.volumeMode",
            "unsupported value: podrun's claims are directories (Filesystem), not Block devices",
        )],
        _ => Vec::new(),
    }
}

fn unsupported_in_pod(pod: &Pod) -> Vec<FieldError> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    let mut errors = Vec::new();
    // Every volume, mounted or not: kubelet sets up all of a pod's volumes before
    // its containers start (pkg/kubelet/volumemanager, WaitForAttachAndMount).
    for (i, volume) in volumes.enumerate() {
        // A volume without a source is an emptyDir (SetDefaults_Volume).
        for source in volume_sources(volume) {
            if !SUPPORTED_VOLUMES.contains(&source) {
                errors.push(FieldError::new(
                    format!("spec.volumes[{i}].{source}"),
                    format!(
                        "unsupported value: podrun does not support {source} volumes yet (supported: {})",
                        SUPPORTED_VOLUMES.join(", ")
                    ),
                ));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_documents;

    fn pod_with_volumes(volumes: &str) -> Object {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - {{name: c, image: busybox}}\n  volumes:\n{volumes}"
        );
        parse_documents(&text, "p.yaml").unwrap().remove(0)
    }

    fn paths_and_messages(object: &Object) -> Vec<(String, String)> {
        unsupported(object)
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    }

    #[test]
    fn the_volume_types_podrun_mounts_run() {
        let pod = pod_with_volumes(concat!(
            "  - {name: a, emptyDir: {}}\n  - {name: b, hostPath: {path: /tmp}}\n  - {name: c}\n",
            "  - {name: d, configMap: {name: conf}}\n  - {name: e, secret: {secretName: tls}}\n",
            "  - {name: f, downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}}\n",
            "  - {name: g, projected: {sources: [{configMap: {name: conf}}]}}\n",
            "  - {name: h, persistentVolumeClaim: {claimName: data, readOnly: true}}\n",
        ));
        assert_eq!(paths_and_messages(&pod), vec![]);
    }

    #[test]
    fn every_other_volume_type_is_refused_with_its_path() {
        let volumes: String = [
            "{name: a, emptyDir: {}}",
            "{name: h, ephemeral: {volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce]}}}}",
            "{name: i, nfs: {server: nfs.local, path: /export}}",
        ]
        .iter()
        .map(|v| format!("  - {v}\n"))
        .collect();
        let pod = pod_with_volumes(&volumes);
        let refused = |i: usize, source: &str| {
            (
                format!("spec.volumes[{i}].{source}"),
                format!("unsupported value: podrun does not support {source} volumes yet (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected, image, persistentVolumeClaim)"),
            )
        };
        assert_eq!(
            paths_and_messages(&pod),
            vec![refused(1, "ephemeral"), refused(2, "nfs"),]
        );
    }

    #[test]
    fn a_block_claim_is_refused_a_filesystem_claim_is_not() {
        let claim = |mode: &str| {
            let text = format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: d}}\nspec:\n  accessModes: [ReadWriteOnce]\n  volumeMode: {mode}\n  resources: {{requests: {{storage: 1Gi}}}}\n");
            parse_documents(&text, "c.yaml").unwrap().remove(0)
        };
        assert_eq!(unsupported(&claim("Filesystem")), vec![]);
        assert_eq!(
            paths_and_messages(&claim("Block")),
            vec![(
                "spec.volumeMode".to_string(),
                "unsupported value: podrun's claims are directories (Filesystem), not Block devices".to_string()
            )]
        );
    }

    #[test]
    fn config_maps_and_secrets_ask_nothing_of_the_node() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n";
        for object in parse_documents(text, "t.yaml").unwrap() {
            assert_eq!(unsupported(&object), vec![]);
        }
    }
}
