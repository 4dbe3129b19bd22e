//! Path patterns: Go `filepath.Match` globs for COPY sources and `.dockerignore` rules with `**`
//! and `!` exceptions (Docker's patternmatcher semantics).

/// Matches `path` against a glob: `*` (not across `/`), `?`, `[a-z]`, `[^x]`/`[!x]`, `\x`,
/// and `**` (any number of path components, as in `.dockerignore`).
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = path.chars().collect();
    match_at(&p, &s)
}

fn match_at(p: &[char], s: &[char]) -> bool {
    if p.is_empty() {
        return s.is_empty();
    }
    match p[0] {
        '*' if p.get(1) == Some(&'*') => {
            let mut rest = &p[2..];
            while rest.first() == Some(&'*') {
                rest = &rest[1..];
            }
            if rest.is_empty() {
                return true;
            }
            if rest[0] == '/' {
                // `**/x`: zero or more leading directories.
                let after = &rest[1..];
                if match_at(after, s) {
                    return true;
                }
                return (0..s.len()).any(|i| s[i] == '/' && match_at(after, &s[i + 1..]));
            }
            (0..=s.len()).any(|i| match_at(rest, &s[i..]))
        }
        '*' => {
            for i in 0..=s.len() {
                if match_at(&p[1..], &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == '/' {
                    break;
                }
            }
            false
        }
        '?' => !s.is_empty() && s[0] != '/' && match_at(&p[1..], &s[1..]),
        '[' => {
            let Some(c) = s.first() else { return false };
            if *c == '/' {
                return false;
            }
            match class(&p[1..], *c) {
                Some((true, used)) => match_at(&p[1 + used..], &s[1..]),
                _ => false,
            }
        }
        '\\' if p.len() > 1 => !s.is_empty() && s[0] == p[1] && match_at(&p[2..], &s[1..]),
        c => !s.is_empty() && s[0] == c && match_at(&p[1..], &s[1..]),
    }
}

/// Matches `c` against a class body after `[`; returns (matched, chars used including `]`).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some('^') | Some('!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let mut lo = p[i];
        if lo == '\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|c| *c != ']') {
            hi = p[i + 1];
            if hi == '\\' {
                hi = *p.get(i + 2)?;
                i += 1;
            }
            i += 2;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    None
}

/// Whether a string has glob metacharacters.
pub fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Cleans a slash path as Go's `filepath.Clean` does, without a leading `/`.
pub fn clean_rel(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: String,
    exclude: bool,
}

/// The rules of a `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    rules: Vec<Rule>,
}

impl DockerIgnore {
    /// Parses a `.dockerignore` file: one pattern a line, `#` comments, `!` exceptions.
    pub fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclude, pat) = match line.strip_prefix('!') {
                Some(p) => (false, p.trim()),
                None => (true, line),
            };
            let pattern = clean_rel(pat);
            if pattern.is_empty() {
                continue;
            }
            rules.push(Rule { pattern, exclude });
        }
        Self { rules }
    }

    /// Whether there are exception (`!`) rules, which can re-include paths under an excluded directory.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| !r.exclude)
    }

    /// Whether a context-relative path is excluded: the last rule that matches the path or one of
    /// its parent directories decides.
    pub fn is_excluded(&self, rel: &str) -> bool {
        let rel = clean_rel(rel);
        let mut excluded = false;
        for rule in &self.rules {
            if matches_or_parent(&rule.pattern, &rel) {
                excluded = rule.exclude;
            }
        }
        excluded
    }
}

fn matches_or_parent(pattern: &str, rel: &str) -> bool {
    if glob_match(pattern, rel) {
        return true;
    }
    let mut end = rel.len();
    while let Some(i) = rel[..end].rfind('/') {
        if glob_match(pattern, &rel[..i]) {
            return true;
        }
        end = i;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("*.md", "README.md", true),
            ("*.md", "docs/README.md", false),
            ("**/*.md", "docs/a/README.md", true),
            ("**/*.md", "README.md", true),
            ("docs/**", "docs/a/b", true),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("[a-c]x", "bx", true),
            ("[!a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("\\*", "*", true),
            ("bin/*/x", "bin/amd64/x", true),
            ("bin/*/x", "bin/amd64/y/x", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(glob_match(p, s), want, "{p} vs {s}");
        }
    }

    #[test]
    fn dockerignore_rules() {
        let di = DockerIgnore::parse(
            "# c\n*.md\n!KEEP.md\nbuild\n/target/\n**/*.tmp\nsecret/**\n!secret/ok\n",
        );
        assert!(di.is_excluded("README.md"));
        assert!(!di.is_excluded("KEEP.md"));
        assert!(!di.is_excluded("docs/README.md"));
        assert!(di.is_excluded("build"));
        assert!(di.is_excluded("build/out/x"));
        assert!(di.is_excluded("target/debug/a"));
        assert!(di.is_excluded("a/b/c.tmp"));
        assert!(di.is_excluded("secret/key"));
        assert!(!di.is_excluded("secret/ok"));
        assert!(!di.is_excluded("src/main.rs"));
        assert!(di.has_exceptions());
    }
}
