//! What stops a run waiting for people or for its window, whatever else happens: a
//! governing policy that became invalid holds it, a plan past its expiry ends, and
//! approvals past theirs stop counting.

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::api::SyncRun;
use crate::api::now;
use crate::api::syncrun::SyncRunStatus;
use crate::controller::context::Context;
use crate::controller::error::Result;
use crate::controller::governance::{self, Governance};
use crate::controller::lifecycle::{Event, transition, write_status};

/// The governance of the run's repository; or, when one of its policies became invalid
/// after the plan was recorded, the hold that stops the run (`Err`).
pub(super) async fn governance_unless_held(
    run: &SyncRun,
    ctx: &Context,
    status: &mut SyncRunStatus,
) -> Result<Result<Governance, Action>> {
    let namespace = run.namespace().unwrap_or_default();
    let gov = governance::load(&ctx.client, &namespace, &run.spec.repository).await?;
    Ok(match hold_while_invalid(run, ctx, &gov, status).await? {
        Some(held) => Err(held),
        None => Ok(gov),
    })
}

/// A governing policy became invalid after the plan was recorded: nothing is approved
/// or applied until it is fixed (looked at again every 30 seconds; policies are not
/// watched per run).
async fn hold_while_invalid(
    run: &SyncRun,
    ctx: &Context,
    gov: &Governance,
    status: &mut SyncRunStatus,
) -> Result<Option<Action>> {
    let Some(invalid) = gov.invalid() else {
        return Ok(None);
    };
    let message = format!("held: {invalid}");
    if status.message.as_deref() != Some(message.as_str()) {
        status.message = Some(message.clone());
        write_status(ctx, run, status).await?;
        ctx.event_at(
            run,
            "status.message",
            EventType::Warning,
            invalid.label(),
            "Approve",
            message,
        )
        .await;
    }
    Ok(Some(Action::requeue(Duration::from_secs(30))))
}

/// Ends a plan left unapproved past its expiry, and drops approvals past theirs.
pub(super) async fn expire(
    run: &SyncRun,
    ctx: &Context,
    gov: &Governance,
    status: &mut SyncRunStatus,
) -> Result<Option<Action>> {
    let ts = now().0;
    // A plan split by another key than the governing policy's now (or not at all) cannot
    // be counted by slice: it ends, and the revision is planned afresh under the policy.
    if let Some(message) = gov.slices_outdated(status) {
        transition(ctx, run, status.clone(), Event::Expired, message).await?;
        return Ok(Some(Action::await_change()));
    }
    // planExpiry is about approving a stale plan; a rollout under way (part of its plan
    // written) is past that, and ending it would strand the written waves. Approvals
    // past their own expiry still stop counting below.
    if let Some(message) = gov.plan_expired(status, ts).filter(|_| !status.wrote_any()) {
        transition(ctx, run, status.clone(), Event::Expired, message).await?;
        return Ok(Some(Action::await_change()));
    }
    let dropped = gov.drop_stale(status, ts);
    if !dropped.is_empty() {
        let message = format!(
            "the approval of {} is older than the approval expiry and no longer counts",
            dropped.join(", ")
        );
        status.message = Some(message.clone());
        write_status(ctx, run, status).await?;
        ctx.event_at(
            run,
            "status.approvals",
            EventType::Warning,
            "ApprovalExpired",
            "Approve",
            message,
        )
        .await;
    }
    Ok(None)
}
