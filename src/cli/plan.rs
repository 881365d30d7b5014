use std::path::PathBuf;
use std::process::ExitCode;

use kube::Client;
use kube::api::Api;

use super::OutputFormat;
use super::live_plan::{EXIT_ERROR, exit_code, plan_file};
use crate::api::GitopsRepository;
use crate::fleet::render::{render_json, render_text, render_yaml};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The fleet file to plan.
    file: PathBuf,
    /// The GitopsRepository the file belongs to: only its objects are updated or deleted,
    /// and its account guard and prune setting apply.
    #[arg(long, default_value = "fleet")]
    repository: String,
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub fn run(args: Args) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let result: anyhow::Result<ExitCode> = runtime.block_on(async {
        let client = Client::try_default().await?;
        let ns = args
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let repo = Api::<GitopsRepository>::namespaced(client.clone(), &ns)
            .get_opt(&args.repository)
            .await?;
        let plan =
            match plan_file(&client, &ns, &args.repository, repo.as_ref(), &args.file).await? {
                Ok(plan) => plan,
                Err(code) => return Ok(code),
            };
        let text = match args.output {
            OutputFormat::Text => render_text(&plan, super::terminal_colour()),
            OutputFormat::Json => render_json(&plan),
            OutputFormat::Yaml => render_yaml(&plan),
        };
        print!("{text}");
        Ok(exit_code(&plan))
    });
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(EXIT_ERROR)
    })
}
