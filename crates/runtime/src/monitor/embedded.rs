//! The embedded OCI backend: youki's libcontainer in the monitor's own process,
//! its state under `<run-root>/libcontainer`, cgroups through cgroupfs or, for a
//! pod under the systemd cgroup driver, through libcontainer's systemd manager (a
//! transient scope per container).
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
use libcontainer::oci_spec::runtime::{Capability, LinuxCapabilities, LinuxSeccomp, Spec};
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

use super::backend::{BackendError, ContainerIo, ExecFailure, OciBackend};
use super::console::{self, RemoveOnDrop};
use super::forked::in_child;

/// A libcontainer error, its causes kept.
type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why the embedded libcontainer could not make, signal, remove or exec in a
/// container.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// create {dir}: {source}
    #[error("create {}: {source}", .dir.display())]
    CreateRoot {
        /// The state directory.
        dir: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// open /dev/null: {0}
    #[error("open /dev/null: {0}")]
    DevNull(#[source] std::io::Error),
    /// {step}: libcontainer's error and its causes, each said once
    #[error("{}", with_step(.step, .source.as_ref()))]
    Libcontainer {
        /// What was being done ("" when the error says it).
        step: &'static str,
        /// libcontainer's error.
        source: Cause,
    },
    /// A missing or unusable executable, as runc words it.
    #[error("{failure}")]
    Executable {
        /// What runc would say.
        failure: ExecFailure,
        /// libcontainer's error.
        source: Cause,
    },
    /// libcontainer recorded no pid for the init
    #[error("libcontainer recorded no pid for the init")]
    NoPid,
    /// container {id} does not exist
    #[error("container {id} does not exist")]
    NoContainer {
        /// The container.
        id: String,
    },
    /// container {id} is not running ({status})
    #[error("container {id} is not running ({status})")]
    NotRunning {
        /// The container.
        id: String,
        /// Its state.
        status: ContainerStatus,
    },
    /// exec: no command
    #[error("exec: no command")]
    NoCommand,
    /// {config}: {source}
    #[error("{}: {source}", .config.display())]
    Spec {
        /// The bundle's config.json.
        config: PathBuf,
        /// What is wrong with it.
        source: libcontainer::oci_spec::OciSpecError,
    },
    /// {config}: no process
    #[error("{}: no process", .config.display())]
    NoProcess {
        /// The bundle's config.json.
        config: PathBuf,
    },
    /// write {file}: {source}
    #[error("write {}: {source}", .file.display())]
    WriteProcess {
        /// The exec's process.json.
        file: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// process: {0}
    #[error("process: {0}")]
    EncodeProcess(#[source] serde_json::Error),
    /// write {value:?} to {file}: {source}
    #[error("write {value:?} to {}: {source}", .file.display())]
    CgroupFile {
        /// The scope's control file.
        file: PathBuf,
        /// The value.
        value: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// The scope's cgroup path.
    #[error("cgroupsPath: {0}")]
    CgroupsPath(#[source] Box<crate::cgroups::SystemdError>),
    /// The exec's terminal or wait failed.
    #[error(transparent)]
    Console(#[from] super::console::ConsoleError),
    /// exec in container {id}: libcontainer's error and its causes
    #[error("exec in container {id}: {}", error_chain(.source.as_ref()))]
    Exec {
        /// The container.
        id: String,
        /// libcontainer's error.
        source: Cause,
    },
}

impl EmbeddedError {
    fn libcontainer(step: &'static str) -> impl FnOnce(Cause) -> EmbeddedError {
        move |source| EmbeddedError::Libcontainer { step, source }
    }
}

fn with_step(step: &str, source: &(dyn std::error::Error + 'static)) -> String {
    if step.is_empty() {
        error_chain(source)
    } else {
        format!("{step}: {}", error_chain(source))
    }
}

/// libcontainer, called in short-lived children of the monitor (exec: in
/// `podrun-monitor exec`'s own process).
#[derive(Debug, Clone)]
pub struct Embedded {
    /// Where the containers' state lives (`<run-root>/libcontainer`).
    pub root: PathBuf,
    /// The containers' cgroups are systemd scopes (their `cgroupsPath` is
    /// `slice:prefix:name`), not directories libcontainer makes itself.
    pub systemd_cgroup: bool,
}

impl Embedded {
    /// The backend for run root `run_root`, on cgroupfs.
    pub fn new(run_root: &Path) -> Self {
        Self {
            root: run_root.join("libcontainer"),
            systemd_cgroup: false,
        }
    }

    /// The same, with the systemd cgroup manager when `systemd` says so.
    pub fn with_systemd_cgroup(mut self, systemd: bool) -> Self {
        self.systemd_cgroup = systemd;
        self
    }

    fn builder(&self, id: &str) -> Result<ContainerBuilder, EmbeddedError> {
        self.builder_with(id, UnblockSignals::default())
    }

    fn builder_with(
        &self,
        id: &str,
        executor: UnblockSignals,
    ) -> Result<ContainerBuilder, EmbeddedError> {
        std::fs::create_dir_all(&self.root).map_err(|source| EmbeddedError::CreateRoot {
            dir: self.root.clone(),
            source,
        })?;
        ContainerBuilder::new(id.to_string(), SyscallType::Linux)
            .with_executor(executor)
            .with_root_path(&self.root)
            .and_then(ContainerBuilder::validate_id)
            .map_err(|e| EmbeddedError::libcontainer("")(e.into()))
    }

    /// Create and start the container in this process (a child of the
    /// monitor's; see [`OciBackend::create_and_start`]).
    fn create_and_start_here(
        &self,
        id: &str,
        bundle: &Path,
        io: ContainerIo<'_>,
    ) -> Result<i32, EmbeddedError> {
        let null = || -> Result<OwnedFd, EmbeddedError> {
            Ok(std::fs::File::open("/dev/null")
                .map_err(EmbeddedError::DevNull)?
                .into())
        };
        // With a terminal the init's streams become the pty's slave.
        let (stdin, stdout, stderr, console) = match io {
            ContainerIo::Pipes {
                stdin,
                stdout,
                stderr,
            } => (stdin.map_or_else(null, Ok)?, stdout, stderr, None),
            ContainerIo::Terminal { console_socket } => {
                (null()?, null()?, null()?, Some(console_socket))
            }
        };
        // The builder owns the descriptors and drops them once the init has
        // its copies: the log pipes then see end-of-file with the container.
        let mut container = self
            .builder(id)?
            .with_stdin(stdin)
            .with_stdout(stdout)
            .with_stderr(stderr)
            .with_console_socket(console)
            .as_init(bundle)
            .with_systemd(self.systemd_cgroup)
            .with_detach(true)
            .build()
            .map_err(|e| start_error(e.into()))?;
        if self.systemd_cgroup {
            if let Err(e) = write_unified(bundle) {
                let _ = container.delete(true);
                return Err(e);
            }
        }
        if let Err(e) = container.start() {
            let _ = container.delete(true);
            return Err(EmbeddedError::libcontainer("start")(e.into()));
        }
        container
            .pid()
            .map(|p| p.as_raw())
            .ok_or(EmbeddedError::NoPid)
    }

    fn load(&self, id: &str) -> Result<Container, EmbeddedError> {
        let dir = self.root.join(id);
        if !dir.is_dir() {
            return Err(EmbeddedError::NoContainer { id: id.into() });
        }
        Container::load(dir).map_err(|e| EmbeddedError::libcontainer("")(e.into()))
    }
}

impl OciBackend for Embedded {
    fn create_and_start(
        &self,
        id: &str,
        bundle: &Path,
        io: ContainerIo<'_>,
    ) -> Result<i32, BackendError> {
        Ok(in_child(|| self.create_and_start_here(id, bundle, io))?)
    }

    fn kill(&self, id: &str, signal: i32) -> Result<(), BackendError> {
        let mut container = self.load(id)?;
        // libcontainer refuses to signal a stopped container (its init exited
        // but the monitor has not reaped it yet): nothing is left to signal.
        if container.status() == ContainerStatus::Stopped {
            return Ok(());
        }
        let signal =
            Signal::try_from(signal).map_err(|e| EmbeddedError::libcontainer("")(e.into()))?;
        container
            .kill(signal, false)
            .map_err(|e| EmbeddedError::libcontainer("")(e.into()))?;
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<(), BackendError> {
        in_child(|| {
            self.load(id)?
                .delete(true)
                .map_err(|e| EmbeddedError::libcontainer("")(e.into()))?;
            Ok::<_, EmbeddedError>(0)
        })?;
        Ok(())
    }

    fn exec(&self, id: &str, args: &[String], tty: bool) -> Result<i32, BackendError> {
        Ok(self.exec_here(id, args, tty)?)
    }
}

impl Embedded {
    /// [`OciBackend::exec`] in this process.
    fn exec_here(&self, id: &str, args: &[String], tty: bool) -> Result<i32, EmbeddedError> {
        if args.is_empty() {
            return Err(EmbeddedError::NoCommand);
        }
        let container = self.load(id)?;
        if container.status() != ContainerStatus::Running {
            return Err(EmbeddedError::NotRunning {
                id: id.into(),
                status: container.status(),
            });
        }
        // The process runs as runc's exec runs it: the container's process
        // (user, cwd, env, capabilities, rlimits, …) with other arguments.
        let config = container.bundle().join("config.json");
        let spec = match Spec::load(&config) {
            Ok(spec) => spec,
            Err(source) => return Err(EmbeddedError::Spec { config, source }),
        };
        let Some(mut process) = spec.process().clone() else {
            return Err(EmbeddedError::NoProcess { config });
        };
        process
            .set_args(Some(args.to_vec()))
            .set_terminal(Some(tty));
        let executor = exec_seccomp(&spec, &mut process);
        let me = std::process::id();
        let process_file = self.root.join(format!("exec-{me}.json"));
        let socket = self.root.join(format!("exec-{me}.sock"));
        let _cleanup = RemoveOnDrop(vec![process_file.clone(), socket.clone()]);
        let json = serde_json::to_vec(&process).map_err(EmbeddedError::EncodeProcess)?;
        if let Err(source) = std::fs::write(&process_file, json) {
            return Err(EmbeddedError::WriteProcess {
                file: process_file,
                source,
            });
        }
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
            .builder_with(id, executor)?
            .with_console_socket(tty.then_some(&socket))
            .as_tenant()
            .with_process(Some(&process_file))
            .with_detach(tty)
            .build();
        let pid = match built {
            Ok(pid) => pid.as_raw(),
            Err(e) => {
                return match ExecFailure::parse(&error_chain(&e)) {
                    Some(failure) => {
                        eprintln!("{failure}");
                        Ok(failure.exit_code())
                    }
                    None => Err(EmbeddedError::Exec {
                        id: id.into(),
                        source: e.into(),
                    }),
                };
            }
        };
        Ok(match listener {
            Some(listener) => console::attach(&listener, pid)?,
            None => console::wait(pid)?,
        })
    }
}

/// libcontainer's default executor, after emptying the signal mask: its
/// processes inherit the caller's, and the monitor blocks SIGTERM, SIGINT and
/// SIGCHLD (for its signalfd), which would stay blocked in the container's
/// process across execve (a shell's `trap … TERM` would never run). For an
/// exec'd process it also loads the container's seccomp filter (see
/// [`exec_seccomp`]).
#[derive(Clone, Default)]
struct UnblockSignals {
    seccomp: Option<ExecSeccomp>,
}

/// The container's seccomp filter for an exec'd process, and the capabilities
/// the process is to keep once the filter is loaded (None: what it has).
#[derive(Clone)]
struct ExecSeccomp {
    filter: LinuxSeccomp,
    keep: Option<LinuxCapabilities>,
}

/// The executor for a process exec'd in a container of `spec`, whose process
/// `process` (the exec's) may be changed for it. libcontainer 0.7 runs an exec
/// without the container's seccomp filter (its tenant builder keeps only the
/// namespaces, cgroup, personality and time offsets of the container's `linux`:
/// container/tenant_builder.rs); runc loads it into every exec'd process
/// (setns_init_linux.go). So the executor loads it, right before execve. Without
/// no_new_privs that needs CAP_SYS_ADMIN, as it does for runc, which loads it
/// before dropping capabilities: the process is given CAP_SYS_ADMIN (and
/// CAP_SETPCAP, to drop from the bounding set) until the filter is loaded, then
/// dropped to the capabilities asked for.
fn exec_seccomp(
    spec: &Spec,
    process: &mut libcontainer::oci_spec::runtime::Process,
) -> UnblockSignals {
    let Some(filter) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) else {
        return UnblockSignals::default();
    };
    let keep = process.capabilities().clone();
    if process.no_new_privileges() != Some(true) {
        if let Some(mut caps) = keep.clone() {
            let more = |set: &Option<libcontainer::oci_spec::runtime::Capabilities>| {
                let mut set = set.clone().unwrap_or_default();
                set.insert(Capability::SysAdmin);
                set.insert(Capability::Setpcap);
                Some(set)
            };
            let (bounding, effective, permitted) = (
                more(caps.bounding()),
                more(caps.effective()),
                more(caps.permitted()),
            );
            caps.set_bounding(bounding)
                .set_effective(effective)
                .set_permitted(permitted);
            process.set_capabilities(Some(caps));
        }
    }
    UnblockSignals {
        seccomp: Some(ExecSeccomp { filter, keep }),
    }
}

impl Executor for UnblockSignals {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        // SAFETY: sigset_t is plain data that sigemptyset initialises; this
        // process is the container's, single-threaded, about to execve.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        }
        if let Some(seccomp) = &self.seccomp {
            let listener = libcontainer::seccomp::initialize_seccomp(&seccomp.filter)
                .map_err(|e| ExecutorError::Other(format!("load the seccomp filter: {e}")))?;
            if let Some(fd) = listener {
                // SAFETY: the listener's descriptor is ours, and no one else's:
                // an exec has no seccomp agent to hand it to.
                drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
            }
            if let Some(keep) = &seccomp.keep {
                let syscall = libcontainer::syscall::syscall::create_syscall();
                libcontainer::capabilities::drop_privileges(keep, syscall.as_ref())
                    .map_err(|e| ExecutorError::Other(format!("drop capabilities: {e}")))?;
            }
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Why a container did not start: a missing executable as runc says it,
/// anything else with libcontainer's causes.
/// libcontainer 0.7's systemd manager turns the spec's resources into the scope's
/// properties, but reads a unified `cpu.weight` as if it were shares (converting it
/// again) and drops the unified keys it has no property for (`memory.oom.group`,
/// `memory.swap.max`). Write the unified values into the scope's own files after
/// it is made, before the container starts: runc's systemd manager likewise writes
/// every resource through its cgroupfs manager after setting the unit's properties
/// (libcontainer/cgroups/systemd/v2.go `Set`). The scope is delegated to the
/// container, so systemd leaves these files alone.
fn write_unified(bundle: &Path) -> Result<(), EmbeddedError> {
    let config = bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|source| EmbeddedError::Spec {
        config: config.clone(),
        source,
    })?;
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let (Some(path), Some(unified)) = (
        linux.cgroups_path(),
        linux.resources().as_ref().and_then(|r| r.unified().clone()),
    ) else {
        return Ok(());
    };
    let dir = crate::cgroups::systemd::cgroup_dir(&path.to_string_lossy())
        .map_err(|e| EmbeddedError::CgroupsPath(Box::new(e)))?;
    let mut keys: Vec<_> = unified.into_iter().collect();
    keys.sort();
    for (key, value) in keys {
        if key.contains('/') {
            continue;
        }
        let file = dir.join(&key);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()))
            .map_err(|source| EmbeddedError::CgroupFile {
                file,
                value,
                source,
            })?;
    }
    Ok(())
}

fn start_error(source: Cause) -> EmbeddedError {
    match ExecFailure::parse(&error_chain(source.as_ref())) {
        Some(failure) => EmbeddedError::Executable { failure, source },
        None => EmbeddedError::libcontainer("")(source),
    }
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
        let missing = Layer(
            "failed to create container: exec process failed with error \
             executable 'foo' not found in $PATH",
            None,
        );
        let e = start_error(Box::new(missing));
        assert!(matches!(e, EmbeddedError::Executable { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "exec: \"foo\": executable file not found in $PATH"
        );
        let e = start_error(Box::new(Layer("cgroup: busy", None)));
        assert_eq!(e.to_string(), "cgroup: busy");
    }

    #[test]
    fn state_lives_under_libcontainer() {
        assert_eq!(
            Embedded::new(Path::new("/run/podrun")).root,
            Path::new("/run/podrun/libcontainer")
        );
    }
}
