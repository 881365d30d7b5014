//! Every input a fuzz target ever crashed on, kept in fuzz/regressions/<target>/ and
//! replayed here on stable Rust, so that a fixed crash stays fixed without a fuzzer.

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use fleetgate::fleet::{self, LiveObject, PlanOptions, ResolveOptions};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new("fuzz/regressions").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

/// As fuzz/fuzz_targets/parse_validate.rs: any bytes through the whole pipeline.
#[test]
fn parse_validate_regressions() {
    for (name, data) in inputs("parse_validate") {
        let Ok((desired, _)) = fleet::desired_state("fuzz.yaml", &data, &ResolveOptions::default())
        else {
            continue;
        };
        let options = PlanOptions {
            repository: "fuzz",
            revision: "r",
            prune: true,
            exclude: &[],
        };
        let live: Vec<LiveObject> = desired
            .objects
            .iter()
            .map(|o| LiveObject::owned_by(o, "fuzz"))
            .collect();
        let again = fleet::plan(&desired.objects, &live, &options).unwrap();
        assert!(again.is_empty(), "{name}");
    }
}

/// As fuzz/fuzz_targets/structured.rs: the generated fleet and its invariants.
#[test]
fn structured_regressions() {
    let schema = jsonschema::validator_for(&fleet::schema::fleet_schema()).unwrap();
    for (name, data) in inputs("structured") {
        let Ok(fleet) = fleetgen::Fleet::arbitrary(&mut Unstructured::new(&data)) else {
            continue;
        };
        eprintln!("{name}");
        fleetgen::check(&fleet, &schema);
    }
}
