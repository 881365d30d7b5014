//! Peak heap of planning a fleet that is small as a file and large once resolved (one
//! template of 4,000 modules that 4,000 nodes inherit), side by side in one run:
//! resolved without bounds and stored as the controller used to (its whole JSON in
//! memory, then compressed), against resolved with the default bounds (refused where
//! it crosses them); and a fleet just within the bounds (800 × 800, about 13 MiB of
//! desired state) stored whole against streamed. Heap bytes are counted by a wrapping
//! allocator. Run with `cargo bench --bench bounded_fleet`.

use std::io::Write;
use std::sync::atomic::Ordering;

use fleetgate::controller::planstore;
use fleetgate::fleet::synth::inherited_modules_yaml;
use fleetgate::fleet::{self, Limits, PlanOptions, ResolveOptions};

mod heap;

use heap::{CURRENT, PEAK, mib};

/// The peak heap above what was in use when `work` started.
fn peak_of<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = work();
    (out, PEAK.load(Ordering::Relaxed) - base)
}

fn options(limits: Limits) -> ResolveOptions<'static> {
    ResolveOptions {
        limits,
        ..Default::default()
    }
}

/// Resolves, plans against nothing and stores desired state and plan the old way: each
/// serialized whole, then compressed.
fn whole(text: &str, limits: Limits) -> usize {
    let (desired, _) = fleet::desired_state("f.yaml", text.as_bytes(), &options(limits)).unwrap();
    let plan_options = PlanOptions {
        repository: "bench",
        revision: "r",
        prune: true,
        exclude: &[],
    };
    let plan = fleet::plan(&desired.objects, &[], &plan_options).unwrap();
    let mut stored = 0;
    for json in [
        serde_json::to_vec(&desired.objects).unwrap(),
        serde_json::to_vec(&plan).unwrap(),
    ] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&json).unwrap();
        stored += gz.finish().unwrap().len();
    }
    stored
}

/// The same, streamed as the controller stores them now.
fn streamed(text: &str) -> usize {
    let (desired, _) =
        fleet::desired_state("f.yaml", text.as_bytes(), &options(Limits::default())).unwrap();
    let plan_options = PlanOptions {
        repository: "bench",
        revision: "r",
        prune: true,
        exclude: &[],
    };
    let plan = fleet::plan(&desired.objects, &[], &plan_options).unwrap();
    let max = Limits::default().max_bytes * 4;
    planstore::encode("desired state", &desired.objects, max).unwrap();
    planstore::encode("plan", &plan, max).unwrap();
    plan.actions.len()
}

fn main() {
    let everything = inherited_modules_yaml(4_000, 4_000);
    println!(
        "bounded_fleet: the 4,000 x 4,000 file is {:.2} MiB",
        mib(everything.len())
    );
    let unbounded = Limits {
        max_modules_per_object: usize::MAX,
        max_modules: usize::MAX,
        max_bytes: u64::MAX,
        max_object_bytes: u64::MAX,
        ..Limits::default()
    };
    let (stored, before) = peak_of(|| whole(&everything, unbounded));
    println!(
        "bounded_fleet: 4,000 x 4,000 without bounds, stored whole: peak heap {:.0} MiB ({:.1} MiB stored compressed)",
        mib(before),
        mib(stored)
    );
    let (refused, after) = peak_of(|| {
        fleet::desired_state("f.yaml", everything.as_bytes(), &options(Limits::default()))
            .unwrap_err()
    });
    println!(
        "bounded_fleet: 4,000 x 4,000 with the default bounds: refused ({}), peak heap {:.1} MiB: {:.0}x less",
        refused
            .errors()
            .next()
            .map(|d| d.to_string())
            .unwrap_or_default(),
        mib(after),
        before as f64 / after.max(1) as f64
    );

    let within = inherited_modules_yaml(800, 800);
    let (_, whole_peak) = peak_of(|| whole(&within, Limits::default()));
    let (actions, streamed_peak) = peak_of(|| streamed(&within));
    println!(
        "bounded_fleet: 800 x 800 ({actions} actions), stored whole: peak heap {:.0} MiB; streamed: {:.0} MiB ({:.1}x less)",
        mib(whole_peak),
        mib(streamed_peak),
        whole_peak as f64 / streamed_peak.max(1) as f64
    );
}
