//! Container logs as kubelet keeps them, through the agent: rotation by the
//! configured size and count (the monitor rotates, a child compresses),
//! one file per instance so `logs --previous` shows the last one, and
//! `logs` with `--tail`, `--since`, `--since-time`, `--limit-bytes` read
//! across the rotated and compressed files.
//!
//! Run with `--test-threads=1` (the suite's tests share machine-wide names).

#[path = "support/agent_env.rs"]
mod agent_env;
mod support;

use agent_env::{registry, text, Env, Suite};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SUITE: Suite = Suite {
    name: "logs",
    knobs: &[
        ("PODRUN_SYNC_INTERVAL_MS", "200"),
        ("PODRUN_BACKOFF_INITIAL_MS", "500"),
    ],
    agent_stays_up: true,
};

/// Rotation at 64 KiB, 3 files kept (the live one included).
fn small_logs(env: &Env) {
    let file = &env.network.config_file;
    let text = std::fs::read_to_string(file).unwrap();
    // Top-level keys go before the tables.
    let text = format!("container_log_max_size = \"64Ki\"\ncontainer_log_max_files = 3\n{text}");
    std::fs::write(file, text).unwrap();
}

/// The files of `dir`, by name.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Wait (at most `secs`) until `f` holds; its last value in the message.
fn wait_for<T: std::fmt::Debug>(what: &str, secs: u64, mut f: impl FnMut() -> (bool, T)) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (done, value) = f();
        if done {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "waited {secs} s for {what}: {value:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn logs_rotate_compress_and_keep_the_previous_instance() {
    let env = Env::new(&SUITE, "rot");
    small_logs(&env);
    let _agent = env.serve(None, &[], &[]);
    let name = env.name("lg1-chatty");
    let r = registry();
    // The first instance writes five bursts of 70 lines of ~1 KiB, a second
    // apart (a file rotates at most once a second), then fails; the second
    // says so and waits.
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: {r}/busybox:latest
    command:
    - sh
    - -c
    - |
      trap 'exit 0' TERM
      if [ -e /tmp/ran ]; then echo second instance; while true; do sleep 0.1; done; fi
      touch /tmp/ran
      pad=$(head -c 1000 /dev/zero | tr '\0' x)
      for b in 1 2 3 4 5; do
        i=0; while [ $i -lt 70 ]; do echo "b$b l$i $pad"; i=$((i+1)); done
        sleep 1.1
      done
      echo done; exit 1
    volumeMounts: [{{name: tmp, mountPath: /tmp}}]
  volumes: [{{name: tmp, emptyDir: {{}}}}]
"#
    );
    let file = env.write_manifest(&manifest);
    env.ok(&["apply", "-f", file.to_str().unwrap()]);
    let pod_id = wait_for("the pod's ID", 20, || {
        let ids = env.pod_ids();
        (!ids.is_empty(), ids)
    });
    let pod_id = pod_id.into_iter().next().unwrap();
    let dir: PathBuf = env.run.join("pods").join(&pod_id).join("logs").join("app");
    // No previous instance yet: kubectl's error.
    let out = env.podrun(&["logs", "-p", &name]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "previous terminated container \"app\" in pod \"{name}\" not found"
        )),
        "{}",
        text(&out)
    );
    // The second instance runs: the first's files are kept.
    wait_for("the second instance's log", 40, || {
        let log = std::fs::read_to_string(dir.join("1.log")).unwrap_or_default();
        (log.contains("second instance"), files(&dir))
    });
    // Its compressing child may still be at work.
    let names = wait_for(
        "instance 0's files: live, one rotated, one compressed",
        10,
        || {
            let names = files(&dir);
            let gz = names.iter().filter(|n| n.ends_with(".gz")).count();
            let tmp = names.iter().any(|n| n.ends_with(".tmp"));
            (gz == 1 && !tmp, names)
        },
    );
    let of0: Vec<&String> = names.iter().filter(|n| n.starts_with("0.log")).collect();
    assert_eq!(of0.len(), 3, "max 3 files: {names:?}");
    assert_eq!(of0[0], "0.log");
    let stamp = |n: &str| n["0.log.".len()..][..15].to_string();
    let (gz, plain) = (of0[1], of0[2]);
    assert!(gz.ends_with(".gz") && !plain.ends_with(".gz"), "{names:?}");
    // kubelet's names: <path>.<YYYYMMDD-HHMMSS>, the compressed one older.
    for n in [gz, plain] {
        let s = stamp(n);
        assert!(
            chrono::NaiveDateTime::parse_from_str(&s, "%Y%m%d-%H%M%S").is_ok(),
            "{n}"
        );
    }
    assert!(stamp(gz) < stamp(plain), "{names:?}");
    assert!(names.contains(&"1.log".to_string()), "{names:?}");
    // The compressed file holds CRI lines of the first instance.
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(dir.join(gz)).unwrap())
        .read_to_string(&mut unzipped)
        .unwrap();
    let first = unzipped.lines().next().unwrap();
    assert!(
        first.contains(" stdout F b") && first.ends_with("xxx"),
        "{first}"
    );
    // The rotated plain file is about the size, the live one smaller.
    let size = |n: &str| std::fs::metadata(dir.join(n)).unwrap().len();
    assert!(size(plain) <= 64 * 1024 + 70 * 1100, "{}", size(plain));
    assert!(size(plain) > 60 * 1024, "{}", size(plain));

    // `logs`: the current instance; `-p`: the previous, across its files.
    assert_eq!(env.ok(&["logs", &name]), "second instance\n");
    let previous = env.ok(&["logs", "-p", &name]);
    let lines: Vec<&str> = previous.lines().collect();
    assert_eq!(lines.last(), Some(&"done"));
    assert!(!previous.contains("b1 l0 "), "pruned lines are gone");
    // What is kept is in order, without a gap: the last ~2 files' worth.
    let numbers: Vec<(u32, u32)> = lines[..lines.len() - 1]
        .iter()
        .map(|l| {
            let mut w = l.split(' ');
            let b = w.next().unwrap()[1..].parse().unwrap();
            let i = w.next().unwrap()[1..].parse().unwrap();
            (b, i)
        })
        .collect();
    assert!(numbers.len() > 120, "{} lines kept", numbers.len());
    for pair in numbers.windows(2) {
        let ((b0, i0), (b1, i1)) = (pair[0], pair[1]);
        assert!(
            (b1 == b0 && i1 == i0 + 1) || (b1 == b0 + 1 && i0 == 69 && i1 == 0),
            "{pair:?}"
        );
    }
    assert_eq!(numbers.last(), Some(&(5, 69)));
    // --tail, --limit-bytes, --timestamps, combined.
    assert_eq!(
        env.ok(&["logs", "-p", &name, "--tail=2"]),
        format!("b5 l69 {}\ndone\n", "x".repeat(1000))
    );
    assert_eq!(
        env.ok(&["logs", "-p", &name, "--limit-bytes=6"]),
        &previous[..6]
    );
    let stamped = env.ok(&["logs", "-p", &name, "--tail=1", "--timestamps"]);
    let (time, rest) = stamped.split_once(' ').unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok() && rest == "done\n",
        "{stamped}"
    );
    // --since-time: only what came at or after it; --since: a duration.
    let since_done = format!("--since-time={time}");
    assert_eq!(env.ok(&["logs", "-p", &name, &since_done]), "done\n");
    assert_eq!(env.ok(&["logs", "-p", &name, "--since=1h"]), previous);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(env.ok(&["logs", &name, "--since=1s"]), "");
    assert_eq!(env.ok(&["logs", &name, "--since=2m"]), "second instance\n");
    let out = env.podrun(&["logs", &name, "--since=5x"]);
    assert!(!out.status.success(), "{}", text(&out));

    env.ok(&["delete", "pod", &name]);
    wait_for("the pod gone", 30, || {
        let rows = env.rows();
        (rows.is_empty(), rows)
    });
    env.assert_nothing_left();
}
