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

/// Parse `input` into a fully qualified reference (registry, repository, tag and/or digest),
/// with the grammar of distribution's `reference` package (Docker, containerd, kubelet).
/// Hand-written rather than oci-spec's regex: compiling that regex cost ~30 ms of every
/// `podrun pull`, more than the whole pull of an image that is already present.
pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
    let err = |reason: &str| ReferenceError {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    if input.is_empty() || input.trim() != input {
        return Err(err("must be a non-empty name without spaces"));
    }
    let (rest, digest) = match input.rsplit_once('@') {
        Some((rest, digest)) => {
            digest
                .parse::<crate::Digest>()
                .map_err(|_| err("digest must be sha256:<64 lower-case hex digits>"))?;
            (rest, Some(digest))
        }
        None => (input, None),
    };
    // A tag follows the last ':' that comes after the last '/' (a port comes before it).
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = tag.len() <= 128
            && tag
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(err("invalid tag: use up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"));
        }
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
            (first, path.to_string())
        }
        _ => ("docker.io", name.to_string()),
    };
    if !valid_domain(registry) {
        return Err(err("invalid registry host"));
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(err("repository name must be lowercase"));
    }
    if path.is_empty() || !path.split('/').all(valid_component) {
        return Err(err("invalid repository name: components are lower-case letters and digits, separated by '.', '_', '__' or '-'"));
    }
    let (registry, path) = match registry {
        "index.docker.io" | "docker.io" if !path.contains('/') => {
            ("docker.io", format!("library/{path}"))
        }
        "index.docker.io" => ("docker.io", path),
        _ => (registry, path),
    };
    if registry.len() + 1 + path.len() > 255 {
        return Err(err("name longer than 255 characters"));
    }
    let (registry, path) = (registry.to_string(), path);
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, path, t.into(), d.into()),
        (None, Some(d)) => Reference::with_digest(registry, path, d.into()),
        (t, None) => Reference::with_tag(registry, path, t.unwrap_or("latest").into()),
    })
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_lowercase() || b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = !sep.is_empty()
            && (sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-'));
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]`, where host is DNS labels or a bracketed IPv6 address.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, after)) => {
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (None, after.strip_prefix(':'))
            }
            None => return false,
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    host.is_none_or(|h| {
        !h.is_empty()
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    })
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
    fn the_grammar_of_distribution() {
        for (input, want) in [
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("localhost/app", "localhost/app:latest"),
            (
                "localhost:5000/a.b/c__d/e-f---g:v1.2_3",
                "localhost:5000/a.b/c__d/e-f---g:v1.2_3",
            ),
            ("[::1]:5000/app:1", "[::1]:5000/app:1"),
            ("my.registry/x", "my.registry/x:latest"),
            ("team/app", "docker.io/team/app:latest"),
        ] {
            assert_eq!(canonical(&parse(input).unwrap()), want, "{input}");
        }
        assert_eq!(
            parse("Busybox").unwrap_err().reason,
            "repository name must be lowercase"
        );
    }

    #[test]
    fn malformed_references_name_the_input() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "a b",
            "app@sha256:123",
            "-x/y",
            "a//b",
            "a/b_-c",
            "host:port/x",
            "x:-tag",
            "a/b:",
            "[::1/x",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid reference"), "{bad}: {e}");
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
