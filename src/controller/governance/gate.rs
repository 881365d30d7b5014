//! Whether an approved plan may apply now: the run's apply-after annotation, the change
//! windows of its policies, and an override of them with its own quorum and reason.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::{Governance, quorum, windows};
use crate::api::annotations;
use crate::api::syncrun::{SyncRun, SyncRunStatus};

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
        // The run's own requirement (its authors never count), with the override's number.
        let requirement = quorum::Requirement {
            required: self.override_approvals,
            from_groups: Vec::new(),
            // Distinct people, however the plan splits: one slice's owner is one.
            slicing: None,
            ..self.requirement_for(status)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::governance::{ChangeWindow, WindowKind};
    use crate::controller::governance::fixtures::{approved_by, run};

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        windows::parse_time(s).unwrap()
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
        // A plan split by owner, all of it bob's slice: bob is still one person.
        let sliced = Governance {
            slices: Some((
                "regions".into(),
                serde_json::from_value(serde_json::json!({
                    "by": "region", "owners": [{"values": ["eu"], "users": ["bob"]}],
                }))
                .unwrap(),
            )),
            ..gov
        };
        let mut status = approved_by(&["bob"]);
        status.action_states = Some("P".into());
        status.slices = Some(crate::api::slices::PlanSlices {
            by: "region".into(),
            slices: vec![crate::api::slices::PlanSlice {
                name: "eu".into(),
                actions: 1,
            }],
            needs: vec![crate::api::slices::SliceNeeds {
                slices: vec!["eu".into()],
                wave: 0,
                actions: "0".into(),
            }],
            rule_approvals: None,
        });
        match sliced.gate(&overriding, &status, now) {
            Gate::Wait { why, .. } => assert!(why.contains("needs 2 distinct approvals"), "{why}"),
            Gate::Open { .. } => panic!("one owner overrode the windows alone"),
        }
    }
}
