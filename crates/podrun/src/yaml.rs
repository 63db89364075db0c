//! JSON values printed as YAML the way `kubectl get -o yaml` prints them:
//! keys sorted, two-space indents, list items at their key's indent, strings
//! quoted only when YAML would read them as something else.

use serde_json::Value;

/// `value` as a YAML document.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(_) | Value::Array(_) => write(&mut out, value, 0, false),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn write(out: &mut String, value: &Value, indent: usize, in_list: bool) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                // The first key of a list item follows its "- ".
                if !(in_list && i == 0) {
                    out.push_str(&pad);
                }
                out.push_str(&key(k));
                out.push(':');
                let v = &map[k];
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push('\n');
                        write(out, v, indent + 2, false);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        write(out, v, indent, false);
                    }
                    _ => {
                        out.push(' ');
                        out.push_str(&scalar(v));
                        out.push('\n');
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&pad);
                out.push_str("- ");
                match item {
                    Value::Object(m) if !m.is_empty() => write(out, item, indent + 2, true),
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        write(out, item, indent + 2, false);
                    }
                    _ => {
                        out.push_str(&scalar(item));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn key(k: &str) -> String {
    if needs_quotes(k) {
        quoted(k)
    } else {
        k.to_string()
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if needs_quotes(s) => quoted(s),
        Value::String(s) => s.clone(),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// Whether YAML would read `s` as something other than this string.
fn needs_quotes(s: &str) -> bool {
    if s.is_empty() || s.trim() != s {
        return true;
    }
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "true" | "false" | "yes" | "no" | "y" | "n" | "on" | "off" | "null" | "~"
    ) || s.parse::<f64>().is_ok()
        || looks_like_a_date(s)
    {
        return true;
    }
    let mut chars = s.chars();
    let first = chars.next().unwrap_or(' ');
    // `-`, `?` and `:` are indicators only before a space (`- -c` is a plain "-c").
    let indicator = matches!(first, '-' | '?' | ':') && chars.next().is_none_or(|c| c == ' ');
    indicator
        || ",[]{}#&*!|>'\"%@`".contains(first)
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.chars().any(|c| c.is_control())
}

/// YAML 1.1 reads `2026-11-27…` as a timestamp: kubectl quotes those.
fn looks_like_a_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_as_kubectl_does() {
        let v = serde_json::json!({
            "kind": "Pod",
            "metadata": {"name": "web", "labels": {}},
            "spec": {"containers": [{"name": "app", "command": ["sh", "-c", "echo: hi"], "ports": []}]},
            "status": {"phase": "Running", "restartCount": 0, "ready": true, "msg": "", "n": "10", "startTime": "2026-11-27T20:30:05Z"},
        });
        let want = "\
kind: Pod
metadata:
  labels: {}
  name: web
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
        assert_eq!(to_string(&v), want);
    }
}
