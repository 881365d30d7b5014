//! Making what the lab realizes: a node's namespace and files, a network's bridge, a
//! peer's veth. Each step looks at what is there first and changes only what differs.

use std::path::Path;

use kube::ResourceExt;

use super::placed::Placed;
use super::state::{NetworkRecord, NodeRecord, PROBE_OCTET};
use super::{LabError, naming, sys};
use crate::api::fleet::FleetNode;

/// The node's namespace, its own address on the loopback, and the files a process in
/// it reads: /etc/fleetgate/node.json (its resolved spec) and /etc/hostname.
pub(super) async fn node(
    namespace: &str,
    record: &NodeRecord,
    node: &FleetNode,
) -> Result<(), LabError> {
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
        "namespace": namespace,
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
pub(super) async fn network(record: &NetworkRecord) -> Result<(), LabError> {
    sys::netns_add(&record.netns).await?;
    let ifaces = sys::interfaces(&record.netns).await?.unwrap_or_default();
    let probe = format!("{}/24", record.address(PROBE_OCTET));
    let bridge = ifaces.iter().find(|i| i.ifname == naming::BRIDGE);
    if bridge.is_none() {
        let add = [
            "-n",
            &record.netns,
            "link",
            "add",
            naming::BRIDGE,
            "type",
            "bridge",
        ];
        sys::ip(&add).await?;
    }
    if !bridge.is_some_and(|br| br.has_address(&probe)) {
        let add = [
            "-n",
            &record.netns,
            "addr",
            "add",
            &probe,
            "dev",
            naming::BRIDGE,
        ];
        sys::ip(&add).await?;
    }
    sys::ip(&["-n", &record.netns, "link", "set", naming::BRIDGE, "up"]).await?;
    Ok(())
}

/// The peer's veth: `fgw<network>` in its node's namespace with its address, `fgp<octet>`
/// on the network's bridge; `up` false keeps the node's end down (a fault).
pub(super) async fn link(p: &Placed, up: bool) -> Result<(), LabError> {
    let node_ns = &p.node.netns;
    let net_ns = &p.network.netns;
    let link = p.link();
    let port = naming::bridge_port(p.record.octet);
    let node_ifaces = sys::interfaces(node_ns).await?.unwrap_or_default();
    if !node_ifaces.iter().any(|i| i.ifname == link) {
        // A port left without its other end (a node namespace deleted by hand) goes first.
        let _ = sys::ip(&["-n", net_ns, "link", "del", &port]).await;
        sys::ip(&[
            "link", "add", &link, "netns", node_ns, "type", "veth", "peer", "name", &port, "netns",
            net_ns,
        ])
        .await?;
    }
    let net_ifaces = sys::interfaces(net_ns).await?.unwrap_or_default();
    if !net_ifaces
        .iter()
        .any(|i| i.ifname == port && i.master.as_deref() == Some(naming::BRIDGE) && i.admin_up())
    {
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
