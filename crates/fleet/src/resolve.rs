//! Resolution: templates flattened through `extends`, nodes resolved against their
//! template, SD-WAN elements named. The result is the desired object set.

use std::collections::HashMap;
use std::sync::Arc;

use super::bounds::{Budget, Limits, merged_metadata_count, merged_module_count};
use super::catalog::{self, Catalog, Resolution};
use super::diag::{Diagnostics, Loc};
use super::model::*;
use super::object::*;
use super::validate::{ancestry, first_declarations};

#[derive(Debug, Clone, Default)]
pub struct ResolveOptions<'a> {
    /// The account the fleet must declare (GitopsRepository.spec.account), if guarded.
    pub expected_account: Option<&'a str>,
    /// How much the fleet may resolve to; past it, errors marked [`bounds::TOO_LARGE`].
    pub limits: Limits,
    /// The platform's module catalog, which lifecycle pins (`nginx@blessed`) resolve
    /// against; None where there is none (the pins stay as written).
    pub catalog: Option<&'a Catalog>,
    /// The environment whose overlay applies (GitopsRepository.spec.environment); the
    /// base alone when None. Only [`crate::desired_state`] reads it.
    pub environment: Option<&'a str>,
}

/// What a fleet file asks the cluster to hold, in canonical order (kind, then name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredState {
    pub account: String,
    pub objects: Vec<FleetObject>,
    /// Each lifecycle pin the fleet declares and the version it resolved to.
    pub modules: Vec<Resolution>,
}

/// Resolves a validated fleet (one with no errors) into its desired objects. A fleet
/// that was not validated is refused with an error, never a panic. Every object is
/// measured as it is built ([`bounds`]): past a bound, resolution stops with errors
/// located at the declarations that crossed it, and nothing past it is built.
pub fn resolve(fleet: &FleetFile, options: &ResolveOptions) -> Result<DesiredState, Diagnostics> {
    let file = fleet.file.as_str();
    let account = need(file, fleet.account.as_ref(), Loc::new(1, 1))?;
    if let Some(expected) = options.expected_account
        && account != expected
    {
        let mut d = Diagnostics::default();
        d.error(
            &fleet.file,
            fleet.account.as_ref().map_or(Loc::new(1, 1), |a| a.loc),
            format!(
                "account `{account}` does not match the repository's account `{expected}`; refusing to plan another account's fleet"
            ),
        );
        return Err(d);
    }

    let limits = options.limits;
    let declared = declarations(fleet).count();
    let first_past = declarations(fleet)
        .nth(limits.max_objects)
        .unwrap_or_default();
    let mut budget = Budget::new(file, limits, declared, first_past);
    let mut objects = Vec::with_capacity(declared.min(limits.max_objects));
    let mut admit = |budget: &mut Budget, loc: Loc, what: &str, name: &str, spec: Spec| {
        let object = FleetObject::new(name, spec);
        let admitted = budget.admit(loc, what, &object);
        if admitted {
            objects.push(object);
        }
        admitted
    };

    let by_name = first_declarations(&fleet.templates);
    let mut templates: HashMap<&str, Option<FleetTemplateSpec>> =
        HashMap::with_capacity(by_name.len());
    for t in &fleet.templates {
        if budget.exhausted() {
            break;
        }
        let name = need(file, t.name.as_ref(), t.loc)?;
        let what = format!("template `{name}`");
        let chain = ancestry(t, &by_name);
        // What the chain declares, before anything is merged: an upper bound.
        let modules: usize = chain.iter().map(|a| a.modules.len()).sum();
        let metadata: usize = chain.iter().map(|a| a.metadata.len()).sum();
        if !budget.within_counts(modules, metadata) {
            let modules = merged_module_count(
                std::iter::empty(),
                chain
                    .iter()
                    .flat_map(|a| a.modules.iter().map(|m| m.value.name.as_str())),
            );
            let metadata = chain_metadata_count(&chain);
            if budget.refuse_counts(t.loc, &what, modules, metadata) {
                templates.insert(name, None);
                continue;
            }
        }
        let spec = flatten(&chain).ok_or_else(|| unchecked(file, t.loc))?;
        let admitted = admit(
            &mut budget,
            t.loc,
            &what,
            name,
            Spec::FleetTemplate(spec.clone()),
        );
        // A template past a bound has nodes past it too: they are not built.
        templates.insert(name, admitted.then_some(spec));
    }
    for node in &fleet.nodes {
        if budget.exhausted() {
            break;
        }
        let template_name = need(file, node.template.as_ref(), node.loc)?;
        let hostname = need(file, node.hostname.as_ref(), node.loc)?;
        let Some(template) = templates
            .get(template_name)
            .ok_or_else(|| unchecked(file, node.loc))?
        else {
            // Its template is past a bound, and said so; the node is no smaller.
            continue;
        };
        let what = format!("node `{hostname}`");
        let upper = (
            template.modules.len() + node.modules.len(),
            template.metadata.len() + node.metadata.len(),
        );
        if !budget.within_counts(upper.0, upper.1) {
            let modules = merged_module_count(
                template.modules.iter().map(|m| module_name(m)),
                node.modules.iter().map(|m| m.value.name.as_str()),
            );
            let metadata = merged_metadata_count(&template.metadata, &node.metadata);
            if budget.refuse_counts(node.loc, &what, modules, metadata) {
                continue;
            }
        }
        let modules = if node.modules.is_empty() {
            Arc::clone(&template.modules)
        } else {
            let mut own = template.modules.to_vec();
            merge_modules(&mut own, &node.modules);
            own.into()
        };
        let mut metadata = template.metadata.clone();
        merge_metadata(&mut metadata, &node.metadata);
        let spec = FleetNodeSpec {
            template: template_name.to_owned(),
            node_platform: template.node_platform.clone(),
            architecture: template.architecture,
            modules,
            metadata,
            region: need(file, node.region.as_ref(), node.loc)?.to_owned(),
            instance_type: need(file, node.instance_type.as_ref(), node.loc)?.to_owned(),
            lifecycle_class: node.lifecycle_class,
        };
        admit(
            &mut budget,
            node.loc,
            &what,
            hostname,
            Spec::FleetNode(spec),
        );
    }
    for net in &fleet.networks {
        if budget.exhausted() {
            break;
        }
        let network = need(file, net.name.as_ref(), net.loc)?;
        let routing_mode = net
            .routing_mode
            .as_ref()
            .ok_or_else(|| unchecked(file, net.loc))?
            .value;
        let what = format!("network `{network}`");
        let spec = Spec::SdwanNetwork(SdwanNetworkSpec { routing_mode });
        admit(&mut budget, net.loc, &what, network, spec);
        for peer in &net.peers {
            let host = need(file, peer.host.as_ref(), peer.loc)?;
            let spec = SdwanPeerSpec {
                network: network.to_owned(),
                host: host.to_owned(),
                publicly_reachable: peer.publicly_reachable,
            };
            let what = format!("peer `{host}` of network `{network}`");
            let name = peer_name(network, host);
            admit(&mut budget, peer.loc, &what, &name, Spec::SdwanPeer(spec));
        }
        for vip in &net.virtual_ips {
            let spec = VirtualIpSpec {
                network: network.to_owned(),
                primary_holder: need(file, vip.primary_holder.as_ref(), vip.loc)?.to_owned(),
                failover_holders: vip
                    .failover_holders
                    .iter()
                    .map(|h| h.value.clone())
                    .collect(),
            };
            let name = need(file, vip.name.as_ref(), vip.loc)?;
            let what = format!("virtual IP `{name}` of network `{network}`");
            let full = peer_name(network, name);
            admit(&mut budget, vip.loc, &what, &full, Spec::VirtualIp(spec));
        }
    }
    budget.finish()?;
    let modules = catalog::pin(fleet, &mut objects, options.catalog)?;
    objects.sort_by(|a, b| (a.kind(), &a.name).cmp(&(b.kind(), &b.name)));
    Ok(DesiredState {
        account: account.to_owned(),
        objects,
        modules,
    })
}

/// Where each object the fleet declares is declared, in the order they are resolved.
fn declarations(fleet: &FleetFile) -> impl Iterator<Item = Loc> + '_ {
    let templates = fleet.templates.iter().map(|t| t.loc);
    let nodes = fleet.nodes.iter().map(|n| n.loc);
    let networks = fleet.networks.iter().flat_map(|n| {
        std::iter::once(n.loc)
            .chain(n.peers.iter().map(|p| p.loc))
            .chain(n.virtual_ips.iter().map(|v| v.loc))
    });
    templates.chain(nodes).chain(networks)
}

/// The name part of a module reference as resolved (`nginx@1.26.2` is `nginx`).
fn module_name(module: &str) -> &str {
    module.split_once('@').map_or(module, |(name, _)| name)
}

/// Metadata entries a template chain (nearest first) resolves to, counted.
fn chain_metadata_count(chain: &[&TemplateDecl]) -> usize {
    let mut merged = Metadata::new();
    let mut count = 0;
    for t in chain.iter().rev() {
        count = merged_metadata_count(&merged, &t.metadata);
        // Only the keys matter for the next step: keep them, without values.
        for (key, value) in &t.metadata {
            match value.value {
                Some(_) => {
                    merged.insert(key.clone(), String::new());
                }
                None => {
                    merged.remove(key);
                }
            }
        }
    }
    count
}

/// The error for a fleet that has faults `validate` would have reported.
fn unchecked(file: &str, loc: Loc) -> Diagnostics {
    let mut d = Diagnostics::default();
    d.error(
        file,
        loc,
        "the fleet has errors that were not reported; validate it before resolving",
    );
    d
}

/// A value validation guarantees, or the error for a fleet that was not validated.
fn need<'f>(
    file: &str,
    value: Option<&'f Spanned<String>>,
    loc: Loc,
) -> Result<&'f str, Diagnostics> {
    value
        .map(|v| v.value.as_str())
        .ok_or_else(|| unchecked(file, loc))
}

/// A template with everything it inherits (`chain`: the template, then its ancestors):
/// modules appended root first with a child's pin replacing its parent's in place,
/// metadata merged child-wins (a null removes the key), scalars from the nearest.
/// `None` if the chain lacks a scalar (validation reports it).
fn flatten(chain: &[&TemplateDecl]) -> Option<FleetTemplateSpec> {
    let template = chain.first()?;
    let mut modules = Vec::new();
    let mut metadata = Metadata::new();
    for t in chain.iter().rev() {
        merge_modules(&mut modules, &t.modules);
        merge_metadata(&mut metadata, &t.metadata);
    }
    let nearest_platform = chain.iter().find_map(|t| t.node_platform.as_ref())?;
    let nearest_architecture = chain.iter().find_map(|t| t.architecture.as_ref())?;
    Some(FleetTemplateSpec {
        extends: template.extends.as_ref().map(|p| p.value.clone()),
        node_platform: nearest_platform.value.clone(),
        architecture: nearest_architecture.value,
        modules: modules.into(),
        metadata,
    })
}

/// Appends `own` to `into`; a module whose name is already there replaces it in place
/// (the last of the same name wins). Linear: both lists may be long.
fn merge_modules(into: &mut Vec<String>, own: &[Spanned<ModuleRef>]) {
    let mut own_by_name: HashMap<&str, &ModuleRef> = HashMap::with_capacity(own.len());
    for m in own {
        own_by_name.insert(m.value.name.as_str(), &m.value);
    }
    let mut placed: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for existing in into.iter_mut() {
        if let Some(m) = own_by_name.get(module_name(existing)) {
            placed.insert(m.name.as_str());
            *existing = m.to_string();
        }
    }
    for m in own {
        let name = m.value.name.as_str();
        if placed.insert(name) {
            into.push(own_by_name[name].to_string());
        }
    }
}

fn merge_metadata(into: &mut Metadata, own: &[MetadataEntry]) {
    for (k, v) in own {
        match &v.value {
            Some(value) => {
                into.insert(k.clone(), value.clone());
            }
            None => {
                into.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load;
    use serde_json::json;

    fn desired(text: &str) -> DesiredState {
        let (fleet, _warnings) = load("f.yaml", text.as_bytes()).expect("valid");
        resolve(&fleet, &ResolveOptions::default()).expect("resolves")
    }

    fn spec(d: &DesiredState, kind: ObjectKind, name: &str) -> serde_json::Value {
        d.objects
            .iter()
            .find(|o| o.kind() == kind && o.name == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .spec
            .to_json()
    }

    #[test]
    fn the_reference_fleet_resolves_to_ten_objects() {
        let d = desired(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/fleet.yaml"
            ))
            .unwrap(),
        );
        let names: Vec<String> = d
            .objects
            .iter()
            .map(|o| o.reference().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "fleettemplate/edge-base",
                "fleettemplate/edge-cdn",
                "fleetnode/edge-london-01",
                "fleetnode/edge-tokyo-01",
                "fleetnode/edge-tokyo-02",
                "sdwannetwork/edge-fabric",
                "sdwanpeer/edge-fabric.edge-london-01",
                "sdwanpeer/edge-fabric.edge-tokyo-01",
                "sdwanpeer/edge-fabric.edge-tokyo-02",
                "virtualip/edge-fabric.cdn-frontend",
            ]
        );
        assert_eq!(
            spec(&d, ObjectKind::FleetNode, "edge-tokyo-01"),
            json!({
                "template": "edge-cdn",
                "nodePlatform": "ubuntu-24.04-amd64",
                "architecture": "amd64",
                "modules": ["system-base@blessed", "security-hardening@blessed", "chrony@1.4.3", "nginx@1.26.2"],
                "metadata": {"purpose": "edge-cdn"},
                "region": "ap-tokyo-1",
                "instanceType": "t3-medium",
                "lifecycleClass": "persistent",
            })
        );
        assert_eq!(
            spec(&d, ObjectKind::VirtualIp, "edge-fabric.cdn-frontend"),
            json!({"network": "edge-fabric", "primaryHolder": "edge-tokyo-01", "failoverHolders": ["edge-tokyo-02", "edge-london-01"]})
        );
        assert_eq!(
            spec(&d, ObjectKind::SdwanPeer, "edge-fabric.edge-tokyo-02"),
            json!({"network": "edge-fabric", "host": "edge-tokyo-02", "publiclyReachable": false})
        );
    }

    #[test]
    fn inheritance_overrides_pins_in_place_and_merges_metadata() {
        let d = desired(
            "version: 1\naccount: a\ntemplates:\n\
             - {name: base, node_platform: p1, architecture: amd64, modules: [a@1.0.0, b@blessed], metadata: {x: base, y: base}}\n\
             - {name: mid, extends: base, modules: [c@live, a@2.0.0], metadata: {y: mid}}\n\
             - {name: leaf, extends: mid, node_platform: p2, metadata: {z: leaf}}\n\
             nodes:\n- {hostname: n, template: leaf, region: r, instance_type: i, lifecycle_class: ephemeral, modules: [b@3.0.0, d@1.0.0], metadata: {x: node}}\n",
        );
        assert_eq!(
            spec(&d, ObjectKind::FleetTemplate, "leaf"),
            json!({"extends": "mid", "nodePlatform": "p2", "architecture": "amd64",
                    "modules": ["a@2.0.0", "b@blessed", "c@live"],
                    "metadata": {"x": "base", "y": "mid", "z": "leaf"}})
        );
        let node = spec(&d, ObjectKind::FleetNode, "n");
        assert_eq!(
            node["modules"],
            json!(["a@2.0.0", "b@3.0.0", "c@live", "d@1.0.0"])
        );
        assert_eq!(
            node["metadata"],
            json!({"x": "node", "y": "mid", "z": "leaf"})
        );
        assert_eq!(node["nodePlatform"], "p2");
        assert_eq!(node["lifecycleClass"], "ephemeral");
    }

    /// A null metadata value removes the inherited key; a quoted `~` is the text `~`.
    #[test]
    fn a_null_metadata_value_removes_the_inherited_key() {
        let d = desired(
            "version: 1\naccount: a\ntemplates:\n\
             - {name: base, node_platform: p, architecture: amd64, metadata: {x: 1, y: 2, z: 3}}\n\
             - {name: leaf, extends: base, metadata: {x: ~, w: ~}}\n\
             nodes:\n- {hostname: n, template: leaf, region: r, instance_type: i, metadata: {y: null, v: '~'}}\n",
        );
        assert_eq!(
            spec(&d, ObjectKind::FleetTemplate, "leaf")["metadata"],
            json!({"y": "2", "z": "3"})
        );
        assert_eq!(
            spec(&d, ObjectKind::FleetNode, "n")["metadata"],
            json!({"z": "3", "v": "~"})
        );
    }

    /// A fleet that skipped validation is refused, not a panic.
    #[test]
    fn an_unvalidated_fleet_is_an_error_not_a_panic() {
        for text in [
            "version: 1\naccount: a\ntemplates:\n  - {name: ''}\n",
            "version: 1\naccount: a\ntemplates:\n  - {name: t}\n",
            "version: 1\naccount: a\nnodes:\n  - {hostname: n, template: t, region: r, instance_type: i}\n",
            "version: 1\naccount: ''\n",
            "version: 1\naccount: a\nsdwan: {networks: [{name: w}]}\n",
        ] {
            let (fleet, _) = crate::parse::parse("f.yaml", text.as_bytes());
            assert!(
                resolve(&fleet.unwrap(), &ResolveOptions::default()).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn the_account_guard_refuses_another_account() {
        let text = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/fleet.yaml"
        ))
        .unwrap();
        let (fleet, _) = load("fleet.yaml", &text).unwrap();
        let err = resolve(
            &fleet,
            &ResolveOptions {
                expected_account: Some("acme-prod"),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "fleet.yaml:3:10: error: account `acme-edge` does not match the repository's account `acme-prod`; refusing to plan another account's fleet\n"
        );
        assert!(
            resolve(
                &fleet,
                &ResolveOptions {
                    expected_account: Some("acme-edge"),
                    ..Default::default()
                }
            )
            .is_ok()
        );
    }
}
