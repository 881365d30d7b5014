//! The git source: resolve a ref to a commit without cloning, fetch it incrementally into
//! a bare cache repository, and read the fleet file out of the commit's tree.
//!
//! Files are read from git's object database, never from a checkout, so a path can only
//! name something inside the commit: `..`, absolute paths and symbolic links that leave
//! the tree are refused. Submodules are never fetched. SSH host keys are always checked
//! against known_hosts.

pub mod flux;
mod known_hosts;
mod limits;
pub mod policy;
mod signed;
pub mod verify;

use std::cell::RefCell;
use std::path::{Component, Path};
use std::time::{Duration, Instant};

use git2::{CertificateCheckStatus, Cred, FetchOptions, ObjectType, RemoteCallbacks, Repository};

pub use known_hosts::{KnownHosts, Verdict};
pub use limits::{Limits, set_network_timeouts};
pub use signed::{
    MAX_RANGE_COMMITS, Person, Provenance, Range, SignedTag, Verification, VerifyMode, has_history,
    provenance, range,
};

/// What to follow in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    Branch(String),
    Tag(String),
    Commit(String),
}

impl std::fmt::Display for GitRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitRef::Branch(b) => write!(f, "branch {b}"),
            GitRef::Tag(t) => write!(f, "tag {t}"),
            GitRef::Commit(c) => write!(f, "commit {c}"),
        }
    }
}

#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    Ssh {
        identity: String,
        known_hosts: String,
    },
    Basic {
        username: String,
        password: String,
    },
}

// Never print a credential's value.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::Anonymous => "Anonymous",
            Credentials::Ssh { .. } => "Ssh { .. }",
            Credentials::Basic { .. } => "Basic { .. }",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    pub credentials: Credentials,
    pub timeout: Duration,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("unsupported URL `{url}`: use ssh://, git@host:path, https://, git:// or file://")]
    UnsupportedUrl { url: String },
    #[error("{url}: SSH needs `known_hosts` in the secret; there is no trust on first use")]
    MissingKnownHosts { url: String },
    #[error("{0}")]
    InvalidKnownHosts(String),
    #[error("the host key of {host}:{port} does not match known_hosts; refusing to connect")]
    HostKeyMismatch { host: String, port: u16 },
    #[error("{host}:{port} is not listed in known_hosts; refusing to connect")]
    UnknownHost { host: String, port: u16 },
    #[error("authentication to {url} failed: {message}")]
    AuthFailed { url: String, message: String },
    #[error("{reference} not found in {url}")]
    RefNotFound { url: String, reference: String },
    #[error("git operation on {url} did not finish within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("fetching {url} failed: {message}")]
    FetchFailed { url: String, message: String },
    #[error("path `{path}` is not allowed: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("`{path}` does not exist at revision {revision}")]
    FileNotFound { path: String, revision: String },
    #[error("git cache at {path}: {message}")]
    Cache { path: String, message: String },
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    #[error("fetching {url} was stopped after {limit} bytes, the most one fetch may receive")]
    RepositoryTooLarge { url: String, limit: u64 },
    #[error(transparent)]
    Unverified(#[from] verify::VerifyError),
    #[error("`{path}` is {size} bytes, more than the {limit} bytes a fleet file may have")]
    FileTooLarge { path: String, size: u64, limit: u64 },
}

impl SourceError {
    /// A stable short label for conditions, metrics and Events.
    pub fn label(&self) -> &'static str {
        match self {
            SourceError::UnsupportedUrl { .. } => "UnsupportedUrl",
            SourceError::MissingKnownHosts { .. } | SourceError::InvalidKnownHosts(_) => {
                "InvalidKnownHosts"
            }
            SourceError::HostKeyMismatch { .. } | SourceError::UnknownHost { .. } => {
                "HostKeyMismatch"
            }
            SourceError::AuthFailed { .. } => "AuthFailed",
            SourceError::RefNotFound { .. } => "RefNotFound",
            SourceError::Timeout { .. } => "Timeout",
            SourceError::FetchFailed { .. } | SourceError::Cache { .. } => "FetchFailed",
            SourceError::InvalidPath { .. } | SourceError::FileNotFound { .. } => "InvalidPath",
            SourceError::Policy(e) => e.label(),
            SourceError::Unverified(e) => e.label(),
            SourceError::RepositoryTooLarge { .. } => "RepositoryTooLarge",
            SourceError::FileTooLarge { .. } => "FileTooLarge",
        }
    }
}

impl SourceError {
    /// Every label [`SourceError::label`] gives, the URL policy's included.
    pub fn labels() -> impl Iterator<Item = &'static str> {
        [
            "UnsupportedUrl",
            "InvalidKnownHosts",
            "HostKeyMismatch",
            "AuthFailed",
            "RefNotFound",
            "Timeout",
            "FetchFailed",
            "InvalidPath",
            "RepositoryTooLarge",
            "FileTooLarge",
        ]
        .into_iter()
        .chain(policy::PolicyError::LABELS.iter().copied())
        .chain(verify::VerifyError::labels())
    }
}

/// Host and port of an SSH URL (`ssh://user@host:port/path` or `user@host:path`).
fn ssh_host(url: &str) -> Option<(String, u16)> {
    if let Some(rest) = url.strip_prefix("ssh://") {
        let authority = rest.split('/').next()?;
        let host_port = authority.rsplit('@').next()?;
        return Some(match host_port.rsplit_once(':') {
            Some((h, p)) => (h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?),
            None => (host_port.to_owned(), 22),
        });
    }
    if url.contains("://") {
        return None;
    }
    // scp-like: user@host:path
    let (before, _) = url.split_once(':')?;
    Some((before.rsplit('@').next()?.to_owned(), 22))
}

fn check_url(url: &str) -> Result<(), SourceError> {
    let ok = ["ssh://", "https://", "http://", "git://", "file://"]
        .iter()
        .any(|p| url.starts_with(p))
        || (!url.contains("://") && ssh_host(url).is_some());
    if ok {
        Ok(())
    } else {
        Err(SourceError::UnsupportedUrl {
            url: url.to_owned(),
        })
    }
}

/// What the callbacks saw, to turn libgit2's errors into precise ones.
#[derive(Default)]
struct Seen {
    host_key: Option<SourceError>,
    auth_attempts: u32,
    timed_out: bool,
    too_large: bool,
}

/// Builds callbacks for `remote`, recording into `seen`, and runs `op` with them.
fn with_callbacks<T>(
    remote: &Remote,
    op: impl FnOnce(RemoteCallbacks<'_>) -> Result<T, git2::Error>,
) -> Result<T, SourceError> {
    check_url(&remote.url)?;
    let seen = RefCell::new(Seen::default());
    let ssh = ssh_host(&remote.url)
        .filter(|_| remote.url.starts_with("ssh://") || !remote.url.contains("://"));
    let known_hosts = match (&ssh, &remote.credentials) {
        (Some(_), Credentials::Ssh { known_hosts, .. }) if !known_hosts.trim().is_empty() => {
            Some(KnownHosts::parse(known_hosts).map_err(SourceError::InvalidKnownHosts)?)
        }
        (Some(_), _) => {
            return Err(SourceError::MissingKnownHosts {
                url: remote.url.clone(),
            });
        }
        _ => None,
    };
    let deadline = Instant::now() + remote.timeout;
    let mut cb = RemoteCallbacks::new();
    cb.certificate_check(|cert, _host| {
        let (Some((host, port)), Some(known)) = (&ssh, &known_hosts) else {
            // TLS certificates are checked by libgit2 against the system's roots.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let key = cert
            .as_hostkey()
            .and_then(|k| k.hostkey())
            .unwrap_or_default();
        match known.check(host, *port, key) {
            Verdict::Trusted => Ok(CertificateCheckStatus::CertificateOk),
            verdict => {
                let (host, port) = (host.clone(), *port);
                seen.borrow_mut().host_key = Some(if verdict == Verdict::Unknown {
                    SourceError::UnknownHost { host, port }
                } else {
                    SourceError::HostKeyMismatch { host, port }
                });
                Err(git2::Error::from_str("host key verification failed"))
            }
        }
    });
    cb.credentials(|_url, username, _allowed| {
        let mut s = seen.borrow_mut();
        s.auth_attempts += 1;
        if s.auth_attempts > 1 {
            // libgit2 asks again after a rejection; one honest try is enough.
            return Err(git2::Error::from_str("credentials were rejected"));
        }
        match &remote.credentials {
            Credentials::Ssh { identity, .. } => {
                Cred::ssh_key_from_memory(username.unwrap_or("git"), None, identity, None)
            }
            Credentials::Basic { username, password } => {
                Cred::userpass_plaintext(username, password)
            }
            Credentials::Anonymous => Err(git2::Error::from_str("no credentials configured")),
        }
    });
    let max_bytes = remote.limits.max_fetch_bytes;
    cb.transfer_progress(|progress| {
        let late = Instant::now() > deadline;
        let large = progress.received_bytes() as u64 > max_bytes;
        let mut s = seen.borrow_mut();
        s.timed_out |= late;
        s.too_large |= large;
        !late && !large
    });
    let result = op(cb);
    let seen = seen.into_inner();
    result.map_err(|e| {
        if let Some(host_key) = seen.host_key {
            return host_key;
        }
        if seen.too_large {
            return SourceError::RepositoryTooLarge {
                url: remote.url.clone(),
                limit: remote.limits.max_fetch_bytes,
            };
        }
        // libgit2's own socket timeouts (connect, read, write) say so in the message.
        let lower = e.message().to_ascii_lowercase();
        let timed_out = seen.timed_out || lower.contains("timed out") || lower.contains("timeout");
        if timed_out {
            return SourceError::Timeout {
                url: remote.url.clone(),
                timeout: remote.timeout,
            };
        }
        let message = e.message().to_owned();
        if e.class() == git2::ErrorClass::Ssh && message.contains("authentication")
            || e.code() == git2::ErrorCode::Auth
            || seen.auth_attempts > 1
        {
            // As for transport errors: the server's words stay in the log.
            tracing::warn!(url = %policy::redact(&remote.url), error = %message, "git authentication failed");
            return SourceError::AuthFailed {
                url: remote.url.clone(),
                message: "the server did not accept the credentials".into(),
            };
        }
        // Only a short category reaches tenant-visible status; the detail is logged.
        tracing::warn!(url = %policy::redact(&remote.url), error = %message, "git transport error");
        SourceError::FetchFailed {
            url: remote.url.clone(),
            message: policy::error_category(&message).to_owned(),
        }
    })
}

/// An empty bare repository whose only purpose is its configuration
/// `http.followRedirects=false`, so that ls-remote never follows a redirect to another
/// host. Made once per process in the temporary folder; opened read-only afterwards.
fn ls_remote_repository() -> Result<Repository, git2::Error> {
    // Made under a lock: two first calls at once would initialise the same folder together.
    static PATH: std::sync::Mutex<Option<std::path::PathBuf>> = std::sync::Mutex::new(None);
    let mut made = PATH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = made.as_ref() {
        return Repository::open_bare(path);
    }
    let path = std::env::temp_dir().join(format!("fleetgate-ls-remote-{}", std::process::id()));
    let repo = Repository::init_bare(&path)?;
    repo.config()?.set_str("http.followRedirects", "false")?;
    *made = Some(path);
    Ok(repo)
}

fn ref_name(git_ref: &GitRef) -> Option<String> {
    match git_ref {
        GitRef::Branch(b) => Some(format!("refs/heads/{b}")),
        GitRef::Tag(t) => Some(format!("refs/tags/{t}")),
        GitRef::Commit(_) => None,
    }
}

/// The commit `git_ref` points at on the remote, asked without fetching (ls-remote).
pub fn resolve_revision(remote: &Remote, git_ref: &GitRef) -> Result<String, SourceError> {
    let wanted = match git_ref {
        GitRef::Commit(sha) => return Ok(sha.clone()),
        GitRef::Branch(_) | GitRef::Tag(_) => ref_name(git_ref).unwrap_or_default(),
    };
    let peeled = format!("{wanted}^{{}}");
    let heads = with_callbacks(remote, |cb| {
        // libgit2's connect call takes no redirect option: it reads `http.followRedirects`
        // from the remote's repository, and a detached remote follows the first redirect.
        let lister = ls_remote_repository()?;
        let mut r = lister.remote_anonymous(remote.url.as_str())?;
        let conn = r.connect_auth(git2::Direction::Fetch, Some(cb), None)?;
        Ok(conn
            .list()?
            .iter()
            .map(|h| (h.name().to_owned(), h.oid().to_string()))
            .collect::<Vec<_>>())
    })?;
    // An annotated tag names a tag object; its peeled entry names the commit.
    heads
        .iter()
        .find(|(n, _)| *n == peeled)
        .or_else(|| heads.iter().find(|(n, _)| *n == wanted))
        .map(|(_, oid)| oid.clone())
        .ok_or_else(|| SourceError::RefNotFound {
            url: remote.url.clone(),
            reference: git_ref.to_string(),
        })
}

/// How a failing git operation on the cache at `cache` is reported.
fn cache_error(cache: &Path) -> impl Fn(git2::Error) -> SourceError + Copy + '_ {
    move |e| SourceError::Cache {
        path: cache.display().to_string(),
        message: e.message().to_owned(),
    }
}

/// Fetches `refspecs` from the remote into `repo`, `depth` commits deep when given.
fn fetch_into(
    repo: &Repository,
    remote: &Remote,
    refspecs: &[String],
    depth: Option<i32>,
) -> Result<(), SourceError> {
    with_callbacks(remote, |cb| {
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(cb);
        opts.download_tags(git2::AutotagOption::None);
        // Never to another host: a redirect could point the controller anywhere.
        opts.follow_redirects(git2::RemoteRedirect::None);
        if let Some(depth) = depth {
            opts.depth(depth);
        }
        let mut r = repo.remote_anonymous(&remote.url)?;
        r.fetch(refspecs, Some(&mut opts), None)
    })
}

/// Fetches `git_ref` into the bare repository at `cache` (created on first use; later
/// fetches are incremental) and returns the commit it resolves to.
///
/// A branch or tag is fetched shallow (its commit only) from network remotes; a commit
/// needs the history that holds it. Every fetch stops at `remote.limits.max_fetch_bytes`.
pub fn fetch(cache: &Path, remote: &Remote, git_ref: &GitRef) -> Result<String, SourceError> {
    let cache_err = cache_error(cache);
    let mut repo = match Repository::open_bare(cache) {
        Ok(r) => r,
        Err(_) => Repository::init_bare(cache).map_err(cache_err)?,
    };
    let (refspecs, shallow): (Vec<String>, bool) = match git_ref {
        GitRef::Commit(_) => {
            // History the commit may be in: a shallow cache cannot receive it (the server
            // takes the cached tip as proof the client has its ancestors), so start over.
            if repo.is_shallow() {
                drop(repo);
                std::fs::remove_dir_all(cache).map_err(|e| SourceError::Cache {
                    path: cache.display().to_string(),
                    message: e.to_string(),
                })?;
                repo = Repository::init_bare(cache).map_err(cache_err)?;
            }
            let all = vec![
                "+refs/heads/*:refs/heads/*".into(),
                "+refs/tags/*:refs/tags/*".into(),
            ];
            (all, false)
        }
        GitRef::Branch(_) | GitRef::Tag(_) => {
            let name = ref_name(git_ref).unwrap_or_default();
            // libgit2's local transport does not fetch shallow.
            (
                vec![format!("+{name}:{name}")],
                !remote.url.starts_with("file://"),
            )
        }
    };
    fetch_into(&repo, remote, &refspecs, shallow.then_some(1))?;
    let not_found = || SourceError::RefNotFound {
        url: remote.url.clone(),
        reference: git_ref.to_string(),
    };
    let object = match git_ref {
        GitRef::Commit(sha) => git2::Oid::from_str(sha)
            .and_then(|oid| repo.find_object(oid, None))
            .map_err(|_| not_found())?,
        GitRef::Branch(_) | GitRef::Tag(_) => repo
            .revparse_single(&ref_name(git_ref).unwrap_or_default())
            .map_err(|_| not_found())?,
    };
    let commit = object.peel_to_commit().map_err(|_| not_found())?;
    Ok(commit.id().to_string())
}

/// Fetches the whole history of `git_ref` (only that ref: a branch or tag; every
/// branch and tag for a commit) into the cache, which shallow fetches left without it.
/// Bounded like every fetch.
pub fn deepen(cache: &Path, remote: &Remote, git_ref: &GitRef) -> Result<(), SourceError> {
    let Some(name) = ref_name(git_ref) else {
        return fetch(cache, remote, git_ref).map(drop);
    };
    let repo = Repository::open_bare(cache).map_err(cache_error(cache))?;
    // i32::MAX is libgit2's GIT_FETCH_DEPTH_UNSHALLOW.
    let depth = repo.is_shallow().then_some(i32::MAX);
    fetch_into(&repo, remote, &[format!("+{name}:{name}")], depth)
}

/// Keeps `path` inside the repository: relative, no `..`, no `.`.
fn clean_path(path: &str) -> Result<Vec<String>, SourceError> {
    let invalid = |reason: &str| SourceError::InvalidPath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err(invalid("`..` would leave the repository")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid("it must be relative to the repository root"));
            }
        }
    }
    if parts.is_empty() {
        return Err(invalid("it names no file"));
    }
    Ok(parts)
}

/// Reads `path` from the tree of `revision` in the cache. Symbolic links are followed
/// only while they stay inside the tree. Sizes are read from the object headers first:
/// no blob larger than `limits.max_file_bytes` is ever inflated.
pub fn read_file(
    cache: &Path,
    revision: &str,
    path: &str,
    limits: &Limits,
) -> Result<Vec<u8>, SourceError> {
    let cache_err = cache_error(cache);
    let repo = Repository::open_bare(cache).map_err(cache_err)?;
    let odb = repo.odb().map_err(cache_err)?;
    let oid = git2::Oid::from_str(revision).map_err(cache_err)?;
    let tree = repo
        .find_commit(oid)
        .map_err(cache_err)?
        .tree()
        .map_err(cache_err)?;
    let not_found = || SourceError::FileNotFound {
        path: path.to_owned(),
        revision: revision.to_owned(),
    };
    // The blob's content, once its header says it is a blob of an acceptable size.
    let blob = |entry: &git2::TreeEntry<'_>| -> Result<Option<Vec<u8>>, SourceError> {
        let (size, kind) = odb.read_header(entry.id()).map_err(cache_err)?;
        if kind != ObjectType::Blob {
            return Ok(None);
        }
        if size as u64 > limits.max_file_bytes {
            return Err(SourceError::FileTooLarge {
                path: path.to_owned(),
                size: size as u64,
                limit: limits.max_file_bytes,
            });
        }
        let blob = repo.find_blob(entry.id()).map_err(cache_err)?;
        Ok(Some(blob.content().to_vec()))
    };
    let mut parts = clean_path(path)?;
    for _hop in 0..8 {
        let entry = tree
            .get_path(Path::new(&parts.join("/")))
            .map_err(|_| not_found())?;
        let Some(content) = blob(&entry)? else {
            return Err(SourceError::InvalidPath {
                path: path.to_owned(),
                reason: "it is a directory, not a file".into(),
            });
        };
        if entry.filemode() != 0o120000 {
            return Ok(content);
        }
        // A symbolic link: resolve its target relative to the link's folder, in the tree.
        let target = String::from_utf8_lossy(&content).into_owned();
        if target.starts_with('/') {
            return Err(SourceError::InvalidPath {
                path: path.to_owned(),
                reason: format!("it is a symbolic link to `{target}`, outside the repository"),
            });
        }
        parts.pop();
        for c in Path::new(&target).components() {
            match c {
                Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                Component::ParentDir if parts.pop().is_some() => {}
                Component::CurDir => {}
                _ => {
                    return Err(SourceError::InvalidPath {
                        path: path.to_owned(),
                        reason: format!(
                            "it is a symbolic link to `{target}`, outside the repository"
                        ),
                    });
                }
            }
        }
    }
    Err(SourceError::InvalidPath {
        path: path.to_owned(),
        reason: "too many levels of symbolic links".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_hosts_from_urls() {
        assert_eq!(
            ssh_host("ssh://git@h.example:2222/a/b.git"),
            Some(("h.example".into(), 2222))
        );
        assert_eq!(
            ssh_host("ssh://h.example/a.git"),
            Some(("h.example".into(), 22))
        );
        assert_eq!(
            ssh_host("git@github.com:acme/fleet.git"),
            Some(("github.com".into(), 22))
        );
        assert_eq!(ssh_host("https://h/a.git"), None);
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("ssh://git@h/a.git").is_ok());
        assert!(check_url("git@h:a.git").is_ok());
        assert!(check_url("file:///srv/a.git").is_ok());
        assert_eq!(
            check_url("ftp://h/a").unwrap_err().label(),
            "UnsupportedUrl"
        );
        assert!(check_url("just-a-name").is_err());
    }

    #[test]
    fn paths_stay_inside() {
        assert_eq!(
            clean_path("./fleet/fleet.yaml").unwrap(),
            ["fleet", "fleet.yaml"]
        );
        assert!(
            clean_path("../x")
                .unwrap_err()
                .to_string()
                .contains("`..` would leave")
        );
        assert!(
            clean_path("/etc/passwd")
                .unwrap_err()
                .to_string()
                .contains("relative")
        );
        assert!(clean_path(".").is_err());
    }

    #[test]
    fn credentials_never_print_their_values() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
