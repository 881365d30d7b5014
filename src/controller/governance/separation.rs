//! Separation of duties: the people who wrote a plan's commits do not approve it. Git
//! identities (e-mail addresses, signing keys' fingerprints) are mapped to Kubernetes
//! users by the policies; an identity no entry maps excludes nobody, and a source that
//! could not be read whole asks for one more approver. Pure.

use crate::api::governance::GitIdentity;
use crate::api::provenance::RunCommit;
use crate::api::syncrun::RunSource;

pub use super::quorum::{Author, Authors};

/// What rules see of a plan's source as `plan.source`.
#[derive(serde::Serialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SourceFacts {
    /// Whether the revision verified under the repository's spec.verify.
    pub verified: bool,
    /// E-mail addresses (lower-case) of the commit's author, and of the range's authors
    /// when one was read (with separation of duties).
    pub authors: Vec<String>,
    /// E-mail addresses of committers, and of the tag's tagger.
    pub committers: Vec<String>,
    /// Fingerprints of trusted keys that signed the commit, its tag or the range (the
    /// signing subkey's too).
    pub signers: Vec<String>,
    /// Commits of the range no trusted key signed (with spec.verify).
    pub unverified: u32,
    /// Identities of the range no separation-of-duties mapping names.
    pub unmapped: Vec<String>,
    /// Whether the range was read whole and every commit of it verified (with
    /// spec.verify); true when no range was read.
    pub complete: bool,
}

fn email(e: &str) -> String {
    e.trim().to_lowercase()
}

/// Fingerprints as people copy them: gpg prints hex in groups, some lower-case; an SSH
/// fingerprint's base64 is case-sensitive.
pub fn fingerprint(f: &str) -> String {
    let joined: String = f.split_whitespace().collect();
    match joined.strip_prefix("SHA256:") {
        Some(_) => joined,
        None => joined.to_uppercase(),
    }
}

fn add(into: &mut Vec<String>, value: String) {
    if !into.contains(&value) {
        into.push(value);
    }
}

/// `plan.source` for a run that recorded `commit`, under `mapping` (separation of
/// duties, if any policy asks for it).
pub fn facts(commit: Option<&RunCommit>, mapping: Option<&[GitIdentity]>) -> SourceFacts {
    let Some(commit) = commit else {
        return SourceFacts {
            complete: true,
            ..SourceFacts::default()
        };
    };
    let mut out = SourceFacts {
        verified: commit.verified.is_some(),
        authors: vec![email(&commit.author.email)],
        committers: vec![email(&commit.committer.email)],
        complete: true,
        ..SourceFacts::default()
    };
    if let Some(tagger) = commit.tag.as_ref().and_then(|t| t.tagger.as_ref()) {
        add(&mut out.committers, email(&tagger.email));
    }
    let signatures = commit
        .signature
        .iter()
        .chain(commit.tag.as_ref().map(|t| &t.signature));
    for s in signatures {
        add(&mut out.signers, fingerprint(&s.fingerprint));
        if let Some(sub) = &s.signing_subkey {
            add(&mut out.signers, fingerprint(sub));
        }
    }
    if let Some(range) = &commit.range {
        range
            .authors
            .iter()
            .for_each(|a| add(&mut out.authors, email(a)));
        range
            .committers
            .iter()
            .for_each(|c| add(&mut out.committers, email(c)));
        range
            .signers
            .iter()
            .for_each(|f| add(&mut out.signers, fingerprint(f)));
        out.unverified = range.unverified;
        out.complete = range.complete && range.unverified == 0;
    }
    if let Some(mapping) = mapping {
        out.unmapped = unmapped(mapping, &out);
    }
    out
}

fn maps_email(m: &GitIdentity, e: &str) -> bool {
    m.email.as_deref().is_some_and(|x| email(x) == e)
}

fn maps_key(m: &GitIdentity, f: &str) -> bool {
    m.fingerprint
        .as_deref()
        .is_some_and(|x| fingerprint(x) == f)
}

/// Who may not approve the plan of a run whose source is `source`.
pub fn of_run(mapping: &[GitIdentity], source: Option<&RunSource>) -> Authors {
    // Nothing read from git (a rollback or a drift correction restores content people
    // approved before; a deletion writes none): nobody wrote it now.
    let Some(source) = source.filter(|s| s.url.is_some() && s.restores.is_none()) else {
        return Authors::default();
    };
    let Some(commit) = source.commit.as_ref().filter(|c| c.range.is_some()) else {
        return Authors {
            unknown: true,
            ..Authors::default()
        };
    };
    let facts = facts(Some(commit), Some(mapping));
    let mut users: Vec<Author> = Vec::new();
    let mut name = |user: &str, identity: String| {
        if !users.iter().any(|a| a.user == user) {
            users.push(Author {
                user: user.to_owned(),
                identity,
            });
        }
    };
    for e in facts.authors.iter().chain(&facts.committers) {
        mapping
            .iter()
            .filter(|m| maps_email(m, e))
            .for_each(|m| name(&m.user, format!("e-mail {e}")));
    }
    for f in &facts.signers {
        mapping
            .iter()
            .filter(|m| maps_key(m, f))
            .for_each(|m| name(&m.user, format!("signing key {f}")));
    }
    Authors {
        users,
        unknown: false,
    }
}

/// The identities of `facts` no entry of `mapping` names.
fn unmapped(mapping: &[GitIdentity], facts: &SourceFacts) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in facts.authors.iter().chain(&facts.committers) {
        if !mapping.iter().any(|m| maps_email(m, e)) {
            add(&mut out, e.clone());
        }
    }
    for f in &facts.signers {
        if !mapping.iter().any(|m| maps_key(m, f)) {
            add(&mut out, f.clone());
        }
    }
    out
}

/// Approvers a plan needs beyond its rules' and policies' under separation of duties:
/// one more when its source was not read whole or not every commit of it verified.
pub fn extra_approvers(separates: bool, facts: &SourceFacts) -> u32 {
    u32::from(separates && !facts.complete)
}

/// Why a mapping entry is unusable, if it is: it must name exactly one identity.
pub fn invalid(identity: &GitIdentity) -> Option<String> {
    match (&identity.email, &identity.fingerprint) {
        (Some(_), None) | (None, Some(_)) => None,
        _ => Some(format!(
            "separationOfDuties identity of user {}: set exactly one of email and fingerprint",
            identity.user
        )),
    }
}

#[cfg(test)]
mod tests;
