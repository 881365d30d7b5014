//! The provider conformance suite (docs/provider-contract.md, "Conformance"): run against
//! a live provider serving a namespace, it creates a small fleet there and checks what the
//! provider reports through create, update, delete, a burst of updates (stale
//! generations) and a terminal failure, as Gateway API's conformance suite checks an
//! implementation. It needs only the API server and the provider: `fleetgate
//! provider-conformance -n <namespace>`.
//!
//! The suite writes only objects of its own (named `<prefix>-…`, labelled as fleetgate
//! labels what it applies) and deletes them at the end; it refuses to start when one of
//! those names is taken.

mod checks;
mod fixture;

use std::time::Duration;

use kube::Client;

pub use checks::Violation;
use fixture::Fixture;

/// How the suite runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The namespace the provider serves; the suite's objects are made there.
    pub namespace: String,
    /// The first part of every object name the suite makes.
    pub prefix: String,
    /// How long one step may take the provider (objects Ready, deletions done).
    pub timeout: Duration,
    /// An annotation (`key`, `value`) that makes the provider fail a FleetNode in a way it
    /// will not retry (for the lab: `lab.fleetgate.dev/fail-after=0s`); without it the
    /// terminal-failure test is skipped.
    pub terminal_fault: Option<(String, String)>,
}

/// The result of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

#[derive(Debug, Clone)]
pub struct TestResult {
    pub name: &'static str,
    pub outcome: Outcome,
    pub took: Duration,
}

/// Every test's result, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub results: Vec<TestResult>,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self
            .results
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Failed(_)))
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for r in &self.results {
            match &r.outcome {
                Outcome::Passed => writeln!(f, "PASS {} ({:.1}s)", r.name, r.took.as_secs_f64())?,
                Outcome::Failed(why) => writeln!(f, "FAIL {}: {why}", r.name)?,
                Outcome::Skipped(why) => writeln!(f, "SKIP {}: {why}", r.name)?,
            }
        }
        let count = |p: fn(&Outcome) -> bool| self.results.iter().filter(|r| p(&r.outcome)).count();
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            count(|o| *o == Outcome::Passed),
            count(|o| matches!(o, Outcome::Failed(_))),
            count(|o| matches!(o, Outcome::Skipped(_)))
        )
    }
}

/// Why the suite could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error(
        "{0} already exists in the namespace: the suite makes only objects of its own (choose another --prefix)"
    )]
    NameTaken(String),
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Runs every test against the provider serving `options.namespace`.
pub async fn run(client: Client, options: Options) -> Result<Report, ConformanceError> {
    let fixture = Fixture::new(client, &options);
    fixture.refuse_taken_names().await?;
    let mut report = Report::default();
    report.timed("Registration", fixture.registration()).await;
    let created = report.timed("Create", fixture.create()).await;
    if created {
        report.timed("Update", fixture.update()).await;
        report
            .timed("StaleGeneration", fixture.stale_generation())
            .await;
        if options.terminal_fault.is_some() {
            report
                .timed("TerminalFailure", fixture.terminal_failure())
                .await;
        } else {
            report.skip(
                "TerminalFailure",
                "no terminal fault given (--terminal-fault KEY=VALUE)",
            );
        }
        report.timed("Delete", fixture.delete()).await;
    } else {
        for name in ["Update", "StaleGeneration", "TerminalFailure", "Delete"] {
            report.skip(name, "needs Create");
        }
    }
    fixture.remove_all().await;
    Ok(report)
}

impl Report {
    /// Runs one test, records its outcome and time, and says whether it passed.
    async fn timed(
        &mut self,
        name: &'static str,
        test: impl std::future::Future<Output = Result<(), Violation>>,
    ) -> bool {
        let start = tokio::time::Instant::now();
        let outcome = match test.await {
            Ok(()) => Outcome::Passed,
            Err(v) => Outcome::Failed(v.to_string()),
        };
        let passed = outcome == Outcome::Passed;
        self.results.push(TestResult {
            name,
            outcome,
            took: start.elapsed(),
        });
        passed
    }

    fn skip(&mut self, name: &'static str, why: &str) {
        self.results.push(TestResult {
            name,
            outcome: Outcome::Skipped(why.to_owned()),
            took: Duration::ZERO,
        });
    }
}
