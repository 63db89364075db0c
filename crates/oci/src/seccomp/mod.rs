//! The seccomp filter of a container: kubelet picks the profile (the container's
//! seccompProfile, else the pod's, else RuntimeDefault with `--seccomp-default` and
//! Unconfined without) and sends it in the config; containerd turns it into a filter
//! (internal/cri/sputil GenerateSeccompSpecOpts): none for privileged containers.

pub mod default;

use oci_spec::runtime::{Capabilities, LinuxSeccomp};

use crate::cri::{ProfileType, SecurityProfile};
use crate::error::ErrorKind;

/// The seccomp filter for a container, or `None` for unconfined.
///
/// `caps` is the container's final bounding set (the default profile allows more
/// syscalls to a container holding the matching capability); `localhost` is the text of
/// the Localhost profile the caller read from kubelet's seccomp directory.
pub fn profile_for(
    privileged: bool,
    profile: Option<&SecurityProfile>,
    caps: &Capabilities,
    localhost: Option<&str>,
) -> Result<Option<LinuxSeccomp>, ErrorKind> {
    if privileged {
        return Ok(None);
    }
    let Some(profile) = profile else {
        return Ok(None);
    };
    let path = &profile.localhost_ref;
    match profile.profile_type {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault => Ok(Some(default::default_profile(caps))),
        ProfileType::Localhost => {
            let text = localhost.ok_or_else(|| {
                ErrorKind::Seccomp(format!("the Localhost profile {path:?} was not provided"))
            })?;
            parse_localhost(text)
                .map(Some)
                .map_err(|e| ErrorKind::Seccomp(format!("localhost profile {path:?}: {e}")))
        }
    }
}

/// Parses a Localhost profile in the OCI format (what containerd's WithProfile
/// unmarshals). Docker-only fields (`archMap`, per-rule `includes`/`excludes`) are
/// refused: containerd would ignore them and so apply conditional rules to everyone.
pub fn parse_localhost(text: &str) -> Result<LinuxSeccomp, String> {
    let raw: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let docker_only = raw.get("archMap").is_some()
        || raw
            .get("syscalls")
            .and_then(|s| s.as_array())
            .is_some_and(|rules| {
                rules
                    .iter()
                    .any(|r| r.get("includes").is_some() || r.get("excludes").is_some())
            });
    if docker_only {
        return Err(
            "uses Docker-only fields (archMap, includes, excludes): write it in the OCI format"
                .into(),
        );
    }
    serde_json::from_value(raw).map_err(|e| format!("not an OCI seccomp profile: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::DEFAULT_CAPS;
    use oci_spec::runtime::{Capability, LinuxSeccompAction, LinuxSeccompOperator};

    fn profile(kind: ProfileType) -> SecurityProfile {
        SecurityProfile {
            profile_type: kind,
            localhost_ref: if kind == ProfileType::Localhost {
                "profiles/audit.json".into()
            } else {
                String::new()
            },
        }
    }

    fn names(p: &LinuxSeccomp) -> Vec<String> {
        p.syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names().clone())
            .collect()
    }

    const LOCAL: &str = r#"{"defaultAction":"SCMP_ACT_LOG","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#;

    #[test]
    fn profile_selection() {
        use ProfileType::*;
        let caps: Capabilities = DEFAULT_CAPS.iter().copied().collect();
        let pick = |kind: Option<ProfileType>, privileged, local| {
            let p = kind.map(profile);
            profile_for(privileged, p.as_ref(), &caps, local)
        };
        assert_eq!(pick(None, false, None).unwrap(), None);
        assert_eq!(pick(Some(Unconfined), false, None).unwrap(), None);
        assert!(pick(Some(RuntimeDefault), false, None).unwrap().is_some());
        assert_eq!(pick(Some(RuntimeDefault), true, None).unwrap(), None);
        let local = pick(Some(Localhost), false, Some(LOCAL)).unwrap().unwrap();
        assert_eq!(local.default_action(), LinuxSeccompAction::ScmpActLog);
        let err = pick(Some(Localhost), false, None).unwrap_err().to_string();
        assert!(err.contains("profiles/audit.json"), "{err}");
    }

    #[test]
    fn localhost_profiles_must_be_oci() {
        assert!(parse_localhost("not json")
            .unwrap_err()
            .contains("not JSON"));
        let docker = r#"{"defaultAction":"SCMP_ACT_ERRNO","archMap":[],"syscalls":[]}"#;
        assert!(parse_localhost(docker).unwrap_err().contains("Docker-only"));
        let cond = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["x"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}]}"#;
        assert!(parse_localhost(cond).unwrap_err().contains("Docker-only"));
        assert!(parse_localhost(r#"{"syscalls":[]}"#)
            .unwrap_err()
            .contains("not an OCI"));
    }

    #[test]
    fn default_profile_is_containerds() {
        let caps: Capabilities = DEFAULT_CAPS.iter().copied().collect();
        let p = default::default_profile(&caps);
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), None);
        let all = names(&p);
        for must in [
            "read",
            "write",
            "execve",
            "openat",
            "clone",
            "socket",
            "personality",
            "ptrace",
            "chroot",
        ] {
            assert!(all.iter().any(|n| n == must), "{must} allowed");
        }
        for never in [
            "mount",
            "unshare",
            "setns",
            "reboot",
            "init_module",
            "kexec_load",
            "bpf",
            "keyctl",
        ] {
            assert!(!all.iter().any(|n| n == never), "{never} denied");
        }
        assert_eq!(default::allowed_syscalls().count(), 363);
        let rules = p.syscalls().as_ref().unwrap();
        let clone = rules
            .iter()
            .find(|r| r.names() == &["clone".to_string()])
            .unwrap();
        let arg = clone.args().as_ref().unwrap()[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(arg.value(), 0x7E02_0000);
        let clone3 = rules
            .iter()
            .find(|r| r.names() == &["clone3".to_string()])
            .unwrap();
        assert_eq!(
            (clone3.action(), clone3.errno_ret()),
            (LinuxSeccompAction::ScmpActErrno, Some(38))
        );
        let sockets: Vec<_> = rules
            .iter()
            .filter(|r| r.names() == &["socket".to_string()])
            .collect();
        assert_eq!(sockets.len(), 3);

        let mut admin = caps.clone();
        admin.insert(Capability::SysAdmin);
        let p = default::default_profile(&admin);
        let all = names(&p);
        for unlocked in ["mount", "unshare", "setns", "clone3"] {
            assert!(
                all.iter().any(|n| n == unlocked),
                "{unlocked} with SYS_ADMIN"
            );
        }
        let rules = p.syscalls().as_ref().unwrap();
        assert!(
            !rules.iter().any(|r| r.errno_ret().is_some()),
            "no clone3 ENOSYS rule with SYS_ADMIN"
        );
        assert!(rules
            .iter()
            .all(|r| r.names() != &["clone".to_string()] || r.args().is_none()));
    }
}
