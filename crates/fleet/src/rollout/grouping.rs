//! The steps of staging a plan: machines and their groups, partitions, the cut by
//! maxUnavailable and virtual IP holders, dependencies, blast radius.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Amount, Partitioning, Policy, RegionImpact, WaveKey};
use crate::object::{FleetObject, ObjectKind, Spec};
use crate::plan::{LiveObject, Operation, Plan};

/// One machine as the planner sees it.
pub(super) struct Machine<'a> {
    /// Its value of the policy's key.
    pub(super) group: String,
    pub(super) region: &'a str,
}

/// The machines of the desired state, and of the live one for those the plan deletes.
pub(super) fn machines<'a>(
    key: &WaveKey,
    desired: &'a [FleetObject],
    live: &'a [LiveObject],
) -> HashMap<&'a str, Machine<'a>> {
    let machine = |spec: &'a Spec| -> Option<Machine<'a>> {
        let Spec::FleetNode(n) = spec else {
            return None;
        };
        Some(Machine {
            group: key.value_of(n),
            region: &n.region,
        })
    };
    let live = live.iter().map(|l| (l.name.as_str(), l.spec.as_ref()));
    // Desired last: where a machine that stays goes is decided by its new spec.
    let desired = desired.iter().map(|d| (d.name.as_str(), d.spec.as_ref()));
    live.chain(desired)
        .filter_map(|(name, spec)| Some((name, machine(spec)?)))
        .collect()
}

/// The machine each action moves: a node's own, a peer's host; none for the rest.
pub(super) fn action_machines<'a>(
    plan: &Plan,
    machines: &HashMap<&'a str, Machine<'a>>,
    live: &[LiveObject],
) -> Vec<Option<&'a str>> {
    let live_hosts: HashMap<&str, &str> = live
        .iter()
        .filter_map(|l| match l.spec.as_ref() {
            Spec::SdwanPeer(p) => Some((l.name.as_str(), p.host.as_str())),
            _ => None,
        })
        .collect();
    plan.actions
        .iter()
        .map(|a| {
            let machine = match (a.kind, a.spec.as_deref()) {
                (ObjectKind::FleetNode, _) => Some(a.name.as_str()),
                (ObjectKind::SdwanPeer, Some(Spec::SdwanPeer(p))) => Some(p.host.as_str()),
                (ObjectKind::SdwanPeer, _) => live_hosts.get(a.name.as_str()).copied(),
                _ => None,
            };
            machine.and_then(|m| machines.get_key_value(m).map(|(k, _)| *k))
        })
        .collect()
}

/// A partition of the touched machines: the waves before maxUnavailable cuts them.
pub(super) struct Base<'a> {
    pub(super) name: String,
    pub(super) groups: Vec<String>,
    /// In name order.
    pub(super) machines: Vec<&'a str>,
}

pub(super) fn partition<'a>(
    policy: &Policy,
    touched: &BTreeSet<&'a str>,
    machines: &HashMap<&'a str, Machine<'a>>,
) -> Vec<Base<'a>> {
    let group = |m: &&str| machines[*m].group.as_str();
    let mut by_group: BTreeMap<&str, Vec<&'a str>> = BTreeMap::new();
    for m in touched {
        by_group.entry(group(m)).or_default().push(m);
    }
    let key = &policy.key;
    let of_groups = |name: String, groups: Vec<&str>| Base {
        name,
        machines: groups
            .iter()
            .flat_map(|g| by_group.get(g).into_iter().flatten().copied())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        groups: groups.into_iter().map(str::to_owned).collect(),
    };
    match &policy.partitioning {
        Partitioning::PerGroup => by_group
            .keys()
            .map(|g| of_groups(format!("{key}={g}"), vec![g]))
            .collect(),
        Partitioning::Explicit(partitions) => {
            let named: BTreeSet<&str> = partitions.iter().flatten().map(String::as_str).collect();
            let rest: Vec<&str> = by_group
                .keys()
                .copied()
                .filter(|g| !named.contains(g))
                .collect();
            let mut bases: Vec<Base> = partitions
                .iter()
                .map(|p| {
                    let groups: Vec<&str> = p.iter().map(String::as_str).collect();
                    of_groups(format!("{key}={}", groups.join(",")), groups)
                })
                .collect();
            if !rest.is_empty() {
                bases.push(of_groups(format!("{key}: the rest"), rest));
            }
            bases.retain(|b| !b.machines.is_empty());
            bases
        }
        Partitioning::Steps(steps) => {
            let ordered: Vec<&'a str> = by_group.values().flatten().copied().collect();
            let total = ordered.len();
            let mut from = 0;
            let mut bases = Vec::new();
            for step in steps {
                let upto = (total * *step as usize).div_ceil(100).min(total);
                if upto > from {
                    let mut chosen: Vec<&'a str> = ordered[from..upto].to_vec();
                    let groups: BTreeSet<&str> = chosen.iter().map(group).collect();
                    chosen.sort_unstable();
                    bases.push(Base {
                        name: format!("{step}%"),
                        groups: groups.into_iter().map(str::to_owned).collect(),
                        machines: chosen,
                    });
                    from = upto;
                }
            }
            bases
        }
    }
}

/// Virtual IPs whose every holder the plan disrupts: their holder machines must not all
/// go out in one wave.
pub(super) struct Holders<'a> {
    /// Virtual IP name and its holder machines (two or more).
    pub(super) sets: Vec<(&'a str, Vec<&'a str>)>,
    pub(super) findings: Vec<String>,
    /// The sets each machine is in: a check costs what the machine holds, not the fleet.
    of_machine: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Holders<'a> {
    /// Virtual IPs that stay (neither created nor deleted by the plan), with the holders
    /// their desired spec names.
    pub(super) fn of(
        plan: &Plan,
        desired: &'a [FleetObject],
        live: &[LiveObject],
        disrupted: &BTreeSet<&str>,
    ) -> Self {
        let live_vips: BTreeSet<&str> = live
            .iter()
            .filter(|l| l.kind() == ObjectKind::VirtualIp)
            .map(|l| l.name.as_str())
            .collect();
        let deleted: BTreeSet<&str> = plan
            .actions
            .iter()
            .filter(|a| a.kind == ObjectKind::VirtualIp && a.operation == Operation::Delete)
            .map(|a| a.name.as_str())
            .collect();
        let mut sets = Vec::new();
        let mut findings = Vec::new();
        for d in desired {
            let Spec::VirtualIp(v) = d.spec.as_ref() else {
                continue;
            };
            if !live_vips.contains(d.name.as_str()) || deleted.contains(d.name.as_str()) {
                continue;
            }
            let mut holders: Vec<&str> = std::iter::once(&v.primary_holder)
                .chain(&v.failover_holders)
                .map(String::as_str)
                .collect();
            holders.sort_unstable();
            holders.dedup();
            if !holders.iter().all(|h| disrupted.contains(h)) {
                continue;
            }
            if let [only] = holders[..] {
                findings.push(format!(
                    "virtualip/{}: its only holder, {}, changes in this plan; the address is down while it does",
                    super::shown(d.name.as_str()),
                    super::shown(only)
                ));
            } else {
                sets.push((d.name.as_str(), holders));
            }
        }
        let mut of_machine: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, (_, set)) in sets.iter().enumerate() {
            for h in set {
                of_machine.entry(*h).or_default().push(i);
            }
        }
        Self {
            sets,
            findings,
            of_machine,
        }
    }

    /// Whether adding `machine` to a wave whose holders are counted in `held` would put
    /// every holder of a virtual IP in it.
    fn completes(&self, held: &HashMap<usize, usize>, machine: &str) -> bool {
        self.of_machine.get(machine).is_some_and(|sets| {
            sets.iter()
                .any(|s| held.get(s).copied().unwrap_or(0) + 1 == self.sets[*s].1.len())
        })
    }

    /// Counts `machine` as a holder in the wave of `held`.
    fn hold(&self, held: &mut HashMap<usize, usize>, machine: &str) {
        for s in self.of_machine.get(machine).into_iter().flatten() {
            *held.entry(*s).or_default() += 1;
        }
    }
}

/// A wave being formed: a part of a base wave.
pub(super) struct Chunk {
    pub(super) base: usize,
    pub(super) part: usize,
    /// Machines it disrupts.
    pub(super) disrupted: usize,
    /// Holders of each virtual IP set it disrupts.
    held: HashMap<usize, usize>,
}

impl Chunk {
    fn new(base: usize, part: usize) -> Self {
        Self {
            base,
            part,
            disrupted: 0,
            held: HashMap::new(),
        }
    }
}

/// Cuts each base wave into chunks of at most maxUnavailable disrupted machines, never
/// completing a virtual IP's holders (first fit: as few chunks as the rules allow).
/// Returns the chunks and the chunk of each touched machine; stops once there are more
/// than `max` chunks (the caller refuses that many).
pub(super) fn chunk<'a>(
    bases: &[Base<'a>],
    disrupted: &BTreeSet<&str>,
    holders: &Holders,
    cap_of: impl Fn(&Base) -> usize,
    max: usize,
) -> (Vec<Chunk>, HashMap<&'a str, usize>) {
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut chunk_of = HashMap::new();
    for (b, base) in bases.iter().enumerate() {
        let cap = cap_of(base).max(1);
        let first = chunks.len();
        chunks.push(Chunk::new(b, 0));
        for m in &base.machines {
            if !disrupted.contains(m) {
                // Creating a machine disrupts nothing: it goes with the first part.
                chunk_of.insert(*m, first);
                continue;
            }
            let fits = |c: &Chunk| c.disrupted < cap && !holders.completes(&c.held, m);
            let at = match (first..chunks.len()).find(|c| fits(&chunks[*c])) {
                Some(c) => c,
                None => {
                    chunks.push(Chunk::new(b, chunks.len() - first));
                    chunks.len() - 1
                }
            };
            chunks[at].disrupted += 1;
            holders.hold(&mut chunks[at].held, m);
            chunk_of.insert(*m, at);
            if chunks.len() > max {
                return (chunks, chunk_of);
            }
        }
    }
    (chunks, chunk_of)
}

/// Each action's wave: its machine's chunk, and never before what it depends on.
pub(super) fn action_waves(
    plan: &Plan,
    machine_of: &[Option<&str>],
    chunk_of: &HashMap<&str, usize>,
) -> Vec<u32> {
    let index = plan.action_index();
    let mut wave: Vec<u32> = machine_of
        .iter()
        .map(|m| m.and_then(|m| chunk_of.get(m)).map_or(0, |c| *c as u32))
        .collect();
    // Actions come in dependency order, so one pass settles it; the loop makes the rule
    // hold whatever the order (dependencies never form a cycle, so it ends).
    for _ in 0..=plan.actions.len() {
        let mut changed = false;
        for (i, a) in plan.actions.iter().enumerate() {
            let after = a
                .depends_on
                .iter()
                .filter_map(|d| index.get(&(d.kind, d.name.as_str())))
                .map(|j| wave[*j])
                .max()
                .unwrap_or(0);
            if after > wave[i] {
                wave[i] = after;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    wave
}

/// Machines disrupted per region against those there, held against `budget`.
pub(super) fn region_impact(
    machine_of: &[Option<&str>],
    plan: &Plan,
    machines: &HashMap<&str, Machine>,
    live: &[&LiveObject],
    budget: Option<Amount>,
) -> Vec<RegionImpact> {
    let mut nodes: BTreeMap<&str, u32> = BTreeMap::new();
    for l in live {
        if let Spec::FleetNode(n) = l.spec.as_ref() {
            *nodes.entry(n.region.as_str()).or_default() += 1;
        }
    }
    let mut disrupted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (a, m) in plan.actions.iter().zip(machine_of) {
        if let Some(m) = m
            && a.operation != Operation::Create
        {
            disrupted.entry(machines[m].region).or_default().insert(m);
        }
    }
    disrupted
        .into_iter()
        .map(|(region, set)| {
            let there = nodes.get(region).copied().unwrap_or(0);
            let allowed = budget.map(|b| b.of(there));
            let disrupted = set.len() as u32;
            RegionImpact {
                region: super::shown(region),
                nodes: there,
                disrupted,
                allowed,
                exceeded: allowed.is_some_and(|a| disrupted > a),
            }
        })
        .collect()
}
