//! What a SyncRun keeps beside its status: the full plan, and the revision's whole
//! desired state. Each is stored gzip-compressed in ConfigMaps the run owns, split into
//! chunks so that any fleet fits under the 1 MiB object limit.
//!
//! Tenants can write ConfigMaps in their own namespace, so what is read back is never
//! trusted: [`save`] returns a SHA-256 of the content, recorded in the run's status
//! (which only the controller writes), and [`load`] refuses anything else
//! ([`Error::PlanTampered`]). Decompression is bounded, so a forged chunk cannot exhaust
//! memory either.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{Error, Result};
use crate::api::{FIELD_MANAGER, REPOSITORY_LABEL, SyncRun, syncrun::FullPlanRef};
use crate::fleet::{FleetObject, Plan};

/// Label tying a ConfigMap to the SyncRun whose data it holds.
pub const SYNCRUN_LABEL: &str = "gitops.fleetgate.dev/syncrun";
/// Label saying what the ConfigMap holds: `plan` or `desired`.
const CONTENT_LABEL: &str = "gitops.fleetgate.dev/content";
const KEY: &str = "data.json.gz";
/// Well below the 1 MiB object limit, leaving room for metadata.
const CHUNK_BYTES: usize = 900 * 1024;
/// At most this much JSON is read back from one store, whatever the chunks decompress to.
const MAX_JSON_BYTES: u64 = 512 * 1024 * 1024;

/// ConfigMap names in chunk order, and the SHA-256 of the stored JSON.
pub struct Saved {
    pub names: Vec<String>,
    pub digest: String,
}

/// The digest recorded for stored content: `sha256:` and the hex of its SHA-256.
pub fn digest(json: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", crate::fleet::plan::hex(&Sha256::digest(json)))
}

fn tampered(run: &SyncRun, message: impl Into<String>) -> Error {
    Error::PlanTampered {
        run: run.name_any(),
        message: message.into(),
    }
}

fn store_err(run: &SyncRun, message: impl Into<String>) -> Error {
    Error::PlanStore {
        run: run.name_any(),
        message: message.into(),
    }
}

/// A run's name and the desired state it applied.
type Baseline = (String, Arc<Vec<FleetObject>>);

/// The desired state of each repository's last applied run, by `namespace/repository`.
#[derive(Default)]
pub struct DesiredCache {
    by_repository: Mutex<HashMap<String, Baseline>>,
}

impl DesiredCache {
    pub async fn get(
        &self,
        client: &kube::Client,
        key: &str,
        run: &SyncRun,
    ) -> Result<Arc<Vec<FleetObject>>> {
        if let Some((name, desired)) = self
            .by_repository
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            && *name == run.name_any()
        {
            return Ok(desired.clone());
        }
        let status = run.status.clone().unwrap_or_default();
        let desired: Arc<Vec<FleetObject>> = Arc::new(
            load(
                client,
                run,
                &status.desired_state,
                status.desired_state_digest.as_deref(),
            )
            .await?,
        );
        self.by_repository
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), (run.name_any(), desired.clone()));
        Ok(desired)
    }

    /// Drops what is kept for a repository that no longer exists.
    pub fn forget(&self, key: &str) {
        self.by_repository
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Writes `plan` into ConfigMaps owned by `run` and returns where it is.
pub async fn save_plan(client: &kube::Client, run: &SyncRun, plan: &Plan) -> Result<FullPlanRef> {
    let saved = save(client, run, "plan", plan).await?;
    Ok(FullPlanRef {
        config_maps: saved.names,
        actions: plan.actions.len() as u32,
        digest: Some(saved.digest),
    })
}

/// Reads the plan back, refusing it unless it is byte for byte what was stored.
pub async fn load_plan(client: &kube::Client, run: &SyncRun, at: &FullPlanRef) -> Result<Plan> {
    load(client, run, &at.config_maps, at.digest.as_deref()).await
}

/// Writes `value` as `<run>-<what>-<chunk>` ConfigMaps; returns their names in order and
/// the digest to record.
pub async fn save<T: Serialize>(
    client: &kube::Client,
    run: &SyncRun,
    what: &str,
    value: &T,
) -> Result<Saved> {
    let ns = run.namespace().unwrap_or_default();
    let json = serde_json::to_vec(value).map_err(|e| store_err(run, e.to_string()))?;
    let digest = digest(&json);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&json)
        .map_err(|e| store_err(run, e.to_string()))?;
    let compressed = gz.finish().map_err(|e| store_err(run, e.to_string()))?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let owner = run
        .controller_owner_ref(&())
        .ok_or_else(|| store_err(run, "the SyncRun has no name or uid"))?;
    let mut names = Vec::new();
    for (i, chunk) in compressed.chunks(CHUNK_BYTES).enumerate() {
        let name = format!("{}-{what}-{i}", run.name_any());
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                owner_references: Some(vec![owner.clone()]),
                labels: Some(BTreeMap::from([
                    (SYNCRUN_LABEL.to_owned(), run.name_any()),
                    (CONTENT_LABEL.to_owned(), what.to_owned()),
                    (REPOSITORY_LABEL.to_owned(), run.spec.repository.clone()),
                ])),
                ..Default::default()
            },
            binary_data: Some(BTreeMap::from([(
                KEY.to_owned(),
                ByteString(chunk.to_vec()),
            )])),
            ..Default::default()
        };
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await?;
        names.push(name);
    }
    // A re-plan may need fewer chunks than before.
    for stale in list(client, run, Some(what)).await? {
        if !names.contains(&stale) {
            api.delete(&stale, &DeleteParams::default()).await?;
        }
    }
    Ok(Saved { names, digest })
}

/// Reads back what [`save`] wrote to `names`, and checks it against the digest that was
/// recorded. Content without a recorded digest (stored before digests were recorded) is
/// refused too: it cannot be told apart from a forgery.
pub async fn load<T: DeserializeOwned>(
    client: &kube::Client,
    run: &SyncRun,
    names: &[String],
    expected: Option<&str>,
) -> Result<T> {
    let ns = run.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let Some(expected) = expected else {
        return Err(tampered(run, "no digest of the stored content is recorded"));
    };
    let mut compressed = Vec::new();
    for name in names {
        let cm = match api.get(name).await {
            Ok(cm) => cm,
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                return Err(tampered(run, format!("ConfigMap {name} was deleted")));
            }
            Err(e) => return Err(e.into()),
        };
        let chunk = cm
            .binary_data
            .and_then(|mut d| d.remove(KEY))
            .ok_or_else(|| tampered(run, format!("ConfigMap {name} has no {KEY}")))?;
        compressed.extend_from_slice(&chunk.0);
    }
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .take(MAX_JSON_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| tampered(run, format!("the stored content does not decompress: {e}")))?;
    if json.len() as u64 > MAX_JSON_BYTES {
        return Err(tampered(
            run,
            format!("the stored content decompresses to more than {MAX_JSON_BYTES} bytes"),
        ));
    }
    let found = digest(&json);
    if found != expected {
        return Err(tampered(
            run,
            format!("the stored content has digest {found}, but {expected} was recorded"),
        ));
    }
    serde_json::from_slice(&json).map_err(|e| store_err(run, format!("corrupt data: {e}")))
}

async fn list(client: &kube::Client, run: &SyncRun, what: Option<&str>) -> Result<Vec<String>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &run.namespace().unwrap_or_default());
    let mut selector = format!("{SYNCRUN_LABEL}={}", run.name_any());
    if let Some(what) = what {
        selector.push_str(&format!(",{CONTENT_LABEL}={what}"));
    }
    Ok(api
        .list_metadata(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .map(|m| m.name_any())
        .collect())
}

/// Deletes a run's ConfigMaps. Garbage collection would do it through the owner
/// reference, but it is not relied on.
pub async fn delete(client: &kube::Client, run: &SyncRun) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &run.namespace().unwrap_or_default());
    for name in list(client, run, None).await? {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
