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
const ADA_CERTIFIED: &[u8] = include_bytes!("testdata/ada-certified-by-bob.asc");
const EVE_REVOKED: &[u8] = include_bytes!("testdata/eve-revoked.asc");
const BY_EVE: &[u8] = include_bytes!("testdata/payload.eve.asc");
const BY_BOB_SHA1: &[u8] = include_bytes!("testdata/payload.bob-sha1.asc");
const BY_BOB_TEXT: &[u8] = include_bytes!("testdata/payload.bob-text.asc");

const ADA_FPR: &str = "D7A9EA3E6C6F4EA8C6E07DECE491DD12C85E5B65";
const ADA_SIGNING_SUBKEY: &str = "A8D99BBEEEA16500334B842C4E9B8FA0011BF76F";
const BOB_FPR: &str = "EAEFD5203660FA34EA80D2D72D945FAE38B388C5";
const CAROL_FPR: &str = "SHA256:J9J+g1TOUP76UQ7ULlrxLq4DaOD8wmTPf3prhlf6s/E";
/// When the payload says it was committed (gpg's keys above expire two years after
/// they were made, in 2028).
const AT: i64 = 1_765_000_000;

/// Judged at `t`, as stated and as now.
fn at(t: i64) -> When {
    When { stated: t, now: t }
}

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
    let ada = all()
        .verify("commit 1", PAYLOAD, Some(BY_ADA), at(AT))
        .unwrap();
    assert_eq!(ada.kind, SignatureKind::OpenPgp);
    assert_eq!(ada.fingerprint, ADA_FPR);
    assert_eq!(ada.signing_subkey.as_deref(), Some(ADA_SIGNING_SUBKEY));
    assert_eq!(ada.identities, ["Ada <ada@example.com>"]);
    let bob = all()
        .verify("commit 1", PAYLOAD, Some(BY_BOB), at(AT))
        .unwrap();
    assert_eq!(
        (bob.fingerprint.as_str(), bob.signing_subkey),
        (BOB_FPR, None)
    );
}

#[test]
fn certifications_by_others_neither_count_nor_spoil_a_key() {
    let certified = keys(&[("ada.asc", ADA_CERTIFIED)]);
    let ada = certified
        .verify("c", PAYLOAD, Some(BY_ADA), at(AT))
        .unwrap();
    assert_eq!(ada.fingerprint, ADA_FPR);
    // Bob certified Ada; that does not make Bob trusted.
    let e = certified
        .verify("c", PAYLOAD, Some(BY_BOB), at(AT))
        .unwrap_err();
    assert_eq!(e.label(), "UntrustedKey");
}

#[test]
fn ssh_signatures_verify_against_allowed_signers() {
    let carol = all()
        .verify("commit 1", PAYLOAD, Some(BY_CAROL), at(AT))
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
            .verify("commit 1", &changed, Some(signature), at(AT))
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
        .verify("tag v1", PAYLOAD, Some(BY_BOB), at(AT))
        .unwrap_err();
    assert_eq!(e.label(), "UntrustedKey");
    assert_eq!(
        e.to_string(),
        format!("tag v1 is signed by OpenPGP key {BOB_FPR}, which the trusted keys do not hold")
    );
    let e = only_ada
        .verify("tag v1", PAYLOAD, Some(BY_DAVE), at(AT))
        .unwrap_err();
    assert_eq!(e.label(), "UntrustedKey");
    assert!(e.to_string().contains("SSH key SHA256:"), "{e}");
    // Dave's key is an allowed signer only for other namespaces.
    let line = format!("dave@example.com namespaces=\"file,email\" {}", DAVE.trim());
    let e = keys(&[(ALLOWED_SIGNERS, line.as_bytes())])
        .verify("commit 1", PAYLOAD, Some(BY_DAVE), at(AT))
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
        dave.verify("c", PAYLOAD, Some(BY_DAVE), at(1_780_000_000))
            .is_ok()
    );
    for outside in [AT, 1_800_000_000] {
        let e = dave
            .verify("c", PAYLOAD, Some(BY_DAVE), at(outside))
            .unwrap_err();
        assert_eq!(e.label(), "UntrustedKey", "{e}");
    }
    // gpg's keys expire two years after they were made; a signature stating an
    // earlier time does not make an expired key good again.
    let backdated = When {
        stated: AT,
        now: 1_900_000_000,
    };
    let e = all()
        .verify("c", PAYLOAD, Some(BY_BOB), backdated)
        .unwrap_err();
    assert!(e.to_string().contains("the key expired"), "{e}");
    let e = all()
        .verify("c", PAYLOAD, Some(BY_BOB), at(1_900_000_000))
        .unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
}

#[test]
fn weak_digests_text_signatures_and_revoked_keys_do_not_count() {
    let e = all()
        .verify("c", PAYLOAD, Some(BY_BOB_SHA1), at(AT))
        .unwrap_err();
    assert_eq!(e.label(), "InvalidSignature");
    assert!(
        e.to_string().contains("Sha1 digest, which can be forged"),
        "{e}"
    );
    let e = all()
        .verify("c", PAYLOAD, Some(BY_BOB_TEXT), at(AT))
        .unwrap_err();
    assert!(e.to_string().contains("not a binary one"), "{e}");
    let eve = keys(&[("eve.asc", EVE_REVOKED)]);
    let e = eve.verify("c", PAYLOAD, Some(BY_EVE), at(AT)).unwrap_err();
    assert_eq!(e.label(), "UntrustedKey");
    assert!(e.to_string().ends_with("but the key is revoked"), "{e}");
}

#[test]
fn a_signature_for_another_namespace_is_not_a_commit_signature() {
    let e = all()
        .verify("commit 1", PAYLOAD, Some(BY_CAROL_FOR_FILES), at(AT))
        .unwrap_err();
    assert_eq!(e.label(), "InvalidSignature");
    assert!(e.to_string().contains("namespace `file`, not `git`"), "{e}");
}

#[test]
fn unsigned_and_unsupported_signatures_are_refused() {
    let e = all().verify("commit 1", PAYLOAD, None, at(AT)).unwrap_err();
    assert_eq!(
        (e.label(), e.to_string().as_str()),
        ("Unsigned", "commit 1 is not signed")
    );
    let x509 = b"-----BEGIN SIGNED MESSAGE-----\nMIAG\n-----END SIGNED MESSAGE-----\n";
    let e = all()
        .verify("commit 1", PAYLOAD, Some(x509), at(AT))
        .unwrap_err();
    assert_eq!(e.label(), "UnsupportedSignature");
    let garbage =
        b"-----BEGIN PGP SIGNATURE-----\n\nnot base64 at all\n-----END PGP SIGNATURE-----\n";
    let e = all()
        .verify("commit 1", PAYLOAD, Some(garbage), at(AT))
        .unwrap_err();
    assert_eq!(e.label(), "InvalidSignature");
    let e = all()
        .verify("commit 1", PAYLOAD, Some(&BY_CAROL[..120]), at(AT))
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
    assert!(two.verify("c", PAYLOAD, Some(BY_BOB), at(AT)).is_ok());
    assert!(two.verify("c", PAYLOAD, Some(BY_ADA), at(AT)).is_ok());
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

#[test]
fn a_commit_splits_at_its_gpgsig_header_only() {
    let raw = b"tree 1\nparent 2\ngpgsig -----BEGIN SSH SIGNATURE-----\n U1NI\n \n -----END SSH SIGNATURE-----\nmergetag object 3\n type commit\n\nmessage\ngpgsig in the message\n";
    let (payload, signature) = split_commit(raw).unwrap();
    assert_eq!(
        String::from_utf8(payload).unwrap(),
        "tree 1\nparent 2\nmergetag object 3\n type commit\n\nmessage\ngpgsig in the message\n"
    );
    assert_eq!(
        String::from_utf8(signature.unwrap()).unwrap(),
        "-----BEGIN SSH SIGNATURE-----\nU1NI\n\n-----END SSH SIGNATURE-----\n"
    );
    // The signature verifies over what git signs: the fixture's payload, rebuilt.
    let text = String::from_utf8(PAYLOAD.to_vec()).unwrap();
    let (head, message) = text.split_once("\n\n").unwrap();
    let armor = String::from_utf8(BY_CAROL.to_vec()).unwrap();
    let folded = armor.trim_end().replace('\n', "\n ");
    let signed = format!("{head}\ngpgsig {folded}\n\n{message}");
    let (payload, signature) = split_commit(signed.as_bytes()).unwrap();
    assert_eq!(payload, PAYLOAD);
    assert!(
        all()
            .verify("c", &payload, signature.as_deref(), at(AT))
            .is_ok()
    );
    let (_, none) = split_commit(b"tree 1\n\nunsigned\n").unwrap();
    assert_eq!(none, None);
    for (raw, why) in [
        (&b"tree 1\ngpgsig a\ngpgsig b\n\nm"[..], "two gpgsig"),
        (b"tree 1\ngpgsig-sha256 a\n\nm", "SHA-256"),
        (b"tree 1\ngpgsig a\n\nm\0hidden", "NUL"),
    ] {
        assert!(split_commit(raw).unwrap_err().contains(why), "{why}");
    }
}

mod hostile_bytes {
    use super::*;
    use proptest::prelude::*;

    /// Bytes that look like the armor and key lines they imitate, often enough to reach
    /// the parsers' insides.
    fn armored() -> impl Strategy<Value = Vec<u8>> {
        let pieces = prop::sample::select(vec![
            &b"-----BEGIN PGP SIGNATURE-----\n"[..],
            b"-----END PGP SIGNATURE-----\n",
            b"-----BEGIN SSH SIGNATURE-----\n",
            b"-----END SSH SIGNATURE-----\n",
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n",
            b"-----END PGP PUBLIC KEY BLOCK-----\n",
            b"gpgsig ",
            b"gpgsig-sha256 ",
            b"\n",
            b" ",
            b"\n\n",
            b"\0",
            b"U1NIU0lHAAAAAQ==",
            b"iHUEABYKAB0WIQ",
            b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI",
            b"namespaces=\"git\" valid-after=\"2026",
            b"\"",
            b",",
            b"\xff\xfe",
        ]);
        prop::collection::vec(
            prop_oneof![
                pieces.prop_map(<[u8]>::to_vec),
                prop::collection::vec(any::<u8>(), 0..24)
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// What a pusher or a Secret's writer controls never panics a parser or a check:
        /// it is refused with a reason, or (a real signature) verified.
        #[test]
        fn never_panic(bytes in armored()) {
            static TRUSTED: std::sync::LazyLock<TrustedKeys> = std::sync::LazyLock::new(all);
            let _ = split_commit(&bytes);
            let _ = split_tag(&bytes);
            let _ = TrustedKeys::parse([(ALLOWED_SIGNERS, bytes.as_slice())]);
            let _ = TrustedKeys::parse([("key.asc", bytes.as_slice())]);
            let _ = TRUSTED.verify("c", PAYLOAD, Some(&bytes), at(AT));
            let _ = TRUSTED.verify("c", &bytes, Some(BY_CAROL), at(AT));
        }
    }
}
