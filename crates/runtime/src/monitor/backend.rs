//! How the monitor makes, signals and removes containers: a small trait with two
//! kinds of implementation, an OCI runtime's CLI (crun, runc) and the embedded
//! libcontainer ([`super::Embedded`]).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::console::{self, ConsoleError, RemoveOnDrop};
use super::embedded::EmbeddedError;
use super::forked::ForkedError;

/// Why an OCI runtime call failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// {binary}: {source} (the runtime's binary could not be run)
    #[error("{}: {source}", .binary.display())]
    Spawn {
        /// The runtime's binary.
        binary: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// {runtime} {command}: {status}: {message} (the runtime said no)
    #[error("{runtime} {command}: {status}: {message}")]
    Failed {
        /// The runtime's name.
        runtime: String,
        /// Its subcommand.
        command: &'static str,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it said (a missing executable as runc says it).
        message: String,
    },
    /// read {file}: {source}
    #[error("read {}: {source}", .file.display())]
    ReadPidFile {
        /// The runtime's pid file.
        file: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// {file}: not a pid: {text:?}
    #[error("{}: not a pid: {text:?}", .file.display())]
    NotAPid {
        /// The runtime's pid file.
        file: PathBuf,
        /// What it held.
        text: String,
    },
    /// The exec's terminal or wait failed.
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// The embedded libcontainer failed.
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    /// The embedded libcontainer failed in a child of the monitor (only its
    /// text crosses back).
    #[error(transparent)]
    Forked(#[from] ForkedError),
}

/// What a container's init gets as its standard streams.
pub enum ContainerIo<'a> {
    /// `stdin` (or /dev/null), `stdout` and `stderr` as they are.
    Pipes {
        /// Its stdin; `None`: /dev/null.
        stdin: Option<OwnedFd>,
        /// Its stdout.
        stdout: OwnedFd,
        /// Its stderr.
        stderr: OwnedFd,
    },
    /// A new pseudo-terminal (its spec says `process.terminal`): the runtime
    /// sends the master to this console socket (the OCI `--console-socket`
    /// protocol) before the container's process runs.
    Terminal {
        /// Where the caller listens for the master.
        console_socket: &'a Path,
    },
}

/// An OCI runtime, as the monitor uses it. Every call blocks; the monitor is
/// single-threaded and calls them one at a time.
pub trait OciBackend {
    /// Create and start container `id` from `bundle` (its config.json written),
    /// with `io` as the container's standard streams; return the pid of its
    /// init, which the monitor (a child-subreaper) inherits and reaps.
    fn create_and_start(
        &self,
        id: &str,
        bundle: &Path,
        io: ContainerIo<'_>,
    ) -> Result<i32, BackendError>;
    /// Send `signal` to the container's init.
    fn kill(&self, id: &str, signal: i32) -> Result<(), BackendError>;
    /// Remove the container (killing whatever is left of it) and its state.
    fn delete(&self, id: &str) -> Result<(), BackendError>;
    /// Run `args` in the running container `id` in the foreground, with the
    /// caller's stdin, stdout and stderr (on a new pseudo-terminal with `tty`);
    /// return its exit code (128 + the signal that killed it; 127 when the
    /// command is not found, 126 when it cannot be executed, with the reason
    /// on stderr).
    fn exec(&self, id: &str, args: &[String], tty: bool) -> Result<i32, BackendError>;
}

/// The CLI of an OCI runtime that speaks runc's dialect (crun, runc), with its
/// state under `root` (`<run-root>/<name>`).
#[derive(Debug, Clone)]
pub struct OciCli {
    /// The runtime's binary: a bare name is looked up on PATH.
    pub binary: PathBuf,
    /// The runtime's `--root`.
    pub root: PathBuf,
    /// `--systemd-cgroup`: the containers' cgroups are systemd scopes (their
    /// `cgroupsPath` is `slice:prefix:name`).
    pub systemd_cgroup: bool,
}

impl OciCli {
    /// The CLI `runtime` (a name on PATH or an absolute path), its state in
    /// `<run_root>/<file name>`.
    pub fn new(runtime: &str, run_root: &Path) -> Self {
        let binary = PathBuf::from(runtime);
        Self {
            root: run_root.join(cli_state_dir(runtime)),
            binary,
            systemd_cgroup: false,
        }
    }

    /// The same, with `--systemd-cgroup` when `systemd` says so.
    pub fn with_systemd_cgroup(mut self, systemd: bool) -> Self {
        self.systemd_cgroup = systemd;
        self
    }

    fn name(&self) -> String {
        self.binary
            .file_name()
            .map_or_else(|| "runtime".into(), |n| n.to_string_lossy().into_owned())
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        // A global option of crun and runc, given to every command: runc reads
        // the manager from its state, crun from the flag.
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd
    }

    fn run(&self, what: &'static str, mut cmd: Command) -> Result<(), BackendError> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.spawn_error(e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(BackendError::Failed {
                runtime: self.name(),
                command: what,
                status: out.status,
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    fn spawn_error(&self, source: std::io::Error) -> BackendError {
        BackendError::Spawn {
            binary: self.binary.clone(),
            source,
        }
    }
}

/// The state directory (under the run root) of CLI runtime `runtime`: its file name.
pub(crate) fn cli_state_dir(runtime: &str) -> String {
    Path::new(runtime)
        .file_name()
        .map_or_else(|| "runtime".into(), |n| n.to_string_lossy().into_owned())
}

impl OciBackend for OciCli {
    fn create_and_start(
        &self,
        id: &str,
        bundle: &Path,
        io: ContainerIo<'_>,
    ) -> Result<i32, BackendError> {
        // The container's init inherits the runtime's stdio, so the runtime's
        // own messages would land in the container's log: send them to a file
        // instead. crun and runc both take a plain path and JSON lines.
        let pid_file = bundle.join("init.pid");
        let log = bundle.join("runtime.log");
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&log);
        let mut cmd = self.command();
        cmd.arg("--log")
            .arg(&log)
            .args(["--log-format", "json", "run", "--detach", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file);
        match io {
            ContainerIo::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                cmd.stdin(stdin.map_or_else(Stdio::null, Stdio::from))
                    .stdout(Stdio::from(stdout))
                    .stderr(Stdio::from(stderr));
            }
            // The container's streams are the terminal's: the runtime's own
            // are nobody's.
            ContainerIo::Terminal { console_socket } => {
                cmd.arg("--console-socket")
                    .arg(console_socket)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
            }
        }
        cmd.arg(id);
        let status = cmd.status().map_err(|e| self.spawn_error(e));
        // Drop the command now: it holds our copies of the pipes' write ends,
        // and the logs only see end-of-file once every copy is closed.
        drop(cmd);
        let status = status?;
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        if !status.success() {
            return Err(BackendError::Failed {
                runtime: self.name(),
                command: "run",
                status,
                message: exec_message(&log_message(&logged)),
            });
        }
        let pid = read_pid_file(&pid_file);
        let _ = std::fs::remove_file(&pid_file);
        pid
    }

    fn kill(&self, id: &str, signal: i32) -> Result<(), BackendError> {
        let mut cmd = self.command();
        cmd.arg("kill").arg(id).arg(signal.to_string());
        self.run("kill", cmd)
    }

    fn delete(&self, id: &str) -> Result<(), BackendError> {
        let mut cmd = self.command();
        cmd.args(["delete", "--force", id]);
        self.run("delete", cmd)
    }

    fn exec(&self, id: &str, args: &[String], tty: bool) -> Result<i32, BackendError> {
        // The runtime's own failure (255) is told from the command's exit code
        // by its log, which only the runtime writes.
        let scratch = std::env::temp_dir().join(format!("podrun-exec-{}", std::process::id()));
        let log = scratch.with_extension("log");
        let socket = scratch.with_extension("sock");
        let pid_file = scratch.with_extension("pid");
        let _cleanup = RemoveOnDrop(vec![log.clone(), socket.clone(), pid_file.clone()]);
        let _ = std::fs::remove_file(&log);
        let mut cmd = self.command();
        cmd.arg("--log")
            .arg(&log)
            .args(["--log-format", "json", "exec"]);
        // With a terminal, crun wants our stdin to be one too: have it start
        // the process detached instead and send us the pty master.
        let listener = if tty {
            let listener = console::listen(&socket)?;
            console::become_subreaper()?;
            // crun's `-t` takes an optional argument: only the long form is
            // unambiguous before the container ID.
            cmd.args(["--tty", "--detach", "--console-socket"])
                .arg(&socket)
                .arg("--pid-file")
                .arg(&pid_file);
            Some(listener)
        } else {
            None
        };
        // The container's own process with these args, as containerd execs:
        // crun's `exec ID ARGS` takes the container's user but not its
        // additionalGids (the pod's supplementalGroups and fsGroup).
        let process = scratch.with_extension("json");
        let _cleanup_process = RemoveOnDrop(vec![process.clone()]);
        match self.exec_process(id, args, tty) {
            Some(json) if std::fs::write(&process, &json).is_ok() => {
                cmd.arg("--process").arg(&process).arg(id);
            }
            _ => {
                cmd.arg(id).args(args);
            }
        }
        let status = cmd.status().map_err(|e| self.spawn_error(e))?;
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        if status.code() == Some(255) {
            if let Some(failure) = ExecFailure::parse(&log_message(&logged)) {
                // After the runtime's own words (on the same stderr), runc's.
                eprintln!("{failure}");
                return Ok(failure.exit_code());
            }
        }
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(1);
        let Some(listener) = listener else {
            return Ok(code);
        };
        if code != 0 {
            return Err(BackendError::Failed {
                runtime: self.name(),
                command: "exec",
                status,
                message: log_message(&logged),
            });
        }
        let pid = read_pid_file(&pid_file)?;
        Ok(console::attach(&listener, pid)?)
    }
}

impl OciCli {
    /// The process of container `id`'s config.json (its bundle from the
    /// runtime's `state`) with `args` and `tty`, as JSON; None when either
    /// cannot be read.
    fn exec_process(&self, id: &str, args: &[String], tty: bool) -> Option<Vec<u8>> {
        let out = self.command().args(["state", id]).output().ok()?;
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let bundle = Path::new(state["bundle"].as_str()?);
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).ok()?).ok()?;
        let mut process = config.get("process")?.clone();
        process["args"] = serde_json::json!(args);
        process["terminal"] = tty.into();
        if let Some(p) = process.as_object_mut() {
            p.remove("consoleSize");
        }
        serde_json::to_vec(&process).ok()
    }
}

/// The pid a runtime wrote to `file`.
fn read_pid_file(file: &Path) -> Result<i32, BackendError> {
    let text = std::fs::read_to_string(file).map_err(|source| BackendError::ReadPidFile {
        file: file.into(),
        source,
    })?;
    text.trim().parse().map_err(|_| BackendError::NotAPid {
        file: file.into(),
        text,
    })
}

/// A runtime's log file holds lines like `{"msg":"…","level":"error","time":"…"}`
/// (crun, runc with `--log-format json`) or plain text: keep the messages.
pub(crate) fn log_message(logged: &str) -> String {
    let msgs: Vec<String> = logged
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(String::from))
                .unwrap_or_else(|| l.trim().to_string())
        })
        .collect();
    if msgs.is_empty() {
        "no message".into()
    } else {
        msgs.join("; ")
    }
}

/// A missing or unusable executable, as each runtime words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecFailure {
    /// Not found: a bare name on PATH, or a path.
    NotFound(String),
    /// Found, but not an executable file.
    NotExecutable(String),
}

impl ExecFailure {
    /// Recognise the failure in a runtime's message: libcontainer's
    /// ``executable 'X' not found in $PATH``, crun's ``executable file `X` not
    /// found…``, runc's `exec: "X": …`.
    pub(crate) fn parse(msg: &str) -> Option<Self> {
        let quoted = |start: &str, end: char| -> Option<String> {
            let at = msg.find(start)? + start.len();
            let len = msg[at..].find(end)?;
            Some(msg[at..at + len].to_string())
        };
        if let Some(name) = quoted("executable '", '\'') {
            let rest = &msg[msg.find("executable '")?..];
            return Some(if rest.contains("not found") {
                Self::NotFound(name)
            } else {
                Self::NotExecutable(name)
            });
        }
        if let Some(name) = quoted("executable file `", '`') {
            let rest = &msg[msg.find("executable file `")?..];
            return Some(if rest.contains("not found") {
                Self::NotFound(name)
            } else {
                Self::NotExecutable(name)
            });
        }
        if let Some(name) = quoted("exec: \"", '"') {
            let rest = &msg[msg.find("exec: \"")?..];
            if rest.contains("not found") || rest.contains("no such file") {
                return Some(Self::NotFound(name));
            }
            if rest.contains("permission denied") || rest.contains("is a directory") {
                return Some(Self::NotExecutable(name));
            }
        }
        None
    }

    /// The exit code a shell (and `kubectl exec`) gives this failure.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Self::NotFound(_) => 127,
            Self::NotExecutable(_) => 126,
        }
    }
}

impl std::fmt::Display for ExecFailure {
    /// runc's wording, which kubelet users know.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound(name) if name.contains('/') => write!(
                f,
                "exec: \"{name}\": stat {name}: no such file or directory"
            ),
            Self::NotFound(name) => {
                write!(f, "exec: \"{name}\": executable file not found in $PATH")
            }
            Self::NotExecutable(name) => write!(f, "exec: \"{name}\": permission denied"),
        }
    }
}

/// `msg` with a missing executable said as runc says it (the rest unchanged
/// when it is about something else).
pub(crate) fn exec_message(msg: &str) -> String {
    ExecFailure::parse(msg).map_or_else(|| msg.to_string(), |f| f.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_keep_their_messages() {
        let logged = "{\"msg\":\"one\",\"level\":\"error\",\"time\":\"t\"}\n\nplain text\n";
        assert_eq!(log_message(logged), "one; plain text");
        assert_eq!(log_message(""), "no message");
    }

    #[test]
    fn missing_executables_read_as_runc_says_them() {
        let cases = [
            (
                "failed to create container: executable 'foo' not found in $PATH",
                "exec: \"foo\": executable file not found in $PATH",
                127,
            ),
            (
                "executable file `foo` not found in $PATH: No such file or directory",
                "exec: \"foo\": executable file not found in $PATH",
                127,
            ),
            (
                "executable file `/no/such` not found: No such file or directory",
                "exec: \"/no/such\": stat /no/such: no such file or directory",
                127,
            ),
            (
                "unable to start container process: exec: \"/no/such\": stat /no/such: no such file or directory",
                "exec: \"/no/such\": stat /no/such: no such file or directory",
                127,
            ),
            (
                "executable '/etc' at path '\"/etc\"' does not have correct permissions",
                "exec: \"/etc\": permission denied",
                126,
            ),
        ];
        for (msg, want, code) in cases {
            let failure = ExecFailure::parse(msg).unwrap();
            assert_eq!(
                (failure.to_string().as_str(), failure.exit_code()),
                (want, code)
            );
        }
        assert_eq!(exec_message("cgroup: no space"), "cgroup: no space");
    }

    #[test]
    fn cli_state_lives_under_the_runtime_name() {
        assert_eq!(cli_state_dir("crun"), "crun");
        assert_eq!(cli_state_dir("/usr/sbin/runc"), "runc");
        let cli = OciCli::new("/usr/bin/crun", Path::new("/run/podrun"));
        assert_eq!(cli.root, Path::new("/run/podrun/crun"));
        assert_eq!(cli.name(), "crun");
    }
}
