//! Signed approval-to-apply records, end to end through the chart: a key made by openssl
//! in a Secret of the controller's namespace; a plan bob approves is applied and its
//! record kept as an immutable ConfigMap there; `kubectl fleet attest verify` (as an
//! auditor bound to the chart's record-reader Role) says what it binds; `export` writes
//! it for an audit; a changed byte or another key fails with its reason; the record
//! outlives its run and repository; tenants can neither read nor change records. The
//! reference DSSE implementation (securesystemslib, from PyPI) verifies the same envelope.

use crate::support;

use std::path::Path;
use std::process::Command;

use fleetgate::api::GitopsRepository;
use fleetgate::api::syncrun::{Phase, SyncRun};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use support::chart::{Installed, bind};
use support::operator::{create_repository, events, run_in_phase};
use support::tenant::{V1, refusal, tenant};

const KEY_SECRET: &str = "fleetgate-records";

/// `openssl genpkey -algorithm ed25519` into `dir/<name>.pem`, its public key into
/// `dir/<name>.pub`: as docs/security.md tells a platform owner to make one.
fn openssl_key(dir: &Path, name: &str) -> (String, std::path::PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    for args in [
        vec![
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            private.to_str().unwrap(),
        ],
        vec![
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
    ] {
        let out = Command::new("openssl").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (std::fs::read_to_string(&private).unwrap(), public)
}

/// `kubectl fleet -n ns --as audrey attest <args>`: exit code and standard output.
fn attest(ns: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-fleet"))
        .args(["-n", ns, "--as", "audrey", "attest"])
        .args(args)
        .env("KUBECONFIG", &support::env().kubeconfig)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "$ kubectl fleet attest {}\n{stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}

/// `kubectl fleet attest verify FILE --key K…` as audrey, with no cluster read: exit code
/// and standard output.
fn verify_file(ns: &str, file: &Path, keys: &[&Path]) -> (i32, String) {
    let mut args = vec!["verify".to_owned(), file.to_string_lossy().into_owned()];
    for key in keys {
        args.extend(["--key".to_owned(), key.to_string_lossy().into_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    attest(ns, &args)
}

#[tokio::test]
async fn an_applied_run_leaves_a_signed_record_that_verifies_offline_and_outlives_its_repository() {
    let t = tenant("attest").await;
    let chart = Installed::with_values(
        &[&t.ns],
        &["--attestation-key-secret", KEY_SECRET],
        &[&format!("attestation.keySecret={KEY_SECRET}")],
    )
    .await;
    t.bind_users();
    let (ns, system) = (t.ns.name.clone(), chart.system.name.clone());
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = openssl_key(keys.path(), "records");
    let (_, other_public) = openssl_key(keys.path(), "other");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": KEY_SECRET},
        "stringData": {"key.pem": private},
    }))
    .unwrap();
    Api::<Secret>::namespaced(t.admin.clone(), &system)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // audrey audits: she reads runs (the chart's viewer role) and the records.
    bind(&ns, "audrey-views", "fleetgate-viewer", "audrey");
    support::run_tool(
        "kubectl",
        &[
            "create",
            "rolebinding",
            "audrey-reads-records",
            "-n",
            &system,
            "--role=fleetgate-record-reader",
            "--user=audrey",
        ],
    );

    // Bob approves the reference fleet; the run is applied and signs its record.
    let v1 = t.repo.commit(&[("fleet.yaml", V1)], "first");
    create_repository(&t.alice, &ns, "fleet", t.ssh_spec()).await;
    let run = run_in_phase(&t.admin, &ns, &v1, Phase::AwaitingApproval).await;
    t.approve(&run).by(&t.bob).await;
    run_in_phase(&t.admin, &ns, &v1, Phase::Applied).await;
    let runs = Api::<SyncRun>::namespaced(t.admin.clone(), &ns);
    let name = run.name_any();
    let kept = support::eventually(
        "the run's record",
        std::time::Duration::from_secs(60),
        || async { runs.get(&name).await.ok()?.status?.attestation },
    )
    .await;
    assert_eq!(kept.namespace, system);
    let signed = events(&t.admin, &ns, &name, "RecordSigned").await;
    assert!(signed[0].contains(&kept.config_map), "{signed:?}");

    // Kept immutable, owned by nothing, out of the tenants' reach.
    let records = Api::<ConfigMap>::namespaced(t.admin.clone(), &system);
    let record = records.get(&kept.config_map).await.unwrap();
    assert_eq!(record.immutable, Some(true));
    assert!(record.owner_references().is_empty());
    assert_eq!(
        record
            .labels()
            .get("attestation.fleetgate.dev/repository")
            .map(String::as_str),
        Some("fleet")
    );
    for tenant in [&t.alice, &t.bob] {
        let theirs = Api::<ConfigMap>::namespaced(tenant.clone(), &system);
        assert_eq!(refusal(theirs.get(&kept.config_map).await).0, 403);
        let forged: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "attestation-forged",
                         "labels": {"attestation.fleetgate.dev/record": "true"}},
            "data": {"envelope.json": "{}"},
        }))
        .unwrap();
        assert_eq!(
            refusal(theirs.create(&PostParams::default(), &forged).await).0,
            403
        );
    }

    // The auditor verifies the run's record with the public key: it binds the
    // repository, the commit, the plan, bob's approval and every object written.
    let (code, text) = attest(&ns, &["verify", &name, "--key", public.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    let applied = run_in_phase(&t.admin, &ns, &v1, Phase::Applied).await;
    let status = applied.status.unwrap();
    let plan_id = status.plan_id.clone().unwrap();
    for expected in [
        format!("{system}/{}: verified", kept.config_map),
        format!("Run:        {ns}/{name} Applied (Schedule)"),
        format!("@ {}", &v1[..12]),
        format!(
            "Plan:       {plan_id} {}",
            status.full_plan.unwrap().digest.unwrap()
        ),
        format!("Authorized: People (bob) for {plan_id}"),
        format!("Approval:   bob [system:authenticated] for {plan_id}"),
        format!(
            "Objects:    {} applied, 0 failed",
            status.progress.unwrap().applied
        ),
    ] {
        assert!(text.contains(&expected), "{expected:?} in:\n{text}");
    }

    // Exported for an audit, it verifies from the file with no cluster at all.
    let (code, exported) = attest(&ns, &["export", "--records-namespace", &system]);
    assert_eq!(code, 0);
    assert_eq!(exported.lines().count(), 1, "{exported}");
    let file = keys.path().join("records.jsonl");
    std::fs::write(&file, &exported).unwrap();
    let offline = Command::new(env!("CARGO_BIN_EXE_kubectl-fleet"))
        .args([
            "attest",
            "verify",
            file.to_str().unwrap(),
            "--key",
            public.to_str().unwrap(),
        ])
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        offline.status.success(),
        "{}{}",
        String::from_utf8_lossy(&offline.stdout),
        String::from_utf8_lossy(&offline.stderr)
    );

    // The reference DSSE implementation (securesystemslib, as in-toto uses it) agrees.
    let python = support::built("hack/tools/dsse.sh");
    let single = keys.path().join("envelope.json");
    std::fs::write(&single, exported.trim()).unwrap();
    let reference = |key: &Path| {
        let out = Command::new(&python)
            .args([
                "hack/tools/dsse-verify.py",
                single.to_str().unwrap(),
                key.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, said) = reference(&public);
    assert!(ok, "{said}");
    assert!(
        said.contains("verified: application/vnd.in-toto+json"),
        "{said}"
    );
    assert!(!reference(&other_public).0, "another key");

    // One changed character of the payload, or another key: refused, with the reason.
    let envelope: serde_json::Value = serde_json::from_str(exported.trim()).unwrap();
    let payload = envelope["payload"].as_str().unwrap();
    let middle = payload.len() / 2;
    let swapped = if &payload[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    let tampered = exported.replacen(
        payload,
        &format!("{}{swapped}{}", &payload[..middle], &payload[middle + 1..]),
        1,
    );
    std::fs::write(&file, &tampered).unwrap();
    std::fs::write(&single, tampered.trim()).unwrap();
    assert!(
        !reference(&public).0,
        "the reference implementation refuses it too"
    );
    let (code, text) = verify_file(&ns, &file, &[&public]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("NOT VERIFIED"), "{text}");
    assert!(
        text.contains("[BadSignature]") || text.contains("[Malformed]"),
        "{text}"
    );
    std::fs::write(&file, &exported).unwrap();
    // Across a key rotation an auditor gives both keys: each record is checked with the
    // key its keyid names.
    let (code, text) = verify_file(&ns, &file, &[&other_public, &public]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = verify_file(&ns, &file, &[&other_public]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("[OtherKey]"), "{text}");

    // The run and the repository deleted, the record stays, and still verifies.
    runs.delete(&name, &DeleteParams::default()).await.unwrap();
    Api::<GitopsRepository>::namespaced(t.admin.clone(), &ns)
        .delete("fleet", &DeleteParams::default())
        .await
        .unwrap();
    support::eventually(
        "the repository gone",
        std::time::Duration::from_secs(60),
        || async {
            let repos = Api::<GitopsRepository>::namespaced(t.admin.clone(), &ns);
            repos.get_opt("fleet").await.ok()?.is_none().then_some(())
        },
    )
    .await;
    let (code, again) = attest(
        &ns,
        &[
            "export",
            "--records-namespace",
            &system,
            "--repository",
            "fleet",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        again, exported,
        "the record outlives its run and repository"
    );
    std::fs::write(&file, &again).unwrap();
    let (code, text) = verify_file(&ns, &file, &[&public]);
    assert_eq!(code, 0, "{text}");
}
