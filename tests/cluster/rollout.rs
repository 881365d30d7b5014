//! Progressive rollout, end to end with the real operator, and with the real lab provider
//! (network namespaces, static routes) where machines must become Ready: a plan goes out
//! region by region, each wave only once the one before converged and stayed so for the
//! soak; a wave that does not converge pauses the run there, the later regions untouched,
//! until a person chooses (here: continue, and the run finishes);
//! a controller killed mid-rollout resumes in its wave; the holders of a virtual IP never
//! change in one wave; a GovernancePolicy rule reads the blast-radius budget.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use fleetgate::api::GitopsRepository;
use fleetgate::api::syncrun::{Phase, SyncRun};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::fleet::Fleet;

use support::lab::at_next_generation;
use support::operator::{
    ControllerProcess, annotate, events, patch_spec as patch_repository, run_in_phase_within,
};
use support::policy::{Policy, selecting};

const POD: &str = "rollout-0";
/// How long the lab takes at most to realize thirty machines, wave by wave.
const CONVERGE: Duration = Duration::from_secs(600);
/// Machines of each region that are peers of the network.
const PEERS_PER_REGION: usize = 4;
/// The soak the first test asks for.
const SOAK: i64 = 5;

/// `regions` regions of `per_region` machines each (`<region>-<i>`, all of instance type
/// `size` but those in `resized`), peers of one network with `routing`, and virtual IPs.
pub(crate) fn fleet_yaml(
    regions: &[&str],
    per_region: usize,
    size: &str,
    resized: &[&str],
    routing: &str,
    vips: &[(&str, &[&str])],
) -> Vec<u8> {
    let mut nodes = String::new();
    let mut peers = Vec::new();
    for region in regions {
        for i in 0..per_region {
            let host = format!("{region}-{i}");
            let size = if resized.contains(&host.as_str()) {
                "large"
            } else {
                size
            };
            nodes.push_str(&format!(
                "  - {{hostname: {host}, template: base, region: {region}, instance_type: {size}}}\n"
            ));
            // The first few machines of a region are peers: enough for the fabric and
            // the virtual IPs, without a route check between every pair of thirty.
            if i < PEERS_PER_REGION {
                peers.push(format!("{{host: {host}}}"));
            }
        }
    }
    let mut vip_yaml = String::new();
    for (name, holders) in vips {
        vip_yaml.push_str(&format!(
            "        - {{name: {name}, primary_holder: {}, failover_holders: [{}]}}\n",
            holders[0],
            holders[1..].join(", ")
        ));
    }
    let vip_yaml = if vips.is_empty() {
        String::new()
    } else {
        format!("      virtual_ips:\n{vip_yaml}")
    };
    format!(
        "version: 1\naccount: lab\n\
         templates: [{{name: base, node_platform: debian-12-amd64, architecture: amd64}}]\n\
         nodes:\n{nodes}\
         sdwan:\n\
         \x20 networks:\n\
         \x20   - name: net\n\
         \x20     routing_mode: {routing}\n\
         \x20     peers: [{}]\n{vip_yaml}",
        peers.join(", ")
    )
    .into_bytes()
}

/// Each FleetNode's region, creation time, generation, instance type and the time its
/// Ready condition last turned.
pub(crate) async fn nodes(
    client: &Client,
    ns: &str,
) -> BTreeMap<String, (String, Time, i64, String, Option<Time>)> {
    let mut out = BTreeMap::new();
    let all = support::tenant::fleet_objects(client, ns).await;
    // Only FleetNodes have a region and an instance type.
    for n in all
        .iter()
        .filter(|o| o.data["spec"].get("instanceType").is_some())
    {
        let raw = serde_json::to_value(n).unwrap();
        let ready = raw["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready" && c["status"] == "True")
            .and_then(|c| serde_json::from_value::<Time>(c["lastTransitionTime"].clone()).ok());
        out.insert(
            n.name_any(),
            (
                raw["spec"]["region"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                n.metadata.creation_timestamp.clone().unwrap(),
                n.metadata.generation.unwrap_or_default(),
                raw["spec"]["instanceType"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                ready,
            ),
        );
    }
    out
}

/// Every action of the run's plan applied, none pending, failed, skipped or left out.
fn assert_each_action_applied_once(status: &fleetgate::api::syncrun::SyncRunStatus) {
    let states = status.action_states.as_deref().unwrap_or_default();
    assert!(
        !states.is_empty() && states.chars().all(|c| c == 'A'),
        "{states}"
    );
}

#[tokio::test]
async fn thirty_machines_roll_out_region_by_region_and_a_stuck_wave_pauses_for_a_choice() {
    let regions = ["ra", "rb", "rc"];
    let v1_yaml = fleet_yaml(&regions, 10, "small", &[], "static", &[]);
    let mut fleet = Fleet::in_namespace("rollout")
        .holding(&v1_yaml)
        .with_spec(json!({
            "approval": "Auto",
            "suspend": true,
            "driftRemediation": "Report",
            "rollout": {"minReadyTime": format!("{SOAK}s"), "progressDeadline": "3m"},
        }))
        .controller_in_pod(POD)
        .controller_running()
        .await;
    let (ns, repo, v1) = (&fleet.ns, &fleet.repo, fleet.head.clone());
    let client = &ns.client;
    let _lab = support::lab::serving(client, &ns.name).await;

    // v1 creates thirty machines: three waves, one region each. The repository is
    // suspended while the first converges: the rollout holds there, nothing of the
    // second region written, until it is resumed.
    let runs: Api<SyncRun> = Api::namespaced(client.clone(), &ns.name);
    support::eventually("the first wave written", CONVERGE, || async {
        let list = runs.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|r| r.status.as_ref().and_then(|s| s.phase) == Some(Phase::Converging))
    })
    .await;
    patch_repository(client, &ns.name, json!({"suspend": true})).await;
    let held = support::eventually("the rollout held by suspend", CONVERGE, || async {
        let list = runs.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.message.as_deref())
                .is_some_and(|m| m.contains("the repository is suspended, so the next wave waits"))
        })
    })
    .await;
    assert_eq!(held.status.as_ref().unwrap().phase, Some(Phase::Converging));
    assert!(
        nodes(client, &ns.name).await.values().all(|n| n.0 == "ra"),
        "only the first region is written while suspended"
    );
    patch_repository(client, &ns.name, json!({"suspend": false})).await;

    // The controller is killed once the second wave is under way; its successor resumes
    // there.
    let second = support::eventually("the second wave under way", CONVERGE, || async {
        let list = runs.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|r| {
            r.spec.revision == v1
                && r.status.as_ref().and_then(|s| s.rollout.as_ref()?.current) == Some(1)
        })
    })
    .await;
    let rollout = second.status.clone().unwrap().rollout.unwrap();
    let names: Vec<&str> = rollout.waves.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["region=ra", "region=rb", "region=rc"]);
    assert_eq!(rollout.min_ready_time, "5s");
    // An Event is published after the status write it reports (as Flux and kube-runtime
    // do), so a kill in between loses it: wait for the first wave's before killing.
    events(client, &ns.name, &second.name_any(), "WaveConverged").await;
    fleet.controller.kill();
    fleet.controller = ControllerProcess::restart_in_pod(ns, POD, &[]);
    let applied = run_in_phase_within(client, &ns.name, &v1, Phase::Applied, CONVERGE).await;
    let status = applied.status.clone().unwrap();
    // Each action once, all written.
    assert_each_action_applied_once(&status);
    assert_eq!(status.rollout.as_ref().unwrap().current, Some(2));
    // Thirty machines, twelve peers, the network; no provider serves the template.
    let health = status.health.unwrap();
    assert_eq!(
        (health.ready, health.progressing, health.failed),
        (43, 0, 0),
        "{health:?}"
    );
    assert_eq!(
        events(client, &ns.name, &applied.name_any(), "WaveConverged")
            .await
            .len(),
        2
    );
    // A region's machines were created only once every machine of the region before it
    // was Ready and had stayed so for the soak (timestamps are whole seconds).
    let by_node = nodes(client, &ns.name).await;
    for pair in regions.windows(2) {
        let ready = by_node
            .values()
            .filter(|n| n.0 == pair[0])
            .map(|n| n.4.clone().expect("Ready").0)
            .max()
            .unwrap();
        let created = by_node
            .values()
            .filter(|n| n.0 == pair[1])
            .map(|n| n.1.0)
            .min()
            .unwrap();
        let gap = (created - ready).get_seconds();
        assert!(
            gap >= SOAK - 1,
            "{} created {gap}s after {} was Ready",
            pair[1],
            pair[0]
        );
    }

    // v2 resizes every machine, all of a region at once; the lab holds rb-3 back at its
    // new generation. The run writes ra, then rb, whose wave never converges: paused at
    // the deadline, rc not written, until a person chooses.
    patch_repository(
        client,
        &ns.name,
        json!({"rollout": {"maxUnavailable": "100%", "progressDeadline": "20s"}}),
    )
    .await;
    at_next_generation(
        client,
        &ns.name,
        "rb-3",
        ("lab.fleetgate.dev/never-ready", "true"),
    )
    .await;
    let all: Vec<String> = regions
        .iter()
        .flat_map(|r| (0..10).map(move |i| format!("{r}-{i}")))
        .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let v2 = repo.commit(
        &[(
            "fleet.yaml",
            fleet_yaml(&regions, 10, "small", &all, "static", &[]).as_slice(),
        )],
        "resize everything",
    );
    let paused = run_in_phase_within(client, &ns.name, &v2, Phase::Paused, CONVERGE).await;
    let name = paused.name_any();
    let status = paused.status.clone().unwrap();
    let rollout = status.rollout.as_ref().unwrap();
    assert_eq!(rollout.current, Some(1));
    let pause = rollout.pause.clone().unwrap();
    assert_eq!(
        (pause.reason.as_str(), pause.wave),
        ("ProgressDeadlineExceeded", 1)
    );
    assert_eq!(pause.objects, ["fleetnode/rb-3"], "{pause:?}");
    // The run before applied whole: a rollback is offered.
    assert!(pause.rollback_to.is_some());
    let message = status.message.clone().unwrap_or_default();
    assert!(message.contains("wave 2/3 (region=rb)"), "{message}");
    assert!(message.contains("kubectl fleet decide"), "{message}");
    assert!(
        !events(client, &ns.name, &name, "ProgressDeadlineExceeded")
            .await
            .is_empty()
    );
    let repository = Api::<GitopsRepository>::namespaced(client.clone(), &ns.name);
    let ready = fleetgate::api::condition(
        &repository
            .get("fleet")
            .await
            .unwrap()
            .status
            .unwrap()
            .conditions,
        "Ready",
    )
    .cloned()
    .unwrap();
    assert_eq!(ready.reason, "Paused", "{}", ready.message);
    let by_node = nodes(client, &ns.name).await;
    for (name, (region, _, generation, size, _)) in &by_node {
        let written = region != "rc";
        assert_eq!(size == "large", written, "{name}: {size}");
        assert_eq!(*generation, if written { 2 } else { 1 }, "{name}");
    }

    // A choice must name this pause: one naming another is refused, and nothing moves.
    let approve = fleetgate::api::annotations::APPROVE;
    let stale = "continue:pause-000000000000";
    annotate(client, &ns.name, &name, approve, Some(stale)).await;
    support::eventually("the stale choice refused", CONVERGE, || async {
        let said = events(client, &ns.name, &name, "ApprovalRefused").await;
        said.iter()
            .any(|m| m.contains("names another pause"))
            .then_some(())
    })
    .await;
    assert_eq!(
        Api::<SyncRun>::namespaced(client.clone(), &ns.name)
            .get(&name)
            .await
            .unwrap()
            .phase(),
        Some(Phase::Paused)
    );

    // Continue: rb-3 is accepted as it is, rc goes out, and the run finishes.
    let choice = format!("continue:{}", pause.decision_id);
    annotate(client, &ns.name, &name, approve, Some(&choice)).await;
    let applied = run_in_phase_within(client, &ns.name, &v2, Phase::Applied, CONVERGE).await;
    let status = applied.status.clone().unwrap();
    let rollout = status.rollout.clone().unwrap();
    assert_eq!(rollout.current, Some(2));
    assert_eq!(rollout.accepted, ["fleetnode/rb-3"]);
    assert_eq!(rollout.decisions.len(), 1);
    assert_eq!(
        (
            rollout.decisions[0].choice.as_str(),
            rollout.decisions[0].wave
        ),
        ("continue", 1)
    );
    assert!(rollout.pause.is_none());
    assert_eq!(
        events(client, &ns.name, &name, "ContinueChosen")
            .await
            .len(),
        1
    );
    assert_each_action_applied_once(&status);
    let by_node = nodes(client, &ns.name).await;
    assert!(
        by_node.values().all(|n| n.3 == "large" && n.2 == 2),
        "every machine written once at its new generation"
    );
    assert_eq!(
        repository
            .get("fleet")
            .await
            .unwrap()
            .status
            .unwrap()
            .last_applied_revision
            .as_deref(),
        Some(v2.as_str())
    );
}

#[tokio::test]
async fn virtual_ip_holders_never_change_together_and_rules_read_the_blast_radius() {
    let regions = ["ra"];
    let vips: &[(&str, &[&str])] = &[("api", &["ra-0", "ra-1"])];
    let v1_yaml = fleet_yaml(&regions, 4, "small", &[], "ibgp", vips);
    let fleet = Fleet::in_namespace("rolloutvip")
        .holding(&v1_yaml)
        .with_spec(json!({
            "approval": "Auto",
            "driftRemediation": "Report",
            "rollout": {"maxUnavailable": "100%", "regionBudget": 2},
        }))
        .controller_running()
        .await;
    let (ns, repo, v1) = (&fleet.ns, &fleet.repo, fleet.head.clone());
    let client = &ns.client;
    // No provider here: nothing is waited for, so waves follow each other at once.
    run_in_phase_within(client, &ns.name, &v1, Phase::Applied, CONVERGE).await;

    // Both holders change: they go out in different waves, though all may go at once.
    let resized = ["ra-0", "ra-1"];
    let v2 = repo.commit(
        &[(
            "fleet.yaml",
            fleet_yaml(&regions, 4, "small", &resized, "ibgp", vips).as_slice(),
        )],
        "resize both holders",
    );
    let applied = run_in_phase_within(client, &ns.name, &v2, Phase::Applied, CONVERGE).await;
    let rollout = applied.status.unwrap().rollout.unwrap();
    assert_eq!(rollout.waves.len(), 2, "{rollout:?}");
    assert_eq!(
        rollout.findings,
        [
            "virtualip/net.api: its holders (ra-0, ra-1) change in different waves, so one holds the address at all times"
        ]
    );
    assert!(!rollout.budget_exceeded);
    assert_eq!(rollout.regions[0].disrupted, 2);

    // A rule denies plans over the region budget: all four machines is over two.
    let _policy = Policy::create(
        client,
        &format!("{}-blast-radius", ns.name),
        selecting(
            &ns.name,
            json!({"rules": [{
                "name": "blast-radius",
                "expression": "plan.rollout.budgetExceeded",
                "action": "Deny",
                "message": "more machines of a region than its budget",
            }]}),
        ),
    )
    .await;
    let v3 = repo.commit(
        &[(
            "fleet.yaml",
            fleet_yaml(&regions, 4, "medium", &[], "ibgp", vips).as_slice(),
        )],
        "resize three",
    );
    let denied = run_in_phase_within(client, &ns.name, &v3, Phase::Failed, CONVERGE).await;
    let status = denied.status.unwrap();
    let ready = fleetgate::api::condition(&status.conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "PolicyDenied", "{}", ready.message);
    let rollout = status.rollout.unwrap();
    assert!(rollout.budget_exceeded);
    assert_eq!(
        (rollout.regions[0].disrupted, rollout.regions[0].allowed),
        (4, Some(2))
    );
}
