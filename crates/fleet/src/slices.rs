//! A plan split by owner, decided at plan time. Pure.
//!
//! A GovernancePolicy may split plans by a node field or label (the keys rollout waves
//! use): each slice needs its own quorum from its owners. Slices are named by the values
//! themselves (which an owner holds is decided when approvals are counted). Which slices
//! an action is in:
//! - a node's action: its value; a node that moves from one value to another (a region
//!   change) is in both, so that neither owner is passed over;
//! - a peer's: its host's (old host and new); a virtual IP's: its holders' (old and
//!   new); a network's: every peer's host's;
//! - a template's: [`NO_OWNER`] (the nodes built from it change by their own actions).
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
/// At most this many slices (values) in one plan.
pub const MAX_SLICES: usize = 256;
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

/// Splits `plan` by `key`. Slices are named by the values themselves: which of them an
/// owner holds is decided when approvals are counted, by the policy as it is then, so an
/// owner added later is never passed over.
pub fn split(
    plan: &Plan,
    desired: &[FleetObject],
    live: &[LiveObject],
    key: &WaveKey,
) -> Result<Split, SliceError> {
    let all = || {
        desired
            .iter()
            .map(|d| (d.name.as_str(), &*d.spec))
            .chain(live.iter().map(|l| (l.name.as_str(), &*l.spec)))
    };
    // Each node's values, desired and live: a machine the plan moves has both.
    let mut node_values: HashMap<&str, BTreeSet<String>> = HashMap::new();
    // Each network's hosts, desired and live.
    let mut network_hosts: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (name, spec) in all() {
        match spec {
            Spec::FleetNode(n) => {
                node_values.entry(name).or_default().insert(key.value_of(n));
            }
            Spec::SdwanPeer(p) => {
                network_hosts
                    .entry(p.network.as_str())
                    .or_default()
                    .insert(p.host.as_str());
            }
            _ => {}
        }
    }
    let of_hosts = |hosts: &mut dyn Iterator<Item = &str>| -> BTreeSet<String> {
        hosts
            .flat_map(|h| node_values.get(h).into_iter().flatten().cloned())
            .collect()
    };
    let old_specs: HashMap<(ObjectKind, &str), &Spec> = live
        .iter()
        .map(|l| ((l.kind(), l.name.as_str()), &*l.spec))
        .collect();
    let own: Vec<BTreeSet<String>> = plan
        .actions
        .iter()
        .map(|a| {
            let old = old_specs.get(&(a.kind, a.name.as_str())).copied();
            let specs = [a.spec.as_deref(), old];
            let mut slices: BTreeSet<String> = match a.kind {
                ObjectKind::FleetNode => specs
                    .into_iter()
                    .flatten()
                    .filter_map(|s| match s {
                        Spec::FleetNode(n) => Some(key.value_of(n)),
                        _ => None,
                    })
                    .collect(),
                // A peer changes its host; a virtual IP its holders; a network every
                // peer in it.
                ObjectKind::SdwanPeer => {
                    of_hosts(&mut specs.into_iter().flatten().filter_map(|s| match s {
                        Spec::SdwanPeer(p) => Some(p.host.as_str()),
                        _ => None,
                    }))
                }
                ObjectKind::VirtualIp => of_hosts(&mut specs.into_iter().flatten().flat_map(|s| {
                    match s {
                        Spec::VirtualIp(v) => std::iter::once(v.primary_holder.as_str())
                            .chain(v.failover_holders.iter().map(String::as_str))
                            .collect::<Vec<_>>(),
                        _ => Vec::new(),
                    }
                })),
                ObjectKind::SdwanNetwork => of_hosts(
                    &mut network_hosts
                        .get(a.name.as_str())
                        .into_iter()
                        .flatten()
                        .copied(),
                ),
                // Nodes built from a template are changed by their own actions.
                ObjectKind::FleetTemplate => BTreeSet::new(),
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
    // As the run's status holds it in JSON: each name quoted, each entry with its keys.
    let bytes: usize = split
        .needs
        .iter()
        .map(|n| {
            n.slices.iter().map(|s| s.len() + 3).sum::<usize>() + ranges(&n.actions).len() + 48
        })
        .sum::<usize>()
        + split.slices.keys().map(|s| s.len() + 32).sum::<usize>();
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

    fn object(kind: ObjectKind, name: &str, spec: serde_json::Value) -> FleetObject {
        FleetObject::new(name, Spec::from_json(kind, spec).unwrap())
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_value_is_a_slice_and_templates_are_no_ones() {
        let (eu, us) = (node("a", "eu"), node("b", "us"));
        let template = object(
            ObjectKind::FleetTemplate,
            "t",
            serde_json::json!({"nodePlatform": "debian-12", "architecture": "amd64"}),
        );
        let p = plan(vec![
            action(&template, Operation::Update, 0, &[]),
            action(&eu, Operation::Update, 1, &[]),
            action(&us, Operation::Create, 1, &[]),
        ]);
        let desired = vec![template.clone(), eu.clone(), us.clone()];
        let live = [live(&template), live(&eu)];
        let split = split(&p, &desired, &live, &WaveKey::Region).unwrap();
        assert_eq!(split.slices.len(), 3);
        assert_eq!(split.slices[NO_OWNER], 1);
        let of = |i: u32| split.needs.iter().find(|n| n.actions.contains(&i)).unwrap();
        assert_eq!(of(0).slices, set(&[NO_OWNER]));
        assert_eq!(of(1).slices, set(&["eu"]));
        assert_eq!(of(2).slices, set(&["us"]));
    }

    #[test]
    fn a_virtual_ip_and_a_network_are_in_the_slices_of_the_machines_they_move() {
        let (eu, us, ap) = (node("a", "eu"), node("b", "us"), node("c", "ap"));
        let peer = |host: &str| {
            object(
                ObjectKind::SdwanPeer,
                &format!("net.{host}"),
                serde_json::json!({"network": "net", "host": host}),
            )
        };
        let vip = |primary: &str, failover: &[&str]| {
            object(
                ObjectKind::VirtualIp,
                "net.vip",
                serde_json::json!({"network": "net", "primaryHolder": primary, "failoverHolders": failover}),
            )
        };
        let network = object(
            ObjectKind::SdwanNetwork,
            "net",
            serde_json::json!({"routingMode": "ebgp"}),
        );
        let (was, now) = (vip("a", &[]), vip("b", &["a"]));
        let p = plan(vec![
            action(&now, Operation::Update, 0, &[]),
            action(&network, Operation::Update, 0, &[]),
        ]);
        let desired = vec![
            eu.clone(),
            us.clone(),
            ap.clone(),
            peer("a"),
            peer("b"),
            now.clone(),
            network.clone(),
        ];
        let live = [
            live(&eu),
            live(&us),
            live(&ap),
            live(&peer("a")),
            live(&peer("b")),
            live(&was),
            live(&network),
        ];
        let split = split(&p, &desired, &live, &WaveKey::Region).unwrap();
        assert_eq!(split.needs.len(), 1, "{:?}", split.needs);
        // The address moves between a (eu) and b (us); the network's peers are a and b.
        assert_eq!(split.needs[0].slices, set(&["eu", "us"]));
    }

    #[test]
    fn a_node_that_moves_is_in_both_slices() {
        let (was, now) = (node("a", "eu"), node("a", "us"));
        let p = plan(vec![action(&now, Operation::Update, 0, &[])]);
        let split = split(&p, &[now], &[live(&was)], &WaveKey::Region).unwrap();
        assert_eq!(split.needs[0].slices, set(&["eu", "us"]));
    }

    #[test]
    fn a_deleted_node_is_in_the_slice_it_was_in() {
        let was = node("a", "us");
        let p = plan(vec![action(&was, Operation::Delete, 0, &[])]);
        let split = split(&p, &[], &[live(&was)], &WaveKey::Region).unwrap();
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
        let split = split(&p, &[base, eu], &[], &WaveKey::Region).unwrap();
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
        let err = split(&p, &nodes, &[], &WaveKey::Region).unwrap_err();
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
