//! What a staged plan records of its rollout: the waves, the blast radius per region,
//! the topology notes. Data only; [`crate::rollout`] decides it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One wave of a staged plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    /// `region=eu-west-1`, `region=eu-west-1 (2/3)`, `10%`, or `(no machines)` for a
    /// plan that changes none.
    pub name: String,
    /// The groups whose machines go out in it.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Actions in the wave.
    pub actions: u32,
    /// Machines the wave updates or deletes.
    pub disrupted: u32,
}

/// What one plan puts at risk in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionImpact {
    /// The region, as the nodes' `region` names it.
    pub region: String,
    /// Machines in the region now.
    pub nodes: u32,
    /// Machines the plan updates or deletes there.
    pub disrupted: u32,
    /// What the budget allows there, when the policy sets one.
    #[serde(default)]
    pub allowed: Option<u32>,
    /// Whether `disrupted` is more than `allowed`.
    #[serde(default)]
    pub exceeded: bool,
}

/// How a plan rolls out: its waves (each action names its own), the blast radius per
/// region, and what the planner noticed about the topology.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// The policy the waves were made with, in words.
    pub policy: String,
    /// The waves, in the order they go out.
    pub waves: Vec<Wave>,
    /// Machines disrupted per region, for the regions the plan disrupts.
    #[serde(default)]
    pub regions: Vec<RegionImpact>,
    /// Whether some region's budget is exceeded (governance rules read it).
    #[serde(default)]
    pub budget_exceeded: bool,
    /// Topology notes: virtual IPs whose holders were split over waves, or that a single
    /// holder leaves down while it changes.
    #[serde(default)]
    pub findings: Vec<String>,
}
