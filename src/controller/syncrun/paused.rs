//! Phase Paused: a rollout stopped at a wave (failures past its budget, the progress
//! deadline, or a regression of objects around it) with waves left, waiting for people
//! with the approve verb to choose, by the same governance as the plan (quorum, groups,
//! the requester rule; windows when the next wave is cleared):
//! - `continue`: the objects the pause names are accepted as they are; the next wave is
//!   cleared like any (Scheduled, authorized again, windows);
//! - `leave-out`: the same, and what remains of the plan for those objects and for what
//!   depends on them is left out (never written);
//! - `rollback`: the run ends Degraded and the repository starts a Rollback run to the
//!   last run that applied whole, gated like any plan.
//!
//! A choice is the approve annotation `<choice>:<decision id>`, stamped with who set it
//! like an approval; one naming another pause is refused. Nothing is written to the
//! fleet here: the next wave is written by the engine once cleared again.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::approval::{refuse, stamped_approver};
use super::holds::governance_unless_held;
use super::warn;
use crate::api::pause::{MAX_ACCEPTED, MAX_DECISIONS, MAX_PAUSED, RunDecision, RunPause};
use crate::api::syncrun::{ActionState, Phase, SyncRunStatus, Trigger};
use crate::api::{GitopsRepository, REPOSITORY_LABEL, SyncRun, annotations, now};
use crate::controller::context::Context;
use crate::controller::drift;
use crate::controller::error::Result;
use crate::controller::governance::{self, QuorumOutcome, quorum};
use crate::controller::lifecycle::{
    Event, action_entries, progress, recorded_errors, transition, written_status,
};
use crate::controller::planstore;
use crate::controller::repository::sequence;
use crate::fleet::ObjectRef;
use crate::fleet::health::Degradation;
use crate::fleet::rollout::pause::{self, Choice, Decision};

/// Pauses a converging run at its wave for `why`, naming `objects` (the first
/// [`MAX_PAUSED`] of them decide the pause's id).
pub(super) async fn pause(
    run: &SyncRun,
    ctx: &Context,
    mut status: SyncRunStatus,
    why: Degradation,
    mut objects: Vec<ObjectRef>,
    said: String,
) -> Result<Action> {
    objects.sort();
    objects.dedup();
    let more = objects.len().saturating_sub(MAX_PAUSED);
    objects.truncate(MAX_PAUSED);
    let rollout = status.rollout.get_or_insert_with(Default::default);
    let wave = rollout.current.unwrap_or(0);
    let plan = status.plan_id.clone().unwrap_or_default();
    let at = now();
    let decision_id = pause::decision_id(&plan, wave, &objects, &at.0.to_string());
    // A Deletion run has nothing to roll back to: the repository is going, and starts
    // no runs meanwhile.
    let rollback_to = match run.spec.trigger {
        Trigger::Deletion => None,
        _ => rollback_target(ctx, run).await?,
    };
    let choices = match rollback_to {
        Some(_) => "continue, leave-out or rollback",
        None => "continue or leave-out (no earlier run applied whole to roll back to)",
    };
    let message = format!(
        "{said}; paused: choose {choices} with kubectl fleet decide -n {} {} <choice> (the approve annotation {}=<choice>:{decision_id})",
        run.namespace().unwrap_or_default(),
        run.name_any(),
        annotations::APPROVE
    );
    // Choices still counting toward an earlier pause are over with it.
    status.approvals.retain(|r| !is_choice(&r.plan_id));
    let rollout = status.rollout.get_or_insert_with(Default::default);
    rollout.ready_since = None;
    rollout.pause = Some(RunPause {
        reason: why.as_str().to_owned(),
        wave,
        objects: objects.iter().map(ObjectRef::to_string).collect(),
        more: more.try_into().unwrap_or(u32::MAX),
        decision_id,
        at,
        rollback_to,
    });
    status.refused_approval = None;
    transition(ctx, run, status, Event::Paused(why), message).await?;
    Ok(Action::await_change())
}

/// The run a rollback restores: the repository's newest run before `run` that applied
/// whole under an authorization (the drift baseline, among earlier runs).
async fn rollback_target(ctx: &Context, run: &SyncRun) -> Result<Option<String>> {
    let api: Api<SyncRun> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    let selector = format!("{REPOSITORY_LABEL}={}", run.spec.repository);
    let own = sequence(run);
    let mut earlier: Vec<SyncRun> = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|r| sequence(r) < own && r.phase() == Some(Phase::Applied))
        .collect();
    earlier.sort_by_key(|r| std::cmp::Reverse(sequence(r)));
    Ok(drift::baseline(&earlier).map(ResourceExt::name_any))
}

/// The Paused step: reads a choice from the approve annotation and counts it.
pub(super) async fn decide(
    run: &SyncRun,
    ctx: &Context,
    mut status: SyncRunStatus,
) -> Result<Action> {
    let a = run.annotations();
    let gov = match governance_unless_held(run, ctx, &mut status).await? {
        Ok(gov) => gov,
        Err(held) => return Ok(held),
    };
    let Some(paused) = status.rollout.as_ref().and_then(|r| r.pause.clone()) else {
        // Only `pause` leads here, and it records the pause in the same write.
        return Err(crate::controller::error::Error::IllegalTransition(
            "a Paused run records no pause".into(),
        ));
    };
    // A choice whose quorum was recorded but not yet carried out (the controller
    // stopped in between) is carried out now; should two have met theirs, the most
    // careful goes first.
    for choice in [Choice::Rollback, Choice::LeaveOut, Choice::Continue] {
        let requirement = gov.choice_requirement(&status, choice);
        let subject = Decision {
            choice,
            id: paused.decision_id.clone(),
        }
        .subject();
        let tally = quorum::tally(&status.approvals, &subject, &requirement, now().0);
        if tally.met() {
            let by = tally.approvers.join(",");
            return carry_out(run, ctx, status, &paused, choice, by).await;
        }
    }
    let Some(value) = a.get(annotations::APPROVE) else {
        if status.refused_approval.is_some() {
            status.refused_approval = None;
            written_status(ctx, run, &status).await?;
        }
        return Ok(Action::await_change());
    };
    if status.refused_approval.as_deref() == Some(value.as_str()) {
        return Ok(Action::await_change());
    }
    let id = &paused.decision_id;
    let decision = match value.parse::<Decision>() {
        Ok(d) if d.id == *id => d,
        Ok(d) => {
            let message = format!(
                "choice `{d}` names another pause; this run is paused at {id}: nothing was done"
            );
            return refuse(run, ctx, status, value, message).await;
        }
        Err(e) => {
            let message = format!("{e}; this run is paused at {id}: nothing was done");
            return refuse(run, ctx, status, value, message).await;
        }
    };
    if decision.choice == Choice::Rollback && paused.rollback_to.is_none() {
        let message = format!(
            "choice `{decision}` refused: no earlier run of {} applied whole, so there is nothing to roll back to; choose continue or leave-out",
            run.spec.repository
        );
        return refuse(run, ctx, status, value, message).await;
    }
    let approver = match stamped_approver(run, ctx) {
        Some(user) => user,
        None => {
            let message = format!(
                "choice `{decision}` refused: it carries no {} annotation, so who chose cannot be verified (are the chart's admission policies installed?); nothing was done",
                annotations::APPROVED_BY
            );
            return refuse(run, ctx, status, value, message).await;
        }
    };
    let groups = quorum::groups(a.get(annotations::APPROVED_BY_GROUPS));
    let requester = a.get(annotations::REQUESTED_BY).map(String::as_str);
    let subject = decision.subject();
    match gov.count_for(&mut status, &subject, &approver, groups, requester, now().0) {
        QuorumOutcome::Met(tally) => {
            let by = tally.approvers.join(",");
            let written = written_status(ctx, run, &status).await?;
            if !governance::clear_approval(&ctx.client, run, Some(&written)).await? {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            // Read again: the choice is recorded and its annotation gone; the next
            // write must be against the run as it is now, and only if it is still
            // paused at this pause (a newer run may have superseded it meanwhile).
            let api: Api<SyncRun> =
                Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
            let run = api.get(&run.name_any()).await?;
            let status = run.status.clone().unwrap_or_default();
            let still = status.rollout.as_ref().and_then(|r| r.pause.as_ref());
            if run.phase() != Some(Phase::Paused)
                || still.map(|p| &p.decision_id) != Some(&paused.decision_id)
            {
                return Ok(Action::requeue(Duration::from_millis(100)));
            }
            carry_out(&run, ctx, status, &paused, decision.choice, by).await
        }
        QuorumOutcome::Refused(message) => {
            let written = warn(ctx, run, &status, "ApprovalRefused", "Decide", message).await?;
            clear(ctx, run, &written).await
        }
        QuorumOutcome::Waiting { tally, added } => {
            let counted = match added {
                true => format!("choice `{subject}` by {approver} recorded"),
                false => format!("{approver} already chose `{subject}`; a person counts once"),
            };
            let message = format!(
                "{counted}: {}; the next person chooses with: kubectl fleet decide {} {}",
                tally.describe(),
                run.name_any(),
                decision.choice
            );
            status.message = Some(message.clone());
            let written = written_status(ctx, run, &status).await?;
            let (told, reason) = match added {
                true => (EventType::Normal, "ApprovalRecorded"),
                false => (EventType::Warning, "ApprovalRepeated"),
            };
            ctx.event_at(run, "metadata.annotations", told, reason, "Decide", message)
                .await;
            clear(ctx, run, &written).await
        }
    }
}

async fn clear(ctx: &Context, run: &SyncRun, written: &SyncRun) -> Result<Action> {
    match governance::clear_approval(&ctx.client, run, Some(written)).await? {
        true => Ok(Action::await_change()),
        false => Ok(Action::requeue(Duration::from_millis(200))),
    }
}

/// Does what the quorum chose.
async fn carry_out(
    run: &SyncRun,
    ctx: &Context,
    mut status: SyncRunStatus,
    paused: &RunPause,
    choice: Choice,
    by: String,
) -> Result<Action> {
    let plan_id = status.plan_id.clone().unwrap_or_default();
    let stored = match status
        .full_plan
        .clone()
        .filter(|_| choice != Choice::Rollback)
    {
        Some(at) => Some(planstore::load_plan(&ctx.client, run, &at).await),
        None => None,
    };
    let stored = match stored {
        Some(Ok(plan)) if plan.actions.len() == status.recorded_states().len() => Some(plan),
        // Without the plan nothing can be left out safely: the choice is refused (its
        // votes dropped, so it is not taken up again) and the run stays paused for
        // another. Going on needs no plan here; the engine reads and verifies it anyway.
        Some(_) | None if choice == Choice::LeaveOut => {
            let message = format!(
                "plan {plan_id}: leave-out chosen by {by} cannot be carried out: the stored plan is gone, changed or does not match the run's action states; nothing was left out. Choose continue or rollback"
            );
            let subject = format!("{choice}:{}", paused.decision_id);
            status.approvals.retain(|r| r.plan_id != subject);
            warn(ctx, run, &status, "ApprovalRefused", "Decide", message).await?;
            return Ok(Action::await_change());
        }
        _ => None,
    };
    // The votes are recorded as the decision now; they no longer take room from the
    // plan's own approvals.
    status.approvals.retain(|r| !is_choice(&r.plan_id));
    let rollout = status.rollout.get_or_insert_with(Default::default);
    rollout.pause = None;
    rollout.decisions.push(RunDecision {
        choice: choice.as_str().to_owned(),
        decision_id: paused.decision_id.clone(),
        wave: paused.wave,
        by: by.clone(),
        at: now(),
    });
    let excess = rollout.decisions.len().saturating_sub(MAX_DECISIONS);
    rollout.decisions.drain(..excess);
    let named = paused.objects.len() + paused.more as usize;
    if choice == Choice::Rollback {
        let target = paused.rollback_to.clone().unwrap_or_default();
        request_rollback(ctx, run, &target, paused).await?;
        let message = format!(
            "plan {plan_id}: {by} chose to roll back at wave {} ({named} objects not Ready): the repository starts a Rollback run to what SyncRun {target} applied, which waits for approval like any plan; the waves after it are not written",
            paused.wave + 1
        );
        transition(ctx, run, status, Event::Decided(choice), message).await?;
        return Ok(Action::await_change());
    }
    let mut not_kept = 0;
    for o in &paused.objects {
        if rollout.accepted.contains(o) {
            continue;
        }
        match rollout.accepted.len() < MAX_ACCEPTED {
            true => rollout.accepted.push(o.clone()),
            false => not_kept += 1,
        }
    }
    let mut left = 0;
    let mut following = paused.wave + 1;
    if let Some(plan) = stored {
        let mut states = status.recorded_states();
        if choice == Choice::LeaveOut {
            let pending: Vec<bool> = states.iter().map(|s| *s == ActionState::Pending).collect();
            let out = pause::left_out(&plan, &pending, &paused.references());
            left = out.len();
            for i in out {
                states[i] = ActionState::LeftOut;
            }
            let errors = recorded_errors(&plan, &status.actions);
            status.action_states = Some(states.iter().map(|s| s.letter()).collect());
            status.progress = Some(progress(&states));
            status.actions = action_entries(&plan, &states, &errors);
        }
        let pending: Vec<bool> = states.iter().map(|s| *s == ActionState::Pending).collect();
        following = pause::following_wave(&plan, &pending, paused.wave).unwrap_or(following);
    }
    // A sliced plan may still hold actions of slices not yet approved in this wave or
    // before it: the rollout stays there until they are written. Read from the run's
    // own record, so that it holds when the stored plan cannot be read too.
    if let Some(slices) = &status.slices
        && let Some(earliest) = slices.earliest_pending(&status.pending())
    {
        following = following.min(earliest);
    }
    if let Some(r) = status.rollout.as_mut() {
        r.current = Some(following);
    }
    let what = match choice {
        Choice::LeaveOut => format!(
            "left {named} objects out as they are, and {left} actions still to be written for them or what depends on them"
        ),
        _ => format!("accepted {named} objects as they are"),
    };
    let what = match not_kept {
        0 => what,
        n => format!(
            "{what} ({n} of them past the {MAX_ACCEPTED} a run records: they hold the rollout back again)"
        ),
    };
    let message = format!(
        "plan {plan_id}: {by} chose {choice} at wave {}: {what}; the next wave goes out once it is still authorized and the change windows allow",
        paused.wave + 1
    );
    transition(ctx, run, status, Event::Decided(choice), message).await?;
    Ok(Action::requeue(Duration::from_millis(100)))
}

/// Asks the repository for a rollback to `target`, as the controller (its role holds
/// the approve verb the repository policy requires). The value is the pause's own, so
/// that doing this again after a failed write asks for nothing new.
async fn request_rollback(
    ctx: &Context,
    run: &SyncRun,
    target: &str,
    paused: &RunPause,
) -> Result<()> {
    let api: Api<GitopsRepository> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    let value = format!("{target}@{}", paused.at.0);
    let patch = json!({"metadata": {"annotations": {annotations::ROLLBACK_TO: value}}});
    api.patch(
        &run.spec.repository,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Whether an approval record is a choice at a pause (`<choice>:pause-…`) rather than an
/// approval of a plan.
fn is_choice(subject: &str) -> bool {
    subject
        .split_once(':')
        .is_some_and(|(choice, id)| choice.parse::<Choice>().is_ok() && id.starts_with("pause-"))
}
