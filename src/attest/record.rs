//! What a record says: an in-toto Statement whose subjects are the commit, the plan and
//! the objects written, and whose predicate ([`ApplyRecord`]) binds them to the run, its
//! source, the policy results and each approval.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AttestError, PREDICATE_TYPE, STATEMENT_TYPE};
use crate::api::provenance::{FluxArtifact, RunCommit};
use crate::api::syncrun::{ApprovalRecord, AuthorizationRecord};
use crate::fleet::plan::hex;

/// Objects listed one by one in a record (and as subjects); past it, the record keeps
/// their count and the digest over the whole sorted list only, so that a record of a
/// 10,000-node plan still fits one ConfigMap.
pub const MAX_LISTED_OBJECTS: usize = 1000;

/// An in-toto Statement v1 with fleetgate's predicate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: ApplyRecord,
}

/// An in-toto ResourceDescriptor, as subjects use it: a name and its digests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

/// One run's approval-to-apply record.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyRecord {
    /// When the controller signed it (its clock), RFC 3339.
    pub recorded_at: String,
    /// The controller that signed: its version and the cluster's name.
    pub controller: Controller,
    pub run: Run,
    pub repository: Repository,
    /// The commit planned, as the run recorded it: author, committer and, under
    /// `spec.verify`, the signature and tag that verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<RunCommit>,
    pub plan: PlanFacts,
    /// What authorized writing the plan (people or a policy), for which planId. Absent
    /// when the authorization was withdrawn after a first wave was written (a later
    /// wave refused at its check): the record then says what was written without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationRecord>,
    /// Distinct approvers the governing policies required.
    pub approvals_required: u32,
    /// Governance rules that matched the plan: `policy/rule: action`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_results: Vec<String>,
    /// An emergency override of the change windows: who, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_override: Option<String>,
    /// Every approval the run saw: user, groups, the planId it named, when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalRecord>,
    pub objects: Objects,
    /// What the cluster and the providers reported after the apply: objects that still
    /// differ from git or did not become Ready (bounded, as the run records it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift_after_apply: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Controller {
    pub version: String,
    pub cluster: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Run {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// How the run ended: Applied, Degraded, Failed, Superseded…
    pub phase: String,
    /// What started it: Schedule, Manual, Drift, Deletion, Rollback.
    pub trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// The run's last message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Repository {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The branch, tag or commit the repository follows, as `branch:main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The revision whose content was planned (for a rollback, the content restored).
    pub revision: String,
    /// The applied run whose content a rollback restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<String>,
    /// The Flux artifact the fleet file was read from (spec.sourceRef): its revision,
    /// its digest and Flux's verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flux: Option<FluxArtifact>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanFacts {
    pub id: String,
    /// SHA-256 of the plan as stored (`sha256:<hex>`).
    pub digest: String,
    pub actions: u32,
}

/// The objects the run wrote or deleted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Objects {
    /// How many actions were applied (written or deleted).
    pub applied: u32,
    /// Actions not applied: failed, skipped after a failure, or left out at a pause.
    pub failed: u32,
    pub skipped: u32,
    pub left_out: u32,
    /// `sha256:` over every applied object's line (see [`Object::line`]), sorted.
    pub digest: String,
    /// The applied objects, sorted, up to [`MAX_LISTED_OBJECTS`] (fewer when their
    /// names are long enough that the record would not fit its ConfigMap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listed: Vec<Object>,
    /// Why the specs written are not known (the stored plan was changed or deleted
    /// before the record was made): the objects then come from the run's status, without
    /// digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specs_unavailable: Option<String>,
}

/// One applied action.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Object {
    pub kind: String,
    pub name: String,
    /// Create, Update or Delete.
    pub operation: String,
    /// SHA-256 of the desired spec written, in fleetgate's canonical form (its typed
    /// serialization: fixed field order, sorted maps), as the plan holds it; its first 16
    /// hex digits are the spec digest fleetgate compares live objects with. Absent for a
    /// delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Object {
    /// `Kind/name Operation sha256-or--`: what the objects digest covers, one a line.
    pub fn line(&self) -> String {
        format!(
            "{}/{} {} {}\n",
            self.kind,
            self.name,
            self.operation,
            self.sha256.as_deref().unwrap_or("-")
        )
    }

    /// The SHA-256 of a spec's JSON, in hex.
    pub fn spec_sha256(spec_json: &[u8]) -> String {
        hex(&Sha256::digest(spec_json))
    }
}

impl Objects {
    /// The applied objects, their digest over all of them, and the first
    /// [`MAX_LISTED_OBJECTS`] listed.
    pub fn new(mut applied: Vec<Object>, failed: u32, skipped: u32, left_out: u32) -> Self {
        applied.sort();
        let digest = digest_of(&applied);
        let count = u32::try_from(applied.len()).unwrap_or(u32::MAX);
        applied.truncate(MAX_LISTED_OBJECTS);
        Self {
            applied: count,
            failed,
            skipped,
            left_out,
            digest,
            listed: applied,
            specs_unavailable: None,
        }
    }

    /// The objects as the run's status names them, when the specs written cannot be read
    /// back: `applied` counts them all, `listed` (without digests) is what the status
    /// kept, and `reason` says why.
    pub fn without_specs(listed: Vec<Object>, counts: [u32; 4], reason: String) -> Self {
        let [applied, failed, skipped, left_out] = counts;
        let mut objects = Self::new(listed, failed, skipped, left_out);
        objects.applied = applied.max(objects.applied);
        objects.specs_unavailable = Some(reason);
        objects
    }

    /// Whether every applied object is listed (then the digest can be checked here).
    pub fn complete(&self) -> bool {
        self.listed.len() == self.applied as usize
    }
}

fn digest_of(objects: &[Object]) -> String {
    let mut h = Sha256::new();
    for o in objects {
        h.update(o.line().as_bytes());
    }
    format!("sha256:{}", hex(&h.finalize()))
}

impl ApplyRecord {
    /// The statement: the commit (gitCommit), the plan (its stored digest) and each
    /// listed object that has a spec, as subjects.
    pub fn statement(&self) -> Statement {
        let mut subject = Vec::new();
        let repository = &self.repository;
        let flux_source = repository
            .flux
            .as_ref()
            .map(|f| format!("{}/{}/{}", f.kind, self.run.namespace, f.name));
        if crate::api::is_commit_id(&repository.revision) {
            let name = match (&repository.url, &flux_source) {
                (Some(url), _) => format!("git+{url}"),
                (None, Some(source)) => format!("flux:{source}"),
                (None, None) => format!("git+{}", repository.name),
            };
            subject.push(Subject {
                name,
                digest: BTreeMap::from([("gitCommit".to_owned(), repository.revision.clone())]),
            });
        }
        if let (Some(source), Some(hex)) = (
            &flux_source,
            repository
                .flux
                .as_ref()
                .and_then(|f| f.digest.strip_prefix("sha256:")),
        ) {
            subject.push(Subject {
                name: format!("flux-artifact:{source}"),
                digest: BTreeMap::from([("sha256".to_owned(), hex.to_owned())]),
            });
        }
        if let Some(hex) = self.plan.digest.strip_prefix("sha256:") {
            subject.push(Subject {
                name: format!("plan/{}/{}", self.run.namespace, self.plan.id),
                digest: BTreeMap::from([("sha256".to_owned(), hex.to_owned())]),
            });
        }
        for o in &self.objects.listed {
            if let Some(sha) = &o.sha256 {
                subject.push(Subject {
                    name: format!("{}/{}/{}", self.run.namespace, o.kind, o.name),
                    digest: BTreeMap::from([("sha256".to_owned(), sha.clone())]),
                });
            }
        }
        Statement {
            type_: STATEMENT_TYPE.to_owned(),
            subject,
            predicate_type: PREDICATE_TYPE.to_owned(),
            predicate: self.clone(),
        }
    }
}

impl Statement {
    /// The statement is the record of the run `namespace/name` with `uid`: a record
    /// verified with the right key may still be another run's.
    pub fn is_of(&self, namespace: &str, name: &str, uid: &str) -> Result<(), AttestError> {
        let run = &self.predicate.run;
        if (run.namespace.as_str(), run.name.as_str(), run.uid.as_str()) != (namespace, name, uid) {
            return Err(AttestError::OtherRun(format!(
                "it records {}/{} ({}), not {namespace}/{name} ({uid})",
                run.namespace, run.name, run.uid
            )));
        }
        Ok(())
    }

    /// The statement is of this predicate and its parts agree: the subjects are exactly
    /// those its predicate gives, the listed objects are sorted and, when complete,
    /// digest to the recorded digest, and the authorization names the plan recorded.
    /// A signed statement that fails this was made by something other than fleetgate.
    pub fn check(&self) -> Result<(), AttestError> {
        if self.type_ != STATEMENT_TYPE {
            return Err(AttestError::NotAStatement(format!(
                "_type is `{}`, not `{STATEMENT_TYPE}`",
                self.type_
            )));
        }
        if self.predicate_type != PREDICATE_TYPE {
            return Err(AttestError::NotAStatement(format!(
                "predicateType is `{}`, not `{PREDICATE_TYPE}`",
                self.predicate_type
            )));
        }
        let record = &self.predicate;
        if self.subject != record.statement().subject {
            return Err(AttestError::Inconsistent(
                "the subjects are not the commit, the plan and the listed objects of the predicate"
                    .into(),
            ));
        }
        let objects = &record.objects;
        if objects.listed.len() > MAX_LISTED_OBJECTS
            || objects.listed.len() > objects.applied as usize
        {
            return Err(AttestError::Inconsistent(format!(
                "{} objects listed of {} applied",
                objects.listed.len(),
                objects.applied
            )));
        }
        if !objects.listed.is_sorted() {
            return Err(AttestError::Inconsistent(
                "the listed objects are not sorted".into(),
            ));
        }
        if objects.complete() && digest_of(&objects.listed) != objects.digest {
            return Err(AttestError::Inconsistent(format!(
                "the listed objects digest to {}, the record says {}",
                digest_of(&objects.listed),
                objects.digest
            )));
        }
        if let Some(authorization) = &record.authorization
            && authorization.plan_id != record.plan.id
        {
            return Err(AttestError::Inconsistent(format!(
                "authorization is for {}, the plan is {}",
                authorization.plan_id, record.plan.id
            )));
        }
        Ok(())
    }
}
