//! Where governance rules are evaluated: on a few threads of their own, off the async
//! workers, taking namespaces in turn (a [`FairQueue`]): one tenant's many large plans
//! wait behind each other, not in front of another tenant's. The time budget starts
//! when an evaluation starts, not while it waits its turn; an evaluation past its budget
//! or its cost stops within one step ([`rules::Meter`]) and frees its thread, and one
//! whose caller gave up is stopped, or never started.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::oneshot;

use super::Error;
use super::rules::{self, BUDGET, Compiled, Facts, Meter, Verdict};
use crate::controller::fairness::FairQueue;

/// Threads that evaluate rules.
const WORKERS: usize = 2;
/// Evaluations waiting per namespace, and in all: plannings are already bounded per
/// namespace, so these are only a backstop.
const WAITING_PER_NAMESPACE: usize = 16;
const WAITING: usize = 1_024;

struct Job {
    rules: Arc<Vec<Compiled>>,
    facts: Facts,
    abandoned: Arc<AtomicBool>,
    reply: oneshot::Sender<Result<Verdict, Error>>,
}

struct Evaluator {
    waiting: Mutex<FairQueue<Job>>,
    ready: Condvar,
}

fn evaluator() -> &'static Evaluator {
    static EVALUATOR: OnceLock<&'static Evaluator> = OnceLock::new();
    EVALUATOR.get_or_init(|| {
        let evaluator: &'static Evaluator = Box::leak(Box::new(Evaluator {
            waiting: Mutex::new(FairQueue::new(WAITING_PER_NAMESPACE, WAITING)),
            ready: Condvar::new(),
        }));
        for i in 0..WORKERS {
            // A thread that cannot start leaves the others; with none, evaluations wait
            // and their runs stay planning, as with a stuck API server.
            if let Err(e) = std::thread::Builder::new()
                .name(format!("governance-{i}"))
                .spawn(move || work(evaluator))
            {
                tracing::error!(error = %e, "could not start a governance evaluation thread");
            }
        }
        evaluator
    })
}

/// One worker: takes the next namespace's oldest evaluation and runs it, forever.
fn work(evaluator: &Evaluator) {
    loop {
        let job = {
            let mut waiting = evaluator.waiting.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match waiting.pop() {
                    Some((_, job)) => break job,
                    None => {
                        waiting = evaluator
                            .ready
                            .wait(waiting)
                            .unwrap_or_else(|p| p.into_inner());
                    }
                }
            }
        };
        if job.abandoned.load(Ordering::Relaxed) {
            continue;
        }
        let meter = Arc::new(Meter::new(
            rules::MAX_COST,
            Some(Instant::now() + BUDGET),
            job.abandoned.clone(),
        ));
        let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rules::evaluate_metered(&job.rules, &job.facts, &meter)
        }))
        .unwrap_or_else(|panic| {
            Err(Error::Evaluation {
                rule: "(all)".into(),
                message: format!(
                    "the evaluation panicked: {}",
                    crate::controller::error::panic_message(&*panic)
                ),
            })
        });
        // The caller may be gone; nothing waits for the answer then.
        let _ = job.reply.send(verdict);
    }
}

/// Marks its evaluation abandoned when the caller stops waiting for it (its reconcile
/// was dropped): a waiting one is skipped, a running one stops at its next step.
struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Evaluates `rules` over `facts` for a repository of `namespace`, in that namespace's
/// turn.
pub async fn evaluate(
    namespace: &str,
    rules: Arc<Vec<Compiled>>,
    facts: Facts,
) -> Result<Verdict, Error> {
    let evaluator = evaluator();
    let abandoned = Arc::new(AtomicBool::new(false));
    let _abandon = Abandon(abandoned.clone());
    let (reply, answer) = oneshot::channel();
    let job = Job {
        rules,
        facts,
        abandoned,
        reply,
    };
    {
        let mut waiting = evaluator.waiting.lock().unwrap_or_else(|p| p.into_inner());
        // Abandoned evaluations give their places back first.
        waiting.retain(|j| !j.abandoned.load(Ordering::Relaxed));
        if waiting.push(namespace, job).is_err() {
            return Err(Error::Evaluation {
                rule: "(all)".into(),
                message: format!(
                    "more than {WAITING_PER_NAMESPACE} evaluations of namespace {namespace} are waiting; try again"
                ),
            });
        }
    }
    evaluator.ready.notify_one();
    answer.await.unwrap_or_else(|_| {
        Err(Error::Evaluation {
            rule: "(all)".into(),
            message: "the evaluation thread stopped".into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::governance::{PlanRule, RuleAction};
    use std::time::Duration;

    fn compiled(expression: &str) -> Arc<Vec<Compiled>> {
        let rule = PlanRule {
            name: "r".into(),
            expression: expression.into(),
            action: RuleAction::Warn,
            approvals: None,
            message: None,
        };
        Arc::new(vec![rules::compile("p", 0, &rule).unwrap()])
    }

    fn facts(namespace: &str, actions: usize) -> Facts {
        let desired: Vec<crate::fleet::FleetObject> = (0..actions)
            .map(|i| {
                crate::fleet::FleetObject::new(
                    format!("net-{i}"),
                    crate::fleet::object::Spec::SdwanNetwork(
                        crate::fleet::object::SdwanNetworkSpec {
                            routing_mode: crate::fleet::model::RoutingMode::Ibgp,
                        },
                    ),
                )
            })
            .collect();
        let options = crate::fleet::PlanOptions {
            repository: "fleet",
            revision: "abc",
            prune: false,
            exclude: &[],
        };
        let plan = crate::fleet::plan(&desired, &[], &options).unwrap();
        Facts::new(&plan, &[], namespace, "fleet", "Schedule")
    }

    /// Quadratic in the plan's actions: about 400 million steps for 20,000 of them.
    const QUADRATIC: &str =
        "plan.actions.all(a, plan.actions.exists(b, b.name == a.name + 'x') || true)";

    #[tokio::test]
    async fn a_costly_evaluation_fails_closed_and_holds_no_one_up() {
        let large = facts("noisy", 20_000);
        let started = Instant::now();
        let costly = evaluate("noisy", compiled(QUADRATIC), large).await;
        // Whichever comes first on this machine, the cost or the time budget: closed.
        assert!(
            matches!(costly, Err(Error::CostExceeded(_) | Error::Timeout(_))),
            "{costly:?}"
        );
        // Run to its end, the rule takes minutes in a debug build; stopped, it ends
        // within its budget and the facts' conversion (generously bounded: the machine
        // may be busy).
        assert!(started.elapsed() < BUDGET * 15, "{:?}", started.elapsed());
        let cheap = evaluate(
            "quiet",
            compiled("plan.actions.size() > 1"),
            facts("quiet", 20_000),
        )
        .await
        .unwrap();
        assert_eq!(cheap.warnings.len(), 1);
    }

    #[tokio::test]
    async fn one_namespace_waits_behind_its_own_evaluations_not_another_namespace_behind_them() {
        // Six slow evaluations of one namespace at once (two threads), then one of another.
        let slow = compiled("plan.actions.all(a, plan.actions.all(b, true))");
        let noisy: Vec<_> = (0..6)
            .map(|_| {
                let slow = slow.clone();
                tokio::spawn(async move { evaluate("noisy", slow, facts("noisy", 2_500)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let asked = Instant::now();
        let quiet = evaluate("quiet", compiled("true"), facts("quiet", 10)).await;
        let waited = asked.elapsed();
        assert!(quiet.is_ok(), "{quiet:?}");
        // At most the two running and one turn of the noisy namespace ahead of it.
        let mut noisy_done = 0;
        for task in noisy {
            let _ = task.await.unwrap();
            noisy_done += 1;
        }
        assert_eq!(noisy_done, 6);
        assert!(waited < BUDGET * 3, "the quiet namespace waited {waited:?}");
    }

    #[tokio::test]
    async fn an_abandoned_evaluation_stops() {
        let slow = compiled("plan.actions.all(a, plan.actions.all(b, true))");
        let waiting = evaluate("gone", slow, facts("gone", 2_500));
        // Given up on at once: the caller's future is dropped.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), waiting)
                .await
                .is_err()
        );
        let next =
            tokio::time::timeout(BUDGET, evaluate("gone", compiled("true"), facts("gone", 1)))
                .await
                .expect("the abandoned evaluation does not keep the next one waiting");
        assert!(next.is_ok(), "{next:?}");
    }
}
