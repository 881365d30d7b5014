//! `kubectl fleet`: review, approve, reject, sync and inspect without hand-written
//! annotations or raw status YAML. The `kubectl-fleet` binary only calls [`run`].

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::syncrun::Phase;
use crate::api::{GitopsRepository, SyncRun, annotations};
use crate::controller::planstore;
use crate::fleet::render::render_text;
use crate::fleet::rollout::pause::Choice;

#[derive(Debug, Parser)]
#[command(
    name = "kubectl fleet",
    bin_name = "kubectl fleet",
    version,
    about = "Review and approve fleetgate plans",
    after_help = "Exit codes: 0 success (drift: no drift), 1 the answer is no (not approved, not applied, drift found, timed out, stalled), 2 error."
)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a SyncRun's plan, the way `fleetgate diff` shows one.
    Plan {
        /// The SyncRun (`kubectl get syncruns` lists them).
        syncrun: String,
        #[command(flatten)]
        output: OutputFlag,
    },
    /// Show the plan, ask, and approve exactly that plan.
    Approve {
        /// The SyncRun whose plan to approve.
        syncrun: String,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Approve only if the current plan is this one (for scripts).
        #[arg(long)]
        plan_id: Option<String>,
        /// Wait until the run has been applied.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long (such as 90s or 10m).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Choose at a paused rollout: `continue` (accept the objects that stopped it),
    /// `leave-out` (accept them and leave out what remains for them and what depends on
    /// them) or `rollback` (end the run; a Rollback run to the last run applied whole
    /// awaits approval). Counted like an approval: the same quorum and rules.
    Decide {
        /// The paused SyncRun.
        syncrun: String,
        /// continue, leave-out or rollback.
        #[arg(value_parser = parse_choice)]
        choice: Choice,
        /// Choose only if the run is paused at this decision id (for scripts).
        #[arg(long)]
        decision_id: Option<String>,
    },
    /// Reject a SyncRun's plan.
    Reject {
        /// The SyncRun whose plan to reject.
        syncrun: String,
        /// Why, recorded on the run for whoever looks next.
        #[arg(long)]
        reason: String,
    },
    /// Ask a GitopsRepository to sync now.
    Sync {
        /// The GitopsRepository.
        repository: String,
        /// Wait for the SyncRun the request starts to be planned; fail at once if the
        /// repository is Stalled.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long (such as 90s or 10m).
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Return a repository to what an older applied SyncRun applied: a new run with
    /// trigger Rollback, planned against the cluster and approved like any other.
    Rollback {
        /// The GitopsRepository.
        repository: String,
        /// The applied SyncRun whose state to return to (`kubectl fleet history` lists them).
        #[arg(long)]
        to: String,
    },
    /// Show how the cluster differs from git; exit 0 no drift, 1 drift, 2 cannot tell.
    Drift {
        /// The GitopsRepository.
        repository: String,
        #[command(flatten)]
        output: OutputFlag,
    },
    /// Show a repository's recent SyncRuns: what was applied, when, by whom.
    History {
        /// The GitopsRepository.
        repository: String,
        #[command(flatten)]
        output: OutputFlag,
    },
    /// The plan of a local, uncommitted fleet file against the live cluster; exit 0 no
    /// changes, 1 changes, 2 error.
    Diff {
        /// The fleet file to compare.
        #[arg(long)]
        local: PathBuf,
        /// The GitopsRepository whose live objects to compare with.
        repository: String,
    },
    /// Review, edit, approve and reject in a browser: a server on 127.0.0.1 that acts
    /// with these credentials (--context, --as), until Ctrl-C.
    Ui(super::ui::Args),
    /// Signed approval-to-apply records: check them with the public key alone, or export
    /// them for an audit.
    #[command(subcommand)]
    Attest(super::attest::Command),
}

use super::kubectl::{self, ConnectionFlags, OutputFlag};
use super::live_plan::{EXIT_CHANGES, EXIT_ERROR};

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    // A record in a file is checked with the key alone: no cluster, no kubeconfig.
    if let Command::Attest(super::attest::Command::Verify {
        target,
        key,
        output,
    }) = &cli.command
        && super::attest::is_file(target)
    {
        return super::attest::verify_offline(target, key, output);
    }
    let namespace = cli.connection.namespace.clone();
    runtime.block_on(async {
        let identity = cli.connection.identity();
        let (client, ns) = match cli.connection.connect().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}", kubectl::describe(&e, namespace.as_deref()));
                return ExitCode::from(EXIT_ERROR);
            }
        };
        match dispatch(cli.command, client, &ns, identity).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("{}", kubectl::describe(&e, Some(&ns)));
                ExitCode::from(EXIT_ERROR)
            }
        }
    })
}

async fn dispatch(
    command: Command,
    client: Client,
    ns: &str,
    identity: String,
) -> anyhow::Result<ExitCode> {
    let runs: Api<SyncRun> = Api::namespaced(client.clone(), ns);
    let repos: Api<GitopsRepository> = Api::namespaced(client.clone(), ns);
    match command {
        Command::Plan { syncrun, output } => {
            let run = runs.get(&syncrun).await?;
            if output.output.is_some() {
                let plan = match run.status.as_ref().and_then(|s| s.full_plan.as_ref()) {
                    Some(at) => Some(planstore::load_plan(&client, &run, at).await?),
                    None => None,
                };
                let status = run.status.clone().unwrap_or_default();
                let data = json!({
                    "syncRun": run.name_any(),
                    "repository": run.spec.repository,
                    "revision": run.spec.revision,
                    "phase": status.phase,
                    "planId": status.plan_id,
                    "message": status.message,
                    "modules": status.modules,
                    "plan": plan,
                });
                print!("{}", output.render(&data, String::new));
            } else {
                print!("{}", show_plan(&client, &run).await?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Approve {
            syncrun,
            yes,
            plan_id,
            wait,
            timeout,
        } => {
            let wait = wait.then_some(timeout);
            approve(&client, &runs, &syncrun, yes, plan_id, wait).await
        }
        Command::Decide {
            syncrun,
            choice,
            decision_id,
        } => super::decide::decide(&runs, &syncrun, choice, decision_id.as_deref()).await,
        Command::Reject { syncrun, reason } => {
            let run = runs.get(&syncrun).await?;
            if let Err(why) = rejectable(&run) {
                eprintln!("error: {why}");
                return Ok(ExitCode::from(EXIT_CHANGES));
            }
            annotate(&runs, &syncrun, annotations::REJECT, &reason).await?;
            println!("syncrun/{syncrun} rejected: {reason}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync {
            repository,
            wait,
            timeout,
        } => {
            let wait = wait.then_some(timeout);
            sync(&runs, &repos, &repository, wait).await
        }
        Command::Rollback { repository, to } => rollback(&repos, &repository, &to).await,
        Command::Drift { repository, output } => {
            let repo = repos.get(&repository).await?;
            let (text, code) = show_drift(&repo);
            let drift = repo.status.as_ref().and_then(|s| s.drift.clone());
            print!("{}", output.render(&drift, || text));
            Ok(ExitCode::from(code))
        }
        Command::History { repository, output } => {
            let repo = repos.get(&repository).await?;
            let history = repo.status.clone().unwrap_or_default().history;
            print!("{}", output.render(&history, || show_history(&repo)));
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { local, repository } => {
            diff_local(&client, ns, &repos, &repository, &local).await
        }
        Command::Ui(args) => Ok(super::ui::run(args, client, ns.to_owned(), identity).await),
        Command::Attest(command) => super::attest::run(command, client, ns).await,
    }
}

pub(super) fn phase_name(run: &SyncRun) -> &'static str {
    run.phase().map_or("not yet planned", Phase::as_str)
}

/// The plan id to approve, or why this run cannot be approved (with `expected`: unless
/// its plan is still that one).
pub(super) fn approvable(run: &SyncRun, expected: Option<&str>) -> Result<String, String> {
    let name = run.name_any();
    // A scheduled run takes further approvals toward an override of the change windows.
    if !matches!(
        run.phase(),
        Some(Phase::AwaitingApproval | Phase::Scheduled)
    ) {
        return Err(format!(
            "{name} is {}; only a run awaiting approval can be approved (or, toward an override of the change windows, a scheduled one)",
            phase_name(run)
        ));
    }
    let plan_id = run
        .status
        .as_ref()
        .and_then(|s| s.plan_id.clone())
        .unwrap_or_default();
    match expected {
        Some(expected) if expected != plan_id => Err(format!(
            "the plan of {name} is now {plan_id}, not {expected}; review it again"
        )),
        _ => Ok(plan_id),
    }
}

/// Why this run cannot be rejected, if it cannot.
pub(super) fn rejectable(run: &SyncRun) -> Result<(), String> {
    if run.phase() == Some(Phase::AwaitingApproval) {
        return Ok(());
    }
    Err(format!(
        "{} is {}, not awaiting approval; nothing to reject",
        run.name_any(),
        phase_name(run)
    ))
}

/// The run's full plan from its ConfigMaps, rendered; or what the status says when
/// there is none.
async fn show_plan(client: &Client, run: &SyncRun) -> anyhow::Result<String> {
    let status = run.status.clone().unwrap_or_default();
    let mut out = format!(
        "SyncRun {} ({:?}) of {} at {}: {}\n",
        run.name_any(),
        run.spec.trigger,
        run.spec.repository,
        status.short_revision.clone().unwrap_or_default(),
        phase_name(run)
    );
    out.push_str(&super::governance::lines(run));
    if !status.modules.is_empty() {
        let pins: Vec<String> = status.modules.iter().map(ToString::to_string).collect();
        out.push_str(&format!("Modules: {}\n", pins.join(", ")));
    }
    match &status.full_plan {
        Some(at) => {
            let plan = planstore::load_plan(client, run, at).await?;
            out.push_str(&render_text(&plan, super::terminal_colour()));
        }
        None => out.push_str(&format!("{}\n", status.message.unwrap_or_default())),
    }
    Ok(out)
}

pub(super) async fn annotate(
    runs: &Api<SyncRun>,
    name: &str,
    key: &str,
    value: &str,
) -> anyhow::Result<()> {
    set_annotation(runs, name, key, json!(value)).await
}

async fn set_annotation(
    runs: &Api<SyncRun>,
    name: &str,
    key: &str,
    value: serde_json::Value,
) -> anyhow::Result<()> {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    runs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn parse_choice(s: &str) -> Result<Choice, String> {
    s.parse()
        .map_err(|e: crate::fleet::rollout::pause::DecisionError| e.to_string())
}

/// A spinner on a terminal; plain lines otherwise.
fn progress(message: &str) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar.set_message(message.to_owned());
        bar
    } else {
        eprintln!("{message}");
        ProgressBar::hidden()
    }
}

/// Polls `name` until `done` says so, for at most `timeout`.
async fn wait_for(
    runs: &Api<SyncRun>,
    name: &str,
    message: &str,
    timeout: Duration,
    done: impl Fn(&SyncRun) -> bool,
) -> anyhow::Result<Option<SyncRun>> {
    let bar = progress(message);
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        let run = runs.get(name).await?;
        if done(&run) {
            bar.finish_and_clear();
            return Ok(Some(run));
        }
        if let Some(p) = run.status.as_ref().and_then(|s| s.progress.as_ref()) {
            bar.set_message(format!("{message}: {}/{} applied", p.applied, p.total));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    Ok(None)
}

async fn approve(
    client: &Client,
    runs: &Api<SyncRun>,
    name: &str,
    yes: bool,
    expected: Option<String>,
    wait: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let run = runs.get(name).await?;
    let plan_id = match approvable(&run, expected.as_deref()) {
        Ok(plan_id) => plan_id,
        Err(why) => {
            eprintln!("error: {why}");
            return Ok(ExitCode::from(EXIT_CHANGES));
        }
    };
    print!("{}", show_plan(client, &run).await?);
    if !yes {
        print!("Approve plan {plan_id}? Only 'yes' approves: ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            eprintln!("not approved");
            return Ok(ExitCode::from(EXIT_CHANGES));
        }
    }
    annotate(runs, name, annotations::APPROVE, &plan_id).await?;
    println!("syncrun/{name} approved: {plan_id}");
    if let Some(n) = run.status.as_ref().and_then(|s| s.approvals_required) {
        println!(
            "this plan needs {n} distinct approvers; `kubectl fleet plan {name}` shows who has approved"
        );
    }
    if let Some(timeout) = wait {
        let Some(done) = wait_for(runs, name, "applying", timeout, |r| {
            r.phase().is_some_and(Phase::is_finished)
        })
        .await?
        else {
            eprintln!(
                "error: timed out after {} waiting for syncrun/{name} to be applied",
                humantime::format_duration(timeout)
            );
            return Ok(ExitCode::from(EXIT_CHANGES));
        };
        let finished = done.phase();
        let message = done.status.and_then(|s| s.message).unwrap_or_default();
        println!("{}: {message}", phase_name_of(finished));
        if finished != Some(Phase::Applied) {
            return Ok(ExitCode::from(EXIT_CHANGES));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn phase_name_of(p: Option<Phase>) -> &'static str {
    p.map_or("unknown", Phase::as_str)
}

/// Asks for a rollback: the controller starts a Rollback run for it.
async fn rollback(repos: &Api<GitopsRepository>, name: &str, to: &str) -> anyhow::Result<ExitCode> {
    super::governance::request_rollback(repos, name, to).await?;
    println!(
        "gitopsrepository/{name}: rollback to what syncrun/{to} applied requested; its plan awaits approval like any other (kubectl get syncruns -l {}={name})",
        crate::api::REPOSITORY_LABEL
    );
    Ok(ExitCode::SUCCESS)
}

async fn sync(
    runs: &Api<SyncRun>,
    repos: &Api<GitopsRepository>,
    name: &str,
    wait: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let request = request_sync(repos, name).await?;
    println!("gitopsrepository/{name}: sync requested at {request}");
    let Some(timeout) = wait else {
        return Ok(ExitCode::SUCCESS);
    };
    let bar = progress("waiting for the SyncRun");
    let selector = format!("{}={name}", crate::api::REPOSITORY_LABEL);
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        // A stalled repository will not plan anything until someone fixes it.
        let repo = repos.get(name).await?;
        if let Some(stalled) = repo
            .status
            .as_ref()
            .and_then(|s| crate::api::condition(&s.conditions, "Stalled"))
            .filter(|c| c.status == "True")
        {
            bar.finish_and_clear();
            eprintln!(
                "error: gitopsrepository/{name} is Stalled ({}): {}",
                stalled.reason, stalled.message
            );
            return Ok(ExitCode::from(EXIT_CHANGES));
        }
        let list = runs
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        let started = list
            .into_iter()
            .find(|r| r.annotations().get(crate::api::annotations::SYNC_REQUEST) == Some(&request));
        if let Some(run) = started.filter(|r| !matches!(r.phase(), None | Some(Phase::Planning))) {
            bar.finish_and_clear();
            let status = run.status.clone().unwrap_or_default();
            println!(
                "syncrun/{} {}: {}",
                run.name_any(),
                phase_name(&run),
                status.message.unwrap_or_default()
            );
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bar.finish_and_clear();
    eprintln!(
        "error: timed out after {}: no SyncRun was planned for the request",
        humantime::format_duration(timeout)
    );
    Ok(ExitCode::from(EXIT_CHANGES))
}

/// Asks the repository to sync now; returns the request's value.
pub(super) async fn request_sync(
    repos: &Api<GitopsRepository>,
    name: &str,
) -> kube::Result<String> {
    let request = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {annotations::SYNC_REQUESTED_AT: request}}});
    repos
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(request)
}

/// The drift as text, and the exit code: 0 none, 1 drift, 2 not known (and why).
fn show_drift(repo: &GitopsRepository) -> (String, u8) {
    let status = repo.status.clone().unwrap_or_default();
    let Some(drift) = status.drift else {
        return no_drift_listed(repo);
    };
    let mut out = format!(
        "{}: {} objects differ from revision {}{}\n",
        repo.name_any(),
        drift.count,
        &drift.revision[..drift.revision.len().min(12)],
        if drift.truncated {
            " (first 50 listed)"
        } else {
            ""
        }
    );
    for d in &drift.objects {
        out.push_str(&format!(
            "  {:?} {}/{}\n",
            d.drift,
            d.kind.as_str().to_ascii_lowercase(),
            d.name
        ));
        for f in &d.fields {
            out.push_str(&format!("      {f}\n"));
        }
    }
    (out, EXIT_CHANGES)
}

/// Why a repository lists no drift: none found (exit 0), or not known (exit 2, and why).
pub(super) fn no_drift_listed(repo: &GitopsRepository) -> (String, u8) {
    let status = repo.status.clone().unwrap_or_default();
    let name = repo.name_any();
    let checked = crate::api::condition(&status.conditions, "Drifted");
    if let Some(c) = checked.filter(|c| c.status == "False") {
        return (format!("{name}: {}\n", c.message), 0);
    }
    let why = if repo.spec.suspend {
        "the repository is suspended".to_owned()
    } else if status.last_applied_revision.is_none() {
        "no revision has been applied yet, so there is nothing to compare with".to_owned()
    } else {
        crate::api::condition(&status.conditions, "Ready")
            .filter(|c| c.status != "True")
            .map_or("the controller has not checked yet".to_owned(), |c| {
                format!("the repository is not Ready ({}): {}", c.reason, c.message)
            })
    };
    (
        format!("{name}: drift could not be checked: {why}\n"),
        EXIT_ERROR,
    )
}

fn show_history(repo: &GitopsRepository) -> String {
    let status = repo.status.clone().unwrap_or_default();
    let history = status.history;
    // The chain first: where this environment's revisions come from, and what waits.
    let mut out = status
        .promotion
        .map(|p| format!("Promotion from {} ({}): {}\n", p.from, p.reason, p.message))
        .unwrap_or_default();
    out += &format!(
        "{:<28} {:<13} {:<9} {:<17} {:<18} {:>4} {:>4} {:>4}  {}\n",
        "SYNCRUN", "REVISION", "TRIGGER", "PHASE", "PLAN", "+", "~", "-", "APPROVED BY"
    );
    for h in history {
        let c = h.changes.unwrap_or_default();
        out.push_str(&format!(
            "{:<28} {:<13} {:<9} {:<17} {:<18} {:>4} {:>4} {:>4}  {}\n",
            h.sync_run,
            &h.revision[..h.revision.len().min(12)],
            format!("{:?}", h.trigger),
            phase_name_of(h.phase),
            h.plan_id.unwrap_or_default(),
            c.add,
            c.update,
            c.delete,
            h.approved_by.unwrap_or_default()
        ));
    }
    out
}

/// `fleetgate diff`, with the live cluster as the old side.
async fn diff_local(
    client: &Client,
    ns: &str,
    repos: &Api<GitopsRepository>,
    repository: &str,
    path: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let repo = repos.get(repository).await?;
    match super::live_plan::plan_file(client, ns, repository, Some(&repo), path).await? {
        Ok(plan) => {
            print!("{}", render_text(&plan, super::terminal_colour()));
            Ok(super::live_plan::exit_code(&plan))
        }
        Err(code) => Ok(code),
    }
}
