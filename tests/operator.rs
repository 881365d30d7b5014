//! The operator end to end, against the real control plane and the real git server,
//! driven only through the Kubernetes API as a user would.

mod support;

use fleetgate::api::syncrun::Phase;
use fleetgate::api::{FleetNode, SdwanPeer, SyncRun, VirtualIp, annotations};
use kube::api::{Api, ListParams};
use support::git::server;
use support::operator::*;

const V1: &[u8] = include_bytes!("../examples/fleet.yaml");
const V2: &[u8] = include_bytes!("../examples/fleet-v2.yaml");

fn counts(run: &SyncRun, kind: &str) -> (u32, u32, u32) {
    let s = run.status.as_ref().unwrap().summary.unwrap();
    let c = match kind {
        "templates" => s.templates,
        "nodes" => s.nodes,
        "networks" => s.networks,
        "peers" => s.peers,
        _ => s.virtual_ips,
    };
    (c.add, c.update, c.delete)
}

#[tokio::test]
async fn the_reference_fleet_is_planned_approved_applied_and_revised() {
    let env = support::env();
    let ns = env.namespace("walkthrough").await;
    let client = ns.client.clone();
    support::install_crds(&client, &fleetgate::api::crds()).await;
    let git = server();
    let repo = git.create_repo("fleet");
    let v1 = repo.commit(&[("fleet.yaml", V1)], "the reference fleet");
    ssh_secret(&client, &ns.name, "fleet-git", git.known_hosts()).await;
    let _controller = ControllerProcess::start(&ns, &[]);
    create_repository(
        &client,
        &ns.name,
        "fleet",
        serde_json::json!({
            "url": git.ssh_url(&repo),
            "ref": {"branch": "main"},
            "secretRef": {"name": "fleet-git"},
            "interval": "2s",
            "account": "acme-edge",
        }),
    )
    .await;

    // Planned and waiting: 2 templates, 3 nodes, 1 network, 3 peers, 1 VIP to add.
    let run = run_in_phase(&client, &ns.name, &v1, Phase::AwaitingApproval).await;
    let name = run.metadata.name.clone().unwrap();
    assert_eq!(counts(&run, "templates"), (2, 0, 0));
    assert_eq!(counts(&run, "nodes"), (3, 0, 0));
    assert_eq!(counts(&run, "networks"), (1, 0, 0));
    assert_eq!(counts(&run, "peers"), (3, 0, 0));
    assert_eq!(counts(&run, "virtualIps"), (1, 0, 0));
    let status = run.status.clone().unwrap();
    let plan_id = status.plan_id.clone().unwrap();
    assert!(status.requires_approval);
    assert!(status.message.unwrap().contains(&format!(
        "kubectl annotate syncrun/{name} {}={plan_id}",
        annotations::APPROVE
    )));

    // A wrong approval is refused with an Event and changes nothing.
    annotate(
        &client,
        &ns.name,
        &name,
        annotations::APPROVE,
        Some("plan-000000000000"),
    )
    .await;
    let refused = wait_for_status(&client, &ns.name, &name, "the approval refusal", |s| {
        s.refused_approval.as_deref() == Some("plan-000000000000")
    })
    .await;
    assert_eq!(refused.status.unwrap().phase, Some(Phase::AwaitingApproval));
    let events = events(&client, &ns.name, &name, "ApprovalRefused").await;
    assert!(
        events
            .iter()
            .any(|e| e.contains("does not match the current plan")),
        "{events:?}"
    );
    let nodes: Api<FleetNode> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // The right one applies everything, in order.
    annotate(
        &client,
        &ns.name,
        &name,
        annotations::APPROVE,
        Some(&plan_id),
    )
    .await;
    let applied = run_in_phase(&client, &ns.name, &v1, Phase::Applied).await;
    let status = applied.status.unwrap();
    assert_eq!(status.progress.unwrap().applied, 10);
    assert!(status.drift_after_apply.is_empty());
    assert_eq!(status.action_states.as_deref(), Some("AAAAAAAAAA"));
    let labelled = ListParams::default().labels("gitops.fleetgate.dev/repository=fleet");
    let out = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            env.kubeconfig.to_str().unwrap(),
            "get",
            "fleet",
            "-n",
            &ns.name,
            "-l",
            "gitops.fleetgate.dev/repository=fleet",
            "-o",
            "name",
        ])
        .output()
        .unwrap();
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listed.lines().count(), 10, "kubectl get fleet:\n{listed}");
    assert_eq!(
        names(&nodes.list(&labelled).await.unwrap().items),
        ["edge-london-01", "edge-tokyo-01", "edge-tokyo-02"]
    );

    // The next revision: exactly the core's diff.
    let v2 = repo.commit(&[("fleet.yaml", V2)], "paris replaces london");
    let run = run_in_phase(&client, &ns.name, &v2, Phase::AwaitingApproval).await;
    let name = run.metadata.name.clone().unwrap();
    assert_eq!(counts(&run, "templates"), (0, 1, 0));
    assert_eq!(counts(&run, "nodes"), (1, 2, 1));
    assert_eq!(counts(&run, "networks"), (0, 0, 0));
    assert_eq!(counts(&run, "peers"), (1, 0, 1));
    assert_eq!(counts(&run, "virtualIps"), (0, 1, 0));
    let full_plan_id = run.status.as_ref().unwrap().plan_id.clone().unwrap();

    // Excluding paris's node drops its peer and the VIP update (and so london's removal).
    annotate(
        &client,
        &ns.name,
        &name,
        annotations::EXCLUDE,
        Some("fleetnode/edge-paris-01"),
    )
    .await;
    let excluded = wait_for_status(&client, &ns.name, &name, "the plan without paris", |s| {
        s.plan_id.as_deref() != Some(full_plan_id.as_str()) && !s.excluded.is_empty()
    })
    .await;
    let status = excluded.status.unwrap();
    assert!(
        status
            .excluded
            .contains(&"sdwanpeer/edge-fabric.edge-paris-01".to_string()),
        "{:?}",
        status.excluded
    );
    assert!(
        status
            .excluded
            .contains(&"virtualip/edge-fabric.cdn-frontend".to_string())
    );
    assert_eq!(status.changes.unwrap().add, 0);

    // Without the exclusion the full plan is back, with its original id; approve it.
    annotate(&client, &ns.name, &name, annotations::EXCLUDE, None).await;
    wait_for_status(&client, &ns.name, &name, "the full plan again", |s| {
        s.plan_id.as_deref() == Some(full_plan_id.as_str())
    })
    .await;
    annotate(
        &client,
        &ns.name,
        &name,
        annotations::APPROVE,
        Some(&full_plan_id),
    )
    .await;
    run_in_phase(&client, &ns.name, &v2, Phase::Applied).await;
    assert_eq!(
        names(&nodes.list(&labelled).await.unwrap().items),
        ["edge-paris-01", "edge-tokyo-01", "edge-tokyo-02"]
    );
    let peers: Api<SdwanPeer> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        peers
            .get_opt("edge-fabric.edge-london-01")
            .await
            .unwrap()
            .is_none()
    );
    let vip = Api::<VirtualIp>::namespaced(client.clone(), &ns.name)
        .get("edge-fabric.cdn-frontend")
        .await
        .unwrap();
    assert_eq!(
        vip.spec.resolved.failover_holders,
        ["edge-paris-01", "edge-tokyo-02"]
    );
    let tokyo = nodes.get("edge-tokyo-01").await.unwrap();
    assert_eq!(tokyo.spec.resolved.instance_type, "t3-large");
}
