//! A plan split by owner, decided at plan time. Pure.
//!
//! A GovernancePolicy may split plans by a node field or label (the keys rollout waves
//! use): each slice needs its own quorum from its owners. Which slice an action is in:
//! - a node's action is in the slice of its value; a node that moves from one value to
//!   another (a region change) is in both, so that neither owner is passed over;
//! - a peer's action is in its host's slices (old host and new);
//! - actions on no machine (templates, networks, virtual IPs), and machines whose value
//!   no owner lists, are in [`NO_OWNER`], which needs the policy's general quorum.
//!
//! An action **needs** its own slices and everything the actions it depends on need: it
//! may be written only once all of them are approved, so whatever sits behind a
//! prerequisite in an unapproved slice waits for it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::object::{FleetObject, ObjectKind, Spec};
use crate::plan::{LiveObject, Plan};
use crate::rollout::WaveKey;

/// The slice of actions no owner holds.
pub const NO_OWNER: &str = "(no owner)";
/// At most this many slices in one plan.
pub const MAX_SLICES: usize = 64;
/// At most this many groups of actions (by the slices they need and their wave).
pub const MAX_NEEDS: usize = 1024;
/// At most this many bytes of slice names and action ranges are recorded for a plan
/// (the run's status holds them).
pub const MAX_RECORD_BYTES: usize = 256 * 1024;
/// The stable label of a plan split into too many slices.
pub const TOO_MANY: &str = "TooManySlices";

/// How a plan splits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    /// Each slice and how many actions are in it, by name.
    pub slices: BTreeMap<String, u32>,
    /// Actions grouped by the slices they need and their rollout wave (each action in
    /// exactly one group).
    pub needs: Vec<Needs>,
}

/// Actions that need the same slices approved before they are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    pub slices: BTreeSet<String>,
    /// The rollout wave they go out in.
    pub wave: u32,
    /// Positions in the plan, ascending.
    pub actions: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliceError {
    #[error(
        "the plan splits into {0} slices, more than {MAX_SLICES}: split it by a coarser key or push it in smaller changes"
    )]
    TooManySlices(usize),
    #[error(
        "the plan's actions fall into {0} groups by the slices they need and their wave, more than {MAX_NEEDS}: push it in smaller changes"
    )]
    TooManyNeeds(usize),
    #[error(
        "how the plan splits takes {0} bytes to record, more than {MAX_RECORD_BYTES}: split by a coarser key or push it in smaller changes"
    )]
    TooLarge(usize),
}

impl SliceError {
    pub fn label(&self) -> &'static str {
        TOO_MANY
    }
}

/// Splits `plan` by `key`; `owned` says whether an owner lists a value.
pub fn split(
    plan: &Plan,
    desired: &[FleetObject],
    live: &[LiveObject],
    key: &WaveKey,
    owned: impl Fn(&str) -> bool,
) -> Result<Split, SliceError> {
    let node_values =
        |objects: &mut dyn Iterator<Item = (&str, &Spec)>| -> HashMap<String, String> {
            objects
                .filter_map(|(name, spec)| match spec {
                    Spec::FleetNode(n) => Some((name.to_owned(), key.value_of(n))),
                    _ => None,
                })
                .collect()
        };
    let new_values = node_values(&mut desired.iter().map(|d| (d.name.as_str(), &*d.spec)));
    let old_values = node_values(&mut live.iter().map(|l| (l.name.as_str(), &*l.spec)));
    let old_specs: HashMap<(ObjectKind, &str), &Spec> = live
        .iter()
        .map(|l| ((l.kind(), l.name.as_str()), &*l.spec))
        .collect();
    let slice_of = |value: &str| match owned(value) {
        true => value.to_owned(),
        false => NO_OWNER.to_owned(),
    };
    let values_of_node = |name: &str| -> Vec<String> {
        [new_values.get(name), old_values.get(name)]
            .into_iter()
            .flatten()
            .map(|v| slice_of(v))
            .collect()
    };
    let own: Vec<BTreeSet<String>> = plan
        .actions
        .iter()
        .map(|a| {
            let old = old_specs.get(&(a.kind, a.name.as_str())).copied();
            let mut slices: BTreeSet<String> = match a.kind {
                ObjectKind::FleetNode => {
                    let new = a.spec.as_deref().and_then(|s| match s {
                        Spec::FleetNode(n) => Some(key.value_of(n)),
                        _ => None,
                    });
                    let was = match old {
                        Some(Spec::FleetNode(n)) => Some(key.value_of(n)),
                        _ => None,
                    };
                    new.into_iter().chain(was).map(|v| slice_of(&v)).collect()
                }
                ObjectKind::SdwanPeer => [a.spec.as_deref(), old]
                    .into_iter()
                    .flatten()
                    .filter_map(|s| match s {
                        Spec::SdwanPeer(p) => Some(p.host.as_str()),
                        _ => None,
                    })
                    .flat_map(values_of_node)
                    .collect(),
                _ => BTreeSet::new(),
            };
            if slices.is_empty() {
                slices.insert(NO_OWNER.to_owned());
            }
            slices
        })
        .collect();
    let needs = closure(plan, own.clone());
    let mut split = Split::default();
    for slices in &own {
        for s in slices {
            *split.slices.entry(s.clone()).or_default() += 1;
        }
    }
    if split.slices.len() > MAX_SLICES {
        return Err(SliceError::TooManySlices(split.slices.len()));
    }
    let mut grouped: BTreeMap<(BTreeSet<String>, u32), Vec<u32>> = BTreeMap::new();
    for (i, n) in needs.into_iter().enumerate() {
        let wave = plan.actions[i].wave;
        grouped.entry((n, wave)).or_default().push(i as u32);
    }
    if grouped.len() > MAX_NEEDS {
        return Err(SliceError::TooManyNeeds(grouped.len()));
    }
    split.needs = grouped
        .into_iter()
        .map(|((slices, wave), actions)| Needs {
            slices,
            wave,
            actions,
        })
        .collect();
    let bytes: usize = split
        .needs
        .iter()
        .map(|n| n.slices.iter().map(String::len).sum::<usize>() + ranges(&n.actions).len())
        .sum::<usize>()
        + split.slices.keys().map(String::len).sum::<usize>();
    if bytes > MAX_RECORD_BYTES {
        return Err(SliceError::TooLarge(bytes));
    }
    Ok(split)
}

/// Each action's own slices with those of everything it depends on, transitively.
/// Actions depend only on actions of lower levels, so one pass in level order suffices.
fn closure(plan: &Plan, mut needs: Vec<BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let index = plan.action_index();
    let mut order: Vec<usize> = (0..plan.actions.len()).collect();
    order.sort_by_key(|i| plan.actions[*i].level);
    for i in order {
        let inherited: BTreeSet<String> = plan.actions[i]
            .depends_on
            .iter()
            .filter_map(|d| index.get(&(d.kind, d.name.as_str())))
            .filter(|j| **j != i)
            .flat_map(|j| needs[*j].iter().cloned())
            .collect();
        needs[i].extend(inherited);
    }
    needs
}

/// Positions as ranges: `0-3,7,9-12`.
pub fn ranges(positions: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = positions.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(match start == end {
            true => start.to_string(),
            false => format!("{start}-{end}"),
        });
    }
    out.join(",")
}

/// Reads [`ranges`]; None when malformed or when a position is `max` or more.
pub fn parse_ranges(text: &str, max: usize) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    if text.is_empty() {
        return Some(out);
    }
    for part in text.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        if a > b || b as usize >= max {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::ObjectRef;
    use crate::plan::{Operation, PlannedAction, Summary};
    use std::sync::Arc;

    fn node(name: &str, region: &str) -> FleetObject {
        let spec: Spec = Spec::from_json(
            ObjectKind::FleetNode,
            serde_json::json!({"template": "t", "nodePlatform": "debian-12", "architecture": "amd64",
                "region": region, "instanceType": "m5.large", "lifecycleClass": "persistent"}),
        )
        .unwrap();
        FleetObject::new(name, spec)
    }

    fn action(o: &FleetObject, op: Operation, level: u32, deps: &[ObjectRef]) -> PlannedAction {
        PlannedAction {
            kind: o.spec.kind(),
            name: o.name.clone(),
            operation: op,
            level,
            depends_on: deps.to_vec(),
            spec: (op != Operation::Delete).then(|| Arc::clone(&o.spec)),
            observed: None,
            wave: 0,
        }
    }

    fn plan(actions: Vec<PlannedAction>) -> Plan {
        Plan {
            plan_id: "p".into(),
            revision: "r".into(),
            summary: Summary::default(),
            diff: Vec::new(),
            conflicts: Vec::new(),
            excluded: Vec::new(),
            actions,
            rollout: None,
        }
    }

    fn live(o: &FleetObject) -> LiveObject {
        LiveObject::owned_by(o, "repo")
    }

    fn owned(v: &str) -> bool {
        ["eu", "us"].contains(&v)
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_region_is_a_slice_and_what_no_owner_holds_is_shared() {
        let (eu, us, ap) = (node("a", "eu"), node("b", "us"), node("c", "ap"));
        let p = plan(vec![
            action(&eu, Operation::Update, 0, &[]),
            action(&us, Operation::Create, 0, &[]),
            action(&ap, Operation::Update, 0, &[]),
        ]);
        let desired = vec![eu.clone(), us.clone(), ap.clone()];
        let split = split(
            &p,
            &desired,
            &[live(&eu), live(&ap)],
            &WaveKey::Region,
            owned,
        )
        .unwrap();
        assert_eq!(split.slices.len(), 3);
        assert_eq!(split.slices[NO_OWNER], 1);
        let of = |i: u32| split.needs.iter().find(|n| n.actions.contains(&i)).unwrap();
        assert_eq!(of(0).slices, set(&["eu"]));
        assert_eq!(of(1).slices, set(&["us"]));
        assert_eq!(of(2).slices, set(&[NO_OWNER]));
    }

    #[test]
    fn a_node_that_moves_is_in_both_slices() {
        let (was, now) = (node("a", "eu"), node("a", "us"));
        let p = plan(vec![action(&now, Operation::Update, 0, &[])]);
        let split = split(&p, &[now], &[live(&was)], &WaveKey::Region, owned).unwrap();
        assert_eq!(split.needs[0].slices, set(&["eu", "us"]));
    }

    #[test]
    fn a_deleted_node_is_in_the_slice_it_was_in() {
        let was = node("a", "us");
        let p = plan(vec![action(&was, Operation::Delete, 0, &[])]);
        let split = split(&p, &[], &[live(&was)], &WaveKey::Region, owned).unwrap();
        assert_eq!(split.needs[0].slices, set(&["us"]));
    }

    #[test]
    fn an_action_needs_what_its_prerequisites_need() {
        let (base, eu) = (node("base", "us"), node("a", "eu"));
        let dep = ObjectRef::new(ObjectKind::FleetNode, "base".to_owned());
        let p = plan(vec![
            action(&base, Operation::Create, 0, &[]),
            action(&eu, Operation::Create, 1, &[dep]),
        ]);
        let split = split(&p, &[base, eu], &[], &WaveKey::Region, owned).unwrap();
        let of = |i: u32| split.needs.iter().find(|n| n.actions.contains(&i)).unwrap();
        assert_eq!(of(0).slices, set(&["us"]));
        assert_eq!(
            of(1).slices,
            set(&["eu", "us"]),
            "eu waits for its us prerequisite"
        );
    }

    #[test]
    fn too_many_slices_are_refused() {
        let nodes: Vec<FleetObject> = (0..=MAX_SLICES)
            .map(|i| node(&format!("n{i}"), &format!("r{i}")))
            .collect();
        let p = plan(
            nodes
                .iter()
                .map(|n| action(n, Operation::Create, 0, &[]))
                .collect(),
        );
        let err = split(&p, &nodes, &[], &WaveKey::Region, |_| true).unwrap_err();
        assert_eq!(err, SliceError::TooManySlices(MAX_SLICES + 1));
    }

    #[test]
    fn ranges_round_trip_and_refuse_what_is_out_of_the_plan() {
        let positions = vec![0, 1, 2, 3, 7, 9, 10];
        assert_eq!(ranges(&positions), "0-3,7,9-10");
        assert_eq!(parse_ranges("0-3,7,9-10", 11), Some(positions));
        assert_eq!(parse_ranges("0-3,7,9-10", 10), None);
        assert_eq!(parse_ranges("3-1", 10), None);
        assert_eq!(parse_ranges("x", 10), None);
        assert_eq!(parse_ranges("", 10), Some(vec![]));
    }
}
