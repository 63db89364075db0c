//! The caller's side of a container process's pseudo-terminal: receive the
//! pty master on a console socket (the OCI `--console-socket` protocol), put our
//! terminal in raw mode, and copy between it and the master until the process
//! has exited.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize, OptionalActions, Termios};

/// Why an exec's terminal or wait failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// console socket {path}: {source}
    #[error("console socket {}: {source}", .path.display())]
    Listen {
        /// The socket.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// become subreaper: {0}
    #[error("become subreaper: {0}")]
    Subreaper(#[source] rustix::io::Errno),
    /// exec: {0} (the pty master did not arrive on the console socket)
    #[error("exec: {0}")]
    ReceiveMaster(#[source] std::io::Error),
    /// exec: terminal: {0}
    #[error("exec: terminal: {0}")]
    Terminal(#[source] std::io::Error),
    /// exec: wait for {pid}: {source}
    #[error("exec: wait for {pid}: {source}")]
    Wait {
        /// The exec'd process.
        pid: i32,
        /// The system's error.
        source: rustix::io::Errno,
    },
}

/// A console socket at `path` (replacing a stale one).
pub(crate) fn listen(path: &Path) -> Result<UnixListener, ConsoleError> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(|source| ConsoleError::Listen {
        path: path.into(),
        source,
    })
}

/// Become the subreaper of our descendants: a runtime's exec'd process is the
/// child of a process that exits (the runtime's own or libcontainer's
/// intermediate), and its exit status would go to init instead of us.
pub(crate) fn become_subreaper() -> Result<(), ConsoleError> {
    // PR_SET_CHILD_SUBREAPER's argument is a flag; rustix takes it as an
    // Option<Pid>, and any Some sets it.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(ConsoleError::Subreaper)
}

/// Be the terminal of process `pid`, whose runtime sends its pty master to
/// `listener`, until it exits; its exit code.
pub(crate) fn attach(listener: &UnixListener, pid: i32) -> Result<i32, ConsoleError> {
    let master = receive_master(listener).map_err(ConsoleError::ReceiveMaster)?;
    let raw = RawMode::enter(master.as_fd()).map_err(ConsoleError::Terminal)?;
    let mut status = None;
    let copied = copy(&master, || {
        status = wait_for(pid, true).ok().flatten();
        status.is_some()
    });
    drop(raw);
    copied.map_err(ConsoleError::Terminal)?;
    match status {
        Some(code) => Ok(code),
        None => wait(pid),
    }
}

/// Wait for `pid` to exit; its exit code (128 + the signal that killed it).
pub(crate) fn wait(pid: i32) -> Result<i32, ConsoleError> {
    match wait_for(pid, false) {
        Ok(Some(code)) => Ok(code),
        // Without WNOHANG waitpid returns a status or fails.
        Ok(None) => Err(ConsoleError::Wait {
            pid,
            source: rustix::io::Errno::CHILD,
        }),
        Err(source) => Err(ConsoleError::Wait { pid, source }),
    }
}

/// Wait for `pid`; its exit code, or None when it is still running (`nohang`).
fn wait_for(pid: i32, nohang: bool) -> Result<Option<i32>, rustix::io::Errno> {
    let target = rustix::process::Pid::from_raw(pid).ok_or(rustix::io::Errno::CHILD)?;
    let flags = if nohang {
        rustix::process::WaitOptions::NOHANG
    } else {
        rustix::process::WaitOptions::empty()
    };
    loop {
        match rustix::process::waitpid(Some(target), flags) {
            Ok(Some((_, status))) => {
                return Ok(Some(match status.terminating_signal() {
                    Some(signal) => 128 + signal,
                    None => status.exit_status().unwrap_or(0),
                }))
            }
            Ok(None) => return Ok(None),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Files removed when dropped (an exec's scratch files).
pub(crate) struct RemoveOnDrop(pub(crate) Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Take the pty master from the first connection to `listener`, waiting at
/// most `timeout` for the connection (the runtime connects while it creates
/// the container, before it returns).
pub(crate) fn receive_master_within(
    listener: &UnixListener,
    timeout: std::time::Duration,
) -> std::io::Result<OwnedFd> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let timeout = Timespec::try_from(timeout).map_err(std::io::Error::other)?;
    let mut fds = [PollFd::new(listener, PollFlags::IN)];
    if poll(&mut fds, Some(&timeout))? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "console socket: the runtime sent no terminal",
        ));
    }
    receive_master(listener)
}

/// Take the pty master from the first connection to `listener`.
fn receive_master(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    let (stream, _) = listener.accept()?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut name)];
    rustix::net::recvmsg(&stream, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(std::io::Error::other(
        "console socket: no file descriptor received",
    ))
}

/// Our terminal in raw mode until dropped; nothing when stdin is no terminal.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Put stdin's terminal (if it is one) in raw mode, and give `master` its size.
    fn enter(master: BorrowedFd<'_>) -> std::io::Result<Self> {
        let stdin = std::io::stdin();
        if !rustix::termios::isatty(&stdin) {
            return Ok(Self { saved: None });
        }
        if let Ok(size) = tcgetwinsize(&stdin) {
            let _ = tcsetwinsize(master, size);
        }
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(Self { saved: Some(saved) })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, saved);
        }
    }
}

/// Set when our terminal's size changed (SIGWINCH).
static RESIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_resize(_: libc::c_int) {
    RESIZED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Note SIGWINCH (without SA_RESTART, so it interrupts poll): our terminal's
/// new size is passed on to the container's.
fn watch_resizes() {
    // SAFETY: the handler only stores to an atomic; the struct is zeroed
    // then filled as sigaction wants it.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_resize as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGWINCH, &action, std::ptr::null_mut());
    }
}

/// Copy stdin to `master` and `master` to stdout until the terminal hangs up
/// (every holder of the slave closed it) or `exited` says the process is gone
/// (then what is left in the master is still copied).
fn copy(master: &OwnedFd, mut exited: impl FnMut() -> bool) -> std::io::Result<()> {
    rustix::fs::fcntl_setfl(master, rustix::fs::OFlags::NONBLOCK)?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = true;
    let mut buf = vec![0u8; 16 * 1024];
    let terminal = rustix::termios::isatty(&stdin);
    if terminal {
        watch_resizes();
    }
    loop {
        let mut fds = vec![libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if stdin_open {
            fds.push(libc::pollfd {
                fd: stdin.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout = Duration::from_millis(100).as_millis() as i32;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if terminal && RESIZED.swap(false, std::sync::atomic::Ordering::Relaxed) {
            if let Ok(size) = tcgetwinsize(&stdin) {
                let _ = tcsetwinsize(master, size);
            }
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if stdin_open && fds[1].revents != 0 {
            match rustix::io::read(&stdin, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => write_all(master.as_fd(), &buf[..n])?,
            }
        }
        if fds[0].revents != 0 && !pump(master, stdout.as_fd(), &mut buf)? {
            return Ok(());
        }
        if n == 0 && exited() {
            pump(master, stdout.as_fd(), &mut buf)?;
            return Ok(());
        }
    }
}

/// Copy what `master` holds now to `out`; false once it hung up.
fn pump(master: &OwnedFd, out: BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<bool> {
    loop {
        match rustix::io::read(master, &mut *buf) {
            Ok(0) => return Ok(false),
            Ok(n) => write_all(out, &buf[..n])?,
            Err(rustix::io::Errno::AGAIN) => return Ok(true),
            Err(rustix::io::Errno::INTR) => {}
            // EIO: the slave side is closed everywhere.
            Err(_) => return Ok(false),
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
