//! The fleet.yaml JSON Schema for editors: committed, accepting the reference fleets,
//! and refusing what the validator refuses by shape.

fn yaml_to_json(text: &str) -> serde_json::Value {
    serde_yaml_ng::from_str(text).expect("YAML")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&fleetgate::fleet::schema::fleet_schema()).expect("a valid schema")
}

#[test]
fn the_committed_schema_is_current() {
    let committed = std::fs::read_to_string("schema/fleet.schema.json").unwrap();
    assert!(
        committed == fleetgate::fleet::schema::fleet_schema_text(),
        "schema/fleet.schema.json is stale: run hack/generate.sh"
    );
}

#[test]
fn the_reference_fleets_match_the_schema() {
    let v = validator();
    for file in ["examples/fleet.yaml", "examples/fleet-v2.yaml"] {
        let doc = yaml_to_json(&std::fs::read_to_string(file).unwrap());
        let errors: Vec<String> = v
            .iter_errors(&doc)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{file}: {errors:?}");
    }
}

#[test]
fn the_schema_refuses_misspelt_keys_bad_enums_and_bad_pins() {
    let v = validator();
    let cases = [
        ("version: 1\naccount: a\ntemplate: []\n", "template"),
        (
            "version: 1\naccount: a\ntemplates:\n  - {name: t, architecture: x86}\n",
            "x86",
        ),
        (
            "version: 1\naccount: a\ntemplates:\n  - {name: t, modules: [nginx@v1.2]}\n",
            "nginx@v1.2",
        ),
        (
            "version: 1\naccount: a\nnodes:\n  - {hostname: Bad_Name, template: t, region: r, instance_type: i}\n",
            "Bad_Name",
        ),
        ("version: 2\naccount: a\n", "2"),
        (
            "version: 1\naccount: a\nenvironments:\n  Staging: {}\n",
            "Staging",
        ),
        (
            "version: 1\naccount: a\nenvironments:\n  staging: {templates: {t: {architecture: arm64}}}\n",
            "architecture",
        ),
        ("account: a\n", "version"),
    ];
    for (text, what) in cases {
        let doc = yaml_to_json(text);
        let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(!errors.is_empty(), "the schema accepted {text:?}");
        assert!(
            errors.iter().any(|e| e.contains(what)),
            "{what} not named in {errors:?}"
        );
    }
}

/// A small deterministic generator of input bytes (xorshift64*), so that the corpus is
/// the same on every run and a failure names the seed that shows it.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// The schema and the reader agree on a generated corpus of valid and invalid fleets (in
/// varied YAML styles), and every valid one resolves and plans (see `fleetgen::check`).
#[test]
fn the_schema_and_the_reader_agree_on_generated_fleets() {
    use arbitrary::{Arbitrary, Unstructured};
    use fleetgen::Outcome;

    let v = validator();
    let mut counts = std::collections::BTreeMap::new();
    for seed in 0..3000u64 {
        let data = bytes(seed, 64 + (seed as usize * 37) % 1500);
        let fleet = fleetgen::Fleet::arbitrary(&mut Unstructured::new(&data)).unwrap();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fleetgen::check(&fleet, &v)))
                .unwrap_or_else(|_| panic!("seed {seed} breaks an invariant (see above)"));
        *counts.entry(format!("{outcome:?}")).or_insert(0) += 1;
    }
    eprintln!("{counts:?}");
    let count = |o: Outcome| counts.get(&format!("{o:?}")).copied().unwrap_or(0);
    // The corpus must exercise both sides, not only one.
    assert!(count(Outcome::Valid) >= 300, "{counts:?}");
    assert!(count(Outcome::InvalidShape) >= 600, "{counts:?}");
    assert!(count(Outcome::NoJson) <= 300, "{counts:?}");
}

/// The cases the issue found, one by one: null optional keys are fine; numbers and
/// booleans where a string is expected, `True` for a boolean, empty names and metadata
/// keys, over-long module names and real-world pins are judged alike by both.
#[test]
fn the_schema_and_the_reader_agree_on_known_cases() {
    let v = validator();
    let node = "nodes:\n  - {hostname: n, template: t, region: r, instance_type: i}\n";
    let head =
        "version: 1\naccount: a\ntemplates:\n  - {name: t, node_platform: p, architecture: amd64";
    let cases: &[(&str, bool)] = &[
        (
            &format!("{head}, extends: ~, metadata: ~, modules: ~}}\n{node}sdwan: ~\n"),
            true,
        ),
        (
            &format!("{head}, metadata: {{a: ~, b: 1, c: True}}}}\n{node}"),
            true,
        ),
        (
            &format!(
                "{head}}}\nnodes:\n  - {{hostname: n, template: t, region: 1, instance_type: i}}\n"
            ),
            false,
        ),
        (
            &format!(
                "{head}}}\nnodes:\n  - {{hostname: 123, template: t, region: r, instance_type: i}}\n"
            ),
            false,
        ),
        (
            "version: 1\naccount: a\ntemplates:\n  - {name: t, node_platform: 24.04, architecture: amd64}\n",
            false,
        ),
        (
            "version: 1\naccount: a\ntemplates:\n  - {name: t, node_platform: '24.04', architecture: amd64}\n",
            true,
        ),
        (
            &format!(
                "{head}}}\n{node}sdwan:\n  networks:\n    - {{name: w, routing_mode: ibgp, peers: [{{host: n, publicly_reachable: True}}]}}\n"
            ),
            true,
        ),
        (
            &format!(
                "{head}}}\n{node}sdwan:\n  networks:\n    - {{name: w, routing_mode: ibgp, peers: [{{host: n, publicly_reachable: yes}}]}}\n"
            ),
            false,
        ),
        (&format!("{head}, metadata: {{'': x}}}}\n{node}"), false),
        (&format!("{head}, name: ''}}\n"), false),
        (
            &format!("{head}, modules: [{}@1.0]}}\n", "m".repeat(254)),
            false,
        ),
        (
            &format!("{head}, modules: [{}@1.0]}}\n", "m".repeat(253)),
            true,
        ),
        (
            &format!(
                "{head}, modules: [chrony@4.5, openssh@9.6p1, 'dpkg@1:2.3.4-1', rc@1.2.3~rc1, openssl@3.0.13-1]}}\n"
            ),
            true,
        ),
        (&format!("{head}, modules: [n@v1.2]}}\n"), false),
        (&format!("{head}, modules: [n@1.2.]}}\n"), false),
        ("version: 1\naccount: ''\n", false),
        ("version: '1'\naccount: a\n", true),
        ("version: '01'\naccount: a\n", false),
    ];
    for (text, valid) in cases {
        let (_, diags) = fleetgate::fleet::parse::parse("f.yaml", text.as_bytes());
        assert_eq!(!diags.has_errors(), *valid, "reader on {text}: {diags}");
        let errors: Vec<String> = v
            .iter_errors(&yaml_to_json(text))
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors.is_empty(), *valid, "schema on {text}: {errors:?}");
    }
}
