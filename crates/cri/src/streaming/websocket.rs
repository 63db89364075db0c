//! The WebSocket side of the streaming server (RFC 6455, server end): the
//! handshake, frames, and the two uses Kubernetes' clients make of it.
//!
//! - Remote commands over the channel protocols (k8s.io/streaming wsstream):
//!   each message's first byte is its channel (0 stdin, 1 stdout, 2 stderr,
//!   3 error, 4 resize); the `base64.` variants send text messages whose
//!   first character is the channel's digit and whose rest is base64.
//!   `v5.channel.k8s.io` adds channel 255, on which the client closes one of
//!   its channels (`[255, 0]`: end of stdin). kubelet's own server offers v4
//!   and older; podrun offers v5 first, as the API server does.
//! - Port forwarding: SPDY tunnelled through binary messages
//!   (`SPDY/3.1+portforward.k8s.io`), as client-go's port-forward over
//!   WebSocket sends it.

use super::remote::{self, Io, Outcome};
use super::spdy::Connection;
use super::{negotiate, respond, ChunkReader, Pending, Request};
use podrun_runtime::RuntimeService;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

/// The remote command protocols, in the order podrun prefers them.
const CHANNEL_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];
/// Port forwarding: SPDY through WebSocket.
const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

const TEXT: u8 = 1;
const BINARY: u8 = 2;
const CLOSE: u8 = 8;
const PING: u8 = 9;
const PONG: u8 = 10;
/// The largest message accepted from a client.
const MAX_MESSAGE: usize = 16 << 20;

/// `Sec-WebSocket-Accept` for a client's key.
fn accept_key(key: &str) -> String {
    use base64::Engine;
    let mut input = key.trim().as_bytes().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Our side of the connection: frames, unmasked, under a lock.
#[derive(Clone)]
struct Frames(Arc<Mutex<TcpStream>>);

impl Frames {
    fn send(&self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 10);
        frame.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => frame.push(n as u8),
            n if n <= 0xFFFF => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        let mut conn = self.0.lock().unwrap_or_else(|e| e.into_inner());
        conn.write_all(&frame)
    }

    /// A close frame (1000, normal) and our side shut; the client is given
    /// a little while to answer and hang up before our reading gives up.
    fn close(&self) {
        let _ = self.send(CLOSE, &1000u16.to_be_bytes());
        let conn = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = conn.shutdown(Shutdown::Write);
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    }
}

/// A client's messages: data messages whole (fragments joined); pings
/// answered; None at a close frame or the connection's end.
struct Messages {
    reader: Box<dyn Read + Send>,
    frames: Frames,
}

impl Messages {
    fn next(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        let mut message: Option<(u8, Vec<u8>)> = None;
        loop {
            let mut head = [0u8; 2];
            if let Err(e) = self.reader.read_exact(&mut head) {
                return match e.kind() {
                    io::ErrorKind::UnexpectedEof => Ok(None),
                    _ => Err(e),
                };
            }
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0F);
            let masked = head[1] & 0x80 != 0;
            let length = match head[1] & 0x7F {
                126 => {
                    let mut b = [0u8; 2];
                    self.reader.read_exact(&mut b)?;
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.reader.read_exact(&mut b)?;
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            if length > MAX_MESSAGE as u64 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "WebSocket: frame too large",
                ));
            }
            let mut mask = [0u8; 4];
            if masked {
                self.reader.read_exact(&mut mask)?;
            }
            let mut payload = vec![0u8; length as usize];
            self.reader.read_exact(&mut payload)?;
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            match opcode {
                CLOSE => return Ok(None),
                // Control frames may come between a message's fragments.
                PING => {
                    self.frames.send(PONG, &payload)?;
                    continue;
                }
                PONG => continue,
                0 => match &mut message {
                    Some((_, data)) => data.extend_from_slice(&payload),
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "WebSocket: a continuation frame starts no message",
                        ))
                    }
                },
                _ => message = Some((opcode, payload)),
            }
            if fin {
                if let Some(message) = message.take() {
                    if message.1.len() > MAX_MESSAGE {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "WebSocket: message too large",
                        ));
                    }
                    return Ok(Some(message));
                }
            }
        }
    }
}

/// Serves a WebSocket upgrade: the handshake with the negotiated protocol,
/// then the remote command or the tunnelled port forwarding.
pub(super) fn serve(
    mut conn: TcpStream,
    rest: Vec<u8>,
    request: &Request,
    pending: Pending,
    runtime: Arc<dyn RuntimeService>,
) {
    let Some(key) = request.header("sec-websocket-key") else {
        return respond(&mut conn, 400, "missing Sec-WebSocket-Key", &[]);
    };
    let offered = request.list("sec-websocket-protocol");
    let forwarding = matches!(pending, Pending::PortForward { .. });
    let protocol = if forwarding {
        negotiate(&offered, &[TUNNEL_PROTOCOL])
    } else if offered.is_empty() {
        Some(String::new())
    } else {
        negotiate(&offered, CHANNEL_PROTOCOLS)
    };
    let Some(protocol) = protocol else {
        let spoken = if forwarding {
            &[TUNNEL_PROTOCOL][..]
        } else {
            CHANNEL_PROTOCOLS
        };
        let text = format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {spoken:?}"
        );
        return respond(&mut conn, 403, &text, &[]);
    };
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if !protocol.is_empty() {
        answer.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    answer.push_str("\r\n");
    if conn.write_all(answer.as_bytes()).is_err() {
        return;
    }
    let Ok(reading) = conn.try_clone() else {
        return;
    };
    let frames = Frames(Arc::new(Mutex::new(conn)));
    let messages = Messages {
        reader: Box::new(io::Cursor::new(rest).chain(reading)),
        frames: frames.clone(),
    };
    match &pending {
        Pending::PortForward { sandbox_id } => {
            tunnel(messages, frames, runtime.as_ref(), sandbox_id)
        }
        Pending::Exec { streams, .. } | Pending::Attach { streams, .. } => {
            let streams = *streams;
            channels(
                messages,
                frames,
                &protocol,
                streams,
                runtime.as_ref(),
                &pending,
            )
        }
    }
}

/// A channel the server writes: each write one message.
struct ChannelWriter {
    frames: Frames,
    channel: u8,
    base64: bool,
}

impl ChannelWriter {
    fn message(&self, data: &[u8]) -> io::Result<()> {
        if self.base64 {
            use base64::Engine;
            let mut text = vec![b'0' + self.channel];
            text.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(data)
                    .as_bytes(),
            );
            self.frames.send(TEXT, &text)
        } else {
            let mut message = Vec::with_capacity(data.len() + 1);
            message.push(self.channel);
            message.extend_from_slice(data);
            self.frames.send(BINARY, &message)
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(32 * 1024);
        if n > 0 {
            self.message(&buf[..n])?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A channel the client writes, as a byte stream; EOF when the client closes
/// it (v5) or the connection ends.
fn channel_reader() -> (Sender<Vec<u8>>, ChunkReader) {
    let (tx, chunks) = channel();
    (tx, ChunkReader::new(chunks))
}

/// A remote command over the channel protocols.
fn channels(
    mut messages: Messages,
    frames: Frames,
    protocol: &str,
    streams: super::Streams,
    runtime: &dyn RuntimeService,
    pending: &Pending,
) {
    let base64 = protocol.contains("base64");
    let writer = |channel| ChannelWriter {
        frames: frames.clone(),
        channel,
        base64,
    };
    let (stdin_tx, stdin) = channel_reader();
    let (resize_tx, resize) = channel_reader();
    let mut io = Io::default();
    if streams.stdin {
        io.stdin = Some(Box::new(stdin));
    }
    if streams.stdout {
        io.stdout = Some(Box::new(writer(1)));
    }
    if streams.stderr && !streams.tty {
        io.stderr = Some(Box::new(writer(2)));
    }
    if streams.tty {
        io.resize = Some(Box::new(resize));
    }
    // kubelet's server opens the connection with an empty message on the
    // first output channel.
    let first = if streams.stdout {
        1
    } else if streams.stderr {
        2
    } else {
        3
    };
    let _ = writer(first).message(&[]);
    let v5 = protocol == "v5.channel.k8s.io";
    let (hangup_tx, hangup) = channel::<()>();
    io.hangup = Some(hangup);
    let reading = std::thread::Builder::new()
        .name("ws-read".into())
        .spawn(move || {
            let _hangup = hangup_tx;
            let (mut stdin_tx, mut resize_tx) = (Some(stdin_tx), Some(resize_tx));
            while let Ok(Some((opcode, payload))) = messages.next() {
                let decoded = match opcode {
                    TEXT => decode_base64(&payload),
                    _ => payload.split_first().map(|(c, data)| (*c, data.to_vec())),
                };
                let Some((channel, data)) = decoded else {
                    continue;
                };
                match channel {
                    0 => {
                        if let Some(tx) = &stdin_tx {
                            let _ = tx.send(data);
                        }
                    }
                    4 => {
                        if let Some(tx) = &resize_tx {
                            let _ = tx.send(data);
                        }
                    }
                    255 if v5 => match data.first() {
                        Some(0) => stdin_tx = None,
                        Some(4) => resize_tx = None,
                        _ => {}
                    },
                    _ => {}
                }
            }
        });
    let outcome = remote::run(runtime, pending, io);
    let status = match protocol {
        "v5.channel.k8s.io" | "v4.channel.k8s.io" | "v4.base64.channel.k8s.io" => {
            Some(outcome.status_json())
        }
        _ => outcome.status_text(),
    };
    if let Some(status) = status {
        let _ = writer(3).message(&status);
    }
    if let Outcome::Failed(e) = &outcome {
        tracing::info!("streaming: {e}");
    }
    frames.close();
    drop(reading);
}

/// A text message of a base64 protocol: its channel digit and decoded data.
fn decode_base64(payload: &[u8]) -> Option<(u8, Vec<u8>)> {
    use base64::Engine;
    let (digit, data) = payload.split_first()?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    Some((digit.checked_sub(b'0')?, data))
}

/// The bytes of the client's binary messages, as one stream.
struct TunnelReader {
    messages: Messages,
    pending: Vec<u8>,
    at: usize,
}

impl Read for TunnelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.pending.len() {
            match self.messages.next()? {
                Some((_, data)) => {
                    self.pending = data;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Our bytes, each write one binary message.
struct TunnelWriter(Frames);

impl Write for TunnelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(BINARY, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Port forwarding over SPDY inside the WebSocket.
fn tunnel(messages: Messages, frames: Frames, runtime: &dyn RuntimeService, sandbox_id: &str) {
    let reader = TunnelReader {
        messages,
        pending: Vec::new(),
        at: 0,
    };
    let spdy = match Connection::serve(reader, TunnelWriter(frames.clone()), |h| {
        remote::port_stream_ok(h)
    }) {
        Ok(spdy) => spdy,
        Err(e) => return tracing::warn!("streaming: SPDY over WebSocket: {e}"),
    };
    remote::forward_streams(&spdy, runtime, sandbox_id);
    spdy.close();
    frames.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // RFC 6455 section 1.3's example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn base64_messages_carry_their_channel_as_a_digit() {
        assert_eq!(decode_base64(b"0aGVsbG8="), Some((0, b"hello".to_vec())));
        assert_eq!(decode_base64(b"4e30="), Some((4, b"{}".to_vec())));
        assert_eq!(decode_base64(b""), None);
    }

    #[test]
    fn masked_fragmented_messages_are_joined_and_pings_answered() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let frame = |first: u8, payload: &[u8]| {
            let mask = [1u8, 2, 3, 4];
            let mut f = vec![first, 0x80 | payload.len() as u8];
            f.extend_from_slice(&mask);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            f
        };
        let mut bytes = frame(BINARY, b"\x00he");
        bytes.extend(frame(0x80 | PING, b"p"));
        bytes.extend(frame(0x80, b"llo"));
        bytes.extend(frame(0x80 | CLOSE, b""));
        client.write_all(&bytes).unwrap();
        let frames = Frames(Arc::new(Mutex::new(server.try_clone().unwrap())));
        let mut messages = Messages {
            reader: Box::new(server),
            frames,
        };
        assert_eq!(
            messages.next().unwrap(),
            Some((BINARY, b"\x00hello".to_vec()))
        );
        assert_eq!(messages.next().unwrap(), None);
        let mut pong = [0u8; 3];
        client.read_exact(&mut pong).unwrap();
        assert_eq!(pong, [0x80 | PONG, 1, b'p']);
    }
}
