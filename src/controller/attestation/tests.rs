use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::syncrun::{Authority, AuthorizationRecord, Phase, RunSource};
use crate::attest::PublicKey;
use crate::controller::fixtures::{EXAMPLE, EXAMPLE_V2, plan_of, run_named};

fn at(s: &str) -> Time {
    serde_json::from_value(serde_json::json!(s)).unwrap()
}

/// A run of `plan` authorized by bob, ended in `phase` with `states`, one letter an
/// action.
fn ended(plan: &Plan, phase: Phase, states: &str) -> (SyncRun, SyncRunStatus) {
    let mut run = run_named("fleet-1a2b3c4-x");
    run.metadata.uid = Some("6f0c1b7e-0000-4000-8000-000000000001".into());
    let status = SyncRunStatus {
        phase: Some(phase),
        plan_id: Some(plan.plan_id.clone()),
        action_states: Some(states.into()),
        authorization: Some(AuthorizationRecord {
            by: Authority::People,
            approvers: vec!["bob".into()],
            policy: None,
            plan_id: plan.plan_id.clone(),
            basis: None,
            at: at("2026-12-06T10:00:00Z"),
            slices: Vec::new(),
        }),
        source: Some(RunSource {
            url: Some("ssh://git@git.example.com/fleet.git".into()),
            revision: "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    (run, status)
}

#[test]
fn a_record_is_due_once_for_an_authorized_run_that_is_over() {
    let plan = plan_of(EXAMPLE).on_an_empty_cluster();
    let (_, status) = ended(&plan, Phase::Applied, "");
    assert!(due(&status));
    // Built, not assigned: a run's phase is set only by the lifecycle.
    let in_phase = |phase| SyncRunStatus {
        phase: Some(phase),
        ..status.clone()
    };
    for phase in [
        Phase::Applying,
        Phase::Converging,
        Phase::Paused,
        Phase::AwaitingApproval,
    ] {
        assert!(!due(&in_phase(phase)), "{phase:?}");
    }
    let mut status = in_phase(Phase::Failed);
    assert!(
        due(&status),
        "a failed run records what it wrote before failing"
    );
    status.authorization = None;
    assert!(!due(&status), "never authorized: nothing was written");
    status.action_states = Some("AP".into());
    assert!(
        due(&status),
        "an authorization withdrawn after a first wave: what was written is recorded"
    );
    status.action_states = Some(String::new());
    status.authorization = ended(&plan, Phase::Applied, "").1.authorization;
    status.attestation = Some(AttestationRef {
        namespace: "fleetgate-system".into(),
        config_map: "attestation-x".into(),
        key_id: "k".into(),
        digest: "sha256:0".into(),
    });
    assert!(!due(&status), "once");
}

#[test]
fn the_record_lists_what_was_applied_with_the_digest_of_each_spec_written() {
    let plan = plan_of(EXAMPLE_V2).against(EXAMPLE);
    let n = plan.actions.len();
    assert!(n >= 3, "{n}");
    // The first action failed, the second was skipped, the rest applied.
    let states = format!("FS{}", "A".repeat(n - 2));
    let (run, status) = ended(&plan, Phase::Failed, &states);
    let now = at("2026-12-06T10:05:00Z");
    let record = facts(&run, &status, Ok(&plan), "sha256:00", "prod-eu", &now);
    assert_eq!(record.run.phase, "Failed");
    assert_eq!(record.run.namespace, "team");
    assert_eq!(record.controller.cluster, "prod-eu");
    assert_eq!(record.plan.id, plan.plan_id);
    assert_eq!(record.plan.actions as usize, n);
    assert_eq!(
        (
            record.objects.applied as usize,
            record.objects.failed,
            record.objects.skipped
        ),
        (n - 2, 1, 1)
    );
    for (action, listed) in plan.actions[2..].iter().zip({
        let mut applied: Vec<&Object> = record.objects.listed.iter().collect();
        applied.sort_by_key(|o| {
            plan.actions
                .iter()
                .position(|a| a.name == o.name && a.kind.to_string() == o.kind)
        });
        applied
    }) {
        assert_eq!(listed.operation, action.operation.word());
        match action
            .spec
            .as_deref()
            .filter(|_| action.operation != Operation::Delete)
        {
            Some(spec) => {
                let sha = listed.sha256.as_deref().unwrap();
                // Its first 16 digits are the spec digest fleetgate compares live
                // objects with, so an auditor can match a live object to the record.
                assert_eq!(&sha[..16], crate::fleet::plan::spec_digest(spec));
            }
            None => assert_eq!(listed.sha256, None),
        }
    }
    // Signed, it verifies with the public key alone.
    let key = PrivateKey::from_pem(include_str!("../../attest/testdata/signing.pem")).unwrap();
    let signed = crate::attest::sign(&record, &key).unwrap();
    let public = PublicKey::from_pem(include_str!("../../attest/testdata/signing.pub")).unwrap();
    let verified = crate::attest::verify(&signed, &public).unwrap();
    assert_eq!(verified.statement.predicate, record);
}

#[test]
fn record_labels_are_set_only_where_kubernetes_accepts_them() {
    let mut run = run_named(&format!("fleet-{}", "x".repeat(70)));
    run.spec.repository = "fleet".into();
    let labels = labels(&run);
    assert_eq!(labels.get(RECORD_LABEL).map(String::as_str), Some("true"));
    assert_eq!(
        labels.get(REPOSITORY_KEY).map(String::as_str),
        Some("fleet")
    );
    assert_eq!(labels.get(NAMESPACE_KEY).map(String::as_str), Some("team"));
    assert!(
        !labels.contains_key(RUN_KEY),
        "a name over 63 characters is no label"
    );
    assert!(!is_label_value("-a"));
    assert!(is_label_value("a.b_c-d"));
}

#[test]
fn a_stored_plan_changed_or_deleted_still_gives_a_record_that_says_so() {
    let plan = plan_of(EXAMPLE).on_an_empty_cluster();
    let n = plan.actions.len();
    let (run, mut status) = ended(&plan, Phase::Applied, &"A".repeat(n));
    status.actions = plan
        .actions
        .iter()
        .take(2)
        .map(|a| crate::api::syncrun::ActionStatus {
            kind: a.kind.to_string(),
            name: a.name.clone(),
            operation: a.operation.word().into(),
            state: ActionState::Applied,
            error: None,
        })
        .collect();
    let now = at("2026-12-06T10:05:00Z");
    let reason = "the stored plan cannot be read: changed after it was recorded".to_owned();
    let record = facts(&run, &status, Err(reason), "sha256:00", "c", &now);
    assert_eq!(record.plan.id, plan.plan_id, "from the status");
    assert_eq!(record.objects.applied as usize, n);
    assert_eq!(record.objects.listed.len(), 2);
    assert!(record.objects.listed.iter().all(|o| o.sha256.is_none()));
    assert!(
        record
            .objects
            .specs_unavailable
            .as_deref()
            .unwrap()
            .contains("changed")
    );
    let key = PrivateKey::from_pem(include_str!("../../attest/testdata/signing.pem")).unwrap();
    crate::attest::verify(&crate::attest::sign(&record, &key).unwrap(), &key.public()).unwrap();
}
