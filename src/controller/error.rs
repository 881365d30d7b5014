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
    #[error("{0} did not become ready")]
    CacheNotReady(String),
    #[error("git operation panicked or was cancelled: {0}")]
    Task(String),
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
            Error::CacheNotReady(_) => "CacheNotReady",
            Error::Task(_) => "TaskFailed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
