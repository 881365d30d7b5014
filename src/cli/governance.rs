//! What `kubectl fleet` says about a run's governance: quorum progress, a change-window
//! wait, an override, a rollback, the rules that matched.

use kube::ResourceExt;

use crate::api::syncrun::{Phase, Trigger};
use crate::api::{SyncRun, annotations};

/// Lines about the run's governance, empty when there is nothing to say.
pub fn lines(run: &SyncRun) -> String {
    let status = run.status.clone().unwrap_or_default();
    let mut out = String::new();
    let plan = status.plan_id.clone().unwrap_or_default();
    let required = status.approvals_required.unwrap_or(1);
    let mut approvers: Vec<&str> = Vec::new();
    for a in status.approvals.iter().filter(|a| a.plan_id == plan) {
        if !approvers.contains(&a.user.as_str()) {
            approvers.push(&a.user);
        }
    }
    if required > 1 || !approvers.is_empty() {
        out.push_str(&format!(
            "Approvals: {}/{required}{}\n",
            approvers.len().min(required as usize),
            match approvers.is_empty() {
                true => String::new(),
                false => format!(" ({})", approvers.join(", ")),
            }
        ));
    }
    if status.phase == Some(Phase::Scheduled) {
        let from = status
            .scheduled_for
            .as_ref()
            .map_or("when the windows allow".to_owned(), |t| {
                format!("from {}", t.0)
            });
        out.push_str(&format!(
            "Scheduled: approved, applies {from}\n  {}\n",
            status.message.clone().unwrap_or_default()
        ));
    }
    if let Some(o) = &status.window_override {
        out.push_str(&format!("Window override: {o}\n"));
    }
    if run.spec.trigger == Trigger::Rollback {
        let a = run.annotations();
        out.push_str(&format!(
            "Rollback: back to what syncrun/{} applied; revision {} is held until a new revision\n",
            a.get(annotations::ROLLBACK_OF).map_or("?", String::as_str),
            a.get(annotations::ROLLBACK_FROM)
                .map_or("?".to_owned(), |r| r.chars().take(12).collect())
        ));
    }
    for r in &status.policy_results {
        out.push_str(&format!("Policy: {r}\n"));
    }
    out
}
