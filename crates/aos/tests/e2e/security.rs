//! The API demands a valid bearer token over TLS, and never answers plain HTTP.

use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::support::Aos;

/// Send one HTTP/1.1 request over TLS (trusting the kubeconfig's CA) and return the status code.
async fn https_status(aos: &Aos, path: &str, token: Option<&str>) -> u16 {
    let kubeconfig = aos.kubeconfig();
    let mut roots = rustls::RootCertStore::empty();
    let ca = kubeconfig.ca_pem.expect("kubeconfig has a CA");
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", aos.port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n{auth}Connection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default();
    status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_needs_a_valid_token_and_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let aos = Aos::start(&tmp.path().join("data")).await;
    let token = aos.kubeconfig().token.expect("kubeconfig has a token");

    assert_eq!(
        https_status(&aos, "/api/v1/namespaces", Some(&token)).await,
        200
    );
    assert_eq!(https_status(&aos, "/api/v1/namespaces", None).await, 401);
    assert_eq!(
        https_status(&aos, "/api/v1/namespaces", Some("wrong")).await,
        401
    );
    let mut almost = token.clone();
    almost.pop();
    almost.push(if token.ends_with('0') { '1' } else { '0' });
    assert_eq!(
        https_status(&aos, "/api/v1/namespaces", Some(&almost)).await,
        401
    );
    assert_eq!(https_status(&aos, "/metrics", None).await, 401);
    // Health needs no token.
    assert_eq!(https_status(&aos, "/readyz", None).await, 200);
    assert_eq!(https_status(&aos, "/livez", None).await, 200);

    // Plain HTTP on the API port: refused, or a 400, never an API answer.
    let mut tcp = TcpStream::connect(("127.0.0.1", aos.port))
        .await
        .expect("connect");
    let request = format!(
        "GET /api/v1/namespaces HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    if tcp.write_all(request.as_bytes()).await.is_ok() {
        let _ = tcp.read_to_end(&mut answer).await;
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or_default().to_string();
    assert!(
        status.is_empty() || status.contains(" 400"),
        "plain HTTP got an answer: {status:?}"
    );
    assert!(
        !text.contains("NamespaceList"),
        "plain HTTP was served: {text}"
    );

    // The CLI with a kubeconfig holding a wrong token fails with the server's 401.
    let bad = tmp.path().join("bad-kubeconfig.yaml");
    let text = std::fs::read_to_string(&aos.kubeconfig)
        .unwrap()
        .replace(&token, "0000");
    std::fs::write(&bad, text).unwrap();
    let run = super::support::run_aos(
        &["--kubeconfig", bad.to_str().unwrap(), "get", "namespaces"],
        None,
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
}
