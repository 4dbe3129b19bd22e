//! Name rules as Kubernetes applies them: RFC 1123 labels and subdomains,
//! qualified names (label and annotation keys), label values, IANA service
//! names, ConfigMap keys, environment variable names. Each check returns the
//! reasons a name is invalid; an empty list means valid.

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
const IANA_SVC_NAME_MAX: usize = 15;
const CONFIG_KEY_MAX: usize = 253;

fn alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && alnum_lower(b[0])
        && alnum_lower(b[b.len() - 1])
        && b.iter().all(|c| alnum_lower(*c) || *c == b'-')
}

/// An RFC 1123 label: at most 63 lowercase letters, digits and '-', starting and ending alphanumeric.
pub(crate) fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !is_label_chars(s) {
        errs.push(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')"
                .to_string(),
        );
    }
    errs
}

/// An RFC 1123 subdomain: at most 253 characters, dot-separated labels.
pub(crate) fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if s.is_empty() || !s.split('.').all(is_label_chars) {
        errs.push(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"
                .to_string(),
        );
    }
    errs
}

/// A name usable as a path segment: not `.` or `..`, no `/` or `%`.
pub(crate) fn path_segment_name(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    let mut errs = Vec::new();
    for bad in ["/", "%"] {
        if s.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    !b.is_empty()
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter()
            .all(|c| alnum(*c) || matches!(c, b'-' | b'_' | b'.'))
}

const NAME_PART_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc')";

/// A qualified name (`app`, `app.kubernetes.io/name`): an optional DNS subdomain
/// prefix and `/`, then a name of at most 63 characters.
pub(crate) fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for e in dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {e}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {NAME_PART_RULE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else {
        if name.len() > QUALIFIED_NAME_MAX {
            errs.push(format!(
                "name part must be no more than {QUALIFIED_NAME_MAX} characters"
            ));
        }
        if !is_name_part(name) {
            errs.push(format!("name part {NAME_PART_RULE}"));
        }
    }
    errs
}

/// A label value: empty, or at most 63 characters of the name-part alphabet.
pub(crate) fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        errs.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !s.is_empty() && !is_name_part(s) {
        errs.push(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345')"
                .to_string(),
        );
    }
    errs
}

/// An IANA service name (a named port): at most 15 lowercase letters, digits
/// and '-', at least one letter, no leading, trailing or double '-'.
pub(crate) fn iana_svc_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > IANA_SVC_NAME_MAX {
        errs.push(format!(
            "must be no more than {IANA_SVC_NAME_MAX} characters"
        ));
    }
    if !s.bytes().all(|c| alnum_lower(c) || c == b'-') {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// A key of a ConfigMap or Secret: letters, digits, `-`, `_`, `.`; not `.` or `..`.
pub(crate) fn config_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > CONFIG_KEY_MAX {
        errs.push(format!("must be no more than {CONFIG_KEY_MAX} characters"));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        errs.push(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name', or 'KEY_NAME', or 'key-name')"
                .to_string(),
        );
    }
    if s == "." || s == ".." {
        errs.push(format!("must not be '{s}'"));
    } else if s.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// An environment variable name: printable ASCII except `=` (Kubernetes' relaxed rule).
pub(crate) fn env_var_name(s: &str) -> Vec<String> {
    if s.is_empty() || !s.bytes().all(|c| (32..=126).contains(&c) && c != b'=') {
        vec!["a valid environment variable name must consist only of printable ASCII characters other than '='".to_string()]
    } else {
        Vec::new()
    }
}

/// An IPv4 or IPv6 address.
pub(crate) fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        type Check = fn(&str) -> Vec<String>;
        let cases: &[(Check, &str, bool)] = &[
            (dns1123_label, "agent-os", true),
            (dns1123_label, "a", true),
            (dns1123_label, "0abc", true),
            (dns1123_label, "Agent", false),
            (dns1123_label, "-a", false),
            (dns1123_label, "a-", false),
            (dns1123_label, "a.b", false),
            (dns1123_label, "", false),
            (dns1123_label, &"a".repeat(64), false),
            (dns1123_subdomain, "agent-registry", true),
            (dns1123_subdomain, "a.b.c", true),
            (dns1123_subdomain, "a..b", false),
            (dns1123_subdomain, "a_b", false),
            (dns1123_subdomain, &"a".repeat(254), false),
            (qualified_name, "app", true),
            (qualified_name, "app.kubernetes.io/name", true),
            (qualified_name, "prometheus.io/scrape", true),
            (qualified_name, "My_Key.1", true),
            (qualified_name, "/x", false),
            (qualified_name, "a/b/c", false),
            (qualified_name, "Example.com/x", false),
            (qualified_name, "x/", false),
            (qualified_name, "bad key", false),
            (qualified_name, &"a".repeat(64), false),
            (label_value, "", true),
            (label_value, "v1.0.0", true),
            (label_value, "-x", false),
            (label_value, "a b", false),
            (iana_svc_name, "http", true),
            (iana_svc_name, "http-metrics", true),
            (iana_svc_name, "8080", false),
            (iana_svc_name, "HTTP", false),
            (iana_svc_name, "a--b", false),
            (iana_svc_name, "-a", false),
            (iana_svc_name, "averyveryverylongname", false),
            (config_key, "app.conf", true),
            (config_key, "KEY_1", true),
            (config_key, "..x", false),
            (config_key, "a/b", false),
            (env_var_name, "DATABASE_URL", true),
            (env_var_name, "my.var-1", true),
            (env_var_name, "A=B", false),
            (env_var_name, "", false),
            (path_segment_name, "ok", true),
            (path_segment_name, "..", false),
            (path_segment_name, "a/b", false),
        ];
        for (check, input, valid) in cases {
            assert_eq!(
                check(input).is_empty(),
                *valid,
                "{input:?}: {:?}",
                check(input)
            );
        }
    }
}
