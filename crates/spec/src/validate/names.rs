//! Name and format rules of k8s.io/apimachinery/pkg/util/validation/validation.go.
//! Each returns Kubernetes' messages; an empty list means valid.

const LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn too_long(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, plus `_` inside when `underscore` (relaxed DNS search).
fn is_label(s: &str, underscore: bool) -> bool {
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            edge(first)
                && edge(last)
                && bytes
                    .iter()
                    .all(|&b| edge(b) || b == b'-' || (underscore && b == b'_'))
        }
        _ => false,
    }
}

/// `IsDNS1123Label`: container, volume and port-less names, namespaces, hostnames.
pub(super) fn dns1123_label(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 63 {
        errors.push(too_long(63));
    }
    if !is_label(s, false) {
        errors.push(LABEL_MESSAGE.to_string());
    }
    errors
}

/// `IsDNS1123Subdomain`: object names.
pub(super) fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 253 {
        errors.push(too_long(253));
    }
    if !s.split('.').all(|part| is_label(part, false)) {
        errors.push(SUBDOMAIN_MESSAGE.to_string());
    }
    errors
}

/// A DNS search domain under RelaxedDNSSearchValidation (GA in 1.34): `_` allowed, a
/// single `.` allowed, a trailing dot trimmed.
pub(super) fn dns_search(s: &str) -> Vec<String> {
    if s == "." {
        return Vec::new();
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    let mut errors = Vec::new();
    if s.len() > 253 {
        errors.push(too_long(253));
    }
    if !s.split('.').all(|part| is_label(part, true)) {
        errors.push("an RFC 1123 subdomain must consist of lower case alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into());
    }
    errors
}

fn is_qualified_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `IsQualifiedName`: label and annotation keys (`example.com/MyName`).
pub(super) fn qualified_name(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_string());
            } else {
                errors.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errors.push(format!("a qualified name {QUALIFIED_MESSAGE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errors.push(format!("name part {}", too_long(63)));
    }
    if !is_qualified_part(name) {
        errors.push(format!("name part {QUALIFIED_MESSAGE}"));
    }
    errors
}

/// `IsValidLabelValue`: empty, or a qualified name part of at most 63 characters.
pub(super) fn label_value(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 63 {
        errors.push(too_long(63));
    }
    if !s.is_empty() && !is_qualified_part(s) {
        errors.push(format!(
            "a valid label must be an empty string or {QUALIFIED_MESSAGE}"
        ));
    }
    errors
}

/// `IsConfigMapKey`: ConfigMap and Secret keys, which become file names.
pub(super) fn config_key(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 253 {
        errors.push(too_long(253));
    }
    let valid = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        errors.push(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'".into(),
        );
    }
    if s == "." {
        errors.push("must not be '.'".into());
    } else if s == ".." {
        errors.push("must not be '..'".into());
    } else if s.starts_with("..") {
        errors.push("must not start with '..'".into());
    }
    errors
}

/// `IsValidPortName`: an IANA_SVC_NAME.
pub(super) fn port_name(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 15 {
        errors.push(too_long(15));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errors
            .push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        errors.push("must contain at least one letter (a-z)".into());
    }
    if s.contains("--") {
        errors.push("must not contain consecutive hyphens".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errors.push("must not begin or end with a hyphen".into());
    }
    errors
}

/// `IsRelaxedEnvVarName`, the rule since RelaxedEnvironmentVariableValidation went GA
/// (1.34): any printable ASCII but `=`. It also applies to `envFrom` prefixes.
pub(super) fn env_var_name(s: &str) -> Vec<String> {
    if s.is_empty() {
        return vec!["environment variable name must be non-empty".into()];
    }
    if s.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'=') {
        Vec::new()
    } else {
        vec!["a valid environment variable name must consist only of printable ASCII characters other than '='".into()]
    }
}

/// `IsHTTPHeaderName`.
pub(super) fn http_header_name(s: &str) -> Vec<String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Vec::new()
    } else {
        vec!["a valid HTTP header must consist of alphanumeric characters or '-'".into()]
    }
}

/// `IsValidSysctlName`: `kernel.shm_rmid_forced`, `net/ipv4/ip_forward`.
pub(super) fn sysctl_name(s: &str) -> Vec<String> {
    let segment = |p: &str| {
        let bytes = p.as_bytes();
        let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        bytes.first().is_some_and(edge)
            && bytes.last().is_some_and(edge)
            && bytes.iter().all(|b| edge(b) || *b == b'-' || *b == b'_')
    };
    if s.len() <= 253 && s.split(['.', '/']).all(segment) {
        Vec::new()
    } else {
        vec!["must have at most 253 characters and match the sysctl name format (dot- or slash-separated segments of lower case alphanumerics, '-' and '_')".into()]
    }
}

/// `IsValidIP`.
pub(super) fn ip(s: &str) -> Vec<String> {
    match s.parse::<std::net::IpAddr>() {
        Ok(_) => Vec::new(),
        Err(_) => vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()],
    }
}
