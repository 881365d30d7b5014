//! Where a revision came from, checked before it is planned: the repository's trusted
//! keys (a labelled Secret), the signatures its `spec.verify` asks for, and what the run
//! records of its commit. An unverified revision is refused with a stable reason and
//! never planned.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};

use super::error::{Error, Result};
use super::gitsource::{self, GitWork};
use super::governance;
use crate::api::provenance::{
    CommitRange, GitPerson, RunCommit, VerifiedSignature, VerifiedTag, VerifyMode, VerifySpec,
};
use crate::api::{GitopsRepository, labels};
use crate::source::verify::{Signer, TrustedKeys, VerifyError};
use crate::source::{self, GitRef, Person, SourceError, Verification};

/// The trusted keys `spec.verify.secretRef` names: only a Secret that carries the
/// trusted-keys label (which the chart lets only approvers write) is read.
async fn trusted_keys(
    client: &Client,
    namespace: &str,
    verify: &VerifySpec,
) -> Result<Result<TrustedKeys, VerifyError>> {
    let name = &verify.secret_ref.name;
    let refused = |message: String| {
        Ok(Err(VerifyError::InvalidTrustedKeys {
            entry: format!("Secret {name}"),
            line: None,
            message,
        }))
    };
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| Error::Secret {
            name: name.clone(),
            message: e.to_string(),
        })?;
    let Some(secret) = secret else {
        return refused("it does not exist".into());
    };
    if !labelled_trusted(&secret) {
        return refused(format!(
            "it is not labelled {}=true, so it is not read as trusted keys",
            labels::TRUSTED_KEYS
        ));
    }
    let data = secret.data.unwrap_or_default();
    Ok(TrustedKeys::parse(
        data.iter().map(|(k, v)| (k.as_str(), v.0.as_slice())),
    ))
}

/// Whether `secret` carries the trusted-keys label, which the chart lets only approvers
/// write: the only Secrets whose keys count, for fleetgate's own checks and Flux's.
fn labelled_trusted(secret: &Secret) -> bool {
    secret
        .labels()
        .get(labels::TRUSTED_KEYS)
        .map(String::as_str)
        == Some("true")
}

/// What the run records of `revision` (fetched into the repository's cache already):
/// its author and committer, and under `spec.verify` its verified signers; or why it is
/// not verified.
pub async fn of_revision(
    git: &GitWork,
    client: &Client,
    repo: &GitopsRepository,
    revision: &str,
) -> Result<Result<RunCommit, VerifyError>> {
    let namespace = repo.namespace().unwrap_or_default();
    let verify = repo.spec.verify.clone();
    let governance = governance::load(client, &namespace, &repo.name_any()).await?;
    // A platform owner's policy may require verification: a repository re-created
    // without spec.verify (editors may delete and create them) gets no plan.
    if verify.is_none()
        && let Some(policy) = governance.verification_required_by
    {
        return Ok(Err(VerifyError::Required { policy }));
    }
    let keys = match &verify {
        None => None,
        Some(v) => match trusted_keys(client, &namespace, v).await? {
            Ok(keys) => Some(keys),
            Err(refused) => return Ok(Err(refused)),
        },
    };
    let tag = match gitsource::git_ref(repo)? {
        GitRef::Tag(t) => Some(t),
        GitRef::Branch(_) | GitRef::Commit(_) => None,
    };
    let mode = verify.as_ref().map(|v| v.mode);
    let cache = git.cache_path(&namespace, &repo.name_any());
    // Separation of duties reads who wrote the commits since the revision last applied:
    // their history is fetched when the (shallow) cache lacks it.
    let since = governance.separation.is_some().then(|| {
        repo.status
            .as_ref()
            .and_then(|s| s.last_applied_revision.clone())
    });
    if let Some(Some(from)) = since.as_ref().filter(|f| f.as_deref() != Some(revision)) {
        let (c, from) = (cache.clone(), from.clone());
        let held = tokio::task::spawn_blocking(move || source::has_history(&c, &from))
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        // Without the history the range is not read whole, and says so (one more
        // approver): a failed fetch does not stop the plan.
        if !held && let Err(e) = gitsource::fetch_history(git, client, repo).await {
            tracing::warn!(error = %e, "could not fetch the history since the revision last applied");
        }
    }
    let held = git.cache_lock(&cache).lock_owned().await;
    let revision = revision.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        let _held = held;
        let verification = match (mode, &keys) {
            (Some(mode), Some(keys)) => Some(Verification {
                mode: match mode {
                    VerifyMode::Head => source::VerifyMode::Head,
                    VerifyMode::Tag => source::VerifyMode::Tag,
                    VerifyMode::TagAndHead => source::VerifyMode::TagAndHead,
                },
                keys,
                tag: tag.as_deref(),
            }),
            _ => None,
        };
        let found = source::provenance(&cache, &revision, verification)?;
        let range = match &since {
            Some(from) => Some(source::range(
                &cache,
                from.as_deref(),
                &revision,
                keys.as_ref(),
            )?),
            None => None,
        };
        Ok((found, range, since))
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?;
    match read {
        Ok((found, range, since)) => Ok(Ok(RunCommit {
            range: range.map(|r| CommitRange {
                from: since.flatten(),
                commits: r.commits as u32,
                authors: r.authors,
                committers: r.committers,
                signers: r.signers,
                unverified: r.unverified as u32,
                complete: r.complete,
            }),
            author: person(&found.author),
            committer: person(&found.committer),
            verified: mode,
            signature: found.signer.as_ref().map(signature),
            tag: found.tag.map(|t| VerifiedTag {
                name: t.name,
                tagger: t.tagger.as_ref().map(person),
                signature: signature(&t.signer),
            }),
        })),
        Err(SourceError::Unverified(refused)) => Ok(Err(refused)),
        Err(e) => Err(e.into()),
    }
}

fn person(p: &Person) -> GitPerson {
    let at = chrono::DateTime::from_timestamp(p.at, 0).unwrap_or_default();
    GitPerson {
        name: p.name.clone(),
        email: p.email.clone(),
        at: at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }
}

fn signature(s: &Signer) -> VerifiedSignature {
    VerifiedSignature {
        kind: s.kind.as_str().to_owned(),
        fingerprint: s.fingerprint.clone(),
        signing_subkey: s.signing_subkey.clone(),
        identities: s
            .identities
            .iter()
            .take(10)
            .map(|i| i.chars().take(256).collect())
            .collect(),
    }
}

/// A Flux source's provenance is Flux's: a platform owner's `requireVerified` is met only
/// when Flux verified the artifact (its SourceVerified condition True) with keys from a
/// Secret carrying the trusted-keys label, which only approvers may write: a key Secret
/// a tenant made and named in the Flux source's `verify` vouches for nothing.
pub async fn of_flux_artifact(
    client: &Client,
    repo: &GitopsRepository,
    artifact: &crate::api::provenance::FluxArtifact,
    verify_secret: Option<&str>,
) -> Result<Result<(), VerifyError>> {
    let namespace = repo.namespace().unwrap_or_default();
    let governance = governance::load(client, &namespace, &repo.name_any()).await?;
    let Some(policy) = governance.verification_required_by else {
        return Ok(Ok(()));
    };
    let flux_verified = artifact
        .verified
        .as_deref()
        .is_some_and(|v| v.starts_with("True"));
    let trusted = match verify_secret {
        Some(name) => Api::<Secret>::namespaced(client.clone(), &namespace)
            .get_opt(name)
            .await
            .map_err(|e| Error::Secret {
                name: name.to_owned(),
                message: e.to_string(),
            })?
            .is_some_and(|s| labelled_trusted(&s)),
        None => false,
    };
    if flux_verified && trusted {
        Ok(Ok(()))
    } else {
        Ok(Err(VerifyError::Required { policy }))
    }
}
