//! The starting point of most operator tests, built as a sentence says it: a namespace
//! with the CRDs, a git repository holding a fleet file, a GitopsRepository `fleet` over
//! it, and `fleetgate controller` acting in the namespace.
//!
//! ```ignore
//! let fleet = Fleet::in_namespace("toolarge")
//!     .holding(V1)
//!     .with_spec(json!({"approval": "Auto"}))
//!     .controller_flags(&["--max-fleet-objects", "9"])
//!     .controller_running()
//!     .await;
//! // The controller keeps running in `fleet` until `fleet` goes out of scope.
//! let (ns, v1) = (fleet.ns, fleet.head);
//! ```

use serde_json::{Value, json};

use super::TestNamespace;
use super::git::{Repo, server};
use super::operator::{ControllerProcess, create_repository, ssh_secret};

/// A fleet in git under a running controller.
pub struct Fleet {
    pub ns: TestNamespace,
    pub repo: Repo,
    /// The first commit, holding the fleet file the fleet started with.
    pub head: String,
    pub controller: ControllerProcess,
}

/// How the GitopsRepository reaches the test git server.
enum Url {
    /// ssh://, with the server's key and known_hosts in the Secret `fleet-git`.
    Ssh,
    /// file://, no credentials.
    File,
    /// git://, the daemon's protocol, no credentials.
    Git,
}

/// A [`Fleet`] being described; [`FleetBuilder::controller_running`] makes it.
pub struct FleetBuilder<'a> {
    prefix: &'a str,
    fleet_yaml: Option<&'a [u8]>,
    spec: Value,
    url: Url,
    flags: &'a [&'a str],
    pod: Option<&'a str>,
}

impl Fleet {
    /// A fleet in a new namespace (and git repository) named after `prefix`, fetched over
    /// ssh:// every 2 s with the default approval policy unless told otherwise.
    pub fn in_namespace(prefix: &str) -> FleetBuilder<'_> {
        FleetBuilder {
            prefix,
            fleet_yaml: None,
            spec: json!({}),
            url: Url::Ssh,
            flags: &[],
            pod: None,
        }
    }
}

impl<'a> FleetBuilder<'a> {
    /// Its first commit holds `fleet_yaml` as fleet.yaml.
    pub fn holding(mut self, fleet_yaml: &'a [u8]) -> Self {
        self.fleet_yaml = Some(fleet_yaml);
        self
    }

    /// These GitopsRepository spec fields (`approval`, `interval`…) over the defaults.
    pub fn with_spec(mut self, fields: Value) -> Self {
        let fields = fields.as_object().expect("spec fields as a JSON object");
        self.spec.as_object_mut().unwrap().extend(fields.clone());
        self
    }

    /// Fetched over file:// rather than ssh://.
    pub fn over_file_url(mut self) -> Self {
        self.url = Url::File;
        self
    }

    /// Fetched over git:// (the git daemon) rather than ssh://.
    pub fn over_git_protocol(mut self) -> Self {
        self.url = Url::Git;
        self
    }

    /// The controller started with these flags too.
    pub fn controller_flags(mut self, flags: &'a [&'a str]) -> Self {
        self.flags = flags;
        self
    }

    /// The controller started as pod `pod` (its Lease identity).
    pub fn controller_in_pod(mut self, pod: &'a str) -> Self {
        self.pod = Some(pod);
        self
    }

    /// Makes it all: the namespace, the CRDs, the repository and its first commit, the
    /// controller, then the GitopsRepository `fleet`.
    pub async fn controller_running(self) -> Fleet {
        let ns = super::env().namespace(self.prefix).await;
        super::install_crds(&ns.client, &fleetgate::api::crds()).await;
        let git = server();
        let repo = git.create_repo(self.prefix);
        let fleet_yaml = self.fleet_yaml.expect("a fleet file to hold: holding(…)");
        let head = repo.commit(&[("fleet.yaml", fleet_yaml)], "first");
        let mut spec = match self.url {
            Url::Ssh => {
                ssh_secret(&ns.client, &ns.name, "fleet-git", git.known_hosts()).await;
                json!({"url": git.ssh_url(&repo), "secretRef": {"name": "fleet-git"}})
            }
            Url::File => json!({"url": git.file_url(&repo)}),
            Url::Git => json!({"url": git.git_url(&repo)}),
        };
        let fields = spec.as_object_mut().unwrap();
        fields.insert("ref".into(), json!({"branch": "main"}));
        fields.insert("interval".into(), json!("2s"));
        fields.extend(self.spec.as_object().unwrap().clone());
        let controller = match self.pod {
            Some(pod) => ControllerProcess::restart_in_pod(&ns, pod, self.flags),
            None => ControllerProcess::start(&ns, self.flags),
        };
        create_repository(&ns.client, &ns.name, "fleet", spec).await;
        Fleet {
            ns,
            repo,
            head,
            controller,
        }
    }
}
