//! Running one plugin binary the way the spec says: the command and the
//! attachment in `CNI_*` variables (on top of the runtime's environment, as
//! libcni's `invoke.Args.AsEnv` does), the config on stdin, the result or an
//! error object on stdout, bounded by a timeout.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// A CNI operation (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    /// `ADD`.
    Add,
    /// `DEL`.
    Del,
    /// `CHECK`.
    Check,
    /// `VERSION`.
    Version,
    /// `GC` (CNI 1.1).
    Gc,
}

impl CniCommand {
    /// The value of `CNI_COMMAND`.
    pub fn as_env(self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
            CniCommand::Check => "CHECK",
            CniCommand::Version => "VERSION",
            CniCommand::Gc => "GC",
        }
    }
}

impl std::fmt::Display for CniCommand {
    /// libcni's words in errors: `add`, `delete`, `check`, `version`, `gc`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CniCommand::Add => "add",
            CniCommand::Del => "delete",
            CniCommand::Check => "check",
            CniCommand::Version => "version",
            CniCommand::Gc => "gc",
        })
    }
}

/// The error object a failing plugin prints (spec: "Error").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorObject {
    /// `code`: 1–99 are the spec's (7 = invalid network config, 11 = try
    /// again later, …), 100 and up the plugin's.
    #[serde(default)]
    pub code: u32,
    /// `msg`.
    #[serde(default)]
    pub msg: String,
    /// `details`.
    #[serde(default)]
    pub details: String,
}

impl std::fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.msg.is_empty(), self.details.is_empty()) {
            (false, true) => write!(f, "{}", self.msg),
            (false, false) => write!(f, "{}: {}", self.msg, self.details),
            (true, false) => write!(f, "error code {}: {}", self.code, self.details),
            (true, true) => write!(f, "error code {} with no message", self.code),
        }
    }
}

/// Why running a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No bin directory holds the plugin.
    #[error("no executable {name:?} in {dirs}")]
    NotFound {
        /// The plugin's `type`.
        name: String,
        /// The bin directories, `:`-joined.
        dirs: String,
    },
    /// The binary could not be started.
    #[error("start {}: {source}", path.display())]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// What `exec` said.
        source: io::Error,
    },
    /// Feeding it its config or reading its output failed.
    #[error("talk to {}: {source}", path.display())]
    Io {
        /// The binary.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// It ran past the timeout and was killed.
    #[error("no answer within {0:?}: killed it")]
    Timeout(Duration),
    /// It exited but a process it left behind keeps its output open.
    #[error(
        "it exited ({0}) but its output stayed open past the timeout (a child of it holds it)"
    )]
    OutputOpen(ExitStatus),
    /// It failed and said why.
    #[error("{0}")]
    Reported(ErrorObject),
    /// It failed without a readable error object (libcni `pluginErr`).
    #[error("netplugin failed ({status}): {output}")]
    Unreported {
        /// How it exited.
        status: ExitStatus,
        /// Its stderr, or its stdout, or `no output`.
        output: String,
    },
    /// It succeeded but printed no valid result.
    #[error("invalid result: {0}")]
    BadResult(String),
}

/// Where plugin `kind` is: the first bin directory holding an executable
/// regular file of that name (libcni `FindInPath`).
pub fn find_plugin(kind: &str, dirs: &[PathBuf]) -> Result<PathBuf, PluginError> {
    for dir in dirs {
        let path = dir.join(kind);
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(path);
            }
        }
    }
    Err(PluginError::NotFound {
        name: kind.to_string(),
        dirs: join_paths(dirs),
    })
}

/// `CNI_PATH`: the bin directories, `:`-joined.
pub fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":")
}

/// The `CNI_*` variables of one call. Every one is set, empty if it does not
/// apply, as libcni sets them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginEnv {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
    /// `CNI_PATH`.
    pub path: String,
}

impl PluginEnv {
    /// The variables for `command`.
    pub fn vars(&self, command: CniCommand) -> [(&'static str, &str); 6] {
        [
            ("CNI_COMMAND", command.as_env()),
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_NETNS", &self.netns),
            ("CNI_IFNAME", &self.ifname),
            ("CNI_ARGS", &self.args),
            ("CNI_PATH", &self.path),
        ]
    }
}

/// Runs `binary` for `command` with `stdin` as its config and returns its
/// stdout. It runs in a process group of its own, so that on timeout the
/// group (with any `iptables` it started) is killed.
pub fn run(
    binary: &Path,
    command: CniCommand,
    env: &PluginEnv,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, PluginError> {
    let deadline = Instant::now() + timeout;
    let io_err = |source| PluginError::Io {
        path: binary.to_path_buf(),
        source,
    };
    let mut child = spawn(binary, command, env, deadline).map_err(|source| PluginError::Spawn {
        path: binary.to_path_buf(),
        source,
    })?;
    let (tx, rx) = mpsc::channel();
    let mut input = child.stdin.take().expect("piped");
    let config = stdin.to_vec();
    // A plugin that never reads its stdin must not block us: write from a thread.
    std::thread::spawn(move || {
        let _ = input.write_all(&config);
    });
    for (index, stream) in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = tx.clone();
        let mut stream = stream.expect("piped");
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let read = stream.read_to_end(&mut buf).map(|_| buf);
            let _ = tx.send((index, read));
        });
    }
    drop(tx);

    let status = match wait_until(&mut child, deadline).map_err(io_err)? {
        Some(status) => status,
        None => {
            let pid = rustix::process::Pid::from_child(&child);
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            let _ = child.kill();
            let _ = child.wait();
            return Err(PluginError::Timeout(timeout));
        }
    };
    let mut outputs = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(100))) {
            Ok((index, read)) => outputs[index] = read.map_err(io_err)?,
            Err(_) => return Err(PluginError::OutputOpen(status)),
        }
    }
    let [stdout, stderr] = outputs;
    if status.success() {
        return Ok(stdout);
    }
    Err(failure(status, &stdout, &stderr))
}

/// Starts the plugin. `ETXTBSY` is retried until the deadline: an installer
/// (a CNI daemonset copying its binary in) or another thread's fork that
/// briefly holds the file open for writing makes exec fail with it.
fn spawn(
    binary: &Path,
    command: CniCommand,
    env: &PluginEnv,
    deadline: Instant,
) -> io::Result<Child> {
    loop {
        let spawned = Command::new(binary)
            .envs(env.vars(command))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        match spawned {
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error())
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// What a failed run means: its error object, or what it printed.
fn failure(status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> PluginError {
    if let Ok(obj) = serde_json::from_slice::<ErrorObject>(stdout) {
        if !obj.msg.is_empty() || obj.code != 0 {
            return PluginError::Reported(obj);
        }
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    let output = if !stderr.is_empty() {
        text(stderr)
    } else if !stdout.is_empty() {
        text(stdout)
    } else if let Some(signal) = status.signal() {
        format!("killed by signal {signal}, no output")
    } else {
        "no output".to_string()
    };
    PluginError::Unreported { status, output }
}

/// Waits for `child` until `deadline`; `None` if it is still running then.
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::process::{pidfd_open, PidfdFlags};

    // A pidfd turns readable when the process exits: no polling loop.
    if let Ok(pidfd) = pidfd_open(rustix::process::Pid::from_child(child), PidfdFlags::empty()) {
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let timeout = Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            };
            let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    // Kernels before 5.3 have no pidfd.
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn env() -> PluginEnv {
        PluginEnv {
            container_id: "c1".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: "IgnoreUnknown=1".into(),
            path: "/opt/cni/bin".into(),
        }
    }

    #[test]
    fn the_plugin_gets_the_env_and_stdin_and_its_stdout_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let bin = script(
            dir.path(),
            "echo",
            r#"printf '%s|%s|%s|%s|%s|%s|' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH"; cat"#,
        );
        let out = run(
            &bin,
            CniCommand::Del,
            &env(),
            b"{\"x\":1}",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "DEL|c1|/run/netns/x|eth0|IgnoreUnknown=1|/opt/cni/bin|{\"x\":1}"
        );
    }

    #[test]
    fn a_failure_gives_the_error_object_or_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let bin = script(
            dir.path(),
            "fail",
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"no IP addresses available","details":"range 10.0.0.0/30 is full"}'; exit 1"#,
        );
        let err = run(&bin, CniCommand::Add, &env(), b"{}", Duration::from_secs(5)).unwrap_err();
        assert!(matches!(&err, PluginError::Reported(o) if o.code == 11));
        assert_eq!(
            err.to_string(),
            "no IP addresses available: range 10.0.0.0/30 is full"
        );

        let bin = script(dir.path(), "stderr", "echo 'panic: oops' >&2; exit 2");
        let err = run(&bin, CniCommand::Add, &env(), b"{}", Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "netplugin failed (exit status: 2): panic: oops"
        );

        let bin = script(dir.path(), "silent", "exit 3");
        let err = run(&bin, CniCommand::Add, &env(), b"{}", Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "netplugin failed (exit status: 3): no output"
        );
    }

    #[test]
    fn a_plugin_past_the_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-pid");
        let bin = script(
            dir.path(),
            "slow",
            &format!("sleep 30 & echo $! > {}; wait", marker.display()),
        );
        let start = Instant::now();
        let err = run(
            &bin,
            CniCommand::Add,
            &env(),
            b"{}",
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, PluginError::Timeout(_)), "{err}");
        assert!(err.to_string().contains("killed it"));
        assert!(start.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The group's SIGKILL reaches the background `sleep` too.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
        {
            assert!(
                Instant::now() < deadline,
                "the plugin's child {pid} survived"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn plugins_are_found_by_type_in_the_bin_dirs_in_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        script(b.path(), "bridge", "true");
        std::fs::write(a.path().join("bridge"), "not executable").unwrap();
        let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(
            find_plugin("bridge", &dirs).unwrap(),
            b.path().join("bridge")
        );
        script(a.path(), "portmap", "true");
        script(b.path(), "portmap", "true");
        assert_eq!(
            find_plugin("portmap", &dirs).unwrap(),
            a.path().join("portmap")
        );
        let err = find_plugin("flannel", &dirs).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "no executable \"flannel\" in {}:{}",
                a.path().display(),
                b.path().display()
            )
        );
    }
}
