//! The apply engine: an approved plan, action by action in dependency order.
//!
//! Each action is decided and written by [`super::objectwrite`]: from the watch cache,
//! with one conditional request, re-read only when the server says the cache was behind.
//! The run's progress is written in the background at most once a second, never
//! holding up the writes; after a restart the cache shows what was already applied, so
//! nothing is written twice. Once written, each object is verified as the watch
//! delivers it back, without reading objects one by one.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::{BoxFuture, Fuse, FusedFuture};
use futures::{FutureExt, StreamExt, stream};
use kube::ResourceExt;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use tokio::time::Instant;

use super::authorization::{self, Authorized, Refusal};
use super::context::Context;
use super::convergence;
use super::error::{Error, Result};
use super::governance;
use super::lifecycle::{
    Event, FailReason, Withdrawal, action_entries, fail, progress, recorded_errors, transition,
    withdraw_authorization, write_status,
};
use super::live;
use super::metrics::ResultLabels;
use super::objectwrite::{Target, Throttle, WriteError};
use super::planstore;
use crate::api::repository::RolloutSpec;
use crate::api::syncrun::{ActionState, RunHealth, SyncRunStatus};
use crate::api::{REPOSITORY_LABEL, SyncRun, now, truncate};
use crate::fleet::plan::{PlannedAction, spec_digest};
use crate::fleet::{ObjectKind, Operation, Plan};

/// While a run applies, its status is written at most this often.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// How long verification waits for the watch to deliver every write back before it
/// reads the rest from the API server.
const VERIFY_WAIT: Duration = Duration::from_secs(10);
/// Tries of one action while the API server refuses for load or cannot be reached.
const UNAVAILABLE_TRIES: u32 = 6;

/// The progress of one run being applied.
struct RunProgress<'a> {
    ctx: &'a Context,
    run: &'a SyncRun,
    namespace: String,
    states: Vec<ActionState>,
    errors: Vec<(usize, String)>,
    status: SyncRunStatus,
}

/// Applies (or resumes applying) an approved run.
pub async fn run(run: &SyncRun, ctx: &Context, status: SyncRunStatus) -> Result<Action> {
    if !ctx.claim_apply(run) {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let result = apply_claimed(run, ctx, status).await;
    // On success the run is finished. On an error it stays Applying and keeps the
    // repository until a retry finishes it.
    if result.is_ok() {
        ctx.release_apply(run);
    }
    result
}

async fn apply_claimed(run: &SyncRun, ctx: &Context, status: SyncRunStatus) -> Result<Action> {
    let Some(at) = status.full_plan.clone() else {
        let message = "the run has no stored plan".to_owned();
        return fail(ctx, run, status, FailReason::PlanMissing, message).await;
    };
    // What is applied must be what was approved: the stored bytes are the ones
    // recorded, and the actions in them make the approved planId.
    let plan = match planstore::load_plan(&ctx.client, run, &at).await {
        Ok(plan) => plan,
        Err(e @ Error::PlanTampered { .. }) => {
            let reason = FailReason::Error(e.label());
            return fail(ctx, run, status, reason, e.to_string()).await;
        }
        Err(e) => return Err(e),
    };
    // Nothing is written unless the one check admits it: the stored plan is the one
    // recorded, and writing it is authorized, decided again on what the run recorded
    // when it was cleared (at that moment, so that a resumed run is not refused for
    // the time it took).
    let namespace = run.namespace().unwrap_or_default();
    let gov = governance::load(&ctx.client, &namespace, &run.spec.repository).await?;
    let recorded = authorization::recorded::read(&ctx.client, run, &status).await?;
    let requirement = gov.requirement_for(&status);
    let at = status.authorization.as_ref().map_or(now().0, |a| a.at.0);
    let unverified_ok = ctx.settings.allow_unverified_approvals;
    let facts = recorded.facts(run, &status, &requirement, unverified_ok, at);
    let admitted =
        authorization::admit(plan, &run.spec.revision, status.plan_id.as_deref(), &facts);
    let authorized = match admitted {
        Ok(authorized) => authorized,
        Err(refusal @ Refusal::Tampered(_)) => {
            let message = format!(
                "stored plan of {}: {refusal}; nothing is applied",
                run.name_any()
            );
            let reason = FailReason::Error(refusal.label());
            return fail(ctx, run, status, reason, message).await;
        }
        // Nothing more is written; the run waits for people, saying why.
        Err(refusal) => {
            let message = format!("{refusal}; nothing more is applied until it is approved");
            let why = Withdrawal::Refused(refusal.label());
            return withdraw_authorization(ctx, run, status, why, message).await;
        }
    };
    let plan = authorized.plan();
    let mut states = status.recorded_states();
    if states.len() != plan.actions.len() {
        states = vec![ActionState::Pending; plan.actions.len()];
    }
    // Approved slices only: when nothing of this wave is theirs to write, the run
    // waits for the other slices' owners rather than writing an empty pass.
    // (With nothing pending at all, after a leave-out, the run goes on to finish.)
    if !authorized.authorization().slices().is_empty() && status.waves_left() {
        let wave = status.rollout.as_ref().and_then(|r| r.current).unwrap_or(0);
        let writes = plan.actions.iter().enumerate().any(|(i, a)| {
            a.wave == wave && states[i] == ActionState::Pending && authorized.may_write(i)
        });
        if !writes {
            let standing = authorization::quorum::tally(
                &status.approvals,
                &plan.plan_id,
                &requirement,
                now().0,
            );
            let message = format!(
                "plan {}: the approved slices ({}) have nothing more to write in this wave; the rest waits for its owners to approve: {}",
                plan.plan_id,
                crate::api::slices::shown_all(authorized.authorization().slices()),
                standing.describe()
            );
            transition(ctx, run, status, Event::AwaitingSlices, message).await?;
            return Ok(Action::await_change());
        }
    }
    let errors = recorded_errors(plan, &status.actions);
    let prune = recorded.repository().is_none_or(|r| r.spec.prune);
    let deadline = recorded
        .repository()
        .map_or(RolloutSpec::DEFAULT_PROGRESS_DEADLINE, |r| {
            r.spec.rollout.progress_deadline()
        });
    // Decisions come from the caches: they must have been filled once.
    ctx.fleet.wait_until_ready().await?;
    let mut r = RunProgress {
        ctx,
        run,
        namespace,
        states,
        errors,
        status,
    };
    r.apply_all(&authorized, prune).await?;
    r.finish(plan, deadline).await
}

/// Applies one action, waiting out the server's refusals for load and short outages.
async fn apply_one(
    target: &Target<'_>,
    throttle: &Throttle,
    action: &PlannedAction,
) -> Result<(), String> {
    let mut tries = 1;
    loop {
        throttle.wait().await;
        match target.apply(action).await {
            Err(WriteError::Unavailable(m)) if tries < UNAVAILABLE_TRIES => {
                let pause = throttle.back_off();
                tracing::warn!(object = %action.reference(), plan = target.plan_id(), error = %m, ?pause, "the API server refused for load or could not be reached; pausing the run's writes");
                tries += 1;
            }
            Ok(()) => {
                throttle.succeeded();
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The status write of `status`, to be awaited alongside the writes.
fn status_write<'a>(
    ctx: &'a Context,
    run: &'a SyncRun,
    status: SyncRunStatus,
) -> Fuse<BoxFuture<'a, Result<()>>> {
    async move { write_status(ctx, run, &status).await }
        .boxed()
        .fuse()
}

impl<'a> RunProgress<'a> {
    async fn apply_all(&mut self, authorized: &Authorized, prune: bool) -> Result<()> {
        let plan = authorized.plan();
        let index = plan.action_index();
        let mut levels: Vec<u32> = plan.actions.iter().map(|a| a.level).collect();
        levels.dedup();
        // One wave at a time: the one the run records. Later waves wait until this one
        // has converged and the run is cleared again (Converging, then Scheduled).
        let wave = self.wave(plan);
        for level in levels {
            let mut ready = Vec::new();
            for (i, a) in plan.actions.iter().enumerate() {
                if a.level != level || a.wave != wave || self.states[i] != ActionState::Pending {
                    continue;
                }
                // An action of a slice not yet approved (or behind one) stays pending.
                if !authorized.may_write(i) {
                    continue;
                }
                let blocked = a.depends_on.iter().find(|d| {
                    index
                        .get(&(d.kind, d.name.as_str()))
                        .is_some_and(|j| self.states[*j] != ActionState::Applied)
                });
                if let Some(dep) = blocked {
                    self.states[i] = ActionState::Skipped;
                    self.errors
                        .push((i, format!("skipped: {dep} was not applied")));
                } else if a.operation == Operation::Delete && !prune {
                    self.states[i] = ActionState::Skipped;
                    self.errors
                        .push((i, "skipped: the repository's prune is off".into()));
                } else {
                    ready.push(i);
                }
            }
            self.apply_level(authorized, ready).await?;
        }
        let skipped = self
            .states
            .iter()
            .filter(|s| **s == ActionState::Skipped)
            .count() as u64;
        self.ctx
            .metrics
            .actions
            .get_or_create(&ResultLabels { result: "skipped" })
            .inc_by(skipped);
        let status = self.snapshot(plan);
        write_status(self.ctx, self.run, &status).await
    }

    /// Applies the ready actions of one level, `--apply-concurrency` at a time, with
    /// the run's progress written alongside at most once per [`STATUS_INTERVAL`].
    async fn apply_level(&mut self, authorized: &Authorized, ready: Vec<usize>) -> Result<()> {
        let (ctx, run, plan) = (self.ctx, self.run, authorized.plan());
        let (namespace, repository) = (self.namespace.clone(), run.spec.repository.clone());
        let target = Target::new(ctx, &namespace, &repository, authorized.authorization());
        let throttle = Throttle::default();
        let (target, throttle) = (&target, &throttle);
        let mut results = stream::iter(ready)
            .map(|i| async move { (i, apply_one(target, throttle, &plan.actions[i]).await) })
            .buffer_unordered(ctx.settings.apply_concurrency.max(1));
        let writing = Fuse::terminated();
        tokio::pin!(writing);
        let mut last_write = Instant::now();
        loop {
            tokio::select! {
                written = &mut writing, if !writing.is_terminated() => {
                    written?;
                    last_write = Instant::now();
                }
                next = results.next() => {
                    let Some((i, result)) = next else { break };
                    self.record(i, result);
                    if writing.is_terminated() && last_write.elapsed() >= STATUS_INTERVAL {
                        writing.set(status_write(ctx, run, self.snapshot(plan)));
                    }
                }
            }
        }
        if !writing.is_terminated() {
            writing.await?;
        }
        Ok(())
    }

    /// The wave being written: the one the run records, which only the Converging step
    /// moves on once the wave before has converged. Never worked out afresh from what
    /// is pending: a retry after a crash or an error between the writes and the move to
    /// Converging must not write the next wave unjudged. A run that records no rollout
    /// (planned by an earlier version) has one wave.
    fn wave(&self, plan: &Plan) -> u32 {
        match self.status.rollout.as_ref() {
            Some(rollout) => rollout.current.unwrap_or(0),
            None => plan
                .actions
                .iter()
                .zip(&self.states)
                .filter(|(_, s)| **s == ActionState::Pending)
                .map(|(a, _)| a.wave)
                .min()
                .unwrap_or(0),
        }
    }

    fn record(&mut self, i: usize, result: Result<(), String>) {
        let label = match result {
            Ok(()) => {
                self.states[i] = ActionState::Applied;
                "applied"
            }
            Err(e) => {
                self.states[i] = ActionState::Failed;
                self.errors.push((i, e));
                "failed"
            }
        };
        self.ctx
            .metrics
            .actions
            .get_or_create(&ResultLabels { result: label })
            .inc();
    }

    /// The status as of now, to be written.
    fn snapshot(&mut self, plan: &Plan) -> SyncRunStatus {
        self.status.action_states = Some(self.states.iter().map(|s| s.letter()).collect());
        self.status.progress = Some(progress(&self.states));
        self.status.actions = action_entries(plan, &self.states, &self.errors);
        self.status.clone()
    }

    /// Checks what the plan touched and records anything that still differs. A run
    /// written whole goes on to wait for its objects to converge, within `deadline`.
    async fn finish(self, plan: &Plan, deadline: Duration) -> Result<Action> {
        let drift = verify(
            self.ctx,
            &self.namespace,
            &self.run.spec.repository,
            plan,
            &self.states,
        )
        .await?;
        let mut status = self.status;
        status.drift_after_apply = drift.iter().take(100).cloned().collect();
        let p = progress(&self.states);
        let summary = format!(
            "{} applied, {} failed, {} skipped",
            p.applied, p.failed, p.skipped
        );
        if p.failed > 0 || p.skipped > 0 || !drift.is_empty() {
            let first: Vec<String> = self
                .errors
                .iter()
                .take(5)
                .map(|(i, e)| format!("{}: {e}", plan.actions[*i].reference()))
                .collect();
            let message = format!("plan {}: {summary}; {}", plan.plan_id, first.join("; "));
            let failed = Event::Failed(FailReason::ApplyFailed);
            transition(self.ctx, self.run, status, failed, message).await?;
            return Ok(Action::await_change());
        }
        // Written whole (or its wave): the run now waits for the providers (the
        // Converging step), which sends it on to the next wave.
        let written = convergence::written(plan, &self.states);
        let since = now();
        status.health = Some(RunHealth {
            progressing: written.len().try_into().unwrap_or(u32::MAX),
            deadline: convergence::plus(&since, deadline),
            since,
            ready: 0,
            failed: 0,
            unserved: 0,
            unserved_kinds: Vec::new(),
            objects: Vec::new(),
        });
        let waves = match status.rollout.as_mut() {
            Some(rollout) if rollout.waves.len() > 1 => {
                let wave = *rollout.current.get_or_insert(0);
                rollout.ready_since = None;
                format!("wave {} of ", rollout.describe(wave))
            }
            _ => String::new(),
        };
        let message = format!(
            "{waves}plan {} written: {summary}; waiting for the providers to report {} objects Ready",
            plan.plan_id,
            written.len()
        );
        self.ctx.converging.keep(self.run, written);
        transition(self.ctx, self.run, status, Event::Written, message).await?;
        Ok(Action::requeue(Duration::from_millis(100)))
    }
}

/// Whether `digest` (None: the object is absent or unreadable) is what `action` wanted.
fn as_planned(action: &PlannedAction, present: bool, digest: Option<&str>) -> bool {
    match action.operation {
        Operation::Delete => !present,
        _ => digest.is_some() && digest == action.spec.as_deref().map(spec_digest).as_deref(),
    }
}

/// After applying: is every applied action's object as the plan wanted it? Read from
/// the watch cache as it delivers the writes back; what it has not shown after
/// [`VERIFY_WAIT`] (someone changed it again, or the watch is behind) is read from the
/// API server, one LIST per kind, and what still differs is drift.
async fn verify(
    ctx: &Context,
    namespace: &str,
    repository: &str,
    plan: &Plan,
    states: &[ActionState],
) -> Result<Vec<String>> {
    let mut waiting: Vec<&PlannedAction> = plan
        .actions
        .iter()
        .zip(states)
        .filter(|(_, s)| **s == ActionState::Applied)
        .map(|(a, _)| a)
        .collect();
    let deadline = Instant::now() + VERIFY_WAIT;
    loop {
        waiting.retain(|a| {
            let cached = ctx.fleet.get(a.kind, namespace, &a.name);
            let digest = cached.as_ref().and_then(|o| o.digest.as_deref());
            !as_planned(a, cached.is_some(), digest)
        });
        if waiting.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if waiting.is_empty() {
        return Ok(Vec::new());
    }
    let selector = format!("{REPOSITORY_LABEL}={repository}");
    let mut live: HashMap<(ObjectKind, String), Option<String>> = HashMap::new();
    let kinds: HashSet<ObjectKind> = waiting.iter().map(|a| a.kind).collect();
    for kind in kinds {
        let api = live::api(&ctx.client, namespace, kind);
        for obj in api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
        {
            live.insert((kind, obj.name_any()), obj.digest);
        }
    }
    Ok(waiting
        .into_iter()
        .filter(|a| {
            let now = live.get(&(a.kind, a.name.clone()));
            !as_planned(a, now.is_some(), now.cloned().flatten().as_deref())
        })
        .map(|a| {
            truncate(
                &format!("{}: not as planned after applying", a.reference()),
                256,
            )
        })
        .collect())
}
