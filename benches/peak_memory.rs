//! Peak memory of validating and planning a 100,000-node fleet against the previous
//! revision, as the operator does it: both revisions resolved, then the plan.
//! Target: under 500 MiB. Run with `cargo bench --bench peak_memory`.

use fleetgate::fleet::synth::{Shape, fleet_yaml};
use fleetgate::fleet::{self, LiveObject, PlanOptions, ResolveOptions};
use std::time::Instant;

fn kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    // criterion-style flags (such as --bench) are passed by cargo; nothing to parse.
    let nodes = 100_000;
    let v1 = fleet_yaml(Shape::new(nodes), 1);
    let v2 = fleet_yaml(Shape::new(nodes), 2);
    let baseline = kib("VmRSS:");
    let started = Instant::now();
    let (old, _) =
        fleet::desired_state("v1.yaml", v1.as_bytes(), &ResolveOptions::default()).unwrap();
    let live: Vec<LiveObject> = old
        .objects
        .iter()
        .map(|o| LiveObject::owned_by(o, "bench"))
        .collect();
    eprintln!(
        "after v1 resolved: {} MiB rss, hwm {} MiB",
        kib("VmRSS:") / 1024,
        kib("VmHWM:") / 1024
    );
    let (new, _) =
        fleet::desired_state("v2.yaml", v2.as_bytes(), &ResolveOptions::default()).unwrap();
    eprintln!(
        "after v2 resolved: {} MiB rss, hwm {} MiB",
        kib("VmRSS:") / 1024,
        kib("VmHWM:") / 1024
    );
    let plan = fleet::plan(
        &new.objects,
        &live,
        &PlanOptions {
            repository: "bench",
            revision: "v2",
            prune: true,
            exclude: &[],
        },
    )
    .unwrap();
    let elapsed = started.elapsed();
    let peak = kib("VmHWM:");
    println!(
        "peak_memory/100k: files {:.1} MiB + {:.1} MiB, {} objects, {} actions, both revisions resolved and planned in {:.2?}",
        v1.len() as f64 / 1048576.0,
        v2.len() as f64 / 1048576.0,
        new.objects.len(),
        plan.actions.len(),
        elapsed
    );
    println!(
        "peak_memory/100k: peak RSS {:.0} MiB (process baseline with both files in memory {:.0} MiB)",
        peak as f64 / 1024.0,
        baseline as f64 / 1024.0
    );
}
