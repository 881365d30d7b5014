//! The suite's small fleet and the steps it takes with it: two nodes, an `ibgp` network
//! with both as peers (one publicly reachable) and a virtual IP held by one, failing over
//! to the other.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::checks::{self, Violation};
use super::{ConformanceError, Options};
use crate::api::fleet::status::{CONTRACT_VERSION, Health, registration};
use crate::api::fleet::{
    FleetNode, FleetNodeStatus, FleetObjectStatus, ProviderStatus, Reported, SdwanNetwork,
    SdwanPeer, SdwanPeerStatus, VirtualIp, VirtualIpStatus,
};
use crate::api::{MANAGED_BY, MANAGED_BY_LABEL, REPOSITORY_LABEL};

/// The field manager of the suite's writes.
const MANAGER: &str = "fleetgate-provider-conformance";
const POLL: Duration = Duration::from_millis(500);
const ALL_KINDS: [&str; 4] = ["FleetNode", "SdwanNetwork", "SdwanPeer", "VirtualIp"];

pub struct Fixture {
    client: Client,
    namespace: String,
    prefix: String,
    timeout: Duration,
    terminal_fault: Option<(String, String)>,
    /// The kinds the provider said it serves (all of them until its Lease is read).
    served: Mutex<BTreeSet<String>>,
}

/// A kind's status read back, checked against the contract whatever the moment.
trait Checked: Reported {
    /// The invariants of this kind beyond the conditions (`fixture` gives the other
    /// hosts, the holders).
    fn check_kind(status: &Self::Status, fixture: &Fixture) -> Result<(), String>;

    fn check(&self, fixture: &Fixture) -> Result<(), String> {
        let status = self.provider_status().cloned().unwrap_or_default();
        checks::conditions(
            self.meta().generation,
            status.observed_generation(),
            status.conditions(),
        )?;
        Self::check_kind(&status, fixture)
    }

    fn summary(&self) -> String {
        let status = self.provider_status().cloned().unwrap_or_default();
        let ready = crate::api::condition(status.conditions(), "Ready");
        format!(
            "generation {:?}, observedGeneration {:?}, Ready {} ({})",
            self.meta().generation,
            status.observed_generation(),
            ready.map_or("absent", |c| c.status.as_str()),
            ready.map_or("", |c| c.reason.as_str()),
        )
    }
}

impl Checked for FleetNode {
    fn check_kind(status: &FleetNodeStatus, _: &Fixture) -> Result<(), String> {
        checks::node(status)
    }
}

impl Checked for SdwanNetwork {
    fn check_kind(_: &FleetObjectStatus, _: &Fixture) -> Result<(), String> {
        Ok(())
    }
}

impl Checked for SdwanPeer {
    fn check_kind(status: &SdwanPeerStatus, fixture: &Fixture) -> Result<(), String> {
        checks::peer(status, &fixture.hosts())
    }
}

impl Checked for VirtualIp {
    fn check_kind(status: &VirtualIpStatus, fixture: &Fixture) -> Result<(), String> {
        checks::vip(status, &fixture.hosts())
    }
}

fn api_error(e: kube::Error) -> Violation {
    Violation::Api(e.to_string())
}

impl Fixture {
    pub fn new(client: Client, options: &Options) -> Self {
        Self {
            client,
            namespace: options.namespace.clone(),
            prefix: options.prefix.clone(),
            timeout: options.timeout,
            terminal_fault: options.terminal_fault.clone(),
            served: Mutex::new(ALL_KINDS.iter().map(|k| k.to_string()).collect()),
        }
    }

    fn api<K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>>(
        &self,
    ) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn node(&self, which: &str) -> String {
        format!("{}-node-{which}", self.prefix)
    }
    fn network(&self) -> String {
        format!("{}-net", self.prefix)
    }
    fn peer(&self, which: &str) -> String {
        format!("{}.{}", self.network(), self.node(which))
    }
    fn vip(&self) -> String {
        format!("{}.{}-vip", self.network(), self.prefix)
    }
    fn hosts(&self) -> Vec<String> {
        vec![self.node("a"), self.node("b")]
    }

    fn serves(&self, kind: &str) -> bool {
        self.served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(kind)
    }

    fn object(&self, kind: &str, name: &str, spec: Value) -> Value {
        json!({
            "apiVersion": "fleet.fleetgate.dev/v1alpha1",
            "kind": kind,
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {REPOSITORY_LABEL: self.prefix, MANAGED_BY_LABEL: MANAGED_BY},
            },
            "spec": spec,
        })
    }

    fn node_spec(instance_type: &str) -> Value {
        json!({
            "template": "conformance", "nodePlatform": "ubuntu-24.04-amd64",
            "architecture": "amd64", "modules": ["system-base@blessed"],
            "metadata": {"purpose": "conformance"}, "region": "conformance-1",
            "instanceType": instance_type, "lifecycleClass": "persistent",
        })
    }

    pub async fn refuse_taken_names(&self) -> Result<(), ConformanceError> {
        let taken = [
            self.api::<FleetNode>()
                .get_opt(&self.node("a"))
                .await?
                .map(|o| o.name_any()),
            self.api::<FleetNode>()
                .get_opt(&self.node("b"))
                .await?
                .map(|o| o.name_any()),
            self.api::<SdwanNetwork>()
                .get_opt(&self.network())
                .await?
                .map(|o| o.name_any()),
            self.api::<VirtualIp>()
                .get_opt(&self.vip())
                .await?
                .map(|o| o.name_any()),
        ];
        match taken.into_iter().flatten().next() {
            Some(name) => Err(ConformanceError::NameTaken(name)),
            None => Ok(()),
        }
    }

    async fn create_object<
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    >(
        &self,
        body: Value,
    ) -> Result<K, Violation> {
        let object: K = serde_json::from_value(body).map_err(|e| Violation::Api(e.to_string()))?;
        self.api::<K>()
            .create(
                &PostParams {
                    field_manager: Some(MANAGER.into()),
                    ..Default::default()
                },
                &object,
            )
            .await
            .map_err(api_error)
    }

    /// Reads `name` until `done` says so, checking every status read against the contract.
    async fn until<K: Checked>(
        &self,
        name: &str,
        wanted: &str,
        done: impl Fn(&K) -> bool,
    ) -> Result<K, Violation> {
        let object = format!("{}/{name}", K::kind(&()));
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut last = "not found".to_owned();
        loop {
            if let Some(o) = self.api::<K>().get_opt(name).await.map_err(api_error)? {
                o.check(self).map_err(|what| Violation::Contract {
                    object: object.clone(),
                    what,
                })?;
                if done(&o) {
                    return Ok(o);
                }
                last = o.summary();
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Violation::Timeout {
                    object,
                    wanted: wanted.into(),
                    seconds: self.timeout.as_secs(),
                    last,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `name` is Current (Ready at its generation), when its kind is served.
    async fn until_ready<K: Checked>(&self, name: &str) -> Result<Option<K>, Violation> {
        if !self.serves(&K::kind(&())) {
            return Ok(None);
        }
        self.until::<K>(name, "Ready at its generation", |o| {
            o.health() == Health::Ready
        })
        .await
        .map(Some)
    }

    /// The provider's registration Lease: its kinds, its contract version, a fresh renewal
    /// (waited for as long as a step may take: the provider may have just started).
    pub async fn registration(&self) -> Result<(), Violation> {
        let leases: Api<Lease> = self.api();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let lease = loop {
            let found = leases
                .list(&ListParams::default().labels(registration::PROVIDER_LABEL))
                .await
                .map_err(api_error)?;
            if let Some(lease) = found.items.into_iter().next() {
                break lease;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Violation::Contract {
                    object: format!("namespace {}", self.namespace),
                    what: format!(
                        "no Lease labelled {} (the provider's registration) within {}s",
                        registration::PROVIDER_LABEL,
                        self.timeout.as_secs()
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        };
        let object = format!("Lease/{}", lease.name_any());
        let contract = |what: String| Violation::Contract {
            object: object.clone(),
            what,
        };
        let kinds: BTreeSet<String> = lease
            .annotations()
            .get(registration::KINDS_ANNOTATION)
            .map(|k| {
                k.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if kinds.is_empty()
            || kinds
                .iter()
                .any(|k| !ALL_KINDS.contains(&k.as_str()) && k != "FleetTemplate")
        {
            return Err(contract(format!(
                "{} lists {kinds:?}, not fleet kinds",
                registration::KINDS_ANNOTATION
            )));
        }
        match lease.annotations().get(registration::CONTRACT_ANNOTATION) {
            Some(v) if v == CONTRACT_VERSION => {}
            other => {
                return Err(contract(format!(
                    "contract version {other:?}, this suite checks {CONTRACT_VERSION}"
                )));
            }
        }
        let spec = lease.spec.unwrap_or_default();
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
        let renewed = spec.renew_time.map(|t| t.0.as_second());
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        if duration <= 0 || renewed.is_none_or(|r| now - r > duration) {
            return Err(contract(format!(
                "not renewed within its leaseDurationSeconds ({duration})"
            )));
        }
        *self.served.lock().unwrap_or_else(|p| p.into_inner()) = kinds;
        Ok(())
    }

    /// Creates the fleet; every object it serves becomes Ready.
    pub async fn create(&self) -> Result<(), Violation> {
        self.create_object::<SdwanNetwork>(self.object(
            "SdwanNetwork",
            &self.network(),
            json!({"routingMode": "ibgp"}),
        ))
        .await?;
        for which in ["a", "b"] {
            self.create_object::<FleetNode>(self.object(
                "FleetNode",
                &self.node(which),
                Self::node_spec("small"),
            ))
            .await?;
            self.create_object::<SdwanPeer>(self.object(
                "SdwanPeer",
                &self.peer(which),
                json!({"network": self.network(), "host": self.node(which), "publiclyReachable": which == "a"}),
            ))
            .await?;
        }
        self.create_object::<VirtualIp>(self.object(
            "VirtualIp",
            &self.vip(),
            json!({"network": self.network(), "primaryHolder": self.node("a"), "failoverHolders": [self.node("b")]}),
        ))
        .await?;
        self.until_ready::<SdwanNetwork>(&self.network()).await?;
        for which in ["a", "b"] {
            self.until_ready::<FleetNode>(&self.node(which)).await?;
            self.until_ready::<SdwanPeer>(&self.peer(which)).await?;
        }
        self.until_ready::<VirtualIp>(&self.vip()).await?;
        Ok(())
    }

    async fn patch_spec(&self, name: &str, instance_type: &str) -> Result<FleetNode, Violation> {
        self.api::<FleetNode>()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"instanceType": instance_type}})),
            )
            .await
            .map_err(api_error)
    }

    /// A spec change: a new generation, reported Ready for that generation, same machine.
    pub async fn update(&self) -> Result<(), Violation> {
        let name = self.node("a");
        let before = self
            .api::<FleetNode>()
            .get(&name)
            .await
            .map_err(api_error)?;
        let changed = self.patch_spec(&name, "large").await?;
        let generation = changed.metadata.generation;
        if generation <= before.metadata.generation {
            return Err(Violation::Api(
                "the API server did not move metadata.generation on a spec change".into(),
            ));
        }
        if let Some(after) = self.until_ready::<FleetNode>(&name).await? {
            let id = |o: &FleetNode| o.status.as_ref().and_then(|s| s.provider_id.clone());
            if id(&before) != id(&after) {
                return Err(Violation::Contract {
                    object: format!("FleetNode/{name}"),
                    what: format!(
                        "providerID changed on an update: {:?} -> {:?}",
                        id(&before),
                        id(&after)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Three spec changes in a row: the status never claims a generation it has not seen,
    /// and ends Ready at the last one.
    pub async fn stale_generation(&self) -> Result<(), Violation> {
        let name = self.node("b");
        let mut last = None;
        for size in ["x1", "x2", "x3"] {
            last = self.patch_spec(&name, size).await?.metadata.generation;
        }
        if !self.serves("FleetNode") {
            return Ok(());
        }
        self.until::<FleetNode>(&name, "Ready at the last of three generations", |o| {
            o.health() == Health::Ready
                && o.status.as_ref().and_then(|s| s.observed_generation) == last
        })
        .await
        .map(|_| ())
    }

    /// The provider is made to fail a node for good: Stalled, with a reason the contract
    /// documents as terminal, at the current generation.
    pub async fn terminal_failure(&self) -> Result<(), Violation> {
        let Some((key, value)) = &self.terminal_fault else {
            return Ok(());
        };
        let name = self.node("b");
        self.api::<FleetNode>()
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
            )
            .await
            .map_err(api_error)?;
        self.until::<FleetNode>(&name, "Stalled (a terminal failure)", |o| {
            o.health() == Health::Failed
        })
        .await?;
        self.api::<FleetNode>()
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: null}}})),
            )
            .await
            .map_err(api_error)?;
        Ok(())
    }

    /// Deletion is never held up by the provider (no finalizer of its own stays), and an
    /// object created again under the same name is reported afresh.
    pub async fn delete(&self) -> Result<(), Violation> {
        self.remove_all().await;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let mut left = Vec::new();
            for which in ["a", "b"] {
                if let Some(o) = self
                    .api::<FleetNode>()
                    .get_opt(&self.node(which))
                    .await
                    .map_err(api_error)?
                {
                    left.push(format!(
                        "FleetNode/{} (finalizers {:?})",
                        o.name_any(),
                        o.finalizers()
                    ));
                }
                if self
                    .api::<SdwanPeer>()
                    .get_opt(&self.peer(which))
                    .await
                    .map_err(api_error)?
                    .is_some()
                {
                    left.push(format!("SdwanPeer/{}", self.peer(which)));
                }
            }
            if self
                .api::<SdwanNetwork>()
                .get_opt(&self.network())
                .await
                .map_err(api_error)?
                .is_some()
            {
                left.push(format!("SdwanNetwork/{}", self.network()));
            }
            if self
                .api::<VirtualIp>()
                .get_opt(&self.vip())
                .await
                .map_err(api_error)?
                .is_some()
            {
                left.push(format!("VirtualIp/{}", self.vip()));
            }
            if left.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Violation::Contract {
                    object: left.join(", "),
                    what: "still there after deletion".into(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
        let name = self.node("a");
        self.create_object::<FleetNode>(self.object("FleetNode", &name, Self::node_spec("small")))
            .await?;
        let again = self.until_ready::<FleetNode>(&name).await;
        let _ = self
            .api::<FleetNode>()
            .delete(&name, &DeleteParams::default())
            .await;
        again.map(|_| ())
    }

    /// Deletes every object of the suite, in the order fleetgate deletes (virtual IPs first).
    pub async fn remove_all(&self) {
        let dp = DeleteParams::default();
        let _ = self.api::<VirtualIp>().delete(&self.vip(), &dp).await;
        for which in ["a", "b"] {
            let _ = self.api::<SdwanPeer>().delete(&self.peer(which), &dp).await;
        }
        for which in ["a", "b"] {
            let _ = self.api::<FleetNode>().delete(&self.node(which), &dp).await;
        }
        let _ = self
            .api::<SdwanNetwork>()
            .delete(&self.network(), &dp)
            .await;
    }
}
