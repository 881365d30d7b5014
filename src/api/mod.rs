//! The custom resources: GitopsRepository, SyncRun and NotificationTarget (group `gitops.fleetgate.dev`) and
//! the five fleet kinds (group `fleet.fleetgate.dev`). Doc comments on fields become
//! `kubectl explain` text; `fleetgate crds` prints what [`crds`] returns.

pub mod catalog;
pub mod conventions;
pub mod fleet;
pub mod forge;
pub mod governance;
pub mod notification;
pub mod pause;
pub mod promotion;
pub mod provenance;
pub mod reference;
pub mod repository;
pub mod rollout;
pub mod secret_ref;
pub mod slices;
pub mod syncrun;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResourceExt;

pub use catalog::ModuleCatalog;
pub use fleet::{FleetNode, FleetTemplate, SdwanNetwork, SdwanPeer, VirtualIp};
pub use governance::GovernancePolicy;
pub use notification::NotificationTarget;
pub use promotion::PromotionGrant;
pub use repository::GitopsRepository;
pub use syncrun::SyncRun;

/// The group of GitopsRepository and SyncRun, and the prefix of fleetgate's annotations.
pub const GITOPS_GROUP: &str = "gitops.fleetgate.dev";
/// Every fleet object carries the name of the repository that declared it.
pub const REPOSITORY_LABEL: &str = "gitops.fleetgate.dev/repository";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "fleetgate";
/// Field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "fleetgate";

/// Writes `status` as all that fleetgate owns in the status of `name` (server-side apply,
/// forced: the controller is the only writer of its kinds' status) and returns the
/// object as written.
pub async fn apply_status<K>(
    api: &kube::Api<K>,
    name: &str,
    status: &impl serde::Serialize,
) -> kube::Result<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &kube::api::PatchParams::apply(FIELD_MANAGER).force(),
        &kube::api::Patch::Apply(&patch),
    )
    .await
}

/// Every annotation of the GitOps API: those users set, those the admission policies
/// stamp, and those the controller sets (marked so). The provider registration Lease's
/// label and annotations belong to the provider contract: `fleet::status::registration`.
pub mod annotations {
    /// On a GitopsRepository: any new value asks for a sync now.
    pub const SYNC_REQUESTED_AT: &str = "gitops.fleetgate.dev/sync-requested-at";
    /// On a GitopsRepository: set by the webhook receiver on a verified push; any new
    /// value makes the controller look at git now. Unlike sync-requested-at it never
    /// re-plans a revision already planned.
    pub const PUSH_RECEIVED_AT: &str = "gitops.fleetgate.dev/push-received-at";
    /// On a SyncRun: the planId being approved.
    pub const APPROVE: &str = "gitops.fleetgate.dev/approve";
    /// On a SyncRun: why the plan is rejected.
    pub const REJECT: &str = "gitops.fleetgate.dev/reject";
    /// On a SyncRun: `kind/name,...` actions to leave out (with their dependents).
    pub const EXCLUDE: &str = "gitops.fleetgate.dev/exclude";
    /// On a SyncRun: the authenticated user who set the approve annotation, stamped by
    /// the admission policy the chart installs.
    pub const APPROVED_BY: &str = "gitops.fleetgate.dev/approved-by";
    /// On a SyncRun: the groups of the user who set the approve annotation,
    /// comma-separated, stamped by the admission policy the chart installs.
    pub const APPROVED_BY_GROUPS: &str = "gitops.fleetgate.dev/approved-by-groups";
    /// On a GitopsRepository: the user who set sync-requested-at, stamped at admission;
    /// copied to the SyncRun it starts as `requested-by`.
    pub const SYNC_REQUESTED_BY: &str = "gitops.fleetgate.dev/sync-requested-by";
    /// On a SyncRun: who requested it (copied from sync-requested-by when the run is created).
    pub const REQUESTED_BY: &str = "gitops.fleetgate.dev/requested-by";
    /// On a SyncRun, set by an approver: apply no earlier than this RFC 3339 time.
    pub const APPLY_AFTER: &str = "gitops.fleetgate.dev/apply-after";
    /// On a SyncRun, set by an approver: apply now despite the change windows, with
    /// this reason; honoured once the plan has the policy's overrideApprovals.
    pub const OVERRIDE_WINDOW: &str = "gitops.fleetgate.dev/override-window";
    /// On a GitopsRepository, set by an approver: the applied SyncRun whose desired state
    /// to return to; each new value starts one Rollback run.
    pub const ROLLBACK_TO: &str = "gitops.fleetgate.dev/rollback-to";
    /// On a Rollback SyncRun (set by the controller): the run it returns to.
    pub const ROLLBACK_OF: &str = "gitops.fleetgate.dev/rollback-of";
    /// On a Rollback SyncRun (set by the controller): the revision rolled back from,
    /// which is not applied by itself again until a new revision.
    pub const ROLLBACK_FROM: &str = "gitops.fleetgate.dev/rollback-from";
    /// On a GitopsRepository, stamped at admission: the user with the approve verb who
    /// last set or approved the repository's source (url, ref, path), or empty when a
    /// user without it changed the source. Plans a policy approves by itself must come
    /// from a source an approver stands behind.
    pub const SOURCE_APPROVED_BY: &str = "gitops.fleetgate.dev/source-approved-by";
    /// On a Drift SyncRun (set by the controller): the applied run whose stored desired
    /// state it restores, the baseline drift was measured against.
    pub const RESTORES: &str = "gitops.fleetgate.dev/restores";
    /// On a fleet object: `"true"` makes a plan that would delete it fail.
    pub const PREVENT_DESTROY: &str = "gitops.fleetgate.dev/prevent-destroy";
    /// On a SyncRun (set by the controller): its place in the repository's sequence of
    /// runs.
    pub const SEQUENCE: &str = "gitops.fleetgate.dev/sequence";
    /// On a SyncRun (set by the controller): the sync-requested-at value it was
    /// started for.
    pub const SYNC_REQUEST: &str = "gitops.fleetgate.dev/sync-request";
    /// On a Drift SyncRun (set by the controller): the digest of the drift it restores.
    pub const DRIFT: &str = "gitops.fleetgate.dev/drift";
    /// On a SyncRun the module catalog started (trigger Catalog): the digest of the
    /// catalogs it was started for, so that the same catalog never starts a second one.
    pub const CATALOG: &str = "gitops.fleetgate.dev/catalog";
    /// On a SyncRun or GitopsRepository (set by the controller): the keys of the
    /// occurrences already notified.
    pub const NOTIFIED: &str = "gitops.fleetgate.dev/notified";
}

/// Labels and finalizers the controller sets (REPOSITORY_LABEL and MANAGED_BY_LABEL
/// above are on every fleet object).
pub mod labels {
    /// On a ConfigMap of the plan store: the SyncRun whose data it holds.
    pub const SYNCRUN: &str = "gitops.fleetgate.dev/syncrun";
    /// On a ConfigMap of the plan store: what it holds, `plan` or `desired`.
    pub const CONTENT: &str = "gitops.fleetgate.dev/content";
    /// On a GitopsRepository whose deletionPolicy is Delete.
    pub const DELETE_FINALIZER: &str = "gitops.fleetgate.dev/delete-managed-objects";
    /// On a Secret of trusted signing keys (`spec.verify.secretRef`), value `"true"`:
    /// the controller reads no other Secret as trusted keys, and with the chart's
    /// admission policies only an approver may create, change or delete one.
    pub const TRUSTED_KEYS: &str = "gitops.fleetgate.dev/trusted-keys";
}

/// All CRDs, in the order they are installed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [
        GitopsRepository::crd(),
        SyncRun::crd(),
        NotificationTarget::crd(),
        GovernancePolicy::crd(),
        ModuleCatalog::crd(),
        PromotionGrant::crd(),
        FleetTemplate::crd(),
        FleetNode::crd(),
        SdwanNetwork::crd(),
        SdwanPeer::crd(),
        VirtualIp::crd(),
    ]
    .into_iter()
    .map(conventions::apply)
    .collect()
}

/// The CRDs as one multi-document YAML stream, as committed under crds/.
pub fn crds_yaml() -> String {
    let mut out = String::from("# Generated by `fleetgate crds`. Do not edit.\n");
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd).expect("CRDs serialize"));
    }
    out
}

/// Ready, Reconciling and Stalled together, with one reason and message: kstatus reads
/// them as a set.
pub struct Kstatus<'a> {
    pub ready: bool,
    pub reconciling: bool,
    pub stalled: bool,
    pub reason: &'a str,
    pub message: &'a str,
}

impl Kstatus<'_> {
    /// Sets the three conditions (a transition time moves only when a status changes).
    pub fn set(&self, conditions: &mut Vec<Condition>, generation: Option<i64>, now: &Time) {
        for (type_, status) in [
            ("Ready", self.ready),
            ("Reconciling", self.reconciling),
            ("Stalled", self.stalled),
        ] {
            set_condition(
                conditions,
                type_,
                status,
                self.reason,
                self.message,
                generation,
                now,
            );
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// A revision as people read it: its first 12 characters.
pub fn short_revision(revision: &str) -> &str {
    revision_prefix(revision, 12)
}

/// The first `n` characters of a revision (whole characters: a revision may come from
/// a spec, not only from git), past an algorithm prefix (`sha256:` of an OCI digest), so
/// that it can name objects.
pub fn revision_prefix(revision: &str, n: usize) -> &str {
    let revision = revision.split_once(':').map_or(revision, |(_, bare)| bare);
    revision
        .char_indices()
        .nth(n)
        .map_or(revision, |(end, _)| &revision[..end])
}

/// Whether `revision` is a git commit id (SHA-1 or SHA-256 hex), rather than an OCI
/// artifact's digest.
pub fn is_commit_id(revision: &str) -> bool {
    matches!(revision.len(), 40 | 64) && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Sets a condition, keeping its transition time when the status does not change
/// (kstatus and `kubectl wait` read these).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let message = truncate(&message.into(), conventions::MAX_CONDITION_MESSAGE);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status;
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo wörld", 6), "hé...");
    }

    #[test]
    fn a_short_revision_cuts_whole_characters() {
        assert_eq!(short_revision("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_revision("v1"), "v1");
        // Twelve characters of a multi-byte name, never half of one.
        assert_eq!(short_revision("ééééééééééééé"), "éééééééééééé");
        assert_eq!(revision_prefix("abcdef", 0), "");
        // An OCI digest names objects by its hex, not its algorithm.
        assert_eq!(revision_prefix("sha256:0123456789abcdef", 7), "0123456");
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(!is_commit_id("sha256:abcd"));
    }

    #[test]
    fn crds_use_only_formats_the_api_server_knows() {
        let yaml = crds_yaml();
        assert!(
            !yaml.contains("format: uint"),
            "unsigned formats left in the CRDs"
        );
        assert!(yaml.contains("format: int32"));
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let t0 = Time(k8s_openapi::jiff::Timestamp::from_second(0).unwrap());
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(1).unwrap());
        let mut c = Vec::new();
        set_condition(&mut c, "Ready", false, "Fetching", "", Some(1), &t0);
        set_condition(&mut c, "Ready", false, "FetchFailed", "boom", Some(2), &t1);
        assert_eq!(c[0].last_transition_time, t0);
        assert_eq!(c[0].reason, "FetchFailed");
        set_condition(&mut c, "Ready", true, "Synced", "", Some(2), &t1);
        assert_eq!(c[0].last_transition_time, t1);
        assert_eq!(condition(&c, "Ready").unwrap().status, "True");
    }
}
