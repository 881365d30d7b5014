//! What a repository's status says: the kstatus conditions from its newest run or a
//! failure, the forge condition, and the write itself.

use crate::controller::lifecycle::FailReason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use crate::api::repository::GitopsRepositoryStatus;
use crate::api::syncrun::Phase;
use crate::api::{
    GitopsRepository, Kstatus, SyncRun, apply_status, now, set_condition, short_revision as short,
};
use crate::controller::context::Context;
use crate::controller::error::{Error, Result};

use super::CONTROLLER;

/// Errors that retrying will not fix: they need a change to the spec, Secret or server.
fn stalls(e: &Error) -> bool {
    match e {
        Error::Source(_) => !e.is_transient(),
        Error::Flux(flux) => !flux.is_transient(),
        Error::Secret { .. } | Error::InvalidSpec { .. } => true,
        _ => false,
    }
}

/// Records a failure to fetch or read the spec as conditions and an Event.
pub(super) async fn fail(
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
    k.set(&mut status.conditions, generation, &now());
    write_status(ctx, repo, &status).await?;
    // The reconcile itself succeeds (the failure is recorded), so it is counted here:
    // a stalled repository shows in the error metrics on every check.
    ctx.metrics.error(CONTROLLER, reason);
    if changed {
        ctx.event_at(
            repo,
            "status.conditions",
            EventType::Warning,
            reason,
            "Fetch",
            message,
        )
        .await;
    }
    if stalls(&e) {
        Ok(Action::await_change())
    } else {
        Err(e)
    }
}

/// Ready, Reconciling and Stalled as the newest run makes them.
pub(super) fn conditions_from_newest(
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
        // Waiting for a person, like a plan awaiting approval: not Ready, and not
        // reconciling on its own.
        Some(Phase::Paused) => (
            false,
            false,
            false,
            "Paused",
            format!(
                "the rollout of plan {plan} (revision {rev}) is paused for a choice (SyncRun {}): {}",
                run.name_any(),
                status.message.clone().unwrap_or_default()
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
            let stalled = FailReason::recorded_stalls(&reason);
            let message = status.message.clone().unwrap_or_default();
            let k = Kstatus {
                ready: false,
                reconciling: false,
                stalled,
                reason: &reason,
                message: &message,
            };
            k.set(conditions, generation, &now());
            return;
        }
        Some(Phase::Converging) => (
            false,
            true,
            false,
            "Progressing",
            format!(
                "plan {plan} of revision {rev} written; waiting for the providers (SyncRun {})",
                run.name_any()
            ),
        ),
        // The plan is in the cluster but its machines did not converge: not Ready, and
        // not stalled either (the next revision may fix it).
        Some(Phase::Degraded) => (
            false,
            false,
            false,
            "Degraded",
            status.message.clone().unwrap_or_default(),
        ),
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
    k.set(conditions, generation, &now());
}

/// `SourceVerified`, for a repository with `spec.verify`: from the newest run that read
/// git (rollbacks and drift corrections restore content verified when it was planned).
/// True with the signer once a run verified its revision; False with the reason when
/// the newest was refused. Without `spec.verify` there is no such condition.
pub(super) fn source_verified(
    conditions: &mut Vec<Condition>,
    repo: &GitopsRepository,
    runs: &[SyncRun],
    at: &Time,
) {
    if repo.spec.verify.is_none() {
        conditions.retain(|c| c.type_ != "SourceVerified");
        return;
    }
    let read_git = runs.iter().find_map(|run| {
        let status = run.status.as_ref()?;
        let rev = short(&run.spec.revision);
        if status.phase == Some(Phase::Failed) {
            let reason = crate::api::condition(&status.conditions, "Ready")?
                .reason
                .clone();
            if FailReason::is_unverified(&reason) {
                return Some((false, reason, status.message.clone().unwrap_or_default()));
            }
        }
        let commit = status.source.as_ref()?.commit.as_ref()?;
        commit.verified?;
        let signed = commit.signed_by().unwrap_or_default();
        Some((
            true,
            "Verified".to_owned(),
            format!("revision {rev}: {signed}"),
        ))
    });
    if let Some((verified, reason, message)) = read_git {
        set_condition(
            conditions,
            "SourceVerified",
            verified,
            &reason,
            &message,
            repo.meta().generation,
            at,
        );
    }
}

pub(super) async fn write_status(
    ctx: &Context,
    repo: &GitopsRepository,
    status: &GitopsRepositoryStatus,
) -> Result<()> {
    let mut status = status.clone();
    forge_condition(ctx, repo, &mut status);
    // Reconciles follow every change of the managed objects; while a run applies most
    // of them change nothing here, and need no request.
    if repo.status.as_ref() == Some(&status) {
        return Ok(());
    }
    apply_and_tell(ctx, repo, &status).await
}

/// Writes `status` (all that fleetgate owns of the repository's status) and tells the
/// notifier what the repository now says: a status write prompts no reconcile of its
/// own (see `triggers`), so this is where its conditions are told, whoever wrote them.
pub(in crate::controller) async fn apply_and_tell(
    ctx: &Context,
    repo: &GitopsRepository,
    status: &impl serde::Serialize,
) -> Result<()> {
    let api: Api<GitopsRepository> =
        Api::namespaced(ctx.client.clone(), &repo.namespace().unwrap_or_default());
    let written = apply_status(&api, &repo.name_any(), status).await?;
    let notifier = ctx.notifier.clone();
    tokio::spawn(async move { notifier.repository_changed(&written).await });
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
