//! Who may talk to the UI server: only the browser of whoever started it.
//!
//! - A random per-session token, in the printed URL once; the first request that carries
//!   it is answered with an HttpOnly, SameSite=Strict cookie and a redirect to the same
//!   page without it. Every other request needs that cookie: other local users and other
//!   web pages do not have it.
//! - The Host header must name the server by 127.0.0.1 or localhost and its port: a
//!   foreign name resolving to 127.0.0.1 (DNS rebinding) is refused.
//! - A request that changes something must be a POST whose Origin is this server: a form
//!   on another page (CSRF) is refused even if the browser sent the cookie.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use super::{App, UiError};

/// The cookie's name ends in the port: cookies do not tell ports apart, and two UIs
/// (two contexts) may run at once.
const COOKIE: &str = "fleetgate_ui_";

pub(crate) struct Session {
    token: String,
    port: u16,
}

impl Session {
    /// A session with 32 random bytes as its token, for a server on `port`.
    pub fn new(port: u16) -> Result<Self, UiError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| UiError::Token(e.to_string()))?;
        Ok(Self {
            token: crate::fleet::plan::hex(&bytes),
            port,
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// `http://127.0.0.1:<port>` and `http://localhost:<port>`: this server's origins.
    fn is_own_origin(&self, origin: &str) -> bool {
        origin
            .strip_prefix("http://")
            .is_some_and(|host| self.is_own_host(host))
    }

    fn is_own_host(&self, host: &str) -> bool {
        let port = self.port.to_string();
        host.rsplit_once(':').is_some_and(|(name, p)| {
            p == port && (name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost"))
        })
    }

    fn cookie_name(&self) -> String {
        format!("{COOKIE}{}", self.port)
    }

    fn matches(&self, candidate: &str) -> bool {
        // Compared in constant time: how much of a guess matched must not show.
        let (a, b) = (self.token.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, format!("refused: {why}\n")).into_response()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn cookie_token<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

/// The query without its `token` parameter, and the token if there was one.
fn split_token(query: &str) -> (String, Option<&str>) {
    let mut token = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("token=") {
            Some(t) => {
                token = Some(t);
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    (rest.join("&"), token)
}

/// The middleware in front of every route.
pub(crate) async fn check(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let session = &app.session;
    let headers = request.headers();
    if !header_str(headers, header::HOST).is_some_and(|h| session.is_own_host(h)) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "the Host header must be 127.0.0.1:<port> or localhost:<port>",
        );
    }
    let method = request.method().clone();
    if method != Method::GET && method != Method::HEAD {
        if method != Method::POST {
            return refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and POST are served",
            );
        }
        if !header_str(headers, header::ORIGIN).is_some_and(|o| session.is_own_origin(o)) {
            return refuse(
                StatusCode::FORBIDDEN,
                "a change must come from this UI's own pages (Origin)",
            );
        }
    }
    if cookie_token(headers, &session.cookie_name()).is_some_and(|t| session.matches(t)) {
        let mut response = next.run(request).await;
        protect(response.headers_mut());
        return response;
    }
    let query = request.uri().query().unwrap_or_default();
    let (rest, token) = split_token(query);
    if method == Method::GET && token.is_some_and(|t| session.matches(t)) {
        // The token leaves the address bar (and the history) at once.
        let path = request.uri().path();
        let location = if rest.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{rest}")
        };
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            session.cookie_name(),
            session.token
        );
        let mut response = Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, location)
            .header(header::SET_COOKIE, cookie)
            .body(Body::empty())
            .unwrap_or_default();
        protect(response.headers_mut());
        return response;
    }
    refuse(
        StatusCode::UNAUTHORIZED,
        "no valid session token; open the URL `kubectl fleet ui` printed",
    )
}

/// Headers that keep the pages out of frames, caches and other pages' scripts.
fn protect(headers: &mut HeaderMap) {
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not no-referrer: with it, Chromium sends `Origin: null` on the UI's own forms.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            token: "abc".into(),
            port: 8080,
        }
    }

    #[test]
    fn only_loopback_names_with_the_port_are_this_server() {
        let s = session();
        assert!(s.is_own_host("127.0.0.1:8080"));
        assert!(s.is_own_host("localhost:8080"));
        assert!(!s.is_own_host("127.0.0.1:8081"));
        assert!(!s.is_own_host("evil.example:8080"));
        assert!(!s.is_own_host("127.0.0.1"));
        assert!(s.is_own_origin("http://localhost:8080"));
        assert!(!s.is_own_origin("https://localhost:8080"));
        assert!(!s.is_own_origin("null"));
    }

    #[test]
    fn the_token_is_taken_out_of_the_query() {
        assert_eq!(split_token("token=abc"), (String::new(), Some("abc")));
        assert_eq!(
            split_token("a=1&token=abc&b=2"),
            ("a=1&b=2".to_owned(), Some("abc"))
        );
        assert!(session().matches("abc"));
        assert!(!session().matches("abd"));
        assert!(!session().matches("ab"));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("x=1; fleetgate_ui_80=x; fleetgate_ui_8080=abc; y=2"),
        );
        assert_eq!(cookie_token(&h, &session().cookie_name()), Some("abc"));
    }
}
