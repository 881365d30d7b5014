//! Bounds on what a fleet resolves to, in bytes as well as in objects.
//!
//! A fleet file is small next to what it asks for: one template of 4,000 modules that
//! 4,000 nodes inherit is a 572 KB file and about 230 MiB of desired state once every
//! node carries its own copy (as stored, planned, cached and applied). So the resolved
//! fleet is measured while it is built: per object (modules, metadata entries,
//! serialized bytes) and in total (objects, modules, metadata entries, bytes), and
//! resolution stops at the first object past a bound, with an error located at its
//! declaration. What a bound refuses is marked [`TOO_LARGE`] so that callers can tell
//! "too large for this controller" from "invalid".

use std::io;

use super::diag::{Diagnostics, Loc};
use super::object::{FleetObject, Metadata, Spec};

/// The code of every diagnostic a bound gives (also the SyncRun's reason).
pub const TOO_LARGE: &str = "FleetTooLarge";

/// Objects one fleet may declare by default (`--max-fleet-objects`).
pub const DEFAULT_MAX_OBJECTS: usize = 25_000;
/// Bytes of desired state one fleet may resolve to by default (`--max-fleet-mib`).
pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Serialized bytes of one resolved object. Kubernetes refuses objects past about
/// 1.5 MiB; a fleet object that approaches it is a mistake, not a machine.
pub const MAX_OBJECT_BYTES: u64 = 256 * 1024;
/// Modules of one resolved object (its template's included).
pub const MAX_MODULES_PER_OBJECT: usize = 1_000;
/// Metadata entries of one resolved object (its template's included).
pub const MAX_METADATA_PER_OBJECT: usize = 256;
/// Modules, and metadata entries, per declared object allowed in total on average.
const TOTAL_PER_OBJECT: usize = 40;

/// What one fleet may resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Objects the fleet may declare.
    pub max_objects: usize,
    /// Bytes of the whole desired state, as stored (the JSON of every object).
    pub max_bytes: u64,
    /// Serialized bytes of one object.
    pub max_object_bytes: u64,
    /// Modules of one object.
    pub max_modules_per_object: usize,
    /// Metadata entries of one object.
    pub max_metadata_per_object: usize,
    /// Modules over all objects.
    pub max_modules: usize,
    /// Metadata entries over all objects.
    pub max_metadata: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_OBJECTS, DEFAULT_MAX_BYTES)
    }
}

impl Limits {
    /// The bounds of a controller that accepts `max_objects` objects and `max_bytes` of
    /// desired state per fleet: the per-object bounds are fixed, the totals of modules
    /// and metadata grow with the object count.
    pub fn new(max_objects: usize, max_bytes: u64) -> Self {
        Self {
            max_objects,
            max_bytes,
            max_object_bytes: MAX_OBJECT_BYTES,
            max_modules_per_object: MAX_MODULES_PER_OBJECT,
            max_metadata_per_object: MAX_METADATA_PER_OBJECT,
            max_modules: max_objects.saturating_mul(TOTAL_PER_OBJECT),
            max_metadata: max_objects.saturating_mul(TOTAL_PER_OBJECT),
        }
    }
}

/// Counts what is written to it and keeps nothing.
#[derive(Default)]
struct Counter(u64);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes `object` takes in stored JSON (`{"kind":…,"name":…,"spec":…}`), computed
/// without building the JSON.
pub fn serialized_bytes(object: &FleetObject) -> u64 {
    let mut counter = Counter::default();
    // Plain data always serializes; a failure would only undercount.
    let _ = serde_json::to_writer(&mut counter, &*object.spec);
    let mut name = Counter::default();
    let _ = serde_json::to_writer(&mut name, &object.name);
    // `{"kind":"…","name":,"spec":}`
    counter.0 + name.0 + object.kind().as_str().len() as u64 + 27
}

/// The modules and metadata entries a spec carries.
fn parts(spec: &Spec) -> (usize, usize) {
    match spec {
        Spec::FleetTemplate(t) => (t.modules.len(), t.metadata.len()),
        Spec::FleetNode(n) => (n.modules.len(), n.metadata.len()),
        _ => (0, 0),
    }
}

/// Bytes in MiB, for messages.
fn mib(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 10.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{mib:.1} MiB")
    }
}

/// Bytes with thousands separators, for messages.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The running measure of one resolution: every object is admitted (or refused) as it
/// is built, so that nothing past a bound is ever built.
pub(super) struct Budget<'a> {
    file: &'a str,
    limits: Limits,
    /// Objects the fleet declares.
    declared: usize,
    admitted: usize,
    bytes: u64,
    modules: usize,
    metadata: usize,
    /// Refusals so far; a total once crossed ends the resolution.
    pub diags: Diagnostics,
    over_total: bool,
}

/// Per-object refusals reported before they are summed up.
const MAX_REPORTED: usize = 20;

impl<'a> Budget<'a> {
    /// A budget for a fleet declaring `declared` objects, refused at once when that is
    /// more than the limit (`first_past` locates the first object past it).
    pub fn new(file: &'a str, limits: Limits, declared: usize, first_past: Loc) -> Self {
        let mut budget = Self {
            file,
            limits,
            declared,
            admitted: 0,
            bytes: 0,
            modules: 0,
            metadata: 0,
            diags: Diagnostics::default(),
            over_total: false,
        };
        if declared > limits.max_objects {
            budget.refuse(
                first_past,
                format!(
                    "the fleet declares {declared} fleet objects, more than the {} this controller accepts for one repository (--max-fleet-objects); this is the first past the limit",
                    limits.max_objects
                ),
            );
            budget.over_total = true;
        }
        budget
    }

    /// Whether resolution must stop: a total was crossed.
    pub fn exhausted(&self) -> bool {
        self.over_total
    }

    fn refuse(&mut self, loc: Loc, message: String) {
        let refused = self.diags.errors().count();
        if refused < MAX_REPORTED {
            self.diags.too_large(self.file, loc, message);
        } else if refused == MAX_REPORTED {
            self.diags.too_large(
                self.file,
                loc,
                "more objects are past the per-object bounds; fix the ones above first",
            );
        }
    }

    /// Whether an object that carries at most `modules` modules and `metadata` metadata
    /// entries (an upper bound: what it inherits plus its own) is within the per-object
    /// bounds for certain. If not, the caller counts exactly before building it (a pin
    /// or a key of its own may replace an inherited one), see [`Budget::refuse_counts`].
    pub fn within_counts(&self, modules: usize, metadata: usize) -> bool {
        modules <= self.limits.max_modules_per_object
            && metadata <= self.limits.max_metadata_per_object
    }

    /// Refuses `what` (declared at `loc`) for the exact counts it would carry, if past
    /// the per-object bounds; true when refused.
    pub fn refuse_counts(&mut self, loc: Loc, what: &str, modules: usize, metadata: usize) -> bool {
        let limits = self.limits;
        if modules > limits.max_modules_per_object {
            self.refuse(
                loc,
                format!(
                    "{what} resolves to {modules} modules (its template's included), more than the {} one object may carry",
                    limits.max_modules_per_object
                ),
            );
            return true;
        }
        if metadata > limits.max_metadata_per_object {
            self.refuse(
                loc,
                format!(
                    "{what} resolves to {metadata} metadata entries (its template's included), more than the {} one object may carry",
                    limits.max_metadata_per_object
                ),
            );
            return true;
        }
        false
    }

    /// Measures a built object; true when it is admitted into the desired state.
    pub fn admit(&mut self, loc: Loc, what: &str, object: &FleetObject) -> bool {
        if self.over_total {
            return false;
        }
        let (modules, metadata) = parts(&object.spec);
        if self.refuse_counts(loc, what, modules, metadata) {
            return false;
        }
        let bytes = serialized_bytes(object);
        let limits = self.limits;
        if bytes > limits.max_object_bytes {
            self.refuse(
                loc,
                format!(
                    "{what} resolves to {} bytes, more than the {} one object may take",
                    thousands(bytes),
                    thousands(limits.max_object_bytes)
                ),
            );
            return false;
        }
        self.admitted += 1;
        self.bytes += bytes;
        self.modules += modules;
        self.metadata += metadata;
        let past = if self.bytes > limits.max_bytes {
            Some(format!(
                "{} of desired state, more than the {} this controller accepts for one repository (--max-fleet-mib)",
                mib(self.bytes),
                mib(limits.max_bytes)
            ))
        } else if self.modules > limits.max_modules {
            Some(format!(
                "{} modules, more than the {} this controller accepts for one repository",
                thousands(self.modules as u64),
                thousands(limits.max_modules as u64)
            ))
        } else if self.metadata > limits.max_metadata {
            Some(format!(
                "{} metadata entries, more than the {} this controller accepts for one repository",
                thousands(self.metadata as u64),
                thousands(limits.max_metadata as u64)
            ))
        } else {
            None
        };
        if let Some(past) = past {
            let message = format!(
                "the fleet resolves to more than this controller accepts: with {what}, the {} of its {} objects resolved so far already make {past}; every object is stored, planned and cached in full, so shared templates count once per object that inherits them",
                self.admitted, self.declared
            );
            // Said first, whatever per-object refusals came before.
            self.refuse(loc, message);
            self.over_total = true;
            return false;
        }
        true
    }

    /// The refusals, if any.
    pub fn finish(self) -> Result<(), Diagnostics> {
        if self.diags.has_errors() {
            Err(self.diags)
        } else {
            Ok(())
        }
    }
}

/// Modules a list carries once `own` is merged into `base` (a pin replaces the same
/// name in place), counted without building the list.
pub(super) fn merged_module_count<'m>(
    base: impl Iterator<Item = &'m str>,
    own: impl Iterator<Item = &'m str>,
) -> usize {
    let mut names: std::collections::HashSet<&str> = base.collect();
    names.extend(own);
    names.len()
}

/// Metadata entries once `own` is merged over `base` (a null removes the key), counted
/// without building the map.
pub(super) fn merged_metadata_count(base: &Metadata, own: &[super::model::MetadataEntry]) -> usize {
    let mut keys: std::collections::HashSet<&str> = base.keys().map(String::as_str).collect();
    for (key, value) in own {
        match value.value {
            Some(_) => keys.insert(key.as_str()),
            None => keys.remove(key.as_str()),
        };
    }
    keys.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{FleetNodeSpec, SdwanNetworkSpec};

    fn node(modules: usize, value_len: usize) -> FleetObject {
        let spec = FleetNodeSpec {
            template: "t".into(),
            node_platform: "p".into(),
            architecture: crate::model::Architecture::Amd64,
            modules: (0..modules).map(|i| format!("module-{i:04}")).collect(),
            metadata: [("k".to_owned(), "v".repeat(value_len))]
                .into_iter()
                .collect(),
            region: "r".into(),
            instance_type: "i".into(),
            lifecycle_class: crate::model::LifecycleClass::Persistent,
        };
        FleetObject::new("n", Spec::FleetNode(spec))
    }

    #[test]
    fn serialized_bytes_are_the_stored_json_length() {
        for object in [
            node(3, 5),
            node(0, 0),
            FleetObject::new(
                "net",
                Spec::SdwanNetwork(SdwanNetworkSpec {
                    routing_mode: crate::model::RoutingMode::Ibgp,
                }),
            ),
        ] {
            let stored = serde_json::to_vec(&object).unwrap();
            assert_eq!(serialized_bytes(&object), stored.len() as u64);
        }
    }

    #[test]
    fn a_fleet_past_the_object_count_is_refused_at_the_first_object_past_it() {
        let budget = Budget::new(
            "f.yaml",
            Limits::new(9, DEFAULT_MAX_BYTES),
            10,
            Loc::new(7, 3),
        );
        assert!(budget.exhausted());
        let diags = budget.finish().unwrap_err();
        assert!(diags.is_too_large(), "{diags}");
        assert_eq!(
            diags.to_string(),
            "f.yaml:7:3: error: the fleet declares 10 fleet objects, more than the 9 this controller accepts for one repository (--max-fleet-objects); this is the first past the limit\n"
        );
    }

    #[test]
    fn objects_past_their_own_bounds_are_refused_and_others_admitted() {
        let mut budget = Budget::new("f.yaml", Limits::default(), 3, Loc::default());
        assert!(budget.admit(Loc::new(1, 1), "node `a`", &node(10, 10)));
        assert!(!budget.within_counts(MAX_MODULES_PER_OBJECT + 1, 0));
        assert!(!budget.admit(
            Loc::new(2, 1),
            "node `b`",
            &node(MAX_MODULES_PER_OBJECT + 1, 0)
        ));
        assert!(!budget.admit(Loc::new(3, 1), "node `c`", &node(0, 300 * 1024)));
        assert!(
            !budget.exhausted(),
            "per-object refusals do not stop the rest"
        );
        let text = budget.finish().unwrap_err().to_string();
        assert!(
            text.contains("f.yaml:2:1: error: node `b` resolves to 1001 modules"),
            "{text}"
        );
        assert!(
            text.contains("f.yaml:3:1: error: node `c` resolves to 307,"),
            "{text}"
        );
    }

    #[test]
    fn the_total_is_crossed_once_and_ends_the_resolution() {
        // Each node: 1,000 modules of 14 bytes and a 40 KB label, about 54 KB; 16 MiB
        // holds about 300.
        let mut budget = Budget::new("f.yaml", Limits::default(), 4_001, Loc::default());
        let shared = node(1_000, 40_000);
        let mut admitted = 0;
        for i in 0..4_000 {
            if !budget.admit(Loc::new(i + 10, 3), &format!("node `n{i}`"), &shared) {
                break;
            }
            admitted += 1;
        }
        assert!(budget.exhausted());
        assert!((250..350).contains(&admitted), "{admitted}");
        let diags = budget.finish().unwrap_err();
        assert_eq!(diags.errors().count(), 1);
        let text = diags.to_string();
        assert!(
            text.contains("more than the 16 MiB this controller accepts"),
            "{text}"
        );
        assert!(
            text.contains(&format!("f.yaml:{}:3", admitted + 10)),
            "{text}"
        );
    }

    #[test]
    fn merged_counts_match_what_merging_builds() {
        let base = ["a@1", "b", "c"].map(|m| m.split('@').next().unwrap());
        assert_eq!(
            merged_module_count(base.into_iter(), ["b", "d"].into_iter()),
            4
        );
        let metadata: Metadata = [("x", "1"), ("y", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let own = vec![
            (
                "x".to_owned(),
                crate::model::Spanned::new(None, Loc::default()),
            ),
            (
                "z".to_owned(),
                crate::model::Spanned::new(Some("3".to_owned()), Loc::default()),
            ),
        ];
        assert_eq!(merged_metadata_count(&metadata, &own), 2);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
