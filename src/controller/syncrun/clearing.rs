//! An authorized plan on its way to the engine: `Scheduled` while the change windows (or
//! apply-after) hold it, `Applying` once they allow and the repository is free. Reached
//! from planning (a policy approved it), from approval (the quorum was met) and from
//! Scheduled (the window opened).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::api::syncrun::{Phase, SyncRunStatus};
use crate::api::{SyncRun, annotations, now};
use crate::controller::authorization::Authorization;
use crate::controller::context::Context;
use crate::controller::convergence;
use crate::controller::error::Result;
use crate::controller::governance::{Gate, Governance, windows};
use crate::controller::lifecycle::{Clearance, Event, transition, write_status};

/// Whether the run must claim its repository before it applies: a run cleared while
/// planning holds no claim yet and needs none (its own reconcile claims when Applying).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    Now,
    WhenApplying,
}

/// An authorized plan applies when the change windows (and apply-after) allow; until
/// then it waits in phase Scheduled, looked at again when it may open. The run records
/// what authorized it (and the apply engine decides it again before its first write).
#[allow(clippy::too_many_arguments)]
pub(super) async fn apply_when_open(
    run: &SyncRun,
    ctx: &Context,
    gov: &Governance,
    mut status: SyncRunStatus,
    authorization: &Authorization,
    cleared: Clearance,
    message: String,
    claim: Claim,
) -> Result<Action> {
    if status.authorization.as_ref() != Some(&authorization.record()) {
        status.approved_by = Some(authorization.approved_by());
        status.approved_at = Some(now());
        status.authorization = Some(authorization.record());
    }
    let overridden = match gov.gate(run, &status, chrono::Utc::now()) {
        Gate::Open { overridden } => overridden,
        Gate::Wait { why, until } => return schedule(run, ctx, status, message, &why, until).await,
    };
    if claim == Claim::Now && !ctx.claim_apply(run) {
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
    // What regresses during the rollout is measured against the health of the
    // repository's objects before its first write, taken at every clearing until then
    // (a run withdrawn and approved again later is measured against the cluster as it
    // is then).
    let first_write = !status.wrote_any();
    if let Some(rollout) = status.rollout.as_mut()
        && first_write
    {
        ctx.fleet.wait_until_ready().await?;
        let namespace = run.namespace().unwrap_or_default();
        rollout.baseline = Some(convergence::baseline(
            &ctx.fleet,
            &namespace,
            &run.spec.repository,
            now(),
        ));
    }
    if let Some(note) = overridden {
        status.window_override = Some(note.clone());
        ctx.event_at(
            run,
            "metadata.annotations",
            EventType::Warning,
            "WindowOverridden",
            "Schedule",
            note,
        )
        .await;
    }
    transition(ctx, run, status, Event::Cleared(cleared), message).await?;
    Ok(Action::requeue(Duration::from_millis(100)))
}

/// Waits in Scheduled until `until` (or 30 seconds, to look again), saying why.
async fn schedule(
    run: &SyncRun,
    ctx: &Context,
    mut status: SyncRunStatus,
    message: String,
    why: &str,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Action> {
    let from = until.map(|t| format!("; it applies from {}", windows::rfc3339(t)));
    let message = format!("{message}; scheduled: {why}{}", from.unwrap_or_default());
    let again = until.map_or(Duration::from_secs(30), |t| {
        (t - chrono::Utc::now())
            .to_std()
            .unwrap_or_default()
            .clamp(Duration::from_millis(200), Duration::from_secs(30))
    });
    status.scheduled_for = until.map(|t| Time(windows::to_jiff(t)));
    if status.phase != Some(Phase::Scheduled) {
        transition(ctx, run, status, Event::Scheduled, message).await?;
    } else if status.message.as_deref() != Some(message.as_str()) {
        let refused = run.annotations().contains_key(annotations::OVERRIDE_WINDOW);
        status.message = Some(message.clone());
        write_status(ctx, run, &status).await?;
        if refused {
            ctx.event_at(
                run,
                "metadata.annotations",
                EventType::Warning,
                "OverrideRefused",
                "Schedule",
                message,
            )
            .await;
        }
    }
    Ok(Action::requeue(again))
}

/// [`apply_when_open`] for a plan just authorized by its approvals (or found still
/// authorized when its window opens).
pub(super) async fn apply_approved(
    run: &SyncRun,
    ctx: &Context,
    gov: &Governance,
    status: SyncRunStatus,
    authorization: &Authorization,
    cleared: Clearance,
) -> Result<Action> {
    let message = format!(
        "plan {} approved by {}",
        authorization.plan_id(),
        authorization.approved_by()
    );
    apply_when_open(
        run,
        ctx,
        gov,
        status,
        authorization,
        cleared,
        message,
        Claim::Now,
    )
    .await
}
