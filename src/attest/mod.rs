//! Signed approval-to-apply records: what a run applied, from which commit, on whose
//! approval, as an in-toto Statement (v1) in a DSSE envelope signed with an ed25519 key.
//!
//! The controller signs a record when an authorized run ends ([`sign`]); anyone with the
//! public key checks one offline ([`verify`]), and any changed byte fails with its
//! reason. Nothing here talks to Kubernetes: the controller gathers the facts
//! ([`record`]) and stores the envelope, the CLI fetches it.

pub mod dsse;
pub mod keys;
pub mod record;
#[cfg(test)]
mod tests;

pub use dsse::Envelope;
pub use keys::{PrivateKey, PublicKey};
pub use record::{ApplyRecord, Statement};

/// The media type of an in-toto statement in a DSSE envelope.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto Statement layer this module writes and reads.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// What fleetgate's predicate is: one run's approval-to-apply record.
pub const PREDICATE_TYPE: &str = "https://fleetgate.dev/attestation/apply-record/v1";

/// Why a key or record was refused. Each variant has a stable label
/// ([`AttestError::label`]) for metrics and exit messages.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("the key cannot be read: {0}")]
    InvalidKey(String),
    #[error("the record is not a DSSE envelope: {0}")]
    Malformed(String),
    #[error("the envelope's payloadType is `{0}`, not `{PAYLOAD_TYPE}`")]
    PayloadType(String),
    #[error(
        "the envelope is signed by key {found}, not by the given key {expected} (another key, or a changed keyid)"
    )]
    OtherKey { found: String, expected: String },
    #[error(
        "the signature does not verify with key {keyid}: the payload, its type or the signature changed since it was signed"
    )]
    BadSignature { keyid: String },
    #[error("the signed payload is not an in-toto statement this version reads: {0}")]
    NotAStatement(String),
    #[error("the statement is not consistent: {0}")]
    Inconsistent(String),
    #[error("the record would be {bytes} bytes, over the bound of {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("the record is another run's: {0}")]
    OtherRun(String),
}

impl AttestError {
    pub fn label(&self) -> &'static str {
        match self {
            AttestError::InvalidKey(_) => "InvalidKey",
            AttestError::Malformed(_) => "Malformed",
            AttestError::PayloadType(_) => "PayloadType",
            AttestError::OtherKey { .. } => "OtherKey",
            AttestError::BadSignature { .. } => "BadSignature",
            AttestError::NotAStatement(_) => "NotAStatement",
            AttestError::Inconsistent(_) => "Inconsistent",
            AttestError::TooLarge { .. } => "TooLarge",
            AttestError::OtherRun(_) => "OtherRun",
        }
    }
}

/// The most bytes one envelope may take: it is stored in one ConfigMap (1 MiB), with
/// room for the object's metadata.
pub const MAX_ENVELOPE_BYTES: usize = 900 * 1024;

/// Signs `record` as an in-toto statement in a DSSE envelope: the envelope's compact
/// JSON, as stored. A record that would not fit lists fewer objects, halving until it
/// does (its objects digest still covers them all), so that long names chosen by a
/// tenant never leave a run without a record.
pub fn sign(record: &ApplyRecord, key: &PrivateKey) -> Result<Vec<u8>, AttestError> {
    let mut record = std::borrow::Cow::Borrowed(record);
    loop {
        let payload = serde_json::to_vec(&record.statement()).map_err(|e| {
            AttestError::Malformed(format!("the statement does not serialize: {e}"))
        })?;
        let envelope = dsse::Envelope::sign(PAYLOAD_TYPE, payload, key);
        let bytes = serde_json::to_vec(&envelope)
            .map_err(|e| AttestError::Malformed(format!("the envelope does not serialize: {e}")))?;
        if bytes.len() <= MAX_ENVELOPE_BYTES {
            return Ok(bytes);
        }
        let listed = record.objects.listed.len();
        if listed == 0 {
            return Err(AttestError::TooLarge {
                bytes: bytes.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        record.to_mut().objects.listed.truncate(listed / 2);
    }
}

/// A record that verified: the statement, and the key that signed it.
#[derive(Debug)]
pub struct Verified {
    pub keyid: String,
    pub statement: Statement,
}

/// Checks an envelope (its JSON bytes) against `key`: the signature over exactly its
/// payload and payload type, then that the payload is a statement of this predicate
/// whose parts agree with each other.
pub fn verify(envelope: &[u8], key: &PublicKey) -> Result<Verified, AttestError> {
    let envelope: dsse::Envelope =
        serde_json::from_slice(envelope).map_err(|e| AttestError::Malformed(e.to_string()))?;
    let payload = envelope.verify(key)?;
    let statement: Statement =
        serde_json::from_slice(&payload).map_err(|e| AttestError::NotAStatement(e.to_string()))?;
    statement.check()?;
    Ok(Verified {
        keyid: key.keyid().to_owned(),
        statement,
    })
}
