//! Module lifecycle pins: `name@blessed` and `name@live` resolved to the concrete
//! versions a platform's module catalog names, so that a plan (and the objects it
//! writes) says exactly which version each machine gets, and a catalog that blesses a
//! new version changes nothing until a plan for exactly that upgrade is approved.
//!
//! The catalog itself is read elsewhere (a cluster-scoped kind platform owners write);
//! here it is plain data, and resolution is a pure function over the fleet's module
//! references, with errors located at the reference that cannot be resolved.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::diag::{Diagnostics, Loc, did_you_mean};
use super::model::{FleetFile, ModuleRef, Pin, Spanned};
use super::object::{FleetObject, Modules, Spec};

/// The code of every error a pin the catalog cannot resolve gives (also the SyncRun's
/// reason): fixed by the catalog as much as by the fleet file.
pub const UNRESOLVED: &str = "ModuleUnresolved";

/// A lifecycle pin: which of a module's versions the catalog names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    Blessed,
    Live,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Blessed => "blessed",
            Lifecycle::Live => "live",
        }
    }

    fn of(pin: &Pin) -> Option<Self> {
        match pin {
            Pin::Blessed => Some(Lifecycle::Blessed),
            Pin::Live => Some(Lifecycle::Live),
            Pin::Unpinned | Pin::Version(_) => None,
        }
    }
}

/// What a catalog says of one module: its versions, and which is blessed and live.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The catalog (object) that lists the module, named in errors.
    pub catalog: String,
    pub blessed: Option<String>,
    pub live: Option<String>,
}

impl CatalogEntry {
    fn version(&self, lifecycle: Lifecycle) -> Option<&str> {
        match lifecycle {
            Lifecycle::Blessed => self.blessed.as_deref(),
            Lifecycle::Live => self.live.as_deref(),
        }
    }
}

/// Every module the platform's catalogs list. A module two catalogs list is ambiguous:
/// a pin on it is refused rather than resolved by whichever catalog came first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    modules: BTreeMap<String, Vec<CatalogEntry>>,
}

impl Catalog {
    /// Adds what one catalog says of `module`.
    pub fn insert(&mut self, module: &str, entry: CatalogEntry) {
        self.modules
            .entry(module.to_owned())
            .or_default()
            .push(entry);
    }

    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// `sha256:<hex>` of what the catalogs say, whatever order they were read in: the
    /// same catalogs give the same digest.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for (module, entries) in &self.modules {
            let mut entries: Vec<&CatalogEntry> = entries.iter().collect();
            entries.sort_by(|a, b| a.catalog.cmp(&b.catalog));
            for e in entries {
                // NUL never occurs in a name or a version: the fields cannot run together.
                for field in [module, &e.catalog] {
                    hash.update(field.as_bytes());
                    hash.update([0]);
                }
                for field in [&e.blessed, &e.live] {
                    hash.update(field.as_deref().unwrap_or("\u{1}").as_bytes());
                    hash.update([0]);
                }
                hash.update(b"\n");
            }
        }
        let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// The version `lifecycle` names for `module`, or why there is none.
    pub fn version(&self, module: &str, lifecycle: Lifecycle) -> Result<&str, Unresolved> {
        let entries = self.modules.get(module).ok_or(Unresolved::UnknownModule)?;
        match entries.as_slice() {
            [entry] => entry
                .version(lifecycle)
                .ok_or_else(|| Unresolved::NoVersion(entry.catalog.clone())),
            several => Unresolved::listed_twice(several),
        }
    }
}

/// Why a lifecycle pin has no version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    UnknownModule,
    /// The catalog that lists the module names no version for the lifecycle.
    NoVersion(String),
    /// Several catalogs list the module.
    Ambiguous(Vec<String>),
}

impl Unresolved {
    fn listed_twice<T>(entries: &[CatalogEntry]) -> Result<T, Self> {
        let mut names: Vec<String> = entries.iter().map(|e| e.catalog.clone()).collect();
        names.sort();
        Err(Unresolved::Ambiguous(names))
    }
}

/// A lifecycle pin as a plan resolved it: `nginx@blessed = 1.27.0`. `version` is None
/// when no catalog was there to resolve it (the pin stays as written).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Resolution {
    pub module: String,
    pub lifecycle: Lifecycle,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pin = format!("{}@{}", self.module, self.lifecycle.as_str());
        match &self.version {
            Some(version) => write!(f, "{pin} = {version}"),
            None => write!(f, "{pin} (not resolved: no module catalog)"),
        }
    }
}

/// Every lifecycle pin the fleet declares, resolved against `catalog` (None: no catalog
/// exists, and the pins stay as written). Errors are located at each reference that
/// cannot be resolved; on success the pins in `objects` are replaced by the versions
/// and the resolutions are returned, sorted and without repeats.
pub fn pin(
    fleet: &FleetFile,
    objects: &mut [FleetObject],
    catalog: Option<&Catalog>,
) -> Result<Vec<Resolution>, Diagnostics> {
    let mut resolved: BTreeMap<(String, Lifecycle), Option<String>> = BTreeMap::new();
    let mut diags = Diagnostics::default();
    for (module, loc) in lifecycle_pins(fleet) {
        let Some(lifecycle) = Lifecycle::of(&module.pin) else {
            continue;
        };
        let key = (module.name.clone(), lifecycle);
        if resolved.contains_key(&key) {
            continue;
        }
        let Some(catalog) = catalog else {
            resolved.insert(key, None);
            continue;
        };
        match catalog.version(&module.name, lifecycle) {
            Ok(version) => {
                resolved.insert(key, Some(version.to_owned()));
            }
            Err(why) => {
                let message = refusal(catalog, module, lifecycle, &why);
                diags.coded(&fleet.file, loc, UNRESOLVED, message);
            }
        }
    }
    if diags.has_errors() {
        diags.sort();
        return Err(diags);
    }
    if catalog.is_some() {
        let versions: HashMap<String, String> = resolved
            .iter()
            .filter_map(|((name, lifecycle), version)| {
                let version = version.as_ref()?;
                Some((
                    format!("{name}@{}", lifecycle.as_str()),
                    format!("{name}@{version}"),
                ))
            })
            .collect();
        replace_pins(objects, &versions);
    }
    Ok(resolved
        .into_iter()
        .map(|((module, lifecycle), version)| Resolution {
            module,
            lifecycle,
            version,
        })
        .collect())
}

/// Whether a fleet file may hold a lifecycle pin, read from its bytes before parsing: a
/// file without one needs no catalog (a mention in a comment only makes the caller wait
/// for the catalog it did not need).
pub fn mentions_lifecycle_pins(bytes: &[u8]) -> bool {
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    // An `@` written as a YAML escape in a double-quoted scalar counts too.
    has(b"@blessed") || has(b"@live") || has(b"\\u0040") || has(b"\\x40") || has(b"\\U00000040")
}

/// Every module reference the fleet writes, in source order.
fn lifecycle_pins(fleet: &FleetFile) -> impl Iterator<Item = (&ModuleRef, Loc)> {
    let templates = fleet.templates.iter().flat_map(|t| t.modules.iter());
    let nodes = fleet.nodes.iter().flat_map(|n| n.modules.iter());
    templates
        .chain(nodes)
        .map(|Spanned { value, loc }| (value, *loc))
}

fn refusal(
    catalog: &Catalog,
    module: &ModuleRef,
    lifecycle: Lifecycle,
    why: &Unresolved,
) -> String {
    let pin = format!("{}@{}", module.name, lifecycle.as_str());
    match why {
        Unresolved::UnknownModule => {
            let hint = did_you_mean(&module.name, catalog.modules.keys().map(String::as_str));
            format!(
                "module `{pin}`: no ModuleCatalog lists `{}`; pin a version (`{}@1.2.3`) or ask the platform owners to list it{hint}",
                module.name, module.name
            )
        }
        Unresolved::NoVersion(owner) => format!(
            "module `{pin}`: ModuleCatalog `{owner}` names no {} version of `{}`",
            lifecycle.as_str(),
            module.name
        ),
        Unresolved::Ambiguous(owners) => format!(
            "module `{pin}`: module `{}` is listed by several ModuleCatalogs ({}); a module may be listed by one only",
            module.name,
            owners.join(", ")
        ),
    }
}

/// Replaces each pin `versions` maps (`nginx@blessed` → `nginx@1.27.0`) in the objects'
/// module lists. Nodes that share their template's list keep sharing one rewritten list.
fn replace_pins(objects: &mut [FleetObject], versions: &HashMap<String, String>) {
    if versions.is_empty() {
        return;
    }
    let mut rewritten: HashMap<*const [String], Modules> = HashMap::new();
    let mut rewrite = |modules: &Modules| -> Option<Modules> {
        let key = Arc::as_ptr(modules);
        if let Some(done) = rewritten.get(&key) {
            return Some(Arc::clone(done));
        }
        if !modules.iter().any(|m| versions.contains_key(m)) {
            return None;
        }
        let new: Modules = modules
            .iter()
            .map(|m| versions.get(m).unwrap_or(m).clone())
            .collect();
        rewritten.insert(key, Arc::clone(&new));
        Some(new)
    };
    for object in objects {
        let modules = match &*object.spec {
            Spec::FleetTemplate(t) => &t.modules,
            Spec::FleetNode(n) => &n.modules,
            _ => continue,
        };
        let Some(new) = rewrite(modules) else {
            continue;
        };
        match Arc::make_mut(&mut object.spec) {
            Spec::FleetTemplate(t) => t.modules = new,
            Spec::FleetNode(n) => n.modules = new,
            _ => {}
        }
    }
}

/// The modules whose resolution differs between two sets of resolutions (`before` as a
/// run recorded them, `now` as the catalog resolves the same pins today): what a
/// catalog change would upgrade. A pin the catalog cannot resolve now (its module
/// removed, listed twice, or no catalog left) is no upgrade: the next plan of a new
/// revision reports it, and nothing is re-planned to go back to the bare pin.
pub fn changed(
    before: &[Resolution],
    catalog: Option<&Catalog>,
) -> Vec<(Resolution, Option<String>)> {
    let mut seen = BTreeSet::new();
    before
        .iter()
        .filter(|r| seen.insert((r.module.clone(), r.lifecycle)))
        .filter_map(|r| {
            let now = catalog
                .and_then(|c| c.version(&r.module, r.lifecycle).ok())
                .map(str::to_owned);
            (now.is_some() && now != r.version).then(|| (r.clone(), now))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ResolveOptions, desired_state};

    const FLEET: &str = "version: 1\naccount: a\n\
        templates:\n\
        - {name: base, node_platform: p, architecture: amd64, modules: [nginx@blessed, chrony@1.4.3]}\n\
        - {name: edge, extends: base, modules: [agent@live]}\n\
        nodes:\n\
        - {hostname: n1, template: edge, region: r, instance_type: i, lifecycle_class: ephemeral}\n\
        - {hostname: n2, template: edge, region: r, instance_type: i, lifecycle_class: ephemeral}\n\
        - {hostname: n3, template: base, region: r, instance_type: i, lifecycle_class: ephemeral, modules: [nginx@live]}\n";

    fn entry(catalog: &str, blessed: Option<&str>, live: Option<&str>) -> CatalogEntry {
        CatalogEntry {
            catalog: catalog.into(),
            blessed: blessed.map(Into::into),
            live: live.map(Into::into),
        }
    }

    fn platform() -> Catalog {
        let mut c = Catalog::default();
        c.insert("nginx", entry("platform", Some("1.26.2"), Some("1.27.0")));
        c.insert("agent", entry("platform", Some("2.0"), Some("2.1")));
        c
    }

    fn pinned(catalog: Option<&Catalog>) -> Result<(Vec<FleetObject>, Vec<Resolution>), String> {
        let options = ResolveOptions {
            catalog,
            ..Default::default()
        };
        let (desired, _) =
            desired_state("f.yaml", FLEET.as_bytes(), &options).map_err(|d| d.to_string())?;
        Ok((desired.objects, desired.modules))
    }

    fn modules_of(objects: &[FleetObject], name: &str) -> Modules {
        let object = objects.iter().find(|o| o.name == name).unwrap();
        match &*object.spec {
            Spec::FleetNode(n) => n.modules.clone(),
            Spec::FleetTemplate(t) => t.modules.clone(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn lifecycle_pins_become_the_catalogs_versions_in_every_object() {
        let (objects, resolutions) = pinned(Some(&platform())).unwrap();
        assert_eq!(
            &*modules_of(&objects, "n1"),
            ["nginx@1.26.2", "chrony@1.4.3", "agent@2.1"]
        );
        assert_eq!(&*modules_of(&objects, "edge"), &*modules_of(&objects, "n1"));
        assert_eq!(
            &*modules_of(&objects, "n3"),
            ["nginx@1.27.0", "chrony@1.4.3"]
        );
        let shown: Vec<String> = resolutions.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "agent@live = 2.1",
                "nginx@blessed = 1.26.2",
                "nginx@live = 1.27.0"
            ]
        );
        // Nodes that shared their template's list still share the rewritten one.
        assert!(Arc::ptr_eq(
            &modules_of(&objects, "n1"),
            &modules_of(&objects, "n2")
        ));
    }

    #[test]
    fn without_a_catalog_pins_stay_as_written_and_say_so() {
        let (objects, resolutions) = pinned(None).unwrap();
        assert_eq!(&*modules_of(&objects, "n3"), ["nginx@live", "chrony@1.4.3"]);
        assert!(resolutions.iter().all(|r| r.version.is_none()));
        assert_eq!(
            resolutions[0].to_string(),
            "agent@live (not resolved: no module catalog)"
        );
    }

    #[test]
    fn an_unknown_module_or_lifecycle_is_a_located_error() {
        let mut catalog = Catalog::default();
        catalog.insert("nginx", entry("platform", Some("1.26.2"), None));
        catalog.insert("agents", entry("platform", Some("2.0"), Some("2.1")));
        let refused = pinned(Some(&catalog)).unwrap_err();
        assert_eq!(
            refused.lines().collect::<Vec<_>>(),
            [
                "f.yaml:5:41: error: module `agent@live`: no ModuleCatalog lists `agent`; pin a version (`agent@1.2.3`) or ask the platform owners to list it; did you mean `agents`?",
                "f.yaml:9:101: error: module `nginx@live`: ModuleCatalog `platform` names no live version of `nginx`",
            ]
        );
        // A module two catalogs list resolves by neither.
        catalog.insert("nginx", entry("team-x", Some("1.27.0"), None));
        let refused = pinned(Some(&catalog)).unwrap_err();
        assert!(
            refused.starts_with("f.yaml:4:65: error: module `nginx@blessed`: module `nginx` is listed by several ModuleCatalogs (platform, team-x); a module may be listed by one only"),
            "{refused}"
        );
    }

    #[test]
    fn the_digest_is_the_catalogs_content_in_any_order() {
        let mut a = Catalog::default();
        a.insert("nginx", entry("platform", Some("1.26.2"), None));
        a.insert("nginx", entry("team-x", None, Some("1.27.0")));
        let mut b = Catalog::default();
        b.insert("nginx", entry("team-x", None, Some("1.27.0")));
        b.insert("nginx", entry("platform", Some("1.26.2"), None));
        assert_eq!(a.digest(), b.digest());
        let mut c = Catalog::default();
        c.insert("nginx", entry("platform", None, Some("1.26.2")));
        c.insert("nginx", entry("team-x", None, Some("1.27.0")));
        assert_ne!(a.digest(), c.digest(), "blessed and live are told apart");
    }

    #[test]
    fn a_blessing_changes_only_the_pins_it_moves() {
        let (_, before) = pinned(Some(&platform())).unwrap();
        assert!(changed(&before, Some(&platform())).is_empty());
        let mut blessed = Catalog::default();
        blessed.insert("nginx", entry("platform", Some("1.27.0"), Some("1.27.0")));
        blessed.insert("agent", entry("platform", Some("2.0"), Some("2.1")));
        let moved = changed(&before, Some(&blessed));
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].0.to_string(), "nginx@blessed = 1.26.2");
        assert_eq!(moved[0].1.as_deref(), Some("1.27.0"));
        // A catalog that appears where there was none resolves every pin afresh.
        let (_, unresolved) = pinned(None).unwrap();
        assert_eq!(changed(&unresolved, Some(&platform())).len(), 3);
        assert!(changed(&unresolved, None).is_empty());
        // Catalogs deleted, or the module gone from them: nothing to upgrade to.
        assert!(changed(&before, None).is_empty());
        assert!(changed(&before, Some(&Catalog::default())).is_empty());
    }

    #[test]
    fn lifecycle_pins_are_noticed_in_the_raw_file() {
        assert!(mentions_lifecycle_pins(b"modules: [nginx@blessed]"));
        assert!(mentions_lifecycle_pins(b"modules: [a@live]"));
        assert!(mentions_lifecycle_pins(br#"modules: ["a\u0040live"]"#));
        assert!(!mentions_lifecycle_pins(
            FLEET
                .replace("@blessed", "@1")
                .replace("@live", "@2")
                .as_bytes()
        ));
    }
}
