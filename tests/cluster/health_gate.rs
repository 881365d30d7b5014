//! Health-gated apply, end to end with the real lab provider (BIRD and keepalived in
//! network namespaces) and the real operator: a run is Applied only once the provider
//! reports every object it wrote Ready for its new generation; a node that never becomes
//! Ready ends its run Degraded at the repository's progress deadline, naming it; a
//! terminal failure ends the run Degraded at once; a kind no provider serves does not
//! hold anything up.

use crate::support;

use std::time::Duration;

use fleetgate::api::GitopsRepository;
use fleetgate::api::syncrun::{ObjectHealth, Phase, SyncRun};
use fleetgate::fleet::health::Standing;
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::json;
use support::fleet::Fleet;

use support::lab::at_next_generation;
use support::operator::{
    ControllerProcess, events, patch_spec as patch_repository, run_in_phase_within,
};

/// The controller's pod name: a restart under it holds the same Lease identity.
const POD: &str = "healthgate-0";

/// How long the lab takes at most to realize the small fleet below.
const CONVERGE: Duration = Duration::from_secs(90);

/// Two nodes on one iBGP network; `a_type` and `b_type` are their instance types (a
/// change of one is an update of that node alone).
fn fleet_yaml(a_type: &str, b_type: &str) -> Vec<u8> {
    format!(
        "version: 1\naccount: lab\n\
         templates: [{{name: base, node_platform: debian-12-amd64, architecture: amd64}}]\n\
         nodes:\n\
         \x20 - {{hostname: a, template: base, region: r1, instance_type: {a_type}}}\n\
         \x20 - {{hostname: b, template: base, region: r1, instance_type: {b_type}}}\n\
         sdwan:\n\
         \x20 networks:\n\
         \x20   - name: net\n\
         \x20     routing_mode: ibgp\n\
         \x20     peers: [{{host: a, publicly_reachable: true}}, {{host: b}}]\n"
    )
    .into_bytes()
}

fn ready_reason(run: &SyncRun) -> String {
    let status = run.status.as_ref().unwrap();
    fleetgate::api::condition(&status.conditions, "Ready")
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_run_is_applied_when_its_machines_are_ready_and_degraded_when_they_are_not() {
    // Suspended until the lab has registered: a run judged before its Lease exists would
    // rightly find no provider serving anything.
    let v1_yaml = fleet_yaml("small", "small");
    let mut fleet = Fleet::in_namespace("healthgate")
        .holding(&v1_yaml)
        .with_spec(json!({"approval": "Auto", "suspend": true}))
        .controller_in_pod(POD)
        .controller_running()
        .await;
    let (ns, repo, v1) = (&fleet.ns, &fleet.repo, fleet.head.clone());
    let client = &ns.client;
    let _lab = support::lab::serving(client, &ns.name).await;

    // v1: Applied only once the lab reports both nodes, the network and both peers Ready.
    // No provider serves FleetTemplate: the template is written, not waited for.
    let applied = run_in_phase_within(client, &ns.name, &v1, Phase::Applied, CONVERGE).await;
    let status = applied.status.clone().unwrap();
    let health = status.health.unwrap();
    assert_eq!(
        (
            health.ready,
            health.progressing,
            health.failed,
            health.unserved
        ),
        (5, 0, 0, 1),
        "{health:?}"
    );
    assert_eq!(health.unserved_kinds, ["FleetTemplate"]);
    assert_eq!(
        health.objects,
        [ObjectHealth {
            kind: "FleetTemplate".into(),
            name: "base".into(),
            standing: Standing::Unserved,
            reason: None,
        }]
    );
    assert!(status.drift_after_apply.is_empty());
    let all = support::lab::fleet_health(client, &ns.name).await;
    assert!(
        all.iter()
            .all(|(_, h)| *h == fleetgate::api::fleet::status::Health::Ready),
        "{all:?}"
    );

    // v2 resizes `a`, which the lab holds back (never Ready at that generation): the run
    // waits in Converging, then ends Degraded at the 15 s deadline, naming `a`. The
    // controller is killed while the run converges: its successor reads the objects the
    // run wrote from the stored plan and keeps the recorded deadline.
    patch_repository(
        client,
        &ns.name,
        json!({"rollout": {"progressDeadline": "15s"}}),
    )
    .await;
    at_next_generation(
        client,
        &ns.name,
        "a",
        ("lab.fleetgate.dev/never-ready", "true"),
    )
    .await;
    let v2 = repo.commit(
        &[("fleet.yaml", fleet_yaml("large", "small").as_slice())],
        "resize a",
    );
    let converging = run_in_phase_within(client, &ns.name, &v2, Phase::Converging, CONVERGE).await;
    let waiting = converging.status.unwrap().health.unwrap();
    assert_eq!(
        (waiting.deadline.0 - waiting.since.0).get_seconds(),
        15,
        "{waiting:?}"
    );
    fleet.controller.kill();
    fleet.controller = ControllerProcess::restart_in_pod(ns, POD, &[]);
    let degraded = run_in_phase_within(client, &ns.name, &v2, Phase::Degraded, CONVERGE).await;
    assert_eq!(ready_reason(&degraded), "ProgressDeadlineExceeded");
    let status = degraded.status.clone().unwrap();
    let health = status.health.unwrap();
    assert_eq!((health.ready, health.progressing), (0, 1), "{health:?}");
    assert_eq!(
        (&health.since, &health.deadline),
        (&waiting.since, &waiting.deadline)
    );
    assert_eq!(
        health.objects[0],
        ObjectHealth {
            kind: "FleetNode".into(),
            name: "a".into(),
            standing: Standing::Progressing,
            reason: Some("Updating".into()),
        }
    );
    assert_eq!(
        status.drift_after_apply,
        ["FleetNode/a: Progressing after applying (Updating)"]
    );
    let took = status.completed_at.unwrap().0 - health.since.0;
    assert!(took.get_seconds() >= 15, "Degraded after {took:?}");
    assert!(
        !events(
            client,
            &ns.name,
            &degraded.name_any(),
            "ProgressDeadlineExceeded"
        )
        .await
        .is_empty()
    );
    let repository = Api::<GitopsRepository>::namespaced(client.clone(), &ns.name)
        .get("fleet")
        .await
        .unwrap();
    let ready = fleetgate::api::condition(&repository.status.unwrap().conditions, "Ready")
        .cloned()
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Degraded")
    );
    // Drift detection reports it too: as git says, but not Ready (a health regression),
    // which no Drift run can restore.
    let repos = Api::<GitopsRepository>::namespaced(client.clone(), &ns.name);
    let drifted = support::eventually("`a` reported unhealthy", CONVERGE, || async {
        let drift = repos.get("fleet").await.ok()?.status?.drift?;
        drift.objects.into_iter().find(|d| d.name == "a")
    })
    .await;
    assert_eq!(drifted.drift, fleetgate::fleet::drift::DriftKind::Unhealthy);
    assert_eq!(drifted.fields, ["Progressing (Updating)"]);

    // v3 resizes `b`, which its provider reports it cannot realize (Stalled, InvalidSpec:
    // the lab's answer to a malformed fault): Degraded at once, long before the deadline.
    patch_repository(
        client,
        &ns.name,
        json!({"rollout": {"progressDeadline": "10m"}}),
    )
    .await;
    at_next_generation(
        client,
        &ns.name,
        "b",
        ("lab.fleetgate.dev/never-ready", "maybe"),
    )
    .await;
    let v3 = repo.commit(
        &[("fleet.yaml", fleet_yaml("large", "large").as_slice())],
        "resize b",
    );
    let failed = run_in_phase_within(client, &ns.name, &v3, Phase::Degraded, CONVERGE).await;
    assert_eq!(ready_reason(&failed), "ObjectFailed");
    let health = failed.status.unwrap().health.unwrap();
    assert_eq!(health.failed, 1, "{health:?}");
    assert_eq!(
        (
            health.objects[0].name.as_str(),
            health.objects[0].standing,
            health.objects[0].reason.as_deref()
        ),
        ("b", Standing::Failed, Some("InvalidSpec"))
    );
    let took = health.deadline.0 - health.since.0;
    assert_eq!(took.get_seconds(), 600);
}

/// A provider that registered and never reports, and a run whose stored plan is removed
/// while it converges, with the controller restarted (so nothing in memory says what the
/// run wrote): the run cannot be judged, and still ends at its deadline, saying why.
#[tokio::test]
async fn a_run_whose_objects_cannot_be_judged_still_ends_at_its_deadline() {
    const SILENT_POD: &str = "healthlost-0";
    let v1_yaml = fleet_yaml("small", "small");
    let mut fleet = Fleet::in_namespace("healthlost")
        .holding(&v1_yaml)
        .with_spec(json!({
            "approval": "Auto",
            "suspend": true,
            "rollout": {"progressDeadline": "20s"},
        }))
        .controller_in_pod(SILENT_POD)
        .controller_running()
        .await;
    let (ns, v1) = (&fleet.ns, fleet.head.clone());
    let client = &ns.client;
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "fleet-provider-silent",
            "labels": {"fleet.fleetgate.dev/provider": "silent"},
            "annotations": {"fleet.fleetgate.dev/provider-kinds": "FleetNode"},
        },
        "spec": {"holderIdentity": "silent"},
    });
    Api::<Lease>::namespaced(client.clone(), &ns.name)
        .create(&Default::default(), &serde_json::from_value(lease).unwrap())
        .await
        .unwrap();
    patch_repository(client, &ns.name, json!({"suspend": false})).await;
    let converging = run_in_phase_within(client, &ns.name, &v1, Phase::Converging, CONVERGE).await;
    let stored = converging.status.unwrap().full_plan.unwrap().config_maps;
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &ns.name);
    for name in &stored {
        config_maps.delete(name, &Default::default()).await.unwrap();
    }
    fleet.controller.kill();
    fleet.controller = ControllerProcess::restart_in_pod(ns, SILENT_POD, &[]);
    let degraded = run_in_phase_within(client, &ns.name, &v1, Phase::Degraded, CONVERGE).await;
    assert_eq!(ready_reason(&degraded), "ProgressDeadlineExceeded");
    let message = degraded.status.unwrap().message.unwrap_or_default();
    assert!(
        message.contains("could not be judged by the deadline"),
        "{message}"
    );
}
