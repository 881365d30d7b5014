//! What a SyncRun keeps beside its status: the full plan, and the revision's whole
//! desired state. Each is stored gzip-compressed in ConfigMaps the run owns, split into
//! chunks so that any fleet fits under the 1 MiB object limit.
//!
//! Tenants can write ConfigMaps in their own namespace, so what is read back is never
//! trusted: [`save`] returns a SHA-256 of the content, recorded in the run's status
//! (which only the controller writes), and [`load`] refuses anything else
//! ([`Error::PlanTampered`]).
//!
//! Nothing is ever held whole as JSON: storing serializes straight into the compressor
//! and the hash, refusing content past a bound ([`Error::TooLarge`]); reading back
//! inflates in a stream, first only through the hash (bounded in bytes, kept nowhere),
//! and parses only content whose digest matched, so a gzip bomb in a ConfigMap costs
//! some CPU on the blocking pool and no memory. Both run off the async workers.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::error::{Error, Result};
use crate::api::labels;
use crate::api::{FIELD_MANAGER, REPOSITORY_LABEL, SyncRun, syncrun::FullPlanRef};
use crate::fleet::{FleetObject, Plan};

const KEY: &str = "data.json.gz";
/// Well below the 1 MiB object limit, leaving room for metadata.
const CHUNK_BYTES: usize = 900 * 1024;
/// Without a tighter bound (the CLI, a rollback), at most this much JSON is inflated
/// from one store, whatever the chunks claim. Only CPU: nothing inflated is kept until
/// its digest has matched.
pub const MAX_STORED_BYTES: u64 = 256 * 1024 * 1024;

/// ConfigMap names in chunk order, and the SHA-256 of the stored JSON.
pub struct Saved {
    pub names: Vec<String>,
    pub digest: String,
}

/// The digest recorded for stored content: `sha256:` and the hex of its SHA-256.
pub fn digest(json: &[u8]) -> String {
    format!("sha256:{}", crate::fleet::plan::hex(&Sha256::digest(json)))
}

fn tampered(run: &SyncRun, message: impl Into<String>) -> Error {
    Error::PlanTampered {
        run: run.name_any(),
        message: message.into(),
    }
}

fn store_err(run: &SyncRun, message: impl Into<String>) -> Error {
    Error::PlanStore {
        run: run.name_any(),
        message: message.into(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A run's name and the desired state it applied.
type Baseline = (String, Arc<Vec<FleetObject>>);

/// The desired state of each repository's last applied run, by `namespace/repository`.
pub struct DesiredCache {
    by_repository: Mutex<HashMap<String, Baseline>>,
    /// Stores refused per repository, by the versions of their ConfigMaps, and why:
    /// unchanged, they are refused again without being inflated again.
    refused: Mutex<HashMap<String, (String, String)>>,
    /// What this controller ever stores: a larger store is not one of its own.
    max_bytes: u64,
}

impl DesiredCache {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            by_repository: Mutex::default(),
            refused: Mutex::default(),
            max_bytes,
        }
    }

    pub async fn get(
        &self,
        client: &kube::Client,
        key: &str,
        run: &SyncRun,
    ) -> Result<Arc<Vec<FleetObject>>> {
        if let Some((name, desired)) = lock(&self.by_repository).get(key)
            && *name == run.name_any()
        {
            return Ok(desired.clone());
        }
        let status = run.status.clone().unwrap_or_default();
        let Some(expected) = status.desired_state_digest.as_deref() else {
            return Err(tampered(run, "no digest of the stored content is recorded"));
        };
        let stored = fetch(client, run, &status.desired_state).await?;
        let seen = format!("{}/{}", run.name_any(), stored.versions);
        if let Some((versions, message)) = lock(&self.refused).get(key)
            && *versions == seen
        {
            return Err(tampered(run, message.clone()));
        }
        let desired: Arc<Vec<FleetObject>> = match read(run, stored, expected, self.max_bytes).await
        {
            Ok(desired) => Arc::new(desired),
            Err(Error::PlanTampered { message, .. }) => {
                lock(&self.refused).insert(key.to_owned(), (seen, message.clone()));
                return Err(tampered(run, message));
            }
            Err(e) => return Err(e),
        };
        lock(&self.refused).remove(key);
        lock(&self.by_repository).insert(key.to_owned(), (run.name_any(), desired.clone()));
        Ok(desired)
    }

    /// Drops what is kept for a repository that no longer exists.
    pub fn forget(&self, key: &str) {
        lock(&self.by_repository).remove(key);
        lock(&self.refused).remove(key);
    }
}

/// Content serialized, hashed and compressed, ready to be stored.
pub struct Encoded {
    compressed: Vec<u8>,
    digest: String,
}

/// A writer that hashes and counts what passes through it, and refuses more than `max`.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
    max: u64,
    /// Whether a write was refused for the bound.
    exceeded: bool,
}

impl<W> Hashing<W> {
    fn new(inner: W, max: u64) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            max,
            exceeded: false,
        }
    }

    fn digest(self) -> String {
        format!(
            "sha256:{}",
            crate::fleet::plan::hex(&self.hasher.finalize())
        )
    }
}

/// The error a [`Hashing`] writer gives past its bound.
#[derive(Debug)]
struct PastBound;

impl std::fmt::Display for PastBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("past the bound")
    }
}

impl std::error::Error for PastBound {}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes + buf.len() as u64 > self.max {
            self.exceeded = true;
            return Err(std::io::Error::other(PastBound));
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Serializes `value` straight into the hash and the compressor, never holding its
/// JSON; refused past `max_bytes` of JSON. CPU work: call it off the async workers.
pub fn encode<T: Serialize>(what: &str, value: &T, max_bytes: u64) -> Result<Encoded> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut writer = Hashing::new(gz, max_bytes);
    match serde_json::to_writer(&mut writer, value) {
        Ok(()) => {}
        Err(_) if writer.exceeded => {
            return Err(Error::TooLarge {
                what: what.to_owned(),
                max: max_bytes,
            });
        }
        Err(e) => {
            return Err(Error::PlanStore {
                run: what.to_owned(),
                message: e.to_string(),
            });
        }
    }
    let store = |e: std::io::Error| Error::PlanStore {
        run: what.to_owned(),
        message: e.to_string(),
    };
    let Hashing { inner, hasher, .. } = writer;
    let digest = format!("sha256:{}", crate::fleet::plan::hex(&hasher.finalize()));
    let compressed = inner.finish().map_err(store)?;
    Ok(Encoded { compressed, digest })
}

/// Writes `plan` into ConfigMaps owned by `run` and returns where it is.
pub async fn save_plan(
    client: &kube::Client,
    run: &SyncRun,
    encoded: Encoded,
    actions: usize,
) -> Result<FullPlanRef> {
    let saved = save(client, run, "plan", encoded).await?;
    Ok(FullPlanRef {
        config_maps: saved.names,
        actions: actions as u32,
        digest: Some(saved.digest),
    })
}

/// Reads the plan back, refusing it unless it is byte for byte what was stored.
pub async fn load_plan(client: &kube::Client, run: &SyncRun, at: &FullPlanRef) -> Result<Plan> {
    load(client, run, &at.config_maps, at.digest.as_deref()).await
}

/// Writes `encoded` (see [`encode`]) as `<run>-<what>-<chunk>` ConfigMaps; returns their
/// names in order and the digest to record.
pub async fn save(
    client: &kube::Client,
    run: &SyncRun,
    what: &str,
    encoded: Encoded,
) -> Result<Saved> {
    let ns = run.namespace().unwrap_or_default();
    let Encoded { compressed, digest } = encoded;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let owner = run
        .controller_owner_ref(&())
        .ok_or_else(|| store_err(run, "the SyncRun has no name or uid"))?;
    let mut names = Vec::new();
    for (i, chunk) in compressed.chunks(CHUNK_BYTES).enumerate() {
        let name = format!("{}-{what}-{i}", run.name_any());
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                owner_references: Some(vec![owner.clone()]),
                labels: Some(BTreeMap::from([
                    (labels::SYNCRUN.to_owned(), run.name_any()),
                    (labels::CONTENT.to_owned(), what.to_owned()),
                    (REPOSITORY_LABEL.to_owned(), run.spec.repository.clone()),
                ])),
                ..Default::default()
            },
            binary_data: Some(BTreeMap::from([(
                KEY.to_owned(),
                ByteString(chunk.to_vec()),
            )])),
            ..Default::default()
        };
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await?;
        names.push(name);
    }
    // A re-plan may need fewer chunks than before.
    for stale in list(client, run, Some(what)).await? {
        if !names.contains(&stale) {
            api.delete(&stale, &DeleteParams::default()).await?;
        }
    }
    Ok(Saved { names, digest })
}

/// Reads back what [`save`] wrote to `names`, and checks it against the digest that was
/// recorded. Content without a recorded digest (stored before digests were recorded) is
/// refused too: it cannot be told apart from a forgery.
pub async fn load<T: DeserializeOwned + Send + 'static>(
    client: &kube::Client,
    run: &SyncRun,
    names: &[String],
    expected: Option<&str>,
) -> Result<T> {
    load_within(client, run, names, expected, MAX_STORED_BYTES).await
}

/// [`load`], inflating at most `max_bytes` of JSON: content that inflates to more was
/// never stored by a controller with that bound.
pub async fn load_within<T: DeserializeOwned + Send + 'static>(
    client: &kube::Client,
    run: &SyncRun,
    names: &[String],
    expected: Option<&str>,
    max_bytes: u64,
) -> Result<T> {
    let Some(expected) = expected else {
        return Err(tampered(run, "no digest of the stored content is recorded"));
    };
    let stored = fetch(client, run, names).await?;
    read(run, stored, expected, max_bytes).await
}

/// The chunks of a store, concatenated, and the versions they were read at.
struct Stored {
    compressed: Vec<u8>,
    /// The ConfigMaps' resourceVersions: the same versions hold the same content.
    versions: String,
}

async fn fetch(client: &kube::Client, run: &SyncRun, names: &[String]) -> Result<Stored> {
    let ns = run.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut compressed = Vec::new();
    let mut versions = Vec::new();
    for name in names {
        let cm = match api.get(name).await {
            Ok(cm) => cm,
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                return Err(tampered(run, format!("ConfigMap {name} was deleted")));
            }
            Err(e) => return Err(e.into()),
        };
        versions.push(format!(
            "{name}@{}",
            cm.resource_version().unwrap_or_default()
        ));
        let chunk = cm
            .binary_data
            .and_then(|mut d| d.remove(KEY))
            .ok_or_else(|| tampered(run, format!("ConfigMap {name} has no {KEY}")))?;
        compressed.extend_from_slice(&chunk.0);
    }
    Ok(Stored {
        compressed,
        versions: versions.join(","),
    })
}

/// Checks and parses fetched content on the blocking pool.
async fn read<T: DeserializeOwned + Send + 'static>(
    run: &SyncRun,
    stored: Stored,
    expected: &str,
    max_bytes: u64,
) -> Result<T> {
    let expected = expected.to_owned();
    let decoded =
        tokio::task::spawn_blocking(move || decode(&stored.compressed, &expected, max_bytes))
            .await
            .map_err(|e| store_err(run, format!("reading the stored content stopped: {e}")))?;
    match decoded {
        Ok(value) => Ok(value),
        Err(Refused::Tampered(message)) => Err(tampered(run, message)),
        Err(Refused::Corrupt(message)) => Err(store_err(run, format!("corrupt data: {message}"))),
    }
}

/// Why stored content was not read.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// Not what was stored.
    Tampered(String),
    /// What was stored, but not of the expected shape.
    Corrupt(String),
}

/// Inflates `compressed` through the hash alone (at most `max_bytes`, nothing kept), and
/// parses it, inflating again, only when its digest is `expected`.
fn decode<T: DeserializeOwned>(
    compressed: &[u8],
    expected: &str,
    max_bytes: u64,
) -> Result<T, Refused> {
    let mut hashing = Hashing::new(std::io::sink(), max_bytes);
    let inflated = std::io::copy(&mut flate2::read::GzDecoder::new(compressed), &mut hashing);
    match inflated {
        Ok(_) => {}
        Err(_) if hashing.exceeded => {
            return Err(Refused::Tampered(format!(
                "the stored content decompresses to more than {max_bytes} bytes"
            )));
        }
        Err(e) => {
            return Err(Refused::Tampered(format!(
                "the stored content does not decompress: {e}"
            )));
        }
    }
    let found = hashing.digest();
    if found != expected {
        return Err(Refused::Tampered(format!(
            "the stored content has digest {found}, but {expected} was recorded"
        )));
    }
    let reader =
        std::io::BufReader::with_capacity(64 * 1024, flate2::read::GzDecoder::new(compressed));
    serde_json::from_reader(reader).map_err(|e| Refused::Corrupt(e.to_string()))
}

async fn list(client: &kube::Client, run: &SyncRun, what: Option<&str>) -> Result<Vec<String>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &run.namespace().unwrap_or_default());
    let mut selector = format!("{}={}", labels::SYNCRUN, run.name_any());
    if let Some(what) = what {
        selector.push_str(&format!(",{}={what}", labels::CONTENT));
    }
    Ok(api
        .list_metadata(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .map(|m| m.name_any())
        .collect())
}

/// Deletes a run's ConfigMaps. Garbage collection would do it through the owner
/// reference, but it is not relied on.
pub async fn delete(client: &kube::Client, run: &SyncRun) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &run.namespace().unwrap_or_default());
    for name in list(client, run, None).await? {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects() -> Vec<FleetObject> {
        let text = crate::fleet::synth::fleet_yaml(crate::fleet::synth::Shape::new(50), 1);
        crate::fleet::desired_state("f.yaml", text.as_bytes(), &Default::default())
            .unwrap()
            .0
            .objects
    }

    #[test]
    fn what_is_encoded_reads_back_and_is_hashed_as_its_json() {
        let desired = objects();
        let encoded = encode("desired state", &desired, MAX_STORED_BYTES).unwrap();
        assert_eq!(
            encoded.digest,
            digest(&serde_json::to_vec(&desired).unwrap())
        );
        let back: Vec<FleetObject> =
            decode(&encoded.compressed, &encoded.digest, MAX_STORED_BYTES).unwrap();
        assert_eq!(back, desired);
    }

    #[test]
    fn content_past_the_bound_is_refused_when_stored() {
        let desired = objects();
        let json = serde_json::to_vec(&desired).unwrap().len() as u64;
        assert!(encode("desired state", &desired, json).is_ok());
        match encode("desired state", &desired, json - 1) {
            Err(Error::TooLarge { what, max }) => {
                assert_eq!((what.as_str(), max), ("desired state", json - 1))
            }
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn a_bomb_or_a_forgery_is_refused_without_being_kept() {
        let desired = objects();
        let encoded = encode("desired state", &desired, MAX_STORED_BYTES).unwrap();
        // 64 MiB of zeros in a few dozen KiB, against a bound of 1 MiB.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..64 {
            gz.write_all(&[0u8; 1024 * 1024]).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 256 * 1024, "{}", bomb.len());
        let refused = decode::<Vec<FleetObject>>(&bomb, &encoded.digest, 1024 * 1024);
        assert_eq!(
            refused.unwrap_err(),
            Refused::Tampered("the stored content decompresses to more than 1048576 bytes".into())
        );
        // Well-formed JSON under the bound, but not what was recorded.
        let forged = encode("desired state", &desired[1..].to_vec(), MAX_STORED_BYTES).unwrap();
        let refused =
            decode::<Vec<FleetObject>>(&forged.compressed, &encoded.digest, MAX_STORED_BYTES);
        assert!(
            matches!(&refused, Err(Refused::Tampered(m)) if m.contains("was recorded")),
            "{refused:?}"
        );
        let refused = decode::<Vec<FleetObject>>(b"not gzip", &encoded.digest, MAX_STORED_BYTES);
        assert!(
            matches!(&refused, Err(Refused::Tampered(m)) if m.contains("does not decompress")),
            "{refused:?}"
        );
        // What was recorded, but not of the expected shape.
        let other = encode("plan", &"a string", MAX_STORED_BYTES).unwrap();
        let corrupt =
            decode::<Vec<FleetObject>>(&other.compressed, &other.digest, MAX_STORED_BYTES);
        assert!(matches!(corrupt, Err(Refused::Corrupt(_))), "{corrupt:?}");
    }
}
