//! The lab's writes to the cluster: each object's status under the provider contract
//! (only when it changed: a write that changes nothing is not sent), and the Lease that
//! says the lab serves its kinds in the namespace.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::realize::{Outcomes, World};
use super::{Config, FIELD_MANAGER, PROVIDER_NAME, SERVED_KINDS};
use crate::api::fleet::status::{CONTRACT_VERSION, registration};
use crate::api::fleet::{
    FleetNode, FleetNodeStatus, FleetObjectStatus, SdwanNetwork, SdwanPeer, SdwanPeerStatus,
    VirtualIp, VirtualIpStatus,
};

/// How long the registration Lease holds without a renewal.
const LEASE_SECONDS: i32 = 30;

pub struct Writer {
    nodes: Api<FleetNode>,
    networks: Api<SdwanNetwork>,
    peers: Api<SdwanPeer>,
    vips: Api<VirtualIp>,
}

/// Writes `status` when it differs from `current`.
async fn write<K, S>(api: &Api<K>, name: &str, current: Option<&S>, status: &S)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize + PartialEq,
{
    if current == Some(status) {
        return;
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Err(e) = api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        // Gone meanwhile, or the server is busy: the next pass writes it again.
        tracing::warn!(%name, error = %e, "status not written");
    }
}

impl Writer {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            nodes: Api::namespaced(client.clone(), namespace),
            networks: Api::namespaced(client.clone(), namespace),
            peers: Api::namespaced(client.clone(), namespace),
            vips: Api::namespaced(client, namespace),
        }
    }

    pub async fn write(&self, world: &World, mut outcomes: Outcomes) {
        let now = crate::api::now();
        for node in &world.nodes {
            let Some(o) = outcomes.nodes.remove(&node.name_any()) else {
                continue;
            };
            let generation = node.metadata.generation;
            let mut status = node.status.clone().unwrap_or_default();
            status.observed_generation = generation;
            o.report
                .0
                .set(&mut status.conditions, &o.report.1, generation, &now);
            status.provider_id = o.provider_id;
            status.addresses = o.addresses;
            write::<_, FleetNodeStatus>(
                &self.nodes,
                &node.name_any(),
                node.status.as_ref(),
                &status,
            )
            .await;
        }
        for network in &world.networks {
            let Some(report) = outcomes.networks.remove(&network.name_any()) else {
                continue;
            };
            let generation = network.metadata.generation;
            let mut status = network.status.clone().unwrap_or_default();
            status.observed_generation = generation;
            report
                .0
                .set(&mut status.conditions, &report.1, generation, &now);
            write::<_, FleetObjectStatus>(
                &self.networks,
                &network.name_any(),
                network.status.as_ref(),
                &status,
            )
            .await;
        }
        for peer in &world.peers {
            let Some(o) = outcomes.peers.remove(&peer.name_any()) else {
                continue;
            };
            let generation = peer.metadata.generation;
            let mut status = peer.status.clone().unwrap_or_default();
            status.observed_generation = generation;
            o.report
                .0
                .set(&mut status.conditions, &o.report.1, generation, &now);
            status.address = o.address;
            status.sessions = o.sessions;
            write::<_, SdwanPeerStatus>(
                &self.peers,
                &peer.name_any(),
                peer.status.as_ref(),
                &status,
            )
            .await;
        }
        for vip in &world.vips {
            let Some(o) = outcomes.vips.remove(&vip.name_any()) else {
                continue;
            };
            let generation = vip.metadata.generation;
            let mut status = vip.status.clone().unwrap_or_default();
            status.observed_generation = generation;
            o.report
                .0
                .set(&mut status.conditions, &o.report.1, generation, &now);
            status.address = o.address;
            if status.current_holder != o.holder {
                status.holder_since = o.holder.as_ref().map(|_| now.clone());
                status.current_holder = o.holder;
            }
            write::<_, VirtualIpStatus>(&self.vips, &vip.name_any(), vip.status.as_ref(), &status)
                .await;
        }
    }
}

/// The Lease `fleet-provider-lab` in the served namespace (docs/provider-contract.md,
/// "Registration"), renewed on every pass.
pub struct Registration {
    api: Api<Lease>,
    name: String,
    holder: String,
    renewed: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// How often the Lease is renewed: a third of its duration.
const RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(LEASE_SECONDS as u64 / 3);

impl Registration {
    pub fn new(client: Client, config: &Config) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            name: format!("{}{PROVIDER_NAME}", registration::LEASE_PREFIX),
            holder: format!("{PROVIDER_NAME}/{}", config.instance),
            renewed: std::sync::Mutex::new(None),
        }
    }

    /// Renews the Lease when a third of its duration has passed since the last renewal.
    pub async fn renew(&self) {
        {
            let mut renewed = self.renewed.lock().unwrap_or_else(|p| p.into_inner());
            if renewed.is_some_and(|t| t.elapsed() < RENEW_EVERY) {
                return;
            }
            *renewed = Some(tokio::time::Instant::now());
        }
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "labels": {registration::PROVIDER_LABEL: PROVIDER_NAME},
                "annotations": {
                    registration::KINDS_ANNOTATION: SERVED_KINDS.join(","),
                    registration::CONTRACT_ANNOTATION: CONTRACT_VERSION,
                },
            },
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now()),
            },
        });
        if let Err(e) = self
            .api
            .patch(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&lease),
            )
            .await
        {
            tracing::warn!(error = %e, "registration Lease not renewed");
        }
    }
}
