//! A byte-level front for server-side HTTP/2 connections that repairs the
//! `:authority` pseudo-header of client requests.
//!
//! # Why
//!
//! Some gRPC clients that dial a unix socket (crictl 1.29, older kubelets,
//! grpc-java, grpc C-core >= 1.57) send the socket path as `:authority`, e.g.
//! `/run/podrun/cri.sock` or `%2Frun%2Fpodrun%2Fcri.sock`.  Neither is a valid
//! URI authority (RFC 3986 §3.2), and the `h2` crate answers such a request
//! with `RST_STREAM(PROTOCOL_ERROR)` ("malformed headers: malformed
//! authority").  The authority of a request on a unix socket carries no
//! information, so [`AuthorityFront`] replaces an invalid one with
//! `localhost` before `h2` sees it.
//!
//! # How
//!
//! The client→server direction is parsed as HTTP/2 (RFC 9113):
//!
//! * the 24-byte connection preface (§3.4) passes through;
//! * every frame other than HEADERS (§6.2) and CONTINUATION (§6.10) passes
//!   through byte for byte (its payload is streamed, not buffered);
//! * a header block (HEADERS plus CONTINUATIONs up to END_HEADERS) is
//!   collected, de-padded, HPACK-decoded (RFC 7541) with a decoder that mirrors
//!   the client's dynamic table for the life of the connection, repaired, and
//!   re-encoded with "literal header field without indexing — new name"
//!   (RFC 7541 §6.2.2) only.
//!
//! Every block is re-encoded, not only the repaired ones: the server's HPACK
//! decoder then never adds anything to its dynamic table, so it cannot get out
//! of step with the client's encoder, whose references we resolve here.
//!
//! The server→client direction is not touched.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Length of a frame header (RFC 9113 §4.1).
const FRAME_HEADER_LEN: usize = 9;

/// Frame types (RFC 9113 §6).
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;

/// Frame flags (RFC 9113 §6.2, §6.10).
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// Size of the stream dependency + weight carried by a HEADERS frame with the
/// PRIORITY flag (RFC 9113 §6.2).
const PRIORITY_LEN: usize = 5;

/// Largest frame payload we emit: the initial SETTINGS_MAX_FRAME_SIZE, which is
/// also its minimum (RFC 9113 §4.2, §6.5.2), so every peer accepts it whatever
/// it advertised.
const OUT_MAX_FRAME: usize = 16_384;

/// Largest frame length the frame format allows (24-bit length, RFC 9113 §4.1;
/// SETTINGS_MAX_FRAME_SIZE can be at most 2^24-1, §6.5.2).
const MAX_FRAME_LEN: usize = (1 << 24) - 1;

/// Upper bound for one encoded header block (all its fragments together).
/// Headers and CONTINUATIONs must be buffered whole before decoding; this bound
/// keeps a CONTINUATION flood from holding unbounded memory.  It is far above
/// what a server accepts anyway (hyper's default SETTINGS_MAX_HEADER_LIST_SIZE
/// is 16 KiB).
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// Upper bound for a decoded header list, counted as in RFC 9113 §6.5.2 (name +
/// value + 32 per field).  Indexed representations make decoding expand, so the
/// decoded size needs its own bound.
const MAX_HEADER_LIST: usize = 1 << 20;

/// Largest dynamic table the client may select with a size update (RFC 7541
/// §6.3).  A server advertises 4096 by default (RFC 9113 §6.5.2); we accept up
/// to 64 KiB so that a server configured with a larger SETTINGS_HEADER_TABLE_SIZE
/// keeps working, while the memory the table may hold stays bounded.
const MAX_CLIENT_TABLE_SIZE: usize = 64 * 1024;

/// The filter stops parsing further frames once this much output is waiting.
/// Re-encoding expands header blocks (an indexed reference of one byte can
/// stand for a whole dynamic-table entry), so without this stop one read chunk
/// full of tiny HEADERS frames could materialise a very large output buffer.
/// With it, `output` holds at most about this much plus one re-encoded block.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// Chunk size for reads from the inner stream.
const READ_CHUNK: usize = 16 * 1024;

/// What `:authority` becomes when it is not a valid URI authority.
const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";

/// Wraps a server-side connection: what the client sends passes through a
/// filter that replaces an `:authority` that is not a valid URI authority
/// with `localhost`; what the server writes passes through unchanged.
///
/// A malformed HTTP/2 frame sequence or an undecodable header block makes
/// `poll_read` fail with [`io::ErrorKind::InvalidData`], which ends the
/// connection (the server would have ended it too).  A client that does not
/// start with the HTTP/2 preface is passed through untouched.
pub struct AuthorityFront<S> {
    inner: S,
    filter: Filter,
    /// Set once the inner stream reported end of file.
    eof: bool,
    /// Set once the filter failed; later reads fail too, so nothing after a
    /// malformed frame ever reaches the server.
    failed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AuthorityFront<S> {
    /// Wraps `inner`, the server side of a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        AuthorityFront {
            inner,
            filter: Filter::new(),
            eof: false,
            failed: false,
        }
    }
}

impl<S> AuthorityFront<S> {
    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// How many `:authority` values have been replaced on this connection.
    pub fn rewritten(&self) -> u64 {
        self.filter.rewritten
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for AuthorityFront<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(invalid("connection already failed")));
        }
        loop {
            // Filter what is buffered but not yet parsed (the filter stops early
            // to keep `output` small, see `OUTPUT_HIGH_WATER`).
            if this.filter.output.is_empty() {
                if let Err(e) = this.filter.process() {
                    this.failed = true;
                    return Poll::Ready(Err(e));
                }
            }
            // Serve what has been filtered already.
            if !this.filter.output.is_empty() {
                let n = this.filter.output.len().min(buf.remaining());
                buf.put_slice(&this.filter.output[..n]);
                this.filter.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof || buf.remaining() == 0 {
                // End of file.  A partial frame left in the input is dropped:
                // the server would have had to drop it as well.
                return Poll::Ready(Ok(()));
            }
            // Read one chunk from the client.  Zero-filling the spare room keeps
            // this free of `unsafe`; the cost is negligible next to a syscall.
            let start = this.filter.input.len();
            this.filter.input.resize(start + READ_CHUNK, 0);
            let mut chunk = ReadBuf::new(&mut this.filter.input[start..]);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut chunk);
            let filled = chunk.filled().len();
            this.filter.input.truncate(start + filled);
            ready!(polled)?;
            // The loop then filters the new bytes.  That may produce nothing
            // (e.g. half a frame header); then we read again, which returns
            // Pending once the client stalls.
            this.eof = filled == 0;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for AuthorityFront<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where the parser is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Matching the connection preface; `usize` bytes of it seen so far.
    Preface(usize),
    /// Not HTTP/2 with prior knowledge: pass everything through.
    Transparent,
    /// Waiting for a 9-byte frame header.
    FrameHeader,
    /// Streaming the payload of a frame we do not touch; bytes left.
    Forward(usize),
    /// Waiting for the whole payload of a HEADERS or CONTINUATION frame.
    HeaderPayload(FrameHead),
}

/// A parsed frame header (RFC 9113 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHead {
    fn parse(b: &[u8]) -> FrameHead {
        FrameHead {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored on receipt (RFC 9113 §4.1).
            stream_id: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }
}

/// A header block whose CONTINUATIONs are still arriving (RFC 9113 §4.3).
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    fragment: Vec<u8>,
}

/// The client→server filter: bytes in, rewritten bytes out.  Kept apart from
/// the I/O so that it can be tested by feeding it bytes.
struct Filter {
    state: State,
    /// Client bytes not yet consumed by the parser.
    input: BytesMut,
    /// Bytes ready to hand to the server.
    output: BytesMut,
    /// Mirrors the client encoder's dynamic table (RFC 7541 §2.3.2).
    decoder: loona_hpack::Decoder<'static>,
    pending: Option<PendingBlock>,
    /// Number of `:authority` values replaced.
    rewritten: u64,
}

/// An `InvalidData` error that ends the connection.
fn invalid(msg: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("authority front: {msg}"),
    )
}

impl Filter {
    fn new() -> Filter {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(MAX_CLIENT_TABLE_SIZE);
        Filter {
            state: State::Preface(0),
            input: BytesMut::with_capacity(READ_CHUNK),
            output: BytesMut::new(),
            decoder,
            pending: None,
            rewritten: 0,
        }
    }

    /// Consumes as much of `input` as can be handled now, appending to
    /// `output`.  Leaves an incomplete frame header or header frame in `input`,
    /// and stops at a frame boundary once `output` reaches
    /// [`OUTPUT_HIGH_WATER`]; calling it again continues from there.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.state {
                State::Preface(seen) => {
                    let n = (PREFACE.len() - seen).min(self.input.len());
                    if n == 0 {
                        return Ok(());
                    }
                    if self.input[..n] != PREFACE[seen..seen + n] {
                        // Not an HTTP/2 client (or not one we understand): step
                        // aside and let the server judge the bytes.
                        self.state = State::Transparent;
                        continue;
                    }
                    self.output.extend_from_slice(&self.input.split_to(n));
                    self.state = if seen + n == PREFACE.len() {
                        State::FrameHeader
                    } else {
                        State::Preface(seen + n)
                    };
                }
                State::Transparent => {
                    let all = self.input.split();
                    self.output.extend_from_slice(&all);
                    return Ok(());
                }
                State::FrameHeader => {
                    if self.input.len() < FRAME_HEADER_LEN || self.output.len() >= OUTPUT_HIGH_WATER
                    {
                        return Ok(());
                    }
                    let head = FrameHead::parse(&self.input[..FRAME_HEADER_LEN]);
                    if head.len > MAX_FRAME_LEN {
                        return Err(invalid("frame too large"));
                    }
                    if head.kind == TYPE_HEADERS || head.kind == TYPE_CONTINUATION {
                        let buffered = self.pending.as_ref().map_or(0, |p| p.fragment.len());
                        if head.len.saturating_add(buffered) > MAX_HEADER_BLOCK {
                            return Err(invalid("header block too large"));
                        }
                        self.state = State::HeaderPayload(head);
                        continue;
                    }
                    if self.pending.is_some() {
                        // RFC 9113 §6.10: only CONTINUATION may follow a header
                        // block without END_HEADERS.
                        return Err(invalid("frame interleaved in a header block"));
                    }
                    let raw = self.input.split_to(FRAME_HEADER_LEN);
                    self.output.extend_from_slice(&raw);
                    self.state = State::Forward(head.len);
                }
                State::Forward(left) => {
                    if left == 0 {
                        self.state = State::FrameHeader;
                        continue;
                    }
                    let n = left.min(self.input.len());
                    if n == 0 {
                        return Ok(());
                    }
                    let raw = self.input.split_to(n);
                    self.output.extend_from_slice(&raw);
                    self.state = State::Forward(left - n);
                }
                State::HeaderPayload(head) => {
                    if self.input.len() < FRAME_HEADER_LEN + head.len {
                        self.input
                            .reserve(FRAME_HEADER_LEN + head.len - self.input.len());
                        return Ok(());
                    }
                    self.input.advance(FRAME_HEADER_LEN);
                    let payload = self.input.split_to(head.len);
                    self.state = State::FrameHeader;
                    self.header_frame(head, &payload)?;
                }
            }
        }
    }

    /// Handles one HEADERS or CONTINUATION frame; once the block is complete
    /// (END_HEADERS), rewrites it into `output`.
    fn header_frame(&mut self, head: FrameHead, payload: &[u8]) -> io::Result<()> {
        if head.stream_id == 0 {
            return Err(invalid("header frame on stream 0"));
        }
        match (head.kind, self.pending.as_mut()) {
            (TYPE_HEADERS, None) => {
                let (priority, fragment) = split_headers_payload(head.flags, payload)?;
                self.pending = Some(PendingBlock {
                    stream_id: head.stream_id,
                    end_stream: head.flags & FLAG_END_STREAM != 0,
                    priority,
                    fragment: fragment.to_vec(),
                });
            }
            (TYPE_CONTINUATION, Some(p)) if p.stream_id == head.stream_id => {
                // CONTINUATION has no padding or priority (RFC 9113 §6.10).
                p.fragment.extend_from_slice(payload);
            }
            _ => return Err(invalid("unexpected HEADERS or CONTINUATION")),
        }
        if head.flags & FLAG_END_HEADERS != 0 {
            if let Some(block) = self.pending.take() {
                self.finish_block(block)?;
            }
        }
        Ok(())
    }

    /// Decodes a complete header block, repairs `:authority`, and writes the
    /// re-encoded block as HEADERS (+ CONTINUATION) frames.
    fn finish_block(&mut self, block: PendingBlock) -> io::Result<()> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut list_size = 0usize;
        let mut too_large = false;
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                // Keep decoding even when over the limit: the decoder must still
                // apply every table insertion; we just stop collecting.
                list_size = list_size.saturating_add(name.len() + value.len() + 32);
                if list_size > MAX_HEADER_LIST {
                    too_large = true;
                } else {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| invalid(&format!("HPACK decoding failed: {e}")))?;
        if too_large {
            return Err(invalid("header list too large"));
        }

        for (name, value) in fields.iter_mut() {
            if name.as_slice() == b":authority"
                && http::uri::Authority::try_from(value.as_slice()).is_err()
            {
                *value = REPLACEMENT_AUTHORITY.to_vec();
                self.rewritten += 1;
            }
        }

        let mut encoded = Vec::with_capacity(block.fragment.len() * 2);
        for (name, value) in &fields {
            encode_literal_without_indexing(name, value, &mut encoded);
        }
        write_header_frames(
            &mut self.output,
            block.stream_id,
            block.end_stream,
            block.priority,
            &encoded,
        );
        Ok(())
    }
}

/// Splits a HEADERS payload into its priority data (if the PRIORITY flag is
/// set) and its field block fragment, dropping padding (RFC 9113 §6.2).
fn split_headers_payload(
    flags: u8,
    payload: &[u8],
) -> io::Result<(Option<[u8; PRIORITY_LEN]>, &[u8])> {
    let mut rest = payload;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        let (&len, after) = rest
            .split_first()
            .ok_or_else(|| invalid("PADDED HEADERS without pad length"))?;
        pad = usize::from(len);
        rest = after;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        if rest.len() < PRIORITY_LEN {
            return Err(invalid("HEADERS too short for priority"));
        }
        let mut p = [0u8; PRIORITY_LEN];
        p.copy_from_slice(&rest[..PRIORITY_LEN]);
        priority = Some(p);
        rest = &rest[PRIORITY_LEN..];
    }
    // Padding that is as long as the rest of the payload or longer is a
    // connection error (RFC 9113 §6.2).
    if pad > rest.len() {
        return Err(invalid("padding exceeds HEADERS payload"));
    }
    Ok((priority, &rest[..rest.len() - pad]))
}

/// Appends an HPACK integer with an `n`-bit prefix (RFC 7541 §5.1); `first`
/// carries the bits above the prefix in the first octet.
fn encode_integer(value: usize, n: u32, first: u8, out: &mut Vec<u8>) {
    let max_prefix = (1usize << n) - 1;
    if value < max_prefix {
        // Fits in the prefix; `value < 2^n <= 128`, so the cast is lossless.
        out.push(first | value as u8);
        return;
    }
    out.push(first | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// Appends a string literal without Huffman coding (RFC 7541 §5.2: H bit 0,
/// 7-bit-prefix length, raw octets).
fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    encode_integer(s.len(), 7, 0x00, out);
    out.extend_from_slice(s);
}

/// Appends a "literal header field without indexing — new name"
/// (RFC 7541 §6.2.2): octet 0x00, name literal, value literal.  The receiver
/// adds nothing to its dynamic table for it.
fn encode_literal_without_indexing(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    encode_string(name, out);
    encode_string(value, out);
}

/// Appends a 9-byte frame header (RFC 9113 §4.1).
fn put_frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: u32) {
    // `len <= OUT_MAX_FRAME < 2^24`, so three octets hold it.
    out.put_uint(len as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream_id & 0x7fff_ffff);
}

/// Writes a header block as one HEADERS frame followed by as many CONTINUATION
/// frames as needed to keep every payload within [`OUT_MAX_FRAME`]
/// (RFC 9113 §4.3, §6.2, §6.10).  END_STREAM and PRIORITY go on the HEADERS
/// frame, END_HEADERS on the last frame; no padding.
fn write_header_frames(
    out: &mut BytesMut,
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    block: &[u8],
) {
    let prio_len = if priority.is_some() { PRIORITY_LEN } else { 0 };
    let first_len = block.len().min(OUT_MAX_FRAME - prio_len);
    let (first, mut rest) = block.split_at(first_len);

    let mut flags = 0;
    if end_stream {
        flags |= FLAG_END_STREAM;
    }
    if priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    out.reserve(block.len() + FRAME_HEADER_LEN * (1 + block.len() / OUT_MAX_FRAME) + prio_len);
    put_frame_header(out, prio_len + first.len(), TYPE_HEADERS, flags, stream_id);
    if let Some(p) = priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(first);

    while !rest.is_empty() {
        let n = rest.len().min(OUT_MAX_FRAME);
        let (chunk, after) = rest.split_at(n);
        let flags = if after.is_empty() {
            FLAG_END_HEADERS
        } else {
            0
        };
        put_frame_header(out, chunk.len(), TYPE_CONTINUATION, flags, stream_id);
        out.extend_from_slice(chunk);
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TYPE_DATA: u8 = 0x0;
    const TYPE_SETTINGS: u8 = 0x4;
    const TYPE_RST_STREAM: u8 = 0x3;

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    /// A frame as parsed back from the filter's output.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Frame {
        kind: u8,
        flags: u8,
        stream_id: u32,
        payload: Vec<u8>,
    }

    fn frame_bytes(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_uint(payload.len() as u64, 3);
        out.put_u8(kind);
        out.put_u8(flags);
        out.put_u32(stream_id);
        out.extend_from_slice(payload);
        out.to_vec()
    }

    /// Encodes with httlib-hpack using Huffman for names and values,
    /// incremental indexing and the best (indexed where possible)
    /// representation — the client-side encoder state the filter must follow.
    fn client_encode(enc: &mut httlib_hpack::Encoder<'static>, fields: &[(&str, &str)]) -> Vec<u8> {
        let flags = httlib_hpack::Encoder::HUFFMAN_NAME
            | httlib_hpack::Encoder::HUFFMAN_VALUE
            | httlib_hpack::Encoder::WITH_INDEXING
            | httlib_hpack::Encoder::BEST_FORMAT;
        let mut dst = Vec::new();
        for (n, v) in fields {
            enc.encode(
                (n.as_bytes().to_vec(), v.as_bytes().to_vec(), flags),
                &mut dst,
            )
            .unwrap();
        }
        dst
    }

    /// Runs bytes through a filter, feeding them `step` bytes at a time.
    fn run_filter(bytes: &[u8], step: usize) -> io::Result<(Vec<u8>, u64)> {
        let mut f = Filter::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(step) {
            f.input.extend_from_slice(chunk);
            loop {
                f.process()?;
                if f.output.is_empty() {
                    break;
                }
                out.extend_from_slice(&f.output.split());
            }
        }
        Ok((out, f.rewritten))
    }

    /// Parses filter output: preface, then frames.
    fn parse_output(bytes: &[u8]) -> Vec<Frame> {
        assert_eq!(&bytes[..24], PREFACE);
        let mut rest = &bytes[24..];
        let mut frames = Vec::new();
        while !rest.is_empty() {
            let head = FrameHead::parse(&rest[..9]);
            frames.push(Frame {
                kind: head.kind,
                flags: head.flags,
                stream_id: head.stream_id,
                payload: rest[9..9 + head.len].to_vec(),
            });
            rest = &rest[9 + head.len..];
        }
        frames
    }

    /// Collects header blocks from parsed frames (checking frame-size and
    /// END_HEADERS placement) and decodes them with one fresh decoder, as the
    /// server would.  Returns (stream id, HEADERS flags, fields) per block.
    fn decode_blocks(frames: &[Frame]) -> Vec<(u32, u8, Fields)> {
        let mut dec = loona_hpack::Decoder::new();
        let mut blocks = Vec::new();
        let mut cur: Option<(u32, u8, Vec<u8>)> = None;
        for f in frames {
            assert!(f.payload.len() <= OUT_MAX_FRAME);
            match f.kind {
                TYPE_HEADERS => {
                    assert!(cur.is_none());
                    assert_eq!(f.flags & FLAG_PADDED, 0, "no padding is emitted");
                    let start = if f.flags & FLAG_PRIORITY != 0 { 5 } else { 0 };
                    cur = Some((f.stream_id, f.flags, f.payload[start..].to_vec()));
                }
                TYPE_CONTINUATION => {
                    let c = cur.as_mut().unwrap();
                    assert_eq!(c.0, f.stream_id);
                    c.2.extend_from_slice(&f.payload);
                }
                _ => {
                    assert!(cur.is_none());
                    continue;
                }
            }
            if f.flags & FLAG_END_HEADERS != 0 {
                let (id, flags, block) = cur.take().unwrap();
                // Only "literal without indexing, new name" comes out.
                let fields = dec.decode(&block).unwrap();
                let mut reencoded = Vec::new();
                for (n, v) in &fields {
                    encode_literal_without_indexing(n, v, &mut reencoded);
                }
                assert_eq!(reencoded, block);
                blocks.push((id, flags, fields));
            }
        }
        assert!(cur.is_none());
        blocks
    }

    fn owned(fields: &[(&str, &str)]) -> Fields {
        fields
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn integer_encoding_matches_rfc7541_c1() {
        // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix;
        // C.1.3: 42 with an 8-bit prefix.
        let mut out = Vec::new();
        encode_integer(10, 5, 0, &mut out);
        assert_eq!(out, [0b01010]);
        out.clear();
        encode_integer(1337, 5, 0, &mut out);
        assert_eq!(out, [0b11111, 0b10011010, 0b00001010]);
        out.clear();
        encode_integer(42, 8, 0, &mut out);
        assert_eq!(out, [42]);
        out.clear();
        encode_integer(127, 7, 0, &mut out);
        assert_eq!(out, [0x7f, 0x00]);
    }

    /// Test 1: Huffman/indexed block split over padded HEADERS + CONTINUATION.
    #[test]
    fn rewrites_socket_path_authority_across_continuation_with_padding() {
        let fields = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/runtime.v1.RuntimeService/Version"),
            (":authority", "/run/x.sock"),
            ("content-type", "application/grpc"),
            ("user-agent", "grpc-go/1.59.0"),
            ("te", "trailers"),
        ];
        let mut enc = httlib_hpack::Encoder::default();
        let block = client_encode(&mut enc, &fields);
        let (a, b) = block.split_at(block.len() / 2);

        let mut input = PREFACE.to_vec();
        // SETTINGS with one parameter (INITIAL_WINDOW_SIZE = 1 MiB).
        input.extend(frame_bytes(TYPE_SETTINGS, 0, 0, &[0, 4, 0, 0x10, 0, 0]));
        // HEADERS: PADDED (3 bytes of padding), no END_HEADERS.
        let mut p = vec![3u8];
        p.extend_from_slice(a);
        p.extend_from_slice(&[0, 0, 0]);
        input.extend(frame_bytes(TYPE_HEADERS, FLAG_PADDED, 1, &p));
        input.extend(frame_bytes(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, b));
        let data_a = frame_bytes(TYPE_DATA, 0, 1, b"\0\0\0\0\x05hello");
        let data_b = frame_bytes(TYPE_DATA, FLAG_END_STREAM | FLAG_PADDED, 1, b"\x02xy\0\0");
        input.extend(&data_a);
        input.extend(&data_b);

        for step in [1, 7, 9, 4096] {
            let (out, rewritten) = run_filter(&input, step).unwrap();
            assert_eq!(rewritten, 1);
            let frames = parse_output(&out);
            // SETTINGS and both DATA frames are byte-identical.
            assert_eq!(
                frame_bytes(frames[0].kind, frames[0].flags, 0, &frames[0].payload),
                frame_bytes(TYPE_SETTINGS, 0, 0, &[0, 4, 0, 0x10, 0, 0])
            );
            let tail = &frames[frames.len() - 2..];
            assert_eq!(
                frame_bytes(tail[0].kind, tail[0].flags, 1, &tail[0].payload),
                data_a
            );
            assert_eq!(
                frame_bytes(tail[1].kind, tail[1].flags, 1, &tail[1].payload),
                data_b
            );
            assert!(out.ends_with(&[data_a.clone(), data_b.clone()].concat()));

            let blocks = decode_blocks(&frames);
            assert_eq!(blocks.len(), 1);
            let (id, flags, decoded) = &blocks[0];
            assert_eq!(*id, 1);
            assert_eq!(flags & FLAG_END_STREAM, 0);
            let mut expected = owned(&fields);
            expected[3].1 = b"localhost".to_vec();
            assert_eq!(decoded, &expected);
        }
    }

    /// Test 2: the second block refers to dynamic-table entries made by the
    /// first (and starts with a table size update).
    #[test]
    fn follows_client_dynamic_table_across_blocks() {
        let first = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/runtime.v1.RuntimeService/ListPodSandbox"),
            (":authority", "%2Frun%2Fpodrun%2Fcri.sock"),
            ("content-type", "application/grpc"),
            ("x-custom", "some-long-value-that-gets-indexed"),
        ];
        let second = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/runtime.v1.RuntimeService/ListPodSandbox"),
            (":authority", "%2Frun%2Fpodrun%2Fcri.sock"),
            ("content-type", "application/grpc"),
            ("x-custom", "some-long-value-that-gets-indexed"),
            ("grpc-timeout", "2S"),
        ];
        let mut enc = httlib_hpack::Encoder::default();
        let b1 = client_encode(&mut enc, &first);
        let mut b2 = Vec::new();
        enc.update_max_dynamic_size(2048, &mut b2).unwrap();
        b2.extend(client_encode(&mut enc, &second));
        // The second block leans on the first one's dynamic-table entries: a
        // fresh encoder needs far more bytes for the same fields.
        let fresh = client_encode(&mut httlib_hpack::Encoder::default(), &second);
        assert!(
            b2.len() + 30 < fresh.len(),
            "second block should be indexed: {b2:?}"
        );

        let mut input = PREFACE.to_vec();
        input.extend(frame_bytes(TYPE_SETTINGS, 0, 0, &[]));
        input.extend(frame_bytes(TYPE_HEADERS, FLAG_END_HEADERS, 1, &b1));
        // With PRIORITY: the 5 bytes must survive.
        let mut p = vec![0x80, 0, 0, 1, 15];
        p.extend_from_slice(&b2);
        input.extend(frame_bytes(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM | FLAG_PRIORITY,
            3,
            &p,
        ));

        let (out, rewritten) = run_filter(&input, 5).unwrap();
        assert_eq!(rewritten, 2);
        let frames = parse_output(&out);
        let h3 = frames.iter().find(|f| f.stream_id == 3).unwrap();
        assert_eq!(&h3.payload[..5], &[0x80, 0, 0, 1, 15]);
        let blocks = decode_blocks(&frames);
        assert_eq!(blocks.len(), 2);
        let mut e1 = owned(&first);
        e1[3].1 = b"localhost".to_vec();
        let mut e2 = owned(&second);
        e2[3].1 = b"localhost".to_vec();
        assert_eq!(blocks[0].0, 1);
        assert_eq!(blocks[0].2, e1);
        assert_eq!(blocks[1].0, 3);
        assert_eq!(
            blocks[1].1 & (FLAG_END_STREAM | FLAG_PRIORITY),
            FLAG_END_STREAM | FLAG_PRIORITY
        );
        assert_eq!(blocks[1].2, e2);
    }

    /// RFC 7541 Appendix C.4: three requests with Huffman coding sharing a
    /// dynamic table; valid authorities are left alone.
    #[test]
    fn rfc7541_c4_requests_pass_unchanged() {
        fn hex(s: &str) -> Vec<u8> {
            let s: String = s.split_whitespace().collect();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        }
        let c41 = hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff");
        let c42 = hex("8286 84be 5886 a8eb 1064 9cbf");
        let c43 = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
        let mut input = PREFACE.to_vec();
        for (i, b) in [c41, c42, c43].iter().enumerate() {
            input.extend(frame_bytes(
                TYPE_HEADERS,
                FLAG_END_HEADERS | FLAG_END_STREAM,
                1 + 2 * i as u32,
                b,
            ));
        }
        let (out, rewritten) = run_filter(&input, 3).unwrap();
        assert_eq!(rewritten, 0);
        let blocks = decode_blocks(&parse_output(&out));
        let base = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ];
        assert_eq!(blocks[0].2, owned(&base));
        let mut e2 = owned(&base);
        e2.push((b"cache-control".to_vec(), b"no-cache".to_vec()));
        assert_eq!(blocks[1].2, e2);
        let e3 = owned(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ]);
        assert_eq!(blocks[2].2, e3);
    }

    #[test]
    fn large_block_is_split_into_continuations() {
        let big = "v".repeat(40_000);
        let fields = [
            (":method", "GET"),
            (":authority", "/run/x.sock"),
            ("x-big", big.as_str()),
        ];
        let mut enc = httlib_hpack::Encoder::default();
        let block = client_encode(&mut enc, &fields);
        let mut input = PREFACE.to_vec();
        // The client may send large frames if the server allowed it.
        input.extend(frame_bytes(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            1,
            &block,
        ));
        let (out, _) = run_filter(&input, 8192).unwrap();
        let frames = parse_output(&out);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].kind, TYPE_HEADERS);
        assert_eq!(frames[0].flags, FLAG_END_STREAM);
        assert_eq!(frames[1].kind, TYPE_CONTINUATION);
        assert_eq!(frames[1].flags, 0);
        assert_eq!(frames[2].flags, FLAG_END_HEADERS);
        let blocks = decode_blocks(&frames);
        let mut e = owned(&fields);
        e[1].1 = b"localhost".to_vec();
        assert_eq!(blocks[0].2, e);
    }

    #[test]
    fn malformed_input_is_an_error() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "bad hpack index",
                frame_bytes(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[0xff, 0x7f]),
            ),
            (
                "padding too long",
                frame_bytes(TYPE_HEADERS, FLAG_END_HEADERS | FLAG_PADDED, 1, &[9, 0x82]),
            ),
            (
                "stray continuation",
                frame_bytes(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &[0x82]),
            ),
            (
                "interleaved frame",
                [
                    frame_bytes(TYPE_HEADERS, 0, 1, &[0x82]),
                    frame_bytes(TYPE_DATA, 0, 1, b"x"),
                ]
                .concat(),
            ),
            (
                "continuation on other stream",
                [
                    frame_bytes(TYPE_HEADERS, 0, 1, &[0x82]),
                    frame_bytes(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &[0x84]),
                ]
                .concat(),
            ),
            (
                "table size over limit",
                frame_bytes(TYPE_HEADERS, FLAG_END_HEADERS, 1, &{
                    let mut v = Vec::new();
                    encode_integer(1 << 20, 5, 0x20, &mut v);
                    v.push(0x82);
                    v
                }),
            ),
            (
                "header block too large",
                [
                    frame_bytes(TYPE_HEADERS, 0, 1, &vec![0x82; 600_000]),
                    frame_bytes(TYPE_CONTINUATION, 0, 1, &vec![0x82; 600_000]),
                ]
                .concat(),
            ),
        ];
        for (what, frames) in cases {
            let input = [PREFACE.as_slice(), &frames].concat();
            let err = run_filter(&input, 4096).expect_err(what);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}");
        }
    }

    /// One-byte references to a large dynamic-table entry expand a lot; the
    /// filter must not expand a whole read chunk of them at once.
    #[test]
    fn output_stays_bounded_under_expansion() {
        let big = "b".repeat(4000);
        let mut enc = httlib_hpack::Encoder::default();
        let first = client_encode(&mut enc, &[(":method", "GET"), ("x-big", big.as_str())]);
        let again = client_encode(&mut enc, &[(":method", "GET"), ("x-big", big.as_str())]);
        assert_eq!(again.len(), 2, "second time is two indexed references");
        let mut input = PREFACE.to_vec();
        input.extend(frame_bytes(TYPE_HEADERS, FLAG_END_HEADERS, 1, &first));
        let frames = 1000;
        for i in 0..frames {
            input.extend(frame_bytes(
                TYPE_HEADERS,
                FLAG_END_HEADERS,
                3 + 2 * i,
                &again,
            ));
        }
        let mut f = Filter::new();
        f.input.extend_from_slice(&input);
        let mut total = 0;
        let mut rounds = 0;
        loop {
            f.process().unwrap();
            if f.output.is_empty() {
                break;
            }
            assert!(f.output.len() < OUTPUT_HIGH_WATER + 8 * 1024);
            total += f.output.split().len();
            rounds += 1;
        }
        assert!(f.input.is_empty());
        assert!(rounds > 10);
        assert!(total > (frames as usize) * 4000);
    }

    /// `poll_read` with tiny read buffers gives the same bytes as the filter.
    #[tokio::test]
    async fn poll_read_serves_filtered_bytes_in_small_reads() {
        let mut enc = httlib_hpack::Encoder::default();
        let block = client_encode(
            &mut enc,
            &[(":method", "GET"), (":authority", "/run/x.sock")],
        );
        let mut input = PREFACE.to_vec();
        input.extend(frame_bytes(TYPE_SETTINGS, 0, 0, &[]));
        input.extend(frame_bytes(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block));
        input.extend(frame_bytes(TYPE_DATA, FLAG_END_STREAM, 1, &[7; 40_000]));
        let (expected, _) = run_filter(&input, 4096).unwrap();

        let (mut client, server) = tokio::io::duplex(1024);
        let writer = tokio::spawn(async move {
            client.write_all(&input).await.unwrap();
            client.shutdown().await.unwrap();
            client
        });
        let mut front = AuthorityFront::new(server);
        let mut got = Vec::new();
        let mut small = [0u8; 13];
        loop {
            let n = front.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, expected);
        assert_eq!(front.rewritten(), 1);
    }

    /// Garbage header blocks give errors or output, never a panic.
    #[test]
    fn random_header_blocks_do_not_panic() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let block: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let flags = FLAG_END_HEADERS | (next() as u8 & (FLAG_PADDED | FLAG_PRIORITY));
            let input = [
                PREFACE.as_slice(),
                &frame_bytes(TYPE_HEADERS, flags, 1, &block),
            ]
            .concat();
            let _ = run_filter(&input, 64);
        }
    }

    /// A malformed frame makes `poll_read` fail, and it stays failed.
    #[tokio::test]
    async fn poll_read_fails_on_malformed_frames() {
        let input = [
            PREFACE.as_slice(),
            &frame_bytes(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &[0x82]),
            &frame_bytes(TYPE_SETTINGS, 0, 0, &[]),
        ]
        .concat();
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(&input).await.unwrap();
        let mut front = AuthorityFront::new(server);
        let mut buf = [0u8; 64];
        // Bytes filtered before the bad frame may or may not come out first.
        let err = loop {
            match front.read(&mut buf).await {
                Ok(n) => assert!(n > 0, "EOF instead of an error"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = front.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn non_http2_bytes_pass_through() {
        let req = b"GET / HTTP/1.1\r\nHost: /run/x.sock\r\n\r\n";
        let (out, n) = run_filter(req, 3).unwrap();
        assert_eq!(out, req);
        assert_eq!(n, 0);
    }

    #[test]
    fn front_is_send_and_static() {
        fn check<T: Send + Unpin + 'static>() {}
        check::<AuthorityFront<tokio::io::DuplexStream>>();
        check::<AuthorityFront<tokio::net::UnixStream>>();
    }

    /// The client side of test 3: preface, empty SETTINGS, SETTINGS ACK, and a
    /// GET with a %-escaped socket path as authority (END_STREAM).
    fn raw_client_request() -> Vec<u8> {
        let mut block = Vec::new();
        block.push(0x82); // :method GET (static index 2)
        block.push(0x86); // :scheme http (static index 6)
        block.push(0x84); // :path / (static index 4)
                          // :authority with incremental indexing, name from static index 1.
        encode_integer(1, 6, 0x40, &mut block);
        encode_string(b"%2Frun%2Fx.sock", &mut block);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame_bytes(TYPE_SETTINGS, 0, 0, &[]));
        bytes.extend(frame_bytes(TYPE_SETTINGS, 0x1, 0, &[]));
        bytes.extend(frame_bytes(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            1,
            &block,
        ));
        bytes
    }

    /// Reads server frames until EOF or timeout; returns them.
    async fn read_server_frames(
        mut rd: tokio::io::ReadHalf<tokio::io::DuplexStream>,
    ) -> Vec<Frame> {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), rd.read_to_end(&mut buf)).await;
        let mut frames = Vec::new();
        let mut rest = buf.as_slice();
        while rest.len() >= 9 {
            let head = FrameHead::parse(&rest[..9]);
            if rest.len() < 9 + head.len {
                break;
            }
            frames.push(Frame {
                kind: head.kind,
                flags: head.flags,
                stream_id: head.stream_id,
                payload: rest[9..9 + head.len].to_vec(),
            });
            rest = &rest[9 + head.len..];
        }
        frames
    }

    /// Test 3a: with the front, a real h2 server accepts the request and sees
    /// `localhost`.
    #[tokio::test]
    async fn h2_server_accepts_request_through_front() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (rd, mut wr) = tokio::io::split(client);
        let reader = tokio::spawn(read_server_frames(rd));
        wr.write_all(&raw_client_request()).await.unwrap();

        let mut conn = h2::server::handshake(AuthorityFront::new(server))
            .await
            .unwrap();
        let (req, mut respond) = tokio::time::timeout(Duration::from_secs(5), conn.accept())
            .await
            .expect("server got no request in time")
            .expect("connection closed without a request")
            .expect("request rejected");
        assert_eq!(req.uri().authority().map(|a| a.as_str()), Some("localhost"));
        assert_eq!(req.uri().path(), "/");
        assert_eq!(req.method(), http::Method::GET);
        respond
            .send_response(http::Response::new(()), true)
            .unwrap();
        // Drive the connection so the response goes out, then close.
        let _ = tokio::time::timeout(Duration::from_millis(300), conn.accept()).await;
        drop(conn);
        drop(wr);
        let frames = reader.await.unwrap();
        assert!(
            frames
                .iter()
                .any(|f| f.kind == TYPE_HEADERS && f.stream_id == 1),
            "client got a response: {frames:?}"
        );
        assert!(
            !frames.iter().any(|f| f.kind == TYPE_RST_STREAM),
            "{frames:?}"
        );
    }

    /// Test 3b: the same bytes without the front are rejected by h2
    /// (RST_STREAM PROTOCOL_ERROR, no request) — the front is needed.
    #[tokio::test]
    async fn h2_server_rejects_request_without_front() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (rd, mut wr) = tokio::io::split(client);
        let reader = tokio::spawn(read_server_frames(rd));
        wr.write_all(&raw_client_request()).await.unwrap();

        let mut conn = h2::server::handshake(server).await.unwrap();
        // Polling `accept` drives the connection: h2 reads the HEADERS, resets
        // the stream and waits for more.  No request must come out of it.
        let accepted = tokio::time::timeout(Duration::from_millis(500), conn.accept()).await;
        assert!(
            !matches!(accepted, Ok(Some(Ok(_)))),
            "h2 unexpectedly accepted the request; the front would be unneeded"
        );
        drop(conn);
        drop(wr);
        let frames = reader.await.unwrap();
        let rst = frames
            .iter()
            .find(|f| f.kind == TYPE_RST_STREAM && f.stream_id == 1)
            .expect("h2 sent no RST_STREAM");
        assert_eq!(rst.payload, [0, 0, 0, 1], "error code PROTOCOL_ERROR");
    }

    /// A real h2 client (Huffman, dynamic table) through the front to a real
    /// h2 server: several requests arrive with every header intact.
    #[tokio::test]
    async fn h2_client_to_h2_server_is_transparent() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut conn = h2::server::handshake(AuthorityFront::new(server_io))
                .await
                .unwrap();
            let mut seen = Vec::new();
            while let Some(r) = conn.accept().await {
                let (req, mut respond) = r.unwrap();
                seen.push(req.headers().clone());
                seen.last_mut().unwrap().insert(
                    "x-seen-authority",
                    req.uri().authority().unwrap().as_str().parse().unwrap(),
                );
                respond
                    .send_response(http::Response::new(()), true)
                    .unwrap();
            }
            seen
        });
        let (mut h2c, conn) = h2::client::handshake(client_io).await.unwrap();
        let conn_task = tokio::spawn(conn);
        for i in 0..5 {
            let req = http::Request::builder()
                .method("POST")
                .uri("http://example.com:8080/runtime.v1.RuntimeService/Version")
                .header("content-type", "application/grpc")
                .header("x-request", format!("n{i}"))
                .header("x-repeat", "the-same-value-every-time")
                .body(())
                .unwrap();
            h2c = h2c.ready().await.unwrap();
            let (resp, _) = h2c.send_request(req, true).unwrap();
            assert_eq!(resp.await.unwrap().status(), http::StatusCode::OK);
        }
        drop(h2c);
        let seen = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        conn_task.abort();
        assert_eq!(seen.len(), 5);
        for (i, h) in seen.iter().enumerate() {
            assert_eq!(h["x-seen-authority"], "example.com:8080");
            assert_eq!(h["content-type"], "application/grpc");
            assert_eq!(h["x-request"], format!("n{i}").as_str());
            assert_eq!(h["x-repeat"], "the-same-value-every-time");
        }
    }
}
