//! Signed approval-to-apply records ([`crate::attest`]), written when an authorized run
//! ends: [`due`] and [`facts`] decide (pure); [`sign_and_keep`] reads the key and the
//! stored plan, signs, and keeps the envelope in an immutable ConfigMap in the
//! controller's namespace.
//!
//! Why there: tenants cannot read or write it (the chart grants them nothing in the
//! controller's namespace), no repository or run owns it (so neither the history limit
//! nor deleting a repository removes it), and every cluster has it. A ConfigMap holds
//! 1 MiB; a record is bounded below that (objects past 1,000 are covered by a digest).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};

use super::context::{AttestationSettings, Context};
use super::error::{Error, Result};
use super::planstore;
use crate::api::SyncRun;
use crate::api::syncrun::{ActionState, AttestationRef, SyncRunStatus};
use crate::attest::record::{Controller, Object, Objects, PlanFacts, Repository, Run};
use crate::attest::{ApplyRecord, PrivateKey};
use crate::fleet::plan::{Operation, Plan};

/// The key of the signing key's PEM in its Secret.
pub const KEY_ENTRY: &str = "key.pem";
/// The key of the envelope's JSON in a record's ConfigMap.
pub const ENVELOPE_ENTRY: &str = "envelope.json";
/// Labels every record's ConfigMap: `kubectl fleet attest export` lists by it.
pub const RECORD_LABEL: &str = "attestation.fleetgate.dev/record";
/// The run's namespace, repository and name, as labels (when they are valid label
/// values) and always as annotations.
pub const NAMESPACE_KEY: &str = "attestation.fleetgate.dev/namespace";
pub const REPOSITORY_KEY: &str = "attestation.fleetgate.dev/repository";
pub const RUN_KEY: &str = "attestation.fleetgate.dev/run";
/// The id of the key that signed.
pub const KEY_ID_KEY: &str = "attestation.fleetgate.dev/key-id";

/// Whether `status` calls for a record now: the run is over, has none yet, and was
/// authorized to write (by people or a policy) or wrote something (an authorization
/// withdrawn after a first wave is cleared from status, and the wave stays written). A
/// run never authorized wrote nothing, and has nothing to attest.
pub fn due(status: &SyncRunStatus) -> bool {
    status.attestation.is_none()
        && (status.authorization.is_some() || status.wrote_any())
        && status.phase.is_some_and(|p| p.is_finished())
}

/// The name of a run's record: one per run, whatever retries or replicas do.
pub fn config_map_name(run: &SyncRun) -> String {
    format!("attestation-{}", run.uid().unwrap_or_default())
}

/// What the record of `run` says: the run, its source and commit, the plan, what
/// authorized it, every approval, and each action it applied with the SHA-256 of the
/// spec it wrote. `plan` is the stored plan, or why it could not be read (changed or
/// deleted in the tenant's namespace since): the record then names the objects the
/// status holds, without digests, and says why, rather than not being made.
pub fn facts(
    run: &SyncRun,
    status: &SyncRunStatus,
    plan: std::result::Result<&Plan, String>,
    plan_digest: &str,
    cluster: &str,
    now: &Time,
) -> ApplyRecord {
    let (plan_id, actions, objects) = match plan {
        Ok(plan) => (
            plan.plan_id.clone(),
            plan.actions.len(),
            applied_objects(plan, &status.recorded_states()),
        ),
        Err(reason) => (
            status.plan_id.clone().unwrap_or_default(),
            status.recorded_states().len(),
            objects_of_status(status, reason),
        ),
    };
    let source = status.source.clone().unwrap_or_default();
    let git_ref = source.git_ref.as_ref().and_then(|r| {
        r.branch
            .as_ref()
            .map(|b| format!("branch:{b}"))
            .or_else(|| r.tag.as_ref().map(|t| format!("tag:{t}")))
            .or_else(|| r.commit.as_ref().map(|c| format!("commit:{c}")))
    });
    let rfc3339 = |t: &Option<Time>| t.as_ref().map(|t| t.0.to_string());
    ApplyRecord {
        recorded_at: now.0.to_string(),
        controller: Controller {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            cluster: cluster.to_owned(),
        },
        run: Run {
            namespace: run.namespace().unwrap_or_default(),
            name: run.name_any(),
            uid: run.uid().unwrap_or_default(),
            phase: status
                .phase
                .map(|p| p.as_str())
                .unwrap_or_default()
                .to_owned(),
            trigger: run.spec.trigger.as_str().to_owned(),
            started_at: rfc3339(&status.started_at),
            completed_at: rfc3339(&status.completed_at),
            message: status.message.clone(),
        },
        repository: Repository {
            name: run.spec.repository.clone(),
            url: source.url.clone(),
            git_ref,
            path: source.path.clone(),
            revision: if source.revision.is_empty() {
                run.spec.revision.clone()
            } else {
                source.revision.clone()
            },
            restores: source.restores.clone(),
            flux: source.flux.clone(),
        },
        commit: source.commit.clone(),
        plan: PlanFacts {
            id: plan_id,
            digest: plan_digest.to_owned(),
            actions: u32::try_from(actions).unwrap_or(u32::MAX),
        },
        authorization: status.authorization.clone(),
        approvals_required: status.approvals_required.unwrap_or(1),
        policy_results: status.policy_results.clone(),
        window_override: status.window_override.clone(),
        approvals: status.approvals.clone(),
        objects,
        drift_after_apply: status.drift_after_apply.clone(),
    }
}

/// The plan's actions the run applied, with the digests of the specs written.
fn applied_objects(plan: &Plan, states: &[ActionState]) -> Objects {
    let mut applied = Vec::new();
    let (mut failed, mut skipped, mut left_out) = (0, 0, 0);
    for (action, state) in plan.actions.iter().zip(states) {
        match state {
            ActionState::Applied => applied.push(Object {
                kind: action.kind.to_string(),
                name: action.name.clone(),
                operation: action.operation.word().to_owned(),
                sha256: action
                    .spec
                    .as_deref()
                    .filter(|_| action.operation != Operation::Delete)
                    .map(|spec| {
                        Object::spec_sha256(
                            &serde_json::to_vec(spec).expect("specs always serialize"),
                        )
                    }),
            }),
            ActionState::Failed => failed += 1,
            ActionState::Skipped => skipped += 1,
            ActionState::LeftOut => left_out += 1,
            ActionState::Pending => {}
        }
    }
    Objects::new(applied, failed, skipped, left_out)
}

/// The applied objects the run's status names (all for small plans; the failed and
/// skipped ones first for large ones), when the plan cannot be read.
fn objects_of_status(status: &SyncRunStatus, reason: String) -> Objects {
    let listed = status
        .actions
        .iter()
        .filter(|a| a.state == ActionState::Applied)
        .map(|a| Object {
            kind: a.kind.clone(),
            name: a.name.clone(),
            operation: a.operation.clone(),
            sha256: None,
        })
        .collect();
    let states = status.recorded_states();
    let count = |wanted: ActionState| {
        u32::try_from(states.iter().filter(|s| **s == wanted).count()).unwrap_or(u32::MAX)
    };
    Objects::without_specs(
        listed,
        [
            count(ActionState::Applied),
            count(ActionState::Failed),
            count(ActionState::Skipped),
            count(ActionState::LeftOut),
        ],
        reason,
    )
}

/// Signs and keeps the record of `run` if one is due, and says where it is. A record
/// already kept (signed by an earlier reconcile whose status write was lost, or by
/// another replica) is referenced once it checks out, never signed again.
pub async fn sign_and_keep(
    ctx: &Context,
    run: &SyncRun,
    status: &SyncRunStatus,
) -> Result<Option<AttestationRef>> {
    let Some(settings) = &ctx.settings.attestation else {
        return Ok(None);
    };
    if !due(status) {
        return Ok(None);
    }
    let records: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &settings.namespace);
    let name = config_map_name(run);
    let key = signing_key(ctx, settings).await?;
    let attest_err = |source| Error::Attestation {
        run: run.name_any(),
        source,
    };
    if let Some(kept) = records.get_opt(&name).await? {
        return adopted(run, settings, &key, &kept)
            .map(Some)
            .map_err(attest_err);
    }
    // The stored plan lives in the tenant's namespace: changed or deleted since the run
    // read it, the record says so instead of not being made.
    let plan = match &status.full_plan {
        Some(at) => planstore::load_plan(&ctx.client, run, at)
            .await
            .map_err(|e| format!("the stored plan cannot be read: {e}")),
        None => Err("the run recorded no stored plan".to_owned()),
    };
    let digest = status
        .full_plan
        .as_ref()
        .and_then(|p| p.digest.clone())
        .unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let cluster = &ctx.settings.cluster_name;
    let record = facts(
        run,
        status,
        plan.as_ref().map_err(Clone::clone),
        &digest,
        cluster,
        &now,
    );
    let envelope = crate::attest::sign(&record, &key).map_err(attest_err)?;
    let envelope = String::from_utf8(envelope).expect("JSON is UTF-8");
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(settings.namespace.clone()),
            labels: Some(labels(run)),
            annotations: Some(BTreeMap::from([
                (NAMESPACE_KEY.to_owned(), record.run.namespace.clone()),
                (REPOSITORY_KEY.to_owned(), record.repository.name.clone()),
                (RUN_KEY.to_owned(), record.run.name.clone()),
                (KEY_ID_KEY.to_owned(), key.keyid().to_owned()),
            ])),
            ..Default::default()
        },
        immutable: Some(true),
        data: Some(BTreeMap::from([(ENVELOPE_ENTRY.to_owned(), envelope)])),
        ..Default::default()
    };
    match records.create(&PostParams::default(), &config_map).await {
        Ok(kept) => Ok(Some(reference(settings, &kept))),
        // Another replica (a leader change) kept one first: it stands once checked.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let kept = records.get(&name).await?;
            adopted(run, settings, &key, &kept)
                .map(Some)
                .map_err(attest_err)
        }
        Err(e) => Err(e.into()),
    }
}

/// A record found under this run's name is referenced only if it verifies with the
/// current key and is this run's: whoever else may write ConfigMaps in the controller's
/// namespace cannot make a run point to another run's record, or to a forged one.
fn adopted(
    run: &SyncRun,
    settings: &AttestationSettings,
    key: &PrivateKey,
    kept: &ConfigMap,
) -> std::result::Result<AttestationRef, crate::attest::AttestError> {
    let verified = crate::attest::verify(envelope_of(kept), &key.public())?;
    record_of(&verified.statement, run)?;
    Ok(reference(settings, kept))
}

/// The envelope a record's ConfigMap keeps (empty when it keeps none).
pub fn envelope_of(kept: &ConfigMap) -> &[u8] {
    kept.data
        .as_ref()
        .and_then(|d| d.get(ENVELOPE_ENTRY))
        .map(|s| s.trim().as_bytes())
        .unwrap_or_default()
}

/// The statement is the record of `run` (its namespace, name and uid): a record that
/// verifies with the right key may still be another run's.
pub fn record_of(
    statement: &crate::attest::Statement,
    run: &SyncRun,
) -> std::result::Result<(), crate::attest::AttestError> {
    statement.is_of(
        &run.namespace().unwrap_or_default(),
        &run.name_any(),
        &run.uid().unwrap_or_default(),
    )
}

/// Where a kept record is, and the digest of its envelope as stored.
fn reference(settings: &AttestationSettings, kept: &ConfigMap) -> AttestationRef {
    let envelope = envelope_of(kept);
    AttestationRef {
        namespace: settings.namespace.clone(),
        config_map: kept.name_any(),
        key_id: kept
            .annotations()
            .get(KEY_ID_KEY)
            .cloned()
            .unwrap_or_default(),
        digest: planstore::digest(envelope),
    }
}

/// The record label, and the run's namespace, repository and name where they are valid
/// label values (for `kubectl get -l`); the annotations carry them whatever their length.
fn labels(run: &SyncRun) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(RECORD_LABEL.to_owned(), "true".to_owned())]);
    for (key, value) in [
        (NAMESPACE_KEY, run.namespace().unwrap_or_default()),
        (REPOSITORY_KEY, run.spec.repository.clone()),
        (RUN_KEY, run.name_any()),
    ] {
        if is_label_value(&value) {
            labels.insert(key.to_owned(), value);
        }
    }
    labels
}

fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The signing key, read from its Secret at each record: a rotated key signs the next
/// record, with no restart.
async fn signing_key(ctx: &Context, settings: &AttestationSettings) -> Result<PrivateKey> {
    let secret_err = |message: String| Error::Secret {
        name: format!("{}/{}", settings.namespace, settings.key_secret),
        message,
    };
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &settings.namespace)
        .get_opt(&settings.key_secret)
        .await?
        .ok_or_else(|| secret_err("not found: records cannot be signed".into()))?;
    let pem = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEY_ENTRY))
        .ok_or_else(|| secret_err(format!("has no `{KEY_ENTRY}`")))?;
    let pem = std::str::from_utf8(&pem.0)
        .map_err(|_| secret_err(format!("`{KEY_ENTRY}` is not PEM text")))?;
    PrivateKey::from_pem(pem).map_err(|e| secret_err(format!("`{KEY_ENTRY}`: {e}")))
}

#[cfg(test)]
mod tests;
