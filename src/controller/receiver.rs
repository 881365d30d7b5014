//! Sync on push: `POST /hook/<namespace>/<repository>` from GitHub, Gitea, GitLab or any
//! sender that signs the body with HMAC-SHA256, verified against the token in the
//! repository's `spec.webhookSecretRef` Secret. A verified push sets the repository's
//! push-received-at annotation, so it looks at git at once instead of at the next
//! interval: a new commit is planned; the same commit again changes nothing, so a push
//! (or a replayed one) never discards a plan awaiting approval.
//!
//! Every request that does not prove knowledge of the token gets the same answer,
//! whether the repository exists, takes webhooks or has a Secret, so the receiver tells
//! an unauthenticated caller nothing. A delivery seen before (by the sender's delivery
//! id, else by its body) is acknowledged and ignored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::api::{GitopsRepository, annotations};

/// Key of the shared token in the webhook Secret.
pub const TOKEN_KEY: &str = "token";
/// The one answer to every request that is not authenticated.
pub const UNAUTHORIZED: &str = "unauthorized\n";
/// Deliveries are remembered this long, and at most this many.
const REMEMBER: Duration = Duration::from_secs(24 * 3600);
const MAX_REMEMBERED: usize = 10_000;

/// Delivery ids already acted on, with when.
#[derive(Default)]
pub struct Deliveries {
    seen: Mutex<HashMap<String, Instant>>,
}

impl Deliveries {
    /// Records `id`; false if it was seen within [`REMEMBER`].
    pub fn first_time(&self, id: String, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, at| now.duration_since(*at) < REMEMBER);
        if seen.contains_key(&id) {
            return false;
        }
        if seen.len() >= MAX_REMEMBERED
            && let Some(oldest) = seen
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
        {
            seen.remove(&oldest);
        }
        seen.insert(id, now);
        true
    }
}

struct Receiver {
    client: Client,
    deliveries: Deliveries,
}

pub fn router(client: Client) -> Router {
    let state = Arc::new(Receiver {
        client,
        deliveries: Deliveries::default(),
    });
    Router::new()
        .route("/hook/{namespace}/{repository}", post(hook))
        .with_state(state)
}

/// The sender's id of this delivery, else a digest of the body: the same push sent twice
/// is one delivery.
pub fn delivery_id(headers: &HeaderMap, body: &[u8]) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    [
        "x-github-delivery",
        "x-gitea-delivery",
        "x-gogs-delivery",
        "x-gitlab-event-uuid",
        "x-delivery",
    ]
    .iter()
    .find_map(|h| header(h).map(|v| format!("{h}={v}")))
    .unwrap_or_else(|| format!("body={}", crate::fleet::plan::hex(&Sha256::digest(body))))
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether the request proves knowledge of `token`: an HMAC-SHA256 of the body
/// (`X-Hub-Signature-256: sha256=…` from GitHub, `X-Gitea-Signature: …` from Gitea,
/// `X-Signature: sha256=…` from anything else) or GitLab's `X-Gitlab-Token`.
pub fn verify(headers: &HeaderMap, body: &[u8], token: &[u8]) -> Result<(), &'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signature = header("x-hub-signature-256")
        .or_else(|| header("x-signature"))
        .map(|s| s.strip_prefix("sha256=").unwrap_or(s))
        .or_else(|| header("x-gitea-signature"));
    if let Some(signature) = signature {
        let expected = hex_decode(signature.trim()).ok_or("the signature is not hex")?;
        let mut mac = Hmac::<Sha256>::new_from_slice(token).expect("HMAC takes any key length");
        mac.update(body);
        return mac
            .verify_slice(&expected)
            .map_err(|_| "the signature does not match");
    }
    if let Some(given) = header("x-gitlab-token") {
        // Compared through the MAC so that the comparison takes constant time.
        let mut mac = Hmac::<Sha256>::new_from_slice(token).expect("HMAC takes any key length");
        mac.update(b"gitlab");
        let want = mac.finalize().into_bytes();
        let mut mac =
            Hmac::<Sha256>::new_from_slice(given.as_bytes()).expect("HMAC takes any key length");
        mac.update(b"gitlab");
        return mac
            .verify_slice(&want)
            .map_err(|_| "the token does not match");
    }
    Err("no signature: send X-Hub-Signature-256, X-Gitea-Signature, X-Signature or X-Gitlab-Token")
}

/// The token of the repository's webhook Secret; None for every reason there is none.
async fn token(
    client: &Client,
    namespace: &str,
    repository: &str,
) -> Result<Option<Vec<u8>>, kube::Error> {
    let repos: Api<GitopsRepository> = Api::namespaced(client.clone(), namespace);
    let Some(secret_ref) = repos
        .get_opt(repository)
        .await?
        .and_then(|r| r.spec.webhook_secret_ref)
    else {
        return Ok(None);
    };
    Ok(Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&secret_ref.name)
        .await?
        .and_then(|s| s.data)
        .and_then(|mut d| d.remove(TOKEN_KEY))
        .map(|t| t.0)
        .filter(|t| !t.is_empty()))
}

async fn hook(
    State(receiver): State<Arc<Receiver>>,
    Path((namespace, repository)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let unavailable = |e: kube::Error| {
        warn!(namespace, repository, error = %e, "webhook: the API server did not answer");
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable\n".to_owned())
    };
    let token = match token(&receiver.client, &namespace, &repository).await {
        Ok(t) => t,
        // A namespace the controller may not read is like one without the repository.
        Err(kube::Error::Api(s)) if s.code == 403 || s.code == 404 => None,
        Err(e) => return unavailable(e),
    };
    // No repository, no webhookSecretRef, no Secret, no token, a wrong signature: one
    // answer, so that a caller without the token learns nothing.
    let verified = match &token {
        Some(token) => verify(&headers, &body, token),
        None => Err("no webhook token for this repository"),
    };
    if let Err(why) = verified {
        warn!(namespace, repository, why, "refused a webhook");
        return (StatusCode::UNAUTHORIZED, UNAUTHORIZED.to_owned());
    }
    let delivery = format!("{namespace}/{repository}/{}", delivery_id(&headers, &body));
    if !receiver.deliveries.first_time(delivery, Instant::now()) {
        info!(
            namespace,
            repository, "webhook: a delivery seen before, ignored"
        );
        return (StatusCode::OK, "duplicate delivery ignored\n".to_owned());
    }
    let at = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {annotations::PUSH_RECEIVED_AT: at}}});
    let repos: Api<GitopsRepository> = Api::namespaced(receiver.client.clone(), &namespace);
    match repos
        .patch(&repository, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            info!(namespace, repository, "webhook: git will be checked now");
            (
                StatusCode::ACCEPTED,
                format!("{namespace}/{repository} checks git now ({at})\n"),
            )
        }
        Err(e) => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(body: &[u8], key: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(body);
        crate::fleet::plan::hex(&mac.finalize().into_bytes())
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_delivery_counts_once_within_a_day() {
        let d = Deliveries::default();
        let t0 = Instant::now();
        let push = headers(&[("x-github-delivery", "72d3162e".into())]);
        let id = delivery_id(&push, b"{}");
        assert_eq!(id, "x-github-delivery=72d3162e");
        assert!(d.first_time(id.clone(), t0));
        assert!(!d.first_time(id.clone(), t0 + Duration::from_secs(3600)));
        assert!(d.first_time(id, t0 + REMEMBER + Duration::from_secs(1)));
        // Without a delivery id, the same body is the same delivery.
        let a = delivery_id(&HeaderMap::new(), b"{\"after\":\"1\"}");
        assert_eq!(a, delivery_id(&HeaderMap::new(), b"{\"after\":\"1\"}"));
        assert_ne!(a, delivery_id(&HeaderMap::new(), b"{\"after\":\"2\"}"));
        for i in 0..MAX_REMEMBERED + 10 {
            d.first_time(format!("n{i}"), t0);
        }
        assert!(d.seen.lock().unwrap().len() <= MAX_REMEMBERED);
    }

    #[test]
    fn every_sender_format_is_verified() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign(body, b"s3cret");
        assert!(
            verify(
                &headers(&[("x-hub-signature-256", format!("sha256={good}"))]),
                body,
                b"s3cret"
            )
            .is_ok()
        );
        assert!(
            verify(
                &headers(&[("x-gitea-signature", good.clone())]),
                body,
                b"s3cret"
            )
            .is_ok()
        );
        assert!(
            verify(
                &headers(&[("x-signature", format!("sha256={good}"))]),
                body,
                b"s3cret"
            )
            .is_ok()
        );
        assert!(
            verify(
                &headers(&[("x-gitlab-token", "s3cret".into())]),
                body,
                b"s3cret"
            )
            .is_ok()
        );

        let bad = sign(body, b"other");
        assert_eq!(
            verify(
                &headers(&[("x-hub-signature-256", format!("sha256={bad}"))]),
                body,
                b"s3cret"
            ),
            Err("the signature does not match")
        );
        assert_eq!(
            verify(
                &headers(&[("x-gitea-signature", "zz".into())]),
                body,
                b"s3cret"
            ),
            Err("the signature is not hex")
        );
        assert_eq!(
            verify(
                &headers(&[("x-gitlab-token", "guess".into())]),
                body,
                b"s3cret"
            ),
            Err("the token does not match")
        );
        assert!(
            verify(&HeaderMap::new(), body, b"s3cret")
                .unwrap_err()
                .starts_with("no signature")
        );
        // A signature of another body does not carry over.
        assert!(
            verify(
                &headers(&[("x-hub-signature-256", format!("sha256={good}"))]),
                b"{}",
                b"s3cret"
            )
            .is_err()
        );
    }
}
