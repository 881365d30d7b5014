//! What the lab has made, recorded so that a restart (or a crash) finds it again: each
//! object's namespace name and the indices its addresses and interface names come from.
//! Written atomically to `<state dir>/state.json` after every change.
//!
//! Addresses (198.18.0.0/15, the benchmarking range, which no real network routes; every
//! address lives inside the lab's own namespaces):
//! - network `i` (0..=255): the segment 198.18.i.0/24; its bridge answers on .254;
//! - a peer of it: 198.18.i.h/24, h in 1..=191 (also its interface `fgp<h>`);
//! - a virtual IP of it: 198.18.i.v, v in 192..=253 (VRRP router id v-191);
//! - node `n` (1..=65534): its own address 198.19.(n/256).(n%256)/32 on its loopback.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The first octets of peer and virtual IP addresses in a network's /24.
pub const PEER_OCTETS: std::ops::RangeInclusive<u8> = 1..=191;
pub const VIP_OCTETS: std::ops::RangeInclusive<u8> = 192..=253;
pub const PROBE_OCTET: u8 = 254;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Keyed by `<namespace>/<name>` of the FleetNode.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Keyed by `<namespace>/<name>` of the SdwanNetwork.
    pub networks: BTreeMap<String, NetworkRecord>,
    /// Keyed by `<namespace>/<name>` of the SdwanPeer.
    pub peers: BTreeMap<String, PeerRecord>,
    /// Keyed by `<namespace>/<name>` of the VirtualIp.
    pub vips: BTreeMap<String, VipRecord>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NodeRecord {
    pub netns: String,
    pub index: u16,
    /// The object's uid: a node deleted and created again under the same name is a new
    /// machine with a new namespace.
    pub uid: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NetworkRecord {
    pub netns: String,
    pub index: u8,
    pub uid: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PeerRecord {
    /// The network record's key and the node record's key it joins.
    pub network: String,
    pub node: String,
    pub octet: u8,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct VipRecord {
    pub network: String,
    pub octet: u8,
}

/// Why something could not be given a name or an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("no {what} left (the lab has {capacity})")]
    Exhausted { what: &'static str, capacity: usize },
    #[error("namespace name {netns} is already used by {holder}")]
    Collision { netns: String, holder: String },
}

impl NodeRecord {
    pub fn address(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, (self.index >> 8) as u8, (self.index & 0xff) as u8)
    }
}

impl NetworkRecord {
    pub fn address(&self, octet: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index, octet)
    }
}

/// The lowest value of `range` no `used` has.
fn lowest_free<T: Copy + PartialEq + Into<u32>>(
    range: impl Iterator<Item = T>,
    used: impl Iterator<Item = T> + Clone,
) -> Option<T> {
    range.into_iter().find(|v| !used.clone().any(|u| u == *v))
}

impl State {
    pub fn load(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the state beside `path` and renames it into place, so that a crash leaves
    /// the old state or the new one, never half of one.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).expect("state serializes"),
        )?;
        std::fs::rename(&tmp, path)
    }

    /// Every namespace the state names.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .values()
            .map(|n| n.netns.as_str())
            .chain(self.networks.values().map(|n| n.netns.as_str()))
    }

    fn holder_of(&self, netns: &str) -> Option<&str> {
        self.nodes
            .iter()
            .map(|(k, n)| (k, &n.netns))
            .chain(self.networks.iter().map(|(k, n)| (k, &n.netns)))
            .find(|(_, ns)| *ns == netns)
            .map(|(k, _)| k.as_str())
    }

    pub fn node(&mut self, key: &str, netns: String, uid: &str) -> Result<NodeRecord, AllocError> {
        if let Some(found) = self.nodes.get(key).filter(|n| n.uid == uid) {
            return Ok(found.clone());
        }
        if let Some(holder) = self.holder_of(&netns).filter(|h| *h != key) {
            return Err(AllocError::Collision {
                netns,
                holder: holder.to_owned(),
            });
        }
        let index = lowest_free(1..=65534u16, self.nodes.values().map(|n| n.index)).ok_or(
            AllocError::Exhausted {
                what: "node addresses",
                capacity: 65534,
            },
        )?;
        let record = NodeRecord {
            netns,
            index,
            uid: uid.to_owned(),
        };
        self.nodes.insert(key.to_owned(), record.clone());
        Ok(record)
    }

    pub fn network(
        &mut self,
        key: &str,
        netns: String,
        uid: &str,
    ) -> Result<NetworkRecord, AllocError> {
        if let Some(found) = self.networks.get(key).filter(|n| n.uid == uid) {
            return Ok(found.clone());
        }
        if let Some(holder) = self.holder_of(&netns).filter(|h| *h != key) {
            return Err(AllocError::Collision {
                netns,
                holder: holder.to_owned(),
            });
        }
        let index = lowest_free(0..=255u8, self.networks.values().map(|n| n.index)).ok_or(
            AllocError::Exhausted {
                what: "network segments",
                capacity: 256,
            },
        )?;
        let record = NetworkRecord {
            netns,
            index,
            uid: uid.to_owned(),
        };
        self.networks.insert(key.to_owned(), record.clone());
        Ok(record)
    }

    pub fn peer(&mut self, key: &str, network: &str, node: &str) -> Result<PeerRecord, AllocError> {
        if let Some(found) = self
            .peers
            .get(key)
            .filter(|p| p.network == network && p.node == node)
        {
            return Ok(found.clone());
        }
        let used = self
            .peers
            .iter()
            .filter(|(k, p)| p.network == network && *k != key)
            .map(|(_, p)| p.octet);
        let octet = lowest_free(PEER_OCTETS, used).ok_or(AllocError::Exhausted {
            what: "peer addresses in the network",
            capacity: PEER_OCTETS.len(),
        })?;
        let record = PeerRecord {
            network: network.to_owned(),
            node: node.to_owned(),
            octet,
        };
        self.peers.insert(key.to_owned(), record.clone());
        Ok(record)
    }

    pub fn vip(&mut self, key: &str, network: &str) -> Result<VipRecord, AllocError> {
        if let Some(found) = self.vips.get(key).filter(|v| v.network == network) {
            return Ok(found.clone());
        }
        let used = self
            .vips
            .iter()
            .filter(|(k, v)| v.network == network && *k != key)
            .map(|(_, v)| v.octet);
        let octet = lowest_free(VIP_OCTETS, used).ok_or(AllocError::Exhausted {
            what: "virtual IP addresses in the network",
            capacity: VIP_OCTETS.len(),
        })?;
        let record = VipRecord {
            network: network.to_owned(),
            octet,
        };
        self.vips.insert(key.to_owned(), record.clone());
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_stable_lowest_first_and_reused_after_release() {
        let mut s = State::default();
        let a = s.node("t/a", "fgl-x-a".into(), "u1").unwrap();
        let b = s.node("t/b", "fgl-x-b".into(), "u2").unwrap();
        assert_eq!((a.index, b.index), (1, 2));
        assert_eq!(s.node("t/a", "fgl-x-a".into(), "u1").unwrap(), a);
        assert_eq!(a.address(), Ipv4Addr::new(198, 19, 0, 1));
        s.nodes.remove("t/a");
        assert_eq!(s.node("t/c", "fgl-x-c".into(), "u3").unwrap().index, 1);
        // The same name with a new uid is a new machine.
        let again = s.node("t/b", "fgl-x-b".into(), "u9").unwrap();
        assert_eq!(again.uid, "u9");
    }

    #[test]
    fn a_namespace_name_is_never_shared() {
        let mut s = State::default();
        s.node("t/a", "fgl-x-same".into(), "u1").unwrap();
        assert_eq!(
            s.network("t/n", "fgl-x-same".into(), "u2"),
            Err(AllocError::Collision {
                netns: "fgl-x-same".into(),
                holder: "t/a".into()
            })
        );
    }

    #[test]
    fn peers_and_vips_draw_from_their_own_ranges_per_network() {
        let mut s = State::default();
        for i in 0..PEER_OCTETS.len() {
            s.peer(&format!("t/n.p{i}"), "t/n", &format!("t/p{i}"))
                .unwrap();
        }
        assert!(matches!(
            s.peer("t/n.last", "t/n", "t/last"),
            Err(AllocError::Exhausted { .. })
        ));
        assert_eq!(s.peer("t/m.p0", "t/m", "t/p0").unwrap().octet, 1);
        assert_eq!(s.vip("t/n.v", "t/n").unwrap().octet, 192);
        assert_eq!(s.vip("t/n.w", "t/n").unwrap().octet, 193);
    }

    #[test]
    fn state_survives_a_round_trip_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(State::load(&path).unwrap(), State::default());
        let mut s = State::default();
        s.network("t/n", "fgl-x-n".into(), "u").unwrap();
        s.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), s);
    }
}
