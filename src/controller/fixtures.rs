//! Plans and runs the controller's unit tests share, built as sentences:
//! `plan_of(EXAMPLE_V2).against(EXAMPLE)`.

use crate::api::syncrun::{SyncRun, SyncRunSpec, Trigger};
use crate::fleet::{self, FleetObject, LiveObject, Plan, PlanOptions, ResolveOptions};

/// The example fleet, and its next revision.
pub const EXAMPLE: &[u8] = include_bytes!("../../examples/fleet.yaml");
pub const EXAMPLE_V2: &[u8] = include_bytes!("../../examples/fleet-v2.yaml");

/// The objects a fleet file declares.
pub fn desired(bytes: &[u8]) -> Vec<FleetObject> {
    fleet::desired_state("fleet.yaml", bytes, &ResolveOptions::default())
        .unwrap()
        .0
        .objects
}

/// The plan of the repository `fleet` that brings the cluster to `want`.
pub fn plan_of(want: &[u8]) -> PlanOf<'_> {
    PlanOf { want }
}

pub struct PlanOf<'a> {
    want: &'a [u8],
}

impl PlanOf<'_> {
    /// On an empty cluster.
    pub fn on_an_empty_cluster(self) -> Plan {
        self.planned(&[])
    }

    /// On a cluster holding what `live` declares, owned by the repository.
    pub fn against(self, live: &[u8]) -> Plan {
        let live: Vec<LiveObject> = desired(live)
            .iter()
            .map(|o| LiveObject::owned_by(o, "fleet"))
            .collect();
        self.planned(&live)
    }

    fn planned(self, live: &[LiveObject]) -> Plan {
        let options = PlanOptions {
            repository: "fleet",
            revision: "abc",
            prune: true,
            exclude: &[],
        };
        fleet::plan(&desired(self.want), live, &options).unwrap()
    }
}

/// A run named `name` of the repository `fleet`, as the controller creates it.
pub fn run_named(name: &str) -> SyncRun {
    let mut run = SyncRun::new(
        name,
        SyncRunSpec {
            repository: "fleet".into(),
            revision: "abc".into(),
            trigger: Trigger::Schedule,
        },
    );
    run.metadata.namespace = Some("team".into());
    run
}
