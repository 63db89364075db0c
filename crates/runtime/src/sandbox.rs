//! The pod sandbox: a pause process (`podrun-pause`) that unshares the pod's
//! network, IPC and UTS namespaces (and PID, when the pod shares one) and holds
//! them for the pod's life. Each namespace is also pinned, by a bind mount of
//! `/proc/<pid>/ns/<kind>` onto `<dir>/ns/<kind>`, so it outlives a crash of
//! the pause process and containers (and CNI) can join it by path, as
//! `/run/netns/<name>` works for `ip netns`.
//!
//! Teardown does everything it can and reports every failure (netavark's way):
//! stop the pause process, unmount each pin, remove the directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A namespace a sandbox may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// Network.
    Net,
    /// System V IPC, POSIX message queues.
    Ipc,
    /// Hostname.
    Uts,
    /// Process IDs (only with `shareProcessNamespace`).
    Pid,
}

impl Namespace {
    /// The name under `/proc/<pid>/ns/`.
    pub fn name(self) -> &'static str {
        match self {
            Namespace::Net => "net",
            Namespace::Ipc => "ipc",
            Namespace::Uts => "uts",
            Namespace::Pid => "pid",
        }
    }
}

/// What a sandbox is made of.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Unique ID; becomes a directory name.
    pub id: String,
    /// The pod's hostname (its name, or `hostname`/`subdomain`).
    pub hostname: String,
    /// `hostNetwork: true`: no network (nor UTS) namespace of its own.
    pub host_network: bool,
    /// `shareProcessNamespace: true`: the pause process is PID 1 of a new PID namespace.
    pub share_pid: bool,
}

/// Why a sandbox could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// An ID that cannot be a directory name.
    #[error("sandbox {0:?}: invalid ID")]
    InvalidId(String),
    /// A step failed.
    #[error("sandbox {id}: {step}: {cause}")]
    Step {
        /// The sandbox.
        id: String,
        /// What was being done.
        step: String,
        /// The cause.
        cause: String,
    },
    /// Teardown met several failures; all are listed.
    #[error("sandbox {id}: teardown: {}", .errors.join("; "))]
    Teardown {
        /// The sandbox.
        id: String,
        /// Every failure, in order.
        errors: Vec<String>,
    },
}

/// A running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// Its ID.
    pub id: String,
    /// `<run-root>/sandboxes/<id>`.
    pub dir: PathBuf,
    /// The pause process (PID 1 of the pod's PID namespace when it has one).
    pub pid: i32,
    /// The namespaces it holds.
    pub namespaces: Vec<Namespace>,
}

impl Sandbox {
    /// Start the pause process for `config` and pin its namespaces under
    /// `run_root/sandboxes/<id>/ns/`. On failure nothing of it is left.
    pub fn create(
        run_root: &Path,
        pause: &Path,
        config: &SandboxConfig,
    ) -> Result<Sandbox, SandboxError> {
        check_id(&config.id)?;
        let step = |step: &str, cause: String| SandboxError::Step {
            id: config.id.clone(),
            step: step.into(),
            cause,
        };
        let dir = run_root.join("sandboxes").join(&config.id);
        std::fs::create_dir_all(dir.join("ns"))
            .map_err(|e| step("create directory", e.to_string()))?;
        let mut namespaces = vec![Namespace::Ipc];
        let mut cmd = Command::new(pause);
        cmd.arg("--ipc");
        if !config.host_network {
            namespaces.extend([Namespace::Net, Namespace::Uts]);
            cmd.arg("--net").arg("--uts").arg(&config.hostname);
        }
        if config.share_pid {
            namespaces.push(Namespace::Pid);
            cmd.arg("--pid");
        }
        let mut sandbox = Sandbox {
            id: config.id.clone(),
            dir,
            pid: 0,
            namespaces,
        };
        let started = sandbox.start(cmd);
        if let Err(e) = started {
            let _ = sandbox.destroy();
            return Err(step("start pause", e));
        }
        for ns in sandbox.namespaces.clone() {
            if let Err(e) = sandbox.pin(ns) {
                let _ = sandbox.destroy();
                return Err(step(&format!("pin {} namespace", ns.name()), e));
            }
        }
        Ok(sandbox)
    }

    fn start(&mut self, mut cmd: Command) -> Result<(), String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", cmd.get_program().to_string_lossy()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let pid = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse::<i32>().ok());
        let Some(pid) = pid else {
            let _ = child.kill();
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        };
        self.pid = pid;
        if !self.namespaces.contains(&Namespace::Pid) {
            // Without a PID namespace the child is the pause process itself;
            // whoever owns the sandbox (the pod's monitor) reaps it. Here the
            // handle is dropped and the process left running.
            std::mem::forget(child);
        } else {
            // The direct child exits once its PID-1 child announced itself.
            let _ = child.wait();
        }
        Ok(())
    }

    /// Where namespace `ns` is pinned (join it by this path).
    pub fn ns_path(&self, ns: Namespace) -> PathBuf {
        self.dir.join("ns").join(ns.name())
    }

    fn pin(&self, ns: Namespace) -> Result<(), String> {
        let target = self.ns_path(ns);
        std::fs::File::create(&target).map_err(|e| e.to_string())?;
        let source = format!("/proc/{}/ns/{}", self.pid, ns.name());
        rustix::mount::mount_bind(source.as_str(), &target)
            .map_err(|e| format!("bind {source}: {e}"))
    }

    /// Stop the pause process, unmount every pin and remove the directory,
    /// going on past failures and reporting them all.
    pub fn destroy(&mut self) -> Result<(), SandboxError> {
        let mut errors = Vec::new();
        if self.pid > 0 {
            if let Err(e) = stop(self.pid) {
                errors.push(format!("stop pause process {}: {e}", self.pid));
            }
            self.pid = 0;
        }
        for ns in [
            Namespace::Net,
            Namespace::Ipc,
            Namespace::Uts,
            Namespace::Pid,
        ] {
            let pin = self.ns_path(ns);
            if is_mounted(&pin) {
                if let Err(e) = rustix::mount::unmount(&pin, rustix::mount::UnmountFlags::DETACH) {
                    errors.push(format!("unmount {}: {e}", pin.display()));
                }
            }
        }
        if self.dir.is_absolute() && self.dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                errors.push(format!("remove {}: {e}", self.dir.display()));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SandboxError::Teardown {
                id: self.id.clone(),
                errors,
            })
        }
    }
}

fn check_id(id: &str) -> Result<(), SandboxError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(SandboxError::InvalidId(id.into()))
    }
}

/// SIGTERM, then SIGKILL after a second; wait until the process is gone or a zombie.
fn stop(pid: i32) -> Result<(), String> {
    let target = rustix::process::Pid::from_raw(pid).ok_or("invalid pid")?;
    let _ = rustix::process::kill_process(target, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(1);
    while alive(pid) {
        if Instant::now() > deadline {
            let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
            let hard = Instant::now() + Duration::from_secs(2);
            while alive(pid) {
                if Instant::now() > hard {
                    return Err("still running after SIGKILL".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Reap it if it is our child; a zombie of someone else's is theirs to reap.
    // SAFETY: waitpid with WNOHANG and a null status pointer only reaps.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    Ok(())
}

/// Running (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn is_mounted(path: &Path) -> bool {
    let want = path.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|info| {
            info.lines()
                .filter_map(|l| l.split(' ').nth(4))
                .any(|m| m == want)
        })
        .unwrap_or(false)
}
