//! Progressive rollout, decided at plan time: which wave each action of a plan goes out
//! in, and what the plan puts at risk per region. Pure: the controller, the CLI and the
//! PR preview stage a plan with the repository's `spec.rollout` and get the same waves,
//! which the plan id then covers.
//!
//! The rules, in order:
//! 1. Machines are grouped by a node field or label (`region` unless the policy says
//!    otherwise). A peer goes with its host. Groups become waves one by one, in
//!    explicit partitions, or as cumulative percentages of the machines the plan
//!    touches.
//! 2. Inside a wave, at most `maxUnavailable` machines are disrupted (updated or
//!    deleted) at once; more are split into further waves. Creating a machine disrupts
//!    nothing.
//! 3. Never the primary and every failover holder of a virtual IP in one wave: a
//!    machine that would complete such a set waits for the next wave. A virtual IP with
//!    a single holder cannot be kept up this way; the plan says so.
//! 4. An action never goes out before what it depends on: its wave is at least theirs.
//!    Templates and networks go with the first machines that need them; deletions of
//!    what machines name go after those machines are gone.
//!
//! The blast radius is counted per region (machines disrupted against machines there)
//! and held against the policy's budget; the breach is a fact of the plan that
//! governance rules read, rather than a refusal here.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use crate::model::Word;
use crate::object::{FleetObject, ObjectKind};
use crate::plan::{LiveObject, Operation, Plan, plan_id};
pub use crate::waves::{RegionImpact, Rollout, Wave};

pub mod gate;
mod grouping;
pub mod pause;
#[cfg(test)]
mod tests;

use grouping::{Holders, action_machines, action_waves, chunk, machines, partition, region_impact};

/// More waves than this is refused: the plan would be unreadable and the rollout
/// endless. A policy that asks for it (`maxUnavailable: 1` over thousands of updates)
/// says so at plan time.
pub const MAX_WAVES: usize = 200;
/// Longest list of partitions or steps accepted.
pub const MAX_PARTITIONS: usize = 100;

/// What splits machines into groups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WaveKey {
    /// The node's `region` (the default).
    #[default]
    Region,
    /// The node's `instanceType`.
    InstanceType,
    /// The node's `lifecycleClass`.
    LifecycleClass,
    /// The template the node was declared with.
    Template,
    /// A key of the node's metadata labels; nodes without it form the group `""`.
    Label(String),
}

impl FromStr for WaveKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "region" => WaveKey::Region,
            "instanceType" => WaveKey::InstanceType,
            "lifecycleClass" => WaveKey::LifecycleClass,
            "template" => WaveKey::Template,
            _ => match s.strip_prefix("label:") {
                Some(key) if !key.is_empty() && key.len() <= 253 => WaveKey::Label(key.into()),
                _ => {
                    return Err(format!(
                        "`{s}` is not a node field or label: expected region, instanceType, lifecycleClass, template or label:<key>"
                    ));
                }
            },
        })
    }
}

impl WaveKey {
    /// The node's value of this key (`""` for a label it does not carry).
    pub fn value_of(&self, n: &crate::object::FleetNodeSpec) -> String {
        match self {
            WaveKey::Region => n.region.clone(),
            WaveKey::InstanceType => n.instance_type.clone(),
            WaveKey::LifecycleClass => n.lifecycle_class.word().to_owned(),
            WaveKey::Template => n.template.clone(),
            WaveKey::Label(k) => n.metadata.get(k).cloned().unwrap_or_default(),
        }
    }
}

impl fmt::Display for WaveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaveKey::Region => f.write_str("region"),
            WaveKey::InstanceType => f.write_str("instanceType"),
            WaveKey::LifecycleClass => f.write_str("lifecycleClass"),
            WaveKey::Template => f.write_str("template"),
            WaveKey::Label(key) => write!(f, "label:{key}"),
        }
    }
}

/// A number of machines, or a percentage of those there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(u32),
    Percent(u32),
}

impl Amount {
    /// How many machines of `of` this is, rounded down but never below one: a budget
    /// that allows nothing would stop every plan.
    pub fn of(self, of: u32) -> u32 {
        match self {
            Amount::Count(n) => n.max(1),
            Amount::Percent(p) => ((u64::from(of) * u64::from(p)) / 100).max(1) as u32,
        }
    }

    /// Reads `3` or `25%` (a count of at least 1, a percentage from 1 to 100).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let amount = match s.strip_suffix('%') {
            Some(p) => Amount::Percent(
                p.parse()
                    .map_err(|_| format!("`{s}` is not a percentage"))?,
            ),
            None => Amount::Count(
                s.parse()
                    .map_err(|_| format!("`{s}` is not a count or a percentage such as 25%"))?,
            ),
        };
        match amount {
            Amount::Percent(1..=100) | Amount::Count(1..) => Ok(amount),
            Amount::Percent(_) => Err(format!("`{s}`: a percentage must be from 1% to 100%")),
            Amount::Count(_) => Err(format!("`{s}`: a count must be at least 1")),
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// How groups become waves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Partitioning {
    /// One wave per group, groups in name order.
    #[default]
    PerGroup,
    /// The given groups together, in the given order; groups no partition names go
    /// last, together.
    Explicit(Vec<Vec<String>>),
    /// Cumulative percentages of the machines the plan touches, ordered by group then
    /// name: `[10, 50, 100]` is three waves. The last step is 100.
    Steps(Vec<u32>),
}

/// The rollout policy of a repository (its `spec.rollout`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub key: WaveKey,
    pub partitioning: Partitioning,
    /// Machines disrupted at once, per wave: of the machines of the wave's groups.
    pub max_unavailable: Amount,
    /// Machines one plan may disrupt per region: of the machines there.
    pub region_budget: Option<Amount>,
    /// Whether a person chose the waves (spec.rollout sets waveBy, partitions, steps or
    /// maxUnavailable). A default that would make too many waves falls back to
    /// [`FALLBACK_STEPS`] rather than refusing a plan nobody asked to stage so.
    pub chosen: bool,
}

impl Default for Policy {
    /// Waves by region, a quarter of a region's machines disrupted at a time.
    fn default() -> Self {
        Self {
            key: WaveKey::Region,
            partitioning: Partitioning::PerGroup,
            max_unavailable: Amount::Percent(25),
            region_budget: None,
            chosen: false,
        }
    }
}

impl Policy {
    /// Checks partitions and steps: each group in one partition only; steps rising to
    /// 100. Errors name the field.
    pub fn check(&self) -> Result<(), String> {
        match &self.partitioning {
            Partitioning::PerGroup => Ok(()),
            Partitioning::Explicit(partitions) => {
                if partitions.len() > MAX_PARTITIONS {
                    return Err(format!(
                        "partitions: {} partitions, more than {MAX_PARTITIONS}",
                        partitions.len()
                    ));
                }
                let mut seen = BTreeSet::new();
                for (i, p) in partitions.iter().enumerate() {
                    if p.is_empty() {
                        return Err(format!("partitions[{i}] is empty"));
                    }
                    for group in p {
                        if !seen.insert(group) {
                            return Err(format!(
                                "partitions[{i}]: `{group}` is already in an earlier partition"
                            ));
                        }
                    }
                }
                Ok(())
            }
            Partitioning::Steps(steps) => {
                if steps.len() > MAX_PARTITIONS {
                    return Err(format!(
                        "steps: {} steps, more than {MAX_PARTITIONS}",
                        steps.len()
                    ));
                }
                if steps.last() != Some(&100) {
                    return Err("steps: the last step must be 100".into());
                }
                if let Some(i) = steps.windows(2).position(|w| w[0] >= w[1]) {
                    return Err(format!(
                        "steps[{}]: {} does not rise above {}",
                        i + 1,
                        steps[i + 1],
                        steps[i]
                    ));
                }
                if steps[0] == 0 {
                    return Err("steps[0]: a step of 0% rolls out nothing".into());
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    #[error(
        "the plan would roll out in {waves} waves, more than {MAX_WAVES}: raise spec.rollout.maxUnavailable or use fewer partitions"
    )]
    TooManyWaves { waves: usize },
}

impl RolloutError {
    /// A stable short label for metrics and Events.
    pub fn label(&self) -> &'static str {
        match self {
            RolloutError::TooManyWaves { .. } => "TooManyWaves",
        }
    }
}

/// The policy as one line, for the plan.
fn describe(policy: &Policy) -> String {
    let mut out = format!("waves by {}", policy.key);
    match &policy.partitioning {
        Partitioning::PerGroup => {}
        Partitioning::Explicit(p) => out.push_str(&format!(", {} partitions", p.len())),
        Partitioning::Steps(s) => {
            let steps: Vec<String> = s.iter().map(|s| format!("{s}%")).collect();
            out.push_str(&format!(", steps {}", steps.join(" ")));
        }
    }
    out.push_str(&format!(", maxUnavailable {}", policy.max_unavailable));
    if let Some(b) = policy.region_budget {
        out.push_str(&format!(", at most {b} of a region per plan"));
    }
    out
}

/// Steps a default policy falls back to when a wave per group would make too many waves
/// (hundreds of small sites): cumulative shares of the machines touched.
pub const FALLBACK_STEPS: [u32; 4] = [10, 25, 50, 100];
/// Longest name or value a plan's rollout shows (longer ones are cut, marked `…`).
pub const MAX_SHOWN: usize = 63;
/// At most this many groups are named per wave.
pub const MAX_GROUPS_SHOWN: usize = 10;
/// At most this many holders are named per virtual IP finding.
const MAX_HOLDERS_SHOWN: usize = 5;

/// `text` as a plan shows it: at most [`MAX_SHOWN`] bytes, cut at a character.
pub fn shown(text: &str) -> String {
    if text.len() <= MAX_SHOWN {
        return text.to_owned();
    }
    let mut end = MAX_SHOWN - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Stages `plan` by `policy` for `repository`: sets each action's wave, records the
/// rollout, and recomputes the plan id, which covers the waves. Only the repository's
/// own machines count in percentages and budgets, so another repository's fleet never
/// changes this one's waves.
pub fn stage(
    plan: &mut Plan,
    desired: &[FleetObject],
    live: &[LiveObject],
    repository: &str,
    policy: &Policy,
) -> Result<(), RolloutError> {
    match stage_by(plan, desired, live, repository, policy) {
        Err(RolloutError::TooManyWaves { waves }) if !policy.chosen => {
            let fallback = Policy {
                partitioning: Partitioning::Steps(FALLBACK_STEPS.to_vec()),
                chosen: true,
                ..policy.clone()
            };
            stage_by(plan, desired, live, repository, &fallback)?;
            if let Some(rollout) = plan.rollout.as_mut() {
                rollout.findings.insert(
                    0,
                    format!(
                        "a wave per {} would make {waves} waves, more than {MAX_WAVES}: steps of the machines touched instead",
                        policy.key
                    ),
                );
            }
            Ok(())
        }
        other => other,
    }
}

fn stage_by(
    plan: &mut Plan,
    desired: &[FleetObject],
    live: &[LiveObject],
    repository: &str,
    policy: &Policy,
) -> Result<(), RolloutError> {
    let ours: Vec<&LiveObject> = live
        .iter()
        .filter(|l| l.owner.as_deref() == Some(repository))
        .collect();
    let machines = machines(&policy.key, desired, live);
    let machine_of = action_machines(plan, &machines, live);
    // A machine is disrupted when its node is updated or deleted, or one of its peers is.
    let disrupted: BTreeSet<&str> = plan
        .actions
        .iter()
        .zip(&machine_of)
        .filter(|(a, _)| a.operation != Operation::Create)
        .filter_map(|(_, m)| *m)
        .collect();
    let touched: BTreeSet<&str> = machine_of.iter().flatten().copied().collect();
    let bases = partition(policy, &touched, &machines);

    let mut group_size: HashMap<&str, u32> = HashMap::new();
    for l in ours.iter().filter(|l| l.kind() == ObjectKind::FleetNode) {
        if let Some(m) = machines.get(l.name.as_str()) {
            *group_size.entry(m.group.as_str()).or_default() += 1;
        }
    }
    let holders = Holders::of(plan, desired, live, &disrupted);
    let cap_of = |base: &grouping::Base| {
        let size = base
            .groups
            .iter()
            .map(|g| group_size.get(g.as_str()).copied().unwrap_or(0))
            .sum();
        policy.max_unavailable.of(size) as usize
    };
    let (chunks, chunk_of) = chunk(&bases, &disrupted, &holders, cap_of, MAX_WAVES);
    if chunks.len() > MAX_WAVES {
        return Err(RolloutError::TooManyWaves {
            waves: chunks.len(),
        });
    }
    let wave = action_waves(plan, &machine_of, &chunk_of);

    // Waves left empty (every action of a chunk moved later) are dropped, the rest
    // numbered from 0.
    let used: BTreeSet<u32> = wave.iter().copied().collect();
    let renumber: HashMap<u32, u32> = used
        .iter()
        .enumerate()
        .map(|(n, w)| (*w, n as u32))
        .collect();
    let mut waves: Vec<Wave> = used
        .iter()
        .map(|w| match chunks.get(*w as usize) {
            Some(c) => {
                let base = &bases[c.base];
                let parts = chunks.iter().filter(|x| x.base == c.base).count();
                let name = shown(&base.name);
                Wave {
                    name: if parts > 1 {
                        format!("{name} ({}/{parts})", c.part + 1)
                    } else {
                        name
                    },
                    groups: base
                        .groups
                        .iter()
                        .take(MAX_GROUPS_SHOWN)
                        .map(|g| shown(g))
                        .collect(),
                    actions: 0,
                    disrupted: 0,
                }
            }
            None => Wave {
                name: "(no machines)".into(),
                groups: Vec::new(),
                actions: 0,
                disrupted: 0,
            },
        })
        .collect();
    let mut disrupted_in: BTreeSet<(u32, &str)> = BTreeSet::new();
    for ((a, w), m) in plan.actions.iter_mut().zip(&wave).zip(&machine_of) {
        a.wave = renumber[w];
        waves[a.wave as usize].actions += 1;
        if let Some(m) = m
            && disrupted.contains(m)
        {
            disrupted_in.insert((a.wave, m));
        }
    }
    for (w, _) in disrupted_in {
        waves[w as usize].disrupted += 1;
    }

    let mut findings = holders.findings;
    for (vip, set) in &holders.sets {
        let apart: BTreeSet<Option<&usize>> = set.iter().map(|h| chunk_of.get(h)).collect();
        if apart.len() > 1 {
            let mut named: Vec<String> = set
                .iter()
                .take(MAX_HOLDERS_SHOWN)
                .map(|h| shown(h))
                .collect();
            if set.len() > MAX_HOLDERS_SHOWN {
                named.push(format!("and {} more", set.len() - MAX_HOLDERS_SHOWN));
            }
            findings.push(format!(
                "virtualip/{}: its holders ({}) change in different waves, so one holds the address at all times",
                shown(vip),
                named.join(", ")
            ));
        }
    }
    findings.sort();
    let regions = region_impact(&machine_of, plan, &machines, &ours, policy.region_budget);
    plan.rollout = Some(Rollout {
        policy: describe(policy),
        budget_exceeded: regions.iter().any(|r| r.exceeded),
        waves,
        regions,
        findings,
    });
    plan.plan_id = plan_id(&plan.revision, &plan.actions);
    Ok(())
}
