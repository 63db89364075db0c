//! The container's mounts: containerd's defaults (less /run, plus /sys/fs/cgroup, as its
//! CRI plugin makes them) and the caller's, merged the way containerd merges them.

use std::path::{Component, Path};

use oci_spec::runtime::{Mount as OciMount, MountBuilder};

use crate::error::ErrorKind;
use crate::input::Mount;

fn strs(options: &[&str]) -> Vec<String> {
    options.iter().map(|s| s.to_string()).collect()
}

/// containerd's default mounts (pkg/oci/mounts.go defaultMounts) without /run, which the
/// CRI plugin removes (oci.WithoutRunMount), plus the cgroup filesystem it adds
/// (internal/cri/opts/spec_linux_opts.go withMounts). A privileged container gets /sys
/// and /sys/fs/cgroup read-write (WithWriteableSysfs, WithWriteableCgroupfs).
pub fn default_mounts(privileged: bool) -> Vec<Mount> {
    let ro = if privileged { "rw" } else { "ro" };
    let m = |dst: &str, typ: &str, src: &str, opts: Vec<String>| Mount {
        source: src.into(),
        destination: dst.into(),
        typ: typ.into(),
        options: opts,
    };
    vec![
        m(
            "/proc",
            "proc",
            "proc",
            strs(&["nosuid", "noexec", "nodev"]),
        ),
        m(
            "/dev",
            "tmpfs",
            "tmpfs",
            strs(&["nosuid", "strictatime", "mode=755", "size=65536k"]),
        ),
        m(
            "/dev/pts",
            "devpts",
            "devpts",
            strs(&[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ]),
        ),
        m(
            "/dev/shm",
            "tmpfs",
            "shm",
            strs(&["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        ),
        m(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            strs(&["nosuid", "noexec", "nodev"]),
        ),
        m(
            "/sys",
            "sysfs",
            "sysfs",
            strs(&["nosuid", "noexec", "nodev", ro]),
        ),
        m(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            strs(&["nosuid", "noexec", "nodev", "relatime", ro]),
        ),
    ]
}

/// Go's filepath.Clean for absolute paths, which containerd compares destinations with.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// The merged mount list and the rootfs propagation it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedMounts {
    /// Mounts in order: defaults first, then the caller's, shallower destinations first.
    pub mounts: Vec<Mount>,
    /// `linux.rootfsPropagation`: `rshared` or `rslave` when a mount needs it.
    pub rootfs_propagation: Option<String>,
}

/// Merges the caller's mounts into the defaults (withMounts): a caller mount replaces
/// the default at the same destination, a caller mount at /dev drops every default
/// under /dev, and caller mounts are ordered by the depth of their destination (stable),
/// so a mount never hides a deeper one. Bidirectional (`rshared`) or host-to-container
/// (`rslave`) propagation makes the root's propagation follow (`shared`, `slave`).
pub fn merge(defaults: Vec<Mount>, extra: &[Mount]) -> Result<MergedMounts, ErrorKind> {
    for m in extra {
        if !m.destination.starts_with('/') {
            return Err(ErrorKind::RelativeMountDestination(m.destination.clone()));
        }
    }
    let supplied: Vec<String> = extra.iter().map(|m| clean(&m.destination)).collect();
    let dev_supplied = supplied.iter().any(|d| d == "/dev");
    let mut mounts: Vec<Mount> = defaults
        .into_iter()
        .filter(|m| {
            let dst = clean(&m.destination);
            let shadowed = dev_supplied && dst.starts_with("/dev/");
            !shadowed && !supplied.contains(&dst)
        })
        .collect();
    let mut ordered: Vec<&Mount> = extra.iter().collect();
    ordered.sort_by_key(|m| clean(&m.destination).matches('/').count());
    // The runtime spec's spelling (`shared`, `slave`; applied recursively):
    // containerd writes `rshared`/`rslave`, which runc and crun read as the
    // same, but libcontainer (the embedded backend) refuses them as unknown.
    let mut propagation: Option<String> = None;
    for m in ordered {
        if m.options.iter().any(|o| o == "rshared") {
            propagation = Some("shared".into());
        } else if m.options.iter().any(|o| o == "rslave") && propagation.is_none() {
            propagation = Some("slave".into());
        }
        mounts.push(m.clone());
    }
    Ok(MergedMounts {
        mounts,
        rootfs_propagation: propagation,
    })
}

/// Converts to the OCI type.
pub fn to_oci(m: &Mount) -> Result<OciMount, ErrorKind> {
    MountBuilder::default()
        .destination(&m.destination)
        .typ(&m.typ)
        .source(&m.source)
        .options(m.options.clone())
        .build()
        .map_err(|e| ErrorKind::Oci(e.to_string()))
}

/// containerd's check of a CRI mount's propagation against the host
/// (internal/cri/opts/spec_linux.go WithMounts: ensureShared,
/// ensureSharedOrSlave): a Bidirectional mount's source must be on a shared
/// mount of the host, a HostToContainer one's on a shared or slave mount, or
/// the container is refused with containerd's message. `source` is the
/// mount's source with symlinks resolved; `mountinfo` is
/// `/proc/self/mountinfo`.
pub fn check_propagation(
    source: &str,
    propagation: crate::cri::MountPropagation,
    mountinfo: &str,
) -> Result<(), String> {
    use crate::cri::MountPropagation;
    if propagation == MountPropagation::Private {
        return Ok(());
    }
    // The mount the source is on: the longest mount point it is under (the
    // last one listed wins, as a later mount hides an earlier one).
    let mut found: Option<(&str, Vec<&str>)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4).copied() else {
            continue;
        };
        let under = source == point
            || point == "/"
            || source
                .strip_prefix(point)
                .is_some_and(|r| r.starts_with('/'));
        if under && found.as_ref().is_none_or(|(p, _)| point.len() >= p.len()) {
            let optional = fields[6..]
                .iter()
                .take_while(|f| **f != "-")
                .copied()
                .collect();
            found = Some((point, optional));
        }
    }
    let Some((point, optional)) = found else {
        return Err(format!("path {source:?} is on no mount of this host"));
    };
    let shared = optional.iter().any(|f| f.starts_with("shared:"));
    let slave = optional.iter().any(|f| f.starts_with("master:"));
    match propagation {
        MountPropagation::Bidirectional if !shared => Err(format!(
            "path {source:?} is mounted on {point:?} but it is not a shared mount"
        )),
        MountPropagation::HostToContainer if !shared && !slave => Err(format!(
            "path {source:?} is mounted on {point:?} but it is not a shared or slave mount"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn propagation_needs_a_shared_or_slave_host_mount_as_containerd_checks() {
        use super::check_propagation;
        use crate::cri::MountPropagation::{Bidirectional, HostToContainer, Private};
        let info = "\
22 27 0:21 / / rw,relatime - ext4 /dev/vda rw
30 22 0:30 / /srv rw,relatime shared:5 - ext4 /dev/vdb rw
31 22 0:31 / /mnt rw,relatime master:7 - ext4 /dev/vdc rw
32 30 0:32 / /srv/private rw,relatime - tmpfs tmpfs rw
";
        assert_eq!(check_propagation("/tmp/x", Private, info), Ok(()));
        assert_eq!(
            check_propagation("/tmp/x", HostToContainer, info),
            Err("path \"/tmp/x\" is mounted on \"/\" but it is not a shared or slave mount".into())
        );
        assert_eq!(check_propagation("/srv/data", Bidirectional, info), Ok(()));
        assert_eq!(check_propagation("/srv", HostToContainer, info), Ok(()));
        assert_eq!(check_propagation("/mnt/a", HostToContainer, info), Ok(()));
        assert_eq!(
            check_propagation("/mnt/a", Bidirectional, info),
            Err("path \"/mnt/a\" is mounted on \"/mnt\" but it is not a shared mount".into())
        );
        // The deepest mount decides; a name that only starts like a mount point is not under it.
        assert!(check_propagation("/srv/private/x", Bidirectional, info).is_err());
        assert!(check_propagation("/srvx", Bidirectional, info).is_err());
    }

    use super::*;

    fn dests(m: &[Mount]) -> Vec<&str> {
        m.iter().map(|m| m.destination.as_str()).collect()
    }

    #[test]
    fn defaults_are_containerds_cri_set() {
        let d = default_mounts(false);
        assert_eq!(
            dests(&d),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
        );
        assert!(d[5].options.contains(&"ro".to_string()));
        assert!(d[6].options.contains(&"ro".to_string()));
        let p = default_mounts(true);
        assert!(
            p[5].options.contains(&"rw".to_string()) && !p[5].options.contains(&"ro".to_string())
        );
        assert!(p[6].options.contains(&"rw".to_string()));
    }

    #[test]
    fn merge_rules() {
        let shm = Mount::bind("/run/podrun/pod/shm", "/dev/shm", false);
        let hosts = Mount::bind("/var/lib/podrun/pod/hosts", "/etc/hosts", false);
        let deep = Mount::bind("/v/a", "/data/a/b", true);
        let shallow = Mount::bind("/v/b", "/data/", false);
        let merged = merge(
            default_mounts(false),
            &[deep.clone(), shm.clone(), hosts.clone(), shallow.clone()],
        )
        .unwrap();
        assert_eq!(
            dests(&merged.mounts),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/data/",
                "/dev/shm",
                "/etc/hosts",
                "/data/a/b"
            ]
        );
        assert_eq!(merged.mounts[7], shm);
        assert_eq!(merged.rootfs_propagation, None);

        let dev = Mount::bind("/host/dev", "/dev", false);
        let merged = merge(default_mounts(false), &[dev]).unwrap();
        assert_eq!(
            dests(&merged.mounts),
            ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]
        );

        let mut slave = Mount::bind("/mnt", "/mnt", false);
        slave.options[1] = "rslave".into();
        let mut shared = Mount::bind("/srv", "/srv", false);
        shared.options[1] = "rshared".into();
        let merged = merge(vec![], std::slice::from_ref(&slave)).unwrap();
        assert_eq!(merged.rootfs_propagation.as_deref(), Some("slave"));
        let merged = merge(vec![], &[shared, slave]).unwrap();
        assert_eq!(merged.rootfs_propagation.as_deref(), Some("shared"));

        assert_eq!(
            merge(vec![], &[Mount::bind("/x", "relative", false)]),
            Err(ErrorKind::RelativeMountDestination("relative".into()))
        );
    }

    #[test]
    fn clean_matches_go() {
        for (p, want) in [
            ("/a/b/", "/a/b"),
            ("/a//b", "/a/b"),
            ("/a/./b/../c", "/a/c"),
            ("/", "/"),
            ("/dev/", "/dev"),
        ] {
            assert_eq!(clean(p), want, "{p}");
        }
    }
}
