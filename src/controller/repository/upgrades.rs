//! Module upgrades a repository plans: when the module catalog moves a lifecycle pin its
//! last plan used, the same revision is planned again (trigger `Catalog`) for exactly
//! that upgrade, gated like any plan. What calls for it is decided in
//! `controller::catalog::replan`; this starts the run.

use kube::ResourceExt;

use super::{announce_run, create_run, sequence};
use crate::api::syncrun::Trigger;
use crate::api::{GitopsRepository, SyncRun, annotations, short_revision};
use crate::controller::catalog::Replan;
use crate::controller::catalog::replan;
use crate::controller::context::Context;
use crate::controller::error::Result;
use crate::controller::promotion::Promoted;
use crate::fleet::catalog::Catalog;

/// Starts a `Catalog` run of the repository's newest revision when the catalog moved a
/// pin its last plan used.
pub(super) async fn maybe_replan(
    ctx: &Context,
    repo: &GitopsRepository,
    runs: &mut Vec<SyncRun>,
    promoted: Option<&Promoted>,
) -> Result<()> {
    // Not waited for: until the catalogs are listed, nothing is judged (the next
    // reconcile looks again).
    let Some(catalog) = ctx.catalogs.listed() else {
        return Ok(());
    };
    let digest = catalog.as_ref().map(Catalog::digest);
    let Some(why) = replan(runs, catalog.as_ref(), digest.as_deref()) else {
        return Ok(());
    };
    let Some(base) = crate::controller::catalog::base(runs, digest.as_deref()) else {
        return Ok(());
    };
    // Under promotion an upgrade is promoted like a revision: planned here only once
    // the upstream applied and held exactly these versions of this revision.
    if let Some(promoted) = promoted
        && !proven_upstream(&why, promoted, &base.spec.revision)
    {
        return Ok(());
    }
    let revision = base.spec.revision.clone();
    let next = runs.first().map_or(1, |r| sequence(r) + 1);
    let marker = digest.unwrap_or_default();
    let created = create_run(
        ctx,
        repo,
        &revision,
        Trigger::Catalog,
        next,
        &[(annotations::CATALOG, &marker)],
    )
    .await?;
    let message = format!(
        "{}: started SyncRun {} to plan revision {} again",
        why.describe(),
        created.name_any(),
        short_revision(&revision)
    );
    announce_run(ctx, repo, &created, "Catalog", message).await;
    runs.insert(0, created);
    Ok(())
}

/// Whether the upstream's eligible run of `revision` applied the versions `why` moves to
/// (whatever lifecycle named them there: staging may pin `@live` where production pins
/// `@blessed`).
fn proven_upstream(why: &Replan, promoted: &Promoted, revision: &str) -> bool {
    if promoted.status.revision.as_deref() != Some(revision) {
        return false;
    }
    let Replan::Moved(moved) = why else {
        return false;
    };
    moved.iter().all(|(pin, now)| {
        promoted
            .proven_modules
            .iter()
            .any(|p| p.module == pin.module && p.version == *now)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::catalog::ModulePin;
    use crate::api::promotion::PromotionStatus;
    use crate::fleet::catalog::{Lifecycle, Resolution};

    fn moved_to(version: &str) -> Replan {
        let before = Resolution {
            module: "nginx".into(),
            lifecycle: Lifecycle::Blessed,
            version: Some("1.26.2".into()),
        };
        Replan::Moved(vec![(before, Some(version.into()))])
    }

    fn upstream_held(revision: &str, version: &str) -> Promoted {
        Promoted {
            revision: Some(revision.into()),
            status: PromotionStatus {
                revision: Some(revision.into()),
                ..Default::default()
            },
            recheck: None,
            proven_modules: vec![ModulePin {
                module: "nginx".into(),
                lifecycle: "blessed".into(),
                version: Some(version.into()),
            }],
        }
    }

    #[test]
    fn under_promotion_an_upgrade_waits_until_the_upstream_held_it() {
        let why = moved_to("1.27.0");
        assert!(!proven_upstream(&why, &upstream_held("r1", "1.26.2"), "r1"));
        let mut live = upstream_held("r1", "1.27.0");
        live.proven_modules[0].lifecycle = "live".into();
        assert!(proven_upstream(&why, &live, "r1"));
        assert!(proven_upstream(&why, &upstream_held("r1", "1.27.0"), "r1"));
        // Held on another revision than the one planned here: not this upgrade.
        assert!(!proven_upstream(&why, &upstream_held("r2", "1.27.0"), "r1"));
        assert!(!proven_upstream(
            &Replan::Unresolved,
            &upstream_held("r1", "1.27.0"),
            "r1"
        ));
    }
}
