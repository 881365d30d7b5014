//! `make demo-environments` end to end: one fleet.yaml serving staging and production,
//! production planning only what staging applied and held, each with its own values.

#[test]
fn make_demo_environments_promotes_what_staging_held_with_each_environments_values() {
    let stdout = super::demo::run_make("demo-environments");
    let in_order = [
        "valid (2 templates, 3 nodes, 1 networks, 0 warnings; environments staging, production)",
        "== Staging plans the revision at once; production plans nothing yet",
        "$ kubectl get syncruns -n production -o name\n(none)\n",
        "NothingEligible: staging/fleet has applied no revision from git yet",
        "edge-tokyo-01    edge-cdn   ap-tokyo-1   t3-small",
        "Waiting: waiting for staging/fleet: revision ",
        "Promotion from staging/fleet (Promoted): revision ",
        "Promoted   revision ",
        "edge-tokyo-01    edge-cdn   ap-tokyo-1   t3-medium",
        "staging's nginx: [\"system-base@blessed\",\"security-hardening@blessed\",\"chrony@1.4.3\",\"nginx@1.27.0\"]",
        "production's nginx: [\"system-base@blessed\",\"security-hardening@blessed\",\"chrony@1.4.3\",\"nginx@1.26.2\"]",
        "== Done; stopping everything the demo started",
    ];
    let mut rest = &stdout[..];
    for expected in in_order {
        let at = rest
            .find(expected)
            .unwrap_or_else(|| panic!("`{expected}` missing (or out of order) in:\n{stdout}"));
        rest = &rest[at + expected.len()..];
    }
    // Production waited out the soak: it held at least the 30 s asked for.
    let held = stdout
        .split("held in staging/fleet for ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| humantime::parse_duration(s).ok())
        .expect("the hold, as a duration");
    assert!(held.as_secs() >= 30, "promoted after {held:?}:\n{stdout}");
}
