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
            "version: 1\naccount: a\ntemplates:\n  - {name: t, modules: [nginx@1.2]}\n",
            "nginx@1.2",
        ),
        (
            "version: 1\naccount: a\nnodes:\n  - {hostname: Bad_Name, template: t, region: r, instance_type: i}\n",
            "Bad_Name",
        ),
        ("version: 2\naccount: a\n", "2"),
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
