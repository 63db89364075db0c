//! Parsing as kubectl parses, and the forwarder on the node's own network (as
//! a hostNetwork pod's), so no root is needed.

use super::*;
use std::io::Read;
use std::net::Shutdown;

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

fn pair(local: u16, remote: u16) -> ForwardedPort {
    ForwardedPort { local, remote }
}

#[test]
fn ports_are_read_as_client_go_reads_them() {
    let parse = |s: &[&str]| parse_ports(&strings(s));
    assert_eq!(
        parse(&["8080:80", "5000", ":80", "0:81"]).unwrap(),
        [pair(8080, 80), pair(5000, 5000), pair(0, 80), pair(0, 81)]
    );
    let err = |s: &str| parse(&[s]).unwrap_err().to_string();
    assert_eq!(err("80:0"), "remote port must be > 0");
    assert_eq!(err("0"), "remote port must be > 0");
    assert_eq!(err("1:2:3"), "invalid port format '1:2:3'");
    assert_eq!(
        err("http"),
        "error parsing local port 'http': invalid syntax"
    );
    assert_eq!(
        err("70000:80"),
        "error parsing local port '70000': value out of range"
    );
    assert_eq!(err("80:x"), "error parsing remote port 'x': invalid syntax");
    assert_eq!(
        ForwardedPort::to_string(&pair(9080, 80)),
        "{9080 80}",
        "Go's %v"
    );
}

fn pod_with_ports(ports: &[(&str, i32, &str)]) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [{
            "name": "c",
            "ports": ports.iter().map(|(name, port, protocol)| serde_json::json!({
                "name": name, "containerPort": port, "protocol": protocol,
            })).collect::<Vec<_>>(),
        }]},
    }))
    .unwrap()
}

#[test]
fn named_ports_are_the_containers_ports() {
    let pod = pod_with_ports(&[("http", 80, "TCP"), ("dns", 53, "UDP"), ("both", 54, "UDP")]);
    let pod = {
        let mut pod = pod;
        // 54 is declared for TCP too (another entry): forwardable.
        let spec = pod.spec.as_mut().unwrap();
        spec.containers[0]
            .ports
            .as_mut()
            .unwrap()
            .push(serde_json::from_value(serde_json::json!({"containerPort": 54})).unwrap());
        pod
    };
    let resolve = |s: &[&str]| resolve_named_ports(&strings(s), &pod);
    assert_eq!(
        resolve(&["http", "8080:http", "9090", ":http", "54"]).unwrap(),
        strings(&["80", "8080:80", "9090", ":80", "54"])
    );
    assert_eq!(
        resolve(&["ftp"]).unwrap_err().to_string(),
        "Pod 'web' does not have a named port 'ftp'"
    );
    assert_eq!(
        resolve(&["dns"]).unwrap_err().to_string(),
        "UDP protocol is not supported for dns"
    );
    assert_eq!(
        resolve(&["5353:53"]).unwrap_err().to_string(),
        "UDP protocol is not supported for 53"
    );
    assert_eq!(
        resolve(&["8080:"]).unwrap_err().to_string(),
        "remote port cannot be empty"
    );
}

#[test]
fn localhost_is_both_loopbacks_and_numbers_must_listen() {
    let v4 = IpAddr::from(Ipv4Addr::LOCALHOST);
    let v6 = IpAddr::from(Ipv6Addr::LOCALHOST);
    let all = |ip| ListenAddress {
        ip,
        mode: FailureMode::All,
    };
    let any = |ip| ListenAddress {
        ip,
        mode: FailureMode::Any,
    };
    let parse = |s: &[&str]| parse_addresses(&strings(s));
    assert_eq!(parse(&["localhost"]).unwrap(), [all(v4), all(v6)]);
    assert_eq!(
        parse(&["localhost", "127.0.0.1"]).unwrap(),
        [any(v4), all(v6)]
    );
    // Sorted by their text, each once.
    let zero = IpAddr::from(Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        parse(&["::1", "0.0.0.0", "::1"]).unwrap(),
        [any(zero), any(v6)]
    );
    assert_eq!(
        parse(&["nowhere"]).unwrap_err().to_string(),
        "nowhere is not a valid IP"
    );
}

#[test]
fn errors_are_klog_lines() {
    use chrono::TimeZone;
    let now = chrono::Local
        .with_ymd_and_hms(2026, 12, 5, 14, 3, 5)
        .unwrap();
    assert_eq!(
        klog_error("a \"b\"", now, 12345),
        r#"E1205 14:03:05.000000   12345 portforward.go] "Unhandled Error" err="a \"b\"""#
    );
    let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
    assert_eq!(go_error(&refused), "connection refused");
}

/// Lines written to a shared buffer.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A target on the node's network (as a hostNetwork pod's): no root needed.
fn node_target() -> Arc<Target> {
    Arc::new(Target {
        pod: "default/web".into(),
        name: "web".into(),
        sandbox_id: "s".into(),
        netns: None,
    })
}

fn loopback() -> Vec<ListenAddress> {
    vec![ListenAddress {
        ip: Ipv4Addr::LOCALHOST.into(),
        mode: FailureMode::Any,
    }]
}

/// A free port on 127.0.0.1 nothing listens on (there is a small race).
fn closed_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn connections_are_carried_both_ways_with_half_closes() {
    // A server that reads everything, then answers with its length.
    let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let remote = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in server.incoming() {
            let mut conn = conn.unwrap();
            let mut all = Vec::new();
            conn.read_to_end(&mut all).unwrap();
            write!(conn, "got {}", all.len()).unwrap();
        }
    });
    let (out, err) = (Lines::default(), Lines::default());
    let output = Arc::new(Output::new(Box::new(out.clone()), Box::new(err.clone())));
    let refused = closed_port();
    let ports = listen(
        node_target(),
        &loopback(),
        &[pair(0, remote), pair(0, refused)],
        output,
    )
    .unwrap();
    assert!(ports.iter().all(|p| p.local != 0), "{ports:?}");
    let request = |local: u16| {
        let mut conn = TcpStream::connect((Ipv4Addr::LOCALHOST, local)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(&[7u8; 100_000]).unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).map(|_| answer)
    };
    assert_eq!(request(ports[0].local).unwrap(), "got 100000");
    // A port nothing listens on: the connection is closed, with an error line.
    let mut conn = TcpStream::connect((Ipv4Addr::LOCALHOST, ports[1].local)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert!(matches!(conn.read(&mut buf), Ok(0) | Err(_)));
    // The forwarder goes on.
    assert_eq!(request(ports[0].local).unwrap(), "got 100000");
    let out = out.text();
    assert!(
        out.starts_with(&format!(
            "Forwarding from 127.0.0.1:{} -> {remote}\nForwarding from 127.0.0.1:{} -> {refused}\n",
            ports[0].local, ports[1].local
        )),
        "{out}"
    );
    assert_eq!(
        out.matches(&format!("Handling connection for {}\n", ports[0].local))
            .count(),
        2,
        "{out}"
    );
    let err = err.text();
    let wanted = format!(
        "an error occurred forwarding {local} -> {refused}: error forwarding port {refused} to pod default/web: \
         failed to connect to localhost:{refused} inside namespace \\\"host\\\", \
         IPv4: dial tcp4 127.0.0.1:{refused}: connect: connection refused IPv6 dial tcp6 [::1]:{refused}: connect: ",
        local = ports[1].local
    );
    assert!(err.contains(&wanted), "{err}\nwanted: {wanted}");
    assert!(err.starts_with('E'), "{err}");
}

#[test]
fn ipv6_listeners_take_ipv6_only() {
    // So `--address 0.0.0.0,::` listens on both, as Go's tcp6 does
    // (checked on ::1: a test listens on loopback only).
    let v6 = bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))).unwrap();
    assert!(rustix::net::sockopt::ipv6_v6only(&v6).unwrap());
    assert!(rustix::net::sockopt::socket_reuseaddr(&v6).unwrap());
    let v4 = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    assert!(rustix::net::sockopt::socket_reuseaddr(&v4).unwrap());
}

#[test]
fn a_port_that_cannot_listen_is_reported_and_skipped() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let busy = taken.local_addr().unwrap().port();
    let (out, err) = (Lines::default(), Lines::default());
    let output = Arc::new(Output::new(Box::new(out.clone()), Box::new(err.clone())));
    let ports = listen(
        node_target(),
        &loopback(),
        &[pair(busy, 80), pair(0, 81)],
        output.clone(),
    )
    .unwrap();
    assert_eq!(ports[0], pair(busy, 80));
    assert_eq!(
        err.text(),
        format!(
            "Unable to listen on port {busy}: Listeners failed to create with the following errors: \
             [unable to create listener: Error listen tcp4 127.0.0.1:{busy}: bind: address already in use]\n"
        )
    );
    let e = listen(node_target(), &loopback(), &[pair(busy, 80)], output).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("unable to listen on any of the requested ports: [{{{busy} 80}}]")
    );
}
