//! A memory cgroup made by a test, so that the controller runs under the chart's memory
//! limit as the kubelet would run it: past the limit the kernel's OOM killer ends the
//! process, and the cgroup counts it. cgroup v1's memory controller when it is mounted
//! (this project's machines mount v1 and keep v2 beside it), else cgroup v2's.

use std::path::{Path, PathBuf};

enum Version {
    V1,
    V2,
}

pub struct MemoryCgroup {
    dir: PathBuf,
    version: Version,
    pub limit: u64,
}

/// The path of this process's cgroup in the hierarchy whose line in /proc/self/cgroup
/// matches `controller` (`memory` for v1, the empty name for v2).
fn own_path(controller: &str) -> Option<String> {
    let lines = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    lines.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| path.to_owned())
    })
}

/// Where cgroup v2 is mounted, if it is.
fn v2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
    })
}

fn write(path: &Path, value: &str) {
    std::fs::write(path, value)
        .unwrap_or_else(|e| panic!("writing {value:?} to {}: {e}", path.display()));
}

fn read_field(path: &Path, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn read_number(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

impl MemoryCgroup {
    /// A new cgroup below this process's own, limited to `limit` bytes of memory.
    pub fn new(name: &str, limit: u64) -> Self {
        let unique = format!(
            "fleetgate-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let v1 = Path::new("/sys/fs/cgroup/memory");
        if v1.join("memory.limit_in_bytes").exists() {
            let own = own_path("memory").unwrap_or_else(|| "/".into());
            let dir = v1.join(own.trim_start_matches('/')).join(unique);
            std::fs::create_dir(&dir)
                .unwrap_or_else(|e| panic!("creating the memory cgroup {}: {e}", dir.display()));
            write(&dir.join("memory.limit_in_bytes"), &limit.to_string());
            // No swap to fall back on: the limit is the limit.
            let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), limit.to_string());
            let _ = std::fs::write(dir.join("memory.swappiness"), "0");
            return Self {
                dir,
                version: Version::V1,
                limit,
            };
        }
        let mount =
            v2_mount().expect("a memory cgroup needs cgroup v1's memory controller or cgroup v2");
        let parent = mount.join(own_path("").unwrap_or_default().trim_start_matches('/'));
        let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+memory");
        let dir = parent.join(unique);
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("creating the memory cgroup {}: {e}", dir.display()));
        write(&dir.join("memory.max"), &limit.to_string());
        let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        Self {
            dir,
            version: Version::V2,
            limit,
        }
    }

    /// Moves process `pid` into the cgroup.
    pub fn add(&self, pid: u32) {
        write(&self.dir.join("cgroup.procs"), &pid.to_string());
    }

    /// The processes in the cgroup.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The most memory the cgroup has used, in bytes.
    pub fn peak(&self) -> u64 {
        match self.version {
            Version::V1 => read_number(&self.dir.join("memory.max_usage_in_bytes")),
            Version::V2 => read_number(&self.dir.join("memory.peak")),
        }
    }

    /// Processes the kernel's OOM killer has ended in the cgroup.
    pub fn oom_kills(&self) -> u64 {
        match self.version {
            Version::V1 => read_field(&self.dir.join("memory.oom_control"), "oom_kill "),
            Version::V2 => read_field(&self.dir.join("memory.events"), "oom_kill "),
        }
    }

    /// Times the limit was reached (v1's failcnt; v2's `max` events).
    pub fn limit_hits(&self) -> u64 {
        match self.version {
            Version::V1 => read_number(&self.dir.join("memory.failcnt")),
            Version::V2 => read_field(&self.dir.join("memory.events"), "max "),
        }
    }

    /// One line for the test's output.
    pub fn report(&self) -> String {
        format!(
            "memory cgroup: peak {} MiB of the {} MiB limit, {} OOM kills",
            self.peak() / (1024 * 1024),
            self.limit / (1024 * 1024),
            self.oom_kills()
        )
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        eprintln!("{}", self.report());
        // Only what the test put there: its own controller processes.
        for pid in self.pids() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
