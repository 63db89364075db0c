use super::*;

fn objects(yaml: &str) -> (Pod, Sources) {
    let mut pod = None;
    let mut s = Sources::default();
    for o in podrun_spec::load(yaml, "test.yaml").unwrap() {
        match o {
            podrun_spec::Object::Pod(p) => pod = Some(p),
            podrun_spec::Object::ConfigMap(c) => {
                s.config_maps.insert(c.metadata.name.clone().unwrap(), c);
            }
            podrun_spec::Object::Secret(x) => {
                s.secrets.insert(x.metadata.name.clone().unwrap(), x);
            }
            podrun_spec::Object::PersistentVolumeClaim(_) => {}
        }
    }
    (pod.expect("a pod"), s)
}

fn node() -> NodeFacts {
    NodeFacts {
        node_name: "node1".into(),
        cpu_millis: 2000,
        memory_bytes: 1 << 30,
        ..Default::default()
    }
}

/// The payload of the pod's volume `name`.
fn volume(yaml: &str, name: &str) -> Result<Payload, ProjectionError> {
    let (pod, sources) = objects(yaml);
    let v = pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap()
        .clone();
    payload(&pod, &v, &sources, &node()).expect("a projected kind")
}

fn text(p: &Payload, path: &str) -> (String, u32) {
    let f = p
        .get(path)
        .unwrap_or_else(|| panic!("no {path} in {:?}", p.keys()));
    (String::from_utf8(f.data.clone()).unwrap(), f.mode)
}

const POD: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
  uid: 9b2f1d3e-0000-4000-8000-000000000001
  labels: {app: web, tier: front-end}
  annotations: {note: \"say \\\"hi\\\"\\nbye\"}
spec:
  containers:
  - name: app
    image: busybox
    resources:
      limits: {memory: 64Mi}
      requests: {cpu: 250m}
  volumes:
  - name: config
    configMap: {name: game}
  - name: some-config
    configMap:
      name: game
      defaultMode: 0600
      items:
      - {key: lives, path: conf/lives.txt}
      - {key: icon, path: icon.png, mode: 0400}
  - name: missing-key
    configMap:
      name: game
      items: [{key: nope, path: x}]
  - name: optional-missing
    configMap: {name: nothere, optional: true}
  - name: missing
    configMap: {name: nothere}
  - name: creds
    secret: {secretName: creds}
  - name: info
    downwardAPI:
      items:
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
      - {path: tier, fieldRef: {fieldPath: \"metadata.labels['tier']\"}}
      - path: mem
        resourceFieldRef: {containerName: app, resource: limits.memory, divisor: 1Mi}
      - path: cpu
        mode: 0400
        resourceFieldRef: {containerName: app, resource: requests.cpu, divisor: 1m}
  - name: all
    projected:
      defaultMode: 0640
      sources:
      - configMap: {name: game, items: [{key: lives, path: lives}]}
      - secret: {name: creds}
      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: game}
data:
  lives: \"3\"
  game.properties: |
    enemies=aliens
binaryData:
  icon: iVBORw==
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data:
  user: YWRtaW4=
stringData:
  password: s3cret
";

#[test]
fn a_config_map_without_items_has_every_key_at_the_default_mode() {
    let p = volume(POD, "config").unwrap();
    assert_eq!(p.len(), 3, "{:?}", p.keys());
    assert_eq!(text(&p, "lives"), ("3".into(), 0o644));
    assert_eq!(
        text(&p, "game.properties"),
        ("enemies=aliens\n".into(), 0o644)
    );
    assert_eq!(p["icon"].data, [0x89, b'P', b'N', b'G']);
}

#[test]
fn items_choose_keys_paths_and_modes() {
    let p = volume(POD, "some-config").unwrap();
    assert_eq!(p.len(), 2, "{:?}", p.keys());
    assert_eq!(text(&p, "conf/lives.txt"), ("3".into(), 0o600));
    assert_eq!(p["icon.png"].mode, 0o400);
}

#[test]
fn a_missing_key_or_object_is_kubelets_error_unless_optional() {
    let e = volume(POD, "missing-key").unwrap_err();
    assert_eq!(
        e.to_string(),
        "volume missing-key: configmap references non-existent config key: nope"
    );
    let e = volume(POD, "missing").unwrap_err();
    assert_eq!(
        e.to_string(),
        "volume missing: configmap \"nothere\" not found"
    );
    assert!(volume(POD, "optional-missing").unwrap().is_empty());
}

#[test]
fn a_secret_has_data_and_string_data() {
    let p = volume(POD, "creds").unwrap();
    assert_eq!(text(&p, "user"), ("admin".into(), 0o644));
    assert_eq!(text(&p, "password"), ("s3cret".into(), 0o644));
}

#[test]
fn downward_api_files_are_in_kubelets_format() {
    let p = volume(POD, "info").unwrap();
    assert_eq!(text(&p, "name").0, "web");
    assert_eq!(text(&p, "labels").0, "app=\"web\"\ntier=\"front-end\"");
    assert_eq!(text(&p, "annotations").0, r#"note="say \"hi\"\nbye""#);
    assert_eq!(text(&p, "tier").0, "front-end");
    assert_eq!(text(&p, "mem").0, "64");
    assert_eq!(text(&p, "cpu"), ("250".into(), 0o400));
}

#[test]
fn a_projected_volume_combines_its_sources_with_its_default_mode() {
    let p = volume(POD, "all").unwrap();
    let paths: Vec<&String> = p.keys().collect();
    assert_eq!(paths, ["lives", "ns", "password", "user"]);
    assert_eq!(text(&p, "lives"), ("3".into(), 0o640));
    assert_eq!(text(&p, "ns"), ("default".into(), 0o640));
}

/// Validation refuses these at apply; the projection refuses them again.
#[test]
fn conflicting_paths_and_tokens_are_refused() {
    let (pod, sources) = objects(POD);
    let projected = |sources_json: serde_json::Value| -> Volume {
        serde_json::from_value(serde_json::json!({
            "name": "v", "projected": {"sources": sources_json}
        }))
        .unwrap()
    };
    let clash = projected(serde_json::json!([
        {"configMap": {"name": "game", "items": [{"key": "lives", "path": "same"}]}},
        {"secret": {"name": "creds", "items": [{"key": "user", "path": "same"}]}},
    ]));
    let e = payload(&pod, &clash, &sources, &node())
        .unwrap()
        .unwrap_err();
    assert_eq!(e.to_string(), "volume v: conflicting duplicate paths: same");
    let token = projected(serde_json::json!([{"serviceAccountToken": {"path": "token"}}]));
    let e = payload(&pod, &token, &sources, &node())
        .unwrap()
        .unwrap_err();
    assert!(
        e.to_string().contains("not available on a standalone node"),
        "{e}"
    );
}

#[test]
fn go_quoting_matches_strconv_quote() {
    use crate::env::go_quote;
    assert_eq!(go_quote("plain"), r#""plain""#);
    assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(go_quote("l1\nl2\tx\r"), r#""l1\nl2\tx\r""#);
    assert_eq!(go_quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
    assert_eq!(go_quote("café ✓"), "\"café ✓\"");
    assert_eq!(go_quote("\u{2028}"), r#""\u2028""#);
}
