//! The SyncRun controller: plan a revision, wait for the approval of exactly that plan,
//! then hand it to the apply engine.
//!
//! One step per phase (`planning`, `approval`, `scheduled`, the engine in `apply`,
//! `finished`), each moving the run through the transition table of `lifecycle`.
//! Every step reads the run as the API server has it and writes the next status only if
//! the run is still in the phase it read, so a reconcile can be repeated or interrupted
//! at any point, and a run the repository superseded meanwhile is judged again.

use std::sync::Arc;
use std::time::Instant;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::instrument;

use super::apply;
use super::context::{Context, object_key};
use super::error::{Error, Result};
use super::lifecycle::written_status;
use crate::api::syncrun::{Phase, SyncRunStatus};
use crate::api::{GitopsRepository, SyncRun};

mod approval;
mod clearing;
mod converging;
mod finished;
mod holds;
mod paused;
mod planning;
mod recording;
mod scheduled;

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
        // Deleted: a run deleted while it converged leaves nothing kept for it.
        ctx.converging.forget(cached);
        return Ok(Action::await_change());
    };
    let run = &run;
    let status = run.status.clone().unwrap_or_default();
    let stepped = match status.phase {
        None | Some(Phase::Planning) => planning::plan(run, ctx, status).await,
        Some(Phase::AwaitingApproval) => approval::await_approval(run, ctx, status).await,
        Some(Phase::Scheduled) => scheduled::scheduled(run, ctx, status).await,
        Some(Phase::Applying) => apply::run(run, ctx, status).await,
        Some(Phase::Converging) => converging::converge(run, ctx, status).await,
        Some(Phase::Paused) => paused::decide(run, ctx, status).await,
        // Listed, not matched with `_`: a phase added later must say which step it takes.
        Some(
            Phase::Applied
            | Phase::Degraded
            | Phase::Failed
            | Phase::NoChanges
            | Phase::Superseded
            | Phase::Rejected
            | Phase::Expired,
        ) => finished::refuse_late_approval(run, ctx, status).await,
    };
    match stepped {
        // Someone else moved the run (the repository superseded it) between the read
        // and the write: not a failure, judged again as it is now.
        Err(Error::RunMoved { run, now }) => {
            tracing::info!(syncrun = %run, now, "the run moved on meanwhile; judged again");
            Ok(Action::requeue(std::time::Duration::from_millis(100)))
        }
        other => other,
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
    ctx.event_at(
        run,
        "metadata.annotations",
        EventType::Warning,
        reason,
        action,
        message,
    )
    .await;
    Ok(written)
}

/// Whether the run's repository is suspended now (gone counts as not: the run's own
/// steps deal with a missing repository).
async fn repository_suspended(ctx: &Context, run: &SyncRun) -> Result<bool> {
    Ok(get_repository(ctx, run)
        .await?
        .is_some_and(|r| r.spec.suspend))
}

async fn get_repository(ctx: &Context, run: &SyncRun) -> Result<Option<GitopsRepository>> {
    let api: Api<GitopsRepository> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    Ok(api.get_opt(&run.spec.repository).await?)
}

pub fn error_policy(run: Arc<SyncRun>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&object_key(&*run));
    tracing::warn!(syncrun = %run.name_any(), error = %error, label = error.label(), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
