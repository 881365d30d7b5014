//! ModuleCatalog: the platform's list of modules, their versions, and which version is
//! blessed and which live. Fleet files pin `nginx@blessed`; plans resolve the pin to the
//! version named here and store that version in the fleet objects, so a new blessing
//! reaches machines only through a plan for exactly that upgrade (trigger `Catalog`).
//! Cluster-scoped: only platform owners write it (the chart's tenant roles are bound
//! per namespace and cannot reach it).

// kube's derive takes one `printcolumn(...)` per column; clippy mistakes their
// repeated `type_ = "string"` arguments for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fleet::catalog::{Catalog, CatalogEntry, Lifecycle, Resolution};
use crate::fleet::schema::{MODULE_NAME, VERSION};

/// The most modules one catalog lists.
pub const MAX_MODULES: usize = 500;

/// Modules, their versions, and which is blessed and which live.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gitops.fleetgate.dev",
    version = "v1alpha1",
    kind = "ModuleCatalog",
    doc = "The platform's modules and their lifecycles: `name@blessed` and `name@live` in fleet files resolve to the versions named here. Cluster-scoped: only platform owners may write it; a new blessing starts a gated plan (trigger Catalog) in every repository that pins the lifecycle.",
    shortname = "fgcatalog",
    category = "fleetgate",
    printcolumn(
        name = "Modules",
        type_ = "integer",
        json_path = ".spec.modules.length()"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ModuleCatalogSpec {
    /// The modules this catalog lists, each by name once. A module may be listed by one ModuleCatalog only: a pin on a module two catalogs list is refused.
    #[schemars(length(min = 1, max = 500), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub modules: Vec<CatalogModule>,
}

/// One module's versions and lifecycles.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.blessed) || self.blessed in self.versions",
    "message": "blessed must be one of versions"
}, {
    "rule": "!has(self.live) || self.live in self.versions",
    "message": "live must be one of versions"
}]))]
pub struct CatalogModule {
    /// The module's name, as fleet files write it before the `@` (`nginx` of `nginx@blessed`).
    #[schemars(length(min = 1, max = 253), regex(pattern = MODULE_NAME))]
    pub name: String,
    /// The versions the platform offers, as fleet files write them after the `@` (never reinterpreted as semver).
    #[schemars(length(min = 1, max = 100), inner(length(min = 1, max = 128), regex(pattern = VERSION)))]
    pub versions: Vec<String>,
    /// The version `name@blessed` resolves to: the one the platform recommends. Changing it starts a gated plan in each repository that pins `@blessed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub blessed: Option<String>,
    /// The version `name@live` resolves to: the newest the platform runs anywhere. Changing it starts a gated plan in each repository that pins `@live`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub live: Option<String>,
}

/// What every catalog says, as the fleet core reads it; None when there is no catalog at
/// all (lifecycle pins then stay as written, as before catalogs existed).
pub fn merged<'a>(catalogs: impl IntoIterator<Item = &'a ModuleCatalog>) -> Option<Catalog> {
    let mut merged = Catalog::default();
    let mut any = false;
    for catalog in catalogs {
        any = true;
        let owner = kube::ResourceExt::name_any(catalog);
        for module in &catalog.spec.modules {
            merged.insert(
                &module.name,
                CatalogEntry {
                    catalog: owner.clone(),
                    blessed: module.blessed.clone(),
                    live: module.live.clone(),
                },
            );
        }
    }
    any.then_some(merged)
}

/// A lifecycle pin as a plan resolved it: `nginx@blessed = 1.27.0`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModulePin {
    /// The module's name.
    pub module: String,
    /// `blessed` or `live`.
    pub lifecycle: String,
    /// The version the pin resolved to, which the fleet objects carry; absent when no ModuleCatalog existed (the pin stayed as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl From<&Resolution> for ModulePin {
    fn from(r: &Resolution) -> Self {
        Self {
            module: r.module.clone(),
            lifecycle: r.lifecycle.as_str().to_owned(),
            version: r.version.clone(),
        }
    }
}

impl ModulePin {
    /// The core's resolution, or None for a lifecycle this controller does not know.
    pub fn resolution(&self) -> Option<Resolution> {
        let lifecycle = match self.lifecycle.as_str() {
            "blessed" => Lifecycle::Blessed,
            "live" => Lifecycle::Live,
            _ => return None,
        };
        Some(Resolution {
            module: self.module.clone(),
            lifecycle,
            version: self.version.clone(),
        })
    }
}

impl std::fmt::Display for ModulePin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.resolution() {
            Some(r) => r.fmt(f),
            None => write!(f, "{}@{}", self.module, self.lifecycle),
        }
    }
}
