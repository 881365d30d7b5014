//! Faults and hostile tenants against the real control plane and the real git server:
//! the controller must stay alive, under the chart's memory limit, and serve a healthy
//! tenant on time. Each test bounds its own time and stops what it started.

use crate::support;

use std::time::{Duration, Instant};

use fleetgate::api::GitopsRepository;
use fleetgate::api::syncrun::Phase;
use kube::api::Api;
use support::git::{noise, server};
use support::operator::*;

const V1: &[u8] = include_bytes!("../../examples/fleet.yaml");
/// The chart's memory limit.
const CHART_LIMIT_BYTES: u64 = 512 * 1024 * 1024;

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn ready_reason(client: &kube::Client, ns: &str, name: &str, reason: &str) -> String {
    let api: Api<GitopsRepository> = Api::namespaced(client.clone(), ns);
    support::eventually(
        &format!("{name}: Ready with reason {reason}"),
        Duration::from_secs(90),
        || {
            let api = api.clone();
            async move {
                let repo = api.get(name).await.ok()?;
                let c = fleetgate::api::condition(&repo.status?.conditions, "Ready")?.clone();
                (c.reason == reason).then_some(c.message)
            }
        },
    )
    .await
}

#[tokio::test]
#[ignore = "chaos suite: make chaos"]
async fn hostile_repositories_leave_a_healthy_tenant_served_on_time() {
    let _up = crate::control_plane_up().await;
    let noisy = support::env().namespace("noisy").await;
    let hostile = support::env().namespace("hostile").await;
    let healthy = support::env().namespace("healthy").await;
    support::install_crds(&hostile.client, &fleetgate::api::crds()).await;
    let git = server();

    // A server on loopback that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().flatten() {
            held.push(conn);
        }
    });
    // A 400 MiB fleet file of one byte: under 2 MiB once packed.
    let inflating = git.create_repo("inflating");
    let bomb = vec![b'#'; 400 * 1024 * 1024];
    let bomb_head = inflating.commit(&[("fleet.yaml", &bomb)], "inflating");
    drop(bomb);
    // A history far past the fetch limit.
    let huge = git.create_repo("huge");
    huge.commit(
        &[
            ("junk.bin", &noise(24 * 1024 * 1024, 0)),
            ("fleet.yaml", V1),
        ],
        "junk",
    );
    let good = git.create_repo("good");
    let good_head = good.commit(&[("fleet.yaml", V1)], "first");

    let mut controller = ControllerProcess::start(
        &noisy,
        &[
            "--namespace",
            &hostile.name,
            "--namespace",
            &healthy.name,
            "--git-max-concurrent",
            "5",
            "--git-max-concurrent-per-namespace",
            "3",
            "--git-max-repository-mib",
            "16",
            "--git-io-timeout",
            "30s",
        ],
    );
    let pid = controller.pid();

    let spec = |url: String| serde_json::json!({"url": url, "ref": {"branch": "main"}, "interval": "5s", "timeout": "3s"});
    for i in 0..6 {
        let url = format!("git://127.0.0.1:{silent_port}/silent-{i}.git");
        create_repository(
            &noisy.client,
            &noisy.name,
            &format!("silent-{i}"),
            spec(url),
        )
        .await;
    }
    let mut inflating_spec = spec(git.git_url(&inflating));
    inflating_spec["timeout"] = "60s".into();
    create_repository(&hostile.client, &hostile.name, "inflating", inflating_spec).await;
    let mut huge_spec = spec(git.git_url(&huge));
    huge_spec["timeout"] = "60s".into();
    create_repository(&hostile.client, &hostile.name, "huge", huge_spec).await;

    // The silent remotes now hold every slot of their namespace (and most of the
    // controller's) for 30 s each; the healthy tenant arrives in the middle of it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let interval = Duration::from_secs(5);
    let created = Instant::now();
    create_repository(
        &healthy.client,
        &healthy.name,
        "fleet",
        spec(git.git_url(&good)),
    )
    .await;
    let run = run_in_phase(
        &healthy.client,
        &healthy.name,
        &good_head,
        Phase::AwaitingApproval,
    )
    .await;
    let took = created.elapsed();
    assert!(
        took < interval + Duration::from_secs(10),
        "the healthy tenant's plan took {took:?}"
    );
    assert!(run.status.unwrap().plan_id.is_some());

    let message = ready_reason(&noisy.client, &noisy.name, "silent-0", "Timeout").await;
    assert!(message.contains("did not finish within 3s"), "{message}");
    let message = ready_reason(&hostile.client, &hostile.name, "huge", "RepositoryTooLarge").await;
    assert!(
        message.contains(&format!("after {} bytes", 16 * 1024 * 1024)),
        "{message}"
    );
    let failed = run_in_phase(&hostile.client, &hostile.name, &bomb_head, Phase::Failed).await;
    assert_eq!(
        fleetgate::api::condition(&failed.status.clone().unwrap().conditions, "Ready")
            .map(|c| c.reason.clone()),
        Some("FileTooLarge".to_owned())
    );
    let message = failed.status.unwrap().message.unwrap_or_default();
    assert!(
        message.contains("more than the 33554432 bytes a fleet file may have"),
        "{message}"
    );

    let peak = peak_rss(pid);
    assert!(peak > 0, "VmHWM of the controller is readable");
    assert!(
        peak < CHART_LIMIT_BYTES,
        "the controller peaked at {} MiB",
        peak / 1024 / 1024
    );
    eprintln!(
        "healthy plan after {took:?}; controller peak RSS {} MiB",
        peak / 1024 / 1024
    );
    // Alive: it still answers.
    assert_eq!(controller.http_get("/healthz").map(|(c, _)| c), Some(200));
    controller.kill();
}

#[tokio::test]
#[ignore = "chaos suite: make chaos"]
async fn a_controller_killed_again_and_again_from_plan_to_apply_applies_each_action_once() {
    let _up = crate::control_plane_up().await;
    use fleetgate::api::SyncRun;
    use fleetgate::fleet::synth::{Shape, fleet_yaml};
    use kube::api::ListParams;

    // Large enough that applying it takes several of the lives below (0.5 to 2.5 s)
    // even at the engine's speed: 1,000 nodes were sometimes applied within two.
    const NODES: usize = 2000;
    let ns = support::env().namespace("killed").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let git = server();
    let repo = git.create_repo("killed");
    let fleet = fleet_yaml(Shape::new(NODES), 1);
    let head = repo.commit(&[("fleet.yaml", fleet.as_bytes())], "first");
    let spec =
        serde_json::json!({"url": git.git_url(&repo), "ref": {"branch": "main"}, "interval": "2s"});
    create_repository(&ns.client, &ns.name, "fleet", spec).await;
    let runs: Api<SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    let args = ["--apply-concurrency", "2"];

    // Kills at pseudo-random moments (printed, to replay a failure), approving as soon
    // as a plan is there, whether or not a controller is running at that moment.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    eprintln!("kill schedule seed {seed}");
    let mut x = seed;
    let mut approved = false;
    let mut kills = 0;
    // A bound against hanging, not a speed target: each life spends most of its time
    // syncing its caches, and beside the other chaos tests on two cores a run that keeps
    // progressing took over 150 s (its progress is in the failure's dump).
    let deadline = Instant::now() + Duration::from_secs(300);
    let finished = loop {
        assert!(
            Instant::now() < deadline,
            "the run did not finish after {kills} kills"
        );
        let mut controller = ControllerProcess::restart_in_pod(&ns, "fleetgate-0", &args);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let alive = Duration::from_millis(500 + x % 2000);
        let until = Instant::now() + alive;
        let mut done = None;
        while Instant::now() < until {
            let list = runs.list(&ListParams::default()).await.unwrap().items;
            assert!(list.len() <= 1, "one revision, one SyncRun: {}", list.len());
            if let Some(run) = list.first() {
                let status = run.status.clone().unwrap_or_default();
                if !approved && status.phase == Some(Phase::AwaitingApproval) {
                    let plan = status.plan_id.clone().unwrap();
                    ns.approve(run).plan(&plan).await;
                    approved = true;
                }
                if status.phase.is_some_and(|p| p.is_finished()) {
                    done = Some(run.clone());
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(run) = done {
            break run;
        }
        controller.kill();
        kills += 1;
    };
    assert!(kills >= 3, "only {kills} kills before the run finished");
    let status = finished.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Applied), "{:?}", status.message);
    assert_eq!(finished.spec.revision, head);
    let progress = status.progress.unwrap();
    assert_eq!(progress.applied, progress.total);
    eprintln!("applied {} actions through {kills} kills", progress.total);
    // Each object was created by exactly one request, and never written again. The audit
    // log is written a moment after the requests: wait for all of it, then a while more
    // for a duplicate to show.
    support::eventually(
        "an audited create of every fleetnode",
        Duration::from_secs(20),
        || async {
            (support::audited_writes(&ns.name, "fleetnodes").created >= NODES).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = support::audited_writes(&ns.name, "fleetnodes");
    let once = support::Writes {
        created: NODES,
        created_again: 0,
        other: 0,
    };
    assert_eq!(writes, once, "writes of fleetnodes");
    let nodes: Api<fleetgate::api::FleetNode> = Api::namespaced(ns.client.clone(), &ns.name);
    let nodes = nodes.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(nodes.len(), NODES);
    assert!(nodes.iter().all(|n| n.metadata.generation == Some(1)));
}

/// A TCP relay to the test git daemon that can cut every connection and refuse new ones,
/// as a git server that stops and later starts again; it relays at most `rate` bytes/s
/// from the server, so that a fetch takes long enough to be cut in the middle.
struct GitRelay {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: std::sync::Arc<std::sync::atomic::AtomicU64>,
    relayed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl GitRelay {
    fn start(upstream: u16, rate: u64) -> Self {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let cuts = Arc::new(AtomicU64::new(0));
        let relayed = Arc::new(AtomicU64::new(0));
        let (u, c, r) = (up.clone(), cuts.clone(), relayed.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !u.load(Ordering::SeqCst) {
                    continue; // dropped at once: the server is down
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let generation = c.load(Ordering::SeqCst);
                let pump = |mut from: TcpStream, mut to: TcpStream, limit: Option<u64>| {
                    let (c, r) = (c.clone(), r.clone());
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if c.load(Ordering::SeqCst) != generation
                                || to.write_all(&buf[..n]).is_err()
                            {
                                break;
                            }
                            if let Some(rate) = limit {
                                r.fetch_add(n as u64, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
                            }
                        }
                        let _ = from.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                pump(client, server, None);
                pump(s2, c2, Some(rate));
            }
        });
        Self {
            port,
            up,
            cuts,
            relayed,
        }
    }

    /// Stops: every open connection is cut, new ones are dropped.
    fn stop(&self) {
        use std::sync::atomic::Ordering;
        self.up.store(false, Ordering::SeqCst);
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }

    fn start_again(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn relayed(&self) -> u64 {
        self.relayed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
#[ignore = "chaos suite: make chaos"]
async fn a_git_server_stopped_during_a_fetch_and_started_again_delays_the_plan_only() {
    let _up = crate::control_plane_up().await;
    let ns = support::env().namespace("gitdown").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let git = server();
    let repo = git.create_repo("gitdown");
    // About 8 MiB to fetch at 2 MiB/s: the cut comes in the middle.
    let head = repo.commit(
        &[("junk.bin", &noise(8 * 1024 * 1024, 1)), ("fleet.yaml", V1)],
        "first",
    );
    let relay = GitRelay::start(git.git_port, 2 * 1024 * 1024);
    let url = format!("git://127.0.0.1:{}/{}.git", relay.port, repo.name);
    let spec = serde_json::json!({"url": url, "ref": {"branch": "main"}, "interval": "2s", "timeout": "60s"});
    create_repository(&ns.client, &ns.name, "fleet", spec).await;
    let _controller = ControllerProcess::start(&ns, &[]);

    support::eventually(
        "a fetch in the middle of its pack",
        Duration::from_secs(60),
        || async { (relay.relayed() > 2 * 1024 * 1024).then_some(()) },
    )
    .await;
    relay.stop();
    // While it is down the repository says why, and is not stalled: it is retried.
    let message = ready_reason(&ns.client, &ns.name, "fleet", "FetchFailed").await;
    eprintln!("while the git server is down: {message}");
    let api: Api<GitopsRepository> = Api::namespaced(ns.client.clone(), &ns.name);
    let repository = api.get("fleet").await.unwrap();
    let stalled = fleetgate::api::condition(&repository.status.unwrap().conditions, "Stalled")
        .map(|c| c.status.clone());
    assert_eq!(stalled.as_deref(), Some("False"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    relay.start_again();

    let run = run_in_phase(&ns.client, &ns.name, &head, Phase::AwaitingApproval).await;
    assert!(run.status.unwrap().plan_id.is_some());
    let runs: Api<fleetgate::api::SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    let all = runs.list(&Default::default()).await.unwrap().items;
    assert_eq!(all.len(), 1, "one run, planned once the server was back");
}

#[tokio::test]
#[ignore = "chaos suite: make chaos"]
async fn a_leader_change_while_a_drift_correction_applies_finishes_it_once() {
    let _up = crate::control_plane_up().await;
    use fleetgate::api::SyncRun;
    use fleetgate::fleet::synth::{Shape, fleet_yaml};
    use kube::api::ListParams;

    const NODES: usize = 1000;
    let ns = support::env().namespace("leader").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let git = server();
    let repo = git.create_repo("leader");
    let fleet = fleet_yaml(Shape::new(NODES), 1);
    let head = repo.commit(&[("fleet.yaml", fleet.as_bytes())], "first");
    let spec = serde_json::json!({
        "url": git.git_url(&repo), "ref": {"branch": "main"}, "interval": "2s",
        "approval": "Auto", "driftRemediation": "Correct",
    });
    create_repository(&ns.client, &ns.name, "fleet", spec).await;
    let mut leader =
        ControllerProcess::restart_in_pod(&ns, "fleetgate-a", &["--apply-concurrency", "1"]);
    run_in_phase(&ns.client, &ns.name, &head, Phase::Applied).await;
    // The second replica waits on the Lease.
    let _standby =
        ControllerProcess::restart_in_pod(&ns, "fleetgate-b", &["--apply-concurrency", "4"]);

    // Drift: every node deleted at once; the leader starts restoring them. The leader is
    // frozen while the nodes go, so that it plans one large Drift run rather than
    // chasing the deletion with small ones that finish before the leader can be killed
    // in the middle of one.
    let nodes: Api<fleetgate::api::FleetNode> = Api::namespaced(ns.client.clone(), &ns.name);
    leader.pause();
    nodes
        .delete_collection(&Default::default(), &ListParams::default())
        .await
        .unwrap();
    support::eventually("every node deleted", Duration::from_secs(30), || {
        let nodes = nodes.clone();
        async move {
            let left = nodes.list(&ListParams::default()).await.ok()?.items.len();
            (left == 0).then_some(())
        }
    })
    .await;
    leader.resume();
    let runs: Api<SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    let drift_run = support::eventually(
        "a Drift run applying, far from done",
        Duration::from_secs(90),
        || async {
            drift_runs(&ns.client, &ns.name)
                .await?
                .into_iter()
                .find(|r| {
                    r.phase() == Some(Phase::Applying)
                        && r.status
                            .as_ref()
                            .and_then(|s| s.progress.as_ref())
                            .is_some_and(|p| p.applied >= 20 && p.pending > 100)
                })
        },
    )
    .await;
    leader.kill();
    let name = drift_run.metadata.name.clone().unwrap();
    // The standby takes the Lease once it expires, resumes the run and finishes it.
    let done = support::eventually(
        "the Drift run to finish under the new leader",
        Duration::from_secs(120),
        || {
            let runs = runs.clone();
            let name = name.clone();
            async move {
                let run = runs.get(&name).await.ok()?;
                run.status.as_ref()?.phase.filter(|p| p.is_finished())?;
                Some(run)
            }
        },
    )
    .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Applied), "{:?}", status.message);
    let progress = status.progress.unwrap();
    assert_eq!(progress.applied, progress.total);
    // The deletions reach the leader's caches as a stream of events, so a Drift run may
    // have been planned from part of them; whatever it did not cover is drift still, and
    // the new leader starts another run for it. Once they have all finished, each is
    // superseded or applied, none failed.
    let finished = support::eventually(
        "every Drift run to finish",
        Duration::from_secs(120),
        || async {
            let drift = drift_runs(&ns.client, &ns.name).await?;
            drift
                .iter()
                .all(|r| r.phase().is_some_and(Phase::is_finished))
                .then_some(drift)
        },
    )
    .await;
    for run in &finished {
        let phase = run.phase();
        assert!(
            matches!(
                phase,
                Some(Phase::Applied | Phase::Superseded | Phase::NoChanges)
            ),
            "{}: {phase:?}",
            run.metadata.name.clone().unwrap_or_default()
        );
    }
    support::eventually("every node restored", Duration::from_secs(30), || async {
        (nodes.list(&ListParams::default()).await.ok()?.items.len() == NODES).then_some(())
    })
    .await;
    // Each node: created, deleted, created again; never a create refused because it
    // already existed (a restore applied twice), and no other write.
    support::eventually(
        "the audit log caught up",
        Duration::from_secs(20),
        || async {
            (support::audited_writes(&ns.name, "fleetnodes").created >= NODES).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = support::audited_writes(&ns.name, "fleetnodes");
    assert_eq!(writes.created_again, 0, "{writes:?}");
    // The collection delete is one request on the collection, not on the objects.
    assert_eq!(writes.other, 0, "{writes:?}");
}
