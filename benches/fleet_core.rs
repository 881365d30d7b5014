//! Speed of the fleet core on generated fleets of 1k, 10k and 100k nodes: the untyped
//! YAML floor, parse+validate, +resolve, the plan alone, the plan staged into rollout
//! waves, and validate+plan end to end.
//! Targets (2 cores): 10k nodes validate+plan < 150 ms, 100k < 2 s.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fleetgate::fleet::synth::{Shape, fleet_yaml};
use fleetgate::fleet::{self, LiveObject, PlanOptions, ResolveOptions};
use std::hint::black_box;
use std::time::Duration;

fn live_of(text: &str) -> Vec<LiveObject> {
    let (desired, _) =
        fleet::desired_state("v1.yaml", text.as_bytes(), &ResolveOptions::default()).unwrap();
    desired
        .objects
        .iter()
        .map(|o| LiveObject::owned_by(o, "bench"))
        .collect()
}

fn options() -> PlanOptions<'static> {
    PlanOptions {
        repository: "bench",
        revision: "v2",
        prune: true,
        exclude: &[],
    }
}

fn core(c: &mut Criterion) {
    let mut group = c.benchmark_group("fleet_core");
    for nodes in [1_000usize, 10_000, 100_000] {
        let v1 = fleet_yaml(Shape::new(nodes), 1);
        let v2 = fleet_yaml(Shape::new(nodes), 2);
        let live = live_of(&v1);
        let desired = fleet::desired_state("v2.yaml", v2.as_bytes(), &ResolveOptions::default())
            .unwrap()
            .0;
        if nodes >= 100_000 {
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(20));
        } else {
            group
                .sample_size(20)
                .measurement_time(Duration::from_secs(5));
        }
        group.throughput(Throughput::Elements(nodes as u64));
        group.bench_with_input(
            BenchmarkId::new("untyped_yaml_floor", nodes),
            &v2,
            |b, text| {
                b.iter(|| black_box(serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).unwrap()))
            },
        );
        group.bench_with_input(BenchmarkId::new("parse_validate", nodes), &v2, |b, text| {
            b.iter(|| black_box(fleet::load("v2.yaml", text.as_bytes()).unwrap()))
        });
        group.bench_with_input(
            BenchmarkId::new("parse_validate_resolve", nodes),
            &v2,
            |b, text| {
                b.iter(|| {
                    black_box(
                        fleet::desired_state(
                            "v2.yaml",
                            text.as_bytes(),
                            &ResolveOptions::default(),
                        )
                        .unwrap(),
                    )
                })
            },
        );
        group.bench_function(BenchmarkId::new("plan_only", nodes), |b| {
            b.iter(|| black_box(fleet::plan(&desired.objects, &live, &options()).unwrap()))
        });
        // The same plan staged into waves with the default policy, beside it: what the
        // rollout adds to every plan.
        group.bench_function(BenchmarkId::new("plan_and_stage", nodes), |b| {
            b.iter(|| {
                let mut plan = fleet::plan(&desired.objects, &live, &options()).unwrap();
                let policy = fleet::rollout::Policy::default();
                fleet::rollout::stage(&mut plan, &desired.objects, &live, "bench", &policy)
                    .unwrap();
                black_box(plan)
            })
        });
        group.bench_with_input(
            BenchmarkId::new("validate_and_plan", nodes),
            &v2,
            |b, text| {
                b.iter(|| {
                    let (d, _) = fleet::desired_state(
                        "v2.yaml",
                        text.as_bytes(),
                        &ResolveOptions::default(),
                    )
                    .unwrap();
                    black_box(fleet::plan(&d.objects, &live, &options()).unwrap())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
