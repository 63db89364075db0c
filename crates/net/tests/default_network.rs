//! The default network on real kernel objects (needs root and iptables: the
//! tests fail without them). Every test holds one lock, as they share the
//! node's iptables tables (compared whole, before and after) and one timing
//! test measures; each makes its own bridge (`prt<pid><n>`), subnet
//! (`10.251.<n>.0/24`), namespaces and state directory, and a Drop guard
//! removes all of it, the shared `PODRUN-*` chains included, even on failure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use podrun_net::bridge::{host_veth_name, DefaultNetwork, DefaultNetworkConfig};
use podrun_net::{in_network_namespace, Attachment, PodNetwork, PortMapping, Protocol};

static SERIAL: Mutex<()> = Mutex::new(());
static NEXT: AtomicU32 = AtomicU32::new(1);

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `iptables-save` without comments and counters.
fn iptables_rules() -> String {
    let mut text = String::new();
    for save in ["iptables-save", "ip6tables-save"] {
        for line in run(save, &[]).lines() {
            if line.starts_with('#') {
                continue;
            }
            match line.find(" [") {
                Some(at) if line.starts_with(':') => text.push_str(&line[..at]),
                _ => text.push_str(line),
            }
            text.push('\n');
        }
    }
    text
}

/// The names of the node's links.
fn links() -> Vec<String> {
    run("ip", &["-br", "link"])
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect()
}

/// One test's network and namespaces, all removed on drop.
struct Env {
    name: String,
    n: u32,
    state: tempfile::TempDir,
    namespaces: Vec<String>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Env {
    fn new() -> Env {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            rustix::process::geteuid().is_root(),
            "these tests make bridges, veths and iptables rules: run them as root"
        );
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Env {
            name: format!("prt{}{n}", std::process::id() % 1000),
            n,
            state: tempfile::tempdir().expect("a temp dir"),
            namespaces: Vec::new(),
            _serial: serial,
        }
    }

    fn config(&self, prefix: u8) -> DefaultNetworkConfig {
        DefaultNetworkConfig {
            bridge: self.name.clone(),
            subnet: format!("10.251.{}.0/{prefix}", self.n).parse().unwrap(),
            subnet6: None,
            state_dir: self.state.path().to_path_buf(),
            masquerade: true,
        }
    }

    fn network(&self) -> DefaultNetwork {
        DefaultNetwork::new(self.config(24)).expect("a valid config")
    }

    fn gateway(&self) -> IpAddr {
        format!("10.251.{}.1", self.n).parse().unwrap()
    }

    /// A new namespace, `ip netns add`ed.
    fn netns(&mut self) -> String {
        let name = format!("{}-{}", self.name, self.namespaces.len());
        run("ip", &["netns", "add", &name]);
        self.namespaces.push(name.clone());
        name
    }

    fn attachment(&self, netns: &str, sandbox: &str, ports: &[(u16, u16)]) -> Attachment {
        Attachment {
            sandbox_id: format!("{}-{sandbox}", self.name),
            netns: PathBuf::from(format!("/run/netns/{netns}")),
            ifname: "eth0".to_owned(),
            pod_name: sandbox.to_owned(),
            pod_namespace: "default".to_owned(),
            pod_uid: String::new(),
            port_mappings: ports
                .iter()
                .map(|&(host_port, container_port)| PortMapping {
                    host_port,
                    container_port,
                    protocol: Protocol::Tcp,
                    host_ip: String::new(),
                })
                .collect(),
            annotations: BTreeMap::new(),
            cgroup_parent: String::new(),
        }
    }

    fn lease_files(&self) -> Vec<String> {
        match std::fs::read_dir(self.state.path().join("leases")) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|name| !name.starts_with("last_reserved_ip"))
                    .collect();
                names.sort();
                names
            }
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .stderr(Stdio::null())
            .status();
        // Every rule of ours: the tests run one at a time, so none is another's.
        for (save, restore) in [
            ("iptables-save", "iptables-restore"),
            ("ip6tables-save", "ip6tables-restore"),
        ] {
            let Ok(output) = Command::new(save).output() else {
                continue;
            };
            let saved = String::from_utf8_lossy(&output.stdout);
            let mut batch = String::new();
            let mut chains: Vec<(String, String)> = Vec::new();
            let mut table = String::new();
            let mut deletes: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for line in saved.lines() {
                if let Some(name) = line.strip_prefix('*') {
                    table = name.to_owned();
                } else if let Some(chain) = line.strip_prefix(":PODRUN-") {
                    let chain = chain.split_whitespace().next().unwrap();
                    chains.push((table.clone(), format!("PODRUN-{chain}")));
                } else if line.starts_with("-A ") && line.contains("PODRUN-") {
                    let chain = line.split_whitespace().nth(1).unwrap();
                    if !chain.starts_with("PODRUN-") {
                        deletes
                            .entry(table.clone())
                            .or_default()
                            .push(format!("-D{}", &line[2..]));
                    }
                }
            }
            for table in ["nat", "filter"] {
                let ours: Vec<&String> = chains
                    .iter()
                    .filter(|(t, _)| t == table)
                    .map(|(_, c)| c)
                    .collect();
                let dels = deletes.get(table).cloned().unwrap_or_default();
                if ours.is_empty() && dels.is_empty() {
                    continue;
                }
                batch.push_str(&format!("*{table}\n"));
                for d in dels {
                    batch.push_str(&format!("{d}\n"));
                }
                for c in &ours {
                    batch.push_str(&format!("-F {c}\n"));
                }
                for c in &ours {
                    batch.push_str(&format!("-X {c}\n"));
                }
                batch.push_str("COMMIT\n");
            }
            if batch.is_empty() {
                continue;
            }
            if let Ok(mut child) = Command::new(restore)
                .args(["--noflush", "--wait"])
                .stdin(Stdio::piped())
                .spawn()
            {
                let _ = child.stdin.take().unwrap().write_all(batch.as_bytes());
                let _ = child.wait();
            }
        }
    }
}

/// A TCP listener made in the namespace, answering `hello` to each of
/// `count` connections from a thread of the host.
fn serve(netns: &str, port: u16, count: usize) -> std::thread::JoinHandle<()> {
    let path = PathBuf::from(format!("/run/netns/{netns}"));
    let listener = in_network_namespace(Some(&path), || {
        TcpListener::bind(("0.0.0.0", port)).expect("bind in the pod")
    })
    .expect("join the pod's namespace");
    std::thread::spawn(move || {
        for _ in 0..count {
            let (mut stream, _) = listener.accept().expect("accept");
            let _ = stream.write_all(b"hello");
        }
    })
}

fn fetch(address: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// A port nothing on the node listens on.
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_pod_gets_an_address_a_route_and_is_reached_from_the_node_and_a_neighbour() {
    let mut env = Env::new();
    let network = env.network();
    network.ready().expect("iptables is there");
    let (a_ns, b_ns) = (env.netns(), env.netns());
    let a = env.attachment(&a_ns, "a", &[]);
    let b = env.attachment(&b_ns, "b", &[]);
    let status = network.add(&a).expect("add a");
    assert_eq!(status.interface, "eth0");
    let [a_ip] = status.ips[..] else {
        panic!("one address: {status:?}")
    };
    assert!(
        a_ip.to_string().starts_with(&format!("10.251.{}.", env.n)),
        "{a_ip}"
    );
    let b_ip = network.add(&b).expect("add b").ips[0];
    assert_ne!(a_ip, b_ip);
    let again = network.add(&a).unwrap_err().to_string();
    assert!(again.contains("already attached"), "{again}");

    let addresses = run("ip", &["-n", &a_ns, "-br", "addr", "show", "eth0"]);
    assert!(addresses.contains(&format!("{a_ip}/24")), "{addresses}");
    assert!(addresses.contains("UP"), "{addresses}");
    let routes = run("ip", &["-n", &a_ns, "route", "show", "default"]);
    assert!(
        routes.contains(&format!("default via {} dev eth0", env.gateway())),
        "{routes}"
    );
    let lo = run("ip", &["-n", &a_ns, "-br", "link", "show", "lo"]);
    assert!(lo.contains("UNKNOWN") || lo.contains("UP"), "{lo}");
    let bridge = run("ip", &["-br", "addr", "show", &env.name]);
    assert!(
        bridge.contains(&format!("{}/24", env.gateway())),
        "{bridge}"
    );
    let veth = run(
        "ip",
        &["-d", "link", "show", &host_veth_name(&a.sandbox_id)],
    );
    assert!(veth.contains(&format!("master {}", env.name)), "{veth}");
    assert!(veth.contains("hairpin on"), "{veth}");
    let mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", env.name)).unwrap();
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );

    let server = serve(&a_ns, 8080, 2);
    assert_eq!(
        fetch(SocketAddr::new(a_ip, 8080)).expect("the node reaches a"),
        "hello"
    );
    let from_b = in_network_namespace(Some(&PathBuf::from(format!("/run/netns/{b_ns}"))), || {
        fetch(SocketAddr::new(a_ip, 8080))
    })
    .unwrap();
    assert_eq!(from_b.expect("b reaches a"), "hello");
    server.join().unwrap();

    let mut leases = network.leases();
    leases.sort();
    let mut expected = vec![(a_ip, a.sandbox_id.clone()), (b_ip, b.sandbox_id.clone())];
    expected.sort();
    assert_eq!(leases, expected);
    network.del(&a).expect("del a");
    network.del(&b).expect("del b");
    assert!(network.leases().is_empty());
    let mac_after =
        std::fs::read_to_string(format!("/sys/class/net/{}/address", env.name)).unwrap();
    assert_eq!(
        mac, mac_after,
        "the gateway's MAC does not follow the ports"
    );
}

#[test]
fn a_host_port_reaches_the_pod_through_localhost_and_the_nodes_addresses_and_del_removes_it_all() {
    let mut env = Env::new();
    let network = env.network();
    let warm = env.netns();
    // The network's shared objects first, so the comparison sees only the pod's.
    network.add(&env.attachment(&warm, "warm", &[])).unwrap();
    network.del(&env.attachment(&warm, "warm", &[])).unwrap();
    let rules_before = iptables_rules();
    let links_before = links();

    let ns = env.netns();
    let port = free_port();
    let pod = env.attachment(&ns, "web", &[(port, 8080)]);
    let ip = network.add(&pod).expect("add with a hostPort").ips[0];
    let rules = iptables_rules();
    assert!(
        rules.contains(&format!(
            "--dport {port} -j DNAT --to-destination {ip}:8080"
        )),
        "{rules}"
    );
    let server = serve(&ns, 8080, 3);
    let localhost = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(fetch(localhost).expect("through 127.0.0.1"), "hello");
    let gateway = SocketAddr::new(env.gateway(), port);
    assert_eq!(fetch(gateway).expect("through a node address"), "hello");
    let hairpin = in_network_namespace(Some(&PathBuf::from(format!("/run/netns/{ns}"))), || {
        fetch(gateway)
    })
    .unwrap();
    assert_eq!(
        hairpin.expect("the pod reaches its own hostPort (hairpin)"),
        "hello"
    );
    server.join().unwrap();

    network.del(&pod).expect("del");
    assert_eq!(
        iptables_rules(),
        rules_before,
        "the rules are as before the add"
    );
    assert_eq!(links(), links_before);
    assert!(env.lease_files().is_empty(), "{:?}", env.lease_files());
    assert!(fetch(localhost).is_err(), "the port is no longer mapped");
    network.del(&pod).expect("del twice");
    assert_eq!(iptables_rules(), rules_before);
}

#[test]
fn a_link_of_the_bridges_name_that_is_no_bridge_is_refused() {
    let mut env = Env::new();
    // A veth under the bridge's name (Env's guard deletes it, and so its peer;
    // this kernel has no dummy links).
    let peer = format!("{}p", env.name);
    run(
        "ip",
        &[
            "link", "add", &env.name, "type", "veth", "peer", "name", &peer,
        ],
    );
    let ns = env.netns();
    let error = env
        .network()
        .add(&env.attachment(&ns, "a", &[]))
        .unwrap_err()
        .to_string();
    assert!(error.contains("exists and is not a bridge"), "{error}");
    assert!(env.lease_files().is_empty());
}

#[test]
fn del_after_the_namespace_is_gone_and_twice_succeeds() {
    let mut env = Env::new();
    let network = env.network();
    let ns = env.netns();
    let port = free_port();
    let pod = env.attachment(&ns, "gone", &[(port, 80)]);
    network.add(&pod).expect("add");
    run("ip", &["netns", "del", &ns]);
    network.del(&pod).expect("del after the netns went");
    network.del(&pod).expect("del again");
    assert!(!links().contains(&host_veth_name(&pod.sandbox_id)));
    assert!(env.lease_files().is_empty());
    assert!(!iptables_rules().contains(&format!("--dport {port} ")));
    // A del of a sandbox never added is no error either.
    network
        .del(&env.attachment(&ns, "never", &[]))
        .expect("del of nothing");
}

#[test]
fn an_exhausted_subnet_is_a_clear_error_and_leaves_nothing() {
    let mut env = Env::new();
    let network = DefaultNetwork::new(env.config(30)).unwrap();
    let (one, two) = (env.netns(), env.netns());
    let first = env.attachment(&one, "first", &[]);
    network.add(&first).expect("the /30's one pod address");
    let rules_before = iptables_rules();
    let links_before = links();
    let port = free_port();
    let second = env.attachment(&two, "second", &[(port, 80)]);
    let error = network.add(&second).unwrap_err().to_string();
    assert!(
        error.contains(&format!("no free address in subnet 10.251.{}.0/30", env.n)),
        "{error}"
    );
    assert_eq!(iptables_rules(), rules_before);
    assert_eq!(links(), links_before);
    assert_eq!(env.lease_files().len(), 1);
    let eth0 = Command::new("ip")
        .args(["-n", &two, "link", "show", "eth0"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!eth0.success(), "no eth0 was left in the pod");
    // The hostPort reservation was undone too: once the first is gone, the
    // second gets the address and the port.
    network.del(&first).unwrap();
    network.add(&second).expect("add after the release");
    network.del(&second).unwrap();
}

#[test]
fn a_host_port_taken_by_another_sandbox_or_a_process_is_refused_before_anything_is_made() {
    let mut env = Env::new();
    let network = env.network();
    let (a_ns, b_ns) = (env.netns(), env.netns());
    let port = free_port();
    let a = env.attachment(&a_ns, "a", &[(port, 80)]);
    network.add(&a).expect("add a");
    let rules_before = iptables_rules();
    let links_before = links();
    let b = env.attachment(&b_ns, "b", &[(port, 81)]);
    let error = network.add(&b).unwrap_err().to_string();
    assert!(
        error.contains(&format!(
            "hostPort {port}/tcp on every address is already mapped by sandbox {}",
            a.sandbox_id
        )),
        "{error}"
    );
    assert_eq!(iptables_rules(), rules_before);
    assert_eq!(links(), links_before);
    assert_eq!(env.lease_files().len(), 1);
    network.del(&a).unwrap();

    let listener = TcpListener::bind(("0.0.0.0", port)).unwrap();
    let error = network.add(&b).unwrap_err().to_string();
    assert!(error.contains("is in use on the node"), "{error}");
    drop(listener);
    network.add(&b).expect("free again");
    network.del(&b).unwrap();
}

#[test]
fn dual_stack_gives_an_address_of_each_family() {
    let mut env = Env::new();
    let mut config = env.config(24);
    config.subnet6 = Some(format!("fd00:251:{}::/64", env.n).parse().unwrap());
    let network = DefaultNetwork::new(config).unwrap();
    let ns = env.netns();
    let pod = env.attachment(&ns, "dual", &[]);
    let status = network.add(&pod).expect("add");
    let [v4, v6] = status.ips[..] else {
        panic!("two addresses: {status:?}")
    };
    assert!(v4.is_ipv4() && v6.is_ipv6(), "{status:?}");
    let routes = run("ip", &["-n", &ns, "-6", "route", "show", "default"]);
    assert!(
        routes.contains(&format!("via fd00:251:{}::1", env.n)),
        "{routes}"
    );
    let server = serve_v6(&ns, 8080);
    assert_eq!(
        fetch(SocketAddr::new(v6, 8080)).expect("the node reaches the pod over IPv6"),
        "hello"
    );
    server.join().unwrap();
    network.del(&pod).expect("del");
    assert!(env.lease_files().is_empty());
}

fn serve_v6(netns: &str, port: u16) -> std::thread::JoinHandle<()> {
    let path = PathBuf::from(format!("/run/netns/{netns}"));
    let listener = in_network_namespace(Some(&path), || {
        TcpListener::bind(("::", port)).expect("bind in the pod")
    })
    .unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let _ = stream.write_all(b"hello");
    })
}

#[test]
fn fifty_add_del_cycles_leave_links_leases_and_rules_as_they_began() {
    let mut env = Env::new();
    let network = env.network();
    let warm = env.netns();
    network
        .add(&env.attachment(&warm, "warm", &[(free_port(), 80)]))
        .unwrap();
    network.del(&env.attachment(&warm, "warm", &[])).unwrap();
    let rules_before = iptables_rules();
    let links_before = links();
    let ns = env.netns();
    let port = free_port();
    for cycle in 0..50 {
        let ports: &[(u16, u16)] = if cycle % 2 == 0 { &[] } else { &[(port, 80)] };
        let pod = env.attachment(&ns, &format!("churn{cycle}"), ports);
        network
            .add(&pod)
            .unwrap_or_else(|e| panic!("add {cycle}: {e}"));
        network
            .del(&pod)
            .unwrap_or_else(|e| panic!("del {cycle}: {e}"));
    }
    assert_eq!(links(), links_before);
    assert!(env.lease_files().is_empty(), "{:?}", env.lease_files());
    assert_eq!(iptables_rules(), rules_before);
    let records = std::fs::read_dir(env.state.path().join("sandboxes"))
        .unwrap()
        .count();
    assert_eq!(records, 0);
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(what: &str, adds: Vec<Duration>, dels: Vec<Duration>) {
    let both: Vec<Duration> = adds.iter().zip(&dels).map(|(a, d)| *a + *d).collect();
    println!(
        "{what:<44} add {:>8.2?}  del {:>8.2?}  add+del {:>8.2?}  (median of {})",
        median(adds),
        median(dels),
        median(both.clone()),
        both.len()
    );
}

/// Runs one CNI plugin from /usr/lib/cni with `config` on stdin.
fn cni(plugin: &str, command: &str, id: &str, netns: &str, config: &str) -> String {
    let mut child = Command::new(format!("/usr/lib/cni/{plugin}"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", format!("/run/netns/{netns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run /usr/lib/cni/{plugin} (containernetworking-plugins): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{plugin} {command}: {stdout}");
    stdout
}

/// Removes the bridge and the shared portmap chains the CNI plugins leave
/// (only while no sandbox uses them), even on failure.
struct CniCleanup(String);

impl Drop for CniCleanup {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
        let Ok(saved) = Command::new("iptables-save").args(["-t", "nat"]).output() else {
            return;
        };
        let saved = String::from_utf8_lossy(&saved.stdout);
        if saved
            .lines()
            .any(|l| l.starts_with("-A CNI-HOSTPORT-DNAT "))
        {
            return; // in use by someone else's pods
        }
        let mut batch = String::from("*nat\n");
        for line in saved.lines() {
            if line.starts_with("-A ")
                && line.contains("-j CNI-HOSTPORT-")
                && !line.starts_with("-A CNI-")
            {
                batch.push_str(&format!("-D{}\n", &line[2..]));
            }
        }
        for chain in [
            "CNI-HOSTPORT-DNAT",
            "CNI-HOSTPORT-SETMARK",
            "CNI-HOSTPORT-MASQ",
        ] {
            if saved.contains(&format!(":{chain} ")) {
                batch.push_str(&format!("-F {chain}\n-X {chain}\n"));
            }
        }
        batch.push_str("COMMIT\n");
        if let Ok(mut child) = Command::new("iptables-restore")
            .args(["--noflush", "--wait"])
            .stdin(Stdio::piped())
            .spawn()
        {
            let _ = child.stdin.take().unwrap().write_all(batch.as_bytes());
            let _ = child.wait();
        }
    }
}

#[test]
#[ignore = "a benchmark: cargo test -p podrun-net --test default_network -- --ignored --nocapture"]
fn add_and_del_take_this_long_against_the_cni_reference_plugins() {
    const CYCLES: usize = 20;
    let mut env = Env::new();
    let network = env.network();
    let ns = env.netns();
    // The network's shared objects (bridge, sysctls, rules) are made once.
    let first = env.attachment(&ns, "first", &[(free_port(), 80)]);
    let start = Instant::now();
    network.add(&first).unwrap();
    let first_add = start.elapsed();
    network.del(&first).unwrap();
    println!("podrun first add (makes the bridge and shared rules): {first_add:.2?}");
    let port = free_port();
    for (what, ports) in [
        ("podrun default network, no hostPort", vec![]),
        ("podrun default network, one hostPort", vec![(port, 80)]),
    ] {
        let (mut adds, mut dels) = (Vec::new(), Vec::new());
        for cycle in 0..CYCLES {
            let pod = env.attachment(&ns, &format!("bench{cycle}"), &ports);
            let start = Instant::now();
            network.add(&pod).unwrap();
            adds.push(start.elapsed());
            let start = Instant::now();
            network.del(&pod).unwrap();
            dels.push(start.elapsed());
        }
        report(what, adds, dels);
    }

    let bridge = format!("{}c", env.name);
    let _cleanup = CniCleanup(bridge.clone());
    let data_dir = env.state.path().join("cni");
    let bridge_config = format!(
        r#"{{"cniVersion":"1.0.0","name":"{bridge}","type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":true,"ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.252.{}.0/24"}}]],"routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{}"}}}}"#,
        env.n,
        data_dir.display()
    );
    let portmap_config = |prev: &str| {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"{bridge}","type":"portmap","capabilities":{{"portMappings":true}},"runtimeConfig":{{"portMappings":[{{"hostPort":{port},"containerPort":80,"protocol":"tcp"}}]}},"prevResult":{prev}}}"#
        )
    };
    for with_portmap in [false, true] {
        let (mut adds, mut dels) = (Vec::new(), Vec::new());
        // One cycle more: the first makes the bridge and the shared chains.
        for cycle in 0..=CYCLES {
            let id = format!("{}-cni{cycle}", env.name);
            let start = Instant::now();
            let result = cni("bridge", "ADD", &id, &ns, &bridge_config);
            if with_portmap {
                cni("portmap", "ADD", &id, &ns, &portmap_config(result.trim()));
            }
            let add = start.elapsed();
            let start = Instant::now();
            if with_portmap {
                cni("portmap", "DEL", &id, &ns, &portmap_config(result.trim()));
            }
            cni("bridge", "DEL", &id, &ns, &bridge_config);
            if cycle > 0 {
                adds.push(add);
                dels.push(start.elapsed());
            }
        }
        report(
            if with_portmap {
                "CNI bridge+host-local+portmap, one hostPort"
            } else {
                "CNI bridge+host-local, no hostPort"
            },
            adds,
            dels,
        );
    }
}

/// Sets `PATH` for the test's duration (the tests run one at a time).
struct PathGuard(std::ffi::OsString);

impl PathGuard {
    fn set(path: &str) -> PathGuard {
        let old = std::env::var_os("PATH").unwrap_or_default();
        std::env::set_var("PATH", path);
        PathGuard(old)
    }
}

impl Drop for PathGuard {
    fn drop(&mut self) {
        std::env::set_var("PATH", &self.0);
    }
}

#[test]
fn a_pod_without_host_ports_runs_no_iptables_and_a_failed_rule_batch_is_undone() {
    let mut env = Env::new();
    let network = env.network();
    let ns = env.netns();
    network.add(&env.attachment(&ns, "warm", &[])).unwrap();
    network.del(&env.attachment(&ns, "warm", &[])).unwrap();
    let rules_before = iptables_rules();
    let links_before = links();
    {
        // No iptables from here on.
        let _path = PathGuard::set("/nonexistent");
        let error = network.ready().unwrap_err().to_string();
        assert!(error.contains("iptables-restore"), "{error}");
        let plain = env.attachment(&ns, "plain", &[]);
        network.add(&plain).expect("add runs no iptables");
        network.del(&plain).expect("del runs no iptables");
        let mapped = env.attachment(&ns, "mapped", &[(free_port(), 80)]);
        let error = network.add(&mapped).unwrap_err().to_string();
        assert!(
            error.contains("map the hostPorts of sandbox")
                && error.contains("run iptables-restore"),
            "{error}"
        );
        assert!(!error.contains("undoing it also failed"), "{error}");
    }
    assert_eq!(links(), links_before, "the veth was deleted");
    assert!(env.lease_files().is_empty(), "the lease was released");
    assert_eq!(iptables_rules(), rules_before);
    let eth0 = Command::new("ip")
        .args(["-n", &ns, "link", "show", "eth0"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!eth0.success(), "no eth0 was left in the pod");
    assert_eq!(
        std::fs::read_dir(env.state.path().join("hostports"))
            .unwrap()
            .count(),
        0
    );
}

/// Whether link `name` exists; its `ip -d link show` line otherwise empty.
fn link_line(name: &str) -> String {
    let out = Command::new("ip")
        .args(["-d", "link", "show", name])
        .stderr(Stdio::null())
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_del_before_the_namespace_goes_leaves_the_veth_to_end_with_it() {
    let mut env = Env::new();
    let network = env.network();
    let ns = env.netns();
    let pod = env.attachment(&ns, "ending", &[]);
    let veth = host_veth_name(&pod.sandbox_id);
    network.add(&pod).expect("add");
    network.del_then_drop_netns(&pod).expect("del");
    // Off the bridge and down at once, its lease released.
    let line = link_line(&veth);
    assert!(line.contains(&veth), "the namespace still holds it: {line}");
    assert!(!line.contains(&format!("master {}", env.name)), "{line}");
    assert!(!line.contains(",UP"), "{line}");
    assert!(env.lease_files().is_empty(), "the lease was released");
    // The same sandbox attached again before the namespace went: the
    // leftover goes and the pair is made again.
    network.add(&pod).expect("add over a released leftover");
    let line = link_line(&veth);
    assert!(line.contains(&format!("master {}", env.name)), "{line}");
    network.del_then_drop_netns(&pod).expect("del again");
    // The kernel removes the pair with the namespace, asynchronously.
    run("ip", &["netns", "del", &ns]);
    env.namespaces.retain(|n| *n != ns);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pause = Duration::from_millis(5);
    while links().contains(&veth) {
        assert!(
            Instant::now() < deadline,
            "{veth} was not removed with its namespace within 10 s"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
