//! What deleting a GitopsRepository does to the fleet objects it manages, as its
//! `spec.deletionPolicy` says. `Orphan` (the default) leaves them, unlabelled by nothing,
//! for another repository or a person to adopt; no finalizer is set. `Delete` sets a
//! finalizer; on deletion a SyncRun with trigger `Deletion` plans the removal of every
//! object the repository manages, approved under the same rules as any plan that deletes
//! (`Required` and `AutoApplyNonDestructive` wait for a person; `Auto` applies), and the
//! finalizer goes once that run is Applied. A rejected or failed removal keeps the
//! repository (and its objects) until the run is deleted, which plans the removal again,
//! or the policy is set to `Orphan`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{announce_run, apply_and_tell, create_run, sequence};
use crate::api::labels;
use crate::api::repository::DeletionPolicy;
use crate::api::syncrun::{ActionState, Phase, Trigger};
use crate::api::{GitopsRepository, Kstatus, REPOSITORY_LABEL, SyncRun, now};
use crate::controller::context::Context;
use crate::controller::error::Result;

/// Keeps the finalizer in line with the policy; on deletion, drives the removal. Returns
/// the action to end the reconcile with while the repository is being deleted.
pub async fn reconcile(ctx: &Context, repo: &GitopsRepository) -> Result<Option<Action>> {
    let has_finalizer = repo
        .finalizers()
        .iter()
        .any(|f| f == labels::DELETE_FINALIZER);
    let delete = repo.spec.deletion_policy == DeletionPolicy::Delete;
    if repo.metadata.deletion_timestamp.is_none() {
        if delete != has_finalizer {
            set_finalizer(ctx, repo, delete).await?;
        }
        return Ok(None);
    }
    if !has_finalizer {
        return Ok(Some(Action::await_change()));
    }
    if !delete {
        set_finalizer(ctx, repo, false).await?;
        return Ok(Some(Action::await_change()));
    }
    let ns = repo.namespace().unwrap_or_default();
    let runs_api: Api<SyncRun> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = format!("{REPOSITORY_LABEL}={}", repo.name_any());
    let runs = runs_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let removal = runs
        .iter()
        .filter(|r| r.spec.trigger == Trigger::Deletion)
        .max_by_key(|r| sequence(r));
    let (ready, reason, message) = match removal {
        None => {
            let status = repo.status.clone().unwrap_or_default();
            let revision = status
                .last_applied_revision
                .or(status.last_fetched_revision)
                .unwrap_or_else(|| "0".repeat(40));
            let next = runs.iter().map(sequence).max().unwrap_or(0) + 1;
            let run = create_run(ctx, repo, &revision, Trigger::Deletion, next, &[]).await?;
            let message = format!(
                "deleting: SyncRun {} plans the removal of every object this repository manages",
                run.name_any()
            );
            announce_run(ctx, repo, &run, "Delete", message.clone()).await;
            (false, "Deleting", message)
        }
        Some(run) => match run.phase() {
            // Removed whole: a removal stopped part-way through its waves has not, nor
            // one that left deletions out at a pause.
            Some(Phase::Applied | Phase::Degraded | Phase::NoChanges)
                if run.status.as_ref().is_none_or(|s| {
                    let states = s.recorded_states();
                    !states.contains(&ActionState::Pending)
                        && !states.contains(&ActionState::LeftOut)
                }) =>
            {
                set_finalizer(ctx, repo, false).await?;
                return Ok(Some(Action::await_change()));
            }
            Some(
                Phase::Failed
                | Phase::Rejected
                | Phase::Superseded
                | Phase::Expired
                | Phase::Applied
                | Phase::Degraded
                | Phase::NoChanges,
            ) => (
                false,
                "DeletionBlocked",
                format!(
                    "the removal planned by SyncRun {} did not apply ({}); delete that run to plan it again, or set spec.deletionPolicy to Orphan to keep the objects",
                    run.name_any(),
                    run.phase().map_or("", Phase::as_str)
                ),
            ),
            _ => (
                false,
                "Deleting",
                format!(
                    "deleting: SyncRun {} removes every object this repository manages",
                    run.name_any()
                ),
            ),
        },
    };
    let mut conditions: Vec<Condition> = repo
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    Kstatus {
        ready,
        reconciling: reason == "Deleting",
        stalled: reason == "DeletionBlocked",
        reason,
        message: &message,
    }
    .set(&mut conditions, repo.meta().generation, &now());
    apply_and_tell(ctx, repo, &json!({"conditions": conditions})).await?;
    Ok(Some(Action::await_change()))
}

/// Adds or removes the finalizer; the resourceVersion makes a concurrent change fail
/// and be retried rather than lost.
async fn set_finalizer(ctx: &Context, repo: &GitopsRepository, present: bool) -> Result<()> {
    let mut finalizers: Vec<String> = repo
        .finalizers()
        .iter()
        .filter(|f| *f != labels::DELETE_FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(labels::DELETE_FINALIZER.to_owned());
    }
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": repo.resource_version(),
    }});
    Api::<GitopsRepository>::namespaced(ctx.client.clone(), &repo.namespace().unwrap_or_default())
        .patch(
            &repo.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}
