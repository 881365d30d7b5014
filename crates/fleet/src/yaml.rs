//! A YAML tree that remembers where every node came from.
//!
//! serde stops at the first error and forgets positions once a value is decoded; the
//! fleet contract wants every problem at once, each with `line:column`. So the file is
//! first read into this small spanned tree (the YAML grammar itself is saphyr-parser's),
//! and the typed decoding in `parse` walks it collecting problems.
//!
//! The reader is also where hostile input is stopped: a size limit, a nesting limit, and
//! no anchors or aliases at all, which rules out alias bombs ("billion laughs").

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};

use super::diag::{Diagnostics, Loc};

/// Files larger than this are refused before parsing. A 100,000-node fleet is ~20 MiB.
pub const MAX_FILE_BYTES: usize = 32 * 1024 * 1024;
/// fleet.yaml nests six levels deep; anything far deeper is not a fleet file.
pub const MAX_DEPTH: usize = 64;
/// Beyond this many entries a mapping indexes its keys to find duplicates.
const LINEAR_KEY_SCAN: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    pub loc: Loc,
    pub value: Value<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Scalar(Scalar<'a>),
    Seq(Vec<Node<'a>>),
    Map(Vec<Entry<'a>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar<'a> {
    pub text: Cow<'a, str>,
    /// Plain scalars are typed by their text (`true`, `12`, `~`); quoted ones are strings.
    pub plain: bool,
    /// A literal (`|`) or folded (`>`) block scalar.
    pub block: bool,
}

/// What a scalar is under the YAML 1.2 core schema, as JSON converters see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool(bool),
    Number,
    Str,
}

impl Kind {
    /// How the kind is named in an error message.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "a boolean",
            Kind::Number => "a number",
            Kind::Str => "a string",
        }
    }
}

impl Scalar<'_> {
    /// YAML 1.2 core schema null: `~`, `null`, or nothing at all.
    pub fn is_null(&self) -> bool {
        self.kind() == Kind::Null
    }

    /// The scalar's type: quoted and block scalars are strings; a plain one is typed by
    /// its text (`~`, `true`, `12`, `0x1f`, `1.5e3`). The rules are the YAML 1.2 core
    /// schema's as serde_yaml applies them, digits with a leading zero (`01`) being a
    /// string, so that the JSON Schema judges what this reader judges.
    pub fn kind(&self) -> Kind {
        if !self.plain {
            return Kind::Str;
        }
        let t: &str = &self.text;
        match t {
            "" | "~" | "null" | "Null" | "NULL" => Kind::Null,
            "true" | "True" | "TRUE" => Kind::Bool(true),
            "false" | "False" | "FALSE" => Kind::Bool(false),
            _ if is_number(t) => Kind::Number,
            _ => Kind::Str,
        }
    }
}

/// An integer (decimal, `0x`, `0o`, `0b`, signed) or a finite float, `.inf` or `.nan`,
/// exactly as serde_yaml reads one.
fn is_number(t: &str) -> bool {
    is_unsigned_int(t) || is_negative_int(t) || (!leading_zero(t) && is_float(t))
}

const RADIX_PREFIXES: [(&str, u32); 3] = [("0x", 16), ("0o", 8), ("0b", 2)];

/// Digits with a leading zero (`01`, `-007`): a string, not a number.
fn leading_zero(t: &str) -> bool {
    let t = t.strip_prefix(['-', '+']).unwrap_or(t);
    t.len() > 1 && t.starts_with('0') && t[1..].bytes().all(|b| b.is_ascii_digit())
}

fn is_unsigned_int(t: &str) -> bool {
    let unpositive = t.strip_prefix('+').unwrap_or(t);
    for (prefix, radix) in RADIX_PREFIXES {
        if let Some(rest) = unpositive.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return false;
            }
            if u128::from_str_radix(rest, radix).is_ok() {
                return true;
            }
        }
    }
    !unpositive.starts_with(['+', '-']) && !leading_zero(t) && unpositive.parse::<u128>().is_ok()
}

fn is_negative_int(t: &str) -> bool {
    for (prefix, radix) in RADIX_PREFIXES {
        if let Some(rest) = t.strip_prefix('-').and_then(|r| r.strip_prefix(prefix))
            && i128::from_str_radix(&format!("-{rest}"), radix).is_ok()
        {
            return true;
        }
    }
    !leading_zero(t) && t.parse::<i128>().is_ok()
}

fn is_float(t: &str) -> bool {
    let unpositive = match t.strip_prefix('+') {
        Some(u) if u.starts_with(['+', '-']) => return false,
        Some(u) => u,
        None => t,
    };
    matches!(unpositive, ".inf" | ".Inf" | ".INF")
        || matches!(t, "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN" | ".NAN")
        || unpositive.parse::<f64>().is_ok_and(f64::is_finite)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'a> {
    pub key: Cow<'a, str>,
    /// Whether the key was written plain, so that `~` is a null key, not the text "~".
    pub key_plain: bool,
    pub key_loc: Loc,
    pub value: Node<'a>,
}

impl Value<'_> {
    /// How the value is named in an error message ("expected a list, found a mapping").
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Scalar(s) => s.kind().describe(),
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

fn loc_of(mark: &Marker) -> Loc {
    Loc::new(mark.line(), mark.col() + 1)
}

enum Frame<'a> {
    Seq {
        loc: Loc,
        items: Vec<Node<'a>>,
    },
    Map {
        loc: Loc,
        entries: Vec<Entry<'a>>,
        pending_key: Option<(Cow<'a, str>, bool, Loc)>,
        index: Option<HashMap<Cow<'a, str>, Loc>>,
    },
}

/// Reads `text` into a spanned tree. Returns the root (None for an empty document or a
/// fatal error) and every problem found.
pub fn read<'a>(file: &str, text: &'a str) -> (Option<Node<'a>>, Diagnostics) {
    read_streaming(file, text, &[], &mut |_, node| Some(node))
}

/// Like [`read`], but each finished item of a list at one of `streamed` paths (keys from
/// the root, such as `["nodes"]`) is handed to `sink` as soon as it is complete; the
/// item is kept in the tree only if `sink` gives it back. A 100,000-node file then
/// never exists as one tree.
pub fn read_streaming<'a>(
    file: &str,
    text: &'a str,
    streamed: &[&[&str]],
    sink: &mut dyn FnMut(&[&str], Node<'a>) -> Option<Node<'a>>,
) -> (Option<Node<'a>>, Diagnostics) {
    let mut reader = Reader {
        file,
        diags: Diagnostics::default(),
        stack: Vec::new(),
        root: None,
        documents: 0,
        streamed,
        sink,
    };
    let fatal = reader.run(text).is_err();
    let root = if fatal { None } else { reader.root };
    (root, reader.diags)
}

struct Reader<'f, 'a> {
    file: &'f str,
    diags: Diagnostics,
    stack: Vec<Frame<'a>>,
    root: Option<Node<'a>>,
    documents: usize,
    streamed: &'f [&'f [&'f str]],
    sink: &'f mut dyn FnMut(&[&str], Node<'a>) -> Option<Node<'a>>,
}

/// Marks that reading stopped; the reason is already in the diagnostics.
struct Fatal;

impl<'f, 'a> Reader<'f, 'a> {
    fn run(&mut self, text: &'a str) -> Result<(), Fatal> {
        let text_all = text;
        if text.len() > MAX_FILE_BYTES {
            return self.fatal(
                Loc::new(1, 1),
                format!(
                    "file is {} bytes, larger than the limit of {} bytes (32 MiB)",
                    text.len(),
                    MAX_FILE_BYTES
                ),
            );
        }
        if let Some((loc, c)) = forbidden_character(text) {
            return self.fatal(
                loc,
                format!(
                    "character U+{:04X} is not allowed in YAML; write it as an escape (`\\u{:04X}`) in a double-quoted string",
                    u32::from(c),
                    u32::from(c)
                ),
            );
        }
        if let Some((loc, version)) = unsupported_yaml_version(text) {
            return self.fatal(
                loc,
                format!("`%YAML {version}` is not supported; fleet.yaml is YAML 1.2 (or 1.1)"),
            );
        }
        for event in Parser::new_from_str(text) {
            let (event, span) = match event {
                Ok(ev) => ev,
                Err(e) => {
                    let loc = error_position(text, e.marker(), e.info());
                    return self.fatal(loc, format!("not valid YAML: {}", e.info()));
                }
            };
            let loc = loc_of(&span.start);
            match event {
                Event::DocumentStart(_) => {
                    self.documents += 1;
                    if self.documents > 1 {
                        return self.fatal(
                            loc,
                            "more than one YAML document; fleet.yaml holds exactly one",
                        );
                    }
                }
                Event::Alias(_) => {
                    self.error(loc, "aliases (`*name`) are not supported in fleet.yaml");
                    self.push_node(Node {
                        loc,
                        value: Value::Scalar(Scalar {
                            text: Cow::Borrowed(""),
                            plain: true,
                            block: false,
                        }),
                    })?;
                }
                Event::Scalar(text, style, anchor, tag) => {
                    let plain = style == ScalarStyle::Plain;
                    let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
                    // A block scalar's span starts at its content; point at its `|`/`>`.
                    let loc = if block {
                        block_indicator(text_all, loc).unwrap_or(loc)
                    } else {
                        loc
                    };
                    self.refuse_decorations(loc, anchor, tag.is_some());
                    self.push_node(Node {
                        loc,
                        value: Value::Scalar(Scalar { text, plain, block }),
                    })?;
                }
                Event::SequenceStart(anchor, tag) => {
                    self.refuse_decorations(loc, anchor, tag.is_some());
                    self.open(
                        loc,
                        Frame::Seq {
                            loc,
                            items: Vec::new(),
                        },
                    )?;
                }
                Event::MappingStart(anchor, tag) => {
                    self.refuse_decorations(loc, anchor, tag.is_some());
                    self.open(
                        loc,
                        Frame::Map {
                            loc,
                            entries: Vec::new(),
                            pending_key: None,
                            index: None,
                        },
                    )?;
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let node = match self.stack.pop() {
                        Some(Frame::Seq { loc, items }) => Node {
                            loc,
                            value: Value::Seq(items),
                        },
                        Some(Frame::Map { loc, entries, .. }) => Node {
                            loc,
                            value: Value::Map(entries),
                        },
                        None => return self.fatal(loc, "unbalanced YAML collection"),
                    };
                    self.push_node(node)?;
                }
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
            }
        }
        Ok(())
    }

    fn refuse_decorations(&mut self, loc: Loc, anchor: usize, tagged: bool) {
        if anchor != 0 {
            self.error(loc, "anchors (`&name`) are not supported in fleet.yaml");
        }
        if tagged {
            self.error(loc, "YAML tags (`!tag`) are not supported in fleet.yaml");
        }
    }

    fn open(&mut self, loc: Loc, frame: Frame<'a>) -> Result<(), Fatal> {
        if self.stack.len() >= MAX_DEPTH {
            return self.fatal(
                loc,
                format!("nesting deeper than {MAX_DEPTH} levels; fleet.yaml is never this deep"),
            );
        }
        if let Some(Frame::Map {
            pending_key: None, ..
        }) = self.stack.last()
        {
            return self.fatal(loc, "mapping keys must be plain strings, not collections");
        }
        self.stack.push(frame);
        Ok(())
    }

    /// The keys leading from the root to the list being filled, if it is a streamed one.
    fn streamed_list(&self) -> Option<&'f [&'f str]> {
        let (Frame::Seq { .. }, parents) = self.stack.split_last()? else {
            return None;
        };
        self.streamed.iter().copied().find(|path| {
            path.len() == parents.len()
                && parents.iter().zip(path.iter()).all(|(frame, key)| {
                    matches!(frame, Frame::Map { pending_key: Some((k, _, _)), .. } if k == key)
                })
        })
    }

    /// Places a finished node into its parent: a list item, a mapping key or value, or the root.
    fn push_node(&mut self, node: Node<'a>) -> Result<(), Fatal> {
        let node = match self.streamed_list() {
            Some(path) => match (self.sink)(path, node) {
                Some(kept) => kept,
                None => return Ok(()),
            },
            None => node,
        };
        let file = self.file;
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map {
                entries,
                pending_key,
                index,
                ..
            }) => match pending_key.take() {
                Some((key, key_plain, key_loc)) => {
                    let first = find_key(entries, index, &key, key_loc);
                    match first {
                        Some(first) => self.diags.error(
                            file,
                            key_loc,
                            format!("duplicate key `{key}` (first at line {})", first.line),
                        ),
                        None => entries.push(Entry {
                            key,
                            key_plain,
                            key_loc,
                            value: node,
                        }),
                    }
                    Ok(())
                }
                None => match node.value {
                    Value::Scalar(s) => {
                        *pending_key = Some((s.text, s.plain, node.loc));
                        Ok(())
                    }
                    _ => self.fatal(node.loc, "mapping keys must be plain strings"),
                },
            },
        }
    }

    fn error(&mut self, loc: Loc, message: impl Into<String>) {
        self.diags.error(self.file, loc, message);
    }

    fn fatal(&mut self, loc: Loc, message: impl Into<String>) -> Result<(), Fatal> {
        self.error(loc, message);
        Err(Fatal)
    }
}

/// The first character YAML 1.2 forbids in a stream (outside `c-printable`): C0 controls
/// other than tab, line feed and carriage return, DEL, C1 controls other than NEL, and
/// U+FFFE/U+FFFF. Escaped in a double-quoted string they are fine.
fn forbidden_character(text: &str) -> Option<(Loc, char)> {
    let printable = |c: char| match c {
        '\t' | '\n' | '\r' | '\u{85}' => true,
        '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}' => false,
        _ => true,
    };
    let at = text.find(|c| !printable(c))?;
    let c = text[at..].chars().next()?;
    Some((position(text, at), c))
}

/// A `%YAML` directive naming a version other than 1.x, at the version number.
fn unsupported_yaml_version(text: &str) -> Option<(Loc, &str)> {
    for (i, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix("%YAML") else {
            if line.starts_with('%') {
                continue; // another directive, such as %TAG
            }
            return None; // directives only come before the document
        };
        let version = rest.split('#').next().unwrap_or_default().trim();
        if version.split('.').next() == Some("1") {
            return None;
        }
        let col = line.len() - rest.trim_start().len() + 1;
        return Some((Loc::new(i + 1, col), version));
    }
    None
}

/// Where a syntax error really is. The grammar reports an unknown escape at the opening
/// quote of its string; this finds the escape itself.
fn error_position(text: &str, mark: &Marker, info: &str) -> Loc {
    let loc = loc_of(mark);
    if !info.contains("unknown escape character") {
        return loc;
    }
    let Some(start) = byte_offset(text, loc) else {
        return loc;
    };
    let mut chars = text[start..].char_indices().skip_while(|(_, c)| *c != '"');
    chars.next();
    while let Some((_, c)) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some((at, e)) if !VALID_ESCAPES.contains(e) && e != '\n' && e != '\r' => {
                    return position(text, start + at);
                }
                _ => {}
            },
            _ => {}
        }
    }
    loc
}

/// The `|` or `>` that opens the block scalar whose content starts at `content`: the
/// last indicator on the nearest line above that ends with one (before any comment).
fn block_indicator(text: &str, content: Loc) -> Option<Loc> {
    let start = byte_offset(text, content)?;
    let before = &text[..start];
    for line_start in before
        .char_indices()
        .filter(|(_, c)| *c == '\n')
        .map(|(i, _)| i + 1)
        .rev()
        .skip(1)
        .chain(std::iter::once(0))
    {
        let line_end = before[line_start..]
            .find('\n')
            .map_or(before.len(), |i| line_start + i);
        let line = &before[line_start..line_end];
        let code = match line.find(" #") {
            Some(i) => &line[..i],
            None => line,
        }
        .trim_end();
        let header = code.trim_end_matches(|c: char| c.is_ascii_digit() || c == '+' || c == '-');
        if header.ends_with(['|', '>']) {
            return Some(position(text, line_start + header.len() - 1));
        }
        if !code.trim().is_empty() {
            return None;
        }
    }
    None
}

/// What may follow `\\` in a double-quoted YAML string.
const VALID_ESCAPES: &str = "0abt\tnvfre \"/\\N_LPxuU";

/// The byte offset of a 1-based line and (character) column.
fn byte_offset(text: &str, loc: Loc) -> Option<usize> {
    let line_start = if loc.line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(loc.line as usize - 2)?.0 + 1
    };
    let col = (loc.col as usize).saturating_sub(1);
    let within = text[line_start..]
        .char_indices()
        .nth(col)
        .map_or(text.len() - line_start, |(i, _)| i);
    Some(line_start + within)
}

/// The 1-based line and (character) column of a byte offset.
fn position(text: &str, at: usize) -> Loc {
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Loc::new(
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// Returns where `key` first appeared if the mapping already has it, and records it otherwise.
// The index stores the key itself, borrowed from the input where possible, hence `&Cow`.
#[allow(clippy::ptr_arg)]
fn find_key<'a>(
    entries: &[Entry<'a>],
    index: &mut Option<HashMap<Cow<'a, str>, Loc>>,
    key: &Cow<'a, str>,
    loc: Loc,
) -> Option<Loc> {
    if entries.len() < LINEAR_KEY_SCAN {
        return entries.iter().find(|e| e.key == *key).map(|e| e.key_loc);
    }
    // A mapping with many keys is indexed once so that a hostile file with a huge
    // mapping costs linear, not quadratic, time.
    let index =
        index.get_or_insert_with(|| entries.iter().map(|e| (e.key.clone(), e.key_loc)).collect());
    match index.get(key) {
        Some(first) => Some(*first),
        None => {
            index.insert(key.clone(), loc);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let (_, d) = read("t.yaml", text);
        d.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn types_scalars_as_serde_yaml_does() {
        let kind = |text: &str| {
            Scalar {
                text: text.into(),
                plain: true,
                block: false,
            }
            .kind()
        };
        for t in [
            "1", "+1", "-1", "0x1f", "+0x1f", "-0x1f", "0o17", "0b101", "1.5", "1e3", "-.5",
            ".inf", "-.Inf", ".nan", "24.04", "01.5",
        ] {
            assert_eq!(kind(t), Kind::Number, "{t}");
        }
        for t in [
            "01", "+01", "-007", "0x", "0xg", "++1", "+-1", "1_000", "inf", "nan", "+.nan",
            "1.2.3", "v1", "yes", "~a",
        ] {
            assert_eq!(kind(t), Kind::Str, "{t}");
        }
        for t in ["", "~", "null", "Null", "NULL"] {
            assert_eq!(kind(t), Kind::Null, "{t}");
        }
        assert_eq!(kind("True"), Kind::Bool(true));
        assert_eq!(kind("FALSE"), Kind::Bool(false));
        let quoted = Scalar {
            text: "1".into(),
            plain: false,
            block: false,
        };
        assert_eq!(quoted.kind(), Kind::Str);
    }

    #[test]
    fn refuses_raw_control_characters_and_yaml_2() {
        for (text, at) in [
            ("a: b\u{1}\n", "t.yaml:1:5:"),
            ("a: \u{1b}\n", "t.yaml:1:4:"),
            ("a:\n  - x\u{7f}y\n", "t.yaml:2:6:"),
            ("a: \u{85}\u{9f}\n", "t.yaml:1:5:"),
        ] {
            let e = errors(text);
            assert_eq!(e.len(), 1, "{text:?}: {e:?}");
            assert!(
                e[0].starts_with(at) && e[0].contains("is not allowed in YAML"),
                "{text:?}: {e:?}"
            );
        }
        let e = errors("a: \"\\x01\\e\"\t# c\r\n");
        assert!(e.is_empty(), "escaped, tab and CR are fine: {e:?}");
        assert_eq!(
            errors("# c\n%YAML 2.0\n---\na: 1\n"),
            ["t.yaml:2:7: error: `%YAML 2.0` is not supported; fleet.yaml is YAML 1.2 (or 1.1)"]
        );
        assert!(errors("%YAML 1.2\n---\na: 1\n").is_empty());
        assert!(errors("a: |\n  %YAML 2.0\n").is_empty(), "not a directive");
    }

    #[test]
    fn points_at_the_faulty_escape_and_the_block_indicator() {
        assert_eq!(
            errors("a: \"x\\qy\"\n")[0],
            "t.yaml:1:7: error: not valid YAML: while parsing a quoted scalar, found unknown escape character"
        );
        let e = errors("a:\n  b: \"\\n\\t\n    \\z\"\n");
        assert!(e[0].starts_with("t.yaml:3:6:"), "{e:?}");
        let (root, _) = read("t.yaml", "a: |  # note\n\n  text\nb: >-\n  more\n");
        let Value::Map(entries) = root.unwrap().value else {
            panic!()
        };
        assert_eq!(entries[0].value.loc, Loc::new(1, 4));
        assert_eq!(entries[1].value.loc, Loc::new(4, 4));
    }

    #[test]
    fn keeps_positions_and_scalar_styles() {
        let (root, d) = read("t.yaml", "a: 1\nb:\n  - 'x'\n  - y\n");
        assert!(d.is_empty());
        let Value::Map(entries) = root.unwrap().value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].key, "a");
        assert_eq!(entries[0].key_loc, Loc::new(1, 1));
        assert_eq!(entries[0].value.loc, Loc::new(1, 4));
        let Value::Seq(items) = &entries[1].value.value else {
            panic!("not a seq")
        };
        assert_eq!(items[0].loc, Loc::new(3, 5));
        assert_eq!(
            items[0].value,
            Value::Scalar(Scalar {
                text: "x".into(),
                plain: false,
                block: false,
            })
        );
    }

    #[test]
    fn streams_items_of_chosen_lists_only() {
        let text = "a:\n  - 1\n  - x: [2]\nb: [3]\nc:\n  a: [4]\n";
        let mut seen = Vec::new();
        let (root, d) =
            read_streaming("t.yaml", text, &[&["a"], &["c", "a"]], &mut |path, node| {
                seen.push((path.join("."), node.loc.line));
                None
            });
        assert!(d.is_empty());
        assert_eq!(
            seen,
            [
                ("a".to_string(), 2),
                ("a".to_string(), 3),
                ("c.a".to_string(), 6)
            ]
        );
        let Value::Map(entries) = root.unwrap().value else {
            panic!()
        };
        assert_eq!(entries[0].value.value, Value::Seq(vec![]));
        assert!(matches!(&entries[1].value.value, Value::Seq(items) if items.len() == 1));
    }

    #[test]
    fn reports_every_duplicate_key() {
        assert_eq!(
            errors("a: 1\nb: 2\na: 3\nb: 4\n"),
            vec![
                "t.yaml:3:1: error: duplicate key `a` (first at line 1)",
                "t.yaml:4:1: error: duplicate key `b` (first at line 2)",
            ]
        );
    }

    #[test]
    fn finds_duplicates_in_large_mappings() {
        let mut text: String = (0..100).map(|i| format!("k{i}: v\n")).collect();
        text.push_str("k42: again\n");
        assert_eq!(
            errors(&text),
            vec!["t.yaml:101:1: error: duplicate key `k42` (first at line 43)"]
        );
    }

    #[test]
    fn refuses_anchors_aliases_and_tags() {
        let e = errors("a: &x [1, 2]\nb: *x\nc: !custom 3\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("t.yaml:1:4: error: anchors"));
        assert!(e[1].starts_with("t.yaml:2:4: error: aliases"));
        assert!(e[2].contains("tags"));
    }

    #[test]
    fn stops_at_the_nesting_limit() {
        let text = "a:\n".to_string() + &"- ".repeat(200) + "x\n";
        let e = errors(&text);
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("nesting deeper than 64 levels"), "{e:?}");
        let flow = "[".repeat(100_000);
        let e = errors(&flow);
        assert_eq!(e.len(), 1, "{e:?}");
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let e = errors("a: [1, 2\nb: 3\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("t.yaml:"), "{e:?}");
        assert!(e[0].contains("not valid YAML"), "{e:?}");
    }

    #[test]
    fn refuses_several_documents() {
        let e = errors("a: 1\n---\nb: 2\n");
        assert_eq!(
            e,
            vec!["t.yaml:2:1: error: more than one YAML document; fleet.yaml holds exactly one"]
        );
    }

    #[test]
    fn refuses_collection_keys() {
        let e = errors("? [a, b]\n: c\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("mapping keys must be plain strings"), "{e:?}");
    }

    #[test]
    fn refuses_oversized_input_before_parsing() {
        let text = "#".repeat(MAX_FILE_BYTES + 1);
        let e = errors(&text);
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("larger than the limit"), "{e:?}");
    }
}
