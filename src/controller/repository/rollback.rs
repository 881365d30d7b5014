//! Rollback as a plan: a run with trigger Rollback whose desired state is the one an
//! older applied run applied (read back from its verified store), planned against the
//! live cluster and gated like any other plan. While it is the newest run, the revision
//! it rolled back from is not planned again by itself; a new revision lifts the hold.

use kube::api::Api;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::{announce_run, create_run, sequence};
use crate::api::repository::GitopsRepositoryStatus;
use crate::api::short_revision as short;
use crate::api::syncrun::{Phase, Trigger};
use crate::api::{GitopsRepository, REPOSITORY_LABEL, SyncRun, annotations};
use crate::controller::context::Context;
use crate::controller::error::{Error, Result};
use crate::controller::planstore;
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
    // `<syncrun>@<when>`: the CLI stamps each request, so that asking again for the
    // same run (after a rejected rollback) is a new request.
    let target = &target_of(target).to_owned();
    let refuse = |message: String| async move {
        ctx.event(
            &repo.object_ref(&()),
            EventType::Warning,
            "RollbackRefused",
            "Rollback",
            message,
        )
        .await;
        Ok(None)
    };
    let Some(older) = runs.iter().find(|r| r.name_any() == *target) else {
        let shown = crate::api::truncate(target, 253);
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
    announce_run(ctx, repo, &created, "Rollback", message).await;
    Ok(Some(created))
}

/// The SyncRun a rollback-to value names: `<syncrun>` or `<syncrun>@<when>`.
pub fn target_of(value: &str) -> &str {
    value.split_once('@').map_or(value, |(name, _)| name)
}

/// Plans an expired rollback again: a new Rollback run to the same older run, holding
/// the same revision back.
pub async fn again(
    ctx: &Context,
    repo: &GitopsRepository,
    expired: &SyncRun,
    next: u64,
) -> Result<SyncRun> {
    let a = expired.annotations();
    let of = a.get(annotations::ROLLBACK_OF).cloned().unwrap_or_default();
    let from = a
        .get(annotations::ROLLBACK_FROM)
        .cloned()
        .unwrap_or_default();
    let created = create_run(
        ctx,
        repo,
        &expired.spec.revision,
        Trigger::Rollback,
        next,
        &[
            (annotations::ROLLBACK_OF, of.as_str()),
            (annotations::ROLLBACK_FROM, from.as_str()),
        ],
    )
    .await?;
    let message = format!(
        "rollback SyncRun {} expired unapproved: planned again as SyncRun {}",
        expired.name_any(),
        created.name_any()
    );
    announce_run(ctx, repo, &created, "Rollback", message).await;
    Ok(created)
}

/// Whether `newest` (a repository's newest run from git) is a rollback that holds
/// `revision` back: the revision it rolled back from. A rollback that was rejected or
/// failed holds nothing: the revision is planned again (and gated as usual).
pub fn holds(newest: &SyncRun, revision: &str) -> bool {
    let ended = matches!(newest.phase(), Some(Phase::Rejected | Phase::Failed));
    !ended
        && newest.spec.trigger == Trigger::Rollback
        && newest
            .annotations()
            .get(annotations::ROLLBACK_FROM)
            .map(String::as_str)
            == Some(revision)
}

/// The desired state a run returns to: what the run its `annotation` names
/// (`rollback-of` for a rollback, `restores` for a drift correction) applied, checked
/// against the digest recorded when that run planned; with that run. Err: why it cannot
/// be had.
pub async fn desired(
    ctx: &Context,
    run: &SyncRun,
    annotation: &str,
) -> Result<Result<(Vec<FleetObject>, SyncRun), String>> {
    let Some(target) = run.annotations().get(annotation) else {
        return Ok(Err(format!(
            "a {:?} run needs the {annotation} annotation",
            run.spec.trigger
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
        Ok(objects) => Ok(Ok((objects, older))),
        Err(e @ Error::PlanTampered { .. }) => Ok(Err(e.to_string())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::syncrun::{SyncRunSpec, SyncRunStatus};

    fn rollback(phase: Phase) -> SyncRun {
        let mut run = SyncRun::new(
            "r",
            SyncRunSpec {
                repository: "fleet".into(),
                revision: "old".into(),
                trigger: Trigger::Rollback,
            },
        );
        run.annotations_mut()
            .insert(annotations::ROLLBACK_FROM.into(), "new".into());
        run.status = Some(SyncRunStatus {
            phase: Some(phase),
            ..Default::default()
        });
        run
    }

    #[test]
    fn a_rejected_or_failed_rollback_holds_nothing() {
        assert!(holds(&rollback(Phase::AwaitingApproval), "new"));
        assert!(holds(&rollback(Phase::Applied), "new"));
        assert!(holds(&rollback(Phase::Expired), "new"));
        assert!(!holds(&rollback(Phase::Applied), "newer"));
        assert!(!holds(&rollback(Phase::Rejected), "new"));
        assert!(!holds(&rollback(Phase::Failed), "new"));
    }

    #[test]
    fn a_stamped_request_names_its_run() {
        assert_eq!(target_of("fleet-7"), "fleet-7");
        assert_eq!(target_of("fleet-7@2027-01-01T00:00:00Z"), "fleet-7");
    }
}
