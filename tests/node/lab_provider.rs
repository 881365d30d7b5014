//! The lab provider as a pod: charts/fleetgate-lab-provider with the image `make
//! lab-image` builds, beside the chart's controller on the node. The reference fleet a
//! person approves converges for real inside the lab pod (BGP Established among the three
//! peers, the virtual IP answering through the fabric), and `helm uninstall` leaves no
//! process of it on the machine.

use std::time::Duration;

use fleetgate::api::fleet::{FleetNode, SdwanPeer, SessionState, VirtualIp};
use fleetgate::api::syncrun::Phase;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::ListParams;

use super::{Release, V1, bob_approves, helm, tenant_repository};
use crate::support;
use crate::support::lab::{converged, pids_mentioning};
use crate::support::node::{lab_image, node};
use crate::support::operator::run_in_phase_within;
use crate::support::{eventually, run_tool};

/// Names the lab's namespaces and state apart from any lab the cluster tests run.
const INSTANCE: &str = "nodelab";
const CONVERGE: Duration = Duration::from_secs(180);

/// Processes on the machine (the host sees every pod's) that belong to the lab pod: the
/// lab itself and the daemons it started, which name its state folder.
fn lab_processes() -> Vec<String> {
    let state = format!("/run/fleetgate-lab/{INSTANCE}/");
    let mut found: Vec<String> = pids_mentioning(&state)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("lab-provider") && cmdline.contains(&format!("--instance={INSTANCE}")) {
            found.push(cmdline.trim().to_owned());
        }
    }
    found
}

#[tokio::test]
async fn as_a_pod_the_lab_provider_realizes_an_approved_fleet_and_leaves_nothing_behind() {
    node();
    let image = lab_image();
    let release = Release::install("node-lab", &[]).await;
    let (system, tenant) = (release.system.name.clone(), release.tenant.name.clone());
    helm(&[
        "install",
        "lab",
        "charts/fleetgate-lab-provider",
        "-n",
        &system,
        "--set",
        &format!("namespace={tenant}"),
        "--set",
        &format!("image.tag={}", image.tag),
        "--set",
        "image.pullPolicy=Never",
        "--set",
        &format!("instance={INSTANCE}"),
        "--set",
        "providerClusterRole=fleetgate-provider",
        "--wait",
        "--timeout",
        "2m",
    ]);
    // The lab registers before the repository exists, so that no run is judged while no
    // provider serves the fleet's kinds.
    let leases: Api<Lease> = Api::namespaced(release.admin.clone(), &tenant);
    eventually(
        "the lab pod's registration Lease",
        Duration::from_secs(90),
        || async { leases.get_opt("fleet-provider-lab").await.ok().flatten() },
    )
    .await;

    // Bob approves the reference fleet; the controller's pods write it, the lab pod makes
    // it, and the run is Applied only once the lab reports every object Ready.
    let git = node().git_server();
    let (_repo, v1) = tenant_repository(&release, &git, "lab", &[("fleet.yaml", V1)]).await;
    bob_approves(&release, &v1).await;
    run_in_phase_within(&release.admin, &tenant, &v1, Phase::Applied, CONVERGE).await;
    converged(&release.admin, &tenant, 8, Duration::from_secs(30)).await;

    // Each of the three peers has its two iBGP sessions Established, as BIRD in the pod
    // reports them.
    let peers = Api::<SdwanPeer>::namespaced(release.admin.clone(), &tenant)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(peers.items.len(), 3);
    for peer in peers {
        let status = peer.status.unwrap();
        let states: Vec<SessionState> = status.sessions.iter().map(|s| s.state).collect();
        assert_eq!(states, [SessionState::Established; 2], "{status:?}");
    }
    // The virtual IP is held by its primary and answers through the fabric, pinged from
    // another node's namespace inside the lab pod (the image has ip and ping, no shell).
    let vip = Api::<VirtualIp>::namespaced(release.admin.clone(), &tenant)
        .get("edge-fabric.cdn-frontend")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(vip.current_holder.as_deref(), Some("edge-tokyo-01"));
    let address = vip.address.unwrap();
    // The lab names the node's namespace in its providerID (lab://<instance>/<netns>).
    let london = Api::<FleetNode>::namespaced(release.admin.clone(), &tenant)
        .get("edge-london-01")
        .await
        .unwrap()
        .status
        .and_then(|s| s.provider_id)
        .unwrap();
    let london = london.rsplit('/').next().unwrap().to_owned();
    assert!(london.starts_with(&format!("fgl-{INSTANCE}-")), "{london}");
    // `kubectl exec` in the lab pod: the image has ip and ping, no shell.
    let in_lab = |command: &[&str]| {
        let mut args = vec![
            "exec",
            "-n",
            &system,
            "deploy/lab-fleetgate-lab-provider",
            "--",
        ];
        args.extend_from_slice(command);
        run_tool("kubectl", &args)
    };
    let namespaces = in_lab(&["ip", "netns", "list"]);
    assert!(namespaces.contains(&london), "{namespaces}");
    let ping = in_lab(&[
        "ip", "netns", "exec", &london, "ping", "-c", "1", "-W", "2", &address,
    ]);
    assert!(ping.contains("1 received"), "{ping}");
    // Its namespaces are the pod's own: the machine's /run/netns does not list them.
    assert_eq!(
        support::lab::netns_with_prefix(&format!("fgl-{INSTANCE}-")),
        Vec::<String>::new()
    );
    let running = lab_processes();
    assert!(
        running.iter().filter(|p| p.contains("bird")).count() >= 3,
        "{running:#?}"
    );

    // Uninstalled, the pod goes and takes every daemon with it.
    helm(&["uninstall", "lab", "-n", &system, "--wait"]);
    eventually(
        "no process of the lab pod left",
        Duration::from_secs(90),
        || async { lab_processes().is_empty().then_some(()) },
    )
    .await;
}
