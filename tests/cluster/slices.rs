//! Slice approvals with the chart installed: a GovernancePolicy splits plans by region,
//! bob owns ap-tokyo-1 (by name) and the group netops (carol) owns eu-west-2. Each
//! slice needs its own owners; with applyApprovedSlices the slice bob approved applies
//! while carol's waits. Users act by impersonation with the chart's roles.

use crate::support;

use std::time::Duration;

use fleetgate::api::syncrun::{Phase, SyncRunStatus};
use fleetgate::api::{SyncRun, condition};
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::json;
use support::operator::*;
use support::policy::*;
use support::tenant::*;

/// V1 with both regions' first node resized: one update in each slice.
fn resized() -> Vec<u8> {
    let text = std::str::from_utf8(V1).unwrap();
    let out = text
        .replacen(
            "  - hostname: edge-tokyo-01\n    template: edge-cdn\n    region: ap-tokyo-1\n    instance_type: t3-medium",
            "  - hostname: edge-tokyo-01\n    template: edge-cdn\n    region: ap-tokyo-1\n    instance_type: t3-large",
            1,
        )
        .replacen(
            "    region: eu-west-2\n    instance_type: t3-medium",
            "    region: eu-west-2\n    instance_type: t3-large",
            1,
        );
    assert_eq!(out.matches("t3-large").count(), 2, "both nodes resized");
    out.into_bytes()
}

async fn instance_type(client: &Client, ns: &str, node: &str) -> String {
    let content = fleet_content(client, ns).await;
    content[&("FleetNode".to_owned(), node.to_owned())]["instanceType"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn status_where(
    t: &Tenant,
    run: &str,
    what: &str,
    f: impl Fn(&SyncRunStatus) -> bool,
) -> SyncRunStatus {
    wait_for_status(&t.admin, &t.ns.name, run, what, f)
        .await
        .status
        .unwrap()
}

/// Two region owners each approve their slice; bob's applies first, carol's waits for
/// her, and an approver who owns neither slice counts for nothing.
#[tokio::test]
async fn two_region_owners_each_approve_their_slice_and_one_applies_first() {
    let t = tenant("slices").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    support::chart::bind(ns, "dave-approves", "fleetgate-approver", "dave");
    let dave = support::env()
        .client_as("dave", &["system:authenticated"])
        .await;

    // A value two owners claim is refused, located, on the policy.
    let claimed_twice = json!({"repositories": [{"namespace": ns, "name": "other"}],
    "slices": {"by": "region", "owners": [
        {"values": ["ap-tokyo-1"], "users": ["bob"]},
        {"values": ["ap-tokyo-1"], "groups": ["netops"]},
    ]}});
    let broken = Policy::create(&t.admin, &format!("{ns}-claimed-twice"), claimed_twice).await;
    let status = broken.ready_reason("InvalidSpec").await.status.unwrap();
    assert!(
        status.errors[0].starts_with(
            "spec.slices.owners[1].values: `ap-tokyo-1` is already owned by spec.slices.owners[0]"
        ),
        "{:?}",
        status.errors
    );
    drop(broken);

    // The fleet exists, applied whole before any policy splits it.
    let (v1, first) = t.first_plan().await;
    t.approve(&first).by(&t.bob).await;
    run_in_phase(&t.admin, ns, &v1, Phase::Applied).await;

    // The resize is planned before the policy splits plans: an approval of that plan
    // does not apply it, it ends the plan, and the revision is planned by slice.
    let v2 = t
        .repo
        .commit(&[("fleet.yaml", &resized())], "resize a node per region");
    let unsplit = run_in_phase(&t.admin, ns, &v2, Phase::AwaitingApproval).await;
    assert!(unsplit.status.as_ref().unwrap().slices.is_none());
    let _policy = Policy::create(
        &t.admin,
        &format!("{ns}-regions"),
        selecting(
            ns,
            json!({"slices": {"by": "region", "applyApprovedSlices": true, "owners": [
                {"values": ["ap-tokyo-1"], "users": ["bob"]},
                {"values": ["eu-west-2"], "groups": ["netops"]},
            ]}}),
        ),
    )
    .await;
    t.approve(&unsplit).by(&t.bob).await;
    let expired = status_where(&t, &unsplit.name_any(), "the unsplit plan expired", |s| {
        s.phase == Some(Phase::Expired)
    })
    .await;
    // (Its message may since say that bob's approval came too late; the condition keeps
    // why it ended.)
    let ended = condition(&expired.conditions, "Ready").unwrap();
    assert_eq!(ended.reason, "PlanExpired");
    assert!(
        ended
            .message
            .contains("splits plans by region and this plan was made before it did"),
        "{}",
        ended.message
    );
    assert!(!expired.wrote_any());
    assert_eq!(
        instance_type(&t.admin, ns, "edge-tokyo-01").await,
        "t3-medium"
    );
    let run = support::eventually(
        "the revision planned by slice",
        Duration::from_secs(60),
        || async {
            let api: Api<SyncRun> = Api::namespaced(t.admin.clone(), ns);
            api.list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|r| {
                    r.spec.revision == v2
                        && r.phase() == Some(Phase::AwaitingApproval)
                        && r.status.as_ref().is_some_and(|s| s.slices.is_some())
                })
        },
    )
    .await;
    let name = run.name_any();
    let s = run.status.clone().unwrap();
    let split = s.slices.clone().expect("the plan records its slices");
    assert_eq!(split.by, "region");
    let names: Vec<&str> = split.slices.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ap-tokyo-1", "eu-west-2"]);
    assert!(
        s.message.as_deref().is_some_and(|m| m.contains(
            "slice ap-tokyo-1: 0/1 from users bob; slice eu-west-2: 0/1 from groups netops"
        )),
        "{:?}",
        s.message
    );
    let shown = support::kubectl_fleet(ns, &["plan", &name]);
    assert!(
        shown.contains("Slices (by region): ap-tokyo-1 (1 action), eu-west-2 (1 action)"),
        "{shown}"
    );
    println!("status.message: {}", s.message.clone().unwrap_or_default());

    // dave may approve, but owns neither slice: refused, nothing recorded.
    t.approve(&run).by(&dave).await;
    let s = status_where(&t, &name, "dave refused", |s| {
        s.message
            .as_deref()
            .is_some_and(|m| m.contains("dave owns none of this plan's slices"))
    })
    .await;
    assert!(s.approvals.is_empty(), "{:?}", s.approvals);
    approval_cleared(&t, &name).await;

    // bob approves his slice: tokyo is resized, london is not, the run waits for carol.
    t.approve(&run).by(&t.bob).await;
    let s = status_where(&t, &name, "tokyo written, london waiting", |s| {
        s.phase == Some(Phase::AwaitingApproval)
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == "AwaitingSlices")
    })
    .await;
    assert_eq!(
        instance_type(&t.admin, ns, "edge-tokyo-01").await,
        "t3-large"
    );
    assert_eq!(
        instance_type(&t.admin, ns, "edge-london-01").await,
        "t3-medium"
    );
    let shown = support::kubectl_fleet(ns, &["plan", &name]);
    assert!(
        shown.contains("Approvals: bob (each slice counts its owners)\nSlices (by region): ap-tokyo-1 (1 action), eu-west-2 (1 action); approved so far: ap-tokyo-1"),
        "{shown}"
    );
    println!("$ kubectl fleet plan {name}\n{shown}");
    println!("status.message: {}", s.message.clone().unwrap_or_default());
    let authorization = s.authorization.clone().unwrap();
    assert_eq!(authorization.slices, ["ap-tokyo-1"]);
    assert_eq!(authorization.approvers, ["bob"]);
    let ready = condition(&s.conditions, "Ready").unwrap();
    assert!(
        ready
            .message
            .contains("the rest waits for its owners to approve"),
        "{}",
        ready.message
    );

    // bob again counts once, and for his slice only.
    t.approve(&run).by(&t.bob).await;
    let s = status_where(&t, &name, "bob counted once", |s| {
        s.message
            .as_deref()
            .is_some_and(|m| m.contains("bob already approved"))
    })
    .await;
    assert_eq!(s.phase, Some(Phase::AwaitingApproval));
    approval_cleared(&t, &name).await;
    assert_eq!(
        instance_type(&t.admin, ns, "edge-london-01").await,
        "t3-medium"
    );

    // carol (group netops) approves hers: the rest applies, the run is Applied.
    t.approve(&run).by(&t.carol).await;
    let applied = run_in_phase(&t.admin, ns, &v2, Phase::Applied).await;
    let s = applied.status.unwrap();
    assert_eq!(s.approved_by.as_deref(), Some("bob, carol"));
    assert!(
        s.authorization.unwrap().slices.is_empty(),
        "authorized whole at the end"
    );
    assert_eq!(
        instance_type(&t.admin, ns, "edge-london-01").await,
        "t3-large"
    );
    let waited = events(&t.admin, ns, &name, "AwaitingSlices").await;
    assert!(!waited.is_empty());

    // Back to V1. carol approves first, but eu-west-2 goes out in the rollout's second
    // wave: her slice waits for the first wave (bob's), and nothing is written.
    let v3 = t.repo.commit(&[("fleet.yaml", V1)], "back to medium");
    let run = run_in_phase(&t.admin, ns, &v3, Phase::AwaitingApproval).await;
    let name = run.name_any();
    t.approve(&run).by(&t.carol).await;
    status_where(&t, &name, "carol recorded", |s| {
        s.message.as_deref().is_some_and(|m| {
            m.contains("by carol recorded") && m.contains("slice eu-west-2: 1/1 (carol)")
        })
    })
    .await;
    approval_cleared(&t, &name).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = get_status(&t, &name).await;
    assert_eq!(s.phase, Some(Phase::AwaitingApproval));
    assert!(!s.wrote_any(), "{:?}", s.action_states);
    assert_eq!(
        instance_type(&t.admin, ns, "edge-london-01").await,
        "t3-large"
    );
    t.approve(&run).by(&t.bob).await;
    run_in_phase(&t.admin, ns, &v3, Phase::Applied).await;
    assert_eq!(
        instance_type(&t.admin, ns, "edge-tokyo-01").await,
        "t3-medium"
    );
    assert_eq!(
        instance_type(&t.admin, ns, "edge-london-01").await,
        "t3-medium"
    );
    drop(chart);
}

async fn get_status(t: &Tenant, run: &str) -> SyncRunStatus {
    Api::<SyncRun>::namespaced(t.admin.clone(), &t.ns.name)
        .get(run)
        .await
        .unwrap()
        .status
        .unwrap()
}
