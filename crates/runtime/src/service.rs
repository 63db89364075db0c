//! The runtime as the pod manager calls it for the containers of one pod
//! sandbox: CRI's RuntimeService calls (ListContainers/ContainerStatus,
//! CreateContainer + StartContainer of a prepared bundle, StopContainer,
//! RemoveContainer, StopPodSandbox) with plain Rust types and typed errors.
//! [`MonitorSandbox`] carries them to the pod's monitor; the pod manager's
//! tests put a recording double behind the same trait.
//!
//! The whole of CRI's RuntimeService, by container ID and for every sandbox,
//! is [`crate::api::RuntimeService`]; this per-sandbox, by-name interface is
//! what the pod manager's worker calls until it moves to that one.

use crate::monitor::{self, ContainerPlan, ContainerState, ControlError, Request, Response};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a start went, when the runtime answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartResult {
    /// It runs; its start is recorded.
    Started {
        /// When it started (RFC 3339, nanoseconds).
        started_at: String,
    },
    /// The OCI runtime could not start it (its `StartError` exit is recorded).
    Failed {
        /// The OCI runtime's reason.
        message: String,
    },
}

/// Why a call did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The sandbox's monitor could not be asked.
    #[error(transparent)]
    Unreachable(#[from] ControlError),
    /// The monitor refused the call.
    #[error("{call}: {message}")]
    Refused {
        /// The call, as CRI names it.
        call: &'static str,
        /// The monitor's reason.
        message: String,
    },
    /// The monitor answered something else than the call's answer.
    #[error("{call}: unexpected answer {answer}")]
    Unexpected {
        /// The call, as CRI names it.
        call: &'static str,
        /// What came back.
        answer: String,
    },
}

/// The containers of one pod sandbox, as CRI's RuntimeService serves them.
pub trait SandboxRuntime {
    /// Every container the sandbox holds, in the order they were started
    /// (ListContainers with ContainerStatus of each).
    fn list_containers(&self) -> Result<Vec<ContainerState>, RuntimeError>;
    /// Create and start a container from its prepared bundle (an exited one
    /// of that name must have been removed).
    fn start_container(&self, container: &ContainerPlan) -> Result<StartResult, RuntimeError>;
    /// Send its stop signal; SIGKILL after `grace` (its own when `None`; zero: now).
    fn stop_container(&self, name: &str, grace: Option<Duration>) -> Result<(), RuntimeError>;
    /// Delete an exited container (an unknown name is not an error).
    fn remove_container(&self, name: &str) -> Result<(), RuntimeError>;
    /// Stop what runs and end the sandbox (its monitor exits).
    fn stop_pod_sandbox(&self) -> Result<(), RuntimeError>;
}

/// A sandbox served by its pod's monitor, asked through its control socket.
pub struct MonitorSandbox {
    run_dir: PathBuf,
    timeout: Duration,
}

impl MonitorSandbox {
    /// The sandbox whose monitor runs in `run_dir`; each call waits at most `timeout`.
    pub fn new(run_dir: &Path, timeout: Duration) -> Self {
        MonitorSandbox {
            run_dir: run_dir.to_path_buf(),
            timeout,
        }
    }

    fn ask(&self, call: &'static str, request: &Request) -> Result<Response, RuntimeError> {
        match monitor::request(&self.run_dir, request, self.timeout)? {
            Response::Error { message } => Err(RuntimeError::Refused { call, message }),
            answer => Ok(answer),
        }
    }

    fn ok(&self, call: &'static str, request: &Request) -> Result<(), RuntimeError> {
        match self.ask(call, request)? {
            Response::Ok => Ok(()),
            other => Err(unexpected(call, &other)),
        }
    }
}

fn unexpected(call: &'static str, answer: &Response) -> RuntimeError {
    RuntimeError::Unexpected {
        call,
        answer: format!("{answer:?}"),
    }
}

impl SandboxRuntime for MonitorSandbox {
    fn list_containers(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        match self.ask("ListContainers", &Request::State)? {
            Response::State { containers } => Ok(containers),
            other => Err(unexpected("ListContainers", &other)),
        }
    }

    fn start_container(&self, container: &ContainerPlan) -> Result<StartResult, RuntimeError> {
        let request = Request::Start {
            container: container.clone(),
        };
        match self.ask("StartContainer", &request)? {
            Response::Started { started_at, .. } => Ok(StartResult::Started { started_at }),
            Response::StartFailed { message } => Ok(StartResult::Failed { message }),
            other => Err(unexpected("StartContainer", &other)),
        }
    }

    fn stop_container(&self, name: &str, grace: Option<Duration>) -> Result<(), RuntimeError> {
        let request = Request::Stop {
            name: name.to_string(),
            signal: None,
            grace_period_ms: grace.map(|g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX)),
        };
        self.ok("StopContainer", &request)
    }

    fn remove_container(&self, name: &str) -> Result<(), RuntimeError> {
        let request = Request::Remove {
            name: name.to_string(),
        };
        self.ok("RemoveContainer", &request)
    }

    fn stop_pod_sandbox(&self) -> Result<(), RuntimeError> {
        self.ok("StopPodSandbox", &Request::Shutdown)
    }
}
