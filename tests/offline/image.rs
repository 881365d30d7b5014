//! The controller image: `make image` (hack/image/build.sh) and the Dockerfile share one
//! description of what goes into it (hack/image/spec). The Dockerfile cannot be built
//! here (no container engine), so its instructions are compared with the spec, and the
//! spec's inputs are checked to hold every target Cargo.toml declares (a Dockerfile once
//! stubbed four of six benches and failed its first build). `make image` itself is built
//! twice and must give one digest, a non-root image with no shell in it.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// A bash array or variable of hack/image/spec, one value per line.
fn spec(name: &str) -> Vec<String> {
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(". hack/image/spec && printf '%s\\n' \"${{{name}[@]}}\""),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn one(name: &str) -> String {
    let values = spec(name);
    assert_eq!(values.len(), 1, "{name}: {values:?}");
    values[0].clone()
}

/// The Dockerfile's instructions (continuation lines joined), with the stage they are in.
fn instructions() -> Vec<(usize, String, String)> {
    let text = std::fs::read_to_string("Dockerfile").unwrap();
    let mut out = Vec::new();
    let mut stage = 0;
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
        let keyword = keyword.to_uppercase();
        if keyword == "FROM" && !out.is_empty() {
            stage += 1;
        }
        out.push((stage, keyword, rest.trim().to_owned()));
        current.clear();
    }
    out
}

/// `key="value" key2=value2` as a LABEL or ENV line writes them.
fn pairs(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            value = chars.by_ref().take_while(|c| *c != '"').collect();
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        out.insert(key, value);
    }
    out
}

fn split_pairs(values: &[String]) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|v| {
            let (k, v) = v.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn the_dockerfile_copies_exactly_the_spec_inputs_and_sets_exactly_its_configuration() {
    let all = instructions();
    let last = all.iter().map(|(s, ..)| *s).max().unwrap();
    let of = |stage: usize, keyword: &str| -> Vec<String> {
        all.iter()
            .filter(|(s, k, _)| *s == stage && k == keyword)
            .map(|(.., rest)| rest.clone())
            .collect()
    };
    // The build stage copies the inputs and nothing else.
    let mut copied: Vec<String> = of(0, "COPY")
        .iter()
        .flat_map(|c| {
            let words: Vec<&str> = c.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    copied.sort();
    let mut inputs = spec("IMAGE_INPUTS");
    inputs.sort();
    assert_eq!(copied, inputs, "the Dockerfile's COPY and IMAGE_INPUTS");
    assert!(
        of(0, "RUN")
            .iter()
            .any(|r| r.ends_with("hack/image/rootfs.sh /rootfs")),
        "the build stage lays out the root filesystem with hack/image/rootfs.sh"
    );
    // The final stage is that root filesystem alone, configured as the spec says.
    assert_eq!(of(last, "FROM"), ["scratch"]);
    assert_eq!(of(last, "COPY"), ["--from=build /rootfs /"]);
    assert_eq!(of(last, "USER"), [one("IMAGE_USER")]);
    assert_eq!(of(last, "WORKDIR"), [one("IMAGE_WORKDIR")]);
    assert_eq!(
        of(last, "ENTRYPOINT"),
        [format!("[\"{}\"]", one("IMAGE_ENTRYPOINT"))]
    );
    assert_eq!(of(last, "CMD"), [format!("[\"{}\"]", one("IMAGE_CMD"))]);
    let env = pairs(&of(last, "ENV").join(" "));
    assert_eq!(env, split_pairs(&spec("IMAGE_ENV")));
    let mut labels = pairs(&of(last, "LABEL").join(" "));
    for (key, arg) in [
        ("version", "VERSION"),
        ("revision", "REVISION"),
        ("created", "CREATED"),
    ] {
        assert_eq!(
            labels.remove(&format!("org.opencontainers.image.{key}")),
            Some(format!("${{{arg}}}"))
        );
    }
    assert_eq!(labels, split_pairs(&spec("IMAGE_LABELS")));
    assert!(
        of(last, "ARG").contains(&format!("VERSION={}", env!("CARGO_PKG_VERSION"))),
        "the Dockerfile's default VERSION follows Cargo.toml"
    );
}

#[test]
fn the_image_inputs_hold_every_target_cargo_declares() {
    let metadata = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .output()
        .unwrap();
    assert!(metadata.status.success());
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).unwrap();
    let root = std::env::current_dir().unwrap();
    let inputs = spec("IMAGE_INPUTS");
    // Every package of the workspace (the core's crates too): the image builds them all.
    let targets = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|package| package["targets"].as_array().unwrap());
    for target in targets {
        let path = Path::new(target["src_path"].as_str().unwrap());
        let relative = path.strip_prefix(&root).unwrap();
        let kinds = &target["kind"];
        // Tests and examples are not built into the image; everything else must be there.
        if kinds
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "test" || k == "example")
        {
            continue;
        }
        assert!(
            inputs.iter().any(|i| relative.starts_with(i)),
            "{} ({kinds}) is in none of IMAGE_INPUTS {inputs:?}",
            relative.display()
        );
    }
    // The manifest resolves from the inputs alone, as in the Dockerfile's build stage.
    let context = tempfile::tempdir().unwrap();
    let copy = Command::new("cp")
        .args(["-a", "--parents"])
        .args(&inputs)
        .arg(context.path())
        .output()
        .unwrap();
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    let resolved = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
            "--locked",
        ])
        .current_dir(context.path())
        .output()
        .unwrap();
    assert!(
        resolved.status.success(),
        "cargo reads the manifest from IMAGE_INPUTS alone: {}",
        String::from_utf8_lossy(&resolved.stderr)
    );
}

/// The blob `digest` of an OCI layout.
fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

#[test]
fn make_image_twice_gives_one_digest_of_a_minimal_non_root_image() {
    let first = support::node::build_image("fleetgate/fleetgate", "reproducible");
    let second = support::node::build_image("fleetgate/fleetgate", "reproducible");
    assert_eq!(first.digest, second.digest, "two builds of one commit");
    assert!(first.digest.starts_with("sha256:"), "{}", first.digest);

    let layout = first.archive.parent().unwrap().join("oci");
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&layout, &first.digest)).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let c = &config["config"];
    assert_eq!(c["User"], one("IMAGE_USER"));
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!([one("IMAGE_ENTRYPOINT")])
    );
    assert_eq!(c["Cmd"], serde_json::json!([one("IMAGE_CMD")]));
    let labels = c["Labels"].as_object().unwrap();
    for key in [
        "title",
        "description",
        "licenses",
        "version",
        "revision",
        "created",
    ] {
        assert!(
            labels.contains_key(&format!("org.opencontainers.image.{key}")),
            "{labels:?}"
        );
    }
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    // The commit's time, not the build's.
    assert_eq!(
        config["created"],
        labels["org.opencontainers.image.created"]
    );

    // One layer: the binary, its libraries, the CA bundle, the users; no shell.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let layer = blob(&layout, layers[0]["digest"].as_str().unwrap());
    let listing = Command::new("tar")
        .args(["-tzvf", "-", "--numeric-owner"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&layer)?;
            child.wait_with_output()
        })
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    let files: Vec<&str> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    for wanted in [
        "usr/local/bin/fleetgate",
        "lib64/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib/x86_64-linux-gnu/libssl.so.3",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/passwd",
    ] {
        assert!(files.contains(&wanted), "{wanted} in {files:?}");
    }
    for unwanted in ["bin/sh", "bin/bash", "usr/bin/apt", "usr/bin/dpkg"] {
        assert!(!files.contains(&unwanted), "{unwanted} in the image");
    }
    assert!(
        files.len() < 30,
        "a minimal image: {} files: {files:?}",
        files.len()
    );
    // Every entry has one time (the commit's) and root's or the nonroot user's ids.
    let times: std::collections::BTreeSet<String> = listing
        .lines()
        .map(|l| {
            l.split_whitespace()
                .skip(3)
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(times.len(), 1, "{listing}");
    let owners: std::collections::BTreeSet<&str> = listing
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    let nonroot = one("IMAGE_USER").replace(':', "/");
    assert!(
        owners.iter().all(|o| *o == "0/0" || *o == nonroot),
        "{owners:?}"
    );
}
