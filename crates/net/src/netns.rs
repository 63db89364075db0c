//! Running code in a pod's network namespace: a probe dials the pod's ports from
//! inside it, since a pod has no address the node can reach yet (no CNI).
//!
//! `setns(2)` moves only the calling thread, and a thread cannot be trusted to go
//! back, so the work runs on a fresh thread that ends with it. The one system call
//! goes through [`Syscall`], so which thread joins what is tested with
//! [`RecordingSyscall`] and without root.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::ThreadId;

/// The system calls this module makes.
pub trait Syscall: Sync {
    /// Moves the calling thread into the network namespace pinned at `ns` (an nsfs
    /// file or a bind mount of one, such as a sandbox's pin).
    fn join_network_namespace(&self, ns: &Path) -> io::Result<()>;
}

/// The kernel's `setns(2)`, through rustix.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn join_network_namespace(&self, ns: &Path) -> io::Result<()> {
        let file = File::open(ns)?;
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        Ok(())
    }
}

/// Why code could not run in a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace could not be opened or joined.
    #[error("join network namespace {}: {source}", path.display())]
    Join {
        /// The pinned namespace.
        path: PathBuf,
        /// What open or setns said.
        source: io::Error,
    },
    /// The code panicked on its thread.
    #[error("the thread in the pod's network namespace panicked")]
    Panicked,
}

/// Runs `f` on a thread of its own that first joins the network namespace pinned at
/// `ns`, or stays in the caller's with `None` (a `hostNetwork` pod). The thread is new
/// even then: it belongs to no async runtime, so `f` may build and block on one.
pub fn in_network_namespace<T: Send>(
    ns: Option<&Path>,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetnsError> {
    in_network_namespace_with(&LinuxSyscall, ns, f)
}

/// [`in_network_namespace`] through the given system calls.
pub fn in_network_namespace_with<S: Syscall, T: Send>(
    sys: &S,
    ns: Option<&Path>,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetnsError> {
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            if let Some(ns) = ns {
                sys.join_network_namespace(ns)
                    .map_err(|source| NetnsError::Join {
                        path: ns.to_path_buf(),
                        source,
                    })?;
            }
            Ok(f())
        });
        thread.join().map_err(|_| NetnsError::Panicked)?
    })
}

/// A [`Syscall`] that joins nothing and records which thread asked to join which
/// namespace; it fails every join with `fail` when that is set.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    joins: Mutex<Vec<(ThreadId, PathBuf)>>,
    /// The error every join returns, if any.
    pub fail: Option<io::ErrorKind>,
}

impl RecordingSyscall {
    /// The joins asked for so far, in order, with the asking thread.
    pub fn joins(&self) -> Vec<(ThreadId, PathBuf)> {
        self.joins.lock().expect("not poisoned").clone()
    }
}

impl Syscall for RecordingSyscall {
    fn join_network_namespace(&self, ns: &Path) -> io::Result<()> {
        self.joins
            .lock()
            .expect("not poisoned")
            .push((std::thread::current().id(), ns.to_path_buf()));
        match self.fail {
            Some(kind) => Err(io::Error::from(kind)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f_runs_on_the_thread_that_joined_and_never_on_the_callers() {
        let sys = RecordingSyscall::default();
        let ns = Path::new("/run/podrun/sandboxes/p/ns/net");
        let caller = std::thread::current().id();
        let ran_on = in_network_namespace_with(&sys, Some(ns), || std::thread::current().id())
            .expect("joined");
        assert_ne!(ran_on, caller);
        assert_eq!(sys.joins(), [(ran_on, ns.to_path_buf())]);
    }

    #[test]
    fn without_a_namespace_nothing_is_joined_but_the_thread_is_still_new() {
        let sys = RecordingSyscall::default();
        let caller = std::thread::current().id();
        let ran_on =
            in_network_namespace_with(&sys, None, || std::thread::current().id()).expect("ran");
        assert_ne!(ran_on, caller);
        assert!(sys.joins().is_empty());
    }

    #[test]
    fn a_failed_join_does_not_run_f_and_names_the_namespace() {
        let sys = RecordingSyscall {
            fail: Some(io::ErrorKind::PermissionDenied),
            ..Default::default()
        };
        let ns = Path::new("/pins/net");
        let mut ran = false;
        let error = in_network_namespace_with(&sys, Some(ns), || ran = true).unwrap_err();
        assert!(!ran, "f ran outside the pod's namespace");
        assert!(
            matches!(&error, NetnsError::Join { path, source }
                if path == ns && source.kind() == io::ErrorKind::PermissionDenied),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with("join network namespace /pins/net: "),
            "{error}"
        );
    }

    #[test]
    fn a_panic_in_f_is_an_error_not_a_panic_of_the_caller() {
        let sys = RecordingSyscall::default();
        let error = in_network_namespace_with(&sys, None, || panic!("probe bug")).unwrap_err();
        assert!(matches!(error, NetnsError::Panicked), "{error:?}");
    }

    #[test]
    fn the_real_join_of_a_missing_pin_fails_with_its_path() {
        let error =
            in_network_namespace(Some(Path::new("/nonexistent/ns/net")), || ()).unwrap_err();
        assert!(
            matches!(&error, NetnsError::Join { source, .. }
                if source.kind() == io::ErrorKind::NotFound),
            "{error:?}"
        );
    }
}
