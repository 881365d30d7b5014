//! A GovernancePolicy compiled, and the small controller that reports on its status
//! whether every rule and duration is valid.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};

use super::{Error, rules, windows};
use crate::api::governance::GovernancePolicyStatus;
use crate::api::slices::SliceRule;
use crate::api::{GovernancePolicy, apply_status, now, set_condition};

/// What a policy says, compiled, and what in it is invalid.
pub struct Parts {
    pub rules: Vec<rules::Compiled>,
    pub windows: Vec<windows::Compiled>,
    pub plan_expiry: Option<Duration>,
    pub approval_expiry: Option<Duration>,
    pub errors: Vec<Error>,
}

fn duration(field: &str, value: Option<&String>, errors: &mut Vec<Error>) -> Option<Duration> {
    let value = value?;
    match humantime::parse_duration(value) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            errors.push(Error::InvalidSpec {
                field: field.into(),
                message: "must be longer than zero".into(),
            });
            None
        }
        Err(e) => {
            errors.push(Error::InvalidSpec {
                field: field.into(),
                message: format!("`{}`: {e}", crate::api::truncate(value, 64)),
            });
            None
        }
    }
}

/// Compiled policies by (uid, generation): a policy is compiled once per change, not at
/// every step of every run it governs (each rule's parser runs on its own thread).
static COMPILED: LazyLock<Mutex<Cache>> = LazyLock::new(Default::default);
/// Compiled policies by uid and generation.
type Cache = HashMap<(String, i64), Arc<Parts>>;
/// Policies kept compiled; past it the cache starts afresh.
const MAX_CACHED: usize = 256;

/// [`compile`], once per generation of the policy.
pub fn compiled(policy: &GovernancePolicy) -> Arc<Parts> {
    let (Some(uid), Some(generation)) = (policy.uid(), policy.meta().generation) else {
        return Arc::new(compile(policy));
    };
    let key = (uid, generation);
    let cache = || COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(parts) = cache().get(&key) {
        return parts.clone();
    }
    let parts = Arc::new(compile(policy));
    let mut cache = cache();
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(key, parts.clone());
    parts
}

/// Compiles every rule and parses every duration of `policy`.
pub fn compile(policy: &GovernancePolicy) -> Parts {
    let name = policy.name_any();
    let mut errors = Vec::new();
    let plan_expiry = duration(
        "spec.planExpiry",
        policy.spec.plan_expiry.as_ref(),
        &mut errors,
    );
    let approval_expiry = duration(
        "spec.approvalExpiry",
        policy.spec.approval_expiry.as_ref(),
        &mut errors,
    );
    if policy.spec.repositories.is_empty() {
        errors.push(Error::InvalidSpec {
            field: "spec.repositories".into(),
            message: "selects no repository".into(),
        });
    }
    let identities = policy
        .spec
        .approvals
        .as_ref()
        .and_then(|a| a.separation_of_duties.as_ref())
        .map_or(&[][..], |s| s.identities.as_slice());
    for (i, identity) in identities.iter().enumerate() {
        if let Some(message) = super::separation::invalid(identity) {
            errors.push(Error::InvalidSpec {
                field: format!("spec.approvals.separationOfDuties.identities[{i}]"),
                message,
            });
        }
    }
    if let Some(slices) = &policy.spec.slices {
        errors.extend(slice_errors(slices));
    }
    let mut compiled = Vec::new();
    for (i, rule) in policy.spec.rules.iter().enumerate().take(32) {
        match rules::compile(&name, i, rule) {
            Ok(c) => compiled.push(c),
            Err(e) => errors.push(e),
        }
    }
    let mut windows = Vec::new();
    for (i, w) in policy
        .spec
        .windows
        .iter()
        .enumerate()
        .take(windows::MAX_WINDOWS)
    {
        match windows::compile(&name, i, w) {
            Ok(c) => windows.push(c),
            Err(e) => errors.push(e),
        }
    }
    Parts {
        rules: compiled,
        windows,
        plan_expiry,
        approval_expiry,
        errors,
    }
}

/// What is wrong with `spec.slices`, located: a key the planner cannot split by, an
/// owner nobody is, a value two owners claim.
fn slice_errors(slices: &SliceRule) -> Vec<Error> {
    let mut errors = Vec::new();
    if let Err(message) = slices.by.parse::<crate::fleet::rollout::WaveKey>() {
        errors.push(Error::InvalidSpec {
            field: "spec.slices.by".into(),
            message,
        });
    }
    let mut claimed: HashMap<&str, usize> = HashMap::new();
    for (i, owner) in slices.owners.iter().enumerate() {
        let field = format!("spec.slices.owners[{i}]");
        if owner.users.is_empty() && owner.groups.is_empty() {
            errors.push(Error::InvalidSpec {
                field: field.clone(),
                message: "names no user and no group: nobody could approve its slices".into(),
            });
        }
        for value in &owner.values {
            if value == crate::fleet::slices::NO_OWNER {
                errors.push(Error::InvalidSpec {
                    field: format!("{field}.values"),
                    message: format!(
                        "`{value}` is the slice of what no owner holds; it takes spec.approvals"
                    ),
                });
            } else if let Some(first) = claimed.insert(value, i) {
                errors.push(Error::InvalidSpec {
                    field: format!("{field}.values"),
                    message: format!(
                        "`{}` is already owned by spec.slices.owners[{first}]: a value has one owner",
                        crate::api::truncate(value, 64)
                    ),
                });
            }
        }
    }
    errors
}

/// Writes whether the policy is valid to its status.
pub async fn reconcile(
    policy: Arc<GovernancePolicy>,
    client: Arc<Client>,
) -> Result<Action, Error> {
    let parts = compiled(&policy);
    let mut status = policy.status.clone().unwrap_or_default();
    let errors: Vec<String> = parts.errors.iter().map(|e| e.to_string()).collect();
    let (ok, reason, message) = match parts.errors.first() {
        None => (
            true,
            "Compiled",
            format!("{} rules compiled", parts.rules.len()),
        ),
        Some(first) => (false, first.label(), errors.join("\n")),
    };
    let generation = policy.meta().generation;
    let fresh = GovernancePolicyStatus {
        observed_generation: generation,
        errors: errors.clone(),
        conditions: status.conditions.clone(),
    };
    set_condition(
        &mut status.conditions,
        "Ready",
        ok,
        reason,
        &message,
        generation,
        &now(),
    );
    let unchanged = policy.status.as_ref().is_some_and(|s| {
        s.observed_generation == generation
            && s.errors == errors
            && crate::api::condition(&s.conditions, "Ready").is_some_and(|c| c.reason == reason)
    });
    if unchanged {
        return Ok(Action::await_change());
    }
    let status = GovernancePolicyStatus {
        conditions: status.conditions,
        ..fresh
    };
    apply_status(
        &Api::<GovernancePolicy>::all((*client).clone()),
        &policy.name_any(),
        &status,
    )
    .await?;
    Ok(Action::await_change())
}

pub fn error_policy(policy: Arc<GovernancePolicy>, error: &Error, _: Arc<Client>) -> Action {
    tracing::warn!(policy = %policy.name_any(), error = %error, "governance policy status not written");
    Action::requeue(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(uid: &str, generation: i64) -> GovernancePolicy {
        let mut p: GovernancePolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "GovernancePolicy",
            "metadata": {"name": "p", "uid": uid, "generation": generation},
            "spec": {"repositories": [{"namespace": "*", "name": "*"}],
                     "rules": [{"name": "r", "action": "Warn", "expression": "true"}]},
        }))
        .unwrap();
        p.metadata.generation = Some(generation);
        p
    }

    #[test]
    fn a_policy_is_compiled_once_per_generation() {
        let first = compiled(&policy("uid-cache-test", 1));
        assert_eq!(first.rules.len(), 1);
        assert!(Arc::ptr_eq(&first, &compiled(&policy("uid-cache-test", 1))));
        let changed = compiled(&policy("uid-cache-test", 2));
        assert!(!Arc::ptr_eq(&first, &changed));
        // Without a uid (not from the API server) nothing is cached.
        let mut bare = policy("", 1);
        bare.metadata.uid = None;
        assert!(!Arc::ptr_eq(&compiled(&bare), &compiled(&bare)));
    }
}
