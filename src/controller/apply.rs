//! The apply engine: an approved plan, action by action in dependency order.
//!
//! Each action first re-reads its target: if it changed since planning (its spec digest
//! differs from what the plan saw), the action fails as a conflict instead of overwriting.
//! Writes are conditional on the resourceVersion just read. States are persisted as the
//! run goes; after a restart an action whose target already holds the desired spec is
//! recorded as applied without being applied again.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::ResourceExt;
use kube::api::{
    DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions,
};
use kube::runtime::controller::Action as Requeue;

use super::context::{Context, truncate};
use super::error::{Error, Result};
use super::integrity;
use super::live::{self, desired_object};
use super::metrics::ResultLabels;
use super::planstore;
use super::syncrun::{action_entries, fail, repository_key, transition, write_status};
use crate::api::syncrun::{ActionState, Phase, Progress, SyncRunStatus};
use crate::api::{FIELD_MANAGER, GitopsRepository, REPOSITORY_LABEL, SyncRun};
use crate::fleet::plan::{Action, spec_digest};
use crate::fleet::{ObjectKind, Operation, Plan};

/// Actions applied between two status writes.
const CHUNK: usize = 100;

pub fn progress(states: &[ActionState]) -> Progress {
    let count = |s: ActionState| states.iter().filter(|x| **x == s).count() as u32;
    Progress {
        total: states.len() as u32,
        pending: count(ActionState::Pending),
        applied: count(ActionState::Applied),
        failed: count(ActionState::Failed),
        skipped: count(ActionState::Skipped),
    }
}

/// The progress of one run being applied.
struct Run<'a> {
    ctx: &'a Context,
    run: &'a SyncRun,
    namespace: String,
    states: Vec<ActionState>,
    errors: Vec<(usize, String)>,
    status: SyncRunStatus,
}

/// Applies (or resumes applying) an approved run.
pub async fn run(run: &SyncRun, ctx: &Context, status: SyncRunStatus) -> Result<Requeue> {
    let key = repository_key(run);
    if !ctx.claim_apply(&key, &run.name_any()) {
        return Ok(Requeue::requeue(Duration::from_secs(2)));
    }
    let result = apply_claimed(run, ctx, status).await;
    // On success the run is finished. On an error it stays Applying and keeps the
    // repository until a retry finishes it.
    if result.is_ok() {
        ctx.release_apply(&key, &run.name_any());
    }
    result
}

async fn apply_claimed(run: &SyncRun, ctx: &Context, status: SyncRunStatus) -> Result<Requeue> {
    let Some(at) = status.full_plan.clone() else {
        return fail(
            ctx,
            run,
            status,
            "PlanMissing",
            "the run has no stored plan".into(),
        )
        .await;
    };
    // What is applied must be what was approved: the stored bytes are the ones
    // recorded, and the actions in them make the approved planId.
    let plan = match planstore::load_plan(&ctx.client, run, &at).await {
        Ok(plan) => plan,
        Err(e @ Error::PlanTampered { .. }) => {
            return fail(ctx, run, status, e.label(), e.to_string()).await;
        }
        Err(e) => return Err(e),
    };
    if let Err(e) = integrity::verify(&plan, &run.spec.revision, status.plan_id.as_deref()) {
        let message = format!("stored plan of {}: {e}; nothing is applied", run.name_any());
        return fail(ctx, run, status, e.label(), message).await;
    }
    let mut states: Vec<ActionState> = status
        .action_states
        .as_deref()
        .unwrap_or_default()
        .chars()
        .filter_map(ActionState::from_letter)
        .collect();
    if states.len() != plan.actions.len() {
        states = vec![ActionState::Pending; plan.actions.len()];
    }
    let errors = status
        .actions
        .iter()
        .filter_map(|a| {
            let i = plan
                .actions
                .iter()
                .position(|p| p.kind.as_str() == a.kind && p.name == a.name)?;
            Some((i, a.error.clone()?))
        })
        .collect();
    let namespace = run.namespace().unwrap_or_default();
    let prune = kube::Api::<GitopsRepository>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&run.spec.repository)
        .await?
        .is_none_or(|r| r.spec.prune);
    let mut r = Run {
        ctx,
        run,
        namespace,
        states,
        errors,
        status,
    };
    r.apply_all(&plan, prune).await?;
    r.finish(&plan).await
}

impl Run<'_> {
    async fn apply_all(&mut self, plan: &Plan, prune: bool) -> Result<()> {
        let index: HashMap<(ObjectKind, &str), usize> = plan
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| ((a.kind, a.name.as_str()), i))
            .collect();
        let mut levels: Vec<u32> = plan.actions.iter().map(|a| a.level).collect();
        levels.dedup();
        for level in levels {
            let mut ready = Vec::new();
            for (i, a) in plan.actions.iter().enumerate() {
                if a.level != level || self.states[i] != ActionState::Pending {
                    continue;
                }
                let blocked = a.depends_on.iter().find(|d| {
                    index
                        .get(&(d.kind, d.name.as_str()))
                        .is_some_and(|j| self.states[*j] != ActionState::Applied)
                });
                if let Some(dep) = blocked {
                    self.states[i] = ActionState::Skipped;
                    self.errors
                        .push((i, format!("skipped: {dep} was not applied")));
                } else if a.operation == Operation::Delete && !prune {
                    self.states[i] = ActionState::Skipped;
                    self.errors
                        .push((i, "skipped: the repository's prune is off".into()));
                } else {
                    ready.push(i);
                }
            }
            let (ctx, namespace, repository) = (
                self.ctx,
                self.namespace.clone(),
                self.run.spec.repository.clone(),
            );
            for chunk in ready.chunks(CHUNK) {
                let results: Vec<(usize, Result<(), String>)> = stream::iter(chunk.iter().copied())
                    .map(|i| {
                        let (action, namespace, repository) =
                            (&plan.actions[i], &namespace, &repository);
                        async move { (i, apply_action(ctx, namespace, repository, action).await) }
                    })
                    .buffer_unordered(ctx.settings.apply_concurrency.max(1))
                    .collect()
                    .await;
                for (i, result) in results {
                    let label = match result {
                        Ok(()) => {
                            self.states[i] = ActionState::Applied;
                            "applied"
                        }
                        Err(e) => {
                            self.states[i] = ActionState::Failed;
                            self.errors.push((i, e));
                            "failed"
                        }
                    };
                    self.ctx
                        .metrics
                        .actions
                        .get_or_create(&ResultLabels { result: label })
                        .inc();
                }
                self.persist(plan).await?;
            }
        }
        let skipped = self
            .states
            .iter()
            .filter(|s| **s == ActionState::Skipped)
            .count() as u64;
        self.ctx
            .metrics
            .actions
            .get_or_create(&ResultLabels { result: "skipped" })
            .inc_by(skipped);
        self.persist(plan).await
    }

    async fn persist(&mut self, plan: &Plan) -> Result<()> {
        self.status.action_states = Some(self.states.iter().map(|s| s.letter()).collect());
        self.status.progress = Some(progress(&self.states));
        self.status.actions = action_entries(plan, &self.states, &self.errors);
        write_status(self.ctx, self.run, &self.status).await
    }

    /// Re-reads what the plan touched and records anything that still differs.
    async fn finish(self, plan: &Plan) -> Result<Requeue> {
        let drift = verify(
            self.ctx,
            &self.namespace,
            &self.run.spec.repository,
            plan,
            &self.states,
        )
        .await?;
        let mut status = self.status;
        status.drift_after_apply = drift.iter().take(100).cloned().collect();
        let p = progress(&self.states);
        let summary = format!(
            "{} applied, {} failed, {} skipped",
            p.applied, p.failed, p.skipped
        );
        if p.failed == 0 && p.skipped == 0 && drift.is_empty() {
            let message = format!("plan {} applied: {summary}", plan.plan_id);
            transition(
                self.ctx,
                self.run,
                status,
                Phase::Applied,
                false,
                "Applied",
                message,
            )
            .await?;
        } else {
            let first: Vec<String> = self
                .errors
                .iter()
                .take(5)
                .map(|(i, e)| format!("{}: {e}", plan.actions[*i].reference()))
                .collect();
            let message = format!("plan {}: {summary}; {}", plan.plan_id, first.join("; "));
            transition(
                self.ctx,
                self.run,
                status,
                Phase::Failed,
                true,
                "ApplyFailed",
                message,
            )
            .await?;
        }
        Ok(Requeue::await_change())
    }
}

fn owned_by(obj: &DynamicObject, repository: &str) -> bool {
    obj.labels().get(REPOSITORY_LABEL).map(String::as_str) == Some(repository)
}

fn live_digest(kind: ObjectKind, obj: &DynamicObject) -> Option<String> {
    live::to_live(kind, obj).map(|l| spec_digest(&l.spec))
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

/// Applies one action; the error says why it failed, `conflict:` first when someone
/// else changed the object since the plan was made.
async fn apply_action(
    ctx: &Context,
    namespace: &str,
    repository: &str,
    action: &Action,
) -> Result<(), String> {
    let api = live::api(&ctx.client, namespace, action.kind);
    let object = action.reference();
    let current = api.get_opt(&action.name).await.map_err(|e| e.to_string())?;
    let desired_digest = action.spec.as_deref().map(spec_digest);
    let current_digest = current.as_ref().and_then(|c| live_digest(action.kind, c));
    let conflict = |what: &str| {
        Err(format!(
            "conflict: {object} {what} since the plan was made; not overwritten"
        ))
    };
    // An action only ever touches objects labelled with its own repository, or objects
    // it creates itself; checked again here whatever the plan says.
    let not_owned = |c: &DynamicObject| {
        let owner = c
            .labels()
            .get(REPOSITORY_LABEL)
            .map_or("no repository".to_owned(), |o| format!("repository `{o}`"));
        Err(format!(
            "not owned: {object} is managed by {owner}, not `{repository}`; not touched"
        ))
    };
    match (action.operation, &current) {
        (Operation::Create, Some(c)) => {
            if owned_by(c, repository) && current_digest == desired_digest {
                return Ok(()); // applied before an interruption
            }
            conflict("was created by someone else")
        }
        (Operation::Create, None) => {
            let spec = action
                .spec
                .as_deref()
                .ok_or("the stored plan has no spec")?;
            let body: DynamicObject = serde_json::from_value(desired_object(
                action.kind,
                &action.name,
                namespace,
                repository,
                spec,
                None,
            ))
            .map_err(|e| e.to_string())?;
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            match api.create(&params, &body).await {
                Ok(_) => Ok(()),
                Err(e) if is_conflict(&e) => conflict("was created by someone else"),
                Err(e) => Err(e.to_string()),
            }
        }
        (Operation::Update, None) => conflict("was deleted"),
        (Operation::Update, Some(c)) => {
            if !owned_by(c, repository) {
                return not_owned(c);
            }
            if current_digest == desired_digest {
                return Ok(());
            }
            if current_digest != action.observed {
                return conflict("was changed");
            }
            let spec = action
                .spec
                .as_deref()
                .ok_or("the stored plan has no spec")?;
            let body = desired_object(
                action.kind,
                &action.name,
                namespace,
                repository,
                spec,
                c.resource_version().as_deref(),
            );
            // Forced: the digest check above is the conflict check, and the write is
            // conditional on the resourceVersion it was made against.
            match api
                .patch(
                    &action.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_conflict(&e) => conflict("was changed"),
                Err(e) => Err(e.to_string()),
            }
        }
        (Operation::Delete, None) => Ok(()),
        (Operation::Delete, Some(c)) => {
            if !owned_by(c, repository) {
                return not_owned(c);
            }
            if current_digest != action.observed {
                return conflict("was changed");
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: c.resource_version(),
                    uid: c.uid(),
                }),
                ..Default::default()
            };
            match api.delete(&action.name, &params).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
                Err(e) if is_conflict(&e) => conflict("was changed"),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

/// After applying: every applied action's object as the plan wanted it? Lists each kind
/// once rather than reading objects one by one.
async fn verify(
    ctx: &Context,
    namespace: &str,
    repository: &str,
    plan: &Plan,
    states: &[ActionState],
) -> Result<Vec<String>> {
    let selector = format!("{REPOSITORY_LABEL}={repository}");
    let mut live: HashMap<(ObjectKind, String), Option<String>> = HashMap::new();
    let kinds: HashSet<ObjectKind> = plan.actions.iter().map(|a| a.kind).collect();
    for kind in kinds {
        let api = live::api(&ctx.client, namespace, kind);
        for obj in api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
        {
            live.insert((kind, obj.name_any()), live_digest(kind, &obj));
        }
    }
    let mut drift = Vec::new();
    for (a, state) in plan.actions.iter().zip(states) {
        if *state != ActionState::Applied {
            continue;
        }
        let now = live.get(&(a.kind, a.name.clone()));
        let ok = match a.operation {
            Operation::Delete => now.is_none(),
            _ => now.is_some_and(|d| d.as_deref() == a.spec.as_deref().map(spec_digest).as_deref()),
        };
        if !ok {
            drift.push(truncate(
                &format!("{}: not as planned after applying", a.reference()),
                256,
            ));
        }
    }
    Ok(drift)
}
