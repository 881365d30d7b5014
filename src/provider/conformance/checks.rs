//! What every status a provider writes must satisfy, whatever the moment: pure checks,
//! applied to each status the suite reads.

use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::fleet::status::Outcome;
use crate::api::fleet::{
    FleetNodeStatus, NodeAddressType, ProviderReason, SdwanPeerStatus, VirtualIpStatus,
};

/// A way the provider broke the contract, or did not get there in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("{object}: {what}")]
    Contract { object: String, what: String },
    #[error("{object}: not {wanted} within {seconds}s; last seen: {last}")]
    Timeout {
        object: String,
        wanted: String,
        seconds: u64,
        last: String,
    },
    #[error("{0}")]
    Api(String),
}

const TYPES: [&str; 3] = ["Ready", "Reconciling", "Stalled"];

/// The conditions of an object whose metadata.generation is `generation`: the three
/// kstatus types once each, one documented reason shared by all three, the one that reason
/// makes True, each computed for `observed`, which is never ahead of the spec.
pub fn conditions(
    generation: Option<i64>,
    observed: Option<i64>,
    conditions: &[Condition],
) -> Result<(), String> {
    if let (Some(g), Some(o)) = (generation, observed)
        && o > g
    {
        return Err(format!(
            "observedGeneration {o} is ahead of metadata.generation {g}"
        ));
    }
    if conditions.is_empty() {
        return Ok(());
    }
    if observed.is_none() {
        return Err("conditions without observedGeneration".into());
    }
    for t in TYPES {
        let n = conditions.iter().filter(|c| c.type_ == t).count();
        if n != 1 {
            return Err(format!("{n} conditions of type {t}, not 1"));
        }
    }
    let reasons: Vec<&str> = TYPES
        .iter()
        .filter_map(|t| crate::api::condition(conditions, t))
        .map(|c| c.reason.as_str())
        .collect();
    let reason = ProviderReason::parse(reasons[0]).ok_or_else(|| {
        format!(
            "reason `{}` is not one of the contract's (docs/provider-contract.md)",
            reasons[0]
        )
    })?;
    if reasons.iter().any(|r| *r != reasons[0]) {
        return Err(format!(
            "Ready, Reconciling and Stalled give different reasons: {reasons:?}"
        ));
    }
    let expected = match reason.outcome() {
        Outcome::Ready => "Ready",
        Outcome::Reconciling => "Reconciling",
        Outcome::Stalled => "Stalled",
    };
    for c in conditions
        .iter()
        .filter(|c| TYPES.contains(&c.type_.as_str()))
    {
        let wanted = if c.type_ == expected { "True" } else { "False" };
        if c.status != wanted {
            return Err(format!(
                "{} is {} with reason {reason}, which makes {expected} True and the others False",
                c.type_, c.status
            ));
        }
        if c.observed_generation != observed {
            return Err(format!(
                "condition {} was computed for generation {:?}, the status for {:?}",
                c.type_, c.observed_generation, observed
            ));
        }
    }
    Ok(())
}

fn ready(conditions: &[Condition]) -> bool {
    crate::api::condition(conditions, "Ready").is_some_and(|c| c.status == "True")
}

/// A ready node has a providerID (`<provider>://<id>`) and addresses that read as such.
pub fn node(status: &FleetNodeStatus) -> Result<(), String> {
    for a in &status.addresses {
        if matches!(
            a.type_,
            NodeAddressType::InternalIp | NodeAddressType::ExternalIp
        ) && a.address.parse::<IpAddr>().is_err()
        {
            return Err(format!("address `{}` is not an IP address", a.address));
        }
    }
    if !ready(&status.conditions) {
        return Ok(());
    }
    match status.provider_id.as_deref() {
        Some(id)
            if id
                .split_once("://")
                .is_some_and(|(p, rest)| !p.is_empty() && !rest.is_empty()) => {}
        other => {
            return Err(format!(
                "Ready without a providerID of the form <provider>://<id> ({other:?})"
            ));
        }
    }
    if status.addresses.is_empty() {
        return Err("Ready without addresses".into());
    }
    Ok(())
}

/// A peer's sessions name other peers of its network, once each; when Ready, all are up.
pub fn peer(status: &SdwanPeerStatus, others: &[String]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for s in &status.sessions {
        if !others.contains(&s.peer) {
            return Err(format!(
                "a session with `{}`, not another peer of its network",
                s.peer
            ));
        }
        if !seen.insert(&s.peer) {
            return Err(format!("two sessions with `{}`", s.peer));
        }
        if ready(&status.conditions) && !s.state.is_up() {
            return Err(format!(
                "Ready while its session with `{}` is {:?}",
                s.peer, s.state
            ));
        }
    }
    if let Some(a) = &status.address
        && a.parse::<IpAddr>().is_err()
    {
        return Err(format!("address `{a}` is not an IP address"));
    }
    Ok(())
}

/// A ready virtual IP has an address and is held by one of its holders.
pub fn vip(status: &VirtualIpStatus, holders: &[String]) -> Result<(), String> {
    if let Some(h) = &status.current_holder
        && !holders.contains(h)
    {
        return Err(format!("held by `{h}`, which is not one of its holders"));
    }
    if !ready(&status.conditions) {
        return Ok(());
    }
    match &status.address {
        Some(a) if a.parse::<IpAddr>().is_ok() => {}
        other => return Err(format!("Ready without an IP address ({other:?})")),
    }
    if status.current_holder.is_none() {
        return Err("Ready without a current holder".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::fleet::{NodeAddress, PeerSession, SessionProtocol, SessionState};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn set(reason: ProviderReason, generation: i64) -> Vec<Condition> {
        let mut c = Vec::new();
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(0).unwrap());
        reason.set(&mut c, "", Some(generation), &now);
        c
    }

    #[test]
    fn conditions_are_checked_as_the_contract_says() {
        assert_eq!(conditions(Some(2), None, &[]), Ok(()));
        assert_eq!(
            conditions(Some(2), Some(2), &set(ProviderReason::Available, 2)),
            Ok(())
        );
        assert!(
            conditions(Some(2), Some(3), &[])
                .unwrap_err()
                .contains("ahead")
        );
        assert!(
            conditions(Some(2), Some(2), &set(ProviderReason::Available, 1))
                .unwrap_err()
                .contains("computed for generation Some(1)")
        );
        let mut odd = set(ProviderReason::Available, 2);
        odd[0].reason = "AllGood".into();
        odd[1].reason = "AllGood".into();
        odd[2].reason = "AllGood".into();
        assert!(
            conditions(Some(2), Some(2), &odd)
                .unwrap_err()
                .contains("not one of")
        );
        let mut split = set(ProviderReason::Available, 2);
        split[1].reason = "Updating".into();
        assert!(
            conditions(Some(2), Some(2), &split)
                .unwrap_err()
                .contains("different reasons")
        );
        let mut wrong = set(ProviderReason::NodeFailed, 2);
        wrong[0].status = "True".into();
        assert!(conditions(Some(2), Some(2), &wrong).is_err());
        let mut missing = set(ProviderReason::Available, 2);
        missing.pop();
        assert!(
            conditions(Some(2), Some(2), &missing)
                .unwrap_err()
                .contains("of type Stalled")
        );
    }

    #[test]
    fn kinds_say_what_users_need_once_ready() {
        let mut n = FleetNodeStatus {
            conditions: set(ProviderReason::Available, 1),
            ..Default::default()
        };
        assert!(node(&n).unwrap_err().contains("providerID"));
        n.provider_id = Some("lab://x/y".into());
        assert!(node(&n).unwrap_err().contains("addresses"));
        n.addresses = vec![NodeAddress {
            type_: NodeAddressType::InternalIp,
            address: "198.19.0.1".into(),
        }];
        assert_eq!(node(&n), Ok(()));
        n.addresses[0].address = "nine".into();
        assert!(node(&n).is_err());

        let others = vec!["b".to_owned()];
        let mut p = SdwanPeerStatus {
            conditions: set(ProviderReason::Available, 1),
            sessions: vec![PeerSession {
                peer: "b".into(),
                protocol: SessionProtocol::Bgp,
                state: SessionState::Active,
            }],
            ..Default::default()
        };
        assert!(peer(&p, &others).unwrap_err().contains("Ready while"));
        p.sessions[0].state = SessionState::Established;
        assert_eq!(peer(&p, &others), Ok(()));
        p.sessions[0].peer = "z".into();
        assert!(peer(&p, &others).is_err());

        let holders = vec!["a".to_owned(), "b".to_owned()];
        let mut v = VirtualIpStatus {
            conditions: set(ProviderReason::Available, 1),
            address: Some("198.18.0.192".into()),
            ..Default::default()
        };
        assert!(vip(&v, &holders).unwrap_err().contains("holder"));
        v.current_holder = Some("b".into());
        assert_eq!(vip(&v, &holders), Ok(()));
        v.current_holder = Some("c".into());
        assert!(vip(&v, &holders).is_err());
    }
}
