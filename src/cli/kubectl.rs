//! What a kubectl plugin owes its user: kubectl's connection flags (`--kubeconfig`,
//! `--context`, `-n`, `--as`, `--as-group`), `-o json|yaml`, and kubectl's way of
//! reporting errors instead of Rust's debug output.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Serialize;

/// The flags kubectl passes on to a plugin, and a plugin is expected to honour.
#[derive(Debug, Args)]
pub struct ConnectionFlags {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the
    /// in-cluster ServiceAccount).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's, else `default`).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// The user to act as (impersonation; needs the `impersonate` permission).
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    /// A group to act as, with --as; repeat for several.
    #[arg(long = "as-group", global = true, value_name = "GROUP")]
    pub as_group: Vec<String>,
}

impl ConnectionFlags {
    /// Who requests are made as, for people: the `--as` user, else the context.
    pub fn identity(&self) -> String {
        match (&self.as_user, &self.context) {
            (Some(user), _) => format!("{user} (--as)"),
            (None, Some(context)) => format!("context {context}"),
            (None, None) => "the current kubeconfig context".to_owned(),
        }
    }

    /// The client these flags describe, and the namespace to work in.
    pub async fn connect(&self) -> anyhow::Result<(Client, String)> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let mut config = match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                    anyhow::anyhow!("cannot read kubeconfig {}: {e}", path.display())
                })?;
                Config::from_custom_kubeconfig(kubeconfig, &options).await?
            }
            (None, Some(_)) => Config::from_kubeconfig(&options).await?,
            (None, None) => Config::infer().await?,
        };
        if let Some(user) = &self.as_user {
            config.auth_info.impersonate = Some(user.clone());
            if !self.as_group.is_empty() {
                config.auth_info.impersonate_groups = Some(self.as_group.clone());
            }
        } else if !self.as_group.is_empty() {
            anyhow::bail!("--as-group needs --as (the user whose groups they are)");
        }
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        Ok((Client::try_from(config)?, namespace))
    }
}

/// `-o json|yaml` on a read command.
#[derive(Debug, Args)]
pub struct OutputFlag {
    /// Print the data as JSON or YAML instead of text.
    #[arg(short, long, value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

impl OutputFlag {
    /// The data in the chosen format, or `text` when none was chosen.
    pub fn render<T: Serialize>(&self, data: &T, text: impl FnOnce() -> String) -> String {
        match self.output {
            None => text(),
            Some(Format::Json) => serde_json::to_string_pretty(data)
                .map(|s| s + "\n")
                .unwrap_or_else(|e| format!("error: {e}\n")),
            Some(Format::Yaml) => {
                serde_yaml_ng::to_string(data).unwrap_or_else(|e| format!("error: {e}\n"))
            }
        }
    }
}

/// An error as kubectl words it: `Error from server (NotFound): syncruns… "x" not found`,
/// `Unable to connect to the server: …`, or `error: …`, with a hint where one helps.
pub fn describe(e: &anyhow::Error, namespace: Option<&str>) -> String {
    let Some(kube_error) = e.chain().find_map(|c| c.downcast_ref::<kube::Error>()) else {
        return format!("error: {e:#}");
    };
    match kube_error {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                "Unknown"
            } else {
                status.reason.as_str()
            };
            let mut out = format!("Error from server ({reason}): {}", status.message);
            if reason == "NotFound"
                && let Some(ns) = namespace
            {
                out.push_str(&format!(" in namespace \"{ns}\""));
                let resource = status
                    .message
                    .split_whitespace()
                    .next()
                    .and_then(|r| r.split('.').next())
                    .unwrap_or("syncruns");
                out.push_str(&format!(
                    "\nhint: `kubectl get {resource} -n {ns}` lists what there is; -n chooses another namespace"
                ));
            }
            if reason == "Forbidden" {
                out.push_str("\nhint: `kubectl auth can-i --list` shows what you may do");
            }
            out
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            format!("Unable to connect to the server: {kube_error}")
        }
        other => format!("error: {other}"),
    }
}
