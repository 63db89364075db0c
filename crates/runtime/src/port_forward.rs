//! Port forwarding's runtime end, shared by `podrun port-forward` and the CRI
//! server's PortForward: containerd's rules
//! (internal/cri/server/sandbox_portforward_linux.go): dial `localhost:PORT`
//! from inside the pod's network namespace, IPv4 first, then IPv6 (the node's
//! own for a hostNetwork pod), and copy both ways with half-closes.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::path::Path;

/// The system's error as Go prints it: `connection refused`.
pub fn go_error(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `localhost:port` in the pod's network namespace, IPv4 first, then IPv6
/// (containerd: the dials are serial, in the namespace, no Happy Eyeballs).
pub fn dial(netns: Option<&Path>, port: u16) -> Result<TcpStream, String> {
    let dialed = podrun_net::in_network_namespace(netns, || {
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        TcpStream::connect(v4).or_else(|e4| {
            TcpStream::connect(v6).map_err(|e6| {
                format!(
                    "IPv4: dial tcp4 {v4}: connect: {} IPv6 dial tcp6 {v6}: connect: {}",
                    go_error(&e4),
                    go_error(&e6)
                )
            })
        })
    });
    let namespace = match netns {
        Some(path) => path.display().to_string(),
        None => "host".into(),
    };
    match dialed {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(both)) => Err(format!(
            "failed to connect to localhost:{port} inside namespace \"{namespace}\", {both}"
        )),
        Err(e) => Err(format!(
            "failed to execute portforward in network namespace \"{namespace}\": {e}"
        )),
    }
}

/// Copies both ways until both sides have finished sending: each side's end
/// of data becomes a shutdown of writing on the other (a half-close), so a
/// client that half-closes still gets the whole answer. An error on either
/// way shuts both connections down, which ends the other way too.
pub fn pipe(client: TcpStream, pod: TcpStream) -> io::Result<()> {
    let (client_in, pod_out) = (client.try_clone()?, pod.try_clone()?);
    let up = std::thread::Builder::new()
        .name("conn-up".into())
        .spawn(move || one_way(client_in, pod_out))?;
    let down = one_way(pod, client);
    let up = up
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the copying thread panicked")));
    down.and(up)
}

/// Copies `from` to `to` until `from` ends, then half-closes `to`.
fn one_way(mut from: TcpStream, mut to: TcpStream) -> io::Result<()> {
    match io::copy(&mut from, &mut to) {
        Ok(_) => {
            // The peer may be gone already; its side reports that.
            let _ = to.shutdown(Shutdown::Write);
            Ok(())
        }
        Err(e) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            Err(e)
        }
    }
}
