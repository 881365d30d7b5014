//! The module catalog as the controller sees it: one watch of every ModuleCatalog feeds a
//! cache that planning resolves lifecycle pins against, and each change of what the
//! catalogs say prompts every repository to ask whether a pin it uses moved (a new
//! blessed or live version). If one did, the repository plans the same revision again
//! for exactly that upgrade (trigger `Catalog`), gated like any plan.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use super::error::{Error, Result};
use crate::api::catalog::{ModuleCatalog, merged};
use crate::api::syncrun::{Phase, SyncRunStatus, Trigger};
use crate::api::{SyncRun, annotations};
use crate::fleet::catalog::{self, Catalog, Resolution};

/// What every ModuleCatalog says, kept current by one watch.
#[derive(Clone)]
pub struct Catalogs {
    store: Store<ModuleCatalog>,
    /// Once the watch has listed: the digest of what the catalogs say (None: there are
    /// none). Changed only when that changes, not on a resync, a label or a status write.
    said: watch::Receiver<Option<Option<String>>>,
}

impl Catalogs {
    /// Starts the watch of the catalogs `selector` picks (all when None); it runs as
    /// long as the process.
    pub fn start(client: &Client, selector: Option<&str>) -> Self {
        let (reader, writer) = reflector::store();
        let (tell, said) = watch::channel(None);
        let store = reader.clone();
        let config = match selector {
            Some(selector) => watcher::Config::default().labels(selector),
            None => watcher::Config::default(),
        };
        let events = watcher(Api::<ModuleCatalog>::all(client.clone()), config)
            .default_backoff()
            .reflect(writer);
        tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            let mut listed = false;
            while let Some(event) = events.next().await {
                match event {
                    Err(e) => {
                        tracing::warn!(error = %e, "watching ModuleCatalogs failed; retrying");
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => listed = true,
                    Ok(_) => {}
                }
                if listed {
                    let now = Some(Self::read(&store).map(|c| c.digest()));
                    tell.send_if_modified(|known| {
                        let changed = *known != now;
                        *known = now;
                        changed
                    });
                }
            }
        });
        Self {
            store: reader,
            said,
        }
    }

    fn read(store: &Store<ModuleCatalog>) -> Option<Catalog> {
        let catalogs = store.state();
        merged(catalogs.iter().map(Arc::as_ref))
    }

    /// What the catalogs say now, once the watch has listed them; None when there are
    /// none. Planning before the first list would resolve pins against nothing and plan
    /// an upgrade the moment the list arrived.
    pub async fn current(&self) -> Result<Option<Catalog>> {
        let mut said = self.said.clone();
        let not_ready = || Error::CacheNotReady("ModuleCatalog".into());
        tokio::time::timeout(Duration::from_secs(30), said.wait_for(Option::is_some))
            .await
            .map_err(|_| not_ready())?
            .map_err(|_| not_ready())?;
        Ok(Self::read(&self.store))
    }

    /// What the catalogs say, without waiting: None until the watch has listed them.
    pub fn listed(&self) -> Option<Option<Catalog>> {
        let listed = self.said.borrow().is_some();
        listed.then(|| Self::read(&self.store))
    }

    /// One item each time what the catalogs say changes: prompts every repository.
    pub fn changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.said.clone(), |mut said| async move {
            said.changed().await.ok()?;
            Some(((), said))
        })
    }
}

/// Why a repository plans its revision again for the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replan {
    /// Pins its last plan resolved now resolve to other versions: each pin as resolved
    /// then, and its version now.
    Moved(Vec<(Resolution, Option<String>)>),
    /// Its last plan failed on a pin the catalog could not resolve, and the catalog
    /// changed since.
    Unresolved,
}

impl Replan {
    /// What changed, for an event and the run's message.
    pub fn describe(&self) -> String {
        match self {
            Replan::Unresolved => {
                "the module catalog changed since a pin could not be resolved".into()
            }
            Replan::Moved(moved) => {
                let each: Vec<String> = moved
                    .iter()
                    .map(|(before, now)| {
                        let was = before.version.as_deref().unwrap_or("unresolved");
                        let now = now.as_deref().unwrap_or("unresolved");
                        format!(
                            "{}@{} {was} → {now}",
                            before.module,
                            before.lifecycle.as_str()
                        )
                    })
                    .collect();
                format!("the module catalog moved {}", each.join(", "))
            }
        }
    }
}

/// Whether the catalog (`digest` of `catalog`) calls for planning again, judged from the
/// repository's runs (newest first): from its newest run that is not a drift correction
/// or a deletion. A rollback holds its content until a new revision; a run already
/// started for this very catalog is not started twice (its plan may have failed).
pub fn replan(runs: &[SyncRun], catalog: Option<&Catalog>, digest: Option<&str>) -> Option<Replan> {
    let base = base(runs, digest)?;
    if base.spec.trigger == Trigger::Rollback
        || base
            .annotations()
            .get(annotations::CATALOG)
            .map(String::as_str)
            == Some(digest.unwrap_or(""))
    {
        return None;
    }
    let status: &SyncRunStatus = base.status.as_ref()?;
    match status.phase? {
        Phase::Failed if failed_unresolved(status) => {
            (status.module_catalog.as_deref() != digest).then_some(Replan::Unresolved)
        }
        // Still being planned, or ended without anyone wanting it: people rejected it,
        // it failed otherwise, or a newer run replaced it. No upgrade proposes it again.
        Phase::Planning | Phase::Rejected | Phase::Failed | Phase::Superseded | Phase::Expired => {
            None
        }
        _ => {
            let before: Vec<Resolution> = status
                .modules
                .iter()
                .filter_map(|p| p.resolution())
                .collect();
            let moved = catalog::changed(&before, catalog);
            (!moved.is_empty()).then_some(Replan::Moved(moved))
        }
    }
}

/// The run a catalog change is judged from: the newest that is not a drift correction
/// or a deletion, looking past upgrades for an earlier catalog that people rejected or
/// that failed (a rejected 1.27 does not keep 1.28 from being proposed).
pub fn base<'r>(runs: &'r [SyncRun], digest: Option<&str>) -> Option<&'r SyncRun> {
    runs.iter()
        .filter(|r| !matches!(r.spec.trigger, Trigger::Drift | Trigger::Deletion))
        .find(|r| {
            let earlier_upgrade = r.spec.trigger == Trigger::Catalog
                && r.annotations()
                    .get(annotations::CATALOG)
                    .map(String::as_str)
                    != Some(digest.unwrap_or(""))
                && matches!(
                    r.phase(),
                    Some(Phase::Rejected | Phase::Failed | Phase::Superseded | Phase::Expired)
                );
            !earlier_upgrade
        })
}

fn failed_unresolved(status: &SyncRunStatus) -> bool {
    crate::api::condition(&status.conditions, "Ready")
        .is_some_and(|c| c.reason == catalog::UNRESOLVED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::catalog::ModulePin;
    use crate::controller::fixtures::run_named;
    use crate::fleet::catalog::CatalogEntry;

    fn pin(module: &str, lifecycle: &str, version: Option<&str>) -> ModulePin {
        ModulePin {
            module: module.into(),
            lifecycle: lifecycle.into(),
            version: version.map(Into::into),
        }
    }

    fn planned(name: &str, trigger: Trigger, phase: Phase, pins: Vec<ModulePin>) -> SyncRun {
        let mut run = run_named(name);
        run.spec.trigger = trigger;
        run.status = Some(SyncRunStatus {
            phase: Some(phase),
            modules: pins,
            ..Default::default()
        });
        run
    }

    fn blessing(version: &str) -> Catalog {
        let mut c = Catalog::default();
        c.insert(
            "nginx",
            CatalogEntry {
                catalog: "platform".into(),
                blessed: Some(version.into()),
                live: None,
            },
        );
        c
    }

    #[test]
    fn a_new_blessing_replans_a_repository_that_pins_it_and_only_once() {
        let applied = planned(
            "r1",
            Trigger::Schedule,
            Phase::Applied,
            vec![pin("nginx", "blessed", Some("1.26.2"))],
        );
        let same = blessing("1.26.2");
        assert_eq!(
            replan(
                std::slice::from_ref(&applied),
                Some(&same),
                Some(&same.digest())
            ),
            None
        );
        let new = blessing("1.27.0");
        let digest = new.digest();
        let why = replan(std::slice::from_ref(&applied), Some(&new), Some(&digest)).unwrap();
        assert_eq!(
            why.describe(),
            "the module catalog moved nginx@blessed 1.26.2 → 1.27.0"
        );
        // Started for this catalog: not again, whatever became of it.
        let mut started = planned("r2", Trigger::Catalog, Phase::Failed, vec![]);
        started
            .annotations_mut()
            .insert(annotations::CATALOG.into(), digest.clone());
        assert_eq!(
            replan(&[started, applied.clone()], Some(&new), Some(&digest)),
            None
        );
        // A drift correction in front changes nothing; a rollback holds.
        let drift = planned("r3", Trigger::Drift, Phase::AwaitingApproval, vec![]);
        assert!(replan(&[drift, applied.clone()], Some(&new), Some(&digest)).is_some());
        let rollback = planned("r4", Trigger::Rollback, Phase::Applied, vec![]);
        assert_eq!(
            replan(&[rollback, applied], Some(&new), Some(&digest)),
            None
        );
    }

    #[test]
    fn a_revision_people_rejected_or_that_was_replaced_is_not_proposed_again() {
        let new = blessing("1.27.0");
        for phase in [
            Phase::Rejected,
            Phase::Superseded,
            Phase::Expired,
            Phase::Failed,
        ] {
            let base = planned(
                "r1",
                Trigger::Schedule,
                phase,
                vec![pin("nginx", "blessed", Some("1.26.2"))],
            );
            assert_eq!(
                replan(&[base], Some(&new), Some(&new.digest())),
                None,
                "{phase:?}"
            );
        }
    }

    #[test]
    fn a_rejected_upgrade_does_not_hold_back_the_next_one() {
        let applied = planned(
            "r1",
            Trigger::Schedule,
            Phase::Applied,
            vec![pin("nginx", "blessed", Some("1.26.2"))],
        );
        let mut rejected = planned("r2", Trigger::Catalog, Phase::Rejected, vec![]);
        rejected
            .annotations_mut()
            .insert(annotations::CATALOG.into(), blessing("1.27.0").digest());
        let next = blessing("1.28.0");
        let why = replan(
            &[rejected.clone(), applied.clone()],
            Some(&next),
            Some(&next.digest()),
        );
        assert!(why.is_some());
        // The same catalog it was made for: not proposed again.
        let same = blessing("1.27.0");
        assert_eq!(
            replan(&[rejected, applied], Some(&same), Some(&same.digest())),
            None
        );
    }

    #[test]
    fn a_repository_pinning_a_version_is_never_replanned() {
        let exact = planned("r1", Trigger::Schedule, Phase::Applied, vec![]);
        let new = blessing("1.27.0");
        assert_eq!(replan(&[exact], Some(&new), Some(&new.digest())), None);
    }

    #[test]
    fn a_plan_that_failed_on_the_catalog_is_tried_again_when_it_changes() {
        let mut failed = planned("r1", Trigger::Schedule, Phase::Failed, vec![]);
        let status = failed.status.as_mut().unwrap();
        status.module_catalog = Some(blessing("1.26.2").digest());
        crate::api::set_condition(
            &mut status.conditions,
            "Ready",
            false,
            "ModuleUnresolved",
            "no live version",
            None,
            &crate::api::now(),
        );
        let old = blessing("1.26.2");
        assert_eq!(
            replan(
                std::slice::from_ref(&failed),
                Some(&old),
                Some(&old.digest())
            ),
            None
        );
        let new = blessing("1.27.0");
        assert_eq!(
            replan(&[failed], Some(&new), Some(&new.digest())),
            Some(Replan::Unresolved)
        );
    }
}
