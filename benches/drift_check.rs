//! One drift check over 10,000 fleet objects, as the repository controller runs it:
//! the objects as the watch cache holds them (`CachedObject`: the spec already read into
//! the planner's form), compared with the desired state. Target: under 50 ms of CPU.

use criterion::{Criterion, criterion_group, criterion_main};
use fleetgate::controller::live::{CachedObject, desired_object, to_live};
use fleetgate::fleet::drift::detect;
use fleetgate::fleet::synth::{Shape, fleet_yaml};
use fleetgate::fleet::{self, LiveObject, ResolveOptions};
use std::hint::black_box;

fn drift(c: &mut Criterion) {
    // 4,700 nodes make 10,011 objects (nodes, peers, templates, networks, VIPs).
    let text = fleet_yaml(Shape::new(4_700), 1);
    let desired = fleet::desired_state("f.yaml", text.as_bytes(), &ResolveOptions::default())
        .unwrap()
        .0
        .objects;
    let cached: Vec<CachedObject> = desired
        .iter()
        .map(|o| {
            let json = desired_object(o.kind(), &o.name, "ns", "fleet", &o.spec, None);
            serde_json::from_value(json).unwrap()
        })
        .collect();
    assert!(cached.len() > 10_000, "{} objects", cached.len());
    let mut group = c.benchmark_group("drift_check");
    group.sample_size(30);
    group.bench_function("10k_objects_no_drift", |b| {
        b.iter(|| {
            let live: Vec<LiveObject> = cached.iter().filter_map(to_live).collect();
            let found = detect(&desired, &live, "fleet");
            assert!(found.is_empty());
            black_box(found)
        })
    });
    group.finish();
}

criterion_group!(benches, drift);
criterion_main!(benches);
