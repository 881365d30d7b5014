//! Field-level changes between two specs, compared as JSON.
//!
//! "Empty" (absent, null, `[]`, `{}`) counts as one value: the API server may drop or keep
//! an empty list, and neither is a change anyone asked for.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One field that moves: where, from what, to what. `old`/`new` are absent for a field
/// that appears or disappears.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FieldChange {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

static NULL: Value = Value::Null;

fn field<'a>(map: &'a Map<String, Value>, key: &str) -> &'a Value {
    map.get(key).unwrap_or(&NULL)
}

/// Whether two specs hold the same content.
pub fn same_spec(a: &Value, b: &Value) -> bool {
    match (a, b) {
        _ if is_empty(a) && is_empty(b) => true,
        (Value::Object(a), Value::Object(b)) => {
            a.iter().all(|(k, v)| same_spec(v, field(b, k)))
                && b.iter().all(|(k, v)| a.contains_key(k) || is_empty(v))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_spec(x, y))
        }
        _ => a == b,
    }
}

/// The leaf fields that differ between `old` and `new`, in key order. Maps are
/// descended into; lists and scalars are compared whole.
pub fn field_changes(old: &Value, new: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    collect(&mut out, String::new(), old, new);
    out
}

fn collect(out: &mut Vec<FieldChange>, path: String, old: &Value, new: &Value) {
    if same_spec(old, new) {
        return;
    }
    let no_fields = Map::new();
    if let (Some(o), Some(n)) = (
        fields_of(old, new, &no_fields),
        fields_of(new, old, &no_fields),
    ) {
        let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            collect(out, join(&path, k), field(o, k), field(n, k));
        }
        return;
    }
    let present = |v: &Value| (!is_empty(v)).then(|| v.clone());
    out.push(FieldChange {
        path,
        old: present(old),
        new: present(new),
    });
}

/// The fields of `v`, where an empty value facing a mapping counts as one with no fields.
fn fields_of<'a>(
    v: &'a Value,
    other: &Value,
    no_fields: &'a Map<String, Value>,
) -> Option<&'a Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        v if is_empty(v) && other.is_object() => Some(no_fields),
        _ => None,
    }
}

/// `spec.key`, or `spec["odd.key"]` for keys that are not plain words.
fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", Value::String(key.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_values_are_the_same() {
        let a = json!({"modules": [], "metadata": {}, "x": 1});
        let b = json!({"x": 1, "extends": null});
        assert!(same_spec(&a, &b));
        assert!(!same_spec(&a, &json!({"x": 2})));
        assert!(!same_spec(&json!({"m": ["a"]}), &json!({"m": []})));
        assert!(!same_spec(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }

    #[test]
    fn field_changes_name_leaf_paths() {
        let old = json!({"instanceType": "t3-medium", "metadata": {"rack": "a1", "example.com/x": "1"}, "modules": ["a"]});
        let new = json!({"instanceType": "t3-large", "metadata": {"rack": "a2", "zone": "z"}, "modules": ["a", "b"]});
        let changes = field_changes(&old, &new);
        let rendered: Vec<String> = changes
            .iter()
            .map(|c| format!("{} {:?} -> {:?}", c.path, c.old, c.new))
            .collect();
        assert_eq!(
            rendered,
            [
                r#"instanceType Some(String("t3-medium")) -> Some(String("t3-large"))"#,
                r#"metadata["example.com/x"] Some(String("1")) -> None"#,
                r#"metadata.rack Some(String("a1")) -> Some(String("a2"))"#,
                r#"metadata.zone None -> Some(String("z"))"#,
                r#"modules Some(Array [String("a")]) -> Some(Array [String("a"), String("b")])"#,
            ]
        );
    }

    #[test]
    fn a_created_object_lists_all_its_fields() {
        let changes = field_changes(&Value::Null, &json!({"a": 1, "b": {"c": true}}));
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["a", "b.c"]);
        assert!(changes.iter().all(|c| c.old.is_none()));
    }
}
