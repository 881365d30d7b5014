//! A written run waiting for its objects to converge: `Converging` until the providers
//! report every object it wrote Ready for its new generation (`Applied`), or a provider
//! reports a terminal failure or the repository's progress deadline passes (`Degraded`).
//! A newer run of the repository that starts applying supersedes it (the repository
//! does that). Nothing is written to the fleet here, so no authorization is needed.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use crate::api::repository::RolloutSpec;
use crate::api::syncrun::SyncRunStatus;
use crate::api::{SyncRun, now};
use crate::controller::context::Context;
use crate::controller::convergence::{self, WrittenObjects, between, plus};
use crate::controller::error::Result;
use crate::controller::lifecycle::{Event, transition, write_status};
use crate::controller::planstore;
use crate::fleet::health::{Degradation, Observed, Tally};
use crate::fleet::rollout::gate::{self, Gate, Step};
use crate::fleet::{ObjectKind, ObjectRef};

use super::paused;

/// How often a converging run looks at its objects again. The watch cache is read, so
/// a look costs no request but the one LIST of registration Leases.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// Looks at the run's objects and moves it on when they have converged or cannot.
pub(super) async fn converge(
    run: &SyncRun,
    ctx: &Context,
    status: SyncRunStatus,
) -> Result<Action> {
    let at = now();
    // Written by the engine when the writes were done; absent only for a run written
    // by an earlier version, which gets the default deadline from now.
    let (since, deadline) = status.health.as_ref().map_or_else(
        || {
            (
                at.clone(),
                plus(&at, RolloutSpec::DEFAULT_PROGRESS_DEADLINE),
            )
        },
        |h| (h.since.clone(), h.deadline.clone()),
    );
    let waited = between(&since, &at);
    let plan = status.plan_id.clone().unwrap_or_default();
    let (written, mut observed, served) = match look(run, ctx, &status).await {
        Ok(looked) => looked,
        // The objects cannot be judged (the stored plan is gone or was changed, the
        // Leases cannot be listed): retried with backoff, but never past the deadline,
        // so that no run converges forever.
        Err(e) if waited >= between(&since, &deadline) => {
            finished(ctx, run, waited);
            let why = Degradation::ProgressDeadlineExceeded;
            let message = format!(
                "plan {plan} applied but its objects could not be judged by the deadline: {e}"
            );
            transition(ctx, run, status, Event::Degraded(why), message).await?;
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e),
    };
    let rollout = status.rollout.clone().unwrap_or_default();
    // Objects a person accepted at a pause no longer hold the rollout back.
    if !rollout.accepted.is_empty() {
        observed.retain(|o| {
            let named = ObjectRef::new(o.kind, o.name.clone()).to_string();
            !rollout.accepted.contains(&named)
        });
    }
    let namespace = run.namespace().unwrap_or_default();
    let regressed = rollout.baseline.as_ref().map_or_else(Vec::new, |b| {
        let down = convergence::out_of_service(&ctx.fleet, &namespace, &run.spec.repository);
        let down_for = ctx.converging.down_for(run, &down);
        convergence::regressions_since(
            &down,
            b,
            &written,
            &rollout.accepted,
            |r| down_for.get(r).copied().unwrap_or_default(),
            // A neighbour's link or session is down for a moment around any change
            // (BGP reconnects, a virtual IP moves): only one down for as long as the
            // wave may take to converge is taken for a regression.
            between(&since, &deadline),
        )
    });
    let tally = Tally::of(&observed);
    let deadline_after = between(&since, &deadline);
    let mut next = status.clone();
    next.health = Some(convergence::report(
        &observed,
        &served,
        since,
        deadline.clone(),
    ));
    let gate = Gate {
        max_failures: rollout.max_failures,
        soak: rollout.soak(),
        waves_left: status.waves_left(),
    };
    let ready_for = rollout.ready_since.as_ref().map(|t| between(t, &at));
    // A wave that was soaking had converged: whatever this look finds, its deadline has
    // not run out (a slip restarts the soak and the deadline, below).
    let waited_for_gate = if ready_for.is_some() {
        Duration::ZERO
    } else {
        waited
    };
    let regressions = regressed.len().try_into().unwrap_or(u32::MAX);
    let step = gate::next(
        tally,
        regressions,
        waited_for_gate,
        deadline_after,
        ready_for,
        gate,
    );
    let wave = match (&status.rollout, rollout.current) {
        (Some(r), Some(w)) if r.waves.len() > 1 => format!("wave {} of ", r.describe(w)),
        _ => String::new(),
    };
    match step {
        Step::Converged => {
            finished(ctx, run, waited);
            let unserved = next
                .health
                .as_ref()
                .map(|h| h.unserved_kinds.join(", "))
                .unwrap_or_default();
            let message = if tally.ready == 0 && tally.unserved > 0 {
                format!(
                    "plan {plan} applied: {} objects written, none waited for (no provider serves {unserved} here)",
                    tally.unserved
                )
            } else {
                format!("plan {plan} applied and converged: {}", counted(tally))
            };
            transition(ctx, run, next, Event::Applied, message).await?;
            Ok(Action::await_change())
        }
        Step::NextWave => {
            // A suspended repository holds its rollout between waves: the on-call's way
            // to stop one without deleting anything.
            if super::repository_suspended(ctx, run).await? {
                let held = format!(
                    "{wave}plan {plan} converged ({}); the repository is suspended, so the next wave waits",
                    counted(tally)
                );
                if status.message.as_deref() != Some(held.as_str()) {
                    next.message = Some(held);
                    write_status(ctx, run, &next).await?;
                }
                return Ok(Action::requeue(LOOK_EVERY));
            }
            finished(ctx, run, waited);
            // A sliced plan whose wave still has actions of slices not yet approved:
            // the wave is not done, it waits for their owners (the wave stays).
            let current = rollout.current.unwrap_or(0);
            if let Some(slices) = &status.slices
                && slices.waits_by(&status.pending(), current)
            {
                let message = format!(
                    "{wave}plan {plan}: the approved slices converged ({}); the rest waits for its owners to approve",
                    counted(tally)
                );
                transition(ctx, run, next, Event::AwaitingSlices, message).await?;
                return Ok(Action::await_change());
            }
            // Past waves with nothing left to write (all of it left out at a pause).
            let following = match &status.slices {
                Some(slices) => slices
                    .next_pending_after(&status.pending(), current)
                    .unwrap_or(current + 1),
                None => rollout.current.map_or(0, |w| w + 1),
            };
            if let Some(r) = next.rollout.as_mut() {
                r.ready_since = None;
                // The only place the wave moves on: the engine writes exactly this one.
                r.current = Some(following);
            }
            let message = format!(
                "{wave}plan {plan} converged ({}); wave {} is next, once it is still authorized and the change windows allow",
                counted(tally),
                rollout.describe(following)
            );
            transition(ctx, run, next, Event::WaveConverged, message).await?;
            Ok(Action::requeue(Duration::from_millis(100)))
        }
        Step::Paused(why) => {
            finished(ctx, run, waited);
            let mut objects: Vec<ObjectRef> = observed
                .iter()
                .filter(|o| !o.standing.is_settled())
                .map(|o| ObjectRef::new(o.kind, o.name.clone()))
                .collect();
            objects.extend(regressed.iter().cloned());
            let said = match why {
                Degradation::HealthRegression => format!(
                    "{wave}plan {plan}: objects around the rollout regressed (HealthRegression){}; its own: {}",
                    regressed_said(&regressed),
                    counted(tally)
                ),
                _ => format!(
                    "{wave}plan {plan} did not converge ({}): {}{}",
                    why.as_str(),
                    counted(tally),
                    regressed_said(&regressed)
                ),
            };
            paused::pause(run, ctx, next, why, objects, said).await
        }
        Step::Degraded(why) => {
            finished(ctx, run, waited);
            let mut named = convergence::not_converged(&observed, 100);
            named.extend(
                regressed
                    .iter()
                    .take(100)
                    .map(|r| format!("{r}: out of service since the run started")),
            );
            let first: Vec<&str> = named.iter().take(5).map(String::as_str).collect();
            let stopped = if gate.waves_left {
                "; the waves after it are not written"
            } else {
                ""
            };
            let message = format!(
                "{wave}plan {plan} applied but did not converge ({}): {}{}; {}{stopped}",
                why.as_str(),
                counted(tally),
                regressed_said(&regressed),
                first.join("; ")
            );
            next.drift_after_apply.extend(named);
            next.drift_after_apply.truncate(100);
            transition(ctx, run, next, Event::Degraded(why), message).await?;
            Ok(Action::await_change())
        }
        Step::Waiting | Step::Soaking { .. } => {
            let soaking = matches!(step, Step::Soaking { .. });
            // The soak counts from the first look that found everything settled, and
            // starts again whenever a look does not.
            let mut broken = false;
            if let Some(r) = next.rollout.as_mut() {
                r.ready_since = match (soaking, r.ready_since.take()) {
                    (true, Some(since)) => Some(since),
                    (true, None) => Some(at.clone()),
                    (false, since) => {
                        broken = since.is_some();
                        None
                    }
                };
            }
            // A wave that had converged and then slipped during its soak gets its
            // progress deadline afresh from now: a blip late in a long soak is waited
            // out, not taken for a wave that never converged.
            if broken && let Some(h) = next.health.as_mut() {
                h.deadline = plus(&at, between(&h.since, &h.deadline));
                h.since = at.clone();
            }
            let soak_changed = next.rollout.as_ref().map(|r| &r.ready_since)
                != status.rollout.as_ref().map(|r| &r.ready_since);
            // Each write wakes the run again: written when something changed, at most
            // once per look (a soak starting or breaking is always written: it is what
            // the next wave waits on).
            if soak_changed
                || (next.health != status.health && ctx.converging.may_write(run, LOOK_EVERY))
            {
                next.message = Some(match step {
                    Step::Soaking { left } => format!(
                        "{wave}plan {plan} converged ({}); soaking {} more before the next wave",
                        counted(tally),
                        humantime::format_duration(Duration::from_secs(left.as_secs()))
                    ),
                    _ => format!(
                        "{wave}plan {plan} written; waiting for the providers: {}",
                        counted(tally)
                    ),
                });
                write_status(ctx, run, &next).await?;
            }
            let left = match step {
                Step::Soaking { left } => left,
                _ => between(&at, &deadline),
            };
            Ok(Action::requeue(
                LOOK_EVERY.min(left).max(Duration::from_millis(100)),
            ))
        }
    }
}

/// What the run wrote, its objects as their providers report them now, and the kinds
/// served.
async fn look(
    run: &SyncRun,
    ctx: &Context,
    status: &SyncRunStatus,
) -> Result<(WrittenObjects, Vec<Observed>, BTreeSet<ObjectKind>)> {
    let written = written_objects(run, ctx, status).await?;
    let namespace = run.namespace().unwrap_or_default();
    ctx.fleet.wait_until_ready().await?;
    let served = convergence::served_kinds(&ctx.client, &namespace).await?;
    let observed = convergence::observe(&ctx.fleet, &namespace, &written, &served);
    Ok((written, observed, served))
}

/// `; 2 objects fine before the run now out of service (fleetnode/a, …)`, or nothing.
fn regressed_said(regressed: &[ObjectRef]) -> String {
    if regressed.is_empty() {
        return String::new();
    }
    let first: Vec<String> = regressed.iter().take(5).map(ObjectRef::to_string).collect();
    let more = if regressed.len() > 5 { ", …" } else { "" };
    format!(
        "; {} objects fine before the run now out of service ({}{more})",
        regressed.len(),
        first.join(", ")
    )
}

/// The run is over: what was kept for it goes, and how long it waited is recorded.
fn finished(ctx: &Context, run: &SyncRun, waited: Duration) {
    ctx.converging.forget(run);
    ctx.metrics.convergence.observe(waited.as_secs_f64());
}

/// The objects the run wrote: kept since the engine finished, or after a restart read
/// once from its stored plan (checked against its recorded digest, as the engine reads
/// it) and its action states.
async fn written_objects(
    run: &SyncRun,
    ctx: &Context,
    status: &SyncRunStatus,
) -> Result<WrittenObjects> {
    if let Some(written) = ctx.converging.get(run) {
        return Ok(written);
    }
    let Some(at) = status.full_plan.as_ref() else {
        return Ok(ctx.converging.keep(run, Vec::new()));
    };
    let plan = planstore::load_plan(&ctx.client, run, at).await?;
    let written = convergence::written(&plan, &status.recorded_states());
    Ok(ctx.converging.keep(run, written))
}

fn counted(t: Tally) -> String {
    let mut parts = vec![format!("{} Ready", t.ready)];
    for (n, what) in [
        (t.progressing, "progressing"),
        (t.failed, "failed"),
        (t.unserved, "of kinds no provider serves"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(", ")
}
