//! Structure-aware: fleets drawn from the `arbitrary` model in crates/fleetgen (empty,
//! null, unicode, typed and duplicate values, wrong types, unknown keys) and printed as
//! YAML in varied styles. Invariants (see `fleetgen::check`): the JSON Schema and the
//! reader agree; validate accepts ⇒ resolve and plan never fail or panic; a fleet planned
//! against itself plans nothing; the same tree in another style reads the same.
#![no_main]

use std::sync::LazyLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;


static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    jsonschema::validator_for(&fleetgate_fleet::schema::fleet_schema()).expect("a valid schema")
});

fuzz_target!(|data: &[u8]| {
    let Ok(fleet) = fleetgen::Fleet::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    fleetgen::check(&fleet, &SCHEMA);
});
