use super::*;
use crate::parse_documents;
use k8s_openapi::api::core::v1::Secret;

fn pod(text: &str) -> Pod {
    match parse_documents(text, "d.yaml").unwrap().remove(0) {
        Object::Pod(pod) => pod,
        other => panic!("not a pod: {other:?}"),
    }
}

const FULL: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  initContainers:
  - {name: init, image: busybox:1.36}
  containers:
  - name: app
    image: registry.local:5000/team/app
    ports: [{containerPort: 8080}]
    env: [{name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
    resources:
      limits: {cpu: 500m, memory: 128Mi}
      requests: {cpu: 100m}
    livenessProbe: {httpGet: {port: 8080}}
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 0, timeoutSeconds: 5}
    lifecycle: {preStop: {httpGet: {port: 8080}}}
  volumes:
  - name: scratch
  - {name: tmp, emptyDir: {}}
  - {name: logs, hostPath: {path: /var/log}}
  - {name: conf, configMap: {name: conf}}
  - {name: creds, secret: {secretName: creds, defaultMode: 0400}}
  - {name: info, downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}}
  - {name: all, projected: {sources: [{serviceAccountToken: {path: token}}]}}
";

#[test]
fn applies_the_api_server_defaults() {
    let mut p = pod(FULL);
    apply_defaults(&mut p);
    assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
    let spec = p.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(spec.enable_service_links, Some(true));
    assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
    assert_eq!(spec.security_context, Some(PodSecurityContext::default()));

    let init = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let app = &spec.containers[0];
    assert_eq!(app.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        app.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    assert_eq!(app.termination_message_policy.as_deref(), Some("File"));
    let port = &app.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.protocol.as_deref(), port.host_port),
        (Some("TCP"), None)
    );
    let field_ref = app.env.as_ref().unwrap()[0]
        .value_from
        .as_ref()
        .unwrap()
        .field_ref
        .as_ref()
        .unwrap();
    assert_eq!(field_ref.api_version.as_deref(), Some("v1"));

    let resources = app.resources.as_ref().unwrap();
    let requests = resources.requests.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "100m", "explicit requests are kept");
    assert_eq!(
        requests["memory"].0, "128Mi",
        "missing requests come from limits"
    );

    let liveness = app.liveness_probe.as_ref().unwrap();
    let timings = |p: &Probe| {
        (
            p.timeout_seconds,
            p.period_seconds,
            p.success_threshold,
            p.failure_threshold,
        )
    };
    assert_eq!(timings(liveness), (Some(1), Some(10), Some(1), Some(3)));
    let http = liveness.http_get.as_ref().unwrap();
    assert_eq!(
        (http.path.as_deref(), http.scheme.as_deref()),
        (Some("/"), Some("HTTP"))
    );
    let readiness = app.readiness_probe.as_ref().unwrap();
    assert_eq!(timings(readiness), (Some(5), Some(10), Some(1), Some(3)));
    let pre_stop = app.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
    assert_eq!(
        pre_stop.http_get.as_ref().unwrap().path.as_deref(),
        Some("/")
    );

    let volumes = spec.volumes.as_ref().unwrap();
    assert_eq!(
        volumes[0].empty_dir.as_ref().unwrap().medium.as_deref(),
        Some(""),
        "no source → emptyDir"
    );
    assert_eq!(
        volumes[1].empty_dir.as_ref().unwrap().medium.as_deref(),
        Some("")
    );
    assert_eq!(
        volumes[2].host_path.as_ref().unwrap().type_.as_deref(),
        Some("")
    );
    assert_eq!(
        volumes[3].config_map.as_ref().unwrap().default_mode,
        Some(0o644)
    );
    assert_eq!(
        volumes[4].secret.as_ref().unwrap().default_mode,
        Some(0o400),
        "explicit mode kept"
    );
    let downward = volumes[5].downward_api.as_ref().unwrap();
    assert_eq!(downward.default_mode, Some(0o644));
    let item_ref = downward.items.as_ref().unwrap()[0]
        .field_ref
        .as_ref()
        .unwrap();
    assert_eq!(item_ref.api_version.as_deref(), Some("v1"));
    let projected = volumes[6].projected.as_ref().unwrap();
    assert_eq!(projected.default_mode, Some(0o644));
    let token = projected.sources.as_ref().unwrap()[0]
        .service_account_token
        .as_ref()
        .unwrap();
    assert_eq!(token.expiration_seconds, Some(3600));
}

#[test]
fn keeps_explicit_values_and_is_idempotent() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: team}\nspec:\n  restartPolicy: Never\n  dnsPolicy: Default\n  terminationGracePeriodSeconds: 0\n  enableServiceLinks: false\n  containers:\n  - {name: c, image: busybox, imagePullPolicy: Never, terminationMessagePolicy: FallbackToLogsOnError}\n";
    let mut p = pod(text);
    apply_defaults(&mut p);
    let once = p.clone();
    apply_defaults(&mut p);
    assert_eq!(p, once);
    let spec = p.spec.unwrap();
    assert_eq!(p.metadata.namespace.as_deref(), Some("team"));
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.dns_policy.as_deref(), Some("Default"));
    assert_eq!(spec.termination_grace_period_seconds, Some(0));
    assert_eq!(spec.enable_service_links, Some(false));
    let c = &spec.containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("Never"));
    assert_eq!(
        c.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
}

#[test]
fn pull_policy_follows_the_tag() {
    let cases = [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.25", "IfNotPresent"),
        ("library/nginx:1.25-alpine", "IfNotPresent"),
        ("localhost:5000/nginx", "Always"),
        ("localhost:5000/nginx:1.0", "IfNotPresent"),
        ("registry.local:5000/ns/app:latest", "Always"),
        (
            "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "IfNotPresent",
        ),
        (
            "nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Always",
        ),
        (
            "nginx:1.25@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "IfNotPresent",
        ),
    ];
    for (image, policy) in cases {
        assert_eq!(default_pull_policy(image), policy, "{image}");
    }
}

#[test]
fn host_network_ports_default_to_the_container_port() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostNetwork: true\n  containers:\n  - {name: c, image: busybox, ports: [{containerPort: 80}, {containerPort: 81, hostPort: 81}]}\n";
    let mut p = pod(text);
    apply_defaults(&mut p);
    let ports: Vec<_> = p.spec.unwrap().containers[0]
        .ports
        .iter()
        .flatten()
        .map(|p| p.host_port)
        .collect();
    assert_eq!(ports, [Some(80), Some(81)]);
}

#[test]
fn pod_level_requests_default_from_containers_then_limits() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  resources: {limits: {cpu: '2', memory: 1Gi}}\n  containers:\n  - {name: a, image: busybox, resources: {requests: {cpu: 250m}}}\n  - {name: b, image: busybox, resources: {limits: {cpu: 500m}}}\n";
    let mut p = pod(text);
    apply_defaults(&mut p);
    let requests = p.spec.unwrap().resources.unwrap().requests.unwrap();
    assert_eq!(requests["cpu"].0, "750m", "sum of the containers' requests");
    assert_eq!(
        requests["memory"].0, "1Gi",
        "no container asks: the pod limit"
    );
}

#[test]
fn object_defaults_for_configmaps_and_secrets() {
    let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {a: b2xk, b: b2xk}\nstringData: {b: new, c: plain}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
    let mut objects = parse_documents(text, "d.yaml").unwrap();
    for object in &mut objects {
        apply_object_defaults(object);
        assert_eq!(object.namespace(), "default");
        assert_eq!(object.metadata().namespace.as_deref(), Some("default"));
    }
    let Object::Secret(Secret {
        type_,
        data,
        string_data,
        ..
    }) = &objects[0]
    else {
        panic!()
    };
    assert_eq!(type_.as_deref(), Some("Opaque"));
    assert_eq!(string_data, &None);
    let data = data.as_ref().unwrap();
    let shown: Vec<_> = data
        .iter()
        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    assert_eq!(
        shown,
        [
            ("a", "old".to_string()),
            ("b", "new".to_string()),
            ("c", "plain".to_string())
        ]
    );
}
