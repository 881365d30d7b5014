//! The plan: what must change for the live objects to match the desired ones, in the
//! order it must happen, identified by a digest of exactly that.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::object::{FleetObject, ObjectKind, ObjectRef, Spec};
use super::spec_diff::{FieldChange, field_changes};

/// An object as found in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveObject {
    pub name: String,
    pub spec: Arc<Spec>,
    /// The repository that manages it (its `gitops.fleetgate.dev/repository` label), if any.
    pub owner: Option<String>,
    /// Whether it carries `gitops.fleetgate.dev/prevent-destroy: "true"`.
    pub prevent_destroy: bool,
}

impl LiveObject {
    pub fn kind(&self) -> ObjectKind {
        self.spec.kind()
    }

    /// A desired object as if it were live and owned by `owner`.
    pub fn owned_by(object: &FleetObject, owner: &str) -> Self {
        Self {
            name: object.name.clone(),
            spec: Arc::clone(&object.spec),
            owner: Some(owner.to_owned()),
            prevent_destroy: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PlanOptions<'a> {
    /// The GitopsRepository the plan is for; only objects it owns are updated or deleted.
    pub repository: &'a str,
    /// The git revision the desired state came from; part of the plan id.
    pub revision: &'a str,
    /// Whether objects git no longer declares are deleted.
    pub prune: bool,
    /// Actions to leave out, with every action that depends on them.
    pub exclude: &'a [ObjectRef],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn word(self) -> &'static str {
        match self {
            Operation::Create => "Create",
            Operation::Update => "Update",
            Operation::Delete => "Delete",
        }
    }

    pub fn symbol(self) -> char {
        match self {
            Operation::Create => '+',
            Operation::Update => '~',
            Operation::Delete => '-',
        }
    }
}

/// Adds, updates and deletes of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Counts {
    /// Objects the plan creates.
    pub add: u32,
    /// Objects the plan changes.
    pub update: u32,
    /// Objects the plan deletes.
    pub delete: u32,
}

impl Counts {
    pub fn total(&self) -> u32 {
        self.add + self.update + self.delete
    }
}

/// Counts per kind, as SyncRun.status.summary shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// FleetTemplates.
    pub templates: Counts,
    /// FleetNodes.
    pub nodes: Counts,
    /// SdwanNetworks.
    pub networks: Counts,
    /// SdwanPeers.
    pub peers: Counts,
    /// VirtualIps.
    pub virtual_ips: Counts,
}

impl Summary {
    pub fn of_kind(&self, kind: ObjectKind) -> &Counts {
        match kind {
            ObjectKind::FleetTemplate => &self.templates,
            ObjectKind::FleetNode => &self.nodes,
            ObjectKind::SdwanNetwork => &self.networks,
            ObjectKind::SdwanPeer => &self.peers,
            ObjectKind::VirtualIp => &self.virtual_ips,
        }
    }

    fn of_kind_mut(&mut self, kind: ObjectKind) -> &mut Counts {
        match kind {
            ObjectKind::FleetTemplate => &mut self.templates,
            ObjectKind::FleetNode => &mut self.nodes,
            ObjectKind::SdwanNetwork => &mut self.networks,
            ObjectKind::SdwanPeer => &mut self.peers,
            ObjectKind::VirtualIp => &mut self.virtual_ips,
        }
    }

    /// All kinds together.
    pub fn total(&self) -> Counts {
        ObjectKind::ALL.iter().fold(Counts::default(), |acc, k| {
            let c = self.of_kind(*k);
            Counts {
                add: acc.add + c.add,
                update: acc.update + c.update,
                delete: acc.delete + c.delete,
            }
        })
    }
}

/// One object's change, for people: what it is and which fields move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectDiff {
    pub kind: ObjectKind,
    pub name: String,
    pub operation: Operation,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

/// A desired object that the plan will not touch because someone else manages it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Conflict {
    pub kind: ObjectKind,
    pub name: String,
    /// The repository whose label the object carries; none when it has no fleetgate label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub message: String,
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "ActionWire")]
pub struct PlannedAction {
    pub kind: ObjectKind,
    pub name: String,
    pub operation: Operation,
    /// Actions of one level do not depend on each other and may run in parallel.
    pub level: u32,
    /// Actions that must succeed before this one runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ObjectRef>,
    /// The spec to apply (creates and updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Arc<Spec>>,
    /// Digest of the live spec the plan saw (updates and deletes); the apply engine
    /// refuses to act if the object has changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// The rollout wave it goes out in (see `rollout::stage`); 0 for a plan that was
    /// not staged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wave: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl PlannedAction {
    pub fn reference(&self) -> ObjectRef {
        ObjectRef::new(self.kind, self.name.clone())
    }
}

/// An action as stored: its spec is read back according to its kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionWire {
    kind: ObjectKind,
    name: String,
    operation: Operation,
    level: u32,
    #[serde(default)]
    depends_on: Vec<ObjectRef>,
    #[serde(default)]
    spec: Option<Value>,
    #[serde(default)]
    observed: Option<String>,
    #[serde(default)]
    wave: u32,
}

impl TryFrom<ActionWire> for PlannedAction {
    type Error = serde_json::Error;

    fn try_from(w: ActionWire) -> Result<Self, Self::Error> {
        Ok(PlannedAction {
            spec: match w.spec {
                Some(json) => Some(Arc::new(Spec::from_json(w.kind, json)?)),
                None => None,
            },
            kind: w.kind,
            name: w.name,
            operation: w.operation,
            level: w.level,
            depends_on: w.depends_on,
            observed: w.observed,
            wave: w.wave,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub plan_id: String,
    pub revision: String,
    pub summary: Summary,
    pub diff: Vec<ObjectDiff>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
    /// Actions left out on request, with those that depend on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<ObjectRef>,
    pub actions: Vec<PlannedAction>,
    /// How it rolls out: waves, blast radius per region, topology notes. None for a plan
    /// that was not staged (one wave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::waves::Rollout>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Each action's position, by its object's kind and name (a plan has at most one
    /// action per object).
    pub fn action_index(&self) -> std::collections::HashMap<(ObjectKind, &str), usize> {
        self.actions
            .iter()
            .enumerate()
            .map(|(i, a)| ((a.kind, a.name.as_str()), i))
            .collect()
    }

    pub fn has_deletions(&self) -> bool {
        self.actions
            .iter()
            .any(|a| a.operation == Operation::Delete)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{object} is marked gitops.fleetgate.dev/prevent-destroy and would be deleted; declare it again in git or remove the annotation"
    )]
    PreventDestroy { object: ObjectRef },
    #[error("cannot exclude {object}: the plan has no action for it")]
    UnknownExclusion { object: ObjectRef },
}

impl PlanError {
    /// A stable short label for metrics and Events.
    pub fn label(&self) -> &'static str {
        match self {
            PlanError::PreventDestroy { .. } => "PreventDestroy",
            PlanError::UnknownExclusion { .. } => "UnknownExclusion",
        }
    }
}

type Key<'a> = (ObjectKind, &'a str);

/// Plans the way from `live` to `desired`; both may come in any order. Errors (objects
/// protected from deletion, exclusions that name no action) are all reported together.
pub fn plan(
    desired: &[FleetObject],
    live: &[LiveObject],
    options: &PlanOptions,
) -> Result<Plan, Vec<PlanError>> {
    let live_by_key: FxHashMap<Key, &LiveObject> = live
        .iter()
        .map(|l| ((l.kind(), l.name.as_str()), l))
        .collect();
    let desired_keys: FxHashSet<Key> = desired
        .iter()
        .map(|d| (d.kind(), d.name.as_str()))
        .collect();
    let mut errors = Vec::new();
    let mut conflicts = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();

    for d in desired {
        match live_by_key.get(&(d.kind(), d.name.as_str())) {
            None => pending.push(Pending {
                kind: d.kind(),
                name: &d.name,
                operation: Operation::Create,
                desired: Some(d),
                live: None,
            }),
            Some(l) if l.owner.as_deref() != Some(options.repository) => {
                conflicts.push(conflict(d, l, options.repository))
            }
            Some(l) if d.spec == l.spec => {}
            Some(l) => pending.push(Pending {
                kind: d.kind(),
                name: &d.name,
                operation: Operation::Update,
                desired: Some(d),
                live: Some(l),
            }),
        }
    }
    if options.prune {
        for l in live {
            let ours = l.owner.as_deref() == Some(options.repository);
            if !ours || desired_keys.contains(&(l.kind(), l.name.as_str())) {
                continue;
            }
            if l.prevent_destroy {
                errors.push(PlanError::PreventDestroy {
                    object: ObjectRef::new(l.kind(), l.name.clone()),
                });
            }
            pending.push(Pending {
                kind: l.kind(),
                name: &l.name,
                operation: Operation::Delete,
                desired: None,
                live: Some(l),
            });
        }
    }

    let depends = dependencies(&pending, live, options.repository);
    let dropped = excluded(&pending, &depends, options.exclude, &mut errors);
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.to_string());
        return Err(errors);
    }

    let depth = TemplateDepth::new(desired, live);
    let mut order: Vec<(SortKey, usize)> = (0..pending.len())
        .filter(|i| !dropped.contains(i))
        .map(|i| (sort_key(&pending[i], &depth), i))
        .collect();
    order.sort_unstable();

    let mut actions = Vec::with_capacity(order.len());
    let mut diff = Vec::with_capacity(order.len());
    let mut summary = Summary::default();
    let mut level = 0;
    let mut previous_group = None;
    for (key, i) in &order {
        let (p, i) = (&pending[*i], *i);
        let group = key.group();
        if previous_group.is_some_and(|g| g != group) {
            level += 1;
        }
        previous_group = Some(group);
        let counts = summary.of_kind_mut(p.kind);
        match p.operation {
            Operation::Create => counts.add += 1,
            Operation::Update => counts.update += 1,
            Operation::Delete => counts.delete += 1,
        }
        // Creates carry their whole spec in the action; listing it again as fields
        // would double a large plan.
        let fields = match (p.live, p.desired) {
            (Some(l), Some(d)) => field_changes(&l.spec.to_json(), &d.spec.to_json()),
            _ => Vec::new(),
        };
        diff.push(ObjectDiff {
            kind: p.kind,
            name: p.name.to_owned(),
            operation: p.operation,
            fields,
        });
        let mut depends_on: Vec<ObjectRef> = depends[i]
            .iter()
            .map(|d| ObjectRef::new(pending[*d].kind, pending[*d].name))
            .collect();
        depends_on.sort();
        actions.push(PlannedAction {
            kind: p.kind,
            name: p.name.to_owned(),
            operation: p.operation,
            level,
            depends_on,
            spec: p.desired.map(|d| Arc::clone(&d.spec)),
            observed: p.live.map(|l| spec_digest(&l.spec)),
            wave: 0,
        });
    }
    diff.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    conflicts.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    let mut excluded: Vec<ObjectRef> = dropped
        .iter()
        .map(|i| ObjectRef::new(pending[*i].kind, pending[*i].name))
        .collect();
    excluded.sort();
    Ok(Plan {
        plan_id: plan_id(options.revision, &actions),
        revision: options.revision.to_owned(),
        summary,
        diff,
        conflicts,
        excluded,
        actions,
        rollout: None,
    })
}

/// An action being worked out: borrowed views of the objects it moves between.
struct Pending<'a> {
    kind: ObjectKind,
    name: &'a str,
    operation: Operation,
    desired: Option<&'a FleetObject>,
    live: Option<&'a LiveObject>,
}

fn conflict(d: &FleetObject, l: &LiveObject, repository: &str) -> Conflict {
    let object = d.reference();
    let message = match &l.owner {
        Some(other) => format!(
            "{object} is managed by repository `{other}`; `{repository}` will not take it over"
        ),
        None => format!(
            "{object} exists but is not managed by fleetgate; `{repository}` will not take it over"
        ),
    };
    Conflict {
        kind: d.kind(),
        name: d.name.clone(),
        owner: l.owner.clone(),
        message,
    }
}

/// For each pending action, the indices of the pending actions it must wait for.
///
/// A create or update waits for the creates and updates of what its new spec names. A
/// delete waits for every action that stops something naming the object: the delete of
/// a dependent, or the update that points it elsewhere.
fn dependencies(pending: &[Pending], live: &[LiveObject], repository: &str) -> Vec<Vec<usize>> {
    let index: FxHashMap<(Key, bool), usize> = pending
        .iter()
        .enumerate()
        .map(|(i, p)| (((p.kind, p.name), p.operation == Operation::Delete), i))
        .collect();
    let mut depends = vec![Vec::new(); pending.len()];
    for (i, p) in pending.iter().enumerate() {
        if let Some(d) = p.desired {
            d.spec.for_each_reference(|kind, name| {
                if let Some(j) = index.get(&((kind, name), false)) {
                    depends[i].push(*j);
                }
            });
        }
    }
    if !pending.iter().any(|p| p.operation == Operation::Delete) {
        return depends;
    }
    for l in live
        .iter()
        .filter(|l| l.owner.as_deref() == Some(repository))
    {
        let referrer = (l.kind(), l.name.as_str());
        let referrer_action = index
            .get(&(referrer, true))
            .or_else(|| index.get(&(referrer, false)));
        let Some(&referrer_action) = referrer_action else {
            continue;
        };
        l.spec.for_each_reference(|kind, name| {
            if let Some(&deleted) = index.get(&((kind, name), true)) {
                depends[deleted].push(referrer_action);
            }
        });
    }
    for d in &mut depends {
        d.sort_unstable();
        d.dedup();
    }
    depends
}

/// The pending actions an exclusion list removes: the excluded ones and, transitively,
/// everything that depends on them.
fn excluded(
    pending: &[Pending],
    depends: &[Vec<usize>],
    exclude: &[ObjectRef],
    errors: &mut Vec<PlanError>,
) -> BTreeSet<usize> {
    let mut dropped = BTreeSet::new();
    if exclude.is_empty() {
        return dropped;
    }
    let mut dependents = vec![Vec::new(); pending.len()];
    for (i, deps) in depends.iter().enumerate() {
        for d in deps {
            dependents[*d].push(i);
        }
    }
    let mut queue = VecDeque::new();
    for object in exclude {
        let found: Vec<usize> = pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.kind == object.kind && p.name == object.name)
            .map(|(i, _)| i)
            .collect();
        if found.is_empty() {
            errors.push(PlanError::UnknownExclusion {
                object: object.clone(),
            });
        }
        queue.extend(found);
    }
    while let Some(i) = queue.pop_front() {
        if dropped.insert(i) {
            queue.extend(dependents[i].iter().copied());
        }
    }
    dropped
}

/// How deep each template sits in its `extends` chain, in git and in the cluster.
struct TemplateDepth<'a> {
    desired: HashMap<&'a str, Option<&'a str>>,
    live: HashMap<&'a str, Option<&'a str>>,
}

impl<'a> TemplateDepth<'a> {
    fn new(desired: &'a [FleetObject], live: &'a [LiveObject]) -> Self {
        Self {
            desired: desired
                .iter()
                .filter(|d| d.kind() == ObjectKind::FleetTemplate)
                .map(|d| (d.name.as_str(), d.spec.extends()))
                .collect(),
            live: live
                .iter()
                .filter(|l| l.kind() == ObjectKind::FleetTemplate)
                .map(|l| (l.name.as_str(), l.spec.extends()))
                .collect(),
        }
    }

    fn depth(&self, name: &str, live: bool) -> usize {
        let parents = if live { &self.live } else { &self.desired };
        let mut depth = 0;
        let mut current = name;
        // Bounded: a cycle edited into the cluster must not hang the planner.
        while let Some(Some(parent)) = parents.get(current) {
            depth += 1;
            current = parent;
            if depth > parents.len() {
                break;
            }
        }
        depth
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct SortKey<'a> {
    deleting: bool,
    /// Kind rank, reversed for deletions.
    rank: isize,
    /// Template depth, reversed for deletions.
    depth: isize,
    name: &'a str,
}

impl SortKey<'_> {
    /// Actions with the same group do not depend on each other.
    fn group(&self) -> (bool, isize, isize) {
        (self.deleting, self.rank, self.depth)
    }
}

fn sort_key<'a>(p: &Pending<'a>, depth: &TemplateDepth) -> SortKey<'a> {
    let deleting = p.operation == Operation::Delete;
    let template_depth = if p.kind == ObjectKind::FleetTemplate {
        depth.depth(p.name, deleting) as isize
    } else {
        0
    };
    let sign = if deleting { -1 } else { 1 };
    SortKey {
        deleting,
        rank: sign * p.kind.rank() as isize,
        depth: sign * template_depth,
        name: p.name,
    }
}

/// `plan-` and 12 hex digits of a SHA-256 over the revision and the ordered actions,
/// each with the exact spec it applies and the wave it goes out in. Recomputed from a
/// stored plan before applying it. A wave of 0 adds nothing, so that a plan that is not
/// staged keeps the id it always had.
pub fn plan_id(revision: &str, actions: &[PlannedAction]) -> String {
    let mut h = Sha256::new();
    h.update(b"fleetgate-plan-v1\0");
    h.update(revision.as_bytes());
    let mut buf = Vec::with_capacity(512);
    for a in actions {
        buf.clear();
        buf.push(0);
        buf.extend_from_slice(a.operation.word().as_bytes());
        buf.push(0);
        buf.extend_from_slice(a.kind.as_str().as_bytes());
        buf.push(0);
        buf.extend_from_slice(a.name.as_bytes());
        buf.push(0);
        if let Some(spec) = &a.spec {
            serde_json::to_writer(&mut buf, spec.as_ref()).expect("specs always serialize");
        }
        if a.wave > 0 {
            buf.extend_from_slice(b"\0wave\0");
            buf.extend_from_slice(a.wave.to_string().as_bytes());
        }
        h.update(&buf);
    }
    format!("plan-{}", &hex(&h.finalize())[..12])
}

/// A digest of a spec's content. Typed specs serialize in one fixed form (field order,
/// sorted maps, empty lists), so the same content read back from the API server digests
/// the same.
pub fn spec_digest(spec: &Spec) -> String {
    let bytes = serde_json::to_vec(spec).expect("specs always serialize");
    hex(&Sha256::digest(bytes))[..16].to_owned()
}

/// Lowercase hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// The objects that result from applying `plan` to `live`, in canonical order.
pub fn apply_to(live: &[FleetObject], plan: &Plan) -> Vec<FleetObject> {
    let mut objects: HashMap<ObjectRef, FleetObject> =
        live.iter().map(|o| (o.reference(), o.clone())).collect();
    for a in &plan.actions {
        match (&a.operation, &a.spec) {
            (Operation::Delete, _) => {
                objects.remove(&a.reference());
            }
            (_, Some(spec)) => {
                objects.insert(
                    a.reference(),
                    FleetObject {
                        name: a.name.clone(),
                        spec: Arc::clone(spec),
                    },
                );
            }
            (_, None) => {}
        }
    }
    let mut out: Vec<FleetObject> = objects.into_values().collect();
    out.sort_by(|a, b| (a.kind(), &a.name).cmp(&(b.kind(), &b.name)));
    out
}
