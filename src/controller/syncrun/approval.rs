//! Phase AwaitingApproval: the run waits for the approve, reject or exclude annotation.
//! An approval counts only for the current plan id and only with a verified approver;
//! once the quorum is met the one authorization check decides, and the run goes on to
//! be scheduled or applied.

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::clearing::apply_approved;
use super::holds::{expire, governance_unless_held};
use super::planning::replan;
use super::warn;
use crate::api::syncrun::SyncRunStatus;
use crate::api::{SyncRun, annotations, now};
use crate::controller::authorization::{self, Authorization, Content, Facts};
use crate::controller::context::Context;
use crate::controller::error::Result;
use crate::controller::governance::{self, QuorumOutcome, quorum};
use crate::controller::lifecycle::{Clearance, reject, write_status, written_status};

pub(super) async fn await_approval(
    run: &SyncRun,
    ctx: &Context,
    mut status: SyncRunStatus,
) -> Result<Action> {
    let a = run.annotations();
    let gov = match governance_unless_held(run, ctx, &mut status).await? {
        Ok(gov) => gov,
        Err(held) => return Ok(held),
    };
    if let Some(action) = expire(run, ctx, &gov, &mut status).await? {
        return Ok(action);
    }
    let waiting = gov
        .next_deadline(&status, now().0)
        .map_or_else(Action::await_change, Action::requeue);
    if let Some(reason) = a.get(annotations::REJECT) {
        return reject(ctx, run, status, reason).await;
    }
    if a.get(annotations::EXCLUDE) != status.exclusions.as_ref() {
        return replan(run, ctx, status).await;
    }
    let requirement = gov.requirement_for(&status);
    // Slices whose owners approved (recorded, the annotation already cleared) are
    // written while the others wait, as far as the current wave goes.
    if status.slices.is_some()
        && !a.contains_key(annotations::APPROVE)
        && let Some(authorization) = slices_ready(run, &status, &requirement)
    {
        return apply_approved(run, ctx, &gov, status, &authorization, Clearance::Approved).await;
    }
    let Some(approval) = a.get(annotations::APPROVE) else {
        if status.refused_approval.is_some() {
            // Removing a refused approval lets the same value be given again, knowingly.
            status.refused_approval = None;
            write_status(ctx, run, &status).await?;
        }
        return Ok(waiting);
    };
    if status.refused_approval.as_deref() == Some(approval.as_str()) {
        return Ok(waiting); // refused already; remove it to approve again
    }
    let plan_id = status.plan_id.clone().unwrap_or_default();
    if *approval != plan_id {
        return refuse(run, ctx, status, approval, format!(
            "approval `{approval}` does not match the current plan `{plan_id}`; nothing was applied. Review the plan and approve `{plan_id}`"
        ))
        .await;
    }
    // Who approved comes from the API server (the chart's admission policies stamp it
    // and let no one else set or remove it). An approval without it cannot be told
    // from one set by anyone who may annotate the run.
    let approver = match stamped_approver(run, ctx) {
        Some(user) => user,
        None => {
            return refuse(run, ctx, status, approval, format!(
                "approval `{approval}` refused: it carries no {} annotation, so who approved cannot be verified (are the chart's admission policies installed?); nothing was applied",
                annotations::APPROVED_BY
            ))
            .await;
        }
    };
    let groups = quorum::groups(a.get(annotations::APPROVED_BY_GROUPS));
    let requester = a.get(annotations::REQUESTED_BY).map(String::as_str);
    let at = now().0;
    match gov.count(&mut status, &approver, groups, requester, at) {
        QuorumOutcome::Met(_) => {}
        // Removed once said, so that another approver can set the same plan id afresh.
        QuorumOutcome::Refused(message) => {
            let written = warn(ctx, run, &status, "ApprovalRefused", "Approve", message).await?;
            return clear_or_retry(ctx, run, Some(&written)).await;
        }
        QuorumOutcome::Waiting { tally, added } => {
            return record_partial_approval(run, ctx, status, &approver, tally, added).await;
        }
    };
    // The quorum is met: people authorize exactly this plan id.
    let requirement = gov.requirement_for(&status);
    let facts = Facts {
        trigger: run.spec.trigger,
        approvals: &status.approvals,
        requirement: &requirement,
        policy: None,
        at,
    };
    let authorization =
        match authorization::authorize(Content::Recorded { plan_id: &plan_id }, &facts) {
            Ok(authorization) => authorization,
            Err(refusal) => {
                let message = refusal.to_string();
                let written = warn(ctx, run, &status, refusal.label(), "Approve", message).await?;
                return clear_or_retry(ctx, run, Some(&written)).await;
            }
        };
    apply_approved(run, ctx, &gov, status, &authorization, Clearance::Approved).await
}

/// The authorization of a sliced plan's recorded approvals, if it lets the engine write
/// something of the current wave.
fn slices_ready(
    run: &SyncRun,
    status: &SyncRunStatus,
    requirement: &quorum::Requirement,
) -> Option<Authorization> {
    let plan_id = status.plan_id.clone().unwrap_or_default();
    let facts = Facts {
        trigger: run.spec.trigger,
        approvals: &status.approvals,
        requirement,
        policy: None,
        at: now().0,
    };
    let authorization =
        authorization::authorize(Content::Recorded { plan_id: &plan_id }, &facts).ok()?;
    let wave = status.rollout.as_ref().and_then(|r| r.current).unwrap_or(0);
    authorization
        .writes_any(requirement, &status.recorded_states(), wave)
        .then_some(authorization)
}

/// Who set the approve annotation, as the API server stamped it (the chart's admission
/// policies stamp it and let no one else set or remove it); with
/// `--allow-unverified-approvals`, a stand-in when nothing stamped it. None: who it was
/// cannot be told from anyone who may annotate the run.
pub(super) fn stamped_approver(run: &SyncRun, ctx: &Context) -> Option<String> {
    match run.annotations().get(annotations::APPROVED_BY) {
        Some(user) => Some(user.clone()),
        None if ctx.settings.allow_unverified_approvals => {
            Some("unverified (no approval admission policy installed)".into())
        }
        None => None,
    }
}

/// Refuses an approval, once per distinct value, with a Warning Event.
pub(super) async fn refuse(
    run: &SyncRun,
    ctx: &Context,
    mut status: SyncRunStatus,
    approval: &str,
    message: String,
) -> Result<Action> {
    if status.refused_approval.as_deref() == Some(approval) {
        return Ok(Action::await_change());
    }
    status.refused_approval = Some(approval.to_owned());
    warn(ctx, run, &status, "ApprovalRefused", "Approve", message).await?;
    Ok(Action::await_change())
}

/// One approval of a plan that needs more: recorded in status, then the approve
/// annotation is cleared so that the next approver sets (and is stamped) afresh.
async fn record_partial_approval(
    run: &SyncRun,
    ctx: &Context,
    mut status: SyncRunStatus,
    approver: &str,
    tally: quorum::Tally,
    added: bool,
) -> Result<Action> {
    let plan_id = status.plan_id.clone().unwrap_or_default();
    let counted = match added {
        true => format!("approval of plan {plan_id} by {approver} recorded"),
        false => format!("{approver} already approved plan {plan_id}; an approver counts once"),
    };
    let message = format!(
        "{counted}: {}; the next approver approves with: kubectl annotate syncrun/{} {}={plan_id}",
        tally.describe(),
        run.name_any(),
        annotations::APPROVE,
    );
    status.message = Some(message.clone());
    let written = written_status(ctx, run, &status).await?;
    let (told, reason) = match added {
        true => (EventType::Normal, "ApprovalRecorded"),
        false => (EventType::Warning, "ApprovalRepeated"),
    };
    ctx.event_at(
        run,
        "metadata.annotations",
        told,
        reason,
        "Approve",
        message,
    )
    .await;
    clear_or_retry(ctx, run, Some(&written)).await
}

/// Removes the approve annotation (and its stamps) as read; read again if it changed.
/// `written`: the run as the status write that recorded the approval returned it.
async fn clear_or_retry(ctx: &Context, run: &SyncRun, written: Option<&SyncRun>) -> Result<Action> {
    match governance::clear_approval(&ctx.client, run, written).await? {
        true => Ok(Action::await_change()),
        false => Ok(Action::requeue(Duration::from_millis(200))),
    }
}
