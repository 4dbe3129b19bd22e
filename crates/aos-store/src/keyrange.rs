//! Key ranges: the exclusive upper bound of a prefix scan.

/// The smallest string greater than every string that starts with `prefix`,
/// or `None` when there is no such bound (empty prefix, or a prefix made only
/// of `char::MAX`). Keys under `prefix` are exactly `prefix <= key < end`
/// in byte (UTF-8, code point) order, which is how SQLite's `BINARY` collation
/// compares text. This lets `list` and `watch` use an index range instead of
/// `LIKE`.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = next_char(last) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The next Unicode scalar value after `c`, skipping the surrogate gap.
fn next_char(c: char) -> Option<char> {
    let mut code = u32::from(c) + 1;
    if (0xD800..=0xDFFF).contains(&code) {
        code = 0xE000;
    }
    char::from_u32(code)
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("/a/b/", Some("/a/b0")),
            ("/a/bb/", Some("/a/bb0")),
            ("a", Some("b")),
            ("z\u{D7FF}", Some("z\u{E000}")),
            ("x\u{10FFFF}", Some("y")),
            ("\u{10FFFF}", None),
            ("é", Some("ê")),
        ];
        for (prefix, want) in cases {
            assert_eq!(prefix_end(prefix).as_deref(), *want, "prefix {prefix:?}");
        }
    }

    #[test]
    fn range_matches_starts_with() {
        let keys = [
            "/a/b",
            "/a/b/",
            "/a/b/x",
            "/a/b0",
            "/a/bb/",
            "/a/b/\u{10FFFF}",
            "/a/c",
        ];
        let prefix = "/a/b/";
        let end = prefix_end(prefix).unwrap();
        for key in keys {
            let in_range = key >= prefix && key < end.as_str();
            assert_eq!(in_range, key.starts_with(prefix), "key {key:?}");
        }
    }
}
