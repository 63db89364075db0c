//! The embedded OCI backend: youki's libcontainer in the monitor's own process,
//! its state under `<run-root>/libcontainer`, cgroups through cgroupfs.
//!
//! libcontainer forks with raw clone3 and runs Rust code in the child, so only
//! a single-threaded process may call it (the monitor, or `podrun-monitor
//! exec`). It makes its caller non-dumpable for good. The container's init is a
//! child of the caller (its intermediate process is reaped by libcontainer, the
//! init is left to us).
//!
//! The monitor creates, starts and deletes containers in a short-lived child
//! ([`super::forked`]), so that libcontainer's code, stack and heap are never
//! part of the long-lived monitor: the init is reparented to the monitor, its
//! subreaper, when that child exits.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

use super::backend::{ExecFailure, OciBackend};
use super::console::{self, RemoveOnDrop};
use super::forked::in_child;

/// libcontainer, called in short-lived children of the monitor (exec: in
/// `podrun-monitor exec`'s own process).
#[derive(Debug, Clone)]
pub struct Embedded {
    /// Where the containers' state lives (`<run-root>/libcontainer`).
    pub root: PathBuf,
}

impl Embedded {
    /// The backend for run root `run_root`.
    pub fn new(run_root: &Path) -> Self {
        Self {
            root: run_root.join("libcontainer"),
        }
    }

    fn builder(&self, id: &str) -> Result<ContainerBuilder, String> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| format!("create {}: {e}", self.root.display()))?;
        ContainerBuilder::new(id.to_string(), SyscallType::Linux)
            .with_executor(UnblockSignals)
            .with_root_path(&self.root)
            .and_then(ContainerBuilder::validate_id)
            .map_err(|e| error_chain(&e))
    }

    /// Create and start the container in this process (a child of the
    /// monitor's; see [`OciBackend::create_and_start`]).
    fn create_and_start_here(
        &self,
        id: &str,
        bundle: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<i32, String> {
        let null = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        // The builder owns the descriptors and drops them once the init has
        // its copies: the log pipes then see end-of-file with the container.
        let mut container = self
            .builder(id)?
            .with_stdin(null)
            .with_stdout(stdout)
            .with_stderr(stderr)
            .as_init(bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(|e| start_message(&error_chain(&e)))?;
        if let Err(e) = container.start() {
            let _ = container.delete(true);
            return Err(format!("start: {}", error_chain(&e)));
        }
        container
            .pid()
            .map(|p| p.as_raw())
            .ok_or_else(|| "libcontainer recorded no pid for the init".into())
    }

    fn load(&self, id: &str) -> Result<Container, String> {
        let dir = self.root.join(id);
        if !dir.is_dir() {
            return Err(format!("container {id} does not exist"));
        }
        Container::load(dir).map_err(|e| error_chain(&e))
    }
}

impl OciBackend for Embedded {
    fn create_and_start(
        &self,
        id: &str,
        bundle: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<i32, String> {
        in_child(|| self.create_and_start_here(id, bundle, stdout, stderr))
    }

    fn kill(&self, id: &str, signal: i32) -> Result<(), String> {
        let mut container = self.load(id)?;
        // libcontainer refuses to signal a stopped container (its init exited
        // but the monitor has not reaped it yet): nothing is left to signal.
        if container.status() == ContainerStatus::Stopped {
            return Ok(());
        }
        let signal = Signal::try_from(signal).map_err(|e| error_chain(&e))?;
        container.kill(signal, false).map_err(|e| error_chain(&e))
    }

    fn delete(&self, id: &str) -> Result<(), String> {
        in_child(|| {
            self.load(id)?.delete(true).map_err(|e| error_chain(&e))?;
            Ok(0)
        })
        .map(drop)
    }

    fn exec(&self, id: &str, args: &[String], tty: bool) -> Result<i32, String> {
        if args.is_empty() {
            return Err("exec: no command".into());
        }
        let container = self.load(id)?;
        if container.status() != ContainerStatus::Running {
            return Err(format!(
                "container {id} is not running ({})",
                container.status()
            ));
        }
        // The process runs as runc's exec runs it: the container's process
        // (user, cwd, env, capabilities, rlimits, …) with other arguments.
        let config = container.bundle().join("config.json");
        let spec = Spec::load(&config).map_err(|e| format!("{}: {e}", config.display()))?;
        let mut process = spec
            .process()
            .clone()
            .ok_or_else(|| format!("{}: no process", config.display()))?;
        process
            .set_args(Some(args.to_vec()))
            .set_terminal(Some(tty));
        let me = std::process::id();
        let process_file = self.root.join(format!("exec-{me}.json"));
        let socket = self.root.join(format!("exec-{me}.sock"));
        let _cleanup = RemoveOnDrop(vec![process_file.clone(), socket.clone()]);
        let json = serde_json::to_vec(&process).map_err(|e| format!("process: {e}"))?;
        std::fs::write(&process_file, json)
            .map_err(|e| format!("write {}: {e}", process_file.display()))?;
        let listener = if tty {
            Some(console::listen(&socket)?)
        } else {
            None
        };
        // The process is the child of libcontainer's intermediate process,
        // which exits: be its subreaper, or its exit status is lost.
        console::become_subreaper()?;
        // A console socket is only accepted for a "detached" process; the
        // process is ours to wait for either way.
        let built = self
            .builder(id)?
            .with_console_socket(tty.then_some(&socket))
            .as_tenant()
            .with_process(Some(&process_file))
            .with_detach(tty)
            .build();
        let pid = match built {
            Ok(pid) => pid.as_raw(),
            Err(e) => {
                let msg = error_chain(&e);
                return match ExecFailure::parse(&msg) {
                    Some(failure) => {
                        eprintln!("{failure}");
                        Ok(failure.exit_code())
                    }
                    None => Err(format!("exec in container {id}: {msg}")),
                };
            }
        };
        match listener {
            Some(listener) => console::attach(&listener, pid),
            None => console::wait(pid),
        }
    }
}

/// libcontainer's default executor, after emptying the signal mask: its
/// processes inherit the caller's, and the monitor blocks SIGTERM, SIGINT and
/// SIGCHLD (for its signalfd), which would stay blocked in the container's
/// process across execve (a shell's `trap … TERM` would never run).
#[derive(Clone)]
struct UnblockSignals;

impl Executor for UnblockSignals {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        // SAFETY: sigset_t is plain data that sigemptyset initialises; this
        // process is the container's, single-threaded, about to execve.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Why a container did not start: a missing executable as runc says it,
/// anything else with libcontainer's causes.
fn start_message(chain: &str) -> String {
    ExecFailure::parse(chain).map_or_else(|| chain.to_string(), |f| f.to_string())
}

/// An error and its causes on one line, each said once: libcontainer's errors
/// often print only a summary ("io error") and keep the cause in `source()`,
/// and transparent wrappers repeat their cause's text.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let part = err.to_string();
        if !part.is_empty() && !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        next = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn error_chains_say_each_cause_once() {
        let e = Layer(
            "io error",
            Some(Box::new(Layer(
                "No such file or directory (os error 2)",
                Some(Box::new(Layer(
                    "No such file or directory (os error 2)",
                    None,
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "io error: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_missing_executable_reads_as_runc_says_it() {
        assert_eq!(
            start_message(
                "failed to create container: exec process failed with error \
                 executable 'foo' not found in $PATH"
            ),
            "exec: \"foo\": executable file not found in $PATH"
        );
        assert_eq!(start_message("cgroup: busy"), "cgroup: busy");
    }

    #[test]
    fn state_lives_under_libcontainer() {
        assert_eq!(
            Embedded::new(Path::new("/run/podrun")).root,
            Path::new("/run/podrun/libcontainer")
        );
    }
}
