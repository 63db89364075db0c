//! The part of kubectl's JSONPath that `wait --for=jsonpath=…` needs: fields
//! (`.status.phase`, `['app.kubernetes.io/name']`), indexes (`[0]`, `[-1]`),
//! every element (`[*]`) and filters (`[?(@.type=="Ready")]`), in kubectl's
//! relaxed form (`{.status.phase}`, `.status.phase` or `status.phase`).

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// A field of an object.
    Field(String),
    /// An element of a list (negative: from its end).
    Index(i64),
    /// Every element of a list (or value of an object).
    All,
    /// The elements of a list whose `path` is (or is not) `value`.
    Filter {
        path: Vec<Step>,
        value: String,
        equal: bool,
    },
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Path(Vec<Step>);

/// `{EXPR}=VALUE` (or `EXPR=VALUE`) split at the `=` after the expression;
/// the value is None without one.
pub fn split_value(text: &str) -> (&str, Option<&str>) {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{' | '[' | '(') => depth += 1,
            (None, '}' | ']' | ')') => depth -= 1,
            (None, '=') if depth == 0 => return (&text[..i], Some(&text[i + 1..])),
            _ => {}
        }
    }
    (text, None)
}

impl Path {
    /// Parse kubectl's relaxed form (RelaxedJSONPathExpression).
    pub fn parse(text: &str) -> Result<Path, String> {
        // The quotes a shell would have taken away (`jsonpath='{…}'=v`).
        let mut t = text.trim();
        t = unquote(t).unwrap_or(t);
        if t.is_empty() {
            return Err("jsonpath expression cannot be empty".into());
        }
        if let Some(inner) = t.strip_prefix('{') {
            t = inner
                .strip_suffix('}')
                .ok_or_else(|| format!("unexpected path string, expected a 'name1.name2' or '.name1.name2' or '{{name1.name2}}' or '{{.name1.name2}}': {text}"))?;
        }
        let t = t.strip_prefix('.').unwrap_or(t);
        let steps = parse_steps(t).map_err(|e| format!("parse jsonpath {text:?}: {e}"))?;
        if steps.is_empty() {
            return Err("jsonpath expression cannot be empty".into());
        }
        Ok(Path(steps))
    }

    /// Every value the path leads to in `value` (none for a missing key:
    /// kubectl's wait allows missing keys).
    pub fn find<'a>(&self, value: &'a serde_json::Value) -> Vec<&'a serde_json::Value> {
        find(&self.0, value)
    }
}

fn parse_steps(mut t: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    while !t.is_empty() {
        if let Some(rest) = t.strip_prefix('[') {
            let end = closing(rest).ok_or("unclosed [")?;
            let inner = rest[..end].trim();
            t = &rest[end + 1..];
            steps.push(bracket(inner)?);
        } else {
            let t2 = t.strip_prefix('.').unwrap_or(t);
            let end = t2.find(['.', '[']).unwrap_or(t2.len());
            let name = &t2[..end];
            if name.is_empty() {
                return Err(format!("empty field name at {t:?}"));
            }
            steps.push(if name == "*" {
                Step::All
            } else {
                Step::Field(name.to_string())
            });
            t = &t2[end..];
        }
    }
    Ok(steps)
}

/// Where the `]` closing a bracket opened before `text` is.
fn closing(text: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') if depth == 0 => return Some(i),
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
}

fn bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::All);
    }
    if let Some(name) = unquote(inner) {
        return Ok(Step::Field(name.to_string()));
    }
    if let Ok(i) = inner.parse::<i64>() {
        return Ok(Step::Index(i));
    }
    let filter = inner
        .strip_prefix("?(")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            format!("unsupported [{inner}] (fields, indexes, [*] and [?(@.x==\"y\")] are)")
        })?;
    let (left, right, equal) = match (filter.split_once("=="), filter.split_once("!=")) {
        (Some((l, r)), _) => (l, r, true),
        (None, Some((l, r))) => (l, r, false),
        _ => return Err(format!("unsupported filter {filter:?} (== and != are)")),
    };
    let left = left
        .trim()
        .strip_prefix('@')
        .ok_or_else(|| format!("a filter starts with @: {filter:?}"))?;
    let right = right.trim();
    let value = unquote(right).unwrap_or(right).to_string();
    Ok(Step::Filter {
        path: parse_steps(left.strip_prefix('.').unwrap_or(left))?,
        value,
        equal,
    })
}

fn find<'a>(steps: &[Step], value: &'a serde_json::Value) -> Vec<&'a serde_json::Value> {
    let Some((step, rest)) = steps.split_first() else {
        return vec![value];
    };
    let next: Vec<&serde_json::Value> = match step {
        Step::Field(name) => value.get(name.as_str()).into_iter().collect(),
        Step::Index(i) => value
            .as_array()
            .and_then(|a| {
                let i = if *i < 0 { a.len() as i64 + i } else { *i };
                usize::try_from(i).ok().and_then(|i| a.get(i))
            })
            .into_iter()
            .collect(),
        Step::All => match value {
            serde_json::Value::Array(a) => a.iter().collect(),
            serde_json::Value::Object(o) => o.values().collect(),
            _ => Vec::new(),
        },
        Step::Filter {
            path,
            value: want,
            equal,
        } => value
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                let is = find(path, e)
                    .first()
                    .and_then(|v| text(v).ok())
                    .is_some_and(|t| &t == want);
                is == *equal
            })
            .collect(),
    };
    next.into_iter().flat_map(|v| find(rest, v)).collect()
}

/// A value as kubectl's wait prints it to compare it (Go's `%v`); a list or
/// an object is an error, as there.
pub fn text(value: &serde_json::Value) -> Result<String, String> {
    match value {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        serde_json::Value::Null => Ok("<nil>".into()),
        _ => Err("jsonpath leads to a nested object or list which is not supported".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_forms_parse_alike() {
        let want = Path::parse("{.status.phase}").unwrap();
        assert_eq!(Path::parse(".status.phase").unwrap(), want);
        assert_eq!(Path::parse("status.phase").unwrap(), want);
        assert!(Path::parse("{}").is_err());
        assert!(Path::parse("{.a[?(@.x<3)]}").is_err());
    }

    #[test]
    fn paths_find_fields_indexes_and_filters() {
        let v = serde_json::json!({
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Initialized", "status": "False"}
            ]}
        });
        let one = |p: &str| -> Vec<String> {
            Path::parse(p)
                .unwrap()
                .find(&v)
                .into_iter()
                .map(|v| text(v).unwrap_or_else(|e| e))
                .collect()
        };
        assert_eq!(one("{.metadata.labels['app.kubernetes.io/name']}"), ["web"]);
        assert_eq!(one("{.status.conditions[-1].type}"), ["Initialized"]);
        assert_eq!(one("{.status.conditions[*].status}"), ["True", "False"]);
        assert_eq!(
            one("{.status.conditions[?(@.type=='Ready')].status}"),
            ["True"]
        );
        assert_eq!(
            one("{.status.conditions[?(@.type!=\"Ready\")].type}"),
            ["Initialized"]
        );
        assert!(one("{.status.podIP}").is_empty());
        assert!(one("{.status.conditions[5]}").is_empty());
    }

    #[test]
    fn the_value_is_split_after_the_expression() {
        assert_eq!(
            split_value("{.status.phase}=Running"),
            ("{.status.phase}", Some("Running"))
        );
        assert_eq!(
            split_value("{.a[?(@.type==\"Ready\")].status}=True"),
            ("{.a[?(@.type==\"Ready\")].status}", Some("True"))
        );
        assert_eq!(split_value(".status.phase"), (".status.phase", None));
        assert_eq!(split_value("{.x}="), ("{.x}", Some("")));
    }
}
