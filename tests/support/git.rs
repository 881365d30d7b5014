//! The test git server (hack/gitserver.sh): sshd and git daemon on loopback ports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct GitServer {
    pub dir: PathBuf,
    pub ssh_port: u16,
    pub git_port: u16,
    pub ssh_user: String,
    /// Where both listen: 127.0.0.1, or an address in the test node's network namespace.
    pub address: String,
}

static SERVER: OnceLock<GitServer> = OnceLock::new();

/// The git server of this test binary, stopped when the binary exits.
pub fn server() -> &'static GitServer {
    SERVER.get_or_init(|| GitServer::start(&[]))
}

impl GitServer {
    /// A git server of its own, with `hack/gitserver.sh start` `options` (`--netns`,
    /// `--address`), stopped when the test binary exits.
    pub fn start(options: &[&str]) -> Self {
        let (dir, env) = super::start_service("hack/gitserver.sh", options);
        let value = |key: &str| {
            env.get(key)
                .unwrap_or_else(|| panic!("{key} in the git server's env"))
                .clone()
        };
        GitServer {
            ssh_port: value("SSH_PORT").parse().unwrap(),
            git_port: value("GIT_PORT").parse().unwrap(),
            ssh_user: value("SSH_USER"),
            address: value("ADDRESS"),
            dir,
        }
    }
}

fn git(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_AUTHOR_NAME", "Fleet Tester")
        .env("GIT_AUTHOR_EMAIL", "tester@example.com")
        .env("GIT_COMMITTER_NAME", "Fleet Tester")
        .env("GIT_COMMITTER_EMAIL", "tester@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl GitServer {
    /// A new empty bare repository `name` (unique per call), with `main` as its branch.
    pub fn create_repo(&self, name: &str) -> Repo {
        let name = format!("{name}-{}", super::unique_suffix());
        let bare = self.dir.join("repos").join(format!("{name}.git"));
        git(
            &self.dir,
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        let work = self.dir.join("work").join(&name);
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Repo { name, bare, work }
    }

    pub fn ssh_url(&self, repo: &Repo) -> String {
        format!(
            "ssh://{}@{}:{}{}",
            self.ssh_user,
            self.address,
            self.ssh_port,
            repo.bare.display()
        )
    }

    pub fn git_url(&self, repo: &Repo) -> String {
        format!("git://{}:{}/{}.git", self.address, self.git_port, repo.name)
    }

    pub fn file_url(&self, repo: &Repo) -> String {
        format!("file://{}", repo.bare.display())
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join("ssh").join(file)).unwrap()
    }

    /// The client's private key, as a Secret's `identity` holds it.
    pub fn identity(&self) -> String {
        self.read("client_ed25519")
    }

    /// known_hosts naming the server's real host key.
    pub fn known_hosts(&self) -> String {
        self.read("known_hosts")
    }

    /// known_hosts naming another key for the same host, as after a server swap or attack.
    pub fn wrong_known_hosts(&self) -> String {
        self.read("wrong_known_hosts")
    }
}

pub struct Repo {
    pub name: String,
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl Repo {
    /// Commits `files` (path, contents) on main and pushes; returns the commit id.
    pub fn commit(&self, files: &[(&str, &[u8])], message: &str) -> String {
        for (path, contents) in files {
            let target = self.work.join(path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(&target, contents).unwrap();
            git(&self.work, &["add", path]);
        }
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Commits `files` on `branch` (created from main if new) and pushes it; main stays
    /// checked out. Returns the commit id.
    pub fn commit_to(&self, branch: &str, files: &[(&str, &[u8])], message: &str) -> String {
        git(&self.work, &["checkout", "-q", "-B", branch]);
        for (path, contents) in files {
            let target = self.work.join(path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(&target, contents).unwrap();
            git(&self.work, &["add", path]);
        }
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work, &["push", "-q", "-f", "origin", branch]);
        let head = git(&self.work, &["rev-parse", "HEAD"]);
        git(&self.work, &["checkout", "-q", "main"]);
        head
    }

    /// Commits a symbolic link `path` -> `target`.
    pub fn commit_symlink(&self, path: &str, target: &str, message: &str) -> String {
        std::os::unix::fs::symlink(target, self.work.join(path)).unwrap();
        git(&self.work, &["add", path]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    pub fn tag(&self, tag: &str) {
        git(&self.work, &["tag", tag]);
        git(&self.work, &["push", "-q", "origin", tag]);
    }
}

/// `len` bytes that do not compress (a xorshift stream from `seed`): content that git
/// cannot pack small.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
