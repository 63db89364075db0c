//! Run a step in a short-lived child of the monitor and bring its result back.
//!
//! The monitor lives as long as its pod; whatever code it runs stays mapped in
//! it (a file page, once faulted in, stays in the page tables, with fault-around
//! bringing 64 KiB at a time), and whatever stack and heap it touches stays
//! private to it. libcontainer's create, start and delete touch several MiB of
//! code and tens of KiB of stack and heap, once each: done in a forked child
//! that exits, all of that goes with the child. A container's init, which
//! libcontainer leaves as its caller's child, is reparented to the monitor (a
//! child-subreaper) when the child exits, as with `crun run --detach`.
//!
//! Forking is sound because the monitor is single-threaded; the child only runs
//! the step, writes the result to a pipe and leaves with `_exit`, running no
//! destructor or exit handler of the parent's state. It first closes the
//! descriptors registered with [`close_in_children`] (the liveness lock, the
//! control socket): all are close-on-exec, but libcontainer runs the
//! container's init from this child without an exec for a while, and a copy of
//! the lock's descriptor anywhere would keep the lock held.

use std::io::{Read, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// Descriptors a forked child closes before anything else: the monitor's
/// liveness lock (a child holding a copy would hold the lock) and its control
/// socket. -1: a free slot.
static CLOSE_IN_CHILD: [AtomicI32; 4] = [const { AtomicI32::new(-1) }; 4];

/// Have every child [`in_child`] forks from now on close `fd` first thing.
pub(crate) fn close_in_children(fd: RawFd) {
    for slot in &CLOSE_IN_CHILD {
        if slot
            .compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
    debug_assert!(false, "no free slot for descriptor {fd}");
}

/// Undo [`close_in_children`] (before `fd` is closed, so a number reused for
/// another descriptor is not closed by mistake).
pub(crate) fn keep_in_children(fd: RawFd) {
    for slot in &CLOSE_IN_CHILD {
        let _ = slot.compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Why a step run in a child failed.
#[derive(Debug, thiserror::Error)]
pub enum ForkedError {
    /// pipe: {0}
    #[error("pipe: {0}")]
    Pipe(#[source] rustix::io::Errno),
    /// fork: {0}
    #[error("fork: {0}")]
    Fork(#[source] std::io::Error),
    /// The step's own error, as the child said it (only its text crosses the
    /// pipe).
    #[error("{0}")]
    Step(String),
    /// the monitor's child {pid} gave no result: {status}
    #[error("the monitor's child {pid} gave no result: {status}")]
    NoResult {
        /// The child.
        pid: i32,
        /// How it ended, in words.
        status: String,
    },
}

/// Run `step` in a child process; its result, its error word for word.
///
/// `step` is called in the child only: whatever it owns (descriptors meant for
/// a container) the parent drops right after the fork. The child is waited for
/// before this returns, so the monitor's reaping of every other child never
/// sees it.
pub(crate) fn in_child<E: std::fmt::Display>(
    step: impl FnOnce() -> Result<i32, E>,
) -> Result<i32, ForkedError> {
    let (read_end, write_end) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(ForkedError::Pipe)?;
    // SAFETY: the monitor is single-threaded (its one thread is this one), so
    // the child is a whole copy of it: no lock can be held by a thread the
    // child does not have.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(ForkedError::Fork(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        close_registered();
        drop(read_end);
        report(write_end, step());
        // SAFETY: _exit ends the child at once; nothing of the parent's state
        // needs to be flushed or dropped here.
        unsafe { libc::_exit(0) }
    }
    drop(step);
    drop(write_end);
    let result = receive(read_end);
    let status = wait(pid);
    match result {
        Some(result) => result,
        None => Err(ForkedError::NoResult { pid, status }),
    }
}

/// Fork a child that runs `step` and exits with its value as status; its
/// pid. Not waited for: the monitor's reaping of its children collects it.
pub(crate) fn spawn(step: impl FnOnce() -> i32) -> Result<i32, ForkedError> {
    // SAFETY: as in `in_child`: the monitor is single-threaded.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(ForkedError::Fork(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        close_registered();
        let code = step();
        // SAFETY: as in `in_child`.
        unsafe { libc::_exit(code.clamp(0, 255)) }
    }
    Ok(pid)
}

/// In a child: close the descriptors of [`close_in_children`].
fn close_registered() {
    for slot in &CLOSE_IN_CHILD {
        let fd = slot.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: the child owns its copies of the parent's descriptors;
            // nothing in it uses this one (the parent's owner is not run here).
            unsafe { libc::close(fd) };
        }
    }
}

/// The result as one message: `O` and the value (4 bytes, little-endian), or
/// `E` and the error's text; the length (4 bytes) comes first.
fn report(fd: OwnedFd, result: Result<i32, impl std::fmt::Display>) {
    let mut message = Vec::new();
    match result {
        Ok(value) => {
            message.push(b'O');
            message.extend_from_slice(&value.to_le_bytes());
        }
        Err(e) => {
            message.push(b'E');
            message.extend_from_slice(e.to_string().as_bytes());
        }
    }
    let mut framed = (message.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(&message);
    let _ = std::fs::File::from(fd).write_all(&framed);
}

/// Read one message (a container's init may hold a copy of the pipe until it
/// execs, so end-of-file is not waited for); None when the child wrote none.
fn receive(fd: OwnedFd) -> Option<Result<i32, ForkedError>> {
    let mut file = std::fs::File::from(fd);
    let mut len = [0; 4];
    file.read_exact(&mut len).ok()?;
    let mut message = vec![0; u32::from_le_bytes(len) as usize];
    file.read_exact(&mut message).ok()?;
    match message.split_first()? {
        (b'O', value) => Some(Ok(i32::from_le_bytes(value.try_into().ok()?))),
        (b'E', text) => Some(Err(ForkedError::Step(
            String::from_utf8_lossy(text).into_owned(),
        ))),
        _ => None,
    }
}

/// Wait for child `pid`; how it ended, in words.
fn wait(pid: libc::pid_t) -> String {
    let Some(child) = rustix::process::Pid::from_raw(pid) else {
        return format!("wait: {}", rustix::io::Errno::CHILD);
    };
    let status = loop {
        match rustix::process::waitpid(Some(child), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => break status,
            Ok(None) => return format!("wait: {}", rustix::io::Errno::CHILD),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return format!("wait: {e}"),
        }
    };
    match status.terminating_signal() {
        Some(signal) => format!("killed by signal {signal}"),
        None => format!("exit status {}", status.exit_status().unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_word_for_word() {
        assert_eq!(in_child(|| Ok::<_, String>(-42)).unwrap(), -42);
        let text = "exec: \"foo\": executable file not found in $PATH ü";
        for sent in [text, ""] {
            let got = in_child(|| Err::<i32, _>(sent)).unwrap_err();
            assert!(matches!(&got, ForkedError::Step(t) if t == sent), "{got:?}");
        }
    }

    #[test]
    fn a_child_that_dies_says_how() {
        let e = in_child(|| -> Result<i32, String> {
            // SAFETY: ends the child without a result, as a crash would.
            unsafe { libc::_exit(3) }
        })
        .unwrap_err()
        .to_string();
        assert!(e.ends_with("gave no result: exit status 3"), "{e}");
    }
}
