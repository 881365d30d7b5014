//! Semantic checks of a declared fleet: names, references, inheritance, SD-WAN rules.
//! Every problem is reported; nothing stops at the first one.

use std::collections::{HashMap, HashSet};

use super::diag::{Diagnostics, Loc, did_you_mean};
use super::model::*;

/// Checks `fleet` and appends every error and warning to `diags`.
pub fn validate(fleet: &FleetFile, diags: &mut Diagnostics) {
    let mut v = Validator {
        file: &fleet.file,
        diags,
    };
    let templates = v.unique_names(
        "template",
        fleet.templates.iter().map(|t| &t.name),
        is_dns1123_label,
    );
    let nodes = v.unique_names(
        "node",
        fleet.nodes.iter().map(|n| &n.hostname),
        is_dns1123_label,
    );
    v.templates(fleet, &templates);
    v.nodes(fleet, &templates);
    v.networks(fleet, &nodes);
}

struct Validator<'a> {
    file: &'a str,
    diags: &'a mut Diagnostics,
}

const LABEL_RULE: &str = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";

impl Validator<'_> {
    fn error(&mut self, loc: Loc, message: impl Into<String>) {
        self.diags.error(self.file, loc, message);
    }

    /// Checks names for form and uniqueness; returns each name with its first position.
    fn unique_names<'n>(
        &mut self,
        what: &str,
        names: impl Iterator<Item = &'n Spanned<String>>,
        valid: fn(&str) -> bool,
    ) -> HashMap<&'n str, Loc> {
        let mut seen: HashMap<&str, Loc> = HashMap::new();
        for name in names.filter(|n| !n.is_missing()) {
            if !valid(&name.value) {
                self.error(
                    name.loc,
                    format!(
                        "{what} name `{}` is not a valid DNS-1123 label: {LABEL_RULE}",
                        name.value
                    ),
                );
            }
            match seen.get(name.value.as_str()) {
                Some(first) => self.error(
                    name.loc,
                    format!(
                        "duplicate {what} `{}` (first declared at line {})",
                        name.value, first.line
                    ),
                ),
                None => {
                    seen.insert(&name.value, name.loc);
                }
            }
        }
        seen
    }

    /// Reports a reference to a name that is not declared, with the closest declared name.
    fn reference<T>(
        &mut self,
        reference: &Spanned<String>,
        declared: &HashMap<&str, T>,
        message: impl FnOnce() -> String,
    ) -> bool {
        if reference.is_missing() || declared.contains_key(reference.value.as_str()) {
            return true;
        }
        let hint = did_you_mean(&reference.value, declared.keys().copied());
        self.error(reference.loc, format!("{}{hint}", message()));
        false
    }

    fn modules(&mut self, owner: &str, modules: &[Spanned<ModuleRef>]) {
        let mut seen: HashMap<&str, Loc> = HashMap::new();
        for m in modules {
            if let Some(first) = seen.insert(&m.value.name, m.loc) {
                self.error(
                    m.loc,
                    format!(
                        "module `{}` is listed twice in {owner} (first at line {})",
                        m.value.name, first.line
                    ),
                );
            }
            if m.value.pin == Pin::Unpinned {
                self.diags.warning(
                    self.file,
                    m.loc,
                    format!(
                        "module `{0}` in {owner} is not pinned; pin a version (`{0}@1.2.3`) or a lifecycle (`{0}@blessed`)",
                        m.value.name
                    ),
                );
            }
        }
    }

    fn templates(&mut self, fleet: &FleetFile, declared: &HashMap<&str, Loc>) {
        let by_name = first_declarations(&fleet.templates);
        for t in &fleet.templates {
            let owner = format!("template `{}`", t.name.value);
            if let Some(parent) = &t.extends {
                self.reference(parent, declared, || {
                    format!(
                        "{owner} extends `{}`, which is not a declared template",
                        parent.value
                    )
                });
            }
            self.modules(&owner, &t.modules);
        }
        let in_cycle = self.extends_cycles(fleet, &by_name);
        // Scalars are inherited, so the chain as a whole must provide them.
        for t in &fleet.templates {
            let duplicate = !by_name
                .get(t.name.value.as_str())
                .is_some_and(|first| std::ptr::eq(*first, t));
            if t.name.is_missing() || duplicate || in_cycle.contains(t.name.value.as_str()) {
                continue;
            }
            let chain = ancestry(t, &by_name);
            if chain.iter().any(|a| {
                a.extends
                    .as_ref()
                    .is_some_and(|p| !by_name.contains_key(p.value.as_str()))
            }) {
                continue; // the dangling parent is already reported
            }
            if !chain.iter().any(|a| a.node_platform.is_some()) {
                self.error(
                    t.loc,
                    format!(
                        "template `{}` has no `node_platform` and inherits none",
                        t.name.value
                    ),
                );
            }
            if !chain.iter().any(|a| a.architecture.is_some()) {
                self.error(
                    t.loc,
                    format!(
                        "template `{}` has no `architecture` and inherits none",
                        t.name.value
                    ),
                );
            }
        }
    }

    /// Reports each `extends` cycle once, naming every template in it; returns their names.
    fn extends_cycles<'f>(
        &mut self,
        fleet: &'f FleetFile,
        by_name: &HashMap<&'f str, &'f TemplateDecl>,
    ) -> HashSet<&'f str> {
        let mut in_cycle: HashSet<&str> = HashSet::new();
        let mut done: HashSet<&str> = HashSet::new();
        for start in &fleet.templates {
            let mut path: Vec<&TemplateDecl> = Vec::new();
            let mut current = Some(start);
            while let Some(t) = current {
                let name = t.name.value.as_str();
                if done.contains(name) {
                    break;
                }
                if let Some(pos) = path.iter().position(|p| p.name.value == name) {
                    let cycle = &path[pos..];
                    let first = cycle
                        .iter()
                        .min_by_key(|t| t.loc)
                        .expect("cycle is not empty");
                    let start_at = cycle.iter().position(|t| t.loc == first.loc).unwrap_or(0);
                    let mut names: Vec<&str> = cycle[start_at..]
                        .iter()
                        .chain(&cycle[..start_at])
                        .map(|t| t.name.value.as_str())
                        .collect();
                    names.push(names[0]);
                    self.error(
                        first.loc,
                        format!(
                            "templates extend each other in a cycle: {}",
                            names.join(" -> ")
                        ),
                    );
                    in_cycle.extend(cycle.iter().map(|t| t.name.value.as_str()));
                    break;
                }
                path.push(t);
                current = t
                    .extends
                    .as_ref()
                    .and_then(|p| by_name.get(p.value.as_str()).copied());
            }
            done.extend(path.iter().map(|t| t.name.value.as_str()));
        }
        in_cycle
    }

    fn nodes(&mut self, fleet: &FleetFile, templates: &HashMap<&str, Loc>) {
        for n in &fleet.nodes {
            let owner = format!("node `{}`", n.hostname.value);
            self.reference(&n.template, templates, || {
                format!(
                    "{owner} uses template `{}`, which is not declared",
                    n.template.value
                )
            });
            self.modules(&owner, &n.modules);
        }
    }

    fn networks(&mut self, fleet: &FleetFile, nodes: &HashMap<&str, Loc>) {
        self.unique_names(
            "network",
            fleet.networks.iter().map(|n| &n.name),
            is_dns1123_label,
        );
        for net in &fleet.networks {
            let network = net.name.value.as_str();
            let mut peers: HashMap<&str, Loc> = HashMap::new();
            for p in &net.peers {
                self.reference(&p.host, nodes, || {
                    format!(
                        "peer `{}` of network `{network}` is not a declared node",
                        p.host.value
                    )
                });
                if p.host.is_missing() {
                    continue;
                }
                if let Some(first) = peers.insert(&p.host.value, p.loc) {
                    self.error(
                        p.host.loc,
                        format!(
                            "`{}` is a peer of network `{network}` twice (first at line {})",
                            p.host.value, first.line
                        ),
                    );
                }
            }
            self.unique_names(
                &format!("virtual IP of network `{network}`:"),
                net.virtual_ips.iter().map(|v| &v.name),
                is_dns1123_label,
            );
            for vip in &net.virtual_ips {
                self.virtual_ip(network, vip, &peers);
            }
            if !net.name.is_missing() && !net.peers.iter().any(|p| p.publicly_reachable) {
                self.diags.warning(
                    self.file,
                    net.loc,
                    format!("network `{network}` has no publicly reachable peer"),
                );
            }
        }
    }

    fn virtual_ip(&mut self, network: &str, vip: &VirtualIpDecl, peers: &HashMap<&str, Loc>) {
        let name = &vip.name.value;
        let not_a_peer = |role: &str, holder: &str| {
            format!("{role} `{holder}` of virtual IP `{name}` is not a peer of network `{network}`")
        };
        self.reference(&vip.primary_holder, peers, || {
            not_a_peer("primary holder", &vip.primary_holder.value)
        });
        let mut seen: HashMap<&str, Loc> = HashMap::new();
        for holder in &vip.failover_holders {
            self.reference(holder, peers, || {
                not_a_peer("failover holder", &holder.value)
            });
            if holder.value == vip.primary_holder.value {
                self.error(
                    holder.loc,
                    format!(
                        "`{}` is the primary holder of virtual IP `{name}` and cannot also be a failover holder",
                        holder.value
                    ),
                );
            }
            if let Some(first) = seen.insert(&holder.value, holder.loc) {
                self.error(
                    holder.loc,
                    format!(
                        "failover holder `{}` of virtual IP `{name}` is listed twice (first at line {})",
                        holder.value, first.line
                    ),
                );
            }
        }
    }
}

/// Templates by name; a duplicate name (reported elsewhere) maps to its first declaration.
pub(crate) fn first_declarations(templates: &[TemplateDecl]) -> HashMap<&str, &TemplateDecl> {
    let mut by_name = HashMap::with_capacity(templates.len());
    for t in templates {
        by_name.entry(t.name.value.as_str()).or_insert(t);
    }
    by_name
}

/// A template and its ancestors, nearest first; stops at a missing parent or a repeat.
pub(crate) fn ancestry<'f>(
    template: &'f TemplateDecl,
    by_name: &HashMap<&str, &'f TemplateDecl>,
) -> Vec<&'f TemplateDecl> {
    let mut chain = vec![template];
    let mut current = template;
    while let Some(parent) = current
        .extends
        .as_ref()
        .and_then(|p| by_name.get(p.value.as_str()))
    {
        if chain.iter().any(|t| std::ptr::eq(*t, *parent)) {
            break;
        }
        chain.push(parent);
        current = parent;
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::parse::parse;

    fn check(text: &str) -> Diagnostics {
        let (fleet, mut diags) = parse("f.yaml", text.as_bytes());
        validate(&fleet.expect("parses"), &mut diags);
        diags.sort();
        diags
    }

    fn errors(text: &str) -> Vec<String> {
        check(text).errors().map(|d| d.to_string()).collect()
    }

    const HEAD: &str = "version: 1\naccount: a\n";
    const BASE: &str =
        "templates:\n  - name: base\n    node_platform: p\n    architecture: amd64\n";

    #[test]
    fn the_reference_fleets_are_valid() {
        for f in ["examples/fleet.yaml", "examples/fleet-v2.yaml"] {
            let d = check(&std::fs::read_to_string(f).unwrap());
            assert!(d.is_empty(), "{f}: {d}");
        }
    }

    #[test]
    fn names_must_be_labels_and_unique() {
        let e = errors(&format!(
            "{HEAD}{BASE}  - name: Base_2\n    extends: base\n  - name: base\n    extends: base\n"
        ));
        assert_eq!(
            e,
            vec![
                "f.yaml:7:11: error: template name `Base_2` is not a valid DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
                "f.yaml:9:11: error: duplicate template `base` (first declared at line 4)",
            ]
        );
    }

    #[test]
    fn dangling_references_suggest_the_closest_name() {
        let e = errors(&format!(
            "{HEAD}{BASE}  - name: cdn\n    extends: bsae\nnodes:\n  - hostname: n1\n    template: cnd\n    region: r\n    instance_type: i\n"
        ));
        assert_eq!(
            e,
            vec![
                "f.yaml:8:14: error: template `cdn` extends `bsae`, which is not a declared template; did you mean `base`?",
                "f.yaml:11:15: error: node `n1` uses template `cnd`, which is not declared; did you mean `cdn`?",
            ]
        );
    }

    #[test]
    fn extends_cycles_are_reported_whole_and_once() {
        let e = errors(&format!(
            "{HEAD}templates:\n  - name: a\n    extends: c\n  - name: b\n    extends: a\n  - name: c\n    extends: b\n  - name: d\n    extends: d\n  - name: e\n    extends: a\n"
        ));
        assert_eq!(
            e,
            vec![
                "f.yaml:4:5: error: templates extend each other in a cycle: a -> c -> b -> a",
                "f.yaml:10:5: error: templates extend each other in a cycle: d -> d",
                "f.yaml:12:5: error: template `e` has no `node_platform` and inherits none",
                "f.yaml:12:5: error: template `e` has no `architecture` and inherits none",
            ]
        );
    }

    #[test]
    fn scalars_may_be_inherited() {
        let d = check(&format!(
            "{HEAD}{BASE}  - name: mid\n    extends: base\n  - name: leaf\n    extends: mid\n    architecture: arm64\n"
        ));
        assert!(!d.has_errors(), "{d}");
    }

    #[test]
    fn modules_are_unique_per_list_and_unpinned_ones_warn() {
        let d = check(&format!(
            "{HEAD}templates:\n  - name: t\n    node_platform: p\n    architecture: amd64\n    modules: [a@1.0.0, b, a@2.0.0]\n"
        ));
        let all: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            all,
            vec![
                "f.yaml:7:24: warning: module `b` in template `t` is not pinned; pin a version (`b@1.2.3`) or a lifecycle (`b@blessed`)",
                "f.yaml:7:27: error: module `a` is listed twice in template `t` (first at line 7)",
            ]
        );
    }

    fn sdwan(peers: &str, vips: &str) -> String {
        format!(
            "{HEAD}{BASE}nodes:\n  - {{hostname: n1, template: base, region: r, instance_type: i}}\n  - {{hostname: n2, template: base, region: r, instance_type: i}}\n  - {{hostname: n3, template: base, region: r, instance_type: i}}\nsdwan:\n  networks:\n    - name: net\n      routing_mode: static\n      peers: {peers}\n      virtual_ips: {vips}\n"
        )
    }

    #[test]
    fn sdwan_rules() {
        let e = errors(&sdwan(
            "[{host: n1, publicly_reachable: true}, {host: n2}, {host: n1}, {host: n4}]",
            "[{name: v, primary_holder: n2, failover_holders: [n2, n1, n1, n3]}, {name: v, primary_holder: n9}]",
        ));
        assert_eq!(
            e,
            vec![
                "f.yaml:15:72: error: `n1` is a peer of network `net` twice (first at line 15)",
                "f.yaml:15:84: error: peer `n4` of network `net` is not a declared node; did you mean `n1`?",
                "f.yaml:16:70: error: `n2` is the primary holder of virtual IP `v` and cannot also be a failover holder",
                "f.yaml:16:78: error: failover holder `n1` of virtual IP `v` is listed twice (first at line 16)",
                "f.yaml:16:82: error: failover holder `n3` of virtual IP `v` is not a peer of network `net`; did you mean `n1`?",
                "f.yaml:16:95: error: duplicate virtual IP of network `net`: `v` (first declared at line 16)",
                "f.yaml:16:114: error: primary holder `n9` of virtual IP `v` is not a peer of network `net`; did you mean `n1`?",
            ]
        );
    }

    #[test]
    fn a_network_without_a_public_peer_warns() {
        let d = check(&sdwan("[{host: n1}]", "[]"));
        assert!(!d.has_errors(), "{d}");
        let w: Vec<String> = d.warnings().map(|d| d.to_string()).collect();
        assert_eq!(
            w,
            vec!["f.yaml:13:7: warning: network `net` has no publicly reachable peer"]
        );
    }
}
