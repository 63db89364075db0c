//! Pulls from the real local registry (scripts/registry.sh, scripts/test-images.sh),
//! checked down to the files of the unpacked layers.

mod support;

use podrun_image::platform::Platform;
use podrun_image::registries::RegistriesConfig;
use podrun_image::{Digest, Progress, PullOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use support::{image, TestRoot};

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_and_oci_manifests_share_one_snapshot() {
    let t = TestRoot::new();
    let docker = t
        .images
        .pull(&image("busybox:latest"), &t.options())
        .await
        .unwrap();
    assert_eq!(
        docker.manifest_media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(docker.layers.len(), 1);
    assert_eq!(docker.platform, "linux/amd64");
    let oci = t
        .images
        .pull(&image("busybox:oci"), &t.options())
        .await
        .unwrap();
    assert_eq!(
        oci.manifest_media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(oci.layers[0].chain_id, docker.layers[0].chain_id);
    assert_eq!(
        t.images.snapshots.list().unwrap().len(),
        1,
        "one layer, one snapshot"
    );

    // Every stored blob hashes to its name.
    for d in t.images.content.list().unwrap() {
        if let Err(e) = t.images.content.read(&d) {
            panic!("{d}: {e}");
        }
    }
    let fs = t.images.snapshots.path(&docker.layers[0].chain_id);
    assert!(read(fs.join("etc/passwd")).contains("app:x:1000:1000"));
    assert_eq!(
        std::fs::read_link(fs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let tmp = std::fs::metadata(fs.join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    let home = std::fs::metadata(fs.join("home/app")).unwrap();
    assert_eq!((home.uid(), home.gid()), (1000, 1000));

    let names: Vec<String> = t
        .images
        .list()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec![image("busybox:latest"), image("busybox:oci")]);
    assert!(t.files("content/ingest").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_pull_downloads_nothing() {
    let t = TestRoot::new();
    let first = t
        .images
        .pull(&image("layers:latest"), &t.options())
        .await
        .unwrap();
    let records = || -> Vec<(std::path::PathBuf, std::fs::Metadata)> {
        std::fs::read_dir(t.root().join("images"))
            .unwrap()
            .flatten()
            .map(|e| (e.path(), e.metadata().unwrap()))
            .collect()
    };
    let before = records();
    assert_eq!(before.len(), 1, "{before:?}");
    // The record too is kept as it is: its time of pull stays, and it is not
    // rewritten (no durable write for a pull that finds nothing new).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let options = PullOptions {
        progress: Some(Arc::new(move |p| seen.lock().unwrap().push(p))),
        ..t.options()
    };
    t.images
        .pull(&image("layers:latest"), &options)
        .await
        .unwrap();
    let again = t.images.find(&image("layers:latest")).unwrap();
    assert_eq!(again, [first]);
    let after = records();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (after[0].1.ino(), after[0].1.mtime_nsec()),
        (before[0].1.ino(), before[0].1.mtime_nsec()),
        "the record was rewritten"
    );
    let events = events.lock().unwrap();
    assert!(
        !events.iter().any(|p| matches!(p, Progress::LayerBytes(..))),
        "{events:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|p| matches!(p, Progress::LayerExists(_)))
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn platforms_are_chosen_from_the_index() {
    let t = TestRoot::new();
    for (want, expect) in [
        (None, "linux/amd64"),
        (Some("linux/arm64"), "linux/arm64/v8"),
        (Some("linux/arm/v7"), "linux/arm/v7"),
    ] {
        let options = PullOptions {
            platform: want.map(|p| p.parse::<Platform>().unwrap()),
            ..t.options()
        };
        let rec = t
            .images
            .pull(&image("busybox:multi"), &options)
            .await
            .unwrap();
        assert!(rec.index_digest.is_some());
        assert_eq!(rec.platform, expect);
        let top = t.images.snapshots.path(&rec.layers[1].chain_id);
        assert_eq!(read(top.join("etc/platform")), expect);
    }
    let options = PullOptions {
        platform: Some("linux/s390x".parse().unwrap()),
        ..t.options()
    };
    let e = t
        .images
        .pull(&image("busybox:multi"), &options)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "pull {}: no image for platform linux/s390x (the index has linux/amd64, linux/arm64/v8, linux/arm/v7)",
            image("busybox:multi")
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn whiteouts_links_modes_and_xattrs_survive_into_the_rootfs() {
    let t = TestRoot::new();
    t.images
        .pull(&image("layers:latest"), &t.options())
        .await
        .unwrap();
    let root = t
        .images
        .prepare_rootfs(&image("layers:latest"), "layers-test")
        .unwrap();
    let d = root.join("data");
    assert_eq!(read(d.join("keep.txt")), "keep");
    assert!(!d.join("remove-me.txt").exists());
    assert!(!d.join("dir-to-remove").exists());
    assert!(!d.join("opaque/old.txt").exists());
    assert_eq!(read(d.join("opaque/new.txt")), "new");
    assert_eq!(read(d.join("replaced.txt")), "v2");
    assert_eq!(read(d.join("late.txt")), "late");
    assert!(
        std::fs::symlink_metadata(d.join("symlink")).is_err(),
        "removed by layer 3"
    );
    assert_eq!(
        std::fs::read_link(d.join("abs-symlink")).unwrap(),
        Path::new("/etc/passwd")
    );
    let a = std::fs::metadata(d.join("hardlink.txt")).unwrap();
    let b = std::fs::metadata(d.join("hardlink-src.txt")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    let suid = std::fs::metadata(d.join("setuid-bin")).unwrap();
    assert_eq!(suid.permissions().mode() & 0o7777, 0o4755);
    let owned = std::fs::metadata(d.join("owned.txt")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1000, 1000, 0o640)
    );
    assert_eq!(owned.mtime(), 1_600_000_000);
    let x =
        rustix::fs::getxattr(d.join("xattr.txt").as_path(), "user.podrun", &mut [0u8; 16]).unwrap();
    assert_eq!(x, 5);
    let dev = std::fs::metadata(d.join("chardev")).unwrap();
    assert!(dev.file_type().is_char_device());
    assert_eq!(dev.rdev(), rustix::fs::makedev(1, 3));
    assert!(std::fs::metadata(d.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());

    // The container writes to its own upper layer, never to the shared snapshots.
    std::fs::write(d.join("keep.txt"), "changed").unwrap();
    let rec = t.images.get(&image("layers:latest")).unwrap();
    let lower = t.images.snapshots.path(&rec.layers[0].chain_id);
    assert_eq!(read(lower.join("data/keep.txt")), "keep");

    t.images.remove_rootfs("layers-test").unwrap();
    assert!(support::mounts_below(t.dir.path()).is_empty());
    assert!(!t.root().join("containers/layers-test").exists());
    t.images.remove_rootfs("layers-test").unwrap();
}

/// An image volume: the image mounted read-only (a one-layer image bound,
/// a larger one a read-only overlay), the image kept while it is mounted,
/// everything taken down with the container's filesystem.
#[tokio::test(flavor = "multi_thread")]
async fn image_volumes_are_read_only_and_keep_their_image() {
    let t = TestRoot::new();
    for name in ["layers:latest", "busybox:latest"] {
        t.images.pull(&image(name), &t.options()).await.unwrap();
    }
    t.images
        .prepare_rootfs(&image("busybox:latest"), "c1")
        .unwrap();
    let layers = t
        .images
        .mount_image_volume(&image("layers:latest"), "c1", 0)
        .unwrap();
    let one = t
        .images
        .mount_image_volume(&image("busybox:latest"), "c1", 1)
        .unwrap();
    assert_eq!(read(layers.join("data/keep.txt")), "keep");
    assert!(!layers.join("data/remove-me.txt").exists());
    assert!(one.join("bin/busybox").is_file());
    for dir in [&layers, &one] {
        let e = std::fs::write(dir.join("new"), "x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(30), "{dir:?}: {e}"); // EROFS
    }
    // Mounting again is the same mount.
    t.images
        .mount_image_volume(&image("layers:latest"), "c1", 0)
        .unwrap();
    let e = t
        .images
        .remove(&image("layers:latest"), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("c1"), "{e}");

    t.images.remove_rootfs("c1").unwrap();
    assert!(support::mounts_below(t.dir.path()).is_empty());
    t.images.remove(&image("layers:latest"), false).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_and_uncompressed_layers() {
    let t = TestRoot::new();
    for (name, file, text) in [
        ("zstd:latest", "zstd/hello.txt", "hello from zstd"),
        ("plain:latest", "plain/hello.txt", "hello uncompressed"),
    ] {
        t.images.pull(&image(name), &t.options()).await.unwrap();
        let root = t.images.prepare_rootfs(&image(name), "c1").unwrap();
        assert_eq!(read(root.join(file)), text);
        assert!(root.join("bin/busybox").is_file());
        t.images.remove_rootfs("c1").unwrap();
    }
    let plain = t.images.get(&image("plain:latest")).unwrap();
    let zstd = t.images.get(&image("zstd:latest")).unwrap();
    // The uncompressed busybox layer has the same diff ID as the gzip one: one snapshot.
    assert_eq!(plain.layers[0].chain_id, zstd.layers[0].chain_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_layers_are_refused_and_nothing_escapes() {
    let t = TestRoot::new();
    let outside = Path::new("/tmp/podrun-evil-target");
    let _ = std::fs::remove_dir_all(outside);
    for (tag, expect) in [
        ("evil:dotdot", "../escape.txt"),
        ("evil:absolute", "/abs-escape.txt"),
        ("evil:symlink", "lnk/pwned.txt"),
        ("evil:hardlink", "hl"),
    ] {
        let e = t
            .images
            .pull(&image(tag), &t.options())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("pull {}: layer sha256:", image(tag))),
            "{e}"
        );
        assert!(e.contains(expect), "{tag}: {e}");
        assert!(t.images.records.get(&image(tag)).unwrap().is_none());
        assert!(
            t.files("snapshots")
                .iter()
                .all(|f| !f.starts_with(".staging")),
            "{:?}",
            t.files("snapshots")
        );
    }
    assert!(
        !outside.exists(),
        "something was written through the planted symlink"
    );
    assert!(!Path::new("/abs-escape.txt").exists());
    assert!(!t.dir.path().join("escape.txt").exists());
    assert!(!t.root().join("escape.txt").exists());
    // At most the shared busybox layer made it (unless cancelled); nothing half-made is left.
    let busybox = t
        .images
        .pull(&image("busybox:oci"), &t.options())
        .await
        .unwrap();
    let snaps = t.images.snapshots.list().unwrap();
    assert_eq!(snaps, vec![busybox.layers[0].chain_id.clone()]);
    assert!(
        t.files("snapshots")
            .iter()
            .all(|f| !f.starts_with(".staging")),
        "{:?}",
        t.files("snapshots")
    );
    assert!(t.files("content/ingest").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_download_each_layer_once() {
    let t = TestRoot::new();
    let downloads = Arc::new(Mutex::new(Vec::<Digest>::new()));
    let options = |log: Arc<Mutex<Vec<Digest>>>| PullOptions {
        progress: Some(Arc::new(move |p| {
            if let Progress::LayerDone(d) = p {
                log.lock().unwrap().push(d);
            }
        })),
        ..t.options()
    };
    let name = image("layers:latest");
    let (oa, ob) = (options(downloads.clone()), options(downloads.clone()));
    let (a, b) = tokio::join!(t.images.pull(&name, &oa), t.images.pull(&name, &ob));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.id, a.layers), (b.id, b.layers));
    let mut done = downloads.lock().unwrap().clone();
    done.sort();
    let before = done.len();
    done.dedup();
    assert_eq!(before, 3, "three layers unpacked once each: {done:?}");
    assert_eq!(done.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn mirrors_are_tried_in_order_before_the_registry() {
    let t = TestRoot::new();
    // A dead mirror first, then the local registry standing in for Docker Hub,
    // which this machine cannot reach.
    let conf = format!(
        "[[registry]]\nprefix = \"docker.io/library\"\n[[registry.mirror]]\nlocation = \"127.0.0.1:9\"\n[[registry.mirror]]\nlocation = \"{}\"\n",
        support::registry()
    );
    let options = PullOptions {
        registries: RegistriesConfig::parse(&conf).unwrap(),
        limits: podrun_image::registry::Limits {
            backoff: std::time::Duration::from_millis(10),
            ..Default::default()
        },
        ..t.options()
    };
    let rec = t.images.pull("busybox:oci", &options).await.unwrap();
    assert_eq!(rec.name, "docker.io/library/busybox:oci");
    assert_eq!(t.images.get("busybox:oci").unwrap().name, rec.name);

    let e = t
        .images
        .pull("busybox:nope", &options)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("pull docker.io/library/busybox:nope: 127.0.0.1:9: cannot connect"),
        "{e}"
    );
    assert!(
        e.contains(&format!("; {}: manifest unknown", support::registry())),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn by_digest() {
    let t = TestRoot::new();
    let rec = t
        .images
        .pull(&image("busybox:oci"), &t.options())
        .await
        .unwrap();
    let pinned = format!("{}/busybox@{}", support::registry(), rec.manifest_digest);
    let again = t.images.pull(&pinned, &t.options()).await.unwrap();
    assert_eq!(again.id, rec.id);
    assert_eq!(again.repository_and_tag().1, "<none>");
    let wrong = format!("{}/busybox@{}", support::registry(), Digest::of(b"nothing"));
    let e = t
        .images
        .pull(&wrong, &t.options())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&format!("pull {wrong}: ")), "{e}");
    assert!(e.contains("manifest unknown"), "{e}");
}
