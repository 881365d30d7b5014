//! Notifications: tells the NotificationTargets of a namespace about plans awaiting
//! approval, refusals, applies, failures, drift and stalled repositories.
//!
//! Exactly-once per occurrence, across restarts and leader changes: an occurrence is
//! derived from the object's state with a stable key ([`occurrences`]); before it is
//! sent, its key is recorded in the object's `gitops.fleetgate.dev/notified` annotation
//! with an optimistic-concurrency patch (the resourceVersion read), so only one writer
//! ever claims it. Room for its deliveries is taken in the namespace's share before it
//! is claimed ([`delivery::Deliveries::reserve`]): what is claimed is delivered (retried
//! with backoff by a background task) or given up on after its attempts, never dropped
//! for want of room. Without room it is not claimed, and is tried again a little later.
//! Reconciles never wait for a receiver. The price of claiming first is that a process
//! stopped between the claim and the delivery loses that one notification rather than
//! sending it twice.

pub mod delivery;
pub mod occurrences;
pub mod payload;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{debug, warn};

use crate::api::annotations;
use crate::api::notification::NotificationTarget;
use crate::api::{GitopsRepository, SyncRun};
use delivery::{Deliveries, Delivery};
use occurrences::Occurrence;

/// Keys kept in the annotation (the oldest are dropped).
const MAX_RECORDED: usize = 32;
/// Claimed keys remembered in memory, to spare the API server repeated claims.
const MAX_REMEMBERED: usize = 10_000;
/// An occurrence its namespace had no room for is tried again after this, up to
/// [`MAX_LATER`] times; at most [`MAX_WAITING_LATER`] wait so at once.
const LATER: Duration = Duration::from_secs(15);
const MAX_LATER: u32 = 40;
const MAX_WAITING_LATER: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("secret {name}: {message}")]
    Secret { name: String, message: String },
    #[error(transparent)]
    Outbound(#[from] super::outbound::OutboundError),
    #[error("receiver answered {status}: {body}")]
    Rejected { status: u16, body: String },
}

impl NotifyError {
    /// What the target's condition says: a short category, never the receiver's answer
    /// or the transport's error chain (a tenant aims the address; the logs have the rest).
    pub fn tenant_message(&self) -> String {
        match self {
            Self::Outbound(e) => e.category(),
            Self::Rejected { status, .. } => {
                format!(
                    "the receiver did not accept it: {}",
                    super::outbound::status_category(*status)
                )
            }
            other => other.to_string(),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "KubeError",
            Self::Secret { .. } => "SecretError",
            Self::Outbound(e) => e.label(),
            Self::Rejected { .. } => "Rejected",
        }
    }
}

pub struct Notifier {
    client: Client,
    targets: Vec<Store<NotificationTarget>>,
    deliveries: Arc<Deliveries>,
    claimed: Mutex<HashSet<String>>,
    /// Occurrences waiting for room in their namespace's share, by object uid and keys.
    later: Mutex<HashSet<String>>,
}

impl Notifier {
    /// Watches the NotificationTargets of `scopes` and starts the delivery task.
    pub fn start(client: Client, scopes: &[Option<String>], http: super::outbound::Http) -> Self {
        let mut targets = Vec::new();
        for ns in scopes {
            let api: Api<NotificationTarget> = super::scoped(&client, ns.as_deref());
            let (store, writer) = reflector::store();
            let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
                .default_backoff()
                .touched_objects();
            tokio::spawn(async move {
                futures::pin_mut!(stream);
                use futures::StreamExt;
                while let Some(item) = stream.next().await {
                    if let Err(e) = item {
                        debug!(error = %e, "watching NotificationTargets");
                    }
                }
            });
            targets.push(store);
        }
        Self {
            deliveries: Arc::new(Deliveries::new(client.clone(), http)),
            client,
            targets,
            claimed: Mutex::default(),
            later: Mutex::default(),
        }
    }

    /// The targets of `namespace` that want `occurrence` of `repository`.
    fn matching(&self, namespace: &str, occurrence: &Occurrence) -> Vec<Arc<NotificationTarget>> {
        let n = &occurrence.notice;
        self.targets
            .iter()
            .flat_map(|s| s.state())
            .filter(|t| t.namespace().as_deref() == Some(namespace))
            .filter(|t| !t.spec.suspend)
            .filter(|t| t.spec.events.is_empty() || t.spec.events.contains(&n.event))
            .filter(|t| {
                t.spec.repositories.is_empty() || t.spec.repositories.contains(&n.repository)
            })
            // A target hears of what happened after it was created, not of the past.
            .filter(|t| match (&t.metadata.creation_timestamp, &occurrence.at) {
                (Some(created), Some(at)) => at.0 >= created.0,
                _ => true,
            })
            .collect()
    }

    /// Notifies what `run`'s state shows, once. Never fails the caller.
    pub async fn run_changed(self: &Arc<Self>, run: &SyncRun) {
        if let Some(occurrence) = occurrences::of_run(run) {
            self.notify::<SyncRun>(run, vec![occurrence], 0).await;
        }
    }

    /// Notifies a refused approval of `run` (as read when refusing), once.
    pub async fn approval_refused(self: &Arc<Self>, run: &SyncRun, message: &str) {
        let occurrence = occurrences::approval_refused(run, message);
        self.notify::<SyncRun>(run, vec![occurrence], 0).await;
    }

    /// Notifies drift and stalls that `repo`'s state shows, once each.
    pub async fn repository_changed(self: &Arc<Self>, repo: &GitopsRepository) {
        let notified = occurrences::recorded(repo.annotations().get(annotations::NOTIFIED));
        let found = occurrences::of_repository(repo, &notified);
        if !found.is_empty() {
            self.notify::<GitopsRepository>(repo, found, 0).await;
        }
    }

    /// Notifies `found` (`tried` times before without room).
    async fn notify<K>(self: &Arc<Self>, object: &K, found: Vec<Occurrence>, tried: u32)
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let namespace = object.namespace().unwrap_or_default();
        let uid = object.uid().unwrap_or_default();
        let notified = occurrences::recorded(object.annotations().get(annotations::NOTIFIED));
        let mut wanted = Vec::new();
        for occurrence in found {
            let key = &occurrence.notice.id;
            if notified.contains(key) || self.remembered(&uid, key) {
                continue;
            }
            let targets = self.matching(&namespace, &occurrence);
            if !targets.is_empty() {
                wanted.push((occurrence, targets));
            }
        }
        if wanted.is_empty() {
            return;
        }
        // An occurrence is claimed only with room for all of its deliveries; one that
        // wants more targets than a namespace's whole share reaches the first of them.
        for (_, targets) in &mut wanted {
            if targets.len() > delivery::PENDING_PER_NAMESPACE {
                warn!(
                    namespace,
                    targets = targets.len(),
                    "an occurrence matches more NotificationTargets than one namespace may have deliveries pending; the first {} (by name) are told",
                    delivery::PENDING_PER_NAMESPACE
                );
                targets.sort_by_key(|t| t.name_any());
                targets.truncate(delivery::PENDING_PER_NAMESPACE);
            }
        }
        let needed = wanted.iter().map(|(_, t)| t.len()).sum();
        let Some(mut room) = self.deliveries.reserve(&namespace, needed) else {
            let found = wanted.into_iter().map(|(o, _)| o).collect();
            self.later(object, found, tried);
            return;
        };
        let keys: Vec<String> = wanted.iter().map(|(o, _)| o.notice.id.clone()).collect();
        match self.claim::<K>(&namespace, &object.name_any(), &keys).await {
            Ok(claimed) => {
                for (occurrence, targets) in wanted {
                    if !claimed.contains(&occurrence.notice.id) {
                        continue;
                    }
                    self.remember(&uid, &occurrence.notice.id);
                    // Receivers see an id unique over all objects, the same on retries.
                    let mut notice = occurrence.notice;
                    notice.id = format!("{uid}/{}", notice.id);
                    for target in targets {
                        room.start(Delivery::new(&target, notice.clone()));
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, object = %object.name_any(), "could not record a notification; it is tried again at the next change")
            }
        }
    }

    /// Tries `found` again in a while: its namespace had no room for its deliveries, so
    /// it was not claimed, and nothing else may prompt it again (a run waiting for
    /// approval changes no more).
    fn later<K>(self: &Arc<Self>, object: &K, found: Vec<Occurrence>, tried: u32)
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let keys: Vec<&str> = found.iter().map(|o| o.notice.id.as_str()).collect();
        let waiting = format!("{}/{}", object.uid().unwrap_or_default(), keys.join(","));
        let namespace = object.namespace().unwrap_or_default();
        if tried >= MAX_LATER {
            warn!(namespace, object = %object.name_any(), "no room for a notification after {MAX_LATER} tries; it is not sent");
            return;
        }
        {
            let mut later = self.later.lock().unwrap_or_else(|p| p.into_inner());
            if later.len() >= MAX_WAITING_LATER || !later.insert(waiting.clone()) {
                return;
            }
        }
        warn!(namespace, object = %object.name_any(), "no room for more notifications in this namespace now; tried again in {LATER:?}");
        let (notifier, object) = (self.clone(), object.clone());
        tokio::spawn(async move {
            tokio::time::sleep(LATER).await;
            notifier
                .later
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&waiting);
            notifier.notify(&object, found, tried + 1).await;
        });
    }

    /// Records `keys` in the object's annotation unless already there; the keys this
    /// call recorded (none when another writer got there first).
    async fn claim<K>(
        &self,
        namespace: &str,
        name: &str,
        keys: &[String],
    ) -> Result<Vec<String>, NotifyError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        for _ in 0..3 {
            let Some(current) = api.get_opt(name).await? else {
                return Ok(Vec::new());
            };
            let mut recorded =
                occurrences::recorded(current.annotations().get(annotations::NOTIFIED));
            let new: Vec<String> = keys
                .iter()
                .filter(|k| !recorded.contains(k))
                .cloned()
                .collect();
            if new.is_empty() {
                return Ok(Vec::new());
            }
            recorded.extend(new.iter().cloned());
            let skip = recorded.len().saturating_sub(MAX_RECORDED);
            let value = recorded[skip..].join(",");
            let patch = json!({"metadata": {
                "resourceVersion": current.resource_version(),
                "annotations": {annotations::NOTIFIED: value},
            }});
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(new),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Vec::new())
    }

    fn remembered(&self, uid: &str, key: &str) -> bool {
        let claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        claimed.contains(&format!("{uid}/{key}"))
    }

    fn remember(&self, uid: &str, key: &str) {
        let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        if claimed.len() >= MAX_REMEMBERED {
            claimed.clear();
        }
        claimed.insert(format!("{uid}/{key}"));
    }
}
