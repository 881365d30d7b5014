//! Outbound HTTP(S) for notifications and forge APIs: one pooled client, a time limit on
//! every request (connect, send and read the answer) and a bound on what is read back.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

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
    #[error("answer larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
}

impl OutboundError {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "InvalidRequest",
            Self::Timeout(_) => "Timeout",
            Self::Failed(_) => "RequestFailed",
            Self::TooLarge => "ResponseTooLarge",
        }
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

    /// The body as text, cut to `max` bytes, for error messages.
    pub fn text(&self, max: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        crate::api::truncate(text.trim(), max)
    }
}

/// A shared HTTP(S) client; TLS trusts the system's roots.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Http {
    pub fn new() -> Result<Self, OutboundError> {
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
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { client })
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
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| OutboundError::Failed(error_chain(&e)))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
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
