//! String matches (Istio's `StringMatch`) compiled once, at build time.

use regex::Regex;

use crate::model;

/// A compiled `StringMatch`: `exact`, `prefix` or `regex` (RE2 syntax, matched against the whole value).
#[derive(Clone, Debug)]
pub enum StrMatch {
    /// Equal to the string.
    Exact(String),
    /// Starts with the string.
    Prefix(String),
    /// The whole value matches the expression.
    Regex(Regex),
    /// Any value (an empty `StringMatch`: the value must only be present).
    Present,
}

impl PartialEq for StrMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StrMatch::Exact(a), StrMatch::Exact(b))
            | (StrMatch::Prefix(a), StrMatch::Prefix(b)) => a == b,
            (StrMatch::Regex(a), StrMatch::Regex(b)) => a.as_str() == b.as_str(),
            (StrMatch::Present, StrMatch::Present) => true,
            _ => false,
        }
    }
}

impl StrMatch {
    /// Compile a `StringMatch`; an invalid regex is an error.
    pub(crate) fn compile(m: &model::StringMatch) -> Result<StrMatch, String> {
        if let Some(e) = &m.exact {
            Ok(StrMatch::Exact(e.clone()))
        } else if let Some(p) = &m.prefix {
            Ok(StrMatch::Prefix(p.clone()))
        } else if let Some(r) = &m.regex {
            Regex::new(&format!("^(?:{r})$"))
                .map(StrMatch::Regex)
                .map_err(|e| format!("invalid regex {r:?}: {e}"))
        } else {
            Ok(StrMatch::Present)
        }
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StrMatch::Exact(e) => value == e,
            StrMatch::Prefix(p) => value.starts_with(p.as_str()),
            StrMatch::Regex(r) => r.is_match(value),
            StrMatch::Present => true,
        }
    }

    /// Whether `value` matches, ignoring ASCII case for `exact` and `prefix`.
    pub fn matches_ignore_case(&self, value: &str) -> bool {
        match self {
            StrMatch::Exact(e) => value.eq_ignore_ascii_case(e),
            StrMatch::Prefix(p) => {
                value.len() >= p.len()
                    && value.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            other => other.matches(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(exact: Option<&str>, prefix: Option<&str>, regex: Option<&str>) -> StrMatch {
        StrMatch::compile(&model::StringMatch {
            exact: exact.map(Into::into),
            prefix: prefix.map(Into::into),
            regex: regex.map(Into::into),
        })
        .unwrap()
    }

    #[test]
    fn string_matches() {
        let cases = [
            (sm(Some("/a"), None, None), "/a", true),
            (sm(Some("/a"), None, None), "/ab", false),
            (sm(None, Some("/a"), None), "/ab", true),
            (sm(None, Some("/a"), None), "/b", false),
            (sm(None, None, Some("/a.*")), "/abc", true),
            // Regexes match the whole value, as Envoy's safe_regex does.
            (sm(None, None, Some("a")), "/abc", false),
            (sm(None, None, None), "anything", true),
        ];
        for (m, v, want) in cases {
            assert_eq!(m.matches(v), want, "{m:?} {v}");
        }
        assert!(sm(None, Some("/API"), None).matches_ignore_case("/api/x"));
        assert!(
            StrMatch::compile(&model::StringMatch {
                regex: Some("(".into()),
                ..Default::default()
            })
            .is_err()
        );
    }
}
