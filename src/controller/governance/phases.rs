//! The SyncRun phases governance adds, called from the SyncRun controller: a quorum's
//! partial approvals, plan and approval expiry, a policy that became invalid, and the
//! `Scheduled` phase of change windows. (They use the run-status helpers of
//! `syncrun`; once those live in their own module, this imports them from there.)

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;

use super::{Gate, Governance, quorum, windows};
use crate::api::short_revision as short;
use crate::api::syncrun::{Phase, SyncRunStatus, Trigger};
use crate::api::{REPOSITORY_LABEL, SyncRun, annotations, now};
use crate::controller::authorization::{self, Authorization, Content};
use crate::controller::context::Context;
use crate::controller::error::{Error, Result};
use crate::controller::repository::sequence;
use crate::controller::runstate::supersede;
use crate::controller::runstate::{
    reject, repository_key, transition, withdraw_authorization, write_status, written_status,
};

/// An authorized plan applies when the change windows (and apply-after) allow; until
/// then it waits in phase Scheduled, looked at again when it may open. The run records
/// what authorized it (and the apply engine decides it again before its first write).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply_when_open(
    run: &SyncRun,
    ctx: &Context,
    gov: &Governance,
    mut status: SyncRunStatus,
    authorization: &Authorization,
    reason: &str,
    message: String,
    claim: bool,
) -> Result<Action> {
    if status.authorization.as_ref() != Some(&authorization.record()) {
        status.approved_by = Some(authorization.approved_by());
        status.approved_at = Some(now());
        status.authorization = Some(authorization.record());
    }
    let gate = gov.gate(run, &status, chrono::Utc::now());
    let Gate::Open { overridden } = gate else {
        let Gate::Wait { why, until } = gate else {
            return Ok(Action::await_change());
        };
        let from = until.map(|t| format!("; it applies from {}", windows::rfc3339(t)));
        let message = format!("{message}; scheduled: {why}{}", from.unwrap_or_default());
        let again = until.map_or(Duration::from_secs(30), |t| {
            (t - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
                .clamp(Duration::from_millis(200), Duration::from_secs(30))
        });
        status.scheduled_for = until
            .map(|t| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(windows::to_jiff(t)));
        if status.phase != Some(Phase::Scheduled) {
            transition(
                ctx,
                run,
                status,
                Phase::Scheduled,
                false,
                "Scheduled",
                message,
            )
            .await?;
        } else if status.message.as_deref() != Some(message.as_str()) {
            let refused = run.annotations().contains_key(annotations::OVERRIDE_WINDOW);
            status.message = Some(message.clone());
            write_status(ctx, run, &status).await?;
            if refused {
                ctx.event_at(
                    run,
                    "metadata.annotations",
                    true,
                    "OverrideRefused",
                    "Schedule",
                    message,
                )
                .await;
            }
        }
        return Ok(Action::requeue(again));
    };
    if claim && !ctx.claim_apply(&repository_key(run), &run.name_any()) {
        let waiting = format!(
            "approved; waiting for another run of {} to finish applying",
            run.spec.repository
        );
        if status.message.as_deref() != Some(waiting.as_str()) {
            status.message = Some(waiting);
            write_status(ctx, run, &status).await?;
        }
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    status.scheduled_for = None;
    if let Some(note) = overridden {
        status.window_override = Some(note.clone());
        ctx.event_at(
            run,
            "metadata.annotations",
            true,
            "WindowOverridden",
            "Schedule",
            note,
        )
        .await;
    }
    transition(ctx, run, status, Phase::Applying, false, reason, message).await?;
    Ok(Action::requeue(Duration::from_millis(100)))
}

/// An approved run waiting for a change window: rejected, approved further (toward an
/// override's quorum), or applied once the windows allow.
pub(crate) async fn scheduled(
    run: &SyncRun,
    ctx: &Context,
    mut status: SyncRunStatus,
) -> Result<Action> {
    let a = run.annotations();
    if let Some(reason) = a.get(annotations::REJECT) {
        return reject(ctx, run, status, reason).await;
    }
    let gov = super::load(
        &ctx.client,
        &run.namespace().unwrap_or_default(),
        &run.spec.repository,
    )
    .await
    .map_err(governance_error)?;
    if let Some(action) = hold_while_invalid(run, ctx, &gov, &mut status).await? {
        return Ok(action);
    }
    if let Some(newer) = newer_run(ctx, run).await? {
        let message = format!(
            "superseded by SyncRun {} (revision {}): an older revision never applies after a newer one",
            newer.name_any(),
            short(&newer.spec.revision)
        );
        supersede(ctx, run, message).await?;
        return Ok(Action::await_change());
    }
    // Time and policy changes are judged again before applying (fail closed): a plan
    // past its expiry ends, approvals past theirs no longer count.
    if let Some(action) = expire(run, ctx, &gov, &mut status).await? {
        return Ok(action);
    }
    if let (Some(value), Some(user)) =
        (a.get(annotations::APPROVE), a.get(annotations::APPROVED_BY))
        && status.plan_id.as_ref() == Some(value)
    {
        let groups = quorum::groups(a.get(annotations::APPROVED_BY_GROUPS));
        let requester = a.get(annotations::REQUESTED_BY).map(String::as_str);
        let before = status.approvals.len();
        let _ = gov.count(&mut status, user, groups, requester, now().0);
        let written = match status.approvals.len() != before {
            true => Some(written_status(ctx, run, &status).await?),
            false => None,
        };
        if !super::clear_approval(&ctx.client, run, written.as_ref()).await? {
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
    }
    // Approvals expire and policies change while a run waits: it applies only if it is
    // still authorized now, on what it recorded.
    let recorded = authorization::recorded::read(&ctx.client, run, &status).await?;
    let requirement = gov.requirement_for(&status);
    let plan_id = status.plan_id.clone().unwrap_or_default();
    let unverified_ok = ctx.settings.allow_unverified_approvals;
    let facts = recorded.facts(run, &status, &requirement, unverified_ok, now().0);
    let decided = authorization::authorize(Content::Recorded { plan_id: &plan_id }, &facts);
    let authorization = match decided {
        Ok(authorization) => authorization,
        Err(refusal) => {
            let why = format!(
                "{refusal}: approvals expired or the governance policy changed while it waited; approve again"
            );
            return withdraw_authorization(ctx, run, status, "ApprovalExpired", why).await;
        }
    };
    apply_approved(run, ctx, &gov, status, &authorization, "WindowOpened").await
}

/// [`apply_when_open`] for a plan just authorized by its approvals (or found still
/// authorized when its window opens).
pub(crate) async fn apply_approved(
    run: &SyncRun,
    ctx: &Context,
    gov: &Governance,
    status: SyncRunStatus,
    authorization: &Authorization,
    reason: &str,
) -> Result<Action> {
    let message = format!(
        "plan {} approved by {}",
        authorization.plan_id(),
        authorization.approved_by()
    );
    apply_when_open(run, ctx, gov, status, authorization, reason, message, true).await
}

/// The newest run of the same repository created after `run` from git or a rollback
/// (drift runs re-plan an older revision and replace nothing).
async fn newer_run(ctx: &Context, run: &SyncRun) -> Result<Option<SyncRun>> {
    let api: Api<SyncRun> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    let selector = format!("{REPOSITORY_LABEL}={}", run.spec.repository);
    let own = sequence(run);
    let runs = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    Ok(runs
        .into_iter()
        .filter(|r| r.spec.trigger != Trigger::Drift && sequence(r) > own)
        .max_by_key(sequence))
}

pub(crate) fn governance_error(e: super::Error) -> Error {
    match e {
        super::Error::Kube(e) => Error::Kube(e),
        other => Error::InvalidSpec {
            field: "governance".into(),
            message: other.to_string(),
        },
    }
}

/// A governing policy became invalid after the plan was recorded: nothing is approved
/// or applied until it is fixed (looked at again every 30 seconds; policies are not
/// watched per run).
pub(crate) async fn hold_while_invalid(
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
            true,
            invalid.label(),
            "Approve",
            message,
        )
        .await;
    }
    Ok(Some(Action::requeue(Duration::from_secs(30))))
}

/// Ends a plan left unapproved past its expiry, and drops approvals past theirs.
pub(crate) async fn expire(
    run: &SyncRun,
    ctx: &Context,
    gov: &Governance,
    status: &mut SyncRunStatus,
) -> Result<Option<Action>> {
    let ts = now().0;
    if let Some(message) = gov.plan_expired(status, ts) {
        transition(
            ctx,
            run,
            status.clone(),
            Phase::Expired,
            true,
            "PlanExpired",
            message,
        )
        .await?;
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
            true,
            "ApprovalExpired",
            "Approve",
            message,
        )
        .await;
    }
    Ok(None)
}

/// One approval of a plan that needs more: recorded in status, then the approve
/// annotation is cleared so that the next approver sets (and is stamped) afresh.
pub(crate) async fn record_partial_approval(
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
    let reason = if added {
        "ApprovalRecorded"
    } else {
        "ApprovalRepeated"
    };
    ctx.event_at(
        run,
        "metadata.annotations",
        !added,
        reason,
        "Approve",
        message,
    )
    .await;
    clear_or_retry(ctx, run, Some(&written)).await
}

/// Removes the approve annotation (and its stamps) as read; read again if it changed.
/// `written`: the run as the status write that recorded the approval returned it.
pub(crate) async fn clear_or_retry(
    ctx: &Context,
    run: &SyncRun,
    written: Option<&SyncRun>,
) -> Result<Action> {
    match super::clear_approval(&ctx.client, run, written).await? {
        true => Ok(Action::await_change()),
        false => Ok(Action::requeue(Duration::from_millis(200))),
    }
}
