//! Flux's source-controller (hack/flux/run.sh, built from the Go module proxy by
//! hack/flux/build.sh) against the test control plane: one per test binary, stopped when
//! it exits. Its artifacts are served on a loopback port.

use std::path::PathBuf;
use std::sync::OnceLock;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::Value;

pub struct SourceController {
    pub dir: PathBuf,
    /// `127.0.0.1:<port>`: where artifacts are served, and so the host fleetgate must
    /// be told to fetch them from (`--flux-artifact-hosts=127.0.0.1`).
    pub storage: String,
}

static FLUX: OnceLock<SourceController> = OnceLock::new();

/// The source-controller of this test binary.
pub fn source_controller() -> &'static SourceController {
    FLUX.get_or_init(|| {
        let kubeconfig = super::env().kubeconfig.to_string_lossy().into_owned();
        let (dir, env) = super::start_service("hack/flux/run.sh", &[&kubeconfig]);
        let storage = env.get("STORAGE").expect("STORAGE in env").clone();
        SourceController { dir, storage }
    })
}

/// The API of Flux's GitRepositories in `ns`.
pub fn git_repositories(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", "GitRepository");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "gitrepositories");
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// Creates the GitRepository `name` with `spec`.
pub async fn create_git_repository(client: &Client, ns: &str, name: &str, spec: Value) {
    let object: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap();
    git_repositories(client, ns)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// The GitRepository's condition `type_`: (status, reason, message).
pub async fn condition(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let object = git_repositories(client, ns).get(name).await.ok()?;
    let c = object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?
        .clone();
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Some((text("status"), text("reason"), text("message")))
}
