//! `fleetgate lab-provider`: the lab provider (src/provider/lab) as a command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::provider::lab;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The namespace whose fleet objects to realize.
    #[arg(
        long,
        short = 'n',
        env = "FLEETGATE_LAB_NAMESPACE",
        required_unless_present = "cleanup"
    )]
    namespace: Option<String>,
    /// Names this lab apart from others on the machine: its network namespaces are
    /// `fgl-<instance>-…` (1 to 12 lowercase letters and digits).
    #[arg(long, env = "FLEETGATE_LAB_INSTANCE", default_value = lab::PROVIDER_NAME)]
    instance: String,
    /// Where the lab records what it made (default /run/fleetgate-lab/<instance>).
    #[arg(long, env = "FLEETGATE_LAB_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// How often the lab looks again when nothing changed: sessions, holders, faults.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Remove everything this instance made (namespaces, links, daemons, state) and exit.
    #[arg(long)]
    cleanup: bool,
}

pub fn run(args: Args) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| lab::default_state_dir(&args.instance));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "could not start the async runtime");
            return ExitCode::from(1);
        }
    };
    if args.cleanup {
        return match runtime.block_on(lab::cleanup(&args.instance, &state_dir)) {
            Ok(removed) => {
                println!(
                    "lab {}: removed {} namespace(s) and {} daemon(s)",
                    args.instance,
                    removed.namespaces.len(),
                    removed.daemons
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        };
    }
    let config = lab::Config {
        instance: args.instance,
        namespace: args.namespace.unwrap_or_default(),
        state_dir,
        interval: args.interval,
    };
    let result = runtime.block_on(async {
        let client = kube::Client::try_default().await?;
        lab::run(client, config, shutdown()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, label = e.label(), "lab provider failed");
            ExitCode::from(1)
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
