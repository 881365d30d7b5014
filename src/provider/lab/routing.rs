//! Routing a network's peers as its `routingMode` says: BIRD (`ibgp`, `ebgp`, see
//! [`super::bird`]) or static routes, and each peer's sessions as they are now.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use kube::ResourceExt;

use super::daemon::{DaemonKind, Daemons};
use super::placed::Placed;
use super::{LabError, bird, sys};
use crate::api::fleet::{PeerSession, SdwanPeer, SessionProtocol, SessionState};
use crate::fleet::model::RoutingMode;

/// Routes the placed `members` of one network (whose peers are `all_peers`) and returns
/// each member's sessions by peer name; the BIRD daemons it runs are added to `wanted`.
pub(super) async fn route(
    daemons: &Daemons,
    mode: RoutingMode,
    members: &[&Placed],
    all_peers: &[&Arc<SdwanPeer>],
    wanted: &mut BTreeSet<(DaemonKind, String)>,
) -> Result<BTreeMap<String, Vec<PeerSession>>, LabError> {
    let mut sessions_of = BTreeMap::new();
    if mode == RoutingMode::Static {
        for p in members {
            sessions_of.insert(p.name.clone(), static_routes(p, members, all_peers).await?);
        }
        return Ok(sessions_of);
    }
    let ibgp = mode == RoutingMode::Ibgp;
    // Every peer of the network, placed or not: one not placed yet is expected as a
    // neighbour (its session Idle) but not configured.
    let speakers: Vec<bird::Speaker> = all_peers
        .iter()
        .map(|peer| {
            let placed = members.iter().find(|m| m.name == peer.name_any());
            bird::Speaker {
                host: peer.spec.resolved.host.clone(),
                address: placed.map_or(Ipv4Addr::UNSPECIFIED, |p| p.address()),
                asn: match placed {
                    Some(p) if !ibgp => bird::ebgp_as(p.network.index, p.record.octet),
                    _ => bird::IBGP_AS,
                },
                reflector: peer.spec.resolved.publicly_reachable,
            }
        })
        .collect();
    for p in members {
        let me = speakers
            .iter()
            .find(|s| s.host == p.spec_host)
            .expect("every member is a peer of the network");
        let neighbours = bird::neighbours(me, &speakers, ibgp);
        let configured: Vec<&bird::Speaker> = neighbours
            .iter()
            .copied()
            .filter(|s| !s.address.is_unspecified())
            .collect();
        let stem = p.stem();
        wanted.insert((DaemonKind::Bird, stem.clone()));
        daemons
            .ensure(
                DaemonKind::Bird,
                &stem,
                &p.node.netns,
                &bird::config(me, &configured, ibgp),
            )
            .await?;
        // A BIRD just started may not answer yet: its sessions are then Idle.
        let states: HashMap<String, SessionState> = bird::protocols(&daemons.bird_socket(&stem))
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
        sessions_of.insert(p.name.clone(), sessions);
    }
    Ok(sessions_of)
}

/// `static` routing: a route to every other placed peer's node address through its
/// fabric address; each counts as a session that is Reachable when it answers a ping.
async fn static_routes(
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
            let added = sys::ip(&[
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
            .await;
            // A route cannot be added over a link that is down (a failed node's): that
            // peer's sessions are Unreachable, which the pings below find. It must not
            // fail the pass, or one failed machine would stop the lab reporting on all.
            if let Err(e) = added {
                tracing::debug!(peer = %p.name, %dst, error = %e, "static route not added");
            }
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
                if sys::ping(&p.node.netns, Some(&from), &m.node.address().to_string()).await =>
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
