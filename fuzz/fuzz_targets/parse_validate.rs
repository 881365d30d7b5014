//! Any bytes through the whole pure pipeline: parse, validate, resolve, and plan against
//! nothing and against itself. It must never panic, hang or grow without bound.
#![no_main]

use fleetgate_fleet::{self as fleet, LiveObject, PlanOptions, ResolveOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((desired, _warnings)) = fleet::desired_state("fuzz.yaml", data, &ResolveOptions::default()) else {
        return;
    };
    let options = PlanOptions { repository: "fuzz", revision: "r", prune: true, exclude: &[] };
    let from_nothing = fleet::plan(&desired.objects, &[], &options).expect("no protected objects");
    let live: Vec<LiveObject> = desired.objects.iter().map(|o| LiveObject::owned_by(o, "fuzz")).collect();
    let again = fleet::plan(&desired.objects, &live, &options).expect("no protected objects");
    assert!(again.is_empty(), "a fleet against itself must plan nothing");
    let _ = fleet::render::render_text(&from_nothing, fleet::render::Colour::Never);
});
