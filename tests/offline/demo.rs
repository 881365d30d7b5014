//! `make demo` end to end: it shows the whole story, with the lab provider realizing the
//! fleet for real, and leaves nothing running: no process, network namespace or link.

use std::process::Command;

/// The demo's network namespaces and daemons on this machine now.
fn lab_leftovers() -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("fgl-demo-"))
                .collect()
        })
        .unwrap_or_default();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("fleetgate-demo.")
            && (cmdline.starts_with("bird") || cmdline.starts_with("keepalived"))
        {
            found.push(cmdline);
        }
    }
    found
}

/// Runs `make <target>` with the binary this test was built with; its output, once it
/// succeeded.
pub fn run_make(target: &str) -> String {
    let out = Command::new("make")
        .arg(target)
        .env("FLEETGATE_BIN", env!("CARGO_BIN_EXE_fleetgate"))
        .output()
        .expect("make runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "make {target} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn make_demo_tells_the_whole_story_and_stops_everything() {
    assert_eq!(
        lab_leftovers(),
        Vec::<String>::new(),
        "a demo's lab was already there"
    );
    let stdout = run_make("demo");
    for expected in [
        "== The receiver was told (checked signature, then the JSON body)",
        "\"signature\": \"valid\"",
        "\"event\": \"PlanAwaitingApproval\"",
        "\"approveCommand\": \"kubectl annotate -n fleet-demo syncrun/fleet-",
        "== The plan the operator recorded",
        "plan plan-",
        "templates 2 add; nodes 3 add; networks 1 add; peers 3 add; virtualIps 1 add",
        "== The fleet, converged: applied by fleetgate, realized and reported Ready by the lab provider",
        "== The fabric, for real: a network namespace per node, BGP sessions Established",
        "edge-tokyo-02: edge-london-01 Established; edge-tokyo-01 Established;",
        "== The virtual IP answers through the fabric, from its primary holder",
        "3 packets transmitted, 3 received",
        "the link of edge-tokyo-01",
        "templates 1 update; nodes 1 add, 2 update, 1 delete; peers 1 add, 1 delete; virtualIps 1 update",
        "fleetnode.fleet.fleetgate.dev/edge-paris-01   edge-cdn   eu-west-3",
        "Changed FleetNode/edge-tokyo-02",
        "Missing SdwanPeer/edge-fabric.edge-paris-01",
        "== The virtual IP answers from edge-paris-01, its failover holder until now",
        "the link of edge-paris-01",
        "it lists fleet-demo/fleet with its runs",
        "== Done; stopping everything the demo started",
    ] {
        assert!(
            stdout.contains(expected),
            "`{expected}` missing from the demo's output:\n{stdout}"
        );
    }
    // Converged after the drift run: tokyo-02 back to its size, paris's peer back.
    let tail = &stdout[stdout
        .rfind("The operator planned the way back")
        .expect("the drift part ran")..];
    assert!(
        tail.contains("edge-tokyo-02   edge-cdn   ap-tokyo-1   t3-medium"),
        "{tail}"
    );
    assert!(
        tail.contains("sdwanpeer.fleet.fleetgate.dev/edge-fabric.edge-paris-01"),
        "{tail}"
    );
    // BIRD's own word on tokyo-02's sessions (a route-reflector client of both public peers).
    let fabric = &stdout[stdout.find("== The fabric, for real").unwrap()..];
    assert_eq!(
        fabric
            .lines()
            .take_while(|l| !l.starts_with("== The virtual IP"))
            .filter(|l| l.starts_with("peer") && l.contains(" BGP ") && l.contains("Established"))
            .count(),
        2,
        "{fabric}"
    );
    assert_eq!(
        lab_leftovers(),
        Vec::<String>::new(),
        "the demo left its lab behind"
    );
    // Nothing left behind: no demo folder, so no control plane or controller of its own.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("fleetgate-demo.")
        })
        .collect();
    assert!(leftovers.is_empty(), "the demo left {leftovers:?}");
}
