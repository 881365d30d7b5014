//! The desired object set: what a fleet file becomes in the cluster, independent of
//! Kubernetes types. Each object is a kind, a name and a fully resolved spec.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use litemap::LiteMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::{Architecture, LifecycleClass, RoutingMode};

/// The five kinds a fleet file declares, in the order their creations are applied.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum ObjectKind {
    FleetTemplate,
    FleetNode,
    SdwanNetwork,
    SdwanPeer,
    VirtualIp,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 5] = [
        ObjectKind::FleetTemplate,
        ObjectKind::FleetNode,
        ObjectKind::SdwanNetwork,
        ObjectKind::SdwanPeer,
        ObjectKind::VirtualIp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::FleetTemplate => "FleetTemplate",
            ObjectKind::FleetNode => "FleetNode",
            ObjectKind::SdwanNetwork => "SdwanNetwork",
            ObjectKind::SdwanPeer => "SdwanPeer",
            ObjectKind::VirtualIp => "VirtualIp",
        }
    }

    /// The key under which a plan summary counts this kind.
    pub fn summary_key(self) -> &'static str {
        match self {
            ObjectKind::FleetTemplate => "templates",
            ObjectKind::FleetNode => "nodes",
            ObjectKind::SdwanNetwork => "networks",
            ObjectKind::SdwanPeer => "peers",
            ObjectKind::VirtualIp => "virtualIps",
        }
    }

    /// Position in apply order: creations go up this rank, deletions down it.
    pub fn rank(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ObjectKind {
    type Err = String;

    /// Accepts the kind in any case (`FleetNode`, `fleetnode`), as kubectl does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let all: Vec<String> = Self::ALL
                    .iter()
                    .map(|k| k.as_str().to_ascii_lowercase())
                    .collect();
                format!("unknown kind `{s}`; expected one of: {}", all.join(", "))
            })
    }
}

/// A kind and a name: `fleetnode/edge-tokyo-02`, as kubectl writes it (and as it is
/// serialized).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ObjectRef {
    pub kind: ObjectKind,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: ObjectKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.kind.as_str().to_ascii_lowercase(),
            self.name
        )
    }
}

impl From<ObjectRef> for String {
    fn from(r: ObjectRef) -> Self {
        r.to_string()
    }
}

impl TryFrom<String> for ObjectRef {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for ObjectRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not of the form kind/name"))?;
        if name.is_empty() {
            return Err(format!("`{s}` has no name after the kind"));
        }
        Ok(ObjectRef::new(kind.parse()?, name))
    }
}

/// One desired object. Specs are shared (`Arc`) between the desired state, the live
/// state and the plan, so that a 100,000-node plan does not copy 100,000 specs.
/// Serialized as `{kind, name, spec}`; the spec is read back according to the kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ObjectWire", into = "ObjectWire")]
pub struct FleetObject {
    pub name: String,
    pub spec: Arc<Spec>,
}

impl FleetObject {
    pub fn new(name: impl Into<String>, spec: Spec) -> Self {
        Self {
            name: name.into(),
            spec: Arc::new(spec),
        }
    }

    pub fn kind(&self) -> ObjectKind {
        self.spec.kind()
    }

    pub fn reference(&self) -> ObjectRef {
        ObjectRef::new(self.kind(), self.name.clone())
    }

    /// The objects this one names in its spec, which must exist before it does.
    pub fn references(&self) -> Vec<ObjectRef> {
        self.spec.references()
    }
}

#[derive(Serialize, Deserialize)]
struct ObjectWire {
    kind: ObjectKind,
    name: String,
    spec: Value,
}

impl From<FleetObject> for ObjectWire {
    fn from(o: FleetObject) -> Self {
        Self {
            kind: o.kind(),
            spec: o.spec.to_json(),
            name: o.name,
        }
    }
}

impl TryFrom<ObjectWire> for FleetObject {
    type Error = serde_json::Error;

    fn try_from(w: ObjectWire) -> Result<Self, Self::Error> {
        Ok(FleetObject::new(w.name, Spec::from_json(w.kind, w.spec)?))
    }
}

/// The resolved spec of any fleet object. It serializes as the bare spec (what the
/// cluster object carries); reading one back needs the kind, see [`Spec::from_json`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Spec {
    FleetTemplate(FleetTemplateSpec),
    FleetNode(FleetNodeSpec),
    SdwanNetwork(SdwanNetworkSpec),
    SdwanPeer(SdwanPeerSpec),
    VirtualIp(VirtualIpSpec),
}

impl Spec {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Spec::FleetTemplate(_) => ObjectKind::FleetTemplate,
            Spec::FleetNode(_) => ObjectKind::FleetNode,
            Spec::SdwanNetwork(_) => ObjectKind::SdwanNetwork,
            Spec::SdwanPeer(_) => ObjectKind::SdwanPeer,
            Spec::VirtualIp(_) => ObjectKind::VirtualIp,
        }
    }

    /// Reads the spec of a `kind` object from its JSON, as the API server returns it.
    pub fn from_json(kind: ObjectKind, json: Value) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            ObjectKind::FleetTemplate => Spec::FleetTemplate(serde_json::from_value(json)?),
            ObjectKind::FleetNode => Spec::FleetNode(serde_json::from_value(json)?),
            ObjectKind::SdwanNetwork => Spec::SdwanNetwork(serde_json::from_value(json)?),
            ObjectKind::SdwanPeer => Spec::SdwanPeer(serde_json::from_value(json)?),
            ObjectKind::VirtualIp => Spec::VirtualIp(serde_json::from_value(json)?),
        })
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("specs are plain data and always serialize")
    }

    /// The template this one extends, for templates.
    pub fn extends(&self) -> Option<&str> {
        match self {
            Spec::FleetTemplate(t) => t.extends.as_deref(),
            _ => None,
        }
    }

    /// The objects this spec names, which must exist before an object with it does.
    pub fn references(&self) -> Vec<ObjectRef> {
        let mut out = Vec::new();
        self.for_each_reference(|kind, name| out.push(ObjectRef::new(kind, name)));
        out
    }

    /// Calls `f` with each object this spec names, without allocating per reference
    /// (the planner visits every reference of every object).
    pub fn for_each_reference(&self, mut f: impl FnMut(ObjectKind, &str)) {
        match self {
            Spec::FleetTemplate(t) => {
                if let Some(parent) = &t.extends {
                    f(ObjectKind::FleetTemplate, parent);
                }
            }
            Spec::FleetNode(n) => f(ObjectKind::FleetTemplate, &n.template),
            Spec::SdwanNetwork(_) => {}
            Spec::SdwanPeer(p) => {
                f(ObjectKind::SdwanNetwork, &p.network);
                f(ObjectKind::FleetNode, &p.host);
            }
            Spec::VirtualIp(v) => {
                f(ObjectKind::SdwanNetwork, &v.network);
                let mut peer = String::new();
                for holder in std::iter::once(&v.primary_holder).chain(&v.failover_holders) {
                    peer.clear();
                    peer.push_str(&v.network);
                    peer.push('.');
                    peer.push_str(holder);
                    f(ObjectKind::SdwanPeer, &peer);
                }
            }
        }
    }
}

/// The object name of a peer: `<network>.<host>`.
pub fn peer_name(network: &str, host: &str) -> String {
    format!("{network}.{host}")
}

/// A module list. Shared: the nodes of a template that add no modules of their own all
/// point at the template's list.
pub type Modules = Arc<[String]>;

/// String labels, sorted by key. A flat sorted vector: a fleet has one small map per
/// node, and a tree map's node is ~500 bytes even for one entry.
pub type Metadata = LiteMap<String, String>;

/// Desired state of a node template, inheritance applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetTemplateSpec {
    /// The template this one extends, if any (informational: the values below already include the parent's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Operating system image of the nodes, such as `ubuntu-24.04-amd64`.
    pub node_platform: String,
    /// CPU architecture of the nodes: `amd64` or `arm64`.
    pub architecture: Architecture,
    /// Modules installed on the nodes, inherited ones first: `name`, `name@1.2.3`, `name@blessed` or `name@live`.
    #[serde(default)]
    pub modules: Modules,
    /// Free-form string labels, the parent's merged with this template's (this template wins).
    #[serde(default, skip_serializing_if = "LiteMap::is_empty")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub metadata: Metadata,
}

/// Desired state of a machine, resolved against its template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetNodeSpec {
    /// The template the node was declared with.
    pub template: String,
    /// Operating system image, from the template.
    pub node_platform: String,
    /// CPU architecture, from the template.
    pub architecture: Architecture,
    /// Modules: the template's, then the node's own.
    #[serde(default)]
    pub modules: Modules,
    /// String labels: the template's merged with the node's (the node wins).
    #[serde(default, skip_serializing_if = "LiteMap::is_empty")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub metadata: Metadata,
    /// Where the machine runs, such as `ap-tokyo-1`.
    pub region: String,
    /// Machine size, such as `t3-medium`.
    pub instance_type: String,
    /// `persistent` machines are kept; `ephemeral` ones may be replaced at any time.
    pub lifecycle_class: LifecycleClass,
}

/// Desired state of an SD-WAN network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SdwanNetworkSpec {
    /// How routes are exchanged: `ibgp`, `ebgp` or `static`.
    pub routing_mode: RoutingMode,
}

/// Desired state of one node's membership in an SD-WAN network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SdwanPeerSpec {
    /// The SdwanNetwork this peer belongs to.
    pub network: String,
    /// The FleetNode that is the peer.
    pub host: String,
    /// Whether other peers can reach this one from the internet.
    #[serde(default)]
    pub publicly_reachable: bool,
}

/// Desired state of a virtual IP held by one peer and failed over to others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualIpSpec {
    /// The SdwanNetwork the virtual IP lives in.
    pub network: String,
    /// The host (a peer of the network) that holds the address normally.
    pub primary_holder: String,
    /// Hosts (peers of the network) that take over, in order of preference.
    #[serde(default)]
    pub failover_holders: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_and_kind_directed_json() {
        let vip = Spec::from_json(
            ObjectKind::VirtualIp,
            json!({"network": "net", "primaryHolder": "a", "failoverHolders": ["b"]}),
        )
        .unwrap();
        let refs: Vec<String> = vip.references().iter().map(|r| r.to_string()).collect();
        assert_eq!(
            refs,
            ["sdwannetwork/net", "sdwanpeer/net.a", "sdwanpeer/net.b"]
        );
        assert_eq!(
            vip.to_json(),
            json!({"network": "net", "primaryHolder": "a", "failoverHolders": ["b"]})
        );
        let err = Spec::from_json(ObjectKind::FleetNode, json!({"template": 3})).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        let empty_lists = Spec::from_json(
            ObjectKind::VirtualIp,
            json!({"network": "net", "primaryHolder": "a"}),
        )
        .unwrap();
        assert_eq!(
            empty_lists,
            Spec::from_json(
                ObjectKind::VirtualIp,
                json!({"network": "net", "primaryHolder": "a", "failoverHolders": []})
            )
            .unwrap()
        );
    }

    #[test]
    fn object_refs_parse_like_kubectl() {
        let r: ObjectRef = "fleetnode/edge-tokyo-02".parse().unwrap();
        assert_eq!(r, ObjectRef::new(ObjectKind::FleetNode, "edge-tokyo-02"));
        assert_eq!(r.to_string(), "fleetnode/edge-tokyo-02");
        assert_eq!(
            " FleetNode/x".parse::<ObjectRef>().unwrap().kind,
            ObjectKind::FleetNode
        );
        assert!(
            "node/x"
                .parse::<ObjectRef>()
                .unwrap_err()
                .contains("unknown kind `node`")
        );
        assert!("fleetnode".parse::<ObjectRef>().is_err());
        assert!("fleetnode/".parse::<ObjectRef>().is_err());
    }
}
