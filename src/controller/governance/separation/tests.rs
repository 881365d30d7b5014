use super::*;
use crate::api::provenance::{CommitRange, GitPerson, VerifiedSignature, VerifiedTag, VerifyMode};

fn identity(email: Option<&str>, fingerprint: Option<&str>, user: &str) -> GitIdentity {
    GitIdentity {
        email: email.map(str::to_owned),
        fingerprint: fingerprint.map(str::to_owned),
        user: user.into(),
    }
}

fn person(email: &str) -> GitPerson {
    GitPerson {
        name: email.split('@').next().unwrap().into(),
        email: email.into(),
        at: "2026-12-06T20:00:00Z".into(),
    }
}

fn signed(fingerprint: &str) -> VerifiedSignature {
    VerifiedSignature {
        kind: "OpenPGP".into(),
        fingerprint: fingerprint.into(),
        signing_subkey: Some("ABCD 1234".into()),
        identities: Vec::new(),
    }
}

/// A run that read git and recorded `commit`.
fn source(commit: RunCommit) -> RunSource {
    RunSource {
        url: Some("ssh://git.example/fleet.git".into()),
        revision: "b".repeat(40),
        commit: Some(commit),
        ..RunSource::default()
    }
}

fn commit(range: Option<CommitRange>) -> RunCommit {
    RunCommit {
        author: person("Ada@Example.com"),
        committer: person("ci@example.com"),
        verified: Some(VerifyMode::TagAndHead),
        signature: Some(signed("0a8a c05d")),
        tag: Some(VerifiedTag {
            name: "release".into(),
            tagger: Some(person("tess@example.com")),
            signature: VerifiedSignature {
                kind: "SSH".into(),
                fingerprint: "SHA256:Tess".into(),
                signing_subkey: None,
                identities: Vec::new(),
            },
        }),
        range,
    }
}

fn range(complete: bool, unverified: u32) -> CommitRange {
    CommitRange {
        from: Some("a".repeat(40)),
        commits: 3,
        authors: vec!["bea@example.com".into(), "zed@example.com".into()],
        committers: vec!["ci@example.com".into()],
        signers: vec!["SHA256:carol".into()],
        unverified,
        complete,
    }
}

fn users(authors: &Authors) -> Vec<(&str, &str)> {
    authors
        .users
        .iter()
        .map(|a| (a.user.as_str(), a.identity.as_str()))
        .collect()
}

#[test]
fn the_commit_its_tag_and_its_range_name_their_people() {
    let mapping = [
        identity(Some("ada@example.COM"), None, "ada"),
        identity(None, Some("SHA256:carol"), "carol"),
        identity(Some("bea@example.com"), None, "bea"),
        identity(None, Some("SHA256:Tess"), "tess"),
        identity(None, Some("abcd1234"), "sub"),
        identity(Some("ci@example.com"), None, "ada"),
    ];
    let run = source(commit(Some(range(true, 0))));
    let found = of_run(&mapping, Some(&run));
    assert!(!found.unknown);
    assert_eq!(
        users(&found),
        [
            ("ada", "e-mail ada@example.com"),
            ("bea", "e-mail bea@example.com"),
            ("sub", "signing key ABCD1234"),
            ("tess", "signing key SHA256:Tess"),
            ("carol", "signing key SHA256:carol"),
        ]
    );
    let seen = facts(run.commit.as_ref(), Some(&mapping));
    assert_eq!(seen.committers, ["ci@example.com", "tess@example.com"]);
    assert_eq!(
        seen.unmapped,
        ["zed@example.com", "tess@example.com", "0A8AC05D"]
    );
    assert!(seen.complete && seen.verified);
}

#[test]
fn what_is_not_known_never_lets_anyone_through() {
    // Recorded before separation of duties applied: nobody's approval counts.
    let before = source(commit(None));
    assert!(of_run(&[], Some(&before)).unknown);
    // A rollback or drift correction restores approved content: nobody wrote it now.
    let restoring = RunSource {
        restores: Some("fleet-1".into()),
        ..before.clone()
    };
    assert_eq!(of_run(&[], Some(&restoring)), Authors::default());
    // A range not read whole, or with unsigned commits, asks for one more approver.
    for (complete, unverified, extra) in [(true, 0, 0), (false, 0, 1), (true, 2, 1)] {
        let seen = facts(Some(&commit(Some(range(complete, unverified)))), None);
        assert_eq!(
            extra_approvers(true, &seen),
            extra,
            "{complete} {unverified}"
        );
        assert_eq!(extra_approvers(false, &seen), 0);
    }
}

#[test]
fn a_mapping_entry_names_exactly_one_identity() {
    assert!(invalid(&identity(Some("a@b"), None, "a")).is_none());
    assert!(invalid(&identity(None, Some("SHA256:x"), "a")).is_none());
    assert!(invalid(&identity(Some("a@b"), Some("SHA256:x"), "a")).is_some());
    assert!(invalid(&identity(None, None, "a")).is_some());
}
