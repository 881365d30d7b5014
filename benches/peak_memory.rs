//! Peak memory of validating and planning a 100,000-node fleet against the previous
//! revision, as `fleetgate diff` and the operator do it: both revisions resolved, then
//! the plan. Heap bytes are counted by a wrapping allocator; RSS is read from /proc.
//! Target: under 500 MiB. Run with `cargo bench --bench peak_memory`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use fleetgate::fleet::synth::{Shape, fleet_yaml};
use fleetgate::fleet::{self, LiveObject, PlanOptions, ResolveOptions};

mod heap;

use heap::{CURRENT, PEAK, mib};

fn stage(name: &str) {
    println!(
        "peak_memory/100k: {name:<24} heap now {:>6.0} MiB, heap peak so far {:>6.0} MiB",
        mib(CURRENT.load(Ordering::Relaxed)),
        mib(PEAK.load(Ordering::Relaxed))
    );
}

fn rss_peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let nodes = 100_000;
    let v1 = fleet_yaml(Shape::new(nodes), 1);
    let v2 = fleet_yaml(Shape::new(nodes), 2);
    stage("two files in memory");
    let started = Instant::now();
    let (old, _) =
        fleet::desired_state("v1.yaml", v1.as_bytes(), &ResolveOptions::default()).unwrap();
    let live: Vec<LiveObject> = old
        .objects
        .iter()
        .map(|o| LiveObject::owned_by(o, "bench"))
        .collect();
    stage("v1 resolved (live)");
    let (new, _) =
        fleet::desired_state("v2.yaml", v2.as_bytes(), &ResolveOptions::default()).unwrap();
    stage("v2 resolved (desired)");
    let options = PlanOptions {
        repository: "bench",
        revision: "v2",
        prune: true,
        exclude: &[],
    };
    let plan = fleet::plan(&new.objects, &live, &options).unwrap();
    let elapsed = started.elapsed();
    stage("planned");
    println!(
        "peak_memory/100k: files {:.1} MiB + {:.1} MiB, {} objects, {} actions, both revisions resolved and planned in {:.2?}",
        mib(v1.len()),
        mib(v2.len()),
        new.objects.len(),
        plan.actions.len(),
        elapsed
    );
    println!(
        "peak_memory/100k: peak heap {:.0} MiB, peak RSS {:.0} MiB",
        mib(PEAK.load(Ordering::Relaxed)),
        rss_peak_kib() as f64 / 1024.0
    );
}
