//! Beyond one leader: label-sharded controllers (`--watch-label-selector`, each with a
//! Lease of its own) in one namespace, on the real control plane. Each applies the
//! repositories of its shard and touches nothing of the others'.

use crate::support;

use std::time::Duration;

use fleetgate::api::syncrun::Phase;
use fleetgate::api::{GitopsRepository, REPOSITORY_LABEL, SyncRun};
use fleetgate::fleet::synth::{Shape, fleet_yaml};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use support::operator::*;

const SHARD: &str = "fleetgate.dev/shard";

async fn repository(ns: &support::TestNamespace, name: &str, url: String, shard: Option<&str>) {
    let mut repo: GitopsRepository = serde_json::from_value(serde_json::json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1",
        "kind": "GitopsRepository",
        "metadata": {"name": name, "namespace": ns.name},
        "spec": {"url": url, "ref": {"branch": "main"}, "interval": "10m", "approval": "Auto"},
    }))
    .unwrap();
    if let Some(shard) = shard {
        repo.labels_mut().insert(SHARD.into(), shard.into());
    }
    Api::<GitopsRepository>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &repo)
        .await
        .unwrap();
}

/// The controller's `actions` counter for `result`, from its /metrics.
fn actions(controller: &ControllerProcess, result: &str) -> u64 {
    let (_, body) = controller.http_get("/metrics").unwrap_or_default();
    body.lines()
        .filter(|l| l.contains("actions_total") && l.contains(&format!("result=\"{result}\"")))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn two_shards_each_apply_only_their_own_repositories() {
    // The chart's repository policy (another test's install) refuses a shard label that
    // names no configured shard: this test runs without it.
    let _no_chart = support::chart::no_install().await;
    let ns = support::env().namespace("shards").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let git = support::git::server();
    // Disjoint fleets in one namespace: the example's edge-* objects, and node-* ones.
    let alpha = git.create_repo(&format!("{}-alpha", ns.name));
    let alpha_head = alpha.commit(
        &[("fleet.yaml", include_bytes!("../../examples/fleet.yaml"))],
        "alpha",
    );
    let beta = git.create_repo(&format!("{}-beta", ns.name));
    let beta_fleet = fleet_yaml(Shape::new(20), 1);
    let beta_head = beta.commit(&[("fleet.yaml", beta_fleet.as_bytes())], "beta");
    let gamma = git.create_repo(&format!("{}-gamma", ns.name));
    gamma.commit(&[("fleet.yaml", beta_fleet.as_bytes())], "gamma");

    let shard = |name: &str| format!("{SHARD}={name}");
    let (a, b) = (shard("a"), shard("b"));
    let first = ControllerProcess::start(
        &ns,
        &["--watch-label-selector", &a, "--lease-name", "fleetgate-a"],
    );
    let second = ControllerProcess::start(
        &ns,
        &["--watch-label-selector", &b, "--lease-name", "fleetgate-b"],
    );
    repository(&ns, "alpha", git.file_url(&alpha), Some("a")).await;
    repository(&ns, "beta", git.file_url(&beta), Some("b")).await;
    // In no shard: neither controller may act on it.
    repository(&ns, "gamma", git.file_url(&gamma), None).await;

    let alpha_run = run_in_phase(&ns.client, &ns.name, &alpha_head, Phase::Applied).await;
    let beta_run = run_in_phase(&ns.client, &ns.name, &beta_head, Phase::Applied).await;
    assert_eq!(alpha_run.labels().get(SHARD).map(String::as_str), Some("a"));
    assert_eq!(beta_run.labels().get(SHARD).map(String::as_str), Some("b"));
    let total = |run: &SyncRun| {
        u64::from(
            run.status
                .as_ref()
                .unwrap()
                .progress
                .as_ref()
                .unwrap()
                .total,
        )
    };

    // Each controller applied exactly its own repository's actions.
    let counted = support::eventually(
        "both controllers' counters",
        Duration::from_secs(10),
        || async {
            let counts = (actions(&first, "applied"), actions(&second, "applied"));
            (counts.0 > 0 && counts.1 > 0).then_some(counts)
        },
    )
    .await;
    assert_eq!(counted, (total(&alpha_run), total(&beta_run)));
    assert_eq!(
        (actions(&first, "failed"), actions(&second, "failed")),
        (0, 0)
    );

    // The objects are labelled by their own repository; gamma was never reconciled.
    let runs: Api<SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    let gamma_runs = runs
        .list(&ListParams::default().labels(&format!("{REPOSITORY_LABEL}=gamma")))
        .await
        .unwrap()
        .items;
    assert!(gamma_runs.is_empty(), "{gamma_runs:?}");
    let gamma = Api::<GitopsRepository>::namespaced(ns.client.clone(), &ns.name)
        .get("gamma")
        .await
        .unwrap();
    let untouched = gamma
        .status
        .as_ref()
        .is_none_or(|s| s.conditions.is_empty() && s.last_fetched_at.is_none());
    assert!(untouched, "{:?}", gamma.status);
}
