//! Who made a commit or tag in the cache, and the signature git keeps with it; and the
//! verification of a revision as a repository's `verify` mode asks.

use std::path::Path;

use git2::Repository;

use super::SourceError;
use super::verify::{Signer, TrustedKeys, VerifyError, When, split_commit, split_tag};

/// Longest name or e-mail address kept from git: a commit may carry megabytes there.
const MAX_FIELD: usize = 256;

fn bounded(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(MAX_FIELD) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

/// A person as git records them (author, committer, tagger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub email: String,
    /// Unix seconds.
    pub at: i64,
}

impl Person {
    fn of(signature: &git2::Signature<'_>) -> Self {
        Person {
            name: bounded(signature.name_bytes()),
            email: bounded(signature.email_bytes()),
            at: signature.when().seconds(),
        }
    }
}

/// Which objects' signatures must verify (`spec.verify.mode`, as Flux names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// The commit.
    Head,
    /// The annotated tag the ref names.
    Tag,
    /// Both.
    TagAndHead,
}

impl VerifyMode {
    fn commit(self) -> bool {
        matches!(self, VerifyMode::Head | VerifyMode::TagAndHead)
    }

    fn tag(self) -> bool {
        matches!(self, VerifyMode::Tag | VerifyMode::TagAndHead)
    }
}

/// What verification asks for: a mode, the keys, and the tag when the mode reads one.
pub struct Verification<'a> {
    pub mode: VerifyMode,
    pub keys: &'a TrustedKeys,
    pub tag: Option<&'a str>,
}

/// A verified annotated tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTag {
    pub name: String,
    pub tagger: Option<Person>,
    pub signer: Signer,
}

/// Where a revision came from: its author and committer, and what verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub author: Person,
    pub committer: Person,
    /// The commit's signer, when the mode verified the commit.
    pub signer: Option<Signer>,
    /// The tag's signer, when the mode verified a tag.
    pub tag: Option<SignedTag>,
}

/// Reads `revision` from the cache and, with `verification`, checks its signatures: the
/// commit's (`gpgsig`) and/or the annotated tag's, which must point at `revision`.
pub fn provenance(
    cache: &Path,
    revision: &str,
    verification: Option<Verification<'_>>,
) -> Result<Provenance, SourceError> {
    let cache_err = super::cache_error(cache);
    let repo = Repository::open_bare(cache).map_err(cache_err)?;
    let oid = git2::Oid::from_str(revision).map_err(cache_err)?;
    let commit = repo.find_commit(oid).map_err(cache_err)?;
    let mut found = Provenance {
        author: Person::of(&commit.author()),
        committer: Person::of(&commit.committer()),
        signer: None,
        tag: None,
    };
    let Some(verification) = verification else {
        return Ok(found);
    };
    if verification.mode.tag() && verification.tag.is_none() {
        return Err(VerifyError::NoTag.into());
    }
    let short = &revision[..revision.len().min(12)];
    if verification.mode.commit() {
        let what = format!("commit {short}");
        let odb = repo.odb().map_err(cache_err)?;
        let raw = odb.read(oid).map_err(cache_err)?;
        // Pushed content git cannot read a signature from is refused, not retried.
        let signer = match split_commit(raw.data()) {
            Ok((payload, signature)) => verification.keys.verify(
                &what,
                &payload,
                signature.as_deref(),
                When::stated(found.committer.at),
            ),
            Err(message) => Err(VerifyError::Malformed { what, message }),
        };
        found.signer = Some(signer?);
    }
    if verification.mode.tag() {
        let Some(name) = verification.tag else {
            return Err(VerifyError::NoTag.into());
        };
        found.tag = Some(
            // What git cannot read of a pushed tag is the tag's fault: refused, not retried.
            signed_tag(&repo, name, oid, verification.keys).map_err(|e| match e {
                Tagged::Git(e) => SourceError::from(VerifyError::TagUnreadable {
                    tag: name.to_owned(),
                    message: e.message().to_owned(),
                }),
                Tagged::Verify(e) => e.into(),
            })?,
        );
    }
    Ok(found)
}

/// Most commits a range is read over, and most identities of each kind it keeps.
pub const MAX_RANGE_COMMITS: usize = 500;
pub const MAX_RANGE_IDENTITIES: usize = 100;

/// Who wrote the commits reachable from `to` and not from `from`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Range {
    pub commits: usize,
    /// Lower-case e-mail addresses, in the order first met.
    pub authors: Vec<String>,
    pub committers: Vec<String>,
    /// Fingerprints of `keys` that signed commits of the range (signing subkeys' too).
    pub signers: Vec<String>,
    /// Commits of the range no key of `keys` signed (with keys).
    pub unverified: usize,
    /// False without `from` (a first plan), when `from` is not in the cache or not an
    /// ancestor of `to` (history rewritten), or when a bound was reached.
    pub complete: bool,
}

/// Whether the cache holds `revision` with its history (not cut off by a shallow fetch).
pub fn has_history(cache: &Path, revision: &str) -> bool {
    let Ok(repo) = Repository::open_bare(cache) else {
        return false;
    };
    !repo.is_shallow()
        && git2::Oid::from_str(revision).is_ok_and(|oid| repo.find_commit(oid).is_ok())
}

/// The people of the commits from `from` (exclusive; `None`: `to` alone) to `to`.
pub fn range(
    cache: &Path,
    from: Option<&str>,
    to: &str,
    keys: Option<&TrustedKeys>,
) -> Result<Range, SourceError> {
    let cache_err = super::cache_error(cache);
    let repo = Repository::open_bare(cache).map_err(cache_err)?;
    let odb = repo.odb().map_err(cache_err)?;
    let to = git2::Oid::from_str(to).map_err(cache_err)?;
    let from = from.and_then(|f| git2::Oid::from_str(f).ok());
    // The same revision planned again: no commit is new.
    if from == Some(to) {
        return Ok(Range {
            complete: true,
            ..Range::default()
        });
    }
    let held = from.filter(|f| repo.find_commit(*f).is_ok());
    // What `git log from..to` lists, even after a force-push (then it is not whole: the
    // rewritten commits' people are not all there).
    let mut found = Range {
        complete: held.is_some_and(|f| repo.graph_descendant_of(to, f).unwrap_or(false)),
        ..Range::default()
    };
    let wanted: Vec<git2::Oid> = match held {
        Some(from) => {
            let mut walk = repo.revwalk().map_err(cache_err)?;
            walk.push(to).map_err(cache_err)?;
            walk.hide(from).map_err(cache_err)?;
            let mut wanted = Vec::new();
            for oid in walk {
                let Ok(oid) = oid else {
                    found.complete = false;
                    break;
                };
                if wanted.len() == MAX_RANGE_COMMITS {
                    found.complete = false;
                    break;
                }
                wanted.push(oid);
            }
            wanted
        }
        None => vec![to],
    };
    let keep = |list: &mut Vec<String>, value: String, complete: &mut bool| {
        if list.contains(&value) {
            return;
        }
        if list.len() == MAX_RANGE_IDENTITIES {
            *complete = false;
            return;
        }
        list.push(value);
    };
    for oid in wanted {
        let commit = repo.find_commit(oid).map_err(cache_err)?;
        found.commits += 1;
        let author = Person::of(&commit.author()).email.to_lowercase();
        let committer = Person::of(&commit.committer()).email.to_lowercase();
        keep(&mut found.authors, author, &mut found.complete);
        keep(&mut found.committers, committer, &mut found.complete);
        let Some(keys) = keys else { continue };
        let raw = odb.read(oid).map_err(cache_err)?;
        let at = When::stated(commit.committer().when().seconds());
        // Only a signature that verifies names its signer; any other proves nothing.
        let signer = match split_commit(raw.data()) {
            Ok((payload, Some(signature))) => keys.verify("", &payload, Some(&signature), at).ok(),
            _ => None,
        };
        match signer {
            Some(signer) => {
                keep(&mut found.signers, signer.fingerprint, &mut found.complete);
                if let Some(subkey) = signer.signing_subkey {
                    keep(&mut found.signers, subkey, &mut found.complete);
                }
            }
            None => found.unverified += 1,
        }
    }
    Ok(found)
}

enum Tagged {
    Git(git2::Error),
    Verify(VerifyError),
}

impl From<git2::Error> for Tagged {
    fn from(e: git2::Error) -> Self {
        Tagged::Git(e)
    }
}

fn signed_tag(
    repo: &Repository,
    name: &str,
    revision: git2::Oid,
    keys: &TrustedKeys,
) -> Result<SignedTag, Tagged> {
    let what = format!("tag {name}");
    let reference = repo.find_reference(&format!("refs/tags/{name}"))?;
    let target = reference
        .target()
        .ok_or_else(|| Tagged::Git(git2::Error::from_str("the tag reference is symbolic")))?;
    // A lightweight tag names the commit itself: there is nothing to have signed.
    let Ok(tag) = repo.find_tag(target) else {
        return Err(Tagged::Verify(VerifyError::Unsigned {
            what: format!("{what} (a lightweight tag)"),
        }));
    };
    // The tag object names itself: one signed as another tag cannot be moved here.
    if tag.name_bytes() != name.as_bytes() {
        return Err(Tagged::Verify(VerifyError::TagUnreadable {
            tag: name.to_owned(),
            message: format!(
                "it is a tag object named `{}`: a signed tag cannot be moved under another name",
                String::from_utf8_lossy(tag.name_bytes())
            ),
        }));
    }
    let points_at = tag.target()?.peel_to_commit()?.id();
    if points_at != revision {
        return Err(Tagged::Verify(VerifyError::TagMismatch {
            tag: name.to_owned(),
            target: points_at.to_string(),
            revision: revision.to_string(),
        }));
    }
    let odb = repo.odb()?;
    let raw = odb.read(target)?;
    let (payload, signature) = split_tag(raw.data());
    let tagger = tag.tagger().map(|t| Person::of(&t));
    let at = tagger.as_ref().map_or(0, |t| t.at);
    let signer = keys
        .verify(&what, payload, signature, When::stated(at))
        .map_err(Tagged::Verify)?;
    Ok(SignedTag {
        name: name.to_owned(),
        tagger,
        signer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str = include_str!("verify/testdata/payload");
    const BY_CAROL: &str = include_str!("verify/testdata/payload.carol.sig");
    const SIGNERS: &[u8] = include_bytes!("verify/testdata/allowed_signers");

    struct Cache {
        dir: tempfile::TempDir,
        repo: Repository,
    }

    impl Cache {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let repo = Repository::init_bare(dir.path()).unwrap();
            // The fixture's payload names the empty tree.
            repo.treebuilder(None).unwrap().write().unwrap();
            Cache { dir, repo }
        }

        fn object(&self, kind: git2::ObjectType, raw: &[u8]) -> git2::Oid {
            self.repo.odb().unwrap().write(kind, raw).unwrap()
        }

        fn tag(&self, reference: &str, named: &str, target: git2::Oid) {
            let raw = format!(
                "object {target}\ntype commit\ntag {named}\ntagger Ada <ada@example.com> 1765000000 +0000\n\n{named}\n"
            );
            let tag = self.object(git2::ObjectType::Tag, raw.as_bytes());
            self.repo
                .reference(&format!("refs/tags/{reference}"), tag, true, "test")
                .unwrap();
        }

        fn read(
            &self,
            revision: git2::Oid,
            mode: VerifyMode,
            tag: Option<&str>,
        ) -> Result<Provenance, SourceError> {
            let keys = TrustedKeys::parse([("allowed_signers", SIGNERS)]).unwrap();
            let verification = Verification {
                mode,
                keys: &keys,
                tag,
            };
            provenance(self.dir.path(), &revision.to_string(), Some(verification))
        }
    }

    fn label(result: Result<Provenance, SourceError>) -> String {
        let e = result.unwrap_err();
        format!("{}: {e}", e.label())
    }

    #[test]
    fn a_commit_signed_by_a_trusted_key_verifies_and_names_its_people() {
        let cache = Cache::new();
        let signed = cache.repo.commit_signed(PAYLOAD, BY_CAROL, None).unwrap();
        let found = cache.read(signed, VerifyMode::Head, None).unwrap();
        assert_eq!(found.author.email, "ada@example.com");
        assert_eq!(found.committer.at, 1_765_000_000);
        assert_eq!(found.signer.unwrap().identities, ["carol@example.com"]);
        let unsigned = cache.object(git2::ObjectType::Commit, PAYLOAD.as_bytes());
        assert!(
            label(cache.read(unsigned, VerifyMode::Head, None)).starts_with("Unsigned: commit")
        );
        // Without verification only the people are read.
        let plain = provenance(cache.dir.path(), &unsigned.to_string(), None).unwrap();
        assert_eq!((plain.author.name.as_str(), plain.signer), ("Ada", None));
    }

    fn child(cache: &Cache, parent: git2::Oid, who: &str) -> git2::Oid {
        let raw = format!(
            "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent {parent}\nauthor {who} <{who}@Example.com> 1765000001 +0000\ncommitter CI <ci@example.com> 1765000001 +0000\n\nby {who}\n"
        );
        cache.object(git2::ObjectType::Commit, raw.as_bytes())
    }

    #[test]
    fn a_range_names_who_wrote_committed_and_signed_its_commits() {
        let cache = Cache::new();
        let keys = TrustedKeys::parse([("allowed_signers", SIGNERS)]).unwrap();
        let root = cache.repo.commit_signed(PAYLOAD, BY_CAROL, None).unwrap();
        let b = child(&cache, root, "bea");
        let c = child(&cache, b, "cid");
        let dir = cache.dir.path();
        let since = range(dir, Some(&root.to_string()), &c.to_string(), Some(&keys)).unwrap();
        assert_eq!(since.commits, 2);
        assert_eq!(since.authors, ["cid@example.com", "bea@example.com"]);
        assert_eq!(since.committers, ["ci@example.com"]);
        // Neither is signed: the range is read whole, but two commits prove nothing.
        assert!(since.signers.is_empty() && since.complete);
        assert_eq!(since.unverified, 2);
        // The first plan: the planned commit alone, its trusted signer named; not whole.
        let first = range(dir, None, &root.to_string(), Some(&keys)).unwrap();
        assert_eq!(
            (first.commits, first.authors.as_slice(), first.complete),
            (1, &["ada@example.com".to_owned()][..], false)
        );
        assert_eq!((first.signers.len(), first.unverified), (1, 0));
        assert!(first.signers[0].starts_with("SHA256:"));
        // History rewritten (the revision last applied is no ancestor): what `git log
        // from..to` lists, and the range says it is not whole.
        let other = child(&cache, root, "dov");
        let rewritten = range(dir, Some(&b.to_string()), &other.to_string(), None).unwrap();
        assert_eq!(
            (
                rewritten.commits,
                rewritten.authors.as_slice(),
                rewritten.complete
            ),
            (1, &["dov@example.com".to_owned()][..], false)
        );
        // The same revision again: nothing new.
        let same = range(dir, Some(&c.to_string()), &c.to_string(), None).unwrap();
        assert_eq!((same.commits, same.complete), (0, true));
    }

    #[test]
    fn a_commit_git_cannot_read_a_signature_from_is_refused_not_retried() {
        let cache = Cache::new();
        let twice = PAYLOAD.replacen("\n\n", "\ngpgsig a\ngpgsig b\n\n", 1);
        let odd = cache.object(git2::ObjectType::Commit, twice.as_bytes());
        let said = label(cache.read(odd, VerifyMode::Head, None));
        assert!(said.starts_with("InvalidSignature: commit"), "{said}");
        assert!(said.contains("two gpgsig headers"), "{said}");
    }

    #[test]
    fn a_tag_must_be_annotated_name_itself_and_point_at_the_revision() {
        let cache = Cache::new();
        let commit = cache.object(git2::ObjectType::Commit, PAYLOAD.as_bytes());
        let other = cache.object(
            git2::ObjectType::Commit,
            PAYLOAD.replace("first", "second").as_bytes(),
        );
        cache
            .repo
            .reference("refs/tags/light", commit, true, "test")
            .unwrap();
        let said = label(cache.read(commit, VerifyMode::Tag, Some("light")));
        assert!(
            said.starts_with("Unsigned: tag light (a lightweight tag)"),
            "{said}"
        );
        cache.tag("release", "rc1", commit);
        let said = label(cache.read(commit, VerifyMode::Tag, Some("release")));
        assert!(said.contains("a tag object named `rc1`"), "{said}");
        cache.tag("release", "release", other);
        let said = label(cache.read(commit, VerifyMode::Tag, Some("release")));
        assert!(
            said.starts_with(&format!(
                "TagMismatch: tag release points at commit {other}"
            )),
            "{said}"
        );
        cache.tag("release", "release", commit);
        let said = label(cache.read(commit, VerifyMode::Tag, Some("release")));
        assert!(
            said.starts_with("Unsigned: tag release is not signed"),
            "{said}"
        );
        let said = label(cache.read(commit, VerifyMode::Tag, Some("missing")));
        assert!(
            said.starts_with("TagMismatch: tag missing cannot be verified"),
            "{said}"
        );
        assert!(label(cache.read(commit, VerifyMode::TagAndHead, None)).starts_with("NoTag"));
    }
}
