//! The plan of a local fleet file against the live cluster, shared by `fleetgate plan`
//! and `kubectl fleet diff --local`.

use std::path::Path;
use std::process::ExitCode;

use kube::Client;
use kube::api::ListParams;

use crate::api::GitopsRepository;
use crate::controller::live;
use crate::fleet::{self, LiveObject, ObjectKind, Plan, PlanOptions, ResolveOptions, rollout};

pub const EXIT_CHANGES: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

/// 0 when the plan is empty, 1 when it changes something.
pub fn exit_code(plan: &Plan) -> ExitCode {
    if plan.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHANGES)
    }
}

/// Plans `path` against what namespace `ns` holds, as repository `repository` (whose
/// account guard and prune setting apply when it exists). Problems with the file are
/// printed and become `Err(exit code 2)`.
pub async fn plan_file(
    client: &Client,
    ns: &str,
    repository: &str,
    repo: Option<&GitopsRepository>,
    path: &Path,
) -> anyhow::Result<Result<Plan, ExitCode>> {
    let name = super::display_name(path);
    let bytes = match super::read_file(path) {
        Ok(b) => b,
        Err(message) => {
            eprintln!("{message}");
            return Ok(Err(ExitCode::from(EXIT_ERROR)));
        }
    };
    // Lifecycle pins resolve as the controller resolves them, against the cluster's
    // catalogs; without leave to read them they stay as written, and that is said.
    let catalog = match fleet::catalog::mentions_lifecycle_pins(&bytes) {
        true => cluster_catalog(client).await,
        false => None,
    };
    let options = ResolveOptions {
        expected_account: repo.and_then(|r| r.spec.account.as_deref()),
        environment: repo.and_then(|r| r.spec.environment.as_deref()),
        catalog: catalog.as_ref(),
        ..Default::default()
    };
    let desired = match fleet::desired_state(&name, &bytes, &options) {
        Ok((desired, warnings)) => {
            eprint!("{warnings}");
            desired
        }
        Err(diags) => {
            eprint!("{diags}");
            return Ok(Err(ExitCode::from(EXIT_ERROR)));
        }
    };
    let live_objects = live_objects(client, ns).await?;
    let options = PlanOptions {
        repository,
        revision: "local",
        prune: repo.is_none_or(|r| r.spec.prune),
        exclude: &[],
    };
    // Staged as the controller stages it, with the repository's spec.rollout: the same
    // waves (the id differs only by the revision, `local` here).
    let policy = match repo.map(|r| r.spec.rollout.policy()).transpose() {
        Ok(policy) => policy.unwrap_or_default(),
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(Err(ExitCode::from(EXIT_ERROR)));
        }
    };
    match fleet::plan(&desired.objects, &live_objects, &options) {
        Ok(mut plan) => match rollout::stage(
            &mut plan,
            &desired.objects,
            &live_objects,
            repository,
            &policy,
        ) {
            Ok(()) => Ok(Ok(plan)),
            Err(e) => {
                eprintln!("error: {e}");
                Ok(Err(ExitCode::from(EXIT_ERROR)))
            }
        },
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            Ok(Err(ExitCode::from(EXIT_ERROR)))
        }
    }
}

/// The fleet objects namespace `ns` holds, as the planner sees them.
pub async fn live_objects(client: &Client, ns: &str) -> kube::Result<Vec<LiveObject>> {
    let mut out: Vec<LiveObject> = Vec::new();
    for kind in ObjectKind::ALL {
        for obj in live::api(client, ns, kind)
            .list(&ListParams::default())
            .await?
            .items
        {
            out.extend(live::to_live(&obj));
        }
    }
    Ok(out)
}

/// What the cluster's ModuleCatalogs say; None (with a note) when they cannot be read.
async fn cluster_catalog(client: &Client) -> Option<fleet::catalog::Catalog> {
    let api = kube::Api::<crate::api::ModuleCatalog>::all(client.clone());
    match api.list(&Default::default()).await {
        Ok(list) => crate::api::catalog::merged(list.items.iter()),
        Err(e) => {
            eprintln!(
                "note: the ModuleCatalogs cannot be read ({e}); lifecycle pins stay as written, unlike the controller's plan"
            );
            None
        }
    }
}
