//! Requests a tenant aims: NotificationTarget addresses and forge API URLs, set by an
//! editor of the chart's roles, against a controller with the chart's policies. Each
//! passes the one URL policy (scheme flags, host allow-lists, addresses): the internal
//! services an attacker aims at are never connected to (their servers count no
//! request), what a tenant reads back is a short category (never a body or an error
//! chain), and another tenant's notification to a public address is delivered.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fleetgate::api::{GitopsRepository, NotificationTarget};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};
use support::chart::Installed;
use support::netns::PublicHost;
use support::operator::create_repository;
use support::tenant::tenant;

/// A server on loopback, as an internal service would be, that answers everything with
/// a 500 and a body no tenant may read; it counts the requests it gets.
async fn internal_service() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = conn.read(&mut buf).await;
                let body = "db-password=hunter2";
                let answer = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    (addr, count)
}

async fn secret(client: &kube::Client, ns: &str, name: &str, data: Value) {
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap();
    Api::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// A NotificationTarget `name` told of stalled repositories, sending to `address`, as
/// `who` creates it.
async fn target(who: &kube::Client, ns: &str, name: &str, address: &str) {
    secret(who, ns, name, json!({"address": address, "token": "t"})).await;
    let target: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "NotificationTarget",
        "metadata": {"name": name},
        "spec": {"type": "Webhook", "secretRef": {"name": name}, "events": ["RepositoryStalled"]},
    }))
    .unwrap();
    Api::<DynamicObject>::namespaced_with(
        who.clone(),
        ns,
        &ApiResource::erase::<NotificationTarget>(&()),
    )
    .create(&PostParams::default(), &target)
    .await
    .unwrap();
}

/// A repository that stalls at once (its Secret does not exist): an occurrence to notify
/// without any git server.
async fn stalling_repository(who: &kube::Client, ns: &str, name: &str, forge: Option<Value>) {
    let mut spec = json!({
        "url": "https://git.example.com/fleet.git", "ref": {"branch": "main"},
        "secretRef": {"name": "missing"}, "interval": "2s",
    });
    if let Some(forge) = forge {
        spec["forge"] = forge;
    }
    create_repository(who, ns, name, spec).await;
}

/// The Ready condition of a NotificationTarget, once it has one: (status, reason, message).
async fn target_ready(client: &kube::Client, ns: &str, name: &str) -> (String, String, String) {
    let api: Api<NotificationTarget> = Api::namespaced(client.clone(), ns);
    support::eventually(
        &format!("target {name} to say how its delivery went"),
        Duration::from_secs(90),
        || {
            let api = api.clone();
            async move {
                let status = api.get(name).await.ok()?.status?;
                let c = fleetgate::api::condition(&status.conditions, "Ready")?;
                Some((c.status.clone(), c.reason.clone(), c.message.clone()))
            }
        },
    )
    .await
}

/// The ForgeReported condition of a repository, once the forge was called.
async fn forge_reported(client: &kube::Client, ns: &str, name: &str) -> (String, String, String) {
    let api: Api<GitopsRepository> = Api::namespaced(client.clone(), ns);
    support::eventually(
        &format!("repository {name} to report on its forge"),
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let status = api.get(name).await.ok()?.status?;
                let c = fleetgate::api::condition(&status.conditions, "ForgeReported")?;
                Some((c.status.clone(), c.reason.clone(), c.message.clone()))
            }
        },
    )
    .await
}

fn forge(api_url: &str) -> Value {
    json!({"provider": "Gitea", "apiUrl": api_url, "repository": "acme/fleet",
           "secretRef": {"name": "forge"}, "pullRequestPreviews": true})
}

#[tokio::test]
async fn private_addresses_are_refused_when_connecting_and_a_public_receiver_still_hears() {
    let snoop = tenant("snoop").await;
    let fair = tenant("fair").await;
    let (internal, requests) = internal_service().await;
    let receiver = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let chart = Installed::new(
        &[&snoop.ns, &fair.ns],
        &[
            "--allow-http-urls",
            "--refuse-private-addresses",
            "--receiver-addr",
            &receiver.to_string(),
        ],
    )
    .await;
    snoop.bind_users();
    fair.bind_users();
    let mut public = PublicHost::new();
    let log = tempfile::NamedTempFile::new().unwrap();
    public.receiver(8080, log.path());

    // An editor aims notifications at the controller's own ports, an internal service
    // (by address and by a name that resolves to it), the cloud metadata address.
    let ns = &snoop.ns.name;
    let aimed = [
        (
            "metrics",
            format!("http://127.0.0.1:{}/metrics", chart.controller.http.port()),
        ),
        ("webhooks", format!("http://{receiver}/hook/{ns}/fleet")),
        ("internal", format!("http://{internal}/admin")),
        (
            "by-name",
            format!("http://localhost:{}/admin", internal.port()),
        ),
        ("ipv6", format!("http://[::1]:{}/admin", internal.port())),
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data/".to_owned(),
        ),
    ];
    for (name, address) in &aimed {
        target(&snoop.alice, ns, name, address).await;
    }
    // And a forge API at the internal service, by address and by name.
    secret(&snoop.alice, ns, "forge", json!({"token": "t"})).await;
    let by_address = format!("http://{internal}");
    let by_name = format!("http://localhost:{}", internal.port());
    stalling_repository(&snoop.alice, ns, "fleet", Some(forge(&by_address))).await;
    stalling_repository(&snoop.alice, ns, "named", Some(forge(&by_name))).await;

    // Another tenant's notification to a public address.
    let fns = &fair.ns.name;
    let address = format!("http://{}:8080/hook", public.addr);
    target(&fair.alice, fns, "public", &address).await;
    stalling_repository(&fair.alice, fns, "fleet", None).await;

    for (name, _) in &aimed {
        let (status, reason, message) = target_ready(&snoop.admin, ns, name).await;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "AddressNotAllowed"),
            "{name}: {message}"
        );
        assert!(
            !message.contains("127.0.0.1") && !message.contains("hunter2"),
            "{message}"
        );
    }
    for repository in ["fleet", "named"] {
        let (status, reason, message) = forge_reported(&snoop.admin, ns, repository).await;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "AddressNotAllowed"),
            "{message}"
        );
    }
    assert_eq!(
        requests.load(Ordering::Relaxed),
        0,
        "the internal service was never connected to"
    );

    let (status, reason, _) = target_ready(&fair.admin, fns, "public").await;
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Delivered"));
    let heard = std::fs::read_to_string(log.path()).unwrap();
    assert!(heard.contains("\"event\":\"RepositoryStalled\""), "{heard}");
    assert_eq!(heard.lines().count(), 1, "{heard}");
}

#[tokio::test]
async fn what_a_tenant_aims_answers_in_categories_and_host_lists_apply() {
    let snoop = tenant("aim").await;
    let (internal, requests) = internal_service().await;
    // The tenant's own receiver, on a host the allow-list names.
    let heard = Arc::new(AtomicUsize::new(0));
    let counter = heard.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(axum::routing::post(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        async { "ok" }
    }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let _chart = Installed::new(
        &[&snoop.ns],
        &[
            "--allow-http-urls",
            "--allowed-notification-hosts=localhost",
            "--allowed-git-hosts=localhost,git.example.com",
        ],
    )
    .await;
    snoop.bind_users();
    let ns = &snoop.ns.name;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    target(
        &snoop.alice,
        ns,
        "internal",
        &format!("http://localhost:{}/admin", internal.port()),
    )
    .await;
    target(
        &snoop.alice,
        ns,
        "outside-list",
        &format!("http://{internal}/admin"),
    )
    .await;
    target(
        &snoop.alice,
        ns,
        "closed",
        &format!("http://localhost:{closed}/"),
    )
    .await;
    target(
        &snoop.alice,
        ns,
        "own",
        &format!("http://localhost:{}/hook", own.port()),
    )
    .await;
    secret(&snoop.alice, ns, "forge", json!({"token": "t"})).await;
    let api = format!("http://localhost:{}", internal.port());
    stalling_repository(&snoop.alice, ns, "fleet", Some(forge(&api))).await;
    stalling_repository(
        &snoop.alice,
        ns,
        "outside",
        Some(forge(&format!("http://{internal}"))),
    )
    .await;

    // The internal service answered, and nothing of its answer is in what the tenant reads.
    let (status, reason, message) = target_ready(&snoop.admin, ns, "internal").await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "Rejected"),
        "{message}"
    );
    assert!(
        message
            .ends_with("the receiver did not accept it: the server failed to answer the request"),
        "{message}"
    );
    let (_, reason, message) = forge_reported(&snoop.admin, ns, "fleet").await;
    assert_eq!(reason, "ForgeApiError", "{message}");
    assert!(
        !message.contains("hunter2") && !message.contains("500"),
        "{message}"
    );
    assert!(requests.load(Ordering::Relaxed) > 0);
    // A transport failure is a category, not the chain with its address.
    let (_, reason, message) = target_ready(&snoop.admin, ns, "closed").await;
    assert_eq!(reason, "RequestFailed", "{message}");
    assert!(
        message.ends_with("could not connect to the server"),
        "{message}"
    );
    // Hosts outside the lists are refused before any connection.
    let (_, reason, message) = target_ready(&snoop.admin, ns, "outside-list").await;
    assert_eq!(reason, "HostNotAllowed", "{message}");
    assert!(
        message.contains("--allowed-notification-hosts"),
        "{message}"
    );
    let (_, reason, message) = forge_reported(&snoop.admin, ns, "outside").await;
    assert_eq!(reason, "HostNotAllowed", "{message}");
    assert!(message.contains("--allowed-git-hosts"), "{message}");
    // The legitimate path.
    let (status, reason, _) = target_ready(&snoop.admin, ns, "own").await;
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Delivered"));
    assert_eq!(
        heard.load(Ordering::Relaxed),
        2,
        "once per stalled repository"
    );
}
