//! A Flux source as where a repository's fleet file comes from (`spec.sourceRef`): the
//! GitRepository or OCIRepository of the same namespace, its artifact as
//! source-controller serves it. What fleetgate checks itself: the source is Ready and
//! reconciled, the artifact's revision is the one planned, its URL is on a host the
//! platform owner lists (`--flux-artifact-hosts`), its bytes are bounded (packed and
//! inflated) and hash to the digest source-controller recorded, and the fleet file in it
//! is a regular file within the file bound. What it takes from Flux: the revision and
//! Flux's own verification (`SourceVerified`), recorded on the run.

use std::time::Duration;

use hyper::Method;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use sha2::{Digest, Sha256};

use super::context::Context;
use super::error::{Error, Result, off_runtime};
use super::outbound::{Http, OutboundError};
use crate::api::GitopsRepository;
use crate::api::provenance::FluxArtifact;
use crate::api::repository::FluxSourceRef;
use crate::source::flux::{FluxError, file_in_tarball, planned_revision};
use crate::source::policy::UrlPolicy;

/// Flux's source API group and version.
pub const GROUP: &str = "source.toolkit.fluxcd.io";
pub const VERSION: &str = "v1";
/// How far an artifact may inflate, against its packed bound: source code compresses
/// about threefold; a bomb does a thousandfold.
const UNPACKED_PER_PACKED: u64 = 4;

/// What source-controller says of its source's artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    pub url: String,
    /// `<ref>@sha1:<commit>` (git) or `<tag>@sha256:<digest>` (OCI), as Flux writes it.
    pub revision: String,
    /// `sha256:<hex>` of the tarball.
    pub digest: String,
    /// Flux's SourceVerified condition, as `True`/`False` and its reason; absent when the
    /// source verifies nothing.
    pub verified: Option<String>,
    /// The Secret of keys the source's `spec.verify` trusts, when it names one.
    pub verify_secret: Option<String>,
}

impl Artifact {
    /// The revision fleetgate plans and approves: the commit id of a git artifact, the
    /// `sha256:` digest of an OCI one.
    pub fn planned_revision(&self) -> String {
        planned_revision(&self.revision)
    }
}

fn flux(e: FluxError) -> Error {
    Error::Flux(e)
}

/// The source's artifact: the source must exist, be reconciled at its generation and
/// Ready, and carry an artifact.
pub async fn artifact(
    client: &kube::Client,
    namespace: &str,
    source: &FluxSourceRef,
) -> Result<Artifact> {
    let kind = source.kind.as_str();
    let gvk = GroupVersionKind::gvk(GROUP, VERSION, kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, source.kind.plural());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let not_found = || {
        flux(FluxError::NotFound {
            kind,
            name: source.name.clone(),
        })
    };
    let object = match api.get_opt(&source.name).await {
        Ok(Some(object)) => object,
        Ok(None) => return Err(not_found()),
        // Flux is not installed: its kinds are unknown to the API server.
        Err(kube::Error::Api(e)) if e.code == 404 => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    let not_ready = |message: String| {
        flux(FluxError::NotReady {
            kind,
            name: source.name.clone(),
            message,
        })
    };
    let status = object.data.get("status").cloned().unwrap_or_default();
    let condition = |type_: &str| {
        status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
            .cloned()
    };
    let ready = condition("Ready");
    if ready.as_ref().and_then(|c| c["status"].as_str()) != Some("True") {
        let message = ready
            .and_then(|c| c["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "no Ready condition yet".into());
        return Err(not_ready(crate::api::truncate(&message, 512)));
    }
    if status["observedGeneration"].as_i64() != object.metadata.generation {
        return Err(not_ready("its status is of an older generation".into()));
    }
    let artifact = &status["artifact"];
    let field = |name: &str| artifact[name].as_str().map(str::to_owned);
    let (Some(url), Some(revision), Some(digest)) =
        (field("url"), field("revision"), field("digest"))
    else {
        return Err(not_ready("it has no artifact".into()));
    };
    let verified = condition("SourceVerified").map(|c| {
        format!(
            "{}: {}",
            c["status"].as_str().unwrap_or_default(),
            c["reason"].as_str().unwrap_or_default()
        )
    });
    let verify_secret = object.data["spec"]["verify"]["secretRef"]["name"]
        .as_str()
        .map(str::to_owned);
    Ok(Artifact {
        url,
        revision,
        digest,
        verified,
        verify_secret,
    })
}

/// The revision the repository's source serves now.
pub async fn resolve(
    ctx: &Context,
    repo: &GitopsRepository,
    source: &FluxSourceRef,
) -> Result<String> {
    let namespace = repo.namespace().unwrap_or_default();
    Ok(artifact(&ctx.client, &namespace, source)
        .await?
        .planned_revision())
}

/// The fleet file at `spec.path` in the source's artifact, which must still be of
/// `revision`; what the run records of where it came from; and the Secret the source
/// verifies with, if any.
pub async fn read_fleet_file(
    ctx: &Context,
    repo: &GitopsRepository,
    source: &FluxSourceRef,
    revision: &str,
) -> Result<(Vec<u8>, FluxArtifact, Option<String>)> {
    let namespace = repo.namespace().unwrap_or_default();
    let artifact = artifact(&ctx.client, &namespace, source).await?;
    if artifact.planned_revision() != revision {
        return Err(flux(FluxError::Moved {
            kind: source.kind.as_str(),
            name: source.name.clone(),
            now: crate::api::truncate(&artifact.planned_revision(), 128),
            wanted: revision.to_owned(),
        }));
    }
    let settings = &ctx.settings.flux;
    allowed(&artifact.url, &settings.artifact_hosts).map_err(flux)?;
    let max_artifact = settings.max_artifact_bytes;
    // source-controller serves plain HTTP inside the cluster, on a host the platform
    // owner named; no other address is ever reached from here.
    let http = Http::within(UrlPolicy {
        allow_http: true,
        ..Default::default()
    })
    .map_err(|e| flux(FluxError::Unreachable(e.to_string())))?;
    let timeout = crate::controller::error::parse_duration("spec.timeout", &repo.spec.timeout)?;
    let response = http
        .send_within(
            Method::GET,
            &artifact.url,
            &[],
            None,
            timeout.max(Duration::from_secs(1)),
            usize::try_from(max_artifact).unwrap_or(usize::MAX),
        )
        .await
        .map_err(|e| match e {
            OutboundError::TooLarge => flux(FluxError::ArtifactTooLarge { max: max_artifact }),
            e => flux(FluxError::Unreachable(e.category())),
        })?;
    match response.status {
        200..=299 => {}
        404 | 410 => return Err(flux(FluxError::Gone)),
        status => return Err(flux(FluxError::Unreachable(format!("HTTP {status}")))),
    }
    let found = format!(
        "sha256:{}",
        crate::fleet::plan::hex(&Sha256::digest(&response.body))
    );
    if found != artifact.digest {
        return Err(flux(FluxError::DigestMismatch {
            found,
            recorded: crate::api::truncate(&artifact.digest, 128),
        }));
    }
    let path = repo.spec.path.clone();
    let max_file = ctx.git.settings().limits.max_file_bytes;
    let max_unpacked = max_artifact.saturating_mul(UNPACKED_PER_PACKED);
    let body = response.body;
    let bytes = off_runtime(move || file_in_tarball(&body, &path, max_file, max_unpacked))
        .await?
        .map_err(flux)?;
    let recorded = FluxArtifact {
        kind: source.kind.as_str().to_owned(),
        name: source.name.clone(),
        revision: crate::api::truncate(&artifact.revision, 512),
        digest: artifact.digest,
        verified: artifact.verified,
    };
    Ok((bytes, recorded, artifact.verify_secret))
}

/// Whether `url` may be fetched: `http` or `https`, no user information, and its host
/// (and its port, where the entry names one) on `hosts`.
fn allowed(url: &str, hosts: &[String]) -> std::result::Result<(), FluxError> {
    let refused = |host: String| FluxError::HostNotAllowed {
        host: crate::api::truncate(&host, 256),
    };
    let uri: hyper::Uri = url.parse().map_err(|_| refused(url.to_owned()))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(refused(url.to_owned()));
    };
    if !matches!(scheme, "http" | "https") || authority.as_str().contains('@') {
        return Err(refused(authority.to_string()));
    }
    let host = authority.host().trim_end_matches('.');
    let port = uri.port_u16();
    let listed = hosts.iter().any(|entry| {
        let (name, entry_port) = match entry.rsplit_once(':') {
            Some((name, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                (name, p.parse::<u16>().ok())
            }
            _ => (entry.as_str(), None),
        };
        name.trim_end_matches('.').eq_ignore_ascii_case(host)
            && entry_port.is_none_or(|p| Some(p) == port)
    });
    if listed {
        Ok(())
    } else {
        Err(refused(authority.to_string()))
    }
}

#[cfg(test)]
mod tests;
