//! A tenant namespace with the chart's users (alice the editor, bob the editor and
//! approver), its git repository and SSH Secret; what the gate and governance tests share.

use std::collections::BTreeMap;

use fleetgate::api::SyncRun;
use fleetgate::fleet::object::Spec;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use fleetgate::api::syncrun::Phase;

use super::chart::{Installed, bind};
use super::git::server;
use super::operator::{Approval, approval, create_repository, run_in_phase, ssh_secret};

/// The admission error of a refused request: its code and message.
pub fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(s)) => (s.code, s.message),
        other => panic!("expected the API server to refuse, got {other:?}"),
    }
}

/// Fleet objects of the five kinds in `ns`.
pub async fn fleet_objects(client: &Client, ns: &str) -> Vec<DynamicObject> {
    let mut out = Vec::new();
    for kind in [
        "FleetTemplate",
        "FleetNode",
        "SdwanNetwork",
        "SdwanPeer",
        "VirtualIp",
    ] {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "fleet.fleetgate.dev",
            "v1alpha1",
            kind,
        ));
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        out.extend(api.list(&ListParams::default()).await.unwrap().items);
    }
    out
}

/// The fleet objects of `ns` by kind and name, each spec as the planner reads it: what
/// the cluster holds, to compare with what a fleet file declares ([`declared`]).
pub async fn fleet_content(client: &Client, ns: &str) -> BTreeMap<(String, String), Value> {
    fleet_objects(client, ns)
        .await
        .into_iter()
        .map(|o| {
            let kind = o.types.as_ref().unwrap().kind.clone();
            let spec = Spec::from_json(kind.parse().unwrap(), o.data["spec"].clone())
                .unwrap_or_else(|e| panic!("{kind}/{}: {e}", o.name_any()));
            ((kind, o.name_any()), spec.to_json())
        })
        .collect()
}

/// What the fleet file `bytes` declares, as [`fleet_content`] reads the cluster.
pub fn declared(bytes: &[u8]) -> BTreeMap<(String, String), Value> {
    let options = fleetgate::fleet::ResolveOptions::default();
    fleetgate::fleet::desired_state("fleet.yaml", bytes, &options)
        .expect("the fleet file is valid")
        .0
        .objects
        .into_iter()
        .map(|o| ((o.kind().as_str().to_owned(), o.name), o.spec.to_json()))
        .collect()
}

/// The exclude annotation that leaves out every action of `run`'s plan (as its status
/// lists them).
pub fn every_action(run: &SyncRun) -> String {
    let status = run.status.as_ref().expect("a planned run");
    status
        .actions
        .iter()
        .map(|a| format!("{}/{}", a.kind.to_ascii_lowercase(), a.name))
        .collect::<Vec<_>>()
        .join(",")
}

/// One tenant namespace with alice (editor, plus Kubernetes' `edit`) and bob (editor and
/// approver), a git repository holding V1, and the SSH Secret.
pub struct Tenant {
    pub ns: super::TestNamespace,
    pub admin: Client,
    pub alice: Client,
    pub bob: Client,
    /// A second approver (editor and approver, like bob).
    pub carol: Client,
    pub repo: super::git::Repo,
}

/// The reference fleet (examples/fleet.yaml), the first revision tenants commit.
pub const V1: &[u8] = include_bytes!("../../examples/fleet.yaml");

pub async fn tenant(prefix: &str) -> Tenant {
    let env = super::env();
    let ns = env.namespace(prefix).await;
    let admin = env.client().await;
    let git = server();
    let repo = git.create_repo(prefix);
    ssh_secret(&admin, &ns.name, "fleet-git", git.known_hosts()).await;
    Tenant {
        alice: env.client_as("alice", &["system:authenticated"]).await,
        bob: env.client_as("bob", &["system:authenticated"]).await,
        carol: env
            .client_as("carol", &["system:authenticated", "netops"])
            .await,
        admin,
        repo,
        ns,
    }
}

impl Tenant {
    /// Installs the chart for this tenant's namespace alone and binds its users to the
    /// chart's roles. The chart is uninstalled when what this returns is dropped.
    pub async fn install_chart(&self) -> Installed {
        let chart = Installed::new(&[&self.ns], &[]).await;
        self.bind_users();
        chart
    }

    pub fn bind_users(&self) {
        bind(&self.ns.name, "alice-edits", "fleetgate-editor", "alice");
        // What Kubernetes' `edit` grants on ConfigMaps and Secrets (`edit` itself is
        // aggregated by kube-controller-manager, which the test control plane lacks).
        super::run_tool(
            "kubectl",
            &[
                "create",
                "role",
                "k8s-edit",
                "-n",
                &self.ns.name,
                "--verb=get,list,watch,create,update,patch,delete",
                "--resource=configmaps,secrets",
            ],
        );
        super::run_tool(
            "kubectl",
            &[
                "create",
                "rolebinding",
                "alice-k8s-edit",
                "-n",
                &self.ns.name,
                "--role=k8s-edit",
                "--user=alice",
            ],
        );
        bind(&self.ns.name, "bob-edits", "fleetgate-editor", "bob");
        bind(&self.ns.name, "bob-approves", "fleetgate-approver", "bob");
        bind(&self.ns.name, "carol-edits", "fleetgate-editor", "carol");
        bind(
            &self.ns.name,
            "carol-approves",
            "fleetgate-approver",
            "carol",
        );
    }

    /// Creates the repository (as the cluster admin), commits V1 and waits for its plan:
    /// the revision, and the run AwaitingApproval.
    pub async fn first_plan(&self) -> (String, SyncRun) {
        let ns = &self.ns.name;
        create_repository(&self.admin, ns, "fleet", self.ssh_spec()).await;
        let v1 = self.repo.commit(&[("fleet.yaml", V1)], "first");
        let run = run_in_phase(&self.admin, ns, &v1, Phase::AwaitingApproval).await;
        (v1, run)
    }

    pub fn ssh_spec(&self) -> Value {
        json!({"url": server().ssh_url(&self.repo), "ref": {"branch": "main"},
               "secretRef": {"name": "fleet-git"}, "interval": "2s"})
    }

    /// The approval of `run` by the admin unless [`Approval::by`] names another user,
    /// sent once the chart's policy stamps who approved.
    pub fn approve<'a>(&'a self, run: &SyncRun) -> Approval<'a> {
        approval(&self.admin, run).once_stamped()
    }
}

/// Waits until the approve annotation was removed after an approval was recorded.
pub async fn approval_cleared(t: &Tenant, run: &str) {
    let api = Api::<SyncRun>::namespaced(t.admin.clone(), &t.ns.name);
    super::eventually(
        "the approve annotation to be cleared",
        std::time::Duration::from_secs(30),
        || {
            let api = api.clone();
            async move {
                let r = api.get(run).await.ok()?;
                (!r.annotations()
                    .contains_key(fleetgate::api::annotations::APPROVE))
                .then_some(())
            }
        },
    )
    .await;
}
