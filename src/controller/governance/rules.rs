//! CEL plan rules: compiled when a policy is loaded, evaluated over the facts of one
//! recorded plan. Pure: no Kubernetes, no I/O.
//!
//! Evaluation is metered ([`meter`]): a verdict reached past the meter is never used,
//! the rules fail closed.

mod meter;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cel::common::ast::IdedExpr;

use meter::{COST, cost_function, meter_expression};
pub use meter::{Exhausted, Meter};

use serde::Serialize;
use serde_json::Value;

use super::Error;
use crate::api::governance::{PlanRule, RuleAction};
use crate::fleet::plan::Operation;
use crate::fleet::spec_diff::field_changes;
use crate::fleet::{LiveObject, ObjectKind, Plan};

/// Longest expression accepted (the CRD says the same).
pub const MAX_EXPRESSION_BYTES: usize = 2048;
/// At most this many field changes, over all actions, are shown to rules. Past it the
/// facts are marked truncated and the verdict fails closed (see [`evaluate`]).
pub const MAX_FIELDS: usize = 20_000;
/// At most this many bytes of field values and paths are shown to rules: a field may be
/// a 256 KiB label. Past it, truncated as past [`MAX_FIELDS`].
pub const MAX_FIELD_BYTES: usize = 4 * 1024 * 1024;
/// Longest one evaluation of a repository's rules may run (waiting for its turn not
/// included) before the run fails closed (`PolicyTimeout`).
pub const BUDGET: std::time::Duration = std::time::Duration::from_secs(2);
/// Steps one evaluation of all of a repository's rules may take (see [`Meter`]): a rule
/// that looks at each field of the largest plan once takes about a million.
pub const MAX_COST: u64 = 10_000_000;

/// Deepest nesting of brackets accepted.
const MAX_BRACKET_DEPTH: usize = 32;
/// Stack of the thread that parses one expression.
const PARSER_STACK_BYTES: usize = 64 * 1024 * 1024;

/// How deep brackets nest, when deeper than allowed (string literals ignored).
fn too_deep(expression: &str) -> Option<usize> {
    let (mut depth, mut max, mut quote) = (0usize, 0usize, None);
    let mut chars = expression.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => {
                depth += 1;
                max = max.max(depth);
            }
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (max > MAX_BRACKET_DEPTH).then_some(max)
}

/// One rule, compiled (cheap to clone: the program is shared).
#[derive(Clone)]
pub struct Compiled {
    /// `policy/rule`, for status and Events.
    pub name: String,
    pub action: RuleAction,
    pub approvals: u32,
    pub message: Option<String>,
    /// The expression, its macros expanded and metered (see the module's docs).
    program: Arc<IdedExpr>,
}

/// Compiles a rule, or says where it is wrong.
pub fn compile(policy: &str, index: usize, rule: &PlanRule) -> Result<Compiled, Error> {
    let located = |message: String| Error::InvalidRule {
        rule: format!("rules[{index}] ({})", rule.name),
        message,
    };
    if rule.expression.len() > MAX_EXPRESSION_BYTES {
        return Err(located(format!(
            "the expression is {} bytes, more than {MAX_EXPRESSION_BYTES}",
            rule.expression.len()
        )));
    }
    if rule.expression.trim().is_empty() {
        return Err(located("the expression is empty".into()));
    }
    if rule.action == RuleAction::RequireApprovals && !matches!(rule.approvals, Some(1..=10)) {
        return Err(located(
            "action RequireApprovals needs `approvals` between 1 and 10".into(),
        ));
    }
    if let Some(depth) = too_deep(&rule.expression) {
        return Err(located(format!(
            "brackets nest {depth} deep, more than {MAX_BRACKET_DEPTH}"
        )));
    }
    // The parser is third-party code fed by a policy author and recurses with the
    // expression: it runs on its own thread with a stack sized for the longest expression
    // accepted, and a panic in it is a compile error, never a crashed controller.
    // The metering pass recurses with the expression too: on the same thread.
    let source = rule.expression.clone();
    let parsed = std::thread::Builder::new()
        .name("cel-compile".into())
        .stack_size(PARSER_STACK_BYTES)
        .spawn(move || {
            let mut program = cel::parser::Parser::default()
                .parse(&source)
                .map_err(|e| e.to_string())?;
            meter_expression(&mut program, &mut (u64::MAX / 2));
            Ok::<_, String>(program)
        })
        .map_err(|e| located(format!("could not start the compiler: {e}")))?
        .join()
        .map_err(|_| located("the CEL parser failed on this expression".into()))?;
    let program = parsed.map_err(located)?;
    Ok(Compiled {
        name: format!("{policy}/{}", rule.name),
        action: rule.action,
        approvals: rule.approvals.unwrap_or(1),
        message: rule.message.clone(),
        program: Arc::new(program),
    })
}

/// What rules see of a plan.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    pub plan: PlanFacts,
    /// The repository's live objects counted per kind.
    pub live: BTreeMap<String, u64>,
    pub repository: RepositoryFacts,
    pub trigger: String,
}

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct PlanFacts {
    pub plan_id: String,
    pub revision: String,
    pub changes: crate::fleet::plan::Counts,
    pub summary: crate::fleet::plan::Summary,
    pub actions: Vec<ActionFacts>,
    /// Whether some action's fields were left out (more than [`MAX_FIELDS`] in all).
    pub fields_truncated: bool,
    /// How the plan rolls out: `waves`, `regions` (machines disrupted per region against
    /// the budget) and `budgetExceeded`. Empty for a plan that was not staged.
    pub rollout: crate::fleet::rollout::Rollout,
    /// Who wrote the plan's commits and what verified them (`plan.source`).
    pub source: super::separation::SourceFacts,
}

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ActionFacts {
    pub kind: String,
    pub name: String,
    pub operation: String,
    /// Updates: the fields that move (`old` and `new`); creates: the whole new spec
    /// (`new` only); deletes: the whole removed spec (`old` only).
    pub fields: Vec<FieldFacts>,
    /// Whether some of this action's fields were left out.
    pub fields_truncated: bool,
}

#[derive(Serialize, Debug, Clone)]
pub struct FieldFacts {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<serde_json::Value>,
}

#[derive(Serialize, Debug, Clone)]
pub struct RepositoryFacts {
    pub namespace: String,
    pub name: String,
}

/// The live objects `repository` manages, counted per kind (every kind present, 0 or more).
pub fn count_live(live: &[LiveObject], repository: &str) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = crate::fleet::ObjectKind::ALL
        .iter()
        .map(|k| (k.to_string(), 0))
        .collect();
    for object in live
        .iter()
        .filter(|o| o.owner.as_deref() == Some(repository))
    {
        *counts.entry(object.kind().to_string()).or_insert(0) += 1;
    }
    counts
}

impl Facts {
    /// The facts of `plan`, with `live` the namespace's live objects (counted per kind
    /// for `repository`, and the specs that deletes remove).
    pub fn new(
        plan: &Plan,
        live: &[LiveObject],
        namespace: &str,
        repository: &str,
        trigger: &str,
    ) -> Self {
        Self::bounded(plan, live, namespace, repository, trigger, MAX_FIELDS)
    }

    /// [`Facts::new`] showing at most `budget` fields in all.
    fn bounded(
        plan: &Plan,
        live: &[LiveObject],
        namespace: &str,
        repository: &str,
        trigger: &str,
        mut budget: usize,
    ) -> Self {
        let diff: HashMap<(ObjectKind, &str), &crate::fleet::plan::ObjectDiff> = plan
            .diff
            .iter()
            .map(|d| ((d.kind, d.name.as_str()), d))
            .collect();
        let removed: HashMap<(ObjectKind, &str), &LiveObject> = live
            .iter()
            .filter(|o| o.owner.as_deref() == Some(repository))
            .map(|o| ((o.kind(), o.name.as_str()), o))
            .collect();
        let mut truncated = false;
        let mut bytes_left = MAX_FIELD_BYTES;
        let actions = plan
            .actions
            .iter()
            .map(|a| {
                let key = (a.kind, a.name.as_str());
                let has_fields = match a.operation {
                    Operation::Create => a.spec.is_some(),
                    Operation::Delete => removed.contains_key(&key),
                    Operation::Update => diff.get(&key).is_some_and(|d| !d.fields.is_empty()),
                };
                // Past either budget nothing more is computed: the facts say so instead.
                if budget == 0 || bytes_left == 0 {
                    truncated |= has_fields;
                    return ActionFacts {
                        kind: a.kind.to_string(),
                        name: a.name.clone(),
                        operation: a.operation.word().to_owned(),
                        fields: Vec::new(),
                        fields_truncated: has_fields,
                    };
                }
                let changes = match a.operation {
                    Operation::Create => a
                        .spec
                        .as_ref()
                        .map(|s| field_changes(&Value::Null, &s.to_json()))
                        .unwrap_or_default(),
                    Operation::Delete => removed
                        .get(&key)
                        .map(|o| field_changes(&o.spec.to_json(), &Value::Null))
                        .unwrap_or_default(),
                    Operation::Update => {
                        diff.get(&key).map(|d| d.fields.clone()).unwrap_or_default()
                    }
                };
                let mut fields = Vec::with_capacity(changes.len().min(budget));
                let mut cut = false;
                for f in changes {
                    let size = f.path.len() + json_len(&f.old) + json_len(&f.new) + 16;
                    if budget == 0 || size > bytes_left {
                        cut = true;
                        bytes_left = 0;
                        break;
                    }
                    budget -= 1;
                    bytes_left -= size;
                    fields.push(FieldFacts {
                        path: f.path,
                        old: f.old,
                        new: f.new,
                    });
                }
                truncated |= cut;
                ActionFacts {
                    kind: a.kind.to_string(),
                    name: a.name.clone(),
                    operation: a.operation.word().to_owned(),
                    fields,
                    fields_truncated: cut,
                }
            })
            .collect();
        Facts {
            plan: PlanFacts {
                plan_id: plan.plan_id.clone(),
                revision: plan.revision.clone(),
                changes: plan.summary.total(),
                summary: plan.summary,
                actions,
                fields_truncated: truncated,
                rollout: plan.rollout.clone().unwrap_or_default(),
                source: Default::default(),
            },
            live: count_live(live, repository),
            repository: RepositoryFacts {
                namespace: namespace.to_owned(),
                name: repository.to_owned(),
            },
            trigger: trigger.to_owned(),
        }
    }
}

/// Bytes of a field value as JSON (0 when absent), counted without building it.
fn json_len(value: &Option<Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    if let Some(value) = value {
        let _ = serde_json::to_writer(&mut count, value);
    }
    count.0
}

/// What the matching rules decided.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The first denying rule and its message.
    pub denied: Option<(String, String)>,
    /// The most approvals a matching rule requires (0: none).
    pub approvals: u32,
    /// The first matching auto-approving rule.
    pub auto_approved_by: Option<String>,
    pub warnings: Vec<String>,
    /// `policy/rule: Action` for every matching rule.
    pub matched: Vec<String>,
    /// The rules saw truncated facts: the plan needs a person whatever they say.
    pub truncated: bool,
}

/// Evaluates every rule over `facts`. A rule that does not evaluate to a boolean fails
/// closed: the evaluation errs with the rule's name.
///
/// Rules never silently judge a truncated plan: when fields were left out, no
/// AutoApprove rule approves, every RequireApprovals rule counts as matched (its quorum
/// is needed), a Deny rule that matches the partial facts still denies, and a warning
/// says so.
pub fn evaluate(rules: &[Compiled], facts: &Facts) -> Result<Verdict, Error> {
    evaluate_metered(rules, facts, &Arc::new(Meter::steps(MAX_COST)))
}

/// [`evaluate`] within `meter`: once it is exhausted the rules fail closed, whatever
/// they evaluated to.
pub fn evaluate_metered(
    rules: &[Compiled],
    facts: &Facts,
    meter: &Arc<Meter>,
) -> Result<Verdict, Error> {
    let verdict = evaluate_facts(rules, facts, meter);
    match meter.exhausted() {
        None => {}
        Some(Exhausted::Cost) => return Err(Error::CostExceeded(MAX_COST)),
        Some(Exhausted::Time | Exhausted::Abandoned) => {
            return Err(Error::Timeout(BUDGET));
        }
    }
    let mut verdict = verdict?;
    if facts.plan.fields_truncated {
        verdict.truncated = true;
        verdict.auto_approved_by = None;
        for rule in rules
            .iter()
            .filter(|r| r.action == RuleAction::RequireApprovals)
        {
            verdict.approvals = verdict.approvals.max(rule.approvals);
        }
        verdict.warnings.push(format!(
            "the plan changes more fields than governance rules are shown (at most {MAX_FIELDS} fields and {} MiB of their values): no rule auto-approves it, every RequireApprovals rule applies, and Deny rules saw only part of it; review the whole plan",
            MAX_FIELD_BYTES / (1024 * 1024)
        ));
    }
    Ok(verdict)
}

fn evaluate_facts(rules: &[Compiled], facts: &Facts, meter: &Arc<Meter>) -> Result<Verdict, Error> {
    let mut context = cel::Context::default();
    context
        .add_function(COST, cost_function(meter.clone()))
        .map_err(|e| Error::Evaluation {
            rule: "(input)".into(),
            message: e.to_string(),
        })?;
    let json = |name: &str, v: Result<serde_json::Value, serde_json::Error>| {
        v.map(|v| to_cel(&v)).map_err(|e| Error::Evaluation {
            rule: "(input)".into(),
            message: format!("{name}: {e}"),
        })
    };
    context.add_variable_from_value("plan", json("plan", serde_json::to_value(&facts.plan))?);
    context.add_variable_from_value("live", json("live", serde_json::to_value(&facts.live))?);
    context.add_variable_from_value(
        "repository",
        json("repository", serde_json::to_value(&facts.repository))?,
    );
    context.add_variable_from_value("trigger", facts.trigger.clone());
    let mut verdict = Verdict::default();
    for rule in rules {
        let matched = match cel::Value::resolve(&rule.program, &context) {
            Ok(cel::Value::Bool(b)) => b,
            Ok(other) => {
                return Err(Error::Evaluation {
                    rule: rule.name.clone(),
                    message: format!("evaluated to {other:?}, not a bool"),
                });
            }
            Err(e) => {
                return Err(Error::Evaluation {
                    rule: rule.name.clone(),
                    message: e.to_string(),
                });
            }
        };
        if !matched {
            continue;
        }
        verdict
            .matched
            .push(format!("{}: {:?}", rule.name, rule.action));
        let message = || {
            rule.message
                .clone()
                .unwrap_or_else(|| format!("rule {} matched", rule.name))
        };
        match rule.action {
            RuleAction::Deny => {
                if verdict.denied.is_none() {
                    verdict.denied = Some((rule.name.clone(), message()));
                }
            }
            RuleAction::RequireApprovals => {
                verdict.approvals = verdict.approvals.max(rule.approvals)
            }
            RuleAction::AutoApprove => {
                if verdict.auto_approved_by.is_none() {
                    verdict.auto_approved_by = Some(rule.name.clone());
                }
            }
            RuleAction::Warn => verdict
                .warnings
                .push(format!("{}: {}", rule.name, message())),
        }
    }
    Ok(verdict)
}

/// A JSON value as CEL sees it. Every whole number is an `int`, so that rules compare
/// counts with plain literals (`> 5`) rather than CEL's `uint` literals (`> 5u`).
fn to_cel(v: &serde_json::Value) -> cel::Value {
    use serde_json::Value as J;
    match v {
        J::Null => cel::Value::Null,
        J::Bool(b) => cel::Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => cel::Value::String(std::sync::Arc::new(s.clone())),
        J::Array(items) => {
            cel::Value::List(std::sync::Arc::new(items.iter().map(to_cel).collect()))
        }
        J::Object(map) => {
            let map: std::collections::HashMap<String, cel::Value> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(map)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    fn rule(expression: &str, action: RuleAction) -> PlanRule {
        PlanRule {
            name: "r".into(),
            expression: expression.into(),
            action,
            approvals: (action == RuleAction::RequireApprovals).then_some(2),
            message: Some("because".into()),
        }
    }

    fn facts(actions: Vec<ActionFacts>, nodes: u64) -> Facts {
        Facts {
            plan: PlanFacts {
                plan_id: "plan-1".into(),
                revision: "abc".into(),
                changes: Default::default(),
                summary: Default::default(),
                actions,
                fields_truncated: false,
                rollout: Default::default(),
                source: Default::default(),
            },
            live: BTreeMap::from([("FleetNode".to_owned(), nodes)]),
            repository: RepositoryFacts {
                namespace: "ns".into(),
                name: "fleet".into(),
            },
            trigger: "Schedule".into(),
        }
    }

    fn delete_node(name: &str) -> ActionFacts {
        ActionFacts {
            kind: "FleetNode".into(),
            name: name.into(),
            operation: "Delete".into(),
            fields: vec![],
            fields_truncated: false,
        }
    }

    const MASS_DELETE: &str = "plan.actions.filter(a, a.kind == 'FleetNode' && a.operation == 'Delete').size() * 100 > live.FleetNode * 5";

    #[test]
    fn the_mass_delete_rule_denies_past_five_percent() {
        let rules = [compile("p", 0, &rule(MASS_DELETE, RuleAction::Deny)).unwrap()];
        let ok = evaluate(&rules, &facts(vec![delete_node("a")], 20)).unwrap();
        assert_eq!(ok.denied, None);
        let denied =
            evaluate(&rules, &facts(vec![delete_node("a"), delete_node("b")], 20)).unwrap();
        assert_eq!(denied.denied, Some(("p/r".into(), "because".into())));
    }

    #[test]
    fn rules_read_the_rollout_blast_radius() {
        let expr = "plan.rollout.budgetExceeded || plan.rollout.regions.exists(r, r.disrupted * 2 > r.nodes)";
        let rules = [compile("p", 0, &rule(expr, RuleAction::Deny)).unwrap()];
        let mut f = facts(vec![delete_node("a")], 20);
        // A plan that was not staged shows an empty rollout, never a missing field.
        assert_eq!(evaluate(&rules, &f).unwrap().denied, None);
        f.plan.rollout.regions = vec![crate::fleet::rollout::RegionImpact {
            region: "eu-west-1".into(),
            nodes: 4,
            disrupted: 3,
            allowed: None,
            exceeded: false,
        }];
        assert!(evaluate(&rules, &f).unwrap().denied.is_some());
        f.plan.rollout.regions.clear();
        f.plan.rollout.budget_exceeded = true;
        assert!(evaluate(&rules, &f).unwrap().denied.is_some());
    }

    #[test]
    fn field_paths_and_values_are_visible() {
        let expr = "plan.actions.exists(a, a.kind == 'VirtualIp' && a.fields.exists(f, f.path == 'primaryHolder' && f.old != f.new))";
        let rules = [compile("p", 0, &rule(expr, RuleAction::RequireApprovals)).unwrap()];
        let mut action = delete_node("vip");
        action.kind = "VirtualIp".into();
        action.operation = "Update".into();
        action.fields = vec![FieldFacts {
            path: "primaryHolder".into(),
            old: Some("a".into()),
            new: Some("b".into()),
        }];
        let v = evaluate(&rules, &facts(vec![action], 1)).unwrap();
        assert_eq!(v.approvals, 2);
        assert_eq!(v.matched, vec!["p/r: RequireApprovals".to_owned()]);
    }

    #[test]
    fn broken_rules_are_located_errors_not_panics() {
        for bad in [
            "plan.actions.exists(",
            "",
            &"(".repeat(5000),
            &"[".repeat(200),
        ] {
            match compile("p", 3, &rule(bad, RuleAction::Deny)) {
                Err(Error::InvalidRule { rule, .. }) => assert_eq!(rule, "rules[3] (r)"),
                Err(other) => panic!("{other}"),
                Ok(_) => panic!("{bad:?} compiled"),
            }
        }
        // Long chains within the size limit compile or are refused, never crash.
        let hostile = [
            format!("{}true", "!".repeat(2000)),
            "-".repeat(2040),
            format!("{}1 == 1", "1 + ".repeat(500)),
            format!("{}x{} == 1", "f(".repeat(30), ")".repeat(30)),
            format!("{}true", "a.".repeat(1000)),
        ];
        for expr in hostile {
            let _ = compile("p", 0, &rule(&expr, RuleAction::Deny));
        }
        let missing = compile("p", 0, &rule("plan.nope > 1", RuleAction::Deny)).unwrap();
        assert!(matches!(
            evaluate(&[missing], &facts(vec![], 1)),
            Err(Error::Evaluation { .. })
        ));
        let not_bool = compile("p", 0, &rule("1 + 1", RuleAction::Warn)).unwrap();
        assert!(evaluate(&[not_bool], &facts(vec![], 1)).is_err());
    }

    const TWO_FOR_ROUTING: &str = "plan.actions.exists(a, (a.kind == 'VirtualIp' && a.fields.exists(f, f.path == 'primaryHolder')) || a.fields.exists(f, f.path == 'nodePlatform'))";
    const METADATA_ONLY: &str = "plan.actions.all(a, a.operation == 'Update' && a.fields.all(f, f.path.startsWith('metadata')))";

    fn readme_rules() -> Vec<Compiled> {
        vec![
            compile("p", 0, &rule(TWO_FOR_ROUTING, RuleAction::RequireApprovals)).unwrap(),
            compile("p", 1, &rule(METADATA_ONLY, RuleAction::AutoApprove)).unwrap(),
        ]
    }

    fn spec(kind: ObjectKind, json: serde_json::Value) -> crate::fleet::object::Spec {
        crate::fleet::object::Spec::from_json(kind, json).unwrap()
    }

    fn template(platform: &str, keys: usize) -> crate::fleet::object::Spec {
        let metadata: serde_json::Map<String, Value> = (0..keys)
            .map(|i| (format!("k{i:04}"), Value::from("v")))
            .collect();
        spec(
            ObjectKind::FleetTemplate,
            serde_json::json!({"nodePlatform": platform, "architecture": "amd64", "metadata": metadata}),
        )
    }

    fn vip(holder: &str) -> crate::fleet::object::Spec {
        spec(
            ObjectKind::VirtualIp,
            serde_json::json!({"network": "net", "primaryHolder": holder}),
        )
    }

    fn live(name: &str, spec: crate::fleet::object::Spec) -> LiveObject {
        LiveObject {
            name: name.into(),
            spec: std::sync::Arc::new(spec),
            owner: Some("fleet".into()),
            prevent_destroy: false,
        }
    }

    fn facts_of(
        desired: Vec<(&str, crate::fleet::object::Spec)>,
        current: &[LiveObject],
        budget: usize,
    ) -> Facts {
        let desired: Vec<crate::fleet::FleetObject> = desired
            .into_iter()
            .map(|(n, s)| crate::fleet::FleetObject::new(n, s))
            .collect();
        let options = crate::fleet::PlanOptions {
            repository: "fleet",
            revision: "abc",
            prune: true,
            exclude: &[],
        };
        let plan = crate::fleet::plan(&desired, current, &options).unwrap();
        Facts::bounded(&plan, current, "ns", "fleet", "Schedule", budget)
    }

    #[test]
    fn rules_see_every_field_of_a_large_update() {
        // 201 metadata keys sort before nodePlatform: a per-action cut of 200 hid it.
        let current = [live("t", template("p1", 0))];
        let both = facts_of(vec![("t", template("p2", 201))], &current, MAX_FIELDS);
        assert!(!both.plan.fields_truncated);
        let v = evaluate(&readme_rules(), &both).unwrap();
        assert_eq!((v.approvals, v.auto_approved_by), (2, None));
        let metadata = facts_of(vec![("t", template("p1", 201))], &current, MAX_FIELDS);
        let v = evaluate(&readme_rules(), &metadata).unwrap();
        assert_eq!(v.auto_approved_by.as_deref(), Some("p/r"));
        assert_eq!(v.approvals, 0);
    }

    #[test]
    fn a_truncated_plan_is_never_auto_approved_and_needs_every_quorum() {
        let current = [live("t", template("p1", 0))];
        let metadata = facts_of(vec![("t", template("p1", 30))], &current, 10);
        assert!(metadata.plan.fields_truncated);
        assert!(metadata.plan.actions[0].fields_truncated);
        assert_eq!(metadata.plan.actions[0].fields.len(), 10);
        let v = evaluate(&readme_rules(), &metadata).unwrap();
        assert!(v.truncated);
        assert_eq!(v.auto_approved_by, None);
        assert_eq!(v.approvals, 2, "RequireApprovals counts as matched");
        assert!(
            v.warnings
                .iter()
                .any(|w| w.contains("review the whole plan"))
        );
    }

    #[test]
    fn creates_and_deletes_carry_their_specs_as_fields() {
        let current = [live("gone", vip("a"))];
        let f = facts_of(vec![("new", vip("b"))], &current, MAX_FIELDS);
        let field = |name: &str| {
            let a = f.plan.actions.iter().find(|a| a.name == name).unwrap();
            a.fields
                .iter()
                .find(|x| x.path == "primaryHolder")
                .cloned()
                .unwrap()
        };
        assert_eq!(
            (field("new").old, field("new").new),
            (None, Some("b".into()))
        );
        assert_eq!(
            (field("gone").old, field("gone").new),
            (Some("a".into()), None)
        );
        let v = evaluate(&readme_rules(), &f).unwrap();
        assert_eq!((v.approvals, v.auto_approved_by), (2, None));
    }

    #[test]
    fn the_meter_stops_a_quadratic_rule_and_lets_a_linear_one_through() {
        let f = facts(
            (0..300).map(|i| delete_node(&format!("n{i}"))).collect(),
            300,
        );
        let quadratic = compile(
            "p",
            0,
            &rule(
                "plan.actions.all(a, plan.actions.exists(b, b.name == a.name + 'x') || true)",
                RuleAction::Warn,
            ),
        )
        .unwrap();
        let linear = compile(
            "p",
            0,
            &rule(
                "plan.actions.all(a, a.name.startsWith('n'))",
                RuleAction::Warn,
            ),
        )
        .unwrap();
        // 300 × 300 iterations are past 50,000 steps; 300 are not.
        let meter = Arc::new(Meter::steps(50_000));
        let refused = evaluate_metered(std::slice::from_ref(&quadratic), &f, &meter);
        assert!(
            matches!(refused, Err(Error::CostExceeded(_))),
            "{refused:?}"
        );
        assert_eq!(meter.exhausted(), Some(Exhausted::Cost));
        // It stopped within a step of its cost: nested loops do not run on.
        assert!(meter.spent() < 50_000 + 1_000, "{}", meter.spent());
        let meter = Arc::new(Meter::steps(50_000));
        let v = evaluate_metered(&[linear], &f, &meter).unwrap();
        assert_eq!(v.warnings.len(), 1);
        assert!(meter.spent() < 5_000, "{}", meter.spent());
        // Unmetered, the quadratic rule's verdict is what CEL says.
        let v = evaluate_metered(&[quadratic], &f, &Arc::new(Meter::steps(u64::MAX))).unwrap();
        assert_eq!(v.warnings.len(), 1);
    }

    #[test]
    fn an_abandoned_or_late_evaluation_fails_closed_even_if_a_verdict_was_reached() {
        let f = facts((0..50).map(|i| delete_node(&format!("n{i}"))).collect(), 50);
        let auto = compile(
            "p",
            0,
            &rule(
                "plan.actions.all(a, a.operation == 'Delete')",
                RuleAction::AutoApprove,
            ),
        )
        .unwrap();
        let abandoned = Arc::new(AtomicBool::new(true));
        let meter = Arc::new(Meter::new(MAX_COST, None, abandoned));
        let refused = evaluate_metered(std::slice::from_ref(&auto), &f, &meter);
        assert!(matches!(refused, Err(Error::Timeout(_))), "{refused:?}");
        let late = Arc::new(Meter::new(
            MAX_COST,
            Some(Instant::now()),
            Arc::new(AtomicBool::new(false)),
        ));
        assert!(matches!(
            evaluate_metered(&[auto], &f, &late),
            Err(Error::Timeout(_))
        ));
    }

    #[test]
    fn facts_are_bounded_in_bytes_as_well_as_in_fields() {
        // Ten templates, each with one 1 MiB label: more than the bytes rules are shown.
        let current: Vec<LiveObject> = Vec::new();
        let big = |i: usize| {
            spec(
                ObjectKind::FleetTemplate,
                serde_json::json!({"nodePlatform": "p", "architecture": "amd64",
                    "metadata": {"k": "v".repeat(1024 * 1024 + i)}}),
            )
        };
        let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
        let desired = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), big(i)))
            .collect();
        let f = facts_of(desired, &current, MAX_FIELDS);
        assert!(f.plan.fields_truncated);
        let shown: usize = f
            .plan
            .actions
            .iter()
            .flat_map(|a| &a.fields)
            .map(|x| x.path.len() + json_len(&x.old) + json_len(&x.new))
            .sum();
        assert!(shown <= MAX_FIELD_BYTES, "{shown}");
        assert!(f.plan.actions.iter().all(|a| a.fields.len() <= 3));
        assert_eq!(f.plan.actions.len(), 10, "every action is still listed");
    }
}
