//! Who signed a commit or a tag, checked against the keys a repository trusts.
//!
//! Git keeps a signature beside the bytes it signs: a commit in its `gpgsig` header, a
//! tag at the end of its message. Two kinds are checked, as git writes them: OpenPGP
//! (`gpg.format=openpgp`) against armored public keys, and SSH (`gpg.format=ssh`, the
//! `git` namespace) against an OpenSSH allowed-signers list. Anything else (X.509) is
//! refused by name. Pure: no git, no cluster; the caller hands over bytes.

mod openpgp;
mod ssh;

use std::fmt;

pub use ssh::ALLOWED_SIGNERS;

/// The kind of signature, as status records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureKind {
    OpenPgp,
    Ssh,
}

impl SignatureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureKind::OpenPgp => "OpenPGP",
            SignatureKind::Ssh => "SSH",
        }
    }

    /// The kind an armored signature announces in its first line.
    fn of(signature: &[u8]) -> Result<Self, VerifyError> {
        let text = String::from_utf8_lossy(signature);
        let first = text.trim_start().lines().next().unwrap_or_default().trim();
        match first {
            "-----BEGIN PGP SIGNATURE-----" => Ok(SignatureKind::OpenPgp),
            "-----BEGIN SSH SIGNATURE-----" => Ok(SignatureKind::Ssh),
            other => Err(VerifyError::UnsupportedSignature {
                format: other.chars().take(60).collect(),
            }),
        }
    }
}

impl fmt::Display for SignatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key that made a good signature, and who the trusted keys say it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub kind: SignatureKind,
    /// OpenPGP: the certificate's (primary key's) fingerprint, upper-case hex. SSH: the
    /// key's `SHA256:` fingerprint, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// OpenPGP: the fingerprint of the subkey that signed, when not the primary key.
    pub signing_subkey: Option<String>,
    /// OpenPGP: the certificate's user IDs. SSH: the principals of its allowed-signers line.
    pub identities: Vec<String>,
}

/// Why a signature does not verify. Each has a stable label for conditions and Events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{what} is not signed")]
    Unsigned { what: String },
    #[error("{what} is signed by {kind} key {key}, which the trusted keys do not hold")]
    UntrustedKey {
        what: String,
        kind: SignatureKind,
        key: String,
    },
    #[error("{what} is signed by trusted {kind} key {key}, but {why}")]
    KeyNotValid {
        what: String,
        kind: SignatureKind,
        key: String,
        why: String,
    },
    #[error("the {kind} signature of {what} does not verify: {message}")]
    InvalidSignature {
        what: String,
        kind: SignatureKind,
        message: String,
    },
    #[error("{what} cannot be read for its signature: {message}")]
    Malformed { what: String, message: String },
    #[error("signatures starting `{format}` are not supported: sign with OpenPGP or SSH")]
    UnsupportedSignature { format: String },
    #[error("tag {tag} points at commit {target}, not at the planned revision {revision}")]
    TagMismatch {
        tag: String,
        target: String,
        revision: String,
    },
    #[error("tag {tag} cannot be verified: {message}")]
    TagUnreadable { tag: String, message: String },
    #[error(
        "GovernancePolicy {policy} requires verified sources: an approver sets spec.verify and its trusted keys"
    )]
    Required { policy: String },
    #[error("verifying a tag needs spec.ref.tag: a branch or commit names no tag")]
    NoTag,
    #[error("trusted keys, entry `{entry}`{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    InvalidTrustedKeys {
        entry: String,
        line: Option<usize>,
        message: String,
    },
}

impl VerifyError {
    /// A stable short label for conditions, metrics and Events.
    pub fn label(&self) -> &'static str {
        match self {
            VerifyError::Unsigned { .. } => "Unsigned",
            VerifyError::UntrustedKey { .. } | VerifyError::KeyNotValid { .. } => "UntrustedKey",
            VerifyError::InvalidSignature { .. } | VerifyError::Malformed { .. } => {
                "InvalidSignature"
            }
            VerifyError::UnsupportedSignature { .. } => "UnsupportedSignature",
            VerifyError::InvalidTrustedKeys { .. } => "InvalidTrustedKeys",
            VerifyError::TagMismatch { .. } | VerifyError::TagUnreadable { .. } => "TagMismatch",
            VerifyError::NoTag => "NoTag",
            VerifyError::Required { .. } => "VerificationRequired",
        }
    }

    /// Every label [`VerifyError::label`] gives.
    pub fn labels() -> [&'static str; 8] {
        [
            "Unsigned",
            "UntrustedKey",
            "InvalidSignature",
            "UnsupportedSignature",
            "InvalidTrustedKeys",
            "TagMismatch",
            "NoTag",
            "VerificationRequired",
        ]
    }

    /// Names the signed object in the message (a signature's checks do not know it).
    fn about(mut self, object: &str) -> Self {
        match &mut self {
            VerifyError::Unsigned { what }
            | VerifyError::UntrustedKey { what, .. }
            | VerifyError::KeyNotValid { what, .. }
            | VerifyError::InvalidSignature { what, .. }
            | VerifyError::Malformed { what, .. } => *what = object.to_owned(),
            VerifyError::UnsupportedSignature { .. }
            | VerifyError::InvalidTrustedKeys { .. }
            | VerifyError::TagMismatch { .. }
            | VerifyError::TagUnreadable { .. }
            | VerifyError::NoTag
            | VerifyError::Required { .. } => {}
        }
        self
    }
}

/// When a signature is judged. The time an object states (the committer's or tagger's,
/// which git uses) is the writer's choice: a key's end (OpenPGP expiry, SSH
/// `valid-before`) is therefore checked at the later of it and now, so an expired key
/// cannot sign by backdating; a key's start (`valid-after`) at the stated time, as git does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct When {
    /// Unix seconds, as the object states (0 when it states none).
    pub stated: i64,
    /// Unix seconds, now.
    pub now: i64,
}

impl When {
    /// `stated`, judged now by the system clock.
    pub fn stated(stated: i64) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        When { stated, now }
    }

    /// The time a key's end is checked at.
    fn latest(self) -> i64 {
        self.stated.max(self.now)
    }
}

/// Most keys one Secret may list: a verification compares against each.
pub const MAX_TRUSTED_KEYS: usize = 200;

/// The keys a repository trusts: OpenPGP certificates and SSH allowed signers.
#[derive(Debug, Default)]
pub struct TrustedKeys {
    openpgp: Vec<openpgp::Certificate>,
    ssh: Vec<ssh::AllowedSigner>,
}

impl TrustedKeys {
    /// Reads a Secret's entries: [`ALLOWED_SIGNERS`] holds OpenSSH allowed signers, every
    /// other entry one or more ASCII-armored OpenPGP public keys (as Flux reads them).
    /// Anything unreadable is an error naming its entry (and line): a key silently
    /// skipped would leave people wondering why their commits are refused.
    pub fn parse<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, VerifyError> {
        let mut keys = TrustedKeys::default();
        for (entry, bytes) in entries {
            if entry == ALLOWED_SIGNERS {
                keys.ssh.extend(ssh::parse_allowed_signers(entry, bytes)?);
            } else {
                keys.openpgp
                    .extend(openpgp::parse_certificates(entry, bytes)?);
            }
            if keys.openpgp.len() + keys.ssh.len() > MAX_TRUSTED_KEYS {
                return Err(VerifyError::InvalidTrustedKeys {
                    entry: entry.to_owned(),
                    line: None,
                    message: format!("more than {MAX_TRUSTED_KEYS} keys"),
                });
            }
        }
        if keys.openpgp.is_empty() && keys.ssh.is_empty() {
            return Err(VerifyError::InvalidTrustedKeys {
                entry: "(all)".into(),
                line: None,
                message: format!(
                    "no keys: add armored OpenPGP public keys, or SSH keys under `{ALLOWED_SIGNERS}`"
                ),
            });
        }
        Ok(keys)
    }

    /// Checks `signature` over `payload`. `what` names the object in messages ("commit
    /// 1a2b3c4"); `at` says when it was signed, as the object states and as the
    /// controller's clock says now (see [`When`]).
    pub fn verify(
        &self,
        what: &str,
        payload: &[u8],
        signature: Option<&[u8]>,
        at: When,
    ) -> Result<Signer, VerifyError> {
        let Some(signature) = signature else {
            return Err(VerifyError::Unsigned { what: what.into() });
        };
        let checked = match SignatureKind::of(signature)? {
            SignatureKind::OpenPgp => openpgp::verify(&self.openpgp, payload, signature, at),
            SignatureKind::Ssh => ssh::verify(&self.ssh, payload, signature, at),
        };
        checked.map_err(|e| e.about(what))
    }
}

/// Splits a raw commit object into the bytes its signature covers and the signature, as
/// git does (`parse_buffer_signed_by_header`): the `gpgsig` header and its continuation
/// lines are the signature, everything else (other headers, the blank line, the message)
/// is signed. Only the header section is read, so a message cannot hold a signature.
/// Refused, as nothing git signs: two signatures, a SHA-256 one (`gpgsig-sha256`, of
/// repositories in SHA-256 format) and a NUL byte (C code stops reading there).
pub fn split_commit(raw: &[u8]) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    if raw.contains(&0) {
        return Err("the commit object holds a NUL byte".into());
    }
    let (headers, message) = match raw.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&raw[..=at], &raw[at + 1..]),
        None => (raw, &[][..]),
    };
    let (mut payload, mut signature) = (Vec::with_capacity(raw.len()), None::<Vec<u8>>);
    let mut in_signature = false;
    for line in headers.split_inclusive(|b| *b == b'\n') {
        if let Some(first) = line.strip_prefix(b"gpgsig ") {
            if signature.is_some() {
                return Err("the commit carries two gpgsig headers".into());
            }
            signature = Some(first.to_vec());
            in_signature = true;
        } else if line.starts_with(b"gpgsig-sha256 ") {
            return Err("SHA-256 signatures (gpgsig-sha256) are not supported".into());
        } else if in_signature && line.first() == Some(&b' ') {
            if let Some(s) = signature.as_mut() {
                s.extend_from_slice(&line[1..]);
            }
        } else {
            in_signature = false;
            payload.extend_from_slice(line);
        }
    }
    payload.extend_from_slice(message);
    Ok((payload, signature))
}

/// Splits a raw tag object into the bytes its signature covers and the signature: git
/// appends the armored signature to the message, and signs everything before it.
pub fn split_tag(raw: &[u8]) -> (&[u8], Option<&[u8]>) {
    const STARTS: [&[u8]; 3] = [
        b"-----BEGIN PGP SIGNATURE-----",
        b"-----BEGIN SSH SIGNATURE-----",
        b"-----BEGIN SIGNED MESSAGE-----",
    ];
    // The last signature block that starts a line (a message may quote one earlier).
    let found = (0..raw.len())
        .rev()
        .filter(|&i| i == 0 || raw[i - 1] == b'\n')
        .find(|&i| STARTS.iter().any(|s| raw[i..].starts_with(s)));
    match found {
        Some(i) => (&raw[..i], Some(&raw[i..])),
        None => (raw, None),
    }
}

#[cfg(test)]
mod tests;
