//! What a run recorded when it was cleared to apply, and what the check reads beside it:
//! the repository's approval settings as they are now, and the run whose content it
//! restores. Read before a Scheduled run applies and before the engine's first write,
//! so that the decision is made again on the same facts it was first made on.

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::{Client, ResourceExt};

use super::quorum::Requirement;
use super::{Facts, PolicyFacts, PolicyRef, Provenance, RepositoryPolicy, RuleVerdict};
use crate::api::syncrun::{Authority, SyncRunStatus};
use crate::api::{GitopsRepository, SyncRun};

/// The objects the check reads beside the run.
pub struct Recorded {
    repository: Option<GitopsRepository>,
    restored: Option<SyncRun>,
}

/// Reads the run's repository and, when its content restores another run, that run.
pub async fn read(
    client: &Client,
    run: &SyncRun,
    status: &SyncRunStatus,
) -> kube::Result<Recorded> {
    let ns = run.namespace().unwrap_or_default();
    let repository = Api::<GitopsRepository>::namespaced(client.clone(), &ns)
        .get_opt(&run.spec.repository)
        .await?;
    let restored = match status.source.as_ref().and_then(|s| s.restores.as_ref()) {
        Some(name) => {
            Api::<SyncRun>::namespaced(client.clone(), &ns)
                .get_opt(name)
                .await?
        }
        None => None,
    };
    Ok(Recorded {
        repository,
        restored,
    })
}

impl Recorded {
    pub fn repository(&self) -> Option<&GitopsRepository> {
        self.repository.as_ref()
    }

    /// The facts of `run` as recorded in `status`, decided at `at`. A policy is asked
    /// only when a policy cleared the run (as its authorization says) and the repository
    /// still exists; otherwise only people may authorize.
    pub fn facts<'a>(
        &'a self,
        run: &SyncRun,
        status: &'a SyncRunStatus,
        requirement: &'a Requirement,
        unverified_ok: bool,
        at: Timestamp,
    ) -> Facts<'a> {
        let policy = status
            .authorization
            .as_ref()
            .filter(|a| a.by == Authority::Policy)
            .zip(self.repository.as_ref())
            .map(|(record, repository)| {
                let recorded = record.policy.as_deref().and_then(PolicyRef::parse);
                let rule = matches!(recorded, Some(PolicyRef::Rule(_)))
                    .then_some(record.policy.as_deref())
                    .flatten();
                PolicyFacts {
                    provenance: Provenance::of(
                        run.spec.trigger,
                        status.source.as_ref(),
                        self.restored.as_ref(),
                        unverified_ok,
                    ),
                    repository: RepositoryPolicy::of(&repository.spec),
                    // The rules judged the plan when it was recorded; what they said is
                    // in the record (a policy clears a run only when no rule asked for
                    // people), and a change of the quorum since is read from `requirement`.
                    rules: rule.map(|rule| RuleVerdict {
                        plan_id: &record.plan_id,
                        auto_approved_by: Some(rule),
                        needs_person: false,
                    }),
                    excluded: &status.excluded,
                    recorded,
                }
            });
        Facts {
            trigger: run.spec.trigger,
            approvals: &status.approvals,
            requirement,
            policy,
            at,
        }
    }
}
