//! The lab provider against real BIRD and keepalived in network namespaces, with the real
//! operator applying the reference fleet: BGP sessions Established among the three peers,
//! the virtual IP answering through the fabric and failing over, the fault annotations,
//! the routing modes, adoption after a crash, and nothing left behind.

use crate::support;

use std::time::Duration;

use fleetgate::api::GitopsRepository;
use fleetgate::api::fleet::status::Health;
use fleetgate::api::fleet::{FleetNode, SdwanPeer, SessionState, VirtualIp};
use fleetgate::api::syncrun::Phase;
use fleetgate::controller::live;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::fleet::Fleet;
use support::lab::{LabProcess, converged, fleet_health, in_netns};

const V1: &[u8] = include_bytes!("../../examples/fleet.yaml");
const CONVERGE: Duration = Duration::from_secs(90);

/// Creates a fleet file's objects directly (as fleetgate would apply them).
async fn create_fleet(client: &Client, ns: &str, text: &str) -> usize {
    let objects = fleetgate::fleet::desired_state("f.yaml", text.as_bytes(), &Default::default())
        .unwrap()
        .0
        .objects;
    for o in &objects {
        let body = live::desired_object(o.kind(), &o.name, ns, "lab", &o.spec, None);
        let body: DynamicObject = serde_json::from_value(body).unwrap();
        live::create_api(client, ns, o.kind())
            .create(&PostParams::default(), &body)
            .await
            .unwrap();
    }
    objects.len()
}

async fn node(client: &Client, ns: &str, name: &str) -> FleetNode {
    Api::<FleetNode>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

async fn peer(client: &Client, ns: &str, name: &str) -> SdwanPeer {
    Api::<SdwanPeer>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

/// A node's network namespace, from its providerID (`lab://<instance>/<netns>`).
async fn netns_of(client: &Client, ns: &str, name: &str) -> String {
    let id = node(client, ns, name)
        .await
        .status
        .unwrap()
        .provider_id
        .unwrap();
    id.rsplit('/').next().unwrap().to_owned()
}

async fn annotate(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    key: &str,
    value: Option<&str>,
) {
    let kind = kind.parse().unwrap();
    live::api(client, ns, kind)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .unwrap();
}

/// Waits for the virtual IP to be Ready with `holder` answering, and returns its address.
async fn held_by(client: &Client, ns: &str, vip: &str, holder: &str) -> String {
    let api = Api::<VirtualIp>::namespaced(client.clone(), ns);
    support::eventually(
        &format!("{vip} held by {holder}"),
        Duration::from_secs(30),
        || {
            let api = api.clone();
            async move {
                let s = api.get(vip).await.ok()?.status?;
                (s.current_holder.as_deref() == Some(holder)
                    && fleetgate::api::condition(&s.conditions, "Ready")
                        .is_some_and(|c| c.status == "True"))
                .then_some(s.address?)
            }
        },
    )
    .await
}

/// Pings `address` from a node's namespace and returns the MAC address that answered.
fn answered_by(netns: &str, address: &str) -> String {
    let (ok, out) = in_netns(netns, &["ping", "-c", "2", "-i", "0.2", "-W", "1", address]);
    assert!(ok, "{address} does not answer from {netns}: {out}");
    let (_, neigh) = in_netns(netns, &["ip", "-j", "neigh", "show", "to", address]);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&neigh).unwrap();
    entries[0]["lladdr"].as_str().unwrap().to_owned()
}

fn mac_of(netns: &str, link: &str) -> String {
    let (_, out) = in_netns(netns, &["ip", "-j", "link", "show", link]);
    let links: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    links[0]["address"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_reference_fleet_converges_with_bgp_established_and_its_vip_fails_over() {
    let fleet = Fleet::in_namespace("lab")
        .holding(V1)
        .with_spec(json!({"approval": "Auto"}))
        .controller_running()
        .await;
    let (ns, v1) = (fleet.ns, fleet.head);
    let mut lab = LabProcess::start(&ns.name);
    let client = &ns.client;
    // Applied only once the lab reports every object Ready (health-gated apply).
    support::operator::run_in_phase_within(client, &ns.name, &v1, Phase::Applied, CONVERGE).await;
    converged(client, &ns.name, 8, CONVERGE).await;

    // Every peer's sessions Established, as BIRD itself says (birdc over its socket).
    let expected = [
        (
            "edge-fabric.edge-tokyo-01",
            ["edge-london-01", "edge-tokyo-02"],
        ),
        (
            "edge-fabric.edge-tokyo-02",
            ["edge-london-01", "edge-tokyo-01"],
        ),
        (
            "edge-fabric.edge-london-01",
            ["edge-tokyo-01", "edge-tokyo-02"],
        ),
    ];
    for (name, others) in expected {
        let status = peer(client, &ns.name, name).await.status.unwrap();
        // In the order of the other peer's host (the provider sorts them).
        let seen: Vec<(&str, SessionState)> = status
            .sessions
            .iter()
            .map(|s| (s.peer.as_str(), s.state))
            .collect();
        assert_eq!(
            seen,
            others.map(|o| (o, SessionState::Established)),
            "{name}"
        );
        let socket = lab.bird_socket(status.address.as_deref().unwrap());
        let birdc = std::process::Command::new("birdc")
            .arg("-s")
            .arg(&socket)
            .args(["show", "protocols"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&birdc.stdout);
        assert_eq!(text.matches("Established").count(), 2, "{name}:\n{text}");
    }
    // The node's resolved spec is where a process in its namespace reads it.
    let london = netns_of(client, &ns.name, "edge-london-01").await;
    let (_, file) = in_netns(&london, &["cat", "/etc/fleetgate/node.json"]);
    let file: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert_eq!(file["spec"]["nodePlatform"], "ubuntu-24.04-amd64");
    assert_eq!(file["spec"]["metadata"]["purpose"], "edge-cdn");
    assert!(
        file["spec"]["modules"].to_string().contains("nginx@1.26.2"),
        "{file}"
    );
    // Routes learned over iBGP reach the other nodes' own addresses.
    let tokyo02 = node(client, &ns.name, "edge-tokyo-02")
        .await
        .status
        .unwrap();
    let (ok, out) = in_netns(
        &london,
        &["ping", "-c", "1", "-W", "2", &tokyo02.addresses[1].address],
    );
    assert!(ok, "{out}");

    // The virtual IP answers through the fabric, from its primary's link.
    let vip = held_by(
        client,
        &ns.name,
        "edge-fabric.cdn-frontend",
        "edge-tokyo-01",
    )
    .await;
    let tokyo01 = netns_of(client, &ns.name, "edge-tokyo-01").await;
    let tokyo02_ns = netns_of(client, &ns.name, "edge-tokyo-02").await;
    assert_eq!(answered_by(&london, &vip), mac_of(&tokyo01, "fgw0"));

    // The primary fails: its links go down, and the first failover holder answers.
    annotate(
        client,
        &ns.name,
        "FleetNode",
        "edge-tokyo-01",
        "lab.fleetgate.dev/fail-after",
        Some("0s"),
    )
    .await;
    held_by(
        client,
        &ns.name,
        "edge-fabric.cdn-frontend",
        "edge-tokyo-02",
    )
    .await;
    assert_eq!(answered_by(&london, &vip), mac_of(&tokyo02_ns, "fgw0"));
    let failed = fleet_health(client, &ns.name).await;
    assert!(
        failed.contains(&("FleetNode/edge-tokyo-01".into(), Health::Failed)),
        "{failed:?}"
    );
    // Its peers lost their sessions with it: no longer Ready.
    support::eventually(
        "london's session with tokyo-01 down",
        Duration::from_secs(30),
        || async {
            let s = peer(client, &ns.name, "edge-fabric.edge-london-01")
                .await
                .status?;
            (s.sessions
                .iter()
                .any(|x| x.peer == "edge-tokyo-01" && x.state != SessionState::Established)
                && fleetgate::api::condition(&s.conditions, "Ready")
                    .is_some_and(|c| c.status == "False"))
            .then_some(())
        },
    )
    .await;

    // The fault lifted, the primary comes back and takes the address back (preemption).
    annotate(
        client,
        &ns.name,
        "FleetNode",
        "edge-tokyo-01",
        "lab.fleetgate.dev/fail-after",
        None,
    )
    .await;
    held_by(
        client,
        &ns.name,
        "edge-fabric.cdn-frontend",
        "edge-tokyo-01",
    )
    .await;
    converged(client, &ns.name, 8, CONVERGE).await;

    // Minutes of status writes (the provider's, through the status subresource) never
    // looked like drift from git: spec and generation did not move, and no Drift run
    // was started. The failover was a health regression while it lasted (drift of kind
    // Unhealthy); converged again, the repository no longer reports drift.
    let repositories = Api::<GitopsRepository>::namespaced(client.clone(), &ns.name);
    support::eventually("the repository's Drifted False again", CONVERGE, || async {
        let repository = repositories.get("fleet").await.ok()?;
        let status = repository.status?;
        let drifted = fleetgate::api::condition(&status.conditions, "Drifted")?;
        (drifted.status == "False").then_some(())
    })
    .await;
    let drift_runs = support::operator::drift_runs(client, &ns.name)
        .await
        .unwrap();
    assert!(drift_runs.is_empty(), "{drift_runs:?}");
    let nodes = Api::<FleetNode>::namespaced(client.clone(), &ns.name);
    assert_eq!(
        nodes
            .get("edge-tokyo-01")
            .await
            .unwrap()
            .metadata
            .generation,
        Some(1)
    );

    let out = lab.cleanup();
    assert!(out.contains("removed 4 namespace(s)"), "{out}");
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}

/// Fleets of nodes `a`, `b` and more, all of one template.
macro_rules! fleet {
    ($rest:literal) => {
        concat!(
            "version: 1\naccount: lab\n",
            "templates: [{name: base, node_platform: debian-12-amd64, architecture: amd64}]\n",
            "nodes:\n",
            "  - {hostname: a, template: base, region: r1, instance_type: small}\n",
            "  - {hostname: b, template: base, region: r1, instance_type: small}\n",
            $rest
        )
    };
}

const MODES: &str = fleet!(
    r#"  - {hostname: c, template: base, region: r2, instance_type: small}
sdwan:
  networks:
    - name: mesh
      routing_mode: ebgp
      peers: [{host: a}, {host: b}, {host: c}]
    - name: plain
      routing_mode: static
      peers: [{host: a}, {host: c}]
      virtual_ips: [{name: v, primary_holder: c, failover_holders: [a]}]
"#
);

#[tokio::test]
async fn ebgp_and_static_networks_converge_and_a_deleted_network_is_torn_down() {
    let ns = support::env().namespace("labmodes").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let client = &ns.client;
    let mut lab = LabProcess::start(&ns.name);
    let count = create_fleet(client, &ns.name, MODES).await;
    // The template is not served: 3 nodes, 2 networks, 5 peers, 1 virtual IP.
    assert_eq!(count, 12);
    converged(client, &ns.name, 11, CONVERGE).await;
    assert!(
        fleet_health(client, &ns.name)
            .await
            .iter()
            .all(|(k, _)| !k.starts_with("FleetTemplate")),
        "templates have no provider"
    );

    // eBGP: a full mesh, each peer in an AS of its own.
    let a = peer(client, &ns.name, "mesh.a").await.status.unwrap();
    assert_eq!(a.sessions.len(), 2);
    let conf = std::fs::read_to_string(
        lab.bird_socket(a.address.as_deref().unwrap())
            .with_extension("conf"),
    )
    .unwrap();
    assert_eq!(conf.matches("protocol bgp").count(), 2, "{conf}");
    assert!(
        !conf.contains("as 64512"),
        "eBGP peers have ASes of their own:\n{conf}"
    );
    // static: routes that answer, a session per other peer marked Reachable.
    let plain_a = peer(client, &ns.name, "plain.a").await.status.unwrap();
    assert_eq!(plain_a.sessions.len(), 1);
    assert_eq!(plain_a.sessions[0].state, SessionState::Reachable);
    held_by(client, &ns.name, "plain.v", "c").await;
    // A node in two networks has a link into each.
    let a_ns = netns_of(client, &ns.name, "a").await;
    let (_, links) = in_netns(&a_ns, &["ip", "-o", "link", "show"]);
    assert_eq!(links.matches("fgw").count(), 2, "{links}");

    // The static network goes (in fleetgate's order): its namespace and the links into it
    // go with it; the rest stays Ready.
    for (kind, name) in [
        ("VirtualIp", "plain.v"),
        ("SdwanPeer", "plain.a"),
        ("SdwanPeer", "plain.c"),
        ("SdwanNetwork", "plain"),
    ] {
        live::api(client, &ns.name, kind.parse().unwrap())
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    support::eventually(
        "the static network torn down",
        Duration::from_secs(30),
        || async {
            let (_, links) = in_netns(&a_ns, &["ip", "-o", "link", "show"]);
            // Its keepalived daemons stopped, and their files gone (what --cleanup counts).
            let keepalived = lab.state_dir.join("keepalived");
            let files = std::fs::read_dir(&keepalived).map_or(0, |d| d.count());
            let running = support::lab::pids_mentioning(&keepalived.to_string_lossy());
            (lab.namespaces().len() == 4
                && links.matches("fgw").count() == 1
                && running.is_empty()
                && files == 0)
                .then_some(())
        },
    )
    .await;
    converged(client, &ns.name, 7, CONVERGE).await;
    assert_eq!(
        lab.cleanup().trim(),
        "lab ".to_owned() + &lab.instance + ": removed 4 namespace(s) and 3 daemon(s)"
    );
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}

const PAIR: &str = fleet!(
    r#"sdwan:
  networks:
    - name: net
      routing_mode: ibgp
      peers: [{host: a, publicly_reachable: true}, {host: b}]
"#
);

async fn reason(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
) -> (Option<i64>, Option<i64>, String) {
    let raw: serde_json::Value = serde_json::to_value(
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            ns,
            &live::api_resource(kind.parse().unwrap()),
        )
        .get(name)
        .await
        .unwrap(),
    )
    .unwrap();
    let ready = raw["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| {
            format!(
                "{}/{}",
                c["status"].as_str().unwrap(),
                c["reason"].as_str().unwrap()
            )
        })
        .unwrap_or_default();
    (
        raw["metadata"]["generation"].as_i64(),
        raw["status"]["observedGeneration"].as_i64(),
        ready,
    )
}

async fn until_reason(client: &Client, ns: &str, kind: &str, name: &str, wanted: &str) {
    let what = format!("{kind}/{name} {wanted}");
    support::eventually(&what, Duration::from_secs(30), || async {
        let (g, o, r) = reason(client, ns, kind, name).await;
        (g == o && r == wanted).then_some(())
    })
    .await;
}

#[tokio::test]
async fn fault_annotations_hold_back_fail_and_drop_links_for_one_generation() {
    let ns = support::env().namespace("labfaults").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let client = &ns.client;
    let _lab = LabProcess::start(&ns.name);
    create_fleet(client, &ns.name, PAIR).await;
    converged(client, &ns.name, 5, CONVERGE).await;

    // never-ready: realized, never Ready; Updating since it was Available before.
    annotate(
        client,
        &ns.name,
        "FleetNode",
        "a",
        "lab.fleetgate.dev/never-ready",
        Some("true"),
    )
    .await;
    until_reason(client, &ns.name, "FleetNode", "a", "False/Updating").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        reason(client, &ns.name, "FleetNode", "a").await.2,
        "False/Updating"
    );
    annotate(
        client,
        &ns.name,
        "FleetNode",
        "a",
        "lab.fleetgate.dev/never-ready",
        None,
    )
    .await;
    until_reason(client, &ns.name, "FleetNode", "a", "True/Available").await;

    // link-drop-after: Ready first, then the link drops: the peer and its node LinkDown,
    // the other end's sessions down; back when the annotation goes.
    annotate(
        client,
        &ns.name,
        "SdwanPeer",
        "net.b",
        "lab.fleetgate.dev/link-drop-after",
        Some("2s"),
    )
    .await;
    until_reason(client, &ns.name, "SdwanPeer", "net.b", "False/LinkDown").await;
    until_reason(client, &ns.name, "FleetNode", "b", "False/LinkDown").await;
    until_reason(
        client,
        &ns.name,
        "SdwanPeer",
        "net.a",
        "False/SessionsNotEstablished",
    )
    .await;
    annotate(
        client,
        &ns.name,
        "SdwanPeer",
        "net.b",
        "lab.fleetgate.dev/link-drop-after",
        None,
    )
    .await;
    converged(client, &ns.name, 5, CONVERGE).await;

    // fail-after scoped to the next generation: Ready now, NodeFailed once the spec
    // changes, Ready again at the generation after (as a rollback would make).
    let nodes = Api::<FleetNode>::namespaced(client.clone(), &ns.name);
    let generation = nodes.get("b").await.unwrap().metadata.generation.unwrap();
    annotate(
        client,
        &ns.name,
        "FleetNode",
        "b",
        "lab.fleetgate.dev/fail-after",
        Some("1s"),
    )
    .await;
    annotate(
        client,
        &ns.name,
        "FleetNode",
        "b",
        "lab.fleetgate.dev/fault-generation",
        Some(&(generation + 1).to_string()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        reason(client, &ns.name, "FleetNode", "b").await.2,
        "True/Available"
    );
    let resize = |size: &'static str| Patch::Merge(json!({"spec": {"instanceType": size}}));
    nodes
        .patch("b", &PatchParams::default(), &resize("large"))
        .await
        .unwrap();
    until_reason(client, &ns.name, "FleetNode", "b", "False/NodeFailed").await;
    nodes
        .patch("b", &PatchParams::default(), &resize("small"))
        .await
        .unwrap();
    until_reason(client, &ns.name, "FleetNode", "b", "True/Available").await;

    // A fault that cannot be read is a terminal failure naming the annotation.
    annotate(
        client,
        &ns.name,
        "FleetNode",
        "a",
        "lab.fleetgate.dev/fail-after",
        Some("soon"),
    )
    .await;
    until_reason(client, &ns.name, "FleetNode", "a", "False/InvalidSpec").await;
    let message = nodes.get("a").await.unwrap().status.unwrap().conditions[0]
        .message
        .clone();
    assert!(
        message.starts_with("lab.fleetgate.dev/fail-after: `soon`"),
        "{message}"
    );
}

#[tokio::test]
async fn a_restart_adopts_the_fabric_and_removes_what_no_object_asks_for() {
    let ns = support::env().namespace("labcrash").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let client = &ns.client;
    let mut lab = LabProcess::start(&ns.name);
    create_fleet(client, &ns.name, PAIR).await;
    converged(client, &ns.name, 5, CONVERGE).await;
    let bird_dir = format!("{}/bird/", lab.state_dir.display());
    let birds = || support::lab::pids_mentioning(&bird_dir);
    let before = birds();
    assert_eq!(before.len(), 2, "{before:?}");
    // a's BIRD, found by its address (the lab allocates addresses in whatever order its
    // watch lists the peers).
    let a_address = peer(client, &ns.name, "net.a")
        .await
        .status
        .unwrap()
        .address
        .unwrap();
    let a_conf = lab.bird_socket(&a_address).with_extension("conf");
    let a_bird = before
        .into_iter()
        .find(|(_, c)| c.contains(&*a_conf.to_string_lossy()))
        .unwrap();

    // Crash; meanwhile one peer goes and a namespace appears that no record names (a
    // crash between making a namespace and recording it).
    lab.kill();
    let orphan = format!("fgl-{}-orphan-000000", lab.instance);
    assert!(
        std::process::Command::new("ip")
            .args(["netns", "add", &orphan])
            .status()
            .unwrap()
            .success()
    );
    live::api(client, &ns.name, "SdwanPeer".parse().unwrap())
        .delete("net.b", &DeleteParams::default())
        .await
        .unwrap();
    lab.restart();
    support::eventually(
        "the orphan removed and b's BIRD stopped",
        Duration::from_secs(30),
        || async { (!lab.namespaces().contains(&orphan) && birds().len() == 1).then_some(()) },
    )
    .await;
    converged(client, &ns.name, 4, CONVERGE).await;
    // a's BIRD was adopted (the same process), not started again.
    assert_eq!(birds(), [a_bird]);
    let names: Vec<String> = Api::<SdwanPeer>::namespaced(client.clone(), &ns.name)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(names, ["net.a"]);
    lab.cleanup();
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}
