//! The controller's errors, each with a stable short label for metrics and Events.

use crate::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("secret {name}: {message}")]
    Secret { name: String, message: String },
    #[error("invalid {field}: {message}")]
    InvalidSpec { field: String, message: String },
    #[error("stored plan of {run}: {message}")]
    PlanStore { run: String, message: String },
    #[error(
        "stored content of {run} was changed after it was recorded: {message}; nothing is applied"
    )]
    PlanTampered { run: String, message: String },
    #[error(
        "the {what} serializes to more than {max} bytes, more than this controller stores for one run (four times --max-fleet-mib); nothing was changed"
    )]
    TooLarge { what: String, max: u64 },
    #[error("{0} did not become ready")]
    CacheNotReady(String),
    #[error("git operation panicked or was cancelled: {0}")]
    Task(String),
    #[error("the reconcile panicked: {0}")]
    Panicked(String),
    /// A run's status was not written: the run changed since the decision read it (it
    /// is judged again as it is now).
    #[error("SyncRun {run} moved on (now {now}) since it was read; judged again")]
    RunMoved { run: String, now: &'static str },
    /// An event in a phase the transition table does not allow it in: a bug, refused.
    #[error("{0}")]
    IllegalTransition(String),
    /// A Flux source (spec.sourceRef) or its artifact.
    #[error(transparent)]
    Flux(#[from] crate::source::flux::FluxError),
    /// The run's approval-to-apply record could not be signed (the key) or built.
    #[error("the record of {run} was not signed: {source}")]
    Attestation {
        run: String,
        source: crate::attest::AttestError,
    },
}

impl Error {
    /// A stable short label for metrics, Events and condition reasons.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeError",
            Error::Source(e) => e.label(),
            Error::Secret { .. } => "SecretError",
            Error::InvalidSpec { .. } => "InvalidSpec",
            Error::PlanStore { .. } => "PlanStoreError",
            Error::PlanTampered { .. } => "PlanTampered",
            Error::TooLarge { .. } => "FleetTooLarge",
            Error::CacheNotReady(_) => "CacheNotReady",
            Error::Task(_) => "TaskFailed",
            Error::Panicked(_) => "Panicked",
            Error::RunMoved { .. } => "RunMoved",
            Error::IllegalTransition(_) => "IllegalTransition",
            Error::Attestation { .. } => "AttestationFailed",
            Error::Flux(e) => e.label(),
        }
    }
}

impl Error {
    /// Whether trying again later may succeed without any change to the spec, the
    /// Secret or the repository's content: the git server was down, slow or cut off.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Source(
                SourceError::Timeout { .. }
                    | SourceError::FetchFailed { .. }
                    | SourceError::Cache { .. }
            ) | Error::Kube(_)
                | Error::Task(_)
        ) || matches!(self, Error::Flux(e) if e.is_transient())
    }

    /// Every label [`Error::label`] gives, the git source's included: the known values
    /// of the `error` label of `fleetgate_reconcile_errors_total`.
    pub fn labels() -> impl Iterator<Item = &'static str> {
        [
            "KubeError",
            "SecretError",
            "InvalidSpec",
            "PlanStoreError",
            "PlanTampered",
            "FleetTooLarge",
            "CacheNotReady",
            "TaskFailed",
            "Panicked",
            "RunMoved",
            "IllegalTransition",
            "AttestationFailed",
        ]
        .into_iter()
        .chain(SourceError::labels())
        .chain(crate::source::flux::FluxError::labels())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Parses a duration of the spec (`60s`, `5m`, `1h30m`).
pub fn parse_duration(field: &str, value: &str) -> Result<std::time::Duration> {
    humantime::parse_duration(value).map_err(|e| Error::InvalidSpec {
        field: field.to_owned(),
        message: format!("`{value}`: {e}"),
    })
}

/// Runs CPU-heavy work on the blocking pool, so that the runtime's worker threads keep
/// serving every other object meanwhile. A panic in it is an error, not a dead process.
pub async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        if e.is_panic() {
            Error::Panicked(panic_message(&*e.into_panic()))
        } else {
            Error::Task(e.to_string())
        }
    })
}

/// The message a panic was raised with.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The string literals `label()` returns in one source file.
    fn returned_labels(file: &str, text: &'static str) -> Vec<&'static str> {
        let body = text
            .split("pub fn label(&self) -> &'static str {")
            .nth(1)
            .and_then(|rest| rest.split("\n    }\n").next())
            .unwrap_or_else(|| panic!("no label() in {file}"));
        body.split('"').skip(1).step_by(2).collect()
    }

    /// A label added to any of the `label()` functions must be listed too (so its
    /// counter starts at 0), and a listed label must still be given.
    #[test]
    fn labels_lists_exactly_what_label_gives() {
        let given: Vec<&str> = [
            ("controller/error.rs", include_str!("error.rs")),
            ("source/mod.rs", include_str!("../source/mod.rs")),
            ("source/policy.rs", include_str!("../source/policy.rs")),
            (
                "source/verify/mod.rs",
                include_str!("../source/verify/mod.rs"),
            ),
            ("source/flux.rs", include_str!("../source/flux.rs")),
        ]
        .into_iter()
        .flat_map(|(file, text)| returned_labels(file, text))
        .collect();
        let listed: Vec<&str> = Error::labels().collect();
        for label in &given {
            assert!(listed.contains(label), "{label} is not in Error::labels()");
        }
        for label in &listed {
            assert!(given.contains(label), "{label} is listed but never given");
        }
        let mut unique = listed.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), listed.len(), "a label is listed twice");
        assert!(listed.len() > 15, "{listed:?}");
    }
}
