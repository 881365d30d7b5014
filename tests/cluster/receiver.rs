//! Sync on push: a signed webhook makes the controller look at git at once; an
//! unauthenticated one gets one answer whatever is wrong, a replayed one is ignored, and
//! no push discards a plan awaiting approval. Real controller, real API server, raw HTTP
//! as a git host would send it.

use crate::support;

use std::io::{Read, Write};
use std::time::Duration;

use fleetgate::api::annotations;
use fleetgate::api::syncrun::{Phase, Trigger};
use fleetgate::api::{GitopsRepository, SyncRun};
use hmac::{Hmac, Mac};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use sha2::Sha256;
use support::git::server;
use support::operator::*;

fn post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    s.write_all(request.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let code = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        code,
        response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
    )
}

fn sign(body: &[u8], key: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    fleetgate::fleet::plan::hex(&mac.finalize().into_bytes())
}

async fn wait_until_listening(addr: std::net::SocketAddr) {
    support::eventually(
        "the receiver to listen",
        Duration::from_secs(30),
        || async move { std::net::TcpStream::connect(addr).ok().map(|_| ()) },
    )
    .await;
}

#[tokio::test]
async fn a_signed_push_checks_git_at_once_and_nothing_else_gets_through() {
    let ns = support::env().namespace("receiver").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let git = server();
    let repo = git.create_repo("receiver");
    let v1 = repo.commit(
        &[("fleet.yaml", include_bytes!("../../examples/fleet.yaml"))],
        "first",
    );
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "hook"}, "stringData": {"token": "s3cret"},
    }))
    .unwrap();
    Api::namespaced(ns.client.clone(), &ns.name)
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let _controller = ControllerProcess::start(&ns, &["--receiver-addr", &addr.to_string()]);
    // A long interval: only the webhook can make it look at git again soon.
    create_repository(
        &ns.client,
        &ns.name,
        "fleet",
        serde_json::json!({
            "url": git.file_url(&repo), "ref": {"branch": "main"}, "interval": "1h",
            "webhookSecretRef": {"name": "hook"},
        }),
    )
    .await;
    create_repository(
        &ns.client,
        &ns.name,
        "no-hooks",
        // Suspended: it plans nothing of its own; only its webhook answers matter.
        serde_json::json!({"url": git.file_url(&repo), "ref": {"branch": "main"}, "suspend": true}),
    )
    .await;
    let pending = run_in_phase(&ns.client, &ns.name, &v1, Phase::AwaitingApproval).await;
    wait_until_listening(addr).await;

    let body = format!(r#"{{"ref":"refs/heads/main","after":"{v1}"}}"#).into_bytes();
    let path = format!("/hook/{}/fleet", ns.name);
    let signed = |body: &[u8], delivery: &str| {
        vec![
            (
                "X-Hub-Signature-256",
                format!("sha256={}", sign(body, b"s3cret")),
            ),
            ("X-GitHub-Delivery", delivery.to_owned()),
        ]
    };

    // Whatever is wrong, an unauthenticated caller gets the same answer: it learns
    // neither which repositories exist nor which take webhooks.
    let wrong = [(
        "X-Hub-Signature-256",
        format!("sha256={}", sign(&body, b"wrong")),
    )];
    for (path, headers) in [
        (path.clone(), &wrong[..]),
        (path.clone(), &[][..]),
        (format!("/hook/{}/nope", ns.name), &wrong[..]),
        (format!("/hook/{}/no-hooks", ns.name), &wrong[..]),
        ("/hook/no-such-namespace/fleet".to_owned(), &wrong[..]),
    ] {
        let (code, text) = post(addr, &path, headers, &body);
        assert_eq!((code, text.as_str()), (401, "unauthorized\n"), "{path}");
    }
    let repos: Api<GitopsRepository> = Api::namespaced(ns.client.clone(), &ns.name);
    assert!(
        !repos
            .get("fleet")
            .await
            .unwrap()
            .annotations()
            .contains_key(annotations::PUSH_RECEIVED_AT)
    );

    // A signed push of the revision already planned: git is checked, and the plan
    // awaiting approval stays.
    let (code, text) = post(addr, &path, &signed(&body, "d-1"), &body);
    assert_eq!(code, 202, "{text}");
    let handled = |repo: GitopsRepository| repo.status.and_then(|s| s.last_handled_push);
    support::eventually("the push handled", Duration::from_secs(30), || {
        let repos = repos.clone();
        async move { handled(repos.get("fleet").await.ok()?) }
    })
    .await;
    let runs: Api<SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    let all = runs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(
        all.len(),
        1,
        "a push of the same revision plans nothing new"
    );
    let still = runs.get(&pending.name_any()).await.unwrap();
    assert_eq!(still.status.unwrap().phase, Some(Phase::AwaitingApproval));

    // The same delivery again is acknowledged and ignored, even once git has moved on.
    let v2 = repo.commit(
        &[("fleet.yaml", include_bytes!("../../examples/fleet-v2.yaml"))],
        "second",
    );
    let before = handled(repos.get("fleet").await.unwrap());
    let (code, text) = post(addr, &path, &signed(&body, "d-1"), &body);
    assert_eq!((code, text.as_str()), (200, "duplicate delivery ignored\n"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(handled(repos.get("fleet").await.unwrap()), before);
    assert_eq!(
        runs.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    // A new delivery of the new commit plans it at once (it supersedes the older plan,
    // as any new revision does).
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{v2}"}}"#).into_bytes();
    let (code, text) = post(addr, &path, &signed(&body, "d-2"), &body);
    assert_eq!(code, 202, "{text}");
    let run = run_in_phase(&ns.client, &ns.name, &v2, Phase::AwaitingApproval).await;
    assert_eq!(run.spec.trigger, Trigger::Schedule);
    // GitLab's form is accepted too; a body seen before without a delivery id is a replay.
    let gitlab = [("X-Gitlab-Token", "s3cret".to_owned())];
    let (code, text) = post(addr, &path, &gitlab, b"{\"after\":\"x\"}");
    assert_eq!(code, 202, "{text}");
    let (code, _) = post(addr, &path, &gitlab, b"{\"after\":\"x\"}");
    assert_eq!(code, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        runs.list(&ListParams::default()).await.unwrap().items.len(),
        2,
        "pushes alone never re-plan a revision"
    );
}

/// A repository that takes pushes signed with `token`, as `who` (an editor) creates it.
async fn hooked_repository(t: &support::tenant::Tenant, token: &str) {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "hook"}, "stringData": {"token": token},
    }))
    .unwrap();
    Api::namespaced(t.alice.clone(), &t.ns.name)
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    let mut spec = t.ssh_spec();
    spec["interval"] = "1h".into();
    spec["webhookSecretRef"] = serde_json::json!({"name": "hook"});
    create_repository(&t.alice, &t.ns.name, "fleet", spec).await;
}

#[tokio::test]
async fn a_replay_with_a_fresh_delivery_id_is_ignored_and_another_tenant_cannot_flush_it() {
    let victim = support::tenant::tenant("victim").await;
    let attacker = support::tenant::tenant("attacker").await;
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let _chart = support::chart::Installed::new(
        &[&victim.ns, &attacker.ns],
        &["--receiver-addr", &addr.to_string()],
    )
    .await;
    victim.bind_users();
    attacker.bind_users();
    hooked_repository(&victim, "victim-s3cret").await;
    hooked_repository(&attacker, "attacker-s3cret").await;
    let v1 = victim
        .repo
        .commit(&[("fleet.yaml", support::tenant::V1)], "first");
    run_in_phase(&victim.admin, &victim.ns.name, &v1, Phase::AwaitingApproval).await;
    wait_until_listening(addr).await;

    let victim_path = format!("/hook/{}/fleet", victim.ns.name);
    let signed = |body: &[u8], key: &[u8], delivery: &str| {
        vec![
            ("X-Gitea-Signature", sign(body, key)),
            ("X-Gitea-Delivery", delivery.to_owned()),
        ]
    };
    // A push the victim's forge sent, and someone captured.
    let captured = format!(r#"{{"ref":"refs/heads/main","after":"{v1}"}}"#).into_bytes();
    let (code, text) = post(
        addr,
        &victim_path,
        &signed(&captured, b"victim-s3cret", "d-1"),
        &captured,
    );
    assert_eq!(code, 202, "{text}");
    let repos: Api<GitopsRepository> = Api::namespaced(victim.admin.clone(), &victim.ns.name);
    let pushed = |repo: GitopsRepository| {
        repo.annotations()
            .get(annotations::PUSH_RECEIVED_AT)
            .cloned()
    };
    let first = pushed(repos.get("fleet").await.unwrap());
    assert!(first.is_some());

    // Replayed with fresh delivery ids: the same signed body, the same delivery.
    for fresh in ["d-2", "d-3", "replay-9f2c"] {
        let (code, text) = post(
            addr,
            &victim_path,
            &signed(&captured, b"victim-s3cret", fresh),
            &captured,
        );
        assert_eq!(
            (code, text.as_str()),
            (200, "duplicate delivery ignored\n"),
            "{fresh}"
        );
    }

    // The attacker signs as many deliveries of its own as it likes, to push the victim's
    // out of the receiver's memory; it only pushes out its own.
    let attacker_path = format!("/hook/{}/fleet", attacker.ns.name);
    for n in 0..1_100 {
        let body = format!(r#"{{"ref":"refs/heads/main","after":"{n:040}"}}"#).into_bytes();
        let (code, text) = post(
            addr,
            &attacker_path,
            &signed(&body, b"attacker-s3cret", &format!("a-{n}")),
            &body,
        );
        assert!(code == 202 || code == 503, "{code} {text}");
    }
    let (code, text) = post(
        addr,
        &victim_path,
        &signed(&captured, b"victim-s3cret", "after-flood"),
        &captured,
    );
    assert_eq!((code, text.as_str()), (200, "duplicate delivery ignored\n"));
    assert_eq!(
        pushed(repos.get("fleet").await.unwrap()),
        first,
        "the replay changed nothing"
    );

    // The victim's next push goes through and plans its revision.
    let v2 = victim.repo.commit(
        &[("fleet.yaml", include_bytes!("../../examples/fleet-v2.yaml"))],
        "second",
    );
    let next = format!(r#"{{"ref":"refs/heads/main","after":"{v2}"}}"#).into_bytes();
    let (code, text) = post(
        addr,
        &victim_path,
        &signed(&next, b"victim-s3cret", "d-4"),
        &next,
    );
    assert_eq!(code, 202, "{text}");
    run_in_phase(&victim.admin, &victim.ns.name, &v2, Phase::AwaitingApproval).await;
}
