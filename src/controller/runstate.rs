//! A run's recorded state: its status written with server-side apply, its phase
//! transitions with their conditions and Events, and the bounded per-action summary.
//! Shared by the planner ([`super::syncrun`]), the apply engine ([`super::apply`]),
//! governance and the repository reconcile, so that none of them depends on another for
//! writing a run's status or ending it.

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::context::Context;
use super::error::Result;
use crate::api::syncrun::{ActionState, ActionStatus, Phase, Progress, SyncRunStatus};
use crate::api::truncate;
use crate::api::{Kstatus, SyncRun, apply_status, now};
use crate::fleet::Plan;

/// At most this many per-action entries are kept in status.actions.
pub const MAX_ACTION_ENTRIES: usize = 200;
const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// Counts of each action state.
pub fn progress(states: &[ActionState]) -> Progress {
    let count = |s: ActionState| states.iter().filter(|x| **x == s).count() as u32;
    Progress {
        total: states.len() as u32,
        pending: count(ActionState::Pending),
        applied: count(ActionState::Applied),
        failed: count(ActionState::Failed),
        skipped: count(ActionState::Skipped),
    }
}

pub fn repository_key(run: &SyncRun) -> String {
    format!(
        "{}/{}",
        run.namespace().unwrap_or_default(),
        run.spec.repository
    )
}

/// Writes the whole status with server-side apply.
pub async fn write_status(ctx: &Context, run: &SyncRun, status: &SyncRunStatus) -> Result<()> {
    written_status(ctx, run, status).await.map(|_| ())
}

/// [`write_status`], returning the run as written (its resourceVersion is the one a
/// later precondition must name). Every write records the generation it describes
/// (kstatus compares it with metadata.generation).
pub async fn written_status(
    ctx: &Context,
    run: &SyncRun,
    status: &SyncRunStatus,
) -> Result<SyncRun> {
    let api: Api<SyncRun> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    let mut status = status.clone();
    status.observed_generation = run.meta().generation;
    Ok(apply_status(&api, &run.name_any(), &status).await?)
}

/// Moves the run to `phase`, with an Event saying why.
pub async fn transition(
    ctx: &Context,
    run: &SyncRun,
    mut status: SyncRunStatus,
    phase: Phase,
    warning: bool,
    reason: &str,
    message: String,
) -> Result<SyncRunStatus> {
    let ts = now();
    status.phase = Some(phase);
    status.message = Some(truncate(&message, MAX_MESSAGE_BYTES));
    if phase.is_finished() && status.completed_at.is_none() {
        status.completed_at = Some(ts.clone());
    }
    let kstatus = Kstatus {
        ready: phase == Phase::Applied || phase == Phase::NoChanges,
        reconciling: phase.is_in_progress(),
        stalled: phase.is_unsuccessful(),
        reason,
        message: &message,
    };
    kstatus.set(&mut status.conditions, run.meta().generation, &ts);
    write_status(ctx, run, &status).await?;
    ctx.event_at(
        run,
        "status.phase",
        warning,
        reason,
        phase.as_str(),
        message,
    )
    .await;
    info!(phase = phase.as_str(), reason, "phase changed");
    Ok(status)
}

/// Ends a run that can no longer be approved, saying what replaced it.
pub async fn supersede(ctx: &Context, run: &SyncRun, message: String) -> Result<()> {
    let status = run.status.clone().unwrap_or_default();
    transition(
        ctx,
        run,
        status,
        Phase::Superseded,
        false,
        "Superseded",
        message,
    )
    .await?;
    Ok(())
}

/// Ends the run as Failed with a Warning Event; nothing more happens to it.
pub async fn fail(
    ctx: &Context,
    run: &SyncRun,
    status: SyncRunStatus,
    reason: &str,
    message: String,
) -> Result<Action> {
    transition(ctx, run, status, Phase::Failed, true, reason, message).await?;
    Ok(Action::await_change())
}

/// The run is no longer authorized (approvals expired, a policy changed, the check in
/// front of the engine refused it): it forgets what cleared it and waits for people
/// again, with a Warning saying why.
pub async fn withdraw_authorization(
    ctx: &Context,
    run: &SyncRun,
    mut status: SyncRunStatus,
    reason: &str,
    message: String,
) -> Result<Action> {
    status.approved_by = None;
    status.approved_at = None;
    status.scheduled_for = None;
    status.authorization = None;
    status.requires_approval = true;
    transition(
        ctx,
        run,
        status,
        Phase::AwaitingApproval,
        true,
        reason,
        message,
    )
    .await?;
    Ok(Action::await_change())
}

/// Ends the run as Rejected, saying why (the reject annotation).
pub async fn reject(
    ctx: &Context,
    run: &SyncRun,
    status: SyncRunStatus,
    reason: &str,
) -> Result<Action> {
    let message = format!("rejected: {reason}");
    transition(
        ctx,
        run,
        status,
        Phase::Rejected,
        false,
        "Rejected",
        message,
    )
    .await?;
    Ok(Action::await_change())
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
        _ => 2,
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
