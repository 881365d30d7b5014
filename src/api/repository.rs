//! GitopsRepository: where a fleet.yaml lives in git, and how its changes are gated.

// kube's derive takes one `printcolumn(...)` per column; clippy mistakes their
// repeated `type_ = "string"` arguments for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::syncrun::{Phase, Trigger};
use crate::fleet::drift::DriftedObject;
use crate::fleet::plan::Counts;

/// A fleet.yaml in a git repository, and how its changes reach the cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gitops.fleetgate.dev",
    version = "v1alpha1",
    kind = "GitopsRepository",
    doc = "A fleet.yaml in a git repository, and how its changes reach the cluster: every plan is recorded on a SyncRun and applied once approved.",
    namespaced,
    status = "GitopsRepositoryStatus",
    shortname = "fgrepo",
    category = "fleetgate",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(
        name = "Source",
        type_ = "string",
        priority = 1,
        json_path = ".spec.sourceRef.name"
    ),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.lastFetchedRevision"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Drifted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Drifted\")].status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].message"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.url) != has(self.sourceRef)",
    "message": "set exactly one of url (a git repository) and sourceRef (a Flux source)"
}, {
    "rule": "has(self.url) == has(self.ref)",
    "message": "ref goes with url: set both for a git repository, neither for a Flux source"
}, {
    "rule": "!has(self.sourceRef) || (!has(self.secretRef) && !has(self.verify))",
    "message": "a Flux source is fetched and verified by Flux: set its secretRef and verify on the GitRepository or OCIRepository, not here"
}]))]
pub struct GitopsRepositorySpec {
    /// The repository: `ssh://git@host/org/repo.git`, `git@host:org/repo.git` or `https://host/org/repo.git`; `http://`, `git://` and `file://` only where the controller allows them by flag. Never credentials in the URL: they belong in the Secret named by `secretRef`.
    #[schemars(length(min = 1, max = 2048), extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^(ssh|https|http|git|file)://[^\\\\s]+$') || self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\\\\s]+$')",
        "message": "url must be ssh://, https://, http://, git:// or file://, or scp-like user@host:path, with no spaces (which schemes are allowed is the controller's choice)"
    }, {
        "rule": "(!self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*@') || self.matches('^ssh://[^/:@]*@')) && !self.matches('^[^/@:]*:[^/@]*@')",
        "message": "the URL may not carry credentials (user:password@ or token@); put them in the Secret named by secretRef",
        "reason": "FieldValueForbidden"
    }]))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// What to follow: exactly one of branch, tag or commit (with url).
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<GitRefSpec>,
    /// Instead of url and ref: a Flux source in this namespace (a source.toolkit.fluxcd.io/v1 GitRepository or OCIRepository) whose artifact holds the fleet file. fleetgate reads the artifact source-controller serves, checks its digest, and records its revision and Flux's verification. Guarded like url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<FluxSourceRef>,
    /// Path of the fleet file inside the repository. It may not leave the repository.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 1024), extend("x-kubernetes-validations" = [{
        "rule": "!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')",
        "message": "path must be relative to the repository's root and may not contain `..`"
    }]))]
    pub path: String,
    /// Secret with the credentials: `identity` and `known_hosts` for SSH, or `username` and `password` for HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Secret whose `token` authenticates push webhooks (HMAC-SHA256 signatures, or GitLab's token) to the controller's receiver; without it, webhooks for this repository are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_ref: Option<SecretRef>,
    /// How often to check git (and drift), as a duration such as `60s` or `5m`.
    #[serde(default = "default_interval")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) >= duration('1s')",
        "message": "interval must be a duration of at least 1s, such as 60s, 5m or 1h30m"
    }]))]
    pub interval: String,
    /// Time limit for each git operation, as a duration such as `60s`.
    #[serde(default = "default_interval")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) >= duration('1s')",
        "message": "timeout must be a duration of at least 1s, such as 30s or 2m"
    }]))]
    pub timeout: String,
    /// When set, the fleet file's `account` must equal it, or nothing is planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The environment of the fleet file this repository plans: the base declarations with the overlay `environments.<name>` applied. The file must declare it. Unset: the base alone, overlays ignored. Where the fleet comes from: changing it is guarded as url and path are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub environment: Option<String>,
    /// Plan only revisions an upstream repository (staging, for production) applied and held converged and drift-free for a while. Where the fleet comes from: changing it is guarded as url and path are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<super::promotion::Promotion>,
    /// Which plans apply without a person approving them: `Required` (none), `AutoApplyNonDestructive` (those without deletions), `Auto` (all).
    #[serde(default)]
    pub approval: ApprovalPolicy,
    /// Whether objects that git no longer declares are deleted.
    #[serde(default = "default_true")]
    pub prune: bool,
    /// Stops all fetching, planning and applying while true.
    #[serde(default)]
    pub suspend: bool,
    /// How many finished SyncRuns to keep.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 1, max = 1000))]
    pub history_limit: u32,
    /// When the cluster drifts from git: `Report` only records it; `Plan` starts a SyncRun with trigger Drift that restores git's state and waits for approval like any other; `Correct` applies that run without approval.
    #[serde(default)]
    pub drift_remediation: DriftRemediation,
    /// What deleting this repository does to the fleet objects it manages: `Orphan` leaves them in place; `Delete` removes them first, through a SyncRun (trigger Deletion) approved like any plan that deletes.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// The git host's API: a commit status for every planned revision and, if asked, plan previews on pull requests. Nothing is posted without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<crate::api::forge::ForgeSpec>,
    /// Spec fields (such as `nodePlatform`) whose change always needs approval, even under AutoApplyNonDestructive.
    #[serde(default = "default_sensitive_fields")]
    pub sensitive_fields: Vec<String>,
    /// How a written plan is seen through to healthy machines. Guarded like spec.approval: setting or changing it needs the approve verb on syncruns.
    #[serde(default, skip_serializing_if = "RolloutSpec::is_default")]
    pub rollout: RolloutSpec,
    /// Which signatures must verify before a revision is planned, and the Secret of trusted keys. An unverified revision gets no plan. Guarded like spec.approval: changing or removing it needs the approve verb on syncruns (adding it does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<crate::api::provenance::VerifySpec>,
}

pub use super::rollout::RolloutSpec;

fn default_sensitive_fields() -> Vec<String> {
    vec!["nodePlatform".into(), "architecture".into()]
}

/// What deleting a repository does to the objects it manages.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave them in place (the default); nothing waits for anything.
    #[default]
    Orphan,
    /// Remove them, with approval as for any plan that deletes, before the repository goes.
    Delete,
}

/// What to do about drift.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DriftRemediation {
    /// Record drift in status, an Event and a metric; change nothing.
    Report,
    /// Also start a SyncRun that restores git's state, approved like any other.
    #[default]
    Plan,
    /// Also apply that SyncRun without approval.
    Correct,
}

fn default_path() -> String {
    "fleet.yaml".into()
}
fn default_interval() -> String {
    "60s".into()
}
fn default_true() -> bool {
    true
}
fn default_history_limit() -> u32 {
    10
}

/// Exactly one of branch, tag or commit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.branch), has(self.tag), has(self.commit)].filter(x, x).size() == 1",
    "message": "set exactly one of branch, tag or commit"
}]))]
pub struct GitRefSpec {
    /// A branch to follow, such as `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A tag, such as `v1.2.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A full commit id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[0-9a-f]{40}$"))]
    pub commit: Option<String>,
}

pub use super::secret_ref::SecretRef;

/// A Flux source whose artifact holds the fleet file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct FluxSourceRef {
    /// GitRepository or OCIRepository (source.toolkit.fluxcd.io/v1).
    pub kind: FluxSourceKind,
    /// Its name, in the GitopsRepository's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// The kinds of Flux source fleetgate reads.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FluxSourceKind {
    GitRepository,
    #[serde(rename = "OCIRepository")]
    OciRepository,
}

impl FluxSourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FluxSourceKind::GitRepository => "GitRepository",
            FluxSourceKind::OciRepository => "OCIRepository",
        }
    }

    /// Its resource name in the API.
    pub fn plural(self) -> &'static str {
        match self {
            FluxSourceKind::GitRepository => "gitrepositories",
            FluxSourceKind::OciRepository => "ocirepositories",
        }
    }
}

/// Which plans may apply without a person approving them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ApprovalPolicy {
    /// Every plan waits for approval.
    #[default]
    Required,
    /// Plans without deletions apply at once; a plan with a deletion waits.
    AutoApplyNonDestructive,
    /// Every plan applies at once.
    Auto,
}

/// What fleetgate last saw and did for this repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitopsRepositoryStatus {
    /// Ready, Reconciling, Stalled and Drifted, kstatus-style.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The generation of the spec these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When git was last asked which commit the ref points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetched_at: Option<Time>,
    /// The commit the ref pointed at when last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetched_revision: Option<String>,
    /// The commit whose plan was last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The newest SyncRun of this repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_run: Option<String>,
    /// The value of the sync-requested-at annotation that was last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_sync_request: Option<String>,
    /// The value of the rollback-to annotation that was last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_rollback: Option<String>,
    /// The value of the push-received-at annotation that was last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_push: Option<String>,
    /// Under spec.promotion: which upstream revision is eligible here, or what promotion waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<super::promotion::PromotionStatus>,
    /// How the cluster differs from the revision last applied; absent when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftStatus>,
    /// The newest SyncRuns, newest first: what was applied, when, and who approved it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

/// Objects that differ from git, bounded in size.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftStatus {
    /// When this drift was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<Time>,
    /// The revision whose desired state the cluster is compared with.
    pub revision: String,
    /// How many objects drifted.
    pub count: u32,
    /// The drifted objects (at most 50), with expected -> actual values of changed fields.
    #[serde(default)]
    pub objects: Vec<DriftedObject>,
    /// True when more objects drifted than are listed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Digest of the whole drift, to tell a new drift from the same one.
    pub digest: String,
}

/// One SyncRun, as history.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The SyncRun's name.
    pub sync_run: String,
    /// The commit it planned.
    pub revision: String,
    /// What started it: Schedule, Manual, Drift, Deletion, Rollback or Catalog.
    pub trigger: Trigger,
    /// The plan it recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// Its phase when last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Adds, updates and deletes over all kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Counts>,
    /// Who approved it: a user, or `policy/<ApprovalPolicy>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// When applying started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it reached its final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}
