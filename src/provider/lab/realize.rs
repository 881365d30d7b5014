//! One pass of the lab over a namespace's fleet objects: tear down what no object asks for
//! any more, make what is missing, then read back what is there and decide what to report.
//! Every pass looks at the machine afresh (level-triggered): a link set down by hand, a
//! daemon that died or a namespace deleted behind the lab's back is found and repaired.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::ResourceExt;
use tokio::time::Instant;

use super::daemon::{DaemonKind, Daemons};
use super::faults::{self, Faults};
use super::placed::Placed;
use super::report::{self, Common, Report};
use super::state::{NetworkRecord, NodeRecord, State};
use super::{LabError, keepalived, make, naming, routing, sys, vips};
use crate::api::fleet::{
    FleetNode, NodeAddress, NodeAddressType, PeerSession, SdwanNetwork, SdwanPeer, VirtualIp,
};

/// Where a process in a node's namespace finds the node's files.
pub const ETC_MOUNT_POINT: &str = "/etc/fleetgate";

/// The namespace's fleet objects, without those being deleted.
#[derive(Default, Clone)]
pub struct World {
    pub nodes: Vec<Arc<FleetNode>>,
    pub networks: Vec<Arc<SdwanNetwork>>,
    pub peers: Vec<Arc<SdwanPeer>>,
    pub vips: Vec<Arc<VirtualIp>>,
}

pub struct NodeOutcome {
    pub report: Report,
    pub provider_id: Option<String>,
    pub addresses: Vec<NodeAddress>,
}

pub struct PeerOutcome {
    pub report: Report,
    pub address: Option<String>,
    pub sessions: Vec<PeerSession>,
}

pub struct VipOutcome {
    pub report: Report,
    pub address: Option<String>,
    pub holder: Option<String>,
}

/// What to report of each object, by name.
#[derive(Default)]
pub struct Outcomes {
    pub nodes: BTreeMap<String, NodeOutcome>,
    pub networks: BTreeMap<String, Report>,
    pub peers: BTreeMap<String, PeerOutcome>,
    pub vips: BTreeMap<String, VipOutcome>,
}

pub struct Lab {
    pub instance: String,
    pub namespace: String,
    state_path: PathBuf,
    pub(super) state: State,
    daemons: Daemons,
    /// When each object was first reported Available at a generation: the fault clocks.
    ready_since: HashMap<(&'static str, String), (Option<i64>, Instant)>,
    /// Objects reported Available at some generation (a later one is then `Updating`).
    available_before: HashSet<(&'static str, String)>,
}

pub(super) fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl Lab {
    pub fn open(instance: &str, namespace: &str, state_dir: &Path) -> Result<Self, LabError> {
        let io = |source| LabError::Io {
            path: state_dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        // `ip netns exec` mounts /etc/netns/<name>/fleetgate over /etc/fleetgate: the
        // mount point must exist. It stays empty on the machine itself.
        std::fs::create_dir_all(ETC_MOUNT_POINT).map_err(|source| LabError::Io {
            path: ETC_MOUNT_POINT.into(),
            source,
        })?;
        let state_path = state_dir.join("state.json");
        let state = State::load(&state_path).map_err(|source| LabError::Io {
            path: state_path.clone(),
            source,
        })?;
        Ok(Self {
            instance: instance.to_owned(),
            namespace: namespace.to_owned(),
            state_path,
            state,
            daemons: Daemons::new(state_dir),
            ready_since: HashMap::new(),
            available_before: HashSet::new(),
        })
    }

    pub(super) fn key(&self, name: &str) -> String {
        key(&self.namespace, name)
    }

    /// Whether the fault clock of `fault` on the object has run out at its generation.
    fn fault_fired(
        &self,
        kind: &'static str,
        name: &str,
        generation: Option<i64>,
        after: Option<std::time::Duration>,
    ) -> bool {
        let Some(after) = after else { return false };
        self.ready_since
            .get(&(kind, name.to_owned()))
            .is_some_and(|(g, since)| *g == generation && since.elapsed() >= after)
    }

    /// Starts or keeps the fault clock of an object reported `report`.
    fn clock(&mut self, kind: &'static str, name: &str, generation: Option<i64>, report: &Report) {
        let id = (kind, name.to_owned());
        if report.0 == crate::api::fleet::ProviderReason::Available {
            self.available_before.insert(id.clone());
            if self
                .ready_since
                .get(&id)
                .is_none_or(|(g, _)| *g != generation)
            {
                self.ready_since.insert(id, (generation, Instant::now()));
            }
        }
    }

    fn common(
        &self,
        kind: &'static str,
        name: &str,
        faults: &Result<Faults, String>,
        was_ready: bool,
    ) -> Common {
        Common {
            fault_error: faults.as_ref().err().cloned(),
            alloc_error: None,
            never_ready: faults.as_ref().is_ok_and(|f| f.never_ready),
            was_available: was_ready || self.available_before.contains(&(kind, name.to_owned())),
        }
    }

    pub(super) fn save(&self) -> Result<(), LabError> {
        self.state
            .save(&self.state_path)
            .map_err(|source| LabError::Io {
                path: self.state_path.clone(),
                source,
            })
    }

    /// One pass: converge the machine on `world` and say what to report.
    pub async fn pass(&mut self, world: &World) -> Result<Outcomes, LabError> {
        self.daemons.reap();
        self.tear_down(world).await?;
        let mut pass = Pass::default();
        // Name and address what is new, then make it.
        self.allocate_nodes(world, &mut pass);
        self.allocate_networks(world, &mut pass);
        self.save()?;
        self.remove_orphans().await?;
        self.make_nodes_and_networks(world, &mut pass).await?;
        self.place_peers(world, &mut pass);
        self.save()?;
        wire_links(&mut pass).await?;
        self.route(world, &mut pass).await?;
        self.hold_vips(world, &mut pass).await;
        self.save()?;
        self.run_keepalived(&mut pass).await?;
        self.report(world, pass).await
    }

    fn allocate_nodes(&mut self, world: &World, pass: &mut Pass) {
        for node in &world.nodes {
            let name = node.name_any();
            let f = faults::parse(node.annotations(), node.metadata.generation);
            let was_ready = node
                .status
                .as_ref()
                .is_some_and(|s| is_ready(&s.conditions));
            let mut facts = report::NodeFacts {
                common: self.common("FleetNode", &name, &f, was_ready),
                ..Default::default()
            };
            let netns = naming::netns(&self.instance, "FleetNode", &self.namespace, &name);
            match self
                .state
                .node(&self.key(&name), netns, &node.uid().unwrap_or_default())
            {
                Ok(record) => {
                    facts.failed = f.as_ref().is_ok_and(|f| {
                        self.fault_fired("FleetNode", &name, node.metadata.generation, f.fail_after)
                    });
                    pass.node_records.insert(name.clone(), record);
                }
                Err(e) => facts.common.alloc_error = Some(e),
            }
            pass.node_facts.insert(name, facts);
        }
    }

    fn allocate_networks(&mut self, world: &World, pass: &mut Pass) {
        for network in &world.networks {
            let name = network.name_any();
            let f = faults::parse(network.annotations(), network.metadata.generation);
            let was_ready = network
                .status
                .as_ref()
                .is_some_and(|s| is_ready(&s.conditions));
            let mut facts = report::NetworkFacts {
                common: self.common("SdwanNetwork", &name, &f, was_ready),
                ..Default::default()
            };
            let netns = naming::netns(&self.instance, "SdwanNetwork", &self.namespace, &name);
            match self
                .state
                .network(&self.key(&name), netns, &network.uid().unwrap_or_default())
            {
                Ok(record) => {
                    pass.network_records.insert(name.clone(), record);
                }
                Err(e) => facts.common.alloc_error = Some(e),
            }
            pass.network_facts.insert(name, facts);
        }
    }

    async fn make_nodes_and_networks(
        &self,
        world: &World,
        pass: &mut Pass,
    ) -> Result<(), LabError> {
        for (name, record) in &pass.node_records {
            let spec = world
                .nodes
                .iter()
                .find(|n| n.name_any() == *name)
                .expect("listed");
            make::node(&self.namespace, record, spec).await?;
            pass.node_facts.get_mut(name).expect("listed").netns = Some(record.netns.clone());
        }
        for (name, record) in &pass.network_records {
            make::network(record).await?;
            pass.network_facts.get_mut(name).expect("listed").netns = Some(record.netns.clone());
        }
        Ok(())
    }

    /// Peers: placed when their node and network are.
    fn place_peers(&mut self, world: &World, pass: &mut Pass) {
        for peer in &world.peers {
            let name = peer.name_any();
            let spec = &peer.spec.resolved;
            let f = faults::parse(peer.annotations(), peer.metadata.generation);
            let was_ready = peer
                .status
                .as_ref()
                .is_some_and(|s| is_ready(&s.conditions));
            let mut facts = report::PeerFacts {
                common: self.common("SdwanPeer", &name, &f, was_ready),
                ..Default::default()
            };
            let node = pass.node_records.get(&spec.host);
            let network = pass.network_records.get(&spec.network);
            match (node, network) {
                (Some(node), Some(network)) => {
                    match self.state.peer(
                        &self.key(&name),
                        &self.key(&spec.network),
                        &self.key(&spec.host),
                    ) {
                        Ok(record) => {
                            facts.node_failed =
                                pass.node_facts.get(&spec.host).is_some_and(|n| n.failed);
                            facts.link_dropped = f.as_ref().is_ok_and(|f| {
                                self.fault_fired(
                                    "SdwanPeer",
                                    &name,
                                    peer.metadata.generation,
                                    f.link_drop_after,
                                )
                            });
                            pass.placed.push(Placed {
                                name: name.clone(),
                                spec_host: spec.host.clone(),
                                record,
                                node: node.clone(),
                                network: network.clone(),
                                network_name: spec.network.clone(),
                            });
                        }
                        Err(e) => facts.common.alloc_error = Some(e),
                    }
                }
                _ => {
                    let mut missing = Vec::new();
                    if node.is_none() {
                        missing.push(format!("FleetNode `{}`", spec.host));
                    }
                    if network.is_none() {
                        missing.push(format!("SdwanNetwork `{}`", spec.network));
                    }
                    facts.waiting_for = Some(missing.join(" and "));
                }
            }
            pass.peer_facts.insert(name, facts);
        }
    }

    /// Routing, per network.
    async fn route(&self, world: &World, pass: &mut Pass) -> Result<(), LabError> {
        for network in &world.networks {
            let name = network.name_any();
            let members: Vec<&Placed> = pass
                .placed
                .iter()
                .filter(|p| p.network_name == name)
                .collect();
            let all_peers: Vec<&Arc<SdwanPeer>> = world
                .peers
                .iter()
                .filter(|p| p.spec.resolved.network == name)
                .collect();
            let sessions = routing::route(
                &self.daemons,
                network.spec.resolved.routing_mode,
                &members,
                &all_peers,
                &mut pass.wanted_daemons,
            )
            .await?;
            for (peer, sessions) in sessions {
                if let Some(f) = pass.peer_facts.get_mut(&peer) {
                    f.sessions = sessions;
                }
            }
        }
        Ok(())
    }

    /// Virtual IPs: keepalived on each holder that is placed.
    async fn hold_vips(&mut self, world: &World, pass: &mut Pass) {
        for vip in &world.vips {
            let name = vip.name_any();
            let spec = &vip.spec.resolved;
            let f = faults::parse(vip.annotations(), vip.metadata.generation);
            let was_ready = vip.status.as_ref().is_some_and(|s| is_ready(&s.conditions));
            let mut facts = report::VipFacts {
                common: self.common("VirtualIp", &name, &f, was_ready),
                ..Default::default()
            };
            let Some(network) = pass.network_records.get(&spec.network) else {
                facts.waiting_for = Some(format!("SdwanNetwork `{}`", spec.network));
                pass.vip_facts.insert(name, facts);
                continue;
            };
            let record = match self.state.vip(&self.key(&name), &self.key(&spec.network)) {
                Ok(r) => r,
                Err(e) => {
                    facts.common.alloc_error = Some(e);
                    pass.vip_facts.insert(name, facts);
                    continue;
                }
            };
            let address = network.address(record.octet);
            facts.address = Some(address.to_string());
            if !vips::add_instances(
                &mut pass.holders,
                &name,
                spec,
                address,
                record.octet - 191,
                &pass.placed,
            ) {
                facts.waiting_for = Some("a holder's SdwanPeer".into());
            } else {
                let macs: Vec<(String, String)> = pass
                    .placed
                    .iter()
                    .filter(|p| p.network_name == spec.network)
                    .filter_map(|p| {
                        let link = pass.link(p)?;
                        Some((link.address.clone()?, p.spec_host.clone()))
                    })
                    .collect();
                facts.holder = vips::holder(network, address, &macs).await;
            }
            pass.vip_facts.insert(name, facts);
        }
    }

    /// keepalived for each holder, and no daemon that nothing wants any more.
    async fn run_keepalived(&mut self, pass: &mut Pass) -> Result<(), LabError> {
        for (stem, (netns, host, list)) in &pass.holders {
            pass.wanted_daemons
                .insert((DaemonKind::Keepalived, stem.clone()));
            self.daemons
                .ensure(
                    DaemonKind::Keepalived,
                    stem,
                    netns,
                    &keepalived::config(host, list),
                )
                .await?;
        }
        for kind in [DaemonKind::Bird, DaemonKind::Keepalived] {
            for stem in self.daemons.known(kind) {
                if !pass.wanted_daemons.contains(&(kind, stem.clone())) {
                    self.daemons.stop(kind, &stem).await;
                }
            }
        }
        Ok(())
    }

    /// Read back and report.
    async fn report(&mut self, world: &World, mut pass: Pass) -> Result<Outcomes, LabError> {
        let mut out = Outcomes::default();
        for node in &world.nodes {
            let name = node.name_any();
            let outcome = self.report_node(node, &mut pass);
            out.nodes.insert(name, outcome);
        }
        for network in &world.networks {
            let name = network.name_any();
            let mut facts = pass.network_facts.remove(&name).expect("listed");
            if let Some(record) = pass.network_records.get(&name) {
                facts.bridge_up = sys::interfaces(&record.netns)
                    .await?
                    .unwrap_or_default()
                    .iter()
                    .any(|i| i.ifname == naming::BRIDGE && i.admin_up());
            }
            let report = report::network(&facts);
            self.clock("SdwanNetwork", &name, network.metadata.generation, &report);
            out.networks.insert(name, report);
        }
        for peer in &world.peers {
            let name = peer.name_any();
            let mut facts = pass.peer_facts.remove(&name).expect("listed");
            // In a stable order, so that a status changes only when a session does.
            facts.sessions.sort_by(|a, b| a.peer.cmp(&b.peer));
            let p = pass.placed.iter().find(|p| p.name == name);
            facts.link_up = p.and_then(|p| pass.link(p)).map(sys::Interface::is_up);
            let report = report::peer(&facts);
            self.clock("SdwanPeer", &name, peer.metadata.generation, &report);
            out.peers.insert(
                name,
                PeerOutcome {
                    report,
                    address: p.map(|p| p.address().to_string()),
                    sessions: facts.sessions,
                },
            );
        }
        for vip in &world.vips {
            let name = vip.name_any();
            let facts = pass.vip_facts.remove(&name).expect("listed");
            let report = report::vip(&facts);
            self.clock("VirtualIp", &name, vip.metadata.generation, &report);
            out.vips.insert(
                name,
                VipOutcome {
                    report,
                    address: facts.address,
                    holder: facts.holder,
                },
            );
        }
        Ok(out)
    }

    /// A node's report: its loopback and links as read back, its addresses.
    fn report_node(&mut self, node: &FleetNode, pass: &mut Pass) -> NodeOutcome {
        let name = node.name_any();
        let mut facts = pass.node_facts.remove(&name).expect("listed");
        let record = pass.node_records.get(&name);
        if let Some(record) = record {
            let ifaces = pass
                .node_ifaces
                .get(&name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let loopback = format!("{}/32", record.address());
            facts.loopback_up = ifaces
                .iter()
                .any(|i| i.ifname == "lo" && i.admin_up() && i.has_address(&loopback));
            facts.links = pass
                .placed
                .iter()
                .filter(|p| p.spec_host == name)
                .map(|p| {
                    let up = pass.link(p).is_some_and(sys::Interface::is_up);
                    (p.network_name.clone(), up)
                })
                .collect();
        }
        let report = report::node(&facts);
        self.clock("FleetNode", &name, node.metadata.generation, &report);
        let mut addresses = Vec::new();
        if let Some(record) = record {
            addresses.push(NodeAddress {
                type_: NodeAddressType::Hostname,
                address: name.clone(),
            });
            addresses.push(NodeAddress {
                type_: NodeAddressType::InternalIp,
                address: record.address().to_string(),
            });
            for p in pass.placed.iter().filter(|p| p.spec_host == name) {
                addresses.push(NodeAddress {
                    type_: NodeAddressType::InternalIp,
                    address: p.address().to_string(),
                });
            }
        }
        NodeOutcome {
            report,
            provider_id: record.map(|r| naming::provider_id(&self.instance, &r.netns)),
            addresses,
        }
    }
}

/// What one pass found and made so far, step by step.
#[derive(Default)]
struct Pass {
    node_records: BTreeMap<String, NodeRecord>,
    node_facts: BTreeMap<String, report::NodeFacts>,
    network_records: BTreeMap<String, NetworkRecord>,
    network_facts: BTreeMap<String, report::NetworkFacts>,
    placed: Vec<Placed>,
    peer_facts: BTreeMap<String, report::PeerFacts>,
    /// Each node's interfaces, read back after the links were made.
    node_ifaces: BTreeMap<String, Vec<sys::Interface>>,
    wanted_daemons: BTreeSet<(DaemonKind, String)>,
    holders: vips::Holders,
    vip_facts: BTreeMap<String, report::VipFacts>,
}

impl Pass {
    /// The link of a placed peer, as read back in its node's namespace.
    fn link(&self, p: &Placed) -> Option<&sys::Interface> {
        self.node_ifaces
            .get(&p.spec_host)?
            .iter()
            .find(|i| i.ifname == p.link())
    }
}

/// Links, with each node's links it no longer needs removed; then each node's
/// interfaces read back.
async fn wire_links(pass: &mut Pass) -> Result<(), LabError> {
    for record in pass.node_records.values() {
        let wanted: BTreeSet<String> = pass
            .placed
            .iter()
            .filter(|p| p.node.netns == record.netns)
            .map(Placed::link)
            .collect();
        for iface in sys::interfaces(&record.netns).await?.unwrap_or_default() {
            if iface.ifname.starts_with("fgw") && !wanted.contains(&iface.ifname) {
                sys::ip(&["-n", &record.netns, "link", "del", &iface.ifname]).await?;
            }
        }
    }
    for p in &pass.placed {
        let facts = &pass.peer_facts[&p.name];
        let up = !(facts.node_failed || facts.link_dropped);
        make::link(p, up).await?;
    }
    for (name, record) in &pass.node_records {
        let ifaces = sys::interfaces(&record.netns).await?.unwrap_or_default();
        pass.node_ifaces.insert(name.clone(), ifaces);
    }
    Ok(())
}

fn is_ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    crate::api::condition(conditions, "Ready").is_some_and(|c| c.status == "True")
}
