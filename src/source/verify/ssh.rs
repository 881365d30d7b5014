//! SSH: git's SSHSIG signatures (namespace `git`) checked against an OpenSSH
//! allowed-signers list (`ssh-keygen(1)`, ALLOWED SIGNERS), with the `ssh-key` crate.

use ssh_key::{HashAlg, PublicKey, SshSig};

use super::{SignatureKind, Signer, VerifyError, When};

/// The Secret entry that holds an allowed-signers list.
pub const ALLOWED_SIGNERS: &str = "allowed_signers";

/// The namespace git signs in; a signature made for another purpose is not a commit's.
const NAMESPACE: &str = "git";

/// One line of an allowed-signers list.
#[derive(Debug)]
pub(super) struct AllowedSigner {
    principals: Vec<String>,
    key: PublicKey,
    /// `namespaces="..."`: absent means every namespace.
    namespaces: Option<Vec<String>>,
    /// `valid-after` / `valid-before`, Unix seconds.
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

/// Splits on blanks outside double quotes (principals and options may be quoted).
fn fields(line: &str) -> Vec<String> {
    let (mut out, mut current, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Splits an option list on commas outside quotes.
fn options(text: &str) -> Vec<String> {
    let (mut out, mut current, mut quoted) = (Vec::new(), String::new(), false);
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    out.push(current);
    out
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

fn is_key_type(field: &str) -> bool {
    field.starts_with("ssh-") || field.starts_with("ecdsa-") || field.starts_with("sk-")
}

/// `YYYYMMDD[HHMM[SS]]`, read as UTC (ssh-keygen reads it as local time unless it ends
/// in `Z`; a controller's local time is not the signer's, so both are taken as UTC).
fn timestamp(value: &str) -> Option<i64> {
    let digits = value.strip_suffix('Z').unwrap_or(value);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let padded = match digits.len() {
        8 => format!("{digits}000000"),
        12 => format!("{digits}00"),
        14 => digits.to_owned(),
        _ => return None,
    };
    chrono::NaiveDateTime::parse_from_str(&padded, "%Y%m%d%H%M%S")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

pub(super) fn parse_allowed_signers(
    entry: &str,
    bytes: &[u8],
) -> Result<Vec<AllowedSigner>, VerifyError> {
    let text = std::str::from_utf8(bytes).map_err(|_| VerifyError::InvalidTrustedKeys {
        entry: entry.to_owned(),
        line: None,
        message: "not text".into(),
    })?;
    let mut signers = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let invalid = |message: String| VerifyError::InvalidTrustedKeys {
            entry: entry.to_owned(),
            line: Some(index + 1),
            message,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = fields(line);
        let Some(key_at) = fields.iter().position(|f| is_key_type(f)) else {
            return Err(invalid(
                "no key: expected `principals [options] keytype base64-key [comment]`".into(),
            ));
        };
        if key_at == 0 || key_at > 2 {
            return Err(invalid(
                "expected `principals [options] keytype base64-key [comment]`".into(),
            ));
        }
        let principals: Vec<String> = unquote(&fields[0])
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        if principals.is_empty() {
            return Err(invalid("no principals".into()));
        }
        let (mut namespaces, mut valid_after, mut valid_before) = (None, None, None);
        if key_at == 2 {
            for option in options(&fields[1]) {
                let (name, value) = option.split_once('=').unwrap_or((option.as_str(), ""));
                let value = unquote(value);
                let time = || {
                    timestamp(value).ok_or_else(|| {
                        invalid(format!(
                            "`{name}` wants YYYYMMDD[HHMM[SS]][Z], not `{value}`"
                        ))
                    })
                };
                match name.to_ascii_lowercase().as_str() {
                    "namespaces" => {
                        namespaces = Some(value.split(',').map(str::to_owned).collect())
                    }
                    "valid-after" => valid_after = Some(time()?),
                    "valid-before" => valid_before = Some(time()?),
                    "cert-authority" => {
                        return Err(invalid(
                            "`cert-authority` is not supported: list the signers' keys".into(),
                        ));
                    }
                    other => return Err(invalid(format!("unknown option `{other}`"))),
                }
            }
        }
        let base64 = fields
            .get(key_at + 1)
            .ok_or_else(|| invalid(format!("`{}` is not followed by a key", fields[key_at])))?;
        let key = PublicKey::from_openssh(&format!("{} {base64}", fields[key_at]))
            .map_err(|e| invalid(format!("the key cannot be read: {e}")))?;
        let signer = AllowedSigner {
            principals,
            key,
            namespaces,
            valid_after,
            valid_before,
        };
        signers.push(signer);
    }
    Ok(signers)
}

pub(super) fn verify(
    trusted: &[AllowedSigner],
    payload: &[u8],
    signature: &[u8],
    at: When,
) -> Result<Signer, VerifyError> {
    let kind = SignatureKind::Ssh;
    let bad = |message: String| VerifyError::InvalidSignature {
        what: String::new(),
        kind,
        message,
    };
    // Blank lines after the armor (libgit2 writes one for a signature ending in a
    // newline) are not part of it.
    let pem = signature.trim_ascii_end();
    let sig = SshSig::from_pem(pem).map_err(|e| bad(format!("it cannot be read: {e}")))?;
    if sig.namespace() != NAMESPACE {
        return Err(bad(format!(
            "it was made for namespace `{}`, not `{NAMESPACE}`",
            sig.namespace()
        )));
    }
    let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256).to_string();
    let lines: Vec<&AllowedSigner> = trusted
        .iter()
        .filter(|s| s.key.key_data() == sig.public_key())
        .collect();
    if lines.is_empty() {
        return Err(VerifyError::UntrustedKey {
            what: String::new(),
            kind,
            key: fingerprint,
        });
    }
    // A key may have several lines; any that allows git at the signing time will do.
    let allowed = lines.iter().find(|s| {
        s.namespaces
            .as_ref()
            .is_none_or(|n| n.iter().any(|n| n == NAMESPACE))
            && s.valid_after.is_none_or(|t| at.stated >= t)
            && s.valid_before.is_none_or(|t| at.latest() <= t)
    });
    let Some(signer) = allowed else {
        return Err(VerifyError::KeyNotValid {
            what: String::new(),
            kind,
            key: fingerprint,
            why: format!(
                "its allowed-signers line does not allow namespace `{NAMESPACE}` at the signing time ({}, judged at {})",
                at.stated,
                at.latest()
            ),
        });
    };
    signer
        .key
        .verify(NAMESPACE, payload, &sig)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Signer {
        kind,
        fingerprint,
        signing_subkey: None,
        identities: signer.principals.clone(),
    })
}
