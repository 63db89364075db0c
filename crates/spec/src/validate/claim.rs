//! PersistentVolumeClaim rules: `ValidatePersistentVolumeClaim` and
//! `ValidatePersistentVolumeClaimUpdate` (pkg/apis/core/validation/validation.go).

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use super::{object_meta, Errors};
use crate::quantity::parse_quantity;
use crate::FieldError;

/// The access modes the API server knows, in its sorted order (`NotSupported`).
const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// Validates a PersistentVolumeClaim (`ValidatePersistentVolumeClaim`): its
/// name, at least one known access mode (ReadWriteOncePod alone), and
/// `resources.requests.storage` a quantity greater than zero.
pub fn validate_persistent_volume_claim(claim: &PersistentVolumeClaim) -> Vec<FieldError> {
    let mut errors = Errors::default();
    object_meta(&mut errors, &claim.metadata, "metadata");
    let Some(spec) = &claim.spec else {
        errors.required("spec");
        return errors.0;
    };
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    if modes.is_empty() {
        errors.add(
            "spec.accessModes",
            "required value: at least 1 access mode is required",
        );
    }
    for mode in modes {
        errors.one_of("spec.accessModes", mode, ACCESS_MODES);
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        errors.add(
            "spec.accessModes",
            "forbidden: may not use ReadWriteOncePod with other access modes",
        );
    }
    if let Some(mode) = spec.volume_mode.as_deref().filter(|m| !m.is_empty()) {
        errors.one_of("spec.volumeMode", mode, &["Block", "Filesystem"]);
    }
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    const STORAGE: &str = "spec.resources[storage]";
    match storage {
        None => errors.required(STORAGE),
        Some(q) => match parse_quantity(&q.0) {
            Err(e) => errors.add(STORAGE, format!("invalid value {:?}: {e}", q.0)),
            Ok(parsed) if parsed.is_negative() || parsed.is_zero() => errors.add(
                STORAGE,
                format!("invalid value {:?}: must be greater than zero", q.0),
            ),
            Ok(_) => {}
        },
    }
    errors.0
}

/// What the API server refuses in a re-apply of a bound claim
/// (`ValidatePersistentVolumeClaimUpdate`): any change of `spec` but
/// `resources.requests` and `volumeAttributesClassName`, and a smaller
/// storage request (podrun's claims are bound at once, so every stored claim
/// is a bound one).
pub fn validate_claim_update(
    old: &PersistentVolumeClaim,
    new: &PersistentVolumeClaim,
) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let (Some(old_spec), Some(new_spec)) = (&old.spec, &new.spec) else {
        return errors.0;
    };
    let mut unchanged = new_spec.clone();
    unchanged.resources = old_spec.resources.clone();
    unchanged.volume_attributes_class_name = old_spec.volume_attributes_class_name.clone();
    // The API server sets volumeName when it binds; a manifest leaves it out.
    if unchanged.volume_name.as_deref().unwrap_or("").is_empty() {
        unchanged.volume_name = old_spec.volume_name.clone();
    }
    if &unchanged != old_spec {
        errors.add(
            "spec",
            "forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        );
    }
    let storage = |c: &PersistentVolumeClaim| {
        let q = c
            .spec
            .as_ref()?
            .resources
            .as_ref()?
            .requests
            .as_ref()?
            .get("storage")?;
        parse_quantity(&q.0).ok()
    };
    if let (Some(was), Some(now)) = (storage(old), storage(new)) {
        if now.nanos() < was.nanos() {
            errors.add(
                "spec.resources.requests.storage",
                "forbidden: field can not be less than status.capacity",
            );
        }
    }
    errors.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_documents, Object};

    fn claim(spec: &str) -> PersistentVolumeClaim {
        let text = format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data}}\nspec:\n{spec}"
        );
        match parse_documents(&text, "c.yaml").unwrap().remove(0) {
            Object::PersistentVolumeClaim(c) => c,
            other => panic!("not a claim: {other:?}"),
        }
    }

    fn problems(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(|e| e.to_string()).collect()
    }

    const GOOD: &str = "  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";

    #[test]
    fn a_claim_needs_access_modes_and_a_positive_storage_request() {
        let cases: &[(&str, &[&str])] = &[
            (GOOD, &[]),
            (
                "  resources: {requests: {storage: 1Gi}}\n",
                &["spec.accessModes: required value: at least 1 access mode is required"],
            ),
            (
                "  accessModes: [ReadWriteSometimes]\n  resources: {requests: {storage: 1Gi}}\n",
                &[r#"spec.accessModes: unsupported value "ReadWriteSometimes": supported values: "ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod""#],
            ),
            (
                "  accessModes: [ReadWriteOncePod, ReadOnlyMany]\n  resources: {requests: {storage: 1Gi}}\n",
                &["spec.accessModes: forbidden: may not use ReadWriteOncePod with other access modes"],
            ),
            (
                "  accessModes: [ReadWriteOnce]\n",
                &["spec.resources[storage]: required value"],
            ),
            (
                "  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: '0'}}\n",
                &[r#"spec.resources[storage]: invalid value "0": must be greater than zero"#],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(
                problems(validate_persistent_volume_claim(&claim(spec))),
                *want,
                "{spec}"
            );
        }
    }

    #[test]
    fn a_storage_request_that_is_not_a_quantity_is_refused_with_its_path() {
        let errors = crate::load(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: lots}}\n",
            "c.yaml",
        )
        .unwrap_err();
        assert_eq!(errors.errors.len(), 1, "{errors}");
        assert!(errors.to_string().starts_with("c.yaml"), "{errors}");
        assert!(errors.to_string().contains("storage"), "{errors}");
    }

    #[test]
    fn a_bound_claim_changes_only_its_requests() {
        let old = claim(GOOD);
        let mut bound = old.clone();
        bound.spec.as_mut().unwrap().volume_name = Some("pvc-1".into());
        let immutable = "spec: forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";
        let cases: &[(&str, &[&str])] = &[
            (GOOD, &[]),
            ("  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 2Gi}}\n", &[]),
            (
                "  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n  volumeAttributesClassName: gold\n",
                &[],
            ),
            (
                "  accessModes: [ReadWriteMany]\n  resources: {requests: {storage: 1Gi}}\n",
                &[immutable],
            ),
            (
                "  accessModes: [ReadWriteOnce]\n  storageClassName: fast\n  resources: {requests: {storage: 1Gi}}\n",
                &[immutable],
            ),
            (
                "  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 512Mi}}\n",
                &["spec.resources.requests.storage: forbidden: field can not be less than status.capacity"],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(
                problems(validate_claim_update(&bound, &claim(spec))),
                *want,
                "{spec}"
            );
        }
    }

    #[test]
    fn claims_are_parsed_defaulted_and_other_api_versions_refused() {
        let objects = crate::load(
            &format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data}}\nspec:\n{GOOD}"),
            "c.yaml",
        )
        .unwrap();
        let Object::PersistentVolumeClaim(c) = &objects[0] else {
            panic!("{objects:?}")
        };
        assert_eq!(c.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            c.spec.as_ref().unwrap().volume_mode.as_deref(),
            Some("Filesystem")
        );
        let errors = crate::load(
            &format!("apiVersion: v2\nkind: PersistentVolumeClaim\nmetadata: {{name: data}}\nspec:\n{GOOD}"),
            "c.yaml",
        )
        .unwrap_err();
        assert!(
            errors
                .to_string()
                .contains("unsupported apiVersion \"v2\" for kind PersistentVolumeClaim"),
            "{errors}"
        );
    }
}
