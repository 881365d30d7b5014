//! The tests that need the test control plane, one binary: `make test` (or
//! `hack/with-testenv.sh cargo test --test cluster`) runs them against one control plane,
//! each test in a namespace of its own. One module per area; run one area with
//! `hack/with-testenv.sh cargo test --test cluster gate::`.
//!
//! Everything here shares one process: the chart's one-install lock, the git server, the
//! control plane. A test that must change something process-wide (an environment
//! variable, libgit2's globals) or stop the control plane does not belong here.

#[path = "../support/mod.rs"]
mod support;

mod attestation;
mod authorization;
mod authorization_invariant;
mod catalog;
mod chart;
mod chart_lint;
mod crds;
mod deletion;
mod drift;
mod flux;
mod forge;
mod forge_bounds;
mod gate;
mod governance;
mod health_gate;
mod kstatus;
mod lab_provider;
mod lifecycle;
mod metrics;
mod notifications;
mod operator;
mod outbound;
mod plugin;
mod promotion;
mod provenance;
mod provider_conformance;
mod receiver;
mod rollout;
mod rollout_pause;
mod sharding;
mod slices;
mod tenant_bounds;
mod tenant_fairness;
mod testenv;
mod ui;
mod ui_governance;
