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
    kubeconfig_with_token(&token, &dir.join("sa-kubeconfig"))
}

/// A kubeconfig at `path` for the test control plane that authenticates with `token`.
pub fn kubeconfig_with_token(token: &str, path: &Path) -> PathBuf {
    let admin = std::fs::read_to_string(&super::env().kubeconfig).unwrap();
    let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&admin).unwrap();
    config["users"][0]["user"] = serde_yaml_ng::from_str(&format!("token: {token}")).unwrap();
    std::fs::write(path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    path.to_owned()
}

/// Lets `users` read the ConfigMaps of `ns` (where a run's plan is stored), as
/// Kubernetes' `view` (in `edit`) does: `view` itself is aggregated by
/// kube-controller-manager, which the test control plane lacks.
pub fn grant_configmap_view(ns: &str, users: &[&str]) {
    run_tool(
        "kubectl",
        &[
            "create",
            "role",
            "k8s-view",
            "-n",
            ns,
            "--verb=get,list,watch",
            "--resource=configmaps",
        ],
    );
    for user in users {
        run_tool(
            "kubectl",
            &[
                "create",
                "rolebinding",
                &format!("{user}-k8s-view"),
                "-n",
                ns,
                "--role=k8s-view",
                &format!("--user={user}"),
            ],
        );
    }
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

/// `helm install fleetgate` into `system`, watching `tenants`; uninstalled when the
/// returned guard is dropped (a failed test must not leave its release's cluster-scoped
/// roles and admission policies to the tests after it).
pub fn helm_install(system: &str, tenants: &[&str]) -> UninstallOnDrop {
    helm_install_with(system, tenants, &[]);
    UninstallOnDrop::new("fleetgate", system)
}

/// Uninstalls a Helm release when dropped; uninstalling it before is harmless.
pub struct UninstallOnDrop {
    release: String,
    namespace: String,
}

impl UninstallOnDrop {
    pub fn new(release: &str, namespace: &str) -> Self {
        Self {
            release: release.to_owned(),
            namespace: namespace.to_owned(),
        }
    }
}

impl Drop for UninstallOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new(super::tool("helm"))
            .args(["uninstall", &self.release, "-n", &self.namespace])
            .env("KUBECONFIG", &super::env().kubeconfig)
            .output();
    }
}

/// [`helm_install`] with more `--set` values.
fn helm_install_with(system: &str, tenants: &[&str], values: &[&str]) {
    let watch = format!("watchNamespaces={{{}}}", tenants.join(","));
    let mut args = vec![
        "install",
        "fleetgate",
        "charts/fleetgate",
        "-n",
        system,
        "--set",
        &watch,
    ];
    for value in values {
        args.extend(["--set", value]);
    }
    let install = std::process::Command::new(super::tool("helm"))
        .args(&args)
        .env("KUBECONFIG", &super::env().kubeconfig)
        .output()
        .unwrap();
    if !install.status.success() {
        // What a failed install created (cluster-scoped roles and policies named after the
        // release) would make every later install in the run fail too.
        let _ = std::process::Command::new(super::tool("helm"))
            .args(["uninstall", "fleetgate", "-n", system])
            .env("KUBECONFIG", &super::env().kubeconfig)
            .output();
        panic!(
            "helm {args:?} failed:\n{}",
            String::from_utf8_lossy(&install.stderr)
        );
    }
}

/// The chart, installed to watch `tenants`, with the controller running as its
/// ServiceAccount.
pub struct Installed {
    pub system: TestNamespace,
    pub controller: ControllerProcess,
    /// The controller's flags, to start it again as it was.
    pub args: Vec<String>,
    /// A kubeconfig of the chart's ServiceAccount.
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    _one: tokio::sync::MutexGuard<'static, ()>,
}

/// Holds off every install (and so every admission policy) while it lives. The API
/// server drops an uninstalled policy only when its informer sees the deletion, so this
/// waits until approvals are no longer stamped or guarded: a test run right after another
/// test's uninstall would otherwise still find the policies in force.
pub async fn no_install() -> tokio::sync::MutexGuard<'static, ()> {
    let one = ONE_INSTALL.lock().await;
    let admin = super::env().client().await;
    super::install_crds(&admin, &fleetgate::api::crds()).await;
    wait_for_approval_policies(admin, false).await;
    one
}

/// Waits until the chart's approval policies are in force (`true`) or out of force: an
/// approval stamped with who approved, and an approved-by set by hand refused. Both are
/// dry runs by the admin, whom the policies treat as anyone else.
pub async fn wait_for_approval_policies(admin: Client, in_force: bool) {
    let runs = Api::<SyncRun>::namespaced(admin, "default");
    let what = if in_force {
        "the chart's approval policies to be in force"
    } else {
        "the uninstalled approval policies to be out of force"
    };
    super::eventually(what, std::time::Duration::from_secs(30), || {
        let runs = runs.clone();
        async move {
            let stamped = dry_run_approval(&runs, annotations::APPROVE, "probe")
                .await
                .is_ok_and(|run| run.annotations().contains_key(annotations::APPROVED_BY));
            let guarded = dry_run_approval(&runs, annotations::APPROVED_BY, "mallory")
                .await
                .is_err();
            (stamped == in_force && guarded == in_force).then_some(())
        }
    })
    .await;
}

/// A SyncRun carrying one annotation, created as a dry run.
async fn dry_run_approval(runs: &Api<SyncRun>, key: &str, value: &str) -> kube::Result<SyncRun> {
    let probe: SyncRun = serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1",
        "kind": "SyncRun",
        "metadata": {"generateName": "policy-probe-", "annotations": {key: value}},
        "spec": {"repository": "probe", "revision": "0".repeat(40), "trigger": "Manual"},
    }))
    .unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    runs.create(&dry_run, &probe).await
}

impl Installed {
    /// Installs the chart for `tenants` and starts the controller with `flags`.
    pub async fn new(tenants: &[&TestNamespace], flags: &[&str]) -> Self {
        Self::install(tenants, flags, &[], None).await
    }

    /// [`Installed::new`], with chart `values` (`--set` arguments such as
    /// `sharding.shards={a}`).
    pub async fn with_values(tenants: &[&TestNamespace], flags: &[&str], values: &[&str]) -> Self {
        Self::install(tenants, flags, values, None).await
    }

    /// [`Installed::new`], the controller in `cgroup` (the chart's memory limit, say).
    pub async fn in_cgroup(
        tenants: &[&TestNamespace],
        flags: &[&str],
        cgroup: &super::cgroup::MemoryCgroup,
    ) -> Self {
        Self::install(tenants, flags, &[], Some(cgroup)).await
    }

    async fn install(
        tenants: &[&TestNamespace],
        flags: &[&str],
        values: &[&str],
        cgroup: Option<&super::cgroup::MemoryCgroup>,
    ) -> Self {
        let one = ONE_INSTALL.lock().await;
        let env = super::env();
        let admin = env.client().await;
        super::install_crds(&admin, &fleetgate::api::crds()).await;
        let system = env.namespace("fleetgate-system").await;
        let names: Vec<&str> = tenants.iter().map(|t| t.name.as_str()).collect();
        helm_install_with(&system.name, &names, values);
        wait_for_approval_policies(admin.clone(), true).await;
        let dir = tempfile::tempdir().unwrap();
        let sa = service_account_kubeconfig(&admin, &system.name, "fleetgate", dir.path()).await;
        let mut args = vec!["--lease-namespace", &system.name];
        for name in &names {
            args.extend(["--namespace", name]);
        }
        args.extend_from_slice(flags);
        let controller = match cgroup {
            Some(cgroup) => ControllerProcess::start_as_in_cgroup(&sa, &args, cgroup),
            None => ControllerProcess::start_as(&sa, &args),
        };
        let args = args.iter().map(|a| a.to_string()).collect();
        Self {
            system,
            controller,
            args,
            kubeconfig: sa,
            _dir: dir,
            _one: one,
        }
    }
}

impl Installed {
    /// Stops the controller at once (as an OOM kill or an eviction would) and starts it
    /// again with the same flags, in `cgroup` if given.
    pub fn restart(&mut self, cgroup: Option<&super::cgroup::MemoryCgroup>) {
        self.controller.kill();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.controller = match cgroup {
            Some(cgroup) => ControllerProcess::start_as_in_cgroup(&self.kubeconfig, &args, cgroup),
            None => ControllerProcess::start_as(&self.kubeconfig, &args),
        };
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
