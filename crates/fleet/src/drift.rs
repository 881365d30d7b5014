//! Drift: how the live objects of a repository differ from the desired state of the
//! revision last applied. It is the planner's view turned around: what a plan would
//! create was deleted, what it would update was changed, what it would delete is a
//! stray object carrying the repository's label.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::object::{FleetObject, ObjectKind};
use super::plan::{LiveObject, Operation, PlanOptions, plan};
use super::render::change_lines;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DriftKind {
    /// The object differs from git in fields fleetgate owns.
    Changed,
    /// The object git declares was deleted.
    Missing,
    /// An object carries the repository's label but git does not declare it.
    Unexpected,
    /// The object is as git says, but its provider no longer reports it Ready (a health
    /// regression since it was applied): `fields` says what the provider reports.
    Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DriftedObject {
    /// The object's kind.
    pub kind: ObjectKind,
    /// The object's name.
    pub name: String,
    /// How it differs: Changed, Missing, Unexpected or Unhealthy.
    pub drift: DriftKind,
    /// For changed objects: `path: expected -> actual`, values as JSON; for unhealthy ones, what the provider reports (`Failed (NodeFailed)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// Every drifted object of `repository`, in kind then name order.
pub fn detect(
    desired: &[FleetObject],
    live: &[LiveObject],
    repository: &str,
) -> Vec<DriftedObject> {
    let options = PlanOptions {
        repository,
        revision: "",
        prune: true,
        exclude: &[],
    };
    // Without exclusions the planner cannot fail; protected objects are still drift.
    let mut live = live.to_vec();
    live.iter_mut().for_each(|l| l.prevent_destroy = false);
    let plan = plan(desired, &live, &options).expect("a plan without exclusions or protections");
    plan.diff
        .into_iter()
        .map(|d| {
            let drift = match d.operation {
                Operation::Create => DriftKind::Missing,
                Operation::Update => DriftKind::Changed,
                Operation::Delete => DriftKind::Unexpected,
            };
            // The planner reads old -> new as live -> git; drift reads git -> live.
            let fields = d
                .fields
                .iter()
                .map(|f| {
                    let mut turned = f.clone();
                    std::mem::swap(&mut turned.old, &mut turned.new);
                    turned
                })
                .flat_map(|f| change_lines(&f))
                .collect();
            DriftedObject {
                kind: d.kind,
                name: d.name,
                drift,
                fields,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Spec;
    use crate::{ResolveOptions, desired_state};
    use std::sync::Arc;

    fn reference() -> Vec<FleetObject> {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/fleet.yaml"
        ))
        .unwrap();
        desired_state("fleet.yaml", &bytes, &ResolveOptions::default())
            .unwrap()
            .0
            .objects
    }

    #[test]
    fn reports_changed_missing_and_unexpected_objects() {
        let desired = reference();
        let mut live: Vec<LiveObject> = desired
            .iter()
            .map(|o| LiveObject::owned_by(o, "fleet"))
            .collect();
        // tokyo-02 resized by hand, london's peer deleted, a stray node added.
        let tokyo = live.iter_mut().find(|l| l.name == "edge-tokyo-02").unwrap();
        let Spec::FleetNode(mut spec) = (*tokyo.spec).clone() else {
            panic!()
        };
        spec.instance_type = "t3-xlarge".into();
        tokyo.spec = Arc::new(Spec::FleetNode(spec.clone()));
        live.retain(|l| l.name != "edge-fabric.edge-london-01");
        spec.instance_type = "t3-nano".into();
        live.push(LiveObject::owned_by(
            &FleetObject::new("stray", Spec::FleetNode(spec)),
            "fleet",
        ));
        // Objects of other repositories are not this repository's drift.
        live.push(LiveObject {
            owner: Some("other".into()),
            ..LiveObject::owned_by(&desired[0], "x")
        });
        live.last_mut().unwrap().name = "theirs".into();

        let drift = detect(&desired, &live, "fleet");
        let shown: Vec<String> = drift
            .iter()
            .map(|d| format!("{:?} {}/{} {:?}", d.drift, d.kind, d.name, d.fields))
            .collect();
        assert_eq!(
            shown,
            [
                r#"Changed FleetNode/edge-tokyo-02 ["instanceType: \"t3-medium\" -> \"t3-xlarge\""]"#,
                r#"Unexpected FleetNode/stray []"#,
                r#"Missing SdwanPeer/edge-fabric.edge-london-01 []"#,
            ]
        );
    }

    #[test]
    fn no_drift_when_the_cluster_matches() {
        let desired = reference();
        let live: Vec<LiveObject> = desired
            .iter()
            .map(|o| LiveObject::owned_by(o, "fleet"))
            .collect();
        assert!(detect(&desired, &live, "fleet").is_empty());
    }

    #[test]
    fn desired_objects_round_trip_through_json() {
        let desired = reference();
        let json = serde_json::to_string(&desired).unwrap();
        let back: Vec<FleetObject> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, desired);
    }
}
