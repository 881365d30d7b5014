//! Plan previews on pull requests: at the repository's interval (or at once on a push
//! webhook), each open pull request against the tracked branch has its head's fleet file
//! planned against the live cluster, with the same planner and text as
//! `kubectl fleet plan`, and posted as one comment that later pushes edit in place.
//! A preview reads the file through the forge's API and the cluster through the
//! controller's caches: it never applies anything and creates no SyncRun.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use tracing::{info, warn};

use super::client::{ForgeClient, PullRequest};
use super::{Forge, ForgeError};
use crate::api::GitopsRepository;
use crate::controller::error::{off_runtime, parse_duration};
use crate::controller::live::FleetCache;
use crate::fleet::render::{Colour, render_text};
use crate::fleet::{self, PlanOptions, ResolveOptions};

/// The first line of every preview comment; it names the status context (so that two
/// clusters previewing one pull request keep a comment each) and the head planned.
const MARKER: &str = "<!-- fleetgate-preview";
/// A comment stays well under the hosts' limits (GitHub's is 65536 characters).
const MAX_PLAN_BYTES: usize = 60_000;

/// What previews plan against, which ran when, and which heads were posted.
pub struct Previews {
    /// The live cluster, as the controller's watch caches see it.
    fleet: FleetCache,
    /// What a repository's fleet may resolve to (`--max-fleet-objects`, `--max-fleet-mib`).
    limits: crate::fleet::Limits,
    last_run: Mutex<HashMap<String, Instant>>,
    posted: Mutex<HashMap<(String, u64), String>>,
    /// Repositories with a round under way, and the repository as last seen when
    /// another round was asked for meanwhile: one round at a time per repository, so
    /// that a burst of webhooks never posts a comment twice.
    running: Turns<Arc<GitopsRepository>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Previews {
    pub fn new(fleet: FleetCache, limits: crate::fleet::Limits) -> Self {
        Self {
            fleet,
            limits,
            last_run: Mutex::default(),
            posted: Mutex::default(),
            running: Turns::default(),
        }
    }

    /// Drops what is kept for `repo_key`, a repository that no longer exists.
    pub fn forget(&self, repo_key: &str) {
        lock(&self.last_run).remove(repo_key);
        lock(&self.posted).retain(|(key, _), _| key != repo_key);
    }
}

/// Starts a preview round for `repo` if it asks for previews and its interval has passed
/// since the last round (or `now` is set: a push arrived). Never waits for it.
pub fn maybe_start(forge: Arc<Forge>, repo: Arc<GitopsRepository>, now: bool) {
    let Some(spec) = repo.spec.forge.as_ref() else {
        return;
    };
    if !spec.pull_request_previews || repo.spec.suspend || repo.spec.git_ref.branch.is_none() {
        return;
    }
    let interval =
        parse_duration("spec.interval", &repo.spec.interval).unwrap_or(Duration::from_secs(60));
    let key = format!(
        "{}/{}",
        repo.namespace().unwrap_or_default(),
        repo.name_any()
    );
    {
        let mut last = lock(&forge.previews.last_run);
        if !now && last.get(&key).is_some_and(|at| at.elapsed() < interval) {
            return;
        }
        last.insert(key.clone(), Instant::now());
    }
    if !forge.previews.running.begin(&key, repo.clone()) {
        return;
    }
    tokio::spawn(async move {
        let mut rounds = Running {
            forge: forge.clone(),
            key: key.clone(),
            ended: false,
        };
        let mut repo = repo;
        loop {
            let outcome = round(&forge, &repo, &key).await;
            if let Err(e) = &outcome {
                warn!(repository = %key, error = %e, "pull-request previews failed; retried at the next interval");
            }
            forge.report(&key, &outcome);
            match rounds.next() {
                Some(again) => repo = again,
                None => break,
            }
        }
    });
}

/// One round at a time per key. Asking while a round is under way queues one more,
/// with the latest value asked with.
struct Turns<T>(Mutex<HashMap<String, Option<T>>>);

impl<T> Default for Turns<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T> Turns<T> {
    /// Whether the caller starts a round for `key` now; otherwise one more is queued.
    fn begin(&self, key: &str, value: T) -> bool {
        let mut turns = lock(&self.0);
        match turns.get_mut(key) {
            Some(queued) => {
                *queued = Some(value);
                false
            }
            None => {
                turns.insert(key.to_owned(), None);
                true
            }
        }
    }

    /// What to run the next round with, if one was queued; else ends the turn, under
    /// the same lock, so that no request falls in between.
    fn next(&self, key: &str) -> Option<T> {
        let mut turns = lock(&self.0);
        if let Some(queued) = turns.get_mut(key).and_then(Option::take) {
            return Some(queued);
        }
        turns.remove(key);
        None
    }

    /// Ends the turn of `key` whatever was queued (its round stopped short).
    fn end(&self, key: &str) {
        lock(&self.0).remove(key);
    }
}

/// The rounds under way for one repository. Dropped before [`Running::next`] ended them
/// (a round that panicked), it ends the repository's turn.
struct Running {
    forge: Arc<Forge>,
    key: String,
    ended: bool,
}

impl Running {
    fn next(&mut self) -> Option<Arc<GitopsRepository>> {
        let next = self.forge.previews.running.next(&self.key);
        self.ended = next.is_none();
        next
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.ended {
            self.forge.previews.running.end(&self.key);
        }
    }
}

async fn round(forge: &Forge, repo: &GitopsRepository, key: &str) -> Result<(), ForgeError> {
    let Some(spec) = repo.spec.forge.as_ref() else {
        return Ok(());
    };
    let Some(branch) = repo.spec.git_ref.branch.as_deref() else {
        return Ok(());
    };
    let client = forge.client_for(repo, spec).await?;
    let context = forge.context(repo, spec);
    for pr in client.open_pull_requests(branch).await? {
        let seen = lock(&forge.previews.posted)
            .get(&(key.to_owned(), pr.number))
            .cloned();
        if seen.as_deref() == Some(pr.head_sha.as_str()) {
            continue;
        }
        preview_one(&forge.previews, repo, &client, &context, &pr).await?;
        lock(&forge.previews.posted).insert((key.to_owned(), pr.number), pr.head_sha.clone());
    }
    Ok(())
}

/// The marker line of `context`'s preview of `head`.
fn marker(context: &str, head: &str) -> String {
    format!("{MARKER} context={context} head={head} -->")
}

async fn preview_one(
    previews: &Previews,
    repo: &GitopsRepository,
    client: &ForgeClient,
    context: &str,
    pr: &PullRequest,
) -> Result<(), ForgeError> {
    let mine = format!("{MARKER} context={context} ");
    let existing = client
        .find_comment(pr.number, |body| body.starts_with(&mine))
        .await?;
    // Already posted for this head (before a restart, or by another replica).
    if existing
        .as_ref()
        .is_some_and(|c| c.body.starts_with(&marker(context, &pr.head_sha)))
    {
        return Ok(());
    }
    let file = client.file(&repo.spec.path, &pr.head_sha).await?;
    let body = format!(
        "{}\n{}",
        marker(context, &pr.head_sha),
        comment(previews, repo, context, &pr.head_sha, file).await
    );
    match existing {
        Some(c) => client.edit_comment(pr.number, c.id, &body).await?,
        None => client.create_comment(pr.number, &body).await?,
    }
    info!(repository = %repo.name_any(), pull_request = pr.number, head = %pr.head_sha, "posted a plan preview");
    Ok(())
}

/// The comment's text: the plan, or what is wrong with the file.
async fn comment(
    previews: &Previews,
    repo: &GitopsRepository,
    context: &str,
    head: &str,
    file: Vec<u8>,
) -> String {
    let short = crate::api::short_revision(head);
    let path = repo.spec.path.clone();
    let header = format!("#### fleetgate plan preview · `{context}`\n");
    let (name_for_file, account) = (path.clone(), repo.spec.account.clone());
    let limits = previews.limits;
    let resolved = off_runtime(move || {
        let options = ResolveOptions {
            expected_account: account.as_deref(),
            limits,
        };
        fleet::desired_state(&name_for_file, &file, &options)
    })
    .await;
    let (desired, warnings) = match resolved {
        Ok(Ok(ok)) => ok,
        Ok(Err(diags)) if diags.is_too_large() => {
            return format!(
                "{header}`{path}` at {short} is larger than this controller accepts for one repository; it would fail with FleetTooLarge:\n\n```text\n{}\n```\n",
                fence_safe(diags.to_string().trim_end())
            );
        }
        Ok(Err(diags)) => {
            let errors = diags.errors().count();
            return format!(
                "{header}`{path}` at {short} is invalid ({errors} errors); merging it would change nothing:\n\n```text\n{}\n```\n",
                fence_safe(diags.to_string().trim_end())
            );
        }
        Err(e) => return format!("{header}The preview of {short} could not be computed: {e}\n"),
    };
    if let Err(e) = previews.fleet.wait_until_ready().await {
        return format!("{header}The preview of {short} could not be computed: {e}\n");
    }
    let live = previews
        .fleet
        .live_objects(&repo.namespace().unwrap_or_default());
    let (repository, revision, prune) = (repo.name_any(), head.to_owned(), repo.spec.prune);
    let planned = off_runtime(move || {
        let options = PlanOptions {
            repository: &repository,
            revision: &revision,
            prune,
            exclude: &[],
        };
        fleet::plan(&desired.objects, &live, &options)
            .map(|plan| (plan.plan_id.clone(), render_text(&plan, Colour::Never)))
            .map_err(|errors| {
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
    })
    .await;
    let warnings = warnings.to_string();
    let warnings = match warnings.trim() {
        "" => String::new(),
        w => format!("\nWarnings:\n```text\n{}\n```\n", fence_safe(w)),
    };
    match planned {
        Ok(Ok((plan_id, text))) => format!(
            "{header}Plan `{plan_id}` of {short} against the live cluster (namespace `{}`, repository `{}`). Once this commit is on the tracked branch (fast-forward), the SyncRun records this plan id if nothing else changed meanwhile; nothing is applied before someone approves it.\n\n```text\n{}\n```\n{warnings}",
            repo.namespace().unwrap_or_default(),
            repo.name_any(),
            fence_safe(cut(&text).trim_end())
        ),
        Ok(Err(errors)) => format!(
            "{header}The plan of {short} would be refused:\n\n```text\n{}\n```\n",
            fence_safe(&errors)
        ),
        Err(e) => format!("{header}The preview of {short} could not be computed: {e}\n"),
    }
}

/// Keeps a fence from being closed by the text inside it.
fn fence_safe(text: &str) -> String {
    text.replace("```", "`\u{200b}``")
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_PLAN_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_PLAN_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n... (cut; `kubectl fleet plan` shows it all)",
        &text[..end]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_round_at_a_time_and_a_request_meanwhile_is_run_after() {
        let turns = Turns::default();
        assert!(turns.begin("a", 1));
        assert!(!turns.begin("a", 2), "a round is under way");
        assert!(!turns.begin("a", 3));
        assert!(turns.begin("b", 1), "another repository has its own turn");
        assert_eq!(turns.next("a"), Some(3), "the latest request, once");
        assert_eq!(turns.next("a"), None, "nothing more: the turn ends");
        assert!(turns.begin("a", 4), "a new turn");
        assert_eq!(turns.next("a"), None);
        assert_eq!(turns.next("b"), None);
    }
}
