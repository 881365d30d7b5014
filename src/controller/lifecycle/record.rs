//! The one way a run's status is written: the whole status, only if the run is still as
//! the decision read it, and every phase change through the transition table with its
//! conditions and Event.
//!
//! Two controllers write a run's status: the SyncRun controller moves it forward, and
//! the repository's reconcile supersedes the runs a newer one replaces, deciding from a
//! list made moments before. Neither write may land on a run that moved meanwhile (a
//! run superseded after it started applying would stop half-applied; a run moved to
//! Applying after it was superseded would apply an older revision after a newer one).
//! So every write is a JSON patch that first tests what it was decided from: the phase,
//! for the SyncRun controller (it read the run afresh; annotations people set meanwhile
//! do not matter), and the resourceVersion, for the repository (its copy may be stale in
//! any field).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::machine::{self, Event, FailReason, Step, Withdrawal};
use crate::api::syncrun::{Phase, SyncRunStatus};
use crate::api::truncate;
use crate::api::{FIELD_MANAGER, Kstatus, SyncRun, now};
use crate::controller::context::Context;
use crate::controller::error::{Error, Result};

const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// What a status write requires of the run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// Still in this phase (None: not looked at yet, which only the SyncRun controller
    /// changes).
    Phase(Option<Phase>),
    /// Not changed at all since this resourceVersion.
    Version(String),
}

impl Guard {
    /// For the SyncRun controller, which read `run` afresh: still in the phase it read.
    pub fn as_read(run: &SyncRun) -> Self {
        Guard::Phase(run.phase())
    }

    /// For a decision made from a list: `run` exactly as listed.
    pub fn as_listed(run: &SyncRun) -> Self {
        Guard::Version(run.resource_version().unwrap_or_default())
    }

    fn test(&self) -> Option<serde_json::Value> {
        match self {
            Guard::Phase(None) => None,
            Guard::Phase(Some(phase)) => {
                Some(json!({"op": "test", "path": "/status/phase", "value": phase}))
            }
            Guard::Version(version) => {
                Some(json!({"op": "test", "path": "/metadata/resourceVersion", "value": version}))
            }
        }
    }

    fn holds(&self, stored: &SyncRun) -> bool {
        match self {
            Guard::Phase(phase) => stored.phase() == *phase,
            Guard::Version(version) => stored.resource_version().as_ref() == Some(version),
        }
    }
}

/// Writes the whole status of `run`, which the SyncRun controller read (or wrote) in
/// the phase it has: refused with [`Error::RunMoved`] if its phase changed since.
pub async fn write_status(ctx: &Context, run: &SyncRun, status: &SyncRunStatus) -> Result<()> {
    written_status(ctx, run, status).await.map(|_| ())
}

/// [`write_status`], returning the run as written (its resourceVersion is the one a
/// later precondition must name). Every write records the generation it describes
/// (kstatus compares it with metadata.generation).
pub async fn written_status(
    ctx: &Context,
    run: &SyncRun,
    status: &SyncRunStatus,
) -> Result<SyncRun> {
    write_if(&ctx.client, run, status, &Guard::as_read(run)).await
}

/// Writes the whole status of `run` (recording the generation it describes) if the
/// stored run still meets `guard`; [`Error::RunMoved`] if it does not.
pub async fn write_if(
    client: &Client,
    run: &SyncRun,
    status: &SyncRunStatus,
    guard: &Guard,
) -> Result<SyncRun> {
    let api: Api<SyncRun> = Api::namespaced(client.clone(), &run.namespace().unwrap_or_default());
    let name = run.name_any();
    let mut status = status.clone();
    status.observed_generation = run.meta().generation;
    let operations: Vec<serde_json::Value> = guard
        .test()
        .into_iter()
        .chain([json!({"op": "add", "path": "/status", "value": status})])
        .collect();
    let patch: json_patch::Patch =
        serde_json::from_value(operations.into()).map_err(kube::Error::SerdeError)?;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch_status(&name, &params, &Patch::<()>::Json(patch))
        .await
    {
        Ok(written) => Ok(written),
        // A failed test and a status the schema refuses are both 422: what is stored
        // now tells them apart.
        Err(kube::Error::Api(e)) if e.code == 422 && guard.test().is_some() => {
            match api.get_opt(&name).await? {
                Some(stored) if guard.holds(&stored) => Err(kube::Error::Api(e).into()),
                stored => Err(Error::RunMoved {
                    run: name,
                    now: stored
                        .and_then(|s| s.phase())
                        .map_or("(deleted or new)", Phase::as_str),
                }),
            }
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Err(Error::RunMoved {
            run: name,
            now: "(deleted)",
        }),
        Err(e) => Err(e.into()),
    }
}

/// Moves the run on by `event`, from the phase `status` records, as the transition
/// table says, with its conditions and Event.
pub async fn transition(
    ctx: &Context,
    run: &SyncRun,
    status: SyncRunStatus,
    event: Event,
    message: String,
) -> Result<SyncRunStatus> {
    transition_if(ctx, run, status, event, message, &Guard::as_read(run)).await
}

async fn transition_if(
    ctx: &Context,
    run: &SyncRun,
    status: SyncRunStatus,
    event: Event,
    message: String,
    guard: &Guard,
) -> Result<SyncRunStatus> {
    let (status, step) = moved(status, event, &message, run.meta().generation, now())?;
    write_if(&ctx.client, run, &status, guard).await?;
    if let Some(told) = step.told {
        let action = step.to.as_str();
        ctx.event_at(run, "status.phase", told, step.reason, action, message)
            .await;
    }
    info!(
        phase = step.to.as_str(),
        reason = step.reason,
        "phase changed"
    );
    Ok(status)
}

/// A run the controller looks at for the first time: Planning, since `at`, of which
/// revision. Recorded in status only (no conditions, no Event). Pure.
pub fn started(
    mut status: SyncRunStatus,
    revision: &str,
    at: Time,
) -> Result<SyncRunStatus, machine::Illegal> {
    let step = machine::next(status.phase, Event::Started)?;
    status.phase = Some(step.to);
    status.started_at = Some(at);
    status.short_revision = Some(crate::api::short_revision(revision).to_owned());
    Ok(status)
}

/// The status after `event`, at `ts`, for a run of `generation`: its phase, message,
/// completion time and kstatus conditions, as the transition table says. Pure.
pub fn moved(
    mut status: SyncRunStatus,
    event: Event,
    message: &str,
    generation: Option<i64>,
    ts: Time,
) -> Result<(SyncRunStatus, Step), machine::Illegal> {
    let step = machine::next(status.phase, event)?;
    status.phase = Some(step.to);
    status.message = Some(truncate(message, MAX_MESSAGE_BYTES));
    if step.to.is_finished() && status.completed_at.is_none() {
        status.completed_at = Some(ts.clone());
    }
    if step.told.is_some() {
        let kstatus = Kstatus {
            ready: step.to == Phase::Applied || step.to == Phase::NoChanges,
            reconciling: step.to.is_in_progress(),
            stalled: step.to.is_unsuccessful(),
            reason: step.reason,
            message,
        };
        kstatus.set(&mut status.conditions, generation, &ts);
    }
    Ok((status, step))
}

/// Ends a run that can no longer be approved, saying what replaced it: from the
/// SyncRun controller, which read the run as it is.
pub async fn supersede(
    ctx: &Context,
    run: &SyncRun,
    status: SyncRunStatus,
    message: String,
) -> Result<()> {
    transition(ctx, run, status, Event::Superseded, message).await?;
    Ok(())
}

/// [`supersede`] from a list of the repository's runs: only if `listed` is still what
/// is stored. Returns false when the run changed since it was listed (the next
/// reconcile judges it again, as it is then).
pub async fn supersede_listed(ctx: &Context, listed: &SyncRun, message: String) -> Result<bool> {
    let status = listed.status.clone().unwrap_or_default();
    let superseded = Event::Superseded;
    let written = transition_if(
        ctx,
        listed,
        status,
        superseded,
        message,
        &Guard::as_listed(listed),
    )
    .await;
    match written {
        Ok(_) => Ok(true),
        Err(Error::RunMoved { run, now }) => {
            info!(syncrun = %run, now, "not superseded: the run changed since it was listed");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Ends the run as Failed with a Warning Event; nothing more happens to it.
pub async fn fail(
    ctx: &Context,
    run: &SyncRun,
    status: SyncRunStatus,
    reason: FailReason,
    message: String,
) -> Result<Action> {
    transition(ctx, run, status, Event::Failed(reason), message).await?;
    Ok(Action::await_change())
}

/// The run is no longer authorized (approvals expired, a policy changed, the check in
/// front of the engine refused it): it forgets what cleared it and waits for people
/// again, with a Warning saying why.
pub async fn withdraw_authorization(
    ctx: &Context,
    run: &SyncRun,
    mut status: SyncRunStatus,
    why: Withdrawal,
    message: String,
) -> Result<Action> {
    status.approved_by = None;
    status.approved_at = None;
    status.scheduled_for = None;
    status.authorization = None;
    status.requires_approval = true;
    transition(ctx, run, status, Event::Withdrawn(why), message).await?;
    Ok(Action::await_change())
}

/// Ends the run as Rejected, saying why (the reject annotation).
pub async fn reject(
    ctx: &Context,
    run: &SyncRun,
    status: SyncRunStatus,
    reason: &str,
) -> Result<Action> {
    let message = format!("rejected: {reason}");
    transition(ctx, run, status, Event::Rejected, message).await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::condition;
    use crate::controller::lifecycle::Clearance;

    fn at(phase: Option<Phase>) -> SyncRunStatus {
        SyncRunStatus {
            phase,
            ..Default::default()
        }
    }

    #[test]
    fn a_finished_run_records_when_and_is_ready_or_stalled() {
        let (applied, step) = moved(
            at(Some(Phase::Converging)),
            Event::Applied,
            "done",
            Some(3),
            now(),
        )
        .unwrap();
        assert_eq!(applied.phase, Some(Phase::Applied));
        assert!(applied.completed_at.is_some());
        let ready = condition(&applied.conditions, "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Applied")
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(step.told, Some(kube::runtime::events::EventType::Normal));

        let failed = Event::Failed(FailReason::ValidationFailed);
        let (failed, _) = moved(at(Some(Phase::Planning)), failed, "bad", None, now()).unwrap();
        let stalled = condition(&failed.conditions, "Stalled").unwrap();
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "ValidationFailed")
        );

        // Written but not converged: finished, not Ready, Stalled with the reason why.
        let deadline = Event::Degraded(crate::fleet::health::Degradation::ProgressDeadlineExceeded);
        let (degraded, step) =
            moved(at(Some(Phase::Converging)), deadline, "late", None, now()).unwrap();
        assert!(degraded.completed_at.is_some());
        let ready = condition(&degraded.conditions, "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ProgressDeadlineExceeded")
        );
        assert_eq!(
            condition(&degraded.conditions, "Stalled").unwrap().status,
            "True"
        );
        assert_eq!(step.told, Some(kube::runtime::events::EventType::Warning));
    }

    #[test]
    fn a_run_in_progress_is_reconciling_and_keeps_no_completion_time() {
        let cleared = Event::Cleared(Clearance::WindowOpened);
        let (applying, _) =
            moved(at(Some(Phase::Scheduled)), cleared, "open", None, now()).unwrap();
        assert_eq!(applying.completed_at, None);
        let reconciling = condition(&applying.conditions, "Reconciling").unwrap();
        assert_eq!(reconciling.status, "True");
        assert_eq!(reconciling.reason, "WindowOpened");
    }

    #[test]
    fn a_run_starts_once() {
        let status = started(at(None), "0123456789abcdef", now()).unwrap();
        assert_eq!(status.phase, Some(Phase::Planning));
        assert_eq!(status.short_revision.as_deref(), Some("0123456789ab"));
        assert!(status.conditions.is_empty(), "no conditions before a plan");
        assert!(started(status, "0123456789abcdef", now()).is_err());
    }

    #[test]
    fn an_illegal_event_changes_nothing() {
        let refused = moved(
            at(Some(Phase::Applied)),
            Event::Superseded,
            "x",
            None,
            now(),
        );
        assert!(refused.is_err());
    }

    #[test]
    fn a_long_message_is_cut() {
        let long = "x".repeat(MAX_MESSAGE_BYTES * 2);
        let (status, _) = moved(
            at(Some(Phase::Planning)),
            Event::Planned,
            &long,
            None,
            now(),
        )
        .unwrap();
        assert!(status.message.unwrap().len() <= MAX_MESSAGE_BYTES);
    }

    #[test]
    fn the_guards_test_what_they_were_decided_from() {
        assert_eq!(Guard::Phase(None).test(), None);
        let phase = Guard::Phase(Some(Phase::Scheduled)).test().unwrap();
        assert_eq!(phase["path"], "/status/phase");
        assert_eq!(phase["value"], "Scheduled");
        let version = Guard::Version("42".into()).test().unwrap();
        assert_eq!(version["path"], "/metadata/resourceVersion");
        assert_eq!(version["value"], "42");
    }
}
