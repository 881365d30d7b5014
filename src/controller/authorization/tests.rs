//! The decision, case by case and as a property over arbitrary facts.

use std::sync::LazyLock;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::api::governance::ServiceAccountRef;

use crate::controller::fixtures::{EXAMPLE as V1, EXAMPLE_V2 as V2, plan_of};

/// Three plans: creates only, one with deletions, one that changes a sensitive field.
static PLANS: LazyLock<[Plan; 3]> = LazyLock::new(|| {
    let replatformed = String::from_utf8(V1.to_vec())
        .unwrap()
        .replace("ubuntu-24.04-amd64", "ubuntu-26.04-amd64");
    [
        plan_of(V1).on_an_empty_cluster(),
        plan_of(V2).against(V1),
        plan_of(replatformed.as_bytes()).against(V1),
    ]
});

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

fn approval(user: &str, plan_id: &str, second: i64) -> ApprovalRecord {
    ApprovalRecord {
        user: user.into(),
        groups: vec![],
        plan_id: plan_id.into(),
        at: Time(at(second)),
    }
}

fn requirement(required: u32) -> Requirement {
    Requirement {
        required,
        namespace: "ta".into(),
        ..Default::default()
    }
}

fn spec(approval: ApprovalPolicy, drift_remediation: DriftRemediation) -> GitopsRepositorySpec {
    let mut spec: GitopsRepositorySpec = serde_json::from_value(serde_json::json!({
        "url": "ssh://git@example.com/fleet.git", "ref": {"branch": "main"},
    }))
    .unwrap();
    spec.approval = approval;
    spec.drift_remediation = drift_remediation;
    spec
}

fn policy_facts<'a>(
    provenance: Provenance<'a>,
    repository: &'a GitopsRepositorySpec,
    excluded: &'a [String],
) -> PolicyFacts<'a> {
    PolicyFacts {
        provenance,
        repository: RepositoryPolicy::of(repository),
        rules: None,
        excluded,
        recorded: None,
    }
}

fn facts<'a>(
    trigger: Trigger,
    approvals: &'a [ApprovalRecord],
    requirement: &'a Requirement,
    policy: Option<PolicyFacts<'a>>,
) -> Facts<'a> {
    Facts {
        trigger,
        approvals,
        requirement,
        policy,
        at: at(100),
    }
}

fn policy_of(result: &Result<Authorization, Refusal>) -> Option<String> {
    match result.as_ref().ok()?.grant() {
        Grant::Policy { policy, .. } => Some(policy.to_string()),
        Grant::People { .. } => None,
    }
}

#[test]
fn people_authorize_exactly_the_plan_they_approved() {
    let plan = &PLANS[0];
    let req = requirement(1);
    let approvals = [approval("bob", &plan.plan_id, 10)];
    let a = authorize(
        Content::Plan(plan),
        &facts(Trigger::Schedule, &approvals, &req, None),
    )
    .unwrap();
    assert_eq!(
        a.grant(),
        &Grant::People {
            approvers: vec!["bob".into()]
        }
    );
    assert_eq!(a.approved_by(), "bob");
    let record = a.record();
    assert_eq!(
        (record.by, record.plan_id.as_str()),
        (Authority::People, plan.plan_id.as_str())
    );
    // An approval of another plan id authorizes nothing.
    let other = [approval("bob", "plan-other", 10)];
    let refused = authorize(
        Content::Plan(plan),
        &facts(Trigger::Schedule, &other, &req, None),
    )
    .unwrap_err();
    assert_eq!(refused.label(), "Unauthorized");
    assert!(refused.to_string().contains("0/1 approvals"), "{refused}");
    // No plan at all.
    assert_eq!(
        authorize(
            Content::Recorded { plan_id: "" },
            &facts(Trigger::Schedule, &approvals, &req, None)
        ),
        Err(Refusal::NoPlan)
    );
}

#[test]
fn a_quorum_counts_people_not_the_service_accounts_they_can_make() {
    let plan = &PLANS[0];
    let id = plan.plan_id.as_str();
    let req = requirement(2);
    let approvals = [
        approval("bob", id, 10),
        approval("system:serviceaccount:ta:bob-bot", id, 20),
    ];
    let refused = authorize(
        Content::Recorded { plan_id: id },
        &facts(Trigger::Schedule, &approvals, &req, None),
    )
    .unwrap_err();
    assert!(
        refused.to_string().contains("1/2 approvals (bob)"),
        "{refused}"
    );
    // Even listed, the namespace's own ServiceAccount does not count; another one
    // listed by the policies does.
    let listed = Requirement {
        service_accounts: vec![
            ServiceAccountRef {
                namespace: "ta".into(),
                name: "bob-bot".into(),
            },
            ServiceAccountRef {
                namespace: "ci".into(),
                name: "release".into(),
            },
        ],
        ..requirement(2)
    };
    assert!(
        authorize(
            Content::Recorded { plan_id: id },
            &facts(Trigger::Schedule, &approvals, &listed, None)
        )
        .is_err()
    );
    let with_ci = [
        approval("bob", id, 10),
        approval("system:serviceaccount:ci:release", id, 20),
    ];
    let a = authorize(
        Content::Recorded { plan_id: id },
        &facts(Trigger::Schedule, &with_ci, &listed, None),
    )
    .unwrap();
    assert_eq!(a.approved_by(), "bob, system:serviceaccount:ci:release");
}

/// What `Governance::still_approved` checked before a Scheduled run applied, now the
/// one check's: approvals expire, a quorum raised since is needed, and a plan a policy
/// cleared needs no people.
#[test]
fn a_scheduled_plan_needs_its_approvals_to_still_count() {
    let plan = &PLANS[0];
    let id = plan.plan_id.as_str();
    let approvals = [approval("bob", id, 0)];
    let expiring = Requirement {
        approval_expiry: Some(Duration::from_secs(7200)),
        ..requirement(1)
    };
    let decide = |req: &Requirement, second: i64| {
        authorize(
            Content::Recorded { plan_id: id },
            &Facts {
                at: at(second),
                ..facts(Trigger::Schedule, &approvals, req, None)
            },
        )
    };
    assert!(decide(&expiring, 3600).is_ok());
    let stale = decide(&expiring, 3 * 86_400).unwrap_err();
    assert!(stale.to_string().contains("0/1 approvals"), "{stale}");
    assert!(decide(&requirement(2), 3600).is_err(), "a raised quorum");
    // A plan a policy cleared needs no people, while the policy still holds.
    let auto = spec(ApprovalPolicy::Auto, DriftRemediation::Plan);
    let source = RunSource {
        url: Some("ssh://git@example.com/fleet.git".into()),
        approved_by: Some("bob".into()),
        revision: "abc".into(),
        ..Default::default()
    };
    let mut policy = policy_facts(
        Provenance::of(Trigger::Schedule, Some(&source), None, false),
        &auto,
        &[],
    );
    policy.recorded = Some(PolicyRef::Repository(ApprovalPolicy::Auto));
    let cleared = authorize(
        Content::Recorded { plan_id: id },
        &Facts {
            at: at(3 * 86_400),
            ..facts(Trigger::Schedule, &[], &expiring, Some(policy.clone()))
        },
    );
    assert_eq!(policy_of(&cleared).as_deref(), Some("Auto"));
    // Set back to Required meanwhile: no longer.
    let required = spec(ApprovalPolicy::Required, DriftRemediation::Plan);
    policy.repository = RepositoryPolicy::of(&required);
    let refused = authorize(
        Content::Recorded { plan_id: id },
        &facts(Trigger::Schedule, &[], &expiring, Some(policy)),
    )
    .unwrap_err();
    assert_eq!(
        refused.withheld(),
        Some(&(
            PolicyRef::Repository(ApprovalPolicy::Auto),
            Withheld::NoLongerSet
        ))
    );
}

#[test]
fn a_policy_decides_only_on_content_no_editor_input_reached() {
    let plan = &PLANS[0];
    let req = requirement(1);
    let auto = spec(ApprovalPolicy::Auto, DriftRemediation::Plan);
    let git = |approved_by: Option<&str>| RunSource {
        url: Some("ssh://git@example.com/fleet.git".into()),
        approved_by: approved_by.map(str::to_owned),
        revision: "abc".into(),
        ..Default::default()
    };
    let decide = |source: &RunSource, excluded: &[String], unverified_ok: bool| {
        let provenance = Provenance::of(Trigger::Schedule, Some(source), None, unverified_ok);
        authorize(
            Content::Plan(plan),
            &facts(
                Trigger::Schedule,
                &[],
                &req,
                Some(policy_facts(provenance, &auto, excluded)),
            ),
        )
    };
    let ok = decide(&git(Some("bob")), &[], false);
    assert_eq!(policy_of(&ok).as_deref(), Some("Auto"));
    let Grant::Policy { basis, .. } = ok.unwrap().grant().clone() else {
        unreachable!()
    };
    assert_eq!(basis, "source approved by bob");
    // An editor re-pointed the source (the stamp is emptied), or nothing stamped it.
    for source in [git(Some("")), git(None)] {
        let refused = decide(&source, &[], false).unwrap_err();
        assert_eq!(refused.withheld().unwrap().1, Withheld::SourceNotApproved);
        assert!(
            refused
                .to_string()
                .contains("policy/Auto would approve it, but")
        );
    }
    // Without admission policies, an unstamped source is trusted as everything is.
    assert!(decide(&git(None), &[], true).is_ok());
    assert!(decide(&git(Some("")), &[], true).is_err());
    // An editor left actions out.
    let excluded = vec!["fleetnode/edge-tokyo-02".to_owned()];
    let refused = decide(&git(Some("bob")), &excluded, false).unwrap_err();
    assert_eq!(
        refused.withheld().unwrap().1,
        Withheld::Edited { excluded: 1 }
    );
}

#[test]
fn governance_rules_decide_only_the_plan_they_judged_and_quorums_need_people() {
    let plan = &PLANS[1];
    let req = requirement(1);
    let required = spec(ApprovalPolicy::Required, DriftRemediation::Plan);
    let source = RunSource {
        url: Some("u".into()),
        approved_by: Some("bob".into()),
        revision: "abc".into(),
        ..Default::default()
    };
    let provenance = Provenance::of(Trigger::Schedule, Some(&source), None, false);
    let verdict = |plan_id, needs_person| RuleVerdict {
        plan_id,
        auto_approved_by: Some("p/metadata-only"),
        needs_person,
    };
    let decide = |rules: RuleVerdict, req: &Requirement| {
        let mut p = policy_facts(provenance, &required, &[]);
        p.rules = Some(rules);
        authorize(
            Content::Plan(plan),
            &facts(Trigger::Schedule, &[], req, Some(p)),
        )
    };
    let ok = decide(verdict(&plan.plan_id, false), &req);
    assert_eq!(ok.as_ref().unwrap().approved_by(), "policy/p/metadata-only");
    let stale = decide(verdict("plan-other", false), &req).unwrap_err();
    assert_eq!(stale.withheld().unwrap().1, Withheld::StaleVerdict);
    let needs = decide(verdict(&plan.plan_id, true), &req).unwrap_err();
    assert_eq!(needs.withheld().unwrap().1, Withheld::NeedsPeople);
    let quorum = decide(verdict(&plan.plan_id, false), &requirement(2)).unwrap_err();
    assert_eq!(quorum.withheld().unwrap().1, Withheld::NeedsPeople);
}

#[test]
fn the_repository_policy_weighs_deletions_and_sensitive_fields() {
    let req = requirement(1);
    let non_destructive = spec(
        ApprovalPolicy::AutoApplyNonDestructive,
        DriftRemediation::Plan,
    );
    let source = RunSource {
        url: Some("u".into()),
        approved_by: Some("bob".into()),
        revision: "abc".into(),
        ..Default::default()
    };
    let provenance = Provenance::of(Trigger::Schedule, Some(&source), None, false);
    let decide = |content| {
        authorize(
            content,
            &facts(
                Trigger::Schedule,
                &[],
                &req,
                Some(policy_facts(provenance, &non_destructive, &[])),
            ),
        )
    };
    assert_eq!(
        policy_of(&decide(Content::Plan(&PLANS[0]))).as_deref(),
        Some("AutoApplyNonDestructive")
    );
    assert!(decide(Content::Plan(&PLANS[1])).is_err(), "deletions wait");
    assert!(
        decide(Content::Plan(&PLANS[2])).is_err(),
        "sensitive fields wait"
    );
}

#[test]
fn drift_is_corrected_by_policy_only_with_an_authorized_runs_whole_content() {
    let plan = &PLANS[0];
    let req = requirement(1);
    let correct = spec(ApprovalPolicy::Required, DriftRemediation::Correct);
    let decide = |provenance| {
        authorize(
            Content::Plan(plan),
            &facts(
                Trigger::Drift,
                &[],
                &req,
                Some(policy_facts(provenance, &correct, &[])),
            ),
        )
    };
    let restored = |authorized, whole| Provenance::Restored {
        run: "fleet-1",
        authorized,
        whole,
    };
    let ok = decide(restored(true, true));
    assert_eq!(policy_of(&ok).as_deref(), Some("Correct"));
    for (provenance, why) in [
        (
            restored(false, true),
            Withheld::Unrestorable {
                run: "fleet-1".into(),
            },
        ),
        (
            restored(true, false),
            Withheld::Unrestorable {
                run: "fleet-1".into(),
            },
        ),
        (
            Provenance::Git(SourceApproval::By("bob")),
            Withheld::NotRestored,
        ),
    ] {
        assert_eq!(decide(provenance).unwrap_err().withheld().unwrap().1, why);
    }
}

#[test]
fn the_engine_gets_only_the_recorded_plan() {
    let plan = PLANS[0].clone();
    let req = requirement(1);
    let approvals = [approval("bob", &plan.plan_id, 10)];
    let f = facts(Trigger::Schedule, &approvals, &req, None);
    let mut forged = plan.clone();
    forged.actions.pop();
    let refused = admit(forged, "abc", Some(&plan.plan_id), &f).unwrap_err();
    assert_eq!(refused.label(), "PlanTampered");
    assert!(admit(plan.clone(), "def", Some(&plan.plan_id), &f).is_err());
    let admitted = admit(plan.clone(), "abc", Some(&plan.plan_id), &f).unwrap();
    assert_eq!(admitted.plan(), &plan);
    assert_eq!(admitted.authorization().plan_id(), plan.plan_id);
}

#[test]
fn recorded_policies_read_back_as_they_were_written() {
    for policy in [
        PolicyRef::Repository(ApprovalPolicy::Auto),
        PolicyRef::Repository(ApprovalPolicy::AutoApplyNonDestructive),
        PolicyRef::DriftCorrect,
        PolicyRef::Rule("production/metadata-only".into()),
    ] {
        assert_eq!(PolicyRef::parse(&policy.to_string()), Some(policy));
    }
    assert_eq!(PolicyRef::parse("Required"), None);
}

// The property: whatever the facts, an authorization is given only as the invariant
// says. Checked against a model written separately from the decision.

const USERS: &[&str] = &[
    "alice",
    "bob",
    "carol",
    "system:serviceaccount:ta:bot",
    "system:serviceaccount:ci:bot",
    "system:node:n1",
];

fn arb_source_approval() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![Just(None), Just(Some("")), Just(Some("bob"))]
}

#[derive(Debug, Clone)]
struct Case {
    plan: usize,
    recorded_content: bool,
    trigger: Trigger,
    approvals: Vec<(usize, bool, i64)>,
    required: u32,
    groups: bool,
    expiry: Option<u64>,
    listed_ci: bool,
    policy: Option<PolicyCase>,
}

#[derive(Debug, Clone)]
struct PolicyCase {
    provenance: u8,
    source_approval: Option<&'static str>,
    unverified_ok: bool,
    restored: (bool, bool),
    approval: ApprovalPolicy,
    correct: bool,
    rules: Option<(bool, bool, bool)>,
    excluded: bool,
    recorded: Option<u8>,
}

fn arb_trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        Just(Trigger::Schedule),
        Just(Trigger::Manual),
        Just(Trigger::Drift),
        Just(Trigger::Deletion),
        Just(Trigger::Rollback),
    ]
}

fn arb_approval_policy() -> impl Strategy<Value = ApprovalPolicy> {
    prop_oneof![
        Just(ApprovalPolicy::Required),
        Just(ApprovalPolicy::AutoApplyNonDestructive),
        Just(ApprovalPolicy::Auto),
    ]
}

fn arb_policy() -> impl Strategy<Value = PolicyCase> {
    (
        (
            0u8..3,
            arb_source_approval(),
            any::<bool>(),
            (any::<bool>(), any::<bool>()),
        ),
        (
            arb_approval_policy(),
            any::<bool>(),
            proptest::option::of((any::<bool>(), any::<bool>(), any::<bool>())),
            any::<bool>(),
            proptest::option::of(0u8..4),
        ),
    )
        .prop_map(
            |(
                (provenance, source_approval, unverified_ok, restored),
                (approval, correct, rules, excluded, recorded),
            )| PolicyCase {
                provenance,
                source_approval,
                unverified_ok,
                restored,
                approval,
                correct,
                rules,
                excluded,
                recorded,
            },
        )
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        (0usize..3, any::<bool>(), arb_trigger()),
        proptest::collection::vec((0usize..USERS.len(), any::<bool>(), 0i64..200), 0..6),
        (
            1u32..4,
            any::<bool>(),
            proptest::option::of(10u64..300),
            any::<bool>(),
        ),
        proptest::option::of(arb_policy()),
    )
        .prop_map(
            |(
                (plan, recorded_content, trigger),
                approvals,
                (required, groups, expiry, listed_ci),
                policy,
            )| Case {
                plan,
                recorded_content,
                trigger,
                approvals,
                required,
                groups,
                expiry,
                listed_ci,
                policy,
            },
        )
}

fn recorded_policy(n: u8) -> PolicyRef {
    match n {
        0 => PolicyRef::Repository(ApprovalPolicy::Auto),
        1 => PolicyRef::Repository(ApprovalPolicy::AutoApplyNonDestructive),
        2 => PolicyRef::DriftCorrect,
        _ => PolicyRef::Rule("p/r".into()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn nothing_is_authorized_but_what_the_invariant_allows(case in arb_case()) {
        let plan = &PLANS[case.plan];
        let id = plan.plan_id.as_str();
        let approvals: Vec<ApprovalRecord> = case
            .approvals
            .iter()
            .map(|(u, current, second)| {
                approval(USERS[*u], if *current { id } else { "plan-other" }, *second)
            })
            .collect();
        let requirement = Requirement {
            authors: Default::default(),
            required: case.required,
            from_groups: if case.groups { vec!["sre".into()] } else { vec![] },
            approval_expiry: case.expiry.map(Duration::from_secs),
            namespace: "ta".into(),
            service_accounts: if case.listed_ci {
                vec![ServiceAccountRef { namespace: "ci".into(), name: "bot".into() }]
            } else {
                vec![]
            },
            slicing: None,
        };
        let content = if case.recorded_content {
            Content::Recorded { plan_id: id }
        } else {
            Content::Plan(plan)
        };
        let repo_spec = case.policy.as_ref().map(|p| {
            spec(p.approval, if p.correct { DriftRemediation::Correct } else { DriftRemediation::Plan })
        });
        let excluded = vec!["fleetnode/edge-tokyo-02".to_owned()];
        let source = case.policy.as_ref().map(|p| RunSource {
            url: Some("u".into()),
            approved_by: p.source_approval.map(str::to_owned),
            revision: "abc".into(),
            ..Default::default()
        });
        let policy = case.policy.as_ref().map(|p| PolicyFacts {
            provenance: match p.provenance {
                0 => Provenance::of(case.trigger, source.as_ref(), None, p.unverified_ok),
                1 => Provenance::Restored { run: "old", authorized: p.restored.0, whole: p.restored.1 },
                // A run with no recorded source: a deletion's content is nothing.
                _ => Provenance::of(case.trigger, None, None, p.unverified_ok),
            },
            repository: RepositoryPolicy::of(repo_spec.as_ref().unwrap()),
            rules: p.rules.map(|(current, auto, needs_person)| RuleVerdict {
                plan_id: if current { id } else { "plan-other" },
                auto_approved_by: auto.then_some("p/r"),
                needs_person,
            }),
            excluded: if p.excluded { &excluded } else { &[] },
            recorded: p.recorded.map(recorded_policy),
        });
        let facts = Facts {
            trigger: case.trigger,
            approvals: &approvals,
            requirement: &requirement,
            policy: policy.clone(),
            at: at(250),
        };
        let decided = authorize(content, &facts);

        // The model of people: distinct identities that count, approving this plan id,
        // within the expiry.
        let counts = |user: &str| match identity::Identity::of(user) {
            identity::Identity::Person(_) => true,
            identity::Identity::ServiceAccount { namespace, name } => {
                namespace != "ta" && case.listed_ci && (namespace, name) == ("ci", "bot")
            }
            identity::Identity::System(_) => false,
        };
        let fresh = |second: i64| case.expiry.is_none_or(|e| 250 - second <= e as i64);
        let mut people: Vec<&str> = Vec::new();
        for a in &approvals {
            if a.plan_id == id && counts(&a.user) && fresh(a.at.0.as_second() - 1_800_000_000)
                && !people.contains(&a.user.as_str())
            {
                people.push(&a.user);
            }
        }
        let quorum = people.len() as u32 >= case.required && !case.groups;
        match decided.as_ref().map(|a| a.grant().clone()) {
            Ok(Grant::People { approvers }) => {
                prop_assert!(quorum);
                prop_assert_eq!(approvers, people.iter().map(|p| p.to_string()).collect::<Vec<_>>());
            }
            Ok(Grant::Policy { policy: decided_policy, .. }) => {
                prop_assert!(!quorum, "people come first");
                let p = case.policy.as_ref().unwrap();
                let pf = policy.as_ref().unwrap();
                // Nothing an editor wrote stands between the decision and the content.
                prop_assert!(!p.excluded);
                prop_assert!(case.required <= 1 && !case.groups);
                prop_assert!(p.rules.is_none_or(|r| !r.2));
                match pf.provenance {
                    Provenance::Git(approval) => {
                        let by = matches!(approval, SourceApproval::By(_));
                        let unverified = approval == SourceApproval::Unverified
                            && p.unverified_ok
                            && p.source_approval.is_none();
                        prop_assert!(by || unverified, "source {:?}", approval);
                        prop_assert!(p.source_approval != Some(""));
                    }
                    Provenance::Restored { authorized, whole, .. } => prop_assert!(authorized && whole),
                    Provenance::Nothing => prop_assert_eq!(case.trigger, Trigger::Deletion),
                    Provenance::Unknown => prop_assert!(false, "unknown provenance authorized"),
                }
                // Decided by a policy that is set, on this plan.
                match &decided_policy {
                    PolicyRef::Rule(rule) => {
                        let r = p.rules.unwrap();
                        prop_assert!(r.0 && r.1 && rule == "p/r");
                    }
                    PolicyRef::DriftCorrect => {
                        prop_assert!(p.correct && case.trigger == Trigger::Drift);
                        let restored = matches!(pf.provenance, Provenance::Restored { .. });
                        prop_assert!(restored, "drift corrected with content not restored");
                    }
                    PolicyRef::Repository(approval) => {
                        prop_assert_eq!(*approval, p.approval);
                        prop_assert!(*approval != ApprovalPolicy::Required);
                        if *approval == ApprovalPolicy::AutoApplyNonDestructive {
                            prop_assert!(!case.recorded_content, "decided without the plan");
                            prop_assert_eq!(case.plan, 0, "deletions or sensitive fields");
                        }
                    }
                }
                if case.recorded_content {
                    prop_assert_eq!(Some(decided_policy.clone()), p.recorded.map(recorded_policy));
                }
            }
            Err(_) => {
                prop_assert!(!quorum, "a met quorum was refused");
            }
        }
        // The same facts, the same decision.
        prop_assert_eq!(decided, authorize(content, &facts));
    }
}
