//! What `kubectl fleet` (and its UI) says about a run's governance: quorum progress, a
//! change-window wait, an override, a rollback, the rules that matched; and asking for a
//! rollback.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::api::syncrun::{ApprovalRecord, Phase, SyncRunStatus, Trigger};
use crate::api::{GitopsRepository, SyncRun, annotations};

/// Where the run's current plan stands toward its quorum.
pub(crate) struct Quorum<'a> {
    /// Distinct approvers required (one when the status names none).
    pub required: u32,
    /// The first approval of each distinct user that named the current plan.
    pub approvals: Vec<&'a ApprovalRecord>,
}

impl Quorum<'_> {
    /// The approvals counted toward `required`.
    pub fn counted(&self) -> usize {
        self.approvals.len().min(self.required as usize)
    }

    /// Whether there is anything to say: more than one approver needed, or some given.
    pub fn worth_showing(&self) -> bool {
        self.required > 1 || !self.approvals.is_empty()
    }
}

pub(crate) fn quorum(status: &SyncRunStatus) -> Quorum<'_> {
    let plan = status.plan_id.as_deref().unwrap_or_default();
    let mut approvals: Vec<&ApprovalRecord> = Vec::new();
    for a in status.approvals.iter().filter(|a| a.plan_id == plan) {
        if !approvals.iter().any(|b| b.user == a.user) {
            approvals.push(a);
        }
    }
    Quorum {
        required: status.approvals_required.unwrap_or(1),
        approvals,
    }
}

/// Which groups still need an approver, as the controller's message says.
pub(crate) fn missing_groups(status: &SyncRunStatus) -> Option<&str> {
    const NEEDS: &str = "still needs an approver from group(s) ";
    let message = status.message.as_deref()?;
    let at = message.find(NEEDS)? + NEEDS.len();
    Some(
        message[at..]
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end_matches('.'),
    )
}

/// For a Rollback run: the run whose applied state it restores, and the (short)
/// revision it rolls back from.
pub(crate) fn rollback_of(run: &SyncRun) -> Option<(String, String)> {
    if run.spec.trigger != Trigger::Rollback {
        return None;
    }
    let a = run.annotations();
    Some((
        a.get(annotations::ROLLBACK_OF)
            .cloned()
            .unwrap_or_else(|| "?".to_owned()),
        a.get(annotations::ROLLBACK_FROM)
            .map_or("?", |r| crate::api::short_revision(r))
            .to_owned(),
    ))
}

/// Asks for a rollback of repository `name` to what run `to` applied, as the caller's
/// identity (admission lets approvers only); the controller starts a Rollback run.
pub(crate) async fn request_rollback(
    repos: &Api<GitopsRepository>,
    name: &str,
    to: &str,
) -> Result<(), kube::Error> {
    // Stamped, so that asking again for the same run (after a rejected rollback) is a
    // new request rather than a value the controller has handled already.
    let stamped = format!("{to}@{}", k8s_openapi::jiff::Timestamp::now());
    let patch = json!({"metadata": {"annotations": {annotations::ROLLBACK_TO: stamped}}});
    repos
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// `Slices (by region): ap-tokyo-1 (1 action), eu-west-2 (1 action); written so far:
/// ap-tokyo-1`: how the plan split by owner and which slices were authorized.
fn slice_line(split: &crate::api::slices::PlanSlices, status: &SyncRunStatus) -> String {
    use crate::api::slices::{shown, shown_all};
    let slices: Vec<String> = split
        .slices
        .iter()
        .map(|s| {
            let plural = if s.actions == 1 { "" } else { "s" };
            format!("{} ({} action{plural})", shown(&s.name), s.actions)
        })
        .collect();
    let mut line = format!("Slices (by {}): {}", shown(&split.by), slices.join(", "));
    if let Some(a) = status
        .authorization
        .as_ref()
        .filter(|a| !a.slices.is_empty())
    {
        line.push_str(&format!("; approved so far: {}", shown_all(&a.slices)));
    }
    line.push('\n');
    line
}

/// Lines about the run's governance, empty when there is nothing to say.
pub fn lines(run: &SyncRun) -> String {
    let status = run.status.clone().unwrap_or_default();
    let mut out = String::new();
    if let Some(commit) = status.source.as_ref().and_then(|s| s.commit.as_ref()) {
        out.push_str(&commit_line(commit));
    }
    let q = quorum(&status);
    if status.slices.is_some() && !q.approvals.is_empty() {
        // A sliced plan counts approvals per slice: the run's message has each standing.
        let approvers: Vec<&str> = q.approvals.iter().map(|a| a.user.as_str()).collect();
        out.push_str(&format!(
            "Approvals: {} (each slice counts its owners)\n",
            approvers.join(", ")
        ));
    } else if q.worth_showing() {
        let approvers: Vec<&str> = q.approvals.iter().map(|a| a.user.as_str()).collect();
        out.push_str(&format!(
            "Approvals: {}/{}{}\n",
            q.counted(),
            q.required,
            match approvers.is_empty() {
                true => String::new(),
                false => format!(" ({})", approvers.join(", ")),
            }
        ));
    }
    if let Some(split) = &status.slices {
        out.push_str(&slice_line(split, &status));
    }
    if status.phase == Some(Phase::Scheduled) {
        let from = status
            .scheduled_for
            .as_ref()
            .map_or("when the windows allow".to_owned(), |t| {
                format!("from {}", t.0)
            });
        out.push_str(&format!(
            "Scheduled: approved, applies {from}\n  {}\n",
            status.message.clone().unwrap_or_default()
        ));
    }
    if let Some(o) = &status.window_override {
        out.push_str(&format!("Window override: {o}\n"));
    }
    if let Some((of, from)) = rollback_of(run) {
        out.push_str(&format!(
            "Rollback: back to what syncrun/{of} applied; revision {from} is held until a new revision\n"
        ));
    }
    for r in &status.policy_results {
        out.push_str(&format!("Policy: {r}\n"));
    }
    out.push_str(&pause_lines(run, &status));
    out
}

/// What a paused rollout waits for, and the choices made at earlier pauses.
fn pause_lines(run: &SyncRun, status: &SyncRunStatus) -> String {
    let mut out = String::new();
    let Some(rollout) = status.rollout.as_ref() else {
        return out;
    };
    for d in &rollout.decisions {
        out.push_str(&format!(
            "Chosen: {} at wave {} by {} ({})\n",
            d.choice,
            d.wave + 1,
            d.by,
            d.decision_id
        ));
    }
    if !rollout.accepted.is_empty() {
        out.push_str(&format!(
            "Accepted as they are: {}\n",
            rollout.accepted.join(", ")
        ));
    }
    let Some(p) = rollout
        .pause
        .as_ref()
        .filter(|_| status.phase == Some(Phase::Paused))
    else {
        return out;
    };
    let more = match p.more {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    out.push_str(&format!(
        "Paused: at wave {} ({}) by {}{more}\n",
        p.wave + 1,
        p.reason,
        p.objects.join(", ")
    ));
    let choices = match &p.rollback_to {
        Some(to) => format!("continue | leave-out | rollback (to what syncrun/{to} applied)"),
        None => "continue | leave-out".to_owned(),
    };
    let chosen: Vec<String> = status
        .approvals
        .iter()
        .filter(|a| a.plan_id.ends_with(&format!(":{}", p.decision_id)))
        .map(|a| {
            format!(
                "{} by {}",
                a.plan_id.split(':').next().unwrap_or_default(),
                a.user
            )
        })
        .collect();
    if !chosen.is_empty() {
        out.push_str(&format!("  chosen so far: {}\n", chosen.join(", ")));
    }
    out.push_str(&format!(
        "  choose: kubectl fleet decide {} <{choices}>   (decision {})\n",
        run.name_any(),
        p.decision_id
    ));
    out
}

/// Who made the planned commit and, under the repository's spec.verify, who signed it.
fn commit_line(commit: &crate::api::provenance::RunCommit) -> String {
    let (a, c) = (&commit.author, &commit.committer);
    let mut by = format!("{} <{}>", a.name, a.email);
    if (&c.name, &c.email) != (&a.name, &a.email) {
        by.push_str(&format!(", committed by {} <{}>", c.name, c.email));
    }
    let verified = match (commit.verified, commit.signed_by()) {
        (Some(mode), Some(signed)) => format!("verified ({}): {signed}", mode.as_str()),
        _ => "signatures not verified (the repository sets no spec.verify)".to_owned(),
    };
    let mut out = format!("Commit: by {by}; {verified}\n");
    if let Some(range) = &commit.range {
        let since = match &range.from {
            Some(from) => format!("since {}", crate::api::short_revision(from)),
            None => "the first plan".to_owned(),
        };
        let mut people: Vec<&str> = range.authors.iter().map(String::as_str).collect();
        for c in &range.committers {
            if !people.contains(&c.as_str()) {
                people.push(c);
            }
        }
        out.push_str(&format!(
            "Written ({since}): {} commit(s) by {}{}{}{}\n",
            range.commits,
            people.join(", "),
            match range.signers.is_empty() {
                true => String::new(),
                false => format!("; signed by {}", range.signers.join(", ")),
            },
            match range.unverified {
                0 => String::new(),
                n => format!("; {n} not signed by a trusted key"),
            },
            match range.complete {
                true => "",
                false => " (not read whole: some people may be missing)",
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::provenance::{GitPerson, RunCommit, VerifiedSignature, VerifyMode};

    fn person(name: &str) -> GitPerson {
        GitPerson {
            name: name.into(),
            email: format!("{}@example.com", name.to_lowercase()),
            at: "2026-12-06T20:00:00Z".into(),
        }
    }

    #[test]
    fn the_commit_line_names_the_author_and_the_verified_signer() {
        let mut commit = RunCommit {
            author: person("Ada"),
            committer: person("Ada"),
            verified: None,
            signature: None,
            tag: None,
            range: None,
        };
        assert_eq!(
            commit_line(&commit),
            "Commit: by Ada <ada@example.com>; signatures not verified (the repository sets no spec.verify)\n"
        );
        commit.committer = person("Bob");
        commit.verified = Some(VerifyMode::Head);
        commit.signature = Some(VerifiedSignature {
            kind: "SSH".into(),
            fingerprint: "SHA256:abc".into(),
            signing_subkey: None,
            identities: vec!["bob@example.com".into()],
        });
        assert_eq!(
            commit_line(&commit),
            "Commit: by Ada <ada@example.com>, committed by Bob <bob@example.com>; verified (HEAD): commit signed by SSH key SHA256:abc (bob@example.com)\n"
        );
        commit.range = Some(crate::api::provenance::CommitRange {
            from: Some("0123456789abcdef".into()),
            commits: 2,
            authors: vec!["ada@example.com".into()],
            committers: vec!["bob@example.com".into()],
            signers: vec!["SHA256:abc".into()],
            unverified: 0,
            complete: false,
        });
        assert!(commit_line(&commit).ends_with(
            "\nWritten (since 0123456789ab): 2 commit(s) by ada@example.com, bob@example.com; signed by SHA256:abc (not read whole: some people may be missing)\n"
        ));
    }
}
