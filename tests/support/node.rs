//! The test node (`hack/testenv.sh start --node`): a real kubelet, containerd and CNI that
//! run the chart's pods from the image `make image` builds (hack/image/build.sh), loaded
//! into containerd without a registry. A test binary that uses it calls [`node`] before
//! anything else, so that every helper of this module works against the node's cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use serde_json::json;

use super::git::GitServer;

/// One test environment with a node, and where its pieces are.
pub struct Node {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// The node's address (and the API server's), inside its network namespace.
    pub ip: String,
    pub netns: String,
}

static NODE: OnceLock<Node> = OnceLock::new();
static IMAGE: OnceLock<Image> = OnceLock::new();

/// The node of this test binary, stopped when the binary exits; the control plane of every
/// helper in `support` from then on.
pub fn node() -> &'static Node {
    let node = NODE.get_or_init(Node::start);
    super::set_env(node.kubeconfig.clone());
    node
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{file} in {}: {e}", dir.display()))
        .trim()
        .to_owned()
}

impl Node {
    /// A node environment of its own, stopped when the test binary exits (or by [`stop`]).
    pub fn start() -> Node {
        let kubeconfig = super::start_until_exit("hack/testenv.sh", &["--node"]);
        let dir = kubeconfig.parent().unwrap().to_path_buf();
        Node {
            ip: read(&dir, "node-ip"),
            netns: read(&dir, "netns"),
            dir,
            kubeconfig,
        }
    }

    /// `hack/testenv.sh stop`: everything the start made goes.
    pub fn stop(&self) {
        let out = Command::new("hack/testenv.sh")
            .args(["stop"])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Loads an oci-archive into the node's containerd.
    pub fn import(&self, archive: &Path) {
        let out = Command::new("hack/testenv.sh")
            .arg("import")
            .arg(&self.dir)
            .arg(archive)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "import {}: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A git server (sshd, git daemon) listening on the node's address inside its network
    /// namespace, where the pods reach it.
    pub fn git_server(&self) -> GitServer {
        GitServer::start(&["--netns", &self.netns, "--address", &self.ip])
    }

    /// Runs `command` in the node's network namespace (where the pods' and Services'
    /// addresses are routed), returning its standard output.
    pub fn in_netns(&self, command: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .args(command)
            .output()
            .unwrap()
    }
}

/// The controller image as `make image` builds it.
pub struct Image {
    /// As the chart's `image.repository` names it (`fleetgate/fleetgate`).
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub archive: PathBuf,
}

/// `hack/image/build.sh REPOSITORY TAG`.
pub fn build_image(repository: &str, tag: &str) -> Image {
    build_flavor("controller", repository, tag)
}

/// `FLEETGATE_IMAGE_FLAVOR=FLAVOR hack/image/build.sh REPOSITORY TAG`.
fn build_flavor(flavor: &str, repository: &str, tag: &str) -> Image {
    let out = Command::new("hack/image/build.sh")
        .args([repository, tag])
        .env("FLEETGATE_IMAGE_FLAVOR", flavor)
        .output()
        .expect("hack/image/build.sh runs");
    assert!(
        out.status.success(),
        "make image failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key}= in {stdout}"))
            .to_owned()
    };
    Image {
        repository: repository.to_owned(),
        tag: tag.to_owned(),
        digest: value("digest"),
        archive: value("archive").into(),
    }
}

/// The controller's image at the crate's version, built once and loaded into [`node`].
pub fn image() -> &'static Image {
    IMAGE.get_or_init(|| {
        let image = build_image("fleetgate/fleetgate", env!("CARGO_PKG_VERSION"));
        node().import(&image.archive);
        image
    })
}

/// The lab provider's image (`make lab-image`) at the crate's version, built once and
/// loaded into [`node`].
pub fn lab_image() -> &'static Image {
    static LAB_IMAGE: OnceLock<Image> = OnceLock::new();
    LAB_IMAGE.get_or_init(|| {
        let image = build_flavor(
            "lab-provider",
            "fleetgate/lab-provider",
            env!("CARGO_PKG_VERSION"),
        );
        node().import(&image.archive);
        image
    })
}

/// The busybox image hack/testenv.sh packs for client pods.
pub const CLIENT_IMAGE: &str = "fleetgate.test/busybox:latest";

/// Runs `script` (busybox sh) in a pod of `ns` labelled `labels` until it ends, and
/// returns whether it succeeded and what it printed. The pod is deleted afterwards.
pub async fn run_pod(
    client: &Client,
    ns: &str,
    name: &str,
    labels: serde_json::Value,
    script: &str,
) -> (bool, String) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65534,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "client", "image": CLIENT_IMAGE, "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }))
    .unwrap();
    // A new namespace's default ServiceAccount comes a moment after it.
    super::eventually(
        &format!("pod {ns}/{name} created"),
        Duration::from_secs(30),
        || {
            let (pods, pod) = (pods.clone(), pod.clone());
            async move { pods.create(&PostParams::default(), &pod).await.ok() }
        },
    )
    .await;
    let phase = super::eventually(
        &format!("pod {ns}/{name} to finish"),
        Duration::from_secs(90),
        || {
            let pods = pods.clone();
            async move {
                let phase = pods.get(name).await.ok()?.status?.phase?;
                matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
            }
        },
    )
    .await;
    let logs = pods
        .logs(name, &LogParams::default())
        .await
        .unwrap_or_default();
    let _ = pods
        .delete(name, &DeleteParams::default().grace_period(0))
        .await;
    (phase == "Succeeded", logs)
}

/// GET `path` on port `port` of pod `ns/name` from the node (as the kubelet's probes do):
/// the status code and body. Not through the API server's pod proxy: kube's client retries
/// a 503 (a /readyz that refuses) with backoff instead of returning it.
pub async fn pod_get(
    client: &Client,
    ns: &str,
    name: &str,
    port: u16,
    path: &str,
) -> (u16, String) {
    let pod = Api::<Pod>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("pod {ns}/{name}: {e}"));
    let ip = pod
        .status
        .and_then(|s| s.pod_ip)
        .unwrap_or_else(|| panic!("pod {ns}/{name} has no address"));
    let url = format!("http://{ip}:{port}{path}");
    let out = node().in_netns(&["curl", "-s", "-m", "5", "-w", "\n%{http_code}", &url]);
    let out = String::from_utf8(out.stdout).unwrap();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}
