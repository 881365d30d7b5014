//! The SyncRun state machine, in one place: the transition table (`machine`, pure), the
//! one way a run's status and phase are written (`record`), and the per-action record a
//! run keeps (`actions`). The steps that take a run through its phases live in
//! `syncrun` (one file per phase) and the apply engine; governance and the authorization
//! check decide, they do not write a run's status.
//!
//! ```text
//!  (new) ─Started→ Planning ─Planned→ AwaitingApproval ─Cleared→ Applying ─Written→ Converging
//!                     │  ╰─NothingToChange→ NoChanges   │ ╰Scheduled→ Scheduled ─Cleared┘ │
//!                     ╰─Failed→ Failed ←────────────────┴──────────────────────────Failed─╯
//!  Converging ─Applied→ Applied   (every object it wrote Ready, or of a kind no provider serves)
//!  Converging ─Degraded→ Degraded (a provider reports a terminal failure, or the deadline passed)
//!  AwaitingApproval | Scheduled ─Superseded | Rejected | Expired→ (finished)
//!  Converging ─WaveConverged→ Scheduled (the next wave is cleared like any run)
//!  Converging ─Paused→ Paused     (a wave failed with waves left: a person chooses)
//!  Paused ─Decided(continue | leave-out)→ Scheduled;  Paused ─Decided(rollback)→ Degraded
//!  Converging | Paused ─Superseded→ Superseded (a newer run applies)
//!  Scheduled | Applying ─Withdrawn→ AwaitingApproval
//! ```

pub mod actions;
pub mod machine;
pub mod record;

pub use actions::{action_entries, progress, recorded_errors};
pub use machine::{Clearance, Event, FailReason, Withdrawal};
pub use record::{
    Guard, fail, moved, reject, started, supersede, supersede_listed, transition,
    withdraw_authorization, write_if, write_status, written_status,
};

impl From<machine::Illegal> for crate::controller::error::Error {
    fn from(illegal: machine::Illegal) -> Self {
        Self::IllegalTransition(illegal.to_string())
    }
}
