//! Faults on request, for tests of what is built on the provider contract (health-gated
//! apply, waves, pauses): annotations on fleet objects, read by the lab provider only.
//!
//! - `lab.fleetgate.dev/never-ready: "true"` (any kind it serves): realized, but never
//!   reported Ready (Reconciling, reason Provisioning or Updating), like a machine that
//!   hangs while booting.
//! - `lab.fleetgate.dev/fail-after: <duration>` (FleetNode): reported Ready, then the
//!   duration later the node fails: its links go down (its peers' sessions drop, its
//!   virtual IPs fail over) and it reports Stalled, reason NodeFailed.
//! - `lab.fleetgate.dev/link-drop-after: <duration>` (SdwanPeer): reported Ready, then the
//!   duration later its link drops (set down on the node's side) and it reports
//!   Reconciling, reason LinkDown, until the annotation is removed.
//! - `lab.fleetgate.dev/fault-generation: <n>`: the faults apply only while
//!   metadata.generation is n (a rollback to an earlier spec makes a new generation, so
//!   the fault is then gone), otherwise at every generation.
//!
//! Durations are humantime (`0s`, `30s`, `2m`). The clocks start when the object is first
//! seen Ready at its generation by this run of the provider. A malformed value makes the
//! object Stalled with reason InvalidSpec and a message naming the annotation.

use std::collections::BTreeMap;
use std::time::Duration;

pub const NEVER_READY: &str = "lab.fleetgate.dev/never-ready";
pub const FAIL_AFTER: &str = "lab.fleetgate.dev/fail-after";
pub const LINK_DROP_AFTER: &str = "lab.fleetgate.dev/link-drop-after";
pub const FAULT_GENERATION: &str = "lab.fleetgate.dev/fault-generation";

/// The faults asked of one object at its current generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    pub never_ready: bool,
    pub fail_after: Option<Duration>,
    pub link_drop_after: Option<Duration>,
}

/// Reads the fault annotations of an object at `generation`.
pub fn parse(
    annotations: &BTreeMap<String, String>,
    generation: Option<i64>,
) -> Result<Faults, String> {
    if let Some(at) = annotations.get(FAULT_GENERATION) {
        let at: i64 = at
            .trim()
            .parse()
            .map_err(|_| format!("{FAULT_GENERATION}: `{at}` is not a generation number"))?;
        if generation != Some(at) {
            return Ok(Faults::default());
        }
    }
    let duration = |key: &str| -> Result<Option<Duration>, String> {
        annotations
            .get(key)
            .map(|v| {
                humantime::parse_duration(v.trim())
                    .map_err(|e| format!("{key}: `{v}` is not a duration ({e})"))
            })
            .transpose()
    };
    let never_ready = match annotations.get(NEVER_READY).map(|v| v.trim()) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(format!(
                "{NEVER_READY}: `{other}` is neither true nor false"
            ));
        }
    };
    Ok(Faults {
        never_ready,
        fail_after: duration(FAIL_AFTER)?,
        link_drop_after: duration(LINK_DROP_AFTER)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn faults_are_read_and_scoped_to_a_generation() {
        assert_eq!(parse(&annotations(&[]), Some(1)), Ok(Faults::default()));
        let a = annotations(&[
            (NEVER_READY, "true"),
            (FAIL_AFTER, "30s"),
            (LINK_DROP_AFTER, "0s"),
        ]);
        assert_eq!(
            parse(&a, Some(1)),
            Ok(Faults {
                never_ready: true,
                fail_after: Some(Duration::from_secs(30)),
                link_drop_after: Some(Duration::ZERO),
            })
        );
        let scoped = annotations(&[(FAIL_AFTER, "5s"), (FAULT_GENERATION, "2")]);
        assert_eq!(parse(&scoped, Some(1)), Ok(Faults::default()));
        assert_eq!(
            parse(&scoped, Some(2)).unwrap().fail_after,
            Some(Duration::from_secs(5))
        );
        assert_eq!(parse(&scoped, Some(3)), Ok(Faults::default()));
    }

    #[test]
    fn malformed_faults_name_their_annotation() {
        for (k, v) in [
            (FAIL_AFTER, "soon"),
            (NEVER_READY, "yes"),
            (FAULT_GENERATION, "x"),
        ] {
            let e = parse(&annotations(&[(k, v)]), Some(1)).unwrap_err();
            assert!(e.starts_with(k), "{e}");
        }
    }
}
