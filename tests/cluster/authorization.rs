//! Approvals that nobody gave, with the chart installed: every path that writes fleet
//! objects answers to the one authorization check. Users act by impersonation with the
//! chart's roles (alice the editor, bob and carol approvers), the controller runs on the
//! chart's ServiceAccount token. Each test plays one attack, shows it refused with
//! nothing unauthorized written (the fleet objects and the API server's audit log), and
//! the legitimate path still working.

use crate::support;

use std::time::Duration;

use fleetgate::api::syncrun::{Authority, Phase, Trigger};
use fleetgate::api::{GitopsRepository, SyncRun, annotations};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::chart::{Installed, service_account_kubeconfig};
use support::git::server;
use support::operator::*;
use support::policy::*;
use support::tenant::*;
use support::{AuditedWrite, FLEET_RESOURCES, audit_mark, audited_since};

const V2: &[u8] = include_bytes!("../../examples/fleet-v2.yaml");

/// The controller's user name under the chart.
fn controller(chart: &Installed) -> String {
    format!("system:serviceaccount:{}:fleetgate", chart.system.name)
}

async fn patch_repository(
    client: &Client,
    ns: &str,
    patch: Value,
) -> Result<GitopsRepository, kube::Error> {
    Api::<GitopsRepository>::namespaced(client.clone(), ns)
        .patch("fleet", &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

async fn get_repository(client: &Client, ns: &str) -> GitopsRepository {
    Api::<GitopsRepository>::namespaced(client.clone(), ns)
        .get("fleet")
        .await
        .unwrap()
}

async fn runs(client: &Client, ns: &str) -> Vec<SyncRun> {
    Api::<SyncRun>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

/// V1 with one template's metadata changed: a plan that only updates metadata.
fn metadata_only(base: &[u8], purpose: &str) -> Vec<u8> {
    String::from_utf8(base.to_vec())
        .unwrap()
        .replace("purpose: edge-cdn", &format!("purpose: {purpose}"))
        .into_bytes()
}

/// Point 1: leaving every action of a waiting plan out ends it NoChanges, but its
/// desired state never becomes the drift baseline: under `driftRemediation: Correct`,
/// drift is corrected back to what people approved, from that run's stored state.
#[tokio::test]
async fn exclusions_never_launder_a_waiting_plan_into_the_drift_baseline() {
    let t = tenant("authz-launder").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    let mut spec = t.ssh_spec();
    spec["driftRemediation"] = json!("Correct");
    create_repository(&t.admin, ns, "fleet", spec).await;
    let v1 = t.repo.commit(&[("fleet.yaml", V1)], "first");
    let run = run_in_phase(&t.admin, ns, &v1, Phase::AwaitingApproval).await;
    t.approve(&run).by(&t.bob).await;
    let approved = run_in_phase(&t.admin, ns, &v1, Phase::Applied).await;

    // v2 waits for people; alice leaves every one of its actions out.
    let v2 = t.repo.commit(&[("fleet.yaml", V2)], "second");
    let waiting = run_in_phase(&t.admin, ns, &v2, Phase::AwaitingApproval).await;
    let mark = audit_mark();
    annotate(
        &t.alice,
        ns,
        &waiting.name_any(),
        annotations::EXCLUDE,
        Some(&every_action(&waiting)),
    )
    .await;
    let laundered = run_in_phase(&t.admin, ns, &v2, Phase::NoChanges).await;
    let s = laundered.status.unwrap();
    assert!(s.authorization.is_none(), "{:?}", s.authorization);
    assert!(
        !s.desired_state.is_empty(),
        "v2's whole desired state is stored"
    );

    // The cluster drifts: a node is deleted by hand.
    let nodes: Api<fleetgate::api::FleetNode> = Api::namespaced(t.admin.clone(), ns);
    nodes
        .delete("edge-tokyo-02", &Default::default())
        .await
        .unwrap();
    let corrected = support::eventually(
        "the drift corrected by policy",
        Duration::from_secs(60),
        || async {
            runs(&t.admin, ns)
                .await
                .into_iter()
                .find(|r| r.spec.trigger == Trigger::Drift && r.phase() == Some(Phase::Applied))
        },
    )
    .await;
    // Corrected back to what bob approved, from that run's stored state.
    assert_eq!(corrected.spec.revision, v1);
    let s = corrected.status.unwrap();
    assert_eq!(
        s.source.unwrap().restores.as_deref(),
        Some(approved.name_any().as_str())
    );
    let authorization = s.authorization.unwrap();
    assert_eq!(authorization.by, Authority::Policy);
    assert_eq!(authorization.policy.as_deref(), Some("Correct"));
    assert_eq!(
        authorization.basis.unwrap(),
        format!("restores what {} applied", approved.name_any())
    );
    // Nothing of v2 was written: the cluster holds exactly v1, and since alice's
    // exclusion the controller wrote only the node it restored.
    assert_eq!(fleet_content(&t.admin, ns).await, declared(V1));
    let written: Vec<AuditedWrite> = audited_since(mark, ns, FLEET_RESOURCES)
        .into_iter()
        .filter(|w| w.user == controller(&chart))
        .collect();
    assert_eq!(
        written,
        [AuditedWrite {
            user: controller(&chart),
            verb: "create".into(),
            resource: "fleetnodes".into(),
            name: "edge-tokyo-02".into(),
        }]
    );
    // What the repository measures drift against is v1, and the cluster matches it.
    let matches = format!("the cluster matches revision {}", &v1[..12]);
    support::eventually(&matches, Duration::from_secs(30), || async {
        let repo = get_repository(&t.admin, ns).await;
        let drifted = fleetgate::api::condition(&repo.status?.conditions, "Drifted")?.clone();
        (drifted.status == "False" && drifted.message == matches).then_some(())
    })
    .await;
    drop(chart);
}

/// Point 2: a governance AutoApprove rule approves plans by itself only from a source an
/// approver stands behind, and never a plan an editor trimmed with `exclude`.
#[tokio::test]
async fn governance_auto_approval_follows_only_an_approved_source_and_untrimmed_plans() {
    let t = tenant("authz-source").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    let rules = json!({"rules": [{"name": "metadata-only", "action": "AutoApprove",
        "expression": "plan.actions.all(a, a.operation == 'Update' && a.fields.all(f, f.path.startsWith('metadata')))"}]});
    let p = Policy::create(&t.admin, &format!("{ns}-meta"), selecting(ns, rules)).await;
    p.ready_reason("Compiled").await;
    // The cluster admin creates the repository: its source is approved by the admin.
    let (v1, run) = t.first_plan().await;
    t.approve(&run).by(&t.bob).await;
    run_in_phase(&t.admin, ns, &v1, Phase::Applied).await;
    let repo = get_repository(&t.admin, ns).await;
    assert_eq!(repo.annotations()[annotations::SOURCE_APPROVED_BY], "admin");
    // A metadata-only change of the approved source applies by the rule.
    let v_meta = t
        .repo
        .commit(&[("fleet.yaml", &metadata_only(V1, "reviewed"))], "meta");
    let applied = run_in_phase(&t.admin, ns, &v_meta, Phase::Applied).await;
    let auth = applied.status.unwrap().authorization.unwrap();
    assert_eq!(
        auth.policy.as_deref(),
        Some(format!("{ns}-meta/metadata-only").as_str())
    );
    assert_eq!(auth.basis.as_deref(), Some("source approved by admin"));

    // alice points the repository at an unreviewed repository whose fleet differs only
    // in metadata: the rule would approve it, but the source is hers.
    let unreviewed = server().create_repo("authz-unreviewed");
    let evil = metadata_only(V1, "unreviewed");
    let v_evil = unreviewed.commit(&[("fleet.yaml", &evil)], "unreviewed");
    let mark = audit_mark();
    let patched = patch_repository(
        &t.alice,
        ns,
        json!({"spec": {"url": server().ssh_url(&unreviewed)}}),
    )
    .await
    .expect("alice may re-point a repository whose plans wait for people");
    assert_eq!(patched.annotations()[annotations::SOURCE_APPROVED_BY], "");
    let waiting = run_in_phase(&t.admin, ns, &v_evil, Phase::AwaitingApproval).await;
    let s = waiting.status.clone().unwrap();
    assert!(s.requires_approval);
    assert_eq!(s.source.as_ref().unwrap().approved_by.as_deref(), Some(""));
    let message = s.message.unwrap();
    assert!(
        message.contains(&format!(
            "policy/{ns}-meta/metadata-only would approve this plan, but its source (url, ref, path) was set by a user without the approve verb"
        )),
        "{message}"
    );
    let withheld = events(&t.admin, ns, &waiting.name_any(), "PolicyWithheld").await;
    assert_eq!(withheld.len(), 1, "{withheld:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        fleet_content(&t.admin, ns).await,
        declared(&metadata_only(V1, "reviewed"))
    );
    assert!(audited_since(mark, ns, FLEET_RESOURCES).is_empty());

    // bob reviews that plan and approves it: people authorize it.
    t.approve(&waiting).by(&t.bob).await;
    let applied = run_in_phase(&t.admin, ns, &v_evil, Phase::Applied).await;
    assert_eq!(
        applied.status.unwrap().authorization.unwrap().by,
        Authority::People
    );
    // Approving the source is a decision of its own: bob's stamp, whatever he writes.
    let stamped = patch_repository(
        &t.bob,
        ns,
        json!({"metadata": {"annotations": {annotations::SOURCE_APPROVED_BY: "anyone"}}}),
    )
    .await
    .unwrap();
    assert_eq!(
        stamped.annotations()[annotations::SOURCE_APPROVED_BY],
        "bob"
    );
    let forged = patch_repository(
        &t.alice,
        ns,
        json!({"metadata": {"annotations": {annotations::SOURCE_APPROVED_BY: "alice"}}}),
    )
    .await
    .unwrap();
    assert_eq!(
        forged.annotations()[annotations::SOURCE_APPROVED_BY],
        "",
        "alice's hand-written stamp is emptied"
    );
    patch_repository(
        &t.bob,
        ns,
        json!({"metadata": {"annotations": {annotations::SOURCE_APPROVED_BY: "yes"}}}),
    )
    .await
    .unwrap();
    let v_evil2 = unreviewed.commit(&[("fleet.yaml", &metadata_only(V1, "approved"))], "next");
    let applied = run_in_phase(&t.admin, ns, &v_evil2, Phase::Applied).await;
    let auth = applied.status.unwrap().authorization.unwrap();
    assert_eq!(auth.basis.as_deref(), Some("source approved by bob"));

    // A plan the rule does not approve (a node resized, and metadata) waits; alice
    // leaves the resize out, and what remains would be approved by the rule: it is
    // not, since an editor trimmed it.
    let mixed = String::from_utf8(metadata_only(V1, "mixed"))
        .unwrap()
        .replacen("instance_type: t3-medium", "instance_type: t3-large", 1);
    let v_mixed = unreviewed.commit(&[("fleet.yaml", mixed.as_bytes())], "mixed");
    let waiting = run_in_phase(&t.admin, ns, &v_mixed, Phase::AwaitingApproval).await;
    let resized: Vec<String> = waiting
        .status
        .as_ref()
        .unwrap()
        .diff
        .iter()
        .filter(|d| d.fields.iter().any(|f| f.starts_with("instanceType")))
        .map(|d| format!("fleetnode/{}", d.name))
        .collect();
    assert_eq!(resized.len(), 1, "{resized:?}");
    let mark = audit_mark();
    annotate(
        &t.alice,
        ns,
        &waiting.name_any(),
        annotations::EXCLUDE,
        Some(&resized[0]),
    )
    .await;
    let trimmed = wait_for_status(&t.admin, ns, &waiting.name_any(), "the re-plan", |s| {
        !s.excluded.is_empty()
    })
    .await;
    let s = trimmed.status.clone().unwrap();
    assert_eq!(s.phase, Some(Phase::AwaitingApproval));
    assert!(s.message.unwrap().contains(
        "left out with the exclude annotation, and no policy approves a plan an editor trimmed"
    ),);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(audited_since(mark, ns, FLEET_RESOURCES).is_empty());
    // bob approves the trimmed plan he reviewed: applied.
    t.approve(&trimmed).by(&t.bob).await;
    run_in_phase(&t.admin, ns, &v_mixed, Phase::Applied).await;
    drop(chart);
}

/// A client acting as ServiceAccount `sa` of `ns`, with a token from the TokenRequest
/// API (as anyone may who can create `serviceaccounts/token` there).
async fn service_account(admin: &Client, ns: &str, sa: &str) -> (Client, tempfile::TempDir) {
    let account: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": sa}})).unwrap();
    Api::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = service_account_kubeconfig(admin, ns, sa, dir.path()).await;
    (support::client_from(&config).await, dir)
}

/// Point 3: a quorum counts people. bob's own ServiceAccount, or any ServiceAccount of
/// the namespace (which editors can act as), is not a second approver; another
/// namespace's ServiceAccount counts only when the platform owner's policy lists it.
#[tokio::test]
async fn a_quorum_counts_people_not_the_service_accounts_they_can_make() {
    let t = tenant("authz-sa").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    let ci_ns = support::env().namespace("authz-ci").await;
    let ci = ci_ns.name.clone();
    let p = Policy::create(
        &t.admin,
        &format!("{ns}-quorum"),
        selecting(ns, json!({"approvals": {"required": 2}})),
    )
    .await;
    let (v1, run) = t.first_plan().await;
    let name = run.name_any();
    t.approve(&run).by(&t.bob).await;
    recorded(&t, &name, 1).await;

    // bob administers the namespace: he makes a ServiceAccount, binds it the approver
    // role, and approves again with its token.
    let (bob_bot, dir) = service_account(&t.admin, ns, "bob-bot").await;
    support::run_tool(
        "kubectl",
        &[
            "create",
            "rolebinding",
            "bob-bot-approves",
            "-n",
            ns,
            "--clusterrole=fleetgate-approver",
            &format!("--serviceaccount={ns}:bob-bot"),
        ],
    );
    let bob_bot_user = format!("system:serviceaccount:{ns}:bob-bot");
    t.approve(&run).by(&bob_bot).await;
    let said = format!("{bob_bot_user} is a ServiceAccount of this namespace");
    refused_with(&t, &name, &said, 1).await;
    // alice may mint tokens for the namespace's ServiceAccounts, as Kubernetes' `edit`
    // lets her: approving through bob-bot is refused alike.
    support::run_tool(
        "kubectl",
        &[
            "create",
            "role",
            "mint-tokens",
            "-n",
            ns,
            "--verb=create",
            "--resource=serviceaccounts/token",
        ],
    );
    support::run_tool(
        "kubectl",
        &[
            "create",
            "rolebinding",
            "alice-mints",
            "-n",
            ns,
            "--role=mint-tokens",
            "--user=alice",
        ],
    );
    let request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"expirationSeconds": 600}})).unwrap();
    let token = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(t.alice.clone(), ns)
        .create_token_request("bob-bot", &PostParams::default(), &request)
        .await
        .expect("alice mints a token for the namespace's ServiceAccount")
        .status
        .and_then(|s| s.token)
        .unwrap();
    let minted = support::chart::kubeconfig_with_token(&token, &dir.path().join("alice-minted"));
    let as_bob_bot = support::client_from(&minted).await;
    t.approve(&run).by(&as_bob_bot).await;
    refused_with(&t, &name, &said, 2).await;
    let s = get_run(&t.admin, ns, &name).await.status.unwrap();
    assert_eq!(s.phase, Some(Phase::AwaitingApproval));
    let users: Vec<&str> = s.approvals.iter().map(|a| a.user.as_str()).collect();
    assert_eq!(users, ["bob"]);
    assert!(fleet_objects(&t.admin, ns).await.is_empty());

    // A ServiceAccount of another namespace, bound the approver role here: not counted
    // until the platform owner's policy lists it.
    let (release, _dir2) = service_account(&t.admin, &ci, "release").await;
    bind_service_account(ns, "release-approves", &ci, "release");
    t.approve(&run).by(&release).await;
    let release_user = format!("system:serviceaccount:{ci}:release");
    let said =
        format!("{release_user} is a ServiceAccount that no governing GovernancePolicy lists");
    refused_with(&t, &name, &said, 1).await;
    assert!(fleet_objects(&t.admin, ns).await.is_empty());

    let listed = json!({"spec": {"approvals": {"required": 2,
        "serviceAccounts": [{"namespace": ci, "name": "release"}, {"namespace": ns, "name": "bob-bot"}]}}});
    p.api
        .patch(&p.name, &PatchParams::default(), &Patch::Merge(&listed))
        .await
        .unwrap();
    // Listed, bob-bot still does not count: it is this namespace's.
    t.approve(&run).by(&bob_bot).await;
    let said = format!("{bob_bot_user} is a ServiceAccount of this namespace");
    refused_with(&t, &name, &said, 3).await;
    assert!(fleet_objects(&t.admin, ns).await.is_empty());
    t.approve(&run).by(&release).await;
    let applied = run_in_phase(&t.admin, ns, &v1, Phase::Applied).await;
    let s = applied.status.unwrap();
    assert_eq!(s.approved_by.unwrap(), format!("bob, {release_user}"));
    assert_eq!(
        s.authorization.unwrap().approvers,
        ["bob".to_owned(), release_user]
    );
    drop(chart);
}

async fn get_run(client: &Client, ns: &str, name: &str) -> SyncRun {
    Api::<SyncRun>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

/// Waits until `count` approvals are recorded on the run and the approve annotation is
/// cleared for the next approver.
pub(crate) async fn recorded(t: &Tenant, name: &str, count: usize) {
    support::eventually("the approval recorded", Duration::from_secs(30), || async {
        let run = get_run(&t.admin, &t.ns.name, name).await;
        let s = run.status.as_ref()?;
        (s.approvals.len() == count && !run.annotations().contains_key(annotations::APPROVE))
            .then_some(())
    })
    .await;
}

/// Waits until `count` ApprovalRefused Events about the run say `said`, and the refused
/// approval is cleared for the next approver.
pub(crate) async fn refused_with(t: &Tenant, name: &str, said: &str, count: usize) {
    let ns = &t.ns.name;
    support::eventually(
        &format!("{count} refusals: {said}"),
        Duration::from_secs(30),
        || async {
            let refused = events(&t.admin, ns, name, "ApprovalRefused").await;
            (refused.iter().filter(|m| m.contains(said)).count() >= count).then_some(())
        },
    )
    .await;
    recorded_cleared(t, name).await;
}

async fn recorded_cleared(t: &Tenant, name: &str) {
    support::eventually(
        "the approve annotation cleared",
        Duration::from_secs(30),
        || async {
            let run = get_run(&t.admin, &t.ns.name, name).await;
            (!run.annotations().contains_key(annotations::APPROVE)).then_some(())
        },
    )
    .await;
}

/// Binds the ServiceAccount `ns_sa`/`sa` to the approver role in `ns`.
fn bind_service_account(ns: &str, name: &str, ns_sa: &str, sa: &str) {
    support::run_tool(
        "kubectl",
        &[
            "create",
            "rolebinding",
            name,
            "-n",
            ns,
            "--clusterrole=fleetgate-approver",
            &format!("--serviceaccount={ns_sa}:{sa}"),
        ],
    );
}

/// Point 4: historyLimit is the editor's, but pruning never deletes the record of who
/// approved: approved runs stay (the newest --approval-history of them, and the drift
/// baseline), runs no one approved are pruned.
#[tokio::test]
async fn an_editor_cannot_erase_the_record_of_who_approved() {
    let t = tenant("authz-history").await;
    let chart = Installed::new(&[&t.ns], &["--approval-history=2"]).await;
    t.bind_users();
    let ns = &t.ns.name;
    let (v1, run) = t.first_plan().await;
    t.approve(&run).by(&t.bob).await;
    let first = run_in_phase(&t.admin, ns, &v1, Phase::Applied).await;
    let mut approved = vec![first.name_any()];
    for (i, fleet) in [V2, V1].iter().enumerate() {
        let mut text = fleet.to_vec();
        text.extend_from_slice(format!("\n# revision {i}\n").as_bytes());
        let v = t.repo.commit(&[("fleet.yaml", &text)], "next");
        let run = run_in_phase(&t.admin, ns, &v, Phase::AwaitingApproval).await;
        t.approve(&run).by(&t.carol).await;
        approved.push(
            run_in_phase(&t.admin, ns, &v, Phase::Applied)
                .await
                .name_any(),
        );
    }
    // alice sets historyLimit 1 and asks for syncs that change nothing.
    patch_repository(&t.alice, ns, json!({"spec": {"historyLimit": 1}}))
        .await
        .expect("historyLimit is the editor's");
    for request in ["a", "b"] {
        patch_repository(
            &t.alice,
            ns,
            json!({"metadata": {"annotations": {annotations::SYNC_REQUESTED_AT: request}}}),
        )
        .await
        .unwrap();
        support::eventually("the sync to end", Duration::from_secs(60), || async {
            runs(&t.admin, ns).await.into_iter().find(|r| {
                r.annotations()
                    .get("gitops.fleetgate.dev/sync-request")
                    .map(String::as_str)
                    == Some(request)
                    && r.phase() == Some(Phase::NoChanges)
            })
        })
        .await;
    }
    // The two newest approved runs (the bound) and the newest run are kept; the oldest
    // approval, past the bound the controller's flag sets, and the older sync went.
    let kept = support::eventually("history pruned", Duration::from_secs(30), || async {
        let list = runs(&t.admin, ns).await;
        (list.len() == 3).then_some(list)
    })
    .await;
    let names = names(&kept);
    assert!(!names.contains(&approved[0]), "{names:?}");
    for record in &approved[1..] {
        assert!(names.contains(record), "{record} was pruned: {names:?}");
        let run = kept.iter().find(|r| &r.name_any() == record).unwrap();
        let s = run.status.as_ref().unwrap();
        assert_eq!(s.approved_by.as_deref(), Some("carol"));
        assert_eq!(s.approvals[0].user, "carol");
        assert_eq!(s.authorization.as_ref().unwrap().approvers, ["carol"]);
    }
    drop(chart);
}

/// Item 11: editors may not park a repository on no controller shard, move it between
/// shards, or write the controller's record of the notifications it sent.
#[tokio::test]
async fn editors_cannot_park_a_repository_or_silence_its_alerts() {
    let t = tenant("authz-shard").await;
    let chart = Installed::with_values(&[&t.ns], &[], &["sharding.shards={a}"]).await;
    t.bind_users();
    let ns = &t.ns.name;
    let repos: Api<GitopsRepository> = Api::namespaced(t.alice.clone(), ns);
    let repository = |labels: Value| -> GitopsRepository {
        serde_json::from_value(json!({
            "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "GitopsRepository",
            "metadata": {"name": "fleet", "namespace": ns, "labels": labels},
            "spec": t.ssh_spec(),
        }))
        .unwrap()
    };
    // Creating on no shard at all, or on a configured one, is the editor's choice...
    let (code, message) = refusal(
        repos
            .create(
                &PostParams::default(),
                &repository(json!({"fleetgate.dev/shard": "nowhere"})),
            )
            .await,
    );
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains("it may name only a configured shard (a)"),
        "{message}"
    );
    repos
        .create(
            &PostParams::default(),
            &repository(json!({"fleetgate.dev/shard": "a"})),
        )
        .await
        .expect("alice creates a repository on shard a");
    // ...moving it afterwards is not, nor parking it.
    for value in [json!("nowhere"), json!(null)] {
        let (code, message) = refusal(
            patch_repository(
                &t.alice,
                ns,
                json!({"metadata": {"labels": {"fleetgate.dev/shard": value}}}),
            )
            .await,
        );
        assert_eq!(code, 403, "{value}: {message}");
        assert!(message.contains("needs the approve verb"), "{message}");
    }
    // An approver moves it back to the main controller, but cannot park it either.
    let (code, _) = refusal(
        patch_repository(
            &t.bob,
            ns,
            json!({"metadata": {"labels": {"fleetgate.dev/shard": "nowhere"}}}),
        )
        .await,
    );
    assert_eq!(code, 403);
    patch_repository(
        &t.bob,
        ns,
        json!({"metadata": {"labels": {"fleetgate.dev/shard": null}}}),
    )
    .await
    .expect("bob moves the repository to the main controller");

    // The main controller (no selector in this test) still serves the repository.
    let v1 = t.repo.commit(&[("fleet.yaml", V1)], "first");
    run_in_phase(&t.admin, ns, &v1, Phase::AwaitingApproval).await;

    // The record of notifications sent about the repository is the controller's: alice
    // cannot pre-claim an alert to silence it...
    let notified = "gitops.fleetgate.dev/notified";
    let (code, message) = refusal(
        patch_repository(
            &t.alice,
            ns,
            json!({"metadata": {"annotations": {notified: "RepositoryStalled/SecretError"}}}),
        )
        .await,
    );
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains("only the controller writes it"),
        "{message}"
    );
    // ...and the controller still claims the alerts it sends.
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}/", hook.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(hook, axum::Router::new().fallback(|| async { "ok" })).await
    });
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "team-hook"}, "stringData": {"address": address},
    }))
    .unwrap();
    Api::namespaced(t.alice.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let target: fleetgate::api::NotificationTarget = serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "NotificationTarget",
        "metadata": {"name": "team-hook"},
        "spec": {"type": "Webhook", "secretRef": {"name": "team-hook"}, "events": ["RepositoryStalled"]},
    }))
    .unwrap();
    Api::<fleetgate::api::NotificationTarget>::namespaced(t.alice.clone(), ns)
        .create(&PostParams::default(), &target)
        .await
        .unwrap();
    patch_repository(
        &t.alice,
        ns,
        json!({"spec": {"secretRef": {"name": "missing"}}}),
    )
    .await
    .unwrap();
    support::eventually(
        "the controller's claim",
        Duration::from_secs(60),
        || async {
            let repo = get_repository(&t.admin, ns).await;
            repo.annotations().contains_key(notified).then_some(())
        },
    )
    .await;
    drop(chart);
}

/// A leader that cannot list what it watches (its Role's binding removed) holds the Lease
/// un-Ready, and turns Ready once the binding is back, without a restart. (Here, not in
/// tests/cluster/chart.rs: every install in this binary holds the one-install lock.)
#[tokio::test]
async fn a_leader_is_ready_once_its_role_is_back() {
    use k8s_openapi::api::rbac::v1::RoleBinding;
    use kube::api::{DeleteParams, ObjectMeta, PostParams};
    let env = support::env();
    let admin = env.client().await;
    let tenant = env.namespace("ready").await;
    let mut chart = support::chart::Installed::new(&[&tenant], &[]).await;
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), &tenant.name);
    let binding = bindings.get("fleetgate-controller").await.unwrap();
    bindings
        .delete("fleetgate-controller", &DeleteParams::default())
        .await
        .unwrap();
    chart.restart(None);
    let readyz = |chart: &support::chart::Installed| chart.controller.http_get("/readyz");
    support::eventually(
        "a leader refusing readiness",
        Duration::from_secs(30),
        || async { (readyz(&chart)?.0 == 503).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        readyz(&chart).map(|r| r.0),
        Some(503),
        "ready without its Role"
    );

    let restored = RoleBinding {
        metadata: ObjectMeta {
            name: binding.metadata.name.clone(),
            labels: binding.metadata.labels.clone(),
            ..Default::default()
        },
        ..binding
    };
    bindings
        .create(&PostParams::default(), &restored)
        .await
        .unwrap();
    support::eventually("the leader Ready", Duration::from_secs(60), || async {
        (readyz(&chart)?.0 == 200).then_some(())
    })
    .await;
}
