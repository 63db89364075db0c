//! JSON values printed as YAML the way `kubectl get -o yaml` prints them
//! (sigs.k8s.io/yaml on go-yaml): keys sorted, two-space indents, list items at
//! their key's indent, multi-line strings as literal blocks, and strings quoted
//! only when a reader would take them for something else.
//!
//! serde-saphyr writes the YAML. Its default rules are YAML 1.1's as well as 1.2's:
//! besides `true`, `null`, `1e3` or `0x1F` it quotes `on`, `y`, `0b101`, `1_000`,
//! `1:20`, `=` and dates, which go-yaml v2, PyYAML and podrun's own reader (which
//! follows the API server's) would otherwise not read back as strings.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// `value` as a YAML document.
pub fn to_string(value: &Value) -> Result<String, serde_saphyr::ser::Error> {
    let mut options = serde_saphyr::SerializerOptions::default();
    // A long one-line string stays on one line (go-yaml would wrap it at 80
    // columns): a folded block (`>`) would be harder to grep and to copy.
    options.folded_wrap_chars = usize::MAX;
    serde_saphyr::to_string_with_options(&Sorted(value), options)
}

/// A JSON value whose objects serialize with their keys sorted, as go-yaml writes
/// the Go maps that sigs.k8s.io/yaml makes of JSON.
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by_key(|(k, _)| k.as_str());
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    out.serialize_entry(k, &Sorted(v))?;
                }
                out.end()
            }
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            scalar => scalar.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Strings a careless emitter leaves plain and a reader then takes for something
    /// else, or cannot read at all.
    #[rustfmt::skip]
    const TRICKY: &[&str] = &[
        // Numbers: YAML 1.2's, and YAML 1.1's radixes, underscores and base 60.
        "0", "-0", "00", "017", "0o17", "0x1F", "0b101", "1_000", "1:20", "-1:20",
        "190:20:30.15", "12:30", "1e3", "1E3", "+1", "-1", ".5", "5.", "+.5", "1.0e+3",
        "1.2.3", "8080", ".inf", "-.inf", "+.INF", ".NaN", ".nan",
        // Booleans, null and YAML 1.1's value and merge keys.
        "true", "False", "TRUE", "y", "Y", "n", "N", "yes", "No", "on", "OFF", "off",
        "~", "null", "Null", "NULL", "=", "<<",
        // Timestamps (YAML 1.1).
        "2026-11-27", "2026-11-27T20:30:05Z", "2001-12-14 21:59:43.10 -5",
        // Spaces, indicators and comments.
        "", " ", " lead", "trail ", "  two leading", "a: b", "a #b", "foo:", "foo: ", ":",
        "-", "--", "---", "...", "- x", "?", "? x", "*a", "&a", "!a", "!!str x", "%a",
        "@a", "`a", "|", "|x", ">", ">x", "#", "#x", "[a]", "{a}", ",", "[", "]", "{", "}",
        "'", "\"", "'q'", "\"q\"",
        // Line breaks, tabs and characters a reader must not see raw.
        "multi\nline", "trail\n", "\nlead", "a\n\nb", "x\n\n", "a\r\nb", "a\rb",
        "tab\there", "\ttab", "tab\t", "a\tb\nc", "trailing \nspace", " lead\nx",
        "\u{0}nul", "\u{7}bell", "\u{1b}[0m", "\u{7f}del", "\u{85}nel", "\u{2028}ls",
        "\u{feff}bom",
        // Plain and fine: they must come back too.
        "a:b", "a#b", "-c", "-x", "?x", "http://x:80/y", "nginx:1.25", "a,b", "a'b",
        "a\"b", "a\\b", "\\n", "$HOME", "a=b", "v1.2", "hello world", "é", "日本", "🚀",
    ];

    /// How PyYAML (YAML 1.1, as Python tools and go-yaml v2 read it) reads `yaml`, as
    /// JSON; what is not a JSON type comes back as `<type value>`.
    fn read_yaml_1_1(yaml: &str) -> Value {
        const SCRIPT: &str = r#"
import json, math, sys
import yaml

def show(o):
    return "<%s %r>" % (type(o).__name__, o)

def plain(o):
    if isinstance(o, dict):
        return {k if isinstance(k, str) else show(k): plain(v) for k, v in o.items()}
    if isinstance(o, list):
        return [plain(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return show(o)
    if o is None or isinstance(o, (str, bool, int, float)):
        return o
    return show(o)

json.dump(plain(yaml.safe_load(sys.stdin)), sys.stdout)
"#;
        // A clean directory: `-I` keeps the environment and the user's site out, the
        // working directory keeps a stray yaml.py out.
        let cwd = tempfile::tempdir().unwrap();
        let mut child = Command::new("/usr/bin/python3")
            .args(["-I", "-c", SCRIPT])
            .current_dir(cwd.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3 (scripts/deps.sh installs it)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "PyYAML (python3-yaml, scripts/deps.sh) could not read the YAML: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// How saphyr (YAML 1.2, core schema) reads `yaml`, as JSON; what is not a JSON
    /// type comes back as `<value>`.
    fn read_yaml_1_2(yaml: &str) -> Value {
        use saphyr::{LoadableYamlNode, Scalar, Yaml};
        fn json_of(node: &Yaml) -> Value {
            match node {
                Yaml::Value(Scalar::String(s)) => Value::String(s.to_string()),
                Yaml::Value(Scalar::Null) => Value::Null,
                Yaml::Value(Scalar::Boolean(b)) => json!(b),
                Yaml::Value(Scalar::Integer(i)) => json!(i),
                Yaml::Value(Scalar::FloatingPoint(f)) if f.is_finite() => json!(f.into_inner()),
                Yaml::Sequence(items) => items.iter().map(json_of).collect(),
                Yaml::Mapping(map) => Value::Object(
                    map.iter()
                        .map(|(k, v)| {
                            let key = match k {
                                Yaml::Value(Scalar::String(s)) => s.to_string(),
                                other => format!("<{other:?}>"),
                            };
                            (key, json_of(v))
                        })
                        .collect(),
                ),
                other => Value::String(format!("<{other:?}>")),
            }
        }
        let documents = Yaml::load_from_str(yaml)
            .unwrap_or_else(|e| panic!("saphyr could not read the YAML: {e}\n{yaml}"));
        assert_eq!(documents.len(), 1, "{yaml}");
        json_of(&documents[0])
    }

    /// Every tricky string as a value, a list item and a key.
    fn tricky_document() -> Value {
        let values: Map<String, Value> = TRICKY
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("k{i:03}"), json!(s)))
            .collect();
        let keys: Map<String, Value> = TRICKY.iter().map(|s| (s.to_string(), json!(1))).collect();
        json!({
            "values": values,
            "items": TRICKY,
            "keys": keys,
            // Past 1024 characters a key may not be a simple (implicit) key.
            "long": {"k".repeat(1500): "x".repeat(200), "words": "word ".repeat(40)},
        })
    }

    #[test]
    fn prints_as_kubectl_does() {
        let v = serde_json::json!({
            "kind": "Pod",
            "metadata": {"name": "web", "labels": {}},
            "spec": {"containers": [{"name": "app", "command": ["sh", "-c", "echo: hi"], "ports": []}]},
            "status": {"phase": "Running", "restartCount": 0, "ready": true, "msg": "", "n": "10", "startTime": "2026-11-27T20:30:05Z"},
            "nested": [[1, [2]], {"a": null, "b": [{"c": "d"}]}],
            "script": "#!/bin/sh\necho hi\n",
        });
        let want = "\
kind: Pod
metadata:
  labels: {}
  name: web
nested:
- - 1
  - - 2
- a: null
  b:
  - c: d
script: |
  #!/bin/sh
  echo hi
spec:
  containers:
  - command:
    - sh
    - -c
    - \"echo: hi\"
    name: app
    ports: []
status:
  msg: \"\"
  \"n\": \"10\"
  phase: Running
  ready: true
  restartCount: 0
  startTime: \"2026-11-27T20:30:05Z\"
";
        assert_eq!(to_string(&v).unwrap(), want);
    }

    #[test]
    fn tricky_strings_read_back_as_themselves_in_yaml_1_1() {
        let document = tricky_document();
        let yaml = to_string(&document).unwrap();
        assert_eq!(read_yaml_1_1(&yaml), document, "{yaml}");
    }

    #[test]
    fn tricky_strings_read_back_as_themselves_in_yaml_1_2() {
        let document = tricky_document();
        let yaml = to_string(&document).unwrap();
        assert_eq!(read_yaml_1_2(&yaml), document, "{yaml}");
    }

    /// What `podrun get pod -o yaml` prints is read back as the same Pod by PyYAML,
    /// saphyr and podrun's own reader (so it can be applied again).
    #[test]
    fn a_pod_with_tricky_values_reads_back_as_itself() {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "tricky",
                "namespace": "default",
                "labels": {"version": "1.10", "enabled": "on", "short": "y", "mode": "0755",
                           "hex": "0x1F", "bin": "0b101", "big": "1_000", "time": "1:20", "eq": "="},
                "annotations": {"note": "a: b #c", "empty": "", "inf": ".inf", "null": "null",
                                "spaces": " padded ", "script": "#!/bin/sh\necho hi\n",
                                "json": "{\"a\": [1, 2]}", "date": "2026-11-27"},
            },
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", "echo \"$@\"", "-"],
                    "args": ["- x", "*", "&a", "!b", "%c", "@d", "`e`", "? f", "|", ">", "~",
                             "1e3", "+1", ".5", "no", "tab\there", "line\nbreak", "\u{7}"],
                    "env": [{"name": "YES", "value": "yes"}, {"name": "OCTAL", "value": "017"},
                            {"name": "EMPTY", "value": ""}, {"name": "COLON", "value": "a: b"}],
                }],
            },
        });
        let yaml = to_string(&pod).unwrap();
        assert_eq!(read_yaml_1_1(&yaml), pod, "{yaml}");
        assert_eq!(read_yaml_1_2(&yaml), pod, "{yaml}");
        let objects = podrun_spec::parse_documents(&yaml, "pod.yaml")
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let want: podrun_spec::k8s_openapi::api::core::v1::Pod =
            serde_json::from_value(pod).unwrap();
        assert_eq!(objects, vec![podrun_spec::Object::Pod(want)], "{yaml}");
    }
}
