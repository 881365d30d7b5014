//! The fleet objects as they are in the cluster: one watch-fed cache per kind, read by
//! planning and drift detection without a LIST per tick; and the objects as fleetgate
//! writes them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::error::{Error, Result};
use crate::api::{MANAGED_BY, MANAGED_BY_LABEL, REPOSITORY_LABEL, annotations};
use crate::fleet::object::Spec;
use crate::fleet::{LiveObject, ObjectKind};

pub const FLEET_GROUP: &str = "fleet.fleetgate.dev";
pub const FLEET_VERSION: &str = "v1alpha1";

pub fn api_resource(kind: ObjectKind) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        FLEET_GROUP,
        FLEET_VERSION,
        kind.as_str(),
    ))
}

pub fn api(client: &Client, namespace: &str, kind: ObjectKind) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &api_resource(kind))
}

/// Watch-fed caches of the five fleet kinds.
#[derive(Clone)]
pub struct FleetCache {
    stores: Vec<(ObjectKind, Store<DynamicObject>)>,
}

impl FleetCache {
    /// Starts one reflector per kind and scope (a namespace, or all of them with None);
    /// they run until the returned futures are dropped.
    pub fn start(
        client: &Client,
        scopes: &[Option<String>],
    ) -> (Self, Vec<futures::future::BoxFuture<'static, ()>>) {
        let mut stores = Vec::new();
        let mut tasks = Vec::new();
        for (kind, namespace) in ObjectKind::ALL
            .into_iter()
            .flat_map(|k| scopes.iter().map(move |ns| (k, ns.as_deref())))
        {
            let ar = api_resource(kind);
            let api: Api<DynamicObject> = match namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            let writer = reflector::store::Writer::new(ar.clone());
            let reader = writer.as_reader();
            let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
                .default_backoff()
                .for_each(|_| futures::future::ready(()));
            stores.push((kind, reader));
            tasks.push(futures::FutureExt::boxed(stream));
        }
        (Self { stores }, tasks)
    }

    pub async fn wait_until_ready(&self) -> Result<()> {
        for (kind, store) in &self.stores {
            tokio::time::timeout(Duration::from_secs(60), store.wait_until_ready())
                .await
                .map_err(|_| Error::CacheNotReady(kind.to_string()))?
                .map_err(|_| Error::CacheNotReady(kind.to_string()))?;
        }
        Ok(())
    }

    /// The object `name` of `kind` in `namespace` as the watch last delivered it.
    pub fn get(&self, kind: ObjectKind, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        let key = reflector::ObjectRef::new_with(name, api_resource(kind)).within(namespace);
        self.stores
            .iter()
            .filter(|(k, _)| *k == kind)
            .find_map(|(_, store)| store.get(&key))
    }

    /// Every fleet object in `namespace`, whoever manages it.
    pub fn live_objects(&self, namespace: &str) -> Vec<LiveObject> {
        let mut out = Vec::new();
        for (kind, store) in &self.stores {
            for obj in store.state() {
                if obj.namespace().as_deref() == Some(namespace)
                    && let Some(live) = to_live(*kind, &obj)
                {
                    out.push(live);
                }
            }
        }
        out
    }
}

/// Reads a cluster object as the planner sees it. An object whose spec cannot be read
/// (edited into an invalid shape) becomes None; the planner will then recreate it.
pub fn to_live(kind: ObjectKind, obj: &DynamicObject) -> Option<LiveObject> {
    let spec = Spec::from_json(kind, obj.data.get("spec").cloned().unwrap_or(Value::Null)).ok()?;
    Some(LiveObject {
        name: obj.name_any(),
        spec: Arc::new(spec),
        owner: obj.labels().get(REPOSITORY_LABEL).cloned(),
        prevent_destroy: obj
            .annotations()
            .get(annotations::PREVENT_DESTROY)
            .is_some_and(|v| v == "true"),
    })
}

/// The object fleetgate applies for a desired spec: labels and spec, nothing else, so
/// that server-side apply owns exactly these fields.
pub fn desired_object(
    kind: ObjectKind,
    name: &str,
    namespace: &str,
    repository: &str,
    spec: &Spec,
    resource_version: Option<&str>,
) -> Value {
    let labels = BTreeMap::from([
        (REPOSITORY_LABEL, repository),
        (MANAGED_BY_LABEL, MANAGED_BY),
    ]);
    let mut metadata = json!({"name": name, "namespace": namespace, "labels": labels});
    if let Some(rv) = resource_version {
        // With server-side apply, a resourceVersion makes the write conditional.
        metadata["resourceVersion"] = json!(rv);
    }
    json!({
        "apiVersion": format!("{FLEET_GROUP}/{FLEET_VERSION}"),
        "kind": kind.as_str(),
        "metadata": metadata,
        "spec": spec,
    })
}
