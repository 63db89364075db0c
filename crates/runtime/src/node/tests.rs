use super::*;
use crate::monitor::{ExitRecord, StartRecord};
use crate::{LinuxContainerResources, NamespaceOption};

fn config() -> RuntimeConfig {
    RuntimeConfig {
        run_root: "/run/podrun".into(),
        monitor: "/bin/podrun-monitor".into(),
        pause: "/bin/podrun-pause".into(),
        default_runtime: "embedded".into(),
        handlers: [("fast".to_string(), "/usr/bin/crun".to_string())].into(),
        request_timeout: Duration::from_secs(1),
        network: None,
        ready_timeout: Duration::from_secs(1),
        cgroup_driver: cgroups::CgroupDriver::Cgroupfs,
    }
}

#[test]
fn handlers_name_oci_runtimes() {
    let c = config();
    assert_eq!(c.oci_runtime("").unwrap(), "embedded");
    assert_eq!(c.oci_runtime("fast").unwrap(), "/usr/bin/crun");
    assert_eq!(c.oci_runtime("runc").unwrap(), "runc");
    let e = c.oci_runtime("gvisor").unwrap_err().to_string();
    assert_eq!(
        e,
        "runtime handler \"gvisor\": not configured (known: fast, embedded, crun, runc, youki)"
    );
}

#[test]
fn the_plan_follows_the_sandbox_config() {
    let mut sandbox = PodSandboxConfig::default();
    sandbox.metadata.name = "web".into();
    // CRI's zero value is POD for every namespace; kubelet sends CONTAINER
    // for the PID namespace unless the pod shares one.
    sandbox.linux.security_context.namespace_options.pid = NamespaceMode::Container;
    let dir = Path::new("/run/podrun/sandboxes/s1");
    let plan = plan_for(
        &sandbox,
        "s1",
        Path::new("/run/podrun"),
        dir,
        Path::new("/p"),
        "crun",
    );
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        plan.hostname,
        node.trim(),
        "no hostname: the node's, as containerd's (a pod's name may be too long for one)"
    );
    assert!(!plan.host_network && !plan.share_pid);
    assert_eq!(plan.cgroup_parent, None);
    assert_eq!(plan.run_dir, dir);
    assert_eq!(plan.runtime, "crun");
    assert_eq!(
        plan.ns_path(Namespace::Net),
        Path::new("/run/podrun/sandboxes/s1/ns/net"),
        "the pins are in the sandbox's directory"
    );
    sandbox.hostname = "h".into();
    sandbox.linux.cgroup_parent = "/podrun/burstable/s1".into();
    sandbox.linux.security_context.namespace_options = NamespaceOption {
        network: NamespaceMode::Node,
        pid: NamespaceMode::Pod,
        ..Default::default()
    };
    let plan = plan_for(
        &sandbox,
        "s1",
        Path::new("/run/podrun"),
        dir,
        Path::new("/p"),
        "crun",
    );
    assert_eq!(plan.hostname, "h");
    assert!(plan.host_network && plan.share_pid);
    assert_eq!(plan.cgroup_parent.as_deref(), Some("/podrun/burstable/s1"));
}

#[test]
fn pod_cgroup_limits_come_from_the_sandbox_resources() {
    assert_eq!(cgroup_limits(None), CgroupLimits::default());
    let r = LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 64 << 20,
        unified: [("pids.max".to_string(), "100".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(
        cgroup_limits(Some(&r)),
        CgroupLimits {
            cpu_shares: 512,
            cpu_quota: Some(50_000),
            cpu_period: 100_000,
            memory_limit: Some(64 << 20),
            pids_limit: Some(100),
        }
    );
    // Zero (and CRI's -1) are unset.
    let r = LinuxContainerResources {
        cpu_quota: -1,
        ..Default::default()
    };
    assert_eq!(cgroup_limits(Some(&r)), CgroupLimits::default());
}

fn record() -> ContainerRecord {
    ContainerRecord {
        sandbox_id: "s1".into(),
        plan: ContainerPlan {
            id: "s1-app".into(),
            name: "app".into(),
            bundle: "/b".into(),
            log_path: "/l/app.log".into(),
            stop_signal: 15,
            grace_period_ms: 1000,
            stdin: false,
            stdin_once: false,
            tty: false,
            log_rotation: None,
        },
        created_at: "t0".into(),
        config: Default::default(),
        image_ref: String::new(),
        user: None,
    }
}

fn exit(started_at: &str, code: i32, reason: &str) -> ExitRecord {
    ExitRecord {
        name: "app".into(),
        id: "s1-app".into(),
        exit_code: code,
        signal: None,
        started_at: started_at.into(),
        finished_at: "t9".into(),
        oom_killed: false,
        reason: reason.into(),
        message: (reason == "StartError").then(|| "no such file".into()),
    }
}

fn start(started_at: &str) -> StartRecord {
    StartRecord {
        name: "app".into(),
        id: "s1-app".into(),
        pid: 42,
        started_at: started_at.into(),
    }
}

fn live(running: bool, exit: Option<ExitRecord>) -> monitor::ContainerState {
    monitor::ContainerState {
        log_lines_dropped: 0,
        name: "app".into(),
        id: "s1-app".into(),
        pid: 42,
        running,
        restarts: 2,
        started_at: "t1".into(),
        exit,
    }
}

#[test]
fn a_container_state_comes_from_its_monitor_or_its_records() {
    use ContainerState::*;
    let r = record();
    let state = |live: Option<&[monitor::ContainerState]>, s, e| status_of(&r, live, s, e);
    // The monitor runs.
    let s = state(Some(&[]), None, None);
    assert_eq!(s.state, Created, "not started yet");
    let s = state(Some(&[live(true, None)]), None, None);
    assert_eq!(
        (s.state, s.pid, s.restarts, s.started_at.as_str()),
        (Running, Some(42), 2, "t1")
    );
    let s = state(
        Some(&[live(false, Some(exit("t1", 3, "Error")))]),
        None,
        None,
    );
    assert_eq!(
        (
            s.state,
            s.exit_code,
            s.reason.as_str(),
            s.finished_at.as_str()
        ),
        (Exited, 3, "Error", "t9")
    );
    // Another container of that name: this one is not (yet) started.
    let mut other = live(true, None);
    other.id = "s1-app-2".into();
    assert_eq!(state(Some(&[other]), None, None).state, Created);
    // The monitor is gone: its records tell.
    assert_eq!(state(None, None, None).state, Created);
    let s = state(None, Some(start("t1")), Some(exit("t1", 0, "Completed")));
    assert_eq!((s.state, s.reason.as_str()), (Exited, "Completed"));
    // An exit of an earlier start: this start's end was never recorded.
    let s = state(None, Some(start("t2")), Some(exit("t1", 0, "Completed")));
    assert_eq!((s.state, s.started_at.as_str()), (Unknown, "t2"));
    let s = state(None, None, Some(exit("", 128, "StartError")));
    assert_eq!(
        (s.state, s.exit_code, s.message.as_str()),
        (Exited, 128, "no such file")
    );
    // Records of another container (another ID) are not this one's.
    let mut foreign = exit("", 128, "StartError");
    foreign.id = "x".into();
    assert_eq!(state(None, None, Some(foreign)).state, Created);
}

/// The rlimit clamp's warning is the same for every container: said once.
#[test]
fn a_node_warning_is_said_once() {
    let w = "RLIMIT_NOFILE 1048576 clamped to the hard limit 20000 (test)";
    assert!(warn_once(w));
    assert!(!warn_once(w));
    assert!(warn_once("another warning (test)"));
}

#[test]
fn the_cgroup_parent_has_the_drivers_form() {
    use cgroups::CgroupDriver::{Cgroupfs, Systemd};
    assert!(check_cgroup_parent(Cgroupfs, "/podrun/burstable/p1").is_ok());
    assert!(check_cgroup_parent(Cgroupfs, "/kubepods/besteffort/pod1").is_ok());
    assert!(check_cgroup_parent(Systemd, "kubepods-burstable-pod1.slice").is_ok());
    let e = check_cgroup_parent(Cgroupfs, "kubepods-pod1.slice").unwrap_err();
    assert!(e.contains("podrun's cgroup driver is cgroupfs"), "{e}");
    let e = check_cgroup_parent(Systemd, "/kubepods/pod1").unwrap_err();
    assert!(e.contains("needs a slice name"), "{e}");
    assert!(check_cgroup_parent(Systemd, "a.slice:p:n").is_err());
}

#[test]
fn container_cgroups_follow_the_pods_form() {
    assert_eq!(
        container_cgroup("/podrun/burstable/p1", "web", "p1-web"),
        "/podrun/burstable/p1/web"
    );
    assert_eq!(
        container_cgroup("podrun-burstable-podp1.slice", "web", "p1-web"),
        "podrun-burstable-podp1.slice:podrun:p1-web"
    );
}
