//! Rollback as a plan: a run with trigger Rollback whose desired state is the one an
//! older applied run applied (read back from its verified store), planned against the
//! live cluster and gated like any other plan. While it is the newest run, the revision
//! it rolled back from is not planned again by itself; a new revision lifts the hold.

use kube::api::Api;
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::error::{Error, Result};
use super::planstore;
use super::repository::{create_run, sequence};
use crate::api::repository::GitopsRepositoryStatus;
use crate::api::syncrun::{Phase, Trigger};
use crate::api::{GitopsRepository, REPOSITORY_LABEL, SyncRun, annotations};
use crate::fleet::FleetObject;

/// Starts the rollback the repository's rollback-to annotation asks for, once per value.
pub async fn request(
    ctx: &Context,
    repo: &GitopsRepository,
    runs: &[SyncRun],
    revision: &str,
    status: &mut GitopsRepositoryStatus,
) -> Result<Option<SyncRun>> {
    let Some(target) = repo.annotations().get(annotations::ROLLBACK_TO) else {
        return Ok(None);
    };
    if status.last_handled_rollback.as_ref() == Some(target) {
        return Ok(None);
    }
    status.last_handled_rollback = Some(target.clone());
    let refuse = |message: String| async move {
        ctx.event(
            &repo.object_ref(&()),
            true,
            "RollbackRefused",
            "Rollback",
            message,
        )
        .await;
        Ok(None)
    };
    let Some(older) = runs.iter().find(|r| r.name_any() == *target) else {
        let shown = super::context::truncate(target, 253);
        return refuse(format!(
            "rollback refused: {shown} is not a SyncRun of this repository"
        ))
        .await;
    };
    let s = older.status.clone().unwrap_or_default();
    if s.phase != Some(Phase::Applied) || s.desired_state.is_empty() {
        return refuse(format!(
            "rollback refused: SyncRun {target} was not applied, so there is no state it applied to return to"
        ))
        .await;
    }
    let next = runs.first().map_or(1, |r| sequence(r) + 1);
    let created = create_run(
        ctx,
        repo,
        &older.spec.revision,
        Trigger::Rollback,
        next,
        &[
            (annotations::ROLLBACK_OF, target.as_str()),
            (annotations::ROLLBACK_FROM, revision),
        ],
    )
    .await?;
    let message = format!(
        "rollback to what SyncRun {target} applied (revision {}): started SyncRun {}; revision {} is not applied by itself again until a new revision",
        short(&older.spec.revision),
        created.name_any(),
        short(revision)
    );
    ctx.event_related(
        &repo.object_ref(&()),
        Some(created.object_ref(&())),
        false,
        "NewSyncRun",
        "Rollback",
        message,
    )
    .await;
    Ok(Some(created))
}

fn short(revision: &str) -> String {
    revision.chars().take(12).collect()
}

/// Whether `newest` (a repository's newest run from git) is a rollback that holds
/// `revision` back: the revision it rolled back from.
pub fn holds(newest: &SyncRun, revision: &str) -> bool {
    newest.spec.trigger == Trigger::Rollback
        && newest
            .annotations()
            .get(annotations::ROLLBACK_FROM)
            .map(String::as_str)
            == Some(revision)
}

/// The desired state a rollback run returns to: what the run it names applied, checked
/// against the digest recorded when that run planned. Err: why it cannot be had.
pub async fn desired(ctx: &Context, run: &SyncRun) -> Result<Result<Vec<FleetObject>, String>> {
    let Some(target) = run.annotations().get(annotations::ROLLBACK_OF) else {
        return Ok(Err(format!(
            "a Rollback run needs the {} annotation",
            annotations::ROLLBACK_OF
        )));
    };
    let api: Api<SyncRun> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    let Some(older) = api.get_opt(target).await? else {
        return Ok(Err(format!(
            "SyncRun {target} no longer exists; nothing to roll back to"
        )));
    };
    if older.labels().get(REPOSITORY_LABEL) != Some(&run.spec.repository) {
        return Ok(Err(format!(
            "SyncRun {target} belongs to another repository"
        )));
    }
    let s = older.status.clone().unwrap_or_default();
    if s.phase != Some(Phase::Applied) {
        return Ok(Err(format!("SyncRun {target} was not applied")));
    }
    match planstore::load(
        &ctx.client,
        &older,
        &s.desired_state,
        s.desired_state_digest.as_deref(),
    )
    .await
    {
        Ok(objects) => Ok(Ok(objects)),
        Err(e @ Error::PlanTampered { .. }) => Ok(Err(e.to_string())),
        Err(e) => Err(e),
    }
}
