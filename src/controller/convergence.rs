//! Health-gated apply: once a run's writes are done, whether the providers report every
//! object it wrote Ready for its new generation. The reads are here (the watch cache,
//! the providers' registration Leases); the decision is the core's `fleet::health`; the
//! step that moves the run is `syncrun::converging`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::SignedDuration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::error::Result;
use super::live::FleetCache;
use crate::api::fleet::status::registration;
use crate::api::syncrun::{ActionState, ObjectHealth, RunHealth};
use crate::api::{SyncRun, truncate};
use crate::fleet::drift::{DriftKind, DriftedObject};
use crate::fleet::health::{Health, Observed, Service, Standing, Tally, worst_first};
use crate::fleet::{FleetObject, ObjectKind, Operation, Plan};

/// Objects shown by name in a run's status.health.
pub const SHOWN_OBJECTS: usize = 100;
/// Registration Leases read per namespace: a provider keeps one, a namespace a few; more
/// than this is not a provider setup but someone filling the namespace.
const MAX_LEASES: u32 = 64;

/// The objects a run wrote and must see converge: those created or updated by an
/// applied action. A deletion converges when the object is gone, which the engine
/// already verified.
pub fn written(plan: &Plan, states: &[ActionState]) -> Vec<(ObjectKind, String)> {
    plan.actions
        .iter()
        .zip(states)
        .filter(|(a, s)| **s == ActionState::Applied && a.operation != Operation::Delete)
        .map(|(a, _)| (a.kind, a.name.clone()))
        .collect()
}

/// The kinds some provider serves in `namespace`, from their registration Leases
/// (`fleet-provider-<name>`, labelled with the provider and annotated with its kinds). A
/// Lease counts whether or not it is being renewed: a provider that is down still serves
/// its kinds, and its objects wait (until the progress deadline) rather than pass.
pub async fn served_kinds(client: &Client, namespace: &str) -> Result<BTreeSet<ObjectKind>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default()
        .labels(registration::PROVIDER_LABEL)
        .limit(MAX_LEASES);
    let leases = api.list_metadata(&params).await?;
    Ok(leases
        .items
        .iter()
        .filter(|l| l.name_any().starts_with(registration::LEASE_PREFIX))
        .filter_map(|l| l.annotations().get(registration::KINDS_ANNOTATION))
        .flat_map(|kinds| kinds.split(','))
        .filter_map(|kind| kind.trim().parse().ok())
        .collect())
}

/// Each written object as the watch cache shows it now. An object missing from the
/// cache (deleted since, or not delivered yet) is progressing: it is not Ready.
pub fn observe(
    fleet: &FleetCache,
    namespace: &str,
    written: &[(ObjectKind, String)],
    served: &BTreeSet<ObjectKind>,
) -> Vec<Observed> {
    written
        .iter()
        .map(|(kind, name)| {
            let service = if served.contains(kind) {
                Service::Served
            } else {
                Service::Unserved
            };
            let cached = fleet.get(*kind, namespace, name);
            let health = cached.as_ref().map(|o| o.health).unwrap_or_default();
            Observed {
                kind: *kind,
                name: name.clone(),
                standing: Standing::of(health, service),
                reason: cached.and_then(|o| o.reason).map(|r| r.as_str()),
            }
        })
        .collect()
}

/// What status.health says of `observed`.
pub fn report(
    observed: &[Observed],
    served: &BTreeSet<ObjectKind>,
    since: Time,
    deadline: Time,
) -> RunHealth {
    let tally = Tally::of(observed);
    let unserved_kinds: BTreeSet<&str> = observed
        .iter()
        .filter(|o| !served.contains(&o.kind))
        .map(|o| o.kind.as_str())
        .collect();
    RunHealth {
        ready: tally.ready,
        progressing: tally.progressing,
        failed: tally.failed,
        unserved: tally.unserved,
        unserved_kinds: unserved_kinds.into_iter().map(str::to_owned).collect(),
        since,
        deadline,
        objects: worst_first(observed, SHOWN_OBJECTS)
            .into_iter()
            .map(|o| ObjectHealth {
                kind: o.kind.as_str().to_owned(),
                name: o.name.clone(),
                standing: o.standing,
                reason: o.reason.map(str::to_owned),
            })
            .collect(),
    }
}

/// What a Degraded run records in driftAfterApply: each object not Ready, as its
/// provider reports it.
pub fn not_converged(observed: &[Observed], limit: usize) -> Vec<String> {
    worst_first(observed, limit)
        .into_iter()
        .filter(|o| !o.standing.is_settled())
        .map(|o| {
            let reason = o.reason.map(|r| format!(" ({r})")).unwrap_or_default();
            truncate(
                &format!(
                    "{}/{}: {} after applying{reason}",
                    o.kind,
                    o.name,
                    o.standing.as_str()
                ),
                256,
            )
        })
        .collect()
}

/// Health regressions: objects of the applied desired state, not drifted from it, whose
/// provider reports them not Ready for their current generation (a terminal failure, or
/// reconciling again: a link down, a holder not answering). An object the provider has
/// not caught up with (stale or unreported) is not counted: that is the provider's lag,
/// not the machine's health.
pub fn regressions(
    fleet: &FleetCache,
    namespace: &str,
    desired: &[FleetObject],
    served: &BTreeSet<ObjectKind>,
    drifted: &[DriftedObject],
) -> Vec<DriftedObject> {
    desired
        .iter()
        .filter(|o| served.contains(&o.kind()))
        .filter(|o| {
            !drifted
                .iter()
                .any(|d| d.kind == o.kind() && d.name == o.name)
        })
        .filter_map(|o| {
            let cached = fleet.get(o.kind(), namespace, &o.name)?;
            let standing = match cached.health {
                Health::Failed => Standing::Failed,
                Health::InProgress => Standing::Progressing,
                Health::Ready | Health::Stale | Health::Unreported => return None,
            };
            let reason = cached.reason.map(|r| format!(" ({r})")).unwrap_or_default();
            Some(DriftedObject {
                kind: o.kind(),
                name: o.name.clone(),
                drift: DriftKind::Unhealthy,
                fields: vec![format!("{}{reason}", standing.as_str())],
            })
        })
        .collect()
}

/// `at` plus `d` (`at` itself if that is past what a timestamp holds).
pub fn plus(at: &Time, d: Duration) -> Time {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    Time(at.0.checked_add(d).unwrap_or(at.0))
}

/// How long from `from` to `to` (zero if `to` is earlier).
pub fn between(from: &Time, to: &Time) -> Duration {
    Duration::try_from(to.0.duration_since(from.0)).unwrap_or(Duration::ZERO)
}

/// The objects one run wrote, by kind and name.
pub type WrittenObjects = Arc<Vec<(ObjectKind, String)>>;

/// The objects each converging run wrote, kept while it converges so that looking
/// again does not read its stored plan again; after a restart the plan is read once.
#[derive(Default)]
pub struct Written {
    runs: Mutex<HashMap<String, WrittenObjects>>,
}

impl Written {
    fn key(run: &SyncRun) -> String {
        format!(
            "{}/{}/{}",
            run.namespace().unwrap_or_default(),
            run.name_any(),
            run.uid().unwrap_or_default()
        )
    }

    pub fn get(&self, run: &SyncRun) -> Option<WrittenObjects> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.get(&Self::key(run)).cloned()
    }

    pub fn keep(&self, run: &SyncRun, written: Vec<(ObjectKind, String)>) -> WrittenObjects {
        let written = Arc::new(written);
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.insert(Self::key(run), written.clone());
        written
    }

    pub fn forget(&self, run: &SyncRun) {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.remove(&Self::key(run));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::plan_of;

    fn observed(kind: ObjectKind, name: &str, standing: Standing) -> Observed {
        Observed {
            kind,
            name: name.into(),
            standing,
            reason: (standing == Standing::Failed).then_some("NodeFailed"),
        }
    }

    #[test]
    fn only_applied_creates_and_updates_are_waited_for() {
        let plan = plan_of(crate::controller::fixtures::EXAMPLE).on_an_empty_cluster();
        let mut states = vec![ActionState::Applied; plan.actions.len()];
        states[0] = ActionState::Skipped;
        let written = written(&plan, &states);
        assert_eq!(written.len(), plan.actions.len() - 1);
        assert!(!written.contains(&(plan.actions[0].kind, plan.actions[0].name.clone())));
    }

    #[test]
    fn the_report_counts_every_object_and_names_the_worst() {
        let served = BTreeSet::from([ObjectKind::FleetNode]);
        let all = [
            observed(ObjectKind::FleetNode, "a", Standing::Ready),
            observed(ObjectKind::FleetNode, "b", Standing::Failed),
            observed(ObjectKind::VirtualIp, "v", Standing::Unserved),
        ];
        let at = crate::api::now();
        let report = report(&all, &served, at.clone(), at);
        assert_eq!(
            (
                report.ready,
                report.progressing,
                report.failed,
                report.unserved
            ),
            (1, 0, 1, 1)
        );
        assert_eq!(report.unserved_kinds, ["VirtualIp"]);
        let names: Vec<&str> = report.objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["b", "v"]);
        assert_eq!(
            not_converged(&all, 10),
            ["FleetNode/b: Failed after applying (NodeFailed)"]
        );
    }
}
