//! `kubectl fleet attest`: check signed approval-to-apply records with the public key
//! alone, and export them for an audit.
//!
//! `verify` reads a SyncRun's record from the cluster, or records from a file with no
//! cluster at all (an envelope, or what `export` writes: one envelope a line).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::kubectl::OutputFlag;
use super::live_plan::{EXIT_CHANGES, EXIT_ERROR};
use crate::api::SyncRun;
use crate::attest::{PublicKey, Verified};
use crate::controller::attestation::{
    self, ENVELOPE_ENTRY, NAMESPACE_KEY, RECORD_LABEL, REPOSITORY_KEY, config_map_name,
};
use crate::controller::planstore;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check records with the public key alone (PEM, `openssl pkey -pubout`): a
    /// SyncRun's, read from the cluster, or a file's (`-` for standard input), offline.
    /// Exit 0 every record verifies, 1 one does not, 2 error.
    Verify {
        /// A SyncRun of the namespace, or a file that exists (an envelope, or what
        /// `export` wrote).
        target: String,
        /// The public key the records must be signed with; repeat it for records that
        /// span a key rotation (each record is checked with the key its keyid names).
        #[arg(long, required = true)]
        key: Vec<PathBuf>,
        #[command(flatten)]
        output: OutputFlag,
    },
    /// Write the records of the namespace (or of every namespace) as JSON lines, one
    /// envelope a line, oldest first: what `verify` reads back. Records outlive their
    /// runs and repositories, so this finds them after both are deleted.
    Export {
        /// The records of every namespace.
        #[arg(long, short = 'A')]
        all_namespaces: bool,
        /// Only the records of this repository.
        #[arg(long)]
        repository: Option<String>,
        /// The controller's namespace, which keeps the records.
        #[arg(long, default_value = "fleetgate-system")]
        records_namespace: String,
    },
}

/// Whether `verify`'s target is a file (read offline) rather than a SyncRun.
pub fn is_file(target: &str) -> bool {
    target == "-" || Path::new(target).is_file()
}

/// One record read: where it came from and its envelope's bytes.
struct Record {
    origin: String,
    envelope: Vec<u8>,
    /// The run it must be the record of, with the digest the run recorded for it.
    of_run: Option<(SyncRun, String)>,
}

/// `verify` of a file, with no cluster.
pub fn verify_offline(target: &str, keys: &[PathBuf], output: &OutputFlag) -> ExitCode {
    match read_file(target) {
        Ok(records) => report(records, keys, output),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

pub async fn run(command: Command, client: Client, ns: &str) -> anyhow::Result<ExitCode> {
    match command {
        Command::Verify {
            target,
            key,
            output,
        } => {
            if is_file(&target) {
                return Ok(verify_offline(&target, &key, &output));
            }
            match of_run(&client, ns, &target).await? {
                Ok(record) => Ok(report(vec![record], &key, &output)),
                // No record where the run says one is: as much a "no" as a bad one.
                Err(why) => {
                    println!("{target}: NOT VERIFIED: {why}");
                    Ok(ExitCode::from(EXIT_CHANGES))
                }
            }
        }
        Command::Export {
            all_namespaces,
            repository,
            records_namespace,
        } => {
            let mut selector = format!("{RECORD_LABEL}=true");
            if !all_namespaces {
                write!(selector, ",{NAMESPACE_KEY}={ns}")?;
            }
            if let Some(repository) = &repository {
                write!(selector, ",{REPOSITORY_KEY}={repository}")?;
            }
            let records: Api<ConfigMap> = Api::namespaced(client, &records_namespace);
            let mut kept = records
                .list(&ListParams::default().labels(&selector))
                .await?
                .items;
            kept.sort_by(|a, b| {
                (a.creation_timestamp(), a.name_any()).cmp(&(b.creation_timestamp(), b.name_any()))
            });
            for record in &kept {
                match envelope_of(record) {
                    Some(envelope) => println!("{envelope}"),
                    None => eprintln!("warning: {} holds no {ENVELOPE_ENTRY}", record.name_any()),
                }
            }
            eprintln!("{} record(s) from {records_namespace}", kept.len());
            if kept.is_empty() {
                eprintln!(
                    "(records are kept in the controller's namespace: is it {records_namespace}? see --records-namespace)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The envelope a record's ConfigMap keeps, as text.
fn envelope_of(record: &ConfigMap) -> Option<&str> {
    std::str::from_utf8(attestation::envelope_of(record))
        .ok()
        .filter(|e| !e.is_empty())
}

/// The record a SyncRun names in `status.attestation`, or why there is none to check
/// (an error only when the run or the API cannot be read).
async fn of_run(client: &Client, ns: &str, name: &str) -> anyhow::Result<Result<Record, String>> {
    let run = Api::<SyncRun>::namespaced(client.clone(), ns)
        .get(name)
        .await?;
    let Some(at) = run.status.as_ref().and_then(|s| s.attestation.clone()) else {
        return Ok(Err(
            "the run has no signed record (not ended yet, never authorized, \
                       or the controller signs none)"
                .into(),
        ));
    };
    if at.config_map != config_map_name(&run) {
        return Ok(Err(format!(
            "the run names {}, not the record of its own uid",
            at.config_map
        )));
    }
    let kept = Api::<ConfigMap>::namespaced(client.clone(), &at.namespace)
        .get_opt(&at.config_map)
        .await?;
    let Some(envelope) = kept.as_ref().and_then(envelope_of) else {
        return Ok(Err(format!(
            "its record {}/{} is gone or empty",
            at.namespace, at.config_map
        )));
    };
    Ok(Ok(Record {
        origin: format!("{}/{}", at.namespace, at.config_map),
        envelope: envelope.as_bytes().to_vec(),
        of_run: Some((run, at.digest)),
    }))
}

/// A file's records: one envelope, or one a line.
fn read_file(target: &str) -> anyhow::Result<Vec<Record>> {
    let text = if target == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(target).map_err(|e| anyhow::anyhow!("cannot read {target}: {e}"))?
    };
    if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
        return Ok(vec![Record {
            origin: target.to_owned(),
            envelope: text.trim().as_bytes().to_vec(),
            of_run: None,
        }]);
    }
    let records: Vec<Record> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| Record {
            origin: format!("{target}:{}", i + 1),
            envelope: line.trim().as_bytes().to_vec(),
            of_run: None,
        })
        .collect();
    if records.is_empty() {
        anyhow::bail!("{target} holds no record");
    }
    Ok(records)
}

/// Verifies each record and prints what each says, or why it does not verify, then a
/// count (on standard error). With `-o`, standard output holds only the verified
/// statements.
fn report(records: Vec<Record>, keys: &[PathBuf], output: &OutputFlag) -> ExitCode {
    let keys = match read_keys(keys) {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let mut failed = 0;
    let mut verified = Vec::new();
    for record in &records {
        match check(record, &keys) {
            Ok(v) => {
                if output.output.is_none() {
                    print!("{}", describe(&record.origin, &v));
                }
                verified.push(v.statement);
            }
            Err(why) => {
                failed += 1;
                let line = format!("{}: NOT VERIFIED: {why}", sanitize(&record.origin));
                if output.output.is_none() {
                    println!("{line}");
                } else {
                    eprintln!("{line}");
                }
            }
        }
    }
    if output.output.is_some() {
        print!("{}", output.render(&verified, String::new));
    }
    eprintln!("{} verified, {failed} not verified", verified.len());
    if failed > 0 {
        ExitCode::from(EXIT_CHANGES)
    } else {
        ExitCode::SUCCESS
    }
}

fn read_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>, String> {
    if paths.is_empty() {
        return Err("no --key".into());
    }
    paths
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|pem| {
                    PublicKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
                })
        })
        .collect()
}

/// One record against the keys: the one its keyid names (else the first, which then
/// fails as `OtherKey`); for a run's record, also that it is the one the run recorded
/// and that it is that run's.
fn check(record: &Record, keys: &[PublicKey]) -> Result<Verified, String> {
    let labelled = |e: crate::attest::AttestError| format!("{e} [{}]", e.label());
    if let Some((_, digest)) = &record.of_run
        && *digest != planstore::digest(&record.envelope)
    {
        return Err(format!(
            "the record kept is not the one the run recorded ({digest})"
        ));
    }
    let named = serde_json::from_slice::<crate::attest::Envelope>(&record.envelope)
        .ok()
        .and_then(|e| e.signatures.first().map(|s| s.keyid.clone()));
    let key = keys
        .iter()
        .find(|k| named.as_deref() == Some(k.keyid()))
        .unwrap_or(&keys[0]);
    let verified = crate::attest::verify(&record.envelope, key).map_err(labelled)?;
    if let Some((run, _)) = &record.of_run {
        attestation::record_of(&verified.statement, run).map_err(labelled)?;
    }
    Ok(verified)
}

/// Text from a record, safe to print: control characters (a terminal's escape
/// sequences, carriage returns) that whoever chose a name or a commit author wrote are
/// shown escaped, so that a verified record cannot paint over another's failure.
fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// What a verified record says, for people.
fn describe(origin: &str, v: &Verified) -> String {
    // Every line sanitized; the line breaks are this function's own.
    describe_raw(origin, v)
        .lines()
        .map(|l| sanitize(l) + "\n")
        .collect()
}

fn describe_raw(origin: &str, v: &Verified) -> String {
    let r = &v.statement.predicate;
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let mut out = format!("{origin}: verified, signed by key {}\n", short(&v.keyid));
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "  {label:<11} {text}");
    };
    line(
        "Run:",
        format!(
            "{}/{} {} ({}), completed {}",
            r.run.namespace,
            r.run.name,
            r.run.phase,
            r.run.trigger,
            r.run.completed_at.as_deref().unwrap_or("-")
        ),
    );
    line(
        "Repository:",
        format!(
            "{} {} {} @ {}{}",
            r.repository.name,
            r.repository.url.as_deref().unwrap_or("-"),
            r.repository.git_ref.as_deref().unwrap_or("-"),
            short(&r.repository.revision),
            r.repository
                .restores
                .as_deref()
                .map(|s| format!(" (restores {s})"))
                .unwrap_or_default()
        ),
    );
    if let Some(commit) = &r.commit {
        let signed = match (&commit.verified, &commit.signature, &commit.tag) {
            (None, ..) => "signature not checked".to_owned(),
            (Some(mode), sig, tag) => {
                let mut parts = vec![format!("verified ({})", mode.as_str())];
                if let Some(sig) = sig {
                    parts.push(format!("commit signed by {} {}", sig.kind, sig.fingerprint));
                }
                if let Some(tag) = tag {
                    parts.push(format!("tag {}", tag.name));
                }
                parts.join(", ")
            }
        };
        line(
            "Commit:",
            format!(
                "by {} <{}>, {signed}",
                commit.author.name, commit.author.email
            ),
        );
    }
    line(
        "Plan:",
        format!(
            "{} {} ({} actions)",
            r.plan.id, r.plan.digest, r.plan.actions
        ),
    );
    match &r.authorization {
        Some(a) => {
            let who = if a.approvers.is_empty() {
                a.policy.clone().unwrap_or_default()
            } else {
                a.approvers.join(", ")
            };
            line(
                "Authorized:",
                format!(
                    "{:?} ({who}) for {} at {}, {} approval(s) required",
                    a.by, a.plan_id, a.at.0, r.approvals_required
                ),
            );
        }
        None => line(
            "Authorized:",
            "withdrawn before the run ended (what it wrote before stays written)".into(),
        ),
    }
    for a in &r.approvals {
        line(
            "Approval:",
            format!(
                "{} [{}] for {} at {}",
                a.user,
                a.groups.join(", "),
                a.plan_id,
                a.at.0
            ),
        );
    }
    for result in &r.policy_results {
        line("Policy:", result.clone());
    }
    if let Some(o) = &r.window_override {
        line("Override:", o.clone());
    }
    let o = &r.objects;
    line(
        "Objects:",
        format!(
            "{} applied, {} failed, {} skipped, {} left out; {} over all {}{}",
            o.applied,
            o.failed,
            o.skipped,
            o.left_out,
            o.digest,
            o.applied,
            if o.complete() {
                String::new()
            } else {
                format!(" ({} listed)", o.listed.len())
            }
        ),
    );
    line(
        "Signed:",
        format!(
            "{} by fleetgate {} on cluster {}",
            r.recorded_at, r.controller.version, r.controller.cluster
        ),
    );
    out
}
