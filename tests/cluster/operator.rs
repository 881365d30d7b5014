//! The operator end to end, against the real control plane and the real git server,
//! driven only through the Kubernetes API as a user would.

use crate::support;

use fleetgate::api::syncrun::Phase;
use fleetgate::api::{FleetNode, SdwanPeer, SyncRun, VirtualIp, annotations};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use support::fleet::Fleet;
use support::git::server;
use support::operator::*;

const V1: &[u8] = include_bytes!("../../examples/fleet.yaml");
const V2: &[u8] = include_bytes!("../../examples/fleet-v2.yaml");

fn counts(run: &SyncRun, kind: &str) -> (u32, u32, u32) {
    let s = run.status.as_ref().unwrap().summary.unwrap();
    let c = match kind {
        "templates" => s.templates,
        "nodes" => s.nodes,
        "networks" => s.networks,
        "peers" => s.peers,
        _ => s.virtual_ips,
    };
    (c.add, c.update, c.delete)
}

/// A rollout of one wave: grouped by a label no machine carries, all may change at once.
/// The kill and conflict tests below are about one apply, not about waves.
static ONE_WAVE: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(
    || serde_json::json!({"rollout": {"waveBy": "label:one-wave", "maxUnavailable": "100%"}}),
);

#[tokio::test]
async fn the_reference_fleet_is_planned_approved_applied_and_revised() {
    let env = support::env();
    let ns = env.namespace("walkthrough").await;
    let client = ns.client.clone();
    support::install_crds(&client, &fleetgate::api::crds()).await;
    let git = server();
    let repo = git.create_repo("fleet");
    let v1 = repo.commit(&[("fleet.yaml", V1)], "the reference fleet");
    ssh_secret(&client, &ns.name, "fleet-git", git.known_hosts()).await;
    let controller = ControllerProcess::start(&ns, &[]);
    create_repository(
        &client,
        &ns.name,
        "fleet",
        serde_json::json!({
            "url": git.ssh_url(&repo),
            "ref": {"branch": "main"},
            "secretRef": {"name": "fleet-git"},
            "interval": "2s",
            "account": "acme-edge",
        }),
    )
    .await;

    // Planned and waiting: 2 templates, 3 nodes, 1 network, 3 peers, 1 VIP to add.
    let run = run_in_phase(&client, &ns.name, &v1, Phase::AwaitingApproval).await;
    let name = run.metadata.name.clone().unwrap();
    assert_eq!(counts(&run, "templates"), (2, 0, 0));
    assert_eq!(counts(&run, "nodes"), (3, 0, 0));
    assert_eq!(counts(&run, "networks"), (1, 0, 0));
    assert_eq!(counts(&run, "peers"), (3, 0, 0));
    assert_eq!(counts(&run, "virtualIps"), (1, 0, 0));
    let status = run.status.clone().unwrap();
    let plan_id = status.plan_id.clone().unwrap();
    assert!(status.requires_approval);
    assert!(status.message.unwrap().contains(&format!(
        "kubectl annotate syncrun/{name} {}={plan_id}",
        annotations::APPROVE
    )));

    // A wrong approval is refused with an Event and changes nothing.
    approval(&client, &run).plan("plan-000000000000").await;
    let refused = wait_for_status(&client, &ns.name, &name, "the approval refusal", |s| {
        s.refused_approval.as_deref() == Some("plan-000000000000")
    })
    .await;
    assert_eq!(refused.status.unwrap().phase, Some(Phase::AwaitingApproval));
    let events = events(&client, &ns.name, &name, "ApprovalRefused").await;
    assert!(
        events
            .iter()
            .any(|e| e.contains("does not match the current plan")),
        "{events:?}"
    );
    // A second wrong value is a second Event, not a count on the first one.
    approval(&client, &run).plan("plan-111111111111").await;
    wait_for_status(&client, &ns.name, &name, "the second refusal", |s| {
        s.refused_approval.as_deref() == Some("plan-111111111111")
    })
    .await;
    let refusals = support::eventually(
        "two ApprovalRefused Events",
        std::time::Duration::from_secs(30),
        || {
            let (client, ns, name) = (client.clone(), ns.name.clone(), name.clone());
            async move {
                let all = support::operator::events(&client, &ns, &name, "ApprovalRefused").await;
                (all.len() >= 2).then_some(all)
            }
        },
    )
    .await;
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    for value in ["plan-000000000000", "plan-111111111111"] {
        assert!(refusals.iter().any(|e| e.contains(value)), "{refusals:?}");
    }
    let nodes: Api<FleetNode> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // The right one applies everything, in order.
    approval(&client, &run).await;
    let applied = run_in_phase(&client, &ns.name, &v1, Phase::Applied).await;
    let status = applied.status.unwrap();
    assert_eq!(status.progress.unwrap().applied, 10);
    assert!(status.drift_after_apply.is_empty());
    assert_eq!(status.action_states.as_deref(), Some("AAAAAAAAAA"));
    let labelled = ListParams::default().labels("gitops.fleetgate.dev/repository=fleet");
    let listed = support::run_tool(
        "kubectl",
        &[
            "get",
            "fleet",
            "-n",
            &ns.name,
            "-l",
            "gitops.fleetgate.dev/repository=fleet",
            "-o",
            "name",
        ],
    );
    assert_eq!(listed.lines().count(), 10, "kubectl get fleet:\n{listed}");
    assert_eq!(
        names(&nodes.list(&labelled).await.unwrap().items),
        ["edge-london-01", "edge-tokyo-01", "edge-tokyo-02"]
    );

    // The next revision: exactly the core's diff.
    let v2 = repo.commit(&[("fleet.yaml", V2)], "paris replaces london");
    let run = run_in_phase(&client, &ns.name, &v2, Phase::AwaitingApproval).await;
    let name = run.metadata.name.clone().unwrap();
    assert_eq!(counts(&run, "templates"), (0, 1, 0));
    assert_eq!(counts(&run, "nodes"), (1, 2, 1));
    assert_eq!(counts(&run, "networks"), (0, 0, 0));
    assert_eq!(counts(&run, "peers"), (1, 0, 1));
    assert_eq!(counts(&run, "virtualIps"), (0, 1, 0));
    let full_plan_id = run.status.as_ref().unwrap().plan_id.clone().unwrap();

    // Excluding paris's node drops its peer and the VIP update (and so london's removal).
    annotate(
        &client,
        &ns.name,
        &name,
        annotations::EXCLUDE,
        Some("fleetnode/edge-paris-01"),
    )
    .await;
    let excluded = wait_for_status(&client, &ns.name, &name, "the plan without paris", |s| {
        s.plan_id.as_deref() != Some(full_plan_id.as_str()) && !s.excluded.is_empty()
    })
    .await;
    let status = excluded.status.unwrap();
    assert!(
        status
            .excluded
            .contains(&"sdwanpeer/edge-fabric.edge-paris-01".to_string()),
        "{:?}",
        status.excluded
    );
    assert!(
        status
            .excluded
            .contains(&"virtualip/edge-fabric.cdn-frontend".to_string())
    );
    assert_eq!(status.changes.unwrap().add, 0);

    // Without the exclusion the full plan is back, with its original id; approve it.
    annotate(&client, &ns.name, &name, annotations::EXCLUDE, None).await;
    wait_for_status(&client, &ns.name, &name, "the full plan again", |s| {
        s.plan_id.as_deref() == Some(full_plan_id.as_str())
    })
    .await;
    approval(&client, &run).plan(&full_plan_id).await;
    run_in_phase(&client, &ns.name, &v2, Phase::Applied).await;
    assert_eq!(
        names(&nodes.list(&labelled).await.unwrap().items),
        ["edge-paris-01", "edge-tokyo-01", "edge-tokyo-02"]
    );
    let peers: Api<SdwanPeer> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        peers
            .get_opt("edge-fabric.edge-london-01")
            .await
            .unwrap()
            .is_none()
    );
    let vip = Api::<VirtualIp>::namespaced(client.clone(), &ns.name)
        .get("edge-fabric.cdn-frontend")
        .await
        .unwrap();
    assert_eq!(
        vip.spec.resolved.failover_holders,
        ["edge-paris-01", "edge-tokyo-02"]
    );
    let tokyo = nodes.get("edge-tokyo-01").await.unwrap();
    assert_eq!(tokyo.spec.resolved.instance_type, "t3-large");

    // Signals: health, readiness and metrics; and never a secret in the log.
    assert_eq!(controller.http_get("/healthz").unwrap().0, 200);
    assert_eq!(controller.http_get("/readyz").unwrap().0, 200);
    // SyncRuns by phase come from the controller's watch cache, a moment behind.
    let applied_runs = format!(
        "fleetgate_syncruns{{namespace=\"{}\",phase=\"Applied\"}} 2",
        ns.name
    );
    let metrics = support::eventually(
        "the metrics to count both runs",
        std::time::Duration::from_secs(10),
        || {
            let (controller, applied_runs) = (&controller, &applied_runs);
            async move {
                let (code, metrics) = controller.http_get("/metrics")?;
                (code == 200 && metrics.contains(applied_runs.as_str())).then_some(metrics)
            }
        },
    )
    .await;
    for expected in [
        "fleetgate_reconcile_duration_seconds_count{controller=\"syncrun\"}",
        "fleetgate_git_duration_seconds_count{operation=\"ls-remote\"}",
        "fleetgate_git_duration_seconds_count{operation=\"fetch\"}",
        "fleetgate_actions_total{result=\"applied\"} 18",
        &format!(
            "fleetgate_syncruns{{namespace=\"{}\",phase=\"Applied\"}} 2",
            ns.name
        ),
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }
    let log = std::fs::read_to_string(&controller.log).unwrap();
    assert!(log.contains("phase changed"), "the log has the reconciles");
    let identity = git.identity();
    for line in identity.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!log.contains(line), "the controller logged the private key");
    }
}

async fn repository_condition(
    client: &kube::Client,
    ns: &str,
    type_: &str,
    reason: &str,
) -> String {
    let api: Api<fleetgate::api::GitopsRepository> = Api::namespaced(client.clone(), ns);
    support::eventually(
        &format!("{type_} with reason {reason}"),
        std::time::Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let repo = api.get("fleet").await.ok()?;
                let c = fleetgate::api::condition(&repo.status?.conditions, type_)?.clone();
                (c.reason == reason).then(|| format!("{}: {}", c.status, c.message))
            }
        },
    )
    .await
}

async fn fleet_objects(ns: &support::TestNamespace) -> Vec<String> {
    let out = support::run_tool("kubectl", &["get", "fleet", "-n", &ns.name, "-o", "name"]);
    let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
    names.sort();
    names
}

#[tokio::test]
async fn an_invalid_fleet_file_fails_planning_and_changes_nothing() {
    let fleet = Fleet::in_namespace("invalid")
        .holding(V1)
        .with_spec(serde_json::json!({"approval": "Auto"}))
        .controller_running()
        .await;
    let (ns, repo, v1) = (fleet.ns, fleet.repo, fleet.head);
    run_in_phase(&ns.client, &ns.name, &v1, Phase::Applied).await;
    let before = fleet_objects(&ns).await;
    assert_eq!(before.len(), 10);

    let broken = String::from_utf8(V2.to_vec()).unwrap().replace(
        "template: edge-cdn\n    region: eu-west-3",
        "template: edge-cnd\n    region: eu-west-3",
    );
    let bad = repo.commit(&[("fleet.yaml", broken.as_bytes())], "a typo");
    let failed = run_in_phase(&ns.client, &ns.name, &bad, Phase::Failed).await;
    let message = failed.status.unwrap().message.unwrap();
    assert!(
        message.contains("fleet.yaml:35:15: error: node `edge-paris-01` uses template `edge-cnd`, which is not declared; did you mean `edge-cdn`?"),
        "{message}"
    );
    let ready = repository_condition(&ns.client, &ns.name, "Ready", "ValidationFailed").await;
    assert!(ready.starts_with("False"), "{ready}");
    repository_condition(&ns.client, &ns.name, "Stalled", "ValidationFailed").await;
    assert_eq!(
        fleet_objects(&ns).await,
        before,
        "nothing changed in the cluster"
    );
}

#[tokio::test]
async fn a_fleet_larger_than_the_controller_accepts_fails_before_planning() {
    // The reference fleet declares 10 objects; this controller accepts 9.
    let fleet = Fleet::in_namespace("toolarge")
        .holding(V1)
        .with_spec(serde_json::json!({"approval": "Auto"}))
        .controller_flags(&["--max-fleet-objects", "9"])
        .controller_running()
        .await;
    let (ns, v1) = (fleet.ns, fleet.head);
    let failed = run_in_phase(&ns.client, &ns.name, &v1, Phase::Failed).await;
    let status = failed.status.unwrap();
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("declares 10 fleet objects, more than the 9 this controller accepts"),
        "{message}"
    );
    assert!(status.plan_id.is_none(), "nothing was planned");
    repository_condition(&ns.client, &ns.name, "Ready", "FleetTooLarge").await;
    assert!(fleet_objects(&ns).await.is_empty(), "nothing was applied");
}

#[tokio::test]
async fn a_wrong_host_key_stalls_the_repository_and_changes_nothing() {
    let ns = support::env().namespace("hostkey").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let git = server();
    let repo = git.create_repo("hostkey");
    repo.commit(&[("fleet.yaml", V1)], "first");
    ssh_secret(&ns.client, &ns.name, "fleet-git", git.wrong_known_hosts()).await;
    let _c = ControllerProcess::start(&ns, &[]);
    create_repository(
        &ns.client,
        &ns.name,
        "fleet",
        serde_json::json!({"url": git.ssh_url(&repo), "ref": {"branch": "main"}, "secretRef": {"name": "fleet-git"}, "interval": "2s"}),
    )
    .await;
    let ready = repository_condition(&ns.client, &ns.name, "Ready", "HostKeyMismatch").await;
    assert!(
        ready.starts_with("False: the host key of 127.0.0.1"),
        "{ready}"
    );
    repository_condition(&ns.client, &ns.name, "Stalled", "HostKeyMismatch").await;
    let runs: Api<SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    assert!(
        runs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(fleet_objects(&ns).await.is_empty());
    let events = events(&ns.client, &ns.name, "fleet", "HostKeyMismatch").await;
    assert_eq!(events.len(), 1, "one Event, not one per tick: {events:?}");
}

#[tokio::test]
async fn a_newer_commit_supersedes_a_run_awaiting_approval() {
    let fleet = Fleet::in_namespace("supersede")
        .holding(V1)
        .controller_running()
        .await;
    let (ns, repo, v1) = (fleet.ns, fleet.repo, fleet.head);
    let first = run_in_phase(&ns.client, &ns.name, &v1, Phase::AwaitingApproval).await;
    let v2 = repo.commit(&[("fleet.yaml", V2)], "second");
    run_in_phase(&ns.client, &ns.name, &v2, Phase::AwaitingApproval).await;
    let superseded = run_in_phase(&ns.client, &ns.name, &v1, Phase::Superseded).await;
    assert_eq!(superseded.metadata.name, first.metadata.name);

    let name = first.name_any();
    ns.approve(&first).await;
    let refused = wait_for_status(&ns.client, &ns.name, &name, "the refusal", |s| {
        s.refused_approval.is_some()
    })
    .await;
    assert_eq!(
        refused.status.as_ref().unwrap().phase,
        Some(Phase::Superseded)
    );
    let events = events(&ns.client, &ns.name, &name, "ApprovalRefused").await;
    assert!(
        events.iter().any(|e| e.contains("this run is Superseded")),
        "{events:?}"
    );
    assert!(fleet_objects(&ns).await.is_empty());
}

#[tokio::test]
async fn objects_changed_after_planning_fail_as_conflicts_and_their_dependents_are_skipped() {
    // One wave, so that every action is tried in one go (a failed wave would keep the
    // later ones from being tried at all: tests/cluster/rollout.rs).
    let fleet = Fleet::in_namespace("conflict")
        .holding(V1)
        .with_spec(ONE_WAVE.clone())
        .controller_running()
        .await;
    let (ns, repo, v1) = (fleet.ns, fleet.repo, fleet.head);
    let run = run_in_phase(&ns.client, &ns.name, &v1, Phase::AwaitingApproval).await;
    ns.approve(&run).await;
    run_in_phase(&ns.client, &ns.name, &v1, Phase::Applied).await;

    let v2 = repo.commit(&[("fleet.yaml", V2)], "second");
    let run = run_in_phase(&ns.client, &ns.name, &v2, Phase::AwaitingApproval).await;
    // Someone edits tokyo-01 and creates paris by hand after the plan was made.
    let kubectl = |args: &[&str]| {
        let mut all = vec!["-n", ns.name.as_str()];
        all.extend_from_slice(args);
        support::run_tool("kubectl", &all);
    };
    kubectl(&[
        "patch",
        "fleetnode",
        "edge-tokyo-01",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"instanceType":"hand-edited"}}"#,
    ]);
    let paris = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        paris.path(),
        r#"{"apiVersion":"fleet.fleetgate.dev/v1alpha1","kind":"FleetNode","metadata":{"name":"edge-paris-01"},
            "spec":{"template":"x","nodePlatform":"p","architecture":"amd64","region":"r","instanceType":"i","lifecycleClass":"persistent"}}"#,
    )
    .unwrap();
    kubectl(&["create", "-f", paris.path().to_str().unwrap()]);

    ns.approve(&run).await;
    let failed = run_in_phase(&ns.client, &ns.name, &v2, Phase::Failed).await;
    let status = failed.status.unwrap();
    let state = |kind: &str, name: &str| {
        let a = status
            .actions
            .iter()
            .find(|a| a.kind == kind && a.name == name)
            .unwrap_or_else(|| panic!("{kind} {name}"));
        (
            format!("{:?}", a.state),
            a.error.clone().unwrap_or_default(),
        )
    };
    let (s, e) = state("FleetNode", "edge-tokyo-01");
    assert_eq!(s, "Failed");
    assert!(
        e.starts_with("conflict: fleetnode/edge-tokyo-01 was changed since the plan was made"),
        "{e}"
    );
    let (s, e) = state("FleetNode", "edge-paris-01");
    assert_eq!(s, "Failed");
    assert!(e.contains("was created by someone else"), "{e}");
    for (kind, name) in [
        ("SdwanPeer", "edge-fabric.edge-paris-01"),
        ("VirtualIp", "edge-fabric.cdn-frontend"),
        ("SdwanPeer", "edge-fabric.edge-london-01"),
        ("FleetNode", "edge-london-01"),
    ] {
        assert_eq!(state(kind, name).0, "Skipped", "{kind} {name}");
    }
    assert_eq!(state("FleetTemplate", "edge-cdn").0, "Applied");
    assert_eq!(state("FleetNode", "edge-tokyo-02").0, "Applied");
    let progress = status.progress.unwrap();
    assert_eq!(
        (progress.applied, progress.failed, progress.skipped),
        (2, 2, 4)
    );

    let nodes: Api<FleetNode> = Api::namespaced(ns.client.clone(), &ns.name);
    assert_eq!(
        nodes
            .get("edge-tokyo-01")
            .await
            .unwrap()
            .spec
            .resolved
            .instance_type,
        "hand-edited",
        "not overwritten"
    );
    assert!(
        nodes.get_opt("edge-london-01").await.unwrap().is_some(),
        "a skipped delete deletes nothing"
    );
}

#[tokio::test]
async fn a_controller_killed_while_applying_is_replaced_and_the_run_finishes_applying_each_action_once()
 {
    use fleetgate::fleet::synth::{Shape, fleet_yaml};
    let fleet = fleet_yaml(Shape::new(300), 1);
    let Fleet {
        ns,
        head,
        controller: mut first,
        ..
    } = Fleet::in_namespace("restart")
        .holding(fleet.as_bytes())
        .with_spec(ONE_WAVE.clone())
        .controller_flags(&["--apply-concurrency", "1"])
        .controller_running()
        .await;
    let run = run_in_phase(&ns.client, &ns.name, &head, Phase::AwaitingApproval).await;
    let name = run.metadata.name.clone().unwrap();
    let total = run.status.as_ref().unwrap().progress.clone().unwrap().total;
    assert!(total > 600, "{total} actions");
    // A second replica waits on the same Lease.
    let _second = ControllerProcess::start(&ns, &["--apply-concurrency", "4"]);
    ns.approve(&run).await;
    wait_for_status(
        &ns.client,
        &ns.name,
        &name,
        "some but not all actions applied",
        |s| {
            s.progress
                .as_ref()
                .is_some_and(|p| p.applied >= 100 && p.pending > 0)
        },
    )
    .await;
    first.kill();
    let mid = Api::<SyncRun>::namespaced(ns.client.clone(), &ns.name)
        .get(&name)
        .await
        .unwrap();
    assert_eq!(mid.status.as_ref().unwrap().phase, Some(Phase::Applying));

    // The other replica takes the Lease once it expires, resumes and finishes.
    let api: Api<SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    let done = support::eventually(
        "the run to finish after the failover",
        std::time::Duration::from_secs(90),
        || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let run = api.get(&name).await.ok()?;
                run.status
                    .as_ref()?
                    .phase
                    .filter(|p| p.is_finished())
                    .map(|_| run)
            }
        },
    )
    .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Applied), "{:?}", status.message);
    assert_eq!(status.progress.unwrap().applied, total);
    // Applied once: every object was written by one create and never again.
    let nodes: Api<FleetNode> = Api::namespaced(ns.client.clone(), &ns.name);
    let all = nodes.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 300);
    for node in &all {
        assert_eq!(
            node.metadata.generation,
            Some(1),
            "{} was written more than once",
            node.metadata.name.clone().unwrap()
        );
        let writes: Vec<_> = node
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .map(|m| m.operation.clone())
            .collect();
        assert_eq!(writes, [Some("Update".to_string())], "{writes:?}");
    }
}

#[tokio::test]
async fn manual_syncs_replan_and_history_is_limited() {
    let fleet = Fleet::in_namespace("history")
        .holding(V1)
        .with_spec(serde_json::json!({"approval": "Auto", "historyLimit": 2}))
        .controller_running()
        .await;
    let (ns, v1) = (fleet.ns, fleet.head);
    run_in_phase(&ns.client, &ns.name, &v1, Phase::Applied).await;
    let repos: Api<fleetgate::api::GitopsRepository> = Api::namespaced(ns.client.clone(), &ns.name);
    let runs: Api<SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    for request in ["1", "2", "3"] {
        let patch = serde_json::json!({"metadata": {"annotations": {annotations::SYNC_REQUESTED_AT: request}}});
        repos
            .patch(
                "fleet",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .unwrap();
        support::eventually(
            "the manual run to finish",
            std::time::Duration::from_secs(60),
            || {
                let (repos, runs) = (repos.clone(), runs.clone());
                async move {
                    let handled = repos
                        .get("fleet")
                        .await
                        .ok()?
                        .status?
                        .last_handled_sync_request
                        == Some(request.to_string());
                    let list = runs.list(&ListParams::default()).await.ok()?.items;
                    let manual = list.iter().find(|r| {
                        r.annotations()
                            .get("gitops.fleetgate.dev/sync-request")
                            .map(String::as_str)
                            == Some(request)
                    })?;
                    let finished = manual.status.as_ref()?.phase == Some(Phase::NoChanges);
                    (handled && finished).then_some(())
                }
            },
        )
        .await;
    }
    // The two newest finished runs are kept, and so is the run that applied v1 by
    // policy, whatever historyLimit says: it is the drift baseline and the record of
    // what authorized the cluster's state (a NoChanges run is neither).
    let left = support::eventually(
        "history to be pruned to 2 runs and the applied one",
        std::time::Duration::from_secs(30),
        || {
            let runs = runs.clone();
            async move {
                let list = runs.list(&ListParams::default()).await.ok()?.items;
                (list.len() == 3).then_some(list)
            }
        },
    )
    .await;
    let manual = fleetgate::api::syncrun::Trigger::Manual;
    assert_eq!(left.iter().filter(|r| r.spec.trigger == manual).count(), 2);
    let applied: Vec<&SyncRun> = left
        .iter()
        .filter(|r| r.phase() == Some(Phase::Applied))
        .collect();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].spec.revision, v1);
    assert_eq!(
        applied[0].status.as_ref().unwrap().approved_by.as_deref(),
        Some("policy/Auto")
    );
    let plans: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(ns.client.clone(), &ns.name);
    let stored = plans
        .list(&ListParams::default().labels("gitops.fleetgate.dev/syncrun"))
        .await
        .unwrap()
        .items;
    let kept = names(&left);
    for cm in &stored {
        let owner = cm.labels()["gitops.fleetgate.dev/syncrun"].clone();
        assert!(kept.contains(&owner), "{} outlived its run", cm.name_any());
    }
}

#[tokio::test]
async fn a_ten_thousand_node_plan_keeps_the_syncrun_small_and_stores_the_full_plan() {
    use fleetgate::fleet::synth::{Shape, fleet_yaml};
    use std::io::Read;
    let fleet = fleet_yaml(Shape::new(10_000), 1);
    let fleet = Fleet::in_namespace("scale")
        .holding(fleet.as_bytes())
        .controller_running()
        .await;
    let (ns, head) = (fleet.ns, fleet.head);
    let run = run_in_phase(&ns.client, &ns.name, &head, Phase::AwaitingApproval).await;
    let size = serde_json::to_vec(&run).unwrap().len();
    assert!(size < 256 * 1024, "the SyncRun is {size} bytes");
    let status = run.status.unwrap();
    assert!(status.diff_truncated);
    assert_eq!(status.diff.len(), 100);
    assert_eq!(status.actions.len(), 200);
    let total = status.progress.unwrap().total as usize;
    assert_eq!(status.action_states.unwrap().len(), total);
    let at = status.full_plan.unwrap();
    let message = status.message.unwrap();
    assert!(
        message.contains(&format!(
            "kubectl fleet plan {} -n {}",
            run.metadata.name.as_deref().unwrap(),
            ns.name
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "ConfigMap(s) {} that store it",
            at.config_maps.join(", ")
        )),
        "{message}"
    );

    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(ns.client.clone(), &ns.name);
    let mut compressed = Vec::new();
    for name in &at.config_maps {
        let cm = maps.get(name).await.unwrap();
        compressed.extend(cm.binary_data.unwrap()["data.json.gz"].0.clone());
    }
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut json)
        .unwrap();
    let plan: fleetgate::fleet::Plan = serde_json::from_slice(&json).unwrap();
    assert_eq!(plan.actions.len(), total);
    assert_eq!(Some(plan.plan_id), status.plan_id);
    assert!(total > 20_000, "{total}");
}

#[tokio::test]
async fn an_approval_given_before_the_plan_existed_is_refused() {
    let fleet = Fleet::in_namespace("early")
        .holding(V1)
        .controller_running()
        .await;
    let (ns, v1) = (fleet.ns, fleet.head);
    let run = run_in_phase(&ns.client, &ns.name, &v1, Phase::AwaitingApproval).await;
    let name = run.metadata.name.clone().unwrap();
    let full = run.status.clone().unwrap().plan_id.unwrap();
    // Excluding london and approving in the same edit: the approval predates the new plan.
    let runs: Api<SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    let patch = serde_json::json!({"metadata": {"annotations": {
        annotations::EXCLUDE: "fleetnode/edge-london-01",
        annotations::APPROVE: full,
    }}});
    runs.patch(
        &name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    let replanned = wait_for_status(&ns.client, &ns.name, &name, "the refusal", |s| {
        s.plan_id.as_deref() != Some(full.as_str()) && s.refused_approval.is_some()
    })
    .await;
    let status = replanned.status.unwrap();
    assert_eq!(status.phase, Some(Phase::AwaitingApproval));
    assert!(status.message.unwrap().contains("was set before plan"));
    let events = events(&ns.client, &ns.name, &name, "ApprovalRefused").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(fleet_objects(&ns).await.is_empty());

    // Removing it and approving the new plan works.
    let new_plan = status.plan_id.unwrap();
    annotate(&ns.client, &ns.name, &name, annotations::APPROVE, None).await;
    wait_for_status(&ns.client, &ns.name, &name, "the refusal to clear", |s| {
        s.refused_approval.is_none()
    })
    .await;
    ns.approve(&run).plan(&new_plan).await;
    run_in_phase(&ns.client, &ns.name, &v1, Phase::Applied).await;
    assert!(
        !fleet_objects(&ns)
            .await
            .iter()
            .any(|o| o.contains("london"))
    );
}
