//! What a SyncRun keeps beside its status: the full plan, and the revision's whole
//! desired state. Each is stored gzip-compressed in ConfigMaps the run owns, split into
//! chunks so that any fleet fits under the 1 MiB object limit.

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
        let names = run
            .status
            .as_ref()
            .map(|s| s.desired_state.clone())
            .unwrap_or_default();
        let desired: Arc<Vec<FleetObject>> = Arc::new(load(client, run, &names).await?);
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
    Ok(FullPlanRef {
        config_maps: save(client, run, "plan", plan).await?,
        actions: plan.actions.len() as u32,
    })
}

pub async fn load_plan(client: &kube::Client, run: &SyncRun, at: &FullPlanRef) -> Result<Plan> {
    load(client, run, &at.config_maps).await
}

/// Writes `value` as `<run>-<what>-<chunk>` ConfigMaps; returns their names in order.
pub async fn save<T: Serialize>(
    client: &kube::Client,
    run: &SyncRun,
    what: &str,
    value: &T,
) -> Result<Vec<String>> {
    let ns = run.namespace().unwrap_or_default();
    let json = serde_json::to_vec(value).map_err(|e| store_err(run, e.to_string()))?;
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
    Ok(names)
}

/// Reads back what [`save`] wrote to `names`.
pub async fn load<T: DeserializeOwned>(
    client: &kube::Client,
    run: &SyncRun,
    names: &[String],
) -> Result<T> {
    let ns = run.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut compressed = Vec::new();
    for name in names {
        let cm = api.get(name).await?;
        let chunk = cm
            .binary_data
            .and_then(|mut d| d.remove(KEY))
            .ok_or_else(|| store_err(run, format!("ConfigMap {name} has no {KEY}")))?;
        compressed.extend_from_slice(&chunk.0);
    }
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut json)
        .map_err(|e| store_err(run, format!("corrupt data: {e}")))?;
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
