//! One look at a converging run of 10,000 nodes, as the SyncRun controller takes it every
//! 2 s: what the watch cache shows of every object the run wrote (health-gated apply,
//! as before pausing), and the same look with the scan for regressions around the run
//! that pausing added (every object of the repository, against the baseline). Side by
//! side in one run.

use std::collections::BTreeSet;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fleetgate::api::pause::RunBaseline;
use fleetgate::controller::convergence::{self, WrittenObject};
use fleetgate::controller::live::{CachedObject, FleetCache, desired_object};
use fleetgate::fleet::plan::spec_digest;
use fleetgate::fleet::synth::{Shape, fleet_yaml};
use fleetgate::fleet::{self, ObjectKind, ResolveOptions};
use std::hint::black_box;

fn look(c: &mut Criterion) {
    // 4,700 nodes make 10,011 objects; 10,000 nodes about 21,300.
    let text = fleet_yaml(Shape::new(10_000), 1);
    let desired = fleet::desired_state("f.yaml", text.as_bytes(), &ResolveOptions::default())
        .unwrap()
        .0
        .objects;
    let cache = FleetCache::holding(desired.iter().map(|o| {
        let json = desired_object(o.kind(), &o.name, "ns", "fleet", &o.spec, None);
        let cached: CachedObject = serde_json::from_value(json).unwrap();
        (o.kind(), cached)
    }));
    let written: Vec<WrittenObject> = desired
        .iter()
        .map(|o| WrittenObject {
            kind: o.kind(),
            name: o.name.clone(),
            digest: Some(spec_digest(&o.spec)),
        })
        .collect();
    let served: BTreeSet<ObjectKind> = ObjectKind::ALL.into_iter().collect();
    let baseline = RunBaseline {
        at: fleetgate::api::now(),
        unhealthy: Vec::new(),
        complete: true,
    };
    let mut group = c.benchmark_group("convergence_look");
    group.sample_size(20);
    group.bench_function("10k_nodes_observe", |b| {
        b.iter(|| black_box(convergence::observe(&cache, "ns", &written, &served)))
    });
    group.bench_function("10k_nodes_observe_and_regressions", |b| {
        b.iter(|| {
            let observed = convergence::observe(&cache, "ns", &written, &served);
            let down = convergence::out_of_service(&cache, "ns", "fleet");
            let found = convergence::regressions_since(
                &down,
                &baseline,
                &written,
                &[],
                |_| Duration::ZERO,
                Duration::from_secs(30),
            );
            black_box((observed, found))
        })
    });
    group.finish();
}

criterion_group!(benches, look);
criterion_main!(benches);
