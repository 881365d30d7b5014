//! The Helm chart's pods on a real node (hack/testenv.sh start --node: kubelet, containerd,
//! runc, CNI, kube-proxy), from the image `make image` builds, loaded without a registry:
//! both replicas Ready through the chart's own probes with one Lease holder, the leader
//! not Ready before its caches are synced, a plan approved by the chart's approver role
//! applied by the in-cluster controller over ssh, the leader deleted in the middle of a
//! 1,000-node apply, `helm upgrade` to a second image tag and `helm rollback`, metrics
//! through the chart's Service, `helm uninstall` keeping the CRDs and the fleet objects,
//! `hack/testenv.sh stop` leaving nothing behind, and the lab provider as a pod beside the
//! chart (tests/node/lab_provider.rs).

mod support;

#[path = "node/lab_provider.rs"]
mod lab_provider;

use std::collections::BTreeSet;
use std::time::Duration;

use fleetgate::api::SyncRun;
use fleetgate::api::syncrun::Phase;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::chart::{bind, wait_for_approval_policies};
use support::git::{GitServer, Repo};
use support::node::{image, node, pod_get, run_pod};
use support::operator::{approval, create_repository, run_in_phase, run_in_phase_within};
use support::{TestNamespace, eventually, run_tool};

const V1: &[u8] = include_bytes!("../examples/fleet.yaml");
const V2: &[u8] = include_bytes!("../examples/fleet-v2.yaml");

/// The chart's ClusterRoles and admission policies are named after the release: one
/// install at a time.
static ONE_INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `helm install fleetgate` of the chart on the node, watching one tenant namespace,
/// uninstalled when dropped.
struct Release {
    system: TestNamespace,
    tenant: TestNamespace,
    admin: Client,
    installed: bool,
    _one: tokio::sync::MutexGuard<'static, ()>,
}

impl Release {
    /// Installs the chart with the locally built image and waits (helm --wait) until both
    /// replicas are Ready through the chart's probes.
    async fn install(prefix: &str, values: &[&str]) -> Self {
        let one = ONE_INSTALL.lock().await;
        let image = image();
        let env = support::env();
        let admin = env.client().await;
        support::install_crds(&admin, &fleetgate::api::crds()).await;
        let system = env.namespace(&format!("{prefix}-system")).await;
        let tenant = env.namespace(prefix).await;
        let mut args = vec![
            "install".to_owned(),
            "fleetgate".to_owned(),
            "charts/fleetgate".to_owned(),
            "-n".to_owned(),
            system.name.clone(),
            "--set".to_owned(),
            format!("image.repository={}", image.repository),
            "--set".to_owned(),
            format!("image.tag={}", image.tag),
            "--set".to_owned(),
            format!("watchNamespaces={{{}}}", tenant.name),
            "--set".to_owned(),
            "logFormat=text".to_owned(),
            "--wait".to_owned(),
            "--timeout".to_owned(),
            "3m".to_owned(),
        ];
        args.extend(values.iter().map(|v| v.to_string()));
        helm(&args);
        wait_for_approval_policies(admin.clone(), true).await;
        Self {
            system,
            tenant,
            admin,
            installed: true,
            _one: one,
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), &self.system.name)
    }

    /// The controller's pods (running or not, not being deleted), by name.
    async fn controller_pods(&self) -> Vec<Pod> {
        let lp = ListParams::default().labels("app.kubernetes.io/name=fleetgate");
        self.pods()
            .list(&lp)
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// The holder of the leader Lease, once it is one of the live pods.
    async fn leader(&self) -> String {
        let leases: Api<Lease> = Api::namespaced(self.admin.clone(), &self.system.name);
        eventually(
            "a pod holding the Lease",
            Duration::from_secs(60),
            || async {
                let holder = leases
                    .get("fleetgate-controller")
                    .await
                    .ok()?
                    .spec?
                    .holder_identity?;
                let live = self.controller_pods().await;
                live.iter()
                    .any(|p| p.name_any() == holder)
                    .then_some(holder)
            },
        )
        .await
    }

    /// Waits until the Deployment has `replicas` updated, Ready pods and no others.
    async fn rolled_out(&self, replicas: i32) {
        let deployments: Api<Deployment> = Api::namespaced(self.admin.clone(), &self.system.name);
        eventually(
            "the Deployment rolled out",
            Duration::from_secs(180),
            || async {
                let d = deployments.get("fleetgate").await.ok()?;
                let s = d.status?;
                (s.observed_generation == d.metadata.generation
                    && s.updated_replicas == Some(replicas)
                    && s.ready_replicas == Some(replicas)
                    && s.replicas == Some(replicas))
                .then_some(())
            },
        )
        .await;
    }

    fn uninstall(&mut self) {
        helm(&["uninstall", "fleetgate", "-n", &self.system.name, "--wait"]);
        self.installed = false;
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.installed {
            let _ = std::process::Command::new(support::tool("helm"))
                .args(["uninstall", "fleetgate", "-n", &self.system.name, "--wait"])
                .env("KUBECONFIG", &support::env().kubeconfig)
                .output();
        }
    }
}

fn helm<S: AsRef<str>>(args: &[S]) -> String {
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    run_tool("helm", &args)
}

/// A repository on the node's git server, a Secret with its key and known_hosts, editors
/// and approvers bound with the chart's roles, and a GitopsRepository created by the editor.
async fn tenant_repository(
    release: &Release,
    git: &GitServer,
    name: &str,
    files: &[(&str, &[u8])],
) -> (Repo, String) {
    let ns = &release.tenant.name;
    let repo = git.create_repo(name);
    let head = repo.commit(files, "first");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "fleet-git"},
        "stringData": {"identity": git.identity(), "known_hosts": git.known_hosts()},
    }))
    .unwrap();
    Api::<Secret>::namespaced(release.admin.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    bind(ns, "alice-edits", "fleetgate-editor", "alice");
    bind(ns, "bob-approves", "fleetgate-approver", "bob");
    let alice = support::env()
        .client_as("alice", &["system:authenticated"])
        .await;
    create_repository(
        &alice,
        ns,
        "fleet",
        json!({
            "url": git.ssh_url(&repo), "ref": {"branch": "main"},
            "secretRef": {"name": "fleet-git"}, "interval": "2s",
        }),
    )
    .await;
    (repo, head)
}

/// Bob (the chart's approver role, impersonated) approves the plan of `revision`.
async fn bob_approves(release: &Release, revision: &str) -> SyncRun {
    let ns = &release.tenant.name;
    let run = run_in_phase_within(
        &release.admin,
        ns,
        revision,
        Phase::AwaitingApproval,
        Duration::from_secs(120),
    )
    .await;
    let bob = support::env()
        .client_as("bob", &["system:authenticated"])
        .await;
    approval(&bob, &run).await;
    run
}

/// The addresses the audit log saw `user`'s requests come from.
fn source_ips(user: &str) -> BTreeSet<String> {
    let log = support::env()
        .kubeconfig
        .parent()
        .unwrap()
        .join("audit.log");
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["user"]["username"] == user)
        .flat_map(|e| {
            e["sourceIPs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|ip| ip.as_str().map(str::to_owned))
        })
        .collect()
}

/// The values of `name` (no labels) in a Prometheus text exposition.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let value = l.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

#[tokio::test]
async fn installed_with_helm_on_a_node_the_pods_apply_an_approved_plan_and_serve_metrics() {
    node();
    let mut release = Release::install("node-install", &[]).await;
    let (system, tenant) = (release.system.name.clone(), release.tenant.name.clone());

    // Both replicas Running and Ready through the chart's probes (helm --wait), each
    // answering /healthz and /readyz; exactly one holds the Lease.
    let pods = release.controller_pods().await;
    assert_eq!(pods.len(), 2, "{:?}", support::operator::names(&pods));
    for pod in &pods {
        let status = pod.status.clone().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let ready = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True", "{}", pod.name_any());
        assert_eq!(
            pod_get(&release.admin, &system, &pod.name_any(), 8080, "/readyz").await,
            (200, "ok".to_owned())
        );
        // The image's user, as the chart asks.
        let container = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some(&*format!(
                "fleetgate/fleetgate:{}",
                env!("CARGO_PKG_VERSION")
            ))
        );
    }
    let leader = release.leader().await;
    let mut leaders = 0;
    for pod in &pods {
        let (code, metrics) =
            pod_get(&release.admin, &system, &pod.name_any(), 8080, "/metrics").await;
        assert_eq!(code, 200);
        let leading = sample(&metrics, "fleetgate_leader") == Some(1.0);
        assert_eq!(leading, pod.name_any() == leader, "{}", pod.name_any());
        leaders += usize::from(leading);
    }
    assert_eq!(leaders, 1, "exactly one replica leads");

    // The reference plan, approved by a user with the chart's approver role, applied by
    // the in-cluster controller fetching over ssh (known_hosts) from the node's git server.
    let git = node().git_server();
    let (repo, v1) = tenant_repository(&release, &git, "install", &[("fleet.yaml", V1)]).await;
    bob_approves(&release, &v1).await;
    let applied = run_in_phase(&release.admin, &tenant, &v1, Phase::Applied).await;
    assert_eq!(applied.status.unwrap().approved_by.as_deref(), Some("bob"));
    // Every request of the controller's ServiceAccount came from a pod on the node.
    let sa = format!("system:serviceaccount:{system}:fleetgate");
    let ips = source_ips(&sa);
    assert!(!ips.is_empty());
    assert!(
        ips.iter().all(|ip| ip.starts_with("10.244.0.")),
        "the controller's requests came from {ips:?}"
    );
    let v2 = repo.commit(&[("fleet.yaml", V2)], "second");
    bob_approves(&release, &v2).await;
    run_in_phase(&release.admin, &tenant, &v2, Phase::Applied).await;

    // Metrics through the chart's Service, from a pod (kube-proxy's rules): both
    // replicas answer behind it, and the leader counts the actions it applied.
    let service: Api<Service> = Api::namespaced(release.admin.clone(), &system);
    let ip = service
        .get("fleetgate-metrics")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let script = format!(
        "for i in $(seq 30); do timeout 5 wget -q -O- http://{ip}:8080/metrics || exit 1; done"
    );
    let (ok, scraped) = run_pod(&release.admin, &system, "scraper", json!({}), &script).await;
    assert!(ok, "{scraped}");
    let leader_values: BTreeSet<String> = scraped
        .lines()
        .filter_map(|l| l.strip_prefix("fleetgate_leader "))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        leader_values,
        BTreeSet::from(["0".to_owned(), "1".to_owned()]),
        "30 scrapes through the Service reach both replicas"
    );
    assert!(
        scraped.lines().any(
            |l| l.starts_with("fleetgate_actions_total{result=\"applied\"}") && !l.ends_with(" 0")
        ),
        "{scraped}"
    );

    // helm uninstall leaves the CRDs and the fleet objects, as docs/install.md promises.
    let fleet_before = run_tool(
        "kubectl",
        &["get", "fleetnodes", "-n", &tenant, "-o", "name"],
    );
    assert!(!fleet_before.trim().is_empty());
    release.uninstall();
    eventually(
        "the controller's pods gone",
        Duration::from_secs(60),
        || async { release.controller_pods().await.is_empty().then_some(()) },
    )
    .await;
    let crds: Api<CustomResourceDefinition> = Api::all(release.admin.clone());
    assert!(
        crds.get_opt("syncruns.gitops.fleetgate.dev")
            .await
            .unwrap()
            .is_some()
    );
    let fleet_after = run_tool(
        "kubectl",
        &["get", "fleetnodes", "-n", &tenant, "-o", "name"],
    );
    assert_eq!(fleet_before, fleet_after);
    assert!(
        Api::<SyncRun>::namespaced(release.admin.clone(), &tenant)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|r| r.spec.revision == v2)
    );
}

#[tokio::test]
async fn the_leader_is_not_ready_until_its_caches_are_synced() {
    node();
    let release = Release::install("node-ready", &[]).await;
    let system = release.system.name.clone();
    let first = release.leader().await;

    // Without its Role in the tenant's namespace, a new leader cannot list what it
    // watches there: it must hold the Lease and stay un-Ready, while the replica that
    // stands by (it needs only the Lease) is Ready.
    let bindings: Api<RoleBinding> = Api::namespaced(release.admin.clone(), &release.tenant.name);
    let binding = bindings.get("fleetgate-controller").await.unwrap();
    bindings
        .delete("fleetgate-controller", &DeleteParams::default())
        .await
        .unwrap();
    release
        .pods()
        .delete(&first, &DeleteParams::default())
        .await
        .unwrap();
    let second = eventually("another pod leading", Duration::from_secs(90), || async {
        let leader = release.leader().await;
        (leader != first).then_some(leader)
    })
    .await;
    eventually(
        "the new leader's /readyz refusing",
        Duration::from_secs(30),
        || async {
            let (code, body) = pod_get(&release.admin, &system, &second, 8080, "/readyz").await;
            (code == 503).then_some(body)
        },
    )
    .await;
    let ready_condition = |pod: Pod| {
        pod.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status)
    };
    eventually(
        "the leader's pod not Ready",
        Duration::from_secs(60),
        || async {
            let pod = release.pods().get(&second).await.ok()?;
            (ready_condition(pod)? == "False").then_some(())
        },
    )
    .await;
    // The replica that replaced the deleted pod stands by, Ready.
    eventually("the standby Ready", Duration::from_secs(90), || async {
        let pods = release.controller_pods().await;
        let standby = pods.into_iter().find(|p| p.name_any() != second)?;
        (ready_condition(standby)? == "True").then_some(())
    })
    .await;
    // Still refusing a while later: the caches cannot sync.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        pod_get(&release.admin, &system, &second, 8080, "/readyz")
            .await
            .0,
        503
    );

    // The Role back: the watches list at their next backoff and the same leader turns
    // Ready, without a restart.
    let mut restored = binding.clone();
    restored.metadata = kube::api::ObjectMeta {
        name: binding.metadata.name.clone(),
        labels: binding.metadata.labels.clone(),
        annotations: binding.metadata.annotations.clone(),
        ..Default::default()
    };
    bindings
        .create(&PostParams::default(), &restored)
        .await
        .unwrap();
    eventually(
        "the leader Ready once its Role is back",
        Duration::from_secs(120),
        || async {
            let (code, _) = pod_get(&release.admin, &system, &second, 8080, "/readyz").await;
            (code == 200).then_some(())
        },
    )
    .await;
    assert_eq!(release.leader().await, second);
}

#[tokio::test]
async fn the_leader_deleted_in_the_middle_of_a_large_apply_the_other_replica_finishes_it_once() {
    use fleetgate::fleet::synth::{Shape, fleet_yaml};
    const NODES: usize = 1000;
    node();
    // Slower applies, so that the deletion surely lands in the middle.
    let release = Release::install("node-failover", &["--set", "applyConcurrency=4"]).await;
    let tenant = release.tenant.name.clone();
    let git = node().git_server();
    let fleet = fleet_yaml(Shape::new(NODES), 1);
    let (_repo, head) = tenant_repository(
        &release,
        &git,
        "failover",
        &[("fleet.yaml", fleet.as_bytes())],
    )
    .await;
    let first = release.leader().await;
    bob_approves(&release, &head).await;

    // Part of the nodes are applied: delete the leading pod (as a drain would).
    eventually(
        "a tenth of the nodes applied",
        Duration::from_secs(180),
        || async {
            (support::audited_writes(&tenant, "fleetnodes").created >= NODES / 10).then_some(())
        },
    )
    .await;
    let before = support::audited_writes(&tenant, "fleetnodes").created;
    release
        .pods()
        .delete(&first, &DeleteParams::default())
        .await
        .unwrap();
    let second = eventually(
        "the other replica leading",
        Duration::from_secs(90),
        || async {
            let leader = release.leader().await;
            (leader != first).then_some(leader)
        },
    )
    .await;
    let finished = run_in_phase_within(
        &release.admin,
        &tenant,
        &head,
        Phase::Applied,
        Duration::from_secs(300),
    )
    .await;
    let progress = finished.status.unwrap().progress.unwrap();
    assert_eq!(progress.applied, progress.total);
    assert!(
        before < NODES,
        "the leader was deleted after all {NODES} nodes were applied"
    );
    eprintln!("{first} deleted after {before} of {NODES} nodes; {second} finished the run");

    // Each action once: one create per node, none again, no other write.
    eventually(
        "an audited create of every node",
        Duration::from_secs(30),
        || async {
            (support::audited_writes(&tenant, "fleetnodes").created >= NODES).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        support::audited_writes(&tenant, "fleetnodes"),
        support::Writes {
            created: NODES,
            created_again: 0,
            other: 0,
        }
    );
    let runs = Api::<SyncRun>::namespaced(release.admin.clone(), &tenant)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(runs.len(), 1, "one revision, one run");
}

#[tokio::test]
async fn helm_upgrade_to_a_second_tag_loses_and_repeats_no_run_and_rollback_restores_it() {
    node();
    let first = image();
    let next = support::node::build_image(&first.repository, "next");
    node().import(&next.archive);
    let release = Release::install("node-upgrade", &[]).await;
    let (system, tenant) = (release.system.name.clone(), release.tenant.name.clone());
    let git = node().git_server();
    let (repo, v1) = tenant_repository(&release, &git, "upgrade", &[("fleet.yaml", V1)]).await;
    bob_approves(&release, &v1).await;
    run_in_phase(&release.admin, &tenant, &v1, Phase::Applied).await;

    // A plan approved just before the upgrade is applied across it, once.
    let v2 = repo.commit(&[("fleet.yaml", V2)], "second");
    bob_approves(&release, &v2).await;
    let old_pods: BTreeSet<String> = release
        .controller_pods()
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    helm(&[
        "upgrade",
        "fleetgate",
        "charts/fleetgate",
        "-n",
        &system,
        "--reuse-values",
        "--set",
        "image.tag=next",
        "--wait",
        "--timeout",
        "3m",
    ]);
    release.rolled_out(2).await;
    let pods = release.controller_pods().await;
    for pod in &pods {
        assert!(
            !old_pods.contains(&pod.name_any()),
            "{} was not replaced",
            pod.name_any()
        );
        assert_eq!(
            pod.spec.as_ref().unwrap().containers[0].image.as_deref(),
            Some(&*format!("{}:next", first.repository))
        );
    }
    run_in_phase(&release.admin, &tenant, &v2, Phase::Applied).await;
    let v3 = repo.commit(&[("fleet.yaml", V1)], "third");
    bob_approves(&release, &v3).await;
    run_in_phase(&release.admin, &tenant, &v3, Phase::Applied).await;

    // One run per revision, each applied; the fleet objects written once per change.
    let runs = Api::<SyncRun>::namespaced(release.admin.clone(), &tenant)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let revisions: Vec<&str> = runs.iter().map(|r| r.spec.revision.as_str()).collect();
    for revision in [&v1, &v2, &v3] {
        assert_eq!(
            revisions
                .iter()
                .filter(|r| **r == revision.as_str())
                .count(),
            1,
            "{revisions:?}"
        );
    }
    let writes = support::audited_writes(&tenant, "fleetnodes");
    assert_eq!(writes.created_again, 0, "{writes:?}");

    // helm rollback: the first image again, both replicas Ready.
    helm(&[
        "rollback",
        "fleetgate",
        "1",
        "-n",
        &system,
        "--wait",
        "--timeout",
        "3m",
    ]);
    release.rolled_out(2).await;
    for pod in release.controller_pods().await {
        assert_eq!(
            pod.spec.unwrap().containers[0].image.as_deref(),
            Some(&*format!("{}:{}", first.repository, first.tag))
        );
    }
    let history = helm(&["history", "fleetgate", "-n", &system, "-o", "json"]);
    let history: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(history[2]["description"], "Rollback to 1");
    release.leader().await;
}

#[test]
fn stop_leaves_no_process_mount_network_namespace_iptables_rule_or_cgroup() {
    use support::node::Node;
    let iptables_before = host_iptables();
    let extra = Node::start();
    let id = std::fs::read_to_string(extra.dir.join("id"))
        .unwrap()
        .trim()
        .to_owned();
    let dir = extra.dir.to_string_lossy().into_owned();
    // A pod runs on it, so that there are containers, mounts and a pod network to remove.
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new(support::tool("kubectl"))
            .args(args)
            .env("KUBECONFIG", &extra.kubeconfig)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    kubectl(&[
        "run",
        "sleeper",
        "--image",
        support::node::CLIENT_IMAGE,
        "--image-pull-policy=Never",
        "--restart=Never",
        "--command",
        "--",
        "sleep",
        "3600",
    ]);
    kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/sleeper",
        "--timeout=90s",
    ]);
    assert!(mounts_mentioning(&dir) > 0, "the node mounts under {dir}");
    assert!(!processes_in_cgroup(&id).is_empty());

    extra.stop();
    assert!(!extra.dir.exists(), "{dir} removed");
    assert_eq!(mounts_mentioning(&dir), 0, "mounts under {dir} left");
    assert_eq!(
        processes_in_cgroup(&id),
        Vec::<String>::new(),
        "processes left"
    );
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let netns = String::from_utf8(netns.stdout).unwrap();
    assert!(!netns.contains(&extra.netns), "{netns}");
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8(links.stdout).unwrap();
    assert!(!links.contains(&format!("fgh{id}")), "{links}");
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let cgroup = hierarchy.path().join(format!("fleetgate-{id}"));
        assert!(!cgroup.exists(), "{} left", cgroup.display());
    }
    // The node's iptables rules lived in its network namespace: the host's are as before.
    assert_eq!(host_iptables(), iptables_before);
}

/// The host's iptables rules (counters aside).
fn host_iptables() -> String {
    let out = std::process::Command::new("iptables-save")
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" [").next().unwrap_or(l).to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Mount points under `dir`, in any process's mount namespace.
fn mounts_mentioning(dir: &str) -> usize {
    let mut namespaces = BTreeSet::new();
    let mut count = 0;
    for proc_dir in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(ns) = std::fs::read_link(proc_dir.path().join("ns/mnt")) else {
            continue;
        };
        if !namespaces.insert(ns) {
            continue;
        }
        if let Ok(info) = std::fs::read_to_string(proc_dir.path().join("mountinfo")) {
            count += info.lines().filter(|l| l.contains(dir)).count();
        }
    }
    count
}

/// Processes in the environment's cgroup, in any hierarchy.
fn processes_in_cgroup(id: &str) -> Vec<String> {
    let needle = format!("/fleetgate-{id}");
    let mut out = Vec::new();
    for proc_dir in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cgroup) = std::fs::read_to_string(proc_dir.path().join("cgroup"))
            && cgroup.contains(&needle)
        {
            let cmdline = std::fs::read_to_string(proc_dir.path().join("cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            out.push(format!(
                "{} {cmdline}",
                proc_dir.file_name().to_string_lossy()
            ));
        }
    }
    out
}

#[tokio::test]
async fn with_the_network_policy_only_the_listed_scrapers_reach_the_metrics_port() {
    node();
    let scrapers = r#"networkPolicy.metricsFrom=[{"podSelector":{"matchLabels":{"app.kubernetes.io/name":"prometheus"}}}]"#;
    let release = Release::install(
        "node-policy",
        &[
            "--set",
            "networkPolicy.enabled=true",
            "--set-json",
            scrapers,
        ],
    )
    .await;
    let system = release.system.name.clone();
    let service: Api<Service> = Api::namespaced(release.admin.clone(), &system);
    let service_ip = service
        .get("fleetgate-metrics")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let pod_ips: Vec<String> = release
        .controller_pods()
        .await
        .into_iter()
        .filter_map(|p| p.status?.pod_ip)
        .collect();
    assert_eq!(pod_ips.len(), 2);
    // Each address answers within `tries` seconds, or the script fails. A new pod takes a
    // moment to enter the policy's address sets.
    let scrape = |tries: u32| {
        let mut script = String::new();
        for ip in std::iter::once(&service_ip).chain(&pod_ips) {
            script.push_str(&format!(
                "ok=; for i in $(seq {tries}); do \
                   if timeout 2 wget -q -O /dev/null http://{ip}:8080/metrics; then ok=1; break; fi; \
                   sleep 1; done; [ -n \"$ok\" ] || {{ echo {ip} unreachable; exit 1; }}; echo {ip} reached; "
            ));
        }
        script
    };
    // kube-router programs the policy a moment after the chart installs it: first an
    // unlisted client, asking every second until none of the addresses answers it (the
    // policy enforced), then the listed scraper, which must still reach every one.
    let targets = std::iter::once(&service_ip)
        .chain(&pod_ips)
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let refused = format!(
        "for round in $(seq 60); do reached=0; \
           for ip in {targets}; do \
             if timeout 2 wget -q -O /dev/null http://$ip:8080/metrics; then \
               echo \"$ip reached in round $round\"; reached=1; fi; done; \
           [ $reached = 0 ] && {{ echo \"none reached in round $round\"; exit 0; }}; \
           sleep 1; done; exit 1"
    );
    let (ok, out) = run_pod(
        &release.admin,
        &system,
        "intruder",
        json!({"app.kubernetes.io/name": "intruder"}),
        &refused,
    )
    .await;
    assert!(
        ok,
        "an unlisted client still reached the metrics port after a minute: {out}"
    );
    let (ok, out) = run_pod(
        &release.admin,
        &system,
        "prometheus",
        json!({"app.kubernetes.io/name": "prometheus"}),
        &scrape(30),
    )
    .await;
    assert!(ok, "the listed scraper: {out}");
    // The kubelet's probes are not subject to the policy: both replicas stay Ready.
    release.rolled_out(2).await;
}
