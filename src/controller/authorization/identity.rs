//! Whose approval counts. The API server stamps who approved; this decides whether that
//! identity stands for a person the quorum may count. Pure.
//!
//! - A user name that is not a `system:` identity counts: the API server authenticated
//!   it, and the approve verb was checked at admission.
//! - A ServiceAccount (`system:serviceaccount:<namespace>:<name>`) counts only when the
//!   governing policies list it, and never when it belongs to the run's own namespace:
//!   Kubernetes' `edit` role lets every editor of a namespace mint tokens for (and act
//!   as) its ServiceAccounts, and an approver who administers the namespace could make
//!   one to count twice.
//! - Any other `system:` user (nodes, control-plane components, `system:anonymous`) is
//!   not a person and never counts.

use crate::api::governance::ServiceAccountRef;

const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// An approving identity, as the API server names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    /// An authenticated user.
    Person(&'a str),
    /// `system:serviceaccount:<namespace>:<name>`.
    ServiceAccount { namespace: &'a str, name: &'a str },
    /// Another `system:` identity.
    System(&'a str),
}

impl<'a> Identity<'a> {
    pub fn of(user: &'a str) -> Self {
        if let Some(rest) = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)
            && let Some((namespace, name)) = rest.split_once(':')
        {
            return Identity::ServiceAccount { namespace, name };
        }
        if user.starts_with("system:") {
            return Identity::System(user);
        }
        Identity::Person(user)
    }
}

/// Why an approval does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ineligible {
    #[error(
        "{user} is a ServiceAccount of this namespace: anyone who may edit here can act as it, so its approval never counts; a person must approve"
    )]
    SameNamespace { user: String },
    #[error(
        "{user} is a ServiceAccount that no governing GovernancePolicy lists in spec.approvals.serviceAccounts, so its approval does not count; a person must approve"
    )]
    Unlisted { user: String },
    #[error("{user} is a system identity, not a person; its approval does not count")]
    System { user: String },
    #[error(
        "{user} wrote this plan's source ({identity}, in a commit since the revision last applied) and the governance policy separates duties; another approver must approve"
    )]
    Author { user: String, identity: String },
    #[error(
        "{user}'s approval cannot count: this plan was recorded before separation of duties applied, so who wrote it is not known; ask for a sync to plan it afresh"
    )]
    AuthorsUnknown { user: String },
}

/// Whether `user`'s approval of a run in `namespace` counts, where `accepted` are the
/// ServiceAccounts the governing policies list.
pub fn eligible(
    user: &str,
    namespace: &str,
    accepted: &[ServiceAccountRef],
) -> Result<(), Ineligible> {
    match Identity::of(user) {
        Identity::Person(_) => Ok(()),
        Identity::System(_) => Err(Ineligible::System {
            user: user.to_owned(),
        }),
        Identity::ServiceAccount { namespace: ns, .. } if ns == namespace => {
            Err(Ineligible::SameNamespace {
                user: user.to_owned(),
            })
        }
        Identity::ServiceAccount {
            namespace: ns,
            name,
        } => {
            if accepted.iter().any(|a| a.namespace == ns && a.name == name) {
                Ok(())
            } else {
                Err(Ineligible::Unlisted {
                    user: user.to_owned(),
                })
            }
        }
    }
}

/// The ServiceAccounts that count under every policy that lists some: each policy that
/// sets the list narrows it (the strictest combination), a policy that does not set it
/// has no say.
pub fn combine(lists: &[&[ServiceAccountRef]]) -> Vec<ServiceAccountRef> {
    let Some((first, rest)) = lists.split_first() else {
        return Vec::new();
    };
    first
        .iter()
        .filter(|sa| rest.iter().all(|l| l.contains(sa)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(namespace: &str, name: &str) -> ServiceAccountRef {
        ServiceAccountRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn people_count_and_service_accounts_only_when_listed_elsewhere() {
        assert_eq!(eligible("bob", "ta", &[]), Ok(()));
        assert_eq!(
            Identity::of("system:serviceaccount:ta:bob-bot"),
            Identity::ServiceAccount {
                namespace: "ta",
                name: "bob-bot"
            }
        );
        // The namespace's own ServiceAccounts never count, listed or not.
        let own = sa("ta", "bob-bot");
        assert!(matches!(
            eligible(&own.user_name(), "ta", std::slice::from_ref(&own)),
            Err(Ineligible::SameNamespace { .. })
        ));
        let ci = sa("ci", "release-bot");
        assert!(matches!(
            eligible(&ci.user_name(), "ta", &[]),
            Err(Ineligible::Unlisted { .. })
        ));
        assert_eq!(
            eligible(&ci.user_name(), "ta", std::slice::from_ref(&ci)),
            Ok(())
        );
        // A name that merely looks alike is not the listed one.
        assert!(eligible("system:serviceaccount:ci:release-bot-2", "ta", &[ci]).is_err());
        for user in [
            "system:anonymous",
            "system:node:n1",
            "system:serviceaccount:",
        ] {
            assert!(
                matches!(eligible(user, "ta", &[]), Err(Ineligible::System { .. })),
                "{user}"
            );
        }
    }

    #[test]
    fn listed_service_accounts_combine_to_the_strictest() {
        let (a, b) = (sa("ci", "a"), sa("ci", "b"));
        assert_eq!(combine(&[]), vec![]);
        assert_eq!(
            combine(&[&[a.clone(), b.clone()]]),
            vec![a.clone(), b.clone()]
        );
        assert_eq!(
            combine(&[&[a.clone(), b.clone()], std::slice::from_ref(&b)]),
            vec![b.clone()]
        );
        assert_eq!(combine(&[&[a], &[b], &[]]), vec![]);
    }
}
