//! The ed25519 keys of records: the private key as PKCS#8 PEM (`openssl genpkey
//! -algorithm ed25519`), the public key as SubjectPublicKeyInfo PEM (`openssl pkey
//! -pubout`). A key's id is the SHA-256 of its SubjectPublicKeyInfo (DER), in hex, as
//! sigstore names keys.

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::AttestError;

/// The signing key, as the platform owner provides it in a Secret.
pub struct PrivateKey {
    key: SigningKey,
    keyid: String,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// A PKCS#8 PEM ed25519 private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, AttestError> {
        let key = SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| {
            AttestError::InvalidKey(format!(
                "not a PKCS#8 PEM ed25519 private key (openssl genpkey -algorithm ed25519): {e}"
            ))
        })?;
        let keyid = keyid(&key.verifying_key())?;
        Ok(Self { key, keyid })
    }

    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
            keyid: self.keyid.clone(),
        }
    }

    pub(super) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// The key a record is checked with.
#[derive(Clone, Debug)]
pub struct PublicKey {
    key: VerifyingKey,
    keyid: String,
}

impl PublicKey {
    /// A SubjectPublicKeyInfo PEM ed25519 public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, AttestError> {
        let key = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| {
            AttestError::InvalidKey(format!(
                "not a PEM ed25519 public key (openssl pkey -pubout): {e}"
            ))
        })?;
        let keyid = keyid(&key)?;
        Ok(Self { key, keyid })
    }

    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The key as PEM, to hand to auditors.
    pub fn to_pem(&self) -> Result<String, AttestError> {
        self.key
            .to_public_key_pem(Default::default())
            .map_err(|e| AttestError::InvalidKey(e.to_string()))
    }

    pub(super) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(message, &signature).is_ok()
    }
}

fn keyid(key: &VerifyingKey) -> Result<String, AttestError> {
    let der = key
        .to_public_key_der()
        .map_err(|e| AttestError::InvalidKey(e.to_string()))?;
    Ok(crate::fleet::plan::hex(&Sha256::digest(der.as_bytes())))
}
