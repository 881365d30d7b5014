//! A git host that redirects must not point the controller at another address: neither
//! the ls-remote that asks which commit a branch is at, nor the fetch, follows a redirect.
//! Two plain TCP servers on loopback: the "git host" answers every request with a 302 to
//! the second one, which counts the connections it gets.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fleetgate::source::{self, Credentials, GitRef, Limits, Remote};

/// Serves `answer` to every connection on `listener` until the test ends, counting them.
fn serve(listener: TcpListener, answer: String) -> Arc<AtomicUsize> {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    hits
}

#[test]
fn neither_ls_remote_nor_fetch_follows_a_redirect_to_another_host() {
    crate::git_timeouts();
    let elsewhere = TcpListener::bind("127.0.0.2:0").unwrap();
    let target = elsewhere.local_addr().unwrap();
    let elsewhere_hits = serve(
        elsewhere,
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    );
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nLocation: http://{target}/internal.git/info/refs?service=git-upload-pack\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let host_hits = serve(host, redirect);

    let remote = Remote {
        url: format!("http://127.0.0.1:{port}/fleet.git"),
        credentials: Credentials::Anonymous,
        timeout: Duration::from_secs(10),
        limits: Limits::default(),
    };
    let main = GitRef::Branch("main".into());
    let listed = source::resolve_revision(&remote, &main);
    assert!(listed.is_err(), "ls-remote through a redirect: {listed:?}");

    let cache = tempfile::tempdir().unwrap();
    let fetched = source::fetch(&cache.path().join("repo.git"), &remote, &main);
    assert!(fetched.is_err(), "fetch through a redirect: {fetched:?}");

    assert!(
        host_hits.load(Ordering::SeqCst) >= 2,
        "both asked the git host"
    );
    assert_eq!(
        elsewhere_hits.load(Ordering::SeqCst),
        0,
        "the redirect target was never contacted"
    );
    let message = listed.unwrap_err().to_string();
    assert!(
        !message.contains(&target.to_string()),
        "status does not name the redirect target: {message}"
    );
}
