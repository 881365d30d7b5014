//! Slice quorums: under a GovernancePolicy's `spec.slices`, each slice of a plan needs
//! its own quorum from its owners, and with `applyApprovedSlices` the approved slices
//! may be written while the others wait. Pure: counted from the approvals that count
//! toward the plan's quorum ([`super::quorum`] picks them), decided by the one check
//! ([`super::authorize`]).

pub use crate::api::slices::shown;
use crate::api::slices::{PlanSlices, SliceRule};
use crate::api::syncrun::{ActionState, ApprovalRecord};
use crate::fleet::slices::NO_OWNER;

/// What the slices of one run's plan need, now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slicing {
    /// The plan's slices, each with its owner as the policy lists it now (None: the
    /// general quorum, for `(no owner)` and values no owner lists any more).
    pub slices: Vec<SliceQuorum>,
    /// Approved slices apply while the others wait.
    pub apply_approved: bool,
    /// Groups of actions: the slices they need, and their wave.
    pub needs: Vec<(Vec<String>, u32)>,
    /// Each action's group in `needs`, in plan order; None when the record is unusable
    /// (then no slice applies before the others).
    pub per_action: Option<Vec<usize>>,
    /// Approvals a governance rule asked of the plan: each slice needs at least as many.
    pub rule_required: u32,
    /// Why the run's record does not fit the policy now: nothing is authorized by
    /// people until the plan is made afresh.
    pub stale: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceQuorum {
    pub name: String,
    pub owner: Option<Owner>,
}

/// Whose approvals count for a slice, and how many it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub required: u32,
}

impl Owner {
    fn counts(&self, record: &ApprovalRecord) -> bool {
        self.users.contains(&record.user) || record.groups.iter().any(|g| self.groups.contains(g))
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.users.is_empty() {
            parts.push(format!("users {}", shortlist(&self.users)));
        }
        if !self.groups.is_empty() {
            parts.push(format!("groups {}", shortlist(&self.groups)));
        }
        parts.join(" or ")
    }
}

fn shortlist(names: &[String]) -> String {
    let mut shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = names.len().saturating_sub(5);
    let tail = (more > 0).then(|| format!("and {more} more"));
    shown.extend(tail.as_deref());
    shown.join(", ")
}

/// The slicing of a run: the policy's rule now, over what the run recorded when
/// planned. `actions` is the plan's length (from its action states).
pub fn of_run(
    rule: Option<&SliceRule>,
    recorded: Option<&PlanSlices>,
    actions: usize,
) -> Option<Slicing> {
    let Some(rule) = rule else {
        // Split by a policy that no longer splits plans: its owners' approvals were of
        // slices, never of the whole plan.
        return recorded.map(|r| Slicing {
            stale: Some(format!(
                "this plan was split by {} and the governing policies no longer split plans; the revision is planned afresh",
                shown(&r.by)
            )),
            ..Default::default()
        });
    };
    let Some(recorded) = recorded else {
        return Some(Slicing {
            stale: Some(format!(
                "the governing policy splits plans by {} and this plan was made before it did; the revision is planned afresh",
                rule.by
            )),
            ..Default::default()
        });
    };
    let stale = (recorded.by != rule.by).then(|| {
        format!(
            "the governing policy now splits plans by {} and this plan was split by {}; the revision is planned afresh",
            rule.by, recorded.by
        )
    });
    let owner_of = |value: &str| {
        rule.owners
            .iter()
            .find(|o| value != NO_OWNER && o.values.iter().any(|v| v == value))
            .map(|o| Owner {
                users: o.users.clone(),
                groups: o.groups.clone(),
                required: o.required.max(1),
            })
    };
    Some(Slicing {
        slices: recorded
            .slices
            .iter()
            .map(|s| SliceQuorum {
                name: s.name.clone(),
                owner: owner_of(&s.name),
            })
            .collect(),
        apply_approved: rule.apply_approved_slices,
        needs: recorded
            .needs
            .iter()
            .map(|n| (n.slices.clone(), n.wave))
            .collect(),
        per_action: recorded.needs_of(actions),
        rule_required: recorded.rule_approvals.unwrap_or(1),
        stale,
    })
}

/// Where each slice's quorum stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceTallies {
    pub owned: Vec<SliceTally>,
    /// Slices that take the general quorum.
    pub general: Vec<String>,
    pub stale: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceTally {
    pub name: String,
    pub approvers: Vec<String>,
    pub required: u32,
    pub owners: String,
}

impl SliceTally {
    pub fn met(&self) -> bool {
        self.approvers.len() as u64 >= u64::from(self.required)
    }
}

impl Slicing {
    /// Counts each owned slice's approvals among `counted` (those of the plan that
    /// count toward its quorum: eligible, not expired).
    pub fn tally(&self, counted: &[&ApprovalRecord]) -> SliceTallies {
        let mut owned = Vec::new();
        let mut general = Vec::new();
        for s in &self.slices {
            let Some(owner) = &s.owner else {
                general.push(s.name.clone());
                continue;
            };
            let mut approvers: Vec<String> = Vec::new();
            for r in counted.iter().filter(|r| owner.counts(r)) {
                if !approvers.contains(&r.user) {
                    approvers.push(r.user.clone());
                }
            }
            owned.push(SliceTally {
                name: s.name.clone(),
                approvers,
                required: owner.required.max(self.rule_required),
                owners: owner.describe(),
            });
        }
        SliceTallies {
            owned,
            general,
            stale: self.stale.clone(),
        }
    }

    /// Whether `user` (in `groups`) owns a slice of the plan, or the plan has a slice
    /// the general quorum approves (which anyone eligible may count toward), or the
    /// general quorum asks for more than one approver or for groups (then anyone
    /// eligible counts toward the plan's own quorum).
    pub fn counts_for_any(
        &self,
        user: &str,
        groups: &[String],
        general_required: u32,
        general_groups: bool,
    ) -> bool {
        general_required > 1
            || general_groups
            || self.slices.iter().any(|s| match &s.owner {
                None => true,
                Some(o) => {
                    o.users.iter().any(|u| u == user) || groups.iter().any(|g| o.groups.contains(g))
                }
            })
    }

    /// Whether some action of `wave` still to be written needs only slices in
    /// `approved` (the engine writes one wave at a time).
    pub fn writes_any(&self, approved: &[String], states: &[ActionState], wave: u32) -> bool {
        let (Some(writable), Some(per_action)) = (self.writable(approved), &self.per_action) else {
            return false;
        };
        writable
            .iter()
            .zip(per_action)
            .zip(states)
            .any(|((w, k), s)| *w && self.needs[*k].1 == wave && *s == ActionState::Pending)
    }

    /// The slices of the actions written so far (neither pending nor left out); every
    /// slice when the record is unreadable.
    pub fn written(&self, states: &[ActionState]) -> Vec<String> {
        let Some(per_action) = &self.per_action else {
            return self.slices.iter().map(|s| s.name.clone()).collect();
        };
        let mut out: Vec<String> = Vec::new();
        for (k, s) in per_action.iter().zip(states) {
            if matches!(s, ActionState::Pending | ActionState::LeftOut) {
                continue;
            }
            for name in &self.needs[*k].0 {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
        }
        out
    }

    /// Whether some action of `wave` is still to be written at all.
    pub fn pending_in(&self, states: &[ActionState], wave: u32) -> bool {
        self.per_action.as_ref().is_some_and(|per_action| {
            per_action
                .iter()
                .zip(states)
                .any(|(k, s)| self.needs[*k].1 == wave && *s == ActionState::Pending)
        })
    }

    /// Which actions need only slices in `approved`; None when the record is unusable.
    pub fn writable(&self, approved: &[String]) -> Option<Vec<bool>> {
        let per_action = self.per_action.as_ref()?;
        let covered: Vec<bool> = self
            .needs
            .iter()
            .map(|(needs, _)| needs.iter().all(|n| approved.contains(n)))
            .collect();
        Some(per_action.iter().map(|k| covered[*k]).collect())
    }
}

impl SliceTallies {
    /// Whether every slice is approved. `general_met`: the general quorum is, counted
    /// over all the plan's approvers. The plan as a whole always needs it, so that a
    /// policy that splits plans never lowers what the other governing policies ask
    /// (their approvals, groups, separation of duties' extra approver).
    pub fn met(&self, general_met: bool) -> bool {
        self.stale.is_none() && general_met && self.owned.iter().all(SliceTally::met)
    }

    /// The slices approved.
    pub fn approved(&self, general_met: bool) -> Vec<String> {
        if self.stale.is_some() || !general_met {
            return Vec::new();
        }
        let mut out: Vec<String> = self
            .owned
            .iter()
            .filter(|s| s.met())
            .map(|s| s.name.clone())
            .collect();
        if general_met {
            out.extend(self.general.iter().cloned());
        }
        out.sort();
        out
    }

    /// `slice eu-west: 1/1 (alice); slice us-east: 0/1 from groups us-owners`, with the
    /// general quorum's standing (`general`) for the slices that take it.
    /// `general`: the general quorum's standing, when it asks more than any one
    /// approver gives (else only the slices that take it name it).
    pub fn describe(&self, general: Option<&str>) -> String {
        if let Some(stale) = &self.stale {
            return stale.clone();
        }
        let mut parts: Vec<String> = self
            .owned
            .iter()
            .map(|s| {
                let mut text = format!(
                    "slice {}: {}/{}",
                    shown(&s.name),
                    s.approvers.len().min(s.required as usize),
                    s.required
                );
                match s.approvers.is_empty() {
                    false => text.push_str(&format!(" ({})", s.approvers.join(", "))),
                    true => text.push_str(&format!(" from {}", s.owners)),
                }
                text
            })
            .collect();
        let named: Vec<String> = self.general.iter().map(|n| shown(n)).collect();
        match (named.is_empty(), general) {
            (false, general) => parts.push(format!(
                "{}: {}",
                shortlist(&named),
                general.unwrap_or("any approver")
            )),
            (true, Some(general)) => parts.push(format!("the plan as a whole: {general}")),
            (true, None) => {}
        }
        parts.join("; ")
    }
}

#[cfg(test)]
#[path = "slices_tests.rs"]
mod tests;
