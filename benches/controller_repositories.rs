//! Many GitopsRepositories on one controller, against the test control plane:
//! FLEETGATE_BENCH_REPOS repositories (default 1,000) spread over
//! FLEETGATE_BENCH_NAMESPACES namespaces (default 100), each its own repository on the
//! test git server (git://) with a generated fleet of FLEETGATE_BENCH_NODES nodes
//! (default 5, names prefixed per repository so that the fleets of one namespace are
//! disjoint), `spec.interval` FLEETGATE_BENCH_INTERVAL (default 1m) and approval `Auto`.
//! One `fleetgate controller` watches the whole cluster (no `--namespace`).
//!
//! It prints the time from the controller's start until every repository is Ready
//! (its newest run Applied or NoChanges), the controller's peak and settled resident
//! memory, the CPU seconds of the controller, kube-apiserver, etcd and the git daemon
//! over that startup, and then per interval in steady state (over two intervals), with
//! the git operations the controller's /metrics counted in each window. The steady state
//! is measured at each `--git-max-concurrent` in FLEETGATE_BENCH_GIT_CONCURRENCY
//! (comma-separated, default `16,4`; the first is the one startup runs with); each
//! further value restarts the controller with empty git caches, and the time until it
//! has resolved every repository again is printed too.
//! FLEETGATE_BENCH_TIMEOUT_MINUTES (default 25) bounds the wait for all Ready.
//! Run with `make bench-repositories` (it starts the control plane).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use fleetgate::api::GitopsRepository;
use fleetgate::fleet::synth::{Shape, fleet_yaml};
use futures::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use support::operator::*;
use support::procstat::{
    apiserver_pid, cpu_seconds_with_children, etcd_pid, git_daemon_pid, status_bytes,
};

const MIB: u64 = 1024 * 1024;
/// The controller's default `--git-max-concurrent-per-namespace`, which this bench keeps.
const PER_NAMESPACE: usize = 4;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect()
}

/// The generated fleet with every object name prefixed by `prefix`, so that the
/// repositories sharing a namespace declare disjoint objects.
fn fleet(nodes: usize, prefix: &str) -> String {
    ["base-", "role-", "node-", "net-", "vip-"]
        .iter()
        .fold(fleet_yaml(Shape::new(nodes), 1), |text, name| {
            text.replace(name, &format!("{prefix}{name}"))
        })
}

/// The sum of the samples of `name` (such as `fleetgate_git_duration_seconds_count`)
/// whose labels contain `labels` (such as `operation="fetch"`), from a /metrics body.
fn metric(body: &str, name: &str, labels: &str) -> f64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && l.contains(labels)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Counters of one moment: CPU seconds of each process, and the controller's git
/// operations and reconciles so far.
#[derive(Clone, Copy, Default)]
struct Sample {
    controller: f64,
    apiserver: f64,
    etcd: f64,
    git_daemon: f64,
    ls_remote: f64,
    ls_remote_seconds: f64,
    fetch: f64,
    reconciles: f64,
}

impl Sample {
    fn take(controller: &ControllerProcess) -> Self {
        let body = controller
            .http_get("/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let git = "fleetgate_git_duration_seconds";
        Self {
            controller: cpu_seconds_with_children(controller.pid()),
            apiserver: cpu_seconds_with_children(apiserver_pid()),
            etcd: etcd_pid().map_or(0.0, cpu_seconds_with_children),
            git_daemon: git_daemon_pid().map_or(0.0, cpu_seconds_with_children),
            ls_remote: metric(&body, &format!("{git}_count"), "operation=\"ls-remote\""),
            ls_remote_seconds: metric(&body, &format!("{git}_sum"), "operation=\"ls-remote\""),
            fetch: metric(&body, &format!("{git}_count"), "operation=\"fetch\""),
            reconciles: metric(
                &body,
                "fleetgate_reconcile_duration_seconds_count",
                "controller=\"repository\"",
            ),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            controller: self.controller - before.controller,
            apiserver: self.apiserver - before.apiserver,
            etcd: self.etcd - before.etcd,
            git_daemon: self.git_daemon - before.git_daemon,
            ls_remote: self.ls_remote - before.ls_remote,
            ls_remote_seconds: self.ls_remote_seconds - before.ls_remote_seconds,
            fetch: self.fetch - before.fetch,
            reconciles: self.reconciles - before.reconciles,
        }
    }

    fn divided(self, by: f64) -> Self {
        Self {
            controller: self.controller / by,
            apiserver: self.apiserver / by,
            etcd: self.etcd / by,
            git_daemon: self.git_daemon / by,
            ls_remote: self.ls_remote / by,
            ls_remote_seconds: self.ls_remote_seconds / by,
            fetch: self.fetch / by,
            reconciles: self.reconciles / by,
        }
    }

    fn cpu(&self) -> String {
        format!(
            "CPU s: controller {:.1}, kube-apiserver {:.1}, etcd {:.1}, git daemon {:.1}",
            self.controller, self.apiserver, self.etcd, self.git_daemon
        )
    }

    fn git(&self) -> String {
        let mean = if self.ls_remote > 0.0 {
            self.ls_remote_seconds / self.ls_remote * 1000.0
        } else {
            0.0
        };
        format!(
            "git: {:.0} ls-remote (mean {mean:.0} ms), {:.0} fetches; {:.0} repository reconciles",
            self.ls_remote, self.fetch, self.reconciles
        )
    }
}

/// The Ready condition's reason of a repository, "Ready" when it is True.
fn readiness(repo: &GitopsRepository) -> String {
    let ready = repo
        .status
        .as_ref()
        .and_then(|s| fleetgate::api::condition(&s.conditions, "Ready"));
    match ready {
        Some(c) if c.status == "True" => "Ready".into(),
        Some(c) => c.reason.clone(),
        None => "NoCondition".into(),
    }
}

/// Watches every GitopsRepository until `repos` of them are Ready; panics after
/// `timeout` with how far it got. One watch, so the bench adds little to the server.
async fn all_ready(client: &kube::Client, repos: usize, timeout: Duration, started: Instant) {
    let api: Api<GitopsRepository> = Api::all(client.clone());
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut state: HashMap<(String, String), String> = HashMap::new();
    let mut last_report = Instant::now();
    loop {
        let ready = state.values().filter(|r| *r == "Ready").count();
        if ready >= repos {
            return;
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
            for reason in state.values() {
                *reasons.entry(reason.as_str()).or_default() += 1;
            }
            eprintln!(
                "  {:.0} s: {ready} of {repos} Ready; Ready reasons seen: {reasons:?}",
                started.elapsed().as_secs_f64()
            );
        }
        let left = timeout.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "{ready} of {repos} repositories Ready after {timeout:?}"
        );
        let wait = left.min(Duration::from_secs(5));
        match tokio::time::timeout(wait, stream.try_next()).await {
            Err(_) => {}
            Ok(Ok(Some(repo))) => {
                let key = (repo.namespace().unwrap_or_default(), repo.name_any());
                state.insert(key, readiness(&repo));
            }
            Ok(Ok(None)) => panic!("the watch of GitopsRepositories ended"),
            Ok(Err(e)) => eprintln!("  watch error (retried): {e}"),
        }
    }
}

/// Repositories Ready now, from one list.
async fn count_ready(client: &kube::Client) -> (usize, usize) {
    let api: Api<GitopsRepository> = Api::all(client.clone());
    let items = api
        .list(&ListParams::default())
        .await
        .expect("GitopsRepositories list")
        .items;
    let ready = items.iter().filter(|r| readiness(r) == "Ready").count();
    (ready, items.len())
}

/// Starts a controller over the whole cluster, its Lease in `lease_namespace`.
fn controller(lease_namespace: &str, git_concurrency: usize) -> ControllerProcess {
    let concurrency = git_concurrency.to_string();
    let per_namespace = PER_NAMESPACE.to_string();
    // The test git server serves git:// URLs, which a controller refuses by default.
    let args = [
        "--lease-namespace",
        lease_namespace,
        "--allow-git-urls",
        "--git-max-concurrent",
        &concurrency,
        "--git-max-concurrent-per-namespace",
        &per_namespace,
    ];
    ControllerProcess::start_as(&support::env().kubeconfig, &args)
}

/// Counters over two intervals from now, per interval.
async fn steady_state(controller: &ControllerProcess, interval: Duration) -> Sample {
    let before = Sample::take(controller);
    tokio::time::sleep(interval * 2).await;
    Sample::take(controller).since(before).divided(2.0)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks for names; there are none to list.
    }
    let repos = setting("FLEETGATE_BENCH_REPOS", 1_000).max(1);
    let namespace_count = setting("FLEETGATE_BENCH_NAMESPACES", 100).clamp(1, repos);
    let nodes = setting("FLEETGATE_BENCH_NODES", 5).max(1);
    let interval_text = std::env::var("FLEETGATE_BENCH_INTERVAL").unwrap_or_else(|_| "1m".into());
    let interval = humantime::parse_duration(&interval_text)
        .unwrap_or_else(|e| panic!("FLEETGATE_BENCH_INTERVAL {interval_text:?}: {e}"));
    let mut concurrency = list("FLEETGATE_BENCH_GIT_CONCURRENCY", "16,4");
    if concurrency.is_empty() {
        concurrency.push(16);
    }
    let timeout = Duration::from_secs(60 * setting("FLEETGATE_BENCH_TIMEOUT_MINUTES", 25) as u64);

    let env = support::env();
    let git = support::git::server();
    let client = env.client().await;
    let setup = Instant::now();
    let mut namespaces = Vec::new();
    for i in 0..namespace_count {
        let ns = env.namespace(&format!("repos{i}")).await;
        if i == 0 {
            support::install_crds(&ns.client, &fleetgate::api::crds()).await;
        }
        namespaces.push(ns);
    }
    for i in 0..repos {
        let ns = &namespaces[i % namespace_count];
        let name = format!("fleet-{}", i / namespace_count);
        let repo = git.create_repo(&format!("{}-{name}", ns.name));
        let text = fleet(nodes, &format!("r{}-", i / namespace_count));
        repo.commit(&[("fleet.yaml", text.as_bytes())], "generated fleet");
        let spec = serde_json::json!({
            "url": git.git_url(&repo),
            "ref": {"branch": "main"},
            "interval": interval_text,
            "approval": "Auto",
        });
        create_repository(&ns.client, &ns.name, &name, spec).await;
    }
    let setup = setup.elapsed();
    println!(
        "{repos} GitopsRepositories in {namespace_count} namespaces, {nodes} nodes each, \
         interval {interval_text}, approval Auto, git:// on the test git daemon; \
         set up in {:.0} s. One controller over the whole cluster, \
         --git-max-concurrent {} (per namespace {PER_NAMESPACE}).",
        setup.as_secs_f64(),
        concurrency[0]
    );

    let lease_namespace = namespaces[0].name.clone();
    let started = Instant::now();
    let mut running = controller(&lease_namespace, concurrency[0]);
    let zero = Sample {
        controller: 0.0,
        ..Sample::take(&running)
    };
    all_ready(&client, repos, timeout, started).await;
    let took = started.elapsed();
    let startup = Sample::take(&running).since(zero);
    let at_ready = status_bytes(running.pid(), "VmRSS:");
    println!(
        "startup: every repository Ready {:.0} s after the controller started; {}; {}",
        took.as_secs_f64(),
        startup.cpu(),
        startup.git()
    );

    for (i, &c) in concurrency.iter().enumerate() {
        if i > 0 {
            drop(running);
            let restarted = Instant::now();
            running = controller(&lease_namespace, c);
            let before = Sample {
                ls_remote: 0.0,
                controller: 0.0,
                ..Sample::take(&running)
            };
            // Every repository resolved (ls-remote) once by the new process.
            let resync = loop {
                let now = Sample::take(&running).since(before);
                if now.ls_remote >= repos as f64 {
                    break now;
                }
                assert!(
                    restarted.elapsed() < interval * 3 + Duration::from_secs(120),
                    "after a restart at --git-max-concurrent {c}, {} of {repos} repositories \
                     resolved after {:?}",
                    now.ls_remote,
                    restarted.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            println!(
                "restart at --git-max-concurrent {c} (empty git caches; a repository is \
                 resolved again when its interval since status.lastFetchedAt is over): \
                 every one resolved by the new process {:.0} s after its start; {}; {}",
                restarted.elapsed().as_secs_f64(),
                resync.cpu(),
                resync.git()
            );
        }
        let per_interval = steady_state(&running, interval).await;
        let (ready, total) = count_ready(&client).await;
        println!(
            "steady state at --git-max-concurrent {c}, per interval of {interval_text} \
             (mean of 2): {}; {}; {ready} of {total} Ready at the end",
            per_interval.cpu(),
            per_interval.git()
        );
        let pid = running.pid();
        let (peak, settled) = (status_bytes(pid, "VmHWM:"), status_bytes(pid, "VmRSS:"));
        let first = if i == 0 {
            format!(", {} MiB when every repository was Ready", at_ready / MIB)
        } else {
            String::new()
        };
        println!(
            "controller memory at --git-max-concurrent {c}: peak RSS {} MiB, settled {} MiB{first}",
            peak / MIB,
            settled / MIB
        );
    }
}
