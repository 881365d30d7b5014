//! `make demo` end to end: it shows the whole story and leaves nothing running.

use std::process::Command;

#[test]
fn make_demo_tells_the_whole_story_and_stops_everything() {
    let out = Command::new("make")
        .arg("demo")
        .env("FLEETGATE_BIN", env!("CARGO_BIN_EXE_fleetgate"))
        .output()
        .expect("make runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "make demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "== The receiver was told (checked signature, then the JSON body)",
        "\"signature\": \"valid\"",
        "\"event\": \"PlanAwaitingApproval\"",
        "\"approveCommand\": \"kubectl annotate -n fleet-demo syncrun/fleet-",
        "== The plan the operator recorded",
        "plan plan-",
        "templates 2 add; nodes 3 add; networks 1 add; peers 3 add; virtualIps 1 add",
        "== The fleet, converged",
        "templates 1 update; nodes 1 add, 2 update, 1 delete; peers 1 add, 1 delete; virtualIps 1 update",
        "fleetnode.fleet.fleetgate.dev/edge-paris-01   edge-cdn   eu-west-3",
        "Changed FleetNode/edge-tokyo-02",
        "Missing SdwanPeer/edge-fabric.edge-paris-01",
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
