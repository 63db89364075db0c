//! Graceful termination of an agent's pod, as kubelet's killPodWithSyncResult
//! does it: the containers in `termination_order` (main and regular init
//! containers together, then each sidecar alone, the last one first), each
//! group given what is left of the pod's grace period. A container's preStop
//! hook (exec, sleep, httpGet) runs first and its time counts against the grace
//! period; then its stop signal, and SIGKILL when the time is up
//! (pkg/kubelet/kuberuntime/kuberuntime_container.go killContainer).

use crate::pods::{InSandbox, PodState};
use crate::probe::HandlerError;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use podrun_runtime::api::{
    ContainerFilter, ContainerState, RuntimeService, SandboxState, ServiceError,
};
use std::time::{Duration, Instant};

/// Something to record as an event: (type, reason, message).
pub type Events<'a> = &'a (dyn Fn(&str, &str, String) + Sync);

/// Stop every container of the pod of `state` in kubelet's order within
/// `grace` (default: the pod's terminationGracePeriodSeconds), through the
/// runtime's StopContainer; the sandbox is then the caller's to stop. A pod
/// whose sandbox is not ready (its monitor is gone) is left to its removal.
pub fn terminate(
    runtime: &dyn RuntimeService,
    state: &PodState,
    pod: &Pod,
    grace: Option<Duration>,
    events: Events,
) -> Result<(), ServiceError> {
    let sandbox = match runtime.pod_sandbox_status(&state.record.pod_id) {
        Ok(s) if s.sandbox.state == SandboxState::Ready => s,
        Ok(_) | Err(ServiceError::SandboxNotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let target = InSandbox {
        state,
        runtime,
        sandbox: &sandbox,
    };
    match stop_in_order(&target, pod, grace, events) {
        // A monitor that stopped listening is ending the sandbox already.
        Err(ServiceError::NotRunning { .. }) => Ok(()),
        other => other,
    }
}

fn stop_in_order(
    target: &InSandbox,
    pod: &Pod,
    grace: Option<Duration>,
    events: Events,
) -> Result<(), ServiceError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let grace = grace.unwrap_or_else(|| podrun_kubelet::grace::pod_grace_period(pod));
    let deadline = Instant::now() + grace;
    let containers: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .collect();
    for group in podrun_kubelet::termination_order(pod) {
        let now_running = running(target)?;
        let group: Vec<String> = group
            .into_iter()
            .filter(|n| now_running.contains(n))
            .collect();
        if group.is_empty() {
            continue;
        }
        // preStop hooks of the group run side by side, each bounded by the grace left.
        std::thread::scope(|s| {
            for name in &group {
                if let Some(hook) = containers
                    .iter()
                    .find(|c| &c.name == name)
                    .and_then(|c| c.lifecycle.as_ref()?.pre_stop.as_ref())
                {
                    s.spawn(move || {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if let Err(e) = run_hook(target, name, hook, left) {
                            events(
                                "Warning",
                                "FailedPreStopHook",
                                format!("PreStopHook failed: container {name}: {e}"),
                            );
                        }
                    });
                }
            }
        });
        for name in &group {
            events("Normal", "Killing", format!("Stopping container {name}"));
            let left = deadline.saturating_duration_since(Instant::now());
            target
                .runtime
                .stop_container(&target.container_id(name), Some(left))?;
        }
        // Until they are gone (SIGKILL comes at the deadline from the runtime).
        let until = deadline + Duration::from_secs(5);
        while Instant::now() < until {
            let running = running(target)?;
            if group.iter().all(|n| !running.contains(n)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// The names of the sandbox's containers that run.
fn running(target: &InSandbox) -> Result<Vec<String>, ServiceError> {
    let filter = ContainerFilter {
        sandbox_id: Some(target.sandbox.sandbox.id.clone()),
        state: Some(ContainerState::Running),
        ..Default::default()
    };
    Ok(target
        .runtime
        .list_containers(&filter)?
        .into_iter()
        .map(|c| c.name)
        .collect())
}

/// Run a lifecycle hook of container `name` within `timeout`.
pub fn run_hook(
    pod: &InSandbox,
    name: &str,
    hook: &LifecycleHandler,
    timeout: Duration,
) -> Result<(), HandlerError> {
    if let Some(sleep) = &hook.sleep {
        std::thread::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout));
        return Ok(());
    }
    if let Some(exec) = &hook.exec {
        let command = exec.command.clone().unwrap_or_default();
        let done = exec_in(pod, name, &command, timeout)?;
        if done.code != 0 {
            return Err(HandlerError::Failed(done.failure(&command)));
        }
        return Ok(());
    }
    if let Some(http) = &hook.http_get {
        // Any answer will do: kubelet's hook fails only when no answer comes
        // (pkg/kubelet/lifecycle/handlers.go runHTTPHandler), redirects
        // followed as for probes (pkg/kubelet/kubelet.go gives its client
        // the prober's RedirectChecker).
        use crate::probe::{http::Purpose, http_get};
        return http_get(pod, name, http, Purpose::Lifecycle, timeout).map(|_| ());
    }
    Err(HandlerError::NoHandler("the hook (exec, httpGet or sleep)"))
}

/// What a command run in a container did.
#[derive(Debug)]
pub struct ExecOutput {
    /// Its exit code.
    pub code: i32,
    /// Its stdout and stderr together, at most [`MAX_EXEC_OUTPUT`] bytes
    /// (kubelet's exec prober reads 10 KiB: pkg/probe/exec `maxReadLength`).
    pub output: String,
}

/// How much of an exec probe's or hook's output is kept.
pub const MAX_EXEC_OUTPUT: usize = 10 * 1024;

impl ExecOutput {
    /// Why it failed, in kubelet's words: its output (`cat: can't open
    /// '/tmp/healthy': No such file or directory`); the exit code when it said
    /// nothing (kubelet's message is then empty: podrun's says what happened).
    pub fn failure(&self, command: &[String]) -> String {
        let said = self.output.trim_end();
        if said.is_empty() {
            format!("command {command:?} exited with {}", self.code)
        } else {
            said.to_string()
        }
    }
}

/// Run `command` in container `name` through the runtime's ExecSync; its
/// exit code and output (stdout, then stderr, as kubelet's RunInContainer
/// puts them together: pkg/kubelet/kuberuntime/kuberuntime_container.go),
/// or an error after `timeout`.
pub fn exec_in(
    pod: &InSandbox,
    name: &str,
    command: &[String],
    timeout: Duration,
) -> Result<ExecOutput, HandlerError> {
    let id = pod.container_id(name);
    match pod.runtime.exec_sync(&id, command, timeout) {
        Ok(done) => {
            let mut kept = done.stdout;
            kept.extend_from_slice(&done.stderr);
            kept.truncate(MAX_EXEC_OUTPUT);
            Ok(ExecOutput {
                code: done.exit_code,
                output: String::from_utf8_lossy(&kept).into_owned(),
            })
        }
        Err(ServiceError::ExecTimeout { .. }) => Err(HandlerError::ExecTimeout {
            command: command.to_vec(),
            timeout,
        }),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::ExecOutput;

    /// A failed exec probe or hook is told by the command's output, as
    /// kubelet tells it; a silent one by its exit code.
    #[test]
    fn a_failure_is_told_by_the_commands_output() {
        let command = vec!["cat".to_string(), "/tmp/healthy".to_string()];
        let said = ExecOutput {
            code: 1,
            output: "cat: can't open '/tmp/healthy': No such file or directory\n".into(),
        };
        assert_eq!(
            said.failure(&command),
            "cat: can't open '/tmp/healthy': No such file or directory"
        );
        let silent = ExecOutput {
            code: 3,
            output: String::new(),
        };
        assert_eq!(
            silent.failure(&command),
            r#"command ["cat", "/tmp/healthy"] exited with 3"#
        );
    }
}
