//! Requests from the API server to node agents, as kube-apiserver talks to kubelets.
//!
//! Where: the Node's `InternalIP` (from `status.addresses`) and the port in
//! `status.daemonEndpoints.kubeletEndpoint.Port`.
//!
//! Trust, both ways:
//! - the node's serving certificate is self-signed and pinned: the SHA-256 of its
//!   DER must equal the lowercase hex in the Node's annotation
//!   `node.aos.dev/serving-cert-sha256` (no CA, no host name check, no expiry
//!   check: the pin names exactly one certificate). The handshake signature is
//!   still verified with the crypto provider's algorithms, so only the holder of
//!   that certificate's key can answer;
//! - the API server presents its client certificate (`pki/apiserver-node-client.crt`,
//!   CN `aos:apiserver`, signed by the cluster CA).
//!
//! Connections are HTTP/1.1 over TLS. Short requests (resource stats) return their
//! connection to a small per-node idle pool once the answer is read; a stream (a
//! followed log) keeps its connection, which closes when the stream ends or its
//! reader drops it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpStream;

use crate::error::ApiError;
use crate::pki::ClientIdentity;

/// The Node annotation holding the hex SHA-256 of the agent's serving certificate.
pub(crate) const PIN_ANNOTATION: &str = "node.aos.dev/serving-cert-sha256";
/// How long connecting (TCP and TLS) to a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node may take to answer a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error answer is read (it is a one-line reason).
const ERROR_BODY_LIMIT: usize = 16 * 1024;
/// Idle connections kept per node.
const MAX_IDLE_PER_NODE: usize = 4;

/// Why a node could not be asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NodeError {
    /// No Node of that name.
    #[error("node \"{0}\" not found")]
    NotFound(String),
    /// The Node's Ready condition is not True.
    #[error("node \"{node}\" is not ready: {reason}")]
    NotReady {
        /// The node.
        node: String,
        /// The Ready condition's message or reason.
        reason: String,
    },
    /// The Node has no usable `InternalIP`.
    #[error("node \"{0}\" publishes no InternalIP address")]
    NoAddress(String),
    /// The Node has no agent port.
    #[error("node \"{0}\" publishes no agent port (status.daemonEndpoints.kubeletEndpoint.Port)")]
    NoPort(String),
    /// The Node has no (or a malformed) serving-certificate pin.
    #[error("node \"{0}\" does not publish its serving certificate")]
    NoPin(String),
    /// The node's certificate is not the pinned one.
    #[error(
        "node \"{node}\" presented a serving certificate (sha256 {got}) that does not match the one it publishes (sha256 {want})"
    )]
    PinMismatch {
        /// The node.
        node: String,
        /// SHA-256 of the certificate presented.
        got: String,
        /// The published pin.
        want: String,
    },
    /// TCP, TLS or HTTP failed.
    #[error("cannot reach node \"{node}\" at {addr}: {reason}")]
    Unreachable {
        /// The node.
        node: String,
        /// Its agent's address.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The agent refused the API server's client certificate.
    #[error("node \"{node}\" refused the API server's client certificate: {reason}")]
    Refused {
        /// The node.
        node: String,
        /// The TLS alert or the agent's answer.
        reason: String,
    },
    /// The node did not answer in time.
    #[error("node \"{node}\" did not answer within {seconds}s")]
    Timeout {
        /// The node.
        node: String,
        /// The time allowed.
        seconds: u64,
    },
    /// The agent answered with an error status.
    #[error("node \"{node}\" answered {code}: {message}")]
    Status {
        /// The node.
        node: String,
        /// The HTTP status.
        code: StatusCode,
        /// The agent's one-line reason.
        message: String,
    },
    /// The agent's answer could not be read or decoded.
    #[error("node \"{node}\" sent an unreadable answer: {reason}")]
    Answer {
        /// The node.
        node: String,
        /// What was wrong.
        reason: String,
    },
}

impl From<NodeError> for ApiError {
    /// The agent's 400 and 404 pass through with its reason (as kube-apiserver passes a
    /// kubelet's); everything else means the node cannot serve now: 503 naming the node.
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Status { code, message, .. } if code == StatusCode::BAD_REQUEST => {
                ApiError::bad_request(message)
            }
            NodeError::Status { code, message, .. } if code == StatusCode::NOT_FOUND => {
                ApiError::new(StatusCode::NOT_FOUND, "NotFound", message)
            }
            NodeError::Status {
                node,
                code,
                message,
            } if code == StatusCode::FORBIDDEN || code == StatusCode::UNAUTHORIZED => {
                ApiError::unavailable(
                    NodeError::Refused {
                        node,
                        reason: format!("{code}: {message}"),
                    }
                    .to_string(),
                )
            }
            other => ApiError::unavailable(other.to_string()),
        }
    }
}

/// Where and how to reach one node's agent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NodeTarget {
    /// The Node's name.
    pub(crate) name: String,
    /// The agent's HTTPS address.
    pub(crate) addr: SocketAddr,
    /// SHA-256 of the agent's serving certificate.
    pub(crate) pin: [u8; 32],
}

/// Whether a Node's Ready condition is True; else the condition's explanation.
pub(crate) fn readiness(node: &Value) -> Result<(), String> {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        });
    let Some(ready) = ready else {
        return Err("it has not reported a Ready condition".into());
    };
    if ready.get("status").and_then(Value::as_str) == Some("True") {
        return Ok(());
    }
    let text = |k: &str| {
        ready
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    Err(text("message")
        .or_else(|| text("reason"))
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "Ready is {}",
                ready
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("Unknown")
            )
        }))
}

/// The Node `name` from the store; a missing one is a [`NodeError::NotFound`] (503: the
/// requests for its pods cannot be served).
pub(crate) async fn read_node(store: &dyn aos_store::Store, name: &str) -> Result<Value, ApiError> {
    let nodes = aos_types::resource::by_plural("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not in the resource table"))?;
    let key = crate::objects::key(nodes, None, name);
    let kv = store
        .get(&key)
        .await
        .map_err(|e| ApiError::internal(format!("reading node {name}: {e}")))?;
    match kv {
        Some(kv) => crate::objects::decode_kv(&kv),
        None => Err(NodeError::NotFound(name.to_string()).into()),
    }
}

impl NodeTarget {
    /// Read a Ready Node's agent address and pin.
    pub(crate) fn from_node(node: &Value) -> Result<Self, NodeError> {
        let name = node
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Err(reason) = readiness(node) {
            return Err(NodeError::NotReady { node: name, reason });
        }
        let ip = node
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
            .filter_map(|a| a.get("address").and_then(Value::as_str))
            .find_map(|a| a.trim().parse::<IpAddr>().ok());
        let Some(ip) = ip else {
            return Err(NodeError::NoAddress(name));
        };
        let port = node
            .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0);
        let Some(port) = port else {
            return Err(NodeError::NoPort(name));
        };
        let pin = node
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(PIN_ANNOTATION))
            .and_then(Value::as_str)
            .and_then(|h| hex::decode(h.trim()).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok());
        let Some(pin) = pin else {
            return Err(NodeError::NoPin(name));
        };
        Ok(NodeTarget {
            name,
            addr: SocketAddr::new(ip, port),
            pin,
        })
    }
}

/// A TLS server-certificate verifier that accepts exactly the end-entity certificate whose
/// SHA-256 digest it was given (the node agent's self-signed serving certificate, pinned in its
/// Node's `node.aos.dev/serving-cert-sha256` annotation), and checks handshake signatures with
/// the provider's algorithms. It remembers the digest of a refused certificate, so that the
/// caller can say what was presented.
#[derive(Debug)]
pub struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    refused: Mutex<Option<[u8; 32]>>,
}

impl PinVerifier {
    /// A verifier for the certificate whose SHA-256 digest is `pin`.
    pub fn new(pin: [u8; 32], provider: Arc<CryptoProvider>) -> Self {
        PinVerifier {
            pin,
            provider,
            refused: Mutex::new(None),
        }
    }

    /// The digest of the last certificate refused, if any.
    pub fn refused(&self) -> Option<[u8; 32]> {
        self.refused.lock().ok().and_then(|r| *r)
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if digest == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        if let Ok(mut refused) = self.refused.lock() {
            *refused = Some(digest);
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

type Sender = http1::SendRequest<Empty<Bytes>>;

/// The API server's client of node agents. Shared by all requests.
pub(crate) struct NodeClient {
    identity: ClientIdentity,
    provider: Arc<CryptoProvider>,
    idle: Mutex<HashMap<NodeTarget, Vec<Sender>>>,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient").finish_non_exhaustive()
    }
}

/// An error and its sources on one line.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

/// The TLS alert the peer sent, if that is what ended the exchange.
fn alert_of(e: &(dyn std::error::Error + 'static)) -> Option<rustls::AlertDescription> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::AlertReceived(alert)) = tls {
            return Some(*alert);
        }
        current = err.source();
    }
    None
}

/// Classify a failed exchange: a TLS alert after our certificate went out means the
/// agent refused it.
fn exchange_error(node: &NodeTarget, e: &(dyn std::error::Error + 'static)) -> NodeError {
    match alert_of(e) {
        Some(alert) => NodeError::Refused {
            node: node.name.clone(),
            reason: format!("TLS alert {alert:?}"),
        },
        None => NodeError::Unreachable {
            node: node.name.clone(),
            addr: node.addr,
            reason: chain_text(e),
        },
    }
}

impl NodeClient {
    pub(crate) fn new(identity: ClientIdentity) -> Self {
        NodeClient {
            identity,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// A new TLS connection to `node`, its driver spawned.
    async fn connect(&self, node: &NodeTarget) -> Result<Sender, NodeError> {
        let verifier = Arc::new(PinVerifier::new(node.pin, self.provider.clone()));
        let tls_error = |e: rustls::Error| NodeError::Unreachable {
            node: node.name.clone(),
            addr: node.addr,
            reason: format!("tls settings: {e}"),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_auth_cert(self.identity.chain.clone(), self.identity.key.clone_key())
            .map_err(tls_error)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let timeout = || NodeError::Timeout {
            node: node.name.clone(),
            seconds: CONNECT_TIMEOUT.as_secs(),
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(node.addr))
            .await
            .map_err(|_| timeout())?
            .map_err(|e| exchange_error(node, &e))?;
        let _ = tcp.set_nodelay(true);
        let server_name = ServerName::IpAddress(node.addr.ip().into());
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tls = match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name, tcp))
            .await
        {
            Err(_) => return Err(timeout()),
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                let refused = verifier.refused();
                return Err(match refused {
                    Some(got) => NodeError::PinMismatch {
                        node: node.name.clone(),
                        got: hex::encode(got),
                        want: hex::encode(node.pin),
                    },
                    None => exchange_error(node, &e),
                });
            }
        };
        let (sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| exchange_error(node, &e))?;
        let name = node.name.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(node = %name, error = %e, "node connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// An idle pooled connection to `node`, if one is still usable.
    fn take_idle(&self, node: &NodeTarget) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        let senders = idle.get_mut(node)?;
        let mut found = None;
        while let Some(s) = senders.pop() {
            if s.is_ready() {
                found = Some(s);
                break;
            }
        }
        if senders.is_empty() {
            // Nodes come and go (and change ports): keep no empty entries.
            idle.remove(node);
        }
        found
    }

    fn put_idle(&self, node: &NodeTarget, sender: Sender) {
        if !sender.is_ready() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            let senders = idle.entry(node.clone()).or_default();
            senders.retain(Sender::is_ready);
            if senders.len() < MAX_IDLE_PER_NODE {
                senders.push(sender);
            }
        }
    }

    /// Send `GET path_and_query` on `sender`.
    async fn send(
        node: &NodeTarget,
        sender: &mut Sender,
        path_and_query: &str,
        accept: &'static str,
    ) -> Result<http::Response<Incoming>, NodeError> {
        let req = http::Request::get(path_and_query)
            .header(
                header::HOST,
                HeaderValue::from_str(&node.addr.to_string())
                    .unwrap_or(HeaderValue::from_static("node")),
            )
            .header(header::ACCEPT, accept)
            .header(header::USER_AGENT, "aos-apiserver")
            .body(Empty::new())
            .map_err(|e| NodeError::Unreachable {
                node: node.name.clone(),
                addr: node.addr,
                reason: format!("invalid request {path_and_query}: {e}"),
            })?;
        match tokio::time::timeout(HEAD_TIMEOUT, sender.send_request(req)).await {
            Err(_) => Err(NodeError::Timeout {
                node: node.name.clone(),
                seconds: HEAD_TIMEOUT.as_secs(),
            }),
            Ok(Err(e)) => Err(exchange_error(node, &e)),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// `GET path_and_query` on `node`: the 2xx response head and its unread body, and
    /// the connection (to pool once the body is read). A non-2xx answer is an error
    /// carrying the agent's reason.
    async fn exchange(
        &self,
        node: &NodeTarget,
        path_and_query: &str,
        accept: &'static str,
    ) -> Result<(http::Response<Incoming>, Sender), NodeError> {
        // A pooled connection may have been closed by the agent meanwhile: one retry on
        // a new connection (the request is a GET, so repeating it is safe).
        let resp = match self.take_idle(node) {
            Some(mut sender) => match Self::send(node, &mut sender, path_and_query, accept).await {
                Ok(resp) => Ok((resp, sender)),
                Err(e) => {
                    tracing::debug!(node = %node.name, error = %e, "pooled node connection failed; reconnecting");
                    Err(())
                }
            },
            None => Err(()),
        };
        let (resp, sender) = match resp {
            Ok(r) => r,
            Err(()) => {
                let mut sender = self.connect(node).await?;
                let resp = Self::send(node, &mut sender, path_and_query, accept).await?;
                (resp, sender)
            }
        };
        if resp.status().is_success() {
            return Ok((resp, sender));
        }
        let code = resp.status();
        let body = tokio::time::timeout(
            HEAD_TIMEOUT,
            Limited::new(resp.into_body(), ERROR_BODY_LIMIT).collect(),
        )
        .await;
        let text = match body {
            Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
            _ => String::new(),
        };
        let message = if text.is_empty() {
            code.canonical_reason().unwrap_or("error").to_lowercase()
        } else {
            text
        };
        Err(NodeError::Status {
            node: node.name.clone(),
            code,
            message,
        })
    }

    /// `GET path_and_query` on `node`, the whole (JSON) answer read within `timeout`.
    pub(crate) async fn get_json(
        &self,
        node: &NodeTarget,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<Value, NodeError> {
        let work = async {
            let (resp, sender) = self
                .exchange(node, path_and_query, "application/json")
                .await?;
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| exchange_error(node, &e))?
                .to_bytes();
            self.put_idle(node, sender);
            serde_json::from_slice(&bytes).map_err(|e| NodeError::Answer {
                node: node.name.clone(),
                reason: format!("{path_and_query}: {e}"),
            })
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| NodeError::Timeout {
                node: node.name.clone(),
                seconds: timeout.as_secs().max(1),
            })?
    }

    /// `GET path_and_query` on `node`, answered as it streams: the response (2xx) with
    /// its body unread. The connection is not pooled: it closes when the body ends or
    /// is dropped.
    pub(crate) async fn get_stream(
        &self,
        node: &NodeTarget,
        path_and_query: &str,
    ) -> Result<http::Response<Incoming>, NodeError> {
        let (resp, sender) = self
            .exchange(node, path_and_query, "text/plain, */*")
            .await?;
        // Dropping the sender lets the connection close once this response is done.
        drop(sender);
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(ready: &str, annotations: Value) -> Value {
        json!({
            "metadata": {"name": "n1", "annotations": annotations},
            "status": {
                "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletNotReady", "message": "agent stopped posting status"}],
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            }
        })
    }

    #[test]
    fn reads_address_port_and_pin() {
        let pin = "ab".repeat(32);
        let t = NodeTarget::from_node(&node("True", json!({PIN_ANNOTATION: pin}))).unwrap();
        assert_eq!(t.name, "n1");
        assert_eq!(t.addr, "127.0.0.1:10250".parse().unwrap());
        assert_eq!(t.pin, [0xab; 32]);
    }

    #[test]
    fn explains_what_is_missing() {
        let pin = json!({PIN_ANNOTATION: "ab".repeat(32)});
        let e = NodeTarget::from_node(&node("Unknown", pin.clone())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node \"n1\" is not ready: agent stopped posting status"
        );
        let e = NodeTarget::from_node(&node("True", json!({}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node \"n1\" does not publish its serving certificate"
        );
        let e = NodeTarget::from_node(&node("True", json!({PIN_ANNOTATION: "xyz"}))).unwrap_err();
        assert!(matches!(e, NodeError::NoPin(_)));
        let mut no_port = node("True", pin.clone());
        no_port["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = json!(0);
        assert!(matches!(
            NodeTarget::from_node(&no_port),
            Err(NodeError::NoPort(_))
        ));
        let mut no_ip = node("True", pin);
        no_ip["status"]["addresses"] = json!([{"type": "Hostname", "address": "n1"}]);
        assert!(matches!(
            NodeTarget::from_node(&no_ip),
            Err(NodeError::NoAddress(_))
        ));
    }

    #[test]
    fn agent_errors_map_to_statuses() {
        let status = |code: StatusCode| NodeError::Status {
            node: "n1".into(),
            code,
            message: "why".into(),
        };
        assert_eq!(ApiError::from(status(StatusCode::BAD_REQUEST)).code, 400);
        assert_eq!(ApiError::from(status(StatusCode::NOT_FOUND)).code, 404);
        let refused = ApiError::from(status(StatusCode::FORBIDDEN));
        assert_eq!(refused.code, 503);
        assert!(
            refused.message.contains("node \"n1\""),
            "{}",
            refused.message
        );
        assert_eq!(
            ApiError::from(NodeError::NoPin("n1".into())).code,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
