//! The pod sandbox: a pause process (`podrun-pause`) that unshares the pod's
//! network, IPC and UTS namespaces (and PID, when the pod shares one) and holds
//! them for the pod's life. Each namespace is also pinned, by a bind mount of
//! `/proc/<pid>/ns/<kind>` onto `<dir>/ns/<kind>`, so it outlives a crash of
//! the pause process and containers (and CNI) can join it by path, as
//! `/run/netns/<name>` works for `ip netns`.
//!
//! Teardown does everything it can and reports every failure (netavark's way):
//! stop the pause process, unmount each pin, remove `ns/` (and the directory
//! when nothing else is in it: the runtime keeps its records of the sandbox
//! there, and removes it on RemovePodSandbox).

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
    /// sandbox {id:?}: invalid ID
    #[error("sandbox {0:?}: invalid ID")]
    InvalidId(String),
    /// sandbox {id}: create directory: {source}
    #[error("sandbox {id}: create directory: {source}")]
    CreateDir {
        /// The sandbox.
        id: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// sandbox {id}: start pause: {program}: {source}
    #[error("sandbox {id}: start pause: {}: {source}", .program.display())]
    SpawnPause {
        /// The sandbox.
        id: String,
        /// The pause binary.
        program: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// sandbox {id}: start pause: read its ready line: {source}
    #[error("sandbox {id}: start pause: read its ready line: {source}")]
    ReadReady {
        /// The sandbox.
        id: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// sandbox {id}: start pause: {stderr} (the pause process failed and said why)
    #[error("sandbox {id}: start pause: {stderr}")]
    PauseFailed {
        /// The sandbox.
        id: String,
        /// What the pause process wrote on stderr.
        stderr: String,
    },
    /// sandbox {id}: pin {ns} namespace: create {target}: {source}
    #[error("sandbox {id}: pin {ns} namespace: create {}: {source}", .target.display())]
    PinFile {
        /// The sandbox.
        id: String,
        /// The namespace's name.
        ns: &'static str,
        /// The file to bind the namespace onto.
        target: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// sandbox {id}: pin {ns} namespace: bind {from}: {source}
    #[error("sandbox {id}: pin {ns} namespace: bind {from}: {source}")]
    Bind {
        /// The sandbox.
        id: String,
        /// The namespace's name.
        ns: &'static str,
        /// `/proc/<pid>/ns/<kind>`.
        from: String,
        /// The system's error.
        source: rustix::io::Errno,
    },
    /// stop pause process {pid}: still running after SIGKILL
    #[error("stop pause process {pid}: still running after SIGKILL")]
    StillRunning {
        /// The pause process.
        pid: i32,
    },
    /// unmount {path}: {source}
    #[error("unmount {}: {source}", .path.display())]
    Unmount {
        /// The namespace pin.
        path: PathBuf,
        /// The system's error.
        source: rustix::io::Errno,
    },
    /// remove {dir}: {source}
    #[error("remove {}: {source}", .dir.display())]
    RemoveDir {
        /// The sandbox directory.
        dir: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// sandbox {id}: teardown: every failure, in order
    #[error("sandbox {id}: teardown: {}", join_errors(.errors))]
    Teardown {
        /// The sandbox.
        id: String,
        /// Every failure, in order.
        errors: Vec<SandboxError>,
    },
}

use crate::join_errors;

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
        let dir = run_root.join("sandboxes").join(&config.id);
        std::fs::create_dir_all(dir.join("ns")).map_err(|source| SandboxError::CreateDir {
            id: config.id.clone(),
            source,
        })?;
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
            return Err(e);
        }
        for ns in sandbox.namespaces.clone() {
            if let Err(e) = sandbox.pin(ns) {
                let _ = sandbox.destroy();
                return Err(e);
            }
        }
        Ok(sandbox)
    }

    fn start(&mut self, mut cmd: Command) -> Result<(), SandboxError> {
        let read_ready = |source| SandboxError::ReadReady {
            id: self.id.clone(),
            source,
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| SandboxError::SpawnPause {
                id: self.id.clone(),
                program: PathBuf::from(cmd.get_program()),
                source,
            })?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .map_err(read_ready)?;
        let pid = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse::<i32>().ok());
        let Some(pid) = pid else {
            let _ = child.kill();
            let out = child.wait_with_output().map_err(read_ready)?;
            return Err(SandboxError::PauseFailed {
                id: self.id.clone(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
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

    fn pin(&self, ns: Namespace) -> Result<(), SandboxError> {
        let target = self.ns_path(ns);
        if let Err(source) = std::fs::File::create(&target) {
            return Err(SandboxError::PinFile {
                id: self.id.clone(),
                ns: ns.name(),
                target,
                source,
            });
        }
        let from = format!("/proc/{}/ns/{}", self.pid, ns.name());
        rustix::mount::mount_bind(from.as_str(), &target).map_err(|source| SandboxError::Bind {
            id: self.id.clone(),
            ns: ns.name(),
            from,
            source,
        })
    }

    /// Stop the pause process, unmount every pin and remove the directory,
    /// going on past failures and reporting them all.
    pub fn destroy(&mut self) -> Result<(), SandboxError> {
        let mut errors = Vec::new();
        if self.pid > 0 {
            if let Err(e) = stop(self.pid) {
                errors.push(e);
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
                if let Err(source) =
                    rustix::mount::unmount(&pin, rustix::mount::UnmountFlags::DETACH)
                {
                    errors.push(SandboxError::Unmount { path: pin, source });
                }
            }
        }
        // Only the pins are the sandbox's: the runtime may keep its records
        // of the sandbox in the same directory (it removes the directory).
        let ns = self.dir.join("ns");
        if self.dir.is_absolute() && ns.exists() {
            if let Err(source) = std::fs::remove_dir_all(&ns) {
                errors.push(SandboxError::RemoveDir { dir: ns, source });
            }
        }
        if self.dir.is_absolute() {
            // Left when the runtime's records are in it.
            let _ = std::fs::remove_dir(&self.dir);
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
    podrun_fs::check_id(id).map_err(|e| SandboxError::InvalidId(e.0))
}

/// SIGTERM, then SIGKILL after a second; wait until the process is gone or a zombie.
/// A pid that is not positive is nothing to stop.
fn stop(pid: i32) -> Result<(), SandboxError> {
    let Some(target) = rustix::process::Pid::from_raw(pid) else {
        return Ok(());
    };
    let _ = rustix::process::kill_process(target, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(1);
    while alive(pid) {
        if Instant::now() > deadline {
            let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
            let hard = Instant::now() + Duration::from_secs(2);
            while alive(pid) {
                if Instant::now() > hard {
                    return Err(SandboxError::StillRunning { pid });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Reap it if it is our child; a zombie of someone else's is theirs to reap.
    let _ = rustix::process::waitpid(Some(target), rustix::process::WaitOptions::NOHANG);
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
