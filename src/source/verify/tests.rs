//! Signatures made by real gpg and `ssh-keygen -Y sign` (see testdata/README.md).

use super::*;

const PAYLOAD: &[u8] = include_bytes!("testdata/payload");
const ADA: &[u8] = include_bytes!("testdata/ada.asc");
const BOB: &[u8] = include_bytes!("testdata/bob.asc");
const SIGNERS: &[u8] = include_bytes!("testdata/allowed_signers");
const BY_ADA: &[u8] = include_bytes!("testdata/payload.ada.asc");
const BY_BOB: &[u8] = include_bytes!("testdata/payload.bob.asc");
const BY_CAROL: &[u8] = include_bytes!("testdata/payload.carol.sig");
const BY_CAROL_FOR_FILES: &[u8] = include_bytes!("testdata/payload.carol-file.sig");
const BY_DAVE: &[u8] = include_bytes!("testdata/payload.dave.sig");
const DAVE: &str = include_str!("testdata/dave.pub");

const ADA_FPR: &str = "0A8AC05DEBFDE47B2940F59C6A68CB8E48F003A1";
const ADA_SIGNING_SUBKEY: &str = "E4DCD3B9729EFA47E4555F61D38B445C1009496D";
const BOB_FPR: &str = "D89E16BA349D5C875DD910DB4A473439AF9B7F18";
const CAROL_FPR: &str = "SHA256:wgFJVanvq3yhlThYgJMEpGwRLxQWeklZlCV/VrtRLaY";
/// When the payload says it was committed (gpg's keys above expire two years after
/// they were made, in 2028).
const AT: i64 = 1_765_000_000;

fn keys(entries: &[(&str, &[u8])]) -> TrustedKeys {
    TrustedKeys::parse(entries.iter().copied()).unwrap()
}

fn all() -> TrustedKeys {
    keys(&[
        ("ada.asc", ADA),
        ("bob.asc", BOB),
        (ALLOWED_SIGNERS, SIGNERS),
    ])
}

#[test]
fn openpgp_signatures_by_a_subkey_and_by_a_primary_key_verify() {
    let ada = all().verify("commit 1", PAYLOAD, Some(BY_ADA), AT).unwrap();
    assert_eq!(ada.kind, SignatureKind::OpenPgp);
    assert_eq!(ada.fingerprint, ADA_FPR);
    assert_eq!(ada.signing_subkey.as_deref(), Some(ADA_SIGNING_SUBKEY));
    assert_eq!(ada.identities, ["Ada <ada@example.com>"]);
    let bob = all().verify("commit 1", PAYLOAD, Some(BY_BOB), AT).unwrap();
    assert_eq!(
        (bob.fingerprint.as_str(), bob.signing_subkey),
        (BOB_FPR, None)
    );
}

#[test]
fn ssh_signatures_verify_against_allowed_signers() {
    let carol = all()
        .verify("commit 1", PAYLOAD, Some(BY_CAROL), AT)
        .unwrap();
    assert_eq!(carol.kind, SignatureKind::Ssh);
    assert_eq!(carol.fingerprint, CAROL_FPR);
    assert_eq!(carol.identities, ["carol@example.com"]);
}

#[test]
fn a_changed_byte_fails_with_its_reason() {
    let mut changed = PAYLOAD.to_vec();
    changed[60] ^= 1;
    for signature in [BY_ADA, BY_BOB, BY_CAROL] {
        let e = all()
            .verify("commit 1", &changed, Some(signature), AT)
            .unwrap_err();
        assert_eq!(e.label(), "InvalidSignature", "{e}");
        assert!(e.to_string().starts_with("the "), "{e}");
        assert!(e.to_string().contains("of commit 1 does not verify"), "{e}");
    }
}

#[test]
fn keys_not_trusted_are_named() {
    let only_ada = keys(&[("ada.asc", ADA)]);
    let e = only_ada
        .verify("tag v1", PAYLOAD, Some(BY_BOB), AT)
        .unwrap_err();
    assert_eq!(e.label(), "UntrustedKey");
    assert_eq!(
        e.to_string(),
        format!("tag v1 is signed by OpenPGP key {BOB_FPR}, which the trusted keys do not hold")
    );
    let e = only_ada
        .verify("tag v1", PAYLOAD, Some(BY_DAVE), AT)
        .unwrap_err();
    assert_eq!(e.label(), "UntrustedKey");
    assert!(e.to_string().contains("SSH key SHA256:"), "{e}");
    // Dave's key is an allowed signer only for other namespaces.
    let line = format!("dave@example.com namespaces=\"file,email\" {}", DAVE.trim());
    let e = keys(&[(ALLOWED_SIGNERS, line.as_bytes())])
        .verify("commit 1", PAYLOAD, Some(BY_DAVE), AT)
        .unwrap_err();
    assert_eq!(e.label(), "UntrustedKey");
    assert!(
        e.to_string().contains("does not allow namespace `git`"),
        "{e}"
    );
}

#[test]
fn validity_windows_and_expiry_are_read_at_the_signing_time() {
    let line = format!(
        "dave@example.com valid-after=\"20260101\",valid-before=\"20270101Z\" {}",
        DAVE.trim()
    );
    let dave = keys(&[(ALLOWED_SIGNERS, line.as_bytes())]);
    assert!(
        dave.verify("c", PAYLOAD, Some(BY_DAVE), 1_780_000_000)
            .is_ok()
    );
    for outside in [AT, 1_800_000_000] {
        let e = dave
            .verify("c", PAYLOAD, Some(BY_DAVE), outside)
            .unwrap_err();
        assert_eq!(e.label(), "UntrustedKey", "{e}");
    }
    // gpg's keys expire two years after they were made.
    let e = all()
        .verify("c", PAYLOAD, Some(BY_BOB), 1_900_000_000)
        .unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
}

#[test]
fn a_signature_for_another_namespace_is_not_a_commit_signature() {
    let e = all()
        .verify("commit 1", PAYLOAD, Some(BY_CAROL_FOR_FILES), AT)
        .unwrap_err();
    assert_eq!(e.label(), "InvalidSignature");
    assert!(e.to_string().contains("namespace `file`, not `git`"), "{e}");
}

#[test]
fn unsigned_and_unsupported_signatures_are_refused() {
    let e = all().verify("commit 1", PAYLOAD, None, AT).unwrap_err();
    assert_eq!(
        (e.label(), e.to_string().as_str()),
        ("Unsigned", "commit 1 is not signed")
    );
    let x509 = b"-----BEGIN SIGNED MESSAGE-----\nMIAG\n-----END SIGNED MESSAGE-----\n";
    let e = all()
        .verify("commit 1", PAYLOAD, Some(x509), AT)
        .unwrap_err();
    assert_eq!(e.label(), "UnsupportedSignature");
    let garbage =
        b"-----BEGIN PGP SIGNATURE-----\n\nnot base64 at all\n-----END PGP SIGNATURE-----\n";
    let e = all()
        .verify("commit 1", PAYLOAD, Some(garbage), AT)
        .unwrap_err();
    assert_eq!(e.label(), "InvalidSignature");
    let e = all()
        .verify("commit 1", PAYLOAD, Some(&BY_CAROL[..120]), AT)
        .unwrap_err();
    assert_eq!(e.label(), "InvalidSignature");
}

#[test]
fn unreadable_trusted_keys_are_located_errors() {
    let e = TrustedKeys::parse([("team.asc", b"hello".as_slice())]).unwrap_err();
    assert_eq!(e.label(), "InvalidTrustedKeys");
    assert!(
        e.to_string().starts_with(
            "trusted keys, entry `team.asc`: no `-----BEGIN PGP PUBLIC KEY BLOCK-----`"
        ),
        "{e}"
    );
    let mut cut = ADA[..300].to_vec();
    cut.extend_from_slice(b"\n-----END PGP PUBLIC KEY BLOCK-----\n");
    let e = TrustedKeys::parse([("ada.asc", cut.as_slice())]).unwrap_err();
    assert_eq!(e.label(), "InvalidTrustedKeys", "{e}");
    let signers = format!(
        "# team\n\nada@example.com {}\nbob@example.com cert-authority {}\n",
        DAVE.trim(),
        DAVE.trim()
    );
    let e = TrustedKeys::parse([(ALLOWED_SIGNERS, signers.as_bytes())]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "trusted keys, entry `allowed_signers` line 4: `cert-authority` is not supported: list the signers' keys"
    );
    for (line, message) in [
        ("ada@example.com", "line 1: no key"),
        ("ada@example.com ssh-ed25519", "is not followed by a key"),
        ("ada@example.com ssh-ed25519 AAAA", "cannot be read"),
        ("a b c ssh-ed25519 AAAA", "expected `principals [options]"),
        (
            "a valid-after=\"yesterday\" ssh-ed25519 AAAA",
            "wants YYYYMMDD",
        ),
        ("a bogus ssh-ed25519 AAAA", "unknown option `bogus`"),
    ] {
        let e = TrustedKeys::parse([(ALLOWED_SIGNERS, line.as_bytes())]).unwrap_err();
        assert!(e.to_string().contains(message), "{line}: {e}");
    }
    let e = TrustedKeys::parse([]).unwrap_err();
    assert!(e.to_string().contains("no keys"), "{e}");
    // Two armored blocks in one entry, as `cat a.asc b.asc` makes them.
    let both = [ADA, BOB].concat();
    let two = keys(&[("team.asc", &both)]);
    assert!(two.verify("c", PAYLOAD, Some(BY_BOB), AT).is_ok());
    assert!(two.verify("c", PAYLOAD, Some(BY_ADA), AT).is_ok());
}

#[test]
fn a_tag_splits_at_its_last_signature() {
    let raw = b"object 1\ntype commit\ntag v1\ntagger A <a@b> 1 +0000\n\nrelease\n-----BEGIN PGP SIGNATURE-----\nquoted\n-----END PGP SIGNATURE-----\n-----BEGIN SSH SIGNATURE-----\nx\n-----END SSH SIGNATURE-----\n";
    let (payload, signature) = split_tag(raw);
    assert!(payload.ends_with(b"-----END PGP SIGNATURE-----\n"));
    assert!(
        signature
            .unwrap()
            .starts_with(b"-----BEGIN SSH SIGNATURE-----")
    );
    let (payload, signature) = split_tag(b"object 1\n\nunsigned\n");
    assert_eq!((payload.len(), signature), (19, None));
}
