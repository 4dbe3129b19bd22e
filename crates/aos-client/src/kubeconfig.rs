//! The standard kubeconfig file: clusters, users, contexts, current-context.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::ClientError;

/// The connection settings selected by a kubeconfig's current context.
#[derive(Clone)]
pub struct Kubeconfig {
    /// Server URL, e.g. `https://127.0.0.1:6443`.
    pub server: String,
    /// PEM of the CA that signs the server's certificate (`None`: no custom CA).
    pub ca_pem: Option<Vec<u8>>,
    /// Bearer token.
    pub token: Option<String>,
    /// Namespace of the current context, if set.
    pub namespace: Option<String>,
    /// Skip server certificate verification (`insecure-skip-tls-verify`); refused by [`crate::Client`].
    pub insecure_skip_tls_verify: bool,
}

impl std::fmt::Debug for Kubeconfig {
    // The token is a credential: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("server", &self.server)
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("namespace", &self.namespace)
            .finish()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct File {
    clusters: Vec<Named<ClusterEntry>>,
    users: Vec<Named<UserEntry>>,
    contexts: Vec<Named<ContextEntry>>,
    #[serde(rename = "current-context")]
    current_context: String,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: Option<T>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ClusterEntry {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify")]
    insecure_skip_tls_verify: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserEntry {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ContextEntry {
    cluster: String,
    user: String,
    namespace: Option<String>,
}

impl Kubeconfig {
    /// Read and resolve a kubeconfig file (relative file references are relative to it).
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", path.display())))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &base)
            .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))
    }

    /// Parse kubeconfig text; `base` resolves relative file paths.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let file: File =
            serde_saphyr::from_str(text).map_err(|e| format!("invalid kubeconfig: {e}"))?;
        let context_name = if file.current_context.is_empty() {
            file.contexts
                .first()
                .map(|c| c.name.clone())
                .ok_or("no contexts and no current-context")?
        } else {
            file.current_context.clone()
        };
        let context = file
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .and_then(|c| c.value.as_ref())
            .ok_or_else(|| format!("context {context_name:?} not found"))?;
        let cluster = file
            .clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .and_then(|c| c.value.as_ref())
            .ok_or_else(|| format!("cluster {:?} not found", context.cluster))?;
        if cluster.server.is_empty() {
            return Err(format!("cluster {:?} has no server", context.cluster));
        }
        let user = file
            .users
            .iter()
            .find(|u| u.name == context.user)
            .and_then(|u| u.value.as_ref());
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let ca_pem = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) if !data.trim().is_empty() => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|e| format!("certificate-authority-data: {e}"))?,
            ),
            (_, Some(file)) if !file.is_empty() => {
                let p = resolve(file);
                Some(std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?)
            }
            _ => None,
        };
        let token = match user {
            Some(UserEntry { token: Some(t), .. }) if !t.is_empty() => Some(t.clone()),
            Some(UserEntry {
                token_file: Some(f),
                ..
            }) if !f.is_empty() => {
                let p = resolve(f);
                let t = std::fs::read_to_string(&p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                Some(t.trim().to_string())
            }
            _ => None,
        };
        Ok(Kubeconfig {
            server: cluster.server.trim_end_matches('/').to_string(),
            ca_pem,
            token,
            namespace: context.namespace.clone().filter(|n| !n.is_empty()),
            insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: aos
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: aGVsbG8=
users:
- name: admin
  user:
    token: abc123
contexts:
- name: aos
  context:
    cluster: aos
    user: admin
    namespace: prod
current-context: aos
"#;

    #[test]
    fn parses_standard_kubeconfig() {
        let k = Kubeconfig::parse(SAMPLE, Path::new("/")).unwrap();
        assert_eq!(k.server, "https://127.0.0.1:6443");
        assert_eq!(k.ca_pem.as_deref(), Some(&b"hello"[..]));
        assert_eq!(k.token.as_deref(), Some("abc123"));
        assert_eq!(k.namespace.as_deref(), Some("prod"));
        assert!(!format!("{k:?}").contains("abc123"));
    }

    #[test]
    fn token_file_and_ca_file_are_relative_to_the_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), b"PEM").unwrap();
        std::fs::write(dir.path().join("tok"), b"secret\n").unwrap();
        let text = "clusters:\n- name: c\n  cluster:\n    server: https://h:1\n    certificate-authority: ca.pem\nusers:\n- name: u\n  user:\n    tokenFile: tok\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n";
        let k = Kubeconfig::parse(text, dir.path()).unwrap();
        assert_eq!(k.ca_pem.as_deref(), Some(&b"PEM"[..]));
        assert_eq!(k.token.as_deref(), Some("secret"));
    }

    #[test]
    fn missing_context_is_an_error() {
        let err =
            Kubeconfig::parse("current-context: nope\ncontexts: []\n", Path::new("/")).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }
}
