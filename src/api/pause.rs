//! A rollout paused for a person's choice, as a SyncRun's `status.rollout` records it:
//! the pause itself, the choices made, the objects accepted as they are, and the health
//! taken before the run's first write that regressions are measured against.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fleet::ObjectRef;

/// At most this many objects are named by one pause; a choice covers these (objects
/// beyond them that still fail pause the rollout again).
pub const MAX_PAUSED: usize = 100;
/// At most this many objects are recorded as accepted over a run's pauses.
pub const MAX_ACCEPTED: usize = 500;
/// At most this many unhealthy objects are recorded in the baseline; past it the
/// baseline is incomplete and regressions are not judged.
pub const MAX_BASELINE: usize = 500;
/// At most this many choices are recorded per run.
pub const MAX_DECISIONS: usize = 20;

/// A rollout that stopped at a wave and waits for a person with the approve verb to choose.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunPause {
    /// Why: ObjectFailed (failures past maxFailures), ProgressDeadlineExceeded or HealthRegression (objects the run did not write, Ready before it, now failed).
    pub reason: String,
    /// The wave it stopped at (counted from 0).
    pub wave: u32,
    /// The objects that stopped it, `kind/name` (at most 100).
    #[schemars(length(max = 100))]
    pub objects: Vec<String>,
    /// How many more objects were not Ready than are named.
    #[serde(default)]
    pub more: u32,
    /// What a choice names: `kubectl annotate syncrun/<run> gitops.fleetgate.dev/approve=<continue|leave-out|rollback>:<decisionId>` (or `kubectl fleet decide`). A digest of the planId, the wave and the objects named.
    pub decision_id: String,
    /// When it paused.
    pub at: Time,
    /// The run a rollback would restore: the repository's newest run before this one that applied whole. Absent: no rollback is offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<String>,
}

impl RunPause {
    /// The objects named, as references (an entry that cannot be read is skipped).
    pub fn references(&self) -> Vec<ObjectRef> {
        self.objects
            .iter()
            .filter_map(|o| ObjectRef::try_from(o.clone()).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_bounds_what_the_controller_bounds() {
        let schema = serde_json::to_value(schemars::schema_for!(RunPause)).unwrap();
        assert_eq!(schema["properties"]["objects"]["maxItems"], MAX_PAUSED);
        let schema = serde_json::to_value(schemars::schema_for!(RunBaseline)).unwrap();
        assert_eq!(schema["properties"]["unhealthy"]["maxItems"], MAX_BASELINE);
        let schema =
            serde_json::to_value(schemars::schema_for!(crate::api::rollout::RunRollout)).unwrap();
        assert_eq!(schema["properties"]["accepted"]["maxItems"], MAX_ACCEPTED);
        assert_eq!(schema["properties"]["decisions"]["maxItems"], MAX_DECISIONS);
    }
}

/// A choice made at a pause, once its quorum was met.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunDecision {
    /// continue, leave-out or rollback.
    pub choice: String,
    /// The pause it was made at.
    pub decision_id: String,
    /// The wave the rollout had stopped at.
    pub wave: u32,
    /// Who chose, comma-separated (the quorum of the governing policies).
    pub by: String,
    /// When the quorum was met.
    pub at: Time,
}

/// The health of the repository's objects before the run's first write.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunBaseline {
    /// When it was taken.
    pub at: Time,
    /// The repository's objects that were not Ready then, `kind/name` (at most 500).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub unhealthy: Vec<String>,
    /// False when more objects were unhealthy than are recorded: regressions are then not judged.
    pub complete: bool,
}
