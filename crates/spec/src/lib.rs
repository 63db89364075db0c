//! Pod, ConfigMap, Secret and PersistentVolumeClaim model for podrun: strict parsing, validation as the API
//! server does it, and the API server's defaults. No I/O: text in, values out.
//!
//! [`load_runnable`] is what `podrun run -f pod.yaml` and `podrun apply -f` use: it
//! parses every document, validates every object, refuses what this node cannot run
//! yet ([`unsupported`]) and, when all is well, applies defaults. Each problem comes
//! back at once with its field path and line:
//!
//! ```text
//! pod.yaml:12: spec.containers[0].imagePullPolicyy: unknown field
//! pod.yaml:15: spec.containers[1].ports[0].containerPort: must be between 1 and 65535, got 0
//! ```
//!
//! The objects are k8s-openapi's types (re-exported as [`k8s_openapi`]).

#![forbid(unsafe_code)]

mod cgroup;
mod defaults;
mod node;
mod parse;
mod quantity;
mod validate;

use std::collections::HashMap;
use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};

pub use cgroup::{
    milli_cpu_to_quota, milli_cpu_to_shares, pod_cgroup_limits, pod_cgroup_path,
    pod_requests_and_limits, pod_slice_name, PodLimits, MAX_SHARES, MIN_QUOTA, MIN_SHARES,
    POD_CGROUP_ROOT, POD_SLICE_PREFIX, QUOTA_PERIOD,
};
pub use defaults::{apply_defaults, apply_object_defaults, default_pull_policy};
pub use k8s_openapi;
pub use node::{unsupported, SUPPORTED_VOLUMES};
pub use parse::parse_documents;
pub use quantity::{
    canonical_quantity, cpu_millis, memory_bytes, parse_quantity, qos_class, ParsedQuantity,
    QosClass, QuantityError,
};
pub use validate::{
    validate, validate_claim_update, validate_config_map, validate_persistent_volume_claim,
    validate_pod, validate_secret,
};

/// One object of a manifest.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a manifest holds a handful of objects; matching on Pod(pod) beats unboxing"
)]
pub enum Object {
    /// A `v1` Pod.
    Pod(Pod),
    /// A `v1` ConfigMap.
    ConfigMap(ConfigMap),
    /// A `v1` Secret.
    Secret(Secret),
    /// A `v1` PersistentVolumeClaim.
    PersistentVolumeClaim(PersistentVolumeClaim),
}

impl Object {
    /// The kind, as written in manifests (`Pod`).
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Pod(_) => "Pod",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Secret(_) => "Secret",
            Object::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Object::Pod(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::PersistentVolumeClaim(o) => &o.metadata,
        }
    }

    /// `metadata.name`, or "" when unset.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    /// `metadata.namespace`, or "default" when unset (the API server's default).
    pub fn namespace(&self) -> &str {
        match self.metadata().namespace.as_deref() {
            None | Some("") => defaults::DEFAULT_NAMESPACE,
            Some(ns) => ns,
        }
    }
}

/// One problem with a manifest: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, as kubectl writes it (`spec.containers[0].image`); empty for
    /// problems with the text itself.
    pub path: String,
    /// What is wrong: lower-case, no trailing period.
    pub message: String,
    /// The 1-based line in the source, when known.
    pub line: Option<usize>,
}

impl FieldError {
    /// A problem at `path`, line unknown.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
            line: None,
        }
    }

    pub(crate) fn at(path: impl Into<String>, line: usize, message: impl Into<String>) -> Self {
        FieldError {
            line: Some(line),
            ..FieldError::new(path, message)
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one source, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct SpecErrors {
    /// What was read (usually the file name).
    pub source_name: String,
    /// The problems, in document order.
    pub errors: Vec<FieldError>,
}

impl SpecErrors {
    /// Problems found in `source_name`.
    pub fn new(source_name: impl Into<String>, errors: Vec<FieldError>) -> Self {
        SpecErrors {
            source_name: source_name.into(),
            errors,
        }
    }

    /// One line per problem: `source:line: path: message` (`source: path: message`
    /// when the line is unknown).
    fn render(&self) -> String {
        let lines: Vec<String> = self
            .errors
            .iter()
            .map(|e| match e.line {
                Some(line) => format!("{}:{line}: {e}", self.source_name),
                None => format!("{}: {e}", self.source_name),
            })
            .collect();
        lines.join("\n")
    }
}

/// The pod's containers in the order kubelet knows them: init containers
/// (native sidecars among them) in order, then the main containers.
pub fn containers(
    pod: &k8s_openapi::api::core::v1::Pod,
) -> impl Iterator<Item = &k8s_openapi::api::core::v1::Container> {
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
}

/// Parses, validates and defaults every object of a manifest, as the API server would
/// take it. All problems are returned at once, each with its line; objects come back
/// with the API server's defaults applied.
pub fn load(text: &str, source: &str) -> Result<Vec<Object>, SpecErrors> {
    load_checked(text, source, false)
}

/// [`load`], refusing also what this node cannot run yet ([`unsupported`]), with the
/// same paths and lines: what `podrun run -f` and `podrun apply -f` do with a file.
pub fn load_runnable(text: &str, source: &str) -> Result<Vec<Object>, SpecErrors> {
    load_checked(text, source, true)
}

fn load_checked(text: &str, source: &str, runnable: bool) -> Result<Vec<Object>, SpecErrors> {
    let parsed = parse::parse(text);
    let mut errors = parsed.errors.clone();
    let mut seen: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for found in &parsed.objects {
        let node_errors = if runnable {
            unsupported(&found.object)
        } else {
            Vec::new()
        };
        for error in validate(&found.object).into_iter().chain(node_errors) {
            errors.push((
                found.document,
                FieldError::new(join_path(&found.base, &error.path), error.message),
            ));
        }
        let object = &found.object;
        let key = (object.kind(), object.namespace(), object.name());
        if key.2.is_empty() {
            continue;
        }
        if let Some(first) = seen.insert(key, found.document) {
            errors.push((
                found.document,
                FieldError::new(
                    join_path(&found.base, "metadata.name"),
                    format!(
                        "duplicate {} {:?} in namespace {:?} (also in document {first})",
                        key.0, key.2, key.1
                    ),
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(SpecErrors::new(source, parsed.located(errors)));
    }
    Ok(parsed
        .objects
        .into_iter()
        .map(|found| {
            let mut object = found.object;
            apply_object_defaults(&mut object);
            object
        })
        .collect())
}

/// `parent.key`, or `key` at the root; `parent[i]` when `key` is an index.
pub(crate) fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else if key.is_empty() {
        parent.to_string()
    } else if key.starts_with('[') {
        format!("{parent}{key}")
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests;
