//! Change windows: when an approved plan may apply. Pure: cron schedules in a time zone,
//! a time in, "open" or "next opening at" out.
//!
//! As Argo CD's sync windows: a window is active from each occurrence of its schedule for
//! its duration; an active deny window blocks; where allow windows exist, one of them
//! must be active.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

use super::Error;
use crate::api::governance::{ChangeWindow, WindowKind};

/// At most this many windows per policy (the CRD says the same).
pub const MAX_WINDOWS: usize = 16;
/// Longest window accepted.
const MAX_DURATION: Duration = Duration::from_secs(31 * 24 * 3600);
/// How far ahead an opening is looked for before giving up.
const HORIZON_STEPS: usize = 256;

/// A window, parsed.
#[derive(Clone)]
pub struct Compiled {
    pub name: String,
    pub kind: WindowKind,
    cron: Cron,
    duration: chrono::Duration,
    tz: Tz,
}

/// Parses a window, or says where it is wrong.
pub fn compile(policy: &str, index: usize, w: &ChangeWindow) -> Result<Compiled, Error> {
    let field = |f: &str| format!("spec.windows[{index}].{f}");
    let cron = Cron::from_str(&w.schedule).map_err(|e| Error::InvalidSpec {
        field: field("schedule"),
        message: format!("`{}`: {e}", crate::api::truncate(&w.schedule, 64)),
    })?;
    let duration = humantime::parse_duration(&w.duration)
        .ok()
        .filter(|d| !d.is_zero() && *d <= MAX_DURATION)
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .ok_or_else(|| Error::InvalidSpec {
            field: field("duration"),
            message: format!(
                "`{}` is not a duration between 1s and 31 days",
                crate::api::truncate(&w.duration, 64)
            ),
        })?;
    let zone = w.time_zone.as_deref().unwrap_or("UTC");
    let tz = Tz::from_str(zone).map_err(|_| Error::InvalidSpec {
        field: field("timeZone"),
        message: format!(
            "`{}` is not an IANA time zone",
            crate::api::truncate(zone, 64)
        ),
    })?;
    // A schedule croner cannot compute an occurrence of (an impossible date such as
    // `0 0 31 2 *`) would make a deny window silently inactive: refused here.
    let local = Utc::now().with_timezone(&tz);
    let next = cron.find_next_occurrence(&local, false).ok();
    if next.is_none_or(|n| n.with_timezone(&Utc) > Utc::now() + chrono::Duration::days(366)) {
        return Err(Error::InvalidSpec {
            field: field("schedule"),
            message: format!(
                "`{}` has no occurrence within a year",
                crate::api::truncate(&w.schedule, 64)
            ),
        });
    }
    Ok(Compiled {
        name: format!("{policy}/windows[{index}]"),
        kind: w.kind,
        cron,
        duration,
        tz,
    })
}

impl Compiled {
    /// The end of this window's occurrence that covers `at`, if one does; Err when the
    /// schedule cannot be computed at `at` (a deny window then counts as active, an
    /// allow window as closed: fail closed).
    fn active_until(&self, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ()> {
        let local = at.with_timezone(&self.tz);
        let start = self
            .cron
            .find_previous_occurrence(&local, true)
            .map_err(|_| ())?;
        let end = start.with_timezone(&Utc) + self.duration;
        Ok((at < end).then_some(end))
    }

    fn next_start(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        Some(next.with_timezone(&Utc))
    }
}

/// Why applying at `at` is not allowed, and from when it would be: None when open.
pub fn blocked(windows: &[Compiled], at: DateTime<Utc>) -> Option<(String, Option<DateTime<Utc>>)> {
    let reason = |t: DateTime<Utc>| -> Option<(String, Option<DateTime<Utc>>)> {
        if let Some(w) = windows
            .iter()
            .filter(|w| w.kind == WindowKind::Deny)
            .find(|w| w.active_until(t) != Ok(None))
        {
            return Some(match w.active_until(t) {
                Ok(end) => (format!("deny window {} is active", w.name), end),
                Err(()) => (
                    format!(
                        "deny window {} cannot be computed at this time and counts as active",
                        w.name
                    ),
                    None,
                ),
            });
        }
        let allows: Vec<&Compiled> = windows
            .iter()
            .filter(|w| w.kind == WindowKind::Allow)
            .collect();
        if !allows.is_empty()
            && !allows
                .iter()
                .any(|w| matches!(w.active_until(t), Ok(Some(_))))
        {
            let next = allows.iter().filter_map(|w| w.next_start(t)).min();
            return Some(("no allow window is active".into(), next));
        }
        None
    };
    let (why, mut candidate) = reason(at)?;
    // The first candidate may fall inside another window: step until every window agrees.
    for _ in 0..HORIZON_STEPS {
        let Some(t) = candidate else { break };
        match reason(t) {
            None => return Some((why, Some(t))),
            Some((_, next)) => candidate = next.filter(|n| *n > t),
        }
    }
    Some((why, None))
}

/// `at` as RFC 3339, for status and messages.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Parses an `apply-after` value (RFC 3339), or says why not.
pub fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!(
                "`{}` is not an RFC 3339 time such as 2026-01-31T22:00:00Z: {e}",
                crate::api::truncate(value, 64)
            )
        })
}

/// Converts chrono's time to the one Kubernetes types carry.
pub fn to_jiff(t: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// Converts a Kubernetes time to chrono's.
pub fn from_jiff(t: k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    Utc.timestamp_opt(t.as_second(), t.subsec_nanosecond().max(0) as u32)
        .single()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(kind: WindowKind, schedule: &str, duration: &str, tz: Option<&str>) -> ChangeWindow {
        ChangeWindow {
            kind,
            schedule: schedule.into(),
            duration: duration.into(),
            time_zone: tz.map(Into::into),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn a_deny_window_blocks_until_it_closes() {
        // Every day 22:00 in Berlin (21:00 UTC in winter), for two hours.
        let w = compile(
            "p",
            0,
            &window(WindowKind::Deny, "0 22 * * *", "2h", Some("Europe/Berlin")),
        )
        .unwrap();
        let (why, open) = blocked(&[w], at("2026-01-10T21:30:00Z")).unwrap();
        assert!(why.contains("deny window p/windows[0]"), "{why}");
        assert_eq!(open, Some(at("2026-01-10T23:00:00Z")));
        let w = compile(
            "p",
            0,
            &window(WindowKind::Deny, "0 22 * * *", "2h", Some("Europe/Berlin")),
        )
        .unwrap();
        assert!(blocked(&[w], at("2026-01-10T20:59:00Z")).is_none());
    }

    #[test]
    fn outside_every_allow_window_waits_for_the_next() {
        let allow = compile(
            "p",
            0,
            &window(WindowKind::Allow, "0 9 * * MON-FRI", "8h", None),
        )
        .unwrap();
        // Saturday: next Monday 09:00 UTC.
        let (_, open) = blocked(&[allow], at("2026-01-10T12:00:00Z")).unwrap();
        assert_eq!(open, Some(at("2026-01-12T09:00:00Z")));
        let allow = compile(
            "p",
            0,
            &window(WindowKind::Allow, "0 9 * * MON-FRI", "8h", None),
        )
        .unwrap();
        let deny = compile("p", 1, &window(WindowKind::Deny, "0 9 12 1 *", "1h", None)).unwrap();
        // That Monday's first hour is denied: open at 10:00.
        let (_, open) = blocked(&[allow, deny], at("2026-01-10T12:00:00Z")).unwrap();
        assert_eq!(open, Some(at("2026-01-12T10:00:00Z")));
    }

    #[test]
    fn malformed_windows_are_located() {
        for (w, field) in [
            (
                window(WindowKind::Deny, "61 * * * *", "1h", None),
                "spec.windows[2].schedule",
            ),
            (
                window(WindowKind::Deny, "", "1h", None),
                "spec.windows[2].schedule",
            ),
            (
                window(WindowKind::Deny, "0 0 31 2 *", "1h", None),
                "spec.windows[2].schedule",
            ),
            (
                window(WindowKind::Deny, "* * * * *", "0s", None),
                "spec.windows[2].duration",
            ),
            (
                window(WindowKind::Deny, "* * * * *", "400d", None),
                "spec.windows[2].duration",
            ),
            (
                window(WindowKind::Deny, "* * * * *", "1h", Some("Mars/Olympus")),
                "spec.windows[2].timeZone",
            ),
        ] {
            match compile("p", 2, &w) {
                Err(Error::InvalidSpec { field: f, .. }) => assert_eq!(f, field),
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("{w:?} compiled"),
            }
        }
        assert!(parse_time("tomorrow").is_err());
        // A valid cron that never occurs is refused, not left silently inactive.
        match compile("p", 0, &window(WindowKind::Deny, "0 0 31 2 *", "1h", None)) {
            Err(e) => assert!(e.to_string().contains("no occurrence"), "{e}"),
            Ok(_) => panic!("an impossible date compiled"),
        }
    }
}
