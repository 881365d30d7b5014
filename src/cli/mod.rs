//! The `fleetgate` command line. Each subcommand lives in its own module; `main.rs`
//! only calls [`run`].

use std::path::Path;
use std::process::ExitCode;

use anstyle::{AnsiColor, Style};
use clap::{Parser, Subcommand, ValueEnum};

use crate::fleet::{Diagnostics, Severity};

mod diff;
mod validate;

#[derive(Debug, Parser)]
#[command(
    name = "fleetgate",
    version,
    about = "Plan fleet changes from git; apply them only once a person approves the exact plan"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check fleet files; exit 0 when valid (warnings allowed), 1 when not.
    Validate(validate::Args),
    /// Show the plan from one revision of a fleet file to another, without a cluster;
    /// exit 0 no changes, 1 changes, 2 error.
    Diff(diff::Args),
}

/// How a plan is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people, like `terraform plan`.
    Text,
    /// JSON with the field names of SyncRun's status.
    Json,
    /// YAML with the same fields as JSON.
    Yaml,
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Diff(args) => diff::run(args),
    }
}

/// Reads a file for the fleet core, or reports why not as a diagnostic line.
fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("{}: error: cannot read: {e}", path.display()))?;
    if meta.len() > crate::fleet::yaml::MAX_FILE_BYTES as u64 {
        return Err(format!(
            "{}: error: file is {} bytes, larger than the limit of {} bytes (32 MiB)",
            path.display(),
            meta.len(),
            crate::fleet::yaml::MAX_FILE_BYTES
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: error: cannot read: {e}", path.display()))
}

fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// Prints diagnostics to stderr like a compiler, with the severity coloured on a terminal.
fn print_diagnostics(diags: &Diagnostics) {
    for d in diags.iter() {
        let style = match d.severity {
            Severity::Error => AnsiColor::Red.on_default().bold(),
            Severity::Warning => AnsiColor::Yellow.on_default().bold(),
        };
        anstream::eprintln!(
            "{}:{}: {}{}{}: {}",
            d.file,
            d.loc,
            style.render(),
            d.severity,
            Style::new().render_reset(),
            d.message
        );
    }
}
