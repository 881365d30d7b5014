//! What /proc says about a process (CPU seconds, memory), and the pids of the test
//! control plane's and git server's daemons, for benchmarks.

use std::path::PathBuf;

/// The test control plane's folder: its audit log and pid files.
pub fn testenv_dir() -> PathBuf {
    super::env()
        .kubeconfig
        .parent()
        .expect("the kubeconfig is in the test environment's folder")
        .to_path_buf()
}

/// The pid in `file` (a daemon's pid file), if it names one.
fn pid_in(file: PathBuf) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

pub fn apiserver_pid() -> u32 {
    pid_in(testenv_dir().join("kube-apiserver.pid"))
        .expect("the test control plane's kube-apiserver.pid")
}

pub fn etcd_pid() -> Option<u32> {
    pid_in(testenv_dir().join("etcd.pid"))
}

/// The test git server's git daemon, which forks one process per connection and waits
/// for it (so their CPU adds up in its own /proc stat as its children's). The pid file
/// names the `git` command, which runs `git-daemon` as its child: that child, if found.
pub fn git_daemon_pid() -> Option<u32> {
    let git = pid_in(super::git::server().dir.join("git-daemon.pid"))?;
    let children = std::fs::read_to_string(format!("/proc/{git}/task/{git}/children"));
    let daemon = children
        .ok()
        .and_then(|c| c.split_whitespace().next()?.parse().ok());
    Some(daemon.unwrap_or(git))
}

/// CPU seconds (user + system) used so far: of `pid` (or `self`), or of its waited-for
/// children.
pub fn cpu_seconds(pid: &str, children: bool) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime, stime, cutime and cstime are fields 14 to 17 of the line, 11 to 14 after
    // the name.
    let first = if children { 13 } else { 11 };
    (ticks(first) + ticks(first + 1)) / clock_ticks()
}

/// CPU seconds of `pid` and of the children it has waited for, together.
pub fn cpu_seconds_with_children(pid: u32) -> f64 {
    let pid = pid.to_string();
    cpu_seconds(&pid, false) + cpu_seconds(&pid, true)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A field of /proc/PID/status (`VmRSS:`, `VmHWM:`), in bytes; 0 if unreadable.
pub fn status_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resident memory of a process, in MiB.
pub fn rss_mib(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS:") / (1024 * 1024)
}
