//! Sync on push: a signed webhook triggers a sync at once; a badly signed one changes
//! nothing. Real controller, real API server, raw HTTP as a git host would send it.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use fleetgate::api::annotations;
use fleetgate::api::syncrun::{Phase, Trigger};
use fleetgate::api::{GitopsRepository, SyncRun};
use hmac::{Hmac, Mac};
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
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
async fn a_signed_push_syncs_at_once_and_a_badly_signed_one_is_refused() {
    let ns = support::env().namespace("receiver").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let git = server();
    let repo = git.create_repo("receiver");
    let v1 = repo.commit(
        &[("fleet.yaml", include_bytes!("../examples/fleet.yaml"))],
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
            "webhookSecretRef": {"name": "hook"}, "approval": "Auto",
        }),
    )
    .await;
    run_in_phase(&ns.client, &ns.name, &v1, Phase::Applied).await;
    wait_until_listening(addr).await;

    let v2 = repo.commit(
        &[("fleet.yaml", include_bytes!("../examples/fleet-v2.yaml"))],
        "second",
    );
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{v2}"}}"#).into_bytes();
    let path = format!("/hook/{}/fleet", ns.name);

    let (code, text) = post(
        addr,
        &path,
        &[(
            "X-Hub-Signature-256",
            format!("sha256={}", sign(&body, b"wrong")),
        )],
        &body,
    );
    assert_eq!(code, 401, "{text}");
    assert_eq!(text, "the signature does not match\n");
    let (code, _) = post(addr, &path, &[], &body);
    assert_eq!(code, 401);
    let repos: Api<GitopsRepository> = Api::namespaced(ns.client.clone(), &ns.name);
    let untouched = repos.get("fleet").await.unwrap();
    assert!(
        !untouched
            .annotations()
            .contains_key(annotations::SYNC_REQUESTED_AT)
    );
    let (code, _) = post(addr, &format!("/hook/{}/nope", ns.name), &[], &body);
    assert_eq!(code, 404);

    let (code, text) = post(
        addr,
        &path,
        &[(
            "X-Hub-Signature-256",
            format!("sha256={}", sign(&body, b"s3cret")),
        )],
        &body,
    );
    assert_eq!(code, 202, "{text}");
    let run = run_in_phase(&ns.client, &ns.name, &v2, Phase::Applied).await;
    assert_eq!(run.spec.trigger, Trigger::Manual);
    // GitLab's form is accepted too.
    let (code, text) = post(addr, &path, &[("X-Gitlab-Token", "s3cret".into())], &body);
    assert_eq!(code, 202, "{text}");
    let runs: Api<SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    support::eventually("a run for the GitLab push", Duration::from_secs(30), || {
        let runs = runs.clone();
        async move { (runs.list(&ListParams::default()).await.ok()?.items.len() == 3).then_some(()) }
    })
    .await;
    assert!(
        repos
            .get("fleet")
            .await
            .unwrap()
            .meta()
            .annotations
            .is_some()
    );
}
