//! What a provider reports on the fleet kinds' status subresources: the provider contract
//! of docs/provider-contract.md (version [`CONTRACT_VERSION`]).
//!
//! As in Cluster API's infrastructure contract and kstatus: `observedGeneration` says which
//! spec the status describes; the conditions `Ready`, `Reconciling` and `Stalled` share one
//! reason from [`ProviderReason`]; a terminal failure is `Stalled=True` with a documented
//! reason, never a free-text field. Nothing here is written by fleetgate itself.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the fleet kinds.
pub const GROUP: &str = "fleet.fleetgate.dev";

/// The version of the provider contract these types and docs/provider-contract.md describe.
pub const CONTRACT_VERSION: &str = "v1alpha1";

/// The Lease a provider keeps in each namespace it serves, so that readers can tell a kind
/// no provider serves from one whose provider has not reported yet.
pub mod registration {
    /// Label on the Lease: the provider's name.
    pub const PROVIDER_LABEL: &str = "fleet.fleetgate.dev/provider";
    /// Annotation on the Lease: the kinds it serves, comma-separated (`FleetNode,SdwanPeer`).
    pub const KINDS_ANNOTATION: &str = "fleet.fleetgate.dev/provider-kinds";
    /// Annotation on the Lease: the contract version the provider implements.
    pub const CONTRACT_ANNOTATION: &str = "fleet.fleetgate.dev/provider-contract";
    /// Prefix of the Lease's name; the provider's name follows.
    pub const LEASE_PREFIX: &str = "fleet-provider-";
}

/// The status of a FleetTemplate or an SdwanNetwork: only whether the provider realized it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetObjectStatus {
    /// The metadata.generation the provider last acted on. Conditions describe that generation only: while it is lower than metadata.generation they are stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled (kstatus), with one reason among those of docs/provider-contract.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,
}

/// The status of a FleetNode.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetNodeStatus {
    /// The metadata.generation the provider last acted on. Conditions describe that generation only: while it is lower than metadata.generation they are stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled (kstatus), with one reason among those of docs/provider-contract.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,
    /// The provider's identifier of the machine, `<provider>://<id>` (as a Kubernetes Node's spec.providerID); set once the machine exists and stable for its life.
    #[serde(
        rename = "providerID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 512))]
    pub provider_id: Option<String>,
    /// The machine's addresses, as Cluster API's Machine reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub addresses: Vec<NodeAddress>,
}

/// One address of a machine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct NodeAddress {
    /// What kind of address this is.
    #[serde(rename = "type")]
    pub type_: NodeAddressType,
    /// The address: an IP address or a DNS name.
    #[schemars(length(min = 1, max = 253))]
    pub address: String,
}

/// The address types of Cluster API's MachineAddress.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum NodeAddressType {
    Hostname,
    #[serde(rename = "ExternalIP")]
    ExternalIp,
    #[serde(rename = "InternalIP")]
    InternalIp,
    #[serde(rename = "ExternalDNS")]
    ExternalDns,
    #[serde(rename = "InternalDNS")]
    InternalDns,
}

/// The status of an SdwanPeer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SdwanPeerStatus {
    /// The metadata.generation the provider last acted on. Conditions describe that generation only: while it is lower than metadata.generation they are stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled (kstatus), with one reason among those of docs/provider-contract.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,
    /// The peer's address in its network's fabric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub address: Option<String>,
    /// The routing sessions (or, for static routing, the routes) this peer should have, each with its state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub sessions: Vec<PeerSession>,
}

/// One routing session of a peer: with another peer of its network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct PeerSession {
    /// The other end: the host of another SdwanPeer of the same network.
    #[schemars(length(min = 1, max = 253))]
    pub peer: String,
    /// BGP for the ibgp and ebgp routing modes, Static for static routes.
    pub protocol: SessionProtocol,
    /// A BGP session's finite-state-machine state (RFC 4271), or for a static route whether the other end answers through it.
    pub state: SessionState,
}

/// How a session routes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SessionProtocol {
    #[serde(rename = "BGP")]
    Bgp,
    Static,
}

/// The state of one session.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SessionState {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
    Reachable,
    Unreachable,
}

impl SessionState {
    /// Whether traffic flows: an Established BGP session, or a static route that answers.
    pub fn is_up(self) -> bool {
        matches!(self, Self::Established | Self::Reachable)
    }
}

/// The status of a VirtualIp.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualIpStatus {
    /// The metadata.generation the provider last acted on. Conditions describe that generation only: while it is lower than metadata.generation they are stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled (kstatus), with one reason among those of docs/provider-contract.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,
    /// The address the provider gave the virtual IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub address: Option<String>,
    /// The host that answers on the address now (the primary holder, or a failover holder after a failover); absent when none does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub current_holder: Option<String>,
    /// When the current holder was first seen answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_since: Option<Time>,
}

/// The reasons of the contract's conditions. Ready, Reconciling and Stalled carry the same
/// one; which of them is True follows from the reason ([`ProviderReason::outcome`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderReason {
    /// Ready: realized as the spec says, and working.
    Available,
    /// Reconciling: being created, or not yet reporting ready.
    Provisioning,
    /// Reconciling: a new generation is being realized.
    Updating,
    /// Reconciling: waits for another object it needs (its node, network or peers).
    WaitingForDependency,
    /// Reconciling: some routing sessions are not Established (or static routes do not answer).
    SessionsNotEstablished,
    /// Reconciling: a link of the object is down.
    LinkDown,
    /// Reconciling: no holder answers on the virtual IP.
    HolderNotAnswering,
    /// Stalled: the provider cannot realize this spec; only a spec change helps.
    InvalidSpec,
    /// Stalled: the provider has no capacity left (addresses, machines).
    CapacityExhausted,
    /// Stalled: the provider tried and failed in a way another try will not fix.
    ProvisioningFailed,
    /// Stalled: the machine failed after it had been available.
    NodeFailed,
}

/// Which of the three conditions a reason makes True.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ready,
    Reconciling,
    Stalled,
}

impl ProviderReason {
    pub const ALL: [Self; 11] = [
        Self::Available,
        Self::Provisioning,
        Self::Updating,
        Self::WaitingForDependency,
        Self::SessionsNotEstablished,
        Self::LinkDown,
        Self::HolderNotAnswering,
        Self::InvalidSpec,
        Self::CapacityExhausted,
        Self::ProvisioningFailed,
        Self::NodeFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "Available",
            Self::Provisioning => "Provisioning",
            Self::Updating => "Updating",
            Self::WaitingForDependency => "WaitingForDependency",
            Self::SessionsNotEstablished => "SessionsNotEstablished",
            Self::LinkDown => "LinkDown",
            Self::HolderNotAnswering => "HolderNotAnswering",
            Self::InvalidSpec => "InvalidSpec",
            Self::CapacityExhausted => "CapacityExhausted",
            Self::ProvisioningFailed => "ProvisioningFailed",
            Self::NodeFailed => "NodeFailed",
        }
    }

    pub fn parse(reason: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == reason)
    }

    pub fn outcome(self) -> Outcome {
        match self {
            Self::Available => Outcome::Ready,
            Self::Provisioning
            | Self::Updating
            | Self::WaitingForDependency
            | Self::SessionsNotEstablished
            | Self::LinkDown
            | Self::HolderNotAnswering => Outcome::Reconciling,
            Self::InvalidSpec
            | Self::CapacityExhausted
            | Self::ProvisioningFailed
            | Self::NodeFailed => Outcome::Stalled,
        }
    }

    /// The three conditions for this reason, computed for `generation`.
    pub fn set(
        self,
        conditions: &mut Vec<Condition>,
        message: &str,
        generation: Option<i64>,
        now: &Time,
    ) {
        let outcome = self.outcome();
        crate::api::Kstatus {
            ready: outcome == Outcome::Ready,
            reconciling: outcome == Outcome::Reconciling,
            stalled: outcome == Outcome::Stalled,
            reason: self.as_str(),
            message,
        }
        .set(conditions, generation, now);
    }
}

impl std::fmt::Display for ProviderReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every kind's status has: read alike by readers, written alike by providers.
pub trait ProviderStatus: Default + Clone + PartialEq + Serialize {
    fn observed_generation(&self) -> Option<i64>;
    fn conditions(&self) -> &[Condition];
    /// Records `reason` as the provider's verdict on `generation`: observedGeneration and
    /// the three conditions (a transition time moves only when a condition's status does).
    fn report(
        &mut self,
        reason: ProviderReason,
        message: &str,
        generation: Option<i64>,
        now: &Time,
    );
}

macro_rules! provider_status {
    ($($status:ty),*) => {$(
        impl ProviderStatus for $status {
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
            fn report(&mut self, reason: ProviderReason, message: &str, generation: Option<i64>, now: &Time) {
                self.observed_generation = generation;
                reason.set(&mut self.conditions, message, generation, now);
            }
        }
    )*};
}

provider_status!(
    FleetObjectStatus,
    FleetNodeStatus,
    SdwanPeerStatus,
    VirtualIpStatus
);

/// A fleet kind, with the status its provider writes.
pub trait Reported:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + Serialize
    + std::fmt::Debug
{
    type Status: ProviderStatus;
    fn provider_status(&self) -> Option<&Self::Status>;

    /// [`health`] of the object.
    fn health(&self) -> Health {
        let (observed, conditions) = self.provider_status().map_or((None, &[][..]), |s| {
            (s.observed_generation(), s.conditions())
        });
        health(self.meta().generation, observed, conditions)
    }
}

macro_rules! reported {
    ($($kind:ty => $status:ty),*) => {$(
        impl Reported for $kind {
            type Status = $status;
            fn provider_status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
        }
    )*};
}

reported!(
    super::FleetTemplate => FleetObjectStatus,
    super::FleetNode => FleetNodeStatus,
    super::SdwanNetwork => FleetObjectStatus,
    super::SdwanPeer => SdwanPeerStatus,
    super::VirtualIp => VirtualIpStatus
);

/// What a reader makes of a fleet object's status: the core's [`Health`], read here
/// from the conditions.
pub use crate::fleet::health::Health;

/// The health of an object whose metadata.generation is `generation`, from its status's
/// `observedGeneration` and conditions.
pub fn health(generation: Option<i64>, observed: Option<i64>, conditions: &[Condition]) -> Health {
    let Some(observed) = observed.filter(|o| *o >= 0) else {
        return if conditions.is_empty() {
            Health::Unreported
        } else {
            Health::Stale
        };
    };
    // Equal, as kstatus reads it: a report for a generation the object never had (higher
    // than its own) says nothing about its spec.
    if generation.is_some_and(|g| observed != g) {
        return Health::Stale;
    }
    let is_true = |t: &str| {
        crate::api::condition(conditions, t).is_some_and(|c| {
            c.status == "True" && c.observed_generation.is_none_or(|g| g >= observed)
        })
    };
    if is_true("Stalled") {
        Health::Failed
    } else if is_true("Ready") && !is_true("Reconciling") {
        Health::Ready
    } else {
        Health::InProgress
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(second).unwrap())
    }

    #[test]
    fn each_reason_sets_exactly_one_condition_true() {
        for reason in ProviderReason::ALL {
            let mut c = Vec::new();
            reason.set(&mut c, "", Some(3), &at(0));
            let trues: Vec<&str> = c
                .iter()
                .filter(|c| c.status == "True")
                .map(|c| c.type_.as_str())
                .collect();
            assert_eq!(trues.len(), 1, "{reason}: {trues:?}");
            assert!(c.iter().all(|c| c.reason == reason.as_str()));
            assert!(c.iter().all(|c| c.observed_generation == Some(3)));
            assert_eq!(ProviderReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(ProviderReason::parse("Ready"), None);
    }

    #[test]
    fn health_reads_generation_before_conditions() {
        let mut c = Vec::new();
        assert_eq!(health(Some(1), None, &c), Health::Unreported);
        ProviderReason::Available.set(&mut c, "", Some(1), &at(0));
        assert_eq!(health(Some(1), Some(1), &c), Health::Ready);
        // A spec change the provider has not seen yet: stale, not Ready.
        assert_eq!(health(Some(2), Some(1), &c), Health::Stale);
        assert_eq!(health(Some(2), Some(-1), &c), Health::Stale);
        // A report for a generation the object never had is no report on its spec.
        assert_eq!(health(Some(1), Some(5), &c), Health::Stale);
        ProviderReason::Updating.set(&mut c, "", Some(2), &at(1));
        assert_eq!(health(Some(2), Some(2), &c), Health::InProgress);
        ProviderReason::NodeFailed.set(&mut c, "", Some(2), &at(2));
        assert_eq!(health(Some(2), Some(2), &c), Health::Failed);
        // A condition computed for an older generation does not count.
        let mut old = Vec::new();
        ProviderReason::Available.set(&mut old, "", Some(1), &at(0));
        assert_eq!(health(Some(2), Some(2), &old), Health::InProgress);
    }

    #[test]
    fn wire_names_follow_the_contract() {
        let s = SdwanPeerStatus {
            sessions: vec![PeerSession {
                peer: "edge-tokyo-01".into(),
                protocol: SessionProtocol::Bgp,
                state: SessionState::Established,
            }],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"sessions": [{"peer": "edge-tokyo-01", "protocol": "BGP", "state": "Established"}]})
        );
        let n = FleetNodeStatus {
            provider_id: Some("lab://x".into()),
            addresses: vec![NodeAddress {
                type_: NodeAddressType::InternalIp,
                address: "198.19.0.1".into(),
            }],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&n).unwrap(),
            serde_json::json!({"providerID": "lab://x", "addresses": [{"type": "InternalIP", "address": "198.19.0.1"}]})
        );
    }
}
