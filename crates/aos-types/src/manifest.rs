//! Multi-document YAML and JSON manifests, with positions for errors.
//!
//! YAML goes through `serde-saphyr` with tight budgets (nesting depth, alias
//! replay, node count), so a hostile file fails with an error instead of
//! exhausting the stack or memory. Integers stay integers, quoted scalars stay
//! strings.

use std::fmt;

use serde_json::Value;

/// One document of a manifest file.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// 0-based index of the document in its file, counting only non-empty documents
    /// (items of a `List` share their document's index).
    pub index: usize,
    /// 1-based line where the document's content starts (after any `---` and comments).
    pub line: usize,
    /// The document as JSON.
    pub value: Value,
}

/// A manifest that could not be parsed. Displays as `FILE:LINE:COLUMN: MESSAGE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The file name as given by the caller (`-` for stdin).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// The largest manifest accepted, in bytes (the Kubernetes API takes at most 3 MiB per request).
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;
/// The deepest nesting of mappings and sequences accepted.
pub const MAX_DEPTH: usize = 64;
/// The most YAML nodes a file may produce, aliases included.
const MAX_NODES: usize = 500_000;
/// The most events aliases may replay in one file (bounds billion-laughs expansion).
const MAX_ALIAS_REPLAY: usize = 100_000;

/// Parse a file of one or more YAML documents (or one JSON document), named
/// `file` for errors. Empty documents are skipped; `kind: List` is expanded into its items.
pub fn parse_manifests(file: &str, text: &str) -> Result<Vec<Document>, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ParseError {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: format!(
                "the manifest is {} bytes, over the limit of {MAX_MANIFEST_BYTES} bytes",
                text.len()
            ),
        });
    }
    let roots = if text.trim_start().starts_with('{') {
        // JSON (a single object or a stream of them). A flow-style YAML mapping
        // also starts with `{`: fall back to YAML, but report the JSON error
        // when both fail, since that is what the author most likely wrote.
        match parse_json(text) {
            Ok(roots) => roots,
            Err((line, column, message)) => {
                let json_error = || ParseError {
                    file: file.to_string(),
                    line,
                    column,
                    message: message.clone(),
                };
                // A `.json` file is JSON, as kubectl decodes it.
                if file.ends_with(".json") {
                    return Err(json_error());
                }
                parse_yaml(text).map_err(|_| json_error())?
            }
        }
    } else {
        parse_yaml(text).map_err(|(line, column, message)| ParseError {
            file: file.to_string(),
            line,
            column,
            message,
        })?
    };
    let mut documents = Vec::new();
    for (index, (line, value)) in roots.into_iter().enumerate() {
        expand(index, line, value, &mut documents);
    }
    Ok(documents)
}

/// Append `value`, or its items when it is a `List`.
fn expand(index: usize, line: usize, value: Value, out: &mut Vec<Document>) {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || (k.ends_with("List") && value.get("items").is_some()))
        && value.get("items").is_none_or(Value::is_array);
    if !is_list {
        out.push(Document { index, line, value });
        return;
    }
    let Value::Object(mut map) = value else {
        return;
    };
    if let Some(Value::Array(items)) = map.remove("items") {
        for item in items.into_iter().filter(|v| !v.is_null()) {
            out.push(Document {
                index,
                line,
                value: item,
            });
        }
    }
}

type Position = (usize, usize, String);

fn parse_json(text: &str) -> Result<Vec<(usize, Value)>, Position> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut roots = Vec::new();
    loop {
        let offset = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(Value::Null)) => {}
            Some(Ok(value)) => {
                let start = text[offset..]
                    .find(|c: char| !c.is_whitespace())
                    .map_or(offset, |i| offset + i);
                roots.push((line_of(text, start), value));
            }
            Some(Err(e)) => {
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let full = e.to_string();
                let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
                return Err((e.line().max(1), e.column().max(1), message));
            }
        }
    }
    Ok(roots)
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_documents: 10_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_REPLAY,
            max_replay_stack_depth: 16,
            max_alias_expansions_per_anchor: 10_000,
        },
    }
}

fn parse_yaml(text: &str) -> Result<Vec<(usize, Value)>, Position> {
    let docs: Vec<serde_saphyr::Spanned<Value>> =
        serde_saphyr::from_multiple_with_options(text, yaml_options()).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line() as usize, l.column() as usize))
                .unwrap_or((1, 1));
            let full = e.without_snippet().to_string();
            let suffix = format!(" at line {line}, column {column}");
            let message = full.strip_suffix(&suffix).unwrap_or(&full);
            let message = message.strip_prefix("error: ").unwrap_or(message);
            (line.max(1), column.max(1), message.to_string())
        })?;
    Ok(docs
        .into_iter()
        .filter(|d| !d.value.is_null())
        .map(|d| (d.referenced.line().max(1) as usize, d.value))
        .collect())
}

#[cfg(test)]
mod tests;
