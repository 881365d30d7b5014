//! The git source as the controllers use it: credentials from the repository's Secret,
//! and blocking git2 work moved off the async runtime, bounded in time, in number (over
//! all and per namespace) and in size, with one bare cache per repository whose life
//! follows the repository's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use super::error::{Error, Result, parse_duration};
use super::metrics::{GitLabels, Metrics};
use super::slots::{Permit, Slots};
use crate::api::GitopsRepository;
use crate::source::policy::UrlPolicy;
use crate::source::{self, Credentials, GitRef, Limits, Remote};

/// The bounds of git work, from the command line.
#[derive(Debug, Clone)]
pub struct GitSettings {
    /// Where the bare git caches live: `<work_dir>/<namespace>/<name>.git`.
    pub work_dir: PathBuf,
    /// Git operations (ls-remote, fetch) running at once, over all repositories.
    pub max_concurrent: usize,
    /// Git operations running at once for the repositories of one namespace.
    pub max_concurrent_per_namespace: usize,
    /// Bytes one fetch may receive and one repository's cache may keep; the fleet
    /// file's largest size.
    pub limits: Limits,
    /// Bytes all caches together may keep; the least recently used go first.
    pub max_cache_bytes: u64,
    /// Which git URLs repositories may name.
    pub url_policy: UrlPolicy,
}

impl Default for GitSettings {
    fn default() -> Self {
        Self {
            work_dir: PathBuf::from("/tmp/fleetgate"),
            max_concurrent: 16,
            max_concurrent_per_namespace: 4,
            limits: Limits::default(),
            max_cache_bytes: 768 * 1024 * 1024,
            url_policy: UrlPolicy::default(),
        }
    }
}

/// Git work shared by the controllers: the caches' locks and the concurrency slots.
pub struct GitWork {
    settings: GitSettings,
    metrics: Arc<Metrics>,
    /// Serializes git work on one cache folder: libgit2 refuses concurrent fetches into
    /// the same repository, and a cache is never deleted under a fetch.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// Git operations at once, over all and per namespace.
    slots: Slots,
}

/// Locks a std mutex whose data stays consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GitWork {
    pub fn new(settings: GitSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            slots: Slots::new(
                settings.max_concurrent,
                settings.max_concurrent_per_namespace,
            ),
            settings,
            metrics,
            locks: Mutex::default(),
        }
    }

    pub fn settings(&self) -> &GitSettings {
        &self.settings
    }

    pub(super) fn cache_lock(&self, path: &Path) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks)
            .entry(path.to_path_buf())
            .or_default()
            .clone()
    }

    /// The bare cache of repository `name` in `namespace`.
    pub fn cache_path(&self, namespace: &str, name: &str) -> PathBuf {
        self.settings
            .work_dir
            .join(namespace)
            .join(format!("{name}.git"))
    }

    /// A slot of the namespace, then one of the whole controller. Held by the blocking
    /// task itself, so that work libgit2 is still doing after a timeout keeps its slot.
    async fn slots(&self, namespace: &str) -> Result<Permit> {
        Ok(self.slots.acquire(namespace).await)
    }

    /// Runs blocking git work on the blocking pool, within the namespace's and the
    /// controller's slots, bounded by the remote's timeout.
    async fn blocking<T: Send + 'static>(
        &self,
        namespace: &str,
        operation: &'static str,
        remote: &Remote,
        work: impl FnOnce() -> Result<T, source::SourceError> + Send + 'static,
    ) -> Result<T> {
        let slots = self.slots(namespace).await?;
        let started = Instant::now();
        let task = tokio::task::spawn_blocking(move || {
            let _slots = slots;
            work()
        });
        let result = tokio::time::timeout(remote.timeout, task).await;
        self.metrics
            .git_duration
            .get_or_create(&GitLabels { operation })
            .observe(started.elapsed().as_secs_f64());
        match result {
            Err(_) => Err(source::SourceError::Timeout {
                url: remote.url.clone(),
                timeout: remote.timeout,
            }
            .into()),
            Ok(Err(join)) => Err(Error::Task(join.to_string())),
            Ok(Ok(r)) => r.map_err(Error::from),
        }
    }

    /// Deletes the cache of a repository that no longer exists.
    pub async fn forget(&self, namespace: &str, name: &str) {
        let path = self.cache_path(namespace, name);
        let held = self.cache_lock(&path);
        let _held = held.lock().await;
        remove_cache(&path);
        lock(&self.locks).remove(&path);
    }

    /// Deletes every cache of a `watched` namespace whose repository is not in
    /// `existing` (`namespace`, `name`): what a deletion missed while no controller ran.
    pub fn prune_orphans(&self, existing: &[(String, String)], watched: impl Fn(&str) -> bool) {
        for (ns, name, path) in caches(&self.settings.work_dir) {
            if watched(&ns) && !existing.iter().any(|(n, r)| *n == ns && *r == name) {
                info!(
                    namespace = ns,
                    repository = name,
                    "deleting the git cache of a repository that no longer exists"
                );
                remove_cache(&path);
            }
        }
    }

    /// Keeps all caches under `max_cache_bytes` by deleting the least recently used
    /// ones that nobody is working in (they are fetched again when needed).
    fn bound_caches(&self) {
        let mut sized: Vec<(std::time::SystemTime, u64, PathBuf)> = caches(&self.settings.work_dir)
            .into_iter()
            .map(|(_, _, path)| {
                let used = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (used, dir_size(&path), path)
            })
            .collect();
        let mut total: u64 = sized.iter().map(|(_, size, _)| size).sum();
        sized.sort();
        for (_, size, path) in sized {
            if total <= self.settings.max_cache_bytes {
                break;
            }
            let held = self.cache_lock(&path);
            let Ok(_held) = held.try_lock() else { continue };
            info!(cache = %path.display(), bytes = size, "deleting a git cache to stay under the total cache bound");
            remove_cache(&path);
            total = total.saturating_sub(size);
        }
    }
}

/// `(namespace, repository, path)` of each cache folder under `work_dir`.
fn caches(work_dir: &Path) -> Vec<(String, String, PathBuf)> {
    let entries = |p: &Path| {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    let mut found = Vec::new();
    for ns_dir in entries(work_dir).into_iter().filter(|p| p.is_dir()) {
        let ns = ns_dir.file_name().map(|n| n.to_string_lossy().into_owned());
        for cache in entries(&ns_dir) {
            let name = cache
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".git"))
                .map(str::to_owned);
            if let (Some(ns), Some(name)) = (&ns, name) {
                found.push((ns.clone(), name, cache));
            }
        }
    }
    found
}

fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| dir_size(&e.path()))
        .sum()
}

fn remove_cache(path: &Path) {
    match std::fs::remove_dir_all(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(cache = %path.display(), error = %e, "could not delete a git cache"),
    }
}

pub fn git_ref(repo: &GitopsRepository) -> Result<GitRef> {
    let Some(r) = &repo.spec.git_ref else {
        return Err(Error::InvalidSpec {
            field: "spec.ref".into(),
            message: "a git repository needs url and ref".into(),
        });
    };
    match (&r.branch, &r.tag, &r.commit) {
        (Some(b), None, None) => Ok(GitRef::Branch(b.clone())),
        (None, Some(t), None) => Ok(GitRef::Tag(t.clone())),
        (None, None, Some(c)) => Ok(GitRef::Commit(c.clone())),
        _ => Err(Error::InvalidSpec {
            field: "spec.ref".into(),
            message: "set exactly one of branch, tag or commit".into(),
        }),
    }
}

/// The remote with credentials from spec.secretRef.
pub async fn remote(git: &GitWork, client: &Client, repo: &GitopsRepository) -> Result<Remote> {
    let timeout = parse_duration("spec.timeout", &repo.spec.timeout)?;
    let credentials = match &repo.spec.secret_ref {
        None => Credentials::Anonymous,
        Some(secret_ref) => {
            let ns = repo.namespace().unwrap_or_default();
            let secret = Api::<Secret>::namespaced(client.clone(), &ns)
                .get(&secret_ref.name)
                .await
                .map_err(|e| Error::Secret {
                    name: secret_ref.name.clone(),
                    message: e.to_string(),
                })?;
            let data = secret.data.unwrap_or_default();
            let text = |key: &str| {
                data.get(key)
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            };
            match (
                text("identity"),
                text("known_hosts"),
                text("username"),
                text("password"),
            ) {
                (Some(identity), known_hosts, _, _) => Credentials::Ssh {
                    identity,
                    known_hosts: known_hosts.unwrap_or_default(),
                },
                (None, _, Some(username), Some(password)) => {
                    Credentials::Basic { username, password }
                }
                _ => {
                    return Err(Error::Secret {
                        name: secret_ref.name.clone(),
                        message: "expected keys `identity` and `known_hosts`, or `username` and `password`"
                            .into(),
                    });
                }
            }
        }
    };
    let Some(url) = &repo.spec.url else {
        return Err(Error::InvalidSpec {
            field: "spec.url".into(),
            message: "a git repository needs url and ref".into(),
        });
    };
    // Which URLs a tenant may name is the controller's decision, made before connecting.
    git.settings
        .url_policy
        .check(url, matches!(credentials, Credentials::Basic { .. }))
        .map_err(source::SourceError::from)?;
    refuse_private_names(&git.settings.url_policy, url).await?;
    Ok(Remote {
        url: url.clone(),
        credentials,
        timeout: timeout.max(Duration::from_secs(1)),
        limits: git.settings.limits,
    })
}

/// With `--refuse-private-addresses`: refuses a git host whose name resolves to any
/// address the policy refuses. libgit2 resolves and connects by itself, so this is
/// checked when the name is resolved here, just before each git operation (an address
/// written in the URL was refused by the URL check already).
async fn refuse_private_names(policy: &UrlPolicy, url: &str) -> Result<()> {
    if !policy.refuse_private_addresses {
        return Ok(());
    }
    let Some(host) = crate::source::policy::host_of(url) else {
        return Ok(());
    };
    // A name that does not resolve fails in libgit2 as it would anyway.
    let Ok(found) = tokio::net::lookup_host((host.as_str(), 0)).await else {
        return Ok(());
    };
    for address in found {
        policy
            .address_allowed(address.ip())
            .map_err(source::SourceError::from)?;
    }
    Ok(())
}

/// The commit the repository's ref points at, without fetching.
pub async fn resolve(git: &GitWork, client: &Client, repo: &GitopsRepository) -> Result<String> {
    let remote = remote(git, client, repo).await?;
    let git_ref = git_ref(repo)?;
    let r = remote.clone();
    let ns = repo.namespace().unwrap_or_default();
    git.blocking(&ns, "ls-remote", &remote, move || {
        source::resolve_revision(&r, &git_ref)
    })
    .await
}

/// The fleet file at `revision`, fetched into the repository's bare cache.
pub async fn read_fleet_file(
    git: &GitWork,
    client: &Client,
    repo: &GitopsRepository,
    revision: &str,
) -> Result<Vec<u8>> {
    let remote = remote(git, client, repo).await?;
    let ns = repo.namespace().unwrap_or_default();
    let cache = git.cache_path(&ns, &repo.name_any());
    // Held by the blocking work itself: a fetch libgit2 is still doing after a timeout
    // keeps its cache to itself.
    let held = git.cache_lock(&cache).lock_owned().await;
    let (path, rev) = (repo.spec.path.clone(), revision.to_owned());
    let (r, c) = (remote.clone(), cache.clone());
    let git_ref = git_ref(repo)?;
    let limits = remote.limits;
    // The wanted commit may already be cached (a re-plan, a restart): no network then.
    // A tag to verify is fetched afresh: what it points at now decides.
    let verifies_tag = repo
        .spec
        .verify
        .as_ref()
        .is_some_and(|v| v.mode != crate::api::provenance::VerifyMode::Head);
    let cached = if verifies_tag {
        None
    } else {
        let (c, rev, path) = (c.clone(), rev.clone(), path.clone());
        Some(tokio::task::spawn_blocking(move || source::read_file(&c, &rev, &path, &limits)).await)
    };
    match cached {
        Some(Ok(Ok(bytes))) => return Ok(bytes),
        Some(Ok(Err(
            e @ (source::SourceError::InvalidPath { .. }
            | source::SourceError::FileNotFound { .. }
            | source::SourceError::FileTooLarge { .. }),
        ))) => return Err(e.into()),
        _ => {}
    }
    let result = git
        .blocking(&ns, "fetch", &remote, move || {
            let _held = held;
            std::fs::create_dir_all(&c).map_err(|e| source::SourceError::Cache {
                path: c.display().to_string(),
                message: e.to_string(),
            })?;
            let wanted = match git_ref {
                GitRef::Commit(_) => GitRef::Commit(rev.clone()),
                other => other,
            };
            let bytes = source::fetch(&c, &r, &wanted)
                .and_then(|fetched| {
                    // The ref may have moved on since the run was created; the run's own
                    // commit is what gets planned, so fetch it explicitly if needed.
                    if fetched != rev {
                        source::fetch(&c, &r, &GitRef::Commit(rev.clone()))?;
                    }
                    Ok(())
                })
                .and_then(|()| source::read_file(&c, &rev, &path, &limits));
            // Incremental fetches add up, and an aborted one leaves its partial pack: a
            // cache past one fetch's bound starts afresh (shallow) next time.
            if dir_size(&c) > limits.max_fetch_bytes
                || matches!(bytes, Err(source::SourceError::RepositoryTooLarge { .. }))
            {
                remove_cache(&c);
            }
            bytes
        })
        .await;
    git.bound_caches();
    result
}

/// Fetches the whole history of the repository's ref into its cache (shallow fetches
/// left it without): what reading the commits since the revision last applied needs.
/// Bounded like every fetch; a cache past the bound starts afresh next time.
pub async fn fetch_history(git: &GitWork, client: &Client, repo: &GitopsRepository) -> Result<()> {
    let remote = remote(git, client, repo).await?;
    let ns = repo.namespace().unwrap_or_default();
    let cache = git.cache_path(&ns, &repo.name_any());
    let held = git.cache_lock(&cache).lock_owned().await;
    let (r, c, git_ref) = (remote.clone(), cache.clone(), git_ref(repo)?);
    let limit = remote.limits.max_fetch_bytes;
    let fetched = git
        .blocking(&ns, "fetch", &remote, move || {
            let _held = held;
            let fetched = source::deepen(&c, &r, &git_ref);
            if dir_size(&c) > limit {
                remove_cache(&c);
            }
            fetched
        })
        .await;
    git.bound_caches();
    fetched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn orphaned_and_excess_caches_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let settings = GitSettings {
            work_dir: dir.path().to_path_buf(),
            max_cache_bytes: 1500,
            ..GitSettings::default()
        };
        let git = GitWork::new(settings, Arc::new(Metrics::default()));
        for (ns, name) in [("a", "kept"), ("a", "gone"), ("b", "old")] {
            let path = git.cache_path(ns, name);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("pack"), vec![0u8; 1000]).unwrap();
            // Distinct modification times, oldest first.
            std::thread::sleep(Duration::from_millis(20));
        }
        git.prune_orphans(&[("a".into(), "kept".into())], |ns| ns == "a");
        assert!(!git.cache_path("a", "gone").exists());
        assert!(git.cache_path("a", "kept").exists());

        // 2000 bytes against a bound of 1500: the least recently used goes.
        git.bound_caches();
        assert!(!git.cache_path("a", "kept").exists());
        assert!(git.cache_path("b", "old").exists());

        git.forget("b", "old").await;
        assert!(!git.cache_path("b", "old").exists());
        assert!(caches(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn git_work_waits_for_a_slot_of_its_namespace() {
        let settings = GitSettings {
            max_concurrent: 3,
            max_concurrent_per_namespace: 1,
            ..GitSettings::default()
        };
        let git = GitWork::new(settings, Arc::new(Metrics::default()));
        let busy = git.slots("noisy").await.unwrap();
        // The noisy namespace has no slot left; another namespace still has.
        let blocked = tokio::time::timeout(Duration::from_millis(100), git.slots("noisy")).await;
        assert!(blocked.is_err());
        let other = tokio::time::timeout(Duration::from_millis(100), git.slots("quiet")).await;
        assert!(matches!(other, Ok(Ok(_))));
        drop(busy);
        assert!(git.slots("noisy").await.is_ok());
    }
}
