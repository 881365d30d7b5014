//! Whether a rollout moves on: after each wave, the objects written so far are judged
//! (see [`crate::health`]); a wave that converged must then stay so for the soak before
//! the next goes out, and failures within the budget do not stop it. A wave that cannot
//! go on (failures past the budget, the deadline, or a regression of objects the run did
//! not write) pauses the rollout while waves remain, for a person to decide
//! ([`super::pause`]); at the last wave the run ends Degraded. Pure.

use std::time::Duration;

use crate::health::{Degradation, Tally, Verdict, judge};

/// The rules a run was planned with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate {
    /// Failed objects the rollout goes on with.
    pub max_failures: u32,
    /// How long a converged wave must stay so before the next goes out.
    pub soak: Duration,
    /// Whether waves remain to be written.
    pub waves_left: bool,
}

/// What a run in a rollout does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Objects are still progressing: look again.
    Waiting,
    /// Converged, and the soak runs: look again, at the latest after `left`.
    Soaking { left: Duration },
    /// Converged and soaked: the next wave goes out.
    NextWave,
    /// The last wave converged with nothing failed: the run is Applied.
    Converged,
    /// Waves remain, and this one cannot go on for this reason: a person decides.
    Paused(Degradation),
    /// The last wave did not converge, for this reason: the run ends.
    Degraded(Degradation),
}

/// The next step, with `regressed` how many objects the run did not write have
/// regressed since it started, and `ready_for` how long everything written so far has
/// been settled (None: not settled at the last look).
pub fn next(
    tally: Tally,
    regressed: u32,
    waited: Duration,
    deadline: Duration,
    ready_for: Option<Duration>,
    gate: Gate,
) -> Step {
    // Failures within the budget are settled for the rollout's sake; not for its result.
    let tolerated = tally.failed <= gate.max_failures;
    let judged = Tally {
        failed: if tolerated { 0 } else { tally.failed },
        ..tally
    };
    let stop = |why| match gate.waves_left {
        true => Step::Paused(why),
        false => Step::Degraded(why),
    };
    // The run's own objects are named first; a regression around them stops it too,
    // without waiting for them.
    match judge(judged, waited, deadline) {
        Verdict::Degraded(why) => stop(why),
        _ if regressed > 0 => stop(Degradation::HealthRegression),
        Verdict::Waiting => Step::Waiting,
        Verdict::Converged if !gate.waves_left => {
            if tally.failed > 0 {
                Step::Degraded(Degradation::ObjectFailed)
            } else {
                Step::Converged
            }
        }
        // Nothing reports on these objects: a soak would watch nothing.
        Verdict::Converged if tally.ready == 0 => Step::NextWave,
        Verdict::Converged => {
            let ready_for = ready_for.unwrap_or_default();
            if ready_for >= gate.soak {
                Step::NextWave
            } else {
                Step::Soaking {
                    left: gate.soak - ready_for,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn tally(ready: u32, progressing: u32, failed: u32, unserved: u32) -> Tally {
        Tally {
            ready,
            progressing,
            failed,
            unserved,
        }
    }

    fn gate(max_failures: u32, waves_left: bool) -> Gate {
        Gate {
            max_failures,
            soak: 30 * S,
            waves_left,
        }
    }

    #[test]
    fn a_converged_wave_soaks_before_the_next() {
        let t = tally(10, 0, 0, 0);
        let g = gate(0, true);
        assert_eq!(
            next(t, 0, S, 60 * S, None, g),
            Step::Soaking { left: 30 * S }
        );
        assert_eq!(
            next(t, 0, S, 60 * S, Some(12 * S), g),
            Step::Soaking { left: 18 * S }
        );
        assert_eq!(next(t, 0, S, 60 * S, Some(30 * S), g), Step::NextWave);
        // The last wave does not soak: nothing comes after it.
        assert_eq!(next(t, 0, S, 60 * S, None, gate(0, false)), Step::Converged);
    }

    #[test]
    fn nothing_to_watch_means_no_soak() {
        let t = tally(0, 0, 0, 7);
        assert_eq!(next(t, 0, S, 60 * S, None, gate(0, true)), Step::NextWave);
    }

    #[test]
    fn failures_within_the_budget_go_on_but_never_end_applied() {
        let t = tally(9, 0, 1, 0);
        assert_eq!(
            next(t, 0, S, 60 * S, None, gate(0, true)),
            Step::Paused(Degradation::ObjectFailed)
        );
        assert_eq!(
            next(t, 0, S, 60 * S, Some(40 * S), gate(1, true)),
            Step::NextWave
        );
        assert_eq!(
            next(t, 0, S, 60 * S, None, gate(1, false)),
            Step::Degraded(Degradation::ObjectFailed)
        );
        assert_eq!(
            next(tally(8, 0, 2, 0), 0, S, 60 * S, None, gate(1, true)),
            Step::Paused(Degradation::ObjectFailed)
        );
    }

    #[test]
    fn a_wave_still_progressing_waits_until_its_deadline() {
        let t = tally(5, 1, 0, 0);
        assert_eq!(next(t, 0, S, 60 * S, None, gate(0, true)), Step::Waiting);
        assert_eq!(
            next(t, 0, 60 * S, 60 * S, None, gate(0, true)),
            Step::Paused(Degradation::ProgressDeadlineExceeded)
        );
        assert_eq!(
            next(t, 0, 60 * S, 60 * S, None, gate(0, false)),
            Step::Degraded(Degradation::ProgressDeadlineExceeded)
        );
    }

    #[test]
    fn a_regression_around_the_rollout_stops_it_even_while_its_own_objects_are_fine() {
        let t = tally(10, 0, 0, 0);
        assert_eq!(
            next(t, 1, S, 60 * S, Some(40 * S), gate(0, true)),
            Step::Paused(Degradation::HealthRegression)
        );
        assert_eq!(
            next(t, 1, S, 60 * S, None, gate(5, false)),
            Step::Degraded(Degradation::HealthRegression)
        );
    }
}
