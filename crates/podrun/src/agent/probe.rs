//! Running probes and HTTP hooks: exec through the pod's monitor binary,
//! tcpSocket and httpGet from a thread that has joined the pod's network
//! namespace (the pod has no IP reachable from the host yet, so the target is
//! the probe's `host` or the pod's loopback), as kubelet's prober does
//! (pkg/kubelet/prober/prober.go; pkg/probe/http: 200 ≤ status < 400 passes).
//! HTTPS is spoken without checking the server's certificate, as kubelet does
//! (pkg/probe/http: InsecureSkipVerify). gRPC probes call the health service
//! on the pod's loopback from that thread too, over HTTP/2 on a runtime of
//! the thread's own: see [`grpc`].

mod grpc;

use crate::pods::PodState;
use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Container, GRPCAction, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podrun_kubelet::probe::ProbeResult;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// What kubelet's probes call themselves (HTTP and gRPC).
const USER_AGENT: &str = "kube-probe/1.31";

/// Run `probe` against container `container` of the pod; the verdict and, for
/// a failure, why (kubelet's Unhealthy event message).
pub fn run(state: &PodState, container: &Container, probe: &Probe) -> (ProbeResult, String) {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let result = if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        match crate::agent::terminate::exec_in(state, &container.name, &command, timeout) {
            Ok(0) => Ok(()),
            Ok(code) => Err(anyhow::anyhow!("command {command:?} exited with {code}")),
            Err(e) => Err(e),
        }
    } else if let Some(http) = &probe.http_get {
        http_get(state, &container.name, http, timeout).and_then(|code| {
            if (200..400).contains(&code) {
                Ok(())
            } else {
                bail!("HTTP probe failed with statuscode: {code}")
            }
        })
    } else if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.clone();
        port(&tcp.port, container).and_then(|port| {
            in_pod_network(state, move || {
                let addr = address(host.as_deref(), port)?;
                TcpStream::connect_timeout(&addr, timeout)
                    .with_context(|| format!("dial tcp {addr}"))?;
                Ok(())
            })
        })
    } else if let Some(action) = &probe.grpc {
        grpc_check(state, action, timeout)
    } else {
        Err(anyhow::anyhow!("the probe has no handler"))
    };
    match result {
        Ok(()) => (ProbeResult::Success, String::new()),
        Err(e) => (ProbeResult::Failure, format!("{e:#}")),
    }
}

/// A port given by number or by the name of one of the container's ports.
fn port(port: &IntOrString, container: &Container) -> Result<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).context("port out of range"),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port as u16)
            .with_context(|| format!("no port named {name:?} in container {}", container.name)),
    }
}

fn address(host: Option<&str>, port: u16) -> Result<SocketAddr> {
    let host = host.filter(|h| !h.is_empty()).unwrap_or("127.0.0.1");
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolve {host}"))?
        .next()
        .with_context(|| format!("resolve {host}: no address"))
}

/// A gRPC health check of the pod's loopback (kubelet's target is the pod's
/// IP, which is where the pod's loopback answers from inside), dial and call
/// within `timeout` together.
fn grpc_check(state: &PodState, action: &GRPCAction, timeout: Duration) -> Result<()> {
    let port = u16::try_from(action.port).context("port out of range")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let service = action.service.clone().unwrap_or_default();
    let deadline = Instant::now() + timeout;
    // The whole call on the namespace's thread: a new thread is in no
    // runtime's context, so it may build and block on one of its own.
    in_pod_network(state, move || {
        let stream = grpc::connect(addr, timeout, deadline)?;
        grpc::check(stream, &service, timeout, deadline)
    })
}

/// GET the hook's or probe's URL in the pod's network; the HTTP status code.
pub fn http_get(
    state: &PodState,
    container: &str,
    http: &HTTPGetAction,
    timeout: Duration,
) -> Result<u16> {
    let https = http
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
    let spec = state
        .record
        .manifest
        .spec
        .as_ref()
        .and_then(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(&s.containers)
                .find(|c| c.name == container)
        })
        .cloned()
        .unwrap_or_default();
    let port = port(&http.port, &spec)?;
    let host = http.host.clone();
    let path = http
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    let headers: Vec<(String, String)> = http
        .http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    in_pod_network(state, move || {
        let addr = address(host.as_deref(), port)?;
        let scheme = if https { "https" } else { "http" };
        let url = format!("{scheme}://{addr}{path}");
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("Get \"{url}\": dial tcp {addr}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let request = request_text(&addr, &path, &headers);
        if https {
            let name = host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| addr.ip().to_string());
            let mut tls = tls_client(&name, stream)?;
            exchange(&mut tls, &request).with_context(|| format!("Get \"{url}\""))
        } else {
            let mut stream = stream;
            exchange(&mut stream, &request).with_context(|| format!("Get \"{url}\""))
        }
    })
}

/// The GET request kubelet's prober sends.
fn request_text(addr: &SocketAddr, path: &str, headers: &[(String, String)]) -> String {
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("Host") {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    if !has("User-Agent") {
        request.push_str(&format!("User-Agent: {USER_AGENT}\r\n"));
    }
    if !has("Accept") {
        request.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    request
}

/// Send `request` and read the status code of the answer.
fn exchange(stream: &mut (impl Read + Write), request: &str) -> Result<u16> {
    stream.write_all(request.as_bytes()).context("write")?;
    stream.flush()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).context("read")?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .context("not an HTTP answer")
}

/// A TLS client that accepts any certificate (kubelet's probes do).
fn tls_client(
    server: &str,
    stream: TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(server.to_string())
        .with_context(|| format!("TLS server name {server:?}"))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).context("TLS")?;
    Ok(rustls::StreamOwned::new(conn, stream))
}

/// Accepts every certificate, checking only that the handshake's signatures
/// are sound (InsecureSkipVerify).
#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Run `f` on a thread of its own that has joined the pod's network namespace
/// (setns changes only the calling thread's), or the host's with hostNetwork.
fn in_pod_network<T: Send + 'static>(
    state: &PodState,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let plan = state.plan.as_ref().context("the pod has no plan")?;
    let ns = (!plan.host_network).then(|| plan.ns_path(podrun_runtime::sandbox::Namespace::Net));
    podrun_net::in_network_namespace(ns.as_deref(), f)?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLS server on loopback with a self-signed certificate made by
    /// openssl: the prober's HTTPS GET gets its status code.
    #[test]
    fn an_https_get_reads_the_status_without_checking_the_certificate() {
        use rustls::pki_types::pem::PemObject;
        use std::sync::Arc;
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
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(config).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tls.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            tls.flush().unwrap();
            String::from_utf8(got).unwrap()
        });
        let tcp = TcpStream::connect(addr).unwrap();
        let mut tls = tls_client("127.0.0.1", tcp).unwrap();
        let request = request_text(&addr, "/healthz", &[("X-Probe".into(), "1".into())]);
        assert_eq!(exchange(&mut tls, &request).unwrap(), 204);
        let seen = server.join().unwrap();
        assert!(seen.starts_with("GET /healthz HTTP/1.1\r\n"), "{seen}");
        assert!(seen.contains("User-Agent: kube-probe/"), "{seen}");
        assert!(seen.contains("X-Probe: 1\r\n"), "{seen}");
    }
}
