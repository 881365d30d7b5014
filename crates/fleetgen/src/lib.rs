//! Fleets drawn from an `arbitrary` model and printed as YAML in varied styles, shared by
//! the schema parity test (tests/offline/schema.rs), the fuzz regressions
//! (tests/offline/fuzz_regressions.rs) and the structure-aware fuzz target
//! (fuzz/fuzz_targets/structured.rs).
//!
//! The model is the shape of a fleet.yaml (templates, nodes, networks, their keys) whose
//! values come from small pools, so that most references resolve and most fleets are
//! valid, mixed with empty, null, unicode, typed (`01`, `True`, `24.04`), over-long,
//! duplicate and malformed values, wrong types and unknown keys. The same tree is printed
//! with block or flow collections, every scalar style, `---`, a `%YAML` directive, a BOM
//! and CRLF line ends; an empty input still yields a (valid) fleet.

use std::fmt::Write;

use arbitrary::{Arbitrary, Result, Unstructured};
use fleetgate_fleet::{self as fleet, LiveObject, PlanOptions, ResolveOptions};

/// How one scalar is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    Plain,
    Single,
    Double,
    /// `|-` block scalar (a value in block context only; elsewhere double-quoted).
    Literal,
}

/// A YAML tree with its printing style.
#[derive(Debug, Clone)]
pub enum Y {
    Scalar(String, Quote),
    /// A null, spelled `~`, `null`, `NULL` or (as a block mapping value) nothing.
    Null(u8),
    Seq(Vec<Y>, bool),
    Map(Vec<(String, Y)>, bool),
}

/// A fleet file: its tree and how the whole text is dressed.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub tree: Y,
    pub indent: usize,
    pub doc_start: bool,
    pub directive: bool,
    pub bom: bool,
    pub crlf: bool,
}

impl<'a> Arbitrary<'a> for Fleet {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mut g = Gen { u };
        let tree = g.fleet()?;
        Ok(Fleet {
            tree,
            indent: if g.odd(25)? { 4 } else { 2 },
            doc_start: g.odd(25)?,
            directive: g.odd(6)?,
            bom: g.odd(6)?,
            crlf: g.odd(12)?,
        })
    }
}

impl Fleet {
    /// The file as text.
    pub fn yaml(&self) -> String {
        let mut out = String::new();
        if self.bom {
            out.push('\u{feff}');
        }
        if self.directive {
            out.push_str("%YAML 1.2\n---\n");
        } else if self.doc_start {
            out.push_str("---\n");
        }
        let p = Printer {
            indent: self.indent,
        };
        match &self.tree {
            Y::Map(entries, false) if !entries.is_empty() => p.block_map(&mut out, entries, 0),
            other => {
                out.push_str(&p.flow(other));
                out.push('\n');
            }
        }
        if self.crlf {
            out = out.replace('\n', "\r\n");
        }
        out
    }

    /// The same tree in another dress: every collection in flow style or every one in
    /// block style, every scalar double-quoted where that keeps its type.
    pub fn restyled(&self, flow: bool) -> Fleet {
        fn walk(y: &Y, flow: bool) -> Y {
            match y {
                Y::Scalar(t, q) => {
                    let q = if *q == Quote::Plain {
                        Quote::Plain
                    } else {
                        Quote::Double
                    };
                    Y::Scalar(t.clone(), q)
                }
                Y::Null(n) => Y::Null(*n),
                Y::Seq(items, _) => Y::Seq(items.iter().map(|i| walk(i, flow)).collect(), flow),
                Y::Map(entries, _) => Y::Map(
                    entries
                        .iter()
                        .map(|(k, v)| (k.clone(), walk(v, flow)))
                        .collect(),
                    flow,
                ),
            }
        }
        Fleet {
            tree: walk(&self.tree, flow),
            indent: 2,
            doc_start: !self.doc_start,
            directive: false,
            bom: false,
            crlf: !self.crlf,
        }
    }
}

/// Values of a string key. Valid ones come first, so that sparse input stays valid.
const TEXTS: &[&str] = &[
    "edge",
    "ap-tokyo-1",
    "t3-medium",
    "ubuntu-24.04",
    "",
    "~",
    "null",
    "True",
    "true",
    "01",
    "1",
    "+1",
    "1.0",
    "24.04",
    "0x1f",
    ".inf",
    "ünïcödé",
    "日本",
    "Bad_Name",
    "-a",
    "a-",
    "a b",
    "yes",
    "a:b",
    "x\ty",
    "é",
    "\u{1}",
];
/// Names: the pool's own names are generated; these are the odd ones.
const ODD_NAMES: &[&str] = &[
    "", "Bad_Name", "-a", "a-", "a.b", "ünï", "1", "01", "true", "null", "~", "a b",
];
const MODULES: &[&str] = &[
    "chrony@4.5",
    "nginx@1.26.2",
    "openssh@9.6p1",
    "pkg@2024.01",
    "dpkg@1:2.3.4-1",
    "rc@1.2.3~rc1",
    "openssl@3.0.13-1",
    "base@blessed",
    "edge@live",
    "plain",
    "nginx@1.27",
    "",
    "Nginx",
    "a@b@1.0.0",
    "n@v1.2",
    "n@1.2.",
    "n@latest",
    "@1.0",
    "n@",
    "é@1.0",
    "n@1 2",
];
const WORDS: &[&str] = &[
    "amd64",
    "arm64",
    "persistent",
    "ephemeral",
    "ibgp",
    "ebgp",
    "static",
    "x86",
    "",
    "AMD64",
    "1",
];
const BOOLS: &[&str] = &[
    "true", "false", "True", "FALSE", "yes", "1", "on", "\"true\"",
];

struct Gen<'u, 'a> {
    u: &'u mut Unstructured<'a>,
}

impl Gen<'_, '_> {
    /// True with probability `percent`%; false once the input runs out.
    fn odd(&mut self, percent: u8) -> Result<bool> {
        Ok(self.u.int_in_range(0..=99u8)? >= 100 - percent)
    }

    fn quote(&mut self) -> Result<Quote> {
        Ok(match self.u.int_in_range(0..=7u8)? {
            0..=3 => Quote::Plain,
            4 => Quote::Single,
            5 | 6 => Quote::Double,
            _ => Quote::Literal,
        })
    }

    fn style(&mut self) -> Result<bool> {
        self.u.ratio(1, 3)
    }

    fn pick<'s>(&mut self, from: &[&'s str]) -> Result<&'s str> {
        Ok(from[self.u.choose_index(from.len())?])
    }

    /// A value that should be a string: usually `valid`, sometimes anything.
    fn string(&mut self, valid: String, odd: &[&str]) -> Result<Y> {
        if !self.odd(15)? {
            let q = self.quote()?;
            return Ok(Y::Scalar(valid, q));
        }
        Ok(match self.u.int_in_range(0..=9u8)? {
            0 => Y::Null(self.u.arbitrary()?),
            1 => Y::Seq(vec![Y::Scalar(valid, Quote::Plain)], self.style()?),
            2 => Y::Scalar("a".repeat(self.u.int_in_range(60..=70)?), Quote::Plain),
            3 => {
                let s: String = self.u.arbitrary()?;
                Y::Scalar(s.chars().take(12).collect(), Quote::Double)
            }
            _ => {
                let t = self.pick(odd)?.to_owned();
                let q = self.quote()?;
                Y::Scalar(t, q)
            }
        })
    }

    /// One of `pool` names (`t0`...), usually; an odd name sometimes.
    fn name(&mut self, prefix: &str, pool: u8) -> Result<Y> {
        let n = self.u.int_in_range(0..=pool - 1)?;
        self.string(format!("{prefix}{n}"), ODD_NAMES)
    }

    fn text(&mut self, valid: &str) -> Result<Y> {
        self.string(valid.to_owned(), TEXTS)
    }

    fn word(&mut self, valid: &[&str]) -> Result<Y> {
        let v = self.pick(valid)?.to_owned();
        self.string(v, WORDS)
    }

    /// Up to `max` items; sometimes a null or empty list.
    fn list(&mut self, max: u8, mut item: impl FnMut(&mut Self) -> Result<Y>) -> Result<Y> {
        if self.odd(5)? {
            return Ok(Y::Null(self.u.arbitrary()?));
        }
        let n = self.u.int_in_range(0..=max)?;
        let mut items = Vec::with_capacity(n.into());
        for _ in 0..n {
            items.push(if self.odd(3)? {
                Y::Null(self.u.arbitrary()?)
            } else {
                item(self)?
            });
        }
        Ok(Y::Seq(items, self.style()?))
    }

    /// A mapping from `(key, value)` candidates: required keys are kept unless a rare
    /// draw drops them, optional ones appear about half the time; sometimes a misspelt key.
    fn map(&mut self, fields: Vec<(&str, bool, Y)>) -> Result<Y> {
        let mut entries = Vec::new();
        for (key, required, value) in fields {
            let keep = if required {
                !self.odd(3)?
            } else {
                self.u.ratio(1, 2)? || self.u.is_empty()
            };
            if keep {
                entries.push((key.to_owned(), value));
            }
        }
        if self.odd(2)? {
            entries.push(("colour".to_owned(), Y::Scalar("red".into(), Quote::Plain)));
        }
        Ok(Y::Map(entries, self.style()?))
    }

    fn modules(&mut self) -> Result<Y> {
        self.list(3, |g| {
            let valid = g.pick(&MODULES[..9])?.to_owned();
            g.string(valid, MODULES)
        })
    }

    fn metadata(&mut self) -> Result<Y> {
        if self.odd(5)? {
            return Ok(Y::Null(self.u.arbitrary()?));
        }
        let n = self.u.int_in_range(0..=3u8)?;
        let mut entries: Vec<(String, Y)> = Vec::new();
        for _ in 0..n {
            let key = if self.odd(5)? {
                self.pick(&["", "~", "ké", "a b", "x.io/y"])?.to_owned()
            } else {
                format!("k{}", self.u.int_in_range(0..=3u8)?)
            };
            if entries.iter().any(|(k, _)| *k == key) {
                continue; // duplicate keys are the reader's alone; the schema never sees them
            }
            let value = match self.u.int_in_range(0..=9u8)? {
                0 => Y::Null(self.u.arbitrary()?),
                1 => Y::Seq(vec![], true),
                _ => {
                    let t = self.pick(TEXTS)?.to_owned();
                    let q = self.quote()?;
                    Y::Scalar(t, q)
                }
            };
            entries.push((key, value));
        }
        Ok(Y::Map(entries, self.style()?))
    }

    fn template(&mut self) -> Result<Y> {
        let fields = vec![
            ("name", true, self.name("t", 4)?),
            ("extends", false, self.name("t", 4)?),
            ("node_platform", false, self.text("ubuntu-24.04")?),
            ("architecture", false, self.word(&["amd64", "arm64"])?),
            ("modules", false, self.modules()?),
            ("metadata", false, self.metadata()?),
        ];
        self.map(fields)
    }

    fn node(&mut self) -> Result<Y> {
        let fields = vec![
            ("hostname", true, self.name("n", 4)?),
            ("template", true, self.name("t", 4)?),
            ("region", true, self.text("ap-tokyo-1")?),
            ("instance_type", true, self.text("t3-medium")?),
            (
                "lifecycle_class",
                false,
                self.word(&["persistent", "ephemeral"])?,
            ),
            ("modules", false, self.modules()?),
            ("metadata", false, self.metadata()?),
        ];
        self.map(fields)
    }

    fn network(&mut self) -> Result<Y> {
        let peers = self.list(3, |g| {
            let host = g.name("n", 4)?;
            let public = if g.odd(10)? {
                let b = g.pick(BOOLS)?;
                match b.strip_prefix('"') {
                    Some(quoted) => Y::Scalar(quoted.trim_end_matches('"').into(), Quote::Double),
                    None => Y::Scalar(b.into(), Quote::Plain),
                }
            } else {
                let b = g.u.arbitrary::<bool>()?;
                Y::Scalar(b.to_string(), Quote::Plain)
            };
            g.map(vec![
                ("host", true, host),
                ("publicly_reachable", false, public),
            ])
        })?;
        let vips = self.list(2, |g| {
            let fields = vec![
                ("name", true, g.name("v", 2)?),
                ("primary_holder", true, g.name("n", 4)?),
                ("failover_holders", false, g.list(2, |g| g.name("n", 4))?),
            ];
            g.map(fields)
        })?;
        let fields = vec![
            ("name", true, self.name("w", 2)?),
            (
                "routing_mode",
                true,
                self.word(&["ibgp", "ebgp", "static"])?,
            ),
            ("peers", false, peers),
            ("virtual_ips", false, vips),
        ];
        self.map(fields)
    }

    fn version(&mut self) -> Result<Y> {
        // Spellings the schema can tell apart once YAML is read as JSON; `01`, `+1` and
        // `1.0` read as the number 1 and are the reader's alone (see the unit tests).
        Ok(match self.u.int_in_range(0..=19u8)? {
            0 => Y::Scalar("2".into(), Quote::Plain),
            1 => Y::Scalar("01".into(), Quote::Single),
            2 => Y::Scalar("1".into(), Quote::Double),
            3 => Y::Null(self.u.arbitrary()?),
            4 => Y::Scalar("v1".into(), Quote::Plain),
            _ => Y::Scalar("1".into(), Quote::Plain),
        })
    }

    fn fleet(&mut self) -> Result<Y> {
        let version = self.version()?;
        let account = self.text("acme")?;
        let templates = self.list(4, Self::template)?;
        let nodes = self.list(4, Self::node)?;
        let networks = self.list(2, Self::network)?;
        let sdwan = if self.odd(5)? {
            Y::Null(self.u.arbitrary()?)
        } else {
            Y::Map(vec![("networks".into(), networks)], self.style()?)
        };
        self.map(vec![
            ("version", true, version),
            ("account", true, account),
            ("templates", false, templates),
            ("nodes", false, nodes),
            ("sdwan", false, sdwan),
        ])
    }
}

struct Printer {
    indent: usize,
}

/// Whether `text` can be written plain and read back as the same text: YAML types it by
/// the core schema afterwards, which is the point.
fn plain_ok(text: &str, flow: bool) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    (first.is_alphanumeric() || (first == '.' && text.len() > 1) || first == '+')
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || "-._~+@/".contains(c) || (c == ':' && !flow))
        && !text.ends_with(':')
}

fn double_quoted(text: &str) -> String {
    let mut out = String::from('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{fffe}' | '\u{ffff}' | '\u{feff}') => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn scalar(text: &str, quote: Quote, flow: bool) -> String {
    match quote {
        Quote::Plain if plain_ok(text, flow) => text.to_owned(),
        Quote::Single if !text.chars().any(char::is_control) => {
            format!("'{}'", text.replace('\'', "''"))
        }
        _ => double_quoted(text),
    }
}

fn null(spelling: u8, empty_ok: bool) -> &'static str {
    match spelling % 4 {
        0 if empty_ok => "",
        1 => "null",
        2 => "NULL",
        _ => "~",
    }
}

/// A mapping key; `~` is written plain, a null key.
fn key(k: &str) -> String {
    match k {
        "~" => k.to_owned(),
        _ => scalar(k, Quote::Plain, true),
    }
}

impl Printer {
    fn flow(&self, y: &Y) -> String {
        match y {
            Y::Scalar(t, q) => scalar(t, *q, true),
            Y::Null(n) => null(*n, false).to_owned(),
            Y::Seq(items, _) => {
                let items: Vec<String> = items.iter().map(|i| self.flow(i)).collect();
                format!("[{}]", items.join(", "))
            }
            Y::Map(entries, _) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", key(k), self.flow(v)))
                    .collect();
                format!("{{{}}}", entries.join(", "))
            }
        }
    }

    fn block_map(&self, out: &mut String, entries: &[(String, Y)], at: usize) {
        let pad = " ".repeat(at);
        for (k, v) in entries {
            let _ = write!(out, "{pad}{}:", key(k));
            self.block_value(out, v, at);
        }
    }

    /// A value after `key:` or `-`, at the indentation `at` of its key.
    fn block_value(&self, out: &mut String, v: &Y, at: usize) {
        match v {
            Y::Map(entries, false) if !entries.is_empty() => {
                out.push('\n');
                self.block_map(out, entries, at + self.indent);
            }
            Y::Seq(items, false) if !items.is_empty() => {
                out.push('\n');
                self.block_seq(out, items, at + self.indent);
            }
            Y::Scalar(t, Quote::Literal)
                if !t.is_empty()
                    && !t.starts_with([' ', '\t', '\n'])
                    && !t.contains(['\n', '\r'])
                    && !t.chars().any(char::is_control) =>
            {
                let pad = " ".repeat(at + self.indent);
                let _ = writeln!(out, " |-\n{pad}{t}");
            }
            Y::Null(n) => match null(*n, true) {
                "" => out.push('\n'),
                spelled => {
                    let _ = writeln!(out, " {spelled}");
                }
            },
            other => {
                let _ = writeln!(out, " {}", self.flow(other));
            }
        }
    }

    fn block_seq(&self, out: &mut String, items: &[Y], at: usize) {
        let pad = " ".repeat(at);
        for item in items {
            match item {
                Y::Map(entries, false) if !entries.is_empty() => {
                    let mut inner = String::new();
                    self.block_map(&mut inner, entries, at + 2);
                    let _ = write!(out, "{pad}- {}", &inner[at + 2..]);
                }
                Y::Null(n) if n % 4 == 0 => {
                    let _ = writeln!(out, "{pad}-");
                }
                other => {
                    out.push_str(&pad);
                    out.push('-');
                    self.block_value(out, other, at);
                }
            }
        }
    }
}

/// What one generated fleet turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Valid,
    /// Refused by the reader and the schema alike.
    InvalidShape,
    /// Well formed, but the relations between values are wrong (the validator's alone).
    InvalidRelations,
    /// No YAML to JSON conversion, so no schema verdict (a null mapping key, say).
    NoJson,
}

/// Checks the invariants on one generated fleet, panicking with the file on a breach:
/// - the JSON Schema accepts it exactly when the reader finds no fault in its shape;
/// - when `fleetgate validate` accepts it, resolve succeeds, planning it from nothing and
///   against itself never fails, and against itself plans nothing;
/// - the same tree printed in flow and in block style is read to the same result.
pub fn check(fleet: &Fleet, schema: &jsonschema::Validator) -> Outcome {
    let text = fleet.yaml();
    let (parsed, diags) = fleet::parse::parse("gen.yaml", text.as_bytes());
    let shape_ok = parsed.is_some() && !diags.has_errors();
    // A null key and an infinite or NaN number have no JSON spelling (converters write
    // "null", "" or fail): no schema verdict.
    // (libyaml, under serde_yaml, takes no byte order mark; editors drop it.)
    let text_only = text.trim_start_matches('\u{feff}');
    let json = serde_yaml_ng::from_str::<serde_json::Value>(text_only)
        .ok()
        .filter(|_| !has_null_key(&fleet.tree))
        .filter(|_| {
            serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text_only)
                .is_ok_and(|yaml| !has_non_finite_number(&yaml))
        });
    if let Some(json) = &json {
        let schema_errors: Vec<String> = schema
            .iter_errors(json)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert_eq!(
            shape_ok,
            schema_errors.is_empty(),
            "the reader and the schema disagree on\n{text}\nreader: {diags}\nschema: {schema_errors:?}"
        );
    }
    let loaded = desired(&text);
    for flow in [true, false] {
        let again = desired(&fleet.restyled(flow).yaml());
        assert_eq!(
            loaded.as_ref().ok(),
            again.as_ref().ok(),
            "restyling changed the result of\n{text}\n{:?}",
            again.as_ref().err()
        );
        assert_eq!(loaded.is_ok(), again.is_ok(), "{text}");
    }
    match (&json, shape_ok, loaded) {
        (None, _, _) => Outcome::NoJson,
        (_, false, _) => Outcome::InvalidShape,
        (_, true, Err(_)) => Outcome::InvalidRelations,
        (_, true, Ok(_)) => Outcome::Valid,
    }
}

fn has_null_key(y: &Y) -> bool {
    match y {
        Y::Map(entries, _) => entries.iter().any(|(k, v)| k == "~" || has_null_key(v)),
        Y::Seq(items, _) => items.iter().any(has_null_key),
        _ => false,
    }
}

fn has_non_finite_number(y: &serde_yaml_ng::Value) -> bool {
    use serde_yaml_ng::Value as V;
    match y {
        V::Number(n) => n.as_f64().is_some_and(|f| !f.is_finite()),
        V::Sequence(items) => items.iter().any(has_non_finite_number),
        V::Mapping(entries) => entries
            .iter()
            .any(|(k, v)| has_non_finite_number(k) || has_non_finite_number(v)),
        V::Tagged(tagged) => has_non_finite_number(&tagged.value),
        _ => false,
    }
}

/// Loads, resolves and plans a fleet; the objects it resolves to, or its errors.
fn desired(text: &str) -> std::result::Result<Vec<fleet::FleetObject>, String> {
    let (fleet, _warnings) = fleet::load("gen.yaml", text.as_bytes()).map_err(|d| d.to_string())?;
    let desired = match fleet::resolve(&fleet, &ResolveOptions::default()) {
        Ok(desired) => desired,
        Err(d) => panic!("a valid fleet did not resolve: {d}\n{text}"),
    };
    let options = PlanOptions {
        repository: "gen",
        revision: "r",
        prune: true,
        exclude: &[],
    };
    let Ok(from_nothing) = fleet::plan(&desired.objects, &[], &options) else {
        panic!("planning a valid fleet from nothing failed\n{text}");
    };
    let _ = fleet::render::render_text(&from_nothing, fleet::render::Colour::Never);
    let live: Vec<LiveObject> = desired
        .objects
        .iter()
        .map(|o| LiveObject::owned_by(o, "gen"))
        .collect();
    match fleet::plan(&desired.objects, &live, &options) {
        Ok(again) => assert!(
            again.is_empty(),
            "a fleet against itself planned changes\n{text}"
        ),
        Err(_) => panic!("planning a valid fleet against itself failed\n{text}"),
    }
    Ok(desired.objects)
}
