//! What the lab reports of each object, decided from what it found on the machine: pure,
//! so that every reason of the contract the lab gives is tested here.

use crate::api::fleet::{PeerSession, ProviderReason};

use super::state::AllocError;

/// What every kind has in common before its own facts count.
#[derive(Debug, Clone, Default)]
pub struct Common {
    /// A fault annotation that cannot be read.
    pub fault_error: Option<String>,
    /// The lab could not name or address the object.
    pub alloc_error: Option<AllocError>,
    /// The never-ready fault is on.
    pub never_ready: bool,
    /// The object was reported Available at an earlier generation.
    pub was_available: bool,
}

/// A reason and a message for people.
pub type Report = (ProviderReason, String);

impl Common {
    /// The report when something outranks the kind's own facts.
    fn first(&self) -> Option<Report> {
        if let Some(e) = &self.fault_error {
            return Some((ProviderReason::InvalidSpec, e.clone()));
        }
        match &self.alloc_error {
            Some(e @ AllocError::Exhausted { .. }) => {
                Some((ProviderReason::CapacityExhausted, e.to_string()))
            }
            Some(e @ AllocError::Collision { .. }) => {
                Some((ProviderReason::ProvisioningFailed, e.to_string()))
            }
            None => None,
        }
    }

    /// Available unless the never-ready fault holds it back.
    fn available(&self, message: String) -> Report {
        if self.never_ready {
            let reason = if self.was_available {
                ProviderReason::Updating
            } else {
                ProviderReason::Provisioning
            };
            return (
                reason,
                format!("{message}; held back by {}", super::faults::NEVER_READY),
            );
        }
        (ProviderReason::Available, message)
    }

    fn finish(&self, own: impl FnOnce() -> Report) -> Report {
        self.first().unwrap_or_else(own)
    }
}

#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    pub common: Common,
    pub netns: Option<String>,
    pub loopback_up: bool,
    /// Each of its links into a network: the network's name and whether it is up.
    pub links: Vec<(String, bool)>,
    pub failed: bool,
}

pub fn node(f: &NodeFacts) -> Report {
    f.common.finish(|| {
        let Some(netns) = &f.netns else {
            return (
                ProviderReason::Provisioning,
                "creating its namespace".into(),
            );
        };
        if f.failed {
            return (
                ProviderReason::NodeFailed,
                format!(
                    "failed as asked by {}; its links are down",
                    super::faults::FAIL_AFTER
                ),
            );
        }
        if !f.loopback_up {
            return (
                ProviderReason::Provisioning,
                format!("{netns}: loopback not up yet"),
            );
        }
        let down: Vec<&str> = f
            .links
            .iter()
            .filter(|(_, up)| !up)
            .map(|(n, _)| n.as_str())
            .collect();
        if !down.is_empty() {
            return (
                ProviderReason::LinkDown,
                format!("{netns}: link into {} down", down.join(", ")),
            );
        }
        f.common
            .available(format!("{netns} up with {} link(s) up", f.links.len()))
    })
}

#[derive(Debug, Clone, Default)]
pub struct NetworkFacts {
    pub common: Common,
    pub netns: Option<String>,
    pub bridge_up: bool,
}

pub fn network(f: &NetworkFacts) -> Report {
    f.common.finish(|| match (&f.netns, f.bridge_up) {
        (Some(netns), true) => f.common.available(format!("segment {netns} up")),
        (Some(netns), false) => (
            ProviderReason::Provisioning,
            format!("{netns}: bridge not up yet"),
        ),
        (None, _) => (ProviderReason::Provisioning, "creating its segment".into()),
    })
}

#[derive(Debug, Clone, Default)]
pub struct PeerFacts {
    pub common: Common,
    /// What it waits for (its node, its network), when it does.
    pub waiting_for: Option<String>,
    pub node_failed: bool,
    /// None until its link exists; then whether it is up.
    pub link_up: Option<bool>,
    pub link_dropped: bool,
    pub sessions: Vec<PeerSession>,
}

pub fn peer(f: &PeerFacts) -> Report {
    f.common.finish(|| {
        if let Some(what) = &f.waiting_for {
            return (
                ProviderReason::WaitingForDependency,
                format!("waiting for {what}"),
            );
        }
        if f.node_failed {
            return (ProviderReason::LinkDown, "its node failed".into());
        }
        match f.link_up {
            None => return (ProviderReason::Provisioning, "creating its link".into()),
            Some(false) if f.link_dropped => {
                return (
                    ProviderReason::LinkDown,
                    format!(
                        "link dropped as asked by {}",
                        super::faults::LINK_DROP_AFTER
                    ),
                );
            }
            Some(false) => return (ProviderReason::LinkDown, "its link is down".into()),
            Some(true) => {}
        }
        let down: Vec<String> = f
            .sessions
            .iter()
            .filter(|s| !s.state.is_up())
            .map(|s| format!("{} {:?}", s.peer, s.state))
            .collect();
        let total = f.sessions.len();
        if !down.is_empty() {
            return (
                ProviderReason::SessionsNotEstablished,
                format!("{} of {total} up; {}", total - down.len(), down.join(", ")),
            );
        }
        f.common
            .available(format!("link up, {total} of {total} sessions up"))
    })
}

#[derive(Debug, Clone, Default)]
pub struct VipFacts {
    pub common: Common,
    pub waiting_for: Option<String>,
    pub address: Option<String>,
    /// The host whose interface answered on the address.
    pub holder: Option<String>,
}

pub fn vip(f: &VipFacts) -> Report {
    f.common.finish(|| {
        if let Some(what) = &f.waiting_for {
            return (
                ProviderReason::WaitingForDependency,
                format!("waiting for {what}"),
            );
        }
        let address = f.address.as_deref().unwrap_or("?");
        match &f.holder {
            Some(h) => f.common.available(format!("{address} answered by {h}")),
            None => (
                ProviderReason::HolderNotAnswering,
                format!("no holder answers on {address}"),
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::fleet::{SessionProtocol, SessionState};

    fn session(peer: &str, state: SessionState) -> PeerSession {
        PeerSession {
            peer: peer.into(),
            protocol: SessionProtocol::Bgp,
            state,
        }
    }

    #[test]
    fn a_node_is_ready_when_its_namespace_and_links_are_up() {
        let mut f = NodeFacts::default();
        assert_eq!(node(&f).0, ProviderReason::Provisioning);
        f.netns = Some("fgl-x".into());
        f.loopback_up = true;
        f.links = vec![("fabric".into(), false)];
        assert_eq!(node(&f).0, ProviderReason::LinkDown);
        f.links[0].1 = true;
        assert_eq!(node(&f).0, ProviderReason::Available);
        f.common.never_ready = true;
        assert_eq!(node(&f).0, ProviderReason::Provisioning);
        f.common.was_available = true;
        assert_eq!(node(&f).0, ProviderReason::Updating);
        f.failed = true;
        assert_eq!(node(&f).0, ProviderReason::NodeFailed);
        f.common.fault_error = Some("bad".into());
        assert_eq!(node(&f).0, ProviderReason::InvalidSpec);
    }

    #[test]
    fn a_peer_is_ready_when_every_session_is_up() {
        let mut f = PeerFacts {
            waiting_for: Some("node `a`".into()),
            ..Default::default()
        };
        assert_eq!(peer(&f).0, ProviderReason::WaitingForDependency);
        f.waiting_for = None;
        assert_eq!(peer(&f).0, ProviderReason::Provisioning);
        f.link_up = Some(true);
        f.sessions = vec![
            session("a", SessionState::Established),
            session("b", SessionState::Active),
        ];
        let (reason, message) = peer(&f);
        assert_eq!(reason, ProviderReason::SessionsNotEstablished);
        assert_eq!(message, "1 of 2 up; b Active");
        f.sessions[1].state = SessionState::Established;
        assert_eq!(peer(&f).0, ProviderReason::Available);
        f.link_up = Some(false);
        f.link_dropped = true;
        assert_eq!(peer(&f).0, ProviderReason::LinkDown);
        f.common.alloc_error = Some(AllocError::Exhausted {
            what: "x",
            capacity: 1,
        });
        assert_eq!(peer(&f).0, ProviderReason::CapacityExhausted);
    }

    #[test]
    fn a_virtual_ip_is_ready_when_a_holder_answers() {
        let mut f = VipFacts {
            address: Some("198.18.0.192".into()),
            ..Default::default()
        };
        assert_eq!(vip(&f).0, ProviderReason::HolderNotAnswering);
        f.holder = Some("edge-tokyo-01".into());
        assert_eq!(
            vip(&f),
            (
                ProviderReason::Available,
                "198.18.0.192 answered by edge-tokyo-01".into()
            )
        );
        let n = NetworkFacts {
            netns: Some("fgl-n".into()),
            bridge_up: true,
            ..Default::default()
        };
        assert_eq!(network(&n).0, ProviderReason::Available);
    }
}
