//! Deleting a GitopsRepository, under each spec.deletionPolicy, against the real control
//! plane and the real operator.

mod support;

use fleetgate::api::syncrun::{Phase, Trigger};
use fleetgate::api::{GitopsRepository, SyncRun, annotations};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use support::operator::*;

const V1: &[u8] = include_bytes!("../examples/fleet.yaml");
const FINALIZER: &str = "gitops.fleetgate.dev/delete-managed-objects";

fn fleet_objects(ns: &str) -> usize {
    support::run_tool("kubectl", &["get", "fleet", "-n", ns, "-o", "name"])
        .lines()
        .count()
}

async fn repository_gone(client: &kube::Client, ns: &str) {
    let api: Api<GitopsRepository> = Api::namespaced(client.clone(), ns);
    support::eventually(
        "the repository to be gone",
        std::time::Duration::from_secs(60),
        || {
            let api = api.clone();
            async move { api.get_opt("fleet").await.ok()?.is_none().then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn by_default_deleting_a_repository_leaves_its_objects() {
    let (ns, _repo, v1, _c) = setup(
        "orphan",
        &[("fleet.yaml", V1)],
        serde_json::json!({"approval": "Auto"}),
        &[],
    )
    .await;
    run_in_phase(&ns.client, &ns.name, &v1, Phase::Applied).await;
    let repos: Api<GitopsRepository> = Api::namespaced(ns.client.clone(), &ns.name);
    let repo = repos.get("fleet").await.unwrap();
    assert_eq!(repo.spec.deletion_policy, Default::default());
    assert!(!repo.finalizers().iter().any(|f| f == FINALIZER));
    repos
        .delete("fleet", &DeleteParams::default())
        .await
        .unwrap();
    repository_gone(&ns.client, &ns.name).await;
    assert_eq!(fleet_objects(&ns.name), 10, "the objects stay");
}

#[tokio::test]
async fn with_delete_the_objects_go_first_after_the_removal_is_approved() {
    let (ns, _repo, v1, _c) = setup(
        "delete",
        &[("fleet.yaml", V1)],
        serde_json::json!({"approval": "AutoApplyNonDestructive", "deletionPolicy": "Delete"}),
        &[],
    )
    .await;
    run_in_phase(&ns.client, &ns.name, &v1, Phase::Applied).await;
    let repos: Api<GitopsRepository> = Api::namespaced(ns.client.clone(), &ns.name);
    support::eventually("the finalizer", std::time::Duration::from_secs(30), || {
        let repos = repos.clone();
        async move {
            let repo = repos.get("fleet").await.ok()?;
            repo.finalizers()
                .iter()
                .any(|f| f == FINALIZER)
                .then_some(())
        }
    })
    .await;
    repos
        .delete("fleet", &DeleteParams::default())
        .await
        .unwrap();

    // Deleting plans the removal, which waits for a person like any deleting plan.
    let runs: Api<SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    let removal = support::eventually(
        "the removal to await approval",
        std::time::Duration::from_secs(60),
        || {
            let runs = runs.clone();
            async move {
                runs.list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|r| {
                        r.spec.trigger == Trigger::Deletion
                            && r.status.as_ref().and_then(|s| s.phase)
                                == Some(Phase::AwaitingApproval)
                    })
            }
        },
    )
    .await;
    let status = removal.status.clone().unwrap();
    assert_eq!(status.changes.unwrap().delete, 10, "{status:?}");
    assert_eq!(
        fleet_objects(&ns.name),
        10,
        "nothing is removed before approval"
    );
    assert!(
        repos.get_opt("fleet").await.unwrap().is_some(),
        "the repository waits"
    );

    annotate(
        &ns.client,
        &ns.name,
        &removal.name_any(),
        annotations::APPROVE,
        Some(&status.plan_id.unwrap()),
    )
    .await;
    repository_gone(&ns.client, &ns.name).await;
    assert_eq!(fleet_objects(&ns.name), 0, "the objects went first");
}
