//! The CNI client against Debian's reference plugins (containernetworking-plugins,
//! in /usr/lib/cni): bridge + host-local + portmap in a namespace the test
//! makes. Needs root; fails (does not skip) without it or without the plugins.
//!
//! The tests run one at a time (portmap's shared `CNI-HOSTPORT-*` chains and the
//! iptables comparisons would see each other), each with its own namespace,
//! bridge, subnet (10.250.X.0/24), IPAM directory and cache, all removed by a
//! guard even when the test fails.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use podrun_net::cni::{CniConfig, CniNetwork};
use podrun_net::{in_network_namespace, Attachment, PodNetwork, PortMapping, Protocol};

const PLUGINS: &str = "/usr/lib/cni";

static SERIAL: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn must(cmd: &str, args: &[&str]) -> String {
    let (ok, text) = run(cmd, args);
    assert!(ok, "{cmd} {args:?}: {text}");
    text
}

/// `iptables-save` of the lines that CNI plugins write, without counters.
fn cni_rules() -> Vec<String> {
    let mut lines: Vec<String> = must("iptables-save", &[])
        .lines()
        .filter(|l| l.contains("CNI-"))
        .map(|l| match l.rfind(" [") {
            Some(i) if l.starts_with(':') => l[..i].to_string(),
            _ => l.to_string(),
        })
        .collect();
    lines.sort();
    lines
}

/// One test's world: a namespace, a bridge name, a subnet, a config
/// directory, an IPAM directory and a cache, removed on drop.
struct World {
    _serial: MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    netns: Vec<String>,
    bridge: String,
    octet: u8,
    name: String,
    hostport_chains_before: bool,
}

impl World {
    fn new() -> Self {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            rustix::process::geteuid().is_root(),
            "these tests make namespaces, links and iptables rules: run them as root"
        );
        for plugin in ["bridge", "host-local", "portmap"] {
            assert!(
                Path::new(PLUGINS).join(plugin).exists(),
                "{PLUGINS}/{plugin} is missing: apt-get install containernetworking-plugins"
            );
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let routes = must("ip", &["-4", "route"]);
        let addrs = must("ip", &["-4", "addr"]);
        let start = (std::process::id() + n * 37) % 200;
        let octet = (0..200)
            .map(|i| ((start + i) % 200 + 20) as u8)
            .find(|o| {
                let net = format!("10.250.{o}.");
                !routes.contains(&net) && !addrs.contains(&net)
            })
            .expect("a free 10.250.X.0/24");
        let world = World {
            _serial: serial,
            dir: tempfile::tempdir().expect("temp dir"),
            netns: Vec::new(),
            bridge: format!("prtb{tag}"),
            octet,
            name: format!("prtnet{tag}"),
            hostport_chains_before: cni_rules()
                .iter()
                .any(|l| l.starts_with(":CNI-HOSTPORT-DNAT")),
        };
        std::fs::create_dir(world.dir.path().join("net.d")).unwrap();
        world
    }

    /// A new namespace, `/run/netns/prt…`.
    fn add_netns(&mut self) -> PathBuf {
        let name = format!(
            "prt{}x{}",
            self.bridge.trim_start_matches("prtb"),
            self.netns.len()
        );
        must("ip", &["netns", "add", &name]);
        self.netns.push(name.clone());
        PathBuf::from("/run/netns").join(name)
    }

    fn subnet(&self, prefix: u8) -> String {
        format!("10.250.{}.0/{prefix}", self.octet)
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    /// bridge (host-local IPAM) and then `extra` plugins, as a conflist.
    fn conflist(&self, prefix: u8, extra: &str) -> PathBuf {
        let text = format!(
            r#"{{"cniVersion":"1.0.0","name":"{name}","plugins":[
                {{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":false,
                  "ipam":{{"type":"host-local","ranges":[[{{"subnet":"{subnet}"}}]],"dataDir":"{ipam}"}}}}
                {extra}]}}"#,
            name = self.name,
            bridge = self.bridge,
            subnet = self.subnet(prefix),
            ipam = self.ipam_dir().display(),
        );
        let path = self.conf_dir().join("10-test.conflist");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn network(&self) -> CniNetwork {
        CniNetwork::new(CniConfig {
            conf_dir: self.conf_dir(),
            bin_dirs: vec![PathBuf::from(PLUGINS)],
            cache_dir: self.dir.path().join("cache"),
            timeout: Duration::from_secs(30),
            ip_ranges: Vec::new(),
        })
    }

    fn attachment(&self, id: &str, netns: &Path, ports: &[(u16, u16)]) -> Attachment {
        Attachment {
            sandbox_id: format!("{}-{id}", self.name),
            netns: netns.to_path_buf(),
            ifname: "eth0".into(),
            pod_name: "web".into(),
            pod_namespace: "default".into(),
            pod_uid: format!("uid-{id}"),
            port_mappings: ports
                .iter()
                .map(|&(host_port, container_port)| PortMapping {
                    host_port,
                    container_port,
                    protocol: Protocol::Tcp,
                    host_ip: String::new(),
                })
                .collect(),
            annotations: Default::default(),
            cgroup_parent: String::new(),
        }
    }

    /// The leases host-local holds (its IP files).
    fn leases(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.ipam_dir().join(&self.name)) else {
            return Vec::new();
        };
        let mut v: Vec<String> = dir
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect();
        v.sort();
        v
    }

    fn links_on_bridge(&self) -> usize {
        let (_, out) = run("ip", &["-br", "link", "show", "master", &self.bridge]);
        out.lines().filter(|l| !l.trim().is_empty()).count()
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 250, self.octet, 1)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for ns in &self.netns {
            let _ = run("ip", &["netns", "del", ns]);
        }
        // bridge DEL leaves the bridge (it may be shared); it is ours.
        let _ = run("ip", &["link", "del", &self.bridge]);
        remove_portmap_rules(&self.name);
        // portmap makes its shared chains on first use and never removes them:
        // remove them if this test made them and nothing uses them.
        let rules = cni_rules();
        if !self.hostport_chains_before && !rules.iter().any(|l| l.starts_with(":CNI-DN-")) {
            for (chain, rule) in [
                (
                    "PREROUTING",
                    &[
                        "-m",
                        "addrtype",
                        "--dst-type",
                        "LOCAL",
                        "-j",
                        "CNI-HOSTPORT-DNAT",
                    ][..],
                ),
                (
                    "OUTPUT",
                    &[
                        "-m",
                        "addrtype",
                        "--dst-type",
                        "LOCAL",
                        "-j",
                        "CNI-HOSTPORT-DNAT",
                    ][..],
                ),
                (
                    "POSTROUTING",
                    &[
                        "-m",
                        "comment",
                        "--comment",
                        "CNI portfwd requiring masquerade",
                        "-j",
                        "CNI-HOSTPORT-MASQ",
                    ][..],
                ),
            ] {
                while run(
                    "iptables",
                    &[&["-t", "nat", "-D", chain][..], rule].concat(),
                )
                .0
                {}
            }
            for chain in [
                "CNI-HOSTPORT-DNAT",
                "CNI-HOSTPORT-MASQ",
                "CNI-HOSTPORT-SETMARK",
            ] {
                let _ = run("iptables", &["-t", "nat", "-F", chain]);
                let _ = run("iptables", &["-t", "nat", "-X", chain]);
            }
        }
    }
}

/// Removes what portmap left for network `name` (a failed test's DEL):
/// its jumps out of `CNI-HOSTPORT-DNAT`, by number, and the chains they name.
fn remove_portmap_rules(name: &str) {
    let (ok, listing) = run(
        "iptables",
        &[
            "-t",
            "nat",
            "-L",
            "CNI-HOSTPORT-DNAT",
            "-n",
            "--line-numbers",
        ],
    );
    if !ok {
        return;
    }
    let ours = format!("dnat name: \"{name}\"");
    let mut doomed: Vec<(u32, String)> = listing
        .lines()
        .filter(|l| l.contains(&ours))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let number = words.next()?.parse().ok()?;
            Some((number, words.next()?.to_string()))
        })
        .collect();
    doomed.sort();
    for (number, chain) in doomed.iter().rev() {
        let _ = run(
            "iptables",
            &["-t", "nat", "-D", "CNI-HOSTPORT-DNAT", &number.to_string()],
        );
        let _ = run("iptables", &["-t", "nat", "-F", chain]);
        let _ = run("iptables", &["-t", "nat", "-X", chain]);
    }
}

/// A listener on `port` inside `netns` that answers one connection with
/// `reply`; returns once it listens.
fn serve_once(netns: &Path, port: u16, reply: &'static str) -> std::thread::JoinHandle<()> {
    let (ready, listening) = mpsc::channel();
    let netns = netns.to_path_buf();
    let handle = std::thread::spawn(move || {
        in_network_namespace(Some(&netns), move || {
            let listener =
                TcpListener::bind(("0.0.0.0", port)).expect("bind in the pod's namespace");
            listener.set_nonblocking(true).unwrap();
            ready.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.write_all(reply.as_bytes()).unwrap();
                        return;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(Instant::now() < deadline, "no connection came");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        })
        .expect("join the pod's namespace");
    });
    listening
        .recv_timeout(Duration::from_secs(5))
        .expect("the listener started");
    handle
}

fn fetch(addr: SocketAddr) -> String {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text
}

fn in_subnet(ip: IpAddr, octet: u8) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == [10, 250, octet])
}

#[test]
fn bridge_and_portmap_attach_a_reachable_pod_and_del_removes_everything() {
    let mut world = World::new();
    let netns = world.add_netns();
    world.conflist(
        24,
        r#",{"type":"portmap","capabilities":{"portMappings":true},"snat":true}"#,
    );
    let net = world.network();
    net.ready().expect("the network is ready");
    let host_port = 20000 + (world.octet as u16) * 10;
    let att = world.attachment("a", &netns, &[(host_port, 8080)]);
    let rules_before = cni_rules();

    let status = net.add(&att).expect("ADD");
    assert_eq!(status.interface, "eth0");
    assert_eq!(status.ips.len(), 1, "{status:?}");
    let ip = status.ips[0];
    assert!(
        in_subnet(ip, world.octet),
        "{ip} is not in {}",
        world.subnet(24)
    );

    // The address is on eth0 in the namespace, the lease is taken, the port
    // mapping's rules name the sandbox.
    let ns_name = netns.file_name().unwrap().to_str().unwrap();
    let addrs = must("ip", &["-n", ns_name, "-br", "addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("{ip}/24")), "{addrs}");
    assert_eq!(world.leases(), [ip.to_string()]);
    let during = cni_rules();
    assert!(
        during
            .iter()
            .any(|l| l.contains(&format!("id: \\\"{}\\\"", att.sandbox_id))),
        "no portmap rule for {}: {during:#?}",
        att.sandbox_id
    );
    assert_eq!(world.links_on_bridge(), 1);
    assert_eq!(net.cached_attachments().len(), 1);

    // The host reaches the pod, directly and through the host port.
    let server = serve_once(&netns, 8080, "direct");
    assert_eq!(fetch(SocketAddr::new(ip, 8080)), "direct");
    server.join().unwrap();
    let server = serve_once(&netns, 8080, "mapped");
    assert_eq!(
        fetch(SocketAddr::new(world.gateway().into(), host_port)),
        "mapped"
    );
    server.join().unwrap();

    net.del(&att).expect("DEL");
    let addrs = run("ip", &["-n", ns_name, "-br", "link", "show", "eth0"]);
    assert!(!addrs.0, "eth0 is still in the namespace: {}", addrs.1);
    assert_eq!(world.links_on_bridge(), 0, "the host's veth is still there");
    assert!(
        world.leases().is_empty(),
        "leases left: {:?}",
        world.leases()
    );
    assert!(net.cached_attachments().is_empty());
    let after = cni_rules();
    assert!(
        !after.iter().any(|l| l.contains(&att.sandbox_id)),
        "{after:#?}"
    );
    // Only portmap's shared chains may have appeared.
    let new: Vec<&String> = after
        .iter()
        .filter(|l| !rules_before.contains(l) && !l.contains("CNI-HOSTPORT-"))
        .collect();
    assert!(new.is_empty(), "rules left behind: {new:#?}");
    let gone: Vec<&String> = rules_before.iter().filter(|l| !after.contains(l)).collect();
    assert!(gone.is_empty(), "rules that were there went: {gone:#?}");

    net.del(&att).expect("a second DEL succeeds");
}

#[test]
fn a_missing_plugin_binary_is_named_and_nothing_is_made() {
    let mut world = World::new();
    let netns = world.add_netns();
    world.conflist(24, r#",{"type":"prt-no-such-plugin"}"#);
    let net = world.network();
    let err = net.ready().unwrap_err().to_string();
    assert!(
        err.contains(r#"plugin type="prt-no-such-plugin": no executable "prt-no-such-plugin" in /usr/lib/cni"#),
        "{err}"
    );
    let att = world.attachment("a", &netns, &[]);
    let err = net.add(&att).unwrap_err().to_string();
    assert!(
        err.contains(r#"plugin type="prt-no-such-plugin" failed (add): no executable"#),
        "{err}"
    );
    let ns_name = netns.file_name().unwrap().to_str().unwrap();
    let links = must("ip", &["-n", ns_name, "-br", "link"]);
    assert!(!links.contains("eth0"), "{links}");
    assert!(
        !run("ip", &["link", "show", &world.bridge]).0,
        "the bridge was made"
    );
    assert!(world.leases().is_empty());
    assert!(net.cached_attachments().is_empty());
}

#[test]
fn an_exhausted_range_fails_the_second_add_and_leaves_nothing_of_it() {
    let mut world = World::new();
    let first_ns = world.add_netns();
    let second_ns = world.add_netns();
    // A /30 has one address to give: .1 is the gateway.
    world.conflist(
        30,
        r#",{"type":"portmap","capabilities":{"portMappings":true}}"#,
    );
    let net = world.network();
    let first = world.attachment("a", &first_ns, &[]);
    let second = world.attachment("b", &second_ns, &[]);
    let status = net.add(&first).expect("the first ADD");
    assert_eq!(world.leases(), [status.ips[0].to_string()]);

    let err = net.add(&second).unwrap_err().to_string();
    assert!(
        err.contains(r#"plugin type="bridge" failed (add): "#)
            && err.contains("no IP addresses available"),
        "{err}"
    );
    let ns_name = second_ns.file_name().unwrap().to_str().unwrap();
    let links = must("ip", &["-n", ns_name, "-br", "link"]);
    assert!(!links.contains("eth0"), "the failed ADD left eth0: {links}");
    assert_eq!(world.links_on_bridge(), 1, "the failed ADD left a veth");
    assert_eq!(world.leases(), [status.ips[0].to_string()]);
    assert_eq!(net.cached_attachments().len(), 1);

    net.del(&first).expect("DEL");
    assert!(world.leases().is_empty());
    assert_eq!(world.links_on_bridge(), 0);
}

#[test]
fn del_after_the_conflist_is_deleted_uses_the_cached_config() {
    let mut world = World::new();
    let netns = world.add_netns();
    let conflist = world.conflist(
        24,
        r#",{"type":"portmap","capabilities":{"portMappings":true}}"#,
    );
    let net = world.network();
    let att = world.attachment("a", &netns, &[(20001 + world.octet as u16, 80)]);
    net.add(&att).expect("ADD");
    assert_eq!(world.leases().len(), 1);
    std::fs::remove_file(&conflist).unwrap();
    assert!(net.ready().is_err());

    net.del(&att).expect("DEL from the cache");
    assert!(world.leases().is_empty());
    assert_eq!(world.links_on_bridge(), 0);
    assert!(!cni_rules().iter().any(|l| l.contains(&att.sandbox_id)));
    assert!(net.cached_attachments().is_empty());
    net.del(&att)
        .expect("a second DEL, with neither cache nor config");
}

#[test]
fn gc_deletes_cached_attachments_that_are_not_valid_even_with_their_namespace_gone() {
    let mut world = World::new();
    let kept_ns = world.add_netns();
    let stale_ns = world.add_netns();
    world.conflist(
        24,
        r#",{"type":"portmap","capabilities":{"portMappings":true}}"#,
    );
    let net = world.network();
    let kept = world.attachment("kept", &kept_ns, &[]);
    let stale = world.attachment("stale", &stale_ns, &[(22000 + world.octet as u16, 80)]);
    let kept_ip = net.add(&kept).expect("ADD kept").ips[0];
    net.add(&stale).expect("ADD stale");
    assert_eq!(world.leases().len(), 2);

    // As after a reboot: the namespace is gone, the cache still knows.
    let stale_name = world.netns.pop().unwrap();
    must("ip", &["netns", "del", &stale_name]);
    let cached = net.cached_attachments();
    assert_eq!(cached.len(), 2);
    assert!(cached
        .iter()
        .any(|a| a.sandbox_id == stale.sandbox_id && a.netns == stale_ns));

    net.gc(&[(kept.sandbox_id.clone(), "eth0".into())])
        .expect("GC");
    assert_eq!(world.leases(), [kept_ip.to_string()]);
    assert!(!cni_rules().iter().any(|l| l.contains(&stale.sandbox_id)));
    assert_eq!(
        net.cached_attachments()
            .iter()
            .map(|a| a.sandbox_id.as_str())
            .collect::<Vec<_>>(),
        [kept.sandbox_id.as_str()]
    );
    net.del(&kept).expect("DEL kept");
    assert!(world.leases().is_empty());
}

/// Median ADD, DEL and ADD+DEL over 10 runs of the list bridge + `extra`.
fn measure(extra: &str) -> [Duration; 3] {
    let mut world = World::new();
    let netns = world.add_netns();
    world.conflist(24, extra);
    let net = world.network();
    let mut runs = [Vec::new(), Vec::new(), Vec::new()];
    for i in 0..10 {
        let att = world.attachment(&format!("t{i}"), &netns, &[(21000 + i, 80)]);
        let start = Instant::now();
        net.add(&att).expect("ADD");
        let added = Instant::now();
        net.del(&att).expect("DEL");
        runs[0].push(added - start);
        runs[1].push(added.elapsed());
        runs[2].push(start.elapsed());
    }
    assert!(world.leases().is_empty());
    runs.map(|mut v| {
        v.sort();
        v[v.len() / 2]
    })
}

#[test]
fn timing_add_and_del_of_bridge_and_portmap() {
    let [add, del, both] = measure(r#",{"type":"portmap","capabilities":{"portMappings":true}}"#);
    println!("bridge+portmap, median of 10: ADD+DEL {both:?} (ADD {add:?}, DEL {del:?})");
    let [add, del, both] = measure("");
    println!("bridge alone,   median of 10: ADD+DEL {both:?} (ADD {add:?}, DEL {del:?})");
}
