//! The CRDs: the committed YAML is what `fleetgate crds` prints, the real API server
//! accepts every one (structural schemas), and it refuses invalid specs on its own.

use crate::support;

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

/// Every property of every CRD says what it is, in fleetgate's words: `kubectl explain`
/// never ends in `<no value>` nor quotes Kubernetes' Go documentation.
#[test]
fn every_crd_field_has_its_own_description() {
    fn walk(schema: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
            return;
        };
        for (name, prop) in props {
            let path = format!("{path}.{name}");
            let description = prop.get("description").and_then(|d| d.as_str());
            match description {
                None | Some("") => missing.push(format!("{path}: no description")),
                Some(d) if BOILERPLATE.iter().any(|b| d.contains(b)) => {
                    missing.push(format!("{path}: upstream boilerplate `{d}`"))
                }
                Some(_) => {}
            }
            if let Some(members) = prop.get("enum").and_then(|e| e.as_array())
                && members.iter().any(|m| m.is_null())
            {
                missing.push(format!(
                    "{path}: `null` in the enum (kubectl explain: <no value>)"
                ));
            }
            walk(prop, &path, missing);
            if let Some(items) = prop.get("items") {
                walk(items, &format!("{path}[]"), missing);
            }
        }
    }
    const BOILERPLATE: &[&str] = &[
        "Time is a wrapper around time.Time",
        "This API Resource",
        "Kubernetes API Resource",
        "metav1",
        "More info: https://git.k8s.io",
        "json:",
    ];
    let mut missing = Vec::new();
    for crd in fleetgate::api::crds() {
        let json = serde_json::to_value(&crd).unwrap();
        let kind = json["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        for version in json["spec"]["versions"].as_array().unwrap() {
            let root = &version["schema"]["openAPIV3Schema"];
            for top in ["spec", "status"] {
                if let Some(part) = root["properties"].get(top) {
                    if part.get("description").is_none() {
                        missing.push(format!("{kind}.{top}: no description"));
                    }
                    walk(part, &format!("{kind}.{top}"), &mut missing);
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
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
    assert!(
        message.contains("set exactly one of url (a git repository) and sourceRef"),
        "{message}"
    );
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

    // What can be checked at admission is, with messages a person understands.
    for (field, value, expected) in [
        (
            "url",
            json!("ftp://example.com/fleet.git"),
            "url must be ssh://, https://",
        ),
        ("url", json!("git@host:org/my repo.git"), "with no spaces"),
        ("path", json!("/etc/fleet.yaml"), "path must be relative"),
        (
            "path",
            json!("configs/../../x.yaml"),
            "may not contain `..`",
        ),
        (
            "interval",
            json!("0s"),
            "interval must be a duration of at least 1s",
        ),
        (
            "interval",
            json!("5 minutes"),
            "interval must be a duration",
        ),
        ("timeout", json!("1d"), "timeout must be a duration"),
    ] {
        let mut spec = json!({"url": "ssh://git@host/org/fleet.git", "ref": {"branch": "main"}});
        spec[field] = value.clone();
        let message = refused(&api, &ns.name, spec).await;
        assert!(
            message.contains(&format!("spec.{field}")) && message.contains(expected),
            "{field}={value}: {message}"
        );
    }
    for url in [
        "ssh://git@host:2222/org/fleet.git",
        "git@github.com:org/fleet.git",
        "https://host/org/fleet.git",
        "git://127.0.0.1:9418/fleet.git",
        "file:///srv/git/fleet.git",
    ] {
        let mut accepted = repository(
            &ns.name,
            json!({"url": url, "ref": {"branch": "main"}, "path": "site/a/fleet.yaml", "interval": "1m30s"}),
        );
        accepted.metadata.name = None;
        accepted.metadata.generate_name = Some("ok-".into());
        let created = api
            .create(&PostParams::default(), &accepted)
            .await
            .unwrap_or_else(|e| panic!("{url} is refused: {e}"));
        api.delete(&created.metadata.name.unwrap(), &Default::default())
            .await
            .unwrap();
    }

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
    // Until the controller has seen it, kstatus reads it as InProgress.
    assert_eq!(created.data["status"]["observedGeneration"], -1);

    // Conditions are validated as metav1.Condition is.
    let bad = json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1",
        "kind": "GitopsRepository",
        "status": {"conditions": [{
            "type": "Ready", "status": "Maybe", "reason": "not a reason!", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }]},
    });
    match api
        .patch_status(
            "fleet",
            &kube::api::PatchParams::apply("crds-test"),
            &kube::api::Patch::Apply(&bad),
        )
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert!(
                status.message.contains("Unsupported value: \"Maybe\"")
                    && status.message.contains("reason"),
                "{}",
                status.message
            );
        }
        other => panic!("an invalid condition was accepted: {other:?}"),
    }

    // One category lists both kinds; the short names are fleetgate's own.
    let listed = support::run_tool(
        "kubectl",
        &["get", "fleetgate", "-n", &ns.name, "-o", "name"],
    );
    assert!(
        listed.contains("gitopsrepository.gitops.fleetgate.dev/fleet"),
        "{listed}"
    );
    let short = support::run_tool("kubectl", &["get", "fgrepo", "-n", &ns.name, "-o", "name"]);
    assert!(short.contains("/fleet"), "{short}");
    support::run_tool("kubectl", &["get", "fgrun", "-n", &ns.name]);
    let explained = support::run_tool("kubectl", &["explain", "syncrun.status.phase"]);
    assert!(explained.contains("Where the run is"), "{explained}");
    assert!(!explained.contains("<no value>"), "{explained}");
}
