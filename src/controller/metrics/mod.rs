//! Prometheus metrics, prefix `fleetgate_`, served on `/metrics`.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

pub struct Metrics {
    registry: Mutex<Registry>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub git_duration: Family<GitLabels, Histogram>,
    pub syncruns: Family<PhaseLabels, Gauge>,
    pub actions: Family<ResultLabels, Counter>,
    pub drifted_objects: Family<RepositoryLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fleetgate");
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
            reconcile_duration,
            git_duration,
            registry: Mutex::new(Registry::default()),
        };
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error",
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
        *m.registry.lock().expect("not poisoned") = registry;
        m
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("not poisoned");
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
        m.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: "syncrun",
                error: "KubeError",
            })
            .inc();
        m.git_duration
            .get_or_create(&GitLabels { operation: "fetch" })
            .observe(0.1);
        m.syncruns
            .get_or_create(&PhaseLabels {
                namespace: "n".into(),
                phase: "Applied",
            })
            .inc();
        m.actions
            .get_or_create(&ResultLabels { result: "applied" })
            .inc();
        m.drifted_objects
            .get_or_create(&RepositoryLabels {
                namespace: "n".into(),
                repository: "r".into(),
            })
            .set(1);
        let text = m.encode();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(names.len(), 6, "{text}");
        for name in names {
            let shown = if text.contains(&format!("{name}_total")) {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            assert!(
                doc.contains(&format!("`{shown}`")),
                "{shown} is not in docs/metrics.md"
            );
        }
    }
}
