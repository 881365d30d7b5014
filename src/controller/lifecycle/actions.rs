//! The per-action record a run keeps in status: counts of each state, and a bounded list
//! with the failed and skipped first.

use crate::api::syncrun::{ActionState, ActionStatus, Progress};
use crate::fleet::Plan;

/// At most this many per-action entries are kept in status.actions.
const MAX_ACTION_ENTRIES: usize = 200;

/// Counts of each action state.
pub fn progress(states: &[ActionState]) -> Progress {
    let count = |s: ActionState| states.iter().filter(|x| **x == s).count() as u32;
    Progress {
        total: states.len() as u32,
        pending: count(ActionState::Pending),
        applied: count(ActionState::Applied),
        failed: count(ActionState::Failed),
        skipped: count(ActionState::Skipped),
        left_out: count(ActionState::LeftOut),
    }
}

/// The errors `entries` (a run's status.actions) record, by the index of their action in
/// `plan`: what a later write of the list must keep.
pub fn recorded_errors(plan: &Plan, entries: &[ActionStatus]) -> Vec<(usize, String)> {
    entries
        .iter()
        .filter_map(|e| {
            let i = plan
                .actions
                .iter()
                .position(|a| a.kind.as_str() == e.kind && a.name == e.name)?;
            Some((i, e.error.clone()?))
        })
        .collect()
}

/// The per-action list kept in status: failed and skipped first, then in plan order.
pub fn action_entries(
    plan: &Plan,
    states: &[ActionState],
    errors: &[(usize, String)],
) -> Vec<ActionStatus> {
    let mut order: Vec<usize> = (0..plan.actions.len()).collect();
    order.sort_by_key(|i| match states[*i] {
        ActionState::Failed => 0,
        ActionState::Skipped => 1,
        ActionState::LeftOut => 2,
        _ => 3,
    });
    order
        .into_iter()
        .take(MAX_ACTION_ENTRIES)
        .map(|i| {
            let a = &plan.actions[i];
            ActionStatus {
                kind: a.kind.to_string(),
                name: a.name.clone(),
                operation: a.operation.word().to_owned(),
                state: states[i],
                error: errors.iter().find(|(j, _)| *j == i).map(|(_, e)| e.clone()),
            }
        })
        .collect()
}
