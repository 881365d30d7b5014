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

use super::client::{CallBudget, ForgeClient, PullRequest};
use super::{Forge, ForgeError};
use crate::api::GitopsRepository;
use crate::controller::error::{off_runtime, parse_duration};
use crate::controller::fairness::Bucket;
use crate::controller::live::FleetCache;
use crate::fleet::render::{Colour, render_text};
use crate::fleet::{self, PlanOptions, ResolveOptions, rollout};

/// The first line of every preview comment; it names the status context (so that two
/// clusters previewing one pull request keep a comment each) and the head planned.
const MARKER: &str = "<!-- fleetgate-preview";
/// A comment stays well under the hosts' limits (GitHub's is 65536 characters).
const MAX_PLAN_BYTES: usize = 60_000;
/// Pull requests previewed in one round; more wait for a round [`FOLLOW_UP`] later.
const MAX_PREVIEWS_PER_ROUND: usize = 25;
const FOLLOW_UP: Duration = Duration::from_secs(5);
/// Per repository, calls to the forge for previews: at most [`CALLS`] at once, one more
/// every [`CALL_EVERY`]; and previews posted: [`POSTS`] at once, one more every
/// [`POST_EVERY`]. A forge that answers with ever more pull requests, pages or new
/// heads gets no more than that (over two minutes: 359 calls and 119 previews).
const CALLS: u32 = 300;
const CALL_EVERY: Duration = Duration::from_secs(2);
const POSTS: u32 = 100;
const POST_EVERY: Duration = Duration::from_secs(6);

/// What previews plan against, which ran when, and which heads were posted.
pub struct Previews {
    /// The live cluster, as the controller's watch caches see it.
    fleet: FleetCache,
    /// What a repository's fleet may resolve to (`--max-fleet-objects`, `--max-fleet-mib`).
    limits: crate::fleet::Limits,
    /// The module catalog lifecycle pins resolve against, as planning resolves them.
    catalogs: crate::controller::catalog::Catalogs,
    last_run: Mutex<HashMap<String, Instant>>,
    /// Per repository: each open pull request's head last posted. Only pull requests
    /// the last complete listing showed open are kept.
    posted: Mutex<HashMap<String, HashMap<u64, String>>>,
    /// Per repository: what its previews may still call and post.
    budgets: Mutex<HashMap<String, Budget>>,
    /// Repositories with a round under way, and the repository as last seen when
    /// another round was asked for meanwhile: one round at a time per repository, so
    /// that a burst of webhooks never posts a comment twice.
    running: CoalescedRounds<Arc<GitopsRepository>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Previews {
    pub fn new(
        fleet: FleetCache,
        limits: crate::fleet::Limits,
        catalogs: crate::controller::catalog::Catalogs,
    ) -> Self {
        Self {
            fleet,
            limits,
            catalogs,
            last_run: Mutex::default(),
            posted: Mutex::default(),
            budgets: Mutex::default(),
            running: CoalescedRounds::default(),
        }
    }

    /// Drops what is kept for `repo_key`, a repository that no longer exists.
    pub fn forget(&self, repo_key: &str) {
        lock(&self.last_run).remove(repo_key);
        lock(&self.posted).remove(repo_key);
        lock(&self.budgets).remove(repo_key);
    }

    fn budget(&self, repo_key: &str) -> Budget {
        lock(&self.budgets)
            .entry(repo_key.to_owned())
            .or_insert_with(|| {
                let now = Instant::now();
                Budget {
                    calls: Arc::new(Mutex::new(Bucket::new(CALLS, CALL_EVERY, now))),
                    posts: Arc::new(Mutex::new(Bucket::new(POSTS, POST_EVERY, now))),
                }
            })
            .clone()
    }
}

/// What one repository's previews may still call and post.
#[derive(Clone)]
struct Budget {
    calls: CallBudget,
    posts: Arc<Mutex<Bucket>>,
}

/// Starts a preview round for `repo` if it asks for previews and its interval has passed
/// since the last round (or `now` is set: a push arrived). Never waits for it.
pub fn maybe_start(forge: Arc<Forge>, repo: Arc<GitopsRepository>, now: bool) {
    let Some(spec) = repo.spec.forge.as_ref() else {
        return;
    };
    if !spec.pull_request_previews
        || repo.spec.suspend
        || repo
            .spec
            .git_ref
            .as_ref()
            .and_then(|r| r.branch.as_ref())
            .is_none()
    {
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
            forge.report(&key, outcome.as_ref().map(|_| ()));
            // More pull requests than one round previews: another round shortly, its
            // calls and posts still within the repository's budget.
            if matches!(outcome, Ok(More::Yes)) {
                tokio::time::sleep(FOLLOW_UP).await;
                continue;
            }
            match rounds.next() {
                Some(again) => repo = again,
                None => break,
            }
        }
    });
}

/// One round at a time per key. Asking while a round is under way queues one more,
/// with the latest value asked with.
struct CoalescedRounds<T>(Mutex<HashMap<String, Option<T>>>);

impl<T> Default for CoalescedRounds<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T> CoalescedRounds<T> {
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

/// Whether a round left pull requests for another.
#[derive(Debug, PartialEq, Eq)]
enum More {
    Yes,
    No,
}

async fn round(forge: &Forge, repo: &GitopsRepository, key: &str) -> Result<More, ForgeError> {
    let Some(spec) = repo.spec.forge.as_ref() else {
        return Ok(More::No);
    };
    let Some(branch) = repo.spec.git_ref.as_ref().and_then(|r| r.branch.as_deref()) else {
        return Ok(More::No);
    };
    let budget = forge.previews.budget(key);
    let client = forge
        .client_for(repo, spec)
        .await?
        .with_budget(budget.calls.clone());
    let context = forge.context(repo, spec);
    let open = client.open_pull_requests(branch).await?;
    // What was posted for pull requests no longer open is forgotten.
    let mut seen: HashMap<u64, String> = {
        let mut posted = lock(&forge.previews.posted);
        let mine = posted.remove(key).unwrap_or_default();
        open.iter()
            .filter_map(|pr| mine.get(&pr.number).map(|head| (pr.number, head.clone())))
            .collect()
    };
    let mut previewed = 0;
    let mut outcome = Ok(More::No);
    for pr in &open {
        if seen.get(&pr.number) == Some(&pr.head_sha) {
            continue;
        }
        if previewed == MAX_PREVIEWS_PER_ROUND {
            outcome = Ok(More::Yes);
            break;
        }
        let may_post = lock(&budget.posts).take(Instant::now());
        if !may_post {
            outcome = Err(ForgeError::RateLimited);
            break;
        }
        previewed += 1;
        if let Err(e) = preview_one(&forge.previews, repo, &client, &context, pr).await {
            outcome = Err(e);
            break;
        }
        seen.insert(pr.number, pr.head_sha.clone());
    }
    lock(&forge.previews.posted).insert(key.to_owned(), seen);
    outcome
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
    // A preview the catalog cache cannot serve yet resolves no pins: it says what git
    // holds, and the plan itself waits for the catalog.
    let catalog = previews.catalogs.listed().flatten();
    let environment = repo.spec.environment.clone();
    let resolved = off_runtime(move || {
        let options = ResolveOptions {
            expected_account: account.as_deref(),
            limits,
            catalog: catalog.as_ref(),
            environment: environment.as_deref(),
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
    // Staged as the run will be, so that the preview shows its waves and its plan id.
    let policy = match repo.spec.rollout.policy() {
        Ok(policy) => policy,
        Err(e) => return format!("{header}The plan of {short} would be refused: {e}\n"),
    };
    let planned = off_runtime(move || {
        let options = PlanOptions {
            repository: &repository,
            revision: &revision,
            prune,
            exclude: &[],
        };
        let mut plan = fleet::plan(&desired.objects, &live, &options).map_err(|errors| {
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        rollout::stage(&mut plan, &desired.objects, &live, &repository, &policy)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((plan.plan_id.clone(), render_text(&plan, Colour::Never)))
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
        let turns = CoalescedRounds::default();
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
