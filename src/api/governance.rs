//! GovernancePolicy: cluster-scoped rules that decide how many people must approve a
//! plan, how long a plan and an approval stay valid, and which plans CEL rules deny,
//! escalate or let through. Only platform owners write it: the chart's tenant roles are
//! bound per namespace and cannot reach a cluster-scoped kind.

// kube's derive takes one `printcolumn(...)` per column; clippy mistakes their
// repeated `type_ = "string"` arguments for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Rules for the repositories it selects; every selecting policy applies, the strictest wins.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gitops.fleetgate.dev",
    version = "v1alpha1",
    kind = "GovernancePolicy",
    doc = "Governance over the plans of the GitopsRepositories it selects: quorum approvals, plan and approval expiry, CEL plan rules. Cluster-scoped: only platform owners may write it.",
    status = "GovernancePolicyStatus",
    shortname = "fgpolicy",
    category = "fleetgate",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct GovernancePolicySpec {
    /// Which repositories the policy governs, by namespace and repository name (glob patterns with `*` and `?`). Never by repository labels: editors write those.
    #[schemars(length(min = 1, max = 64))]
    pub repositories: Vec<RepositorySelector>,
    /// How many distinct people must approve a plan, and who.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalRule>,
    /// A plan not approved within this time (such as `24h`) ends Expired and is planned afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub plan_expiry: Option<String>,
    /// An approval older than this (such as `2h`) no longer counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub approval_expiry: Option<String>,
    /// When approved plans may apply: allow and deny windows, as Argo CD's sync windows. An approved plan outside them waits in phase Scheduled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub windows: Vec<ChangeWindow>,
    /// Distinct approvals of a plan needed before an approver's override-window annotation lets it apply outside the windows (default: the approvals required, at least 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub override_approvals: Option<u32>,
    /// CEL rules over the recorded plan, evaluated in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub rules: Vec<PlanRule>,
    /// What the selected repositories' sources must prove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<SourceRule>,
    /// Splits each plan by owner (a machine's region, or another field or label): each slice needs its own quorum from its owners, and the plan as a whole still needs `approvals` (met by all its approvers together). At most one policy governing a repository may set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slices: Option<super::slices::SliceRule>,
}

/// Which git identities are which Kubernetes users, for separation of duties.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeparationOfDuties {
    /// Git identities and the users they are. E-mail addresses are whatever a commit's writer typed; a signing key's fingerprint (with the repository's spec.verify) is proof.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub identities: Vec<GitIdentity>,
}

/// One git identity (an e-mail address or a signing key's fingerprint) and its user.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitIdentity {
    /// An author's or committer's e-mail address (compared without case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub email: Option<String>,
    /// A signing key's fingerprint as status records it (OpenPGP upper-case hex, or SSH `SHA256:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub fingerprint: Option<String>,
    /// The Kubernetes user name (as the API server authenticates them).
    #[schemars(length(min = 1, max = 256))]
    pub user: String,
}

/// What a governed repository's source must prove before its revisions are planned.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceRule {
    /// Every revision must verify under the repository's spec.verify: a repository without spec.verify gets no plan (reason VerificationRequired). Editors may create and delete repositories; this is what keeps a re-created repository from dropping verification.
    #[serde(default)]
    pub require_verified: bool,
}

/// Repositories selected by namespace and name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct RepositorySelector {
    /// Namespace pattern (`*` any run of characters, `?` one character).
    #[serde(default = "any")]
    #[schemars(length(min = 1, max = 253))]
    pub namespace: String,
    /// GitopsRepository name pattern. Editors choose repository names (they may create and delete GitopsRepositories), so a name pattern only narrows the selection within namespaces the platform owner controls: a repository created under a name the pattern does not match is not governed by this selector. To govern every repository of a namespace, leave it `*`.
    #[serde(default = "any")]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn any() -> String {
    "*".into()
}

/// A recurring window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeWindow {
    /// Allow: plans apply only inside an active allow window (when any is declared). Deny: never inside an active deny window.
    pub kind: WindowKind,
    /// Cron schedule of the window's openings (5 fields, or 6 with seconds first).
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,
    /// How long each opening lasts, such as `2h`.
    #[schemars(length(min = 1, max = 32))]
    pub duration: String,
    /// IANA time zone of the schedule (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub time_zone: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WindowKind {
    Allow,
    Deny,
}

/// Who must approve.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRule {
    /// Distinct approvers of the same planId needed before the plan applies.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10))]
    pub required: u32,
    /// At least one approver must belong to each of these groups (as the API server authenticates them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub from_groups: Vec<String>,
    /// The people who wrote, committed or signed the commits a plan comes from (since the revision last applied) do not count as its approvers. Git identities are mapped to Kubernetes users here; an identity no entry maps excludes nobody (it is listed on the run, and rules see it in plan.source.unmapped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separation_of_duties: Option<SeparationOfDuties>,
    /// The user who requested the sync (stamped at admission) may not approve its run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forbid_requester: bool,
    /// ServiceAccounts whose approvals count, each as one approver. Without it no ServiceAccount's approval counts. A ServiceAccount of the repository's own namespace never counts, listed or not: anyone who may edit there can mint its tokens or act as it. Where several selecting policies set this list, a ServiceAccount counts only if every one of them lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub service_accounts: Option<Vec<ServiceAccountRef>>,
}

/// One ServiceAccount, named exactly (no patterns).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ServiceAccountRef {
    /// The ServiceAccount's namespace.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// The ServiceAccount's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl ServiceAccountRef {
    /// The user name the API server authenticates the ServiceAccount as.
    pub fn user_name(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

fn one() -> u32 {
    1
}

/// One CEL rule over the recorded plan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanRule {
    /// A short name, shown in status and Events.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// A CEL expression over `plan`, `live`, `repository` and `trigger` that is true when the rule applies.
    #[schemars(length(min = 1, max = 2048))]
    pub expression: String,
    /// What a matching rule does.
    pub action: RuleAction,
    /// For RequireApprovals: how many distinct approvers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub approvals: Option<u32>,
    /// Said when the rule matches (Deny, Warn) in status and Events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RuleAction {
    /// The run fails before anyone is asked.
    Deny,
    /// The plan needs this many distinct approvers.
    RequireApprovals,
    /// The plan applies without a person, unless another rule denies or requires approvals.
    AutoApprove,
    /// The message is added to the run's warnings.
    Warn,
}

/// Whether every rule compiled.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GovernancePolicyStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: True when every rule and duration is valid (reason Compiled), False with reason InvalidRule or InvalidSpec.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Each invalid rule or field, located: `rules[1] (name): message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}
