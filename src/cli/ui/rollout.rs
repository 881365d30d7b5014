//! A run's rollout on its page: the waves its plan goes out in, the one being written or
//! watched, the soak, and what staging noticed (status.rollout).

use maud::{Markup, html};

use crate::api::rollout::RunRollout;
use crate::api::syncrun::Phase;

/// The waves of a run's plan, the current one marked.
pub(super) fn table(r: &RunRollout, phase: Option<Phase>) -> Markup {
    let current = r.current.map(|c| c as usize);
    let moving = matches!(phase, Some(Phase::Applying | Phase::Converging));
    // `current` moves on when a wave has converged, before the next is written: between
    // waves (Scheduled) it names the wave that comes next.
    let state = |i: usize| match (current, phase) {
        (Some(c), _) if i < c => "written, converged",
        (Some(c), _) if i == c && moving => "current",
        (Some(c), Some(Phase::Scheduled | Phase::AwaitingApproval)) if i == c => "next",
        (Some(c), Some(Phase::Applied)) if i == c => "written, converged",
        (Some(c), _) if i == c => "last written",
        _ => "to come",
    };
    html! {
        @if r.waves.len() > 1 || !r.findings.is_empty() || !r.regions.is_empty() {
            table.rollout #rollout {
                caption {
                    "Rollout: " (r.policy) "; soak " (r.min_ready_time)
                    @if r.max_failures > 0 { "; up to " (r.max_failures) " failed objects" }
                    @if let (Some(since), true) = (&r.ready_since, moving) {
                        " · settled since " (since.0.strftime("%H:%M:%S UTC"))
                    }
                }
                thead { tr { th scope="col" { "Wave" } th scope="col" { "Machines" } th scope="col" { "Actions" } th scope="col" { "Disrupted" } th scope="col" { "State" } } }
                tbody {
                    @for (i, w) in r.waves.iter().enumerate() {
                        tr {
                            td { (i + 1) "/" (r.waves.len()) }
                            td { code { (w.name) } }
                            td { (w.actions) }
                            td { (w.disrupted) }
                            td { @if Some(i) == current && moving { strong { (state(i)) } } @else { (state(i)) } }
                        }
                    }
                }
            }
            @for f in &r.findings { p.finding { "Topology: " (f) } }
            @for region in &r.regions {
                p.region {
                    "Region " code { (region.region) } ": " (region.disrupted) " of " (region.nodes) " machines disrupted"
                    @if let Some(a) = region.allowed {
                        @if region.exceeded { ", " strong.bad { "over its budget of " (a) } } @else { ", within its budget of " (a) }
                    }
                }
            }
        }
    }
}

/// A paused rollout: why, the objects that stopped it, the choices made so far, and a
/// button per choice (each names the pause shown, so a choice is never made for another).
pub(super) fn pause(r: &RunRollout, phase: Option<Phase>, url: &str) -> Markup {
    html! {
        @for d in &r.decisions {
            p.decision { "Chosen at wave " (d.wave + 1) ": " strong { (d.choice) } " by " (d.by) }
        }
        @if !r.accepted.is_empty() {
            p.accepted { "Accepted as they are: " (r.accepted.join(", ")) }
        }
        @if let (Some(p), Some(Phase::Paused)) = (&r.pause, phase) {
            section.pause #pause {
                h2 { "Paused at wave " (p.wave + 1) " of " (r.waves.len().max(1)) ": " (p.reason) }
                p { "Not converged: " @for (i, o) in p.objects.iter().enumerate() { @if i > 0 { ", " } code { (o) } }
                    @if p.more > 0 { " and " (p.more) " more" } }
                div.actions {
                    @for choice in ["continue", "leave-out", "rollback"] {
                        @if choice != "rollback" || p.rollback_to.is_some() {
                            form method="post" action=(format!("{url}/decide")) {
                                input type="hidden" name="decision_id" value=(p.decision_id);
                                input type="hidden" name="choice" value=(choice);
                                button type="submit" id=(format!("decide-{choice}")) {
                                    @match choice {
                                        "continue" => "Continue: accept these and go on",
                                        "leave-out" => "Leave them out and go on",
                                        _ => "Roll back to what the run before applied",
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::rollout::Wave;

    fn rollout(current: Option<u32>) -> RunRollout {
        let wave = |name: &str| Wave {
            name: name.into(),
            groups: vec![name.into()],
            actions: 2,
            disrupted: 1,
        };
        RunRollout {
            policy: "waves by region, maxUnavailable 25%".into(),
            waves: vec![wave("region=a"), wave("region=b"), wave("region=c")],
            current,
            min_ready_time: "30s".into(),
            ..RunRollout::default()
        }
    }

    fn states(r: &RunRollout, phase: Phase) -> Vec<String> {
        let html = table(r, Some(phase)).into_string();
        [
            "written, converged",
            "current",
            "next",
            "last written",
            "to come",
        ]
        .iter()
        .filter(|s| html.contains(*s))
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn between_waves_the_recorded_wave_is_the_next_one() {
        assert_eq!(
            states(&rollout(Some(1)), Phase::Scheduled),
            ["written, converged", "next", "to come"]
        );
        assert_eq!(
            states(&rollout(Some(1)), Phase::Converging),
            ["written, converged", "current", "to come"]
        );
        assert_eq!(
            states(&rollout(Some(1)), Phase::Degraded),
            ["written, converged", "last written", "to come"]
        );
        assert_eq!(
            states(&rollout(Some(2)), Phase::Applied),
            ["written, converged"]
        );
    }

    #[test]
    fn a_paused_rollout_offers_its_choices_for_this_pause_only() {
        let mut r = rollout(Some(1));
        r.pause = Some(crate::api::pause::RunPause {
            reason: "ObjectFailed".into(),
            wave: 1,
            objects: vec!["fleetnode/rb-0".into()],
            more: 0,
            decision_id: "pause-0123456789ab".into(),
            at: crate::api::now(),
            rollback_to: None,
        });
        let html = pause(&r, Some(Phase::Paused), "/run").into_string();
        assert!(
            html.contains("Paused at wave 2 of 3: ObjectFailed"),
            "{html}"
        );
        assert!(html.contains("fleetnode/rb-0"));
        assert!(html.contains(r#"value="pause-0123456789ab""#));
        assert!(html.contains("decide-continue") && html.contains("decide-leave-out"));
        assert!(!html.contains("decide-rollback"), "no run to roll back to");
        r.pause.as_mut().unwrap().rollback_to = Some("r0".into());
        assert!(
            pause(&r, Some(Phase::Paused), "/run")
                .into_string()
                .contains("decide-rollback")
        );
        // Once decided, no buttons.
        assert!(
            !pause(&r, Some(Phase::Scheduled), "/run")
                .into_string()
                .contains("decide-")
        );
    }
}
