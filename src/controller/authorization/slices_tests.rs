//! Slice quorums and what they authorize.
use super::*;
use crate::api::slices::{PlanSlice, SliceNeeds, SliceOwner};
use crate::controller::authorization::quorum::{Requirement, tally};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

fn rule(apply: bool) -> SliceRule {
    SliceRule {
        by: "region".into(),
        owners: vec![
            SliceOwner {
                values: vec!["eu".into()],
                users: vec![],
                groups: vec!["eu-owners".into()],
                required: 1,
            },
            SliceOwner {
                values: vec!["us".into()],
                users: vec!["uma".into()],
                groups: vec![],
                required: 1,
            },
        ],
        apply_approved_slices: apply,
    }
}

fn recorded(shared: bool) -> PlanSlices {
    let mut slices = vec![
        PlanSlice {
            name: "eu".into(),
            actions: 2,
        },
        PlanSlice {
            name: "us".into(),
            actions: 1,
        },
    ];
    let mut needs = vec![
        SliceNeeds {
            slices: vec!["eu".into()],
            wave: 0,
            actions: "0-1".into(),
        },
        SliceNeeds {
            slices: vec!["us".into()],
            wave: 0,
            actions: "2".into(),
        },
    ];
    if shared {
        slices.push(PlanSlice {
            name: NO_OWNER.into(),
            actions: 1,
        });
        needs.push(SliceNeeds {
            slices: vec![NO_OWNER.into()],
            wave: 0,
            actions: "3".into(),
        });
    }
    PlanSlices {
        by: "region".into(),
        rule_approvals: None,
        slices,
        needs,
    }
}

fn rec(user: &str, groups: &[&str]) -> ApprovalRecord {
    ApprovalRecord {
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        plan_id: "p".into(),
        at: Time(Timestamp::from_second(1).unwrap()),
    }
}

fn requirement(slicing: Option<Slicing>) -> Requirement {
    Requirement {
        required: 1,
        namespace: "ta".into(),
        slicing,
        ..Default::default()
    }
}

fn at() -> Timestamp {
    Timestamp::from_second(2).unwrap()
}

#[test]
fn each_slice_needs_its_own_owners() {
    let req = requirement(of_run(Some(&rule(false)), Some(&recorded(false)), 3));
    let eu = [rec("erin", &["eu-owners"])];
    let t = tally(&eu, "p", &req, at());
    assert!(!t.met(), "the us slice has no approval");
    assert_eq!(
        t.describe(),
        "slice eu: 1/1 (erin); slice us: 0/1 from users uma"
    );
    let both = [rec("erin", &["eu-owners"]), rec("uma", &[])];
    assert!(tally(&both, "p", &req, at()).met());
    // Someone who owns neither counts for neither, however many they are.
    let others = [rec("olga", &["sre"]), rec("oscar", &["eu-ops"])];
    assert!(!tally(&others, "p", &req, at()).met());
    let slicing = req.slicing.as_ref().unwrap();
    assert!(!slicing.counts_for_any("olga", &["sre".into()], req.required, false));
    assert!(slicing.counts_for_any("eve", &["eu-owners".into()], req.required, false));
    // Where the plan's own quorum asks for more, anyone eligible counts toward it.
    let two = Requirement {
        required: 2,
        ..req.clone()
    };
    assert!(slicing.counts_for_any("olga", &["sre".into()], two.required, false));
}

#[test]
fn what_no_owner_holds_needs_the_general_quorum() {
    let req = requirement(of_run(Some(&rule(false)), Some(&recorded(true)), 4));
    let owners = [rec("erin", &["eu-owners"]), rec("uma", &[])];
    // erin and uma are eligible approvers, so they count toward the general quorum.
    assert!(tally(&owners, "p", &req, at()).met());
    let two = Requirement {
        required: 3,
        ..req.clone()
    };
    let t = tally(&owners, "p", &two, at());
    assert!(!t.met());
    assert!(
        t.describe()
            .ends_with("(no owner): 2/3 approvals (erin, uma)"),
        "{}",
        t.describe()
    );
}

#[test]
fn a_plan_made_before_the_policy_split_is_never_approved_by_slices() {
    let req = requirement(of_run(Some(&rule(false)), None, 3));
    let t = tally(
        &[rec("erin", &["eu-owners"]), rec("uma", &[])],
        "p",
        &req,
        at(),
    );
    assert!(!t.met());
    assert!(t.approved_slices().is_empty());
    let mut by_type = recorded(false);
    by_type.by = "instanceType".into();
    let req = requirement(of_run(Some(&rule(false)), Some(&by_type), 3));
    assert!(!tally(&[rec("uma", &[])], "p", &req, at()).met());
}

#[test]
fn an_approved_slice_writes_only_what_needs_no_other() {
    let slicing = of_run(Some(&rule(true)), Some(&recorded(false)), 3).unwrap();
    let writable = slicing.writable(&["eu".into()]).unwrap();
    assert_eq!(writable, [true, true, false]);
    let pending = [
        ActionState::Applied,
        ActionState::Applied,
        ActionState::Pending,
    ];
    assert!(!slicing.writes_any(&["eu".into()], &pending, 0));
    assert!(slicing.writes_any(&["us".into()], &pending, 0));
    // A record that does not cover the plan's actions writes nothing partially.
    let slicing = of_run(Some(&rule(true)), Some(&recorded(false)), 5).unwrap();
    assert_eq!(slicing.per_action, None);
    assert!(!slicing.writes_any(&["eu".into(), "us".into()], &pending, 0));
}

mod authorized {
    use super::*;
    use crate::api::repository::{ApprovalPolicy, GitopsRepositorySpec};
    use crate::api::syncrun::Trigger;
    use crate::controller::authorization::{
        Content, Facts, PolicyFacts, Provenance, RepositoryPolicy, SourceApproval, Withheld, admit,
        authorize,
    };
    use crate::controller::fixtures::{EXAMPLE, EXAMPLE_V2, plan_of};

    /// The example plan with its first action in slice eu and the rest in us.
    fn split_plan() -> (crate::fleet::Plan, PlanSlices) {
        let plan = plan_of(EXAMPLE_V2).against(EXAMPLE);
        let n = plan.actions.len();
        assert!(n > 2);
        let record = PlanSlices {
            by: "region".into(),
            rule_approvals: None,
            slices: vec![
                PlanSlice {
                    name: "eu".into(),
                    actions: 1,
                },
                PlanSlice {
                    name: "us".into(),
                    actions: n as u32 - 1,
                },
            ],
            needs: vec![
                SliceNeeds {
                    slices: vec!["eu".into()],
                    wave: 0,
                    actions: "0".into(),
                },
                SliceNeeds {
                    slices: vec!["us".into()],
                    wave: 0,
                    actions: format!("1-{}", n - 1),
                },
            ],
        };
        (plan, record)
    }

    fn facts<'a>(
        approvals: &'a [ApprovalRecord],
        requirement: &'a Requirement,
        policy: Option<PolicyFacts<'a>>,
    ) -> Facts<'a> {
        Facts {
            trigger: Trigger::Schedule,
            approvals,
            requirement,
            policy,
            at: at(),
        }
    }

    fn approved(plan_id: &str, who: &[(&str, &[&str])]) -> Vec<ApprovalRecord> {
        who.iter()
            .map(|(user, groups)| ApprovalRecord {
                plan_id: plan_id.into(),
                ..rec(user, groups)
            })
            .collect()
    }

    #[test]
    fn without_apply_approved_slices_the_plan_waits_for_every_slice() {
        let (plan, record) = split_plan();
        let n = plan.actions.len();
        let req = requirement(of_run(Some(&rule(false)), Some(&record), n));
        let erin = approved(&plan.plan_id, &[("erin", &["eu-owners"])]);
        let refused = authorize(Content::Plan(&plan), &facts(&erin, &req, None)).unwrap_err();
        assert!(
            refused.to_string().contains("slice us: 0/1 from users uma"),
            "{refused}"
        );
        let both = approved(&plan.plan_id, &[("erin", &["eu-owners"]), ("uma", &[])]);
        let whole = authorize(Content::Plan(&plan), &facts(&both, &req, None)).unwrap();
        assert!(whole.slices().is_empty());
        assert_eq!(whole.approved_by(), "erin, uma");
    }

    #[test]
    fn an_approved_slice_is_authorized_alone_and_the_engine_writes_only_it() {
        let (plan, record) = split_plan();
        let n = plan.actions.len();
        let req = requirement(of_run(Some(&rule(true)), Some(&record), n));
        let erin = approved(&plan.plan_id, &[("erin", &["eu-owners"])]);
        let f = facts(&erin, &req, None);
        let part = authorize(Content::Plan(&plan), &f).unwrap();
        assert_eq!(part.slices(), ["eu"]);
        assert_eq!(part.record().slices, ["eu"]);
        assert_eq!(part.approved_by(), "erin (slices eu)");
        let pending = vec![ActionState::Pending; n];
        assert!(part.writes_any(&req, &pending, 0));
        assert!(
            !part.writes_any(&req, &pending, 1),
            "nothing of eu in wave 1"
        );
        let admitted = admit(plan.clone(), "abc", Some(&plan.plan_id), &f).unwrap();
        assert!(admitted.may_write(0));
        assert!((1..n).all(|i| !admitted.may_write(i)));
        // Nobody's approval: nothing at all.
        let none = authorize(Content::Plan(&plan), &facts(&[], &req, None));
        assert!(none.is_err());
    }

    #[test]
    fn no_policy_approves_a_plan_with_owned_slices() {
        let (plan, record) = split_plan();
        let req = requirement(of_run(Some(&rule(true)), Some(&record), plan.actions.len()));
        let spec: GitopsRepositorySpec = serde_json::from_value(serde_json::json!({
            "url": "ssh://git@example.com/fleet.git", "ref": {"branch": "main"},
            "approval": "Auto",
        }))
        .unwrap();
        assert_eq!(spec.approval, ApprovalPolicy::Auto);
        let policy = PolicyFacts {
            provenance: Provenance::Git(SourceApproval::By("bob")),
            repository: RepositoryPolicy::of(&spec),
            rules: None,
            excluded: &[],
            recorded: None,
        };
        let refused = authorize(Content::Plan(&plan), &facts(&[], &req, Some(policy))).unwrap_err();
        assert_eq!(refused.withheld().unwrap().1, Withheld::NeedsPeople);
    }
}

#[test]
fn a_rule_asking_for_more_approvals_raises_every_slice() {
    let mut record = recorded(false);
    record.rule_approvals = Some(2);
    let req = requirement(of_run(Some(&rule(false)), Some(&record), 3));
    let both = [rec("erin", &["eu-owners"]), rec("uma", &[])];
    assert!(!tally(&both, "p", &req, at()).met());
}

#[test]
fn an_owner_added_after_planning_is_never_passed_over() {
    // Planned while only eu had an owner: us was recorded as its value all the same.
    let mut only_eu = rule(true);
    only_eu.owners.truncate(1);
    let req = requirement(of_run(Some(&only_eu), Some(&recorded(false)), 3));
    let anyone = [rec("olga", &[]), rec("erin", &["eu-owners"])];
    assert!(
        tally(&anyone, "p", &req, at()).met(),
        "us takes the general quorum"
    );
    // uma now owns us: the same approvals no longer do.
    let req = requirement(of_run(Some(&rule(true)), Some(&recorded(false)), 3));
    let t = tally(&anyone, "p", &req, at());
    assert!(!t.met());
    assert_eq!(t.approved_slices(), ["eu"]);
}

#[test]
fn a_policy_that_splits_plans_never_lowers_what_the_others_ask() {
    // Another governing policy asks for three approvers, one of them from sre.
    let req = Requirement {
        required: 3,
        from_groups: vec!["sre".into()],
        ..requirement(of_run(Some(&rule(true)), Some(&recorded(false)), 3))
    };
    let owners = [rec("erin", &["eu-owners"]), rec("uma", &[])];
    let t = tally(&owners, "p", &req, at());
    assert!(
        !t.met(),
        "both slices' owners, but not the plan's own quorum"
    );
    assert!(t.approved_slices().is_empty(), "nor any slice alone");
    assert!(t.describe().ends_with("the plan as a whole: 2/3 approvals (erin, uma); still needs an approver from group(s) sre"), "{}", t.describe());
    let with_sre = [
        rec("erin", &["eu-owners"]),
        rec("uma", &[]),
        rec("sam", &["sre"]),
    ];
    assert!(tally(&with_sre, "p", &req, at()).met());
}

#[test]
fn a_policy_that_stopped_splitting_plans_does_not_turn_slice_approvals_into_the_plans() {
    let req = requirement(of_run(None, Some(&recorded(false)), 3));
    let t = tally(&[rec("erin", &["eu-owners"])], "p", &req, at());
    assert!(!t.met());
    assert!(
        t.describe().contains("no longer split plans"),
        "{}",
        t.describe()
    );
    assert_eq!(of_run(None, None, 3), None);
}

#[test]
fn a_whole_plan_writes_only_where_something_is_pending() {
    let slicing = of_run(Some(&rule(true)), Some(&recorded(false)), 3).unwrap();
    assert!(slicing.pending_in(
        &[
            ActionState::Applied,
            ActionState::Pending,
            ActionState::Pending
        ],
        0
    ));
    assert!(!slicing.pending_in(&[ActionState::Applied; 3], 0));
    assert!(!slicing.pending_in(&[ActionState::Pending; 3], 1));
    assert_eq!(
        slicing.written(&[
            ActionState::Applied,
            ActionState::LeftOut,
            ActionState::Pending
        ]),
        ["eu"]
    );
}
