//! What a new plan records in its run's status and what it says to people: pure, so the
//! fields and the words are tested without a cluster.

use std::fmt::Display;

use kube::ResourceExt;

use crate::api::rollout::{RolloutSpec, RunRollout};
use crate::api::syncrun::{ActionState, DiffEntry, RunSource, SyncRunStatus};
use crate::api::{SyncRun, annotations, truncate};
use crate::controller::governance;
use crate::controller::lifecycle::{action_entries, progress};
use crate::fleet::Plan;
use crate::fleet::render::{change_lines, summary_line};

/// At most this many diff entries, and fields per entry, are kept in status.
const MAX_DIFF_ENTRIES: usize = 100;
const MAX_FIELDS_PER_ENTRY: usize = 20;
/// At most this many lifecycle pins are kept in status (the schema's bound).
pub(super) const MAX_MODULE_PINS: usize = 1000;
/// At most this many warnings are kept in status.
const MAX_WARNINGS: usize = 50;

/// Records `plan` in `status`: its summary, bounded diff, conflicts, warnings and
/// exclusions, every action pending, where its desired state came from; and forgets
/// what authorized or refused the plan before it (a new plan is authorized afresh).
pub(super) fn record_plan(
    status: &mut SyncRunStatus,
    plan: &Plan,
    warnings: Vec<String>,
    exclusions: Option<String>,
    source: RunSource,
    rollout: &RolloutSpec,
) {
    let (diff, diff_truncated) = diff_entries(plan);
    let states = vec![ActionState::Pending; plan.actions.len()];
    governance::new_plan(status, &plan.plan_id);
    status.summary = Some(plan.summary);
    status.changes = Some(plan.summary.total());
    status.diff = diff;
    status.diff_truncated = diff_truncated;
    status.conflicts = plan.conflicts.iter().map(|c| c.message.clone()).collect();
    status.warnings = warnings.into_iter().take(MAX_WARNINGS).collect();
    status.excluded = plan.excluded.iter().map(|r| r.to_string()).collect();
    status.exclusions = exclusions;
    status.action_states = Some(states.iter().map(|s| s.letter()).collect());
    status.progress = Some(progress(&states));
    status.actions = action_entries(plan, &states, &[]);
    status.refused_approval = None;
    status.source = Some(source);
    status.rollout = plan.rollout.as_ref().map(|r| RunRollout::of(r, rollout));
    status.authorization = None;
    status.approved_by = None;
    status.approved_at = None;
}

/// Bounded, human-readable diff for status; true when something was left out.
fn diff_entries(plan: &Plan) -> (Vec<DiffEntry>, bool) {
    let entries = plan
        .diff
        .iter()
        .take(MAX_DIFF_ENTRIES)
        .map(|d| DiffEntry {
            kind: d.kind.to_string(),
            name: d.name.clone(),
            operation: d.operation.word().to_owned(),
            fields: d
                .fields
                .iter()
                .flat_map(change_lines)
                .take(MAX_FIELDS_PER_ENTRY)
                .map(|line| truncate(&line, 512))
                .collect(),
        })
        .collect();
    let truncated = plan.diff.len() > MAX_DIFF_ENTRIES
        || plan
            .diff
            .iter()
            .any(|d| d.fields.len() > MAX_FIELDS_PER_ENTRY);
    (entries, truncated)
}

/// What a run whose plan changes nothing says.
pub(super) fn no_changes(status: &SyncRunStatus) -> String {
    format!(
        "revision {} needs no changes",
        status.short_revision.as_deref().unwrap_or_default()
    )
}

/// Where an approver reads a plan whose diff in status is cut: through the reader
/// that checks it against the digest recorded, never from the ConfigMaps (editors can
/// write them). Empty when the status shows the whole diff.
pub(super) fn where_to_review(
    run: &SyncRun,
    diff_truncated: bool,
    config_maps: &[String],
) -> String {
    if !diff_truncated {
        return String::new();
    }
    format!(
        "; show the full plan with `kubectl fleet plan {} -n {}`, which checks it against the digest recorded here (the ConfigMap(s) {} that store it are writable by editors: do not review them directly)",
        run.name_any(),
        run.namespace().unwrap_or_default(),
        config_maps.join(", ")
    )
}

/// What a plan approved as soon as it was made says.
pub(super) fn approved(plan: &Plan, approved_by: &str, review: &str) -> String {
    format!(
        "plan {}: {}; approved by {approved_by}{review}",
        plan.plan_id,
        summary_line(plan)
    )
}

/// What a plan left for people says, and the Warnings that go with it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Awaiting {
    /// The run's message: how to approve, after any refusal or withheld approval.
    pub message: String,
    /// An approval set before the plan existed, refused.
    pub refusal: Option<String>,
    /// A policy that would have approved the plan, and why it did not.
    pub withheld: Option<String>,
}

/// The words of a plan awaiting `required` approvers. `early`: an approval already set
/// when the plan was made; `withheld`: a policy that would approve it, and why not.
pub(super) fn awaiting(
    run: &SyncRun,
    plan: &Plan,
    required: u32,
    review: &str,
    early: Option<&str>,
    withheld: Option<&(impl Display, impl Display)>,
) -> Awaiting {
    let withheld =
        withheld.map(|(policy, why)| format!("policy/{policy} would approve this plan, but {why}"));
    let quorum = match required {
        1 => String::new(),
        n => format!(" ({n} distinct approvers needed)"),
    };
    let how = format!(
        "plan {}: {}; approve{quorum} with: kubectl annotate syncrun/{} {}={}{review}",
        plan.plan_id,
        summary_line(plan),
        run.name_any(),
        annotations::APPROVE,
        plan.plan_id
    );
    let refusal = early.map(|early| {
        format!(
            "approval `{early}` was set before plan {} existed; review the plan, remove the annotation and approve again",
            plan.plan_id
        )
    });
    let message = [withheld.as_deref(), refusal.as_deref()]
        .into_iter()
        .flatten()
        .chain([how.as_str()])
        .collect::<Vec<_>>()
        .join(". ");
    Awaiting {
        message,
        refusal,
        withheld,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::syncrun::ApprovalRecord;
    use crate::controller::fixtures::{EXAMPLE, EXAMPLE_V2, plan_of, run_named};

    fn recorded(plan: &Plan) -> SyncRunStatus {
        let mut status = SyncRunStatus {
            approved_by: Some("alice".into()),
            refused_approval: Some("old".into()),
            approvals: vec![ApprovalRecord {
                user: "alice".into(),
                groups: vec![],
                plan_id: "previous".into(),
                at: crate::api::now(),
            }],
            ..Default::default()
        };
        let warnings = (0..80).map(|i| format!("w{i}")).collect();
        record_plan(
            &mut status,
            plan,
            warnings,
            Some("FleetNode/x".into()),
            RunSource::default(),
            &RolloutSpec::default(),
        );
        status
    }

    #[test]
    fn a_new_plan_is_recorded_whole_and_authorized_afresh() {
        let plan = plan_of(EXAMPLE_V2).against(EXAMPLE);
        let status = recorded(&plan);
        assert_eq!(status.plan_id.as_deref(), Some(plan.plan_id.as_str()));
        assert_eq!(status.changes, Some(plan.summary.total()));
        let progress = status.progress.unwrap();
        assert_eq!(
            (progress.total, progress.pending),
            (plan.actions.len() as u32, plan.actions.len() as u32)
        );
        assert_eq!(status.action_states.unwrap().len(), plan.actions.len());
        assert_eq!(status.warnings.len(), MAX_WARNINGS);
        assert_eq!(status.exclusions.as_deref(), Some("FleetNode/x"));
        assert_eq!(
            (
                status.approved_by,
                status.refused_approval,
                status.authorization
            ),
            (None, None, None)
        );
        assert!(
            status.approvals.iter().all(|a| a.plan_id == plan.plan_id),
            "approvals of the previous plan are kept: {:?}",
            status.approvals
        );
    }

    #[test]
    fn a_large_diff_is_cut_and_says_so() {
        let plan = plan_of(EXAMPLE).on_an_empty_cluster();
        let (entries, truncated) = diff_entries(&plan);
        assert_eq!(entries.len(), plan.diff.len().min(MAX_DIFF_ENTRIES));
        assert!(
            entries
                .iter()
                .all(|e| e.fields.len() <= MAX_FIELDS_PER_ENTRY)
        );
        let cut = plan.diff.len() > MAX_DIFF_ENTRIES
            || plan
                .diff
                .iter()
                .any(|d| d.fields.len() > MAX_FIELDS_PER_ENTRY);
        assert_eq!(truncated, cut);
    }

    #[test]
    fn an_approver_of_a_cut_diff_is_sent_to_the_checked_reader() {
        let run = run_named("fleet-abc-x1");
        assert_eq!(where_to_review(&run, false, &["cm".into()]), "");
        let review = where_to_review(&run, true, &["fleet-abc-x1-plan-0".into()]);
        assert!(
            review.contains("kubectl fleet plan fleet-abc-x1 -n team"),
            "{review}"
        );
        assert!(review.contains("fleet-abc-x1-plan-0"), "{review}");
    }

    #[test]
    fn a_plan_awaiting_people_says_how_to_approve_it_after_what_went_wrong() {
        let run = run_named("fleet-abc-x1");
        let plan = plan_of(EXAMPLE_V2).against(EXAMPLE);
        let plain = awaiting(&run, &plan, 1, "", None, None::<&(String, String)>);
        let how = format!(
            "approve with: kubectl annotate syncrun/fleet-abc-x1 gitops.fleetgate.dev/approve={}",
            plan.plan_id
        );
        assert!(plain.message.contains(&how), "{}", plain.message);
        assert_eq!((plain.refusal, plain.withheld), (None, None));

        let withheld = (
            "fleet-auto".to_owned(),
            "its source is not approved".to_owned(),
        );
        let words = awaiting(&run, &plan, 2, "", Some("stale"), Some(&withheld));
        assert!(
            words.message.contains("(2 distinct approvers needed)"),
            "{}",
            words.message
        );
        let refusal = words.refusal.unwrap();
        let withheld = words.withheld.unwrap();
        assert!(
            refusal.starts_with("approval `stale` was set before plan"),
            "{refusal}"
        );
        assert_eq!(
            withheld,
            "policy/fleet-auto would approve this plan, but its source is not approved"
        );
        assert!(
            words
                .message
                .starts_with(&format!("{withheld}. {refusal}. plan {}", plan.plan_id)),
            "{}",
            words.message
        );
    }

    #[test]
    fn a_plan_that_changes_nothing_names_its_revision() {
        let status = SyncRunStatus {
            short_revision: Some("abc1234".into()),
            ..Default::default()
        };
        assert_eq!(no_changes(&status), "revision abc1234 needs no changes");
    }
}
