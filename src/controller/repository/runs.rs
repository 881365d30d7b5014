//! The SyncRuns a repository starts, keeps and retires: creating them (from git, on
//! request, for drift), superseding older ones and pruning history.

use kube::runtime::events::EventType;
use std::collections::BTreeMap;

use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::{Resource, ResourceExt};
use tracing::info;

use super::rollback;
use crate::api::repository::{DriftRemediation, GitopsRepositoryStatus};
use crate::api::syncrun::{Phase, SyncRunSpec, Trigger};
use crate::api::{FIELD_MANAGER, GitopsRepository, REPOSITORY_LABEL, SyncRun, annotations};
use crate::controller::context::Context;
use crate::controller::drift;
use crate::controller::error::Result;
use crate::controller::lifecycle;
use crate::controller::planstore;

use crate::api::short_revision as short;

/// A run's place among its repository's runs (1 for the first), from its annotation.
pub(in crate::controller) fn sequence(run: &SyncRun) -> u64 {
    run.sequence()
}

/// Tells, on the repository, that `created` was started and why (`action` names what
/// started it).
pub(in crate::controller) async fn announce_run(
    ctx: &Context,
    repo: &GitopsRepository,
    created: &SyncRun,
    action: &str,
    message: String,
) {
    ctx.event_related(
        &repo.object_ref(&()),
        Some(created.object_ref(&())),
        EventType::Normal,
        "NewSyncRun",
        action,
        message,
    )
    .await;
}

/// A run carries its repository's labels (so that a shard's --watch-label-selector
/// selects the runs of the repositories it selects) and the repository label.
fn run_labels(repo: &GitopsRepository) -> BTreeMap<String, String> {
    let mut labels = repo.labels().clone();
    labels.insert(REPOSITORY_LABEL.to_owned(), repo.name_any());
    labels
}

pub(in crate::controller) async fn create_run(
    ctx: &Context,
    repo: &GitopsRepository,
    revision: &str,
    trigger: Trigger,
    sequence: u64,
    markers: &[(&str, &str)],
) -> Result<SyncRun> {
    let ns = repo.namespace().unwrap_or_default();
    let mut annotations =
        BTreeMap::from([(annotations::SEQUENCE.to_owned(), sequence.to_string())]);
    for (key, value) in markers {
        annotations.insert((*key).to_owned(), (*value).to_owned());
    }
    let run = SyncRun {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-{}-",
                repo.name_any(),
                crate::api::revision_prefix(revision, 7)
            )),
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
pub(super) async fn remediate(
    ctx: &Context,
    repo: &GitopsRepository,
    runs: &[SyncRun],
    found: &drift::Found,
) -> Result<()> {
    if repo.spec.drift_remediation == DriftRemediation::Report {
        return Ok(());
    }
    // After a run newer than the baseline wrote only part of its plan (a rollout that
    // stopped, was rolled back at a pause, or left actions out at people's choice),
    // correcting by policy would undo what people decided: reported only.
    if repo.spec.drift_remediation == DriftRemediation::Correct
        && wrote_part_since(runs, &found.baseline)
    {
        return Ok(());
    }
    let waiting_drift: Vec<&SyncRun> = runs
        .iter()
        .filter(|r| r.spec.trigger == Trigger::Drift && r.phase() == Some(Phase::AwaitingApproval))
        .collect();
    let newest_waits_on_git = runs.first().is_some_and(|r| {
        r.spec.trigger != Trigger::Drift && r.phase() == Some(Phase::AwaitingApproval)
    });
    let current = |r: &&SyncRun| r.annotations().get(annotations::DRIFT) == Some(&found.digest);
    for stale in waiting_drift
        .iter()
        .filter(|r| found.objects.is_empty() || !current(r))
    {
        let message = "superseded: the drift it was planned for has changed".to_owned();
        lifecycle::supersede_listed(ctx, stale, message).await?;
    }
    // A newer revision waiting for approval restores the drift too, when approved.
    if found.objects.is_empty() || newest_waits_on_git || waiting_drift.iter().any(current) {
        return Ok(());
    }
    let next = runs.first().map_or(1, |r| sequence(r) + 1);
    let revision = found.baseline.spec.revision.clone();
    // The run restores what the baseline applied, as stored beside it: exactly the
    // content drift was measured against.
    let baseline = found.baseline.name_any();
    let created = create_run(
        ctx,
        repo,
        &revision,
        Trigger::Drift,
        next,
        &[
            (annotations::DRIFT, &found.digest),
            (annotations::RESTORES, &baseline),
        ],
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
pub(super) async fn supersede_older(ctx: &Context, runs: &[SyncRun]) -> Result<()> {
    let Some(newest) = runs.first() else {
        return Ok(());
    };
    let newest_not_drift = runs.iter().find(|r| r.spec.trigger != Trigger::Drift);
    for run in runs.iter().skip(1) {
        let by = match run.phase() {
            Some(Phase::AwaitingApproval) => Some(newest),
            Some(Phase::Scheduled) => newest_not_drift.filter(|n| sequence(n) > sequence(run)),
            // A run still waiting for its objects to converge (or paused for a
            // choice) once a newer one has written something: the newer run's objects
            // are what the providers now work toward. (Cleared alone, the newer run may
            // yet be refused.)
            Some(Phase::Converging | Phase::Paused) => runs
                .iter()
                .find(|n| sequence(n) > sequence(run) && has_written(n)),
            _ => None,
        };
        if let Some(by) = by {
            let message = format!(
                "superseded by SyncRun {} (revision {})",
                by.name_any(),
                short(&by.spec.revision)
            );
            lifecycle::supersede_listed(ctx, run, message).await?;
        }
    }
    Ok(())
}

/// Whether a finished run from git newer than `baseline` (`runs` newest first) wrote
/// part of its plan and not all of it.
fn wrote_part_since(runs: &[SyncRun], baseline: &SyncRun) -> bool {
    runs.iter()
        .take_while(|r| r.name_any() != baseline.name_any())
        .filter(|r| r.spec.trigger != Trigger::Drift && r.phase().is_some_and(Phase::is_finished))
        .filter_map(|r| r.status.as_ref())
        .any(|s| s.wrote_any() && !s.wrote_plan())
}

/// Whether `run` has written at least one action to the fleet.
fn has_written(run: &SyncRun) -> bool {
    run.status
        .as_ref()
        .is_some_and(|s| s.wrote_plan() || s.phase == Some(Phase::Converging) || s.wrote_any())
}

/// Keeps the newest historyLimit finished runs, and whatever historyLimit says (editors
/// write it) the drift baseline and the newest `--approval-history` runs that record an
/// approval; deletes the others and their stored plans.
pub(super) async fn prune_history(
    ctx: &Context,
    repo: &GitopsRepository,
    runs: &mut Vec<SyncRun>,
) -> Result<()> {
    let limit = repo.spec.history_limit as usize;
    let api: Api<SyncRun> =
        Api::namespaced(ctx.client.clone(), &repo.namespace().unwrap_or_default());
    let finished: Vec<String> = prunable(
        runs,
        limit,
        drift::baseline(runs).map(|b| b.name_any()).as_deref(),
        ctx.settings.approval_history,
    )
    .into_iter()
    .filter(|name| !awaits_its_record(ctx, runs, name))
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

/// Whether the run named `name` still waits for its signed record (the controller signs
/// records and one is due): pruned now, it would never get one.
fn awaits_its_record(ctx: &Context, runs: &[SyncRun], name: &str) -> bool {
    ctx.settings.attestation.is_some()
        && runs
            .iter()
            .find(|r| r.name_any() == name)
            .and_then(|r| r.status.as_ref())
            .is_some_and(crate::controller::attestation::due)
}

/// Whether `run` is the record of an approval: people approved its plan (even short
/// of a quorum), or it was cleared to apply by people or a policy.
fn records_an_approval(run: &SyncRun) -> bool {
    run.status.as_ref().is_some_and(|s| {
        s.authorization.is_some() || s.approved_by.is_some() || !s.approvals.is_empty()
    })
}

/// The finished runs of `runs` (newest first) history pruning deletes: past the newest
/// `limit`, except the `baseline` and the newest `approvals_kept` records of an
/// approval.
fn prunable(
    runs: &[SyncRun],
    limit: usize,
    baseline: Option<&str>,
    approvals_kept: usize,
) -> Vec<String> {
    let mut records = 0;
    let mut doomed = Vec::new();
    for (i, run) in runs
        .iter()
        .filter(|r| r.phase().is_some_and(Phase::is_finished))
        .enumerate()
    {
        let kept_as_record = records_an_approval(run) && {
            records += 1;
            records <= approvals_kept
        };
        let name = run.name_any();
        if i < limit || kept_as_record || baseline == Some(name.as_str()) {
            continue;
        }
        doomed.push(name);
    }
    doomed
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
    let mut markers = vec![(annotations::SYNC_REQUEST, request)];
    if let Some(user) = repo.annotations().get(annotations::SYNC_REQUESTED_BY) {
        markers.push((annotations::REQUESTED_BY, user.as_str()));
    }
    markers
}

/// A plan that expired unapproved is planned afresh, its revision unchanged.
fn replan_expired(run: &SyncRun) -> bool {
    run.phase() == Some(Phase::Expired)
}

/// Starts the rollback an approver asked for, if any (`revision`: git's, which it holds
/// back).
pub(super) async fn start_rollback(
    ctx: &Context,
    repo: &GitopsRepository,
    revision: &str,
    runs: &mut Vec<SyncRun>,
    status: &mut GitopsRepositoryStatus,
) -> Result<()> {
    if let Some(created) = rollback::request(ctx, repo, runs, revision, status).await? {
        runs.insert(0, created);
    }
    Ok(())
}

/// Starts what the revision and a sync request (`sync`) call for, newest first in
/// `runs`: a rollback an approver asked for, an expired rollback planned again, or a
/// run of a new revision or of the request; or refuses a sync that a rollback holds
/// back.
pub(super) async fn start_runs(
    ctx: &Context,
    repo: &GitopsRepository,
    revision: &str,
    sync: Option<&str>,
    runs: &mut Vec<SyncRun>,
    status: &mut GitopsRepositoryStatus,
) -> Result<()> {
    let manual = sync.is_some();
    let manual_done = manual
        && runs.iter().any(|r| {
            r.annotations()
                .get(annotations::SYNC_REQUEST)
                .map(String::as_str)
                == sync
        });
    start_rollback(ctx, repo, revision, runs, status).await?;
    // Drift runs re-plan an old revision; only runs started from git say what git had.
    // A rollback holds back the revision it rolled back from.
    let newest_from_git = runs.iter().find(|r| r.spec.trigger != Trigger::Drift);
    let held = newest_from_git.is_some_and(|n| rollback::holds(n, revision));
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
        let created = rollback::again(ctx, repo, expired, next).await?;
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
        ctx.event(
            &repo.object_ref(&()),
            EventType::Warning,
            "SyncRefused",
            "Sync",
            format!(
                "sync of revision {} refused: a rollback holds it back; push a new revision, or an approver rolls back to a run that applied it",
                short(revision)
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
        let mut markers = manual_markers(repo, sync);
        markers.extend(carried.map(|user| (annotations::REQUESTED_BY, user)));
        let created = create_run(ctx, repo, revision, trigger, next, &markers).await?;
        let message = format!(
            "revision {} ({trigger:?}): started SyncRun {}",
            short(revision),
            created.name_any()
        );
        announce_run(ctx, repo, &created, "Fetch", message).await;
        runs.insert(0, created);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::syncrun::{ApprovalRecord, SyncRunStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn run(name: &str, phase: Phase, approved: bool) -> SyncRun {
        let mut run = crate::controller::fixtures::run_named(name);
        run.status = Some(SyncRunStatus {
            phase: Some(phase),
            approvals: approved
                .then(|| ApprovalRecord {
                    user: "bob".into(),
                    groups: vec![],
                    plan_id: "p".into(),
                    at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                })
                .into_iter()
                .collect(),
            ..Default::default()
        });
        run
    }

    #[test]
    fn drift_after_a_run_that_wrote_part_of_its_plan_is_not_corrected_by_policy() {
        let with_states = |name, phase, states: &str| {
            let mut r = run(name, phase, true);
            r.status.as_mut().unwrap().action_states = Some(states.into());
            r
        };
        let baseline = with_states("r1", Phase::Applied, "AA");
        let whole = with_states("r2", Phase::Applied, "AA");
        let left_out = with_states("r3", Phase::Applied, "AL");
        let stopped = with_states("r4", Phase::Degraded, "AP");
        let paused = with_states("r5", Phase::Paused, "AP");
        assert!(!wrote_part_since(
            &[whole.clone(), baseline.clone()],
            &baseline
        ));
        assert!(wrote_part_since(&[left_out, baseline.clone()], &baseline));
        assert!(wrote_part_since(
            &[stopped.clone(), baseline.clone()],
            &baseline
        ));
        // Older than the baseline, or not finished: not in question.
        assert!(!wrote_part_since(&[baseline.clone(), stopped], &baseline));
        assert!(!wrote_part_since(&[paused, baseline.clone()], &baseline));
    }

    #[test]
    fn a_converging_run_gives_way_only_to_a_run_that_has_written() {
        let mut cleared = run("r2", Phase::Applying, true);
        assert!(!has_written(&cleared), "cleared, it may yet be refused");
        cleared.status.as_mut().unwrap().action_states = Some("PP".into());
        assert!(!has_written(&cleared));
        cleared.status.as_mut().unwrap().action_states = Some("AP".into());
        assert!(has_written(&cleared));
        assert!(has_written(&run("r2", Phase::Converging, true)));
        assert!(has_written(&run("r2", Phase::Degraded, true)));
        assert!(!has_written(&run("r2", Phase::Failed, true)));
        // Superseded while it converged, a run had written its whole plan.
        let mut superseded = run("r1", Phase::Superseded, true);
        assert!(!has_written(&superseded));
        superseded.status.as_mut().unwrap().health = Some(crate::api::syncrun::RunHealth {
            ready: 1,
            progressing: 0,
            failed: 0,
            unserved: 0,
            unserved_kinds: vec![],
            since: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            deadline: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            objects: vec![],
        });
        assert!(has_written(&superseded));
    }

    #[test]
    fn pruning_keeps_the_records_of_approvals_whatever_the_history_limit() {
        // Newest first: a waiting run, then finished ones.
        let runs = [
            run("r9", Phase::AwaitingApproval, false),
            run("r8", Phase::NoChanges, false),
            run("r7", Phase::Applied, true),
            run("r6", Phase::NoChanges, false),
            run("r5", Phase::Expired, true),
            run("r4", Phase::Superseded, false),
            run("r3", Phase::Applied, true),
            run("r2", Phase::Applied, true),
            run("r1", Phase::NoChanges, false),
        ];
        // historyLimit 1, as an editor may set it: only runs no one approved go.
        assert_eq!(prunable(&runs, 1, Some("r7"), 50), ["r6", "r4", "r1"]);
        // The newest records are kept up to the controller's bound; the baseline always.
        assert_eq!(
            prunable(&runs, 1, Some("r7"), 2),
            ["r6", "r4", "r3", "r2", "r1"]
        );
        assert_eq!(
            prunable(&runs, 1, Some("r2"), 1),
            ["r6", "r5", "r4", "r3", "r1"]
        );
        // A generous historyLimit keeps everything.
        assert!(prunable(&runs, 100, None, 0).is_empty());
    }
}
