//! What governance says about a run, in the pages: quorum progress, a change-window wait,
//! an expired plan, a window override, a rollback, the rules that matched; and asking for
//! a rollback from a repository's history. The words come from the same helpers as
//! `kubectl fleet plan`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use maud::{Markup, html};

use super::pages::{repo_url, run_url};
use crate::api::repository::HistoryEntry;
use crate::api::syncrun::{Phase, SyncRunStatus};
use crate::api::{GitopsRepository, SyncRun};
use crate::cli::governance::{missing_groups, quorum, rollback_of};

fn time(t: &Time) -> String {
    t.0.to_string()
}

/// The tone of a matched rule, from its outcome (`policy/rule: Deny`).
fn rule_tone(result: &str) -> &'static str {
    match result.rsplit(": ").next().unwrap_or_default() {
        "Deny" => "bad",
        "RequireApprovals" | "Warn" => "wait",
        "AutoApprove" => "good",
        _ => "busy",
    }
}

/// Whether `me` is among the counted approvers of the current plan.
pub(crate) fn approved_by(status: &SyncRunStatus, me: &str) -> bool {
    quorum(status).approvals.iter().any(|a| a.user == me)
}

/// Quorum progress: N of M, who and when, which groups are still needed.
fn approvals(status: &SyncRunStatus) -> Markup {
    let q = quorum(status);
    html! {
        @if q.worth_showing() {
            section.governance #quorum {
                h2 { "Approvals" }
                p #quorum-count {
                    strong { (q.counted()) " of " (q.required) } " approvals of this plan"
                    @if let Some(groups) = missing_groups(status) {
                        "; still needs an approver from " span #quorum-groups { (groups) }
                    }
                }
                @if !q.approvals.is_empty() {
                    ul #approvers { @for a in &q.approvals {
                        li { strong { (a.user) } " at " (time(&a.at))
                            @if !a.groups.is_empty() { " (groups " (a.groups.join(", ")) ")" } }
                    } }
                }
            }
        }
    }
}

/// Everything governance says about the run that changes while one looks.
pub(crate) fn status(run: &SyncRun) -> Markup {
    let status = run.status.clone().unwrap_or_default();
    html! {
        (approvals(&status))
        @if status.phase == Some(Phase::Scheduled) {
            p.governance #scheduled {
                "Scheduled: approved; applies "
                @match &status.scheduled_for {
                    Some(t) => { "from " strong #scheduled-for { (time(t)) } }
                    None => "when the change windows allow",
                }
                ". Further approvals count toward an override of the windows."
            }
        }
        @if status.phase == Some(Phase::Expired) {
            p.governance #expired { "Expired: the plan was not approved in time; the repository plans afresh on its next check." }
        }
        @if let Some(o) = &status.window_override {
            p.governance #override { "Window override: " (o) }
        }
        @if !status.policy_results.is_empty() {
            section.governance #policy-results {
                h2 { "Rules that matched" }
                ul { @for r in &status.policy_results {
                    li { span class={ "badge " (rule_tone(r)) } { (r) } }
                } }
            }
        }
    }
}

/// For the run's facts: which run a Rollback run restores, and from which revision.
pub(crate) fn rollback_fact(run: &SyncRun) -> Markup {
    let ns = run.namespace().unwrap_or_default();
    html! {
        @if let Some((of, from)) = rollback_of(run) {
            dt { "Rollback" }
            dd #rollback-of { "back to what " a href=(run_url(&ns, &of)) { (of) } " applied, from revision " code { (from) }
                " (held until a new revision)" }
        }
    }
}

/// The history row's action: roll back to an applied run (a confirm page first).
pub(crate) fn rollback_link(ns: &str, repository: &str, h: &HistoryEntry) -> Markup {
    html! {
        @if h.phase == Some(Phase::Applied) {
            a.button.rollback href=(format!("{}/rollback?to={}", repo_url(ns, repository), h.sync_run)) { "Roll back to this run" }
        }
    }
}

/// The run `to` of the repository's history, if it was applied; else why not.
pub(crate) fn applied_run<'a>(
    repo: &'a GitopsRepository,
    to: &str,
) -> Result<&'a HistoryEntry, String> {
    repo.status
        .as_ref()
        .and_then(|s| s.history.iter().find(|h| h.sync_run == to))
        .filter(|h| h.phase == Some(Phase::Applied))
        .ok_or_else(|| {
            format!(
                "{to:?} is not an applied run in the history of {}",
                repo.name_any()
            )
        })
}

/// Confirm a rollback of `repo` to what `to` applied.
pub(crate) fn confirm_rollback(repo: &GitopsRepository, to: &HistoryEntry) -> Markup {
    let ns = repo.namespace().unwrap_or_default();
    let name = repo.name_any();
    let current = repo
        .status
        .as_ref()
        .and_then(|s| s.last_applied_revision.as_deref())
        .unwrap_or("—");
    html! {
        h1 { "Roll back " a href=(repo_url(&ns, &name)) { (ns) "/" (name) } }
        p { "A Rollback run plans the state that " a href=(run_url(&ns, &to.sync_run)) { (to.sync_run) }
            " applied (revision " code { (&to.revision[..to.revision.len().min(12)]) } ") against the live cluster, from revision "
            code { (&current[..current.len().min(12)]) } ". Its plan awaits approval like any other; until a new revision arrives the revision rolled back from is not applied again by itself." }
        form method="post" action=(format!("{}/rollback", repo_url(&ns, &name))) {
            input type="hidden" name="to" value=(to.sync_run);
            button.primary #confirm-rollback type="submit" { "Roll back to " (to.sync_run) }
            " " a.button href=(repo_url(&ns, &name)) { "Cancel" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(trigger: &str, annotations: serde_json::Value, status: serde_json::Value) -> SyncRun {
        serde_json::from_value(json!({
            "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "SyncRun",
            "metadata": {"name": "r", "namespace": "ns", "annotations": annotations},
            "spec": {"repository": "fleet", "revision": "abc", "trigger": trigger},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn quorum_counts_distinct_approvers_of_the_current_plan_and_names_missing_groups() {
        let at = "2026-11-25T10:00:00Z";
        let r = run(
            "Schedule",
            json!({}),
            json!({"phase": "AwaitingApproval", "planId": "p2", "approvalsRequired": 2,
                   "message": "1/2 approvals (bob); still needs an approver from group(s) netops",
                   "approvals": [
                       {"user": "carol", "planId": "p1", "at": at},
                       {"user": "bob", "planId": "p2", "at": at},
                       {"user": "bob", "planId": "p2", "at": at}],
                   "policyResults": ["p/mass-delete: Deny", "p/meta: AutoApprove"]}),
        );
        let html = status(&r).into_string();
        assert!(html.contains("<strong>1 of 2</strong>"), "{html}");
        assert!(
            html.contains("<span id=\"quorum-groups\">netops</span>"),
            "{html}"
        );
        assert!(!html.contains("carol"), "{html}");
        assert!(html.contains("badge bad\">p/mass-delete: Deny"), "{html}");
        assert!(html.contains("badge good\">p/meta: AutoApprove"), "{html}");
        let page = |me| crate::cli::ui::pages::live(&r, Some("p2"), me).into_string();
        assert!(page("bob").contains("id=\"you-approved\""));
        assert!(!page("bob").contains("id=\"approve\""));
        assert!(page("carol").contains("id=\"approve\""));
    }

    #[test]
    fn only_an_applied_run_of_the_history_is_rolled_back_to() {
        let repo: GitopsRepository = serde_json::from_value(json!({
            "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "GitopsRepository",
            "metadata": {"name": "fleet", "namespace": "ns"},
            "spec": {"url": "ssh://git@example.com/fleet.git", "ref": {"branch": "main"}},
            "status": {"history": [
                {"syncRun": "v2", "revision": "bbb", "trigger": "Schedule", "phase": "Failed"},
                {"syncRun": "v1", "revision": "aaa", "trigger": "Schedule", "phase": "Applied"}]},
        }))
        .unwrap();
        assert_eq!(
            applied_run(&repo, "v1").map(|h| h.revision.as_str()),
            Ok("aaa")
        );
        for to in ["v2", "v0", ""] {
            let why = applied_run(&repo, to).unwrap_err();
            assert!(why.contains("not an applied run"), "{why}");
        }
        let links: String = repo
            .status
            .as_ref()
            .unwrap()
            .history
            .iter()
            .map(|h| rollback_link("ns", "fleet", h).into_string())
            .collect();
        assert_eq!(links.matches("Roll back to this run").count(), 1, "{links}");
        assert!(
            links.contains("repositories/fleet/rollback?to=v1"),
            "{links}"
        );
        let confirm = confirm_rollback(&repo, applied_run(&repo, "v1").unwrap()).into_string();
        assert!(confirm.contains("method=\"post\""), "{confirm}");
        assert!(confirm.contains("name=\"to\" value=\"v1\""), "{confirm}");
    }

    #[test]
    fn scheduled_expired_override_and_rollback_are_said() {
        let scheduled = run(
            "Schedule",
            json!({}),
            json!({"phase": "Scheduled", "planId": "p", "scheduledFor": "2026-11-26T02:00:00Z",
                   "windowOverride": "dave: outage INC-1"}),
        );
        let html = crate::cli::ui::pages::live(&scheduled, Some("p"), "bob").into_string();
        assert!(
            html.contains("<strong id=\"scheduled-for\">2026-11-26T02:00:00Z</strong>"),
            "{html}"
        );
        assert!(html.contains("toward a window override"), "{html}");
        assert!(html.contains("dave: outage INC-1"), "{html}");
        assert!(!html.contains("id=\"reject\""), "{html}");
        let expired = run(
            "Schedule",
            json!({}),
            json!({"phase": "Expired", "planId": "p"}),
        );
        let html = crate::cli::ui::pages::live(&expired, Some("p"), "bob").into_string();
        assert!(html.contains("id=\"expired\""), "{html}");
        assert!(!html.contains("id=\"approve\""), "{html}");
        let rollback = run(
            "Rollback",
            json!({"gitops.fleetgate.dev/rollback-of": "fleet-v1", "gitops.fleetgate.dev/rollback-from": "0123456789abcdef"}),
            json!({}),
        );
        let html = rollback_fact(&rollback).into_string();
        assert!(html.contains("ns/ns/runs/fleet-v1"), "{html}");
        assert!(html.contains("<code>0123456789ab</code>"), "{html}");
        assert!(rollback_fact(&expired).into_string().is_empty());
    }
}
