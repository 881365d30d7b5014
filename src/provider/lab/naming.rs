//! Names the lab gives what it makes, short enough for Linux and stable across restarts.
//!
//! Network namespaces are named after their object, `fgl-<instance>-<name>-<hash>`: the
//! readable part is the object's name cut to 32 characters, the hash (six hex digits of
//! SHA-256 over kind, Kubernetes namespace and name) keeps two objects whose names were
//! cut alike, or that live in different Kubernetes namespaces, apart; a collision left
//! after that is detected when the name is recorded (see `state`) and reported, never
//! shared. Interface names (at most 15 bytes) come from indices the lab allocates and
//! records: `fgw<network>` is a node's link into a network, `fgp<octet>` that link's port
//! on the network's bridge, so they are unique by construction.

use sha2::{Digest, Sha256};

/// Every network namespace of the lab starts with this.
pub const NETNS_PREFIX: &str = "fgl-";
/// The most characters of an object's name kept in its namespace's name.
const READABLE_MAX: usize = 32;
/// The longest instance name: it appears in every namespace name.
pub const INSTANCE_MAX: usize = 12;

/// An instance name: lowercase letters and digits only, so that one instance's prefix
/// (`fgl-lab-`) is never a prefix of another's (`fgl-lab2-` is not `fgl-lab-…`).
pub fn check_instance(instance: &str) -> Result<(), String> {
    if instance.is_empty()
        || instance.len() > INSTANCE_MAX
        || !instance
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(format!(
            "instance `{instance}`: 1 to {INSTANCE_MAX} lowercase letters and digits"
        ));
    }
    Ok(())
}

/// The prefix of every namespace of one instance.
pub fn instance_prefix(instance: &str) -> String {
    format!("{NETNS_PREFIX}{instance}-")
}

/// Six hex digits of SHA-256 over the parts, each ended by a NUL so that no two splits of
/// the same text hash alike.
fn short_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    digest[..3].iter().map(|b| format!("{b:02x}")).collect()
}

/// The network namespace of a FleetNode or SdwanNetwork.
pub fn netns(instance: &str, kind: &str, namespace: &str, name: &str) -> String {
    let readable: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(READABLE_MAX)
        .collect();
    format!(
        "{}{readable}-{}",
        instance_prefix(instance),
        short_hash(&[kind, namespace, name])
    )
}

/// A node's link into the network with this index, inside the node's namespace.
pub fn node_link(network_index: u8) -> String {
    format!("fgw{network_index}")
}

/// The bridge port of the peer with this octet, inside the network's namespace.
pub fn bridge_port(octet: u8) -> String {
    format!("fgp{octet}")
}

/// A name as it may appear in a daemon's configuration (a comment, a description, a
/// router id): letters, digits, `.`, `-` and `_` only, so that no object name, whoever
/// wrote it, can end a quoted string or a line and add configuration of its own.
pub fn config_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// The bridge of every network namespace.
pub const BRIDGE: &str = "br0";

/// The FleetNode's providerID: the lab, its instance and the node's namespace.
pub fn provider_id(instance: &str, netns: &str) -> String {
    format!("lab://{instance}/{netns}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_readable_stable_and_apart() {
        let a = netns("lab", "FleetNode", "team", "edge-tokyo-01");
        assert!(a.starts_with("fgl-lab-edge-tokyo-01-"), "{a}");
        assert_eq!(a, netns("lab", "FleetNode", "team", "edge-tokyo-01"));
        assert_ne!(a, netns("lab", "FleetNode", "other", "edge-tokyo-01"));
        assert_ne!(a, netns("lab", "SdwanNetwork", "team", "edge-tokyo-01"));
        let long = "x".repeat(63);
        let cut = netns("lab", "FleetNode", "team", &long);
        assert!(cut.len() <= 4 + INSTANCE_MAX + 1 + 32 + 1 + 6, "{cut}");
        assert_ne!(cut, netns("lab", "FleetNode", "team", &"x".repeat(62)));
        assert_eq!(netns("lab", "SdwanNetwork", "t", "Fab.ric"), {
            let n = netns("lab", "SdwanNetwork", "t", "Fab.ric");
            assert!(n.starts_with("fgl-lab-fab-ric-"), "{n}");
            n
        });
    }

    #[test]
    fn names_cannot_write_configuration() {
        assert_eq!(config_safe("edge-tokyo-01"), "edge-tokyo-01");
        assert_eq!(
            config_safe("x\"; }\nprotocol static {"),
            "x_____protocol_static__"
        );
    }

    #[test]
    fn interface_names_fit_linux() {
        assert!(node_link(255).len() <= 15);
        assert!(bridge_port(255).len() <= 15);
    }

    #[test]
    fn instances_cannot_shadow_each_other() {
        assert!(check_instance("lab").is_ok());
        assert!(check_instance("lab2").is_ok());
        for bad in ["", "lab-2", "Lab", "a".repeat(13).as_str(), "l/b"] {
            assert!(check_instance(bad).is_err(), "{bad}");
        }
        assert!(!instance_prefix("lab2").starts_with(&instance_prefix("lab")));
    }
}
