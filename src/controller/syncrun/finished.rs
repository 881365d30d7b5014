//! A finished run (Applied, Degraded, NoChanges, Failed, Superseded, Rejected, Expired):
//! nothing more happens to it but its signed record (when the run was authorized and the
//! controller signs records), and an approval set on it is refused aloud rather than
//! ignored.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::approval::refuse;
use crate::api::syncrun::{Phase, SyncRunStatus};
use crate::api::{SyncRun, annotations};
use crate::controller::attestation;
use crate::controller::context::Context;
use crate::controller::error::Result;
use crate::controller::lifecycle::written_status;

pub(super) async fn refuse_late_approval(
    run: &SyncRun,
    ctx: &Context,
    status: SyncRunStatus,
) -> Result<Action> {
    // A run superseded while it converged was finished by the repository: what it kept
    // for converging goes with it.
    ctx.converging.forget(run);
    let status = attested(run, ctx, status).await?;
    let phase = status.phase.map(Phase::as_str).unwrap_or_default();
    let Some(approval) = run.annotations().get(annotations::APPROVE).cloned() else {
        return Ok(Action::await_change());
    };
    let already_used =
        status.approved_by.is_some() && status.plan_id.as_deref() == Some(approval.as_str());
    if already_used {
        return Ok(Action::await_change());
    }
    let message = format!(
        "approval `{approval}` refused: this run is {phase}; only a run awaiting approval can be approved"
    );
    refuse(run, ctx, status, &approval, message).await
}

/// The run's status once its signed record is kept (if one is due). A record that cannot
/// be signed (the key is missing or unreadable) is retried with backoff, and said in a
/// Warning Event each time: the run itself is over either way.
async fn attested(run: &SyncRun, ctx: &Context, status: SyncRunStatus) -> Result<SyncRunStatus> {
    match attestation::sign_and_keep(ctx, run, &status).await {
        Ok(None) => Ok(status),
        Ok(Some(kept)) => {
            let note = format!(
                "approval-to-apply record signed by key {} and kept as {}/{} ({})",
                kept.key_id, kept.namespace, kept.config_map, kept.digest
            );
            let mut status = status;
            status.attestation = Some(kept);
            written_status(ctx, run, &status).await?;
            ctx.event_at(
                run,
                "status.attestation",
                EventType::Normal,
                "RecordSigned",
                "Attest",
                note,
            )
            .await;
            Ok(status)
        }
        Err(e) => {
            let note = format!("approval-to-apply record not signed: {e}");
            ctx.event_at(
                run,
                "status.attestation",
                EventType::Warning,
                "AttestationFailed",
                "Attest",
                note,
            )
            .await;
            Err(e)
        }
    }
}
