//! A hostile forge: one that lists a thousand open pull requests whose heads change on
//! every listing, so that every round of previews would preview them all again. The
//! controller (the chart's roles, the tenant an editor) calls it and posts to it no more
//! than the per-repository budgets allow, while another tenant's forge gets its preview
//! as usual.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use support::chart::Installed;
use support::operator::create_repository;
use support::tenant::tenant;

/// A Gitea-shaped API: `pulls` pages, a file's contents, comments; counting calls.
#[derive(Clone)]
struct FakeForge {
    /// Open pull requests it claims, and whether their heads change on every listing.
    open: u64,
    shifting: bool,
    calls: Arc<AtomicUsize>,
    comments: Arc<AtomicUsize>,
    listings: Arc<AtomicUsize>,
}

impl FakeForge {
    fn new(open: u64, shifting: bool) -> Self {
        Self {
            open,
            shifting,
            calls: Arc::default(),
            comments: Arc::default(),
            listings: Arc::default(),
        }
    }

    async fn start(&self) -> std::net::SocketAddr {
        async fn pulls(
            State(f): State<FakeForge>,
            Query(q): Query<Vec<(String, String)>>,
        ) -> axum::Json<Value> {
            f.calls.fetch_add(1, Ordering::Relaxed);
            let listing = f.listings.fetch_add(1, Ordering::Relaxed);
            let param = |k: &str| {
                q.iter()
                    .find(|(n, _)| n == k)
                    .and_then(|(_, v)| v.parse::<u64>().ok())
            };
            let (page, limit) = (param("page").unwrap_or(1), param("limit").unwrap_or(50));
            let first = (page - 1) * limit;
            let pulls: Vec<Value> = (first..(first + limit).min(f.open))
                .map(|n| {
                    let head = if f.shifting { listing as u64 * 100_000 + n } else { n };
                    json!({"number": n + 1, "head": {"sha": format!("{head:040x}")}, "base": {"ref": "main"}})
                })
                .collect();
            axum::Json(Value::Array(pulls))
        }
        async fn file(State(f): State<FakeForge>) -> axum::Json<Value> {
            f.calls.fetch_add(1, Ordering::Relaxed);
            let content = base64::engine::general_purpose::STANDARD
                .encode(include_bytes!("../../examples/fleet.yaml"));
            axum::Json(json!({"content": content}))
        }
        async fn comments(State(f): State<FakeForge>) -> axum::Json<Value> {
            f.calls.fetch_add(1, Ordering::Relaxed);
            axum::Json(json!([]))
        }
        async fn comment(State(f): State<FakeForge>) -> axum::Json<Value> {
            f.calls.fetch_add(1, Ordering::Relaxed);
            f.comments.fetch_add(1, Ordering::Relaxed);
            axum::Json(json!({"id": 1}))
        }
        async fn status(State(f): State<FakeForge>) -> axum::Json<Value> {
            f.calls.fetch_add(1, Ordering::Relaxed);
            axum::Json(json!({}))
        }
        let app = axum::Router::new()
            .route("/api/v1/repos/acme/fleet/pulls", get(pulls))
            .route("/api/v1/repos/acme/fleet/contents/{*path}", get(file))
            .route(
                "/api/v1/repos/acme/fleet/issues/{number}/comments",
                get(comments).post(comment),
            )
            .route("/api/v1/repos/acme/fleet/statuses/{sha}", post(status))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }
}

async fn forge_repository(who: &kube::Client, ns: &str, api: std::net::SocketAddr) {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "forge"}, "stringData": {"token": "t"},
    }))
    .unwrap();
    kube::api::Api::namespaced(who.clone(), ns)
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    // Previews only: its git URL is never fetched (the Secret it names does not exist).
    create_repository(
        who,
        ns,
        "fleet",
        json!({
            "url": "https://git.example.com/acme/fleet.git", "ref": {"branch": "main"},
            "secretRef": {"name": "missing"}, "interval": "2s",
            "forge": {"provider": "Gitea", "apiUrl": format!("http://{api}"), "repository": "acme/fleet",
                      "secretRef": {"name": "forge"}, "pullRequestPreviews": true},
        }),
    )
    .await;
}

#[tokio::test]
async fn a_forge_that_asks_for_ever_more_previews_gets_bounded_calls_and_posts() {
    let hostile = tenant("hostile-forge").await;
    let other = tenant("other-forge").await;
    let _chart = Installed::new(&[&hostile.ns, &other.ns], &["--allow-http-urls"]).await;
    hostile.bind_users();
    other.bind_users();
    let endless = FakeForge::new(1_000, true);
    let endless_addr = endless.start().await;
    let honest = FakeForge::new(1, false);
    let honest_addr = honest.start().await;

    let started = Instant::now();
    forge_repository(&hostile.alice, &hostile.ns.name, endless_addr).await;
    forge_repository(&other.alice, &other.ns.name, honest_addr).await;
    support::eventually(
        "the other tenant's preview",
        Duration::from_secs(60),
        || async { (honest.comments.load(Ordering::Relaxed) == 1).then_some(()) },
    )
    .await;
    eprintln!(
        "the other tenant's preview was posted after {:?}",
        started.elapsed()
    );

    tokio::time::sleep(Duration::from_secs(120).saturating_sub(started.elapsed())).await;
    let (calls, posts) = (
        endless.calls.load(Ordering::Relaxed),
        endless.comments.load(Ordering::Relaxed),
    );
    eprintln!("in 120 s the hostile forge got {calls} calls and {posts} previews");
    // The budgets: 300 calls and one every 2 s; 100 previews and one every 6 s.
    assert!(calls <= 300 + 60, "{calls} calls");
    assert!(posts <= 100 + 20, "{posts} previews");
    assert!(
        posts >= 25,
        "previews are still posted, within the budget: {posts}"
    );
    assert_eq!(
        honest.comments.load(Ordering::Relaxed),
        1,
        "one preview per head"
    );
}
