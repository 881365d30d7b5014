//! Status as third-party tools read it: every SyncRun phase, and a just-created object,
//! through the real kstatus library (sigs.k8s.io/cli-utils, hack/kstatus) and `kubectl
//! wait`, against the real control plane and the real operator.

use crate::support;

use std::process::Command;

use fleetgate::api::annotations;
use fleetgate::api::syncrun::Phase;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use support::fleet::Fleet;
use support::operator::*;

const V1: &[u8] = include_bytes!("../../examples/fleet.yaml");
const V2: &[u8] = include_bytes!("../../examples/fleet-v2.yaml");

/// What kstatus computes for `kind/name`: `Current`, `InProgress`, `Failed`…, then its message.
fn kstatus(ns: &str, object: &str) -> String {
    let bin = support::built("hack/kstatus/build.sh");
    let json = support::run_tool("kubectl", &["get", "-n", ns, object, "-o", "json"]);
    let out = Command::new(bin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(json.as_bytes())?;
            child.wait_with_output()
        })
        .expect("the kstatus helper runs");
    assert!(out.status.success(), "kstatus failed on {json}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Waits up to 20 s for kstatus to say `expected` of `object` (a repository's status
/// follows its runs a moment later).
fn assert_kstatus(ns: &str, object: &str, expected: &str) {
    let mut got = String::new();
    for _ in 0..40 {
        got = kstatus(ns, object);
        if got.split_whitespace().next() == Some(expected) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("{object}: kstatus says `{got}`, expected {expected}");
}

/// `kubectl wait --for=condition=<condition>` on a run, which must return at once.
fn kubectl_wait(ns: &str, run: &str, condition: &str) {
    let out = support::run_tool(
        "kubectl",
        &[
            "wait",
            "-n",
            ns,
            &format!("syncrun/{run}"),
            &format!("--for=condition={condition}"),
            "--timeout=20s",
        ],
    );
    assert!(out.contains("condition met"), "{out}");
}

#[tokio::test]
async fn objects_the_controller_has_not_seen_are_in_progress() {
    let ns = support::env().namespace("kstatus-new").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    // No controller runs here: both objects stay as the API server made them.
    create_repository(
        &ns.client,
        &ns.name,
        "fleet",
        json!({"url": "file:///x", "ref": {"branch": "main"}}),
    )
    .await;
    let gvk = GroupVersionKind::gvk("gitops.fleetgate.dev", "v1alpha1", "SyncRun");
    let runs: Api<DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &ApiResource::from_gvk(&gvk));
    let run: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1",
        "kind": "SyncRun",
        "metadata": {"name": "run"},
        "spec": {"repository": "fleet", "revision": "0".repeat(40), "trigger": "Manual"},
    }))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    assert_kstatus(&ns.name, "gitopsrepository/fleet", "InProgress");
    assert_kstatus(&ns.name, "syncrun/run", "InProgress");
}

#[tokio::test]
async fn every_phase_reads_right_in_kstatus_and_kubectl_wait() {
    let fleet = Fleet::in_namespace("kstatus")
        .holding(V1)
        .controller_running()
        .await;
    let (ns, repo, v1) = (fleet.ns, fleet.repo, fleet.head);
    let (client, n) = (&ns.client, ns.name.as_str());
    let first = run_in_phase(client, n, &v1, Phase::AwaitingApproval).await;
    let first = first.metadata.name.unwrap();
    assert_kstatus(n, &format!("syncrun/{first}"), "InProgress");

    // Superseded and Rejected runs are over and did not apply: Failed (Stalled=True).
    let v2 = repo.commit(&[("fleet.yaml", V2)], "second");
    let second = run_in_phase(client, n, &v2, Phase::AwaitingApproval).await;
    let second = second.metadata.name.unwrap();
    run_in_phase(client, n, &v1, Phase::Superseded).await;
    assert_kstatus(n, &format!("syncrun/{first}"), "Failed");
    kubectl_wait(n, &first, "Stalled");
    annotate(client, n, &second, annotations::REJECT, Some("not today")).await;
    run_in_phase(client, n, &v2, Phase::Rejected).await;
    assert_kstatus(n, &format!("syncrun/{second}"), "Failed");
    kubectl_wait(n, &second, "Stalled");

    // A fleet file that does not validate fails its run.
    let broken = String::from_utf8(V2.to_vec()).unwrap().replace(
        "template: edge-cdn\n    region: eu-west-3",
        "template: edge-cnd\n    region: eu-west-3",
    );
    let broken = repo.commit(&[("fleet.yaml", broken.as_bytes())], "a typo");
    let failed = run_in_phase(client, n, &broken, Phase::Failed).await;
    let failed = failed.metadata.name.unwrap();
    assert_kstatus(n, &format!("syncrun/{failed}"), "Failed");
    assert_kstatus(n, "gitopsrepository/fleet", "Failed");
    kubectl_wait(n, &failed, "Stalled");

    // An approved plan applied is Current and Ready; so is a run with nothing to do.
    let v3 = repo.commit(&[("fleet.yaml", V1)], "back to the first fleet");
    let third = run_in_phase(client, n, &v3, Phase::AwaitingApproval).await;
    approval(client, &third).await;
    let third = third.metadata.name.unwrap();
    kubectl_wait(n, &third, "Ready");
    run_in_phase(client, n, &v3, Phase::Applied).await;
    assert_kstatus(n, &format!("syncrun/{third}"), "Current");
    assert_kstatus(n, "gitopsrepository/fleet", "Current");

    let repos: Api<fleetgate::api::GitopsRepository> = Api::namespaced(client.clone(), n);
    let patch = json!({"metadata": {"annotations": {annotations::SYNC_REQUESTED_AT: "1"}}});
    repos
        .patch(
            "fleet",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let unchanged = run_in_phase(client, n, &v3, Phase::NoChanges).await;
    let unchanged = unchanged.metadata.name.unwrap();
    assert_kstatus(n, &format!("syncrun/{unchanged}"), "Current");
    kubectl_wait(n, &unchanged, "Ready");

    // Each new run has its own Event, not a count on the first one's.
    let started = events(client, n, "fleet", "NewSyncRun").await;
    for run in [&first, &second, &failed, &third, &unchanged] {
        assert!(
            started
                .iter()
                .any(|e| e.ends_with(&format!("started SyncRun {run}"))),
            "no NewSyncRun Event names {run}: {started:?}"
        );
    }
}
