//! A real Gitea on loopback with SQLite (built by hack/gitea/build.sh), one per test,
//! serving HTTPS with a certificate from a throwaway CA made by `openssl`, driven through
//! its REST API and its HTTP git as a user would. Whoever talks to it trusts that CA, and
//! nothing process-wide is changed for it (other tests share the process): the API client
//! here trusts it alone, the clones' git commands are given it in `GIT_SSL_CAINFO`, and the controller
//! is given it as `SSL_CERT_FILE` (OpenSSL under libgit2, rustls-native-certs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

pub const USER: &str = "fleet";
pub const PASSWORD: &str = "fleet-password-1";

pub struct Gitea {
    pub url: String,
    /// The CA that signed the server's certificate (PEM): the one root to trust.
    pub cert: PathBuf,
    child: Child,
    dir: tempfile::TempDir,
    https: Https,
}

type Https = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTPS client that trusts the CA at `ca` and no other.
fn https_trusting(ca: &Path) -> Https {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).expect("the test CA reads"))
        .expect("the test CA is a root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

fn run(dir: &Path, program: &Path, args: &[&str]) -> String {
    output_of(Command::new(program).args(args).current_dir(dir))
}

/// What `command` printed; panics with its output if it failed.
fn output_of(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Gitea {
    /// Builds Gitea if needed, then starts it with an admin user.
    pub async fn start() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = run(&root, &root.join("hack/gitea/build.sh"), &[]);
        let binary = PathBuf::from(out.lines().last().unwrap());
        let static_root = binary.parent().unwrap().join("static");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let work = dir.path();
        let url = format!("https://127.0.0.1:{port}");
        let cert = make_certificates(work);
        let ini = format!(
            r#"I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true
RUN_MODE = prod
WORK_PATH = {work}
[server]
PROTOCOL = https
CERT_FILE = {work}/cert.pem
KEY_FILE = {work}/key.pem
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {port}
ROOT_URL = {url}/
STATIC_ROOT_PATH = {static_root}
DISABLE_SSH = true
OFFLINE_MODE = true
APP_DATA_PATH = {work}/data
[database]
DB_TYPE = sqlite3
PATH = {work}/data/gitea.db
[security]
INSTALL_LOCK = true
SECRET_KEY = fleetgate-test-secret-key
[service]
DISABLE_REGISTRATION = true
[repository]
ROOT = {work}/repos
DEFAULT_BRANCH = main
[log]
MODE = console
LEVEL = warn
[webhook]
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 10
[indexer]
ISSUE_INDEXER_TYPE = db
[cron]
ENABLED = false
[mailer]
ENABLED = false
"#,
            work = work.display(),
            static_root = static_root.display(),
        );
        let config = work.join("app.ini");
        std::fs::write(&config, ini).unwrap();
        let config = config.to_str().unwrap().to_owned();
        let work_s = work.to_str().unwrap().to_owned();
        let base = ["--config", &config, "--work-path", &work_s];
        run(work, &binary, &[&base[..], &["migrate"]].concat());
        run(
            work,
            &binary,
            &[
                &base[..],
                &[
                    "admin",
                    "user",
                    "create",
                    "--username",
                    USER,
                    "--password",
                    PASSWORD,
                    "--email",
                    "fleet@example.com",
                    "--admin",
                    "--must-change-password=false",
                ],
            ]
            .concat(),
        );
        let child = Command::new(&binary)
            .args(base)
            .arg("web")
            .current_dir(work)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("gitea.log")).unwrap())
            .spawn()
            .expect("gitea starts");
        let https = https_trusting(&cert);
        let gitea = Self {
            url,
            cert,
            child,
            dir,
            https,
        };
        super::eventually("Gitea to answer", Duration::from_secs(60), || async {
            gitea
                .api(Method::GET, "/version", None)
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        gitea
    }

    /// Calls the API as the admin (basic auth); the answer's JSON, or its status and text.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        let request = Request::builder()
            .method(method)
            .uri(format!("{}/api/v1{path}", self.url))
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let exchange = async {
            let response = self
                .https
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body.to_bytes()))
        };
        let (status, body) = tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .map_err(|_| "no answer within 30 s".to_owned())??;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(500).collect();
            return Err(format!("{} {text}", status.as_u16()));
        }
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.api(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// An API token of the admin with the given scopes.
    pub async fn token(&self, name: &str, scopes: &[&str]) -> String {
        let token = self
            .ok(
                Method::POST,
                &format!("/users/{USER}/tokens"),
                Some(json!({"name": name, "scopes": scopes})),
            )
            .await;
        token["sha1"].as_str().unwrap().to_owned()
    }

    /// Creates a private repository of the admin and a clone of it to commit in.
    pub async fn create_repo(&self, name: &str) -> Clone {
        self.ok(
            Method::POST,
            "/user/repos",
            Some(json!({"name": name, "default_branch": "main", "auto_init": false, "private": true})),
        )
        .await;
        let work = self.dir.path().join("clones").join(name);
        std::fs::create_dir_all(&work).unwrap();
        let git = PathBuf::from("git");
        run(&work, &git, &["init", "-q", "-b", "main"]);
        // Pushes authenticate with basic auth over Gitea's HTTPS git.
        let host = self.url.trim_start_matches("https://");
        let remote = format!("https://{USER}:{PASSWORD}@{host}/{USER}/{name}.git");
        run(&work, &git, &["remote", "add", "origin", &remote]);
        Clone {
            work,
            ca: self.cert.clone(),
            url: format!("{}/{USER}/{name}.git", self.url),
            full_name: format!("{USER}/{name}"),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gitea.log")).unwrap_or_default()
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it (`cert.pem`, `key.pem`);
/// returns the CA's path.
fn make_certificates(dir: &Path) -> PathBuf {
    let openssl = PathBuf::from("openssl");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(
        dir,
        &openssl,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
            &["-subj", "/CN=fleetgate-test-ca"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign"],
        ]
        .concat(),
    );
    run(
        dir,
        &openssl,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "key.pem",
                "-out",
                "cert.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(
        dir,
        &openssl,
        &[
            "x509",
            "-req",
            "-in",
            "cert.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "cert.pem",
            "-extfile",
            "ext.cnf",
        ],
    );
    dir.join("ca.pem")
}

impl Drop for Gitea {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- gitea log ----\n{}", self.log());
        }
    }
}

/// A working copy of a Gitea repository.
pub struct Clone {
    work: PathBuf,
    /// The CA git trusts for this clone's remote (given to each git command, as
    /// `GIT_SSL_CAINFO` overrides any configuration).
    ca: PathBuf,
    /// The clone URL, without credentials.
    pub url: String,
    /// `owner/name`.
    pub full_name: String,
}

impl Clone {
    /// Runs git in the working copy, trusting the forge's CA.
    fn git(&self, args: &[&str]) -> String {
        output_of(
            Command::new("git")
                .args(args)
                .current_dir(&self.work)
                .env("GIT_SSL_CAINFO", &self.ca),
        )
    }

    /// Commits `files` on `branch` (created from the current HEAD if new) and pushes it.
    pub fn commit(&self, branch: &str, files: &[(&str, &[u8])], message: &str) -> String {
        let exists = Command::new("git")
            .args(["rev-parse", "--verify", "-q", branch])
            .current_dir(&self.work)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        let head = Command::new("git")
            .args(["rev-parse", "--verify", "-q", "HEAD"])
            .current_dir(&self.work)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !exists && head {
            self.git(&["checkout", "-q", "-b", branch]);
        } else if exists {
            self.git(&["checkout", "-q", branch]);
        }
        for (path, contents) in files {
            std::fs::write(self.work.join(path), contents).unwrap();
            self.git(&["add", path]);
        }
        self.git(&[
            "-c",
            "user.name=Fleet Tester",
            "-c",
            "user.email=fleet@example.com",
            "commit",
            "-q",
            "-m",
            message,
        ]);
        self.git(&["push", "-q", "origin", branch]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Pushes new branches `names`, each at the remote's `from`, in one push.
    pub fn push_branches(&self, from: &str, names: &[String]) {
        self.git(&["fetch", "-q", "origin"]);
        let refspecs: Vec<String> = names
            .iter()
            .map(|name| format!("origin/{from}:refs/heads/{name}"))
            .collect();
        let mut args = vec!["push", "-q", "origin"];
        args.extend(refspecs.iter().map(String::as_str));
        self.git(&args);
    }

    /// Moves the working copy to `branch` as the remote has it.
    pub fn checkout(&self, branch: &str) {
        self.git(&["fetch", "-q", "origin"]);
        self.git(&["checkout", "-q", "-B", branch, &format!("origin/{branch}")]);
    }
}
