//! The GitopsRepository controller: on each interval (or the sync-requested-at
//! annotation) ask git which commit the ref points at — without cloning — and start a
//! SyncRun for a new revision; supersede runs left waiting on an older one; keep the
//! last historyLimit finished runs; and report conditions from the newest run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument};

use super::context::{Context, object_key, parse_duration};
use super::drift;
use super::error::{Error, Result};
use super::gitsource;
use super::planstore;
use super::syncrun;
use crate::api::repository::{DriftRemediation, GitopsRepositoryStatus};
use crate::api::syncrun::{Phase, SyncRunSpec, Trigger};
use crate::api::{
    FIELD_MANAGER, GitopsRepository, REPOSITORY_LABEL, SyncRun, annotations, now, set_condition,
};

pub const CONTROLLER: &str = super::metrics::REPOSITORY_CONTROLLER;
/// On a SyncRun: its place in the repository's sequence of runs.
pub const SEQUENCE_ANNOTATION: &str = "gitops.fleetgate.dev/sequence";
/// On a SyncRun: the sync-requested-at value it was started for.
pub const SYNC_REQUEST_ANNOTATION: &str = "gitops.fleetgate.dev/sync-request";
/// On a Drift SyncRun: the digest of the drift it restores.
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

pub(super) fn sequence(run: &SyncRun) -> u64 {
    run.annotations()
        .get(SEQUENCE_ANNOTATION)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub(super) fn phase(run: &SyncRun) -> Option<Phase> {
    run.status.as_ref().and_then(|s| s.phase)
}

/// Errors that retrying will not fix: they need a change to the spec, Secret or server.
fn stalls(e: &Error) -> bool {
    match e {
        Error::Source(_) => !e.is_transient(),
        Error::Secret { .. } | Error::InvalidSpec { .. } => true,
        _ => false,
    }
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

/// The first `n` characters of a revision (it may come from the spec, not only git).
fn prefix(revision: &str, n: usize) -> &str {
    revision
        .char_indices()
        .nth(n)
        .map_or(revision, |(end, _)| &revision[..end])
}

/// A revision as people read it: its first 12 characters.
pub(crate) fn short(revision: &str) -> &str {
    prefix(revision, 12)
}

/// Tells, on the repository, that `created` was started and why (`action` names what
/// started it).
pub(super) async fn announce_run(
    ctx: &Context,
    repo: &GitopsRepository,
    created: &SyncRun,
    action: &str,
    message: String,
) {
    ctx.event_related(
        &repo.object_ref(&()),
        Some(created.object_ref(&())),
        false,
        "NewSyncRun",
        action,
        message,
    )
    .await;
}

/// Ready, Reconciling and Stalled together, with one reason and message: kstatus reads
/// them as a set.
struct Kstatus<'a> {
    ready: bool,
    reconciling: bool,
    stalled: bool,
    reason: &'a str,
    message: &'a str,
}

fn set_kstatus(conditions: &mut Vec<Condition>, k: Kstatus, generation: Option<i64>) {
    let ts = now();
    for (type_, status) in [
        ("Ready", k.ready),
        ("Reconciling", k.reconciling),
        ("Stalled", k.stalled),
    ] {
        set_condition(
            conditions, type_, status, k.reason, k.message, generation, &ts,
        );
    }
}

/// Records a failure to fetch or read the spec as conditions and an Event.
async fn fail(
    ctx: &Context,
    repo: &GitopsRepository,
    mut status: GitopsRepositoryStatus,
    e: Error,
) -> Result<Action> {
    let generation = repo.meta().generation;
    let reason = e.label();
    let message = e.to_string();
    let changed =
        crate::api::condition(&status.conditions, "Ready").is_none_or(|c| c.reason != reason);
    let k = Kstatus {
        ready: false,
        reconciling: false,
        stalled: stalls(&e),
        reason,
        message: &message,
    };
    set_kstatus(&mut status.conditions, k, generation);
    write_status(ctx, repo, &status).await?;
    // The reconcile itself succeeds (the failure is recorded), so it is counted here:
    // a stalled repository shows in the error metrics on every check.
    ctx.metrics.error(CONTROLLER, reason);
    if changed {
        ctx.event_at(repo, "status.conditions", true, reason, "Fetch", message)
            .await;
    }
    if stalls(&e) {
        Ok(Action::await_change())
    } else {
        Err(e)
    }
}

/// A run carries its repository's labels (so that a shard's --watch-label-selector
/// selects the runs of the repositories it selects) and the repository label.
fn run_labels(repo: &GitopsRepository) -> BTreeMap<String, String> {
    let mut labels = repo.labels().clone();
    labels.insert(REPOSITORY_LABEL.to_owned(), repo.name_any());
    labels
}

pub(super) async fn create_run(
    ctx: &Context,
    repo: &GitopsRepository,
    revision: &str,
    trigger: Trigger,
    sequence: u64,
    markers: &[(&str, &str)],
) -> Result<SyncRun> {
    let ns = repo.namespace().unwrap_or_default();
    let mut annotations = BTreeMap::from([(SEQUENCE_ANNOTATION.to_owned(), sequence.to_string())]);
    for (key, value) in markers {
        annotations.insert((*key).to_owned(), (*value).to_owned());
    }
    let run = SyncRun {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-{}-", repo.name_any(), prefix(revision, 7))),
            namespace: Some(ns.clone()),
            labels: Some(run_labels(repo)),
            annotations: Some(annotations),
            owner_references: repo.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: SyncRunSpec {
            repository: repo.name_any(),
            revision: revision.to_owned(),
            trigger,
        },
        status: None,
    };
    let created = Api::<SyncRun>::namespaced(ctx.client.clone(), &ns)
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &run,
        )
        .await?;
    info!(syncrun = %created.name_any(), revision, ?trigger, "created SyncRun");
    Ok(created)
}

/// Keeps one Drift SyncRun per distinct drift, as `spec.driftRemediation` asks: a run
/// that restores git's state (the last applied revision, planned against the cluster).
async fn remediate(
    ctx: &Context,
    repo: &GitopsRepository,
    runs: &[SyncRun],
    found: &drift::Found,
) -> Result<()> {
    if repo.spec.drift_remediation == DriftRemediation::Report {
        return Ok(());
    }
    let waiting_drift: Vec<&SyncRun> = runs
        .iter()
        .filter(|r| r.spec.trigger == Trigger::Drift && phase(r) == Some(Phase::AwaitingApproval))
        .collect();
    let newest_waits_on_git = runs.first().is_some_and(|r| {
        r.spec.trigger != Trigger::Drift && phase(r) == Some(Phase::AwaitingApproval)
    });
    let current = |r: &&SyncRun| r.annotations().get(DRIFT_ANNOTATION) == Some(&found.digest);
    for stale in waiting_drift
        .iter()
        .filter(|r| found.objects.is_empty() || !current(r))
    {
        let message = "superseded: the drift it was planned for has changed".to_owned();
        syncrun::supersede(ctx, stale, message).await?;
    }
    // A newer revision waiting for approval restores the drift too, when approved.
    if found.objects.is_empty() || newest_waits_on_git || waiting_drift.iter().any(current) {
        return Ok(());
    }
    let next = runs.first().map_or(1, |r| sequence(r) + 1);
    let revision = found.baseline.spec.revision.clone();
    let created = create_run(
        ctx,
        repo,
        &revision,
        Trigger::Drift,
        next,
        &[(DRIFT_ANNOTATION, &found.digest)],
    )
    .await?;
    let message = format!(
        "{} drifted objects: started SyncRun {} to restore revision {}",
        found.objects.len(),
        created.name_any(),
        short(&revision)
    );
    announce_run(ctx, repo, &created, "RemediateDrift", message).await;
    Ok(())
}

/// Runs still waiting for approval of an older revision can no longer be approved, and
/// approved runs still waiting for a change window no longer apply: an older revision
/// never applies after a newer one. A Scheduled run is superseded only by a newer run
/// from git or a rollback (a drift run re-plans an older revision).
async fn supersede_older(ctx: &Context, runs: &[SyncRun]) -> Result<()> {
    let Some(newest) = runs.first() else {
        return Ok(());
    };
    let newest_not_drift = runs.iter().find(|r| r.spec.trigger != Trigger::Drift);
    for run in runs.iter().skip(1) {
        let by = match phase(run) {
            Some(Phase::AwaitingApproval) => Some(newest),
            Some(Phase::Scheduled) => newest_not_drift.filter(|n| sequence(n) > sequence(run)),
            _ => None,
        };
        if let Some(by) = by {
            let message = format!(
                "superseded by SyncRun {} (revision {})",
                by.name_any(),
                short(&by.spec.revision)
            );
            syncrun::supersede(ctx, run, message).await?;
        }
    }
    Ok(())
}

/// Keeps the newest historyLimit finished runs; deletes older ones and their stored plans.
async fn prune_history(
    ctx: &Context,
    repo: &GitopsRepository,
    runs: &mut Vec<SyncRun>,
) -> Result<()> {
    let limit = repo.spec.history_limit as usize;
    let api: Api<SyncRun> =
        Api::namespaced(ctx.client.clone(), &repo.namespace().unwrap_or_default());
    let finished: Vec<String> = runs
        .iter()
        .filter(|r| phase(r).is_some_and(Phase::is_finished))
        .skip(limit)
        .map(|r| r.name_any())
        .collect();
    for name in &finished {
        if let Some(run) = runs.iter().find(|r| &r.name_any() == name) {
            planstore::delete(&ctx.client, run).await?;
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    runs.retain(|r| !finished.contains(&r.name_any()));
    Ok(())
}

/// What a run started by a sync request carries: the request, and who made it (stamped
/// at admission), which a governance policy may forbid from approving the run.
fn manual_markers<'a>(
    repo: &'a GitopsRepository,
    request: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let Some(request) = request else {
        return Vec::new();
    };
    let mut markers = vec![(SYNC_REQUEST_ANNOTATION, request)];
    if let Some(user) = repo.annotations().get(annotations::SYNC_REQUESTED_BY) {
        markers.push((annotations::REQUESTED_BY, user.as_str()));
    }
    markers
}

/// A plan that expired unapproved is planned afresh, its revision unchanged.
fn replan_expired(run: &SyncRun) -> bool {
    run.status.as_ref().and_then(|s| s.phase) == Some(Phase::Expired)
}

/// Ready, Reconciling and Stalled as the newest run makes them.
fn conditions_from_newest(
    conditions: &mut Vec<Condition>,
    newest: Option<&SyncRun>,
    generation: Option<i64>,
) {
    let Some(run) = newest else { return };
    let status = run.status.clone().unwrap_or_default();
    let rev = short(&run.spec.revision);
    let plan = status.plan_id.clone().unwrap_or_default();
    let (ready, reconciling, stalled, reason, message) = match status.phase {
        None | Some(Phase::Planning) => (
            false,
            true,
            false,
            "Progressing",
            format!("planning revision {rev}"),
        ),
        Some(Phase::Applying) => (
            false,
            true,
            false,
            "Progressing",
            format!("applying plan {plan} of revision {rev}"),
        ),
        Some(Phase::AwaitingApproval) => (
            false,
            false,
            false,
            "AwaitingApproval",
            format!(
                "plan {plan} of revision {rev} awaits approval (SyncRun {})",
                run.name_any()
            ),
        ),
        Some(Phase::Applied) => (
            true,
            false,
            false,
            "Synced",
            format!("revision {rev} applied"),
        ),
        Some(Phase::NoChanges) => (
            true,
            false,
            false,
            "Synced",
            format!("revision {rev} needs no changes"),
        ),
        Some(Phase::Failed) => {
            let reason = crate::api::condition(&status.conditions, "Ready")
                .map_or("Failed".to_owned(), |c| c.reason.clone());
            let stalled = reason == "ValidationFailed" || reason == "PreventDestroy";
            let message = status.message.clone().unwrap_or_default();
            let k = Kstatus {
                ready: false,
                reconciling: false,
                stalled,
                reason: &reason,
                message: &message,
            };
            set_kstatus(conditions, k, generation);
            return;
        }
        Some(Phase::Rejected) => (
            false,
            false,
            false,
            "Rejected",
            status.message.clone().unwrap_or_default(),
        ),
        Some(Phase::Superseded) => (
            false,
            true,
            false,
            "Progressing",
            format!("revision {rev} superseded"),
        ),
        Some(Phase::Scheduled) => (
            false,
            true,
            false,
            "Scheduled",
            format!(
                "plan {plan} of revision {rev} is approved and waits for a change window (SyncRun {}{})",
                run.name_any(),
                status
                    .scheduled_for
                    .as_ref()
                    .map(|t| format!(", from {}", t.0))
                    .unwrap_or_default()
            ),
        ),
        Some(Phase::Expired) => (
            false,
            true,
            false,
            "Progressing",
            format!("the plan of revision {rev} expired unapproved; planning it afresh"),
        ),
    };
    let k = Kstatus {
        ready,
        reconciling,
        stalled,
        reason,
        message: &message,
    };
    set_kstatus(conditions, k, generation);
}

async fn write_status(
    ctx: &Context,
    repo: &GitopsRepository,
    status: &GitopsRepositoryStatus,
) -> Result<()> {
    let api: Api<GitopsRepository> =
        Api::namespaced(ctx.client.clone(), &repo.namespace().unwrap_or_default());
    let mut status = status.clone();
    forge_condition(ctx, repo, &mut status);
    // Reconciles follow every change of the managed objects; while a run applies most
    // of them change nothing here, and need no request.
    if repo.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1",
        "kind": "GitopsRepository",
        "status": status,
    });
    api.patch_status(
        &repo.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// `ForgeReported`: whether the git host took the last commit status or preview (only
/// for repositories with `spec.forge`, once the host was called).
fn forge_condition(ctx: &Context, repo: &GitopsRepository, status: &mut GitopsRepositoryStatus) {
    if repo.spec.forge.is_none() {
        status.conditions.retain(|c| c.type_ != "ForgeReported");
        return;
    }
    let key = format!(
        "{}/{}",
        repo.namespace().unwrap_or_default(),
        repo.name_any()
    );
    if let Some((ok, reason, message)) = ctx.forge.condition(&key) {
        set_condition(
            &mut status.conditions,
            "ForgeReported",
            ok,
            reason,
            message,
            repo.meta().generation,
            &now(),
        );
    }
}

pub fn error_policy(repo: Arc<GitopsRepository>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&object_key(&*repo));
    tracing::warn!(repository = %repo.name_any(), error = %error, label = error.label(), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
