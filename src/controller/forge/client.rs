//! The git hosts' REST APIs behind one client: Gitea (and Forgejo), GitHub and GitLab
//! differ in paths, auth header and field names, not in what fleetgate asks of them.
//! Every call has a time limit.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::ForgeError;
use crate::api::forge::ForgeProvider;
use crate::controller::fairness::Bucket;
use crate::controller::outbound::Http;

/// The calls a client may still make: shared by every client of one repository's
/// pull-request previews, so that a forge whose answers ask for ever more calls (a
/// thousand pull requests with new heads on every round) gets a bounded number.
pub type CallBudget = Arc<Mutex<Bucket>>;

/// Time limit of one API call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Pull requests and comments asked for per page (Gitea's default maximum).
const PAGE: usize = 50;
/// Most pages read of one listing: 1,000 open pull requests, or the first 1,000 comments
/// of one, looked through for the preview.
pub const MAX_PAGES: usize = 20;

/// A commit status's state, in fleetgate's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

/// An open pull request (merge request) against the tracked branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub head_sha: String,
}

/// A comment: its id and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: u64,
    pub body: String,
}

pub struct ForgeClient {
    http: Http,
    provider: ForgeProvider,
    base: String,
    repository: String,
    token: String,
    budget: Option<CallBudget>,
}

impl ForgeClient {
    pub fn new(
        http: Http,
        provider: ForgeProvider,
        api_url: &str,
        repository: &str,
        token: String,
    ) -> Self {
        let root = api_url.trim_end_matches('/');
        let base = match provider {
            ForgeProvider::Gitea => format!("{root}/api/v1"),
            ForgeProvider::GitHub => root.to_owned(),
            ForgeProvider::GitLab => format!("{root}/api/v4"),
        };
        Self {
            http,
            provider,
            base,
            repository: repository.trim_matches('/').to_owned(),
            token,
            budget: None,
        }
    }

    /// This client's calls each take one from `budget`; none left, a call fails with
    /// [`ForgeError::RateLimited`] without being made.
    pub fn with_budget(mut self, budget: CallBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The repository's path prefix: `/repos/owner/name` or `/projects/<id>`.
    fn repo(&self) -> String {
        match self.provider {
            ForgeProvider::GitLab => {
                format!(
                    "{}/projects/{}",
                    self.base,
                    self.repository.replace('/', "%2F")
                )
            }
            _ => format!("{}/repos/{}", self.base, self.repository),
        }
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value, ForgeError> {
        if let Some(budget) = &self.budget {
            let allowed = budget
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(Instant::now());
            if !allowed {
                return Err(ForgeError::RateLimited);
            }
        }
        let auth = match self.provider {
            ForgeProvider::Gitea => ("authorization", format!("token {}", self.token)),
            ForgeProvider::GitHub => ("authorization", format!("Bearer {}", self.token)),
            ForgeProvider::GitLab => ("private-token", self.token.clone()),
        };
        let mut headers = vec![auth, ("accept", "application/json".to_owned())];
        if self.provider == ForgeProvider::GitHub {
            headers.push(("x-github-api-version", "2022-11-28".to_owned()));
        }
        let body = body.map(|b| serde_json::to_vec(&b).unwrap_or_default());
        let response = self
            .http
            .send(method, url, &headers, body, CALL_TIMEOUT)
            .await?;
        if !response.is_success() {
            return Err(ForgeError::Api {
                status: response.status,
                message: response.text(300),
            });
        }
        if response.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&response.body).map_err(|e| ForgeError::Decode(e.to_string()))
    }

    /// Sets the commit status of `sha` in `context`.
    pub async fn set_status(
        &self,
        sha: &str,
        state: StatusState,
        context: &str,
        description: &str,
    ) -> Result<(), ForgeError> {
        // The hosts cut descriptions at 140 (GitHub) or 255 characters.
        let description: String = description.chars().take(140).collect();
        let (url, body) = match self.provider {
            ForgeProvider::GitLab => {
                let state = match state {
                    StatusState::Pending => "pending",
                    StatusState::Success => "success",
                    StatusState::Failure | StatusState::Error => "failed",
                };
                (
                    format!("{}/statuses/{sha}", self.repo()),
                    json!({"state": state, "name": context, "description": description}),
                )
            }
            _ => {
                let state = match state {
                    StatusState::Pending => "pending",
                    StatusState::Success => "success",
                    StatusState::Failure => "failure",
                    StatusState::Error => "error",
                };
                (
                    format!("{}/statuses/{sha}", self.repo()),
                    json!({"state": state, "context": context, "description": description}),
                )
            }
        };
        self.call(Method::POST, &url, Some(body)).await.map(|_| ())
    }

    /// The open pull requests whose base is `branch`.
    pub async fn open_pull_requests(&self, branch: &str) -> Result<Vec<PullRequest>, ForgeError> {
        #[derive(Deserialize)]
        struct Head {
            sha: String,
        }
        #[derive(Deserialize)]
        struct Base {
            #[serde(rename = "ref")]
            branch: String,
        }
        #[derive(Deserialize)]
        struct Pull {
            number: u64,
            head: Head,
            base: Base,
        }
        #[derive(Deserialize)]
        struct Merge {
            iid: u64,
            sha: String,
        }
        let branch_q = percent(branch);
        let mut open = Vec::new();
        match self.provider {
            ForgeProvider::GitLab => {
                let url = format!(
                    "{}/merge_requests?state=opened&target_branch={branch_q}",
                    self.repo()
                );
                self.each_page(Listing::Paged(&url), |merges: Vec<Merge>| {
                    open.extend(merges.into_iter().map(|m| PullRequest {
                        number: m.iid,
                        head_sha: m.sha,
                    }));
                    ControlFlow::Continue(())
                })
                .await?;
            }
            _ => {
                let url = format!("{}/pulls?state=open&base={branch_q}", self.repo());
                self.each_page(Listing::Paged(&url), |pulls: Vec<Pull>| {
                    open.extend(
                        pulls
                            .into_iter()
                            .filter(|p| p.base.branch == branch)
                            .map(|p| PullRequest {
                                number: p.number,
                                head_sha: p.head.sha,
                            }),
                    );
                    ControlFlow::Continue(())
                })
                .await?;
            }
        }
        // Pages shift when a pull request closes between two reads, and a host may repeat
        // one: each pull request is previewed once per round.
        let mut seen = std::collections::HashSet::new();
        open.retain(|pr| seen.insert(pr.number));
        Ok(open)
    }

    fn comments_url(&self, number: u64) -> String {
        match self.provider {
            ForgeProvider::GitLab => format!("{}/merge_requests/{number}/notes", self.repo()),
            _ => format!("{}/issues/{number}/comments", self.repo()),
        }
    }

    /// The first comment on the pull request that `wanted` accepts, looked for page by
    /// page (a busy pull request has more comments than one page holds).
    pub async fn find_comment(
        &self,
        number: u64,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Option<Comment>, ForgeError> {
        #[derive(Deserialize)]
        struct Raw {
            id: u64,
            body: String,
        }
        let mut found = None;
        let url = self.comments_url(number);
        // Gitea lists one pull request's comments whole: it has no pages to ask for.
        let url = match self.provider {
            ForgeProvider::Gitea => Listing::Whole(&url),
            _ => Listing::Paged(&url),
        };
        self.each_page(url, |comments: Vec<Raw>| {
            found = comments
                .into_iter()
                .find(|c| wanted(&c.body))
                .map(|c| Comment {
                    id: c.id,
                    body: c.body,
                });
            match found {
                Some(_) => ControlFlow::Break(()),
                None => ControlFlow::Continue(()),
            }
        })
        .await?;
        Ok(found)
    }

    /// Reads a listing page by page, each given to `visit`, until a page shows it is the
    /// last, `visit` has what it needs, or [`MAX_PAGES`] were read.
    async fn each_page<T: DeserializeOwned>(
        &self,
        listing: Listing<'_>,
        mut visit: impl FnMut(Vec<T>) -> ControlFlow<()>,
    ) -> Result<(), ForgeError> {
        let url = match listing {
            Listing::Whole(url) => {
                let items: Vec<T> = decode(self.call(Method::GET, url, None).await?)?;
                let _ = visit(items);
                return Ok(());
            }
            Listing::Paged(url) => url,
        };
        let limit = match self.provider {
            ForgeProvider::Gitea => "limit",
            _ => "per_page",
        };
        let separator = if url.contains('?') { '&' } else { '?' };
        let mut first_len = None;
        for page in 1..=MAX_PAGES {
            let url = format!("{url}{separator}{limit}={PAGE}&page={page}");
            let items: Vec<T> = decode(self.call(Method::GET, &url, None).await?)?;
            let len = items.len();
            let full = *first_len.get_or_insert(len);
            if visit(items).is_break() || self.is_last_page(len, full) {
                return Ok(());
            }
        }
        tracing::warn!(
            url,
            pages = MAX_PAGES,
            "listing cut after {MAX_PAGES} pages of {PAGE}"
        );
        Ok(())
    }

    /// Whether a page of `len` items is the last. GitHub and GitLab give the page size
    /// asked for; a Gitea may give fewer (its MAX_RESPONSE_ITEMS), so there only an
    /// empty page or one shorter than the first ends the listing.
    fn is_last_page(&self, len: usize, first_len: usize) -> bool {
        match self.provider {
            ForgeProvider::Gitea => len == 0 || len < first_len,
            _ => len < PAGE,
        }
    }

    /// Posts a new comment on the pull request.
    pub async fn create_comment(&self, number: u64, body: &str) -> Result<(), ForgeError> {
        let url = self.comments_url(number);
        self.call(Method::POST, &url, Some(json!({ "body": body })))
            .await
            .map(|_| ())
    }

    /// Replaces the text of comment `id` on pull request `number`.
    pub async fn edit_comment(&self, number: u64, id: u64, body: &str) -> Result<(), ForgeError> {
        let (method, url) = match self.provider {
            ForgeProvider::GitLab => (Method::PUT, format!("{}/{id}", self.comments_url(number))),
            _ => (
                Method::PATCH,
                format!("{}/issues/comments/{id}", self.repo()),
            ),
        };
        self.call(method, &url, Some(json!({ "body": body })))
            .await
            .map(|_| ())
    }

    /// The file at `path` as of commit `sha`.
    pub async fn file(&self, path: &str, sha: &str) -> Result<Vec<u8>, ForgeError> {
        use base64::Engine;
        #[derive(Deserialize)]
        struct Content {
            content: String,
        }
        let path_q: String = path.split('/').map(percent).collect::<Vec<_>>().join("/");
        let url = match self.provider {
            ForgeProvider::GitLab => format!(
                "{}/repository/files/{}?ref={sha}",
                self.repo(),
                percent(path)
            ),
            _ => format!("{}/contents/{path_q}?ref={sha}", self.repo()),
        };
        let content: Content = decode(self.call(Method::GET, &url, None).await?)?;
        let compact: String = content.content.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| ForgeError::Decode(format!("{path}: {e}")))
    }
}

/// A listing's URL, and whether the host serves it in pages.
enum Listing<'a> {
    Paged(&'a str),
    Whole(&'a str),
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ForgeError> {
    serde_json::from_value(value).map_err(|e| ForgeError::Decode(e.to_string()))
}

/// Percent-encodes everything but unreserved characters.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
