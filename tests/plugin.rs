//! `kubectl fleet` against the real control plane, run as kubectl runs a plugin.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use fleetgate::api::syncrun::Phase;
use support::git::server;
use support::operator::*;

const V1: &[u8] = include_bytes!("../examples/fleet.yaml");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn plugin(ns: &str, args: &[&str], stdin: &str) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-fleet"))
        .args(["-n", ns])
        .args(args)
        .env("KUBECONFIG", &support::env().kubeconfig)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn review_approve_sync_and_inspect_with_kubectl_fleet() {
    let ns = support::env().namespace("plugin").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let git = server();
    let repo = git.create_repo("plugin");
    let v1 = repo.commit(&[("fleet.yaml", V1)], "first");
    let _controller = ControllerProcess::start(&ns, &[]);
    create_repository(&ns.client, &ns.name, "fleet", serde_json::json!({"url": git.file_url(&repo), "ref": {"branch": "main"}, "interval": "2s"})).await;
    let run = run_in_phase(&ns.client, &ns.name, &v1, Phase::AwaitingApproval).await;
    let name = run.metadata.name.clone().unwrap();
    let plan_id = run.status.unwrap().plan_id.unwrap();

    let shown = plugin(&ns.name, &["plan", &name], "");
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(
        shown.stdout.contains(&format!("Plan {plan_id}")),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("  + edge-tokyo-01\n"));
    assert!(
        shown
            .stdout
            .contains("Plan: 10 to add, 0 to change, 0 to delete.")
    );

    let stale = plugin(
        &ns.name,
        &["approve", &name, "--plan-id", "plan-000000000000"],
        "",
    );
    assert_eq!(stale.code, 1);
    assert!(
        stale.stderr.contains(&format!(
            "the plan of {name} is now {plan_id}, not plan-000000000000"
        )),
        "{}",
        stale.stderr
    );
    let declined = plugin(&ns.name, &["approve", &name], "no\n");
    assert_eq!(declined.code, 1);
    assert!(
        declined
            .stdout
            .contains(&format!("Approve plan {plan_id}?"))
    );
    assert!(declined.stderr.contains("not approved"));

    let approved = plugin(&ns.name, &["approve", &name, "--wait"], "yes\n");
    assert_eq!(approved.code, 0, "{}", approved.stderr);
    assert!(
        approved
            .stdout
            .contains(&format!("syncrun/{name} approved: {plan_id}"))
    );
    assert!(
        approved.stdout.contains("Applied: plan"),
        "{}",
        approved.stdout
    );
    let again = plugin(&ns.name, &["approve", &name, "--yes"], "");
    assert_eq!(again.code, 1);
    assert!(
        again
            .stderr
            .contains("is Applied; only a run awaiting approval can be approved")
    );

    // The repository's history follows the run a reconcile later.
    support::eventually(
        "the history to show the applied run",
        std::time::Duration::from_secs(30),
        || {
            let (ns, name) = (ns.name.clone(), name.clone());
            async move {
                let history = plugin(&ns, &["history", "fleet"], "");
                let line = history
                    .stdout
                    .lines()
                    .find(|l| l.starts_with(&name))?
                    .to_owned();
                (history.code == 0 && line.contains("Applied")).then_some(())
            }
        },
    )
    .await;

    // diff --local: exit 0 when the file matches the cluster, 1 with changes, 2 on error.
    let same = plugin(
        &ns.name,
        &["diff", "--local", "examples/fleet.yaml", "fleet"],
        "",
    );
    assert_eq!(
        (same.code, same.stdout.as_str()),
        (0, "No changes. The cluster matches the fleet file.\n")
    );
    let changed = plugin(
        &ns.name,
        &["diff", "--local", "examples/fleet-v2.yaml", "fleet"],
        "",
    );
    assert_eq!(changed.code, 1, "{}", changed.stderr);
    assert!(
        changed
            .stdout
            .contains("Plan: 2 to add, 4 to change, 2 to delete."),
        "{}",
        changed.stdout
    );
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "version: 1\naccount: acme-edge\nnodez: []\n").unwrap();
    let invalid = plugin(
        &ns.name,
        &["diff", "--local", bad.path().to_str().unwrap(), "fleet"],
        "",
    );
    assert_eq!(invalid.code, 2);
    assert!(
        invalid
            .stderr
            .contains("unknown key `nodez` in the fleet file; did you mean `nodes`?"),
        "{}",
        invalid.stderr
    );

    // fleetgate plan: the same, from the main binary, for machines too.
    let plan = |file: &str| {
        Command::new(env!("CARGO_BIN_EXE_fleetgate"))
            .args([
                "plan",
                file,
                "--repository",
                "fleet",
                "-n",
                &ns.name,
                "-o",
                "json",
            ])
            .env("KUBECONFIG", &support::env().kubeconfig)
            .output()
            .unwrap()
    };
    assert_eq!(plan("examples/fleet.yaml").status.code(), Some(0));
    let out = plan("examples/fleet-v2.yaml");
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["summary"]["nodes"]["delete"], 1);
    assert_eq!(plan(bad.path().to_str().unwrap()).status.code(), Some(2));

    let synced = plugin(&ns.name, &["sync", "fleet", "--wait"], "");
    assert_eq!(synced.code, 0, "{}", synced.stderr);
    assert!(synced.stdout.contains("NoChanges"), "{}", synced.stdout);

    support::run_tool(
        "kubectl",
        &[
            "-n",
            &ns.name,
            "patch",
            "fleetnode",
            "edge-tokyo-01",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"region":"moon-1"}}"#,
        ],
    );
    let drift = support::eventually(
        "the drift report",
        std::time::Duration::from_secs(30),
        || {
            let ns = ns.name.clone();
            async move {
                let out = plugin(&ns, &["drift", "fleet"], "");
                out.stdout
                    .contains("Changed fleetnode/edge-tokyo-01")
                    .then_some(out.stdout)
            }
        },
    )
    .await;
    assert!(
        drift.contains(r#"region: "ap-tokyo-1" -> "moon-1""#),
        "{drift}"
    );

    // kubectl finds the plugin on PATH, as `kubectl fleet`.
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_kubectl-fleet"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(support::tool("kubectl"))
        .args(["fleet", "-n", &ns.name, "history", "fleet"])
        .env("PATH", path)
        .env("KUBECONFIG", &support::env().kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&name));
}
