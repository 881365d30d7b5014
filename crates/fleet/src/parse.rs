//! Decoding the spanned YAML tree into the declared model, collecting every problem.

mod environments;

use super::diag::{Diagnostics, Loc, did_you_mean};
use super::model::*;
use super::yaml::{self, Entry, Kind, Node, Value};

/// Reads a fleet file from raw bytes. Returns the model when the file could be read far
/// enough to have one (it may still carry errors), and all problems found.
pub fn parse(file: &str, bytes: &[u8]) -> (Option<FleetFile>, Diagnostics) {
    let mut d = Decoder {
        file,
        diags: Diagnostics::default(),
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let before = &bytes[..e.valid_up_to()];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let col = before.len()
                - before
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |p| p + 1);
            d.error(
                Loc::new(line, col + 1),
                "file is not valid UTF-8; fleet.yaml must be UTF-8 text",
            );
            return (None, d.diags);
        }
    };
    // The long lists are decoded item by item as the reader finishes each one, so a
    // large fleet is never held as a whole YAML tree.
    let mut lists = Lists::default();
    let (root, diags) = yaml::read_streaming(
        file,
        text,
        &[&["templates"], &["nodes"], &["sdwan", "networks"]],
        &mut |path, node| {
            match path {
                ["templates"] => lists.templates.extend(d.template(&node)),
                ["nodes"] => lists.nodes.extend(d.node(&node)),
                _ => lists.networks.extend(d.network(&node)),
            }
            None
        },
    );
    d.diags.extend(diags);
    if d.diags.has_errors() && root.is_none() {
        return (None, d.diags);
    }
    let fleet = match root {
        Some(root) if !is_null(&root) => d.fleet(&root, lists),
        _ => {
            d.error(
                Loc::new(1, 1),
                "file is empty; a fleet file starts with `version: 1` and `account: ...`",
            );
            None
        }
    };
    (fleet, d.diags)
}

/// The declarations decoded while the file was being read.
#[derive(Default)]
struct Lists {
    templates: Vec<TemplateDecl>,
    nodes: Vec<NodeDecl>,
    networks: Vec<NetworkDecl>,
}

fn is_null(node: &Node) -> bool {
    matches!(&node.value, Value::Scalar(s) if s.is_null())
}

struct Decoder<'f> {
    file: &'f str,
    diags: Diagnostics,
}

/// The entries of one mapping, after unknown keys were reported.
struct Fields<'n, 'a> {
    loc: Loc,
    entries: &'n [Entry<'a>],
    what: String,
}

impl<'n, 'a> Fields<'n, 'a> {
    /// The value of `key`, treating an explicit null like an absent key.
    fn get(&self, key: &str) -> Option<&'n Node<'a>> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
            .filter(|n| !is_null(n))
    }

    /// The same mapping, named after its name once that is known to be valid.
    fn named(self, kind: &str, name: &Option<Spanned<String>>) -> Self {
        match name {
            Some(name) => Self {
                what: format!("{kind} `{}`", name.value),
                ..self
            },
            None => self,
        }
    }

    /// How the value of `key` is named in messages: "`region` of node `n1`".
    fn subject(&self, key: &str) -> String {
        format!("`{key}` of {}", self.what)
    }
}

/// What a string value must look like beyond being a non-empty string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Text,
    /// A name or a reference to one: a DNS-1123 label.
    Label,
}

const LABEL_RULE: &str = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";

impl Decoder<'_> {
    fn error(&mut self, loc: Loc, message: impl Into<String>) {
        self.diags.error(self.file, loc, message);
    }

    /// Checks that `node` is a mapping with only `known` keys; `what` names it in messages.
    fn mapping<'n, 'a>(
        &mut self,
        node: &'n Node<'a>,
        what: impl Into<String>,
        known: &[&str],
    ) -> Option<Fields<'n, 'a>> {
        let what = what.into();
        let Value::Map(entries) = &node.value else {
            self.error(
                node.loc,
                format!("{what} must be a mapping, found {}", node.value.describe()),
            );
            return None;
        };
        for e in entries {
            if !known.contains(&e.key.as_ref()) {
                let hint = did_you_mean(&e.key, known.iter().copied());
                self.error(
                    e.key_loc,
                    format!("unknown key `{}` in {what}{hint}", e.key),
                );
            }
        }
        Some(Fields {
            loc: node.loc,
            entries,
            what,
        })
    }

    /// A string value. A number, boolean or null is refused (quote it to make it text),
    /// as are an empty string and a name or reference that is not a DNS-1123 label.
    /// `subject` names the value in messages: "`hostname` of node `n1`".
    fn string(&mut self, node: &Node, subject: &str, form: Form) -> Option<Spanned<String>> {
        let scalar = match &node.value {
            Value::Scalar(s) if s.kind() == Kind::Str => s,
            Value::Scalar(s) if s.kind() != Kind::Null => {
                self.error(
                    node.loc,
                    format!(
                        "{subject} must be a string, found {} `{}`; quote it to use it as text",
                        s.kind().describe(),
                        s.text
                    ),
                );
                return None;
            }
            other => {
                self.error(
                    node.loc,
                    format!("{subject} must be a string, found {}", other.describe()),
                );
                return None;
            }
        };
        if scalar.text.is_empty() {
            self.error(node.loc, format!("{subject} may not be empty"));
            return None;
        }
        if form == Form::Label && !is_dns1123_label(&scalar.text) {
            self.error(
                node.loc,
                format!(
                    "{subject} is `{}`, not a valid DNS-1123 label: {LABEL_RULE}",
                    scalar.text
                ),
            );
            return None;
        }
        Some(Spanned::new(scalar.text.to_string(), node.loc))
    }

    /// A required string; reports it if absent (or null). `None` means "reported".
    fn required(&mut self, fields: &Fields, key: &str, form: Form) -> Option<Spanned<String>> {
        match fields.get(key) {
            Some(node) => self.string(node, &fields.subject(key), form),
            None => {
                self.error(
                    fields.loc,
                    format!("missing required key `{key}` in {}", fields.what),
                );
                None
            }
        }
    }

    fn optional(&mut self, fields: &Fields, key: &str, form: Form) -> Option<Spanned<String>> {
        let node = fields.get(key)?;
        self.string(node, &fields.subject(key), form)
    }

    fn boolean(&mut self, fields: &Fields, key: &str) -> bool {
        let Some(node) = fields.get(key) else {
            return false;
        };
        match &node.value {
            Value::Scalar(s) if let Kind::Bool(b) = s.kind() => b,
            other => {
                let found = match other {
                    Value::Scalar(s) => format!("`{}`", s.text),
                    other => other.describe().to_owned(),
                };
                self.error(
                    node.loc,
                    format!(
                        "`{key}` of {} must be true or false, found {found}",
                        fields.what
                    ),
                );
                false
            }
        }
    }

    fn word<W: Word>(&mut self, fields: &Fields, key: &str) -> Option<Spanned<W>> {
        let node = fields.get(key)?;
        let text = match &node.value {
            Value::Scalar(s) => Spanned::new(s.text.to_string(), node.loc),
            other => {
                self.error(
                    node.loc,
                    format!(
                        "`{key}` of {} must be one of: {}, found {}",
                        fields.what,
                        W::words().collect::<Vec<_>>().join(", "),
                        other.describe()
                    ),
                );
                return None;
            }
        };
        match W::parse_word(&text.value) {
            Some(w) => Some(Spanned::new(w, text.loc)),
            None => {
                let allowed: Vec<&str> = W::words().collect();
                let hint = did_you_mean(&text.value, allowed.iter().copied());
                self.error(
                    text.loc,
                    format!(
                        "`{key}` of {} is `{}`, expected one of: {}{hint}",
                        fields.what,
                        text.value,
                        allowed.join(", ")
                    ),
                );
                None
            }
        }
    }

    fn list<'n, 'a>(&mut self, fields: &Fields<'n, 'a>, key: &str) -> &'n [Node<'a>] {
        match fields.get(key) {
            None => &[],
            Some(Node {
                value: Value::Seq(items),
                ..
            }) => items,
            Some(node) => {
                self.error(
                    node.loc,
                    format!(
                        "`{key}` of {} must be a list, found {}",
                        fields.what,
                        node.value.describe()
                    ),
                );
                &[]
            }
        }
    }

    /// A list of strings; a null or empty item is an error, never a value.
    fn string_list(&mut self, fields: &Fields, key: &str, form: Form) -> Vec<Spanned<String>> {
        let subject = format!("an item of {}", fields.subject(key));
        self.list(fields, key)
            .iter()
            .filter_map(|item| self.string(item, &subject, form))
            .collect()
    }

    fn modules(&mut self, fields: &Fields) -> Vec<Spanned<ModuleRef>> {
        let mut out = Vec::new();
        for item in self.string_list(fields, "modules", Form::Text) {
            match ModuleRef::parse(&item.value) {
                Ok(m) => out.push(Spanned::new(m, item.loc)),
                Err(message) => self.error(item.loc, message),
            }
        }
        out
    }

    /// Metadata: scalar values kept as written (`01` stays `01`); a null value is kept as
    /// `None`, which removes the inherited key.
    fn metadata(&mut self, fields: &Fields) -> Vec<MetadataEntry> {
        let mut out = Vec::new();
        let Some(node) = fields.get("metadata") else {
            return out;
        };
        let Value::Map(entries) = &node.value else {
            self.error(
                node.loc,
                format!(
                    "`metadata` of {} must be a mapping of strings, found {}",
                    fields.what,
                    node.value.describe()
                ),
            );
            return out;
        };
        for e in entries {
            if is_empty_key(e) {
                self.error(
                    e.key_loc,
                    format!("metadata keys of {} may not be empty or null", fields.what),
                );
                continue;
            }
            let value = match &e.value.value {
                Value::Scalar(s) if s.is_null() => None,
                Value::Scalar(s) => Some(s.text.to_string()),
                other => {
                    self.error(
                        e.value.loc,
                        format!(
                            "metadata `{}` of {} must be a string, found {}",
                            e.key,
                            fields.what,
                            other.describe()
                        ),
                    );
                    continue;
                }
            };
            out.push((e.key.to_string(), Spanned::new(value, e.value.loc)));
        }
        out
    }

    /// The top level. The lists' items were decoded while reading (`lists`); here the
    /// lists themselves are only checked to be lists.
    fn fleet(&mut self, root: &Node, lists: Lists) -> Option<FleetFile> {
        let top = self.mapping(
            root,
            "the fleet file",
            &[
                "version",
                "account",
                "templates",
                "nodes",
                "sdwan",
                "environments",
            ],
        )?;
        self.version(&top);
        let account = self.required(&top, "account", Form::Text);
        self.list(&top, "templates");
        self.list(&top, "nodes");
        if let Some(sdwan) = top.get("sdwan")
            && let Some(fields) = self.mapping(sdwan, "`sdwan`", &["networks"])
        {
            self.list(&fields, "networks");
        }
        let environments = match top.get("environments") {
            Some(envs) => self.environments(envs),
            None => Vec::new(),
        };
        Some(FleetFile {
            file: self.file.to_owned(),
            account,
            templates: lists.templates,
            nodes: lists.nodes,
            networks: lists.networks,
            environments,
        })
    }

    /// `version` is exactly `1`, plain or quoted on one line: not `01`, `+1`, `1.0` or a
    /// block scalar.
    fn version(&mut self, top: &Fields) {
        let supported = SUPPORTED_VERSIONS
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let Some(node) = top.get("version") else {
            self.error(
                top.loc,
                format!("missing required key `version`; supported versions: {supported}"),
            );
            return;
        };
        let text = match &node.value {
            Value::Scalar(s) => s.text.as_ref(),
            other => other.describe(),
        };
        let known = matches!(&node.value, Value::Scalar(s) if !s.block && matches!(s.kind(), Kind::Number | Kind::Str))
            && SUPPORTED_VERSIONS.iter().any(|v| v.to_string() == text);
        if !known {
            self.error(
                node.loc,
                format!("unsupported version `{text}`; supported versions: {supported}"),
            );
        }
    }

    /// Decodes one declaration, noting whether the reader refused anything in it.
    fn refusals(&self) -> usize {
        self.diags.errors().count()
    }

    fn template(&mut self, node: &Node) -> Option<TemplateDecl> {
        let before = self.refusals();
        let fields = self.mapping(
            node,
            "a template",
            &[
                "name",
                "extends",
                "node_platform",
                "architecture",
                "modules",
                "metadata",
            ],
        )?;
        let name = self.required(&fields, "name", Form::Label);
        let fields = fields.named("template", &name);
        let mut template = TemplateDecl {
            loc: node.loc,
            refused: false,
            extends: self.optional(&fields, "extends", Form::Label),
            node_platform: self.optional(&fields, "node_platform", Form::Text),
            architecture: self.word(&fields, "architecture"),
            modules: self.modules(&fields),
            metadata: self.metadata(&fields),
            name,
        };
        template.refused = self.refusals() > before;
        Some(template)
    }

    fn node(&mut self, node: &Node) -> Option<NodeDecl> {
        let fields = self.mapping(
            node,
            "a node",
            &[
                "hostname",
                "template",
                "region",
                "instance_type",
                "lifecycle_class",
                "modules",
                "metadata",
            ],
        )?;
        let hostname = self.required(&fields, "hostname", Form::Label);
        let fields = fields.named("node", &hostname);
        Some(NodeDecl {
            loc: node.loc,
            template: self.required(&fields, "template", Form::Label),
            region: self.required(&fields, "region", Form::Text),
            instance_type: self.required(&fields, "instance_type", Form::Text),
            lifecycle_class: self
                .word(&fields, "lifecycle_class")
                .map(|w| w.value)
                .unwrap_or_default(),
            modules: self.modules(&fields),
            metadata: self.metadata(&fields),
            hostname,
        })
    }

    fn network(&mut self, node: &Node) -> Option<NetworkDecl> {
        let fields = self.mapping(
            node,
            "a network",
            &["name", "routing_mode", "peers", "virtual_ips"],
        )?;
        let name = self.required(&fields, "name", Form::Label);
        let fields = fields.named("network", &name);
        let routing_mode = self.word(&fields, "routing_mode");
        if fields.get("routing_mode").is_none() {
            self.error(
                fields.loc,
                format!(
                    "missing required key `routing_mode` in {}; expected one of: {}",
                    fields.what,
                    RoutingMode::words().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        let network = fields.what.clone();
        let peers = self
            .list(&fields, "peers")
            .iter()
            .filter_map(|n| self.peer(n, &network))
            .collect();
        let virtual_ips = self
            .list(&fields, "virtual_ips")
            .iter()
            .filter_map(|n| self.virtual_ip(n, &network))
            .collect();
        Some(NetworkDecl {
            loc: node.loc,
            name,
            routing_mode,
            peers,
            virtual_ips,
        })
    }

    fn peer(&mut self, node: &Node, network: &str) -> Option<PeerDecl> {
        let fields = self.mapping(
            node,
            format!("a peer of {network}"),
            &["host", "publicly_reachable"],
        )?;
        Some(PeerDecl {
            loc: node.loc,
            host: self.required(&fields, "host", Form::Label),
            publicly_reachable: self.boolean(&fields, "publicly_reachable"),
        })
    }

    fn virtual_ip(&mut self, node: &Node, network: &str) -> Option<VirtualIpDecl> {
        let fields = self.mapping(
            node,
            format!("a virtual IP of {network}"),
            &["name", "primary_holder", "failover_holders"],
        )?;
        let name = self.required(&fields, "name", Form::Label);
        let fields = fields.named("virtual IP", &name);
        Some(VirtualIpDecl {
            loc: node.loc,
            primary_holder: self.required(&fields, "primary_holder", Form::Label),
            failover_holders: self.string_list(&fields, "failover_holders", Form::Label),
            name,
        })
    }
}

/// An empty key, or a plain one that YAML reads as null (`~`, `null`, or nothing).
fn is_empty_key(e: &Entry) -> bool {
    e.key.is_empty() || (e.key_plain && matches!(e.key.as_ref(), "~" | "null" | "Null" | "NULL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let (_, mut d) = parse("f.yaml", text.as_bytes());
        d.sort();
        d.errors().map(|d| d.to_string()).collect()
    }

    const MINIMAL: &str = "version: 1\naccount: a\n";

    #[test]
    fn reads_the_reference_fleet() {
        let text = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/fleet.yaml"
        ))
        .unwrap();
        let (fleet, d) = parse("fleet.yaml", &text);
        assert!(!d.has_errors(), "{d}");
        let fleet = fleet.unwrap();
        assert_eq!(fleet.account.unwrap().value, "acme-edge");
        assert_eq!(fleet.templates.len(), 2);
        assert_eq!(
            fleet.templates[1].extends.as_ref().unwrap().value,
            "edge-base"
        );
        assert_eq!(fleet.nodes.len(), 3);
        assert_eq!(
            fleet.nodes[0].hostname.as_ref().unwrap().loc,
            Loc::new(22, 15)
        );
        assert_eq!(fleet.networks[0].peers.len(), 3);
        assert!(fleet.networks[0].peers[0].publicly_reachable);
        assert!(!fleet.networks[0].peers[1].publicly_reachable);
        assert_eq!(fleet.networks[0].virtual_ips[0].failover_holders.len(), 2);
    }

    #[test]
    fn unknown_keys_get_suggestions_everywhere() {
        let e = errors(
            "version: 1\naccount: a\ntemplate: []\nnodes:\n  - hostname: n\n    templte: t\n    region: r\n    instance_type: i\n",
        );
        assert_eq!(
            e,
            vec![
                "f.yaml:3:1: error: unknown key `template` in the fleet file; did you mean `templates`?",
                "f.yaml:5:5: error: missing required key `template` in node `n`",
                "f.yaml:6:5: error: unknown key `templte` in a node; did you mean `template`?",
            ]
        );
    }

    #[test]
    fn version_is_required_and_checked() {
        assert_eq!(
            errors("account: a\n"),
            vec!["f.yaml:1:1: error: missing required key `version`; supported versions: 1"]
        );
        assert_eq!(
            errors("version: 2\naccount: a\n"),
            vec!["f.yaml:1:10: error: unsupported version `2`; supported versions: 1"]
        );
        assert!(errors("version: '1'\naccount: a\n").is_empty());
        assert_eq!(
            errors("version: [1]\naccount: a\n"),
            vec!["f.yaml:1:10: error: unsupported version `a list`; supported versions: 1"]
        );
    }

    #[test]
    fn wrong_types_and_enums_are_reported_together() {
        let text = format!(
            "{MINIMAL}templates:\n  - name: t\n    architecture: x86\n    modules: nginx\n    metadata: [a]\n\
             sdwan:\n  networks:\n    - name: n\n      routing_mode: bgp\n      peers:\n        - host: h\n          publicly_reachable: yes\n"
        );
        let e = errors(&text);
        assert_eq!(
            e,
            vec![
                "f.yaml:5:19: error: `architecture` of template `t` is `x86`, expected one of: amd64, arm64",
                "f.yaml:6:14: error: `modules` of template `t` must be a list, found a string",
                "f.yaml:7:15: error: `metadata` of template `t` must be a mapping of strings, found a list",
                "f.yaml:11:21: error: `routing_mode` of network `n` is `bgp`, expected one of: ibgp, ebgp, static; did you mean `ebgp`?",
                "f.yaml:14:31: error: `publicly_reachable` of a peer of network `n` must be true or false, found `yes`",
            ]
        );
    }

    #[test]
    fn missing_routing_mode_is_reported_once() {
        let e = errors(&format!("{MINIMAL}sdwan:\n  networks:\n    - name: n\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("missing required key `routing_mode` in network `n`"));
    }

    #[test]
    fn module_syntax_is_checked() {
        let e = errors(&format!(
            "{MINIMAL}templates:\n  - name: t\n    modules: [nginx@v1, ok@1.0, Bad]\n"
        ));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("f.yaml:5:15: error: module `nginx@v1` has an invalid pin"));
        assert!(e[1].starts_with("f.yaml:5:33: error: module name `Bad`"));
    }

    #[test]
    fn bad_files_get_one_clear_error() {
        assert_eq!(
            errors(""),
            vec![
                "f.yaml:1:1: error: file is empty; a fleet file starts with `version: 1` and `account: ...`"
            ]
        );
        assert_eq!(errors("# only a comment\n"), errors(""),);
        assert_eq!(
            errors("- a\n- b\n"),
            vec!["f.yaml:1:1: error: the fleet file must be a mapping, found a list"]
        );
        let (_, d) = parse("f.yaml", b"version: 1\naccount: \xff\xfe\n");
        assert_eq!(
            d.to_string(),
            "f.yaml:2:10: error: file is not valid UTF-8; fleet.yaml must be UTF-8 text\n"
        );
    }

    #[test]
    fn null_values_count_as_absent() {
        let (fleet, d) = parse(
            "f.yaml",
            format!("{MINIMAL}templates:\nnodes: ~\nsdwan:\n").as_bytes(),
        );
        assert!(!d.has_errors(), "{d}");
        let fleet = fleet.unwrap();
        assert!(fleet.templates.is_empty() && fleet.nodes.is_empty() && fleet.networks.is_empty());
    }

    #[test]
    fn metadata_keeps_scalar_text() {
        let (fleet, d) = parse(
            "f.yaml",
            format!("{MINIMAL}templates:\n  - name: t\n    metadata: {{rack: 01, ok: true}}\n")
                .as_bytes(),
        );
        assert!(!d.has_errors(), "{d}");
        let md = &fleet.unwrap().templates[0].metadata;
        assert_eq!(md[0].0, "rack");
        assert_eq!(md[0].1.value.as_deref(), Some("01"));
        assert_eq!(md[1].1.value.as_deref(), Some("true"));
    }

    #[test]
    fn metadata_nulls_are_kept_as_removals_and_null_keys_refused() {
        let (fleet, d) = parse(
            "f.yaml",
            format!("{MINIMAL}templates:\n  - name: t\n    metadata: {{a: ~, b: null, c: '~', d: True}}\n")
                .as_bytes(),
        );
        assert!(!d.has_errors(), "{d}");
        let md = &fleet.unwrap().templates[0].metadata;
        let values: Vec<Option<&str>> = md.iter().map(|(_, v)| v.value.as_deref()).collect();
        assert_eq!(values, [None, None, Some("~"), Some("True")]);
        for key in ["~", "null", "''", "\"\""] {
            let e = errors(&format!(
                "{MINIMAL}templates:\n  - name: t\n    metadata: {{{key}: x}}\n"
            ));
            assert_eq!(
                e,
                ["f.yaml:5:16: error: metadata keys of template `t` may not be empty or null"],
                "{key}"
            );
        }
        // Quoted, `~` is an ordinary key.
        assert!(
            errors(&format!(
                "{MINIMAL}templates:\n  - name: t\n    metadata: {{'~': x}}\n"
            ))
            .is_empty()
        );
    }

    #[test]
    fn strings_are_strings_and_never_empty() {
        let e = errors(&format!(
            "{MINIMAL}nodes:\n  - {{hostname: '', template: 0x1f, region: r, instance_type: ~}}\n"
        ));
        assert_eq!(
            e,
            [
                "f.yaml:4:5: error: missing required key `instance_type` in a node",
                "f.yaml:4:16: error: `hostname` of a node may not be empty",
                "f.yaml:4:30: error: `template` of a node must be a string, found a number `0x1f`; quote it to use it as text",
            ]
        );
    }

    #[test]
    fn core_schema_booleans_are_booleans() {
        for (text, public) in [
            ("true", true),
            ("True", true),
            ("TRUE", true),
            ("False", false),
        ] {
            let (fleet, d) = parse(
                "f.yaml",
                format!("{MINIMAL}sdwan:\n  networks:\n    - {{name: w, routing_mode: ibgp, peers: [{{host: n, publicly_reachable: {text}}}]}}\n").as_bytes(),
            );
            assert!(!d.has_errors(), "{d}");
            assert_eq!(
                fleet.unwrap().networks[0].peers[0].publicly_reachable,
                public
            );
        }
        for text in ["yes", "'true'", "1", "on"] {
            let e = errors(&format!(
                "{MINIMAL}sdwan:\n  networks:\n    - {{name: w, routing_mode: ibgp, peers: [{{host: n, publicly_reachable: {text}}}]}}\n"
            ));
            assert_eq!(e.len(), 1, "{text}: {e:?}");
        }
    }

    #[test]
    fn version_is_exactly_one() {
        for ok in ["1", "'1'", "\"1\""] {
            assert!(
                errors(&format!("version: {ok}\naccount: a\n")).is_empty(),
                "{ok}"
            );
        }
        for bad in [
            "'001'", "\"+1\"", "+01", "01", "1.0", "0x1", "|\n  1", ">\n  1", "true", "~",
        ] {
            let e = errors(&format!("version: {bad}\naccount: a\n"));
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(
                e[0].starts_with("f.yaml:1:") && e[0].contains("version"),
                "{bad}: {e:?}"
            );
        }
    }
}
