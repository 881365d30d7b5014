//! Promotion between environments: a GitopsRepository that names an upstream
//! (`spec.promotion.from`) plans only revisions the upstream applied and held converged
//! and drift-free for `requireHealthyFor`. Reading another namespace's repository needs a
//! PromotionGrant there, in the style of Gateway API's ReferenceGrant: no tenant can
//! promote from, or observe, a namespace that did not allow it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `spec.promotion` of a GitopsRepository.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    /// The upstream GitopsRepository (staging, for production). It must track the same git repository: its applied revisions are what this one may plan.
    pub from: UpstreamRef,
    /// How long the upstream must have held a revision applied, converged and drift-free before it plans here (`30m`, `1h`, `2h30m`).
    #[serde(default = "default_hold")]
    #[schemars(length(min = 2, max = 32), regex(pattern = r"^([0-9]{1,5}(s|m|h))+$"))]
    pub require_healthy_for: String,
}

fn default_hold() -> String {
    "1h".into()
}

/// The upstream repository: in this namespace unless `namespace` names another, which then needs a PromotionGrant there.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamRef {
    /// The upstream's namespace; default: this repository's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
    /// The upstream GitopsRepository's name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// What the upstream says of promotion, on the downstream repository's status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionStatus {
    /// The upstream, `namespace/name`.
    pub from: String,
    /// Promoted (a revision is eligible and planned here), Waiting (the newest upstream revision has not held long enough), NothingEligible (the upstream applied nothing that held), NotGranted (the upstream is not there or not granted to this namespace; the two are not told apart), or SourceMismatch (the upstream tracks another source).
    pub reason: String,
    /// The newest revision eligible here: the one this repository plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// In words: `waiting for staging/fleet: revision 3f9a2c1d7e0b applied 20m ago, healthy 20m of 1h`.
    pub message: String,
}

/// Allows repositories of other namespaces to promote from repositories of this one (and so to read their applied revisions and health). Without one, a cross-namespace `spec.promotion.from` is refused, the same way whether or not the upstream exists.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "gitops.fleetgate.dev",
    version = "v1alpha1",
    kind = "PromotionGrant",
    namespaced,
    doc = "Lets GitopsRepositories in the namespaces listed under `from` promote from the GitopsRepositories of this namespace named under `to` (all of them when `to` is empty), as Gateway API's ReferenceGrant lets routes reference a Service in another namespace.",
    shortname = "fggrant",
    category = "fleetgate"
)]
#[serde(rename_all = "camelCase")]
pub struct PromotionGrantSpec {
    /// The namespaces whose repositories may promote from here.
    #[schemars(length(min = 1, max = 16))]
    pub from: Vec<GrantFrom>,
    /// The repositories of this namespace they may promote from; empty: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub to: Vec<GrantTo>,
}

/// A namespace allowed to promote.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantFrom {
    /// The downstream namespace.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
}

/// A repository of this namespace that may be promoted from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantTo {
    /// The upstream GitopsRepository's name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

impl PromotionGrantSpec {
    /// Whether it lets a repository of `downstream` promote from `upstream` here.
    pub fn allows(&self, downstream: &str, upstream: &str) -> bool {
        self.from.iter().any(|f| f.namespace == downstream)
            && (self.to.is_empty() || self.to.iter().any(|t| t.name == upstream))
    }
}
