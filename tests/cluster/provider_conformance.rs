//! The provider conformance suite as a provider author runs it (`fleetgate
//! provider-conformance`): the lab provider passes it, and a provider that reports once and
//! never again (its status goes stale on the first update) fails it.

use crate::support;

use std::process::Command;
use std::time::Duration;

use fleetgate::api::fleet::status::registration;
use fleetgate::api::fleet::{FleetNode, SdwanNetwork, SdwanPeer, VirtualIp};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::lab::LabProcess;

fn conformance(ns: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetgate"))
        .args(["provider-conformance", "-n", ns])
        .args(extra)
        .env("KUBECONFIG", &support::env().kubeconfig)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn the_lab_provider_passes_the_conformance_suite() {
    let ns = support::env().namespace("conformance").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let mut lab = LabProcess::start(&ns.name);
    let args = [
        "--terminal-fault",
        "lab.fleetgate.dev/fail-after=0s",
        "--timeout",
        "90s",
    ];
    let (code, out) = tokio::task::spawn_blocking({
        let ns = ns.name.clone();
        move || conformance(&ns, &args)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{out}");
    for test in [
        "Registration",
        "Create",
        "Update",
        "StaleGeneration",
        "TerminalFailure",
        "Delete",
    ] {
        assert!(out.contains(&format!("PASS {test} (")), "{test}:\n{out}");
    }
    assert!(out.ends_with("6 passed, 0 failed, 0 skipped\n"), "{out}");
    // The suite removed its objects, and the lab what it made for them.
    support::eventually("the lab emptied", Duration::from_secs(30), || async {
        lab.namespaces().is_empty().then_some(())
    })
    .await;
    lab.cleanup();
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}

/// Writes `status` on every object of a kind that has none yet, then never again.
async fn report_once<K>(client: &Client, ns: &str, status: impl Fn(&K) -> Value)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(client.clone(), ns);
    for o in api.list(&ListParams::default()).await.unwrap() {
        if serde_json::to_value(&o).unwrap()["status"].is_object() {
            continue;
        }
        let patch =
            json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status(&o)});
        let _ = api
            .patch_status(
                &o.name_any(),
                &PatchParams::apply("lazy-provider").force(),
                &Patch::Apply(&patch),
            )
            .await;
    }
}

fn available(generation: Option<i64>) -> Value {
    let condition = |t: &str, s: &str| {
        json!({"type": t, "status": s, "reason": "Available", "message": "",
               "observedGeneration": generation, "lastTransitionTime": "2026-01-01T00:00:00Z"})
    };
    json!({
        "observedGeneration": generation,
        "conditions": [condition("Ready", "True"), condition("Reconciling", "False"), condition("Stalled", "False")],
    })
}

/// A provider that registers and reports every object Ready once, and never looks again.
async fn lazy_provider(client: Client, ns: String) {
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    loop {
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "fleet-provider-lazy",
                "labels": {registration::PROVIDER_LABEL: "lazy"},
                "annotations": {registration::KINDS_ANNOTATION: "FleetNode,SdwanNetwork,SdwanPeer,VirtualIp",
                                registration::CONTRACT_ANNOTATION: "v1alpha1"}},
            "spec": {"holderIdentity": "lazy", "leaseDurationSeconds": 30,
                     "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now())},
        });
        let _ = leases
            .patch(
                "fleet-provider-lazy",
                &PatchParams::apply("lazy-provider").force(),
                &Patch::Apply(&lease),
            )
            .await;
        report_once::<FleetNode>(&client, &ns, |o| {
            let mut s = available(o.metadata.generation);
            s["providerID"] = json!(format!("lazy://{}", o.name_any()));
            s["addresses"] = json!([{"type": "Hostname", "address": o.name_any()}]);
            s
        })
        .await;
        report_once::<SdwanNetwork>(&client, &ns, |o| available(o.metadata.generation)).await;
        report_once::<SdwanPeer>(&client, &ns, |o| available(o.metadata.generation)).await;
        report_once::<VirtualIp>(&client, &ns, |o| {
            let mut s = available(o.metadata.generation);
            s["address"] = json!("198.18.0.192");
            s["currentHolder"] = json!(o.spec.resolved.primary_holder);
            s
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_provider_whose_status_goes_stale_fails_the_suite() {
    let ns = support::env().namespace("lazyprovider").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let provider = tokio::spawn(lazy_provider(ns.client.clone(), ns.name.clone()));
    let (code, out) = tokio::task::spawn_blocking({
        let ns = ns.name.clone();
        move || conformance(&ns, &["--timeout", "5s"])
    })
    .await
    .unwrap();
    provider.abort();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("PASS Registration ("), "{out}");
    assert!(out.contains("PASS Create ("), "{out}");
    assert!(
        out.contains("FAIL Update: FleetNode/conformance-node-a: not Ready at its generation within 5s; last seen: generation Some(2), observedGeneration Some(1)"),
        "{out}"
    );
    assert!(
        out.contains("SKIP TerminalFailure: no terminal fault given"),
        "{out}"
    );
    // A namespace no provider serves: no registration, and nothing becomes Ready.
    let empty = support::env().namespace("noprovider").await;
    let (code, out) = tokio::task::spawn_blocking({
        let ns = empty.name.clone();
        move || conformance(&ns, &["--timeout", "3s"])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL Registration: namespace") && out.contains("FAIL Create:"),
        "{out}"
    );
}

/// The chart's roles, as users and the controller hold them: only the provider role
/// writes fleet status, and it writes nothing else.
#[tokio::test]
async fn only_the_provider_role_writes_fleet_status() {
    let t = support::tenant::tenant("whowrites").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    let node: FleetNode = serde_json::from_value(json!({
        "apiVersion": "fleet.fleetgate.dev/v1alpha1", "kind": "FleetNode",
        "metadata": {"name": "n1", "namespace": ns},
        "spec": {"template": "t", "nodePlatform": "p", "architecture": "amd64", "modules": [],
                 "metadata": {}, "region": "r", "instanceType": "small", "lifecycleClass": "persistent"},
    }))
    .unwrap();
    Api::<FleetNode>::namespaced(t.admin.clone(), ns)
        .create(&Default::default(), &node)
        .await
        .unwrap();
    support::chart::bind(ns, "lab-provider", "fleetgate-provider", "provider-bot");
    let env = support::env();
    let provider = env
        .client_as("provider-bot", &["system:authenticated"])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let sa = support::chart::service_account_kubeconfig(
        &t.admin,
        &chart.system.name,
        "fleetgate",
        dir.path(),
    )
    .await;
    let controller = Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&sa).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let status = json!({"apiVersion": "fleet.fleetgate.dev/v1alpha1", "kind": "FleetNode",
        "status": {"observedGeneration": 1, "providerID": "lab://x/y"}});
    let write_status = |client: Client| {
        let status = status.clone();
        let ns = ns.clone();
        async move {
            Api::<FleetNode>::namespaced(client, &ns)
                .patch_status(
                    "n1",
                    &PatchParams::apply("who").force(),
                    &Patch::Apply(&status),
                )
                .await
        }
    };
    let write_spec = |client: Client| {
        let ns = ns.clone();
        async move {
            Api::<FleetNode>::namespaced(client, &ns)
                .patch(
                    "n1",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"instanceType": "large"}})),
                )
                .await
        }
    };
    let written = write_status(provider.clone()).await.unwrap();
    assert_eq!(
        written.status.unwrap().provider_id.as_deref(),
        Some("lab://x/y")
    );
    assert_eq!(
        support::tenant::refusal(write_spec(provider).await).0,
        403,
        "the provider writes status only"
    );
    for (who, client) in [
        ("an editor", t.alice.clone()),
        ("an approver", t.bob.clone()),
        ("the controller", controller.clone()),
    ] {
        assert_eq!(
            support::tenant::refusal(write_status(client).await).0,
            403,
            "{who} wrote fleet status"
        );
    }
    // The controller writes spec (through the main resource, which never touches status).
    let updated = write_spec(controller).await.unwrap();
    assert_eq!(updated.spec.resolved.instance_type, "large");
    assert_eq!(
        updated.status.unwrap().provider_id.as_deref(),
        Some("lab://x/y")
    );
    assert_eq!(
        support::tenant::refusal(write_spec(t.alice.clone()).await).0,
        403
    );
}
