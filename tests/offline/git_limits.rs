//! The bounds of git work against the real test git server: a fleet file that would
//! inflate past its limit is refused from its object header, a fetch stops at its size
//! limit, branches are fetched shallow (an older commit still can be), and a server
//! that accepts and never answers frees the calling thread within libgit2's I/O timeout.

use crate::support;

use std::time::{Duration, Instant};

use fleetgate::source::{self, Credentials, GitRef, Limits, Remote, SourceError};
use support::git::{noise, server};

const MIB: u64 = 1024 * 1024;
use crate::{GIT_IO_TIMEOUT, git_timeouts};

fn remote(url: String, limits: Limits) -> Remote {
    Remote {
        url,
        credentials: Credentials::Anonymous,
        timeout: Duration::from_secs(60),
        limits,
    }
}

#[test]
fn a_fleet_file_past_its_limit_is_refused_before_it_is_inflated() {
    git_timeouts();
    let git = server();
    let repo = git.create_repo("inflating");
    // 64 MiB of one byte: a few hundred KiB once compressed.
    let bomb = vec![b'#'; 64 * MIB as usize];
    let head = repo.commit(&[("fleet.yaml", &bomb)], "inflating");
    let limits = Limits {
        max_fetch_bytes: 16 * MIB,
        max_file_bytes: MIB,
    };
    let remote = remote(git.git_url(&repo), limits);
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().join("c.git");
    source::fetch(&cache, &remote, &GitRef::Branch("main".into())).unwrap();
    let err = source::read_file(&cache, &head, "fleet.yaml", &limits).unwrap_err();
    assert_eq!(err.label(), "FileTooLarge", "{err}");
    assert!(
        err.to_string()
            .contains(&format!("is {} bytes, more than the {MIB} bytes", 64 * MIB)),
        "{err}"
    );
}

#[test]
fn a_fetch_stops_at_its_size_limit() {
    git_timeouts();
    let git = server();
    let repo = git.create_repo("huge");
    let big = noise(3 * MIB as usize, 1);
    repo.commit(
        &[("junk.bin", &big), ("fleet.yaml", b"version: 1\n")],
        "junk",
    );
    let limits = Limits {
        max_fetch_bytes: MIB,
        ..Limits::default()
    };
    for url in [git.git_url(&repo), git.file_url(&repo)] {
        let cache = tempfile::tempdir().unwrap();
        let err = source::fetch(
            &cache.path().join("c.git"),
            &remote(url.clone(), limits),
            &GitRef::Branch("main".into()),
        )
        .unwrap_err();
        assert!(
            matches!(err, SourceError::RepositoryTooLarge { limit, .. } if limit == MIB),
            "{url}: {err}"
        );
        assert_eq!(err.label(), "RepositoryTooLarge");
    }
}

#[test]
fn branches_are_fetched_shallow_and_older_commits_still_can_be() {
    git_timeouts();
    let git = server();
    let repo = git.create_repo("history");
    // Four commits of 1 MiB of noise each: only the newest is needed for the newest.
    let mut commits = Vec::new();
    for i in 0..4 {
        let junk = noise(MIB as usize, i + 10);
        let fleet = format!("version: 1\n# {i}\n");
        commits.push(repo.commit(
            &[("junk.bin", &junk), ("fleet.yaml", fleet.as_bytes())],
            "more",
        ));
    }
    let limits = Limits {
        max_fetch_bytes: 2 * MIB,
        ..Limits::default()
    };
    let remote = remote(git.git_url(&repo), limits);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("c.git");
    let head = source::fetch(&cache, &remote, &GitRef::Branch("main".into())).unwrap();
    assert_eq!(&head, commits.last().unwrap());
    assert!(git2::Repository::open_bare(&cache).unwrap().is_shallow());
    assert_eq!(
        source::read_file(&cache, &head, "fleet.yaml", &limits).unwrap(),
        b"version: 1\n# 3\n"
    );
    // The whole history does not fit the limit; a larger one fetches the old commit.
    let err = source::fetch(&cache, &remote, &GitRef::Commit(commits[0].clone())).unwrap_err();
    assert_eq!(err.label(), "RepositoryTooLarge");
    let larger = Remote {
        limits: Limits {
            max_fetch_bytes: 16 * MIB,
            ..limits
        },
        ..remote
    };
    std::fs::remove_dir_all(&cache).unwrap();
    source::fetch(&cache, &larger, &GitRef::Branch("main".into())).unwrap();
    let old = source::fetch(&cache, &larger, &GitRef::Commit(commits[0].clone())).unwrap();
    assert_eq!(old, commits[0]);
    assert_eq!(
        source::read_file(&cache, &old, "fleet.yaml", &limits).unwrap(),
        b"version: 1\n# 0\n"
    );
}

#[test]
fn a_server_that_never_answers_frees_the_thread_within_the_io_timeout() {
    git_timeouts();
    // Accepts connections and then says nothing, for as long as the test runs.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    for url in [
        format!("git://127.0.0.1:{port}/silent.git"),
        format!("http://127.0.0.1:{port}/silent.git"),
    ] {
        // The spec's timeout is far away: only libgit2's own I/O timeout can end the call.
        let remote = remote(url.clone(), Limits::default());
        let started = Instant::now();
        let err = source::resolve_revision(&remote, &GitRef::Branch("main".into())).unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.label(), "Timeout", "{url}: {err}");
        assert!(took < GIT_IO_TIMEOUT * 4, "{url}: took {took:?}");
        let err = source::fetch(
            &dir.path().join("c.git"),
            &remote,
            &GitRef::Branch("main".into()),
        )
        .unwrap_err();
        assert_eq!(err.label(), "Timeout", "{url}: {err}");
    }
}
