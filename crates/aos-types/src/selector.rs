//! Label selectors and field selectors, as in `?labelSelector=` and `?fieldSelector=`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::ResourceType;
use crate::admit::names;

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Equals(k, v) => labels.get(k) == Some(v),
            Self::NotEquals(k, v) => labels.get(k) != Some(v),
            Self::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Self::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Self::Exists(k) => labels.contains_key(k),
            Self::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |vs: &BTreeSet<String>| vs.iter().cloned().collect::<Vec<_>>().join(",");
        match self {
            Self::Equals(k, v) => write!(f, "{k}={v}"),
            Self::NotEquals(k, v) => write!(f, "{k}!={v}"),
            Self::In(k, vs) => write!(f, "{k} in ({})", set(vs)),
            Self::NotIn(k, vs) => write!(f, "{k} notin ({})", set(vs)),
            Self::Exists(k) => write!(f, "{k}"),
            Self::DoesNotExist(k) => write!(f, "!{k}"),
        }
    }
}

/// A parsed label selector (`a=b,c!=d,e in (x,y),f notin (z),g,!h`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// A null selector object: matches nothing (Kubernetes' `nil` selector).
    nothing: bool,
}

/// A selector that could not be parsed or uses an unsupported field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, SelectorError> {
    Err(SelectorError(msg.into()))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Open,
    Close,
    Comma,
}

fn is_ident_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, ',' | '(' | ')' | '=' | '!')
}

fn lex(s: &str) -> Result<Vec<Token>, SelectorError> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            ',' => out.push(Token::Comma),
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            '=' => {
                if chars.peek().is_some_and(|(_, n)| *n == '=') {
                    chars.next();
                    out.push(Token::DoubleEq);
                } else {
                    out.push(Token::Eq);
                }
            }
            '!' => {
                if chars.peek().is_some_and(|(_, n)| *n == '=') {
                    chars.next();
                    out.push(Token::NotEq);
                } else {
                    out.push(Token::Not);
                }
            }
            _ => {
                let mut end = i + c.len_utf8();
                while let Some((j, n)) = chars.peek().copied() {
                    if !is_ident_char(n) {
                        break;
                    }
                    end = j + n.len_utf8();
                    chars.next();
                }
                out.push(Token::Ident(s[i..end].to_string()));
            }
        }
    }
    Ok(out)
}

fn check_key(k: &str) -> Result<(), SelectorError> {
    let problems = names::qualified_name(k);
    if problems.is_empty() {
        Ok(())
    } else {
        err(format!(
            "invalid label key \"{k}\": {}",
            problems.join("; ")
        ))
    }
}

fn check_value(v: &str) -> Result<(), SelectorError> {
    let problems = names::label_value(v);
    if problems.is_empty() {
        Ok(())
    } else {
        err(format!(
            "invalid label value: \"{v}\": {}",
            problems.join("; ")
        ))
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn ident(&mut self, what: &str) -> Result<String, SelectorError> {
        match self.next() {
            Some(Token::Ident(s)) => Ok(s),
            Some(t) => err(format!("found '{}', expected: {what}", show(&t))),
            None => err(format!("found '', expected: {what}")),
        }
    }

    /// A value after `=`, `==`, `!=`: may be empty.
    fn value(&mut self) -> Result<String, SelectorError> {
        match self.peek() {
            Some(Token::Ident(_)) => self.ident("value"),
            None | Some(Token::Comma) => Ok(String::new()),
            Some(t) => err(format!("found '{}', expected: identifier", show(t))),
        }
    }

    fn set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        match self.next() {
            Some(Token::Open) => {}
            other => {
                return err(format!(
                    "found '{}', expected: '('",
                    other.as_ref().map(show).unwrap_or_default()
                ));
            }
        }
        let mut values = BTreeSet::new();
        loop {
            match self.next() {
                Some(Token::Ident(v)) => {
                    check_value(&v)?;
                    values.insert(v);
                    match self.next() {
                        Some(Token::Comma) => continue,
                        Some(Token::Close) => break,
                        other => {
                            return err(format!(
                                "found '{}', expected: ',' or ')'",
                                other.as_ref().map(show).unwrap_or_default()
                            ));
                        }
                    }
                }
                Some(Token::Close) if values.is_empty() => break,
                other => {
                    return err(format!(
                        "found '{}', expected: identifier",
                        other.as_ref().map(show).unwrap_or_default()
                    ));
                }
            }
        }
        if values.is_empty() {
            return err("for 'in', 'notin' operators, values set can't be empty");
        }
        Ok(values)
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.peek() == Some(&Token::Not) {
            self.next();
            let key = self.ident("identifier")?;
            check_key(&key)?;
            return Ok(Requirement::DoesNotExist(key));
        }
        let key = self.ident("identifier")?;
        check_key(&key)?;
        match self.peek() {
            None | Some(Token::Comma) => Ok(Requirement::Exists(key)),
            Some(Token::Eq | Token::DoubleEq) => {
                self.next();
                let v = self.value()?;
                check_value(&v)?;
                Ok(Requirement::Equals(key, v))
            }
            Some(Token::NotEq) => {
                self.next();
                let v = self.value()?;
                check_value(&v)?;
                Ok(Requirement::NotEquals(key, v))
            }
            Some(Token::Ident(op)) if op == "in" => {
                self.next();
                Ok(Requirement::In(key, self.set()?))
            }
            Some(Token::Ident(op)) if op == "notin" => {
                self.next();
                Ok(Requirement::NotIn(key, self.set()?))
            }
            Some(t) => err(format!(
                "found '{}', expected: in, notin, =, ==, !=, or ','",
                show(t)
            )),
        }
    }
}

fn show(t: &Token) -> String {
    match t {
        Token::Ident(s) => s.clone(),
        Token::Not => "!".into(),
        Token::Eq => "=".into(),
        Token::DoubleEq => "==".into(),
        Token::NotEq => "!=".into(),
        Token::Open => "(".into(),
        Token::Close => ")".into(),
        Token::Comma => ",".into(),
    }
}

impl LabelSelector {
    /// Parse the string form.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut p = Parser {
            tokens: lex(s)?,
            pos: 0,
        };
        let mut requirements = Vec::new();
        if p.tokens.is_empty() {
            return Ok(Self::default());
        }
        loop {
            requirements.push(p.requirement()?);
            match p.next() {
                None => break,
                Some(Token::Comma) => continue,
                Some(t) => return err(format!("found '{}', expected: ','", show(&t))),
            }
        }
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// Build from a Kubernetes `LabelSelector` object (`matchLabels`, `matchExpressions`) as JSON.
    pub fn from_object(v: &Value) -> Result<Self, SelectorError> {
        if v.is_null() {
            return Ok(Self::nothing());
        }
        let Some(map) = v.as_object() else {
            return err("a label selector must be an object");
        };
        let mut requirements = Vec::new();
        if let Some(ml) = map.get("matchLabels") {
            let Some(ml) = ml.as_object() else {
                return err("matchLabels must be an object");
            };
            for (k, v) in ml {
                let Some(v) = v.as_str() else {
                    return err(format!("matchLabels[{k}] must be a string"));
                };
                check_key(k)?;
                check_value(v)?;
                requirements.push(Requirement::Equals(k.clone(), v.to_string()));
            }
        }
        if let Some(me) = map.get("matchExpressions") {
            let Some(me) = me.as_array() else {
                return err("matchExpressions must be a list");
            };
            for e in me {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                check_key(key)?;
                let values: BTreeSet<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| {
                        vs.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                for v in &values {
                    check_value(v)?;
                }
                let op = e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let key = key.to_string();
                requirements.push(match op {
                    "In" | "NotIn" if values.is_empty() => {
                        return err(format!("for '{op}' operator, values set can't be empty"));
                    }
                    "In" => Requirement::In(key, values),
                    "NotIn" => Requirement::NotIn(key, values),
                    "Exists" | "DoesNotExist" if !values.is_empty() => {
                        return err(format!("values set must be empty for '{op}' operator"));
                    }
                    "Exists" => Requirement::Exists(key),
                    "DoesNotExist" => Requirement::DoesNotExist(key),
                    other => {
                        return err(format!(
                            "\"{other}\" is not a valid label selector operator"
                        ));
                    }
                });
            }
        }
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// A selector that matches nothing (Kubernetes' `nil` selector).
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Whether the selector has no requirements (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && !self.nothing
    }

    /// Whether `labels` satisfy the selector. The empty selector matches everything.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the labels of `obj` (`metadata.labels`) satisfy the selector.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(&labels_of(obj))
    }
}

/// `metadata.labels` of an object as a map (non-string values are skipped).
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl fmt::Display for LabelSelector {
    /// The string form, which [`LabelSelector::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// Fields every kind supports.
const COMMON_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// Extra fields per kind, with the value an absent field reads as.
fn kind_fields(rt: &ResourceType) -> &'static [(&'static str, &'static str)] {
    match (rt.group, rt.kind) {
        ("", "Pod") => &[
            ("spec.nodeName", ""),
            ("spec.restartPolicy", ""),
            ("spec.schedulerName", ""),
            ("spec.serviceAccountName", ""),
            ("spec.hostNetwork", "false"),
            ("status.phase", ""),
            ("status.podIP", ""),
            ("status.nominatedNodeName", ""),
        ],
        ("", "Event") => &[
            ("involvedObject.kind", ""),
            ("involvedObject.namespace", ""),
            ("involvedObject.name", ""),
            ("involvedObject.uid", ""),
            ("involvedObject.apiVersion", ""),
            ("involvedObject.resourceVersion", ""),
            ("involvedObject.fieldPath", ""),
            ("reason", ""),
            ("reportingComponent", ""),
            ("source", ""),
            ("type", ""),
        ],
        ("", "Secret") => &[("type", "")],
        ("", "Node") => &[("spec.unschedulable", "false")],
        ("apps", "ReplicaSet") => &[("status.replicas", "0")],
        ("", "Namespace") => &[("status.phase", "")],
        _ => &[],
    }
}

/// One `field=value` or `field!=value` term.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldRequirement {
    field: String,
    equal: bool,
    value: String,
    absent: &'static str,
}

/// A parsed field selector (`metadata.name=x,spec.nodeName!=`), checked against
/// the fields Kubernetes supports for the resource type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// Split on unescaped `sep`; `\` escapes the next character.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(p) = parts.last_mut() {
                p.push('\\');
                if let Some(n) = chars.next() {
                    p.push(n);
                }
            }
        } else if c == sep {
            parts.push(String::new());
        } else if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    parts
}

/// Find the first unescaped operator in a term: `(field, equal, value)`.
fn split_term(term: &str) -> Option<(String, bool, String)> {
    let b = term.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'!' if b.get(i + 1) == Some(&b'=') => {
                return Some((term[..i].to_string(), false, unescape(&term[i + 2..])));
            }
            b'=' => {
                let skip = if b.get(i + 1) == Some(&b'=') { 2 } else { 1 };
                return Some((term[..i].to_string(), true, unescape(&term[i + skip..])));
            }
            _ => i += 1,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl FieldSelector {
    /// Parse, rejecting fields that `rt` does not support (Kubernetes answers 400 then).
    pub fn parse(rt: &ResourceType, s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_escaped(s, ',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let Some((field, equal, value)) = split_term(term) else {
                return err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            let field = field.trim().to_string();
            let absent = if COMMON_FIELDS.contains(&field.as_str()) {
                ""
            } else if let Some((_, absent)) = kind_fields(rt).iter().find(|(f, _)| *f == field) {
                absent
            } else {
                return err(format!("field label not supported: {field}"));
            };
            requirements.push(FieldRequirement {
                field,
                equal,
                value,
                absent,
            });
        }
        Ok(Self { requirements })
    }

    /// Whether the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the object matches.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field_value(obj, &r.field).unwrap_or_else(|| r.absent.to_string());
            (actual == r.value) == r.equal
        })
    }
}

/// The string value of a selectable field (`source` is an Event's `source.component`).
fn field_value(obj: &Value, field: &str) -> Option<String> {
    let path = if field == "source" {
        "source.component"
    } else {
        field
    };
    let mut cur = obj;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
