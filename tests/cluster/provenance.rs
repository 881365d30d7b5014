//! Verified sources, end to end through the chart (roles and admission policies): commits
//! and tags signed by real gpg and ssh-keygen on the real git server plan; unsigned,
//! untrusted, tampered, stripped, lightweight-tag and tag-only revisions never do, each
//! with its reason on the run and on the repository; editors cannot loosen `verify` nor
//! touch the trusted keys.

use crate::support;

use fleetgate::api::GitopsRepository;
use fleetgate::api::syncrun::{Phase, SyncRun};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use support::operator::{create_repository, events, request_sync, run_in_phase};
use support::policy::Policy;
use support::signing::{self, GpgKey, Signer, SshKey};
use support::tenant::{Tenant, V1, refusal, tenant};

const TRUSTED: &str = "signers";

/// The trusted-keys Secret: ada's OpenPGP key and carol's SSH key.
fn trusted_keys(ada: &GpgKey, carol: &SshKey) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": TRUSTED, "labels": {"gitops.fleetgate.dev/trusted-keys": "true"}},
        "stringData": {
            "ada.asc": ada.armored,
            "allowed_signers": carol.allowed_signer("carol@example.com"),
        },
    }))
    .unwrap()
}

/// The repository's `SourceVerified` condition: (status, reason, message).
async fn source_verified(
    client: &Client,
    ns: &str,
    name: &str,
) -> Option<(String, String, String)> {
    let repo = Api::<GitopsRepository>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()?;
    let c = fleetgate::api::condition(&repo.status?.conditions, "SourceVerified")?.clone();
    Some((c.status, c.reason, c.message))
}

/// Waits until the repository says `SourceVerified` is `status` for `reason`.
async fn until_source_verified(t: &Tenant, name: &str, status: &str, reason: &str) -> String {
    let what = format!("SourceVerified={status} ({reason}) on {name}");
    support::eventually(&what, std::time::Duration::from_secs(60), || async {
        let (s, r, m) = source_verified(&t.admin, &t.ns.name, name).await?;
        (s == status && r == reason).then_some(m)
    })
    .await
}

/// The run of `repository` for `revision` failed for `reason`, planned nothing, and
/// said so in an Event.
async fn refused(t: &Tenant, repository: &str, revision: &str, reason: &str) -> SyncRun {
    let runs = Api::<SyncRun>::namespaced(t.admin.clone(), &t.ns.name);
    let what = format!("the run of {repository} for {revision} Failed");
    let run = support::eventually(&what, std::time::Duration::from_secs(60), || async {
        let list = runs.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|r| {
            r.spec.repository == repository
                && r.spec.revision == revision
                && r.phase() == Some(Phase::Failed)
        })
    })
    .await;
    let status = run.status.clone().unwrap();
    let ready = fleetgate::api::condition(&status.conditions, "Ready").unwrap();
    assert_eq!(ready.reason, reason, "{status:?}");
    assert_eq!(
        status.plan_id, None,
        "an unverified revision is never planned"
    );
    let told = events(&t.admin, &t.ns.name, &run.name_any(), reason).await;
    assert!(
        told[0].contains("revision not verified, nothing was planned"),
        "{told:?}"
    );
    run
}

/// Creates repository `fleet`, following main and verifying each commit (HEAD).
async fn following_main(t: &Tenant) {
    let spec = spec(t, json!({"branch": "main"}), "HEAD");
    create_repository(&t.admin, &t.ns.name, "fleet", spec).await;
}

/// What `run` recorded of its commit.
fn commit_of(run: &SyncRun) -> fleetgate::api::provenance::RunCommit {
    let source = run.status.as_ref().and_then(|s| s.source.as_ref());
    source
        .and_then(|s| s.commit.clone())
        .expect("the run recorded its commit")
}

fn spec(t: &Tenant, git_ref: Value, mode: &str) -> Value {
    let mut spec = t.ssh_spec();
    spec["ref"] = git_ref;
    spec["verify"] = json!({"mode": mode, "secretRef": {"name": TRUSTED}});
    spec
}

/// A tenant with the chart installed, Ada's OpenPGP key and Carol's SSH key made, and
/// the Secret that trusts both (created by the admin, as an approver would).
/// The key files live in `keys`: keep it for as long as git signs.
struct Trusting {
    t: Tenant,
    ada: GpgKey,
    carol: SshKey,
    keys: tempfile::TempDir,
    _chart: support::chart::Installed,
}

async fn trusting(prefix: &str) -> Trusting {
    let t = tenant(prefix).await;
    let _chart = t.install_chart().await;
    let keys = tempfile::tempdir().unwrap();
    let ada = GpgKey::new(keys.path(), "Ada <ada@example.com>");
    let carol = SshKey::new(keys.path(), "carol");
    Api::<Secret>::namespaced(t.admin.clone(), &t.ns.name)
        .create(&PostParams::default(), &trusted_keys(&ada, &carol))
        .await
        .unwrap();
    Trusting {
        t,
        ada,
        carol,
        keys,
        _chart,
    }
}

#[tokio::test]
async fn signed_commits_plan_and_every_other_revision_is_refused_with_its_reason() {
    let Trusting {
        t,
        ada,
        carol,
        keys,
        _chart,
    } = trusting("verify").await;
    let ns = &t.ns.name;
    let mallory = SshKey::new(keys.path(), "mallory");

    // alice may edit Secrets (Kubernetes' edit role) but not trusted keys: neither add
    // her key, nor relabel, nor delete, nor make another such Secret.
    let as_alice = Api::<Secret>::namespaced(t.alice.clone(), ns);
    let add =
        json!({"stringData": {"allowed_signers": mallory.allowed_signer("alice@example.com")}});
    let unlabel = json!({"metadata": {"labels": {"gitops.fleetgate.dev/trusted-keys": null}}});
    for patch in [add, unlabel] {
        let (code, message) = refusal(
            as_alice
                .patch(TRUSTED, &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        );
        assert_eq!(code, 403);
        assert!(
            message.contains("may not update a Secret of trusted signing keys"),
            "{message}"
        );
    }
    // Keys planted in a Secret before it is labelled would survive an approver's label.
    let planted: Secret = serde_json::from_value(json!({
        "metadata": {"name": "planted"},
        "stringData": {"mallory.asc": "…"},
    }))
    .unwrap();
    as_alice
        .create(&PostParams::default(), &planted)
        .await
        .unwrap();
    let label = json!({"metadata": {"labels": {"gitops.fleetgate.dev/trusted-keys": "true"}}});
    let (code, message) = refusal(
        Api::<Secret>::namespaced(t.admin.clone(), ns)
            .patch("planted", &PatchParams::default(), &Patch::Merge(&label))
            .await,
    );
    assert_eq!(code, 403);
    assert!(message.contains("only when it is created so"), "{message}");
    let mut own = trusted_keys(&ada, &mallory);
    own.metadata.name = Some("alices-signers".into());
    let (code, message) = refusal(as_alice.create(&PostParams::default(), &own).await);
    assert_eq!(code, 403);
    assert!(
        message.contains("may not create a Secret of trusted"),
        "{message}"
    );

    // HEAD: the commit's signature decides.
    following_main(&t).await;
    let v1 = signing::commit(&t.repo, Signer::Gpg(&ada), &[("fleet.yaml", V1)], "first");
    let run = run_in_phase(&t.admin, ns, &v1, Phase::AwaitingApproval).await;
    let commit = commit_of(&run);
    let signature = commit.signature.clone().unwrap();
    assert_eq!(
        (signature.kind.as_str(), signature.fingerprint.as_str()),
        ("OpenPGP", ada.fingerprint.as_str())
    );
    assert_eq!(signature.identities, ["Ada <ada@example.com>"]);
    assert_eq!(commit.author.email, "ada@example.com");
    assert_eq!(commit.committer.name, "Ada Author");
    let said = until_source_verified(&t, "fleet", "True", "Verified").await;
    assert!(
        said.contains(&format!("commit signed by OpenPGP key {}", ada.fingerprint)),
        "{said}"
    );

    let unsigned = signing::commit(&t.repo, Signer::Nobody, &[], "unsigned");
    refused(&t, "fleet", &unsigned, "Unsigned").await;
    let said = until_source_verified(&t, "fleet", "False", "Unsigned").await;
    assert!(
        said.contains(&format!("commit {} is not signed", &unsigned[..12])),
        "{said}"
    );

    let by_mallory = signing::commit(&t.repo, Signer::Ssh(&mallory), &[], "mallory's");
    let run = refused(&t, "fleet", &by_mallory, "UntrustedKey").await;
    let message = run.status.unwrap().message.unwrap();
    assert!(message.contains(&mallory.fingerprint), "{message}");

    let by_carol = signing::commit(&t.repo, Signer::Ssh(&carol), &[], "carol's");
    let run = run_in_phase(&t.admin, ns, &by_carol, Phase::AwaitingApproval).await;
    let signature = commit_of(&run).signature.unwrap();
    assert_eq!(
        (signature.kind.as_str(), signature.fingerprint.as_str()),
        ("SSH", carol.fingerprint.as_str())
    );
    until_source_verified(&t, "fleet", "True", "Verified").await;
    // What an approver reviewing the plan reads.
    let shown = super::plugin::plugin(ns, &["plan", &run.name_any()], "");
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let line = format!(
        "Commit: by Ada Author <ada@example.com>; verified (HEAD): commit signed by SSH key {} (carol@example.com)\n",
        carol.fingerprint
    );
    assert!(shown.stdout.contains(&line), "{}", shown.stdout);
    println!("kubectl fleet plan {}:\n{}", run.name_any(), shown.stdout);

    // Carol's signed commit, its message changed by someone without her key; then the
    // same commit with its signature stripped.
    let tampered = signing::rewrite_head(&t.repo, |raw| raw.replace("carol's", "carol's, surely"));
    refused(&t, "fleet", &tampered, "InvalidSignature").await;
    let stripped = signing::rewrite_head(&t.repo, |raw| {
        let (headers, message) = raw.split_once("\n\n").unwrap();
        let kept: Vec<&str> = headers
            .lines()
            .filter(|l| !l.starts_with("gpgsig") && !l.starts_with(' '))
            .collect();
        format!("{}\n\n{message}", kept.join("\n"))
    });
    refused(&t, "fleet", &stripped, "Unsigned").await;

    // Loosening verify is an approver's: alice can neither drop it nor point it at other
    // keys; bob can.
    let repos = |c: &Client| Api::<GitopsRepository>::namespaced(c.clone(), ns);
    for change in [
        json!({"spec": {"verify": null}}),
        json!({"spec": {"verify": {"secretRef": {"name": "alices-signers"}}}}),
    ] {
        let (code, message) = refusal(
            repos(&t.alice)
                .patch("fleet", &PatchParams::default(), &Patch::Merge(&change))
                .await,
        );
        assert_eq!(code, 403);
        assert!(message.contains("spec.verify"), "{message}");
    }
    let off = json!({"spec": {"verify": null}});
    repos(&t.bob)
        .patch("fleet", &PatchParams::default(), &Patch::Merge(&off))
        .await
        .unwrap();
    support::eventually(
        "SourceVerified gone",
        std::time::Duration::from_secs(60),
        || async {
            source_verified(&t.admin, ns, "fleet")
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;

    // A platform owner may require verification for the whole namespace: then neither
    // dropping verify nor deleting and re-creating the repository without it plans.
    let _signed_only = Policy::create(
        &t.admin,
        &format!("{ns}-signed-only"),
        json!({"repositories": [{"namespace": ns, "name": "*"}], "sources": {"requireVerified": true}}),
    )
    .await;
    let after = signing::commit(&t.repo, Signer::Ssh(&carol), &[], "no verify");
    let run = refused(&t, "fleet", &after, "VerificationRequired").await;
    let message = run.status.unwrap().message.unwrap();
    assert!(message.contains("requires verified sources"), "{message}");
    repos(&t.alice)
        .delete("fleet", &Default::default())
        .await
        .unwrap();
    let mut again = t.ssh_spec();
    again["interval"] = json!("2s");
    create_repository(&t.alice, ns, "fleet-again", again).await;
    let again = signing::commit(&t.repo, Signer::Ssh(&carol), &[], "re-created");
    refused(&t, "fleet-again", &again, "VerificationRequired").await;
}

#[tokio::test]
async fn a_signed_tag_vouches_for_its_commit_only_where_tags_are_verified() {
    let Trusting {
        t,
        carol,
        _chart,
        keys: _keys,
        ..
    } = trusting("verify-tag").await;
    let ns = &t.ns.name;
    let tag = json!({"tag": "release"});

    // An unsigned commit, tagged lightweight: nothing signed it.
    let v1 = signing::commit(&t.repo, Signer::Nobody, &[("fleet.yaml", V1)], "first");
    signing::tag(&t.repo, Signer::Nobody, "release");
    create_repository(&t.admin, ns, "by-tag", spec(&t, tag.clone(), "Tag")).await;
    let run = refused(&t, "by-tag", &v1, "Unsigned").await;
    assert!(run.status.unwrap().message.unwrap().contains("lightweight"));

    // The same commit under a tag carol signed: planned, the tag's signer recorded.
    signing::tag(&t.repo, Signer::Ssh(&carol), "release");
    // The revision is the same commit: a sync request plans it again (`kubectl fleet sync`).
    request_sync(&t.admin, ns, "by-tag", "after-signing").await;
    let run = support::eventually(
        "a planned run of the signed tag",
        std::time::Duration::from_secs(90),
        || async {
            let runs = Api::<SyncRun>::namespaced(t.admin.clone(), ns)
                .list(&Default::default())
                .await
                .ok()?;
            runs.items
                .into_iter()
                .find(|r| r.spec.revision == v1 && r.phase() == Some(Phase::AwaitingApproval))
        },
    )
    .await;
    let commit = commit_of(&run);
    let signed = commit.tag.unwrap();
    assert_eq!(signed.name, "release");
    assert_eq!(signed.signature.fingerprint, carol.fingerprint);
    assert_eq!(commit.signature, None, "mode Tag reads the tag only");
    until_source_verified(&t, "by-tag", "True", "Verified").await;

    // Another tag carol signed, pushed under the name the repository follows: the tag
    // object names itself, so it cannot stand in for `release`.
    signing::tag(&t.repo, Signer::Ssh(&carol), "rc1");
    signing::push_tag_as(&t.repo, "rc1", "release");
    request_sync(&t.admin, ns, "by-tag", "moved").await;
    let said = until_source_verified(&t, "by-tag", "False", "TagMismatch").await;
    assert!(said.contains("a tag object named `rc1`"), "{said}");

    // TagAndHEAD also asks the commit: a signed tag does not vouch for an unsigned one.
    create_repository(&t.admin, ns, "both", spec(&t, tag, "TagAndHEAD")).await;
    let said = until_source_verified(&t, "both", "False", "Unsigned").await;
    assert!(
        said.contains(&format!("commit {} is not signed", &v1[..12])),
        "{said}"
    );
}

#[tokio::test]
async fn the_people_who_wrote_a_plan_do_not_count_as_its_approvers() {
    let Trusting {
        t,
        carol,
        _chart,
        keys: _keys,
        ..
    } = trusting("duties").await;
    let ns = &t.ns.name;
    following_main(&t).await;
    let v1 = signing::commit(&t.repo, Signer::Ssh(&carol), &[("fleet.yaml", V1)], "first");
    let before = run_in_phase(&t.admin, ns, &v1, Phase::AwaitingApproval).await;

    // The platform owner separates duties while that plan waits. bob is known by his
    // e-mail address (what he typed), carol by her signing key (proof).
    let identities = json!([
        {"email": "Bob@Example.com", "user": "bob"},
        {"email": "ada@example.com", "user": "ada"},
        {"fingerprint": carol.fingerprint, "user": "carol"},
    ]);
    let _duties = Policy::create(
        &t.admin,
        &format!("{ns}-duties"),
        json!({
            "repositories": [{"namespace": ns, "name": "*"}],
            "approvals": {"required": 1, "separationOfDuties": {"identities": identities}},
            "rules": [{"name": "strangers-need-two", "expression": "plan.source.unmapped.exists(i, i.startsWith('zed'))",
                       "action": "RequireApprovals", "approvals": 2,
                       "message": "someone the policy does not know wrote part of this plan"}],
        }),
    )
    .await;
    // Who wrote the waiting plan was not recorded: no approval of it counts.
    t.approve(&before).by(&t.bob).try_send().await.unwrap();
    let said = "bob's approval cannot count: this plan was recorded before separation of duties";
    super::authorization::refused_with(&t, &before.name_any(), said, 1).await;

    // Planned afresh: carol signed it, so her approval does not count. A first plan is
    // not read whole (nothing applied before it to start from): one more approver.
    request_sync(&t.admin, ns, "fleet", "now").await;
    let run = support::eventually(
        "v1 planned afresh",
        std::time::Duration::from_secs(60),
        || async {
            let runs = Api::<SyncRun>::namespaced(t.admin.clone(), ns)
                .list(&Default::default())
                .await
                .ok()?;
            runs.items.into_iter().find(|r| {
                r.spec.revision == v1
                    && r.name_any() != before.name_any()
                    && r.phase() == Some(Phase::AwaitingApproval)
            })
        },
    )
    .await;
    let range = commit_of(&run).range.unwrap();
    assert_eq!(
        (range.from, range.commits, range.complete),
        (None, 1, false)
    );
    assert_eq!(range.signers, std::slice::from_ref(&carol.fingerprint));
    assert_eq!(run.status.as_ref().unwrap().approvals_required, Some(2));
    t.approve(&run).by(&t.carol).try_send().await.unwrap();
    let said = format!(
        "carol wrote this plan's source (signing key {}",
        carol.fingerprint
    );
    super::authorization::refused_with(&t, &run.name_any(), &said, 1).await;
    t.approve(&run).by(&t.bob).try_send().await.unwrap();
    super::authorization::recorded(&t, &run.name_any(), 1).await;
    t.approve(&run).try_send().await.unwrap();
    run_in_phase(&t.admin, ns, &v1, Phase::Applied).await;

    // The next revision: bob wrote a commit, zed (whom no policy knows) another, carol
    // signed the tip. Neither bob nor carol may approve; the rule asks for two because
    // of zed, and two commits no trusted key signed ask for one more.
    signing::commit_as(
        &t.repo,
        ("Bob", "bob@example.com"),
        Signer::Nobody,
        &[],
        "bob's change",
    );
    signing::commit_as(
        &t.repo,
        ("Zed", "zed@example.com"),
        Signer::Nobody,
        &[],
        "zed's change",
    );
    let v2 = signing::commit_as(
        &t.repo,
        ("Carol", "carol@example.com"),
        Signer::Ssh(&carol),
        &[("fleet.yaml", include_bytes!("../../examples/fleet-v2.yaml"))],
        "carol signs",
    );
    let run = run_in_phase(&t.admin, ns, &v2, Phase::AwaitingApproval).await;
    let range = commit_of(&run).range.unwrap();
    assert_eq!(
        (
            range.from.as_deref(),
            range.commits,
            range.complete,
            range.unverified
        ),
        (Some(v1.as_str()), 3, true, 2)
    );
    assert_eq!(
        range.authors,
        ["carol@example.com", "zed@example.com", "bob@example.com"]
    );
    assert_eq!(run.status.as_ref().unwrap().approvals_required, Some(3));
    for (who, said) in [
        (
            &t.bob,
            "bob wrote this plan's source (e-mail bob@example.com",
        ),
        (&t.carol, "carol wrote this plan's source"),
    ] {
        t.approve(&run).by(who).try_send().await.unwrap();
        super::authorization::refused_with(&t, &run.name_any(), said, 1).await;
    }
    let shown = super::plugin::plugin(ns, &["plan", &run.name_any()], "");
    let written = format!(
        "Written (since {}): 3 commit(s) by carol@example.com, zed@example.com, bob@example.com; signed by {}; 2 not signed by a trusted key\n",
        &v1[..12],
        carol.fingerprint
    );
    assert!(shown.stdout.contains(&written), "{}", shown.stdout);
    println!("kubectl fleet plan {}:\n{}", run.name_any(), shown.stdout);
}
