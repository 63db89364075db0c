//! The CRI streaming server: Exec, Attach and PortForward answer with a URL
//! (`http://127.0.0.1:PORT/exec/TOKEN`, as containerd's), and the client
//! (kubelet's proxy, crictl, critest) connects there and upgrades the HTTP/1.1
//! request to a stream protocol:
//!
//! - SPDY/3.1 ([`spdy`]), with `X-Stream-Protocol-Version` negotiated as
//!   kubelet's server does (k8s.io/cri-streaming remotecommand/httpstream.go:
//!   `v4.channel.k8s.io` … `channel.k8s.io`; `portforward.k8s.io`);
//! - WebSocket ([`websocket`]) with the channel protocols (`v5.channel.k8s.io`,
//!   which kubelet's server does not offer, then v4, base64 and plain), and
//!   SPDY tunnelled through WebSocket (`SPDY/3.1+portforward.k8s.io`, client-go's
//!   port-forward over WebSocket, which kubelet's server leaves to the API
//!   server) for port forwarding.
//!
//! A URL's token is good for one connection within a minute (kubelet's request
//! cache: 1,000 at most in flight). Each connection is served on threads of
//! its own, blocking; nothing here polls.

pub mod dictionary;
mod remote;
pub mod spdy;
pub mod websocket;

use podrun_runtime::RuntimeService;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a URL stays good (kubelet's `CacheTTL`).
const TOKEN_TTL: Duration = Duration::from_secs(60);
/// How many URLs may wait at once (kubelet's `maxInFlight`).
const MAX_IN_FLIGHT: usize = 1000;
/// How long the client has to send its request and open its streams
/// (kubelet's `DefaultStreamCreationTimeout`).
const CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// What a URL was made for: the RPC's request.
#[derive(Debug, Clone)]
pub enum Pending {
    /// Exec: run `cmd` in the container.
    Exec {
        /// The container.
        container_id: String,
        /// The command.
        cmd: Vec<String>,
        /// Which of its streams the client wants, and a terminal.
        streams: Streams,
    },
    /// Attach to the container's own process.
    Attach {
        /// The container.
        container_id: String,
        /// Which streams, and whether it has a terminal.
        streams: Streams,
    },
    /// Forward ports into the sandbox's network namespace.
    PortForward {
        /// The sandbox.
        sandbox_id: String,
    },
}

/// Which standard streams a remote command connects, and whether it has a
/// terminal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streams {
    /// The client sends stdin.
    pub stdin: bool,
    /// The client wants stdout.
    pub stdout: bool,
    /// The client wants stderr (never with a terminal).
    pub stderr: bool,
    /// A terminal (its output is stdout).
    pub tty: bool,
}

/// Why a URL could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    /// Too many URLs wait to be used.
    #[error("too many streaming requests in flight ({MAX_IN_FLIGHT}); try again later")]
    Busy,
    /// The token's randomness could not be read.
    #[error("streaming: token: {0}")]
    Token(#[source] io::Error),
}

/// The streaming server: its address and the URLs waiting to be used.
pub struct Server {
    address: SocketAddr,
    pending: Mutex<HashMap<String, (Instant, Pending)>>,
    runtime: Arc<dyn RuntimeService>,
}

impl Server {
    /// Listens on `address` (port 0: one the system picks) and serves each
    /// connection on a thread of its own.
    pub fn start(runtime: Arc<dyn RuntimeService>, address: SocketAddr) -> io::Result<Arc<Self>> {
        let listener = TcpListener::bind(address)?;
        let server = Arc::new(Server {
            address: listener.local_addr()?,
            pending: Mutex::new(HashMap::new()),
            runtime,
        });
        let serving = server.clone();
        std::thread::Builder::new()
            .name("cri-streaming".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let server = serving.clone();
                    let spawned = std::thread::Builder::new()
                        .name("cri-stream".into())
                        .spawn(move || server.connection(conn));
                    if let Err(e) = spawned {
                        tracing::warn!("streaming: no thread for a connection: {e}");
                    }
                }
            })?;
        Ok(server)
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A URL for `request`, good for one connection within a minute.
    pub fn url(&self, request: Pending) -> Result<String, StreamingError> {
        let kind = match request {
            Pending::Exec { .. } => "exec",
            Pending::Attach { .. } => "attach",
            Pending::PortForward { .. } => "portforward",
        };
        let token = token().map_err(StreamingError::Token)?;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        pending.retain(|_, (at, _)| now.duration_since(*at) < TOKEN_TTL);
        if pending.len() >= MAX_IN_FLIGHT {
            return Err(StreamingError::Busy);
        }
        pending.insert(token.clone(), (now, request));
        Ok(format!("http://{}/{kind}/{token}", self.address))
    }

    /// Takes the request a token was made for, once, if it has not expired.
    fn take(&self, kind: &str, token: &str) -> Option<Pending> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (at, request) = pending.remove(token)?;
        let matches = matches!(
            (kind, &request),
            ("exec", Pending::Exec { .. })
                | ("attach", Pending::Attach { .. })
                | ("portforward", Pending::PortForward { .. })
        );
        (matches && at.elapsed() < TOKEN_TTL).then_some(request)
    }

    fn connection(&self, mut conn: TcpStream) {
        let _ = conn.set_read_timeout(Some(CREATION_TIMEOUT));
        let _ = conn.set_nodelay(true);
        let (head, rest) = match read_head(&mut conn) {
            Ok(read) => read,
            Err(e) => {
                tracing::debug!("streaming: request: {e}");
                return;
            }
        };
        let request = match Request::parse(&head) {
            Ok(request) => request,
            Err(e) => return respond(&mut conn, 400, &e, &[]),
        };
        if request.method != "GET" && request.method != "POST" {
            return respond(&mut conn, 405, "method not allowed", &[]);
        }
        let mut parts = request.path.trim_start_matches('/').splitn(2, '/');
        let (kind, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let Some(pending) = self.take(kind, token) else {
            return respond(&mut conn, 404, "404 page not found", &[]);
        };
        let upgrade = request.header("upgrade").unwrap_or("").to_ascii_lowercase();
        let _ = conn.set_read_timeout(None);
        let runtime = self.runtime.clone();
        if upgrade == "websocket" {
            websocket::serve(conn, rest, &request, pending, runtime);
        } else if upgrade.contains("spdy/3.1") {
            remote::serve_spdy(conn, rest, &request, pending, runtime);
        } else {
            let text = "unable to upgrade: missing upgrade headers in request";
            respond(&mut conn, 400, text, &[]);
        }
    }
}

/// Chunks from a channel read as one byte stream; end-of-file once every
/// sender is gone (a stream's FIN, a channel closed, the connection's end).
pub struct ChunkReader {
    chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    pending: Vec<u8>,
    at: usize,
}

impl ChunkReader {
    /// A reader of what `chunks` receives.
    pub fn new(chunks: std::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        ChunkReader {
            chunks,
            pending: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.pending.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.pending = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// 8 random bytes, base64url without padding (kubelet's tokens).
fn token() -> io::Result<String> {
    use base64::Engine;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Reads up to the end of the request head; the head and what came after it.
fn read_head(conn: &mut TcpStream) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the request head is too large",
            ));
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An HTTP/1.1 request head.
pub struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn parse(head: &[u8]) -> Result<Self, String> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err("incomplete request".into()),
            Err(e) => return Err(format!("malformed request: {e}")),
        }
        let target = req.path.unwrap_or("/");
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        Ok(Request {
            method: req.method.unwrap_or("").to_owned(),
            path: path.to_owned(),
            headers: req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
        })
    }

    /// The first value of header `name` (lower case).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every comma-separated value of every `name` header, trimmed.
    fn list(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// The first protocol the client offers that the server speaks (kubelet's
/// `negotiateProtocol`).
fn negotiate(offered: &[String], spoken: &[&str]) -> Option<String> {
    offered
        .iter()
        .find(|p| spoken.contains(&p.as_str()))
        .cloned()
}

/// A plain HTTP answer, and the connection ends.
fn respond(conn: &mut TcpStream, code: u16, text: &str, headers: &[(&str, &str)]) {
    let reason = match code {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let mut answer = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len() + 1
    );
    for (name, value) in headers {
        answer.push_str(&format!("{name}: {value}\r\n"));
    }
    answer.push_str(&format!("\r\n{text}\n"));
    let _ = conn.write_all(answer.as_bytes());
    let _ = conn.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_with_their_headers_and_query() {
        let head = b"POST /portforward/abc?port=80&port=81,82 HTTP/1.1\r\nHost: x\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: v3.channel.k8s.io, channel.k8s.io\r\n\r\n";
        let r = Request::parse(head).unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/portforward/abc")
        );
        assert_eq!(
            r.list("x-stream-protocol-version"),
            ["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"]
        );
        assert!(Request::parse(b"NONSENSE\r\n\r\n").is_err());
    }

    #[test]
    fn the_clients_first_spoken_protocol_wins() {
        let offered: Vec<String> = ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            negotiate(&offered, remote::SPDY_PROTOCOLS).as_deref(),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(negotiate(&offered[..0], remote::SPDY_PROTOCOLS), None);
    }

    #[test]
    fn tokens_are_random_and_url_safe() {
        let (a, b) = (token().unwrap(), token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 11);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
