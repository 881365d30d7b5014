//! What a notification says, as a generic webhook's JSON or a Slack-compatible text, and
//! the HMAC-SHA256 signature over the body. Nothing here reads a Secret's value into a
//! payload: the key only signs.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::api::notification::NotificationEvent;

/// The header that carries `sha256=<hex of HMAC-SHA256(token, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Fleetgate-Signature";
/// The header that carries the occurrence's id, the same on every retry.
pub const ID_HEADER: &str = "X-Fleetgate-Delivery";

/// One occurrence, as sent to every target that wants it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// Stable id of the occurrence: receivers may de-duplicate on it.
    pub id: String,
    pub event: NotificationEvent,
    pub namespace: String,
    pub repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// One line: what changes, or what went wrong.
    pub summary: String,
    /// The command that approves the plan, for PlanAwaitingApproval; that chooses at the pause, for RolloutPaused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approve_command: Option<String>,
}

/// The generic webhook's body.
pub fn webhook_body(notice: &Notice) -> Vec<u8> {
    serde_json::to_vec(notice).unwrap_or_default()
}

/// A Slack-compatible incoming webhook's body: `{"text": ...}`.
pub fn slack_body(notice: &Notice) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "text": slack_text(notice) })).unwrap_or_default()
}

fn slack_text(n: &Notice) -> String {
    let what = match n.event {
        NotificationEvent::PlanAwaitingApproval => "plan awaiting approval",
        NotificationEvent::ApprovalRefused => "approval refused",
        NotificationEvent::Applied => "applied",
        NotificationEvent::Failed => "failed",
        NotificationEvent::Degraded => "applied but not converged",
        NotificationEvent::RolloutPaused => "rollout paused: a choice is needed",
        NotificationEvent::DriftDetected => "drift detected",
        NotificationEvent::DriftCleared => "drift cleared",
        NotificationEvent::RepositoryStalled => "repository stalled",
        NotificationEvent::Promoted => "promoted: a revision the upstream held",
    };
    let mut text = format!("*fleetgate {}/{}*: {what}", n.namespace, n.repository);
    if let Some(run) = &n.run {
        text.push_str(&format!(" — SyncRun `{run}`"));
    }
    if let Some(plan) = &n.plan_id {
        text.push_str(&format!(", plan `{plan}`"));
    }
    if let Some(revision) = &n.revision {
        let short = crate::api::short_revision(revision);
        text.push_str(&format!(" at `{short}`"));
    }
    text.push('\n');
    text.push_str(&n.summary);
    if let Some(command) = &n.approve_command {
        text.push_str(&format!("\nApprove with: `{command}`"));
    }
    text
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` keyed by `key`, as GitHub and Gitea sign hooks.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm is unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!(
        "sha256={}",
        crate::fleet::plan::hex(&mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Notice {
        Notice {
            id: "uid/AwaitingApproval/plan-1".into(),
            event: NotificationEvent::PlanAwaitingApproval,
            namespace: "fleet".into(),
            repository: "edge".into(),
            run: Some("edge-abc-x".into()),
            revision: Some("0123456789abcdef".into()),
            plan_id: Some("plan-1".into()),
            phase: Some("AwaitingApproval".into()),
            summary: "2 to add, 4 to change, 2 to delete".into(),
            approve_command: Some("kubectl annotate ...".into()),
        }
    }

    #[test]
    fn webhook_body_names_everything_a_receiver_needs() {
        let body: serde_json::Value = serde_json::from_slice(&webhook_body(&notice())).unwrap();
        assert_eq!(body["event"], "PlanAwaitingApproval");
        assert_eq!(body["planId"], "plan-1");
        assert_eq!(body["run"], "edge-abc-x");
        assert_eq!(body["approveCommand"], "kubectl annotate ...");
    }

    #[test]
    fn slack_text_reads_as_one_message() {
        let body: serde_json::Value = serde_json::from_slice(&slack_body(&notice())).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(text.starts_with("*fleetgate fleet/edge*: plan awaiting approval"));
        assert!(text.contains("at `0123456789ab`"), "{text}");
        assert!(text.contains("Approve with: `kubectl annotate ...`"));
    }

    #[test]
    fn signature_is_githubs_format() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
