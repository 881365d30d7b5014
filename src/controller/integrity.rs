//! What is applied is what was approved. The stored plan lives in ConfigMaps a tenant
//! can write, so before anything is applied its planId is computed again from the
//! actions and specs it holds and compared with the planId recorded in the run's status
//! (the one the approver approved); its revision must be the run's. Together with the
//! digest [`super::planstore`] checks, a plan changed after review is refused as
//! PlanTampered and nothing of it is applied.

use crate::fleet::Plan;
use crate::fleet::plan::plan_id;

/// Why a stored plan is not the approved one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    #[error("the run records no planId")]
    NoPlanId,
    #[error("the stored plan is of revision {stored}, but the run plans {run}")]
    Revision { stored: String, run: String },
    #[error(
        "the stored actions make plan {computed}, but plan {approved} was approved (the stored plan calls itself {claimed})"
    )]
    PlanId {
        computed: String,
        approved: String,
        claimed: String,
    },
}

impl IntegrityError {
    /// The condition reason and Event reason of every integrity failure.
    pub fn label(&self) -> &'static str {
        "PlanTampered"
    }
}

/// Checks that `plan` is exactly the plan approved as `approved` for `revision`.
pub fn verify(plan: &Plan, revision: &str, approved: Option<&str>) -> Result<(), IntegrityError> {
    let approved = approved.ok_or(IntegrityError::NoPlanId)?;
    if plan.revision != revision {
        return Err(IntegrityError::Revision {
            stored: plan.revision.clone(),
            run: revision.to_owned(),
        });
    }
    let computed = plan_id(revision, &plan.actions);
    if computed != approved || plan.plan_id != approved {
        return Err(IntegrityError::PlanId {
            computed,
            approved: approved.to_owned(),
            claimed: plan.plan_id.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{EXAMPLE, plan_of};

    fn example() -> Plan {
        plan_of(EXAMPLE).on_an_empty_cluster()
    }

    #[test]
    fn the_approved_plan_passes_and_any_change_to_it_is_refused() {
        let plan = example();
        let id = plan.plan_id.clone();
        assert_eq!(verify(&plan, "abc", Some(&id)), Ok(()));
        assert_eq!(verify(&plan, "abc", None), Err(IntegrityError::NoPlanId));
        assert!(matches!(
            verify(&plan, "def", Some(&id)),
            Err(IntegrityError::Revision { .. })
        ));

        // Another spec under the same planId.
        let mut forged = plan.clone();
        let victim = forged
            .actions
            .iter_mut()
            .find(|a| a.spec.is_some())
            .unwrap();
        let mut json = serde_json::to_value(victim.spec.as_deref().unwrap()).unwrap();
        json["modules"] = serde_json::json!(["backdoor"]);
        victim.spec = Some(std::sync::Arc::new(
            crate::fleet::object::Spec::from_json(victim.kind, json).unwrap(),
        ));
        assert!(matches!(
            verify(&forged, "abc", Some(&id)),
            Err(IntegrityError::PlanId { .. })
        ));

        // One action fewer, or one more.
        let mut forged = plan.clone();
        forged.actions.pop();
        assert!(verify(&forged, "abc", Some(&id)).is_err());
        let mut forged = plan.clone();
        let extra = forged.actions[0].clone();
        forged.actions.push(extra);
        assert!(verify(&forged, "abc", Some(&id)).is_err());
        assert_eq!(
            IntegrityError::NoPlanId.label(),
            "PlanTampered",
            "one reason for every refusal"
        );
    }
}
