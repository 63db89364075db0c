//! What follows from a container's CRI security context: its capabilities and masked
//! paths, as containerd makes them.

use oci_spec::runtime::{Capabilities, Capability};

use crate::cri::LinuxContainerSecurityContext;
use crate::error::ErrorKind;

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
    sec: &LinuxContainerSecurityContext,
    host: Option<&Capabilities>,
) -> Result<Capabilities, ErrorKind> {
    let none = Vec::new();
    let (cap_add, cap_drop) = sec.capabilities.as_ref().map_or((&none, &none), |c| {
        (&c.add_capabilities, &c.drop_capabilities)
    });
    let all = || {
        host.cloned()
            .unwrap_or_else(|| ALL_CAPS.iter().copied().collect())
    };
    if sec.privileged {
        // Still reject names that are not capabilities, as the runtime would.
        for name in cap_add
            .iter()
            .chain(cap_drop)
            .filter(|n| !n.eq_ignore_ascii_case("ALL"))
        {
            parse_cap(name)?;
        }
        return Ok(all());
    }
    let mut caps: Capabilities = DEFAULT_CAPS.iter().copied().collect();
    if cap_add.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
        caps = all();
    }
    if cap_drop.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
        caps.clear();
    }
    for name in cap_add.iter().filter(|n| !n.eq_ignore_ascii_case("ALL")) {
        caps.insert(parse_cap(name)?);
    }
    for name in cap_drop.iter().filter(|n| !n.eq_ignore_ascii_case("ALL")) {
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
/// WithPrivileged), else the config's (kubelet sends its defaults, [`MASKED_PATHS`] and
/// [`READONLY_PATHS`], and none for procMount: Unmasked).
pub fn masked_and_readonly_paths(
    sec: &LinuxContainerSecurityContext,
) -> (Vec<String>, Vec<String>) {
    if sec.privileged {
        return (Vec::new(), Vec::new());
    }
    (sec.masked_paths.clone(), sec.readonly_paths.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(add: &[&str], drop: &[&str], privileged: bool) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            capabilities: Some(crate::cri::Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
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
        let cases: Vec<(LinuxContainerSecurityContext, Capabilities)> = vec![
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
    fn masked_paths_are_the_configs_unless_privileged() {
        let mut sc = sec(&[], &[], false);
        sc.masked_paths = vec!["/proc/kcore".into()];
        sc.readonly_paths = vec!["/proc/sys".into()];
        assert_eq!(
            masked_and_readonly_paths(&sc),
            (
                vec!["/proc/kcore".to_string()],
                vec!["/proc/sys".to_string()]
            )
        );
        sc.privileged = true;
        assert_eq!(masked_and_readonly_paths(&sc), (vec![], vec![]));
    }
}
