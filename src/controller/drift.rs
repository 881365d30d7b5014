//! Drift detection for a repository: the live objects (from the watch caches) against
//! the desired state of the run last applied under an authorization (kept in that run's
//! ConfigMaps, and in memory, so no clone is needed). Reported in status, a condition,
//! Events and a metric; remedied by a Drift SyncRun when the repository asks for it.

use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use super::authorization::applied_under_authorization;
use super::context::Context;
use super::convergence;
use super::error::{Error, Result};
use super::live;
use super::metrics::RepositoryLabels;
use crate::api::repository::{DriftStatus, GitopsRepositoryStatus};
use crate::api::syncrun::Phase;
use crate::api::{GitopsRepository, SyncRun, now, set_condition, short_revision};
use crate::fleet::FleetObject;
use crate::fleet::drift::{self, DriftKind, DriftedObject};

/// At most this many drifted objects are listed in status.
const MAX_LISTED: usize = 50;
/// Drift found in the cache is confirmed against the API server, up to this many objects.
const MAX_CONFIRMED: usize = 100;

/// What the repository controller should do about drift.
pub struct Found {
    /// The applied run whose revision the cluster should match.
    pub baseline: SyncRun,
    /// Non-empty when the cluster drifted from git: what a Drift run restores.
    pub objects: Vec<DriftedObject>,
    /// Of `objects`: a Drift run is started once per distinct value.
    pub digest: String,
    /// Objects as git says whose provider no longer reports them Ready: reported with
    /// the drift, but not restored by a run (their spec is already git's).
    pub unhealthy: Vec<DriftedObject>,
}

/// Whether `run` is moving fleet objects: planning, applying, converging, or not
/// finished with part of its plan written.
fn in_motion(run: &SyncRun) -> bool {
    let partly_written = run
        .status
        .as_ref()
        .is_some_and(|s| s.waves_left() && s.wrote_any());
    match run.phase() {
        None | Some(Phase::Planning | Phase::Applying | Phase::Converging) => true,
        Some(p) => !p.is_finished() && partly_written,
    }
}

fn digest(objects: &[DriftedObject]) -> String {
    // Drift entries are plain strings and enums: serializing cannot fail.
    let bytes = serde_json::to_vec(objects).unwrap_or_default();
    crate::fleet::plan::hex(&Sha256::digest(bytes)[..8])
}

/// Compares the cluster with the last applied revision. None when there is nothing to
/// compare yet, or while a run is planning or applying (objects are in motion): that
/// includes a rollout between its waves, which has written part of its plan and will
/// write the rest (measured against the last whole plan, its written waves would look
/// like drift, and a correction would undo them).
pub async fn check(
    ctx: &Context,
    repo: &GitopsRepository,
    runs: &[SyncRun],
) -> Result<Option<Found>> {
    if runs.iter().any(in_motion) {
        return Ok(None);
    }
    let Some(baseline) = baseline(runs) else {
        return Ok(None);
    };
    let ns = repo.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", repo.name_any());
    let desired = match ctx.desired.get(&ctx.client, &key, baseline).await {
        Ok(desired) => desired,
        Err(e @ Error::PlanTampered { .. }) => {
            // Measured against forged content, drift would start runs no one asked
            // for: refuse to measure at all, and say so.
            ctx.event(
                &repo.object_ref(&()),
                EventType::Warning,
                e.label(),
                "DetectDrift",
                format!("drift is not checked: {e}"),
            )
            .await;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    ctx.fleet.wait_until_ready().await?;
    let live = ctx.fleet.live_objects(&ns);
    let mut objects = drift::detect(&desired, &live, &repo.name_any());
    if !objects.is_empty() && objects.len() <= MAX_CONFIRMED {
        objects = confirm(ctx, &ns, &repo.name_any(), &desired, objects).await?;
    }
    // Without the Leases (a role without `list` on them, say), health is not judged;
    // drift from git still is.
    let unhealthy = match convergence::served_kinds(&ctx.client, &ns).await {
        Ok(served) => convergence::regressions(&ctx.fleet, &ns, &desired, &served, &objects),
        Err(e) => {
            tracing::warn!(namespace = %ns, error = %e, "provider registrations cannot be read; health regressions are not checked");
            Vec::new()
        }
    };
    Ok(Some(Found {
        baseline: baseline.clone(),
        digest: digest(&objects),
        objects,
        unhealthy,
    }))
}

/// The run drift is measured against, of a repository's runs (newest first): the newest
/// that applied under an authorization it recorded (or, applied before authorizations
/// were recorded, that records who approved it). Nothing else: a run that changed
/// nothing (NoChanges, perhaps after an editor left every action out) stored a desired
/// state no one approved.
pub fn baseline(runs: &[SyncRun]) -> Option<&SyncRun> {
    runs.iter().find(|r| {
        let Some(s) = r.status.as_ref() else {
            return false;
        };
        let legacy = s.phase == Some(Phase::Applied) && s.approved_by.is_some();
        (applied_under_authorization(r) || legacy) && !s.desired_state.is_empty()
    })
}

/// The caches trail the API server by a moment (just after an apply, say); drift is
/// reported only if the object, read fresh, still shows it.
async fn confirm(
    ctx: &Context,
    ns: &str,
    repository: &str,
    desired: &[FleetObject],
    found: Vec<DriftedObject>,
) -> Result<Vec<DriftedObject>> {
    let mut confirmed = Vec::new();
    for d in found {
        let fresh = live::api(&ctx.client, ns, d.kind).get_opt(&d.name).await?;
        let fresh = fresh.as_ref().and_then(live::to_live);
        let wanted: Vec<FleetObject> = desired
            .iter()
            .filter(|o| o.kind() == d.kind && o.name == d.name)
            .cloned()
            .collect();
        let again = drift::detect(&wanted, &fresh.into_iter().collect::<Vec<_>>(), repository);
        confirmed.extend(again);
    }
    Ok(confirmed)
}

/// Records `found` in the repository's status, condition, Events and metric.
pub async fn report(
    ctx: &Context,
    repo: &GitopsRepository,
    found: &Found,
    status: &mut GitopsRepositoryStatus,
) {
    let ts = now();
    let generation = repo.meta().generation;
    let previous = status.drift.as_ref().map(|d| d.digest.clone());
    let objects: Vec<DriftedObject> = found
        .objects
        .iter()
        .chain(&found.unhealthy)
        .cloned()
        .collect();
    // A drift episode is the drift from git: objects turning unhealthy and healthy again
    // within it (a link flapping) are shown but do not start a new episode (nor a new
    // notification); the episode ends only when nothing differs and all is healthy.
    let shown_digest = found.digest.clone();
    let count = objects.len();
    ctx.metrics
        .drifted_objects
        .get_or_create(&RepositoryLabels {
            namespace: repo.namespace().unwrap_or_default(),
            repository: repo.name_any(),
        })
        .set(count as i64);
    let revision = found.baseline.spec.revision.clone();
    if count == 0 {
        let message = format!("the cluster matches revision {}", short_revision(&revision));
        set_condition(
            &mut status.conditions,
            "Drifted",
            false,
            "NoDrift",
            &message,
            generation,
            &ts,
        );
        if status.drift.take().is_some() {
            ctx.event_at(
                repo,
                "status.drift",
                EventType::Normal,
                "DriftCleared",
                "DetectDrift",
                message,
            )
            .await;
        }
        return;
    }
    let summary = summarize(&objects);
    let message = format!(
        "{count} objects differ from revision {}: {summary}",
        short_revision(&revision)
    );
    set_condition(
        &mut status.conditions,
        "Drifted",
        true,
        "DriftDetected",
        &message,
        generation,
        &ts,
    );
    let detected_at = match (
        &status.drift,
        previous.as_deref() == Some(shown_digest.as_str()),
    ) {
        (Some(d), true) => d.detected_at.clone(),
        _ => Some(ts.clone()),
    };
    status.drift = Some(DriftStatus {
        detected_at,
        revision,
        count: count as u32,
        objects: objects.into_iter().take(MAX_LISTED).collect(),
        truncated: count > MAX_LISTED,
        digest: shown_digest,
    });
    // One Warning per drift episode: while the cluster stays drifted, status follows
    // every change but the Event is not repeated.
    if previous.is_none() {
        ctx.event_at(
            repo,
            "status.drift",
            EventType::Warning,
            "DriftDetected",
            "DetectDrift",
            message,
        )
        .await;
    }
}

/// `fleetnode/a changed (instanceType), sdwanpeer/b missing, ...` — the first few.
fn summarize(objects: &[DriftedObject]) -> String {
    let mut parts: Vec<String> = objects
        .iter()
        .take(5)
        .map(|d| {
            let what = match d.drift {
                DriftKind::Changed => {
                    let fields: Vec<&str> = d
                        .fields
                        .iter()
                        .filter_map(|f| f.split(':').next())
                        .collect();
                    format!("changed ({})", fields.join(", "))
                }
                DriftKind::Missing => "deleted".to_owned(),
                DriftKind::Unexpected => "not in git".to_owned(),
                DriftKind::Unhealthy => format!("not Ready ({})", d.fields.join(", ")),
            };
            format!("{}/{} {what}", d.kind.as_str().to_ascii_lowercase(), d.name)
        })
        .collect();
    if objects.len() > 5 {
        parts.push(format!("and {} more", objects.len() - 5));
    }
    parts.join(", ")
}

/// Runs of the repository, newest first, as history.
pub fn history(runs: &[SyncRun], limit: usize) -> Vec<crate::api::repository::HistoryEntry> {
    runs.iter()
        .take(limit)
        .map(|r| {
            let s = r.status.clone().unwrap_or_default();
            crate::api::repository::HistoryEntry {
                sync_run: r.name_any(),
                revision: r.spec.revision.clone(),
                trigger: r.spec.trigger,
                plan_id: s.plan_id,
                phase: s.phase,
                changes: s.changes,
                approved_by: s.approved_by,
                started_at: s.started_at,
                completed_at: s.completed_at,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::syncrun::{Authority, AuthorizationRecord, SyncRunStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn run(name: &str, phase: Phase, authorized: bool, legacy: bool) -> SyncRun {
        let mut run = crate::controller::fixtures::run_named(name);
        run.status = Some(SyncRunStatus {
            phase: Some(phase),
            desired_state: vec![format!("{name}-desired-0")],
            approved_by: (authorized || legacy).then(|| "bob".to_owned()),
            authorization: authorized.then(|| AuthorizationRecord {
                by: Authority::People,
                approvers: vec!["bob".into()],
                policy: None,
                plan_id: "p".into(),
                basis: None,
                at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                slices: Vec::new(),
            }),
            ..Default::default()
        });
        run
    }

    #[test]
    fn the_baseline_is_the_newest_run_applied_under_an_authorization() {
        // A NoChanges run stored a desired state no one approved (every action left out,
        // say): never a baseline, however new.
        let runs = [
            run("r4", Phase::NoChanges, false, false),
            run("r3", Phase::Failed, true, false),
            run("r2", Phase::Applied, true, false),
            run("r1", Phase::Applied, true, false),
        ];
        assert_eq!(baseline(&runs).map(|r| r.name_any()).as_deref(), Some("r2"));
        // Applied before authorizations were recorded, with who approved it: measured.
        let legacy = [run("r1", Phase::Applied, false, true)];
        assert!(baseline(&legacy).is_some());
        let nothing = [
            run("r2", Phase::NoChanges, false, false),
            run("r1", Phase::Applied, false, false),
        ];
        assert!(baseline(&nothing).is_none());
        // A Degraded run wrote its whole plan: the cluster holds it, so drift is measured
        // against it (correcting toward the older run would undo an authorized change).
        // A run still converging is not a baseline yet.
        let degraded = [
            run("r3", Phase::Converging, true, false),
            run("r2", Phase::Degraded, true, false),
            run("r1", Phase::Applied, true, false),
        ];
        assert_eq!(
            baseline(&degraded).map(|r| r.name_any()).as_deref(),
            Some("r2")
        );
    }

    #[test]
    fn a_rollout_between_its_waves_is_in_motion_and_no_baseline() {
        let mut between = run("r2", Phase::Scheduled, true, false);
        between.status.as_mut().unwrap().action_states = Some("AAPP".into());
        assert!(in_motion(&between));
        // Waiting for a window with nothing written: drift is measured as before.
        let mut waiting = run("r2", Phase::Scheduled, true, false);
        waiting.status.as_mut().unwrap().action_states = Some("PPPP".into());
        assert!(!in_motion(&waiting));
        // Stopped part-way: over, and not the baseline (it did not write its plan).
        let mut stopped = run("r2", Phase::Degraded, true, false);
        stopped.status.as_mut().unwrap().action_states = Some("AAPP".into());
        assert!(!in_motion(&stopped));
        let runs = [stopped, run("r1", Phase::Applied, true, false)];
        assert_eq!(baseline(&runs).map(|r| r.name_any()).as_deref(), Some("r1"));
    }
}
