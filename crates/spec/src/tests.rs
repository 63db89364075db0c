use super::*;

const MANIFEST: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-conf
data:
  nginx.conf: |
    server { listen 8080; }
---
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: nginx
    image: nginx:1.25
    ports:
    - containerPort: 8080
    volumeMounts:
    - {name: conf, mountPath: /etc/nginx/conf.d}
  volumes:
  - name: conf
    configMap: {name: web-conf}
";

#[test]
fn loads_validates_and_defaults() {
    let objects = load(MANIFEST, "web.yaml").unwrap();
    assert_eq!(objects.len(), 2);
    let Object::Pod(pod) = &objects[1] else {
        panic!()
    };
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    assert_eq!(objects[0].namespace(), "default");
    assert_eq!(objects[0].kind(), "ConfigMap");
}

#[test]
fn reports_every_problem_with_its_line() {
    let broken = MANIFEST
        .replace("containerPort: 8080", "containerPort: 0")
        .replace(
            "  - name: nginx\n",
            "  - name: nginx\n    imagePullPolicyy: Always\n",
        )
        .replace("mountPath: /etc/nginx/conf.d", "mountPath: etc/nginx")
        .replace("name: web-conf\ndata", "name: Web_Conf\ndata");
    let error = load(&broken, "web.yaml").unwrap_err();
    assert_eq!(
        error.to_string(),
        "\
web.yaml:4: metadata.name: invalid value \"Web_Conf\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character
web.yaml:16: spec.containers[0].imagePullPolicyy: unknown field
web.yaml:19: spec.containers[0].ports[0].containerPort: must be between 1 and 65535, got 0
web.yaml:21: spec.containers[0].volumeMounts[0].mountPath: invalid value \"etc/nginx\": must be an absolute path"
    );
    assert_eq!(error.source_name, "web.yaml");
    assert_eq!(error.errors.len(), 4);
    assert_eq!(
        error.errors[2].path,
        "spec.containers[0].ports[0].containerPort"
    );
    assert_eq!(error.errors[2].line, Some(19));
}

#[test]
fn missing_fields_are_reported_at_their_parent() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - image: busybox\n    ports:\n    - name: http\n";
    let error = load(text, "pod.yaml").unwrap_err();
    let lines: Vec<String> = error.to_string().lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            "pod.yaml:7: spec.containers[0].name: required value",
            "pod.yaml:9: spec.containers[0].ports[0].containerPort: must be between 1 and 65535, got 0",
        ]
    );
}

#[test]
fn list_items_keep_their_path() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p}\n  spec:\n    restartPolicy: Sometimes\n    containers: [{name: c, image: busybox}]\n";
    let error = load(text, "list.yaml").unwrap_err();
    assert_eq!(
        error.to_string(),
        "list.yaml:8: items[0].spec.restartPolicy: unsupported value \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
    );
}

#[test]
fn duplicate_objects_are_refused() {
    let text = format!("{MANIFEST}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-conf\n  namespace: default\n");
    let error = load(&text, "web.yaml").unwrap_err();
    assert_eq!(
        error.to_string(),
        "web.yaml:28: metadata.name: duplicate ConfigMap \"web-conf\" in namespace \"default\" (also in document 1)"
    );
}

#[test]
fn load_runnable_refuses_also_what_the_node_cannot_run() {
    // The API server takes an nfs volume; podrun cannot mount one yet.
    let claim = MANIFEST.replace(
        "configMap: {name: web-conf}",
        "nfs: {server: nfs.local, path: /export}",
    );
    assert!(load(&claim, "web.yaml").is_ok());
    assert!(
        load_runnable(MANIFEST, "web.yaml").is_ok(),
        "configMap volumes run"
    );
    let broken = claim.replace("containerPort: 8080", "containerPort: 0");
    let error = load_runnable(&broken, "web.yaml").unwrap_err();
    assert_eq!(
        error.to_string(),
        "\
web.yaml:18: spec.containers[0].ports[0].containerPort: must be between 1 and 65535, got 0
web.yaml:23: spec.volumes[0].nfs: unsupported value: podrun does not support nfs volumes yet (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected, image, persistentVolumeClaim)"
    );
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}",
        claim.split("---\n").nth(1).unwrap().replace('\n', "\n  ")
    );
    let error = load_runnable(&list, "list.yaml").unwrap_err();
    assert_eq!(error.errors.len(), 1, "{error}");
    assert_eq!(error.errors[0].path, "items[0].spec.volumes[0].nfs");
    assert_eq!(error.errors[0].line, Some(18));
    let runnable = MANIFEST.replace("configMap: {name: web-conf}", "emptyDir: {}");
    assert_eq!(
        load_runnable(&runnable, "web.yaml").unwrap(),
        load(&runnable, "web.yaml").unwrap()
    );
}

#[test]
fn errors_without_lines_print_without_them() {
    let errors = SpecErrors::new(
        "stdin",
        vec![
            FieldError::new("spec.containers", "required value"),
            FieldError::new("", "something about the text"),
        ],
    );
    assert_eq!(
        errors.to_string(),
        "stdin: spec.containers: required value\nstdin: something about the text"
    );
}

#[test]
fn joins_paths() {
    assert_eq!(join_path("", "spec"), "spec");
    assert_eq!(join_path("spec", ""), "spec");
    assert_eq!(join_path("items", "[0]"), "items[0]");
    assert_eq!(
        join_path("items[0]", "spec.containers"),
        "items[0].spec.containers"
    );
}
