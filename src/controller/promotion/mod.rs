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
}

/// Reasons on `status.promotion.reason`.
pub mod reasons {
    pub const PROMOTED: &str = "Promoted";
    pub const WAITING: &str = "Waiting";
    pub const NOTHING_ELIGIBLE: &str = "NothingEligible";
    pub const NOT_GRANTED: &str = "NotGranted";
}

/// The promotion of `repo`, when it names an upstream.
pub async fn judge(ctx: &Context, repo: &GitopsRepository) -> Result<Option<Promoted>> {
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
    let refused = |message: String| Promoted {
        revision: None,
        status: PromotionStatus {
            from: from.clone(),
            reason: reasons::NOT_GRANTED.into(),
            revision: None,
            message,
        },
        recheck: None,
    };
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
    let selector = format!("{REPOSITORY_LABEL}={name}");
    let runs = read(
        Api::<SyncRun>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default().labels(&selector))
            .await,
    )?
    .map(|l| l.items)
    .unwrap_or_default();
    let now = crate::api::now().0.as_second();
    let judged = eligibility::judge(&evidence(runs), drift_of(&upstream), now, required);
    Ok(Some(promoted(&from, judged, required)))
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
fn evidence(mut runs: Vec<SyncRun>) -> Vec<UpstreamRun> {
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
