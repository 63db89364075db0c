//! Graceful termination of an agent's pod, as kubelet's killPodWithSyncResult
//! does it (pkg/kubelet/kuberuntime/kuberuntime_container.go
//! killContainersWithSyncResult, killContainer): every running container at
//! once records its `Killing` event and runs its preStop hook (exec, sleep,
//! httpGet), whose time counts against the grace period; then waits for its
//! turn in `termination_order` (main and regular init containers together,
//! then each sidecar alone, the last one first); then gets its stop signal
//! with what is left of the grace period, but never less than kubelet's
//! minimumGracePeriodInSeconds (2 s), and SIGKILL when that is up. The end of
//! the grace period is read again while waiting: a deletion asked again with
//! a shorter grace period cuts the termination short.

use crate::pods::{InSandbox, PodState};
use crate::probe::HandlerError;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use podrun_runtime::api::{
    ContainerFilter, ContainerState, RuntimeService, SandboxState, ServiceError,
};
use std::time::{Duration, Instant};

/// Something to record as an event: (type, reason, message).
pub type Events<'a> = &'a (dyn Fn(&str, &str, String) + Sync);

/// When the pod's grace period ends; asked again while waiting, as it may
/// move earlier.
pub type Deadline<'a> = &'a (dyn Fn() -> Instant + Sync);

/// kubelet's minimumGracePeriodInSeconds: the least time a container is
/// given between its stop signal and SIGKILL.
pub const MINIMUM_GRACE: Duration = Duration::from_secs(2);

/// How often a waiting container looks at the others and at the deadline.
const POLL: Duration = Duration::from_millis(25);

/// Stop every container of the pod of `state` in kubelet's way (above) by
/// `deadline`, through the runtime's StopContainer; the sandbox is then the
/// caller's to stop. A pod whose sandbox is not ready (its monitor is gone)
/// is left to its removal.
pub fn terminate(
    runtime: &dyn RuntimeService,
    state: &PodState,
    pod: &Pod,
    deadline: Deadline,
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
    match stop_all(&target, pod, deadline, events) {
        // A monitor that stopped listening is ending the sandbox already.
        Err(ServiceError::NotRunning { .. }) => Ok(()),
        other => other,
    }
}

/// Each running container, with the containers that must be gone before its
/// turn comes (those of the groups before its own).
fn turns(pod: &Pod, running: &[String]) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut before: Vec<String> = Vec::new();
    for group in podrun_kubelet::termination_order(pod) {
        let group: Vec<String> = group.into_iter().filter(|n| running.contains(n)).collect();
        out.extend(group.iter().map(|n| (n.clone(), before.clone())));
        before.extend(group);
    }
    out
}

fn stop_all(
    target: &InSandbox,
    pod: &Pod,
    deadline: Deadline,
    events: Events,
) -> Result<(), ServiceError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let containers: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .collect();
    let turns = turns(pod, &running(target)?);
    // Killing is recorded for all of them when termination starts.
    for (name, _) in &turns {
        events("Normal", "Killing", format!("Stopping container {name}"));
    }
    std::thread::scope(|s| {
        let threads: Vec<_> = turns
            .iter()
            .map(|(name, waits_for)| {
                let hook = containers
                    .iter()
                    .find(|c| &c.name == name)
                    .and_then(|c| c.lifecycle.as_ref()?.pre_stop.as_ref());
                s.spawn(move || kill_container(target, name, hook, waits_for, deadline, events))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or(Ok(())))
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    })
}

/// kubelet's killContainer for container `name`: its preStop hook, its turn
/// (every container of `waits_for` gone, or the grace period up), its stop
/// signal with at least [`MINIMUM_GRACE`], then until it is gone.
fn kill_container(
    target: &InSandbox,
    name: &str,
    pre_stop: Option<&LifecycleHandler>,
    waits_for: &[String],
    deadline: Deadline,
    events: Events,
) -> Result<(), ServiceError> {
    if let Some(hook) = pre_stop {
        let left = deadline().saturating_duration_since(Instant::now());
        if !left.is_zero() {
            if let Err(e) = run_hook(target, name, hook, left) {
                events(
                    "Warning",
                    "FailedPreStopHook",
                    format!("PreStopHook failed: container {name}: {e}"),
                );
            }
        }
    }
    while !waits_for.is_empty() && Instant::now() < deadline() {
        let running = running(target)?;
        if waits_for.iter().all(|n| !running.contains(n)) {
            break;
        }
        std::thread::sleep(POLL);
    }
    let id = target.container_id(name);
    let grace = |now: Instant| deadline().saturating_duration_since(now).max(MINIMUM_GRACE);
    let now = Instant::now();
    let mut kill_at = now + grace(now);
    target.runtime.stop_container(&id, Some(kill_at - now))?;
    // Until it is gone (SIGKILL comes at kill_at from the runtime); a
    // deadline moved earlier is passed on (the runtime keeps the earlier).
    while Instant::now() < kill_at + Duration::from_secs(5) {
        if !running(target)?.contains(&name.to_string()) {
            break;
        }
        let now = Instant::now();
        let sooner = now + grace(now);
        if sooner < kill_at {
            kill_at = sooner;
            target.runtime.stop_container(&id, Some(kill_at - now))?;
        }
        std::thread::sleep(POLL);
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
