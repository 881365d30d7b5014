//! The SyncRun state machine, in one place: the transition table (`machine`, pure), the
//! one way a run's status and phase are written (`record`), and the per-action record a
//! run keeps (`actions`). The steps that take a run through its phases live in
//! `syncrun` (one file per phase) and the apply engine; governance and the authorization
//! check decide, they do not write a run's status.
//!
//! ```text
//!  (new) ─Started→ Planning ─Planned→ AwaitingApproval ─Cleared→ Applying ─Applied→ Applied
//!                     │  ╰─NothingToChange→ NoChanges   │ ╰Scheduled→ Scheduled ─Cleared┘ │
//!                     ╰─Failed→ Failed ←────────────────┴──────────────────────────Failed─╯
//!  AwaitingApproval | Scheduled ─Superseded | Rejected | Expired→ (finished)
//!  Scheduled | Applying ─Withdrawn→ AwaitingApproval
//! ```

pub mod actions;
pub mod machine;
pub mod record;

pub use actions::{MAX_ACTION_ENTRIES, action_entries, progress};
pub use machine::{Clearance, Event, FailReason, Withdrawal};
pub use record::{
    Guard, fail, moved, reject, supersede, supersede_listed, transition, withdraw_authorization,
    write_if, write_status, written_status,
};

/// Why a run's status was not written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run changed since the decision read it; it is judged again as it is now.
    #[error("SyncRun {run} moved on (now {now}) since it was read; judged again")]
    Moved { run: String, now: &'static str },
    #[error(transparent)]
    Illegal(#[from] machine::Illegal),
    #[error("the status of a run could not be encoded: {0}")]
    Unwritable(String),
}

impl Error {
    /// A stable short label for metrics and Events.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Moved { .. } => "RunMoved",
            Error::Illegal(_) => "IllegalTransition",
            Error::Unwritable(_) => "StatusUnwritable",
        }
    }

    /// Every label [`Error::label`] gives.
    pub fn labels() -> impl Iterator<Item = &'static str> {
        ["RunMoved", "IllegalTransition", "StatusUnwritable"].into_iter()
    }
}
