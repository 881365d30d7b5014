//! The five fleet kinds. Their spec is the fully resolved desired state from the fleet
//! core (inheritance applied), so a provisioner never needs to read fleet.yaml. They
//! sit in the `fleet` category: `kubectl get fleet` lists them all.
//!
//! Each has a status subresource that belongs to its provider (whatever realizes the
//! fleet), under the provider contract of docs/provider-contract.md: fleetgate writes
//! spec and labels only, a provider writes status only. The status types and the
//! contract's condition reasons are in [`status`].

// kube's derive takes one `printcolumn(...)` per column; clippy mistakes their
// repeated `type_ = "string"` arguments for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fleet::object;

pub mod status;
pub use status::{
    FleetNodeStatus, FleetObjectStatus, NodeAddress, NodeAddressType, PeerSession, ProviderReason,
    ProviderStatus, Reported, SdwanPeerStatus, SessionProtocol, SessionState, VirtualIpStatus,
};

/// A node template, with everything it inherits.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "fleet.fleetgate.dev",
    version = "v1alpha1",
    kind = "FleetTemplate",
    doc = "A node template with everything it inherits, as declared in fleet.yaml and resolved by fleetgate.",
    namespaced,
    status = "FleetObjectStatus",
    category = "fleet",
    shortname = "ftemplate",
    printcolumn(name = "Extends", type_ = "string", json_path = ".spec.extends"),
    printcolumn(name = "Platform", type_ = "string", json_path = ".spec.nodePlatform"),
    printcolumn(name = "Arch", type_ = "string", json_path = ".spec.architecture"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct TemplateSpec {
    #[serde(flatten)]
    pub resolved: object::FleetTemplateSpec,
}

/// A machine of the fleet, resolved against its template.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "fleet.fleetgate.dev",
    version = "v1alpha1",
    kind = "FleetNode",
    doc = "A machine of the fleet, resolved against its template; the desired state a provisioner acts on.",
    namespaced,
    status = "FleetNodeStatus",
    category = "fleet",
    shortname = "fnode",
    printcolumn(name = "Template", type_ = "string", json_path = ".spec.template"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.instanceType"),
    printcolumn(
        name = "ProviderID",
        type_ = "string",
        priority = 1,
        json_path = ".status.providerID"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct NodeSpec {
    #[serde(flatten)]
    pub resolved: object::FleetNodeSpec,
}

/// An SD-WAN network.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "fleet.fleetgate.dev",
    version = "v1alpha1",
    kind = "SdwanNetwork",
    doc = "An SD-WAN network of the fleet.",
    namespaced,
    status = "FleetObjectStatus",
    category = "fleet",
    shortname = "swnet",
    printcolumn(name = "Routing", type_ = "string", json_path = ".spec.routingMode"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct NetworkSpec {
    #[serde(flatten)]
    pub resolved: object::SdwanNetworkSpec,
}

/// A node's membership in an SD-WAN network; named `<network>.<host>`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "fleet.fleetgate.dev",
    version = "v1alpha1",
    kind = "SdwanPeer",
    doc = "A node's membership in an SD-WAN network, named <network>.<host>.",
    namespaced,
    status = "SdwanPeerStatus",
    category = "fleet",
    shortname = "swpeer",
    printcolumn(name = "Network", type_ = "string", json_path = ".spec.network"),
    printcolumn(name = "Host", type_ = "string", json_path = ".spec.host"),
    printcolumn(
        name = "Public",
        type_ = "boolean",
        json_path = ".spec.publiclyReachable"
    ),
    printcolumn(
        name = "Address",
        type_ = "string",
        priority = 1,
        json_path = ".status.address"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct PeerSpec {
    #[serde(flatten)]
    pub resolved: object::SdwanPeerSpec,
}

/// A virtual IP of an SD-WAN network; named `<network>.<vip>`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "fleet.fleetgate.dev",
    version = "v1alpha1",
    kind = "VirtualIp",
    doc = "A virtual IP of an SD-WAN network, held by one peer and failed over to others; named <network>.<vip>.",
    namespaced,
    status = "VirtualIpStatus",
    category = "fleet",
    shortname = "vip",
    printcolumn(name = "Network", type_ = "string", json_path = ".spec.network"),
    printcolumn(name = "Primary", type_ = "string", json_path = ".spec.primaryHolder"),
    printcolumn(name = "Address", type_ = "string", json_path = ".status.address"),
    printcolumn(name = "Holder", type_ = "string", json_path = ".status.currentHolder"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct VirtualIpSpec {
    #[serde(flatten)]
    pub resolved: object::VirtualIpSpec,
}
