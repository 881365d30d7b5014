//! `fleetgate provider-conformance`: the provider conformance suite (src/provider/conformance)
//! against whatever provider serves a namespace.

use std::process::ExitCode;
use std::time::Duration;

use crate::provider::conformance::{self, Options};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The namespace the provider under test serves; the suite makes its objects there.
    #[arg(long, short = 'n')]
    namespace: String,
    /// The first part of the names of the objects the suite makes.
    #[arg(long, default_value = "conformance")]
    prefix: String,
    /// How long the provider may take for one step (objects Ready, deletions done).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// KEY=VALUE: an annotation that makes the provider fail a FleetNode for good (for the
    /// lab provider `lab.fleetgate.dev/fail-after=0s`); without it TerminalFailure is skipped.
    #[arg(long, value_parser = parse_annotation)]
    terminal_fault: Option<(String, String)>,
}

fn parse_annotation(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// Exit 0 when every test passed or was skipped, 1 when one failed, 2 when the suite could not run.
pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let options = Options {
        namespace: args.namespace,
        prefix: args.prefix,
        timeout: args.timeout,
        terminal_fault: args.terminal_fault,
    };
    let result = runtime.block_on(async {
        let client = kube::Client::try_default().await?;
        conformance::run(client, options)
            .await
            .map_err(anyhow::Error::from)
    });
    match result {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
