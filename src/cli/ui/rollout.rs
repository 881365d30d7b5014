//! A run's rollout on its page: the waves its plan goes out in, the one being written or
//! watched, the soak, and what staging noticed (status.rollout).

use maud::{Markup, html};

use crate::api::rollout::RunRollout;
use crate::api::syncrun::Phase;

/// The waves of a run's plan, the current one marked.
pub(super) fn table(r: &RunRollout, phase: Option<Phase>) -> Markup {
    let current = r.current.map(|c| c as usize);
    let moving = matches!(phase, Some(Phase::Applying | Phase::Converging));
    let state = |i: usize| match current {
        Some(c) if i < c => "written, converged",
        Some(c) if i == c && moving => "current",
        Some(c) if i == c => "last written",
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
