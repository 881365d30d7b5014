//! Apply throughput against the test control plane: a generated 2,000-node fleet (or
//! FLEETGATE_BENCH_NODES) applied
//! by `fleetgate controller`, next to `kubectl apply --server-side` of the same objects
//! as plain YAML, in the same run. Target: fleetgate at least as fast.
//! Run with `make bench-apply` (it starts the control plane).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use fleetgate::api::SyncRun;
use fleetgate::api::syncrun::Phase;
use fleetgate::fleet::synth::{Shape, fleet_yaml};
use fleetgate::fleet::{self, ResolveOptions};
use kube::api::{Api, ListParams};
use support::operator::*;

/// 2,000 nodes unless FLEETGATE_BENCH_NODES says otherwise.
fn nodes() -> usize {
    std::env::var("FLEETGATE_BENCH_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks for names; there are none to list.
    }
    let env = support::env();
    let nodes = nodes();
    let text = fleet_yaml(Shape::new(nodes), 1);
    let desired = fleet::desired_state("fleet.yaml", text.as_bytes(), &ResolveOptions::default())
        .unwrap()
        .0;
    let objects = desired.objects.len();

    // fleetgate: plan, approve, and time from the approval until the run is Applied.
    let ns = env.namespace("bench-fleetgate").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let git = support::git::server();
    let repo = git.create_repo("bench");
    let head = repo.commit(&[("fleet.yaml", text.as_bytes())], "generated fleet");
    let _controller = ControllerProcess::start(&ns, &[]);
    create_repository(&ns.client, &ns.name, "fleet", serde_json::json!({"url": git.file_url(&repo), "ref": {"branch": "main"}, "interval": "10m"})).await;
    let run = run_in_phase(&ns.client, &ns.name, &head, Phase::AwaitingApproval).await;
    let name = run.metadata.name.clone().unwrap();
    let plan_id = run.status.unwrap().plan_id.unwrap();
    let started = Instant::now();
    annotate(
        &ns.client,
        &ns.name,
        &name,
        fleetgate::api::annotations::APPROVE,
        Some(&plan_id),
    )
    .await;
    let runs: Api<SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    loop {
        let phase = runs.get(&name).await.unwrap().status.and_then(|s| s.phase);
        match phase {
            Some(Phase::Applied) => break,
            Some(Phase::Failed) => panic!("the run failed"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "apply took over 10 minutes"
        );
    }
    let fleetgate_secs = started.elapsed().as_secs_f64();

    // kubectl apply --server-side of the same objects, as plain YAML, into another namespace.
    let other = env.namespace("bench-kubectl").await;
    let mut yaml = String::new();
    for o in &desired.objects {
        let obj = fleetgate::controller::live::desired_object(
            o.kind(),
            &o.name,
            &other.name,
            "fleet",
            &o.spec,
            None,
        );
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml_ng::to_string(&obj).unwrap());
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let started = Instant::now();
    let out = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            env.kubeconfig.to_str().unwrap(),
            "apply",
            "--server-side",
            "--field-manager",
            "bench",
            "-f",
        ])
        .arg(file.path())
        .output()
        .unwrap();
    let kubectl_secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let applied = Api::<fleetgate::api::FleetNode>::namespaced(other.client.clone(), &other.name)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(applied, nodes);

    println!("apply_throughput/{nodes}-nodes: {objects} objects");
    println!(
        "apply_throughput/fleetgate: {fleetgate_secs:.1} s, {:.0} objects/s (approval to Applied, incl. conflict checks and verification)",
        objects as f64 / fleetgate_secs
    );
    println!(
        "apply_throughput/kubectl-server-side: {kubectl_secs:.1} s, {:.0} objects/s",
        objects as f64 / kubectl_secs
    );
}
