//! gRPC probes as kubelet runs them (pkg/probe/grpc): one call of
//! `/grpc.health.v1.Health/Check` over plaintext HTTP/2 (h2c, prior
//! knowledge), the probe's timeout the deadline of the dial and the call
//! together; only a SERVING answer passes, and the failures read as
//! kubelet's. The two protobuf messages are small enough to write by hand:
//! HealthCheckRequest is `string service = 1`, HealthCheckResponse
//! `ServingStatus status = 1` (an enum, a varint).

use super::{HandlerError, Result};
use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_TYPE, TE, USER_AGENT};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The method kubelet calls.
const CHECK: &str = "/grpc.health.v1.Health/Check";

/// HealthCheckResponse.ServingStatus.SERVING.
const SERVING: i32 = 1;

/// grpc-go's default limit on a received message.
const MAX_MESSAGE: usize = 4 << 20;

/// How long to wait before dialing again after a refused connection.
const REDIAL: Duration = Duration::from_millis(100);

/// gRPC status codes kubelet tells apart (google.golang.org/grpc/codes).
const OK: u32 = 0;
const UNKNOWN: u32 = 2;
const DEADLINE_EXCEEDED: u32 = 4;
const PERMISSION_DENIED: u32 = 7;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNIMPLEMENTED: u32 = 12;
const INTERNAL: u32 = 13;
const UNAVAILABLE: u32 = 14;
const UNAUTHENTICATED: u32 = 16;

/// Connect to `addr` before `deadline`. kubelet dials with grpc-go's
/// WithBlock, which dials again until the deadline whatever the error, so a
/// server not listening yet is a timeout, as there.
pub fn connect(addr: SocketAddr, timeout: Duration, deadline: Instant) -> Result<TcpStream> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandlerError::Failed(format!(
                "timeout: failed to connect service {:?} within {}: context deadline exceeded",
                addr.to_string(),
                go_duration(timeout)
            )));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok(stream),
            Err(_) => {
                std::thread::sleep(REDIAL.min(deadline.saturating_duration_since(Instant::now())))
            }
        }
    }
}

/// Ask the health service over `stream` whether `service` ("" for the
/// server as a whole) is serving, before `deadline`; why not, in kubelet's
/// words. Builds a runtime of its own, so the caller must be a thread
/// outside any runtime's context.
pub fn check(stream: TcpStream, service: &str, timeout: Duration, deadline: Instant) -> Result<()> {
    let failed = |e: std::io::Error| HandlerError::Failed(e.to_string());
    let authority = stream.peer_addr().map_err(failed)?.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    let left = deadline.saturating_duration_since(Instant::now());
    // The timer is made inside, where the runtime is current.
    let answer = runtime.block_on(async {
        tokio::time::timeout(left, call(stream, &authority, service, left)).await
    });
    match answer {
        Err(_elapsed) => Err(HandlerError::Failed(failure(
            &Status::new(DEADLINE_EXCEEDED, ""),
            timeout,
        ))),
        Ok(Err(status)) => Err(HandlerError::Failed(failure(&status, timeout))),
        Ok(Ok(SERVING)) => Ok(()),
        Ok(Ok(other)) => Err(HandlerError::Failed(format!(
            "service unhealthy (responded with {:?})",
            serving_status_name(other)
        ))),
    }
}

/// The Check call: the serving status answered, or the call's gRPC status.
async fn call(
    stream: TcpStream,
    authority: &str,
    service: &str,
    left: Duration,
) -> Result<i32, Status> {
    let unavailable = |e: &dyn std::fmt::Display| Status::new(UNAVAILABLE, e.to_string());
    stream.set_nonblocking(true).map_err(|e| unavailable(&e))?;
    let stream = tokio::net::TcpStream::from_std(stream).map_err(|e| unavailable(&e))?;
    let (client, connection) = h2::client::handshake(stream)
        .await
        .map_err(|e| unavailable(&e))?;
    // Dropped with the runtime, which closes the connection.
    tokio::spawn(connection);
    let mut client = client.ready().await.map_err(|e| unavailable(&e))?;
    let request = http::Request::post(format!("http://{authority}{CHECK}"))
        .header(CONTENT_TYPE, "application/grpc")
        .header(TE, "trailers")
        .header("grpc-timeout", grpc_timeout(left))
        .header(USER_AGENT, super::USER_AGENT)
        .body(())
        .map_err(|e| Status::new(INTERNAL, e.to_string()))?;
    let (response, mut send) = client
        .send_request(request, false)
        .map_err(|e| unavailable(&e))?;
    send.send_data(Bytes::from(frame(&encode_request(service))), true)
        .map_err(|e| unavailable(&e))?;
    let (head, mut body) = response.await.map_err(|e| unavailable(&e))?.into_parts();
    if head.status != http::StatusCode::OK {
        return Err(Status::from_http(head.status));
    }
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| unavailable(&e))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
        if data.len() > MAX_MESSAGE + 5 {
            return Err(Status::new(
                RESOURCE_EXHAUSTED,
                format!("grpc: received message larger than max ({MAX_MESSAGE})"),
            ));
        }
    }
    let trailers = body.trailers().await.map_err(|e| unavailable(&e))?;
    // A trailers-only answer (an error at once) has its status in the headers.
    let status =
        Status::from_headers(trailers.as_ref().unwrap_or(&head.headers)).unwrap_or_else(|| {
            Status::new(
                INTERNAL,
                "server closed the stream without sending trailers",
            )
        });
    if status.code != OK {
        return Err(status);
    }
    let message = unframe(&data).map_err(|e| Status::new(INTERNAL, e))?;
    decode_response(message).map_err(|e| {
        Status::new(
            INTERNAL,
            format!("grpc: failed to unmarshal the received message: {e}"),
        )
    })
}

/// A call's gRPC status: its code and message.
#[derive(Debug, PartialEq)]
struct Status {
    code: u32,
    message: String,
}

impl Status {
    fn new(code: u32, message: impl Into<String>) -> Self {
        Status {
            code,
            message: message.into(),
        }
    }

    /// `grpc-status` and `grpc-message` (percent-encoded) of `headers`.
    fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let code = headers.get("grpc-status")?;
        let Some(code) = code.to_str().ok().and_then(|c| c.parse().ok()) else {
            return Some(Status::new(
                UNKNOWN,
                format!("malformed grpc-status: {code:?}"),
            ));
        };
        let message = headers
            .get("grpc-message")
            .map(|m| percent_decode(m.as_bytes()))
            .unwrap_or_default();
        Some(Status::new(code, message))
    }

    /// grpc-go's status for an HTTP status other than 200.
    fn from_http(status: http::StatusCode) -> Self {
        let code = match status.as_u16() {
            400 => INTERNAL,
            401 => UNAUTHENTICATED,
            403 => PERMISSION_DENIED,
            404 => UNIMPLEMENTED,
            429 | 502 | 503 | 504 => UNAVAILABLE,
            _ => UNKNOWN,
        };
        Status::new(
            code,
            format!(
                "unexpected HTTP status code received from server: {} ({})",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
        )
    }
}

/// kubelet's message for a call that ended with `status`.
fn failure(status: &Status, timeout: Duration) -> String {
    match status.code {
        UNIMPLEMENTED => format!(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
            status.message
        ),
        DEADLINE_EXCEEDED => format!(
            "timeout: health rpc did not complete within {}",
            go_duration(timeout)
        ),
        code => format!(
            "error: health rpc probe failed: rpc error: code = {} desc = {}",
            code_name(code),
            status.message
        ),
    }
}

/// grpc-go's name of a status code.
fn code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("Code({code})"), |n| n.to_string())
}

/// The name of a HealthCheckResponse.ServingStatus (protobuf-go prints an
/// unknown value as its number).
fn serving_status_name(status: i32) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

/// A Go time.Duration's text of a whole number of seconds (probe timeouts are).
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// The `grpc-timeout` header: at most eight digits and a unit, rounded down.
fn grpc_timeout(d: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let ms = d.as_millis();
    [(1, 'm'), (1000, 'S'), (60_000, 'M'), (3_600_000, 'H')]
        .into_iter()
        .find(|(per, _)| ms / per <= MAX)
        .map_or_else(
            || format!("{MAX}H"),
            |(per, unit)| format!("{}{unit}", ms / per),
        )
}

fn percent_decode(text: &[u8]) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hex = text
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (text[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// HealthCheckRequest{service}: field 1, length-delimited; proto3 leaves an
/// empty string out.
fn encode_request(service: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !service.is_empty() {
        out.push(1 << 3 | 2);
        put_varint(&mut out, service.len() as u64);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

/// The status of a HealthCheckResponse; fields it does not know are
/// skipped, as protobuf requires, and an absent status is 0 (UNKNOWN).
fn decode_response(mut message: &[u8]) -> Result<i32, String> {
    let mut status = 0;
    while !message.is_empty() {
        let key = varint(&mut message)?;
        match (key >> 3, key & 7) {
            (0, _) => return Err("field number 0".into()),
            // An enum is an int32: the low 32 bits of the varint, as Go takes them.
            (1, 0) => status = varint(&mut message)? as i32,
            (_, 0) => {
                varint(&mut message)?;
            }
            (_, 1) => {
                take(&mut message, 8)?;
            }
            (_, 2) => {
                let len = varint(&mut message)?;
                take(&mut message, len)?;
            }
            (_, 5) => {
                take(&mut message, 4)?;
            }
            (_, wire) => return Err(format!("unsupported wire type {wire}")),
        }
    }
    Ok(status)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than ten bytes".into())
}

fn take<'a>(buf: &mut &'a [u8], len: u64) -> Result<&'a [u8], String> {
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= buf.len())
        .ok_or("truncated field")?;
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

/// A gRPC message on the wire: an uncompressed flag, its length (4 bytes,
/// big-endian), itself.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The one message of a unary answer's body.
fn unframe(mut body: &[u8]) -> Result<&[u8], String> {
    let head = take(&mut body, 5).map_err(|_| "no response message".to_string())?;
    if head[0] != 0 {
        return Err("grpc: compressed message without grpc-encoding".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    let message =
        take(&mut body, len.into()).map_err(|_| "truncated response message".to_string())?;
    if !body.is_empty() {
        return Err("more than one response message".into());
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_service_and_leaves_an_empty_one_out() {
        assert_eq!(encode_request(""), b"");
        assert_eq!(encode_request("db"), b"\x0a\x02db");
        // A length of 200 takes a two-byte varint.
        let long = "s".repeat(200);
        let encoded = encode_request(&long);
        assert_eq!(encoded[..3], [0x0a, 0xc8, 0x01]);
        assert_eq!(&encoded[3..], long.as_bytes());
    }

    #[test]
    fn a_response_gives_its_status_past_fields_it_does_not_know() {
        assert_eq!(decode_response(b""), Ok(0));
        assert_eq!(decode_response(b"\x08\x01"), Ok(1));
        assert_eq!(decode_response(b"\x08\x02"), Ok(2));
        assert_eq!(decode_response(b"\x08\x80\x01"), Ok(128));
        // -1 is ten bytes on the wire; an enum keeps the low 32 bits.
        let minus_one = b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01";
        assert_eq!(decode_response(minus_one), Ok(-1));
        // Unknown fields of every wire type around it, the last status wins.
        let mut message = vec![0x10, 0x96, 0x01]; // 2: varint 150
        message.extend([0x19, 1, 2, 3, 4, 5, 6, 7, 8]); // 3: 64 bits
        message.extend([0x08, 0x02]); // status NOT_SERVING
        message.extend([0x22, 0x03, 0x08, 0x03, 0x00]); // 4: bytes that look like a status
        message.extend([0x2d, 1, 2, 3, 4]); // 5: 32 bits
        message.extend([0x08, 0x01]); // status SERVING
        message.extend([0x0a, 0x01, 0x08]); // 1 as bytes: not the status
        assert_eq!(decode_response(&message), Ok(1));
    }

    #[test]
    fn a_broken_response_is_an_error() {
        for (bytes, why) in [
            (&b"\x08"[..], "truncated varint"),
            (b"\x08\x80", "truncated varint"),
            (b"\x12\x05ab", "truncated field"),
            (b"\x19\x01", "truncated field"),
            (b"\x00\x01", "field number 0"),
            (b"\x0b\x0c", "unsupported wire type 3"),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                "varint longer than ten bytes",
            ),
        ] {
            assert_eq!(decode_response(bytes), Err(why.to_string()), "{bytes:?}");
        }
    }

    #[test]
    fn a_message_is_framed_with_its_length_and_unframed() {
        assert_eq!(frame(b""), [0, 0, 0, 0, 0]);
        assert_eq!(frame(b"\x08\x01"), [0, 0, 0, 0, 2, 0x08, 0x01]);
        let big = vec![7; 0x01_0203];
        assert_eq!(frame(&big)[..5], [0, 0, 1, 2, 3]);
        assert_eq!(unframe(&frame(&big)), Ok(&big[..]));
        assert_eq!(unframe(&frame(b"")), Ok(&b""[..]));
        for (body, why) in [
            (&b""[..], "no response message"),
            (b"\x00\x00\x00", "no response message"),
            (
                b"\x01\x00\x00\x00\x00",
                "grpc: compressed message without grpc-encoding",
            ),
            (b"\x00\x00\x00\x00\x02\x08", "truncated response message"),
            (
                b"\x00\x00\x00\x00\x00\x00",
                "more than one response message",
            ),
        ] {
            assert_eq!(unframe(body), Err(why.to_string()), "{body:?}");
        }
    }

    #[test]
    fn statuses_come_from_headers_or_the_http_status() {
        let mut headers = HeaderMap::new();
        assert_eq!(Status::from_headers(&headers), None);
        headers.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(Status::from_headers(&headers), Some(Status::new(5, "")));
        headers.insert(
            "grpc-message",
            "no%20such%20service: %E2%9C%97%".parse().unwrap(),
        );
        assert_eq!(
            Status::from_headers(&headers),
            Some(Status::new(5, "no such service: ✗%"))
        );
        headers.insert("grpc-status", "five".parse().unwrap());
        assert_eq!(
            Status::from_headers(&headers).map(|s| s.code),
            Some(UNKNOWN)
        );
        let not_found = Status::from_http(http::StatusCode::NOT_FOUND);
        assert_eq!(
            not_found,
            Status::new(
                UNIMPLEMENTED,
                "unexpected HTTP status code received from server: 404 (Not Found)"
            )
        );
        assert_eq!(
            Status::from_http(http::StatusCode::IM_A_TEAPOT).code,
            UNKNOWN
        );
    }

    #[test]
    fn failures_read_as_kubelets() {
        let second = Duration::from_secs(1);
        assert_eq!(
            failure(&Status::new(UNIMPLEMENTED, "Method not found!"), second),
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): Method not found!"
        );
        assert_eq!(
            failure(
                &Status::new(DEADLINE_EXCEEDED, "late"),
                Duration::from_secs(90)
            ),
            "timeout: health rpc did not complete within 1m30s"
        );
        assert_eq!(
            failure(&Status::new(5, "unknown service"), second),
            "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
        );
        assert_eq!(code_name(17), "Code(17)");
        assert_eq!(serving_status_name(3), "SERVICE_UNKNOWN");
        assert_eq!(serving_status_name(7), "7");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_secs(3601)), "1h0m1s");
        assert_eq!(grpc_timeout(Duration::from_millis(999)), "999m");
        assert_eq!(grpc_timeout(Duration::from_secs(100_000)), "100000S");
        assert_eq!(grpc_timeout(Duration::from_secs(u64::MAX)), "99999999H");
    }

    /// How the test server answers the one call it takes.
    enum Answer {
        /// A response message with this serving status, then status OK.
        Serving(i32),
        /// Headers that end the stream at once, carrying this status.
        TrailersOnly(u32, &'static str),
        /// Nothing, for longer than any deadline here.
        Nothing,
    }

    /// An h2c server on loopback (h2's own server side) that takes one call
    /// and answers it; what it was sent: the request's head and body.
    fn serve_once(
        answer: Answer,
    ) -> (
        SocketAddr,
        std::thread::JoinHandle<(http::request::Parts, Vec<u8>)>,
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let (tcp, _) = listener.accept().await.unwrap();
                let mut conn = h2::server::handshake(tcp).await.unwrap();
                let (request, mut respond) = conn.accept().await.unwrap().unwrap();
                let driver = tokio::spawn(async move {
                    let _ = std::future::poll_fn(|cx| conn.poll_closed(cx)).await;
                });
                let (head, mut body) = request.into_parts();
                let mut got = Vec::new();
                while let Some(chunk) = body.data().await {
                    got.extend_from_slice(&chunk.unwrap());
                }
                let response = |headers: &[(&str, String)]| {
                    let mut r = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc");
                    for (k, v) in headers {
                        r = r.header(*k, v);
                    }
                    r.body(()).unwrap()
                };
                match answer {
                    Answer::Serving(status) => {
                        let mut send = respond.send_response(response(&[]), false).unwrap();
                        let mut message = vec![0x08];
                        put_varint(&mut message, status as u64);
                        send.send_data(Bytes::from(frame(&message)), false).unwrap();
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        send.send_trailers(trailers).unwrap();
                    }
                    Answer::TrailersOnly(code, message) => {
                        let headers = [
                            ("grpc-status", code.to_string()),
                            ("grpc-message", message.into()),
                        ];
                        respond.send_response(response(&headers), true).unwrap();
                    }
                    Answer::Nothing => tokio::time::sleep(Duration::from_secs(3)).await,
                }
                let _ = driver.await;
                (head, got)
            })
        });
        (addr, server)
    }

    /// connect and check, with kubelet's default timeout of 1 s.
    fn probe(addr: SocketAddr, service: &str) -> Result<()> {
        let timeout = Duration::from_secs(1);
        let deadline = Instant::now() + timeout;
        let stream = connect(addr, timeout, deadline)?;
        check(stream, service, timeout, deadline)
    }

    #[test]
    fn a_serving_answer_passes_and_the_call_is_kubelets() {
        let (addr, server) = serve_once(Answer::Serving(SERVING));
        probe(addr, "db").unwrap();
        let (head, body) = server.join().unwrap();
        assert_eq!(head.method, http::Method::POST);
        assert_eq!(head.uri.path(), CHECK);
        assert_eq!(head.headers["content-type"], "application/grpc");
        assert_eq!(head.headers["te"], "trailers");
        assert_eq!(head.headers["user-agent"], super::super::USER_AGENT);
        let timeout = head.headers["grpc-timeout"].to_str().unwrap();
        let ms: u64 = timeout.strip_suffix('m').unwrap().parse().unwrap();
        assert!((1..=1000).contains(&ms), "{timeout}");
        assert_eq!(body, frame(b"\x0a\x02db"));
    }

    #[test]
    fn other_answers_fail_with_kubelets_words() {
        for (answer, why) in [
            (
                Answer::Serving(2),
                "service unhealthy (responded with \"NOT_SERVING\")",
            ),
            (
                Answer::Serving(0),
                "service unhealthy (responded with \"UNKNOWN\")",
            ),
            (
                Answer::TrailersOnly(UNIMPLEMENTED, "Method not found!"),
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): Method not found!",
            ),
            (
                Answer::TrailersOnly(5, "unknown%20service"),
                "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service",
            ),
        ] {
            let (addr, server) = serve_once(answer);
            let e = probe(addr, "").unwrap_err();
            assert_eq!(format!("{e:#}"), why);
            server.join().unwrap();
        }
    }

    #[test]
    fn a_server_that_does_not_answer_times_out() {
        let (addr, server) = serve_once(Answer::Nothing);
        let start = Instant::now();
        let e = probe(addr, "").unwrap_err();
        let took = start.elapsed();
        assert_eq!(
            format!("{e:#}"),
            "timeout: health rpc did not complete within 1s"
        );
        assert!(
            (Duration::from_millis(900)..Duration::from_secs(2)).contains(&took),
            "{took:?}"
        );
        server.join().unwrap();
    }

    /// As grpc-go's blocking dial, a refused connection is dialled again
    /// until the deadline: a server that comes up within it is reached.
    #[test]
    fn a_refused_dial_is_retried_until_the_deadline() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let start = Instant::now();
        let e = probe(port, "").unwrap_err();
        let took = start.elapsed();
        assert_eq!(
            format!("{e:#}"),
            format!("timeout: failed to connect service \"{port}\" within 1s: context deadline exceeded")
        );
        assert!(
            (Duration::from_millis(900)..Duration::from_secs(2)).contains(&took),
            "{took:?}"
        );
        let timeout = Duration::from_secs(1);
        let deadline = Instant::now() + timeout;
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            std::net::TcpListener::bind(port).unwrap()
        });
        let stream = connect(port, timeout, deadline).unwrap();
        assert_eq!(stream.peer_addr().unwrap(), port);
        drop(late.join().unwrap());
    }
}
