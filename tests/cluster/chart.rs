//! The Helm chart against the real control plane (RBAC on): install, the controller
//! running with the chart's ServiceAccount token, who may approve and who approved,
//! tenant isolation, the role compared with the API calls the controller made, and
//! uninstall keeping the CRDs.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use fleetgate::api::syncrun::Phase;
use fleetgate::api::{GitopsRepository, SyncRun, annotations};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::json;
use support::chart::{bind, helm_install, service_account_kubeconfig};
use support::git::server;
use support::operator::*;
use support::run_tool;

const V1: &[u8] = include_bytes!("../../examples/fleet.yaml");
const V2: &[u8] = include_bytes!("../../examples/fleet-v2.yaml");

#[test]
fn the_chart_lints_clean_and_its_generated_files_are_fresh() {
    let lint = run_tool(
        "helm",
        &["lint", "charts/fleetgate", "--set", "watchNamespaces={a}"],
    );
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let out = std::process::Command::new("hack/generate.sh")
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = env!("CARGO_PKG_VERSION");
    for chart in ["charts/fleetgate", "charts/fleetgate-lab-provider"] {
        let text = std::fs::read_to_string(format!("{chart}/Chart.yaml")).unwrap();
        assert!(
            text.contains(&format!("version: {version}\n")),
            "{chart}: Chart.yaml version follows Cargo.toml"
        );
        assert!(
            text.contains(&format!("appVersion: \"{version}\"")),
            "{chart}: appVersion follows Cargo.toml"
        );
    }

    // The lab provider's chart: clean with its one required value, refused without it
    // (the schema names the value), and bound to the provider role in the served
    // namespace only.
    let lint = run_tool(
        "helm",
        &[
            "lint",
            "charts/fleetgate-lab-provider",
            "--set",
            "namespace=fleet",
        ],
    );
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let missing = std::process::Command::new(support::tool("helm"))
        .args(["template", "lab", "charts/fleetgate-lab-provider"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("at '/namespace'"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let lab = run_tool(
        "helm",
        &[
            "template",
            "lab",
            "charts/fleetgate-lab-provider",
            "-n",
            "fleetgate-system",
            "--set",
            "namespace=fleet",
        ],
    );
    assert!(
        lab.contains(
            "kind: RoleBinding\nmetadata:\n  name: lab-fleetgate-lab-provider\n  namespace: fleet\n"
        ),
        "{lab}"
    );
    assert!(!lab.contains("kind: ClusterRoleBinding"), "{lab}");
}

/// The objects of `helm template` with `args`, of `kind`.
fn rendered(kind: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec![
        "template",
        "fleetgate",
        "charts/fleetgate",
        "--kube-version",
        "1.36.3",
    ];
    all.extend_from_slice(args);
    let out = run_tool("helm", &all);
    out.split("\n---")
        .filter_map(|doc| serde_yaml_ng::from_str::<serde_json::Value>(doc).ok())
        .filter(|v| v["kind"] == kind)
        .collect()
}

#[test]
fn the_network_policy_admits_only_the_named_scrapers_and_flags_follow_the_values() {
    let scrapers = r#"networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]"#;
    let policy = rendered(
        "NetworkPolicy",
        &[
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "receiver.enabled=true",
            "--set-json",
            scrapers,
        ],
    );
    let ingress = policy[0]["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 2, "{ingress:?}");
    assert_eq!(ingress[0]["ports"][0]["port"], "http-metrics");
    assert_eq!(
        ingress[0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(ingress[1]["ports"][0]["port"], "http-webhook");
    assert!(ingress[1].get("from").is_none(), "webhooks from anywhere");
    // Nobody named: nobody scrapes.
    let closed = rendered("NetworkPolicy", &["--set", "networkPolicy.enabled=true"]);
    assert!(
        closed[0]["spec"]["ingress"].is_null(),
        "{:?}",
        closed[0]["spec"]
    );

    let args = |extra: &[&str]| -> Vec<String> {
        let d = rendered("Deployment", extra);
        serde_json::from_value(d[0]["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap()
    };
    let default = args(&[]);
    assert!(
        !default.iter().any(|a| a.starts_with("--allow")),
        "{default:?}"
    );
    let open = args(&[
        "--set",
        "sources.allowFile=true",
        "--set",
        "sources.allowHttp=true",
        "--set",
        "sources.allowedHosts={git.example.com,*.corp.example}",
    ]);
    for flag in [
        "--allow-file-urls",
        "--allow-http-urls",
        "--allowed-git-hosts=git.example.com,*.corp.example",
    ] {
        assert!(open.iter().any(|a| a == flag), "{flag} in {open:?}");
    }
    assert!(!open.iter().any(|a| a == "--allow-git-urls"));
    // The bounds of plannings and of what tenants aim.
    for flag in [
        "--max-fleet-mib=16",
        "--max-concurrent-plannings=4",
        "--max-concurrent-plannings-per-namespace=2",
    ] {
        assert!(default.iter().any(|a| a == flag), "{flag} in {default:?}");
    }
    assert!(!default.iter().any(|a| a.starts_with("--refuse-private")));
    let outbound = args(&[
        "--set",
        "outbound.refusePrivateAddresses=true",
        "--set",
        "outbound.allowedNotificationHosts={hooks.slack.com}",
    ]);
    for flag in [
        "--refuse-private-addresses",
        "--allowed-notification-hosts=hooks.slack.com",
    ] {
        assert!(outbound.iter().any(|a| a == flag), "{flag} in {outbound:?}");
    }
    let unverified = args(&["--set", "approval.allowUnverified=true"]);
    assert!(
        unverified
            .iter()
            .any(|a| a == "--allow-unverified-approvals")
    );
}

/// The five fleet kinds go through one code path; they are compared as one.
fn kind_class(group: &str, resource: &str) -> String {
    if group == "fleet.fleetgate.dev" {
        "(fleet kinds)".into()
    } else {
        resource.to_owned()
    }
}

/// (apiGroup, resource[/subresource], verb) for every rule.
fn granted(rules: &[k8s_openapi::api::rbac::v1::PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    out.insert((g.clone(), kind_class(g, res), v.clone()));
                }
            }
        }
    }
    out
}

/// What `user` asked the API server, from its audit log, and any request it was refused.
fn audited(user: &str) -> (BTreeSet<(String, String, String)>, Vec<String>) {
    let log = support::env()
        .kubeconfig
        .parent()
        .unwrap()
        .join("audit.log");
    let mut used = BTreeSet::new();
    let mut refused = Vec::new();
    for line in std::fs::read_to_string(log).unwrap().lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["user"]["username"] != user {
            continue;
        }
        let Some(obj) = e["objectRef"].as_object() else {
            continue;
        };
        let mut resource = obj
            .get("resource")
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_owned();
        if let Some(sub) = obj.get("subresource").and_then(|s| s.as_str()) {
            resource = format!("{resource}/{sub}");
        }
        let group = obj
            .get("apiGroup")
            .and_then(|g| g.as_str())
            .unwrap_or_default()
            .to_owned();
        let verb = e["verb"].as_str().unwrap().to_owned();
        if e["responseStatus"]["code"] == 403 {
            refused.push(format!("{verb} {group}/{resource}"));
        }
        let class = kind_class(&group, &resource);
        // A server-side apply that makes the object is authorized as a create too.
        if verb == "patch" && e["responseStatus"]["code"] == 201 {
            used.insert((group.clone(), class.clone(), "create".to_owned()));
        }
        used.insert((group, class, verb));
    }
    (used, refused)
}

#[tokio::test]
async fn installed_with_helm_the_controller_runs_with_least_privilege_and_approvals_name_the_user()
{
    let env = support::env();
    let admin = env.client().await;
    let system = env.namespace("fleetgate-system").await;
    let tenant = env.namespace("tenant-a").await;
    let other = env.namespace("tenant-b").await;
    // One install at a time in the whole test process: the release's cluster-scoped
    // roles and policies would collide with another test's.
    let _one = support::chart::no_install().await;
    support::install_crds(&admin, &fleetgate::api::crds()).await;
    let mark = support::audit_mark();

    let _release = helm_install(&system.name, &[&tenant.name]);
    // The API server takes up new admission policies a moment after they are created:
    // what editors may not do below is tried once they are in force.
    support::chart::wait_for_approval_policies(admin.clone(), true).await;
    // No kubelet runs here, so pods never start: assert on the objects.
    let deployment = Api::<Deployment>::namespaced(admin.clone(), &system.name)
        .get("fleetgate")
        .await
        .unwrap();
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    let security = pod.security_context.unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let container = &pod.containers[0];
    let cs = container.security_context.clone().unwrap();
    assert_eq!(cs.read_only_root_filesystem, Some(true));
    assert_eq!(cs.allow_privilege_escalation, Some(false));
    assert_eq!(cs.capabilities.unwrap().drop.unwrap(), ["ALL"]);
    assert_eq!(
        container
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/healthz")
    );
    let args = container.args.clone().unwrap();
    assert!(
        args.contains(&format!("--namespace={}", tenant.name)),
        "{args:?}"
    );
    let role = Api::<Role>::namespaced(admin.clone(), &tenant.name)
        .get("fleetgate-controller")
        .await
        .unwrap();
    assert!(
        Api::<Role>::namespaced(admin.clone(), &other.name)
            .get_opt("fleetgate-controller")
            .await
            .unwrap()
            .is_none()
    );
    let leader = Api::<Role>::namespaced(admin.clone(), &system.name)
        .get("fleetgate-leader-election")
        .await
        .unwrap();
    let clusterroles: Api<ClusterRole> = Api::all(admin.clone());
    let viewer = clusterroles.get("fleetgate-viewer").await.unwrap();
    assert_eq!(
        viewer
            .labels()
            .get("rbac.authorization.k8s.io/aggregate-to-view")
            .map(String::as_str),
        Some("true")
    );
    let approver = clusterroles.get("fleetgate-approver").await.unwrap();
    assert!(
        !approver
            .labels()
            .keys()
            .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate"))
    );

    // The controller, as the chart's ServiceAccount.
    let dir = tempfile::tempdir().unwrap();
    let sa_config = service_account_kubeconfig(&admin, &system.name, "fleetgate", dir.path()).await;
    let _controller = ControllerProcess::start_as(
        &sa_config,
        &[
            "--namespace",
            &tenant.name,
            "--lease-namespace",
            &system.name,
            // The team's receiver below is plain http:// on loopback.
            "--allow-http-urls",
        ],
    );

    bind(&tenant.name, "alice-edits", "fleetgate-editor", "alice");
    bind(&tenant.name, "bob-approves", "fleetgate-approver", "bob");
    let alice = env.client_as("alice", &["system:authenticated"]).await;
    let bob = env.client_as("bob", &["system:authenticated"]).await;

    let git = server();
    let repo = git.create_repo("chart");
    let v1 = repo.commit(&[("fleet.yaml", V1)], "first");
    ssh_secret(&admin, &tenant.name, "fleet-git", git.known_hosts()).await;
    // A team's notification target: the controller claims and delivers with the chart's
    // role (syncruns patch, the target's status).
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(hook, app).await });
    let hook_secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "team-hook"},
        "stringData": {"address": format!("http://{hook_addr}/"), "token": "t"},
    }))
    .unwrap();
    Api::namespaced(admin.clone(), &tenant.name)
        .create(&Default::default(), &hook_secret)
        .await
        .unwrap();
    let target: fleetgate::api::NotificationTarget = serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "NotificationTarget",
        "metadata": {"name": "team-hook"},
        "spec": {"type": "Webhook", "secretRef": {"name": "team-hook"}, "events": ["Applied"]},
    }))
    .unwrap();
    let targets =
        Api::<fleetgate::api::NotificationTarget>::namespaced(alice.clone(), &tenant.name);
    targets.create(&Default::default(), &target).await.unwrap();
    create_repository(&alice, &tenant.name, "fleet", json!({
        "url": git.ssh_url(&repo), "ref": {"branch": "main"}, "secretRef": {"name": "fleet-git"},
        "interval": "2s", "historyLimit": 1,
    }))
    .await;
    let run = run_in_phase(&admin, &tenant.name, &v1, Phase::AwaitingApproval).await;
    let name = run.name_any();

    // An editor cannot approve: the API server refuses with the policy's message.
    let err = approval(&alice, &run).try_send().await.unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 403, "{}", status.message);
    assert!(
        status
            .message
            .contains("user alice may not approve, reject or schedule SyncRuns"),
        "{}",
        status.message
    );
    // Nor silence or repeat a notification by writing the controller's record.
    let err = try_annotate(
        &alice,
        &tenant.name,
        &name,
        "gitops.fleetgate.dev/notified",
        Some("Applied"),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("only the controller writes it"),
        "{err}"
    );
    // Nor can anyone write who approved.
    let err = try_annotate(
        &alice,
        &tenant.name,
        &name,
        annotations::APPROVED_BY,
        Some("bob"),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot be set, changed or removed by hand"),
        "{err}"
    );

    // An approver can, and the run records that user.
    approval(&bob, &run)
        .try_send()
        .await
        .expect("bob may approve");
    let applied = run_in_phase(&admin, &tenant.name, &v1, Phase::Applied).await;
    let applied_v1 = applied.name_any();
    assert_eq!(applied.status.unwrap().approved_by.as_deref(), Some("bob"));

    // The next revision deletes and updates; approving it exercises every permission.
    let v2 = repo.commit(&[("fleet.yaml", V2)], "second");
    let run = run_in_phase(&admin, &tenant.name, &v2, Phase::AwaitingApproval).await;
    approval(&bob, &run).await;
    let applied_v2 = run_in_phase(&admin, &tenant.name, &v2, Phase::Applied)
        .await
        .name_any();
    // Two syncs of the same revision change nothing. With historyLimit 1 the older of
    // them is pruned (its run and stored desired state deleted), while both approved
    // runs stay: the record of who approved outlives whatever an editor sets
    // historyLimit to.
    let runs = Api::<SyncRun>::namespaced(admin.clone(), &tenant.name);
    let repos = Api::<GitopsRepository>::namespaced(alice.clone(), &tenant.name);
    let mut unchanged = Vec::new();
    for request in ["1", "2"] {
        let ask = json!({"metadata": {"annotations": {annotations::SYNC_REQUESTED_AT: request}}});
        repos
            .patch("fleet", &Default::default(), &kube::api::Patch::Merge(&ask))
            .await
            .unwrap();
        let run = support::eventually(
            "the sync to change nothing",
            Duration::from_secs(60),
            || {
                let runs = runs.clone();
                async move {
                    runs.list(&ListParams::default())
                        .await
                        .ok()?
                        .items
                        .into_iter()
                        .find(|r| {
                            r.annotations()
                                .get("gitops.fleetgate.dev/sync-request")
                                .map(String::as_str)
                                == Some(request)
                                && r.phase() == Some(Phase::NoChanges)
                        })
                }
            },
        )
        .await;
        unchanged.push(run.name_any());
    }
    let kept = support::eventually(
        "history pruned to the approved runs and the newest",
        Duration::from_secs(30),
        || {
            let runs = runs.clone();
            async move {
                let list = runs.list(&ListParams::default()).await.ok()?.items;
                (list.len() == 3).then_some(list)
            }
        },
    )
    .await;
    let kept = names(&kept);
    assert!(!kept.contains(&unchanged[0]), "{kept:?}");
    assert!(kept.contains(&unchanged[1]), "{kept:?}");
    for approved in [&applied_v1, &applied_v2] {
        assert!(kept.contains(approved), "{approved} was pruned: {kept:?}");
    }

    // Tenant isolation: the controller wrote fleet objects in the watched namespace only
    // (other tests leave theirs elsewhere on this control plane), and other tenants'
    // repositories are not served.
    let sa = format!("system:serviceaccount:{}:fleetgate", system.name);
    let outside: Vec<_> = support::audited_writes_since(mark, support::FLEET_RESOURCES)
        .into_iter()
        .filter(|(ns, write)| write.user == sa && *ns != tenant.name)
        .collect();
    assert!(
        outside.is_empty(),
        "fleet objects written outside {}: {outside:?}",
        tenant.name
    );
    let out = run_tool(
        "kubectl",
        &[
            "get",
            "fleet",
            "-n",
            &tenant.name,
            "-l",
            "gitops.fleetgate.dev/repository",
            "-o",
            "name",
        ],
    );
    assert_eq!(out.lines().count(), 10);
    create_repository(
        &admin,
        &other.name,
        "fleet",
        json!({"url": git.ssh_url(&repo), "ref": {"branch": "main"}}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        Api::<SyncRun>::namespaced(admin.clone(), &other.name)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let untouched = Api::<GitopsRepository>::namespaced(admin.clone(), &other.name)
        .get("fleet")
        .await
        .unwrap();
    // Only the API server's default: the controller never wrote to it.
    assert!(
        untouched
            .status
            .is_none_or(|s| s.observed_generation == Some(-1) && s.conditions.is_empty())
    );

    support::eventually("the target told", Duration::from_secs(30), || {
        let targets = targets.clone();
        async move {
            let status = targets.get("team-hook").await.ok()?.status?;
            let ready = fleetgate::api::condition(&status.conditions, "Ready")?;
            (ready.status == "True").then_some(())
        }
    })
    .await;

    // The role is exactly what the controller used: nothing refused, nothing unused.
    let (used, refused) = audited(&sa);
    assert!(
        refused.is_empty(),
        "the controller was refused: {refused:?}"
    );
    let mut rules = role.rules.clone().unwrap_or_default();
    rules.extend(leader.rules.clone().unwrap_or_default());
    let governance = clusterroles
        .get("fleetgate-governance-reader")
        .await
        .unwrap();
    rules.extend(governance.rules.clone().unwrap_or_default());
    let granted = granted(&rules);
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(missing.is_empty(), "used but not granted: {missing:?}");
    // The Event recorder patches an Event only when the same one repeats; repositories
    // are patched only for the finalizer of deletionPolicy Delete (tests/cluster/deletion.rs);
    // a fleet object is read only when the watch cache was behind (a 409, or a refusal
    // to confirm) and to confirm drift (tests/cluster/operator.rs, tests/cluster/drift.rs).
    let rarely_used = BTreeSet::from([
        (
            "events.k8s.io".to_string(),
            "events".to_string(),
            "patch".to_string(),
        ),
        (
            "fleet.fleetgate.dev".to_string(),
            "(fleet kinds)".to_string(),
            "get".to_string(),
        ),
        (
            "gitops.fleetgate.dev".to_string(),
            "gitopsrepositories".to_string(),
            "patch".to_string(),
        ),
        // Runs are patched (their approve annotation removed) only toward a quorum of a
        // GovernancePolicy, and a policy's status only when one exists (tests/cluster/governance.rs).
        (
            "gitops.fleetgate.dev".to_string(),
            "syncruns".to_string(),
            "patch".to_string(),
        ),
        (
            "gitops.fleetgate.dev".to_string(),
            "syncruns".to_string(),
            "approve".to_string(),
        ),
        (
            "gitops.fleetgate.dev".to_string(),
            "governancepolicies/status".to_string(),
            "patch".to_string(),
        ),
        // Grants are read only for a repository that promotes from another namespace
        // (tests/cluster/promotion.rs).
        (
            "gitops.fleetgate.dev".to_string(),
            "promotiongrants".to_string(),
            "list".to_string(),
        ),
        // Flux sources are read only by repositories that name one (tests/cluster/flux.rs).
        (
            "source.toolkit.fluxcd.io".to_string(),
            "gitrepositories".to_string(),
            "get".to_string(),
        ),
        (
            "source.toolkit.fluxcd.io".to_string(),
            "ocirepositories".to_string(),
            "get".to_string(),
        ),
    ]);
    let unused: Vec<_> = granted
        .difference(&used)
        .filter(|g| !rarely_used.contains(*g))
        .collect();
    assert!(unused.is_empty(), "granted but never used: {unused:?}");

    // helm uninstall keeps the CRDs (and so every object).
    run_tool("helm", &["uninstall", "fleetgate", "-n", &system.name]);
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    assert!(
        crds.get_opt("syncruns.gitops.fleetgate.dev")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        clusterroles
            .get_opt("fleetgate-approver")
            .await
            .unwrap()
            .is_none()
    );
}
