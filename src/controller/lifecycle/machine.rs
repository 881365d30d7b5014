//! The transition table of a SyncRun, pure: which event may happen in which phase, the
//! phase it leads to, the reason its conditions and Event give, and whether that Event
//! is a Warning. Adding a phase is a variant of [`Phase`], its rows here, and the step
//! that handles it in `syncrun`.

use kube::runtime::events::EventType;

use crate::api::syncrun::Phase;
use crate::fleet::health::Degradation;
use crate::fleet::rollout::pause::Choice;

/// What happens to a run. Each event is allowed in a few phases only ([`next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The controller picked the run up: its plan is being computed.
    Started,
    /// A plan with changes is recorded (again, after an exclusion): people decide.
    Planned,
    /// The plan changes nothing.
    NothingToChange,
    /// Authorized, but a change window (or apply-after) holds it.
    Scheduled,
    /// Authorized, and the windows allow it: the engine applies it.
    Cleared(Clearance),
    /// Every action applied, nothing differs afterwards, and every object it wrote is
    /// Ready for its new generation (or of a kind no provider serves).
    Applied,
    /// Every action applied and nothing differs afterwards; the providers have not yet
    /// reported every object Ready: the run waits for them.
    Written,
    /// The approved slices of a sliced plan were written (and converged) as far as the
    /// current wave goes; the rest of it waits for its slices' owners to approve.
    AwaitingSlices,
    /// A wave of the rollout converged and stayed so for the soak: the next wave waits,
    /// as any authorized run does, until it is still authorized now, the change windows
    /// allow it, no newer run supersedes it and the repository is free.
    WaveConverged,
    /// The objects did not converge: a provider reports a terminal failure, or the
    /// progress deadline passed.
    Degraded(Degradation),
    /// A wave did not converge, or objects around the rollout regressed, with waves
    /// left: a person chooses what happens.
    Paused(Degradation),
    /// The quorum of a choice at a pause was met: continue or leave-out send the run to
    /// be cleared for its next wave; rollback ends it (a Rollback run follows).
    Decided(Choice),
    /// The run cannot go on.
    Failed(FailReason),
    /// A newer run replaces it (or the drift it was planned for changed).
    Superseded,
    /// Someone rejected the plan.
    Rejected,
    /// Nobody approved the plan within the governing policy's planExpiry.
    Expired,
    /// What authorized the run no longer holds: it waits for people again.
    Withdrawn(Withdrawal),
}

/// What cleared a run to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clearance {
    /// Its approvers' quorum was met.
    Approved,
    /// A policy (the repository's or a governance rule) approved it.
    ApprovedByPolicy,
    /// An approved run's change window opened.
    WindowOpened,
}

impl Clearance {
    pub fn as_str(self) -> &'static str {
        match self {
            Clearance::Approved => "Approved",
            Clearance::ApprovedByPolicy => "ApprovedByPolicy",
            Clearance::WindowOpened => "WindowOpened",
        }
    }
}

/// Why a run failed: the reason of its conditions and Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The repository the run belongs to is gone.
    RepositoryNotFound,
    /// The exclude annotation names nothing in the plan, or cannot be read.
    InvalidExclusion,
    /// The revision's fleet file is invalid.
    ValidationFailed,
    /// The plan would delete an object that forbids it.
    PreventDestroy,
    /// The repository's spec.rollout cannot stage the plan (a bad field, too many waves).
    InvalidRollout,
    /// The revision's fleet is larger than the controller accepts.
    FleetTooLarge,
    /// A lifecycle pin (`nginx@blessed`) names a module or lifecycle the module catalog
    /// does not: planned again when the catalog changes.
    ModuleUnresolved,
    /// The applied run a rollback names cannot be restored.
    RollbackUnavailable,
    /// The stored content a drift run restores cannot be read.
    RestoreUnavailable,
    /// The run was cleared to apply, but its stored plan is not named in its status.
    PlanMissing,
    /// Some actions failed or were skipped, or the cluster still differs afterwards.
    ApplyFailed,
    /// The revision's signatures do not verify under the repository's spec.verify: the
    /// label of `source::verify::VerifyError` (Unsigned, UntrustedKey, ...).
    SourceUnverified(&'static str),
    /// An error's stable label (`controller::error::Error::label` and those it wraps).
    Error(&'static str),
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::RepositoryNotFound => "RepositoryNotFound",
            FailReason::InvalidExclusion => "InvalidExclusion",
            FailReason::ValidationFailed => "ValidationFailed",
            FailReason::PreventDestroy => "PreventDestroy",
            FailReason::InvalidRollout => "InvalidRollout",
            FailReason::FleetTooLarge => crate::fleet::bounds::TOO_LARGE,
            FailReason::ModuleUnresolved => crate::fleet::catalog::UNRESOLVED,
            FailReason::RollbackUnavailable => "RollbackUnavailable",
            FailReason::RestoreUnavailable => "RestoreUnavailable",
            FailReason::PlanMissing => "PlanMissing",
            FailReason::ApplyFailed => "ApplyFailed",
            FailReason::SourceUnverified(label) | FailReason::Error(label) => label,
        }
    }

    /// Whether the repository is stalled by it: the same revision fails the same way
    /// until someone changes git (kstatus reads the repository as Failed, not as
    /// InProgress).
    pub fn stalls(self) -> bool {
        matches!(
            self,
            FailReason::ValidationFailed
                | FailReason::PreventDestroy
                | FailReason::ModuleUnresolved
                | FailReason::SourceUnverified(_)
        )
    }

    /// Whether `reason`, as a failed run's conditions record it, stalls its repository.
    pub fn recorded_stalls(reason: &str) -> bool {
        [
            FailReason::ValidationFailed,
            FailReason::PreventDestroy,
            FailReason::ModuleUnresolved,
        ]
        .iter()
        .any(|r| r.as_str() == reason)
            || FailReason::is_unverified(reason)
    }

    /// Whether `reason`, as a failed run's conditions record it, says its revision did
    /// not verify.
    pub fn is_unverified(reason: &str) -> bool {
        crate::source::verify::VerifyError::labels().contains(&reason)
    }
}

/// Why a run's authorization was withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// Approvals expired, or the governing policy changed, while it waited.
    ApprovalExpired,
    /// The check in front of the engine refused it (the refusal's stable label).
    Refused(&'static str),
}

impl Withdrawal {
    pub fn as_str(self) -> &'static str {
        match self {
            Withdrawal::ApprovalExpired => "ApprovalExpired",
            Withdrawal::Refused(label) => label,
        }
    }
}

impl Event {
    /// The reason its conditions and Event give.
    pub fn reason(self) -> &'static str {
        match self {
            Event::Started => "Progressing",
            Event::Planned => "AwaitingApproval",
            Event::NothingToChange => "NoChanges",
            Event::Scheduled => "Scheduled",
            Event::Cleared(c) => c.as_str(),
            Event::Applied => "Applied",
            Event::Written => "Converging",
            Event::WaveConverged => "WaveConverged",
            Event::AwaitingSlices => "AwaitingSlices",
            Event::Degraded(d) | Event::Paused(d) => d.as_str(),
            Event::Decided(c) => c.reason(),
            Event::Failed(r) => r.as_str(),
            Event::Superseded => "Superseded",
            Event::Rejected => "Rejected",
            Event::Expired => "PlanExpired",
            Event::Withdrawn(w) => w.as_str(),
        }
    }
}

/// Where an event leads, and how it is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub to: Phase,
    pub reason: &'static str,
    /// None: the step is recorded in status only (no conditions, no Event).
    pub told: Option<EventType>,
}

/// An event in a phase it cannot happen in: a bug, refused rather than recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a run in phase {from} cannot take the event {event:?}")]
pub struct Illegal {
    pub from: &'static str,
    pub event: Event,
}

/// The transition table: the phase `event` leads to from `from` (None: a run the
/// controller has not looked at yet), or why it cannot happen there.
pub fn next(from: Option<Phase>, event: Event) -> Result<Step, Illegal> {
    use Phase::*;
    let (allowed, to, told): (&[Phase], Phase, Option<EventType>) = match event {
        Event::Started => {
            return match from {
                None => Ok(Step {
                    to: Planning,
                    reason: event.reason(),
                    told: None,
                }),
                Some(p) => Err(Illegal {
                    from: p.as_str(),
                    event,
                }),
            };
        }
        // From AwaitingApproval: a new plan after the exclude annotation changed.
        Event::Planned => (&[Planning, AwaitingApproval], AwaitingApproval, normal()),
        Event::NothingToChange => (&[Planning, AwaitingApproval], NoChanges, normal()),
        Event::Scheduled => (&[Planning, AwaitingApproval], Scheduled, normal()),
        Event::Cleared(_) => (&[Planning, AwaitingApproval, Scheduled], Applying, normal()),
        Event::Applied => (&[Converging], Applied, normal()),
        Event::Written => (&[Applying], Converging, normal()),
        Event::WaveConverged => (&[Converging], Scheduled, normal()),
        // The engine finds nothing more it may write, or what it wrote converged.
        Event::AwaitingSlices => (&[Applying, Converging], AwaitingApproval, normal()),
        Event::Degraded(_) => (&[Converging], Degraded, warning()),
        Event::Paused(_) => (&[Converging], Paused, warning()),
        // Going on is cleared again in Scheduled, as every next wave is.
        Event::Decided(Choice::Continue | Choice::LeaveOut) => (&[Paused], Scheduled, normal()),
        Event::Decided(Choice::Rollback) => (&[Paused], Degraded, warning()),
        Event::Failed(_) => (&[Planning, AwaitingApproval, Applying], Failed, warning()),
        // From Converging: a newer run of the repository applies before this one's
        // objects converged (as Flux cancels a health check on a new revision).
        Event::Superseded => (
            &[AwaitingApproval, Scheduled, Converging, Paused],
            Superseded,
            normal(),
        ),
        Event::Rejected => (&[AwaitingApproval, Scheduled], Rejected, normal()),
        Event::Expired => (&[AwaitingApproval, Scheduled], Expired, warning()),
        Event::Withdrawn(_) => (&[Scheduled, Applying], AwaitingApproval, warning()),
    };
    match from {
        Some(p) if allowed.contains(&p) => Ok(Step {
            to,
            reason: event.reason(),
            told,
        }),
        _ => Err(Illegal {
            from: from.map_or("(none)", Phase::as_str),
            event,
        }),
    }
}

fn normal() -> Option<EventType> {
    Some(EventType::Normal)
}

fn warning() -> Option<EventType> {
    Some(EventType::Warning)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHASES: [Phase; 13] = [
        Phase::Planning,
        Phase::AwaitingApproval,
        Phase::Applying,
        Phase::Applied,
        Phase::Failed,
        Phase::NoChanges,
        Phase::Superseded,
        Phase::Rejected,
        Phase::Expired,
        Phase::Scheduled,
        Phase::Converging,
        Phase::Degraded,
        Phase::Paused,
    ];

    fn events() -> Vec<Event> {
        vec![
            Event::Started,
            Event::Planned,
            Event::NothingToChange,
            Event::Scheduled,
            Event::Cleared(Clearance::Approved),
            Event::Cleared(Clearance::ApprovedByPolicy),
            Event::Cleared(Clearance::WindowOpened),
            Event::Applied,
            Event::Written,
            Event::WaveConverged,
            Event::AwaitingSlices,
            Event::Degraded(Degradation::ObjectFailed),
            Event::Degraded(Degradation::ProgressDeadlineExceeded),
            Event::Paused(Degradation::HealthRegression),
            Event::Decided(Choice::Continue),
            Event::Decided(Choice::LeaveOut),
            Event::Decided(Choice::Rollback),
            Event::Failed(FailReason::ApplyFailed),
            Event::Failed(FailReason::Error("KubeError")),
            Event::Superseded,
            Event::Rejected,
            Event::Expired,
            Event::Withdrawn(Withdrawal::ApprovalExpired),
            Event::Withdrawn(Withdrawal::Refused("SourceNotApproved")),
        ]
    }

    fn froms() -> impl Iterator<Item = Option<Phase>> {
        std::iter::once(None).chain(PHASES.into_iter().map(Some))
    }

    #[test]
    fn a_finished_run_takes_no_event() {
        for from in PHASES.into_iter().filter(|p| p.is_finished()) {
            for event in events() {
                assert!(next(Some(from), event).is_err(), "{from:?} took {event:?}");
            }
        }
    }

    #[test]
    fn a_new_run_can_only_start() {
        for event in events() {
            assert_eq!(
                next(None, event).is_ok(),
                event == Event::Started,
                "{event:?}"
            );
        }
        assert_eq!(next(None, Event::Started).unwrap().to, Phase::Planning);
    }

    #[test]
    fn only_the_engine_finishes_what_it_applies() {
        for from in froms() {
            for event in events() {
                let Ok(step) = next(from, event) else {
                    continue;
                };
                if from == Some(Phase::Applying) {
                    assert!(
                        matches!(
                            step.to,
                            Phase::Converging | Phase::Failed | Phase::AwaitingApproval
                        ),
                        "{event:?} leaves Applying for {:?}",
                        step.to
                    );
                }
                // Applied and Degraded only after the objects were judged (or, at a
                // pause, a person chose to roll back).
                if matches!(step.to, Phase::Applied | Phase::Degraded) {
                    let judged = from == Some(Phase::Converging)
                        || (from == Some(Phase::Paused)
                            && event == Event::Decided(Choice::Rollback));
                    assert!(judged, "{from:?} --{event:?}--> {:?}", step.to);
                }
                if step.to == Phase::Converging {
                    assert_eq!(from, Some(Phase::Applying), "{event:?}");
                }
            }
        }
    }

    #[test]
    fn nothing_applies_without_being_cleared() {
        for from in froms() {
            for event in events() {
                if let Ok(step) = next(from, event) {
                    // The next wave of a rollout too: it goes through Scheduled and is
                    // cleared again there.
                    assert_eq!(
                        step.to == Phase::Applying,
                        matches!(event, Event::Cleared(_)),
                        "{from:?} --{event:?}--> Applying"
                    );
                }
            }
        }
    }

    #[test]
    fn warnings_are_the_unhappy_events() {
        for (event, told) in [
            (Event::Planned, EventType::Normal),
            (Event::Applied, EventType::Normal),
            (Event::Written, EventType::Normal),
            (
                Event::Degraded(Degradation::ProgressDeadlineExceeded),
                EventType::Warning,
            ),
            (Event::Superseded, EventType::Normal),
            (Event::Expired, EventType::Warning),
            (
                Event::Failed(FailReason::ValidationFailed),
                EventType::Warning,
            ),
            (
                Event::Withdrawn(Withdrawal::ApprovalExpired),
                EventType::Warning,
            ),
        ] {
            let from = froms().find(|f| next(*f, event).is_ok()).unwrap();
            assert_eq!(next(from, event).unwrap().told, Some(told), "{event:?}");
        }
    }

    #[test]
    fn a_converging_run_ends_applied_degraded_or_superseded_or_writes_its_next_wave() {
        for event in events() {
            if let Ok(step) = next(Some(Phase::Converging), event) {
                // Or, with slices still to approve, waits for their owners.
                assert!(
                    matches!(
                        step.to,
                        Phase::Applied | Phase::Degraded | Phase::Superseded | Phase::Paused
                    ) || (event == Event::WaveConverged && step.to == Phase::Scheduled)
                        || (event == Event::AwaitingSlices && step.to == Phase::AwaitingApproval),
                    "{event:?} leads a converging run to {:?}",
                    step.to
                );
            }
        }
        assert!(
            next(
                Some(Phase::Converging),
                Event::Withdrawn(Withdrawal::ApprovalExpired)
            )
            .is_err()
        );
    }

    #[test]
    fn a_paused_run_moves_only_by_a_choice_or_a_newer_run() {
        for event in events() {
            let Ok(step) = next(Some(Phase::Paused), event) else {
                continue;
            };
            match event {
                Event::Decided(Choice::Continue | Choice::LeaveOut) => {
                    assert_eq!(step.to, Phase::Scheduled)
                }
                Event::Decided(Choice::Rollback) => assert_eq!(step.to, Phase::Degraded),
                Event::Superseded => assert_eq!(step.to, Phase::Superseded),
                other => panic!("a paused run took {other:?}"),
            }
        }
        let paused = next(
            Some(Phase::Converging),
            Event::Paused(Degradation::ObjectFailed),
        )
        .unwrap();
        assert_eq!((paused.to, paused.told), (Phase::Paused, warning()));
        assert_eq!(Event::Decided(Choice::LeaveOut).reason(), "LeaveOutChosen");
    }

    #[test]
    fn reasons_keep_their_recorded_names() {
        assert_eq!(Event::Expired.reason(), "PlanExpired");
        assert_eq!(
            Event::Failed(FailReason::FleetTooLarge).reason(),
            "FleetTooLarge"
        );
        assert_eq!(
            Event::Failed(FailReason::Error("KubeError")).reason(),
            "KubeError"
        );
        assert_eq!(
            Event::Cleared(Clearance::WindowOpened).reason(),
            "WindowOpened"
        );
    }

    #[test]
    fn only_an_invalid_revision_stalls_its_repository() {
        assert!(FailReason::ValidationFailed.stalls());
        assert!(FailReason::PreventDestroy.stalls());
        assert!(!FailReason::ApplyFailed.stalls());
        assert!(!FailReason::Error("FetchFailed").stalls());
        assert!(FailReason::recorded_stalls("PreventDestroy"));
        assert!(!FailReason::recorded_stalls("ApplyFailed"));
    }
}
