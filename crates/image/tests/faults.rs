//! Pulls through a fault-injecting proxy in front of the real test registry:
//! token auth, corrupted, truncated and stalled blobs, 5xx/429 answers and a
//! registry that is down. Each failure must read well ("pull <image>: <cause>")
//! and leave the store as it was.

mod support;

use podrun_image::auth::{self, Credentials};
use podrun_image::registry::Limits;
use podrun_image::{ImageError, ImageRecord, PullOptions};
use std::time::{Duration, Instant};
use support::proxy::{self, Fault, Proxy};
use support::{require_registry, TestRoot};

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json";

/// (digest, size) of the config and of every layer of `repo:tag`, read from the registry.
struct Manifest {
    config: String,
    layers: Vec<(String, usize)>,
}

async fn manifest(upstream: &str, repo: &str, tag: &str) -> Manifest {
    let (status, body) = proxy::get(upstream, &format!("/v2/{repo}/manifests/{tag}"), ACCEPT).await;
    assert_eq!(
        status,
        200,
        "manifest {repo}:{tag} from the test registry {upstream} (scripts/test-images.sh \
         pushes the test images): {}",
        String::from_utf8_lossy(&body)
    );
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let layers = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    Manifest {
        config: m["config"]["digest"].as_str().unwrap().to_string(),
        layers,
    }
}

/// Small limits so failing pulls fail fast.
fn limits() -> Limits {
    Limits {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        attempts: 3,
        backoff: Duration::from_millis(10),
    }
}

fn options(root: &TestRoot) -> PullOptions {
    PullOptions {
        limits: limits(),
        ..root.options()
    }
}

/// Pull `name`, expecting failure; returns the message, checked to name the image.
async fn pull_err(root: &TestRoot, name: &str, options: &PullOptions) -> String {
    let e = match root.images.pull(name, options).await {
        Ok(r) => panic!("pull {name} succeeded: {r:?}"),
        Err(e) => e,
    };
    assert!(matches!(e, ImageError::Pull { .. }), "{e:?}");
    let msg = format!("{e}");
    assert!(msg.starts_with(&format!("pull {name}: ")), "{msg}");
    msg
}

/// Nothing of a failed pull is left: no blob for `digest` (if given), no
/// snapshot (committed or staging), no partial download, no image record.
fn assert_untouched(root: &TestRoot, digest: Option<&str>) {
    if let Some(d) = digest {
        let hex = d.strip_prefix("sha256:").unwrap();
        let blobs = root.files("content/blobs/sha256");
        assert!(
            !blobs.iter().any(|b| b == hex),
            "blob {d} was stored: {blobs:?}"
        );
    }
    assert_eq!(
        root.files("snapshots"),
        Vec::<String>::new(),
        "snapshots left"
    );
    assert_eq!(
        root.files("content/ingest"),
        Vec::<String>::new(),
        "partial downloads left"
    );
    assert_eq!(
        root.files("images"),
        Vec::<String>::new(),
        "image records left"
    );
    assert!(root.images.list().unwrap().is_empty());
}

/// A successful pull has the image, every layer blob and a snapshot per layer.
fn assert_pulled(root: &TestRoot, record: &ImageRecord, m: &Manifest) {
    let layers: Vec<String> = record.layers.iter().map(|l| l.digest.to_string()).collect();
    let want: Vec<String> = m.layers.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(layers, want);
    assert_eq!(record.id.to_string(), m.config);
    let blobs = root.files("content/blobs/sha256");
    for d in &want {
        assert!(
            blobs.contains(&d["sha256:".len()..].to_string()),
            "{d} missing: {blobs:?}"
        );
    }
    for l in &record.layers {
        assert!(
            root.images.snapshots.exists(&l.chain_id),
            "no snapshot {}",
            l.chain_id
        );
    }
    assert!(!root
        .files("snapshots")
        .iter()
        .any(|s| s.starts_with(".staging-")));
    assert_eq!(root.files("content/ingest"), Vec::<String>::new());
}

// ---- token auth -------------------------------------------------------------

const TOKEN: &str = "tok-3f9a1c";

fn auth_file(root: &TestRoot, registry: &str, username: &str, password: &str) -> PullOptions {
    let file = root.dir.path().join("auth.json");
    let creds = Credentials {
        username: username.into(),
        password: password.into(),
    };
    auth::store(&file, registry, &creds).unwrap();
    PullOptions {
        auth_files: Some(vec![file]),
        ..options(root)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_with_the_right_credentials() {
    let up = require_registry();
    let m = manifest(&up, "busybox", "latest").await;
    let proxy = Proxy::start(&up).await;
    proxy.require_bearer(TOKEN);
    let root = TestRoot::new();
    let opts = auth_file(&root, &proxy.host(), "podrun", "secret");
    let name = format!("{}/busybox:latest", proxy.host());
    let record = root.images.pull(&name, &opts).await.unwrap();
    assert_eq!(record.name, name);
    assert_pulled(&root, &record, &m);
    assert!(proxy.count("/token?") >= 1, "{:?}", proxy.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_with_wrong_credentials() {
    let up = require_registry();
    let proxy = Proxy::start(&up).await;
    proxy.require_bearer(TOKEN);
    let root = TestRoot::new();
    let opts = auth_file(&root, &proxy.host(), "podrun", "wrong");
    let name = format!("{}/busybox:latest", proxy.host());
    let msg = pull_err(&root, &name, &opts).await;
    assert!(
        msg.contains("authentication") || msg.contains("unauthorized"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("to {} failed", proxy.host())),
        "{msg}"
    );
    // Wrong credentials are not retried.
    assert_eq!(proxy.count("/token?"), 1, "{:?}", proxy.requests());
    assert_eq!(proxy.count("/manifests/"), 0, "{:?}", proxy.requests());
    assert_untouched(&root, None);
    assert_eq!(root.files("content/blobs/sha256"), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_without_credentials() {
    let up = require_registry();
    let proxy = Proxy::start(&up).await;
    proxy.require_bearer(TOKEN);
    let root = TestRoot::new();
    let name = format!("{}/busybox:latest", proxy.host());
    let msg = pull_err(&root, &name, &options(&root)).await;
    assert!(msg.contains("unauthorized"), "{msg}");
    assert!(
        msg.contains(&format!("podrun login {}", proxy.host())),
        "{msg}"
    );
    assert_untouched(&root, None);
    assert_eq!(root.files("content/blobs/sha256"), Vec::<String>::new());
}

// ---- corrupted and truncated blobs -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_layer_is_a_digest_mismatch() {
    let up = require_registry();
    let m = manifest(&up, "busybox", "latest").await;
    let layer = m.layers[0].0.clone();
    let proxy = Proxy::start(&up).await;
    // Byte 4 of a gzip stream is its MTIME, which decompressors ignore: the
    // layer unpacks fine and only the blob digest can catch it.
    proxy.inject(&format!("/blobs/{layer}"), Fault::Corrupt(4), None);
    let root = TestRoot::new();
    let name = format!("{}/busybox:latest", proxy.host());
    let msg = pull_err(&root, &name, &options(&root)).await;
    assert!(
        msg.contains(&format!("blob {layer}: digest mismatch")),
        "{msg}"
    );
    assert_eq!(
        proxy.count(&format!("/blobs/{layer}")),
        1,
        "a bad digest is not retried"
    );
    assert_untouched(&root, Some(&layer));
}

// A byte flipped inside the deflate data makes decompression or unpacking fail;
// the error must still be the blob's digest mismatch, not the decoder's
// complaint or a download error, and must not be retried
// (layer.rs reads the rest of a blob the decoder refused and asks its digest,
// and pull.rs prefers that verdict to the download's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_layer_data_is_a_digest_mismatch() {
    let up = require_registry();
    let m = manifest(&up, "busybox", "latest").await;
    let (layer, size) = m.layers[0].clone();
    // Early and late in the deflate data: either way the cause is a blob that
    // is not what its digest says, and fetching it again will not help.
    for at in [1000, size / 2] {
        let proxy = Proxy::start(&up).await;
        proxy.inject(&format!("/blobs/{layer}"), Fault::Corrupt(at), None);
        let root = TestRoot::new();
        let name = format!("{}/busybox:latest", proxy.host());
        let msg = pull_err(&root, &name, &options(&root)).await;
        assert!(
            msg.contains(&format!("blob {layer}: digest mismatch")),
            "byte {at}: {msg}"
        );
        assert_eq!(
            proxy.count(&format!("/blobs/{layer}")),
            1,
            "byte {at}: retried"
        );
        assert_untouched(&root, Some(&layer));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_config_is_a_digest_mismatch() {
    let up = require_registry();
    let m = manifest(&up, "busybox", "latest").await;
    let proxy = Proxy::start(&up).await;
    proxy.inject(&format!("/blobs/{}", m.config), Fault::Corrupt(10), None);
    let root = TestRoot::new();
    let name = format!("{}/busybox:latest", proxy.host());
    let msg = pull_err(&root, &name, &options(&root)).await;
    assert!(msg.contains(&m.config), "{msg}");
    assert!(msg.to_lowercase().contains("digest"), "{msg}");
    assert_untouched(&root, Some(&m.config));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_layer_fails_after_retries() {
    let up = require_registry();
    let m = manifest(&up, "busybox", "latest").await;
    let (layer, size) = m.layers[0].clone();
    let proxy = Proxy::start(&up).await;
    proxy.inject(&format!("/blobs/{layer}"), Fault::Truncate(size / 3), None);
    let root = TestRoot::new();
    let name = format!("{}/busybox:latest", proxy.host());
    let opts = options(&root);
    let msg = pull_err(&root, &name, &opts).await;
    assert!(msg.contains(&format!("download {layer}: ")), "{msg}");
    assert!(
        msg.contains("closed") || msg.contains("truncated") || msg.contains("end of file"),
        "{msg}"
    );
    let tries = proxy.count(&format!("/blobs/{layer}"));
    assert_eq!(
        tries,
        opts.limits.attempts as usize,
        "{:?}",
        proxy.requests()
    );
    assert_untouched(&root, Some(&layer));
}

// ---- transient answers --------------------------------------------------------

async fn pull_through_transient(pattern_of: fn(&Manifest) -> String, status: u16) {
    let up = require_registry();
    let m = manifest(&up, "busybox", "latest").await;
    let pattern = pattern_of(&m);
    let proxy = Proxy::start(&up).await;
    proxy.inject(&pattern, Fault::Status(status), Some(2));
    let root = TestRoot::new();
    let name = format!("{}/busybox:latest", proxy.host());
    let record = root.images.pull(&name, &options(&root)).await.unwrap();
    assert_pulled(&root, &record, &m);
    assert_eq!(proxy.count(&pattern), 3, "{:?}", proxy.requests());
}

fn manifest_path(_: &Manifest) -> String {
    "/v2/busybox/manifests/latest".into()
}

fn layer_path(m: &Manifest) -> String {
    format!("/blobs/{}", m.layers[0].0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_503_twice_then_ok() {
    pull_through_transient(manifest_path, 503).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_503_twice_then_ok() {
    pull_through_transient(layer_path, 503).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_429_twice_then_ok() {
    pull_through_transient(manifest_path, 429).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_429_twice_then_ok() {
    pull_through_transient(layer_path, 429).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_500_always_fails_after_retries() {
    let up = require_registry();
    let proxy = Proxy::start(&up).await;
    proxy.inject("/manifests/", Fault::Status(500), None);
    let root = TestRoot::new();
    let name = format!("{}/busybox:latest", proxy.host());
    let opts = options(&root);
    let msg = pull_err(&root, &name, &opts).await;
    assert!(
        msg.contains("registry answered HTTP 500: injected failure"),
        "{msg}"
    );
    assert_eq!(proxy.count("/manifests/"), opts.limits.attempts as usize);
    assert_untouched(&root, None);
}

// LayerJob::run retries the whole layer, so its blob request is tried once per
// attempt (Session::once): a blob that keeps failing is asked for `attempts`
// times, not attempts × attempts as when both levels retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_503_always_fails_after_bounded_retries() {
    let up = require_registry();
    let m = manifest(&up, "busybox", "latest").await;
    let layer = m.layers[0].0.clone();
    let proxy = Proxy::start(&up).await;
    proxy.inject(&format!("/blobs/{layer}"), Fault::Status(503), None);
    let root = TestRoot::new();
    let name = format!("{}/busybox:latest", proxy.host());
    let opts = options(&root);
    let msg = pull_err(&root, &name, &opts).await;
    assert!(msg.contains("registry answered HTTP 503"), "{msg}");
    assert_eq!(
        proxy.count(&format!("/blobs/{layer}")),
        opts.limits.attempts as usize,
        "one request per attempt, not attempts × attempts: {:?}",
        proxy.requests()
    );
    assert_untouched(&root, Some(&layer));
}

// ---- no registry, or one that never answers ------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_down() {
    // A port nobody listens on any more.
    let host = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    };
    let root = TestRoot::new();
    let name = format!("{host}/busybox:latest");
    let started = Instant::now();
    let msg = pull_err(&root, &name, &options(&root)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(msg.contains(&format!("cannot connect to {host}")), "{msg}");
    assert!(msg.contains("onnection refused"), "{msg}");
    assert_untouched(&root, None);
    assert_eq!(root.files("content/blobs/sha256"), Vec::<String>::new());
}

fn stall_limits(root: &TestRoot) -> PullOptions {
    PullOptions {
        limits: Limits {
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            attempts: 2,
            backoff: Duration::from_millis(10),
        },
        ..root.options()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_manifest_times_out() {
    let up = require_registry();
    let proxy = Proxy::start(&up).await;
    proxy.inject("/manifests/", Fault::Stall, None);
    let root = TestRoot::new();
    let name = format!("{}/busybox:latest", proxy.host());
    let started = Instant::now();
    let msg = pull_err(&root, &name, &stall_limits(&root)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        msg.contains("timed out") || msg.contains("no answer"),
        "{msg}"
    );
    assert!(msg.contains(&proxy.host()), "{msg}");
    assert_eq!(proxy.count("/manifests/"), 2);
    assert_untouched(&root, None);
}

// One request per attempt also bounds a stalled blob to attempts × the request
// timeout (2 s here), not attempts² × it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_layer_times_out() {
    let up = require_registry();
    let m = manifest(&up, "busybox", "latest").await;
    let layer = m.layers[0].0.clone();
    let proxy = Proxy::start(&up).await;
    proxy.inject(&format!("/blobs/{layer}"), Fault::Stall, None);
    let root = TestRoot::new();
    let name = format!("{}/busybox:latest", proxy.host());
    let started = Instant::now();
    let msg = pull_err(&root, &name, &stall_limits(&root)).await;
    let took = started.elapsed();
    assert!(
        msg.contains("timed out") || msg.contains("no answer"),
        "{msg}"
    );
    assert!(msg.contains(&proxy.host()), "{msg}");
    assert_eq!(
        proxy.count(&format!("/blobs/{layer}")),
        2,
        "{:?}",
        proxy.requests()
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_untouched(&root, Some(&layer));
}

// ---- one bad layer among several -------------------------------------------------

/// Pull `layers:latest` with its first layer corrupted and the other two
/// stalled (still waiting for an answer when the first one fails).
async fn pull_with_one_bad_layer(up: &str, opts: fn(&TestRoot) -> PullOptions) -> Duration {
    let m = manifest(up, "layers", "latest").await;
    assert_eq!(m.layers.len(), 3);
    let proxy = Proxy::start(up).await;
    let bad = m.layers[0].0.clone();
    proxy.inject(&format!("/blobs/{bad}"), Fault::Corrupt(4), None);
    for (d, _) in &m.layers[1..] {
        proxy.inject(&format!("/blobs/{d}"), Fault::Stall, None);
    }
    let root = TestRoot::new();
    let name = format!("{}/layers:latest", proxy.host());
    let started = Instant::now();
    let msg = pull_err(&root, &name, &opts(&root)).await;
    let took = started.elapsed();
    assert!(
        msg.contains(&format!("blob {bad}: digest mismatch")),
        "{msg}"
    );
    for (d, _) in &m.layers {
        let hex = &d["sha256:".len()..];
        assert!(
            !root.files("content/blobs/sha256").iter().any(|b| b == hex),
            "{d} stored"
        );
    }
    assert_untouched(&root, None);
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_layer_leaves_nothing_of_the_others() {
    let up = require_registry();
    // Short timeouts, so that this holds even if the stalled layers were not
    // cancelled (the next test checks that they are).
    pull_with_one_bad_layer(&up, stall_limits).await;
}

// When the first layer fails, `pull_from` cancels the others, and a layer still
// waiting for an answer stops at once (LayerJob::fetch_and_apply selects on the
// cancel token) instead of going through its retries and timeouts first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_layer_fails_without_waiting_for_the_others() {
    let up = require_registry();
    let took = pull_with_one_bad_layer(&up, options).await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
