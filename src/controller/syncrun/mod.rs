//! The SyncRun controller: plan a revision, wait for the approval of exactly that plan,
//! then hand it to the apply engine.
//!
//! Planning → AwaitingApproval → Applying → Applied | Failed, or NoChanges, Superseded,
//! Rejected. Every step reads the run's recorded status and writes the next one with
//! server-side apply, so a reconcile can be repeated or interrupted at any point.

use std::sync::Arc;
use std::time::Instant;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use tracing::instrument;

use super::apply;
use super::authorization::{self, Content, Facts};
use super::context::{Context, object_key};
use super::error::{Error, Result};
use super::governance::phases::{
    apply_approved, clear_or_retry, expire, governance_error, hold_while_invalid,
    record_partial_approval, scheduled,
};
use super::governance::{self, Counted};
use super::runstate::{reject, write_status, written_status};
use crate::api::syncrun::{Phase, SyncRunStatus};
use crate::api::{GitopsRepository, SyncRun, annotations, now};

mod planning;

use planning::{plan, replan};

pub const CONTROLLER: &str = super::metrics::SYNCRUN_CONTROLLER;

#[instrument(skip_all, fields(syncrun = %run.name_any(), namespace = run.namespace().unwrap_or_default()))]
pub async fn reconcile(run: Arc<SyncRun>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = step(&run, &ctx).await;
    ctx.observe(CONTROLLER, started, result.as_ref().err().map(Error::label));
    if result.is_ok() {
        ctx.succeeded(&object_key(&*run));
    }
    let (notifier, forge) = (ctx.notifier.clone(), ctx.forge.clone());
    tokio::spawn(async move {
        forge.run_changed(&run).await;
        notifier.run_changed(&run).await;
    });
    result
}

async fn step(cached: &SyncRun, ctx: &Context) -> Result<Action> {
    // The watch cache can trail the run's own status writes: a reconcile queued by an
    // earlier write may see a phase the run has already left (an Applying run that has
    // since been Applied would be applied again). Every step therefore starts from the
    // run as the API server has it now.
    let api: Api<SyncRun> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let Some(run) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let run = &run;
    let status = run.status.clone().unwrap_or_default();
    match status.phase {
        None | Some(Phase::Planning) => plan(run, ctx, status).await,
        Some(Phase::AwaitingApproval) => await_approval(run, ctx, status).await,
        Some(Phase::Scheduled) => scheduled(run, ctx, status).await,
        Some(Phase::Applying) => apply::run(run, ctx, status).await,
        Some(_) => refuse_late_approval(run, ctx, status).await,
    }
}

/// Records a refusal in status.message with a Warning Event; the run stays as it is.
/// Returns the run as written.
async fn warn(
    ctx: &Context,
    run: &SyncRun,
    status: &SyncRunStatus,
    reason: &str,
    action: &str,
    message: String,
) -> Result<SyncRun> {
    let mut status = status.clone();
    status.message = Some(message.clone());
    let written = written_status(ctx, run, &status).await?;
    if reason == "ApprovalRefused" {
        let (notifier, run, message) = (ctx.notifier.clone(), run.clone(), message.clone());
        tokio::spawn(async move { notifier.approval_refused(&run, &message).await });
    }
    ctx.event_at(run, "metadata.annotations", true, reason, action, message)
        .await;
    Ok(written)
}

async fn get_repository(ctx: &Context, run: &SyncRun) -> Result<Option<GitopsRepository>> {
    let api: Api<GitopsRepository> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    Ok(api.get_opt(&run.spec.repository).await?)
}

/// Waits for the approve, reject or exclude annotation.
async fn await_approval(run: &SyncRun, ctx: &Context, status: SyncRunStatus) -> Result<Action> {
    let a = run.annotations();
    let gov = governance::load(
        &ctx.client,
        &run.namespace().unwrap_or_default(),
        &run.spec.repository,
    )
    .await
    .map_err(governance_error)?;
    let mut status = status;
    if let Some(action) = hold_while_invalid(run, ctx, &gov, &mut status).await? {
        return Ok(action);
    }
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
    let Some(approval) = a.get(annotations::APPROVE) else {
        if status.refused_approval.is_some() {
            // Removing a refused approval lets the same value be given again, knowingly.
            let mut status = status;
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
    let approver = match a.get(annotations::APPROVED_BY) {
        Some(user) => user.clone(),
        None if ctx.settings.allow_unverified_approvals => {
            "unverified (no approval admission policy installed)".into()
        }
        None => {
            return refuse(run, ctx, status, approval, format!(
                "approval `{approval}` refused: it carries no {} annotation, so who approved cannot be verified (are the chart's admission policies installed?); nothing was applied",
                annotations::APPROVED_BY
            ))
            .await;
        }
    };
    let groups = governance::quorum::groups(a.get(annotations::APPROVED_BY_GROUPS));
    let requester = a.get(annotations::REQUESTED_BY).map(String::as_str);
    let at = now().0;
    match gov.count(&mut status, &approver, groups, requester, at) {
        Counted::Met(_) => {}
        // Removed once said, so that another approver can set the same plan id afresh.
        Counted::Refused(message) => {
            let written = warn(ctx, run, &status, "ApprovalRefused", "Approve", message).await?;
            return clear_or_retry(ctx, run, Some(&written)).await;
        }
        Counted::Waiting { tally, added } => {
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
    apply_approved(run, ctx, &gov, status, &authorization, "Approved").await
}

/// Refuses an approval, once per distinct value, with a Warning Event.
async fn refuse(
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

/// Finished runs take no approval; say so rather than stay silent.
async fn refuse_late_approval(
    run: &SyncRun,
    ctx: &Context,
    status: SyncRunStatus,
) -> Result<Action> {
    let phase = status.phase.map(Phase::as_str).unwrap_or_default();
    let Some(approval) = run.annotations().get(annotations::APPROVE).cloned() else {
        return Ok(Action::await_change());
    };
    let already_used =
        status.approved_by.is_some() && status.plan_id.as_deref() == Some(approval.as_str());
    if already_used {
        return Ok(Action::await_change());
    }
    let message = format!(
        "approval `{approval}` refused: this run is {phase}; only a run awaiting approval can be approved"
    );
    refuse(run, ctx, status, &approval, message).await
}

pub fn error_policy(run: Arc<SyncRun>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&object_key(&*run));
    tracing::warn!(syncrun = %run.name_any(), error = %error, label = error.label(), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
