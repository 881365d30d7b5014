//! The pure half of Flux as a source: the errors of reading a Flux artifact, the revision
//! a Flux revision names, and the fleet file in an artifact's tarball. The controller
//! (`controller::fluxsource`) reads the source and fetches the artifact.

use std::io::Read;

/// Entries read from an artifact before giving up: a tarball of millions of empty
/// files must not keep a worker busy.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum FluxError {
    #[error("{kind} {name} not found in this namespace")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name} is not ready: {message}")]
    NotReady {
        kind: &'static str,
        name: String,
        message: String,
    },
    #[error("{kind} {name} now serves revision {now}, not {wanted}: the next run plans it")]
    Moved {
        kind: &'static str,
        name: String,
        now: String,
        wanted: String,
    },
    #[error(
        "source-controller no longer serves this artifact (it keeps its newest only): the next run plans the newest"
    )]
    Gone,
    #[error("artifact host {host} is not one of --flux-artifact-hosts")]
    HostNotAllowed { host: String },
    #[error("the artifact could not be fetched: {0}")]
    Unreachable(String),
    #[error("the artifact's SHA-256 is {found}, source-controller recorded {recorded}")]
    DigestMismatch { found: String, recorded: String },
    #[error("the artifact is not a gzip tarball fleetgate can read: {0}")]
    Invalid(String),
    #[error("{path} is not a regular file in the artifact")]
    FileNotFound { path: String },
    #[error("the artifact is larger than {max} bytes (--flux-max-artifact-mib)")]
    ArtifactTooLarge { max: u64 },
    #[error("{path} is larger than {max} bytes")]
    FileTooLarge { path: String, max: u64 },
}

impl FluxError {
    pub fn label(&self) -> &'static str {
        match self {
            FluxError::NotFound { .. } => "SourceNotFound",
            FluxError::NotReady { .. } => "SourceNotReady",
            FluxError::Moved { .. } => "SourceMoved",
            FluxError::Gone => "ArtifactGone",
            FluxError::HostNotAllowed { .. } => "ArtifactHostNotAllowed",
            FluxError::Unreachable(_) => "ArtifactUnreachable",
            FluxError::DigestMismatch { .. } => "ArtifactDigestMismatch",
            FluxError::Invalid(_) => "ArtifactInvalid",
            // As the git source names them.
            FluxError::FileNotFound { .. } => "InvalidPath",
            FluxError::ArtifactTooLarge { .. } => "RepositoryTooLarge",
            FluxError::FileTooLarge { .. } => "FileTooLarge",
        }
    }

    /// The labels of its own (InvalidPath, RepositoryTooLarge and FileTooLarge are the
    /// git source's too).
    pub fn labels() -> impl Iterator<Item = &'static str> {
        [
            "SourceNotFound",
            "SourceNotReady",
            "SourceMoved",
            "ArtifactGone",
            "ArtifactHostNotAllowed",
            "ArtifactUnreachable",
            "ArtifactDigestMismatch",
            "ArtifactInvalid",
        ]
        .into_iter()
    }

    /// Whether trying the same revision again may help: Flux has not produced the
    /// artifact yet, or its server did not answer. A source that moved on, or an
    /// artifact that is gone, ends the run instead: the repository's next run plans
    /// what the source serves now (retrying would hold the repository at a revision
    /// source-controller no longer serves).
    pub fn is_transient(&self) -> bool {
        matches!(self, FluxError::NotReady { .. } | FluxError::Unreachable(_))
    }
}

/// `main@sha1:abc…` → `abc…`; `v1@sha256:def…` → `sha256:def…`; a bare revision as it is.
pub fn planned_revision(flux_revision: &str) -> String {
    let last = flux_revision.rsplit('@').next().unwrap_or(flux_revision);
    match last.split_once(':') {
        Some(("sha1", commit)) => commit.to_owned(),
        _ => last.to_owned(),
    }
}

/// The regular file at `path` (relative, no `..`: the CRD says so) in a gzip tarball, at
/// most `max` bytes, reading at most `max_unpacked` bytes of the inflated stream in all:
/// a small tarball of a huge entry (or of a huge long name, which the tar reader keeps
/// in memory) stops there. Several entries of that name: the last one counts, as when
/// the tarball is unpacked.
pub fn file_in_tarball(
    tarball: &[u8],
    path: &str,
    max: u64,
    max_unpacked: u64,
) -> std::result::Result<Vec<u8>, FluxError> {
    let wanted = path.trim_start_matches("./");
    let inflated = flate2::read::GzDecoder::new(tarball).take(max_unpacked);
    let mut archive = tar::Archive::new(inflated);
    let invalid = |e: std::io::Error| {
        FluxError::Invalid(format!("{e} (or it inflates past {max_unpacked} bytes)"))
    };
    let entries = archive.entries().map_err(invalid)?;
    let mut found = None;
    for (i, entry) in entries.enumerate() {
        if i >= MAX_ENTRIES {
            return Err(FluxError::Invalid(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        let entry = entry.map_err(invalid)?;
        let name = entry
            .path()
            .map_err(invalid)?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        if name != wanted {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            found = None;
            continue;
        }
        let mut bytes = Vec::new();
        entry
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(invalid)?;
        if bytes.len() as u64 > max {
            return Err(FluxError::FileTooLarge {
                path: path.to_owned(),
                max,
            });
        }
        found = Some(bytes);
    }
    found.ok_or_else(|| FluxError::FileNotFound {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests;
