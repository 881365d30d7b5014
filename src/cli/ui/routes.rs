//! The routes: pages are GETs that only read; every change is a POST that goes through
//! the same checks and annotations as `kubectl fleet approve|reject|sync`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use maud::Markup;
use serde_json::json;

use super::pages::{self, Notice};
use super::{App, UiError, governance, guard};
use crate::api::repository::HistoryEntry;
use crate::api::syncrun::{Phase, Trigger};
use crate::api::{GitopsRepository, SyncRun, annotations};
use crate::cli::governance::request_rollback;
use crate::cli::{kubectl, live_plan, plugin};
use crate::controller::planstore;
use crate::fleet::{self, FleetObject, ObjectRef, Plan, PlanOptions};

const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

type Shared = State<Arc<App>>;
type Page = Result<Response, Failure>;
/// Form fields and query parameters, repeated names kept (`exclude=a&exclude=b`).
type Fields = Vec<(String, String)>;

/// Every route is under the session's secret path (see [`guard`]).
pub(crate) fn router(app: Arc<App>) -> Router {
    let guard = axum::middleware::from_fn_with_state(app.clone(), guard::check);
    let p = app.session.prefix().to_owned();
    Router::new()
        .route(&format!("{p}/"), get(repositories))
        .route(
            &format!("{p}/assets/ui.css"),
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], CSS) }),
        )
        .route(
            &format!("{p}/assets/ui.js"),
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], JS) }),
        )
        .route(
            &format!("{p}/ns/{{ns}}/repositories/{{name}}"),
            get(repository),
        )
        .route(
            &format!("{p}/ns/{{ns}}/repositories/{{name}}/drift"),
            get(drift),
        )
        .route(
            &format!("{p}/ns/{{ns}}/repositories/{{name}}/sync"),
            post(sync),
        )
        .route(
            &format!("{p}/ns/{{ns}}/repositories/{{name}}/rollback"),
            get(confirm_rollback).post(rollback),
        )
        .route(&format!("{p}/ns/{{ns}}/runs/{{name}}"), get(run))
        .route(&format!("{p}/ns/{{ns}}/runs/{{name}}/live"), get(live))
        .route(&format!("{p}/ns/{{ns}}/runs/{{name}}/edit"), get(edit))
        .route(
            &format!("{p}/ns/{{ns}}/runs/{{name}}/{{action}}"),
            post(act),
        )
        .layer(guard)
        .with_state(app)
}

/// An error shown as a page, with the API server's status code where there is one.
pub(crate) struct Failure {
    base: String,
    identity: String,
    namespace: Option<String>,
    error: UiError,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = match &self.error {
            UiError::Kube(kube::Error::Api(s)) => {
                StatusCode::from_u16(s.code).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        };
        let message = describe(self.error, self.namespace.as_deref());
        (
            status,
            Html(pages::error_page(&self.base, &self.identity, &message).into_string()),
        )
            .into_response()
    }
}

/// An error as `kubectl fleet` words it.
fn describe(error: UiError, namespace: Option<&str>) -> String {
    match error {
        UiError::Kube(e) => kubectl::describe(&anyhow::Error::from(e), namespace),
        UiError::Store(e) => kubectl::describe(&anyhow::Error::from(e), namespace),
        other => format!("error ({}): {other}", other.label()),
    }
}

impl App {
    fn fail(&self, ns: &str) -> impl Fn(UiError) -> Failure + '_ {
        let ns = ns.to_owned();
        move |error| Failure {
            base: self.base(),
            identity: self.identity.clone(),
            namespace: Some(ns.clone()),
            error,
        }
    }

    fn page(&self, title: &str, notice: Option<&Notice>, body: Markup) -> Html<String> {
        Html(pages::layout(&self.base(), title, &self.identity, notice, body).into_string())
    }

    /// The secret path with a trailing slash: what the pages' links are relative to.
    fn base(&self) -> String {
        format!("{}/", self.session.prefix())
    }

    /// A redirect to a page (a URL relative to the base).
    fn redirect(&self, to: &str) -> Response {
        Redirect::to(&format!("{}{to}", self.base())).into_response()
    }

    fn runs(&self, ns: &str) -> Api<SyncRun> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn repos(&self, ns: &str) -> Api<GitopsRepository> {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn run(&self, ns: &str, name: &str) -> Result<SyncRun, Failure> {
        self.runs(ns)
            .get(name)
            .await
            .map_err(|e| self.fail(ns)(e.into()))
    }

    async fn repo(&self, ns: &str, name: &str) -> Result<GitopsRepository, Failure> {
        self.repos(ns)
            .get(name)
            .await
            .map_err(|e| self.fail(ns)(e.into()))
    }
}

fn forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

/// How many namespaces are listed at once when repositories cannot be listed
/// cluster-wide.
const LIST_CONCURRENCY: usize = 8;

/// Repositories in every namespace the user may list them in: cluster-wide if allowed,
/// else namespace by namespace, else the context's namespace.
async fn visible_repositories(
    app: &App,
) -> Result<(Vec<GitopsRepository>, Option<String>), UiError> {
    let lp = ListParams::default();
    match Api::<GitopsRepository>::all(app.client.clone())
        .list(&lp)
        .await
    {
        Ok(list) => return Ok((list.items, None)),
        Err(e) if !forbidden(&e) => return Err(e.into()),
        Err(_) => {}
    }
    let namespaces = match Api::<Namespace>::all(app.client.clone()).list(&lp).await {
        Ok(list) => list.items.iter().map(|n| n.name_any()).collect(),
        Err(e) if forbidden(&e) => vec![app.namespace.clone()],
        Err(e) => return Err(e.into()),
    };
    // A few namespaces at a time, in their order: a big cluster is not listed one by one.
    let lists: Vec<(String, Result<_, kube::Error>)> = futures::stream::iter(namespaces)
        .map(|ns| {
            let (api, lp) = (app.repos(&ns), lp.clone());
            async move { (ns, api.list(&lp).await) }
        })
        .buffered(LIST_CONCURRENCY)
        .collect()
        .await;
    let mut repos = Vec::new();
    let mut shown = Vec::new();
    for (ns, list) in lists {
        match list {
            Ok(list) => {
                repos.extend(list.items);
                shown.push(ns);
            }
            Err(e) if forbidden(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let note = format!(
        "You may not list repositories in all namespaces; showing {}.",
        shown.join(", ")
    );
    Ok((repos, Some(note)))
}

async fn repositories(State(app): Shared) -> Page {
    let (repos, note) = visible_repositories(&app)
        .await
        .map_err(app.fail(&app.namespace))?;
    let body = pages::repositories(&repos, note.as_deref());
    Ok(app.page("Repositories", None, body).into_response())
}

async fn repository(State(app): Shared, Path((ns, name)): Path<(String, String)>) -> Page {
    let repo = app.repo(&ns, &name).await?;
    Ok(app
        .page(&name, None, pages::repository(&repo))
        .into_response())
}

async fn drift(State(app): Shared, Path((ns, name)): Path<(String, String)>) -> Page {
    let repo = app.repo(&ns, &name).await?;
    let (none_listed, _) = plugin::no_drift_listed(&repo);
    let body = pages::drift(&repo, &none_listed);
    Ok(app
        .page(&format!("Drift of {name}"), None, body)
        .into_response())
}

async fn sync(State(app): Shared, Path((ns, name)): Path<(String, String)>) -> Page {
    let repos = app.repos(&ns);
    match plugin::request_sync(&repos, &name).await {
        Ok(_) => Ok(app.redirect(&pages::repo_url(&ns, &name))),
        Err(e) => refused_on_repository(&app, &ns, &name, e).await,
    }
}

/// The repository page with a refusal in the API server's words.
async fn refused_on_repository(app: &App, ns: &str, name: &str, e: kube::Error) -> Page {
    let repo = app.repo(ns, name).await?;
    let why = describe(UiError::Kube(e), Some(ns));
    let page = app.page(name, Some(&Notice::Refused(why)), pages::repository(&repo));
    Ok((StatusCode::FORBIDDEN, page).into_response())
}

/// The applied run of the repository's history named by the `to` field.
fn applied_run<'a>(
    repo: &'a GitopsRepository,
    fields: &Fields,
) -> Result<&'a HistoryEntry, UiError> {
    governance::applied_run(repo, field(fields, "to").unwrap_or_default())
        .map_err(UiError::BadRequest)
}

/// Asks to confirm a rollback; nothing changes until the form is posted.
async fn confirm_rollback(
    State(app): Shared,
    Path((ns, name)): Path<(String, String)>,
    Query(fields): Query<Fields>,
) -> Page {
    let repo = app.repo(&ns, &name).await?;
    let to = applied_run(&repo, &fields).map_err(app.fail(&ns))?;
    let body = governance::confirm_rollback(&repo, to);
    Ok(app
        .page(&format!("Roll back {name}"), None, body)
        .into_response())
}

/// Asks for the rollback as the user, exactly as `kubectl fleet rollback` does: admission
/// decides who may, and its reason is shown.
async fn rollback(
    State(app): Shared,
    Path((ns, name)): Path<(String, String)>,
    Form(fields): Form<Fields>,
) -> Page {
    let repo = app.repo(&ns, &name).await?;
    let to = applied_run(&repo, &fields).map_err(app.fail(&ns))?;
    match request_rollback(&app.repos(&ns), &name, &to.sync_run).await {
        Ok(()) => Ok(app.redirect(&pages::repo_url(&ns, &name))),
        Err(e) => refused_on_repository(&app, &ns, &name, e).await,
    }
}

/// The run's whole plan from its ConfigMaps, if it has one; why not, if it cannot be read.
async fn stored_plan(client: &Client, run: &SyncRun) -> Result<Option<Plan>, String> {
    match run.status.as_ref().and_then(|s| s.full_plan.as_ref()) {
        None => Ok(None),
        Some(at) => planstore::load_plan(client, run, at)
            .await
            .map(Some)
            .map_err(|e| kubectl::describe(&anyhow::Error::from(e), run.namespace().as_deref())),
    }
}

/// The run page, with a notice and the status code to answer with.
async fn run_page(
    app: &App,
    ns: &str,
    name: &str,
    notice: Option<Notice>,
    code: StatusCode,
) -> Page {
    let run = app.run(ns, name).await?;
    let full = stored_plan(&app.client, &run).await;
    let repo = app
        .repos(ns)
        .get_opt(&run.spec.repository)
        .await
        .ok()
        .flatten();
    let body = pages::run(&run, &full, repo.as_ref(), &app.identity);
    Ok((code, app.page(name, notice.as_ref(), body)).into_response())
}

async fn run(State(app): Shared, Path((ns, name)): Path<(String, String)>) -> Page {
    run_page(&app, &ns, &name, None, StatusCode::OK).await
}

async fn live(
    State(app): Shared,
    Path((ns, name)): Path<(String, String)>,
    Query(fields): Query<Fields>,
) -> Page {
    let run = app.run(&ns, &name).await?;
    let shown = field(&fields, "plan");
    Ok(Html(pages::live(&run, shown, &app.identity).into_string()).into_response())
}

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn exclusions(fields: &Fields) -> Result<Vec<ObjectRef>, UiError> {
    fields
        .iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.parse::<ObjectRef>().map_err(UiError::BadRequest))
        .collect()
}

/// The plan the controller will make when the exclude annotation is `exclude`: the
/// run's stored desired state against the live objects, through the same planner.
async fn preview(app: &App, run: &SyncRun, exclude: &[ObjectRef]) -> Result<Plan, UiError> {
    let ns = run.namespace().unwrap_or_default();
    let repo = app.repos(&ns).get(&run.spec.repository).await?;
    let deleting = run.spec.trigger == Trigger::Deletion;
    let status = run.status.clone().unwrap_or_default();
    let desired: Vec<FleetObject> = if deleting {
        Vec::new()
    } else {
        planstore::load(
            &app.client,
            run,
            &status.desired_state,
            status.desired_state_digest.as_deref(),
        )
        .await?
    };
    let live = live_plan::live_objects(&app.client, &ns).await?;
    let options = PlanOptions {
        repository: &run.spec.repository,
        revision: &run.spec.revision,
        prune: repo.spec.prune || deleting,
        exclude,
    };
    let policy = repo.spec.rollout.policy().map_err(UiError::Plan)?;
    let mut plan = fleet::plan(&desired, &live, &options).map_err(|errors| {
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        UiError::Plan(messages.join("; "))
    })?;
    // Staged as the controller stages it: the same waves make the same plan id.
    fleet::rollout::stage(&mut plan, &desired, &live, &run.spec.repository, &policy)
        .map_err(|e| UiError::Plan(e.to_string()))?;
    Ok(plan)
}

async fn edit(
    State(app): Shared,
    Path((ns, name)): Path<(String, String)>,
    Query(fields): Query<Fields>,
) -> Page {
    let run = app.run(&ns, &name).await?;
    if run.phase() != Some(Phase::AwaitingApproval) {
        let why = format!(
            "{name} is {}: only a run awaiting approval can be edited",
            plugin::phase_name(&run)
        );
        return refused(&app, &ns, &name, why, StatusCode::CONFLICT).await;
    }
    let fail = app.fail(&ns);
    let all = preview(&app, &run, &[]).await.map_err(&fail)?;
    let ticked = exclusions(&fields).map_err(&fail)?;
    let shown = if fields.is_empty() {
        // Opened from the run: what the annotation leaves out now.
        let current = run
            .annotations()
            .get(annotations::EXCLUDE)
            .cloned()
            .unwrap_or_default();
        current.split(',').filter_map(|s| s.parse().ok()).collect()
    } else {
        ticked
    };
    let result = if fields.is_empty() {
        None
    } else {
        Some(preview(&app, &run, &shown).await.map_err(|e| e.to_string()))
    };
    let body = pages::edit(&run, &all, &shown, result.as_ref());
    Ok(app
        .page(&format!("Edit {name}"), None, body)
        .into_response())
}

/// Refuses on the run page with `why` (and the status code) if `check` says so.
async fn refused(app: &App, ns: &str, name: &str, why: String, code: StatusCode) -> Page {
    run_page(app, ns, name, Some(Notice::Refused(why)), code).await
}

/// Sets `key` on the run as the user (only if the run is still at `version`, when
/// given), then shows the run; a refusal by the API server (RBAC, admission, a changed
/// run) is shown with its own words.
async fn annotate(
    app: &App,
    run: &SyncRun,
    key: &str,
    value: Option<&str>,
    version: Option<&str>,
) -> Page {
    let (ns, name) = (run.namespace().unwrap_or_default(), run.name_any());
    let mut patch = json!({"metadata": {"annotations": {key: value}}});
    if let Some(v) = version {
        patch["metadata"]["resourceVersion"] = json!(v);
    }
    let result = app
        .runs(&ns)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    match result {
        Ok(_) => Ok(app.redirect(&pages::run_url(&ns, &name))),
        Err(kube::Error::Api(s)) if s.code == 409 && version.is_some() => {
            let why = format!("{name} changed since the page was shown; look at it again");
            refused(app, &ns, &name, why, StatusCode::CONFLICT).await
        }
        Err(e) => {
            let why = kubectl::describe(&anyhow::Error::from(e), Some(&ns));
            refused(app, &ns, &name, why, StatusCode::FORBIDDEN).await
        }
    }
}

/// approve, reject, exclude or decide (the form's fields say with what).
async fn act(
    State(app): Shared,
    Path((ns, name, action)): Path<(String, String, String)>,
    Form(fields): Form<Fields>,
) -> Page {
    let run = app.run(&ns, &name).await?;
    let app = &app;
    match action.as_str() {
        "approve" => approve(app, &run, &fields).await,
        "reject" => reject(app, &run, &fields).await,
        "exclude" => exclude(app, &run, &fields).await,
        "decide" => decide(app, &run, &fields).await,
        other => Err(app.fail(&ns)(UiError::BadRequest(format!(
            "there is no action `{other}`"
        )))),
    }
}

async fn approve(app: &App, run: &SyncRun, fields: &Fields) -> Page {
    let (ns, name) = (run.namespace().unwrap_or_default(), run.name_any());
    let Some(expected) = field(fields, "plan_id") else {
        let missing = UiError::BadRequest("which plan to approve is missing".into());
        return Err(app.fail(&ns)(missing));
    };
    let check = match plugin::approvable(run, Some(expected)) {
        // Only the plan that was read, verified and shown is approved.
        Ok(_) => pages::approvable_plan(run, &stored_plan(&app.client, run).await)
            .map_err(|why| format!("{why}; nothing was approved")),
        Err(why) => Err(why),
    };
    match check {
        Ok(plan_id) => annotate(app, run, annotations::APPROVE, Some(&plan_id), None).await,
        Err(why) => refused(app, &ns, &name, why, StatusCode::CONFLICT).await,
    }
}

/// A choice at a paused rollout, for the pause the page showed only.
async fn decide(app: &App, run: &SyncRun, fields: &Fields) -> Page {
    let (ns, name) = (run.namespace().unwrap_or_default(), run.name_any());
    let (Some(choice), Some(shown)) = (field(fields, "choice"), field(fields, "decision_id"))
    else {
        let missing = UiError::BadRequest("which choice, at which pause, is missing".into());
        return Err(app.fail(&ns)(missing));
    };
    let check = choice
        .parse()
        .map_err(|e: crate::fleet::rollout::pause::DecisionError| e.to_string())
        .and_then(|choice| {
            super::super::decide::paused_at(run, choice, Some(shown)).map(|_| choice)
        });
    match check {
        Ok(choice) => {
            let value = format!("{choice}:{shown}");
            annotate(app, run, annotations::APPROVE, Some(&value), None).await
        }
        Err(why) => refused(app, &ns, &name, why, StatusCode::CONFLICT).await,
    }
}

async fn reject(app: &App, run: &SyncRun, fields: &Fields) -> Page {
    let (ns, name) = (run.namespace().unwrap_or_default(), run.name_any());
    let reason = field(fields, "reason").map(str::trim).unwrap_or_default();
    let check = match reason.is_empty() {
        true => Err("say why the plan is rejected".to_owned()),
        false => plugin::rejectable(run),
    };
    match check {
        Ok(()) => annotate(app, run, annotations::REJECT, Some(reason), None).await,
        Err(why) => refused(app, &ns, &name, why, StatusCode::CONFLICT).await,
    }
}

/// Why the exclusions the preview started from are no longer the run's, if they are not.
fn exclusions_unchanged(run: &SyncRun, fields: &Fields) -> Result<(), String> {
    let Some(previous) = field(fields, "prev_exclude") else {
        return Err("what the preview left out is missing; preview again".into());
    };
    let current = run
        .annotations()
        .get(annotations::EXCLUDE)
        .map(String::as_str)
        .unwrap_or_default();
    match current == previous {
        true => Ok(()),
        false => Err(format!(
            "what {} leaves out changed since the preview (now {current:?}, the preview \
             started from {previous:?}); preview again",
            run.name_any()
        )),
    }
}

async fn exclude(app: &App, run: &SyncRun, fields: &Fields) -> Page {
    let (ns, name) = (run.namespace().unwrap_or_default(), run.name_any());
    let fail = app.fail(&ns);
    let ticked = exclusions(fields).map_err(&fail)?;
    let Some(previewed) = field(fields, "plan_id") else {
        let missing = UiError::BadRequest("which plan was previewed is missing".into());
        return Err(fail(missing));
    };
    // Left out only while it is still the run, plan and exclusions that were previewed.
    let check = plugin::approvable(run, Some(previewed))
        .map(|_| ())
        .and_then(|()| exclusions_unchanged(run, fields));
    if let Err(why) = check {
        return refused(app, &ns, &name, why, StatusCode::CONFLICT).await;
    }
    let new_plan = preview(app, run, &ticked).await.map_err(&fail)?.plan_id;
    if field(fields, "new_plan") != Some(new_plan.as_str()) {
        let why = format!(
            "leaving these out now makes plan {new_plan}, not the one previewed; preview again"
        );
        return refused(app, &ns, &name, why, StatusCode::CONFLICT).await;
    }
    let value: Vec<String> = ticked.iter().map(|r| r.to_string()).collect();
    let value = (!value.is_empty()).then(|| value.join(","));
    let version = run.resource_version();
    annotate(
        app,
        run,
        annotations::EXCLUDE,
        value.as_deref(),
        version.as_deref(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_excluding(exclude: Option<&str>) -> SyncRun {
        let mut meta = json!({"name": "r", "namespace": "ns"});
        if let Some(e) = exclude {
            meta["annotations"] = json!({annotations::EXCLUDE: e});
        }
        serde_json::from_value(json!({
            "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "SyncRun",
            "metadata": meta,
            "spec": {"repository": "fleet", "revision": "abc", "trigger": "Schedule"},
        }))
        .unwrap()
    }

    fn fields(prev: Option<&str>) -> Fields {
        prev.map(|p| vec![("prev_exclude".to_owned(), p.to_owned())])
            .unwrap_or_default()
    }

    #[test]
    fn exclusions_are_set_only_over_those_the_preview_started_from() {
        let none = run_excluding(None);
        let one = run_excluding(Some("fleetnode/a"));
        assert_eq!(exclusions_unchanged(&none, &fields(Some(""))), Ok(()));
        assert_eq!(
            exclusions_unchanged(&one, &fields(Some("fleetnode/a"))),
            Ok(())
        );
        let why = exclusions_unchanged(&one, &fields(Some(""))).unwrap_err();
        assert!(why.contains("changed since the preview"), "{why}");
        assert!(exclusions_unchanged(&none, &fields(Some("fleetnode/a"))).is_err());
        assert!(exclusions_unchanged(&none, &fields(None)).is_err());
    }
}
