//! Two writers of a run's status against the real API server: the SyncRun controller
//! moving a run on from the phase it read, and the repository's reconcile superseding
//! it from a list made moments before. Whichever writes second must not overwrite what
//! the first did. The forced server-side apply both used before lets the second win.

use crate::support;

use fleetgate::api::SyncRun;
use fleetgate::api::syncrun::{Phase, SyncRunSpec, SyncRunStatus, Trigger};
use fleetgate::controller::error::Error;
use fleetgate::controller::lifecycle::{Clearance, Event, Guard, moved, write_if};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

/// A run awaiting approval of plan `p1`, as the controller would have left it.
async fn run_awaiting_approval(client: &Client, namespace: &str) -> SyncRun {
    let api: Api<SyncRun> = Api::namespaced(client.clone(), namespace);
    let run = SyncRun {
        metadata: ObjectMeta {
            name: Some("race".into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        spec: SyncRunSpec {
            repository: "fleet".into(),
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            trigger: Trigger::Schedule,
        },
        status: None,
    };
    let created = api.create(&PostParams::default(), &run).await.unwrap();
    let status = SyncRunStatus {
        phase: Some(Phase::Planning),
        plan_id: Some("p1".into()),
        ..Default::default()
    };
    let planning = write_if(client, &created, &status, &Guard::as_read(&created))
        .await
        .unwrap();
    let (awaiting, _) = moved(status, Event::Planned, "awaits approval", None, now()).unwrap();
    write_if(client, &planning, &awaiting, &Guard::as_read(&planning))
        .await
        .unwrap()
}

fn now() -> Time {
    fleetgate::api::now()
}

/// The status the SyncRun controller writes when the quorum is met.
fn cleared(run: &SyncRun) -> SyncRunStatus {
    let mut status = run.status.clone().unwrap();
    status.approved_by = Some("alice".into());
    let approved = Event::Cleared(Clearance::Approved);
    moved(status, approved, "approved by alice", None, now())
        .unwrap()
        .0
}

/// The status the repository writes when a newer run replaces this one.
fn superseded(run: &SyncRun) -> SyncRunStatus {
    let status = run.status.clone().unwrap();
    moved(status, Event::Superseded, "superseded by r2", None, now())
        .unwrap()
        .0
}

async fn stored(client: &Client, run: &SyncRun) -> SyncRun {
    Api::<SyncRun>::namespaced(client.clone(), &run.namespace().unwrap())
        .get(&run.name_any())
        .await
        .unwrap()
}

fn is_moved(result: Result<SyncRun, Error>) -> bool {
    matches!(result, Err(Error::RunMoved { .. }))
}

/// The write both controllers made before: the whole status, forced, unconditional.
async fn forced_apply(client: &Client, run: &SyncRun, status: &SyncRunStatus) {
    let patch = serde_json::json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1",
        "kind": "SyncRun",
        "status": status,
    });
    Api::<SyncRun>::namespaced(client.clone(), &run.namespace().unwrap())
        .patch_status(
            &run.name_any(),
            &PatchParams::apply("fleetgate").force(),
            &Patch::Apply(&patch),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_run_that_started_applying_is_not_superseded_from_a_stale_list() {
    let env = support::env();
    let ns = env.namespace("race-apply").await;
    let admin = env.client().await;
    support::install_crds(&admin, &fleetgate::api::crds()).await;
    let listed = run_awaiting_approval(&admin, &ns.name).await;
    // The SyncRun controller reads the run and moves it on: it is applying.
    let read = stored(&admin, &listed).await;
    let applying = write_if(&admin, &read, &cleared(&read), &Guard::as_read(&read)).await;
    assert_eq!(applying.unwrap().phase(), Some(Phase::Applying));
    // The repository, deciding from its list, supersedes what it saw awaiting approval.
    let late = write_if(
        &admin,
        &listed,
        &superseded(&listed),
        &Guard::as_listed(&listed),
    )
    .await;
    assert!(is_moved(late), "a stale supersede was not refused");
    let now = stored(&admin, &listed).await;
    assert_eq!(now.phase(), Some(Phase::Applying));
    assert_eq!(
        now.status.unwrap().approved_by.as_deref(),
        Some("alice"),
        "what the controller recorded was overwritten"
    );
    // The write both used before lets the stale list win: the race is real.
    forced_apply(&admin, &listed, &superseded(&listed)).await;
    assert_eq!(
        stored(&admin, &listed).await.phase(),
        Some(Phase::Superseded)
    );
}

#[tokio::test]
async fn a_superseded_run_is_not_moved_to_applying_by_a_stale_read() {
    let env = support::env();
    let ns = env.namespace("race-supersede").await;
    let admin = env.client().await;
    support::install_crds(&admin, &fleetgate::api::crds()).await;
    let listed = run_awaiting_approval(&admin, &ns.name).await;
    // The SyncRun controller has read the run, awaiting approval, and is deciding.
    let read = stored(&admin, &listed).await;
    // Meanwhile the repository supersedes it, from an up-to-date list.
    let superseded_run = write_if(
        &admin,
        &listed,
        &superseded(&listed),
        &Guard::as_listed(&listed),
    )
    .await;
    assert_eq!(superseded_run.unwrap().phase(), Some(Phase::Superseded));
    // The controller's decision, made on what it read, must not land.
    let late = write_if(&admin, &read, &cleared(&read), &Guard::as_read(&read)).await;
    assert!(
        is_moved(late),
        "a run moved to Applying after it was superseded"
    );
    assert_eq!(
        stored(&admin, &listed).await.phase(),
        Some(Phase::Superseded)
    );
    // An older revision would apply after a newer one with the write used before.
    forced_apply(&admin, &read, &cleared(&read)).await;
    assert_eq!(stored(&admin, &listed).await.phase(), Some(Phase::Applying));
}

#[tokio::test]
async fn annotations_set_meanwhile_do_not_stop_the_controller() {
    let env = support::env();
    let ns = env.namespace("race-annotate").await;
    let admin = env.client().await;
    support::install_crds(&admin, &fleetgate::api::crds()).await;
    let listed = run_awaiting_approval(&admin, &ns.name).await;
    let read = stored(&admin, &listed).await;
    // Someone annotates the run after the controller read it (an approver, a reviewer).
    let api: Api<SyncRun> = Api::namespaced(admin.clone(), &ns.name);
    let note = serde_json::json!({"metadata": {"annotations": {"example.com/note": "seen"}}});
    api.patch(
        &read.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&note),
    )
    .await
    .unwrap();
    // The controller's write is conditional on the phase only: it lands.
    let written = write_if(&admin, &read, &cleared(&read), &Guard::as_read(&read)).await;
    assert_eq!(written.unwrap().phase(), Some(Phase::Applying));
    // The repository's is conditional on the whole run: a list older than the note is stale.
    let relisted = stored(&admin, &listed).await;
    let mut stale = relisted.clone();
    stale.metadata.resource_version = listed.metadata.resource_version.clone();
    let late = write_if(
        &admin,
        &stale,
        &superseded(&read),
        &Guard::as_listed(&stale),
    )
    .await;
    assert!(is_moved(late));
}
