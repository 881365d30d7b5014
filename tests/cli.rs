//! The `fleetgate validate` and `fleetgate diff` commands as a user runs them: exit
//! codes, compiler-style errors on stderr, and hostile files refused cleanly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs fleetgate, killing it if it has not finished in 20 s: a hang is a failure, not
/// a test that never ends. (Speed is measured by the benchmarks, not here.)
fn fleetgate(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetgate"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fleetgate runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("fleetgate {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn temp_file(name: &str, contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(contents)
        .unwrap();
    (dir, path)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_reference_fleets_validate() {
    let run = fleetgate(&["validate", "examples/fleet.yaml", "examples/fleet-v2.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("examples/fleet.yaml: valid (2 templates, 3 nodes, 1 networks, 0 warnings)")
    );
    assert!(run.stdout.contains("examples/fleet-v2.yaml: valid"));
}

#[test]
fn invalid_files_list_every_error_like_a_compiler() {
    let (_dir, path) = temp_file(
        "fleet.yaml",
        b"version: 1\naccount: a\ntemplates:\n  - name: base\n    node_platform: p\n    architecture: amd64\n    modules: [nginx]\nnodes:\n  - hostname: n1\n    template: bsae\n    region: r\n    instance_typ: t\n",
    );
    let run = fleetgate(&["validate", s(&path)]);
    assert_eq!(run.code, 1);
    let p = s(&path);
    assert_eq!(
        run.stderr,
        format!(
            "{p}:7:15: warning: module `nginx` in template `base` is not pinned; pin a version (`nginx@1.2.3`) or a lifecycle (`nginx@blessed`)\n\
             {p}:9:5: error: missing required key `instance_type` in node `n1`\n\
             {p}:10:15: error: node `n1` uses template `bsae`, which is not declared; did you mean `base`?\n\
             {p}:12:5: error: unknown key `instance_typ` in a node; did you mean `instance_type`?\n\
             {p}: invalid (3 errors)\n"
        )
    );
}

#[test]
fn warnings_alone_do_not_fail_validation() {
    let (_dir, path) = temp_file(
        "fleet.yaml",
        b"version: 1\naccount: a\ntemplates:\n  - {name: t, node_platform: p, architecture: arm64, modules: [chrony]}\n",
    );
    let run = fleetgate(&["validate", s(&path)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("warning: module `chrony`"));
}

#[test]
fn hostile_and_broken_files_get_one_clear_error() {
    let deep = "a:\n".to_string() + &"- ".repeat(5000) + "x\n";
    let laughs = {
        let mut y = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (i, c) in "bcdefghi".chars().enumerate() {
            let prev = (b'a' + i as u8) as char;
            y.push_str(&format!("{c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        y
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", b"".to_vec(), ":1:1: error: file is empty"),
        (
            "not yaml",
            b"version: 1\naccount: [a\n".to_vec(),
            "error: not valid YAML",
        ),
        (
            "not utf-8",
            b"version: 1\naccount: \xc3\x28\n".to_vec(),
            ":2:10: error: file is not valid UTF-8",
        ),
        (
            "deeply nested",
            deep.into_bytes(),
            "error: nesting deeper than 64 levels",
        ),
        (
            "billion laughs",
            laughs.into_bytes(),
            "error: anchors (`&name`) are not supported",
        ),
        (
            "duplicate keys",
            b"version: 1\naccount: a\naccount: b\n".to_vec(),
            ":3:1: error: duplicate key `account` (first at line 2)",
        ),
        ("binary", vec![0, 159, 146, 150, 0, 1], "error:"),
        (
            "a scalar",
            b"just text\n".to_vec(),
            "error: the fleet file must be a mapping, found a scalar",
        ),
    ];
    for (what, bytes, expected) in cases {
        let (_dir, path) = temp_file("fleet.yaml", &bytes);
        let run = fleetgate(&["validate", s(&path)]);
        assert_eq!(run.code, 1, "{what}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{what}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
    }
}

#[test]
fn files_over_32_mib_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(33 * 1024 * 1024).unwrap();
    let run = fleetgate(&["validate", s(&path)]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "error: file is 34603008 bytes, larger than the limit of 33554432 bytes (32 MiB)"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let run = fleetgate(&["validate", "no/such/fleet.yaml"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with("no/such/fleet.yaml: error: cannot read:"),
        "{}",
        run.stderr
    );
}

#[test]
fn diff_reports_the_revision_change_as_json() {
    let run = fleetgate(&[
        "diff",
        "examples/fleet.yaml",
        "examples/fleet-v2.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(run.code, 1, "changes exit 1: {}", run.stderr);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let s = &plan["summary"];
    let counts = |k: &str| {
        (
            s[k]["add"].as_u64().unwrap(),
            s[k]["update"].as_u64().unwrap(),
            s[k]["delete"].as_u64().unwrap(),
        )
    };
    assert_eq!(counts("templates"), (0, 1, 0));
    assert_eq!(counts("nodes"), (1, 2, 1));
    assert_eq!(counts("networks"), (0, 0, 0));
    assert_eq!(counts("peers"), (1, 0, 1));
    assert_eq!(counts("virtualIps"), (0, 1, 0));
    assert!(plan["planId"].as_str().unwrap().starts_with("plan-"));
}

#[test]
fn diff_exit_codes_and_formats() {
    let same = fleetgate(&["diff", "examples/fleet.yaml", "examples/fleet.yaml"]);
    assert_eq!(same.code, 0);
    assert_eq!(
        same.stdout,
        "No changes. The cluster matches the fleet file.\n"
    );

    let text = fleetgate(&[
        "diff",
        "examples/fleet.yaml",
        "examples/fleet-v2.yaml",
        "--revision",
        "abc123",
    ]);
    assert_eq!(text.code, 1);
    assert!(text.stdout.contains("for revision abc123"));
    assert!(
        text.stdout
            .ends_with("Plan: 2 to add, 4 to change, 2 to delete.\n"),
        "{}",
        text.stdout
    );

    let yaml = fleetgate(&[
        "diff",
        "examples/fleet.yaml",
        "examples/fleet-v2.yaml",
        "-o",
        "yaml",
    ]);
    assert_eq!(yaml.code, 1);
    assert!(yaml.stdout.starts_with("planId: plan-"), "{}", yaml.stdout);

    let excluded = fleetgate(&[
        "diff",
        "examples/fleet.yaml",
        "examples/fleet-v2.yaml",
        "--exclude",
        "fleetnode/edge-paris-01",
    ]);
    assert_eq!(excluded.code, 1);
    assert!(
        excluded
            .stdout
            .contains("Excluded: fleetnode/edge-london-01, fleetnode/edge-paris-01")
    );

    let (_dir, bad) = temp_file("bad.yaml", b"version: 2\n");
    let invalid = fleetgate(&["diff", "examples/fleet.yaml", s(&bad)]);
    assert_eq!(invalid.code, 2);
    assert!(
        invalid
            .stderr
            .contains("error: unsupported version `2`; supported versions: 1")
    );

    let unknown = fleetgate(&[
        "diff",
        "examples/fleet.yaml",
        "examples/fleet-v2.yaml",
        "--exclude",
        "fleetnode/nope",
    ]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown
            .stderr
            .contains("cannot exclude fleetnode/nope: the plan has no action for it")
    );

    let wrong_kind = fleetgate(&[
        "diff",
        "examples/fleet.yaml",
        "examples/fleet-v2.yaml",
        "--exclude",
        "pod/x",
    ]);
    assert_eq!(wrong_kind.code, 2, "clap usage errors exit 2");
    assert!(wrong_kind.stderr.contains("unknown kind `pod`"));
}
