//! The fleet objects as they are in the cluster: one watch-fed cache per kind, read by
//! planning and drift detection without a LIST per tick; and the objects as fleetgate
//! writes them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use std::borrow::Cow;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, DynamicResourceScope, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::error::{Error, Result};
use crate::api::fleet::status::{self, Health, ProviderReason};
use crate::api::{GITOPS_GROUP, MANAGED_BY, MANAGED_BY_LABEL, REPOSITORY_LABEL, annotations};
use crate::fleet::object::Spec;
use crate::fleet::plan::spec_digest;
use crate::fleet::{LiveObject, ObjectKind, ObjectRef};

pub const FLEET_GROUP: &str = "fleet.fleetgate.dev";
pub const FLEET_VERSION: &str = "v1alpha1";

pub fn api_resource(kind: ObjectKind) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        FLEET_GROUP,
        FLEET_VERSION,
        kind.as_str(),
    ))
}

/// Reads (and patches and deletes) the objects of `kind` in `namespace`, trimmed as the
/// caches keep them.
pub fn api(client: &Client, namespace: &str, kind: ObjectKind) -> Api<CachedObject> {
    Api::namespaced_with(client.clone(), namespace, &api_resource(kind))
}

/// A fleet object as the controller keeps it: its metadata without `managedFields` and
/// with only fleetgate's own annotations, its spec read once into the planner's form and
/// that spec's digest. The watches deliver every object of the five kinds into memory;
/// kept as JSON with `managedFields` an object took about 12 KiB, which capped one
/// controller near 20,000 nodes. Reads (watches, GET, LIST) deserialize straight into it.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(try_from = "RawObject")]
pub struct CachedObject {
    pub metadata: ObjectMeta,
    /// None when the spec cannot be read (edited into an invalid shape).
    pub spec: Option<Arc<Spec>>,
    /// [`spec_digest`] of `spec`, computed once when the object arrives.
    pub digest: Option<String>,
    /// What its provider reports, read against `metadata.generation` when the object
    /// arrives (the status itself is not kept).
    pub health: Health,
    /// The reason of the provider's Ready condition, when it is one of the contract's.
    pub reason: Option<ProviderReason>,
}

/// An object as the API server sends it, before it is trimmed.
#[derive(serde::Deserialize)]
struct RawObject {
    kind: String,
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Value,
    #[serde(default)]
    status: Value,
}

/// The part of a provider's status that health is read from.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ReportedStatus {
    #[serde(default)]
    observed_generation: Option<i64>,
    #[serde(default)]
    conditions: Vec<Condition>,
}

/// The health a status reports for `generation`. A status that cannot be read (which
/// the CRD's schema should prevent) says nothing current: it is read as stale, never as
/// Ready, and it does not make the whole object unreadable to the watch.
fn reported_health(generation: Option<i64>, status: Value) -> (Health, Option<ProviderReason>) {
    if status.is_null() {
        return (Health::Unreported, None);
    }
    let Ok(status) = serde_json::from_value::<ReportedStatus>(status) else {
        return (Health::Stale, None);
    };
    let health = status::health(generation, status.observed_generation, &status.conditions);
    let reason = crate::api::condition(&status.conditions, "Ready")
        .and_then(|c| ProviderReason::parse(&c.reason));
    (health, reason)
}

impl TryFrom<RawObject> for CachedObject {
    type Error = String;

    fn try_from(raw: RawObject) -> std::result::Result<Self, String> {
        let kind: ObjectKind = raw.kind.parse()?;
        let mut metadata = raw.metadata;
        metadata.managed_fields = None;
        // Other tools' annotations (kubectl's last-applied copy of the object, say) can be
        // as large as the object itself and are never read here.
        if let Some(annotations) = metadata.annotations.as_mut() {
            annotations.retain(|key, _| key.starts_with(GITOPS_GROUP));
        }
        let spec = Spec::from_json(kind, raw.spec).ok().map(Arc::new);
        let digest = spec.as_deref().map(spec_digest);
        let (health, reason) = reported_health(metadata.generation, raw.status);
        Ok(Self {
            metadata,
            spec,
            digest,
            health,
            reason,
        })
    }
}

impl Resource for CachedObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The changes the watch of one kind delivers: each object after the cache took it in.
pub type Changes = BoxStream<'static, std::result::Result<CachedObject, watcher::Error>>;

/// A watch stream without its errors, for a controller's triggers. The watch has its own
/// backoff and logs each error; passed on, an error would also pause the controller's
/// whole trigger stream (kube-runtime's trigger backoff, up to 30 s), and one stale 403
/// per watch, surfacing one pause after another, kept a leader un-Ready for minutes
/// after its Role came back.
pub fn without_errors<T, S>(
    watch: S,
) -> impl futures::Stream<Item = std::result::Result<T, watcher::Error>>
where
    S: futures::Stream<Item = std::result::Result<T, watcher::Error>>,
{
    watch.filter(|item| futures::future::ready(item.is_ok()))
}

/// Creates objects of `kind` in `namespace` (a create sends the whole object).
pub fn create_api(client: &Client, namespace: &str, kind: ObjectKind) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &api_resource(kind))
}

/// Watch-fed caches of the five fleet kinds.
#[derive(Clone)]
pub struct FleetCache {
    stores: Vec<(ObjectKind, Store<CachedObject>)>,
}

impl FleetCache {
    /// One reflector per kind and scope (a namespace, or all of them with None). The
    /// caches fill only while the returned streams (for each scope, in the order of
    /// `scopes`, one per kind) are polled: the repository controllers poll them as their
    /// triggers, so that each object crosses the wire once, for the cache and the trigger
    /// alike.
    pub fn start(
        client: &Client,
        scopes: &[Option<String>],
    ) -> (Self, Vec<Vec<(ObjectKind, Changes)>>) {
        let mut stores = Vec::new();
        let mut changes = Vec::new();
        for namespace in scopes {
            let mut scope = Vec::new();
            for kind in ObjectKind::ALL {
                let ar = api_resource(kind);
                let api: Api<CachedObject> = match namespace {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                    None => Api::all_with(client.clone(), &ar),
                };
                let writer = reflector::store::Writer::new(ar.clone());
                stores.push((kind, writer.as_reader()));
                scope.push((
                    kind,
                    without_errors(
                        reflector::reflector(writer, watcher(api, watcher::Config::default()))
                            .default_backoff()
                            .touched_objects(),
                    )
                    .boxed(),
                ));
            }
            changes.push(scope);
        }
        (Self { stores }, changes)
    }

    /// A cache holding `objects` and nothing else, fed as a watch would: for tests and
    /// benches that judge what a cache shows without a cluster.
    pub fn holding(objects: impl IntoIterator<Item = (ObjectKind, CachedObject)>) -> Self {
        let mut writers: Vec<(ObjectKind, reflector::store::Writer<CachedObject>)> =
            ObjectKind::ALL
                .into_iter()
                .map(|kind| (kind, reflector::store::Writer::new(api_resource(kind))))
                .collect();
        for (kind, obj) in objects {
            if let Some((_, w)) = writers.iter_mut().find(|(k, _)| *k == kind) {
                w.apply_watcher_event(&watcher::Event::Apply(obj));
            }
        }
        Self {
            stores: writers
                .into_iter()
                .map(|(k, w)| (k, w.as_reader()))
                .collect(),
        }
    }

    /// Each kind's store, for a caller that waits on them without a deadline (readiness
    /// waits as long as the watches take; a reconcile gives up after a minute).
    pub fn stores(&self) -> impl Iterator<Item = &Store<CachedObject>> {
        self.stores.iter().map(|(_, store)| store)
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
    pub fn get(&self, kind: ObjectKind, namespace: &str, name: &str) -> Option<Arc<CachedObject>> {
        let key = reflector::ObjectRef::new_with(name, api_resource(kind)).within(namespace);
        self.stores
            .iter()
            .filter(|(k, _)| *k == kind)
            .find_map(|(_, store)| store.get(&key))
    }

    /// The objects of `repository` in `namespace` (by its label) whose provider reports
    /// what `wanted` picks, each with what it reports. Only those picked are named (a
    /// look at a large fleet picks few).
    pub fn health_of(
        &self,
        namespace: &str,
        repository: &str,
        wanted: impl Fn(Health, Option<ProviderReason>) -> bool,
    ) -> Vec<(ObjectRef, Health, Option<ProviderReason>)> {
        let mut out = Vec::new();
        for (kind, store) in &self.stores {
            for obj in store.state() {
                if wanted(obj.health, obj.reason)
                    && obj.namespace().as_deref() == Some(namespace)
                    && obj.labels().get(REPOSITORY_LABEL).map(String::as_str) == Some(repository)
                {
                    out.push((
                        ObjectRef::new(*kind, obj.name_any()),
                        obj.health,
                        obj.reason,
                    ));
                }
            }
        }
        out
    }

    /// Every fleet object in `namespace`, whoever manages it.
    pub fn live_objects(&self, namespace: &str) -> Vec<LiveObject> {
        let mut out = Vec::new();
        for (_, store) in &self.stores {
            for obj in store.state() {
                if obj.namespace().as_deref() == Some(namespace)
                    && let Some(live) = to_live(&obj)
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
pub fn to_live(obj: &CachedObject) -> Option<LiveObject> {
    Some(LiveObject {
        name: obj.name_any(),
        spec: obj.spec.clone()?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(spec: Value) -> Value {
        json!({
            "apiVersion": "fleet.fleetgate.dev/v1alpha1",
            "kind": "FleetNode",
            "metadata": {
                "name": "edge-1",
                "namespace": "team",
                "resourceVersion": "42",
                "labels": {REPOSITORY_LABEL: "fleet"},
                "annotations": {
                    annotations::PREVENT_DESTROY: "true",
                    "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(10_000),
                },
                "managedFields": [{"manager": "fleetgate", "operation": "Apply",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": spec,
        })
    }

    #[test]
    fn the_cache_keeps_the_read_spec_its_digest_and_only_fleetgates_metadata() {
        let text = crate::fleet::synth::fleet_yaml(crate::fleet::synth::Shape::new(1), 1);
        let desired = crate::fleet::desired_state("f.yaml", text.as_bytes(), &Default::default())
            .unwrap()
            .0
            .objects;
        let expected = desired
            .iter()
            .find(|o| o.kind() == ObjectKind::FleetNode)
            .map(|o| (*o.spec).clone())
            .unwrap();
        let spec = expected.to_json();
        let obj: CachedObject = serde_json::from_value(node(spec)).unwrap();
        assert_eq!(obj.spec.as_deref(), Some(&expected));
        assert_eq!(obj.digest, Some(spec_digest(&expected)));
        assert_eq!(obj.metadata.managed_fields, None);
        assert_eq!(obj.resource_version().as_deref(), Some("42"));
        let kept: Vec<&String> = obj.annotations().keys().collect();
        assert_eq!(kept, [annotations::PREVENT_DESTROY]);
        let live = to_live(&obj).unwrap();
        assert_eq!(live.owner.as_deref(), Some("fleet"));
        assert!(live.prevent_destroy);
    }

    #[test]
    fn the_cache_reads_the_providers_verdict_for_the_current_generation() {
        let with_status = |generation: i64, status: Value| {
            let mut v = node(json!({}));
            v["metadata"]["generation"] = json!(generation);
            v["status"] = status;
            serde_json::from_value::<CachedObject>(v).unwrap()
        };
        let ready = json!({"observedGeneration": 2, "conditions": [
            {"type": "Ready", "status": "True", "reason": "Available", "message": "",
             "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let obj = with_status(2, ready.clone());
        assert_eq!(obj.health, Health::Ready);
        assert_eq!(obj.reason, Some(ProviderReason::Available));
        // The same report, for the spec before the one now stored: not Ready.
        assert_eq!(with_status(3, ready).health, Health::Stale);
        assert_eq!(with_status(1, Value::Null).health, Health::Unreported);
        // A status the schema should have refused: read as stale, and the object is
        // still delivered to the cache.
        let odd = with_status(1, json!({"conditions": "up"}));
        assert_eq!((odd.health, odd.reason), (Health::Stale, None));
    }

    #[test]
    fn an_unreadable_spec_is_kept_as_none_not_refused() {
        let obj: CachedObject = serde_json::from_value(node(json!({"site": 7}))).unwrap();
        assert!(obj.spec.is_none() && obj.digest.is_none());
        assert!(to_live(&obj).is_none(), "the planner recreates it");
        let missing = {
            let mut v = node(Value::Null);
            v.as_object_mut().unwrap().remove("spec");
            v
        };
        let obj: CachedObject = serde_json::from_value(missing).unwrap();
        assert!(obj.spec.is_none());
    }
}
