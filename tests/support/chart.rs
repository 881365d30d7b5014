//! The Helm chart installed as an operator would: its roles, its admission policies, and
//! the controller running with its ServiceAccount's token. Users act through
//! impersonation, bound to the chart's ClusterRoles.
//!
//! The chart's ClusterRoles and admission policies are cluster-wide and named after the
//! release, so one install exists at a time: [`Installed`] holds a lock for as long as it
//! lives and uninstalls when dropped.

use std::path::{Path, PathBuf};

use fleetgate::api::{SyncRun, annotations};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::operator::ControllerProcess;
use super::{TestNamespace, run_tool};

static ONE_INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A kubeconfig for the chart's ServiceAccount, with a token from the TokenRequest API.
pub async fn service_account_kubeconfig(
    client: &Client,
    ns: &str,
    sa: &str,
    dir: &Path,
) -> PathBuf {
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"expirationSeconds": 3600}})).unwrap();
    let token = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .and_then(|s| s.token)
        .expect("a token");
    let admin = std::fs::read_to_string(&super::env().kubeconfig).unwrap();
    let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&admin).unwrap();
    config["users"][0]["user"] = serde_yaml_ng::from_str(&format!("token: {token}")).unwrap();
    let path = dir.join("sa-kubeconfig");
    std::fs::write(&path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    path
}

/// Binds `user` to the ClusterRole `role` in `ns`.
pub fn bind(ns: &str, name: &str, role: &str, user: &str) {
    run_tool(
        "kubectl",
        &[
            "create",
            "rolebinding",
            name,
            "-n",
            ns,
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
        ],
    );
}

/// `helm install fleetgate` into `system`, watching `tenants`.
pub fn helm_install(system: &str, tenants: &[&str]) {
    run_tool(
        "helm",
        &[
            "install",
            "fleetgate",
            "charts/fleetgate",
            "-n",
            system,
            "--set",
            &format!("watchNamespaces={{{}}}", tenants.join(",")),
        ],
    );
}

/// The chart, installed to watch `tenants`, with the controller running as its
/// ServiceAccount.
pub struct Installed {
    pub system: TestNamespace,
    pub controller: ControllerProcess,
    _dir: tempfile::TempDir,
    _one: tokio::sync::MutexGuard<'static, ()>,
}

/// Holds off every install (and so every admission policy) while it lives. The API
/// server drops an uninstalled policy only when its informer sees the deletion, so this
/// waits until an approval is no longer stamped with who approved: a test run right after
/// another test's uninstall would otherwise still find the policies in force.
pub async fn no_install() -> tokio::sync::MutexGuard<'static, ()> {
    let one = ONE_INSTALL.lock().await;
    let admin = super::env().client().await;
    super::install_crds(&admin, &fleetgate::api::crds()).await;
    let runs = Api::<SyncRun>::namespaced(admin, "default");
    super::eventually(
        "the uninstalled admission policies to be out of force",
        std::time::Duration::from_secs(30),
        || {
            let runs = runs.clone();
            async move { (!approval_is_stamped(&runs).await).then_some(()) }
        },
    )
    .await;
    one
}

/// Whether a dry-run approval comes back stamped (or refused) by the chart's policies.
async fn approval_is_stamped(runs: &Api<SyncRun>) -> bool {
    let probe: SyncRun = serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1",
        "kind": "SyncRun",
        "metadata": {
            "generateName": "policy-probe-",
            "annotations": {annotations::APPROVE: "probe"},
        },
        "spec": {"repository": "probe", "revision": "0".repeat(40), "trigger": "Manual"},
    }))
    .unwrap();
    match runs
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &probe,
        )
        .await
    {
        Ok(created) => created.annotations().contains_key(annotations::APPROVED_BY),
        Err(_) => true,
    }
}

impl Installed {
    /// Installs the chart for `tenants` and starts the controller with `flags`.
    pub async fn new(tenants: &[&TestNamespace], flags: &[&str]) -> Self {
        let one = ONE_INSTALL.lock().await;
        let env = super::env();
        let admin = env.client().await;
        super::install_crds(&admin, &fleetgate::api::crds()).await;
        let system = env.namespace("fleetgate-system").await;
        let names: Vec<&str> = tenants.iter().map(|t| t.name.as_str()).collect();
        helm_install(&system.name, &names);
        let dir = tempfile::tempdir().unwrap();
        let sa = service_account_kubeconfig(&admin, &system.name, "fleetgate", dir.path()).await;
        let mut args = vec!["--lease-namespace", &system.name];
        for name in &names {
            args.extend(["--namespace", name]);
        }
        args.extend_from_slice(flags);
        let controller = ControllerProcess::start_as(&sa, &args);
        Self {
            system,
            controller,
            _dir: dir,
            _one: one,
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.controller.kill();
        let _ = std::process::Command::new(super::tool("helm"))
            .args(["uninstall", "fleetgate", "-n", &self.system.name])
            .env("KUBECONFIG", &super::env().kubeconfig)
            .output();
    }
}

/// Waits until the admission policies refuse what they should: `probe` is a dry-run
/// request that the policies deny once they are in force (they take a moment).
pub async fn wait_for_policies<F, Fut>(probe: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    super::eventually(
        "the admission policies to be in force",
        std::time::Duration::from_secs(30),
        || {
            let refused = probe();
            async move { refused.await.then_some(()) }
        },
    )
    .await;
}
