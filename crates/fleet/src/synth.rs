//! Synthetic fleets of any size, for benchmarks and scale tests: templates, networks and
//! virtual IPs in proportion to the node count, the way a large edge fleet looks.

use std::fmt::Write;

/// Shape of a generated fleet.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub nodes: usize,
    /// Nodes per template (each template extends one of three bases).
    pub nodes_per_template: usize,
    /// Peers per SD-WAN network; every node is a peer of one network.
    pub peers_per_network: usize,
    /// Peers per virtual IP.
    pub peers_per_vip: usize,
}

impl Shape {
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            nodes_per_template: 50,
            peers_per_network: 100,
            peers_per_vip: 10,
        }
    }
}

/// A valid fleet.yaml of `shape`. `revision` varies instance types (one node in ten), an
/// application pin (one template in ten, and so its nodes) and VIP holders, so two
/// revisions differ the way successive commits do: about a quarter of the objects.
pub fn fleet_yaml(shape: Shape, revision: u32) -> String {
    let mut y = String::with_capacity(shape.nodes * 220);
    y.push_str("version: 1\naccount: synthetic\ntemplates:\n");
    let bases = ["base-amd64", "base-arm64", "base-gpu"];
    for (i, base) in bases.iter().enumerate() {
        let arch = if i == 1 { "arm64" } else { "amd64" };
        let _ = write!(
            y,
            "  - name: {base}\n    node_platform: ubuntu-24.04-{arch}\n    architecture: {arch}\n    modules: [system-base@blessed, security-hardening@blessed, chrony@1.4.3]\n"
        );
    }
    let templates = shape.nodes.div_ceil(shape.nodes_per_template).max(1);
    for t in 0..templates {
        let bump = if t % 10 == (revision as usize) % 10 {
            revision
        } else {
            0
        };
        let _ = write!(
            y,
            "  - name: role-{t}\n    extends: {}\n    modules: [app-{t}@1.{bump}.0]\n    metadata: {{role: role-{t}}}\n",
            bases[t % bases.len()]
        );
    }
    y.push_str("nodes:\n");
    for n in 0..shape.nodes {
        let size = if n % 10 == (revision as usize) % 10 {
            "large"
        } else {
            "medium"
        };
        let _ = write!(
            y,
            "  - hostname: node-{n}\n    template: role-{}\n    region: region-{}\n    instance_type: t3-{size}\n    metadata: {{rack: r{}}}\n",
            n / shape.nodes_per_template,
            n % 7,
            n % 40
        );
    }
    y.push_str("sdwan:\n  networks:\n");
    let networks = shape.nodes.div_ceil(shape.peers_per_network);
    for net in 0..networks {
        let first = net * shape.peers_per_network;
        let last = (first + shape.peers_per_network).min(shape.nodes);
        let _ = write!(
            y,
            "    - name: net-{net}\n      routing_mode: ibgp\n      peers:\n"
        );
        for n in first..last {
            let public = if n % 5 == 0 {
                "\n          publicly_reachable: true"
            } else {
                ""
            };
            let _ = writeln!(y, "        - host: node-{n}{public}");
        }
        y.push_str("      virtual_ips:\n");
        for (v, chunk) in (first..last).step_by(shape.peers_per_vip).enumerate() {
            let size = (last - chunk).min(shape.peers_per_vip);
            if size < 3 {
                continue;
            }
            let rot = revision as usize % size;
            let holder = |k: usize| chunk + (k + rot) % size;
            let _ = write!(
                y,
                "        - name: vip-{v}\n          primary_holder: node-{}\n          failover_holders: [node-{}, node-{}]\n",
                holder(0),
                holder(1),
                holder(2)
            );
        }
    }
    y
}

/// A valid fleet.yaml that is small as a file and large once resolved: one template of
/// `modules` modules that each of `nodes` nodes inherits (a node carries its template's
/// modules). 4,000 by 4,000 is a 0.5 MB file and about 230 MiB of desired state.
pub fn inherited_modules_yaml(modules: usize, nodes: usize) -> String {
    let mut y = String::with_capacity(modules * 26 + nodes * 90 + 200);
    y.push_str("version: 1\naccount: synthetic\ntemplates:\n  - name: everything\n    node_platform: ubuntu-24.04-amd64\n    architecture: amd64\n    modules:\n");
    for m in 0..modules {
        let _ = writeln!(y, "      - module-{m:05}@1.0.0");
    }
    y.push_str("nodes:\n");
    for n in 0..nodes {
        let _ = write!(
            y,
            "  - hostname: node-{n:05}\n    template: everything\n    region: region-{}\n    instance_type: t3-medium\n",
            n % 7
        );
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{self as fleet, ResolveOptions};

    #[test]
    fn generated_fleets_are_valid_and_proportioned() {
        for nodes in [1, 7, 250] {
            let text = fleet_yaml(Shape::new(nodes), 1);
            let (d, warnings) =
                fleet::desired_state("synth.yaml", text.as_bytes(), &ResolveOptions::default())
                    .unwrap_or_else(|e| panic!("{nodes} nodes: {e}"));
            assert!(warnings.is_empty(), "{warnings}");
            let count = |k| d.objects.iter().filter(|o| o.kind() == k).count();
            assert_eq!(count(fleet::ObjectKind::FleetNode), nodes);
            assert_eq!(count(fleet::ObjectKind::SdwanPeer), nodes);
        }
    }

    #[test]
    fn a_small_file_that_inherits_everything_is_refused_where_it_crosses_the_bound() {
        let text = inherited_modules_yaml(4_000, 4_000);
        assert!(text.len() < 600 * 1024, "{}", text.len());
        let refused = fleet::desired_state("big.yaml", text.as_bytes(), &ResolveOptions::default())
            .unwrap_err();
        assert!(refused.is_too_large(), "{refused}");
        // The template alone is 4,000 modules: past the bound of one object; its nodes
        // are not built at all.
        let text = refused.to_string();
        assert!(
            text.starts_with("big.yaml:4:5: error: template `everything` resolves to 4000 modules"),
            "{text}"
        );
        assert_eq!(refused.errors().count(), 1, "{text}");

        // Within the bound per object, the total is crossed by the 300th node or so.
        let text = inherited_modules_yaml(900, 4_000);
        let refused = fleet::desired_state("big.yaml", text.as_bytes(), &ResolveOptions::default())
            .unwrap_err();
        let message = refused.to_string();
        assert!(refused.is_too_large(), "{message}");
        assert!(
            message.contains(
                "error: the fleet resolves to more than this controller accepts: with node `node-0"
            ),
            "{message}"
        );
        assert!(message.contains("more than the 16 MiB"), "{message}");

        // Raised bounds resolve it whole.
        let limits = crate::Limits {
            max_modules_per_object: 5_000,
            max_modules: 100_000_000,
            ..crate::Limits::new(25_000, 1 << 40)
        };
        let options = ResolveOptions {
            limits,
            ..Default::default()
        };
        let (d, _) = fleet::desired_state(
            "big.yaml",
            inherited_modules_yaml(4_000, 50).as_bytes(),
            &options,
        )
        .unwrap();
        assert_eq!(d.objects.len(), 51);
    }

    #[test]
    fn the_largest_fleet_of_default_objects_fits_the_default_bytes() {
        // 25,000 objects: about 11,700 nodes with their peers, templates and networks.
        let text = fleet_yaml(Shape::new(11_700), 1);
        let (d, _) =
            fleet::desired_state("synth.yaml", text.as_bytes(), &ResolveOptions::default())
                .unwrap();
        let bytes: u64 = d.objects.iter().map(crate::bounds::serialized_bytes).sum();
        assert!(d.objects.len() <= 25_000, "{}", d.objects.len());
        assert!(
            bytes * 2 < crate::bounds::DEFAULT_MAX_BYTES,
            "{bytes} bytes leave less than half of the default bound free"
        );
    }
}
