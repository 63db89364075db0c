//! The client's end of the CRI streaming protocols, as client-go speaks them,
//! for tests: an HTTP/1.1 upgrade, then SPDY/3.1 (streams opened with
//! zlib-compressed headers primed with SPDY's dictionary, as spdystream
//! compresses them) or WebSocket (masked frames, a channel byte first).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use flate2::{Compress, Compression, FlushCompress};

/// Connects to `url` (`http://HOST:PORT/PATH`) and sends an upgrade request
/// with `headers`; the answer's status code and headers (lower-case names).
pub fn upgrade(url: &str, headers: &[(&str, &str)]) -> (TcpStream, u16, HashMap<String, String>) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_once('/').expect("a path");
    let mut conn = TcpStream::connect(host).expect("connect to the streaming server");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!("POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    conn.write_all(request.as_bytes()).unwrap();
    // Byte by byte up to the end of the head: nothing after it is consumed.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (conn, code, headers)
}

/// A SPDY frame as the client sees it.
#[derive(Debug)]
pub enum Frame {
    /// SYN_REPLY for a stream.
    Reply,
    /// RST_STREAM.
    Reset(u32),
    /// DATA: stream, FIN, bytes.
    Data(u32, bool, Vec<u8>),
    /// GOAWAY.
    GoAway,
    /// Any other control frame.
    Other,
}

/// A SPDY client on an upgraded connection.
pub struct Spdy {
    pub conn: TcpStream,
    deflate: Compress,
    next_id: u32,
}

impl Spdy {
    pub fn new(conn: TcpStream) -> Spdy {
        let mut deflate = Compress::new(Compression::best(), true);
        deflate
            .set_dictionary(&podrun_cri::streaming::dictionary::dictionary())
            .unwrap();
        Spdy {
            conn,
            deflate,
            next_id: 1,
        }
    }

    /// Opens a stream with `headers`; its ID.
    pub fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let mut block = (headers.len() as u32).to_be_bytes().to_vec();
        for (name, value) in headers {
            for part in [
                name.to_ascii_lowercase().into_bytes(),
                value.as_bytes().to_vec(),
            ] {
                block.extend_from_slice(&(part.len() as u32).to_be_bytes());
                block.extend_from_slice(&part);
            }
        }
        let mut compressed = Vec::with_capacity(block.len() + 2048);
        let before = self.deflate.total_in();
        self.deflate
            .compress_vec(&block, &mut compressed, FlushCompress::Sync)
            .unwrap();
        assert_eq!(self.deflate.total_in() - before, block.len() as u64);
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&compressed);
        self.control(1, 0, &payload);
        id
    }

    fn control(&mut self, kind: u16, flags: u8, payload: &[u8]) {
        let mut frame = vec![0x80, 3];
        frame.extend_from_slice(&kind.to_be_bytes());
        frame.push(flags);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(payload);
        self.conn.write_all(&frame).unwrap();
    }

    /// Sends `data` on stream `id`, with FIN when `fin`.
    pub fn send(&mut self, id: u32, data: &[u8], fin: bool) {
        let mut frame = id.to_be_bytes().to_vec();
        frame.push(u8::from(fin));
        frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(data);
        self.conn.write_all(&frame).unwrap();
    }

    /// The next frame; None at the connection's end.
    pub fn frame(&mut self) -> Option<Frame> {
        let mut head = [0u8; 8];
        self.conn.read_exact(&mut head).ok()?;
        let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; length];
        self.conn.read_exact(&mut payload).ok()?;
        let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7FFF_FFFF;
        if head[0] & 0x80 == 0 {
            return Some(Frame::Data(word(&head), head[4] & 1 != 0, payload));
        }
        Some(match u16::from_be_bytes([head[2], head[3]]) {
            2 => Frame::Reply,
            3 => Frame::Reset(word(&payload)),
            7 => Frame::GoAway,
            _ => Frame::Other,
        })
    }

    /// Reads frames until every stream of `ids` has ended (FIN or reset) or
    /// the connection has; what each sent.
    pub fn collect(&mut self, ids: &[u32]) -> HashMap<u32, Vec<u8>> {
        let mut got: HashMap<u32, Vec<u8>> = ids.iter().map(|id| (*id, Vec::new())).collect();
        let mut open: Vec<u32> = ids.to_vec();
        while !open.is_empty() {
            match self.frame() {
                Some(Frame::Data(id, fin, data)) => {
                    if let Some(buf) = got.get_mut(&id) {
                        buf.extend_from_slice(&data);
                    }
                    if fin {
                        open.retain(|o| *o != id);
                    }
                }
                Some(Frame::Reset(id)) => open.retain(|o| *o != id),
                Some(_) => {}
                None => break,
            }
        }
        got
    }
}

/// A WebSocket client on an upgraded connection.
pub struct WebSocket {
    pub conn: TcpStream,
}

impl WebSocket {
    /// Sends a binary message.
    pub fn send(&mut self, payload: &[u8]) {
        self.frame(2, payload);
    }

    /// Sends a frame, masked as a client must.
    pub fn frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x5a, 0x13, 0xc4, 0x7e];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.conn.write_all(&frame).unwrap();
    }

    /// The next message (opcode, payload); None at a close frame or the end.
    pub fn message(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        self.conn.read_exact(&mut head).ok()?;
        let length = match head[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                self.conn.read_exact(&mut b).ok()?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.conn.read_exact(&mut b).ok()?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; length];
        self.conn.read_exact(&mut payload).ok()?;
        match head[0] & 0x0F {
            8 => None,
            opcode => Some((opcode, payload)),
        }
    }
}
