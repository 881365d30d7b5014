//! `fleetgate controller`: the GitopsRepository and SyncRun controllers, behind leader
//! election, with `/metrics`, `/healthz` and `/readyz`.

pub mod apply;
pub mod attestation;
pub mod authorization;
pub mod catalog;
pub mod context;
pub mod convergence;
pub mod drift;
pub mod error;
pub mod fairness;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod fluxsource;
pub mod forge;
pub mod gitsource;
pub mod governance;
pub mod integrity;
pub mod lifecycle;
pub mod live;
pub mod metrics;
pub mod notifications;
pub mod objectwrite;
pub mod outbound;
pub mod planstore;
pub mod promotion;
pub mod provenance;
pub mod receiver;
pub mod repository;
pub mod slots;
pub mod syncrun;

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::{FutureExt, StreamExt};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tracing::{error, info, warn};

use crate::api::{GitopsRepository, SyncRun};
pub use context::{Context, Settings};
use error::Error;
use metrics::Metrics;

/// Everything `fleetgate controller` needs to know.
#[derive(Debug, Clone)]
pub struct Options {
    pub settings: Settings,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_addr: SocketAddr,
    /// Where push webhooks are received, if at all.
    pub receiver_addr: Option<SocketAddr>,
    /// Lease for leader election; replicas of one install share it.
    pub lease_name: String,
    /// Namespace of the Lease (the controller's own namespace).
    pub lease_namespace: String,
}

#[derive(Clone)]
struct Health {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    runs: Vec<kube::runtime::reflector::Store<SyncRun>>,
    repositories: Vec<kube::runtime::reflector::Store<GitopsRepository>>,
}

async fn metrics_handler(
    State(h): State<Health>,
    headers: axum::http::HeaderMap,
) -> impl axum::response::IntoResponse {
    // Per-object series come from the watch caches when scraped.
    let repositories: Vec<_> = h.repositories.iter().flat_map(|s| s.state()).collect();
    let runs: Vec<_> = h.runs.iter().flat_map(|s| s.state()).collect();
    h.metrics.refresh_objects(&repositories, &runs);
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let (content_type, body) = h.metrics.render(accept);
    ([(axum::http::header::CONTENT_TYPE, content_type)], body)
}

async fn readyz(State(h): State<Health>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

pub(crate) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The namespaces to watch: each given one, or all (None) when none is given.
fn scopes(settings: &Settings) -> Vec<Option<String>> {
    if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    }
}

/// Runs until SIGINT/SIGTERM, or until leadership is lost (then the process should
/// restart, as controller-runtime operators do).
pub async fn run(client: Client, options: Options) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let scopes = scopes(&options.settings);

    // One pair of controllers per watched namespace (or one for all), so that a
    // namespaced install needs Roles only where it acts.
    let shard = shard_config(&options.settings);
    let syncruns: Vec<Controller<SyncRun>> = scopes
        .iter()
        .map(|ns| {
            // Its own watch with its own backoff, errors kept out of the triggers (see
            // live::without_errors), as the repository controller's.
            let (reader, writer) = kube::runtime::reflector::store();
            let runs = watcher(scoped::<SyncRun>(&client, ns.as_deref()), shard.clone())
                .default_backoff()
                .reflect(writer)
                .applied_objects();
            Controller::for_stream(live::without_errors(runs), reader)
        })
        .collect();
    let (repositories, deletions): (Vec<Controller<GitopsRepository>>, Vec<_>) = scopes
        .iter()
        .map(|ns| repository::triggers::controller(&client, ns.as_deref(), &shard))
        .unzip();
    let health = Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
        runs: syncruns.iter().map(|c| c.store()).collect(),
        repositories: repositories.iter().map(|c| c.store()).collect(),
    };
    let (run_stores, repository_stores) = (health.runs.clone(), health.repositories.clone());
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(options.http_addr).await?;
    info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "HTTP server stopped");
        }
    });

    if let Some(addr) = options.receiver_addr {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        info!(addr = %listener.local_addr()?, "receiving push webhooks on /hook/<namespace>/<repository>");
        let app = receiver::router(client.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                error!(error = %e, "webhook receiver stopped");
            }
        });
    }

    let identity =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("fleetgate-{}", std::process::id()));
    let leadership =
        kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &options.lease_name)
            .with_namespace(&options.lease_namespace)
            .with_identity(identity)
            .with_duration(15)
            .with_grace(5)
            .build()
            .await?;
    let (mut is_leader, lease_task) = leadership.watch().await;
    // A standby is ready once it reaches the API server and competes for the Lease; a
    // leader once its watch caches are synced (below).
    ready.store(true, Ordering::Relaxed);
    info!(lease = %options.lease_name, "waiting for leadership");
    while !*is_leader.borrow_and_update() {
        tokio::select! {
            changed = is_leader.changed() => changed?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
    ready.store(false, Ordering::Relaxed);
    metrics.leader.set(1);
    info!(namespaces = ?options.settings.namespaces, "leading; starting controllers");

    let (fleet, changes) = live::FleetCache::start(&client, &scopes);
    tokio::spawn(ready_once_synced(
        ready.clone(),
        repository_stores,
        run_stores,
        fleet.clone(),
    ));
    // Every request a tenant aims (notifications, forge APIs) connects within the one
    // URL policy.
    let http = outbound::Http::within(options.settings.git.url_policy.clone())?;
    let notifier = notifications::Notifier::start(client.clone(), &scopes, http.clone());
    // The forge client shares the pool.
    let catalogs =
        catalog::Catalogs::start(&client, options.settings.module_catalog_selector.as_deref());
    let previews = forge::preview::Previews::new(
        fleet.clone(),
        options.settings.fleet_limits,
        catalogs.clone(),
    );
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        fleet,
        options.settings.clone(),
        notifier,
        forge::Forge::new(
            client.clone(),
            http,
            options.settings.cluster_name.clone(),
            previews,
        ),
        catalogs.clone(),
    ));
    prune_orphaned_caches(&client, &scopes, &ctx).await;
    for deletions in deletions {
        tokio::spawn(deletions.forget_each(ctx.clone()));
    }
    let mut controllers = Vec::new();
    for ((repositories, runs), changes) in repositories.into_iter().zip(syncruns).zip(changes) {
        let repositories = repository::triggers::follow_managed_objects(repositories, changes)
            .reconcile_all_on(catalogs.changes())
            .shutdown_on_signal()
            .run(
                |obj, ctx| {
                    guarded(
                        repository::CONTROLLER,
                        ctx.clone(),
                        repository::reconcile(obj, ctx),
                    )
                },
                repository::error_policy,
                ctx.clone(),
            )
            .for_each(|_| futures::future::ready(()));
        let runs = runs
            .shutdown_on_signal()
            .run(
                |obj, ctx| {
                    guarded(
                        syncrun::CONTROLLER,
                        ctx.clone(),
                        syncrun::reconcile(obj, ctx),
                    )
                },
                syncrun::error_policy,
                ctx.clone(),
            )
            .for_each(|_| futures::future::ready(()));
        controllers.push(futures::future::join(repositories, runs).boxed());
    }
    controllers.push(governance_policies(&client).map(|()| ((), ())).boxed());
    tokio::select! {
        _ = futures::future::join_all(controllers) => info!("controllers stopped"),
        _ = async { loop { if is_leader.changed().await.is_err() || !*is_leader.borrow() { break; } } } => {
            error!("lost leadership; exiting so that a fresh process can compete again");
            std::process::exit(1);
        }
    }
    drop(is_leader);
    let _ = lease_task.await;
    Ok(())
}

/// Marks the leader ready once every watch cache holds its first full list: before that
/// it would plan against a partial picture of the cluster. Until then `/readyz` answers
/// 503, so the pod is not Ready and the metrics Service does not send scrapes to it.
async fn ready_once_synced(
    ready: Arc<AtomicBool>,
    repositories: Vec<kube::runtime::reflector::Store<GitopsRepository>>,
    runs: Vec<kube::runtime::reflector::Store<SyncRun>>,
    fleet: live::FleetCache,
) {
    for store in &repositories {
        if !asked_until(|| store.wait_until_ready()).await {
            return;
        }
    }
    for store in &runs {
        if !asked_until(|| store.wait_until_ready()).await {
            return;
        }
    }
    // Each store on its own and without a deadline: a watch refused for a while (the
    // controller's Role removed, then restored) must still end in Ready once it lists.
    for store in fleet.stores() {
        if !asked_until(|| store.wait_until_ready()).await {
            return;
        }
    }
    ready.store(true, Ordering::Relaxed);
    info!("watch caches synced; ready");
}

/// Awaits `wait`, asking again every half second, until it succeeds (true) or fails (false:
/// the watch is gone). A kube-runtime `Store::wait_until_ready` wakes only the last of
/// several tasks waiting at once (a one-shot channel underneath), and the controllers
/// wait on the same stores.
async fn asked_until<F, Fut, T, E>(wait: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let ask_again = std::time::Duration::from_millis(500);
    loop {
        match tokio::time::timeout(ask_again, wait()).await {
            Ok(done) => return done.is_ok(),
            Err(_) => continue,
        }
    }
}

/// Reports on each GovernancePolicy's status whether its rules compile (cluster-scoped,
/// whatever namespaces are watched).
fn governance_policies(client: &Client) -> futures::future::BoxFuture<'static, ()> {
    Controller::new(
        Api::<crate::api::GovernancePolicy>::all(client.clone()),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(
        governance::policy::reconcile,
        governance::policy::error_policy,
        Arc::new(client.clone()),
    )
    .for_each(|_| futures::future::ready(()))
    .boxed()
}

/// What this controller's shard reconciles: the repositories and runs matching
/// `--watch-label-selector`, or all of them.
fn shard_config(settings: &Settings) -> watcher::Config {
    match &settings.watch_label_selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    }
}

/// Runs `reconcile`; a panic in it becomes a failed reconcile of that object (logged,
/// counted as `Panicked`, retried with the object's backoff), never a dead process.
async fn guarded(
    controller: &'static str,
    ctx: Arc<Context>,
    reconcile: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let result = catch_panic(reconcile).await;
    if let Err(Error::Panicked(message)) = &result {
        error!(
            controller,
            panic = message,
            "a reconcile panicked; it counts as failed and is retried"
        );
        ctx.observe(controller, Instant::now(), Some("Panicked"));
    }
    result
}

/// The future's output, or `Error::Panicked` with the panic's message.
async fn catch_panic(work: impl Future<Output = Result<Action, Error>>) -> Result<Action, Error> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => Err(Error::Panicked(error::panic_message(&*payload))),
    }
}

/// Deletes the git caches of repositories deleted while no controller ran.
async fn prune_orphaned_caches(client: &Client, scopes: &[Option<String>], ctx: &Context) {
    let mut existing = Vec::new();
    for ns in scopes {
        let api: Api<GitopsRepository> = scoped(client, ns.as_deref());
        match api.list(&Default::default()).await {
            Ok(list) => existing.extend(
                list.items
                    .iter()
                    .map(|r| (r.namespace().unwrap_or_default(), r.name_any())),
            ),
            Err(e) => {
                warn!(error = %e, "could not list repositories; orphaned git caches are kept");
                return;
            }
        }
    }
    // Only the watched namespaces' caches are judged; others may belong to another scope.
    let watched = |ns: &str| scopes.iter().any(|s| s.as_deref().is_none_or(|s| s == ns));
    ctx.git.prune_orphans(&existing, watched);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_reconcile_is_a_failed_reconcile() {
        let panicking = async {
            let revision = String::from("é");
            // The kind of slip this guards against: slicing inside a character.
            let _ = &revision[..1];
            Ok(Action::await_change())
        };
        let result = catch_panic(panicking).await;
        assert!(
            matches!(&result, Err(Error::Panicked(m)) if m.contains("char boundary")),
            "{result:?}"
        );
        assert_eq!(result.unwrap_err().label(), "Panicked");
        let fine = catch_panic(async { Ok(Action::await_change()) }).await;
        assert!(fine.is_ok());
    }
}
