//! Image references: `name[:tag]`, `name@sha256:…`, `sha256:…` and digest prefixes.

use std::fmt;

use crate::digest::Digest;

/// Why a reference does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// Empty input.
    #[error("empty image reference")]
    Empty,
    /// The name has characters a registry would refuse.
    #[error(
        "invalid image reference {0:?}: names are lowercase letters, digits and . _ - / separators, tags up to 128 of [A-Za-z0-9_.-]"
    )]
    Invalid(String),
    /// The digest part is malformed.
    #[error("invalid digest in image reference {reference:?}: {source}")]
    Digest {
        /// The reference.
        reference: String,
        /// Why.
        source: crate::digest::DigestError,
    },
}

/// A parsed reference. `name:tag` refs keep their short names as given; [`Reference::normalized`]
/// gives the fully qualified Docker form for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `name[:tag][@digest]`.
    Named {
        /// The repository name, as given (`agent-registry`, `ghcr.io/x/y`).
        name: String,
        /// The tag (`latest` when none is given and there is no digest).
        tag: Option<String>,
        /// A pinned digest.
        digest: Option<Digest>,
    },
    /// `sha256:<hex>` or a unique prefix of one (with or without `sha256:`).
    DigestPrefix(String),
}

impl Reference {
    /// Parses a reference. A bare string of 4–64 hex digits or `sha256:<hex prefix>` is a digest
    /// prefix only if `allow_prefix`; otherwise it is a name.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if let Some(hex) = s.strip_prefix("sha256:") {
            if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ReferenceError::Digest {
                    reference: s.to_owned(),
                    source: crate::digest::DigestError::Malformed(s.to_owned()),
                });
            }
            return Ok(Self::DigestPrefix(hex.to_ascii_lowercase()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let d = d.parse().map_err(|source| ReferenceError::Digest {
                    reference: s.to_owned(),
                    source,
                })?;
                (rest, Some(d))
            }
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_owned())),
            _ => (rest, None),
        };
        if !valid_name(name) || tag.as_deref().is_some_and(|t| !valid_tag(t)) {
            return Err(ReferenceError::Invalid(s.to_owned()));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_owned())
        } else {
            tag
        };
        Ok(Self::Named {
            name: name.to_owned(),
            tag,
            digest,
        })
    }

    /// `name:tag` for a named reference with a tag.
    pub fn name_tag(&self) -> Option<String> {
        match self {
            Self::Named {
                name,
                tag: Some(tag),
                ..
            } => Some(format!("{name}:{tag}")),
            _ => None,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Named { name, tag, digest } => {
                f.write_str(name)?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                if let Some(d) = digest {
                    write!(f, "@{d}")?;
                }
                Ok(())
            }
            Self::DigestPrefix(p) => write!(f, "sha256:{p}"),
        }
    }
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        && !t.starts_with(['.', '-'])
}

fn valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let mut parts = name.split('/').peekable();
    let mut first = true;
    while let Some(part) = parts.next() {
        if part.is_empty() {
            return false;
        }
        // The first component may be a registry host with a port and upper case letters.
        let is_host = first
            && parts.peek().is_some()
            && (part.contains('.') || part.contains(':') || part == "localhost");
        first = false;
        if is_host {
            if !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
            {
                return false;
            }
            continue;
        }
        let ok_chars = part.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
        });
        let ok_ends = part.as_bytes()[0].is_ascii_alphanumeric()
            && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric();
        if !ok_chars || !ok_ends {
            return false;
        }
    }
    true
}

/// The fully qualified Docker form of a repository name: `agent-registry` →
/// `docker.io/library/agent-registry`, `me/app` → `docker.io/me/app`; names with a registry host
/// are unchanged.
pub fn normalize_name(name: &str) -> String {
    match name.split_once('/') {
        None => format!("docker.io/library/{name}"),
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            if let Some(rest) = name.strip_prefix("index.docker.io/") {
                return normalize_name(&format!("docker.io/{rest}"));
            }
            if let Some(rest) = name.strip_prefix("docker.io/")
                && !rest.contains('/')
            {
                return format!("docker.io/library/{rest}");
            }
            name.to_owned()
        }
        Some(_) => format!("docker.io/{name}"),
    }
}

/// The short ("familiar") form Docker prints: `docker.io/library/app` → `app`,
/// `docker.io/me/app` → `me/app`; other registries unchanged.
pub fn familiar_name(name: &str) -> String {
    let full = normalize_name(name);
    match full.strip_prefix("docker.io/") {
        Some(rest) => rest
            .strip_prefix("library/")
            .filter(|r| !r.contains('/'))
            .unwrap_or(rest)
            .to_owned(),
        None => full,
    }
}

/// `name:tag` with the familiar name, for refs that come from other tools.
pub fn familiar_name_tag(reference: &str) -> Option<String> {
    match Reference::parse(reference).ok()? {
        Reference::Named {
            name,
            tag: Some(tag),
            ..
        } => Some(format!("{}:{tag}", familiar_name(&name))),
        _ => None,
    }
}

/// Whether two `name:tag` strings denote the same image name and tag after normalization.
pub fn same_name_tag(a: &str, b: &str) -> bool {
    match (Reference::parse(a), Reference::parse(b)) {
        (
            Ok(Reference::Named {
                name: na, tag: ta, ..
            }),
            Ok(Reference::Named {
                name: nb, tag: tb, ..
            }),
        ) => ta == tb && normalize_name(&na) == normalize_name(&nb),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let cases = [
            (
                "agent-registry:1.0.0",
                "agent-registry",
                Some("1.0.0"),
                false,
            ),
            ("agent-registry", "agent-registry", Some("latest"), false),
            (
                "localhost:5000/a/b",
                "localhost:5000/a/b",
                Some("latest"),
                false,
            ),
            (
                "localhost:5000/a/b:v1",
                "localhost:5000/a/b",
                Some("v1"),
                false,
            ),
        ];
        for (input, name, tag, has_digest) in cases {
            match Reference::parse(input).unwrap() {
                Reference::Named {
                    name: n,
                    tag: t,
                    digest,
                } => {
                    assert_eq!(n, name, "{input}");
                    assert_eq!(t.as_deref(), tag, "{input}");
                    assert_eq!(digest.is_some(), has_digest);
                }
                other => panic!("{input}: {other:?}"),
            }
        }
        let d = Digest::of(b"x");
        match Reference::parse(&format!("app@{d}")).unwrap() {
            Reference::Named {
                tag: None,
                digest: Some(got),
                ..
            } => assert_eq!(got, d),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Reference::parse("sha256:abcd").unwrap(),
            Reference::DigestPrefix("abcd".into())
        );
        for bad in [
            "",
            "UPPER",
            "a//b",
            "a:",
            "a:-x",
            "-a",
            "sha256:xyz",
            "a@sha256:12",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn normalizes() {
        assert_eq!(
            normalize_name("agent-registry"),
            "docker.io/library/agent-registry"
        );
        assert_eq!(
            normalize_name("docker.io/agent-registry"),
            "docker.io/library/agent-registry"
        );
        assert_eq!(normalize_name("me/app"), "docker.io/me/app");
        assert_eq!(normalize_name("ghcr.io/me/app"), "ghcr.io/me/app");
        assert!(same_name_tag(
            "agent-registry:1.0.0",
            "docker.io/library/agent-registry:1.0.0"
        ));
        assert!(same_name_tag("busybox", "busybox:latest"));
        assert!(!same_name_tag("busybox:1", "busybox:2"));
        assert_eq!(familiar_name("docker.io/library/app"), "app");
        assert_eq!(familiar_name("docker.io/me/app"), "me/app");
        assert_eq!(familiar_name("ghcr.io/me/app"), "ghcr.io/me/app");
        assert_eq!(
            familiar_name_tag("docker.io/library/app:1").as_deref(),
            Some("app:1")
        );
    }
}
