//! The watches of the API (`get -w`, `get events -w`, `wait`): a connection
//! the agent keeps open and writes a line to whenever what it watches
//! changes. The database tells every committed change of a pod or an event
//! ([`crate::db::Db::subscribe`]); the watch then reads what is there and
//! sends what differs from what it sent last, so it is pushed at once, never
//! polled. Changes that come close together may reach a watch as one (it
//! reads the latest state, as an informer resyncing would).
//!
//! A watch whose client is gone (it closed the connection, or was killed)
//! ends as soon as the kernel says so: the connection is read while the
//! watch waits, and its end (EOF or an error) frees the watch at once.

use crate::api::{PodSummary, Request, Response, StoredEvent, WatchEvent, WatchObject, Watched};
use crate::Agent;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The watches open now.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// How many watches the agent serves now.
pub(crate) fn open_watches() -> usize {
    OPEN.load(Ordering::Relaxed)
}

/// Counts a watch while it lives.
struct Open;

impl Open {
    fn new() -> Open {
        OPEN.fetch_add(1, Ordering::Relaxed);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one watch asked for.
pub(crate) struct Spec {
    /// Pods or events.
    pub what: Watched,
    /// One namespace, or all.
    pub namespace: Option<String>,
    /// One pod only.
    pub pod: Option<String>,
    /// Pods with their v1 object.
    pub full: bool,
}

impl Spec {
    /// The watch a request asks for, if it is one.
    pub(crate) fn of(request: &Request) -> Option<Spec> {
        match request {
            Request::Watch {
                what,
                namespace,
                pod,
                full,
            } => Some(Spec {
                what: *what,
                namespace: namespace.clone(),
                pod: pod.clone(),
                full: *full,
            }),
            _ => None,
        }
    }
}

/// Serve one watch on `stream` until its client goes or the agent stops.
pub(crate) async fn serve(agent: Arc<Agent>, stream: std::os::unix::net::UnixStream, spec: Spec) {
    let _open = Open::new();
    let stream = match stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(stream))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("watch: take the connection: {e}");
            return;
        }
    };
    let (mut read, mut write) = stream.into_split();
    let mut changes = agent.db().subscribe();
    // Seen before the first read: a change after it wakes the watch.
    changes.borrow_and_update();
    let mut state = State::default();
    let mut first = true;
    loop {
        let events = match state.step(&agent, &spec) {
            Ok(events) => events,
            Err(message) => vec![WatchEvent::Error { message }],
        };
        let failed = events.iter().any(|e| matches!(e, WatchEvent::Error { .. }));
        let mut text = Vec::new();
        for e in events.iter().chain(first.then_some(&WatchEvent::Synced)) {
            if let Ok(line) = serde_json::to_vec(e) {
                text.extend(line);
                text.push(b'\n');
            }
        }
        first = false;
        if !text.is_empty() && write.write_all(&text).await.is_err() {
            return;
        }
        if failed {
            return;
        }
        let mut buf = [0u8; 256];
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                changes.borrow_and_update();
            }
            // The client sends nothing after its request: EOF or an error
            // is the client gone.
            r = read.read(&mut buf) => {
                if matches!(r, Ok(0) | Err(_)) {
                    return;
                }
            }
        }
    }
}

/// What a watch last saw.
#[derive(Default)]
struct State {
    /// Each pod as last seen, and when.
    pods: BTreeMap<(String, String), (PodSummary, std::time::Instant)>,
    events: BTreeMap<i64, StoredEvent>,
}

impl State {
    /// Read what is watched now and say what changed since the last step.
    fn step(&mut self, agent: &Arc<Agent>, spec: &Spec) -> Result<Vec<WatchEvent>, String> {
        let wanted = |pod: &str| spec.pod.as_deref().is_none_or(|p| p == pod);
        match spec.what {
            Watched::Pods => {
                let pods = match crate::get(agent, spec.namespace.as_deref(), spec.full) {
                    Ok(Response::Pods { pods }) => pods,
                    Ok(_) => Vec::new(),
                    Err(e) => return Err(e.to_string()),
                };
                let pods = pods.into_iter().filter(|p| wanted(&p.name)).collect();
                Ok(pod_changes(&mut self.pods, pods))
            }
            Watched::Events => {
                let events = agent
                    .db()
                    .all_events(spec.namespace.as_deref())
                    .map_err(|e| e.to_string())?;
                let events = events.into_iter().filter(|e| wanted(&e.pod)).collect();
                Ok(event_changes(&mut self.events, events))
            }
        }
    }
}

/// What differs between the pods seen last (`last`, updated) and `now`: a
/// new pod is added, one whose row (or v1 Pod) changed is modified, one no
/// longer there is deleted as it last was.
fn pod_changes(
    last: &mut BTreeMap<(String, String), (PodSummary, std::time::Instant)>,
    now: Vec<PodSummary>,
) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    let mut seen = BTreeMap::new();
    for pod in now {
        let key = (pod.namespace.clone(), pod.name.clone());
        match last.get(&key) {
            None => out.push(WatchEvent::Added {
                object: WatchObject::Pod(pod.clone()),
            }),
            Some((was, _)) if !was.same_as(&pod) => out.push(WatchEvent::Modified {
                object: WatchObject::Pod(pod.clone()),
            }),
            Some(_) => {}
        }
        seen.insert(key, (pod, std::time::Instant::now()));
    }
    for (key, (mut pod, seen_at)) in std::mem::take(last) {
        if !seen.contains_key(&key) {
            // As it last was, its age as of now (kubectl prints the AGE of
            // the deleted object when it prints it).
            pod.age_seconds += seen_at.elapsed().as_secs() as i64;
            out.push(WatchEvent::Deleted {
                object: WatchObject::Pod(pod),
            });
        }
    }
    *last = seen;
    out
}

/// What differs between the events seen last and `now`: new ones are added,
/// ones counted up (or otherwise changed) modified. Events that went with
/// their pod are not sent (Kubernetes' expire an hour later, quietly too).
fn event_changes(last: &mut BTreeMap<i64, StoredEvent>, now: Vec<StoredEvent>) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    let mut seen = BTreeMap::new();
    for e in now {
        match last.get(&e.id) {
            None => out.push(WatchEvent::Added {
                object: WatchObject::Event(e.clone()),
            }),
            Some(was) if *was != e => out.push(WatchEvent::Modified {
                object: WatchObject::Event(e.clone()),
            }),
            Some(_) => {}
        }
        seen.insert(e.id, e);
    }
    *last = seen;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::EventRow;

    fn pod(name: &str, status: &str, age: i64) -> PodSummary {
        PodSummary {
            namespace: "default".into(),
            name: name.into(),
            ready: "0/1".into(),
            status: status.into(),
            restarts: "0".into(),
            age_seconds: age,
            ip: None,
            nominated_node: None,
            readiness_gates: "<none>".into(),
            pod: None,
        }
    }

    fn kinds(events: &[WatchEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                WatchEvent::Added {
                    object: WatchObject::Pod(p),
                } => format!("added {} {}", p.name, p.status),
                WatchEvent::Modified {
                    object: WatchObject::Pod(p),
                } => format!("modified {} {}", p.name, p.status),
                WatchEvent::Deleted {
                    object: WatchObject::Pod(p),
                } => format!("deleted {} {}", p.name, p.status),
                WatchEvent::Added {
                    object: WatchObject::Event(e),
                } => format!("added {} x{}", e.event.reason, e.event.count),
                WatchEvent::Modified {
                    object: WatchObject::Event(e),
                } => format!("modified {} x{}", e.event.reason, e.event.count),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_pod_is_sent_when_its_row_changes_and_once_more_when_it_is_gone() {
        let mut last = BTreeMap::new();
        let first = pod_changes(
            &mut last,
            vec![pod("a", "Pending", 1), pod("b", "Running", 1)],
        );
        assert_eq!(kinds(&first), ["added a Pending", "added b Running"]);
        // Only the age changed: nothing to send.
        assert!(pod_changes(
            &mut last,
            vec![pod("a", "Pending", 5), pod("b", "Running", 5)]
        )
        .is_empty());
        let next = pod_changes(
            &mut last,
            vec![pod("a", "Running", 6), pod("b", "Running", 6)],
        );
        assert_eq!(kinds(&next), ["modified a Running"]);
        let gone = pod_changes(&mut last, vec![pod("a", "Running", 7)]);
        assert_eq!(kinds(&gone), ["deleted b Running"]);
        let back = pod_changes(
            &mut last,
            vec![pod("a", "Running", 8), pod("b", "Pending", 0)],
        );
        assert_eq!(kinds(&back), ["added b Pending"]);
    }

    #[test]
    fn with_its_v1_pod_any_status_change_is_sent() {
        let mut last = BTreeMap::new();
        let mut a = pod("a", "Running", 1);
        a.pod = Some(serde_json::json!({"status": {"conditions": []}}));
        pod_changes(&mut last, vec![a.clone()]);
        a.pod = Some(serde_json::json!({"status": {"conditions": [{"type": "Ready"}]}}));
        assert_eq!(
            kinds(&pod_changes(&mut last, vec![a])),
            ["modified a Running"]
        );
    }

    #[test]
    fn an_event_counted_up_is_sent_again() {
        let event = |id: i64, reason: &str, count: i64| StoredEvent {
            id,
            kind: "Pod".into(),
            namespace: "default".into(),
            pod: "web".into(),
            event: EventRow {
                type_: "Normal".into(),
                reason: reason.into(),
                message: "m".into(),
                count,
                first: "2026-12-06T05:00:00.000Z".into(),
                last: "2026-12-06T05:00:00.000Z".into(),
            },
        };
        let mut last = BTreeMap::new();
        let first = event_changes(&mut last, vec![event(1, "Pulled", 1)]);
        assert_eq!(kinds(&first), ["added Pulled x1"]);
        assert!(event_changes(&mut last, vec![event(1, "Pulled", 1)]).is_empty());
        let next = event_changes(
            &mut last,
            vec![event(1, "Pulled", 2), event(2, "Started", 1)],
        );
        assert_eq!(kinds(&next), ["modified Pulled x2", "added Started x1"]);
        // Gone with their pod: nothing.
        assert!(event_changes(&mut last, vec![]).is_empty());
    }
}
