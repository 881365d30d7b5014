//! Virtual IPs: which keepalived instances each placed holder runs (see
//! [`super::keepalived`]), and which holder answers on the address now.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::keepalived::{self, Instance};
use super::placed::Placed;
use super::state::NetworkRecord;
use super::{naming, sys};
use crate::fleet::object::VirtualIpSpec;

/// Each holder's keepalived, by its file stem: its namespace, its host, its instances.
pub(super) type Holders = BTreeMap<String, (String, String, Vec<Instance>)>;

/// Adds the VRRP instances of the virtual IP `name` (at `address`, VRRP router id
/// `router_id`) to its placed holders; false when none of them is placed.
pub(super) fn add_instances(
    holders: &mut Holders,
    name: &str,
    spec: &VirtualIpSpec,
    address: Ipv4Addr,
    router_id: u8,
    placed: &[Placed],
) -> bool {
    let ranked = std::iter::once(&spec.primary_holder).chain(&spec.failover_holders);
    let mut any = false;
    for (rank, host) in ranked.enumerate() {
        let Some(p) = placed
            .iter()
            .find(|p| p.network_name == spec.network && p.spec_host == *host)
        else {
            continue;
        };
        any = true;
        holders
            .entry(p.stem())
            .or_insert_with(|| (p.node.netns.clone(), p.spec_host.clone(), Vec::new()))
            .2
            .push(Instance {
                name: name.to_owned(),
                interface: p.link(),
                router_id,
                priority: keepalived::priority(rank),
                address,
            });
    }
    any
}

/// The host whose link answers on `address` in `network` now, asked from the bridge; `macs`
/// are the MAC addresses of the links of the network's placed peers, with their hosts.
pub(super) async fn holder(
    network: &NetworkRecord,
    address: Ipv4Addr,
    macs: &[(String, String)],
) -> Option<String> {
    let mac = sys::who_answers(&network.netns, naming::BRIDGE, &address.to_string()).await?;
    macs.iter().find(|(m, _)| *m == mac).map(|(_, h)| h.clone())
}
