//! A reference to a Secret, shared by the kinds that name one (a repository's
//! credentials, a forge's token, a notification target's, trusted signing keys): a
//! module of its own so that none of them needs another's.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Secret in the repository's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    /// Name of the Secret.
    pub name: String,
}
