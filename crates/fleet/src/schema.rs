//! A JSON Schema of fleet.yaml v1, for editors (the YAML language server) to check a
//! fleet file as it is typed. It states the shape — keys, types, enums, name and module
//! patterns — and accepts exactly what the reader (`parse`) accepts, with the YAML 1.2
//! core schema typing scalars as an editor does. The relations between values (a
//! node's template exists, names are unique, a holder is a peer) are the validator's.
//!
//! Beyond a schema's reach, because the YAML to JSON step erases the spelling: the reader
//! refuses `version: 01`, `+1`, `1.0` or a block scalar, while JSON sees the number 1;
//! and it refuses anchors, tags, duplicate keys and raw control characters.

use serde_json::{Value, json};

const LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A module's name alone, as the module catalog lists it.
pub const MODULE_NAME: &str = r"^[a-z0-9][a-z0-9._-]{0,252}$";
/// A version alone, as the module catalog lists it; see `model::is_version`.
pub const VERSION: &str = r"^[0-9]([0-9A-Za-z.+~:_-]{0,126}[0-9A-Za-z])?$";
/// `name`, `name@blessed`, `name@live` or `name@VERSION`; see `model::is_version`.
const MODULE: &str =
    r"^[a-z0-9][a-z0-9._-]{0,252}(@(blessed|live|[0-9]([0-9A-Za-z.+~:_-]{0,126}[0-9A-Za-z])?))?$";

/// An optional key: null means absent, as in the reader.
fn optional(mut schema: Value) -> Value {
    match schema.get_mut("enum").and_then(Value::as_array_mut) {
        Some(values) => values.push(Value::Null),
        None => match schema.get("type").cloned() {
            Some(Value::String(t)) => schema["type"] = json!([t, "null"]),
            _ => return json!({"anyOf": [schema, {"type": "null"}]}),
        },
    }
    schema
}

fn label(description: &str) -> Value {
    json!({"type": "string", "pattern": LABEL, "maxLength": 63, "description": description})
}

/// A non-empty string. Numbers and booleans are refused, as by the reader: quote them.
fn text(description: &str) -> Value {
    json!({"type": "string", "minLength": 1, "description": description})
}

fn list(description: &str, items: Value) -> Value {
    optional(json!({"type": "array", "description": description, "items": items}))
}

fn modules(description: &str) -> Value {
    list(description, json!({"type": "string", "pattern": MODULE}))
}

fn metadata(description: &str) -> Value {
    optional(json!({
        "type": "object",
        "description": description,
        "propertyNames": {"minLength": 1},
        "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
    }))
}

fn template() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name"],
        "properties": {
            "name": label("Unique among templates."),
            "extends": optional(label("The parent template: its values are inherited, its modules come first.")),
            "node_platform": optional(text("Operating system image, such as ubuntu-24.04-amd64; inherited unless set.")),
            "architecture": optional(json!({"enum": ["amd64", "arm64"], "description": "CPU architecture; inherited unless set."})),
            "modules": modules("Appended to the parent's; the same name overrides the parent's pin. `name`, `name@1.2.3`, `name@blessed` or `name@live`."),
            "metadata": metadata("String labels, merged with the parent's (this template wins; a null value removes the parent's key)."),
        },
    })
}

fn node() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["hostname", "template", "region", "instance_type"],
        "properties": {
            "hostname": label("Unique among nodes."),
            "template": label("The template the node is built from."),
            "region": text("Where the machine runs, such as ap-tokyo-1."),
            "instance_type": text("Machine size, such as t3-medium."),
            "lifecycle_class": optional(json!({"enum": ["persistent", "ephemeral"], "default": "persistent"})),
            "modules": modules("Appended after the template's."),
            "metadata": metadata("Merged over the template's (the node wins; a null value removes the template's key)."),
        },
    })
}

fn peer() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["host"],
        "properties": {
            "host": label("A node; once per network."),
            "publicly_reachable": optional(json!({"type": "boolean", "default": false})),
        },
    })
}

fn virtual_ip() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "primary_holder"],
        "properties": {
            "name": label("Unique within the network."),
            "primary_holder": label("A peer of this network."),
            "failover_holders": list(
                "Peers of this network, distinct, not the primary, in order of preference.",
                json!({"type": "string", "pattern": LABEL, "maxLength": 63}),
            ),
        },
    })
}

fn network() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "routing_mode"],
        "properties": {
            "name": label("Unique among networks."),
            "routing_mode": {"enum": ["ibgp", "ebgp", "static"]},
            "peers": list("The nodes taking part.", peer()),
            "virtual_ips": list("Addresses that move between peers.", virtual_ip()),
        },
    })
}

/// A mapping keyed by names (DNS-1123 labels) to `value`.
fn by_name(description: &str, value: Value) -> Value {
    optional(json!({
        "type": "object",
        "description": description,
        "propertyNames": {"pattern": LABEL, "maxLength": 63},
        "additionalProperties": value,
    }))
}

fn environment() -> Value {
    optional(json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "account": optional(text("Replaces the file's account in this environment.")),
            "templates": by_name("Declared templates and what this environment changes of them.", optional(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "node_platform": optional(text("Replaces the template's node_platform.")),
                    "modules": modules("As a child template's: the same name replaces the pin, others are appended."),
                    "metadata": metadata("Merged over the template's (a null value removes the key)."),
                },
            }))),
            "nodes": by_name("Declared nodes and what this environment changes of them.", optional(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "region": optional(text("Replaces the node's region.")),
                    "instance_type": optional(text("Replaces the node's instance_type.")),
                    "lifecycle_class": optional(json!({"enum": ["persistent", "ephemeral"]})),
                    "modules": modules("The same name replaces the pin, others are appended."),
                    "metadata": metadata("Merged over the node's (a null value removes the key)."),
                },
            }))),
        },
    }))
}

/// The schema, as a JSON value.
pub fn fleet_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "fleetgate fleet.yaml, version 1",
        "type": "object",
        "additionalProperties": false,
        "required": ["version", "account"],
        "properties": {
            "version": {"description": "Format version; only 1 is supported, written `1` or `\"1\"`.", "enum": [1, "1"]},
            "account": text("The account this fleet belongs to; must equal the GitopsRepository's spec.account when that is set."),
            "templates": list("Node templates; a template may extend another.", template()),
            "nodes": list("The machines.", node()),
            "sdwan": optional(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {"networks": list("SD-WAN networks.", network())},
            })),
            "environments": by_name("Per-environment overlays; a GitopsRepository's spec.environment picks one, and without it they are ignored.", environment()),
        },
    })
}

/// The schema as committed in schema/fleet.schema.json.
pub fn fleet_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&fleet_schema()).expect("a schema serializes");
    text.push('\n');
    text
}
