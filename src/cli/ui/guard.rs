//! Who may talk to the UI server: only the browser of whoever started it.
//!
//! - The UI lives under a random secret path, `/s/<32 hex>/`: the session cookie is
//!   scoped to it (`Path=`), so a browser never sends it to another server on 127.0.0.1
//!   (cookies do not tell ports apart, paths they do).
//! - A random single-use bootstrap token is in the URL the user is given. The first GET
//!   that carries it is answered with a fresh random session value in an HttpOnly,
//!   SameSite=Strict cookie and a redirect to the same page without the token; the token
//!   is then spent, and a second use is refused. The session value never leaves the
//!   server except in that one response, so a token seen later (a shell history, a
//!   process list) opens nothing.
//! - The Host header must name the server by 127.0.0.1 or localhost and its port: a
//!   foreign name resolving to 127.0.0.1 (DNS rebinding) is refused.
//! - A request that changes something must be a POST whose Origin is this server: a form
//!   on another page (CSRF) is refused even if the browser sent the cookie.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex};

use super::{App, UiError};

/// The cookie's name ends in the port: two UIs (two contexts) may run at once.
const COOKIE: &str = "fleetgate_ui_";

pub(crate) struct Session {
    port: u16,
    /// `/s/<random>`: every page is under it.
    prefix: String,
    /// Bootstrap tokens not used yet (one per URL handed out).
    unused: Mutex<Vec<String>>,
    /// Session values handed out in a cookie, one per bootstrap token spent.
    sessions: Mutex<Vec<String>>,
}

/// 32 random bytes in hex.
fn random() -> Result<String, UiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| UiError::Token(e.to_string()))?;
    Ok(crate::fleet::plan::hex(&bytes))
}

/// Compared in constant time: how much of a guess matched must not show.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Session {
    /// A session for a server on `port`, with a random path prefix and no URL yet.
    pub fn new(port: u16) -> Result<Self, UiError> {
        Ok(Self {
            port,
            prefix: format!("/s/{}", random()?),
            unused: Mutex::new(Vec::new()),
            sessions: Mutex::new(Vec::new()),
        })
    }

    /// `/s/<random>`, the path every page is under (without a trailing slash).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A new URL that lets one browser in, once.
    pub fn url(&self) -> Result<String, UiError> {
        let token = random()?;
        locked(&self.unused).push(token.clone());
        Ok(format!(
            "http://127.0.0.1:{}{}/?token={token}",
            self.port, self.prefix
        ))
    }

    /// Spends a bootstrap token: the new session value if it was an unused one.
    fn exchange(&self, token: &str) -> Option<String> {
        let mut unused = locked(&self.unused);
        let i = unused.iter().position(|t| same(t, token))?;
        unused.swap_remove(i);
        let value = random().ok()?;
        locked(&self.sessions).push(value.clone());
        Some(value)
    }

    fn is_session(&self, candidate: &str) -> bool {
        locked(&self.sessions)
            .iter()
            .fold(false, |found, s| found | same(s, candidate))
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

    fn cookie(&self, value: &str) -> String {
        format!(
            "{}={value}; HttpOnly; SameSite=Strict; Path={}/",
            self.cookie_name(),
            self.prefix
        )
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    let mut response = (status, format!("refused: {why}\n")).into_response();
    protect(response.headers_mut());
    response
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
    let has_session =
        cookie_token(headers, &session.cookie_name()).is_some_and(|t| session.is_session(t));
    let path = request.uri().path();
    let query = request.uri().query().unwrap_or_default();
    let (rest, token) = split_token(query);
    if let Some(token) = token.filter(|_| method == Method::GET) {
        // The token leaves the address bar (and the history) at once.
        let location = if rest.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{rest}")
        };
        let under_prefix = path.starts_with(&format!("{}/", session.prefix()));
        let cookie = match under_prefix.then(|| session.exchange(token)).flatten() {
            Some(value) => Some(session.cookie(&value)),
            None if has_session => None,
            None => {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "this URL was used already or is not this server's; \
                     start `kubectl fleet ui` again for a new one",
                );
            }
        };
        let mut response = Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, location);
        if let Some(cookie) = cookie {
            response = response.header(header::SET_COOKIE, cookie);
        }
        let mut response = response.body(Body::empty()).unwrap_or_default();
        protect(response.headers_mut());
        return response;
    }
    if has_session {
        let mut response = next.run(request).await;
        protect(response.headers_mut());
        return response;
    }
    refuse(
        StatusCode::UNAUTHORIZED,
        "no session; open the URL `kubectl fleet ui` printed",
    )
}

/// Headers that keep the pages out of frames, caches and other pages' scripts.
fn protect(headers: &mut HeaderMap) {
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'",
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
        Session::new(8080).unwrap()
    }

    fn token_of(url: &str) -> String {
        url.split("token=").nth(1).unwrap().to_owned()
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
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }

    #[test]
    fn a_bootstrap_token_opens_one_session_once() {
        let s = session();
        let url = s.url().unwrap();
        assert!(url.starts_with(&format!("http://127.0.0.1:8080{}/?token=", s.prefix())));
        let token = token_of(&url);
        assert!(!s.is_session(&token), "the token is no session value");
        let value = s.exchange(&token).unwrap();
        assert_ne!(value, token);
        assert!(s.is_session(&value));
        assert_eq!(s.exchange(&token), None, "a second use is refused");
        assert_eq!(s.exchange("0123"), None);
        // Another URL (the browser's) is a separate token with its own session.
        let other = s.exchange(&token_of(&s.url().unwrap())).unwrap();
        assert_ne!(other, value);
        assert!(s.is_session(&value) && s.is_session(&other));
    }

    #[test]
    fn the_cookie_is_scoped_to_the_secret_path() {
        let s = session();
        let other = session();
        assert_ne!(s.prefix(), other.prefix(), "the path is random");
        assert_eq!(s.prefix().len(), "/s/".len() + 64);
        let cookie = s.cookie("v");
        assert!(
            cookie.ends_with(&format!("; Path={}/", s.prefix())),
            "{cookie}"
        );
        assert!(cookie.contains("HttpOnly; SameSite=Strict"), "{cookie}");
    }

    #[test]
    fn refusals_carry_the_protective_headers() {
        let r = refuse(StatusCode::UNAUTHORIZED, "no");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
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
