//! GetContainerEvents: a stream of the CRI's containers' and sandboxes' changes
//! (created, started, stopped, deleted), each with its sandbox's status and the
//! statuses of the sandbox's containers, as kubelet's evented PLEG reads them
//! (pkg/kubelet/pleg/evented.go: it takes `pod_sandbox_status` and
//! `containers_statuses` as the pod's new state).
//!
//! The runtime keeps no event log: its state is in the monitors' records. So
//! while at least one client listens, a watcher compares the CRI's sandboxes and
//! containers with what it saw before, after every RPC that changes them (they
//! kick it) and at least every [`PERIOD`] (a container's exit reaches the
//! records without any RPC), and sends one event per change. A sandbox's events
//! carry the sandbox's ID as `container_id`, as containerd sends them. With no
//! client the watcher ends; the next one starts it again and gets events for
//! what changes from then on.

use crate::proto as pb;
use podrun_runtime::api;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, Notify};

/// How often the watcher looks without a kick.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Events a slow client may fall behind by before it misses some (it is then
/// told so by the end of its stream, and kubelet relists).
const BACKLOG: usize = 1024;

/// What the watcher last saw of one sandbox or container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// A sandbox (its own ID is its events' `container_id`).
    pub sandbox: bool,
    pub state: State,
    /// It has started (a container's `started_at`; a sandbox always has).
    pub started: bool,
}

/// The states events tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Exited,
}

impl Seen {
    pub fn sandbox(s: &api::PodSandbox) -> Seen {
        Seen {
            sandbox: true,
            state: match s.state {
                api::SandboxState::Ready => State::Running,
                api::SandboxState::NotReady => State::Exited,
            },
            started: true,
        }
    }

    pub fn container(c: &api::ContainerStatus) -> Seen {
        Seen {
            sandbox: false,
            state: match c.state {
                api::ContainerState::Created => State::Created,
                api::ContainerState::Running => State::Running,
                api::ContainerState::Exited | api::ContainerState::Unknown => State::Exited,
            },
            started: !c.started_at.is_empty(),
        }
    }
}

/// The events that take `before` to `now` (IDs to what was seen), in the
/// order a client must read them: sandboxes' births before their containers',
/// containers' deaths before their sandboxes'.
pub fn changes(
    before: &BTreeMap<String, Seen>,
    now: &BTreeMap<String, Seen>,
) -> Vec<(String, pb::ContainerEventType)> {
    use pb::ContainerEventType as E;
    let mut out = Vec::new();
    for sandboxes in [true, false] {
        for (id, seen) in now.iter().filter(|(_, s)| s.sandbox == sandboxes) {
            let was = before.get(id).map(|s| s.state);
            let mut add = |e| out.push((id.clone(), e));
            if was.is_none() {
                add(E::ContainerCreatedEvent);
            }
            let was_started = matches!(was, Some(State::Running | State::Exited));
            if !was_started && seen.state != State::Created && seen.started {
                add(E::ContainerStartedEvent);
            }
            if was != Some(State::Exited) && seen.state == State::Exited {
                add(E::ContainerStoppedEvent);
            }
        }
    }
    for sandboxes in [false, true] {
        for (id, _) in before
            .iter()
            .filter(|(id, s)| s.sandbox == sandboxes && !now.contains_key(*id))
        {
            out.push((id.clone(), E::ContainerDeletedEvent));
        }
    }
    out
}

/// What one look at the runtime found: every sandbox and container of the CRI
/// as seen, and for each sandbox its status and its containers' (what the
/// events carry).
#[derive(Default)]
pub struct Snapshot {
    pub seen: BTreeMap<String, Seen>,
    /// A container's sandbox.
    pub sandbox_of: BTreeMap<String, String>,
    pub sandboxes: BTreeMap<String, pb::PodSandboxStatus>,
    pub containers: BTreeMap<String, Vec<pb::ContainerStatus>>,
}

/// The events' broadcast and the watcher's kick.
pub struct Events {
    tx: broadcast::Sender<pb::ContainerEventResponse>,
    kick: Notify,
    /// The watcher runs.
    watching: Mutex<bool>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(BACKLOG).0,
            kick: Notify::new(),
            watching: Mutex::new(false),
        }
    }
}

impl Events {
    /// Something may have changed: look now (when anyone listens).
    pub fn kick(&self) {
        if self.tx.receiver_count() > 0 {
            self.kick.notify_one();
        }
    }

    /// A new client's receiver. Starts the watcher (with `look`, which reads
    /// the runtime and blocks) unless it runs, after its first look: what
    /// the client does once it has its stream is told.
    pub async fn subscribe(
        self: &Arc<Self>,
        look: Look,
    ) -> Result<broadcast::Receiver<pb::ContainerEventResponse>, tonic::Status> {
        let rx = self.tx.subscribe();
        {
            let mut watching = self.watching.lock().unwrap_or_else(|e| e.into_inner());
            if *watching {
                return Ok(rx);
            }
            *watching = true;
        }
        match read(look.clone()).await {
            Ok(first) => {
                tokio::spawn(watch(self.clone(), look, first));
                Ok(rx)
            }
            Err(e) => {
                *self.watching.lock().unwrap_or_else(|e| e.into_inner()) = false;
                Err(e)
            }
        }
    }
}

/// How the watcher reads the runtime (blocking).
pub type Look = Arc<dyn Fn() -> Result<Snapshot, tonic::Status> + Send + Sync>;

/// One look, on a thread that may block.
async fn read(look: Look) -> Result<Snapshot, tonic::Status> {
    tokio::task::spawn_blocking(move || look())
        .await
        .map_err(|e| tonic::Status::internal(format!("GetContainerEvents: {e}")))?
}

/// Until no client listens: look after each kick or [`PERIOD`], send the
/// changes since `before`.
async fn watch(events: Arc<Events>, look: Look, mut before: Snapshot) {
    loop {
        tokio::select! {
            _ = events.kick.notified() => {}
            _ = tokio::time::sleep(PERIOD) => {}
        }
        {
            let mut watching = events.watching.lock().unwrap_or_else(|e| e.into_inner());
            if events.tx.receiver_count() == 0 {
                *watching = false;
                return;
            }
        }
        let now = match read(look.clone()).await {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(
                    "GetContainerEvents: read the runtime's state: {}",
                    e.message()
                );
                continue;
            }
        };
        for event in events_between(&before, &now) {
            let _ = events.tx.send(event);
        }
        before = now;
    }
}

/// The events from `before` to `now`, each with its sandbox's status and its
/// containers' as `now` has them, or as `before` had them once gone: kubelet
/// reads every event's sandbox status (containerd sends a removed sandbox's
/// last one). An event whose sandbox status is not known is not sent.
fn events_between(before: &Snapshot, now: &Snapshot) -> Vec<pb::ContainerEventResponse> {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let mut out = Vec::new();
    for (id, kind) in changes(&before.seen, &now.seen) {
        let sandbox = match before.seen.get(&id).or(now.seen.get(&id)) {
            Some(s) if s.sandbox => Some(&id),
            _ => now.sandbox_of.get(&id).or(before.sandbox_of.get(&id)),
        };
        let Some(sandbox) = sandbox else { continue };
        let Some(status) = now.sandboxes.get(sandbox).or(before.sandboxes.get(sandbox)) else {
            tracing::warn!("GetContainerEvents: {kind:?} of {id}: no status of sandbox {sandbox}");
            continue;
        };
        let containers = match now.sandboxes.contains_key(sandbox) {
            true => now.containers.get(sandbox),
            false => before.containers.get(sandbox),
        };
        out.push(pb::ContainerEventResponse {
            container_id: id.clone(),
            container_event_type: kind as i32,
            created_at: at,
            pod_sandbox_status: Some(status.clone()),
            containers_statuses: containers.cloned().unwrap_or_default(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::ContainerEventType as E;

    fn seen(sandbox: bool, state: State, started: bool) -> Seen {
        Seen {
            sandbox,
            state,
            started,
        }
    }

    fn of(items: &[(&str, Seen)]) -> BTreeMap<String, Seen> {
        items.iter().map(|(id, s)| (id.to_string(), *s)).collect()
    }

    #[test]
    fn a_pods_life_is_its_events_in_order() {
        let empty = of(&[]);
        let ready = seen(true, State::Running, true);
        // The sandbox and its container appear in one look: sandbox first.
        let made = of(&[("c", seen(false, State::Created, false)), ("s", ready)]);
        assert_eq!(
            changes(&empty, &made),
            [
                ("s".to_string(), E::ContainerCreatedEvent),
                ("s".to_string(), E::ContainerStartedEvent),
                ("c".to_string(), E::ContainerCreatedEvent),
            ]
        );
        let running = of(&[("c", seen(false, State::Running, true)), ("s", ready)]);
        assert_eq!(
            changes(&made, &running),
            [("c".to_string(), E::ContainerStartedEvent)]
        );
        assert_eq!(changes(&running, &running), []);
        let exited = of(&[("c", seen(false, State::Exited, true)), ("s", ready)]);
        assert_eq!(
            changes(&running, &exited),
            [("c".to_string(), E::ContainerStoppedEvent)]
        );
        // Both gone at once: the container's deletion first.
        assert_eq!(
            changes(&exited, &empty),
            [
                ("c".to_string(), E::ContainerDeletedEvent),
                ("s".to_string(), E::ContainerDeletedEvent),
            ]
        );
        let stopped = of(&[("s", seen(true, State::Exited, true))]);
        assert_eq!(
            changes(&of(&[("s", ready)]), &stopped),
            [("s".to_string(), E::ContainerStoppedEvent)]
        );
    }

    #[test]
    fn what_happened_between_two_looks_is_told_in_full() {
        // Created, started and exited between two looks.
        let before = of(&[]);
        let now = of(&[("c", seen(false, State::Exited, true))]);
        assert_eq!(
            changes(&before, &now),
            [
                ("c".to_string(), E::ContainerCreatedEvent),
                ("c".to_string(), E::ContainerStartedEvent),
                ("c".to_string(), E::ContainerStoppedEvent),
            ]
        );
        // A container that could not start: created, then stopped, never started.
        let made = of(&[("c", seen(false, State::Created, false))]);
        let failed = of(&[("c", seen(false, State::Exited, false))]);
        assert_eq!(
            changes(&made, &failed),
            [("c".to_string(), E::ContainerStoppedEvent)]
        );
    }
}
