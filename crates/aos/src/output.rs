//! Output formatting shared by the commands: kubectl's object names, tables, JSON and YAML.

use std::fmt::Write as _;
use std::io::Write as _;

use aos_types::ResourceType;
use serde_json::{Value, json};

/// Like `print!`, but ending the process quietly when the reader went away
/// (`aos get pods | head -1`) instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!($($arg)*)) };
}

/// Like `println!`, with the same broken-pipe handling as `out!`.
macro_rules! outln {
    () => { $crate::output::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Write to stdout; on a closed pipe exit with 141 (128 + SIGPIPE), as a tool killed by
/// SIGPIPE would; on another error report it and exit 1.
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// `deployment.apps`, `namespace`, `virtualservice.networking.istio.io`: how kubectl names a
/// kind in `TYPE/NAME` output.
pub(crate) fn kind_ref(rt: &ResourceType) -> String {
    qualify(rt.singular, rt.group)
}

/// `deployments.apps`, `namespaces`: how kubectl names a resource in NotFound messages.
pub(crate) fn resource_ref(rt: &ResourceType) -> String {
    qualify(rt.plural, rt.group)
}

fn qualify(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

/// `deployment.apps/agent-registry`.
pub(crate) fn object_ref(rt: &ResourceType, name: &str) -> String {
    format!("{}/{name}", kind_ref(rt))
}

/// The output formats of `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Extra columns.
    Wide,
    /// The API object(s) as JSON.
    Json,
    /// The API object(s) as YAML.
    Yaml,
    /// `kind.group/name` per object.
    Name,
}

/// Pretty JSON with a final newline.
pub(crate) fn to_json(value: &Value) -> anyhow::Result<String> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    Ok(s)
}

/// YAML, ending in a newline.
pub(crate) fn to_yaml(value: &Value) -> anyhow::Result<String> {
    let mut s =
        serde_saphyr::to_string(value).map_err(|e| anyhow::anyhow!("cannot render YAML: {e}"))?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

/// A `List` of objects as `kubectl get -o json|yaml` prints several.
pub(crate) fn list_of(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
}

/// Make sure a listed item carries `apiVersion` and `kind` (list items on the wire may not).
pub(crate) fn with_type(rt: &ResourceType, mut obj: Value) -> Value {
    if let Some(map) = obj.as_object_mut()
        && (!map.contains_key("apiVersion") || !map.contains_key("kind"))
    {
        let mut typed = serde_json::Map::new();
        typed.insert("apiVersion".into(), Value::String(rt.api_version()));
        typed.insert("kind".into(), Value::String(rt.kind.to_string()));
        for (k, v) in std::mem::take(map) {
            if k != "apiVersion" && k != "kind" {
                typed.insert(k, v);
            }
        }
        *map = typed;
    }
    obj
}

/// Text of one table cell as kubectl shows it.
pub(crate) fn cell_text(cell: &Value) -> String {
    match cell {
        Value::Null => "<none>".to_string(),
        Value::String(s) if s.is_empty() => "<none>".to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Rows of text under headers, printed as kubectl does: left-aligned, columns three spaces
/// apart, no trailing spaces.
#[derive(Debug, Default)]
pub(crate) struct TextTable {
    /// Header cells, already upper-cased.
    pub(crate) headers: Vec<String>,
    /// Rows of cells.
    pub(crate) rows: Vec<Vec<String>>,
}

impl TextTable {
    /// Render, with or without the header line.
    pub(crate) fn render(&self, with_headers: bool) -> String {
        let widths = self.widths(with_headers);
        let all_rows = with_headers
            .then_some(&self.headers)
            .into_iter()
            .chain(self.rows.iter());
        let mut out = String::new();
        for row in all_rows {
            out.push_str(&render_row(&widths, row));
        }
        out
    }

    /// The width of every column (headers counted when `with_headers`).
    pub(crate) fn widths(&self, with_headers: bool) -> Vec<usize> {
        let columns = self
            .headers
            .len()
            .max(self.rows.iter().map(Vec::len).max().unwrap_or(0));
        let mut widths = vec![0usize; columns];
        let all_rows = with_headers
            .then_some(&self.headers)
            .into_iter()
            .chain(self.rows.iter());
        for row in all_rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        widths
    }
}

/// One line of a table, padded to `widths` (a cell wider than its column pushes the rest right).
pub(crate) fn render_row(widths: &[usize], row: &[String]) -> String {
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        if i + 1 < row.len() {
            let width = widths.get(i).copied().unwrap_or(0);
            let _ = write!(line, "{cell:<width$}   ");
        } else {
            line.push_str(cell);
        }
    }
    let mut line = line.trim_end().to_string();
    line.push('\n');
    line
}

/// Options for turning a server `Table` into text.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TableOptions {
    /// Show columns of priority > 0.
    pub(crate) wide: bool,
    /// Prepend a NAMESPACE column (from each row's object metadata).
    pub(crate) with_namespace: bool,
    /// Prefix the name column with `kind.group/`, as when several kinds are printed.
    pub(crate) kind_prefix: Option<&'static ResourceType>,
}

/// Convert a `meta.k8s.io/v1` `Table` into text rows.
pub(crate) fn table_from_server(table: &Value, opts: TableOptions) -> TextTable {
    let empty = Vec::new();
    let columns = table
        .get("columnDefinitions")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let shown: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| opts.wide || c.get("priority").and_then(Value::as_i64).unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let name_column = columns
        .iter()
        .position(|c| c.get("format").and_then(Value::as_str) == Some("name"))
        .unwrap_or(0);
    let mut out = TextTable::default();
    if opts.with_namespace {
        out.headers.push("NAMESPACE".into());
    }
    for &i in &shown {
        let name = columns[i]
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        out.headers.push(header_text(name));
    }
    for row in table
        .get("rows")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
    {
        let cells = row.get("cells").and_then(Value::as_array).unwrap_or(&empty);
        let mut line = Vec::with_capacity(shown.len() + 1);
        if opts.with_namespace {
            let ns = row
                .pointer("/object/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            line.push(ns.to_string());
        }
        for &i in &shown {
            let mut text = cells
                .get(i)
                .map(cell_text)
                .unwrap_or_else(|| "<none>".into());
            if i == name_column
                && let Some(rt) = opts.kind_prefix
            {
                text = object_ref(rt, &text);
            }
            line.push(text);
        }
        out.rows.push(line);
    }
    out
}

/// `Ready` → `READY`, `Nominated Node` → `NOMINATED NODE`.
fn header_text(name: &str) -> String {
    name.to_uppercase()
}

/// A duration in kubectl's short human form: `45s`, `5m10s`, `3h`, `2d3h`, `120d`.
pub(crate) fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let rest = s % 60;
        return if rest == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rest}s")
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = s / 3600;
    if h < 8 {
        let rest = m % 60;
        return if rest == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rest}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    let d = h / 24;
    if d < 8 {
        let rest = h % 24;
        return if rest == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rest}h")
        };
    }
    if d < 365 * 2 {
        return format!("{d}d");
    }
    format!("{}y{}d", d / 365, d % 365)
}

/// Age of an RFC 3339 timestamp relative to now, as `human_duration`; `<unknown>` when absent.
pub(crate) fn age(timestamp: Option<&str>) -> String {
    let Some(ts) = timestamp.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".to_string();
    };
    let seconds = jiff::Timestamp::now().as_second() - ts.as_second();
    human_duration(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_aligned_three_spaces_apart() {
        let t = TextTable {
            headers: vec!["NAME".into(), "READY".into(), "AGE".into()],
            rows: vec![
                vec!["agent-registry".into(), "0/3".into(), "5s".into()],
                vec!["x".into(), "10/10".into(), "2d".into()],
            ],
        };
        assert_eq!(
            t.render(true),
            "NAME             READY   AGE\nagent-registry   0/3     5s\nx                10/10   2d\n"
        );
    }

    #[test]
    fn server_table_respects_priority_namespace_and_prefix() {
        let table = json!({
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "priority": 0},
                {"name": "Ready", "type": "string", "format": "", "priority": 0},
                {"name": "Node", "type": "string", "format": "", "priority": 1}
            ],
            "rows": [{"cells": ["p", "0/1", null], "object": {"metadata": {"name": "p", "namespace": "ns"}}}]
        });
        let narrow = table_from_server(&table, TableOptions::default());
        assert_eq!(narrow.render(true), "NAME   READY\np      0/1\n");
        let wide = table_from_server(
            &table,
            TableOptions {
                wide: true,
                with_namespace: true,
                kind_prefix: None,
            },
        );
        assert_eq!(
            wide.render(true),
            "NAMESPACE   NAME   READY   NODE\nns          p      0/1     <none>\n"
        );
    }

    #[test]
    fn durations_read_like_kubectl() {
        for (s, want) in [
            (5, "5s"),
            (119, "119s"),
            (130, "2m10s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (9 * 3600, "9h"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
        ] {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }
}
