//! The shape of the code, checked: dependencies point inward. The pure core knows
//! nothing of Kubernetes or git, the layers import only the layers below them, and no two
//! modules of the controller import each other, however indirectly.
//!
//! Paths are read with `syn` from every `use` and every path in an expression or type,
//! resolved through `crate::` and `super::` to the module they name. The integration tests
//! are checked too: a few binaries, every file of theirs compiled as one of their modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Which crate-level modules each one may name (besides itself).
const LAYERS: &[(&str, &[&str])] = &[
    ("fleet", &[]),
    ("source", &["fleet"]),
    ("api", &["fleet"]),
    // Records are signed and checked without Kubernetes or git: the controller gathers
    // the facts, the CLI fetches the envelope.
    ("attest", &["api", "fleet"]),
    ("controller", &["api", "attest", "fleet", "source"]),
    // Providers meet fleetgate through the API server only: never the controller.
    ("provider", &["api", "fleet"]),
    (
        "cli",
        &["api", "attest", "fleet", "source", "controller", "provider"],
    ),
];

/// External crates the pure core must not use.
const NOT_IN_THE_CORE: &[&str] = &["kube", "k8s_openapi", "git2", "tokio", "reqwest", "axum"];

/// Every `.rs` file under `dir`, with the module path it defines (`["controller",
/// "repository", "runs"]` for `src/controller/repository/runs.rs`).
fn modules(root: &Path, dir: &Path) -> Vec<(Vec<String>, PathBuf)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(modules(root, &path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut module: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            found.push((module, path));
        }
    }
    found
}

/// The paths one file names, each resolved to an absolute module path in the crate
/// (`crate` dropped), or to an external crate's name.
struct Paths {
    /// The module the visitor is in: the file's, plus any inline `mod` it entered.
    here: Vec<String>,
    /// Where `crate::` points: the crate root, or `["fleet"]` in the core's own crate
    /// (re-exported as `fleetgate::fleet`).
    crate_root: Vec<String>,
    resolved: BTreeSet<Vec<String>>,
    external: BTreeSet<String>,
}

impl Paths {
    fn resolve(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else {
            return;
        };
        let absolute = match first.as_str() {
            "crate" => {
                let mut absolute = self.crate_root.clone();
                absolute.extend_from_slice(&segments[1..]);
                absolute
            }
            "super" | "self" => {
                let mut base = self.here.clone();
                let mut rest = segments;
                while let Some(s) = rest.first() {
                    match s.as_str() {
                        "super" => {
                            base.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    rest = &rest[1..];
                }
                base.extend_from_slice(rest);
                base
            }
            name if segments.len() > 1 => {
                self.external.insert(name.to_owned());
                return;
            }
            _ => return,
        };
        self.resolved.insert(absolute);
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut path = prefix.clone();
                path.push(n.ident.to_string());
                self.resolve(&path);
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.clone();
                path.push(r.ident.to_string());
                self.resolve(&path);
            }
            syn::UseTree::Glob(_) => {
                let path = prefix.clone();
                self.resolve(&path);
            }
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let mut prefix = Vec::new();
        if item.leading_colon.is_some() {
            prefix.push(String::new());
        }
        self.use_tree(&mut prefix, &item.tree);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.here.push(item.ident.to_string());
        syn::visit::visit_item_mod(self, item);
        self.here.pop();
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve(&segments);
        syn::visit::visit_path(self, path);
    }
}

/// What the file at `path`, defining `module`, names.
fn paths_of(module: &[String], crate_root: &[String], path: &Path) -> Paths {
    let source = std::fs::read_to_string(path).unwrap();
    let file = syn::parse_file(&source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut paths = Paths {
        here: module.to_vec(),
        crate_root: crate_root.to_vec(),
        resolved: BTreeSet::new(),
        external: BTreeSet::new(),
    };
    paths.visit_file(&file);
    paths
}

/// The import graph between the direct children of `parent` (`["controller"]`): which
/// child names which other child, with one file that does.
fn child_graph(
    files: &[(Vec<String>, Paths, PathBuf)],
    parent: &[String],
) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let child_of = |module: &[String]| -> Option<String> {
        (module.len() > parent.len() && module.starts_with(parent))
            .then(|| module[parent.len()].clone())
    };
    let mut graph: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for (module, paths, file) in files {
        let Some(from) = child_of(module) else {
            continue;
        };
        for target in &paths.resolved {
            if let Some(to) = child_of(target).filter(|to| *to != from) {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert_with(|| file.clone());
            }
        }
    }
    graph
}

/// The import circles of `graph`: its strongly connected components of more than one
/// module (Tarjan's algorithm).
fn circles(graph: &BTreeMap<String, BTreeMap<String, PathBuf>>) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<String, BTreeMap<String, PathBuf>>,
        index: BTreeMap<&'g str, (usize, usize)>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, (n, n));
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                match self.index.get(w) {
                    None => {
                        self.visit(w);
                        let low = self.index[w].1.min(self.index[v].1);
                        self.index.get_mut(v).unwrap().1 = low;
                    }
                    Some(&(wi, _)) if self.stack.contains(&w) => {
                        let low = wi.min(self.index[v].1);
                        self.index.get_mut(v).unwrap().1 = low;
                    }
                    Some(_) => {}
                }
            }
            if self.index[v].0 == self.index[v].1 {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !tarjan.index.contains_key(v.as_str()) {
            tarjan.visit(v);
        }
    }
    tarjan.found
}

/// The core's crate (`crates/fleet`), whose modules are `fleet::*` to the rest.
fn core_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/fleet")
}

/// Every file of the crate and of the core's crate, as modules of `fleetgate`.
fn crate_files() -> Vec<(Vec<String>, Paths, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let core = core_dir().join("src");
    let fleet = vec!["fleet".to_owned()];
    let in_core = modules(&core, &core).into_iter().map(|(module, path)| {
        let module = if module == ["lib"] {
            fleet.clone()
        } else {
            [fleet.clone(), module].concat()
        };
        (module, fleet.clone(), path)
    });
    modules(&root, &root)
        .into_iter()
        .map(|(module, path)| (module, Vec::new(), path))
        .chain(in_core)
        .map(|(module, crate_root, path)| {
            let paths = paths_of(&module, &crate_root, &path);
            (module, paths, path)
        })
        .collect()
}

/// The core's manifest names none of the crates the core must not use: the compiler then
/// keeps it so, and this says why when someone adds one.
#[test]
fn the_core_crate_depends_on_no_runtime_kubernetes_or_git_crate() {
    let manifest = std::fs::read_to_string(core_dir().join("Cargo.toml")).unwrap();
    let mut section = String::new();
    let mut dependencies = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
        } else if section.ends_with("dependencies]")
            && let Some((name, _)) = line.split_once('=')
            && !line.starts_with('#')
        {
            dependencies.push(name.trim().replace('-', "_"));
        }
    }
    assert!(
        dependencies.contains(&"serde".to_owned()),
        "{dependencies:?}"
    );
    let banned: Vec<&String> = dependencies
        .iter()
        .filter(|d| NOT_IN_THE_CORE.contains(&d.as_str()))
        .collect();
    assert!(banned.is_empty(), "crates/fleet depends on {banned:?}");
    let core_files = crate_files()
        .into_iter()
        .filter(|(module, _, _)| module.first().is_some_and(|m| m == "fleet"))
        .count();
    assert!(core_files > 10, "the core's files were not read");
}

#[test]
fn the_controller_modules_import_no_circle() {
    let files = crate_files();
    let graph = child_graph(&files, &["controller".to_owned()]);
    assert!(graph.len() > 10, "the controller's modules were not read");
    let found = circles(&graph);
    let shown: Vec<String> = found
        .iter()
        .map(|circle| {
            let edges: Vec<String> = circle
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|(to, _)| circle.contains(to))
                        .map(move |(to, file)| format!("{from} -> {to} ({})", file.display()))
                })
                .collect();
            edges.join("; ")
        })
        .collect();
    assert!(
        found.is_empty(),
        "import circles in src/controller:\n{}",
        shown.join("\n")
    );
}

#[test]
fn each_layer_names_only_the_layers_below_it() {
    let files = crate_files();
    let graph = child_graph(&files, &[]);
    for (from, targets) in &graph {
        let Some((_, allowed)) = LAYERS.iter().find(|(layer, _)| layer == from) else {
            continue;
        };
        for (to, file) in targets {
            let is_layer = LAYERS.iter().any(|(layer, _)| layer == to);
            assert!(
                !is_layer || allowed.contains(&to.as_str()),
                "{from} names {to} ({}); {from} may name only {allowed:?}",
                file.display()
            );
        }
    }
    for (module, paths, file) in &files {
        if module.first().is_some_and(|m| m == "fleet") {
            let banned: Vec<&String> = paths
                .external
                .iter()
                .filter(|c| NOT_IN_THE_CORE.contains(&c.as_str()))
                .collect();
            assert!(
                banned.is_empty(),
                "the pure core uses {banned:?} ({})",
                file.display()
            );
        }
    }
}

/// The checks above can fail: a circle through three modules, written as this crate's
/// files would write it, is found.
#[test]
fn a_circle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let controller = dir.path().join("controller");
    std::fs::create_dir_all(controller.join("b")).unwrap();
    std::fs::write(controller.join("a.rs"), "use super::b::thing;\n").unwrap();
    std::fs::write(
        controller.join("b/mod.rs"),
        "pub fn thing() { crate::controller::c::other() }\n",
    )
    .unwrap();
    std::fs::write(
        controller.join("c.rs"),
        "pub fn other() {}\n#[cfg(test)]\nmod tests { use super::super::{a, d}; }\n",
    )
    .unwrap();
    std::fs::write(controller.join("d.rs"), "pub fn alone() {}\n").unwrap();
    let files: Vec<_> = modules(dir.path(), dir.path())
        .into_iter()
        .map(|(module, path)| {
            let paths = paths_of(&module, &[], &path);
            (module, paths, path)
        })
        .collect();
    let graph = child_graph(&files, &["controller".to_owned()]);
    assert_eq!(circles(&graph), [["a", "b", "c"]]);
}

/// Import circles that stand today outside the controller, each among the children of
/// one module: the debt to pay down. The test below fails on any circle not listed here,
/// and on a listed one that is gone (take it off the list), so the list only shrinks.
const KNOWN_CIRCLES: &[(&str, &[&str])] = &[
    ("api", &["repository", "syncrun"]),
    ("cli", &["plugin", "ui"]),
    ("cli::ui", &["governance", "pages"]),
    ("fleet", &["bounds", "diag", "model", "object"]),
];

/// Circles among the children of any module, anywhere in the crate and the core (the
/// controller's own children, above, must have none at all).
#[test]
fn no_module_anywhere_imports_in_a_new_circle() {
    let files = crate_files();
    let parents: BTreeSet<Vec<String>> = files
        .iter()
        .filter(|(module, _, _)| !module.is_empty())
        .map(|(module, _, _)| module[..module.len() - 1].to_vec())
        .collect();
    assert!(parents.len() > 10, "the modules were not read: {parents:?}");
    let mut found = BTreeSet::new();
    for parent in &parents {
        for circle in circles(&child_graph(&files, parent)) {
            let members: BTreeSet<String> = circle.into_iter().collect();
            found.insert((parent.join("::"), members));
        }
    }
    let known: BTreeSet<(String, BTreeSet<String>)> = KNOWN_CIRCLES
        .iter()
        .map(|(parent, members)| {
            let members = members.iter().map(|m| m.to_string()).collect();
            (parent.to_string(), members)
        })
        .collect();
    let new: Vec<_> = found.difference(&known).collect();
    assert!(new.is_empty(), "new import circles: {new:?}");
    let gone: Vec<_> = known.difference(&found).collect();
    assert!(
        gone.is_empty(),
        "circles gone, take them off KNOWN_CIRCLES: {gone:?}"
    );
}

/// The integration tests that must have a process of their own: `tests/node.rs` points
/// the support's one control plane at the node's environment. Everything else is a
/// module of a binary folder.
const OWN_PROCESS: &[&str] = &["node"];

/// The binary folders (`tests/<name>/main.rs`): what they need to run.
const TEST_BINARIES: &[&str] = &["chaos", "cluster", "offline"];

/// The integration tests are the few binaries above, and every `.rs` file in a binary's
/// folder is one of its modules: a file that no `mod` names is never compiled, and its
/// tests would be lost without a word.
#[test]
fn every_test_file_is_a_module_of_one_of_the_few_test_binaries() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let (mut alone, mut folders) = (BTreeSet::new(), BTreeSet::new());
    for entry in std::fs::read_dir(&tests).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "rs") {
            alone.insert(name);
        } else if path.join("main.rs").is_file() {
            folders.insert(name);
        }
    }
    assert_eq!(
        alone,
        OWN_PROCESS.iter().map(|n| n.to_string()).collect(),
        "a test file directly under tests/ is a binary of its own: make it a module of \
         tests/cluster (it uses the control plane) or tests/offline (it does not)"
    );
    assert_eq!(
        folders,
        TEST_BINARIES.iter().map(|n| n.to_string()).collect(),
        "the test binaries"
    );
    for binary in TEST_BINARIES {
        let dir = tests.join(binary);
        let source = std::fs::read_to_string(dir.join("main.rs")).unwrap();
        let main = syn::parse_file(&source).unwrap();
        let declared: BTreeSet<String> = main
            .items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Mod(m) if m.content.is_none() && m.attrs.is_empty() => {
                    Some(m.ident.to_string())
                }
                _ => None,
            })
            .collect();
        let files: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .filter(|name| name != "main")
            .collect();
        assert!(!files.is_empty(), "tests/{binary}/ has no test modules");
        assert_eq!(
            declared, files,
            "tests/{binary}/main.rs declares a `mod` for each file beside it, and no other"
        );
    }
    // A binary of its own process keeps its modules in tests/<name>/, each named by a
    // `#[path = "<name>/<file>.rs"]` mod of tests/<name>.rs.
    for binary in OWN_PROCESS {
        let dir = tests.join(binary);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let source = std::fs::read_to_string(tests.join(format!("{binary}.rs"))).unwrap();
        let root = syn::parse_file(&source).unwrap();
        let declared: BTreeSet<String> = root
            .items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Mod(m) if m.content.is_none() => m.attrs.iter().find_map(|a| {
                    let syn::Meta::NameValue(nv) = &a.meta else {
                        return None;
                    };
                    let syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(path),
                        ..
                    }) = &nv.value
                    else {
                        return None;
                    };
                    nv.path.is_ident("path").then(|| path.value())
                }),
                _ => None,
            })
            .collect();
        let files: BTreeSet<String> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .map(|p| format!("{binary}/{}", p.file_name().unwrap().to_string_lossy()))
            .collect();
        assert_eq!(
            declared, files,
            "tests/{binary}.rs names each file of tests/{binary}/ with a #[path] mod"
        );
    }
}

/// What one file does to a run's lifecycle outside tests: how often it assigns a
/// `.phase`, and writes a status subresource itself.
#[derive(Default)]
struct LifecycleWrites {
    phase_assignments: usize,
    status_writes: usize,
}

impl<'ast> Visit<'ast> for LifecycleWrites {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        let is_test = item.attrs.iter().any(|a| {
            a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
        });
        if !is_test {
            syn::visit::visit_item_mod(self, item);
        }
    }

    fn visit_expr_assign(&mut self, assign: &'ast syn::ExprAssign) {
        if let syn::Expr::Field(field) = &*assign.left
            && matches!(&field.member, syn::Member::Named(name) if name == "phase")
        {
            self.phase_assignments += 1;
        }
        syn::visit::visit_expr_assign(self, assign);
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        if ["patch_status", "replace_status"]
            .iter()
            .any(|m| call.method == m)
        {
            self.status_writes += 1;
        }
        syn::visit::visit_expr_method_call(self, call);
    }
}

/// One writer per status, one state machine per kind: a run's phase is set, and its
/// status written, only in `controller::lifecycle` (through the transition table); the
/// status subresource is written only there, by the generic status writer of the other
/// kinds (`api::apply_status`) and by the lab provider (the provider of fleet objects).
#[test]
fn a_runs_phase_and_status_are_written_only_by_the_lifecycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (module, path) in modules(&root, &root) {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = syn::parse_file(&text).unwrap();
        let mut writes = LifecycleWrites::default();
        writes.visit_file(&file);
        let name = module.join("::");
        let in_lifecycle = name.starts_with("controller::lifecycle");
        if !in_lifecycle && writes.phase_assignments > 0 {
            found.push(format!("{name} sets a phase outside the lifecycle"));
        }
        let may_write_status = in_lifecycle || name == "api" || name == "provider::lab::status";
        if !may_write_status && writes.status_writes > 0 {
            found.push(format!("{name} writes a status subresource"));
        }
        let names_runs = text.contains("Api<SyncRun>") || text.contains("Api::<SyncRun>");
        if !in_lifecycle && names_runs && text.contains("apply_status(") {
            found.push(format!(
                "{name} may write a SyncRun's status with apply_status"
            ));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}
