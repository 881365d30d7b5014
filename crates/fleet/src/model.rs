//! The fleet file as declared, every value with the position it came from.
//!
//! This is what `parse` produces and `validate` checks. A value that was absent (or
//! null), empty where a name is expected, or malformed is reported by `parse` and is
//! `None` here, so later stages skip it instead of reporting it twice; an empty string
//! never stands for "missing".

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::diag::Loc;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spanned<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> Spanned<T> {
    pub fn new(value: T, loc: Loc) -> Self {
        Self { value, loc }
    }
}

/// The only fleet.yaml format version this build reads.
pub const SUPPORTED_VERSIONS: &[u64] = &[1];

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetFile {
    pub file: String,
    pub account: Option<Spanned<String>>,
    pub templates: Vec<TemplateDecl>,
    pub nodes: Vec<NodeDecl>,
    pub networks: Vec<NetworkDecl>,
    /// Overlays per environment (`environments:`), applied only when a repository names one.
    pub environments: Vec<EnvironmentDecl>,
}

/// One environment's overlay.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvironmentDecl {
    pub loc: Loc,
    pub name: Spanned<String>,
    pub account: Option<Spanned<String>>,
    pub templates: Vec<TemplateOverlay>,
    pub nodes: Vec<NodeOverlay>,
}

/// What an environment changes of one template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateOverlay {
    pub name: Spanned<String>,
    pub node_platform: Option<Spanned<String>>,
    pub modules: Vec<Spanned<ModuleRef>>,
    pub metadata: Vec<MetadataEntry>,
}

/// What an environment changes of one node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeOverlay {
    pub hostname: Spanned<String>,
    pub region: Option<Spanned<String>>,
    pub instance_type: Option<Spanned<String>>,
    pub lifecycle_class: Option<LifecycleClass>,
    pub modules: Vec<Spanned<ModuleRef>>,
    pub metadata: Vec<MetadataEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateDecl {
    pub loc: Loc,
    /// Set when the reader refused one of this template's values: checks that depend on
    /// them (such as "inherits no architecture") are skipped rather than piled on.
    pub refused: bool,
    pub name: Option<Spanned<String>>,
    pub extends: Option<Spanned<String>>,
    pub node_platform: Option<Spanned<String>>,
    pub architecture: Option<Spanned<Architecture>>,
    pub modules: Vec<Spanned<ModuleRef>>,
    /// In file order; the reader already refused duplicate keys.
    pub metadata: Vec<MetadataEntry>,
}

/// One metadata key as written. A null value (`key: ~`) removes the key inherited from
/// the parent template (or, for a node, from its template).
pub type MetadataEntry = (String, Spanned<Option<String>>);

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeDecl {
    pub loc: Loc,
    pub hostname: Option<Spanned<String>>,
    pub template: Option<Spanned<String>>,
    pub region: Option<Spanned<String>>,
    pub instance_type: Option<Spanned<String>>,
    pub lifecycle_class: LifecycleClass,
    pub modules: Vec<Spanned<ModuleRef>>,
    /// In file order; the reader already refused duplicate keys.
    pub metadata: Vec<MetadataEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkDecl {
    pub loc: Loc,
    pub name: Option<Spanned<String>>,
    pub routing_mode: Option<Spanned<RoutingMode>>,
    pub peers: Vec<PeerDecl>,
    pub virtual_ips: Vec<VirtualIpDecl>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerDecl {
    pub loc: Loc,
    pub host: Option<Spanned<String>>,
    pub publicly_reachable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VirtualIpDecl {
    pub loc: Loc,
    pub name: Option<Spanned<String>>,
    pub primary_holder: Option<Spanned<String>>,
    pub failover_holders: Vec<Spanned<String>>,
}

/// Names the values of a closed set of lowercase words, for parsing and error messages.
pub trait Word: Sized + Copy + 'static {
    const ALL: &'static [(&'static str, Self)];

    fn parse_word(text: &str) -> Option<Self> {
        Self::ALL.iter().find(|(w, _)| *w == text).map(|(_, v)| *v)
    }

    fn word(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map(|(w, _)| *w)
            .unwrap_or_default()
    }

    fn words() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().map(|(w, _)| *w)
    }
}

/// CPU architecture of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Amd64,
    Arm64,
}

impl Word for Architecture {
    const ALL: &'static [(&'static str, Self)] = &[("amd64", Self::Amd64), ("arm64", Self::Arm64)];
}

/// Whether a node is kept (persistent) or may be replaced at any time (ephemeral).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleClass {
    #[default]
    Persistent,
    Ephemeral,
}

impl Word for LifecycleClass {
    const ALL: &'static [(&'static str, Self)] = &[
        ("persistent", Self::Persistent),
        ("ephemeral", Self::Ephemeral),
    ];
}

/// How routes are exchanged inside an SD-WAN network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMode {
    Ibgp,
    Ebgp,
    Static,
}

impl Word for RoutingMode {
    const ALL: &'static [(&'static str, Self)] = &[
        ("ibgp", Self::Ibgp),
        ("ebgp", Self::Ebgp),
        ("static", Self::Static),
    ];
}

/// A module reference: `name`, `name@VERSION` or `name@blessed` / `name@live`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModuleRef {
    pub name: String,
    pub pin: Pin,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pin {
    Unpinned,
    /// An exact version, kept as written: never parsed as semver, normalised or ordered.
    Version(String),
    Blessed,
    Live,
}

/// The longest module name (a DNS-1123 subdomain's length).
pub const MAX_MODULE_NAME: usize = 253;
/// The longest version pin; Debian's longest real versions are well under this.
pub const MAX_VERSION: usize = 128;

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pin {
            Pin::Unpinned => write!(f, "{}", self.name),
            Pin::Version(v) => write!(f, "{}@{v}", self.name),
            Pin::Blessed => write!(f, "{}@blessed", self.name),
            Pin::Live => write!(f, "{}@live", self.name),
        }
    }
}

impl ModuleRef {
    /// Parses a module reference, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, pin) = match text.split_once('@') {
            None => (text, Pin::Unpinned),
            Some((name, "blessed")) => (name, Pin::Blessed),
            Some((name, "live")) => (name, Pin::Live),
            Some((name, version)) if is_version(version) => {
                (name, Pin::Version(version.to_owned()))
            }
            Some((name, version)) => {
                return Err(format!(
                    "module `{text}` has an invalid pin `{version}`: a version starts with a digit, \
                     ends with a letter or digit, uses only letters, digits and `.+~:_-`, and is \
                     at most {MAX_VERSION} characters (`{name}@1.26.2`, `{name}@9.6p1`, \
                     `{name}@1:2.3.4-1`); or use `{name}@blessed` or `{name}@live`"
                ));
            }
        };
        if !is_module_name(name) {
            return Err(format!(
                "module name `{name}` is invalid: use lowercase letters, digits, '-', '_' and '.', \
                 starting with a letter or digit, at most {MAX_MODULE_NAME} characters"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            pin,
        })
    }
}

fn is_module_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= MAX_MODULE_NAME
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// A version pin as packagers write them: semver (`1.26.2`, `3.0.13-1`), shorter
/// (`4.5`, `2024.01`), OpenSSH's `9.6p1`, Debian's `1:2.3.4-1` and `1.2.3~rc1`.
pub fn is_version(version: &str) -> bool {
    let bytes = version.as_bytes();
    matches!(bytes.first(), Some(b) if b.is_ascii_digit())
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.len() <= MAX_VERSION
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".+~:_-".contains(b))
}

/// Whether `name` is an RFC 1123 label, as Kubernetes requires of object names here.
pub fn is_dns1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_references() {
        let m = ModuleRef::parse("nginx@1.26.2").unwrap();
        assert_eq!(m.name, "nginx");
        assert_eq!(m.pin, Pin::Version("1.26.2".into()));
        assert_eq!(m.to_string(), "nginx@1.26.2");
        assert_eq!(ModuleRef::parse("chrony").unwrap().pin, Pin::Unpinned);
        assert_eq!(ModuleRef::parse("base@blessed").unwrap().pin, Pin::Blessed);
        assert_eq!(
            ModuleRef::parse("base@live").unwrap().to_string(),
            "base@live"
        );
        assert!(
            ModuleRef::parse("nginx@1.26.")
                .unwrap_err()
                .contains("invalid pin `1.26.`")
        );
        assert!(ModuleRef::parse("nginx@latest").is_err());
        assert!(ModuleRef::parse("nginx@").is_err());
        assert!(ModuleRef::parse("nginx@v1.2").is_err());
        assert!(ModuleRef::parse("nginx@1.2 3").is_err());
        assert!(ModuleRef::parse(&format!("n@1{}", "0".repeat(MAX_VERSION))).is_err());
        assert!(ModuleRef::parse(&format!("{}@1", "n".repeat(MAX_MODULE_NAME + 1))).is_err());
        assert!(
            ModuleRef::parse("Nginx")
                .unwrap_err()
                .contains("module name `Nginx`")
        );
        assert!(ModuleRef::parse("@1.0.0").is_err());
        assert!(ModuleRef::parse("a@b@1.0.0").is_err());
    }

    /// Versions are exact: what the user wrote is what the spec carries, in place.
    #[test]
    fn real_world_versions_are_pinned_as_written() {
        for v in [
            "4.5",
            "1.27",
            "9.6p1",
            "2024.01",
            "1:2.3.4-1",
            "1.2.3~rc1",
            "3.0.13-1",
            "1.26.2",
            "2.0.0+build.7",
            "01.002",
        ] {
            let m = ModuleRef::parse(&format!("pkg@{v}")).unwrap();
            assert_eq!(m.pin, Pin::Version(v.into()));
            assert_eq!(m.to_string(), format!("pkg@{v}"));
        }
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns1123_label("edge-tokyo-01"));
        assert!(is_dns1123_label("a"));
        assert!(!is_dns1123_label(""));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label("a-"));
        assert!(!is_dns1123_label("Edge"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_label(&"a".repeat(63)));
    }

    #[test]
    fn words_round_trip() {
        for w in RoutingMode::words() {
            assert_eq!(RoutingMode::parse_word(w).unwrap().word(), w);
        }
        assert_eq!(Architecture::parse_word("x86"), None);
        assert_eq!(LifecycleClass::default().word(), "persistent");
    }
}
