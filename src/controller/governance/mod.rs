//! Governance: the cluster-scoped GovernancePolicies that govern a repository, combined
//! into one [`Governance`] (the strictest of them), and the hooks the SyncRun controller
//! calls: judge a recorded plan, expire it, count an approval toward a quorum.
//!
//! The pure parts (CEL rules, quorum counting, change windows) live in [`rules`],
//! [`quorum`] and [`windows`]; this module loads and combines policies and judges a plan
//! within its budget, `approvals` counts, expires and clears approvals, `gate` decides
//! whether an approved plan may apply now. Governance decides; the SyncRun controller's
//! steps (`syncrun`) act on its decisions and move the run.

mod approvals;
pub mod evaluation;
mod gate;
pub mod policy;
pub mod rules;
pub mod separation;
pub mod windows;

/// Counting approvals is part of the authorization check; governance says what a
/// quorum needs.
pub use super::authorization::quorum;

pub use approvals::{QuorumOutcome, clear_approval, new_plan};
pub use gate::Gate;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::api::GovernancePolicy;
use crate::api::governance::GitIdentity;
use crate::api::slices::SliceRule;
use crate::api::syncrun::SyncRunStatus;
use crate::fleet::rollout::pause::Choice;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{rule}: {message}")]
    InvalidRule { rule: String, message: String },
    #[error("{field}: {message}")]
    InvalidSpec { field: String, message: String },
    #[error(
        "governance policy {policy} is invalid ({message}); no plan of the repositories it governs is approved until it is fixed"
    )]
    PolicyInvalid { policy: String, message: String },
    #[error("rule {rule} could not be evaluated: {message}; nothing is approved or applied")]
    Evaluation { rule: String, message: String },
    #[error(
        "the governance rules took longer than {0:?} to evaluate; nothing is approved or applied"
    )]
    Timeout(Duration),
    #[error(
        "the governance rules took more than {0} steps to evaluate over this plan; nothing is approved or applied"
    )]
    CostExceeded(u64),
    #[error("denied by governance rule {rule}: {message}")]
    Denied { rule: String, message: String },
    #[error("governance policies: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// A stable short label, used as condition and Event reason.
    pub fn label(&self) -> &'static str {
        match self {
            Error::InvalidRule { .. } => "InvalidRule",
            Error::InvalidSpec { .. } => "InvalidSpec",
            Error::PolicyInvalid { .. } => "PolicyInvalid",
            Error::Evaluation { .. } => "PolicyError",
            Error::Timeout(_) | Error::CostExceeded(_) => "PolicyTimeout",
            Error::Denied { .. } => "PolicyDenied",
            Error::Kube(_) => "KubeError",
        }
    }
}

/// A governance error as the controller reports it: the API's as it is, any other as the
/// invalid `governance` of the run's repository.
impl From<Error> for crate::controller::error::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Kube(e) => Self::Kube(e),
            other => Self::InvalidSpec {
                field: "governance".into(),
                message: other.to_string(),
            },
        }
    }
}

/// Every policy that governs one repository, combined to the strictest.
#[derive(Default)]
pub struct Governance {
    pub requirement: quorum::Requirement,
    pub forbid_requester: bool,
    pub plan_expiry: Option<Duration>,
    pub rules: Arc<Vec<rules::Compiled>>,
    pub windows: Vec<windows::Compiled>,
    /// Distinct approvals before an override of the windows is honoured.
    pub override_approvals: u32,
    /// The first invalid policy: nothing is approved while one is.
    pub invalid: Option<Error>,
    /// The first policy that requires verified sources, if any does.
    pub verification_required_by: Option<String>,
    /// With separation of duties (any policy asks for it): the git identities every
    /// such policy maps to users.
    pub separation: Option<Vec<GitIdentity>>,
    /// The policy that splits plans by owner, and how (at most one may).
    pub slices: Option<(String, SliceRule)>,
}

/// Whether `pattern` (`*` any run, `?` one character) matches all of `text`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether `policy` governs the repository `namespace/name`.
pub fn selects(policy: &GovernancePolicy, namespace: &str, name: &str) -> bool {
    policy
        .spec
        .repositories
        .iter()
        .any(|s| glob(&s.namespace, namespace) && glob(&s.name, name))
}

/// The governance of `namespace/repository`: every policy that selects it.
pub async fn load(client: &Client, namespace: &str, repository: &str) -> Result<Governance, Error> {
    let api: Api<GovernancePolicy> = Api::all(client.clone());
    let policies = match api.list(&Default::default()).await {
        Ok(list) => list.items,
        // Without the kind there can be no policy (deleting the CRD deletes them all).
        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut gov = Governance::default();
    gov.requirement.namespace = namespace.to_owned();
    let mut compiled = Vec::new();
    let mut service_accounts = Vec::new();
    for policy in policies
        .iter()
        .filter(|p| selects(p, namespace, repository))
    {
        let parts = policy::compiled(policy);
        if let Some(first) = parts.errors.first()
            && gov.invalid.is_none()
        {
            gov.invalid = Some(Error::PolicyInvalid {
                policy: policy.name_any(),
                message: first.to_string(),
            });
        }
        if let Some(a) = &policy.spec.approvals {
            let r = &mut gov.requirement;
            r.required = r.required.max(a.required);
            for g in &a.from_groups {
                if !r.from_groups.contains(g) {
                    r.from_groups.push(g.clone());
                }
            }
            gov.forbid_requester |= a.forbid_requester;
            if let Some(separation) = &a.separation_of_duties {
                gov.separation
                    .get_or_insert_with(Vec::new)
                    .extend(separation.identities.iter().cloned());
            }
            if let Some(listed) = &a.service_accounts {
                service_accounts.push(listed.as_slice());
            }
        }
        gov.plan_expiry = shortest(gov.plan_expiry, parts.plan_expiry);
        gov.requirement.approval_expiry =
            shortest(gov.requirement.approval_expiry, parts.approval_expiry);
        compiled.extend(parts.rules.iter().cloned());
        gov.windows.extend(parts.windows.iter().cloned());
        if policy
            .spec
            .sources
            .as_ref()
            .is_some_and(|s| s.require_verified)
        {
            gov.verification_required_by
                .get_or_insert_with(|| policy.name_any());
        }
        if let Some(n) = policy.spec.override_approvals {
            gov.override_approvals = gov.override_approvals.max(n);
        }
        if let Some(rule) = &policy.spec.slices {
            match &gov.slices {
                // Two owners' lists cannot both be the one: nothing is approved until
                // the platform owners decide which.
                Some((first, _)) if gov.invalid.is_none() => {
                    gov.invalid = Some(Error::PolicyInvalid {
                        policy: policy.name_any(),
                        message: format!(
                            "spec.slices: governance policy {first} already splits the plans of {namespace}/{repository}; at most one policy may"
                        ),
                    });
                }
                Some(_) => {}
                None => gov.slices = Some((policy.name_any(), rule.clone())),
            }
        }
    }
    gov.requirement.service_accounts = super::authorization::identity::combine(&service_accounts);
    gov.requirement.required = gov.requirement.required.max(1);
    if gov.override_approvals == 0 {
        gov.override_approvals = gov.requirement.required.max(2);
    }
    gov.rules = Arc::new(compiled);
    Ok(gov)
}

fn shortest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Governance {
    /// Evaluates the rules over a plan's facts, off the async workers and within a budget.
    pub async fn judge(&self, facts: rules::Facts) -> Result<rules::Verdict, Error> {
        if let Some(invalid) = self.invalid() {
            return Err(invalid);
        }
        if self.rules.is_empty() {
            return Ok(rules::Verdict::default());
        }
        let namespace = facts.repository.namespace.clone();
        let verdict = evaluation::evaluate(&namespace, self.rules.clone(), facts).await?;
        if let Some((rule, message)) = &verdict.denied {
            return Err(Error::Denied {
                rule: rule.clone(),
                message: message.clone(),
            });
        }
        Ok(verdict)
    }

    /// The first invalid policy, while one is: nothing it governs is approved.
    pub fn invalid(&self) -> Option<Error> {
        match &self.invalid {
            Some(Error::PolicyInvalid { policy, message }) => Some(Error::PolicyInvalid {
                policy: policy.clone(),
                message: message.clone(),
            }),
            Some(other) => Some(Error::PolicyInvalid {
                policy: String::new(),
                message: other.to_string(),
            }),
            None => None,
        }
    }

    /// What the quorum of the plan recorded in `status` needs now: the policies'
    /// requirement, raised to what the rules asked of that plan when it was recorded.
    pub fn requirement_for(&self, status: &SyncRunStatus) -> quorum::Requirement {
        quorum::Requirement {
            required: status
                .approvals_required
                .unwrap_or(1)
                .max(self.requirement.required),
            authors: self.authors_of(status),
            slicing: crate::controller::authorization::slices::of_run(
                self.slices.as_ref().map(|(_, rule)| rule),
                status.slices.as_ref(),
                status.recorded_states().len(),
            ),
            ..self.requirement.clone()
        }
    }

    /// What a choice at a paused rollout needs. Rollback starts a new plan, gated by
    /// slice itself: the run's general quorum, so that it never waits for the owners of
    /// slices that never approved the plan. Continue and leave-out accept the paused
    /// objects as they are and go on with the approved slices' next waves: the owners
    /// of the slices written so far (who approved them), with the general quorum.
    pub fn choice_requirement(
        &self,
        status: &SyncRunStatus,
        choice: Choice,
    ) -> quorum::Requirement {
        let mut requirement = self.requirement_for(status);
        requirement.slicing = match (choice, requirement.slicing) {
            (Choice::Continue | Choice::LeaveOut, Some(mut slicing)) if slicing.stale.is_none() => {
                let written = slicing.written(&status.recorded_states());
                slicing.slices.retain(|s| written.contains(&s.name));
                Some(slicing)
            }
            _ => None,
        };
        requirement
    }

    /// Under separation of duties, the users who wrote, committed or signed the commits
    /// the run's plan comes from, each with the git identity that names them.
    fn authors_of(&self, status: &SyncRunStatus) -> separation::Authors {
        let Some(mapping) = &self.separation else {
            return separation::Authors::default();
        };
        separation::of_run(mapping, status.source.as_ref())
    }

    /// Distinct approvers a plan with this verdict needs.
    pub fn required(&self, verdict: &rules::Verdict) -> u32 {
        self.requirement.required.max(verdict.approvals).max(1)
    }

    /// Whether governance demands a person for this plan, whatever the repository's own
    /// approval policy says: a quorum, a group, or a rule requiring approvals.
    pub fn needs_person(&self, verdict: &rules::Verdict) -> bool {
        // Separation of duties is about people: no policy approves in their stead.
        self.separation.is_some()
            || self.required(verdict) > 1
            || !self.requirement.from_groups.is_empty()
            || verdict.approvals > 0
            || verdict.truncated
    }

    /// Why the plan recorded in `status` cannot be counted by the policy's slices now,
    /// if it cannot (never while a policy is invalid: nothing is approved then anyway,
    /// and planning afresh would not fit it either).
    pub fn slices_outdated(&self, status: &SyncRunStatus) -> Option<String> {
        if self.invalid.is_some() || status.plan_id.is_none() {
            return None;
        }
        let slicing = self.requirement_for(status).slicing?;
        slicing
            .stale
            .map(|why| format!("plan {}: {why}", status.plan_id.clone().unwrap_or_default()))
    }

    /// Why the plan recorded in `status` has expired, if it has.
    pub fn plan_expired(&self, status: &SyncRunStatus, now: Timestamp) -> Option<String> {
        let expiry = self.plan_expiry?;
        let planned = status.planned_at.as_ref()?.0;
        let age = now.duration_since(planned);
        (age.is_positive() && age.unsigned_abs() > expiry).then(|| {
            format!(
                "plan {} was not approved within the plan expiry of {}; the revision is planned afresh",
                status.plan_id.clone().unwrap_or_default(),
                humantime::format_duration(expiry)
            )
        })
    }

    /// When something about a waiting run changes by time alone: its plan or one of its
    /// approvals expires.
    pub fn next_deadline(&self, status: &SyncRunStatus, now: Timestamp) -> Option<Duration> {
        let plan = status.plan_id.clone().unwrap_or_default();
        let until = |from: Timestamp, expiry: Duration| {
            let age = now.duration_since(from);
            let age = if age.is_negative() {
                Duration::ZERO
            } else {
                age.unsigned_abs()
            };
            expiry.saturating_sub(age) + Duration::from_millis(200)
        };
        let plan_deadline = self
            .plan_expiry
            .zip(status.planned_at.as_ref())
            .map(|(e, at)| until(at.0, e));
        let approval_deadline = self.requirement.approval_expiry.and_then(|e| {
            status
                .approvals
                .iter()
                .filter(|r| r.plan_id == plan)
                .map(|r| until(r.at.0, e))
                .min()
        });
        shortest(plan_deadline, approval_deadline)
    }
}

/// Runs and statuses the governance tests share.
#[cfg(test)]
pub(crate) mod fixtures {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use crate::api::syncrun::{ApprovalRecord, SyncRun, SyncRunStatus};

    pub fn run(annotations: &[(&str, &str)]) -> SyncRun {
        let mut run = crate::controller::fixtures::run_named("r");
        run.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        run
    }

    pub fn approved_by(users: &[&str]) -> SyncRunStatus {
        SyncRunStatus {
            plan_id: Some("p".into()),
            approvals: users
                .iter()
                .map(|u| ApprovalRecord {
                    user: (*u).into(),
                    groups: vec![],
                    plan_id: "p".into(),
                    at: Time(Timestamp::from_second(1_800_000_000).unwrap()),
                })
                .collect(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob("*", "anything"));
        assert!(glob("prod-*", "prod-eu"));
        assert!(!glob("prod-*", "staging-prod-eu"));
        assert!(glob("te?m-*-a", "team-x-a"));
        assert!(!glob("team", "team-a"));
        assert!(glob("", ""));
        assert!(!glob("", "a"));
    }

    #[test]
    fn continue_and_leave_out_need_the_owners_of_what_was_written_and_rollback_does_not() {
        let rule: SliceRule = serde_json::from_value(serde_json::json!({
            "by": "region", "owners": [
                {"values": ["eu"], "users": ["erin"]}, {"values": ["us"], "users": ["uma"]},
            ],
        }))
        .unwrap();
        let gov = Governance {
            slices: Some(("regions".into(), rule)),
            ..Default::default()
        };
        let needs = |slice: &str, actions: &str| crate::api::slices::SliceNeeds {
            slices: vec![slice.into()],
            wave: 0,
            actions: actions.into(),
        };
        let mut status = fixtures::approved_by(&[]);
        status.action_states = Some("AP".into());
        status.slices = Some(crate::api::slices::PlanSlices {
            by: "region".into(),
            rule_approvals: None,
            slices: ["eu", "us"]
                .map(|n| crate::api::slices::PlanSlice {
                    name: n.into(),
                    actions: 1,
                })
                .to_vec(),
            needs: vec![needs("eu", "0"), needs("us", "1")],
        });
        for choice in [Choice::Continue, Choice::LeaveOut] {
            let slicing = gov.choice_requirement(&status, choice).slicing.unwrap();
            let names: Vec<&str> = slicing.slices.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names, ["eu"], "{choice}: the owners of the written slice");
        }
        assert_eq!(
            gov.choice_requirement(&status, Choice::Rollback).slicing,
            None
        );
    }

    #[test]
    fn a_plan_the_policy_cannot_count_by_slice_is_planned_afresh() {
        let rule: SliceRule = serde_json::from_value(serde_json::json!({
            "by": "region", "owners": [{"values": ["eu"], "users": ["erin"]}],
        }))
        .unwrap();
        let gov = Governance {
            slices: Some(("regions".into(), rule)),
            ..Default::default()
        };
        let mut status = fixtures::approved_by(&["erin"]);
        let outdated = gov.slices_outdated(&status).unwrap();
        assert!(outdated.starts_with("plan p: the governing policy splits plans by region and this plan was made before it did"), "{outdated}");
        status.slices = Some(crate::api::slices::PlanSlices {
            by: "instanceType".into(),
            ..Default::default()
        });
        assert!(
            gov.slices_outdated(&status)
                .unwrap()
                .contains("was split by instanceType")
        );
        status.slices.as_mut().unwrap().by = "region".into();
        assert_eq!(gov.slices_outdated(&status), None);
        // No policy splits plans any more: the split plan is made afresh, unsplit.
        let unsplit = Governance::default().slices_outdated(&status).unwrap();
        assert!(unsplit.contains("no longer split plans"), "{unsplit}");
        status.slices = None;
        assert_eq!(Governance::default().slices_outdated(&status), None);
    }
}
