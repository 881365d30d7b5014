//! kube-apiserver stopped and started again in the middle of an apply of a 2,000-node
//! plan: the run finishes once the server is back, every object created by exactly one
//! request (counted in the audit log), one SyncRun. Alone on the control plane while it
//! runs ([`crate::control_plane_alone`]): the other tests would see the outage.

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

#[tokio::test]
#[ignore = "chaos suite: make chaos"]
async fn an_apply_survives_a_restart_of_the_api_server() {
    let _alone = crate::control_plane_alone().await;
    let nodes_wanted = chaos_nodes(2000);
    let args = ["--apply-concurrency", "2"];
    let Fleet {
        ns,
        head,
        mut controller,
        ..
    } = generated_fleet("apiserver", nodes_wanted, &args).await;
    let run = run_in_phase(&ns.client, &ns.name, &head, Phase::AwaitingApproval).await;
    let name = run.metadata.name.clone().unwrap();
    let total = run.status.as_ref().unwrap().progress.clone().unwrap().total;
    ns.approve(&run).await;
    wait_for_status(
        &ns.client,
        &ns.name,
        &name,
        "applying, well short of done",
        |s| {
            s.progress
                .as_ref()
                .is_some_and(|p| p.applied >= 300 && p.pending > total / 2)
        },
    )
    .await;

    tokio::task::spawn_blocking(|| restart_process("kube-apiserver", Duration::from_secs(3)))
        .await
        .unwrap();
    // A client of its own: the old one's connections died with the server.
    let client = support::env().client().await;
    let runs: Api<SyncRun> = Api::namespaced(client.clone(), &ns.name);
    // A controller that lost its Lease in the outage exits; its pod would restart it.
    let mut restarts = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let done = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not finish after the restart"
        );
        if controller.exited() {
            restarts += 1;
            controller = ControllerProcess::restart_in_pod(&ns, "fleetgate-0", &args);
        }
        if let Ok(run) = runs.get(&name).await
            && run
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_finished())
        {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("finished after the API server's restart; the controller restarted {restarts} times");
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Applied), "{:?}", status.message);
    assert_eq!(status.progress.unwrap().applied, total);
    assert_eq!(
        runs.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    assert_each_node_created_once(client, &ns.name, nodes_wanted).await;
}
