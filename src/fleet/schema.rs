//! A JSON Schema of fleet.yaml v1, for editors (the YAML language server) to check a
//! fleet file as it is typed. It states the shape — keys, types, enums, name and module
//! patterns; the cross-references (a node's template exists, a holder is a peer) are
//! the validator's, which runs in `fleetgate validate` and in the operator.

use serde_json::{Value, json};

const LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
const MODULE: &str = r"^[a-z0-9][a-z0-9._-]*(@(blessed|live|(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?))?$";

fn label(description: &str) -> Value {
    json!({"type": "string", "pattern": LABEL, "maxLength": 63, "description": description})
}

fn modules(description: &str) -> Value {
    json!({
        "type": "array",
        "description": description,
        "items": {"type": "string", "pattern": MODULE},
    })
}

fn metadata(description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "additionalProperties": {"type": ["string", "number", "boolean"]},
    })
}

fn template() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name"],
        "properties": {
            "name": label("Unique among templates."),
            "extends": label("The parent template: its values are inherited, its modules come first."),
            "node_platform": {"type": "string", "description": "Operating system image, such as ubuntu-24.04-amd64; inherited unless set."},
            "architecture": {"enum": ["amd64", "arm64"], "description": "CPU architecture; inherited unless set."},
            "modules": modules("Appended to the parent's; the same name overrides the parent's pin. `name`, `name@1.2.3`, `name@blessed` or `name@live`."),
            "metadata": metadata("String labels, merged with the parent's (this template wins)."),
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
            "region": {"type": "string", "minLength": 1, "description": "Where the machine runs, such as ap-tokyo-1."},
            "instance_type": {"type": "string", "minLength": 1, "description": "Machine size, such as t3-medium."},
            "lifecycle_class": {"enum": ["persistent", "ephemeral"], "default": "persistent"},
            "modules": modules("Appended after the template's."),
            "metadata": metadata("Merged over the template's (the node wins)."),
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
            "publicly_reachable": {"type": "boolean", "default": false},
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
            "failover_holders": {
                "type": "array",
                "uniqueItems": true,
                "description": "Peers of this network, distinct, not the primary, in order of preference.",
                "items": {"type": "string", "pattern": LABEL},
            },
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
            "peers": {"type": "array", "items": peer()},
            "virtual_ips": {"type": "array", "items": virtual_ip()},
        },
    })
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
            "version": {"description": "Format version; only 1 is supported.", "enum": [1, "1"]},
            "account": {"type": "string", "minLength": 1, "description": "The account this fleet belongs to; must equal the GitopsRepository's spec.account when that is set."},
            "templates": {"type": "array", "description": "Node templates; a template may extend another.", "items": template()},
            "nodes": {"type": "array", "description": "The machines.", "items": node()},
            "sdwan": {
                "type": "object",
                "additionalProperties": false,
                "properties": {"networks": {"type": "array", "items": network()}},
            },
        },
    })
}

/// The schema as committed in schema/fleet.schema.json.
pub fn fleet_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&fleet_schema()).expect("a schema serializes");
    text.push('\n');
    text
}
