//! One action of an approved plan against the cluster, in one request when nothing
//! got in its way.
//!
//! Whether the target changed since planning is decided from the watch cache: its spec
//! digest against what the plan observed, its repository label against the run's. The
//! write is then conditional on the cached object: a create fails if anything exists,
//! an update (server-side apply carrying `metadata.resourceVersion`) and a delete (with
//! preconditions) fail if the object moved on. Only then, on a 409, or when the cache's
//! answer would refuse the action, is the object read fresh and decided again, so that a
//! cache trailing the API server never causes a wrong refusal and never an overwrite.
//! After a restart an action whose target already holds the desired spec is recorded as
//! applied without being written again. A provider's status writes (the status
//! subresource) move an object's resourceVersion but neither its spec digest nor its
//! generation: a write refused with 409 is decided again on a fresh read, up to three
//! times, and only a spec that really changed since planning is a conflict.

use std::sync::Mutex;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use tokio::time::Instant;

use super::authorization::Authorization;
use super::context::Context;
use super::live::{self, CachedObject, desired_object};
use crate::api::{FIELD_MANAGER, REPOSITORY_LABEL};
use crate::fleet::Operation;
use crate::fleet::plan::{PlannedAction, spec_digest};

/// Why an action was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The object changed (or appeared, or went) since the plan was made.
    #[error("conflict: {object} {what} since the plan was made; not overwritten")]
    Conflict { object: String, what: &'static str },
    /// The object belongs to another repository, or to none.
    #[error("not owned: {object} is managed by {owner}, not `{repository}`; not touched")]
    NotOwned {
        object: String,
        owner: String,
        repository: String,
    },
    /// The API server kept refusing for load (429 after the client's own retries), was
    /// unavailable (503, 504) or could not be reached: worth another try later.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Refused(String),
}

impl WriteError {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Conflict { .. } => "Conflict",
            Self::NotOwned { .. } => "NotOwned",
            Self::Unavailable(_) => "Unavailable",
            Self::Refused(_) => "Refused",
        }
    }
}

fn api_error(e: kube::Error) -> WriteError {
    match &e {
        kube::Error::Api(s) if !matches!(s.code, 429 | 503 | 504) => {
            WriteError::Refused(e.to_string())
        }
        // The server answered for load, or did not answer at all (restarting, say).
        _ => WriteError::Unavailable(e.to_string()),
    }
}

/// Shared by the writers of one run: after the API server refused for load, everyone
/// waits before the next request, and longer each time it happens again (API Priority
/// and Fairness answers 429 when a priority level's queues are full).
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<(Option<Instant>, u32)>,
}

impl Throttle {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);

    /// Waits until no pause is in force.
    pub async fn wait(&self) {
        loop {
            let until = self.state.lock().unwrap_or_else(|p| p.into_inner()).0;
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }

    /// The server refused for load: pause everyone, twice as long as the last time.
    pub fn back_off(&self) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let pause = Self::FIRST
            .saturating_mul(1 << state.1.min(6))
            .min(Self::MAX);
        state.1 = state.1.saturating_add(1);
        state.0 = Some(Instant::now() + pause);
        pause
    }

    /// A write went through: the next refusal starts from the shortest pause again.
    pub fn succeeded(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 = 0;
    }
}

/// What one attempt decided.
enum Step {
    Done(Result<(), WriteError>),
    /// The cached object was not the latest: read it and decide again.
    Reread,
}

/// Where an attempt's view of the object came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    Cache,
    Fresh,
}

/// The target of the actions of one authorized plan, in one namespace, applied for one
/// repository. Made only with the [`Authorization`] the check gave: nothing writes a
/// fleet object without one.
pub struct Target<'a> {
    ctx: &'a Context,
    namespace: &'a str,
    repository: &'a str,
    authorization: &'a Authorization,
}

impl<'a> Target<'a> {
    pub fn new(
        ctx: &'a Context,
        namespace: &'a str,
        repository: &'a str,
        authorization: &'a Authorization,
    ) -> Self {
        Self {
            ctx,
            namespace,
            repository,
            authorization,
        }
    }

    /// The plan whose actions this target writes.
    pub fn plan_id(&self) -> &str {
        self.authorization.plan_id()
    }
}

impl Target<'_> {
    /// Fresh reads of one action's object before a write that keeps failing with 409 is
    /// taken as a conflict.
    const FRESH_READS: usize = 3;

    /// Applies `action`: one conditional request unless the cache was behind.
    pub async fn apply(&self, action: &PlannedAction) -> Result<(), WriteError> {
        let cached = self
            .ctx
            .fleet
            .get(action.kind, self.namespace, &action.name);
        match self.attempt(action, cached.as_deref(), View::Cache).await {
            Step::Done(result) => result,
            Step::Reread => {
                let api = live::api(&self.ctx.client, self.namespace, action.kind);
                // A provider writing the object's status moves its resourceVersion without
                // touching its spec: the write is then decided again on a fresh read (whose
                // spec digest still catches a real change), a few times at most.
                for _ in 0..Self::FRESH_READS {
                    let fresh = api.get_opt(&action.name).await.map_err(api_error)?;
                    match self.attempt(action, fresh.as_ref(), View::Fresh).await {
                        Step::Done(result) => return result,
                        Step::Reread => continue,
                    }
                }
                // Changed again between every read and its write.
                Err(self.conflict(action, "was changed"))
            }
        }
    }

    fn conflict(&self, action: &PlannedAction, what: &'static str) -> WriteError {
        WriteError::Conflict {
            object: action.reference().to_string(),
            what,
        }
    }

    /// The cache's refusals are confirmed with a fresh read; a fresh view's are final.
    fn refuse(&self, view: View, error: WriteError) -> Step {
        match view {
            View::Cache => Step::Reread,
            View::Fresh => Step::Done(Err(error)),
        }
    }

    async fn attempt(
        &self,
        action: &PlannedAction,
        current: Option<&CachedObject>,
        view: View,
    ) -> Step {
        let seen = current.map(Seen::of);
        let refused = |refusal: Refusal| self.refuse(view, refusal.error(action, self.repository));
        match decide(action, seen.as_ref(), self.repository) {
            Decision::AlreadyDone => Step::Done(Ok(())),
            Decision::Refuse(refusal) => refused(refusal),
            Decision::Create => match self.body(action, None) {
                Err(e) => Step::Done(Err(e)),
                Ok(body) => self.create(action, body, view).await,
            },
            Decision::Update { resource_version } => {
                match self.body(action, resource_version.as_deref()) {
                    Err(e) => Step::Done(Err(e)),
                    Ok(body) => self.update(action, body, view).await,
                }
            }
            Decision::Delete { preconditions } => self.delete(action, preconditions).await,
        }
    }

    /// The object `action` writes, labelled for the repository; carrying
    /// `resource_version`, the write is conditional on it.
    fn body(
        &self,
        action: &PlannedAction,
        resource_version: Option<&str>,
    ) -> Result<serde_json::Value, WriteError> {
        let spec = action
            .spec
            .as_deref()
            .ok_or_else(|| WriteError::Refused("the stored plan has no spec".into()))?;
        Ok(desired_object(
            action.kind,
            &action.name,
            self.namespace,
            self.repository,
            spec,
            resource_version,
        ))
    }

    async fn create(&self, action: &PlannedAction, body: serde_json::Value, view: View) -> Step {
        let body: DynamicObject = match serde_json::from_value(body) {
            Ok(b) => b,
            Err(e) => return Step::Done(Err(WriteError::Refused(e.to_string()))),
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let api = live::create_api(&self.ctx.client, self.namespace, action.kind);
        match api.create(&params, &body).await {
            Ok(_) => Step::Done(Ok(())),
            // Exists after all: created before a restart, or by someone else.
            Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => {
                self.refuse(view, self.conflict(action, "was created by someone else"))
            }
            Err(e) => Step::Done(Err(api_error(e))),
        }
    }

    async fn update(&self, action: &PlannedAction, body: serde_json::Value, view: View) -> Step {
        let api = live::api(&self.ctx.client, self.namespace, action.kind);
        // Forced: the digest check is the conflict check, and the write is conditional
        // on the resourceVersion it was made against.
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch(&action.name, &params, &Patch::Apply(&body)).await {
            Ok(_) => Step::Done(Ok(())),
            // The object moved on (its status, say): decide again on a fresh read.
            Err(kube::Error::Api(s)) if s.is_conflict() => Step::Reread,
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                self.refuse(view, self.conflict(action, "was changed"))
            }
            Err(e) => Step::Done(Err(api_error(e))),
        }
    }

    async fn delete(&self, action: &PlannedAction, preconditions: Preconditions) -> Step {
        let api = live::api(&self.ctx.client, self.namespace, action.kind);
        let params = DeleteParams {
            preconditions: Some(preconditions),
            ..Default::default()
        };
        match api.delete(&action.name, &params).await {
            Ok(_) => Step::Done(Ok(())),
            Err(kube::Error::Api(s)) if s.is_not_found() => Step::Done(Ok(())),
            // The object moved on (its status, say): decide again on a fresh read.
            Err(kube::Error::Api(s)) if s.is_conflict() => Step::Reread,
            Err(e) => Step::Done(Err(api_error(e))),
        }
    }
}

/// What a write decision needs of the object as seen (from the cache or a fresh read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Seen {
    /// Its repository label.
    repository: Option<String>,
    /// The digest of its spec.
    digest: Option<String>,
    resource_version: Option<String>,
    uid: Option<String>,
}

impl Seen {
    fn of(object: &CachedObject) -> Self {
        Self {
            repository: object.labels().get(REPOSITORY_LABEL).cloned(),
            digest: object.digest.clone(),
            resource_version: object.resource_version(),
            uid: object.uid(),
        }
    }
}

/// Why an action is not written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// The object changed, appeared or went since planning.
    Changed(&'static str),
    /// It belongs to another repository (or to none): the label it carries.
    NotOwned(Option<String>),
}

impl Refusal {
    fn error(self, action: &PlannedAction, repository: &str) -> WriteError {
        let object = action.reference().to_string();
        match self {
            Refusal::Changed(what) => WriteError::Conflict { object, what },
            Refusal::NotOwned(owner) => WriteError::NotOwned {
                object,
                owner: owner.map_or("no repository".to_owned(), |o| format!("repository `{o}`")),
                repository: repository.to_owned(),
            },
        }
    }
}

/// What to do about one action, the object being as seen.
#[derive(Debug, Clone, PartialEq)]
enum Decision {
    /// The object already holds what the action wanted (applied before an interruption).
    AlreadyDone,
    Refuse(Refusal),
    Create,
    /// Conditional on the resourceVersion seen.
    Update {
        resource_version: Option<String>,
    },
    /// Conditional on the resourceVersion and uid seen.
    Delete {
        preconditions: Preconditions,
    },
}

/// Decides one write, pure: an action only ever touches objects labelled with its own
/// repository, or objects it creates itself (checked again here whatever the plan
/// says), and only if they are as the plan observed them.
fn decide(action: &PlannedAction, seen: Option<&Seen>, repository: &str) -> Decision {
    let desired = action.spec.as_deref().map(spec_digest);
    let owned = |s: &Seen| s.repository.as_deref() == Some(repository);
    let not_owned = |s: &Seen| Decision::Refuse(Refusal::NotOwned(s.repository.clone()));
    let changed = |what| Decision::Refuse(Refusal::Changed(what));
    match (action.operation, seen) {
        (Operation::Create, Some(s)) if owned(s) && s.digest == desired => Decision::AlreadyDone,
        (Operation::Create, Some(_)) => changed("was created by someone else"),
        (Operation::Create, None) => Decision::Create,
        (Operation::Update, None) => changed("was deleted"),
        (Operation::Update, Some(s)) if !owned(s) => not_owned(s),
        (Operation::Update, Some(s)) if s.digest == desired => Decision::AlreadyDone,
        (Operation::Update, Some(s)) if s.digest != action.observed => changed("was changed"),
        (Operation::Update, Some(s)) => Decision::Update {
            resource_version: s.resource_version.clone(),
        },
        (Operation::Delete, None) => Decision::AlreadyDone,
        (Operation::Delete, Some(s)) if !owned(s) => not_owned(s),
        (Operation::Delete, Some(s)) if s.digest != action.observed => changed("was changed"),
        (Operation::Delete, Some(s)) => Decision::Delete {
            preconditions: Preconditions {
                resource_version: s.resource_version.clone(),
                uid: s.uid.clone(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::ObjectKind;
    use crate::fleet::model::RoutingMode;
    use crate::fleet::object::{SdwanNetworkSpec, Spec};

    fn spec(mode: RoutingMode) -> std::sync::Arc<Spec> {
        std::sync::Arc::new(Spec::SdwanNetwork(SdwanNetworkSpec { routing_mode: mode }))
    }

    /// An action on the network `net`, planned against an object holding `observed`.
    fn action(operation: Operation, observed: Option<RoutingMode>) -> PlannedAction {
        PlannedAction {
            kind: ObjectKind::SdwanNetwork,
            name: "net".into(),
            operation,
            level: 0,
            depends_on: Vec::new(),
            spec: (operation != Operation::Delete).then(|| spec(RoutingMode::Ebgp)),
            observed: observed.map(|m| spec_digest(&spec(m))),
            wave: 0,
        }
    }

    /// The object as seen: labelled for `repository`, holding `mode`.
    fn seen(repository: Option<&str>, mode: RoutingMode) -> Seen {
        Seen {
            repository: repository.map(str::to_owned),
            digest: Some(spec_digest(&spec(mode))),
            resource_version: Some("7".into()),
            uid: Some("u1".into()),
        }
    }

    #[test]
    fn a_write_goes_ahead_only_on_an_object_as_planned_and_owned() {
        use RoutingMode::{Ebgp, Ibgp, Static};
        let mine = Some("fleet");
        let create = action(Operation::Create, None);
        let update = action(Operation::Update, Some(Ibgp));
        let delete = action(Operation::Delete, Some(Ibgp));
        let changed = |what| Decision::Refuse(Refusal::Changed(what));
        let cases = [
            (&create, None, Decision::Create),
            (&create, Some(seen(mine, Ebgp)), Decision::AlreadyDone),
            (
                &create,
                Some(seen(mine, Ibgp)),
                changed("was created by someone else"),
            ),
            (
                &create,
                Some(seen(None, Ebgp)),
                changed("was created by someone else"),
            ),
            (&update, None, changed("was deleted")),
            (
                &update,
                Some(seen(mine, Ibgp)),
                Decision::Update {
                    resource_version: Some("7".into()),
                },
            ),
            (&update, Some(seen(mine, Ebgp)), Decision::AlreadyDone),
            (&update, Some(seen(mine, Static)), changed("was changed")),
            (
                &update,
                Some(seen(Some("other"), Ibgp)),
                Decision::Refuse(Refusal::NotOwned(Some("other".into()))),
            ),
            (&delete, None, Decision::AlreadyDone),
            (&delete, Some(seen(mine, Static)), changed("was changed")),
            (
                &delete,
                Some(seen(None, Ibgp)),
                Decision::Refuse(Refusal::NotOwned(None)),
            ),
            (
                &delete,
                Some(seen(mine, Ibgp)),
                Decision::Delete {
                    preconditions: Preconditions {
                        resource_version: Some("7".into()),
                        uid: Some("u1".into()),
                    },
                },
            ),
        ];
        for (action, seen, expected) in cases {
            let decided = decide(action, seen.as_ref(), "fleet");
            assert_eq!(decided, expected, "{:?} on {seen:?}", action.operation);
        }
    }

    #[test]
    fn a_refusal_names_the_object_and_its_owner() {
        let update = action(Operation::Update, None);
        let error = Refusal::NotOwned(Some("other".into())).error(&update, "fleet");
        assert_eq!(
            error.to_string(),
            "not owned: sdwannetwork/net is managed by repository `other`, not `fleet`; not touched"
        );
        let error = Refusal::NotOwned(None).error(&update, "fleet");
        assert!(
            error.to_string().contains("managed by no repository"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn refusals_for_load_pause_everyone_longer_each_time_until_a_write_succeeds() {
        let throttle = Throttle::default();
        let start = Instant::now();
        throttle.wait().await;
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "no pause before a refusal"
        );
        assert_eq!(throttle.back_off(), Duration::from_millis(500));
        let paused = Instant::now();
        throttle.wait().await;
        assert!(
            paused.elapsed() >= Duration::from_millis(450),
            "{:?}",
            paused.elapsed()
        );
        let pauses: Vec<Duration> = (0..7).map(|_| throttle.back_off()).collect();
        assert_eq!(pauses[0], Duration::from_secs(1));
        assert_eq!(pauses[6], Duration::from_secs(30), "capped");
        throttle.succeeded();
        assert_eq!(throttle.back_off(), Duration::from_millis(500));
    }
}
