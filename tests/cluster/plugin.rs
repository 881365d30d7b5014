//! `kubectl fleet` against the real control plane, run as kubectl runs a plugin.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};

use fleetgate::api::syncrun::Phase;
use support::fleet::Fleet;
use support::git::server;
use support::operator::*;

const V1: &[u8] = include_bytes!("../../examples/fleet.yaml");

pub(crate) struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub(crate) fn plugin(ns: &str, args: &[&str], stdin: &str) -> Out {
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

/// `kubectl fleet` without the test's KUBECONFIG: flags only.
fn plugin_with(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-fleet"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn kubectl_fleet_takes_kubectl_flags_and_reports_like_kubectl() {
    // Drift is only reported: with approval Auto, a Drift run would restore the node at
    // once, and how long the drift stays visible would be a race with the apply.
    let fleet = Fleet::in_namespace("plugin-flags")
        .holding(V1)
        .with_spec(serde_json::json!({"approval": "Auto", "driftRemediation": "Report"}))
        .controller_running()
        .await;
    let (ns, v1) = (fleet.ns, fleet.head);
    let kubeconfig = support::env().kubeconfig.to_str().unwrap().to_owned();
    let n = ns.name.as_str();

    // Errors read as kubectl's, with a hint; never a debug dump.
    let missing = plugin_with(&["--kubeconfig", &kubeconfig, "-n", n, "plan", "nope"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.starts_with(&format!(
            "Error from server (NotFound): syncruns.gitops.fleetgate.dev \"nope\" not found in namespace \"{n}\"\nhint: `kubectl get syncruns -n {n}`"
        )),
        "{}",
        missing.stderr
    );
    let context = plugin_with(&[
        "--kubeconfig",
        &kubeconfig,
        "--context",
        "elsewhere",
        "history",
        "fleet",
    ]);
    assert_eq!(context.code, 2);
    assert!(
        context.stderr.starts_with("error: ") && context.stderr.contains("elsewhere"),
        "{}",
        context.stderr
    );
    let stranger = plugin_with(&[
        "--kubeconfig",
        &kubeconfig,
        "-n",
        n,
        "--as",
        "mallory",
        "--as-group",
        "strangers",
        "history",
        "fleet",
    ]);
    assert_eq!(stranger.code, 2);
    assert!(
        stranger.stderr.starts_with("Error from server (Forbidden): gitopsrepositories.gitops.fleetgate.dev \"fleet\" is forbidden: User \"mallory\""),
        "{}",
        stranger.stderr
    );

    run_in_phase(&ns.client, n, &v1, Phase::Applied).await;
    let clean = support::eventually(
        "drift to be checked",
        std::time::Duration::from_secs(30),
        || async {
            let out = plugin(n, &["drift", "fleet"], "");
            (out.code == 0).then_some(out)
        },
    )
    .await;
    assert!(
        clean.stdout.contains("the cluster matches revision"),
        "{}",
        clean.stdout
    );

    // -o json and -o yaml on the read commands.
    let history = plugin(n, &["history", "fleet", "-o", "json"], "");
    let history: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(history[0]["phase"], "Applied");
    let run = history[0]["syncRun"].as_str().unwrap().to_owned();
    let plan = plugin(n, &["plan", &run, "-o", "yaml"], "");
    let plan: serde_json::Value = serde_yaml_ng::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["phase"], "Applied");
    assert_eq!(
        plan["plan"]["actions"].as_array().map(Vec::len),
        Some(10),
        "{plan}"
    );

    support::run_tool(
        "kubectl",
        &[
            "-n",
            n,
            "patch",
            "fleetnode",
            "edge-tokyo-01",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"region":"moon-1"}}"#,
        ],
    );
    let drifted = support::eventually("the drift", std::time::Duration::from_secs(30), || async {
        let out = plugin(n, &["drift", "fleet", "-o", "json"], "");
        (out.code == 1).then_some(out)
    })
    .await;
    let drift: serde_json::Value = serde_json::from_str(&drifted.stdout).unwrap();
    assert_eq!(drift["count"], 1, "{drift}");

    // sync --wait fails fast on a stalled repository, naming the reason.
    let git = server();
    ssh_secret(&ns.client, n, "wrong-git", git.wrong_known_hosts()).await;
    let other = git.create_repo("plugin-stalled");
    other.commit(&[("fleet.yaml", V1)], "first");
    create_repository(
        &ns.client,
        n,
        "stalled",
        serde_json::json!({"url": git.ssh_url(&other), "ref": {"branch": "main"}, "secretRef": {"name": "wrong-git"}, "interval": "2s"}),
    )
    .await;
    let started = std::time::Instant::now();
    let stalled = plugin(n, &["sync", "stalled", "--wait", "--timeout", "60s"], "");
    assert_eq!(stalled.code, 1, "{}", stalled.stderr);
    assert!(
        stalled
            .stderr
            .contains("error: gitopsrepository/stalled is Stalled (HostKeyMismatch)"),
        "{}",
        stalled.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    // Drift of a repository that never applied anything cannot be known: exit 2, and why.
    let unknown = plugin(n, &["drift", "stalled"], "");
    assert_eq!(unknown.code, 2, "{}", unknown.stdout);
    assert!(
        unknown
            .stdout
            .contains("stalled: drift could not be checked: no revision has been applied yet"),
        "{}",
        unknown.stdout
    );
}

#[test]
fn every_argument_of_kubectl_fleet_has_help() {
    for command in [
        "plan", "approve", "reject", "sync", "drift", "history", "diff",
    ] {
        let help = plugin_with(&[command, "--help"]);
        assert_eq!(help.code, 0, "{}", help.stderr);
        for flag in [
            "--kubeconfig",
            "--context",
            "--namespace",
            "--as ",
            "--as-group",
        ] {
            assert!(help.stdout.contains(flag), "{command} --help lacks {flag}");
        }
        // Every argument carries a description, on its line or the next.
        let lines: Vec<&str> = help.stdout.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let is_argument =
                line.starts_with("  ") && (trimmed.starts_with('-') || trimmed.starts_with('<'));
            if !is_argument {
                continue;
            }
            let same_line = trimmed.split("  ").filter(|s| !s.trim().is_empty()).count() >= 2;
            let next_line = lines
                .get(i + 1)
                .is_some_and(|l| l.starts_with("          ") && !l.trim_start().starts_with('-'));
            assert!(
                same_line || next_line,
                "{command}: `{line}` has no help:\n{}",
                help.stdout
            );
        }
    }
}
