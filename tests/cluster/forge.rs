//! The pull-request loop against a real Gitea (SQLite, loopback, HTTPS): pushes over
//! Gitea's HTTPS git with basic auth, the controller fetching the private repository
//! over HTTPS with a username and password from its Secret, Gitea's signed push webhook to the controller's receiver,
//! commit statuses read back through Gitea's API, plan previews on pull requests (one
//! comment, edited in place on a new push; located errors for an invalid file), and the
//! previewed plan id carried by the SyncRun once the pull request is merged.

use crate::support;

use std::time::Duration;

use fleetgate::api::GitopsRepository;
use fleetgate::api::syncrun::Phase;
use hyper::Method;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::gitea::Gitea;
use support::operator::*;

const V1: &[u8] = include_bytes!("../../examples/fleet.yaml");
const V2: &[u8] = include_bytes!("../../examples/fleet-v2.yaml");

async fn secret(client: &kube::Client, ns: &str, name: &str, data: Value) {
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap();
    Api::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// The commit status of `sha` in `context`, as Gitea reports it: (state, description).
async fn status_of(
    gitea: &Gitea,
    repo: &str,
    sha: &str,
    context: &str,
) -> Option<(String, String)> {
    let statuses = gitea
        .api(
            Method::GET,
            &format!("/repos/{repo}/commits/{sha}/statuses?sort=leastindex"),
            None,
        )
        .await
        .ok()?;
    // Newest first.
    statuses.as_array()?.iter().find_map(|s| {
        (s["context"] == context).then(|| {
            (
                s["status"].as_str().unwrap_or_default().to_owned(),
                s["description"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

/// Every comment on pull request `number` (Gitea lists them whole): (id, body).
async fn comments(gitea: &Gitea, repo: &str, number: u64) -> Vec<(u64, String)> {
    let path = format!("/repos/{repo}/issues/{number}/comments");
    let comments = gitea
        .api(Method::GET, &path, None)
        .await
        .unwrap_or(Value::Null);
    let comments = comments.as_array().cloned().unwrap_or_default();
    comments
        .iter()
        .map(|c| {
            (
                c["id"].as_u64().unwrap_or_default(),
                c["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// fleetgate's preview comments on pull request `number`: (id, body).
async fn previews(gitea: &Gitea, repo: &str, number: u64) -> Vec<(u64, String)> {
    let mut all = comments(gitea, repo, number).await;
    all.retain(|(_, body)| body.starts_with("<!-- fleetgate-preview"));
    all
}

async fn preview_of(gitea: &Gitea, repo: &str, number: u64, head: &str) -> (u64, String) {
    let what = format!("a preview of {head} on pull request {number}");
    support::eventually(&what, Duration::from_secs(60), || async {
        previews(gitea, repo, number)
            .await
            .into_iter()
            .find(|(_, body)| body.contains(&format!("head={head}")))
    })
    .await
}

async fn pull_request(gitea: &Gitea, repo: &str, head: &str, title: &str) -> u64 {
    let pr = gitea
        .ok(
            Method::POST,
            &format!("/repos/{repo}/pulls"),
            Some(json!({"head": head, "base": "main", "title": title})),
        )
        .await;
    pr["number"].as_u64().unwrap()
}

#[tokio::test]
async fn pull_requests_get_plan_previews_and_commits_get_statuses_on_gitea() {
    let started = std::time::Instant::now();
    let gitea = Gitea::start().await;
    eprintln!("gitea up in {:?}", started.elapsed());
    let token = gitea
        .token("fleetgate", &["write:repository", "write:issue"])
        .await;
    let clone = gitea.create_repo("fleet-config").await;
    let repo = clone.full_name.clone();
    let v1 = clone.commit("main", &[("fleet.yaml", V1)], "first");

    let ns = support::env().namespace("forge").await;
    support::install_crds(&ns.client, &fleetgate::api::crds()).await;
    secret(&ns.client, &ns.name, "forge", json!({"token": token})).await;
    secret(
        &ns.client,
        &ns.name,
        "hook",
        json!({"token": "hook-s3cret"}),
    )
    .await;
    let git_login = json!({"username": support::gitea::USER, "password": support::gitea::PASSWORD});
    secret(&ns.client, &ns.name, "git", git_login).await;
    let receiver = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // It fetches the private repository over HTTPS with the Secret's username and
    // password, trusting the test CA.
    let _controller = ControllerProcess::start_with_env(
        &ns,
        &[
            "--receiver-addr",
            &receiver.to_string(),
            "--cluster-name",
            "test",
        ],
        &[("SSL_CERT_FILE", gitea.cert.to_str().unwrap())],
    );
    // Gitea signs its webhook with the shared secret (X-Gitea-Signature); pull-request
    // events make an opened pull request's preview come at once, as pushes do.
    gitea
        .ok(
            Method::POST,
            &format!("/repos/{repo}/hooks"),
            Some(json!({
                "type": "gitea", "active": true, "events": ["push", "pull_request"],
                "config": {
                    "url": format!("http://{receiver}/hook/{}/fleet", ns.name),
                    "content_type": "json", "secret": "hook-s3cret",
                },
            })),
        )
        .await;
    // A long interval: after the first look, git is checked again only on a push.
    create_repository(
        &ns.client,
        &ns.name,
        "fleet",
        json!({
            "url": clone.url, "ref": {"branch": "main"}, "interval": "1h",
            "secretRef": {"name": "git"},
            "webhookSecretRef": {"name": "hook"},
            "forge": {
                "provider": "Gitea", "apiUrl": gitea.url, "repository": repo,
                "secretRef": {"name": "forge"}, "pullRequestPreviews": true,
            },
        }),
    )
    .await;
    let context = format!("fleetgate/test/{}/fleet", ns.name);

    // The plan waits for approval: the commit says so.
    let run = run_in_phase(&ns.client, &ns.name, &v1, Phase::AwaitingApproval).await;
    let plan_id = run.status.as_ref().unwrap().plan_id.clone().unwrap();
    let pending = format!("plan {plan_id} awaiting approval (10 to add, 0 to change, 0 to delete)");
    support::eventually(
        "a pending commit status",
        Duration::from_secs(30),
        || async {
            (status_of(&gitea, &repo, &v1, &context).await? == ("pending".into(), pending.clone()))
                .then_some(())
        },
    )
    .await;
    ns.approve(&run).await;
    run_in_phase(&ns.client, &ns.name, &v1, Phase::Applied).await;
    support::eventually(
        "a success commit status",
        Duration::from_secs(30),
        || async {
            let (state, description) = status_of(&gitea, &repo, &v1, &context).await?;
            (state == "success" && description.starts_with(&format!("plan {plan_id} applied")))
                .then_some(())
        },
    )
    .await;

    let all = gitea
        .ok(
            Method::GET,
            &format!("/repos/{repo}/commits/{v1}/statuses?sort=oldest"),
            None,
        )
        .await;
    for s in all.as_array().unwrap() {
        eprintln!(
            "{:8} {}  {}",
            s["status"].as_str().unwrap(),
            s["context"].as_str().unwrap(),
            s["description"].as_str().unwrap()
        );
    }

    // A pull request gets the plan of its head, as `kubectl fleet plan` prints it.
    let h1 = clone.commit("resize", &[("fleet.yaml", V2)], "paris replaces london");
    let number = pull_request(&gitea, &repo, "resize", "Paris replaces London").await;
    let (comment_id, first) = preview_of(&gitea, &repo, number, &h1).await;
    assert!(
        first.contains("FleetNode\n  - edge-london-01\n  + edge-paris-01"),
        "{first}"
    );
    assert!(
        first.contains("Plan: 2 to add, 4 to change, 2 to delete."),
        "{first}"
    );
    assert!(
        first.contains(r#"instanceType: "t3-medium" -> "t3-large""#),
        "{first}"
    );

    // A new push edits the same comment.
    let mut v3 = String::from_utf8(V2.to_vec()).unwrap();
    v3 = v3.replace("instance_type: t3-large", "instance_type: t3-xlarge");
    assert!(
        v3.contains("t3-xlarge"),
        "the example changed; adjust the edit"
    );
    let h2 = clone.commit("resize", &[("fleet.yaml", v3.as_bytes())], "bigger");
    let (edited_id, second) = preview_of(&gitea, &repo, number, &h2).await;
    assert_eq!(edited_id, comment_id, "edited in place");
    assert_eq!(previews(&gitea, &repo, number).await.len(), 1);
    assert!(second.contains(r#""t3-medium" -> "t3-xlarge""#), "{second}");
    eprintln!("---- the preview after a second push ----\n{second}");
    let previewed_plan = second
        .split("Plan `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap()
        .to_owned();

    // An invalid file: the errors are located.
    clone.checkout("main");
    let broken = String::from_utf8(V1.to_vec())
        .unwrap()
        .replace("template: edge-cdn", "template: edge-cnd");
    let hb = clone.commit("broken", &[("fleet.yaml", broken.as_bytes())], "typo");
    let bad = pull_request(&gitea, &repo, "broken", "A typo").await;
    let (_, text) = preview_of(&gitea, &repo, bad, &hb).await;
    eprintln!("---- the preview of an invalid file ----\n{text}");
    assert!(text.contains("is invalid"), "{text}");
    assert!(text.contains("fleet.yaml:"), "{text}");
    assert!(text.contains("did you mean `edge-cdn`?"), "{text}");

    // More open pull requests than one page of the API lists: opened while previews
    // were off, they are all previewed by the rounds after they are turned on.
    let repositories: Api<GitopsRepository> = Api::namespaced(ns.client.clone(), &ns.name);
    let previews_on = |on: bool| {
        let repositories = repositories.clone();
        async move {
            let patch = json!({"spec": {"forge": {"pullRequestPreviews": on}}});
            repositories
                .patch("fleet", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    previews_on(false).await;
    let many: Vec<String> = (0..55).map(|n| format!("many-{n}")).collect();
    clone.push_branches("resize", &many);
    let mut numbers = Vec::new();
    for branch in &many {
        numbers.push(pull_request(&gitea, &repo, branch, branch).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(previews(&gitea, &repo, numbers[0]).await.is_empty());
    previews_on(true).await;
    // Three pushes in a row, three webhooks: one round at a time, one comment each.
    for n in 0..3 {
        clone.push_branches("resize", &[format!("nudge-{n}")]);
    }
    support::eventually(
        "a preview on each of 57 open pull requests",
        Duration::from_secs(120),
        || async {
            for number in &numbers {
                previews(&gitea, &repo, *number).await.first()?;
            }
            Some(())
        },
    )
    .await;
    for number in &numbers {
        assert_eq!(previews(&gitea, &repo, *number).await.len(), 1, "#{number}");
    }
    // Previews never create a SyncRun.
    let runs: Api<fleetgate::api::SyncRun> = Api::namespaced(ns.client.clone(), &ns.name);
    assert_eq!(runs.list(&Default::default()).await.unwrap().items.len(), 1);

    // Merged as it is (fast-forward), the SyncRun carries the previewed plan id; the
    // signed push webhook is what makes the controller look.
    gitea
        .ok(
            Method::POST,
            &format!("/repos/{repo}/pulls/{number}/merge"),
            Some(json!({"Do": "fast-forward-only"})),
        )
        .await;
    let merged = run_in_phase(&ns.client, &ns.name, &h2, Phase::AwaitingApproval).await;
    assert_eq!(
        merged.status.as_ref().unwrap().plan_id.as_deref(),
        Some(previewed_plan.as_str())
    );
    let repos: Api<GitopsRepository> = Api::namespaced(ns.client.clone(), &ns.name);
    let status = repos.get("fleet").await.unwrap().status.unwrap();
    assert!(
        status.last_handled_push.is_some(),
        "the push webhook was received"
    );
    let forge = fleetgate::api::condition(&status.conditions, "ForgeReported").unwrap();
    assert_eq!(forge.status, "True", "{forge:?}");
    eprintln!("forge scenario took {:?}", started.elapsed());
}
