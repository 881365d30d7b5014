use std::path::PathBuf;
use std::process::ExitCode;

use crate::fleet;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// fleet.yaml files to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let mut valid = true;
    for path in &args.files {
        let name = super::display_name(path);
        let bytes = match super::read_file(path) {
            Ok(b) => b,
            Err(message) => {
                eprintln!("{message}");
                valid = false;
                continue;
            }
        };
        // Resolved too: what the file resolves to is bounded as a controller bounds it.
        // And each environment's fleet, which may be larger than the base.
        let loaded = fleet::load(&name, &bytes).and_then(|(f, warnings)| {
            let options = fleet::ResolveOptions::default();
            fleet::resolve(&f, &options)?;
            for env in &f.environments {
                fleet::resolve(&fleet::environments::select(&f, &env.name.value)?, &options)?;
            }
            Ok((f, warnings))
        });
        match loaded {
            Ok((f, warnings)) => {
                super::print_diagnostics(&warnings);
                let environments: Vec<&str> = f
                    .environments
                    .iter()
                    .map(|e| e.name.value.as_str())
                    .collect();
                let environments = match environments.is_empty() {
                    true => String::new(),
                    false => format!("; environments {}", environments.join(", ")),
                };
                println!(
                    "{name}: valid ({} templates, {} nodes, {} networks, {} warnings{environments})",
                    f.templates.len(),
                    f.nodes.len(),
                    f.networks.len(),
                    warnings.len()
                );
            }
            Err(diags) => {
                super::print_diagnostics(&diags);
                let errors = diags.errors().count();
                eprintln!("{name}: invalid ({errors} errors)");
                valid = false;
            }
        }
    }
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
