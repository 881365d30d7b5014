//! Sync on push: `POST /hook/<namespace>/<repository>` from GitHub, Gitea, GitLab or any
//! sender that signs the body with HMAC-SHA256, verified against the token in the
//! repository's `spec.webhookSecretRef` Secret. A verified push sets the repository's
//! push-received-at annotation, so it looks at git at once instead of at the next
//! interval: a new commit is planned; the same commit again changes nothing, so a push
//! (or a replayed one) never discards a plan awaiting approval.
//!
//! Every request that does not prove knowledge of the token gets the same answer,
//! whether the repository exists, takes webhooks or has a Secret, so the receiver tells
//! an unauthenticated caller nothing. A delivery seen before is acknowledged and
//! ignored: seen by the digest of its body, which the signature covers (a sender's
//! delivery id is a header outside the signature: a replay could carry a fresh one).
//! What is remembered is kept per namespace and bounded per namespace, so that one
//! tenant's deliveries (it knows its own token) never push another tenant's out.

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
/// Deliveries are remembered this long, at most this many per namespace, and for at
/// most this many namespaces (the least recently heard from is forgotten first).
const REMEMBER: Duration = Duration::from_secs(24 * 3600);
const MAX_REMEMBERED_PER_NAMESPACE: usize = 1_000;
const MAX_NAMESPACES: usize = 1_000;

/// Deliveries already acted on, per namespace, with when.
#[derive(Default)]
pub struct Deliveries {
    namespaces: Mutex<HashMap<String, Seen>>,
}

/// One namespace's deliveries, and when it was last heard from.
#[derive(Default)]
struct Seen {
    ids: HashMap<String, Instant>,
    last: Option<Instant>,
}

impl Seen {
    /// Records `id`; false if it was seen within [`REMEMBER`].
    fn first_time(&mut self, id: String, now: Instant) -> bool {
        self.last = Some(now);
        self.ids.retain(|_, at| now.duration_since(*at) < REMEMBER);
        if self.ids.contains_key(&id) {
            return false;
        }
        if self.ids.len() >= MAX_REMEMBERED_PER_NAMESPACE
            && let Some(oldest) = self
                .ids
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
        {
            self.ids.remove(&oldest);
        }
        self.ids.insert(id, now);
        true
    }
}

impl Deliveries {
    /// Records delivery `id` of `namespace`; false if it was seen within [`REMEMBER`].
    pub fn first_time(&self, namespace: &str, id: String, now: Instant) -> bool {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        if !namespaces.contains_key(namespace)
            && namespaces.len() >= MAX_NAMESPACES
            && let Some(quietest) = namespaces
                .iter()
                .min_by_key(|(_, seen)| seen.last)
                .map(|(k, _)| k.clone())
        {
            namespaces.remove(&quietest);
        }
        namespaces
            .entry(namespace.to_owned())
            .or_default()
            .first_time(id, now)
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

/// What makes a delivery the same delivery: the digest of its body, the part the
/// signature covers. The senders' delivery ids (`X-GitHub-Delivery`, ...) are headers
/// outside it, and a replay may carry a fresh one.
pub fn delivery_id(body: &[u8]) -> String {
    format!("body={}", crate::fleet::plan::hex(&Sha256::digest(body)))
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
    let delivery = format!("{repository}/{}", delivery_id(&body));
    if !receiver
        .deliveries
        .first_time(&namespace, delivery, Instant::now())
    {
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
    fn a_delivery_counts_once_within_a_day_whatever_id_it_carries() {
        let d = Deliveries::default();
        let t0 = Instant::now();
        let id = delivery_id(b"{\"after\":\"1\"}");
        assert!(id.starts_with("body="), "{id}");
        assert!(d.first_time("ns", id.clone(), t0));
        // The same signed body again, whatever delivery id header came with it.
        assert!(!d.first_time("ns", id.clone(), t0 + Duration::from_secs(3600)));
        assert!(d.first_time("ns", id, t0 + REMEMBER + Duration::from_secs(1)));
        assert_ne!(
            delivery_id(b"{\"after\":\"1\"}"),
            delivery_id(b"{\"after\":\"2\"}")
        );
    }

    #[test]
    fn one_namespace_cannot_push_another_namespaces_deliveries_out() {
        let d = Deliveries::default();
        let t0 = Instant::now();
        assert!(d.first_time("victim", "push".into(), t0));
        // The attacker signs as many bodies of its own as it likes.
        for i in 0..MAX_REMEMBERED_PER_NAMESPACE * 3 {
            d.first_time("attacker", format!("n{i}"), t0);
        }
        assert!(
            !d.first_time("victim", "push".into(), t0),
            "the victim's delivery is still remembered: its replay is ignored"
        );
        let namespaces = d.namespaces.lock().unwrap();
        assert!(namespaces["attacker"].ids.len() <= MAX_REMEMBERED_PER_NAMESPACE);
        drop(namespaces);
        // Namespaces are bounded too; the quietest is forgotten first.
        for i in 0..MAX_NAMESPACES + 5 {
            d.first_time(
                &format!("ns{i}"),
                "x".into(),
                t0 + Duration::from_secs(i as u64 + 1),
            );
        }
        let namespaces = d.namespaces.lock().unwrap();
        assert!(namespaces.len() <= MAX_NAMESPACES);
        assert!(namespaces.contains_key(&format!("ns{}", MAX_NAMESPACES + 4)));
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
