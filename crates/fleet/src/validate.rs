//! Semantic checks of a declared fleet: names, references, inheritance, SD-WAN rules.
//! Every problem is reported; nothing stops at the first one.

use std::collections::{HashMap, HashSet};

use super::diag::{Diagnostics, Loc, did_you_mean};
use super::model::*;

/// Templates in one `extends` chain, the template itself included. Deeper chains are
/// refused: each template's chain is walked to resolve it.
pub const MAX_EXTENDS_DEPTH: usize = 32;

/// Checks `fleet` and appends every error and warning to `diags`. The reader already
/// checked the form of every value; these are the checks between values.
pub fn validate(fleet: &FleetFile, diags: &mut Diagnostics) {
    let mut v = Validator {
        file: &fleet.file,
        diags,
    };
    let templates = v.unique_names("template", fleet.templates.iter().map(|t| &t.name));
    let nodes = v.unique_names("node", fleet.nodes.iter().map(|n| &n.hostname));
    v.templates(fleet, &templates);
    v.nodes(fleet, &templates);
    v.networks(fleet, &nodes);
}

struct Validator<'a> {
    file: &'a str,
    diags: &'a mut Diagnostics,
}

impl Validator<'_> {
    fn error(&mut self, loc: Loc, message: impl Into<String>) {
        self.diags.error(self.file, loc, message);
    }

    /// Checks names for uniqueness; returns each name with its first position.
    fn unique_names<'n>(
        &mut self,
        what: &str,
        names: impl Iterator<Item = &'n Option<Spanned<String>>>,
    ) -> HashMap<&'n str, Loc> {
        let mut seen: HashMap<&str, Loc> = HashMap::new();
        for name in names.flatten() {
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
    ) {
        if declared.contains_key(reference.value.as_str()) {
            return;
        }
        let hint = did_you_mean(&reference.value, declared.keys().copied());
        self.error(reference.loc, format!("{}{hint}", message()));
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
            let owner = owner("template", &t.name);
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
            let Some(name) = &t.name else { continue };
            let first = by_name
                .get(name.value.as_str())
                .is_some_and(|first| std::ptr::eq(*first, t));
            if !first || in_cycle.contains(name.value.as_str()) {
                continue;
            }
            let chain = ancestry(t, &by_name);
            if chain.len() > MAX_EXTENDS_DEPTH {
                self.error(
                    t.loc,
                    format!(
                        "template `{}` inherits through more than {MAX_EXTENDS_DEPTH} templates; flatten the chain",
                        name.value
                    ),
                );
                continue;
            }
            // A refused value or a dangling parent is already reported.
            if chain.iter().any(|a| {
                a.refused
                    || a.extends
                        .as_ref()
                        .is_some_and(|p| !by_name.contains_key(p.value.as_str()))
            }) {
                continue;
            }
            if !chain.iter().any(|a| a.node_platform.is_some()) {
                self.error(
                    t.loc,
                    format!(
                        "template `{}` has no `node_platform` and inherits none",
                        name.value
                    ),
                );
            }
            if !chain.iter().any(|a| a.architecture.is_some()) {
                self.error(
                    t.loc,
                    format!(
                        "template `{}` has no `architecture` and inherits none",
                        name.value
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
            let mut path: Vec<(&str, &TemplateDecl)> = Vec::new();
            let mut current = start.name.as_ref().map(|n| (n.value.as_str(), start));
            while let Some((name, t)) = current {
                if done.contains(name) {
                    break;
                }
                if let Some(pos) = path.iter().position(|(p, _)| *p == name) {
                    let cycle = &path[pos..];
                    let start_at = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, (_, t))| t.loc)
                        .map_or(0, |(i, _)| i);
                    let mut names: Vec<&str> = cycle[start_at..]
                        .iter()
                        .chain(&cycle[..start_at])
                        .map(|(n, _)| *n)
                        .collect();
                    names.push(names[0]);
                    self.error(
                        cycle[start_at].1.loc,
                        format!(
                            "templates extend each other in a cycle: {}",
                            names.join(" -> ")
                        ),
                    );
                    in_cycle.extend(cycle.iter().map(|(n, _)| *n));
                    break;
                }
                path.push((name, t));
                current = t.extends.as_ref().and_then(|p| {
                    by_name
                        .get_key_value(p.value.as_str())
                        .map(|(n, t)| (*n, *t))
                });
            }
            done.extend(path.iter().map(|(n, _)| *n));
        }
        in_cycle
    }

    fn nodes(&mut self, fleet: &FleetFile, templates: &HashMap<&str, Loc>) {
        for n in &fleet.nodes {
            let owner = owner("node", &n.hostname);
            if let Some(template) = &n.template {
                self.reference(template, templates, || {
                    format!(
                        "{owner} uses template `{}`, which is not declared",
                        template.value
                    )
                });
            }
            self.modules(&owner, &n.modules);
        }
    }

    fn networks(&mut self, fleet: &FleetFile, nodes: &HashMap<&str, Loc>) {
        self.unique_names("network", fleet.networks.iter().map(|n| &n.name));
        for net in &fleet.networks {
            let network = owner("network", &net.name);
            let mut peers: HashMap<&str, Loc> = HashMap::new();
            for host in net.peers.iter().filter_map(|p| p.host.as_ref()) {
                self.reference(host, nodes, || {
                    format!("peer `{}` of {network} is not a declared node", host.value)
                });
                if let Some(first) = peers.insert(&host.value, host.loc) {
                    self.error(
                        host.loc,
                        format!(
                            "`{}` is a peer of {network} twice (first at line {})",
                            host.value, first.line
                        ),
                    );
                }
            }
            self.unique_names(
                &format!("virtual IP of {network}:"),
                net.virtual_ips.iter().map(|v| &v.name),
            );
            for vip in &net.virtual_ips {
                self.virtual_ip(&network, vip, &peers);
            }
            if net.name.is_some() && !net.peers.iter().any(|p| p.publicly_reachable) {
                self.diags.warning(
                    self.file,
                    net.loc,
                    format!("{network} has no publicly reachable peer"),
                );
            }
        }
    }

    fn virtual_ip(&mut self, network: &str, vip: &VirtualIpDecl, peers: &HashMap<&str, Loc>) {
        let name = owner("virtual IP", &vip.name);
        let not_a_peer = |role: &str, holder: &str| {
            format!("{role} `{holder}` of {name} is not a peer of {network}")
        };
        if let Some(primary) = &vip.primary_holder {
            self.reference(primary, peers, || {
                not_a_peer("primary holder", &primary.value)
            });
        }
        let primary = vip.primary_holder.as_ref().map(|p| p.value.as_str());
        let mut seen: HashMap<&str, Loc> = HashMap::new();
        for holder in &vip.failover_holders {
            self.reference(holder, peers, || {
                not_a_peer("failover holder", &holder.value)
            });
            if Some(holder.value.as_str()) == primary {
                self.error(
                    holder.loc,
                    format!(
                        "`{}` is the primary holder of {name} and cannot also be a failover holder",
                        holder.value
                    ),
                );
            }
            if let Some(first) = seen.insert(&holder.value, holder.loc) {
                self.error(
                    holder.loc,
                    format!(
                        "failover holder `{}` of {name} is listed twice (first at line {})",
                        holder.value, first.line
                    ),
                );
            }
        }
    }
}

/// How a declaration is named in messages: "template `edge`", or "a template" when its
/// name was refused.
fn owner(kind: &str, name: &Option<Spanned<String>>) -> String {
    match name {
        Some(name) => format!("{kind} `{}`", name.value),
        None => format!("a {kind}"),
    }
}

/// Templates by name; a duplicate name (reported elsewhere) maps to its first declaration.
pub(crate) fn first_declarations(templates: &[TemplateDecl]) -> HashMap<&str, &TemplateDecl> {
    let mut by_name = HashMap::with_capacity(templates.len());
    for t in templates {
        if let Some(name) = &t.name {
            by_name.entry(name.value.as_str()).or_insert(t);
        }
    }
    by_name
}

/// A template and its ancestors, nearest first; stops at a missing parent or a repeat,
/// and one template past [`MAX_EXTENDS_DEPTH`].
pub(crate) fn ancestry<'f>(
    template: &'f TemplateDecl,
    by_name: &HashMap<&str, &'f TemplateDecl>,
) -> Vec<&'f TemplateDecl> {
    let mut chain = vec![template];
    let mut current = template;
    while chain.len() <= MAX_EXTENDS_DEPTH
        && let Some(parent) = current
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
    use crate::parse::parse;

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
        for f in ["fleet.yaml", "fleet-v2.yaml"] {
            let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
            let d = check(&std::fs::read_to_string(format!("{examples}/{f}")).unwrap());
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
                "f.yaml:7:11: error: `name` of a template is `Base_2`, not a valid DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
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

    /// An empty or refused name is reported once by the reader and is no name at all
    /// here: no duplicate of another empty name, no reference to it, no follow-on error.
    #[test]
    fn refused_names_and_values_cause_no_follow_on_errors() {
        let e = errors(&format!(
            "{HEAD}{BASE}  - {{name: ''}}\n  - {{name: ''}}\n  - {{name: bad, extends: base, architecture: x86}}\n  - {{name: child, extends: bad}}\nnodes:\n  - {{hostname: n, template: '', region: r, instance_type: i}}\n"
        ));
        assert_eq!(
            e,
            [
                "f.yaml:7:12: error: `name` of a template may not be empty",
                "f.yaml:8:12: error: `name` of a template may not be empty",
                "f.yaml:9:46: error: `architecture` of template `bad` is `x86`, expected one of: amd64, arm64",
                "f.yaml:12:29: error: `template` of node `n` may not be empty",
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
