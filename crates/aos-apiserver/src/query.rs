//! Query-string parameters of API requests.

use crate::error::{ApiError, ApiResult};

/// Decode `%XX` and `+` of one query component.
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex =
                    std::str::from_utf8(bytes.get(i + 1..i + 3).unwrap_or_default()).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) if hex.len() == 2 => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parameters aos understands; others are ignored, as Kubernetes does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Query {
    pub(crate) watch: bool,
    pub(crate) label_selector: Option<String>,
    pub(crate) field_selector: Option<String>,
    pub(crate) resource_version: Option<String>,
    pub(crate) limit: Option<usize>,
    pub(crate) continue_token: Option<String>,
    pub(crate) timeout_seconds: Option<u64>,
    pub(crate) allow_bookmarks: bool,
    pub(crate) send_initial_events: Option<bool>,
    pub(crate) dry_run: bool,
    pub(crate) include_object: Option<String>,
    pub(crate) grace_period_seconds: Option<i64>,
    pub(crate) propagation_policy: Option<String>,
    pub(crate) orphan_dependents: Option<bool>,
    pub(crate) field_validation: Option<String>,
}

fn flag(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE" | "")
}

impl Query {
    pub(crate) fn parse(raw: &str) -> ApiResult<Self> {
        let mut q = Query::default();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k), decode(v));
            let int = |name: &str| -> ApiResult<i64> {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid {name}: {v:?} is not an integer"))
                })
            };
            match k.as_str() {
                "watch" => q.watch = flag(&v),
                "labelSelector" => q.label_selector = Some(v).filter(|s| !s.is_empty()),
                "fieldSelector" => q.field_selector = Some(v).filter(|s| !s.is_empty()),
                "resourceVersion" => q.resource_version = Some(v).filter(|s| !s.is_empty()),
                "limit" => {
                    let l = int("limit")?;
                    q.limit = (l > 0).then_some(l as usize);
                }
                "continue" => q.continue_token = Some(v).filter(|s| !s.is_empty()),
                "timeoutSeconds" => {
                    let t = int("timeoutSeconds")?;
                    q.timeout_seconds = (t > 0).then_some(t as u64);
                }
                "allowWatchBookmarks" => q.allow_bookmarks = flag(&v),
                "sendInitialEvents" => q.send_initial_events = Some(flag(&v)),
                "dryRun" => q.dry_run = !v.is_empty(),
                "includeObject" => q.include_object = Some(v),
                "gracePeriodSeconds" => q.grace_period_seconds = Some(int("gracePeriodSeconds")?),
                "propagationPolicy" => q.propagation_policy = Some(v).filter(|s| !s.is_empty()),
                "orphanDependents" => q.orphan_dependents = Some(flag(&v)),
                "fieldValidation" => q.field_validation = Some(v),
                _ => {}
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_components() {
        assert_eq!(decode("a%3Db%2Cc+in+%28x%29"), "a=b,c in (x)");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }

    #[test]
    fn parses_params() {
        let q = Query::parse(
            "watch=1&labelSelector=app%3Dweb&limit=5&resourceVersion=7&allowWatchBookmarks=true",
        )
        .unwrap();
        assert!(q.watch && q.allow_bookmarks);
        assert_eq!(q.label_selector.as_deref(), Some("app=web"));
        assert_eq!(q.limit, Some(5));
        assert_eq!(q.resource_version.as_deref(), Some("7"));
        assert!(Query::parse("limit=x").is_err());
    }
}
