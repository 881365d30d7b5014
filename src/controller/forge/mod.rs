//! The git host: a commit status for every planned revision (pending while it waits for
//! approval, success once applied, failure when validation or apply failed), and plan
//! previews on pull requests ([`preview`]). Each repository names its host and token in
//! `spec.forge`. Every call has a time limit and runs in the background, retried with
//! backoff: a host that is down never holds up planning or applying; the outcome is the
//! repository's `ForgeReported` condition.

pub mod client;
pub mod preview;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};
use tracing::{debug, warn};

use crate::api::forge::ForgeSpec;
use crate::api::syncrun::Phase;
use crate::api::{GitopsRepository, SyncRun};
use crate::controller::outbound::{Http, OutboundError};
use client::{ForgeClient, StatusState};

/// Attempts per commit status.
const ATTEMPTS: u32 = 5;
/// Runs whose last status is remembered before the map is pruned.
const MAX_POSTED: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("secret {name}: {message}")]
    Secret { name: String, message: String },
    #[error("spec.forge.apiUrl: {0}")]
    UrlNotAllowed(#[from] crate::source::policy::PolicyError),
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    #[error("the forge answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("unexpected answer from the forge: {0}")]
    Decode(String),
    #[error(
        "more calls to the forge for pull-request previews than this controller makes for one repository; the rest wait for a later round"
    )]
    RateLimited,
}

impl ForgeError {
    /// What the repository's condition says: a short category, never the forge's answer
    /// or the transport's error chain (a tenant aims `apiUrl`; the logs have the rest).
    pub fn tenant_message(&self) -> String {
        match self {
            Self::Outbound(e) => e.category(),
            Self::Api { status, .. } => {
                format!(
                    "the forge did not accept the call: {}",
                    crate::controller::outbound::status_category(*status)
                )
            }
            Self::Decode(_) => "the forge's answer was not what its API answers".into(),
            other => other.to_string(),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "KubeError",
            Self::Secret { .. } => "SecretError",
            Self::UrlNotAllowed(e) => e.label(),
            Self::Outbound(e) => e.label(),
            Self::Api { .. } => "ForgeApiError",
            Self::Decode(_) => "ForgeApiError",
            Self::RateLimited => "RateLimited",
        }
    }
}

/// Commit statuses and previews, and how the host last answered per repository.
pub struct Forge {
    client: Client,
    http: Http,
    cluster: String,
    /// The last status asked for per run (uid): not posted again. Pruned to the runs
    /// with a post under way when it grows past [`MAX_POSTED`] (a status asked for
    /// again is only posted again).
    posted: Mutex<HashMap<String, (StatusState, String)>>,
    /// One poster at a time per run, in the order asked: the last state asked wins.
    order: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The last outcome per repository (`namespace/name`): None when it worked.
    health: Mutex<HashMap<String, Option<(&'static str, String)>>>,
    pub(crate) previews: preview::Previews,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Forge {
    pub fn new(client: Client, http: Http, cluster: String, previews: preview::Previews) -> Self {
        Self {
            client,
            http,
            cluster,
            posted: Mutex::default(),
            order: Mutex::default(),
            health: Mutex::default(),
            previews,
        }
    }

    /// The commit status context of `repo`.
    pub fn context(&self, repo: &GitopsRepository, spec: &ForgeSpec) -> String {
        spec.context.clone().unwrap_or_else(|| {
            format!(
                "fleetgate/{}/{}/{}",
                self.cluster,
                repo.namespace().unwrap_or_default(),
                repo.name_any()
            )
        })
    }

    /// An API client for `repo`'s host, with the token from its Secret.
    pub async fn client_for(
        &self,
        repo: &GitopsRepository,
        spec: &ForgeSpec,
    ) -> Result<ForgeClient, ForgeError> {
        let url = spec.api_url.trim();
        // The one URL policy: scheme flags, --allowed-git-hosts, addresses.
        self.http
            .policy()
            .check_request(url, crate::source::policy::Purpose::Forge)?;
        let name = &spec.secret_ref.name;
        let secrets: Api<Secret> =
            Api::namespaced(self.client.clone(), &repo.namespace().unwrap_or_default());
        let secret = secrets
            .get_opt(name)
            .await?
            .ok_or_else(|| ForgeError::Secret {
                name: name.clone(),
                message: "not found".into(),
            })?;
        let token = secret
            .data
            .as_ref()
            .and_then(|d| d.get("token"))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ForgeError::Secret {
                name: name.clone(),
                message: "has no `token` key".into(),
            })?;
        Ok(ForgeClient::new(
            self.http.clone(),
            spec.provider,
            url,
            &spec.repository,
            token,
        ))
    }

    /// Records how the host answered for `repo_key`.
    pub fn report(&self, repo_key: &str, outcome: Result<(), &ForgeError>) {
        let value = outcome.err().map(|e| (e.label(), e.tenant_message()));
        lock(&self.health).insert(repo_key.to_owned(), value);
    }

    /// Drops what is kept for `repo_key`, a repository that no longer exists.
    pub fn forget(&self, repo_key: &str) {
        lock(&self.health).remove(repo_key);
        self.previews.forget(repo_key);
    }

    /// The `ForgeReported` condition of `repo_key`: (status, reason, message), if the host
    /// was called at all.
    pub fn condition(&self, repo_key: &str) -> Option<(bool, &'static str, String)> {
        let health = lock(&self.health);
        match health.get(repo_key)? {
            None => Some((
                true,
                "Reported",
                "the forge accepted the last update".into(),
            )),
            Some((label, message)) => Some((false, label, message.clone())),
        }
    }

    /// Posts the commit status `run`'s phase calls for, once per state, in the background.
    pub async fn run_changed(self: std::sync::Arc<Self>, run: &SyncRun) {
        let Some((state, description)) = status_of(run) else {
            return;
        };
        let uid = run.uid().unwrap_or_default();
        if lock(&self.posted).get(&uid) == Some(&(state, description.clone())) {
            return;
        }
        let ns = run.namespace().unwrap_or_default();
        let repos: Api<GitopsRepository> = Api::namespaced(self.client.clone(), &ns);
        let repo = match repos.get_opt(&run.spec.repository).await {
            Ok(Some(repo)) => repo,
            Ok(None) => return,
            Err(e) => {
                debug!(error = %e, "reading the repository of a SyncRun");
                return;
            }
        };
        let Some(spec) = repo.spec.forge.clone() else {
            return;
        };
        // A commit status is about a commit: an OCI artifact's digest (a Flux source) is
        // none.
        if !crate::api::is_commit_id(&run.spec.revision) {
            return;
        }
        lock(&self.posted).insert(uid.clone(), (state, description.clone()));
        let key = format!("{ns}/{}", repo.name_any());
        let revision = run.spec.revision.clone();
        let forge = self.clone();
        let turn = {
            let mut order = lock(&self.order);
            if order.len() > MAX_POSTED {
                order.retain(|_, m| Arc::strong_count(m) > 1);
            }
            let mut posted = lock(&self.posted);
            if posted.len() > MAX_POSTED {
                posted.retain(|other, _| *other == uid || order.contains_key(other));
            }
            order.entry(uid.clone()).or_default().clone()
        };
        let wanted = (state, description.clone());
        tokio::spawn(async move {
            let _turn = turn.lock().await;
            // A newer state was asked for meanwhile: its own task posts it.
            if lock(&forge.posted).get(&uid) != Some(&wanted) {
                return;
            }
            let context = forge.context(&repo, &spec);
            let mut delay = Duration::from_secs(2);
            for attempt in 1..=ATTEMPTS {
                let outcome = async {
                    let client = forge.client_for(&repo, &spec).await?;
                    client
                        .set_status(&revision, state, &context, &description)
                        .await
                }
                .await;
                forge.report(&key, outcome.as_ref().map(|_| ()));
                match outcome {
                    Ok(()) => return,
                    Err(e) => {
                        warn!(repository = %key, attempt, error = %e, "could not post a commit status");
                        if matches!(
                            e,
                            ForgeError::Secret { .. }
                                | ForgeError::UrlNotAllowed(_)
                                | ForgeError::Outbound(OutboundError::Refused(_))
                        ) {
                            break;
                        }
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
            // Given up: the next change of the run tries again.
            let mut posted = lock(&forge.posted);
            if posted.get(&uid) == Some(&wanted) {
                posted.remove(&uid);
            }
        });
    }
}

/// The commit status a run's phase calls for, and its description.
pub fn status_of(run: &SyncRun) -> Option<(StatusState, String)> {
    let status = run.status.as_ref()?;
    let plan = status.plan_id.clone().unwrap_or_default();
    let counts = status
        .changes
        .as_ref()
        .map(|c| {
            format!(
                "{} to add, {} to change, {} to delete",
                c.add, c.update, c.delete
            )
        })
        .unwrap_or_default();
    let first_line = |m: &Option<String>| {
        m.as_deref()
            .and_then(|m| m.lines().next())
            .unwrap_or_default()
            .to_owned()
    };
    Some(match status.phase? {
        Phase::Planning => (StatusState::Pending, "planning".into()),
        Phase::AwaitingApproval => (
            StatusState::Pending,
            format!("plan {plan} awaiting approval ({counts})"),
        ),
        Phase::Applying => (
            StatusState::Pending,
            format!("applying plan {plan} ({counts})"),
        ),
        Phase::Converging => (
            StatusState::Pending,
            format!("plan {plan} written; waiting for the providers ({counts})"),
        ),
        Phase::Applied => (
            StatusState::Success,
            format!("plan {plan} applied ({counts})"),
        ),
        Phase::Degraded => (StatusState::Failure, first_line(&status.message)),
        Phase::NoChanges => (
            StatusState::Success,
            "no changes: the cluster matches".into(),
        ),
        Phase::Failed => (StatusState::Failure, first_line(&status.message)),
        Phase::Rejected => (StatusState::Failure, format!("plan {plan} rejected")),
        Phase::Superseded => (StatusState::Error, "superseded by a newer revision".into()),
        Phase::Expired => (
            StatusState::Error,
            format!("plan {plan} expired unapproved; planned again"),
        ),
        Phase::Paused => (
            StatusState::Pending,
            format!("plan {plan}: rollout paused for a choice ({counts})"),
        ),
        Phase::Scheduled => (
            StatusState::Pending,
            match status.scheduled_for.as_ref() {
                Some(at) => format!("plan {plan} approved, scheduled for {}", at.0),
                None => format!("plan {plan} approved, waiting for a change window"),
            },
        ),
    })
}
