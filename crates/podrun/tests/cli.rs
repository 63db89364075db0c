//! The image commands end to end: the real podrun binary against the real
//! local registries (scripts/registry.sh), with a fresh --root per test.

mod support;

use sha2::Digest as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn registry() -> String {
    std::env::var("PODRUN_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

fn auth_registry() -> String {
    std::env::var("PODRUN_TEST_AUTH_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5001".into())
}

fn image_files() -> PathBuf {
    std::env::var_os("PODRUN_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/test-images"))
}

/// A store root and a home of its own (so no user credentials leak in);
/// unmounts whatever is left below it when dropped.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::Builder::new()
                .prefix("podrun-cli-")
                .tempdir()
                .unwrap(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_podrun"));
        c.arg("--root")
            .arg(self.root())
            .arg("--registries-conf")
            .arg(self.dir.path().join("registries.conf"))
            .arg("--hosts-dir")
            .arg(self.dir.path().join("certs.d"))
            .args(args)
            .env("HOME", self.dir.path())
            .env("REGISTRY_AUTH_FILE", self.auth_file())
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run and expect success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podrun {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run and expect failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "podrun {args:?} should fail: {out:?}"
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn entries(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root().join(sub))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The store holds no image, blob, snapshot or half-written file.
    fn assert_empty_store(&self) {
        for sub in [
            "images",
            "content/blobs/sha256",
            "content/ingest",
            "snapshots",
            "containers",
        ] {
            assert_eq!(self.entries(sub), Vec::<String>::new(), "{sub} not empty");
        }
    }

    /// Every blob hashes to its file name.
    fn assert_blobs_verify(&self) {
        for name in self.entries("content/blobs/sha256") {
            let bytes =
                std::fs::read(self.root().join("content/blobs/sha256").join(&name)).unwrap();
            assert_eq!(
                hex::encode(sha2::Sha256::digest(&bytes)),
                name,
                "corrupt blob visible"
            );
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        support::unmount_below(self.dir.path());
    }
}

#[test]
fn pull_list_inspect_remove() {
    let env = Env::new();
    let name = format!("{}/busybox:latest", registry());
    let id = env.ok(&["pull", &name]);
    let id = id.trim();
    assert_eq!(
        id.len(),
        64,
        "pull prints the image ID when not a terminal: {id:?}"
    );

    let list = env.ok(&["images"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let header: Vec<&str> = lines[0]
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(header, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    let row: Vec<&str> = lines[1]
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(row[0], format!("{}/busybox", registry()));
    assert_eq!(row[1], "latest");
    assert_eq!(row[2], &id[..12]);
    assert!(row[3].ends_with("ago"), "{row:?}");
    assert_eq!(row[4], "2.14MB");
    assert_eq!(env.ok(&["images", "-q"]).trim(), &id[..12]);

    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["image", "inspect", &name])).unwrap();
    assert_eq!(inspect[0]["Id"], format!("sha256:{id}"));
    assert_eq!(inspect[0]["RepoTags"][0], name.as_str());
    assert_eq!(inspect[0]["Config"]["Cmd"][0], "sh");
    assert_eq!(inspect[0]["Platform"], "linux/amd64");
    // By ID prefix too.
    env.ok(&["image", "inspect", &id[..8]]);

    let already = env.ok(&["pull", &name]);
    assert_eq!(already.trim(), id);

    assert_eq!(env.ok(&["rmi", &name]).trim(), format!("Untagged: {name}"));
    env.assert_empty_store();
    let e = env.fails(&["rmi", &name]);
    assert_eq!(e.trim(), format!("Error: image {name}: not found"));
}

#[test]
fn shared_layers_stay_until_their_last_image_goes() {
    let env = Env::new();
    let docker = format!("{}/busybox:latest", registry());
    let oci = format!("{}/busybox:oci", registry());
    env.ok(&["pull", &docker]);
    env.ok(&["pull", &oci]);
    assert_eq!(env.entries("snapshots").len(), 1);
    env.ok(&["rmi", &oci]);
    assert_eq!(
        env.entries("snapshots").len(),
        1,
        "busybox:latest still needs the layer"
    );
    env.ok(&["image", "inspect", &docker]);
    // The same ID under two names needs --force when removed by ID.
    env.ok(&["pull", &oci]);
    let id = env.ok(&["images", "-q"]);
    let e = env.fails(&["rmi", id.trim()]);
    assert!(e.contains("it has several names"), "{e}");
    env.ok(&["rmi", "--force", id.trim()]);
    env.assert_empty_store();
}

#[test]
fn an_image_in_use_is_not_removed() {
    let env = Env::new();
    let name = format!("{}/busybox:oci", registry());
    env.ok(&["pull", &name]);
    let images = podrun_image::Images::open(&env.root()).unwrap();
    let rootfs = images.prepare_rootfs(&name, "user-1").unwrap();
    assert!(rootfs.join("bin/busybox").is_file());
    let e = env.fails(&["rmi", &name]);
    assert_eq!(
        e.trim(),
        format!("Error: remove image {name}: in use by container user-1")
    );
    assert!(rootfs.join("bin/busybox").is_file());
    images.remove_rootfs("user-1").unwrap();
    env.ok(&["rmi", &name]);
    env.assert_empty_store();
}

#[test]
fn bad_input_names_the_image_and_cause_and_changes_nothing() {
    let env = Env::new();
    let r = registry();
    let cases: Vec<(String, String)> = vec![
        (format!("{r}/no-such-repo:1"), format!("Error: pull {r}/no-such-repo:1: manifest unknown")),
        (format!("{r}/busybox:no-such-tag"), format!("Error: pull {r}/busybox:no-such-tag: manifest unknown")),
        (
            "127.0.0.1:9/busybox".into(),
            "Error: pull 127.0.0.1:9/busybox:latest: cannot connect to 127.0.0.1:9: tcp connect error: Connection refused (os error 111)".into(),
        ),
        ("Bad/Name".into(), "Error: invalid reference \"Bad/Name\": repository name must be lowercase".into()),
        (
            format!("{r}/busybox@sha256:1234"),
            format!("Error: invalid reference \"{r}/busybox@sha256:1234\": digest must be sha256:<64 lower-case hex digits>"),
        ),
        (
            format!("{}/busybox:latest", auth_registry()),
            format!(
                "Error: pull {a}/busybox:latest: unauthorized: missing or wrong credentials for {a} (podrun login {a})",
                a = auth_registry()
            ),
        ),
    ];
    for (image, want) in cases {
        let got = env.fails(&["pull", &image]);
        assert_eq!(got.trim(), want);
        env.assert_empty_store();
    }
    let e = env.fails(&[
        "pull",
        "--platform",
        "linux/mips64",
        &format!("{r}/busybox:multi"),
    ]);
    assert!(e.contains("no image for platform linux/mips64 (the index has linux/amd64, linux/arm64/v8, linux/arm/v7)"), "{e}");
    assert_eq!(env.entries("images"), Vec::<String>::new());
}

#[test]
fn login_then_pull_from_a_registry_with_basic_auth() {
    let env = Env::new();
    let reg = auth_registry();
    let login = |password: &str| {
        let mut child = env
            .cmd(&["login", &reg, "-u", "podrun", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let bad = login("wrong");
    assert!(!bad.status.success());
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr).trim(),
        format!("Error: login to {reg}: wrong user name or password")
    );
    assert!(!env.auth_file().exists(), "a failed login stores nothing");

    let good = login("secret");
    assert!(good.status.success(), "{good:?}");
    assert_eq!(
        String::from_utf8_lossy(&good.stdout).trim(),
        "Login Succeeded"
    );
    let name = format!("{reg}/busybox:latest");
    env.ok(&["pull", &name]);
    env.ok(&["logout", &reg]);
    env.ok(&["rmi", &name]);
    let e = env.fails(&["pull", &name]);
    assert!(e.contains("unauthorized"), "{e}");
}

#[test]
fn wrong_credentials_in_docker_config_are_reported() {
    let env = Env::new();
    let reg = auth_registry();
    std::fs::create_dir_all(env.dir.path().join(".docker")).unwrap();
    // "podrun:nope" in base64, in the file docker login writes.
    std::fs::write(
        env.dir.path().join(".docker/config.json"),
        format!(r#"{{"auths":{{"{reg}":{{"auth":"cG9kcnVuOm5vcGU="}}}}}}"#),
    )
    .unwrap();
    let e = env.fails(&["pull", &format!("{reg}/busybox:latest")]);
    assert!(
        e.contains("unauthorized: missing or wrong credentials"),
        "{e}"
    );
    env.assert_empty_store();
    // The right ones, in the same file, work.
    std::fs::write(
        env.dir.path().join(".docker/config.json"),
        format!(r#"{{"auths":{{"{reg}":{{"auth":"cG9kcnVuOnNlY3JldA=="}}}}}}"#),
    )
    .unwrap();
    env.ok(&["pull", &format!("{reg}/busybox:latest")]);
}

#[test]
fn a_full_disk_fails_cleanly() {
    let env = Env::new();
    let small = env.dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    rustix::mount::mount(
        "tmpfs",
        &small,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        c"size=1m",
    )
    .unwrap();
    let full = Env {
        dir: tempfile::TempDir::new_in(&small).unwrap(),
    };
    let name = format!("{}/busybox:oci", registry());
    let e = full.fails(&["pull", &name]);
    assert!(e.starts_with(&format!("Error: pull {name}: ")), "{e}");
    assert!(e.contains("No space left on device"), "{e}");
    full.assert_empty_store();
    assert!(full.entries("snapshots").is_empty());
    drop(full);
}

#[test]
fn mirrors_from_registries_conf_serve_short_names() {
    let env = Env::new();
    std::fs::write(
        env.dir.path().join("registries.conf"),
        format!("[[registry]]\nprefix = \"docker.io/library\"\n[[registry.mirror]]\nlocation = \"{}\"\n", registry()),
    )
    .unwrap();
    env.ok(&["pull", "busybox:oci"]);
    let list = env.ok(&["images"]);
    assert!(
        list.lines()
            .nth(1)
            .unwrap()
            .starts_with("docker.io/library/busybox   oci"),
        "{list}"
    );
    env.ok(&["rmi", "busybox:oci"]);
    std::fs::write(
        env.dir.path().join("registries.conf"),
        "[[registry]]\nlocation = 3\n",
    )
    .unwrap();
    let e = env.fails(&["pull", "busybox:oci"]);
    assert!(
        e.contains("registries.conf") && e.contains("location"),
        "{e}"
    );
}

#[test]
fn load_oci_archive_and_docker_save_tarball() {
    let env = Env::new();
    let files = image_files();
    let out = env.ok(&[
        "image",
        "load",
        "-i",
        files.join("busybox-oci-archive.tar").to_str().unwrap(),
    ]);
    assert_eq!(
        out.trim(),
        "Loaded image: docker.io/library/busybox:archived"
    );
    let out = env.ok(&[
        "load",
        "-i",
        files.join("busybox-docker-save.tar").to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), "Loaded image: docker.io/library/busybox:saved");
    // Both hold the same rootfs: one snapshot, usable as a container filesystem.
    assert_eq!(env.entries("snapshots").len(), 1);
    env.assert_blobs_verify();
    let images = podrun_image::Images::open(&env.root()).unwrap();
    let root = images.prepare_rootfs("busybox:saved", "loaded").unwrap();
    assert!(root.join("etc/passwd").is_file());
    images.remove_rootfs("loaded").unwrap();

    let junk = env.dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar at all").unwrap();
    let e = env.fails(&["load", "-i", junk.to_str().unwrap()]);
    assert!(
        e.starts_with(&format!("Error: load {}: ", junk.display())),
        "{e}"
    );
}

#[test]
fn an_interrupted_pull_leaves_no_visible_half_and_restarts_cleanly() {
    let env = Env::new();
    let name = format!("{}/big:latest", registry());
    let mut child = env
        .cmd(&["pull", &name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some layer bytes have landed but before it finishes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let partial: u64 = std::fs::read_dir(env.root().join("content/ingest"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if partial > 4 << 20 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "pull finished before it could be interrupted"
        );
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    env.assert_blobs_verify();
    assert!(
        env.entries("images").is_empty(),
        "no record for a half image"
    );

    env.ok(&["pull", &name]);
    env.assert_blobs_verify();
    assert!(
        env.entries("content/ingest").is_empty(),
        "{:?}",
        env.entries("content/ingest")
    );
    assert!(
        env.entries("snapshots")
            .iter()
            .all(|s| !s.starts_with(".staging")),
        "{:?}",
        env.entries("snapshots")
    );
    assert_eq!(env.entries("snapshots").len(), 5);
}

/// `podrun completion SHELL` prints a script generated from the command
/// definitions (every subcommand in it); an unknown shell is a usage error.
#[test]
fn completion_scripts_cover_every_command_and_version_prints_it() {
    let podrun = env!("CARGO_BIN_EXE_podrun");
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(podrun)
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in [
            "apply",
            "describe",
            "delete",
            "logs",
            "exec",
            "serve",
            "completion",
        ] {
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
    }
    let out = Command::new(podrun)
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = Command::new(podrun).arg("version").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("podrun version {}\n", env!("CARGO_PKG_VERSION"))
    );
}
