//! A repository sourced from Flux (`spec.sourceRef`), with the real source-controller
//! (built from the Go module proxy) against the test control plane and the real git
//! server: a Flux GitRepository's artifact is planned, approved and applied, the run
//! records its revision, digest and Flux's verification; a GitRepository whose commit
//! Flux cannot verify gives no artifact, and the repository plans nothing until a commit
//! signed with the trusted key comes (its run records Flux's verification); an editor
//! cannot point an auto-applying repository at another source; an artifact host no one
//! listed is refused.

use crate::support;

use std::time::Duration;

use fleetgate::api::GitopsRepository;
use fleetgate::api::syncrun::{Phase, SyncRun};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use support::chart::Installed;
use support::flux::{condition, create_git_repository, source_controller};
use support::git::server;
use support::operator::{create_repository, run_in_phase};
use support::signing::{self, GpgKey, Signer};
use support::tenant::{Tenant, V1, refusal, tenant};

const V2: &[u8] = include_bytes!("../../examples/fleet-v2.yaml");
const V3: &[u8] = include_bytes!("../../examples/fleet-v3.yaml");

/// The repository's Ready condition: (status, reason, message).
async fn ready(client: &kube::Client, ns: &str, name: &str) -> Option<(String, String, String)> {
    let repo = Api::<GitopsRepository>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()?;
    let c = fleetgate::api::condition(&repo.status?.conditions, "Ready")?.clone();
    Some((c.status, c.reason, c.message))
}

/// A Flux GitRepository `source` following the tenant's main branch over ssh (with
/// `more` spec fields, such as `verify`), made by the admin.
async fn git_source(t: &Tenant, source: &str, more: serde_json::Value) {
    let mut spec = json!({"url": server().ssh_url(&t.repo), "ref": {"branch": "main"},
                          "secretRef": {"name": "fleet-git"}, "interval": "5s"});
    if let (Some(spec), Some(more)) = (spec.as_object_mut(), more.as_object()) {
        spec.extend(more.clone());
    }
    create_git_repository(&t.admin, &t.ns.name, source, spec).await;
}

/// The GitopsRepository `name`, made by alice, reading from the GitRepository `source`.
async fn flux_sourced(t: &Tenant, name: &str, source: &str) {
    let spec = json!({"sourceRef": {"kind": "GitRepository", "name": source}, "interval": "2s"});
    create_repository(&t.alice, &t.ns.name, name, spec).await;
}

#[tokio::test]
async fn a_flux_git_repository_plans_and_applies_and_an_unverified_one_plans_nothing() {
    let flux = source_controller();
    let t = tenant("flux").await;
    let chart = Installed::new(&[&t.ns], &["--flux-artifact-hosts=127.0.0.1"]).await;
    t.bind_users();
    let ns = t.ns.name.clone();
    let git = server();
    let v1 = t.repo.commit(&[("fleet.yaml", V1)], "first");

    // Flux fetches over ssh with the tenant's Secret (Flux reads identity and
    // known_hosts as fleetgate does); fleetgate reads only what Flux serves.
    git_source(&t, "fleet-src", json!({})).await;
    flux_sourced(&t, "fleet", "fleet-src").await;
    let run = run_in_phase(&t.admin, &ns, &v1, Phase::AwaitingApproval).await;
    let recorded = run.status.clone().unwrap().source.unwrap();
    let artifact = recorded.flux.expect("the run records the Flux artifact");
    assert_eq!(
        (artifact.kind.as_str(), artifact.name.as_str()),
        ("GitRepository", "fleet-src")
    );
    assert_eq!(artifact.revision, format!("main@sha1:{v1}"));
    assert!(artifact.digest.starts_with("sha256:"), "{artifact:?}");
    assert_eq!(
        artifact.verified, None,
        "the GitRepository verifies nothing"
    );
    assert_eq!(recorded.url, None);
    t.approve(&run).by(&t.bob).await;
    run_in_phase(&t.admin, &ns, &v1, Phase::Applied).await;
    assert!(
        flux.storage.starts_with("127.0.0.1:"),
        "artifacts came from {}",
        flux.storage
    );

    // A GitRepository that verifies commits against a key that did not sign them: Flux
    // serves no artifact, and the repository says why and plans nothing.
    let keys = tempfile::tempdir().unwrap();
    let ada = GpgKey::new(keys.path(), "Ada <ada@example.com>");
    let trusted: Secret = serde_json::from_value(json!({
        "metadata": {"name": "flux-signers"},
        "stringData": {"ada.asc": ada.armored},
    }))
    .unwrap();
    Api::<Secret>::namespaced(t.admin.clone(), &ns)
        .create(&PostParams::default(), &trusted)
        .await
        .unwrap();
    let verify = json!({"mode": "HEAD", "secretRef": {"name": "flux-signers"}});
    git_source(&t, "signed-src", json!({ "verify": verify })).await;
    let (_, reason, _) = support::eventually(
        "Flux refusing the unsigned commit",
        Duration::from_secs(60),
        || async {
            condition(&t.admin, &ns, "signed-src", "SourceVerified")
                .await
                .filter(|(s, _, _)| s == "False")
        },
    )
    .await;
    eprintln!("Flux: SourceVerified False ({reason})");
    flux_sourced(&t, "signed", "signed-src").await;
    let (_, reason, message) = support::eventually(
        "the repository not ready for its source",
        Duration::from_secs(60),
        || async {
            ready(&t.admin, &ns, "signed")
                .await
                .filter(|(s, _, _)| s == "False")
        },
    )
    .await;
    assert_eq!(reason, "SourceNotReady", "{message}");
    assert!(
        message.contains("GitRepository signed-src is not ready"),
        "{message}"
    );
    let runs = Api::<SyncRun>::namespaced(t.admin.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        runs.items.iter().all(|r| r.spec.repository != "signed"),
        "nothing planned from an unverified source"
    );

    // Ada signs the next commit: Flux verifies it and serves it, and the run records
    // Flux's verification.
    let v2 = signing::commit(&t.repo, Signer::Gpg(&ada), &[("fleet.yaml", V2)], "signed");
    let runs_api = Api::<SyncRun>::namespaced(t.admin.clone(), &ns);
    let signed_run = support::eventually(
        "the signed revision planned from the verified source",
        Duration::from_secs(90),
        || async {
            let list = runs_api.list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|r| {
                r.spec.repository == "signed"
                    && r.spec.revision == v2
                    && r.phase() == Some(Phase::AwaitingApproval)
            })
        },
    )
    .await;
    let artifact = signed_run.status.unwrap().source.unwrap().flux.unwrap();
    assert_eq!(
        artifact.verified.as_deref(),
        Some("True: Succeeded"),
        "{artifact:?}"
    );

    // Under an auto-applying policy, where the fleet comes from is an approver's
    // decision: alice cannot repoint the repository at another source.
    let repos = Api::<GitopsRepository>::namespaced(t.admin.clone(), &ns);
    repos
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"approval": "Auto"}})),
        )
        .await
        .unwrap();
    let as_alice = Api::<GitopsRepository>::namespaced(t.alice.clone(), &ns);
    let repoint = json!({"spec": {"sourceRef": {"kind": "GitRepository", "name": "signed-src"}}});
    let (code, message) = refusal(
        as_alice
            .patch("fleet", &PatchParams::default(), &Patch::Merge(&repoint))
            .await,
    );
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("spec.sourceRef"), "{message}");
    // Yet the Flux source's own spec is Flux's (fleetgate guards none of it): even under
    // Auto, a plan from a Flux source waits for people.
    let v3 = t.repo.commit(&[("fleet.yaml", V3)], "third");
    let waiting = run_in_phase(&t.admin, &ns, &v3, Phase::AwaitingApproval).await;
    assert!(waiting.status.unwrap().requires_approval);
    // Neither url and sourceRef together, nor a Flux source with fleetgate's own
    // credentials or verification: the CRD says so.
    let both = json!({"spec": {"url": git.ssh_url(&t.repo), "ref": {"branch": "main"}}});
    let (code, message) = refusal(
        repos
            .patch("fleet", &PatchParams::default(), &Patch::Merge(&both))
            .await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("exactly one of url"), "{message}");
    drop(chart);
}

#[tokio::test]
async fn an_artifact_on_a_host_no_one_listed_is_refused() {
    source_controller();
    let t = tenant("fluxhost").await;
    // The default list names the in-cluster service only: the test's loopback
    // source-controller is not on it.
    let _chart = Installed::new(&[&t.ns], &[]).await;
    t.bind_users();
    let ns = t.ns.name.clone();
    let v1 = t.repo.commit(&[("fleet.yaml", V1)], "first");
    git_source(&t, "fleet-src", json!({})).await;
    flux_sourced(&t, "fleet", "fleet-src").await;
    let runs = Api::<SyncRun>::namespaced(t.admin.clone(), &ns);
    let failed = support::eventually(
        "the run refused its artifact's host",
        Duration::from_secs(90),
        || async {
            let list = runs.list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|r| {
                r.spec.revision == v1
                    && r.status
                        .as_ref()
                        .and_then(|s| s.message.as_deref())
                        .is_some_and(|m| m.contains("--flux-artifact-hosts"))
            })
        },
    )
    .await;
    assert_eq!(failed.status.unwrap().plan_id, None, "nothing planned");
}
