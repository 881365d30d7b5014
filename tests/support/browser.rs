//! A real browser for the UI tests: Debian's chromium, headless, driven through
//! chromedriver with a WebDriver client; and `kubectl fleet ui` as a user starts it.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A program on PATH (or in /usr/bin), if there is one.
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    /// Where screenshots go: `<target>/tmp/ui-screenshots`.
    pub shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless chromium session. Without them the test fails
    /// saying what to install: a browser test that cannot run must not pass.
    pub async fn start() -> Self {
        let (Some(chromium), Some(driver)) = (find("chromium"), find("chromedriver")) else {
            panic!(
                "the browser tests of `kubectl fleet ui` need Debian's chromium and chromium-driver \
                 (hack/install-deps.sh installs them; CI runs it); chromium: {:?}, chromedriver: {:?}",
                find("chromium"),
                find("chromedriver")
            );
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group, so that the browsers it starts are stopped with it.
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::native()
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
                    std::fs::create_dir_all(&shots).unwrap();
                    return Self {
                        client,
                        driver,
                        shots,
                    };
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start a chromium session: {last:?}");
    }

    /// Saves a PNG of the window as `<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// The first element matching `css`, once there is one; the test fails with the
    /// page's address and text if none comes.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let url = self.client.current_url().await.map(|u| u.to_string());
                let body = match self.client.find(Locator::Css("body")).await {
                    Ok(b) => b.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!("no element {css} ({e}) on {url:?}, which says:\n{body}");
            }
        }
    }

    /// The text of the first element matching `css`, once there is one.
    pub async fn text(&self, css: &str) -> String {
        self.element(css).await.text().await.unwrap()
    }

    pub async fn click(&self, css: &str) {
        self.element(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("{css} cannot be clicked: {e}"));
    }

    /// Waits until the text of `css` satisfies `check`; returns it.
    pub async fn text_until(
        &self,
        css: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if check(&text) {
                return text;
            }
            if tokio::time::Instant::now() >= deadline {
                let body = match self.client.find(Locator::Css("body")).await {
                    Ok(b) => b.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!(
                    "timed out after {timeout:?} waiting for {css}; it says {text:?}; the page:\n{body}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}

/// `kubectl fleet ui` as a user starts it, with the admin's kubeconfig and `--as`.
pub struct Ui {
    child: Child,
    /// The URL it printed, with a single-use bootstrap token.
    pub url: String,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Ui {
    pub fn start(kubeconfig: &Path, ns: &str, user: &str) -> Self {
        Self::spawn(kubeconfig, ns, user, None)
    }

    /// Started with `$BROWSER` set to `browser` (and without `--no-browser`).
    pub fn start_opening(kubeconfig: &Path, ns: &str, user: &str, browser: &Path) -> Self {
        Self::spawn(kubeconfig, ns, user, Some(browser))
    }

    fn spawn(kubeconfig: &Path, ns: &str, user: &str, browser: Option<&Path>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kubectl-fleet"));
        command.args(["ui", "-n", ns, "--as", user]);
        match browser {
            Some(b) => command.env("BROWSER", b),
            None => command.arg("--no-browser"),
        };
        let mut child = command
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kubectl-fleet ui starts");
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let url = first
            .trim()
            .strip_prefix("fleetgate UI: ")
            .unwrap_or_else(|| panic!("kubectl fleet ui printed {first:?}"))
            .to_owned();
        let base = url.split("/?").next().unwrap().to_owned();
        Self { child, url, base }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.base
            .trim_start_matches("http://127.0.0.1:")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The secret path the pages are under (`/s/<random>`).
    pub fn prefix(&self) -> String {
        format!("/{}", self.base.splitn(4, '/').nth(3).unwrap())
    }

    /// Spends the printed URL over plain HTTP, as a browser would; the `Cookie:` value
    /// for the session it opens.
    pub fn session(&self) -> String {
        let path = self
            .url
            .trim_start_matches(&format!("http://127.0.0.1:{}", self.port()));
        let (code, response) = http(
            self.port(),
            &format!(
                "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
                self.port()
            ),
        );
        assert_eq!(code, 303, "{response}");
        let set = response
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: "))
            .map(|l| &l["set-cookie: ".len()..])
            .unwrap_or_else(|| panic!("no cookie: {response}"));
        set.split(';').next().unwrap().to_owned()
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP/1.0 request to the UI; the status code and the whole response.
pub fn http(port: u16, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, response)
}
