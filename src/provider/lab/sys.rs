//! The machine's side: network namespaces, links, addresses and routes through iproute2's
//! `ip` (its JSON output for reads), and signals to the daemons.
//!
//! `ip` rather than a netlink crate: the lab's namespaces must be the ones `ip netns`
//! knows (bind-mounted under /run/netns, with /etc/netns/<name> mounted over /etc for
//! processes started in them), since BIRD and keepalived are started with
//! `ip netns exec`, and people inspect the lab with `ip -n`. Every call has a time limit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use super::LabError;

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";
/// What `ip netns exec` mounts over /etc for a namespace.
const ETC_NETNS_DIR: &str = "/etc/netns";
/// No single command of the lab takes longer than this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs a program to completion and returns its standard output.
pub async fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let command = || format!("{program} {}", args.join(" "));
    let child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child)
        .await
        .map_err(|_| LabError::CommandTimeout { command: command() })?
        .map_err(|source| LabError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: command(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub async fn ip(args: &[&str]) -> Result<String, LabError> {
    run("ip", args).await
}

/// The namespaces `ip netns` knows whose names start with `prefix`.
pub fn list_netns(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

pub fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// Creates a namespace with its loopback up.
pub async fn netns_add(name: &str) -> Result<(), LabError> {
    if !netns_exists(name) {
        ip(&["netns", "add", name]).await?;
    }
    ip(&["-n", name, "link", "set", "lo", "up"]).await?;
    Ok(())
}

/// The processes in a namespace.
pub async fn netns_pids(name: &str) -> Vec<i32> {
    ip(&["netns", "pids", name])
        .await
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Stops every process in the namespace (TERM, then KILL after two seconds), deletes it
/// (with the links in it: a veth's other end goes with it) and its /etc files.
pub async fn netns_delete(name: &str) -> Result<(), LabError> {
    if netns_exists(name) {
        let pids = netns_pids(name).await;
        stop_pids(&pids).await;
        ip(&["netns", "delete", name]).await?;
    }
    let etc = etc_dir(name);
    if etc.exists() {
        std::fs::remove_dir_all(&etc).map_err(|source| LabError::Io {
            path: etc.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Where files for processes of a namespace go (seen by them under /etc).
pub fn etc_dir(netns: &str) -> PathBuf {
    Path::new(ETC_NETNS_DIR).join(netns)
}

/// Sends `signal` to `pid`; false when there is no such process.
pub fn signal(pid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) has no memory effects; a wrong pid only fails.
    pid > 0 && unsafe { libc::kill(pid, signal) } == 0
}

pub fn alive(pid: i32) -> bool {
    signal(pid, 0) && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(pid: i32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
}

/// TERM, then KILL whatever still runs two seconds later.
pub async fn stop_pids(pids: &[i32]) {
    for &pid in pids {
        signal(pid, libc::SIGTERM);
    }
    for _ in 0..20 {
        if !pids.iter().any(|&p| alive(p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for &pid in pids {
        signal(pid, libc::SIGKILL);
    }
}

/// One interface of a namespace as `ip -j addr show` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Interface {
    pub ifname: String,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub operstate: String,
    #[serde(default)]
    pub master: Option<String>,
    /// The MAC address.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub addr_info: Vec<AddrInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AddrInfo {
    #[serde(default)]
    pub family: String,
    #[serde(default)]
    pub local: String,
    #[serde(default)]
    pub prefixlen: u8,
}

impl Interface {
    /// Administratively up and with a carrier (a veth whose other end is up).
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP") && self.flags.iter().any(|f| f == "LOWER_UP")
    }

    pub fn admin_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }

    pub fn has_address(&self, cidr: &str) -> bool {
        self.addr_info
            .iter()
            .any(|a| a.family == "inet" && format!("{}/{}", a.local, a.prefixlen) == cidr)
    }

    /// Every IPv4 address on it, without prefix length.
    pub fn ipv4(&self) -> impl Iterator<Item = &str> {
        self.addr_info
            .iter()
            .filter(|a| a.family == "inet")
            .map(|a| a.local.as_str())
    }
}

/// The interfaces of a namespace with their addresses; None when it does not exist.
pub async fn interfaces(netns: &str) -> Result<Option<Vec<Interface>>, LabError> {
    if !netns_exists(netns) {
        return Ok(None);
    }
    let out = ip(&["-j", "-n", netns, "addr", "show"]).await?;
    serde_json::from_str(&out)
        .map(Some)
        .map_err(|e| LabError::Command {
            command: format!("ip -j -n {netns} addr show"),
            stderr: format!("unreadable output: {e}"),
        })
}

/// Whether `to` answers one ping from inside `netns` (from `from`, if given) within a second.
pub async fn ping(netns: &str, from: Option<&str>, to: &str) -> bool {
    let mut args = vec![
        "netns", "exec", netns, "ping", "-n", "-q", "-c", "1", "-W", "1",
    ];
    if let Some(from) = from {
        args.extend(["-I", from]);
    }
    args.push(to);
    ip(&args).await.is_ok()
}

#[derive(Debug, Deserialize)]
struct Neighbour {
    #[serde(default)]
    lladdr: Option<String>,
}

/// Which MAC address answers for `address` on `dev` in `netns` now: the neighbour entry
/// is forgotten first, so that the answer is fresh, not remembered.
pub async fn who_answers(netns: &str, dev: &str, address: &str) -> Option<String> {
    let _ = ip(&["-n", netns, "neigh", "flush", "to", address, "dev", dev]).await;
    if !ping(netns, None, address).await {
        return None;
    }
    let out = ip(&[
        "-j", "-n", netns, "neigh", "show", "to", address, "dev", dev,
    ])
    .await
    .ok()?;
    let entries: Vec<Neighbour> = serde_json::from_str(&out).ok()?;
    entries.into_iter().find_map(|n| n.lladdr)
}

#[derive(Debug, Deserialize)]
struct Route {
    dst: String,
    #[serde(default)]
    gateway: Option<String>,
}

/// The static routes (`proto static`) on `dev` in `netns`: destination and gateway.
pub async fn static_routes(netns: &str, dev: &str) -> Result<Vec<(String, String)>, LabError> {
    let out = ip(&[
        "-j", "-n", netns, "route", "show", "dev", dev, "proto", "static",
    ])
    .await?;
    let routes: Vec<Route> = serde_json::from_str(&out).unwrap_or_default();
    Ok(routes
        .into_iter()
        .map(|r| (r.dst, r.gateway.unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_read_from_ip_json() {
        let out = r#"[{"ifindex":2,"ifname":"fgw0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
            "operstate":"UP","address":"62:3a:b7:96:35:8f",
            "addr_info":[{"family":"inet","local":"198.18.0.1","prefixlen":24}]},
            {"ifindex":3,"ifname":"fgp1","flags":["BROADCAST","UP"],"master":"br0","addr_info":[]}]"#;
        let found: Vec<Interface> = serde_json::from_str(out).unwrap();
        assert!(found[0].is_up() && found[0].has_address("198.18.0.1/24"));
        assert!(!found[0].has_address("198.18.0.1/32"));
        assert!(found[1].admin_up() && !found[1].is_up());
        assert_eq!(found[1].master.as_deref(), Some("br0"));
    }
}
