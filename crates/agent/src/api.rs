//! The agent's local API: a unix socket, `<run-root>/podrun.sock` (mode 0600,
//! and every peer's uid checked to be root). One request per connection: a
//! JSON line in, a JSON line out; or, for a [`Request::Watch`], a JSON line
//! ([`WatchEvent`]) each time what is watched changes, until either side
//! closes the connection. The CLI is its only client.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use crate::db::StoredEvent;

/// Where the agent of a run root listens.
pub fn socket_path(run_root: &Path) -> PathBuf {
    run_root.join("podrun.sock")
}

/// What the CLI asks.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Is anyone there.
    Ping,
    /// Create or update the objects in these files (all or nothing).
    Apply {
        /// (name for messages, text) of each file.
        files: Vec<(String, String)>,
        /// Pods must be new: one that exists refuses the whole request
        /// (`podrun run --detach`, as `kubectl create`).
        #[serde(default)]
        create: bool,
    },
    /// Remove the objects these files name.
    DeleteFiles {
        /// (name for messages, text) of each file.
        files: Vec<(String, String)>,
        /// Seconds the pods get to stop (None: their own terminationGracePeriodSeconds).
        grace_period: Option<i64>,
        /// Answer once the pods are gone (kubectl's `--wait`), else once their
        /// deletion is recorded.
        #[serde(default = "yes")]
        wait: bool,
    },
    /// Remove pods by name.
    Delete {
        /// Their namespace.
        namespace: String,
        /// Their names.
        names: Vec<String>,
        /// Seconds the pods get to stop (None: their own).
        grace_period: Option<i64>,
        /// Answer once the pods are gone, else once their deletion is recorded.
        #[serde(default = "yes")]
        wait: bool,
    },
    /// List pods.
    Get {
        /// One namespace, or every one (None).
        namespace: Option<String>,
        /// With each pod as a v1 Pod (for `-o yaml|json`).
        #[serde(default)]
        full: bool,
    },
    /// List PersistentVolumeClaims, with their status.
    GetClaims {
        /// One namespace, or every one (None).
        namespace: Option<String>,
    },
    /// Remove PersistentVolumeClaims and their data, refused for a claim a
    /// pod that has not terminated uses.
    DeleteClaims {
        /// Their namespace.
        namespace: String,
        /// Their names.
        names: Vec<String>,
    },
    /// kubectl top pod's table: CPU and memory of the running pods.
    TopPods {
        /// One namespace, or every one (None).
        namespace: Option<String>,
        /// Only this pod.
        name: Option<String>,
        /// A row per container.
        #[serde(default)]
        containers: bool,
        /// `cpu`, `memory`, or empty (by name).
        #[serde(default)]
        sort_by: String,
    },
    /// kubectl top node's table: the node's CPU and memory.
    TopNode,
    /// kubectl describe's text of this node.
    DescribeNode {
        /// The node's name, if given (it must be this node's).
        name: Option<String>,
    },
    /// kubectl describe's text of a pod.
    Describe {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The pods' events (`get events`), in the order they were first recorded.
    Events {
        /// One namespace, or every one (None).
        namespace: Option<String>,
        /// Only those of this pod.
        #[serde(default)]
        pod: Option<String>,
    },
    /// Watch pods or events: the agent answers with a line for each object
    /// there now ([`WatchEvent::Added`]), then [`WatchEvent::Synced`], then a
    /// line each time one is added, changes or (a pod) is gone, pushed as the
    /// agent records it, for as long as the connection stays open.
    Watch {
        /// Pods or events.
        what: Watched,
        /// One namespace, or every one (None).
        namespace: Option<String>,
        /// Only this pod (or the events of this pod).
        #[serde(default)]
        pod: Option<String>,
        /// With each pod as a v1 Pod; then any change of its status is sent,
        /// not only one of its `get pods` row (`podrun wait`).
        #[serde(default)]
        full: bool,
    },
    /// What the agent holds now (its pid and open watches), for tests and diagnosis.
    Info,
}

/// What a [`Request::Watch`] watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Watched {
    /// Pods, as `get pods` shows them.
    Pods,
    /// The pods' events.
    Events,
}

/// One line of a watch, as the Kubernetes watch API's events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WatchEvent {
    /// An object there when the watch started, or new since.
    Added {
        /// The object.
        object: WatchObject,
    },
    /// An object that changed: a pod whose row (or, with `full`, status)
    /// changed, an event counted up.
    Modified {
        /// The object now.
        object: WatchObject,
    },
    /// A pod that is gone, as it last was.
    Deleted {
        /// The object as it last was.
        object: WatchObject,
    },
    /// Every object there when the watch started has been sent.
    Synced,
    /// The watch failed; the agent closes it.
    Error {
        /// Why.
        message: String,
    },
}

/// What a watch sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum WatchObject {
    /// A pod.
    Pod(PodSummary),
    /// An event of a pod.
    Event(StoredEvent),
}

impl PodSummary {
    /// Whether `other` prints the same `get pods` row (AGE aside, which
    /// changes by itself) and, when both carry their v1 Pod, has the same one.
    pub fn same_as(&self, other: &PodSummary) -> bool {
        self.namespace == other.namespace
            && self.name == other.name
            && self.ready == other.ready
            && self.status == other.status
            && self.restarts == other.restarts
            && self.ip == other.ip
            && self.nominated_node == other.nominated_node
            && self.readiness_gates == other.readiness_gates
            && self.pod == other.pod
    }
}

/// One pod as `get pods` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodSummary {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// READY.
    pub ready: String,
    /// STATUS.
    pub status: String,
    /// RESTARTS.
    pub restarts: String,
    /// Seconds since it was created.
    pub age_seconds: i64,
    /// Its IP, if any.
    pub ip: Option<String>,
    /// NOMINATED NODE (`status.nominatedNodeName`), if any.
    #[serde(default)]
    pub nominated_node: Option<String>,
    /// READINESS GATES (`<none>`, or true of all).
    #[serde(default)]
    pub readiness_gates: String,
    /// The v1 Pod with its status, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<serde_json::Value>,
}

impl PodSummary {
    /// The `get pods` line of `pod` (with its status) at `now`, by kubectl's printer.
    pub fn of(
        pod: &k8s_openapi::api::core::v1::Pod,
        age_seconds: i64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let columns = podrun_kubelet::printer::columns(pod, now);
        PodSummary {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            ready: columns.ready,
            status: columns.status,
            restarts: columns.restarts,
            age_seconds,
            // kubectl's printer shows podIPs[0] (then podIP), `<none>` when empty.
            ip: pod.status.as_ref().and_then(|s| {
                let first = s.pod_ips.iter().flatten().next().map(|p| p.ip.clone());
                first
                    .or_else(|| s.pod_ip.clone())
                    .filter(|ip| !ip.is_empty())
            }),
            nominated_node: pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty()),
            readiness_gates: podrun_kubelet::printer::readiness_gates_column(pod),
            pod: None,
        }
    }
}

/// What the agent answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Done; lines to print (stdout) and warnings (stderr).
    Done {
        /// `pod/web created` …
        lines: Vec<String>,
        /// Problems that did not stop the request.
        warnings: Vec<String>,
        /// Whether any part failed (exit non-zero).
        failed: bool,
    },
    /// The pods asked for.
    Pods {
        /// By namespace and name.
        pods: Vec<PodSummary>,
    },
    /// The objects asked for, as v1 objects (`GetClaims`).
    Objects {
        /// By namespace and name.
        items: Vec<serde_json::Value>,
    },
    /// Text to print as it is.
    Text {
        /// The text.
        text: String,
    },
    /// The events asked for ([`Request::Events`]).
    Events {
        /// In the order they were first recorded.
        events: Vec<StoredEvent>,
    },
    /// What the agent holds ([`Request::Info`]).
    Info {
        /// Its pid.
        pid: u32,
        /// How many watches it serves now.
        watches: usize,
    },
    /// The request failed; nothing changed.
    Error {
        /// Why.
        message: String,
    },
}

/// Why a call of the agent's API failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// connect to the agent at {path}: permission denied (…)
    #[error("connect to the agent at {}: permission denied (the podrun API is root's)", .path.display())]
    PermissionDenied {
        /// The socket.
        path: PathBuf,
    },
    /// connect to the agent at {path}: {source}
    #[error("connect to the agent at {}: {source}", .path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// {step}: {source} (send the request, read the answer)
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The system's error.
        source: std::io::Error,
    },
    /// parse {what}: {source}
    #[error("parse {what}: {source}")]
    Parse {
        /// The request, or the agent's answer.
        what: &'static str,
        /// The decoder's error.
        source: serde_json::Error,
    },
    /// The agent closed the connection without answering.
    #[error("the agent closed the connection without answering (did it stop? see its log)")]
    Closed,
    /// The agent answered with an error.
    #[error("{0}")]
    Agent(String),
    /// unexpected answer from the agent: {0}
    #[error("unexpected answer from the agent: {0}")]
    Unexpected(String),
    /// The agent closed a watch (it stopped, or restarted).
    #[error("the agent closed the watch: it stopped or restarted (see its log)")]
    WatchClosed,
    /// A watch's deadline passed before the next change.
    #[error("timed out waiting for the next change")]
    TimedOut,
}

/// Write `request` to the agent as one JSON line.
fn send(stream: &mut UnixStream, request: &Request) -> Result<(), ApiError> {
    let mut line = serde_json::to_vec(request).map_err(|source| ApiError::Parse {
        what: "the request",
        source,
    })?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(io("send the request to the agent"))
}

fn connect_error(path: &Path, e: std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        ApiError::PermissionDenied { path: path.into() }
    } else {
        ApiError::Connect {
            path: path.into(),
            source: e,
        }
    }
}

fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> ApiError {
    move |source| ApiError::Io { step, source }
}

/// Send one request and read the answer. `timeout` bounds the whole exchange.
pub fn call(run_root: &Path, request: &Request, timeout: Duration) -> Result<Response, ApiError> {
    let path = socket_path(run_root);
    let mut stream = UnixStream::connect(&path).map_err(|e| connect_error(&path, e))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(io("set a timeout"))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(io("set a timeout"))?;
    send(&mut stream, request)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(io("read the agent's answer"))?;
    if answer.is_empty() {
        return Err(ApiError::Closed);
    }
    serde_json::from_str(&answer).map_err(|source| ApiError::Parse {
        what: "the agent's answer",
        source,
    })
}

/// Whether an agent answers on the run root's socket. No socket, or nobody
/// listening on it, is `Ok(false)`; not being allowed to ask (a non-root
/// user) is an error, not a reason to start an agent.
pub fn ping(run_root: &Path) -> Result<bool, ApiError> {
    let path = socket_path(run_root);
    if let Err(e) = UnixStream::connect(&path) {
        return match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => Ok(false),
            _ => Err(connect_error(&path, e)),
        };
    }
    match call(run_root, &Request::Ping, Duration::from_secs(5))? {
        Response::Done { .. } => Ok(true),
        Response::Error { message } => Err(ApiError::Agent(message)),
        other => Err(ApiError::Unexpected(format!("{other:?}"))),
    }
}

/// The uid of the process at the other end of a unix socket.
pub fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    let cred = rustix::net::sockopt::socket_peercred(stream)?;
    Ok(cred.uid.as_raw())
}

/// Read one request from a connection.
pub fn read_request(stream: &UnixStream) -> Result<Request, ApiError> {
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(io("read the request"))?;
    serde_json::from_str(&line).map_err(|source| ApiError::Parse {
        what: "the request",
        source,
    })
}

/// Write the answer to a connection.
pub fn write_response(mut stream: &UnixStream, response: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response)?;
    line.push(b'\n');
    stream.write_all(&line)
}

/// `true`, for serde defaults.
fn yes() -> bool {
    true
}

/// A watch the agent pushes changes to ([`Request::Watch`]).
pub struct Watch {
    reader: BufReader<UnixStream>,
    /// What was read of the next line (a read that timed out keeps its part).
    line: String,
}

impl Watch {
    /// Open a watch: send `request` (a [`Request::Watch`]).
    pub fn open(run_root: &Path, request: &Request) -> Result<Watch, ApiError> {
        let path = socket_path(run_root);
        let mut stream = UnixStream::connect(&path).map_err(|e| connect_error(&path, e))?;
        send(&mut stream, request)?;
        Ok(Watch {
            reader: BufReader::new(stream),
            line: String::new(),
        })
    }

    /// The next line of the watch, waiting at most until `deadline` (None:
    /// as long as it takes). The agent closing the connection, as when it
    /// stops or restarts, is [`ApiError::WatchClosed`]; the deadline passing
    /// is [`ApiError::TimedOut`], and the watch can still be read after it.
    pub fn next(&mut self, deadline: Option<Instant>) -> Result<WatchEvent, ApiError> {
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ApiError::TimedOut);
                }
                Some(left)
            }
            None => None,
        };
        self.reader
            .get_ref()
            .set_read_timeout(timeout)
            .map_err(io("set a timeout"))?;
        match self.reader.read_line(&mut self.line) {
            Ok(0) => return Err(ApiError::WatchClosed),
            Ok(_) if !self.line.ends_with('\n') => return Err(ApiError::WatchClosed),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ApiError::TimedOut)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(ApiError::WatchClosed)
            }
            Err(e) => return Err(io("read the watch")(e)),
        }
        let line = std::mem::take(&mut self.line);
        serde_json::from_str(&line).map_err(|source| ApiError::Parse {
            what: "the agent's watch",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_event_keeps_its_object_kind_beside_the_watch_tag() {
        let event = StoredEvent {
            id: 7,
            kind: "Node".into(),
            namespace: "default".into(),
            pod: "box".into(),
            event: crate::db::EventRow {
                type_: "Warning".into(),
                reason: "FreeDiskSpaceFailed".into(),
                message: "m".into(),
                count: 2,
                first: "t1".into(),
                last: "t2".into(),
            },
        };
        let json = serde_json::to_string(&WatchObject::Event(event.clone())).unwrap();
        match serde_json::from_str::<WatchObject>(&json).unwrap() {
            WatchObject::Event(back) => assert_eq!(back, event),
            other => panic!("{other:?} from {json}"),
        }
        // An event of an older agent (no kind) is a pod's.
        let old = r#"{"kind":"Event","id":1,"namespace":"default","pod":"web","type_":"Normal","reason":"Started","message":"m","count":1,"first":"t","last":"t"}"#;
        match serde_json::from_str::<WatchObject>(old).unwrap() {
            WatchObject::Event(back) => assert_eq!(back.kind, "Pod"),
            other => panic!("{other:?}"),
        }
    }
}
