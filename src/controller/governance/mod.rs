//! Governance: the cluster-scoped GovernancePolicies that govern a repository, combined
//! into one [`Governance`] (the strictest of them), and the hooks the SyncRun controller
//! calls: judge a recorded plan, expire it, count an approval toward a quorum.
//!
//! The pure parts (CEL rules, quorum counting) live in [`rules`] and [`quorum`]; this
//! module loads policies and talks to the API server.

pub mod phases;
pub mod policy;
pub mod quorum;
pub mod rules;
pub mod windows;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::GovernancePolicy;
use crate::api::annotations;
use crate::api::syncrun::{ApprovalRecord, SyncRun, SyncRunStatus};

/// Longest a rule evaluation may take (waiting for its turn included) before the run
/// fails closed.
const EVALUATION_BUDGET: Duration = Duration::from_secs(2);
/// Rule evaluations run one at a time.
static EVALUATIONS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

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
            Error::Timeout(_) => "PolicyTimeout",
            Error::Denied { .. } => "PolicyDenied",
            Error::Kube(_) => "KubeError",
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
    let mut compiled = Vec::new();
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
        }
        gov.plan_expiry = shortest(gov.plan_expiry, parts.plan_expiry);
        gov.requirement.approval_expiry =
            shortest(gov.requirement.approval_expiry, parts.approval_expiry);
        compiled.extend(parts.rules.iter().cloned());
        gov.windows.extend(parts.windows.iter().cloned());
        if let Some(n) = policy.spec.override_approvals {
            gov.override_approvals = gov.override_approvals.max(n);
        }
    }
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
        let rules = self.rules.clone();
        // One evaluation at a time, the permit held by the thread that evaluates: an
        // evaluation abandoned at its budget keeps it until it ends, and the ones that
        // wait past their own budget fail closed rather than pile up threads.
        let started = tokio::time::Instant::now();
        let permit = tokio::time::timeout(EVALUATION_BUDGET, EVALUATIONS.acquire())
            .await
            .map_err(|_| Error::Timeout(EVALUATION_BUDGET))?
            .map_err(|e| Error::Evaluation {
                rule: "(all)".into(),
                message: e.to_string(),
            })?;
        let work = tokio::task::spawn_blocking(move || {
            let verdict = rules::evaluate(&rules, &facts);
            drop(permit);
            verdict
        });
        let left = EVALUATION_BUDGET.saturating_sub(started.elapsed());
        let verdict = match tokio::time::timeout(left, work).await {
            Err(_) => return Err(Error::Timeout(EVALUATION_BUDGET)),
            Ok(Err(e)) => {
                return Err(Error::Evaluation {
                    rule: "(all)".into(),
                    message: format!("the evaluation panicked or was cancelled: {e}"),
                });
            }
            Ok(Ok(v)) => v?,
        };
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

    /// Distinct approvers a plan with this verdict needs.
    pub fn required(&self, verdict: &rules::Verdict) -> u32 {
        self.requirement.required.max(verdict.approvals).max(1)
    }

    /// Whether governance demands a person for this plan, whatever the repository's own
    /// approval policy says: a quorum, a group, or a rule requiring approvals.
    pub fn needs_person(&self, verdict: &rules::Verdict) -> bool {
        self.required(verdict) > 1
            || !self.requirement.from_groups.is_empty()
            || verdict.approvals > 0
            || verdict.truncated
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

    /// Removes approvals of the current plan that are too old to count; says whose.
    pub fn drop_stale(&self, status: &mut SyncRunStatus, now: Timestamp) -> Vec<String> {
        let plan = status.plan_id.clone().unwrap_or_default();
        let expiry = self.requirement.approval_expiry;
        let mut dropped = Vec::new();
        status.approvals.retain(|r| {
            let stale = r.plan_id == plan && quorum::is_stale(r, expiry, now);
            if stale {
                dropped.push(r.user.clone());
            }
            !stale
        });
        dropped
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

    /// Counts `approver`'s approval of the current plan.
    pub fn count(
        &self,
        status: &mut SyncRunStatus,
        approver: &str,
        groups: Vec<String>,
        requester: Option<&str>,
        now: Timestamp,
    ) -> Counted {
        if self.forbid_requester && requester == Some(approver) {
            return Counted::Refused(format!(
                "{approver} requested this sync and the governance policy forbids the requester from approving it; another approver must approve"
            ));
        }
        let plan = status.plan_id.clone().unwrap_or_default();
        let required = status
            .approvals_required
            .unwrap_or(1)
            .max(self.requirement.required);
        let added = quorum::add(
            &mut status.approvals,
            ApprovalRecord {
                user: approver.to_owned(),
                groups,
                plan_id: plan.clone(),
                at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
            },
        );
        let requirement = quorum::Requirement {
            required,
            ..self.requirement.clone()
        };
        let tally = quorum::tally(&status.approvals, &plan, &requirement, now);
        if tally.met() {
            Counted::Met(tally)
        } else {
            Counted::Waiting { tally, added }
        }
    }
}

impl Governance {
    /// Whether the people who approved the plan recorded in `status` still make its
    /// quorum at `now` (approvals expire, and a policy may have raised the quorum or
    /// added a group since). A plan approved by a policy needs no people. Checked again
    /// before a Scheduled run applies: a change window does not freeze approvals.
    pub fn still_approved(&self, status: &SyncRunStatus, now: Timestamp) -> Result<(), String> {
        if !status.requires_approval {
            return Ok(());
        }
        let plan = status.plan_id.clone().unwrap_or_default();
        let requirement = quorum::Requirement {
            required: status
                .approvals_required
                .unwrap_or(1)
                .max(self.requirement.required),
            ..self.requirement.clone()
        };
        let tally = quorum::tally(&status.approvals, &plan, &requirement, now);
        if tally.met() {
            return Ok(());
        }
        Err(format!(
            "plan {plan} no longer has the approvals it needs ({}): approvals expired or the governance policy changed while it waited; approve again",
            tally.describe()
        ))
    }
}

/// Records `plan_id` as the run's plan. A different plan starts from zero approvals:
/// plan ids are deterministic, so excluding and including an action again returns to an
/// earlier id, whose old approvals must not revive.
pub fn new_plan(status: &mut SyncRunStatus, plan_id: &str) {
    if status.plan_id.as_deref() != Some(plan_id) {
        status.approvals.clear();
    }
    status.plan_id = Some(plan_id.to_owned());
}

/// Whether an approved plan may apply now.
pub enum Gate {
    /// It may; with the override that let it, if one did.
    Open { overridden: Option<String> },
    /// Not yet: why, and from when it may (None: unknown, looked at again later).
    Wait {
        why: String,
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
}

impl Governance {
    /// The change windows and the run's apply-after and override-window annotations,
    /// at `now`.
    pub fn gate(
        &self,
        run: &SyncRun,
        status: &SyncRunStatus,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Gate {
        let a = run.annotations();
        if let Some(value) = a.get(annotations::APPLY_AFTER) {
            match windows::parse_time(value) {
                Err(e) => {
                    return Gate::Wait {
                        why: format!("invalid {} annotation: {e}", annotations::APPLY_AFTER),
                        until: None,
                    };
                }
                Ok(t) if t > now => {
                    return Gate::Wait {
                        why: format!("an approver asked to apply after {}", windows::rfc3339(t)),
                        until: Some(t),
                    };
                }
                Ok(_) => {}
            }
        }
        let Some((why, until)) = windows::blocked(&self.windows, now) else {
            return Gate::Open { overridden: None };
        };
        let Some(reason) = a.get(annotations::OVERRIDE_WINDOW) else {
            return Gate::Wait { why, until };
        };
        let plan = status.plan_id.clone().unwrap_or_default();
        let requirement = quorum::Requirement {
            required: self.override_approvals,
            from_groups: Vec::new(),
            approval_expiry: self.requirement.approval_expiry,
        };
        let tally = quorum::tally(&status.approvals, &plan, &requirement, now_jiff(now));
        let reason = crate::api::truncate(reason.trim(), 512);
        if reason.is_empty() {
            return Gate::Wait {
                why: format!("{why}; the override is refused: it needs a reason"),
                until,
            };
        }
        if !tally.met() {
            return Gate::Wait {
                why: format!(
                    "{why}; the override is refused: it needs {} distinct approvals of plan {plan}, it has {}",
                    self.override_approvals,
                    tally.describe()
                ),
                until,
            };
        }
        Gate::Open {
            overridden: Some(format!(
                "{why}, overridden with the approval of {}: {reason}",
                tally.approvers.join(", ")
            )),
        }
    }
}

fn now_jiff(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::from_second(t.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// An approval, counted.
pub enum Counted {
    /// The quorum is reached: these approved.
    Met(quorum::Tally),
    /// More approvals are needed; `added` is false when this user had approved already.
    Waiting { tally: quorum::Tally, added: bool },
    /// This approval may not count.
    Refused(String),
}

/// Removes the approve annotation and its stamps once the approval is recorded in
/// status, so that the next approver sets them afresh (and the API server stamps that
/// approver). Only at the resourceVersion the approval was read at, or the one the
/// status write that recorded it returned (`written`, when it carries the same
/// approval): an approval made since is never removed unrecorded. Returns false on a
/// conflict (read again).
pub async fn clear_approval(
    client: &Client,
    run: &SyncRun,
    written: Option<&SyncRun>,
) -> Result<bool, kube::Error> {
    let Some(version) = clear_at(run, written) else {
        return Ok(false);
    };
    let api: Api<SyncRun> = Api::namespaced(client.clone(), &run.namespace().unwrap_or_default());
    let patch = json!({"metadata": {
        "resourceVersion": version,
        "annotations": {
            annotations::APPROVE: null,
            annotations::APPROVED_BY: null,
            annotations::APPROVED_BY_GROUPS: null,
        }
    }});
    match api
        .patch(
            &run.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The resourceVersion to clear an approval at: the status write's when it still
/// carries the approval as read (a status write bumps the version, so the version
/// read would always conflict), none when the approval changed in between.
fn clear_at(read: &SyncRun, written: Option<&SyncRun>) -> Option<String> {
    let Some(written) = written else {
        return read.resource_version();
    };
    let keys = [
        annotations::APPROVE,
        annotations::APPROVED_BY,
        annotations::APPROVED_BY_GROUPS,
    ];
    keys.iter()
        .all(|k| read.annotations().get(*k) == written.annotations().get(*k))
        .then(|| written.resource_version())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::governance::{ChangeWindow, WindowKind};
    use crate::api::syncrun::{SyncRunSpec, Trigger};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn run(annotations: &[(&str, &str)]) -> SyncRun {
        let mut run = SyncRun::new(
            "r",
            SyncRunSpec {
                repository: "fleet".into(),
                revision: "abc".into(),
                trigger: Trigger::Schedule,
            },
        );
        run.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        run
    }

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        windows::parse_time(s).unwrap()
    }

    fn approved_by(users: &[&str]) -> SyncRunStatus {
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

    #[test]
    fn apply_after_waits_until_its_time_and_a_malformed_one_is_said() {
        let gov = Governance::default();
        let now = at("2027-01-01T10:00:00Z");
        let later = run(&[(annotations::APPLY_AFTER, "2027-01-01T12:00:00Z")]);
        match gov.gate(&later, &approved_by(&["bob"]), now) {
            Gate::Wait { until, .. } => assert_eq!(until, Some(at("2027-01-01T12:00:00Z"))),
            Gate::Open { .. } => panic!("applied before apply-after"),
        }
        let past = run(&[(annotations::APPLY_AFTER, "2027-01-01T09:00:00Z")]);
        assert!(matches!(
            gov.gate(&past, &approved_by(&["bob"]), now),
            Gate::Open { overridden: None }
        ));
        let bad = run(&[(annotations::APPLY_AFTER, &"x".repeat(10_000))]);
        match gov.gate(&bad, &approved_by(&["bob"]), now) {
            Gate::Wait { why, until: None } => {
                assert!(why.starts_with("invalid gitops.fleetgate.dev/apply-after annotation"));
                assert!(why.len() < 400, "the value is not echoed whole");
            }
            _ => panic!("a malformed apply-after was not reported"),
        }
    }

    #[test]
    fn an_override_needs_its_quorum_and_a_reason() {
        let window = ChangeWindow {
            kind: WindowKind::Deny,
            schedule: "0 0 * * *".into(),
            duration: "24h".into(),
            time_zone: None,
        };
        let gov = Governance {
            windows: vec![windows::compile("p", 0, &window).unwrap()],
            override_approvals: 2,
            ..Default::default()
        };
        let now = at("2027-01-01T10:00:00Z");
        let overriding = run(&[(annotations::OVERRIDE_WINDOW, "INC-1")]);
        match gov.gate(&overriding, &approved_by(&["bob"]), now) {
            Gate::Wait { why, .. } => assert!(why.contains("needs 2 distinct approvals"), "{why}"),
            Gate::Open { .. } => panic!("overridden with one approval"),
        }
        match gov.gate(&overriding, &approved_by(&["bob", "bob", "carol"]), now) {
            Gate::Open {
                overridden: Some(note),
            } => assert!(note.ends_with("bob, carol: INC-1"), "{note}"),
            _ => panic!("the override was not honoured"),
        }
        let no_reason = run(&[(annotations::OVERRIDE_WINDOW, "  ")]);
        assert!(matches!(
            gov.gate(&no_reason, &approved_by(&["bob", "carol"]), now),
            Gate::Wait { .. }
        ));
    }

    #[test]
    fn a_scheduled_plan_needs_its_approvals_to_still_count() {
        let approved_at = Timestamp::from_second(1_800_000_000).unwrap();
        let mut status = approved_by(&["bob"]);
        status.requires_approval = true;
        let gov = Governance {
            requirement: quorum::Requirement {
                required: 1,
                from_groups: vec![],
                approval_expiry: Some(Duration::from_secs(7200)),
            },
            ..Default::default()
        };
        let soon = approved_at + Duration::from_secs(3600);
        assert_eq!(gov.still_approved(&status, soon), Ok(()));
        let later = approved_at + Duration::from_secs(3 * 86_400);
        let stale = gov.still_approved(&status, later).unwrap_err();
        assert!(stale.contains("0/1 approvals"), "{stale}");
        // A quorum raised since the approval is needed too.
        let raised = Governance {
            requirement: quorum::Requirement {
                required: 2,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(raised.still_approved(&status, soon).is_err());
        // A plan approved by a policy needs no people.
        status.requires_approval = false;
        assert_eq!(gov.still_approved(&status, later), Ok(()));
    }

    #[test]
    fn an_approval_is_cleared_at_the_version_its_status_write_returned() {
        let mut read = run(&[
            (annotations::APPROVE, "p"),
            (annotations::APPROVED_BY, "bob"),
        ]);
        read.metadata.resource_version = Some("10".into());
        assert_eq!(clear_at(&read, None).as_deref(), Some("10"));
        let mut written = read.clone();
        written.metadata.resource_version = Some("11".into());
        assert_eq!(clear_at(&read, Some(&written)).as_deref(), Some("11"));
        // Another approval arrived between the read and the status write: not cleared.
        written
            .annotations_mut()
            .insert(annotations::APPROVED_BY.into(), "carol".into());
        assert_eq!(clear_at(&read, Some(&written)), None);
    }

    #[tokio::test]
    async fn an_evaluation_waits_for_its_turn_and_fails_closed_past_its_budget() {
        let rule = crate::api::governance::PlanRule {
            name: "r".into(),
            expression: "true".into(),
            action: crate::api::governance::RuleAction::Warn,
            approvals: None,
            message: None,
        };
        let gov = Governance {
            rules: Arc::new(vec![rules::compile("p", 0, &rule).unwrap()]),
            ..Default::default()
        };
        let plan = crate::fleet::plan(
            &[],
            &[],
            &crate::fleet::PlanOptions {
                repository: "fleet",
                revision: "abc",
                prune: false,
                exclude: &[],
            },
        )
        .unwrap();
        let facts = || rules::Facts::new(&plan, &[], "ns", "fleet", "Schedule");
        // An abandoned evaluation still holds the turn: the next one fails closed.
        let busy = EVALUATIONS.acquire().await.unwrap();
        assert!(matches!(gov.judge(facts()).await, Err(Error::Timeout(_))));
        drop(busy);
        assert_eq!(gov.judge(facts()).await.unwrap().warnings.len(), 1);
    }

    #[test]
    fn a_new_plan_starts_from_zero_approvals() {
        let mut status = approved_by(&["bob"]);
        new_plan(&mut status, "p");
        assert_eq!(
            status.approvals.len(),
            1,
            "the same plan keeps its approvals"
        );
        new_plan(&mut status, "q");
        new_plan(&mut status, "p");
        assert!(
            status.approvals.is_empty(),
            "an old plan id revived its approvals"
        );
    }

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
}
