//! Governance with the chart installed: GovernancePolicies written by the cluster admin,
//! users acting by impersonation with the chart's roles (alice the editor, bob and carol
//! approvers), the controller on the chart's ServiceAccount token.

use crate::support;

use std::time::Duration;

use fleetgate::api::syncrun::Phase;
use fleetgate::api::{GovernancePolicy, SyncRun, annotations, condition};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::operator::*;
use support::policy::*;
use support::tenant::*;

const V2: &[u8] = include_bytes!("../../examples/fleet-v2.yaml");

/// The three example rules of docs/approval-and-governance.md.
const MASS_DELETE: &str = "plan.actions.filter(a, a.kind == 'FleetNode' && a.operation == 'Delete').size() * 100 > live.FleetNode * 5";
const TWO_FOR_ROUTING: &str = "plan.actions.exists(a, (a.kind == 'VirtualIp' && a.fields.exists(f, f.path == 'primaryHolder')) || a.fields.exists(f, f.path == 'nodePlatform'))";
const METADATA_ONLY: &str = "plan.actions.all(a, a.operation == 'Update' && a.fields.all(f, f.path.startsWith('metadata')))";

async fn get_run(client: &Client, ns: &str, name: &str) -> SyncRun {
    Api::<SyncRun>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

/// Waits until the run's message contains `text` (the approval annotation is then gone).
async fn message_has(t: &Tenant, run: &str, text: &str) -> SyncRun {
    let text = text.to_owned();
    wait_for_status(
        &t.admin,
        &t.ns.name,
        run,
        &format!("message with {text}"),
        |s| s.message.as_deref().is_some_and(|m| m.contains(&text)),
    )
    .await
}

/// Editors and approvers cannot write governance; a rule that does not compile is
/// reported on the policy and holds the repository's plans until fixed.
#[tokio::test]
async fn policies_are_the_platform_owners_and_broken_rules_hold_plans() {
    let t = tenant("gov-policy").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    for (who, client) in [("alice", &t.alice), ("bob", &t.bob)] {
        let api: Api<GovernancePolicy> = Api::all(client.clone());
        let (code, message) = refusal(
            api.create(
                &PostParams::default(),
                &policy("mine", selecting(ns, json!({}))),
            )
            .await,
        );
        assert_eq!(code, 403, "{who}: {message}");
        assert!(message.contains("governancepolicies"), "{message}");
    }

    let broken = json!({"rules": [
        {"name": "broken", "expression": "plan.actions.exists(a, ", "action": "Deny"},
        {"name": "fine", "expression": "true", "action": "Warn", "message": "looked at"},
    ]});
    let p = Policy::create(&t.admin, &format!("{ns}-broken"), selecting(ns, broken)).await;
    let status = p.ready_reason("InvalidRule").await.status.unwrap();
    assert!(
        status.errors[0].starts_with("rules[0] (broken): "),
        "{:?}",
        status.errors
    );
    assert_eq!(status.errors.len(), 1);
    // Neither editor nor approver can fix or delete it either.
    for client in [&t.alice, &t.bob] {
        let api: Api<GovernancePolicy> = Api::all(client.clone());
        let (code, _) = refusal(api.delete(&p.name, &DeleteParams::default()).await);
        assert_eq!(code, 403);
        let patch = json!({"spec": {"rules": []}});
        let (code, _) = refusal(
            api.patch(&p.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        );
        assert_eq!(code, 403);
    }

    create_repository(&t.admin, ns, "fleet", t.ssh_spec()).await;
    let v1 = t.repo.commit(&[("fleet.yaml", V1)], "first");
    let failed = run_in_phase(&t.admin, ns, &v1, Phase::Failed).await;
    let ready = condition(&failed.status.as_ref().unwrap().conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "PolicyInvalid", "{}", ready.message);
    assert!(
        ready.message.contains("rules[0] (broken)"),
        "{}",
        ready.message
    );
    assert!(fleet_objects(&t.admin, ns).await.is_empty());

    // Fixed by the platform owner, the next revision plans and waits for a person,
    // with the warning rule's message.
    let fixed = json!({"spec": {"rules": [
        {"name": "fine", "expression": "true", "action": "Warn", "message": "looked at"},
    ]}});
    p.api
        .patch(&p.name, &PatchParams::default(), &Patch::Merge(&fixed))
        .await
        .unwrap();
    p.ready_reason("Compiled").await;
    let v2 = t.repo.commit(&[("fleet.yaml", V2)], "second");
    let run = run_in_phase(&t.admin, ns, &v2, Phase::AwaitingApproval).await;
    let s = run.status.unwrap();
    assert!(
        s.warnings.iter().any(|w| w.contains("looked at")),
        "{:?}",
        s.warnings
    );
    drop(chart);
}

/// Two distinct approvers of the same plan: one waits, the same one twice still waits,
/// an approval of a plan replaced by an exclusion does not count, a second applies.
#[tokio::test]
async fn a_quorum_of_two_counts_distinct_approvers_of_the_current_plan() {
    let t = tenant("gov-quorum").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    let _p = Policy::create(
        &t.admin,
        &format!("{ns}-quorum"),
        selecting(ns, json!({"approvals": {"required": 2}})),
    )
    .await;
    let (v1, run) = t.first_plan().await;
    let name = run.name_any();
    let s = run.status.clone().unwrap();
    assert_eq!(s.approvals_required, Some(2));
    let p1 = s.plan_id.clone().unwrap();

    // bob approves: recorded, still waiting, the annotation cleared for the next one.
    t.approve(&run).by(&t.bob).await;
    message_has(&t, &name, "1/2 approvals (bob)").await;
    approval_cleared(&t, &name).await;
    // Cleared at the first try: a first approval is never reported as a repeat.
    let s = get_run(&t.admin, ns, &name).await.status.unwrap();
    let said = s.message.clone().unwrap_or_default();
    assert!(said.contains("by bob recorded"), "{said}");
    assert_eq!(s.phase, Some(Phase::AwaitingApproval));
    assert_eq!(s.approvals.len(), 1);
    assert_eq!(s.approvals[0].user, "bob");
    assert_eq!(s.approvals[0].plan_id, p1);
    assert!(support::kubectl_fleet(ns, &["plan", &name]).contains("Approvals: 1/2 (bob)"));

    // bob again: counts once.
    t.approve(&run).by(&t.bob).plan(&p1).await;
    message_has(&t, &name, "bob already approved").await;
    approval_cleared(&t, &name).await;
    let s = get_run(&t.admin, ns, &name).await.status.unwrap();
    assert_eq!(s.phase, Some(Phase::AwaitingApproval));
    assert_eq!(s.approvals.len(), 1);

    // alice excludes a node: a new plan, for which bob's approval does not count.
    annotate(
        &t.alice,
        ns,
        &name,
        annotations::EXCLUDE,
        Some("fleetnode/edge-london-01"),
    )
    .await;
    let replanned = wait_for_status(&t.admin, ns, &name, "a new plan", |s| {
        s.plan_id.as_deref() != Some(p1.as_str())
    })
    .await;
    let p2 = replanned.status.unwrap().plan_id.unwrap();
    t.approve(&run).by(&t.carol).plan(&p2).await;
    message_has(&t, &name, "1/2 approvals (carol)").await;
    approval_cleared(&t, &name).await;
    // The stale plan id is refused outright.
    t.approve(&run).by(&t.bob).plan(&p1).await;
    message_has(&t, &name, "does not match the current plan").await;
    assert_eq!(
        get_run(&t.admin, ns, &name).await.status.unwrap().phase,
        Some(Phase::AwaitingApproval)
    );
    assert!(fleet_objects(&t.admin, ns).await.is_empty());

    // bob approves the current plan: two distinct approvers, applied.
    t.approve(&run).by(&t.bob).plan(&p2).await;
    let applied = run_in_phase(&t.admin, ns, &v1, Phase::Applied).await;
    let s = applied.status.unwrap();
    assert_eq!(s.approved_by.as_deref(), Some("carol, bob"));
    assert!(!fleet_objects(&t.admin, ns).await.is_empty());
    let recorded = events(&t.admin, ns, &name, "ApprovalRecorded").await;
    assert!(recorded.len() >= 2, "{recorded:?}");
    drop(chart);
}

/// A plan not approved in time expires and is planned afresh; an approval older than
/// the approval expiry no longer counts.
#[tokio::test]
async fn plans_and_approvals_expire() {
    let t = tenant("gov-expiry").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    let _p = Policy::create(
        &t.admin,
        &format!("{ns}-expiry"),
        selecting(
            ns,
            json!({"approvals": {"required": 2}, "approvalExpiry": "3s", "planExpiry": "12s"}),
        ),
    )
    .await;
    let (v1, run) = t.first_plan().await;
    let name = run.name_any();
    t.approve(&run).by(&t.bob).await;
    message_has(&t, &name, "1/2 approvals (bob)").await;
    let expired = events(&t.admin, ns, &name, "ApprovalExpired").await;
    assert!(expired[0].contains("bob"), "{expired:?}");
    let s = get_run(&t.admin, ns, &name).await.status.unwrap();
    assert!(s.approvals.is_empty(), "{:?}", s.approvals);
    t.approve(&run).by(&t.carol).await;
    message_has(&t, &name, "1/2 approvals (carol)").await;

    // Nobody else approves: the plan expires, and the same revision is planned again.
    let gone = run_in_phase(&t.admin, ns, &v1, Phase::Expired).await;
    assert_eq!(gone.name_any(), name);
    let ready = condition(&gone.status.as_ref().unwrap().conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "PlanExpired");
    let fresh = run_in_phase(&t.admin, ns, &v1, Phase::AwaitingApproval).await;
    assert_ne!(fresh.name_any(), name);
    assert!(fresh.status.unwrap().approvals.is_empty());
    assert!(fleet_objects(&t.admin, ns).await.is_empty());

    // A run bob requested expires: planned again as still requested by bob.
    support::kubectl_fleet(ns, &["sync", "fleet", "--as", "bob"]);
    let requested_by_bob = |r: &SyncRun| {
        r.spec.trigger == fleetgate::api::syncrun::Trigger::Manual
            && r.annotations()
                .get(annotations::REQUESTED_BY)
                .map(String::as_str)
                == Some("bob")
    };
    let first = support::eventually("bob's run", Duration::from_secs(30), || async {
        runs_of(&t.admin, ns, &v1)
            .await
            .into_iter()
            .find(|r| requested_by_bob(r))
    })
    .await;
    support::eventually(
        "bob's run planned again",
        Duration::from_secs(40),
        || async {
            runs_of(&t.admin, ns, &v1)
                .await
                .into_iter()
                .find(|r| requested_by_bob(r) && r.name_any() != first.name_any())
        },
    )
    .await;
    drop(chart);
}

/// The three example rules of docs/approval-and-governance.md on the reference fleets.
#[tokio::test]
async fn cel_rules_deny_escalate_and_auto_approve() {
    let t = tenant("gov-cel").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    let rules = json!({"rules": [
        {"name": "no-mass-delete", "expression": MASS_DELETE, "action": "Deny",
         "message": "this plan deletes more than 5% of the nodes"},
        {"name": "two-for-routing", "expression": TWO_FOR_ROUTING, "action": "RequireApprovals", "approvals": 2},
        {"name": "metadata-only", "expression": METADATA_ONLY, "action": "AutoApprove"},
    ]});
    let p = Policy::create(&t.admin, &format!("{ns}-cel"), selecting(ns, rules)).await;
    p.ready_reason("Compiled").await;
    create_repository(&t.admin, ns, "fleet", t.ssh_spec()).await;

    // V1 from nothing creates a virtual IP with a primary holder: rules see a create's
    // fields, so two approvers are needed.
    let v1 = t.repo.commit(&[("fleet.yaml", V1)], "first");
    let run = run_in_phase(&t.admin, ns, &v1, Phase::AwaitingApproval).await;
    assert_eq!(run.status.as_ref().unwrap().approvals_required, Some(2));
    t.approve(&run).by(&t.bob).await;
    message_has(&t, &run.name_any(), "1/2 approvals (bob)").await;
    approval_cleared(&t, &run.name_any()).await;
    t.approve(&run).by(&t.carol).await;
    run_in_phase(&t.admin, ns, &v1, Phase::Applied).await;

    // Only a template's metadata changes: applied by the rule, no person asked.
    let text = String::from_utf8(V1.to_vec()).unwrap();
    let meta = text.replace("purpose: edge-cdn", "purpose: edge-cdn-eu");
    let v_meta = t
        .repo
        .commit(&[("fleet.yaml", meta.as_bytes())], "metadata");
    let applied = run_in_phase(&t.admin, ns, &v_meta, Phase::Applied).await;
    let s = applied.status.unwrap();
    assert_eq!(
        s.approved_by.as_deref(),
        Some(format!("policy/{ns}-cel/metadata-only").as_str())
    );

    // The virtual IP's primary holder moves: two approvers needed.
    let moved = meta
        .replace(
            "primary_holder: edge-tokyo-01",
            "primary_holder: edge-tokyo-02",
        )
        .replace(
            "failover_holders: [edge-tokyo-02, edge-london-01]",
            "failover_holders: [edge-tokyo-01, edge-london-01]",
        );
    let v_vip = t
        .repo
        .commit(&[("fleet.yaml", moved.as_bytes())], "re-home the VIP");
    let run = run_in_phase(&t.admin, ns, &v_vip, Phase::AwaitingApproval).await;
    let s = run.status.clone().unwrap();
    assert_eq!(s.approvals_required, Some(2), "{:?}", s.policy_results);
    assert!(
        s.policy_results
            .iter()
            .any(|r| r.contains("two-for-routing")),
        "{:?}",
        s.policy_results
    );
    t.approve(&run).by(&t.bob).await;
    message_has(&t, &run.name_any(), "1/2 approvals (bob)").await;
    t.approve(&run).by(&t.carol).await;
    run_in_phase(&t.admin, ns, &v_vip, Phase::Applied).await;

    // V2 deletes one of three nodes: denied before anyone is asked.
    let v2 = t.repo.commit(&[("fleet.yaml", V2)], "second");
    let failed = run_in_phase(&t.admin, ns, &v2, Phase::Failed).await;
    let s = failed.status.unwrap();
    let ready = condition(&s.conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "PolicyDenied", "{}", ready.message);
    assert!(
        ready
            .message
            .contains("this plan deletes more than 5% of the nodes"),
        "{}",
        ready.message
    );
    assert!(!s.requires_approval);
    drop(chart);
}

/// A deny window from a second ago lasting `secs` seconds, as a once-a-day cron (UTC).
fn deny_window_now(secs: u64) -> Value {
    let start = chrono::Utc::now() - chrono::Duration::seconds(1);
    json!({"kind": "Deny", "schedule": start.format("%S %M %H * * *").to_string(),
           "duration": format!("{secs}s"), "timeZone": "UTC"})
}

/// An approved run inside a deny window waits Scheduled and applies when it closes; an
/// emergency override is honoured only with the policy's quorum; editors can neither
/// schedule nor override.
#[tokio::test]
async fn a_deny_window_holds_an_approved_run_until_it_opens() {
    let t = tenant("gov-window").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    let (v1, run) = t.first_plan().await;
    let name = run.name_any();

    let p = Policy::create(
        &t.admin,
        &format!("{ns}-window"),
        selecting(
            ns,
            json!({"windows": [deny_window_now(8)], "overrideApprovals": 2}),
        ),
    )
    .await;
    p.ready_reason("Compiled").await;
    t.approve(&run).by(&t.bob).await;
    let waiting = run_in_phase(&t.admin, ns, &v1, Phase::Scheduled).await;
    let s = waiting.status.unwrap();
    let opens = s.scheduled_for.clone().expect("the next opening").0;
    assert!(s.message.unwrap().contains("deny window"));
    assert!(
        support::kubectl_fleet(ns, &["plan", &name]).contains("Scheduled: approved, applies from")
    );
    assert!(fleet_objects(&t.admin, ns).await.is_empty());
    let applied = run_in_phase(&t.admin, ns, &v1, Phase::Applied).await;
    let ready = condition(&applied.status.as_ref().unwrap().conditions, "Ready").unwrap();
    assert!(
        ready.last_transition_time.0 >= opens,
        "applied before the window opened"
    );
    assert_eq!(applied.name_any(), name);

    // A long deny window: bob's approval and override are not enough when two are needed.
    let window = json!({"spec": {"windows": [deny_window_now(3600)]}});
    p.api
        .patch(&p.name, &PatchParams::default(), &Patch::Merge(&window))
        .await
        .unwrap();
    let v2 = t.repo.commit(&[("fleet.yaml", V2)], "second");
    let run = run_in_phase(&t.admin, ns, &v2, Phase::AwaitingApproval).await;
    let name = run.name_any();
    t.approve(&run).by(&t.bob).await;
    run_in_phase(&t.admin, ns, &v2, Phase::Scheduled).await;
    for key in [annotations::OVERRIDE_WINDOW, annotations::APPLY_AFTER] {
        let (code, message) = refusal(try_annotate(&t.alice, ns, &name, key, Some("now")).await);
        assert_eq!(code, 403, "{key}: {message}");
    }
    annotate(
        &t.bob,
        ns,
        &name,
        annotations::OVERRIDE_WINDOW,
        Some("hotfix for INC-42"),
    )
    .await;
    let refused = events(&t.admin, ns, &name, "OverrideRefused").await;
    assert!(
        refused[0].contains("needs 2 distinct approvals"),
        "{refused:?}"
    );
    assert_eq!(
        get_run(&t.admin, ns, &name).await.status.unwrap().phase,
        Some(Phase::Scheduled)
    );
    // A second approver: the override is honoured and recorded.
    t.approve(&run).by(&t.carol).await;
    let applied = run_in_phase(&t.admin, ns, &v2, Phase::Applied).await;
    let note = applied.status.unwrap().window_override.unwrap();
    assert!(note.contains("bob, carol: hotfix for INC-42"), "{note}");

    // An approved run waiting for the window is superseded by a newer revision: the
    // older one never applies after it.
    let v3 = t.repo.commit(&[("fleet.yaml", V1)], "third");
    let run = run_in_phase(&t.admin, ns, &v3, Phase::AwaitingApproval).await;
    t.approve(&run).by(&t.bob).await;
    run_in_phase(&t.admin, ns, &v3, Phase::Scheduled).await;
    let text = String::from_utf8(V2.to_vec()).unwrap();
    let meta = text.replace("purpose: edge-cdn", "purpose: edge-cdn-eu");
    let v4 = t.repo.commit(&[("fleet.yaml", meta.as_bytes())], "fourth");
    run_in_phase(&t.admin, ns, &v4, Phase::AwaitingApproval).await;
    run_in_phase(&t.admin, ns, &v3, Phase::Superseded).await;
    drop(chart);
}

/// Runs of the repository `fleet` for `revision`.
async fn runs_of(client: &Client, ns: &str, revision: &str) -> Vec<SyncRun> {
    let api: Api<SyncRun> = Api::namespaced(client.clone(), ns);
    let mut runs = api.list(&Default::default()).await.unwrap().items;
    runs.retain(|r| r.spec.revision == revision);
    runs
}

/// Rollback from v2 to v1 is a plan, approved and applied; under Auto the next tick
/// does not re-apply v2, and a new revision lifts the hold.
#[tokio::test]
async fn a_rollback_is_a_plan_and_holds_the_revision_it_left() {
    let t = tenant("gov-rollback").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    let (v1, run) = t.first_plan().await;
    t.approve(&run).by(&t.bob).await;
    let applied_v1 = run_in_phase(&t.admin, ns, &v1, Phase::Applied).await;
    let v2 = t.repo.commit(&[("fleet.yaml", V2)], "second");
    let run = run_in_phase(&t.admin, ns, &v2, Phase::AwaitingApproval).await;
    t.approve(&run).by(&t.bob).await;
    run_in_phase(&t.admin, ns, &v2, Phase::Applied).await;
    let names = |objects: Vec<kube::api::DynamicObject>| {
        let mut n: Vec<String> = objects.iter().map(|o| o.name_any()).collect();
        n.sort();
        n
    };
    assert!(names(fleet_objects(&t.admin, ns).await).contains(&"edge-paris-01".to_owned()));

    // Asking for a rollback is an approver's decision.
    let repos: Api<fleetgate::api::GitopsRepository> = Api::namespaced(t.alice.clone(), ns);
    let ask =
        json!({"metadata": {"annotations": {annotations::ROLLBACK_TO: applied_v1.name_any()}}});
    let (code, message) = refusal(
        repos
            .patch("fleet", &PatchParams::default(), &Patch::Merge(&ask))
            .await,
    );
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("may not ask for a rollback"), "{message}");
    let repos: Api<fleetgate::api::GitopsRepository> = Api::namespaced(t.bob.clone(), ns);
    support::kubectl_fleet(
        ns,
        &[
            "rollback",
            "fleet",
            "--to",
            &applied_v1.name_any(),
            "--as",
            "bob",
        ],
    );

    // A Rollback run of v1's state, planned against the cluster, awaiting approval.
    let rollback = support::eventually("a Rollback run", Duration::from_secs(60), || async {
        runs_of(&t.admin, ns, &v1).await.into_iter().find(|r| {
            r.spec.trigger == fleetgate::api::syncrun::Trigger::Rollback
                && r.phase() == Some(Phase::AwaitingApproval)
        })
    })
    .await;
    let s = rollback.status.clone().unwrap();
    assert!(s.changes.unwrap().delete >= 1, "{:?}", s.changes);
    let shown = support::kubectl_fleet(ns, &["plan", &rollback.name_any()]);
    assert!(shown.contains("Rollback: back to what syncrun/"), "{shown}");
    t.approve(&rollback).by(&t.bob).await;
    wait_for_status(
        &t.admin,
        ns,
        &rollback.name_any(),
        "the rollback applied",
        |s| s.phase == Some(Phase::Applied),
    )
    .await;
    let now = names(fleet_objects(&t.admin, ns).await);
    assert!(now.contains(&"edge-london-01".to_owned()), "{now:?}");
    assert!(!now.contains(&"edge-paris-01".to_owned()), "{now:?}");

    // Under Auto, v2 (still git's head) is not applied again by itself.
    let auto = json!({"spec": {"approval": "Auto"}});
    repos
        .patch("fleet", &PatchParams::default(), &Patch::Merge(&auto))
        .await
        .unwrap();
    // Nor by an editor's "sync now": refused while the rollback holds it.
    support::kubectl_fleet(ns, &["sync", "fleet", "--as", "alice"]);
    let refused = events(&t.admin, ns, "fleet", "SyncRefused").await;
    assert!(
        refused[0].contains("a rollback holds it back"),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        runs_of(&t.admin, ns, &v2).await.len(),
        1,
        "v2 was planned again"
    );
    assert!(!names(fleet_objects(&t.admin, ns).await).contains(&"edge-paris-01".to_owned()));

    // A new revision lifts the hold.
    let mut v3_text = V2.to_vec();
    v3_text.extend_from_slice(b"\n# v3\n");
    let v3 = t.repo.commit(&[("fleet.yaml", &v3_text)], "third");
    run_in_phase(&t.admin, ns, &v3, Phase::Applied).await;
    assert!(names(fleet_objects(&t.admin, ns).await).contains(&"edge-paris-01".to_owned()));
    drop(chart);
}

/// The user who requested a sync may not approve its run; a group requirement waits for
/// an approver from that group.
#[tokio::test]
async fn the_requester_may_not_approve_and_a_group_must_be_represented() {
    let t = tenant("gov-requester").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    support::chart::bind(ns, "dave-approves", "fleetgate-approver", "dave");
    // dave's group "x,netops" holds a comma: it must not read as membership of netops.
    let dave = support::env()
        .client_as("dave", &["system:authenticated", "x,netops"])
        .await;
    let _p = Policy::create(
        &t.admin,
        &format!("{ns}-requester"),
        selecting(
            ns,
            json!({"approvals": {"required": 1, "fromGroups": ["netops"], "forbidRequester": true}}),
        ),
    )
    .await;
    create_repository(&t.admin, ns, "fleet", t.ssh_spec()).await;
    let v1 = t.repo.commit(&[("fleet.yaml", V1)], "first");
    run_in_phase(&t.admin, ns, &v1, Phase::AwaitingApproval).await;

    // Nobody may claim to have requested a sync.
    let repos: Api<fleetgate::api::GitopsRepository> = Api::namespaced(t.alice.clone(), ns);
    let forged = json!({"metadata": {"annotations": {annotations::SYNC_REQUESTED_BY: "carol"}}});
    let (code, _) = refusal(
        repos
            .patch("fleet", &PatchParams::default(), &Patch::Merge(&forged))
            .await,
    );
    assert_eq!(code, 403);

    support::kubectl_fleet(ns, &["sync", "fleet", "--as", "bob"]);
    let run = support::eventually("bob's Manual run", Duration::from_secs(60), || async {
        let api: Api<SyncRun> = Api::namespaced(t.admin.clone(), ns);
        api.list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|r| {
                r.spec.trigger == fleetgate::api::syncrun::Trigger::Manual
                    && r.phase() == Some(Phase::AwaitingApproval)
            })
    })
    .await;
    let name = run.name_any();
    assert_eq!(
        run.annotations()
            .get(annotations::REQUESTED_BY)
            .map(String::as_str),
        Some("bob")
    );
    t.approve(&run).by(&t.bob).await;
    message_has(&t, &name, "bob requested this sync").await;
    approval_cleared(&t, &name).await;
    t.approve(&run).by(&dave).await;
    message_has(&t, &name, "still needs an approver from group(s) netops").await;
    approval_cleared(&t, &name).await;
    assert!(fleet_objects(&t.admin, ns).await.is_empty());
    t.approve(&run).by(&t.carol).await;
    let applied = wait_for_status(&t.admin, ns, &name, "applied", |s| {
        s.phase == Some(Phase::Applied)
    })
    .await;
    assert_eq!(
        applied.status.unwrap().approved_by.as_deref(),
        Some("dave, carol")
    );
    drop(chart);
}
