//! Health-gated apply: once a run's writes are done, whether the providers report every
//! object it wrote Ready for its new generation. The reads are here (the watch cache,
//! the providers' registration Leases); the decision is the core's `fleet::health`; the
//! step that moves the run is `syncrun::converging`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::SignedDuration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::error::Result;
use super::live::FleetCache;
use crate::api::fleet::status::{ProviderReason, registration};
use crate::api::pause::{MAX_BASELINE, RunBaseline};
use crate::api::syncrun::{ActionState, ObjectHealth, RunHealth};
use crate::api::{SyncRun, truncate};
use crate::fleet::drift::{DriftKind, DriftedObject};
use crate::fleet::health::{Health, Observed, Service, Standing, Tally, worst_first};
use crate::fleet::plan::spec_digest;
use crate::fleet::{FleetObject, ObjectKind, ObjectRef, Operation, Plan};

/// Objects shown by name in a run's status.health.
pub const SHOWN_OBJECTS: usize = 100;
/// Registration Leases read per namespace: a provider keeps one, a namespace a few; more
/// than this is not a provider setup but someone filling the namespace.
const MAX_LEASES: u32 = 64;

/// One object a run wrote: its kind, its name and the digest of the spec it wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenObject {
    pub kind: ObjectKind,
    pub name: String,
    /// [`spec_digest`] of the spec written: until the cache shows this spec, what the
    /// cache says of the object's health is about another spec.
    pub digest: Option<String>,
}

/// The objects a run wrote and must see converge: those created or updated by an
/// applied action. A deletion converges when the object is gone, which the engine
/// already verified.
pub fn written(plan: &Plan, states: &[ActionState]) -> Vec<WrittenObject> {
    plan.actions
        .iter()
        .zip(states)
        .filter(|(a, s)| **s == ActionState::Applied && a.operation != Operation::Delete)
        .map(|(a, _)| WrittenObject {
            kind: a.kind,
            name: a.name.clone(),
            digest: a.spec.as_deref().map(spec_digest),
        })
        .collect()
}

/// The kinds some provider serves in `namespace`, from their registration Leases
/// (`fleet-provider-<name>`, labelled with the provider and annotated with its kinds). A
/// Lease counts whether or not it is being renewed: a provider that is down still serves
/// its kinds, and its objects wait (until the progress deadline) rather than pass. More
/// labelled Leases than [`MAX_LEASES`] is not a provider setup: every kind is then taken
/// as served, so that burying a provider's Lease among others never lets a run pass
/// unwatched.
pub async fn served_kinds(client: &Client, namespace: &str) -> Result<BTreeSet<ObjectKind>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default()
        .labels(registration::PROVIDER_LABEL)
        .limit(MAX_LEASES);
    let leases = api.list_metadata(&params).await?;
    if leases
        .metadata
        .continue_
        .as_deref()
        .is_some_and(|c| !c.is_empty())
    {
        tracing::warn!(
            namespace,
            "more than {MAX_LEASES} provider registration Leases; every fleet kind is taken as served"
        );
        return Ok(ObjectKind::ALL.into_iter().collect());
    }
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
/// cache (deleted since, or not delivered yet) is progressing: it is not Ready. So is one
/// the cache shows with another spec than the run wrote (the watch is behind, or someone
/// changed it since): its health is about that other spec.
pub fn observe(
    fleet: &FleetCache,
    namespace: &str,
    written: &[WrittenObject],
    served: &BTreeSet<ObjectKind>,
) -> Vec<Observed> {
    written
        .iter()
        .map(|w| {
            let service = if served.contains(&w.kind) {
                Service::Served
            } else {
                Service::Unserved
            };
            let cached = fleet
                .get(w.kind, namespace, &w.name)
                .filter(|o| o.digest.is_some() && o.digest == w.digest);
            let health = cached.as_ref().map(|o| o.health).unwrap_or_default();
            Observed {
                kind: w.kind,
                name: w.name.clone(),
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
    let drifted: HashSet<(ObjectKind, &str)> =
        drifted.iter().map(|d| (d.kind, d.name.as_str())).collect();
    desired
        .iter()
        .filter(|o| served.contains(&o.kind()))
        .filter(|o| !drifted.contains(&(o.kind(), o.name.as_str())))
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

/// The health of `repository`'s objects before a run's first write: those not Ready
/// then (reported and not Ready: a provider acting on them, or failed). What regresses
/// during the run is measured against it.
pub fn baseline(fleet: &FleetCache, namespace: &str, repository: &str, at: Time) -> RunBaseline {
    let not_ready = |h, _| matches!(h, Health::Stale | Health::InProgress | Health::Failed);
    let mut unhealthy: Vec<String> = fleet
        .health_of(namespace, repository, not_ready)
        .into_iter()
        .map(|(r, _, _)| r.to_string())
        .collect();
    unhealthy.sort();
    let complete = unhealthy.len() <= MAX_BASELINE;
    unhealthy.truncate(MAX_BASELINE);
    RunBaseline {
        at,
        unhealthy,
        complete,
    }
}

/// Whether an object reporting `health` for `reason` has lost service it had: a
/// terminal failure, or a link, session or virtual IP down. Other reconciling (being
/// updated, waiting for a dependency) is what a change around it brings for a moment.
pub fn lost_service(health: Health, reason: Option<ProviderReason>) -> Option<Standing> {
    match (health, reason) {
        (Health::Failed, _) => Some(Standing::Failed),
        (
            Health::InProgress,
            Some(
                ProviderReason::LinkDown
                | ProviderReason::SessionsNotEstablished
                | ProviderReason::HolderNotAnswering,
            ),
        ) => Some(Standing::Progressing),
        _ => None,
    }
}

/// Of `now` (the repository's objects with what their providers report), those that
/// lost service since the baseline: not unhealthy then, neither written by the run (its
/// own objects are judged against its failure budget) nor accepted at a pause, and now
/// failed, or down for at least `grace` (`down_for` says how long each has been seen
/// so; the controller gives the wave's progress deadline). An incomplete baseline
/// judges nothing.
pub fn regressions_since(
    now: &[(ObjectRef, Standing)],
    baseline: &RunBaseline,
    written: &[WrittenObject],
    accepted: &[String],
    down_for: impl Fn(&ObjectRef) -> Duration,
    grace: Duration,
) -> Vec<ObjectRef> {
    if !baseline.complete {
        return Vec::new();
    }
    let before: HashSet<&str> = baseline.unhealthy.iter().map(String::as_str).collect();
    let accepted: HashSet<&str> = accepted.iter().map(String::as_str).collect();
    let written: HashSet<(ObjectKind, &str)> =
        written.iter().map(|w| (w.kind, w.name.as_str())).collect();
    let mut out: Vec<ObjectRef> = now
        .iter()
        .filter(|(r, standing)| {
            let named = r.to_string();
            !written.contains(&(r.kind, r.name.as_str()))
                && !before.contains(named.as_str())
                && !accepted.contains(named.as_str())
                && (*standing == Standing::Failed || down_for(r) >= grace)
        })
        .map(|(r, _)| r.clone())
        .collect();
    out.sort();
    out
}

/// The repository's objects that have lost service now (see [`lost_service`]).
pub fn out_of_service(
    fleet: &FleetCache,
    namespace: &str,
    repository: &str,
) -> Vec<(ObjectRef, Standing)> {
    fleet
        .health_of(namespace, repository, |h, reason| {
            lost_service(h, reason).is_some()
        })
        .into_iter()
        .filter_map(|(r, h, reason)| Some((r, lost_service(h, reason)?)))
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

/// The objects one run wrote.
pub type WrittenObjects = Arc<Vec<WrittenObject>>;

/// How long an entry of [`Written`] may go unlooked-at before it is taken for a run that
/// ended or was deleted without this controller seeing it (a converging run is looked at
/// every few seconds; one whose looks fail for longer reads its plan again).
const IDLE: Duration = Duration::from_secs(600);

/// What is kept for one converging run.
struct Kept {
    objects: WrittenObjects,
    looked: Instant,
    /// When its status was last written while it waited.
    written: Option<Instant>,
    /// Since when each object around the run has been seen out of service.
    down_since: HashMap<ObjectRef, Instant>,
}

/// The objects each converging run wrote, kept while it converges so that looking
/// again does not read its stored plan again; after a restart the plan is read once.
#[derive(Default)]
pub struct Written {
    runs: Mutex<HashMap<String, Kept>>,
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

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, run: &SyncRun) -> Option<WrittenObjects> {
        let mut runs = self.runs();
        let kept = runs.get_mut(&Self::key(run))?;
        kept.looked = Instant::now();
        Some(kept.objects.clone())
    }

    /// Keeps what `run` wrote, and lets go of what runs no longer looked at kept.
    pub fn keep(&self, run: &SyncRun, written: Vec<WrittenObject>) -> WrittenObjects {
        let objects = Arc::new(written);
        let mut runs = self.runs();
        runs.retain(|_, kept| kept.looked.elapsed() < IDLE);
        let kept = Kept {
            objects: objects.clone(),
            looked: Instant::now(),
            written: None,
            down_since: HashMap::new(),
        };
        runs.insert(Self::key(run), kept);
        objects
    }

    /// Whether a waiting run's status may be written now: at most once per `every`,
    /// since each write wakes the run (and its repository) again.
    pub fn may_write(&self, run: &SyncRun, every: Duration) -> bool {
        let mut runs = self.runs();
        let Some(kept) = runs.get_mut(&Self::key(run)) else {
            return true;
        };
        if kept.written.is_some_and(|at| at.elapsed() < every) {
            return false;
        }
        kept.written = Some(Instant::now());
        true
    }

    /// Records which objects are out of service at this look, and says for each how
    /// long it has been seen so (since the first look that saw it, in this process: a
    /// restart starts the count again, which only delays a pause).
    pub fn down_for(
        &self,
        run: &SyncRun,
        down: &[(ObjectRef, Standing)],
    ) -> HashMap<ObjectRef, Duration> {
        let mut runs = self.runs();
        let Some(kept) = runs.get_mut(&Self::key(run)) else {
            return HashMap::new();
        };
        let now = Instant::now();
        kept.down_since
            .retain(|r, _| down.iter().any(|(d, _)| d == r));
        down.iter()
            .map(|(r, _)| {
                let since = *kept.down_since.entry(r.clone()).or_insert(now);
                (r.clone(), now.duration_since(since))
            })
            .collect()
    }

    pub fn forget(&self, run: &SyncRun) {
        self.runs().remove(&Self::key(run));
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
        assert!(
            !written
                .iter()
                .any(|w| w.kind == plan.actions[0].kind && w.name == plan.actions[0].name)
        );
        assert!(written.iter().all(|w| w.digest.is_some()));
    }

    #[test]
    fn what_a_run_wrote_is_kept_for_that_run_only_until_forgotten() {
        let kept = Written::default();
        let mut run = crate::controller::fixtures::run_named("r1");
        run.metadata.uid = Some("u1".into());
        let a = WrittenObject {
            kind: ObjectKind::FleetNode,
            name: "a".into(),
            digest: None,
        };
        kept.keep(&run, vec![a]);
        assert!(kept.may_write(&run, Duration::from_secs(60)));
        assert!(
            !kept.may_write(&run, Duration::from_secs(60)),
            "not again so soon"
        );
        assert_eq!(kept.get(&run).map(|w| w.len()), Some(1));
        // The same name recreated is another run.
        let mut again = run.clone();
        again.metadata.uid = Some("u2".into());
        assert!(kept.get(&again).is_none());
        kept.forget(&run);
        assert!(kept.get(&run).is_none());
    }

    #[test]
    fn only_lost_service_counts_as_a_regression() {
        use ProviderReason::*;
        assert_eq!(
            lost_service(Health::Failed, Some(NodeFailed)),
            Some(Standing::Failed)
        );
        assert_eq!(
            lost_service(Health::InProgress, Some(LinkDown)),
            Some(Standing::Progressing)
        );
        assert_eq!(
            lost_service(Health::InProgress, Some(HolderNotAnswering)),
            Some(Standing::Progressing)
        );
        for passing in [Updating, Provisioning, WaitingForDependency] {
            assert_eq!(
                lost_service(Health::InProgress, Some(passing)),
                None,
                "{passing:?}"
            );
        }
        assert_eq!(lost_service(Health::Stale, None), None);
        assert_eq!(lost_service(Health::Ready, Some(Available)), None);
    }

    #[test]
    fn a_regression_is_what_was_fine_before_the_run_and_the_run_did_not_touch() {
        let node = |n: &str| ObjectRef::new(ObjectKind::FleetNode, n);
        let peer = |n: &str| ObjectRef::new(ObjectKind::SdwanPeer, n);
        let baseline = RunBaseline {
            at: crate::api::now(),
            unhealthy: vec!["fleetnode/was-bad".into()],
            complete: true,
        };
        let written = [WrittenObject {
            kind: ObjectKind::FleetNode,
            name: "mine".into(),
            digest: None,
        }];
        let now = [
            (node("was-bad"), Standing::Failed),
            (node("mine"), Standing::Failed),
            (node("accepted"), Standing::Failed),
            (node("broke"), Standing::Failed),
            (peer("net.flapping"), Standing::Progressing),
            (peer("net.down"), Standing::Progressing),
        ];
        let down_for = |r: &ObjectRef| match r.name.as_str() {
            "net.down" => Duration::from_secs(40),
            _ => Duration::from_secs(2),
        };
        let accepted = ["fleetnode/accepted".to_owned()];
        let grace = Duration::from_secs(30);
        let found = regressions_since(&now, &baseline, &written, &accepted, down_for, grace);
        assert_eq!(found, [node("broke"), peer("net.down")]);
        // Past its bound, the baseline cannot tell what was fine: nothing is judged.
        let incomplete = RunBaseline {
            complete: false,
            ..baseline
        };
        assert!(
            regressions_since(&now, &incomplete, &written, &accepted, down_for, grace).is_empty()
        );
    }

    #[test]
    fn how_long_an_object_is_down_counts_from_the_first_look_that_saw_it() {
        let kept = Written::default();
        let mut run = crate::controller::fixtures::run_named("r1");
        run.metadata.uid = Some("u1".into());
        kept.keep(&run, Vec::new());
        let a = ObjectRef::new(ObjectKind::SdwanPeer, "net.a");
        let down = [(a.clone(), Standing::Progressing)];
        assert_eq!(kept.down_for(&run, &down)[&a], Duration::ZERO);
        std::thread::sleep(Duration::from_millis(20));
        assert!(kept.down_for(&run, &down)[&a] >= Duration::from_millis(20));
        // Back in service, and down again: counted afresh.
        assert!(kept.down_for(&run, &[]).is_empty());
        assert!(kept.down_for(&run, &down)[&a] < Duration::from_millis(20));
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
