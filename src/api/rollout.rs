//! `spec.rollout` of a GitopsRepository: how a written plan is seen through to healthy
//! machines, wave by wave. Read into the core's [`crate::fleet::rollout::Policy`], which
//! stages plans.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::pause::{RunBaseline, RunDecision, RunPause};
use crate::fleet::rollout::{Amount, Partitioning, Policy, RegionImpact, Rollout, Wave};

/// How a written plan is seen through to healthy machines.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.partitions) && has(self.steps))",
    "message": "set partitions or steps, not both"
}]))]
pub struct RolloutSpec {
    /// How long a run waits, once a wave's writes are done, for the provider of each object it wrote to report it Ready for its new generation; past it the run ends Degraded. A duration such as `90s`, `10m` or `1h30m`, from 10s to 24h (default 10m). Objects of kinds no provider serves are not waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), regex(pattern = r"^([0-9]{1,5}(s|m|h))+$"))]
    pub progress_deadline: Option<String>,
    /// What splits machines into waves: `region` (the default), `instanceType`, `lifecycleClass`, `template`, or `label:<key>` for a key of the nodes' metadata. A peer goes with its host; templates and networks with the first machines that need them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 260),
        regex(
            pattern = r"^(region|instanceType|lifecycleClass|template|label:[A-Za-z0-9._/-]{1,253})$"
        )
    )]
    pub wave_by: Option<String>,
    /// Explicit waves, in order: each a list of values of waveBy (such as regions). Machines whose value no partition lists go last, together. Without partitions or steps, each value is a wave of its own, in name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 100)))]
    pub partitions: Vec<Vec<String>>,
    /// Waves as cumulative percentages of the machines a plan touches, ordered by waveBy then name, such as `[10, 50, 100]`. Rising, the last one 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(range(min = 1, max = 100)))]
    pub steps: Vec<u32>,
    /// Machines a wave updates or deletes at once: a count, or a percentage of the machines of the wave's groups (default 25%). Larger waves are split. Creating a machine disrupts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// How long every object written so far must stay Ready after a wave converges before the next wave goes out (a soak). A duration such as `30s` or `5m`, up to 24h (default 30s). Skipped when no provider reports on the wave's objects and after the last wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), regex(pattern = r"^([0-9]{1,5}(s|m|h))+$"))]
    pub min_ready_time: Option<String>,
    /// Objects whose provider may report a terminal failure while the rollout goes on (default 0: the first failure stops it). A run with failed objects never ends Applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10000))]
    pub max_failures: Option<u32>,
    /// The blast-radius budget: machines one plan may update or delete per region, a count or a percentage of the region's machines. A plan over it is still planned; its `rollout.budgetExceeded` is true, which GovernancePolicy rules read (`plan.rollout.budgetExceeded`) to require more approvers or deny it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_budget: Option<IntOrString>,
}

impl RolloutSpec {
    /// The progress deadline when none is set.
    pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
    /// The bounds a progress deadline is kept within.
    pub const PROGRESS_DEADLINE_BOUNDS: (Duration, Duration) =
        (Duration::from_secs(10), Duration::from_secs(24 * 3600));
    /// The soak when none is set.
    pub const DEFAULT_MIN_READY_TIME: Duration = Duration::from_secs(30);

    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// The progress deadline: the field read and kept within its bounds, or the default
    /// when it is absent or unreadable (which the schema's pattern prevents).
    pub fn progress_deadline(&self) -> Duration {
        let (min, max) = Self::PROGRESS_DEADLINE_BOUNDS;
        self.progress_deadline
            .as_deref()
            .and_then(|d| humantime::parse_duration(d).ok())
            .map_or(Self::DEFAULT_PROGRESS_DEADLINE, |d| d.clamp(min, max))
    }

    /// The soak after each wave but the last, at most 24 hours.
    pub fn min_ready_time(&self) -> Duration {
        self.min_ready_time
            .as_deref()
            .and_then(|d| humantime::parse_duration(d).ok())
            .map_or(Self::DEFAULT_MIN_READY_TIME, |d| {
                d.min(Self::PROGRESS_DEADLINE_BOUNDS.1)
            })
    }

    /// Failed objects the rollout goes on with.
    pub fn max_failures(&self) -> u32 {
        self.max_failures.unwrap_or(0)
    }

    /// The policy that stages plans, or what is wrong with the spec, its field named
    /// (`spec.rollout.steps: ...`). The schema refuses most of it at admission; this is
    /// the check of record.
    pub fn policy(&self) -> Result<Policy, String> {
        let field = |name: &str, e: String| format!("spec.rollout.{name}: {e}");
        let mut policy = Policy {
            chosen: self.wave_by.is_some()
                || !self.partitions.is_empty()
                || !self.steps.is_empty()
                || self.max_unavailable.is_some(),
            ..Policy::default()
        };
        if let Some(key) = &self.wave_by {
            policy.key = key.parse().map_err(|e| field("waveBy", e))?;
        }
        if let Some(amount) = &self.max_unavailable {
            policy.max_unavailable = amount_of(amount).map_err(|e| field("maxUnavailable", e))?;
        }
        if let Some(amount) = &self.region_budget {
            policy.region_budget = Some(amount_of(amount).map_err(|e| field("regionBudget", e))?);
        }
        policy.partitioning = match (&self.partitions[..], &self.steps[..]) {
            ([], []) => Partitioning::PerGroup,
            (partitions, []) => Partitioning::Explicit(partitions.to_vec()),
            ([], steps) => Partitioning::Steps(steps.to_vec()),
            _ => return Err(field("steps", "set partitions or steps, not both".into())),
        };
        policy.check().map_err(|e| format!("spec.rollout.{e}"))?;
        Ok(policy)
    }
}

/// At most this many regions are shown in a run's status (the stored plan has all).
pub const MAX_REGIONS_SHOWN: usize = 50;
/// At most this many groups are named per wave in a run's status (the stored plan names
/// up to ten): 200 waves stay within 60 KiB.
pub const MAX_GROUPS_SHOWN: usize = 3;
/// At most this many topology findings are shown in a run's status.
pub const MAX_FINDINGS_SHOWN: usize = 20;

/// How a run rolls out, wave by wave: SyncRun `status.rollout`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRollout {
    /// The repository's spec.rollout the waves were made with, in words.
    pub policy: String,
    /// The waves, in the order they go out; each action of the plan names its own (the planId covers them).
    pub waves: Vec<Wave>,
    /// The wave being written or watched (counted from 0); absent until the first write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u32>,
    /// The soak after each wave but the last, as the repository set it when the run was planned.
    pub min_ready_time: String,
    /// Failed objects the rollout goes on with, as the repository set it when the run was planned.
    #[serde(default)]
    pub max_failures: u32,
    /// Since when every object written so far has been Ready without a break: the soak of the current wave counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<Time>,
    /// Machines the plan disrupts per region, against the regionBudget (at most 50 regions shown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionImpact>,
    /// Whether some region's budget is exceeded.
    #[serde(default)]
    pub budget_exceeded: bool,
    /// What staging noticed about the topology (at most 20 shown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
    /// The pause the run waits at for a person's choice (phase Paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<RunPause>,
    /// The choices made at earlier pauses (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub decisions: Vec<RunDecision>,
    /// Objects a choice accepted as they are, `kind/name`: they no longer hold the rollout back (at most 500).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub accepted: Vec<String>,
    /// The health of the repository's objects before the run's first write, that regressions are measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<RunBaseline>,
}

impl RunRollout {
    /// What status shows of a staged plan, with the repository's soak and failure budget.
    pub fn of(rollout: &Rollout, spec: &RolloutSpec) -> Self {
        Self {
            policy: rollout.policy.clone(),
            waves: rollout
                .waves
                .iter()
                .map(|w| Wave {
                    groups: w.groups.iter().take(MAX_GROUPS_SHOWN).cloned().collect(),
                    ..w.clone()
                })
                .collect(),
            current: None,
            min_ready_time: humantime::format_duration(spec.min_ready_time()).to_string(),
            max_failures: spec.max_failures(),
            ready_since: None,
            regions: rollout
                .regions
                .iter()
                .take(MAX_REGIONS_SHOWN)
                .cloned()
                .collect(),
            budget_exceeded: rollout.budget_exceeded,
            findings: rollout
                .findings
                .iter()
                .take(MAX_FINDINGS_SHOWN)
                .cloned()
                .collect(),
            pause: None,
            decisions: Vec::new(),
            accepted: Vec::new(),
            baseline: None,
        }
    }

    /// The soak, as recorded (the default when unreadable).
    pub fn soak(&self) -> Duration {
        humantime::parse_duration(&self.min_ready_time)
            .unwrap_or(RolloutSpec::DEFAULT_MIN_READY_TIME)
    }

    /// `2/3 (region=eu-west-1)` for wave 1 of three.
    pub fn describe(&self, wave: u32) -> String {
        let name = self
            .waves
            .get(wave as usize)
            .map_or("", |w| w.name.as_str());
        format!("{}/{} ({name})", wave + 1, self.waves.len())
    }
}

fn amount_of(value: &IntOrString) -> Result<Amount, String> {
    match value {
        IntOrString::Int(n) => Amount::parse(&n.to_string()),
        IntOrString::String(s) => Amount::parse(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::rollout::WaveKey;

    fn deadline(value: Option<&str>) -> Duration {
        RolloutSpec {
            progress_deadline: value.map(str::to_owned),
            ..RolloutSpec::default()
        }
        .progress_deadline()
    }

    #[test]
    fn the_progress_deadline_is_read_bounded_and_defaulted() {
        assert_eq!(deadline(None), Duration::from_secs(600));
        assert_eq!(deadline(Some("90s")), Duration::from_secs(90));
        assert_eq!(deadline(Some("1h30m")), Duration::from_secs(5400));
        assert_eq!(deadline(Some("0s")), Duration::from_secs(10));
        assert_eq!(deadline(Some("99999h")), Duration::from_secs(86_400));
        assert_eq!(deadline(Some("soon")), Duration::from_secs(600));
    }

    #[test]
    fn the_default_rolls_out_by_region_a_quarter_at_a_time_with_a_soak() {
        let spec = RolloutSpec::default();
        assert_eq!(spec.policy().unwrap(), Policy::default());
        assert_eq!(spec.min_ready_time(), Duration::from_secs(30));
        assert_eq!(spec.max_failures(), 0);
    }

    #[test]
    fn a_bad_policy_names_its_field() {
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "maxUnavailable": "0%"
        }))
        .unwrap();
        assert!(
            spec.policy()
                .unwrap_err()
                .starts_with("spec.rollout.maxUnavailable:")
        );
        let spec: RolloutSpec =
            serde_json::from_value(serde_json::json!({"steps": [10, 50]})).unwrap();
        assert!(
            spec.policy()
                .unwrap_err()
                .starts_with("spec.rollout.steps:")
        );
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "partitions": [["a"]], "steps": [100]
        }))
        .unwrap();
        assert!(spec.policy().unwrap_err().contains("not both"));
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "waveBy": "label:rack", "maxUnavailable": 2, "regionBudget": "20%",
            "partitions": [["r1"], ["r2", "r3"]]
        }))
        .unwrap();
        let policy = spec.policy().unwrap();
        assert_eq!(policy.key, WaveKey::Label("rack".into()));
        assert_eq!(policy.max_unavailable, Amount::Count(2));
        assert_eq!(policy.region_budget, Some(Amount::Percent(20)));
    }
}
