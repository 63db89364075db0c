//! Pod networking end to end, under the node agent: two pods talking over
//! their addresses on the default network, the node reaching a pod by its
//! address and through a hostPort on 127.0.0.1, a hostPort the node already
//! uses refused with kubelet's event (and the pod started once it is free), a
//! pod on a user's CNI conflist run by Debian's reference plugins, a plugin
//! that fails, and nothing of any of it left afterwards: leases, veths,
//! rules. Traffic goes only to loopback and to the namespaces these tests
//! make.
//!
//! Needs root, the local registry (scripts/registry.sh), iptables, and the
//! reference CNI plugins in /usr/lib/cni (Debian's containernetworking-plugins).

#[path = "support/agent_env.rs"]
mod agent_env;
mod support;

use agent_env::{cgroups_of, kill, registry, remove_cgroups, wait_gone, Env, Suite};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// A short sync interval and back-off, so that a retried sandbox comes soon.
const SUITE: Suite = Suite {
    name: "network",
    knobs: &[
        ("PODRUN_SYNC_INTERVAL_MS", "150"),
        ("PODRUN_BACKOFF_INITIAL_MS", "300"),
        ("PODRUN_BACKOFF_MAX_MS", "2000"),
    ],
    agent_stays_up: true,
};

/// A pod serving `body` over HTTP on port 8080 (busybox httpd), with
/// `extra` lines in its container (four spaces: ports).
fn web(name: &str, body: &str, extra: &str) -> String {
    let r = registry();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: httpd
    image: {r}/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 8080 -h /www"]
{extra}"#
    )
}

/// A free TCP port on the node (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /` of `addr`, the response's text (at most 5 s).
fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// `GET /` of `addr`, retried for a few seconds (the server may be starting).
fn get_soon(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match get(addr) {
            Ok(text) if text.contains("200 OK") => return text,
            other if Instant::now() > deadline => panic!("GET {addr}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

impl Env {
    fn apply(&self, yaml: &str) {
        let file = self.write_manifest(yaml);
        self.ok(&["apply", "-f", file.to_str().unwrap()]);
    }

    /// `podrun apply` of a pod whose first sandbox fails: the pod is kept
    /// (and retried); as `kubectl apply`, the command succeeds, saying why
    /// in a warning.
    fn apply_failing(&self, yaml: &str, cause: &str) {
        let file = self.write_manifest(yaml);
        let out = self.podrun(&["apply", "-f", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.contains("Warning: ") && stderr.contains(cause),
            "apply: {out:?}\n{}",
            self.diag()
        );
    }

    /// Poll `describe pod NAME` until `done` holds (at most `secs`).
    fn wait_describe(
        &self,
        name: &str,
        what: &str,
        secs: u64,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let d = self.ok(&["describe", "pod", name]);
            if done(&d) {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "waited {secs} s for {name}: {what}; last describe:\n{d}\n{}",
                self.diag()
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// The IPv4 address of eth0 in pod `name` (read inside the pod).
    fn pod_ip(&self, name: &str) -> Ipv4Addr {
        let out = self.ok(&["exec", name, "--", "ip", "-4", "-o", "addr", "show", "eth0"]);
        let cidr = out
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .unwrap_or_else(|| panic!("no inet address in {out:?}"));
        cidr.split('/').next().unwrap().parse().unwrap()
    }

    /// Wait (at most `secs`) until each of `pods` is listed Running and ready.
    fn wait_running(&self, pods: &[(&str, &str)], secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let rows = self.rows();
            let running = pods.iter().all(|(ns, name)| {
                rows.iter().any(|r| {
                    r[0] == *ns && r[1] == *name && r[3] == "Running" && {
                        let (a, b) = r[2].split_once('/').unwrap_or(("", "-"));
                        a == b
                    }
                })
            });
            if running {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {secs} s for {pods:?} Running: {rows:?}\n{}",
                self.diag()
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// What a reboot does to the pods: every process gone, the run root
    /// (a tmpfs) emptied, no mount or cgroup left; the root stays, and so
    /// does what the networks hold outside the pods' namespaces (leases,
    /// the CNI cache).
    fn reboot(&self) {
        self.kill_agents();
        self.refresh_ids();
        let ps = self.own_procs();
        for p in &ps {
            kill(p.pid, libc::SIGKILL);
        }
        for p in &ps {
            assert!(
                wait_gone(p.pid, Duration::from_secs(10)),
                "{p:?} did not die"
            );
        }
        support::unmount_below(self.dir.path());
        std::fs::remove_dir_all(&self.run).unwrap();
        std::fs::create_dir_all(&self.run).unwrap();
        remove_cgroups(cgroups_of(&self.ids.borrow().clone()));
    }

    /// The lines of `podrun logs NAME`.
    fn logs(&self, name: &str) -> String {
        self.ok(&["logs", name])
    }
}

/// Whether `ip` is in the IPv4 `cidr`.
fn within(ip: Ipv4Addr, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').unwrap();
    let net: Ipv4Addr = net.parse().unwrap();
    let len: u32 = len.parse().unwrap();
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

#[test]
fn two_pods_talk_and_the_node_reaches_them_by_ip_and_host_port() {
    let env = Env::new(&SUITE, "talk");
    let server = env.name("nw1-web");
    let client = env.name("nw1-client");
    let _agent = env.serve(None, &[], &[]);
    let host_port = free_port();
    env.apply(&web(
        &server,
        "hello-from-web",
        &format!(
            "    ports:\n    - containerPort: 8080\n      hostPort: {host_port}\n    \
             env:\n    - name: MY_IP\n      valueFrom:\n        fieldRef:\n          fieldPath: status.podIP\n"
        ),
    ));
    env.wait_running(&[("default", &server)], 30);
    let ip = env.pod_ip(&server);
    assert!(
        within(ip, &env.network.subnet),
        "{ip} is not in the test network {}",
        env.network.subnet
    );
    // What the user and the pod read agree with the interface: the IP
    // column, the downward API, the pod's own line in /etc/hosts.
    let wide = env.ok(&["get", "pod", &server, "-o", "wide"]);
    let row: Vec<&str> = wide.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[5], ip.to_string(), "{wide}");
    assert_eq!(
        env.ok(&["exec", &server, "--", "sh", "-c", "echo $MY_IP"])
            .trim(),
        ip.to_string()
    );
    let hosts = env.ok(&["exec", &server, "--", "cat", "/etc/hosts"]);
    assert!(
        hosts.lines().any(|l| l == format!("{ip}\t{server}")),
        "{hosts}"
    );
    // The node reaches the pod by its address, and through the hostPort on
    // its loopback address.
    let direct = get_soon(SocketAddr::new(IpAddr::V4(ip), 8080));
    assert!(direct.contains("hello-from-web"), "{direct}");
    let mapped = get_soon(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), host_port));
    assert!(mapped.contains("hello-from-web"), "{mapped}");

    // Another pod reaches it by its address.
    let r = registry();
    env.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {client}
  namespace: default
spec:
  restartPolicy: Never
  containers:
  - name: wget
    image: {r}/busybox:latest
    command: ["sh", "-c", "wget -q -O - http://$WEB:8080/ && echo got-it"]
    env:
    - name: WEB
      value: "{ip}"
"#
    ));
    let d = env.wait_describe(&client, "Succeeded", 30, |d| {
        d.lines()
            .any(|l| l.starts_with("Status:") && l.contains("Succeeded"))
            || d.lines()
                .any(|l| l.starts_with("Status:") && l.contains("Failed"))
    });
    let logs = env.logs(&client);
    assert!(
        logs.contains("hello-from-web") && logs.contains("got-it"),
        "the client's logs: {logs}\n{d}"
    );
    // The client's sandbox ended with it (kubelet stops a finished pod's
    // sandbox): its address and veth went back; the server holds its own.
    assert_eq!(
        env.network.leaseholders(),
        std::collections::BTreeSet::from([env.pod_id("default", &server)]),
        "{}",
        env.diag()
    );
    assert_eq!(env.network.veths().len(), 1, "{:?}", env.network.veths());
    env.ok(&["delete", "pod", &server, &client]);
    env.assert_nothing_left();
    // The hostPort is the node's again.
    TcpListener::bind(("0.0.0.0", host_port)).expect("the hostPort is free after the pod");
}

#[test]
fn a_host_port_in_use_on_the_node_holds_the_pod_until_it_is_free() {
    let env = Env::new(&SUITE, "taken");
    let name = env.name("nw2-web");
    let _agent = env.serve(None, &[], &[]);
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    env.apply_failing(
        &web(
            &name,
            "second",
            &format!("    ports:\n    - containerPort: 8080\n      hostPort: {port}\n"),
        ),
        &format!("hostPort {port}/tcp on every address is in use on the node"),
    );
    let d = env.wait_describe(&name, "FailedCreatePodSandBox", 30, |d| {
        d.contains("FailedCreatePodSandBox")
    });
    let event = d
        .lines()
        .find(|l| l.contains("FailedCreatePodSandBox"))
        .unwrap();
    assert!(
        event.contains(&port.to_string()) && event.contains("Failed to create pod sandbox"),
        "the event names the port: {event}"
    );
    assert!(
        d.lines()
            .any(|l| l.trim_start().starts_with("Reason:") && l.contains("ContainerCreating"))
            || env
                .rows()
                .iter()
                .any(|r| r[1] == name && r[3] == "ContainerCreating"),
        "the pod waits in ContainerCreating:\n{d}\n{:?}",
        env.rows()
    );
    // Nothing of the failed attempts is held: no lease, no veth, no chain.
    assert!(
        env.network.leftovers().is_empty(),
        "{:?}",
        env.network.leftovers()
    );
    // Once the node's process lets the port go, a retry starts the pod.
    drop(listener);
    env.wait_running(&[("default", &name)], 30);
    let text = get_soon(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
    assert!(text.contains("second"), "{text}");
    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
}

/// The bridge, host-local data and cache a CNI test made, removed when dropped.
struct CniGuard {
    bridge: String,
}

impl Drop for CniGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A conflist of the reference `bridge` (no masquerade: no rules) with
/// `host-local` leases under `data`, for `subnet`, as `name`.
fn conflist(name: &str, bridge: &str, subnet: &str, data: &Path, first_type: &str) -> String {
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "{name}",
  "plugins": [
    {{
      "type": "{first_type}",
      "bridge": "{bridge}",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{"subnet": "{subnet}"}}]],
        "routes": [{{"dst": "0.0.0.0/0"}}],
        "dataDir": "{}"
      }}
    }}
  ]
}}
"#,
        data.display()
    )
}

#[test]
fn a_pod_joins_a_user_conflist_and_a_failing_plugin_is_an_event() {
    assert!(
        Path::new("/usr/lib/cni/bridge").exists(),
        "the reference CNI plugins are missing: apt-get install containernetworking-plugins"
    );
    let env = Env::new(&SUITE, "cni");
    let name = env.name("nw3-web");
    let bridge = format!("prc{:05}", std::process::id() % 100_000);
    let _guard = CniGuard {
        bridge: bridge.clone(),
    };
    let subnet = format!("10.214.{}.0/24", std::process::id() % 256);
    let data = env.dir.path().join("host-local");
    let conf_dir = env.dir.path().join("cni-conf.d");
    let conf = conf_dir.join("10-test.conflist");
    // First a plugin that does not exist: the sandbox fails with libcni's words.
    std::fs::write(
        &conf,
        conflist("podrun-test", &bridge, &subnet, &data, "nosuch-plugin"),
    )
    .unwrap();
    let _agent = env.serve(None, &[], &[]);
    env.apply_failing(&web(&name, "from-cni", ""), "nosuch-plugin");
    let d = env.wait_describe(&name, "FailedCreatePodSandBox", 30, |d| {
        d.contains("FailedCreatePodSandBox")
    });
    let event = d
        .lines()
        .find(|l| l.contains("FailedCreatePodSandBox"))
        .unwrap();
    assert!(
        event.contains("podrun-test") && event.contains("nosuch-plugin"),
        "the event names the network and the plugin: {event}"
    );
    // The conflist fixed, the retry attaches the pod through the plugins.
    std::fs::write(
        &conf,
        conflist("podrun-test", &bridge, &subnet, &data, "bridge"),
    )
    .unwrap();
    env.wait_running(&[("default", &name)], 30);
    let ip = env.pod_ip(&name);
    assert!(
        within(ip, &subnet),
        "{ip} is not in the conflist's {subnet}"
    );
    let text = get_soon(SocketAddr::new(IpAddr::V4(ip), 8080));
    assert!(text.contains("from-cni"), "{text}");
    // host-local holds the lease, the default network none.
    let leases = data.join("podrun-test");
    assert!(
        leases.join(ip.to_string()).exists(),
        "host-local's lease of {ip} under {}",
        leases.display()
    );
    assert!(env.network.leaseholders().is_empty());
    // A reboot: the sandbox is gone, host-local's lease and the CNI cache
    // stay. The next agent releases them (DEL from the cache) and makes the
    // pod again.
    let old_id = env.pod_id("default", &name);
    let cache = env.root.join("cni/results");
    env.reboot();
    assert!(leases.join(ip.to_string()).exists());
    let _agent = env.serve(None, &[], &[]);
    // Until the agent has taken the pod up again, `get` shows the status
    // reported before the reboot (as the API server does until kubelet's
    // first sync): wait for the new sandbox's run directory first.
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.pod_ids().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no sandbox made again after the reboot\n{}",
            env.diag()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    env.wait_running(&[("default", &name)], 30);
    let new_ip = env.pod_ip(&name);
    let held: Vec<String> = std::fs::read_dir(&leases)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<Ipv4Addr>().is_ok())
        .collect();
    assert_eq!(
        held,
        [new_ip.to_string()],
        "host-local's leases after the reboot"
    );
    let cached: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !cached.iter().any(|c| c.contains(&old_id)),
        "the old sandbox's cache entry is left: {cached:?}"
    );
    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
    assert!(
        !leases.join(new_ip.to_string()).exists(),
        "DEL released host-local's lease of {new_ip}"
    );
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(cached.is_empty(), "CNI cache entries left: {cached:?}");
}

#[test]
fn a_dual_stack_network_gives_each_pod_both_families_ipv4_first() {
    let mut env = Env::new(&SUITE, "dual");
    let name = env.name("nw5-web");
    let subnet6 = format!("fd00:213:{:x}::/64", std::process::id() % 0xffff);
    env.network.add_subnet6(&subnet6);
    let _agent = env.serve(None, &[], &[]);
    env.apply(&web(&name, "both-families", ""));
    env.wait_running(&[("default", &name)], 30);
    let out = env.ok(&["get", "pod", &name, "-o", "json"]);
    let pod: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ips: Vec<IpAddr> = pod["status"]["podIPs"]
        .as_array()
        .unwrap_or_else(|| panic!("no podIPs: {out}"))
        .iter()
        .map(|i| i["ip"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        ips.len() == 2 && ips[0].is_ipv4() && ips[1].is_ipv6(),
        "podIPs {ips:?}: one of each family, IPv4 first"
    );
    assert_eq!(
        pod["status"]["podIP"].as_str(),
        Some(ips[0].to_string().as_str())
    );
    let prefix = subnet6.trim_end_matches("::/64");
    assert!(
        ips[1].to_string().starts_with(prefix),
        "{} not in {subnet6}",
        ips[1]
    );
    // The node reaches the pod over both.
    for ip in &ips {
        let text = get_soon(SocketAddr::new(*ip, 8080));
        assert!(text.contains("both-families"), "{ip}: {text}");
    }
    env.ok(&["delete", "pod", &name]);
    env.assert_nothing_left();
}
