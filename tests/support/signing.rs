//! Signing keys made by real gpg and ssh-keygen, and commits and tags signed with them
//! by real git, as a developer would (`git commit -S`, `git tag -s`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::git::Repo;

/// How git is told to sign: OpenPGP through gpg, or SSH through ssh-keygen.
pub enum Signer<'a> {
    Gpg(&'a GpgKey),
    Ssh(&'a SshKey),
    /// No signature at all.
    Nobody,
}

/// An OpenPGP key in a gpg home of its own.
pub struct GpgKey {
    home: PathBuf,
    pub fingerprint: String,
    pub armored: String,
}

/// An SSH key pair.
pub struct SshKey {
    pub private: PathBuf,
    pub public: String,
    pub fingerprint: String,
}

fn run(program: &str, args: &[&str], envs: &[(&str, &Path)]) -> String {
    let out = Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_os_str())))
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl GpgKey {
    /// A new ed25519 key for `uid` ("Ada <ada@example.com>"), under `dir`.
    pub fn new(dir: &Path, uid: &str) -> Self {
        let home = dir.join(format!("gnupg-{}", super::unique_suffix()));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let env = [("GNUPGHOME", home.as_path())];
        let batch = ["--batch", "--pinentry-mode", "loopback", "--passphrase", ""];
        let mut args = batch.to_vec();
        args.extend(["--quick-gen-key", uid, "ed25519", "sign", "1y"]);
        run("gpg", &args, &env);
        let listed = run("gpg", &["--with-colons", "--list-keys", uid], &env);
        let fingerprint = listed
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| f.len() == 40))
            .expect("a fingerprint")
            .to_owned();
        let armored = run("gpg", &["--armor", "--export", &fingerprint], &env);
        GpgKey {
            home,
            fingerprint,
            armored,
        }
    }
}

impl SshKey {
    /// A new ed25519 key pair under `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let private = dir.join(format!("{name}-{}", super::unique_suffix()));
        let path = private.to_str().unwrap();
        run(
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path],
            &[],
        );
        let public = std::fs::read_to_string(format!("{path}.pub")).unwrap();
        let listed = run("ssh-keygen", &["-l", "-f", &format!("{path}.pub")], &[]);
        let fingerprint = listed.split_whitespace().nth(1).unwrap().to_owned();
        let public = public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        SshKey {
            private,
            public,
            fingerprint,
        }
    }

    /// Its line in an allowed-signers list.
    pub fn allowed_signer(&self, principal: &str) -> String {
        format!("{principal} {}\n", self.public)
    }
}

/// git in the repository's work tree, signing as `signer` says, as Ada.
fn git(repo: &Repo, signer: &Signer<'_>, args: &[&str]) -> String {
    git_as(repo, signer, ("Ada Author", "ada@example.com"), args)
}

/// git as `author` (name, e-mail), who is also the committer.
fn git_as(repo: &Repo, signer: &Signer<'_>, author: (&str, &str), args: &[&str]) -> String {
    let mut command = Command::new("git");
    command
        .current_dir(&repo.work)
        .env("GIT_AUTHOR_NAME", author.0)
        .env("GIT_AUTHOR_EMAIL", author.1)
        .env("GIT_COMMITTER_NAME", author.0)
        .env("GIT_COMMITTER_EMAIL", author.1);
    match signer {
        Signer::Gpg(key) => {
            command
                .env("GNUPGHOME", &key.home)
                .args(["-c", "gpg.format=openpgp", "-c"])
                .arg(format!("user.signingkey={}", key.fingerprint));
        }
        Signer::Ssh(key) => {
            command
                .args(["-c", "gpg.format=ssh", "-c"])
                .arg(format!("user.signingkey={}", key.private.display()));
        }
        Signer::Nobody => {}
    }
    let out = command.args(args).output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Commits `files` on main, signed by `signer`, and pushes; returns the commit id.
pub fn commit(repo: &Repo, signer: Signer<'_>, files: &[(&str, &[u8])], message: &str) -> String {
    commit_as(
        repo,
        ("Ada Author", "ada@example.com"),
        signer,
        files,
        message,
    )
}

/// [`commit`], written and committed by `author` (name, e-mail).
pub fn commit_as(
    repo: &Repo,
    author: (&str, &str),
    signer: Signer<'_>,
    files: &[(&str, &[u8])],
    message: &str,
) -> String {
    for (path, contents) in files {
        std::fs::write(repo.work.join(path), contents).unwrap();
        git(repo, &Signer::Nobody, &["add", path]);
    }
    let sign = match signer {
        Signer::Nobody => "--no-gpg-sign",
        _ => "-S",
    };
    git_as(
        repo,
        &signer,
        author,
        &["commit", "-q", "--allow-empty", sign, "-m", message],
    );
    git(repo, &Signer::Nobody, &["push", "-q", "origin", "main"]);
    git(repo, &Signer::Nobody, &["rev-parse", "HEAD"])
}

/// Tags HEAD as `name` (annotated and signed by `signer`, or lightweight for `Nobody`)
/// and pushes the tag, replacing one of the same name.
pub fn tag(repo: &Repo, signer: Signer<'_>, name: &str) {
    match signer {
        Signer::Nobody => git(repo, &signer, &["tag", "-f", name]),
        _ => git(repo, &signer, &["tag", "-f", "-s", name, "-m", name]),
    };
    git(repo, &Signer::Nobody, &["push", "-q", "-f", "origin", name]);
}

/// Rewrites HEAD's commit object with `edit` (its raw bytes, signature header included)
/// and force-pushes the result as main: what someone without the key can do.
pub fn rewrite_head(repo: &Repo, edit: impl FnOnce(String) -> String) -> String {
    let raw = git(repo, &Signer::Nobody, &["cat-file", "commit", "HEAD"]);
    let edited = repo.work.join(".edited-commit");
    std::fs::write(&edited, format!("{}\n", edit(raw))).unwrap();
    let id = git(
        repo,
        &Signer::Nobody,
        &[
            "hash-object",
            "-t",
            "commit",
            "-w",
            edited.to_str().unwrap(),
        ],
    );
    std::fs::remove_file(&edited).unwrap();
    git(
        repo,
        &Signer::Nobody,
        &["update-ref", "refs/heads/main", &id],
    );
    git(
        repo,
        &Signer::Nobody,
        &["push", "-q", "-f", "origin", "main"],
    );
    id
}

/// Pushes the local tag `from` to the server as `refs/tags/<to>`, replacing it.
pub fn push_tag_as(repo: &Repo, from: &str, to: &str) {
    let refspec = format!("refs/tags/{from}:refs/tags/{to}");
    git(
        repo,
        &Signer::Nobody,
        &["push", "-q", "-f", "origin", &refspec],
    );
}
