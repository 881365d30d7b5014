//! Which URLs a tenant may aim the controller at: git remotes, forge APIs and
//! notification addresses alike, decided before any connection is made, and which
//! addresses it may connect to, decided again when it connects.
//!
//! Git URLs: by default only `ssh://`, scp-like `user@host:path` and `https://` are
//! accepted; `http://`, `git://` and `file://` each need their own controller flag.
//! Requests (forge APIs, notifications): `https://`, and `http://` only with the same
//! `--allow-http-urls`. A URL never carries credentials (they belong in the Secret),
//! basic-auth credentials are never sent over plain `http://`, hosts may be restricted
//! to an allow-list (`--allowed-git-hosts` for git remotes and forge APIs,
//! `--allowed-notification-hosts` for notification addresses), and a `file://` URL can
//! never name the controller's own caches (another tenant's repositories).
//!
//! With `--refuse-private-addresses`, no loopback, link-local, private, shared,
//! multicast or otherwise non-public address is connected to: an address written in
//! the URL is refused here, a name is refused when what it resolves to is, at connect
//! time (see [`UrlPolicy::address_allowed`]), so a name that resolves to a public
//! address when checked and a private one when connecting gains nothing. Messages never
//! repeat a URL's user information, nor what a refused name resolved to.

mod address;

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

pub use address::{AddressClass, address_class};

/// What the controller's flags allow.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    /// `--allow-http-urls`: plain `http://` (no credentials are ever sent over it).
    pub allow_http: bool,
    /// `--allow-git-urls`: the unauthenticated `git://` protocol.
    pub allow_git: bool,
    /// `--allow-file-urls`: local repositories, outside the controller's caches.
    pub allow_file: bool,
    /// `--allowed-git-hosts`: host patterns (`git.example.com`, `*.example.com`) of git
    /// remotes and forge APIs; empty allows any host.
    pub allowed_hosts: Vec<String>,
    /// `--allowed-notification-hosts`: host patterns of notification addresses; empty
    /// allows any host.
    pub allowed_notification_hosts: Vec<String>,
    /// Folders a `file://` URL may never name (the controller's git caches).
    pub denied_paths: Vec<PathBuf>,
    /// `--refuse-private-addresses`: connect to public addresses only.
    pub refuse_private_addresses: bool,
}

/// What an outbound request is for: which host allow-list it answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A forge's API (`spec.forge.apiUrl`): the git host's, so `--allowed-git-hosts`.
    Forge,
    /// A NotificationTarget's address: `--allowed-notification-hosts`.
    Notification,
}

impl Purpose {
    fn flag(self) -> &'static str {
        match self {
            Purpose::Forge => "--allowed-git-hosts",
            Purpose::Notification => "--allowed-notification-hosts",
        }
    }
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
    #[error("host `{host}` is not allowed by this controller ({flag})")]
    HostNotAllowed { host: String, flag: &'static str },
    #[error("a file:// URL may not name the controller's own git caches")]
    CachePath,
    #[error(
        "the address is {class}, and this controller connects to public addresses only (--refuse-private-addresses)"
    )]
    AddressNotAllowed { class: &'static str },
}

impl PolicyError {
    /// Every label [`PolicyError::label`] gives.
    pub const LABELS: &[&str] = &[
        "UrlNotAllowed",
        "CredentialsInUrl",
        "InsecureCredentials",
        "HostNotAllowed",
        "AddressNotAllowed",
    ];

    pub fn label(&self) -> &'static str {
        match self {
            PolicyError::Unsupported | PolicyError::SchemeNotAllowed { .. } => "UrlNotAllowed",
            PolicyError::CachePath => "UrlNotAllowed",
            PolicyError::CredentialsInUrl => "CredentialsInUrl",
            PolicyError::InsecureCredentials => "InsecureCredentials",
            PolicyError::HostNotAllowed { .. } => "HostNotAllowed",
            PolicyError::AddressNotAllowed { .. } => "AddressNotAllowed",
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
        allowed_host(&self.allowed_hosts, parts.host, "--allowed-git-hosts")?;
        self.literal_address_allowed(parts.host)
    }

    /// Checks the URL of a request a tenant aims: a forge API or a notification address.
    pub fn check_request(&self, url: &str, purpose: Purpose) -> Result<(), PolicyError> {
        let parts = parse(url)?;
        match parts.scheme {
            Scheme::Https => {}
            Scheme::Http if self.allow_http => {}
            Scheme::Http => {
                return Err(PolicyError::SchemeNotAllowed {
                    scheme: "http",
                    flag: "--allow-http-urls",
                });
            }
            _ => return Err(PolicyError::Unsupported),
        }
        if parts.user.is_some() {
            return Err(PolicyError::CredentialsInUrl);
        }
        let hosts = match purpose {
            Purpose::Forge => &self.allowed_hosts,
            Purpose::Notification => &self.allowed_notification_hosts,
        };
        allowed_host(hosts, parts.host, purpose.flag())?;
        self.literal_address_allowed(parts.host)
    }

    /// Whether the controller may connect to `ip`: always, unless
    /// `--refuse-private-addresses` is set and `ip` is not public. Called with every
    /// address a name resolves to, when connecting.
    pub fn address_allowed(&self, ip: IpAddr) -> Result<(), PolicyError> {
        if !self.refuse_private_addresses {
            return Ok(());
        }
        match address_class(ip) {
            AddressClass::Public => Ok(()),
            class => Err(PolicyError::AddressNotAllowed {
                class: class.word(),
            }),
        }
    }

    /// [`UrlPolicy::address_allowed`] for a host written as an address.
    fn literal_address_allowed(&self, host: &str) -> Result<(), PolicyError> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.address_allowed(ip),
            // Names (and what could be a shortened address such as `127.1`, which no
            // resolver is asked for here) are checked when they are connected to.
            Err(_) => Ok(()),
        }
    }
}

/// The host a URL names (an address without its brackets), if it names one: what to
/// resolve to check the addresses of a name before a connection the controller does not
/// make itself (libgit2's).
pub fn host_of(url: &str) -> Option<String> {
    let parts = parse(url).ok()?;
    if parts.scheme == Scheme::File {
        return None;
    }
    let host = parts.host;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some(bare.to_owned())
}

fn allowed_host(patterns: &[String], host: &str, flag: &'static str) -> Result<(), PolicyError> {
    if patterns.is_empty() || patterns.iter().any(|p| host_matches(p, host)) {
        return Ok(());
    }
    Err(PolicyError::HostNotAllowed {
        host: host.to_owned(),
        flag,
    })
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

    #[test]
    fn requests_follow_the_same_policy_as_git() {
        let p = strict();
        assert_eq!(
            p.check_request("https://hooks.example.com/x", Purpose::Notification),
            Ok(())
        );
        assert_eq!(
            p.check_request("http://hooks.example.com/x", Purpose::Notification),
            Err(PolicyError::SchemeNotAllowed {
                scheme: "http",
                flag: "--allow-http-urls"
            })
        );
        for url in ["ftp://h/x", "file:///etc/passwd", "git@h:x", "h/x"] {
            assert_eq!(
                p.check_request(url, Purpose::Forge),
                Err(PolicyError::Unsupported),
                "{url}"
            );
        }
        assert_eq!(
            p.check_request("https://user:pw@hooks.example.com/x", Purpose::Notification),
            Err(PolicyError::CredentialsInUrl)
        );
        let listed = UrlPolicy {
            allow_http: true,
            allowed_hosts: vec!["git.example.com".into()],
            allowed_notification_hosts: vec!["*.slack.com".into()],
            ..strict()
        };
        assert_eq!(
            listed.check_request("http://git.example.com/api", Purpose::Forge),
            Ok(())
        );
        assert_eq!(
            listed.check_request("https://hooks.slack.com/services/x", Purpose::Notification),
            Ok(())
        );
        assert_eq!(
            listed.check_request("https://hooks.slack.com/x", Purpose::Forge),
            Err(PolicyError::HostNotAllowed {
                host: "hooks.slack.com".into(),
                flag: "--allowed-git-hosts"
            })
        );
        let e = listed
            .check_request("https://git.example.com/x", Purpose::Notification)
            .unwrap_err();
        assert_eq!(e.label(), "HostNotAllowed");
        assert!(
            e.to_string().contains("--allowed-notification-hosts"),
            "{e}"
        );
    }

    #[test]
    fn private_addresses_are_refused_only_when_asked_and_by_class_alone() {
        let open = strict();
        let closed = UrlPolicy {
            allow_http: true,
            refuse_private_addresses: true,
            ..strict()
        };
        for url in [
            "http://127.0.0.1:8080/metrics",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]:9292/hook",
            "https://[fd00::1]/x",
            "http://10.96.0.1/api",
        ] {
            assert!(
                open.check_request(url, Purpose::Notification).is_ok()
                    || url.starts_with("http://")
            );
            let e = closed
                .check_request(url, Purpose::Notification)
                .unwrap_err();
            assert_eq!(e.label(), "AddressNotAllowed", "{url}");
            assert!(
                !e.to_string().contains("127.0.0.1") && !e.to_string().contains("10.96"),
                "{e}"
            );
        }
        // A name is judged by what it resolves to, when connecting.
        assert_eq!(
            closed.check_request("https://localhost:9292/hook", Purpose::Notification),
            Ok(())
        );
        assert!(
            closed
                .address_allowed("127.0.0.1".parse().unwrap())
                .is_err()
        );
        assert!(closed.address_allowed("1.1.1.1".parse().unwrap()).is_ok());
        assert!(open.address_allowed("127.0.0.1".parse().unwrap()).is_ok());
        // Git URLs too: an address in the URL is refused before any connection.
        assert_eq!(
            closed
                .check("ssh://git@10.0.0.7:22/fleet.git", false)
                .unwrap_err()
                .label(),
            "AddressNotAllowed"
        );
        assert_eq!(
            closed.check("ssh://git@git.example.com/fleet.git", false),
            Ok(())
        );
    }
}
