//! Module upgrades a repository plans: when the module catalog moves a lifecycle pin its
//! last plan used, the same revision is planned again (trigger `Catalog`) for exactly
//! that upgrade, gated like any plan. What calls for it is decided in
//! `controller::catalog::replan`; this starts the run.

use kube::ResourceExt;

use super::{announce_run, create_run, sequence};
use crate::api::syncrun::Trigger;
use crate::api::{GitopsRepository, SyncRun, annotations, short_revision};
use crate::controller::catalog::replan;
use crate::controller::context::Context;
use crate::controller::error::Result;
use crate::fleet::catalog::Catalog;

/// Starts a `Catalog` run of the repository's newest revision when the catalog moved a
/// pin its last plan used.
pub(super) async fn maybe_replan(
    ctx: &Context,
    repo: &GitopsRepository,
    runs: &mut Vec<SyncRun>,
) -> Result<()> {
    let catalog = ctx.catalogs.current().await?;
    let digest = catalog.as_ref().map(Catalog::digest);
    let Some(why) = replan(runs, catalog.as_ref(), digest.as_deref()) else {
        return Ok(());
    };
    let Some(base) = runs
        .iter()
        .find(|r| !matches!(r.spec.trigger, Trigger::Drift | Trigger::Deletion))
    else {
        return Ok(());
    };
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
