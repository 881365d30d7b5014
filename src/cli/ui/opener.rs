//! Opening the user's browser without putting the session's URL on a command line.
//!
//! A program's arguments are readable by every local user (`/proc/<pid>/cmdline`), and
//! `xdg-open`, `$BROWSER` and the browser they start all carry theirs there. So the
//! browser is given a file instead: a 0600 HTML page in a 0700 directory of the user's
//! own, which sends the browser on to the URL. The directory is removed when the UI stops.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The private directory holding the redirect page; removed on drop.
pub(crate) struct Redirect {
    dir: PathBuf,
    pub page: PathBuf,
}

impl Drop for Redirect {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `$XDG_RUNTIME_DIR` (private to the user) when set, else the temporary directory.
fn base_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// Writes the page that sends a browser to `url`, in a new directory under `base` that
/// only the user can enter.
pub(crate) fn write_redirect(base: &Path, url: &str, unique: &str) -> std::io::Result<Redirect> {
    let dir = base.join(format!("fleetgate-ui-{unique}"));
    DirBuilder::new().mode(0o700).create(&dir)?;
    let redirect = Redirect {
        page: dir.join("open.html"),
        dir,
    };
    let escaped = url
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;");
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0;url={escaped}\">\
         <title>fleetgate UI</title></head>\
         <body><a href=\"{escaped}\">Open the fleetgate UI</a></body></html>\n"
    );
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&redirect.page)?;
    file.write_all(html.as_bytes())?;
    Ok(redirect)
}

/// Opens `url` in the user's browser through a redirect page when there is a browser;
/// quietly does nothing otherwise. The page lives as long as the returned value.
pub(crate) fn open_browser(url: &str) -> Option<Redirect> {
    let graphical = std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some()
        || cfg!(target_os = "macos");
    let opener = match std::env::var("BROWSER") {
        Ok(browser) if !browser.is_empty() => browser,
        _ if !graphical => return None,
        _ if cfg!(target_os = "macos") => "open".to_owned(),
        _ => "xdg-open".to_owned(),
    };
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).ok()?;
    let unique = crate::fleet::plan::hex(&bytes);
    let redirect = write_redirect(&base_dir(), url, &unique).ok()?;
    let _ = Command::new(opener)
        .arg(&redirect.page)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    Some(redirect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_redirect_page_is_private_and_goes_away() {
        let base = std::env::temp_dir();
        let url = "http://127.0.0.1:1/s/ab/?token=cd&x=\"<";
        let unique = format!("test-{}", std::process::id());
        let redirect = write_redirect(&base, url, &unique).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&redirect.page), 0o600);
        let dir = redirect.page.parent().unwrap().to_owned();
        assert_eq!(mode(&dir), 0o700);
        let html = std::fs::read_to_string(&redirect.page).unwrap();
        assert!(
            html.contains("url=http://127.0.0.1:1/s/ab/?token=cd&amp;x=&quot;&lt;\""),
            "{html}"
        );
        assert!(
            !redirect.page.to_string_lossy().contains("cd"),
            "the path does not carry the token"
        );
        drop(redirect);
        assert!(!dir.exists());
    }
}
