//! One tenant's load against what the controller shares between tenants, with the chart
//! installed, its roles and users by impersonation: governance evaluations taken
//! namespace by namespace with a cost and a time limit, and notification deliveries in
//! per-namespace shares with slots held only while sending. The noisy tenant meets its
//! own limits; the quiet tenant's governed plan and notification proceed as usual.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fleetgate::api::syncrun::Phase;
use fleetgate::api::{GovernancePolicy, NotificationTarget, SyncRun, condition};
use fleetgate::fleet::synth::{Shape, fleet_yaml};
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};
use support::chart::Installed;
use support::git::server;
use support::operator::*;
use support::tenant::tenant;

/// A cluster-scoped GovernancePolicy, deleted when dropped.
struct Policy(String);

impl Policy {
    async fn create(admin: &kube::Client, name: &str, spec: Value) -> Self {
        let api: Api<GovernancePolicy> = Api::all(admin.clone());
        let _ = api.delete(name, &DeleteParams::default()).await;
        let policy: GovernancePolicy = serde_json::from_value(json!({
            "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "GovernancePolicy",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        api.create(&PostParams::default(), &policy).await.unwrap();
        support::eventually("the policy compiled", Duration::from_secs(30), || {
            let api = api.clone();
            async move {
                let p = api.get(name).await.ok()?;
                let c = condition(&p.status.as_ref()?.conditions, "Ready")?;
                (c.reason == "Compiled").then_some(())
            }
        })
        .await;
        Self(name.to_owned())
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        let _ = std::process::Command::new(support::tool("kubectl"))
            .args(["delete", "governancepolicy", &self.0, "--ignore-not-found"])
            .env("KUBECONFIG", &support::env().kubeconfig)
            .output();
    }
}

/// Quadratic in the plan's actions: fine for a handful, far past the cost limit for the
/// thousands of a large fleet.
const EVERY_ACTION_HAS_A_TWIN: &str =
    "plan.actions.all(a, plan.actions.exists(b, b.name == a.name))";

#[tokio::test]
async fn one_tenants_costly_evaluations_never_time_out_another_tenants_governed_plan() {
    let noisy = tenant("noisy").await;
    let quiet = tenant("quiet").await;
    let _chart = Installed::new(&[&noisy.ns, &quiet.ns], &[]).await;
    noisy.bind_users();
    quiet.bind_users();
    let _policy = Policy::create(
        &noisy.admin,
        &format!("fair-{}", noisy.ns.name),
        json!({
            "repositories": [{"namespace": noisy.ns.name, "name": "*"},
                             {"namespace": quiet.ns.name, "name": "*"}],
            "rules": [{"name": "twins", "expression": EVERY_ACTION_HAS_A_TWIN,
                       "action": "Warn", "message": "every action has a twin"}],
        }),
    )
    .await;

    // The noisy tenant: two large fleets (about 4,300 actions each), synced every 3 s.
    let ns = &noisy.ns.name;
    let git = server();
    let large = fleet_yaml(Shape::new(2_000), 1);
    for name in ["large-a", "large-b"] {
        let repo = git.create_repo(name);
        repo.commit(&[("fleet.yaml", large.as_bytes())], "large");
        let mut spec = noisy.ssh_spec();
        spec["url"] = git.ssh_url(&repo).into();
        create_repository(&noisy.alice, ns, name, spec).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The quiet tenant's governed plan, while the noisy one keeps asking.
    let quiet_plan = {
        let quiet = &quiet;
        async move {
            let asked = Instant::now();
            let planned = quiet.first_plan().await;
            (planned, asked.elapsed())
        }
    };
    let syncing = async {
        for n in 0..8 {
            for name in ["large-a", "large-b"] {
                request_sync(&noisy.alice, ns, name, &n.to_string()).await;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    };
    let (((_, run), took), ()) = tokio::join!(quiet_plan, syncing);
    let status = run.status.clone().unwrap();
    eprintln!(
        "the quiet tenant's governed plan took {took:?}: {:?}",
        status.policy_results
    );
    assert!(
        status
            .policy_results
            .iter()
            .any(|r| r.ends_with("/twins: Warn")),
        "the rule was evaluated over the quiet plan: {:?}",
        status.policy_results
    );
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.contains("every action has a twin"))
    );
    quiet.approve(&run).by(&quiet.bob).await;
    wait_for_status(
        &quiet.admin,
        &quiet.ns.name,
        &run.name_any(),
        "applied",
        |s| s.phase == Some(Phase::Applied),
    )
    .await;

    // The noisy tenant's plans failed closed on their own rule cost or time.
    let runs = Api::<SyncRun>::namespaced(noisy.admin.clone(), ns);
    let failed = support::eventually(
        "a noisy run failed closed",
        Duration::from_secs(120),
        || {
            let runs = runs.clone();
            async move {
                runs.list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|r| r.phase() == Some(Phase::Failed))
            }
        },
    )
    .await;
    let stalled = condition(&failed.status.as_ref().unwrap().conditions, "Stalled").unwrap();
    assert_eq!(stalled.reason, "PolicyTimeout", "{}", stalled.message);
}

/// A notification receiver on loopback that holds every connection without a word while
/// `silent`, and otherwise accepts each notification; it counts what it accepted, by event.
#[derive(Clone, Default)]
struct Receiver {
    silent: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    accepted: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(&self) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                me.connections.fetch_add(1, Ordering::Relaxed);
                let me = me.clone();
                tokio::spawn(async move {
                    if me.silent.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        return;
                    }
                    let mut request = Vec::new();
                    let mut buf = [0u8; 8192];
                    // Headers, then the body its content-length announces.
                    loop {
                        let Ok(n) = conn.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&request).to_string();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let length = head
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            if body.len() >= length {
                                let event: Value =
                                    serde_json::from_str(body).unwrap_or(Value::Null);
                                me.accepted
                                    .lock()
                                    .unwrap()
                                    .push(event["event"].as_str().unwrap_or("?").to_owned());
                                break;
                            }
                        }
                    }
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        addr
    }

    fn count(&self, event: &str) -> usize {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|e| *e == event)
            .count()
    }
}

async fn notification_target(
    who: &kube::Client,
    ns: &str,
    name: &str,
    secret: &str,
    events: &[&str],
) {
    let target: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "NotificationTarget",
        "metadata": {"name": name},
        "spec": {"type": "Webhook", "secretRef": {"name": secret}, "events": events},
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

async fn address_secret(who: &kube::Client, ns: &str, name: &str, address: String) {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": name}, "stringData": {"address": address},
    }))
    .unwrap();
    Api::namespaced(who.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// The keys a run's notified annotation records.
async fn notified(client: &kube::Client, ns: &str, run: &str) -> String {
    Api::<SyncRun>::namespaced(client.clone(), ns)
        .get(run)
        .await
        .unwrap()
        .annotations()
        .get("gitops.fleetgate.dev/notified")
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn silent_receivers_fill_their_own_namespaces_share_and_nothing_claimed_is_dropped() {
    let loud = tenant("loud").await;
    let calm = tenant("calm").await;
    let _chart = Installed::new(&[&loud.ns, &calm.ns], &["--allow-http-urls"]).await;
    loud.bind_users();
    calm.bind_users();
    let silent = Receiver::default();
    silent.silent.store(true, Ordering::Relaxed);
    let silent_addr = silent.start().await;
    let good = Receiver::default();
    let good_addr = good.start().await;

    // 130 targets of one tenant at a server that never answers.
    let ns = &loud.ns.name;
    address_secret(
        &loud.alice,
        ns,
        "silent",
        format!("http://{silent_addr}/hook"),
    )
    .await;
    for i in 0..130 {
        notification_target(
            &loud.alice,
            ns,
            &format!("silent-{i:03}"),
            "silent",
            &["PlanAwaitingApproval", "ApprovalRefused"],
        )
        .await;
    }
    let (_, run) = loud.first_plan().await;
    support::eventually(
        "130 deliveries under way",
        Duration::from_secs(60),
        || async { (silent.connections.load(Ordering::Relaxed) >= 8).then_some(()) },
    )
    .await;
    // A second occurrence needs 130 more deliveries than the namespace has room for: it
    // is not claimed while there is no room.
    loud.approve(&run)
        .by(&loud.bob)
        .plan("plan-000000000000")
        .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let keys = notified(&loud.admin, ns, &run.name_any()).await;
    assert!(keys.contains("PlanAwaitingApproval"), "{keys}");
    assert!(
        !keys.contains("ApprovalRefused"),
        "claimed without room to send it: {keys}"
    );

    // The other tenant's notification goes out meanwhile, once.
    let cns = &calm.ns.name;
    address_secret(&calm.alice, cns, "good", format!("http://{good_addr}/hook")).await;
    notification_target(&calm.alice, cns, "good", "good", &["PlanAwaitingApproval"]).await;
    let asked = Instant::now();
    calm.first_plan().await;
    support::eventually("the calm tenant told", Duration::from_secs(30), || async {
        (good.count("PlanAwaitingApproval") == 1).then_some(())
    })
    .await;
    eprintln!(
        "the calm tenant's notification arrived {:?} after its plan was asked for",
        asked.elapsed()
    );

    // The silent server answers again: what was claimed is delivered, the refusal is
    // claimed once there is room, and delivered to every target.
    silent.silent.store(false, Ordering::Relaxed);
    support::eventually(
        "every claimed notification delivered",
        Duration::from_secs(240),
        || async {
            (silent.count("PlanAwaitingApproval") == 130 && silent.count("ApprovalRefused") == 130)
                .then_some(())
        },
    )
    .await;
    let keys = notified(&loud.admin, ns, &run.name_any()).await;
    assert!(keys.contains("ApprovalRefused"), "{keys}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(good.count("PlanAwaitingApproval"), 1, "nothing sent twice");
    assert_eq!(silent.count("ApprovalRefused"), 130, "nothing sent twice");
}
