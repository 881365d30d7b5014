//! SyncRun: one planned revision of a repository, its approval and its application.
//! The status stays small whatever the fleet's size: the diff and the per-action list are
//! bounded, progress is counted, and the full plan is stored in ConfigMaps it names.

// kube's derive takes one `printcolumn(...)` per column; clippy mistakes their
// repeated `type_ = "string"` arguments for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fleet::plan::{Counts, Summary};

/// One planned revision of a GitopsRepository, waiting for approval or applied.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gitops.fleetgate.dev",
    version = "v1alpha1",
    kind = "SyncRun",
    doc = "One planned revision of a GitopsRepository: the plan, its approval (bound to the planId), and what applying it did.",
    namespaced,
    status = "SyncRunStatus",
    shortname = "fgrun",
    shortname = "sr",
    category = "fleetgate",
    printcolumn(name = "Repository", type_ = "string", json_path = ".spec.repository"),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.shortRevision"
    ),
    printcolumn(name = "Trigger", type_ = "string", json_path = ".spec.trigger"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Plan", type_ = "string", json_path = ".status.planId"),
    printcolumn(name = "+", type_ = "integer", json_path = ".status.changes.add"),
    printcolumn(name = "~", type_ = "integer", json_path = ".status.changes.update"),
    printcolumn(name = "-", type_ = "integer", json_path = ".status.changes.delete"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self == oldSelf",
    "message": "a SyncRun's spec cannot change after it is created: its plan and approval are bound to it"
}]))]
pub struct SyncRunSpec {
    /// The GitopsRepository (same namespace) this run plans.
    pub repository: String,
    /// The commit being planned.
    pub revision: String,
    /// What started the run.
    pub trigger: Trigger,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Trigger {
    /// A new revision found on the interval.
    Schedule,
    /// The sync-requested-at annotation.
    Manual,
    /// Drift between git and the cluster.
    Drift,
    /// The repository is being deleted with deletionPolicy Delete: the plan removes
    /// every object it manages.
    Deletion,
    /// The rollback-to annotation: back to what an older applied run applied.
    Rollback,
    /// The module catalog moved a lifecycle pin the fleet uses (a new blessed or live
    /// version): the same revision planned again for exactly that upgrade.
    Catalog,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "Schedule",
            Trigger::Manual => "Manual",
            Trigger::Drift => "Drift",
            Trigger::Deletion => "Deletion",
            Trigger::Rollback => "Rollback",
            Trigger::Catalog => "Catalog",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    Planning,
    AwaitingApproval,
    Applying,
    Applied,
    Failed,
    NoChanges,
    Superseded,
    Rejected,
    /// Not approved within the governing policy's planExpiry; the revision is planned afresh.
    Expired,
    /// Approved, waiting for a change window to open (or for apply-after).
    Scheduled,
    /// Written; waiting for the providers to report every object it wrote Ready for its new generation (see status.health).
    Converging,
    /// Written, but its objects did not converge: a provider reports a terminal failure, or the repository's spec.rollout.progressDeadline passed (see status.health).
    Degraded,
    /// A rollout stopped at a wave (failures past maxFailures, the progress deadline, or a health regression) with waves left: a person with the approve verb chooses to continue, leave the failed objects out, or roll back (see status.rollout.pause).
    Paused,
}

impl SyncRun {
    /// The run's phase; None before its first status write.
    pub fn phase(&self) -> Option<Phase> {
        self.status.as_ref().and_then(|s| s.phase)
    }

    /// The run's place among its repository's runs (1 for the first), from its
    /// annotation; 0 when it has none.
    pub fn sequence(&self) -> u64 {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(super::annotations::SEQUENCE))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

impl Phase {
    /// Whether the run is still on its way: kstatus reads it as InProgress
    /// (Reconciling=True). A plan awaiting approval is not finished either.
    pub fn is_in_progress(self) -> bool {
        matches!(
            self,
            Phase::Planning
                | Phase::AwaitingApproval
                | Phase::Scheduled
                | Phase::Applying
                | Phase::Converging
                | Phase::Paused
        )
    }

    /// Whether the run ended without its plan taking effect as planned (a Degraded run
    /// wrote its plan, but the providers did not converge on it): kstatus reads it as
    /// Failed (Stalled=True), and nothing more will happen to it.
    pub fn is_unsuccessful(self) -> bool {
        matches!(
            self,
            Phase::Failed | Phase::Superseded | Phase::Rejected | Phase::Expired | Phase::Degraded
        )
    }

    /// Whether the run wrote every action of its plan as planned (whether or not the
    /// providers then converged): the cluster holds its desired state.
    pub fn wrote_plan(self) -> bool {
        matches!(self, Phase::Applied | Phase::Degraded)
    }

    /// Whether the run is over (nothing more will happen to it).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Phase::Applied
                | Phase::Degraded
                | Phase::Failed
                | Phase::NoChanges
                | Phase::Superseded
                | Phase::Rejected
                | Phase::Expired
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Planning => "Planning",
            Phase::AwaitingApproval => "AwaitingApproval",
            Phase::Applying => "Applying",
            Phase::Applied => "Applied",
            Phase::Failed => "Failed",
            Phase::NoChanges => "NoChanges",
            Phase::Superseded => "Superseded",
            Phase::Rejected => "Rejected",
            Phase::Expired => "Expired",
            Phase::Scheduled => "Scheduled",
            Phase::Converging => "Converging",
            Phase::Paused => "Paused",
            Phase::Degraded => "Degraded",
        }
    }
}

/// What the run planned, who approved it, and what applying did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncRunStatus {
    /// The generation of the spec this status describes; -1 until the controller has
    /// seen the run, so kstatus reads a new run as InProgress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the run is: Planning, AwaitingApproval, Scheduled, Applying, Converging, Paused, then Applied, Degraded, NoChanges, Failed, Superseded, Rejected or Expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The first 12 characters of the revision, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_revision: Option<String>,
    /// Digest of the revision and the exact ordered actions; approve with this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// Adds, updates and deletes per kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// Adds, updates and deletes over all kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Counts>,
    /// Names and field-level changes; bounded, see diffTruncated and fullPlan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<DiffEntry>,
    /// True when the diff above is cut short; the whole plan is in fullPlan.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub diff_truncated: bool,
    /// Where the complete plan is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_plan: Option<FullPlanRef>,
    /// ConfigMaps holding the revision's whole desired state, against which drift is measured once the run is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub desired_state: Vec<String>,
    /// SHA-256 of the stored desired state; drift is measured only against exactly that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state_digest: Option<String>,
    /// Objects the plan leaves alone because another repository, or no one, manages them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// Warnings from validating the fleet file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Each lifecycle pin the fleet declares (`nginx@blessed`) and the version the module catalog resolved it to; the fleet objects carry the version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub modules: Vec<super::catalog::ModulePin>,
    /// How the plan split by owner, when a governing policy sets spec.slices: each slice needs its own owners' quorum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slices: Option<super::slices::PlanSlices>,
    /// SHA-256 of the module catalogs the plan was resolved against; absent when there were none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_catalog: Option<String>,
    /// Actions left out by the exclude annotation, with their dependents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
    /// The exclude annotation last acted on: applied to the plan, or refused (see message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusions: Option<String>,
    /// Whether a person must approve before anything is applied.
    #[serde(default)]
    pub requires_approval: bool,
    /// Who approved: the authenticated user, or `policy/<ApprovalPolicy>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// When the approval was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Time>,
    /// When the current plan was recorded; plan expiry counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_at: Option<Time>,
    /// Distinct approvers the governing policies require for this plan (absent: one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_required: Option<u32>,
    /// Every approval seen, with the planId it named and when it was seen (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalRecord>,
    /// While Scheduled: when the plan may apply next (a window opens, or apply-after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<Time>,
    /// An emergency override of the change windows: who, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_override: Option<String>,
    /// Governance rules that matched this plan: `policy/rule: action`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_results: Vec<String>,
    /// Counts of action states while and after applying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// One letter per action, in plan order: P pending, A applied, F failed, S skipped.
    /// The durable record that lets an interrupted run resume without repeating an action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_states: Option<String>,
    /// Actions and their outcomes: all of them for small plans, otherwise the failed and skipped ones first (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionStatus>,
    /// What the cluster and the providers report after applying: objects that still differ from git, and objects their provider did not report Ready for their new generation (empty on success).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift_after_apply: Vec<String>,
    /// Whether the objects the run wrote converged: how many each provider reports Ready, and the others by name. Written once the writes are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<RunHealth>,
    /// How the plan rolls out: its waves, the one being written or watched, the soak, the blast radius per region. Recorded with the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::api::rollout::RunRollout>,
    /// Ready (applied, or nothing to change), Reconciling (planning, awaiting approval or applying) and Stalled (Failed, Rejected or Superseded), kstatus-style.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When applying started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the run reached its final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// What happened last, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last approve value that was refused, so the refusal is reported once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_approval: Option<String>,
    /// Where the plan's content came from: the repository's source when it was planned (url, ref, path, revision, and who approved that source), or the applied run whose content it restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RunSource>,
    /// What authorized writing this plan, recorded when the run was cleared to apply: people (a quorum of approvers) or a policy, for which planId and on what basis. The apply engine decides it again before its first write; drift is measured only against runs applied under one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationRecord>,
    /// The signed approval-to-apply record of this run, written when it ended (controller flag --attestation-key-secret): where it is kept and what it is. `kubectl fleet attest verify` checks it with the public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestationRef>,
}

/// Where a run's signed record is kept.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestationRef {
    /// The controller's namespace, which holds the record.
    pub namespace: String,
    /// The immutable ConfigMap holding the DSSE envelope under `envelope.json`.
    pub config_map: String,
    /// The id of the key that signed it (SHA-256 of its public key, hex).
    pub key_id: String,
    /// SHA-256 of the envelope as stored (`sha256:<hex>`).
    pub digest: String,
}

impl SyncRunStatus {
    /// Each action's state as `actionStates` records it, in plan order (letters that are
    /// not states are skipped).
    pub fn recorded_states(&self) -> Vec<ActionState> {
        self.action_states
            .as_deref()
            .unwrap_or_default()
            .chars()
            .filter_map(ActionState::from_letter)
            .collect()
    }

    /// Whether the run wrote every action of its plan as planned: Applied or Degraded, or
    /// superseded while it converged (`health` is recorded only once the writes are
    /// done). The cluster then holds its desired state, as far as it goes.
    pub fn wrote_plan(&self) -> bool {
        let phase = self.phase.is_some_and(Phase::wrote_plan)
            || (self.phase == Some(Phase::Superseded) && self.health.is_some());
        // A rollout stopped before its last wave wrote only part of its plan; one that
        // left actions out at a person's choice did not write it whole either.
        phase && !self.waves_left() && !self.recorded_states().contains(&ActionState::LeftOut)
    }

    /// Whether each action is still to be written, in plan order.
    pub fn pending(&self) -> Vec<bool> {
        self.recorded_states()
            .into_iter()
            .map(|s| s == ActionState::Pending)
            .collect()
    }

    /// Whether some action is still to be written: the rollout has waves to go.
    pub fn waves_left(&self) -> bool {
        self.recorded_states().contains(&ActionState::Pending)
    }

    /// Whether at least one action was written to the fleet.
    pub fn wrote_any(&self) -> bool {
        self.action_states
            .as_deref()
            .is_some_and(|states| states.contains(ActionState::Applied.letter()))
    }
}

/// How the objects a run wrote stand, as their providers report them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunHealth {
    /// Objects reported Ready for their new generation.
    pub ready: u32,
    /// Objects not Ready yet: unreported, reported for an older generation, or reconciling.
    pub progressing: u32,
    /// Objects whose provider reports a terminal failure (Stalled).
    pub failed: u32,
    /// Objects of kinds no provider serves in the namespace (no registration Lease names them): not waited for.
    pub unserved: u32,
    /// The kinds the run wrote that no provider serves in the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unserved_kinds: Vec<String>,
    /// When the writes were done and the wait for the providers began.
    pub since: Time,
    /// When the run ends Degraded if its objects have not converged: since plus the repository's spec.rollout.progressDeadline.
    pub deadline: Time,
    /// The objects not Ready, failed first, then progressing, then unserved (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub objects: Vec<ObjectHealth>,
}

/// One object a run wrote, as its provider reports it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ObjectHealth {
    /// The object's kind, such as FleetNode.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// Ready, Progressing, Failed or Unserved.
    pub standing: crate::fleet::health::Standing,
    /// The reason of the provider's Ready condition (docs/provider-contract.md), when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where a run's content came from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSource {
    /// The repository's url when the fleet file was read (absent when the content was not read from git).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The repository's ref when the fleet file was read.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<crate::api::repository::GitRefSpec>,
    /// The fleet file's path when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The commit.
    pub revision: String,
    /// Who approved the repository's source (url, ref, path) when the run was planned, as its gitops.fleetgate.dev/source-approved-by annotation said: empty when a user without the approve verb set the source, absent when nothing stamped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// The applied SyncRun whose stored desired state this run restores (Rollback and Drift runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<String>,
    /// The commit's author and committer, and the signer that verified it under the repository's spec.verify (runs that read git).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<crate::api::provenance::RunCommit>,
    /// The Flux artifact the fleet file was read from (spec.sourceRef): its revision, its digest and Flux's verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flux: Option<crate::api::provenance::FluxArtifact>,
}

/// What authorized writing a plan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationRecord {
    /// People (a quorum of approvers of this planId) or Policy (a policy an approver or the platform owner set, decided on this planId and its source).
    pub by: Authority,
    /// The approvers counted toward the quorum, in the order they approved (People).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// The deciding policy (Policy): `Auto` or `AutoApplyNonDestructive` (the repository's approval), `Correct` (its driftRemediation), or `<policy>/<rule>` of a GovernancePolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The plan authorized.
    pub plan_id: String,
    /// Why a policy could decide on this content (Policy): who approved its source, or which authorized run's content it restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
    /// The slices it covers, when only some of a sliced plan's slices are approved (the policy's applyApprovedSlices): only actions that need no other slice are written. Empty: the whole plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<String>,
    /// When it was given.
    pub at: Time,
}

/// Who authorized a plan.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Authority {
    /// Approvers with the approve verb, counted as the governing policies define.
    People,
    /// A policy an approver or the platform owner set.
    Policy,
}

/// One approval, as the API server authenticated it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    /// The approving user (from the approved-by stamp).
    pub user: String,
    /// The user's groups at the time (from the approved-by-groups stamp).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The planId the approval named; it counts only for that plan.
    pub plan_id: String,
    /// When the controller saw it.
    pub at: Time,
}

/// One object's change in the plan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct DiffEntry {
    /// The object's kind, such as FleetNode.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// Create, Update or Delete.
    pub operation: String,
    /// Changed fields of an update, `path: old -> new` with values as JSON.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// ConfigMaps holding the whole plan, gzip-compressed JSON split into chunks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FullPlanRef {
    /// ConfigMap names in chunk order; each holds `plan.json.gz` in binaryData.
    pub config_maps: Vec<String>,
    /// Number of actions in the plan.
    pub actions: u32,
    /// SHA-256 of the stored plan; anything else read back is refused as PlanTampered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Progress {
    /// Actions in the plan.
    pub total: u32,
    /// Actions not yet attempted.
    pub pending: u32,
    /// Actions applied.
    pub applied: u32,
    /// Actions the API server refused, or whose object changed since planning.
    pub failed: u32,
    /// Actions left out because an action they depend on failed.
    pub skipped: u32,
    /// Actions left out by a person's choice at a paused rollout.
    #[serde(default, rename = "leftOut", skip_serializing_if = "is_zero")]
    pub left_out: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ActionState {
    Pending,
    Applied,
    Failed,
    Skipped,
    /// Left out by a person's choice at a paused rollout: never written.
    LeftOut,
}

impl ActionState {
    pub fn letter(self) -> char {
        match self {
            ActionState::Pending => 'P',
            ActionState::Applied => 'A',
            ActionState::Failed => 'F',
            ActionState::Skipped => 'S',
            ActionState::LeftOut => 'L',
        }
    }

    pub fn from_letter(c: char) -> Option<Self> {
        Some(match c {
            'P' => ActionState::Pending,
            'A' => ActionState::Applied,
            'F' => ActionState::Failed,
            'S' => ActionState::Skipped,
            'L' => ActionState::LeftOut,
            _ => return None,
        })
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ActionStatus {
    /// The object's kind, such as FleetNode.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// Create, Update or Delete.
    pub operation: String,
    /// Pending, Applied, Failed or Skipped.
    pub state: ActionState,
    /// Why the action failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
