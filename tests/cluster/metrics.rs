//! `/metrics` as Prometheus and promtool read it, from a live controller whose one
//! repository is stalled: content negotiation, `promtool check metrics`, and the series
//! an alert on "repository not Ready" needs.

use crate::support;

use support::git::server;
use support::operator::*;

const V1: &[u8] = include_bytes!("../../examples/fleet.yaml");

#[tokio::test]
async fn a_stalled_repository_shows_in_metrics_that_promtool_accepts() {
    let ns = support::env().namespace("metrics").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    let git = server();
    let repo = git.create_repo("metrics");
    repo.commit(&[("fleet.yaml", V1)], "first");
    ssh_secret(&ns.client, &ns.name, "fleet-git", git.wrong_known_hosts()).await;
    let controller = ControllerProcess::start(&ns, &[]);
    // Before any reconcile, every known error of both controllers is already a series
    // at 0, so that increase() counts the first error; promtool accepts that scrape too.
    let first = support::eventually(
        "the first scrape",
        std::time::Duration::from_secs(30),
        || {
            let controller = &controller;
            async move { controller.http_get("/metrics").filter(|(c, _)| *c == 200) }
        },
    )
    .await
    .1;
    let known: Vec<&str> = fleetgate::controller::error::Error::labels().collect();
    for controller in ["repository", "syncrun"] {
        for error in &known {
            let zero = format!(
                "fleetgate_reconcile_errors_total{{controller=\"{controller}\",error=\"{error}\"}} 0\n"
            );
            assert!(first.contains(&zero), "{zero} missing from:\n{first}");
        }
    }
    promtool_check_metrics(&first);
    create_repository(
        &ns.client,
        &ns.name,
        "fleet",
        serde_json::json!({"url": git.ssh_url(&repo), "ref": {"branch": "main"}, "secretRef": {"name": "fleet-git"}, "interval": "2s"}),
    )
    .await;
    let stalled = format!(
        "fleetgate_repository_condition{{namespace=\"{}\",name=\"fleet\",type=\"Stalled\",status=\"True\"}} 1",
        ns.name
    );
    let (content_type, text) = support::eventually(
        "the stalled repository in the metrics",
        std::time::Duration::from_secs(60),
        || {
            let (controller, stalled) = (&controller, &stalled);
            async move {
                let (code, content_type, body) =
                    controller.http_get_accepting("/metrics", "*/*")?;
                (code == 200 && body.contains(stalled.as_str())).then_some((content_type, body))
            }
        },
    )
    .await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    for expected in [
        "fleetgate_reconcile_errors_total{controller=\"repository\",error=\"HostKeyMismatch\"}",
        &format!(
            "fleetgate_repository_condition{{namespace=\"{}\",name=\"fleet\",type=\"Ready\",status=\"False\"}} 1",
            ns.name
        ),
        &format!(
            "fleetgate_repository_suspended{{namespace=\"{}\",name=\"fleet\"}} 0",
            ns.name
        ),
        "fleetgate_actions_total{result=\"failed\"} 0",
        "fleetgate_leader 1",
        "fleetgate_build_info{version=\"",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE fleetgate_actions_total counter",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }

    // The stalled repository's error counted; the same error of the other controller
    // still there at 0.
    assert!(
        text.contains(
            "fleetgate_reconcile_errors_total{controller=\"syncrun\",error=\"HostKeyMismatch\"} 0\n"
        ),
        "{text}"
    );
    assert!(
        !text.contains(
            "fleetgate_reconcile_errors_total{controller=\"repository\",error=\"HostKeyMismatch\"} 0\n"
        ),
        "{text}"
    );
    promtool_check_metrics(&text);

    // Prometheus asks for OpenMetrics first, and gets it.
    let (code, content_type, body) = controller
        .http_get_accepting(
            "/metrics",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.contains("# TYPE fleetgate_actions counter"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
}

/// `promtool check metrics` reads `text` without a complaint.
fn promtool_check_metrics(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("promtool check metrics < \"$0\"")
        .arg(&file)
        .output()
        .expect("promtool runs (hack/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
