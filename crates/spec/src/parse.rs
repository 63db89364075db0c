//! Strict parsing of multi-document YAML (or JSON) into Pods, ConfigMaps and Secrets.
//!
//! The text is read with `saphyr-parser`'s event stream into a `serde_json::Value` per
//! document, recording the line of every node by its field path. The typed object is
//! then decoded from that value through `serde_ignored` (unknown fields, which
//! k8s-openapi would silently drop) and `serde_path_to_error` (the path of a type
//! error); both paths are turned into lines through the recorded positions, so every
//! error says where it is.
//!
//! Plain scalars are resolved the way the API server's YAML front end does
//! (sigs.k8s.io/yaml on go-yaml v2, YAML 1.1 rules): `yes`/`on`/`y` are booleans,
//! `0644` is octal, `1e3` is a number. A manifest that `kubectl apply` rejects with
//! "cannot unmarshal bool into ... of type string" is rejected here too.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, StrInput, Tag};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{join_path, FieldError, Object, SpecErrors};

/// Parses every document of `text` (YAML or JSON, documents separated by `---`) into
/// objects, strictly: unknown fields, type errors, unsupported kinds and malformed YAML
/// are all reported, each with its field path and line. Empty documents are skipped.
/// `source` names the text in errors (usually the file name). No defaults are applied
/// and nothing is validated beyond the types: see [`crate::load`] for the whole path.
pub fn parse_documents(text: &str, source: &str) -> Result<Vec<Object>, SpecErrors> {
    let parsed = parse(text);
    if parsed.errors.is_empty() {
        Ok(parsed.objects.into_iter().map(|o| o.object).collect())
    } else {
        let errors = parsed.located(parsed.errors.clone());
        Err(SpecErrors::new(source, errors))
    }
}

/// One object found in the text, with where it came from.
pub(crate) struct Found {
    pub(crate) object: Object,
    /// 1-based index of the document in the stream.
    pub(crate) document: usize,
    /// Path of the object inside its document (`items[2]` for a List item, else empty).
    pub(crate) base: String,
}

/// The result of reading a whole text: objects and the errors met, by document.
pub(crate) struct Parsed {
    pub(crate) objects: Vec<Found>,
    pub(crate) errors: Vec<(usize, FieldError)>,
    lines: HashMap<usize, Lines>,
}

impl Parsed {
    /// Fills in the line of each error from its document's positions.
    pub(crate) fn located(&self, errors: Vec<(usize, FieldError)>) -> Vec<FieldError> {
        let mut errors = errors;
        errors.sort_by_key(|(document, _)| *document);
        errors
            .into_iter()
            .map(|(document, mut error)| {
                if error.line.is_none() {
                    error.line = self.lines.get(&document).and_then(|l| l.line(&error.path));
                }
                error
            })
            .collect()
    }
}

pub(crate) fn parse(text: &str) -> Parsed {
    let (documents, mut errors) = Reader::new(text).documents();
    let mut objects = Vec::new();
    let mut lines = HashMap::new();
    for document in documents {
        let mut doc_errors = Vec::new();
        match &document.value {
            Value::Null => {}
            Value::Object(_) => dispatch(
                &document.value,
                "",
                document.index,
                true,
                &mut objects,
                &mut doc_errors,
            ),
            other => doc_errors.push(FieldError::new(
                "",
                format!(
                    "document {} must be an object with apiVersion and kind, not {}",
                    document.index,
                    json_kind(other)
                ),
            )),
        }
        errors.extend(doc_errors.into_iter().map(|e| (document.index, e)));
        lines.insert(document.index, document.lines);
    }
    Parsed {
        objects,
        errors,
        lines,
    }
}

fn dispatch(
    value: &Value,
    base: &str,
    document: usize,
    allow_list: bool,
    objects: &mut Vec<Found>,
    errors: &mut Vec<FieldError>,
) {
    let Value::Object(map) = value else {
        errors.push(FieldError::new(
            base,
            format!("must be an object, not {}", json_kind(value)),
        ));
        return;
    };
    let text_field = |name: &str, errors: &mut Vec<FieldError>| match map.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::String(_)) | Some(Value::Null) | None => {
            errors.push(FieldError::new(
                join_path(base, name),
                format!("required value (document {document})"),
            ));
            None
        }
        Some(other) => {
            errors.push(FieldError::new(
                join_path(base, name),
                format!("must be a string, not {}", json_kind(other)),
            ));
            None
        }
    };
    let api_version = text_field("apiVersion", errors);
    let kind = text_field("kind", errors);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        return;
    };
    let found = |object| Found {
        object,
        document,
        base: base.to_string(),
    };
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Pod") => {
            if let Some(pod) = decode::<Pod>(value, base, errors) {
                objects.push(found(Object::Pod(pod)));
            }
        }
        ("v1", "ConfigMap") => {
            if let Some(cm) = decode::<ConfigMap>(value, base, errors) {
                objects.push(found(Object::ConfigMap(cm)));
            }
        }
        ("v1", "Secret") => {
            if let Some(secret) = decode::<Secret>(value, base, errors) {
                objects.push(found(Object::Secret(secret)));
            }
        }
        ("v1", "PersistentVolumeClaim") => {
            if let Some(claim) = decode::<PersistentVolumeClaim>(value, base, errors) {
                objects.push(found(Object::PersistentVolumeClaim(claim)));
            }
        }
        ("v1", "List") if allow_list => {
            for key in map.keys() {
                if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "items") {
                    errors.push(FieldError::new(join_path(base, key), "unknown field"));
                }
            }
            match map.get("items") {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let path = format!("{}[{i}]", join_path(base, "items"));
                        dispatch(item, &path, document, false, objects, errors);
                    }
                }
                Some(other) => errors.push(FieldError::new(
                    join_path(base, "items"),
                    format!("must be a list, not {}", json_kind(other)),
                )),
            }
        }
        (_, "List") if !allow_list => errors.push(FieldError::new(
            join_path(base, "kind"),
            format!("a List may not contain a List (document {document})"),
        )),
        (_, "Pod" | "ConfigMap" | "Secret" | "PersistentVolumeClaim" | "List") => errors.push(FieldError::new(
            join_path(base, "apiVersion"),
            format!("unsupported apiVersion {api_version:?} for kind {kind} in document {document}: want \"v1\""),
        )),
        _ => errors.push(FieldError::new(
            join_path(base, "kind"),
            format!(
                "unsupported kind {kind:?} (apiVersion {api_version:?}) in document {document}: podrun accepts v1 Pod, ConfigMap, Secret, PersistentVolumeClaim and List"
            ),
        )),
    }
}

/// Decodes a typed object, reporting unknown fields and the first type error by path.
fn decode<T: DeserializeOwned>(
    value: &Value,
    base: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
    let result: Result<T, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record));
    errors.extend(
        unknown
            .into_iter()
            .map(|path| FieldError::new(join_path(base, &path), "unknown field")),
    );
    match result {
        Ok(object) => Some(object),
        Err(error) => {
            let mut path = String::new();
            for segment in error.path().iter() {
                match segment {
                    serde_path_to_error::Segment::Seq { index } => {
                        path = format!("{path}[{index}]");
                    }
                    serde_path_to_error::Segment::Map { key } => path = join_path(&path, key),
                    serde_path_to_error::Segment::Enum { .. } => {}
                    serde_path_to_error::Segment::Unknown => path = join_path(&path, "?"),
                }
            }
            let message = error.into_inner().to_string();
            let (path, message) = match message.strip_prefix("missing field `") {
                Some(field) => (
                    join_path(&path, field.trim_end_matches('`')),
                    "required value".to_string(),
                ),
                None => (path, explain_type_error(message)),
            };
            errors.push(FieldError::new(join_path(base, &path), message));
            None
        }
    }
}

/// Adds the usual fix to the commonest YAML mistake: an unquoted number or boolean
/// where the API wants a string (`value: 80`, `version: 1.0`, `enabled: yes`).
fn explain_type_error(message: String) -> String {
    let scalar = [
        "invalid type: integer",
        "invalid type: floating point",
        "invalid type: boolean",
    ];
    if message.ends_with("expected a string") && scalar.iter().any(|p| message.starts_with(p)) {
        format!("{message} (quote the value to make it a string)")
    } else {
        message
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    match path {
        serde_ignored::Path::Root => String::new(),
        serde_ignored::Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        serde_ignored::Path::Map { parent, key } => join_path(&ignored_path(parent), key),
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The line of each node of one document, by field path.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    by_path: HashMap<String, usize>,
}

impl Lines {
    /// The line of `path`, or of its nearest ancestor present in the document.
    pub(crate) fn line(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.by_path.get(path) {
                return Some(*line);
            }
            if path.is_empty() {
                return None;
            }
            path = parent_path(path);
        }
    }
}

fn parent_path(path: &str) -> &str {
    if path.ends_with(']') {
        if let Some(i) = path.rfind('[') {
            return &path[..i];
        }
    }
    path.rfind('.').map_or("", |i| &path[..i])
}

struct Document {
    index: usize,
    value: Value,
    lines: Lines,
}

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 200;
/// Alias expansion budget (values copied), against "billion laughs" documents.
const MAX_ALIAS_NODES: usize = 1_000_000;

struct Reader<'a> {
    parser: Parser<'a, StrInput<'a>>,
    anchors: HashMap<usize, Value>,
    lines: HashMap<String, usize>,
    /// Problems that do not stop reading (duplicate keys).
    errors: Vec<FieldError>,
    alias_budget: usize,
    last_line: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Self {
        Reader {
            parser: Parser::new_from_str(text),
            anchors: HashMap::new(),
            lines: HashMap::new(),
            errors: Vec::new(),
            alias_budget: MAX_ALIAS_NODES,
            last_line: 1,
        }
    }

    fn documents(mut self) -> (Vec<Document>, Vec<(usize, FieldError)>) {
        let mut documents = Vec::new();
        let mut errors = Vec::new();
        let mut index = 0;
        loop {
            let result = self.next().and_then(|(event, _)| match event {
                Event::StreamStart => Ok(true),
                Event::StreamEnd => Ok(false),
                Event::DocumentStart(_) => {
                    index += 1;
                    self.anchors.clear();
                    let value = self
                        .next()
                        .and_then(|(e, s)| self.node(e, s, String::new(), 0))?;
                    match self.next()? {
                        (Event::DocumentEnd, _) => {}
                        (other, span) => return Err(unexpected(&other, span)),
                    }
                    documents.push(Document {
                        index,
                        value,
                        lines: Lines {
                            by_path: std::mem::take(&mut self.lines),
                        },
                    });
                    Ok(true)
                }
                other => Err(unexpected(&other, Span::default())),
            });
            errors.extend(self.errors.drain(..).map(|e| (index.max(1), e)));
            match result {
                Ok(true) => {}
                Ok(false) => break,
                Err(mut error) => {
                    error.line = error.line.or(Some(self.last_line));
                    errors.push((index.max(1), error));
                    break;
                }
            }
        }
        (documents, errors)
    }

    fn next(&mut self) -> Result<(Event<'a>, Span), FieldError> {
        match self.parser.next_event() {
            Some(Ok((event, span))) => {
                self.last_line = span.start.line();
                Ok((event, span))
            }
            Some(Err(error)) => Err(scan_error(&error)),
            None => Err(FieldError::new("", "invalid YAML: unexpected end of input")),
        }
    }

    fn node(
        &mut self,
        event: Event<'a>,
        span: Span,
        path: String,
        depth: usize,
    ) -> Result<Value, FieldError> {
        let line = span.start.line();
        if depth > MAX_DEPTH {
            return Err(FieldError::at(path, line, "nested too deeply"));
        }
        self.lines.entry(path.clone()).or_insert(line);
        let (value, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve(&text, style, tag.as_deref())
                    .map_err(|m| FieldError::at(path.clone(), line, m))?;
                (value, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    let item_path = format!("{path}[{}]", items.len());
                    items.push(self.node(event, span, item_path, depth + 1)?);
                }
                (Value::Array(items), anchor)
            }
            Event::MappingStart(anchor, _) => (self.mapping(&path, depth)?, anchor),
            Event::Alias(id) => (self.alias(id, &path, line)?, 0),
            other => return Err(unexpected(&other, span)),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        Ok(value)
    }

    fn mapping(&mut self, path: &str, depth: usize) -> Result<Value, FieldError> {
        let mut map = Map::new();
        let mut merged: Vec<Map<String, Value>> = Vec::new();
        loop {
            let (event, span) = self.next()?;
            let key_line = span.start.line();
            let (key, is_merge) = match event {
                Event::MappingEnd => break,
                Event::Scalar(text, style, anchor, tag) => {
                    let value = resolve(&text, style, tag.as_deref())
                        .map_err(|m| FieldError::at(join_path(path, &text), key_line, m))?;
                    if anchor != 0 {
                        self.anchors.insert(anchor, value.clone());
                    }
                    let merge = style == ScalarStyle::Plain && text == "<<";
                    (key_string(value), merge)
                }
                Event::Alias(id) => match self.alias(id, path, key_line)? {
                    Value::Array(_) | Value::Object(_) => {
                        return Err(FieldError::at(
                            path,
                            key_line,
                            "mapping keys must be scalars",
                        ))
                    }
                    value => (key_string(value), false),
                },
                _ => {
                    return Err(FieldError::at(
                        path,
                        key_line,
                        "mapping keys must be scalars",
                    ))
                }
            };
            let (event, span) = self.next()?;
            if is_merge {
                match self.node(event, span, path.to_string(), depth + 1)? {
                    Value::Object(m) => merged.push(m),
                    Value::Array(items) if items.iter().all(Value::is_object) => {
                        merged.extend(items.into_iter().filter_map(|v| match v {
                            Value::Object(m) => Some(m),
                            _ => None,
                        }));
                    }
                    _ => {
                        return Err(FieldError::at(
                            path,
                            key_line,
                            "the merge key << needs a mapping or a list of mappings",
                        ))
                    }
                }
                continue;
            }
            let child = join_path(path, &key);
            if map.contains_key(&key) {
                self.errors
                    .push(FieldError::at(child.clone(), key_line, "duplicate field"));
            }
            self.lines.entry(child.clone()).or_insert(key_line);
            let value = self.node(event, span, child, depth + 1)?;
            map.insert(key, value);
        }
        // Explicit keys win over merged ones, and earlier merge sources over later ones.
        for source in merged {
            for (key, value) in source {
                map.entry(key).or_insert(value);
            }
        }
        Ok(Value::Object(map))
    }

    fn alias(&mut self, id: usize, path: &str, line: usize) -> Result<Value, FieldError> {
        let value = self
            .anchors
            .get(&id)
            .ok_or_else(|| FieldError::at(path, line, "invalid YAML: unknown anchor"))?
            .clone();
        self.alias_budget = self
            .alias_budget
            .checked_sub(count_nodes(&value))
            .ok_or_else(|| FieldError::at(path, line, "too many alias expansions"))?;
        Ok(value)
    }
}

fn count_nodes(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

fn scan_error(error: &ScanError) -> FieldError {
    let marker = error.marker();
    FieldError {
        path: String::new(),
        message: format!(
            "invalid YAML at column {}: {}",
            marker.col() + 1,
            error.info()
        ),
        line: Some(marker.line().max(1)),
    }
}

fn unexpected(event: &Event<'_>, span: Span) -> FieldError {
    FieldError {
        path: String::new(),
        message: format!("invalid YAML: unexpected {event:?}"),
        line: (span.start.line() > 0).then_some(span.start.line()),
    }
}

/// JSON object keys are strings; non-string YAML keys become their text, as
/// sigs.k8s.io/yaml does (`true`, `80`).
fn key_string(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// Resolves a scalar the way go-yaml v2 does for sigs.k8s.io/yaml (YAML 1.1 core).
fn resolve(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    match tag {
        Some(tag) if tag.is_yaml_core_schema() => match tag.suffix.as_str() {
            "bool" | "int" | "float" | "null" => return resolve_plain(text),
            _ => return Ok(Value::String(text.to_string())),
        },
        Some(_) => return Ok(Value::String(text.to_string())),
        None if style != ScalarStyle::Plain => return Ok(Value::String(text.to_string())),
        None => {}
    }
    resolve_plain(text)
}

fn resolve_plain(text: &str) -> Result<Value, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Ok(Value::Bool(true))
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Ok(Value::Bool(false))
        }
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
        | "-.inf" | "-.Inf" | "-.INF" => {
            return Err(format!(
                "{text} has no JSON form (quote the value to make it a string)"
            ))
        }
        _ => {}
    }
    if !text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.')) {
        return Ok(Value::String(text.to_string()));
    }
    let plain: String = text.chars().filter(|&c| c != '_').collect();
    if let Some(int) = parse_go_int(&plain) {
        return Ok(int);
    }
    if is_yaml_float(&plain) {
        if let Ok(float) = plain.parse::<f64>() {
            // Go's JSON encoder writes integral floats without a fraction (80.0 → 80).
            if float.fract() == 0.0 && float.abs() < 9.0e18 {
                return Ok(Value::from(float as i64));
            }
            if let Some(number) = serde_json::Number::from_f64(float) {
                return Ok(Value::Number(number));
            }
        }
    }
    Ok(Value::String(text.to_string()))
}

/// Go's `strconv.ParseInt(s, 0, 64)` then `ParseUint`: `0x1F`, `0o17`, `017`, `0b101`.
fn parse_go_int(s: &str) -> Option<Value> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(body, radix).ok()?;
    if negative {
        let value = i128::try_from(magnitude).ok()?.checked_neg()?;
        i64::try_from(value).ok().map(Value::from)
    } else if let Ok(value) = i64::try_from(magnitude) {
        Some(Value::from(value))
    } else {
        u64::try_from(magnitude).ok().map(Value::from)
    }
}

/// go-yaml v2's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => !frac.is_empty() && all_digits(frac),
        Some((int, frac)) => all_digits(int) && all_digits(frac),
        None => !mantissa.is_empty() && all_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests;
