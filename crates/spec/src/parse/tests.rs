use super::*;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Renders the errors of a text that must fail, one per line as users see them.
fn errors(text: &str) -> Vec<String> {
    match parse_documents(text, "pod.yaml") {
        Ok(objects) => panic!("parsed: {objects:?}"),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

fn only_pod(text: &str) -> Pod {
    let mut objects = parse_documents(text, "pod.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(objects.len(), 1);
    match objects.remove(0) {
        Object::Pod(pod) => pod,
        other => panic!("not a pod: {other:?}"),
    }
}

const POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: nginx
    image: nginx:1.25
    ports:
    - containerPort: 80
      name: http
";

#[test]
fn parses_a_configmap_and_a_pod() {
    let text = format!(
        "# leading comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf\ndata:\n  a.txt: hello\n---\n{POD}"
    );
    let objects = parse_documents(&text, "pod.yaml").unwrap();
    let kinds: Vec<_> = objects.iter().map(|o| (o.kind(), o.name())).collect();
    assert_eq!(kinds, [("ConfigMap", "conf"), ("Pod", "web")]);
    let Object::ConfigMap(cm) = &objects[0] else {
        panic!()
    };
    assert_eq!(cm.data.as_ref().unwrap()["a.txt"], "hello");
    let Object::Pod(pod) = &objects[1] else {
        panic!()
    };
    let container = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 80);
}

#[test]
fn skips_empty_documents() {
    for text in [
        "",
        "---\n",
        "# only a comment\n",
        "---\n---\n",
        "---\n...\n",
    ] {
        assert_eq!(parse_documents(text, "x.yaml").unwrap(), vec![], "{text:?}");
    }
    let text = format!("---\n---\n{POD}---\n# trailing\n---\n");
    assert_eq!(parse_documents(&text, "x.yaml").unwrap().len(), 1);
}

#[test]
fn reads_json_and_lists() {
    let json = r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                   "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"}"#;
    let objects = parse_documents(json, "s.json").unwrap();
    let Object::Secret(secret) = &objects[0] else {
        panic!()
    };
    assert_eq!(secret.data.as_ref().unwrap()["password"].0, b"hunter2");

    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: b}\n  stringData: {k: v}\n";
    let objects = parse_documents(list, "l.yaml").unwrap();
    let names: Vec<_> = objects.iter().map(|o| (o.kind(), o.name())).collect();
    assert_eq!(names, [("ConfigMap", "a"), ("Secret", "b")]);
}

#[test]
fn rejects_unknown_kinds_naming_document_and_kind() {
    let text = format!("{POD}---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n");
    assert_eq!(
        errors(&text),
        ["pod.yaml:16: kind: unsupported kind \"Deployment\" (apiVersion \"apps/v1\") in document 2: podrun accepts v1 Pod, ConfigMap, Secret, PersistentVolumeClaim and List"]
    );
    assert_eq!(
        errors("apiVersion: v2\nkind: Pod\nmetadata: {name: x}\n"),
        ["pod.yaml:1: apiVersion: unsupported apiVersion \"v2\" for kind Pod in document 1: want \"v1\""]
    );
    assert_eq!(
        errors("apiVersion: v1\nmetadata: {name: x}\n"),
        ["pod.yaml:1: kind: required value (document 1)"]
    );
    assert_eq!(
        errors("kind: 3\napiVersion: v1\n"),
        ["pod.yaml:1: kind: must be a string, not a number"]
    );
    assert_eq!(
        errors("---\n- a\n- b\n"),
        ["pod.yaml:2: document 1 must be an object with apiVersion and kind, not a list"]
    );
    let nested = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n";
    assert_eq!(
        errors(nested),
        ["pod.yaml:5: items[0].kind: a List may not contain a List (document 1)"]
    );
}

#[test]
fn reports_unknown_fields_with_their_lines() {
    let text = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  lables:
    app: web
spec:
  containers:
  - name: nginx
    image: nginx
    ports:
    - containerPort: 80
      protocl: TCP
    imagePullPolicyy: Always
  restartPolicyy: Never
extra: 1
";
    assert_eq!(
        errors(text),
        [
            "pod.yaml:5: metadata.lables: unknown field",
            "pod.yaml:13: spec.containers[0].ports[0].protocl: unknown field",
            "pod.yaml:14: spec.containers[0].imagePullPolicyy: unknown field",
            "pod.yaml:15: spec.restartPolicyy: unknown field",
            "pod.yaml:16: extra: unknown field",
        ]
    );
}

#[test]
fn reports_unknown_fields_inside_lists_and_flow_style() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}, dta: {}}\nkinds: []\n";
    assert_eq!(
        errors(text),
        [
            "pod.yaml:5: kinds: unknown field",
            "pod.yaml:4: items[0].dta: unknown field",
        ]
    );
}

#[test]
fn reports_type_errors_with_path_and_line() {
    let text = POD.replace("containerPort: 80", "containerPort: \"eighty\"");
    assert_eq!(
        errors(&text),
        ["pod.yaml:12: spec.containers[0].ports[0].containerPort: invalid type: string \"eighty\", expected i32"]
    );
    let text = POD.replace("app: web", "version: 1.0");
    assert_eq!(
        errors(&text),
        ["pod.yaml:6: metadata.labels.version: invalid type: integer `1`, expected a string (quote the value to make it a string)"]
    );
    // k8s-openapi, like Go, fills missing required scalars with zero values: validation
    // reports them (see the crate tests), decoding does not.
    let text = POD.replace("  - name: nginx\n    image", "  - image");
    assert_eq!(only_pod(&text).spec.unwrap().containers[0].name, "");
}

#[test]
fn resolves_scalars_like_the_api_server() {
    // go-yaml v2 (YAML 1.1): yes/on are booleans, so an unquoted `yes` is no string.
    let env = POD.replace(
        "    ports:\n",
        "    env:\n    - name: DEBUG\n      value: yes\n    ports:\n",
    );
    assert_eq!(
        errors(&env),
        ["pod.yaml:13: spec.containers[0].env[0].value: invalid type: boolean `true`, expected a string (quote the value to make it a string)"]
    );
    let env = POD.replace(
        "    ports:\n",
        "    env:\n    - name: PORT\n      value: 80\n    ports:\n",
    );
    assert!(errors(&env)[0].contains("invalid type: integer `80`, expected a string (quote"));
    // Octal modes, exponent numbers, integral floats, quoted numbers.
    let text = "\
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: c
    image: busybox
    ports: [{containerPort: 80.0}, {containerPort: 0x1F90}]
    resources:
      limits: {memory: 1e3, cpu: 0.5}
    env: [{name: A, value: \"80\"}, {name: B, value: !!str 443}, {name: C, value: 'yes'}]
    livenessProbe:
      httpGet: {port: 8080}
    readinessProbe:
      httpGet: {port: http}
  volumes:
  - name: conf
    configMap: {name: c, defaultMode: 0644}
  - name: conf2
    secret: {secretName: s, defaultMode: 0o600}
";
    let pod = only_pod(text);
    let spec = pod.spec.unwrap();
    let c = &spec.containers[0];
    let ports: Vec<_> = c.ports.iter().flatten().map(|p| p.container_port).collect();
    assert_eq!(ports, [80, 8080]);
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(
        (limits["memory"].0.as_str(), limits["cpu"].0.as_str()),
        ("1000", "0.5")
    );
    let values: Vec<_> = c
        .env
        .iter()
        .flatten()
        .map(|e| e.value.clone().unwrap())
        .collect();
    assert_eq!(values, ["80", "443", "yes"]);
    let port = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref().unwrap().http_get.as_ref().unwrap().port.clone()
    };
    assert_eq!(port(&c.liveness_probe), IntOrString::Int(8080));
    assert_eq!(port(&c.readiness_probe), IntOrString::String("http".into()));
    let volumes = spec.volumes.unwrap();
    assert_eq!(
        volumes[0].config_map.as_ref().unwrap().default_mode,
        Some(0o644)
    );
    assert_eq!(
        volumes[1].secret.as_ref().unwrap().default_mode,
        Some(0o600)
    );
}

#[test]
fn expands_anchors_aliases_and_merge_keys() {
    let text = "\
apiVersion: v1
kind: Pod
metadata:
  name: p
  labels: &labels {app: web, tier: front}
  annotations: *labels
spec:
  containers:
  - &base
    name: a
    image: busybox
    command: [sleep, infinity]
  - <<: *base
    name: b
";
    let pod = only_pod(text);
    assert_eq!(pod.metadata.annotations, pod.metadata.labels);
    let containers = pod.spec.unwrap().containers;
    assert_eq!(
        (containers[1].name.as_str(), containers[1].image.as_deref()),
        ("b", Some("busybox"))
    );
    assert_eq!(containers[1].command, containers[0].command);
}

#[test]
fn reports_yaml_syntax_errors_with_line() {
    let broken = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n   bad: indent\n";
    let lines = errors(broken);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("pod.yaml:5: invalid YAML at column"),
        "{}",
        lines[0]
    );
    let unclosed = "apiVersion: v1\nkind: Pod\nmetadata: {name: web\n";
    assert!(
        errors(unclosed)[0].starts_with("pod.yaml:"),
        "{:?}",
        errors(unclosed)
    );
    assert_eq!(
        errors("a: *nowhere\n")[0],
        "pod.yaml:1: invalid YAML at column 4: while parsing node, found unknown anchor"
    );
}

#[test]
fn reports_duplicate_keys() {
    let text = POD.replace(
        "    image: nginx:1.25\n",
        "    image: nginx:1.25\n    image: nginx:1.26\n",
    );
    assert_eq!(
        errors(&text),
        ["pod.yaml:11: spec.containers[0].image: duplicate field"]
    );
}

#[test]
fn reports_errors_of_every_document_at_once() {
    let text = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: 1\n",
        POD.replace("image: nginx:1.25", "imag: nginx:1.25")
    );
    assert_eq!(
        errors(&text),
        [
            "pod.yaml:10: spec.containers[0].imag: unknown field",
            "pod.yaml:20: data.k: invalid type: integer `1`, expected a string (quote the value to make it a string)",
        ]
    );
}

#[test]
fn refuses_alias_bombs_and_deep_nesting() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..8 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("b{}", i - 1)
        };
        bomb.push_str(&format!("b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    assert!(errors(&bomb)
        .iter()
        .any(|e| e.contains("too many alias expansions")));
    let deep = format!("{}1{}", "[".repeat(220), "]".repeat(220));
    let deep_errors = errors(&deep);
    assert!(
        deep_errors.iter().any(|e| e.contains("nested too deeply")),
        "{deep_errors:?}"
    );
}

#[test]
fn go_int_and_float_rules() {
    let int = |s: &str| parse_go_int(s);
    assert_eq!(int("0644"), Some(Value::from(420)));
    assert_eq!(int("-0x10"), Some(Value::from(-16)));
    assert_eq!(int("0b101"), Some(Value::from(5)));
    assert_eq!(int("18446744073709551615"), Some(Value::from(u64::MAX)));
    assert_eq!(int("08"), None);
    assert_eq!(int("1.5"), None);
    assert!(
        is_yaml_float("08") && is_yaml_float("-.5") && is_yaml_float("1e+3") && is_yaml_float("5.")
    );
    assert!(
        !is_yaml_float("1e")
            && !is_yaml_float(".")
            && !is_yaml_float("1.2.3")
            && !is_yaml_float("e3")
    );
    assert_eq!(resolve_plain("1_000"), Ok(Value::from(1000)));
    assert_eq!(resolve_plain("08"), Ok(Value::from(8)));
    assert_eq!(resolve_plain("~"), Ok(Value::Null));
    assert_eq!(resolve_plain("Off"), Ok(Value::Bool(false)));
    assert_eq!(resolve_plain("1.5Gi"), Ok(Value::from("1.5Gi")));
    assert!(resolve_plain(".inf").is_err());
}

#[test]
fn accepts_windows_line_endings_and_a_byte_order_mark() {
    let crlf = format!("\u{feff}{}", POD.replace('\n', "\r\n"));
    let pod = only_pod(&crlf);
    assert_eq!(pod.metadata.name.as_deref(), Some("web"));
    let typo = crlf.replace("image:", "imag:");
    assert_eq!(
        errors(&typo),
        ["pod.yaml:10: spec.containers[0].imag: unknown field"]
    );
}
