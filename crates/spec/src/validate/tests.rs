//! Table-driven: every rule has a valid case (no errors) and an invalid one (exactly
//! the errors listed, matched by path and a fragment of the message).

use super::*;
use crate::parse_documents;

/// (name, body, expected errors as (path, message fragment)).
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let margin = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| {
            if l.len() >= margin {
                &l[margin..]
            } else {
                l.trim_start()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

fn pod_with_spec(spec: &str) -> String {
    let spec = dedent(spec);
    let containers = if spec.contains("containers:") {
        String::new()
    } else {
        "containers:\n- name: c\n  image: busybox\n".to_string()
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n{}",
        indent(&(containers + &spec), 2)
    )
}

fn pod_with_container(fields: &str) -> String {
    let fields = dedent(fields);
    let has = |key: &str| fields.lines().any(|l| l.starts_with(key));
    let name = if has("name:") { "" } else { "name: c\n" };
    let image = if has("image:") {
        ""
    } else {
        "image: busybox\n"
    };
    let container = format!("-{}", &indent(&format!("{name}{image}{fields}"), 2)[1..]);
    let spec = format!(
        "containers:\n{container}volumes:\n- name: data\n  emptyDir: {{}}\n- name: conf\n  configMap: {{name: conf}}\n"
    );
    pod_with_spec(&spec)
}

fn pod_with_volume(volume: &str) -> String {
    let volume = dedent(volume);
    let mut lines = volume.lines();
    let first = lines.next().unwrap_or_default();
    let rest: String = lines.map(|l| format!("  {l}\n")).collect();
    pod_with_spec(&format!("volumes:\n- {first}\n{rest}"))
}

fn check(cases: &[Case], make: fn(&str) -> String) {
    for (name, body, expected) in cases {
        let text = make(body);
        let object = match parse_documents(&text, "t.yaml") {
            Ok(mut objects) => objects.remove(0),
            Err(e) => panic!("{name}: does not parse:\n{e}\n{text}"),
        };
        let errors = validate(&object);
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors.len(),
            expected.len(),
            "{name}: got {shown:#?}\n{text}"
        );
        for (path, fragment) in *expected {
            assert!(
                errors
                    .iter()
                    .any(|e| e.path == *path && e.message.contains(fragment)),
                "{name}: no error {path}: ...{fragment}... in {shown:#?}"
            );
        }
    }
}

#[test]
fn metadata_rules() {
    let cases: &[Case] = &[
        ("valid metadata", "name: web-1.example\n  namespace: team-a\n  labels: {app.kubernetes.io/name: web, tier: ''}\n  annotations: {example.com/Note: anything at all}", &[]),
        ("name missing", "labels: {a: b}", &[("metadata.name", "required value")]),
        ("generateName", "generateName: web-", &[("metadata.name", "does not generate names")]),
        ("name not a subdomain", "name: Web_1", &[("metadata.name", "RFC 1123 subdomain")]),
        ("name too long", "name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &[("metadata.name", "no more than 253")]),
        ("namespace not a label", "name: web\n  namespace: my.ns", &[("metadata.namespace", "RFC 1123 label")]),
        ("bad label key and value", "name: web\n  labels: {'bad key': ok, good: -bad}", &[("metadata.labels.bad key", "name part must consist"), ("metadata.labels.good", "a valid label must be an empty string")]),
        ("label prefix", "name: web\n  labels: {'Example.com/x': v}", &[("metadata.labels.Example.com/x", "prefix part a lowercase RFC 1123 subdomain")]),
        ("bad annotation key", "name: web\n  annotations: {'a/b/c': x}", &[("metadata.annotations.a/b/c", "a qualified name must consist")]),
    ];
    check(cases, |meta| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  {meta}\nspec:\n  containers:\n  - name: c\n    image: busybox\n")
    });
}

#[test]
fn pod_spec_rules() {
    let cases: &[Case] = &[
        ("minimal", "", &[]),
        ("no containers", "containers: []", &[("spec.containers", "required value")]),
        ("restartPolicy valid", "restartPolicy: OnFailure", &[]),
        ("restartPolicy invalid", "restartPolicy: Sometimes", &[("spec.restartPolicy", r#"unsupported value "Sometimes": supported values: "Always", "OnFailure", "Never""#)]),
        ("container names unique", "
            containers:
            - {name: a, image: busybox}
            - {name: a, image: busybox}", &[("spec.containers[1].name", r#"duplicate value "a""#)]),
        ("init and app names share a namespace", "
            initContainers:
            - {name: a, image: busybox}
            containers:
            - {name: a, image: busybox}", &[("spec.initContainers[0].name", "duplicate value")]),
        ("sidecar init container", "
            initContainers:
            - name: proxy
              image: envoy
              restartPolicy: Always
              readinessProbe: {tcpSocket: {port: 8080}}", &[]),
        ("init restartPolicy other than Always", "
            initContainers:
            - {name: i, image: busybox, restartPolicy: OnFailure}", &[("spec.initContainers[0].restartPolicy", r#"supported values: "Always""#)]),
        ("probe on a plain init container", "
            initContainers:
            - name: i
              image: busybox
              livenessProbe: {exec: {command: ['true']}}", &[("spec.initContainers[0].livenessProbe", "may not be set for init containers without restartPolicy=Always")]),
        ("restartPolicy on an app container", "
            containers:
            - {name: a, image: busybox, restartPolicy: Always}", &[("spec.containers[0].restartPolicy", "may not be set for non-init containers")]),
        ("no ephemeral containers on create", "
            ephemeralContainers:
            - {name: debug, image: busybox}", &[("spec.ephemeralContainers", "cannot be set on create")]),
        ("distinct host ports", "
            containers:
            - {name: a, image: busybox, ports: [{containerPort: 80, hostPort: 8080}, {containerPort: 80, hostPort: 8080, protocol: UDP}]}
            - {name: b, image: busybox, ports: [{containerPort: 81, hostPort: 8081}]}", &[]),
        ("host port used twice", "
            containers:
            - {name: a, image: busybox, ports: [{containerPort: 80, hostPort: 8080}]}
            - {name: b, image: busybox, ports: [{containerPort: 81, hostPort: 8080, protocol: TCP}]}", &[("spec.containers[1].ports[0].hostPort", r#"duplicate value "TCP//8080""#)]),
        ("init containers run one at a time", "
            initContainers:
            - {name: i, image: busybox, ports: [{containerPort: 80, hostPort: 8080}]}
            containers:
            - {name: a, image: busybox, ports: [{containerPort: 80, hostPort: 8080}]}", &[]),
        ("hostNetwork ports", "
            hostNetwork: true
            containers:
            - {name: a, image: busybox, ports: [{containerPort: 80}, {containerPort: 81, hostPort: 81}]}", &[]),
        ("hostNetwork port mismatch", "
            hostNetwork: true
            containers:
            - {name: a, image: busybox, ports: [{containerPort: 80, hostPort: 8080}]}", &[("spec.containers[0].ports[0].containerPort", "must match `hostPort` when `hostNetwork` is true")]),
        ("dnsPolicy valid", "dnsPolicy: ClusterFirstWithHostNet", &[]),
        ("dnsPolicy invalid", "dnsPolicy: Cluster", &[("spec.dnsPolicy", "unsupported value \"Cluster\"")]),
        ("dnsPolicy None with config", "dnsPolicy: None\ndnsConfig: {nameservers: [1.1.1.1], searches: [svc.cluster.local., my_domain.example, .], options: [{name: ndots, value: '2'}]}", &[]),
        ("dnsPolicy None without config", "dnsPolicy: None", &[("spec.dnsConfig", "must provide `dnsConfig`")]),
        ("dnsConfig invalid", "dnsConfig: {nameservers: [1.1.1.1, 8.8.8.8, 9.9.9.9, 10.0.0.1], searches: [-bad-], options: [{value: x}]}", &[("spec.dnsConfig.nameservers", "must not have more than 3"), ("spec.dnsConfig.searches[0]", "RFC 1123 subdomain"), ("spec.dnsConfig.options[0]", "must not be empty")]),
        ("nameserver not an IP", "dnsConfig: {nameservers: [dns.example]}", &[("spec.dnsConfig.nameservers[0]", "must be a valid IP address")]),
        ("terminationGracePeriodSeconds zero", "terminationGracePeriodSeconds: 0", &[]),
        ("terminationGracePeriodSeconds negative", "terminationGracePeriodSeconds: -1", &[("spec.terminationGracePeriodSeconds", "must be greater than or equal to 0, got -1")]),
        ("activeDeadlineSeconds valid", "activeDeadlineSeconds: 10", &[]),
        ("activeDeadlineSeconds zero", "activeDeadlineSeconds: 0", &[("spec.activeDeadlineSeconds", "must be between 1 and 2147483647, got 0")]),
        ("hostname and aliases", "hostname: web-0\nsubdomain: svc\nhostAliases: [{ip: 10.0.0.1, hostnames: [db.local]}]", &[]),
        ("bad hostname and alias", "hostname: Web_0\nhostAliases: [{ip: ten, hostnames: [DB]}]", &[("spec.hostname", "RFC 1123 label"), ("spec.hostAliases[0].ip", "valid IP"), ("spec.hostAliases[0].hostnames[0]", "RFC 1123 subdomain")]),
        ("pod security context valid", "securityContext: {runAsUser: 1000, runAsGroup: 0, fsGroup: 2000, supplementalGroups: [3], sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: '0'}], seccompProfile: {type: RuntimeDefault}}", &[]),
        ("pod security context invalid", "securityContext: {runAsUser: -1, fsGroupChangePolicy: Sometimes, supplementalGroups: [-5], sysctls: [{name: Kernel.X, value: '1'}, {name: a.b, value: '1'}, {name: a.b, value: '2'}], seccompProfile: {type: Localhost}}", &[
            ("spec.securityContext.runAsUser", "must be between 0 and 2147483647, got -1"),
            ("spec.securityContext.supplementalGroups[0]", "got -5"),
            ("spec.securityContext.fsGroupChangePolicy", "unsupported value"),
            ("spec.securityContext.sysctls[0].name", "sysctl name"),
            ("spec.securityContext.sysctls[2].name", "duplicate value"),
            ("spec.securityContext.seccompProfile.localhostProfile", "must be set when the profile type is Localhost"),
        ]),
        ("shareProcessNamespace with hostPID", "shareProcessNamespace: true\nhostPID: true", &[("spec.shareProcessNamespace", "cannot both be enabled")]),
        ("linux pod", "os: {name: linux}", &[]),
        ("windows pod", "os: {name: windows}", &[("spec.os.name", "a windows pod is not supported by podrun")]),
        ("pod-level resources", "resources: {requests: {cpu: 500m}, limits: {cpu: 1, memory: 1Gi}}", &[]),
        ("pod-level resources invalid", "resources: {requests: {cpu: 2}, limits: {cpu: 1, ephemeral-storage: 1Gi}}", &[("spec.resources.requests.cpu", "must be less than or equal to cpu limit of 1"), ("spec.resources.limits.ephemeral-storage", "supported pod-level resource")]),
        ("preemptionPolicy", "preemptionPolicy: Always", &[("spec.preemptionPolicy", "unsupported value")]),
        ("readiness gate", "readinessGates: [{conditionType: 'example.com/ready'}, {conditionType: 'not ok'}]", &[("spec.readinessGates[1].conditionType", "name part must consist")]),
        ("nodeSelector and names", "nodeSelector: {disk: ssd, '-x': v}\nserviceAccountName: Default", &[("spec.nodeSelector.-x", "name part must consist"), ("spec.serviceAccountName", "RFC 1123 subdomain")]),
        ("resource claims", "resourceClaims: [{name: gpu}]", &[("spec.resourceClaims", "not supported by podrun")]),
    ];
    check(cases, pod_with_spec);
}

#[test]
fn container_rules() {
    let cases: &[Case] = &[
        ("defaults", "", &[]),
        ("image pull policies", "imagePullPolicy: Never\nterminationMessagePolicy: FallbackToLogsOnError", &[]),
        ("bad pull policy", "imagePullPolicy: Sometimes\nterminationMessagePolicy: Foo", &[("spec.containers[0].imagePullPolicy", r#"supported values: "Always", "IfNotPresent", "Never""#), ("spec.containers[0].terminationMessagePolicy", "unsupported value \"Foo\"")]),
        ("ports valid", "ports: [{containerPort: 80, name: http}, {containerPort: 53, protocol: UDP, name: dns}, {containerPort: 9, hostPort: 0, protocol: SCTP, hostIP: 127.0.0.1}]", &[]),
        ("containerPort 0", "ports: [{containerPort: 0}]", &[("spec.containers[0].ports[0].containerPort", "must be between 1 and 65535, got 0")]),
        ("port numbers out of range", "ports: [{containerPort: 65536, hostPort: 70000}]", &[("spec.containers[0].ports[0].containerPort", "got 65536"), ("spec.containers[0].ports[0].hostPort", "must be between 1 and 65535, got 70000")]),
        ("protocol", "ports: [{containerPort: 80, protocol: ICMP}]", &[("spec.containers[0].ports[0].protocol", r#"unsupported value "ICMP": supported values: "SCTP", "TCP", "UDP""#)]),
        ("port names", "ports: [{containerPort: 1, name: a-very-long-port-name}, {containerPort: 2, name: '80'}, {containerPort: 3, name: a--b}, {containerPort: 4, name: web}, {containerPort: 5, name: web}]", &[
            ("spec.containers[0].ports[0].name", "must be no more than 15 characters"),
            ("spec.containers[0].ports[1].name", "must contain at least one letter"),
            ("spec.containers[0].ports[2].name", "must not contain consecutive hyphens"),
            ("spec.containers[0].ports[4].name", r#"duplicate value "web""#),
        ]),
        ("hostIP", "ports: [{containerPort: 80, hostIP: localhost}]", &[("spec.containers[0].ports[0].hostIP", "valid IP")]),
        ("env valid", "env: [{name: my.var-1, value: x}, {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}, {name: APP, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['app']\"}}}, {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}, {name: K, valueFrom: {secretKeyRef: {name: s, key: k}}}, {name: '1 odd but allowed', value: x}]", &[]),
        ("env names", "env: [{name: 'A=B'}, {name: ''}]", &[("spec.containers[0].env[0].name", "printable ASCII characters other than '='"), ("spec.containers[0].env[1].name", "required value")]),
        ("valueFrom without source", "env: [{name: A, valueFrom: {}}]", &[("spec.containers[0].env[0].valueFrom", "must specify one of")]),
        ("value and valueFrom", "env: [{name: A, value: x, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}]", &[("spec.containers[0].env[0].valueFrom", "may not be specified when `value` is not empty")]),
        ("two sources", "env: [{name: A, valueFrom: {fieldRef: {fieldPath: metadata.uid}, configMapKeyRef: {name: c, key: k}}}]", &[("spec.containers[0].env[0].valueFrom", "may not have more than one field specified at a time")]),
        ("bad env sources", "env: [{name: A, valueFrom: {fieldRef: {fieldPath: metadata.labels}}}, {name: B, valueFrom: {secretKeyRef: {name: '', key: 'bad key'}}}, {name: C, valueFrom: {resourceFieldRef: {resource: limits.gpu}}}, {name: D, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: '3'}}}, {name: E, valueFrom: {fieldRef: {fieldPath: \"spec.nodeName['x']\"}}}]", &[
            ("spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", "unsupported value \"metadata.labels\""),
            ("spec.containers[0].env[1].valueFrom.secretKeyRef.name", "required value"),
            ("spec.containers[0].env[1].valueFrom.secretKeyRef.key", "a valid config key"),
            ("spec.containers[0].env[2].valueFrom.resourceFieldRef.resource", "unsupported value \"limits.gpu\""),
            ("spec.containers[0].env[3].valueFrom.resourceFieldRef.divisor", "only divisor's values 1m and 1"),
            ("spec.containers[0].env[4].valueFrom.fieldRef.fieldPath", "does not support subscript"),
        ]),
        ("resourceFieldRef to another container", "env: [{name: A, valueFrom: {resourceFieldRef: {containerName: nope, resource: requests.cpu}}}]", &[("spec.containers[0].env[0].valueFrom.resourceFieldRef.containerName", "no container named \"nope\"")]),
        ("envFrom", "envFrom: [{configMapRef: {name: c}, prefix: APP_}, {secretRef: {name: s}}]", &[]),
        ("envFrom invalid", "envFrom: [{prefix: 'A='}, {configMapRef: {name: c}, secretRef: {name: s}}]", &[("spec.containers[0].envFrom[0].prefix", "printable ASCII"), ("spec.containers[0].envFrom[0]", "must specify one of: `configMapRef` or `secretRef`"), ("spec.containers[0].envFrom[1]", "more than one field")]),
        ("image required", "image: ''", &[("spec.containers[0].image", "required value")]),
        ("image whitespace", "image: ' busybox'", &[("spec.containers[0].image", "leading or trailing whitespace")]),
        ("container name", "name: Web_1", &[("spec.containers[0].name", "RFC 1123 label")]),
        ("mounts valid", "volumeMounts: [{name: data, mountPath: /data}, {name: conf, mountPath: /etc/app, subPath: a/b, readOnly: true, recursiveReadOnly: IfPossible}, {name: data, mountPath: /cache, subPathExpr: $(POD)}]", &[]),
        ("mount of a missing volume", "volumeMounts: [{name: nope, mountPath: /x}]", &[("spec.containers[0].volumeMounts[0].name", "no volume named \"nope\"")]),
        ("mount paths", "volumeMounts: [{name: data, mountPath: relative}, {name: data, mountPath: /a}, {name: conf, mountPath: /a}, {name: data, mountPath: ''}]", &[
            ("spec.containers[0].volumeMounts[0].mountPath", "must be an absolute path"),
            ("spec.containers[0].volumeMounts[2].mountPath", "must be unique"),
            ("spec.containers[0].volumeMounts[3].mountPath", "required value"),
        ]),
        ("subPath", "volumeMounts: [{name: data, mountPath: /a, subPath: ../etc}, {name: data, mountPath: /b, subPath: /abs}, {name: data, mountPath: /c, subPath: x, subPathExpr: z}]", &[
            ("spec.containers[0].volumeMounts[0].subPath", "must not contain '..'"),
            ("spec.containers[0].volumeMounts[1].subPath", "must be a relative path"),
            ("spec.containers[0].volumeMounts[2].subPathExpr", "mutually exclusive"),
        ]),
        ("mount propagation", "volumeMounts: [{name: data, mountPath: /a, mountPropagation: Bidirectional}, {name: data, mountPath: /b, mountPropagation: Sideways}, {name: conf, mountPath: /c, recursiveReadOnly: Enabled}]", &[
            ("spec.containers[0].volumeMounts[0].mountPropagation", "only to privileged containers"),
            ("spec.containers[0].volumeMounts[1].mountPropagation", "unsupported value \"Sideways\""),
            ("spec.containers[0].volumeMounts[2].recursiveReadOnly", "may only be specified when readOnly is true"),
        ]),
        ("privileged bidirectional", "securityContext: {privileged: true}\nvolumeMounts: [{name: data, mountPath: /a, mountPropagation: Bidirectional}]", &[]),
        ("volumeDevices", "volumeDevices: [{name: data, devicePath: /dev/xvda}]", &[("spec.containers[0].volumeDevices", "not supported by podrun")]),
        ("resources valid", "resources: {requests: {cpu: 250m, memory: 64Mi, ephemeral-storage: 1Gi}, limits: {cpu: '1', memory: 128Mi, hugepages-2Mi: 4Mi}}", &[]),
        ("request above limit", "resources: {requests: {memory: 256Mi}, limits: {memory: 128Mi}}", &[("spec.containers[0].resources.requests.memory", r#"invalid value "256Mi": must be less than or equal to memory limit of 128Mi"#)]),
        ("bad quantities", "resources: {requests: {cpu: abc}, limits: {memory: -1}}", &[("spec.containers[0].resources.requests.cpu", r#"invalid value "abc": not a quantity (must start with a number)"#), ("spec.containers[0].resources.limits.memory", "must be greater than or equal to 0")]),
        ("resource names", "resources: {limits: {gpu: 1, example.com/gpu: 1}, requests: {example.com/gpu: 1}}", &[("spec.containers[0].resources.limits.gpu", "must be a standard resource for containers"), ("spec.containers[0].resources.limits.example.com/gpu", "an extended resource (device plugin) is not supported by podrun"), ("spec.containers[0].resources.requests.example.com/gpu", "not supported by podrun")]),
        ("hugepages alone", "resources: {requests: {hugepages-2Mi: 2Mi}, limits: {hugepages-2Mi: 4Mi}}", &[("spec.containers[0].resources.requests.hugepages-2Mi", "must be equal to hugepages-2Mi limit of 4Mi"), ("spec.containers[0].resources", "HugePages require cpu or memory")]),
        ("resize policy", "resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}, {resourceName: gpu, restartPolicy: Never}]", &[("spec.containers[0].resizePolicy[1].resourceName", "unsupported value"), ("spec.containers[0].resizePolicy[1].restartPolicy", "unsupported value")]),
        ("security context valid", "securityContext: {runAsUser: 0, runAsNonRoot: false, allowPrivilegeEscalation: false, capabilities: {add: [NET_ADMIN]}, procMount: Default, seccompProfile: {type: Localhost, localhostProfile: profiles/audit.json}}", &[]),
        ("security context invalid", "securityContext: {runAsUser: -1, runAsGroup: 2147483648, privileged: true, allowPrivilegeEscalation: false, procMount: Weird, seccompProfile: {type: Bogus}, appArmorProfile: {type: RuntimeDefault, localhostProfile: x}}", &[
            ("spec.containers[0].securityContext.runAsUser", "must be between 0 and 2147483647, got -1"),
            ("spec.containers[0].securityContext.runAsGroup", "got 2147483648"),
            ("spec.containers[0].securityContext", "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"),
            ("spec.containers[0].securityContext.procMount", "unsupported value"),
            ("spec.containers[0].securityContext.seccompProfile.type", "unsupported value \"Bogus\""),
            ("spec.containers[0].securityContext.appArmorProfile.localhostProfile", "can only be set when the profile type is Localhost"),
        ]),
        ("CAP_SYS_ADMIN without escalation", "securityContext: {allowPrivilegeEscalation: false, capabilities: {add: [CAP_SYS_ADMIN]}}", &[("spec.containers[0].securityContext", "CAP_SYS_ADMIN")]),
        ("restart rules", "restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [42]}}]", &[("spec.containers[0].restartPolicyRules", "not supported by podrun")]),
    ];
    check(cases, pod_with_container);
}

#[test]
fn probe_and_lifecycle_rules() {
    let cases: &[Case] = &[
        ("probes valid", "
            livenessProbe: {httpGet: {path: /healthz, port: 8080, scheme: HTTPS, httpHeaders: [{name: X-Probe, value: '1'}]}, periodSeconds: 5, successThreshold: 1, terminationGracePeriodSeconds: 5}
            readinessProbe: {tcpSocket: {port: http}, successThreshold: 3, initialDelaySeconds: 0}
            startupProbe: {grpc: {port: 9000}, failureThreshold: 30}", &[]),
        ("exec probe", "livenessProbe: {exec: {command: [cat, /tmp/ok]}, timeoutSeconds: 0}", &[]),
        ("no handler", "livenessProbe: {periodSeconds: 3}", &[("spec.containers[0].livenessProbe", "must specify a handler type")]),
        ("two handlers", "readinessProbe: {exec: {command: ['true']}, tcpSocket: {port: 80}}", &[("spec.containers[0].readinessProbe.tcpSocket", "may not specify more than 1 handler type")]),
        ("exec without command", "startupProbe: {exec: {}}", &[("spec.containers[0].startupProbe.exec.command", "required value")]),
        ("negative timings", "livenessProbe: {tcpSocket: {port: 80}, periodSeconds: -1, timeoutSeconds: -2, failureThreshold: -3}", &[
            ("spec.containers[0].livenessProbe.periodSeconds", "must be greater than or equal to 0, got -1"),
            ("spec.containers[0].livenessProbe.timeoutSeconds", "got -2"),
            ("spec.containers[0].livenessProbe.failureThreshold", "got -3"),
        ]),
        ("liveness successThreshold", "livenessProbe: {tcpSocket: {port: 80}, successThreshold: 2}", &[("spec.containers[0].livenessProbe.successThreshold", "must be 1, got 2")]),
        ("readiness grace period", "readinessProbe: {tcpSocket: {port: 80}, terminationGracePeriodSeconds: 3}", &[("spec.containers[0].readinessProbe.terminationGracePeriodSeconds", "must not be set for readinessProbes")]),
        ("probe grace period zero", "livenessProbe: {tcpSocket: {port: 80}, terminationGracePeriodSeconds: 0}", &[("spec.containers[0].livenessProbe.terminationGracePeriodSeconds", "must be greater than 0, got 0")]),
        ("bad ports and scheme", "
            livenessProbe: {httpGet: {port: 0, scheme: FTP, httpHeaders: [{name: 'bad header', value: x}]}}
            readinessProbe: {tcpSocket: {port: Http}}
            startupProbe: {grpc: {port: 70000}}", &[
            ("spec.containers[0].livenessProbe.httpGet.port", "must be between 1 and 65535, got 0"),
            ("spec.containers[0].livenessProbe.httpGet.scheme", "unsupported value \"FTP\""),
            ("spec.containers[0].livenessProbe.httpGet.httpHeaders[0].name", "valid HTTP header"),
            ("spec.containers[0].readinessProbe.tcpSocket.port", "alpha-numeric characters"),
            ("spec.containers[0].startupProbe.grpc.port", "got 70000"),
        ]),
        ("hooks valid", "lifecycle: {postStart: {exec: {command: [touch, /ready]}}, preStop: {sleep: {seconds: 5}}}", &[]),
        ("hook without handler", "lifecycle: {postStart: {}}", &[("spec.containers[0].lifecycle.postStart", "must specify a handler type")]),
        ("hook with two handlers", "lifecycle: {preStop: {httpGet: {port: 80}, sleep: {seconds: 1}}}", &[("spec.containers[0].lifecycle.preStop.sleep", "may not specify more than 1 handler type")]),
        ("sleep past the grace period", "lifecycle: {preStop: {sleep: {seconds: 60}}}", &[("spec.containers[0].lifecycle.preStop.sleep.seconds", "less than terminationGracePeriodSeconds (30), got 60")]),
    ];
    check(cases, pod_with_container);
}

#[test]
fn volume_rules() {
    let cases: &[Case] = &[
        ("emptyDir", "name: scratch\nemptyDir: {medium: Memory, sizeLimit: 64Mi}", &[]),
        ("no source is an emptyDir", "name: scratch", &[]),
        ("bad volume name", "name: Scratch_1\nemptyDir: {}", &[("spec.volumes[0].name", "RFC 1123 label")]),
        ("missing name", "emptyDir: {}", &[("spec.volumes[0].name", "required value")]),
        ("two sources", "name: v\nemptyDir: {}\nhostPath: {path: /tmp}", &[("spec.volumes[0].hostPath", "may not specify more than 1 volume type")]),
        // Valid, though podrun cannot mount them yet: crate::node refuses them.
        ("nfs", "name: v\nnfs: {server: nfs.local, path: /export}", &[]),
        ("pvc", "name: v\npersistentVolumeClaim: {claimName: data}", &[]),
        ("emptyDir medium", "name: v\nemptyDir: {medium: Disk}", &[("spec.volumes[0].emptyDir.medium", r#"unsupported value "Disk": supported values: "", "Memory""#)]),
        ("hugepages emptyDir", "name: v\nemptyDir: {medium: HugePages-2Mi}", &[]),
        ("hugepages emptyDir, size from the requests", "name: v\nemptyDir: {medium: HugePages}", &[]),
        ("hugepages emptyDir, bad size", "name: v\nemptyDir: {medium: HugePages-big}", &[("spec.volumes[0].emptyDir.medium", "needs a positive page size")]),
        ("emptyDir sizeLimit", "name: v\nemptyDir: {sizeLimit: -1Gi}", &[("spec.volumes[0].emptyDir.sizeLimit", "must be greater than or equal to 0")]),
        ("hostPath", "name: v\nhostPath: {path: /var/log, type: DirectoryOrCreate}", &[]),
        ("hostPath type", "name: v\nhostPath: {path: /var/log, type: Dir}", &[("spec.volumes[0].hostPath.type", r#"unsupported value "Dir""#)]),
        ("hostPath path", "name: v\nhostPath: {path: /var/../etc}", &[("spec.volumes[0].hostPath.path", "must not contain '..'")]),
        ("hostPath empty", "name: v\nhostPath: {path: ''}", &[("spec.volumes[0].hostPath.path", "required value")]),
        ("configMap", "name: v\nconfigMap: {name: conf, defaultMode: 0400, items: [{key: a, path: dir/a.conf, mode: 0600}]}", &[]),
        ("configMap invalid", "name: v\nconfigMap: {defaultMode: 01000, items: [{key: '', path: ../x}, {key: b, path: ..data}, {key: c, path: /abs, mode: -1}]}", &[
            ("spec.volumes[0].configMap.name", "required value"),
            ("spec.volumes[0].configMap.defaultMode", "between 0 and 0777 (octal), both inclusive, got 01000"),
            ("spec.volumes[0].configMap.items[0].key", "required value"),
            ("spec.volumes[0].configMap.items[0].path", "must not contain '..'"),
            ("spec.volumes[0].configMap.items[1].path", "must not start with '..'"),
            ("spec.volumes[0].configMap.items[2].path", "must be a relative path"),
            ("spec.volumes[0].configMap.items[2].mode", "got -1"),
        ]),
        ("secret", "name: v\nsecret: {secretName: tls, optional: true}", &[]),
        ("secret without name", "name: v\nsecret: {defaultMode: 0644}", &[("spec.volumes[0].secret.secretName", "required value")]),
        ("downwardAPI", "name: v\ndownwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}, {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory}}]}", &[]),
        ("downwardAPI invalid", "name: v\ndownwardAPI: {items: [{path: node, fieldRef: {fieldPath: spec.nodeName}}, {path: cpu, resourceFieldRef: {resource: limits.cpu}}, {path: x}, {path: z, fieldRef: {fieldPath: metadata.uid, apiVersion: v2}}]}", &[
            ("spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath", "unsupported value \"spec.nodeName\""),
            ("spec.volumes[0].downwardAPI.items[1].resourceFieldRef.containerName", "required value"),
            ("spec.volumes[0].downwardAPI.items[2]", "one of fieldRef and resourceFieldRef is required"),
            ("spec.volumes[0].downwardAPI.items[3].fieldRef.apiVersion", "unsupported value \"v2\""),
        ]),
        ("projected", "name: v\nprojected: {defaultMode: 0440, sources: [{configMap: {name: c, items: [{key: a, path: a}]}}, {secret: {name: s, items: [{key: b, path: b}]}}, {downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}}]}", &[]),
        ("projected invalid", "name: v\nprojected: {sources: [{configMap: {name: c, items: [{key: a, path: same}]}, secret: {name: s}}, {secret: {name: '', items: [{key: b, path: same}]}}, {serviceAccountToken: {path: token}}]}", &[
            ("spec.volumes[0].projected.sources[0]", "may not specify more than 1 volume type"),
            ("spec.volumes[0].projected.sources[1].secret.name", "required value"),
            ("spec.volumes[0].projected.sources[1].secret.items[0].path", "conflicting duplicate paths"),
            ("spec.volumes[0].projected.sources[2].serviceAccountToken", "not supported by podrun"),
        ]),
    ];
    check(cases, pod_with_volume);
    let duplicate = "
        volumes:
        - {name: v, emptyDir: {}}
        - {name: v, emptyDir: {}}";
    check(
        &[(
            "duplicate volume names",
            duplicate,
            &[("spec.volumes[1].name", "duplicate value \"v\"")],
        )],
        pod_with_spec,
    );
}

#[test]
fn config_map_and_secret_rules() {
    let cases: &[Case] = &[
        ("configmap", "kind: ConfigMap\nmetadata: {name: conf}\ndata: {app.conf: x, KEY_1: v}\nbinaryData: {logo.png: aGk=}", &[]),
        ("configmap keys", "kind: ConfigMap\nmetadata: {name: Conf}\ndata: {'bad key': x, ..x: w, both: z}\nbinaryData: {both: aGk=}", &[
            ("metadata.name", "RFC 1123 subdomain"),
            ("data.bad key", "a valid config key must consist of alphanumeric characters"),
            ("data...x", "must not start with '..'"),
            ("data.both", "duplicate of key present in binaryData"),
        ]),
        ("secret", "kind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\ndata: {tls.crt: aGk=}\nstringData: {tls.key: k}", &[]),
        ("tls secret missing keys", "kind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\nstringData: {tls.crt: c}", &[("data.tls.key", "required value")]),
        ("docker config", "kind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/dockerconfigjson\nstringData: {.dockerconfigjson: '{\"auths\": {}}'}", &[]),
        ("docker config not json", "kind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/dockerconfigjson\nstringData: {.dockerconfigjson: '[1'}", &[("data..dockerconfigjson", "must be a JSON object")]),
        ("basic auth", "kind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/basic-auth\nstringData: {other: x}", &[("data.username", "required value"), ("data.password", "required value")]),
        ("ssh auth", "kind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/ssh-auth\nstringData: {ssh-privatekey: ''}", &[("data.ssh-privatekey", "required value")]),
        ("service account token", "kind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/service-account-token", &[("metadata.annotations.kubernetes.io/service-account.name", "required value")]),
        ("secret keys", "kind: Secret\nmetadata: {name: s}\nstringData: {'a/b': x}", &[("stringData.a/b", "a valid config key")]),
    ];
    check(cases, |body| format!("apiVersion: v1\n{body}\n"));
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata: {{a: {}}}\n",
        "x".repeat(MAX_PAYLOAD + 1)
    );
    let errors = validate(&parse_documents(&big, "t").unwrap()[0]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .message
            .starts_with("must have at most 1048576 bytes"),
        "{errors:?}"
    );
}

#[test]
fn a_pod_without_spec_is_invalid() {
    let errors = validate_pod(&Pod::default());
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["metadata.name: required value", "spec: required value"]
    );
}
