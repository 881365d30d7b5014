//! Outages of the control plane's own processes, for the chaos tests: stop one and start
//! it again with the same command line, as a supervisor would.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fleetgate::api::FleetNode;
use fleetgate::fleet::synth::{Shape, fleet_yaml};
use kube::api::{Api, ListParams};

use super::fleet::Fleet;

/// Stops the control plane's `name` process (`kube-apiserver` or `etcd`, as named by its
/// pid file beside the kubeconfig) with SIGTERM — a SIGKILL would lose the audit events
/// kube-apiserver has not written yet, and with them the counts the tests make — and
/// starts it again with the same command line after `down`.
pub fn restart_process(name: &str, down: Duration) {
    let dir: PathBuf = super::env().kubeconfig.parent().unwrap().into();
    let pid_file = dir.join(format!("{name}.pid"));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(status.unwrap().success());
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        // A zombie until its parent (the watchdog's shell) reaps it: gone enough.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.split_whitespace().nth(2) == Some("Z") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(down);
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .unwrap();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // hack/testenv.sh stops what the pid file names.
    std::fs::write(&pid_file, child.id().to_string()).unwrap();
    std::thread::spawn(move || child.wait());
}

/// The chaos tests' fleet size: `default` nodes, or FLEETGATE_CHAOS_NODES.
pub fn chaos_nodes(default: usize) -> usize {
    std::env::var("FLEETGATE_CHAOS_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// A fleet of `nodes` generated nodes, fetched over git:// every 5 s, under a controller
/// started as pod `fleetgate-0` with `flags`.
pub async fn generated_fleet(prefix: &str, nodes: usize, flags: &[&str]) -> Fleet {
    let fleet = fleet_yaml(Shape::new(nodes), 1);
    Fleet::in_namespace(prefix)
        .holding(fleet.as_bytes())
        .over_git_protocol()
        .with_spec(serde_json::json!({"interval": "5s"}))
        .controller_in_pod("fleetgate-0")
        .controller_flags(flags)
        .controller_running()
        .await
}

/// Once the audit log has caught up: each of the `nodes` FleetNodes of `ns` was created
/// by exactly one request, none was created twice or written otherwise, and all exist.
pub async fn assert_each_node_created_once(client: kube::Client, ns: &str, nodes: usize) {
    super::eventually(
        "every create in the audit log",
        Duration::from_secs(20),
        || async { (super::audited_writes(ns, "fleetnodes").created >= nodes).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        super::audited_writes(ns, "fleetnodes"),
        super::Writes {
            created: nodes,
            created_again: 0,
            other: 0,
        },
        "writes of fleetnodes"
    );
    let listed: Api<FleetNode> = Api::namespaced(client, ns);
    assert_eq!(
        listed
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        nodes
    );
}
