//! The GitopsRepository controller: on each interval (or the sync-requested-at
//! annotation) ask git which commit the ref points at — without cloning — and start a
//! SyncRun for a new revision; supersede runs left waiting on an older one; keep the
//! last historyLimit finished runs; and report conditions from the newest run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::context::{Context, object_key};
use super::drift;
use super::error::{Error, Result, parse_duration};
use super::gitsource;
use super::promotion;
use crate::api::repository::GitopsRepositoryStatus;
use crate::api::syncrun::Phase;
use crate::api::{GitopsRepository, REPOSITORY_LABEL, SyncRun, annotations, now, set_condition};

pub const CONTROLLER: &str = super::metrics::REPOSITORY_CONTROLLER;

mod deletion;
pub mod rollback;
mod runs;
mod status;
pub mod triggers;
mod upgrades;

pub(super) use runs::{announce_run, create_run, sequence};
use runs::{prune_history, remediate, start_rollback, start_runs, supersede_older};
pub(super) use status::apply_and_tell;
use status::{conditions_from_newest, fail, source_verified, write_status};

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
    super::forge::preview::maybe_start(ctx.forge.clone(), repo.clone(), pushed);
    if result.is_ok() {
        ctx.succeeded(&object_key(&*repo));
    }
    result
}

async fn step(cached: &GitopsRepository, ctx: &Context) -> Result<Action> {
    let Some(repo) = read_fresh(ctx, cached).await? else {
        return Ok(Action::await_change());
    };
    let repo = &repo;
    if let Some(action) = deletion::reconcile(ctx, repo).await? {
        return Ok(action);
    }
    let mut status = repo.status.clone().unwrap_or_default();
    let generation = repo.meta().generation;
    let ts = now();
    let spec_changed = status.observed_generation != generation;
    status.observed_generation = generation;
    if repo.spec.suspend {
        return suspend(ctx, repo, status).await;
    }
    let interval = match parse_duration("spec.interval", &repo.spec.interval) {
        Ok(i) => i,
        Err(e) => return fail(ctx, repo, status, e).await,
    };
    let asked = PendingRequests::of(repo, &status);
    // Reconciles also follow every change of the repository's SyncRuns; git is asked
    // only once per interval, on a spec change, or on request.
    let since_fetch = status
        .last_fetched_at
        .as_ref()
        .and_then(|t| ts.0.duration_since(t.0).try_into().ok())
        .unwrap_or(Duration::MAX);
    let must_fetch = spec_changed || asked.any() || since_fetch >= interval;
    let revision = match revision(ctx, repo, &mut status, must_fetch, &ts).await {
        Ok(revision) => revision,
        Err(e) => {
            return fail(ctx, repo, status, e)
                .await
                .map(|_| Action::requeue(interval));
        }
    };

    let mut runs = list_runs(ctx, repo).await?;
    // Under promotion, the revision planned is the upstream's newest eligible one, not
    // git's newest: nothing plans here that the upstream has not held, and promotion
    // never goes back from what was applied.
    let promoted = match promotion::judge(ctx, repo, &runs).await {
        Ok(promoted) => promoted,
        Err(e) => {
            return fail(ctx, repo, status, e)
                .await
                .map(|_| Action::requeue(interval));
        }
    };
    let to_plan = match &promoted {
        Some(p) => p.revision.clone(),
        None => Some(revision.clone()),
    };
    // One planning at a time per repository: a request (a sync, a push, a new
    // revision, drift to restore) that comes while a run is being planned waits for it,
    // so that repeated requests never pile plannings up. The run's end prompts this
    // reconcile again.
    let planning = runs.iter().any(being_planned);
    if !planning {
        match &to_plan {
            Some(to_plan) => {
                start_runs(
                    ctx,
                    repo,
                    to_plan,
                    asked.sync.as_deref(),
                    &mut runs,
                    &mut status,
                )
                .await?
            }
            // Held where it is: nothing is planned, not even a sync or an expired plan
            // again, but an approver's rollback still starts.
            None => {
                start_rollback(ctx, repo, &revision, &mut runs, &mut status).await?;
                promotion::refuse_sync(ctx, repo, asked.sync.as_deref(), &promoted).await
            }
        }
        asked.handled(&mut status);
        upgrades::maybe_replan(ctx, repo, &mut runs, promoted.as_ref()).await?;
    }
    supersede_older(ctx, &runs).await?;
    prune_history(ctx, repo, &mut runs).await?;
    record_runs(repo, &revision, &runs, &mut status);
    if let Some(found) = drift::check(ctx, repo, &runs).await? {
        drift::report(ctx, repo, &found, &mut status).await;
        if !planning {
            remediate(ctx, repo, &runs, &found).await?;
        }
    }
    if let Some(p) = promoted.as_ref() {
        promotion::announce(ctx, repo, status.promotion.as_ref(), p).await;
    }
    status.promotion = promoted.as_ref().map(|p| p.status.clone());
    write_status(ctx, repo, &status).await?;
    let fetched_now = status.last_fetched_at.as_ref() == Some(&ts);
    let next_check = interval
        .saturating_sub(since_fetch.min(interval))
        .max(Duration::from_secs(1));
    let next = if fetched_now { interval } else { next_check };
    // A revision's hold upstream ends between two checks: looked at again then.
    let recheck = promoted.and_then(|p| p.recheck).unwrap_or(next);
    Ok(Action::requeue(next.min(recheck)))
}

/// The repository as the API server has it now: status is rewritten from what it was,
/// and the watch cache may not hold this controller's last write yet (drift already
/// reported, a sync already handled). None once deleted, and its caches are dropped.
async fn read_fresh(ctx: &Context, cached: &GitopsRepository) -> Result<Option<GitopsRepository>> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<GitopsRepository> = Api::namespaced(ctx.client.clone(), &ns);
    let fresh = api.get_opt(&name).await?;
    if fresh.is_none() {
        // Its runs go with it (owner references); its caches go here, if its watch has
        // not dropped them already.
        ctx.forget_repository(&ns, &name).await;
    }
    Ok(fresh)
}

/// Suspended: nothing is fetched, planned or applied until `spec.suspend` is lifted.
async fn suspend(
    ctx: &Context,
    repo: &GitopsRepository,
    mut status: GitopsRepositoryStatus,
) -> Result<Action> {
    set_condition(
        &mut status.conditions,
        "Reconciling",
        false,
        "Suspended",
        "suspended: nothing is fetched, planned or applied",
        repo.meta().generation,
        &now(),
    );
    write_status(ctx, repo, &status).await?;
    Ok(Action::await_change())
}

/// What people asked of the repository that no reconcile has handled yet.
struct PendingRequests {
    /// The sync-requested-at value of a sync request.
    sync: Option<String>,
    /// The push-received-at value of a push webhook.
    push: Option<String>,
}

impl PendingRequests {
    fn of(repo: &GitopsRepository, status: &GitopsRepositoryStatus) -> Self {
        let new = |key: &str, handled: &Option<String>| {
            repo.annotations()
                .get(key)
                .filter(|value| Some(*value) != handled.as_ref())
                .cloned()
        };
        Self {
            sync: new(
                annotations::SYNC_REQUESTED_AT,
                &status.last_handled_sync_request,
            ),
            push: new(annotations::PUSH_RECEIVED_AT, &status.last_handled_push),
        }
    }

    fn any(&self) -> bool {
        self.sync.is_some() || self.push.is_some()
    }

    fn handled(self, status: &mut GitopsRepositoryStatus) {
        if let Some(sync) = self.sync {
            status.last_handled_sync_request = Some(sync);
        }
        if let Some(push) = self.push {
            status.last_handled_push = Some(push);
        }
    }
}

/// The revision to plan: the one last fetched, or git's, asked now when `must_fetch`
/// (or nothing was fetched yet).
async fn revision(
    ctx: &Context,
    repo: &GitopsRepository,
    status: &mut GitopsRepositoryStatus,
    must_fetch: bool,
    ts: &Time,
) -> Result<String> {
    if let (Some(known), false) = (&status.last_fetched_revision, must_fetch) {
        return Ok(known.clone());
    }
    let revision = match &repo.spec.source_ref {
        Some(source) => super::fluxsource::resolve(ctx, repo, source).await?,
        None => gitsource::resolve(&ctx.git, &ctx.client, repo).await?,
    };
    status.last_fetched_at = Some(ts.clone());
    Ok(revision)
}

/// Whether `run` is being planned (or was created and not looked at yet).
fn being_planned(run: &SyncRun) -> bool {
    matches!(run.phase(), None | Some(Phase::Planning))
}

/// The repository's runs, newest first.
async fn list_runs(ctx: &Context, repo: &GitopsRepository) -> Result<Vec<SyncRun>> {
    let api: Api<SyncRun> =
        Api::namespaced(ctx.client.clone(), &repo.namespace().unwrap_or_default());
    let selector = format!("{REPOSITORY_LABEL}={}", repo.name_any());
    let mut runs = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    runs.sort_by_key(|r| std::cmp::Reverse(sequence(r)));
    Ok(runs)
}

/// What status says of git and the runs: the revision fetched, the newest run, the last
/// applied revision, conditions from the newest run, and the history.
fn record_runs(
    repo: &GitopsRepository,
    revision: &str,
    runs: &[SyncRun],
    status: &mut GitopsRepositoryStatus,
) {
    status.last_fetched_revision = Some(revision.to_owned());
    status.last_sync_run = runs.first().map(|r| r.name_any());
    if let Some(applied) = runs
        .iter()
        .find(|r| r.status.as_ref().is_some_and(|s| s.wrote_plan()))
    {
        status.last_applied_revision = Some(applied.spec.revision.clone());
    }
    conditions_from_newest(&mut status.conditions, runs.first(), repo.meta().generation);
    source_verified(&mut status.conditions, repo, runs, &now());
    status.history = drift::history(runs, repo.spec.history_limit as usize);
}

pub fn error_policy(repo: Arc<GitopsRepository>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&object_key(&*repo));
    tracing::warn!(repository = %repo.name_any(), error = %error, label = error.label(), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
