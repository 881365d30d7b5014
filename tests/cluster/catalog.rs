//! Module lifecycle pins through the chart's roles: only a platform owner writes the
//! ModuleCatalog; plans resolve `nginx@blessed` to the catalog's version, show both and
//! write the version into the fleet objects; blessing a new version starts a gated plan
//! (trigger Catalog) in the repository that pins `@blessed` and none in one that pins a
//! version; a pin the catalog cannot resolve is a located error, planned again once the
//! catalog lists it.

use std::time::Duration;

use crate::support;

use fleetgate::api::syncrun::{Phase, SyncRun, Trigger};
use fleetgate::api::{FleetNode, ModuleCatalog, condition};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use support::chart::Installed;
use support::operator::{approval, create_repository, events, try_annotate};
use support::tenant::{Tenant, refusal, tenant};

const WAIT: Duration = Duration::from_secs(90);

/// A fleet of one node `host` whose template pins `pins`.
fn fleet(host: &str, pins: &[&str]) -> Vec<u8> {
    format!(
        "version: 1\naccount: acme\ntemplates:\n  - name: {host}-base\n    node_platform: ubuntu-24.04-amd64\n    architecture: amd64\n    modules: [{}]\nnodes:\n  - hostname: {host}\n    template: {host}-base\n    region: eu-west-1\n    instance_type: t3-small\n    lifecycle_class: persistent\n",
        pins.join(", ")
    )
    .into_bytes()
}

/// The catalog of this test's controller (it reads only catalogs labelled for it).
fn catalog(name: &str, ns: &str, modules: Value) -> ModuleCatalog {
    serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "ModuleCatalog",
        "metadata": {"name": name, "labels": {"fleetgate.test/catalog-for": ns}},
        "spec": {"modules": modules},
    }))
    .unwrap()
}

/// A cluster-scoped catalog and the platform owner's binding, removed when the test ends.
struct Platform {
    catalog: String,
    binding: String,
}

impl Drop for Platform {
    fn drop(&mut self) {
        // Cluster-scoped: not removed with the test's namespace.
        for (kind, name) in [
            ("modulecatalog", &self.catalog),
            ("clusterrolebinding", &self.binding),
        ] {
            let _ = std::process::Command::new(support::tool("kubectl"))
                .args(["delete", kind, name, "--ignore-not-found"])
                .env("KUBECONFIG", &support::env().kubeconfig)
                .output();
        }
    }
}

/// The newest run of `repository` started by `trigger` once it is in `phase`.
async fn run_of(t: &Tenant, repository: &str, trigger: Trigger, phase: Phase) -> SyncRun {
    let api = Api::<SyncRun>::namespaced(t.admin.clone(), &t.ns.name);
    let what = format!("a {trigger:?} run of {repository} in phase {phase:?}");
    support::eventually(&what, WAIT, || async {
        let runs = api.list(&ListParams::default()).await.ok()?.items;
        runs.into_iter().find(|r| {
            r.spec.repository == repository && r.spec.trigger == trigger && r.phase() == Some(phase)
        })
    })
    .await
}

async fn runs_of(t: &Tenant, repository: &str) -> Vec<SyncRun> {
    let api = Api::<SyncRun>::namespaced(t.admin.clone(), &t.ns.name);
    let runs = api.list(&ListParams::default()).await.unwrap().items;
    runs.into_iter()
        .filter(|r| r.spec.repository == repository)
        .collect()
}

/// bob approves `run`; it ends Applied.
async fn approved(t: &Tenant, run: &SyncRun) {
    approval(&t.bob, run)
        .once_stamped()
        .try_send()
        .await
        .unwrap();
    let api = Api::<SyncRun>::namespaced(t.admin.clone(), &t.ns.name);
    support::eventually("the run applied", WAIT, || async {
        let r = api.get(&run.name_any()).await.ok()?;
        (r.phase() == Some(Phase::Applied)).then_some(())
    })
    .await;
}

async fn modules_of(client: &Client, ns: &str, node: &str) -> Vec<String> {
    let node = Api::<FleetNode>::namespaced(client.clone(), ns)
        .get(node)
        .await
        .unwrap();
    node.spec.resolved.modules.to_vec()
}

fn pins(run: &SyncRun) -> Vec<String> {
    let status = run.status.as_ref().unwrap();
    status.modules.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn blessing_a_version_plans_that_upgrade_where_blessed_is_pinned_and_nowhere_else() {
    let t = tenant("catalog").await;
    let ns = &t.ns.name;
    let selector = format!("--module-catalog-selector=fleetgate.test/catalog-for={ns}");
    let _chart = Installed::new(&[&t.ns], &[&selector]).await;
    t.bind_users();
    let platform = Platform {
        catalog: format!("{ns}-platform"),
        binding: format!("{ns}-pat-owns-catalogs"),
    };
    support::run_tool(
        "kubectl",
        &[
            "create",
            "clusterrolebinding",
            &platform.binding,
            "--clusterrole=fleetgate-catalog-owner",
            "--user=pat",
        ],
    );
    let env = support::env();
    let pat = env.client_as("pat", &["system:authenticated"]).await;
    let modules = json!([
        {"name": "nginx", "versions": ["1.26.2", "1.27.0"], "blessed": "1.26.2", "live": "1.27.0"},
        {"name": "chrony", "versions": ["1.4.3"], "blessed": "1.4.3"},
    ]);
    let wanted = catalog(&platform.catalog, ns, modules);
    // A tenant's editor and approver cannot write the platform's catalog; its owner can.
    for tenant_user in [&t.alice, &t.bob] {
        let api = Api::<ModuleCatalog>::all(tenant_user.clone());
        let (code, _) = refusal(api.create(&PostParams::default(), &wanted).await);
        assert_eq!(code, 403);
    }
    let catalogs = Api::<ModuleCatalog>::all(pat.clone());
    catalogs
        .create(&PostParams::default(), &wanted)
        .await
        .unwrap();
    // The API server refuses a blessing of a version the catalog does not offer.
    let unknown =
        json!({"spec": {"modules": [{"name": "nginx", "versions": ["1.26.2"], "blessed": "9.9"}]}});
    let (code, message) = refusal(
        catalogs
            .patch(
                &platform.catalog,
                &PatchParams::default(),
                &Patch::Merge(&unknown),
            )
            .await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(
        message.contains("blessed must be one of versions"),
        "{message}"
    );

    // Two repositories over one git repository: one pins @blessed, one a version.
    let mut spec = t.ssh_spec();
    spec["path"] = json!("blessed/fleet.yaml");
    create_repository(&t.admin, ns, "blessed", spec.clone()).await;
    spec["path"] = json!("exact/fleet.yaml");
    create_repository(&t.admin, ns, "exact", spec).await;
    let blessed_v1 = fleet("web-1", &["nginx@blessed", "chrony@1.4.3"]);
    let exact_v1 = fleet("web-2", &["nginx@1.26.2", "chrony@1.4.3"]);
    t.repo.commit(
        &[
            ("blessed/fleet.yaml", blessed_v1.as_slice()),
            ("exact/fleet.yaml", exact_v1.as_slice()),
        ],
        "two fleets",
    );
    let first = run_of(&t, "blessed", Trigger::Schedule, Phase::AwaitingApproval).await;
    assert_eq!(pins(&first), ["nginx@blessed = 1.26.2"]);
    let shown = support::kubectl_fleet(ns, &["plan", &first.name_any()]);
    assert!(shown.contains("Modules: nginx@blessed = 1.26.2"), "{shown}");
    approved(&t, &first).await;
    assert_eq!(
        modules_of(&t.admin, ns, "web-1").await,
        ["nginx@1.26.2", "chrony@1.4.3"],
        "the objects carry the version, not the pin"
    );
    // Which catalog a run answers is the controller's: a tenant cannot mark a run as
    // already answering a catalog to hold an upgrade back.
    let marked = try_annotate(
        &t.alice,
        ns,
        &first.name_any(),
        "gitops.fleetgate.dev/catalog",
        Some("sha256:0"),
    )
    .await;
    assert!(marked.is_err(), "an editor marked a run");
    let exact = run_of(&t, "exact", Trigger::Schedule, Phase::AwaitingApproval).await;
    assert!(pins(&exact).is_empty());
    approved(&t, &exact).await;

    // The platform blesses 1.27.0: a gated plan for exactly that upgrade, and nothing
    // written until it is approved.
    let bless = json!({"spec": {"modules": [
        {"name": "nginx", "versions": ["1.26.2", "1.27.0"], "blessed": "1.27.0", "live": "1.27.0"},
        {"name": "chrony", "versions": ["1.4.3"], "blessed": "1.4.3"},
    ]}});
    catalogs
        .patch(
            &platform.catalog,
            &PatchParams::default(),
            &Patch::Merge(&bless),
        )
        .await
        .unwrap();
    let upgrade = run_of(&t, "blessed", Trigger::Catalog, Phase::AwaitingApproval).await;
    assert_eq!(pins(&upgrade), ["nginx@blessed = 1.27.0"]);
    let status = upgrade.status.clone().unwrap();
    assert!(status.requires_approval);
    assert_eq!(
        status.changes.as_ref().map(|c| (c.add, c.update, c.delete)),
        Some((0, 2, 0)),
        "the template and the node, nothing else: {:?}",
        status.diff
    );
    let told = events(&t.admin, ns, "blessed", "NewSyncRun").await;
    assert!(
        told.iter()
            .any(|m| m.contains("the module catalog moved nginx@blessed 1.26.2 → 1.27.0")),
        "{told:?}"
    );
    assert_eq!(
        modules_of(&t.admin, ns, "web-1").await,
        ["nginx@1.26.2", "chrony@1.4.3"],
        "no silent upgrade"
    );
    // The repository that pins a version was prompted too, and started nothing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let exact_runs = runs_of(&t, "exact").await;
    assert_eq!(
        exact_runs.len(),
        1,
        "{:?}",
        support::operator::names(&exact_runs)
    );
    approved(&t, &upgrade).await;
    assert_eq!(
        modules_of(&t.admin, ns, "web-1").await,
        ["nginx@1.27.0", "chrony@1.4.3"]
    );

    // A pin the catalog cannot resolve fails where it is written; once the catalog
    // lists the module, the same revision is planned again.
    let blessed_v2 = fleet(
        "web-1",
        &["nginx@blessed", "chrony@1.4.3", "acme-agent@live"],
    );
    let v2 = t.repo.commit(
        &[("blessed/fleet.yaml", blessed_v2.as_slice())],
        "an agent from the catalog",
    );
    let failed = run_of(&t, "blessed", Trigger::Schedule, Phase::Failed).await;
    assert_eq!(failed.spec.revision, v2);
    let status = failed.status.clone().unwrap();
    let ready = condition(&status.conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "ModuleUnresolved");
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("blessed/fleet.yaml:7:44: error: module `acme-agent@live`: no ModuleCatalog lists `acme-agent`"),
        "{message}"
    );
    let listed = json!({"spec": {"modules": [
        {"name": "nginx", "versions": ["1.26.2", "1.27.0"], "blessed": "1.27.0", "live": "1.27.0"},
        {"name": "chrony", "versions": ["1.4.3"], "blessed": "1.4.3"},
        {"name": "acme-agent", "versions": ["0.3.1"], "live": "0.3.1"},
    ]}});
    catalogs
        .patch(
            &platform.catalog,
            &PatchParams::default(),
            &Patch::Merge(&listed),
        )
        .await
        .unwrap();
    let again = run_of(&t, "blessed", Trigger::Catalog, Phase::AwaitingApproval).await;
    assert_eq!(again.spec.revision, v2);
    assert_eq!(
        pins(&again),
        ["acme-agent@live = 0.3.1", "nginx@blessed = 1.27.0"]
    );
}
