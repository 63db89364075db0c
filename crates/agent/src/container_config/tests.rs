//! The two halves together, as a container is made: kubelet's (the pod's container
//! as a CRI config, here) and containerd's (`podrun_oci::build`), on the same pods.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Capabilities as K8sCaps, Container, PodSpec, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use oci_spec::runtime::{Capability as Cap, LinuxNamespaceType as Ns, PosixRlimitType, Spec};
use podrun_oci::cri::{PodSandboxConfig, PodSandboxMetadata};
use podrun_oci::{
    build, clamp_rlimits, ContainerInput, GeneratedSpec, Host, ImageConfig, NamespacePaths,
    UserFiles,
};

use super::*;

struct Fixture {
    pod: Pod,
    container: Container,
    env: Vec<EnvVar>,
    image: ImageConfig,
    users: UserFiles,
    host: Host,
    node: NodeSettings,
    namespaces: NamespacePaths,
    sandbox_id: Option<&'static str>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            pod: Pod {
                metadata: ObjectMeta {
                    name: Some("web".into()),
                    namespace: Some("prod".into()),
                    uid: Some("0000-1111".into()),
                    ..Default::default()
                },
                spec: Some(PodSpec::default()),
                ..Default::default()
            },
            container: Container {
                name: "nginx".into(),
                image: Some("docker.io/library/nginx:1.25".into()),
                ..Default::default()
            },
            env: Vec::new(),
            image: ImageConfig {
                entrypoint: vec!["/docker-entrypoint.sh".into()],
                cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
                env: vec![
                    "PATH=/usr/sbin:/usr/bin:/sbin:/bin".into(),
                    "NGINX_VERSION=1.25".into(),
                ],
                stop_signal: "SIGQUIT".into(),
                ..Default::default()
            },
            users: UserFiles {
                passwd: Some("root:x:0:0::/root:/bin/sh\n".into()),
                group: None,
            },
            host: Host::default(),
            node: NodeSettings::default(),
            namespaces: NamespacePaths {
                net: Some("/run/podrun/netns/web".into()),
                ipc: Some("/proc/42/ns/ipc".into()),
                uts: Some("/proc/42/ns/uts".into()),
                pid: Some("/proc/42/ns/pid".into()),
            },
            sandbox_id: None,
        }
    }

    fn pod_spec(&mut self) -> &mut PodSpec {
        self.pod.spec.as_mut().unwrap()
    }

    fn sc(&mut self) -> &mut SecurityContext {
        self.container
            .security_context
            .get_or_insert_with(Default::default)
    }

    /// The configs kubelet would send for the fixture's pod and container.
    fn configs(&self) -> Result<(PodSandboxConfig, ContainerConfig), String> {
        let name = &self.container.name;
        let mounts = vec![Mount {
            host_path: "/var/lib/podrun/pods/web/hosts".into(),
            container_path: "/etc/hosts".into(),
            ..Default::default()
        }];
        let config = container_config(
            &self.pod,
            &self.container,
            &self.env,
            mounts,
            &image_status(&self.image),
            &self.node,
        )
        .map_err(|e| format!("container {name}: {e}"))?;
        let mut sandbox = PodSandboxConfig {
            metadata: PodSandboxMetadata {
                name: "web".into(),
                uid: "0000-1111".into(),
                namespace: "prod".into(),
                attempt: 0,
            },
            hostname: "web".into(),
            ..Default::default()
        };
        sandbox.linux.sysctls =
            sysctl::pod_sysctls(&self.pod, &self.node.allowed_unsafe_sysctls).unwrap_or_default();
        Ok((sandbox, config))
    }

    /// The spec, with `tweak` applied to the container's config first.
    fn try_build_with(
        &self,
        tweak: impl FnOnce(&mut ContainerConfig),
    ) -> Result<GeneratedSpec, String> {
        self.try_build_in(|_| {}, tweak)
    }

    /// The spec, with `sandbox` applied to the sandbox's config and `tweak`
    /// to the container's first.
    fn try_build_in(
        &self,
        sandbox: impl FnOnce(&mut PodSandboxConfig),
        tweak: impl FnOnce(&mut ContainerConfig),
    ) -> Result<GeneratedSpec, String> {
        let (mut pod_sandbox, mut config) = self.configs()?;
        sandbox(&mut pod_sandbox);
        let sandbox = pod_sandbox;
        tweak(&mut config);
        let input = ContainerInput {
            sandbox: &sandbox,
            sandbox_id: self.sandbox_id,
            config: &config,
            image: &self.image,
            rootfs: Path::new("/var/lib/podrun/containers/abc/merged"),
            users: &self.users,
            namespaces: self.namespaces.clone(),
            cgroups_path: Some("/podrun/web/nginx".into()),
            seccomp_localhost_profile: None,
            honor_image_group: false,
            host: &self.host,
        };
        build(&input).map_err(|e| e.to_string())
    }

    fn try_build(&self) -> Result<GeneratedSpec, String> {
        self.try_build_with(|_| {})
    }

    fn build(&self) -> GeneratedSpec {
        self.try_build().unwrap()
    }
}

/// The image as the runtime's ImageStatus reports it.
fn image_status(image: &ImageConfig) -> podrun_runtime::Image {
    let (uid, username) = podrun_runtime::images::image_user(&image.user);
    podrun_runtime::Image {
        uid,
        username,
        ..Default::default()
    }
}

fn namespaces(spec: &Spec) -> Vec<(Ns, Option<PathBuf>)> {
    spec.linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .iter()
        .flatten()
        .map(|n| (n.typ(), n.path().clone()))
        .collect()
}

#[test]
fn json_has_what_runtimes_need() {
    let spec = Fixture::new().build().spec;
    let json: serde_json::Value = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["ociVersion"], "1.1.0");
    assert_eq!(
        json["root"]["path"],
        "/var/lib/podrun/containers/abc/merged"
    );
    assert_eq!(json["root"]["readonly"], false);
    assert_eq!(
        json["process"]["args"],
        serde_json::json!(["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
    );
    assert_eq!(json["process"]["cwd"], "/");
    assert_eq!(
        json["process"]["user"],
        serde_json::json!({"uid": 0, "gid": 0, "additionalGids": [0]})
    );
    // False is left out (libcontainer takes any value as set).
    assert_eq!(json["process"].get("noNewPrivileges"), None);
    assert_eq!(json["process"]["terminal"], false);
    assert_eq!(
        json["process"]["env"],
        serde_json::json!([
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=web",
            "NGINX_VERSION=1.25"
        ])
    );
    assert_eq!(
        json["process"]["rlimits"],
        serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}])
    );
    assert_eq!(
        json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .len(),
        14
    );
    assert!(json["process"]["capabilities"].get("inheritable").is_none());
    assert!(json["process"]["capabilities"].get("ambient").is_none());
    assert!(json["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["destination"] == "/proc" && m["type"] == "proc"));
    assert!(
        json.get("hostname").is_none(),
        "the UTS namespace is joined"
    );
    assert!(json.get("annotations").is_none());
    let linux = &json["linux"];
    assert_eq!(linux["cgroupsPath"], "/podrun/web/nginx");
    assert_eq!(linux["namespaces"].as_array().unwrap().len(), 5);
    assert_eq!(
        linux["resources"]["devices"],
        serde_json::json!([{"allow": false, "access": "rwm"}])
    );
    assert_eq!(
        linux["resources"]["cpu"],
        serde_json::json!({"shares": 2, "period": 100000})
    );
    assert_eq!(linux["maskedPaths"].as_array().unwrap().len(), 11);
    assert_eq!(linux["readonlyPaths"].as_array().unwrap().len(), 5);
    assert!(
        linux.get("seccomp").is_none(),
        "kubelet's default is Unconfined"
    );
    assert_eq!(linux["sysctl"]["net.ipv4.ip_unprivileged_port_start"], "0");
    // Round trip: what we write, runtimes (and oci-spec) read back the same.
    let text = serde_json::to_string(&spec).unwrap();
    let back: Spec = serde_json::from_str(&text).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn namespace_table() {
    let net = Some(PathBuf::from("/run/podrun/netns/web"));
    let ipc = Some(PathBuf::from("/proc/42/ns/ipc"));
    let uts = Some(PathBuf::from("/proc/42/ns/uts"));
    let pid = Some(PathBuf::from("/proc/42/ns/pid"));
    type Setup = fn(&mut Fixture);
    type Want = Vec<(Ns, Option<PathBuf>)>;
    let cases: Vec<(&str, Setup, Want)> = vec![
        (
            "defaults: own pid and mount, pod's ipc uts net",
            |_| {},
            vec![
                (Ns::Pid, None),
                (Ns::Ipc, ipc.clone()),
                (Ns::Uts, uts.clone()),
                (Ns::Mount, None),
                (Ns::Network, net.clone()),
            ],
        ),
        (
            "shareProcessNamespace joins the pod's pid namespace",
            |f| f.pod_spec().share_process_namespace = Some(true),
            vec![
                (Ns::Pid, pid.clone()),
                (Ns::Ipc, ipc.clone()),
                (Ns::Uts, uts.clone()),
                (Ns::Mount, None),
                (Ns::Network, net.clone()),
            ],
        ),
        (
            "hostPID: no pid namespace",
            |f| f.pod_spec().host_pid = Some(true),
            vec![
                (Ns::Ipc, ipc.clone()),
                (Ns::Uts, uts.clone()),
                (Ns::Mount, None),
                (Ns::Network, net.clone()),
            ],
        ),
        (
            "hostIPC: no ipc namespace",
            |f| f.pod_spec().host_ipc = Some(true),
            vec![
                (Ns::Pid, None),
                (Ns::Uts, uts.clone()),
                (Ns::Mount, None),
                (Ns::Network, net.clone()),
            ],
        ),
        (
            "hostNetwork: no net nor uts namespace",
            |f| f.pod_spec().host_network = Some(true),
            vec![(Ns::Pid, None), (Ns::Ipc, ipc.clone()), (Ns::Mount, None)],
        ),
        (
            "cgroup v2: own cgroup namespace",
            |f| f.host.cgroup_unified = true,
            vec![
                (Ns::Pid, None),
                (Ns::Ipc, ipc.clone()),
                (Ns::Uts, uts.clone()),
                (Ns::Mount, None),
                (Ns::Network, net.clone()),
                (Ns::Cgroup, None),
            ],
        ),
        (
            "cgroup v2, privileged: no cgroup namespace",
            |f| {
                f.host.cgroup_unified = true;
                f.sc().privileged = Some(true);
            },
            vec![
                (Ns::Pid, None),
                (Ns::Ipc, ipc.clone()),
                (Ns::Uts, uts.clone()),
                (Ns::Mount, None),
                (Ns::Network, net.clone()),
            ],
        ),
    ];
    for (name, setup, want) in cases {
        let mut f = Fixture::new();
        setup(&mut f);
        assert_eq!(namespaces(&f.build().spec), want, "{name}");
    }
}

#[test]
fn a_container_in_a_sandbox_on_the_nodes_namespaces_is_on_them_too() {
    // crictl's container configs carry no namespace options (POD): the
    // sandbox's modes decide, as containerd joins the sandbox's namespaces.
    let spec = Fixture::new()
        .try_build_in(
            |s| {
                let modes = &mut s.linux.security_context.namespace_options;
                modes.network = podrun_runtime::NamespaceMode::Node;
                modes.ipc = podrun_runtime::NamespaceMode::Node;
            },
            |c| c.linux.security_context.namespace_options = Default::default(),
        )
        .unwrap()
        .spec;
    // CRI's zero value for PID is POD: the pod's PID namespace.
    let pid = Some(PathBuf::from("/proc/42/ns/pid"));
    assert_eq!(namespaces(&spec), vec![(Ns::Pid, pid), (Ns::Mount, None)]);
}

#[test]
fn hostname_only_with_own_uts_namespace() {
    let mut f = Fixture::new();
    f.namespaces = NamespacePaths::default();
    let spec = f.build().spec;
    assert_eq!(spec.hostname().as_deref(), Some("web"));
    assert_eq!(namespaces(&spec)[2], (Ns::Uts, None));
    let mut f = Fixture::new();
    f.pod_spec().host_network = Some(true);
    f.namespaces = NamespacePaths::default();
    assert_eq!(f.build().spec.hostname(), &None);
}

#[test]
fn share_process_namespace_needs_a_path() {
    let mut f = Fixture::new();
    f.pod_spec().share_process_namespace = Some(true);
    f.namespaces.pid = None;
    let err = f.try_build().unwrap_err();
    assert_eq!(
        err,
        "container nginx: shareProcessNamespace is set but no pid namespace path was given"
    );
}

#[test]
fn privileged_container() {
    let mut f = Fixture::new();
    f.sc().privileged = Some(true);
    f.sc().capabilities = Some(K8sCaps {
        drop: Some(vec!["ALL".into()]),
        ..Default::default()
    });
    f.sc().seccomp_profile = Some(SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    });
    f.host.capabilities = podrun_oci::security::caps_from_mask("1fffeffffff");
    let spec = f.build().spec;
    let linux = spec.linux().as_ref().unwrap();
    let caps = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap();
    assert_eq!(caps.bounding().as_ref().unwrap().len(), 40);
    assert!(!caps
        .bounding()
        .as_ref()
        .unwrap()
        .contains(&Cap::SysResource));
    assert_eq!(linux.masked_paths(), &Some(vec![]));
    assert_eq!(linux.readonly_paths(), &Some(vec![]));
    assert_eq!(linux.seccomp(), &None);
    let json = serde_json::to_value(linux.resources()).unwrap();
    assert_eq!(
        json["devices"],
        serde_json::json!([{"allow": true, "access": "rwm"}])
    );
    let sys = spec
        .mounts()
        .iter()
        .flatten()
        .find(|m| m.destination() == Path::new("/sys"))
        .unwrap();
    assert!(sys.options().as_ref().unwrap().contains(&"rw".to_string()));
}

#[test]
fn security_context_knobs() {
    let mut f = Fixture::new();
    f.sc().read_only_root_filesystem = Some(true);
    f.sc().allow_privilege_escalation = Some(false);
    f.sc().capabilities = Some(K8sCaps {
        add: Some(vec!["NET_ADMIN".into()]),
        drop: Some(vec!["CAP_NET_RAW".into()]),
    });
    f.sc().seccomp_profile = Some(SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    });
    f.container.tty = Some(true);
    f.container.working_dir = Some("/srv".into());
    let spec = f.build().spec;
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!(p.terminal(), Some(true));
    assert_eq!(p.cwd(), Path::new("/srv"));
    assert!(p
        .env()
        .as_ref()
        .unwrap()
        .contains(&"TERM=xterm".to_string()));
    let bounding = p
        .capabilities()
        .as_ref()
        .unwrap()
        .bounding()
        .clone()
        .unwrap();
    assert!(bounding.contains(&Cap::NetAdmin) && !bounding.contains(&Cap::NetRaw));
    assert!(spec.linux().as_ref().unwrap().seccomp().is_some());
}

#[test]
fn env_and_args_expansion_end_to_end() {
    let mut f = Fixture::new();
    f.container.command = Some(vec!["/bin/sh".into(), "-c".into()]);
    f.container.args = Some(vec!["echo $(GREETING) $$(GREETING) $(NGINX_VERSION)".into()]);
    f.env = vec![
        EnvVar::resolved("NAME", "world"),
        EnvVar::literal("GREETING", "hello $(NAME)"),
        EnvVar::literal("NGINX_VERSION", "mine"),
    ];
    let spec = f.build().spec;
    let p = spec.process().as_ref().unwrap();
    assert_eq!(
        p.args().as_ref().unwrap(),
        &vec!["/bin/sh", "-c", "echo hello world $(GREETING) mine"]
    );
    assert_eq!(
        p.env().as_ref().unwrap(),
        &vec![
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=web",
            "NGINX_VERSION=mine",
            "NAME=world",
            "GREETING=hello world"
        ]
    );
}

#[test]
fn resources_and_limits_in_spec() {
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let mut f = Fixture::new();
    f.container.resources = Some(ResourceRequirements {
        limits: Some(
            [
                ("cpu".to_string(), Quantity("500m".into())),
                ("memory".to_string(), Quantity("256Mi".into())),
            ]
            .into(),
        ),
        requests: Some([("cpu".to_string(), Quantity("250m".into()))].into()),
        ..Default::default()
    });
    f.host.swap_controller = true;
    f.host.hard_rlimits = vec![(PosixRlimitType::RlimitNofile, 20000)];
    f.host.oom_score_adj = 0;
    // What kubelet does not send today: a PID limit and a QoS score.
    let generated = f
        .try_build_with(|c| {
            let r = c.linux.resources.as_mut().unwrap();
            r.unified.insert("pids.max".into(), "1024".into());
            r.oom_score_adj = -997;
        })
        .unwrap();
    let json = serde_json::to_value(&generated.spec).unwrap();
    let res = &json["linux"]["resources"];
    assert_eq!(
        res["cpu"],
        serde_json::json!({"shares": 256, "quota": 50000, "period": 100000})
    );
    assert_eq!(
        res["memory"],
        serde_json::json!({"limit": 268435456, "swap": 268435456})
    );
    assert_eq!(res["pids"], serde_json::json!({"limit": 1024}));
    assert!(res.get("unified").is_none(), "cgroup v1");
    assert_eq!(
        json["process"]["oomScoreAdj"], 0,
        "never below the runtime's own"
    );
    assert_eq!(
        json["process"]["rlimits"],
        serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}])
    );
    assert_eq!(generated.warnings.len(), 1);
    assert!(
        generated.warnings[0].contains("RLIMIT_NOFILE"),
        "{}",
        generated.warnings[0]
    );
    assert_eq!(generated.stop_signal, 3);

    f.host.cgroup_unified = true;
    let json = serde_json::to_value(f.build().spec).unwrap();
    assert_eq!(
        json["linux"]["resources"]["unified"],
        serde_json::json!({"memory.oom.group": "1", "memory.swap.max": "0", "cpu.weight": "10"}),
        "256 shares pinned as cpu.weight 10 (the linear rule) for every backend"
    );
}

#[test]
fn rlimit_clamping() {
    let wanted = Host::default().default_rlimits;
    let (got, warnings) = clamp_rlimits(&wanted, &[(PosixRlimitType::RlimitNofile, 2_000_000)]);
    assert_eq!((got, warnings.len()), (wanted.clone(), 0));
    let (got, warnings) = clamp_rlimits(&wanted, &[(PosixRlimitType::RlimitNproc, 10)]);
    assert_eq!((got, warnings.len()), (wanted.clone(), 0));
    let (got, warnings) = clamp_rlimits(&wanted, &[(PosixRlimitType::RlimitNofile, 20000)]);
    assert_eq!((got[0].soft(), got[0].hard()), (20000, 20000));
    assert_eq!(warnings, vec!["rlimit RLIMIT_NOFILE lowered from 1048576:1048576 to 20000:20000: the runtime's hard limit is 20000"]);
}

#[test]
fn annotations_when_sandbox_known() {
    let mut f = Fixture::new();
    f.sandbox_id = Some("sb-1");
    let spec = f.build().spec;
    let a = spec.annotations().as_ref().unwrap();
    assert_eq!(a["io.kubernetes.cri.container-type"], "container");
    assert_eq!(a["io.kubernetes.cri.sandbox-id"], "sb-1");
    assert_eq!(a["io.kubernetes.cri.sandbox-name"], "web");
    assert_eq!(a["io.kubernetes.cri.sandbox-namespace"], "prod");
    assert_eq!(a["io.kubernetes.cri.sandbox-uid"], "0000-1111");
    assert_eq!(a["io.kubernetes.cri.container-name"], "nginx");
    assert_eq!(
        a["io.kubernetes.cri.image-name"],
        "docker.io/library/nginx:1.25"
    );
}

#[test]
fn errors_name_the_container() {
    type Setup = fn(&mut Fixture);
    let cases: Vec<(Setup, &str)> = vec![
        (|f| f.image = ImageConfig::default(), "container nginx: no command specified"),
        (
            |f| f.sc().run_as_non_root = Some(true),
            "container nginx: container has runAsNonRoot and image will run as root",
        ),
        (
            |f| f.image.user = "www-data".into(),
            "container nginx: unable to find user www-data in image docker.io/library/nginx:1.25: no matching entries in passwd file",
        ),
        (
            |f| f.sc().capabilities = Some(K8sCaps { add: Some(vec!["FLY".into()]), ..Default::default() }),
            "container nginx: unknown capability \"FLY\"",
        ),
        (
            |f| {
                f.pod_spec().security_context = Some(k8s_openapi::api::core::v1::PodSecurityContext {
                    sysctls: Some(vec![k8s_openapi::api::core::v1::Sysctl { name: "kernel.panic".into(), value: "1".into() }]),
                    ..Default::default()
                })
            },
            "container nginx: sysctl \"kernel.panic\" not allowed: not in the safe set nor in the node's allowed unsafe sysctls",
        ),
    ];
    for (setup, want) in cases {
        let mut f = Fixture::new();
        setup(&mut f);
        assert_eq!(f.try_build().unwrap_err(), want);
    }
}

#[test]
fn run_as_non_root_is_checked_against_the_image_user() {
    let check = |user: Option<i64>, image: &str| verify_run_as_non_root(user, image);
    assert_eq!(
        check(Some(0), "1000"),
        Err(ConfigError::RunAsUserBreaksNonRoot)
    );
    assert_eq!(check(Some(5), ""), Ok(()));
    assert_eq!(check(None, ""), Err(ConfigError::ImageRunsAsRoot));
    assert_eq!(check(None, "0"), Err(ConfigError::ImageRunsAsRoot));
    assert_eq!(
        check(None, "nginx"),
        Err(ConfigError::NonNumericImageUser("nginx".into()))
    );
    assert_eq!(
        check(None, "3000000000"),
        Err(ConfigError::InvalidImageUid(3_000_000_000))
    );
    assert_eq!(check(None, "101"), Ok(()));
    // The image's `uid:gid`: the uid counts.
    let mut f = Fixture::new();
    f.sc().run_as_non_root = Some(true);
    f.image.user = "0:1000".into();
    assert_eq!(
        f.try_build().unwrap_err(),
        "container nginx: container has runAsNonRoot and image will run as root"
    );
    f.image.user = "1000:1000".into();
    f.users.passwd = None;
    assert!(f.try_build().is_ok());
}

#[test]
fn the_pods_fields_go_under_the_containers() {
    use k8s_openapi::api::core::v1::PodSecurityContext;
    let mut f = Fixture::new();
    f.pod_spec().security_context = Some(PodSecurityContext {
        run_as_user: Some(1000),
        run_as_group: Some(3000),
        fs_group: Some(2000),
        supplemental_groups: Some(vec![4000]),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let (_, c) = f.configs().unwrap();
    let sc = &c.linux.security_context;
    assert_eq!((sc.run_as_user, sc.run_as_group), (Some(1000), Some(3000)));
    assert_eq!(sc.supplemental_groups, [4000, 2000]);
    assert_eq!(
        sc.seccomp.as_ref().unwrap().profile_type,
        ProfileType::RuntimeDefault
    );
    f.sc().run_as_user = Some(5);
    f.sc().seccomp_profile = Some(SeccompProfile {
        type_: "Unconfined".into(),
        ..Default::default()
    });
    let (_, c) = f.configs().unwrap();
    let sc = &c.linux.security_context;
    assert_eq!((sc.run_as_user, sc.run_as_group), (Some(5), Some(3000)));
    assert_eq!(
        sc.seccomp.as_ref().unwrap().profile_type,
        ProfileType::Unconfined
    );
}

#[test]
fn seccomp_default_paths_and_no_new_privs() {
    let mut f = Fixture::new();
    let profile = |f: &Fixture| f.configs().unwrap().1.linux.security_context;
    assert_eq!(
        profile(&f).seccomp.unwrap().profile_type,
        ProfileType::Unconfined,
        "kubelet's default"
    );
    f.node.seccomp_default = true;
    assert_eq!(
        profile(&f).seccomp.unwrap().profile_type,
        ProfileType::RuntimeDefault
    );
    f.sc().seccomp_profile = Some(SeccompProfile {
        type_: "Bogus".into(),
        ..Default::default()
    });
    assert_eq!(
        f.try_build().unwrap_err(),
        "container nginx: seccomp profile: unknown type \"Bogus\""
    );
    let mut f = Fixture::new();
    let sc = profile(&f);
    assert_eq!(
        (
            sc.masked_paths.len(),
            sc.readonly_paths.len(),
            sc.no_new_privs
        ),
        (11, 5, false)
    );
    f.sc().proc_mount = Some("Unmasked".into());
    f.sc().allow_privilege_escalation = Some(false);
    let sc = profile(&f);
    assert_eq!(
        (
            sc.masked_paths.len(),
            sc.readonly_paths.len(),
            sc.no_new_privs
        ),
        (0, 0, true)
    );
    f.sc().allow_privilege_escalation = Some(true);
    assert!(!profile(&f).no_new_privs);
}
