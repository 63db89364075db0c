//! The status of a pod while it terminates. kubelet's pod worker does not go
//! quiet while it kills a pod: SyncTerminatingPod (pkg/kubelet/kubelet.go)
//! reads the runtime's status and reports it before and after killPod, and
//! the PLEG goes on relisting meanwhile, so each container shows
//! `terminated` (reason, exit code, finishedAt) once it has stopped, while
//! the containers after it in the termination order (a sidecar) still show
//! `running`. Here the pod's worker is busy stopping the pod (on a thread of
//! its own, waiting out grace periods), so the look is taken beside it, once
//! a sync interval, and once more when every container has stopped.

use super::{decode, pods, ready, record, see, DbRecords, Result, Seen};
use crate::db::PodPhase;
use crate::Agent;
use k8s_openapi::api::core::v1::Pod;
use std::sync::mpsc::RecvTimeoutError;

/// Run `stop` (the pod's termination) and, until it returns, record the
/// status of pod `namespace/name` every `agent.sync_interval`; then once
/// more. What `stop` returns.
pub(super) fn recording<T: Send>(
    agent: &Agent,
    namespace: &str,
    name: &str,
    stop: impl FnOnce() -> T + Send,
) -> T {
    std::thread::scope(|s| {
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let stopping = s.spawn(move || {
            let out = stop();
            let _ = done.send(());
            out
        });
        // A look each interval until the stop says it is done (or its thread
        // ended without saying so: it panicked, and the join passes that on).
        while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(agent.sync_interval) {
            look(agent, namespace, name);
        }
        look(agent, namespace, name);
        stopping
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Record what the runtime says now of the containers of `namespace/name`,
/// a pod being deleted; a failure only costs this look.
fn look(agent: &Agent, namespace: &str, name: &str) {
    if let Err(e) = record_now(agent, namespace, name) {
        tracing::warn!("pod/{name}: its status while it terminates: {e}");
    }
}

fn record_now(agent: &Agent, namespace: &str, name: &str) -> Result<()> {
    let Some(row) = agent.db().pod(namespace, name)? else {
        return Ok(());
    };
    if row.state != PodPhase::Deleting {
        return Ok(());
    }
    let Some(state) = pods::load(&agent.settings.run_root, &row.pod_id) else {
        return Ok(());
    };
    let Some(sandbox) = ready(agent.runtime.as_ref(), &row.pod_id) else {
        return Ok(());
    };
    let pod: Pod = decode(&row.manifest, "the stored manifest")?;
    let now = chrono::Utc::now();
    let Seen {
        observed,
        probes,
        stored,
        ..
    } = see(agent, &row, &pod, &state, &sandbox, now)?;
    let outcome = record::Outcome {
        pod: &pod,
        observed: &observed,
        probes: &probes,
        stored: &stored,
        status: row.status.as_deref(),
        now,
        config: &super::kubelet_config(),
    };
    record::record(
        &outcome,
        &mut DbRecords {
            agent,
            ns: namespace,
            name,
        },
    )
    .map(drop)
}
