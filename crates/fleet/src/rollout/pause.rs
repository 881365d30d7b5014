//! A rollout paused at a wave, and the choice a person makes there. Pure.
//!
//! When a wave breaches its failure budget (or the objects around it regress) and
//! waves remain, the run pauses. A person then chooses, for exactly this pause:
//! - **continue**: the objects named in the pause are accepted as they are (they no
//!   longer hold the rollout back) and the next wave goes out;
//! - **leave-out**: the same, and what remains of the plan for those objects, and for
//!   whatever depends on them, is left out;
//! - **rollback**: the run stops here and a Rollback run to the last run that applied
//!   whole is started (gated like any plan).
//!
//! A choice names the pause's decision id: a digest of the plan id, the wave, the
//! objects the pause names and when it began. Another pause (another wave, other
//! objects, another plan, or the same failure again) has another id, so a choice made
//! for one never counts for the next, and none can be made before the pause exists.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::object::ObjectRef;
use crate::plan::Plan;

/// What a person may choose at a paused rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Choice {
    Continue,
    LeaveOut,
    Rollback,
}

impl Choice {
    pub const ALL: [Choice; 3] = [Choice::Continue, Choice::LeaveOut, Choice::Rollback];

    /// The word a person writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Continue => "continue",
            Choice::LeaveOut => "leave-out",
            Choice::Rollback => "rollback",
        }
    }

    /// The reason of the run's conditions and Event once the choice is made.
    pub fn reason(self) -> &'static str {
        match self {
            Choice::Continue => "ContinueChosen",
            Choice::LeaveOut => "LeaveOutChosen",
            Choice::Rollback => "RollbackChosen",
        }
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Choice {
    type Err = DecisionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Choice::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| DecisionError::UnknownChoice(shown(s)))
    }
}

/// A choice for one pause: `<choice>:<decision id>`, as written in the approve
/// annotation of a paused run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub choice: Choice,
    pub id: String,
}

impl Decision {
    /// What the choice counts toward: the choice and the pause it names. Approvals of
    /// different choices, or of another pause, never add up.
    pub fn subject(&self) -> String {
        format!("{}:{}", self.choice, self.id)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.subject())
    }
}

/// Why a decision cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error(
        "`{0}` is not a decision: write <choice>:<decision id>, the choice one of continue, leave-out or rollback"
    )]
    Malformed(String),
    #[error("`{0}` is not a choice: continue, leave-out or rollback")]
    UnknownChoice(String),
}

impl DecisionError {
    /// A stable label.
    pub fn label(&self) -> &'static str {
        match self {
            DecisionError::Malformed(_) => "DecisionMalformed",
            DecisionError::UnknownChoice(_) => "DecisionUnknownChoice",
        }
    }
}

impl FromStr for Decision {
    type Err = DecisionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (choice, id) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| DecisionError::Malformed(shown(s)))?;
        let id = id.trim();
        if id.is_empty()
            || id.len() > 64
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(DecisionError::Malformed(shown(s)));
        }
        Ok(Decision {
            choice: choice.trim().parse()?,
            id: id.to_owned(),
        })
    }
}

/// At most 64 characters of what someone wrote, for a message.
fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The id a choice for this pause names: `pause-` and 12 hex digits over the plan id,
/// the wave, the objects named (in any order) and when the pause began (`at`, as the
/// run records it), so that no choice can be written before the pause it is for.
pub fn decision_id(plan_id: &str, wave: u32, objects: &[ObjectRef], at: &str) -> String {
    let named: BTreeSet<String> = objects.iter().map(ObjectRef::to_string).collect();
    let mut h = Sha256::new();
    h.update(b"fleetgate-pause-v1\0");
    h.update(plan_id.as_bytes());
    h.update(b"\0");
    h.update(wave.to_string().as_bytes());
    h.update(b"\0");
    h.update(at.as_bytes());
    for o in named {
        h.update(b"\0");
        h.update(o.as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("pause-{hex}")
}

/// The actions still to be written (`pending[i]`) that leaving `objects` out removes:
/// those on the objects themselves and, transitively, those that depend on one.
pub fn left_out(plan: &Plan, pending: &[bool], objects: &[ObjectRef]) -> Vec<usize> {
    let mut out: BTreeSet<ObjectRef> = objects.iter().cloned().collect();
    let mut chosen = vec![false; plan.actions.len()];
    // Dependencies point from later levels to earlier ones; a few passes close it.
    loop {
        let mut grew = false;
        for (i, a) in plan.actions.iter().enumerate() {
            if chosen[i] || !pending.get(i).copied().unwrap_or(false) {
                continue;
            }
            let hit = out.contains(&a.reference()) || a.depends_on.iter().any(|d| out.contains(d));
            if hit {
                chosen[i] = true;
                grew |= out.insert(a.reference());
            }
        }
        if !grew {
            break;
        }
    }
    chosen
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.then_some(i))
        .collect()
}

/// The first wave after `wave` with an action still to be written, if any.
pub fn following_wave(plan: &Plan, pending: &[bool], wave: u32) -> Option<u32> {
    plan.actions
        .iter()
        .zip(pending)
        .filter(|(a, p)| **p && a.wave > wave)
        .map(|(a, _)| a.wave)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::ObjectKind;

    fn node(name: &str) -> ObjectRef {
        ObjectRef::new(ObjectKind::FleetNode, name)
    }

    #[test]
    fn a_decision_reads_its_choice_and_pause() {
        let d: Decision = "leave-out:pause-0123456789ab".parse().unwrap();
        assert_eq!(d.choice, Choice::LeaveOut);
        assert_eq!(d.id, "pause-0123456789ab");
        assert_eq!(d.to_string(), "leave-out:pause-0123456789ab");
        for bad in [
            "",
            "continue",
            "continue:",
            ":pause-1",
            "continue:pause 1",
            "go:pause-1",
        ] {
            assert!(bad.parse::<Decision>().is_err(), "{bad:?} was read");
        }
        let long = format!("continue:{}", "a".repeat(65));
        assert!(long.parse::<Decision>().is_err());
        assert_eq!(
            "stop:pause-1".parse::<Decision>().unwrap_err().label(),
            "DecisionUnknownChoice"
        );
    }

    #[test]
    fn the_decision_id_binds_plan_wave_and_objects_not_their_order() {
        let t = "2026-01-01T00:00:00Z";
        let id = decision_id("plan-a", 1, &[node("x"), node("y")], t);
        assert!(id.starts_with("pause-") && id.len() == 18, "{id}");
        assert_eq!(id, decision_id("plan-a", 1, &[node("y"), node("x")], t));
        assert_ne!(id, decision_id("plan-b", 1, &[node("x"), node("y")], t));
        assert_ne!(id, decision_id("plan-a", 2, &[node("x"), node("y")], t));
        assert_ne!(id, decision_id("plan-a", 1, &[node("x")], t));
        // The same failure paused again later is another pause.
        assert_ne!(
            id,
            decision_id("plan-a", 1, &[node("x"), node("y")], "2026-01-01T00:00:01Z")
        );
    }

    #[test]
    fn every_choice_has_its_word_and_reason() {
        for c in Choice::ALL {
            assert_eq!(c.as_str().parse::<Choice>().unwrap(), c);
            assert!(c.reason().ends_with("Chosen"));
        }
    }
}
