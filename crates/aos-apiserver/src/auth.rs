//! Authentication (bearer tokens from a token table) and authorization (groups).
//!
//! `DATA_DIR/tokens.csv` (0600) has one line per token, in the format of
//! Kubernetes' static token file: `token,user,uid,"group1,group2"`. Lines
//! starting with `#` are comments. The first start writes the admin's line:
//! a random 32-byte hex token for user `admin` in group `system:masters`.
//!
//! Authorization is by group: `system:masters` may do everything; `viewers`
//! (or `aos:viewers`) may only get, list and watch (read-only methods); any
//! other authenticated user is refused with 403 Forbidden.

use std::path::Path;
use std::sync::Arc;

use http::Method;
use rand::RngCore as _;

use crate::error::ApiServerError;

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) groups: Vec<String>,
}

/// Group with every right.
pub(crate) const MASTERS: &str = "system:masters";
/// Read-only groups.
const VIEWERS: [&str; 2] = ["viewers", "aos:viewers"];

impl User {
    /// Whether the user may send a request with `method`.
    pub(crate) fn may(&self, method: &Method) -> bool {
        if self.groups.iter().any(|g| g == MASTERS) {
            return true;
        }
        let read_only = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        read_only && self.groups.iter().any(|g| VIEWERS.contains(&g.as_str()))
    }
}

/// The token table.
pub(crate) struct Tokens {
    entries: Vec<(Vec<u8>, Arc<User>)>,
    admin_token: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// Compare two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    diff == 0
}

fn parse_line(line: &str) -> Option<(String, User)> {
    // token,user,uid[,"g1,g2"] — the groups field may be quoted and contain commas.
    let (head, groups) = match line.find('"') {
        Some(i) => {
            let rest = &line[i + 1..];
            let end = rest.find('"')?;
            (
                line[..i].trim_end_matches(',').to_string(),
                rest[..end].to_string(),
            )
        }
        None => {
            let mut parts = line.splitn(4, ',');
            let t = parts.next()?;
            let u = parts.next()?;
            let id = parts.next().unwrap_or("");
            let g = parts.next().unwrap_or("");
            (format!("{t},{u},{id}"), g.to_string())
        }
    };
    let mut parts = head.split(',');
    let token = parts.next()?.trim().to_string();
    let name = parts.next()?.trim().to_string();
    if token.is_empty() || name.is_empty() {
        return None;
    }
    let groups = groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    Some((token, User { name, groups }))
}

impl Tokens {
    /// Load `data_dir/tokens.csv`, creating it with an admin token on first start.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Self, ApiServerError> {
        let path = data_dir.join("tokens.csv");
        if !path.exists() {
            let mut raw = [0u8; 32];
            rand::rng().fill_bytes(&mut raw);
            let token = hex::encode(raw);
            let text = format!(
                "# token,user,uid,\"groups\" — one bearer token per line (Kubernetes static token file format)\n{token},admin,admin,\"{MASTERS}\"\n"
            );
            crate::pki::write_atomic(&path, text.as_bytes(), 0o600)?;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ApiServerError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub(crate) fn parse(text: &str) -> Result<Self, ApiServerError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (token, user) = parse_line(line).ok_or_else(|| {
                ApiServerError::Tokens(format!(
                    "line {}: expected token,user,uid,\"groups\"",
                    i + 1
                ))
            })?;
            entries.push((token.into_bytes(), Arc::new(user)));
        }
        let admin_token = entries
            .iter()
            .find(|(_, u)| u.groups.iter().any(|g| g == MASTERS))
            .map(|(t, _)| String::from_utf8_lossy(t).into_owned())
            .ok_or_else(|| ApiServerError::Tokens(format!("no token in group {MASTERS}")))?;
        Ok(Tokens {
            entries,
            admin_token,
        })
    }

    /// The token of the first `system:masters` user (for the kubeconfig).
    pub(crate) fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The user a bearer token belongs to. Every entry is compared, in constant time.
    pub(crate) fn authenticate(&self, token: &str) -> Option<Arc<User>> {
        let mut found = None;
        for (t, user) in &self.entries {
            if constant_time_eq(t, token.as_bytes()) && found.is_none() {
                found = Some(user.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_token_file() {
        let t =
            Tokens::parse("# c\nabc,admin,1,\"system:masters,x\"\nro,alice,2,viewers\nno,bob,3\n")
                .unwrap();
        assert_eq!(t.admin_token(), "abc");
        let admin = t.authenticate("abc").unwrap();
        assert_eq!(admin.groups, vec!["system:masters", "x"]);
        assert!(admin.may(&Method::DELETE));
        let alice = t.authenticate("ro").unwrap();
        assert!(alice.may(&Method::GET) && !alice.may(&Method::POST));
        let bob = t.authenticate("no").unwrap();
        assert!(!bob.may(&Method::GET));
        assert!(t.authenticate("ab").is_none());
        assert!(t.authenticate("").is_none());
    }

    #[test]
    fn creates_admin_token() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::load_or_create(dir.path()).unwrap();
        assert_eq!(t.admin_token().len(), 64);
        let again = Tokens::load_or_create(dir.path()).unwrap();
        assert_eq!(t.admin_token(), again.admin_token());
    }
}
