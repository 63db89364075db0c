//! `ValidateVolumes` and `ValidateVolumeMounts` (pkg/apis/core/validation/validation.go).

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, ProjectedVolumeSource, Volume, VolumeMount,
};

use super::container::{field_selector, quantity, resource_selector};
use super::names::dns1123_label;
use super::pod::Pod;
use super::{at, index, set, Errors};

const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

pub(super) fn mounts(e: &mut Errors, c: &Container, path: &str, pod: &Pod) {
    let privileged = c.security_context.as_ref().and_then(|s| s.privileged) == Some(true);
    let mut mount_paths = HashSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = index(path, "volumeMounts", i);
        mount(e, m, &mp, pod, privileged);
        if !m.mount_path.is_empty() && !mount_paths.insert(m.mount_path.as_str()) {
            e.invalid(
                &at(&mp, "mountPath"),
                &m.mount_path,
                vec!["must be unique".into()],
            );
        }
    }
}

pub(super) fn mount(e: &mut Errors, m: &VolumeMount, mp: &str, pod: &Pod, privileged: bool) {
    if m.name.is_empty() {
        e.required(&at(mp, "name"));
    } else if !pod.volumes.contains_key(m.name.as_str()) {
        e.add(
            at(mp, "name"),
            format!("not found: no volume named {:?} in spec.volumes", m.name),
        );
    }
    if m.mount_path.is_empty() {
        e.required(&at(mp, "mountPath"));
    } else if !m.mount_path.starts_with('/') {
        e.invalid(
            &at(mp, "mountPath"),
            &m.mount_path,
            vec!["must be an absolute path".into()],
        );
    }
    let sub_path = set(&m.sub_path);
    if let Some(sub) = sub_path {
        local_descending_path(e, &at(mp, "subPath"), sub);
    }
    if let Some(expr) = set(&m.sub_path_expr) {
        if sub_path.is_some() {
            e.invalid(
                &at(mp, "subPathExpr"),
                expr,
                vec!["subPathExpr and subPath are mutually exclusive".into()],
            );
        }
        local_descending_path(e, &at(mp, "subPathExpr"), expr);
    }
    let propagation = m.mount_propagation.as_deref();
    if let Some(mode) = propagation {
        e.one_of(
            &at(mp, "mountPropagation"),
            mode,
            &["Bidirectional", "HostToContainer", "None"],
        );
        if mode == "Bidirectional" && !privileged {
            e.add(
                at(mp, "mountPropagation"),
                "Bidirectional mount propagation is available only to privileged containers",
            );
        }
    }
    match m.recursive_read_only.as_deref() {
        None | Some("Disabled") => {}
        Some("IfPossible" | "Enabled") => {
            if m.read_only != Some(true) {
                e.add(
                    at(mp, "recursiveReadOnly"),
                    "may only be specified when readOnly is true",
                );
            }
            if propagation.is_some_and(|p| p != "None") {
                e.add(
                    at(mp, "recursiveReadOnly"),
                    "may only be specified when mountPropagation is None or not specified",
                );
            }
        }
        Some(other) => e.one_of(
            &at(mp, "recursiveReadOnly"),
            other,
            &["Disabled", "Enabled", "IfPossible"],
        ),
    }
}

/// `validateLocalDescendingPath`: relative, no `..` element.
pub(super) fn local_descending_path(e: &mut Errors, path: &str, value: &str) {
    if value.starts_with('/') {
        e.invalid(path, value, vec!["must be a relative path".into()]);
    }
    if value.split('/').any(|part| part == "..") {
        e.invalid(path, value, vec!["must not contain '..'".into()]);
    }
}

/// `validateLocalNonReservedPath`: also must not start with `..` (kubelet's own files).
fn local_non_reserved_path(e: &mut Errors, path: &str, value: &str) {
    local_descending_path(e, path, value);
    if value.starts_with("..") && !value.starts_with("../") {
        e.invalid(path, value, vec!["must not start with '..'".into()]);
    }
}

pub(super) fn volumes<'a>(
    e: &mut Errors,
    list: &'a [Volume],
    path: &str,
    containers: &HashSet<&str>,
) -> HashMap<&'a str, &'a Volume> {
    let mut by_name = HashMap::new();
    for (i, v) in list.iter().enumerate() {
        let vp = format!("{path}[{i}]");
        if v.name.is_empty() {
            e.required(&at(&vp, "name"));
        } else {
            e.invalid(&at(&vp, "name"), &v.name, dns1123_label(&v.name));
            if by_name.insert(v.name.as_str(), v).is_some() {
                e.add(at(&vp, "name"), format!("duplicate value {:?}", v.name));
            }
        }
        // No source at all is fine: SetDefaults_Volume makes it an emptyDir. Which
        // types podrun can mount is the node's matter (crate::node), not validity.
        for source in volume_sources(v).into_iter().skip(1) {
            e.add(at(&vp, source), "may not specify more than 1 volume type");
        }
        volume_source(e, v, &vp, containers);
    }
    by_name
}

/// The sources set in `v`, by their field names (`configMap`), in alphabetical order.
pub(crate) fn volume_sources(v: &Volume) -> Vec<&'static str> {
    let sources = [
        ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
        ("azureDisk", v.azure_disk.is_some()),
        ("azureFile", v.azure_file.is_some()),
        ("cephfs", v.cephfs.is_some()),
        ("cinder", v.cinder.is_some()),
        ("configMap", v.config_map.is_some()),
        ("csi", v.csi.is_some()),
        ("downwardAPI", v.downward_api.is_some()),
        ("emptyDir", v.empty_dir.is_some()),
        ("ephemeral", v.ephemeral.is_some()),
        ("fc", v.fc.is_some()),
        ("flexVolume", v.flex_volume.is_some()),
        ("flocker", v.flocker.is_some()),
        ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ("gitRepo", v.git_repo.is_some()),
        ("glusterfs", v.glusterfs.is_some()),
        ("hostPath", v.host_path.is_some()),
        ("image", v.image.is_some()),
        ("iscsi", v.iscsi.is_some()),
        ("nfs", v.nfs.is_some()),
        ("persistentVolumeClaim", v.persistent_volume_claim.is_some()),
        ("photonPersistentDisk", v.photon_persistent_disk.is_some()),
        ("portworxVolume", v.portworx_volume.is_some()),
        ("projected", v.projected.is_some()),
        ("quobyte", v.quobyte.is_some()),
        ("rbd", v.rbd.is_some()),
        ("scaleIO", v.scale_io.is_some()),
        ("secret", v.secret.is_some()),
        ("storageos", v.storageos.is_some()),
        ("vsphereVolume", v.vsphere_volume.is_some()),
    ];
    sources
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
        .collect()
}

fn volume_source(e: &mut Errors, v: &Volume, vp: &str, containers: &HashSet<&str>) {
    if let Some(dir) = &v.empty_dir {
        let dp = at(vp, "emptyDir");
        match dir.medium.as_deref().unwrap_or("") {
            "" | "Memory" => {}
            "HugePages" => {}
            medium if medium.starts_with("HugePages-") => {
                // kubelet's HugePageSizeFromMedium, at apply rather than at mount.
                let size = &medium["HugePages-".len()..];
                let valid = crate::parse_quantity(size).is_ok_and(|q| q.value() > 0);
                if !valid {
                    e.add(
                        at(&dp, "medium"),
                        format!("{medium:?}: HugePages-<size> needs a positive page size (HugePages-2Mi)"),
                    );
                }
            }
            medium => e.one_of(
                &at(&dp, "medium"),
                medium,
                &["", "Memory", "HugePages", "HugePages-<size>"],
            ),
        }
        if let Some(limit) = &dir.size_limit {
            let lp = at(&dp, "sizeLimit");
            if quantity(e, &limit.0, &lp).is_some_and(|q| q.is_negative()) {
                e.add(lp, "must be greater than or equal to 0");
            }
        }
    }
    if let Some(host) = &v.host_path {
        let hp = at(vp, "hostPath");
        if host.path.is_empty() {
            e.required(&at(&hp, "path"));
        } else if host.path.split('/').any(|part| part == "..") {
            e.invalid(
                &at(&hp, "path"),
                &host.path,
                vec!["must not contain '..'".into()],
            );
        }
        if let Some(kind) = host.type_.as_deref() {
            e.one_of(
                &at(&hp, "type"),
                kind,
                &[
                    "",
                    "BlockDevice",
                    "CharDevice",
                    "Directory",
                    "DirectoryOrCreate",
                    "File",
                    "FileOrCreate",
                    "Socket",
                ],
            );
        }
    }
    if let Some(cm) = &v.config_map {
        let cp = at(vp, "configMap");
        if cm.name.is_empty() {
            e.required(&at(&cp, "name"));
        }
        file_mode(e, &at(&cp, "defaultMode"), cm.default_mode);
        for (i, item) in cm.items.iter().flatten().enumerate() {
            key_to_path(e, item, &index(&cp, "items", i));
        }
    }
    if let Some(claim) = &v.persistent_volume_claim {
        if claim.claim_name.is_empty() {
            e.required(&at(&at(vp, "persistentVolumeClaim"), "claimName"));
        }
    }
    if let Some(secret) = &v.secret {
        let sp = at(vp, "secret");
        if set(&secret.secret_name).is_none() {
            e.required(&at(&sp, "secretName"));
        }
        file_mode(e, &at(&sp, "defaultMode"), secret.default_mode);
        for (i, item) in secret.items.iter().flatten().enumerate() {
            key_to_path(e, item, &index(&sp, "items", i));
        }
    }
    if let Some(downward) = &v.downward_api {
        let dp = at(vp, "downwardAPI");
        file_mode(e, &at(&dp, "defaultMode"), downward.default_mode);
        for (i, file) in downward.items.iter().flatten().enumerate() {
            downward_file(e, file, &index(&dp, "items", i), containers);
        }
    }
    if let Some(projected) = &v.projected {
        projected_source(e, projected, &at(vp, "projected"), containers);
    }
    if let Some(image) = &v.image {
        // validateImageVolumeSource: a pod's image volume names its image.
        let ip = at(vp, "image");
        if set(&image.reference).is_none() {
            e.required(&at(&ip, "reference"));
        }
        if let Some(policy) = set(&image.pull_policy) {
            e.one_of(
                &at(&ip, "pullPolicy"),
                policy,
                &["Always", "IfNotPresent", "Never"],
            );
        }
    }
}

fn file_mode(e: &mut Errors, path: &str, mode: Option<i32>) {
    if let Some(mode) = mode.filter(|m| !(0..=0o777).contains(m)) {
        let shown = if mode < 0 {
            mode.to_string()
        } else {
            format!("0{mode:o}")
        };
        e.add(
            path,
            format!("must be a number between 0 and 0777 (octal), both inclusive, got {shown}"),
        );
    }
}

/// `validateKeyToPath`.
fn key_to_path(e: &mut Errors, item: &KeyToPath, path: &str) {
    if item.key.is_empty() {
        e.required(&at(path, "key"));
    }
    if item.path.is_empty() {
        e.required(&at(path, "path"));
    }
    local_non_reserved_path(e, &at(path, "path"), &item.path);
    file_mode(e, &at(path, "mode"), item.mode);
}

/// `validateDownwardAPIVolumeFile`.
fn downward_file(
    e: &mut Errors,
    file: &DownwardAPIVolumeFile,
    path: &str,
    containers: &HashSet<&str>,
) {
    if file.path.is_empty() {
        e.required(&at(path, "path"));
    }
    local_non_reserved_path(e, &at(path, "path"), &file.path);
    match (&file.field_ref, &file.resource_field_ref) {
        (Some(fs), None) => field_selector(e, fs, &at(path, "fieldRef"), VOLUME_FIELD_PATHS),
        (None, Some(rs)) => {
            resource_selector(e, rs, &at(path, "resourceFieldRef"), containers, true)
        }
        (Some(_), Some(_)) => e.add(
            path,
            "fieldRef and resourceFieldRef can not be specified simultaneously",
        ),
        (None, None) => e.add(path, "one of fieldRef and resourceFieldRef is required"),
    }
    file_mode(e, &at(path, "mode"), file.mode);
}

fn projected_source(
    e: &mut Errors,
    projected: &ProjectedVolumeSource,
    path: &str,
    containers: &HashSet<&str>,
) {
    file_mode(e, &at(path, "defaultMode"), projected.default_mode);
    let mut paths = HashSet::new();
    let mut unique = |e: &mut Errors, item_path: &str, file: &str| {
        if !file.is_empty() && !paths.insert(file.to_string()) {
            e.add(
                at(item_path, "path"),
                format!("conflicting duplicate paths: {file:?}"),
            );
        }
    };
    for (i, source) in projected.sources.iter().flatten().enumerate() {
        let sp = index(path, "sources", i);
        let kinds = [
            ("secret", source.secret.is_some()),
            ("configMap", source.config_map.is_some()),
            ("downwardAPI", source.downward_api.is_some()),
            (
                "serviceAccountToken",
                source.service_account_token.is_some(),
            ),
            ("clusterTrustBundle", source.cluster_trust_bundle.is_some()),
            ("podCertificate", source.pod_certificate.is_some()),
        ];
        if kinds.iter().filter(|(_, present)| *present).count() > 1 {
            e.add(sp.clone(), "may not specify more than 1 volume type");
        }
        for (key, present) in &kinds[3..] {
            if *present {
                e.unsupported_by_podrun(&at(&sp, key), &format!("a {key} projection"));
            }
        }
        let named = [
            (
                "secret",
                source.secret.as_ref().map(|s| (&s.name, &s.items)),
            ),
            (
                "configMap",
                source.config_map.as_ref().map(|s| (&s.name, &s.items)),
            ),
        ];
        for (key, projection) in named {
            let Some((name, items)) = projection else {
                continue;
            };
            let kp = at(&sp, key);
            if name.is_empty() {
                e.required(&at(&kp, "name"));
            }
            for (j, item) in items.iter().flatten().enumerate() {
                let ip = index(&kp, "items", j);
                key_to_path(e, item, &ip);
                unique(e, &ip, &item.path);
            }
        }
        if let Some(downward) = &source.downward_api {
            for (j, file) in downward.items.iter().flatten().enumerate() {
                let ip = index(&at(&sp, "downwardAPI"), "items", j);
                downward_file(e, file, &ip, containers);
                unique(e, &ip, &file.path);
            }
        }
    }
}
