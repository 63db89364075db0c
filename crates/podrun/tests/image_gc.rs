//! kubelet's image garbage collection in the agent, under real disk
//! pressure: the podrun root is a small tmpfs the test mounts (and a drop
//! guard unmounts, whatever happens), real images from the test registry
//! fill part of it, a filler file pushes its usage over the configured high
//! threshold, and the agent must remove exactly the least recently used
//! unused images until the usage is under the low threshold, keep the image
//! a running pod uses and the one pulled within the minimum age, and record
//! kubelet's FreeDiskSpaceFailed event on the node when it cannot free
//! enough. And `podrun image prune [-a]` by hand.
//!
//! Run with `--test-threads=1` (the agent tests count processes of their
//! own roots, machine-wide).

#[path = "support/agent_env.rs"]
mod agent_env;
mod support;

use agent_env::{registry, text, Env, Suite};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SUITE: Suite = Suite {
    name: "imagegc",
    knobs: &[
        ("PODRUN_SYNC_INTERVAL_MS", "200"),
        ("PODRUN_IMAGE_GC_PERIOD_MS", "300"),
    ],
    agent_stays_up: true,
};

/// A tmpfs mounted on a directory for the test's life. Declared before the
/// [`Env`] whose root it is, so it is dropped after the environment took its
/// pods down (the environment's own guard also detaches every mount below
/// its directory).
#[derive(Default)]
struct Tmpfs(std::cell::RefCell<Option<PathBuf>>);

impl Tmpfs {
    fn mount(&self, dir: &Path, size: &str) {
        std::fs::create_dir_all(dir).unwrap();
        let data = std::ffi::CString::new(format!("size={size},mode=0755")).unwrap();
        rustix::mount::mount(
            "podrun-test-imagegc",
            dir,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            data.as_c_str(),
        )
        .unwrap_or_else(|e| panic!("mount a tmpfs on {}: {e}", dir.display()));
        *self.0.borrow_mut() = Some(dir.to_path_buf());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(dir) = self.0.borrow_mut().take() {
            support::unmount_below(&dir);
            let _ = rustix::mount::unmount(&dir, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// Capacity and available bytes of the file system holding `path`.
fn fs_bytes(path: &Path) -> (u64, u64) {
    let s = rustix::fs::statvfs(path).unwrap();
    (s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize)
}

/// kubelet's usage percent of the image file system.
fn usage(path: &Path) -> u64 {
    let (capacity, available) = fs_bytes(path);
    100 - available * 100 / capacity
}

/// Grow the file `path` by `bytes` of allocated (not sparse) space.
fn fill(path: &Path, bytes: u64) {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let len = f.metadata().unwrap().len();
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), len, bytes)
        .unwrap_or_else(|e| panic!("fallocate {bytes} bytes in {}: {e}", path.display()));
}

/// Put image garbage collection keys before the test network's table.
fn configure(env: &Env, keys: &str) {
    let file = &env.network.config_file;
    let rest = std::fs::read_to_string(file).unwrap();
    std::fs::write(file, format!("{keys}\n{rest}")).unwrap();
}

/// Whether the store holds `name`.
fn has(env: &Env, name: &str) -> bool {
    env.podrun(&["image", "inspect", name]).status.success()
}

/// A pod whose one container runs busybox:latest quietly until stopped.
fn pod(name: &str) -> String {
    let r = registry();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {r}/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#
    )
}

fn wait_running(env: &Env, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = env.rows();
        if rows
            .iter()
            .any(|r| r[1] == name && r[2] == "1/1" && r[3] == "Running")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} not Running: {rows:?}\n{}",
            env.diag()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Poll (at most `secs`) until `done` holds; panics with `what` otherwise.
fn wait_for(env: &Env, what: &str, secs: u64, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "waited {secs} s for {what}\n{}",
            env.diag()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_agent_frees_the_least_recently_used_images_under_disk_pressure() {
    let tmpfs = Tmpfs::default();
    let env = Env::new(&SUITE, "pressure");
    tmpfs.mount(&env.root, "64m");
    let root = env.root.clone();
    // 40 % → 39 % by kubelet's integer arithmetic; a minimum age the test
    // can wait out.
    configure(
        &env,
        "image_gc_high_threshold_percent = 41\nimageGCLowThresholdPercent = 40\nimage_minimum_gc_age = \"12s\"\n",
    );
    let r = registry();
    let (zstd, plain, multi, young, busybox) = (
        format!("{r}/zstd:latest"),
        format!("{r}/plain:latest"),
        format!("{r}/busybox:multi"),
        format!("{r}/config:latest"),
        format!("{r}/busybox:latest"),
    );
    // Least recently pulled first (none of them used): plain, zstd, multi.
    // plain, first in the empty store, downloads its uncompressed busybox
    // layer as a 2 MiB blob of its own; the others find that layer's
    // snapshot and own only a few KiB each.
    for name in [&plain, &zstd, &multi] {
        env.ok(&["pull", "-q", name]);
        std::thread::sleep(Duration::from_millis(20));
    }
    let old_pulled = Instant::now();
    let _agent = env.serve(None, &[], &[]);
    let file = env.write_manifest(&pod(&env.name("user")));
    env.ok(&["apply", "-f", file.to_str().unwrap()]);
    wait_running(&env, "user");
    // Under the thresholds nothing goes.
    std::thread::sleep(Duration::from_millis(900));
    assert!(usage(&root) < 40, "usage {} %", usage(&root));
    for name in [&zstd, &plain, &multi, &busybox] {
        assert!(has(&env, name), "{name} removed below the threshold");
    }
    // The old pulls past the minimum age, then a young one.
    let wait = Duration::from_secs(13).saturating_sub(old_pulled.elapsed());
    std::thread::sleep(wait);
    env.ok(&["pull", "-q", &young]);
    let young_pulled = Instant::now();

    // 1 MiB short of the low threshold: plain, the least recently used, is
    // enough alone.
    let (capacity, available) = fs_bytes(&root);
    let target_available = capacity * 60 / 100 - (1 << 20);
    let filler = root.join("filler");
    fill(&filler, available - target_available);
    assert!(usage(&root) >= 41, "usage {} %", usage(&root));
    wait_for(&env, "plain:latest collected", 10, || !has(&env, &plain));
    std::thread::sleep(Duration::from_millis(900));
    assert!(usage(&root) < 41, "usage still {} %", usage(&root));
    for name in [&zstd, &multi] {
        assert!(has(&env, name), "{name} removed though enough was freed");
    }
    assert!(has(&env, &busybox), "the running pod's image was removed");
    assert!(has(&env, &young), "the image pulled just now was removed");
    let events = env.ok(&["get", "events"]);
    assert!(!events.contains("FreeDiskSpaceFailed"), "{events}");

    // Far over: only zstd and busybox:multi may go, and that is not enough.
    let (capacity, available) = fs_bytes(&root);
    fill(&filler, available - capacity * 40 / 100);
    wait_for(&env, "zstd and busybox:multi collected", 10, || {
        !has(&env, &zstd) && !has(&env, &multi)
    });
    wait_for(&env, "FreeDiskSpaceFailed", 10, || {
        env.ok(&["get", "events"]).contains("FreeDiskSpaceFailed")
    });
    assert!(
        young_pulled.elapsed() < Duration::from_secs(12),
        "the test was too slow to see the minimum age protect an image"
    );
    assert!(has(&env, &busybox), "the running pod's image was removed");
    assert!(has(&env, &young), "the image pulled just now was removed");
    let events = env.ok(&["get", "events"]);
    let line = events
        .lines()
        .find(|l| l.contains("FreeDiskSpaceFailed"))
        .unwrap();
    // The agent's node name is the kernel's host name.
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        line.contains("Warning")
            && line.contains(&format!("node/{}", node.trim()))
            && line.contains(
                "Failed to garbage collect required amount of images. Attempted to free "
            )
            && line.contains(" bytes eligible to free."),
        "{events}"
    );
    // Once past its minimum age the young image goes too; the pod's stays.
    wait_for(
        &env,
        "config:latest collected after its minimum age",
        20,
        || !has(&env, &young),
    );
    assert!(has(&env, &busybox), "the running pod's image was removed");
    let _ = std::fs::remove_file(&filler);
    env.ok(&["delete", "pod", "user"]);
}

#[test]
fn image_prune_removes_what_no_container_uses() {
    let env = Env::new(&SUITE, "prune");
    configure(&env, "image_gc_high_threshold_percent = 100\n");
    let r = registry();
    let (zstd, plain, busybox) = (
        format!("{r}/zstd:latest"),
        format!("{r}/plain:latest"),
        format!("{r}/busybox:latest"),
    );
    // plain first: its 2 MiB uncompressed layer blob is its own.
    env.ok(&["pull", "-q", &plain]);
    env.ok(&["pull", "-q", &zstd]);
    let _agent = env.serve(None, &[], &[]);
    let file = env.write_manifest(&pod(&env.name("user")));
    env.ok(&["apply", "-f", file.to_str().unwrap()]);
    wait_running(&env, "user");
    // Pulled just now: within the minimum age (2m), nothing goes.
    let out = env.podrun(&["image", "prune"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Total reclaimed space: 0B\n"
    );
    assert!(has(&env, &zstd) && has(&env, &plain));
    // -a: every image no container uses.
    let out = env.ok(&["image", "prune", "-a"]);
    let mut deleted: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Deleted: "))
        .collect();
    deleted.sort();
    assert_eq!(deleted, [plain.as_str(), zstd.as_str()], "{out}");
    let total = out.lines().last().unwrap();
    assert!(
        total.starts_with("Total reclaimed space: ") && total.ends_with("MB"),
        "{out}"
    );
    assert!(!has(&env, &zstd) && !has(&env, &plain));
    assert!(has(&env, &busybox), "the running pod's image was pruned");
    // Nothing left to prune: still a success.
    let out = env.ok(&["image", "prune", "-a"]);
    assert_eq!(out, "Total reclaimed space: 0B\n");
    env.ok(&["delete", "pod", "user"]);
    // The pod is gone with its container: its image is unused now.
    wait_for(&env, "the pod deleted", 30, || env.rows().is_empty());
    let out = env.ok(&["image", "prune", "-a"]);
    assert!(out.contains(&format!("Deleted: {busybox}")), "{out}");
    env.assert_nothing_left();
}
