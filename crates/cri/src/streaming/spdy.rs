//! The server's end of a SPDY/3.1 connection, as Kubernetes' streaming clients
//! (client-go over moby/spdystream) use it after an HTTP upgrade: the client
//! opens streams (SYN_STREAM with headers such as `streamType`), the server
//! answers each (SYN_REPLY, or RST_STREAM to refuse it), and both send DATA,
//! ending their side with FIN.
//!
//! Frames (draft-mbelshe-httpbis-spdy-00): a control frame is
//! `1 | version(15) | type(16) | flags(8) | length(24) | payload`, a data frame
//! `0 | stream id(31) | flags(8) | length(24) | data`. Header blocks are zlib
//! streams, one per direction for the whole connection, primed with the
//! specification's dictionary and sync-flushed after each frame's block.
//! spdystream does no flow control (WINDOW_UPDATE and SETTINGS are ignored), and
//! neither does this end; PING is answered.
//!
//! Blocking: one reader thread per connection hands each accepted stream to
//! [`Connection::next_stream`] and its data to the stream's reader; writers
//! share the socket under a lock.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::dictionary::dictionary;

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// RST_STREAM's status codes.
const REFUSED_STREAM: u32 = 3;
const CANCEL: u32 = 5;
/// The largest frame payload SPDY's 24-bit length allows.
const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// What one DATA frame carries at most from us.
const DATA_CHUNK: usize = 32 * 1024;

/// A stream's headers: names in lower case (as SPDY sends them), a value per
/// entry (a NUL-joined value becomes several).
pub type Headers = Vec<(String, String)>;

/// The first value of header `name` (any case).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Our half of the connection: the socket's writing side and our header
/// compressor, shared by every stream.
struct Out {
    writer: Box<dyn Write + Send>,
    deflate: Compress,
    gone: bool,
}

impl Out {
    /// Writes one whole frame; once a write failed, the connection is gone.
    fn write(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.gone {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the SPDY connection is closed",
            ));
        }
        let sent = self
            .writer
            .write_all(frame)
            .and_then(|()| self.writer.flush());
        if sent.is_err() {
            self.gone = true;
        }
        sent
    }
}

/// Sends frames; cloned into every stream.
#[derive(Clone)]
struct Frames(Arc<Mutex<Out>>);

impl Frames {
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(frame)
    }

    fn control(&self, kind: u16, flags: u8, payload: &[u8]) -> io::Result<()> {
        self.send(&control_frame(kind, flags, payload))
    }

    fn data(&self, id: u32, fin: bool, data: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(8 + data.len());
        frame.extend_from_slice(&(id & 0x7FFF_FFFF).to_be_bytes());
        frame.push(if fin { FLAG_FIN } else { 0 });
        frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(data);
        self.send(&frame)
    }

    /// SYN_REPLY with no headers: the stream is accepted. Compressed and
    /// sent under one lock: header blocks must reach the peer in the order
    /// our zlib stream made them.
    fn reply(&self, id: u32) -> io::Result<()> {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let block = deflate(&mut out.deflate, &encode_headers(&[]))?;
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&block);
        out.write(&control_frame(SYN_REPLY, 0, &payload))
    }

    fn reset(&self, id: u32, status: u32) -> io::Result<()> {
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&status.to_be_bytes());
        self.control(RST_STREAM, 0, &payload)
    }
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

/// A header block, uncompressed: the count, then each name and value with a
/// 4-byte length.
fn encode_headers(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut block = (headers.len() as u32).to_be_bytes().to_vec();
    for (name, value) in headers {
        for part in [name.to_ascii_lowercase().as_bytes(), value.as_bytes()] {
            block.extend_from_slice(&(part.len() as u32).to_be_bytes());
            block.extend_from_slice(part);
        }
    }
    block
}

/// Parses an uncompressed header block.
fn decode_headers(block: &[u8]) -> io::Result<Headers> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
        if rest.len() < n {
            return Err(invalid("a header block ends early"));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    fn length(rest: &mut &[u8]) -> io::Result<usize> {
        let b = take(rest, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    let mut rest = block;
    let count = length(&mut rest)?;
    let mut headers = Vec::new();
    for _ in 0..count {
        let n = length(&mut rest)?;
        let name = String::from_utf8_lossy(take(&mut rest, n)?).to_ascii_lowercase();
        let n = length(&mut rest)?;
        let value = take(&mut rest, n)?;
        for part in value.split(|b| *b == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(part).into_owned()));
        }
    }
    Ok(headers)
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("SPDY: {what}"))
}

/// Compresses one header block onto our zlib stream, sync-flushed so the peer
/// can read all of it from this frame alone.
fn deflate(z: &mut Compress, block: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len() + 64);
    let mut input = block;
    loop {
        let before = z.total_in();
        z.compress_vec(input, &mut out, FlushCompress::Sync)
            .map_err(invalid)?;
        input = &input[(z.total_in() - before) as usize..];
        if input.is_empty() && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(256);
    }
}

/// Decompresses one frame's header block from the peer's zlib stream, priming
/// it with the dictionary when the stream asks for it.
fn inflate(z: &mut Decompress, block: &[u8], dict: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len() * 4 + 64);
    let mut input = block;
    loop {
        let (before_in, before_out) = (z.total_in(), out.len());
        let result = z.decompress_vec(input, &mut out, FlushDecompress::Sync);
        input = &input[(z.total_in() - before_in) as usize..];
        match result {
            Ok(_) => {
                if input.is_empty() && out.len() < out.capacity() {
                    return Ok(out);
                }
                if out.len() == before_out && out.len() < out.capacity() {
                    return Err(invalid("a header block does not decompress"));
                }
            }
            Err(e) if e.needs_dictionary().is_some() => {
                z.set_dictionary(dict).map_err(invalid)?;
            }
            Err(e) => return Err(invalid(format!("header block: {e}"))),
        }
        if out.len() > MAX_PAYLOAD {
            return Err(invalid("a header block is too large"));
        }
        out.reserve(1024);
    }
}

/// A stream the client opened and we accepted.
pub struct Stream {
    /// Its ID.
    pub id: u32,
    /// Its headers.
    pub headers: Headers,
    data: Receiver<Vec<u8>>,
    frames: Frames,
}

impl Stream {
    /// Its reading and writing halves.
    pub fn split(self) -> (StreamReader, StreamWriter) {
        (
            StreamReader::new(self.data),
            StreamWriter {
                id: self.id,
                frames: self.frames,
                closed: false,
            },
        )
    }
}

/// What the client sends on a stream; EOF at its FIN (or a reset, or the
/// connection's end).
pub type StreamReader = super::ChunkReader;

/// Our side of a stream: DATA frames; [`StreamWriter::close`] (or dropping it)
/// sends FIN.
pub struct StreamWriter {
    id: u32,
    frames: Frames,
    closed: bool,
}

impl StreamWriter {
    /// Ends our side of the stream (FIN), once.
    pub fn close(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.frames.data(self.id, true, &[])
    }

    /// Resets the stream (RST_STREAM CANCEL): the client stops using it.
    pub fn reset(&mut self) -> io::Result<()> {
        self.closed = true;
        self.frames.reset(self.id, CANCEL)
    }
}

impl Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("SPDY stream {} is closed", self.id),
            ));
        }
        let n = buf.len().min(DATA_CHUNK);
        if n > 0 {
            self.frames.data(self.id, false, &buf[..n])?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// An upgraded connection: the streams the client opens, in order.
pub struct Connection {
    streams: Receiver<Stream>,
    frames: Frames,
    hangup: Mutex<Option<Receiver<()>>>,
}

impl Connection {
    /// Serves SPDY on `reader`/`writer` (the upgraded socket). `accept` decides
    /// from its headers whether a new stream is answered (SYN_REPLY) or
    /// refused (RST_STREAM).
    pub fn serve(
        reader: impl Read + Send + 'static,
        writer: impl Write + Send + 'static,
        accept: impl Fn(&Headers) -> bool + Send + 'static,
    ) -> io::Result<Self> {
        let frames = Frames(Arc::new(Mutex::new(Out {
            writer: Box::new(writer),
            deflate: Compress::new(Compression::default(), true),
            gone: false,
        })));
        let (tx, streams) = channel();
        let (hangup_tx, hangup) = channel();
        let reading = Reading {
            _hangup: hangup_tx,
            reader: Box::new(reader),
            frames: frames.clone(),
            inflate: Decompress::new(true),
            dict: dictionary(),
            open: HashMap::new(),
            new_streams: tx,
            accept: Box::new(accept),
        };
        std::thread::Builder::new()
            .name("spdy-read".into())
            .spawn(move || reading.run())?;
        Ok(Self {
            streams,
            frames,
            hangup: Mutex::new(Some(hangup)),
        })
    }

    /// A receiver that disconnects when the client has hung up (the
    /// connection's reading ended); once.
    pub fn hangup(&self) -> Option<Receiver<()>> {
        self.hangup.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The next stream the client opened; None once the connection has ended.
    pub fn next_stream(&self) -> Option<Stream> {
        self.streams.recv().ok()
    }

    /// The next stream, waiting at most `timeout`; Err(true) on timeout,
    /// Err(false) once the connection has ended.
    pub fn next_stream_within(&self, timeout: std::time::Duration) -> Result<Stream, bool> {
        use std::sync::mpsc::RecvTimeoutError;
        self.streams.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => true,
            RecvTimeoutError::Disconnected => false,
        })
    }

    /// Says goodbye (GOAWAY) and stops sending: the client sees the
    /// connection end once it has read what was sent.
    pub fn close(&self) {
        let _ = self.frames.control(GOAWAY, 0, &[0; 8]);
        let mut out = self.frames.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.writer.flush();
        out.gone = true;
    }
}

/// The reader thread's state.
struct Reading {
    /// Dropped when reading ends: the client hung up.
    _hangup: Sender<()>,
    reader: Box<dyn Read + Send>,
    frames: Frames,
    inflate: Decompress,
    dict: Vec<u8>,
    open: HashMap<u32, Sender<Vec<u8>>>,
    new_streams: Sender<Stream>,
    #[allow(clippy::type_complexity)]
    accept: Box<dyn Fn(&Headers) -> bool + Send>,
}

impl Reading {
    fn run(mut self) {
        if let Err(e) = self.frames_until_end() {
            tracing::debug!("SPDY connection ended: {e}");
        }
        // Dropping the senders ends every reader and next_stream.
    }

    fn frames_until_end(&mut self) -> io::Result<()> {
        let mut head = [0u8; 8];
        loop {
            if let Err(e) = self.reader.read_exact(&mut head) {
                return if e.kind() == io::ErrorKind::UnexpectedEof {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            let flags = head[4];
            let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
            let mut payload = vec![0u8; length];
            self.reader.read_exact(&mut payload)?;
            if head[0] & 0x80 == 0 {
                let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
                self.data(id, flags, payload);
                continue;
            }
            let kind = u16::from_be_bytes([head[2], head[3]]);
            match kind {
                SYN_STREAM => self.syn_stream(flags, &payload)?,
                RST_STREAM if payload.len() >= 4 => {
                    let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    self.open.remove(&(id & 0x7FFF_FFFF));
                }
                PING => self.frames.control(PING, 0, &payload)?,
                GOAWAY => return Ok(()),
                // SETTINGS, WINDOW_UPDATE, HEADERS, NOOP: nothing to do
                // without flow control (spdystream sends none of them).
                _ => {}
            }
        }
    }

    fn data(&mut self, id: u32, flags: u8, payload: Vec<u8>) {
        if let Some(tx) = self.open.get(&id) {
            if !payload.is_empty() && tx.send(payload).is_err() {
                // The stream's reader is gone: drop what comes for it.
                self.open.remove(&id);
                return;
            }
            if flags & FLAG_FIN != 0 {
                self.open.remove(&id);
            }
        }
    }

    fn syn_stream(&mut self, flags: u8, payload: &[u8]) -> io::Result<()> {
        if payload.len() < 10 {
            return Err(invalid("a SYN_STREAM frame is too short"));
        }
        let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7FFF_FFFF;
        let block = inflate(&mut self.inflate, &payload[10..], &self.dict)?;
        let headers = decode_headers(&block)?;
        if !(self.accept)(&headers) {
            return self.frames.reset(id, REFUSED_STREAM);
        }
        self.frames.reply(id)?;
        let (tx, data) = channel();
        if flags & FLAG_FIN == 0 {
            self.open.insert(id, tx);
        }
        let stream = Stream {
            id,
            headers,
            data,
            frames: self.frames.clone(),
        };
        // Nobody takes streams any more: the handler has finished.
        let _ = self.new_streams.send(stream);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_survive_a_round_trip_through_both_zlib_streams() {
        // Our compressor against a decompressor primed as a client's is, and
        // a dictionary-primed compressor (as spdystream's) against ours.
        let dict = dictionary();
        let mut ours = Compress::new(Compression::default(), true);
        let mut theirs = Decompress::new(true);
        for headers in [
            vec![("streamtype", "error")],
            vec![("streamtype", "stdout"), ("port", "8080")],
            vec![],
        ] {
            let block = encode_headers(&headers);
            let sent = deflate(&mut ours, &block).unwrap();
            let got = inflate(&mut theirs, &sent, &dict).unwrap();
            assert_eq!(got, block);
        }
        let mut client = Compress::new(Compression::best(), true);
        client.set_dictionary(&dict).unwrap();
        let mut server = Decompress::new(true);
        for n in 0..3 {
            let block = encode_headers(&[("streamType", "stdin"), ("requestID", &n.to_string())]);
            let sent = deflate(&mut client, &block).unwrap();
            let got = inflate(&mut server, &sent, &dict).unwrap();
            let headers = decode_headers(&got).unwrap();
            assert_eq!(header(&headers, "StreamType"), Some("stdin"));
            assert_eq!(header(&headers, "requestid"), Some(n.to_string().as_str()));
        }
    }

    #[test]
    fn a_nul_joined_value_is_several_values_and_a_short_block_is_refused() {
        let mut block = 1u32.to_be_bytes().to_vec();
        for part in [&b"port"[..], b"80\x0081"] {
            block.extend_from_slice(&(part.len() as u32).to_be_bytes());
            block.extend_from_slice(part);
        }
        let headers = decode_headers(&block).unwrap();
        assert_eq!(
            headers,
            vec![("port".into(), "80".into()), ("port".into(), "81".into())]
        );
        assert!(decode_headers(&block[..block.len() - 1]).is_err());
    }

    #[test]
    fn frames_have_spdy3s_layout() {
        assert_eq!(
            control_frame(PING, 0, &[0, 0, 0, 1]),
            [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]
        );
    }
}
