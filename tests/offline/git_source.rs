//! The git source against the real test git server: ls-remote, fetch and read over
//! ssh:// with a key and known_hosts, a wrong host key refused cleanly, git:// and
//! file://, and fleet paths that try to leave the repository.

use crate::support;

use std::time::Duration;

use fleetgate::source::{self, Credentials, GitRef, Limits, Remote, SourceError};
use support::git::server;

fn ssh_remote(url: String, known_hosts: String) -> Remote {
    Remote {
        url,
        credentials: Credentials::Ssh {
            identity: server().identity(),
            known_hosts,
        },
        timeout: Duration::from_secs(30),
        limits: Limits::default(),
    }
}

#[test]
fn clones_over_ssh_with_a_key_and_known_hosts() {
    crate::git_timeouts();
    let git = server();
    let repo = git.create_repo("ssh");
    let first = repo.commit(&[("fleet.yaml", b"version: 1\n")], "first");
    let remote = ssh_remote(git.ssh_url(&repo), git.known_hosts());
    let main = GitRef::Branch("main".into());
    assert_eq!(source::resolve_revision(&remote, &main).unwrap(), first);

    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().join("repo.git");
    assert_eq!(source::fetch(&cache, &remote, &main).unwrap(), first);
    assert_eq!(
        source::read_file(&cache, &first, "fleet.yaml", &Limits::default()).unwrap(),
        b"version: 1\n"
    );

    // The next fetch into the same cache is incremental and sees the new commit.
    let second = repo.commit(&[("fleet.yaml", b"version: 1\naccount: a\n")], "second");
    assert_eq!(source::fetch(&cache, &remote, &main).unwrap(), second);
    assert_eq!(
        source::read_file(&cache, &second, "fleet.yaml", &Limits::default()).unwrap(),
        b"version: 1\naccount: a\n"
    );
    assert_eq!(
        source::read_file(&cache, &first, "fleet.yaml", &Limits::default()).unwrap(),
        b"version: 1\n"
    );

    repo.tag("v1.0.0");
    assert_eq!(
        source::resolve_revision(&remote, &GitRef::Tag("v1.0.0".into())).unwrap(),
        second
    );
    assert_eq!(
        source::fetch(&cache, &remote, &GitRef::Commit(first.clone())).unwrap(),
        first
    );
}

#[test]
fn a_wrong_host_key_is_refused_before_anything_is_sent() {
    crate::git_timeouts();
    let git = server();
    let repo = git.create_repo("hostkey");
    repo.commit(&[("fleet.yaml", b"version: 1\n")], "first");
    let remote = ssh_remote(git.ssh_url(&repo), git.wrong_known_hosts());
    let err = source::resolve_revision(&remote, &GitRef::Branch("main".into())).unwrap_err();
    assert!(
        matches!(err, SourceError::HostKeyMismatch { port, .. } if port == git.ssh_port),
        "{err}"
    );
    assert_eq!(err.label(), "HostKeyMismatch");

    let cache = tempfile::tempdir().unwrap();
    let err = source::fetch(
        &cache.path().join("c.git"),
        &remote,
        &GitRef::Branch("main".into()),
    )
    .unwrap_err();
    assert_eq!(err.label(), "HostKeyMismatch");

    let unlisted = ssh_remote(git.ssh_url(&repo), "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3YqXnWm0QjPnrhZyR9nTAgqCbH6zKWXGa2jIuKVdrY\n".into());
    let err = source::resolve_revision(&unlisted, &GitRef::Branch("main".into())).unwrap_err();
    assert!(
        err.to_string().contains("is not listed in known_hosts"),
        "{err}"
    );

    let no_known_hosts = ssh_remote(git.ssh_url(&repo), String::new());
    let err =
        source::resolve_revision(&no_known_hosts, &GitRef::Branch("main".into())).unwrap_err();
    assert!(
        matches!(err, SourceError::MissingKnownHosts { .. }),
        "{err}"
    );
}

#[test]
fn a_wrong_key_fails_authentication() {
    crate::git_timeouts();
    let git = server();
    let repo = git.create_repo("auth");
    repo.commit(&[("fleet.yaml", b"version: 1\n")], "first");
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("k");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(ok.success());
    let remote = Remote {
        credentials: Credentials::Ssh {
            identity: std::fs::read_to_string(&key).unwrap(),
            known_hosts: git.known_hosts(),
        },
        ..ssh_remote(git.ssh_url(&repo), git.known_hosts())
    };
    let err = source::resolve_revision(&remote, &GitRef::Branch("main".into())).unwrap_err();
    assert_eq!(err.label(), "AuthFailed", "{err}");
}

#[test]
fn git_and_file_urls_and_missing_refs() {
    crate::git_timeouts();
    let git = server();
    let repo = git.create_repo("plain");
    let head = repo.commit(&[("fleet.yaml", b"version: 1\n")], "first");
    for url in [git.git_url(&repo), git.file_url(&repo)] {
        let remote = Remote {
            url: url.clone(),
            credentials: Credentials::Anonymous,
            timeout: Duration::from_secs(30),
            limits: Limits::default(),
        };
        assert_eq!(
            source::resolve_revision(&remote, &GitRef::Branch("main".into())).unwrap(),
            head,
            "{url}"
        );
        let err = source::resolve_revision(&remote, &GitRef::Branch("nope".into())).unwrap_err();
        assert_eq!(err.to_string(), format!("branch nope not found in {url}"));
    }
}

#[test]
fn fleet_paths_cannot_leave_the_repository() {
    crate::git_timeouts();
    let git = server();
    let repo = git.create_repo("paths");
    repo.commit(
        &[("fleet/fleet.yaml", b"version: 1\n"), ("fleet/dir/x", b"")],
        "files",
    );
    repo.commit_symlink("inside.yaml", "fleet/fleet.yaml", "a link inside");
    let head = repo.commit_symlink("outside.yaml", "../../../../etc/passwd", "a link outside");
    let remote = Remote {
        url: git.file_url(&repo),
        credentials: Credentials::Anonymous,
        timeout: Duration::from_secs(30),
        limits: Limits::default(),
    };
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().join("c.git");
    source::fetch(&cache, &remote, &GitRef::Branch("main".into())).unwrap();

    assert_eq!(
        source::read_file(&cache, &head, "inside.yaml", &Limits::default()).unwrap(),
        b"version: 1\n"
    );
    let reason = |path: &str| {
        source::read_file(&cache, &head, path, &Limits::default())
            .unwrap_err()
            .to_string()
    };
    assert!(
        reason("outside.yaml")
            .contains("symbolic link to `../../../../etc/passwd`, outside the repository")
    );
    assert!(reason("../fleet.yaml").contains("`..` would leave the repository"));
    assert!(reason("/etc/passwd").contains("must be relative"));
    assert!(reason("fleet/dir").contains("is a directory"));
    assert_eq!(
        reason("nope.yaml"),
        format!("`nope.yaml` does not exist at revision {head}")
    );
}
