//! Remote commands (exec, attach) and port forwarding on the runtime, and
//! their SPDY side: the streams the client opens are matched to the command's
//! standard streams, its terminal's size and its status, as kubelet's
//! server matches them (k8s.io/cri-streaming remotecommand/httpstream.go,
//! portforward/httpstream.go).

use super::spdy::{self, header, Connection};
use super::{negotiate, respond, Pending, Request, Streams, CREATION_TIMEOUT};
use podrun_runtime::api::SandboxState;
use podrun_runtime::{NamespaceMode, RuntimeService};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The remote command protocols served over SPDY, in kubelet's order
/// (`SupportedStreamingProtocols`).
pub(super) const SPDY_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// The port-forward protocol.
pub(super) const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// The standard streams of a remote command, as the client's transport gives
/// them; the resize stream carries JSON `{"Width":W,"Height":H}` objects.
#[derive(Default)]
pub(super) struct Io {
    pub stdin: Option<Box<dyn Read + Send>>,
    pub stdout: Option<Box<dyn Write + Send>>,
    pub stderr: Option<Box<dyn Write + Send>>,
    pub resize: Option<Box<dyn Read + Send>>,
    /// Disconnects when the client hangs up: a command still running then
    /// is killed (containerd kills an exec whose request ended).
    pub hangup: Option<std::sync::mpsc::Receiver<()>>,
}

/// Kills the exec helper's tree if the client hangs up before it exits.
/// [`wait`] reaps the helper only after marking it done, under the same
/// lock, so a PID is never signalled after it was reaped.
fn watch_hangup(hangup: Option<std::sync::mpsc::Receiver<()>>, pid: i32) -> Arc<Mutex<bool>> {
    let done = Arc::new(Mutex::new(false));
    if let Some(hangup) = hangup {
        let done = done.clone();
        let _ = std::thread::Builder::new()
            .name("exec-hangup".into())
            .spawn(move || {
                let _ = hangup.recv();
                let done = done.lock().unwrap_or_else(|e| e.into_inner());
                if !*done {
                    tracing::info!(
                        "streaming: the client hung up: killing exec helper {pid} and what it runs"
                    );
                    podrun_runtime::node::kill_tree(pid);
                }
            });
    }
    done
}

/// Waits for the helper to exit without reaping it (WNOWAIT), marks it done,
/// then reaps it.
fn wait(
    child: &mut std::process::Child,
    done: &Mutex<bool>,
) -> io::Result<std::process::ExitStatus> {
    loop {
        // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes one siginfo_t into `info`, which is valid.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
    child.wait()
}

/// How a remote command ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// It exited with this code (128 + the signal that killed it).
    Exited(i32),
    /// It could not be run.
    Failed(String),
}

impl Outcome {
    /// The v4 status object (a metav1.Status as kubelet's
    /// remotecommand/status.go writes it) for the error stream.
    pub(super) fn status_json(&self) -> Vec<u8> {
        let value = match self {
            Outcome::Exited(0) => serde_json::json!({"status": "Success"}),
            Outcome::Exited(code) => serde_json::json!({
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: exit status {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            Outcome::Failed(why) => serde_json::json!({
                "status": "Failure",
                "message": format!("Internal error occurred: error executing command in container: {why}"),
                "reason": "InternalError",
                "code": 500,
            }),
        };
        value.to_string().into_bytes()
    }

    /// What protocols before v4 write on the error stream: the message of a
    /// failure, nothing on success.
    pub(super) fn status_text(&self) -> Option<Vec<u8>> {
        match self {
            Outcome::Exited(0) => None,
            Outcome::Exited(code) => Some(
                format!("command terminated with non-zero exit code: exit status {code}").into(),
            ),
            Outcome::Failed(why) => Some(
                format!("Internal error occurred: error executing command in container: {why}")
                    .into(),
            ),
        }
    }
}

/// Runs a remote command (exec, or attach) with the client's streams.
pub(super) fn run(runtime: &dyn RuntimeService, pending: &Pending, io: Io) -> Outcome {
    match pending {
        Pending::Exec {
            container_id,
            cmd,
            streams,
        } => match runtime.exec(container_id, cmd, streams.tty) {
            Ok(command) if streams.tty => exec_tty(command, io),
            Ok(command) => exec_pipes(command, io),
            Err(e) => Outcome::Failed(e.to_string()),
        },
        Pending::Attach {
            container_id,
            streams,
        } => attach(runtime, container_id, *streams, io),
        Pending::PortForward { .. } => Outcome::Failed("not a remote command".into()),
    }
}

/// Attach: the container's output from now on to the client, the client's
/// stdin to the container's (when it was made with `stdin`), until the
/// container's output ends (it exited) or the client hangs up. A container on
/// a terminal has one output (stdout) and is resized by the client's resize
/// stream; a client asking for a terminal gets one only from such a
/// container.
fn attach(runtime: &dyn RuntimeService, id: &str, streams: Streams, io: Io) -> Outcome {
    let mut attached = match runtime.attach(id) {
        Ok(attached) => attached,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    if streams.tty && attached.terminal.is_none() {
        return Outcome::Failed(format!(
            "container {id}: attach: a terminal was asked for, but the container has none (it was not created with tty)"
        ));
    }
    if let (Some(master), Some(sizes)) = (attached.terminal.take(), io.resize) {
        let _ = std::thread::Builder::new()
            .name("attach-resize".into())
            .spawn(move || {
                let master = OwnedFd::from(master);
                for size in serde_json::Deserializer::from_reader(sizes).into_iter::<Size>() {
                    match size {
                        Ok(size) => set_size(&master, &size),
                        Err(_) => break,
                    }
                }
            });
    }
    // A terminal's master is non-blocking (the monitor reads it so): the
    // client's input waits for room there.
    let stdin = attached.stdin.map(WaitingWriter);
    // true: an output (or, without outputs, stdin) ended; false: hung up.
    let (tx, ended) = std::sync::mpsc::channel::<bool>();
    let mut waiting = 0;
    for (to, from) in [
        (io.stdout, Some(attached.stdout)),
        (io.stderr, attached.stderr),
    ] {
        // An output nobody reads is closed: the monitor stops sending it.
        let (Some(mut to), Some(from)) = (to, from) else {
            continue;
        };
        let (tx, mut from) = (tx.clone(), from);
        let spawned = std::thread::Builder::new()
            .name("attach-output".into())
            .spawn(move || {
                let _ = io::copy(&mut from, &mut to);
                let _ = tx.send(true);
            });
        waiting += usize::from(spawned.is_ok());
    }
    if let (Some(mut from), Some(mut to)) = (io.stdin, stdin) {
        let tx = (waiting == 0).then(|| tx.clone());
        waiting += usize::from(tx.is_some());
        let _ = std::thread::Builder::new()
            .name("attach-stdin".into())
            .spawn(move || {
                let _ = io::copy(&mut from, &mut to);
                // Ours closed: with stdin_once the container sees end-of-file.
                drop(to);
                if let Some(tx) = tx {
                    let _ = tx.send(true);
                }
            });
    }
    if let Some(hangup) = io.hangup {
        let tx = tx.clone();
        let _ = std::thread::Builder::new()
            .name("attach-hangup".into())
            .spawn(move || {
                let _ = hangup.recv();
                let _ = tx.send(false);
            });
    }
    drop(tx);
    while waiting > 0 {
        match ended.recv() {
            Ok(true) => waiting -= 1,
            _ => break,
        }
    }
    Outcome::Exited(0)
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Copies `from` to `to` until `from` ends; `to` is dropped then (which ends
/// the client's stream).
fn copy_thread(
    name: &str,
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.flush();
        })
}

/// Without a terminal: the command's stdin, stdout and stderr are pipes to
/// the client's streams (or nothing when it did not ask for them).
fn exec_pipes(mut command: Command, io: Io) -> Outcome {
    command
        .stdin(if io.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if io.stdout.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(if io.stderr.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Outcome::Failed(format!("start the exec helper: {e}")),
    };
    let done = watch_hangup(io.hangup, child.id() as i32);
    // stdin is not waited for: the client may keep it open after the
    // command has exited; its copy ends with the connection.
    if let (Some(from), Some(to)) = (io.stdin, child.stdin.take()) {
        let _ = copy_thread("exec-stdin", from, to);
    }
    let mut outputs = Vec::new();
    if let (Some(to), Some(from)) = (io.stdout, child.stdout.take()) {
        outputs.extend(copy_thread("exec-stdout", from, to).ok());
    }
    if let (Some(to), Some(from)) = (io.stderr, child.stderr.take()) {
        outputs.extend(copy_thread("exec-stderr", from, to).ok());
    }
    let status = wait(&mut child, &done);
    for output in outputs {
        let _ = output.join();
    }
    match status {
        Ok(status) => Outcome::Exited(exit_code(status)),
        Err(e) => Outcome::Failed(format!("wait for the exec helper: {e}")),
    }
}

/// A terminal's size as the resize stream sends it.
#[derive(serde::Deserialize)]
struct Size {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

fn set_size(master: &OwnedFd, size: &Size) {
    let ws = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// With a terminal: the exec helper runs on a pseudo-terminal of ours, as its
/// controlling terminal, so a resize (TIOCSWINSZ here) reaches it as SIGWINCH
/// and it passes the size on to the container's terminal. Our master is the
/// client's stdin and stdout.
fn exec_tty(mut command: Command, io: Io) -> Outcome {
    let (mut master_fd, mut slave_fd) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the given integers; the
    // name, termios and size pointers may be null.
    let made = unsafe {
        libc::openpty(
            &mut master_fd,
            &mut slave_fd,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if made != 0 {
        return Outcome::Failed(format!("openpty: {}", io::Error::last_os_error()));
    }
    // SAFETY: openpty succeeded: both descriptors are open and ours alone.
    let (master, slave) = unsafe {
        (
            OwnedFd::from_raw_fd(master_fd),
            OwnedFd::from_raw_fd(slave_fd),
        )
    };
    let stdio = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
    let (Ok(i), Ok(o), Ok(e)) = (stdio(&slave), stdio(&slave), stdio(&slave)) else {
        return Outcome::Failed("duplicate the terminal".into());
    };
    command.stdin(i).stdout(o).stderr(e);
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    // The first size may come before the helper starts: it reads it then.
    let mut resize = io
        .resize
        .map(|r| serde_json::Deserializer::from_reader(r).into_iter::<Size>());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Outcome::Failed(format!("start the exec helper: {e}")),
    };
    drop(command);
    drop(slave);
    let done = watch_hangup(io.hangup, child.id() as i32);
    if let Some(sizes) = resize.take() {
        if let Ok(master) = master.try_clone() {
            let _ = std::thread::Builder::new()
                .name("exec-resize".into())
                .spawn(move || {
                    for size in sizes.flatten() {
                        set_size(&master, &size);
                    }
                });
        }
    }
    if let (Some(from), Ok(to)) = (io.stdin, master.try_clone()) {
        let _ = copy_thread("exec-stdin", from, std::fs::File::from(to));
    }
    let output = match (io.stdout, master.try_clone()) {
        (Some(to), Ok(from)) => {
            copy_thread("exec-stdout", PtyReader(std::fs::File::from(from)), to).ok()
        }
        _ => None,
    };
    let status = wait(&mut child, &done);
    if let Some(output) = output {
        // It ends when the helper, the last holder of the slave, is gone.
        let _ = output.join();
    }
    match status {
        Ok(status) => Outcome::Exited(exit_code(status)),
        Err(e) => Outcome::Failed(format!("wait for the exec helper: {e}")),
    }
}

/// A writer to a non-blocking descriptor (a terminal's master) that waits
/// for room instead of failing with `WouldBlock`.
struct WaitingWriter(std::fs::File);

impl Write for WaitingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.0.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fd = libc::pollfd {
                        fd: self.0.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd, its count passed.
                    if unsafe { libc::poll(&mut fd, 1, -1) } < 0 {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::Interrupted {
                            return Err(e);
                        }
                    }
                }
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A pty master read to its end: EIO (every slave closed) is the end.
struct PtyReader(std::fs::File);

impl Read for PtyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
            other => other,
        }
    }
}

/// Serves a SPDY upgrade: negotiates the protocol, then runs the remote
/// command or the port forwarding.
pub(super) fn serve_spdy(
    mut conn: TcpStream,
    rest: Vec<u8>,
    request: &Request,
    pending: Pending,
    runtime: Arc<dyn RuntimeService>,
) {
    let spoken: &[&str] = match pending {
        Pending::PortForward { .. } => &[PORT_FORWARD_PROTOCOL],
        _ => SPDY_PROTOCOLS,
    };
    let offered = request.list("x-stream-protocol-version");
    if offered.is_empty() {
        let text = "unable to upgrade: header X-Stream-Protocol-Version does not exist in request";
        return respond(&mut conn, 400, text, &[]);
    }
    let Some(protocol) = negotiate(&offered, spoken) else {
        let text = format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {spoken:?}"
        );
        let accepted: Vec<_> = spoken
            .iter()
            .map(|p| ("X-Accepted-Stream-Protocol-Versions", *p))
            .collect();
        return respond(&mut conn, 403, &text, &accepted);
    };
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n\r\n"
    );
    if conn.write_all(answer.as_bytes()).is_err() {
        return;
    }
    let (Ok(reading), Ok(writing)) = (conn.try_clone(), conn.try_clone()) else {
        return;
    };
    let reader = io::Cursor::new(rest).chain(reading);
    let forwarding = matches!(pending, Pending::PortForward { .. });
    let spdy = match Connection::serve(reader, writing, move |h| !forwarding || port_stream_ok(h)) {
        Ok(spdy) => spdy,
        Err(e) => return tracing::warn!("streaming: SPDY: {e}"),
    };
    match &pending {
        Pending::PortForward { sandbox_id } => forward_streams(&spdy, runtime.as_ref(), sandbox_id),
        Pending::Exec { streams, .. } | Pending::Attach { streams, .. } => {
            remote_command(&spdy, &protocol, *streams, runtime.as_ref(), &pending)
        }
    }
    end(&spdy, &conn);
}

/// Ends a served connection: GOAWAY, our side shut, and the client given a
/// little while to read what was sent and hang up.
pub(super) fn end(spdy: &Connection, conn: &TcpStream) {
    spdy.close();
    let _ = conn.shutdown(Shutdown::Write);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
}

/// Waits for the streams a remote command with `streams` has (the error
/// stream, one per standard stream asked for, and resize with a terminal
/// from v3 on), runs it, and writes its status.
fn remote_command(
    spdy: &Connection,
    protocol: &str,
    streams: Streams,
    runtime: &dyn RuntimeService,
    pending: &Pending,
) {
    let resizable = !matches!(protocol, "v2.channel.k8s.io" | "channel.k8s.io");
    let expected = 1
        + usize::from(streams.stdin)
        + usize::from(streams.stdout)
        + usize::from(streams.stderr && !streams.tty)
        + usize::from(streams.tty && resizable);
    let deadline = Instant::now() + CREATION_TIMEOUT;
    let mut io = Io::default();
    let mut error = None;
    let mut received = 0;
    // Our halves of the streams the client writes stay open until the end:
    // client-go takes our FIN on stdin as the end of the session and stops
    // sending.
    let mut held = Vec::new();
    while received < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        let stream = match spdy.next_stream_within(left) {
            Ok(stream) => stream,
            Err(timed_out) => {
                if timed_out {
                    tracing::warn!("streaming: timed out waiting for client to create streams");
                }
                return;
            }
        };
        let kind = header(&stream.headers, "streamtype")
            .unwrap_or("")
            .to_owned();
        let (reader, writer) = stream.split();
        match kind.as_str() {
            "error" => error = Some(writer),
            "stdin" => {
                io.stdin = Some(Box::new(reader));
                held.push(writer);
            }
            "stdout" => io.stdout = Some(Box::new(writer)),
            "stderr" => io.stderr = Some(Box::new(writer)),
            "resize" => {
                io.resize = Some(Box::new(reader));
                held.push(writer);
            }
            other => {
                tracing::debug!("streaming: unexpected stream type {other:?}");
                continue;
            }
        }
        received += 1;
    }
    io.hangup = spdy.hangup();
    let outcome = run(runtime, pending, io);
    if let Some(mut error) = error {
        let status = match protocol {
            "v4.channel.k8s.io" => Some(outcome.status_json()),
            _ => outcome.status_text(),
        };
        if let Some(status) = status {
            let _ = error.write_all(&status);
        }
        let _ = error.close();
    }
    drop(held);
}

/// The port of a port-forward stream, or why it is refused (kubelet's
/// `httpStreamReceived`).
fn port_stream(headers: &spdy::Headers) -> Result<u16, String> {
    let port = header(headers, "port").ok_or("\"port\" header is required")?;
    let port: u16 = port
        .parse()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if port < 1 {
        return Err(format!("port \"{port}\" must be > 0"));
    }
    match header(headers, "streamtype") {
        Some("error" | "data") => Ok(port),
        Some(other) => Err(format!("invalid stream type {other:?}")),
        None => Err("\"streamType\" header is required".into()),
    }
}

/// Whether a stream may be opened on a port-forward connection.
pub(super) fn port_stream_ok(headers: &spdy::Headers) -> bool {
    port_stream(headers).is_ok()
}

/// Pairs each request's data and error streams (by `requestID`, or by stream
/// IDs as kubelet derives it for old clients) and forwards each pair on a
/// thread of its own, until the client hangs up.
pub(super) fn forward_streams(spdy: &Connection, runtime: &dyn RuntimeService, sandbox_id: &str) {
    let netns = sandbox_netns(runtime, sandbox_id);
    if let Err(e) = &netns {
        // Every request's error stream gets the reason.
        tracing::warn!("streaming: port forward: {e}");
    }
    let netns = Arc::new(netns);
    let mut pairs: HashMap<String, (Option<spdy::Stream>, Option<spdy::Stream>)> = HashMap::new();
    while let Some(stream) = spdy.next_stream() {
        let kind = header(&stream.headers, "streamtype")
            .unwrap_or("")
            .to_owned();
        let request_id = match header(&stream.headers, "requestid") {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ if kind == "data" => stream.id.saturating_sub(2).to_string(),
            _ => stream.id.to_string(),
        };
        let pair = pairs.entry(request_id.clone()).or_default();
        if kind == "data" {
            pair.0 = Some(stream);
        } else {
            pair.1 = Some(stream);
        }
        if pair.0.is_some() && pair.1.is_some() {
            let Some((Some(data), Some(error))) = pairs.remove(&request_id) else {
                continue;
            };
            let (netns, sandbox) = (netns.clone(), sandbox_id.to_owned());
            let _ = std::thread::Builder::new()
                .name("port-forward".into())
                .spawn(move || forward(&netns, &sandbox, data, error));
        }
    }
}

/// Where a sandbox's connections are dialled: its network namespace's pin,
/// or None for the node's (hostNetwork).
fn sandbox_netns(runtime: &dyn RuntimeService, id: &str) -> Result<Option<PathBuf>, String> {
    let status = runtime.pod_sandbox_status(id).map_err(|e| e.to_string())?;
    if status.sandbox.state != SandboxState::Ready {
        return Err(format!("sandbox {id}: not ready"));
    }
    let network = &status
        .config
        .linux
        .security_context
        .namespace_options
        .network;
    if *network == NamespaceMode::Node {
        return Ok(None);
    }
    match status.namespaces.get("net") {
        Some(path) => Ok(Some(path.clone())),
        None => Err(format!("sandbox {id}: no network namespace")),
    }
}

/// One forwarded connection: dial the port in the sandbox, copy both ways
/// (each side's end half-closes the other), and report a failure on the
/// error stream as kubelet words it.
fn forward(
    netns: &Result<Option<PathBuf>, String>,
    sandbox: &str,
    data: spdy::Stream,
    error: spdy::Stream,
) {
    let port = port_stream(&data.headers).unwrap_or(0);
    let (_, mut error) = error.split();
    let (mut from_client, mut to_client) = data.split();
    let dialed = match netns {
        Ok(netns) => podrun_runtime::port_forward::dial(netns.as_deref(), port),
        Err(e) => Err(e.clone()),
    };
    let pod = match dialed {
        Ok(pod) => pod,
        Err(e) => {
            let text = format!("error forwarding port {port} to pod {sandbox}, uid : {e}");
            tracing::info!("streaming: {text}");
            let _ = error.write_all(text.as_bytes());
            let _ = error.close();
            let _ = to_client.reset();
            return;
        }
    };
    let Ok(mut pod_in) = pod.try_clone() else {
        return;
    };
    let up = std::thread::Builder::new()
        .name("forward-up".into())
        .spawn(move || {
            let _ = io::copy(&mut from_client, &mut pod_in);
            let _ = pod_in.shutdown(Shutdown::Write);
        });
    let mut pod_out = pod;
    let _ = io::copy(&mut pod_out, &mut to_client);
    let _ = to_client.close();
    if let Ok(up) = up {
        let _ = up.join();
    }
    let _ = error.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_kubelets() {
        assert_eq!(Outcome::Exited(0).status_json(), br#"{"status":"Success"}"#);
        let failed: serde_json::Value =
            serde_json::from_slice(&Outcome::Exited(3).status_json()).unwrap();
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        assert_eq!(Outcome::Exited(0).status_text(), None);
        let broken = Outcome::Failed("no such container".into());
        let text = String::from_utf8(broken.status_text().unwrap()).unwrap();
        assert!(text.ends_with("error executing command in container: no such container"));
    }

    #[test]
    fn port_streams_need_a_port_and_a_known_type() {
        let h = |pairs: &[(&str, &str)]| -> spdy::Headers {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            port_stream(&h(&[("port", "80"), ("streamtype", "data")])),
            Ok(80)
        );
        assert!(port_stream(&h(&[("streamtype", "data")])).is_err());
        assert!(port_stream(&h(&[("port", "0"), ("streamtype", "data")])).is_err());
        assert!(port_stream(&h(&[("port", "x"), ("streamtype", "data")])).is_err());
        assert!(port_stream(&h(&[("port", "80"), ("streamtype", "other")])).is_err());
    }
}
