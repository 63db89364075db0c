//! The monitor's control socket and liveness lock: how a node agent tells a
//! running pod's monitor to start, stop and remove single containers (CRI's
//! CreateContainer + StartContainer, StopContainer, RemoveContainer), and how
//! it tells whether the monitor still runs.
//!
//! **Socket** `<run dir>/monitor.sock` (unix stream, mode 0600). One request
//! per connection: the client writes one JSON line ([`Request`]), the monitor
//! answers with one JSON line ([`Response`]) and closes. The monitor serves it
//! from its single `poll(2)` loop (no thread): a request waits while the
//! monitor is busy (creating the sandbox, or starting another container), so clients give it a timeout of seconds, not milliseconds.
//! [`request`] is the client.
//!
//! ```text
//! → {"op":"start","container":{"id":"…","name":"app","bundle":"…","log_path":"…","stop_signal":15,"grace_period_ms":30000}}
//! ← {"result":"started","pid":4242,"started_at":"2024-05-01T10:00:00.123456789Z"}
//! → {"op":"stop","name":"app","signal":15,"grace_period_ms":30000}   (signal and grace optional)
//! ← {"result":"ok"}
//! → {"op":"remove","name":"app"}
//! ← {"result":"error","message":"container app: remove: it is running (pid 4242): stop it first"}
//! → {"op":"state"}
//! ← {"result":"state","containers":[{"name":"app","id":"…","pid":4242,"running":true,"restarts":0,"started_at":"…"}]}
//! → {"op":"shutdown"}
//! ← {"result":"ok"}
//! ```
//!
//! **Lock** `<run dir>/monitor.lock`: the monitor holds an exclusive `flock`
//! on it for its whole life (and writes its pid in it). The kernel drops the
//! lock when the last descriptor of that open file goes, i.e. when the monitor
//! dies, however it dies: [`monitor_alive`] asks for a shared lock without
//! waiting and the monitor is alive exactly when that would block. No pid is
//! compared, so pid reuse cannot fool it. The descriptor is close-on-exec, and
//! the monitor's forked helpers close it first thing, so no container, pause
//! process or runtime process ever holds the lock.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use super::{ContainerPlan, ExitRecord};

/// The control socket's file name in the pod's run directory.
pub const SOCKET: &str = "monitor.sock";
/// The liveness lock's file name in the pod's run directory.
pub const LOCK: &str = "monitor.lock";

/// The longest request line the monitor reads.
const MAX_REQUEST: usize = 1 << 20;
/// How long a connection may take to send its request and read the answer.
const CONNECTION_LIMIT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;

/// The control socket of the pod whose run directory is `run_dir`.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SOCKET)
}

/// The liveness lock of the pod whose run directory is `run_dir`.
pub fn lock_path(run_dir: &Path) -> PathBuf {
    run_dir.join(LOCK)
}

/// What a client asks the monitor (one JSON object, `op` names the variant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Create and start a container (CRI CreateContainer + StartContainer).
    /// Refused while a container of that name runs. One of that name that
    /// exited is deleted from the runtime first (the new one may have another
    /// ID and bundle); its exit record stays until the new one exits. The log
    /// file is appended to. The start record is written (durably) before the
    /// answer: [`Response::Started`]; a container the runtime could not start
    /// gets a `StartError` exit record at once and [`Response::StartFailed`].
    Start {
        /// The container, as in [`super::PodPlan::containers`].
        container: ContainerPlan,
    },
    /// Send `signal` (default: the container's stop signal) to a running
    /// container, and SIGKILL after `grace_period_ms` (default: its own) if it
    /// still runs (CRI StopContainer). Answered at once with [`Response::Ok`];
    /// the exit record comes when it dies. A container that is not running is
    /// not an error; an unknown name is.
    Stop {
        /// The container's name.
        name: String,
        /// The signal, or the container's stop signal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        /// The grace period before SIGKILL, or the container's (0: SIGKILL now).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grace_period_ms: Option<u64>,
    },
    /// Delete an exited container from the runtime (CRI RemoveContainer).
    /// Refused while it runs; an unknown name is not an error. Its start and
    /// exit records and its log stay (they are the caller's to remove).
    Remove {
        /// The container's name.
        name: String,
    },
    /// Reopen a running container's log file at its path (CRI
    /// ReopenContainerLog, after kubelet renamed it); an error if it does
    /// not run.
    ReopenLog {
        /// The container's name.
        name: String,
    },
    /// Attach to a running container's standard streams (CRI Attach):
    /// answered with [`Response::Attached`] and, passed with the answer
    /// (SCM_RIGHTS), the read ends of two pipes that get what the container
    /// writes on stdout and stderr from now on, then its stdin's write end
    /// when it has one (a container made with `stdin`). A container made with
    /// `stdin_once` gives its stdin to the first attach only: it sees
    /// end-of-file when that client closes it. A container on a terminal
    /// (`tty`) has one output, so one pipe comes, then its terminal's master:
    /// its stdin (when it has one) and what resizes it.
    Attach {
        /// The container's name.
        name: String,
    },
    /// Every container the monitor holds: [`Response::State`].
    State,
    /// Stop the pod as SIGTERM does: every running container gets its stop
    /// signal (SIGKILL after its grace period), then the monitor deletes them,
    /// destroys the sandbox and exits. Answered with [`Response::Ok`] first.
    Shutdown,
}

/// The monitor's answer (one JSON object, `result` names the variant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Done (stop: the signal was sent).
    Ok,
    /// The container runs; its start record is written.
    Started {
        /// The pid of its init (in the monitor's PID namespace).
        pid: i32,
        /// When it started, as in its start record.
        started_at: String,
    },
    /// The runtime could not start the container; its `StartError` exit
    /// record (with this message) is written.
    StartFailed {
        /// The runtime's reason.
        message: String,
    },
    /// Attached: the descriptors come with the answer.
    Attached {
        /// Its stdin's write end came too (on a terminal: the master may be
        /// written to).
        stdin: bool,
        /// It runs on a terminal: one output pipe and the master came.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        terminal: bool,
    },
    /// The containers the monitor holds, in the order they were started.
    State {
        /// One per container name.
        containers: Vec<ContainerState>,
    },
    /// The request was refused or failed; nothing changed unless the message says so.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// One container as [`Response::State`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// Its name in the pod.
    pub name: String,
    /// The runtime's ID.
    pub id: String,
    /// The pid of its init; 0 if it never started.
    pub pid: i32,
    /// Its init has not exited (or has not been reaped yet).
    pub running: bool,
    /// How many times a container of this name was started by this monitor
    /// before this one (0 for the first).
    pub restarts: u32,
    /// When it started (RFC 3339, nanoseconds); empty if it never did.
    pub started_at: String,
    /// How it ended, once it did (as in its exit record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitRecord>,
    /// Log lines it wrote that could not be written to its log (a full disk).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub log_lines_dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No monitor listens on the socket (none runs, or it is shutting down).
    #[error("monitor socket {}: no monitor listening: {cause}", .socket.display())]
    NotListening {
        /// The socket.
        socket: PathBuf,
        /// The system's error.
        cause: std::io::Error,
    },
    /// The monitor did not answer in time (it may be busy, or hung).
    #[error("monitor socket {}: no answer within {timeout:?}", .socket.display())]
    Timeout {
        /// The socket.
        socket: PathBuf,
        /// The time allowed.
        timeout: Duration,
    },
    /// Any other failure to talk to it.
    #[error("monitor socket {}: {step}: {cause}", .socket.display())]
    Io {
        /// The socket.
        socket: PathBuf,
        /// What was being done.
        step: &'static str,
        /// The cause.
        cause: String,
    },
}

/// Send `req` to the monitor of the pod whose run directory is `run_dir` and
/// wait, at most `timeout` in all, for its answer. Blocking (std sockets):
/// call it from a blocking thread.
pub fn request(run_dir: &Path, req: &Request, timeout: Duration) -> Result<Response, ControlError> {
    request_with_fds(run_dir, req, timeout).map(|(response, _)| response)
}

/// [`request`], and the descriptors that came with the answer.
pub fn request_with_fds(
    run_dir: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<(Response, Vec<std::os::fd::OwnedFd>), ControlError> {
    let socket = socket_path(run_dir);
    let deadline = Instant::now() + timeout;
    let io = |step: &'static str, cause: &dyn std::fmt::Display| ControlError::Io {
        socket: socket.clone(),
        step,
        cause: cause.to_string(),
    };
    let timed_out = || ControlError::Timeout {
        socket: socket.clone(),
        timeout,
    };
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    };
    let fd = rustix::net::socket_with(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| io("socket", &e))?;
    let addr = rustix::net::SocketAddrUnix::new(&socket).map_err(|e| io("address", &e))?;
    // A full listen backlog makes connect wait: bounded by the send timeout.
    rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Send, left())
        .map_err(|e| io("set timeout", &e))?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) => {}
        Err(e @ (Errno::NOENT | Errno::CONNREFUSED)) => {
            return Err(ControlError::NotListening {
                socket,
                cause: e.into(),
            })
        }
        Err(Errno::AGAIN | Errno::TIMEDOUT) => return Err(timed_out()),
        Err(e) => return Err(io("connect", &e)),
    }
    let mut stream = UnixStream::from(fd);
    let mut line = serde_json::to_vec(req).map_err(|e| io("encode request", &e))?;
    line.push(b'\n');
    stream
        .set_write_timeout(Some(left().ok_or_else(timed_out)?))
        .map_err(|e| io("set timeout", &e))?;
    stream.write_all(&line).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => timed_out(),
        _ => io("send request", &e),
    })?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut fds = Vec::new();
    while !answer.contains(&b'\n') {
        stream
            .set_read_timeout(Some(left().ok_or_else(timed_out)?))
            .map_err(|e| io("set timeout", &e))?;
        match receive(&stream, &mut chunk, &mut fds) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out())
            }
            Err(e) => return Err(io("read answer", &e)),
        }
    }
    let end = answer.iter().position(|&b| b == b'\n');
    let Some(end) = end else {
        return Err(io(
            "read answer",
            &"the monitor closed the connection without answering",
        ));
    };
    let response = serde_json::from_slice(&answer[..end]).map_err(|e| io("decode answer", &e))?;
    Ok((response, fds))
}

/// Reads what `stream` has into `buf`, keeping descriptors passed with it.
fn receive(
    stream: &UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<std::os::fd::OwnedFd>,
) -> std::io::Result<usize> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let got = rustix::net::recvmsg(stream, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(passed) = message {
            fds.extend(passed);
        }
    }
    Ok(got.bytes)
}

/// Whether a monitor runs for the pod whose run directory is `run_dir`: it
/// holds `monitor.lock` (see the module's documentation).
pub fn monitor_alive(run_dir: &Path) -> bool {
    let Ok(file) = File::open(lock_path(run_dir)) else {
        return false;
    };
    // Our shared lock, if we get it, goes when `file` is dropped.
    matches!(
        flock(&file, FlockOperation::NonBlockingLockShared),
        Err(Errno::WOULDBLOCK)
    )
}

/// The pid of the monitor of the pod whose run directory is `run_dir`, while
/// it runs ([`monitor_alive`]); None when none runs.
pub fn monitor_pid(run_dir: &Path) -> Option<i32> {
    // A monitor writes its pid right after taking the lock: give it a moment.
    for _ in 0..50 {
        if !monitor_alive(run_dir) {
            return None;
        }
        let text = std::fs::read_to_string(lock_path(run_dir)).unwrap_or_default();
        if let Ok(pid) = text.trim().parse() {
            return Some(pid);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// The monitor's hold on `monitor.lock`: released when dropped (or when the
/// monitor dies).
#[derive(Debug)]
pub(crate) struct MonitorLock {
    file: File,
}

impl MonitorLock {
    /// Take the lock of `run_dir` for this process and write its pid in it.
    /// Waits up to 2 s for a client's momentary shared lock; fails when
    /// another monitor holds it.
    pub(crate) fn acquire(run_dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(run_dir)?;
        // std opens with O_CLOEXEC.
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(lock_path(run_dir))?;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(Errno::WOULDBLOCK) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(Errno::WOULDBLOCK) => {
                    let pid = std::fs::read_to_string(lock_path(run_dir)).unwrap_or_default();
                    return Err(std::io::Error::other(format!(
                        "another monitor (pid {}) holds {}",
                        pid.trim(),
                        lock_path(run_dir).display()
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        file.set_len(0)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        super::forked::close_in_children(file.as_raw_fd());
        Ok(Self { file })
    }
}

impl Drop for MonitorLock {
    fn drop(&mut self) {
        super::forked::keep_in_children(self.file.as_raw_fd());
    }
}

/// The monitor's end of the control socket: the listener and the connections
/// being served, all non-blocking, polled by the monitor's loop.
#[derive(Debug)]
pub(crate) struct Server {
    listener: UnixListener,
    path: PathBuf,
    connections: Vec<Connection>,
}

#[derive(Debug)]
struct Connection {
    stream: UnixStream,
    input: Vec<u8>,
    /// The answer, once there is one, and how much of it was sent.
    output: Option<(Vec<u8>, usize)>,
    /// Descriptors to pass with the answer's first bytes.
    fds: Vec<std::os::fd::OwnedFd>,
    deadline: Instant,
    /// Finished (answered, or given up on): closed by the next sweep.
    closed: bool,
}

impl Server {
    /// Listen on `<run_dir>/monitor.sock` (mode 0600), replacing a stale
    /// socket file. Call it with the lock held: a live monitor's socket is
    /// never removed.
    pub(crate) fn bind(run_dir: &Path) -> std::io::Result<Self> {
        let path = socket_path(run_dir);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // The socket file is created by bind with the umask's permissions:
        // narrow them for the bind (the monitor has one thread), then make sure.
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
        let bound = UnixListener::bind(&path);
        rustix::process::umask(old);
        let listener = bound?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        super::forked::close_in_children(listener.as_raw_fd());
        Ok(Self {
            listener,
            path,
            connections: Vec::new(),
        })
    }

    /// The descriptors to poll, in the order [`Server::service`] takes their results.
    pub(crate) fn pollfds(&self, fds: &mut Vec<libc::pollfd>) {
        let listen = if self.connections.len() < MAX_CONNECTIONS {
            libc::POLLIN
        } else {
            0
        };
        fds.push(pollfd(self.listener.as_fd(), listen));
        for c in &self.connections {
            let events = if c.output.is_some() {
                libc::POLLOUT
            } else {
                libc::POLLIN
            };
            fds.push(pollfd(c.stream.as_fd(), events));
        }
    }

    /// The earliest time a connection is to be given up on.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.connections.iter().map(|c| c.deadline).min()
    }

    /// Accept, read, answer (through `handle`) and write what the poll
    /// results `fds` (as [`Server::pollfds`] laid them out) allow, and close
    /// finished or overdue connections.
    pub(crate) fn service(
        &mut self,
        fds: &[libc::pollfd],
        mut handle: impl FnMut(Request) -> (Response, Vec<std::os::fd::OwnedFd>),
    ) {
        for (c, pfd) in self.connections.iter_mut().zip(&fds[1..]) {
            if pfd.revents == 0 {
                continue;
            }
            if c.output.is_none() {
                c.read();
                if let Some(request) = c.request() {
                    let (response, fds) = match request {
                        Ok(request) => handle(request),
                        Err(e) => (
                            Response::Error {
                                message: format!("bad request: {e}"),
                            },
                            Vec::new(),
                        ),
                    };
                    c.fds = fds;
                    let mut line = serde_json::to_vec(&response).unwrap_or_else(|e| {
                        format!(r#"{{"result":"error","message":"encode answer: {e}"}}"#)
                            .into_bytes()
                    });
                    line.push(b'\n');
                    c.output = Some((line, 0));
                }
            }
            if c.output.is_some() {
                c.write();
            }
        }
        if fds.first().is_some_and(|f| f.revents != 0) {
            while self.connections.len() < MAX_CONNECTIONS {
                match self.listener.accept() {
                    Ok((stream, _)) => {
                        if stream.set_nonblocking(true).is_ok() {
                            self.connections.push(Connection {
                                stream,
                                input: Vec::new(),
                                output: None,
                                fds: Vec::new(),
                                deadline: Instant::now() + CONNECTION_LIMIT,
                                closed: false,
                            });
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break, // WouldBlock, or a connection gone already
                }
            }
        }
        let now = Instant::now();
        self.connections.retain(|c| !c.closed && c.deadline > now);
    }
}

/// Writes `data` with `fds` passed alongside (SCM_RIGHTS).
fn send_with_fds(
    stream: &UnixStream,
    data: &[u8],
    fds: &[std::os::fd::OwnedFd],
) -> std::io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err(std::io::Error::other("too many descriptors to pass"));
    }
    let iov = [std::io::IoSlice::new(data)];
    Ok(rustix::net::sendmsg(
        stream,
        &iov,
        &mut control,
        SendFlags::NOSIGNAL,
    )?)
}

impl Drop for Server {
    fn drop(&mut self) {
        super::forked::keep_in_children(self.listener.as_raw_fd());
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Connection {
    /// Read what there is, up to the end of the first line.
    fn read(&mut self) {
        let mut chunk = [0u8; 8192];
        while !self.input.contains(&b'\n') {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    // End of input: what came is the request (or nothing is).
                    if self.input.is_empty() {
                        self.closed = true;
                    } else {
                        self.input.push(b'\n');
                    }
                    return;
                }
                Ok(n) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    if self.input.len() > MAX_REQUEST {
                        self.input.truncate(MAX_REQUEST);
                        self.input.push(b'\n');
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    /// The request, once its line is complete.
    fn request(&self) -> Option<Result<Request, serde_json::Error>> {
        if self.closed {
            return None;
        }
        let end = self.input.iter().position(|&b| b == b'\n')?;
        Some(serde_json::from_slice(&self.input[..end]))
    }

    /// Send what the socket takes; closed once all is sent.
    fn write(&mut self) {
        let Some((line, sent)) = self.output.as_mut() else {
            return;
        };
        while *sent < line.len() {
            let written = if self.fds.is_empty() {
                self.stream.write(&line[*sent..])
            } else {
                send_with_fds(&self.stream, &line[*sent..], &self.fds)
            };
            if written.is_ok() {
                // Passed (the peer has its own copies): ours go.
                self.fds.clear();
            }
            match written {
                Ok(n) => *sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.closed = true;
    }
}

fn pollfd(fd: std::os::fd::BorrowedFd<'_>, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_are_one_json_object_each() {
        let stop: Request = serde_json::from_str(r#"{"op":"stop","name":"app"}"#).unwrap();
        assert_eq!(
            stop,
            Request::Stop {
                name: "app".into(),
                signal: None,
                grace_period_ms: None
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::State).unwrap(),
            r#"{"op":"state"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::Ok).unwrap(),
            r#"{"result":"ok"}"#
        );
        let started = Response::Started {
            pid: 7,
            started_at: "t".into(),
        };
        let text = serde_json::to_string(&started).unwrap();
        assert_eq!(text, r#"{"result":"started","pid":7,"started_at":"t"}"#);
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), started);
    }

    #[test]
    fn the_lock_tells_a_live_holder_from_a_gone_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!monitor_alive(dir.path()));
        assert_eq!(monitor_pid(dir.path()), None);
        let lock = MonitorLock::acquire(dir.path()).unwrap();
        assert!(monitor_alive(dir.path()));
        assert_eq!(monitor_pid(dir.path()), Some(std::process::id() as i32));
        // A second holder is refused (flock locks belong to the open file,
        // so this process's second open conflicts with its first).
        let e = MonitorLock::acquire(dir.path()).unwrap_err();
        assert!(e.to_string().contains("another monitor"), "{e}");
        drop(lock);
        assert!(!monitor_alive(dir.path()));
        assert_eq!(monitor_pid(dir.path()), None);
    }

    #[test]
    fn a_server_answers_one_request_per_connection() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(socket_path(dir.path()), "stale").unwrap();
        let mut server = Server::bind(dir.path()).unwrap();
        let mode = std::fs::metadata(socket_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let run_dir = dir.path().to_path_buf();
        let client = std::thread::spawn(move || {
            let state = request(&run_dir, &Request::State, Duration::from_secs(5));
            let mut raw = UnixStream::connect(socket_path(&run_dir)).unwrap();
            raw.write_all(b"{\"op\":\"bogus\"}\n").unwrap();
            let mut answer = String::new();
            raw.read_to_string(&mut answer).unwrap();
            // An answer with descriptors: a pipe's read end comes along.
            let attach = Request::Attach { name: "app".into() };
            let (attached, fds) =
                request_with_fds(&run_dir, &attach, Duration::from_secs(5)).unwrap();
            assert_eq!(
                attached,
                Response::Attached {
                    stdin: false,
                    terminal: false,
                }
            );
            assert_eq!(fds.len(), 1);
            let mut passed = String::new();
            File::from(fds.into_iter().next().unwrap())
                .read_to_string(&mut passed)
                .unwrap();
            assert_eq!(passed, "through the socket");
            (state.unwrap(), answer)
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while !client.is_finished() && Instant::now() < deadline {
            let mut fds = Vec::new();
            server.pollfds(&mut fds);
            // SAFETY: `fds` is a valid array of pollfd structures.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
            server.service(&fds, |r| {
                let answer = match r {
                    Request::Attach { .. } => {
                        let (r, w) = rustix::pipe::pipe().unwrap();
                        File::from(w).write_all(b"through the socket").unwrap();
                        (
                            Response::Attached {
                                stdin: false,
                                terminal: false,
                            },
                            vec![r],
                        )
                    }
                    _ => (
                        Response::State {
                            containers: Vec::new(),
                        },
                        Vec::new(),
                    ),
                };
                seen.push(r);
                answer
            });
        }
        let (state, bogus) = client.join().unwrap();
        assert_eq!(
            state,
            Response::State {
                containers: Vec::new()
            }
        );
        assert!(bogus.starts_with(r#"{"result":"error","message":"bad request: "#));
        assert!(bogus.ends_with("}\n"), "{bogus}");
        assert_eq!(
            seen,
            [Request::State, Request::Attach { name: "app".into() }]
        );
        drop(server);
        assert!(!socket_path(dir.path()).exists());
        let e = request(dir.path(), &Request::State, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, ControlError::NotListening { .. }), "{e}");
    }

    #[test]
    fn a_silent_monitor_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let _listener = UnixListener::bind(socket_path(dir.path())).unwrap();
        let start = Instant::now();
        let e = request(dir.path(), &Request::State, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, ControlError::Timeout { .. }), "{e}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
