//! Decoding `environments:`: a mapping from each environment's name to its overlay (see
//! `crate::environments` for what an overlay means).

use super::{Decoder, Fields, Form, LABEL_RULE, is_null};
use crate::model::*;
use crate::yaml::{Node, Value};

/// The most environments one file declares.
pub const MAX_ENVIRONMENTS: usize = 16;

const TEMPLATE_KEYS: &[&str] = &["node_platform", "modules", "metadata"];
const NODE_KEYS: &[&str] = &[
    "region",
    "instance_type",
    "lifecycle_class",
    "modules",
    "metadata",
];

impl Decoder<'_> {
    /// `environments:`, a mapping from each environment's name to its overlay.
    pub(crate) fn environments(&mut self, node: &Node) -> Vec<EnvironmentDecl> {
        let mut named = self.named_entries(node, "`environments`");
        // Each environment is validated as a whole fleet: their number is bounded.
        if let Some((past, _)) = named.get(MAX_ENVIRONMENTS) {
            let message = format!("at most {MAX_ENVIRONMENTS} environments may be declared");
            self.error(past.loc, message);
            named.truncate(MAX_ENVIRONMENTS);
        }
        named
            .into_iter()
            .filter_map(|(name, value)| self.environment(name, value))
            .collect()
    }

    /// The entries of a mapping keyed by names (DNS-1123 labels), each name with where
    /// it was written.
    fn named_entries<'n, 'a>(
        &mut self,
        node: &'n Node<'a>,
        what: &str,
    ) -> Vec<(Spanned<String>, &'n Node<'a>)> {
        let Value::Map(entries) = &node.value else {
            let found = node.value.describe();
            self.error(
                node.loc,
                format!("{what} must be a mapping of names, found {found}"),
            );
            return Vec::new();
        };
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            if !is_dns1123_label(&e.key) {
                self.error(
                    e.key_loc,
                    format!("`{}` in {what} is not a valid name: {}", e.key, LABEL_RULE),
                );
                continue;
            }
            out.push((Spanned::new(e.key.to_string(), e.key_loc), &e.value));
        }
        out
    }

    fn environment(&mut self, name: Spanned<String>, node: &Node) -> Option<EnvironmentDecl> {
        let what = format!("environment `{}`", name.value);
        if is_null(node) {
            return Some(EnvironmentDecl {
                loc: node.loc,
                name,
                ..Default::default()
            });
        }
        let fields = self.mapping(node, what.clone(), &["account", "templates", "nodes"])?;
        let mut env = EnvironmentDecl {
            loc: node.loc,
            account: self.optional(&fields, "account", Form::Text),
            ..Default::default()
        };
        if let Some(templates) = fields.get("templates") {
            for (name, node) in self.named_entries(templates, &format!("`templates` of {what}")) {
                let subject = format!("template `{}` in {what}", name.value);
                let Some(f) = self.overlay(node, &subject, TEMPLATE_KEYS) else {
                    continue;
                };
                env.templates.push(TemplateOverlay {
                    node_platform: self.optional(&f, "node_platform", Form::Text),
                    modules: self.modules(&f),
                    metadata: self.metadata(&f),
                    name,
                });
            }
        }
        if let Some(nodes) = fields.get("nodes") {
            for (hostname, node) in self.named_entries(nodes, &format!("`nodes` of {what}")) {
                let subject = format!("node `{}` in {what}", hostname.value);
                let Some(f) = self.overlay(node, &subject, NODE_KEYS) else {
                    continue;
                };
                env.nodes.push(NodeOverlay {
                    region: self.optional(&f, "region", Form::Text),
                    instance_type: self.optional(&f, "instance_type", Form::Text),
                    lifecycle_class: self.word(&f, "lifecycle_class").map(|w| w.value),
                    modules: self.modules(&f),
                    metadata: self.metadata(&f),
                    hostname,
                });
            }
        }
        env.name = name;
        Some(env)
    }

    /// One overlay's fields; a null overlay changes nothing.
    fn overlay<'n, 'a>(
        &mut self,
        node: &'n Node<'a>,
        what: &str,
        known: &[&str],
    ) -> Option<Fields<'n, 'a>> {
        if is_null(node) {
            return None;
        }
        self.mapping(node, what, known)
    }
}
