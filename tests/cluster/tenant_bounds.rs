//! Tenant input that could take the one shared controller down, played with the chart
//! installed (its roles, its users by impersonation) and the controller in a memory
//! cgroup of the chart's own limit, as the kubelet would run it: each attack is refused
//! or survived, the controller is never OOM-killed, and another tenant's plan still
//! proceeds and applies.

use crate::support;

use std::time::{Duration, Instant};

use fleetgate::api::SyncRun;
use fleetgate::api::syncrun::Phase;
use fleetgate::fleet::synth;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use support::cgroup::MemoryCgroup;
use support::chart::Installed;
use support::git::server;
use support::operator::*;
use support::tenant::{Tenant, tenant};

/// The memory limit the chart gives the controller (`resources.limits.memory`).
fn chart_memory_limit() -> u64 {
    let values: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(include_str!("../../charts/fleetgate/values.yaml")).unwrap();
    let limit = values["resources"]["limits"]["memory"].as_str().unwrap();
    let mib: u64 = limit
        .strip_suffix("Mi")
        .expect("a limit in Mi")
        .parse()
        .unwrap();
    mib * 1024 * 1024
}

/// The cgroup of the test's controller, with the chart's limit (or, to measure what a
/// fix saved, `FLEETGATE_TEST_CGROUP_LIMIT_MIB`).
fn controller_cgroup(name: &str) -> MemoryCgroup {
    let limit = std::env::var("FLEETGATE_TEST_CGROUP_LIMIT_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or_else(chart_memory_limit, |mib| mib * 1024 * 1024);
    MemoryCgroup::new(name, limit)
}

/// Waits for a run of `revision` in `phase`, failing at once, with the cgroup's account,
/// if the controller is OOM-killed meanwhile.
async fn run_in_phase_alive(
    client: &kube::Client,
    ns: &str,
    revision: &str,
    phase: Phase,
    cgroup: &MemoryCgroup,
) -> SyncRun {
    let api: Api<SyncRun> = Api::namespaced(client.clone(), ns);
    let what = format!("a SyncRun of {revision} in phase {phase:?}");
    support::eventually(&what, Duration::from_secs(120), || {
        let api = api.clone();
        async move {
            assert_eq!(
                cgroup.oom_kills(),
                0,
                "the controller was OOM-killed: {}",
                cgroup.report()
            );
            api.list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|r| r.spec.revision == revision && r.phase() == Some(phase))
        }
    })
    .await
}

/// The runs of `repository`, newest first by creation.
async fn runs_of(client: &kube::Client, ns: &str, repository: &str) -> Vec<SyncRun> {
    let selector = format!("{}={repository}", fleetgate::api::REPOSITORY_LABEL);
    let mut runs = Api::<SyncRun>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    runs.sort_by_key(|r| std::cmp::Reverse(r.creation_timestamp().map(|t| t.0)));
    runs
}

/// The healthy tenant's plan is made and, approved by its approver, applied.
async fn healthy_tenant_plans_and_applies(healthy: &Tenant) {
    let (_, run) = healthy.first_plan().await;
    healthy.approve(&run).by(&healthy.bob).await;
    wait_for_status(
        &healthy.admin,
        &healthy.ns.name,
        &run.name_any(),
        "the healthy tenant's run applied",
        |s| s.phase == Some(Phase::Applied),
    )
    .await;
}

#[tokio::test]
async fn a_small_fleet_file_that_resolves_to_hundreds_of_mib_fails_and_the_controller_survives() {
    let hostile = tenant("hostile").await;
    let healthy = tenant("healthy").await;
    let cgroup = controller_cgroup("bounds");
    let mut chart = Installed::in_cgroup(&[&hostile.ns, &healthy.ns], &[], &cgroup).await;
    hostile.bind_users();
    healthy.bind_users();
    let ns = &hostile.ns.name;

    // One template of 4,000 modules that 4,000 nodes inherit: a half-megabyte file.
    let everything = synth::inherited_modules_yaml(4_000, 4_000);
    eprintln!("the hostile fleet file: {} KB", everything.len() / 1024);
    let big_head = hostile
        .repo
        .commit(&[("fleet.yaml", everything.as_bytes())], "everything");
    create_repository(&hostile.alice, ns, "everything", hostile.ssh_spec()).await;

    // Within the bounds but heavy (800 modules on each of 800 nodes, about 13 MiB of
    // desired state), synced every 3 s by an editor.
    let git = server();
    let heavy_repo = git.create_repo("heavy");
    let heavy_head = heavy_repo.commit(
        &[(
            "fleet.yaml",
            synth::inherited_modules_yaml(800, 800).as_bytes(),
        )],
        "heavy",
    );
    let mut heavy_spec = hostile.ssh_spec();
    heavy_spec["url"] = git.ssh_url(&heavy_repo).into();
    create_repository(&hostile.alice, ns, "heavy", heavy_spec).await;

    let failed = run_in_phase_alive(&hostile.admin, ns, &big_head, Phase::Failed, &cgroup).await;
    let status = failed.status.unwrap();
    let message = status.message.unwrap_or_default();
    eprintln!("{message}");
    assert_eq!(
        fleetgate::api::condition(&status.conditions, "Stalled").map(|c| c.reason.as_str()),
        Some("FleetTooLarge")
    );
    assert!(
        message.contains("fleet.yaml:4:5: error: template `everything` resolves to 4000 modules"),
        "located at the template: {message}"
    );
    assert!(status.plan_id.is_none(), "nothing was planned");

    // Sync requests every 3 s: never two plannings of one repository at once.
    let started = Instant::now();
    let mut request = 0;
    let mut most_planning = 0;
    while started.elapsed() < Duration::from_secs(24) {
        if started.elapsed().as_secs() >= request * 3 {
            request += 1;
            request_sync(&hostile.alice, ns, "heavy", &request.to_string()).await;
            eprintln!("sync request {request}: {}", cgroup.report());
        }
        let planning = runs_of(&hostile.admin, ns, "heavy")
            .await
            .iter()
            .filter(|r| matches!(r.phase(), None | Some(Phase::Planning)))
            .count();
        most_planning = most_planning.max(planning);
        assert!(
            !chart.controller.exited(),
            "the controller died: {}",
            cgroup.report()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        most_planning <= 1,
        "{most_planning} runs of one repository planning at once"
    );
    let heavy = run_in_phase_alive(
        &hostile.admin,
        ns,
        &heavy_head,
        Phase::AwaitingApproval,
        &cgroup,
    )
    .await;
    let summary = heavy.status.clone().unwrap().summary.unwrap();
    assert_eq!(summary.nodes.add, 800);

    // Another tenant is served meanwhile, and what it approves applies.
    healthy_tenant_plans_and_applies(&healthy).await;

    eprintln!(
        "controller peak RSS before the restart: {} MiB; {}",
        support::procstat::status_bytes(chart.controller.pid(), "VmHWM:") / (1024 * 1024),
        cgroup.report()
    );
    // A restart (a rollout, a failover) finds the failed run failed: nothing is planned
    // again, and the controller stays up.
    chart.restart(Some(&cgroup));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!chart.controller.exited(), "{}", cgroup.report());
    let everything_runs = runs_of(&hostile.admin, ns, "everything").await;
    assert_eq!(
        everything_runs.len(),
        1,
        "the failed revision is not planned again"
    );

    eprintln!("{}", cgroup.report());
    assert_eq!(cgroup.oom_kills(), 0, "{}", cgroup.report());
}

/// A gzip stream of `inflated` zero bytes: about a thousandth of that once compressed.
fn gzip_bomb(inflated: usize) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..inflated / zeros.len() {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap()
}

/// Replaces the stored content of a ConfigMap, as an editor may.
async fn overwrite_config_map(who: &kube::Client, ns: &str, name: &str, content: &[u8]) {
    use base64::Engine;
    let patch = json!({"binaryData": {
        "data.json.gz": base64::engine::general_purpose::STANDARD.encode(content)
    }});
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(who.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[tokio::test]
async fn a_gzip_bomb_in_a_stored_plan_is_refused_at_every_start_without_the_memory() {
    let victim = tenant("bomb").await;
    let healthy = tenant("beside").await;
    let cgroup = controller_cgroup("gzip");
    let mut chart = Installed::in_cgroup(&[&victim.ns, &healthy.ns], &[], &cgroup).await;
    victim.bind_users();
    healthy.bind_users();
    let ns = &victim.ns.name;

    // An applied run: its desired state is the drift baseline, loaded at every start.
    let (v1, run) = victim.first_plan().await;
    victim.approve(&run).by(&victim.bob).await;
    let applied = run_in_phase(&victim.admin, ns, &v1, Phase::Applied).await;
    let baseline = applied.status.clone().unwrap().desired_state;
    assert_eq!(baseline.len(), 1, "{baseline:?}");

    // Under a megabyte that inflates to 900 MiB, written by an editor.
    let bomb = gzip_bomb(900 * 1024 * 1024);
    eprintln!("gzip bomb: {} KB", bomb.len() / 1024);
    overwrite_config_map(&victim.alice, ns, &baseline[0], &bomb).await;

    // Every start loads the baseline; each is refused as tampered and survived.
    for start in 0..3 {
        chart.restart(Some(&cgroup));
        let refused = events(&victim.admin, ns, "fleet", "PlanTampered").await;
        assert!(
            refused
                .iter()
                .any(|m| m.contains("decompresses to more than")),
            "start {start}: {refused:?}"
        );
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            !chart.controller.exited(),
            "start {start}: the controller died: {}",
            cgroup.report()
        );
    }

    // A plan awaiting approval whose stored plan is a bomb: approving it fails the run,
    // applies nothing.
    let v2 = victim.repo.commit(
        &[("fleet.yaml", include_bytes!("../../examples/fleet-v2.yaml"))],
        "v2",
    );
    let waiting = run_in_phase(&victim.admin, ns, &v2, Phase::AwaitingApproval).await;
    let full_plan = waiting.status.clone().unwrap().full_plan.unwrap();
    overwrite_config_map(&victim.alice, ns, &full_plan.config_maps[0], &bomb).await;
    victim.approve(&waiting).by(&victim.bob).await;
    let failed = run_in_phase(&victim.admin, ns, &v2, Phase::Failed).await;
    let message = failed.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("decompresses to more than"), "{message}");
    let nodes: Api<fleetgate::api::FleetNode> = Api::namespaced(victim.admin.clone(), ns);
    assert!(
        nodes.get_opt("edge-paris-01").await.unwrap().is_none(),
        "nothing of the tampered plan was applied"
    );

    // Another tenant is served as usual.
    healthy_tenant_plans_and_applies(&healthy).await;
    assert!(!chart.controller.exited(), "{}", cgroup.report());
    eprintln!(
        "controller peak RSS since the last start: {} MiB",
        support::procstat::status_bytes(chart.controller.pid(), "VmHWM:") / (1024 * 1024)
    );
    eprintln!("{}", cgroup.report());
    assert_eq!(cgroup.oom_kills(), 0, "{}", cgroup.report());
}
