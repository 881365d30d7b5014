//! A paused rollout, end to end through the chart (its roles and admission policies) with
//! the real lab provider: a machine that fails in the second wave pauses the run there;
//! an editor cannot choose; a governance quorum of two chooses to roll back, and the
//! gated Rollback run restores what the run before applied.

use crate::support;

use std::time::Duration;

use fleetgate::api::annotations;
use fleetgate::api::syncrun::{Phase, SyncRun, Trigger};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::rollout::{fleet_yaml, nodes};
use support::browser::{Browser, Ui};
use support::lab::at_next_generation;
use support::operator::{create_repository, events, run_in_phase_within, try_annotate};
use support::policy::{Policy, selecting};
use support::tenant::{Tenant, tenant};

const CONVERGE: Duration = Duration::from_secs(300);

/// Sets the approve annotation of `run` to `value` as `who`, and waits until the
/// controller has recorded it and cleared it for the next person.
async fn choose(t: &Tenant, who: &Client, run: &str, value: &str) {
    let ns = &t.ns.name;
    support::operator::wait_for_approved_by_stamp(who, ns, run, value).await;
    try_annotate(who, ns, run, annotations::APPROVE, Some(value))
        .await
        .unwrap();
    let api = Api::<SyncRun>::namespaced(t.admin.clone(), ns);
    support::eventually("the choice recorded and cleared", CONVERGE, || {
        let api = api.clone();
        async move {
            let r = api.get(run).await.ok()?;
            (!r.annotations().contains_key(annotations::APPROVE)).then_some(())
        }
    })
    .await;
}

/// `regions` of two machines each, peers of a statically routed network, with the first
/// machine of each resized: one update per region, so one wave each.
fn one_resized_per_region(regions: &[&str]) -> Vec<u8> {
    let first: Vec<String> = regions.iter().map(|r| format!("{r}-0")).collect();
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    fleet_yaml(regions, 2, "small", &first, "static", &[])
}

/// The pause is for `reason` at `wave` (counted from 0) and names `object`.
fn assert_paused_at(
    pause: &fleetgate::api::pause::RunPause,
    reason: &str,
    wave: u32,
    object: &str,
) {
    assert_eq!(
        (pause.reason.as_str(), pause.wave),
        (reason, wave),
        "{pause:?}"
    );
    assert!(pause.objects.iter().any(|o| o == object), "{pause:?}");
}

/// bob's and carol's approvals of the plan `run` recorded.
async fn approved_by_both(t: &Tenant, run: &SyncRun) {
    let plan = run.status.as_ref().unwrap().plan_id.clone().unwrap();
    for who in [&t.bob, &t.carol] {
        choose(t, who, &run.name_any(), &plan).await;
    }
}

#[tokio::test]
async fn a_failed_wave_pauses_and_a_quorum_rolls_it_back() {
    let t = tenant("pause").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    let client = &t.admin;
    let _quorum = Policy::create(
        client,
        &format!("{ns}-quorum"),
        selecting(ns, json!({"approvals": {"required": 2}})),
    )
    .await;
    let regions = ["ra", "rb", "rc"];
    let mut spec = t.ssh_spec();
    spec["suspend"] = json!(true);
    spec["rollout"] =
        json!({"minReadyTime": "3s", "progressDeadline": "2m", "maxUnavailable": "100%"});
    create_repository(client, ns, "fleet", spec).await;
    let v1_yaml = fleet_yaml(&regions, 2, "small", &[], "static", &[]);
    let v1 = t
        .repo
        .commit(&[("fleet.yaml", v1_yaml.as_slice())], "six machines");
    let _lab = support::lab::serving(client, ns).await;
    let first = run_in_phase_within(client, ns, &v1, Phase::AwaitingApproval, CONVERGE).await;
    approved_by_both(&t, &first).await;
    run_in_phase_within(client, ns, &v1, Phase::Applied, CONVERGE).await;

    // v2 resizes one machine per region; rb-0 fails two seconds after it is Ready at
    // its new generation, well within the soak of its wave (the lab looks at its
    // machines every few seconds).
    support::operator::patch_spec(
        client,
        ns,
        json!({"rollout": {"minReadyTime": "40s", "progressDeadline": "2m", "maxUnavailable": "100%"}}),
    )
    .await;
    at_next_generation(client, ns, "rb-0", ("lab.fleetgate.dev/fail-after", "2s")).await;
    let v2_yaml = one_resized_per_region(&regions);
    let v2 = t.repo.commit(
        &[("fleet.yaml", v2_yaml.as_slice())],
        "resize one per region",
    );
    let run = run_in_phase_within(client, ns, &v2, Phase::AwaitingApproval, CONVERGE).await;
    approved_by_both(&t, &run).await;
    let paused = run_in_phase_within(client, ns, &v2, Phase::Paused, CONVERGE).await;
    let name = paused.name_any();
    let pause = paused
        .status
        .clone()
        .unwrap()
        .rollout
        .unwrap()
        .pause
        .unwrap();
    assert_paused_at(&pause, "ObjectFailed", 1, "fleetnode/rb-0");
    assert_eq!(
        pause.rollback_to.as_deref(),
        Some(first.name_any().as_str())
    );
    assert!(!events(client, ns, &name, "ObjectFailed").await.is_empty());
    let by_node = nodes(client, ns).await;
    assert_eq!(by_node["rc-0"].3, "small", "the third wave is not written");

    // An editor cannot choose: admission wants the approve verb.
    let rollback = format!("rollback:{}", pause.decision_id);
    let refused = try_annotate(&t.alice, ns, &name, annotations::APPROVE, Some(&rollback)).await;
    assert!(refused.is_err(), "an editor chose");

    // bob chooses in the browser UI, from the pause its run page shows. While his choice
    // is not yet recorded (the controller stopped), carol cannot set another over it: it
    // would be lost.
    support::operator::wait_for_approved_by_stamp(&t.bob, ns, &name, &rollback).await;
    support::chart::grant_configmap_view(ns, &["bob"]);
    let browser = Browser::start().await;
    let bob_ui = Ui::start(&support::env().kubeconfig, ns, "bob");
    let b = &browser;
    b.client.goto(&bob_ui.url).await.unwrap();
    b.client
        .goto(&format!("{}/ns/{ns}/runs/{name}", bob_ui.base))
        .await
        .unwrap();
    let heading = b.text("#pause h2").await;
    assert!(
        heading.contains("Paused at wave 2 of 3: ObjectFailed"),
        "{heading}"
    );
    b.screenshot("paused").await;
    chart.controller.pause();
    b.click("#decide-rollback").await;
    let api = Api::<SyncRun>::namespaced(client.clone(), ns);
    // The click returns once the browser sent the form, not once the UI stored it.
    let chosen = support::eventually("bob's choice stored", CONVERGE, || async {
        let r = api.get(&name).await.ok()?;
        r.annotations()
            .contains_key(annotations::APPROVE)
            .then_some(r)
    })
    .await;
    assert_eq!(chosen.annotations()[annotations::APPROVE], rollback);
    assert_eq!(chosen.annotations()[annotations::APPROVED_BY], "bob");
    let continue_ = format!("continue:{}", pause.decision_id);
    let over = try_annotate(&t.carol, ns, &name, annotations::APPROVE, Some(&continue_)).await;
    chart.controller.resume();
    let refused = over.expect_err("a choice set over one not yet recorded");
    assert!(
        refused.to_string().contains("is still being recorded"),
        "{refused}"
    );

    // The quorum is the plan's: bob's choice alone waits for a second person.
    support::eventually("bob's choice recorded and cleared", CONVERGE, || async {
        let r = api.get(&name).await.ok()?;
        (!r.annotations().contains_key(annotations::APPROVE)).then_some(())
    })
    .await;
    let waiting = api.get(&name).await.unwrap();
    assert_eq!(waiting.phase(), Some(Phase::Paused));
    let said = waiting.status.unwrap().message.unwrap_or_default();
    assert!(said.contains("by bob recorded"), "{said}");
    let shown = support::kubectl_fleet(ns, &["plan", &name]);
    assert!(
        shown.contains("Paused: at wave 2 (ObjectFailed)"),
        "{shown}"
    );
    assert!(shown.contains("chosen so far: rollback by bob"), "{shown}");
    // carol chooses with the plugin, as herself.
    support::kubectl_fleet(ns, &["decide", &name, "rollback", "--as", "carol"]);

    // Rolled back: the run ends there, and a Rollback run to what v1 applied is gated
    // like any plan.
    let ended = run_in_phase_within(client, ns, &v2, Phase::Degraded, CONVERGE).await;
    let status = ended.status.unwrap();
    let decision = &status.rollout.as_ref().unwrap().decisions[0];
    assert_eq!(
        (decision.choice.as_str(), decision.by.as_str()),
        ("rollback", "bob,carol")
    );
    assert!(!events(client, ns, &name, "RollbackChosen").await.is_empty());
    let restoring = support::eventually("the Rollback run", CONVERGE, || async {
        let runs = api.list(&ListParams::default()).await.ok()?.items;
        runs.into_iter().find(|r| {
            r.spec.trigger == Trigger::Rollback && r.phase() == Some(Phase::AwaitingApproval)
        })
    })
    .await;
    assert_eq!(restoring.spec.revision, v1);
    approved_by_both(&t, &restoring).await;
    let restored = support::eventually("the rollback applied", CONVERGE, || async {
        let r = api.get(&restoring.name_any()).await.ok()?;
        (r.phase() == Some(Phase::Applied)).then_some(r)
    })
    .await;
    let health = restored.status.unwrap().health.unwrap();
    assert_eq!((health.failed, health.progressing), (0, 0), "{health:?}");
    // Every machine is as v1 had it and Ready; rb-0 at a generation its fault is not for.
    let by_node = nodes(client, ns).await;
    for (name, (_, _, generation, size, ready)) in &by_node {
        assert_eq!(size, "small", "{name}");
        assert!(ready.is_some(), "{name} is not Ready");
        let expected = match name.as_str() {
            "ra-0" | "rb-0" => 3,
            _ => 1,
        };
        assert_eq!(*generation, expected, "{name}");
    }
}

/// A machine the run does not touch fails while the first wave soaks: a regression
/// against the health taken before the run. The run pauses naming it; leave-out accepts
/// it and the rollout finishes.
#[tokio::test]
async fn a_machine_failing_around_the_rollout_pauses_it_and_leave_out_goes_on() {
    let regions = ["ra", "rb", "rc"];
    let v1_yaml = fleet_yaml(&regions, 2, "small", &[], "static", &[]);
    let fleet = support::fleet::Fleet::in_namespace("regress")
        .holding(&v1_yaml)
        .with_spec(json!({
            "approval": "Auto",
            "suspend": true,
            "driftRemediation": "Report",
            "rollout": {"minReadyTime": "3s", "progressDeadline": "2m", "maxUnavailable": "100%"},
        }))
        .controller_running()
        .await;
    let (ns, repo, v1) = (&fleet.ns, &fleet.repo, fleet.head.clone());
    let client = &ns.client;
    let _lab = support::lab::serving(client, &ns.name).await;
    run_in_phase_within(client, &ns.name, &v1, Phase::Applied, CONVERGE).await;

    // v2 resizes one machine per region, with a long soak; while the first wave soaks,
    // rb-1 (which v2 does not change) fails.
    support::operator::patch_spec(
        client,
        &ns.name,
        json!({"rollout": {"minReadyTime": "60s", "progressDeadline": "2m", "maxUnavailable": "100%"}}),
    )
    .await;
    let v2_yaml = one_resized_per_region(&regions);
    let v2 = repo.commit(
        &[("fleet.yaml", v2_yaml.as_slice())],
        "resize one per region",
    );
    let api = Api::<SyncRun>::namespaced(client.clone(), &ns.name);
    support::eventually("the first wave soaking", CONVERGE, || async {
        let runs = api.list(&ListParams::default()).await.ok()?.items;
        runs.into_iter().find(|r| {
            r.spec.revision == v2
                && r.status
                    .as_ref()
                    .and_then(|s| s.rollout.as_ref()?.ready_since.as_ref())
                    .is_some()
        })
    })
    .await;
    let nodes_api =
        fleetgate::controller::live::api(client, &ns.name, "FleetNode".parse().unwrap());
    let generation = nodes_api
        .get("rb-1")
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    nodes_api
        .patch(
            "rb-1",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {
                "lab.fleetgate.dev/fail-after": "0s",
                "lab.fleetgate.dev/fault-generation": generation.to_string(),
            }}})),
        )
        .await
        .unwrap();
    let paused = run_in_phase_within(client, &ns.name, &v2, Phase::Paused, CONVERGE).await;
    let name = paused.name_any();
    let status = paused.status.clone().unwrap();
    let pause = status.rollout.as_ref().unwrap().pause.clone().unwrap();
    assert_paused_at(&pause, "HealthRegression", 0, "fleetnode/rb-1");
    let said = status.message.unwrap_or_default();
    assert!(
        said.contains("objects around the rollout regressed"),
        "{said}"
    );
    assert_eq!(
        nodes(client, &ns.name).await["rb-0"].3,
        "small",
        "the next wave waits"
    );

    // Leave it out: nothing of v2 is for rb-1, so nothing more is left out; the rest goes.
    let choice = format!("leave-out:{}", pause.decision_id);
    support::operator::annotate(client, &ns.name, &name, annotations::APPROVE, Some(&choice)).await;
    let applied = run_in_phase_within(client, &ns.name, &v2, Phase::Applied, CONVERGE).await;
    let status = applied.status.unwrap();
    let rollout = status.rollout.unwrap();
    assert!(
        rollout.accepted.contains(&"fleetnode/rb-1".to_owned()),
        "{:?}",
        rollout.accepted
    );
    assert_eq!(rollout.decisions[0].choice, "leave-out");
    assert!(
        !events(client, &ns.name, &name, "LeaveOutChosen")
            .await
            .is_empty()
    );
    let by_node = nodes(client, &ns.name).await;
    for host in ["ra-0", "rb-0", "rc-0"] {
        assert_eq!(by_node[host].3, "large", "{host}");
    }
}
