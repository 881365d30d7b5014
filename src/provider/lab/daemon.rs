//! The daemons of the lab (BIRD and keepalived), each started with `ip netns exec` in its
//! node's namespace, its configuration, pid and log files under `<state dir>/<daemon>/`.
//! A daemon found running after a restart is adopted when its pid file names a process
//! whose command line carries its configuration file's path; anything else is started
//! afresh. The provider's own children are reaped; adopted ones are stopped by pid.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::process::{Child, Command};

use super::{LabError, sys};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DaemonKind {
    Bird,
    Keepalived,
}

impl DaemonKind {
    fn dir_name(self) -> &'static str {
        match self {
            Self::Bird => "bird",
            Self::Keepalived => "keepalived",
        }
    }
}

/// What [`Daemons::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Started,
    Reconfigured,
    Unchanged,
}

pub struct Daemons {
    root: PathBuf,
    children: Mutex<HashMap<PathBuf, Child>>,
}

impl Daemons {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            children: Mutex::new(HashMap::new()),
        }
    }

    fn dir(&self, kind: DaemonKind) -> PathBuf {
        self.root.join(kind.dir_name())
    }

    fn file(&self, kind: DaemonKind, stem: &str, ext: &str) -> PathBuf {
        self.dir(kind).join(format!("{stem}.{ext}"))
    }

    /// BIRD's control socket for `stem`.
    pub fn bird_socket(&self, stem: &str) -> PathBuf {
        self.file(DaemonKind::Bird, stem, "ctl")
    }

    /// The pid of the daemon when it runs, from its pid file, checked against its command line.
    pub fn running(&self, kind: DaemonKind, stem: &str) -> Option<i32> {
        let conf = self.file(kind, stem, "conf");
        let pid: i32 = std::fs::read_to_string(self.file(kind, stem, "pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = sys::cmdline(pid)?;
        (sys::alive(pid) && cmdline.contains(conf.to_str()?)).then_some(pid)
    }

    /// The stems of every daemon of `kind` with a configuration on disk.
    pub fn known(&self, kind: DaemonKind) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir(kind)) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".conf").map(str::to_owned)
            })
            .collect()
    }

    /// Runs the daemon `stem` of `kind` in `netns` with `config`: starts it when it does
    /// not run, has it read its configuration again when that changed.
    pub async fn ensure(
        &self,
        kind: DaemonKind,
        stem: &str,
        netns: &str,
        config: &str,
    ) -> Result<Ensured, LabError> {
        self.reap();
        let dir = self.dir(kind);
        std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
            path: dir.clone(),
            source,
        })?;
        let conf = self.file(kind, stem, "conf");
        let changed = std::fs::read_to_string(&conf).ok().as_deref() != Some(config);
        if changed {
            std::fs::write(&conf, config).map_err(|source| LabError::Io {
                path: conf.clone(),
                source,
            })?;
        }
        match self.running(kind, stem) {
            Some(_) if !changed => Ok(Ensured::Unchanged),
            Some(pid) => {
                match kind {
                    DaemonKind::Bird => super::bird::reconfigure(&self.bird_socket(stem)).await?,
                    DaemonKind::Keepalived => {
                        sys::signal(pid, libc::SIGHUP);
                    }
                }
                Ok(Ensured::Reconfigured)
            }
            None => {
                self.start(kind, stem, netns, &conf)?;
                Ok(Ensured::Started)
            }
        }
    }

    fn start(
        &self,
        kind: DaemonKind,
        stem: &str,
        netns: &str,
        conf: &Path,
    ) -> Result<(), LabError> {
        let log_path = self.file(kind, stem, "log");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LabError::Io { path, source }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let log2 = log.try_clone().map_err(io(&log_path))?;
        let conf = conf
            .to_str()
            .ok_or_else(|| LabError::Config("state dir is not UTF-8".into()))?;
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns]);
        match kind {
            DaemonKind::Bird => {
                let socket = self.bird_socket(stem);
                command
                    .arg("bird")
                    .args(["-f", "-c", conf, "-s"])
                    .arg(socket);
            }
            DaemonKind::Keepalived => {
                command
                    .arg("keepalived")
                    .args(["-n", "-l", "--vrrp", "-f", conf, "-p"])
                    .arg(self.file(kind, stem, "kpid"))
                    .arg("-r")
                    .arg(self.file(kind, stem, "vpid"));
            }
        }
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| LabError::Spawn {
                program: kind.dir_name().to_owned(),
                source,
            })?;
        let pid = child.id().unwrap_or_default();
        let pid_path = self.file(kind, stem, "pid");
        std::fs::write(&pid_path, format!("{pid}\n")).map_err(io(&pid_path))?;
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid_path, child);
        Ok(())
    }

    /// Stops the daemon and removes its files.
    pub async fn stop(&self, kind: DaemonKind, stem: &str) {
        if let Some(pid) = self.running(kind, stem) {
            sys::stop_pids(&[pid]).await;
        }
        self.reap();
        for ext in ["conf", "pid", "kpid", "vpid", "ctl", "log"] {
            let _ = std::fs::remove_file(self.file(kind, stem, ext));
        }
    }

    /// Collects the exit status of children that ended, so none stays a zombie.
    pub fn reap(&self) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children.retain(|_, child| matches!(child.try_wait(), Ok(None)));
    }
}
