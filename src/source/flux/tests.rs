use super::*;

const MIB: u64 = 1024 * 1024;

/// A gzip tarball of `files` (path, bytes), as source-controller packs an artifact.
fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, *bytes).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn the_planned_revision_is_the_commit_or_the_oci_digest() {
    let commit = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
    assert_eq!(planned_revision(&format!("main@sha1:{commit}")), commit);
    assert_eq!(
        planned_revision(&format!("refs/tags/v1@sha1:{commit}")),
        commit
    );
    assert_eq!(planned_revision(&format!("sha1:{commit}")), commit);
    assert_eq!(planned_revision("latest@sha256:abcd"), "sha256:abcd");
    assert_eq!(planned_revision("sha256:abcd"), "sha256:abcd");
}

#[test]
fn the_fleet_file_is_read_from_the_artifact_within_its_bounds() {
    let artifact = tarball(&[
        ("README.md", b"hello"),
        ("./clusters/fleet.yaml", b"version: 1\n"),
    ]);
    assert_eq!(
        file_in_tarball(&artifact, "clusters/fleet.yaml", 1024, MIB).unwrap(),
        b"version: 1\n"
    );
    let missing = file_in_tarball(&artifact, "fleet.yaml", 1024, MIB).unwrap_err();
    assert_eq!(missing.label(), "InvalidPath");
    let big = file_in_tarball(&artifact, "clusters/fleet.yaml", 4, MIB).unwrap_err();
    assert_eq!(big.label(), "FileTooLarge", "{big}");
    let garbage = file_in_tarball(b"not a tarball", "fleet.yaml", 1024, MIB).unwrap_err();
    assert_eq!(garbage.label(), "ArtifactInvalid", "{garbage}");
}

#[test]
fn a_directory_or_link_of_that_name_is_not_the_fleet_file() {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_cksum();
    builder
        .append_link(&mut header, "fleet.yaml", "/etc/passwd")
        .unwrap();
    let artifact = builder.into_inner().unwrap().finish().unwrap();
    let err = file_in_tarball(&artifact, "fleet.yaml", 1024, MIB).unwrap_err();
    assert_eq!(err.label(), "InvalidPath", "{err}");
}

#[test]
fn a_bomb_stops_at_the_inflated_bound() {
    // 64 MiB of zeros packs into about 64 KiB; a long name of 8 MiB (which the tar
    // reader would keep in memory whole) into less.
    let zeros = vec![0u8; 64 * MIB as usize];
    let artifact = tarball(&[("big.bin", &zeros), ("fleet.yaml", b"version: 1\n")]);
    assert!(artifact.len() < MIB as usize, "{}", artifact.len());
    let err = file_in_tarball(&artifact, "fleet.yaml", MIB, 16 * MIB).unwrap_err();
    assert_eq!(err.label(), "ArtifactInvalid", "{err}");
    assert!(err.to_string().contains("inflates past"), "{err}");
    // Within the bound it is found.
    assert_eq!(
        file_in_tarball(&artifact, "fleet.yaml", MIB, 128 * MIB).unwrap(),
        b"version: 1\n"
    );
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(1);
    header.set_cksum();
    let long = "d/".repeat(4 * MIB as usize) + "fleet.yaml";
    builder.append_data(&mut header, &long, &b"x"[..]).unwrap();
    let artifact = builder.into_inner().unwrap().finish().unwrap();
    let err = file_in_tarball(&artifact, "fleet.yaml", MIB, MIB).unwrap_err();
    assert_eq!(err.label(), "ArtifactInvalid", "{err}");
}

#[test]
fn the_last_entry_of_a_name_counts_as_when_unpacked() {
    let artifact = tarball(&[("fleet.yaml", b"first"), ("fleet.yaml", b"second")]);
    assert_eq!(
        file_in_tarball(&artifact, "fleet.yaml", MIB, MIB).unwrap(),
        b"second"
    );
}
