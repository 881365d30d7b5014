//! The controller's memory with many repositories and large fleets, against the test
//! control plane: FLEETGATE_BENCH_REPOS repositories (default 20), each in a namespace of
//! its own with a generated fleet of FLEETGATE_BENCH_NODES nodes (default 2,000), planned
//! and applied without approval by one `fleetgate controller`. Prints the controller's
//! peak resident memory (VmHWM) and its resident memory once everything is applied and
//! watched, to compare with the chart's 512 MiB limit.
//! Run with `make bench-memory` (it starts the control plane). The controller it spawns is
//! the `fleetgate` binary of this bench's own profile: optimized under `cargo bench` (the
//! `bench` profile inherits `release`), a debug build only with `--profile dev`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use fleetgate::api::SyncRun;
use fleetgate::api::syncrun::Phase;
use fleetgate::fleet::synth::{Shape, fleet_yaml};
use kube::api::{Api, ListParams};
use support::operator::*;
use support::procstat::status_bytes as memory;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

const MIB: u64 = 1024 * 1024;

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks for names; there are none to list.
    }
    let repos = setting("FLEETGATE_BENCH_REPOS", 20);
    let nodes = setting("FLEETGATE_BENCH_NODES", 2_000);
    let env = support::env();
    let git = support::git::server();
    let text = fleet_yaml(Shape::new(nodes), 1);
    let mut namespaces = Vec::new();
    for i in 0..repos {
        let ns = env.namespace(&format!("mem{i}")).await;
        if i == 0 {
            support::install_crds(&ns.client, &fleetgate::api::crds()).await;
        }
        let repo = git.create_repo(&format!("mem{i}"));
        repo.commit(&[("fleet.yaml", text.as_bytes())], "generated fleet");
        let spec = serde_json::json!({"url": git.git_url(&repo), "ref": {"branch": "main"}, "interval": "1m", "approval": "Auto"});
        create_repository(&ns.client, &ns.name, "fleet", spec).await;
        namespaces.push(ns);
    }
    let others: Vec<String> = namespaces[1..].iter().map(|ns| ns.name.clone()).collect();
    let joined = others.join(",");
    // ControllerProcess allows the test git server's git:// URLs itself. The fleet limit
    // is lifted: this measures what a size costs, not where the default stops it.
    let mut args = vec!["--max-fleet-objects", "1000000"];
    if !others.is_empty() {
        args.extend(["--namespace", joined.as_str()]);
    }
    let started = Instant::now();
    let controller = ControllerProcess::start(&namespaces[0], &args);
    let pid = controller.pid();
    let client = env.client().await;
    let applied_objects = loop {
        let (mut done, mut applied_objects) = (0, 0u64);
        for ns in &namespaces {
            let runs: Api<SyncRun> = Api::namespaced(client.clone(), &ns.name);
            let list = runs.list(&ListParams::default()).await.unwrap().items;
            for run in list {
                let status = run.status.unwrap_or_default();
                match status.phase {
                    Some(Phase::Applied) => {
                        done += 1;
                        applied_objects += status.progress.map_or(0, |p| u64::from(p.applied));
                    }
                    Some(Phase::Failed) => panic!("a run failed: {:?}", status.message),
                    _ => {}
                }
            }
        }
        if done == repos {
            break applied_objects;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "{done} of {repos} runs applied after 30 minutes"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let took = started.elapsed();
    let at_applied = memory(pid, "VmRSS:");
    // A minute more: drift checks over everything the watch caches now hold.
    tokio::time::sleep(Duration::from_secs(65)).await;
    let (peak, now) = (memory(pid, "VmHWM:"), memory(pid, "VmRSS:"));
    println!(
        "{repos} repositories x {nodes} nodes ({applied_objects} objects) planned and applied in {:.0} s: \
         controller peak RSS {} MiB, {} MiB when the last run applied, {} MiB a minute later \
         (applied and watched; chart limit 512 MiB)",
        took.as_secs_f64(),
        peak / MIB,
        at_applied / MIB,
        now / MIB
    );
}
