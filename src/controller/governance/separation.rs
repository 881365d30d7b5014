//! Separation of duties: the people who wrote a plan's commits do not approve it. Git
//! identities (e-mail addresses, signing keys' fingerprints) are mapped to Kubernetes
//! users by the policies; an identity no entry maps excludes nobody. Pure.

use crate::api::governance::GitIdentity;
use crate::api::provenance::{CommitRange, RunCommit};

use super::quorum::Author;

/// The users `mapping` names for the identities of `range`, each once, with the first
/// identity that named them.
pub fn authors(mapping: &[GitIdentity], range: &CommitRange) -> Vec<Author> {
    let emails = range.authors.iter().chain(&range.committers);
    let mut found: Vec<Author> = Vec::new();
    let mut add = |user: &str, identity: String| {
        if !found.iter().any(|a| a.user == user) {
            found.push(Author {
                user: user.to_owned(),
                identity,
            });
        }
    };
    for email in emails {
        for m in mapping {
            if m.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
            {
                add(&m.user, format!("e-mail {email}"));
            }
        }
    }
    for fingerprint in &range.signers {
        for m in mapping {
            if m.fingerprint.as_deref() == Some(fingerprint.as_str()) {
                add(&m.user, format!("signing key {fingerprint}"));
            }
        }
    }
    found
}

/// The identities of `range` no entry of `mapping` names.
pub fn unmapped(mapping: &[GitIdentity], range: &CommitRange) -> Vec<String> {
    let mapped_email = |e: &String| {
        mapping.iter().any(|m| {
            m.email
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(e))
        })
    };
    let mapped_key = |f: &String| mapping.iter().any(|m| m.fingerprint.as_ref() == Some(f));
    let mut out: Vec<String> = Vec::new();
    for e in range.authors.iter().chain(&range.committers) {
        if !mapped_email(e) && !out.contains(e) {
            out.push(e.clone());
        }
    }
    out.extend(range.signers.iter().filter(|f| !mapped_key(f)).cloned());
    out
}

/// What rules see of a plan's source as `plan.source`.
#[derive(serde::Serialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SourceFacts {
    /// Whether the revision verified under the repository's spec.verify.
    pub verified: bool,
    /// The commit's author and committer e-mail addresses, and the range's when read
    /// (with separation of duties), lower-case.
    pub authors: Vec<String>,
    pub committers: Vec<String>,
    /// Fingerprints of trusted keys that signed the commit, its tag or the range.
    pub signers: Vec<String>,
    /// Identities of the range no separation-of-duties mapping names.
    pub unmapped: Vec<String>,
    /// Whether the range was read whole (true when none was read).
    pub complete: bool,
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
        authors: vec![commit.author.email.to_lowercase()],
        committers: vec![commit.committer.email.to_lowercase()],
        complete: true,
        ..SourceFacts::default()
    };
    let signatures = commit
        .signature
        .iter()
        .chain(commit.tag.as_ref().map(|t| &t.signature));
    out.signers
        .extend(signatures.map(|s| s.fingerprint.clone()));
    if let Some(range) = &commit.range {
        let merge = |into: &mut Vec<String>, from: &[String]| {
            for value in from {
                if !into.contains(value) {
                    into.push(value.clone());
                }
            }
        };
        merge(&mut out.authors, &range.authors);
        merge(&mut out.committers, &range.committers);
        merge(&mut out.signers, &range.signers);
        out.complete = range.complete;
        if let Some(mapping) = mapping {
            out.unmapped = unmapped(mapping, range);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(email: Option<&str>, fingerprint: Option<&str>, user: &str) -> GitIdentity {
        GitIdentity {
            email: email.map(str::to_owned),
            fingerprint: fingerprint.map(str::to_owned),
            user: user.into(),
        }
    }

    #[test]
    fn authors_committers_and_signers_map_to_users_once() {
        let mapping = [
            identity(Some("Ada@Example.com"), None, "ada"),
            identity(None, Some("SHA256:carol"), "carol"),
            identity(Some("ci@example.com"), None, "ada"),
        ];
        let range = CommitRange {
            from: Some("a".repeat(40)),
            commits: 3,
            authors: vec!["ada@example.com".into(), "zed@example.com".into()],
            committers: vec!["ci@example.com".into()],
            signers: vec!["SHA256:carol".into(), "SHA256:unknown".into()],
            complete: true,
        };
        let found = authors(&mapping, &range);
        let users: Vec<(&str, &str)> = found
            .iter()
            .map(|a| (a.user.as_str(), a.identity.as_str()))
            .collect();
        assert_eq!(
            users,
            [
                ("ada", "e-mail ada@example.com"),
                ("carol", "signing key SHA256:carol")
            ]
        );
        assert_eq!(
            unmapped(&mapping, &range),
            ["zed@example.com", "SHA256:unknown"]
        );
        assert!(authors(&[], &range).is_empty());
    }
}
