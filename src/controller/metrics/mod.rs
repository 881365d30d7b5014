//! Prometheus metrics, prefix `fleetgate_` (and the standard `process_*`), served on
//! `/metrics` in the format the scraper asks for.

mod exposition;
mod process;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::{GitopsRepository, SyncRun, condition};
use kube::ResourceExt;
use process::ProcessMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepositoryLabels {
    pub namespace: String,
    pub repository: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

/// One GitopsRepository.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub namespace: String,
    pub name: String,
}

/// One condition status of one GitopsRepository, as Flux's `gotk_reconcile_condition`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub namespace: String,
    pub name: String,
    pub r#type: &'static str,
    pub status: &'static str,
}

/// One SyncRun.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub namespace: String,
    pub name: String,
    pub repository: String,
    pub phase: &'static str,
    pub trigger: &'static str,
}

/// The `controller` label of the GitopsRepository reconciler.
pub const REPOSITORY_CONTROLLER: &str = "repository";
/// The `controller` label of the SyncRun reconciler.
pub const SYNCRUN_CONTROLLER: &str = "syncrun";

/// The repository conditions exported, and the statuses each can have.
const CONDITIONS: [&str; 4] = ["Ready", "Reconciling", "Stalled", "Drifted"];
const STATUSES: [&str; 3] = ["True", "False", "Unknown"];

pub struct Metrics {
    registry: Mutex<Registry>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub git_duration: Family<GitLabels, Histogram>,
    pub syncruns: Family<PhaseLabels, Gauge>,
    pub actions: Family<ResultLabels, Counter>,
    pub drifted_objects: Family<RepositoryLabels, Gauge>,
    /// From a run's last write to its objects converging (Applied) or not (Degraded).
    pub convergence: Histogram,
    /// 1 while this replica holds the leader Lease, else 0.
    pub leader: Gauge,
    build_info: Family<BuildLabels, Gauge>,
    repository_condition: Family<ConditionLabels, Gauge>,
    repository_suspended: Family<ObjectLabels, Gauge>,
    syncrun_info: Family<RunLabels, Gauge>,
    syncrun_created: Family<RunLabels, Gauge<f64, AtomicU64>>,
    process: ProcessMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            });
        let git_duration = Family::<GitLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 12))
        });
        let m = Self {
            reconcile_errors: Family::default(),
            syncruns: Family::default(),
            actions: Family::default(),
            drifted_objects: Family::default(),
            leader: Gauge::default(),
            build_info: Family::default(),
            repository_condition: Family::default(),
            repository_suspended: Family::default(),
            syncrun_info: Family::default(),
            syncrun_created: Family::default(),
            process: ProcessMetrics::default(),
            reconcile_duration,
            git_duration,
            convergence: Histogram::new(exponential_buckets(0.5, 2.0, 14)),
            registry: Mutex::new(Registry::default()),
        };
        let registry = root.sub_registry_with_prefix("fleetgate");
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, and repositories found stalled, by error",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "git_duration_seconds",
            "Time spent resolving (ls-remote) and fetching git revisions",
            m.git_duration.clone(),
        );
        registry.register(
            "syncruns",
            "SyncRuns by namespace and phase",
            m.syncruns.clone(),
        );
        registry.register("actions", "Plan actions by result", m.actions.clone());
        registry.register(
            "drifted_objects",
            "Managed objects that differ from git",
            m.drifted_objects.clone(),
        );
        registry.register(
            "run_convergence_seconds",
            "Time from a SyncRun's last write until the providers reported its objects Ready (Applied) or it ended Degraded",
            m.convergence.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and runs the controllers",
            m.leader.clone(),
        );
        registry.register(
            "build_info",
            "Always 1; the labels name the running build",
            m.build_info.clone(),
        );
        registry.register(
            "repository_condition",
            "1 for the current status of each condition of each GitopsRepository, else 0",
            m.repository_condition.clone(),
        );
        registry.register(
            "repository_suspended",
            "1 while a GitopsRepository is suspended, else 0",
            m.repository_suspended.clone(),
        );
        registry.register(
            "syncrun_info",
            "Always 1 for each SyncRun; the labels carry its phase and trigger",
            m.syncrun_info.clone(),
        );
        registry.register(
            "syncrun_created_timestamp_seconds",
            "When each SyncRun was created (its age is time() minus this)",
            m.syncrun_created.clone(),
        );
        m.process.register(&mut root);
        m.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        // Series with known labels start at 0, so that increase() sees the first event.
        for result in ["applied", "failed", "skipped"] {
            let _ = m.actions.get_or_create(&ResultLabels { result });
        }
        for controller in [REPOSITORY_CONTROLLER, SYNCRUN_CONTROLLER] {
            for error in super::error::Error::labels() {
                let _ = m
                    .reconcile_errors
                    .get_or_create(&ErrorLabels { controller, error });
            }
        }
        *m.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = root;
        m
    }
}

impl Metrics {
    /// Counts a reconcile error, or a stalled repository, under its stable label.
    pub fn error(&self, controller: &'static str, error: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { controller, error })
            .inc();
    }

    /// Rebuilds the per-object series from the watch caches (called at each scrape).
    pub fn refresh_objects(&self, repositories: &[Arc<GitopsRepository>], runs: &[Arc<SyncRun>]) {
        self.repository_condition.clear();
        self.repository_suspended.clear();
        for repo in repositories {
            let (namespace, name) = (repo.namespace().unwrap_or_default(), repo.name_any());
            let conditions = repo
                .status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default();
            for type_ in CONDITIONS {
                let current = condition(conditions, type_).map_or("Unknown", |c| {
                    STATUSES
                        .into_iter()
                        .find(|s| *s == c.status)
                        .unwrap_or("Unknown")
                });
                for status in STATUSES {
                    self.repository_condition
                        .get_or_create(&ConditionLabels {
                            namespace: namespace.clone(),
                            name: name.clone(),
                            r#type: type_,
                            status,
                        })
                        .set(i64::from(status == current));
                }
            }
            self.repository_suspended
                .get_or_create(&ObjectLabels {
                    namespace: namespace.clone(),
                    name: name.clone(),
                })
                .set(i64::from(repo.spec.suspend));
        }
        self.syncruns.clear();
        self.syncrun_info.clear();
        self.syncrun_created.clear();
        for run in runs {
            let Some(phase) = run.phase() else {
                continue;
            };
            let namespace = run.namespace().unwrap_or_default();
            self.syncruns
                .get_or_create(&PhaseLabels {
                    namespace: namespace.clone(),
                    phase: phase.as_str(),
                })
                .inc();
            let labels = RunLabels {
                namespace,
                name: run.name_any(),
                repository: run.spec.repository.clone(),
                phase: phase.as_str(),
                trigger: run.spec.trigger.as_str(),
            };
            self.syncrun_info.get_or_create(&labels).set(1);
            if let Some(created) = &run.metadata.creation_timestamp {
                self.syncrun_created
                    .get_or_create(&labels)
                    .set(created.0.as_millisecond() as f64 / 1000.0);
            }
        }
    }

    /// The exposition and its content type: OpenMetrics when `accept` asks for it, the
    /// Prometheus text format otherwise.
    pub fn render(&self, accept: Option<&str>) -> (&'static str, String) {
        self.process.refresh();
        let openmetrics = self.encode();
        if exposition::wants_openmetrics(accept) {
            (exposition::OPENMETRICS, openmetrics)
        } else {
            (exposition::TEXT, exposition::to_text_format(&openmetrics))
        }
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_documented() {
        let doc = std::fs::read_to_string("docs/metrics.md").expect("docs/metrics.md");
        let m = Metrics::default();
        // Families appear in the exposition once they have a sample.
        m.reconcile_duration
            .get_or_create(&ControllerLabels {
                controller: "syncrun",
            })
            .observe(0.1);
        m.error("syncrun", "KubeError");
        m.git_duration
            .get_or_create(&GitLabels { operation: "fetch" })
            .observe(0.1);
        m.drifted_objects
            .get_or_create(&RepositoryLabels {
                namespace: "n".into(),
                repository: "r".into(),
            })
            .set(1);
        let repo: GitopsRepository = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r", "namespace": "n"},
            "spec": {"url": "file:///x", "ref": {"branch": "main"}},
        }))
        .unwrap();
        let run: SyncRun = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-1", "namespace": "n", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"repository": "r", "revision": "abc", "trigger": "Manual"},
            "status": {"phase": "AwaitingApproval"},
        }))
        .unwrap();
        m.refresh_objects(&[Arc::new(repo)], &[Arc::new(run)]);
        let (content_type, text) = m.render(None);
        assert!(content_type.starts_with("text/plain; version=0.0.4"));
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(names.len(), 19, "{text}");
        for name in names {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} is not in docs/metrics.md"
            );
        }
        for sample in [
            "fleetgate_actions_total{result=\"failed\"} 0",
            "fleetgate_repository_condition{namespace=\"n\",name=\"r\",type=\"Ready\",status=\"Unknown\"} 1",
            "fleetgate_syncrun_created_timestamp_seconds{namespace=\"n\",name=\"r-1\",repository=\"r\",phase=\"AwaitingApproval\",trigger=\"Manual\"} 1767225600",
            "fleetgate_build_info{version=",
        ] {
            assert!(text.contains(sample), "{sample} missing from:\n{text}");
        }
        let (content_type, om) = m.render(Some("application/openmetrics-text; version=1.0.0"));
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(om.ends_with("# EOF\n"));
    }
}
