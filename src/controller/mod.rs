//! `fleetgate controller`: the GitopsRepository and SyncRun controllers, behind leader
//! election, with `/metrics`, `/healthz` and `/readyz`.

pub mod apply;
pub mod context;
pub mod drift;
pub mod error;
pub mod gitsource;
pub mod live;
pub mod metrics;
pub mod planstore;
pub mod repository;
pub mod syncrun;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{Controller, watcher};
use kube::{Client, ResourceExt};
use tracing::{error, info};

use crate::api::{GitopsRepository, SyncRun};
pub use context::{Context, Settings};
use metrics::{Metrics, PhaseLabels};

/// Everything `fleetgate controller` needs to know.
#[derive(Debug, Clone)]
pub struct Options {
    pub settings: Settings,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_addr: SocketAddr,
    /// Lease for leader election; replicas of one install share it.
    pub lease_name: String,
    /// Namespace of the Lease (the controller's own namespace).
    pub lease_namespace: String,
}

#[derive(Clone)]
struct Health {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    runs: kube::runtime::reflector::Store<SyncRun>,
}

async fn metrics_handler(State(h): State<Health>) -> String {
    // SyncRuns by phase are counted from the watch cache when scraped.
    h.metrics.syncruns.clear();
    for run in h.runs.state() {
        if let Some(phase) = run.status.as_ref().and_then(|s| s.phase) {
            h.metrics
                .syncruns
                .get_or_create(&PhaseLabels {
                    namespace: run.namespace().unwrap_or_default(),
                    phase: phase.as_str(),
                })
                .inc();
        }
    }
    h.metrics.encode()
}

async fn readyz(State(h): State<Health>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
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

/// Runs until SIGINT/SIGTERM, or until leadership is lost (then the process should
/// restart, as controller-runtime operators do).
pub async fn run(client: Client, options: Options) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let ns = options.settings.namespace.clone();

    let runs_api: Api<SyncRun> = scoped(&client, ns.as_deref());
    let repos_api: Api<GitopsRepository> = scoped(&client, ns.as_deref());
    let syncruns = Controller::new(runs_api.clone(), watcher::Config::default());
    let health = Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
        runs: syncruns.store(),
    };
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

    let leadership =
        kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &options.lease_name)
            .with_namespace(&options.lease_namespace)
            .with_identity(
                std::env::var("POD_NAME")
                    .unwrap_or_else(|_| format!("fleetgate-{}", std::process::id())),
            )
            .with_duration(15)
            .with_grace(5)
            .build()
            .await?;
    let (mut is_leader, lease_task) = leadership.watch().await;
    ready.store(true, Ordering::Relaxed);
    info!(lease = %options.lease_name, "waiting for leadership");
    while !*is_leader.borrow_and_update() {
        tokio::select! {
            changed = is_leader.changed() => changed?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
    info!("leading; starting controllers");

    let (fleet, reflectors) = live::FleetCache::start(&client, ns.as_deref());
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        fleet,
        options.settings.clone(),
    ));
    for task in reflectors {
        tokio::spawn(task);
    }
    let mut repositories = Controller::new(repos_api, watcher::Config::default())
        .owns(runs_api, watcher::Config::default());
    // A change to any object a repository manages is a prompt to look for drift.
    for kind in crate::fleet::ObjectKind::ALL {
        let ar = live::api_resource(kind);
        let api: Api<kube::api::DynamicObject> = match ns.as_deref() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        let managed = watcher::Config::default().labels(crate::api::REPOSITORY_LABEL);
        repositories = repositories.watches_with(api, ar, managed, |obj| {
            let repository = obj.labels().get(crate::api::REPOSITORY_LABEL)?.clone();
            Some(kube::runtime::reflector::ObjectRef::new(&repository).within(&obj.namespace()?))
        });
    }
    let repositories = repositories
        .shutdown_on_signal()
        .run(repository::reconcile, repository::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let runs = syncruns
        .shutdown_on_signal()
        .run(syncrun::reconcile, syncrun::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    tokio::select! {
        _ = futures::future::join(repositories, runs) => info!("controllers stopped"),
        lost = async { loop { if is_leader.changed().await.is_err() || !*is_leader.borrow() { break; } } } => {
            let () = lost;
            error!("lost leadership; exiting so that a fresh process can compete again");
            std::process::exit(1);
        }
    }
    drop(is_leader);
    let _ = lease_task.await;
    Ok(())
}
