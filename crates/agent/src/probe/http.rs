//! kubelet's HTTP GET, for httpGet probes and httpGet hooks: the request of
//! pkg/probe/http/request.go (the action's headers, `User-Agent:
//! kube-<purpose>/<major.minor>` and `Accept: */*` unless the action sets
//! them, its `Host` header as the request's host), sent as Go's client sends
//! it with kubelet's redirect rule, pkg/probe/http/http.go
//! `RedirectChecker(false)`, which pkg/kubelet/kubelet.go gives the hooks'
//! client too: a redirect to the same host name is followed, up to 10; one to
//! another host is not, and its answer stands. The timeout bounds the whole
//! exchange, redirects and body included (Go's `Client.Timeout`). HTTPS is
//! spoken without checking the server's certificate (kubelet's
//! `InsecureSkipVerify`: the pod's certificate is none the node could check).
//!
//! Every step runs on the calling thread, which the prober has moved into the
//! pod's network namespace: ureq connects and speaks TLS on the thread that
//! calls it, and names are resolved here too ([`OnThisThread`]): ureq's own
//! resolver hands a lookup with a timeout to a detached thread of its own.

use super::Outcome;
use std::io::Read;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ureq::config::{AutoHeaderValue, Config};
use ureq::http::{header, Response, Uri};
use ureq::tls::{TlsConfig, TlsProvider};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};
use ureq::{Agent, Body};
use url::Url;

/// Redirect answers after which kubelet gives up (RedirectChecker, as Go's
/// default checker): the 10th fails the GET.
const MAX_REDIRECTS: usize = 10;

/// How much of a body kubelet reads (http.go maxRespBodyLength).
const MAX_BODY: u64 = 10 << 10;

/// Who sends the GET; kubelet's User-Agent names it (request.go userAgent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An httpGet probe: `kube-probe/…`.
    Probe,
    /// An httpGet lifecycle hook: `kube-lifecycle/…`.
    Lifecycle,
}

impl Purpose {
    fn user_agent(self) -> &'static str {
        match self {
            Purpose::Probe => super::USER_AGENT,
            Purpose::Lifecycle => super::HOOK_USER_AGENT,
        }
    }
}

/// A GET as kubelet builds it from an httpGet action.
#[derive(Debug, Clone)]
pub struct Request {
    url: Url,
    /// What is sent, kubelet's defaults included, and `Host` when the
    /// action overrides it.
    headers: Vec<(String, String)>,
}

impl Request {
    /// The GET of `path` on `scheme://host:port` with the action's `headers`
    /// (name, value) and kubelet's defaults for `purpose`
    /// (request.go NewRequestForHTTPGetAction and formatURL).
    pub fn new(
        scheme: &str,
        host: &str,
        port: u16,
        path: &str,
        headers: &[(String, String)],
        purpose: Purpose,
    ) -> Result<Self, HttpError> {
        let scheme = match scheme.to_ascii_lowercase() {
            s if s.is_empty() => "http".to_string(),
            s => s,
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let slash = if path.starts_with('/') { "" } else { "/" };
        let text = format!("{scheme}://{host}:{port}{slash}{path}");
        let url = Url::parse(&text).map_err(|source| HttpError::Url { url: text, source })?;
        Ok(Request {
            url,
            headers: sent_headers(headers, purpose),
        })
    }
}

/// The headers Go's client puts on the wire for kubelet's request: `Host`
/// and `User-Agent` once (the first value; none when it is empty), `Accept:
/// */*` unless the action sets it (an empty one removes it), the others as
/// the action gives them.
fn sent_headers(given: &[(String, String)], purpose: Purpose) -> Vec<(String, String)> {
    let first = |name: &str| {
        given
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let mut sent = Vec::new();
    if let Some(host) = first("Host").filter(|h| !h.is_empty()) {
        sent.push(("Host".to_string(), host.to_string()));
    }
    match first("User-Agent") {
        None => sent.push(("User-Agent".into(), purpose.user_agent().into())),
        Some("") => {}
        Some(agent) => sent.push(("User-Agent".into(), agent.into())),
    }
    match first("Accept") {
        None => sent.push(("Accept".into(), "*/*".into())),
        Some("") => {}
        Some(_) => sent.extend(
            given
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("Accept"))
                .cloned(),
        ),
    }
    let kept = |k: &str| {
        !["Host", "User-Agent", "Accept"]
            .iter()
            .any(|n| k.eq_ignore_ascii_case(n))
    };
    sent.extend(given.iter().filter(|(k, _)| kept(k)).cloned());
    sent
}

/// The answer the GET ends with, after the redirects kubelet follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The start of the body (kubelet reads 10 KiB at most), as UTF-8.
    pub body: String,
}

/// Why a GET got no answer. The messages start as Go's client words them
/// (`Get "<url>": …`), which kubelet puts in its events as they are.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The action's URL does not parse.
    #[error("invalid URL {url:?}: {source}")]
    Url {
        url: String,
        source: url::ParseError,
    },
    /// Connecting, TLS, sending or the answer's head failed, or time ran out.
    #[error("Get \"{url}\": {source}")]
    Get { url: String, source: ureq::Error },
    /// Reading the answer's body failed.
    #[error("Get \"{url}\": read the body: {source}")]
    Body { url: String, source: std::io::Error },
    /// A redirect whose Location is no URL.
    #[error("Get \"{url}\": failed to parse Location header {location:?}: {source}")]
    Location {
        url: String,
        location: String,
        source: url::ParseError,
    },
    /// The 10th redirect (Go names the URL by the Location it was not
    /// given to follow).
    #[error("Get \"{location}\": stopped after 10 redirects")]
    TooManyRedirects { location: String },
}

/// Send `request`, following redirects as kubelet does, all within `timeout`.
pub fn get(request: &Request, timeout: Duration) -> Result<Answer, HttpError> {
    let deadline = Instant::now() + timeout;
    let agent = agent();
    let mut url = request.url.clone();
    let mut headers = request.headers.clone();
    let mut redirects = 0;
    loop {
        let response = send(&agent, &url, &headers, deadline)?;
        let Some(location) = redirect_location(&response) else {
            return answer(&url, response);
        };
        let next = url.join(&location).map_err(|source| HttpError::Location {
            url: url.to_string(),
            location: location.clone(),
            source,
        })?;
        // RedirectChecker compares host names with the first request's,
        // ports aside; another host's redirect is the answer.
        if next.host() != request.url.host() {
            return answer(&url, response);
        }
        redirects += 1;
        if redirects >= MAX_REDIRECTS {
            return Err(HttpError::TooManyRedirects { location });
        }
        // Go keeps an overridden Host only through a relative Location
        // (net/http client.go, golang/go#22233).
        if Url::parse(&location).is_ok() {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case("Host"));
        }
        url = next;
    }
}

/// kubelet's verdict on a probe's answer (http.go DoHTTPProbe): 2xx passes;
/// a 3xx left over (another host's redirect, or one Go does not follow)
/// passes with a warning that carries the body; the rest fails, the message
/// without the body (kubernetes/kubernetes#99425).
pub fn verdict(answer: &Answer) -> Outcome {
    match answer.status {
        200..=299 => Outcome::Success,
        300..=399 => Outcome::Warning(format!(
            "Probe terminated redirects, Response body: {}",
            answer.body
        )),
        code => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
    }
}

/// A client for one GET and its redirects, which it leaves to [`get`].
fn agent() -> Agent {
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .disable_verification(true)
        .build();
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        // kubelet's prober ignores the node's proxy settings.
        .proxy(None)
        // The headers are kubelet's, set in `sent_headers`; no compression
        // is asked for (the prober's DisableCompression).
        .user_agent(AutoHeaderValue::None)
        .accept(AutoHeaderValue::None)
        .accept_encoding(AutoHeaderValue::None)
        .tls_config(tls)
        .build();
    Agent::with_parts(config, DefaultConnector::new(), OnThisThread)
}

fn send(
    agent: &Agent,
    url: &Url,
    headers: &[(String, String)],
    deadline: Instant,
) -> Result<Response<Body>, HttpError> {
    let mut request = agent.get(url.as_str());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request
        .config()
        .timeout_global(Some(deadline.saturating_duration_since(Instant::now())))
        .build()
        .call()
        .map_err(|source| HttpError::Get {
            url: url.to_string(),
            source,
        })
}

/// Where a redirect Go's client follows points: 301, 302, 303, 307 or 308
/// with a Location; any other answer is the last.
fn redirect_location(response: &Response<Body>) -> Option<String> {
    if ![301, 302, 303, 307, 308].contains(&response.status().as_u16()) {
        return None;
    }
    let location = response.headers().get(header::LOCATION)?;
    Some(String::from_utf8_lossy(location.as_bytes()).into_owned()).filter(|l| !l.is_empty())
}

fn answer(url: &Url, mut response: Response<Body>) -> Result<Answer, HttpError> {
    let status = response.status().as_u16();
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_BODY)
        .read_to_end(&mut body)
        .map_err(|source| HttpError::Body {
            url: url.to_string(),
            source,
        })?;
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Name resolution on the calling thread (std's, through the host's
/// /etc/hosts and resolver configuration); an IP address needs none. Its
/// lookup is not cut short by the timeout, as the hand-written prober's was
/// not either.
#[derive(Debug)]
struct OnThisThread;

impl Resolver for OnThisThread {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host_port = uri
            .scheme()
            .zip(uri.authority())
            .and_then(|(scheme, authority)| DefaultResolver::host_and_port(scheme, authority))
            .ok_or_else(|| ureq::Error::BadUri(uri.to_string()))?;
        let mut found = self.empty();
        for addr in host_port.to_socket_addrs()? {
            if found.try_push(addr).is_err() {
                break;
            }
        }
        if found.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    /// A little HTTP/1.1 server on `ip` (port chosen by the kernel), on a
    /// thread, until dropped: it records each request's head and answers it
    /// with `answer(path)`, closing the connection after.
    struct Server {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<String>>>,
        stop: Arc<AtomicBool>,
    }

    impl Server {
        fn start(ip: &str, answer: impl Fn(&str) -> String + Send + 'static) -> Server {
            Server::start_tls(ip, None, answer)
        }

        fn start_tls(
            ip: &str,
            tls: Option<Arc<rustls::ServerConfig>>,
            answer: impl Fn(&str) -> String + Send + 'static,
        ) -> Server {
            let listener = TcpListener::bind((ip, 0)).unwrap();
            let addr = listener.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let (log, stopped) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for tcp in listener.incoming() {
                    if stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = tcp else { continue };
                    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let exchange = |stream: &mut dyn ReadWrite| {
                        let head = read_head(stream);
                        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                        log.lock().unwrap().push(head);
                        let _ = stream.write_all(answer(&path).as_bytes());
                        let _ = stream.flush();
                    };
                    match &tls {
                        None => exchange(&mut { tcp }),
                        Some(config) => {
                            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                            let mut stream = rustls::StreamOwned::new(conn, tcp);
                            exchange(&mut stream);
                            stream.conn.send_close_notify();
                            let _ = stream.flush();
                        }
                    }
                }
            });
            Server { addr, seen, stop }
        }

        fn port(&self) -> u16 {
            self.addr.port()
        }

        /// The heads of the requests seen so far.
        fn seen(&self) -> Vec<String> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the accept so the thread sees `stop`.
            let _ = TcpStream::connect(self.addr);
        }
    }

    trait ReadWrite: Read + Write {}
    impl<T: Read + Write> ReadWrite for T {}

    fn read_head(stream: &mut dyn ReadWrite) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> String {
        let mut text = format!(
            "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text + "\r\n" + body
    }

    fn probe(port: u16, path: &str) -> Request {
        Request::new("HTTP", "127.0.0.1", port, path, &[], Purpose::Probe).unwrap()
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_redirect_to_the_same_host_is_followed_to_its_answer() {
        let server = Server::start("127.0.0.1", |path| match path {
            "/healthz" => answer(302, &[("Location", "/ready")], ""),
            _ => answer(200, &[], "ok"),
        });
        let got = get(&probe(server.port(), "/healthz"), SECOND).unwrap();
        assert_eq!(
            got,
            Answer {
                status: 200,
                body: "ok".into()
            }
        );
        assert_eq!(verdict(&got), Outcome::Success);
        let seen = server.seen();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[1].starts_with("GET /ready HTTP/1.1\r\n"), "{seen:?}");
    }

    /// Host names are compared, not ports: another port of the same host is
    /// followed, and its 500 fails the probe.
    #[test]
    fn a_redirect_to_the_same_host_that_answers_500_fails() {
        let bad = Server::start("127.0.0.1", |_| answer(500, &[], "it broke"));
        let location = format!("http://127.0.0.1:{}/bad", bad.port());
        let server = Server::start("127.0.0.1", move |_| {
            answer(302, &[("Location", &location)], "")
        });
        let got = get(&probe(server.port(), "/healthz"), SECOND).unwrap();
        assert_eq!(got.status, 500);
        assert_eq!(
            verdict(&got),
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        assert_eq!(bad.seen().len(), 1);
    }

    #[test]
    fn a_redirect_to_another_host_is_not_followed_and_passes_with_a_warning() {
        let other = Server::start("127.0.0.2", |_| answer(500, &[], ""));
        let location = format!("http://127.0.0.2:{}/", other.port());
        let body = format!("<a href=\"{location}\">Found</a>.");
        let sent = body.clone();
        let server = Server::start("127.0.0.1", move |_| {
            answer(302, &[("Location", &location)], &sent)
        });
        let got = get(&probe(server.port(), "/healthz"), SECOND).unwrap();
        assert_eq!(got.status, 302);
        let outcome = verdict(&got);
        let warning = format!("Probe terminated redirects, Response body: {body}");
        assert_eq!(outcome, Outcome::Warning(warning.clone()));
        assert_eq!(
            outcome.result(),
            podrun_kubelet::probe::ProbeResult::Success
        );
        assert_eq!(
            outcome.event("Readiness"),
            Some((
                "ProbeWarning",
                format!("Readiness probe warning: {warning}")
            ))
        );
        assert!(other.seen().is_empty(), "{:?}", other.seen());
    }

    /// Go's checker refuses the 10th redirect: nine are followed.
    #[test]
    fn redirects_stop_at_the_tenth() {
        let chain = |hops: u32| {
            Server::start("127.0.0.1", move |path| {
                let n: u32 = path.trim_start_matches("/r/").parse().unwrap();
                if n < hops {
                    answer(302, &[("Location", &format!("/r/{}", n + 1))], "")
                } else {
                    answer(200, &[], "")
                }
            })
        };
        let nine = chain(9);
        let got = get(&probe(nine.port(), "/r/0"), SECOND).unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(nine.seen().len(), 10);

        let ten = chain(10);
        let err = get(&probe(ten.port(), "/r/0"), SECOND).unwrap_err();
        assert!(matches!(err, HttpError::TooManyRedirects { .. }), "{err}");
        assert_eq!(err.to_string(), "Get \"/r/10\": stopped after 10 redirects");
        assert_eq!(ten.seen().len(), 10);
    }

    #[test]
    fn a_redirect_loop_fails() {
        let server = Server::start("127.0.0.1", |_| {
            answer(301, &[("Location", "/healthz")], "")
        });
        let err = get(&probe(server.port(), "/healthz"), SECOND).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Get \"/healthz\": stopped after 10 redirects"
        );
        assert_eq!(server.seen().len(), 10);
    }

    /// The timeout bounds the redirects together, not each request.
    #[test]
    fn the_timeout_bounds_the_whole_chain() {
        let server = Server::start("127.0.0.1", |path| {
            std::thread::sleep(Duration::from_millis(300));
            let n: u32 = path.trim_start_matches("/slow/").parse().unwrap();
            answer(307, &[("Location", &format!("/slow/{}", n + 1))], "")
        });
        let started = Instant::now();
        let err = get(&probe(server.port(), "/slow/0"), SECOND).unwrap_err();
        assert!(
            matches!(
                err,
                HttpError::Get {
                    source: ureq::Error::Timeout(_),
                    ..
                }
            ),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_millis(1500));
        assert!(server.seen().len() <= 4, "{:?}", server.seen());
    }

    /// request.go's headers: the action's, User-Agent and Accept unless the
    /// action sets them, its Host as the request's host.
    #[test]
    fn the_request_carries_kubelets_headers() {
        let server = Server::start("127.0.0.1", |_| answer(200, &[], ""));
        let given = [
            ("Host".to_string(), "probe.example".to_string()),
            ("X-Probe".to_string(), "1".to_string()),
            ("X-Probe".to_string(), "2".to_string()),
        ];
        let request = Request::new(
            "",
            "127.0.0.1",
            server.port(),
            "healthz",
            &given,
            Purpose::Probe,
        )
        .unwrap();
        assert_eq!(
            request.url.as_str(),
            format!("http://127.0.0.1:{}/healthz", server.port())
        );
        get(&request, SECOND).unwrap();
        let own = [
            ("User-Agent".to_string(), "mine".to_string()),
            ("Accept".to_string(), String::new()),
        ];
        let hook = Request::new(
            "http",
            "127.0.0.1",
            server.port(),
            "/",
            &own,
            Purpose::Lifecycle,
        )
        .unwrap();
        get(&hook, SECOND).unwrap();
        let plain = Request::new(
            "http",
            "127.0.0.1",
            server.port(),
            "/",
            &[],
            Purpose::Lifecycle,
        )
        .unwrap();
        get(&plain, SECOND).unwrap();

        let seen: Vec<Vec<String>> = server
            .seen()
            .iter()
            .map(|head| head.lines().skip(1).map(str::to_ascii_lowercase).collect())
            .collect();
        let probe = &seen[0];
        assert!(probe.contains(&"host: probe.example".into()), "{probe:?}");
        assert!(
            probe.contains(&"user-agent: kube-probe/1.31".into()),
            "{probe:?}"
        );
        assert!(probe.contains(&"accept: */*".into()), "{probe:?}");
        assert!(probe.contains(&"x-probe: 1".into()), "{probe:?}");
        assert!(probe.contains(&"x-probe: 2".into()), "{probe:?}");
        assert!(
            !probe.iter().any(|h| h.starts_with("accept-encoding")),
            "{probe:?}"
        );
        let hook = &seen[1];
        assert!(hook.contains(&"user-agent: mine".into()), "{hook:?}");
        assert!(!hook.iter().any(|h| h.starts_with("accept:")), "{hook:?}");
        assert!(
            hook.contains(&format!("host: 127.0.0.1:{}", server.port())),
            "{hook:?}"
        );
        let plain = &seen[2];
        assert!(
            plain.contains(&"user-agent: kube-lifecycle/1.31".into()),
            "{plain:?}"
        );
    }

    /// Go keeps an overridden Host through a relative Location only.
    #[test]
    fn an_overridden_host_survives_a_relative_redirect_only() {
        let last = Server::start("127.0.0.1", |_| answer(200, &[], ""));
        let absolute = format!("http://127.0.0.1:{}/end", last.port());
        let server = Server::start("127.0.0.1", move |path| match path {
            "/start" => answer(302, &[("Location", "/next")], ""),
            _ => answer(302, &[("Location", &absolute)], ""),
        });
        let given = [("Host".to_string(), "probe.example".to_string())];
        let request = Request::new(
            "http",
            "127.0.0.1",
            server.port(),
            "/start",
            &given,
            Purpose::Probe,
        )
        .unwrap();
        assert_eq!(get(&request, SECOND).unwrap().status, 200);
        let seen = server.seen();
        assert!(
            seen[1]
                .to_ascii_lowercase()
                .contains("host: probe.example\r\n"),
            "{seen:?}"
        );
        let end = &last.seen()[0];
        assert!(
            end.contains(&format!("host: 127.0.0.1:{}\r\n", last.port())),
            "{end}"
        );
    }

    /// A TLS server on loopback with a self-signed certificate made by
    /// openssl: the GET follows its redirect without checking the certificate.
    #[test]
    fn an_https_get_does_not_check_the_certificate() {
        use rustls::pki_types::pem::PemObject;
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        let ok = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=probe-test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success());
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let server = Server::start_tls("127.0.0.1", Some(config), |path| match path {
            "/healthz" => answer(302, &[("Location", "/ok")], ""),
            _ => answer(204, &[], ""),
        });
        let request = Request::new(
            "HTTPS",
            "127.0.0.1",
            server.port(),
            "/healthz",
            &[("X-Probe".into(), "1".into())],
            Purpose::Probe,
        )
        .unwrap();
        assert_eq!(get(&request, SECOND).unwrap().status, 204);
        let seen = server.seen();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0].starts_with("GET /healthz HTTP/1.1\r\n"), "{seen:?}");
        assert!(seen[1].starts_with("GET /ok HTTP/1.1\r\n"), "{seen:?}");
        let first = seen[0].to_ascii_lowercase();
        assert!(first.contains("user-agent: kube-probe/1.31\r\n"), "{first}");
        assert!(first.contains("x-probe: 1\r\n"), "{first}");
    }

    /// The prober's thread joins the pod's network namespace: the GET must
    /// reach that namespace's loopback, not the host's. (Root: unshare.)
    #[test]
    fn the_get_goes_out_of_the_calling_threads_network_namespace() {
        let got = std::thread::spawn(|| {
            // SAFETY: unshare changes only this thread's network namespace,
            // a thread of this test that ends with it.
            let unshared = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            let why = std::io::Error::last_os_error();
            assert_eq!(unshared, 0, "unshare the network namespace: {why}");
            loopback_up();
            // Bound in the new namespace; the host's loopback has no such
            // server (the port is the new namespace's).
            let server = Server::start("127.0.0.1", |_| answer(200, &[], "inside"));
            get(&probe(server.port(), "/"), SECOND)
        })
        .join()
        .unwrap()
        .unwrap();
        assert_eq!(got.body, "inside");
    }

    /// A new network namespace's loopback starts down.
    fn loopback_up() {
        // SAFETY: a socket of our own and a zeroed ifreq naming "lo", for the
        // two ioctls that read and set its flags; the socket is closed after.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            assert!(fd >= 0);
            let mut req: libc::ifreq = std::mem::zeroed();
            for (to, from) in req.ifr_name.iter_mut().zip(b"lo\0") {
                *to = *from as libc::c_char;
            }
            assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req), 0);
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &req), 0);
            libc::close(fd);
        }
    }

    #[test]
    fn the_verdict_is_kubelets() {
        let cases = [
            (200, Outcome::Success),
            (204, Outcome::Success),
            (299, Outcome::Success),
            (
                304,
                Outcome::Warning("Probe terminated redirects, Response body: b".into()),
            ),
            (
                399,
                Outcome::Warning("Probe terminated redirects, Response body: b".into()),
            ),
            (
                400,
                Outcome::Failure("HTTP probe failed with statuscode: 400".into()),
            ),
            (
                503,
                Outcome::Failure("HTTP probe failed with statuscode: 503".into()),
            ),
        ];
        for (status, want) in cases {
            let got = verdict(&Answer {
                status,
                body: "b".into(),
            });
            assert_eq!(got, want, "{status}");
        }
    }
}
