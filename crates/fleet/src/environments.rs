//! Environments: one fleet file serving several environments (staging, production),
//! each a small overlay over the shared declarations.
//!
//! ```yaml
//! environments:
//!   staging:
//!     account: acme-staging            # replaces the file's account
//!     templates:
//!       edge-cdn:                      # a declared template
//!         modules: [nginx@live]        # as a child template's: the same name replaces the pin
//!         metadata: {tier: staging}    # merged; null removes the key
//!     nodes:
//!       edge-tokyo-01:                 # a declared node
//!         instance_type: t3-small
//! ```
//!
//! A repository names its environment (`spec.environment`); without one the overlays are
//! ignored, so every v1 file without `environments:` reads exactly as before. The file
//! is valid only if the base and every environment are: an overlay that breaks the
//! fleet (a module listed twice, say) is an error at the overlay's line, prefixed with
//! its environment, whichever environment a repository plans.

use std::collections::HashMap;

use super::diag::{Diagnostics, Loc, did_you_mean};
use super::model::*;

/// Checks what the overlays name: environments are unique (the reader refused duplicate
/// keys already), and each overlay names a declared template or node.
pub fn check(fleet: &FleetFile, diags: &mut Diagnostics) {
    let templates: Vec<&str> = fleet
        .templates
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.value.as_str()))
        .collect();
    let nodes: Vec<&str> = fleet
        .nodes
        .iter()
        .filter_map(|n| n.hostname.as_ref().map(|h| h.value.as_str()))
        .collect();
    for env in &fleet.environments {
        let dangling = |kind: &str, name: &Spanned<String>, declared: &[&str]| {
            (!declared.contains(&name.value.as_str())).then(|| {
                let hint = did_you_mean(&name.value, declared.iter().copied());
                (
                    name.loc,
                    format!(
                        "environment `{}` overlays {kind} `{}`, which is not declared{hint}",
                        env.name.value, name.value
                    ),
                )
            })
        };
        let faults: Vec<(Loc, String)> = env
            .templates
            .iter()
            .filter_map(|t| dangling("template", &t.name, &templates))
            .chain(
                env.nodes
                    .iter()
                    .filter_map(|n| dangling("node", &n.hostname, &nodes)),
            )
            .collect();
        for (loc, message) in faults {
            diags.error(&fleet.file, loc, message);
        }
    }
}

/// Validates every environment's fleet (the base must be valid): each error an overlay
/// causes, located at the overlay and prefixed with its environment.
pub fn validate_each(fleet: &FleetFile, diags: &mut Diagnostics) {
    for env in &fleet.environments {
        let mut found = Diagnostics::default();
        super::validate::validate(&apply(fleet, env), &mut found);
        for e in found.errors() {
            let message = format!("in environment `{}`: {}", env.name.value, e.message);
            diags.error(&e.file, e.loc, message);
        }
    }
}

/// The fleet `environment` asks for: the base with that environment's overlay, or an
/// error naming the declared environments.
pub fn select(fleet: &FleetFile, environment: &str) -> Result<FleetFile, Diagnostics> {
    match fleet
        .environments
        .iter()
        .find(|e| e.name.value == environment)
    {
        Some(env) => Ok(apply(fleet, env)),
        None => {
            let declared: Vec<&str> = fleet
                .environments
                .iter()
                .map(|e| e.name.value.as_str())
                .collect();
            let listed = if declared.is_empty() {
                "it declares no `environments`".to_owned()
            } else {
                format!("it declares {}", declared.join(", "))
            };
            let hint = did_you_mean(environment, declared.iter().copied());
            let mut d = Diagnostics::default();
            d.error(
                &fleet.file,
                Loc::new(1, 1),
                format!(
                    "the repository's environment `{environment}` is not declared in this file: {listed}{hint}"
                ),
            );
            Err(d)
        }
    }
}

/// The base with `env`'s overlay applied; the result declares no environments.
pub fn apply(fleet: &FleetFile, env: &EnvironmentDecl) -> FleetFile {
    let mut out = FleetFile {
        environments: Vec::new(),
        ..fleet.clone()
    };
    if let Some(account) = &env.account {
        out.account = Some(account.clone());
    }
    let templates: HashMap<&str, &TemplateOverlay> = env
        .templates
        .iter()
        .map(|t| (t.name.value.as_str(), t))
        .collect();
    for t in &mut out.templates {
        let Some(overlay) = t
            .name
            .as_ref()
            .and_then(|n| templates.get(n.value.as_str()))
        else {
            continue;
        };
        replace(&mut t.node_platform, &overlay.node_platform);
        overlay_modules(&mut t.modules, &overlay.modules);
        overlay_metadata(&mut t.metadata, &overlay.metadata);
    }
    let nodes: HashMap<&str, &NodeOverlay> = env
        .nodes
        .iter()
        .map(|n| (n.hostname.value.as_str(), n))
        .collect();
    for n in &mut out.nodes {
        let Some(overlay) = n
            .hostname
            .as_ref()
            .and_then(|h| nodes.get(h.value.as_str()))
        else {
            continue;
        };
        replace(&mut n.region, &overlay.region);
        replace(&mut n.instance_type, &overlay.instance_type);
        if let Some(class) = overlay.lifecycle_class {
            n.lifecycle_class = class;
        }
        overlay_modules(&mut n.modules, &overlay.modules);
        overlay_metadata(&mut n.metadata, &overlay.metadata);
    }
    out
}

fn replace<T: Clone>(base: &mut Option<T>, overlay: &Option<T>) {
    if let Some(value) = overlay {
        *base = Some(value.clone());
    }
}

/// As a child template's modules: an overlay pin replaces the base's pin of the same
/// module in place, and other modules are appended. Modules an overlay lists twice stay
/// twice, for validation to report at the overlay.
fn overlay_modules(base: &mut Vec<Spanned<ModuleRef>>, overlay: &[Spanned<ModuleRef>]) {
    for m in overlay {
        match base.iter_mut().find(|b| b.value.name == m.value.name) {
            Some(existing) if !overlay_lists_twice(overlay, &m.value.name) => {
                *existing = m.clone();
            }
            _ => base.push(m.clone()),
        }
    }
}

fn overlay_lists_twice(overlay: &[Spanned<ModuleRef>], name: &str) -> bool {
    overlay.iter().filter(|m| m.value.name == name).count() > 1
}

/// Metadata merged: an overlay key replaces the base's value (a null removes it).
fn overlay_metadata(base: &mut Vec<MetadataEntry>, overlay: &[MetadataEntry]) {
    for (key, value) in overlay {
        match base.iter_mut().find(|(k, _)| k == key) {
            Some(existing) => existing.1 = value.clone(),
            None => base.push((key.clone(), value.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{ResolveOptions, desired_state, load};

    const BASE: &str = "version: 1\naccount: acme\n\
        templates:\n\
        - {name: base, node_platform: p, architecture: amd64, modules: [nginx@1.26.2, chrony@1.4.3], metadata: {tier: prod, team: edge}}\n\
        nodes:\n\
        - {hostname: n1, template: base, region: eu, instance_type: large, lifecycle_class: persistent}\n\
        - {hostname: n2, template: base, region: eu, instance_type: large, lifecycle_class: persistent}\n";

    fn with(environments: &str) -> String {
        format!("{BASE}environments:\n{environments}")
    }

    fn resolved(text: &str, environment: Option<&str>) -> Result<serde_json::Value, String> {
        let options = ResolveOptions {
            environment,
            ..Default::default()
        };
        let (desired, _) =
            desired_state("f.yaml", text.as_bytes(), &options).map_err(|d| d.to_string())?;
        let objects: Vec<serde_json::Value> = desired
            .objects
            .iter()
            .map(|o| serde_json::json!({"name": o.name, "spec": serde_json::to_value(&*o.spec).unwrap()}))
            .collect();
        Ok(serde_json::json!({"account": desired.account, "objects": objects}))
    }

    const STAGING: &str = "  staging:\n\
        \x20   account: acme-staging\n\
        \x20   templates:\n\
        \x20     base: {modules: [nginx@1.27.0, debug-tools@2.0], metadata: {tier: staging, team: ~}}\n\
        \x20   nodes:\n\
        \x20     n2: {instance_type: small}\n\
        \x20 production: ~\n";

    #[test]
    fn an_environment_overlays_its_values_and_the_base_is_unchanged_without_one() {
        let text = with(STAGING);
        let staging = resolved(&text, Some("staging")).unwrap();
        assert_eq!(staging["account"], "acme-staging");
        let n2 = &staging["objects"][2]["spec"];
        assert_eq!(n2["instanceType"], "small");
        assert_eq!(
            n2["modules"],
            serde_json::json!(["nginx@1.27.0", "chrony@1.4.3", "debug-tools@2.0"])
        );
        assert_eq!(n2["metadata"], serde_json::json!({"tier": "staging"}));
        assert_eq!(staging["objects"][1]["spec"]["instanceType"], "large");
        // Production overlays nothing: the same objects as the base.
        let production = resolved(&text, Some("production")).unwrap();
        assert_eq!(production, resolved(BASE, None).unwrap());
        assert_eq!(
            resolved(&text, None).unwrap(),
            resolved(BASE, None).unwrap()
        );
    }

    #[test]
    fn an_unknown_environment_or_overlay_is_a_located_error() {
        let text = with(STAGING);
        assert_eq!(
            resolved(&text, Some("stagin")).unwrap_err(),
            "f.yaml:1:1: error: the repository's environment `stagin` is not declared in this file: it declares staging, production; did you mean `staging`?\n"
        );
        assert_eq!(
            resolved(BASE, Some("staging")).unwrap_err(),
            "f.yaml:1:1: error: the repository's environment `staging` is not declared in this file: it declares no `environments`\n"
        );
        let dangling = with(
            "  staging:\n    templates:\n      bas: {modules: [a@1.0]}\n    nodes:\n      n3: {region: us}\n      N1: {region: us}\n    acount: x\n",
        );
        let errors = load("f.yaml", dangling.as_bytes()).unwrap_err().to_string();
        assert_eq!(
            errors.lines().collect::<Vec<_>>(),
            [
                "f.yaml:11:7: error: environment `staging` overlays template `bas`, which is not declared; did you mean `base`?",
                "f.yaml:13:7: error: environment `staging` overlays node `n3`, which is not declared; did you mean `n1`?",
                "f.yaml:14:7: error: `N1` in `nodes` of environment `staging` is not a valid name: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
                "f.yaml:15:5: error: unknown key `acount` in environment `staging`; did you mean `account`?",
            ]
        );
    }

    #[test]
    fn the_number_of_environments_is_bounded() {
        let many: String = (0..17).map(|i| format!("  e{i}: ~\n")).collect();
        let errors = load("f.yaml", with(&many).as_bytes())
            .unwrap_err()
            .to_string();
        assert_eq!(
            errors,
            "f.yaml:25:3: error: at most 16 environments may be declared\n"
        );
    }

    #[test]
    fn an_overlay_that_breaks_the_fleet_is_an_error_in_every_environments_file() {
        let broken = with(
            "  staging:\n    templates:\n      base: {modules: [x@1.0, x@2.0]}\n  production: {}\n",
        );
        let errors = load("f.yaml", broken.as_bytes()).unwrap_err().to_string();
        assert!(
            errors.contains("f.yaml:11:31: error: in environment `staging`: module `x` is listed twice in template `base` (first at line 11)"),
            "{errors}"
        );
    }
}
