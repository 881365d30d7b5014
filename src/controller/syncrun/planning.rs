//! Planning a run: the desired state of its revision against the cluster, the plan
//! stored and its summary recorded in status, or the failure that stopped it.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::api::slices::{PlanSlices, SliceRule};
use crate::api::syncrun::{RunSource, SyncRunStatus, Trigger};
use crate::api::{GitopsRepository, SyncRun, annotations, now};
use crate::controller::authorization::{
    self, Content, Facts, Grant, PolicyFacts, Provenance, RepositoryPolicy, RuleVerdict,
};
use crate::controller::context::Context;
use crate::controller::error::off_runtime;
use crate::controller::error::{Error, Result};
use crate::controller::gitsource;
use crate::controller::governance::{self, rules};
use crate::controller::lifecycle::{
    Clearance, Event, FailReason, fail, started, transition, write_status,
};
use crate::controller::planstore;
use crate::controller::provenance;
use crate::fleet::{
    self, FleetObject, ObjectRef, Plan, PlanError, PlanOptions, ResolveOptions, rollout,
};

use super::clearing::{Claim, apply_when_open};
use super::recording;
use super::{get_repository, warn};

fn exclusions_of(run: &SyncRun) -> (Option<String>, Result<Vec<ObjectRef>, String>) {
    let raw = run.annotations().get(annotations::EXCLUDE).cloned();
    let parsed = match &raw {
        None => Ok(Vec::new()),
        Some(text) => text
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse::<ObjectRef>())
            .collect(),
    };
    (raw, parsed)
}

/// Computes the plan of the run's revision and records it.
pub(super) async fn plan(
    run: &SyncRun,
    ctx: &Context,
    mut status: SyncRunStatus,
) -> Result<Action> {
    if status.phase.is_none() {
        status = started(status, &run.spec.revision, now())?;
        write_status(ctx, run, &status).await?;
    }
    let Some(repo) = get_repository(ctx, run).await? else {
        let message = format!("GitopsRepository {} does not exist", run.spec.repository);
        return fail(ctx, run, status, FailReason::RepositoryNotFound, message).await;
    };
    // Planning holds a fleet's desired state and plan in memory: a few at once, fairly
    // shared between namespaces.
    let _slot = ctx
        .plannings
        .acquire(&run.namespace().unwrap_or_default())
        .await;
    let (raw_exclusions, exclusions) = exclusions_of(run);
    let exclusions = match exclusions {
        Ok(e) => e,
        Err(message) => {
            let message = format!("invalid {} annotation: {message}", annotations::EXCLUDE);
            return fail(ctx, run, status, FailReason::InvalidExclusion, message).await;
        }
    };
    // The catalogs' digest is recorded on a failure too: a plan refused for a pin the
    // catalog cannot resolve is tried again once the catalog changes.
    let mut digest = None;
    // Both futures are large (git, resolution, the plan, then the apply an auto-approved
    // plan starts): boxed, so that neither sits inside the other on a worker's stack.
    let computed = Box::pin(compute(run, ctx, &repo, &exclusions, &mut digest)).await;
    status.module_catalog = digest;
    match computed {
        Ok(Computed::Invalid(reason, message)) => fail(ctx, run, status, reason, message).await,
        Ok(Computed::Planned(planned)) => {
            Box::pin(record(run, ctx, &repo, status, planned, raw_exclusions)).await
        }
        // A git server that is down or slow comes back, and so does a Flux source that is
        // not ready yet: retried with the run's backoff.
        Err(e @ (Error::Source(_) | Error::Flux(_))) if e.is_transient() => Err(e),
        Err(e @ (Error::Source(_) | Error::Flux(_) | Error::Panicked(_))) => {
            // Neither is fixed by retrying the same revision.
            let reason = FailReason::Error(e.label());
            fail(ctx, run, status, reason, e.to_string()).await
        }
        Err(e) => Err(e),
    }
}

/// A plan and what it was made from.
struct Planned {
    plan: Plan,
    warnings: Vec<String>,
    /// The revision's whole desired state, kept for drift detection once applied.
    desired: Vec<FleetObject>,
    /// What governance rules see of the plan.
    facts: rules::Facts,
    /// Where the desired state came from.
    source: RunSource,
    /// The applied run whose stored desired state was restored (Rollback, Drift).
    restored: Option<SyncRun>,
    /// Each lifecycle pin and the version it resolved to.
    modules: Vec<crate::api::catalog::ModulePin>,
    /// The governance of the run's repository as it was when planned.
    gov: governance::Governance,
    /// How the plan split by owner, under a policy's spec.slices.
    slices: Option<PlanSlices>,
}

enum Computed {
    Planned(Box<Planned>),
    /// The fleet file or the plan was refused: a condition reason and the message.
    Invalid(FailReason, String),
}

/// Reads the fleet file at the run's revision and plans it against the cluster.
async fn compute(
    run: &SyncRun,
    ctx: &Context,
    repo: &GitopsRepository,
    exclude: &[ObjectRef],
    catalog_digest: &mut Option<String>,
) -> Result<Computed> {
    // Removing a deleted repository's objects plans against nothing at all.
    let deleting = run.spec.trigger == Trigger::Deletion;
    let nothing = || fleet::DesiredState {
        account: String::new(),
        objects: Vec::new(),
        modules: Vec::new(),
    };
    let mut source = RunSource {
        revision: run.spec.revision.clone(),
        ..Default::default()
    };
    let mut restored = None;
    // A rollback returns to what an older run applied, a drift correction to what the
    // baseline applied: each as stored (and verified) beside that run.
    let restores = match run.spec.trigger {
        Trigger::Rollback => Some((annotations::ROLLBACK_OF, FailReason::RollbackUnavailable)),
        Trigger::Drift if run.annotations().contains_key(annotations::RESTORES) => {
            Some((annotations::RESTORES, FailReason::RestoreUnavailable))
        }
        _ => None,
    };
    let resolved = match (run.spec.trigger, restores) {
        (Trigger::Deletion, _) => Ok((nothing(), fleet::Diagnostics::default())),
        (_, Some((annotation, unavailable))) => {
            match crate::controller::repository::rollback::desired(ctx, run, annotation).await? {
                Ok((objects, older)) => {
                    source.restores = older.metadata.name.clone();
                    restored = Some(older);
                    Ok((
                        fleet::DesiredState {
                            objects,
                            ..nothing()
                        },
                        fleet::Diagnostics::default(),
                    ))
                }
                Err(message) => return Ok(Computed::Invalid(unavailable, message)),
            }
        }
        _ => {
            source.url = repo.spec.url.clone();
            source.git_ref = repo.spec.git_ref.clone();
            source.path = Some(repo.spec.path.clone());
            source.approved_by = repo
                .annotations()
                .get(annotations::SOURCE_APPROVED_BY)
                .cloned();
            let read = read_source(ctx, repo, &run.spec.revision, &mut source);
            let bytes = match Box::pin(read).await? {
                Ok(bytes) => bytes,
                Err(refused) => {
                    let reason = FailReason::SourceUnverified(refused.label());
                    let message = format!("revision not verified, nothing was planned: {refused}");
                    return Ok(Computed::Invalid(reason, message));
                }
            };
            // A file without lifecycle pins needs no catalog: planning never waits for one
            // it does not use (a catalog watch that cannot list stops only fleets that pin).
            let catalog = if fleet::catalog::mentions_lifecycle_pins(&bytes) {
                ctx.catalogs.current().await?
            } else {
                ctx.catalogs.listed().flatten()
            };
            *catalog_digest = catalog.as_ref().map(fleet::catalog::Catalog::digest);
            // A huge fleet takes a while to resolve and plan: off the runtime's worker threads.
            let (path, account) = (repo.spec.path.clone(), repo.spec.account.clone());
            let environment = repo.spec.environment.clone();
            let limits = ctx.settings.fleet_limits;
            off_runtime(move || {
                let options = ResolveOptions {
                    expected_account: account.as_deref(),
                    limits,
                    catalog: catalog.as_ref(),
                    environment: environment.as_deref(),
                };
                fleet::desired_state(&path, &bytes, &options)
            })
            .await?
        }
    };
    let (desired, warnings) = match resolved {
        Ok(ok) => ok,
        Err(diags) if diags.is_too_large() => {
            let message = format!(
                "{} is larger than this controller accepts for one repository; nothing was changed:\n{diags}",
                repo.spec.path
            );
            return Ok(Computed::Invalid(FailReason::FleetTooLarge, message));
        }
        Err(diags) if diags.has_code(fleet::catalog::UNRESOLVED) => {
            let message = format!(
                "{} pins modules the module catalog cannot resolve; nothing was changed:\n{diags}",
                repo.spec.path
            );
            return Ok(Computed::Invalid(FailReason::ModuleUnresolved, message));
        }
        Err(diags) => {
            let errors = diags.errors().count();
            let message = format!(
                "{} is invalid ({errors} errors); nothing was changed:\n{diags}",
                repo.spec.path
            );
            return Ok(Computed::Invalid(FailReason::ValidationFailed, message));
        }
    };
    ctx.fleet.wait_until_ready().await?;
    let live = ctx.fleet.live_objects(&run.namespace().unwrap_or_default());
    let (repository, revision) = (run.spec.repository.clone(), run.spec.revision.clone());
    let (namespace, trigger) = (run.namespace().unwrap_or_default(), run.spec.trigger);
    let (prune, exclude) = (repo.spec.prune || deleting, exclude.to_vec());
    let warnings: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    // A restored state keeps the versions its run resolved; a fresh one has its own.
    let modules = match &restored {
        Some(older) => older
            .status
            .as_ref()
            .map(|s| s.modules.clone())
            .unwrap_or_default(),
        None => desired.modules.iter().map(Into::into).collect(),
    };
    let policy = match repo.spec.rollout.policy() {
        Ok(policy) => policy,
        Err(message) => return Ok(Computed::Invalid(FailReason::InvalidRollout, message)),
    };
    let gov = governance::load(&ctx.client, &namespace, &repository).await?;
    let slice_rule = gov.slices.as_ref().map(|(_, rule)| rule.clone());
    off_runtime(move || {
        let options = PlanOptions {
            repository: &repository,
            revision: &revision,
            prune,
            exclude: &exclude,
        };
        let staged = fleet::plan(&desired.objects, &live, &options).map(|mut plan| {
            rollout::stage(&mut plan, &desired.objects, &live, &repository, &policy).map(|()| plan)
        });
        let sliced = match &staged {
            Ok(Ok(plan)) => split(slice_rule.as_ref(), plan, &desired.objects, &live),
            _ => Ok(None),
        };
        let slices = match sliced {
            Ok(slices) => slices,
            Err(e) => return Computed::Invalid(FailReason::Error(e.label()), e.to_string()),
        };
        match staged {
            Ok(Err(refused)) => Computed::Invalid(FailReason::InvalidRollout, refused.to_string()),
            Ok(Ok(plan)) => Computed::Planned(Box::new(Planned {
                gov,
                slices,
                facts: rules::Facts::new(&plan, &live, &namespace, &repository, trigger.as_str()),
                plan,
                warnings,
                desired: desired.objects,
                source,
                restored,
                modules,
            })),
            Err(errors) => {
                let reason = match errors.first() {
                    Some(PlanError::UnknownExclusion { .. }) => FailReason::InvalidExclusion,
                    _ => FailReason::PreventDestroy,
                };
                let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                Computed::Invalid(reason, lines.join("\n"))
            }
        }
    })
    .await
}

/// How `plan` splits by owner under `rule` (None: no policy splits it, or its key is
/// invalid, which the policy's own status reports and which stops every plan anyway).
fn split(
    rule: Option<&SliceRule>,
    plan: &Plan,
    desired: &[FleetObject],
    live: &[fleet::LiveObject],
) -> Result<Option<PlanSlices>, fleet::slices::SliceError> {
    let Some(rule) = rule else { return Ok(None) };
    let Ok(key) = rule.by.parse::<rollout::WaveKey>() else {
        return Ok(None);
    };
    let split = fleet::slices::split(plan, desired, live, &key)?;
    Ok(Some(PlanSlices::of(&rule.by, &split)))
}

/// Records a computed plan: stored in full, summarized in status, judged by governance
/// and the one authorization check, then cleared to apply or left for people. The
/// fields and the words are decided in `recording`; this stores, loads and writes.
async fn record(
    run: &SyncRun,
    ctx: &Context,
    repo: &GitopsRepository,
    mut status: SyncRunStatus,
    planned: Box<Planned>,
    raw_exclusions: Option<String>,
) -> Result<Action> {
    let Planned {
        plan,
        warnings,
        desired,
        facts,
        source,
        restored,
        modules,
        gov,
        slices,
    } = *planned;
    // Serialized, hashed and compressed in one stream, off the async workers.
    let max = ctx.settings.max_stored_bytes();
    let (desired, plan, full) = off_runtime(move || {
        let desired = planstore::encode("desired state", &desired, max);
        let full = (!plan.is_empty()).then(|| planstore::encode("plan", &plan, max));
        (desired, plan, full)
    })
    .await?;
    let (desired, full) = match (desired, full.transpose()) {
        (Ok(desired), Ok(full)) => (desired, full),
        (Err(e @ Error::TooLarge { .. }), _) | (_, Err(e @ Error::TooLarge { .. })) => {
            let reason = FailReason::Error(e.label());
            return fail(ctx, run, status, reason, e.to_string()).await;
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let saved = planstore::save(&ctx.client, run, "desired", desired).await?;
    status.desired_state = saved.names;
    status.desired_state_digest = Some(saved.digest);
    status.modules = modules
        .into_iter()
        .take(recording::MAX_MODULE_PINS)
        .collect();
    recording::record_plan(
        &mut status,
        &plan,
        warnings,
        raw_exclusions,
        source,
        &repo.spec.rollout,
    );
    status.slices = slices;
    if plan.is_empty() {
        let message = recording::no_changes(&status);
        transition(ctx, run, status, Event::NothingToChange, message).await?;
        return Ok(Action::await_change());
    }
    let Some(full) = full else {
        return Err(Error::PlanStore {
            run: run.name_any(),
            message: "a plan with changes was not encoded".into(),
        });
    };
    let full_plan = planstore::save_plan(&ctx.client, run, full, plan.actions.len()).await?;
    let review = recording::where_to_review(run, status.diff_truncated, &full_plan.config_maps);
    status.full_plan = Some(full_plan);
    // From the run's first plan: re-planning (an exclusion toggled) never renews it.
    status.planned_at.get_or_insert_with(now);
    let mut facts = facts;
    facts.plan.source = governance::separation::facts(
        status.source.as_ref().and_then(|s| s.commit.as_ref()),
        gov.separation.as_deref(),
    );
    // A Flux source: no git history is read, so who wrote its commits is unknown (one
    // more approver under separation of duties, as for any range not read whole).
    if status.source.as_ref().is_some_and(|s| s.flux.is_some()) {
        facts.plan.source.complete = false;
    }
    let extra =
        governance::separation::extra_approvers(gov.separation.is_some(), &facts.plan.source);
    let verdict = match gov.judge(facts).await {
        Ok(verdict) => verdict,
        Err(governance::Error::Kube(e)) => return Err(e.into()),
        Err(e) => {
            let reason = FailReason::Error(e.label());
            return fail(ctx, run, status, reason, e.to_string()).await;
        }
    };
    status.warnings.extend(verdict.warnings.iter().cloned());
    status.policy_results = verdict.matched.clone();
    // A source not read whole (or with commits no trusted key signed) under separation
    // of duties: one more approver, since its people may be missing.
    let required = gov.required(&verdict) + extra;
    // A rule asking for more approvers asks it of every slice (the general quorum and
    // separation of duties' extra approver are the `(no owner)` slice's).
    if let Some(slices) = status.slices.as_mut() {
        slices.rule_approvals = (verdict.approvals > 1).then_some(verdict.approvals);
    }
    status.approvals_required = (required > 1).then_some(required);
    // The one authorization check, on the plan just made and where it came from: a
    // policy approves it only if nothing an editor wrote stands in between.
    let requirement = gov.requirement_for(&status);
    let decided = {
        let facts = Facts {
            trigger: run.spec.trigger,
            approvals: &status.approvals,
            requirement: &requirement,
            policy: Some(PolicyFacts {
                provenance: Provenance::of(
                    run.spec.trigger,
                    status.source.as_ref(),
                    restored.as_ref(),
                    ctx.settings.allow_unverified_approvals,
                ),
                repository: RepositoryPolicy::of(&repo.spec),
                rules: Some(RuleVerdict {
                    plan_id: &plan.plan_id,
                    auto_approved_by: verdict.auto_approved_by.as_deref(),
                    needs_person: gov.needs_person(&verdict),
                }),
                excluded: &status.excluded,
                recorded: None,
            }),
            at: now().0,
        };
        authorization::authorize(Content::Plan(&plan), &facts)
    };
    let unauthorized = match decided {
        Ok(authorization) => {
            let by_policy = matches!(authorization.grant(), Grant::Policy { .. });
            status.requires_approval = !by_policy;
            let message = recording::approved(&plan, &authorization.approved_by(), &review);
            let cleared = match by_policy {
                true => Clearance::ApprovedByPolicy,
                false => Clearance::Approved,
            };
            let claim = Claim::WhenApplying;
            return apply_when_open(
                run,
                ctx,
                &gov,
                status,
                &authorization,
                cleared,
                message,
                claim,
            )
            .await;
        }
        Err(unauthorized) => unauthorized,
    };
    status.requires_approval = true;
    // An approval already present was given before this plan existed: it cannot have
    // been an approval of it. Said in the same write as the plan, so that no one reads
    // the plan without the refusal.
    let early = run.annotations().get(annotations::APPROVE).cloned();
    status.refused_approval = early.clone();
    let words = recording::awaiting(
        run,
        &plan,
        required,
        &review,
        early.as_deref(),
        unauthorized.withheld(),
    );
    let mut message = words.message;
    if status.slices.is_some()
        && let authorization::Refusal::Unapproved { tally, .. } = &unauthorized
    {
        message = format!("{message}; each slice needs its owners: {tally}");
    }
    transition(ctx, run, status, Event::Planned, message).await?;
    if let Some(withheld) = words.withheld {
        ctx.event_at(
            run,
            "status.phase",
            EventType::Warning,
            "PolicyWithheld",
            "Approve",
            withheld,
        )
        .await;
    }
    if let Some(refusal) = words.refusal {
        let (notifier, observed, message) = (ctx.notifier.clone(), run.clone(), refusal.clone());
        tokio::spawn(async move { notifier.approval_refused(&observed, &message).await });
        ctx.event_at(
            run,
            "metadata.annotations",
            EventType::Warning,
            "ApprovalRefused",
            "Approve",
            refusal,
        )
        .await;
    }
    Ok(Action::await_change())
}

/// The exclude annotation changed: plan again without the excluded actions. An
/// exclusion that cannot be honoured is refused and the recorded plan stays.
pub(super) async fn replan(run: &SyncRun, ctx: &Context, status: SyncRunStatus) -> Result<Action> {
    let Some(repo) = get_repository(ctx, run).await? else {
        return Ok(Action::await_change());
    };
    let (raw, exclusions) = exclusions_of(run);
    // Part of the plan is written (its approved slices): a new plan would forget it.
    if status.wrote_any() {
        let message = format!(
            "{} refused: part of plan {} is written already; reject the run, or push a new revision, to plan otherwise",
            annotations::EXCLUDE,
            status.plan_id.clone().unwrap_or_default()
        );
        return refuse_exclusion(run, ctx, status, raw, message).await;
    }
    let exclusions = match exclusions {
        Ok(e) => e,
        Err(m) => {
            let message = format!(
                "invalid {} annotation: {m}; the plan is unchanged",
                annotations::EXCLUDE
            );
            return refuse_exclusion(run, ctx, status, raw, message).await;
        }
    };
    let _slot = ctx
        .plannings
        .acquire(&run.namespace().unwrap_or_default())
        .await;
    let mut digest = None;
    match compute(run, ctx, &repo, &exclusions, &mut digest).await? {
        Computed::Planned(planned) => {
            let status = SyncRunStatus {
                module_catalog: digest,
                ..status
            };
            record(run, ctx, &repo, status, planned, raw).await
        }
        Computed::Invalid(_, message) => {
            refuse_exclusion(
                run,
                ctx,
                status,
                raw,
                format!("{message}; the plan is unchanged"),
            )
            .await
        }
    }
}

/// Keeps the recorded plan, remembers the refused annotation so it is reported once.
async fn refuse_exclusion(
    run: &SyncRun,
    ctx: &Context,
    mut status: SyncRunStatus,
    raw: Option<String>,
    message: String,
) -> Result<Action> {
    status.exclusions = raw;
    warn(ctx, run, &status, "ExclusionRefused", "Replan", message).await?;
    Ok(Action::await_change())
}

/// The fleet file at `revision`, from git or from the repository's Flux source, once its
/// provenance is checked: who made the commit and, under `spec.verify`, who signed it
/// (git), or Flux's own verification (a Flux source). Checked before the file is even
/// parsed: an unverified revision is never planned.
async fn read_source(
    ctx: &Context,
    repo: &GitopsRepository,
    revision: &str,
    source: &mut crate::api::syncrun::RunSource,
) -> Result<std::result::Result<Vec<u8>, crate::source::verify::VerifyError>> {
    if let Some(flux) = &repo.spec.source_ref {
        let (bytes, artifact, keys) =
            crate::controller::fluxsource::read_fleet_file(ctx, repo, flux, revision).await?;
        let verified =
            provenance::of_flux_artifact(&ctx.client, repo, &artifact, keys.as_deref()).await?;
        source.flux = Some(artifact);
        return Ok(verified.map(|()| bytes));
    }
    let bytes = gitsource::read_fleet_file(&ctx.git, &ctx.client, repo, revision).await?;
    let read = provenance::of_revision(&ctx.git, &ctx.client, repo, revision);
    Ok(Box::pin(read).await?.map(|commit| {
        source.commit = Some(commit);
        bytes
    }))
}
