//! known_hosts: which host keys an SSH server may present. There is no trust on first
//! use: a host with no entry, or a key that matches no entry, is refused.

use base64::Engine;

/// One `known_hosts` line: the host patterns it covers and the key blob.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    hosts: Vec<(String, u16)>,
    key_type: String,
    key: Vec<u8>,
    revoked: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// The host has entries, but none holds this key (or the key is revoked).
    Mismatch,
    /// No entry names the host at all.
    Unknown,
}

impl KnownHosts {
    /// Parses OpenSSH known_hosts text; says which line is malformed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let mut hosts = fields.next().unwrap_or_default();
            let mut revoked = false;
            if hosts.starts_with('@') {
                revoked = hosts == "@revoked";
                if !revoked {
                    // @cert-authority lines trust CAs, which libgit2 cannot check; skip them.
                    continue;
                }
                hosts = fields.next().unwrap_or_default();
            }
            let (Some(key_type), Some(key)) = (fields.next(), fields.next()) else {
                return Err(format!(
                    "known_hosts line {}: expected `host keytype key`",
                    n + 1
                ));
            };
            if hosts.starts_with('|') {
                return Err(format!(
                    "known_hosts line {}: hashed host names are not supported; list plain names (ssh-keyscan without -H)",
                    n + 1
                ));
            }
            let key = base64::engine::general_purpose::STANDARD
                .decode(key)
                .map_err(|e| format!("known_hosts line {}: the key is not base64: {e}", n + 1))?;
            entries.push(Entry {
                hosts: hosts.split(',').map(host_and_port).collect(),
                key_type: key_type.to_owned(),
                key,
                revoked,
            });
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `key` (the raw SSH key blob) may be presented by `host` on `port`.
    pub fn check(&self, host: &str, port: u16, key: &[u8]) -> Verdict {
        let host = host.to_ascii_lowercase();
        let for_host: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.hosts.iter().any(|(h, p)| *h == host && *p == port))
            .collect();
        if for_host.is_empty() {
            return Verdict::Unknown;
        }
        if for_host.iter().any(|e| e.revoked && e.key == key) {
            return Verdict::Mismatch;
        }
        if for_host.iter().any(|e| !e.revoked && e.key == key) {
            Verdict::Trusted
        } else {
            Verdict::Mismatch
        }
    }

    /// The key types listed for a host, for error messages.
    pub fn key_types(&self, host: &str, port: u16) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|e| e.hosts.iter().any(|(h, p)| h == host && *p == port))
            .map(|e| e.key_type.as_str())
            .collect()
    }
}

/// `[host]:port` or `host` (port 22).
fn host_and_port(pattern: &str) -> (String, u16) {
    if let Some(rest) = pattern.strip_prefix('[')
        && let Some((host, port)) = rest.split_once("]:")
        && let Ok(port) = port.parse()
    {
        return (host.to_ascii_lowercase(), port);
    }
    (pattern.to_ascii_lowercase(), 22)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIE3YqXnWm0QjPnrhZyR9nTAgqCbH6zKWXGa2jIuKVdrY";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIKxMMK0u4OQG2nxoP3RY4bC1kEoXWCdr9fqQ1kVA2YXz";

    fn blob(k: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(k).unwrap()
    }

    #[test]
    fn matches_host_port_and_key() {
        let kh = KnownHosts::parse(&format!(
            "# comment\n[127.0.0.1]:2222 ssh-ed25519 {KEY_A}\ngit.example.com,10.0.0.1 ssh-ed25519 {KEY_B}\n"
        ))
        .unwrap();
        assert_eq!(kh.check("127.0.0.1", 2222, &blob(KEY_A)), Verdict::Trusted);
        assert_eq!(kh.check("127.0.0.1", 2222, &blob(KEY_B)), Verdict::Mismatch);
        assert_eq!(kh.check("127.0.0.1", 22, &blob(KEY_A)), Verdict::Unknown);
        assert_eq!(
            kh.check("GIT.example.com", 22, &blob(KEY_B)),
            Verdict::Trusted
        );
        assert_eq!(kh.check("10.0.0.1", 22, &blob(KEY_B)), Verdict::Trusted);
        assert_eq!(kh.key_types("git.example.com", 22), ["ssh-ed25519"]);
    }

    #[test]
    fn revoked_keys_never_match() {
        let kh = KnownHosts::parse(&format!(
            "h ssh-ed25519 {KEY_A}\n@revoked h ssh-ed25519 {KEY_A}\n@cert-authority *.example.com ssh-ed25519 {KEY_B}\n"
        ))
        .unwrap();
        assert_eq!(kh.check("h", 22, &blob(KEY_A)), Verdict::Mismatch);
    }

    #[test]
    fn malformed_lines_are_named() {
        assert_eq!(
            KnownHosts::parse("h ssh-ed25519\n").unwrap_err(),
            "known_hosts line 1: expected `host keytype key`"
        );
        assert!(
            KnownHosts::parse("h ssh-ed25519 !!!\n")
                .unwrap_err()
                .contains("not base64")
        );
        assert!(
            KnownHosts::parse(&format!("|1|abc|def ssh-ed25519 {KEY_A}\n"))
                .unwrap_err()
                .contains("hashed host names are not supported")
        );
        assert!(KnownHosts::parse("\n# nothing\n").unwrap().is_empty());
    }
}
