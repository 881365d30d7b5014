//! A peer a pass could place, with what making its link, its routing and its virtual
//! IPs need of it: its own records and its node's and network's.

use std::net::Ipv4Addr;

use super::naming;
use super::state::{NetworkRecord, NodeRecord, PeerRecord};

/// A peer the pass could place: its records and its node's and network's.
pub(super) struct Placed {
    /// The SdwanPeer's name, and its host's.
    pub name: String,
    pub spec_host: String,
    pub record: PeerRecord,
    pub node: NodeRecord,
    pub network: NetworkRecord,
    pub network_name: String,
}

impl Placed {
    /// Its address in the network's fabric.
    pub fn address(&self) -> Ipv4Addr {
        self.network.address(self.record.octet)
    }
    /// Its link's name in its node's namespace.
    pub fn link(&self) -> String {
        naming::node_link(self.network.index)
    }
    /// The name of its daemons' files.
    pub fn stem(&self) -> String {
        format!("{}-{}", self.network.index, self.record.octet)
    }
}
