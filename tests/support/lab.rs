//! The lab provider as the tests run it: `fleetgate lab-provider` as a child process, with
//! an instance of its own, and the leak check every lab test ends with (network
//! namespaces, links the lab names, daemons, /etc/netns files: the same before and after).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleetgate::api::fleet::status::Health;
use fleetgate::api::fleet::{FleetNode, Reported, SdwanNetwork, SdwanPeer, VirtualIp};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

/// A running lab provider; stopped and cleaned up (`--cleanup`) when dropped.
pub struct LabProcess {
    child: Option<Child>,
    pub instance: String,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    namespace: String,
    _dir: tempfile::TempDir,
}

/// An instance name no other test or demo on the machine uses (letters and digits).
fn fresh_instance() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "t{:x}",
        (nanos as u64 ^ u64::from(std::process::id())) & 0xff_ffff_ffff
    )
}

impl LabProcess {
    pub fn start(namespace: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fglab")
            .tempdir_in("/tmp")
            .unwrap();
        let instance = fresh_instance();
        let mut lab = Self {
            child: None,
            state_dir: dir.path().join("state"),
            log: dir.path().join("lab.log"),
            instance,
            namespace: namespace.to_owned(),
            _dir: dir,
        };
        lab.spawn();
        lab
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fleetgate"))
            .args([
                "lab-provider",
                "-n",
                &self.namespace,
                "--instance",
                &self.instance,
                "--interval",
                "1s",
            ])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env("KUBECONFIG", &super::env().kubeconfig)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("fleetgate lab-provider starts");
        self.child = Some(child);
    }

    /// SIGKILL, as a crash: the fabric stays as it is.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the provider again after [`LabProcess::kill`], with the same instance and state.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The lab's network namespaces now.
    pub fn namespaces(&self) -> Vec<String> {
        netns_with_prefix(&format!("fgl-{}-", self.instance))
    }

    /// What `--cleanup` removes: the namespaces, daemons and files of this instance.
    pub fn leftovers(&self) -> Vec<String> {
        leftovers(&self.instance, &self.state_dir)
    }

    /// Stops the provider and runs `--cleanup`, returning what it printed.
    pub fn cleanup(&mut self) -> String {
        self.kill();
        let out = Command::new(env!("CARGO_BIN_EXE_fleetgate"))
            .args(["lab-provider", "--cleanup", "--instance", &self.instance])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// BIRD's control socket of a peer, from its fabric address (198.18.<network>.<octet>).
    pub fn bird_socket(&self, peer_address: &str) -> PathBuf {
        let octets: Vec<&str> = peer_address.split('.').collect();
        self.state_dir
            .join(format!("bird/{}-{}.ctl", octets[2], octets[3]))
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- lab provider log ----\n{}", self.log_text());
            let state =
                std::fs::read_to_string(self.state_dir.join("state.json")).unwrap_or_default();
            eprintln!("---- lab state ----\n{state}");
        }
        self.cleanup();
    }
}

/// The network namespaces whose names start with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Live (not zombie) processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    pids_mentioning(needle)
        .into_iter()
        .map(|(_, c)| c)
        .collect()
}

/// [`processes_mentioning`], with their pids.
pub fn pids_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let path = entry.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        let Some(pid) = path.file_name().and_then(|n| n.to_str()?.parse().ok()) else {
            continue;
        };
        if !zombie && cmdline.contains(needle) && !cmdline.contains("lab-provider") {
            found.push((pid, cmdline.trim().to_owned()));
        }
    }
    found
}

/// Links of the machine's own namespace with a name the lab uses for its links.
pub fn lab_links_on_the_machine() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with("fgw") || n.starts_with("fgp"))
        .collect()
}

/// Everything of an instance on the machine: namespaces, /etc/netns folders, daemons,
/// links in the machine's namespace with the lab's names, the state dir.
pub fn leftovers(instance: &str, state_dir: &Path) -> Vec<String> {
    let prefix = format!("fgl-{instance}-");
    let mut found: Vec<String> = netns_with_prefix(&prefix)
        .into_iter()
        .map(|n| format!("netns {n}"))
        .collect();
    if let Ok(etc) = std::fs::read_dir("/etc/netns") {
        found.extend(
            etc.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .map(|n| format!("/etc/netns/{n}")),
        );
    }
    found.extend(
        processes_mentioning(&state_dir.to_string_lossy())
            .into_iter()
            .map(|p| format!("process {p}")),
    );
    found.extend(
        lab_links_on_the_machine()
            .into_iter()
            .map(|l| format!("link {l}")),
    );
    if state_dir.exists() {
        found.push(format!("state {}", state_dir.display()));
    }
    found
}

/// The objects of one kind in the namespace with their health, `Kind/name`.
async fn health_of<K: Reported>(client: &Client, ns: &str, out: &mut Vec<(String, Health)>) {
    let objects = Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    for o in objects {
        out.push((format!("{}/{}", K::kind(&()), o.name_any()), o.health()));
    }
}

/// Every served fleet object of the namespace with its health, `Kind/name`.
pub async fn fleet_health(client: &Client, ns: &str) -> Vec<(String, Health)> {
    let mut out = Vec::new();
    health_of::<FleetNode>(client, ns, &mut out).await;
    health_of::<SdwanNetwork>(client, ns, &mut out).await;
    health_of::<SdwanPeer>(client, ns, &mut out).await;
    health_of::<VirtualIp>(client, ns, &mut out).await;
    out
}

/// Waits until every served object of the namespace (at least `count`) is Ready.
pub async fn converged(client: &Client, ns: &str, count: usize, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let all = fleet_health(client, ns).await;
        if all.len() >= count && all.iter().all(|(_, h)| *h == Health::Ready) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not converged within {timeout:?}: {:?}",
            all.iter()
                .filter(|(_, h)| *h != Health::Ready)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs a command inside a network namespace (`ip netns exec`), returning whether it
/// succeeded and its output.
pub fn in_netns(netns: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Asks the lab, through its fault annotations, to treat node `name` so at the node's
/// next generation (the one the next plan writes).
pub async fn at_next_generation(client: &Client, ns: &str, name: &str, fault: (&str, &str)) {
    let api = fleetgate::controller::live::api(client, ns, "FleetNode".parse().unwrap());
    let next = api.get(name).await.unwrap().metadata.generation.unwrap() + 1;
    let annotations = serde_json::json!({
        fault.0: fault.1,
        "lab.fleetgate.dev/fault-generation": next.to_string(),
    });
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"metadata": {"annotations": annotations}})),
    )
    .await
    .unwrap();
}

/// Starts the lab for `ns`, waits for its registration Lease, then lets the repository
/// `fleet` go on: created suspended, so that no run is judged before the lab serves (a
/// run judged earlier would rightly find no provider serving anything).
pub async fn serving(client: &Client, ns: &str) -> LabProcess {
    let lab = LabProcess::start(ns);
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), ns);
    super::eventually(
        "the lab's registration Lease",
        Duration::from_secs(90),
        || async { leases.get_opt("fleet-provider-lab").await.ok().flatten() },
    )
    .await;
    super::operator::patch_spec(client, ns, serde_json::json!({"suspend": false})).await;
    lab
}
