//! What prompts a repository's reconcile: a change to it that is not a status write, a
//! change to one of its SyncRuns, a change to an object it manages (possible drift), and
//! the interval it asks for. Its deletion drops what the controller keeps for it.

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use kube::Client;
use kube::Resource;
use kube::ResourceExt;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates, watcher};
use tokio::sync::mpsc;

use super::super::context::Context;
use super::super::{live, scoped};
use crate::api::{GitopsRepository, REPOSITORY_LABEL, SyncRun};

/// Repositories deleted, as their watch saw them go.
pub struct Deletions(mpsc::UnboundedReceiver<ObjectRef<GitopsRepository>>);

impl Deletions {
    /// Drops the caches of each deleted repository, for as long as the watch runs.
    pub async fn forget_each(mut self, ctx: Arc<Context>) {
        while let Some(deleted) = self.0.recv().await {
            let ns = deleted.namespace.as_deref().unwrap_or_default();
            ctx.forget_repository(ns, &deleted.name).await;
        }
    }
}

/// The GitopsRepository controller of one scope (`ns`, or all namespaces) and shard.
///
/// The controller's own status writes do not prompt another reconcile: at a thousand
/// repositories that second reconcile per interval, queued behind the others, ran after
/// the interval had passed and asked git again, which wrote status again. What people
/// change (spec, labels, annotations such as a sync request, finalizers, deletion)
/// still does, as do the runs' changes and the requeue each reconcile asks for.
pub fn controller(
    client: &Client,
    ns: Option<&str>,
    shard: &watcher::Config,
) -> (Controller<GitopsRepository>, Deletions) {
    let (reader, writer) = reflector::store();
    let (deleted, deletions) = mpsc::unbounded_channel();
    let mut known = Known::default();
    // Backoff, as the kube-runtime Controller gives its own watches: without it a refused
    // list (RBAC removed) is retried in a hot loop.
    let changes = watcher(scoped::<GitopsRepository>(client, ns), shard.clone())
        .default_backoff()
        .reflect(writer)
        .inspect_ok(move |event| {
            for repo in known.gone(event) {
                // The receiver lives as long as the controller; a send can only fail
                // while the process stops.
                let _ = deleted.send(repo);
            }
        })
        .applied_objects()
        .predicate_filter(not_status, Default::default());
    let changes = live::without_errors(changes);
    let controller =
        Controller::for_stream(changes, reader).owns(scoped::<SyncRun>(client, ns), shard.clone());
    (controller, Deletions(deletions))
}

/// The repositories the watch has shown. A repository deleted while the watch
/// reconnected with a fresh list (its resourceVersion too old) gets no Delete event: it
/// is simply missing from the list, and is found gone when the list ends.
#[derive(Default)]
struct Known {
    current: HashSet<ObjectRef<GitopsRepository>>,
    /// What the list under way has shown so far.
    listing: Option<HashSet<ObjectRef<GitopsRepository>>>,
}

impl Known {
    /// The repositories `event` shows deleted.
    fn gone(
        &mut self,
        event: &watcher::Event<GitopsRepository>,
    ) -> Vec<ObjectRef<GitopsRepository>> {
        match event {
            watcher::Event::Apply(repo) => {
                self.current.insert(ObjectRef::from_obj(repo));
                Vec::new()
            }
            watcher::Event::Delete(repo) => {
                let repo = ObjectRef::from_obj(repo);
                self.current.remove(&repo);
                vec![repo]
            }
            watcher::Event::Init => {
                self.listing = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(repo) => {
                self.listing
                    .get_or_insert_with(HashSet::new)
                    .insert(ObjectRef::from_obj(repo));
                Vec::new()
            }
            watcher::Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let gone = self.current.difference(&listed).cloned().collect();
                self.current = listed;
                gone
            }
        }
    }
}

/// Hashes everything of a repository but its status (and resourceVersion).
fn not_status(repo: &GitopsRepository) -> Option<u64> {
    predicates::generation
        .combine(predicates::labels)
        .combine(predicates::annotations)
        .combine(predicates::finalizers)
        .combine(being_deleted)
        .hash_property(repo)
}

fn being_deleted(repo: &GitopsRepository) -> Option<u64> {
    Some(u64::from(repo.meta().deletion_timestamp.is_some()))
}

/// Any change to an object a repository manages is a prompt to look for drift. The
/// changes come from the fleet caches' own watches, which this controller thereby
/// drives: one watch per kind and scope feeds the cache and the triggers alike.
pub fn follow_managed_objects(
    mut controller: Controller<GitopsRepository>,
    changes: Vec<(crate::fleet::ObjectKind, live::Changes)>,
) -> Controller<GitopsRepository> {
    for (kind, changes) in changes {
        controller = controller.watches_stream_with(
            changes,
            |obj: live::CachedObject| {
                let repository = obj.labels().get(REPOSITORY_LABEL)?.clone();
                Some(ObjectRef::new(&repository).within(&obj.namespace()?))
            },
            live::api_resource(kind),
        );
    }
    controller
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::repository::GitopsRepositoryStatus;

    fn repository() -> GitopsRepository {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "GitopsRepository",
            "metadata": {"name": "fleet", "namespace": "a", "generation": 1,
                         "resourceVersion": "1", "annotations": {"team": "x"}},
            "spec": {"url": "https://example.com/fleet.git", "ref": {"branch": "main"}},
        }))
        .unwrap()
    }

    fn named(name: &str) -> GitopsRepository {
        let mut repo = repository();
        repo.metadata.name = Some(name.into());
        repo
    }

    #[test]
    fn a_repository_missing_from_a_fresh_list_is_gone() {
        use watcher::Event;
        let mut known = Known::default();
        let gone = |known: &mut Known, events: Vec<Event<GitopsRepository>>| {
            let mut names: Vec<String> = events
                .iter()
                .flat_map(|e| known.gone(e))
                .map(|r| r.name)
                .collect();
            names.sort();
            names
        };
        let first = vec![
            Event::Init,
            Event::InitApply(named("a")),
            Event::InitApply(named("b")),
            Event::InitApply(named("c")),
            Event::InitDone,
        ];
        assert!(
            gone(&mut known, first).is_empty(),
            "the first list deletes nothing"
        );
        let watched = vec![Event::Apply(named("d")), Event::Delete(named("a"))];
        assert_eq!(gone(&mut known, watched), ["a"]);
        // The watch reconnects with a fresh list: b and d were deleted meanwhile, and c
        // changed (another resourceVersion is the same repository).
        let mut c = named("c");
        c.metadata.resource_version = Some("9".into());
        let relisted = vec![
            Event::Init,
            Event::InitApply(c),
            Event::InitApply(named("e")),
            Event::InitDone,
        ];
        assert_eq!(gone(&mut known, relisted), ["b", "d"]);
        let again = vec![Event::Init, Event::InitApply(named("c")), Event::InitDone];
        assert_eq!(gone(&mut known, again), ["e"]);
    }

    #[test]
    fn a_status_write_is_no_prompt_but_what_people_change_is() {
        let before = repository();
        let base = not_status(&before);

        let mut written = before.clone();
        written.metadata.resource_version = Some("2".into());
        written.status = Some(GitopsRepositoryStatus {
            observed_generation: Some(1),
            ..Default::default()
        });
        assert_eq!(not_status(&written), base, "a status write");

        let mut changed: Vec<(&str, GitopsRepository)> = Vec::new();
        let mut spec = before.clone();
        spec.metadata.generation = Some(2);
        changed.push(("spec", spec));
        let mut asked = before.clone();
        asked.annotations_mut().insert(
            crate::api::annotations::SYNC_REQUESTED_AT.into(),
            "now".into(),
        );
        changed.push(("sync request", asked));
        let mut labelled = before.clone();
        labelled.labels_mut().insert("shard".into(), "b".into());
        changed.push(("label", labelled));
        let mut finalized = before.clone();
        finalized.finalizers_mut().push("x".into());
        changed.push(("finalizer", finalized));
        let mut deleting = before.clone();
        deleting.metadata.deletion_timestamp = Some(crate::api::now());
        changed.push(("deletion", deleting));
        for (what, repo) in changed {
            assert_ne!(not_status(&repo), base, "{what}");
        }
    }
}
