//! The client's logic against fake plugins: shell scripts that record what
//! they were given and print what the test tells them to.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;
use crate::{PortMapping, Protocol};

const NETNS: &str = "/run/netns/fake-pod";

/// A config directory, a bin directory of fake plugins, a cache and a log.
struct Fake {
    _dir: tempfile::TempDir,
    conf: PathBuf,
    bin: PathBuf,
    cache: PathBuf,
    log: PathBuf,
}

/// One recorded plugin run.
#[derive(Debug)]
struct Run {
    command: String,
    plugin: String,
    stdin: Value,
    env: Vec<String>,
}

impl Fake {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let [conf, bin, cache, log] = ["net.d", "bin", "cache", "log"].map(|d| {
            let p = dir.path().join(d);
            std::fs::create_dir(&p).unwrap();
            p
        });
        Fake {
            _dir: dir,
            conf,
            bin,
            cache,
            log,
        }
    }

    fn config(&self) -> CniConfig {
        CniConfig {
            conf_dir: self.conf.clone(),
            bin_dirs: vec![self.bin.clone()],
            cache_dir: self.cache.clone(),
            timeout: Duration::from_secs(10),
            ip_ranges: Vec::new(),
        }
    }

    fn network(&self) -> CniNetwork {
        CniNetwork::new(self.config())
    }

    fn conflist(&self, text: &str) {
        std::fs::write(self.conf.join("10-test.conflist"), text).unwrap();
    }

    /// A plugin that logs each run and answers `command` with `(stdout, exit
    /// code)`; other commands succeed silently.
    fn plugin(&self, name: &str, answers: &[(&str, &str, i32)]) {
        let mut cases = String::new();
        for (command, stdout, code) in answers {
            cases.push_str(&format!(
                "{command}) cat <<'EOF'\n{stdout}\nEOF\nexit {code};;\n"
            ));
        }
        let script = format!(
            "#!/bin/sh\nn=$(ls {log} | wc -l)\nf={log}/$(printf %04d $n)-$CNI_COMMAND-{name}\n\
             cat > $f.stdin\n\
             printf '%s\\n' \"$CNI_COMMAND\" \"$CNI_CONTAINERID\" \"$CNI_NETNS\" \"$CNI_IFNAME\" \"$CNI_ARGS\" \"$CNI_PATH\" > $f.env\n\
             case $CNI_COMMAND in\n{cases}esac\n",
            log = self.log.display(),
        );
        let path = self.bin.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The runs so far, in order, and forgets them.
    fn runs(&self) -> Vec<Run> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.log)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "stdin"))
            .collect();
        names.sort();
        let runs = names
            .iter()
            .map(|p| {
                let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                let mut parts = stem.splitn(3, '-').skip(1);
                let command = parts.next().unwrap().to_string();
                let plugin = parts.next().unwrap().to_string();
                let stdin = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
                let env = std::fs::read_to_string(p.with_extension("env"))
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect();
                Run {
                    command,
                    plugin,
                    stdin,
                    env,
                }
            })
            .collect();
        for entry in std::fs::read_dir(&self.log).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        runs
    }

    fn cache_files(&self) -> Vec<String> {
        match std::fs::read_dir(self.cache.join("results")) {
            Ok(dir) => {
                let mut v: Vec<String> = dir
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                v
            }
            Err(_) => Vec::new(),
        }
    }
}

fn attachment() -> Attachment {
    Attachment {
        sandbox_id: "sb1".into(),
        netns: PathBuf::from(NETNS),
        ifname: "eth0".into(),
        pod_name: "web".into(),
        pod_namespace: "default".into(),
        pod_uid: "uid-1".into(),
        port_mappings: vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: String::new(),
        }],
        annotations: BTreeMap::from([("team".to_string(), "a".to_string())]),
        cgroup_parent: String::new(),
    }
}

/// What a bridge-like first plugin prints (1.0.0).
fn first_result() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "br0", "mac": "02:00:00:00:00:01"},
            {"name": "veth1", "mac": "02:00:00:00:00:02"},
            {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": NETNS}
        ],
        "ips": [{"interface": 2, "address": "10.88.0.7/24", "gateway": "10.88.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {}
    })
}

/// What the second plugin prints: the first's result plus an IPv6 address.
fn second_result() -> Value {
    let mut r = first_result();
    r["ips"]
        .as_array_mut()
        .unwrap()
        .push(json!({"interface": 2, "address": "fd88::7/64"}));
    r
}

const LIST: &str = r#"{"cniVersion":"1.0.0","name":"fakenet","plugins":[
    {"type":"first","bridge":"br0","ipam":{"type":"none"}},
    {"type":"second","capabilities":{"portMappings":true,"bandwidth":true}}]}"#;

fn two_plugins(fake: &Fake) {
    fake.conflist(LIST);
    fake.plugin("first", &[("ADD", &first_result().to_string(), 0)]);
    fake.plugin("second", &[("ADD", &second_result().to_string(), 0)]);
}

#[test]
fn add_chains_results_and_gives_each_plugin_its_config_and_env() {
    let fake = Fake::new();
    two_plugins(&fake);
    let net = fake.network();
    assert_eq!(net.name(), "fakenet");
    net.ready().unwrap();
    let status = net.add(&attachment()).unwrap();
    assert_eq!(status.interface, "eth0");
    assert_eq!(
        status.ips,
        [
            "10.88.0.7".parse::<std::net::IpAddr>().unwrap(),
            "fd88::7".parse().unwrap()
        ]
    );

    let runs = fake.runs();
    assert_eq!(
        runs.iter()
            .map(|r| (r.command.as_str(), r.plugin.as_str()))
            .collect::<Vec<_>>(),
        [("ADD", "first"), ("ADD", "second")]
    );
    let env = [
        "ADD",
        "sb1",
        NETNS,
        "eth0",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1",
        &fake.bin.to_string_lossy(),
    ];
    assert_eq!(runs[0].env, env);
    assert_eq!(
        runs[0].stdin,
        json!({"type":"first","bridge":"br0","ipam":{"type":"none"},"cniVersion":"1.0.0","name":"fakenet"})
    );
    assert_eq!(
        runs[1].stdin,
        json!({
            "type": "second",
            "capabilities": {"portMappings": true, "bandwidth": true},
            "cniVersion": "1.0.0",
            "name": "fakenet",
            // bandwidth is declared but the pod has no limit: not passed.
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
            "prevResult": first_result()
        })
    );

    // The cache holds the list, the arguments and the final result.
    assert_eq!(fake.cache_files(), ["fakenet-sb1-eth0"]);
    let entry = cache::read(&fake.cache.join("results/fakenet-sb1-eth0"))
        .unwrap()
        .unwrap();
    assert_eq!(entry.result, Some(second_result()));
    assert_eq!(entry.netns, NETNS);
    assert_eq!(entry.config_bytes().unwrap(), LIST.as_bytes());
    assert_eq!(
        entry.capability_args["io.kubernetes.cri.pod-annotations"],
        json!({"team": "a"})
    );
    assert_eq!(
        net.cached_attachments(),
        [CachedAttachment {
            network: "fakenet".into(),
            sandbox_id: "sb1".into(),
            ifname: "eth0".into(),
            netns: PathBuf::from(NETNS),
            complete: true,
        }]
    );
}

#[test]
fn del_runs_in_reverse_with_the_cached_result_and_then_without() {
    let fake = Fake::new();
    two_plugins(&fake);
    let net = fake.network();
    net.add(&attachment()).unwrap();
    fake.runs();

    net.del(&attachment()).unwrap();
    let runs = fake.runs();
    assert_eq!(
        runs.iter()
            .map(|r| (r.command.as_str(), r.plugin.as_str()))
            .collect::<Vec<_>>(),
        [("DEL", "second"), ("DEL", "first")]
    );
    assert_eq!(runs[0].stdin["prevResult"], second_result());
    assert_eq!(runs[1].stdin["prevResult"], second_result());
    assert_eq!(runs[0].env[0], "DEL");
    assert!(fake.cache_files().is_empty());

    // Again: no cache entry, the plugins still run, with no prevResult.
    net.del(&attachment()).unwrap();
    let runs = fake.runs();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.stdin.get("prevResult").is_none()));
}

#[test]
fn del_after_the_config_changed_or_went_uses_the_cached_config() {
    let fake = Fake::new();
    two_plugins(&fake);
    let net = fake.network();
    net.add(&attachment()).unwrap();
    fake.runs();
    // A new network replaces the old one: the old attachment is still
    // removed by the old plugins, with the old name.
    fake.conflist(r#"{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"third"}]}"#);
    fake.plugin("third", &[]);
    net.del(&attachment()).unwrap();
    let runs = fake.runs();
    assert_eq!(
        runs.iter()
            .map(|r| (r.plugin.as_str(), r.stdin["name"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [("second", "fakenet"), ("first", "fakenet")]
    );
    assert!(fake.cache_files().is_empty());

    two_plugins(&fake);
    net.add(&attachment()).unwrap();
    std::fs::remove_file(fake.conf.join("10-test.conflist")).unwrap();
    fake.runs();
    net.del(&attachment()).unwrap();
    assert_eq!(fake.runs().len(), 2);
    assert!(fake.cache_files().is_empty());
    // Nothing cached and no config: nothing of ours is left, DEL succeeds.
    net.del(&attachment()).unwrap();
    assert!(fake.runs().is_empty());
}

#[test]
fn a_failed_add_is_undone_by_a_del_of_the_whole_list() {
    let fake = Fake::new();
    two_plugins(&fake);
    fake.plugin(
        "second",
        &[(
            "ADD",
            r#"{"cniVersion":"1.0.0","code":11,"msg":"failed to open port 8080","details":"address in use"}"#,
            1,
        )],
    );
    let net = fake.network();
    let err = net.add(&attachment()).unwrap_err();
    assert_eq!(err.network, "fakenet");
    assert_eq!(
        err.to_string(),
        r#"fakenet: plugin type="second" failed (add): failed to open port 8080: address in use"#
    );
    let runs = fake.runs();
    assert_eq!(
        runs.iter()
            .map(|r| (r.command.as_str(), r.plugin.as_str()))
            .collect::<Vec<_>>(),
        [
            ("ADD", "first"),
            ("ADD", "second"),
            ("DEL", "second"),
            ("DEL", "first")
        ]
    );
    assert_eq!(runs[3].stdin["prevResult"], first_result());
    assert!(fake.cache_files().is_empty());
}

#[test]
fn a_failed_undo_keeps_the_cache_entry_and_reports_both() {
    let fake = Fake::new();
    two_plugins(&fake);
    fake.plugin(
        "first",
        &[
            ("ADD", &first_result().to_string(), 0),
            ("DEL", r#"{"code":999,"msg":"device busy"}"#, 1),
        ],
    );
    fake.plugin("second", &[("ADD", "not json", 0)]);
    let net = fake.network();
    let err = net.add(&attachment()).unwrap_err().to_string();
    assert!(
        err.starts_with(
            r#"fakenet: plugin type="second" failed (add): invalid result: expected ident"#
        ),
        "{err}"
    );
    assert!(
        err.ends_with(r#"; undoing the add: plugin type="first" failed (delete): device busy"#),
        "{err}"
    );
    // The record stays, for a later DEL or GC.
    assert_eq!(
        net.cached_attachments()
            .iter()
            .map(|a| a.complete)
            .collect::<Vec<_>>(),
        [false]
    );
}

#[test]
fn a_missing_plugin_fails_ready_and_add_before_anything_runs() {
    let fake = Fake::new();
    fake.conflist(LIST);
    fake.plugin("first", &[("ADD", &first_result().to_string(), 0)]);
    let net = fake.network();
    let err = net.ready().unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            r#"fakenet: plugin type="second": no executable "second" in {}"#,
            fake.bin.display()
        )
    );
    let err = net.add(&attachment()).unwrap_err().to_string();
    assert!(
        err.contains(r#"plugin type="second" failed (add): no executable"#),
        "{err}"
    );
    assert!(fake.runs().is_empty());
    assert!(fake.cache_files().is_empty());
}

#[test]
fn ready_names_a_missing_or_bad_config() {
    let fake = Fake::new();
    let net = fake.network();
    assert_eq!(net.name(), "cni");
    let err = net.ready().unwrap_err().to_string();
    assert!(err.contains("no network config found in"), "{err}");
    fake.conflist(r#"{"cniVersion":"1.0.0","plugins":[]}"#);
    let err = net.ready().unwrap_err().to_string();
    assert!(err.contains("10-test.conflist: missing name"), "{err}");
    // A config installed after start is picked up.
    two_plugins(&fake);
    net.ready().unwrap();
    assert_eq!(net.name(), "fakenet");
}

#[test]
fn a_0_4_0_network_parses_its_results() {
    let fake = Fake::new();
    fake.conflist(r#"{"cniVersion":"0.4.0","name":"old","plugins":[{"type":"legacy"}]}"#);
    fake.plugin(
        "legacy",
        &[(
            "ADD",
            &json!({
                "cniVersion": "0.4.0",
                "interfaces": [{"name": "eth0", "sandbox": NETNS}],
                "ips": [{"version": "4", "interface": 0, "address": "10.1.2.3/16"}]
            })
            .to_string(),
            0,
        )],
    );
    let status = fake.network().add(&attachment()).unwrap();
    assert_eq!(
        status.ips,
        ["10.1.2.3".parse::<std::net::IpAddr>().unwrap()]
    );
}

#[test]
fn check_uses_the_cached_result_and_needs_one() {
    let fake = Fake::new();
    two_plugins(&fake);
    let net = fake.network();
    let err = net.check(&attachment()).unwrap_err().to_string();
    assert_eq!(
        err,
        "no cached result for sandbox sb1 interface eth0: CHECK needs the ADD's result"
    );
    net.add(&attachment()).unwrap();
    fake.runs();
    net.check(&attachment()).unwrap();
    let runs = fake.runs();
    assert_eq!(
        runs.iter()
            .map(|r| (r.command.as_str(), r.plugin.as_str()))
            .collect::<Vec<_>>(),
        [("CHECK", "first"), ("CHECK", "second")]
    );
    assert_eq!(runs[0].stdin["prevResult"], second_result());
}

#[test]
fn gc_deletes_stale_attachments_and_runs_plugin_gc_from_1_1_0() {
    let fake = Fake::new();
    two_plugins(&fake);
    let net = fake.network();
    let mut other = attachment();
    other.sandbox_id = "sb2".into();
    net.add(&attachment()).unwrap();
    net.add(&other).unwrap();
    fake.runs();

    // 1.0.0: the stale attachment is deleted, no plugin GC.
    net.gc(&[("sb1".into(), "eth0".into())]).unwrap();
    let runs = fake.runs();
    assert_eq!(
        runs.iter()
            .map(|r| (r.command.as_str(), r.env[1].as_str()))
            .collect::<Vec<_>>(),
        [("DEL", "sb2"), ("DEL", "sb2")]
    );
    assert_eq!(fake.cache_files(), ["fakenet-sb1-eth0"]);

    fake.conflist(&LIST.replace("1.0.0", "1.1.0"));
    net.gc(&[("sb1".into(), "eth0".into())]).unwrap();
    let runs = fake.runs();
    assert_eq!(
        runs.iter()
            .map(|r| (r.command.as_str(), r.plugin.as_str()))
            .collect::<Vec<_>>(),
        [("GC", "first"), ("GC", "second")]
    );
    assert_eq!(
        runs[0].stdin["cni.dev/valid-attachments"],
        json!([{"containerID": "sb1", "ifname": "eth0"}])
    );
    assert_eq!(runs[0].stdin["cniVersion"], "1.1.0");
    assert_eq!(
        runs[0].env,
        ["GC", "", "", "", "", &fake.bin.to_string_lossy()]
    );
    assert!(runs[1].stdin.get("runtimeConfig").is_none());

    fake.conflist(&LIST.replace("\"name\"", "\"disableGC\":true,\"name\""));
    net.gc(&[]).unwrap();
    assert!(fake.runs().is_empty());
}

#[test]
fn versions_asks_each_plugin_and_checks_the_lists_version() {
    let fake = Fake::new();
    two_plugins(&fake);
    let answer = r#"{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}"#;
    fake.plugin("first", &[("VERSION", answer, 0)]);
    fake.plugin("second", &[("VERSION", answer, 0)]);
    let net = fake.network();
    let versions = net.versions().unwrap();
    assert_eq!(versions[1].0, "second");
    assert_eq!(versions[1].1, ["0.4.0", "1.0.0"]);
    let runs = fake.runs();
    assert_eq!(runs[0].stdin, json!({"cniVersion": "1.0.0"}));
    assert_eq!(runs[0].env[0], "VERSION");

    fake.conflist(&LIST.replace("1.0.0", "1.1.0"));
    let err = net.versions().unwrap_err().to_string();
    assert!(
        err.contains("the network's cniVersion 1.1.0 is not among"),
        "{err}"
    );
}

#[test]
fn a_hung_plugin_is_killed_at_the_timeout_and_the_add_undone() {
    let fake = Fake::new();
    two_plugins(&fake);
    let hang = fake.bin.join("second");
    std::fs::write(
        &hang,
        format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then exec sleep 30; fi\ntouch {}/del-ran\n",
            fake._dir.path().display()
        ),
    )
    .unwrap();
    let mut config = fake.config();
    config.timeout = Duration::from_millis(300);
    let err = CniNetwork::new(config)
        .add(&attachment())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        r#"fakenet: plugin type="second" failed (add): no answer within 300ms: killed it"#
    );
    assert!(fake._dir.path().join("del-ran").exists());
}

#[test]
fn invalid_attachment_ids_are_refused_before_they_reach_a_path() {
    let fake = Fake::new();
    two_plugins(&fake);
    let net = fake.network();
    for (id, ifname) in [
        ("../x", "eth0"),
        ("", "eth0"),
        ("sb", "a/b"),
        ("sb", "averyverylongname0"),
    ] {
        let mut att = attachment();
        att.sandbox_id = id.into();
        att.ifname = ifname.into();
        let err = net.add(&att).unwrap_err().to_string();
        assert!(err.starts_with("fakenet: invalid "), "{err}");
        assert!(net.del(&att).is_err());
    }
    assert!(fake.runs().is_empty());
}

#[test]
fn bad_bandwidth_annotations_fail_the_add_not_the_del() {
    let fake = Fake::new();
    two_plugins(&fake);
    let net = fake.network();
    let mut att = attachment();
    att.annotations
        .insert(args::INGRESS_BANDWIDTH.into(), "lots".into());
    let err = net.add(&att).unwrap_err().to_string();
    assert!(
        err.contains("annotation kubernetes.io/ingress-bandwidth=\"lots\""),
        "{err}"
    );
    assert!(fake.runs().is_empty());
    net.del(&att).unwrap();
    att.annotations
        .insert(args::INGRESS_BANDWIDTH.into(), "1M".into());
    net.add(&att).unwrap();
    let runs = fake.runs();
    assert_eq!(
        runs.last().unwrap().stdin["runtimeConfig"]["bandwidth"],
        json!({"ingressRate": 1_000_000, "ingressBurst": u32::MAX})
    );
}

#[test]
fn a_single_conf_file_runs_as_a_list_of_one() {
    let fake = Fake::new();
    std::fs::write(
        fake.conf.join("99-one.conf"),
        r#"{"cniVersion":"1.0.0","name":"solo","type":"first"}"#,
    )
    .unwrap();
    fake.plugin("first", &[("ADD", &first_result().to_string(), 0)]);
    let net = fake.network();
    net.add(&attachment()).unwrap();
    assert_eq!(fake.cache_files(), ["solo-sb1-eth0"]);
    let _ = Path::new(NETNS);
}
