//! Counting approvals toward a quorum. Pure: records in, a count out. Only approvals
//! whose identity counts ([`super::identity`]) are counted, each user once.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::identity;
use super::slices::{SliceTallies, Slicing};
use crate::api::governance::ServiceAccountRef;
use crate::api::syncrun::ApprovalRecord;

/// At most this many approval records are kept in a run's status (a plan split by owner
/// may need many: its slices' quorums together).
pub const MAX_RECORDS: usize = 256;

/// What a quorum needs, for the runs of one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    pub required: u32,
    pub from_groups: Vec<String>,
    pub approval_expiry: Option<Duration>,
    /// The runs' namespace: its own ServiceAccounts never count.
    pub namespace: String,
    /// ServiceAccounts whose approvals count (listed by every governing policy that
    /// lists any).
    pub service_accounts: Vec<ServiceAccountRef>,
    /// Under separation of duties: who wrote the plan's commits (their approvals of it
    /// never count).
    pub authors: Authors,
    /// Under a policy's spec.slices: what each slice of the plan needs.
    pub slicing: Option<Slicing>,
}

/// Who may not approve a run's plan (separation of duties).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authors {
    /// The users the plan's identities map to.
    pub users: Vec<Author>,
    /// The plan read git but recorded no range (planned before separation of duties
    /// applied): nobody's approval can count until it is planned afresh.
    pub unknown: bool,
}

/// A user who wrote, committed or signed a plan's commits, and the git identity that
/// says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub user: String,
    pub identity: String,
}

impl Requirement {
    /// Whether `user`'s approval counts toward this quorum.
    pub fn eligible(&self, user: &str) -> Result<(), identity::Ineligible> {
        identity::eligible(user, &self.namespace, &self.service_accounts)?;
        if self.authors.unknown {
            return Err(identity::Ineligible::AuthorsUnknown {
                user: user.to_owned(),
            });
        }
        match self.authors.users.iter().find(|a| a.user == user) {
            Some(author) => Err(identity::Ineligible::Author {
                user: user.to_owned(),
                identity: author.identity.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Where a plan's quorum stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Distinct users whose approval of this plan still counts, in the order they approved.
    pub approvers: Vec<String>,
    /// Groups of `from_groups` no counted approver belongs to.
    pub missing_groups: Vec<String>,
    pub required: u32,
    /// Under a policy's spec.slices: each slice's standing (the general quorum above
    /// counts only for the slices no owner holds).
    pub slices: Option<SliceTallies>,
}

impl Tally {
    pub fn met(&self) -> bool {
        match &self.slices {
            None => self.general_met(),
            Some(slices) => slices.met(self.general_met()),
        }
    }

    fn general_met(&self) -> bool {
        self.approvers.len() as u64 >= u64::from(self.required) && self.missing_groups.is_empty()
    }

    /// The slices of a sliced plan that are approved (none for a plan not sliced).
    pub fn approved_slices(&self) -> Vec<String> {
        self.slices
            .as_ref()
            .map_or_else(Vec::new, |s| s.approved(self.general_met()))
    }

    /// `1/2 approvals (alice)`, and which groups are still missing; per slice for a
    /// sliced plan.
    pub fn describe(&self) -> String {
        let general = self.describe_general();
        match &self.slices {
            None => general,
            Some(slices) => {
                let matters = self.required > 1 || !self.missing_groups.is_empty();
                slices.describe(
                    Some(general.as_str()).filter(|_| matters || !slices.general.is_empty()),
                )
            }
        }
    }

    fn describe_general(&self) -> String {
        let mut s = format!(
            "{}/{} approvals",
            self.approvers.len().min(self.required as usize),
            self.required
        );
        if !self.approvers.is_empty() {
            s.push_str(&format!(" ({})", self.approvers.join(", ")));
        }
        if !self.missing_groups.is_empty() {
            s.push_str(&format!(
                "; still needs an approver from group(s) {}",
                self.missing_groups.join(", ")
            ));
        }
        s
    }
}

/// Whether `record` is too old to count at `now`.
pub fn is_stale(record: &ApprovalRecord, expiry: Option<Duration>, now: Timestamp) -> bool {
    let Some(expiry) = expiry else { return false };
    let age = now.duration_since(record.at.0);
    age.is_positive() && age.unsigned_abs() > expiry
}

/// Counts the approvals of `plan_id`: one per user whose identity counts, none older
/// than the expiry.
pub fn tally(
    records: &[ApprovalRecord],
    plan_id: &str,
    req: &Requirement,
    now: Timestamp,
) -> Tally {
    let mut approvers: Vec<String> = Vec::new();
    let mut groups_seen: Vec<&str> = Vec::new();
    let mut counted: Vec<&ApprovalRecord> = Vec::new();
    for r in records {
        if r.plan_id != plan_id
            || is_stale(r, req.approval_expiry, now)
            || req.eligible(&r.user).is_err()
        {
            continue;
        }
        counted.push(r);
        if !approvers.contains(&r.user) {
            approvers.push(r.user.clone());
        }
        groups_seen.extend(r.groups.iter().map(String::as_str));
    }
    let missing_groups = req
        .from_groups
        .iter()
        .filter(|g| !groups_seen.contains(&g.as_str()))
        .cloned()
        .collect();
    Tally {
        approvers,
        missing_groups,
        required: req.required.max(1),
        slices: req.slicing.as_ref().map(|s| s.tally(&counted)),
    }
}

/// Adds an approval; the same user approving the same plan again keeps the first record
/// (its time included, so approving twice does not extend an approval's life).
/// Returns whether anything was added.
pub fn add(records: &mut Vec<ApprovalRecord>, new: ApprovalRecord) -> bool {
    if records
        .iter()
        .any(|r| r.user == new.user && r.plan_id == new.plan_id)
    {
        return false;
    }
    records.push(new);
    if records.len() > MAX_RECORDS {
        let excess = records.len() - MAX_RECORDS;
        records.drain(..excess);
    }
    true
}

/// Parses the approved-by-groups stamp: groups joined by `,`, each escaped by the
/// admission policy (`\\` for a backslash, `\,` for a comma), so that a group whose
/// name holds a comma is never read as two. Bounded: 64 groups of 253 characters.
pub fn groups(stamp: Option<&String>) -> Vec<String> {
    let Some(stamp) = stamp else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = stamp.chars();
    let mut push = |g: &mut String| {
        let trimmed = g.trim();
        if !trimmed.is_empty() && out.len() < 64 {
            out.push(trimmed.chars().take(253).collect());
        }
        g.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ',' => push(&mut current),
            c => current.push(c),
        }
    }
    push(&mut current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn rec(user: &str, plan: &str, at: i64, groups: &[&str]) -> ApprovalRecord {
        ApprovalRecord {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            plan_id: plan.into(),
            at: Time(Timestamp::from_second(at).unwrap()),
        }
    }

    fn req(required: u32, groups: &[&str], expiry: Option<u64>) -> Requirement {
        Requirement {
            required,
            from_groups: groups.iter().map(|g| g.to_string()).collect(),
            approval_expiry: expiry.map(Duration::from_secs),
            namespace: "ta".into(),
            service_accounts: Vec::new(),
            authors: Default::default(),
            slicing: None,
        }
    }

    #[test]
    fn the_authors_of_a_plan_never_count_toward_its_quorum() {
        let mut r = req(1, &[], None);
        r.authors.users.push(Author {
            user: "ada".into(),
            identity: "e-mail ada@example.com".into(),
        });
        let records = [rec("ada", "p", 1, &[]), rec("bob", "p", 2, &[])];
        let t = tally(&records, "p", &r, Timestamp::from_second(3).unwrap());
        assert_eq!(t.approvers, ["bob"]);
        let refused = r.eligible("ada").unwrap_err().to_string();
        assert!(
            refused.starts_with("ada wrote this plan's source (e-mail ada@example.com"),
            "{refused}"
        );
        assert!(r.eligible("bob").is_ok());
    }

    #[test]
    fn counts_distinct_users_of_the_named_plan_only() {
        let now = Timestamp::from_second(100).unwrap();
        let mut records = vec![];
        assert!(add(&mut records, rec("alice", "p1", 10, &[])));
        assert!(!add(&mut records, rec("alice", "p1", 20, &[])));
        assert_eq!(records[0].at.0.as_second(), 10);
        let t = tally(&records, "p1", &req(2, &[], None), now);
        assert!(!t.met());
        assert_eq!(t.describe(), "1/2 approvals (alice)");
        add(&mut records, rec("bob", "p0", 30, &[]));
        assert!(!tally(&records, "p1", &req(2, &[], None), now).met());
        add(&mut records, rec("bob", "p1", 40, &[]));
        assert!(tally(&records, "p1", &req(2, &[], None), now).met());
        assert!(!tally(&records, "p2", &req(1, &[], None), now).met());
    }

    #[test]
    fn old_approvals_and_missing_groups_do_not_count() {
        let now = Timestamp::from_second(100).unwrap();
        let records = vec![
            rec("alice", "p", 10, &["sre"]),
            rec("bob", "p", 95, &["dev"]),
        ];
        let t = tally(&records, "p", &req(2, &[], Some(30)), now);
        assert_eq!(t.approvers, vec!["bob".to_owned()]);
        let t = tally(&records, "p", &req(2, &["sre", "netops"], None), now);
        assert_eq!(t.missing_groups, vec!["netops".to_owned()]);
        assert!(!t.met());
    }

    #[test]
    fn one_person_and_the_service_accounts_they_can_make_are_one_approver() {
        let now = Timestamp::from_second(100).unwrap();
        let mut records = vec![];
        add(&mut records, rec("bob", "p", 10, &[]));
        add(
            &mut records,
            rec("system:serviceaccount:ta:bob-bot", "p", 20, &["sre"]),
        );
        add(
            &mut records,
            rec("system:serviceaccount:ci:bot", "p", 30, &["sre"]),
        );
        let t = tally(&records, "p", &req(2, &[], None), now);
        assert_eq!(t.approvers, vec!["bob".to_owned()]);
        assert!(!t.met());
        // Groups of an approval that does not count are not seen either.
        assert_eq!(
            tally(&records, "p", &req(1, &["sre"], None), now).missing_groups,
            vec!["sre".to_owned()]
        );
        let listed = Requirement {
            service_accounts: vec![ServiceAccountRef {
                namespace: "ci".into(),
                name: "bot".into(),
            }],
            ..req(2, &[], None)
        };
        let t = tally(&records, "p", &listed, now);
        assert_eq!(t.approvers, ["bob", "system:serviceaccount:ci:bot"]);
        assert!(t.met());
    }

    #[test]
    fn records_stay_bounded() {
        let mut records = vec![];
        for i in 0..(MAX_RECORDS as i64 + 50) {
            add(&mut records, rec(&format!("u{i}"), "p", i, &[]));
        }
        assert_eq!(records.len(), MAX_RECORDS);
        assert_eq!(groups(Some(&" a, ,b ".to_owned())), vec!["a", "b"]);
    }

    #[test]
    fn a_comma_in_a_group_name_does_not_forge_membership() {
        let stamp = |s: &str| groups(Some(&s.to_owned()));
        assert_eq!(stamp("sre, dev"), vec!["sre", "dev"]);
        // The group "x,sre" as the admission policy stamps it.
        assert_eq!(stamp("x\\,sre,dev"), vec!["x,sre", "dev"]);
        assert_eq!(stamp("a\\\\,b"), vec!["a\\", "b"]);
        let requirement = Requirement {
            required: 1,
            from_groups: vec!["sre".into()],
            ..Default::default()
        };
        let mut records = Vec::new();
        let forged = ApprovalRecord {
            groups: stamp("x\\,sre"),
            ..rec("mallory", "p", 1, &[])
        };
        add(&mut records, forged);
        let now = Timestamp::from_second(2).unwrap();
        assert!(!tally(&records, "p", &requirement, now).met());
    }
}
