//! Container logs as podrun keeps them, and `podrun logs` reads them.
//!
//! Each instance of a container has its own file, as kubelet names them:
//! `<pod run dir>/logs/<container>/<attempt>.log`, the attempt being the
//! restart count the instance has (0 for the first). The current instance's
//! file and the previous one's (`logs --previous`) are kept; older ones go
//! when a new instance is made ([`remove_older`]), as kubelet's garbage
//! collection keeps one dead container per name.
//!
//! The monitor rotates a live file by kubelet's rules (see
//! `podrun_runtime::monitor::log`): `<n>.log.<YYYYMMDD-HHMMSS>`, all but
//! the newest gzip-compressed (`.gz`). [`read`] reads an instance's files
//! oldest first, the rotated and compressed ones too (kubelet's `ReadLogs`
//! reads only the live file; podrun reads what it kept), with kubectl's
//! `--tail`, `--since`/`--since-time`, `--limit-bytes` and `--timestamps`;
//! [`Follower`] follows the live file across rotations (`-f`).

use chrono::{DateTime, Utc};
use podrun_runtime::monitor::log::{list_rotated, RotatedLog};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The directory of a container's logs in pod run directory `run_dir`.
pub fn container_dir(run_dir: &Path, container: &str) -> PathBuf {
    run_dir.join("logs").join(container)
}

/// The log path of a container's instance `attempt`, relative to the pod's
/// log directory (CRI's `ContainerConfig.log_path`, kubelet's
/// `<container>/<restartCount>.log`).
pub fn instance_log_path(container: &str, attempt: u32) -> String {
    format!("{container}/{attempt}.log")
}

/// The live files of a container's instances in `dir`, by attempt, oldest first.
pub fn instances(dir: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_suffix(".log")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Remove the logs (live and rotated) of the instances before `attempt - 1`
/// in `dir`: a new instance `attempt` keeps its predecessor's for
/// `--previous`. Failures are only logged.
pub fn remove_older(dir: &Path, attempt: u32) {
    let Some(keep_from) = attempt.checked_sub(1) else {
        return;
    };
    for (n, live) in instances(dir) {
        if n >= keep_from {
            continue;
        }
        let rotated = list_rotated(&live);
        let files = rotated
            .logs
            .into_iter()
            .map(|l| l.path)
            .chain(rotated.leftovers);
        for path in files.chain([live]) {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("remove old log {}: {e}", path.display());
                }
            }
        }
    }
}

/// Why a container's log cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// previous terminated container "{container}" in pod "{pod}" not found (kubelet's)
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPrevious {
        /// The container.
        container: String,
        /// The pod.
        pod: String,
    },
    /// read {path}: {source}
    #[error("read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// write the log: {0}
    #[error("write the log: {0}")]
    Write(#[source] std::io::Error),
}

/// The live file of the instance `logs` (or `logs --previous`) shows: the
/// newest, or the one before it; `None` when the container has none yet.
pub fn instance_file(
    run_dir: &Path,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<Option<PathBuf>, LogsError> {
    let mut all = instances(&container_dir(run_dir, container));
    if !previous {
        return Ok(all.pop().map(|(_, p)| p));
    }
    all.pop();
    match all.pop() {
        Some((_, p)) => Ok(Some(p)),
        None => Err(LogsError::NoPrevious {
            container: container.into(),
            pod: pod.into(),
        }),
    }
}

/// kubectl's options of `logs`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only lines at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only the last N lines (CRI lines: a partial piece counts as one).
    pub tail: Option<usize>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
    /// Prefix each line with its time.
    pub timestamps: bool,
}

/// Writes parsed log lines with [`Options`]; counts the bytes for the limit.
pub struct Printer<W: Write> {
    out: W,
    options: Options,
    written: u64,
}

impl<W: Write> Printer<W> {
    /// A printer to `out`.
    pub fn new(out: W, options: Options) -> Self {
        Printer {
            out,
            options,
            written: 0,
        }
    }

    /// The limit of bytes is reached: nothing more is printed.
    pub fn full(&self) -> bool {
        self.options.limit_bytes.is_some_and(|l| self.written >= l)
    }

    /// Print one CRI line (no newline) if it passes the time filter.
    pub fn line(&mut self, line: &str) -> Result<(), LogsError> {
        let Some(l) = crate::pods::parse_log_line(line) else {
            return Ok(());
        };
        if let Some(since) = self.options.since {
            if DateTime::parse_from_rfc3339(l.time).is_ok_and(|t| t < since) {
                return Ok(());
            }
        }
        let mut text = Vec::with_capacity(l.content.len() + 40);
        if self.options.timestamps {
            text.extend_from_slice(l.time.as_bytes());
            text.push(b' ');
        }
        text.extend_from_slice(l.content.as_bytes());
        if !l.partial {
            text.push(b'\n');
        }
        // kubelet's LimitedWriter: cut at the byte.
        let room = self
            .options
            .limit_bytes
            .map_or(u64::MAX, |l| l.saturating_sub(self.written));
        let n = text.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.out.write_all(&text[..n]).map_err(LogsError::Write)?;
        self.written += n as u64;
        Ok(())
    }

    /// Flush the output.
    pub fn flush(&mut self) -> Result<(), LogsError> {
        self.out.flush().map_err(LogsError::Write)
    }
}

/// The CRI lines of one file, gzip or not.
fn file_lines(path: &Path) -> Result<Vec<String>, LogsError> {
    let read = |source| LogsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        // Pruned or compressed since it was listed.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read(e)),
    };
    let mut text = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file).read_to_end(&mut text)
    } else {
        std::io::BufReader::new(file).read_to_end(&mut text)
    }
    .map_err(read)?;
    Ok(text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect())
}

/// Whether every line of rotated file `log` is older than `since`: it was
/// rotated (its last line written) before the second `since` falls in.
fn older_than(log: &RotatedLog, since: DateTime<Utc>) -> bool {
    chrono::NaiveDateTime::parse_from_str(&log.stamp, "%Y%m%d-%H%M%S")
        .is_ok_and(|t| t.and_utc() + chrono::Duration::seconds(1) <= since)
}

/// Print instance `live`'s log with the printer's options: its rotated files
/// oldest first, then the live file; a [`Follower`] of the live file from
/// where the printing stopped.
pub fn read<W: Write>(live: &Path, printer: &mut Printer<W>) -> Result<Follower, LogsError> {
    // The live file first: a rotation after this shows it among the rotated
    // ones too, known by its inode.
    let mut follower = Follower::file(live.to_path_buf());
    follower.open();
    let live_ino = follower.ino;
    let since = printer.options.since;
    let tail = printer.options.tail;
    let rotated: Vec<RotatedLog> = list_rotated(live)
        .logs
        .into_iter()
        .filter(|l| since.is_none_or(|s| !older_than(l, s)))
        .filter(|l| {
            live_ino.is_none() || std::fs::metadata(&l.path).ok().map(|m| m.ino()) != live_ino
        })
        .collect();
    let mut lines: Vec<String> = Vec::new();
    follower.pump_into(|l| lines.push(l.to_string()));
    // With a tail, only as many files, newest first, as hold the lines.
    let mut older: Vec<Vec<String>> = Vec::new();
    let mut count = lines.len();
    for log in rotated.iter().rev() {
        if tail.is_some_and(|n| count >= n) {
            break;
        }
        let l = file_lines(&log.path)?;
        count += l.len();
        older.push(l);
    }
    let all = older.into_iter().rev().flatten().chain(lines);
    let skip = tail.map_or(0, |n| count.saturating_sub(n));
    for line in all.skip(skip) {
        if printer.full() {
            break;
        }
        printer.line(&line)?;
    }
    printer.flush()?;
    Ok(follower)
}

/// Follows a live log file from an offset across its rotations, and (made
/// with [`Follower::container`]) a container across its instances.
pub struct Follower {
    /// The live file followed.
    pub path: PathBuf,
    /// A container's log directory: a newer instance's file is followed
    /// once this one's is read out.
    dir: Option<PathBuf>,
    file: Option<File>,
    ino: Option<u64>,
    partial: Vec<u8>,
}

impl Follower {
    /// Follow `path` from its start.
    pub fn file(path: PathBuf) -> Self {
        Follower {
            path,
            dir: None,
            file: None,
            ino: None,
            partial: Vec::new(),
        }
    }

    /// Follow a container's instances in its log directory `dir`, from the
    /// start of its newest.
    pub fn container(dir: PathBuf) -> Self {
        let path = instances(&dir)
            .pop()
            .map_or_else(|| dir.join("0.log"), |(_, p)| p);
        Follower {
            dir: Some(dir),
            ..Follower::file(path)
        }
    }

    fn open(&mut self) {
        if let Ok(f) = File::open(&self.path) {
            self.ino = f.metadata().ok().map(|m| m.ino());
            self.file = Some(f);
        }
    }

    /// Call `each` with every complete line written since the last call.
    pub fn pump_into(&mut self, mut each: impl FnMut(&str)) {
        loop {
            if self.file.is_none() {
                self.open();
            }
            if let Some(f) = &mut self.file {
                let mut buf = Vec::new();
                if f.read_to_end(&mut buf).is_ok() {
                    self.partial.extend_from_slice(&buf);
                }
                while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.partial.drain(..=i).collect();
                    each(&String::from_utf8_lossy(&line[..line.len() - 1]));
                }
            }
            // Read out: a rotation (another file at the path) or a newer
            // instance is followed from its start.
            let now = std::fs::metadata(&self.path).ok().map(|m| m.ino());
            if self.file.is_some() && now.is_some() && now != self.ino {
                self.file = None;
                self.partial.clear();
                continue;
            }
            let newer = self
                .dir
                .as_ref()
                .and_then(|d| instances(d).pop())
                .filter(|(_, p)| *p != self.path);
            match newer {
                Some((_, p)) if self.path_number() < number(&p) => {
                    self.path = p;
                    self.file = None;
                    self.ino = None;
                    self.partial.clear();
                }
                _ => return,
            }
        }
    }

    fn path_number(&self) -> Option<u32> {
        number(&self.path)
    }

    /// Print what was written since the last call; false once the printer
    /// is full.
    pub fn pump<W: Write>(&mut self, printer: &mut Printer<W>) -> Result<bool, LogsError> {
        let mut result = Ok(());
        self.pump_into(|l| {
            if result.is_ok() && !printer.full() {
                result = printer.line(l);
            }
        });
        result?;
        printer.flush()?;
        Ok(!printer.full())
    }
}

fn number(live: &Path) -> Option<u32> {
    live.file_name()?
        .to_str()?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// A Go duration as kubectl's `--since` takes it (`5s`, `2m`, `1h30m`,
/// `1.5h`), rounded up to whole seconds as kubectl sends it.
pub fn parse_since(text: &str) -> Option<chrono::Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        nanos += value * scale;
    }
    let seconds = (nanos / 1e9).ceil();
    (0.0..1e12)
        .contains(&seconds)
        .then(|| chrono::Duration::seconds(seconds as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u32) -> String {
        format!("2024-01-01T00:00:{s:02}.000000000Z")
    }

    /// An instance with two rotated files (the older compressed) and a live one.
    fn instance(dir: &Path) -> PathBuf {
        let live = dir.join("0.log");
        let gz = dir.join("0.log.20240101-000002.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), Default::default());
        write!(enc, "{} stdout F one\n{} stdout F two\n", at(0), at(1)).unwrap();
        enc.finish().unwrap();
        std::fs::write(
            dir.join("0.log.20240101-000004"),
            format!("{} stderr F three\n{} stdout P fo\n", at(3), at(3)),
        )
        .unwrap();
        std::fs::write(
            &live,
            format!("{} stdout F ur\n{} stdout F five\n", at(4), at(5)),
        )
        .unwrap();
        live
    }

    fn print(live: &Path, options: Options) -> String {
        let mut out = Vec::new();
        read(live, &mut Printer::new(&mut out, options)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn logs_are_read_across_rotated_and_compressed_files() {
        let dir = tempfile::tempdir().unwrap();
        let live = instance(dir.path());
        assert_eq!(
            print(&live, Options::default()),
            "one\ntwo\nthree\nfour\nfive\n"
        );
        let tail = |n| Options {
            tail: Some(n),
            ..Default::default()
        };
        // CRI lines count: the partial piece is one.
        assert_eq!(print(&live, tail(2)), "ur\nfive\n");
        assert_eq!(print(&live, tail(3)), "four\nfive\n");
        assert_eq!(print(&live, tail(4)), "three\nfour\nfive\n");
        assert_eq!(print(&live, tail(0)), "");
        let since = |s: &str| Options {
            since: Some(s.parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            print(&live, since("2024-01-01T00:00:03Z")),
            "three\nfour\nfive\n"
        );
        assert_eq!(
            print(&live, since("2024-01-01T00:00:01Z")),
            "two\nthree\nfour\nfive\n"
        );
        // tail first, then since (kubelet's ReadLogs).
        let both = Options {
            tail: Some(4),
            since: Some("2024-01-01T00:00:04Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(print(&live, both), "ur\nfive\n");
        let limit = Options {
            limit_bytes: Some(7),
            ..Default::default()
        };
        assert_eq!(print(&live, limit), "one\ntwo");
        let stamped = Options {
            timestamps: true,
            tail: Some(1),
            limit_bytes: Some(200),
            ..Default::default()
        };
        assert_eq!(print(&live, stamped), format!("{} five\n", at(5)));
    }

    #[test]
    fn the_previous_instance_is_the_one_before_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path();
        let logs = container_dir(run_dir, "app");
        assert_eq!(instance_file(run_dir, "web", "app", false).unwrap(), None);
        let e = instance_file(run_dir, "web", "app", true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "previous terminated container \"app\" in pod \"web\" not found"
        );
        std::fs::create_dir_all(&logs).unwrap();
        for n in [0, 1, 2, 10] {
            std::fs::write(logs.join(format!("{n}.log")), "").unwrap();
        }
        std::fs::write(logs.join("1.log.20240101-000001.gz"), "").unwrap();
        let got = |p| instance_file(run_dir, "web", "app", p).unwrap().unwrap();
        assert_eq!(got(false), logs.join("10.log"));
        assert_eq!(got(true), logs.join("2.log"));
        // Instance 11 keeps 10 for --previous; the rest go, rotated ones too.
        remove_older(&logs, 11);
        let left: Vec<u32> = instances(&logs).into_iter().map(|(n, _)| n).collect();
        assert_eq!(left, [10]);
        assert!(!logs.join("1.log.20240101-000001.gz").exists());
    }

    #[test]
    fn a_follower_goes_on_in_the_new_file_after_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("app");
        std::fs::create_dir_all(&logs).unwrap();
        let live = logs.join("0.log");
        std::fs::write(&live, format!("{} stdout F a\n", at(0))).unwrap();
        let mut f = Follower::container(logs.clone());
        let mut got = Vec::new();
        f.pump_into(|l| got.push(l.to_string()));
        // Written, then rotated, then the new file written: nothing lost.
        let mut w = File::options().append(true).open(&live).unwrap();
        writeln!(w, "{} stdout F b", at(1)).unwrap();
        std::fs::rename(&live, logs.join("0.log.20240101-000001")).unwrap();
        std::fs::write(&live, format!("{} stdout F c\n", at(2))).unwrap();
        f.pump_into(|l| got.push(l.to_string()));
        // A deleted file: nothing, no failure; then the next instance.
        std::fs::remove_file(&live).unwrap();
        f.pump_into(|l| got.push(l.to_string()));
        std::fs::write(logs.join("1.log"), format!("{} stdout F d\n", at(3))).unwrap();
        f.pump_into(|l| got.push(l.to_string()));
        let contents: Vec<&str> = got.iter().map(|l| l.rsplit(' ').next().unwrap()).collect();
        assert_eq!(contents, ["a", "b", "c", "d"]);
    }

    #[test]
    fn since_takes_go_durations_rounded_up_to_seconds() {
        let s = |t| parse_since(t).map(|d| d.num_seconds());
        assert_eq!(s("5s"), Some(5));
        assert_eq!(s("2m"), Some(120));
        assert_eq!(s("1h30m"), Some(5400));
        assert_eq!(s("1.5h"), Some(5400));
        assert_eq!(s("1500ms"), Some(2));
        assert_eq!(s("5"), None);
        assert_eq!(s("5d"), None);
        assert_eq!(s(""), None);
    }
}
