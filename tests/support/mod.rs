//! Test helpers over the real test control plane and the real git server.
//!
//! One control plane per test binary: reused from `FLEETGATE_TEST_KUBECONFIG` (set by
//! `make test`) or started with `hack/testenv.sh` and stopped when the binary exits. Each
//! test gets its own namespace; when a test fails, the namespace's objects and Events are
//! printed. Without kube-controller-manager namespaces are never finalized and nothing is
//! garbage collected, so tests never wait for either.

#![allow(dead_code)] // each test binary uses its own part of the helpers

pub mod browser;
pub mod cgroup;
pub mod chart;
pub mod fleet;
pub mod flux;
pub mod git;
pub mod gitea;
pub mod lab;
pub mod netns;
pub mod node;
pub mod operator;
pub mod outage;
pub mod policy;
pub mod procstat;
pub mod signing;
pub mod tenant;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub struct TestEnv {
    pub kubeconfig: PathBuf,
}

static ENV: OnceLock<TestEnv> = OnceLock::new();

/// The control plane of this test binary.
pub fn env() -> &'static TestEnv {
    ENV.get_or_init(|| {
        if let Some(path) = std::env::var_os("FLEETGATE_TEST_KUBECONFIG") {
            return TestEnv {
                kubeconfig: path.into(),
            };
        }
        let out = Command::new("hack/testenv.sh")
            .args(["start", "--until-exit", &std::process::id().to_string()])
            .output()
            .expect("hack/testenv.sh runs");
        assert!(
            out.status.success(),
            "the test control plane did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        TestEnv {
            kubeconfig: stdout.lines().last().expect("a kubeconfig path").into(),
        }
    })
}

/// Makes the environment at `kubeconfig` this test binary's control plane, for every helper
/// here (tests/node.rs: the test node's). Must come before the first [`env`].
pub fn set_env(kubeconfig: PathBuf) -> &'static TestEnv {
    let env = ENV.get_or_init(|| TestEnv {
        kubeconfig: kubeconfig.clone(),
    });
    assert_eq!(env.kubeconfig, kubeconfig, "set_env after env()");
    env
}

impl TestEnv {
    /// A client authenticated as the admin. Make one per test: a client belongs to the
    /// tokio runtime it was made on.
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig reads");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig is usable");
        Client::try_from(config).expect("client builds")
    }

    /// A client that acts as `user` in `groups` (through impersonation), for RBAC tests.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig reads");
        let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig is usable");
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        Client::try_from(config).expect("client builds")
    }

    /// A fresh namespace for one test; dumped to stderr if the test fails.
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        let client = self.client().await;
        let name = format!("{prefix}-{}", unique_suffix());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace is created");
        TestNamespace {
            name,
            client,
            kubeconfig: self.kubeconfig.clone(),
        }
    }
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:x}{n}", (nanos ^ std::process::id()) & 0xfffff)
}

pub struct TestNamespace {
    pub name: String,
    pub client: Client,
    kubeconfig: PathBuf,
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        eprintln!(
            "---- state of namespace {} after the failure ----",
            self.name
        );
        let kinds = kubectl(
            &self.kubeconfig,
            &[
                "api-resources",
                "--namespaced",
                "--verbs=list",
                "-o",
                "name",
            ],
        )
        .unwrap_or_default()
        .lines()
        .filter(|k| {
            k.contains("fleetgate")
                || k.contains("testenv")
                || *k == "configmaps"
                || *k == "secrets"
        })
        .collect::<Vec<_>>()
        .join(",");
        if !kinds.is_empty()
            && let Some(objects) = kubectl(
                &self.kubeconfig,
                &["get", &kinds, "-n", &self.name, "-o", "yaml"],
            )
        {
            eprintln!("{objects}");
        }
        if let Some(events) = kubectl(
            &self.kubeconfig,
            &[
                "get",
                "events",
                "-n",
                &self.name,
                "--sort-by=.lastTimestamp",
            ],
        ) {
            eprintln!("{events}");
        }
    }
}

/// A tool built with the test control plane (`kubectl`, `helm`), whatever is on PATH.
pub fn tool(name: &str) -> PathBuf {
    built("hack/testenv/build.sh").join(name)
}

/// What the build script `script` (one of hack/*/build.sh, which cache their builds in
/// ~/.cache/fleetgate) says it made: the last line it prints, a path. Each script runs
/// once per test binary.
pub fn built(script: &str) -> PathBuf {
    type Cell = std::sync::Arc<OnceLock<PathBuf>>;
    static BUILT: OnceLock<std::sync::Mutex<HashMap<String, Cell>>> = OnceLock::new();
    // One cell a script, so a long build (checkov's pip install) holds up only the
    // tests that wait for that script.
    let cell = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(script.to_owned())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let out = Command::new(script)
            .output()
            .unwrap_or_else(|e| panic!("{script} runs: {e}"));
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap_or_else(|| panic!("{script} names what it built"))
            .into()
    })
    .clone()
}

/// Runs `SCRIPT start ARGS… --until-exit <this process>` (what it starts stops when the
/// test binary exits) and returns the path it prints last.
pub fn start_until_exit(script: &str, args: &[&str]) -> PathBuf {
    let out = Command::new(script)
        .arg("start")
        .args(args)
        .args(["--until-exit", &std::process::id().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("{script} runs: {e}"));
    assert!(
        out.status.success(),
        "{script} did not start:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{script} printed no path"))
        .into()
}

/// A test service a hack script starts ([`start_until_exit`]): its folder, and the
/// `KEY=value` lines of that folder's `env` file.
pub fn start_service(script: &str, args: &[&str]) -> (PathBuf, HashMap<String, String>) {
    let dir = start_until_exit(script, args);
    let env = std::fs::read_to_string(dir.join("env")).unwrap();
    let values = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (dir, values)
}

/// Runs a tool with the admin kubeconfig; panics with its stderr if it fails.
/// `kubectl fleet -n <ns> <args>` as the admin (or whom `--as` names), which must
/// succeed: its standard output, and both outputs in the test's log.
pub fn kubectl_fleet(ns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-fleet"))
        .args(["-n", ns])
        .args(args)
        .env("KUBECONFIG", &env().kubeconfig)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "$ kubectl fleet {}\n{stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubectl fleet {args:?} failed");
    stdout
}

pub fn run_tool(name: &str, args: &[&str]) -> String {
    run_tool_with_input(name, args, "")
}

/// Like [`run_tool`], with `stdin` as the tool's standard input (`kubectl create -f -`).
pub fn run_tool_with_input(name: &str, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(tool(name))
        .args(args)
        .env("KUBECONFIG", &env().kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name} runs: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kubectl(kubeconfig: &PathBuf, args: &[&str]) -> Option<String> {
    let out = Command::new(tool("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs CRDs with server-side apply and waits until the API server serves them.
pub async fn install_crds(client: &Client, crds: &[CustomResourceDefinition]) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().expect("CRDs are named");
        api.patch(
            &name,
            &PatchParams::apply("fleetgate-tests").force(),
            &Patch::Apply(crd),
        )
        .await
        .unwrap_or_else(|e| panic!("CRD {name} is accepted: {e}"));
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} is established within 30 s"))
            .expect("watching the CRD works");
    }
}

/// Polls `check` until it returns Some, or fails the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the control plane's audit log (hack/testenv.sh writes it beside the kubeconfig)
/// says was written to `resource` in `ns`.
#[derive(Debug, PartialEq, Eq)]
pub struct Writes {
    /// Objects with at least one completed create request. A create whose client was
    /// killed may be logged as 504 although it created the object.
    pub created: usize,
    /// Creates refused because the object already existed: a second try to create it.
    pub created_again: usize,
    /// Updates, patches and deletes of the objects themselves (not their status).
    pub other: usize,
}

pub fn audited_writes(ns: &str, resource: &str) -> Writes {
    let dir = env().kubeconfig.parent().unwrap().to_path_buf();
    let log = std::fs::read_to_string(dir.join("audit.log")).unwrap_or_default();
    let mut created = std::collections::BTreeSet::new();
    let (mut created_again, mut other) = (0, 0);
    for event in log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let object = &event["objectRef"];
        if event["stage"] != "ResponseComplete"
            || object["namespace"] != ns
            || object["resource"] != resource
            || !object["subresource"].is_null()
        {
            continue;
        }
        let code = event["responseStatus"]["code"].as_u64().unwrap_or(0);
        match (event["verb"].as_str(), code) {
            (Some("create"), 409) => created_again += 1,
            (Some("create"), c) if !(300..500).contains(&c) => {
                created.insert(object["name"].as_str().unwrap_or_default().to_owned());
            }
            (Some("update" | "patch" | "delete"), c) if c < 300 => other += 1,
            _ => {}
        }
    }
    Writes {
        created: created.len(),
        created_again,
        other,
    }
}

/// A point in the control plane's audit log: what is logged after it is read by
/// [`audited_since`].
pub fn audit_mark() -> u64 {
    let dir = env().kubeconfig.parent().unwrap().to_path_buf();
    std::fs::metadata(dir.join("audit.log")).map_or(0, |m| m.len())
}

/// One write the API server completed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuditedWrite {
    pub user: String,
    pub verb: String,
    pub resource: String,
    pub name: String,
}

/// The writes (create, update, patch, delete; not of a subresource) to `resources` in
/// `ns` that the API server completed after `mark`, whoever made them.
pub fn audited_since(mark: u64, ns: &str, resources: &[&str]) -> Vec<AuditedWrite> {
    audited_writes_since(mark, resources)
        .into_iter()
        .filter(|(namespace, _)| namespace == ns)
        .map(|(_, write)| write)
        .collect()
}

/// The writes to `resources` the API server completed after `mark`, in any namespace:
/// each with its namespace.
pub fn audited_writes_since(mark: u64, resources: &[&str]) -> Vec<(String, AuditedWrite)> {
    use std::io::{Read, Seek, SeekFrom};
    let dir = env().kubeconfig.parent().unwrap().to_path_buf();
    let mut log = String::new();
    if let Ok(mut file) = std::fs::File::open(dir.join("audit.log")) {
        let _ = file.seek(SeekFrom::Start(mark));
        let _ = file.read_to_string(&mut log);
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            let object = &e["objectRef"];
            e["stage"] == "ResponseComplete"
                && resources.contains(&object["resource"].as_str().unwrap_or_default())
                && object["subresource"].is_null()
                && matches!(
                    e["verb"].as_str(),
                    Some("create" | "update" | "patch" | "delete")
                )
                && e["responseStatus"]["code"]
                    .as_u64()
                    .is_some_and(|c| c < 300)
        })
        .map(|e| {
            let object = &e["objectRef"];
            let write = AuditedWrite {
                user: text(&e["user"]["username"]),
                verb: text(&e["verb"]),
                resource: text(&object["resource"]),
                name: text(&object["name"]),
            };
            (text(&object["namespace"]), write)
        })
        .collect()
}

/// The resources of the five fleet kinds.
pub const FLEET_RESOURCES: &[&str] = &[
    "fleettemplates",
    "fleetnodes",
    "sdwannetworks",
    "sdwanpeers",
    "virtualips",
];

/// A client with the credentials of the kubeconfig at `path`.
pub async fn client_from(path: &std::path::Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("kubeconfig reads");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client builds")
}
