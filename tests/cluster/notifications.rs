//! Notifications on the real control plane: a generic webhook (signed) and a
//! Slack-compatible one, received by an HTTP server in the test that checks the
//! signature, the body and the count, across a receiver outage and a controller restart.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use fleetgate::api::syncrun::Phase;
use hmac::{Hmac, Mac};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use sha2::Sha256;
use support::git::server;
use support::operator::*;

/// What the receiver got: path, delivery id, signature, body; and whether it accepted.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    id: String,
    signature: Option<String>,
    body: serde_json::Value,
    raw: Vec<u8>,
    accepted: bool,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answer 503 to this many requests first, as a receiver that is down would.
    fail_first: Arc<Mutex<usize>>,
}

impl Receiver {
    fn accepted(&self, path: &str) -> Vec<Received> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|r| r.accepted && r.path == path)
            .cloned()
            .collect()
    }
}

async fn receive(
    State(r): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let accepted = {
        let mut fail = r.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            false
        } else {
            true
        }
    };
    r.got.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        id: header("x-fleetgate-delivery").unwrap_or_default(),
        signature: header("x-fleetgate-signature"),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        raw: body.to_vec(),
        accepted,
    });
    if accepted {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(b"hook-s3cret").unwrap();
    mac.update(body);
    format!(
        "sha256={}",
        fleetgate::fleet::plan::hex(&mac.finalize().into_bytes())
    )
}

async fn apply(client: &kube::Client, ns: &str, value: serde_json::Value) {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::api::ApiResource::erase::<fleetgate::api::NotificationTarget>(&()),
    );
    api.create(
        &PostParams::default(),
        &serde_json::from_value(value).unwrap(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn plans_refusals_and_applies_are_told_once_each_signed_across_a_restart() {
    let ns = support::env().namespace("notify").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let receiver = Receiver::default();
    *receiver.fail_first.lock().unwrap() = 1;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(axum::routing::post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    for (name, address) in [
        ("hook", format!("http://{addr}/hook")),
        ("slack", format!("http://{addr}/slack")),
    ] {
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "stringData": {"address": address, "token": "hook-s3cret"},
            }))
            .unwrap();
        Api::namespaced(ns.client.clone(), &ns.name)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
    let target = |name: &str, kind: &str, events: &[&str]| {
        serde_json::json!({
            "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "NotificationTarget",
            "metadata": {"name": name},
            "spec": {"type": kind, "secretRef": {"name": name}, "events": events},
        })
    };
    apply(
        &ns.client,
        &ns.name,
        target(
            "hook",
            "Webhook",
            &[
                "PlanAwaitingApproval",
                "ApprovalRefused",
                "Applied",
                "DriftDetected",
                "DriftCleared",
                "RepositoryStalled",
            ],
        ),
    )
    .await;
    apply(&ns.client, &ns.name, target("slack", "Slack", &["Applied"])).await;

    let git = server();
    let repo = git.create_repo("notify");
    let v1 = repo.commit(
        &[("fleet.yaml", include_bytes!("../../examples/fleet.yaml"))],
        "first",
    );
    let mut controller = ControllerProcess::start(&ns, &["--allow-http-urls"]);
    create_repository(
        &ns.client,
        &ns.name,
        "fleet",
        serde_json::json!({
            "url": git.file_url(&repo), "ref": {"branch": "main"}, "interval": "2s",
            "driftRemediation": "Report",
        }),
    )
    .await;
    let run = run_in_phase(&ns.client, &ns.name, &v1, Phase::AwaitingApproval).await;
    let plan_id = run.status.as_ref().unwrap().plan_id.clone().unwrap();

    // The first delivery meets a receiver that is down; the retry gets through.
    let awaiting = support::eventually("the plan notified", Duration::from_secs(30), || async {
        receiver.accepted("/hook").into_iter().next()
    })
    .await;
    let tries = receiver.got.lock().unwrap().clone();
    assert!(
        tries.len() >= 2 && !tries[0].accepted && tries[0].id == awaiting.id,
        "{tries:?}"
    );
    let body = &awaiting.body;
    assert_eq!(
        awaiting.signature.as_deref(),
        Some(signature(&awaiting.raw).as_str()),
        "signed with the Secret's token"
    );
    assert_eq!(body["event"], "PlanAwaitingApproval");
    assert_eq!(body["repository"], "fleet");
    assert_eq!(body["namespace"], ns.name.as_str());
    assert_eq!(body["run"], run.name_any().as_str());
    assert_eq!(body["revision"], v1.as_str());
    assert_eq!(body["planId"], plan_id.as_str());
    assert_eq!(body["phase"], "AwaitingApproval");
    assert_eq!(body["summary"], "10 to add, 0 to change, 0 to delete");
    assert_eq!(
        body["approveCommand"],
        format!(
            "kubectl annotate -n {} syncrun/{} gitops.fleetgate.dev/approve={plan_id}",
            ns.name,
            run.name_any()
        )
        .as_str()
    );
    assert!(!body.to_string().contains("hook-s3cret"));

    // A wrong approval is refused and told.
    ns.approve(&run).plan("plan-000000000000").await;
    let refused = support::eventually("the refusal notified", Duration::from_secs(30), || async {
        receiver
            .accepted("/hook")
            .into_iter()
            .find(|r| r.body["event"] == "ApprovalRefused")
    })
    .await;
    assert!(
        refused.body["summary"]
            .as_str()
            .unwrap()
            .contains("plan-000000000000"),
        "{refused:?}"
    );

    // A restart (a new leader) sends nothing already sent.
    controller.kill();
    let _controller = ControllerProcess::start(&ns, &["--allow-http-urls"]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(receiver.accepted("/hook").len(), 2, "nothing sent twice");

    ns.approve(&run).await;
    run_in_phase(&ns.client, &ns.name, &v1, Phase::Applied).await;
    let slack = support::eventually("Slack told", Duration::from_secs(30), || async {
        receiver.accepted("/slack").into_iter().next()
    })
    .await;
    let text = slack.body["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("*fleetgate {}/fleet*: applied", ns.name)),
        "{text}"
    );
    assert!(slack.signature.is_none(), "Slack payloads are not signed");
    support::eventually("the apply notified", Duration::from_secs(30), || async {
        receiver
            .accepted("/hook")
            .into_iter()
            .find(|r| r.body["event"] == "Applied")
    })
    .await;

    // Drift, then its end, each told once.
    let nodes: Api<fleetgate::api::FleetNode> = Api::namespaced(ns.client.clone(), &ns.name);
    let resize = |size: &str| serde_json::json!({"spec": {"instanceType": size}});
    let merge = kube::api::PatchParams::default();
    nodes
        .patch(
            "edge-tokyo-02",
            &merge,
            &kube::api::Patch::Merge(resize("t3-xlarge")),
        )
        .await
        .unwrap();
    let event = |name: &'static str| {
        let receiver = receiver.clone();
        async move {
            receiver
                .accepted("/hook")
                .into_iter()
                .find(|r| r.body["event"] == name)
        }
    };
    let drift = support::eventually("drift notified", Duration::from_secs(30), || {
        event("DriftDetected")
    })
    .await;
    assert!(
        drift.body["summary"]
            .as_str()
            .unwrap()
            .contains("1 objects differ"),
        "{drift:?}"
    );
    nodes
        .patch(
            "edge-tokyo-02",
            &merge,
            &kube::api::Patch::Merge(resize("t3-medium")),
        )
        .await
        .unwrap();
    support::eventually("drift cleared notified", Duration::from_secs(30), || {
        event("DriftCleared")
    })
    .await;

    // A repository whose Secret does not exist stalls.
    create_repository(
        &ns.client,
        &ns.name,
        "stuck",
        serde_json::json!({"url": git.file_url(&repo), "ref": {"branch": "main"}, "secretRef": {"name": "missing"}}),
    )
    .await;
    let stalled = support::eventually("the stall notified", Duration::from_secs(30), || {
        event("RepositoryStalled")
    })
    .await;
    assert_eq!(stalled.body["repository"], "stuck");
    assert!(
        stalled.body["summary"]
            .as_str()
            .unwrap()
            .starts_with("SecretError: "),
        "{stalled:?}"
    );

    tokio::time::sleep(Duration::from_secs(5)).await;
    let events: Vec<String> = receiver
        .accepted("/hook")
        .iter()
        .map(|r| r.body["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        events,
        [
            "PlanAwaitingApproval",
            "ApprovalRefused",
            "Applied",
            "DriftDetected",
            "DriftCleared",
            "RepositoryStalled"
        ],
        "one notification per occurrence"
    );
    assert_eq!(receiver.accepted("/slack").len(), 1);

    let targets: Api<fleetgate::api::NotificationTarget> =
        Api::namespaced(ns.client.clone(), &ns.name);
    let status = targets.get("hook").await.unwrap().status.unwrap();
    let ready = fleetgate::api::condition(&status.conditions, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Delivered")
    );
}
