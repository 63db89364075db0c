//! Graceful termination of an agent's pod, as kubelet's killPodWithSyncResult
//! does it: the containers in `termination_order` (main and regular init
//! containers together, then each sidecar alone, the last one first), each
//! group given what is left of the pod's grace period. A container's preStop
//! hook (exec, sleep, httpGet) runs first and its time counts against the grace
//! period; then its stop signal, and SIGKILL when the time is up
//! (pkg/kubelet/kuberuntime/kuberuntime_container.go killContainer).

use crate::pods::{self, PodState};
use anyhow::Result;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use podrun_runtime::monitor;
use std::time::{Duration, Instant};

/// Something to record as an event: (type, reason, message).
pub type Events<'a> = &'a (dyn Fn(&str, &str, String) + Sync);

/// Stop every container of the pod of `state` in kubelet's order within
/// `grace` (default: the pod's terminationGracePeriodSeconds), then tell its
/// monitor to shut down. A pod whose monitor is gone is left to teardown.
pub fn terminate(
    state: &PodState,
    pod: &Pod,
    grace: Option<Duration>,
    events: Events,
) -> Result<()> {
    match stop_in_order(state, pod, grace, events) {
        // A monitor that stopped listening is shutting down already.
        Err(e)
            if e.downcast_ref::<monitor::ControlError>()
                .is_some_and(|c| matches!(c, monitor::ControlError::NotListening { .. })) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn stop_in_order(
    state: &PodState,
    pod: &Pod,
    grace: Option<Duration>,
    events: Events,
) -> Result<()> {
    // The monitor's control socket is in the runtime's sandbox directory.
    let run_dir = &state.sandbox_dir;
    if !monitor::monitor_alive(run_dir) {
        return Ok(());
    }
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
        let now_running = running(run_dir)?;
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
                        if let Err(e) = run_hook(state, name, hook, left) {
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
            monitor::request(
                run_dir,
                &monitor::Request::Stop {
                    name: name.clone(),
                    signal: None,
                    grace_period_ms: Some(podrun_kubelet::grace::millis(left)),
                },
                Duration::from_secs(10),
            )?;
        }
        // Until they are gone (SIGKILL comes at the deadline from the monitor).
        let until = deadline + Duration::from_secs(5);
        while Instant::now() < until {
            let running = running(run_dir)?;
            if group.iter().all(|n| !running.contains(n)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    monitor::request(
        run_dir,
        &monitor::Request::Shutdown,
        Duration::from_secs(10),
    )?;
    Ok(())
}

fn running(run_dir: &std::path::Path) -> Result<Vec<String>> {
    match monitor::request(run_dir, &monitor::Request::State, Duration::from_secs(10))? {
        monitor::Response::State { containers } => Ok(containers
            .into_iter()
            .filter(|c| c.running)
            .map(|c| c.name)
            .collect()),
        other => anyhow::bail!("the monitor answered {other:?}"),
    }
}

/// Run a lifecycle hook of container `name` within `timeout`.
pub fn run_hook(
    state: &PodState,
    name: &str,
    hook: &LifecycleHandler,
    timeout: Duration,
) -> Result<()> {
    if let Some(sleep) = &hook.sleep {
        std::thread::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout));
        return Ok(());
    }
    if let Some(exec) = &hook.exec {
        let command = exec.command.clone().unwrap_or_default();
        let done = exec_in(state, name, &command, timeout)?;
        if done.code != 0 {
            anyhow::bail!("{}", done.failure(&command));
        }
        return Ok(());
    }
    if let Some(http) = &hook.http_get {
        // Any answer will do: kubelet's hook fails only when no answer comes
        // (pkg/kubelet/lifecycle/handlers.go runHTTPHandler), redirects
        // followed as for probes (pkg/kubelet/kubelet.go gives its client
        // the prober's RedirectChecker).
        use crate::probe::{http::Purpose, http_get};
        return http_get(state, name, http, Purpose::Lifecycle, timeout).map(|_| ());
    }
    anyhow::bail!("a hook with no handler (exec, httpGet or sleep)")
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

/// Run `command` in container `name` (through `podrun-monitor exec`, which
/// the embedded backend needs); its exit code and output, or an error after
/// `timeout`.
pub fn exec_in(
    state: &PodState,
    name: &str,
    command: &[String],
    timeout: Duration,
) -> Result<ExecOutput> {
    // One pipe for both streams, as kubelet's CombinedOutput; read on a
    // thread of its own so that a chatty command never blocks on a full pipe.
    let (reader, writer) = std::io::pipe()?;
    let mut child = std::process::Command::new(crate::create::sibling("podrun-monitor")?)
        .arg("exec")
        .arg("--plan")
        .arg(state.sandbox_dir.join("plan.json"))
        .arg("--id")
        .arg(pods::container_id(&state.record.pod_id, name))
        .arg("--")
        .args(command)
        .stdin(std::process::Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .spawn()?;
    let collect = std::thread::spawn(move || {
        use std::io::Read;
        let mut kept = Vec::new();
        let mut reader = reader;
        let _ = (&mut reader)
            .take(MAX_EXEC_OUTPUT as u64)
            .read_to_end(&mut kept);
        // The rest is read and dropped: the command must not block on it.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        String::from_utf8_lossy(&kept).into_owned()
    });
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let output = collect.join().unwrap_or_default();
            return Ok(ExecOutput {
                code: status.code().unwrap_or(128 + 9),
                output,
            });
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("command {command:?} timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
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
