//! GovernancePolicies written by the cluster admin for a test: cluster-scoped, so each is
//! deleted when its test ends.

use std::time::Duration;

use fleetgate::api::{GovernancePolicy, condition};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

pub fn policy(name: &str, spec: Value) -> GovernancePolicy {
    serde_json::from_value(json!({
        "apiVersion": "gitops.fleetgate.dev/v1alpha1", "kind": "GovernancePolicy",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

/// A cluster-scoped policy, deleted when dropped.
pub struct Policy {
    pub api: Api<GovernancePolicy>,
    pub name: String,
}

impl Policy {
    pub async fn create(admin: &Client, name: &str, spec: Value) -> Self {
        let api: Api<GovernancePolicy> = Api::all(admin.clone());
        let _ = api.delete(name, &DeleteParams::default()).await;
        api.create(&PostParams::default(), &policy(name, spec))
            .await
            .unwrap();
        Self {
            api,
            name: name.into(),
        }
    }

    /// Waits until the controller reports `reason` on the policy's Ready condition.
    pub async fn ready_reason(&self, reason: &str) -> GovernancePolicy {
        super::eventually(
            &format!("policy {} with reason {reason}", self.name),
            Duration::from_secs(30),
            || async {
                let p = self.api.get(&self.name).await.ok()?;
                let c = condition(&p.status.as_ref()?.conditions, "Ready")?;
                (c.reason == reason).then_some(p.clone())
            },
        )
        .await
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        // Cluster-scoped: not removed with the test's namespace.
        let _ = std::process::Command::new(super::tool("kubectl"))
            .args([
                "delete",
                "governancepolicy",
                &self.name,
                "--ignore-not-found",
            ])
            .env("KUBECONFIG", &super::env().kubeconfig)
            .output();
    }
}

/// A policy spec selecting the repository `fleet` of `ns`, with `extra` fields.
pub fn selecting(ns: &str, extra: Value) -> Value {
    let mut spec = json!({"repositories": [{"namespace": ns, "name": "fleet"}]});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    spec
}
