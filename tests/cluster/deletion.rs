//! Deleting a GitopsRepository, under each spec.deletionPolicy, against the real control
//! plane and the real operator.

use crate::support;

use fleetgate::api::syncrun::{Phase, Trigger};
use fleetgate::api::{GitopsRepository, SyncRun, annotations};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use support::fleet::Fleet;
use support::operator::*;

const V1: &[u8] = include_bytes!("../../examples/fleet.yaml");
const FINALIZER: &str = fleetgate::api::labels::DELETE_FINALIZER;

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

/// A repository with deletionPolicy Delete, its fleet applied, then deleted: it waits on
/// its finalizer for the removal.
async fn delete_with_policy_delete(
    prefix: &str,
) -> (
    support::TestNamespace,
    Api<GitopsRepository>,
    ControllerProcess,
) {
    let Fleet {
        ns,
        head: v1,
        controller,
        ..
    } = Fleet::in_namespace(prefix)
        .holding(V1)
        .with_spec(
            serde_json::json!({"approval": "AutoApplyNonDestructive", "deletionPolicy": "Delete"}),
        )
        .controller_running()
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
    (ns, repos, controller)
}

/// The removal run in `phase` whose uid is not `not`.
async fn removal_in(client: &kube::Client, ns: &str, phase: Phase, not: Option<&str>) -> SyncRun {
    let runs: Api<SyncRun> = Api::namespaced(client.clone(), ns);
    support::eventually(
        &format!("a removal run {phase:?}"),
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
                            && r.phase() == Some(phase)
                            && r.metadata.uid.as_deref() != not
                    })
            }
        },
    )
    .await
}

/// Waits until the repository's Ready condition has `reason`.
async fn ready_reason(client: &kube::Client, ns: &str, reason: &str) -> String {
    let api: Api<GitopsRepository> = Api::namespaced(client.clone(), ns);
    support::eventually(
        &format!("Ready reason {reason}"),
        std::time::Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let repo = api.get("fleet").await.ok()?;
                let ready = fleetgate::api::condition(&repo.status?.conditions, "Ready")?.clone();
                (ready.reason == reason).then_some(ready.message)
            }
        },
    )
    .await
}

#[tokio::test]
async fn by_default_deleting_a_repository_leaves_its_objects() {
    let Fleet {
        ns,
        head: v1,
        controller,
        ..
    } = Fleet::in_namespace("orphan")
        .holding(V1)
        .with_spec(serde_json::json!({"approval": "Auto"}))
        .controller_running()
        .await;
    run_in_phase(&ns.client, &ns.name, &v1, Phase::Applied).await;
    let repos: Api<GitopsRepository> = Api::namespaced(ns.client.clone(), &ns.name);
    let repo = repos.get("fleet").await.unwrap();
    assert_eq!(repo.spec.deletion_policy, Default::default());
    assert!(!repo.finalizers().iter().any(|f| f == FINALIZER));
    let cache = controller.work_dir().join(&ns.name).join("fleet.git");
    assert!(cache.exists(), "{}", cache.display());
    repos
        .delete("fleet", &DeleteParams::default())
        .await
        .unwrap();
    repository_gone(&ns.client, &ns.name).await;
    assert_eq!(fleet_objects(&ns.name), 10, "the objects stay");
    // What the controller kept for the repository goes with it, not at its next start.
    support::eventually(
        "the repository's git cache to go",
        std::time::Duration::from_secs(10),
        || async { (!cache.exists()).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn with_delete_the_objects_go_first_after_the_removal_is_approved() {
    let (ns, repos, _c) = delete_with_policy_delete("delete").await;

    // Deleting plans the removal, which waits for a person like any deleting plan.
    let removal = removal_in(&ns.client, &ns.name, Phase::AwaitingApproval, None).await;
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

    ns.approve(&removal).await;
    repository_gone(&ns.client, &ns.name).await;
    assert_eq!(fleet_objects(&ns.name), 0, "the objects went first");
}

#[tokio::test]
async fn a_rejected_removal_can_be_planned_again_or_given_up_with_orphan() {
    let (ns, repos, _c) = delete_with_policy_delete("delete-retry").await;
    let (client, n) = (&ns.client, ns.name.as_str());

    // The removal is rejected: the repository stays, blocked, and says how to go on.
    let removal = removal_in(client, n, Phase::AwaitingApproval, None).await;
    annotate(
        client,
        n,
        &removal.name_any(),
        annotations::REJECT,
        Some("not yet"),
    )
    .await;
    removal_in(client, n, Phase::Rejected, None).await;
    let blocked = ready_reason(client, n, "DeletionBlocked").await;
    assert!(
        blocked.contains(&removal.name_any()) && blocked.contains("Orphan"),
        "{blocked}"
    );
    assert!(repos.get_opt("fleet").await.unwrap().is_some());
    assert_eq!(fleet_objects(n), 10);

    // Deleting the rejected run plans the removal again.
    let runs: Api<SyncRun> = Api::namespaced(client.clone(), n);
    runs.delete(&removal.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let again = removal_in(
        client,
        n,
        Phase::AwaitingApproval,
        removal.metadata.uid.as_deref(),
    )
    .await;
    assert_eq!(again.status.clone().unwrap().changes.unwrap().delete, 10);
    ready_reason(client, n, "Deleting").await;

    // Rejected again, then given up: with Orphan the repository goes and the objects stay.
    annotate(
        client,
        n,
        &again.name_any(),
        annotations::REJECT,
        Some("keep them"),
    )
    .await;
    ready_reason(client, n, "DeletionBlocked").await;
    repos
        .patch(
            "fleet",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"deletionPolicy": "Orphan"}})),
        )
        .await
        .unwrap();
    repository_gone(client, n).await;
    assert_eq!(fleet_objects(n), 10, "the objects stay");
}
