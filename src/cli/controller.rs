use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::controller::context::{AttestationSettings, FluxSettings};
use crate::controller::gitsource::GitSettings;
use crate::controller::{self, Options, Settings};
use crate::source::Limits;
use crate::source::policy::UrlPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Watch and act only in this namespace; repeat, or separate with commas, for
    /// several (default: all namespaces).
    #[arg(
        long = "namespace",
        env = "FLEETGATE_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Folder for the git caches (one bare repository per GitopsRepository).
    #[arg(long, env = "FLEETGATE_WORK_DIR", default_value = "/tmp/fleetgate")]
    work_dir: PathBuf,
    /// Git operations (ls-remote, fetch) running at once, over all repositories.
    #[arg(long, default_value_t = 16)]
    git_max_concurrent: usize,
    /// Git operations running at once for the repositories of one namespace, so that
    /// one tenant's slow remotes cannot take every slot.
    #[arg(long, default_value_t = 4)]
    git_max_concurrent_per_namespace: usize,
    /// MiB one fetch may receive, and one repository's cache may keep; past it the
    /// repository reports RepositoryTooLarge.
    #[arg(long, default_value_t = 128)]
    git_max_repository_mib: u64,
    /// MiB the fleet file may have, read from git's object header before the file is
    /// inflated; past it the run fails with FileTooLarge.
    #[arg(long, default_value_t = 32)]
    git_max_file_mib: u64,
    /// MiB all git caches together may keep; the least recently fetched are deleted
    /// first (keep it under the cache volume's size).
    #[arg(long, default_value_t = 768)]
    git_max_cache_mib: u64,
    /// How long libgit2 waits for a connection to a git server.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    git_connect_timeout: std::time::Duration,
    /// How long libgit2 waits on one read or write of a git connection: a server that
    /// stops answering frees its thread after this.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    git_io_timeout: std::time::Duration,
    /// Independent actions of one dependency level applied at once (each is one request
    /// when nothing got in its way). 32 was chosen with `make bench-apply` (see
    /// docs/performance.md); refusals for load (429) pause the writes whatever the setting.
    #[arg(long, default_value_t = 32)]
    apply_concurrency: usize,
    /// The most fleet objects one repository's fleet may declare (a node is about two:
    /// itself and its peer). A larger fleet fails its run with reason `FleetTooLarge`
    /// before it is planned: the watch caches hold every object, so one tenant's fleet
    /// could otherwise take the controller past its memory limit. 25,000 fits the chart's
    /// 512 MiB with room for other tenants; raise both together.
    #[arg(long, default_value_t = crate::fleet::bounds::DEFAULT_MAX_OBJECTS)]
    max_fleet_objects: usize,
    /// The most MiB of desired state one repository's fleet may resolve to, as stored
    /// (every object's JSON: a template's modules count once per node that inherits
    /// them). A larger fleet fails its run with reason `FleetTooLarge`, located at the
    /// object that crossed the bound. Stored plans are bounded at four times this.
    #[arg(long, default_value_t = 16)]
    max_fleet_mib: u64,
    /// Plannings at once over all repositories: each holds a fleet's desired state and
    /// plan in memory.
    #[arg(long, default_value_t = 4)]
    max_concurrent_plannings: usize,
    /// Plannings at once for the repositories of one namespace, so that one tenant's
    /// syncs cannot take every planning slot.
    #[arg(long, default_value_t = 2)]
    max_concurrent_plannings_per_namespace: usize,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Address for push webhooks (`POST /hook/<namespace>/<repository>`); off unless set.
    #[arg(long)]
    receiver_addr: Option<SocketAddr>,
    /// Reconcile only the GitopsRepositories and SyncRuns whose labels match this
    /// selector (e.g. `fleetgate.dev/shard=shard1`), so that several controllers, each
    /// with its own --lease-name, share one cluster's repositories; a repository's
    /// SyncRuns carry its labels. Default: all of them.
    #[arg(long, env = "FLEETGATE_WATCH_LABEL_SELECTOR")]
    watch_label_selector: Option<String>,
    /// Label selector of the ModuleCatalogs lifecycle pins resolve against, for
    /// installs that keep catalogs of their own in one cluster. Default: all of them.
    #[arg(long)]
    module_catalog_selector: Option<String>,
    /// Lease used for leader election.
    #[arg(long, default_value = "fleetgate-controller")]
    lease_name: String,
    /// Namespace of the Lease (default: POD_NAMESPACE, else the first --namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Apply approvals that carry no gitops.fleetgate.dev/approved-by annotation, for
    /// clusters without the chart's admission policies (anyone who may annotate a SyncRun
    /// can then approve; status.approvedBy says `unverified`). Off: such approvals are
    /// refused.
    #[arg(long)]
    allow_unverified_approvals: bool,
    /// Runs that record an approval (people approved their plan, or it was cleared to
    /// apply by people or a policy) kept per repository beyond its historyLimit, which
    /// editors write: the newest this many are never pruned (nor is the drift baseline).
    #[arg(long, default_value_t = 50)]
    approval_history: usize,
    /// This cluster's name in commit status contexts (`fleetgate/<cluster>/<namespace>/<name>`),
    /// so that clusters sharing one git repository keep a status each.
    #[arg(long, env = "FLEETGATE_CLUSTER_NAME", default_value = "default")]
    cluster_name: String,
    /// Accept plain `http://` git URLs (never with a username and password).
    #[arg(long)]
    allow_http_urls: bool,
    /// Accept unauthenticated `git://` URLs.
    #[arg(long)]
    allow_git_urls: bool,
    /// Accept `file://` URLs (never inside --work-dir). Any tenant can then read any
    /// repository the controller can read on its filesystem: for single-tenant use.
    #[arg(long)]
    allow_file_urls: bool,
    /// Git hosts repositories may name, for their git remote and their forge API
    /// (`spec.forge.apiUrl`): host names, or `*.example.com` for any subdomain; repeat
    /// or separate with commas (default: any host).
    #[arg(long, env = "FLEETGATE_ALLOWED_GIT_HOSTS", value_delimiter = ',')]
    allowed_git_hosts: Vec<String>,
    /// Hosts NotificationTargets may send to (host names, or `*.example.com`); repeat
    /// or separate with commas (default: any host).
    #[arg(
        long,
        env = "FLEETGATE_ALLOWED_NOTIFICATION_HOSTS",
        value_delimiter = ','
    )]
    allowed_notification_hosts: Vec<String>,
    /// Connect to public addresses only for what tenants name (git remotes, forge APIs,
    /// notification addresses): loopback, link-local (cloud metadata), private, shared
    /// and special-purpose addresses are refused, after the name is resolved and at
    /// connect time (reason `AddressNotAllowed`). For clusters whose git hosts are on
    /// the internet; leave off when they are on a private network.
    #[arg(long, env = "FLEETGATE_REFUSE_PRIVATE_ADDRESSES")]
    refuse_private_addresses: bool,
    /// Sign an approval-to-apply record for every run that was authorized, when it ends,
    /// with the ed25519 key (PKCS#8 PEM under `key.pem`) of this Secret in the lease
    /// namespace (the controller's own), and keep the records there as ConfigMaps.
    /// Default: no records.
    #[arg(long, env = "FLEETGATE_ATTESTATION_KEY_SECRET")]
    attestation_key_secret: Option<String>,
    /// Hosts Flux's source-controller serves artifacts from (`spec.sourceRef`): an
    /// artifact URL on another host is refused. Repeat or separate with commas.
    #[arg(
        long,
        env = "FLEETGATE_FLUX_ARTIFACT_HOSTS",
        value_delimiter = ',',
        default_value = "source-controller.flux-system.svc.cluster.local."
    )]
    flux_artifact_hosts: Vec<String>,
    /// MiB of a Flux artifact read at most (it may inflate to four times that while the
    /// fleet file is looked for): the whole artifact is held in memory while it is
    /// checked, in each of the plannings at once.
    #[arg(long, default_value_t = 16)]
    flux_max_artifact_mib: u64,
    /// Log lines as text or JSON. Levels come from RUST_LOG (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

pub fn run(args: Args) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_lease_manager=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let lease_namespace = args
        .lease_namespace
        .clone()
        .or_else(|| args.namespaces.first().cloned())
        .unwrap_or_else(|| "default".into());
    // Before any thread exists: libgit2 reads these globals unsynchronized.
    if let Err(e) =
        crate::source::set_network_timeouts(args.git_connect_timeout, args.git_io_timeout)
    {
        tracing::error!(error = %e, "could not set git's network timeouts");
        return ExitCode::from(1);
    }
    const MIB: u64 = 1024 * 1024;
    let options = Options {
        settings: Settings {
            namespaces: args.namespaces,
            git: GitSettings {
                work_dir: args.work_dir.clone(),
                max_concurrent: args.git_max_concurrent,
                max_concurrent_per_namespace: args.git_max_concurrent_per_namespace,
                limits: Limits {
                    max_fetch_bytes: args.git_max_repository_mib.saturating_mul(MIB),
                    max_file_bytes: args.git_max_file_mib.saturating_mul(MIB),
                },
                max_cache_bytes: args.git_max_cache_mib.saturating_mul(MIB),
                url_policy: UrlPolicy {
                    allow_http: args.allow_http_urls,
                    allow_git: args.allow_git_urls,
                    allow_file: args.allow_file_urls,
                    allowed_hosts: args.allowed_git_hosts,
                    allowed_notification_hosts: args.allowed_notification_hosts,
                    denied_paths: vec![args.work_dir.clone()],
                    refuse_private_addresses: args.refuse_private_addresses,
                },
            },
            apply_concurrency: args.apply_concurrency,
            fleet_limits: crate::fleet::Limits::new(
                args.max_fleet_objects,
                args.max_fleet_mib.saturating_mul(MIB),
            ),
            max_concurrent_plannings: args.max_concurrent_plannings,
            max_concurrent_plannings_per_namespace: args.max_concurrent_plannings_per_namespace,
            allow_unverified_approvals: args.allow_unverified_approvals,
            approval_history: args.approval_history,
            cluster_name: args.cluster_name,
            watch_label_selector: args.watch_label_selector.filter(|s| !s.trim().is_empty()),
            module_catalog_selector: args
                .module_catalog_selector
                .filter(|s| !s.trim().is_empty()),
            flux: FluxSettings {
                artifact_hosts: args.flux_artifact_hosts,
                max_artifact_bytes: args.flux_max_artifact_mib.saturating_mul(MIB),
            },
            attestation: args
                .attestation_key_secret
                .filter(|s| !s.trim().is_empty())
                .map(|key_secret| AttestationSettings {
                    namespace: lease_namespace.clone(),
                    key_secret,
                }),
        },
        http_addr: args.http_addr,
        receiver_addr: args.receiver_addr,
        lease_name: args.lease_name,
        lease_namespace,
    };
    // Reconciles are deep futures (git, planning, the apply engine, status writes), and
    // unoptimised builds keep every await's state on the stack: 2 MiB, tokio's default,
    // overflowed in debug builds; 8 MiB is what the main thread has.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "could not start the async runtime");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let client = kube::Client::try_default().await?;
        controller::run(client, options).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "controller failed");
            ExitCode::from(1)
        }
    }
}
