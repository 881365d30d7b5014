//! Promotion from staging to production through the chart's roles, over one fleet.yaml
//! whose `environments:` overlay gives each environment its values: production plans
//! only what staging applied and held for the soak; a revision staging rejected, or
//! that drifted there, never plans in production; without a PromotionGrant in staging,
//! production neither promotes nor learns anything of staging.

use std::time::Duration;

use crate::support;

use fleetgate::api::syncrun::{Phase, SyncRun};
use fleetgate::api::{FleetNode, GitopsRepository, PromotionGrant, annotations};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use support::chart::{Installed, bind};
use support::git::server;
use support::operator::{annotate, approval, create_repository, events, ssh_secret};
use support::tenant::tenant;

const WAIT: Duration = Duration::from_secs(90);
const SOAK: &str = "20s";

/// One file, two environments: staging runs small machines and the newer nginx.
fn fleet(nginx: &str) -> Vec<u8> {
    format!(
        "version: 1\naccount: acme\n\
         templates:\n  - name: web\n    node_platform: ubuntu-24.04-amd64\n    architecture: amd64\n    modules: [nginx@{nginx}]\n\
         nodes:\n  - hostname: web-1\n    template: web\n    region: eu-west-1\n    instance_type: m5-large\n\
         environments:\n  staging:\n    account: acme-staging\n    nodes:\n      web-1: {{instance_type: t3-small, metadata: {{tier: staging}}}}\n  production: {{}}\n"
    )
    .into_bytes()
}

/// The run of `repository` in `ns` for `revision`, once in `phase`.
async fn run_in(client: &Client, ns: &str, revision: &str, phase: Phase) -> SyncRun {
    let api = Api::<SyncRun>::namespaced(client.clone(), ns);
    let what = format!("a run of {revision} in {ns} in phase {phase:?}");
    support::eventually(&what, WAIT, || async {
        let runs = api.list(&ListParams::default()).await.ok()?.items;
        runs.into_iter()
            .find(|r| r.spec.revision == revision && r.phase() == Some(phase))
    })
    .await
}

async fn runs_of(client: &Client, ns: &str, revision: &str) -> Vec<SyncRun> {
    let api = Api::<SyncRun>::namespaced(client.clone(), ns);
    let runs = api.list(&ListParams::default()).await.unwrap().items;
    runs.into_iter()
        .filter(|r| r.spec.revision == revision)
        .collect()
}

/// Production's promotion status once its reason is `reason`: the message.
async fn promotion(client: &Client, ns: &str, reason: &str) -> String {
    let api = Api::<GitopsRepository>::namespaced(client.clone(), ns);
    let what = format!("promotion {reason} in {ns}");
    support::eventually(&what, WAIT, || async {
        let p = api.get("fleet").await.ok()?.status?.promotion?;
        (p.reason == reason).then_some(p.message)
    })
    .await
}

async fn approved_by(who: &Client, admin: &Client, run: &SyncRun) {
    approval(who, run).once_stamped().try_send().await.unwrap();
    let ns = run.namespace().unwrap();
    let api = Api::<SyncRun>::namespaced(admin.clone(), &ns);
    support::eventually("the run applied", WAIT, || async {
        let r = api.get(&run.name_any()).await.ok()?;
        (r.phase() == Some(Phase::Applied)).then_some(())
    })
    .await;
}

async fn instance_type(client: &Client, ns: &str) -> String {
    let node = Api::<FleetNode>::namespaced(client.clone(), ns)
        .get("web-1")
        .await
        .unwrap();
    node.spec.resolved.instance_type.clone()
}

#[tokio::test]
async fn staging_proves_a_revision_before_production_plans_it() {
    let t = tenant("stage").await;
    let env = support::env();
    let prod = env.namespace("prod").await;
    let (staging, production) = (t.ns.name.clone(), prod.name.clone());
    let admin = &t.admin;
    ssh_secret(admin, &production, "fleet-git", server().known_hosts()).await;
    let _chart = Installed::new(&[&t.ns, &prod], &[]).await;
    t.bind_users();
    // Production has its own approver.
    bind(&production, "carol-approves", "fleetgate-approver", "carol");
    bind(&production, "carol-edits", "fleetgate-editor", "carol");
    bind(&production, "alice-edits", "fleetgate-editor", "alice");

    let mut spec = t.ssh_spec();
    spec["environment"] = json!("staging");
    create_repository(admin, &staging, "fleet", spec.clone()).await;
    spec["environment"] = json!("production");
    spec["promotion"] =
        json!({"from": {"namespace": staging, "name": "fleet"}, "requireHealthyFor": SOAK});
    create_repository(admin, &production, "fleet", spec).await;

    let v1 = t
        .repo
        .commit(&[("fleet.yaml", fleet("1.26.2").as_slice())], "v1");
    // No grant yet: production learns nothing of staging, and plans nothing.
    let refused = promotion(admin, &production, "NotGranted").await;
    assert!(refused.contains("PromotionGrant"), "{refused}");
    // staging's editor grants production; production's editor cannot grant itself.
    let grant: PromotionGrant = serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "PromotionGrant",
        "metadata": {"name": "production"},
        "spec": {"from": [{"namespace": production}], "to": [{"name": "fleet"}]},
    }))
    .unwrap();
    let in_staging = |c: &Client| Api::<PromotionGrant>::namespaced(c.clone(), &staging);
    let carol = &t.carol;
    let (code, _) = support::tenant::refusal(
        Api::<PromotionGrant>::namespaced(
            env.client_as("dave", &["system:authenticated"]).await,
            &staging,
        )
        .create(&PostParams::default(), &grant)
        .await,
    );
    assert_eq!(code, 403, "someone without a role in staging granted");
    in_staging(&t.alice)
        .create(&PostParams::default(), &grant)
        .await
        .unwrap();

    // v1 applies in staging (bob approves there) with staging's values.
    let staged = run_in(admin, &staging, &v1, Phase::AwaitingApproval).await;
    approved_by(&t.bob, admin, &staged).await;
    assert_eq!(instance_type(admin, &staging).await, "t3-small");
    // Production waits out the soak, saying so, then plans exactly v1.
    let waiting = promotion(admin, &production, "Waiting").await;
    assert!(
        waiting.contains(&format!(
            "waiting for {staging}/fleet: revision {}",
            &v1[..12]
        )) && waiting.contains("of 20s"),
        "{waiting}"
    );
    assert!(runs_of(admin, &production, &v1).await.is_empty());
    let promoted = run_in(admin, &production, &v1, Phase::AwaitingApproval).await;
    let said = promotion(admin, &production, "Promoted").await;
    assert!(
        said.starts_with(&format!("revision {} held in {staging}/fleet", &v1[..12])),
        "{said}"
    );
    assert!(
        !events(admin, &production, "fleet", "Promoted")
            .await
            .is_empty()
    );
    // Each environment keeps its own approvers: bob approves staging only.
    let (code, _) = support::tenant::refusal(approval(&t.bob, &promoted).try_send().await);
    assert_eq!(code, 403, "staging's approver approved production");
    approved_by(carol, admin, &promoted).await;
    assert_eq!(instance_type(admin, &production).await, "m5-large");

    // v2: staging rejects it. It never plans in production, however long it waits.
    let v2 = t
        .repo
        .commit(&[("fleet.yaml", fleet("1.27.0").as_slice())], "v2");
    let rejected = run_in(admin, &staging, &v2, Phase::AwaitingApproval).await;
    annotate(
        admin,
        &staging,
        &rejected.name_any(),
        annotations::REJECT,
        Some("not this one"),
    )
    .await;
    run_in(admin, &staging, &v2, Phase::Rejected).await;

    // v3 applies in staging, then drifts there within the soak: never promoted.
    let v3 = t
        .repo
        .commit(&[("fleet.yaml", fleet("1.27.1").as_slice())], "v3");
    let staged = run_in(admin, &staging, &v3, Phase::AwaitingApproval).await;
    approved_by(&t.bob, admin, &staged).await;
    Api::<FleetNode>::namespaced(admin.clone(), &staging)
        .patch(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"instanceType": "x9-huge"}})),
        )
        .await
        .unwrap();
    let drifted = promotion(admin, &production, "Promoted").await;
    let never = support::eventually("v3 named as drifted", WAIT, || async {
        let m = promotion(admin, &production, "Promoted").await;
        m.contains(&format!("revision {} drifted in", &v3[..12]))
            .then_some(m)
    })
    .await;
    assert!(
        never.contains("is never promoted"),
        "{never} (was: {drifted})"
    );
    tokio::time::sleep(Duration::from_secs(25)).await;
    for revision in [&v2, &v3] {
        assert!(
            runs_of(admin, &production, revision).await.is_empty(),
            "{revision} planned in production"
        );
    }

    // Removing the grant stops promotion: v4 holds in staging and production ignores it.
    in_staging(&t.alice)
        .delete("production", &DeleteParams::default())
        .await
        .unwrap();
    promotion(admin, &production, "NotGranted").await;
    let v4 = t
        .repo
        .commit(&[("fleet.yaml", fleet("1.27.2").as_slice())], "v4");
    let staged = run_in(admin, &staging, &v4, Phase::AwaitingApproval).await;
    approved_by(&t.bob, admin, &staged).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(runs_of(admin, &production, &v4).await.is_empty());
    let shown = support::kubectl_fleet(&production, &["history", "fleet"]);
    assert!(
        shown.starts_with(&format!(
            "Promotion from {staging}/fleet (NotGranted): no GitopsRepository"
        )),
        "{shown}"
    );
}
