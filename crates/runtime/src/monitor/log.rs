//! One container output stream copied into its log file in the CRI log format
//! kubelet reads: `<RFC3339Nano time> <stdout|stderr> <F|P> <content>\n`. A line
//! longer than [`MAX_LINE`] is cut into `P` (partial) pieces, the last piece `F`;
//! bytes left without a newline at end-of-file are written as `P`.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

/// containerd's cap on one log line (its reader's buffer size).
pub const MAX_LINE: usize = 16 * 1024;

/// The time as CRI logs and exit records write it (`2016-10-06T00:17:09.669794202Z`).
pub fn now_rfc3339_nano() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A pipe the container writes one stream to, and what is buffered of it.
#[derive(Debug)]
pub struct LogStream {
    /// The pipe's read end (non-blocking); `None` once it reached end-of-file.
    pub pipe: Option<OwnedFd>,
    /// `stdout` or `stderr`.
    pub name: &'static str,
    /// Attached clients' pipes (non-blocking write ends): each gets what is
    /// read from now on, raw; one that cannot take a chunk at once is
    /// dropped (the monitor never waits for a client), and all are closed
    /// at end-of-file.
    pub subscribers: Vec<OwnedFd>,
    buf: Vec<u8>,
}

impl LogStream {
    /// A stream read from `pipe`.
    pub fn new(pipe: OwnedFd, name: &'static str) -> Self {
        Self {
            pipe: Some(pipe),
            name,
            subscribers: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// Read what the pipe holds and write every complete line to `log`; on
    /// end-of-file write what is left and close the pipe.
    ///
    /// Never inlined, and its buffer small: a 64 KiB buffer here, inlined into
    /// the monitor's event loop, made the loop's frame 64 KiB larger, and the
    /// stack probes on entering it dirtied all of it in every monitor (+64 KiB
    /// per pod, whether its containers wrote anything or not).
    #[inline(never)]
    pub fn pump(&mut self, log: &mut File) -> std::io::Result<()> {
        let Some(fd) = self.pipe.as_ref().map(|p| p.as_raw_fd()) else {
            return Ok(());
        };
        let mut chunk = [0u8; 8 * 1024];
        loop {
            // SAFETY: `chunk` is a writable buffer of the length passed; fd is open.
            let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if n > 0 {
                self.fan_out(&chunk[..n as usize]);
                self.buf.extend_from_slice(&chunk[..n as usize]);
                self.write_lines(log, false)?;
                continue;
            }
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return Ok(()),
                    _ => {}
                }
            }
            // End-of-file (or a broken pipe): flush the rest as partial.
            self.write_lines(log, true)?;
            self.pipe = None;
            self.subscribers.clear();
            return Ok(());
        }
    }

    /// Give `data` to every attached client that takes all of it now.
    fn fan_out(&mut self, data: &[u8]) {
        self.subscribers.retain(|fd| {
            // SAFETY: `data` is a readable buffer of the length passed; fd is open.
            let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
            n == data.len() as isize
        });
    }

    fn write_lines(&mut self, log: &mut File, eof: bool) -> std::io::Result<()> {
        let mut out = Vec::new();
        let mut start = 0;
        let time = now_rfc3339_nano();
        loop {
            let rest = &self.buf[start..];
            let (len, tag, skip) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) if i <= MAX_LINE => (i, 'F', 1),
                _ if rest.len() >= MAX_LINE => (MAX_LINE, 'P', 0),
                _ if eof && !rest.is_empty() => (rest.len(), 'P', 0),
                _ => break,
            };
            write!(out, "{time} {} {tag} ", self.name)?;
            out.extend_from_slice(&rest[..len]);
            out.push(b'\n');
            start += len + skip;
        }
        self.buf.drain(..start);
        if !out.is_empty() {
            log.write_all(&out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn lines(input: &[&[u8]], eof: bool) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = File::create(&path).unwrap();
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let mut s = LogStream::new(r, "stdout");
        for part in input {
            s.buf.extend_from_slice(part);
            s.write_lines(&mut log, false).unwrap();
        }
        if eof {
            s.write_lines(&mut log, true).unwrap();
        }
        let mut text = String::new();
        File::open(&path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text.lines()
            .map(|l| l.split_once(' ').unwrap().1.to_string())
            .collect()
    }

    #[test]
    fn full_partial_and_long_lines() {
        assert_eq!(
            lines(&[b"a\nb", b"c\n"], false),
            ["stdout F a", "stdout F bc"]
        );
        assert_eq!(
            lines(&[b"x\n", b"tail"], true),
            ["stdout F x", "stdout P tail"]
        );
        assert_eq!(lines(&[b"\n"], false), ["stdout F "]);
        let long = vec![b'y'; MAX_LINE + 3];
        let got = lines(&[&long, b"\n"], false);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], format!("stdout P {}", "y".repeat(MAX_LINE)));
        assert_eq!(got[1], "stdout F yyy");
    }
}
