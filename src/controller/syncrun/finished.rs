//! A finished run (Applied, Degraded, NoChanges, Failed, Superseded, Rejected, Expired):
//! nothing more happens to it, and an approval set on it is refused aloud rather than
//! ignored.

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::approval::refuse;
use crate::api::syncrun::{Phase, SyncRunStatus};
use crate::api::{SyncRun, annotations};
use crate::controller::context::Context;
use crate::controller::error::Result;

pub(super) async fn refuse_late_approval(
    run: &SyncRun,
    ctx: &Context,
    status: SyncRunStatus,
) -> Result<Action> {
    // A run superseded while it converged was finished by the repository: what it kept
    // for converging goes with it.
    ctx.converging.forget(run);
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
