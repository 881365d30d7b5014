//! The approval gate against hostile tenants, with the chart installed: users act through
//! impersonation with only the chart's roles (and what Kubernetes' own `edit` grants on
//! ConfigMaps and Secrets, which any tenant editor has), the controller runs with the chart's ServiceAccount token. Each
//! test plays one attack, shows it refused with nothing applied, and the legitimate path
//! still working.

use crate::support;

use std::io::{Read, Write};
use std::time::Duration;

use fleetgate::api::syncrun::Phase;
use fleetgate::api::{GitopsRepository, REPOSITORY_LABEL, SyncRun, annotations, condition};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::chart::{Installed, wait_for_policies};
use support::git::server;
use support::operator::*;
use support::tenant::*;

const V2: &[u8] = include_bytes!("../../examples/fleet-v2.yaml");

fn repository(name: &str, ns: &str, spec: Value) -> GitopsRepository {
    serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "GitopsRepository",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .unwrap()
}

async fn patch_spec(
    client: &Client,
    ns: &str,
    name: &str,
    spec: Value,
) -> Result<GitopsRepository, kube::Error> {
    Api::<GitopsRepository>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": spec})),
        )
        .await
}

/// Waits until the repository's `type_` condition has `reason`.
async fn repository_condition(client: &Client, ns: &str, name: &str, reason: &str) -> Condition {
    let api: Api<GitopsRepository> = Api::namespaced(client.clone(), ns);
    support::eventually(
        &format!("{name} Ready with reason {reason}"),
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let repo = api.get(name).await.ok()?;
                let c = condition(&repo.status?.conditions, "Ready")?.clone();
                (c.reason == reason).then_some(c)
            }
        },
    )
    .await
}

/// Waits until alice's dry-run creation of an Auto repository is refused by the
/// repository policy (RBAC alone refuses differently).
async fn wait_for_repository_policy(alice: &Client, ns: &str, spec: &Value) {
    let repos: Api<GitopsRepository> = Api::namespaced(alice.clone(), ns);
    let mut auto = spec.clone();
    auto["approval"] = json!("Auto");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    wait_for_policies(|| {
        let (repos, body, dry) = (
            repos.clone(),
            repository("probe", ns, auto.clone()),
            dry.clone(),
        );
        async move {
            matches!(repos.create(&dry, &body).await,
                Err(kube::Error::Api(s)) if s.message.contains("approval policy"))
        }
    })
    .await;
}

/// Point 1: an editor cannot loosen whether a person must approve.
#[tokio::test]
async fn editors_cannot_change_the_approval_policy() {
    let t = tenant("gate-policy").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    let repos: Api<GitopsRepository> = Api::namespaced(t.alice.clone(), ns);
    wait_for_repository_policy(&t.alice, ns, &t.ssh_spec()).await;

    // Creating with a looser policy is refused, whichever field loosens it.
    for loosen in [
        json!({"approval": "AutoApplyNonDestructive"}),
        json!({"driftRemediation": "Correct"}),
        json!({"sensitiveFields": []}),
        json!({"prune": false}),
        json!({"deletionPolicy": "Delete"}),
        json!({"rollout": {"progressDeadline": "10s"}}),
    ] {
        let mut spec = t.ssh_spec();
        spec.as_object_mut()
            .unwrap()
            .extend(loosen.as_object().unwrap().clone());
        let (code, message) = refusal(
            repos
                .create(&PostParams::default(), &repository("fleet", ns, spec))
                .await,
        );
        assert_eq!(code, 403, "{loosen}: {message}");
        assert!(
            message.contains(
                "user alice may not create a GitopsRepository with a non-default approval policy"
            ),
            "{message}"
        );
    }
    // The default policy, or a stricter one, is the editor's to create.
    let mut strict = t.ssh_spec();
    strict["driftRemediation"] = json!("Report");
    strict["sensitiveFields"] = json!(["nodePlatform", "architecture", "region"]);
    repos
        .create(&PostParams::default(), &repository("fleet", ns, strict))
        .await
        .expect("alice creates a repository with the default approval policy");

    // Changing any policy field afterwards is refused too; other fields are not.
    for loosen in [
        json!({"approval": "Auto"}),
        json!({"driftRemediation": "Correct"}),
        json!({"sensitiveFields": ["nodePlatform"]}),
        json!({"prune": false}),
        json!({"deletionPolicy": "Delete"}),
        json!({"rollout": {"progressDeadline": "24h"}}),
    ] {
        let (code, message) = refusal(patch_spec(&t.alice, ns, "fleet", loosen.clone()).await);
        assert_eq!(code, 403, "{loosen}: {message}");
        assert!(
            message.contains("user alice may not change the approval policy"),
            "{message}"
        );
    }
    patch_spec(&t.alice, ns, "fleet", json!({"interval": "3s"}))
        .await
        .expect("alice may change the interval");

    // The plan waits for a person, and nothing is applied.
    let v1 = t.repo.commit(&[("fleet.yaml", V1)], "first");
    let run = run_in_phase(&t.admin, ns, &v1, Phase::AwaitingApproval).await;
    assert!(run.status.unwrap().requires_approval);
    assert!(fleet_objects(&t.admin, ns).await.is_empty());

    // An approver may change the policy: the next revision applies by it.
    patch_spec(&t.bob, ns, "fleet", json!({"approval": "Auto"}))
        .await
        .expect("bob may change the approval policy");
    let v2 = t.repo.commit(&[("fleet.yaml", V2)], "second");
    let applied = run_in_phase(&t.admin, ns, &v2, Phase::Applied).await;
    assert_eq!(
        applied.status.unwrap().approved_by.as_deref(),
        Some("policy/Auto")
    );

    // Where plans that apply by themselves come from is guarded too: pointed at another
    // repository, branch or file, an Auto repository would apply whatever is there.
    let other = server().create_repo("gate-policy-other");
    let mut forged = V2.to_vec();
    forged.extend_from_slice(b"\n");
    other.commit(&[("fleet.yaml", &forged)], "unreviewed");
    for source in [
        json!({"url": server().ssh_url(&other)}),
        json!({"ref": {"branch": "unreviewed", "tag": null}}),
        json!({"path": "other/fleet.yaml"}),
    ] {
        let (code, message) = refusal(patch_spec(&t.alice, ns, "fleet", source.clone()).await);
        assert_eq!(code, 403, "{source}: {message}");
        assert!(
            message.contains("user alice may not change where a GitopsRepository"),
            "{message}"
        );
    }
    patch_spec(&t.alice, ns, "fleet", json!({"interval": "4s"}))
        .await
        .expect("alice may still change the interval");
    drop(chart);
}

/// The stored plan, as alice can read it, decompressed.
async fn read_store(client: &Client, ns: &str, name: &str) -> (ConfigMap, Value) {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap();
    let gz = &cm.binary_data.as_ref().unwrap()["data.json.gz"].0;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut json)
        .unwrap();
    (cm, serde_json::from_slice(&json).unwrap())
}

/// Writes `value` back into the ConfigMap, as `client`.
async fn write_store(client: &Client, ns: &str, mut cm: ConfigMap, value: &Value) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&serde_json::to_vec(value).unwrap()).unwrap();
    cm.binary_data
        .as_mut()
        .unwrap()
        .insert("data.json.gz".into(), ByteString(gz.finish().unwrap()));
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .replace(&cm.name_any(), &PostParams::default(), &cm)
        .await
        .expect("alice may write ConfigMaps in her namespace");
}

/// Point 2: a plan (or desired state) rewritten after review is never applied; every
/// action checks again that it touches only its repository's objects.
#[tokio::test]
async fn a_plan_rewritten_after_review_is_refused() {
    let t = tenant("gate-tamper").await;
    let chart = t.install_chart().await;
    let (v1, run) = t.first_plan().await;
    let ns = &t.ns.name;
    let status = run.status.clone().unwrap();

    // alice swaps a node's region in the stored plan, keeping its planId.
    let store = &status.full_plan.as_ref().unwrap().config_maps[0];
    let (cm, mut plan) = read_store(&t.alice, ns, store).await;
    let node = plan["actions"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|a| a["kind"] == "FleetNode")
        .unwrap();
    node["spec"]["region"] = json!("attacker-1");
    assert_eq!(plan["planId"], json!(status.plan_id.clone().unwrap()));
    write_store(&t.alice, ns, cm, &plan).await;

    // bob approves the planId he reviewed; the forged content is refused, nothing applied.
    t.approve(&run).by(&t.bob).await;
    let failed = run_in_phase(&t.admin, ns, &v1, Phase::Failed).await;
    let s = failed.status.unwrap();
    let ready = condition(&s.conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "PlanTampered", "{}", ready.message);
    assert!(s.message.unwrap().contains("nothing is applied"));
    let refusals = events(&t.admin, ns, &failed.metadata.name.unwrap(), "PlanTampered").await;
    assert!(!refusals.is_empty());
    assert!(fleet_objects(&t.admin, ns).await.is_empty());

    // A fresh plan applies as approved, even when alice rewrites the desired state kept
    // for drift detection: that is refused as a baseline instead of measured against.
    let v2 = t.repo.commit(&[("fleet.yaml", V2)], "second");
    let run = run_in_phase(&t.admin, ns, &v2, Phase::AwaitingApproval).await;
    let desired = &run.status.as_ref().unwrap().desired_state[0];
    let (cm, mut state) = read_store(&t.alice, ns, desired).await;
    state.as_array_mut().unwrap().clear();
    write_store(&t.alice, ns, cm, &state).await;
    t.approve(&run).by(&t.bob).await;
    run_in_phase(&t.admin, ns, &v2, Phase::Applied).await;
    let warnings = events(&t.admin, ns, "fleet", "PlanTampered").await;
    assert!(warnings[0].contains("drift is not checked"), "{warnings:?}");
    let repo = Api::<GitopsRepository>::namespaced(t.admin.clone(), ns)
        .get("fleet")
        .await
        .unwrap();
    assert!(
        repo.status.unwrap().drift.is_none(),
        "no drift measured against forged content"
    );

    // Between review and apply, an object the plan updates is handed to another
    // repository: the update is refused, not taken over.
    let v3 = t.repo.commit(&[("fleet.yaml", V1)], "third");
    let run = run_in_phase(&t.admin, ns, &v3, Phase::AwaitingApproval).await;
    let update = run
        .status
        .as_ref()
        .unwrap()
        .diff
        .iter()
        .find(|d| d.operation == "Update")
        .expect("V2 -> V1 updates something")
        .clone();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "fleet.fleetgate.dev",
        "v1alpha1",
        &update.kind,
    ));
    Api::<DynamicObject>::namespaced_with(t.admin.clone(), ns, &ar)
        .patch(
            &update.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {REPOSITORY_LABEL: "other"}}})),
        )
        .await
        .unwrap();
    t.approve(&run).by(&t.bob).await;
    let failed = run_in_phase(&t.admin, ns, &v3, Phase::Failed).await;
    let action = failed
        .status
        .unwrap()
        .actions
        .into_iter()
        .find(|a| a.name == update.name && a.kind == update.kind)
        .unwrap();
    assert!(
        action.error.as_deref().unwrap().starts_with("not owned:"),
        "{action:?}"
    );
    let still = Api::<DynamicObject>::namespaced_with(t.admin.clone(), ns, &ar)
        .get(&update.name)
        .await
        .unwrap();
    assert_eq!(still.labels()[REPOSITORY_LABEL], "other");
    drop(chart);
}

/// Points 3 and 4: a run's spec cannot change, and who approved cannot be forged,
/// rewritten or removed.
#[tokio::test]
async fn runs_and_their_approvers_cannot_be_rewritten() {
    let t = tenant("gate-run").await;
    let chart = t.install_chart().await;
    let (v1, run) = t.first_plan().await;
    let ns = &t.ns.name;
    let name = run.name_any();

    // The spec is fixed at creation, for editors and cluster admins alike. The revision
    // asked for is not committed: a new commit would supersede the run on the next poll.
    let v2 = "d".repeat(40);
    for (who, patch) in [
        (&t.alice, json!({"spec": {"revision": v2}})),
        (&t.alice, json!({"spec": {"trigger": "Drift"}})),
        (&t.admin, json!({"spec": {"revision": v2}})),
    ] {
        let (code, message) = refusal(
            Api::<SyncRun>::namespaced(who.clone(), ns)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        );
        assert_eq!(code, 422, "{message}");
        assert!(
            message.contains("a SyncRun's spec cannot change after it is created"),
            "{message}"
        );
    }

    // Nor can a run be moved to another controller shard by relabelling it.
    let (code, message) = refusal(
        Api::<SyncRun>::namespaced(t.alice.clone(), ns)
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"labels": {"fleetgate.dev/shard": "b"}}})),
            )
            .await,
    );
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("the controller shard"), "{message}");

    // alice cannot name herself (or bob) the approver.
    wait_for_repository_policy(&t.alice, ns, &t.ssh_spec()).await;
    for value in ["alice", "bob"] {
        let (code, message) =
            refusal(try_annotate(&t.alice, ns, &name, annotations::APPROVED_BY, Some(value)).await);
        assert_eq!(code, 403, "{message}");
        assert!(message.contains("cannot be set, changed or removed by hand"));
    }

    // bob approves a stale planId: refused by the controller, but now approved-by=bob.
    t.approve(&run).by(&t.bob).plan("plan-000000000000").await;
    wait_for_status(&t.admin, ns, &name, "the stale approval refused", |s| {
        s.refused_approval.as_deref() == Some("plan-000000000000")
    })
    .await;
    // alice can neither rewrite nor remove who approved.
    for value in [Some("alice"), None] {
        let (code, message) =
            refusal(try_annotate(&t.alice, ns, &name, annotations::APPROVED_BY, value).await);
        assert_eq!(code, 403, "{value:?}: {message}");
    }
    let current = Api::<SyncRun>::namespaced(t.admin.clone(), ns)
        .get(&name)
        .await
        .unwrap();
    assert_eq!(current.annotations()[annotations::APPROVED_BY], "bob");
    assert_eq!(current.status.unwrap().phase, Some(Phase::AwaitingApproval));

    // bob approves the plan he reviewed: the run applies, attributed to him.
    t.approve(&run).by(&t.bob).await;
    let applied = run_in_phase(&t.admin, ns, &v1, Phase::Applied).await;
    assert_eq!(applied.status.unwrap().approved_by.as_deref(), Some("bob"));
    assert_eq!(applied.spec.revision, v1);
    drop(chart);
}

/// Point 4, without the chart's policies: an approval that carries no approved-by is
/// refused unless the controller was told to accept unverified approvals.
#[tokio::test]
async fn an_approval_without_a_verified_approver_is_refused() {
    let t = tenant("gate-unverified").await;
    let _no_policies = support::chart::no_install().await;
    support::install_crds(&t.admin, &fleetgate::api::crds()).await;
    let ns = &t.ns.name;
    let _controller = ControllerProcess::start_as(
        &support::env().kubeconfig,
        &["--namespace", ns, "--lease-namespace", ns],
    );
    let (_, run) = t.first_plan().await;
    approval(&t.admin, &run).await;
    let refused = wait_for_status(&t.admin, ns, &run.name_any(), "the refusal", |s| {
        s.refused_approval.is_some()
    })
    .await;
    let s = refused.status.unwrap();
    assert_eq!(s.phase, Some(Phase::AwaitingApproval));
    assert!(
        s.message
            .unwrap()
            .contains("who approved cannot be verified"),
    );
    assert!(fleet_objects(&t.admin, ns).await.is_empty());
}

/// Points 6 to 8: URLs are confined to what the controller's flags allow, never carry
/// credentials, and never name another tenant's cache.
#[tokio::test]
async fn sources_are_confined_to_what_the_controller_allows() {
    let a = tenant("gate-src-a").await;
    let b = tenant("gate-src-b").await;
    let chart = Installed::new(
        &[&a.ns, &b.ns],
        &[
            "--allow-http-urls",
            "--allow-file-urls",
            "--allowed-git-hosts=127.0.0.1",
        ],
    )
    .await;
    a.bind_users();
    b.bind_users();
    let git = server();

    // Tenant A's private fleet, over SSH: planned, and cached by the controller.
    create_repository(&a.admin, &a.ns.name, "fleet", a.ssh_spec()).await;
    let v1 = a.repo.commit(&[("fleet.yaml", V1)], "private");
    run_in_phase(&a.admin, &a.ns.name, &v1, Phase::AwaitingApproval).await;
    let cache = chart
        .controller
        .work_dir()
        .join(&a.ns.name)
        .join("fleet.git");
    assert!(cache.exists(), "{}", cache.display());

    // Tenant B (alice, an editor there) names A's cache, a git:// URL, a host outside the
    // allow-list, basic auth over http: each refused before any connection.
    let bns = &b.ns.name;
    let basic: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "basic"}, "stringData": {"username": "u", "password": "hunter2"},
    }))
    .unwrap();
    Api::namespaced(b.alice.clone(), bns)
        .create(&PostParams::default(), &basic)
        .await
        .unwrap();
    let attempts = [
        (
            "steal",
            json!({"url": format!("file://{}", cache.display())}),
            "UrlNotAllowed",
            "the controller's own git caches",
        ),
        (
            "plain",
            json!({"url": git.git_url(&a.repo)}),
            "UrlNotAllowed",
            "--allow-git-urls",
        ),
        (
            "metadata",
            json!({"url": "https://169.254.169.254/latest.git"}),
            "HostNotAllowed",
            "169.254.169.254",
        ),
        (
            "cleartext",
            json!({"url": "http://127.0.0.1:1/fleet.git", "secretRef": {"name": "basic"}}),
            "InsecureCredentials",
            "plain http://",
        ),
    ];
    for (name, url, _, _) in &attempts {
        let mut spec = json!({"ref": {"branch": "main"}, "interval": "2s"});
        spec.as_object_mut()
            .unwrap()
            .extend(url.as_object().unwrap().clone());
        create_repository(&b.alice, bns, name, spec).await;
    }
    for (name, _, reason, says) in &attempts {
        let c = repository_condition(&b.admin, bns, name, reason).await;
        assert!(c.message.contains(says), "{name}: {}", c.message);
        assert!(!c.message.contains("hunter2"), "{name}: {}", c.message);
    }
    // Credentials in a URL never even reach the API server's storage.
    let (code, message) = refusal(
        Api::<GitopsRepository>::namespaced(b.alice.clone(), bns)
            .create(
                &PostParams::default(),
                &repository(
                    "token",
                    bns,
                    json!({"url": "https://ghp_secret@127.0.0.1/fleet.git", "ref": {"branch": "main"}}),
                ),
            )
            .await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("may not carry credentials"), "{message}");
    assert!(!message.contains("ghp_secret"), "{message}");
    // The same for a scp-like URL with a password before the host.
    let (code, message) = refusal(
        Api::<GitopsRepository>::namespaced(b.alice.clone(), bns)
            .create(
                &PostParams::default(),
                &repository(
                    "inline",
                    bns,
                    json!({"url": "u:hunter2@127.0.0.1:fleet.git", "ref": {"branch": "main"}}),
                ),
            )
            .await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("may not carry credentials"), "{message}");
    let runs = Api::<SyncRun>::namespaced(b.admin.clone(), bns)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(runs.items.is_empty(), "nothing of A's was planned in B");

    // B's own file:// repository (allowed by flag here) still works.
    let own = git.create_repo("gate-src-own");
    let rev = own.commit(&[("fleet.yaml", V2)], "own");
    create_repository(
        &b.alice,
        bns,
        "own",
        json!({"url": git.file_url(&own), "ref": {"branch": "main"}, "interval": "2s"}),
    )
    .await;
    run_in_phase(&b.admin, bns, &rev, Phase::AwaitingApproval).await;
    drop(chart);
}

/// The applied Drift runs of `ns`.
async fn applied_drift_runs(client: &Client, ns: &str) -> Vec<SyncRun> {
    Api::<SyncRun>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| {
            r.spec.trigger == fleetgate::api::syncrun::Trigger::Drift
                && r.phase() == Some(Phase::Applied)
        })
        .collect()
}

/// Which repository a run belongs to and its place in the repository's order are the
/// controller's: the newest applied run is what drift is measured against, and under
/// `driftRemediation: Correct` what is restored without approval. Were an editor able to
/// move an old run to the front (or another repository's run into this one), the cluster
/// would be rolled back to a revision no one approved it to return to.
#[tokio::test]
async fn editors_cannot_reorder_or_move_runs() {
    let t = tenant("gate-order").await;
    let chart = t.install_chart().await;
    let ns = &t.ns.name;
    let mut spec = t.ssh_spec();
    spec["driftRemediation"] = json!("Correct");
    create_repository(&t.admin, ns, "fleet", spec).await;

    // v1 approved and applied; the cluster drifts and is corrected back to v1.
    let v1 = t.repo.commit(&[("fleet.yaml", V1)], "first");
    let run = run_in_phase(&t.admin, ns, &v1, Phase::AwaitingApproval).await;
    t.approve(&run).by(&t.bob).await;
    run_in_phase(&t.admin, ns, &v1, Phase::Applied).await;
    let victim = fleet_objects(&t.admin, ns).await.remove(0);
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "fleet.fleetgate.dev",
        "v1alpha1",
        &victim.types.as_ref().unwrap().kind,
    ));
    Api::<DynamicObject>::namespaced_with(t.admin.clone(), ns, &ar)
        .delete(&victim.name_any(), &Default::default())
        .await
        .unwrap();
    let corrected = support::eventually("a Drift run applied", Duration::from_secs(60), || {
        let admin = t.admin.clone();
        async move { applied_drift_runs(&admin, ns).await.pop() }
    })
    .await;
    assert_eq!(corrected.spec.revision, v1);

    // v2 approved and applied: the old Drift run of v1 stays in the history.
    let v2 = t.repo.commit(&[("fleet.yaml", V2)], "second");
    let run = run_in_phase(&t.admin, ns, &v2, Phase::AwaitingApproval).await;
    t.approve(&run).by(&t.bob).await;
    run_in_phase(&t.admin, ns, &v2, Phase::Applied).await;

    // alice may neither move the v1 Drift run to the front, nor re-key it, nor hand it
    // (or hide it) to another repository.
    let name = corrected.name_any();
    let runs = Api::<SyncRun>::namespaced(t.alice.clone(), ns);
    for patch in [
        json!({"metadata": {"annotations": {"gitops.fleetgate.dev/sequence": "1000"}}}),
        json!({"metadata": {"annotations": {"gitops.fleetgate.dev/sequence": null}}}),
        json!({"metadata": {"annotations": {"gitops.fleetgate.dev/drift": "forged"}}}),
        json!({"metadata": {"annotations": {"gitops.fleetgate.dev/sync-request": "now"}}}),
        json!({"metadata": {"labels": {REPOSITORY_LABEL: "other"}}}),
        json!({"metadata": {"labels": {REPOSITORY_LABEL: null}}}),
    ] {
        let (code, message) = refusal(
            runs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        );
        assert_eq!(code, 403, "{patch}: {message}");
        assert!(message.contains("set by the controller"), "{message}");
    }
    // The exclude annotation stays the editor's.
    annotate(&t.alice, ns, &name, annotations::EXCLUDE, Some("")).await;

    // Nothing is rolled back: no further Drift run, and v2 stays the baseline.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(applied_drift_runs(&t.admin, ns).await.len(), 1);
    let repo = Api::<GitopsRepository>::namespaced(t.admin.clone(), ns)
        .get("fleet")
        .await
        .unwrap();
    assert!(repo.status.unwrap().drift.is_none());
    drop(chart);
}
