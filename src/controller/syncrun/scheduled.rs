//! Phase Scheduled: an approved run waiting for a change window. It is rejected,
//! superseded by a newer revision, approved further (toward an override's quorum), or
//! applied once the windows allow, if it is still authorized then.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;

use super::clearing::apply_approved;
use super::holds::{expire, governance_unless_held};
use crate::api::short_revision as short;
use crate::api::syncrun::{SyncRunStatus, Trigger};
use crate::api::{REPOSITORY_LABEL, SyncRun, annotations, now};
use crate::controller::authorization::{self, Content, Refusal, Withheld};
use crate::controller::context::Context;
use crate::controller::error::Result;
use crate::controller::governance::{self, quorum};
use crate::controller::lifecycle::{
    Clearance, Withdrawal, reject, supersede, withdraw_authorization, written_status,
};
use crate::controller::planstore;
use crate::controller::repository::sequence;

pub(super) async fn scheduled(
    run: &SyncRun,
    ctx: &Context,
    mut status: SyncRunStatus,
) -> Result<Action> {
    let a = run.annotations();
    if let Some(reason) = a.get(annotations::REJECT) {
        return reject(ctx, run, status, reason).await;
    }
    let gov = match governance_unless_held(run, ctx, &mut status).await? {
        Ok(gov) => gov,
        Err(held) => return Ok(held),
    };
    if let Some(newer) = newer_run(ctx, run).await? {
        let message = format!(
            "superseded by SyncRun {} (revision {}): an older revision never applies after a newer one",
            newer.name_any(),
            short(&newer.spec.revision)
        );
        supersede(ctx, run, status, message).await?;
        return Ok(Action::await_change());
    }
    // A suspended repository holds a rollout under way before its next wave, however
    // the run got here (a wave converged, or people chose to go on at a pause).
    if status.wrote_any() && super::repository_suspended(ctx, run).await? {
        let held = "the repository is suspended, so the next wave waits".to_owned();
        if status.message.as_deref() != Some(held.as_str()) {
            status.message = Some(held);
            written_status(ctx, run, &status).await?;
        }
        return Ok(Action::requeue(Duration::from_secs(5)));
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
        let before = status.approvals.clone();
        let _ = gov.count(&mut status, user, groups, requester, now().0);
        let written = match status.approvals != before {
            true => Some(written_status(ctx, run, &status).await?),
            false => None,
        };
        if !governance::clear_approval(&ctx.client, run, written.as_ref()).await? {
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
    let mut decided = authorization::authorize(Content::Recorded { plan_id: &plan_id }, &facts);
    // A policy's approval is decided on the plan itself (its deletions, what it
    // restores): read the stored plan, verified as the engine reads it. The next wave of
    // a rollout a policy approved comes this way.
    if let Err(Refusal::Unapproved {
        withheld: Some((_, Withheld::NotRead)),
        ..
    }) = &decided
        && let Some(at) = status.full_plan.as_ref()
    {
        let plan = planstore::load_plan(&ctx.client, run, at).await?;
        decided = authorization::authorize(Content::Plan(&plan), &facts);
    }
    let authorization = match decided {
        Ok(authorization) => authorization,
        Err(refusal) => {
            let why = format!(
                "{refusal}: approvals expired or the governance policy changed while it waited; approve again"
            );
            let expired = Withdrawal::ApprovalExpired;
            return withdraw_authorization(ctx, run, status, expired, why).await;
        }
    };
    let opened = Clearance::WindowOpened;
    apply_approved(run, ctx, &gov, status, &authorization, opened).await
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
