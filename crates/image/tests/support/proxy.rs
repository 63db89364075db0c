//! A small fault-injecting HTTP/1.1 reverse proxy in front of a real registry.
//!
//! One request per connection (`Connection: close` both ways). Faults are
//! matched by a substring of the request target (`/blobs/sha256:<hex>`,
//! `/manifests/latest`); the first matching rule with uses left applies.
//! Optionally the proxy demands a Bearer token, handed out by its own `/token`
//! endpoint for `podrun:secret`, as Docker Hub-style registries do.
//! Everything stops when the [`Proxy`] is dropped.

use base64::Engine as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What to do to a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (and a short body) instead of forwarding.
    Status(u16),
    /// Forward, but flip every bit of the body byte at this offset.
    Corrupt(usize),
    /// Forward the head (with the full Content-Length) and this many body bytes, then close.
    Truncate(usize),
    /// Read the request and never answer.
    Stall,
}

struct Rule {
    pattern: String,
    fault: Fault,
    /// Uses left; `None` is forever.
    left: Option<usize>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    token: Option<String>,
    /// "METHOD target" of every request, in arrival order.
    log: Vec<String>,
}

/// The proxy; dropping it closes the listener and every open connection.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listen on 127.0.0.1:0 and forward to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let (st, up) = (state.clone(), upstream.to_string());
        let task = tokio::spawn(async move {
            // Owned here, so aborting this task aborts every connection too.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((sock, _)) = accepted else { continue };
                        conns.spawn(serve(sock, addr, up.clone(), st.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Proxy { addr, state, task }
    }

    /// `127.0.0.1:<port>`, the registry part of references through the proxy.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Apply `fault` to requests whose target contains `pattern`, `times` times (`None`: always).
    pub fn inject(&self, pattern: &str, fault: Fault, times: Option<usize>) {
        self.state.lock().unwrap().rules.push(Rule {
            pattern: pattern.into(),
            fault,
            left: times,
        });
    }

    /// Demand `Authorization: Bearer <token>` on /v2/ and serve /token.
    pub fn require_bearer(&self, token: &str) {
        self.state.lock().unwrap().token = Some(token.into());
    }

    /// How many requests had a target containing `pattern`.
    pub fn count(&self, pattern: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|r| r.contains(pattern))
            .count()
    }

    /// Every request so far, as "METHOD target".
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A parsed HTTP head: the first line, then (name, value) pairs.
struct Head {
    line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The head as sent on the wire, without `Connection` and the `drop`ped headers, plus `Connection: close`.
    fn encode(&self, drop: &[&str], add: &[(&str, String)]) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.line);
        for (n, v) in &self.headers {
            if !n.eq_ignore_ascii_case("connection")
                && !drop.iter().any(|d| n.eq_ignore_ascii_case(d))
            {
                out += &format!("{n}: {v}\r\n");
            }
        }
        for (n, v) in add {
            out += &format!("{n}: {v}\r\n");
        }
        out += "Connection: close\r\n\r\n";
        out.into_bytes()
    }
}

/// Read a head; returns it and whatever body bytes came with it.
async fn read_head(sock: &mut (impl AsyncRead + Unpin)) -> std::io::Result<(Head, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok((Head { line, headers }, buf[end + 4..].to_vec()))
}

/// Read a body after its head: Content-Length, chunked (decoded), or (a
/// response without either) up to EOF; a request without either has none.
async fn read_body(
    sock: &mut (impl AsyncRead + Unpin),
    head: &Head,
    mut got: Vec<u8>,
    request: bool,
) -> std::io::Result<Vec<u8>> {
    if head
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        sock.read_to_end(&mut got).await?; // upstream closes: we asked for Connection: close
        let (mut body, mut rest) = (Vec::new(), &got[..]);
        while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = String::from_utf8_lossy(&rest[..i]);
            let size =
                usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            if size == 0 || rest.len() < i + 2 + size {
                break;
            }
            body.extend_from_slice(&rest[i + 2..i + 2 + size]);
            rest = &rest[(i + 4 + size).min(rest.len())..];
        }
        return Ok(body);
    }
    match head
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(len) => {
            while got.len() < len {
                let mut chunk = vec![0u8; 64 * 1024];
                let n = sock.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            got.truncate(len);
        }
        None if request => got.clear(),
        None => {
            sock.read_to_end(&mut got).await?;
        }
    }
    Ok(got)
}

async fn respond(sock: &mut TcpStream, status: u16, extra: &[(&str, String)], body: &str) {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (n, v) in extra {
        head += &format!("{n}: {v}\r\n");
    }
    head += "\r\n";
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(body.as_bytes()).await;
    let _ = sock.shutdown().await;
}

fn reason(status: u16) -> &'static str {
    match status {
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

async fn serve(mut sock: TcpStream, me: SocketAddr, upstream: String, state: Arc<Mutex<State>>) {
    let Ok((head, early)) = read_head(&mut sock).await else {
        return;
    };
    let Ok(req_body) = read_body(&mut sock, &head, early, true).await else {
        return;
    };
    let mut parts = head.line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let (fault, token) = {
        let mut st = state.lock().unwrap();
        st.log.push(format!("{method} {target}"));
        let rule = st
            .rules
            .iter_mut()
            .find(|r| target.contains(&r.pattern) && r.left != Some(0));
        let fault = rule.map(|r| {
            r.left = r.left.map(|n| n - 1);
            r.fault.clone()
        });
        (fault, st.token.clone())
    };

    if let Some(token) = token {
        if target.starts_with("/token") {
            let want = base64::engine::general_purpose::STANDARD.encode("podrun:secret");
            if head.get("authorization") == Some(&format!("Basic {want}")) {
                let body = format!(r#"{{"token":"{token}","access_token":"{token}"}}"#);
                respond(&mut sock, 200, &[], &body).await;
            } else {
                let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"wrong user name or password"}]}"#;
                respond(&mut sock, 401, &[], body).await;
            }
            return;
        }
        if target.starts_with("/v2")
            && head.get("authorization") != Some(&format!("Bearer {token}"))
        {
            let challenge = format!(r#"Bearer realm="http://{me}/token",service="podrun-test""#);
            let body =
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            respond(&mut sock, 401, &[("WWW-Authenticate", challenge)], body).await;
            return;
        }
    }

    match fault {
        Some(Fault::Stall) => std::future::pending::<()>().await,
        Some(Fault::Status(code)) => {
            let body = match code {
                429 => r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
                _ => "injected failure\n",
            };
            return respond(&mut sock, code, &[], body).await;
        }
        _ => {}
    }

    let Ok(mut up) = TcpStream::connect(&upstream).await else {
        return respond(&mut sock, 502, &[], "upstream down\n").await;
    };
    let mut request = head.encode(&[], &[]);
    request.extend_from_slice(&req_body);
    if up.write_all(&request).await.is_err() {
        return;
    }
    let Ok((resp, early)) = read_head(&mut up).await else {
        return;
    };
    let no_body = method == "HEAD" || resp.line.contains(" 204 ") || resp.line.contains(" 304 ");
    let mut body = if no_body {
        Vec::new()
    } else {
        read_body(&mut up, &resp, early, false)
            .await
            .unwrap_or_default()
    };
    let head = if resp.get("transfer-encoding").is_some() {
        resp.encode(
            &["transfer-encoding"],
            &[("Content-Length", body.len().to_string())],
        )
    } else {
        resp.encode(&[], &[])
    };
    match fault {
        Some(Fault::Corrupt(at)) if at < body.len() => body[at] ^= 0xff,
        Some(Fault::Truncate(after)) => body.truncate(after),
        _ => {}
    }
    let _ = sock.write_all(&head).await;
    let _ = sock.write_all(&body).await;
    let _ = sock.shutdown().await;
}

/// A plain GET of `http://<host><path>` (for reading manifests in tests): status and body.
pub async fn get(host: &str, path: &str, accept: &str) -> (u16, Vec<u8>) {
    let mut sock = TcpStream::connect(host).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(request.as_bytes()).await.unwrap();
    let (head, early) = read_head(&mut sock).await.unwrap();
    let body = read_body(&mut sock, &head, early, false).await.unwrap();
    let status = head
        .line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body)
}
