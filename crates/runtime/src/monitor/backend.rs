//! How the monitor makes, signals and removes containers: a small trait, so the
//! embedded libcontainer backend can replace the crun CLI later.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// An OCI runtime, as the monitor uses it. Every call blocks; the monitor is
/// single-threaded and calls them one at a time.
pub trait OciBackend {
    /// Create and start container `id` from `bundle` (its config.json written),
    /// with `stdout` and `stderr` as the container's; return the pid of its init,
    /// which the monitor (a child-subreaper) inherits and reaps.
    fn create_and_start(
        &self,
        id: &str,
        bundle: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<i32, String>;
    /// Send `signal` to the container's init.
    fn kill(&self, id: &str, signal: i32) -> Result<(), String>;
    /// Remove the container (killing whatever is left of it) and its state.
    fn delete(&self, id: &str) -> Result<(), String>;
}

/// The crun CLI, with its state under `root` (`<run-root>/crun`).
#[derive(Debug, Clone)]
pub struct Crun {
    /// The crun binary.
    pub binary: PathBuf,
    /// crun's `--root`.
    pub root: PathBuf,
}

impl Crun {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root).stdin(Stdio::null());
        cmd
    }

    fn run(&self, what: &str, mut cmd: Command) -> Result<(), String> {
        let out = cmd
            .output()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "crun {what}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl OciBackend for Crun {
    fn create_and_start(
        &self,
        id: &str,
        bundle: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<i32, String> {
        // The container's init inherits crun's stdio, so crun's own messages
        // would land in the container's log: send them to a file instead.
        let pid_file = bundle.join("init.pid");
        let log = bundle.join("crun.log");
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&log);
        let mut cmd = self.command();
        cmd.arg(format!("--log=file:{}", log.display()))
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        let status = cmd
            .status()
            .map_err(|e| format!("{}: {e}", self.binary.display()));
        // Drop the command now: it holds our copies of the pipes' write ends,
        // and the logs only see end-of-file once every copy is closed.
        drop(cmd);
        let status = status?;
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        if !status.success() {
            return Err(format!("crun run: {status}: {}", crun_message(&logged)));
        }
        let pid = std::fs::read_to_string(&pid_file)
            .map_err(|e| format!("read {}: {e}", pid_file.display()))?;
        let _ = std::fs::remove_file(&pid_file);
        pid.trim()
            .parse()
            .map_err(|_| format!("{}: not a pid: {pid:?}", pid_file.display()))
    }

    fn kill(&self, id: &str, signal: i32) -> Result<(), String> {
        let mut cmd = self.command();
        cmd.arg("kill").arg(id).arg(signal.to_string());
        self.run("kill", cmd)
    }

    fn delete(&self, id: &str) -> Result<(), String> {
        let mut cmd = self.command();
        cmd.args(["delete", "--force", id]);
        self.run("delete", cmd)
    }
}

/// crun's log file holds lines like `{"msg":"…","level":"error","time":"…"}`
/// or plain text: keep the messages.
fn crun_message(logged: &str) -> String {
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
