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
    /// The revision to plan: the newest eligible one; None while nothing is.
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

/// The promotion of `repo`, when it names an upstream. `current` is the revision the
/// repository's newest run from git planned: promotion only ever moves forward from it,
/// and holds there while nothing newer is eligible (a rollback or a sync still work).
pub async fn judge(
    ctx: &Context,
    repo: &GitopsRepository,
    current: Option<&str>,
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
        revision: current.map(str::to_owned),
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
    // Revisions are compared by commit: only meaningful over the same source.
    if (&upstream.spec.url, &upstream.spec.source_ref) != (&repo.spec.url, &repo.spec.source_ref) {
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
    let upstream_runs = evidence(&runs);
    let judged = eligibility::judge(&upstream_runs, drift_of(&upstream), now, required);
    let mut promoted = promoted(&from, judged, required);
    promoted.proven_modules = proven_modules(&runs, promoted.revision.as_deref());
    hold_forward(&mut promoted, &upstream_runs, current);
    Ok(Some(promoted))
}

/// Promotion never goes back: when the upstream's newest eligible revision is older (in
/// the upstream's history) than the one this repository already planned, or nothing is
/// eligible, the repository stays where it is.
fn hold_forward(promoted: &mut Promoted, upstream: &[UpstreamRun], current: Option<&str>) {
    let Some(current) = current else {
        return;
    };
    let age = |revision: &str| upstream.iter().position(|r| r.revision == revision);
    let older = match (&promoted.revision, age(current)) {
        (None, _) => true,
        (Some(eligible), Some(current_age)) => age(eligible).is_none_or(|a| a > current_age),
        (Some(_), None) => false,
    };
    if older {
        promoted.revision = Some(current.to_owned());
    }
}

/// The module pins the upstream's newest whole applied run of `revision` recorded.
fn proven_modules(runs: &[SyncRun], revision: Option<&str>) -> Vec<crate::api::catalog::ModulePin> {
    let Some(revision) = revision else {
        return Vec::new();
    };
    let mut applied: Vec<&SyncRun> = runs
        .iter()
        .filter(|r| {
            r.spec.revision == revision && r.phase() == Some(crate::api::syncrun::Phase::Applied)
        })
        .collect();
    applied.sort_by_key(|r| std::cmp::Reverse(r.sequence()));
    applied
        .first()
        .and_then(|r| r.status.as_ref())
        .map(|s| s.modules.clone())
        .unwrap_or_default()
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
fn evidence(runs: &[SyncRun]) -> Vec<UpstreamRun> {
    let mut runs: Vec<&SyncRun> = runs.iter().collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.sequence()));
    runs.iter()
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
                rolled_back_from: r
                    .annotations()
                    .get(crate::api::annotations::ROLLBACK_FROM)
                    .cloned(),
                written_at: at(&status.approved_at),
                completed_at: at(&status.completed_at),
                created_at: at(&r.meta().creation_timestamp).unwrap_or_default(),
            }
        })
        .collect()
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
    let Some(revision) = &now.revision else {
        return;
    };
    if before.and_then(|b| b.revision.as_ref()) == Some(revision) {
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

    #[test]
    fn promotion_never_goes_back_from_what_was_planned() {
        let upstream: Vec<UpstreamRun> = ["r3", "r2", "r1"]
            .iter()
            .map(|r| UpstreamRun {
                revision: (*r).into(),
                trigger: crate::api::syncrun::Trigger::Schedule,
                phase: Some(crate::api::syncrun::Phase::Applied),
                wrote: true,
                whole: true,
                rolled_back_from: None,
                written_at: None,
                completed_at: None,
                created_at: 0,
            })
            .collect();
        let eligible = |revision: Option<&str>| Promoted {
            revision: revision.map(Into::into),
            status: PromotionStatus::default(),
            recheck: None,
            proven_modules: Vec::new(),
        };
        // r2 drifted upstream after it was planned here: r1 is eligible, r2 is kept.
        let mut p = eligible(Some("r1"));
        hold_forward(&mut p, &upstream, Some("r2"));
        assert_eq!(p.revision.as_deref(), Some("r2"));
        // Nothing eligible: where it is (a rollback or a sync still have a revision).
        let mut p = eligible(None);
        hold_forward(&mut p, &upstream, Some("r2"));
        assert_eq!(p.revision.as_deref(), Some("r2"));
        // Forward is forward; a revision the upstream no longer lists is left behind.
        let mut p = eligible(Some("r3"));
        hold_forward(&mut p, &upstream, Some("r2"));
        assert_eq!(p.revision.as_deref(), Some("r3"));
        let mut p = eligible(Some("r1"));
        hold_forward(&mut p, &upstream, Some("r0"));
        assert_eq!(p.revision.as_deref(), Some("r1"));
        // Nothing planned yet: nothing to hold.
        let mut p = eligible(None);
        hold_forward(&mut p, &upstream, None);
        assert_eq!(p.revision, None);
    }

    #[test]
    fn the_status_says_what_promotion_waits_for() {
        let soaking = Eligibility {
            eligible: None,
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
