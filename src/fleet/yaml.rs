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
}

impl Scalar<'_> {
    /// YAML 1.2 core schema null: `~`, `null`, or nothing at all.
    pub fn is_null(&self) -> bool {
        self.plain && matches!(&*self.text, "" | "~" | "null" | "Null" | "NULL")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'a> {
    pub key: Cow<'a, str>,
    pub key_loc: Loc,
    pub value: Node<'a>,
}

impl Value<'_> {
    /// How the value is named in an error message ("expected a list, found a mapping").
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Scalar(s) if s.is_null() => "nothing (null)",
            Value::Scalar(_) => "a scalar",
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
        pending_key: Option<(Cow<'a, str>, Loc)>,
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
        for event in Parser::new_from_str(text) {
            let (event, span) = match event {
                Ok(ev) => ev,
                Err(e) => {
                    return self.fatal(loc_of(e.marker()), format!("not valid YAML: {}", e.info()));
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
                        }),
                    })?;
                }
                Event::Scalar(text, style, anchor, tag) => {
                    self.refuse_decorations(loc, anchor, tag.is_some());
                    let plain = style == ScalarStyle::Plain;
                    self.push_node(Node {
                        loc,
                        value: Value::Scalar(Scalar { text, plain }),
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
                    matches!(frame, Frame::Map { pending_key: Some((k, _)), .. } if k == key)
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
                Some((key, key_loc)) => {
                    let first = find_key(entries, index, &key, key_loc);
                    match first {
                        Some(first) => self.diags.error(
                            file,
                            key_loc,
                            format!("duplicate key `{key}` (first at line {})", first.line),
                        ),
                        None => entries.push(Entry {
                            key,
                            key_loc,
                            value: node,
                        }),
                    }
                    Ok(())
                }
                None => match node.value {
                    Value::Scalar(s) => {
                        *pending_key = Some((s.text, node.loc));
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
                plain: false
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
