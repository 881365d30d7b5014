//! The authorization invariant as a property, against the chart: for each path that
//! writes fleet objects (a person's approval, the repository's Auto and
//! AutoApplyNonDestructive policies, a governance AutoApprove rule, drift correction,
//! rollback, deletion), an editor tries every field and annotation she may write, one
//! at a time, aiming at content no one authorized; nothing is written. Then the
//! legitimate path still applies what was authorized.
//!
//! What an editor may write is not a hand list: the fields are every leaf of the
//! GitopsRepository and SyncRun schemas (from the CRDs the controller generates), the
//! annotations and labels every `gitops.fleetgate.dev/...` key the code and the chart
//! name (and the shard label), and admission decides which of them she may change. Only
//! the values aimed at a source (another repository, branch, tag, commit or file) and at
//! a run (its actions, plan id, an applied run) are chosen for the attack; every other
//! field gets values from its schema.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use fleetgate::api::syncrun::{Phase, Trigger};
use fleetgate::api::{GitopsRepository, REPOSITORY_LABEL, SyncRun, annotations};
use futures::future::join_all;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Map, Value, json};
use support::chart::Installed;
use support::git::{Repo, server};
use support::operator::*;
use support::policy::*;
use support::tenant::*;
use support::{FLEET_RESOURCES, audit_mark, audited_since};

const V2: &[u8] = include_bytes!("../../examples/fleet-v2.yaml");

/// Content no one authorized: V1 with a node and a module of the attacker's.
fn evil() -> Vec<u8> {
    let mut text = String::from_utf8(V1.to_vec()).unwrap().replace(
        "modules: [node-exporter]",
        "modules: [node-exporter, backdoor]",
    );
    text = text.replacen(
        "nodes:\n",
        "nodes:\n  - hostname: evil-01\n    template: edge-cdn\n    region: ap-tokyo-1\n    instance_type: t3-medium\n",
        1,
    );
    text.into_bytes()
}

/// The paths that write fleet objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WritePath {
    /// A plan waiting for people (and drift corrected by policy).
    Correct,
    /// The repository's `approval: Auto`.
    Auto,
    /// The repository's `approval: AutoApplyNonDestructive`, a plan with deletions waiting.
    NonDestructive,
    /// A GovernancePolicy rule that auto-approves everything.
    Governed,
    /// A rollback an approver asked for, waiting for approval.
    Rollback,
    /// A repository with `deletionPolicy: Delete` being deleted.
    Deletion,
}

/// Where the attacker's content lives: another repository, a branch, a tag and a file
/// of the tenant's own repository.
struct Attack {
    url: String,
    branch: &'static str,
    tag: &'static str,
    commit: String,
    path: &'static str,
}

/// One tenant playing one write path.
struct Scene {
    path: WritePath,
    t: Tenant,
    attack: Attack,
    /// The content the path has authorized so far.
    authorized: &'static [u8],
    /// The first revision, approved and applied.
    v1: String,
    /// The policy of the governed path (dropped at the end).
    _policy: Option<Policy>,
}

async fn repository(client: &Client, ns: &str) -> Option<GitopsRepository> {
    Api::<GitopsRepository>::namespaced(client.clone(), ns)
        .get_opt("fleet")
        .await
        .unwrap()
}

/// The newest run of the repository.
async fn newest_run(client: &Client, ns: &str) -> SyncRun {
    let mut runs = Api::<SyncRun>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    runs.sort_by_key(|r| {
        r.annotations()
            .get("gitops.fleetgate.dev/sequence")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    });
    runs.pop().expect("a run")
}

async fn set_up(path: WritePath) -> (Tenant, Option<Policy>) {
    let prefix = format!("inv-{path:?}").to_ascii_lowercase();
    let t = tenant(&prefix).await;
    (t, None)
}

impl Scene {
    /// Brings the tenant to the state where its path is the one to attack.
    async fn prepare(path: WritePath, t: Tenant, policy: Option<Policy>) -> Self {
        let ns = t.ns.name.clone();
        // The attacker's content: another repository, a branch, a tag, a file on main.
        let other = server().create_repo(&format!("{ns}-evil"));
        other.commit(&[("fleet.yaml", &evil())], "unreviewed");
        let evil = evil();
        t.repo
            .commit(&[("fleet.yaml", V1), ("evil/fleet.yaml", &evil)], "first");
        let commit = t
            .repo
            .commit_to("evil", &[("fleet.yaml", &evil)], "unreviewed");
        tag_branch(&t.repo, "evil", "evil-tag");
        let attack = Attack {
            url: server().ssh_url(&other),
            branch: "evil",
            tag: "evil-tag",
            commit,
            path: "evil/fleet.yaml",
        };
        let mut spec = t.ssh_spec();
        spec["interval"] = json!("1s");
        match path {
            WritePath::Correct => spec["driftRemediation"] = json!("Correct"),
            WritePath::Auto => spec["approval"] = json!("Auto"),
            WritePath::NonDestructive => spec["approval"] = json!("AutoApplyNonDestructive"),
            WritePath::Deletion => spec["deletionPolicy"] = json!("Delete"),
            WritePath::Governed | WritePath::Rollback => {}
        }
        create_repository(&t.admin, &ns, "fleet", spec).await;
        let v1 = newest_commit(&t.repo);
        let mut authorized: &'static [u8] = V1;
        match path {
            WritePath::Auto | WritePath::NonDestructive | WritePath::Governed => {
                run_in_phase(&t.admin, &ns, &v1, Phase::Applied).await;
            }
            _ => {
                let run = run_in_phase(&t.admin, &ns, &v1, Phase::AwaitingApproval).await;
                t.approve(&run).by(&t.bob).await;
                run_in_phase(&t.admin, &ns, &v1, Phase::Applied).await;
            }
        }
        match path {
            WritePath::Correct | WritePath::NonDestructive => {
                let v2 = t.repo.commit(&[("fleet.yaml", V2)], "second");
                run_in_phase(&t.admin, &ns, &v2, Phase::AwaitingApproval).await;
            }
            WritePath::Rollback => {
                let applied_v1 = newest_run(&t.admin, &ns).await.name_any();
                let v2 = t.repo.commit(&[("fleet.yaml", V2)], "second");
                let run = run_in_phase(&t.admin, &ns, &v2, Phase::AwaitingApproval).await;
                t.approve(&run).by(&t.bob).await;
                run_in_phase(&t.admin, &ns, &v2, Phase::Applied).await;
                authorized = V2;
                ask_rollback(&t, &applied_v1, "1").await;
            }
            WritePath::Deletion => {
                Api::<GitopsRepository>::namespaced(t.admin.clone(), &ns)
                    .delete("fleet", &Default::default())
                    .await
                    .unwrap();
                support::eventually("the removal planned", Duration::from_secs(60), || async {
                    let run = newest_run(&t.admin, &ns).await;
                    (run.spec.trigger == Trigger::Deletion
                        && run.phase() == Some(Phase::AwaitingApproval))
                    .then_some(())
                })
                .await;
            }
            WritePath::Auto | WritePath::Governed => {}
        }
        assert_eq!(fleet_content(&t.admin, &ns).await, declared(authorized));
        Scene {
            path,
            t,
            attack,
            authorized,
            v1,
            _policy: policy,
        }
    }
}

fn newest_commit(repo: &Repo) -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&repo.work)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn tag_branch(repo: &Repo, branch: &str, tag: &str) {
    for args in [
        vec!["tag", "-f", tag, branch],
        vec!["push", "-q", "-f", "origin", tag],
    ] {
        let out = std::process::Command::new("git")
            .args(&args)
            .current_dir(&repo.work)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

async fn ask_rollback(t: &Tenant, to: &str, when: &str) {
    let ask =
        json!({"metadata": {"annotations": {annotations::ROLLBACK_TO: format!("{to}@{when}")}}});
    Api::<GitopsRepository>::namespaced(t.bob.clone(), &t.ns.name)
        .patch("fleet", &PatchParams::default(), &Patch::Merge(&ask))
        .await
        .unwrap();
    support::eventually("the rollback planned", Duration::from_secs(60), || async {
        let run = newest_run(&t.admin, &t.ns.name).await;
        (run.spec.trigger == Trigger::Rollback && run.phase() == Some(Phase::AwaitingApproval))
            .then_some(())
    })
    .await;
}

/// What the editor changes: a field of the spec, an annotation or a label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Input {
    Spec(Vec<String>),
    Annotation(String),
    Label(String),
}

/// Which object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Repository,
    Run,
}

/// Every leaf of the `spec` of the CRD named `crd`, with its schema.
fn spec_leaves(crd: &str) -> Vec<(Vec<String>, Value)> {
    let crd = fleetgate::api::crds()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(crd))
        .unwrap();
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    walk(&schema["properties"]["spec"], &mut Vec::new(), &mut out);
    out
}

fn walk(schema: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    match schema.get("properties").and_then(Value::as_object) {
        Some(properties) => {
            for (name, child) in properties {
                path.push(name.clone());
                walk(child, path, out);
                path.pop();
            }
        }
        None => out.push((path.clone(), schema.clone())),
    }
}

/// Every `gitops.fleetgate.dev/<key>` the code and the chart name: the annotations and
/// labels the controller reads or writes, whatever they are used for.
fn fleetgate_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut files = vec![std::path::PathBuf::from(
        "charts/fleetgate/templates/admission.yaml",
    )];
    let mut dirs = vec![std::path::PathBuf::from("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let prefix = "gitops.fleetgate.dev/";
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, _) in text.match_indices(prefix) {
            let rest = &text[i + prefix.len()..];
            let key: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            // Not an API version (`gitops.fleetgate.dev/v1alpha1`).
            let version = rest[key.len()..].starts_with(|c: char| c.is_ascii_digit());
            if !key.is_empty() && !version {
                keys.insert(format!("{prefix}{key}"));
            }
        }
    }
    keys
}

/// The values the editor tries for `input` of `target`, as merge-patch documents.
async fn attempts(scene: &Scene, target: Target, input: &Input, schema: &Value) -> Vec<Value> {
    let a = &scene.attack;
    let ns = &scene.t.ns.name;
    let run = newest_run(&scene.t.admin, ns).await;
    let plan_id = run
        .status
        .as_ref()
        .and_then(|s| s.plan_id.clone())
        .unwrap_or_default();
    let values: Vec<Value> = match input {
        Input::Spec(path) => {
            let dotted = path.join(".");
            match (target, dotted.as_str()) {
                (Target::Repository, "url") => vec![json!(a.url)],
                (Target::Repository, "ref.branch") => vec![json!(a.branch)],
                (Target::Repository, "ref.tag") => vec![json!(a.tag)],
                (Target::Repository, "ref.commit") => vec![json!(a.commit)],
                (Target::Repository, "path") => vec![json!(a.path)],
                (Target::Run, "revision") => vec![json!(a.commit)],
                _ => from_schema(schema),
            }
        }
        Input::Annotation(key) => match key.as_str() {
            annotations::EXCLUDE => {
                let deletions: Vec<String> = run
                    .status
                    .as_ref()
                    .map(|s| {
                        s.actions
                            .iter()
                            .filter(|a| a.operation == "Delete")
                            .map(|a| format!("{}/{}", a.kind.to_ascii_lowercase(), a.name))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut v = vec![json!(every_action(&run))];
                if !deletions.is_empty() {
                    v.push(json!(deletions.join(",")));
                }
                v
            }
            annotations::APPROVE => vec![json!(plan_id)],
            annotations::APPROVED_BY => vec![json!("bob")],
            annotations::SOURCE_APPROVED_BY => vec![json!("bob")],
            annotations::ROLLBACK_TO | annotations::ROLLBACK_OF | annotations::RESTORES => {
                vec![json!(run.name_any())]
            }
            annotations::SYNC_REQUESTED_AT | annotations::PUSH_RECEIVED_AT => {
                vec![json!(format!("{:?}", std::time::SystemTime::now()))]
            }
            _ => vec![json!("hostile"), Value::Null],
        },
        Input::Label(_) => vec![json!("hostile"), Value::Null],
    };
    let mut out = Vec::new();
    for value in values {
        match input {
            Input::Spec(path) => {
                out.push(json!({"spec": nest(path, value.clone())}));
                // A field one of several siblings may hold (`ref`) is tried alone too.
                if path.len() > 1 {
                    let mut alone = Map::new();
                    alone.insert(path[path.len() - 1].clone(), value);
                    for sibling in ["branch", "tag", "commit"] {
                        if path[..path.len() - 1] == ["ref".to_owned()]
                            && sibling != path[path.len() - 1]
                        {
                            alone.insert(sibling.into(), Value::Null);
                        }
                    }
                    out.push(json!({"spec": nest(&path[..path.len() - 1], Value::Object(alone))}));
                }
            }
            Input::Annotation(key) => out.push(json!({"metadata": {"annotations": {key: value}}})),
            Input::Label(key) => out.push(json!({"metadata": {"labels": {key: value}}})),
        }
    }
    out
}

fn nest(path: &[String], value: Value) -> Value {
    path.iter()
        .rev()
        .fold(value, |inner, key| json!({key.clone(): inner}))
}

/// Values a field's schema allows (and some it does not), by type.
fn from_schema(schema: &Value) -> Vec<Value> {
    if let Some(variants) = schema.get("enum").and_then(Value::as_array) {
        return variants.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("boolean") => vec![json!(true), json!(false)],
        Some("integer") => vec![
            schema.get("minimum").cloned().unwrap_or(json!(0)),
            schema.get("maximum").cloned().unwrap_or(json!(1_000_000)),
        ],
        Some("array") => vec![json!([]), json!(["hostile"])],
        Some("string") => {
            let rules = schema.to_string();
            if rules.contains("duration") {
                vec![json!("1s"), json!("24h")]
            } else if rules.contains("[0-9a-f]{40}") {
                vec![json!("0".repeat(40))]
            } else {
                vec![json!("hostile")]
            }
        }
        _ => vec![json!("hostile")],
    }
}

/// [`undo`], removing whole every object `patch` added.
fn remove_added(before: &Value, patch: &Value) -> Value {
    match patch.as_object() {
        Some(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| {
                    let back = match before.get(k) {
                        Some(old @ Value::Object(_)) if v.is_object() => remove_added(old, v),
                        Some(old) => old.clone(),
                        None => Value::Null,
                    };
                    (k.clone(), back)
                })
                .collect(),
        ),
        None => before.clone(),
    }
}

/// The merge patch that undoes `patch` on an object that was `before`.
fn undo(before: &Value, patch: &Value) -> Value {
    match patch.as_object() {
        Some(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| {
                    let old = before.get(k).cloned().unwrap_or(Value::Null);
                    let back = match (v.is_object(), &old) {
                        (true, Value::Object(_)) => undo(&old, v),
                        (true, Value::Null) => undo(&json!({}), v),
                        _ => old,
                    };
                    (k.clone(), back)
                })
                .collect(),
        ),
        None => before.clone(),
    }
}

/// The object `target` of the scene, as JSON (None once gone).
async fn current(scene: &Scene, target: Target) -> Option<(String, Value)> {
    let (admin, ns) = (&scene.t.admin, &scene.t.ns.name);
    match target {
        Target::Repository => {
            let repo = repository(admin, ns).await?;
            Some(("fleet".into(), serde_json::to_value(repo).unwrap()))
        }
        Target::Run => {
            let run = newest_run(admin, ns).await;
            Some((run.name_any(), serde_json::to_value(run).unwrap()))
        }
    }
}

fn api(client: &Client, ns: &str, target: Target) -> Api<DynamicObject> {
    let kind = match target {
        Target::Repository => "GitopsRepository",
        Target::Run => "SyncRun",
    };
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gitops.fleetgate.dev",
        "v1alpha1",
        kind,
    ));
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// What alice's attempts came to.
#[derive(Default)]
struct Outcome {
    accepted: BTreeSet<(Target, Input)>,
    refused: BTreeSet<(Target, Input)>,
    /// Changes alice made (an input may take several values).
    changes: usize,
}

/// Tries every input of every target as alice, one value at a time; after each accepted
/// change waits for the controller to act on it, checks that the cluster still holds
/// only what was authorized, and has the admin undo it.
async fn attack(scene: &Scene) -> Outcome {
    let mut outcome = Outcome::default();
    let mut inputs: Vec<(Target, Input, Value)> = Vec::new();
    for (target, crd) in [
        (
            Target::Repository,
            "gitopsrepositories.gitops.fleetgate.dev",
        ),
        (Target::Run, "syncruns.gitops.fleetgate.dev"),
    ] {
        for (path, schema) in spec_leaves(crd) {
            inputs.push((target, Input::Spec(path), schema));
        }
        for key in [
            REPOSITORY_LABEL.to_owned(),
            "fleetgate.dev/shard".to_owned(),
        ] {
            inputs.push((target, Input::Label(key), Value::Null));
        }
        let mut keys: Vec<String> = fleetgate_keys().into_iter().collect();
        // Leaving actions out last: it may end the plan that waits.
        keys.sort_by_key(|k| k == annotations::EXCLUDE);
        for key in keys {
            inputs.push((target, Input::Annotation(key), Value::Null));
        }
    }
    let ns = &scene.t.ns.name;
    for (target, input, schema) in inputs {
        for patch in attempts(scene, target, &input, &schema).await {
            let Some((name, before)) = current(scene, target).await else {
                continue;
            };
            let back = undo(&before, &patch);
            if back == patch {
                continue; // changes nothing
            }
            let tried = api(&scene.t.alice, ns, target)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            if tried.is_err() {
                outcome.refused.insert((target, input.clone()));
                continue;
            }
            outcome.accepted.insert((target, input.clone()));
            outcome.changes += 1;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let held = fleet_content(&scene.t.admin, ns).await;
            assert_eq!(
                held,
                declared(scene.authorized),
                "{:?}: after alice's {target:?} {patch}, the cluster holds content no one authorized",
                scene.path
            );
            let undone = api(&scene.t.admin, ns, target)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&back))
                .await;
            if undone.is_err() {
                // A nested field alone may not be null (`verify.secretRef.name`): what
                // was absent before is removed whole.
                let _ = api(&scene.t.admin, ns, target)
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(&remove_added(&before, &patch)),
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    outcome
}

/// After the attack, what was authorized still applies by the path's own means.
async fn legitimately(scene: &Scene) {
    let (t, ns) = (&scene.t, &scene.t.ns.name);
    match scene.path {
        WritePath::Auto | WritePath::Governed => {
            let v2 = t.repo.commit(&[("fleet.yaml", V2)], "second");
            let applied = run_in_phase(&t.admin, ns, &v2, Phase::Applied).await;
            let by = applied.status.unwrap().approved_by.unwrap();
            assert!(by.starts_with("policy/"), "{by}");
            assert_eq!(fleet_content(&t.admin, ns).await, declared(V2));
        }
        WritePath::Correct => {
            // Drift is corrected back to what people approved (v1), whatever became
            // of the plan that waited (a plan from git waiting for people would restore
            // it when approved, so bob rejects it first).
            let newest = newest_run(&t.admin, ns).await;
            if newest.phase() == Some(Phase::AwaitingApproval) {
                annotate(
                    &t.bob,
                    ns,
                    &newest.name_any(),
                    annotations::REJECT,
                    Some("not now"),
                )
                .await;
            }
            Api::<fleetgate::api::FleetNode>::namespaced(t.admin.clone(), ns)
                .delete("edge-tokyo-02", &Default::default())
                .await
                .unwrap();
            support::eventually("the drift corrected", Duration::from_secs(90), || async {
                (fleet_content(&t.admin, ns).await == declared(V1)).then_some(())
            })
            .await;
        }
        WritePath::NonDestructive => {
            // bob asks for a sync and approves the plan with deletions.
            let ask =
                json!({"metadata": {"annotations": {annotations::SYNC_REQUESTED_AT: "legit"}}});
            Api::<GitopsRepository>::namespaced(t.bob.clone(), ns)
                .patch("fleet", &PatchParams::default(), &Patch::Merge(&ask))
                .await
                .unwrap();
            approve_newest_waiting(t).await;
            support::eventually("v2 applied", Duration::from_secs(60), || async {
                (fleet_content(&t.admin, ns).await == declared(V2)).then_some(())
            })
            .await;
        }
        WritePath::Rollback => {
            if newest_run(&t.admin, ns).await.phase() != Some(Phase::AwaitingApproval) {
                let v1_run = Api::<SyncRun>::namespaced(t.admin.clone(), ns)
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .find(|r| r.phase() == Some(Phase::Applied) && r.spec.revision == scene.v1)
                    .unwrap();
                ask_rollback(t, &v1_run.name_any(), "2").await;
            }
            approve_newest_waiting(t).await;
            support::eventually("v1 restored", Duration::from_secs(60), || async {
                (fleet_content(&t.admin, ns).await == declared(V1)).then_some(())
            })
            .await;
        }
        WritePath::Deletion => {
            // The removal still waits for bob, unless alice left every removal out
            // (which deletes nothing); approved, the objects go with the repository.
            if repository(&t.admin, ns).await.is_some()
                && newest_run(&t.admin, ns).await.phase() == Some(Phase::AwaitingApproval)
            {
                approve_newest_waiting(t).await;
                support::eventually("the objects removed", Duration::from_secs(60), || async {
                    fleet_objects(&t.admin, ns).await.is_empty().then_some(())
                })
                .await;
            }
        }
    }
}

async fn approve_newest_waiting(t: &Tenant) {
    let run = support::eventually("a plan waiting", Duration::from_secs(60), || async {
        let run = newest_run(&t.admin, &t.ns.name).await;
        (run.phase() == Some(Phase::AwaitingApproval)).then_some(run)
    })
    .await;
    t.approve(&run).by(&t.bob).await;
}

#[tokio::test]
async fn no_editor_input_makes_any_write_path_write_unauthorized_content() {
    let paths = [
        WritePath::Correct,
        WritePath::Auto,
        WritePath::NonDestructive,
        WritePath::Governed,
        WritePath::Rollback,
        WritePath::Deletion,
    ];
    let mut tenants = Vec::new();
    for path in paths {
        tenants.push((path, set_up(path).await));
    }
    let namespaces: Vec<&support::TestNamespace> =
        tenants.iter().map(|(_, (t, _))| &t.ns).collect();
    let chart = Installed::new(&namespaces, &[]).await;
    let mut prepared = Vec::new();
    for (path, (t, _)) in tenants {
        t.bind_users();
        let policy = match path {
            WritePath::Governed => {
                let ns = &t.ns.name;
                let everything = json!({"rules": [{"name": "everything", "action": "AutoApprove", "expression": "true"}]});
                let p =
                    Policy::create(&t.admin, &format!("{ns}-all"), selecting(ns, everything)).await;
                p.ready_reason("Compiled").await;
                Some(p)
            }
            _ => None,
        };
        prepared.push(Scene::prepare(path, t, policy));
    }
    let scenes: Vec<Scene> = join_all(prepared).await;

    let mark = audit_mark();
    let outcomes = join_all(scenes.iter().map(attack)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (scene, outcome) in scenes.iter().zip(&outcomes) {
        let ns = &scene.t.ns.name;
        // Nothing was written to a fleet object while alice tried, by anyone.
        let written = audited_since(mark, ns, FLEET_RESOURCES);
        assert!(written.is_empty(), "{:?}: {written:?}", scene.path);
        assert_eq!(
            fleet_content(&scene.t.admin, ns).await,
            declared(scene.authorized)
        );
        eprintln!(
            "{:?}: alice changed {} inputs ({} changes), {} refused at admission; changed: {:?}",
            scene.path,
            outcome.accepted.len(),
            outcome.changes,
            outcome.refused.len(),
            outcome.accepted
        );
        // The attack is not vacuous: alice could change things that matter.
        let could = |target, input: Input| outcome.accepted.contains(&(target, input));
        assert!(could(
            Target::Run,
            Input::Annotation(annotations::EXCLUDE.into())
        ));
        assert!(could(
            Target::Repository,
            Input::Annotation(annotations::SYNC_REQUESTED_AT.into())
        ));
        if !matches!(
            scene.path,
            WritePath::Auto | WritePath::NonDestructive | WritePath::Correct
        ) {
            assert!(could(Target::Repository, Input::Spec(vec!["url".into()])));
        }
        // ...and what only approvers (or the controller) may change was refused.
        for guarded in [
            annotations::APPROVE,
            annotations::APPROVED_BY,
            "gitops.fleetgate.dev/sequence",
        ] {
            assert!(
                !could(Target::Run, Input::Annotation(guarded.into())),
                "{guarded}"
            );
        }
        for field in [
            "approval",
            "driftRemediation",
            "prune",
            "deletionPolicy",
            "sensitiveFields",
        ] {
            let input = Input::Spec(vec![field.into()]);
            assert!(!could(Target::Repository, input), "{field}");
        }
        let deadline = Input::Spec(vec!["rollout".into(), "progressDeadline".into()]);
        assert!(
            !could(Target::Repository, deadline),
            "rollout.progressDeadline"
        );
        for guarded in [annotations::ROLLBACK_TO, "gitops.fleetgate.dev/notified"] {
            let input = Input::Annotation(guarded.into());
            assert!(!could(Target::Repository, input), "{guarded}");
        }
        let shard = Input::Label("fleetgate.dev/shard".into());
        assert!(!could(Target::Repository, shard));
    }
    join_all(scenes.iter().map(legitimately)).await;
    drop(chart);
}
