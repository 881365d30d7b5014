//! Running `fleetgate controller` as a user would: a child process scoped to the test's
//! namespace, driven only through the Kubernetes API.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleetgate::api::syncrun::{Phase, SyncRunStatus};
use fleetgate::api::{GitopsRepository, SyncRun, annotations};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::TestNamespace;

pub struct ControllerProcess {
    child: Child,
    pub log: PathBuf,
    /// Where /metrics, /healthz and /readyz are served.
    pub http: std::net::SocketAddr,
    work: tempfile::TempDir,
}

/// ModuleCatalogs are cluster-wide and the tests run side by side: a controller reads
/// only the catalogs its own test labels for it, none unless its flags ask.
fn own_catalogs_only(args: &[&str]) -> Option<&'static str> {
    let asks = args
        .iter()
        .any(|a| a.starts_with("--module-catalog-selector"));
    (!asks).then_some("--module-catalog-selector=fleetgate.test/catalog-for=nobody")
}

impl ControllerProcess {
    /// Starts a controller that acts only in `ns`, with the admin's credentials.
    pub fn start(ns: &TestNamespace, extra: &[&str]) -> Self {
        Self::start_in_pod(&super::env().kubeconfig, &Self::test_args(ns, extra), None)
    }

    /// The flags of a controller started by the tests without the chart: no admission
    /// policies here (approvals carry no approved-by), and the test git server's
    /// file:// and git:// URLs.
    fn test_args<'a>(ns: &'a TestNamespace, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "--namespace",
            &ns.name,
            "--lease-namespace",
            &ns.name,
            "--allow-unverified-approvals",
            "--allow-file-urls",
            "--allow-git-urls",
        ];
        args.extend_from_slice(extra);
        args
    }

    /// Starts a controller with the credentials in `kubeconfig` and the given flags.
    pub fn start_as(kubeconfig: &std::path::Path, args: &[&str]) -> Self {
        Self::start_in_pod(kubeconfig, args, None)
    }

    /// Starts a controller in `ns` as pod `pod`: a restart under the same pod name holds
    /// the same Lease identity, as a container restarted in its pod does.
    pub fn restart_in_pod(ns: &TestNamespace, pod: &str, extra: &[&str]) -> Self {
        Self::start_in_pod(
            &super::env().kubeconfig,
            &Self::test_args(ns, extra),
            Some(pod),
        )
    }

    /// Starts a controller in `ns` with extra environment variables (such as
    /// `SSL_CERT_FILE`, to trust a test server's certificate).
    pub fn start_with_env(ns: &TestNamespace, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let args = Self::test_args(ns, extra);
        Self::spawn(&super::env().kubeconfig, &args, None, env)
    }

    fn start_in_pod(kubeconfig: &std::path::Path, args: &[&str], pod: Option<&str>) -> Self {
        Self::spawn(kubeconfig, args, pod, &[])
    }

    /// Starts a controller with the credentials in `kubeconfig` and the given flags, in
    /// `cgroup` (its memory bounded as a pod's is).
    pub fn start_as_in_cgroup(
        kubeconfig: &std::path::Path,
        args: &[&str],
        cgroup: &super::cgroup::MemoryCgroup,
    ) -> Self {
        let controller = Self::spawn(kubeconfig, args, None, &[]);
        cgroup.add(controller.pid());
        controller
    }

    fn spawn(
        kubeconfig: &std::path::Path,
        args: &[&str],
        pod: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        let work = tempfile::tempdir().unwrap();
        let log = work.path().join("controller.log");
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // FLEETGATE_TEST_CONTROLLER_BIN runs another build (an older one, to measure what
        // a change fixed) in the same scenario.
        let binary = std::env::var_os("FLEETGATE_TEST_CONTROLLER_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_fleetgate").into());
        let mut command = Command::new(binary);
        if let Some(pod) = pod {
            command.env("POD_NAME", pod);
        }
        command.envs(env.iter().copied());
        let child = command
            .arg("controller")
            .args(["--http-addr", &http.to_string()])
            .arg("--work-dir")
            .arg(work.path().join("git"))
            .args(args)
            .args(own_catalogs_only(args))
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                // FLEETGATE_TEST_CONTROLLER_LOG, to follow kube-runtime's reconcile reasons
                // (kube_runtime=debug) in a bench or test's controller.log.
                std::env::var("FLEETGATE_TEST_CONTROLLER_LOG")
                    .unwrap_or_else(|_| "info,fleetgate=debug,kube_lease_manager=warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("fleetgate controller starts");
        Self {
            child,
            log,
            http,
            work,
        }
    }

    /// The folder of the git caches (`--work-dir`).
    pub fn work_dir(&self) -> PathBuf {
        self.work.path().join("git")
    }

    /// GET `path` from the controller's HTTP server: status code and body.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        self.http_get_accepting(path, "*/*")
            .map(|(code, _, body)| (code, body))
    }

    /// GET with an Accept header; the status code, the Content-Type and the body.
    pub fn http_get_accepting(&self, path: &str, accept: &str) -> Option<(u16, String, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.http).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: localhost\r\nAccept: {accept}\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        s.read_to_string(&mut response).ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let content_type = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            })
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        Some((code, content_type, body.to_owned()))
    }

    /// The process id, to read its memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has ended by itself.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// How the process ended, if it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Freezes it (SIGSTOP): it sees nothing until [`Self::resume`], as a process
    /// descheduled for a while would, so the changes made meanwhile reach it at once.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Stops it at once, as a crash or an evicted pod would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- controller log ----\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// A Secret with the test git server's client key and known_hosts.
pub async fn ssh_secret(client: &Client, ns: &str, name: &str, known_hosts: String) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"identity": super::git::server().identity(), "known_hosts": known_hosts},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

pub async fn create_repository(
    client: &Client,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> GitopsRepository {
    let repo: GitopsRepository = serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1",
        "kind": "GitopsRepository",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap();
    Api::<GitopsRepository>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &repo)
        .await
        .unwrap()
}

/// Waits for a SyncRun of `repository` for `revision` to reach `phase`.
pub async fn run_in_phase(client: &Client, ns: &str, revision: &str, phase: Phase) -> SyncRun {
    run_in_phase_within(client, ns, revision, phase, Duration::from_secs(60)).await
}

/// [`run_in_phase`], waiting up to `timeout`.
pub async fn run_in_phase_within(
    client: &Client,
    ns: &str,
    revision: &str,
    phase: Phase,
    timeout: Duration,
) -> SyncRun {
    let api: Api<SyncRun> = Api::namespaced(client.clone(), ns);
    let what = format!("a SyncRun of {revision} in phase {phase:?}");
    super::eventually(&what, timeout, || {
        let api = api.clone();
        async move {
            api.list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|r| r.spec.revision == revision && r.phase() == Some(phase))
        }
    })
    .await
}

/// The namespace's SyncRuns started to restore drift; None if they cannot be listed now.
pub async fn drift_runs(client: &Client, ns: &str) -> Option<Vec<SyncRun>> {
    let list = Api::<SyncRun>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .ok()?
        .items;
    let drift = fleetgate::api::syncrun::Trigger::Drift;
    Some(
        list.into_iter()
            .filter(|r| r.spec.trigger == drift)
            .collect(),
    )
}

pub async fn wait_for_status(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&SyncRunStatus) -> bool,
) -> SyncRun {
    let api: Api<SyncRun> = Api::namespaced(client.clone(), ns);
    super::eventually(what, Duration::from_secs(60), || {
        let api = api.clone();
        let check = &check;
        async move {
            let run = api.get(name).await.ok()?;
            check(run.status.as_ref()?).then_some(run)
        }
    })
    .await
}

pub async fn annotate(client: &Client, ns: &str, run: &str, key: &str, value: Option<&str>) {
    try_annotate(client, ns, run, key, value).await.unwrap();
}

/// Sets (or with None removes) one annotation of a SyncRun as `client`'s user.
pub async fn try_annotate(
    client: &Client,
    ns: &str,
    run: &str,
    key: &str,
    value: Option<&str>,
) -> Result<SyncRun, kube::Error> {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    Api::<SyncRun>::namespaced(client.clone(), ns)
        .patch(run, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// A person's approval of a SyncRun: its approve annotation set to a plan id, as the
/// namespace's admin unless [`Approval::by`] names someone else. It is sent when awaited
/// (and must be accepted), or by [`Approval::try_send`]:
///
/// ```ignore
/// ns.approve(&run).await;                            // the plan the run recorded
/// ns.approve(&run).by(&bob).await;                   // as bob (impersonated)
/// ns.approve(&run).plan("plan-000000000000").await;  // another plan id: refused later
/// let refused = ns.approve(&run).by(&alice).try_send().await;
/// t.approve(&run).by(&t.bob).await;                 // a tenant's: once approved-by is stamped
/// ```
pub struct Approval<'a> {
    client: &'a Client,
    namespace: String,
    run: String,
    plan: Option<String>,
    once_stamped: bool,
}

/// `run`'s approval as `client`'s user, of the plan it recorded.
pub fn approval<'a>(client: &'a Client, run: &SyncRun) -> Approval<'a> {
    Approval {
        client,
        namespace: run.namespace().expect("a SyncRun read from the API server"),
        run: run.name_any(),
        plan: run.status.as_ref().and_then(|s| s.plan_id.clone()),
        once_stamped: false,
    }
}

impl TestNamespace {
    /// The approval of `run` (in this namespace) by the admin, of the plan it recorded.
    pub fn approve<'a>(&'a self, run: &SyncRun) -> Approval<'a> {
        approval(&self.client, run)
    }
}

impl<'a> Approval<'a> {
    /// Given by `client`'s user instead.
    pub fn by(mut self, client: &'a Client) -> Self {
        self.client = client;
        self
    }

    /// Of the plan `plan_id` rather than the one the run recorded.
    pub fn plan(mut self, plan_id: &str) -> Self {
        self.plan = Some(plan_id.to_owned());
        self
    }

    /// Sent only once the admission policy that stamps who approved is in force, as it
    /// is a moment after the chart is installed: an approval sent before would carry no
    /// approved-by, and a controller that requires one would never count it.
    pub fn once_stamped(mut self) -> Self {
        self.once_stamped = true;
        self
    }

    /// Sends it: the run as the API server returned it, or its refusal.
    pub async fn try_send(self) -> Result<SyncRun, kube::Error> {
        let plan = self.plan.expect("the run has recorded a plan to approve");
        if self.once_stamped {
            wait_for_approved_by_stamp(self.client, &self.namespace, &self.run, &plan).await;
        }
        try_annotate(
            self.client,
            &self.namespace,
            &self.run,
            annotations::APPROVE,
            Some(&plan),
        )
        .await
    }
}

/// Waits until approving `run` (with `plan`) as `client`'s user gets approved-by stamped:
/// the chart's admission policy is in force, as it is a moment after an install. Tried as
/// a dry run, which admission sees like any other request.
pub async fn wait_for_approved_by_stamp(client: &Client, ns: &str, run: &str, plan: &str) {
    let api = Api::<SyncRun>::namespaced(client.clone(), ns);
    let patch = json!({"metadata": {"annotations": {annotations::APPROVE: plan}}});
    let dry_run = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    super::eventually(
        "the approved-by stamp to be in force",
        Duration::from_secs(30),
        || async {
            let approved = api.patch(run, &dry_run, &Patch::Merge(&patch)).await.ok()?;
            approved
                .annotations()
                .contains_key(annotations::APPROVED_BY)
                .then_some(())
        },
    )
    .await;
}

impl<'a> std::future::IntoFuture for Approval<'a> {
    type Output = SyncRun;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = SyncRun> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let run = self.run.clone();
            self.try_send()
                .await
                .unwrap_or_else(|e| panic!("the approval of {run} is accepted: {e}"))
        })
    }
}

/// Events about `name` with `reason`, newest last. Events are published just after the
/// status change a test waits for, so this waits for at least one, then a moment more
/// for any duplicate to show.
pub async fn events(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = || async {
        let mut list = api.list(&ListParams::default()).await.ok()?.items;
        list.retain(|e| {
            e.involved_object.name.as_deref() == Some(name) && e.reason.as_deref() == Some(reason)
        });
        list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        Some(
            list.into_iter()
                .filter_map(|e| e.message)
                .collect::<Vec<String>>(),
        )
    };
    super::eventually(
        &format!("a {reason} Event about {name}"),
        Duration::from_secs(30),
        || async { list().await.filter(|l| !l.is_empty()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    list().await.unwrap_or_default()
}

pub fn names(objects: &[impl ResourceExt]) -> Vec<String> {
    let mut names: Vec<String> = objects.iter().map(|o| o.name_any()).collect();
    names.sort();
    names
}

/// Merges `spec` into the spec of the repository `fleet` of `ns`.
pub async fn patch_spec(client: &Client, ns: &str, spec: serde_json::Value) {
    Api::<GitopsRepository>::namespaced(client.clone(), ns)
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
}

/// A sync request by `who` (an editor may ask for one): the repository plans its
/// revision again even if it is unchanged.
pub async fn request_sync(who: &Client, ns: &str, repository: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {annotations::SYNC_REQUESTED_AT: value}}});
    Api::<GitopsRepository>::namespaced(who.clone(), ns)
        .patch(repository, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}
