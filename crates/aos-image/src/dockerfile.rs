//! The Dockerfile parser: parser directives, line continuations, comments, exec (JSON) and shell
//! forms, flags, with the line number of every instruction. Variable expansion happens at build
//! time ([`expand_word`], [`expand_words`]) because ARG values come from the build.

use std::collections::BTreeMap;

/// A Dockerfile parse error at a line.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{line}: {message}")]
pub struct ParseError {
    /// The 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

/// A command in exec (JSON array) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmdline {
    /// `["/bin/app", "arg"]`.
    Exec(Vec<String>),
    /// `app arg`, run through the SHELL.
    Shell(String),
}

/// A `--name=value` flag of an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The name without dashes.
    pub name: String,
    /// The value (`None` for a bare `--flag`).
    pub value: Option<String>,
}

/// The parsed form of an instruction. Words are raw (quotes and `$` kept) where Docker expands
/// variables; the builder expands them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `FROM [--platform=P] image [AS name]`.
    From {
        /// The image word (raw).
        image: String,
        /// The stage name.
        alias: Option<String>,
    },
    /// `COPY`/`ADD [flags] src... dest` (raw words; the last is the destination).
    Copy {
        /// True for ADD.
        add: bool,
        /// Sources then destination.
        args: Vec<String>,
    },
    /// `ENV k=v ...` or `ENV k v` (raw values).
    Env(Vec<(String, String)>),
    /// `ARG name[=default] ...` (raw defaults).
    Arg(Vec<(String, Option<String>)>),
    /// `LABEL k=v ...` (raw keys and values).
    Label(Vec<(String, String)>),
    /// `USER u[:g]` (raw).
    User(String),
    /// `WORKDIR path` (raw).
    Workdir(String),
    /// `EXPOSE port[/proto]...` (raw words).
    Expose(Vec<String>),
    /// `VOLUME` paths (raw words).
    Volume(Vec<String>),
    /// `STOPSIGNAL sig` (raw).
    StopSignal(String),
    /// `ENTRYPOINT`.
    Entrypoint(Cmdline),
    /// `CMD`.
    Cmd(Cmdline),
    /// `SHELL ["exe", "arg"]`.
    Shell(Vec<String>),
    /// `HEALTHCHECK [flags] CMD ...` (`None` for `HEALTHCHECK NONE`).
    Healthcheck(Option<Cmdline>),
    /// `MAINTAINER name` (deprecated; recorded as the author).
    Maintainer(String),
    /// `RUN` (parsed so the builder can refuse it with its line).
    Run(Cmdline),
    /// `ONBUILD instruction` (recognised, refused by the builder).
    Onbuild(String),
}

/// One instruction with its location and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The 1-based line where it starts.
    pub line: usize,
    /// The keyword in upper case.
    pub keyword: String,
    /// `--flags` before the arguments.
    pub flags: Vec<Flag>,
    /// The parsed arguments.
    pub kind: Kind,
    /// The instruction text after the keyword, flags included, continuations joined (for
    /// history and messages).
    pub text: String,
}

impl Instruction {
    /// The value of a flag, if given.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|f| f.name == name)
            .and_then(|f| f.value.as_deref())
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\` unless `# escape=` says otherwise).
    pub escape: char,
    /// The `# syntax=` directive, recorded and otherwise ignored.
    pub syntax: Option<String>,
    /// The instructions in order.
    pub instructions: Vec<Instruction>,
}

const KNOWN_FLAGS: &[(&str, &[&str])] = &[
    ("FROM", &["platform"]),
    (
        "COPY",
        &["from", "chown", "chmod", "link", "parents", "exclude"],
    ),
    (
        "ADD",
        &[
            "chown",
            "chmod",
            "link",
            "checksum",
            "keep-git-dir",
            "exclude",
        ],
    ),
    (
        "HEALTHCHECK",
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
    ),
    ("RUN", &["mount", "network", "security"]),
];

/// Parses a Dockerfile.
pub fn parse(source: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = source
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut i = 0;
    // Parser directives: `# key=value` lines at the very top.
    let mut seen = BTreeMap::new();
    while i < lines.len() {
        let Some(rest) = lines[i].trim_start().strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        let key = k.trim().to_ascii_lowercase();
        if key.is_empty() || key.contains(char::is_whitespace) {
            break;
        }
        let value = v.trim();
        match key.as_str() {
            "escape" => {
                escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(err(
                            i + 1,
                            format!("invalid escape directive {other:?}: must be ` or \\"),
                        ));
                    }
                };
            }
            "syntax" => syntax = Some(value.to_owned()),
            "check" => {}
            _ => break,
        }
        if seen.insert(key.clone(), ()).is_some() {
            return Err(err(i + 1, format!("parser directive {key} given twice")));
        }
        i += 1;
    }
    let mut instructions = Vec::new();
    while i < lines.len() {
        let start = i;
        let first = lines[i];
        i += 1;
        let trimmed = first.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // Join continuation lines; comment and empty lines inside a continuation are skipped.
        let mut text = String::new();
        let mut cur = first.trim_start().to_owned();
        loop {
            match strip_continuation(&cur, escape) {
                Some(body) => {
                    text.push_str(body);
                    let mut next = None;
                    while i < lines.len() {
                        let l = lines[i];
                        i += 1;
                        let t = l.trim();
                        if t.starts_with('#') || t.is_empty() {
                            continue;
                        }
                        next = Some(l.to_owned());
                        break;
                    }
                    match next {
                        Some(l) => cur = l,
                        None => break,
                    }
                }
                None => {
                    text.push_str(&cur);
                    break;
                }
            }
        }
        instructions.push(parse_instruction(start + 1, text.trim(), escape)?);
    }
    Ok(Dockerfile {
        escape,
        syntax,
        instructions,
    })
}

fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end();
    let body = t.strip_suffix(escape)?;
    // An escaped escape character is not a continuation.
    let run = body.chars().rev().take_while(|c| *c == escape).count();
    (run % 2 == 0).then_some(body)
}

fn parse_instruction(line: usize, text: &str, escape: char) -> Result<Instruction, ParseError> {
    let (word, rest) = match text.find(char::is_whitespace) {
        Some(p) => (&text[..p], text[p..].trim_start()),
        None => (text, ""),
    };
    let keyword = word.to_ascii_uppercase();
    let known = [
        "FROM",
        "COPY",
        "ADD",
        "ENV",
        "ARG",
        "LABEL",
        "USER",
        "WORKDIR",
        "EXPOSE",
        "VOLUME",
        "STOPSIGNAL",
        "ENTRYPOINT",
        "CMD",
        "SHELL",
        "HEALTHCHECK",
        "MAINTAINER",
        "RUN",
        "ONBUILD",
    ];
    if !known.contains(&keyword.as_str()) {
        return Err(err(line, format!("unknown instruction: {word}")));
    }
    let full_text = rest.to_owned();
    let (flags, rest) = take_flags(line, &keyword, rest)?;
    let need = |what: &str| -> Result<(), ParseError> {
        if rest.trim().is_empty() {
            Err(err(line, format!("{keyword} requires {what}")))
        } else {
            Ok(())
        }
    };
    let kind = match keyword.as_str() {
        "FROM" => {
            need("an image")?;
            let words = split_raw(rest, escape);
            match words.as_slice() {
                [image] => Kind::From {
                    image: image.clone(),
                    alias: None,
                },
                [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                    if !valid_stage_name(name) {
                        return Err(err(
                            line,
                            format!(
                                "invalid stage name {name:?}: lowercase letters, digits, . _ -"
                            ),
                        ));
                    }
                    Kind::From {
                        image: image.clone(),
                        alias: Some(name.to_ascii_lowercase()),
                    }
                }
                _ => return Err(err(line, "FROM takes an image and an optional AS name")),
            }
        }
        "COPY" | "ADD" => {
            need("a source and a destination")?;
            let args = if rest.trim_start().starts_with('[') {
                parse_json_array(rest)
                    .ok_or_else(|| err(line, format!("{keyword}: malformed JSON array")))?
            } else {
                split_raw(rest, escape)
            };
            if args.iter().any(|a| a.starts_with("<<")) {
                return Err(err(
                    line,
                    format!("{keyword} with a heredoc (<<) is not supported"),
                ));
            }
            if args.len() < 2 {
                return Err(err(
                    line,
                    format!("{keyword} requires at least one source and a destination"),
                ));
            }
            Kind::Copy {
                add: keyword == "ADD",
                args,
            }
        }
        "ENV" => {
            need("a name and a value")?;
            Kind::Env(name_values(line, &keyword, rest, escape, true)?)
        }
        "LABEL" => {
            need("a key=value pair")?;
            Kind::Label(name_values(line, &keyword, rest, escape, false)?)
        }
        "ARG" => {
            need("a name")?;
            let mut out = Vec::new();
            for w in split_raw(rest, escape) {
                let (name, default) = match w.split_once('=') {
                    Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                    None => (w.clone(), None),
                };
                if !valid_var_name(&name) {
                    return Err(err(line, format!("ARG: invalid name {name:?}")));
                }
                out.push((name, default));
            }
            Kind::Arg(out)
        }
        "USER" => {
            need("a user")?;
            Kind::User(single(line, &keyword, rest, escape)?)
        }
        "WORKDIR" => {
            need("a path")?;
            Kind::Workdir(rest.trim().to_owned())
        }
        "STOPSIGNAL" => {
            need("a signal")?;
            Kind::StopSignal(single(line, &keyword, rest, escape)?)
        }
        "EXPOSE" => {
            need("a port")?;
            Kind::Expose(split_raw(rest, escape))
        }
        "VOLUME" => {
            need("a path")?;
            let v = if rest.trim_start().starts_with('[') {
                parse_json_array(rest).ok_or_else(|| err(line, "VOLUME: malformed JSON array"))?
            } else {
                split_raw(rest, escape)
            };
            Kind::Volume(v)
        }
        "ENTRYPOINT" => Kind::Entrypoint(cmdline(rest)),
        "CMD" => Kind::Cmd(cmdline(rest)),
        "RUN" => {
            need("a command")?;
            if rest.contains("<<") && rest.split_whitespace().any(|w| w.starts_with("<<")) {
                return Err(err(line, "RUN with a heredoc (<<) is not supported"));
            }
            Kind::Run(cmdline(rest))
        }
        "SHELL" => match cmdline(rest) {
            Cmdline::Exec(v) if !v.is_empty() => Kind::Shell(v),
            _ => {
                return Err(err(
                    line,
                    "SHELL requires the arguments to be in JSON form, such as [\"/bin/sh\", \"-c\"]",
                ));
            }
        },
        "HEALTHCHECK" => {
            need("CMD or NONE")?;
            let (sub, args) = match rest.find(char::is_whitespace) {
                Some(p) => (&rest[..p], rest[p..].trim_start()),
                None => (rest, ""),
            };
            match sub.to_ascii_uppercase().as_str() {
                "NONE" => {
                    if !args.is_empty() || !flags.is_empty() {
                        return Err(err(line, "HEALTHCHECK NONE takes no arguments or flags"));
                    }
                    Kind::Healthcheck(None)
                }
                "CMD" => {
                    if args.is_empty() {
                        return Err(err(line, "HEALTHCHECK CMD requires a command"));
                    }
                    Kind::Healthcheck(Some(cmdline(args)))
                }
                other => {
                    return Err(err(
                        line,
                        format!("HEALTHCHECK: expected CMD or NONE, found {other:?}"),
                    ));
                }
            }
        }
        "MAINTAINER" => {
            need("a name")?;
            Kind::Maintainer(rest.trim().to_owned())
        }
        "ONBUILD" => {
            need("an instruction")?;
            Kind::Onbuild(rest.trim().to_owned())
        }
        _ => unreachable!("keyword checked against the known list"),
    };
    Ok(Instruction {
        line,
        keyword,
        flags,
        kind,
        text: full_text,
    })
}

fn take_flags<'a>(
    line: usize,
    keyword: &str,
    mut rest: &'a str,
) -> Result<(Vec<Flag>, &'a str), ParseError> {
    let allowed = KNOWN_FLAGS
        .iter()
        .find(|(k, _)| *k == keyword)
        .map(|(_, f)| *f)
        .unwrap_or(&[]);
    let mut flags = Vec::new();
    while let Some(after) = rest.strip_prefix("--") {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let word = &after[..end];
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(unquote(v))),
            None => (word, None),
        };
        if !allowed.contains(&name) {
            return Err(err(line, format!("{keyword}: unknown flag --{name}")));
        }
        flags.push(Flag {
            name: name.to_owned(),
            value,
        });
        rest = after[end..].trim_start();
    }
    Ok((flags, rest))
}

fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        v[1..v.len() - 1].to_owned()
    } else {
        v.to_owned()
    }
}

fn single(line: usize, keyword: &str, rest: &str, escape: char) -> Result<String, ParseError> {
    let words = split_raw(rest, escape);
    match words.as_slice() {
        [w] => Ok(w.clone()),
        _ => Err(err(line, format!("{keyword} takes exactly one argument"))),
    }
}

fn cmdline(rest: &str) -> Cmdline {
    if rest.trim_start().starts_with('[')
        && let Some(v) = parse_json_array(rest)
    {
        return Cmdline::Exec(v);
    }
    Cmdline::Shell(rest.trim().to_owned())
}

fn parse_json_array(s: &str) -> Option<Vec<String>> {
    serde_json::from_str::<Vec<String>>(s.trim()).ok()
}

fn name_values(
    line: usize,
    keyword: &str,
    rest: &str,
    escape: char,
    legacy: bool,
) -> Result<Vec<(String, String)>, ParseError> {
    let words = split_raw(rest, escape);
    if legacy && !words[0].contains('=') {
        // `ENV key value with spaces`.
        let name = words[0].clone();
        let value = rest.trim_start()[name.len()..].trim().to_owned();
        if value.is_empty() {
            return Err(err(
                line,
                format!("{keyword} {name} needs a value (ENV {name}=value)"),
            ));
        }
        return Ok(vec![(name, value)]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(err(
                line,
                format!("{keyword}: expected key=value, found {w:?}"),
            ));
        };
        if k.is_empty() {
            return Err(err(line, format!("{keyword}: empty key in {w:?}")));
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

fn valid_stage_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn valid_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits on unquoted whitespace, keeping quotes and escapes in the words.
pub fn split_raw(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        if c == escape && quote != Some('\'') {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
            in_word = true;
            continue;
        }
        match quote {
            Some(q) if c == q => {
                quote = None;
                cur.push(c);
            }
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                cur.push(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Why expansion failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExpandError {
    /// `${VAR:?message}` with VAR unset.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The message.
        message: String,
    },
    /// A `${` without its `}` or an unsupported modifier.
    #[error("bad substitution in {0:?}")]
    Bad(String),
    /// An unterminated quote.
    #[error("unterminated quote in {0:?}")]
    Quote(String),
}

/// Expands variables in one raw word and removes its quotes and escapes, as Docker does for
/// ENV, LABEL, COPY and the rest: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:+alt}`, `${VAR+alt}`, `${VAR:?message}`; nothing inside single quotes.
pub fn expand_word(
    word: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some('\''), '\'') => quote = None,
            (Some('\''), _) => out.push(c),
            (_, c) if c == escape => {
                i += 1;
                match chars.get(i) {
                    // Inside double quotes only \" \\ \$ are escapes; otherwise keep the backslash.
                    Some(&n) if quote == Some('"') && !matches!(n, '"' | '$') && n != escape => {
                        out.push(c);
                        out.push(n);
                    }
                    Some(&n) => out.push(n),
                    None => out.push(c),
                }
            }
            (Some('"'), '"') => quote = None,
            (None, '"') | (None, '\'') => quote = Some(c),
            (_, '$') => {
                let (value, used) = expand_dollar(&chars[i..], vars, escape, word)?;
                out.push_str(&value);
                i += used;
                continue;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    if quote.is_some() {
        return Err(ExpandError::Quote(word.to_owned()));
    }
    Ok(out)
}

/// Expands a `$...` at the start of `chars`; returns the value and the chars consumed.
fn expand_dollar(
    chars: &[char],
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
    word: &str,
) -> Result<(String, usize), ExpandError> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.get(1) {
        Some('{') => {
            let mut depth = 1;
            let mut j = 2;
            while j < chars.len() {
                match chars[j] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            if j >= chars.len() {
                return Err(ExpandError::Bad(word.to_owned()));
            }
            let inner: String = chars[2..j].iter().collect();
            let name_len = inner.chars().take_while(|c| is_name(*c)).count();
            let name = &inner[..name_len];
            if name.is_empty() {
                return Err(ExpandError::Bad(word.to_owned()));
            }
            let rest = &inner[name_len..];
            let value = vars(name);
            let expand = |s: &str| expand_word(s, vars, escape);
            let result = if rest.is_empty() {
                value.unwrap_or_default()
            } else if let Some(d) = rest.strip_prefix(":-") {
                match value.filter(|v| !v.is_empty()) {
                    Some(v) => v,
                    None => expand(d)?,
                }
            } else if let Some(d) = rest.strip_prefix('-') {
                match value {
                    Some(v) => v,
                    None => expand(d)?,
                }
            } else if let Some(a) = rest.strip_prefix(":+") {
                if value.is_some_and(|v| !v.is_empty()) {
                    expand(a)?
                } else {
                    String::new()
                }
            } else if let Some(a) = rest.strip_prefix('+') {
                if value.is_some() {
                    expand(a)?
                } else {
                    String::new()
                }
            } else if let Some(m) = rest.strip_prefix(":?") {
                match value.filter(|v| !v.is_empty()) {
                    Some(v) => v,
                    None => {
                        return Err(ExpandError::Required {
                            name: name.to_owned(),
                            message: expand(m)?,
                        });
                    }
                }
            } else if let Some(m) = rest.strip_prefix('?') {
                match value {
                    Some(v) => v,
                    None => {
                        return Err(ExpandError::Required {
                            name: name.to_owned(),
                            message: expand(m)?,
                        });
                    }
                }
            } else {
                return Err(ExpandError::Bad(word.to_owned()));
            };
            Ok((result, j + 1))
        }
        Some(c) if is_name(*c) && !c.is_ascii_digit() => {
            let len = chars[1..].iter().take_while(|c| is_name(**c)).count();
            let name: String = chars[1..1 + len].iter().collect();
            Ok((vars(&name).unwrap_or_default(), 1 + len))
        }
        _ => Ok(("$".to_owned(), 1)),
    }
}

/// Splits a raw string into words and expands each (EXPOSE, VOLUME, COPY sources).
pub fn expand_words(
    raw: &[String],
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    raw.iter().map(|w| expand_word(w, vars, escape)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_table() {
        let cases = [
            ("$A", "alpha"),
            ("${A}", "alpha"),
            ("x${A}y", "xalphay"),
            ("${B:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${EMPTY-def}", ""),
            ("${A:+set}", "set"),
            ("${B:+set}", ""),
            ("${EMPTY+set}", "set"),
            ("'$A'", "$A"),
            ("\"$A b\"", "alpha b"),
            ("\\$A", "$A"),
            ("$", "$"),
            ("${B:-${A}}", "alpha"),
            ("a\\ b", "a b"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_word(input, &vars, '\\').unwrap(), want, "{input}");
        }
        assert!(matches!(
            expand_word("${B:?needed}", &vars, '\\'),
            Err(ExpandError::Required { .. })
        ));
        assert!(expand_word("${A", &vars, '\\').is_err());
        assert!(expand_word("\"open", &vars, '\\').is_err());
    }

    #[test]
    fn parses_a_dockerfile() {
        let df = parse(
            "# syntax=docker/dockerfile:1\n# escape=\\\nARG V=1\nFROM scratch AS base\n# comment\nCOPY --chown=1:1 \\\n  a \\\n  # inside\n  b /dst/\nENV A=1 B=\"two words\"\nENV LEGACY some value\nCMD [\"/bin/app\", \"x\"]\nENTRYPOINT /bin/app run\nHEALTHCHECK --interval=30s CMD [\"/app\", \"hc\"]\nHEALTHCHECK NONE\nEXPOSE 80 443/udp\nRUN echo hi\n",
        )
        .unwrap();
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
        let kinds: Vec<_> = df
            .instructions
            .iter()
            .map(|i| (i.line, i.keyword.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (3, "ARG"),
                (4, "FROM"),
                (6, "COPY"),
                (10, "ENV"),
                (11, "ENV"),
                (12, "CMD"),
                (13, "ENTRYPOINT"),
                (14, "HEALTHCHECK"),
                (15, "HEALTHCHECK"),
                (16, "EXPOSE"),
                (17, "RUN")
            ]
        );
        assert_eq!(df.instructions[2].flag("chown"), Some("1:1"));
        assert_eq!(
            df.instructions[2].kind,
            Kind::Copy {
                add: false,
                args: vec!["a".into(), "b".into(), "/dst/".into()]
            }
        );
        assert_eq!(
            df.instructions[3].kind,
            Kind::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"two words\"".into())
            ])
        );
        assert_eq!(
            df.instructions[4].kind,
            Kind::Env(vec![("LEGACY".into(), "some value".into())])
        );
        assert_eq!(
            df.instructions[5].kind,
            Kind::Cmd(Cmdline::Exec(vec!["/bin/app".into(), "x".into()]))
        );
        assert_eq!(
            df.instructions[6].kind,
            Kind::Entrypoint(Cmdline::Shell("/bin/app run".into()))
        );
        assert_eq!(df.instructions[8].kind, Kind::Healthcheck(None));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("FROM scratch\n\nFROBNICATE x\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("unknown instruction: FROBNICATE"));
        assert_eq!(
            parse("FROM scratch\nCOPY --bogus=1 a b\n")
                .unwrap_err()
                .line,
            2
        );
        assert!(
            parse("FROM scratch\nCOPY <<EOF /x\nhi\nEOF\n")
                .unwrap_err()
                .message
                .contains("heredoc")
        );
        assert!(parse("FROM scratch\nSHELL /bin/sh\n").is_err());
        assert!(parse("FROM\n").is_err());
    }

    #[test]
    fn backtick_escape() {
        let df = parse("# escape=`\nFROM scratch\nCOPY a `\n  b c:\\dir\\\n").unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(
            df.instructions[1].kind,
            Kind::Copy {
                add: false,
                args: vec!["a".into(), "b".into(), "c:\\dir\\".into()]
            }
        );
    }
}
