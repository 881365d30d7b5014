//! A run's health on its page: how the objects it wrote stand, as their providers report
//! them (status.health).

use maud::{Markup, html};

use crate::api::syncrun::RunHealth;

/// How the objects a run wrote stand, as their providers report them.
pub(super) fn table(h: &RunHealth) -> Markup {
    html! {
        p #health {
            "Health: " strong { (h.ready) " Ready" }
            @if h.progressing > 0 { ", " (h.progressing) " progressing" }
            @if h.failed > 0 { ", " strong.bad { (h.failed) " failed" } }
            @if h.unserved > 0 { ", " (h.unserved) " not waited for (no provider serves " (h.unserved_kinds.join(", ")) ")" }
            " · deadline " (h.deadline.0.strftime("%Y-%m-%d %H:%M:%S UTC"))
        }
        @if !h.objects.is_empty() {
            table.health {
                caption { "Objects not Ready" }
                thead { tr { th scope="col" { "Object" } th scope="col" { "Standing" } th scope="col" { "Reason" } } }
                tbody {
                    @for o in &h.objects {
                        tr { td { (o.kind) " " code { (o.name) } } td { (o.standing.as_str()) } td { (o.reason.as_deref().unwrap_or("")) } }
                    }
                }
            }
        }
    }
}
