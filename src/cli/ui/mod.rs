//! `kubectl fleet ui`: review, edit, approve and reject in a browser.
//!
//! A small web server on the loopback interface renders HTML from the same data and
//! helpers as the rest of `kubectl fleet` and acts with the user's own credentials (so
//! admission records every approval as made by that user, as for `kubectl annotate`).
//! Nothing runs in the cluster. [`guard`] keeps other local users and web pages out.

mod governance;
mod guard;
mod health;
mod opener;
mod pages;
mod rollout;
mod routes;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use kube::Client;

use super::live_plan::EXIT_ERROR;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The port on 127.0.0.1 to listen on (default: a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Print the URL only; do not open a browser.
    #[arg(long)]
    no_browser: bool,
}

/// What can go wrong in the UI, with short stable labels.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Listen { port: u16, source: std::io::Error },
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
    #[error("no session token: {0}")]
    Token(String),
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Store(#[from] crate::controller::error::Error),
    #[error("{0}")]
    Plan(String),
    #[error("{0}")]
    BadRequest(String),
}

impl UiError {
    /// A stable short label.
    pub fn label(&self) -> &'static str {
        match self {
            UiError::Listen { .. } => "Listen",
            UiError::Serve(_) => "Serve",
            UiError::Token(_) => "Token",
            UiError::Kube(_) => "KubeError",
            UiError::Store(_) => "PlanStore",
            UiError::Plan(_) => "Plan",
            UiError::BadRequest(_) => "BadRequest",
        }
    }
}

/// What every request handler shares.
pub(crate) struct App {
    pub client: Client,
    /// The namespace of the context (or -n): where repositories are listed when the user
    /// may not list them cluster-wide.
    pub namespace: String,
    /// Who the requests are made as, for the page header.
    pub identity: String,
    pub session: guard::Session,
}

/// Serves until interrupted; prints the URL and opens a browser unless told not to.
pub async fn run(args: Args, client: Client, namespace: String, identity: String) -> ExitCode {
    match serve(args, client, namespace, identity).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn serve(
    args: Args,
    client: Client,
    namespace: String,
    identity: String,
) -> Result<(), UiError> {
    let port = args.port.unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|source| UiError::Listen { port, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| UiError::Listen { port, source })?
        .port();
    let session = guard::Session::new(port)?;
    let identity = who_am_i(&client).await.unwrap_or(identity);
    // One single-use URL to print, and another for the browser when one is opened.
    let url = session.url()?;
    let browser_url = match args.no_browser {
        true => None,
        false => Some(session.url()?),
    };
    let app = Arc::new(App {
        client,
        namespace,
        identity,
        session,
    });
    // Whoever reads the URL may stop reading (`| head -1`): that does not stop the server.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "fleetgate UI: {url}");
        let _ = writeln!(out, "(acting as {}; Ctrl-C stops it)", app.identity);
        let _ = out.flush();
    }
    let _redirect = browser_url.and_then(|u| opener::open_browser(&u));
    let router = routes::router(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(UiError::Serve)
}

/// The user name the API server sees these credentials as (a SelfSubjectReview), if it
/// says.
async fn who_am_i(client: &Client) -> Option<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let review = SelfSubjectReview {
        metadata: Default::default(),
        status: None,
    };
    kube::Api::<SelfSubjectReview>::all(client.clone())
        .create(&Default::default(), &review)
        .await
        .ok()?
        .status?
        .user_info?
        .username
}
