//! Promotion between environments: which revision a repository with `spec.promotion`
//! may plan, read from its upstream's runs and drift (`eligibility` judges; this reads).
//!
//! Another namespace's repository is read only where a PromotionGrant there allows this
//! repository's namespace; a missing grant and a missing upstream read the same, so no
//! tenant learns what another namespace holds without its leave.

pub mod eligibility;

use std::time::Duration;

use kube::api::{Api, ListParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use self::eligibility::{Drift, Eligibility, Holdup, UpstreamRun, human};
use super::context::Context;
use super::error::{Result, parse_duration};
use crate::api::promotion::{Promotion, PromotionStatus};
use crate::api::syncrun::SyncRun;
use crate::api::{GitopsRepository, PromotionGrant, REPOSITORY_LABEL, condition, short_revision};

/// What promotion decides for a repository now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    /// The revision to plan: the newest eligible one, unless that is behind what the
    /// repository already applied; None while nothing is to be planned (the repository
    /// then holds where it is: a rollback still starts, a sync is refused).
    pub revision: Option<String>,
    /// What the repository's status says of it.
    pub status: PromotionStatus,
    /// When to look again (a revision's hold ends then).
    pub recheck: Option<Duration>,
    /// The module versions the upstream's run of the eligible revision applied: a
    /// catalog upgrade plans here only once the upstream has held exactly these.
    pub proven_modules: Vec<crate::api::catalog::ModulePin>,
}

/// Reasons on `status.promotion.reason`.
pub mod reasons {
    pub const PROMOTED: &str = "Promoted";
    pub const WAITING: &str = "Waiting";
    pub const NOTHING_ELIGIBLE: &str = "NothingEligible";
    pub const NOT_GRANTED: &str = "NotGranted";
    pub const SOURCE_MISMATCH: &str = "SourceMismatch";
}

/// The promotion of `repo`, when it names an upstream, judged against its own runs
/// (`downstream`, newest first): promotion only moves forward from the newest revision
/// the repository wrote.
pub async fn judge(
    ctx: &Context,
    repo: &GitopsRepository,
    downstream: &[SyncRun],
) -> Result<Option<Promoted>> {
    let Some(promotion) = &repo.spec.promotion else {
        return Ok(None);
    };
    let required = parse_duration(
        "spec.promotion.requireHealthyFor",
        &promotion.require_healthy_for,
    )?;
    let own = repo.namespace().unwrap_or_default();
    let (ns, name) = upstream_of(promotion, &own);
    let from = format!("{ns}/{name}");
    let refused_for = |reason: &str, message: String| Promoted {
        revision: None,
        status: PromotionStatus {
            from: from.clone(),
            reason: reason.into(),
            revision: None,
            message,
        },
        recheck: None,
        proven_modules: Vec::new(),
    };
    let refused = |message: String| refused_for(reasons::NOT_GRANTED, message);
    if ns == own && name == repo.name_any() {
        return Ok(Some(refused(
            "a repository cannot promote from itself".into(),
        )));
    }
    let not_granted = || {
        refused(format!(
            "no GitopsRepository {from} that namespace {ns} lets namespace {own} promote from (a PromotionGrant in {ns} must list it)"
        ))
    };
    if ns != own && !granted(ctx, &ns, &own, &name).await? {
        return Ok(Some(not_granted()));
    }
    let Some(upstream) = read(
        Api::<GitopsRepository>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&name)
            .await,
    )?
    .flatten() else {
        return Ok(Some(not_granted()));
    };
    // Revisions are compared by commit: only meaningful over the same source. A Flux
    // source is named within its own namespace, so across namespaces only git URLs
    // can be compared.
    let flux_across = ns != own && repo.spec.source_ref.is_some();
    let same_source =
        (&upstream.spec.url, &upstream.spec.source_ref) == (&repo.spec.url, &repo.spec.source_ref);
    if flux_across || !same_source {
        return Ok(Some(refused_for(
            reasons::SOURCE_MISMATCH,
            format!(
                "{from} tracks another source; promotion needs both to track the same git repository (or Flux source)"
            ),
        )));
    }
    let selector = format!("{REPOSITORY_LABEL}={name}");
    let runs = read(
        Api::<SyncRun>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default().labels(&selector))
            .await,
    )?
    .map(|l| l.items)
    .unwrap_or_default();
    let now = crate::api::now().0.as_second();
    let (upstream_runs, ordered) = evidence(&runs);
    let judged = eligibility::judge(&upstream_runs, drift_of(&upstream), now, required);
    // The versions proven are those of the very run whose hold made the revision
    // eligible, not of a newer run of it still soaking.
    let proven = judged
        .eligible_run
        .and_then(|i| ordered.get(i))
        .and_then(|r| r.status.as_ref())
        .map(|s| s.modules.clone())
        .unwrap_or_default();
    let mut promoted = promoted(&from, judged, required);
    promoted.proven_modules = proven;
    hold_forward(
        &mut promoted,
        &eligibility::history(&upstream_runs),
        downstream,
    );
    Ok(Some(promoted))
}

/// Promotion never goes back. The repository's current revision is the newest one its
/// runs from git wrote; an eligible revision older than it (in the upstream's history
/// of written revisions, or planned here before it) is not planned, and the repository
/// holds where it is.
fn hold_forward(promoted: &mut Promoted, upstream_history: &[&str], downstream: &[SyncRun]) {
    let from_git = |r: &&SyncRun| eligibility::from_git(r.spec.trigger);
    let wrote = |r: &SyncRun| {
        r.status
            .as_ref()
            .is_some_and(|s| s.wrote_any() || s.wrote_plan())
    };
    let Some(at) = downstream.iter().position(|r| from_git(&r) && wrote(r)) else {
        return;
    };
    let current = downstream[at].spec.revision.as_str();
    let Some(eligible) = promoted.revision.as_deref() else {
        return;
    };
    let age = |revision: &str| upstream_history.iter().position(|r| *r == revision);
    let behind_upstream = matches!((age(eligible), age(current)), (Some(e), Some(c)) if e > c);
    let planned_before = eligible != current
        && downstream[at + 1..]
            .iter()
            .filter(from_git)
            .any(|r| r.spec.revision == eligible);
    if behind_upstream || planned_before {
        promoted.revision = None;
    }
}

/// The upstream's namespace and name.
fn upstream_of(promotion: &Promotion, own: &str) -> (String, String) {
    let ns = promotion
        .from
        .namespace
        .clone()
        .unwrap_or_else(|| own.to_owned());
    (ns, promotion.from.name.clone())
}

/// A read the controller may not be allowed (the upstream's namespace is not among the
/// ones it watches): None, told as a missing grant, never as an error that retries hot.
fn read<T>(result: std::result::Result<T, kube::Error>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(kube::Error::Api(s)) if s.code == 403 || s.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a PromotionGrant in `ns` lets repositories of `downstream` promote from
/// `upstream`.
async fn granted(ctx: &Context, ns: &str, downstream: &str, upstream: &str) -> Result<bool> {
    let grants = read(
        Api::<PromotionGrant>::namespaced(ctx.client.clone(), ns)
            .list(&ListParams::default())
            .await,
    )?;
    Ok(grants.is_some_and(|g| g.items.iter().any(|g| g.spec.allows(downstream, upstream))))
}

/// The upstream's runs as eligibility reads them, newest first.
fn evidence(runs: &[SyncRun]) -> (Vec<UpstreamRun>, Vec<&SyncRun>) {
    let mut runs: Vec<&SyncRun> = runs.iter().collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.sequence()));
    let evidence = runs
        .iter()
        .map(|r| {
            let status = r.status.clone().unwrap_or_default();
            let at = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
                t.as_ref().map(|t| t.0.as_second())
            };
            UpstreamRun {
                revision: r.spec.revision.clone(),
                trigger: r.spec.trigger,
                phase: status.phase,
                wrote: status.wrote_any() || status.wrote_plan(),
                whole: status.wrote_plan() && status.excluded.is_empty(),
                written_at: at(&status.approved_at),
                completed_at: at(&status.completed_at),
                created_at: at(&r.meta().creation_timestamp).unwrap_or_default(),
            }
        })
        .collect();
    (evidence, runs)
}

/// The upstream's Drifted condition, if it has one.
fn drift_of(upstream: &GitopsRepository) -> Option<Drift> {
    let status = upstream.status.as_ref()?;
    let c = condition(&status.conditions, "Drifted")?;
    Some(Drift {
        drifted: c.status == "True",
        since: c.last_transition_time.0.as_second(),
    })
}

/// The status and the revision to plan, in words people read.
fn promoted(from: &str, judged: Eligibility, required: Duration) -> Promoted {
    let waiting = judged.newer.as_ref().map(|(revision, holdup)| {
        let short = short_revision(revision);
        match holdup {
            Holdup::Soaking { applied_ago, held } => format!(
                "waiting for {from}: revision {short} applied {} ago, healthy {} of {}",
                human(*applied_ago),
                human(*held),
                human(required)
            ),
            Holdup::DriftedNow => format!(
                "waiting for {from}: revision {short} has drifted there; the hold counts again once it is corrected"
            ),
            Holdup::Drifted => format!(
                "revision {short} drifted in {from} and is never promoted; a newer revision must hold there"
            ),
            Holdup::RolledBack => format!(
                "revision {short} was rolled back in {from} and is never promoted; a newer revision must hold there"
            ),
        }
    });
    let recheck = match &judged.newer {
        Some((_, Holdup::Soaking { held, .. })) => {
            Some(required.saturating_sub(*held) + Duration::from_secs(1))
        }
        _ => None,
    };
    let (reason, message) = match (&judged.eligible, waiting) {
        (Some((revision, held)), waiting) => {
            let promoted = format!(
                "revision {} held in {from} for {}",
                short_revision(revision),
                human(*held)
            );
            let message = match waiting {
                Some(w) => format!("{promoted}; {w}"),
                None => promoted,
            };
            (reasons::PROMOTED, message)
        }
        (None, Some(w)) => (reasons::WAITING, w),
        (None, None) => (
            reasons::NOTHING_ELIGIBLE,
            format!("{from} has applied no revision from git yet"),
        ),
    };
    Promoted {
        revision: judged.eligible.as_ref().map(|(r, _)| r.clone()),
        status: PromotionStatus {
            from: from.to_owned(),
            reason: reason.into(),
            revision: judged.eligible.map(|(r, _)| r),
            message,
        },
        recheck,
        proven_modules: Vec::new(),
    }
}

/// A sync asked for while promotion has nothing eligible starts nothing: said so.
pub async fn refuse_sync(
    ctx: &Context,
    repo: &GitopsRepository,
    sync: Option<&str>,
    promoted: &Option<Promoted>,
) {
    let (Some(_), Some(p)) = (sync, promoted) else {
        return;
    };
    let message = format!(
        "sync refused: nothing is eligible for promotion yet ({})",
        p.status.message
    );
    ctx.event(
        &repo.object_ref(&()),
        EventType::Warning,
        "SyncRefused",
        "Sync",
        message,
    )
    .await;
}

/// Tells, on the repository, that promotion made another revision eligible.
pub async fn announce(
    ctx: &Context,
    repo: &GitopsRepository,
    before: Option<&crate::api::promotion::PromotionStatus>,
    now: &Promoted,
) {
    // Told when the eligible revision changes, from what status said before.
    let Some(revision) = now.status.revision.as_ref() else {
        return;
    };
    if now.status.reason != reasons::PROMOTED
        || before.and_then(|b| b.revision.as_ref()) == Some(revision)
    {
        return;
    }
    ctx.event(
        &repo.object_ref(&()),
        EventType::Normal,
        "Promoted",
        "Promote",
        now.status.message.clone(),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A downstream run of `revision`, newest first in the lists below.
    fn downstream(revision: &str, phase: crate::api::syncrun::Phase) -> SyncRun {
        let mut run = crate::controller::fixtures::run_named(revision);
        run.spec.revision = revision.into();
        run.status = Some(crate::api::syncrun::SyncRunStatus {
            phase: Some(phase),
            action_states: (phase == crate::api::syncrun::Phase::Applied).then(|| "A".into()),
            ..Default::default()
        });
        run
    }

    #[test]
    fn promotion_never_goes_back_from_what_was_applied() {
        use crate::api::syncrun::Phase::{Applied, AwaitingApproval, Rejected};
        let upstream = ["r3", "r2", "r1"];
        let eligible = |revision: Option<&str>| Promoted {
            revision: revision.map(Into::into),
            status: PromotionStatus::default(),
            recheck: None,
            proven_modules: Vec::new(),
        };
        let held = |revision: Option<&str>, here: &[SyncRun]| {
            let mut p = eligible(revision);
            hold_forward(&mut p, &upstream, here);
            p.revision
        };
        let applied_r2 = [downstream("r2", Applied), downstream("r1", Applied)];
        // r2 drifted upstream after it applied here: r1 is eligible again, and is not
        // planned; r2 stays.
        assert_eq!(held(Some("r1"), &applied_r2), None);
        assert_eq!(held(Some("r2"), &applied_r2).as_deref(), Some("r2"));
        assert_eq!(held(Some("r3"), &applied_r2).as_deref(), Some("r3"));
        // What waits for approval or was rejected here is not what the repository has:
        // r1 applied, r2 waiting: the eligible r1 is planned (and r2's plan gives way).
        let waiting = [
            downstream("r2", AwaitingApproval),
            downstream("r1", Applied),
        ];
        assert_eq!(held(Some("r1"), &waiting).as_deref(), Some("r1"));
        let rejected = [downstream("r2", Rejected), downstream("r1", Applied)];
        assert_eq!(held(Some("r2"), &rejected).as_deref(), Some("r2"));
        // A revision the upstream no longer lists, but planned here before the current
        // one, is behind too.
        let pruned = [downstream("r9", Applied), downstream("r0", Applied)];
        assert_eq!(held(Some("r0"), &pruned), None);
        // Nothing applied here yet: the eligible revision.
        assert_eq!(held(Some("r1"), &[]).as_deref(), Some("r1"));
    }

    #[test]
    fn the_status_says_what_promotion_waits_for() {
        let soaking = Eligibility {
            eligible: None,
            eligible_run: None,
            newer: Some((
                "3f9a2c1d7e0b44".into(),
                Holdup::Soaking {
                    applied_ago: Duration::from_secs(1200),
                    held: Duration::from_secs(1200),
                },
            )),
        };
        let p = promoted("staging/fleet", soaking, Duration::from_secs(3600));
        assert_eq!(p.revision, None);
        assert_eq!(p.status.reason, "Waiting");
        assert_eq!(
            p.status.message,
            "waiting for staging/fleet: revision 3f9a2c1d7e0b applied 20m ago, healthy 20m of 1h"
        );
        assert_eq!(p.recheck, Some(Duration::from_secs(2401)));
        let both = Eligibility {
            eligible: Some(("aaaaaaaaaaaa11".into(), Duration::from_secs(7200))),
            eligible_run: Some(1),
            newer: Some(("bbbbbbbbbbbb22".into(), Holdup::Drifted)),
        };
        let p = promoted("staging/fleet", both, Duration::from_secs(3600));
        assert_eq!(p.revision.as_deref(), Some("aaaaaaaaaaaa11"));
        assert_eq!(
            p.status.message,
            "revision aaaaaaaaaaaa held in staging/fleet for 2h; revision bbbbbbbbbbbb drifted in staging/fleet and is never promoted; a newer revision must hold there"
        );
    }
}
