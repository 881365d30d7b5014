//! OpenPGP: git's `gpgsig` signatures checked against armored public keys (rPGP).

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::types::KeyDetails;

use super::{SignatureKind, Signer, VerifyError, When};

const BLOCK_START: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// A trusted certificate, its bindings checked once when read.
#[derive(Debug)]
pub(super) struct Certificate {
    key: SignedPublicKey,
    fingerprint: String,
    identities: Vec<String>,
}

/// The certificates in one Secret entry: one or more armored blocks, as `gpg --export
/// --armor` writes them (several keys in one block, or blocks one after another).
pub(super) fn parse_certificates(
    entry: &str,
    bytes: &[u8],
) -> Result<Vec<Certificate>, VerifyError> {
    let invalid = |message: String| VerifyError::InvalidTrustedKeys {
        entry: entry.to_owned(),
        line: None,
        message,
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|_| invalid("not text: expected ASCII-armored OpenPGP public keys".into()))?;
    if !text.contains(BLOCK_START) {
        return Err(invalid(format!(
            "no `{BLOCK_START}`: expected ASCII-armored OpenPGP public keys (`gpg --export --armor`)"
        )));
    }
    let mut certificates = Vec::new();
    for block in text.split(BLOCK_START).skip(1) {
        let block = format!("{BLOCK_START}{block}");
        let (keys, _) = SignedPublicKey::from_string_many(&block)
            .map_err(|e| invalid(format!("not an OpenPGP public key block: {e}")))?;
        for key in keys {
            let mut key = key.map_err(|e| invalid(format!("an unreadable public key: {e}")))?;
            // Only the key's own signatures say what it is; certifications by others
            // (which `gpg --export` includes) are not checked here and would otherwise
            // fail the whole Secret.
            own_signatures_only(&mut key);
            let fingerprint = format!("{:X}", key.fingerprint());
            key.verify_bindings().map_err(|e| {
                invalid(format!(
                    "key {fingerprint}: its self-signatures do not verify: {e}"
                ))
            })?;
            let identities = key
                .details
                .users
                .iter()
                .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
                .collect();
            certificates.push(Certificate {
                key,
                fingerprint,
                identities,
            });
        }
    }
    Ok(certificates)
}

fn own_signatures_only(key: &mut SignedPublicKey) {
    let primary = key.primary_key.clone();
    let own = |s: &Signature| {
        issued_by(s, &primary) || s.issuer_key_id().is_empty() && s.issuer_fingerprint().is_empty()
    };
    let details = &mut key.details;
    details.revocation_signatures.retain(|s| own(s));
    details.direct_signatures.retain(|s| own(s));
    for user in &mut details.users {
        user.signatures.retain(|s| own(s));
    }
    details.users.retain(|u| !u.signatures.is_empty());
    for user in &mut details.user_attributes {
        user.signatures.retain(|s| own(s));
    }
    details.user_attributes.retain(|u| !u.signatures.is_empty());
}

/// Which of a certificate's keys made `signature`: the primary key or a subkey.
enum Issuer<'a> {
    Primary,
    Subkey(&'a pgp::composed::SignedPublicSubKey),
}

fn issued_by<T: KeyDetails>(signature: &Signature, key: &T) -> bool {
    let fingerprint = key.fingerprint();
    let id = key.legacy_key_id();
    signature
        .issuer_fingerprint()
        .into_iter()
        .any(|f| *f == fingerprint)
        || signature.issuer_key_id().into_iter().any(|k| *k == id)
}

/// The newest of `signatures` (self-signatures, binding signatures).
fn newest(signatures: &[Signature]) -> Option<&Signature> {
    signatures
        .iter()
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or_default())
}

/// When a key stops being valid: created + the expiry its newest self-signature gives.
fn expires_at(created: u32, signature: Option<&Signature>) -> Option<i64> {
    let lifetime = signature?.key_expiration_time()?.as_secs();
    (lifetime > 0).then(|| i64::from(created) + i64::from(lifetime))
}

pub(super) fn verify(
    trusted: &[Certificate],
    payload: &[u8],
    signature: &[u8],
    at: When,
) -> Result<Signer, VerifyError> {
    let judged = at.latest();
    let kind = SignatureKind::OpenPgp;
    let bad = |message: String| VerifyError::InvalidSignature {
        what: String::new(),
        kind,
        message,
    };
    let text = std::str::from_utf8(signature).map_err(|_| bad("the armor is not text".into()))?;
    let (detached, _) =
        DetachedSignature::from_string(text).map_err(|e| bad(format!("it cannot be read: {e}")))?;
    let sig = &detached.signature;
    // git signs bytes (`gpg -bsa`): a text signature would normalise line endings.
    if sig.typ() != Some(SignatureType::Binary) {
        return Err(bad(format!(
            "it is a {:?} signature, not a binary one over data",
            sig.typ()
        )));
    }
    if matches!(
        sig.hash_alg(),
        None | Some(HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Ripemd160)
    ) {
        let digest = sig
            .hash_alg()
            .map_or("unknown".into(), |h| format!("{h:?}"));
        return Err(bad(format!(
            "it uses the {digest} digest, which can be forged"
        )));
    }
    let found = trusted.iter().find_map(|c| {
        if issued_by(sig, &c.key) {
            return Some((c, Issuer::Primary));
        }
        c.key
            .public_subkeys
            .iter()
            .find(|s| issued_by(sig, &s.key))
            .map(|s| (c, Issuer::Subkey(s)))
    });
    let Some((certificate, issuer)) = found else {
        let named = sig
            .issuer_fingerprint()
            .first()
            .map(|f| format!("{f:X}"))
            .or_else(|| {
                sig.issuer_key_id()
                    .first()
                    .map(|k| crate::fleet::plan::hex(k.as_ref()).to_uppercase())
            })
            .unwrap_or_else(|| "(the signature names no key)".into());
        return Err(VerifyError::UntrustedKey {
            what: String::new(),
            kind,
            key: named,
        });
    };
    let not_valid = |key: &str, why: String| VerifyError::KeyNotValid {
        what: String::new(),
        kind,
        key: key.to_owned(),
        why,
    };
    let primary = &certificate.key;
    if !primary.details.revocation_signatures.is_empty() {
        return Err(not_valid(
            &certificate.fingerprint,
            "the key is revoked".into(),
        ));
    }
    let self_signatures: Vec<Signature> = primary
        .details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter().cloned())
        .chain(primary.details.direct_signatures.iter().cloned())
        .collect();
    if let Some(end) = expires_at(primary.created_at().as_secs(), newest(&self_signatures))
        && judged > end
    {
        return Err(not_valid(
            &certificate.fingerprint,
            format!("the key expired (at {end}; judged at {judged})"),
        ));
    }
    let signing_subkey = match issuer {
        Issuer::Primary => {
            if !newest(&self_signatures).is_some_and(|s| s.key_flags().sign()) {
                return Err(not_valid(
                    &certificate.fingerprint,
                    "the primary key is not certified for signing".into(),
                ));
            }
            sig.verify(&primary.primary_key, payload)
                .map_err(|e| bad(e.to_string()))?;
            None
        }
        Issuer::Subkey(subkey) => {
            let subkey_fp = format!("{:X}", subkey.key.fingerprint());
            if subkey
                .signatures
                .iter()
                .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
            {
                return Err(not_valid(&subkey_fp, "the subkey is revoked".into()));
            }
            let binding = newest(&subkey.signatures);
            if !binding.is_some_and(|b| b.key_flags().sign()) {
                return Err(not_valid(
                    &subkey_fp,
                    "the subkey is not bound for signing".into(),
                ));
            }
            if let Some(end) = expires_at(subkey.key.created_at().as_secs(), binding)
                && judged > end
            {
                return Err(not_valid(
                    &subkey_fp,
                    format!("the subkey expired (at {end}; judged at {judged})"),
                ));
            }
            sig.verify(&subkey.key, payload)
                .map_err(|e| bad(e.to_string()))?;
            Some(subkey_fp)
        }
    };
    Ok(Signer {
        kind,
        fingerprint: certificate.fingerprint.clone(),
        signing_subkey,
        identities: certificate.identities.clone(),
    })
}
