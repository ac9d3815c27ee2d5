//! CPU and memory limits for a VM's processes through the machine's cgroup controllers:
//! cgroup v1 (`cpu` and `memory` hierarchies) where they are mounted, else cgroup v2.
use std::{
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
};

use super::error::{Context, Result};

const ROOT: &str = "/sys/fs/cgroup";
/// The group every VM's cgroup is made under.
const PARENT: &str = "xlb";
/// CFS period, in microseconds, the CPU quota is expressed against.
const PERIOD_US: u64 = 100_000;

/// The cgroup directories of one VM (one per v1 hierarchy, or one v2 group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("writing {value:?} to {}", path.display()))
}

fn v2() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

impl Cgroup {
    /// The cgroup of VM `name` (whether or not it exists yet).
    pub fn of(name: &str) -> Self {
        let dirs = if v2() {
            vec![Path::new(ROOT).join(PARENT).join(name)]
        } else {
            ["cpu", "memory"]
                .iter()
                .map(|c| Path::new(ROOT).join(c).join(PARENT).join(name))
                .collect()
        };
        Cgroup { dirs }
    }

    /// Makes the cgroup with `cpu_limit` cores and `memory_mb` MiB.
    pub fn create(name: &str, cpu_limit: f64, memory_mb: u64) -> Result<Self> {
        let cg = Cgroup::of(name);
        let quota = ((cpu_limit * PERIOD_US as f64).round() as u64).max(1000);
        let bytes = (memory_mb << 20).to_string();
        if v2() {
            let parent = Path::new(ROOT).join(PARENT);
            std::fs::create_dir_all(&parent)
                .with_context(|| format!("creating {}", parent.display()))?;
            write(
                &Path::new(ROOT).join("cgroup.subtree_control"),
                "+cpu +memory",
            )?;
            write(&parent.join("cgroup.subtree_control"), "+cpu +memory")?;
            let dir = &cg.dirs[0];
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            write(&dir.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
            write(&dir.join("memory.max"), &bytes)?;
        } else {
            for dir in &cg.dirs {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            write(
                &cg.dirs[0].join("cpu.cfs_period_us"),
                &PERIOD_US.to_string(),
            )?;
            write(&cg.dirs[0].join("cpu.cfs_quota_us"), &quota.to_string())?;
            write(&cg.dirs[1].join("memory.limit_in_bytes"), &bytes)?;
        }
        Ok(cg)
    }

    /// The `cgroup.procs` files, opened for writing: a process joins by writing its pid to
    /// each (done between fork and exec, so the server never runs unlimited).
    pub fn procs_files(&self) -> Result<Vec<File>> {
        self.dirs
            .iter()
            .map(|d| {
                let path = d.join("cgroup.procs");
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .with_context(|| format!("opening {}", path.display()))
            })
            .collect()
    }

    /// Pids of the processes in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Kills every process in the cgroup (SIGKILL) and removes it; a missing cgroup is fine.
    pub fn destroy(&self) {
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                // Our own children must be reaped, or they stay as zombies in the group.
                let _ = nix::sys::wait::waitpid(
                    nix::unistd::Pid::from_raw(pid),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
