//! Which git URLs a tenant may name, decided before any connection is made.
//!
//! By default only `ssh://`, scp-like `user@host:path` and `https://` are accepted;
//! `http://`, `git://` and `file://` each need their own controller flag. A URL never
//! carries credentials (they belong in the Secret), basic-auth credentials are never
//! sent over plain `http://`, the host may be restricted to an allow-list, and a
//! `file://` URL can never name the controller's own caches (another tenant's
//! repositories). Messages never repeat a URL's user information.

use std::path::{Component, Path, PathBuf};

/// What the controller's flags allow.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    /// `--allow-http-urls`: plain `http://` (no credentials are ever sent over it).
    pub allow_http: bool,
    /// `--allow-git-urls`: the unauthenticated `git://` protocol.
    pub allow_git: bool,
    /// `--allow-file-urls`: local repositories, outside the controller's caches.
    pub allow_file: bool,
    /// `--allowed-git-hosts`: host patterns (`git.example.com`, `*.example.com`); empty
    /// allows any host.
    pub allowed_hosts: Vec<String>,
    /// Folders a `file://` URL may never name (the controller's git caches).
    pub denied_paths: Vec<PathBuf>,
}

/// Why a URL is refused. Labels are stable condition reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("unsupported git URL: use ssh://, user@host:path or https://")]
    Unsupported,
    #[error(
        "{scheme}:// URLs are not allowed by this controller (it accepts them only with {flag})"
    )]
    SchemeNotAllowed {
        scheme: &'static str,
        flag: &'static str,
    },
    #[error(
        "the URL carries credentials before `@`; put them in the Secret named by spec.secretRef instead"
    )]
    CredentialsInUrl,
    #[error("refusing to send a username and password over plain http://; use https://")]
    InsecureCredentials,
    #[error("git host `{host}` is not allowed by this controller (--allowed-git-hosts)")]
    HostNotAllowed { host: String },
    #[error("a file:// URL may not name the controller's own git caches")]
    CachePath,
}

impl PolicyError {
    /// Every label [`PolicyError::label`] gives.
    pub const LABELS: &[&str] = &[
        "UrlNotAllowed",
        "CredentialsInUrl",
        "InsecureCredentials",
        "HostNotAllowed",
    ];

    pub fn label(&self) -> &'static str {
        match self {
            PolicyError::Unsupported | PolicyError::SchemeNotAllowed { .. } => "UrlNotAllowed",
            PolicyError::CachePath => "UrlNotAllowed",
            PolicyError::CredentialsInUrl => "CredentialsInUrl",
            PolicyError::InsecureCredentials => "InsecureCredentials",
            PolicyError::HostNotAllowed { .. } => "HostNotAllowed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Ssh,
    Https,
    Http,
    Git,
    File,
}

/// A URL taken apart as far as the policy needs.
struct Parts<'a> {
    scheme: Scheme,
    user: Option<&'a str>,
    password: bool,
    host: &'a str,
    /// The path of a `file://` URL.
    path: &'a str,
}

fn valid_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    !bare.is_empty()
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
        && (bare.contains(':') == host.starts_with('['))
}

fn parse(url: &str) -> Result<Parts<'_>, PolicyError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        // scp-like: [user@]host:path, the only form without a scheme.
        let head = &url[..url.find('/').unwrap_or(url.len())];
        let (user, rest) = match head.rfind('@') {
            Some(i) => (Some(&url[..i]), &url[i + 1..]),
            None => (None, url),
        };
        let (host, path) = rest.split_once(':').ok_or(PolicyError::Unsupported)?;
        if !valid_host(host) || host.contains(':') || path.is_empty() || path.starts_with(':') {
            return Err(PolicyError::Unsupported);
        }
        return Ok(Parts {
            scheme: Scheme::Ssh,
            password: user.is_some_and(|u| u.contains(':')),
            user,
            host,
            path,
        });
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ssh" => Scheme::Ssh,
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        "git" => Scheme::Git,
        "file" => Scheme::File,
        _ => return Err(PolicyError::Unsupported),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let host = match host_port.rfind(':') {
        Some(i)
            if !host_port.ends_with(']')
                && host_port[i + 1..].chars().all(|c| c.is_ascii_digit()) =>
        {
            &host_port[..i]
        }
        _ => host_port,
    };
    if scheme != Scheme::File && !valid_host(host) {
        return Err(PolicyError::Unsupported);
    }
    Ok(Parts {
        scheme,
        user: userinfo,
        password: userinfo.is_some_and(|u| u.contains(':')),
        host,
        path,
    })
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => pattern == host,
    }
}

/// `path` without `.` and `..`, lexically, made absolute.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Where a path really is: symbolic links resolved as far as the path exists.
fn resolved(path: &Path) -> PathBuf {
    let path = normalize(path);
    let mut existing = path.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_owned()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path,
        }
    }
}

impl UrlPolicy {
    /// Checks `url`, which would be used with basic-auth credentials when `basic_auth`.
    pub fn check(&self, url: &str, basic_auth: bool) -> Result<(), PolicyError> {
        let parts = parse(url)?;
        let flag = |allowed: bool, scheme: &'static str, flag: &'static str| {
            if allowed {
                Ok(())
            } else {
                Err(PolicyError::SchemeNotAllowed { scheme, flag })
            }
        };
        match parts.scheme {
            Scheme::Ssh | Scheme::Https => Ok(()),
            Scheme::Http => flag(self.allow_http, "http", "--allow-http-urls"),
            Scheme::Git => flag(self.allow_git, "git", "--allow-git-urls"),
            Scheme::File => flag(self.allow_file, "file", "--allow-file-urls"),
        }?;
        // An SSH user name is not a secret; anything else before `@` is.
        let credentials = match parts.scheme {
            Scheme::Ssh => parts.password,
            _ => parts.user.is_some(),
        };
        if credentials {
            return Err(PolicyError::CredentialsInUrl);
        }
        if parts.scheme == Scheme::Http && basic_auth {
            return Err(PolicyError::InsecureCredentials);
        }
        if parts.scheme == Scheme::File {
            let path = resolved(Path::new(parts.path));
            if self
                .denied_paths
                .iter()
                .any(|d| path.starts_with(resolved(d)))
            {
                return Err(PolicyError::CachePath);
            }
            return Ok(());
        }
        if !self.allowed_hosts.is_empty()
            && !self
                .allowed_hosts
                .iter()
                .any(|p| host_matches(p, parts.host))
        {
            return Err(PolicyError::HostNotAllowed {
                host: parts.host.to_owned(),
            });
        }
        Ok(())
    }
}

/// A short category of a transport error, for tenant-visible status. The raw message of
/// a connection to an arbitrary address (refused, TLS versions, HTTP status codes) would
/// let a tenant probe the controller's network through status; it goes to the logs only.
pub fn error_category(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("tls") || m.contains("ssl") || m.contains("certificate") {
        "TLS handshake or certificate verification failed"
    } else if m.contains("redirect") {
        "the server redirected the request"
    } else if m.contains("status code") || m.contains("http") {
        "the server answered with an HTTP error"
    } else if m.contains("resolve") || m.contains("dns") || m.contains("name or service") {
        "the host name could not be resolved"
    } else if m.contains("timed out") || m.contains("timeout") {
        "the connection timed out"
    } else if m.contains("connect") || m.contains("refused") || m.contains("unreachable") {
        "could not connect to the server"
    } else if m.contains("not found")
        || m.contains("does not appear to be a git repository")
        || m.contains("not a git repository")
    {
        "no git repository at that address"
    } else {
        "the transfer failed"
    }
}

/// `url` with any password (or token) before `@` replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[end..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> UrlPolicy {
        UrlPolicy::default()
    }

    #[test]
    fn by_default_only_ssh_scp_like_and_https() {
        let p = strict();
        assert_eq!(p.check("ssh://git@git.example.com/a.git", true), Ok(()));
        assert_eq!(p.check("ssh://git@127.0.0.1:2222/srv/a.git", false), Ok(()));
        assert_eq!(p.check("git@github.com:org/a.git", false), Ok(()));
        assert_eq!(p.check("https://github.com/org/a.git", true), Ok(()));
        for (url, flag) in [
            ("http://h/a.git", "--allow-http-urls"),
            ("git://h/a.git", "--allow-git-urls"),
            ("file:///srv/a.git", "--allow-file-urls"),
            ("FILE:///srv/a.git", "--allow-file-urls"),
        ] {
            assert!(
                matches!(p.check(url, false), Err(PolicyError::SchemeNotAllowed { flag: f, .. }) if f == flag),
                "{url}"
            );
        }
        for url in ["/srv/a.git", "ext::sh -c id", "ftp://h/a", "h:", "a/b:c"] {
            assert_eq!(p.check(url, false), Err(PolicyError::Unsupported), "{url}");
        }
    }

    #[test]
    fn credentials_stay_out_of_urls_and_off_plain_http() {
        let p = UrlPolicy {
            allow_http: true,
            ..strict()
        };
        for url in [
            "https://user:pw@h/a.git",
            "https://ghp_token@h/a.git",
            "http://u:p@h/a.git",
            "ssh://git:pw@h/a.git",
            "git:pw@h:a.git",
        ] {
            let e = p.check(url, false).unwrap_err();
            assert_eq!(e, PolicyError::CredentialsInUrl, "{url}");
            assert!(!e.to_string().contains("pw") && !e.to_string().contains("ghp"));
        }
        assert_eq!(p.check("http://h/a.git", false), Ok(()));
        assert_eq!(
            p.check("http://h/a.git", true),
            Err(PolicyError::InsecureCredentials)
        );
        assert_eq!(redact("https://u:secret@h/a.git"), "https://***@h/a.git");
        assert_eq!(redact("https://h/a@b.git"), "https://h/a@b.git");
    }

    #[test]
    fn transport_errors_become_short_categories() {
        for (raw, category) in [
            (
                "failed to connect to 10.0.0.5: Connection refused",
                "could not connect",
            ),
            ("unexpected http status code: 404", "HTTP error"),
            ("SSL error: unsupported protocol TLSv1.0", "TLS handshake"),
            (
                "failed to resolve address for internal.corp: Name or service not known",
                "resolved",
            ),
            ("could not read from repository", "transfer failed"),
        ] {
            let c = error_category(raw);
            assert!(c.contains(category), "{raw} -> {c}");
            assert!(!c.contains("10.0.0.5") && !c.contains("404"));
        }
    }

    #[test]
    fn hosts_can_be_restricted() {
        let p = UrlPolicy {
            allowed_hosts: vec!["git.example.com".into(), "*.corp.example".into()],
            ..strict()
        };
        assert_eq!(p.check("https://GIT.example.com/a.git", false), Ok(()));
        assert_eq!(p.check("ssh://git@x.corp.example:22/a.git", false), Ok(()));
        assert_eq!(p.check("git@y.x.corp.example:a.git", false), Ok(()));
        for url in [
            "https://corp.example/a.git",
            "https://evilcorp.example/a.git",
            "https://169.254.169.254/latest",
            "ssh://git@git.example.com.evil.io/a.git",
        ] {
            assert!(
                matches!(p.check(url, false), Err(PolicyError::HostNotAllowed { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn file_urls_never_reach_the_caches() {
        let work = tempfile::tempdir().unwrap();
        let cache = work.path().join("cache");
        std::fs::create_dir_all(cache.join("tenant-a/fleet.git")).unwrap();
        let link = work.path().join("link");
        std::os::unix::fs::symlink(&cache, &link).unwrap();
        let p = UrlPolicy {
            allow_file: true,
            denied_paths: vec![cache.clone()],
            ..strict()
        };
        let url = |p: &Path| format!("file://{}", p.display());
        assert_eq!(
            p.check(&url(&cache.join("tenant-a/fleet.git")), false),
            Err(PolicyError::CachePath)
        );
        assert_eq!(
            p.check(
                &url(&work.path().join("x/../cache/tenant-a/fleet.git")),
                false
            ),
            Err(PolicyError::CachePath)
        );
        assert_eq!(
            p.check(&url(&link.join("tenant-a/fleet.git")), false),
            Err(PolicyError::CachePath)
        );
        assert_eq!(p.check(&url(&work.path().join("src.git")), false), Ok(()));
    }
}
