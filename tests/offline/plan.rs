//! The plan engine on fixtures: the reference fleet and its next revision, ordering,
//! exclusions, ownership and protection. Pure: no cluster, no git.

use fleetgate::fleet::object::Spec;
use fleetgate::fleet::render::{Colour, render_json, render_text, summary_line};
use fleetgate::fleet::{
    self, FleetObject, LiveObject, ObjectKind, ObjectRef, Operation, Plan, PlanError, PlanOptions,
    ResolveOptions,
};
use serde_json::json;

const REPO: &str = "fleet";

fn desired(path: &str) -> Vec<FleetObject> {
    let bytes = std::fs::read(path).unwrap();
    fleet::desired_state(path, &bytes, &ResolveOptions::default())
        .expect("valid")
        .0
        .objects
}

fn live(objects: &[FleetObject], owner: Option<&str>) -> Vec<LiveObject> {
    objects
        .iter()
        .map(|o| LiveObject {
            owner: owner.map(str::to_owned),
            ..LiveObject::owned_by(o, "unused")
        })
        .collect()
}

fn template(name: &str, extends: &str) -> LiveObject {
    let spec = Spec::from_json(
        ObjectKind::FleetTemplate,
        json!({"extends": extends, "nodePlatform": "p", "architecture": "amd64"}),
    )
    .unwrap();
    LiveObject::owned_by(&FleetObject::new(name, spec), REPO)
}

fn options<'a>(exclude: &'a [ObjectRef]) -> PlanOptions<'a> {
    PlanOptions {
        repository: REPO,
        revision: "v2",
        prune: true,
        exclude,
    }
}

fn v1_to_v2(exclude: &[ObjectRef]) -> Plan {
    let v1 = desired("examples/fleet.yaml");
    let v2 = desired("examples/fleet-v2.yaml");
    fleet::plan(&v2, &live(&v1, Some(REPO)), &options(exclude)).unwrap()
}

fn steps(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| format!("{} {} {}", a.level, a.operation.symbol(), a.reference()))
        .collect()
}

#[test]
fn the_reference_fleet_from_nothing_is_ten_creates_in_dependency_order() {
    let plan = fleet::plan(&desired("examples/fleet.yaml"), &[], &options(&[])).unwrap();
    assert_eq!(
        summary_line(&plan),
        "templates 2 add; nodes 3 add; networks 1 add; peers 3 add; virtualIps 1 add"
    );
    assert_eq!(
        steps(&plan),
        [
            "0 + fleettemplate/edge-base",
            "1 + fleettemplate/edge-cdn",
            "2 + fleetnode/edge-london-01",
            "2 + fleetnode/edge-tokyo-01",
            "2 + fleetnode/edge-tokyo-02",
            "3 + sdwannetwork/edge-fabric",
            "4 + sdwanpeer/edge-fabric.edge-london-01",
            "4 + sdwanpeer/edge-fabric.edge-tokyo-01",
            "4 + sdwanpeer/edge-fabric.edge-tokyo-02",
            "5 + virtualip/edge-fabric.cdn-frontend",
        ]
    );
    let vip = plan.actions.last().unwrap();
    let deps: Vec<String> = vip.depends_on.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        deps,
        [
            "sdwannetwork/edge-fabric",
            "sdwanpeer/edge-fabric.edge-london-01",
            "sdwanpeer/edge-fabric.edge-tokyo-01",
            "sdwanpeer/edge-fabric.edge-tokyo-02",
        ]
    );
}

#[test]
fn v1_to_v2_changes_exactly_what_the_revision_changed() {
    let plan = v1_to_v2(&[]);
    assert_eq!(
        summary_line(&plan),
        "templates 1 update; nodes 1 add, 2 update, 1 delete; peers 1 add, 1 delete; virtualIps 1 update"
    );
    assert_eq!(
        steps(&plan),
        [
            "0 ~ fleettemplate/edge-cdn",
            "1 + fleetnode/edge-paris-01",
            "1 ~ fleetnode/edge-tokyo-01",
            "1 ~ fleetnode/edge-tokyo-02",
            "2 + sdwanpeer/edge-fabric.edge-paris-01",
            "3 ~ virtualip/edge-fabric.cdn-frontend",
            "4 - sdwanpeer/edge-fabric.edge-london-01",
            "5 - fleetnode/edge-london-01",
        ]
    );
    let by_name = |kind, name: &str| {
        plan.actions
            .iter()
            .find(|a| a.kind == kind && a.name == name)
            .unwrap()
    };
    // The old peer goes only once the VIP stops naming it; the node once its peer is gone.
    let peer_delete = by_name(ObjectKind::SdwanPeer, "edge-fabric.edge-london-01");
    assert_eq!(
        peer_delete.depends_on,
        [ObjectRef::new(
            ObjectKind::VirtualIp,
            "edge-fabric.cdn-frontend"
        )]
    );
    assert!(peer_delete.spec.is_none() && peer_delete.observed.is_some());
    let tokyo = plan
        .diff
        .iter()
        .find(|d| d.name == "edge-tokyo-01")
        .unwrap();
    let paths: Vec<&str> = tokyo.fields.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["instanceType", "modules"]);
    assert_eq!(tokyo.fields[0].old, Some(json!("t3-medium")));
    assert_eq!(tokyo.fields[0].new, Some(json!("t3-large")));
}

#[test]
fn excluding_a_node_drops_everything_that_needs_it() {
    let paris = ObjectRef::new(ObjectKind::FleetNode, "edge-paris-01");
    let full = v1_to_v2(&[]);
    let plan = v1_to_v2(std::slice::from_ref(&paris));
    let excluded: Vec<String> = plan.excluded.iter().map(|r| r.to_string()).collect();
    // Without the new peer the VIP cannot be re-homed, so it keeps naming london's peer,
    // which therefore stays, and so does london's node.
    assert_eq!(
        excluded,
        [
            "fleetnode/edge-london-01",
            "fleetnode/edge-paris-01",
            "sdwanpeer/edge-fabric.edge-london-01",
            "sdwanpeer/edge-fabric.edge-paris-01",
            "virtualip/edge-fabric.cdn-frontend",
        ]
    );
    assert_eq!(
        steps(&plan),
        [
            "0 ~ fleettemplate/edge-cdn",
            "1 ~ fleetnode/edge-tokyo-01",
            "1 ~ fleetnode/edge-tokyo-02",
        ]
    );
    assert_ne!(plan.plan_id, full.plan_id);
    assert_eq!(plan.summary.total().total(), 3);
}

#[test]
fn excluding_what_the_plan_does_not_touch_is_an_error() {
    let v1 = desired("examples/fleet.yaml");
    let v2 = desired("examples/fleet-v2.yaml");
    let bogus = [
        ObjectRef::new(ObjectKind::FleetNode, "edge-nowhere"),
        ObjectRef::new(ObjectKind::SdwanNetwork, "edge-fabric"),
    ];
    let errors = fleet::plan(&v2, &live(&v1, Some(REPO)), &options(&bogus)).unwrap_err();
    let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        messages,
        [
            "cannot exclude fleetnode/edge-nowhere: the plan has no action for it",
            "cannot exclude sdwannetwork/edge-fabric: the plan has no action for it",
        ]
    );
    assert_eq!(errors[0].label(), "UnknownExclusion");
}

#[test]
fn the_same_state_plans_nothing_and_has_a_stable_id() {
    let v1 = desired("examples/fleet.yaml");
    let plan = fleet::plan(&v1, &live(&v1, Some(REPO)), &options(&[])).unwrap();
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(
        render_text(&plan, Colour::Never),
        "No changes. The cluster matches the fleet file.\n"
    );

    let a = v1_to_v2(&[]);
    let mut reversed = desired("examples/fleet-v2.yaml");
    reversed.reverse();
    let mut old = live(&desired("examples/fleet.yaml"), Some(REPO));
    old.reverse();
    let b = fleet::plan(&reversed, &old, &options(&[])).unwrap();
    assert_eq!(a.plan_id, b.plan_id, "input order must not change the plan");
    let other_revision = PlanOptions {
        revision: "v3",
        ..options(&[])
    };
    let c = fleet::plan(&reversed, &old, &other_revision).unwrap();
    assert_ne!(a.plan_id, c.plan_id, "the revision is part of the plan id");
    assert!(a.plan_id.starts_with("plan-") && a.plan_id.len() == 17);
}

#[test]
fn without_prune_nothing_is_deleted() {
    let v1 = desired("examples/fleet.yaml");
    let v2 = desired("examples/fleet-v2.yaml");
    let plan = fleet::plan(
        &v2,
        &live(&v1, Some(REPO)),
        &PlanOptions {
            prune: false,
            ..options(&[])
        },
    )
    .unwrap();
    assert!(!plan.has_deletions());
    assert_eq!(plan.summary.total().delete, 0);
}

#[test]
fn objects_of_others_are_never_taken_over_or_deleted() {
    let v1 = desired("examples/fleet.yaml");
    let mut cluster = live(&v1[..2], Some("other-repo"));
    cluster.extend(live(&v1[2..3], None));
    cluster.push(LiveObject {
        owner: Some("other-repo".into()),
        ..template("someone-elses", "edge-base")
    });
    let plan = fleet::plan(&v1, &cluster, &options(&[])).unwrap();
    let conflicts: Vec<&str> = plan.conflicts.iter().map(|c| c.message.as_str()).collect();
    assert_eq!(
        conflicts,
        [
            "fleettemplate/edge-base is managed by repository `other-repo`; `fleet` will not take it over",
            "fleettemplate/edge-cdn is managed by repository `other-repo`; `fleet` will not take it over",
            "fleetnode/edge-london-01 exists but is not managed by fleetgate; `fleet` will not take it over",
        ]
    );
    assert!(!plan.has_deletions());
    assert_eq!(plan.actions.len(), 7);
    assert!(
        plan.actions
            .iter()
            .all(|a| a.operation == Operation::Create)
    );
    assert!(render_text(&plan, Colour::Never).contains("Conflicts (not planned)"));
}

#[test]
fn protected_objects_stop_the_plan_by_name() {
    let v1 = desired("examples/fleet.yaml");
    let v2 = desired("examples/fleet-v2.yaml");
    let mut cluster = live(&v1, Some(REPO));
    for l in &mut cluster {
        l.prevent_destroy = l.name.contains("london");
    }
    let errors = fleet::plan(&v2, &cluster, &options(&[])).unwrap_err();
    assert_eq!(
        errors,
        [
            PlanError::PreventDestroy {
                object: ObjectRef::new(ObjectKind::FleetNode, "edge-london-01")
            },
            PlanError::PreventDestroy {
                object: ObjectRef::new(ObjectKind::SdwanPeer, "edge-fabric.edge-london-01")
            },
        ]
    );
    assert!(errors[0].to_string().starts_with(
        "fleetnode/edge-london-01 is marked gitops.fleetgate.dev/prevent-destroy and would be deleted"
    ));
}

#[test]
fn templates_are_deleted_children_first() {
    let v1 = desired("examples/fleet.yaml");
    let plan = fleet::plan(&[], &live(&v1, Some(REPO)), &options(&[])).unwrap();
    assert_eq!(
        steps(&plan),
        [
            "0 - virtualip/edge-fabric.cdn-frontend",
            "1 - sdwanpeer/edge-fabric.edge-london-01",
            "1 - sdwanpeer/edge-fabric.edge-tokyo-01",
            "1 - sdwanpeer/edge-fabric.edge-tokyo-02",
            "2 - sdwannetwork/edge-fabric",
            "3 - fleetnode/edge-london-01",
            "3 - fleetnode/edge-tokyo-01",
            "3 - fleetnode/edge-tokyo-02",
            "4 - fleettemplate/edge-cdn",
            "5 - fleettemplate/edge-base",
        ]
    );
}

#[test]
fn a_cycle_edited_into_the_cluster_does_not_hang_the_planner() {
    let cluster = vec![template("a", "b"), template("b", "a")];
    let plan = fleet::plan(&[], &cluster, &options(&[])).unwrap();
    assert_eq!(plan.actions.len(), 2);
}

#[test]
fn golden_text_rendering_of_v1_to_v2() {
    insta::assert_snapshot!(render_text(&v1_to_v2(&[]), Colour::Never));
}

#[test]
fn golden_json_rendering_of_v1_to_v2() {
    insta::assert_snapshot!(render_json(&v1_to_v2(&[])));
}

#[test]
fn colour_is_only_added_when_asked() {
    let plan = v1_to_v2(&[]);
    assert!(!render_text(&plan, Colour::Never).contains('\u{1b}'));
    let coloured = render_text(&plan, Colour::Always);
    assert!(coloured.contains("\u{1b}[32m+ edge-paris-01"), "{coloured}");
    assert!(coloured.contains("\u{1b}[31m- edge-london-01"));
}
