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

#[derive(Debug, Parser)]
#[command(
    name = "kubectl fleet",
    version,
    about = "Review and approve fleetgate plans"
)]
struct Cli {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a SyncRun's plan, the way `fleetgate diff` shows one.
    Plan { syncrun: String },
    /// Show the plan, ask, and approve exactly that plan.
    Approve {
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
    },
    /// Reject a SyncRun's plan.
    Reject {
        syncrun: String,
        #[arg(long)]
        reason: String,
    },
    /// Ask a GitopsRepository to sync now.
    Sync {
        repository: String,
        /// Wait for the SyncRun the request starts to be planned.
        #[arg(long)]
        wait: bool,
    },
    /// Show how the cluster differs from git.
    Drift { repository: String },
    /// Show a repository's recent SyncRuns: what was applied, when, by whom.
    History { repository: String },
    /// The plan of a local, uncommitted fleet file against the live cluster; exit 0 no
    /// changes, 1 changes, 2 error.
    Diff {
        /// The fleet file to compare.
        #[arg(long)]
        local: PathBuf,
        repository: String,
    },
}

use super::live_plan::{EXIT_CHANGES, EXIT_ERROR};

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::try_default().await?;
    let ns = cli
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let runs: Api<SyncRun> = Api::namespaced(client.clone(), &ns);
    let repos: Api<GitopsRepository> = Api::namespaced(client.clone(), &ns);
    match cli.command {
        Command::Plan { syncrun } => {
            let run = runs.get(&syncrun).await?;
            print!("{}", show_plan(&client, &run).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Approve {
            syncrun,
            yes,
            plan_id,
            wait,
        } => approve(&client, &runs, &syncrun, yes, plan_id, wait).await,
        Command::Reject { syncrun, reason } => {
            let run = runs.get(&syncrun).await?;
            if phase(&run) != Some(Phase::AwaitingApproval) {
                eprintln!(
                    "error: {syncrun} is {}, not awaiting approval; nothing to reject",
                    phase_name(&run)
                );
                return Ok(ExitCode::from(EXIT_CHANGES));
            }
            annotate(&runs, &syncrun, annotations::REJECT, &reason).await?;
            println!("syncrun/{syncrun} rejected: {reason}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync { repository, wait } => sync(&runs, &repos, &repository, wait).await,
        Command::Drift { repository } => {
            let repo = repos.get(&repository).await?;
            print!("{}", show_drift(&repo));
            Ok(ExitCode::SUCCESS)
        }
        Command::History { repository } => {
            let repo = repos.get(&repository).await?;
            print!("{}", show_history(&repo));
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { local, repository } => {
            diff_local(&client, &ns, &repos, &repository, &local).await
        }
    }
}

fn phase(run: &SyncRun) -> Option<Phase> {
    run.status.as_ref().and_then(|s| s.phase)
}

fn phase_name(run: &SyncRun) -> &'static str {
    phase(run).map_or("not yet planned", Phase::as_str)
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
    match &status.full_plan {
        Some(at) => {
            let plan = planstore::load_plan(client, run, at).await?;
            out.push_str(&render_text(&plan, super::terminal_colour()));
        }
        None => out.push_str(&format!("{}\n", status.message.unwrap_or_default())),
    }
    Ok(out)
}

async fn annotate(runs: &Api<SyncRun>, name: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    runs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
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

/// Polls `name` until `done` says so, for at most ten minutes.
async fn wait_for(
    runs: &Api<SyncRun>,
    name: &str,
    message: &str,
    done: impl Fn(&SyncRun) -> bool,
) -> anyhow::Result<SyncRun> {
    let bar = progress(message);
    for _ in 0..6000 {
        let run = runs.get(name).await?;
        if done(&run) {
            bar.finish_and_clear();
            return Ok(run);
        }
        if let Some(p) = run.status.as_ref().and_then(|s| s.progress.as_ref()) {
            bar.set_message(format!("{message}: {}/{} applied", p.applied, p.total));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("gave up waiting for {name} after 10 minutes")
}

async fn approve(
    client: &Client,
    runs: &Api<SyncRun>,
    name: &str,
    yes: bool,
    expected: Option<String>,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let run = runs.get(name).await?;
    if phase(&run) != Some(Phase::AwaitingApproval) {
        eprintln!(
            "error: {name} is {}; only a run awaiting approval can be approved",
            phase_name(&run)
        );
        return Ok(ExitCode::from(EXIT_CHANGES));
    }
    let plan_id = run
        .status
        .as_ref()
        .and_then(|s| s.plan_id.clone())
        .unwrap_or_default();
    if let Some(expected) = expected.filter(|e| *e != plan_id) {
        eprintln!("error: the plan of {name} is now {plan_id}, not {expected}; review it again");
        return Ok(ExitCode::from(EXIT_CHANGES));
    }
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
    if wait {
        let done = wait_for(runs, name, "applying", |r| {
            phase(r).is_some_and(Phase::is_finished)
        })
        .await?;
        let finished = phase(&done);
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

async fn sync(
    runs: &Api<SyncRun>,
    repos: &Api<GitopsRepository>,
    name: &str,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let request = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {annotations::SYNC_REQUESTED_AT: request}}});
    repos
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    println!("gitopsrepository/{name}: sync requested at {request}");
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let bar = progress("waiting for the SyncRun");
    let selector = format!("{}={name}", crate::api::REPOSITORY_LABEL);
    for _ in 0..6000 {
        let list = runs
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        let started = list
            .into_iter()
            .find(|r| r.annotations().get("gitops.fleetgate.dev/sync-request") == Some(&request));
        if let Some(run) = started.filter(|r| !matches!(phase(r), None | Some(Phase::Planning))) {
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("no SyncRun was planned for the request within 10 minutes")
}

fn show_drift(repo: &GitopsRepository) -> String {
    let status = repo.status.clone().unwrap_or_default();
    let Some(drift) = status.drift else {
        let c = crate::api::condition(&status.conditions, "Drifted");
        return format!(
            "{}: {}\n",
            repo.name_any(),
            c.map_or("not checked yet".to_owned(), |c| c.message.clone())
        );
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
    out
}

fn show_history(repo: &GitopsRepository) -> String {
    let history = repo.status.clone().unwrap_or_default().history;
    let mut out = format!(
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
