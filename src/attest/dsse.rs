//! DSSE (Dead Simple Signing Envelope, secure-systems-lab/dsse v1.0): the signature is
//! over the pre-authentication encoding of the payload type and the payload, so neither
//! can be swapped without breaking it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::keys::{PrivateKey, PublicKey};
use super::{AttestError, PAYLOAD_TYPE};

/// A DSSE envelope as JSON carries it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    /// Base64 of the serialized statement.
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub keyid: String,
    /// Base64 of the ed25519 signature over [`pae`].
    pub sig: String,
}

/// PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, LEN in ASCII
/// decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    pub fn sign(payload_type: &str, payload: Vec<u8>, key: &PrivateKey) -> Self {
        let sig = key.sign(&pae(payload_type, &payload));
        Self {
            payload: STANDARD.encode(&payload),
            payload_type: payload_type.to_owned(),
            signatures: vec![Signature {
                keyid: key.keyid().to_owned(),
                sig: STANDARD.encode(sig),
            }],
        }
    }

    /// The payload, once exactly one signature verifies with `key` and names it. A
    /// record has one signer: a second signature is refused rather than ignored, so
    /// that nothing in the envelope goes unchecked.
    pub fn verify(&self, key: &PublicKey) -> Result<Vec<u8>, AttestError> {
        if self.payload_type != PAYLOAD_TYPE {
            return Err(AttestError::PayloadType(self.payload_type.clone()));
        }
        let [signature] = self.signatures.as_slice() else {
            return Err(AttestError::Malformed(format!(
                "{} signatures, not one",
                self.signatures.len()
            )));
        };
        if signature.keyid != key.keyid() {
            return Err(AttestError::OtherKey {
                found: signature.keyid.clone(),
                expected: key.keyid().to_owned(),
            });
        }
        // The standard engine refuses non-canonical encodings (stray bits in the last
        // character), so a changed character never decodes to the same bytes.
        let payload = STANDARD
            .decode(&self.payload)
            .map_err(|e| AttestError::Malformed(format!("payload is not base64: {e}")))?;
        let sig = STANDARD
            .decode(&signature.sig)
            .map_err(|e| AttestError::Malformed(format!("signature is not base64: {e}")))?;
        if !key.verifies(&pae(&self.payload_type, &payload), &sig) {
            return Err(AttestError::BadSignature {
                keyid: key.keyid().to_owned(),
            });
        }
        Ok(payload)
    }
}
