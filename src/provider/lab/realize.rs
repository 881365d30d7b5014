//! One pass of the lab over a namespace's fleet objects: tear down what no object asks for
//! any more, make what is missing, then read back what is there and decide what to report.
//! Every pass looks at the machine afresh (level-triggered): a link set down by hand, a
//! daemon that died or a namespace deleted behind the lab's back is found and repaired.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::ResourceExt;
use tokio::time::Instant;

use super::daemon::{DaemonKind, Daemons};
use super::faults::{self, Faults};
use super::report::{self, Common, Report};
use super::state::{NetworkRecord, NodeRecord, PROBE_OCTET, PeerRecord, State};
use super::{LabError, bird, keepalived, naming, sys};
use crate::api::fleet::{
    FleetNode, NodeAddress, NodeAddressType, PeerSession, SdwanNetwork, SdwanPeer, SessionProtocol,
    SessionState, VirtualIp,
};
use crate::fleet::model::RoutingMode;

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

/// A peer the pass could place: its records and its node's and network's.
struct Placed {
    name: String,
    spec_host: String,
    record: PeerRecord,
    node: NodeRecord,
    network: NetworkRecord,
    network_name: String,
}

impl Placed {
    fn address(&self) -> Ipv4Addr {
        self.network.address(self.record.octet)
    }
    fn link(&self) -> String {
        naming::node_link(self.network.index)
    }
    fn stem(&self) -> String {
        format!("{}-{}", self.network.index, self.record.octet)
    }
}

pub struct Lab {
    pub instance: String,
    pub namespace: String,
    state_path: PathBuf,
    state: State,
    daemons: Daemons,
    /// When each object was first reported Available at a generation: the fault clocks.
    ready_since: HashMap<(&'static str, String), (Option<i64>, Instant)>,
    /// Objects reported Available at some generation (a later one is then `Updating`).
    available_before: HashSet<(&'static str, String)>,
}

fn key(namespace: &str, name: &str) -> String {
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

    fn key(&self, name: &str) -> String {
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

    fn save(&self) -> Result<(), LabError> {
        self.state
            .save(&self.state_path)
            .map_err(|source| LabError::Io {
                path: self.state_path.clone(),
                source,
            })
    }

    /// Removes what no object asks for any more: records whose object is gone (or was
    /// created again under its name), their namespaces, links and daemons, and namespaces
    /// of this instance that no record names (left by a crash between making and recording).
    async fn tear_down(&mut self, world: &World) -> Result<(), LabError> {
        let uids = |items: Vec<(String, Option<String>)>| -> BTreeMap<String, String> {
            items
                .into_iter()
                .map(|(n, u)| (key(&self.namespace, &n), u.unwrap_or_default()))
                .collect()
        };
        let nodes = uids(
            world
                .nodes
                .iter()
                .map(|o| (o.name_any(), o.uid()))
                .collect(),
        );
        let networks = uids(
            world
                .networks
                .iter()
                .map(|o| (o.name_any(), o.uid()))
                .collect(),
        );
        let peers: BTreeSet<String> = world
            .peers
            .iter()
            .map(|p| self.key(&p.name_any()))
            .collect();
        let vips: BTreeSet<String> = world.vips.iter().map(|v| self.key(&v.name_any())).collect();
        let mine = |k: &String| k.starts_with(&format!("{}/", self.namespace));

        let gone_nodes: Vec<String> = self
            .state
            .nodes
            .iter()
            .filter(|(k, r)| mine(k) && nodes.get(*k) != Some(&r.uid))
            .map(|(k, _)| k.clone())
            .collect();
        let gone_networks: Vec<String> = self
            .state
            .networks
            .iter()
            .filter(|(k, r)| mine(k) && networks.get(*k) != Some(&r.uid))
            .map(|(k, _)| k.clone())
            .collect();
        let gone_peers: Vec<String> = self
            .state
            .peers
            .iter()
            .filter(|(k, r)| {
                mine(k)
                    && (!peers.contains(*k)
                        || gone_nodes.contains(&r.node)
                        || gone_networks.contains(&r.network))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone_peers {
            if let Some(r) = self.state.peers.remove(&k)
                && let Some(net) = self.state.networks.get(&r.network)
            {
                let port = naming::bridge_port(r.octet);
                if sys::netns_exists(&net.netns) {
                    let _ = sys::ip(&["-n", &net.netns, "link", "del", &port]).await;
                }
            }
        }
        self.state
            .vips
            .retain(|k, v| !mine(k) || (vips.contains(k) && !gone_networks.contains(&v.network)));
        for k in gone_networks {
            if let Some(r) = self.state.networks.remove(&k) {
                sys::netns_delete(&r.netns).await?;
            }
        }
        for k in gone_nodes {
            if let Some(r) = self.state.nodes.remove(&k) {
                sys::netns_delete(&r.netns).await?;
            }
        }
        self.save()
    }

    /// Namespaces of this instance no record names.
    async fn remove_orphans(&self) -> Result<(), LabError> {
        let known: BTreeSet<&str> = self.state.namespaces().collect();
        for netns in sys::list_netns(&naming::instance_prefix(&self.instance)) {
            if !known.contains(netns.as_str()) {
                tracing::info!(%netns, "removing a namespace no object asks for");
                sys::netns_delete(&netns).await?;
            }
        }
        Ok(())
    }

    /// One pass: converge the machine on `world` and say what to report.
    pub async fn pass(&mut self, world: &World) -> Result<Outcomes, LabError> {
        self.daemons.reap();
        self.tear_down(world).await?;
        let mut out = Outcomes::default();

        // Name and address what is new, then make it.
        let mut node_records: BTreeMap<String, NodeRecord> = BTreeMap::new();
        let mut node_facts: BTreeMap<String, report::NodeFacts> = BTreeMap::new();
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
                    node_records.insert(name.clone(), record);
                }
                Err(e) => facts.common.alloc_error = Some(e),
            }
            node_facts.insert(name, facts);
        }
        let mut network_records: BTreeMap<String, NetworkRecord> = BTreeMap::new();
        let mut network_facts: BTreeMap<String, report::NetworkFacts> = BTreeMap::new();
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
                    network_records.insert(name.clone(), record);
                }
                Err(e) => facts.common.alloc_error = Some(e),
            }
            network_facts.insert(name, facts);
        }
        self.save()?;
        self.remove_orphans().await?;

        for (name, record) in &node_records {
            let spec = world
                .nodes
                .iter()
                .find(|n| n.name_any() == *name)
                .expect("listed");
            self.make_node(record, spec).await?;
            node_facts.get_mut(name).expect("listed").netns = Some(record.netns.clone());
        }
        for (name, record) in &network_records {
            self.make_network(record).await?;
            network_facts.get_mut(name).expect("listed").netns = Some(record.netns.clone());
        }

        // Peers: placed when their node and network are.
        let mut placed: Vec<Placed> = Vec::new();
        let mut peer_facts: BTreeMap<String, report::PeerFacts> = BTreeMap::new();
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
            let node = node_records.get(&spec.host);
            let network = network_records.get(&spec.network);
            match (node, network) {
                (Some(node), Some(network)) => {
                    match self.state.peer(
                        &self.key(&name),
                        &self.key(&spec.network),
                        &self.key(&spec.host),
                    ) {
                        Ok(record) => {
                            facts.node_failed =
                                node_facts.get(&spec.host).is_some_and(|n| n.failed);
                            facts.link_dropped = f.as_ref().is_ok_and(|f| {
                                self.fault_fired(
                                    "SdwanPeer",
                                    &name,
                                    peer.metadata.generation,
                                    f.link_drop_after,
                                )
                            });
                            placed.push(Placed {
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
            peer_facts.insert(name, facts);
        }
        self.save()?;

        // Links, with each node's links it no longer needs removed.
        let mut node_ifaces: BTreeMap<String, Vec<sys::Interface>> = BTreeMap::new();
        for record in node_records.values() {
            let wanted: BTreeSet<String> = placed
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
        for p in &placed {
            let facts = &peer_facts[&p.name];
            let up = !(facts.node_failed || facts.link_dropped);
            self.make_link(p, up).await?;
        }
        for (name, record) in &node_records {
            node_ifaces.insert(
                name.clone(),
                sys::interfaces(&record.netns).await?.unwrap_or_default(),
            );
        }
        let link_up = |p: &Placed| -> Option<bool> {
            node_ifaces
                .get(&p.spec_host)?
                .iter()
                .find(|i| i.ifname == p.link())
                .map(sys::Interface::is_up)
        };

        // Routing, per network.
        let mut wanted_daemons: BTreeSet<(DaemonKind, String)> = BTreeSet::new();
        for network in &world.networks {
            let name = network.name_any();
            let members: Vec<&Placed> = placed.iter().filter(|p| p.network_name == name).collect();
            let all_peers: Vec<&Arc<SdwanPeer>> = world
                .peers
                .iter()
                .filter(|p| p.spec.resolved.network == name)
                .collect();
            match network.spec.resolved.routing_mode {
                RoutingMode::Static => {
                    for p in &members {
                        let sessions = self.static_routes(p, &members, &all_peers).await?;
                        if let Some(f) = peer_facts.get_mut(&p.name) {
                            f.sessions = sessions;
                        }
                    }
                }
                mode @ (RoutingMode::Ibgp | RoutingMode::Ebgp) => {
                    let ibgp = mode == RoutingMode::Ibgp;
                    let speakers: Vec<bird::Speaker> = all_peers
                        .iter()
                        .map(|peer| {
                            let placed = members.iter().find(|m| m.name == peer.name_any());
                            bird::Speaker {
                                host: peer.spec.resolved.host.clone(),
                                address: placed.map_or(Ipv4Addr::UNSPECIFIED, |p| p.address()),
                                asn: match placed {
                                    Some(p) if !ibgp => {
                                        bird::ebgp_as(p.network.index, p.record.octet)
                                    }
                                    _ => bird::IBGP_AS,
                                },
                                reflector: peer.spec.resolved.publicly_reachable,
                            }
                        })
                        .collect();
                    for p in &members {
                        let me = speakers
                            .iter()
                            .find(|s| s.host == p.spec_host)
                            .expect("listed");
                        let neighbours = bird::neighbours(me, &speakers, ibgp);
                        let configured: Vec<&bird::Speaker> = neighbours
                            .iter()
                            .copied()
                            .filter(|s| !s.address.is_unspecified())
                            .collect();
                        let stem = p.stem();
                        wanted_daemons.insert((DaemonKind::Bird, stem.clone()));
                        self.daemons
                            .ensure(
                                DaemonKind::Bird,
                                &stem,
                                &p.node.netns,
                                &bird::config(me, &configured, ibgp),
                            )
                            .await?;
                        let states: HashMap<String, SessionState> =
                            bird::protocols(&self.daemons.bird_socket(&stem))
                                .await
                                .unwrap_or_default()
                                .into_iter()
                                .map(|proto| (proto.name, proto.state))
                                .collect();
                        let sessions = neighbours
                            .iter()
                            .map(|n| PeerSession {
                                peer: n.host.clone(),
                                protocol: SessionProtocol::Bgp,
                                state: states
                                    .get(&bird::protocol_name(n.address))
                                    .filter(|_| !n.address.is_unspecified())
                                    .copied()
                                    .unwrap_or(SessionState::Idle),
                            })
                            .collect();
                        if let Some(f) = peer_facts.get_mut(&p.name) {
                            f.sessions = sessions;
                        }
                    }
                }
            }
        }

        // Virtual IPs: keepalived on each holder that is placed.
        let mut instances: BTreeMap<String, (String, Vec<keepalived::Instance>)> = BTreeMap::new();
        let mut vip_facts: BTreeMap<String, report::VipFacts> = BTreeMap::new();
        for vip in &world.vips {
            let name = vip.name_any();
            let spec = &vip.spec.resolved;
            let f = faults::parse(vip.annotations(), vip.metadata.generation);
            let was_ready = vip.status.as_ref().is_some_and(|s| is_ready(&s.conditions));
            let mut facts = report::VipFacts {
                common: self.common("VirtualIp", &name, &f, was_ready),
                ..Default::default()
            };
            let Some(network) = network_records.get(&spec.network) else {
                facts.waiting_for = Some(format!("SdwanNetwork `{}`", spec.network));
                vip_facts.insert(name, facts);
                continue;
            };
            let record = match self.state.vip(&self.key(&name), &self.key(&spec.network)) {
                Ok(r) => r,
                Err(e) => {
                    facts.common.alloc_error = Some(e);
                    vip_facts.insert(name, facts);
                    continue;
                }
            };
            let address = network.address(record.octet);
            facts.address = Some(address.to_string());
            let holders = std::iter::once(&spec.primary_holder).chain(&spec.failover_holders);
            let mut any = false;
            for (rank, host) in holders.enumerate() {
                let Some(p) = placed
                    .iter()
                    .find(|p| p.network_name == spec.network && p.spec_host == *host)
                else {
                    continue;
                };
                any = true;
                instances
                    .entry(p.stem())
                    .or_insert_with(|| (p.node.netns.clone(), Vec::new()))
                    .1
                    .push(keepalived::Instance {
                        name: name.clone(),
                        interface: p.link(),
                        router_id: record.octet - 191,
                        priority: keepalived::priority(rank),
                        address,
                    });
            }
            if !any {
                facts.waiting_for = Some("a holder's SdwanPeer".into());
            } else {
                let macs: Vec<(String, String)> = placed
                    .iter()
                    .filter(|p| p.network_name == spec.network)
                    .filter_map(|p| {
                        let mac = node_ifaces
                            .get(&p.spec_host)?
                            .iter()
                            .find(|i| i.ifname == p.link())?
                            .address
                            .clone()?;
                        Some((mac, p.spec_host.clone()))
                    })
                    .collect();
                let answered =
                    sys::who_answers(&network.netns, naming::BRIDGE, &address.to_string()).await;
                facts.holder = answered
                    .and_then(|mac| macs.into_iter().find(|(m, _)| *m == mac).map(|(_, h)| h));
            }
            vip_facts.insert(name, facts);
        }
        self.save()?;
        for (stem, (netns, list)) in &instances {
            let host = placed
                .iter()
                .find(|p| p.stem() == *stem)
                .map_or("", |p| p.spec_host.as_str());
            wanted_daemons.insert((DaemonKind::Keepalived, stem.clone()));
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
                if !wanted_daemons.contains(&(kind, stem.clone())) {
                    self.daemons.stop(kind, &stem).await;
                }
            }
        }

        // Read back and report.
        for node in &world.nodes {
            let name = node.name_any();
            let mut facts = node_facts.remove(&name).expect("listed");
            let record = node_records.get(&name);
            if let Some(record) = record {
                let ifaces = node_ifaces
                    .get(&name)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let loopback = format!("{}/32", record.address());
                facts.loopback_up = ifaces
                    .iter()
                    .any(|i| i.ifname == "lo" && i.admin_up() && i.has_address(&loopback));
                facts.links = placed
                    .iter()
                    .filter(|p| p.spec_host == name)
                    .map(|p| (p.network_name.clone(), link_up(p).unwrap_or(false)))
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
                for p in placed.iter().filter(|p| p.spec_host == name) {
                    addresses.push(NodeAddress {
                        type_: NodeAddressType::InternalIp,
                        address: p.address().to_string(),
                    });
                }
            }
            out.nodes.insert(
                name,
                NodeOutcome {
                    report,
                    provider_id: record.map(|r| naming::provider_id(&self.instance, &r.netns)),
                    addresses,
                },
            );
        }
        for network in &world.networks {
            let name = network.name_any();
            let mut facts = network_facts.remove(&name).expect("listed");
            if let Some(record) = network_records.get(&name) {
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
            let mut facts = peer_facts.remove(&name).expect("listed");
            // In a stable order, so that a status changes only when a session does.
            facts.sessions.sort_by(|a, b| a.peer.cmp(&b.peer));
            let p = placed.iter().find(|p| p.name == name);
            facts.link_up = p.and_then(link_up);
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
            let facts = vip_facts.remove(&name).expect("listed");
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

    /// The node's namespace, its own address on the loopback, and the files a process in
    /// it reads: /etc/fleetgate/node.json (its resolved spec) and /etc/hostname.
    async fn make_node(&self, record: &NodeRecord, node: &FleetNode) -> Result<(), LabError> {
        sys::netns_add(&record.netns).await?;
        let loopback = format!("{}/32", record.address());
        let ifaces = sys::interfaces(&record.netns).await?.unwrap_or_default();
        if let Some(lo) = ifaces.iter().find(|i| i.ifname == "lo") {
            for stale in lo
                .ipv4()
                .filter(|a| a.starts_with("198.19."))
                .map(|a| format!("{a}/32"))
            {
                if stale != loopback {
                    sys::ip(&["-n", &record.netns, "addr", "del", &stale, "dev", "lo"]).await?;
                }
            }
            if !lo.has_address(&loopback) {
                sys::ip(&["-n", &record.netns, "addr", "add", &loopback, "dev", "lo"]).await?;
            }
        }
        let etc = sys::etc_dir(&record.netns);
        let files = etc.join("fleetgate");
        let document = serde_json::json!({
            "name": node.name_any(),
            "namespace": self.namespace,
            "generation": node.metadata.generation,
            "spec": node.spec,
        });
        write_if_changed(
            &files.join("node.json"),
            &serde_json::to_string_pretty(&document).expect("serializes"),
        )?;
        write_if_changed(&etc.join("hostname"), &format!("{}\n", node.name_any()))?;
        Ok(())
    }

    /// The network's namespace with its bridge, which answers on .254 (the lab probes
    /// virtual IPs from there).
    async fn make_network(&self, record: &NetworkRecord) -> Result<(), LabError> {
        sys::netns_add(&record.netns).await?;
        let ifaces = sys::interfaces(&record.netns).await?.unwrap_or_default();
        let probe = format!("{}/24", record.address(PROBE_OCTET));
        match ifaces.iter().find(|i| i.ifname == naming::BRIDGE) {
            None => {
                sys::ip(&[
                    "-n",
                    &record.netns,
                    "link",
                    "add",
                    naming::BRIDGE,
                    "type",
                    "bridge",
                ])
                .await?;
                sys::ip(&[
                    "-n",
                    &record.netns,
                    "addr",
                    "add",
                    &probe,
                    "dev",
                    naming::BRIDGE,
                ])
                .await?;
            }
            Some(br) if !br.has_address(&probe) => {
                sys::ip(&[
                    "-n",
                    &record.netns,
                    "addr",
                    "add",
                    &probe,
                    "dev",
                    naming::BRIDGE,
                ])
                .await?;
            }
            Some(_) => {}
        }
        sys::ip(&["-n", &record.netns, "link", "set", naming::BRIDGE, "up"]).await?;
        Ok(())
    }

    /// The peer's veth: `fgw<network>` in its node's namespace with its address, `fgp<octet>`
    /// on the network's bridge; `up` false keeps the node's end down (a fault).
    async fn make_link(&self, p: &Placed, up: bool) -> Result<(), LabError> {
        let node_ns = &p.node.netns;
        let net_ns = &p.network.netns;
        let link = p.link();
        let port = naming::bridge_port(p.record.octet);
        let node_ifaces = sys::interfaces(node_ns).await?.unwrap_or_default();
        if !node_ifaces.iter().any(|i| i.ifname == link) {
            // A port left without its other end (a node namespace deleted by hand) goes first.
            let _ = sys::ip(&["-n", net_ns, "link", "del", &port]).await;
            sys::ip(&[
                "link", "add", &link, "netns", node_ns, "type", "veth", "peer", "name", &port,
                "netns", net_ns,
            ])
            .await?;
        }
        let net_ifaces = sys::interfaces(net_ns).await?.unwrap_or_default();
        if !net_ifaces.iter().any(|i| {
            i.ifname == port && i.master.as_deref() == Some(naming::BRIDGE) && i.admin_up()
        }) {
            sys::ip(&[
                "-n",
                net_ns,
                "link",
                "set",
                &port,
                "master",
                naming::BRIDGE,
                "up",
            ])
            .await?;
        }
        let address = format!("{}/24", p.address());
        let node_ifaces = sys::interfaces(node_ns).await?.unwrap_or_default();
        let iface = node_ifaces.iter().find(|i| i.ifname == link);
        if !iface.is_some_and(|i| i.has_address(&address)) {
            sys::ip(&["-n", node_ns, "addr", "flush", "dev", &link]).await?;
            sys::ip(&["-n", node_ns, "addr", "add", &address, "dev", &link]).await?;
        }
        if iface.is_none_or(|i| i.admin_up() != up) {
            sys::ip(&[
                "-n",
                node_ns,
                "link",
                "set",
                &link,
                if up { "up" } else { "down" },
            ])
            .await?;
        }
        Ok(())
    }

    /// `static` routing: a route to every other placed peer's node address through its
    /// fabric address; each counts as a session that is Reachable when it answers a ping.
    async fn static_routes(
        &self,
        p: &Placed,
        members: &[&Placed],
        all_peers: &[&Arc<SdwanPeer>],
    ) -> Result<Vec<PeerSession>, LabError> {
        let link = p.link();
        let wanted: BTreeMap<String, String> = members
            .iter()
            .filter(|m| m.name != p.name)
            .map(|m| (m.node.address().to_string(), m.address().to_string()))
            .collect();
        let present = sys::static_routes(&p.node.netns, &link)
            .await
            .unwrap_or_default();
        for (dst, via) in &present {
            if wanted.get(dst) != Some(via) {
                let _ = sys::ip(&["-n", &p.node.netns, "route", "del", dst, "dev", &link]).await;
            }
        }
        for (dst, via) in &wanted {
            if !present.iter().any(|(d, v)| d == dst && v == via) {
                sys::ip(&[
                    "-n",
                    &p.node.netns,
                    "route",
                    "replace",
                    dst,
                    "via",
                    via,
                    "dev",
                    &link,
                    "proto",
                    "static",
                ])
                .await?;
            }
        }
        let from = p.node.address().to_string();
        let mut sessions = Vec::new();
        for peer in all_peers {
            let host = &peer.spec.resolved.host;
            if *host == p.spec_host {
                continue;
            }
            let state = match members.iter().find(|m| m.spec_host == *host) {
                Some(m)
                    if sys::ping(&p.node.netns, Some(&from), &m.node.address().to_string())
                        .await =>
                {
                    SessionState::Reachable
                }
                _ => SessionState::Unreachable,
            };
            sessions.push(PeerSession {
                peer: host.clone(),
                protocol: SessionProtocol::Static,
                state,
            });
        }
        Ok(sessions)
    }
}

fn is_ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    crate::api::condition(conditions, "Ready").is_some_and(|c| c.status == "True")
}

fn write_if_changed(path: &Path, text: &str) -> Result<(), LabError> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    let io = |source| LabError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}
