//! Where a revision came from: the repository's `spec.verify` and what a run records of
//! its commit (author, committer, and the verified signer).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::secret_ref::SecretRef;

/// Which signatures must verify before a revision is planned.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    /// `HEAD` verifies the commit's signature; `Tag` the annotated tag `spec.ref.tag` names (which must point at the commit); `TagAndHEAD` both. Default `HEAD`.
    #[serde(default)]
    pub mode: VerifyMode,
    /// A Secret in the repository's namespace, labelled `gitops.fleetgate.dev/trusted-keys: "true"`, holding the trusted keys: under `allowed_signers`, SSH keys in OpenSSH's allowed-signers format; under every other key, ASCII-armored OpenPGP public keys.
    pub secret_ref: SecretRef,
}

/// Which objects' signatures `spec.verify` checks (Flux's names).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VerifyMode {
    /// The commit the ref resolves to.
    #[default]
    #[serde(rename = "HEAD")]
    Head,
    /// The annotated tag `spec.ref.tag` names.
    Tag,
    /// The tag and the commit.
    #[serde(rename = "TagAndHEAD")]
    TagAndHead,
}

impl VerifyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::Head => "HEAD",
            VerifyMode::Tag => "Tag",
            VerifyMode::TagAndHead => "TagAndHEAD",
        }
    }
}

/// A person as git records them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitPerson {
    /// The name git records (at most 256 characters are kept).
    pub name: String,
    /// The e-mail address git records (at most 256 characters are kept).
    pub email: String,
    /// When, as git records it (RFC 3339, UTC); the writer chooses it, nothing checks it.
    pub at: String,
}

/// A signature that verified against the repository's trusted keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedSignature {
    /// `OpenPGP` or `SSH`.
    pub kind: String,
    /// The trusted key: an OpenPGP certificate's fingerprint (upper-case hex), or an SSH key's `SHA256:` fingerprint.
    pub fingerprint: String,
    /// The OpenPGP subkey that signed, when not the primary key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_subkey: Option<String>,
    /// Who the trusted keys say the key belongs to: the certificate's user IDs, or the principals of its allowed-signers line (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub identities: Vec<String>,
}

/// A verified annotated tag.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedTag {
    /// The tag's name.
    pub name: String,
    /// Who made the tag, as git records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tagger: Option<GitPerson>,
    /// Its verified signature.
    pub signature: VerifiedSignature,
}

/// What a run read of its commit, and what verified it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunCommit {
    /// The commit's author.
    pub author: GitPerson,
    /// The commit's committer.
    pub committer: GitPerson,
    /// The `spec.verify.mode` the commit was verified under; absent when the repository verifies nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<VerifyMode>,
    /// The commit's signature (modes HEAD and TagAndHEAD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<VerifiedSignature>,
    /// The annotated tag's signature (modes Tag and TagAndHEAD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<VerifiedTag>,
    /// Who wrote the commits since the revision last applied (recorded when a GovernancePolicy separates duties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<CommitRange>,
}

/// The commits a plan comes from: reachable from its revision, not from the revision
/// last applied.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitRange {
    /// The revision last applied (absent for a repository's first plan: then the range is the planned commit alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// How many commits the range holds (read up to 500).
    pub commits: u32,
    /// Author e-mail addresses, lower-case (at most 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub authors: Vec<String>,
    /// Committer e-mail addresses, lower-case (at most 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub committers: Vec<String>,
    /// Fingerprints of trusted keys that signed commits of the range (with spec.verify; at most 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub signers: Vec<String>,
    /// Commits of the range no trusted key signed (with spec.verify; under HEAD only the planned commit must verify).
    #[serde(default)]
    pub unverified: u32,
    /// False when the range could not be read whole: no revision was applied before (a first plan), the revision last applied is not an ancestor (history rewritten) or could not be fetched, or more than 500 commits or 100 identities: then its people may be missing.
    pub complete: bool,
}

impl RunCommit {
    /// One line for conditions and Events: who signed, with which key.
    pub fn signed_by(&self) -> Option<String> {
        let described = |s: &VerifiedSignature| match s.identities.first() {
            Some(who) => format!("{} key {} ({who})", s.kind, s.fingerprint),
            None => format!("{} key {}", s.kind, s.fingerprint),
        };
        let commit = self
            .signature
            .as_ref()
            .map(|s| format!("commit signed by {}", described(s)));
        let tag = self
            .tag
            .as_ref()
            .map(|t| format!("tag {} signed by {}", t.name, described(&t.signature)));
        match (commit, tag) {
            (Some(c), Some(t)) => Some(format!("{c}; {t}")),
            (c, t) => c.or(t),
        }
    }
}

/// The Flux artifact a run's fleet file was read from (spec.sourceRef).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FluxArtifact {
    /// GitRepository or OCIRepository.
    pub kind: String,
    /// The source's name.
    pub name: String,
    /// The artifact's revision as Flux writes it (`main@sha1:<commit>`, `<tag>@sha256:<digest>`).
    pub revision: String,
    /// The SHA-256 source-controller recorded for the artifact (`sha256:<hex>`), which the bytes read matched.
    pub digest: String,
    /// Flux's SourceVerified condition (`True: Succeeded`, `False: VerificationError`…); absent when the source verifies nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
}
