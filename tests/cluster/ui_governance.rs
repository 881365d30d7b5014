//! The governance layer in `kubectl fleet ui`, in a real browser against the real control
//! plane with the chart installed: a GovernancePolicy requiring two approvers, approved
//! one approver at a time in the page (1 of 2, then Applied live); a rollback to an
//! earlier run asked from the repository's history, refused for an editor in the API
//! server's words and started for an approver. Screenshots go to
//! `<target>/tmp/ui-screenshots`.

use crate::support;

use std::time::{Duration, Instant};

use fleetgate::api::syncrun::{Phase, Trigger};
use fleetgate::api::{GovernancePolicy, SyncRun};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use support::browser::{Browser, Ui};
use support::chart::Installed;
use support::operator::{create_repository, run_in_phase, wait_for_approved_by_stamp};
use support::tenant::tenant;

const V1: &[u8] = include_bytes!("../../examples/fleet.yaml");
const V2: &[u8] = include_bytes!("../../examples/fleet-v2.yaml");

/// The cluster-scoped policy, removed again when the test ends (also on failure).
struct QuorumPolicy(String);

impl Drop for QuorumPolicy {
    fn drop(&mut self) {
        let _ = std::process::Command::new(support::tool("kubectl"))
            .args(["delete", "governancepolicy", &self.0, "--ignore-not-found"])
            .env("KUBECONFIG", &support::env().kubeconfig)
            .output();
    }
}

#[tokio::test]
async fn quorum_and_rollback_in_a_browser() {
    let started = Instant::now();
    let browser = Browser::start().await;
    let b = &browser;
    let env = support::env();
    let t = tenant("ui-gov").await;
    let ns = t.ns.name.clone();
    let _chart = Installed::new(&[&t.ns], &[]).await;
    t.bind_users();
    // The approvers read the stored plan (ConfigMaps), as Kubernetes' `view` grants.
    for user in ["bob", "carol"] {
        support::run_tool(
            "kubectl",
            &[
                "create",
                "rolebinding",
                &format!("{user}-k8s-edit"),
                "-n",
                &ns,
                "--role=k8s-edit",
                &format!("--user={user}"),
            ],
        );
    }
    let policy = QuorumPolicy(format!("{ns}-ui-quorum"));
    let policies: Api<GovernancePolicy> = Api::all(t.admin.clone());
    let _ = policies.delete(&policy.0, &DeleteParams::default()).await;
    let spec = json!({"repositories": [{"namespace": ns, "name": "fleet"}],
                      "approvals": {"required": 2}});
    let object: GovernancePolicy = serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "GovernancePolicy",
        "metadata": {"name": policy.0}, "spec": spec,
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    create_repository(&t.admin, &ns, "fleet", t.ssh_spec()).await;
    let v1 = t.repo.commit(&[("fleet.yaml", V1)], "first");
    let run = run_in_phase(&t.admin, &ns, &v1, Phase::AwaitingApproval).await;
    let name = run.name_any();
    assert_eq!(run.status.unwrap().approvals_required, Some(2));
    // The approval stamp is in force before anyone approves in the page.
    wait_for_approved_by_stamp(&t.bob, &ns, &name, "probe").await;
    let run_path = format!("/ns/{ns}/runs/{name}");

    // bob approves in the page: 1 of 2, still awaiting approval.
    let bob = Ui::start(&env.kubeconfig, &ns, "bob");
    b.client.goto(&bob.url).await.unwrap();
    b.client
        .goto(&format!("{}{run_path}", bob.base))
        .await
        .unwrap();
    b.click("#approve").await;
    let count = b
        .text_until("#quorum-count", Duration::from_secs(30), |t| {
            t.starts_with("1 of 2")
        })
        .await;
    assert!(count.contains("approvals of this plan"), "{count}");
    assert!(b.text("#approvers").await.contains("bob"));
    assert_eq!(b.text("#phase").await, "AwaitingApproval");
    assert!(
        b.text("#you-approved")
            .await
            .contains("You approved this plan")
    );
    b.screenshot("quorum").await;

    // carol, a second approver: the open page follows the run to Applied.
    let carol = Ui::start(&env.kubeconfig, &ns, "carol");
    b.client.goto(&carol.url).await.unwrap();
    b.client
        .goto(&format!("{}{run_path}", carol.base))
        .await
        .unwrap();
    b.text_until("#quorum-count", Duration::from_secs(10), |t| {
        t.starts_with("1 of 2")
    })
    .await;
    b.click("#approve").await;
    b.text_until("#phase", Duration::from_secs(60), |t| t == "Applied")
        .await;
    let applied_v1 = run_in_phase(&t.admin, &ns, &v1, Phase::Applied).await;
    assert_eq!(
        applied_v1.status.unwrap().approved_by.as_deref(),
        Some("bob, carol")
    );

    // v2, approved by both (outside the page), applied.
    let v2 = t.repo.commit(&[("fleet.yaml", V2)], "second");
    let run2 = run_in_phase(&t.admin, &ns, &v2, Phase::AwaitingApproval).await;
    t.approve(&run2).by(&t.bob).await;
    support::eventually("bob's approval recorded", Duration::from_secs(30), || {
        let admin = t.admin.clone();
        let (ns, name) = (ns.clone(), run2.name_any());
        async move {
            let r = Api::<SyncRun>::namespaced(admin, &ns)
                .get(&name)
                .await
                .ok()?;
            (r.status?.approvals.len() == 1).then_some(())
        }
    })
    .await;
    t.approve(&run2).by(&t.carol).await;
    run_in_phase(&t.admin, &ns, &v2, Phase::Applied).await;

    // alice, an editor, asks for a rollback to the v1 run: admission refuses, in its words.
    let repo_path = format!("/ns/{ns}/repositories/fleet");
    let to_v1 = format!("a.rollback[href$='to={name}']");
    let alice = Ui::start(&env.kubeconfig, &ns, "alice");
    b.client.goto(&alice.url).await.unwrap();
    b.client
        .goto(&format!("{}{repo_path}", alice.base))
        .await
        .unwrap();
    b.click(&to_v1).await;
    b.click("#confirm-rollback").await;
    let refused = b.text(".notice.refused .reason").await;
    assert!(refused.contains("may not ask for a rollback"), "{refused}");

    // bob asks for it: a Rollback run of v1's state appears in the history.
    b.client
        .goto(&format!("{}{repo_path}", bob.base))
        .await
        .unwrap();
    b.click(&to_v1).await;
    b.click("#confirm-rollback").await;
    let all = Api::<SyncRun>::namespaced(t.admin.clone(), &ns);
    let rollback = support::eventually("a Rollback run", Duration::from_secs(60), || {
        let all = all.clone();
        async move {
            let list = all.list(&ListParams::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|r| r.spec.trigger == Trigger::Rollback)
        }
    })
    .await;
    support::eventually(
        "the Rollback run listed",
        Duration::from_secs(30),
        || async {
            b.client
                .goto(&format!("{}{repo_path}", bob.base))
                .await
                .ok()?;
            let history = b.text("main table").await;
            history
                .contains(&rollback.name_any())
                .then_some(())
                .filter(|()| history.contains("Rollback"))
        },
    )
    .await;
    b.click(&format!("a[href$='runs/{}']", rollback.name_any()))
        .await;
    let of = b
        .text_until("#rollback-of", Duration::from_secs(30), |t| {
            t.contains(&name)
        })
        .await;
    assert!(of.contains(&v2[..12]), "{of}");
    b.screenshot("rollback").await;
    drop(policy);
    browser.close().await;
    eprintln!("ui_governance: {:?}", started.elapsed());
}
