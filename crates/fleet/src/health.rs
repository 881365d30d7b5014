//! Whether a run's objects have converged: the objects it wrote, each as its provider
//! reports it, judged against the run's progress deadline. Pure: the controller reads the
//! reports (status subresources, kstatus-style) and the kinds the providers serve, and
//! this decides.
//!
//! An object is judged at its new generation only: a report for an older spec is
//! [`Health::Stale`] and counts as still progressing, never as Ready (the mistake of
//! taking a step as done from stale status). A kind no provider serves has no one to
//! report on it, so its objects never block a run; they are counted as
//! [`Standing::Unserved`] and shown.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ObjectKind;

/// What a provider's status says of one object, read as kstatus would, plus the one case
/// kstatus cannot tell: no provider has written it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Health {
    /// No status at all: no provider has acted on the object (or none serves its kind).
    #[default]
    Unreported,
    /// The status describes an older generation than the spec's.
    Stale,
    /// Current, Ready=True.
    Ready,
    /// Reconciling=True, or Ready=False without Stalled.
    InProgress,
    /// Stalled=True: a terminal failure, with its reason.
    Failed,
}

/// Where one object the run wrote stands, as the run shows it.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum Standing {
    /// The provider reports a terminal failure (Stalled) for the new generation.
    Failed,
    /// Not Ready yet for the new generation: unreported, stale, or reconciling.
    Progressing,
    /// Ready for the new generation.
    Ready,
    /// No provider serves the object's kind in its namespace: nothing will report on it,
    /// and it does not block the run.
    Unserved,
}

impl Standing {
    /// The standing of an object whose kind is `served` (or not) and whose status reads
    /// `health`.
    pub fn of(health: Health, served: Service) -> Self {
        match (served, health) {
            (Service::Unserved, _) => Standing::Unserved,
            (Service::Served, Health::Ready) => Standing::Ready,
            (Service::Served, Health::Failed) => Standing::Failed,
            (Service::Served, Health::Unreported | Health::Stale | Health::InProgress) => {
                Standing::Progressing
            }
        }
    }

    /// Whether the run may end Applied with the object standing so.
    pub fn is_settled(self) -> bool {
        matches!(self, Standing::Ready | Standing::Unserved)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Failed => "Failed",
            Standing::Progressing => "Progressing",
            Standing::Ready => "Ready",
            Standing::Unserved => "Unserved",
        }
    }
}

/// Whether a provider serves a kind in the run's namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Served,
    Unserved,
}

/// One object the run wrote, as its provider reports it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub kind: ObjectKind,
    pub name: String,
    pub standing: Standing,
    /// The reason of the provider's conditions, when it gave one of the contract's.
    pub reason: Option<&'static str>,
}

/// How far the run's objects have got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub ready: u32,
    pub progressing: u32,
    pub failed: u32,
    pub unserved: u32,
}

impl Tally {
    pub fn of(observed: &[Observed]) -> Self {
        let mut tally = Tally::default();
        for o in observed {
            let count = match o.standing {
                Standing::Ready => &mut tally.ready,
                Standing::Progressing => &mut tally.progressing,
                Standing::Failed => &mut tally.failed,
                Standing::Unserved => &mut tally.unserved,
            };
            *count = count.saturating_add(1);
        }
        tally
    }
}

/// What the run does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every object is Ready (or unserved): the run is Applied.
    Converged,
    /// Some objects are still progressing and the deadline has not passed: look again.
    Waiting,
    /// The run ends Degraded, for this reason.
    Degraded(Degradation),
}

/// Why a run did not converge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Degradation {
    /// A provider reports a terminal failure: no wait will change it (kstatus's Failed).
    ObjectFailed,
    /// The progress deadline passed with objects still not Ready.
    ProgressDeadlineExceeded,
    /// Objects the run did not write, Ready before it started, now report a terminal
    /// failure.
    HealthRegression,
}

impl Degradation {
    /// The reason of the run's conditions and Event.
    pub fn as_str(self) -> &'static str {
        match self {
            Degradation::ObjectFailed => "ObjectFailed",
            Degradation::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
            Degradation::HealthRegression => "HealthRegression",
        }
    }
}

/// The verdict on a run whose objects stand as `tally`, `waited` after its writes, with
/// `deadline` to converge in. A terminal failure ends the run at once; otherwise it waits
/// for the deadline.
pub fn judge(tally: Tally, waited: Duration, deadline: Duration) -> Verdict {
    if tally.failed > 0 {
        Verdict::Degraded(Degradation::ObjectFailed)
    } else if tally.progressing == 0 {
        Verdict::Converged
    } else if waited >= deadline {
        Verdict::Degraded(Degradation::ProgressDeadlineExceeded)
    } else {
        Verdict::Waiting
    }
}

/// The objects to show: those not Ready first (failed, then progressing, then unserved),
/// each group in the order given, at most `limit` of them.
pub fn worst_first(observed: &[Observed], limit: usize) -> Vec<&Observed> {
    let mut shown: Vec<&Observed> = observed
        .iter()
        .filter(|o| o.standing != Standing::Ready)
        .collect();
    shown.sort_by_key(|o| o.standing);
    shown.truncate(limit);
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn observed(standing: Standing, name: &str) -> Observed {
        Observed {
            kind: ObjectKind::FleetNode,
            name: name.into(),
            standing,
            reason: None,
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_report_for_an_older_generation_is_not_ready() {
        assert_eq!(
            Standing::of(Health::Stale, Service::Served),
            Standing::Progressing
        );
        assert_eq!(
            Standing::of(Health::Unreported, Service::Served),
            Standing::Progressing
        );
        assert_eq!(
            Standing::of(Health::Ready, Service::Served),
            Standing::Ready
        );
        assert_eq!(
            Standing::of(Health::Failed, Service::Served),
            Standing::Failed
        );
    }

    #[test]
    fn an_unserved_kind_never_blocks() {
        for health in [
            Health::Unreported,
            Health::Stale,
            Health::Ready,
            Health::InProgress,
            Health::Failed,
        ] {
            assert_eq!(Standing::of(health, Service::Unserved), Standing::Unserved);
        }
        let tally = Tally::of(&[observed(Standing::Unserved, "a")]);
        assert_eq!(judge(tally, Duration::ZERO, MINUTE), Verdict::Converged);
    }

    #[test]
    fn the_verdict_table() {
        let t = |ready, progressing, failed| Tally {
            ready,
            progressing,
            failed,
            unserved: 0,
        };
        let cases = [
            (t(3, 0, 0), 0, Verdict::Converged),
            (t(0, 0, 0), 0, Verdict::Converged),
            (t(2, 1, 0), 59, Verdict::Waiting),
            (
                t(2, 1, 0),
                60,
                Verdict::Degraded(Degradation::ProgressDeadlineExceeded),
            ),
            (t(2, 0, 1), 0, Verdict::Degraded(Degradation::ObjectFailed)),
            (t(0, 5, 1), 0, Verdict::Degraded(Degradation::ObjectFailed)),
        ];
        for (tally, secs, want) in cases {
            assert_eq!(
                judge(tally, Duration::from_secs(secs), MINUTE),
                want,
                "{tally:?} after {secs}s"
            );
        }
    }

    #[test]
    fn the_worst_are_shown_first_and_ready_ones_not_at_all() {
        let all = [
            observed(Standing::Ready, "r"),
            observed(Standing::Unserved, "u"),
            observed(Standing::Progressing, "p"),
            observed(Standing::Failed, "f"),
        ];
        let names: Vec<&str> = worst_first(&all, 10)
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(names, ["f", "p", "u"]);
        assert_eq!(worst_first(&all, 1).len(), 1);
    }

    fn standing() -> impl Strategy<Value = Standing> {
        prop_oneof![
            Just(Standing::Failed),
            Just(Standing::Progressing),
            Just(Standing::Ready),
            Just(Standing::Unserved),
        ]
    }

    proptest! {
        /// Applied only when nothing is failed or progressing; Degraded whenever
        /// something failed; never Waiting past the deadline.
        #[test]
        fn the_verdict_follows_the_objects(
            standings in proptest::collection::vec(standing(), 0..64),
            waited in 0u64..1200,
            deadline in 1u64..1200,
        ) {
            let all: Vec<Observed> = standings.iter().enumerate()
                .map(|(i, s)| observed(*s, &i.to_string())).collect();
            let tally = Tally::of(&all);
            prop_assert_eq!(
                (tally.ready + tally.progressing + tally.failed + tally.unserved) as usize,
                all.len()
            );
            let verdict = judge(tally, Duration::from_secs(waited), Duration::from_secs(deadline));
            let settled = all.iter().all(|o| o.standing.is_settled());
            prop_assert_eq!(verdict == Verdict::Converged, settled);
            if all.iter().any(|o| o.standing == Standing::Failed) {
                prop_assert_eq!(verdict, Verdict::Degraded(Degradation::ObjectFailed));
            }
            if waited >= deadline {
                prop_assert_ne!(verdict, Verdict::Waiting);
            }
            let shown = worst_first(&all, all.len());
            prop_assert!(shown.windows(2).all(|w| w[0].standing <= w[1].standing));
            prop_assert!(shown.iter().all(|o| o.standing != Standing::Ready));
        }
    }
}
