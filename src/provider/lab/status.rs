//! The lab's writes to the cluster: each object's status under the provider contract
//! (only when it changed: a write that changes nothing is not sent), and the Lease that
//! says the lab serves its kinds in the namespace.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::realize::{Outcomes, World};
use super::report::Report;
use super::{Config, FIELD_MANAGER, PROVIDER_NAME, SERVED_KINDS};
use crate::api::fleet::status::{CONTRACT_VERSION, registration};
use crate::api::fleet::{
    FleetNodeStatus, FleetObjectStatus, ProviderStatus, Reported, SdwanPeerStatus, VirtualIpStatus,
};

/// How long the registration Lease holds without a renewal.
const LEASE_SECONDS: i32 = 30;

pub struct Writer {
    client: Client,
    namespace: String,
}

impl Writer {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
        }
    }

    /// Writes the status of each object with an outcome: the report for its generation,
    /// and what `fill` adds for its kind.
    async fn write_all<K: Reported, O>(
        &self,
        objects: &[Arc<K>],
        outcomes: &mut BTreeMap<String, O>,
        report: impl Fn(&O) -> &Report,
        fill: impl Fn(&mut K::Status, O, &Time),
    ) {
        let api = Api::<K>::namespaced(self.client.clone(), &self.namespace);
        let now = crate::api::now();
        for object in objects {
            let name = object.name_any();
            let Some(outcome) = outcomes.remove(&name) else {
                continue;
            };
            let current = object.provider_status();
            let mut status = current.cloned().unwrap_or_default();
            let (reason, message) = report(&outcome);
            status.report(*reason, message, object.meta().generation, &now);
            fill(&mut status, outcome, &now);
            write(&api, object.as_ref(), current, &status).await;
        }
    }

    pub async fn write(&self, world: &World, mut outcomes: Outcomes) {
        self.write_all(
            &world.nodes,
            &mut outcomes.nodes,
            |o| &o.report,
            |s: &mut FleetNodeStatus, o, _| {
                s.provider_id = o.provider_id;
                s.addresses = o.addresses;
            },
        )
        .await;
        self.write_all(
            &world.networks,
            &mut outcomes.networks,
            |r| r,
            |_: &mut FleetObjectStatus, _, _| {},
        )
        .await;
        self.write_all(
            &world.peers,
            &mut outcomes.peers,
            |o| &o.report,
            |s: &mut SdwanPeerStatus, o, _| {
                s.address = o.address;
                s.sessions = o.sessions;
            },
        )
        .await;
        self.write_all(
            &world.vips,
            &mut outcomes.vips,
            |o| &o.report,
            |s: &mut VirtualIpStatus, o, now| {
                s.address = o.address;
                if s.current_holder != o.holder {
                    s.holder_since = o.holder.as_ref().map(|_| now.clone());
                    s.current_holder = o.holder;
                }
            },
        )
        .await;
    }
}

/// Writes `status` when it differs from `current`, only onto the version of `object` it
/// was computed for. The resourceVersion is the precondition: the report of an object
/// deleted meanwhile must never land on one created again under its name (the server
/// ignores `metadata.uid` on the status subresource, but refuses a stale resourceVersion).
async fn write<K: Reported>(
    api: &Api<K>,
    object: &K,
    current: Option<&K::Status>,
    status: &K::Status,
) {
    if current == Some(status) {
        return;
    }
    let name = object.name_any();
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "resourceVersion": object.resource_version() },
        "status": status,
    });
    match api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => {}
        // Changed, or deleted and created again, since this pass read it: the change
        // wakes the next pass, which reports on what is there now.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
            tracing::debug!(%name, reason = %e.reason, "status not written: the object changed");
        }
        // The server is busy: the next pass writes it again.
        Err(e) => tracing::warn!(%name, error = %e, "status not written"),
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
