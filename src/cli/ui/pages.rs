//! The pages, rendered on the server (maud checks them at compile time). Plans are shown
//! with the same grouping and lines as `kubectl fleet plan`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use maud::{DOCTYPE, Markup, html};

use crate::api::repository::HistoryEntry;
use crate::api::syncrun::Phase;
use crate::api::{GitopsRepository, SyncRun, condition};
use crate::cli::ui::governance;
use crate::fleet::render::{created_specs, detail_parts};
use crate::fleet::{ObjectKind, ObjectRef, Operation, Plan};

/// A message shown at the top of a page: a refusal, or what was done.
pub(crate) enum Notice {
    Refused(String),
}

pub(crate) fn run_url(ns: &str, name: &str) -> String {
    format!("ns/{ns}/runs/{name}")
}

pub(crate) fn repo_url(ns: &str, name: &str) -> String {
    format!("ns/{ns}/repositories/{name}")
}

/// A page. `base` is the UI's secret path with a trailing slash: every link in the pages
/// is relative to it.
pub(crate) fn layout(
    base: &str,
    title: &str,
    identity: &str,
    notice: Option<&Notice>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                base href=(base);
                title { (title) " · fleetgate" }
                link rel="stylesheet" href="assets/ui.css";
                script src="assets/ui.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="./" { "fleetgate" }
                    nav aria-label="Main" { a href="./" { "Repositories" } }
                    span.who { "Acting as " strong { (identity) } }
                }
                main #main {
                    @if let Some(Notice::Refused(why)) = notice {
                        div.notice.refused role="alert" {
                            strong { "Refused: " } span.reason { (why) }
                        }
                    }
                    (body)
                }
            }
        }
    }
}

pub(crate) fn error_page(base: &str, identity: &str, message: &str) -> Markup {
    layout(
        base,
        "Error",
        identity,
        None,
        html! {
            h1 { "Something went wrong" }
            p.error role="alert" { (message) }
            p { a href="./" { "Back to the repositories" } }
        },
    )
}

fn badge(text: &str, tone: &str) -> Markup {
    html! { span class={ "badge " (tone) } { (text) } }
}

fn phase_tone(phase: Option<Phase>) -> &'static str {
    match phase {
        Some(Phase::Applied | Phase::NoChanges) => "good",
        Some(
            Phase::Failed | Phase::Degraded | Phase::Rejected | Phase::Superseded | Phase::Expired,
        ) => "bad",
        Some(Phase::AwaitingApproval | Phase::Scheduled) => "wait",
        _ => "busy",
    }
}

fn phase_badge(phase: Option<Phase>) -> Markup {
    badge(phase.map_or("Pending", Phase::as_str), phase_tone(phase))
}

use crate::api::short_revision as short;

fn time(t: &Option<Time>) -> String {
    t.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
}

/// The Ready, Stalled and Drifted conditions of a repository as badges.
fn conditions(repo: &GitopsRepository) -> Markup {
    let status = repo.status.clone().unwrap_or_default();
    html! {
        @for (type_, bad_when) in [("Ready", "False"), ("Stalled", "True"), ("Drifted", "True")] {
            @match condition(&status.conditions, type_) {
                Some(c) => {
                    @let tone = if c.status == bad_when { "bad" } else if c.status == "Unknown" { "busy" } else { "good" };
                    span title=(format!("{}: {}", c.reason, c.message)) {
                        (badge(&format!("{type_}={}", c.status), tone))
                    }
                }
                None => (badge(&format!("{type_}=?"), "busy")),
            }
            " "
        }
    }
}

pub(crate) fn repositories(repos: &[GitopsRepository], scope_note: Option<&str>) -> Markup {
    html! {
        h1 { "Repositories" }
        @if let Some(note) = scope_note { p.note { (note) } }
        @if repos.is_empty() {
            p { "No GitopsRepository here yet." }
        } @else {
            table {
                caption.visually-hidden { "GitopsRepositories and their state" }
                thead { tr {
                    th scope="col" { "Repository" } th scope="col" { "State" }
                    th scope="col" { "Applied revision" } th scope="col" { "Last applied run" }
                    th scope="col" { "Newest run" }
                } }
                tbody {
                    @for repo in repos {
                        @let ns = repo.namespace().unwrap_or_default();
                        @let status = repo.status.clone().unwrap_or_default();
                        @let applied = status.history.iter().find(|h| h.phase.is_some_and(Phase::wrote_plan));
                        tr {
                            th scope="row" { a href=(repo_url(&ns, &repo.name_any())) { (ns) "/" (repo.name_any()) } }
                            td { (conditions(repo)) }
                            td { code { (short(status.last_applied_revision.as_deref().unwrap_or("—"))) } }
                            td { @if let Some(h) = applied { a href=(run_url(&ns, &h.sync_run)) { (h.sync_run) } } @else { "—" } }
                            td {
                                @if let Some(h) = status.history.first() {
                                    a href=(run_url(&ns, &h.sync_run)) { (h.sync_run) } " " (phase_badge(h.phase))
                                } @else { "—" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The repository's recent runs, each applied one with a rollback to it.
fn history(ns: &str, repository: &str, entries: &[HistoryEntry]) -> Markup {
    html! {
        table {
            caption.visually-hidden { "Recent SyncRuns, newest first" }
            thead { tr {
                th scope="col" { "SyncRun" } th scope="col" { "Revision" } th scope="col" { "Trigger" }
                th scope="col" { "Phase" } th scope="col" { "Plan" } th scope="col" { "+ ~ −" }
                th scope="col" { "Approved by" } th scope="col" { "Completed" }
                th scope="col" { span.visually-hidden { "Actions" } }
            } }
            tbody {
                @for h in entries {
                    @let c = h.changes.unwrap_or_default();
                    tr {
                        td { a href=(run_url(ns, &h.sync_run)) { (h.sync_run) } }
                        td { code { (short(&h.revision)) } }
                        td { (h.trigger.as_str()) }
                        td { (phase_badge(h.phase)) }
                        td { code { (h.plan_id.as_deref().unwrap_or("")) } }
                        td { (c.add) " " (c.update) " " (c.delete) }
                        td { (h.approved_by.as_deref().unwrap_or("")) }
                        td { (time(&h.completed_at)) }
                        td { (governance::rollback_link(ns, repository, h)) }
                    }
                }
            }
        }
    }
}

/// The repository's git URL, or the Flux source it reads.
fn source_of(repo: &GitopsRepository) -> String {
    match (&repo.spec.url, &repo.spec.source_ref) {
        (Some(url), _) => url.clone(),
        (None, Some(source)) => format!("{} {}", source.kind.as_str(), source.name),
        (None, None) => "—".into(),
    }
}

pub(crate) fn repository(repo: &GitopsRepository) -> Markup {
    let ns = repo.namespace().unwrap_or_default();
    let name = repo.name_any();
    let status = repo.status.clone().unwrap_or_default();
    html! {
        h1 { "Repository " (ns) "/" (name) }
        p { (conditions(repo)) }
        dl.facts {
            dt { "Source" } dd { code { (source_of(repo)) } " " (repo.spec.path) }
            dt { "Fetched revision" } dd { code { (status.last_fetched_revision.as_deref().map(short).unwrap_or("—")) } }
            dt { "Applied revision" } dd { code { (status.last_applied_revision.as_deref().map(short).unwrap_or("—")) } }
            dt { "Approval" } dd { (format!("{:?}", repo.spec.approval)) }
            @if let Some(env) = &repo.spec.environment { dt { "Environment" } dd { code { (env) } } }
            @if let Some(p) = &status.promotion {
                dt { "Promotion" } dd #promotion { "from " code { (p.from) } " (" (p.reason) "): " (p.message) }
            }
        }
        div.actions {
            form method="post" action=(format!("{}/sync", repo_url(&ns, &name))) {
                button type="submit" { "Sync now" }
            }
            a.button href=(format!("{}/drift", repo_url(&ns, &name))) { "Drift" }
        }
        h2 { "History" }
        (history(&ns, &name, &status.history))
    }
}

pub(crate) fn drift(repo: &GitopsRepository, none_listed: &str) -> Markup {
    let ns = repo.namespace().unwrap_or_default();
    let name = repo.name_any();
    let status = repo.status.clone().unwrap_or_default();
    html! {
        h1 { "Drift of " a href=(repo_url(&ns, &name)) { (ns) "/" (name) } }
        @match &status.drift {
            None => p.note { (none_listed) },
            Some(d) => {
                p { (d.count) " objects differ from revision " code { (short(&d.revision)) }
                    @if d.truncated { " (the first 50 are listed)" } "." }
                @for o in &d.objects {
                    section.entry {
                        h2 { (format!("{:?}", o.drift)) " " (o.kind.as_str()) " " code { (o.name) } }
                        @if !o.fields.is_empty() {
                            p.hint { "expected → actual" }
                            ul.fields { @for f in &o.fields { li { code { (f.replace(" -> ", " → ")) } } } }
                        }
                    }
                }
            }
        }
    }
}

fn op_class(op: Operation) -> &'static str {
    match op {
        Operation::Create => "op create",
        Operation::Update => "op update",
        Operation::Delete => "op delete",
    }
}

/// The plan like `terraform plan`: per kind, adds, changes with old → new, deletes.
pub(crate) fn plan(plan: &Plan) -> Markup {
    let created = created_specs(plan);
    let t = plan.summary.total();
    html! {
        p.summary #plan-summary {
            "Plan " code #plan-id { (plan.plan_id) } ": "
            strong { (t.add) " to add, " (t.update) " to change, " (t.delete) " to delete." }
        }
        @for kind in ObjectKind::ALL {
            @let entries: Vec<_> = plan.diff.iter().filter(|d| d.kind == kind).collect();
            @if !entries.is_empty() {
                section.kind {
                    h3 { (kind.as_str()) }
                    ul.plan {
                        @for d in entries {
                            li class=(op_class(d.operation)) data-object=(ObjectRef::new(d.kind, d.name.clone()).to_string()) {
                                span.symbol aria-hidden="true" { (d.operation.symbol()) }
                                span.visually-hidden { (d.operation.word()) " " }
                                code { (d.name) }
                                @let lines = detail_parts(&created, d);
                                @if !lines.is_empty() {
                                    // Path, old and new apart: a value cannot pose as another change.
                                    ul.fields { @for l in lines { li {
                                        code.path { (l.path) } ": "
                                        @if let Some(old) = &l.old { code.old { (old) } " → " }
                                        code.new { (l.new) }
                                    } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The plan id Approve may name: the stored plan's, if it was read, its digest verified
/// and it is the plan the run's status names; else why there is no Approve.
pub(crate) fn approvable_plan(
    run: &SyncRun,
    full: &Result<Option<Plan>, String>,
) -> Result<String, String> {
    let named = run
        .status
        .as_ref()
        .and_then(|s| s.plan_id.as_deref())
        .unwrap_or_default();
    match full {
        Ok(Some(p)) if !named.is_empty() && p.plan_id == named => Ok(p.plan_id.clone()),
        Ok(Some(p)) => Err(format!(
            "the stored plan is {}, but the run awaits approval of {named:?}",
            p.plan_id
        )),
        Ok(None) => Err("no full plan is stored for this run".to_owned()),
        Err(e) => Err(format!(
            "the stored plan cannot be read or failed its integrity check: {e}"
        )),
    }
}

/// What the run's status says that changes while one looks: phase, plan id, approval,
/// progress and each action's state; the forms that apply to this phase. `shown` is the
/// verified plan id the page displays: Approve is offered for it only, and only while it
/// is the one awaiting approval, and not to `me` once I approved it.
pub(crate) fn live(run: &SyncRun, shown: Option<&str>, me: &str) -> Markup {
    let ns = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let status = run.status.clone().unwrap_or_default();
    let phase = status.phase;
    let finished = phase.is_some_and(Phase::is_finished);
    let plan_id = status.plan_id.clone().unwrap_or_default();
    let url = run_url(&ns, &name);
    let mine = governance::approved_by(&status, me);
    html! {
        div #live data-plan=(plan_id) data-phase=(phase.map_or("", Phase::as_str)) data-final[finished] {
            p.phase { "Phase: " span #phase { (phase_badge(phase)) } }
            @if let Some(m) = &status.message { p #message { (m) } }
            @if let Some(who) = &status.approved_by {
                p #approved { "Approved by " strong { (who) } " at " (time(&status.approved_at)) }
            }
            @if let Some(p) = &status.progress {
                @if phase == Some(Phase::Applying) || finished {
                    p {
                        label for="progress" { "Applied " (p.applied) " of " (p.total) }
                        " " progress #progress max=(p.total.max(1)) value=(p.applied) {}
                        @if p.failed > 0 || p.skipped > 0 { " " (p.failed) " failed, " (p.skipped) " skipped" }
                    }
                }
            }
            @if let Some(r) = &status.rollout { (super::rollout::table(r, phase)) (super::rollout::pause(r, phase, &url)) }
            @if let Some(h) = &status.health { (super::health::table(h)) }
            @if !status.modules.is_empty() {
                p #modules { "Modules: " @for (i, m) in status.modules.iter().enumerate() { @if i > 0 { ", " } code { (m) } } }
            }
            (governance::status(run))
            @if matches!(phase, Some(Phase::AwaitingApproval | Phase::Scheduled)) {
                div.actions {
                    @match shown.filter(|s| !s.is_empty() && *s == plan_id) {
                        Some(_) if mine => p #you-approved {
                            "You approved this plan; "
                            @if phase == Some(Phase::Scheduled) { "an override of the change windows needs other approvers." }
                            @else { "it waits for another approver." }
                        },
                        Some(shown) => form method="post" action=(format!("{url}/approve")) {
                            input type="hidden" name="plan_id" value=(shown);
                            button.primary #approve type="submit" {
                                @if phase == Some(Phase::Scheduled) { "Approve " (shown) " toward a window override" }
                                @else { "Approve " (shown) }
                            }
                        },
                        None => p #no-approve { "No Approve here: the plan shown is not verified as the one awaiting approval." },
                    }
                    @if phase == Some(Phase::AwaitingApproval) {
                        a.button #edit href=(format!("{url}/edit")) { "Leave actions out…" }
                    }
                }
            }
            @if phase == Some(Phase::AwaitingApproval) {
                form.reject method="post" action=(format!("{url}/reject")) {
                    label for="reason" { "Reason to reject" }
                    input #reason type="text" name="reason" required autocomplete="off";
                    button #reject type="submit" { "Reject" }
                }
            }
            @if !status.actions.is_empty() && phase != Some(Phase::AwaitingApproval) {
                table.states {
                    caption { "Actions" }
                    thead { tr { th scope="col" { "Object" } th scope="col" { "Operation" } th scope="col" { "State" } th scope="col" { "Error" } } }
                    tbody {
                        @for a in &status.actions {
                            tr { td { (a.kind) " " code { (a.name) } } td { (a.operation) } td { (format!("{:?}", a.state)) } td { (a.error.as_deref().unwrap_or("")) } }
                        }
                    }
                }
            }
        }
    }
}

/// A run: its facts, live state, the plan and what else the status says.
pub(crate) fn run(
    run: &SyncRun,
    full: &Result<Option<Plan>, String>,
    repo: Option<&GitopsRepository>,
    me: &str,
) -> Markup {
    let ns = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let status = run.status.clone().unwrap_or_default();
    let approvable = approvable_plan(run, full);
    let shown = approvable.as_deref().unwrap_or_default();
    let live_url = format!("{}/live?plan={shown}", run_url(&ns, &name));
    html! {
        h1 { "SyncRun " (name) }
        dl.facts {
            dt { "Repository" } dd { a href=(repo_url(&ns, &run.spec.repository)) { (ns) "/" (run.spec.repository) } }
            dt { "Revision" } dd { code { (short(&run.spec.revision)) } }
            dt { "Trigger" } dd { (run.spec.trigger.as_str()) }
            (governance::rollback_fact(run))
        }
        section aria-live="polite" data-live=(live_url) { (live(run, approvable.as_deref().ok(), me)) }
        @if matches!(status.phase, Some(Phase::Failed | Phase::Degraded)) {
            @if let Some(m) = &status.message {
                section.problems {
                    h2 { "Errors" }
                    ul.diagnostics { @for line in m.lines() { li { code { (line) } } } }
                }
            }
        }
        @if !status.warnings.is_empty() {
            section.problems { h2 { "Warnings" } ul.diagnostics { @for w in &status.warnings { li { code { (w) } } } } }
        }
        @if !status.conflicts.is_empty() {
            section.problems { h2 { "Conflicts (not planned)" } ul { @for c in &status.conflicts { li { (c) } } } }
        }
        @if !status.excluded.is_empty() {
            section { h2 { "Left out" } p #excluded { @for (i, e) in status.excluded.iter().enumerate() { @if i > 0 { ", " } code { (e) } } } }
        }
        section.plan {
            h2 { "Plan" }
            @match full {
                Ok(Some(p)) => {
                    @if let (Some(Phase::AwaitingApproval | Phase::Scheduled), Err(why)) = (status.phase, &approvable) {
                        p.error #unverified { (why) "; nothing can be approved here." }
                    }
                    (plan(p))
                },
                _ => {
                    @if let Err(e) = full { p.error #unverified { "The stored plan cannot be read or failed its integrity check, so nothing can be approved here; what the status lists follows (it may be cut short). To see the full plan you need to read ConfigMaps in this namespace (Kubernetes' view role grants it; the chart's roles do not). " (e) } }
                    @if status.diff.is_empty() { p { "No plan is recorded." } }
                    @else {
                        ul.plan { @for d in &status.diff {
                            li { (d.operation) " " (d.kind) " " code { (d.name) }
                                @if !d.fields.is_empty() { ul.fields { @for f in &d.fields { li { code { (f.replace(" -> ", " → ")) } } } } } }
                        } }
                    }
                }
            }
        }
        @if let Some(repo) = repo {
            section { h2 { "History" } (history(&ns, &run.spec.repository, &repo.status.clone().unwrap_or_default().history)) }
        }
    }
}

/// Leave actions out: tick, preview (dependents and the new plan id), confirm.
pub(crate) fn edit(
    run: &SyncRun,
    all: &Plan,
    ticked: &[ObjectRef],
    preview: Option<&Result<Plan, String>>,
) -> Markup {
    let ns = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let url = run_url(&ns, &name);
    let current = run
        .status
        .as_ref()
        .and_then(|s| s.plan_id.clone())
        .unwrap_or_default();
    let previous = run
        .annotations()
        .get(crate::api::annotations::EXCLUDE)
        .cloned()
        .unwrap_or_default();
    html! {
        h1 { "Leave actions out of " a href=(url) { (name) } }
        p { "Tick what should not be applied now. What depends on it goes with it; the plan gets a new id, which is then the one to approve. Current plan: " code { (current) } "." }
        form method="get" action=(format!("{url}/edit")) {
            fieldset {
                legend { "Actions of the plan" }
                ul.choices {
                    @for a in &all.actions {
                        @let r = a.reference();
                        @let id = format!("x-{}", r.to_string().replace(['/', '.'], "-"));
                        li {
                            input type="checkbox" name="exclude" id=(id) value=(r.to_string()) checked[ticked.contains(&r)];
                            " "
                            label for=(id) { span.symbol aria-hidden="true" { (a.operation.symbol()) } " " (a.operation.word()) " " (a.kind.as_str()) " " code { (a.name) } }
                        }
                    }
                }
            }
            button #preview type="submit" { "Preview" }
        }
        @if let Some(preview) = preview {
            section #result aria-live="polite" {
                h2 { "Preview" }
                @match preview {
                    Err(e) => p.error role="alert" { (e) },
                    Ok(p) => {
                        @let with: Vec<&ObjectRef> = p.excluded.iter().filter(|r| !ticked.contains(r)).collect();
                        p { "Left out: " @for (i, r) in ticked.iter().enumerate() { @if i > 0 { ", " } code { (r) } } }
                        p #dependents { "Going with them: "
                            @if with.is_empty() { "nothing else" }
                            @for (i, r) in with.iter().enumerate() { @if i > 0 { ", " } code { (r) } } }
                        (plan(p))
                        form method="post" action=(format!("{url}/exclude")) {
                            @for r in ticked { input type="hidden" name="exclude" value=(r.to_string()); }
                            // What the preview started from: the server refuses if it changed.
                            input type="hidden" name="plan_id" value=(current);
                            input type="hidden" name="prev_exclude" value=(previous);
                            input type="hidden" name="new_plan" value=(p.plan_id);
                            button.primary #confirm type="submit" { "Leave these out (new plan " (p.plan_id) ")" }
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
    use crate::fleet::PlanOptions;
    use serde_json::json;

    fn awaiting(plan_id: &str) -> SyncRun {
        serde_json::from_value(json!({
            "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "SyncRun",
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {"repository": "fleet", "revision": "abc", "trigger": "Schedule"},
            "status": {"phase": "AwaitingApproval", "planId": plan_id},
        }))
        .unwrap()
    }

    fn stored(plan_id: &str) -> Result<Option<Plan>, String> {
        let options = PlanOptions {
            repository: "fleet",
            revision: "abc",
            prune: false,
            exclude: &[],
        };
        let mut plan = crate::fleet::plan(&[], &[], &options).unwrap();
        plan.plan_id = plan_id.to_owned();
        Ok(Some(plan))
    }

    #[test]
    fn approve_is_offered_only_for_the_verified_plan_awaiting_approval() {
        let run = awaiting("plan-a");
        assert_eq!(
            approvable_plan(&run, &stored("plan-a")),
            Ok("plan-a".into())
        );
        let other = approvable_plan(&run, &stored("plan-b")).unwrap_err();
        assert!(other.contains("plan-b"), "{other}");
        let tampered = Err("PlanTampered: the digest differs".to_owned());
        let why = approvable_plan(&run, &tampered).unwrap_err();
        assert!(why.contains("integrity"), "{why}");
        assert!(approvable_plan(&run, &Ok(None)).is_err());
        assert!(approvable_plan(&awaiting(""), &stored("")).is_err());

        let page = |full| run_page_html(&run, &full);
        let good = page(stored("plan-a"));
        assert!(good.contains("id=\"approve\""), "{good}");
        assert!(good.contains("name=\"plan_id\" value=\"plan-a\""), "{good}");
        for bad in [stored("plan-b"), Err("tampered".to_owned()), Ok(None)] {
            let html = page(bad);
            assert!(!html.contains("id=\"approve\""), "{html}");
            assert!(html.contains("id=\"no-approve\""), "{html}");
        }
        // The polled fragment: only for the plan the page shows, while it is current.
        assert!(
            live(&run, Some("plan-a"), "bob")
                .into_string()
                .contains("id=\"approve\"")
        );
        for shown in [Some("plan-b"), Some(""), None] {
            assert!(
                !live(&run, shown, "bob")
                    .into_string()
                    .contains("id=\"approve\"")
            );
        }
    }

    #[test]
    fn a_run_shows_its_module_pins_and_a_repository_its_promotion() {
        let mut r = awaiting("plan-a");
        r.status.as_mut().unwrap().modules = vec![crate::api::catalog::ModulePin {
            module: "nginx".into(),
            lifecycle: "blessed".into(),
            version: Some("1.27.0".into()),
        }];
        let html = run_page_html(&r, &stored("plan-a"));
        assert!(
            html.contains("<code>nginx@blessed = 1.27.0</code>"),
            "{html}"
        );
        let repo: GitopsRepository = serde_json::from_value(json!({
            "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "GitopsRepository",
            "metadata": {"name": "fleet", "namespace": "production"},
            "spec": {"url": "https://example.com/a.git", "ref": {"branch": "main"},
                     "environment": "production"},
            "status": {"promotion": {"from": "staging/fleet", "reason": "Waiting",
                       "message": "waiting for staging/fleet: revision abc applied 20m ago, healthy 20m of 1h"}},
        }))
        .unwrap();
        let html = repository(&repo).into_string();
        assert!(html.contains("<code>production</code>"), "{html}");
        assert!(
            html.contains("from <code>staging/fleet</code> (Waiting): waiting for staging/fleet: revision abc applied 20m ago, healthy 20m of 1h"),
            "{html}"
        );
    }

    fn run_page_html(r: &SyncRun, full: &Result<Option<Plan>, String>) -> String {
        run(r, full, None, "bob").into_string()
    }
}
