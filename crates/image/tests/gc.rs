//! Image garbage collection on a real store (images pulled from the local
//! registry): least recently used first, what a container uses kept, the
//! minimum age honoured, and what each removal freed counted from what it
//! deleted.

mod support;

use podrun_image::gc::Policy;
use std::time::Duration;
use support::{image, TestRoot};

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn names(outcome: &podrun_image::gc::Outcome<podrun_image::ImageError>) -> Vec<String> {
    outcome
        .removed
        .iter()
        .flat_map(|f| f.names.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn unused_images_go_least_recently_used_first_and_in_use_ones_stay() {
    let t = TestRoot::new();
    // plain first: its first layer (the busybox rootfs, uncompressed) is
    // downloaded as a 2 MiB blob of its own; the later images find that
    // layer's snapshot there and download nothing of it.
    for name in ["plain:latest", "zstd:latest", "busybox:latest"] {
        t.images.pull(&image(name), &t.options()).await.unwrap();
    }
    let busybox = t.images.get(&image("busybox:latest")).unwrap();
    assert_eq!(t.images.records.last_used(&busybox.id).unwrap(), None);
    t.images
        .prepare_rootfs(&image("busybox:latest"), "c1")
        .unwrap();
    let used = t.images.records.last_used(&busybox.id).unwrap();
    assert!(used.is_some());

    // Pulled a moment ago: a minimum age of an hour protects everything.
    let hour = Policy {
        min_age: Duration::from_secs(3600),
        max_age: None,
    };
    let out = t.images.collect_images(&hour, u64::MAX, now()).unwrap();
    assert!(out.removed.is_empty() && out.errors.is_empty());

    // One byte to free: the least recently used (never used, pulled first)
    // goes alone, its own blob counted, the snapshot it shares not.
    let none = Policy::default();
    let out = t.images.collect_images(&none, 1, now()).unwrap();
    assert_eq!(names(&out), [image("plain:latest")]);
    assert!(
        out.freed > 2_000_000 && out.freed < 2_400_000,
        "freed {}",
        out.freed
    );
    assert!(t.images.get(&image("zstd:latest")).is_ok());
    assert!(!t.files("snapshots").is_empty());

    // Everything unused: zstd, its own small layer.
    let out = t.images.collect_images(&none, u64::MAX, now()).unwrap();
    assert_eq!(names(&out), [image("zstd:latest")]);
    assert!(out.freed > 0, "zstd's own layer freed nothing");
    assert!(t.images.get(&image("busybox:latest")).is_ok());

    // The container's end is the image's last use; then it may go.
    std::thread::sleep(Duration::from_millis(5));
    t.images.remove_rootfs("c1").unwrap();
    let after = t.images.records.last_used(&busybox.id).unwrap();
    assert!(after > used, "{after:?} after {used:?}");
    let out = t.images.collect_images(&none, u64::MAX, now()).unwrap();
    assert_eq!(names(&out), [image("busybox:latest")]);
    assert_eq!(t.images.records.last_used(&busybox.id).unwrap(), None);
    assert!(
        t.files("snapshots").is_empty(),
        "{:?}",
        t.files("snapshots")
    );
    assert!(
        t.files("content/blobs/sha256").is_empty(),
        "{:?}",
        t.files("content/blobs/sha256")
    );
}
