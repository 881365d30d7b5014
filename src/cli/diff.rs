use std::path::PathBuf;
use std::process::ExitCode;

use super::OutputFormat;
use crate::fleet::render::{render_json, render_text, render_yaml};
use crate::fleet::{self, DesiredState, LiveObject, ObjectRef, PlanOptions, ResolveOptions};

/// The repository name the old revision is taken to belong to; only its objects change.
const LOCAL_REPOSITORY: &str = "local";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The fleet file as it is now (for example, on the main branch).
    old: PathBuf,
    /// The fleet file as proposed.
    new: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    /// Revision to name in the plan (its id covers it); defaults to the new file's path.
    #[arg(long)]
    revision: Option<String>,
    /// Leave these actions out, and what depends on them: `fleetnode/edge-tokyo-02,...`.
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<ObjectRef>,
    /// Plan no deletions.
    #[arg(long)]
    no_prune: bool,
    /// Compare both files as this environment sees them (`environments.<name>` applied):
    /// what a promotion from one environment's revision to another's changes.
    #[arg(long)]
    environment: Option<String>,
}

const EXIT_CHANGES: u8 = 1;
const EXIT_ERROR: u8 = 2;

pub fn run(args: Args) -> ExitCode {
    let environment = args.environment.as_deref();
    let (Some(old), Some(new)) = (load(&args.old, environment), load(&args.new, environment))
    else {
        return ExitCode::from(EXIT_ERROR);
    };
    let live: Vec<LiveObject> = old
        .objects
        .iter()
        .map(|o| LiveObject::owned_by(o, LOCAL_REPOSITORY))
        .collect();
    let revision = args
        .revision
        .unwrap_or_else(|| super::display_name(&args.new));
    let options = PlanOptions {
        repository: LOCAL_REPOSITORY,
        revision: &revision,
        prune: !args.no_prune,
        exclude: &args.exclude,
    };
    let plan = match fleet::plan(&new.objects, &live, &options) {
        Ok(plan) => plan,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let text = match args.output {
        OutputFormat::Text => render_text(&plan, super::terminal_colour()),
        OutputFormat::Json => render_json(&plan),
        OutputFormat::Yaml => render_yaml(&plan),
    };
    print!("{text}");
    if plan.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHANGES)
    }
}

fn load(path: &std::path::Path, environment: Option<&str>) -> Option<DesiredState> {
    let name = super::display_name(path);
    let bytes = match super::read_file(path) {
        Ok(b) => b,
        Err(message) => {
            eprintln!("{message}");
            return None;
        }
    };
    let options = ResolveOptions {
        environment,
        ..Default::default()
    };
    match fleet::desired_state(&name, &bytes, &options) {
        Ok((desired, warnings)) => {
            super::print_diagnostics(&warnings);
            Some(desired)
        }
        Err(diags) => {
            super::print_diagnostics(&diags);
            None
        }
    }
}
