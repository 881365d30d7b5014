//! The lab provider: a fleet realized on one Linux machine, as Cluster API's Docker
//! provider realizes clusters for development and tests (docs/provider-contract.md, "The
//! lab provider").
//!
//! Each FleetNode becomes a network namespace named after it, each SdwanNetwork a
//! namespace holding a bridge (the segment), each SdwanPeer a veth from its node into
//! that bridge, routed as the network's `routingMode` says (BIRD for `ibgp` and `ebgp`,
//! static routes for `static`), and each VirtualIp an address that keepalived (VRRP)
//! keeps on its primary holder or, failing that, the next failover holder. Nothing it
//! makes is outside its own namespaces, and every address is in 198.18.0.0/15.
//!
//! One kube-runtime reflector per kind feeds a level-triggered loop: any change, and
//! every `interval`, the lab converges the machine on the namespace's objects and writes
//! each status that changed, under the provider contract.

pub mod bird;
mod daemon;
pub mod faults;
pub mod keepalived;
mod make;
pub mod naming;
mod placed;
mod realize;
mod report;
mod routing;
pub mod state;
mod status;
pub mod sys;
mod teardown;
mod vips;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

pub use realize::ETC_MOUNT_POINT;
use realize::{Lab, World};

use crate::api::fleet::{FleetNode, SdwanNetwork, SdwanPeer, VirtualIp};

/// The provider's name, in its providerIDs (`lab://…`) and its registration Lease.
pub const PROVIDER_NAME: &str = "lab";
/// Field manager of the lab's status writes.
pub const FIELD_MANAGER: &str = "fleetgate-lab-provider";
/// The kinds the lab serves. Templates are realized through the nodes that use them
/// (a node's spec carries its template's resolved platform and modules).
pub const SERVED_KINDS: [&str; 4] = ["FleetNode", "SdwanNetwork", "SdwanPeer", "VirtualIp"];
/// The programs the lab runs.
const PROGRAMS: [&str; 4] = ["ip", "bird", "keepalived", "ping"];

/// Why the lab could not do something; the label is stable (logs, tests).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("`{command}` did not finish in time")]
    CommandTimeout { command: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("BIRD at {socket}: {message}")]
    Bird { socket: PathBuf, message: String },
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Config(String),
}

impl LabError {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Command { .. } => "Command",
            Self::CommandTimeout { .. } => "CommandTimeout",
            Self::Spawn { .. } => "Spawn",
            Self::Io { .. } => "Io",
            Self::Bird { .. } => "Bird",
            Self::Kube(_) => "Kube",
            Self::Config(_) => "Config",
        }
    }
}

/// How one lab provider runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Names this lab apart from others on the same machine (its namespaces start with
    /// `fgl-<instance>-`).
    pub instance: String,
    /// The Kubernetes namespace whose fleet objects it realizes.
    pub namespace: String,
    /// Where it records what it made, with the daemons' files.
    pub state_dir: PathBuf,
    /// How often it looks again without a change (sessions, holders, fault clocks).
    pub interval: Duration,
}

/// Where an instance keeps its state unless told otherwise. Short: BIRD's control
/// sockets live under it and a Unix socket's path has at most 107 bytes.
pub fn default_state_dir(instance: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(instance)
}

/// Where the default state dirs are.
const STATE_ROOT: &str = "/run/fleetgate-lab";

fn check(config: &Config) -> Result<(), LabError> {
    naming::check_instance(&config.instance).map_err(LabError::Config)?;
    let longest = config.state_dir.join("keepalived/255-191.kpid");
    if longest.as_os_str().len() > 100 {
        return Err(LabError::Config(format!(
            "state dir {} is too long for BIRD's control sockets (Unix socket paths have at most 107 bytes)",
            config.state_dir.display()
        )));
    }
    for program in PROGRAMS {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
            .unwrap_or(false)
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|d| Path::new(d).join(program).is_file());
        if !found {
            return Err(LabError::Config(format!(
                "`{program}` not found: the lab needs iproute2, bird2, keepalived and iputils-ping (hack/install-deps.sh)"
            )));
        }
    }
    Ok(())
}

/// A reflector of one kind in the namespace, and a stream that yields on each change.
fn watch<K>(client: &Client, namespace: &str) -> (Store<K>, futures::stream::BoxStream<'static, ()>)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api = kube::Api::<K>::namespaced(client.clone(), namespace);
    let (reader, writer) = reflector::store();
    let changes = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects()
        .map(|_| ())
        .boxed();
    (reader, changes)
}

fn live<K>(store: &Store<K>) -> Vec<std::sync::Arc<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .collect()
}

/// Runs the lab provider until `shutdown` completes. What it made stays up: the next
/// start adopts it (`cleanup` removes it).
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), LabError> {
    check(&config)?;
    let mut lab = Lab::open(&config.instance, &config.namespace, &config.state_dir)?;
    let (nodes, node_changes) = watch::<FleetNode>(&client, &config.namespace);
    let (networks, network_changes) = watch::<SdwanNetwork>(&client, &config.namespace);
    let (peers, peer_changes) = watch::<SdwanPeer>(&client, &config.namespace);
    let (vips, vip_changes) = watch::<VirtualIp>(&client, &config.namespace);
    let mut changes =
        futures::stream::select_all([node_changes, network_changes, peer_changes, vip_changes]);
    let writer = status::Writer::new(client.clone(), &config.namespace);
    let registration = status::Registration::new(client, &config);
    tokio::pin!(shutdown);
    // The stores fill only while the change streams are polled.
    let ready = async {
        for result in [
            nodes.wait_until_ready().await,
            networks.wait_until_ready().await,
            peers.wait_until_ready().await,
            vips.wait_until_ready().await,
        ] {
            result.map_err(|e| LabError::Config(format!("watch: {e}")))?;
        }
        Ok::<_, LabError>(())
    };
    tokio::pin!(ready);
    loop {
        tokio::select! {
            r = &mut ready => { r?; break; }
            _ = changes.next() => {}
            _ = &mut shutdown => return Ok(()),
        }
    }
    tracing::info!(instance = %config.instance, namespace = %config.namespace, "lab provider started");
    loop {
        registration.renew().await;
        let world = World {
            nodes: live(&nodes),
            networks: live(&networks),
            peers: live(&peers),
            vips: live(&vips),
        };
        match lab.pass(&world).await {
            Ok(outcomes) => writer.write(&world, outcomes).await,
            Err(e) => {
                tracing::warn!(error = %e, label = e.label(), "lab pass failed; trying again")
            }
        }
        tokio::select! {
            _ = changes.next() => {
                // Let a burst of changes (a plan's writes) settle into one pass.
                let settle = tokio::time::sleep(Duration::from_millis(200));
                tokio::pin!(settle);
                loop {
                    tokio::select! {
                        _ = &mut settle => break,
                        _ = changes.next() => {}
                    }
                }
            }
            _ = tokio::time::sleep(config.interval) => {}
            _ = &mut shutdown => return Ok(()),
        }
    }
}

/// What `cleanup` removed.
#[derive(Debug, Default)]
pub struct Removed {
    pub namespaces: Vec<String>,
    pub daemons: usize,
}

/// Removes everything an instance made: its daemons, its namespaces (with their links and
/// any process left in them), its /etc/netns files and its state.
pub async fn cleanup(instance: &str, state_dir: &Path) -> Result<Removed, LabError> {
    naming::check_instance(instance).map_err(LabError::Config)?;
    let mut removed = Removed::default();
    let daemons = daemon::Daemons::new(state_dir);
    for kind in [daemon::DaemonKind::Bird, daemon::DaemonKind::Keepalived] {
        for stem in daemons.known(kind) {
            daemons.stop(kind, &stem).await;
            removed.daemons += 1;
        }
    }
    for netns in sys::list_netns(&naming::instance_prefix(instance)) {
        sys::netns_delete(&netns).await?;
        removed.namespaces.push(netns);
    }
    if state_dir.exists() {
        std::fs::remove_dir_all(state_dir).map_err(|source| LabError::Io {
            path: state_dir.to_owned(),
            source,
        })?;
    }
    // The folder of the default state dirs, and the mount point, go with the last lab on
    // the machine (empty folders only).
    if state_dir.parent() == Some(Path::new(STATE_ROOT)) {
        let _ = std::fs::remove_dir(STATE_ROOT);
    }
    if sys::list_netns(naming::NETNS_PREFIX).is_empty() {
        let _ = std::fs::remove_dir(ETC_MOUNT_POINT);
    }
    Ok(removed)
}
