//! The one authorization check in front of every write of fleet objects.
//!
//! **Invariant.** The apply engine writes only the actions of an [`Authorized`] plan, and
//! only [`admit`] makes one: from the stored plan, checked again to be exactly the plan
//! recorded (its planId computed from its actions), and an [`Authorization`] that
//! [`authorize`] gave for that planId. An authorization is either
//! - **People**: the quorum of the governing policies, counted over the approvals of
//!   exactly this planId by distinct identities that count as people ([`identity`]),
//!   none expired; for a plan a policy splits by owner, each slice's quorum from its
//!   owners ([`slices`]), and with `applyApprovedSlices` the approved slices alone,
//!   of which the engine writes only the actions that need no other slice
//!   ([`Authorized::may_write`]); or
//! - **Policy**: a policy an approver or the platform owner set (the repository's
//!   `approval` or `driftRemediation: Correct`, or a GovernancePolicy's AutoApprove
//!   rule), decided on this planId, when nothing an editor wrote stands between the
//!   decision and the content: no action left out with `exclude`, and content read from
//!   a source an approver stands behind (the repository's `source-approved-by` stamp) or
//!   restored from a run that applied whole under an authorization itself.
//!
//! Every path that applies (an approval, the repository's policy, governance rules,
//! drift correction, rollback, deletion, and any path added later) reaches the engine
//! through the same run phases, so through [`admit`]; and the transition into them
//! takes an [`Authorization`] too. Pure: facts in, a decision out. What the run recorded
//! is read by [`recorded`].

pub mod identity;
pub mod quorum;
pub mod recorded;
pub mod slices;

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::integrity::{self, IntegrityError};
use crate::api::repository::{ApprovalPolicy, DriftRemediation, GitopsRepositorySpec};
use crate::api::syncrun::{
    ActionState, ApprovalRecord, Authority, AuthorizationRecord, RunSource, SyncRun, Trigger,
};
use crate::fleet::Plan;
use quorum::Requirement;

/// What is to be authorized: the plan itself, or only its id as the run recorded it
/// (people approve an id; a policy that judges the content needs the plan).
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    Plan(&'a Plan),
    Recorded { plan_id: &'a str },
}

impl Content<'_> {
    fn plan_id(&self) -> &str {
        match self {
            Content::Plan(plan) => &plan.plan_id,
            Content::Recorded { plan_id } => plan_id,
        }
    }
}

/// Whether an approver stands behind the source a plan's content was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceApproval<'a> {
    /// The source was set or approved by this user, who had the approve verb.
    By(&'a str),
    /// No admission policy stamps sources here, and the controller accepts unverified
    /// approvals (`--allow-unverified-approvals`): anyone who may write repositories is
    /// trusted alike.
    Unverified,
    /// A user without the approve verb set it, or nothing stamped it.
    Withheld,
}

/// Where the content of a plan came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance<'a> {
    /// Read from git, from the repository's source as it was when planned.
    Git(SourceApproval<'a>),
    /// An earlier run's stored desired state (a rollback, a drift correction).
    Restored {
        run: &'a str,
        /// That run applied under a recorded authorization.
        authorized: bool,
        /// Nothing of it was left out with `exclude`.
        whole: bool,
    },
    /// Nothing: a deletion plans against an empty desired state.
    Nothing,
    /// The run records no source (planned before sources were recorded).
    Unknown,
}

impl<'a> Provenance<'a> {
    /// The provenance a run recorded: `source` from its status, `restored` the run its
    /// source names (read fresh), `unverified_ok` whether unstamped sources are trusted.
    pub fn of(
        trigger: Trigger,
        source: Option<&'a RunSource>,
        restored: Option<&'a SyncRun>,
        unverified_ok: bool,
    ) -> Self {
        if trigger == Trigger::Deletion {
            return Provenance::Nothing;
        }
        let Some(source) = source else {
            return Provenance::Unknown;
        };
        if let Some(name) = &source.restores {
            let run = restored.filter(|r| r.metadata.name.as_deref() == Some(name.as_str()));
            return Provenance::Restored {
                run: name,
                authorized: run.is_some_and(applied_under_authorization),
                whole: run
                    .is_some_and(|r| r.status.as_ref().is_some_and(|s| s.excluded.is_empty())),
            };
        }
        // A Flux source (or no url at all): what it serves is decided by the
        // GitRepository's or OCIRepository's own spec, which fleetgate's admission
        // policies do not guard. No policy applies its content by itself: people approve
        // each plan.
        if source.flux.is_some() || source.url.is_none() {
            return Provenance::Unknown;
        }
        Provenance::Git(match source.approved_by.as_deref() {
            Some("") => SourceApproval::Withheld,
            Some(user) => SourceApproval::By(user),
            None if unverified_ok => SourceApproval::Unverified,
            None => SourceApproval::Withheld,
        })
    }
}

/// Whether `run` applied under an authorization it recorded: only such runs are drift
/// baselines for correction and content a policy may restore. A Degraded run counts: it
/// wrote its whole plan, and the cluster holds its desired state (restoring an older one
/// would undo an authorized change).
pub fn applied_under_authorization(run: &SyncRun) -> bool {
    run.status
        .as_ref()
        .is_some_and(|s| s.wrote_plan() && s.authorization.is_some())
}

/// The repository's own approval settings, as they are now.
#[derive(Debug, Clone, Copy)]
pub struct RepositoryPolicy<'a> {
    pub approval: ApprovalPolicy,
    pub drift_remediation: DriftRemediation,
    pub sensitive_fields: &'a [String],
}

impl<'a> RepositoryPolicy<'a> {
    pub fn of(spec: &'a GitopsRepositorySpec) -> Self {
        Self {
            approval: spec.approval,
            drift_remediation: spec.drift_remediation,
            sensitive_fields: &spec.sensitive_fields,
        }
    }

    /// The repository policy that approves `plan` by itself, if any.
    fn approving(&self, plan: &Plan, trigger: Trigger) -> Option<PolicyRef> {
        if trigger == Trigger::Drift && self.drift_remediation == DriftRemediation::Correct {
            return Some(PolicyRef::DriftCorrect);
        }
        let sensitive = |path: &str| {
            let field = path.split(['.', '[']).next().unwrap_or_default();
            self.sensitive_fields.iter().any(|s| s == field)
        };
        let touches_sensitive = plan
            .diff
            .iter()
            .any(|d| d.fields.iter().any(|f| sensitive(&f.path)));
        match self.approval {
            ApprovalPolicy::Required => None,
            ApprovalPolicy::AutoApplyNonDestructive
                if plan.has_deletions() || touches_sensitive =>
            {
                None
            }
            policy => Some(PolicyRef::Repository(policy)),
        }
    }

    /// Whether `policy`, decided earlier, is still set.
    fn still_sets(&self, policy: &PolicyRef, trigger: Trigger) -> bool {
        match policy {
            PolicyRef::Repository(p) => self.approval == *p,
            PolicyRef::DriftCorrect => {
                trigger == Trigger::Drift && self.drift_remediation == DriftRemediation::Correct
            }
            PolicyRef::Rule(_) => true,
        }
    }
}

/// What the governance rules said of a plan.
#[derive(Debug, Clone, Copy)]
pub struct RuleVerdict<'a> {
    /// The plan they judged.
    pub plan_id: &'a str,
    /// `policy/rule` of the first AutoApprove rule that matched.
    pub auto_approved_by: Option<&'a str>,
    /// A rule required approvals, or the rules saw a truncated plan.
    pub needs_person: bool,
}

/// What a policy decision is checked against.
#[derive(Debug, Clone)]
pub struct PolicyFacts<'a> {
    pub provenance: Provenance<'a>,
    pub repository: RepositoryPolicy<'a>,
    /// None when no governance rule judged the plan.
    pub rules: Option<RuleVerdict<'a>>,
    /// The actions an editor left out with `exclude` (as the controller recorded them).
    pub excluded: &'a [String],
    /// The policy recorded when the run was cleared to apply, if it was.
    pub recorded: Option<PolicyRef>,
}

/// Everything the decision reads.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub trigger: Trigger,
    /// The approvals recorded in the run's status.
    pub approvals: &'a [ApprovalRecord],
    /// What the quorum needs, now.
    pub requirement: &'a Requirement,
    /// None: only people may authorize.
    pub policy: Option<PolicyFacts<'a>>,
    /// When the decision is made (approvals expire).
    pub at: Timestamp,
}

/// A policy that decides by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRef {
    /// The repository's `approval`.
    Repository(ApprovalPolicy),
    /// The repository's `driftRemediation: Correct`.
    DriftCorrect,
    /// `<policy>/<rule>`: a GovernancePolicy's AutoApprove rule.
    Rule(String),
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyRef::Repository(p) => write!(f, "{p:?}"),
            PolicyRef::DriftCorrect => f.write_str("Correct"),
            PolicyRef::Rule(rule) => f.write_str(rule),
        }
    }
}

impl PolicyRef {
    /// The policy an [`AuthorizationRecord`] names.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "Auto" => Some(PolicyRef::Repository(ApprovalPolicy::Auto)),
            "AutoApplyNonDestructive" => Some(PolicyRef::Repository(
                ApprovalPolicy::AutoApplyNonDestructive,
            )),
            "Correct" => Some(PolicyRef::DriftCorrect),
            rule if rule.contains('/') => Some(PolicyRef::Rule(rule.to_owned())),
            _ => None,
        }
    }
}

/// Why a policy that would approve a plan may not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Withheld {
    #[error(
        "the governing policies require people for it (a quorum, a group, or a rule requiring approvals)"
    )]
    NeedsPeople,
    #[error("the governance rules judged another plan")]
    StaleVerdict,
    #[error("that policy is no longer set")]
    NoLongerSet,
    #[error("deciding it needs the plan itself")]
    NotRead,
    #[error(
        "{excluded} action(s) were left out with the exclude annotation, and no policy approves a plan an editor trimmed"
    )]
    Edited { excluded: usize },
    #[error(
        "its source (url, ref, path) was set by a user without the approve verb; an approver approves a plan from it, or approves the source itself (annotate the repository with gitops.fleetgate.dev/source-approved-by)"
    )]
    SourceNotApproved,
    #[error(
        "the content it restores (what {run} applied) was not applied whole under an authorization"
    )]
    Unrestorable { run: String },
    #[error("the run records no source for its content")]
    UnknownSource,
    #[error("drift is corrected by policy only with the content of an authorized run")]
    NotRestored,
}

/// Why a plan may not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the run records no plan")]
    NoPlan,
    #[error("{0}")]
    Tampered(IntegrityError),
    #[error("plan {plan_id} is not authorized: {tally}{}", withheld_text(withheld))]
    Unapproved {
        plan_id: String,
        /// Where the quorum stands (`0/1 approvals`).
        tally: String,
        /// A policy that would approve it, and why it may not.
        withheld: Option<(PolicyRef, Withheld)>,
    },
}

fn withheld_text(withheld: &Option<(PolicyRef, Withheld)>) -> String {
    withheld
        .as_ref()
        .map(|(policy, why)| format!("; policy/{policy} would approve it, but {why}"))
        .unwrap_or_default()
}

impl Refusal {
    /// The condition and Event reason.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Tampered(e) => e.label(),
            Refusal::NoPlan | Refusal::Unapproved { .. } => "Unauthorized",
        }
    }

    /// The policy that would have approved, and why it may not.
    pub fn withheld(&self) -> Option<&(PolicyRef, Withheld)> {
        match self {
            Refusal::Unapproved { withheld, .. } => withheld.as_ref(),
            _ => None,
        }
    }
}

/// Who authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    People { approvers: Vec<String> },
    Policy { policy: PolicyRef, basis: String },
}

/// Writing one plan is authorized. Only [`authorize`] makes one.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization {
    grant: Grant,
    plan_id: String,
    at: Timestamp,
    /// The approved slices of a sliced plan whose other slices wait
    /// (`applyApprovedSlices`): only actions that need no other slice may be written.
    /// Empty: the whole plan.
    slices: Vec<String>,
}

impl Authorization {
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The approved slices when only part of the plan is authorized; empty for all of it.
    pub fn slices(&self) -> &[String] {
        &self.slices
    }

    /// Whether this authorizes writing something of `wave` that `states` still has to
    /// write: always for the whole plan; for approved slices, an action that needs no
    /// other.
    pub fn writes_any(&self, requirement: &Requirement, states: &[ActionState], wave: u32) -> bool {
        match (self.slices.is_empty(), &requirement.slicing) {
            (true, Some(slicing)) => slicing.pending_in(states, wave),
            (true, None) => true,
            (false, Some(slicing)) => slicing.writes_any(&self.slices, states, wave),
            (false, None) => false,
        }
    }

    pub fn plan_id(&self) -> &str {
        &self.plan_id
    }

    /// `status.approvedBy`: the approvers, comma-separated, or `policy/<policy>`.
    pub fn approved_by(&self) -> String {
        let by = match &self.grant {
            Grant::People { approvers } => approvers.join(", "),
            Grant::Policy { policy, .. } => format!("policy/{policy}"),
        };
        match self.slices.is_empty() {
            true => by,
            false => format!(
                "{by} (slices {})",
                crate::api::slices::shown_all(&self.slices)
            ),
        }
    }

    /// What the run records in `status.authorization`.
    pub fn record(&self) -> AuthorizationRecord {
        let (by, approvers, policy, basis) = match &self.grant {
            Grant::People { approvers } => (Authority::People, approvers.clone(), None, None),
            Grant::Policy { policy, basis } => (
                Authority::Policy,
                Vec::new(),
                Some(policy.to_string()),
                Some(basis.clone()),
            ),
        };
        AuthorizationRecord {
            by,
            approvers,
            policy,
            plan_id: self.plan_id.clone(),
            basis,
            at: Time(self.at),
            slices: self.slices.clone(),
        }
    }
}

/// A plan the engine may write, with what authorized it. Only [`admit`] makes one.
#[derive(Debug)]
pub struct Authorized {
    plan: Plan,
    authorization: Authorization,
    /// For approved slices only: which actions may be written.
    writable: Option<Vec<bool>>,
}

impl Authorized {
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether the action at `index` may be written: every action of a plan authorized
    /// whole; of approved slices, those that need no other slice.
    pub fn may_write(&self, index: usize) -> bool {
        self.writable
            .as_ref()
            .is_none_or(|w| w.get(index).copied().unwrap_or(false))
    }

    pub fn authorization(&self) -> &Authorization {
        &self.authorization
    }
}

/// The check in front of the apply engine: `plan` (as stored) must be exactly the plan
/// the run recorded for `revision`, and writing it must be authorized.
pub fn admit(
    plan: Plan,
    revision: &str,
    recorded_plan_id: Option<&str>,
    facts: &Facts<'_>,
) -> Result<Authorized, Refusal> {
    integrity::verify(&plan, revision, recorded_plan_id).map_err(Refusal::Tampered)?;
    let authorization = authorize(Content::Plan(&plan), facts)?;
    // Approved slices write what needs no other slice: never anything when the record
    // of what each action needs does not cover exactly this plan.
    let writable = (!authorization.slices.is_empty()).then(|| {
        facts
            .requirement
            .slicing
            .as_ref()
            .and_then(|s| s.writable(&authorization.slices))
            .filter(|w| w.len() == plan.actions.len())
            .unwrap_or_else(|| vec![false; plan.actions.len()])
    });
    Ok(Authorized {
        plan,
        authorization,
        writable,
    })
}

/// Decides whether writing `content` is authorized: by people, or by a policy.
pub fn authorize(content: Content<'_>, facts: &Facts<'_>) -> Result<Authorization, Refusal> {
    let plan_id = content.plan_id();
    if plan_id.is_empty() {
        return Err(Refusal::NoPlan);
    }
    let granted = |grant, slices| Authorization {
        grant,
        plan_id: plan_id.to_owned(),
        at: facts.at,
        slices,
    };
    let tally = quorum::tally(facts.approvals, plan_id, facts.requirement, facts.at);
    if tally.met() {
        // Every counted approver: the plan's own quorum counts them all.
        let approvers = tally.approvers;
        return Ok(granted(Grant::People { approvers }, Vec::new()));
    }
    // Under applyApprovedSlices, the slices whose owners approved are authorized by
    // themselves; the engine writes only what needs no other slice.
    if let Some(slicing) = &facts.requirement.slicing
        && slicing.apply_approved
        && slicing.per_action.is_some()
    {
        let approved = tally.approved_slices();
        if !approved.is_empty() {
            let approvers = tally.approvers.clone();
            return Ok(granted(Grant::People { approvers }, approved));
        }
    }
    let refused = |withheld| Refusal::Unapproved {
        plan_id: plan_id.to_owned(),
        tally: tally.describe(),
        withheld,
    };
    let Some(policy) = &facts.policy else {
        return Err(refused(None));
    };
    let candidate = match candidate(content, facts.trigger, policy) {
        Ok(Some(candidate)) => candidate,
        Ok(None) => return Err(refused(None)),
        Err((policy, why)) => return Err(refused(Some((policy, why)))),
    };
    match withheld(&candidate, plan_id, facts, policy) {
        Ok(basis) => Ok(granted(
            Grant::Policy {
                policy: candidate,
                basis,
            },
            Vec::new(),
        )),
        Err(why) => Err(refused(Some((candidate, why)))),
    }
}

/// The policy that would approve `content`: judged from the plan when it is at hand,
/// else the one recorded, if it is still set.
fn candidate(
    content: Content<'_>,
    trigger: Trigger,
    facts: &PolicyFacts<'_>,
) -> Result<Option<PolicyRef>, (PolicyRef, Withheld)> {
    let rule = facts
        .rules
        .and_then(|r| r.auto_approved_by)
        .map(|r| PolicyRef::Rule(r.to_owned()));
    match content {
        Content::Plan(plan) => Ok(rule.or_else(|| facts.repository.approving(plan, trigger))),
        Content::Recorded { .. } => match &facts.recorded {
            None => Ok(None),
            Some(recorded @ PolicyRef::Rule(_)) if rule.as_ref() != Some(recorded) => {
                Err((recorded.clone(), Withheld::StaleVerdict))
            }
            Some(recorded) if !facts.repository.still_sets(recorded, trigger) => {
                Err((recorded.clone(), Withheld::NoLongerSet))
            }
            Some(PolicyRef::Repository(ApprovalPolicy::AutoApplyNonDestructive)) => Err((
                PolicyRef::Repository(ApprovalPolicy::AutoApplyNonDestructive),
                Withheld::NotRead,
            )),
            Some(recorded) => Ok(Some(recorded.clone())),
        },
    }
}

/// Whether `policy` may decide on this content; the basis it decides on if so.
fn withheld(
    policy: &PolicyRef,
    plan_id: &str,
    facts: &Facts<'_>,
    p: &PolicyFacts<'_>,
) -> Result<String, Withheld> {
    let req = facts.requirement;
    let rules_need_person = p.rules.is_some_and(|r| r.needs_person);
    // A sliced plan with a slice an owner holds (or one that cannot be read against
    // the policy now) is its owners' to approve.
    let owned_slices = req
        .slicing
        .as_ref()
        .is_some_and(|s| s.stale.is_some() || s.slices.iter().any(|q| q.owner.is_some()));
    if req.required > 1 || !req.from_groups.is_empty() || rules_need_person || owned_slices {
        return Err(Withheld::NeedsPeople);
    }
    if let PolicyRef::Rule(_) = policy
        && p.rules.is_none_or(|r| r.plan_id != plan_id)
    {
        return Err(Withheld::StaleVerdict);
    }
    if !p.excluded.is_empty() {
        return Err(Withheld::Edited {
            excluded: p.excluded.len(),
        });
    }
    match (policy, p.provenance) {
        (
            _,
            Provenance::Restored {
                run,
                authorized: true,
                whole: true,
            },
        ) => Ok(format!("restores what {run} applied")),
        (_, Provenance::Restored { run, .. }) => Err(Withheld::Unrestorable {
            run: run.to_owned(),
        }),
        (PolicyRef::DriftCorrect, _) => Err(Withheld::NotRestored),
        (_, Provenance::Git(SourceApproval::By(user))) => Ok(format!("source approved by {user}")),
        (_, Provenance::Git(SourceApproval::Unverified)) => {
            Ok("source not verified (no admission policies: --allow-unverified-approvals)".into())
        }
        (_, Provenance::Git(SourceApproval::Withheld)) => Err(Withheld::SourceNotApproved),
        (_, Provenance::Nothing) => Ok("removes every object the repository manages".into()),
        (_, Provenance::Unknown) => Err(Withheld::UnknownSource),
    }
}

#[cfg(test)]
mod tests;
