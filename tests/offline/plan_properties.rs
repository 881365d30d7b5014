//! Properties of the plan engine over random valid fleets: a fleet against itself plans
//! nothing; applying the plan from A to B onto A gives B; and every step of a plan, with
//! or without exclusions, leaves no object naming one that does not exist.

use std::collections::BTreeMap;
use std::fmt::Write;

use fleetgate::fleet::plan::apply_to;
use fleetgate::fleet::{
    self, FleetObject, LiveObject, ObjectRef, Operation, PlanOptions, ResolveOptions,
};
use proptest::prelude::*;

/// Reads choices from proptest's bytes; shrinking the bytes shrinks the fleet.
struct Choices<'a>(std::slice::Iter<'a, u8>);

impl Choices<'_> {
    fn below(&mut self, n: usize) -> usize {
        self.0.next().map_or(0, |b| *b as usize % n.max(1))
    }
    fn flip(&mut self) -> bool {
        self.below(2) == 1
    }
    fn subset<T: Clone>(&mut self, items: &[T]) -> Vec<T> {
        items.iter().filter(|_| self.flip()).cloned().collect()
    }
}

/// A random valid fleet.yaml drawn from small name pools, so that two draws overlap.
fn random_fleet(bytes: &[u8]) -> String {
    let mut c = Choices(bytes.iter());
    let mut y = String::from("version: 1\naccount: a\ntemplates:\n");
    let mut templates: Vec<String> = Vec::new();
    for t in 0..6 {
        if t > 0 && !c.flip() {
            continue;
        }
        let name = format!("t{t}");
        let _ = writeln!(y, "  - name: {name}");
        if !templates.is_empty() && c.flip() {
            let parent = &templates[c.below(templates.len())];
            let _ = writeln!(y, "    extends: {parent}");
        } else {
            let arch = ["amd64", "arm64"][c.below(2)];
            let _ = writeln!(
                y,
                "    node_platform: p{}\n    architecture: {arch}",
                c.below(2)
            );
        }
        let modules = c.subset(&["a@1.0.0", "b@blessed", "c@2.1.0"]);
        let _ = writeln!(y, "    modules: [{}]", modules.join(", "));
        let _ = writeln!(y, "    metadata: {{k{}: v{}}}", c.below(2), c.below(2));
        templates.push(name);
    }
    y.push_str("nodes:\n");
    let mut nodes: Vec<String> = Vec::new();
    for n in 0..8 {
        if !c.flip() {
            continue;
        }
        let name = format!("n{n}");
        let template = &templates[c.below(templates.len())];
        let _ = writeln!(
            y,
            "  - {{hostname: {name}, template: {template}, region: r{}, instance_type: i{}}}",
            c.below(2),
            c.below(2)
        );
        nodes.push(name);
    }
    y.push_str("sdwan:\n  networks:\n");
    for w in 0..3 {
        if !c.flip() {
            continue;
        }
        let mode = ["ibgp", "ebgp", "static"][c.below(3)];
        let _ = writeln!(
            y,
            "    - name: w{w}\n      routing_mode: {mode}\n      peers:"
        );
        let peers = c.subset(&nodes);
        for p in &peers {
            let _ = writeln!(
                y,
                "        - {{host: {p}, publicly_reachable: {}}}",
                c.flip()
            );
        }
        y.push_str("      virtual_ips:\n");
        for v in 0..3 {
            if peers.is_empty() || !c.flip() {
                continue;
            }
            let primary = &peers[c.below(peers.len())];
            let others: Vec<String> = peers.iter().filter(|p| *p != primary).cloned().collect();
            let failovers = c.subset(&others);
            let _ = writeln!(
                y,
                "        - {{name: v{v}, primary_holder: {primary}, failover_holders: [{}]}}",
                failovers.join(", ")
            );
        }
    }
    y
}

fn desired(text: &str) -> Vec<FleetObject> {
    fleet::desired_state("random.yaml", text.as_bytes(), &ResolveOptions::default())
        .unwrap_or_else(|e| panic!("generated fleet is invalid:\n{e}\n{text}"))
        .0
        .objects
}

fn owned(objects: &[FleetObject]) -> Vec<LiveObject> {
    objects
        .iter()
        .map(|o| LiveObject::owned_by(o, "repo"))
        .collect()
}

fn options(exclude: &[ObjectRef]) -> PlanOptions<'_> {
    PlanOptions {
        repository: "repo",
        revision: "r",
        prune: true,
        exclude,
    }
}

/// Fails if some object names another that is not there.
fn closed(state: &BTreeMap<ObjectRef, FleetObject>, after: &str) -> Result<(), TestCaseError> {
    for o in state.values() {
        for r in o.references() {
            prop_assert!(
                state.contains_key(&r),
                "after {after}: {} names {r}, which does not exist",
                o.reference()
            );
        }
    }
    Ok(())
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..120)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_fleet_against_itself_plans_nothing(a in bytes()) {
        let a = desired(&random_fleet(&a));
        let plan = fleet::plan(&a, &owned(&a), &options(&[])).unwrap();
        prop_assert!(plan.is_empty(), "{:?}", plan.actions);
    }

    #[test]
    fn applying_the_plan_from_a_to_b_gives_b(a in bytes(), b in bytes()) {
        let (a, b) = (desired(&random_fleet(&a)), desired(&random_fleet(&b)));
        let plan = fleet::plan(&b, &owned(&a), &options(&[])).unwrap();
        prop_assert_eq!(apply_to(&a, &plan), b);
    }

    #[test]
    fn no_step_leaves_a_dangling_reference(a in bytes(), b in bytes(), pick in any::<u64>()) {
        let (a, b) = (desired(&random_fleet(&a)), desired(&random_fleet(&b)));
        let full = fleet::plan(&b, &owned(&a), &options(&[])).unwrap();
        // Once without exclusions, once leaving out a random action and its dependents.
        let mut exclusions = vec![vec![]];
        if !full.actions.is_empty() {
            let chosen = &full.actions[(pick % full.actions.len() as u64) as usize];
            exclusions.push(vec![chosen.reference()]);
        }
        for exclude in exclusions {
            let plan = fleet::plan(&b, &owned(&a), &options(&exclude)).unwrap();
            let mut state: BTreeMap<ObjectRef, FleetObject> =
                a.iter().map(|o| (o.reference(), o.clone())).collect();
            closed(&state, "nothing")?;
            for action in &plan.actions {
                match action.operation {
                    Operation::Delete => {
                        state.remove(&action.reference());
                    }
                    _ => {
                        let spec = action.spec.clone().expect("creates and updates carry a spec");
                        state.insert(
                            action.reference(),
                            FleetObject { name: action.name.clone(), spec },
                        );
                    }
                }
                closed(&state, &format!("{:?} {}", action.operation, action.reference()))?;
            }
            for excluded in &exclude {
                prop_assert!(plan.excluded.contains(excluded));
                prop_assert!(!plan.actions.iter().any(|a| &a.reference() == excluded));
            }
        }
    }
}
