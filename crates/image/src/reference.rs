//! Image references as Docker and Kubernetes read them: `busybox` is
//! `docker.io/library/busybox:latest`; `host:port/path:tag`; `name@sha256:…`.

use oci_client::Reference;

/// Why a reference does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid reference {input:?}: {reason}")]
pub struct ReferenceError {
    /// What the user wrote.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parse `input` into a fully qualified reference (registry, repository, tag and/or digest).
pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
    let err = |reason: String| ReferenceError {
        input: input.to_string(),
        reason,
    };
    if input.trim() != input || input.is_empty() {
        return Err(err("must be a non-empty name without spaces".into()));
    }
    if let Some((_, digest)) = input.rsplit_once('@') {
        if digest.parse::<crate::Digest>().is_err() {
            return Err(err(
                "digest must be sha256:<64 lower-case hex digits>".into()
            ));
        }
    }
    let reference: Reference = input.parse().map_err(|e| err(format!("{e}")))?;
    if let Some(digest) = reference.digest() {
        digest
            .parse::<crate::Digest>()
            .map_err(|_| err("only sha256 digests are supported".into()))?;
    }
    Ok(reference)
}

/// The canonical name of a reference: `docker.io/library/busybox:latest`, or
/// `registry/repo@sha256:…` when it has a digest and no tag.
pub fn canonical(reference: &Reference) -> String {
    reference.whole()
}

/// The repository part with its registry: `docker.io/library/busybox`.
pub fn repository(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_mean_docker_hub() {
        assert_eq!(
            canonical(&parse("busybox").unwrap()),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            canonical(&parse("library/busybox:1.36").unwrap()),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            canonical(&parse("user/app:v2").unwrap()),
            "docker.io/user/app:v2"
        );
    }

    #[test]
    fn hosts_ports_paths_and_digests() {
        let r = parse("127.0.0.1:5000/team/app:1.0").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("1.0"));
        let d = format!("sha256:{}", "0".repeat(64));
        let r = parse(&format!("localhost/app@{d}")).unwrap();
        assert_eq!(r.registry(), "localhost");
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.tag(), None);
        let r = parse(&format!("quay.io/a/b:tag@{d}")).unwrap();
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.digest(), Some(d.as_str()));
    }

    #[test]
    fn malformed_references_name_the_input() {
        for bad in ["", "Busybox", "busybox:", "a b", "app@sha256:123", "-x/y"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid reference"), "{bad}: {e}");
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
