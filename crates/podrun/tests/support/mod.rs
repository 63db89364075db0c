//! What the podrun integration tests share: finding and removing the mounts a
//! test left below its temporary directory.

use std::path::Path;

/// Every mount point in this process's mount table.
pub fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .collect()
}

/// Lazily unmount everything mounted below `dir`, deepest first (for drop
/// guards: a failed test must not leave mounts for the next run).
pub fn unmount_below(dir: &Path) {
    let prefix = dir.to_string_lossy().to_string();
    let mut mounts: Vec<String> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
    }
}

/// Whether this machine's cgroup hierarchy is v2 alone (cgroup2 mounted at
/// /sys/fs/cgroup) rather than v1 or hybrid. Under `PODRUN_TEST_CGROUP=v2` (set by
/// scripts/vm-v2.sh) or `=v1` the test insists on that hierarchy and panics if the
/// machine has the other: the v2 suite must never pass by checking v1 files.
#[allow(dead_code)] // each test binary compiles this module; not all of them check cgroups
pub fn cgroup_v2() -> bool {
    let v2 = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let mut f = l.split(' ');
            f.nth(1) == Some("/sys/fs/cgroup") && f.next() == Some("cgroup2")
        });
    match std::env::var("PODRUN_TEST_CGROUP").as_deref() {
        Ok("v2") => assert!(
            v2,
            "PODRUN_TEST_CGROUP=v2 but /sys/fs/cgroup is not cgroup2"
        ),
        Ok("v1") => assert!(!v2, "PODRUN_TEST_CGROUP=v1 but /sys/fs/cgroup is cgroup2"),
        Ok(other) => panic!("PODRUN_TEST_CGROUP={other}: expected v1 or v2"),
        Err(_) => {}
    }
    v2
}

/// A default pod network of the test's own (`[network]` in a podrun.toml the
/// test passes with `--config`): a bridge and a /24 no other test uses, its
/// leases under the test's root, and an empty CNI config directory (so a
/// conflist on the machine is not used). When dropped, it releases what the
/// test's sandboxes still hold (their leases and hostPort rules) and removes
/// the bridge and its rules: nothing of it outlives the test.
#[allow(dead_code)] // each test binary compiles this module; not all of them run pods
pub struct TestNetwork {
    /// The podrun.toml to pass with `--config`.
    pub config_file: std::path::PathBuf,
    /// The bridge.
    pub bridge: String,
    /// The subnet (`10.213.N.0/24`).
    pub subnet: String,
    network: podrun_net::DefaultNetworkConfig,
}

#[allow(dead_code)]
impl TestNetwork {
    /// A network for the test whose root is `root`; its files in `dir`.
    pub fn new(dir: &Path, root: &Path) -> TestNetwork {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bridge = format!("prt{:05}{:02}", std::process::id() % 100_000, n % 100);
        let subnet = format!("10.213.{}.0/24", (std::process::id() + n * 37) % 256);
        let cni = dir.join("cni-conf.d");
        std::fs::create_dir_all(&cni).unwrap();
        let config_file = dir.join("podrun.toml");
        let mut text = std::fs::read_to_string(&config_file).unwrap_or_default();
        text.push_str(&format!(
            "[network]\ncni_conf_dir = \"{}\"\nbridge = \"{bridge}\"\nsubnet = \"{subnet}\"\n",
            cni.display()
        ));
        std::fs::write(&config_file, text).unwrap();
        TestNetwork {
            config_file,
            network: podrun_net::DefaultNetworkConfig {
                bridge: bridge.clone(),
                subnet: subnet.parse().unwrap(),
                subnet6: None,
                state_dir: root.join("network"),
                masquerade: true,
            },
            bridge,
            subnet,
        }
    }
}

#[allow(dead_code)]
impl TestNetwork {
    /// Makes the network dual stack: pods get an address of `subnet6` too
    /// (before the agent starts: it reads its config once).
    pub fn add_subnet6(&mut self, subnet6: &str) {
        let mut text = std::fs::read_to_string(&self.config_file).unwrap();
        text.push_str(&format!("subnet6 = \"{subnet6}\"\n"));
        std::fs::write(&self.config_file, text).unwrap();
        self.network.subnet6 = Some(subnet6.parse().unwrap());
    }

    /// The sandboxes holding a lease of this network.
    pub fn leaseholders(&self) -> std::collections::BTreeSet<String> {
        podrun_net::DefaultNetwork::new(self.network.clone())
            .map(|n| n.leases().into_iter().map(|(_, id)| id).collect())
            .unwrap_or_default()
    }

    /// The interfaces attached to the bridge (the pods' host-side veths).
    pub fn veths(&self) -> Vec<String> {
        let out = std::process::Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .collect()
    }

    /// The hostPort chains in the nat table (`PODRUN-DN-…`), of any test.
    pub fn hostport_chains() -> Vec<String> {
        let out = std::process::Command::new("iptables-save")
            .args(["-t", "nat"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix(":PODRUN-DN-"))
            .map(|c| c.split_whitespace().next().unwrap_or("").to_owned())
            .collect()
    }

    /// What the network holds for pods: nothing, once they are all gone.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let leases = self.leaseholders();
        if !leases.is_empty() {
            left.push(format!("leases held by {leases:?}"));
        }
        let veths = self.veths();
        if !veths.is_empty() {
            left.push(format!("veths on {}: {veths:?}", self.bridge));
        }
        left
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        use podrun_net::PodNetwork;
        let Ok(network) = podrun_net::DefaultNetwork::new(self.network.clone()) else {
            return;
        };
        let mut held: Vec<String> = network.leases().into_iter().map(|(_, id)| id).collect();
        held.dedup();
        for sandbox_id in held {
            let _ = network.del(&podrun_net::Attachment {
                sandbox_id,
                netns: Default::default(),
                ifname: "eth0".into(),
                pod_name: String::new(),
                pod_namespace: String::new(),
                pod_uid: String::new(),
                port_mappings: Vec::new(),
                annotations: Default::default(),
                cgroup_parent: String::new(),
            });
        }
        if let Err(e) = network.remove_network() {
            eprintln!("remove test network {}: {e}", self.bridge);
        }
    }
}

/// Stop the agent a detached `podrun run` started with its root at `dir/root`
/// (SIGTERM; it leaves the pods to their monitors) and wait until it is gone.
#[allow(dead_code)] // not every test target starts an agent
pub fn stop_agent(dir: &Path) {
    let lock = dir.join("root/agent.lock");
    let Some(pid) = std::fs::read_to_string(lock)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    // Only our own agent: its command line names this environment's root.
    let ours = || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*dir.to_string_lossy()))
    };
    if !ours() {
        return;
    }
    // SAFETY: kill sends a signal to a process checked to be this test's agent.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ours() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent (pid {pid}) did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `podrun` with a test's own roots under `dir` (`root`, `run`), its config
/// file, no registries.conf, hosts dir or credentials of the machine's, and the
/// agent's sync and back-off scaled to a test's patience; not yet given a
/// command.
#[allow(dead_code)] // not every test target runs podrun this way
pub fn podrun_in(dir: &Path, config_file: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_podrun"));
    command
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--run-root")
        .arg(dir.join("run"))
        .arg("--config")
        .arg(config_file)
        .arg("--registries-conf")
        .arg(dir.join("none.conf"))
        .arg("--hosts-dir")
        .arg(dir.join("none.d"))
        .env("HOME", dir)
        .env("REGISTRY_AUTH_FILE", dir.join("auth.json"))
        // For the agent a detached run starts (and the in-process one):
        // restarts and syncs within a test's patience.
        .env("PODRUN_SYNC_INTERVAL_MS", "200")
        .env("PODRUN_BACKOFF_INITIAL_MS", "500")
        .stdin(std::process::Stdio::null());
    command
}
