//! What the runtime's integration tests need of the machine.

/// Fails the test unless it runs as root: these tests mount file systems and
/// make cgroups, and one that cannot must fail, not pass having tested nothing.
pub fn require_root() {
    let euid = rustix::process::geteuid();
    assert!(
        euid.is_root(),
        "needs root (running as uid {}): run the tests as root, as scripts/test.sh and CI do",
        euid.as_raw()
    );
}
