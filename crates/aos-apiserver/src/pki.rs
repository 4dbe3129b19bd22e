//! The data dir's PKI, tokens and kubeconfig.
//!
//! Layout (all keys and credentials 0600):
//! - `pki/ca.crt`, `pki/ca.key`: an ECDSA P-256 CA, made once, valid 10 years.
//! - `pki/apiserver.crt`, `pki/apiserver.key`: the serving certificate, signed by
//!   the CA, for 127.0.0.1, ::1, localhost, the hostname and the external hosts;
//!   `pki/apiserver.sans` records its names and expiry so it is re-issued when
//!   they change or it nears expiry.
//! - `pki/apiserver-node-client.crt`, `pki/apiserver-node-client.key`: the client
//!   certificate the API server presents to node agents (logs, resource stats),
//!   signed by the CA, Common Name `aos:apiserver`, ExtendedKeyUsage clientAuth;
//!   `pki/apiserver-node-client.expiry` records its expiry so it is re-issued
//!   when it nears it (or when the CA is new).
//! - `tokens.csv`: the token table (see [`crate::auth`]), with the admin's token.
//! - `kubeconfig.yaml`: the admin's kubeconfig.
//!
//! Certificates are generated only at first start (or when the names change);
//! a normal start only reads files.

use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};

use crate::error::ApiServerError;

const CA_DAYS: i64 = 3650;
const SERVING_DAYS: i64 = 730;
/// Re-issue the serving certificate when it expires within this many days.
const RENEW_DAYS: i64 = 30;
/// Common Name of the API server's client certificate towards node agents.
pub(crate) const NODE_CLIENT_CN: &str = "aos:apiserver";

/// The loaded PKI: what the listener and the kubeconfig need.
pub(crate) struct Pki {
    /// PEM of the CA certificate (goes into kubeconfigs).
    pub(crate) ca_pem: String,
    /// TLS settings of the listener.
    pub(crate) server_config: Arc<rustls::ServerConfig>,
    /// The client identity presented to node agents.
    pub(crate) node_client: ClientIdentity,
}

/// A client certificate chain and its key.
pub(crate) struct ClientIdentity {
    /// The certificate (first) and any intermediates.
    pub(crate) chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The private key.
    pub(crate) key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ApiServerError + '_ {
    move |source| ApiServerError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Write `data` to `path` atomically (temp file + rename) with `mode`.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), ApiServerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    // `mode` is filtered by the umask on create; set it exactly.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}

fn hostname() -> Option<String> {
    let h = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_string())
}

/// The names the serving certificate covers, sorted and deduplicated.
pub(crate) fn serving_names(external_hosts: &[String]) -> Vec<String> {
    let mut names = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ];
    names.extend(hostname());
    names.extend(
        external_hosts
            .iter()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty()),
    );
    names.sort();
    names.dedup();
    names
}

fn ymd(unix_days_from_now: i64) -> (i32, u8, u8) {
    let ts = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * unix_days_from_now);
    let d = ts.to_zoned(jiff::tz::TimeZone::UTC).date();
    (i32::from(d.year()), d.month() as u8, d.day() as u8)
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "aos-ca");
    dn.push(DnType::OrganizationName, "aos");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn pki_err(e: impl std::fmt::Display) -> ApiServerError {
    ApiServerError::Pki(e.to_string())
}

/// Load or create the CA and the serving certificate under `data_dir/pki`.
pub(crate) fn ensure(data_dir: &Path, external_hosts: &[String]) -> Result<Pki, ApiServerError> {
    let dir = data_dir.join("pki");
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err(&dir))?;
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let new_ca = !ca_crt.exists() || !ca_key.exists();
    if new_ca {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(pki_err)?;
        let mut params = ca_params();
        let (y, m, d) = ymd(-1);
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = ymd(CA_DAYS);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = params.self_signed(&key).map_err(pki_err)?;
        write_atomic(&ca_key, key.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&ca_crt, cert.pem().as_bytes(), 0o644)?;
        tracing::info!(path = %ca_crt.display(), "generated the cluster CA");
    }
    let ca_pem = fs::read_to_string(&ca_crt).map_err(io_err(&ca_crt))?;

    let names = serving_names(external_hosts);
    let (crt, key_path, sans_path) = (
        dir.join("apiserver.crt"),
        dir.join("apiserver.key"),
        dir.join("apiserver.sans"),
    );
    let wanted_sans = names.join(",");
    let now = jiff::Timestamp::now().as_second();
    let current = fs::read_to_string(&sans_path).ok().and_then(|s| {
        let (sans, not_after) = s.trim().split_once('\n')?;
        Some((sans.to_string(), not_after.trim().parse::<i64>().ok()?))
    });
    let fresh = matches!(&current, Some((sans, not_after)) if *sans == wanted_sans && *not_after - now > RENEW_DAYS * 86_400);
    if !fresh || !crt.exists() || !key_path.exists() {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "aos-apiserver");
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName).map_err(pki_err),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        issue_leaf(&ca_key, params, &key_path, &crt, 0o644)?;
        let not_after = now + SERVING_DAYS * 86_400;
        write_atomic(
            &sans_path,
            format!("{wanted_sans}\n{not_after}\n").as_bytes(),
            0o644,
        )?;
        tracing::info!(names = %wanted_sans, "issued the API server's serving certificate");
    }

    let ClientIdentity { chain, key } = load_identity(&crt, &key_path)?;
    let node_client = ensure_node_client(&dir, new_ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(pki_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(pki_err)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Pki {
        ca_pem,
        server_config: Arc::new(config),
        node_client,
    })
}

/// Read a PEM certificate chain and its PEM private key.
fn load_identity(crt: &Path, key_path: &Path) -> Result<ClientIdentity, ApiServerError> {
    let crt_pem = fs::read(crt).map_err(io_err(crt))?;
    let key_pem = fs::read(key_path).map_err(io_err(key_path))?;
    let mut chain = Vec::new();
    for c in rustls_pemfile::certs(&mut crt_pem.as_slice()) {
        chain.push(c.map_err(pki_err)?);
    }
    if chain.is_empty() {
        return Err(ApiServerError::Pki(format!(
            "{}: no certificate",
            crt.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(pki_err)?
        .ok_or_else(|| ApiServerError::Pki(format!("{}: no private key", key_path.display())))?;
    Ok(ClientIdentity { chain, key })
}

/// Sign `params` (subject and usages set) with the cluster CA whose key is at `ca_key`, valid
/// from yesterday for `SERVING_DAYS`, and write a new key (mode 0600) and the certificate
/// (`crt_mode`).
fn issue_leaf(
    ca_key: &Path,
    mut params: CertificateParams,
    key_path: &Path,
    crt: &Path,
    crt_mode: u32,
) -> Result<(), ApiServerError> {
    let ca_key_pem = fs::read_to_string(ca_key).map_err(io_err(ca_key))?;
    let issuer = Issuer::new(
        ca_params(),
        KeyPair::from_pem(&ca_key_pem).map_err(pki_err)?,
    );
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(pki_err)?;
    let (y, m, d) = ymd(-1);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(SERVING_DAYS);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let cert = params.signed_by(&key, &issuer).map_err(pki_err)?;
    write_atomic(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(crt, cert.pem().as_bytes(), crt_mode)
}

/// Load, or issue (first start, a new CA, or near expiry), the client certificate the
/// API server presents to node agents: CN `aos:apiserver`, clientAuth, signed by the CA.
fn ensure_node_client(dir: &Path, new_ca: bool) -> Result<ClientIdentity, ApiServerError> {
    let (crt, key_path, expiry_path) = (
        dir.join("apiserver-node-client.crt"),
        dir.join("apiserver-node-client.key"),
        dir.join("apiserver-node-client.expiry"),
    );
    let now = jiff::Timestamp::now().as_second();
    let fresh = fs::read_to_string(&expiry_path)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .is_some_and(|not_after| not_after - now > RENEW_DAYS * 86_400);
    if new_ca || !fresh || !crt.exists() || !key_path.exists() {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, NODE_CLIENT_CN);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        issue_leaf(&dir.join("ca.key"), params, &key_path, &crt, 0o600)?;
        let not_after = now + SERVING_DAYS * 86_400;
        write_atomic(&expiry_path, format!("{not_after}\n").as_bytes(), 0o644)?;
        tracing::info!(
            cn = NODE_CLIENT_CN,
            "issued the API server's client certificate for node agents"
        );
    }
    load_identity(&crt, &key_path)
}

/// The URL clients use for a listener address (wildcards become loopback).
pub(crate) fn server_url(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => format!("https://127.0.0.1:{}", addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => format!("https://[::1]:{}", addr.port()),
        IpAddr::V4(ip) => format!("https://{ip}:{}", addr.port()),
        IpAddr::V6(ip) => format!("https://[{ip}]:{}", addr.port()),
    }
}

/// A YAML double-quoted scalar.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Write the admin kubeconfig (0600: it holds a credential), atomically.
pub(crate) fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    token: &str,
) -> Result<(), ApiServerError> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: aos\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: aos-admin\n  user:\n    token: {}\ncontexts:\n- name: aos\n  context:\n    cluster: aos\n    user: aos-admin\n    namespace: default\ncurrent-context: aos\npreferences: {{}}\n",
        yaml_str(server),
        ca,
        yaml_str(token),
    );
    write_atomic(path, text.as_bytes(), 0o600)
}

/// The kubeconfig path in a data dir.
pub(crate) fn kubeconfig_path(data_dir: &Path) -> PathBuf {
    data_dir.join("kubeconfig.yaml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let a = ensure(dir.path(), &["example.test".into()]).unwrap();
        let key_mode = fs::metadata(dir.path().join("pki/ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(key_mode, 0o600);
        let crt1 = fs::read(dir.path().join("pki/apiserver.crt")).unwrap();
        let b = ensure(dir.path(), &["example.test".into()]).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(
            crt1,
            fs::read(dir.path().join("pki/apiserver.crt")).unwrap()
        );
        // New names re-issue the serving certificate under the same CA.
        let c = ensure(dir.path(), &["other.test".into()]).unwrap();
        assert_eq!(a.ca_pem, c.ca_pem);
        assert_ne!(
            crt1,
            fs::read(dir.path().join("pki/apiserver.crt")).unwrap()
        );
        // The node client certificate is made once, kept private, and reused.
        let client_key = dir.path().join("pki/apiserver-node-client.key");
        for f in [
            &client_key,
            &dir.path().join("pki/apiserver-node-client.crt"),
        ] {
            let mode = fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
        assert_eq!(a.node_client.chain, c.node_client.chain);
    }

    #[test]
    fn server_url_of_wildcards_is_loopback() {
        assert_eq!(
            server_url("0.0.0.0:6443".parse().unwrap()),
            "https://127.0.0.1:6443"
        );
        assert_eq!(server_url("[::]:1".parse().unwrap()), "https://[::1]:1");
    }
}
