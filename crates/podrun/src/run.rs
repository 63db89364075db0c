//! `podrun run -f pod.yaml`: one pod (with the ConfigMaps, Secrets and
//! PersistentVolumeClaims beside it; a claim's directory is under `--root`, so
//! its data is there for the next run). In the foreground, the agent's pod manager runs it in this process:
//! the containers' logs stream prefixed by their names and the pod's exit
//! code is returned (Ctrl-C stops it gracefully and removes it). With
//! `--detach` the pod goes to the agent, as `podrun apply` sends it, and the
//! command returns once its containers started.

use crate::Cli;
use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Pod;
use podrun_agent::pods;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The manifest: one Pod, and the ConfigMaps, Secrets and PersistentVolumeClaims it uses (YAML or JSON, multi-document).
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    /// Hand the pod to the agent (started if none runs) and return once its containers started.
    #[arg(short = 'd', long)]
    detach: bool,
}

pub async fn run(cli: &'static Cli, args: &RunArgs) -> Result<i32> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("read {}", args.file.display()))?;
    let source = args.file.display().to_string();
    // Checked here, before an agent is asked or started: a bad file changes nothing.
    let objects = podrun_spec::load_runnable(&text, &source)?;
    let pods: Vec<&Pod> = objects
        .iter()
        .filter_map(|o| match o {
            podrun_spec::Object::Pod(p) => Some(p),
            _ => None,
        })
        .collect();
    let [pod] = pods.as_slice() else {
        bail!(
            "{source}: podrun run takes exactly one Pod, found {}",
            pods.len()
        );
    };
    if args.detach {
        crate::kubectl::create(cli, vec![(source, text)])?;
        return Ok(0);
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    foreground(cli, &text, &source, namespace, name).await
}

/// A pod in the foreground, run by the agent's pod manager in this process
/// (state in memory): kubelet's rules (init containers, sidecars, restarts,
/// probes, hooks) as under `podrun serve`. Logs stream as `name | line`; the
/// command ends when the pod does (or on Ctrl-C, which stops it gracefully),
/// removes it, and returns the first non-zero exit code of its containers.
async fn foreground(
    cli: &'static Cli,
    text: &str,
    source: &str,
    namespace: &str,
    name: &str,
) -> Result<i32> {
    use podrun_agent::{self as agent, api::Response};
    // SIGINT is ours from now on: `tokio::signal::ctrl_c()` registers only when
    // first polled, and a Ctrl-C before that (while the pod starts, or right after
    // its first log line) killed this process and left the pod running.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let manager = agent::Agent::in_process(cli.settings())?;
    let applied = agent::apply(
        &manager,
        &[(source.to_string(), text.to_string())],
        "run",
        agent::Existing::Refuse,
    )
    .await?;
    // What the removal could not do, each naming the pod: the run fails
    // with it (a pod half removed is not silent).
    let remove = |manager: std::sync::Arc<agent::Agent>| async move {
        match agent::delete(&manager, namespace, &[name.to_string()], None, true).await {
            Ok(Response::Done { warnings, .. }) => warnings,
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("{e:#}")],
        }
        .into_iter()
        .map(|w| format!("pod/{name}: remove: {w}"))
        .collect::<Vec<String>>()
    };
    if let Response::Done {
        warnings,
        failed: true,
        ..
    } = applied
    {
        let left = remove(manager.clone()).await;
        bail!("{}", [warnings, left].concat().join("; "));
    }
    let row = manager
        .pod(namespace, name)?
        .with_context(|| format!("pod/{name}: not stored"))?;
    let pod: Pod = serde_json::from_str(&row.manifest)?;
    let run_dir = cli.run_root.join("pods").join(&row.pod_id);
    // Held while this process manages the pod: `get` in another terminal
    // shows what it reports below, and Unknown once it is gone.
    let _lock = pods::RunLock::take(&run_dir)
        .map_err(|e| tracing::warn!("pod/{name}: {e:#}: get will show it Unknown"))
        .ok();
    let mut reported: Option<String> = None;
    let mut unmade = None;
    let mut tails: Vec<(String, agent::logs::Follower)> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .map(|c| {
            (
                c.name.clone(),
                // Every instance of it, across its rotations.
                agent::logs::Follower::container(agent::logs::container_dir(&run_dir, &c.name)),
            )
        })
        .collect();
    loop {
        pump(&mut tails);
        let row = manager.pod(namespace, name)?;
        if row
            .as_ref()
            .is_none_or(|r| r.state == agent::db::PodPhase::Finished)
        {
            break;
        }
        if let Some(status) = row.and_then(|r| r.status) {
            // As `podman kube play`: a container that cannot be made ends
            // the run (the agent would retry it with back-off forever).
            unmade = cannot_be_made(name, &status);
            if unmade.is_some() {
                break;
            }
            if reported.as_ref() != Some(&status) {
                if let Err(e) = pods::write_status(&run_dir, &status) {
                    tracing::warn!("pod/{name}: report its status: {e:#}");
                }
                reported = Some(status);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = interrupt.recv() => {
                eprintln!("podrun: stopping pod/{name}");
                break;
            }
        }
    }
    // The exit codes, from the status last stored, before the pod goes.
    let status: Option<k8s_openapi::api::core::v1::PodStatus> = manager
        .pod(namespace, name)?
        .and_then(|r| r.status)
        .and_then(|s| serde_json::from_str(&s).ok());
    let left = remove(manager.clone()).await;
    pump(&mut tails);
    let code = status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref();
            t.map(|t| t.exit_code)
                .or_else(|| Some(c.last_state.as_ref()?.terminated.as_ref()?.exit_code))
        })
        .find(|c| *c != 0)
        .unwrap_or(0);
    let start_error = status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .find_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            (t.reason.as_deref() == Some("StartError")).then(|| {
                format!(
                    "pod/{name}: container {}: start: {}",
                    c.name,
                    t.message.as_deref().unwrap_or("unknown error")
                )
            })
        });
    if let Some(e) = unmade.or(start_error) {
        bail!("{e}");
    }
    if !left.is_empty() {
        bail!("{}", left.join("; "));
    }
    Ok(code)
}

/// The reasons kubelet gives a container it could not make (its image, its
/// environment, its root filesystem); the run's first sync reports the same
/// in its answer, a later one (a container after the init containers) only
/// in the status.
const UNMADE: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// The first container of pod `name` that its v1 `status` (JSON) shows
/// waiting for one of the [`UNMADE`] reasons, as the run's error:
/// `pod/NAME: container C: cause`.
fn cannot_be_made(name: &str, status: &str) -> Option<String> {
    let status: k8s_openapi::api::core::v1::PodStatus = serde_json::from_str(status).ok()?;
    let statuses = status.init_container_statuses.iter().flatten();
    statuses
        .chain(status.container_statuses.iter().flatten())
        .find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref()?;
            UNMADE.contains(&reason).then(|| {
                let cause = waiting.message.as_deref().unwrap_or(reason);
                format!("pod/{name}: container {}: {cause}", c.name)
            })
        })
}

fn pump(tails: &mut [(String, podrun_agent::logs::Follower)]) {
    for (name, tail) in tails.iter_mut() {
        tail.pump_into(|line| {
            let Some(l) = pods::parse_log_line(line) else {
                return;
            };
            let newline = if l.partial { "" } else { "\n" };
            let out = format!("{name} | {}{newline}", l.content);
            if l.stream == "stderr" {
                let _ = std::io::stderr().write_all(out.as_bytes());
            } else {
                let _ = std::io::stdout().write_all(out.as_bytes());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::cannot_be_made;

    /// A container waiting for a reason of its making is the run's error;
    /// one waiting for its turn or a restart is not.
    #[test]
    fn a_container_that_cannot_be_made_is_named() {
        let status = |reason: &str, message: &str| {
            serde_json::json!({
                "initContainerStatuses": [{"name": "init", "ready": false, "restartCount": 0,
                    "image": "", "imageID": "",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                    "image": "", "imageID": "",
                    "state": {"waiting": {"reason": reason, "message": message}}}],
            })
            .to_string()
        };
        assert_eq!(
            cannot_be_made(
                "web",
                &status(
                    "CreateContainerConfigError",
                    "couldn't find key k in ConfigMap default/cfg"
                )
            )
            .as_deref(),
            Some("pod/web: container app: couldn't find key k in ConfigMap default/cfg")
        );
        assert_eq!(cannot_be_made("web", &status("PodInitializing", "")), None);
        assert_eq!(
            cannot_be_made("web", &status("CrashLoopBackOff", "back-off")),
            None
        );
    }
}
