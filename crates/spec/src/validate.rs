//! Validation as the API server does it on create, returning every problem at once.
//!
//! The rules and their order follow Kubernetes' pkg/apis/core/validation/validation.go
//! (`ValidatePodCreate`, `ValidatePodSpec`, `validateContainers`, `ValidateVolumes`,
//! `ValidateConfigMap`, `ValidateSecret`) and the name rules of
//! k8s.io/apimachinery/pkg/util/validation. Messages keep Kubernetes' wording, lower-case.
//! A field that the API server would default (empty string, unset, a zero probe
//! period) is accepted, so an object validates the same before and after
//! [`crate::apply_defaults`]. Where podrun cannot honour a valid field (Windows pods;
//! device plugins) the error says "not supported by podrun". Volume types podrun cannot
//! mount yet are valid here: [`crate::unsupported`] refuses them, as a node would.

mod claim;
mod container;
mod names;
mod pod;
mod volume;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::{join_path, FieldError, Object};
pub use claim::{validate_claim_update, validate_persistent_volume_claim};
pub(crate) use volume::volume_sources;

use names::{config_key, dns1123_subdomain, label_value, qualified_name};

/// Validates any object; see [`validate_pod`], [`validate_config_map`] and [`validate_secret`].
pub fn validate(object: &Object) -> Vec<FieldError> {
    match object {
        Object::Pod(pod) => validate_pod(pod),
        Object::ConfigMap(config_map) => validate_config_map(config_map),
        Object::Secret(secret) => validate_secret(secret),
        Object::PersistentVolumeClaim(claim) => validate_persistent_volume_claim(claim),
    }
}

/// Validates a Pod as `kubectl create` would have it validated, returning every problem
/// with its path (`spec.containers[1].ports[0].containerPort`). Lines are unknown here:
/// [`crate::load`] adds them.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errors = Errors::default();
    object_meta(&mut errors, &pod.metadata, "metadata");
    match &pod.spec {
        Some(spec) => pod::pod_spec(&mut errors, spec, "spec"),
        None => errors.required("spec"),
    }
    errors.0
}

/// Kubernetes caps ConfigMap and Secret payloads at 1 MiB (core.MaxSecretSize).
const MAX_PAYLOAD: usize = 1024 * 1024;

/// Validates a ConfigMap (`ValidateConfigMap`).
pub fn validate_config_map(config_map: &ConfigMap) -> Vec<FieldError> {
    let mut errors = Errors::default();
    object_meta(&mut errors, &config_map.metadata, "metadata");
    let mut size = 0;
    for (key, value) in config_map.data.iter().flatten() {
        let path = join_path("data", key);
        errors.invalid(&path, key, config_key(key));
        if config_map
            .binary_data
            .as_ref()
            .is_some_and(|b| b.contains_key(key))
        {
            errors.invalid(
                &path,
                key,
                vec!["duplicate of key present in binaryData".into()],
            );
        }
        size += value.len();
    }
    for (key, value) in config_map.binary_data.iter().flatten() {
        errors.invalid(&join_path("binaryData", key), key, config_key(key));
        size += value.0.len();
    }
    if size > MAX_PAYLOAD {
        errors.add(
            "",
            format!("must have at most {MAX_PAYLOAD} bytes of data, got {size}"),
        );
    }
    errors.0
}

/// Validates a Secret (`ValidateSecret`), with `stringData` counted as the API server
/// counts it: merged over `data`.
pub fn validate_secret(secret: &Secret) -> Vec<FieldError> {
    let mut errors = Errors::default();
    object_meta(&mut errors, &secret.metadata, "metadata");
    let mut merged: std::collections::BTreeMap<&str, &[u8]> = Default::default();
    for (key, value) in secret.data.iter().flatten() {
        errors.invalid(&join_path("data", key), key, config_key(key));
        merged.insert(key, &value.0);
    }
    for (key, value) in secret.string_data.iter().flatten() {
        errors.invalid(&join_path("stringData", key), key, config_key(key));
        merged.insert(key, value.as_bytes());
    }
    let size: usize = merged.values().map(|v| v.len()).sum();
    if size > MAX_PAYLOAD {
        errors.add(
            "data",
            format!("must have at most {MAX_PAYLOAD} bytes, got {size}"),
        );
    }
    let has = |key: &str| merged.contains_key(key);
    let need = |errors: &mut Errors, key: &str| {
        if !has(key) {
            errors.required(&join_path("data", key));
        }
    };
    match secret.type_.as_deref().unwrap_or("") {
        "kubernetes.io/service-account-token" => {
            let annotation = "kubernetes.io/service-account.name";
            let annotations = secret.metadata.annotations.as_ref();
            if annotations
                .and_then(|a| a.get(annotation))
                .is_none_or(|v| v.is_empty())
            {
                errors.required(&join_path("metadata.annotations", annotation));
            }
        }
        kind @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
            let key = if kind.ends_with("json") {
                ".dockerconfigjson"
            } else {
                ".dockercfg"
            };
            match merged.get(key) {
                None => errors.required(&join_path("data", key)),
                Some(bytes) => {
                    let parsed =
                        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes);
                    if let Err(e) = parsed {
                        errors.add(
                            join_path("data", key),
                            format!("must be a JSON object: {e}"),
                        );
                    }
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            need(&mut errors, "username");
            need(&mut errors, "password");
        }
        "kubernetes.io/ssh-auth" if merged.get("ssh-privatekey").is_none_or(|v| v.is_empty()) => {
            errors.required("data.ssh-privatekey");
        }
        "kubernetes.io/tls" => {
            need(&mut errors, "tls.crt");
            need(&mut errors, "tls.key");
        }
        _ => {}
    }
    errors.0
}

/// `ValidateObjectMeta` for a namespaced object whose name is a DNS-1123 subdomain
/// (pods, configmaps and secrets all are).
fn object_meta(errors: &mut Errors, meta: &ObjectMeta, path: &str) {
    match meta.name.as_deref() {
        None | Some("") if meta.generate_name.is_some() => errors.add(
            join_path(path, "name"),
            "required value (podrun does not generate names from generateName)",
        ),
        None | Some("") => errors.add(join_path(path, "name"), "required value"),
        Some(name) => errors.invalid(&join_path(path, "name"), name, dns1123_subdomain(name)),
    }
    if let Some(namespace) = meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        errors.invalid(
            &join_path(path, "namespace"),
            namespace,
            names::dns1123_label(namespace),
        );
    }
    labels(errors, meta.labels.as_ref(), &join_path(path, "labels"));
    let mut size = 0;
    for (key, value) in meta.annotations.iter().flatten() {
        // Annotation keys are checked lower-cased, as in ValidateAnnotations.
        let messages = qualified_name(&key.to_lowercase());
        errors.invalid(
            &join_path(&join_path(path, "annotations"), key),
            key,
            messages,
        );
        size += key.len() + value.len();
    }
    const MAX_ANNOTATIONS: usize = 256 * 1024;
    if size > MAX_ANNOTATIONS {
        errors.add(
            join_path(path, "annotations"),
            format!("must have at most {MAX_ANNOTATIONS} bytes, got {size}"),
        );
    }
}

/// `ValidateLabels`: qualified-name keys, label values.
fn labels(
    errors: &mut Errors,
    labels: Option<&std::collections::BTreeMap<String, String>>,
    path: &str,
) {
    for (key, value) in labels.into_iter().flatten() {
        let key_path = join_path(path, key);
        errors.invalid(&key_path, key, qualified_name(key));
        errors.invalid(&key_path, value, label_value(value));
    }
}

fn at(path: &str, key: &str) -> String {
    join_path(path, key)
}

fn index(path: &str, key: &str, i: usize) -> String {
    format!("{}[{i}]", join_path(path, key))
}

/// A set, non-empty string field (the API server treats "" as unset).
fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

const INT32_MAX: i64 = i32::MAX as i64;

/// The problems found so far, in the order found.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    fn required(&mut self, path: &str) {
        self.add(path, "required value");
    }

    /// One error per message, in Kubernetes' `Invalid value: "x": message` form.
    fn invalid(&mut self, path: &str, value: &str, messages: Vec<String>) {
        for message in messages {
            self.add(path, format!("invalid value {value:?}: {message}"));
        }
    }

    /// `value` must be one of `supported` (Kubernetes' `NotSupported`).
    fn one_of(&mut self, path: &str, value: &str, supported: &[&str]) {
        if !supported.contains(&value) {
            let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
            self.add(
                path,
                format!(
                    "unsupported value {value:?}: supported values: {}",
                    list.join(", ")
                ),
            );
        }
    }

    fn range(&mut self, path: &str, value: i64, low: i64, high: i64) {
        if value < low || value > high {
            self.add(
                path,
                format!("must be between {low} and {high}, got {value}"),
            );
        }
    }

    fn non_negative(&mut self, path: &str, value: Option<i64>) {
        if let Some(value) = value.filter(|v| *v < 0) {
            self.add(
                path,
                format!("must be greater than or equal to 0, got {value}"),
            );
        }
    }

    fn unsupported_by_podrun(&mut self, path: &str, what: &str) {
        self.add(path, format!("{what} is not supported by podrun"));
    }
}

#[cfg(test)]
mod tests;
