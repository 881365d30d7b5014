//! What the derived schemas lack and Kubernetes tools expect of a CRD: formats the API
//! server knows, metav1.Condition's validation on `status.conditions`, and a status that
//! defaults to `observedGeneration: -1` so kstatus reads an object the controller has not
//! seen yet as InProgress (as Flux's CRDs do).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

/// The limit metav1.Condition sets on a condition's message.
pub const MAX_CONDITION_MESSAGE: usize = 32768;

/// Applies every convention to one CRD.
pub fn apply(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let defaults_status = crd.spec.group != crate::api::fleet::status::GROUP;
    let mut json = serde_json::to_value(&crd).expect("CRDs serialize");
    kubernetes_formats(&mut json);
    if let Some(versions) = json
        .pointer_mut("/spec/versions")
        .and_then(Value::as_array_mut)
    {
        for version in versions {
            if let Some(status) = version.pointer_mut("/schema/openAPIV3Schema/properties/status") {
                status_conventions(status, defaults_status);
            }
        }
    }
    serde_json::from_value(json).expect("the conventions do not change the shape")
}

/// schemars names unsigned integers `uint32`/`uint64` (with `minimum: 0`), formats the
/// API server does not know and warns about on every apply; it knows `int32`/`int64`.
/// And it lists `null` among an optional enum's values.
fn kubernetes_formats(v: &mut Value) {
    match v {
        Value::Object(map) => {
            // An optional enum's `null` member is said by `nullable: true` already;
            // in the enum, `kubectl explain` prints it as `<no value>`.
            if let Some(Value::Array(members)) = map.get_mut("enum") {
                members.retain(|m| !m.is_null());
            }
            if let Some(Value::String(f)) = map.get_mut("format") {
                match f.as_str() {
                    "uint8" | "uint16" | "uint32" | "int8" | "int16" => *f = "int32".into(),
                    "uint" | "uint64" | "int" => *f = "int64".into(),
                    _ => {}
                }
            }
            map.values_mut().for_each(kubernetes_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(kubernetes_formats),
        _ => {}
    }
}

fn status_conventions(status: &mut Value, defaults: bool) {
    let Some(props) = status.get("properties") else {
        return;
    };
    if defaults && props.get("observedGeneration").is_some() {
        status["default"] = json!({"observedGeneration": -1});
    }
    if let Some(items) = status.pointer_mut("/properties/conditions/items") {
        *items = condition_schema();
    }
}

/// metav1.Condition as Kubernetes itself validates it, described in fleetgate's terms.
fn condition_schema() -> Value {
    json!({
        "description": "One aspect of the object's state (Kubernetes metav1.Condition).",
        "type": "object",
        "required": ["lastTransitionTime", "message", "reason", "status", "type"],
        "properties": {
            "type": {
                "description": "The aspect: Ready, Reconciling, Stalled or Drifted.",
                "type": "string",
                "maxLength": 316,
                "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
            },
            "status": {
                "description": "Whether the aspect holds: True, False or Unknown.",
                "type": "string",
                "enum": ["True", "False", "Unknown"]
            },
            "reason": {
                "description": "Why, in one CamelCase word (such as Synced, AwaitingApproval, HostKeyMismatch).",
                "type": "string",
                "minLength": 1,
                "maxLength": 1024,
                "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
            },
            "message": {
                "description": "Why, for people; may be empty.",
                "type": "string",
                "maxLength": MAX_CONDITION_MESSAGE
            },
            "observedGeneration": {
                "description": "The metadata.generation this condition was computed from.",
                "type": "integer",
                "format": "int64",
                "minimum": 0
            },
            "lastTransitionTime": {
                "description": "When status last changed.",
                "type": "string",
                "format": "date-time"
            }
        }
    })
}
