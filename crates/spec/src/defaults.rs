//! The API server's defaults (pkg/apis/core/v1/defaults.go), applied in place.
//!
//! Every later layer reads a defaulted object, so "unset" never has to be interpreted
//! twice: `restartPolicy` is always there, a probe always has its period, a port its
//! protocol. Defaulting is idempotent.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, HTTPGetAction, LifecycleHandler, ObjectFieldSelector, Pod,
    PodSecurityContext, Probe, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::Object;

/// The namespace of an object that names none.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";
/// `v1.DefaultTerminationGracePeriodSeconds`.
pub(crate) const DEFAULT_TERMINATION_GRACE_PERIOD: i64 = 30;
/// `v1.TerminationMessagePathDefault`.
const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Volume file mode (`0644`) when a configMap, secret, downwardAPI or projected volume
/// names none.
const DEFAULT_MODE: i32 = 0o644;

/// The image pull policy the API server gives a container that sets none: `Always` for
/// the `latest` tag or no tag at all (unless pinned by digest), else `IfNotPresent`
/// (`SetDefaults_Container`).
pub fn default_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    // A tag follows the last ':' of the last path component (a registry port does not count).
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':').map(|(_, tag)| tag) {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if digest => "IfNotPresent",
        None => "Always",
    }
}

/// Applies the API server's defaults to a Pod: restartPolicy `Always`, dnsPolicy
/// `ClusterFirst`, terminationGracePeriodSeconds 30, enableServiceLinks, namespace
/// `default`, per-container pull policy, termination message path and policy, port
/// protocol `TCP`, probe timings (1 s timeout, 10 s period, thresholds 1 and 3), httpGet
/// scheme `HTTP` and path `/`, volume modes `0644`, hostPath type "", an emptyDir for a
/// volume with no source, and requests from limits.
pub fn apply_defaults(pod: &mut Pod) {
    set_str(&mut pod.metadata.namespace, DEFAULT_NAMESPACE);
    default_requests_from_limits(pod);
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    set_str(&mut spec.dns_policy, "ClusterFirst");
    set_str(&mut spec.restart_policy, "Always");
    set_str(&mut spec.scheduler_name, "default-scheduler");
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_TERMINATION_GRACE_PERIOD);
    spec.enable_service_links.get_or_insert(true);
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    let host_network = spec.host_network == Some(true);
    for container in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        container_defaults(container, host_network);
    }
    for ephemeral in spec.ephemeral_containers.iter_mut().flatten() {
        if ephemeral
            .image_pull_policy
            .as_deref()
            .unwrap_or("")
            .is_empty()
        {
            let policy = default_pull_policy(ephemeral.image.as_deref().unwrap_or(""));
            ephemeral.image_pull_policy = Some(policy.to_string());
        }
        set_str(
            &mut ephemeral.termination_message_path,
            TERMINATION_MESSAGE_PATH,
        );
        set_str(&mut ephemeral.termination_message_policy, "File");
    }
    for volume in spec.volumes.iter_mut().flatten() {
        volume_defaults(volume);
    }
}

/// Applies defaults to any object: [`apply_defaults`] for a Pod; for a ConfigMap the
/// namespace; for a Secret the namespace, type `Opaque`, and `stringData` merged over
/// `data` (the API server stores only `data`).
pub fn apply_object_defaults(object: &mut Object) {
    match object {
        Object::Pod(pod) => apply_defaults(pod),
        Object::ConfigMap(config_map) => {
            set_str(&mut config_map.metadata.namespace, DEFAULT_NAMESPACE);
        }
        Object::PersistentVolumeClaim(claim) => {
            set_str(&mut claim.metadata.namespace, DEFAULT_NAMESPACE);
            // SetDefaults_PersistentVolumeClaimSpec.
            if let Some(spec) = claim.spec.as_mut() {
                set_str(&mut spec.volume_mode, "Filesystem");
            }
        }
        Object::Secret(secret) => {
            set_str(&mut secret.metadata.namespace, DEFAULT_NAMESPACE);
            set_str(&mut secret.type_, "Opaque");
            if let Some(strings) = secret.string_data.take() {
                let data = secret.data.get_or_insert_with(BTreeMap::new);
                for (key, value) in strings {
                    data.insert(key, k8s_openapi::ByteString(value.into_bytes()));
                }
            }
        }
    }
}

fn set_str(field: &mut Option<String>, default: &str) {
    if field.as_deref().unwrap_or("").is_empty() {
        *field = Some(default.to_string());
    }
}

fn container_defaults(c: &mut Container, host_network: bool) {
    if c.image_pull_policy.as_deref().unwrap_or("").is_empty() {
        let policy = default_pull_policy(c.image.as_deref().unwrap_or(""));
        c.image_pull_policy = Some(policy.to_string());
    }
    set_str(&mut c.termination_message_path, TERMINATION_MESSAGE_PATH);
    set_str(&mut c.termination_message_policy, "File");
    for port in c.ports.iter_mut().flatten() {
        set_str(&mut port.protocol, "TCP");
        // defaultHostNetworkPorts: on the host network the host port is the container port.
        if host_network && port.host_port.unwrap_or(0) == 0 {
            port.host_port = Some(port.container_port);
        }
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        probe_defaults(probe);
    }
    if let Some(lifecycle) = c.lifecycle.as_mut() {
        for hook in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
            .into_iter()
            .flatten()
        {
            hook_defaults(hook);
        }
    }
    for var in c.env.iter_mut().flatten() {
        if let Some(field_ref) = var.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            field_ref_defaults(field_ref);
        }
    }
}

fn probe_defaults(probe: &mut Probe) {
    for (field, default) in [
        (&mut probe.timeout_seconds, 1),
        (&mut probe.period_seconds, 10),
        (&mut probe.success_threshold, 1),
        (&mut probe.failure_threshold, 3),
    ] {
        if field.unwrap_or(0) == 0 {
            *field = Some(default);
        }
    }
    if let Some(http) = probe.http_get.as_mut() {
        http_defaults(http);
    }
}

fn hook_defaults(hook: &mut LifecycleHandler) {
    if let Some(http) = hook.http_get.as_mut() {
        http_defaults(http);
    }
}

fn http_defaults(http: &mut HTTPGetAction) {
    set_str(&mut http.path, "/");
    set_str(&mut http.scheme, "HTTP");
}

fn field_ref_defaults(field_ref: &mut ObjectFieldSelector) {
    set_str(&mut field_ref.api_version, "v1");
}

fn volume_defaults(volume: &mut Volume) {
    if volume_is_bare(volume) {
        // SetDefaults_Volume: a volume with no source is an emptyDir.
        volume.empty_dir = Some(EmptyDirVolumeSource::default());
    }
    if let Some(dir) = volume.empty_dir.as_mut() {
        dir.medium.get_or_insert_with(String::new);
    }
    if let Some(host) = volume.host_path.as_mut() {
        host.type_.get_or_insert_with(String::new);
    }
    if let Some(cm) = volume.config_map.as_mut() {
        cm.default_mode.get_or_insert(DEFAULT_MODE);
    }
    if let Some(secret) = volume.secret.as_mut() {
        secret.default_mode.get_or_insert(DEFAULT_MODE);
    }
    if let Some(downward) = volume.downward_api.as_mut() {
        downward.default_mode.get_or_insert(DEFAULT_MODE);
        for item in downward.items.iter_mut().flatten() {
            if let Some(field_ref) = item.field_ref.as_mut() {
                field_ref_defaults(field_ref);
            }
        }
    }
    if let Some(image) = volume.image.as_mut() {
        // SetDefaults_ImageVolumeSource: as a container's imagePullPolicy.
        let policy = default_pull_policy(image.reference.as_deref().unwrap_or(""));
        set_str(&mut image.pull_policy, policy);
    }
    if let Some(projected) = volume.projected.as_mut() {
        projected.default_mode.get_or_insert(DEFAULT_MODE);
        for source in projected.sources.iter_mut().flatten() {
            if let Some(token) = source.service_account_token.as_mut() {
                token.expiration_seconds.get_or_insert(3600);
            }
            let items = source
                .downward_api
                .iter_mut()
                .flat_map(|d| d.items.iter_mut().flatten());
            for item in items {
                if let Some(field_ref) = item.field_ref.as_mut() {
                    field_ref_defaults(field_ref);
                }
            }
        }
    }
}

/// True when no volume source at all is set (compared field by field through the
/// default value, so a source added to k8s-openapi later still counts).
fn volume_is_bare(volume: &Volume) -> bool {
    let bare = Volume {
        name: volume.name.clone(),
        ..Volume::default()
    };
    *volume == bare
}

/// `SetDefaults_Pod`'s resource part: a container's missing requests default to its
/// limits; pod-level requests (PodLevelResources) default to the containers' aggregate
/// requests, then to the pod-level limits (`defaultPodRequests`).
pub(crate) fn default_requests_from_limits(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    for container in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        let Some(resources) = container.resources.as_mut() else {
            continue;
        };
        let Some(limits) = resources.limits.as_ref() else {
            continue;
        };
        let requests = resources.requests.get_or_insert_with(BTreeMap::new);
        for (name, limit) in limits {
            requests
                .entry(name.clone())
                .or_insert_with(|| limit.clone());
        }
    }
    let has_pod_limits = spec
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .is_some_and(|l| !l.is_empty());
    if !has_pod_limits {
        return;
    }
    let aggregate = crate::quantity::aggregate_container_requests(pod);
    let Some(resources) = pod.spec.as_mut().and_then(|s| s.resources.as_mut()) else {
        return;
    };
    let mut requests = resources.requests.clone().unwrap_or_default();
    for name in ["cpu", "memory"] {
        if let Some(amount) = aggregate.get(name).filter(|a| !a.is_zero()) {
            requests
                .entry(name.to_string())
                .or_insert_with(|| Quantity(amount.to_string()));
        }
    }
    for (name, limit) in resources.limits.iter().flatten() {
        let supported = name == "cpu" || name == "memory" || name.starts_with("hugepages-");
        if supported {
            requests
                .entry(name.clone())
                .or_insert_with(|| limit.clone());
        }
    }
    if !requests.is_empty() {
        resources.requests = Some(requests);
    }
}

#[cfg(test)]
mod tests;
