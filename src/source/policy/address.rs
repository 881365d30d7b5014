//! What kind of address an IP address is, for `--refuse-private-addresses`: public, or
//! one of the ranges a tenant has no business reaching through the controller.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address an IP address is, as far as the controller's network goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Reachable on the internet.
    Public,
    Loopback,
    /// Link-local (`169.254.0.0/16`, `fe80::/10`): cloud metadata services live here.
    LinkLocal,
    /// Private networks (`10/8`, `172.16/12`, `192.168/16`, `fc00::/7`), carrier-grade
    /// NAT (`100.64/10`): the cluster's own and its neighbours'.
    Private,
    /// Unspecified, broadcast, multicast, documentation, benchmarking and reserved
    /// ranges: nothing a tenant needs to reach.
    Special,
}

impl AddressClass {
    pub fn word(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Private => "private",
            AddressClass::Special => "special-purpose",
        }
    }
}

/// The class of `ip`. An IPv4 address written as IPv6 (mapped, or NAT64's well-known
/// prefix) is judged as the IPv4 address it carries.
pub fn address_class(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_class(v4);
            }
            let segments = v6.segments();
            // 64:ff9b::/96, NAT64: the last 32 bits are the IPv4 address reached.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return v4_class(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            v6_class(v6)
        }
    }
}

fn v4_class(ip: Ipv4Addr) -> AddressClass {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        AddressClass::Private
    } else if ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
    {
        AddressClass::Special
    } else {
        AddressClass::Public
    }
}

fn v6_class(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        AddressClass::Loopback
    } else if first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        // Unique local, and the deprecated site-local.
        AddressClass::Private
    } else if ip.is_unspecified()
        || ip.is_multicast()
        || first == 0x2001 && ip.segments()[1] == 0xdb8
        || first & 0xe000 != 0x2000
    {
        // Outside 2000::/3, the global unicast space, nothing is routed on the internet.
        AddressClass::Special
    } else {
        AddressClass::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_classed_as_the_network_sees_them() {
        let class = |s: &str| address_class(s.parse().unwrap());
        for (ip, expected) in [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("64:ff9b::7f00:1", AddressClass::Loopback),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("10.0.0.5", AddressClass::Private),
            ("172.16.3.4", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::Private),
            ("fd00:ec2::254", AddressClass::Private),
            ("::ffff:10.1.2.3", AddressClass::Private),
            ("0.0.0.0", AddressClass::Special),
            ("::", AddressClass::Special),
            ("255.255.255.255", AddressClass::Special),
            ("224.0.0.1", AddressClass::Special),
            ("198.18.0.1", AddressClass::Special),
            ("192.0.0.170", AddressClass::Special),
            ("240.0.0.1", AddressClass::Special),
            ("2001:db8::1", AddressClass::Special),
            ("ff02::1", AddressClass::Special),
            ("8.8.8.8", AddressClass::Public),
            ("172.32.0.1", AddressClass::Public),
            ("100.128.0.1", AddressClass::Public),
            ("2606:4700::1111", AddressClass::Public),
            ("::ffff:1.1.1.1", AddressClass::Public),
        ] {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }
}
