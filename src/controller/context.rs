//! What every reconcile shares: the client, the Event recorder, metrics, the fleet
//! object caches and the controller's settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, ResourceExt};
use tracing::warn;

use crate::api::SyncRun;

use super::gitsource::{GitSettings, GitWork};
use super::live::FleetCache;
use super::metrics::Metrics;
use super::notifications::Notifier;
use super::planstore::DesiredCache;

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch and act only in these namespaces; all namespaces when empty.
    pub namespaces: Vec<String>,
    /// Where the git caches live, and the bounds of git work.
    pub git: GitSettings,
    /// How many independent actions of one level are applied at once.
    pub apply_concurrency: usize,
    /// What one repository's fleet may declare and resolve to (`FleetTooLarge` beyond):
    /// objects, bytes, modules and metadata.
    pub fleet_limits: crate::fleet::Limits,
    /// Plannings at once over all repositories, and for the repositories of one
    /// namespace.
    pub max_concurrent_plannings: usize,
    pub max_concurrent_plannings_per_namespace: usize,
    /// Accept an approval that carries no gitops.fleetgate.dev/approved-by (clusters
    /// without the chart's admission policies); it is recorded as unverified.
    pub allow_unverified_approvals: bool,
    /// Runs recording an approval kept per repository whatever its historyLimit says.
    pub approval_history: usize,
    /// This cluster's name in commit status contexts.
    pub cluster_name: String,
    /// Only GitopsRepositories and SyncRuns with matching labels are reconciled (one
    /// shard of several controllers); all when None.
    pub watch_label_selector: Option<String>,
    /// Only ModuleCatalogs with matching labels are read (two installs that each keep
    /// their own catalog); all when None.
    pub module_catalog_selector: Option<String>,
    /// Where signed approval-to-apply records go, and the Secret of their key; no
    /// records when None.
    pub attestation: Option<AttestationSettings>,
    /// Where Flux sources' artifacts may be fetched from.
    pub flux: FluxSettings,
}

/// Flux sources (`spec.sourceRef`): the hosts source-controller serves artifacts from.
#[derive(Clone, Debug, Default)]
pub struct FluxSettings {
    /// `--flux-artifact-hosts`: an artifact URL on any other host (or port, where an
    /// entry names one) is refused.
    pub artifact_hosts: Vec<String>,
    /// `--flux-max-artifact-mib`: the most bytes of an artifact read; it may inflate to
    /// four times that.
    pub max_artifact_bytes: u64,
}

/// The controller's own namespace, where the signing key's Secret is and the records
/// are kept: out of every tenant's reach, and not owned by any repository or run.
#[derive(Clone, Debug)]
pub struct AttestationSettings {
    pub namespace: String,
    /// The Secret holding the ed25519 private key (PKCS#8 PEM) under `key.pem`.
    pub key_secret: String,
}

impl Settings {
    /// The most JSON one stored plan or desired state may take: a plan carries the
    /// desired specs and the fields that change (old and new), so four times the
    /// desired state's bound.
    pub fn max_stored_bytes(&self) -> u64 {
        self.fleet_limits.max_bytes.saturating_mul(4)
    }
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub fleet: FleetCache,
    pub settings: Settings,
    pub git: GitWork,
    pub desired: DesiredCache,
    /// Tells NotificationTargets what happened; never blocks a reconcile.
    pub notifier: Arc<Notifier>,
    /// Commit statuses and pull-request previews on the git hosts.
    pub forge: Arc<super::forge::Forge>,
    /// Plannings under way: a few at once, shared fairly between namespaces.
    pub plannings: super::slots::Slots,
    /// The objects each converging run wrote (read once from its stored plan).
    pub converging: super::convergence::Written,
    /// What the platform's ModuleCatalogs say, for lifecycle pins.
    pub catalogs: super::catalog::Catalogs,
    /// Which SyncRun is applying for each repository (`namespace/name`): at most one.
    applying: Mutex<HashMap<String, String>>,
    /// Consecutive failed reconciles per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        fleet: FleetCache,
        settings: Settings,
        notifier: Notifier,
        forge: super::forge::Forge,
        catalogs: super::catalog::Catalogs,
    ) -> Self {
        let reporter = Reporter {
            controller: "fleetgate".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            fleet,
            git: GitWork::new(settings.git.clone(), metrics.clone()),
            desired: DesiredCache::new(settings.max_stored_bytes()),
            plannings: super::slots::Slots::new(
                settings.max_concurrent_plannings,
                settings.max_concurrent_plannings_per_namespace,
            ),
            settings,
            notifier: Arc::new(notifier),
            forge: Arc::new(forge),
            metrics,
            converging: Default::default(),
            catalogs,
            applying: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long to wait before retrying `object` after another failure.
    pub fn backoff(&self, object: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(object.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        backoff_delay(*n)
    }

    /// Forgets `object`'s failures after a successful reconcile.
    pub fn succeeded(&self, object: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(object);
    }

    /// Drops everything kept for a repository that no longer exists: its git cache, the
    /// desired state of its last applied run, its failures and its forge reports. A
    /// repository created again under the name starts from nothing.
    pub async fn forget_repository(&self, namespace: &str, name: &str) {
        let key = repository_key(namespace, name);
        self.git.forget(namespace, name).await;
        self.desired.forget(&key);
        self.succeeded(&key_of::<crate::api::GitopsRepository>(namespace, name));
        self.forge.forget(&key);
    }

    /// Publishes an Event; a failure to do so is logged, never fatal.
    pub async fn event(
        &self,
        on: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.event_related(on, None, type_, reason, action, note)
            .await;
    }

    /// Publishes an Event about one occurrence on `object`: the related object is
    /// `object` itself as it was when it happened (see [`occurrence`]), so that
    /// occurrences at different versions of the object stay separate Events.
    pub async fn event_at<K: kube::Resource<DynamicType = ()>>(
        &self,
        object: &K,
        field_path: &str,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let related = occurrence(object, field_path);
        self.event_related(
            &object.object_ref(&()),
            Some(related),
            type_,
            reason,
            action,
            note,
        )
        .await;
    }

    /// Publishes an Event about `on` that names a `related` object too. The recorder
    /// merges Events of one object, reason and related object into one series shown
    /// with the first note; a distinct related object (each new SyncRun) keeps each
    /// occurrence visible in `kubectl describe`.
    pub async fn event_related(
        &self,
        on: &ObjectReference,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(crate::api::truncate(&note, 1000)),
            action: action.into(),
            secondary: related,
        };
        if let Err(e) = self.recorder.publish(&event, on).await {
            warn!(error = %e, reason, "could not publish an Event");
        }
    }

    /// Claims the run's repository for it to apply; false while another run holds it.
    pub fn claim_apply(&self, run: &SyncRun) -> bool {
        let (repository, run) = (run_repository_key(run), run.name_any());
        let mut map = self.applying.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&repository) {
            Some(holder) if *holder != run => false,
            _ => {
                map.insert(repository, run);
                true
            }
        }
    }

    /// Which run holds `run`'s repository for applying, if any.
    pub fn applying_run(&self, run: &SyncRun) -> Option<String> {
        let map = self.applying.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&run_repository_key(run)).cloned()
    }

    pub fn release_apply(&self, run: &SyncRun) {
        let (repository, run) = (run_repository_key(run), run.name_any());
        let mut map = self.applying.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&repository).is_some_and(|holder| *holder == run) {
            map.remove(&repository);
        }
    }

    /// Records a reconcile's duration and, if it failed, its error label.
    pub fn observe(&self, controller: &'static str, started: Instant, error: Option<&'static str>) {
        use super::metrics::{ControllerLabels, ErrorLabels};
        self.metrics
            .reconcile_duration
            .get_or_create(&ControllerLabels { controller })
            .observe(started.elapsed().as_secs_f64());
        if let Some(error) = error {
            self.metrics
                .reconcile_errors
                .get_or_create(&ErrorLabels { controller, error })
                .inc();
        }
    }
}

/// `object` at its current resourceVersion, at `field_path`: one occurrence. The Event
/// recorder merges Events of one object, reason, action and related object into one
/// series shown with the first note; with this as the related object an occurrence at a
/// later version of the object (a second drift episode, a second wrong approval) is a
/// new Event in `kubectl describe`, while a repeat at the same version stays a count.
pub fn occurrence<K: kube::Resource<DynamicType = ()>>(
    object: &K,
    field_path: &str,
) -> ObjectReference {
    ObjectReference {
        resource_version: object.meta().resource_version.clone(),
        field_path: Some(field_path.to_owned()),
        ..object.object_ref(&())
    }
}

/// `namespace/name` of a repository: the key of what the controller keeps for it (its
/// git cache, desired state, forge bookkeeping, the run applying for it).
fn repository_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// [`repository_key`] of the repository a run belongs to.
fn run_repository_key(run: &SyncRun) -> String {
    repository_key(&run.namespace().unwrap_or_default(), &run.spec.repository)
}

/// `Kind namespace/name`, the key of per-object bookkeeping.
pub fn object_key<K: kube::Resource<DynamicType = ()>>(object: &K) -> String {
    key_of::<K>(
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default(),
    )
}

/// [`object_key`] of the `K` named `name` in `namespace`.
pub fn key_of<K: kube::Resource<DynamicType = ()>>(namespace: &str, name: &str) -> String {
    format!("{} {namespace}/{name}", K::kind(&()))
}

/// 1 s after the first failure, doubling, capped at 256 s.
fn backoff_delay(consecutive: u32) -> Duration {
    Duration::from_secs(1u64 << consecutive.saturating_sub(1).min(8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::error::parse_duration;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let seen: Vec<u64> = (1..=11).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 64, 128, 256, 256, 256]);
        assert_eq!(backoff_delay(u32::MAX).as_secs(), 256);
    }

    #[test]
    fn durations_are_parsed_or_refused() {
        assert_eq!(
            parse_duration("interval", "1m30s").unwrap(),
            Duration::from_secs(90)
        );
        assert!(parse_duration("interval", "soon").is_err());
    }
}
