//! Joining a real network namespace (needs root: the test fails without it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podrun_net::in_network_namespace;

/// A process in a network namespace of its own, killed and reaped when dropped.
struct NetnsHolder(Child);

impl NetnsHolder {
    /// `unshare --net sleep`, once its namespace is no longer ours.
    fn start() -> Self {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare (util-linux)");
        let holder = NetnsHolder(child);
        let ours = namespace_of(Path::new("/proc/self/ns/net"));
        let deadline = Instant::now() + Duration::from_secs(5);
        // The child execs unshare, which then unshares: until then it is in ours.
        while namespace_of(&holder.ns()) == ours {
            assert!(Instant::now() < deadline, "unshare --net did not unshare");
            std::thread::sleep(Duration::from_millis(5));
        }
        holder
    }

    fn ns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.0.id()))
    }
}

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `net:[<inode>]`.
fn namespace_of(link: &Path) -> PathBuf {
    std::fs::read_link(link).unwrap_or_else(|e| panic!("readlink {}: {e}", link.display()))
}

#[test]
fn f_sees_the_pods_namespace_and_the_caller_keeps_its_own() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test joins a network namespace: run it as root"
    );
    let holder = NetnsHolder::start();
    let before = namespace_of(Path::new("/proc/thread-self/ns/net"));

    let seen = in_network_namespace(Some(&holder.ns()), || {
        namespace_of(Path::new("/proc/thread-self/ns/net"))
    })
    .expect("join the holder's namespace");

    assert_eq!(seen, namespace_of(&holder.ns()));
    assert_ne!(seen, before);
    assert_eq!(namespace_of(Path::new("/proc/thread-self/ns/net")), before);

    let host = in_network_namespace(None, || namespace_of(Path::new("/proc/thread-self/ns/net")))
        .expect("run without a namespace");
    assert_eq!(host, before);
}
