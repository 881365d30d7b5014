//! The CRDs: the committed YAML is what `fleetgate crds` prints, the real API server
//! accepts every one (structural schemas), and it refuses invalid specs on its own.

mod support;

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

#[test]
fn committed_crds_are_up_to_date() {
    let committed =
        std::fs::read_to_string("crds/fleetgate.yaml").expect("crds/fleetgate.yaml exists");
    assert!(
        committed == fleetgate::api::crds_yaml(),
        "crds/fleetgate.yaml is stale: run `cargo run -- crds > crds/fleetgate.yaml`"
    );
}

fn repository(ns: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1",
        "kind": "GitopsRepository",
        "metadata": {"name": "fleet", "namespace": ns},
        "spec": spec,
    }))
    .unwrap()
}

async fn refused(api: &Api<DynamicObject>, ns: &str, spec: serde_json::Value) -> String {
    match api
        .create(&PostParams::default(), &repository(ns, spec))
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{}", status.message);
            status.message
        }
        other => panic!("expected the API server to refuse the spec, got {other:?}"),
    }
}

#[tokio::test]
async fn the_api_server_accepts_the_crds_and_enforces_their_schemas() {
    let ns = support::env().namespace("crds").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let gvk = GroupVersionKind::gvk("gitops.fleetgate.dev", "v1alpha1", "GitopsRepository");
    let api: Api<DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &ApiResource::from_gvk(&gvk));

    let message = refused(
        &api,
        &ns.name,
        json!({"url": "file:///x", "ref": {"branch": "main"}, "approval": "Sometimes"}),
    )
    .await;
    assert!(
        message.contains("spec.approval: Unsupported value: \"Sometimes\""),
        "{message}"
    );
    let message = refused(&api, &ns.name, json!({"ref": {"branch": "main"}})).await;
    assert!(message.contains("spec.url: Required value"), "{message}");
    let message = refused(
        &api,
        &ns.name,
        json!({"url": "file:///x", "ref": {"branch": "main", "tag": "v1"}}),
    )
    .await;
    assert!(
        message.contains("set exactly one of branch, tag or commit"),
        "{message}"
    );
    let message = refused(
        &api,
        &ns.name,
        json!({"url": "file:///x", "ref": {"branch": "main"}, "interval": "often"}),
    )
    .await;
    assert!(message.contains("spec.interval"), "{message}");

    // Defaults are filled in by the API server.
    let created = api
        .create(
            &PostParams::default(),
            &repository(
                &ns.name,
                json!({"url": "file:///x", "ref": {"branch": "main"}}),
            ),
        )
        .await
        .expect("a minimal repository is accepted");
    let spec = &created.data["spec"];
    assert_eq!(spec["path"], "fleet.yaml");
    assert_eq!(spec["interval"], "60s");
    assert_eq!(spec["approval"], "Required");
    assert_eq!(spec["prune"], true);
    assert_eq!(spec["historyLimit"], 10);
}
