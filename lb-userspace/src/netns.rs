//! Network namespaces owned by RAII guards: created with a unique name, entered by a thread,
//! deleted (with every process started in them) on drop, even when a test fails.
use std::{
    fs::File,
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};

/// A network namespace that lives as long as this guard.
pub struct Netns {
    name: String,
    children: Vec<Child>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name unique on this machine for this process: `<prefix><pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id())
}

impl Netns {
    /// Creates the namespace `name` with its loopback up.
    pub fn create(name: &str) -> Result<Self> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns {
            name: name.to_string(),
            children: Vec::new(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as in `ip netns list`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> ARGS...` and fails with its stderr if it fails.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Runs `PROGRAM ARGS...` inside the namespace to completion.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<()> {
        run(&mut self.command(program, args)?)
    }

    /// A command that runs `PROGRAM ARGS...` inside the namespace. Unlike `ip netns exec`, it
    /// keeps the caller's mount namespace, so pins under /sys/fs/bpf stay shared.
    pub fn command(&self, program: &str, args: &[&str]) -> Result<Command> {
        command_in(&self.name, program, args)
    }

    /// Starts `cmd` (from [`Netns::command`]) and keeps it: it is killed when the guard drops.
    /// Returns the child's pid.
    pub fn spawn(&mut self, mut cmd: Command) -> Result<u32> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Sends `signal` to the process `pid` this guard started and, for a fatal one, reaps it.
    pub fn signal_child(&mut self, pid: u32, signal: nix::sys::signal::Signal) -> Result<()> {
        let idx = self
            .children
            .iter()
            .position(|c| c.id() == pid)
            .with_context(|| format!("no child {pid} in {}", self.name))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)?;
        if signal == nix::sys::signal::Signal::SIGKILL {
            let mut child = self.children.remove(idx);
            child.wait()?;
        }
        Ok(())
    }

    /// Fails if a process this guard started has exited, with its exit status.
    pub fn check_children(&mut self) -> Result<()> {
        for child in &mut self.children {
            if let Some(status) = child.try_wait()? {
                bail!("process {} in {} exited: {status}", child.id(), self.name);
            }
        }
        Ok(())
    }

    /// Sets a sysctl inside the namespace, e.g. `net.ipv4.ip_forward=1`.
    pub fn sysctl(&self, setting: &str) -> Result<()> {
        self.exec("sysctl", &["-qw", setting])
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it opens live there.
    pub fn enter<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = File::open(format!("/run/netns/{}", self.name))
            .with_context(|| format!("opening namespace {}", self.name))?;
        std::thread::scope(|s| {
            s.spawn(move || -> Result<R> {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering namespace {}", self.name))?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in namespace {} panicked", self.name))?
        })
    }

    /// Stops the processes this guard started, in reverse order: SIGTERM, then SIGKILL if
    /// one is still running after 3 s.
    pub fn kill_children(&mut self) {
        for mut child in self.children.drain(..).rev() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_children();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A command that runs `PROGRAM ARGS...` inside namespace `ns` (see [`Netns::command`]).
pub fn command_in(ns: &str, program: &str, args: &[&str]) -> Result<Command> {
    let file = File::open(format!("/run/netns/{ns}"))
        .with_context(|| format!("opening namespace {ns}"))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: the closure runs between fork and exec and only calls setns(2), which is
    // async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from));
    }
    Ok(cmd)
}

/// Runs a command to completion; an error carries its stderr.
pub fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
