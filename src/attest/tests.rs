use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::record::{Controller, Object, Objects, PlanFacts, Repository, Run};
use super::*;
use crate::api::syncrun::{ApprovalRecord, Authority, AuthorizationRecord};

const SIGNING: &str = include_str!("testdata/signing.pem");
const SIGNING_PUB: &str = include_str!("testdata/signing.pub");
const OTHER_PUB: &str = include_str!("testdata/other.pub");
const P256: &str = include_str!("testdata/p256.pem");

fn time(s: &str) -> Time {
    serde_json::from_value(serde_json::json!(s)).unwrap()
}

fn object(kind: &str, name: &str, operation: &str) -> Object {
    Object {
        kind: kind.into(),
        name: name.into(),
        operation: operation.into(),
        sha256: (operation != "Delete").then(|| Object::spec_sha256(name.as_bytes())),
    }
}

fn record(objects: Vec<Object>) -> ApplyRecord {
    ApplyRecord {
        recorded_at: "2026-12-06T10:00:00Z".into(),
        controller: Controller {
            version: "0.1.0".into(),
            cluster: "default".into(),
        },
        run: Run {
            namespace: "team-a".into(),
            name: "fleet-1a2b3c4-x".into(),
            uid: "0b8a9c4e-1111-2222-3333-444455556666".into(),
            phase: "Applied".into(),
            trigger: "Schedule".into(),
            started_at: Some("2026-12-06T09:59:00Z".into()),
            completed_at: Some("2026-12-06T09:59:30Z".into()),
            message: None,
        },
        repository: Repository {
            name: "fleet".into(),
            url: Some("ssh://git@git.example.com/fleet.git".into()),
            git_ref: Some("branch:main".into()),
            path: None,
            revision: "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d".into(),
            restores: None,
            flux: None,
        },
        commit: None,
        plan: PlanFacts {
            id: "plan-0123456789ab".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            actions: 3,
        },
        authorization: Some(AuthorizationRecord {
            by: Authority::People,
            approvers: vec!["bob".into()],
            policy: None,
            plan_id: "plan-0123456789ab".into(),
            basis: None,
            at: time("2026-12-06T09:58:00Z"),
            slices: Vec::new(),
        }),
        approvals_required: 1,
        policy_results: vec![],
        window_override: None,
        approvals: vec![ApprovalRecord {
            user: "bob".into(),
            groups: vec!["system:authenticated".into()],
            plan_id: "plan-0123456789ab".into(),
            at: time("2026-12-06T09:58:00Z"),
        }],
        objects: Objects::new(objects, 0, 0, 0),
        drift_after_apply: vec![],
    }
}

fn three() -> Vec<Object> {
    vec![
        object("SdwanPeer", "edge.a", "Update"),
        object("FleetNode", "a", "Create"),
        object("FleetNode", "b", "Delete"),
    ]
}

fn key() -> PrivateKey {
    PrivateKey::from_pem(SIGNING).unwrap()
}

#[test]
fn keys_made_by_openssl_are_read_and_named_by_their_spki_digest() {
    let public = PublicKey::from_pem(SIGNING_PUB).unwrap();
    // `openssl pkey -pubin -in signing.pub -outform DER | sha256sum`
    assert_eq!(
        public.keyid(),
        "a9d5b62b5adfb4ed4f040ac6d46a97250f47f6774bd1d6cd0606aabad861d006"
    );
    assert_eq!(key().keyid(), public.keyid());
    assert_eq!(key().public().to_pem().unwrap().trim(), SIGNING_PUB.trim());
    let refused = PrivateKey::from_pem(P256).unwrap_err();
    assert_eq!(refused.label(), "InvalidKey", "{refused}");
    assert_eq!(PublicKey::from_pem("").unwrap_err().label(), "InvalidKey");
    assert_eq!(
        PrivateKey::from_pem(SIGNING_PUB).unwrap_err().label(),
        "InvalidKey"
    );
    // The key never shows in debug output.
    assert!(!format!("{:?}", key()).contains("PRIVATE"));
}

#[test]
fn pae_is_the_dsse_encoding() {
    // The example of the DSSE protocol (secure-systems-lab/dsse, protocol.md).
    assert_eq!(
        dsse::pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    );
}

#[test]
fn a_signed_record_verifies_with_the_public_key_and_says_what_was_signed() {
    let signed = sign(&record(three()), &key()).unwrap();
    let public = PublicKey::from_pem(SIGNING_PUB).unwrap();
    let verified = verify(&signed, &public).unwrap();
    assert_eq!(verified.keyid, public.keyid());
    let statement = verified.statement;
    assert_eq!(statement.predicate, record(three()));
    let names: Vec<&str> = statement.subject.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "git+ssh://git@git.example.com/fleet.git",
            "plan/team-a/plan-0123456789ab",
            "team-a/FleetNode/a",
            "team-a/SdwanPeer/edge.a",
        ]
    );
    assert_eq!(
        statement.subject[0].digest,
        BTreeMap::from([(
            "gitCommit".to_owned(),
            "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d".to_owned()
        )])
    );
    // Sorted, the delete listed without a digest.
    let listed: Vec<String> = statement
        .predicate
        .objects
        .listed
        .iter()
        .map(|o| o.line())
        .collect();
    assert_eq!(listed[1], "FleetNode/b Delete -\n");
}

#[test]
fn every_changed_byte_of_an_envelope_fails_verification() {
    let signed = sign(&record(three()), &key()).unwrap();
    let public = PublicKey::from_pem(SIGNING_PUB).unwrap();
    let mut labels = BTreeMap::new();
    for i in 0..signed.len() {
        for change in [0x01u8, 0x20] {
            let mut tampered = signed.clone();
            tampered[i] ^= change;
            let err = verify(&tampered, &public)
                .map(|_| ())
                .expect_err(&format!("byte {i} ^ {change:#x} still verifies"));
            *labels.entry(err.label()).or_insert(0) += 1;
        }
    }
    // The reasons are the ones a person can act on.
    for label in labels.keys() {
        assert!(
            ["Malformed", "PayloadType", "OtherKey", "BadSignature"].contains(label),
            "{labels:?}"
        );
    }
    assert!(labels.contains_key("BadSignature"), "{labels:?}");
}

#[test]
fn another_key_a_second_signature_or_an_unsigned_statement_is_refused() {
    let signed = sign(&record(three()), &key()).unwrap();
    let other = PublicKey::from_pem(OTHER_PUB).unwrap();
    let err = verify(&signed, &other).unwrap_err();
    assert_eq!(err.label(), "OtherKey", "{err}");

    let public = PublicKey::from_pem(SIGNING_PUB).unwrap();
    // The keyid rewritten to the verifier's: the signature still fails.
    let mut envelope: Envelope = serde_json::from_slice(&signed).unwrap();
    let theirs = PrivateKey::from_pem(include_str!("testdata/other.pem")).unwrap();
    let forged = Envelope::sign(PAYLOAD_TYPE, b"{}".to_vec(), &theirs);
    envelope.signatures[0].sig = forged.signatures[0].sig.clone();
    let err = verify(&serde_json::to_vec(&envelope).unwrap(), &public).unwrap_err();
    assert_eq!(err.label(), "BadSignature", "{err}");

    let mut two: Envelope = serde_json::from_slice(&signed).unwrap();
    two.signatures.push(two.signatures[0].clone());
    let err = verify(&serde_json::to_vec(&two).unwrap(), &public).unwrap_err();
    assert_eq!(err.label(), "Malformed", "{err}");

    let extra = String::from_utf8(signed.clone())
        .unwrap()
        .replacen('{', "{\"extra\":1,", 1);
    assert_eq!(
        verify(extra.as_bytes(), &public).unwrap_err().label(),
        "Malformed"
    );
    assert_eq!(verify(b"null", &public).unwrap_err().label(), "Malformed");
}

#[test]
fn a_signed_payload_that_is_not_a_consistent_statement_is_refused() {
    let key = key();
    let public = key.public();
    let signed = |value: serde_json::Value| {
        serde_json::to_vec(&Envelope::sign(
            PAYLOAD_TYPE,
            serde_json::to_vec(&value).unwrap(),
            &key,
        ))
        .unwrap()
    };
    let statement = serde_json::to_value(record(three()).statement()).unwrap();

    let mut wrong_type = statement.clone();
    wrong_type["predicateType"] = "https://slsa.dev/provenance/v1".into();
    let err = verify(&signed(wrong_type), &public).unwrap_err();
    assert_eq!(err.label(), "NotAStatement", "{err}");

    let mut fewer_subjects = statement.clone();
    fewer_subjects["subject"].as_array_mut().unwrap().pop();
    let err = verify(&signed(fewer_subjects), &public).unwrap_err();
    assert_eq!(err.label(), "Inconsistent", "{err}");

    let mut other_digest = statement.clone();
    other_digest["predicate"]["objects"]["listed"][0]["sha256"] = "00".repeat(32).into();
    other_digest["subject"][2]["digest"]["sha256"] = "00".repeat(32).into();
    let err = verify(&signed(other_digest), &public).unwrap_err();
    assert_eq!(err.label(), "Inconsistent", "{err}");
    assert!(err.to_string().contains("digest to"), "{err}");

    let mut other_plan = statement.clone();
    other_plan["predicate"]["authorization"]["planId"] = "plan-ffffffffffff".into();
    let err = verify(&signed(other_plan), &public).unwrap_err();
    assert_eq!(err.label(), "Inconsistent", "{err}");

    assert_eq!(
        verify(&signed(serde_json::json!({"a": 1})), &public)
            .unwrap_err()
            .label(),
        "NotAStatement"
    );
}

#[test]
fn past_the_bound_objects_are_covered_by_their_digest_and_the_record_fits_a_configmap() {
    // A 10,000-node fleet: two objects a node.
    let many: Vec<Object> = (0..20_000)
        .map(|i| object("FleetNode", &format!("node-{i:05}"), "Create"))
        .collect();
    let record = record(many.clone());
    assert_eq!(record.objects.applied, 20_000);
    assert_eq!(record.objects.listed.len(), record::MAX_LISTED_OBJECTS);
    assert!(!record.objects.complete());
    assert_eq!(record.objects.digest, Objects::new(many, 0, 0, 0).digest);
    let signed = sign(&record, &key()).unwrap();
    assert!(signed.len() < MAX_ENVELOPE_BYTES, "{} bytes", signed.len());
    verify(&signed, &key().public()).unwrap();
}

#[test]
fn a_record_of_long_names_lists_fewer_objects_rather_than_fail() {
    // Tenants choose names: 1,000 objects of 253-character names would not fit.
    let long: Vec<Object> = (0..1000)
        .map(|i| object("SdwanPeer", &format!("{i:04}{}", "n".repeat(249)), "Create"))
        .collect();
    let record = record(long.clone());
    let signed = sign(&record, &key()).unwrap();
    assert!(signed.len() <= MAX_ENVELOPE_BYTES);
    let statement = verify(&signed, &key().public()).unwrap().statement;
    let objects = &statement.predicate.objects;
    assert_eq!(objects.applied, 1000);
    assert!(objects.listed.len() < 1000, "{}", objects.listed.len());
    assert!(!objects.listed.is_empty());
    // The digest still covers every object.
    assert_eq!(objects.digest, Objects::new(long, 0, 0, 0).digest);
}

#[test]
fn a_record_without_an_authorization_or_specs_says_so_and_verifies() {
    let mut record = record(vec![]);
    record.authorization = None;
    record.objects = Objects::without_specs(
        vec![Object {
            kind: "FleetNode".into(),
            name: "a".into(),
            operation: "Create".into(),
            sha256: None,
        }],
        [3, 1, 0, 0],
        "the stored plan was changed after it was recorded".into(),
    );
    let signed = sign(&record, &key()).unwrap();
    let verified = verify(&signed, &key().public()).unwrap();
    let objects = verified.statement.predicate.objects;
    assert_eq!((objects.applied, objects.listed.len()), (3, 1));
    assert!(!objects.complete());
    assert!(objects.specs_unavailable.unwrap().contains("changed"));
}

#[test]
fn a_record_of_a_flux_source_names_the_source_and_binds_its_artifact() {
    let mut record = record(three());
    record.repository.url = None;
    record.repository.flux = Some(crate::api::provenance::FluxArtifact {
        kind: "GitRepository".into(),
        name: "fleet-src".into(),
        revision: "main@sha1:1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d".into(),
        digest: format!("sha256:{}", "cd".repeat(32)),
        verified: Some("True: Succeeded".into()),
    });
    let statement = verify(&sign(&record, &key()).unwrap(), &key().public())
        .unwrap()
        .statement;
    assert_eq!(
        statement.subject[0].name,
        "flux:GitRepository/team-a/fleet-src"
    );
    assert!(statement.subject[0].digest.contains_key("gitCommit"));
    assert_eq!(
        statement.subject[1].name,
        "flux-artifact:GitRepository/team-a/fleet-src"
    );
    assert_eq!(statement.subject[1].digest["sha256"], "cd".repeat(32));
}
