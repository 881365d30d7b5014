//! Tearing down what no object asks for any more, also after a restart: the first step of
//! every pass.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::realize::{Lab, World, key};
use super::{LabError, naming, sys};

impl Lab {
    /// Removes what no object asks for any more: records whose object is gone (or was
    /// created again under its name), their namespaces, links and daemons, and namespaces
    /// of this instance that no record names (left by a crash between making and recording).
    pub(super) async fn tear_down(&mut self, world: &World) -> Result<(), LabError> {
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
            tracing::info!(peer = %k, "tearing down a peer no object asks for");
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
    pub(super) async fn remove_orphans(&self) -> Result<(), LabError> {
        let known: BTreeSet<&str> = self.state.namespaces().collect();
        for netns in sys::list_netns(&naming::instance_prefix(&self.instance)) {
            if !known.contains(netns.as_str()) {
                tracing::info!(%netns, "removing a namespace no object asks for");
                sys::netns_delete(&netns).await?;
            }
        }
        Ok(())
    }
}
