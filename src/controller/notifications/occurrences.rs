//! Which occurrences an object's state shows, each with a stable key: the same state
//! seen again (another reconcile, another replica, a restart) gives the same key, so an
//! occurrence recorded as notified is never sent twice.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::payload::Notice;
use crate::api::notification::NotificationEvent;
use crate::api::syncrun::Phase;
use crate::api::{GitopsRepository, SyncRun, annotations, condition};

/// An occurrence and when it happened (compared with a target's creation: a target is
/// told only of what happened after it was created).
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence {
    pub notice: Notice,
    pub at: Option<Time>,
}

/// Keys of a run's notified occurrences, as recorded in its annotation.
pub fn recorded(annotation: Option<&String>) -> Vec<String> {
    annotation
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn counts_line(run: &SyncRun) -> String {
    let status = run.status.as_ref();
    match status.and_then(|s| s.changes.as_ref()) {
        Some(c) => format!(
            "{} to add, {} to change, {} to delete",
            c.add, c.update, c.delete
        ),
        None => "no changes".into(),
    }
}

/// The occurrence a run's phase shows, if it is one worth telling.
pub fn of_run(run: &SyncRun) -> Option<Occurrence> {
    let status = run.status.as_ref()?;
    let phase = status.phase?;
    let event = match phase {
        Phase::AwaitingApproval => NotificationEvent::PlanAwaitingApproval,
        Phase::Applied => NotificationEvent::Applied,
        Phase::Failed => NotificationEvent::Failed,
        Phase::Degraded => NotificationEvent::Degraded,
        Phase::Paused => NotificationEvent::RolloutPaused,
        _ => return None,
    };
    let pause = status.rollout.as_ref().and_then(|r| r.pause.as_ref());
    let namespace = run.namespace().unwrap_or_default();
    let plan_id = status.plan_id.clone();
    // A plan edited by exclusions gets a new planId, and is a new plan to approve.
    // Each pause of a rollout is another choice to make.
    let key = match (&plan_id, phase, pause) {
        (Some(plan), Phase::AwaitingApproval, _) => format!("{}:{plan}", event.as_str()),
        (_, Phase::Paused, Some(p)) => format!("{}:{}", event.as_str(), p.decision_id),
        _ => event.as_str().to_owned(),
    };
    let summary = match phase {
        Phase::Failed | Phase::Degraded | Phase::Paused => {
            status.message.clone().unwrap_or_default()
        }
        _ => counts_line(run),
    };
    let approve_command = match (phase, &plan_id) {
        (Phase::AwaitingApproval, Some(plan)) => Some(format!(
            "kubectl annotate -n {namespace} syncrun/{} {}={plan}",
            run.name_any(),
            annotations::APPROVE
        )),
        (Phase::Paused, _) => Some(format!(
            "kubectl fleet decide -n {namespace} {} continue|leave-out|rollback",
            run.name_any()
        )),
        _ => None,
    };
    let at = match phase {
        Phase::Paused => pause.map(|p| p.at.clone()),
        Phase::AwaitingApproval => condition(&status.conditions, "Reconciling")
            .map(|c| c.last_transition_time.clone())
            .or_else(|| status.started_at.clone()),
        _ => status.completed_at.clone(),
    };
    Some(Occurrence {
        notice: Notice {
            id: key,
            event,
            namespace,
            repository: run.spec.repository.clone(),
            run: Some(run.name_any()),
            revision: Some(run.spec.revision.clone()),
            plan_id,
            phase: Some(phase.as_str().to_owned()),
            summary: first_lines(&summary),
            approve_command,
        },
        at,
    })
}

/// A refused approval of `run`, as it was when refused (`resource_version`).
pub fn approval_refused(run: &SyncRun, message: &str) -> Occurrence {
    let status = run.status.as_ref();
    let version = run.resource_version().unwrap_or_default();
    Occurrence {
        notice: Notice {
            id: format!("ApprovalRefused:{version}"),
            event: NotificationEvent::ApprovalRefused,
            namespace: run.namespace().unwrap_or_default(),
            repository: run.spec.repository.clone(),
            run: Some(run.name_any()),
            revision: Some(run.spec.revision.clone()),
            plan_id: status.and_then(|s| s.plan_id.clone()),
            phase: status.and_then(|s| s.phase).map(|p| p.as_str().to_owned()),
            summary: first_lines(message),
            approve_command: None,
        },
        at: Some(crate::api::now()),
    }
}

/// The occurrences a repository's status shows that `notified` does not hold yet:
/// drift detected (per episode), drift cleared (after a notified detection), stalled
/// (per transition).
pub fn of_repository(repo: &GitopsRepository, notified: &[String]) -> Vec<Occurrence> {
    let Some(status) = repo.status.as_ref() else {
        return Vec::new();
    };
    let namespace = repo.namespace().unwrap_or_default();
    let notice = |id: String, event, summary: &str, revision: Option<String>| Notice {
        id,
        event,
        namespace: namespace.clone(),
        repository: repo.name_any(),
        run: None,
        revision,
        plan_id: None,
        phase: None,
        summary: first_lines(summary),
        approve_command: None,
    };
    let mut out = Vec::new();
    let drifted = condition(&status.conditions, "Drifted");
    let last_drift = notified
        .iter()
        .rev()
        .find(|k| k.starts_with("DriftDetected:") || k.starts_with("DriftCleared:"));
    match (&status.drift, drifted) {
        (Some(drift), Some(c)) if c.status == "True" => {
            let at = drift.detected_at.as_ref().map(|t| t.0.to_string());
            let key = format!(
                "DriftDetected:{}",
                at.unwrap_or_else(|| drift.digest.clone())
            );
            out.push(Occurrence {
                notice: notice(
                    key,
                    NotificationEvent::DriftDetected,
                    &c.message,
                    Some(drift.revision.clone()),
                ),
                at: drift.detected_at.clone(),
            });
        }
        (None, Some(c))
            if c.status == "False" && last_drift.is_some_and(|k| k.starts_with("DriftD")) =>
        {
            let key = format!("DriftCleared:{}", c.last_transition_time.0);
            out.push(Occurrence {
                notice: notice(key, NotificationEvent::DriftCleared, &c.message, None),
                at: Some(c.last_transition_time.clone()),
            });
        }
        _ => {}
    }
    if let Some(c) = condition(&status.conditions, "Stalled")
        && c.status == "True"
    {
        let key = format!("RepositoryStalled:{}", c.last_transition_time.0);
        let summary = format!("{}: {}", c.reason, c.message);
        out.push(Occurrence {
            notice: notice(
                key,
                NotificationEvent::RepositoryStalled,
                &summary,
                status.last_fetched_revision.clone(),
            ),
            at: Some(c.last_transition_time.clone()),
        });
    }
    // The chain: each revision promotion makes eligible is told once, with what held it.
    if let Some(p) = &status.promotion
        && let Some(revision) = &p.revision
    {
        out.push(Occurrence {
            notice: notice(
                format!("Promoted:{revision}"),
                NotificationEvent::Promoted,
                &p.message,
                Some(revision.clone()),
            ),
            at: None,
        });
    }
    out.retain(|o| !notified.contains(&o.notice.id));
    out
}

/// At most the first 20 lines and 4 KiB of a message.
fn first_lines(message: &str) -> String {
    let lines: Vec<&str> = message.lines().take(20).collect();
    crate::api::truncate(&lines.join("\n"), 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(status: serde_json::Value) -> GitopsRepository {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "GitopsRepository",
            "metadata": {"name": "fleet", "namespace": "ns"},
            "spec": {"url": "https://example.com/a.git", "ref": {"branch": "main"}},
            "status": status,
        }))
        .unwrap()
    }

    fn drifted(status: &str, at: &str) -> serde_json::Value {
        serde_json::json!({"type": "Drifted", "status": status, "reason": "R", "message": "m",
            "lastTransitionTime": at})
    }

    #[test]
    fn drift_is_told_per_episode_and_its_end_only_after_it() {
        let clean =
            repo(serde_json::json!({"conditions": [drifted("False", "2026-01-01T00:00:00Z")]}));
        assert!(
            of_repository(&clean, &[]).is_empty(),
            "never drifted: nothing cleared"
        );

        let drift = serde_json::json!({"detectedAt": "2026-01-01T00:01:00Z", "revision": "abc",
            "count": 1, "objects": [], "digest": "d"});
        let dirty = repo(
            serde_json::json!({"conditions": [drifted("True", "2026-01-01T00:01:00Z")], "drift": drift}),
        );
        let found = of_repository(&dirty, &[]);
        assert_eq!(found.len(), 1);
        let key = found[0].notice.id.clone();
        assert!(key.starts_with("DriftDetected:"), "{key}");
        assert!(
            of_repository(&dirty, std::slice::from_ref(&key)).is_empty(),
            "told once"
        );

        let cleared =
            repo(serde_json::json!({"conditions": [drifted("False", "2026-01-01T00:02:00Z")]}));
        let found = of_repository(&cleared, std::slice::from_ref(&key));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].notice.event, NotificationEvent::DriftCleared);
        let both = [key, found[0].notice.id.clone()];
        assert!(of_repository(&cleared, &both).is_empty());
    }

    #[test]
    fn each_pause_of_a_rollout_is_told_once_with_the_command_to_choose() {
        let paused = |decision: &str| -> SyncRun {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "SyncRun",
                "metadata": {"name": "r1", "namespace": "ns"},
                "spec": {"repository": "fleet", "revision": "abc", "trigger": "Schedule"},
                "status": {"phase": "Paused", "planId": "plan-1", "message": "paused: rb-3",
                    "rollout": {"policy": "p", "waves": [], "minReadyTime": "30s", "maxFailures": 0,
                        "pause": {"reason": "ObjectFailed", "wave": 1, "objects": ["fleetnode/rb-3"],
                            "decisionId": decision, "at": "2026-01-01T00:00:00Z"}}},
            }))
            .unwrap()
        };
        let first = of_run(&paused("pause-aaa")).unwrap();
        assert_eq!(first.notice.event, NotificationEvent::RolloutPaused);
        assert_eq!(first.notice.id, "RolloutPaused:pause-aaa");
        assert_eq!(first.notice.summary, "paused: rb-3");
        let command = first.notice.approve_command.clone().unwrap();
        assert!(
            command.starts_with("kubectl fleet decide -n ns r1 "),
            "{command}"
        );
        assert!(first.at.is_some());
        // Another pause of the same run is another occurrence.
        assert_ne!(
            of_run(&paused("pause-bbb")).unwrap().notice.id,
            first.notice.id
        );
    }

    #[test]
    fn each_promoted_revision_is_told_once_with_what_held_it() {
        let promoted = |revision: &str| {
            repo(
                serde_json::json!({"promotion": {"from": "staging/fleet", "reason": "Promoted",
                "revision": revision, "message": "revision abc held in staging/fleet for 1h"}}),
            )
        };
        let found = of_repository(&promoted("abc"), &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].notice.event, NotificationEvent::Promoted);
        assert_eq!(found[0].notice.id, "Promoted:abc");
        assert_eq!(
            found[0].notice.summary,
            "revision abc held in staging/fleet for 1h"
        );
        assert!(of_repository(&promoted("abc"), &["Promoted:abc".into()]).is_empty());
        assert_eq!(
            of_repository(&promoted("def"), &["Promoted:abc".into()]).len(),
            1
        );
        let waiting = repo(serde_json::json!({"promotion": {"from": "staging/fleet",
            "reason": "Waiting", "message": "waiting"}}));
        assert!(of_repository(&waiting, &[]).is_empty());
    }

    #[test]
    fn recorded_keys_ignore_blanks() {
        let value = " a, ,b,".to_owned();
        assert_eq!(recorded(Some(&value)), ["a", "b"]);
        assert!(recorded(None).is_empty());
    }
}
