//! One container output stream copied into its log file in the CRI log format
//! kubelet reads: `<RFC3339Nano time> <stdout|stderr> <F|P> <content>\n`. A line
//! longer than [`MAX_LINE`] is cut into `P` (partial) pieces, the last piece `F`;
//! bytes left without a newline at end-of-file are written as `P`.
//!
//! **Rotation** ([`LogFile`], when the container's plan has a
//! [`LogRotation`]: podrun's own pod manager): kubelet's container log
//! manager's rules (pkg/kubelet/logs/container_log_manager.go), applied by
//! the writer itself when a write would take the live file past the size
//! (no periodic check): the live file is renamed `<path>.<YYYYMMDD-HHMMSS>`
//! (UTC) and a new one opened; every rotated file but the newest is
//! gzip-compressed to `<name>.gz`; the oldest are removed so that at most
//! `max_files` remain, the live one included. The names have a second's
//! resolution, so a file rotates at most once a second (it may outgrow the
//! size by what the container writes in that second). Under the CRI the plan
//! has none: kubelet rotates, and asks for a reopen.
//!
//! **Compression** runs in a short-lived forked child (niced), never in the
//! monitor: the monitor is single-threaded, and gzip of 10 MiB takes ~100 ms
//! of CPU during which no container's output would be read; and the deflate
//! code and its ~300 KiB of state would stay mapped and dirty in every
//! monitor for the pod's life (the monitor's budget is 0.4 MiB PSS per pod).
//! The child writes `<name>.gz.tmp`, renames it to `<name>.gz` and removes
//! `<name>`; the monitor reaps it with the containers' orphans. The agent
//! could compress too, but the monitor runs while no agent does, and the
//! agent would have to find rotations by polling.
//!
//! **A full disk** never stops the container: a write that fails is undone
//! (the file cut back to its last whole line) and its lines are counted
//! ([`LogFile::dropped_lines`]), which the monitor reports in its state.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::LogRotation;

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
    pub fn pump(&mut self, log: &mut LogFile) -> std::io::Result<()> {
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

    fn write_lines(&mut self, log: &mut LogFile, eof: bool) -> std::io::Result<()> {
        let mut out = Vec::new();
        let mut lines = 0;
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
            lines += 1;
            start += len + skip;
        }
        self.buf.drain(..start);
        if !out.is_empty() {
            log.write(&out, lines);
        }
        Ok(())
    }
}

/// A container's log file as the monitor writes it: where it is, its size,
/// its rotation and what a full disk cost.
#[derive(Debug)]
pub struct LogFile {
    /// The live file's path (empty: none, the output is dropped).
    path: PathBuf,
    file: File,
    /// What the live file holds (as far as this writer knows).
    size: u64,
    rotation: Option<LogRotation>,
    /// The stamp of the last rotation (one a second at most).
    last_stamp: String,
    /// The compressing child while it runs.
    compressor: Option<i32>,
    dropped_lines: u64,
}

impl LogFile {
    /// Open (appending, creating it and its directory) a container's log
    /// file. A container without a log path (a CRI client that asked for
    /// none) has its output read and dropped.
    pub fn open(path: &Path, rotation: Option<LogRotation>) -> std::io::Result<Self> {
        let (file, rotation) = if path.as_os_str().is_empty() {
            (File::options().append(true).open("/dev/null")?, None)
        } else {
            (open_live(path)?, rotation)
        };
        let size = file.metadata().map_or(0, |m| m.len());
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
            last_stamp: String::new(),
            compressor: None,
            dropped_lines: 0,
        })
    }

    /// Open the file at its path again (CRI ReopenContainerLog: kubelet
    /// renamed it; or it was deleted).
    pub fn reopen(&mut self) -> std::io::Result<()> {
        let rotation = self.rotation;
        let (compressor, dropped, stamp) = (
            self.compressor,
            self.dropped_lines,
            std::mem::take(&mut self.last_stamp),
        );
        *self = LogFile::open(&self.path.clone(), rotation)?;
        self.compressor = compressor;
        self.dropped_lines = dropped;
        self.last_stamp = stamp;
        Ok(())
    }

    /// Lines lost because they could not be written (a full disk).
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }

    /// The compressing child `pid` ended (reaped by the monitor); whether
    /// it was this file's.
    pub fn compressor_exited(&mut self, pid: i32) -> bool {
        let ours = self.compressor == Some(pid);
        if ours {
            self.compressor = None;
        }
        ours
    }

    /// Append `out` (`lines` whole CRI lines), rotating first when it would
    /// take the live file past the size. A write that fails (a full disk) is
    /// undone and its lines counted as dropped: the container goes on.
    pub fn write(&mut self, out: &[u8], lines: u64) {
        if let Some(r) = self.rotation {
            if self.size > 0 && self.size + out.len() as u64 > r.max_size {
                self.rotate(r);
            }
        }
        match self.file.write_all(out) {
            Ok(()) => self.size += out.len() as u64,
            Err(e) => {
                if self.dropped_lines == 0 {
                    tracing::warn!(
                        "log {}: write: {e}: dropping lines until it can be written",
                        self.path.display()
                    );
                }
                self.dropped_lines += lines;
                // A part may have been written: no torn line stays.
                let _ = self.file.set_len(self.size);
            }
        }
    }

    /// Rename the live file to its rotated name and open a new one; then
    /// remove the oldest files past the count and have a child compress the
    /// older rotated files. A failure leaves the writer on the file it had.
    fn rotate(&mut self, r: LogRotation) {
        let stamp = chrono::Utc::now().format(STAMP).to_string();
        if stamp == self.last_stamp {
            return; // once a second: the names have a second's resolution
        }
        self.last_stamp = stamp;
        let rotated = rotated_name(&self.path, &self.last_stamp);
        let gz = gz_name(&rotated);
        if rotated.exists() || gz.exists() {
            return;
        }
        match std::fs::rename(&self.path, &rotated) {
            Ok(()) => {}
            // Deleted under the container: the new file replaces it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!("log {}: rotate: {e}", self.path.display());
                return;
            }
        }
        match open_live(&self.path) {
            Ok(file) => {
                self.file = file;
                self.size = 0;
            }
            Err(e) => {
                // The rotated file, still open, takes the lines meanwhile.
                tracing::warn!("log {}: rotate: open: {e}", self.path.display());
                return;
            }
        }
        let listing = list_rotated(&self.path);
        let plan = prune(&listing.logs, r.max_files);
        for path in &plan.remove {
            let _ = std::fs::remove_file(path);
        }
        if self.compressor.is_none() {
            // Leftovers of a child that died (or of a monitor that did).
            for path in &listing.leftovers {
                let _ = std::fs::remove_file(path);
            }
            if !plan.compress.is_empty() {
                match super::forked::spawn(move || compress_all(&plan.compress)) {
                    Ok(pid) => self.compressor = Some(pid),
                    Err(e) => tracing::warn!("log {}: compress: {e}", self.path.display()),
                }
            }
        }
    }
}

fn open_live(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::options().create(true).append(true).open(path)
}

/// The rotated files' time stamp (kubelet's `20060102-150405`).
pub const STAMP: &str = "%Y%m%d-%H%M%S";

/// The name live file `live` gets when rotated at `stamp` (kubelet's
/// `<log path>.<timestamp>`).
pub fn rotated_name(live: &Path, stamp: &str) -> PathBuf {
    let mut name = live.as_os_str().to_owned();
    name.push(".");
    name.push(stamp);
    PathBuf::from(name)
}

fn gz_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

/// One rotated file of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatedLog {
    /// The file.
    pub path: PathBuf,
    /// When it was rotated (`YYYYMMDD-HHMMSS`).
    pub stamp: String,
    /// gzip-compressed (`.gz`).
    pub compressed: bool,
}

/// What [`list_rotated`] finds beside a live file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotated {
    /// The rotated files, oldest first; of a file there both as itself and
    /// compressed, the compressed one (complete: it is renamed into place
    /// once written).
    pub logs: Vec<RotatedLog>,
    /// What a compression left: its temporary files, and files whose
    /// compressed copy exists.
    pub leftovers: Vec<PathBuf>,
}

/// The rotated files of live file `live`, by their names.
pub fn list_rotated(live: &Path) -> Rotated {
    let (Some(dir), Some(base)) = (live.parent(), live.file_name().and_then(|n| n.to_str())) else {
        return Rotated::default();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Rotated::default();
    };
    let names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    classify(dir, base, &names)
}

/// [`list_rotated`]'s decision on the names in the directory.
fn classify(dir: &Path, base: &str, names: &[String]) -> Rotated {
    let mut out = Rotated::default();
    let prefix = format!("{base}.");
    let is_stamp = |s: &str| {
        let b = s.as_bytes();
        b.len() == 15
            && b[8] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 8 || c.is_ascii_digit())
    };
    let mut found: Vec<RotatedLog> = Vec::new();
    for name in names {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let (stamp, compressed) = match rest.strip_suffix(".gz") {
            Some(stamp) => (stamp, true),
            None => (rest, false),
        };
        if is_stamp(stamp) {
            found.push(RotatedLog {
                path: dir.join(name),
                stamp: stamp.to_string(),
                compressed,
            });
        } else if rest.ends_with(".tmp") && is_stamp(&rest[..rest.len().min(15)]) {
            out.leftovers.push(dir.join(name));
        }
    }
    found.sort_by(|a, b| (&a.stamp, !a.compressed).cmp(&(&b.stamp, !b.compressed)));
    for log in found {
        if out.logs.last().is_some_and(|l| l.stamp == log.stamp) {
            out.leftovers.push(log.path);
        } else {
            out.logs.push(log);
        }
    }
    out
}

/// What to do with the rotated files after a rotation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruning {
    /// The oldest, past the count.
    pub remove: Vec<PathBuf>,
    /// The kept ones to compress: every one but the newest, not yet compressed.
    pub compress: Vec<PathBuf>,
}

/// kubelet's rules on `rotated` (oldest first) with `max_files` kept, the
/// live file included (at least 2).
pub fn prune(rotated: &[RotatedLog], max_files: u32) -> Pruning {
    let keep = (max_files.max(2) - 1) as usize;
    let cut = rotated.len().saturating_sub(keep);
    let (old, kept) = rotated.split_at(cut);
    Pruning {
        remove: old.iter().map(|l| l.path.clone()).collect(),
        compress: kept
            .iter()
            .take(kept.len().saturating_sub(1))
            .filter(|l| !l.compressed)
            .map(|l| l.path.clone())
            .collect(),
    }
}

/// Compress each file to `<name>.gz` (in the compressing child); the
/// number that failed.
fn compress_all(paths: &[PathBuf]) -> i32 {
    // SAFETY: setpriority takes integers only; this child is the caller.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    let mut failed = 0;
    for path in paths {
        if compress(path).is_err() {
            failed += 1;
        }
    }
    failed
}

/// gzip `path` to `<path>.gz` through `<path>.gz.tmp`, then remove `path`.
pub fn compress(path: &Path) -> std::io::Result<()> {
    let gz = gz_name(path);
    let mut tmp = gz.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut src = File::open(path)?;
        // Level 1, not gzip's default 6 (kubelet's): a rotated log is read
        // rarely, and bench/logs.sh measured the compression as most of what
        // rotation costs.
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&tmp)?, flate2::Compression::fast());
        std::io::copy(&mut src, &mut enc)?;
        enc.finish()?.sync_all()?;
        std::fs::rename(&tmp, &gz)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn lines(input: &[&[u8]], eof: bool) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = LogFile::open(&path, None).unwrap();
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

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rotated_files_are_known_by_their_stamps() {
        let dir = Path::new("/l");
        let got = classify(
            dir,
            "0.log",
            &names(&[
                "0.log",
                "1.log",
                "0.log.20240101-000003",
                "0.log.20240101-000001.gz",
                "0.log.20240101-000002",
                "0.log.20240101-000002.gz",
                "0.log.20240101-000004.gz.tmp",
                "0.log.2024",
                "1.log.20240101-000009",
                "0.logx.20240101-000009",
            ]),
        );
        let stamps: Vec<(&str, bool)> = got
            .logs
            .iter()
            .map(|l| (l.stamp.as_str(), l.compressed))
            .collect();
        assert_eq!(
            stamps,
            [
                ("20240101-000001", true),
                // Both there (a compression cut short): the complete .gz.
                ("20240101-000002", true),
                ("20240101-000003", false),
            ]
        );
        assert_eq!(
            got.leftovers,
            [
                dir.join("0.log.20240101-000004.gz.tmp"),
                dir.join("0.log.20240101-000002"),
            ]
        );
        assert_eq!(
            rotated_name(Path::new("/l/0.log"), "20240101-000003"),
            Path::new("/l/0.log.20240101-000003")
        );
    }

    #[test]
    fn pruning_keeps_max_files_and_compresses_all_but_the_newest() {
        let log = |n: u32, compressed: bool| RotatedLog {
            path: PathBuf::from(format!("r{n}")),
            stamp: format!("20240101-00000{n}"),
            compressed,
        };
        // 5 files with the live one: 4 rotated kept.
        let rotated = [
            log(1, true),
            log(2, true),
            log(3, false),
            log(4, false),
            log(5, false),
            log(6, false),
        ];
        let p = prune(&rotated, 5);
        assert_eq!(p.remove, [PathBuf::from("r1"), PathBuf::from("r2")]);
        assert_eq!(
            p.compress,
            [
                PathBuf::from("r3"),
                PathBuf::from("r4"),
                PathBuf::from("r5")
            ]
        );
        // The newest stays as it is; compressed ones are not compressed again.
        let p = prune(&[log(1, true), log(2, false)], 3);
        assert_eq!(p, Pruning::default());
        // Fewer than 2 files is 2: the live one and the newest rotated.
        let p = prune(&[log(1, false), log(2, false)], 1);
        assert_eq!(p.remove, [PathBuf::from("r1")]);
        assert!(p.compress.is_empty());
        assert_eq!(prune(&[], 5), Pruning::default());
    }

    #[test]
    fn a_rotation_renames_compresses_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("0.log");
        let rotation = LogRotation {
            max_size: 100,
            max_files: 3,
        };
        let mut log = LogFile::open(&live, Some(rotation)).unwrap();
        // Old rotated files, as earlier rotations left them.
        for stamp in ["20200101-000001", "20200101-000002"] {
            std::fs::write(rotated_name(&live, stamp), "old\n").unwrap();
        }
        let line = [b'x'; 59];
        log.write(&[&line[..], b"\n"].concat(), 1);
        log.write(&[&line[..], b"\n"].concat(), 1);
        // Rotated before the second write: one line in each.
        assert_eq!(std::fs::metadata(&live).unwrap().len(), 60);
        let listing = list_rotated(&live);
        let stamps: Vec<&str> = listing.logs.iter().map(|l| l.stamp.as_str()).collect();
        // 3 files: the live one, the new rotated one, the newest old one
        // (being compressed by the child).
        assert_eq!(stamps.len(), 2, "{listing:?}");
        assert_eq!(stamps[0], "20200101-000002");
        let pid = log.compressor.expect("a compressing child");
        let (_, status) = rustix::process::waitpid(
            rustix::process::Pid::from_raw(pid),
            rustix::process::WaitOptions::empty(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(status.exit_status(), Some(0));
        let gz = rotated_name(&live, "20200101-000002.gz");
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(&gz).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "old\n");
        assert!(!rotated_name(&live, "20200101-000002").exists());
        // Within the same second: no second rotation, the file grows.
        let stamp = log.last_stamp.clone();
        log.write(&[&line[..], b"\n"].concat(), 1);
        if log.last_stamp == stamp {
            assert_eq!(std::fs::metadata(&live).unwrap().len(), 120);
        }
    }

    #[test]
    fn a_deleted_live_file_is_made_again_at_the_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("0.log");
        let rotation = LogRotation {
            max_size: 10,
            max_files: 2,
        };
        let mut log = LogFile::open(&live, Some(rotation)).unwrap();
        log.write(b"12345678\n", 1);
        std::fs::remove_file(&live).unwrap();
        log.write(b"abcdefgh\n", 1);
        assert_eq!(std::fs::read_to_string(&live).unwrap(), "abcdefgh\n");
        assert!(list_rotated(&live).logs.is_empty());
    }

    #[test]
    fn lines_that_cannot_be_written_are_counted_not_fatal() {
        // /dev/full fails every write with ENOSPC.
        let mut log = LogFile::open(Path::new("/dev/full"), None).unwrap();
        log.write(b"a\nb\n", 2);
        log.write(b"c\n", 1);
        assert_eq!(log.dropped_lines(), 3);
    }
}
