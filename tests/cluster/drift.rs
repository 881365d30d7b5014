//! Drift detection and remediation, approval policies, prevent-destroy and history,
//! against the real control plane with the controller as a child process.

use crate::support;

use std::time::Duration;

use fleetgate::api::repository::GitopsRepository;
use fleetgate::api::syncrun::{Phase, Trigger};
use fleetgate::api::{FleetNode, SdwanPeer};
use fleetgate::fleet::drift::DriftKind;
use kube::api::Api;
use kube::{Client, ResourceExt};
use support::fleet::Fleet;
use support::operator::*;

const V1: &[u8] = include_bytes!("../../examples/fleet.yaml");
const V2: &[u8] = include_bytes!("../../examples/fleet-v2.yaml");

/// The reference fleet over file:// under a controller, with `spec` fields.
async fn fixture(prefix: &str, spec: serde_json::Value) -> Fleet {
    Fleet::in_namespace(prefix)
        .holding(V1)
        .over_file_url()
        .with_spec(spec)
        .controller_running()
        .await
}

fn kubectl(ns: &str, args: &[&str], stdin: Option<&str>) {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    support::run_tool_with_input("kubectl", &all, stdin.unwrap_or_default());
}

/// Resizes tokyo-02, deletes london's peer, and adds a node git does not declare.
fn drift_by_hand(ns: &str) {
    resize_tokyo(ns, "t3-xlarge");
    kubectl(
        ns,
        &["delete", "sdwanpeer", "edge-fabric.edge-london-01"],
        None,
    );
    let stray = r#"{"apiVersion":"fleet.fleetgate.dev/v1alpha1","kind":"FleetNode",
        "metadata":{"name":"stray-01","labels":{"gitops.fleetgate.dev/repository":"fleet"}},
        "spec":{"template":"edge-cdn","nodePlatform":"p","architecture":"amd64","region":"r","instanceType":"i","lifecycleClass":"persistent"}}"#;
    kubectl(ns, &["create", "-f", "-"], Some(stray));
}

async fn repository(client: &Client, ns: &str) -> GitopsRepository {
    Api::<GitopsRepository>::namespaced(client.clone(), ns)
        .get("fleet")
        .await
        .unwrap()
}

/// Waits until the repository reports exactly the three hand-made drifts.
async fn three_drifts(client: &Client, ns: &str) -> GitopsRepository {
    let api: Api<GitopsRepository> = Api::namespaced(client.clone(), ns);
    support::eventually(
        "the three drifts in status",
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let repo = api.get("fleet").await.ok()?;
                (repo.status.as_ref()?.drift.as_ref()?.count == 3).then_some(repo)
            }
        },
    )
    .await
}

fn assert_three_drifts(repo: &GitopsRepository) {
    let status = repo.status.as_ref().unwrap();
    let drift = status.drift.as_ref().unwrap();
    let listed: Vec<String> = drift
        .objects
        .iter()
        .map(|d| format!("{:?} {}/{} {:?}", d.drift, d.kind, d.name, d.fields))
        .collect();
    assert_eq!(
        listed,
        [
            r#"Changed FleetNode/edge-tokyo-02 ["instanceType: \"t3-medium\" -> \"t3-xlarge\""]"#,
            r#"Unexpected FleetNode/stray-01 []"#,
            r#"Missing SdwanPeer/edge-fabric.edge-london-01 []"#,
        ]
    );
    assert!(drift.detected_at.is_some());
    let drifted = fleetgate::api::condition(&status.conditions, "Drifted").unwrap();
    assert_eq!(
        (drifted.status.as_str(), drifted.reason.as_str()),
        ("True", "DriftDetected")
    );
    assert!(
        drifted
            .message
            .starts_with("3 objects differ from revision"),
        "{}",
        drifted.message
    );
}

async fn assert_restored(client: &Client, ns: &str) {
    let nodes: Api<FleetNode> = Api::namespaced(client.clone(), ns);
    assert_eq!(
        nodes
            .get("edge-tokyo-02")
            .await
            .unwrap()
            .spec
            .resolved
            .instance_type,
        "t3-medium"
    );
    assert!(nodes.get_opt("stray-01").await.unwrap().is_none());
    let peers: Api<SdwanPeer> = Api::namespaced(client.clone(), ns);
    assert!(
        peers
            .get_opt("edge-fabric.edge-london-01")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn drift_is_reported_once_and_a_drift_run_restores_it_after_approval() {
    let f = fixture("drift-plan", serde_json::json!({})).await;
    let (client, ns) = (f.ns.client.clone(), f.ns.name.clone());
    let run = run_in_phase(&client, &ns, &f.head, Phase::AwaitingApproval).await;
    approval(&client, &run).await;
    run_in_phase(&client, &ns, &f.head, Phase::Applied).await;

    drift_by_hand(&ns);
    let repo = three_drifts(&client, &ns).await;
    assert_three_drifts(&repo);
    let digest = repo.status.unwrap().drift.unwrap().digest;
    // The Drift run planned for exactly this drift waits for approval like any other.
    let drift_run = support::eventually(
        "a Drift run for the current drift",
        Duration::from_secs(60),
        || {
            let (client, ns, digest) = (client.clone(), ns.clone(), digest.clone());
            async move {
                drift_runs(&client, &ns)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|r| {
                        r.annotations().get("gitops.fleetgate.dev/drift") == Some(&digest)
                            && r.phase() == Some(Phase::AwaitingApproval)
                    })
            }
        },
    )
    .await;
    let changes = drift_run.status.as_ref().unwrap().changes.unwrap();
    assert_eq!((changes.add, changes.update, changes.delete), (1, 1, 1));
    let detected = events(&client, &ns, "fleet", "DriftDetected").await;
    assert_eq!(detected.len(), 1, "one Warning for the drift: {detected:?}");

    approval(&client, &drift_run).await;
    wait_for_status(
        &client,
        &ns,
        &drift_run.name_any(),
        "the drift run applied",
        |s| s.phase == Some(Phase::Applied),
    )
    .await;
    assert_restored(&client, &ns).await;
    let api: Api<GitopsRepository> = Api::namespaced(client.clone(), &ns);
    support::eventually("the drift to clear", Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            let repo = api.get("fleet").await.ok()?;
            let c = fleetgate::api::condition(&repo.status?.conditions, "Drifted")?.clone();
            (c.status == "False").then_some(())
        }
    })
    .await;
    assert_eq!(events(&client, &ns, "fleet", "DriftCleared").await.len(), 1);

    // History answers "what was applied, when, by whom" without listing SyncRuns.
    let history = repository(&client, &ns).await.status.unwrap().history;
    assert_eq!(history[0].sync_run, drift_run.name_any());
    assert_eq!(history[0].trigger, Trigger::Drift);
    assert_eq!(history.last().unwrap().phase, Some(Phase::Applied));
    let applied: Vec<_> = history
        .iter()
        .filter(|h| h.phase == Some(Phase::Applied))
        .collect();
    assert_eq!(applied.len(), 2, "{history:?}");
    assert!(
        applied
            .iter()
            .all(|h| h.approved_by.is_some() && h.completed_at.is_some())
    );
    // Drift runs planned for a drift that then changed were superseded, never applied.
    assert!(
        history
            .iter()
            .all(|h| matches!(h.phase, Some(Phase::Applied) | Some(Phase::Superseded))),
        "{history:?}"
    );
}

#[tokio::test]
async fn under_correct_drift_is_restored_without_approval() {
    let f = fixture(
        "drift-correct",
        serde_json::json!({"driftRemediation": "Correct"}),
    )
    .await;
    let (client, ns) = (f.ns.client.clone(), f.ns.name.clone());
    let run = run_in_phase(&client, &ns, &f.head, Phase::AwaitingApproval).await;
    approval(&client, &run).await;
    run_in_phase(&client, &ns, &f.head, Phase::Applied).await;

    drift_by_hand(&ns);
    let restored = support::eventually(
        "a Drift run applied by policy",
        Duration::from_secs(60),
        || {
            let (client, ns) = (client.clone(), ns.clone());
            async move {
                drift_runs(&client, &ns)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|r| {
                        let s = r.status.as_ref();
                        s.and_then(|s| s.phase) == Some(Phase::Applied)
                            && s.and_then(|s| s.approved_by.as_deref()) == Some("policy/Correct")
                    })
            }
        },
    )
    .await;
    assert!(!restored.status.unwrap().requires_approval);
    support::eventually("the cluster restored", Duration::from_secs(60), || {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            let nodes: Api<FleetNode> = Api::namespaced(client.clone(), &ns);
            let peers: Api<SdwanPeer> = Api::namespaced(client.clone(), &ns);
            let ok = nodes
                .get("edge-tokyo-02")
                .await
                .ok()?
                .spec
                .resolved
                .instance_type
                == "t3-medium"
                && nodes.get_opt("stray-01").await.ok()?.is_none()
                && peers
                    .get_opt("edge-fabric.edge-london-01")
                    .await
                    .ok()?
                    .is_some();
            ok.then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn under_report_drift_is_recorded_and_nothing_is_changed() {
    let (_f, client, ns) = reporting("drift-report").await;
    drift_by_hand(&ns);
    let repo = three_drifts(&client, &ns).await;
    assert_three_drifts(&repo);
    assert_eq!(
        repo.status.unwrap().drift.unwrap().objects[0].drift,
        DriftKind::Changed
    );
    // Several intervals later: still drifted, nothing planned or changed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(drift_runs(&client, &ns).await.unwrap().is_empty());
    let nodes: Api<FleetNode> = Api::namespaced(client.clone(), &ns);
    assert_eq!(
        nodes
            .get("edge-tokyo-02")
            .await
            .unwrap()
            .spec
            .resolved
            .instance_type,
        "t3-xlarge"
    );
    assert!(nodes.get_opt("stray-01").await.unwrap().is_some());
    assert_eq!(
        events(&client, &ns, "fleet", "DriftDetected").await.len(),
        1
    );
}

#[tokio::test]
async fn auto_apply_non_destructive_applies_additions_and_waits_for_deletions() {
    let f = fixture(
        "policy",
        serde_json::json!({"approval": "AutoApplyNonDestructive"}),
    )
    .await;
    let (client, ns) = (f.ns.client.clone(), f.ns.name.clone());
    let applied = run_in_phase(&client, &ns, &f.head, Phase::Applied).await;
    assert_eq!(
        applied.status.unwrap().approved_by.as_deref(),
        Some("policy/AutoApplyNonDestructive")
    );

    let v2 = f
        .repo
        .commit(&[("fleet.yaml", V2)], "paris replaces london");
    let waiting = run_in_phase(&client, &ns, &v2, Phase::AwaitingApproval).await;
    assert!(
        waiting.status.unwrap().requires_approval,
        "a plan with deletions waits"
    );

    // A change to a sensitive field waits too, even without deletions.
    let replatform = String::from_utf8(V1.to_vec())
        .unwrap()
        .replace("ubuntu-24.04-amd64", "ubuntu-26.04-amd64");
    let v3 = f
        .repo
        .commit(&[("fleet.yaml", replatform.as_bytes())], "new platform");
    let sensitive = run_in_phase(&client, &ns, &v3, Phase::AwaitingApproval).await;
    assert!(sensitive.status.unwrap().requires_approval);
}

#[tokio::test]
async fn prevent_destroy_stops_a_plan_that_would_delete_the_object() {
    let f = fixture("protect", serde_json::json!({"approval": "Auto"})).await;
    let (client, ns) = (f.ns.client.clone(), f.ns.name.clone());
    run_in_phase(&client, &ns, &f.head, Phase::Applied).await;
    kubectl(
        &ns,
        &[
            "annotate",
            "fleetnode",
            "edge-london-01",
            "gitops.fleetgate.dev/prevent-destroy=true",
        ],
        None,
    );
    // The controller's cache must see the annotation before the next plan.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v2 = f
        .repo
        .commit(&[("fleet.yaml", V2)], "paris replaces london");
    let failed = run_in_phase(&client, &ns, &v2, Phase::Failed).await;
    let message = failed.status.unwrap().message.unwrap();
    assert!(
        message.contains("fleetnode/edge-london-01 is marked gitops.fleetgate.dev/prevent-destroy and would be deleted"),
        "{message}"
    );
    let nodes: Api<FleetNode> = Api::namespaced(client.clone(), &ns);
    assert!(nodes.get_opt("edge-london-01").await.unwrap().is_some());
    assert!(
        nodes.get_opt("edge-paris-01").await.unwrap().is_none(),
        "nothing was applied"
    );
}

/// A repository that only reports drift, its first revision applied.
async fn reporting(prefix: &str) -> (Fleet, Client, String) {
    let f = fixture(
        prefix,
        serde_json::json!({"driftRemediation": "Report", "approval": "Auto"}),
    )
    .await;
    let (client, ns) = (f.ns.client.clone(), f.ns.name.clone());
    run_in_phase(&client, &ns, &f.head, Phase::Applied).await;
    (f, client, ns)
}

/// Sets edge-tokyo-02's instance type by hand.
fn resize_tokyo(ns: &str, instance_type: &str) {
    let patch = format!(r#"{{"spec":{{"instanceType":"{instance_type}"}}}}"#);
    kubectl(
        ns,
        &[
            "patch",
            "fleetnode",
            "edge-tokyo-02",
            "--type",
            "merge",
            "-p",
            &patch,
        ],
        None,
    );
}

/// Waits until the repository's drift count is `count` (none when 0).
async fn drift_count(client: &Client, ns: &str, count: u32) {
    let api: Api<GitopsRepository> = Api::namespaced(client.clone(), ns);
    support::eventually(
        &format!("{count} drifted objects in status"),
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let repo = api.get("fleet").await.ok()?;
                let status = repo.status?;
                let now = status.drift.map_or(0, |d| d.count);
                (now == count && status.last_applied_revision.is_some()).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn each_drift_episode_is_its_own_event() {
    let (_f, client, ns) = reporting("drift-episodes").await;
    // Drifted, restored by hand, drifted again in the same way: two episodes, and the
    // second is not folded into the first one's Event as a count.
    resize_tokyo(&ns, "t3-xlarge");
    drift_count(&client, &ns, 1).await;
    assert_eq!(
        events(&client, &ns, "fleet", "DriftDetected").await.len(),
        1
    );
    resize_tokyo(&ns, "t3-medium");
    drift_count(&client, &ns, 0).await;
    assert_eq!(events(&client, &ns, "fleet", "DriftCleared").await.len(), 1);
    resize_tokyo(&ns, "t3-xlarge");
    drift_count(&client, &ns, 1).await;
    let detected = support::eventually(
        "a second DriftDetected Event",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                let detected = events(&client, &ns, "fleet", "DriftDetected").await;
                (detected.len() >= 2).then_some(detected)
            }
        },
    )
    .await;
    assert_eq!(detected.len(), 2, "{detected:?}");
    for message in &detected {
        assert!(
            message.contains("edge-tokyo-02") && message.starts_with("1 objects differ"),
            "{message}"
        );
    }
    // Several checks later the episode is still one Event.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        events(&client, &ns, "fleet", "DriftDetected").await.len(),
        2
    );
}
