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

/// Whether `status` calls for a record now: the run was authorized to write (by people
/// or a policy), it is over, and it has none yet. A run never authorized wrote nothing,
/// and has nothing to attest.
pub fn due(status: &SyncRunStatus) -> bool {
    status.attestation.is_none()
        && status.authorization.is_some()
        && status.phase.is_some_and(|p| p.is_finished())
}

/// The name of a run's record: one per run, whatever retries or replicas do.
pub fn config_map_name(run: &SyncRun) -> String {
    format!("attestation-{}", run.uid().unwrap_or_default())
}

/// What the record of `run` says: the run, its source and commit, the plan, what
/// authorized it, every approval, and each action it applied with the SHA-256 of the
/// spec it wrote.
pub fn facts(
    run: &SyncRun,
    status: &SyncRunStatus,
    plan: &Plan,
    plan_digest: &str,
    cluster: &str,
    now: &Time,
) -> Option<ApplyRecord> {
    let authorization = status.authorization.clone()?;
    let states = status.recorded_states();
    let mut applied = Vec::new();
    let (mut failed, mut skipped, mut left_out) = (0, 0, 0);
    for (action, state) in plan.actions.iter().zip(&states) {
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
    let source = status.source.clone().unwrap_or_default();
    let git_ref = source.git_ref.as_ref().and_then(|r| {
        r.branch
            .as_ref()
            .map(|b| format!("branch:{b}"))
            .or_else(|| r.tag.as_ref().map(|t| format!("tag:{t}")))
            .or_else(|| r.commit.as_ref().map(|c| format!("commit:{c}")))
    });
    let rfc3339 = |t: &Option<Time>| t.as_ref().map(|t| t.0.to_string());
    Some(ApplyRecord {
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
        },
        commit: source.commit.clone(),
        plan: PlanFacts {
            id: plan.plan_id.clone(),
            digest: plan_digest.to_owned(),
            actions: u32::try_from(plan.actions.len()).unwrap_or(u32::MAX),
        },
        authorization,
        approvals_required: status.approvals_required.unwrap_or(1),
        policy_results: status.policy_results.clone(),
        window_override: status.window_override.clone(),
        approvals: status.approvals.clone(),
        objects: Objects::new(applied, failed, skipped, left_out),
    })
}

/// Signs and keeps the record of `run` if one is due, and says where it is. A record
/// already kept (signed by an earlier reconcile whose status write was lost) is
/// referenced, never signed again.
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
    let Some(full_plan) = &status.full_plan else {
        return Ok(None);
    };
    let records: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &settings.namespace);
    let name = config_map_name(run);
    if let Some(kept) = records.get_opt(&name).await? {
        return Ok(Some(reference(settings, &kept)));
    }
    let key = signing_key(ctx, settings).await?;
    let plan = planstore::load_plan(&ctx.client, run, full_plan).await?;
    let digest = full_plan.digest.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let attest_err = |source| Error::Attestation {
        run: run.name_any(),
        source,
    };
    let record = facts(
        run,
        status,
        &plan,
        &digest,
        &ctx.settings.cluster_name,
        &now,
    )
    .ok_or_else(|| {
        attest_err(crate::attest::AttestError::Malformed(
            "no authorization".into(),
        ))
    })?;
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
    let kept = match records.create(&PostParams::default(), &config_map).await {
        Ok(kept) => kept,
        // Another replica (a leader change) kept it first: that one stands.
        Err(kube::Error::Api(e)) if e.code == 409 => records.get(&name).await?,
        Err(e) => return Err(e.into()),
    };
    Ok(Some(reference(settings, &kept)))
}

/// Where a kept record is, and the digest of its envelope as stored.
fn reference(settings: &AttestationSettings, kept: &ConfigMap) -> AttestationRef {
    let envelope = kept
        .data
        .as_ref()
        .and_then(|d| d.get(ENVELOPE_ENTRY))
        .map(String::as_bytes)
        .unwrap_or_default();
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
