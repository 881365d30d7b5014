//! Apply throughput against the test control plane, in one invocation and on one API
//! server, for generated fleets of each size in FLEETGATE_BENCH_NODES (comma-separated,
//! default `2000,10000`):
//!
//! - the server's ceiling: a tight client sending the objects, 32 requests in flight, no
//!   reads — as plain creates, and as server-side applies;
//! - `fleetgate controller` at its default `--apply-concurrency` (and at each value of
//!   FLEETGATE_BENCH_CONCURRENCY, comma-separated, if set), from the approval until the
//!   run is Applied (conflict checks, status and verification included);
//! - `kubectl apply --server-side` of the same objects as one YAML file.
//!
//! Each runs in a namespace of its own. For each it prints objects/s, the API server's CPU
//! seconds per 1,000 objects (from /proc/<pid>/stat of the test control plane's
//! kube-apiserver) and API requests per object (completed requests in that namespace in
//! the audit log the test control plane writes, between two marker requests).
//! Run with `make bench-apply` (it starts the control plane).
//!
//! FLEETGATE_BENCH_ONLY=health measures what health-gated apply costs the controller, side
//! by side for each size: the same fleet applied in a namespace no provider serves (the
//! run ends as soon as its writes are verified, as before health gating) and in one a
//! provider serves (a registration Lease, and a provider in this process that reports
//! each object Ready for its generation as the watch delivers it, 32 writes in flight):
//! the run then waits in Converging until every object is reported Ready.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fleetgate::api::SyncRun;
use fleetgate::api::syncrun::Phase;
use fleetgate::fleet::synth::{Shape, fleet_yaml};
use fleetgate::fleet::{self, FleetObject, ResolveOptions};
use futures::{StreamExt, stream};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use support::operator::*;
use support::procstat::{apiserver_pid, cpu_seconds, rss_mib, status_bytes, testenv_dir};

fn list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// Whose CPU a measurement counts as the client's.
#[derive(Clone, Copy)]
enum ClientCpu {
    /// This process (the ceiling client runs in it).
    Bench,
    /// The children this process has waited for (kubectl).
    Children,
    /// Another process (the controller).
    Process(u32),
}

impl ClientCpu {
    fn seconds(self) -> f64 {
        match self {
            Self::Bench => cpu_seconds("self", false),
            Self::Children => cpu_seconds("self", true),
            Self::Process(pid) => cpu_seconds(&pid.to_string(), false),
        }
    }
}

/// A memory field of /proc/PID/status (VmRSS:, VmHWM:), in MiB.
fn memory_mib(pid: u32, field: &str) -> u64 {
    status_bytes(pid, field) / (1024 * 1024)
}

/// A request the audit log will show, to find where a measurement starts and ends.
async fn mark(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
    let _ = api.get_opt(name).await;
}

/// Where a measurement's events start: the audit log file (its inode) and its size.
#[derive(Clone, Copy)]
struct AuditPosition {
    inode: u64,
    offset: u64,
    at: std::time::SystemTime,
}

fn audit_position() -> AuditPosition {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(testenv_dir().join("audit.log")).ok();
    AuditPosition {
        inode: meta.as_ref().map_or(0, |m| m.ino()),
        offset: meta.as_ref().map_or(0, |m| m.len()),
        at: std::time::SystemTime::now(),
    }
}

/// The audit log from `from` on: the rest of the file when it was not rotated since;
/// otherwise the files rotated since (at 100 MB, the API server's default; a
/// 100,000-node apply fills several), then the new one.
fn audit_log_since(from: AuditPosition) -> String {
    use std::io::{Read, Seek};
    let read_from = |path: &std::path::Path, offset: u64, into: &mut String| {
        if let Ok(mut file) = std::fs::File::open(path) {
            let _ = file.seek(std::io::SeekFrom::Start(offset));
            let _ = file.read_to_string(into);
        }
    };
    let mut log = String::new();
    let now = audit_position();
    if now.inode == from.inode {
        read_from(&testenv_dir().join("audit.log"), from.offset, &mut log);
        return log;
    }
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(testenv_dir())
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    rotated.retain(|p| {
        let named = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".log"));
        let since = std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= from.at);
        named && since
    });
    rotated.sort();
    for path in rotated {
        read_from(&path, 0, &mut log);
    }
    read_from(&testenv_dir().join("audit.log"), 0, &mut log);
    log
}

/// Completed requests in `ns` between the two markers, once the log shows the second,
/// by verb and resource.
async fn audited_requests(
    ns: &str,
    from: AuditPosition,
    start: &str,
    end: &str,
) -> BTreeMap<String, usize> {
    for _ in 0..600 {
        let log = audit_log_since(from);
        let (mut counting, mut count) = (false, BTreeMap::new());
        for event in log
            .lines()
            .filter(|l| l.contains(ns))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            let object = &event["objectRef"];
            if object["namespace"] != ns || event["stage"] != "ResponseComplete" {
                continue;
            }
            if object["name"] == start {
                counting = true;
            } else if object["name"] == end {
                if counting {
                    return count;
                }
            } else if counting {
                let what = format!(
                    "{} {}{}",
                    event["verb"].as_str().unwrap_or_default(),
                    object["resource"].as_str().unwrap_or_default(),
                    object["subresource"]
                        .as_str()
                        .map(|s| format!("/{s}"))
                        .unwrap_or_default()
                );
                *count.entry(what).or_insert(0) += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the audit log has no end marker {end} after a minute");
}

struct Measured {
    what: String,
    seconds: f64,
    cpu: f64,
    client_cpu: f64,
    requests: BTreeMap<String, usize>,
}

impl Measured {
    fn requests(&self) -> usize {
        self.requests.values().sum()
    }

    /// This measurement as a row of the printed table, for `count` objects.
    fn row(&self, nodes: usize, count: usize) -> String {
        let per_object = |x: f64| x / count as f64;
        format!(
            "| {nodes} ({count}) | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            self.what,
            count as f64 / self.seconds,
            per_object(self.cpu * 1000.0),
            per_object(self.client_cpu * 1000.0),
            per_object(self.requests() as f64)
        )
    }
}

/// Measures `work` (which applies `objects` objects in `ns`).
async fn measure<F: std::future::Future<Output = ()>>(
    what: &str,
    client: &kube::Client,
    ns: &str,
    whose: ClientCpu,
    work: F,
) -> Measured {
    let pid = apiserver_pid().to_string();
    let from = audit_position();
    mark(client, ns, "bench-start").await;
    let (cpu, client_cpu) = (cpu_seconds(&pid, false), whose.seconds());
    let started = Instant::now();
    work.await;
    let seconds = started.elapsed().as_secs_f64();
    let (cpu, client_cpu) = (cpu_seconds(&pid, false) - cpu, whose.seconds() - client_cpu);
    mark(client, ns, "bench-end").await;
    let requests = audited_requests(ns, from, "bench-start", "bench-end").await;
    Measured {
        what: what.into(),
        seconds,
        cpu,
        client_cpu,
        requests,
    }
}

fn objects_in(desired: &[FleetObject], ns: &str) -> Vec<serde_json::Value> {
    desired
        .iter()
        .map(|o| {
            fleetgate::controller::live::desired_object(
                o.kind(),
                &o.name,
                ns,
                "fleet",
                &o.spec,
                None,
            )
        })
        .collect()
}

/// The ceiling: every object sent as fast as the server takes them, 32 at a time.
async fn ceiling(client: &kube::Client, ns: &str, objects: &[serde_json::Value], apply: bool) {
    let results: Vec<Result<(), String>> = stream::iter(objects)
        .map(|o| async move {
            let obj: DynamicObject =
                serde_json::from_value(o.clone()).map_err(|e| e.to_string())?;
            let kind = obj
                .types
                .as_ref()
                .map(|t| t.kind.clone())
                .unwrap_or_default();
            let kind = fleetgate::fleet::ObjectKind::ALL
                .into_iter()
                .find(|k| k.as_str() == kind)
                .ok_or("unknown kind")?;
            let api = fleetgate::controller::live::create_api(client, ns, kind);
            let name = obj.metadata.name.clone().unwrap_or_default();
            let result = if apply {
                api.patch(
                    &name,
                    &PatchParams::apply("bench").force(),
                    &Patch::Apply(&obj),
                )
                .await
            } else {
                api.create(&PostParams::default(), &obj).await
            };
            result.map(|_| ()).map_err(|e| e.to_string())
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} writes failed: {:?}",
        failed.len(),
        failed.first()
    );
}

async fn count_nodes(client: &kube::Client, ns: &str) -> usize {
    Api::<fleetgate::api::FleetNode>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len()
}

/// What one fleetgate run showed besides its throughput.
struct ControllerFigures {
    /// Repository created to AwaitingApproval, in seconds.
    planning: f64,
    /// Resident memory (MiB) started and leading, with the fleet applied and watched, and
    /// at its peak.
    idle: u64,
    after: u64,
    peak: u64,
}

/// fleetgate: plan, approve, and measure from the approval until the run is Applied.
async fn fleetgate_run(
    env: &support::TestEnv,
    text: &str,
    nodes: usize,
    concurrency: Option<usize>,
    provider: Provider,
) -> (Measured, ControllerFigures) {
    let ns = env.namespace("bench-fleetgate").await;
    let git = support::git::server();
    let repo = git.create_repo(&format!("bench-{}", ns.name));
    let head = repo.commit(&[("fleet.yaml", text.as_bytes())], "generated fleet");
    let setting = concurrency.map(|c| c.to_string());
    let mut args = vec!["--max-fleet-objects", "1000000"];
    if let Some(c) = &setting {
        args.extend(["--apply-concurrency", c.as_str()]);
    }
    let controller = ControllerProcess::start(&ns, &args);
    let ready = Instant::now();
    while controller
        .http_get("/readyz")
        .is_none_or(|(code, _)| code != 200)
    {
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "controller not ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mib(controller.pid());
    let planning = Instant::now();
    create_repository(
        &ns.client,
        &ns.name,
        "fleet",
        serde_json::json!({"url": git.file_url(&repo), "ref": {"branch": "main"}, "interval": "10m"}),
    )
    .await;
    // 100,000 nodes take longer than a test's minute to fetch, plan and store.
    let run = run_in_phase_within(
        &ns.client,
        &ns.name,
        &head,
        Phase::AwaitingApproval,
        Duration::from_secs(600),
    )
    .await;
    let planning = planning.elapsed().as_secs_f64();
    let name = run.metadata.name.clone().unwrap();
    let plan_id = run.status.unwrap().plan_id.unwrap();
    let runs: Api<SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    let what = match (concurrency, provider) {
        (_, Provider::Reporting) => "fleetgate, health-gated: a provider reports".to_owned(),
        (None, Provider::None) => "fleetgate (default concurrency)".to_owned(),
        (Some(c), Provider::None) => format!("fleetgate, --apply-concurrency {c}"),
    };
    let reporting = match provider {
        Provider::Reporting => Some(tokio::spawn(report_ready(
            ns.client.clone(),
            ns.name.clone(),
        ))),
        Provider::None => None,
    };
    let whose = ClientCpu::Process(controller.pid());
    let measured = measure(&what, &ns.client, &ns.name, whose, async {
        // One watch rather than polling, so that the bench's own requests stay out of
        // the count.
        let applied =
            kube::runtime::wait::await_condition(runs.clone(), &name, |r: Option<&SyncRun>| {
                r.and_then(|r| r.status.as_ref())
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p.is_finished())
            });
        annotate(
            &ns.client,
            &ns.name,
            &name,
            fleetgate::api::annotations::APPROVE,
            Some(&plan_id),
        )
        .await;
        let done = tokio::time::timeout(Duration::from_secs(1200), applied)
            .await
            .expect("applied within 20 minutes")
            .expect("the watch works");
        let status = done.and_then(|r| r.status).unwrap_or_default();
        assert_eq!(status.phase, Some(Phase::Applied), "{:?}", status.message);
    })
    .await;
    if let Some(task) = reporting {
        task.abort();
    }
    assert_eq!(count_nodes(&ns.client, &ns.name).await, nodes);
    let after = rss_mib(controller.pid());
    let peak = memory_mib(controller.pid(), "VmHWM:");
    let figures = ControllerFigures {
        planning,
        idle,
        after,
        peak,
    };
    (measured, figures)
}

/// Whether a provider serves the run's namespace.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Provider {
    /// None: no registration Lease, nothing waited for.
    None,
    /// A registration Lease for the four kinds a provider realizes, and [`report_ready`].
    Reporting,
}

/// A provider that realizes everything at once: registers in `ns`, then reports each
/// fleet object it serves Ready for its generation as the watch delivers it.
async fn report_ready(client: kube::Client, ns: String) {
    use fleetgate::api::fleet::status::{ProviderReason, registration};
    use fleetgate::fleet::ObjectKind;
    let served = [
        ObjectKind::FleetNode,
        ObjectKind::SdwanNetwork,
        ObjectKind::SdwanPeer,
        ObjectKind::VirtualIp,
    ];
    let kinds: Vec<&str> = served.iter().map(|k| k.as_str()).collect();
    let lease = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": format!("{}bench", registration::LEASE_PREFIX),
            "labels": {registration::PROVIDER_LABEL: "bench"},
            "annotations": {registration::KINDS_ANNOTATION: kinds.join(","),
                registration::CONTRACT_ANNOTATION: fleetgate::api::fleet::status::CONTRACT_VERSION}},
        "spec": {"holderIdentity": "bench", "leaseDurationSeconds": 3600},
    });
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &ns);
    leases
        .patch(
            "fleet-provider-bench",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&lease),
        )
        .await
        .unwrap();
    let watches = served.map(|kind| {
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &fleetgate::controller::live::api_resource(kind),
        );
        kube::runtime::watcher(api.clone(), Default::default())
            .applied_objects()
            .filter_map(|o| async move { o.ok() })
            .map(move |o| (api.clone(), o))
            .boxed()
    });
    stream::select_all(watches)
        .filter(|(_, o)| {
            let generation = o.metadata.generation;
            let observed = o.data["status"]["observedGeneration"].as_i64();
            async move { generation.is_some() && observed != generation }
        })
        .map(|(api, o)| async move {
            let generation = o.metadata.generation;
            let mut conditions = Vec::new();
            ProviderReason::Available.set(&mut conditions, "realized", generation, &fleetgate::api::now());
            let status = serde_json::json!({"status": {"observedGeneration": generation, "conditions": conditions}});
            let name = o.metadata.name.clone().unwrap_or_default();
            let _ = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await;
        })
        .buffer_unordered(32)
        .for_each(|_| async {})
        .await;
}

/// The generated fleet of `nodes` nodes, and how many objects it resolves to.
fn generated(nodes: usize) -> (String, usize) {
    let text = fleet_yaml(Shape::new(nodes), 1);
    let count = fleet::desired_state("fleet.yaml", text.as_bytes(), &ResolveOptions::default())
        .unwrap()
        .0
        .objects
        .len();
    (text, count)
}

/// FLEETGATE_BENCH_ONLY=health: the controller with and without a provider to wait for.
async fn health_cost(env: &support::TestEnv, sizes: &[usize]) {
    let mut rows = Vec::new();
    for &nodes in sizes {
        let (text, count) = generated(nodes);
        for provider in [Provider::None, Provider::Reporting] {
            let (m, f) = fleetgate_run(env, &text, nodes, None, provider).await;
            let row = format!(
                "| {nodes} ({count}) | {} | {:.1} | {:.1} | {} | {} |",
                m.what, m.seconds, m.client_cpu, f.after, f.peak
            );
            println!("so far: {row}");
            rows.push(row);
        }
    }
    println!(
        "| nodes (objects) | run | approval to Applied, s | controller CPU s | controller RSS after, MiB | controller peak RSS, MiB |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
}

async fn kubectl_run(
    env: &support::TestEnv,
    objects: &[serde_json::Value],
    nodes: usize,
) -> Measured {
    let ns = env.namespace("bench-kubectl").await;
    let mut yaml = String::new();
    for o in objects_in_ns(objects, &ns.name) {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml_ng::to_string(&o).unwrap());
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let kubeconfig = env.kubeconfig.clone();
    let whose = ClientCpu::Children;
    let measured = measure(
        "kubectl apply --server-side",
        &ns.client,
        &ns.name,
        whose,
        async {
            let path = file.path().to_owned();
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(support::tool("kubectl"))
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(["apply", "--server-side", "--field-manager", "bench", "-f"])
                    .arg(&path)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        },
    )
    .await;
    assert_eq!(count_nodes(&ns.client, &ns.name).await, nodes);
    measured
}

fn objects_in_ns(objects: &[serde_json::Value], ns: &str) -> Vec<serde_json::Value> {
    objects
        .iter()
        .map(|o| {
            let mut o = o.clone();
            o["metadata"]["namespace"] = serde_json::json!(ns);
            o
        })
        .collect()
}

async fn ceiling_run(
    env: &support::TestEnv,
    objects: &[serde_json::Value],
    nodes: usize,
    apply: bool,
) -> Measured {
    let ns = env
        .namespace(if apply { "bench-ssa" } else { "bench-create" })
        .await;
    let objects = objects_in_ns(objects, &ns.name);
    let what = if apply {
        "ceiling: server-side apply, 32 in flight"
    } else {
        "ceiling: create, 32 in flight"
    };
    let measured = measure(
        what,
        &ns.client,
        &ns.name,
        ClientCpu::Bench,
        ceiling(&ns.client, &ns.name, &objects, apply),
    )
    .await;
    assert_eq!(count_nodes(&ns.client, &ns.name).await, nodes);
    measured
}

fn controller_note(nodes: usize, f: &ControllerFigures) -> String {
    format!(
        "{nodes} nodes: planning (repository created to AwaitingApproval) {:.1} s; controller RSS {} MiB idle, {} MiB with the fleet applied and watched, peak {} MiB",
        f.planning, f.idle, f.after, f.peak
    )
}

/// FLEETGATE_BENCH_ONLY=fleetgate: only the controller, for sizes too large to apply
/// four times (100,000 nodes): throughput, server CPU, requests, memory and planning.
async fn fleetgate_only(env: &support::TestEnv, sizes: &[usize]) {
    for &nodes in sizes {
        let (text, count) = generated(nodes);
        let (measured, figures) = fleetgate_run(env, &text, nodes, None, Provider::None).await;
        println!("{}", measured.row(nodes, count));
        println!("{}", controller_note(nodes, &figures));
    }
}

/// The run with the median time of `runs`.
fn median(mut runs: Vec<Measured>) -> Measured {
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks for names; there are none to list.
    }
    let env = support::env();
    let client = env.client().await;
    support::install_crds(&client, &fleetgate::api::crds()).await;
    let sizes = list("FLEETGATE_BENCH_NODES", "2000,10000");
    match std::env::var("FLEETGATE_BENCH_ONLY").as_deref() {
        Ok("fleetgate") => return fleetgate_only(env, &sizes).await,
        Ok("health") => return health_cost(env, &sizes).await,
        _ => {}
    }
    let concurrencies = list("FLEETGATE_BENCH_CONCURRENCY", "");
    let repeat = list("FLEETGATE_BENCH_REPEAT", "1")
        .first()
        .copied()
        .unwrap_or(1)
        .max(1);
    // The API server's first writes of a kind are slower: warm it up off the record.
    let warm = fleet_yaml(Shape::new(200), 1);
    let warm = fleet::desired_state("fleet.yaml", warm.as_bytes(), &ResolveOptions::default())
        .unwrap()
        .0;
    ceiling_run(env, &objects_in(&warm.objects, "placeholder"), 200, true).await;
    let mut table = vec![
        "| nodes (objects) | client | objects/s | kube-apiserver CPU s / 1,000 objects | client CPU s / 1,000 objects | API requests / object |".to_owned(),
        "|---|---|---:|---:|---:|---:|".to_owned(),
    ];
    let mut notes = Vec::new();
    for nodes in sizes {
        let text = fleet_yaml(Shape::new(nodes), 1);
        let desired =
            fleet::desired_state("fleet.yaml", text.as_bytes(), &ResolveOptions::default())
                .unwrap()
                .0;
        let count = desired.objects.len();
        let objects = objects_in(&desired.objects, "placeholder");
        // Each repetition runs every client once, interleaved; the medians are shown.
        let settings: Vec<Option<usize>> = std::iter::once(None)
            .chain(concurrencies.iter().copied().map(Some))
            .collect();
        let mut runs: Vec<Vec<Measured>> = Vec::new();
        for _ in 0..repeat {
            let mut round = vec![
                ceiling_run(env, &objects, nodes, false).await,
                ceiling_run(env, &objects, nodes, true).await,
            ];
            for setting in &settings {
                let (measured, figures) =
                    fleetgate_run(env, &text, nodes, *setting, Provider::None).await;
                if setting.is_none() {
                    notes.push(controller_note(nodes, &figures));
                }
                round.push(measured);
            }
            round.push(kubectl_run(env, &objects, nodes).await);
            for (i, m) in round.into_iter().enumerate() {
                if runs.len() <= i {
                    runs.push(Vec::new());
                }
                runs[i].push(m);
            }
        }
        let rows: Vec<Measured> = runs.into_iter().map(median).collect();
        let first_row = table.len();
        for m in &rows {
            table.push(m.row(nodes, count));
        }
        for m in &rows[2..rows.len() - 1] {
            notes.push(format!(
                "{nodes} nodes, {}: requests {:?}",
                m.what, m.requests
            ));
        }
        let rate = |m: &Measured| count as f64 / m.seconds;
        let (create, ssa, ours) = (rate(&rows[0]), rate(&rows[1]), rate(&rows[2]));
        let kubectl = rate(&rows[rows.len() - 1]);
        notes.push(format!(
            "{nodes} nodes: fleetgate at {:.0}% of the server-side apply ceiling and {:.0}% of the create ceiling, {:.1}x kubectl",
            100.0 * ours / ssa,
            100.0 * ours / create,
            ours / kubectl
        ));
        // Printed as soon as known: a larger size may take long, or fail.
        for line in &table[first_row..] {
            println!("so far: {line}");
        }
        if let Some(last) = notes.last() {
            println!("so far: {last}");
        }
    }
    println!("{} repetition(s), medians:", repeat);
    for line in table.iter().chain(&notes) {
        println!("{line}");
    }
}
