//! Slice approvals: a GovernancePolicy splits each plan of the repositories it governs
//! by owner (`spec.slices`), and a run records how its plan split (`status.slices`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How plans split by owner, and who owns which slice.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SliceRule {
    /// What splits a plan: a field of the machine an action changes (`region`, `instanceType`, `lifecycleClass`, `template`) or `label:<key>` of its labels. A peer's machines are its host's, a virtual IP's its holders', a network's its peers'; a machine that moves from one value to another is in both slices. Templates form the slice `(no owner)`; it and values no owner lists take the policy's `approvals`, which the plan as a whole needs too (met by all its counted approvers together).
    #[schemars(length(min = 1, max = 260))]
    pub by: String,
    /// Who owns which values. A value may be listed by one owner only.
    #[schemars(length(min = 1, max = 64))]
    pub owners: Vec<SliceOwner>,
    /// An approved slice applies while the others wait for their owners. An action waits until the slices of everything it depends on are approved too, and the rollout's waves keep their order (a later wave waits until every action of the waves before it is written). Without it a plan applies once every slice is approved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apply_approved_slices: bool,
}

/// One owner: the values it owns and whose approvals count for them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SliceOwner {
    /// The values owned, exactly (such as `eu-west`).
    #[schemars(length(min = 1, max = 64))]
    pub values: Vec<String>,
    /// Users (as the API server authenticates them) whose approval counts for these slices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub users: Vec<String>,
    /// Groups whose members' approval counts for these slices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub groups: Vec<String>,
    /// Distinct owners who must approve each of these slices (a rule requiring more approvals raises it).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10))]
    pub required: u32,
}

fn one() -> u32 {
    1
}

/// How a run's plan split by owner, recorded when it was planned.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanSlices {
    /// The governing policy's `slices.by` when the plan was made.
    pub by: String,
    /// Each slice of the plan and how many actions are in it.
    #[schemars(length(max = 256))]
    pub slices: Vec<PlanSlice>,
    /// Distinct approvers a governance rule (RequireApprovals) asked of the plan: every slice needs at least as many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_approvals: Option<u32>,
    /// The plan's actions grouped by the slices they need approved before they are written (their own and those of everything they depend on) and by rollout wave.
    #[schemars(length(max = 1024))]
    pub needs: Vec<SliceNeeds>,
}

/// One slice of a plan.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanSlice {
    /// The value (`eu-west`), or `(no owner)`.
    pub name: String,
    /// Actions in it.
    pub actions: u32,
}

/// Actions that need the same slices approved.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SliceNeeds {
    /// The slices.
    pub slices: Vec<String>,
    /// The rollout wave the actions go out in.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wave: u32,
    /// The actions, by position in the plan, as ranges (`0-3,7`).
    pub actions: String,
}

impl PlanSlices {
    /// What the core's split records.
    pub fn of(by: &str, split: &crate::fleet::slices::Split) -> Self {
        use crate::fleet::slices::ranges;
        Self {
            by: by.to_owned(),
            rule_approvals: None,
            slices: split
                .slices
                .iter()
                .map(|(name, actions)| PlanSlice {
                    name: name.clone(),
                    actions: *actions,
                })
                .collect(),
            needs: split
                .needs
                .iter()
                .map(|n| SliceNeeds {
                    slices: n.slices.iter().cloned().collect(),
                    wave: n.wave,
                    actions: ranges(&n.actions),
                })
                .collect(),
        }
    }

    /// Which entry of `needs` each of `actions` actions is in, in plan order; None when
    /// the record does not cover exactly that many actions once each.
    pub fn needs_of(&self, actions: usize) -> Option<Vec<usize>> {
        let mut out: Vec<Option<usize>> = vec![None; actions];
        for (k, n) in self.needs.iter().enumerate() {
            for i in crate::fleet::slices::parse_ranges(&n.actions, actions)? {
                let slot = &mut out[i as usize];
                if slot.is_some() {
                    return None;
                }
                *slot = Some(k);
            }
        }
        out.into_iter().collect()
    }
}

impl PlanSlices {
    /// The earliest wave with an action still to be written (`pending`, in plan order);
    /// None when there is none or the record is unreadable.
    pub fn earliest_pending(&self, pending: &[bool]) -> Option<u32> {
        let all = self.needs_of(pending.len())?;
        all.iter()
            .zip(pending)
            .filter(|(_, p)| **p)
            .map(|(k, _)| self.needs[*k].wave)
            .min()
    }

    /// The first wave after `wave` with an action still to be written.
    pub fn next_pending_after(&self, pending: &[bool], wave: u32) -> Option<u32> {
        let all = self.needs_of(pending.len())?;
        all.iter()
            .zip(pending)
            .filter(|(k, p)| **p && self.needs[**k].wave > wave)
            .map(|(k, _)| self.needs[*k].wave)
            .min()
    }

    /// Whether an action of `wave`, or of a wave before it, is still to be written:
    /// the rollout may not go past it. An unreadable record says yes.
    pub fn waits_by(&self, pending: &[bool], wave: u32) -> bool {
        self.needs_of(pending.len()).is_none_or(|all| {
            all.iter()
                .zip(pending)
                .any(|(k, p)| *p && self.needs[*k].wave <= wave)
        })
    }
}

/// A slice's name as messages show it: as written when it is a plain word, else quoted
/// and cut (values come from the fleet file, and must not read as something else).
pub fn shown(name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        || name == crate::fleet::slices::NO_OWNER;
    match plain {
        true => name.to_owned(),
        false => format!("{:?}", crate::fleet::rollout::shown(name)),
    }
}

/// Names as [`shown`], joined by `, `.
pub fn shown_all(names: &[String]) -> String {
    names
        .iter()
        .map(|n| shown(n))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    // Whether each action is still to be written.
    const APPLIED: bool = false;
    const LEFT_OUT: bool = false;
    const PENDING: bool = true;

    fn record() -> PlanSlices {
        let needs = |slices: &[&str], wave, actions: &str| SliceNeeds {
            slices: slices.iter().map(|s| s.to_string()).collect(),
            wave,
            actions: actions.into(),
        };
        PlanSlices {
            by: "region".into(),
            rule_approvals: None,
            slices: Vec::new(),
            needs: vec![
                needs(&["eu"], 0, "0"),
                needs(&["us"], 0, "1"),
                needs(&["eu"], 2, "2"),
            ],
        }
    }

    #[test]
    fn the_rollout_stays_at_the_earliest_wave_with_something_to_write() {
        let r = record();
        assert_eq!(r.earliest_pending(&[APPLIED, PENDING, PENDING]), Some(0));
        assert!(r.waits_by(&[APPLIED, PENDING, PENDING], 0));
        // Wave 1 has nothing: after wave 0, wave 2 is next.
        assert_eq!(
            r.next_pending_after(&[APPLIED, APPLIED, PENDING], 0),
            Some(2)
        );
        assert!(!r.waits_by(&[APPLIED, APPLIED, PENDING], 1));
        assert_eq!(r.earliest_pending(&[APPLIED, LEFT_OUT, APPLIED]), None);
        // A record that does not fit the plan holds the rollout.
        assert!(r.waits_by(&[APPLIED, APPLIED], 5));
        assert_eq!(r.earliest_pending(&[PENDING; 4]), None);
    }

    #[test]
    fn names_from_the_fleet_file_cannot_read_as_something_else() {
        assert_eq!(shown("eu-west-2"), "eu-west-2");
        assert_eq!(shown(crate::fleet::slices::NO_OWNER), "(no owner)");
        assert_eq!(
            shown("x (1 action); approved so far: y"),
            "\"x (1 action); approved so far: y\""
        );
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        assert_eq!(shown(""), "\"\"");
        assert!(shown(&"a".repeat(500)).len() < 80);
    }
}
