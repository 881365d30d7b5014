//! The git source as the controllers use it: credentials from the repository's Secret,
//! and blocking git2 work moved off the async runtime under the spec's timeout.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::context::{Context, parse_duration};
use super::error::{Error, Result};
use super::metrics::GitLabels;
use crate::api::GitopsRepository;
use crate::source::{self, Credentials, GitRef, Remote};

/// Serializes git work on one cache folder: libgit2 refuses concurrent fetches into the
/// same repository.
#[derive(Default)]
pub struct CacheLocks {
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl CacheLocks {
    fn get(&self, path: &std::path::Path) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("not poisoned")
            .entry(path.to_path_buf())
            .or_default()
            .clone()
    }
}

pub fn git_ref(repo: &GitopsRepository) -> Result<GitRef> {
    let r = &repo.spec.git_ref;
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
pub async fn remote(ctx: &Context, repo: &GitopsRepository) -> Result<Remote> {
    let timeout = parse_duration("spec.timeout", &repo.spec.timeout)?;
    let credentials = match &repo.spec.secret_ref {
        None => Credentials::Anonymous,
        Some(secret_ref) => {
            let ns = repo.namespace().unwrap_or_default();
            let secret = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
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
    // Which URLs a tenant may name is the controller's decision, made before connecting.
    ctx.settings
        .url_policy
        .check(
            &repo.spec.url,
            matches!(credentials, Credentials::Basic { .. }),
        )
        .map_err(source::SourceError::from)?;
    Ok(Remote {
        url: repo.spec.url.clone(),
        credentials,
        timeout,
    })
}

/// Runs blocking git work on the blocking pool, bounded by the remote's timeout.
async fn blocking<T: Send + 'static>(
    ctx: &Context,
    operation: &'static str,
    remote: &Remote,
    work: impl FnOnce() -> Result<T, source::SourceError> + Send + 'static,
) -> Result<T> {
    let started = Instant::now();
    let result = tokio::time::timeout(remote.timeout, tokio::task::spawn_blocking(work)).await;
    ctx.metrics
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

/// The commit the repository's ref points at, without fetching.
pub async fn resolve(ctx: &Context, repo: &GitopsRepository) -> Result<String> {
    let remote = remote(ctx, repo).await?;
    let git_ref = git_ref(repo)?;
    let r = remote.clone();
    blocking(ctx, "ls-remote", &remote, move || {
        source::resolve_revision(&r, &git_ref)
    })
    .await
}

/// The fleet file at `revision`, fetched into the repository's bare cache.
pub async fn read_fleet_file(
    ctx: &Context,
    locks: &CacheLocks,
    repo: &GitopsRepository,
    revision: &str,
) -> Result<Vec<u8>> {
    let remote = remote(ctx, repo).await?;
    let cache = ctx
        .settings
        .work_dir
        .join(repo.namespace().unwrap_or_default())
        .join(format!("{}.git", repo.name_any()));
    let lock = locks.get(&cache);
    let _held = lock.lock().await;
    let (path, rev) = (repo.spec.path.clone(), revision.to_owned());
    let (r, c) = (remote.clone(), cache.clone());
    let git_ref = git_ref(repo)?;
    // The wanted commit may already be cached (a re-plan, a restart): no network then.
    let cached = {
        let (c, rev, path) = (c.clone(), rev.clone(), path.clone());
        tokio::task::spawn_blocking(move || source::read_file(&c, &rev, &path)).await
    };
    if let Ok(Ok(bytes)) = cached {
        return Ok(bytes);
    }
    if let Ok(Err(
        e @ source::SourceError::InvalidPath { .. } | e @ source::SourceError::FileNotFound { .. },
    )) = cached
    {
        return Err(e.into());
    }
    blocking(ctx, "fetch", &remote, move || {
        std::fs::create_dir_all(&c).map_err(|e| source::SourceError::Cache {
            path: c.display().to_string(),
            message: e.to_string(),
        })?;
        let wanted = match git_ref {
            GitRef::Commit(_) => GitRef::Commit(rev.clone()),
            other => other,
        };
        let fetched = source::fetch(&c, &r, &wanted)?;
        // The ref may have moved on since the run was created; the run's own commit is
        // what gets planned, so fetch it explicitly if needed.
        if fetched != rev {
            source::fetch(&c, &r, &GitRef::Commit(rev.clone()))?;
        }
        source::read_file(&c, &rev, &path)
    })
    .await
}
