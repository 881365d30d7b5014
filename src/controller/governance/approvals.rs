//! Approvals of a governed run: each counted toward the quorum of the plan it names
//! (refused at once when its identity never counts), dropped when too old, and cleared
//! from the run's annotations once recorded so that the next approver is stamped
//! afresh. Whether they authorize the plan is decided by [`crate::controller::authorization`].

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{Governance, quorum};
use crate::api::annotations;
use crate::api::syncrun::{ApprovalRecord, SyncRun, SyncRunStatus};
use crate::fleet::rollout::pause::Decision;

impl Governance {
    /// Counts `approver`'s approval of the current plan.
    pub fn count(
        &self,
        status: &mut SyncRunStatus,
        approver: &str,
        groups: Vec<String>,
        requester: Option<&str>,
        now: Timestamp,
    ) -> QuorumOutcome {
        let plan = status.plan_id.clone().unwrap_or_default();
        self.count_for(status, &plan, approver, groups, requester, now)
    }

    /// Counts `approver`'s approval of `subject`: the current plan, or a choice at a
    /// paused rollout (`<choice>:<decision id>`), by the same rules and quorum as the
    /// plan. Approvals of different subjects never add up.
    pub fn count_for(
        &self,
        status: &mut SyncRunStatus,
        subject: &str,
        approver: &str,
        groups: Vec<String>,
        requester: Option<&str>,
        now: Timestamp,
    ) -> QuorumOutcome {
        if self.forbid_requester && requester == Some(approver) {
            return QuorumOutcome::Refused(format!(
                "{approver} requested this sync and the governance policy forbids the requester from approving it; another approver must approve"
            ));
        }
        let choice = subject.parse::<Decision>().ok().map(|d| d.choice);
        let requirement = match choice {
            None => self.requirement_for(status),
            Some(choice) => self.choice_requirement(status, choice),
        };
        if let Err(ineligible) = requirement.eligible(approver) {
            return QuorumOutcome::Refused(ineligible.to_string());
        }
        // A sliced plan counts approvals per slice: one from someone who owns none of
        // its slices (and it has none the general quorum approves) counts for nothing.
        if let Some(slicing) = requirement.slicing.as_ref().filter(|_| choice.is_none())
            && slicing.stale.is_none()
            && !slicing.counts_for_any(
                approver,
                &groups,
                requirement.required,
                !requirement.from_groups.is_empty(),
            )
        {
            let slices: Vec<String> = slicing.slices.iter().map(|s| s.name.clone()).collect();
            return QuorumOutcome::Refused(format!(
                "{approver} owns none of this plan's slices ({}) in the governing policy's spec.slices, so the approval counts for nothing; their owners approve",
                crate::api::slices::shown_all(&slices)
            ));
        }
        let plan = subject.to_owned();
        let added = quorum::add(
            &mut status.approvals,
            ApprovalRecord {
                user: approver.to_owned(),
                groups,
                plan_id: plan.clone(),
                at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
            },
        );
        let tally = quorum::tally(&status.approvals, &plan, &requirement, now);
        if tally.met() {
            QuorumOutcome::Met(tally)
        } else {
            QuorumOutcome::Waiting { tally, added }
        }
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

/// What counting one approval toward the quorum came to.
pub enum QuorumOutcome {
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
    use crate::controller::governance::fixtures::{approved_by, run};

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
}
