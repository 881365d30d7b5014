//! Where a repository's plans are reported on its git host: commit statuses and plan
//! previews on pull requests.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::secret_ref::SecretRef;

/// The git host's API, for commit statuses and pull-request plan previews.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForgeSpec {
    /// Which API the host speaks: `Gitea` (also Forgejo), `GitHub` or `GitLab`.
    pub provider: ForgeProvider,
    /// The API's base URL: `https://gitea.example.com` (Gitea, `/api/v1` is added), `https://api.github.com` (GitHub) or `https://gitlab.com` (GitLab, `/api/v4` is added). `http://` only where the controller allows http URLs.
    #[schemars(length(min = 1, max = 2048))]
    pub api_url: String,
    /// The repository on the host, as `owner/name` (GitLab: the project's full path).
    #[schemars(length(min = 3, max = 512))]
    pub repository: String,
    /// Secret in this namespace whose `token` authenticates to the API (it needs to write commit statuses and, for previews, comments).
    pub secret_ref: SecretRef,
    /// The commit status's context; default `fleetgate/<cluster>/<namespace>/<name>` (the cluster from the controller's `--cluster-name`), so clusters and repositories sharing one git repository never overwrite each other's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub context: Option<String>,
    /// Post each open pull request's plan (against the tracked branch) as one comment, edited in place on each push. Previews never apply anything and create no SyncRun.
    #[serde(default)]
    pub pull_request_previews: bool,
}

/// The git host's API.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ForgeProvider {
    Gitea,
    GitHub,
    GitLab,
}
