//! The effective security context of a container (pod fields under container fields),
//! and what follows from it: capabilities, masked paths, no_new_privs.

use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile};
use oci_spec::runtime::{Capabilities, Capability};

use crate::error::ErrorKind;

/// The container's security settings after kubelet merged the pod's security context
/// under the container's (pkg/securitycontext/util.go DetermineEffectiveSecurityContext;
/// seccomp from pkg/kubelet/kuberuntime/helpers.go getSeccompProfile).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EffectiveSecurity {
    /// runAsUser.
    pub run_as_user: Option<i64>,
    /// runAsGroup.
    pub run_as_group: Option<i64>,
    /// runAsNonRoot.
    pub run_as_non_root: Option<bool>,
    /// privileged (container only).
    pub privileged: bool,
    /// readOnlyRootFilesystem (container only).
    pub read_only_root_filesystem: bool,
    /// allowPrivilegeEscalation (container only).
    pub allow_privilege_escalation: Option<bool>,
    /// procMount (container only): `Default` or `Unmasked`.
    pub proc_mount: Option<String>,
    /// capabilities.add (container only).
    pub cap_add: Vec<String>,
    /// capabilities.drop (container only).
    pub cap_drop: Vec<String>,
    /// seccompProfile: the container's, else the pod's.
    pub seccomp: Option<SeccompProfile>,
}

impl EffectiveSecurity {
    /// Merges the pod's and the container's security contexts.
    pub fn of(pod: &Pod, container: &Container) -> Self {
        let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
        let csc = container.security_context.as_ref();
        let caps = csc.and_then(|c| c.capabilities.as_ref());
        Self {
            run_as_user: csc
                .and_then(|c| c.run_as_user)
                .or(psc.and_then(|p| p.run_as_user)),
            run_as_group: csc
                .and_then(|c| c.run_as_group)
                .or(psc.and_then(|p| p.run_as_group)),
            run_as_non_root: csc
                .and_then(|c| c.run_as_non_root)
                .or(psc.and_then(|p| p.run_as_non_root)),
            privileged: csc.and_then(|c| c.privileged).unwrap_or(false),
            read_only_root_filesystem: csc
                .and_then(|c| c.read_only_root_filesystem)
                .unwrap_or(false),
            allow_privilege_escalation: csc.and_then(|c| c.allow_privilege_escalation),
            proc_mount: csc.and_then(|c| c.proc_mount.clone()),
            cap_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
            cap_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
            seccomp: csc
                .and_then(|c| c.seccomp_profile.clone())
                .or_else(|| psc.and_then(|p| p.seccomp_profile.clone())),
        }
    }

    /// Whether the process gets no_new_privs: only when allowPrivilegeEscalation is
    /// explicitly false (pkg/securitycontext/util.go AddNoNewPrivileges; containerd
    /// starts from WithNewPrivileges and sets it only on kubelet's request).
    pub fn no_new_privs(&self) -> bool {
        self.allow_privilege_escalation == Some(false)
    }
}

/// containerd's default capabilities (pkg/oci/spec.go defaultUnixCaps), Docker's set.
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability Linux knows, indexed by its number (linux/capability.h).
pub const ALL_CAPS: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// The capabilities of a hex mask as `/proc/<pid>/status` shows them (`CapBnd:
/// 000001fffeffffff`); bits beyond the known capabilities are ignored.
pub fn caps_from_mask(hex: &str) -> Option<Capabilities> {
    let mask = u64::from_str_radix(hex.trim(), 16).ok()?;
    Some(
        ALL_CAPS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, c)| *c)
            .collect(),
    )
}

/// Parses a capability name as Kubernetes writes it (`NET_ADMIN`) or as OCI does
/// (`CAP_NET_ADMIN`), in any case.
pub fn parse_cap(name: &str) -> Result<Capability, ErrorKind> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| ErrorKind::UnknownCapability(name.to_string()))
}

/// The container's capabilities (bounding = effective = permitted; inheritable and
/// ambient stay empty, containerd's WithoutAmbientCaps). From the default set, `ALL` in
/// add grants every capability of the host, `ALL` in drop removes every one, then the
/// named ones are added and dropped (internal/cri/opts/spec_opts.go WithCapabilities);
/// privileged grants every capability of the host whatever was dropped (WithPrivileged).
pub fn capabilities(
    sec: &EffectiveSecurity,
    host: Option<&Capabilities>,
) -> Result<Capabilities, ErrorKind> {
    let all = || {
        host.cloned()
            .unwrap_or_else(|| ALL_CAPS.iter().copied().collect())
    };
    if sec.privileged {
        // Still reject names that are not capabilities, as the runtime would.
        for name in sec
            .cap_add
            .iter()
            .chain(&sec.cap_drop)
            .filter(|n| !n.eq_ignore_ascii_case("ALL"))
        {
            parse_cap(name)?;
        }
        return Ok(all());
    }
    let mut caps: Capabilities = DEFAULT_CAPS.iter().copied().collect();
    if sec.cap_add.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
        caps = all();
    }
    if sec.cap_drop.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
        caps.clear();
    }
    for name in sec
        .cap_add
        .iter()
        .filter(|n| !n.eq_ignore_ascii_case("ALL"))
    {
        caps.insert(parse_cap(name)?);
    }
    for name in sec
        .cap_drop
        .iter()
        .filter(|n| !n.eq_ignore_ascii_case("ALL"))
    {
        caps.remove(&parse_cap(name)?);
    }
    Ok(caps)
}

/// kubelet's default masked paths (pkg/securitycontext/util.go defaultMaskedPaths, kept
/// in step with moby and containerd's pkg/oci/spec.go).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// kubelet's default read-only paths (pkg/securitycontext/util.go defaultReadonlyPaths).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Masked and read-only paths: none for a privileged container (containerd
/// WithPrivileged) or procMount Unmasked (ConvertToRuntimeMaskedPaths), else the
/// defaults.
pub fn masked_and_readonly_paths(sec: &EffectiveSecurity) -> (Vec<String>, Vec<String>) {
    if sec.privileged || sec.proc_mount.as_deref() == Some("Unmasked") {
        return (Vec::new(), Vec::new());
    }
    let owned = |paths: &[&str]| paths.iter().map(|p| p.to_string()).collect();
    (owned(&MASKED_PATHS), owned(&READONLY_PATHS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(add: &[&str], drop: &[&str], privileged: bool) -> EffectiveSecurity {
        EffectiveSecurity {
            cap_add: add.iter().map(|s| s.to_string()).collect(),
            cap_drop: drop.iter().map(|s| s.to_string()).collect(),
            privileged,
            ..Default::default()
        }
    }

    fn set(caps: &[Capability]) -> Capabilities {
        caps.iter().copied().collect()
    }

    #[test]
    fn capability_rules() {
        use Capability::*;
        let defaults = set(&DEFAULT_CAPS);
        let with = |extra: &[Capability]| {
            let mut s = defaults.clone();
            s.extend(extra.iter().copied());
            s
        };
        let without = |gone: &[Capability]| {
            let mut s = defaults.clone();
            for c in gone {
                s.remove(c);
            }
            s
        };
        let all = set(&ALL_CAPS);
        let mut all_but_chown = all.clone();
        all_but_chown.remove(&Chown);
        let cases: Vec<(EffectiveSecurity, Capabilities)> = vec![
            (sec(&[], &[], false), defaults.clone()),
            (sec(&["NET_ADMIN"], &[], false), with(&[NetAdmin])),
            (
                sec(&["CAP_SYS_TIME", "sys_ptrace"], &[], false),
                with(&[SysTime, SysPtrace]),
            ),
            (
                sec(&[], &["NET_RAW", "CAP_MKNOD"], false),
                without(&[NetRaw, Mknod]),
            ),
            (sec(&["NET_ADMIN"], &["NET_ADMIN"], false), defaults.clone()),
            (sec(&[], &["ALL"], false), set(&[])),
            (
                sec(&["NET_BIND_SERVICE"], &["ALL"], false),
                set(&[NetBindService]),
            ),
            (sec(&["ALL"], &[], false), all.clone()),
            (sec(&["all"], &["CHOWN"], false), all_but_chown),
            (sec(&[], &["ALL"], true), all.clone()),
            (sec(&["NET_ADMIN"], &["CHOWN"], true), all.clone()),
        ];
        for (i, (sec, want)) in cases.into_iter().enumerate() {
            assert_eq!(capabilities(&sec, None).unwrap(), want, "case {i}");
        }
    }

    #[test]
    fn privileged_and_all_take_the_host_capabilities() {
        let host = caps_from_mask("000001fffeffffff").unwrap();
        assert_eq!(host.len(), 40);
        assert!(!host.contains(&Capability::SysResource));
        assert_eq!(
            capabilities(&sec(&[], &[], true), Some(&host)).unwrap(),
            host
        );
        assert_eq!(
            capabilities(&sec(&["ALL"], &[], false), Some(&host)).unwrap(),
            host
        );
        assert_eq!(caps_from_mask("0").unwrap().len(), 0);
        assert!(caps_from_mask("xyz").is_none());
        assert_eq!(caps_from_mask("1").unwrap(), set(&[Capability::Chown]));
    }

    #[test]
    fn unknown_capabilities_are_refused() {
        for (add, drop, privileged) in [
            (&["NET_FLY"][..], &[][..], false),
            (&[], &["CAP_NOPE"], false),
            (&["X"], &[], true),
        ] {
            let err = capabilities(&sec(add, drop, privileged), None).unwrap_err();
            assert!(matches!(err, ErrorKind::UnknownCapability(_)), "{err}");
        }
    }

    #[test]
    fn paths_and_no_new_privs() {
        let plain = EffectiveSecurity::default();
        assert_eq!(
            masked_and_readonly_paths(&plain).0.len(),
            MASKED_PATHS.len()
        );
        assert_eq!(
            masked_and_readonly_paths(&plain).1.len(),
            READONLY_PATHS.len()
        );
        let unmasked = EffectiveSecurity {
            proc_mount: Some("Unmasked".into()),
            ..Default::default()
        };
        assert_eq!(masked_and_readonly_paths(&unmasked), (vec![], vec![]));
        let defaulted = EffectiveSecurity {
            proc_mount: Some("Default".into()),
            ..Default::default()
        };
        assert_eq!(
            masked_and_readonly_paths(&defaulted).0.len(),
            MASKED_PATHS.len()
        );
        assert_eq!(
            masked_and_readonly_paths(&sec(&[], &[], true)),
            (vec![], vec![])
        );
        for (ape, want) in [(None, false), (Some(true), false), (Some(false), true)] {
            let s = EffectiveSecurity {
                allow_privilege_escalation: ape,
                ..Default::default()
            };
            assert_eq!(s.no_new_privs(), want, "{ape:?}");
        }
    }

    #[test]
    fn container_fields_win_over_pod_fields() {
        use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec, SecurityContext};
        let pod = Pod {
            spec: Some(PodSpec {
                security_context: Some(PodSecurityContext {
                    run_as_user: Some(1000),
                    run_as_group: Some(3000),
                    run_as_non_root: Some(true),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut c = Container {
            name: "c".into(),
            ..Default::default()
        };
        let s = EffectiveSecurity::of(&pod, &c);
        assert_eq!(
            (s.run_as_user, s.run_as_group, s.run_as_non_root),
            (Some(1000), Some(3000), Some(true))
        );
        assert_eq!(s.seccomp.unwrap().type_, "RuntimeDefault");
        c.security_context = Some(SecurityContext {
            run_as_user: Some(5),
            run_as_non_root: Some(false),
            seccomp_profile: Some(SeccompProfile {
                type_: "Unconfined".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let s = EffectiveSecurity::of(&pod, &c);
        assert_eq!(
            (s.run_as_user, s.run_as_group, s.run_as_non_root),
            (Some(5), Some(3000), Some(false))
        );
        assert_eq!(s.seccomp.unwrap().type_, "Unconfined");
    }
}
