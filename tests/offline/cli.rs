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
            "error: the fleet file must be a mapping, found a string",
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

/// A valid fleet whose every value the cases below break one at a time. n4 and t2 are
/// referenced by nothing, so that breaking them breaks nothing else.
const BASE: &str = "version: 1
account: a
templates:
  - name: t
    node_platform: p
    architecture: amd64
    metadata: {rack: r1}
  - name: t2
    extends: t
nodes:
  - {hostname: n1, template: t, region: r, instance_type: i}
  - {hostname: n2, template: t, region: r, instance_type: i}
  - {hostname: n3, template: t, region: r, instance_type: i}
  - hostname: n4
    template: t
    region: r
    instance_type: i
sdwan:
  networks:
    - name: w
      routing_mode: ibgp
      peers:
        - {host: n1, publicly_reachable: true}
        - {host: n2}
        - {host: n3}
      virtual_ips:
        - name: v
          primary_holder: n1
          failover_holders: [n2]
";

/// 1-based line and column of byte offset `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// A broken value: (case, replace, with, error at (None: the replacement), message part).
type Case<'a> = (&'a str, &'a str, &'a str, Option<(usize, usize)>, &'a str);

/// Every invalid case of issue 12, each refused by `fleetgate validate` with exactly one
/// error at the place it names, and none of them making `fleetgate diff` panic. `at`
/// is where the error must point: the replaced text unless another place is given.
#[test]
fn each_invalid_value_is_one_located_error_and_no_panic() {
    let cases: &[Case] = &[
        // 1. Empty where a name, a reference or a required string is expected.
        (
            "empty hostname",
            "hostname: n4",
            "hostname: \"\"",
            None,
            "`hostname` of a node may not be empty",
        ),
        (
            "empty template",
            "template: t\n    region",
            "template: ''\n    region",
            None,
            "`template` of node `n4` may not be empty",
        ),
        (
            "template named ''",
            "name: t2",
            "name: ''",
            None,
            "`name` of a template may not be empty",
        ),
        (
            "empty extends",
            "extends: t",
            "extends: ''",
            None,
            "`extends` of template `t2` may not be empty",
        ),
        (
            "empty node_platform",
            "node_platform: p",
            "node_platform: ''",
            None,
            "`node_platform` of template `t` may not be empty",
        ),
        (
            "empty account",
            "account: a",
            "account: ''",
            None,
            "`account` of the fleet file may not be empty",
        ),
        (
            "empty region",
            "region: r\n    instance",
            "region: ''\n    instance",
            None,
            "`region` of node `n4` may not be empty",
        ),
        (
            "empty instance_type",
            "instance_type: i\nsdwan",
            "instance_type: ''\nsdwan",
            None,
            "`instance_type` of node `n4` may not be empty",
        ),
        (
            "empty network name",
            "name: w",
            "name: ''",
            None,
            "`name` of a network may not be empty",
        ),
        (
            "empty vip name",
            "name: v",
            "name: ''",
            None,
            "`name` of a virtual IP of network `w` may not be empty",
        ),
        (
            "empty peer host",
            "{host: n3}",
            "{host: ''}",
            Some((25, 18)),
            "`host` of a peer of network `w` may not be empty",
        ),
        (
            "empty primary holder",
            "primary_holder: n1",
            "primary_holder: ''",
            None,
            "`primary_holder` of virtual IP `v` may not be empty",
        ),
        (
            "empty failover holder",
            "[n2]",
            "['']",
            Some((29, 30)),
            "an item of `failover_holders` of virtual IP `v` may not be empty",
        ),
        (
            "bare - failover holder",
            "failover_holders: [n2]",
            "failover_holders:\n            -",
            Some((30, 14)),
            "an item of `failover_holders` of virtual IP `v` must be a string, found nothing (null)",
        ),
        // 2. Nulls.
        (
            "null failover holder",
            "[n2]",
            "[~]",
            Some((29, 30)),
            "an item of `failover_holders` of virtual IP `v` must be a string, found nothing (null)",
        ),
        (
            "null metadata key",
            "{rack: r1}",
            "{~: r1}",
            Some((7, 16)),
            "metadata keys of template `t` may not be empty or null",
        ),
        (
            "empty metadata key",
            "{rack: r1}",
            "{'': r1}",
            Some((7, 16)),
            "metadata keys of template `t` may not be empty or null",
        ),
        (
            "null required key",
            "hostname: n4",
            "hostname: ~",
            Some((14, 5)),
            "missing required key `hostname` in a node",
        ),
        // 3. version.
        (
            "version '001'",
            "version: 1",
            "version: '001'",
            None,
            "unsupported version `001`",
        ),
        (
            "version \"+1\"",
            "version: 1",
            "version: \"+1\"",
            None,
            "unsupported version `+1`",
        ),
        (
            "version +01",
            "version: 1",
            "version: +01",
            None,
            "unsupported version `+01`",
        ),
        (
            "version 01",
            "version: 1",
            "version: 01",
            None,
            "unsupported version `01`",
        ),
        (
            "version 1.0",
            "version: 1",
            "version: 1.0",
            None,
            "unsupported version `1.0`",
        ),
        (
            "version block scalar",
            "version: 1",
            "version: |\n  1",
            None,
            "unsupported version `1",
        ),
        // 4. YAML conformance.
        (
            "raw U+0001",
            "region: r\n    instance",
            "region: r\u{1}\n    instance",
            Some((16, 14)),
            "character U+0001 is not allowed in YAML",
        ),
        (
            "raw ESC",
            "region: r\n    instance",
            "region: \u{1b}r\n    instance",
            Some((16, 13)),
            "character U+001B is not allowed in YAML",
        ),
        (
            "raw DEL",
            "region: r\n    instance",
            "region: r\u{7f}\n    instance",
            Some((16, 14)),
            "character U+007F is not allowed in YAML",
        ),
        (
            "%YAML 2.0",
            "version: 1",
            "%YAML 2.0\n---\nversion: 1",
            Some((1, 7)),
            "`%YAML 2.0` is not supported",
        ),
        (
            "unknown escape",
            "region: r\n    instance",
            "region: \"r\\q\"\n    instance",
            Some((16, 16)),
            "unknown escape character",
        ),
        (
            "block scalar indicator",
            "region: r\n    instance",
            "region: |0\n      r\n    instance",
            Some((16, 13)),
            "indentation indicator equal to 0",
        ),
        (
            "invalid architecture",
            "architecture: amd64",
            "architecture: x86",
            None,
            "`architecture` of template `t` is `x86`, expected one of: amd64, arm64",
        ),
        // 5. Module pins.
        (
            "pin v1.2",
            "metadata: {rack: r1}",
            "modules: [n@v1.2]",
            Some((7, 15)),
            "module `n@v1.2` has an invalid pin `v1.2`",
        ),
        (
            "pin 1.2.",
            "metadata: {rack: r1}",
            "modules: [n@1.2.]",
            Some((7, 15)),
            "module `n@1.2.` has an invalid pin `1.2.`",
        ),
        // 6. Types the schema and the reader now judge alike.
        (
            "region: 1",
            "region: r\n    instance",
            "region: 1\n    instance",
            None,
            "`region` of node `n4` must be a string, found a number `1`; quote it",
        ),
        (
            "node_platform: 24.04",
            "node_platform: p",
            "node_platform: 24.04",
            None,
            "`node_platform` of template `t` must be a string, found a number `24.04`",
        ),
        (
            "hostname: 123",
            "hostname: n4",
            "hostname: 123",
            None,
            "`hostname` of a node must be a string, found a number `123`",
        ),
        (
            "publicly_reachable: yes",
            "publicly_reachable: true",
            "publicly_reachable: yes",
            None,
            "`publicly_reachable` of a peer of network `w` must be true or false, found `yes`",
        ),
        (
            "long module name",
            "metadata: {rack: r1}",
            &format!("modules: [{}@1.0]", "m".repeat(254)),
            Some((7, 15)),
            "is invalid: use lowercase letters",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.yaml");
    std::fs::write(&base, BASE).unwrap();
    assert_eq!(fleetgate(&["validate", s(&base)]).code, 0);
    for (i, (case, from, to, at, message)) in cases.iter().enumerate() {
        assert_eq!(
            BASE.matches(from).count(),
            1,
            "{case}: `{from}` is not unique"
        );
        let text = BASE.replacen(from, to, 1);
        let path = dir.path().join(format!("case{i}.yaml"));
        std::fs::write(&path, &text).unwrap();
        let p = s(&path);
        let run = fleetgate(&["validate", p]);
        assert_eq!(run.code, 1, "{case}: {}", run.stderr);
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains(": error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{case}: {}", run.stderr);
        let (line, col) = at.unwrap_or_else(|| {
            let offset = BASE.find(from).unwrap();
            let (line, col) = line_col(&text, offset);
            // The error points at the value, after `key: `.
            let value_at = to.find(": ").map_or(0, |k| to[..k + 2].chars().count());
            (line, col + value_at)
        });
        let located = format!("{p}:{line}:{col}: error: ");
        assert!(
            errors[0].starts_with(&located),
            "{case}: expected {located}...; got {}",
            errors[0]
        );
        assert!(errors[0].contains(message), "{case}: {}", errors[0]);
        let diff = fleetgate(&["diff", s(&base), p]);
        assert_eq!(
            diff.code, 2,
            "{case}: diff must refuse, not panic: {}",
            diff.stderr
        );
    }
}

/// Real-world versions are pinned as written and carried into the plan unchanged.
#[test]
fn real_world_pins_validate_and_reach_the_plan_as_written() {
    let pins = "[chrony@4.5, nginx@1.27, openssh@9.6p1, pkg@2024.01, 'dpkg@1:2.3.4-1', rc@1.2.3~rc1, openssl@3.0.13-1]";
    let text = BASE.replacen("metadata: {rack: r1}", &format!("modules: {pins}"), 1);
    let (_dir, path) = temp_file("fleet.yaml", text.as_bytes());
    let run = fleetgate(&["validate", s(&path)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = fleetgate(&["diff", "examples/fleet.yaml", s(&path), "-o", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for pin in [
        "chrony@4.5",
        "openssh@9.6p1",
        "dpkg@1:2.3.4-1",
        "rc@1.2.3~rc1",
        "openssl@3.0.13-1",
        "pkg@2024.01",
    ] {
        assert!(
            run.stdout.contains(&format!("\"{pin}\"")),
            "{pin} not in the plan as written"
        );
    }
}
