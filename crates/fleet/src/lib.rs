//! The fleet core: a pure pipeline from fleet.yaml bytes to a plan.
//!
//! parse → validate → resolve → plan → render. Nothing here knows of Kubernetes or
//! git: the controllers, the CLI and the tests all drive these same steps.

pub mod bounds;
pub mod catalog;
pub mod diag;
pub mod drift;
pub mod environments;
pub mod health;
pub mod model;
pub mod object;
pub mod parse;
pub mod plan;
pub mod render;
pub mod resolve;
pub mod rollout;
pub mod schema;
pub mod slices;
pub mod spec_diff;
pub mod synth;
pub mod validate;
pub mod waves;
pub mod yaml;

pub use bounds::Limits;
pub use diag::{Diagnostic, Diagnostics, Loc, Severity};
pub use model::FleetFile;
pub use object::{FleetObject, ObjectKind, ObjectRef};
pub use plan::{LiveObject, Operation, Plan, PlanError, PlanOptions, plan};
pub use resolve::{DesiredState, ResolveOptions, resolve};

/// Parses and validates a fleet file. On success returns the fleet and its warnings;
/// otherwise every error and warning, in source order.
pub fn load(file: &str, bytes: &[u8]) -> Result<(FleetFile, Diagnostics), Diagnostics> {
    let (fleet, mut diags) = parse::parse(file, bytes);
    if let Some(fleet) = &fleet {
        validate::validate(fleet, &mut diags);
        environments::check(fleet, &mut diags);
        // Each environment's fleet is judged once the base holds: its errors are then
        // the overlay's own.
        if !diags.has_errors() {
            environments::validate_each(fleet, &mut diags);
        }
    }
    diags.sort();
    match fleet {
        Some(fleet) if !diags.has_errors() => Ok((fleet, diags)),
        _ => Err(diags),
    }
}

/// Parses, validates and resolves a fleet file into its desired objects.
pub fn desired_state(
    file: &str,
    bytes: &[u8],
    options: &ResolveOptions,
) -> Result<(DesiredState, Diagnostics), Diagnostics> {
    let (fleet, warnings) = load(file, bytes)?;
    let fleet = match options.environment {
        Some(environment) => environments::select(&fleet, environment)?,
        None => fleet,
    };
    let desired = resolve(&fleet, options)?;
    Ok((desired, warnings))
}
