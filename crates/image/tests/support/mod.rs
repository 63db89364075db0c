//! Shared set-up for the integration tests: the real local registries started
//! by scripts/registry.sh, a fresh store root per test, and a guard that
//! unmounts and removes whatever a test left, even when it fails.
#![allow(dead_code)]

use podrun_image::{Images, PullOptions};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The plain local registry (`PODRUN_TEST_REGISTRY`, default 127.0.0.1:5000).
pub fn registry() -> String {
    std::env::var("PODRUN_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

/// The plain local registry, checked to accept connections. A test that needs
/// it fails here, saying how to start it, instead of passing having tested nothing.
pub fn require_registry() -> String {
    let r = registry();
    let connected = r
        .to_socket_addrs()
        .and_then(|mut addrs| {
            addrs
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))
        })
        .and_then(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)));
    if let Err(e) = connected {
        panic!(
            "needs the test registry at {r} (PODRUN_TEST_REGISTRY): {e}; \
             start it with scripts/registry.sh start and push the test images \
             with scripts/test-images.sh (scripts/test.sh does both)"
        );
    }
    r
}

/// The registry with basic auth (user podrun, password secret).
pub fn auth_registry() -> String {
    std::env::var("PODRUN_TEST_AUTH_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5001".into())
}

/// The directory with the image archives the image script built.
pub fn image_files() -> PathBuf {
    std::env::var_os("PODRUN_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/test-images"))
}

/// `<registry>/<name>`.
pub fn image(name: &str) -> String {
    format!("{}/{name}", registry())
}

/// A store root in a temp dir; on drop, unmounts anything mounted below it.
pub struct TestRoot {
    pub dir: tempfile::TempDir,
    pub images: Images,
}

impl TestRoot {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("podrun-test-")
            .tempdir()
            .unwrap();
        let images = Images::open(&dir.path().join("root")).unwrap();
        TestRoot { dir, images }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Options that read credentials only from the given files (never the user's own).
    pub fn options(&self) -> PullOptions {
        PullOptions {
            auth_files: Some(vec![]),
            ..Default::default()
        }
    }

    /// Paths of every file below `sub` of the root, relative to it.
    pub fn files(&self, sub: &str) -> Vec<String> {
        let base = self.root().join(sub);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        out.push(p.strip_prefix(base).unwrap().display().to_string());
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(base, &p, out);
        }
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        unmount_below(self.dir.path());
    }
}

/// Mount points below `dir`, deepest first.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut m: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(String::from)
        .collect();
    m.sort_by_key(|p| std::cmp::Reverse(p.len()));
    m
}

pub fn unmount_below(dir: &Path) {
    for m in mounts_below(dir) {
        let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
    }
}

pub mod proxy;
