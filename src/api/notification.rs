//! NotificationTarget: where fleetgate tells people that something needs them (a plan
//! waits for approval, an apply failed, the cluster drifted), in the style of Flux's
//! Provider and Alert folded into one small kind.

// kube's derive takes one `printcolumn(...)` per column; clippy mistakes their
// repeated `type_ = "string"` arguments for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::secret_ref::SecretRef;

/// A receiver of fleetgate's notifications for the repositories of its namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gitops.fleetgate.dev",
    version = "v1alpha1",
    kind = "NotificationTarget",
    doc = "Where fleetgate sends notifications about the repositories of its namespace: a generic webhook (JSON, signed with HMAC-SHA256) or a Slack-compatible incoming webhook.",
    namespaced,
    status = "NotificationTargetStatus",
    shortname = "fgnotify",
    category = "fleetgate",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Last", type_ = "string", json_path = ".status.lastEvent"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NotificationTargetSpec {
    /// The payload's shape: `Webhook` (fleetgate's JSON, signed when the Secret has a `token`) or `Slack` (an incoming webhook's `{"text": ...}`, which Mattermost, Rocket.Chat and Teams' Slack-compatible hooks also take).
    #[serde(rename = "type")]
    pub target_type: TargetType,
    /// Secret in this namespace: `address` is the URL to POST to (a Slack webhook URL is itself a credential); for `Webhook`, `token` is the key of the HMAC-SHA256 signature over the body, sent as `X-Fleetgate-Signature: sha256=<hex>`.
    pub secret_ref: SecretRef,
    /// Which occurrences to send; all of them when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NotificationEvent>,
    /// Names of the GitopsRepositories (same namespace) to report on; all of them when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Stops sending while true; occurrences meanwhile are not sent later.
    #[serde(default)]
    pub suspend: bool,
}

/// The payload's shape.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TargetType {
    /// fleetgate's JSON body, signed with HMAC-SHA256.
    Webhook,
    /// A Slack-compatible incoming webhook: `{"text": "..."}`.
    Slack,
}

/// An occurrence worth telling someone about.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum NotificationEvent {
    /// A SyncRun recorded a plan that waits for a person's approval.
    PlanAwaitingApproval,
    /// An approval was refused (it named another plan, or who approved cannot be verified).
    ApprovalRefused,
    /// A SyncRun's plan was applied.
    Applied,
    /// A SyncRun failed (the fleet file is invalid, or applying failed).
    Failed,
    /// A SyncRun's plan was written but its objects did not converge: a provider reports a terminal failure, or the progress deadline passed.
    Degraded,
    /// A SyncRun's rollout paused at a wave (failures past its budget, the progress deadline, or a health regression): a person with the approve verb chooses to continue, leave the failed objects out, or roll back.
    RolloutPaused,
    /// The cluster drifted from the revision last applied.
    DriftDetected,
    /// The cluster matches the revision last applied again.
    DriftCleared,
    /// A repository stalled: retrying will not help until its spec, Secret or server changes.
    RepositoryStalled,
    /// A repository with spec.promotion has a newly eligible revision: its upstream applied and held it; the plan of it follows.
    Promoted,
}

impl NotificationEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlanAwaitingApproval => "PlanAwaitingApproval",
            Self::ApprovalRefused => "ApprovalRefused",
            Self::Applied => "Applied",
            Self::Failed => "Failed",
            Self::Degraded => "Degraded",
            Self::RolloutPaused => "RolloutPaused",
            Self::DriftDetected => "DriftDetected",
            Self::DriftCleared => "DriftCleared",
            Self::RepositoryStalled => "RepositoryStalled",
            Self::Promoted => "Promoted",
        }
    }
}

/// What the controller last sent to this target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationTargetStatus {
    /// Ready is False while the last delivery failed (after its retries), with the reason.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The last occurrence delivered: `<event> <object>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<String>,
    /// When the last notification was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_at: Option<Time>,
}
