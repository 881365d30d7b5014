//! Which upstream revision a downstream repository may plan: a pure judgement over the
//! upstream's runs (newest first) and its drift, at a given time. A revision is
//! eligible when a run from git applied it whole (Applied: written and converged) and
//! the upstream then held it, without drift, for the required time: until now if it is
//! still the upstream's state, or until a newer run wrote over it. A revision whose
//! run failed or degraded never applied, so it is never a candidate; one that drifted
//! while it was the upstream's state (a Drift run was started) never becomes eligible;
//! drift reported now holds the clock until it clears, then the hold counts afresh.

use std::time::Duration;

use crate::api::syncrun::{Phase, Trigger};

/// What eligibility reads of one upstream run. Times are seconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRun {
    pub revision: String,
    pub trigger: Trigger,
    pub phase: Option<Phase>,
    /// Whether the run wrote anything to the fleet.
    pub wrote: bool,
    /// Whether it wrote its whole plan as planned from the revision: nothing left out by
    /// an `exclude` annotation or at a pause. Only that is evidence for the revision.
    pub whole: bool,
    /// When it began writing (approved), or was created.
    pub written_at: Option<i64>,
    /// When it ended.
    pub completed_at: Option<i64>,
    pub created_at: i64,
}

/// The upstream's drift as its repository reports it now: drifted or not, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drift {
    pub drifted: bool,
    pub since: i64,
}

/// Why the newest applied upstream revision is not (yet) eligible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holdup {
    /// Applied, and held for `held` of the time required so far.
    Soaking {
        applied_ago: Duration,
        held: Duration,
    },
    /// The upstream reports drift now: the hold waits until it clears.
    DriftedNow,
    /// It drifted while it was the upstream's state: never eligible.
    Drifted,
    /// The upstream rolled it back: never eligible.
    RolledBack,
}

/// The judgement: the newest eligible revision (what the downstream plans), and what
/// holds back a newer applied one, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Eligibility {
    pub eligible: Option<(String, Duration)>,
    /// The run (its index in the runs judged) whose hold made the revision eligible.
    pub eligible_run: Option<usize>,
    pub newer: Option<(String, Holdup)>,
}

/// Whether a run of this trigger planned a revision from git (not a restore).
pub fn from_git(trigger: Trigger) -> bool {
    matches!(
        trigger,
        Trigger::Schedule | Trigger::Manual | Trigger::Catalog
    )
}

/// Judges `runs` (newest first) at `now` against the hold `required`.
pub fn judge(
    runs: &[UpstreamRun],
    drift: Option<Drift>,
    now: i64,
    required: Duration,
) -> Eligibility {
    let mut out = Eligibility::default();
    for (i, applied) in runs.iter().enumerate() {
        if !from_git(applied.trigger) || applied.phase != Some(Phase::Applied) || !applied.whole {
            continue;
        }
        let Some(completed) = applied.completed_at else {
            continue;
        };
        // Newer runs (before it in the list): the oldest of them that wrote replaced it.
        let newer = &runs[..i];
        let replaced_at = newer
            .iter()
            .rev()
            .filter(|r| r.trigger != Trigger::Drift && r.wrote)
            .find_map(|r| r.written_at.or(Some(r.created_at)));
        let until = replaced_at.unwrap_or(now);
        let drifted_then = newer.iter().any(|r| {
            r.trigger == Trigger::Drift && r.created_at >= completed && r.created_at < until
        });
        let rolled_back = rolled_back(runs, i);
        let mut since = completed;
        let holdup = if rolled_back {
            Some(Holdup::RolledBack)
        } else if drifted_then {
            Some(Holdup::Drifted)
        } else {
            match (replaced_at, drift) {
                (None, Some(d)) if d.drifted => Some(Holdup::DriftedNow),
                (None, Some(d)) => {
                    since = since.max(d.since);
                    None
                }
                _ => None,
            }
        };
        let held = secs(until - since);
        if held < required && holdup.is_none() && replaced_at.is_some() {
            // Written over before it held long enough: it never will; not a candidate.
            continue;
        }
        let holdup = holdup.or_else(|| {
            (held < required).then(|| Holdup::Soaking {
                applied_ago: secs(now - completed),
                held,
            })
        });
        match holdup {
            None => {
                out.eligible = Some((applied.revision.clone(), held));
                out.eligible_run = Some(i);
                return out;
            }
            Some(holdup) if out.newer.is_none() && !same(&out, &applied.revision) => {
                out.newer = Some((applied.revision.clone(), holdup));
            }
            Some(_) => {}
        }
    }
    out
}

/// Whether a rollback that wrote replaced the state run `i` left: the newest run from
/// git older than the rollback that wrote is `i`. (A rollback rejected or never
/// applied rolled nothing back.)
fn rolled_back(runs: &[UpstreamRun], i: usize) -> bool {
    runs[..i]
        .iter()
        .enumerate()
        .filter(|(_, r)| r.trigger == Trigger::Rollback && r.wrote)
        .any(|(k, _)| {
            runs[k + 1..]
                .iter()
                .position(|r| from_git(r.trigger) && r.wrote)
                .is_some_and(|p| k + 1 + p == i)
        })
}

/// The revisions runs from git wrote, newest first: the upstream's history, which
/// promotion moves forward along.
pub fn history(runs: &[UpstreamRun]) -> Vec<&str> {
    runs.iter()
        .filter(|r| from_git(r.trigger) && r.wrote)
        .map(|r| r.revision.as_str())
        .collect()
}

fn same(out: &Eligibility, revision: &str) -> bool {
    out.newer.as_ref().is_some_and(|(r, _)| r == revision)
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

/// A duration as people write it: `45s`, `20m`, `1h5m`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn run(revision: &str, trigger: Trigger, phase: Phase, at: i64) -> UpstreamRun {
        let wrote = matches!(phase, Phase::Applied | Phase::Degraded | Phase::Converging);
        UpstreamRun {
            revision: revision.into(),
            trigger,
            phase: Some(phase),
            wrote,
            whole: wrote,
            written_at: wrote.then_some(at + 10),
            completed_at: phase.is_finished().then_some(at + 60),
            created_at: at,
        }
    }

    #[test]
    fn a_revision_is_eligible_once_held_long_enough() {
        let runs = [run("r1", Trigger::Schedule, Phase::Applied, 0)];
        let early = judge(&runs, None, 60 + 1200, HOUR);
        assert_eq!(early.eligible, None);
        assert_eq!(
            early.newer,
            Some((
                "r1".into(),
                Holdup::Soaking {
                    applied_ago: Duration::from_secs(1200),
                    held: Duration::from_secs(1200)
                }
            ))
        );
        let later = judge(&runs, None, 60 + 3600, HOUR);
        assert_eq!(later.eligible, Some(("r1".into(), HOUR)));
        assert_eq!(later.newer, None);
    }

    #[test]
    fn a_newer_soaking_revision_leaves_the_older_eligible_one_planned() {
        let runs = [
            run("r2", Trigger::Schedule, Phase::Applied, 10_000),
            run("r1", Trigger::Schedule, Phase::Applied, 0),
        ];
        let now = 10_000 + 60 + 600;
        let j = judge(&runs, None, now, HOUR);
        // r1 held from 60 until r2 began writing at 10_010.
        assert_eq!(j.eligible, Some(("r1".into(), Duration::from_secs(9950))));
        assert!(matches!(j.newer, Some((ref r, Holdup::Soaking { .. })) if r == "r2"));
    }

    #[test]
    fn a_revision_that_failed_or_drifted_upstream_never_becomes_eligible() {
        let failed = [
            run("r2", Trigger::Schedule, Phase::Degraded, 10_000),
            run("r1", Trigger::Schedule, Phase::Applied, 0),
        ];
        let j = judge(&failed, None, 100_000, HOUR);
        // r2 never applied; r1 held until r2 wrote over it.
        assert_eq!(j.eligible.map(|e| e.0), Some("r1".into()));
        assert_eq!(j.newer, None);

        let drifted = [
            run("d", Trigger::Drift, Phase::AwaitingApproval, 600),
            run("r1", Trigger::Schedule, Phase::Applied, 0),
        ];
        let j = judge(&drifted, None, 100_000, HOUR);
        assert_eq!(j.eligible, None);
        assert_eq!(j.newer, Some(("r1".into(), Holdup::Drifted)));
    }

    #[test]
    fn drift_reported_now_holds_the_clock_and_it_restarts_once_cleared() {
        let runs = [run("r1", Trigger::Schedule, Phase::Applied, 0)];
        let now = 60 + 7200;
        let drifting = Drift {
            drifted: true,
            since: 3000,
        };
        let j = judge(&runs, Some(drifting), now, HOUR);
        assert_eq!(j.newer, Some(("r1".into(), Holdup::DriftedNow)));
        let cleared = Drift {
            drifted: false,
            since: now - 600,
        };
        let j = judge(&runs, Some(cleared), now, HOUR);
        assert_eq!(j.eligible, None);
        assert!(
            matches!(j.newer, Some((_, Holdup::Soaking { held, .. })) if held == Duration::from_secs(600))
        );
    }

    #[test]
    fn rollbacks_are_no_evidence_and_disqualify_what_they_rolled_back() {
        // r2 applied, r3 waits for approval; people roll back to r1's state: r2, the
        // state the rollback replaced, is disqualified, not r3.
        let runs = [
            run("r1", Trigger::Rollback, Phase::Applied, 20_000),
            run("r3", Trigger::Schedule, Phase::AwaitingApproval, 15_000),
            run("r2", Trigger::Schedule, Phase::Applied, 10_000),
            run("r1", Trigger::Schedule, Phase::Applied, 0),
        ];
        let j = judge(&runs, None, 100_000, HOUR);
        assert_eq!(j.newer, Some(("r2".into(), Holdup::RolledBack)));
        // r1 held from 60 until r2 wrote at 10_010; the rollback is no evidence for r1.
        assert_eq!(j.eligible, Some(("r1".into(), Duration::from_secs(9950))));
        assert_eq!(j.eligible_run, Some(3));
        // A rollback that was rejected rolled nothing back.
        let runs = [
            run("r1", Trigger::Rollback, Phase::Rejected, 20_000),
            run("r2", Trigger::Schedule, Phase::Applied, 10_000),
        ];
        let j = judge(&runs, None, 100_000, HOUR);
        assert_eq!(j.eligible.map(|e| e.0), Some("r2".into()));
        assert_eq!(history(&runs), ["r2"]);
    }

    #[test]
    fn a_run_that_left_actions_out_is_no_evidence_and_a_short_hold_is_no_candidate() {
        let mut partial = run("r2", Trigger::Schedule, Phase::Applied, 10_000);
        partial.whole = false;
        let runs = [partial, run("r1", Trigger::Schedule, Phase::Applied, 0)];
        let j = judge(&runs, None, 100_000, HOUR);
        // r2 wrote over r1 at 10_010 but proves nothing itself.
        assert_eq!(j.eligible.map(|e| e.0), Some("r1".into()));
        assert_eq!(j.newer, None);
        // r1, replaced after 20 minutes, never becomes eligible: not shown as soaking.
        let runs = [
            run("r2", Trigger::Schedule, Phase::Applied, 1200),
            run("r1", Trigger::Schedule, Phase::Applied, 0),
        ];
        let j = judge(&runs, None, 1200 + 60 + 600, HOUR);
        assert_eq!(j.eligible, None);
        assert!(matches!(j.newer, Some((ref r, Holdup::Soaking { .. })) if r == "r2"));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(1200)), "20m");
        assert_eq!(human(Duration::from_secs(1250)), "20m50s");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(3900)), "1h5m");
    }
}
