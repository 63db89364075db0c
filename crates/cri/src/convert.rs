//! CRI's protobuf messages to the runtime's configs, and the runtime's
//! answers back: field for field, as api.proto names them. A field the
//! runtime cannot carry out (user namespaces, CDI devices, ID-mapped mounts)
//! is refused with `InvalidArgument`, never dropped.

use crate::proto as pb;
use podrun_runtime as rt;
use podrun_runtime::api;
use std::collections::{BTreeMap, HashMap};
use tonic::Status;

/// What a request carries that podrun cannot do: refused, naming the field.
fn unsupported(field: &str, why: &str) -> Status {
    Status::invalid_argument(format!("{field}: {why}"))
}

fn map(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

fn unmap(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// RFC 3339 (as the runtime records times) to nanoseconds since the epoch;
/// an empty or unreadable time is 0, as CRI reports "never".
pub fn nanos(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(0)
}

pub fn sandbox_metadata(m: Option<pb::PodSandboxMetadata>) -> rt::PodSandboxMetadata {
    let m = m.unwrap_or_default();
    rt::PodSandboxMetadata {
        name: m.name,
        uid: m.uid,
        namespace: m.namespace,
        attempt: m.attempt,
    }
}

pub fn sandbox_metadata_out(m: &rt::PodSandboxMetadata) -> pb::PodSandboxMetadata {
    pb::PodSandboxMetadata {
        name: m.name.clone(),
        uid: m.uid.clone(),
        namespace: m.namespace.clone(),
        attempt: m.attempt,
    }
}

fn namespace_mode(mode: i32) -> Result<rt::NamespaceMode, Status> {
    Ok(match pb::NamespaceMode::try_from(mode) {
        Ok(pb::NamespaceMode::Pod) => rt::NamespaceMode::Pod,
        Ok(pb::NamespaceMode::Container) => rt::NamespaceMode::Container,
        Ok(pb::NamespaceMode::Node) => rt::NamespaceMode::Node,
        Ok(pb::NamespaceMode::Target) => rt::NamespaceMode::Target,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "namespace mode {mode}: unknown"
            )))
        }
    })
}

fn namespace_mode_out(mode: rt::NamespaceMode) -> i32 {
    (match mode {
        rt::NamespaceMode::Pod => pb::NamespaceMode::Pod,
        rt::NamespaceMode::Container => pb::NamespaceMode::Container,
        rt::NamespaceMode::Node => pb::NamespaceMode::Node,
        rt::NamespaceMode::Target => pb::NamespaceMode::Target,
    }) as i32
}

fn namespace_options(o: Option<pb::NamespaceOption>) -> Result<rt::NamespaceOption, Status> {
    let o = o.unwrap_or_default();
    if let Some(userns) = &o.userns_options {
        if namespace_mode(userns.mode)? != rt::NamespaceMode::Node {
            return Err(unsupported(
                "namespace_options.userns_options",
                "user namespaces are not supported (hostUsers: false)",
            ));
        }
    }
    Ok(rt::NamespaceOption {
        network: namespace_mode(o.network)?,
        pid: namespace_mode(o.pid)?,
        ipc: namespace_mode(o.ipc)?,
        target_id: o.target_id,
    })
}

pub fn namespace_options_out(o: &rt::NamespaceOption) -> pb::NamespaceOption {
    pb::NamespaceOption {
        network: namespace_mode_out(o.network),
        pid: namespace_mode_out(o.pid),
        ipc: namespace_mode_out(o.ipc),
        target_id: o.target_id.clone(),
        userns_options: None,
    }
}

fn selinux(o: Option<pb::SeLinuxOption>) -> Option<rt::SeLinuxOption> {
    o.map(|o| rt::SeLinuxOption {
        user: o.user,
        role: o.role,
        type_: o.r#type,
        level: o.level,
    })
}

fn profile(p: Option<pb::SecurityProfile>) -> Option<rt::SecurityProfile> {
    use pb::security_profile::ProfileType as P;
    p.map(|p| rt::SecurityProfile {
        profile_type: match P::try_from(p.profile_type) {
            Ok(P::RuntimeDefault) => rt::ProfileType::RuntimeDefault,
            Ok(P::Localhost) => rt::ProfileType::Localhost,
            Ok(P::Unconfined) | Err(_) => rt::ProfileType::Unconfined,
        },
        localhost_ref: p.localhost_ref,
    })
}

pub fn resources(r: Option<pb::LinuxContainerResources>) -> Option<rt::LinuxContainerResources> {
    r.map(|r| rt::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
        hugepage_limits: r
            .hugepage_limits
            .into_iter()
            .map(|h| rt::HugepageLimit {
                page_size: h.page_size,
                limit: h.limit,
            })
            .collect(),
        unified: map(r.unified),
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
    })
}

/// RunPodSandbox's config.
pub fn sandbox_config(c: pb::PodSandboxConfig) -> Result<rt::PodSandboxConfig, Status> {
    let linux = c.linux.unwrap_or_default();
    let security = linux.security_context.unwrap_or_default();
    Ok(rt::PodSandboxConfig {
        metadata: sandbox_metadata(c.metadata),
        hostname: c.hostname,
        log_directory: c.log_directory,
        dns_config: c.dns_config.map(|d| rt::DnsConfig {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings: c
            .port_mappings
            .into_iter()
            .map(|p| {
                Ok(rt::PortMapping {
                    protocol: match pb::Protocol::try_from(p.protocol) {
                        Ok(pb::Protocol::Tcp) => rt::Protocol::Tcp,
                        Ok(pb::Protocol::Udp) => rt::Protocol::Udp,
                        Ok(pb::Protocol::Sctp) => rt::Protocol::Sctp,
                        Err(_) => {
                            return Err(Status::invalid_argument(format!(
                                "port_mappings: protocol {}: unknown",
                                p.protocol
                            )))
                        }
                    },
                    container_port: p.container_port,
                    host_port: p.host_port,
                    host_ip: p.host_ip,
                })
            })
            .collect::<Result<_, _>>()?,
        labels: map(c.labels),
        annotations: map(c.annotations),
        linux: rt::LinuxPodSandboxConfig {
            cgroup_parent: linux.cgroup_parent,
            security_context: rt::LinuxSandboxSecurityContext {
                namespace_options: namespace_options(security.namespace_options)?,
                selinux_options: selinux(security.selinux_options),
                run_as_user: security.run_as_user.map(|v| v.value),
                run_as_group: security.run_as_group.map(|v| v.value),
                readonly_rootfs: security.readonly_rootfs,
                supplemental_groups: security.supplemental_groups,
                privileged: security.privileged,
                seccomp: profile(security.seccomp),
                apparmor: profile(security.apparmor),
            },
            sysctls: map(linux.sysctls),
            overhead: resources(linux.overhead),
            resources: resources(linux.resources),
        },
    })
}

pub fn image_spec(i: Option<pb::ImageSpec>) -> rt::ImageSpec {
    let i = i.unwrap_or_default();
    rt::ImageSpec {
        image: i.image,
        annotations: map(i.annotations),
        user_specified_image: i.user_specified_image,
        runtime_handler: i.runtime_handler,
    }
}

pub fn image_spec_out(i: &rt::ImageSpec) -> pb::ImageSpec {
    pb::ImageSpec {
        image: i.image.clone(),
        annotations: unmap(&i.annotations),
        user_specified_image: i.user_specified_image.clone(),
        runtime_handler: i.runtime_handler.clone(),
        image_ref: String::new(),
    }
}

fn mount(m: pb::Mount) -> Result<rt::Mount, Status> {
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(unsupported(
            &format!("mounts[{}]", m.container_path),
            "ID-mapped mounts are not supported",
        ));
    }
    use pb::MountPropagation as P;
    Ok(rt::Mount {
        container_path: m.container_path,
        host_path: m.host_path,
        readonly: m.readonly,
        selinux_relabel: m.selinux_relabel,
        propagation: match P::try_from(m.propagation) {
            Ok(P::PropagationHostToContainer) => rt::MountPropagation::HostToContainer,
            Ok(P::PropagationBidirectional) => rt::MountPropagation::Bidirectional,
            Ok(P::PropagationPrivate) | Err(_) => rt::MountPropagation::Private,
        },
        recursive_read_only: m.recursive_read_only,
        image: m
            .image
            .filter(|i| !i.image.is_empty())
            .map(|i| image_spec(Some(i))),
        image_sub_path: m.image_sub_path,
    })
}

fn mount_out(m: &rt::Mount) -> pb::Mount {
    use pb::MountPropagation as P;
    pb::Mount {
        container_path: m.container_path.clone(),
        host_path: m.host_path.clone(),
        readonly: m.readonly,
        selinux_relabel: m.selinux_relabel,
        propagation: match m.propagation {
            rt::MountPropagation::Private => P::PropagationPrivate,
            rt::MountPropagation::HostToContainer => P::PropagationHostToContainer,
            rt::MountPropagation::Bidirectional => P::PropagationBidirectional,
        } as i32,
        uid_mappings: Vec::new(),
        gid_mappings: Vec::new(),
        recursive_read_only: m.recursive_read_only,
        image: m.image.as_ref().map(image_spec_out),
        image_sub_path: m.image_sub_path.clone(),
    }
}

/// CreateContainer's config.
pub fn container_config(c: pb::ContainerConfig) -> Result<rt::ContainerConfig, Status> {
    if !c.cdi_devices.is_empty() {
        return Err(unsupported("CDI_devices", "CDI devices are not supported"));
    }
    let metadata = c.metadata.unwrap_or_default();
    let linux = c.linux.unwrap_or_default();
    let security = linux.security_context.unwrap_or_default();
    // containerd's checks: a group needs a user to go with it, and a
    // recursively read-only mount must be read-only.
    if security.run_as_group.is_some()
        && security.run_as_user.is_none()
        && security.run_as_username.is_empty()
    {
        return Err(Status::invalid_argument(
            "linux.security_context.run_as_group: set without run_as_user or run_as_username",
        ));
    }
    if let Some(m) = c
        .mounts
        .iter()
        .find(|m| m.recursive_read_only && !m.readonly)
    {
        return Err(Status::invalid_argument(format!(
            "mounts[{}]: recursive_read_only needs readonly",
            m.container_path
        )));
    }
    use pb::SupplementalGroupsPolicy as G;
    Ok(rt::ContainerConfig {
        metadata: rt::ContainerMetadata {
            name: metadata.name,
            attempt: metadata.attempt,
        },
        image: image_spec(c.image),
        command: c.command,
        args: c.args,
        working_dir: c.working_dir,
        envs: c
            .envs
            .into_iter()
            .map(|kv| rt::KeyValue {
                key: kv.key,
                value: String::from_utf8_lossy(&kv.value).into_owned(),
            })
            .collect(),
        mounts: c.mounts.into_iter().map(mount).collect::<Result<_, _>>()?,
        devices: c
            .devices
            .into_iter()
            .map(|d| rt::Device {
                container_path: d.container_path,
                host_path: d.host_path,
                permissions: d.permissions,
            })
            .collect(),
        labels: map(c.labels),
        annotations: map(c.annotations),
        log_path: c.log_path,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        linux: rt::LinuxContainerConfig {
            resources: resources(linux.resources),
            security_context: rt::LinuxContainerSecurityContext {
                capabilities: security.capabilities.map(|c| rt::Capability {
                    add_capabilities: c.add_capabilities,
                    drop_capabilities: c.drop_capabilities,
                    add_ambient_capabilities: c.add_ambient_capabilities,
                }),
                privileged: security.privileged,
                namespace_options: namespace_options(security.namespace_options)?,
                selinux_options: selinux(security.selinux_options),
                run_as_user: security.run_as_user.map(|v| v.value),
                run_as_group: security.run_as_group.map(|v| v.value),
                run_as_username: security.run_as_username,
                readonly_rootfs: security.readonly_rootfs,
                supplemental_groups: security.supplemental_groups,
                supplemental_groups_policy: match G::try_from(security.supplemental_groups_policy) {
                    Ok(G::Strict) => rt::SupplementalGroupsPolicy::Strict,
                    Ok(G::Merge) | Err(_) => rt::SupplementalGroupsPolicy::Merge,
                },
                no_new_privs: security.no_new_privs,
                masked_paths: security.masked_paths,
                readonly_paths: security.readonly_paths,
                seccomp: profile(security.seccomp),
                apparmor: profile(security.apparmor),
            },
        },
        stop_signal: match pb::Signal::try_from(c.stop_signal) {
            Ok(pb::Signal::RuntimeDefault) | Err(_) => None,
            Ok(signal) => Some(signal.as_str_name().to_owned()),
        },
        // kubelet rotates the log itself and asks for ReopenContainerLog:
        // the monitor must not rotate it too.
        log_rotation: None,
    })
}

pub fn sandbox_state_out(s: api::SandboxState) -> i32 {
    (match s {
        api::SandboxState::Ready => pb::PodSandboxState::SandboxReady,
        api::SandboxState::NotReady => pb::PodSandboxState::SandboxNotready,
    }) as i32
}

pub fn container_state(s: i32) -> Option<api::ContainerState> {
    match pb::ContainerState::try_from(s).ok()? {
        pb::ContainerState::ContainerCreated => Some(api::ContainerState::Created),
        pb::ContainerState::ContainerRunning => Some(api::ContainerState::Running),
        pb::ContainerState::ContainerExited => Some(api::ContainerState::Exited),
        pb::ContainerState::ContainerUnknown => Some(api::ContainerState::Unknown),
    }
}

pub fn container_state_out(s: api::ContainerState) -> i32 {
    (match s {
        api::ContainerState::Created => pb::ContainerState::ContainerCreated,
        api::ContainerState::Running => pb::ContainerState::ContainerRunning,
        api::ContainerState::Exited => pb::ContainerState::ContainerExited,
        api::ContainerState::Unknown => pb::ContainerState::ContainerUnknown,
    }) as i32
}

pub fn sandbox_out(s: &api::PodSandbox) -> pb::PodSandbox {
    pb::PodSandbox {
        id: s.id.clone(),
        metadata: Some(sandbox_metadata_out(&s.metadata)),
        state: sandbox_state_out(s.state),
        created_at: nanos(&s.created_at),
        labels: unmap(&s.labels),
        annotations: unmap(&s.annotations),
        runtime_handler: s.runtime_handler.clone(),
    }
}

fn container_metadata_out(c: &api::ContainerStatus) -> pb::ContainerMetadata {
    pb::ContainerMetadata {
        name: c.name.clone(),
        attempt: c.config.metadata.attempt,
    }
}

/// The image a container runs as CRI reports it: the name it was created
/// with, and its ID.
fn container_image(c: &api::ContainerStatus) -> pb::ImageSpec {
    image_spec_out(&c.config.image)
}

pub fn container_out(c: &api::ContainerStatus) -> pb::Container {
    pb::Container {
        id: c.id.clone(),
        pod_sandbox_id: c.sandbox_id.clone(),
        metadata: Some(container_metadata_out(c)),
        image: Some(container_image(c)),
        image_ref: c.image_ref.clone(),
        state: container_state_out(c.state),
        created_at: nanos(&c.created_at),
        labels: unmap(&c.config.labels),
        annotations: unmap(&c.config.annotations),
        image_id: c.image_ref.clone(),
    }
}

pub fn container_status_out(c: &api::ContainerStatus) -> pb::ContainerStatus {
    pb::ContainerStatus {
        id: c.id.clone(),
        metadata: Some(container_metadata_out(c)),
        state: container_state_out(c.state),
        created_at: nanos(&c.created_at),
        started_at: nanos(&c.started_at),
        finished_at: nanos(&c.finished_at),
        exit_code: c.exit_code,
        image: Some(container_image(c)),
        image_ref: c.image_ref.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        labels: unmap(&c.config.labels),
        annotations: unmap(&c.config.annotations),
        mounts: c.config.mounts.iter().map(mount_out).collect(),
        log_path: c.log_path.to_string_lossy().into_owned(),
        resources: c
            .config
            .linux
            .resources
            .as_ref()
            .map(|r| pb::ContainerResources {
                linux: Some(pb::LinuxContainerResources {
                    cpu_period: r.cpu_period,
                    cpu_quota: r.cpu_quota,
                    cpu_shares: r.cpu_shares,
                    memory_limit_in_bytes: r.memory_limit_in_bytes,
                    oom_score_adj: r.oom_score_adj,
                    cpuset_cpus: r.cpuset_cpus.clone(),
                    cpuset_mems: r.cpuset_mems.clone(),
                    hugepage_limits: r
                        .hugepage_limits
                        .iter()
                        .map(|h| pb::HugepageLimit {
                            page_size: h.page_size.clone(),
                            limit: h.limit,
                        })
                        .collect(),
                    unified: unmap(&r.unified),
                    memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
                }),
                windows: None,
            }),
        image_id: c.image_ref.clone(),
        user: c.user.as_ref().map(|u| pb::ContainerUser {
            linux: Some(pb::LinuxContainerUser {
                uid: u.uid,
                gid: u.gid,
                supplemental_groups: u.supplemental_groups.clone(),
            }),
        }),
        stop_signal: c
            .config
            .stop_signal
            .as_deref()
            .and_then(pb::Signal::from_str_name)
            .unwrap_or(pb::Signal::RuntimeDefault) as i32,
    }
}

pub fn image_out(i: &api::Image) -> pb::Image {
    pb::Image {
        id: i.id.clone(),
        repo_tags: i.repo_tags.clone(),
        repo_digests: i.repo_digests.clone(),
        size: i.size,
        uid: i.uid.map(|value| pb::Int64Value { value }),
        username: i.username.clone(),
        spec: Some(pb::ImageSpec {
            image: i.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_nanoseconds_and_never_is_zero() {
        assert_eq!(nanos("1970-01-01T00:00:01.000000002Z"), 1_000_000_002);
        assert_eq!(nanos(""), 0);
    }

    #[test]
    fn what_the_runtime_cannot_do_is_refused_by_name() {
        let userns = pb::ContainerConfig {
            linux: Some(pb::LinuxContainerConfig {
                security_context: Some(pb::LinuxContainerSecurityContext {
                    namespace_options: Some(pb::NamespaceOption {
                        userns_options: Some(pb::UserNamespace {
                            mode: pb::NamespaceMode::Pod as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = container_config(userns).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("user namespaces"), "{}", e.message());
        let cdi = pb::ContainerConfig {
            cdi_devices: vec![pb::CdiDevice {
                name: "vendor.com/gpu=0".into(),
            }],
            ..Default::default()
        };
        assert!(container_config(cdi).unwrap_err().message().contains("CDI"));
    }

    #[test]
    fn containerds_checks_of_a_container_config() {
        let group_only = pb::ContainerConfig {
            linux: Some(pb::LinuxContainerConfig {
                security_context: Some(pb::LinuxContainerSecurityContext {
                    run_as_group: Some(pb::Int64Value { value: 1002 }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = container_config(group_only).unwrap_err();
        assert!(e.message().contains("run_as_group"), "{}", e.message());
        let rro = pb::ContainerConfig {
            mounts: vec![pb::Mount {
                container_path: "/data".into(),
                host_path: "/tmp".into(),
                recursive_read_only: true,
                readonly: false,
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = container_config(rro).unwrap_err();
        assert_eq!(
            e.message(),
            "mounts[/data]: recursive_read_only needs readonly"
        );
    }

    #[test]
    fn a_stop_signal_keeps_its_name() {
        let c = pb::ContainerConfig {
            stop_signal: pb::Signal::Sigusr1 as i32,
            ..Default::default()
        };
        assert_eq!(
            container_config(c).unwrap().stop_signal.as_deref(),
            Some("SIGUSR1")
        );
    }
}
