//! Outbound HTTP(S) for notifications and forge APIs: one pooled client, a time limit on
//! every request (connect, send and read the answer) and a bound on what is read back.
//!
//! The client connects only where the URL policy allows ([`UrlPolicy::address_allowed`]):
//! the addresses a name resolves to are checked by the client's own resolver, so the
//! check is made on the very addresses it then connects to (a name that resolves to a
//! public address once and a private one the next time gains nothing), and an address
//! written in the URL is checked before the request. Redirects are never followed.
//! What a tenant reads of a failure is a short category ([`OutboundError::category`]),
//! never the answer's body or the transport's error chain: those go to the logs.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

use crate::source::policy::{PolicyError, UrlPolicy};

/// At most this much of an answer is read.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Failed(String),
    #[error("answer larger than this client reads")]
    TooLarge,
    #[error(transparent)]
    Refused(#[from] PolicyError),
}

impl OutboundError {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "InvalidRequest",
            Self::Timeout(_) => "Timeout",
            Self::Failed(_) => "RequestFailed",
            Self::TooLarge => "ResponseTooLarge",
            Self::Refused(e) => e.label(),
        }
    }

    /// What a tenant may read of this failure: a short category. The transport's error
    /// chain would tell them which addresses and ports answer, and how.
    pub fn category(&self) -> String {
        match self {
            Self::Invalid(_) => "the request could not be made".into(),
            Self::Timeout(t) => format!("no answer within {t:?}"),
            Self::Failed(chain) => crate::source::policy::error_category(chain).into(),
            Self::TooLarge => "the answer was too large".into(),
            Self::Refused(e) => e.to_string(),
        }
    }
}

/// The category of an HTTP status that was not a success, for tenants.
pub fn status_category(status: u16) -> &'static str {
    match status {
        300..=399 => "the server redirected the request",
        401 | 403 => "the server refused the credentials",
        404 => "the server answered that it has no such resource",
        400..=499 => "the server refused the request",
        _ => "the server failed to answer the request",
    }
}

/// The client's resolver: the system's, keeping only the addresses the policy allows,
/// and failing when none is left.
#[derive(Clone)]
struct GuardedResolver {
    policy: Arc<UrlPolicy>,
}

/// Why a name resolved to no address the client may connect to.
#[derive(Debug)]
struct Refused(PolicyError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refused {}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            admit(&policy, found.collect())
        })
    }
}

/// The addresses of one lookup the client may connect to; an error when the policy
/// refused every one of them. Run on each lookup the client makes to connect.
fn admit(
    policy: &UrlPolicy,
    found: Vec<SocketAddr>,
) -> std::io::Result<std::vec::IntoIter<SocketAddr>> {
    let mut refusal = None;
    let allowed: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| match policy.address_allowed(a.ip()) {
            Ok(()) => true,
            Err(e) => {
                refusal.get_or_insert(e);
                false
            }
        })
        .collect();
    match (allowed.is_empty(), refusal) {
        (true, Some(refusal)) => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            Refused(refusal),
        )),
        _ => Ok(allowed.into_iter()),
    }
}

/// An answer: its status code and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text, cut to `max` bytes, for logs.
    pub fn text(&self, max: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        crate::api::truncate(text.trim(), max)
    }
}

/// A shared HTTP(S) client; TLS trusts the system's roots.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    policy: Arc<UrlPolicy>,
}

impl Http {
    /// A client that may connect anywhere (for the tests' own servers).
    pub fn new() -> Result<Self, OutboundError> {
        Self::within(UrlPolicy::default())
    }

    /// A client that connects only to the addresses `policy` allows.
    pub fn within(policy: UrlPolicy) -> Result<Self, OutboundError> {
        let policy = Arc::new(policy);
        let provider = rustls_ring();
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(builder) => builder,
            // No system roots (a bare image): plain http:// still works, https:// fails
            // per call with the reason, and the controller runs.
            Err(e) => {
                tracing::warn!(error = %e, "no trusted TLS roots found; https:// notifications and forge calls will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| OutboundError::Invalid(format!("TLS: {e}")))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            policy: policy.clone(),
        });
        http.enforce_http(false);
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { client, policy })
    }

    /// The policy this client connects within.
    pub fn policy(&self) -> &UrlPolicy {
        &self.policy
    }

    /// Sends one request; the whole exchange is bounded by `timeout`.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Response, OutboundError> {
        self.send_within(method, url, headers, body, timeout, MAX_RESPONSE_BYTES)
            .await
    }

    /// [`Http::send`], reading at most `max_body` bytes of the answer (`TooLarge` past it).
    pub async fn send_within(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Response, OutboundError> {
        let mut request = Request::builder().method(method).uri(url).header(
            "user-agent",
            concat!("fleetgate/", env!("CARGO_PKG_VERSION")),
        );
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| OutboundError::Invalid(e.to_string()))?;
        // An address written in the URL is connected to without asking the resolver.
        let host = request.uri().host().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.policy.address_allowed(ip)?;
        }
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| match refusal_in(&e) {
                        Some(refused) => OutboundError::Refused(refused),
                        None => OutboundError::Failed(error_chain(&e)),
                    })?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        OutboundError::TooLarge
                    } else {
                        OutboundError::Failed(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Response { status, body })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| OutboundError::Timeout(timeout))?
    }
}

fn rustls_ring() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// The address policy's refusal, if that is why the request failed.
fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<PolicyError> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(Refused(refused)) = c.downcast_ref::<Refused>() {
            return Some(refused.clone());
        }
        // An io::Error does not give its own payload as its source.
        if let Some(Refused(refused)) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Refused>())
        {
            return Some(refused.clone());
        }
        cause = c.source();
    }
    None
}

/// The error and its causes on one line (hyper's own message is only "client error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn refusing() -> UrlPolicy {
        UrlPolicy {
            allow_http: true,
            refuse_private_addresses: true,
            ..UrlPolicy::default()
        }
    }

    /// A server on loopback that answers every request with a 500 and a secret body.
    async fn leaky_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let body = "internal-admin-password=hunter2";
                let answer = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        addr
    }

    #[test]
    fn each_lookup_is_admitted_by_what_it_resolved_to() {
        let policy = refusing();
        let public: SocketAddr = "93.184.215.14:0".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let metadata: SocketAddr = "169.254.169.254:0".parse().unwrap();
        // The same name, looked up twice: public, then rebound to loopback.
        assert_eq!(
            admit(&policy, vec![public]).unwrap().collect::<Vec<_>>(),
            [public]
        );
        let refused = admit(&policy, vec![loopback]).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            refusal_in(&refused).map(|e| e.label()),
            Some("AddressNotAllowed")
        );
        // Mixed answers keep the public addresses only.
        assert_eq!(
            admit(&policy, vec![metadata, public])
                .unwrap()
                .collect::<Vec<_>>(),
            [public]
        );
        // Without the flag, anything goes.
        assert_eq!(
            admit(&UrlPolicy::default(), vec![loopback])
                .unwrap()
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn a_refused_address_is_never_connected_to_and_failures_are_categories() {
        let server = leaky_server().await;
        let refusing = Http::within(refusing()).unwrap();
        for url in [
            format!("http://127.0.0.1:{}/x", server.port()),
            format!("http://localhost:{}/x", server.port()),
        ] {
            let e = refusing
                .send(Method::POST, &url, &[], None, Duration::from_secs(5))
                .await
                .unwrap_err();
            assert_eq!(e.label(), "AddressNotAllowed", "{url}: {e}");
            assert!(!e.category().contains("127.0.0.1"), "{}", e.category());
        }
        let open = Http::within(UrlPolicy::default()).unwrap();
        let url = format!("http://localhost:{}/x", server.port());
        let answer = open
            .send(Method::POST, &url, &[], None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(answer.status, 500);
        assert!(!status_category(answer.status).contains("hunter2"));
        let closed = format!("http://127.0.0.1:{}/x", {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        });
        let e = open
            .send(Method::POST, &closed, &[], None, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.category(), "could not connect to the server", "{e}");
    }
}
