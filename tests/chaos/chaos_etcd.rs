//! etcd stopped and started again while a large fleet is being planned: the run still
//! reaches AwaitingApproval with a plan that verifies, there is exactly one SyncRun for
//! the revision, and once approved every object is created by exactly one request
//! (counted in the audit log). Alone on the control plane while it runs
//! ([`crate::control_plane_alone`]): the other tests would see the outage.

use crate::support;

use std::time::Duration;

use fleetgate::api::SyncRun;
use fleetgate::api::syncrun::Phase;
use kube::api::{Api, ListParams};
use support::fleet::Fleet;
use support::operator::*;
use support::outage::{
    assert_each_node_created_once, chaos_nodes, generated_fleet, restart_process,
};

/// Polls `check` with a fresh client each time (the old connections may have died with
/// the outage) until it holds, for at most `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut(kube::Client) -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        if let Ok(client) =
            tokio::time::timeout(Duration::from_secs(5), support::env().client()).await
            && let Some(found) = check(client).await
        {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "chaos suite: make chaos"]
async fn planning_survives_a_restart_of_etcd() {
    let _alone = crate::control_plane_alone().await;
    let nodes_wanted = chaos_nodes(2000);
    let args = ["--apply-concurrency", "4"];
    let Fleet {
        ns,
        head,
        mut controller,
        ..
    } = generated_fleet("etcd", nodes_wanted, &args).await;

    // The outage begins as soon as the run exists, while its plan is being computed and
    // stored (a plan of this size takes well over the time it takes to see the run).
    let runs: Api<SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    let first_seen = support::eventually("the run exists", Duration::from_secs(60), || {
        let runs = runs.clone();
        async move {
            let list = runs.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().next()
        }
    })
    .await;
    let phase_at_outage = first_seen.phase();
    assert!(
        matches!(phase_at_outage, None | Some(Phase::Planning)),
        "the outage must begin before the plan is recorded, not at {phase_at_outage:?}"
    );
    tokio::task::spawn_blocking(|| restart_process("etcd", Duration::from_secs(3)))
        .await
        .unwrap();
    eprintln!("etcd restarted while the run was {phase_at_outage:?}");

    // A controller that lost its Lease in the outage exits; its pod would restart it.
    let mut restarts = 0;
    let name = first_seen.metadata.name.clone().unwrap();
    let awaiting = until(
        "the plan after the outage",
        Duration::from_secs(180),
        |client| {
            if controller.exited() {
                restarts += 1;
                controller = ControllerProcess::restart_in_pod(&ns, "fleetgate-0", &args);
            }
            let name = name.clone();
            let namespace = ns.name.clone();
            async move {
                let runs: Api<SyncRun> = Api::namespaced(client, &namespace);
                let run = runs.get(&name).await.ok()?;
                let phase = run.phase()?;
                assert!(
                    !phase.is_finished(),
                    "the run ended {phase:?} instead of waiting for approval: {:?}",
                    run.status.as_ref().and_then(|s| s.message.clone())
                );
                (phase == Phase::AwaitingApproval).then_some(run)
            }
        },
    )
    .await;
    eprintln!("planned after the outage; the controller restarted {restarts} times");
    let client = support::env().client().await;
    let runs: Api<SyncRun> = Api::namespaced(client.clone(), &ns.name);
    assert_eq!(
        runs.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "one SyncRun for the revision"
    );
    assert_eq!(awaiting.spec.revision, head);

    // The stored plan verifies: approving it applies all of it.
    let status = awaiting.status.as_ref().unwrap();
    let total = status.progress.as_ref().map_or(0, |p| p.total);
    approval(&client, &awaiting).await;
    let done = until("the apply", Duration::from_secs(180), |client| {
        if controller.exited() {
            controller = ControllerProcess::restart_in_pod(&ns, "fleetgate-0", &args);
        }
        let name = name.clone();
        let namespace = ns.name.clone();
        async move {
            let runs: Api<SyncRun> = Api::namespaced(client, &namespace);
            let run = runs.get(&name).await.ok()?;
            run.phase().is_some_and(|p| p.is_finished()).then_some(run)
        }
    })
    .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Applied), "{:?}", status.message);
    assert_eq!(status.progress.unwrap().applied, total);

    assert_each_node_created_once(client, &ns.name, nodes_wanted).await;
}
