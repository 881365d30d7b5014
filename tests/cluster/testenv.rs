//! Proof that the test control plane is a real API server: a kube-rs CRD with a status
//! subresource, server-side apply of status, a kube-runtime watch that sees it, and the
//! server's own OpenAPI validation refusing an invalid object.

use crate::support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A throwaway kind that exists only to prove the control plane behaves like a cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "testenv.fleetgate.dev",
    version = "v1",
    kind = "Widget",
    namespaced
)]
#[kube(status = "WidgetStatus")]
struct WidgetSpec {
    #[schemars(range(min = 1, max = 10))]
    size: u32,
    colour: Colour,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Colour {
    Red,
    Blue,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
struct WidgetStatus {
    phase: String,
}

#[tokio::test]
async fn the_control_plane_is_a_real_api_server() {
    let env = support::env();
    let ns = env.namespace("testenv").await;
    support::install_crds(&ns.client, &[Widget::crd()]).await;
    let widgets: Api<Widget> = Api::namespaced(ns.client.clone(), &ns.name);

    // A watch started before the change must see it.
    let watch = watcher(
        widgets.clone(),
        watcher::Config::default().fields("metadata.name=w1"),
    )
    .applied_objects()
    .try_filter(|w| {
        let ready = w.status.as_ref().is_some_and(|s| s.phase == "Ready");
        futures::future::ready(ready)
    })
    .boxed();

    let w = Widget::new(
        "w1",
        WidgetSpec {
            size: 3,
            colour: Colour::Red,
        },
    );
    widgets
        .create(&PostParams::default(), &w)
        .await
        .expect("a valid widget is accepted");
    let status = json!({
        "apiVersion": "testenv.fleetgate.dev/v1",
        "kind": "Widget",
        "status": {"phase": "Ready"}
    });
    let patched = widgets
        .patch_status(
            "w1",
            &PatchParams::apply("fleetgate-tests").force(),
            &Patch::Apply(&status),
        )
        .await
        .expect("status is applied through the status subresource");
    assert_eq!(patched.status.unwrap().phase, "Ready");
    let managers: Vec<String> = patched
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"fleetgate-tests".to_string()),
        "{managers:?}"
    );

    let seen = tokio::time::timeout(Duration::from_secs(20), watch.into_future())
        .await
        .expect("the watch sees the status change within 20 s")
        .0
        .expect("the watch yields")
        .expect("the watch does not fail");
    assert_eq!(seen.metadata.name.as_deref(), Some("w1"));

    // Invalid objects are refused by the API server's own OpenAPI validation.
    let too_big = Widget::new(
        "w2",
        WidgetSpec {
            size: 11,
            colour: Colour::Blue,
        },
    );
    let err = widgets
        .create(&PostParams::default(), &too_big)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err}")
    };
    assert_eq!(status.code, 422);
    assert!(status.message.contains("spec.size"), "{}", status.message);

    let gvk = GroupVersionKind::gvk("testenv.fleetgate.dev", "v1", "Widget");
    let raw: Api<DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &ApiResource::from_gvk(&gvk));
    let purple: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "testenv.fleetgate.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w3"},
        "spec": {"size": 2, "colour": "purple"}
    }))
    .unwrap();
    let err = raw
        .create(&PostParams::default(), &purple)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err}")
    };
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("spec.colour: Unsupported value: \"purple\""),
        "{}",
        status.message
    );
    let missing: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "testenv.fleetgate.dev/v1", "kind": "Widget",
        "metadata": {"name": "w4"}, "spec": {"size": 2}
    }))
    .unwrap();
    let err = raw
        .create(&PostParams::default(), &missing)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("spec.colour: Required value"),
        "{err}"
    );
}

#[tokio::test]
async fn rbac_is_enforced_and_token_requests_work() {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};

    let env = support::env();
    let ns = env.namespace("rbac").await;
    let nobody = env.client_as("nobody", &[]).await;
    let err = Api::<ConfigMap>::namespaced(nobody, &ns.name)
        .list(&Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403),
        "{err}"
    );

    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "robot"}})).unwrap();
    let sas = Api::<ServiceAccount>::namespaced(ns.client.clone(), &ns.name);
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": ["https://kubernetes.default.svc"]}}))
            .unwrap();
    let token = sas
        .create_token_request("robot", &PostParams::default(), &request)
        .await
        .expect("TokenRequest works: service-account signing keys are set up");
    let token = token.status.expect("a token").token.expect("a token");
    assert!(token.len() > 100, "a signed JWT");
}
