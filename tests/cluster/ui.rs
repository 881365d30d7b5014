//! `kubectl fleet ui` in a real browser (Debian's chromium, headless, through
//! chromedriver) against the real control plane, with the chart's roles and admission
//! policies and a running controller: review the reference fleet's plan, leave a node
//! out, be refused as an editor, approve as an approver and watch the run apply; and
//! requests from elsewhere refused. Screenshots go to `<target>/tmp/ui-screenshots`.

use crate::support;

use std::time::{Duration, Instant};

use fleetgate::api::syncrun::Phase;
use fleetgate::api::{SyncRun, annotations};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::browser::{Browser, Ui, http};
use support::chart::{Installed, bind};
use support::git::server;
use support::operator::{
    create_repository, run_in_phase, ssh_secret, wait_for_approved_by_stamp, wait_for_status,
};

const V1: &[u8] = include_bytes!("../../examples/fleet.yaml");
const V2: &[u8] = include_bytes!("../../examples/fleet-v2.yaml");

/// Rewrites the run's stored plan with another plan id: it still parses, but no longer
/// matches the digest in the run's status.
async fn tamper_with_plan(admin: &Client, run: &SyncRun) {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::io::{Read, Write};
    let status = run.status.clone().unwrap();
    let at = status.full_plan.unwrap();
    assert_eq!(at.config_maps.len(), 1, "a small plan is one ConfigMap");
    let cms = Api::<ConfigMap>::namespaced(admin.clone(), &run.namespace().unwrap());
    let mut cm = cms.get(&at.config_maps[0]).await.unwrap();
    let data = cm.binary_data.as_mut().unwrap();
    let stored = data.get_mut("data.json.gz").unwrap();
    let mut json = String::new();
    flate2::read::GzDecoder::new(&stored.0[..])
        .read_to_string(&mut json)
        .unwrap();
    let id = status.plan_id.unwrap();
    assert!(json.contains(&id));
    let json = json.replace(&id, "plan-000000000000");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(json.as_bytes()).unwrap();
    *stored = ByteString(gz.finish().unwrap());
    cms.replace(&cm.name_any(), &Default::default(), &cm)
        .await
        .unwrap();
}

/// Opens a run's page in the UI served at `base`.
async fn open_run(b: &Browser, base: &str, ns: &str, run: &str) {
    let url = format!("{base}/ns/{ns}/runs/{run}");
    b.client.goto(&url).await.unwrap();
}

#[tokio::test]
async fn review_leave_out_and_approve_in_a_browser() {
    let started = Instant::now();
    let browser = Browser::start().await;
    let env = support::env();
    let ns = env.namespace("ui").await;
    let admin = env.client().await;
    let git = server();
    let repo = git.create_repo("ui");
    ssh_secret(&admin, &ns.name, "fleet-git", git.known_hosts()).await;
    let _chart = Installed::new(&[&ns], &[]).await;
    bind(&ns.name, "alice-edits", "fleetgate-editor", "alice");
    bind(&ns.name, "bob-edits", "fleetgate-editor", "bob");
    bind(&ns.name, "bob-approves", "fleetgate-approver", "bob");
    support::chart::grant_configmap_view(&ns.name, &["alice", "bob"]);
    let spec = json!({"url": git.ssh_url(&repo), "ref": {"branch": "main"},
                      "secretRef": {"name": "fleet-git"}, "interval": "2s"});
    create_repository(&admin, &ns.name, "fleet", spec).await;
    let v1 = repo.commit(&[("fleet.yaml", V1)], "first");
    let run = run_in_phase(&admin, &ns.name, &v1, Phase::AwaitingApproval).await;
    let (name, first_plan) = (run.name_any(), run.status.unwrap().plan_id.unwrap());
    let bob = env.client_as("bob", &["system:authenticated"]).await;
    wait_for_approved_by_stamp(&bob, &ns.name, &name, "probe").await;
    let run_path = format!("/ns/{}/runs/{name}", ns.name);

    // alice, an editor: the repositories, then the run with the reference fleet's plan.
    let alice = Ui::start(&env.kubeconfig, &ns.name, "alice");
    let b = &browser;
    b.client.goto(&alice.url).await.unwrap();
    let table = b.text("main table").await;
    assert!(table.contains(&format!("{}/fleet", ns.name)), "{table}");
    assert!(
        b.client.current_url().await.unwrap().query().is_none(),
        "the token leaves the address bar"
    );
    assert_eq!(
        b.text("header .who").await,
        "Acting as alice",
        "as the API server sees it"
    );
    b.screenshot("repositories").await;
    b.client
        .goto(&format!("{}{run_path}", alice.base))
        .await
        .unwrap();
    let summary = b.text("#plan-summary").await;
    assert!(summary.contains(&first_plan), "{summary}");
    assert!(
        summary.contains("10 to add, 0 to change, 0 to delete"),
        "{summary}"
    );
    b.screenshot("run").await;

    // Leave edge-tokyo-02 out: its peer and the virtual IP that names it go with it.
    b.click("#edit").await;
    b.click("input[value='fleetnode/edge-tokyo-02']").await;
    b.click("#preview").await;
    let dependents = b.text("#dependents").await;
    assert!(
        dependents.contains("sdwanpeer/edge-fabric.edge-tokyo-02")
            && dependents.contains("virtualip/edge-fabric.cdn-frontend"),
        "{dependents}"
    );
    let preview = b.text("#result #plan-summary").await;
    assert!(preview.contains("7 to add"), "{preview}");
    let new_plan = b.text("#result #plan-id").await;
    assert_ne!(new_plan, first_plan);
    b.screenshot("edit").await;
    b.click("#confirm").await;
    b.text_until("h1", Duration::from_secs(10), |t| t.starts_with("SyncRun "))
        .await;
    // The controller plans again; the open run page follows by itself.
    b.text_until("#plan-id", Duration::from_secs(30), |t| t == new_plan)
        .await;
    let excluded = b.text("#excluded").await;
    assert!(excluded.contains("fleetnode/edge-tokyo-02"), "{excluded}");
    // A page still showing the first plan approves nothing: the plan changed since.
    let alice_http = Ui::start(&env.kubeconfig, &ns.name, "alice");
    let alice_session = alice_http.session();
    let post_as_alice = |action: &str, body: &str| {
        let port = alice_http.port();
        http(
            port,
            &format!(
                "POST {}{run_path}/{action} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n\
                 Cookie: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                alice_http.prefix(),
                alice_session,
                body.len()
            ),
        )
    };
    let (code, response) = post_as_alice("approve", &format!("plan_id={first_plan}"));
    assert_eq!(code, 409, "{response}");
    assert!(
        response.contains(&format!("is now {new_plan}, not {first_plan}")),
        "{response}"
    );
    // Leaving out is tied to the plan previewed and to what was left out before it.
    let stale =
        format!("exclude=fleetnode%2Fedge-tokyo-01&plan_id={first_plan}&prev_exclude=&new_plan=x");
    let (code, response) = post_as_alice("exclude", &stale);
    assert_eq!(code, 409, "{response}");
    assert!(
        response.contains(&format!("is now {new_plan}, not {first_plan}")),
        "{response}"
    );
    let stale =
        format!("exclude=fleetnode%2Fedge-tokyo-01&plan_id={new_plan}&prev_exclude=&new_plan=x");
    let (code, response) = post_as_alice("exclude", &stale);
    assert_eq!(code, 409, "{response}");
    assert!(response.contains("changed since the preview"), "{response}");
    let runs = Api::<SyncRun>::namespaced(admin.clone(), &ns.name);
    let kept = runs.get(&name).await.unwrap();
    assert_eq!(
        kept.annotations()
            .get(annotations::EXCLUDE)
            .map(String::as_str),
        Some("fleetnode/edge-tokyo-02"),
        "a refused exclusion changes nothing"
    );

    // alice may not approve: the API server's refusal, in its own words.
    b.click("#approve").await;
    let refusal = b.text("[role=alert]").await;
    assert!(
        refusal.contains("user alice may not approve, reject or schedule SyncRuns"),
        "{refusal}"
    );
    b.screenshot("refused").await;
    // alice's page stays open; a mark in it tells an update in place from a reload.
    b.client
        .execute("window.notReloaded = true;", vec![])
        .await
        .unwrap();
    let alice_window = b.client.window().await.unwrap();

    // bob, an approver, approves the plan shown and sees the run applied live.
    let bob_ui = Ui::start(&env.kubeconfig, &ns.name, "bob");
    let bob_window = b.client.new_window(true).await.unwrap();
    b.client.switch_to_window(bob_window.handle).await.unwrap();
    b.client.goto(&bob_ui.url).await.unwrap();
    b.client
        .goto(&format!("{}{run_path}", bob_ui.base))
        .await
        .unwrap();
    let button = b.text("#approve").await;
    assert_eq!(button, format!("Approve {new_plan}"));
    b.click("#approve").await;
    b.text_until("#phase", Duration::from_secs(60), |t| t == "Applied")
        .await;
    let approved = b.text("#approved").await;
    assert!(approved.contains("bob"), "{approved}");
    b.screenshot("applied").await;
    // alice's open page followed without a reload.
    b.client.switch_to_window(alice_window).await.unwrap();
    b.text_until("#phase", Duration::from_secs(30), |t| t == "Applied")
        .await;
    let same_page = b
        .client
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same_page, json!(true), "the page was updated in place");
    drop(alice);
    let applied = wait_for_status(&admin, &ns.name, &name, "the run applied", |s| {
        s.phase == Some(Phase::Applied)
    })
    .await;
    let status = applied.status.unwrap();
    assert_eq!(status.plan_id.as_deref(), Some(new_plan.as_str()));
    assert_eq!(status.approved_by.as_deref(), Some("bob"));
    assert_eq!(status.progress.unwrap().applied, 7);

    // Requests from elsewhere: no session, a used or wrong token, a foreign Host (DNS
    // rebinding), a foreign Origin, the cookie outside the secret path.
    let plain = Ui::start(&env.kubeconfig, &ns.name, "bob");
    let (port, p) = (plain.port(), plain.prefix());
    let host = format!("127.0.0.1:{port}");
    let get = |path: &str, extra: &str| {
        http(
            port,
            &format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n{extra}\r\n"),
        )
    };
    let (code, response) = get(&format!("{p}/"), "");
    assert_eq!(code, 401, "no session");
    assert!(response.contains("cache-control: no-store"), "{response}");
    assert_eq!(
        get(&format!("{p}/?token=wrong"), "").0,
        401,
        "a wrong token"
    );
    let token = plain.url.split("token=").nth(1).unwrap().to_owned();
    assert_eq!(
        get(&format!("/?token={token}"), "").0,
        401,
        "outside the path"
    );
    let cookie = plain.session();
    assert!(
        !cookie.contains(&token),
        "the session value is not the token"
    );
    let (code, response) = get(&format!("{p}/?token={token}"), "");
    assert_eq!(code, 401, "the URL works once: {response}");
    let with_cookie = format!("Cookie: {cookie}\r\n");
    let (code, response) = get(&format!("{p}/?token={token}"), &with_cookie);
    assert_eq!(
        code, 303,
        "a used URL with the session only drops the token"
    );
    assert!(
        !response.to_ascii_lowercase().contains("set-cookie"),
        "{response}"
    );
    assert_eq!(get(&format!("{p}/"), &with_cookie).0, 200, "the session");
    assert_eq!(
        get("/", &with_cookie).0,
        404,
        "nothing outside the secret path"
    );
    let (code, _) = http(
        port,
        &format!("GET {p}/ HTTP/1.0\r\nHost: rebound.example:{port}\r\n{with_cookie}\r\n"),
    );
    assert_eq!(code, 421, "a foreign Host");
    let sync = format!("{p}/ns/{}/repositories/fleet/sync", ns.name);
    for origin in ["Origin: http://evil.example\r\n", ""] {
        let (code, _) = http(
            port,
            &format!(
                "POST {sync} HTTP/1.0\r\nHost: {host}\r\n{with_cookie}{origin}Content-Length: 0\r\n\r\n"
            ),
        );
        assert_eq!(code, 403, "a POST with {origin:?}");
    }
    let (code, _) = http(
        port,
        &format!(
            "PUT {sync} HTTP/1.0\r\nHost: {host}\r\n{with_cookie}Origin: http://{host}\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    assert_eq!(code, 405, "only GET and POST");
    // The browser is opened on a private redirect page: no token on a command line; its
    // URL is another single-use one, and the printed URL still works once.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let script = dir.path().join("browser");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" > {d}/argv\ncp \"$1\" {d}/page.html\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let opened = Ui::start_opening(&env.kubeconfig, &ns.name, "bob", &script);
    let page = support::eventually("the browser to be opened", Duration::from_secs(10), || {
        let path = dir.path().join("page.html");
        async move {
            std::fs::read_to_string(path)
                .ok()
                .filter(|p| p.contains("</html>"))
        }
    })
    .await;
    let argv = std::fs::read_to_string(dir.path().join("argv")).unwrap();
    assert!(!argv.contains("token"), "the browser's arguments: {argv}");
    assert!(
        !argv.contains(&opened.prefix()),
        "the browser's arguments: {argv}"
    );
    let page_token = page
        .split("token=")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(!opened.url.contains(page_token), "a token of its own");
    let (code, _) = http(
        opened.port(),
        &format!(
            "GET {}/?token={page_token} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            opened.prefix(),
            opened.port()
        ),
    );
    assert_eq!(code, 303, "the redirect page's URL");
    opened.session();
    drop(opened);
    let repo_now = Api::<fleetgate::api::GitopsRepository>::namespaced(admin.clone(), &ns.name)
        .get("fleet")
        .await
        .unwrap();
    assert!(
        !repo_now
            .annotations()
            .contains_key(annotations::SYNC_REQUESTED_AT),
        "no refused request changed anything"
    );

    // The drift page, after a hand edit of an applied node.
    let nodes =
        fleetgate::controller::live::api(&admin, &ns.name, fleetgate::fleet::ObjectKind::FleetNode);
    nodes
        .patch(
            "edge-tokyo-01",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"instanceType": "t3-xlarge"}})),
        )
        .await
        .unwrap();
    let drift_url = format!("{}/ns/{}/repositories/fleet/drift", bob_ui.base, ns.name);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        b.client.goto(&drift_url).await.unwrap();
        let text = b.text("main").await;
        if text.contains("t3-xlarge") {
            assert!(text.contains("expected → actual"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no drift shown: {text}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    b.screenshot("drift").await;

    // Sync now, as bob, from the repository page.
    b.client
        .goto(&format!(
            "{}/ns/{}/repositories/fleet",
            bob_ui.base, ns.name
        ))
        .await
        .unwrap();
    b.click("form[action$='/sync'] button").await;
    let repos = Api::<fleetgate::api::GitopsRepository>::namespaced(admin.clone(), &ns.name);
    support::eventually(
        "Sync now to request a sync",
        Duration::from_secs(10),
        || {
            let repos = repos.clone();
            async move {
                let repo = repos.get("fleet").await.ok()?;
                repo.annotations()
                    .contains_key(annotations::SYNC_REQUESTED_AT)
                    .then_some(())
            }
        },
    )
    .await;

    // An invalid revision: its errors with file:line:column on the run page.
    let bad = repo.commit(
        &[(
            "fleet.yaml",
            b"version: 1\naccount: acme-edge\nnodes:\n  - hostname: Not_A_Name\n",
        )],
        "broken",
    );
    let failed = run_in_phase(&admin, &ns.name, &bad, Phase::Failed).await;
    open_run(b, &bob_ui.base, &ns.name, &failed.name_any()).await;
    let errors = b.text("section.problems ul.diagnostics").await;
    let located = errors.lines().any(|l| {
        let mut parts = l.splitn(4, ':');
        parts.next() == Some("fleet.yaml")
            && parts.next().is_some_and(|n| n.parse::<u32>().is_ok())
            && parts.next().is_some_and(|n| n.parse::<u32>().is_ok())
    });
    assert!(located, "errors with file:line:column: {errors}");

    // Reject the next revision with a reason.
    let v2 = repo.commit(&[("fleet.yaml", V2)], "paris replaces london");
    let next = run_in_phase(&admin, &ns.name, &v2, Phase::AwaitingApproval).await;
    // Its stored plan altered (ConfigMap write, which Kubernetes' edit grants): the page
    // says so and offers no Approve, and the server approves nothing.
    let plan_id = next.status.clone().unwrap().plan_id.unwrap();
    tamper_with_plan(&admin, &next).await;
    let next_path = format!("{p}/ns/{}/runs/{}", ns.name, next.name_any());
    let (code, page) = get(&next_path, &with_cookie);
    assert_eq!(code, 200, "{page}");
    assert!(!page.contains("id=\"approve\""), "{page}");
    assert!(page.contains("integrity check"), "{page}");
    let body = format!("plan_id={plan_id}");
    let (code, response) = http(
        port,
        &format!(
            "POST {next_path}/approve HTTP/1.0\r\nHost: {host}\r\nOrigin: http://{host}\r\n{with_cookie}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(code, 409, "{response}");
    assert!(response.contains("nothing was approved"), "{response}");
    open_run(b, &bob_ui.base, &ns.name, &next.name_any()).await;
    b.client
        .find(fantoccini::Locator::Css("#reason"))
        .await
        .unwrap()
        .send_keys("not during the freeze")
        .await
        .unwrap();
    b.click("#reject").await;
    b.text_until("#phase", Duration::from_secs(30), |t| t == "Rejected")
        .await;
    let message = b.text("#message").await;
    assert!(message.contains("not during the freeze"), "{message}");
    browser.close().await;
    eprintln!("browser suite: {:?}", started.elapsed());
}
