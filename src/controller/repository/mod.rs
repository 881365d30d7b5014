//! The GitopsRepository controller: on each interval (or the sync-requested-at
//! annotation) ask git which commit the ref points at — without cloning — and start a
//! SyncRun for a new revision; supersede runs left waiting on an older one; keep the
//! last historyLimit finished runs; and report conditions from the newest run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::context::{Context, object_key, parse_duration};
use super::drift;
use super::error::{Error, Result};
use super::gitsource;
use crate::api::syncrun::{Phase, Trigger};
use crate::api::{
    GitopsRepository, REPOSITORY_LABEL, SyncRun, annotations, now, set_condition,
    short_revision as short,
};

pub const CONTROLLER: &str = super::metrics::REPOSITORY_CONTROLLER;
/// On a SyncRun: its place in the repository's sequence of runs.
pub const SEQUENCE_ANNOTATION: &str = "gitops.fleetgate.dev/sequence";
/// On a SyncRun: the sync-requested-at value it was started for.
pub const SYNC_REQUEST_ANNOTATION: &str = "gitops.fleetgate.dev/sync-request";
/// On a Drift SyncRun: the digest of the drift it restores.
mod runs;
mod status;

pub(super) use runs::{announce_run, create_run, phase, sequence};
use runs::{manual_markers, prune_history, remediate, replan_expired, supersede_older};
use status::{conditions_from_newest, fail, write_status};

pub const DRIFT_ANNOTATION: &str = "gitops.fleetgate.dev/drift";

#[instrument(skip_all, fields(repository = %repo.name_any(), namespace = repo.namespace().unwrap_or_default()))]
pub async fn reconcile(repo: Arc<GitopsRepository>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = step(&repo, &ctx).await;
    ctx.observe(CONTROLLER, started, result.as_ref().err().map(Error::label));
    let notifier = ctx.notifier.clone();
    let observed = repo.clone();
    tokio::spawn(async move { notifier.repository_changed(&observed).await });
    // A push not handled yet previews pull requests at once, as it checks git at once.
    let pushed = repo
        .annotations()
        .get(crate::api::annotations::PUSH_RECEIVED_AT)
        != repo
            .status
            .as_ref()
            .and_then(|s| s.last_handled_push.as_ref());
    super::forge::preview::maybe_start(ctx.clone(), repo.clone(), pushed);
    if result.is_ok() {
        ctx.succeeded(&object_key(&*repo));
    }
    result
}

async fn step(cached: &GitopsRepository, ctx: &Context) -> Result<Action> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    // Status is rewritten from what it was; the watch cache may not hold this
    // controller's last write yet (drift already reported, a sync already handled).
    let api: Api<GitopsRepository> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(repo) = api.get_opt(&name).await? else {
        // Deleted: its runs go with it (owner references); its cache goes here.
        ctx.git.forget(&ns, &name).await;
        ctx.desired.forget(&format!("{ns}/{name}"));
        return Ok(Action::await_change());
    };
    let repo = &repo;
    if let Some(action) = super::deletion::reconcile(ctx, repo).await? {
        return Ok(action);
    }
    let mut status = repo.status.clone().unwrap_or_default();
    let generation = repo.meta().generation;
    let ts = now();
    let spec_changed = status.observed_generation != generation;
    status.observed_generation = generation;
    if repo.spec.suspend {
        set_condition(
            &mut status.conditions,
            "Reconciling",
            false,
            "Suspended",
            "suspended: nothing is fetched, planned or applied",
            generation,
            &ts,
        );
        write_status(ctx, repo, &status).await?;
        return Ok(Action::await_change());
    }
    let interval = match parse_duration("spec.interval", &repo.spec.interval) {
        Ok(i) => i,
        Err(e) => return fail(ctx, repo, status, e).await,
    };
    let request = repo
        .annotations()
        .get(annotations::SYNC_REQUESTED_AT)
        .cloned();
    let manual = request.is_some() && request != status.last_handled_sync_request;
    let push = repo
        .annotations()
        .get(annotations::PUSH_RECEIVED_AT)
        .cloned();
    let pushed = push.is_some() && push != status.last_handled_push;
    // Reconciles also follow every change of the repository's SyncRuns; git is asked
    // only once per interval, on a spec change, or on request.
    let since_fetch = status
        .last_fetched_at
        .as_ref()
        .and_then(|t| ts.0.duration_since(t.0).try_into().ok())
        .unwrap_or(Duration::MAX);
    let revision = match (
        &status.last_fetched_revision,
        spec_changed || manual || pushed || since_fetch >= interval,
    ) {
        (Some(known), false) => known.clone(),
        _ => match gitsource::resolve(&ctx.git, &ctx.client, repo).await {
            Ok(r) => {
                status.last_fetched_at = Some(ts.clone());
                r
            }
            Err(e) => {
                return fail(ctx, repo, status, e)
                    .await
                    .map(|_| Action::requeue(interval));
            }
        },
    };
    let next_check = interval
        .saturating_sub(since_fetch.min(interval))
        .max(Duration::from_secs(1));

    let runs_api: Api<SyncRun> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = format!("{REPOSITORY_LABEL}={name}");
    let mut runs = runs_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    runs.sort_by_key(|r| std::cmp::Reverse(sequence(r)));

    let manual_done = manual
        && runs
            .iter()
            .any(|r| r.annotations().get(SYNC_REQUEST_ANNOTATION) == request.as_ref());
    if let Some(created) =
        super::rollback::request(ctx, repo, &runs, &revision, &mut status).await?
    {
        runs.insert(0, created);
    }
    // Drift runs re-plan an old revision; only runs started from git say what git had.
    // A rollback holds back the revision it rolled back from.
    let newest_from_git = runs.iter().find(|r| r.spec.trigger != Trigger::Drift);
    let held = newest_from_git.is_some_and(|n| super::rollback::holds(n, &revision));
    // A requested run that expired is planned again as requested by the same user, so
    // that forbidRequester still keeps the requester from approving the fresh plan.
    let expired_requester = newest_from_git
        .filter(|n| replan_expired(n) && n.spec.revision == revision)
        .filter(|n| n.spec.trigger == Trigger::Manual)
        .and_then(|n| n.annotations().get(annotations::REQUESTED_BY).cloned());
    // An expired rollback is planned again as a rollback, never replaced by a run of
    // the revision it holds back.
    if let Some(expired) = newest_from_git.filter(|n| held && replan_expired(n)) {
        let next = runs.first().map_or(1, |r| sequence(r) + 1);
        let created = super::rollback::again(ctx, repo, expired, next).await?;
        runs.insert(0, created);
    }
    let new_revision = !held
        && runs
            .iter()
            .find(|r| r.spec.trigger != Trigger::Drift)
            .is_none_or(|newest| newest.spec.revision != revision || replan_expired(newest));
    // An editor's "sync now" does not lift a rollback's hold: only a new revision or an
    // approver (a rollback to a run that applied the held revision) does.
    if manual && !manual_done && held {
        status.last_handled_sync_request = request.clone();
        ctx.event(
            &repo.object_ref(&()),
            true,
            "SyncRefused",
            "Sync",
            format!(
                "sync of revision {} refused: a rollback holds it back; push a new revision, or an approver rolls back to a run that applied it",
                short(&revision)
            ),
        )
        .await;
    } else if (new_revision || manual) && !manual_done {
        let carried = expired_requester.as_deref().filter(|_| !manual);
        let trigger = if manual || carried.is_some() {
            Trigger::Manual
        } else {
            Trigger::Schedule
        };
        let next = runs.first().map_or(1, |r| sequence(r) + 1);
        let mut markers = manual_markers(repo, request.as_deref().filter(|_| manual));
        markers.extend(carried.map(|user| (annotations::REQUESTED_BY, user)));
        let created = create_run(ctx, repo, &revision, trigger, next, &markers).await?;
        let message = format!(
            "revision {} ({trigger:?}): started SyncRun {}",
            short(&revision),
            created.name_any()
        );
        announce_run(ctx, repo, &created, "Fetch", message).await;
        runs.insert(0, created);
    }
    if manual {
        status.last_handled_sync_request = request;
    }
    if pushed {
        status.last_handled_push = push;
    }
    supersede_older(ctx, &runs).await?;
    prune_history(ctx, repo, &mut runs).await?;

    status.last_fetched_revision = Some(revision.clone());
    status.last_sync_run = runs.first().map(|r| r.name_any());
    if let Some(applied) = runs.iter().find(|r| phase(r) == Some(Phase::Applied)) {
        status.last_applied_revision = Some(applied.spec.revision.clone());
    }
    conditions_from_newest(&mut status.conditions, runs.first(), generation);
    status.history = drift::history(&runs, repo.spec.history_limit as usize);
    if let Some(found) = drift::check(ctx, repo, &runs).await? {
        drift::report(ctx, repo, &found, &mut status).await;
        remediate(ctx, repo, &runs, &found).await?;
    }
    write_status(ctx, repo, &status).await?;
    let fetched_now = status.last_fetched_at.as_ref() == Some(&ts);
    Ok(Action::requeue(if fetched_now {
        interval
    } else {
        next_check
    }))
}

pub fn error_policy(repo: Arc<GitopsRepository>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&object_key(&*repo));
    tracing::warn!(repository = %repo.name_any(), error = %error, label = error.label(), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
