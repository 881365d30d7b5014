//! Sync on push: `POST /hook/<namespace>/<repository>` from GitHub, Gitea, GitLab or any
//! sender that signs the body with HMAC-SHA256, verified against the token in the
//! repository's `spec.webhookSecretRef` Secret. A verified push sets the repository's
//! sync-requested-at annotation, so it syncs at once instead of at the next interval.

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
use sha2::Sha256;
use tracing::{info, warn};

use crate::api::{GitopsRepository, annotations};

/// Key of the shared token in the webhook Secret.
pub const TOKEN_KEY: &str = "token";

pub fn router(client: Client) -> Router {
    Router::new()
        .route("/hook/{namespace}/{repository}", post(hook))
        .with_state(client)
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

async fn hook(
    State(client): State<Client>,
    Path((namespace, repository)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let repos: Api<GitopsRepository> = Api::namespaced(client.clone(), &namespace);
    let repo = match repos.get_opt(&repository).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                format!("no GitopsRepository {namespace}/{repository}\n"),
            );
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    };
    let Some(secret_ref) = repo.spec.webhook_secret_ref else {
        return (
            StatusCode::FORBIDDEN,
            format!(
                "{namespace}/{repository} takes no webhooks: it has no spec.webhookSecretRef\n"
            ),
        );
    };
    let token = match Api::<Secret>::namespaced(client.clone(), &namespace)
        .get_opt(&secret_ref.name)
        .await
    {
        Ok(Some(secret)) => secret.data.and_then(|mut d| d.remove(TOKEN_KEY)),
        Ok(None) => None,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    };
    let Some(token) = token else {
        return (
            StatusCode::FORBIDDEN,
            format!("Secret {} has no `{TOKEN_KEY}`\n", secret_ref.name),
        );
    };
    if let Err(why) = verify(&headers, &body, &token.0) {
        warn!(namespace, repository, why, "refused a webhook");
        return (StatusCode::UNAUTHORIZED, format!("{why}\n"));
    }
    let at = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {annotations::SYNC_REQUESTED_AT: at}}});
    match repos
        .patch(&repository, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            info!(namespace, repository, "webhook: sync requested");
            (
                StatusCode::ACCEPTED,
                format!("sync of {namespace}/{repository} requested at {at}\n"),
            )
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
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
