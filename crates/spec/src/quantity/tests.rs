use super::*;
use crate::{parse_documents, Object};

const NANO: i128 = 1_000_000_000;

#[test]
fn parses_kubernetes_quantities() {
    let cases: &[(&str, i128)] = &[
        ("100m", 100_000_000),
        ("1.5Gi", 1_610_612_736 * NANO),
        ("1e3", 1000 * NANO),
        ("1E3", 1000 * NANO),
        ("12e+2", 1200 * NANO),
        ("1e-3", 1_000_000),
        ("0.1", 100_000_000),
        (".5", 500_000_000),
        ("5.", 5 * NANO),
        ("+1", NANO),
        ("-1", -NANO),
        ("0", 0),
        ("1n", 1),
        ("1u", 1_000),
        ("100k", 100_000 * NANO),
        ("2M", 2_000_000 * NANO),
        ("3G", 3_000_000_000 * NANO),
        ("1T", 1_000_000_000_000 * NANO),
        ("1P", 1_000_000_000_000_000 * NANO),
        ("1E", 1_000_000_000_000_000_000 * NANO),
        ("5Ki", 5120 * NANO),
        ("128Mi", 134_217_728 * NANO),
        ("1Ti", (1 << 40) * NANO),
        ("1Pi", (1 << 50) * NANO),
        ("2Ei", (2 << 60) * NANO),
        ("0.000000001", 1),
        // Below a nano-unit rounds up, as the API server does.
        ("0.0000000001", 1),
        ("1e-12", 1),
        ("000000000000000000000000000000000000000000000001", NANO),
    ];
    for (text, nanos) in cases {
        let parsed = parse_quantity(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed.nanos(), *nanos, "{text}");
    }
}

#[test]
fn rejects_malformed_quantities() {
    let cases: &[(&str, &str)] = &[
        ("", "empty quantity"),
        ("abc", "must start with a number"),
        ("Gi", "must start with a number"),
        ("-", "must start with a number"),
        (".", "must start with a number"),
        ("1.5.5", "unknown suffix"),
        ("1 Gi", "unknown suffix"),
        (" 1", "must start with a number"),
        ("1g", "unknown suffix"),
        ("1KB", "unknown suffix"),
        ("1ki", "unknown suffix"),
        ("1Kii", "unknown suffix"),
        ("1e", "unknown suffix"),
        ("1e+", "unknown suffix"),
        ("1e3.5", "unknown suffix"),
        ("0x10", "unknown suffix"),
        ("1e99", "too large"),
        ("1e9999999999", "exponent too large"),
        (
            "99999999999999999999999999999999999999999",
            "too many digits",
        ),
    ];
    for (text, reason) in cases {
        let error = parse_quantity(text).expect_err(text);
        assert_eq!(error.reason, *reason, "{text}");
        assert_eq!(error.input, *text);
    }
    assert_eq!(
        parse_quantity("1g").unwrap_err().to_string(),
        "invalid quantity \"1g\": unknown suffix"
    );
}

#[test]
fn converts_to_millicores_and_bytes() {
    let q = |s: &str| Quantity(s.to_string());
    for (text, millis) in [
        ("100m", 100),
        ("0.5", 500),
        ("1", 1000),
        ("2", 2000),
        ("0.1m", 1),
        ("1e-3", 1),
    ] {
        assert_eq!(cpu_millis(&q(text)), Ok(millis), "{text}");
    }
    let bytes = [
        ("1.5Gi", 1_610_612_736),
        ("128Mi", 134_217_728),
        ("1e3", 1000),
        ("1k", 1000),
        ("1Ki", 1024),
        ("100m", 1),
        ("0", 0),
    ];
    for (text, expected) in bytes {
        assert_eq!(memory_bytes(&q(text)), Ok(expected), "{text}");
    }
    assert_eq!(memory_bytes(&q("16Ei")).unwrap_err().reason, "too large");
    assert_eq!(cpu_millis(&q("10E")).unwrap_err().reason, "too large");
    assert!(memory_bytes(&q("lots")).is_err());
}

#[test]
fn displays_shortest_exact_form() {
    for (text, shown) in [
        ("1.5", "1500m"),
        ("2000m", "2"),
        ("1Ki", "1024"),
        ("1.5m", "1500u"),
        ("7n", "7n"),
    ] {
        assert_eq!(parse_quantity(text).unwrap().to_string(), shown);
    }
    assert!(parse_quantity("3").unwrap().is_integer());
    assert!(!parse_quantity("3.5").unwrap().is_integer());
}

fn pod(spec: &str) -> Pod {
    let text = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{spec}");
    match parse_documents(&text, "qos.yaml").unwrap().remove(0) {
        Object::Pod(pod) => pod,
        other => panic!("not a pod: {other:?}"),
    }
}

const BOTH: &str = "{cpu: 500m, memory: 128Mi}";

fn container(name: &str, requests: &str, limits: &str) -> String {
    let mut text = format!("  - name: {name}\n    image: busybox\n");
    if !requests.is_empty() || !limits.is_empty() {
        text.push_str("    resources:\n");
    }
    if !requests.is_empty() {
        text.push_str(&format!("      requests: {requests}\n"));
    }
    if !limits.is_empty() {
        text.push_str(&format!("      limits: {limits}\n"));
    }
    text
}

#[test]
fn computes_qos_like_kubelet() {
    let cases: Vec<(&str, String, QosClass)> = vec![
        (
            "nothing set",
            format!("  containers:\n{}", container("a", "", "")),
            QosClass::BestEffort,
        ),
        (
            "requests equal limits",
            format!("  containers:\n{}", container("a", BOTH, BOTH)),
            QosClass::Guaranteed,
        ),
        (
            "limits only: requests default to them",
            format!("  containers:\n{}", container("a", "", BOTH)),
            QosClass::Guaranteed,
        ),
        (
            "requests only",
            format!("  containers:\n{}", container("a", BOTH, "")),
            QosClass::Burstable,
        ),
        (
            "requests below limits",
            format!(
                "  containers:\n{}",
                container("a", "{cpu: 100m, memory: 64Mi}", BOTH)
            ),
            QosClass::Burstable,
        ),
        (
            "cpu limit only",
            format!("  containers:\n{}", container("a", "", "{cpu: 1}")),
            QosClass::Burstable,
        ),
        (
            "one container without resources",
            format!(
                "  containers:\n{}{}",
                container("a", BOTH, BOTH),
                container("b", "", "")
            ),
            QosClass::Burstable,
        ),
        (
            "two guaranteed containers",
            format!(
                "  containers:\n{}{}",
                container("a", BOTH, BOTH),
                container("b", "", BOTH)
            ),
            QosClass::Guaranteed,
        ),
        (
            "init container without limits",
            format!(
                "  initContainers:\n{}  containers:\n{}",
                container("init", "", ""),
                container("a", BOTH, BOTH)
            ),
            QosClass::Burstable,
        ),
        (
            "guaranteed init container",
            format!(
                "  initContainers:\n{}  containers:\n{}",
                container("init", BOTH, BOTH),
                container("a", BOTH, BOTH)
            ),
            QosClass::Guaranteed,
        ),
        (
            "init container requests only",
            format!(
                "  initContainers:\n{}  containers:\n{}",
                container("init", "{memory: 10Mi}", ""),
                container("a", "", "")
            ),
            QosClass::Burstable,
        ),
        (
            "zero requests are ignored",
            format!(
                "  containers:\n{}",
                container("a", "{cpu: 0, memory: 0}", "")
            ),
            QosClass::BestEffort,
        ),
        (
            "other resources do not count",
            format!(
                "  containers:\n{}",
                container("a", "{ephemeral-storage: 1Gi}", "{ephemeral-storage: 1Gi}")
            ),
            QosClass::BestEffort,
        ),
        (
            "pod-level limits",
            format!(
                "  resources:\n    limits: {BOTH}\n  containers:\n{}",
                container("a", "", "")
            ),
            QosClass::Guaranteed,
        ),
        (
            "pod-level requests only",
            format!(
                "  resources:\n    requests: {BOTH}\n  containers:\n{}",
                container("a", BOTH, BOTH)
            ),
            QosClass::Burstable,
        ),
    ];
    for (name, spec, expected) in cases {
        assert_eq!(qos_class(&pod(&spec)), expected, "{name}");
    }
    assert_eq!(qos_class(&Pod::default()), QosClass::BestEffort);
    assert_eq!(QosClass::Burstable.to_string(), "Burstable");
}

#[test]
fn aggregates_init_and_sidecar_requests() {
    let p = pod(&format!(
        "  initContainers:\n{}    restartPolicy: Always\n{}  containers:\n{}",
        container("sidecar", "{cpu: 100m}", ""),
        container("setup", "{cpu: 1}", ""),
        container("app", "{cpu: 200m}", ""),
    ));
    // Peak during "setup" (sidecar 100m + 1) beats the steady state (sidecar + app).
    let total = aggregate_container_requests(&p);
    assert_eq!(total["cpu"], parse_quantity("1100m").unwrap());
}

#[test]
fn canonical_quantities_print_as_go_does() {
    let cases = [
        ("1Mi", "1Mi"),
        ("1024Ki", "1Mi"),
        ("1536Ki", "1536Ki"),
        ("2Gi", "2Gi"),
        ("512Ki", "512Ki"),
        ("0.5Ki", "512"),
        ("1048576", "1048576"),
        ("1500000", "1500k"),
        ("1000M", "1G"),
        ("1G", "1G"),
        ("0.5", "500m"),
        ("0", "0"),
        ("0Mi", "0"),
        ("1e6", "1e6"),
        ("1000e3", "1e6"),
    ];
    for (input, want) in cases {
        assert_eq!(canonical_quantity(input).unwrap(), want, "{input}");
    }
    assert!(canonical_quantity("lots").is_err());
}
